"""Feature extractors for sample-based metrics: data space ``(B, *event_shape)`` -> ``(B, F)``.

* ``identity``: the flattened raw data (points, tabular, sequences).
* ``digits``: the penultimate layer (64 ReLU units) of a small CNN that genlab
  trains on the ``digits`` train split (:func:`genlab.data.digits.digits`) on the
  CPU with a fixed seed (a few seconds) and caches as safetensors under
  ``$GENLAB_CACHE`` (default ``~/.cache/genlab``). Its 10 logits feed the
  Inception-style score. Input: ``(B, 1, 8, 8)`` pixel levels 0..16.
* a path to a TorchScript file (``torch.jit.load``): a module mapping
  ``(B, *event_shape)`` float32 data-space tensors to ``(B, F)``. Its output is
  used both as features and, for the Inception-style score, as logits.
* ``auto``: ``identity`` for 1-D events (points, sequences), ``digits`` for
  ``(1, 8, 8)`` images, otherwise an error asking for a TorchScript file.

Features are returned as float64 on the CPU.
"""

from __future__ import annotations

import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

import torch
from torch import Tensor, nn

from genlab.metrics.base import SampleMetric, _Accumulator

DIGITS_SHAPE = (1, 8, 8)
DIGITS_LEVELS_MAX = 16.0
#: bump when the net or its training recipe changes (it names the cache file)
DIGITS_VERSION = "v1"
DIGITS_SEED = 0
DIGITS_EPOCHS = 25
DIGITS_BATCH = 64
DIGITS_LR = 2e-3


class FeatureExtractor(ABC):
    """Maps data-space samples ``(B, *event_shape)`` to features ``(B, F)`` (float64)."""

    name: str = ""

    @abstractmethod
    def _features(self, x: Tensor) -> Tensor:
        """One batch ``(B, *event_shape)`` -> ``(B, F)``."""

    def _logits(self, x: Tensor) -> Tensor:
        raise ValueError(f"feature extractor {self.name!r} has no classifier, so it gives no class "
                         "predictions; the Inception-style score needs features='digits' (for 8x8 "
                         "digits) or a TorchScript file whose output is class logits")

    def _batched(self, fn, x: Tensor, batch_size: int) -> Tensor:
        with torch.no_grad():
            outs = [fn(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        out = torch.cat(outs).double().cpu()
        if out.ndim != 2 or out.shape[0] != x.shape[0]:
            raise ValueError(f"feature extractor {self.name!r} returned shape {tuple(out.shape)} for "
                             f"{x.shape[0]} inputs; it must return (B, F)")
        if not torch.isfinite(out).all():
            raise ValueError(f"feature extractor {self.name!r} returned NaN or infinite values")
        return out

    def features(self, x: Tensor, batch_size: int = 512) -> Tensor:
        """``(N, *event_shape)`` -> ``(N, F)`` float64."""
        return self._batched(self._features, x, batch_size)

    def logits(self, x: Tensor, batch_size: int = 512) -> Tensor:
        """``(N, *event_shape)`` -> ``(N, K)`` class logits, float64."""
        return self._batched(self._logits, x, batch_size)


class IdentityFeatures(FeatureExtractor):
    """Flattened raw data: ``(B, *event_shape)`` -> ``(B, prod(event_shape))``."""

    name = "identity"

    def _features(self, x: Tensor) -> Tensor:
        return x.reshape(len(x), -1).double()


class DigitsNet(nn.Module):
    """A small CNN for ``(B, 1, 8, 8)`` digits in [0, 1]: ``embed`` -> 64 features, ``head`` -> 10 logits."""

    def __init__(self, width: int = 16, feature_dim: int = 64):
        super().__init__()
        self.embed = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * width * 16, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.embed(x))


def cache_dir() -> Path:
    """``$GENLAB_CACHE`` or ``~/.cache/genlab``."""
    return Path(os.environ.get("GENLAB_CACHE") or Path.home() / ".cache" / "genlab")


def train_digits_net(*, seed: int = DIGITS_SEED, epochs: int = DIGITS_EPOCHS) -> tuple[DigitsNet, float]:
    """Train :class:`DigitsNet` on the digits train split; return it and its test accuracy.

    Deterministic for a given seed and thread count: weights are initialised under
    a forked global RNG seeded with ``seed`` (the caller's RNG is untouched) and
    mini-batches are drawn from an explicit generator. Adam, cross-entropy.
    """
    from genlab.data.digits import digits

    data = digits()
    x = data.train.float() / DIGITS_LEVELS_MAX
    y = data.train_y
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DigitsNet()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=DIGITS_LR)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), DIGITS_BATCH):
            idx = order[i:i + DIGITS_BATCH]
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        pred = net(data.test.float() / DIGITS_LEVELS_MAX).argmax(1)
    acc = float((pred == data.test_y).double().mean())
    return net, acc


_DIGITS_LOADED: dict[str, tuple[DigitsNet, float]] = {}


def digits_net() -> tuple[DigitsNet, float]:
    """The cached digits classifier and its test accuracy (trained on first use)."""
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    path = cache_dir() / f"digits_cnn_{DIGITS_VERSION}.safetensors"
    key = str(path)
    if key in _DIGITS_LOADED:
        return _DIGITS_LOADED[key]
    if path.is_file():
        net = DigitsNet()
        net.load_state_dict(load_file(str(path)))
        with safe_open(str(path), framework="pt") as f:
            acc = float(f.metadata()["test_accuracy"])
        net.eval()
    else:
        net, acc = train_digits_net()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp,
                  metadata={"test_accuracy": repr(acc), "version": DIGITS_VERSION})
        os.replace(tmp, path)  # atomic: concurrent first uses do not see half-written files
    _DIGITS_LOADED[key] = (net, acc)
    return net, acc


class DigitsFeatures(FeatureExtractor):
    """Penultimate features (64) and logits (10) of the digits CNN; input ``(B, 1, 8, 8)`` levels 0..16."""

    name = "digits"

    def __init__(self) -> None:
        self.net, self.test_accuracy = digits_net()

    def _check(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != DIGITS_SHAPE:
            raise ValueError(f"features='digits' needs (N, 1, 8, 8) images, got {tuple(x.shape)}")
        return x.float() / DIGITS_LEVELS_MAX

    def _features(self, x: Tensor) -> Tensor:
        return self.net.embed(self._check(x))

    def _logits(self, x: Tensor) -> Tensor:
        return self.net(self._check(x))


class TorchScriptFeatures(FeatureExtractor):
    """A user TorchScript module ``(B, *event_shape)`` float32 -> ``(B, F)``; output doubles as logits."""

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"feature extractor file {str(path)!r} does not exist; pass 'auto', "
                             "'identity', 'digits' or a path to a TorchScript (.pt) file")
        try:
            self.module = torch.jit.load(str(path), map_location="cpu")
        except Exception as e:  # noqa: BLE001 - re-raised with context
            raise ValueError(f"could not load {str(path)!r} as TorchScript (torch.jit.load): {e}. "
                             "Save your extractor with torch.jit.script(m).save(path)") from None
        self.module.eval()
        self.name = str(path)

    def _features(self, x: Tensor) -> Tensor:
        return self.module(x.float())

    def _logits(self, x: Tensor) -> Tensor:
        return self.module(x.float())


def resolve_features(features: str, event_shape: tuple[int, ...]) -> FeatureExtractor:
    """The extractor named by ``features`` for data of ``event_shape`` (see module docstring)."""
    features = feature_name(features, event_shape)
    if features == "identity":
        return IdentityFeatures()
    if features == "digits":
        return DigitsFeatures()
    return TorchScriptFeatures(features)


def feature_name(features: str, event_shape: tuple[int, ...]) -> str:
    """The extractor ``features`` stands for on data of ``event_shape`` (``auto`` resolved), or a
    ValueError when there is none; cheap, so configs are checked before training."""
    event_shape = tuple(event_shape)
    if features == "auto":
        if len(event_shape) == 1:
            features = "identity"
        elif event_shape == DIGITS_SHAPE:
            features = "digits"
        else:
            raise ValueError(f"features='auto' has no built-in extractor for events of shape "
                             f"{event_shape} (it knows 1-D points/sequences and (1, 8, 8) digits); "
                             "pass features=PATH to a TorchScript module mapping (B, *event_shape) "
                             "to (B, F), or features='identity' for raw flattened values")
    if features == "digits" and event_shape != DIGITS_SHAPE:
        raise ValueError(f"features='digits' needs (1, 8, 8) digit images; the data are {event_shape}")
    return features


def check_samples(x: Tensor, which: str) -> Tensor:
    """Validate a sample set ``(N, *event_shape)``: at least 2-D, finite; returns float64."""
    if x.ndim < 2:
        raise ValueError(f"{which} samples must be (N, *event_shape), got shape {tuple(x.shape)}; "
                         "for scalar data reshape to (N, 1)")
    if not torch.isfinite(x).all():
        raise ValueError(f"{which} samples contain NaN or infinite values")
    return x.double()


class FeatureSets:
    """Accumulates real/fake batches and turns them into features on demand.

    ``get(which)`` -> ``(N, F)`` float64 for ``which`` in ``{"real", "fake"}``.
    """

    def __init__(self, features: str = "auto") -> None:
        self.spec = features
        self.acc = _Accumulator()
        self._extractor: FeatureExtractor | None = None

    def add(self, real: Tensor | None, fake: Tensor | None) -> None:
        self.acc.add(real, fake)

    def raw(self, which: str) -> Tensor:
        x = check_samples(self.acc.get(which), which)
        return x

    def extractor(self, event_shape: tuple[int, ...]) -> FeatureExtractor:
        if self._extractor is None:
            self._extractor = resolve_features(self.spec, event_shape)
        return self._extractor

    def get(self, which: str) -> Tensor:
        x = self.raw(which)
        return self.extractor(tuple(x.shape[1:])).features(x)

    def both(self) -> tuple[Tensor, Tensor]:
        real, fake = self.raw("real"), self.raw("fake")
        if real.shape[1:] != fake.shape[1:]:
            raise ValueError(f"real and fake events differ in shape: {tuple(real.shape[1:])} vs "
                             f"{tuple(fake.shape[1:])}")
        ext = self.extractor(tuple(real.shape[1:]))
        return ext.features(real), ext.features(fake)


def subsample(x: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """At most ``n`` rows of ``x``, drawn without replacement (``x`` itself when it is small enough)."""
    return x[torch.randperm(len(x), generator=generator)[:n]] if len(x) > n else x


class FeatureMetric(SampleMetric):
    """A sample metric computed on features of the real and fake sets.

    Subclasses set ``self.features`` in their constructor and implement ``compute()``
    using ``self._sets`` (a :class:`FeatureSets`)."""

    features: str = "auto"

    def reset(self) -> None:
        self._sets = FeatureSets(self.features)

    def update(self, *, real: Tensor | None = None, fake: Tensor | None = None) -> None:
        self._sets.add(real, fake)
