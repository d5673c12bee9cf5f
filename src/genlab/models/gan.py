"""Implicit generators ``x = g(z)``, ``z ~ N(0, I)`` (GAN generators).

They offer ``sample``/``rsample`` and ``prior``/``decode``, but no ``log_prob``. The
``Conditional...`` generators are class-conditional (``conditional = True``): every call
takes ``context`` labels ``(B,)``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from genlab.data.base import DataSpec
from genlab.kwargs import NonNegativeInt, PositiveInt
from genlab.models.base import DecoderModel
from genlab.nets.dcgan import ConvDecoder
from genlab.nets.mlp import MLP


class MLPGenerator(DecoderModel):
    """An MLP generator for points and tabular rows, ``(B, latent_dim) -> (B, *event_shape)``."""

    def __init__(self, *, data_spec: DataSpec, latent_dim: PositiveInt = 2, hidden: PositiveInt = 128, depth: NonNegativeInt = 3,
                 activation: str = "relu"):
        super().__init__()
        self.event_shape = torch.Size(data_spec.event_shape)
        self.latent_shape = torch.Size((latent_dim,))
        self.net = MLP(in_shape=(latent_dim,), out_features=data_spec.dim, hidden=hidden, depth=depth,
                       activation=activation)

    def decode(self, z: Tensor, *, context: Tensor | None = None) -> Tensor:
        self.check_context(context, z.shape[0])
        return self.net(z).reshape(z.shape[0], *self.event_shape)


class ConvGenerator(DecoderModel):
    """A DCGAN generator for ``(C, H, W)`` images with H, W multiples of 4; outputs in
    [-1, 1] (model space of image data)."""

    def __init__(self, *, data_spec: DataSpec, latent_dim: PositiveInt = 32, width: PositiveInt = 64, batch_norm: bool = True):
        super().__init__()
        if len(data_spec.event_shape) != 3:
            raise ValueError(f"ConvGenerator needs image data (C, H, W); {data_spec.name} has event shape "
                             f"{data_spec.event_shape}. Use model: mlp_generator")
        self.event_shape = torch.Size(data_spec.event_shape)
        self.latent_shape = torch.Size((latent_dim,))
        self.net = ConvDecoder(in_features=latent_dim, out_shape=data_spec.event_shape, width=width,
                               batch_norm=batch_norm)

    def decode(self, z: Tensor, *, context: Tensor | None = None) -> Tensor:
        self.check_context(context, z.shape[0])
        return torch.tanh(self.net(z))


# --- class-conditional generators ---------------------------------------------------
# Conditioning: a learned class embedding ``e(y)`` (``embed_dim`` numbers per class) is
# concatenated to the code, ``x = g([z, e(y)])`` (Mirza & Osindero 2014, arXiv 1411.1784).
# The conv generator's batch norm stays unconditional: concatenation at the input was
# enough for 8x8 digits (docs/conditional.md), and keeps the net a plain ConvDecoder.


def _classes(data_spec: DataSpec, name: str) -> int:
    if data_spec.classes is None:
        raise ValueError(f"{name} needs labelled data (data_spec.classes); {data_spec.name} has none. "
                         f"Use an unconditional generator, or a labelled dataset")
    return int(data_spec.classes)


class ConditionalMLPGenerator(DecoderModel):
    """A class-conditional MLP generator for points and tabular rows: ``x = g([z, e(y)])``,
    ``z`` ``(B, latent_dim)``, labels ``y`` ``(B,)`` -> ``(B, *event_shape)``."""

    conditional: ClassVar[bool] = True

    def __init__(self, *, data_spec: DataSpec, latent_dim: PositiveInt = 2, embed_dim: PositiveInt = 8,
                 hidden: PositiveInt = 128, depth: PositiveInt = 3, activation: str = "relu"):
        super().__init__()
        self.num_classes = _classes(data_spec, "cond_mlp_generator")
        self.event_shape = torch.Size(data_spec.event_shape)
        self.latent_shape = torch.Size((latent_dim,))
        self.embed = nn.Embedding(self.num_classes, embed_dim)
        self.net = MLP(in_shape=(latent_dim + embed_dim,), out_features=data_spec.dim, hidden=hidden, depth=depth,
                       activation=activation)

    def decode(self, z: Tensor, *, context: Tensor | None = None) -> Tensor:
        y = self.check_context(context, z.shape[0])
        return self.net(torch.cat([z, self.embed(y)], 1)).reshape(z.shape[0], *self.event_shape)


class ConditionalConvGenerator(DecoderModel):
    """A class-conditional DCGAN generator for ``(C, H, W)`` images (H, W multiples of 4):
    ``x = tanh(g([z, e(y)]))`` in [-1, 1]; labels ``y`` ``(B,)``."""

    conditional: ClassVar[bool] = True

    def __init__(self, *, data_spec: DataSpec, latent_dim: PositiveInt = 32, embed_dim: PositiveInt = 16,
                 width: PositiveInt = 64, batch_norm: bool = True):
        super().__init__()
        self.num_classes = _classes(data_spec, "cond_conv_generator")
        if len(data_spec.event_shape) != 3:
            raise ValueError(f"ConditionalConvGenerator needs image data (C, H, W); {data_spec.name} has event "
                             f"shape {data_spec.event_shape}. Use model: cond_mlp_generator")
        self.event_shape = torch.Size(data_spec.event_shape)
        self.latent_shape = torch.Size((latent_dim,))
        self.embed = nn.Embedding(self.num_classes, embed_dim)
        self.net = ConvDecoder(in_features=latent_dim + embed_dim, out_shape=data_spec.event_shape, width=width,
                               batch_norm=batch_norm)

    def decode(self, z: Tensor, *, context: Tensor | None = None) -> Tensor:
        y = self.check_context(context, z.shape[0])
        return torch.tanh(self.net(torch.cat([z, self.embed(y)], 1)))
