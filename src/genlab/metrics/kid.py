"""Kernel Inception Distance (Bińkowski et al. 2018, arXiv 1801.01401).

KID is the unbiased estimate of the squared MMD with the cubic polynomial kernel
``k(x, y) = (x.y / F + 1)^3`` on features ``(N, F)``, averaged over ``subsets``
random subsets of ``subset_size`` real and ``subset_size`` fake vectors (drawn
without replacement within a subset, independently across subsets, from a
``torch.Generator`` seeded with ``seed``). ``kid_std`` is the standard
deviation over subsets (population form, as in torchmetrics).

Fallback: when a set has fewer than ``subset_size`` vectors, the subset size is
reduced to the smaller set size with a warning (then every subset of that set is
the whole set, in a random order; when both sets are used whole, the estimate is
computed once and ``kid_std`` is 0). At least 2 vectors per set are required.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from genlab.data.base import Dataset
from genlab.metrics.features import FeatureMetric


def polynomial_kernel(x: Tensor, y: Tensor, degree: int = 3, coef: float = 1.0) -> Tensor:
    """``(N, F), (M, F)`` -> ``(N, M)``: ``(x.y / F + coef)^degree``."""
    return (x @ y.T / x.shape[1] + coef) ** degree


def mmd2_unbiased(kxx: Tensor, kyy: Tensor, kxy: Tensor) -> Tensor:
    """Unbiased MMD^2 from kernel blocks (diagonals of ``kxx``/``kyy`` excluded)."""
    n, m = kxx.shape[0], kyy.shape[0]
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return sxx + syy - 2 * kxy.mean()


def polynomial_mmd2(x: Tensor, y: Tensor, degree: int = 3, coef: float = 1.0) -> Tensor:
    """Unbiased MMD^2 between ``x (N, F)`` and ``y (M, F)`` with the polynomial kernel."""
    x, y = x.double(), y.double()
    k = lambda a, b: polynomial_kernel(a, b, degree, coef)  # noqa: E731
    return mmd2_unbiased(k(x, x), k(y, y), k(x, y))


def kid_from_features(real: Tensor, fake: Tensor, *, subsets: int = 100, subset_size: int = 1000,
                      degree: int = 3, coef: float = 1.0,
                      generator: torch.Generator | None = None) -> tuple[float, float]:
    """``(N, F), (M, F)`` -> (mean, std) of the unbiased polynomial MMD^2 over subsets."""
    if len(real) < 2 or len(fake) < 2:
        raise ValueError(f"KID needs at least 2 real and 2 fake samples, got {len(real)} and {len(fake)}")
    if subsets < 1 or subset_size < 2:
        raise ValueError(f"KID needs subsets >= 1 and subset_size >= 2, got {subsets} and {subset_size}")
    size = min(subset_size, len(real), len(fake))
    if size < subset_size:
        warnings.warn(f"KID: subset_size={subset_size} exceeds the sample count (real {len(real)}, "
                      f"fake {len(fake)}); using subsets of {size}", stacklevel=2)
    if size == len(real) == len(fake):
        subsets = 1  # every subset is the whole of both sets: the same value each time
    vals = []
    for _ in range(subsets):
        r = real[torch.randperm(len(real), generator=generator)[:size]]
        f = fake[torch.randperm(len(fake), generator=generator)[:size]]
        vals.append(polynomial_mmd2(r, f, degree, coef))
    v = torch.stack(vals)
    return float(v.mean()), float(v.std(unbiased=False))


class KID(FeatureMetric):
    """Kernel Inception Distance: mean/std of unbiased cubic-kernel MMD^2 over random subsets.

    ``update(real=(B, *event_shape), fake=(B, *event_shape))`` in data space.
    """

    higher_is_better = {"kid": False, "kid_std": False}

    def __init__(self, *, features: str = "auto", subsets: int = 100, subset_size: int = 1000,
                 degree: int = 3, coef: float = 1.0, seed: int = 0, dataset: Dataset | None = None):
        self.features, self.subsets, self.subset_size = features, subsets, subset_size
        self.degree, self.coef, self.seed = degree, coef, seed
        self.reset()

    def compute(self) -> dict[str, float]:
        real, fake = self._sets.both()
        mean, std = kid_from_features(real, fake, subsets=self.subsets, subset_size=self.subset_size,
                                      degree=self.degree, coef=self.coef,
                                      generator=torch.Generator().manual_seed(self.seed))
        return {"kid": mean, "kid_std": std}
