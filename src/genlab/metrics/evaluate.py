"""Evaluate a model with named metrics: the harness behind ``genlab eval`` and
evaluation during training.

Sample-based metrics get ``n`` model samples (data space) and up to ``n``
held-out points from ``dataset.test``; model-based metrics get the model and the
held-out set in batches (:class:`~genlab.data.base.Batch`, labels included).
Samples come from the run's sampler (default: ancestral). Conditional models are
sampled with balanced labels ``0, 1, ..., K-1, 0, 1, ...`` (:func:`balanced_labels`).
Everything is drawn from ``seed``.
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
from genlab.sampling.samplers import Ancestral, Sampler


def balanced_labels(n: int, classes: int) -> torch.Tensor:
    """``(n,)`` labels ``0, 1, ..., classes-1, 0, 1, ...``: every class equally often."""
    return torch.arange(n) % classes


def draw_samples(model: GenerativeModel, n: int, *, seed: int = 0, batch_size: int = 1000,
                 spec=None, sampler: Sampler | None = None, context: torch.Tensor | None = None) -> torch.Tensor:
    """``n`` samples ``(n, *event_shape)`` from ``sampler`` (default ancestral), in data space when
    ``spec`` is given (model put in eval mode). ``context``: ``(n,)`` labels for conditional
    models (default: :func:`balanced_labels`)."""
    sampler = sampler or Ancestral()
    if model.conditional and context is None:
        context = balanced_labels(n, model.num_classes)
    g = torch.Generator(device=model.device).manual_seed(seed)
    was_training = model.training
    model.eval()
    parts = []
    try:
        for i in range(0, n, batch_size):
            ctx = None if context is None else context[i:i + batch_size].to(model.device)
            parts.append(sampler(model, min(batch_size, n - i), context=ctx, generator=g).detach().cpu())
    finally:
        model.train(was_training)
    x = torch.cat(parts)
    return to_data_space(x, spec) if spec is not None else x


def to_data_space(x: torch.Tensor, spec) -> torch.Tensor:
    """Model space -> data space; image samples are clipped to the valid pixel range."""
    x = spec.to_data(x)
    if spec.kind == "image" and spec.levels:
        x = x.clamp(0, spec.levels - 1)
    return x


#: Most values (samples x dimensions) drawn at once for evaluation or a picture (~800 MB float64).
MAX_VALUES = 100_000_000


def check_memory(n: int, dim: int, what: str) -> None:
    """Refuse ``n`` samples of ``dim`` values when they would not fit in memory comfortably."""
    if n * dim > MAX_VALUES:
        raise ValueError(f"{what}={n} samples of {dim} values each is {n * dim:,} values, more than genlab draws "
                         f"at once ({MAX_VALUES:,}); use at most {max(1, MAX_VALUES // dim)} samples")


def make_metric(name: str, dataset: Dataset | None, seed: int, extra: dict[str, Any]) -> Any:
    params = inspect.signature(registry.lookup("metrics", name)).parameters
    kwargs = dict(extra)
    if "seed" in params:
        kwargs.setdefault("seed", seed)
    return build_metric(name, dataset, **kwargs)


def evaluate_model(model: GenerativeModel, dataset: Dataset, metrics: list[str], *, n: int = 2500,
                   seed: int = 0, args: dict[str, dict[str, Any]] | None = None,
                   batch_size: int = 500, sampler: Sampler | None = None) -> dict[str, float]:
    """Run ``metrics`` on ``model``; returns ``{key: value}`` (keys as the metrics name them,
    prefixed with the metric name when two metrics return the same key)."""
    args = args or {}
    built = {m: make_metric(m, dataset, seed, args.get(m, {})) for m in metrics}
    fake = None
    held_out = dataset.batch("test")[:n]
    real = held_out.x
    out: dict[str, float] = {}
    for name, metric in built.items():
        metric.reset()
        if isinstance(metric, SampleMetric):
            if fake is None:
                check_memory(n, dataset.spec.dim, "eval.n")
                fake = draw_samples(model, n, seed=seed, spec=dataset.spec, sampler=sampler)
                bad = int((~torch.isfinite(fake.flatten(1))).any(1).sum())
                if bad:
                    raise ValueError(f"{bad} of {n} model samples are NaN or infinite, so no sample metric "
                                     "is meaningful; the model's weights or its sampler diverged (check "
                                     "metrics.jsonl, or evaluate an earlier checkpoint)")
            for i in range(0, n, batch_size):
                metric.update(real=real[i:i + batch_size] if i < len(real) else None,
                              fake=fake[i:i + batch_size])
        elif isinstance(metric, ModelMetric):
            for i in range(0, len(real), batch_size):  # metrics choose their own grad mode
                metric.update(model, held_out[i:i + batch_size].to(model.device))
        for key, value in metric.compute().items():
            out[f"{name}/{key}" if key in out else key] = float(value)
    return out
