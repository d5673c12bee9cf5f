"""Wasserstein GAN (Arjovsky, Chintala & Bottou 2017, arXiv 1701.07875) and
WGAN-GP (Gulrajani et al. 2017, arXiv 1704.00028).

Kantorovich-Rubinstein duality: ``W1(P, Q) = sup_{||f||_L <= 1} E_P f - E_Q f``.
The critic maximises ``E_P D(x) - E_Q D(G(z))`` over a Lipschitz class, kept so
by weight clipping to ``[-clip, clip]`` after each critic step (``wgan``), or by
a two-sided gradient penalty ``10 E (||grad D(x_hat)|| - 1)^2`` on interpolates
(``wgan-gp``). The generator minimises ``-E_Q D(G(z))``. With the gradient
penalty, ``E_P D - E_Q D`` estimates ``W1`` (slightly below it).

Both are leaves built with the :class:`~genlab.objectives.gan_losses.WassersteinLoss`
component; they differ only in their defaults (clipping vs a penalty).
"""

from __future__ import annotations

from typing import Any

from genlab.objectives.adversarial import AdversarialObjective
from genlab.objectives.gan_losses import WassersteinLoss


class WassersteinGAN(AdversarialObjective):
    """WGAN (arXiv 1701.07875): critic ``E_Q D - E_P D``, weights clipped to
    ``[-clip, clip]`` after every critic step (``clip: null`` turns clipping off)."""

    def __init__(self, *, clip: float | None = 0.01, critic: dict[str, Any] | None = None,
                 penalty: list[dict] | None = None, spectral_norm: bool = False, pack: int = 1):
        super().__init__(adversarial=WassersteinLoss(), critic=critic, penalty=penalty,
                         spectral_norm=spectral_norm, pack=pack, clip=clip)


class WGANGP(AdversarialObjective):
    """WGAN-GP (arXiv 1704.00028): the WGAN critic with a two-sided gradient penalty
    (default ``[{name: gp, weight: 10}]``) and no clipping."""

    def __init__(self, *, clip: float | None = None, critic: dict[str, Any] | None = None,
                 penalty: list[dict] | None = None, spectral_norm: bool = False, pack: int = 1):
        penalty = [{"name": "gp", "weight": 10.0}] if penalty is None else penalty
        super().__init__(adversarial=WassersteinLoss(), critic=critic, penalty=penalty,
                         spectral_norm=spectral_norm, pack=pack, clip=clip)
