"""Every name a config or ``genlab list`` can use, in explicit dicts (no import-time
registration). Each entry is a class or builder function; its keyword-only
constructor arguments are the config keys (see :mod:`genlab.config`)."""

from __future__ import annotations

from typing import Any, Callable

from genlab.data import digits as _digits
from genlab.data import synthetic as _syn
from genlab.metrics.modes import ModeCoverage
from genlab.models.gan import ConvGenerator, MLPGenerator
from genlab.objectives.adversarial import MinimaxGAN, NonSaturatingGAN

# --- data -------------------------------------------------------------------
DATASETS: dict[str, Callable[..., Any]] = {
    "ring8": _syn.ring8,
    "grid25": _syn.grid25,
    "digits": _digits.digits,
}

# --- models -----------------------------------------------------------------
MODELS: dict[str, type] = {
    "mlp_generator": MLPGenerator,
    "conv_generator": ConvGenerator,
}

# --- objectives -------------------------------------------------------------
OBJECTIVES: dict[str, type] = {
    "gan": MinimaxGAN,
    "nsgan": NonSaturatingGAN,
}

# --- metrics ----------------------------------------------------------------
METRICS: dict[str, type] = {
    "modes": ModeCoverage,
}

TABLES = {"datasets": DATASETS, "models": MODELS, "objectives": OBJECTIVES, "metrics": METRICS}


def lookup(table: str, name: str) -> Any:
    """``TABLES[table][name]`` with an error that lists the valid names."""
    entries = TABLES[table]
    if name not in entries:
        raise KeyError(f"unknown {table[:-1]} {name!r}; valid {table}: {', '.join(sorted(entries))}")
    return entries[name]


def summary(obj: Any) -> str:
    """First line of an entry's docstring."""
    doc = (obj.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""
