"""Keyword validation against a class's or function's signature: the leaf module that
configs, net specs and metric arguments share (it imports nothing from genlab)."""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from typing import Any, Literal


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
    if origin in (list, tuple, typing.Sequence, collections.abc.Sequence):
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
                    reserved: tuple[str, ...] = (), required: bool = True) -> dict[str, Any]:
    """Check ``kwargs`` against ``target``'s signature; return them unchanged or raise.
    ``required=False`` skips the check for missing required keys (partial arguments)."""
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
        if required and p.default is inspect.Parameter.empty and name not in kwargs:
            raise ConfigError(f"missing required key {name!r} in {where}; valid keys: {valid}")
    for key, value in kwargs.items():
        hint = hints.get(key, Any)
        if not _type_ok(value, hint):
            raise ConfigError(f"{where}: key {key!r} should be {_hint_name(hint)}, got "
                              f"{type(value).__name__} {value!r}")
    return kwargs
