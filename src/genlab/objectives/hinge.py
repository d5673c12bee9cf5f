"""Hinge-loss GAN (Lim & Ye 2017, arXiv 1705.02894; used by SN-GAN, Miyato et al.
2018, arXiv 1802.05957).

Critic: ``E_P max(0, 1 - D(x)) + E_Q max(0, 1 + D(G(z)))``; generator: ``-E_Q D(G(z))``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from genlab.objectives.adversarial import AdversarialObjective


class HingeGAN(AdversarialObjective):
    """Hinge GAN (arXiv 1705.02894): a margin critic; the generator raises ``D(G(z))``."""

    def critic_loss(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        return torch.relu(1 - d_real).mean() + torch.relu(1 + d_fake).mean()

    def generator_loss(self, d_fake: Tensor, d_real: Tensor | None) -> Tensor:
        return -d_fake.mean()
