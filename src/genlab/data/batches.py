"""Batch sources: where a :class:`~genlab.train.trainer.Trainer` gets its data.

A source draws :class:`~genlab.data.base.Batch` objects in model space from its
own ``torch.Generator`` and exposes that generator's state, so a resumed run
draws exactly the batches an uninterrupted one would have drawn.

* :class:`InMemoryBatches`: rows of tensors held in memory, drawn with
  replacement (what ``genlab train`` uses);
* :class:`FunctionBatches`: a function ``draw(n, generator)`` that makes fresh
  data (synthetic experiments and tests).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import torch
from torch import Tensor

from genlab.data.base import Batch


class BatchSource(ABC):
    """Draws batches of ``batch_size`` examples."""

    batch_size: int
    generator: torch.Generator

    @abstractmethod
    def draw(self) -> Batch:
        """The next batch (model space)."""

    def state(self) -> Tensor:
        return self.generator.get_state()

    def set_state(self, state: Tensor) -> None:
        self.generator.set_state(state)


class InMemoryBatches(BatchSource):
    """Batches drawn with replacement from ``x`` ``(N, *event_shape)`` (with labels ``y`` ``(N,)``
    and the mask ``known`` when given), indices from a generator seeded with ``seed``."""

    def __init__(self, x: Tensor, *, batch_size: int, seed: int = 0, y: Tensor | None = None,
                 known: Tensor | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if len(x) == 0:
            raise ValueError("the training split is empty; nothing to train on")
        self.x, self.y, self.known, self.batch_size = x, y, known, batch_size
        if y is not None and known is not None:
            self.y = torch.where(known, y, torch.full_like(y, -1))
        self.generator = torch.Generator().manual_seed(seed)

    def draw(self) -> Batch:
        idx = torch.randint(len(self.x), (self.batch_size,), generator=self.generator).to(self.x.device)
        return Batch(self.x[idx], None if self.y is None else self.y[idx],
                     None if self.known is None else self.known[idx])


class FunctionBatches(BatchSource):
    """Batches from ``draw(n, generator) -> Tensor | Batch``. ``generator`` may be shared with
    the trainer's noise (pass the same object) or be a fresh one seeded with ``seed``."""

    def __init__(self, draw: Callable[[int, torch.Generator], "Tensor | Batch"], *, batch_size: int,
                 seed: int = 0, generator: torch.Generator | None = None):
        self.fn, self.batch_size = draw, batch_size
        self.generator = generator if generator is not None else torch.Generator().manual_seed(seed)

    def draw(self) -> Batch:
        out = self.fn(self.batch_size, self.generator)
        return out if isinstance(out, Batch) else Batch(out)
