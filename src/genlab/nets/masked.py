"""Masked and causal layers for autoregressive networks. No probabilistic meaning.

- :class:`MaskedConv2d`: a 2-D convolution whose kernel is multiplied by a fixed
  0/1 mask; channels may be split into ordered *groups* (one per image channel,
  PixelCNN, arXiv 1601.06759) so that at the current pixel an output of group
  ``g`` sees inputs of groups ``< g`` (mask "A") or ``<= g`` (mask "B").
- :class:`GatedPixelBlock`: a gated PixelCNN layer with a vertical and a
  horizontal stack, free of the blind spot (arXiv 1606.05328).
- :class:`CausalConv1d`: a dilated causal 1-D convolution with a one-step
  ``step`` for cached generation (WaveNet, arXiv 1609.03499), and
  :class:`WaveNetBlock` (gated activation, residual and skip outputs).
- :class:`CausalSelfAttention` / :class:`TransformerBlock`: pre-norm decoder
  blocks with a causal mask and a key/value cache for one-token steps.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def channel_groups(n: int, groups: int) -> Tensor:
    """Group index of each of ``n`` channels split into ``groups`` contiguous blocks: ``(n,)`` long."""
    if n < groups:
        raise ValueError(f"cannot split {n} channels into {groups} groups; use at least {groups} channels")
    return torch.arange(n) * groups // n


def gate(t: Tensor, dim: int = 1) -> Tensor:
    """Gated activation ``tanh(a) * sigmoid(b)`` where ``(a, b)`` are the two halves of ``t`` along ``dim``."""
    a, b = t.chunk(2, dim=dim)
    return torch.tanh(a) * torch.sigmoid(b)


class MaskedConv2d(nn.Conv2d):
    """``(B, C_in, H, W) -> (B, C_out, H', W')`` with a masked kernel (no padding is added).

    Every kernel tap is allowed except at ``center``, the tap that reads the
    current pixel, where output channel ``o`` may read input channel ``i`` only if
    ``in_groups[i] < out_groups[o]`` (``mask_type="A"``) or ``<=`` (``"B"``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int], *,
                 center: tuple[int, int], in_groups: Tensor, out_groups: Tensor, mask_type: str = "B"):
        super().__init__(in_channels, out_channels, kernel_size)
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
        mask = torch.ones_like(self.weight)
        gi, go = in_groups.view(1, -1), out_groups.view(-1, 1)
        allowed = (gi < go) if mask_type == "A" else (gi <= go)
        mask[:, :, center[0], center[1]] = allowed.float()
        self.register_buffer("mask", mask)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias)


def shift_down(x: Tensor) -> Tensor:
    """``(B, C, H, W)``: row ``r`` of the result is row ``r - 1`` of ``x`` (zeros in row 0)."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


class GatedPixelBlock(nn.Module):
    """One gated PixelCNN layer, arXiv 1606.05328 (Fig. 2), without conditioning.

    ``forward(v, h) -> (v', h')``, all ``(B, ·, H, W)``. The vertical stack ``v'`` at
    row ``r`` depends on input rows ``<= r`` (a ``(k//2+1) x k`` kernel); it reaches
    the horizontal stack only shifted down one row. The horizontal stack ``h'`` at
    ``(r, c)`` reads row ``r``, columns ``c - k//2 .. c`` with the current pixel
    masked by channel group (mask "A" in the first layer, "B" after), so every
    pixel before ``(r, c)`` in raster order is reachable after enough layers.
    ``image_channels`` is the number of channel groups ``C``.
    """

    def __init__(self, in_channels: int, hidden: int, *, kernel_size: int, image_channels: int, first: bool):
        super().__init__()
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 3, got {kernel_size}")
        k, c = kernel_size, image_channels
        self.k, self.first = k, first
        in_g, hid_g = channel_groups(in_channels, c), channel_groups(hidden, c)
        self.v_conv = nn.Conv2d(in_channels, 2 * hidden, (k // 2 + 1, k))
        self.v_to_h = nn.Conv2d(2 * hidden, 2 * hidden, 1)
        self.h_conv = MaskedConv2d(in_channels, 2 * hidden, (1, k // 2 + 1), center=(0, k // 2), in_groups=in_g,
                                   out_groups=hid_g.repeat(2), mask_type="A" if first else "B")
        self.h_out = MaskedConv2d(hidden, hidden, (1, 1), center=(0, 0), in_groups=hid_g, out_groups=hid_g)

    def forward(self, v: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        k = self.k
        vp = self.v_conv(F.pad(v, (k // 2, k // 2, k // 2, 0)))
        hp = self.h_conv(F.pad(h, (k // 2, 0, 0, 0))) + self.v_to_h(shift_down(vp))
        h_new = self.h_out(gate(hp))
        return gate(vp), (h_new if self.first else h + h_new)


class CausalConv1d(nn.Conv1d):
    """``(B, C_in, T) -> (B, C_out, T)``: output ``t`` reads inputs ``t - (k-1)d, ..., t``
    (``k`` = kernel size, ``d`` = dilation), or ``t - 1 - (k-1)d, ..., t - 1`` with
    ``shift=True``; earlier-than-0 inputs are zeros."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 2, *, dilation: int = 1,
                 shift: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation)
        self.shift = shift
        self.pad = (kernel_size - 1) * dilation + int(shift)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.pad(x, (self.pad, 0)))[..., : x.shape[-1]]

    def step(self, taps: Tensor) -> Tensor:
        """One output from its ``k`` input taps ``(B, C_in, k)`` (oldest first) -> ``(B, C_out)``."""
        return torch.einsum("oik,bik->bo", self.weight, taps) + self.bias


def pointwise(conv: nn.Conv1d, x: Tensor) -> Tensor:
    """Apply a 1x1 ``Conv1d`` to one time step ``(B, C_in) -> (B, C_out)``."""
    return F.linear(x, conv.weight[..., 0], conv.bias)


class WaveNetBlock(nn.Module):
    """Dilated causal conv -> gated activation -> 1x1 residual and 1x1 skip (arXiv 1609.03499).

    ``forward(x (B, R, T)) -> (x + res (B, R, T), skip (B, S, T))``; ``step(taps (B, R, k))``
    does the same for the newest time step given its ``k`` dilated input taps. The last
    block of a stack feeds only the skip path: with ``residual_out=False`` it has no
    residual convolution and returns ``x`` unchanged.
    """

    def __init__(self, residual: int, gate_channels: int, skip: int, *, dilation: int, kernel_size: int = 2,
                 residual_out: bool = True):
        super().__init__()
        self.conv = CausalConv1d(residual, 2 * gate_channels, kernel_size, dilation=dilation)
        self.res = nn.Conv1d(gate_channels, residual, 1) if residual_out else None
        self.skip = nn.Conv1d(gate_channels, skip, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = gate(self.conv(x))
        return (x if self.res is None else x + self.res(z)), self.skip(z)

    def step(self, taps: Tensor) -> tuple[Tensor, Tensor]:
        z = gate(self.conv.step(taps))
        x = taps[..., -1]
        return (x if self.res is None else x + pointwise(self.res, z)), pointwise(self.skip, z)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position ``i`` attends to positions ``<= i``.

    ``forward(x (B, T, D)) -> (B, T, D)``. ``step(x (B, D), cache, t)`` handles position
    ``t`` alone, appending its keys and values to ``cache`` (a dict this method fills).
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return q, k, v  # each (B, heads, T, D/heads)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, causal: bool) -> Tensor:
        att = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if causal:
            t = q.shape[-2]
            mask = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
            att = att.masked_fill(mask, float("-inf"))
        y = att.softmax(-1) @ v
        return self.proj(y.transpose(1, 2).flatten(2))

    def forward(self, x: Tensor) -> Tensor:
        return self._attend(*self._split(x), causal=True)

    def step(self, x: Tensor, cache: dict, t: int) -> Tensor:
        q, k, v = self._split(x.unsqueeze(1))
        if "k" not in cache:
            cache["k"] = k.new_zeros(*k.shape[:2], cache["length"], k.shape[-1])
            cache["v"] = torch.zeros_like(cache["k"])
        cache["k"][:, :, t], cache["v"][:, :, t] = k[:, :, 0], v[:, :, 0]
        return self._attend(q, cache["k"][:, :, : t + 1], cache["v"][:, :, : t + 1], causal=False)[:, 0]


class TransformerBlock(nn.Module):
    """Pre-norm decoder block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``; ``(B, T, D)``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))

    def step(self, x: Tensor, cache: dict, t: int) -> Tensor:
        """``x``: ``(B, D)`` at position ``t`` -> ``(B, D)``."""
        x = x + self.attn.step(self.ln1(x), cache, t)
        return x + self.mlp(self.ln2(x))
