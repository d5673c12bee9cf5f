"""Fréchet distance between Gaussians fitted to features (FID; Heusel et al. 2017, arXiv 1706.08500).

``FID = |mu_r - mu_f|^2 + tr(S_r) + tr(S_f) - 2 tr((S_r^{1/2} S_f S_r^{1/2})^{1/2})``

The trace term is computed in float64 through the *symmetric* form above
(``S_r^{1/2}`` and the outer square root by ``eigh``): the matrix under the outer
root is symmetric positive semi-definite, so its eigenvalues are real and the
result is never imaginary. Eigenvalues that rounding makes slightly negative are
clipped to 0. This equals ``tr(sqrtm(S_r S_f))`` (the usual scipy formula) for any
pair of covariance matrices, singular ones included, so no ``eps * I`` is added.
The final value is clipped at 0 (rounding can give ``-1e-13`` for identical sets).

Covariances use the unbiased ``1/(N-1)`` normalisation (as in the reference
TensorFlow code and torchmetrics). At least 2 samples per set are required; with
``N <= F`` (features) the covariance is rank deficient and FID strongly biased, so
a warning is issued.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from genlab.data.base import Dataset
from genlab.metrics.features import FeatureMetric


def mean_cov(f: Tensor, which: str = "features") -> tuple[Tensor, Tensor]:
    """``(N, F)`` -> mean ``(F,)``, unbiased covariance ``(F, F)`` in float64."""
    f = f.double()
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"FID needs at least 2 {which} vectors of shape (N, F), got {tuple(f.shape)}")
    if len(f) <= f.shape[1]:
        warnings.warn(f"FID: only {len(f)} {which} samples for {f.shape[1]} feature dimensions; the "
                      "covariance is singular and FID is strongly biased. Use more samples.",
                      stacklevel=3)
    mu = f.mean(0)
    c = f - mu
    return mu, c.T @ c / (len(f) - 1)


def _psd_sqrt(s: Tensor) -> Tensor:
    """Symmetric square root of a symmetric PSD matrix (negative rounding eigenvalues -> 0)."""
    w, v = torch.linalg.eigh((s + s.T) / 2)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def frechet_distance(mu1: Tensor, s1: Tensor, mu2: Tensor, s2: Tensor) -> float:
    """Squared Fréchet (2-Wasserstein) distance between ``N(mu1, s1)`` and ``N(mu2, s2)``."""
    mu1, s1, mu2, s2 = (t.double() for t in (mu1, s1, mu2, s2))
    r1 = _psd_sqrt(s1)
    m = r1 @ s2 @ r1
    tr_cross = torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum()
    d = (mu1 - mu2).square().sum() + torch.trace(s1) + torch.trace(s2) - 2 * tr_cross
    return max(float(d), 0.0)


def fid_from_features(real: Tensor, fake: Tensor) -> float:
    """FID between feature sets ``(N, F)`` and ``(M, F)``."""
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"real and fake features differ in dimension: {real.shape[1:]} vs {fake.shape[1:]}")
    return frechet_distance(*mean_cov(real, "real"), *mean_cov(fake, "fake"))


class FID(FeatureMetric):
    """Fréchet distance of feature Gaussians (``features``: see :mod:`genlab.metrics.features`).

    ``update(real=(B, *event_shape), fake=(B, *event_shape))`` in data space.
    """

    higher_is_better = {"fid": False}

    def __init__(self, *, features: str = "auto", seed: int = 0, dataset: Dataset | None = None):
        self.features = features
        self.seed = seed  # FID is deterministic; kept for a uniform interface
        self.reset()

    def compute(self) -> dict[str, float]:
        real, fake = self._sets.both()
        return {"fid": fid_from_features(real, fake)}
