"""Keyword validation against a class's or function's signature: the leaf module that
configs, net specs and metric arguments share (it imports nothing from genlab).

Types come from annotations; ranges too, with ``typing.Annotated``::

    steps: PositiveInt = 1000            # an int >= 1
    ema: Annotated[float, Range(0, 1, lo_open=True, hi_open=True)] | None = None

An error names the key, the value and the valid range.
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal


class ConfigError(ValueError):
    """A config that did not validate."""


@dataclass(frozen=True)
class Range:
    """A numeric range for ``Annotated[...]`` hints; ``None`` bounds are open-ended. Values
    must also be finite."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None  # the type check reports it
        if not math.isfinite(value):
            return f"must be finite, got {value!r}"
        low_bad = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
        high_bad = self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi)
        return f"must be {self.describe()}, got {value!r}" if low_bad or high_bad else None

    def describe(self) -> str:
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {self.lo:g}")
        if self.hi is not None:
            parts.append(f"{'<' if self.hi_open else '<='} {self.hi:g}")
        return " and ".join(parts) or "finite"


PositiveInt = Annotated[int, Range(1)]
NonNegativeInt = Annotated[int, Range(0)]
PositiveFloat = Annotated[float, Range(0, lo_open=True)]
NonNegativeFloat = Annotated[float, Range(0)]
Probability = Annotated[float, Range(0, 1)]


def range_problem(value: Any, hint: Any) -> str | None:
    """What is out of range in ``value`` for ``hint`` (through Optional, lists, tuples and
    dict values), or ``None``."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *extras = typing.get_args(hint)
        for r in extras:
            if isinstance(r, Range) and (msg := r.problem(value)):
                return msg
        return range_problem(value, base)
    if origin in (typing.Union, types.UnionType):
        fits = [h for h in typing.get_args(hint) if _type_ok(value, h)]
        return range_problem(value, fits[0]) if fits else None
    if origin in (list, tuple, typing.Sequence, collections.abc.Sequence) and isinstance(value, (list, tuple)):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if origin is tuple and len(args) > 1 and len(value) != len(args):
            return f"must have {len(args)} entries, got {len(value)}"
        for i, v in enumerate(value):
            if args and (msg := range_problem(v, args[min(i, len(args) - 1)])):
                return f"entry {i} {msg}"
    if origin is dict and isinstance(value, dict):
        args = typing.get_args(hint)
        for k, v in value.items():
            if len(args) == 2 and (msg := range_problem(v, args[1])):
                return f"entry {k!r} {msg}"
    return None


# --- generic keyword validation ---------------------------------------------------

def _type_ok(value: Any, hint: Any) -> bool:
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(hint)
    if origin is Annotated:
        return _type_ok(value, typing.get_args(hint)[0])
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
    if origin in (list, tuple, typing.Sequence, collections.abc.Sequence):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return isinstance(value, (list, tuple)) and all(_type_ok(v, args[0]) for v in value) if args \
            else isinstance(value, (list, tuple))
    if origin is dict:
        args = typing.get_args(hint)
        return isinstance(value, dict) and (len(args) != 2 or all(_type_ok(v, args[1]) for v in value.values()))
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _hint_name(hint: Any) -> str:
    if typing.get_origin(hint) is Annotated:
        return _hint_name(typing.get_args(hint)[0])
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def config_keys(target: Any, reserved: tuple[str, ...] = ()) -> dict[str, inspect.Parameter]:
    """The config keys a class or function accepts: its keyword arguments minus ``reserved``."""
    sig = inspect.signature(target)
    return {n: p for n, p in sig.parameters.items()
            if n not in reserved and n != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def validate_kwargs(target: Any, kwargs: dict[str, Any], *, where: str,
                    reserved: tuple[str, ...] = (), required: bool = True) -> dict[str, Any]:
    """Check ``kwargs`` against ``target``'s signature; return them unchanged or raise.
    ``required=False`` skips the check for missing required keys (partial arguments)."""
    params = config_keys(target, reserved)
    try:
        hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target,
                                      include_extras=True)
    except Exception:  # unresolvable annotations: skip type checks
        hints = {}
    valid = ", ".join(sorted(params)) or "(none)"
    for key in kwargs:
        if key not in params:
            raise ConfigError(f"unknown key {key!r} in {where}; valid keys: {valid}")
    for name, p in params.items():
        if required and p.default is inspect.Parameter.empty and name not in kwargs:
            raise ConfigError(f"missing required key {name!r} in {where}; valid keys: {valid}")
    for key, value in kwargs.items():
        hint = hints.get(key, Any)
        if not _type_ok(value, hint):
            raise ConfigError(f"{where}: key {key!r} should be {_hint_name(hint)}, got "
                              f"{type(value).__name__} {value!r}")
        if msg := range_problem(value, hint):
            raise ConfigError(f"{where}: key {key!r} {msg}")
    return kwargs


def describe_keys(target: Any, reserved: tuple[str, ...] = ()) -> list[tuple[str, str, str, str]]:
    """``(key, type, default, allowed values or range)`` for every config key of ``target``."""
    try:
        hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target, include_extras=True)
    except Exception:  # noqa: BLE001 - unresolvable annotations: show names only
        hints = {}
    rows = []
    for name, p in config_keys(target, reserved).items():
        hint = hints.get(name, Any)
        default = "(required)" if p.default is inspect.Parameter.empty else repr(p.default)
        rows.append((name, _hint_name(hint).replace("NoneType", "None"), default, _allowed(hint)))
    return rows


def _allowed(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    if origin is Annotated:
        ranges = [r.describe() for r in typing.get_args(hint)[1:] if isinstance(r, Range)]
        return " ".join(ranges) or _allowed(typing.get_args(hint)[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(a for a in (_allowed(h) for h in typing.get_args(hint)) if a)
    return ""
