"""Wasserstein GAN (Arjovsky, Chintala & Bottou 2017, arXiv 1701.07875) and
WGAN-GP (Gulrajani et al. 2017, arXiv 1704.00028).

Kantorovich-Rubinstein duality: ``W1(P, Q) = sup_{||f||_L <= 1} E_P f - E_Q f``.
The critic maximises ``E_P D(x) - E_Q D(G(z))`` over a Lipschitz class, kept so
by weight clipping to ``[-clip, clip]`` after each critic step (``wgan``), or by
a two-sided gradient penalty ``10 E (||grad D(x_hat)|| - 1)^2`` on interpolates
(``wgan-gp``). The generator minimises ``-E_Q D(G(z))``. With the gradient
penalty, ``E_P D - E_Q D`` estimates ``W1`` (slightly below it).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from genlab.objectives.adversarial import AdversarialObjective


class WassersteinGAN(AdversarialObjective):
    """WGAN (arXiv 1701.07875): critic ``E_Q D - E_P D``, weights clipped to
    ``[-clip, clip]`` after every critic step (``clip: null`` turns clipping off)."""

    def __init__(self, *, clip: float | None = 0.01, critic: dict[str, Any] | None = None,
                 penalty: list[dict] | None = None, spectral_norm: bool = False, pack: int = 1):
        super().__init__(critic=critic, penalty=penalty, spectral_norm=spectral_norm, pack=pack)
        self.clip = clip

    def critic_loss(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        return d_fake.mean() - d_real.mean()

    def generator_loss(self, d_fake: Tensor, d_real: Tensor | None) -> Tensor:
        return -d_fake.mean()

    def estimate(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        """``E_P D - E_Q D``: ``W1`` when the critic is an optimal 1-Lipschitz function."""
        return d_real.mean() - d_fake.mean()

    def after_step(self, player: str) -> None:
        if player == "critic" and self.clip is not None:
            with torch.no_grad():
                for p in self._critic().parameters():
                    p.clamp_(-self.clip, self.clip)


class WGANGP(WassersteinGAN):
    """WGAN-GP (arXiv 1704.00028): the WGAN critic with a two-sided gradient penalty
    (default ``[{name: gp, weight: 10}]``) and no clipping."""

    def __init__(self, *, clip: float | None = None, critic: dict[str, Any] | None = None,
                 penalty: list[dict] | None = None, spectral_norm: bool = False, pack: int = 1):
        penalty = [{"name": "gp", "weight": 10.0}] if penalty is None else penalty
        super().__init__(clip=clip, critic=critic, penalty=penalty, spectral_norm=spectral_norm, pack=pack)
