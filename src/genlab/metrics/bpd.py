"""Exact bits/dim (and NLL in nats) of a density model on held-out data.

``update(model, batch)`` takes a :class:`~genlab.data.base.Batch` in data space
(its labels are the context of conditional models). Branching is in
:func:`genlab.data.dequantize.data_log_prob`. With ``spec.levels = L`` and
``scale = spec.scale`` (see :mod:`genlab.data.dequantize` for the derivation):

* :class:`~genlab.models.base.DiscreteDensityModel`: ``log P(k) = model.log_prob(x)``;
* continuous density models: uniform dequantisation with ``samples = K`` draws per
  example from a generator seeded with ``seed`` at :meth:`reset` (so the number is
  reproducible), and the importance-weighted bound
  ``log P(k) >= log (1/K sum_i p_Y(x + (v_i - 1/2)/scale)) - D log|scale|``.
  ``K = 1`` is the usual dequantised bound; larger ``K`` is tighter. Reported bits/dim
  are therefore an upper bound on the model's true discrete bits/dim.
* continuous data: ``log p(x) = log p_Y(to_model(x)) - D log|scale|`` (data-space
  density); ``bpd`` is then a differential quantity and may be negative.

``compute()`` gives ``bpd`` (mean bits/dim) and ``nll`` (mean nats per example).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from genlab.kwargs import PositiveInt
from genlab.data.base import Batch, DataSpec, Dataset
from genlab.data.dequantize import data_log_prob
from genlab.metrics.base import ModelMetric
from genlab.models.base import DensityModel, DiscreteDensityModel, GenerativeModel


class BitsPerDim(ModelMetric):
    """Bits/dim and NLL (nats) on held-out data; K-sample uniform dequantisation for flows."""

    requires: ClassVar[tuple[type, ...]] = (DensityModel,)
    higher_is_better = {"bpd": False, "nll": False}

    def __init__(self, *, dataset: Dataset | None = None, data_spec: DataSpec | None = None,
                 samples: PositiveInt = 16, seed: int = 0):
        spec = dataset.spec if dataset is not None else data_spec
        if spec is None:
            raise ValueError("BitsPerDim needs the data spec: pass dataset= or data_spec=")
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        self.spec, self.samples, self.seed = spec, samples, seed
        self.reset()

    def reset(self) -> None:
        self._log_p: list[Tensor] = []
        self._gen = torch.Generator().manual_seed(self.seed)

    @torch.no_grad()
    def log_likelihood(self, model: DensityModel, batch: Batch) -> Tensor:
        """``(B,)`` data-space log-likelihood in nats (a K-sample bound for dequantised flows)."""
        dtype = next(model.parameters(), torch.empty(0)).dtype
        x = self.spec.to_model(batch.x.to(model.device, dtype))
        context = None
        if model.conditional:
            if batch.y is None or (batch.known is not None and not bool(batch.known.all())):
                raise ValueError(f"bpd of the conditional model {type(model).__name__} needs the label of every "
                                 "held-out example; this batch has unlabelled examples")
            context = batch.y.to(model.device)
        return data_log_prob(lambda v: model.log_prob(v, context=context), x, self.spec,
                             discrete=isinstance(model, DiscreteDensityModel), samples=self.samples,
                             generator=self._gen)

    def update(self, model: GenerativeModel, batch: Batch) -> None:
        if not isinstance(model, DensityModel):
            raise TypeError(f"bpd needs a model with log_prob; {type(model).__name__} has none")
        was_training = model.training
        model.eval()
        try:
            self._log_p.append(self.log_likelihood(model, batch).double().cpu())
        finally:
            model.train(was_training)

    def compute(self) -> dict[str, float]:
        if not self._log_p:
            raise ValueError("bpd: update() was never called; nothing to compute")
        log_p = torch.cat(self._log_p)
        nll = float(-log_p.mean())
        return {"bpd": nll / (self.spec.dim * math.log(2)), "nll": nll}
