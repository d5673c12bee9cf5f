"""Datasets: tensors in *data space* plus a :class:`DataSpec` that says what they are.

Data space is what the user sees and what ``genlab sample`` writes: raw pixel
levels for images (e.g. 0..16 for digits, 0..255 for 8-bit images), raw
coordinates for points. Models work in *model space*::

    x_model = (x_data - spec.shift) / spec.scale

For images ``shift = scale = (levels - 1) / 2`` maps pixels to [-1, 1]. Density
models that dequantise use ``spec.levels`` and ``spec.scale`` to report exact
bits/dim in data space (see ``docs/metrics.md``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

KINDS = ("points", "image", "sequence", "sphere")


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about data; saved with every run so that a
    model can be rebuilt with no dataset.

    ``event_shape``: shape of one example, ``(D,)``, ``(C, H, W)`` or ``(T,)``.
    ``levels``: number of discrete values per dimension (17 for digits, 256 for
    8-bit images), ``None`` for continuous data.
    """

    name: str
    kind: str
    event_shape: tuple[int, ...]
    levels: int | None = None
    shift: float = 0.0
    scale: float = 1.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"DataSpec.kind must be one of {KINDS}, got {self.kind!r}")
        object.__setattr__(self, "event_shape", tuple(int(s) for s in self.event_shape))

    @property
    def dim(self) -> int:
        """Number of scalar dimensions in one example."""
        return math.prod(self.event_shape)

    def to_model(self, x: Tensor) -> Tensor:
        return (x - self.shift) / self.scale

    def to_data(self, x: Tensor) -> Tensor:
        return x * self.scale + self.shift

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["event_shape"] = list(self.event_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DataSpec":
        return cls(**{**d, "event_shape": tuple(d["event_shape"])})


def image_spec(name: str, shape: tuple[int, ...], levels: int) -> DataSpec:
    """Spec for images with ``levels`` grey levels, mapped to [-1, 1] in model space."""
    half = (levels - 1) / 2.0
    return DataSpec(name=name, kind="image", event_shape=shape, levels=levels, shift=half, scale=half)


@dataclass
class Dataset:
    """An in-memory dataset: ``train`` and ``test`` are ``(N, *event_shape)`` float
    tensors in data space."""

    spec: DataSpec
    train: Tensor
    test: Tensor
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        for split, t in (("train", self.train), ("test", self.test)):
            if tuple(t.shape[1:]) != self.spec.event_shape:
                raise ValueError(f"{self.spec.name}: {split} has shape {tuple(t.shape)}, "
                                 f"expected (N, {', '.join(map(str, self.spec.event_shape))})")


class KnownDensity(ABC):
    """A dataset whose generating density is known exactly (synthetic mixtures)."""

    @abstractmethod
    def log_prob(self, x: Tensor) -> Tensor:
        """``x``: ``(B, *event_shape)`` in data space -> ``(B,)`` true log density."""

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Fresh samples ``(n, *event_shape)`` in data space."""


@dataclass
class MixtureDataset(Dataset, KnownDensity):
    """An isotropic Gaussian mixture with equal weights: ``means (K, D)``, ``std``."""

    means: Tensor = None  # type: ignore[assignment]
    std: float = 0.0

    def log_prob(self, x: Tensor) -> Tensor:
        d = x.shape[-1]
        sq = torch.cdist(x.double(), self.means.double()) ** 2
        log_comp = -0.5 * sq / self.std**2 - d * math.log(self.std) - 0.5 * d * math.log(2 * math.pi)
        return (torch.logsumexp(log_comp, dim=1) - math.log(len(self.means))).to(x.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        k = torch.randint(len(self.means), (n,), generator=generator)
        return self.means[k] + self.std * torch.randn(n, self.means.shape[1], generator=generator)
