"""Probe datasets for the generalisation study of Zhao, Ren, Yuan, Song, Goodman & Ermon
(2018), "Bias and generalization in deep generative models: an empirical study"
(arXiv 1811.03259): small greyscale images in which one feature takes only configured
values, and feature extractors that read that feature back from any image (training
data or model samples, data space).

* ``dots``: ``counts`` (e.g. ``[3]`` or ``[2, 6]``) gives the numbers of square dots an
  image may hold; each image draws one count uniformly from the list and places that
  many ``dot x dot`` squares at random, with at least ``gap`` background pixels between
  any two (so they never touch, not even diagonally). Background is level 0, dots the
  top level ``levels - 1``. Feature: :func:`count_dots`.
* ``bar``: a ``thickness x length`` horizontal bar at a random position; a fraction
  ``p`` (drawn uniformly from ``proportions``) of its columns, on a random side, is
  "red" (level 2), the rest "blue" (level 1); background level 0 (3 levels, one
  channel). ``p * length`` must be a whole number, so every image's proportion is
  exactly the configured value. Feature: :func:`colour_proportion`.

Both are drawn from ``numpy.random.default_rng(seed)`` (train first, then test), so a
seed gives the same images everywhere; the feature value of every image is kept in
``info["train_feature"]`` / ``info["test_feature"]`` and, with ``labels: true``, the index
of its value in the configured list is the class label (needs at least two values).
"""

from __future__ import annotations

from typing import Annotated, Sequence

import numpy as np
import torch
from scipy import ndimage

from genlab.data.base import Dataset, image_spec, labelled_dataset
from genlab.kwargs import ConfigError, NonNegativeInt, PositiveInt, Probability, Range

#: Minimum component area (pixels) :func:`count_dots` counts by default: smaller blobs are noise.
MIN_AREA = 2


def _capacity(size: int, dot: int, gap: int) -> int:
    """Dots that fit on a regular grid: ``floor((size + gap) / (dot + gap))`` per side, squared."""
    return ((size + gap) // (dot + gap)) ** 2


def _check_values(name: str, key: str, values: Sequence, *, labels: bool) -> None:
    if len(values) == 0:
        raise ConfigError(f"{name}: {key} must list at least one value, got []")
    if len(set(values)) != len(values):
        raise ConfigError(f"{name}: {key} has repeated values {list(values)}; list each value once")
    if labels and len(values) < 2:
        raise ConfigError(f"{name}: labels: true needs at least two {key} (one class per value); got {list(values)}")


def _finish(name: str, shape: tuple[int, ...], levels: int, values: Sequence, x: np.ndarray, idx: np.ndarray,
            n_train: int, labels: bool, info: dict) -> Dataset:
    x_t = torch.from_numpy(x).float()
    y_t = torch.from_numpy(idx).long()
    feat = torch.tensor([values[i] for i in idx], dtype=torch.float64 if isinstance(values[0], float) else torch.long)
    info = {**info, "values": list(values), "train_feature": feat[:n_train], "test_feature": feat[n_train:]}
    spec = image_spec(name, shape, levels=levels, classes=len(values) if labels else None)
    if labels:
        return labelled_dataset(spec, x_t[:n_train], x_t[n_train:], y_t[:n_train], y_t[n_train:],
                                classes=len(values), info=info)
    return Dataset(spec=spec, train=x_t[:n_train], test=x_t[n_train:], info=info)


def dots(*, counts: Sequence[PositiveInt] = (3,), size: PositiveInt = 12, dot: PositiveInt = 2,
         gap: PositiveInt = 1, levels: Annotated[int, Range(2)] = 2, n_train: PositiveInt = 5000,
         n_test: NonNegativeInt = 1000, labels: bool = False, seed: NonNegativeInt = 0) -> Dataset:
    """Numerosity probe (Zhao et al. 2018, arXiv 1811.03259): ``(1, size, size)`` images with
    ``k`` non-touching ``dot x dot`` squares, ``k`` uniform over ``counts``; levels 0 and
    ``levels - 1``. A count may be at most half the grid capacity
    ``((size + gap) // (dot + gap))^2`` so that random placement succeeds quickly."""
    counts = [int(c) for c in counts]
    _check_values("dots", "counts", counts, labels=labels)
    if dot > size:
        raise ConfigError(f"dots: dot ({dot}) is larger than the image ({size}); use a smaller dot or a larger size")
    most = _capacity(size, dot, gap) // 2
    if max(counts) > most:
        raise ConfigError(f"dots: {max(counts)} dots of {dot}x{dot} with gap {gap} do not fit loosely in "
                          f"{size}x{size} (at most {most}); use fewer dots, smaller dots or a larger size")
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    idx = rng.integers(len(counts), size=n)
    x = np.zeros((n, 1, size, size), dtype=np.float32)
    span = size - dot + 1
    for i in range(n):
        k = counts[idx[i]]
        for _attempt in range(1000):
            pos = rng.integers(span, size=(k, 2))
            d = np.abs(pos[:, None, :] - pos[None, :, :]).max(-1)  # Chebyshev distance of corners
            np.fill_diagonal(d, dot + gap)
            if (d >= dot + gap).all():
                break
        else:  # pragma: no cover - excluded by the capacity check
            raise RuntimeError(f"dots: could not place {k} dots in image {i}; use fewer dots or a larger size")
        for r, c in pos:
            x[i, 0, r:r + dot, c:c + dot] = levels - 1
    return _finish("dots", (1, size, size), levels, counts, x, idx, n_train, labels,
                   {"size": size, "dot": dot, "gap": gap})


def bar(*, proportions: Sequence[Probability] = (0.5,), size: PositiveInt = 12, length: PositiveInt = 10,
        thickness: PositiveInt = 3, n_train: PositiveInt = 5000, n_test: NonNegativeInt = 1000,
        labels: bool = False, seed: NonNegativeInt = 0) -> Dataset:
    """Colour-proportion probe (Zhao et al. 2018, arXiv 1811.03259): ``(1, size, size)``
    images, 3 levels, with a ``thickness x length`` bar at a random position whose columns
    are a fraction ``p`` "red" (level 2, on a random side) and ``1 - p`` "blue" (level 1);
    ``p`` uniform over ``proportions``, each with ``p * length`` a whole number."""
    props = [float(p) for p in proportions]
    _check_values("bar", "proportions", props, labels=labels)
    if length > size or thickness > size:
        raise ConfigError(f"bar: a {thickness}x{length} bar does not fit in {size}x{size}; "
                          "use a shorter or thinner bar or a larger size")
    for p in props:
        if abs(p * length - round(p * length)) > 1e-6:
            raise ConfigError(f"bar: proportion {p} times length {length} is not a whole number of columns; "
                              f"use multiples of 1/{length}")
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    idx = rng.integers(len(props), size=n)
    rows = rng.integers(size - thickness + 1, size=n)
    cols = rng.integers(size - length + 1, size=n)
    left = rng.random(n) < 0.5
    x = np.zeros((n, 1, size, size), dtype=np.float32)
    for i in range(n):
        red = round(props[idx[i]] * length)
        strip = np.ones(length, dtype=np.float32)
        if left[i]:
            strip[:red] = 2
        else:
            strip[length - red:] = 2
        x[i, 0, rows[i]:rows[i] + thickness, cols[i]:cols[i] + length] = strip
    return _finish("bar", (1, size, size), 3, props, x, idx, n_train, labels,
                   {"size": size, "length": length, "thickness": thickness})


# --- feature extractors (data space) -------------------------------------------------

def _images(x: torch.Tensor | np.ndarray) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim == 4:
        if a.shape[1] != 1:
            raise ValueError(f"expected one-channel images (N, 1, H, W), got shape {tuple(a.shape)}")
        a = a[:, 0]
    if a.ndim != 3:
        raise ValueError(f"expected images (N, 1, H, W) or (N, H, W), got shape {tuple(a.shape)}")
    return a.astype(np.float64)


def count_dots(x: torch.Tensor | np.ndarray, *, levels: int = 2, threshold: float = 0.5,
               min_area: int = MIN_AREA) -> np.ndarray:
    """Number of dots in each image ``(N, 1, H, W)`` (data space, values ``0..levels-1``)
    -> ``(N,)`` int.

    Rule: a pixel is "on" when ``x / (levels - 1) > threshold``; dots are the 4-connected
    components of the on pixels (``scipy.ndimage.label``) with at least ``min_area``
    pixels (smaller specks are noise). Blurry samples therefore count a dot when its core
    is brighter than half the top level; two dots joined by bright pixels count as one.
    """
    a = _images(x) / (levels - 1) > threshold
    out = np.zeros(len(a), dtype=np.int64)
    for i, img in enumerate(a):
        lab, k = ndimage.label(img)
        if k:
            areas = np.bincount(lab.ravel())[1:]
            out[i] = int((areas >= min_area).sum())
    return out


def colour_proportion(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Fraction of "red" pixels among bar pixels in each 3-level image ``(N, 1, H, W)``
    (data space) -> ``(N,)`` float, ``nan`` for an image with no bar pixel.

    Rule: each pixel is rounded to the nearest level of ``{0, 1, 2}`` (values clipped to
    ``[0, 2]``); bar pixels are those at level 1 ("blue") or 2 ("red"); the proportion is
    ``#red / (#red + #blue)``.
    """
    a = np.clip(np.rint(_images(x)), 0, 2)
    red = (a == 2).sum((1, 2)).astype(np.float64)
    blue = (a == 1).sum((1, 2)).astype(np.float64)
    tot = red + blue
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, red / np.maximum(tot, 1), np.nan)
