"""Declared capabilities and the check that pairs consumers with models.

An objective or metric lists what it needs in ``requires`` (a tuple of
capability classes from :mod:`genlab.models.base`); :func:`check_requirements`
fails before training with a message naming what is missing and what would fit.
"""

from __future__ import annotations

from genlab.models import base as mb

#: Human names of capabilities, for error messages and ``genlab list``.
CAPABILITY_NAMES: dict[type, str] = {
    mb.GenerativeModel: "sample",
    mb.ReparameterizedModel: "rsample (reparameterised samples)",
    mb.DensityModel: "log_prob (exact likelihood)",
    mb.DiscreteDensityModel: "log_prob over discrete levels",
    mb.Flow: "forward_and_log_det / inverse (a bijection)",
    mb.LatentVariableModel: "prior / likelihood (latent-variable model)",
    mb.DecoderModel: "prior / decode (a generator of codes)",
    mb.EnergyModel: "energy (unnormalised density)",
    mb.ScoreModel: "score (noise-conditional score)",
}


class CapabilityError(TypeError):
    """An objective or metric was paired with a model that lacks a capability."""


def capabilities_of(model_cls: type) -> list[str]:
    return [name for cap, name in CAPABILITY_NAMES.items() if issubclass(model_cls, cap)]


def missing(requires: tuple[type, ...], model_cls: type) -> list[type]:
    return [cap for cap in requires if not issubclass(model_cls, cap)]


def check_requirements(consumer_name: str, requires: tuple[type, ...], model_cls: type,
                       model_name: str, alternatives: list[str] | None = None) -> None:
    """Raise :class:`CapabilityError` if ``model_cls`` lacks any of ``requires``.

    ``alternatives`` are names (of objectives or metrics) that would fit the model;
    they are suggested in the message.
    """
    lacking = missing(requires, model_cls)
    if not lacking:
        return
    needs = ", ".join(CAPABILITY_NAMES.get(c, c.__name__) for c in lacking)
    has = ", ".join(capabilities_of(model_cls)) or "nothing"
    msg = (f"{consumer_name} needs a model with {needs}; {model_name} ({model_cls.__name__}) "
           f"has none (it offers: {has}).")
    if alternatives:
        msg += " Try: " + ", ".join(alternatives) + "."
    raise CapabilityError(msg)
