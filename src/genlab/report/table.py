"""The leaderboard: one row per run, one column per metric, best value marked.

Runs are labelled by directory (see :mod:`genlab.report.runs`), rows are grouped
by dataset (datasets in first-seen order, runs in the given order within each), and
the best value is marked only **among runs on the same dataset**: numbers from
different datasets are not comparable. Runs with no dataset in their config form
a group of their own.

Which way is better comes, in order, from the run's ``eval.json``
(``"higher_is_better": {name: bool}``), from the registered metric classes'
``higher_is_better`` declarations, then from :data:`~genlab.report.metric_docs.METRIC_DOCS`.
A metric with no known direction gets no highlight.
"""

from __future__ import annotations

import math
from pathlib import Path

from genlab.report import metric_docs
from genlab.report.runs import Run, load_runs

INFO_COLUMNS = ("run", "recipe", "model", "objective", "dataset")


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


def group_by_dataset(runs: list[Run]) -> list[Run]:
    """``runs`` reordered so that runs on one dataset are adjacent (stable: datasets in
    first-seen order, runs in their given order within a dataset)."""
    first: dict[str, int] = {}
    for i, run in enumerate(runs):
        first.setdefault(run.dataset, i)
    return sorted(runs, key=lambda r: first[r.dataset])


def best_per_dataset(key: str, runs: list[Run], how: metric_docs.Direction) -> set[int]:
    """Indices of the best runs for ``key`` (:func:`best_runs`) within each dataset:
    only runs on the same dataset are compared."""
    groups: dict[str, list[int]] = {}
    for i, run in enumerate(runs):
        groups.setdefault(run.dataset, []).append(i)
    best: set[int] = set()
    for idx in groups.values():
        best |= {idx[j] for j in best_runs(key, [runs[i] for i in idx], how)}
    return best


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
    return [run.name, run.recipe or "-", run.model or "-", run.objective or "-", run.dataset or "-"]


def print_leaderboard(run_dirs: list[Path | str], hype: list[Path | str] | None = None) -> str:
    """A plain-text leaderboard of ``run_dirs`` for the terminal (best marked ``*``), with
    the HYPE scores of the ``hype`` files (``genlab hype report``) as extra columns.

    Returns the table as a string (the caller prints it).
    """
    from genlab.report import hype as hype_results

    runs = load_runs(run_dirs)
    hype_results.attach(runs, list(hype or []))
    return text_table(runs)


def text_table(runs: list[Run]) -> str:
    """The leaderboard of ``runs`` as text: rows grouped by dataset, ``*`` marking the
    best value of a column among the runs on the same dataset."""
    runs = group_by_dataset(runs)
    cols = metric_columns(runs)
    registered = registered_directions()
    hows = {c: direction(c, runs, registered) for c in cols}
    best = {c: best_per_dataset(c, runs, hows[c]) for c in cols}
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
        several = len({r.dataset for r in runs}) > 1
        lines.append("* best in column" + (" among runs on the same dataset" if several else ""))
    lines += [f"note: {n}" for n in notes]
    return "\n".join(lines)
