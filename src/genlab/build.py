"""Turn a validated :class:`~genlab.config.RunConfig` into objects.

Reserved constructor keywords (filled by genlab, never by configs):
``data_spec`` for models, ``dataset``/``data_spec``/``seed`` for metrics. The
``data`` section's ``labelled`` key is genlab's too (it hides labels after the
dataset is built).
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genlab import registry

from genlab.capabilities import check_conditioning, check_requirements, missing
from genlab.config import OPTIM_KEYS, ConfigError, optim_keys, RunConfig, apply_overrides, from_dict, load_yaml, validate_kwargs
from genlab.data.base import DataSpec, Dataset, hide_labels
from genlab.metrics.base import Metric
from genlab.models.base import GenerativeModel
from genlab.objectives.base import Objective
from genlab.sampling.samplers import Sampler

MODEL_RESERVED = ("data_spec",)
METRIC_RESERVED = ("dataset", "data_spec", "proposal_fn")
DATA_RESERVED = ("labelled",)


def split(section: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    d = dict(section)
    return d.pop("name"), d


def _lookup(table: str, name: str) -> Any:
    try:
        return registry.lookup(table, name)
    except KeyError as e:
        raise ConfigError(e.args[0]) from None


def dataset_class(builder: Any) -> type:
    """The dataset class a builder returns (from its return annotation)."""
    if inspect.isclass(builder):
        return builder
    ret = typing.get_type_hints(builder).get("return", Dataset)
    return ret if inspect.isclass(ret) else Dataset


def fitting(table: str, model_cls: type) -> list[str]:
    """Names in ``table`` whose requirements ``model_cls`` meets."""
    return [n for n, c in registry.TABLES[table].items() if not missing(getattr(c, "requires", ()), model_cls)]


def check_metric(name: str, model_cls: type, model_name: str, data_cls: type, data_name: str,
                 args: dict[str, Any] | None = None) -> None:
    """Check a metric's name, its arguments (``eval.args``) and its needs of model and data."""
    cls = _lookup("metrics", name)
    check_requirements(f"metric '{name}'", cls.requires, model_cls, model_name, fitting("metrics", model_cls))
    for need in cls.requires_data:
        if not issubclass(data_cls, need):
            raise ConfigError(f"metric '{name}' needs a dataset of kind {need.__name__}; '{data_name}' is not one")
    validate_kwargs(cls, dict(args or {}), where=f"eval.args.{name}", reserved=METRIC_RESERVED,
                    required=False)


def check_metrics_for_data(metrics: list[str], args: dict[str, dict[str, Any]], spec: DataSpec) -> None:
    """Checks that need the data's shape: feature extractors exist for it (FID on 16x16 RGB
    images with ``features: auto`` fails here, before training, not after)."""
    from genlab.metrics.features import feature_name

    for m in metrics:
        if "features" in inspect.signature(_lookup("metrics", m)).parameters:
            try:
                feature_name(str((args.get(m) or {}).get("features", "auto")), spec.event_shape)
            except ValueError as e:
                raise ConfigError(f"metric '{m}': {e} (set eval.args.{m}.features)") from None


def check_sampler(section: dict[str, Any], model_cls: type, model_name: str) -> None:
    """Check a ``sampler:`` section's name, keys and the capabilities it needs."""
    name, kw = split(section)
    cls = _lookup("samplers", name)
    check_requirements(f"sampler '{name}'", cls.requires, model_cls, model_name, fitting("samplers", model_cls))
    validate_kwargs(cls, kw, where=f"sampler '{name}'")


def validate(cfg: RunConfig) -> None:
    """Check every name, key and capability pairing; raise before anything is built."""
    dname, dkw = split(cfg.data)
    dfn = _lookup("datasets", dname)
    labelled = dkw.pop("labelled", None)
    if labelled is not None and (not isinstance(labelled, int) or isinstance(labelled, bool) or labelled < 0):
        raise ConfigError(f"data.labelled should be a non-negative int (labels kept per split), got {labelled!r}")
    validate_kwargs(dfn, dkw, where=f"data '{dname}'")
    mname, mkw = split(cfg.model)
    mcls = _lookup("models", mname)
    validate_kwargs(mcls, mkw, where=f"model '{mname}'", reserved=MODEL_RESERVED)
    oname, okw = split(cfg.objective)
    ocls = _lookup("objectives", oname)
    check_requirements(f"objective '{oname}'", ocls.requires, mcls, mname, fitting("objectives", mcls))
    check_conditioning(f"objective '{oname}'", ocls.conditional, mcls, mname)
    if labelled is not None and getattr(mcls, "conditional", False) and not ocls.partial_labels:
        raise ConfigError(f"objective '{oname}' trains the conditional model {mname} on every example's label, but "
                          f"data.labelled: {labelled} hides the others; drop data.labelled, or use an objective "
                          "made for partly labelled data (m2)")
    validate_kwargs(ocls, okw, where=f"objective '{oname}'")
    check_sampler(cfg.sampler, mcls, mname)
    for m in cfg.eval.args:
        if m not in cfg.eval.metrics:
            raise ConfigError(f"eval.args has arguments for metric {m!r}, which is not in eval.metrics "
                              f"({', '.join(cfg.eval.metrics) or 'empty'}); add it there or remove its arguments")
    for m in cfg.eval.metrics:
        check_metric(m, mcls, mname, dataset_class(dfn), dname, cfg.eval.args.get(m))
    players = ocls.players
    for where, keys in (("train.schedule", cfg.train.schedule), ("train.optim", cfg.train.optim)):
        for p in keys:
            if p not in players:
                raise ConfigError(f"{where}: unknown player {p!r}; objective '{oname}' has players "
                                  f"{', '.join(players)}")
    for p, over in cfg.train.optim.items():
        if not isinstance(over, dict):
            raise ConfigError(f"train.optim.{p} must be a mapping of {', '.join(OPTIM_KEYS)}, got {over!r}")
        validate_kwargs(optim_keys, over, where=f"train.optim.{p}")


@dataclass
class Experiment:
    dataset: Dataset
    model: GenerativeModel
    objective: Objective
    sampler: Sampler


def build_dataset(section: dict[str, Any], seed: int = 0) -> Dataset:
    """The dataset of a ``data:`` section; ``labelled: N`` keeps N labels per split (seeded)."""
    name, kw = split(section)
    labelled = kw.pop("labelled", None)
    fn = _lookup("datasets", name)
    data = fn(**validate_kwargs(fn, kw, where=f"data '{name}'"))
    if labelled is not None:
        hide_labels(data, labelled, seed=seed)
    return data


def build_sampler(section: dict[str, Any] | None) -> Sampler:
    """A sampler from a ``sampler:`` section (``None``: ancestral)."""
    name, kw = split(section or {"name": "ancestral"})
    cls = _lookup("samplers", name)
    return cls(**validate_kwargs(cls, kw, where=f"sampler '{name}'"))


def build_model(section: dict[str, Any], data_spec: DataSpec, seed: int) -> GenerativeModel:
    """Build a model with weights initialised from ``seed`` (global RNG untouched)."""
    name, kw = split(section)
    cls = _lookup("models", name)
    validate_kwargs(cls, kw, where=f"model '{name}'", reserved=MODEL_RESERVED)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(data_spec=data_spec, **kw)


def build_objective(section: dict[str, Any], model: GenerativeModel, data_spec: DataSpec, seed: int) -> Objective:
    name, kw = split(section)
    cls = _lookup("objectives", name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 7919)
        obj = cls(**validate_kwargs(cls, kw, where=f"objective '{name}'"))
        obj.setup(model, data_spec)
    return obj


def build_metric(name: str, dataset: Dataset | None = None, **kwargs: Any) -> Metric:
    cls = _lookup("metrics", name)
    if "dataset" in inspect.signature(cls).parameters:
        kwargs["dataset"] = dataset
    return cls(**kwargs)


def build(cfg: RunConfig) -> Experiment:
    """Validate, then build dataset, model, objective (helper nets included) and sampler."""
    validate(cfg)
    dataset = build_dataset(cfg.data, cfg.seed)
    check_metrics_for_data(cfg.eval.metrics, cfg.eval.args, dataset.spec)
    model = build_model(cfg.model, dataset.spec, cfg.seed)
    objective = build_objective(cfg.objective, model, dataset.spec, cfg.seed)
    return Experiment(dataset, model, objective, build_sampler(cfg.sampler))


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read, override and validate a YAML config (structure, registry names, capabilities)."""
    cfg = from_dict(apply_overrides(load_yaml(path), overrides or []))
    validate(cfg)
    return cfg
