"""Adversarial losses as components: what a scalar critic's outputs cost each player.

A critic ``D`` maps data and samples to scores ``(B,)``. An :class:`AdversarialLoss`
turns scores into the two players' losses::

    critic_loss(d_real, d_fake) -> Tensor          # the critic minimises it
    generator_loss(d_fake, d_real) -> Tensor       # d_real is None unless uses_real_in_generator
    estimate(d_real, d_fake) -> Tensor | None      # the divergence an optimal critic estimates

Objectives hold one (design rule "abstract or final": a variant is a component, not
a subclass): :class:`~genlab.objectives.adversarial.AdversarialObjective` delegates
to it, and the class-conditional objectives (``cgan``, ``acgan``, ``tacgan``) take
one by name from :data:`ADVERSARIAL_LOSSES` (``loss: gan|nsgan|hinge|lsgan|wgan``).

=========  =====================================================  ===========================
name       critic loss                                            generator loss
=========  =====================================================  ===========================
gan        ``E_P softplus(-D) + E_Q softplus(D)``                 ``-E_Q softplus(D)``
nsgan      same                                                   ``E_Q softplus(-D)``
hinge      ``E_P relu(1 - D) + E_Q relu(1 + D)``                  ``-E_Q D``
lsgan      ``1/2 E_P (D - b)^2 + 1/2 E_Q (D - a)^2``              ``1/2 E_Q (D - c)^2``
wgan       ``E_Q D - E_P D``                                      ``-E_Q D``
=========  =====================================================  ===========================

(``softplus(-D) = -log sigmoid(D)``: the critic is a logistic classifier of data vs
samples with logit ``D``.) References: Goodfellow et al. 2014, arXiv 1406.2661 (gan,
nsgan); Lim & Ye 2017, arXiv 1705.02894 (hinge); Mao et al. 2017, arXiv 1611.04076
(lsgan); Arjovsky et al. 2017, arXiv 1701.07875 (wgan).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor


class AdversarialLoss(ABC):
    """The losses of a scalar-critic game, from critic outputs ``(B,)`` on data and samples."""

    #: Whether :meth:`generator_loss` needs the critic's outputs on data.
    uses_real_in_generator: ClassVar[bool] = False

    @abstractmethod
    def critic_loss(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        """Scalar loss the critic minimises."""

    @abstractmethod
    def generator_loss(self, d_fake: Tensor, d_real: Tensor | None) -> Tensor:
        """Scalar loss the generator minimises (``d_real`` only if :attr:`uses_real_in_generator`)."""

    def estimate(self, d_real: Tensor, d_fake: Tensor) -> Tensor | None:
        """The divergence the optimal critic's outputs estimate, or None. Default: None."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def logistic_critic_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """The logistic critic of the minimax and non-saturating games: ``E_P softplus(-D) + E_Q softplus(D)``."""
    return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()


class MinimaxLoss(AdversarialLoss):
    """The original GAN game (arXiv 1406.2661): logistic critic; the generator minimises
    ``E_Q log(1 - D(G(z)))`` (saturates when the critic wins). With the optimal critic,
    ``-critic_loss = 2 JS(P, Q) - log 4``."""

    def critic_loss(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        return logistic_critic_loss(d_real, d_fake)

    def generator_loss(self, d_fake: Tensor, d_real: Tensor | None) -> Tensor:
        return -F.softplus(d_fake).mean()

    def estimate(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        """``2 JS - log 4`` (the GAN divergence)."""
        return -self.critic_loss(d_real, d_fake)


class NonSaturatingLoss(AdversarialLoss):
    """The non-saturating GAN (arXiv 1406.2661): the minimax critic; the generator
    minimises ``-E_Q log D(G(z))``, strong gradients while the critic rejects samples."""

    def critic_loss(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        return logistic_critic_loss(d_real, d_fake)

    def generator_loss(self, d_fake: Tensor, d_real: Tensor | None) -> Tensor:
        return F.softplus(-d_fake).mean()

    def estimate(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        """``2 JS - log 4`` (the same critic as the minimax game)."""
        return -self.critic_loss(d_real, d_fake)


class HingeLoss(AdversarialLoss):
    """Hinge GAN (arXiv 1705.02894): a margin critic; the generator raises ``D(G(z))``."""

    def critic_loss(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        return torch.relu(1 - d_real).mean() + torch.relu(1 + d_fake).mean()

    def generator_loss(self, d_fake: Tensor, d_real: Tensor | None) -> Tensor:
        return -d_fake.mean()


class LeastSquaresLoss(AdversarialLoss):
    """LSGAN (arXiv 1611.04076): critic targets ``b`` (data) and ``a`` (samples); the
    generator pulls ``D(G(z))`` to ``c``. With ``b - c = 1, b - a = 2`` the generator
    minimises the Pearson chi-squared divergence between ``P + Q`` and ``2Q``."""

    def __init__(self, a: float = 0.0, b: float = 1.0, c: float = 1.0):
        self.a, self.b, self.c = a, b, c

    def critic_loss(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        return 0.5 * ((d_real - self.b) ** 2).mean() + 0.5 * ((d_fake - self.a) ** 2).mean()

    def generator_loss(self, d_fake: Tensor, d_real: Tensor | None) -> Tensor:
        return 0.5 * ((d_fake - self.c) ** 2).mean()

    def __repr__(self) -> str:
        return f"LeastSquaresLoss(a={self.a}, b={self.b}, c={self.c})"


class WassersteinLoss(AdversarialLoss):
    """Wasserstein critic (arXiv 1701.07875): ``E_Q D - E_P D``; the generator minimises
    ``-E_Q D``. The critic must be kept Lipschitz (clipping, a gradient penalty or
    spectral normalisation) for ``E_P D - E_Q D`` to estimate ``W1``."""

    def critic_loss(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        return d_fake.mean() - d_real.mean()

    def generator_loss(self, d_fake: Tensor, d_real: Tensor | None) -> Tensor:
        return -d_fake.mean()

    def estimate(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        """``E_P D - E_Q D``: ``W1`` when the critic is an optimal 1-Lipschitz function."""
        return d_real.mean() - d_fake.mean()


#: Loss components by config name (``loss:`` of the conditional objectives).
ADVERSARIAL_LOSSES: dict[str, type[AdversarialLoss]] = {
    "gan": MinimaxLoss,
    "nsgan": NonSaturatingLoss,
    "hinge": HingeLoss,
    "lsgan": LeastSquaresLoss,
    "wgan": WassersteinLoss,
}


def adversarial_loss(name: str) -> AdversarialLoss:
    """The component named ``name`` (default options), or a ValueError listing the names."""
    if name not in ADVERSARIAL_LOSSES:
        raise ValueError(f"unknown adversarial loss {name!r}; choose one of {', '.join(ADVERSARIAL_LOSSES)}")
    return ADVERSARIAL_LOSSES[name]()
