"""Gated PixelCNN (van den Oord et al. 2016, arXiv 1606.05328) over discrete pixel levels.

Pixels are ordered in raster order (row by row, left to right) and, within a
pixel, channel by channel (``c = 0..C-1``). The network is a stack of
:class:`~genlab.nets.masked.GatedPixelBlock` layers (vertical and horizontal
stacks, no blind spot) and a masked 1x1 head. Two output distributions per
sub-pixel, chosen by ``output``:

- ``"categorical"``: a softmax over ``data_spec.levels`` (17 for digits, 256 for 8-bit).
- ``"logistic_mixture"``: a mixture of ``mixtures`` discretised logistics (PixelCNN++,
  Salimans et al. 2017, arXiv 1701.05517). Unlike PixelCNN++, which ties a pixel's
  channels through linear mean coefficients, here each channel's mixture
  parameters come from the channel-masked network and so already depend on the
  earlier channels of the same pixel.

Sampling is naive: one full pass per sub-pixel (``H * W * C`` passes). A cache
(Ramachandran et al. 2017, arXiv 1704.06001) needs row buffers for the vertical
stack and column buffers for the horizontal stack of every layer; for the small
images genlab trains on, the receptive field covers the whole image and a full
pass is one batched convolution, so this is not implemented.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.kwargs import PositiveInt
from genlab.data.base import DataSpec
from genlab.models.autoregressive.base import AbstractAutoregressive
from genlab.nets.masked import GatedPixelBlock, MaskedConv2d, channel_groups
from genlab.sampling.cached import sample_categorical


def discretized_logistic_mixture_log_prob(logit_pi: Tensor, mu: Tensor, log_s: Tensor, k: Tensor,
                                          values: Tensor) -> Tensor:
    """``log P(k)`` under a mixture of logistics discretised to bins around ``values`` ``(L,)``.

    Parameters are ``(..., K)``, ``k`` is a long tensor broadcastable to ``(...)``.
    The bin of level ``k`` is ``[values[k] - δ, values[k] + δ]`` (``δ`` half the level
    spacing), the first bin extends to ``-inf`` and the last to ``+inf``, so the
    probabilities of all levels sum to one exactly. Uses
    ``σ(a) - σ(b) = σ(a) σ(-b) (1 - e^{b-a})`` for stability.
    """
    half = (values[1] - values[0]) / 2
    inv_s = torch.exp(-log_s)
    a = (values[k].unsqueeze(-1) + half - mu) * inv_s  # upper edge (finite; the last bin uses +inf)
    b = (values[k].unsqueeze(-1) - half - mu) * inv_s  # lower edge (finite; the first bin uses -inf)
    log_cdf_a, log_sf_b = F.logsigmoid(a), F.logsigmoid(-b)
    mid = log_cdf_a + log_sf_b + torch.log(-torch.expm1(b - a))
    k = k.unsqueeze(-1)
    log_bin = torch.where(k == 0, log_cdf_a, torch.where(k == len(values) - 1, log_sf_b, mid))
    return torch.logsumexp(torch.log_softmax(logit_pi, -1) + log_bin, dim=-1)


class PixelCNN(AbstractAutoregressive):
    """Gated PixelCNN over ``(C, H, W)`` images with ``levels`` values per sub-pixel.

    ``log_prob(x)``: ``x`` ``(B, C, H, W)`` in model space at exact levels -> ``(B,)`` nats.
    ``log_probs(x)``: ``(B, C, levels, H, W)`` conditional log-probabilities of every level.
    """

    def __init__(self, *, data_spec: DataSpec, hidden: PositiveInt = 64, layers: PositiveInt = 6, kernel_size: int = 3,
                 output: Literal["categorical", "logistic_mixture"] = "categorical", mixtures: int = 5,
                 min_log_scale: float = -7.0):
        super().__init__(data_spec)
        if len(self.event_shape) != 3:
            raise ValueError(f"PixelCNN needs image data (C, H, W); {data_spec.name!r} has event shape "
                             f"{tuple(self.event_shape)}. Use model: wavenet or transformer for sequences")
        if layers < 1:
            raise ValueError(f"PixelCNN needs layers >= 1, got {layers}")
        if output not in ("categorical", "logistic_mixture"):
            raise ValueError(f"output must be 'categorical' or 'logistic_mixture', got {output!r}")
        c = self.event_shape[0]
        self.output, self.mixtures, self.min_log_scale = output, mixtures, min_log_scale
        self.params_per_channel = self.levels if output == "categorical" else 3 * mixtures
        self.blocks = nn.ModuleList(
            GatedPixelBlock(c if i == 0 else hidden, hidden, kernel_size=kernel_size, image_channels=c, first=i == 0)
            for i in range(layers))
        hid_g, out_g = channel_groups(hidden, c), channel_groups(c * self.params_per_channel, c)
        self.head1 = MaskedConv2d(hidden, hidden, (1, 1), center=(0, 0), in_groups=hid_g, out_groups=hid_g)
        self.head2 = MaskedConv2d(hidden, c * self.params_per_channel, (1, 1), center=(0, 0), in_groups=hid_g,
                                  out_groups=out_g)
        self.register_buffer("values", self.spec.to_model(torch.arange(self.levels, dtype=torch.float64)).float(),
                             persistent=False)

    def params(self, x: Tensor) -> Tensor:
        """Raw output ``(B, C, P, H, W)`` for model-space input ``(B, C, H, W)``; ``P`` is
        ``levels`` (logits) or ``3 * mixtures`` (mixture logits, means, log-scales)."""
        v = h = x
        for block in self.blocks:
            v, h = block(v, h)
        out = self.head2(F.relu(self.head1(F.relu(h))))
        return out.view(x.shape[0], x.shape[1], self.params_per_channel, *x.shape[2:])

    def _split(self, p: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        logit_pi, mu, log_s = p.split(self.mixtures, dim=-1)
        return logit_pi, mu, log_s.clamp_min(self.min_log_scale)

    def _all_levels(self, p: Tensor) -> Tensor:
        """``p``: ``(..., P)`` parameters -> ``(..., levels)`` log-probabilities of every level."""
        if self.output == "categorical":
            return torch.log_softmax(p, -1)
        k = torch.arange(self.levels, device=p.device)
        return discretized_logistic_mixture_log_prob(*(t.unsqueeze(-2) for t in self._split(p)), k,
                                                     self.values.to(p.dtype))

    def log_probs(self, x: Tensor) -> Tensor:
        """``(B, C, levels, H, W)``: log-probability of every level at every sub-pixel given the
        sub-pixels before it in ``x``."""
        return self._all_levels(self.params(x).movedim(2, -1)).movedim(-1, 2)

    def log_prob(self, x: Tensor, *, context: Tensor | None = None) -> Tensor:
        self.check_context(context, len(x))
        k = self.to_index(x)
        p = self.params(x).movedim(2, -1)  # (B, C, H, W, P)
        if self.output == "categorical":
            lp = torch.log_softmax(p, -1).gather(-1, k.unsqueeze(-1)).squeeze(-1)
        else:
            lp = discretized_logistic_mixture_log_prob(*self._split(p), k, self.values.to(p.dtype))
        return lp.flatten(1).sum(1)

    @torch.no_grad()
    def sample_naive(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        c, hgt, wid = self.event_shape
        k = torch.zeros(n, c, hgt, wid, dtype=torch.long, device=self.device)
        for r in range(hgt):
            for col in range(wid):
                for ch in range(c):
                    p = self.params(self.to_value(k))[:, ch, :, r, col]  # (n, P)
                    k[:, ch, r, col] = sample_categorical(self._all_levels(p), generator)
        return self.to_value(k)
