"""Maximum likelihood: minimise ``-E log p(x)`` over the data.

* :class:`~genlab.models.base.DiscreteDensityModel`: ``log_prob`` is a probability
  mass on the levels and is used as it is.
* Continuous density models (flows) on discrete data (``data_spec.levels`` set):
  the data are dequantised, uniformly or with a learned ``q(v|k)`` (Flow++, arXiv
  1902.00275), and the loss is the negative of a lower bound on ``log P(k)``; see
  :mod:`genlab.data.dequantize` for the formula and the ``D log|scale|`` offset.
* Continuous data: ``log_prob`` directly.

The loss is in nats per dimension (so learning rates do not depend on ``D``).
Logged: ``nll`` (nats per example, data space) and, for discrete data, ``bpd``.
The variational dequantiser is a helper network of this objective with no player
of its own: :meth:`player_parameters` puts its parameters under ``model``.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from genlab.kwargs import PositiveInt
from genlab.data.base import Batch, DataSpec
from genlab.data.dequantize import VariationalDequantizer, data_log_prob
from genlab.models.base import DensityModel, DiscreteDensityModel, GenerativeModel
from genlab.objectives.base import LossOutput, Objective


class MaximumLikelihood(Objective):
    """Maximum likelihood (with uniform or variational dequantisation of discrete data)."""

    requires: ClassVar[tuple[type, ...]] = (DensityModel,)
    players: ClassVar[tuple[str, ...]] = ("model",)
    conditional: ClassVar[bool | None] = None  # conditional models get batch.y as context

    def __init__(self, *, dequantize: Literal["uniform", "variational"] = "uniform", hidden: PositiveInt = 128,
                 depth: PositiveInt = 2):
        """``hidden``/``depth``: the variational dequantiser's MLP (unused when uniform)."""
        super().__init__()
        self.dequantize = dequantize
        self.hidden, self.depth = hidden, depth
        self.spec: DataSpec | None = None
        self.dequantizer: VariationalDequantizer | None = None

    def setup(self, model: GenerativeModel, data_spec: DataSpec) -> None:
        self.spec = data_spec
        discrete_model = isinstance(model, DiscreteDensityModel)
        if discrete_model and data_spec.levels is None:
            raise ValueError(f"{type(model).__name__} is a discrete density model but {data_spec.name} is "
                             "continuous (levels=None); use a continuous density model such as realnvp")
        if self.dequantize == "variational" and data_spec.levels is not None and not discrete_model:
            self.dequantizer = VariationalDequantizer(spec=data_spec, hidden=self.hidden, depth=self.depth)

    def player_parameters(self, model: GenerativeModel) -> dict[str, list[nn.Parameter]]:
        params = list(model.parameters())
        if self.dequantizer is not None:
            params += list(self.dequantizer.parameters())
        return {"model": params}

    def data_log_prob(self, model: DensityModel, batch: Batch, generator: torch.Generator | None = None) -> Tensor:
        """``(B,)`` data-space log-likelihood (a lower bound after dequantisation), nats."""
        if self.spec is None:
            raise RuntimeError("MaximumLikelihood.setup(model, data_spec) must be called before loss()")
        context = batch.y if model.conditional else None
        return data_log_prob(lambda v: model.log_prob(v, context=context), batch.x, self.spec,
                             discrete=isinstance(model, DiscreteDensityModel), dequantizer=self.dequantizer,
                             generator=generator)

    def loss(self, player: str, model: GenerativeModel, batch: Batch, *, step: int = 0,
             generator: torch.Generator | None = None) -> LossOutput:
        if player != "model":
            raise ValueError(f"MaximumLikelihood has one player, 'model'; got {player!r}")
        log_p = self.data_log_prob(model, batch, generator)  # type: ignore[arg-type]
        nll = -log_p.mean()
        value = float(nll.detach())
        logs = {"loss": value / self.spec.dim, "nll": value}
        if self.spec.levels is not None:
            logs["bpd"] = value / (self.spec.dim * math.log(2))
        return LossOutput(nll / self.spec.dim, logs)
