"""Density-ratio matching with Bregman divergences (Mohamed & Lakshminarayanan
2016, "Learning in implicit generative models", arXiv 1610.03483, Section 3.2;
Uehara et al. 2016, b-GAN, arXiv 1610.02920; Sugiyama et al. 2012).

The critic estimates the ratio ``r(x) = p*(x) / q(x)`` (data over model) by
minimising the Bregman divergence ``B_f(r* || r)`` up to a constant::

    L_r = E_Q[ r f'(r) - f(r) ] - E_P[ f'(r) ]

At the optimum ``r = r*`` and ``-L_r = D_f(P || Q)``: ``-L_r`` is the f-GAN bound
with ``T = f'(r)``. As in f-GAN, the generator either minimises that bound, i.e.
``-E_Q[ r f'(r) - f(r) ]`` (``saturating: true``; the minimax GAN for ``logistic``),
or by default maximises ``E_Q[ f'(r) ]`` (the non-saturating GAN for ``logistic``). Cases (``f``, ratio parameterisation from the raw output ``v``):

* ``lsif`` (least-squares importance fitting): ``f(r) = (r - 1)^2 / 2``,
  ``L_r = 1/2 E_Q r^2 - E_P r + 1/2``; ``r = softplus(v)``; ``-L_r`` estimates
  ``chi^2(P || Q) / 2``.
* ``kliep`` (KL importance estimation): ``f(r) = r log r - r + 1``,
  ``L_r = E_Q r - E_P log r - 1``; ``r = exp(v)``; ``-L_r`` estimates ``KL(P || Q)``.
* ``logistic`` (class-probability estimation): ``f(r) = r log r - (1 + r) log(1 + r)``,
  ``D = r / (1 + r) = sigmoid(v)``, ``L_r`` is the logistic loss; ``-L_r`` estimates
  ``2 JS(P, Q) - log 4``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch.nn.functional as F
from torch import Tensor

from genlab.objectives.adversarial import AdversarialObjective
from genlab.objectives.gan_losses import AdversarialLoss


class BregmanLoss(AdversarialLoss):
    """Bregman density-ratio matching (arXiv 1610.03483) as a loss component: ``bregman``
    is ``lsif``, ``kliep`` or ``logistic``; ``saturating`` picks the generator loss."""

    #: Upper clamp of ``log r`` before exponentiation (numerical safety only).
    max_log_ratio: ClassVar[float] = 30.0

    def __init__(self, bregman: str = "logistic", saturating: bool = False):
        if bregman not in ("lsif", "kliep", "logistic"):
            raise ValueError(f"unknown Bregman divergence {bregman!r}; choose lsif, kliep or logistic")
        self.bregman, self.saturating = bregman, saturating

    def q_term(self, v: Tensor) -> Tensor:
        """``r f'(r) - f(r)`` per sample from raw outputs ``v``."""
        if self.bregman == "lsif":
            r = F.softplus(v)
            return 0.5 * (r ** 2 - 1)
        if self.bregman == "kliep":
            return v.clamp(max=self.max_log_ratio).exp() - 1
        return F.softplus(v)  # log(1 + r) with r = exp(v)

    def p_term(self, v: Tensor) -> Tensor:
        """``f'(r)`` per sample."""
        if self.bregman == "lsif":
            return F.softplus(v) - 1
        if self.bregman == "kliep":
            return v
        return -F.softplus(-v)  # log D = log sigmoid(v)

    def critic_loss(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        return self.q_term(d_fake).mean() - self.p_term(d_real).mean()

    def generator_loss(self, d_fake: Tensor, d_real: Tensor | None) -> Tensor:
        if self.saturating:
            return -self.q_term(d_fake).mean()
        return -self.p_term(d_fake).mean()

    def estimate(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        """``-L_r``: ``chi^2/2`` (lsif), ``KL(P||Q)`` (kliep), ``2 JS - log 4`` (logistic)."""
        return -self.critic_loss(d_real, d_fake)

    def ratio(self, v: Tensor) -> Tensor:
        """The estimated ``p*(x) / q(x)`` from raw critic outputs ``v``."""
        return F.softplus(v) if self.bregman == "lsif" else v.clamp(max=self.max_log_ratio).exp()

    def __repr__(self) -> str:
        return f"BregmanLoss({self.bregman!r}, saturating={self.saturating})"


class RatioMatching(AdversarialObjective):
    """Bregman density-ratio matching (arXiv 1610.03483); ``bregman`` picks the
    divergence: ``lsif``, ``kliep`` or ``logistic``; ``saturating`` the generator loss."""

    def __init__(self, *, bregman: Literal["lsif", "kliep", "logistic"] = "logistic", saturating: bool = False,
                 critic: dict[str, Any] | None = None, penalty: list[dict] | None = None,
                 spectral_norm: bool = False, pack: int = 1):
        super().__init__(adversarial=BregmanLoss(bregman, saturating), critic=critic, penalty=penalty,
                         spectral_norm=spectral_norm, pack=pack)
        self.bregman, self.saturating = bregman, saturating

    def ratio(self, v: Tensor) -> Tensor:
        """The estimated ``p*(x) / q(x)`` from raw critic outputs ``v``."""
        return self.adversarial.ratio(v)
