"""Learning principles.

An :class:`Objective` names its *players* (``players = ("generator", "critic")``,
or ``("model",)`` for likelihood), owns its helper networks (critics, encoders),
and computes each player's loss. It never holds the model's weights: the model is
passed in to every call. The training engine steps players by a schedule and has
no objective-specific branches.

Protocol::

    obj.setup(model, data_spec)        # build helper nets once, before optimisers
    obj.player_parameters(model)       # {player: [params]} -> one optimiser each
    obj.loss(player, model, batch, step=k, generator=g) -> LossOutput(loss, logs)
    obj.after_step(player)             # e.g. weight clipping of a WGAN critic

``batch`` is a :class:`~genlab.data.base.Batch` in model space (``x``, optional
labels ``y`` and the mask ``known``). ``step`` is the number of completed training
steps (for warm-ups and annealing). ``shares_batch``: all players of one step
see the same batch (hybrids); otherwise each player step draws a fresh one.
``conditional``: ``True`` needs a conditional model, ``False`` an unconditional
one, ``None`` works with either (it passes ``batch.y`` as context when the model
is conditional).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from genlab.data.base import Batch, DataSpec
from genlab.models.base import GenerativeModel


@dataclass
class LossOutput:
    """A scalar loss to minimise and floats to log (``logs`` keys get the player prefix)."""

    loss: Tensor
    logs: dict[str, float] = field(default_factory=dict)


class Objective(nn.Module, ABC):
    """Base of every learning principle. ``players[0]`` updates the model's weights."""

    requires: ClassVar[tuple[type, ...]] = (GenerativeModel,)
    players: ClassVar[tuple[str, ...]] = ("model",)
    #: All players of one step see the same batch.
    shares_batch: ClassVar[bool] = False
    #: Needs a conditional model (True), an unconditional one (False), or either (None).
    conditional: ClassVar[bool | None] = False
    #: Trains on partly labelled data (``batch.known`` False for hidden labels, e.g. M2). Other
    #: objectives that pass labels on (to conditional models) refuse ``data.labelled``.
    partial_labels: ClassVar[bool] = False

    def setup(self, model: GenerativeModel, data_spec: DataSpec) -> None:
        """Build helper networks sized for the data. Default: none."""

    def player_parameters(self, model: GenerativeModel) -> dict[str, list[nn.Parameter]]:
        """Parameters each player's optimiser steps. Default: the first player owns the
        model's parameters, the others split this objective's helper networks by
        :meth:`helper_modules`."""
        params = {self.players[0]: list(model.parameters())}
        for player, modules in self.helper_modules().items():
            params.setdefault(player, [])
            params[player] += [p for m in modules for p in m.parameters()]
        return params

    def helper_modules(self) -> dict[str, list[nn.Module]]:
        """``{player: [modules]}`` of helper networks. Default: none."""
        return {}

    @abstractmethod
    def loss(self, player: str, model: GenerativeModel, batch: Batch, *, step: int = 0,
             generator: torch.Generator | None = None) -> LossOutput:
        """``batch.x``: ``(B, *event_shape)`` data in model space; ``step``: completed steps."""

    def after_step(self, player: str) -> None:
        """Called after ``player``'s optimiser step. Default: nothing."""
