"""f-GAN (Nowozin, Cseke & Tomioka 2016, arXiv 1606.00709).

For a convex ``f`` with ``f(1) = 0``, ``D_f(P || Q) = E_Q f(p/q)`` has the
variational lower bound (Fenchel conjugate ``f*``)::

    D_f(P || Q) >= F(T) = E_P[T(x)] - E_Q[f*(T(x))],   T(x) = g_f(V(x))

with ``P`` the data, ``Q`` the model, ``V`` the critic's raw output and ``g_f`` an
output activation that keeps ``T`` in the domain of ``f*`` (Table 2 of the paper).
The critic maximises ``F``; its value estimates ``D_f``. The generator minimises
``F`` (``saturating: true``) or, by the paper's Section 3.2 trick, maximises
``E_Q[g_f(V(G(z)))]`` (default).

Divergences (``f(u)``, ``g_f(v)``, ``f*(t)``):

=============  =====================================  ======================  ====================
kl             ``u log u``                            ``v``                   ``exp(t - 1)``
reverse_kl     ``-log u``                             ``-exp(-v)``            ``-1 - log(-t)``
pearson        ``(u - 1)^2``                          ``v``                   ``t^2 / 4 + t``
neyman         ``(1 - u)^2 / u``                      ``1 - exp(-v)``         ``2 - 2 sqrt(1 - t)``
hellinger      ``(sqrt(u) - 1)^2``                    ``1 - exp(-v)``         ``t / (1 - t)``
js             ``-(u+1) log((1+u)/2) + u log u``      ``log 2 - log(1+e^-v)`` ``-log(2 - exp(t))``
tv             ``|u - 1| / 2``                        ``tanh(v) / 2``         ``t``
gan            ``u log u - (u+1) log(u+1)``           ``-log(1 + e^-v)``      ``-log(1 - exp(t))``
=============  =====================================  ======================  ====================

(``js`` is twice the Jensen-Shannon divergence; ``gan`` is ``2 JS - log 4``.)
``f*(g_f(v))`` is computed in a closed, numerically stable form per divergence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.objectives.adversarial import AdversarialObjective
from genlab.objectives.gan_losses import AdversarialLoss

Fn = Callable[[Tensor], Tensor]
LOG2 = math.log(2.0)


@dataclass(frozen=True)
class Divergence:
    """``f``, the output activation ``g_f``, the conjugate ``f*`` and ``f*(g_f(v))``."""

    f: Fn
    activation: Fn
    conjugate: Fn
    conjugate_of_activation: Fn


DIVERGENCES: dict[str, Divergence] = {
    "kl": Divergence(lambda u: u * torch.log(u), lambda v: v, lambda t: torch.exp(t - 1),
                     lambda v: torch.exp(v - 1)),
    "reverse_kl": Divergence(lambda u: -torch.log(u), lambda v: -torch.exp(-v), lambda t: -1 - torch.log(-t),
                             lambda v: v - 1),
    "pearson": Divergence(lambda u: (u - 1) ** 2, lambda v: v, lambda t: t ** 2 / 4 + t,
                          lambda v: v ** 2 / 4 + v),
    "neyman": Divergence(lambda u: (1 - u) ** 2 / u, lambda v: 1 - torch.exp(-v),
                         lambda t: 2 - 2 * torch.sqrt(1 - t), lambda v: 2 - 2 * torch.exp(-v / 2)),
    "hellinger": Divergence(lambda u: (torch.sqrt(u) - 1) ** 2, lambda v: 1 - torch.exp(-v),
                            lambda t: t / (1 - t), lambda v: torch.expm1(v)),
    "js": Divergence(lambda u: -(u + 1) * torch.log((1 + u) / 2) + u * torch.log(u),
                     lambda v: LOG2 - F.softplus(-v), lambda t: -torch.log(2 - torch.exp(t)),
                     lambda v: F.softplus(v) - LOG2),
    "tv": Divergence(lambda u: 0.5 * (u - 1).abs(), lambda v: 0.5 * torch.tanh(v), lambda t: t,
                     lambda v: 0.5 * torch.tanh(v)),
    "gan": Divergence(lambda u: u * torch.log(u) - (u + 1) * torch.log(u + 1), lambda v: -F.softplus(-v),
                      lambda t: -torch.log(-torch.expm1(t)), lambda v: F.softplus(v)),
}

DivergenceName = Literal["kl", "reverse_kl", "pearson", "neyman", "hellinger", "js", "tv", "gan"]


class FDivergenceLoss(AdversarialLoss):
    """The f-GAN game for one divergence (arXiv 1606.00709), as a loss component: the
    critic maximises ``E_P[g_f(v)] - E_Q[f*(g_f(v))]``; the generator minimises that
    bound (``saturating``) or ``-E_Q[g_f(v)]``."""

    def __init__(self, divergence: str = "js", saturating: bool = False):
        if divergence not in DIVERGENCES:
            raise ValueError(f"unknown f-divergence {divergence!r}; choose one of {sorted(DIVERGENCES)}")
        self.divergence, self.div, self.saturating = divergence, DIVERGENCES[divergence], saturating

    def bound(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        """``E_P[g_f(v)] - E_Q[f*(g_f(v))]`` from raw critic outputs ``(B,)``."""
        return self.div.activation(d_real).mean() - self.div.conjugate_of_activation(d_fake).mean()

    def critic_loss(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        return -self.bound(d_real, d_fake)

    def generator_loss(self, d_fake: Tensor, d_real: Tensor | None) -> Tensor:
        if self.saturating:
            return self.div.conjugate_of_activation(d_fake).mean().neg()
        return -self.div.activation(d_fake).mean()

    def estimate(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        """The variational lower bound on ``D_f(P || Q)``."""
        return self.bound(d_real, d_fake)

    def __repr__(self) -> str:
        return f"FDivergenceLoss({self.divergence!r}, saturating={self.saturating})"


class FGAN(AdversarialObjective):
    """f-GAN (arXiv 1606.00709): the critic maximises
    ``E_P[g_f(V(x))] - E_Q[f*(g_f(V(x)))] <= D_f(P || Q)``; the generator minimises
    that bound (``saturating``) or ``-E_Q[g_f(V(G(z)))]`` (default)."""

    def __init__(self, *, divergence: DivergenceName = "js", saturating: bool = False,
                 critic: dict[str, Any] | None = None, penalty: list[dict] | None = None,
                 spectral_norm: bool = False, pack: int = 1):
        loss = FDivergenceLoss(divergence, saturating)
        super().__init__(adversarial=loss, critic=critic, penalty=penalty, spectral_norm=spectral_norm, pack=pack)
        self.divergence, self.div, self.saturating = divergence, loss.div, saturating

    def bound(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        """``E_P[g_f(v)] - E_Q[f*(g_f(v))]`` from raw critic outputs ``(B,)``."""
        return self.adversarial.bound(d_real, d_fake)
