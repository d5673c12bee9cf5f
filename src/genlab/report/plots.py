"""Report figures rendered with matplotlib (Agg) to PNG bytes.

* :func:`training_curves`: one panel per logged key of ``metrics.jsonl``
  (losses first, then ``eval/*`` and others), one line per run, shared step axis.
* :func:`metric_bars`: one panel per evaluation metric, one bar per run, with
  error bars from the confidence interval (or +- std / se) when given.
"""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from genlab.report.runs import Run  # noqa: E402

#: keys of metrics.jsonl that are bookkeeping, not curves
SKIP_KEYS = frozenset({"step", "time", "epoch", "wall_time", "elapsed"})
MAX_PANELS = 16
MAX_POINTS = 2000
COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def to_png(fig: Figure, dpi: int = 96) -> bytes:
    """Render and close ``fig``; the PNG file's bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def curve_keys(runs: list[Run]) -> list[str]:
    """Numeric keys logged in any run's history: losses first, then the rest."""
    keys: dict[str, None] = {}
    for run in runs:
        for row in run.history:
            for k in row:
                if k not in SKIP_KEYS:
                    keys.setdefault(k, None)
    return sorted(keys, key=lambda k: (0 if "loss" in k else 1 if not k.startswith("eval/") else 2))


def _grid(n: int, ncols: int = 3, w: float = 4.2, h: float = 3.0) -> tuple[Figure, list]:
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _series(run: Run, key: str) -> tuple[list[float], list[float]]:
    pts = [(row["step"], row[key]) for row in run.history if key in row]
    stride = max(1, len(pts) // MAX_POINTS)
    pts = pts[::stride]
    return [p[0] for p in pts], [p[1] for p in pts]


def training_curves(runs: list[Run]) -> bytes | None:
    """PNG of every logged curve against step (shared panels across runs), or
    ``None`` when no run has a ``metrics.jsonl`` with numeric keys."""
    keys = curve_keys(runs)[:MAX_PANELS]
    if not keys:
        return None
    fig, axes = _grid(len(keys))
    for ax, key in zip(axes, keys):
        for i, run in enumerate(runs):
            steps, vals = _series(run, key)
            if not steps:
                continue
            sparse = len(steps) <= 20
            ax.plot(steps, vals, color=COLORS[i % len(COLORS)], label=run.name, lw=1.2,
                    marker="o" if sparse else None, ms=3)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    _legend(fig, axes, runs)
    return to_png(fig)


def metric_bars(runs: list[Run], columns: list[str]) -> bytes | None:
    """PNG with one bar chart per metric in ``columns`` (error bars from CIs), or
    ``None`` when no run has evaluation numbers."""
    columns = [c for c in columns if any(c in r.stats for r in runs)][:MAX_PANELS]
    if not columns:
        return None
    fig, axes = _grid(len(columns), ncols=4, w=3.3, h=2.8)
    for ax, key in zip(axes, columns):
        for i, run in enumerate(runs):
            stat = run.stats.get(key)
            if stat is None or not math.isfinite(float(stat.value)):
                continue
            v = float(stat.value)
            ax.bar(i, v, color=COLORS[i % len(COLORS)], width=0.6)
            if stat.lo is not None and stat.hi is not None:
                err = [[max(v - stat.lo, 0.0)], [max(stat.hi - v, 0.0)]]
                ax.errorbar(i, v, yerr=err, fmt="none", ecolor="black", capsize=4, lw=1.2)
        ax.set_xticks(range(len(runs)))
        ax.set_xlim(-0.6, len(runs) - 0.4)
        ax.set_xticklabels([str(i + 1) for i in range(len(runs))], fontsize=8)
        ax.set_title(key, fontsize=10)
        ax.tick_params(labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    _legend(fig, axes, runs, numbered=True)
    return to_png(fig)


def _legend(fig: Figure, axes: list, runs: list[Run], numbered: bool = False) -> None:
    handles = [plt.Line2D([], [], color=COLORS[i % len(COLORS)], lw=6 if numbered else 2)
               for i in range(len(runs))]
    several = len({r.dataset for r in runs}) > 1  # say which dataset each run is on
    names = [f"{r.name} ({r.dataset or '?'})" if several else r.name for r in runs]
    labels = [f"{i + 1}: {n}" if numbered else n for i, n in enumerate(names)]
    fig.legend(handles, labels, loc="upper center", ncol=min(len(runs), 4), fontsize=9,
               frameon=False, bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, 0.93 if len(axes) <= 3 else 0.96))
