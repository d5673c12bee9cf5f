"""Masked linear layers and the MADE network (Germain et al. 2015, arXiv 1502.03509).

A net with no probabilistic meaning: ``(B, D) -> (B, k * D)`` whose output block
``j`` (``out.reshape(B, k, D)[:, j, i]``) depends only on inputs that come *before*
input ``i`` in the autoregressive ``order``.

``order[i]`` is the position (0-based) of input ``i`` in the ordering. Hidden
units get deterministic degrees ``m = u mod max(1, D - 1)`` for unit ``u``; an
input ``j`` feeds hidden unit ``u`` iff ``m(u) >= order[j]``, hidden feeds hidden iff
the degree does not decrease, and hidden unit ``u`` feeds output ``i`` iff
``order[i] > m(u)`` (strict: output ``i`` never sees input ``i`` or later ones).

Optional context features ``c (B, E)`` (``context_features = E``), as in conditional
MADE / MAF (arXiv 1705.07057, Sec. 3.4): every output may depend on all of ``c``. The
context feeds every unit of the first hidden layer through an unmasked linear map (the
output layer when there is no hidden layer), and hidden degrees become
``m = u mod D - 1``: units of degree ``-1`` see no input, only the context, and feed
every later unit and every output, so that the first output in the order (which sees
no input) still depends on ``c``.
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
    ``context_features``: width ``E`` of the optional context ``forward(x, context (B, E))``.
    """

    def __init__(self, *, in_features: int, hidden: Sequence[int] = (64, 64), out_per_dim: int = 2,
                 order: Sequence[int] | None = None, activation: str = "relu", zero_init: bool = True,
                 context_features: int = 0):
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
            deg = torch.arange(width) % d - 1 if context_features else torch.arange(width) % max(1, d - 1)
            layers += [MaskedLinear(prev_w, width, (deg[:, None] >= prev_deg[None, :]).float()),
                       make_activation(activation)]
            prev_deg, prev_w = deg, width
        out_deg = order_t.repeat(out_per_dim)
        last = MaskedLinear(prev_w, out_per_dim * d, (out_deg[:, None] > prev_deg[None, :]).float())
        if zero_init:
            nn.init.zeros_(last.weight), nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)
        self.context_features = context_features
        if context_features:
            self.context = nn.Linear(context_features, hidden[0] if hidden else out_per_dim * d, bias=False)
            if zero_init and not hidden:
                nn.init.zeros_(self.context.weight)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if self.context_features == 0:
            if context is not None:
                raise ValueError("MADE was built without context features (context_features=0) but got a context")
            return self.net(x)
        if context is None or tuple(context.shape) != (x.shape[0], self.context_features):
            got = None if context is None else tuple(context.shape)
            raise ValueError(f"MADE needs context features ({x.shape[0]}, {self.context_features}), got {got}")
        return self.net[1:](self.net[0](x) + self.context(context))
