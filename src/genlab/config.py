"""Run configs: YAML in, validated dataclasses out.

A config has the sections ``data``, ``model``, ``objective`` and ``sampler``
(each ``{name: ..., **kwargs}``, the kwargs being the keyword arguments of the
registered class; ``sampler`` defaults to ``{name: ancestral}``; ``data`` also
takes ``labelled: N``, see :func:`genlab.data.base.hide_labels`),
``train`` (:class:`TrainConfig`) and ``eval`` (:class:`EvalConfig`), plus ``seed``,
``name`` and a free-form ``expected`` block (the result a recipe should reach).
Validation is strict: an unknown key, a wrong type or a missing field raises
:class:`ConfigError` listing the valid keys, and nothing is built or trained.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from genlab.kwargs import (ConfigError, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt,  # noqa: F401
                           Range, config_keys, validate_kwargs)

Beta = Annotated[float, Range(0, 1, hi_open=True)]
Decay = Annotated[float, Range(0, 1, lo_open=True, hi_open=True)]


# --- the run config ---------------------------------------------------------------

@dataclass
class TrainConfig:
    """The ``train:`` section. ``steps`` counts schedule rounds; in one round each
    player takes ``schedule[player]`` optimiser steps (default 1)."""

    steps: PositiveInt = 1000
    batch_size: PositiveInt = 256
    schedule: dict[str, PositiveInt] = field(default_factory=dict)
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    lr: PositiveFloat = 1e-4
    betas: tuple[Beta, Beta] = (0.5, 0.999)
    weight_decay: NonNegativeFloat = 0.0
    optim: dict[str, dict[str, Any]] = field(default_factory=dict)
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    warmup_steps: NonNegativeInt = 0
    grad_clip: PositiveFloat | None = None
    ema: Decay | None = None
    ckpt_every: NonNegativeInt = 500
    log_every: PositiveInt = 50
    sample_every: NonNegativeInt = 0
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    cpu: bool = False
    progress: bool = True


#: Keys a player may override under ``train.optim.<player>``.
OPTIM_KEYS = ("optimizer", "lr", "betas", "weight_decay")


def optim_keys(*, optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam", lr: PositiveFloat = 1e-4,
               betas: tuple[Beta, Beta] = (0.5, 0.999), weight_decay: NonNegativeFloat = 0.0) -> None:
    """The schema of ``train.optim.<player>`` (types and ranges of :data:`OPTIM_KEYS`)."""


@dataclass
class EvalConfig:
    """The ``eval:`` section: metrics run by ``genlab eval`` and, when ``every > 0``,
    every ``every`` steps during training (logged like the losses)."""

    metrics: list[str] = field(default_factory=list)
    n: PositiveInt = 2500
    every: NonNegativeInt = 0
    seed: int = 0
    args: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class RunConfig:
    data: dict[str, Any]
    model: dict[str, Any]
    objective: dict[str, Any]
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    sampler: dict[str, Any] = field(default_factory=lambda: {"name": "ancestral"})
    seed: int = 0
    name: str = ""
    expected: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["train"]["betas"] = list(self.train.betas)
        return d


def _section(d: Any, where: str) -> dict[str, Any]:
    if not isinstance(d, dict) or "name" not in d:
        raise ConfigError(f"section {where!r} must be a mapping with a 'name' key, got {d!r}")
    return dict(d)


def _dataclass_from(cls: type, d: Any, where: str) -> Any:
    if d is None:
        d = {}
    if not isinstance(d, dict):
        raise ConfigError(f"section {where!r} must be a mapping, got {d!r}")
    kwargs = validate_kwargs(cls, d, where=f"section '{where}'")
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return cls(**kwargs)


def from_dict(d: Any) -> RunConfig:
    """Validate the structure of a config mapping (sections and their types).

    Names and keys inside ``data``/``model``/``objective`` are validated against
    the registry by :func:`genlab.build.validate`."""
    if not isinstance(d, dict):
        raise ConfigError(f"a config must be a mapping, got {type(d).__name__}")
    top = {f.name for f in dataclasses.fields(RunConfig)}
    for key in d:
        if key not in top:
            raise ConfigError(f"unknown top-level key {key!r}; valid keys: {', '.join(sorted(top))}")
    for key in ("data", "model", "objective"):
        if key not in d:
            raise ConfigError(f"missing required section {key!r}; a config needs data, model and objective")
    seed = d.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed should be int, got {seed!r}")
    return RunConfig(data=_section(d["data"], "data"), model=_section(d["model"], "model"),
                     objective=_section(d["objective"], "objective"),
                     train=_dataclass_from(TrainConfig, d.get("train"), "train"),
                     eval=_dataclass_from(EvalConfig, d.get("eval"), "eval"),
                     sampler=_section(d.get("sampler") or {"name": "ancestral"}, "sampler"),
                     seed=seed, name=str(d.get("name", "")), expected=dict(d.get("expected") or {}))


def apply_overrides(d: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a config mapping."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        node = d
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {p!r} is not a section")
        node[parts[-1]] = parse_value(raw)
    return d


class YAMLLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1e-3`` and ``5E4`` as floats (YAML 1.2) rather than
    strings (YAML 1.1), as users mean them."""


YAMLLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def parse_value(raw: str) -> Any:
    """A ``--set`` value, parsed as YAML (with :class:`YAMLLoader`)."""
    try:
        return yaml.load(raw, Loader=YAMLLoader)
    except yaml.YAMLError as e:
        raise ConfigError(f"--set value {raw!r} is not valid YAML: {str(e).splitlines()[0]}") from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        d = yaml.load(path.read_text(), Loader=YAMLLoader)
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {e}") from None
    return d or {}


#: Recipes bundled with genlab (``genlab list recipes``).
RECIPES = Path(__file__).resolve().parent / "recipes"


def resolve_recipe(name: str | Path) -> Path:
    """A YAML path, or the name of a bundled recipe (``ring8-nsgan``)."""
    path = Path(name)
    if path.is_file():
        return path
    name = str(name)
    bundled = RECIPES / (name if name.endswith(".yaml") else f"{name}.yaml")
    if bundled.is_file():
        return bundled
    have = ", ".join(sorted(p.stem for p in RECIPES.glob("*.yaml")))
    raise ConfigError(f"config {name!r} is neither a file nor a bundled recipe; recipes: {have}")
