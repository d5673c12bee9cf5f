"""Evaluate sample arrays against data: the Python side of ``genlab eval --real A.npy --fake B.npy``.

:func:`load_samples` reads ``.npy`` / ``.npz`` arrays or a folder of images into
``(N, *event_shape)`` float64 arrays; :func:`evaluate_samples` runs registered
sample metrics on two such arrays and merges their results into one dict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
NPZ_KEYS = ("samples", "x", "arr_0")


def _as_float(a: np.ndarray, path: Path) -> np.ndarray:
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise ValueError(f"{path}: expected a numeric array, got dtype {a.dtype}")
    if a.ndim < 2:
        raise ValueError(f"{path}: expected an array (N, *event_shape) with N samples, got shape "
                         f"{a.shape}; reshape scalar data to (N, 1)")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{path}: the array contains NaN or infinite values")
    return a


def _load_npz(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as z:
        keys = list(z.keys())
        if len(keys) == 1:
            return z[keys[0]]
        for k in NPZ_KEYS:
            if k in keys:
                return z[k]
    raise ValueError(f"{path}: an .npz with several arrays needs one named {' or '.join(NPZ_KEYS)}; "
                     f"it has {', '.join(keys) or 'none'}")


def _load_folder(path: Path) -> np.ndarray:
    from PIL import Image

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{path}: folder has no image files ({', '.join(IMAGE_SUFFIXES)})")
    images = [Image.open(f) for f in files]
    grey = all(im.mode in ("L", "1", "I", "I;16", "F") for im in images)
    arrays = [np.asarray(im.convert("L" if grey else "RGB"), dtype=np.float64) for im in images]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"{path}: images differ in size ({sorted(shapes)}); resize them to one size")
    x = np.stack(arrays)
    return x[:, None] if grey else x.transpose(0, 3, 1, 2)


def load_samples(path: str | Path) -> np.ndarray:
    """Read samples as a float64 array ``(N, *event_shape)``.

    * ``.npy``: the array itself;
    * ``.npz``: its only array, else the one named ``samples``, ``x`` or ``arr_0``;
    * a folder of images (sorted by file name): ``(N, 1, H, W)`` when all are
      greyscale, else ``(N, 3, H, W)`` RGB (alpha dropped), pixel values 0..255.
      Data-space arrays of other datasets (e.g. digits, levels 0..16) must be
      rescaled by the user before comparing with such images.
    """
    path = Path(path)
    if path.is_dir():
        return _as_float(_load_folder(path), path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file or folder")
    if path.suffix == ".npy":
        return _as_float(np.load(path, allow_pickle=False), path)
    if path.suffix == ".npz":
        return _as_float(_load_npz(path), path)
    raise ValueError(f"{path}: unsupported format {path.suffix!r}; use .npy, .npz or a folder of images")


def _tensor(x: Any, which: str) -> Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).double()
    if t.ndim < 2:
        raise ValueError(f"{which} must be (N, *event_shape), got shape {tuple(t.shape)}")
    return t


def evaluate_samples(real: Any, fake: Any, metrics: list[str], *, features: str = "auto", seed: int = 0,
                     train: Any = None) -> dict[str, float]:
    """Run the named sample metrics (registry ``METRICS``) on ``real`` vs ``fake``.

    ``real``, ``fake``, ``train``: arrays or tensors ``(N, *event_shape)`` in data
    space. ``features`` and ``seed`` go to every metric that takes them; ``train``
    goes to the memorisation check (``update(train=...)``). Returns the merged
    ``{key: value}`` of all metrics.
    """
    from genlab.kwargs import config_keys
    from genlab.metrics.base import SampleMetric
    from genlab.metrics.memorization import Memorization
    from genlab.registry import lookup

    real_t, fake_t = _tensor(real, "real"), _tensor(fake, "fake")
    if real_t.shape[1:] != fake_t.shape[1:]:
        raise ValueError(f"real and fake samples differ in event shape: {tuple(real_t.shape[1:])} vs "
                         f"{tuple(fake_t.shape[1:])}")
    results: dict[str, float] = {}
    for name in metrics:
        try:
            cls = lookup("metrics", name)
        except KeyError as e:
            raise ValueError(e.args[0]) from None
        if not issubclass(cls, SampleMetric) or cls.requires_data:
            raise ValueError(f"metric {name!r} needs a model or a dataset of a specific kind; "
                             "evaluate_samples compares sample arrays only")
        keys = config_keys(cls)
        kwargs = {k: v for k, v in (("features", features), ("seed", seed)) if k in keys}
        metric = cls(**kwargs)
        metric.update(real=real_t, fake=fake_t)
        if isinstance(metric, Memorization):
            if train is None:
                raise ValueError("metric 'memorization' needs training data: pass train=... "
                                 "(--train TRAIN.npy on the command line)")
            metric.update(train=_tensor(train, "train"))
        results.update(metric.compute())
    return results
