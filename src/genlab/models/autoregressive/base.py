"""What the autoregressive models share: level indices and cached/naive dispatch.

Inputs are in model space at the exact levels ``data_spec.to_model(k)``,
``k = 0..levels-1`` (``k`` being the integer value in data space); outputs are
categorical distributions over those levels (see ``docs/autoregressive.md``).
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import Tensor

from genlab.data.base import DataSpec
from genlab.models.base import DiscreteDensityModel


class AbstractAutoregressive(DiscreteDensityModel):
    """``p(x) = prod_i p(x_i | x_<i)`` over discrete levels; sampled ancestrally by
    :meth:`sample_naive` (one full network pass per element)."""

    def __init__(self, data_spec: DataSpec):
        super().__init__()
        if data_spec.levels is None or data_spec.levels < 2:
            raise ValueError(f"{type(self).__name__} needs discrete data (data_spec.levels >= 2); "
                             f"{data_spec.name!r} has levels={data_spec.levels}. Use a flow for continuous data")
        self.spec = data_spec
        self.levels = int(data_spec.levels)
        self.event_shape = torch.Size(data_spec.event_shape)

    def to_index(self, x: Tensor) -> Tensor:
        """Model-space values ``(B, *event_shape)`` at exact levels -> integer levels (long)."""
        if tuple(x.shape[1:]) != tuple(self.event_shape):
            raise ValueError(f"{type(self).__name__}: expected input (B, {', '.join(map(str, self.event_shape))}), "
                             f"got {tuple(x.shape)}")
        d = self.spec.to_data(x.double())
        k = d.round()
        if (d - k).abs().max() > 1e-3 or k.min() < 0 or k.max() > self.levels - 1:
            raise ValueError(f"{type(self).__name__}.log_prob expects model-space values at the exact levels "
                             f"data_spec.to_model(k), k = 0..{self.levels - 1}; got values off the levels "
                             "(were they dequantised or rescaled?)")
        return k.long()

    def to_value(self, k: Tensor) -> Tensor:
        """Integer levels -> model-space values in the dtype of the model's parameters."""
        dtype = next(self.parameters()).dtype
        return self.spec.to_model(k.to(torch.float64)).to(dtype)

    def _sample(self, n: int, *, context: Tensor | None, generator: torch.Generator | None) -> Tensor:
        return self.sample_naive(n, generator=generator)

    @abstractmethod
    def sample_naive(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``(n, *event_shape)`` model-space samples, one full pass per element."""


class AbstractCachedAutoregressive(AbstractAutoregressive):
    """An autoregressive model that also offers :meth:`sample_cached` (each element costs
    one step of each layer). ``sample`` uses the cached path when ``cached_sampling``."""

    cached_sampling: bool = True

    def _sample(self, n: int, *, context: Tensor | None, generator: torch.Generator | None) -> Tensor:
        if self.cached_sampling:
            return self.sample_cached(n, generator=generator)
        return self.sample_naive(n, generator=generator)

    @abstractmethod
    def sample_cached(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``(n, *event_shape)`` model-space samples from per-layer caches; equal to
        :meth:`sample_naive` for the same generator state."""
