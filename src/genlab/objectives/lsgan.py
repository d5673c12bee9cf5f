"""Least-squares GAN (Mao et al. 2017, arXiv 1611.04076).

Critic: ``1/2 E_P (D(x) - b)^2 + 1/2 E_Q (D(G(z)) - a)^2``; generator:
``1/2 E_Q (D(G(z)) - c)^2`` (the :class:`~genlab.objectives.gan_losses.LeastSquaresLoss`
component). Defaults ``a = 0, b = 1, c = 1`` (the paper's 0-1 coding). With
``b - c = 1, b - a = 2`` (e.g. ``a = -1, b = 1, c = 0``) the generator minimises the
Pearson chi-squared divergence between ``P + Q`` and ``2Q`` (the paper's Theorem 1).
"""

from __future__ import annotations

from typing import Any

from genlab.objectives.adversarial import AdversarialObjective
from genlab.objectives.gan_losses import LeastSquaresLoss


class LeastSquaresGAN(AdversarialObjective):
    """LSGAN (arXiv 1611.04076): least-squares critic with targets ``b`` (data) and
    ``a`` (samples); the generator pulls ``D(G(z))`` to ``c``."""

    def __init__(self, *, a: float = 0.0, b: float = 1.0, c: float = 1.0, critic: dict[str, Any] | None = None,
                 penalty: list[dict] | None = None, spectral_norm: bool = False, pack: int = 1):
        super().__init__(adversarial=LeastSquaresLoss(a=a, b=b, c=c), critic=critic, penalty=penalty,
                         spectral_norm=spectral_norm, pack=pack)
