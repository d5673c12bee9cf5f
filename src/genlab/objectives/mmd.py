"""Generative moment matching networks (GMMN: Li, Swersky & Zemel 2015,
arXiv 1502.02761; Dziugaite, Roy & Ghahramani 2015, arXiv 1505.03906).

No critic: the generator minimises the squared maximum mean discrepancy between
data ``X`` and samples ``Y`` under a fixed mixture of Gaussian (RBF) kernels
``k(x, y) = sum_s exp(-||x - y||^2 / (2 s^2))``. Unbiased estimator (Gretton et
al. 2012, arXiv 0805.2368)::

    MMD^2_u = mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i, j} k(x_i, y_j)
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import torch
from torch import Tensor

from genlab.data.base import Batch
from genlab.models.base import GenerativeModel, ReparameterizedModel
from genlab.objectives.base import LossOutput, Objective


#: floor of the RBF kernels' exponents (see :func:`rbf_mixture`)
EXP_FLOOR = -50.0


def rbf_mixture(x: Tensor, y: Tensor, sigmas: Sequence[float]) -> Tensor:
    """``(N, D), (M, D) -> (N, M)``: ``sum_s exp(-||x_i - y_j||^2 / (2 s^2))``.

    Each exponent is clamped at :data:`EXP_FLOOR` (-50): a kernel value below ``e^-50 = 1.9e-22``
    counts as ``1.9e-22`` (and passes no gradient), far below float32's resolution of a sum
    that holds the diagonal's 1s. Without the floor, pairs many bandwidths apart give float32
    denormals (below 1.2e-38), on which CPU ``exp`` and the products of the backward pass run
    about 25 times slower; MMD-GAN's steps then slowed threefold as its critic's features spread."""
    x, y = x.flatten(1), y.flatten(1)
    d2 = (x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1) - 2 * x @ y.T).clamp_min(0)
    return sum(torch.exp((d2 * (-0.5 / (s * s))).clamp_min(EXP_FLOOR)) for s in sigmas)


def mmd2_unbiased(x: Tensor, y: Tensor, sigmas: Sequence[float]) -> Tensor:
    """Unbiased ``MMD^2`` between samples ``x (N, ...)`` and ``y (M, ...)``, ``N, M >= 2``."""
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError(f"the unbiased MMD needs at least 2 samples on each side, got {n} and {m}")
    kxx, kyy, kxy = rbf_mixture(x, x, sigmas), rbf_mixture(y, y, sigmas), rbf_mixture(x, y, sigmas)
    diag = float(len(sigmas))  # k(x, x) = number of kernels, exactly
    sxx = (kxx.sum() - n * diag) / (n * (n - 1))
    syy = (kyy.sum() - m * diag) / (m * (m - 1))
    return sxx + syy - 2 * kxy.mean()


class GMMN(Objective):
    """GMMN (arXiv 1502.02761): the generator minimises ``MMD^2_u`` (or its square root,
    ``sqrt: true``, as in the paper) between data and samples under a fixed mixture of
    RBF kernels with bandwidths ``sigmas`` (in model space). One player: ``generator``."""

    requires: ClassVar[tuple[type, ...]] = (ReparameterizedModel,)
    players: ClassVar[tuple[str, ...]] = ("generator",)

    def __init__(self, *, sigmas: list[float] | None = None, sqrt: bool = False):
        super().__init__()
        self.sigmas = list(sigmas) if sigmas is not None else [0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0]
        if not self.sigmas or any(s <= 0 for s in self.sigmas):
            raise ValueError(f"sigmas must be a non-empty list of positive bandwidths, got {sigmas}")
        self.sqrt = sqrt

    def loss(self, player: str, model: GenerativeModel, batch: Batch, *, step: int = 0,
             generator: torch.Generator | None = None) -> LossOutput:
        x = batch.x
        if player != "generator":
            raise ValueError(f"GMMN has one player, 'generator'; got {player!r}")
        fake = model.rsample(x.shape[0], generator=generator)
        mmd2 = mmd2_unbiased(x, fake, self.sigmas)
        loss = mmd2.clamp_min(1e-12).sqrt() if self.sqrt else mmd2
        return LossOutput(loss, {"loss": loss.item(), "mmd2": mmd2.item()})

    @torch.no_grad()
    def divergence_estimate(self, real: Tensor, fake: Tensor) -> float:
        """``MMD^2_u`` between ``real`` and ``fake``."""
        return float(mmd2_unbiased(real, fake, self.sigmas))
