"""Packing (PacGAN, Lin et al. 2017, arXiv 1712.04086): the critic sees ``m``
samples at once, all real or all fake, concatenated along the first event axis.

A batch ``(B, D)`` becomes ``(B // m, m * D)``; images ``(B, C, H, W)`` become
``(B // m, m * C, H, W)`` (channel concatenation). Packing lets the critic see
the *diversity* of a set of samples, which penalises mode collapse.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor


def packed_shape(event_shape: Sequence[int], m: int) -> tuple[int, ...]:
    """Event shape the critic sees when ``m`` samples are packed."""
    if m < 1:
        raise ValueError(f"pack must be >= 1, got {m}")
    shape = tuple(event_shape)
    return (m * shape[0], *shape[1:])


def pack(x: Tensor, m: int) -> Tensor:
    """``(B, *event_shape)`` -> ``(B // m, m * event_shape[0], *event_shape[1:])``.

    A remainder of ``B % m`` samples is dropped; ``B < m`` is an error."""
    if m == 1:
        return x
    b = x.shape[0]
    if b < m:
        raise ValueError(f"packing {m} samples needs a batch of at least {m}, got {b}; "
                         f"raise train.batch_size or lower objective.pack")
    b -= b % m
    return x[:b].reshape(b // m, m * x.shape[1], *x.shape[2:])
