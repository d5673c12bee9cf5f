"""The config-free training loop: ``Trainer(model, objective, batches, optimisers, callbacks)``.

One *step* is one round of the schedule: each player (helpers first, then the
model's player, ``objective.players[1:] + players[:1]``) takes
``schedule[player]`` optimiser steps (default 1). Each player step draws a fresh
batch, unless the objective ``shares_batch``: then one batch serves every player
of the step. Objectives get the step count (``step=``, completed steps) and the
trainer's noise generator. The trainer knows nothing about any model, loss or
config: :func:`genlab.train.fit` builds the pieces from a config, and the
experiments build them by hand.

Backward passes, gradient clipping and mixed precision go through an
``accelerate.Accelerator`` (one process or several).

Exact resume: :meth:`Trainer.state` holds the optimisers, LR schedulers, EMA
count and the three RNG states (global, batches, noise); :meth:`load_state`
restores them.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from accelerate import Accelerator
from torch import nn
from torch.optim.swa_utils import AveragedModel

from genlab.data.base import Batch
from genlab.data.batches import BatchSource
from genlab.models.base import GenerativeModel
from genlab.objectives.base import Objective


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite. ``step``, ``player`` and ``value`` say where."""

    def __init__(self, message: str, *, step: int = 0, player: str = "", value: float = math.nan):
        super().__init__(message)
        self.step, self.player, self.value = step, player, value


class Callback:
    """Hooks the trainer calls; subclasses override what they need."""

    def on_step(self, trainer: "Trainer", logs: dict[str, float]) -> None:
        """After every step (``trainer.step`` already counts it)."""

    def on_end(self, trainer: "Trainer") -> None:
        """Once, when :meth:`Trainer.fit` reaches its step count."""


class EveryStep(Callback):
    """Calls ``fn(step)`` after every step (``step`` counted from 0, as a loop index)."""

    def __init__(self, fn):
        self.fn = fn

    def on_step(self, trainer: "Trainer", logs: dict[str, float]) -> None:
        self.fn(trainer.step - 1)


class Trainer:
    """Trains ``model`` by ``objective`` on ``batches``.

    ``optimisers``: ``{player: optimizer}`` (one per player of the objective);
    ``schedulers``: ``{player: LR scheduler}``, stepped once per step; ``schedule``:
    ``{player: optimiser steps per step}``; ``ema``: an ``AveragedModel`` of the model,
    updated after every step; ``grad_clip``: max gradient norm per player;
    ``noise_generator``: the generator passed to the objective (default: seeded with
    ``noise_seed`` on the accelerator's device).
    """

    def __init__(self, model: GenerativeModel, objective: Objective, batches: BatchSource,
                 optimisers: dict[str, torch.optim.Optimizer], callbacks: Sequence[Callback] = (), *,
                 schedulers: dict[str, Any] | None = None, schedule: dict[str, int] | None = None,
                 ema: AveragedModel | None = None, grad_clip: float | None = None,
                 accelerator: Accelerator | None = None, noise_seed: int = 0,
                 noise_generator: torch.Generator | None = None):
        players = objective.players
        if set(optimisers) != set(players):
            raise ValueError(f"optimisers must be given for exactly the players {players}; got {sorted(optimisers)}")
        self.acc = accelerator if accelerator is not None else Accelerator()
        dev = self.acc.device
        self.model, self.objective, self.batches = model.to(dev), objective.to(dev), batches
        self.opts = {p: self.acc.prepare_optimizer(o) for p, o in optimisers.items()}
        self.scheds = dict(schedulers or {})
        self.schedule = dict(schedule or {})
        self.callbacks = list(callbacks)
        self.ema, self.grad_clip = ema, grad_clip
        self.noise_gen = noise_generator if noise_generator is not None else \
            torch.Generator(device=dev).manual_seed(noise_seed)
        self.order = list(players[1:]) + [players[0]]
        self.step = 0
        self.last_logs: dict[str, float] = {}

    # --- state ----------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        """What a checkpoint saves as weights: the model, the objective's helpers, the EMA."""
        mods = {"model": self.model, "objective": self.objective}
        if self.ema is not None:
            mods["ema"] = self.ema.module
        return mods

    def eval_model(self) -> GenerativeModel:
        """The weights used for samples and evaluation: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.model  # type: ignore[return-value]

    def state(self) -> dict[str, Any]:
        """Optimisers, schedulers, EMA count and RNG states (with :meth:`modules`, a full resume)."""
        return {"optimizers": {p: o.state_dict() for p, o in self.opts.items()},
                "schedulers": {p: s.state_dict() for p, s in self.scheds.items()},
                "ema_n": None if self.ema is None else self.ema.n_averaged.clone(),
                "rng": {"global": torch.get_rng_state(), "data": self.batches.state(),
                        "noise": self.noise_gen.get_state()},
                "step": self.step}

    def load_state(self, st: dict[str, Any]) -> None:
        for p, o in self.opts.items():
            o.load_state_dict(st["optimizers"][p])
        for p, s in self.scheds.items():
            s.load_state_dict(st["schedulers"][p])
        if self.ema is not None:
            self.ema.n_averaged.copy_(st["ema_n"])
        torch.set_rng_state(st["rng"]["global"])
        self.batches.set_state(st["rng"]["data"])
        self.noise_gen.set_state(st["rng"]["noise"])
        self.step = int(st["step"])

    # --- one step -------------------------------------------------------------
    def _batch(self) -> Batch:
        return self.batches.draw().to(self.acc.device)

    def player_step(self, player: str, batch: Batch) -> dict[str, float]:
        with self.acc.autocast():
            out = self.objective.loss(player, self.model, batch, step=self.step, generator=self.noise_gen)
        value = float(out.loss.detach())
        if not math.isfinite(value):
            raise TrainingDiverged(f"training diverged at step {self.step + 1}: the {player} loss is {value}",
                                   step=self.step + 1, player=player, value=value)
        opt = self.opts[player]
        opt.zero_grad(set_to_none=True)
        self.acc.backward(out.loss)
        if self.grad_clip:
            params = [p for g in opt.param_groups for p in g["params"]]
            self.acc.clip_grad_norm_(params, self.grad_clip)
        opt.step()
        self.objective.after_step(player)
        return {f"{player}/{k}": v for k, v in out.logs.items()}

    def train_step(self) -> dict[str, float]:
        """One round of the schedule; returns the players' logs."""
        logs: dict[str, float] = {}
        shared = self._batch() if self.objective.shares_batch else None
        for player in self.order:
            for _ in range(self.schedule.get(player, 1)):
                logs.update(self.player_step(player, shared if shared is not None else self._batch()))
        for s in self.scheds.values():
            s.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.step += 1
        return logs

    def fit(self, steps: int) -> int:
        """Train until ``step == steps``, calling each callback's ``on_step`` after every step
        and ``on_end`` at the end; returns the step reached."""
        while self.step < steps:
            logs = self.train_step()
            for cb in self.callbacks:
                cb.on_step(self, logs)
        for cb in self.callbacks:
            cb.on_end(self)
        return self.step
