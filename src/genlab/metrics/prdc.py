"""k-NN manifold metrics: improved precision/recall and density/coverage.

* precision/recall: Kynkäänniemi et al. 2019, arXiv 1904.06991. The real
  manifold is the union of balls around each real feature vector with radius its
  distance to its ``k_pr``-th nearest *other* real vector; precision is the
  fraction of fake vectors inside it; recall swaps the roles.
* density/coverage: Naeem et al. 2020, arXiv 2002.09797, with ``k_dc``-NN real
  balls. density = ``(1 / (k M)) sum_j sum_i 1[fake_j in ball_i]`` (can exceed 1);
  coverage = fraction of real balls that contain at least one fake vector.

Distances are Euclidean in float64, computed exactly (brute force, ``O(N M)``
memory). Balls are closed (``<=``, as in the papers' definitions); the reference
``prdc`` package uses ``<``, which differs only on exact ties (duplicates).
Defaults: ``k_pr = 3`` (Kynkäänniemi et al.), ``k_dc = 5`` (Naeem et al.).
Each set needs more than ``k`` vectors. To bound cost, each set is subsampled to
``max_samples`` vectors (without replacement, ``torch.Generator(seed)``) when larger.
"""

from __future__ import annotations

import torch
from torch import Tensor

from genlab.data.base import Dataset
from genlab.metrics.features import FeatureMetric, subsample


def _pairwise(x: Tensor, y: Tensor) -> Tensor:
    """Exact Euclidean distances (no matrix-product shortcut, so exact ties stay ties)."""
    return torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")


def kth_nn_radius(x: Tensor, k: int) -> Tensor:
    """``(N, F)`` -> ``(N,)`` distance of each row to its k-th nearest other row."""
    if len(x) <= k:
        raise ValueError(f"k-NN manifolds need more than k={k} samples per set, got {len(x)}; "
                         "use more samples or a smaller k")
    return _pairwise(x, x).kthvalue(k + 1, dim=1).values  # +1 skips the zero self-distance


def prdc_from_features(real: Tensor, fake: Tensor, *, k_pr: int = 3, k_dc: int = 5) -> dict[str, float]:
    """Precision, recall, density, coverage of ``fake (M, F)`` against ``real (N, F)``."""
    real, fake = real.double(), fake.double()
    d_rf = _pairwise(real, fake)  # (N, M)
    r_real_pr = kth_nn_radius(real, k_pr)
    r_fake_pr = kth_nn_radius(fake, k_pr)
    r_real_dc = kth_nn_radius(real, k_dc)
    precision = (d_rf <= r_real_pr[:, None]).any(0).double().mean()
    recall = (d_rf <= r_fake_pr[None, :]).any(1).double().mean()
    inside = d_rf <= r_real_dc[:, None]
    density = inside.double().sum() / (k_dc * fake.shape[0])
    coverage = inside.any(1).double().mean()
    return {"precision": float(precision), "recall": float(recall),
            "density": float(density), "coverage": float(coverage)}


class PRDC(FeatureMetric):
    """Improved precision/recall and density/coverage on ``features`` (k-NN balls).

    ``update(real=(B, *event_shape), fake=(B, *event_shape))`` in data space.
    """

    higher_is_better = {"precision": True, "recall": True, "density": True, "coverage": True}

    def __init__(self, *, features: str = "auto", k_pr: int = 3, k_dc: int = 5,
                 max_samples: int = 10000, seed: int = 0, dataset: Dataset | None = None):
        self.features, self.k_pr, self.k_dc = features, k_pr, k_dc
        self.max_samples, self.seed = max_samples, seed
        self.reset()

    def compute(self) -> dict[str, float]:
        real, fake = self._sets.both()
        gen = torch.Generator().manual_seed(self.seed)
        real, fake = (subsample(x, self.max_samples, gen) for x in (real, fake))
        return prdc_from_features(real, fake, k_pr=self.k_pr, k_dc=self.k_dc)
