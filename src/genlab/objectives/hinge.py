"""Hinge-loss GAN (Lim & Ye 2017, arXiv 1705.02894; used by SN-GAN, Miyato et al.
2018, arXiv 1802.05957).

Critic: ``E_P max(0, 1 - D(x)) + E_Q max(0, 1 + D(G(z)))``; generator: ``-E_Q D(G(z))``
(the :class:`~genlab.objectives.gan_losses.HingeLoss` component).
"""

from __future__ import annotations

from typing import Any

from genlab.objectives.adversarial import AdversarialObjective
from genlab.objectives.gan_losses import HingeLoss


class HingeGAN(AdversarialObjective):
    """Hinge GAN (arXiv 1705.02894): a margin critic; the generator raises ``D(G(z))``."""

    def __init__(self, *, critic: dict[str, Any] | None = None, penalty: list[dict] | None = None,
                 spectral_norm: bool = False, pack: int = 1):
        super().__init__(adversarial=HingeLoss(), critic=critic, penalty=penalty, spectral_norm=spectral_norm,
                         pack=pack)
