"""Helpers for ancestral (autoregressive) generation, cached or naive.

Cached generation keeps per-layer state between steps so that each new element
costs one step of each layer (WaveNet queues, "fast wavenet" arXiv 1611.09482;
Transformer key/value caches). The models own their caches; this module holds
what both paths share, so that they consume a ``torch.Generator`` identically
and therefore produce identical samples.
"""

from __future__ import annotations

import torch
from torch import Tensor


def sample_categorical(logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Draw one index per row of ``logits`` ``(..., L)`` -> ``(...)`` long, by inverting the CDF.

    Exactly one uniform number is drawn per row, so two callers that present the
    same rows in the same order draw the same samples from the same generator,
    and tiny floating-point differences between their logits only matter when a
    uniform falls within rounding distance of a CDF boundary.
    ``logits`` may be unnormalised log-probabilities (``-inf`` allowed).
    """
    cdf = torch.softmax(logits.double(), dim=-1).cumsum(-1)
    dev = generator.device if generator is not None else logits.device
    u = torch.rand(logits.shape[:-1], generator=generator, dtype=torch.float64, device=dev).to(logits.device)
    k = torch.searchsorted(cdf, (u * cdf[..., -1]).unsqueeze(-1), right=True).squeeze(-1)
    return k.clamp_max(logits.shape[-1] - 1)
