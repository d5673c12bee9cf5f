"""Declared capabilities and the check that pairs consumers with models.

An objective, metric or sampler lists what it needs in ``requires`` (a tuple of
capability classes from :mod:`genlab.models.base`; an entry that is itself a
tuple means "any one of these"); :func:`check_requirements` fails before
training with a message naming what is missing and what would fit.
:func:`check_conditioning` pairs conditional objectives with conditional models.
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
    mb.AmortizedPosterior: "posterior (amortised inference)",
    mb.Classifier: "classify (a classifier q(y|x))",
    mb.ClassLatentModel: "class latent y (class_prior / likelihood_given / posterior_given)",
    mb.DecoderModel: "prior / decode (a generator of codes)",
    mb.EnergyModel: "energy (unnormalised density)",
    mb.ScoreModel: "score (noise-conditional score)",
}


class CapabilityError(TypeError):
    """An objective or metric was paired with a model that lacks a capability."""


def capabilities_of(model_cls: type) -> list[str]:
    caps = [name for cap, name in CAPABILITY_NAMES.items() if issubclass(model_cls, cap)]
    return caps + (["conditional (context: class labels)"] if getattr(model_cls, "conditional", False) else [])


def missing(requires: tuple, model_cls: type) -> list:
    """The entries of ``requires`` that ``model_cls`` lacks (a tuple entry: it has none of them)."""
    return [cap for cap in requires if not issubclass(model_cls, cap)]


def _name(cap) -> str:
    if isinstance(cap, tuple):
        return " or ".join(_name(c) for c in cap)
    return CAPABILITY_NAMES.get(cap, cap.__name__)


def check_conditioning(consumer_name: str, conditional: bool | None, model_cls: type, model_name: str) -> None:
    """Raise :class:`CapabilityError` when a conditional consumer meets an unconditional model,
    or the reverse (``conditional=None`` accepts both)."""
    model_cond = bool(getattr(model_cls, "conditional", False))
    if conditional is None or conditional == model_cond:
        return
    if conditional:
        raise CapabilityError(f"{consumer_name} is conditional (it trains on labels) but {model_name} "
                              f"({model_cls.__name__}) is unconditional. Use a conditional model such as "
                              "cond_mlp_generator or cond_conv_generator")
    raise CapabilityError(f"{consumer_name} is unconditional but {model_name} ({model_cls.__name__}) is "
                          "conditional (it needs class labels). Use a conditional objective such as acgan, "
                          "tacgan or cgan, or an unconditional model")


def check_requirements(consumer_name: str, requires: tuple, model_cls: type,
                       model_name: str, alternatives: list[str] | None = None) -> None:
    """Raise :class:`CapabilityError` if ``model_cls`` lacks any of ``requires``.

    ``alternatives`` are names (of objectives or metrics) that would fit the model;
    they are suggested in the message.
    """
    lacking = missing(requires, model_cls)
    if not lacking:
        return
    needs = ", ".join(_name(c) for c in lacking)
    has = ", ".join(capabilities_of(model_cls)) or "nothing"
    msg = (f"{consumer_name} needs a model with {needs}; {model_name} ({model_cls.__name__}) "
           f"has none (it offers: {has}).")
    if alternatives:
        msg += " Try: " + ", ".join(alternatives) + "."
    raise CapabilityError(msg)
