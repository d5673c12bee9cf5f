"""Pictures of samples: a scatter over the data for points, a grid for images."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from genlab.data.base import DataSpec  # noqa: E402


def image_grid(x: np.ndarray, nrow: int | None = None, pad: int = 1) -> np.ndarray:
    """``(N, C, H, W)`` -> one ``(H', W', C)`` tiled array (C = 1 or 3)."""
    n, c, h, w = x.shape
    nrow = nrow or int(math.ceil(math.sqrt(n)))
    ncol = int(math.ceil(n / nrow))
    grid = np.ones((ncol * (h + pad) + pad, nrow * (w + pad) + pad, c), dtype=np.float64)
    for i in range(n):
        r, q = divmod(i, nrow)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = \
            x[i].transpose(1, 2, 0)
    return grid


def save_samples_png(path: Path, samples: torch.Tensor, spec: DataSpec, data: torch.Tensor | None = None,
                     title: str = "", *, labels: torch.Tensor | None = None, nrow: int | None = None) -> Path:
    """Save a picture of ``samples`` (data space, ``(N, *event_shape)``). ``labels`` ``(N,)``
    colour the points of a scatter by class; ``nrow`` sets the images per grid row (class grids)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = samples.detach().cpu().double().numpy()
    if spec.kind == "image" and x.ndim == 4:
        _image_png(path, x, spec, title, nrow)
    elif x.ndim == 2 and x.shape[1] >= 2:
        _scatter_png(path, x, None if data is None else data.cpu().numpy(), title,
                     None if labels is None else labels.cpu().numpy())
    elif x.ndim == 2 and x.shape[1] == 1 and spec.kind == "points":
        _hist_png(path, x[:, 0], None if data is None else data.cpu().numpy()[:, 0], title,
                  None if labels is None else labels.cpu().numpy())
    else:
        _lines_png(path, x.reshape(len(x), -1), title)
    return path


def _image_png(path: Path, x: np.ndarray, spec: DataSpec, title: str, nrow: int | None = None) -> None:
    top = (spec.levels - 1) if spec.levels else max(float(x.max()), 1.0)
    grid = image_grid(np.clip(x / top, 0, 1)[:64 if nrow is None else 256], nrow)
    fig, ax = plt.subplots(figsize=(4, 4.3))
    ax.imshow(grid.squeeze(-1) if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def _scatter_png(path: Path, x: np.ndarray, data: np.ndarray | None, title: str,
                 labels: np.ndarray | None = None) -> None:
    """Scatter of the first two coordinates of ``x`` over ``data``.

    The frame covers the data and the bulk of the samples: per axis, the union of the
    data's range and the samples' 0.5..99.5 percentiles, plus a 15 % margin. So samples
    far from the data widen the frame instead of vanishing, while a few outliers do not
    squash the picture; samples still outside (or non-finite) are counted in a note
    "N of M samples outside the frame" at the bottom of the picture."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    pts = x[:, :2]
    finite = np.isfinite(pts).all(1)
    boxes = []
    if data is not None:
        ax.scatter(data[:2500, 0], data[:2500, 1], s=2, c="0.75", label="data")
        d = data[:, :2][np.isfinite(data[:, :2]).all(1)]
        if len(d):
            boxes.append((d.min(0), d.max(0)))
    if finite.any():
        boxes.append((np.percentile(pts[finite], 0.5, axis=0), np.percentile(pts[finite], 99.5, axis=0)))
    outside = int((~finite).sum())
    if boxes:
        lo = np.min([b[0] for b in boxes], axis=0)
        hi = np.max([b[1] for b in boxes], axis=0)
        span = (hi - lo) * 0.15 + 1e-3
        lo, hi = lo - span, hi + span
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        inside = finite.copy()
        inside[finite] = ((pts[finite] >= lo) & (pts[finite] <= hi)).all(1)
        outside = int((~inside).sum())
    if labels is None:
        ax.scatter(x[:2500, 0], x[:2500, 1], s=2, c="tab:red", label="samples")
    else:
        for k in np.unique(labels):
            pts = x[:2500][labels[:2500] == k]
            ax.scatter(pts[:, 0], pts[:, 1], s=2, label=f"class {k}")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=7, markerscale=4)
    ax.set_title(title, fontsize=9)
    if outside:
        ax.text(0.01, 0.01, f"{outside} of {len(x)} samples outside the frame", transform=ax.transAxes,
                fontsize=7, color="tab:red", ha="left", va="bottom",
                bbox=dict(facecolor="white", alpha=0.8, edgecolor="none", pad=1))
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def _hist_png(path: Path, x: np.ndarray, data: np.ndarray | None, title: str,
              labels: np.ndarray | None) -> None:
    """1-D points: histograms of the samples (per class when labelled) over the data's."""
    fig, ax = plt.subplots(figsize=(6, 3))
    both = x if data is None else np.concatenate([x, data])
    bins = np.linspace(np.percentile(both, 0.5), np.percentile(both, 99.5), 80)
    if data is not None:
        ax.hist(data, bins=bins, density=True, color="0.8", label="data")
    groups = [(None, x)] if labels is None else [(k, x[labels == k]) for k in np.unique(labels)]
    for k, v in groups:
        ax.hist(v, bins=bins, density=labels is None, histtype="step", lw=1.2,
                weights=None if labels is None else np.full(len(v), 1.0 / (len(x) * (bins[1] - bins[0]))),
                label="samples" if k is None else f"class {k}")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def _lines_png(path: Path, x: np.ndarray, title: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 3))
    for row in x[:8]:
        ax.plot(row, lw=0.8)
    ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
