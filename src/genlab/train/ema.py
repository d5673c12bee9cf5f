"""Exponential moving average of a model's weights, on torch's ``AveragedModel``."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def make_ema(model: nn.Module, decay: float) -> AveragedModel:
    """An EMA copy of ``model`` (buffers averaged too). ``ema.module`` is a model of the
    same class, usable for sampling and evaluation."""
    if not 0.0 < decay < 1.0:
        raise ValueError(f"train.ema must be in (0, 1), e.g. 0.999; got {decay}")
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
