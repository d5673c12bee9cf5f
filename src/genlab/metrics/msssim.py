"""Sample diversity by mean MS-SSIM over random pairs (Odena et al. 2017, arXiv 1610.09585).

MS-SSIM (Wang, Simoncelli & Bovik 2003): at scales ``j = 1..s`` (each a 2x2
average-pool of the previous), contrast-structure terms ``cs_j`` are computed with
a Gaussian window (valid convolution, no padding) and the luminance term only at
the coarsest scale; ``MS-SSIM = l_s^{w_s} prod_j cs_j^{w_j}`` with ``C1 = (0.01 L)^2``,
``C2 = (0.03 L)^2``, channels averaged. Negative ``cs``/``l`` values are clipped
to 0 before the fractional powers (as TensorFlow's ``ssim_multiscale``).

Protocol for the window and scales (``window``/``sigma``/``scales`` = 0 means auto):
* window: 11 taps, sigma 1.5 (the standard) when the shorter image side is at
  least 22; otherwise 3 taps, sigma 0.5 (small images such as 8x8 digits);
* scales: ``s = min(5, floor(log2(side / window)) + 1)``, at least 1 (the
  coarsest scale is still as large as the window). 8x8 -> 2 scales (8, 4)
  with the 3-tap window; 32x32 -> 2 scales with 11 taps; >= 176 -> the standard 5;
* weights: the first ``s`` of Wang et al.'s ``(0.0448, 0.2856, 0.3001, 0.2363,
  0.1333)``, renormalised to sum to 1.
* data range ``L``: ``data_range`` if > 0, else ``max - min`` over the real
  samples (the fake samples when no real ones were given); 1.0 if that is 0.

Metric: ``pairs`` random pairs ``(i, j), i != j`` of fake images (and, as a
reference, of real images) drawn with ``torch.Generator(seed)``; ``msssim`` is the
mean over fake pairs, ``msssim_real`` over real pairs. Lower means more diverse; a
model whose ``msssim`` is well above ``msssim_real`` lacks diversity (mode collapse).
Needs image events ``(C, H, W)`` and at least 2 images.

Memory: the pairs are processed in chunks of at most :func:`pairs_per_chunk` pairs,
sized from the image so that the working memory of one chunk stays under
``MEMORY_BOUND`` (256 MiB) whatever the number of pairs (one pair of ``C x H x W``
images needs at most about ``16 C H W`` float64 values; the Gaussian filter is
applied separably with shifted slices, so no im2col buffer is allocated). A single
pair larger than the bound is still processed, one pair per chunk. Chunking does
not change the result: each pair's value is computed independently.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.data.base import Dataset
from genlab.metrics.base import SampleMetric, _Accumulator
from genlab.metrics.features import check_samples

WANG_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim_protocol(side: int, window: int = 0, sigma: float = 0.0, scales: int = 0) -> tuple[int, float, int]:
    """(window, sigma, scales) for images whose shorter side is ``side`` (0 = auto, see module doc)."""
    if window <= 0:
        window, sigma = (11, 1.5) if side >= 22 else (3, 0.5)
    if sigma <= 0:
        sigma = 1.5 * window / 11
    if side < window:
        raise ValueError(f"MS-SSIM: images of side {side} are smaller than the {window}-tap window")
    if scales <= 0:
        scales = max(1, min(5, int(math.floor(math.log2(side / window))) + 1))
    if side // 2 ** (scales - 1) < window:
        raise ValueError(f"MS-SSIM: {scales} scales shrink side {side} below the {window}-tap window")
    return window, sigma, scales


#: working-memory bound (bytes) for one chunk of image pairs, see the module doc
MEMORY_BOUND = 256 * 2 ** 20
#: float64 values held per pixel of one pair (x, y, five filtered maps, filter and
#: expression temporaries; measured peak about 10, rounded up)
_VALUES_PER_PIXEL = 16
_MAX_CHUNK = 1024


def pairs_per_chunk(image_shape: tuple[int, ...], memory_bound: int = 0) -> int:
    """Pairs of ``image_shape = (C, H, W)`` images processed at once, so that one chunk's
    working memory stays under ``memory_bound`` bytes (0 = ``MEMORY_BOUND``; at least 1,
    at most 1024)."""
    per_pair = _VALUES_PER_PIXEL * 8 * math.prod(image_shape)
    return max(1, min(_MAX_CHUNK, (memory_bound or MEMORY_BOUND) // per_pair))


def _gauss(window: int, sigma: float) -> list[float]:
    t = torch.arange(window, dtype=torch.float64) - (window - 1) / 2
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    return (g / g.sum()).tolist()


def _filter(t: Tensor, g: list[float]) -> Tensor:
    """Valid (no padding) separable Gaussian filter over the last two dims of ``t``.

    Sums of shifted slices: the 2-D window ``g g^T`` without an im2col buffer, so
    the memory is two maps of (about) the input size."""
    k = len(g)
    h, w = t.shape[-2] - k + 1, t.shape[-1] - k + 1
    rows = t[..., 0:h, :] * g[0]
    for a in range(1, k):
        rows.add_(t[..., a:a + h, :], alpha=g[a])
    out = rows[..., 0:w] * g[0]
    for a in range(1, k):
        out.add_(rows[..., a:a + w], alpha=g[a])
    return out


def ms_ssim(x: Tensor, y: Tensor, *, data_range: float, window: int = 0, sigma: float = 0.0,
            scales: int = 0) -> Tensor:
    """MS-SSIM of image pairs ``x, y (B, C, H, W)`` -> ``(B,)`` in [0, 1] (1 for identical images).

    All ``B`` pairs are computed at once (memory about ``16 B C H W`` float64 values);
    :func:`mean_pair_msssim` chunks large batches."""
    x, y = x.double(), y.double()
    win, sig, s = ms_ssim_protocol(min(x.shape[-2:]), window, sigma, scales)
    w = torch.tensor(WANG_WEIGHTS[:s], dtype=torch.float64)
    w = w / w.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    g = _gauss(win, sig)
    out = torch.ones(len(x), dtype=torch.float64)
    for j in range(s):
        mx, my = _filter(x, g), _filter(y, g)
        vx = _filter(x * x, g).sub_(mx * mx)
        vy = _filter(y * y, g).sub_(my * my)
        cov = _filter(x * y, g).sub_(mx * my)
        cs_map = (2 * cov + c2).div_(vx.add_(vy).add_(c2))  # vx is overwritten: no longer needed
        del vy, cov
        if j == s - 1:
            lum = (2 * mx * my + c1).div_((mx * mx).add_(my * my).add_(c1))
            term = (lum * cs_map).mean((1, 2, 3))
        else:
            term = cs_map.mean((1, 2, 3))
        del mx, my, vx, cs_map
        out = out * term.clamp_min(0) ** w[j]
        if j < s - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return out


def mean_pair_msssim(x: Tensor, pairs: int, gen: torch.Generator, *, chunk: int = 0, **kw) -> float:
    """Mean MS-SSIM over ``pairs`` random pairs ``(i, j), i != j`` of the images ``x (N, C, H, W)``.

    The pairs are drawn first (so the result does not depend on ``chunk``), then
    processed ``chunk`` at a time (0 = :func:`pairs_per_chunk` of the image shape)."""
    n = len(x)
    if n < 2:
        raise ValueError(f"MS-SSIM diversity needs at least 2 images, got {n}")
    i = torch.randint(n, (pairs,), generator=gen)
    j = (i + torch.randint(1, n, (pairs,), generator=gen)) % n  # uniform over j != i
    chunk = chunk if chunk > 0 else pairs_per_chunk(tuple(x.shape[1:]))
    vals = torch.cat([ms_ssim(x[i[a:a + chunk]], x[j[a:a + chunk]], **kw) for a in range(0, pairs, chunk)])
    return float(vals.mean())


class MSSSIM(SampleMetric):
    """Mean MS-SSIM over random pairs of fake (and real) images; lower = more diverse.

    ``update(real=(B, C, H, W), fake=(B, C, H, W))`` in data space.
    """

    higher_is_better = {"msssim": False, "msssim_real": False}

    def __init__(self, *, pairs: int = 1000, data_range: float = 0.0, window: int = 0,
                 sigma: float = 0.0, scales: int = 0, seed: int = 0, dataset: Dataset | None = None):
        self.pairs, self.data_range, self.seed = pairs, data_range, seed
        self.window, self.sigma, self.scales = window, sigma, scales
        self.reset()

    def reset(self) -> None:
        self._acc = _Accumulator()

    def update(self, *, real: Tensor | None = None, fake: Tensor | None = None) -> None:
        self._acc.add(real, fake)

    def compute(self) -> dict[str, float]:
        fake = check_samples(self._acc.get("fake"), "fake")
        real = check_samples(self._acc.get("real"), "real") if self._acc.real else None
        if fake.ndim != 4:
            raise ValueError(f"MS-SSIM needs images (N, C, H, W), got {tuple(fake.shape)}")
        ref = real if real is not None else fake
        rng = self.data_range if self.data_range > 0 else float(ref.max() - ref.min()) or 1.0
        kw = dict(data_range=rng, window=self.window, sigma=self.sigma, scales=self.scales)
        gen = torch.Generator().manual_seed(self.seed)
        out = {"msssim": mean_pair_msssim(fake, self.pairs, gen, **kw)}
        if real is not None:
            out["msssim_real"] = mean_pair_msssim(real, self.pairs, gen, **kw)
        return out
