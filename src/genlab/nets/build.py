"""Build a net from a config spec ``{name: ..., **kwargs}`` for a given input shape."""

from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from genlab.nets.dcgan import ConvEncoder
from genlab.nets.mlp import MLP

#: Nets that map ``(B, *in_shape)`` to ``(B, out_features)`` (critics, encoders).
ENCODER_NETS: dict[str, type[nn.Module]] = {"mlp": MLP, "conv": ConvEncoder}


def build_encoder(spec: dict[str, Any] | None, *, in_shape: Sequence[int], out_features: int) -> nn.Module:
    """``spec`` is ``{"name": "mlp"|"conv"|"auto", **kwargs}``; ``auto`` (the default)
    picks ``mlp`` for flat data and ``conv`` for ``(C, H, W)`` images."""
    spec = dict(spec or {})
    name = spec.pop("name", "auto")
    if name == "auto":
        name = "conv" if len(in_shape) == 3 else "mlp"
    if name not in ENCODER_NETS:
        raise ValueError(f"unknown net {name!r}; choose one of {sorted(ENCODER_NETS)} or 'auto'")
    from genlab.kwargs import validate_kwargs
    kwargs = validate_kwargs(ENCODER_NETS[name], spec, where=f"net '{name}'",
                             reserved=("in_shape", "out_features"))
    return ENCODER_NETS[name](in_shape=tuple(in_shape), out_features=out_features, **kwargs)
