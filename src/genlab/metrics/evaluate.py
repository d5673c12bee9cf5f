"""Evaluate a model with named metrics: the harness behind ``genlab eval`` and
evaluation during training.

Sample-based metrics get ``n`` model samples (data space) and up to ``n``
held-out points from ``dataset.test``; model-based metrics get the model and the
held-out set in batches. Everything is drawn from ``seed``.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from genlab import registry
from genlab.build import build_metric
from genlab.data.base import Dataset
from genlab.metrics.base import ModelMetric, SampleMetric
from genlab.models.base import GenerativeModel


def draw_samples(model: GenerativeModel, n: int, *, seed: int = 0, batch_size: int = 1000,
                 spec=None) -> torch.Tensor:
    """``n`` samples in data space ``(n, *event_shape)`` (model put in eval mode)."""
    g = torch.Generator(device=model.device).manual_seed(seed)
    was_training = model.training
    model.eval()
    parts = []
    for i in range(0, n, batch_size):
        parts.append(model.sample(min(batch_size, n - i), generator=g).cpu())
    model.train(was_training)
    x = torch.cat(parts)
    return to_data_space(x, spec) if spec is not None else x


def to_data_space(x: torch.Tensor, spec) -> torch.Tensor:
    """Model space -> data space; image samples are clipped to the valid pixel range."""
    x = spec.to_data(x)
    if spec.kind == "image" and spec.levels:
        x = x.clamp(0, spec.levels - 1)
    return x


def make_metric(name: str, dataset: Dataset | None, seed: int, extra: dict[str, Any]) -> Any:
    params = inspect.signature(registry.lookup("metrics", name)).parameters
    kwargs = dict(extra)
    if "seed" in params:
        kwargs.setdefault("seed", seed)
    return build_metric(name, dataset, **kwargs)


def evaluate_model(model: GenerativeModel, dataset: Dataset, metrics: list[str], *, n: int = 2500,
                   seed: int = 0, args: dict[str, dict[str, Any]] | None = None,
                   batch_size: int = 500) -> dict[str, float]:
    """Run ``metrics`` on ``model``; returns ``{key: value}`` (keys as the metrics name them,
    prefixed with the metric name when two metrics return the same key)."""
    args = args or {}
    built = {m: make_metric(m, dataset, seed, args.get(m, {})) for m in metrics}
    fake = None
    real = dataset.test[:n]
    out: dict[str, float] = {}
    for name, metric in built.items():
        metric.reset()
        if isinstance(metric, SampleMetric):
            if fake is None:
                fake = draw_samples(model, n, seed=seed, spec=dataset.spec)
            for i in range(0, n, batch_size):
                metric.update(real=real[i:i + batch_size] if i < len(real) else None,
                              fake=fake[i:i + batch_size])
        elif isinstance(metric, ModelMetric):
            for i in range(0, len(real), batch_size):  # metrics choose their own grad mode
                metric.update(model, real[i:i + batch_size].to(model.device))
        for key, value in metric.compute().items():
            out[f"{name}/{key}" if key in out else key] = float(value)
    return out
