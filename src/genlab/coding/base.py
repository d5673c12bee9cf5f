"""The coder protocol: a likelihood model used as a lossless compressor.

A :class:`Coder` turns integer data (level indices ``k`` in ``0..levels-1``, data space,
``(N, *event_shape)``) into a stream of 32-bit words with a trained model, and back.
Entropy coding is done by ``constriction`` (range coding for autoregressive models, the
ANS stack for bits-back); the coder only supplies the model's probabilities, through one
code path that encoder and decoder share, so both see bit-identical distributions.

Which coder serves a model is decided by its capabilities (:func:`coder_for`); the
container format, the command line and input files live in ``genlab.coding.container``
and ``genlab.coding.cli``.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from genlab.data.base import DataSpec
from genlab.models.base import GenerativeModel

#: Called with the number of examples just finished (for progress bars).
Progress = Callable[[int], None]


class CodingError(ValueError):
    """Data that this model cannot code, or a compressed stream that cannot be decoded."""


class Coder(ABC):
    """Lossless coding of level indices with ``model``.

    ``name`` is stored in the file header; ``supports(model)`` says whether this coder can
    code with ``model`` (by its capabilities). ``encode`` and ``decode`` are exact inverses:
    ``decode(model, spec, *encode(model, spec, k), n=len(k)) == k``.
    """

    name: ClassVar[str]

    @classmethod
    @abstractmethod
    def supports(cls, model: GenerativeModel) -> bool:
        """Whether ``model`` can be used by this coder."""

    @abstractmethod
    def encode(self, model: GenerativeModel, spec: DataSpec, k: torch.Tensor, *,
               progress: Progress | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """``k``: ``(N, *event_shape)`` long level indices -> (``uint32`` words, side info). The
        side info is a small JSON-able dict stored in the header (e.g. initial bits used)."""

    @abstractmethod
    def decode(self, model: GenerativeModel, spec: DataSpec, words: np.ndarray, info: dict[str, Any], *,
               n: int, progress: Progress | None = None) -> torch.Tensor:
        """The ``(n, *event_shape)`` long level indices that :meth:`encode` coded into ``words``."""

    @abstractmethod
    def ideal_bits(self, model: GenerativeModel, spec: DataSpec, k: torch.Tensor) -> float:
        """The ideal codelength of ``k`` in bits under the model: ``-log2 p(k)`` summed over
        examples (the negative ELBO for bits-back coders)."""


#: coder name -> "module:Class"; :func:`coder_for` tries them in this order.
CODERS: dict[str, str] = {
    "range-ar": "genlab.coding.ar:AutoregressiveCoder",
    "bb-ans": "genlab.coding.bbans:BBANSCoder",
    "local-bits-back": "genlab.coding.flows:LocalBitsBackCoder",
}


def coder_class(name: str) -> type[Coder]:
    if name not in CODERS:
        raise CodingError(f"unknown coder {name!r}; genlab knows {', '.join(CODERS)}")
    module, cls = CODERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def coder_for(model: GenerativeModel) -> Coder:
    """The coder for ``model``'s capabilities, or a clear error when none fits."""
    for name in CODERS:
        try:
            cls = coder_class(name)
        except (ImportError, AttributeError):
            continue
        if cls.supports(model):
            return cls()
    raise CodingError(f"{type(model).__name__} cannot be used for lossless compression: genlab codes with "
                      "autoregressive models (pixelcnn, wavenet, transformer), VAEs (bits-back) and flows "
                      "(realnvp, glow: local bits-back)")
