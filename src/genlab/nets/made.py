"""Masked linear layers and the MADE network (Germain et al. 2015, arXiv 1502.03509).

A net with no probabilistic meaning: ``(B, D) -> (B, k * D)`` whose output block
``j`` (``out.reshape(B, k, D)[:, j, i]``) depends only on inputs that come *before*
input ``i`` in the autoregressive ``order``.

``order[i]`` is the position (0-based) of input ``i`` in the ordering. Hidden
units get deterministic degrees ``m = u mod max(1, D - 1)`` for unit ``u``; an
input ``j`` feeds hidden unit ``u`` iff ``m(u) >= order[j]``, hidden feeds hidden iff
the degree does not decrease, and hidden unit ``u`` feeds output ``i`` iff
``order[i] > m(u)`` (strict: output ``i`` never sees input ``i`` or later ones).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.nets.mlp import activation as make_activation


class MaskedLinear(nn.Linear):
    """``nn.Linear`` whose weight is multiplied by a fixed 0/1 ``mask (out, in)`` buffer."""

    def __init__(self, in_features: int, out_features: int, mask: Tensor):
        super().__init__(in_features, out_features)
        if tuple(mask.shape) != (out_features, in_features):
            raise ValueError(f"mask shape {tuple(mask.shape)} != (out, in) = ({out_features}, {in_features})")
        self.register_buffer("mask", mask.float())

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """``(B, D) -> (B, k * D)`` autoregressive MLP with masked connections.

    ``order``: permutation of ``range(D)`` giving each input's position
    (default: natural order). ``zero_init``: start the output layer at zero.
    """

    def __init__(self, *, in_features: int, hidden: Sequence[int] = (64, 64), out_per_dim: int = 2,
                 order: Sequence[int] | None = None, activation: str = "relu", zero_init: bool = True):
        super().__init__()
        d = in_features
        order_t = torch.arange(d) if order is None else torch.as_tensor(list(order))
        if sorted(order_t.tolist()) != list(range(d)):
            raise ValueError(f"order must be a permutation of range({d}), got {order_t.tolist()}")
        self.in_features, self.out_per_dim = d, out_per_dim
        self.register_buffer("order", order_t)
        layers: list[nn.Module] = []
        prev_deg, prev_w = order_t, d
        for width in hidden:
            deg = torch.arange(width) % max(1, d - 1)
            layers += [MaskedLinear(prev_w, width, (deg[:, None] >= prev_deg[None, :]).float()),
                       make_activation(activation)]
            prev_deg, prev_w = deg, width
        out_deg = order_t.repeat(out_per_dim)
        last = MaskedLinear(prev_w, out_per_dim * d, (out_deg[:, None] > prev_deg[None, :]).float())
        if zero_init:
            nn.init.zeros_(last.weight), nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
