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
    8-bit images), ``None`` for continuous data. ``classes``: number of label
    classes when the dataset carries labels ``0..classes-1``, else ``None``.
    """

    name: str
    kind: str
    event_shape: tuple[int, ...]
    levels: int | None = None
    shift: float = 0.0
    scale: float = 1.0
    classes: int | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"DataSpec.kind must be one of {KINDS}, got {self.kind!r}")
        if self.classes is not None and int(self.classes) < 2:
            raise ValueError(f"DataSpec.classes must be >= 2 (or None for unlabelled data), got {self.classes}")
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


def image_spec(name: str, shape: tuple[int, ...], levels: int, classes: int | None = None) -> DataSpec:
    """Spec for images with ``levels`` grey levels, mapped to [-1, 1] in model space."""
    half = (levels - 1) / 2.0
    return DataSpec(name=name, kind="image", event_shape=shape, levels=levels, shift=half, scale=half,
                    classes=classes)


@dataclass(frozen=True)
class Batch:
    """What objectives and metrics receive.

    ``x``: ``(B, *event_shape)`` (model space for objectives, data space for
    metrics, as each protocol says). ``y``: ``(B,)`` long class labels (or later
    ``(B, *context_shape)`` context), ``None`` for unlabelled data. ``known``:
    ``(B,)`` bool, which labels are observed (semi-supervised data); ``None``
    means all of them. Labels that are not known hold ``-1``.
    """

    x: Tensor
    y: Tensor | None = None
    known: Tensor | None = None

    def __len__(self) -> int:
        return self.x.shape[0]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "Batch":
        x = self.x.to(device=device, dtype=dtype) if dtype is not None else self.x.to(device)
        return Batch(x, None if self.y is None else self.y.to(device),
                     None if self.known is None else self.known.to(device))

    def __getitem__(self, idx: Any) -> "Batch":
        return Batch(self.x[idx], None if self.y is None else self.y[idx],
                     None if self.known is None else self.known[idx])

    def with_x(self, x: Tensor) -> "Batch":
        """The same labels with other inputs (e.g. mapped to model space)."""
        return Batch(x, self.y, self.known)

    @property
    def labelled(self) -> "Batch":
        """Only the examples whose label is known."""
        if self.y is None:
            return self[:0]
        return self if self.known is None else self[self.known]


@dataclass
class Dataset:
    """An in-memory dataset: ``train`` and ``test`` are ``(N, *event_shape)`` float
    tensors in data space. Labelled datasets (``spec.classes`` set) give
    ``train_y``/``test_y`` ``(N,)`` long labels; ``train_known``/``test_known``
    ``(N,)`` bool say which labels are observed (``None``: all; see
    :func:`hide_labels`)."""

    spec: DataSpec
    train: Tensor
    test: Tensor
    info: dict[str, Any] = field(default_factory=dict)
    train_y: Tensor | None = None
    test_y: Tensor | None = None
    train_known: Tensor | None = None
    test_known: Tensor | None = None

    def __post_init__(self):
        for split, t in (("train", self.train), ("test", self.test)):
            if tuple(t.shape[1:]) != self.spec.event_shape:
                raise ValueError(f"{self.spec.name}: {split} has shape {tuple(t.shape)}, "
                                 f"expected (N, {', '.join(map(str, self.spec.event_shape))})")
        for split, x, y in (("train", self.train, self.train_y), ("test", self.test, self.test_y)):
            if (y is None) != (self.spec.classes is None):
                raise ValueError(f"{self.spec.name}: spec.classes is {self.spec.classes} but {split}_y is "
                                 f"{'missing' if y is None else 'given'}; labelled data need both")
            if y is not None and (y.shape != (len(x),) or (len(y) and (y.min() < 0 or y.max() >= self.spec.classes))):
                raise ValueError(f"{self.spec.name}: {split}_y must be ({len(x)},) labels in "
                                 f"0..{self.spec.classes - 1}, got shape {tuple(y.shape)}")

    def batch(self, split: str = "test") -> Batch:
        """A whole split as a :class:`Batch` (data space)."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        x, y, known = ((self.train, self.train_y, self.train_known) if split == "train"
                       else (self.test, self.test_y, self.test_known))
        if y is not None and known is not None:
            y = torch.where(known, y, torch.full_like(y, -1))
        return Batch(x, y, known)


def labelled_dataset(spec: DataSpec, train: Tensor, test: Tensor, train_y: Tensor | None,
                     test_y: Tensor | None, classes: int | None, info: dict[str, Any] | None = None) -> Dataset:
    """A :class:`Dataset` whose spec declares ``classes`` when labels are given."""
    from dataclasses import replace

    if train_y is not None:
        spec = replace(spec, classes=int(classes))
        train_y, test_y = torch.as_tensor(train_y).long(), torch.as_tensor(test_y).long()
    return Dataset(spec=spec, train=train, test=test, info=dict(info or {}), train_y=train_y, test_y=test_y)


def hide_labels(data: Dataset, per_split: int, seed: int = 0) -> Dataset:
    """Keep ``per_split`` labels in each split, class-balanced (``per_split // classes``
    per class, the remainder to the lowest classes), chosen with ``seed``; hide the rest
    (``known`` False). Implements ``data.labelled: N``."""
    if data.spec.classes is None:
        raise ValueError(f"data.labelled needs a labelled dataset; {data.spec.name!r} has no labels")
    k = data.spec.classes
    g = torch.Generator().manual_seed(seed)
    for split in ("train", "test"):
        y = getattr(data, f"{split}_y")
        if not 0 <= per_split <= len(y):
            raise ValueError(f"data.labelled must be in 0..{len(y)} (the {split} split's size), got {per_split}")
        known = torch.zeros(len(y), dtype=torch.bool)
        for c in range(k):
            want = per_split // k + (1 if c < per_split % k else 0)
            idx = (y == c).nonzero().squeeze(1)
            if want > len(idx):
                raise ValueError(f"data.labelled: {data.spec.name} {split} has only {len(idx)} examples of "
                                 f"class {c}; cannot keep {want} of each")
            known[idx[torch.randperm(len(idx), generator=g)[:want]]] = True
        setattr(data, f"{split}_known", known)
    return data


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
