"""Implicit generators ``x = g(z)``, ``z ~ N(0, I)`` (GAN generators).

They offer ``sample``/``rsample`` and ``prior``/``decode``, but no ``log_prob``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from genlab.data.base import DataSpec
from genlab.models.base import DecoderModel
from genlab.nets.dcgan import ConvDecoder
from genlab.nets.mlp import MLP


class MLPGenerator(DecoderModel):
    """An MLP generator for points and tabular rows, ``(B, latent_dim) -> (B, *event_shape)``."""

    def __init__(self, *, data_spec: DataSpec, latent_dim: int = 2, hidden: int = 128, depth: int = 3,
                 activation: str = "relu"):
        super().__init__()
        self.event_shape = torch.Size(data_spec.event_shape)
        self.latent_shape = torch.Size((latent_dim,))
        self.net = MLP(in_shape=(latent_dim,), out_features=data_spec.dim, hidden=hidden, depth=depth,
                       activation=activation)

    def decode(self, z: Tensor, *, context: Tensor | None = None) -> Tensor:
        return self.net(z).reshape(z.shape[0], *self.event_shape)


class ConvGenerator(DecoderModel):
    """A DCGAN generator for ``(C, H, W)`` images with H, W multiples of 4; outputs in
    [-1, 1] (model space of image data)."""

    def __init__(self, *, data_spec: DataSpec, latent_dim: int = 32, width: int = 64, batch_norm: bool = True):
        super().__init__()
        if len(data_spec.event_shape) != 3:
            raise ValueError(f"ConvGenerator needs image data (C, H, W); {data_spec.name} has event shape "
                             f"{data_spec.event_shape}. Use model: mlp_generator")
        self.event_shape = torch.Size(data_spec.event_shape)
        self.latent_shape = torch.Size((latent_dim,))
        self.net = ConvDecoder(in_features=latent_dim, out_shape=data_spec.event_shape, width=width,
                               batch_norm=batch_norm)

    def decode(self, z: Tensor, *, context: Tensor | None = None) -> Tensor:
        return torch.tanh(self.net(z))
