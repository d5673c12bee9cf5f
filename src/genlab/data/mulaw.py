"""mu-law companding and quantisation (ITU-T G.711; used by WaveNet, arXiv 1609.03499).

``compress(x) = sign(x) ln(1 + mu |x|) / ln(1 + mu)`` maps ``[-1, 1]`` onto
``[-1, 1]``, spending more levels near 0; ``expand`` is its exact inverse.
``encode`` quantises the compressed value to ``levels = mu + 1`` integer codes
``0..mu`` (rounding to the nearest of ``levels`` evenly spaced points), ``decode``
maps codes back to amplitudes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _mu(levels: int) -> int:
    if levels < 2:
        raise ValueError(f"mu-law needs levels >= 2, got {levels}")
    return levels - 1


def compress(x: Tensor, mu: float = 255.0) -> Tensor:
    """``[-1, 1] -> [-1, 1]``: ``sign(x) ln(1 + mu|x|) / ln(1 + mu)``."""
    return torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)


def expand(y: Tensor, mu: float = 255.0) -> Tensor:
    """Inverse of :func:`compress`: ``sign(y) ((1 + mu)^|y| - 1) / mu``."""
    return torch.sign(y) * torch.expm1(y.abs() * math.log1p(mu)) / mu


def encode(x: Tensor, levels: int = 256) -> Tensor:
    """Amplitudes in ``[-1, 1]`` (clipped) -> integer codes ``0..levels-1`` (long)."""
    mu = _mu(levels)
    y = compress(x.clamp(-1.0, 1.0), float(mu))
    return torch.round((y + 1) / 2 * mu).long().clamp(0, mu)


def decode(k: Tensor, levels: int = 256) -> Tensor:
    """Integer codes ``0..levels-1`` -> amplitudes in ``[-1, 1]`` (float)."""
    mu = _mu(levels)
    y = 2 * k.to(torch.get_default_dtype() if not k.is_floating_point() else k.dtype) / mu - 1
    return expand(y, float(mu))
