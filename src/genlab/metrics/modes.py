"""Mode coverage on Gaussian-mixture data (ring8, grid25).

Protocol (Srivastava et al. 2017, VEEGAN, arXiv 1705.07761; used by PacGAN,
arXiv 1712.04086, and GDPP): draw 2,500 samples; a sample is *high quality* when
it lies within 3 standard deviations of its nearest mode; a mode is *captured*
when it is the nearest mode of at least one high-quality sample; the *reverse KL*
is ``KL(q || uniform)`` where ``q`` is the histogram of high-quality samples over
their nearest modes (0 when all modes are equally covered, ``log K`` when one
mode holds them all). With no high-quality sample, reverse KL is reported as
``log K`` (the worst case) and ``modes`` as 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from genlab.data.base import MixtureDataset
from genlab.metrics.base import SampleMetric, _Accumulator


class ModeCoverage(SampleMetric):
    """Modes captured, percent high-quality samples, reverse KL to uniform."""

    requires_data = (MixtureDataset,)
    higher_is_better = {"modes": True, "hq_percent": True, "reverse_kl": False}

    def __init__(self, *, dataset: MixtureDataset | None = None, means: Tensor | None = None,
                 std: float | None = None, threshold: float = 3.0):
        if dataset is not None:
            means, std = dataset.means, dataset.std
        if means is None or std is None:
            raise ValueError("ModeCoverage needs the mixture's means and std (or a MixtureDataset)")
        self.means = means.double()
        self.std = float(std)
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        self._acc = _Accumulator()

    def update(self, *, real: Tensor | None = None, fake: Tensor | None = None) -> None:
        self._acc.add(None, fake)

    def compute(self) -> dict[str, float]:
        x = self._acc.get("fake").reshape(-1, self.means.shape[1])
        dist = torch.cdist(x, self.means)
        nearest_d, nearest = dist.min(dim=1)
        hq = nearest_d <= self.threshold * self.std
        k = len(self.means)
        counts = torch.bincount(nearest[hq], minlength=k).double()
        n_hq = int(hq.sum())
        if n_hq == 0:
            rkl = math.log(k)
        else:
            q = counts / n_hq
            nz = q > 0
            rkl = float((q[nz] * (q[nz] * k).log()).sum())
        return {"modes": float((counts > 0).sum()), "hq_percent": 100.0 * n_hq / len(x),
                "reverse_kl": rkl}
