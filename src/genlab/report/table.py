"""The leaderboard: one row per run, one column per metric, best value marked.

Which way is better comes, in order, from the run's ``eval.json``
(``"higher_is_better": {name: bool}``), from the registered metric classes'
``higher_is_better`` declarations, then from :data:`~genlab.report.metric_docs.METRIC_DOCS`.
A metric with no known direction gets no highlight.
"""

from __future__ import annotations

import math
from pathlib import Path

from genlab.report import metric_docs
from genlab.report.runs import Run, load_run

INFO_COLUMNS = ("run", "model", "objective", "dataset")


def metric_columns(runs: list[Run]) -> list[str]:
    """Every metric name any run reports, in first-seen order."""
    cols: dict[str, None] = {}
    for run in runs:
        for key in run.stats:
            cols.setdefault(key, None)
    return list(cols)


def registered_directions() -> dict[str, bool]:
    """``higher_is_better`` merged over every class in :data:`genlab.registry.METRICS`."""
    from genlab.metrics.base import Metric  # lazy: the registry imports torch
    from genlab.registry import METRICS

    out: dict[str, bool] = {}
    for entry in METRICS.values():
        if isinstance(entry, type) and issubclass(entry, Metric):
            out.update(entry.higher_is_better)
    return out


def direction(key: str, runs: list[Run], registered: dict[str, bool]) -> metric_docs.Direction:
    """``"max"``, ``"min"``, a float target, or ``None`` for metric ``key``."""
    last = key.rsplit("/", 1)[-1]
    for run in runs:
        for k in (key, last):
            if k in run.directions:
                return "max" if run.directions[k] else "min"
    for k in (key, last):
        if k in registered:
            return "max" if registered[k] else "min"
    doc = metric_docs.lookup(key)
    return doc[0] if doc else None


def best_runs(key: str, runs: list[Run], how: metric_docs.Direction) -> set[int]:
    """Indices of the runs holding the best finite value of ``key`` (ties all count).

    Empty when the direction is unknown, fewer than two runs report ``key``, or
    all of them tie.
    """
    vals = {i: float(r.stats[key].value) for i, r in enumerate(runs)
            if key in r.stats and math.isfinite(float(r.stats[key].value))}
    if how is None or len(vals) < 2:
        return set()
    if how == "max":
        score = {i: -v for i, v in vals.items()}
    elif how == "min":
        score = dict(vals)
    else:
        score = {i: abs(v - float(how)) for i, v in vals.items()}
    top = min(score.values())
    best = {i for i, s in score.items() if math.isclose(s, top, rel_tol=1e-12, abs_tol=1e-15)}
    return best if len(best) < len(vals) else set()


def arrow(how: metric_docs.Direction) -> str:
    """Column header hint: up-arrow, down-arrow, ``->0.5`` or empty."""
    if how == "max":
        return "\u2191"
    if how == "min":
        return "\u2193"
    if how is None:
        return ""
    return f"\u2192{how:g}"


def info_cells(run: Run) -> list[str]:
    return [run.name, run.model or "-", run.objective or "-", run.dataset or "-"]


def print_leaderboard(run_dirs: list[Path | str]) -> str:
    """A plain-text leaderboard of ``run_dirs`` for the terminal (best marked ``*``).

    Returns the table as a string (the caller prints it).
    """
    runs = [load_run(p) for p in run_dirs]
    return text_table(runs)


def text_table(runs: list[Run]) -> str:
    cols = metric_columns(runs)
    registered = registered_directions()
    hows = {c: direction(c, runs, registered) for c in cols}
    best = {c: best_runs(c, runs, hows[c]) for c in cols}
    header = list(INFO_COLUMNS) + [f"{c}{arrow(hows[c])}" for c in cols]
    rows = []
    for i, run in enumerate(runs):
        cells = info_cells(run)
        for c in cols:
            stat = run.stats.get(c)
            cell = "-" if stat is None else stat.text()
            cells.append(cell + (" *" if i in best[c] else ""))
        rows.append(cells)
    widths = [max(len(h), *(len(r[j]) for r in rows)) if rows else len(h) for j, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    notes = [f"{run.name}: {n}" for run in runs for n in run.notes]
    if any(best.values()):
        lines.append("* best in column")
    lines += [f"note: {n}" for n in notes]
    return "\n".join(lines)
