"""Exponential moving average of a model's weights, on torch's ``AveragedModel``.

The decay warms up: after ``t`` updates the effective decay is
``min(decay, (1 + t) / (10 + t))``, so early weights (near initialisation) do not
dominate the average of a short run. Without it, with decay 0.999, the average
after 600 steps still gives 55% of its weight to the first step's weights
(0.999^600); on the 8x8 digits DCGAN that raised FID from 141 to 285.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel


def warmup_decay(decay: float, t: int) -> float:
    """The effective decay after ``t`` updates."""
    return min(decay, (1.0 + t) / (10.0 + t))


def _ema_fn(decay: float):
    def update(averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        d = warmup_decay(decay, int(num_averaged))
        floats = [(a, c) for a, c in zip(averaged, current) if a.dtype.is_floating_point]
        if floats:
            torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], 1.0 - d)
        for a, c in zip(averaged, current):
            if not a.dtype.is_floating_point:  # integer/bool buffers (counters, flags): copy
                a.copy_(c)
    return update


def make_ema(model: nn.Module, decay: float) -> AveragedModel:
    """An EMA copy of ``model`` (buffers averaged too; integer buffers copied). ``ema.module``
    is a model of the same class, usable for sampling and evaluation."""
    if not 0.0 < decay < 1.0:
        raise ValueError(f"train.ema must be in (0, 1), e.g. 0.999; got {decay}")
    return AveragedModel(model, multi_avg_fn=_ema_fn(decay), use_buffers=True)
