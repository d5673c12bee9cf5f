"""A decoder-only causal Transformer over discrete tokens (Vaswani et al. 2017,
arXiv 1706.03762; GPT-style pre-norm blocks, Radford et al. 2018).

Tokens are the levels ``0..levels-1`` of each element of a flattened event
(``(T,)`` sequences, or images in raster order). The input at position ``t`` is
the token ``x_{t-1}`` (a start token at ``t = 0``) plus a learned or sinusoidal
position embedding; causal self-attention makes the output at ``t`` depend on
``x_<t`` only. Cached sampling keeps each layer's keys and values (a KV cache),
so a new token costs one step of each layer.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from genlab.kwargs import PositiveInt
from genlab.data.base import DataSpec
from genlab.models.autoregressive.base import AbstractCachedAutoregressive
from genlab.nets.masked import TransformerBlock
from genlab.sampling.cached import sample_categorical


def sinusoidal_positions(length: int, dim: int) -> Tensor:
    """``(length, dim)``: ``sin``/``cos`` of ``pos / 10000^(2i/dim)`` (arXiv 1706.03762, Sec. 3.5)."""
    pos = torch.arange(length, dtype=torch.float64).unsqueeze(1)
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    pe = torch.zeros(length, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return pe.float()


class Transformer(AbstractCachedAutoregressive):
    """Causal Transformer over flattened discrete events.

    ``log_prob(x)``: ``x`` ``(B, *event_shape)`` in model space at exact levels -> ``(B,)`` nats.
    ``logits(k)``: integer levels ``(B, T)`` -> ``(B, T, levels)``, position ``t`` conditioned on ``k_<t``.
    """

    def __init__(self, *, data_spec: DataSpec, dim: int = 64, layers: PositiveInt = 2, heads: PositiveInt = 4, mlp_ratio: int = 4,
                 positions: Literal["learned", "sinusoidal"] = "learned", cached_sampling: bool = True):
        super().__init__(data_spec)
        if positions not in ("learned", "sinusoidal"):
            raise ValueError(f"positions must be 'learned' or 'sinusoidal', got {positions!r}")
        self.cached_sampling = cached_sampling
        self.length = data_spec.dim
        self.start = self.levels  # index of the start token
        self.tok = nn.Embedding(self.levels + 1, dim)
        if positions == "learned":
            self.pos = nn.Parameter(0.02 * torch.randn(self.length, dim))
        else:
            self.register_buffer("pos", sinusoidal_positions(self.length, dim), persistent=False)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_ratio) for _ in range(layers))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, self.levels)

    def logits(self, k: Tensor) -> Tensor:
        inp = torch.cat([torch.full_like(k[:, :1], self.start), k[:, :-1]], dim=1)
        h = self.tok(inp) + self.pos[: k.shape[1]]
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln(h))

    def log_prob(self, x: Tensor, *, context: Tensor | None = None) -> Tensor:
        self.check_context(context, len(x))
        k = self.to_index(x).flatten(1)
        lp = torch.log_softmax(self.logits(k), dim=-1)
        return lp.gather(-1, k.unsqueeze(-1)).squeeze(-1).sum(1)

    @torch.no_grad()
    def sample_naive(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        k = torch.zeros(n, self.length, dtype=torch.long, device=self.device)
        for t in range(self.length):
            k[:, t] = sample_categorical(self.logits(k[:, : t + 1])[:, t], generator)
        return self.to_value(k).reshape(n, *self.event_shape)

    @torch.no_grad()
    def sample_cached(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        k = torch.zeros(n, self.length, dtype=torch.long, device=self.device)
        caches = [{"length": self.length} for _ in self.blocks]
        prev = torch.full((n,), self.start, dtype=torch.long, device=self.device)
        for t in range(self.length):
            h = self.tok(prev) + self.pos[t]
            for block, cache in zip(self.blocks, caches):
                h = block.step(h, cache, t)
            k[:, t] = prev = sample_categorical(self.head(self.ln(h)), generator)
        return self.to_value(k).reshape(n, *self.event_shape)
