"""WaveNet (van den Oord et al. 2016, arXiv 1609.03499) over discrete sequence values.

A stack of dilated causal convolutions (kernel 2 by default, dilations
``1, 2, 4, ..., 2^(dilation_cycle-1)`` repeated) with gated activations, residual
and skip connections, and a softmax over ``data_spec.levels`` (256 mu-law codes
for the ``sines`` dataset, see :mod:`genlab.data.mulaw`). The input is the
embedding (one-hot times a matrix) of the previous values, read by a causal
convolution shifted by one step, so the output at ``t`` depends on ``x_<t`` only.
Events of any shape are modelled in flattened (raster) order.

Cached sampling ("fast wavenet", Paine et al. 2016, arXiv 1611.09482): every layer
keeps the history of its inputs, so a new element costs one kernel-sized step of
each layer instead of a pass over the whole sequence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.kwargs import PositiveInt
from genlab.data.base import DataSpec
from genlab.models.autoregressive.base import AbstractCachedAutoregressive
from genlab.nets.masked import CausalConv1d, WaveNetBlock, pointwise
from genlab.sampling.cached import sample_categorical


class WaveNet(AbstractCachedAutoregressive):
    """WaveNet over ``(T,)`` (or any flattened) discrete events.

    ``log_prob(x)``: ``x`` ``(B, *event_shape)`` in model space at exact levels -> ``(B,)`` nats.
    ``logits(k)``: integer levels ``(B, T)`` -> ``(B, levels, T)``, position ``t`` conditioned on ``k_<t``.
    """

    def __init__(self, *, data_spec: DataSpec, residual_channels: int = 32, gate_channels: int = 32,
                 skip_channels: int = 64, layers: PositiveInt = 8, dilation_cycle: int = 8, kernel_size: int = 2,
                 cached_sampling: bool = True):
        super().__init__(data_spec)
        if layers < 1 or dilation_cycle < 1 or kernel_size < 2:
            raise ValueError(f"WaveNet needs layers >= 1, dilation_cycle >= 1, kernel_size >= 2; got {layers}, "
                             f"{dilation_cycle}, {kernel_size}")
        self.cached_sampling = cached_sampling
        self.length = data_spec.dim
        r = residual_channels
        self.embed = nn.Embedding(self.levels, r)
        self.input_conv = CausalConv1d(r, r, kernel_size, shift=True)
        self.blocks = nn.ModuleList(
            WaveNetBlock(r, gate_channels, skip_channels, dilation=2 ** (i % dilation_cycle), kernel_size=kernel_size,
                         residual_out=i < layers - 1)
            for i in range(layers))
        self.out1 = nn.Conv1d(skip_channels, skip_channels, 1)
        self.out2 = nn.Conv1d(skip_channels, self.levels, 1)

    def receptive_field(self) -> int:
        """Number of past elements the output at ``t`` can see."""
        return self.input_conv.pad + sum(b.conv.pad for b in self.blocks)

    def logits(self, k: Tensor) -> Tensor:
        h = self.input_conv(self.embed(k).transpose(1, 2))
        skip = 0
        for block in self.blocks:
            h, s = block(h)
            skip = skip + s
        return self.out2(F.relu(self.out1(F.relu(skip))))

    def log_prob(self, x: Tensor, *, context: Tensor | None = None) -> Tensor:
        self.check_context(context, len(x))
        k = self.to_index(x).flatten(1)
        lp = torch.log_softmax(self.logits(k), dim=1)
        return lp.gather(1, k.unsqueeze(1)).squeeze(1).sum(1)

    @torch.no_grad()
    def sample_naive(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        k = torch.zeros(n, self.length, dtype=torch.long, device=self.device)
        for t in range(self.length):
            k[:, t] = sample_categorical(self.logits(k)[:, :, t], generator)
        return self.to_value(k).reshape(n, *self.event_shape)

    @torch.no_grad()
    def sample_cached(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        t_len, dev = self.length, self.device
        r = self.embed.embedding_dim
        dtype = self.embed.weight.dtype
        p_in = self.input_conv.pad
        e_hist = torch.zeros(n, r, p_in + t_len, device=dev, dtype=dtype)  # time t at index p_in + t
        hists = [torch.zeros(n, r, b.conv.pad + t_len, device=dev, dtype=dtype) for b in self.blocks]
        k = torch.zeros(n, t_len, dtype=torch.long, device=dev)
        for t in range(t_len):
            h = self.input_conv.step(e_hist[:, :, t: t + p_in])  # inputs t - p_in .. t - 1
            skip = 0
            for block, hist in zip(self.blocks, hists):
                pad, d = block.conv.pad, block.conv.dilation[0]
                hist[:, :, pad + t] = h
                h, s = block.step(hist[:, :, t: pad + t + 1: d])  # inputs t - pad .. t, every d-th
                skip = skip + s
            logits = pointwise(self.out2, F.relu(pointwise(self.out1, F.relu(skip))))
            k[:, t] = sample_categorical(logits, generator)
            e_hist[:, :, p_in + t] = self.embed(k[:, t])
        return self.to_value(k).reshape(n, *self.event_shape)
