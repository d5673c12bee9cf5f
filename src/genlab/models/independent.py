"""Independent pixels: a per-dimension categorical over the ``levels`` grey levels,
``P(k) = prod_d pi_d[k_d]``. The simplest discrete density baseline for bits/dim.

``fit(x_data)`` sets the closed-form maximum a-posteriori estimate with additive
(Laplace) smoothing, ``pi_d[l] = (count_d[l] + smoothing) / (N + L * smoothing)``
(``smoothing = 1``: add-one); the logits are also trainable by ``objective: mle``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from genlab.data.base import DataSpec
from genlab.models.base import DiscreteDensityModel


class IndependentPixels(DiscreteDensityModel):
    """Per-pixel categorical over the data's levels (independent dimensions)."""

    def __init__(self, *, data_spec: DataSpec, smoothing: float = 1.0):
        super().__init__()
        if data_spec.levels is None:
            raise ValueError(f"independent_pixels needs discrete data (levels set); {data_spec.name} is continuous")
        self.spec = data_spec
        self.event_shape = torch.Size(data_spec.event_shape)
        self.levels, self.smoothing = int(data_spec.levels), smoothing
        self.logits = nn.Parameter(torch.zeros(data_spec.dim, self.levels))

    def _indices(self, x: Tensor) -> Tensor:
        """Model-space ``(B, *event)`` -> level indices ``(B, D)``; refuses off-grid values."""
        k = self.spec.to_data(x.reshape(x.shape[0], -1))
        idx = k.round()
        if (k - idx).abs().max() > 1e-3 or idx.min() < 0 or idx.max() > self.levels - 1:
            raise ValueError("independent_pixels.log_prob expects model-space values on the levels "
                             f"0..{self.levels - 1}; got off-grid values (discrete models need no dequantisation)")
        return idx.long()

    @torch.no_grad()
    def fit(self, x_data: Tensor) -> "IndependentPixels":
        """Closed-form smoothed fit on ``x_data`` ``(N, *event)`` in data space."""
        idx = self._indices(self.spec.to_model(x_data.to(self.logits)))
        counts = torch.zeros_like(self.logits).scatter_add_(1, idx.T, torch.ones_like(idx.T, dtype=self.logits.dtype))
        self.logits.copy_(torch.log((counts + self.smoothing) / (len(idx) + self.levels * self.smoothing)))
        return self

    def log_prob(self, x: Tensor, *, context: Tensor | None = None) -> Tensor:
        self.check_context(context, len(x))
        idx = self._indices(x)
        logp = torch.log_softmax(self.logits, 1)
        return logp.gather(1, idx.T).sum(0)

    def _sample(self, n: int, *, context: Tensor | None, generator: torch.Generator | None) -> Tensor:
        probs = torch.softmax(self.logits, 1)
        k = torch.multinomial(probs, n, replacement=True, generator=generator).T
        return self.spec.to_model(k.to(self.logits.dtype)).reshape(n, *self.event_shape)
