"""Evaluators with an ``update(...)`` / ``compute()`` protocol.

* :class:`SampleMetric`: compares model samples with held-out data, both
  ``(N, *event_shape)`` in **data space**: ``update(real=..., fake=...)``.
* :class:`ModelMetric`: needs the model itself (``requires`` names the
  capability), e.g. bits/dim: ``update(model, batch)`` with a
  :class:`~genlab.data.base.Batch` in data space (labels are the context of
  conditional models).

``compute()`` returns ``{name: float}``. Metrics are deterministic given the
``seed`` they are built with; they never live inside the training loop's code.
Constructors may take the reserved keyword ``dataset`` (the evaluation data)
when the protocol needs it (mode coverage needs the mixture's modes).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor

from genlab.data.base import Batch
from genlab.models.base import GenerativeModel


class Metric(ABC):
    """Base of every evaluator."""

    requires: ClassVar[tuple[type, ...]] = ()
    #: Dataset classes the metric needs (e.g. a mixture with known modes).
    requires_data: ClassVar[tuple[type, ...]] = ()
    #: For each key ``compute()`` returns: is higher better? Used by leaderboards.
    higher_is_better: ClassVar[dict[str, bool]] = {}

    @abstractmethod
    def reset(self) -> None:
        """Forget everything seen."""

    @abstractmethod
    def compute(self) -> dict[str, float]:
        """The metric's values."""


class SampleMetric(Metric):
    """Compares two sample sets."""

    @abstractmethod
    def update(self, *, real: Tensor | None = None, fake: Tensor | None = None) -> None:
        """Add a batch of data (``real``) and/or model samples (``fake``)."""


class ModelMetric(Metric):
    """Evaluates a model on data."""

    @abstractmethod
    def update(self, model: GenerativeModel, batch: Batch) -> None:
        """``batch.x``: held-out data ``(B, *event_shape)`` in data space."""


class _Accumulator:
    """Concatenates batches of real and fake samples (float64, CPU)."""

    def __init__(self) -> None:
        self.real: list[Tensor] = []
        self.fake: list[Tensor] = []

    def add(self, real: Tensor | None, fake: Tensor | None) -> None:
        if real is not None:
            self.real.append(real.detach().double().cpu())
        if fake is not None:
            self.fake.append(fake.detach().double().cpu())

    def get(self, which: str) -> Tensor:
        parts = getattr(self, which)
        if not parts:
            raise ValueError(f"no {which} samples were given to update(); nothing to compute")
        return torch.cat(parts)
