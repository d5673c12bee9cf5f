"""Run configs: YAML in, validated dataclasses out.

A config has the sections ``data``, ``model``, ``objective`` (each ``{name: ...,
**kwargs}``, the kwargs being the keyword arguments of the registered class),
``train`` (:class:`TrainConfig`) and ``eval`` (:class:`EvalConfig`), plus ``seed``,
``name`` and a free-form ``expected`` block (the result a recipe should reach).
Validation is strict: an unknown key, a wrong type or a missing field raises
:class:`ConfigError` listing the valid keys, and nothing is built or trained.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config that did not validate."""


# --- generic keyword validation ---------------------------------------------------

def _type_ok(value: Any, hint: Any) -> bool:
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if origin is Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple, typing.Sequence, __import__("collections.abc").abc.Sequence):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return isinstance(value, (list, tuple)) and all(_type_ok(v, args[0]) for v in value) if args \
            else isinstance(value, (list, tuple))
    if origin is dict:
        return isinstance(value, dict)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _hint_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def config_keys(target: Any, reserved: tuple[str, ...] = ()) -> dict[str, inspect.Parameter]:
    """The config keys a class or function accepts: its keyword arguments minus ``reserved``."""
    sig = inspect.signature(target)
    return {n: p for n, p in sig.parameters.items()
            if n not in reserved and n != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def validate_kwargs(target: Any, kwargs: dict[str, Any], *, where: str,
                    reserved: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check ``kwargs`` against ``target``'s signature; return them unchanged or raise."""
    params = config_keys(target, reserved)
    try:
        hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
    except Exception:  # unresolvable annotations: skip type checks
        hints = {}
    valid = ", ".join(sorted(params)) or "(none)"
    for key in kwargs:
        if key not in params:
            raise ConfigError(f"unknown key {key!r} in {where}; valid keys: {valid}")
    for name, p in params.items():
        if p.default is inspect.Parameter.empty and name not in kwargs:
            raise ConfigError(f"missing required key {name!r} in {where}; valid keys: {valid}")
    for key, value in kwargs.items():
        hint = hints.get(key, Any)
        if not _type_ok(value, hint):
            raise ConfigError(f"{where}: key {key!r} should be {_hint_name(hint)}, got "
                              f"{type(value).__name__} {value!r}")
    return kwargs


# --- the run config ---------------------------------------------------------------

@dataclass
class TrainConfig:
    """The ``train:`` section. ``steps`` counts schedule rounds; in one round each
    player takes ``schedule[player]`` optimiser steps (default 1)."""

    steps: int = 1000
    batch_size: int = 256
    schedule: dict[str, int] = field(default_factory=dict)
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    optim: dict[str, dict[str, Any]] = field(default_factory=dict)
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    warmup_steps: int = 0
    grad_clip: float | None = None
    ema: float | None = None
    ckpt_every: int = 500
    log_every: int = 50
    sample_every: int = 0
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    cpu: bool = False
    progress: bool = True


#: Keys a player may override under ``train.optim.<player>``.
OPTIM_KEYS = ("optimizer", "lr", "betas", "weight_decay")


@dataclass
class EvalConfig:
    """The ``eval:`` section: metrics run by ``genlab eval`` and, when ``every > 0``,
    every ``every`` steps during training (logged like the losses)."""

    metrics: list[str] = field(default_factory=list)
    n: int = 2500
    every: int = 0
    seed: int = 0
    args: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class RunConfig:
    data: dict[str, Any]
    model: dict[str, Any]
    objective: dict[str, Any]
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
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
        node[parts[-1]] = yaml.safe_load(raw)
    return d


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        d = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {e}") from None
    return d or {}


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read, override and validate a YAML config (structure and registry names)."""
    from genlab.build import validate

    cfg = from_dict(apply_overrides(load_yaml(path), overrides or []))
    validate(cfg)
    return cfg
