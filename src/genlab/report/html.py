"""``genlab compare RUN... --out report.html``: one self-contained HTML report.

The page has a leaderboard (one row per run, labelled by its directory; rows
grouped by dataset and the best value per metric highlighted among the runs on
the same dataset), the runs' newest sample grids side by side, training curves from
``metrics.jsonl``, bar charts of the evaluation metrics with their confidence
intervals, and a glossary of what each metric measures. Every image is an
embedded ``data:image/png;base64`` URI and the CSS is inline: the file opens
offline and can be mailed or attached as is. All text from run directories is
HTML-escaped.
"""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path

from genlab.report import hype as hype_results
from genlab.report import metric_docs, plots
from genlab.report.runs import PNG_SIGNATURE, Run, load_runs
from genlab.report.table import (INFO_COLUMNS, arrow, best_per_dataset, direction, group_by_dataset,
                                 info_cells, metric_columns, registered_directions)

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Liberation Sans", sans-serif;
       margin: 24px auto; max-width: 1200px; padding: 0 16px; color: #1f2328; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
.sub { color: #57606a; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.9em; margin: 8px 0; }
th, td { border: 1px solid #d0d7de; padding: 5px 9px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.best { background: #dafbe1; font-weight: 700; }
td.blank { color: #8c959f; text-align: center; }
td.notes { color: #9a6700; font-size: 0.85em; max-width: 260px; }
tr.group-start td { border-top: 3px solid #57606a; }
tr:nth-child(even) td:not(.best) { background: #fbfcfd; }
.scroll { overflow-x: auto; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 16px; }
figure { margin: 0; border: 1px solid #d0d7de; border-radius: 6px; padding: 8px; background: #fff; }
figure img.samples { width: 100%; display: block; }
figure img.small { image-rendering: pixelated; }
td.name { white-space: nowrap; font-weight: 600; }
figcaption { font-size: 0.85em; margin-top: 6px; color: #57606a; }
figcaption b { color: #1f2328; }
.missing { height: 160px; display: flex; align-items: center; justify-content: center;
           color: #8c959f; background: #f6f8fa; border-radius: 4px; font-size: 0.9em; }
img.plot { max-width: 100%; display: block; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; font-size: 0.9em; }
dt { font-weight: 600; font-family: ui-monospace, monospace; }
dd { margin: 0; }
details { margin: 4px 0; font-size: 0.85em; }
pre { background: #f6f8fa; padding: 8px; border-radius: 4px; overflow-x: auto; }
"""


def compare(run_dirs: list[Path], out: Path, *, title: str | None = None,
            hype: list[Path] | None = None) -> Path:
    """Write an HTML report comparing ``run_dirs`` to ``out``; returns ``out``.

    Each run directory needs no particular file: runs lacking ``eval.json``,
    samples or ``metrics.jsonl`` appear with blanks and a note. ``hype``: files written
    by ``genlab hype report`` whose scores join the leaderboard (see
    :mod:`genlab.report.hype`). Raises ``ValueError`` for an empty list and
    ``FileNotFoundError`` for a path that is not a directory.
    """
    if not run_dirs:
        raise ValueError("compare() needs at least one run directory; got none")
    runs = load_runs(run_dirs)
    files = hype_results.attach(runs, list(hype or []))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(runs, title=title, hype=files), encoding="utf-8")
    return out


def render(runs: list[Run], *, title: str | None = None, hype: list | None = None) -> str:
    """The report's HTML text for already loaded ``runs`` (shown grouped by dataset);
    ``hype``: :class:`genlab.report.hype.HypeFile` s already attached to the runs."""
    runs = group_by_dataset(runs)
    title = title or f"genlab comparison of {len(runs)} run{'s' if len(runs) != 1 else ''}"
    columns = metric_columns(runs)
    registered = registered_directions()
    hows = {c: direction(c, runs, registered) for c in columns}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">{len(runs)} run(s): '
        + ", ".join(f"<code>{escape(str(r.path))}</code>" for r in runs) + "</p>",
        _leaderboard(runs, columns, hows),
        hype_results.section(hype or []),
        _samples(runs),
        _curves(runs),
        _metric_plots(runs, columns),
        _glossary(columns, hows),
        _protocols(runs),
        "</body></html>",
    ]
    return "\n".join(parts)


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _leaderboard(runs: list[Run], columns: list[str], hows: dict) -> str:
    best = {c: best_per_dataset(c, runs, hows[c]) for c in columns}
    several = len({r.dataset for r in runs}) > 1
    head = "".join(f"<th>{escape(h)}</th>" for h in INFO_COLUMNS)
    head += "".join(f'<th title="{escape(_describe(c))}">{escape(c + arrow(hows[c]))}</th>'
                    for c in columns)
    head += "<th>notes</th>"
    rows = []
    for i, run in enumerate(runs):
        info = [escape(v) for v in info_cells(run)]
        cells = [f'<td class="name">{info[0]}</td>'] + [f"<td>{v}</td>" for v in info[1:]]
        for c in columns:
            stat = run.stats.get(c)
            if stat is None:
                cells.append('<td class="blank">&ndash;</td>')
            else:
                cls = "num best" if i in best[c] else "num"
                cells.append(f'<td class="{cls}">{escape(stat.text())}</td>')
        cells.append(f'<td class="notes">{"<br>".join(escape(n) for n in run.notes)}</td>')
        start = several and i > 0 and run.dataset != runs[i - 1].dataset
        rows.append(f'<tr class="{"run group-start" if start else "run"}">{"".join(cells)}</tr>')
    scope = ("among the runs on the same dataset (rows are grouped by dataset; numbers from "
             "different datasets are not compared)" if several else "")
    legend = ('<p class="sub">&uarr; higher is better, &darr; lower is better, &rarr;x closest to x '
              'is best; the best value per column '
              + (escape(scope) + " " if scope else "")
              + 'is <span style="background:#dafbe1;font-weight:700">highlighted</span>. '
              'Runs are named by their directory; the recipe column is the name in config.yaml. '
              'Intervals: [lo, hi] is a confidence interval, &plusmn; a standard deviation or error.</p>')
    return ('<h2 id="leaderboard">Leaderboard</h2><div class="scroll">'
            f'<table id="leaderboard-table"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>{legend}')


def _samples(runs: list[Run]) -> str:
    cards = []
    for run in runs:
        caption = f"<b>{escape(run.name)}</b>"
        if run.dataset:
            caption += f" &middot; {escape(run.dataset)}"
        png = run.sample.read_bytes() if run.sample is not None else None
        if png is not None and png.startswith(PNG_SIGNATURE):
            rel = run.sample.relative_to(run.path)
            size = "samples small" if _png_width(png) < 256 else "samples"
            body = (f'<img class="{size}" src="{data_uri(png)}" '
                    f'alt="{escape(f"samples of {run.name}")}">')
            caption += f" &middot; <code>{escape(str(rel))}</code>"
        elif png is not None:
            body = f'<div class="missing">{escape(run.sample.name)} is not a PNG file</div>'
        else:
            body = '<div class="missing">no samples</div>'
        cards.append(f"<figure>{body}<figcaption>{caption}</figcaption></figure>")
    return f'<h2 id="samples">Samples</h2><div class="grid">{"".join(cards)}</div>'


def _png_width(png: bytes) -> int:
    """Pixel width from the PNG header (IHDR is the first chunk: bytes 16..20)."""
    return int.from_bytes(png[16:20], "big")


def _plot_section(anchor: str, heading: str, png: bytes | None, empty: str, note: str = "") -> str:
    if png is None:
        return f'<h2 id="{anchor}">{heading}</h2><p class="sub">{escape(empty)}</p>'
    return (f'<h2 id="{anchor}">{heading}</h2>{note}'
            f'<img class="plot" src="{data_uri(png)}" alt="{escape(heading)}">')


def _curves(runs: list[Run]) -> str:
    return _plot_section("curves", "Training curves", plots.training_curves(runs),
                         "No run has a metrics.jsonl with numeric values.")


def _metric_plots(runs: list[Run], columns: list[str]) -> str:
    note = ('<p class="sub">Bars are numbered as in the legend; whiskers show the confidence '
            'interval (or &plusmn; standard deviation / error) where the evaluation reported one.</p>')
    return _plot_section("metric-plots", "Metrics with confidence intervals",
                         plots.metric_bars(runs, columns), "No run has an eval.json.", note)


def _describe(key: str) -> str:
    doc = metric_docs.lookup(key)
    return doc[1] if doc else "No description available for this metric."


def _glossary(columns: list[str], hows: dict) -> str:
    if not columns:
        return ""
    items = []
    for c in columns:
        how = {"max": "higher is better", "min": "lower is better", None: "no universal ordering"}.get(
            hows[c]) or f"closest to {hows[c]:g} is best"
        items.append(f"<dt>{escape(c)}</dt><dd>{escape(_describe(c))} <i>({escape(how)})</i></dd>")
    return f'<h2 id="glossary">What the metrics measure</h2><dl>{"".join(items)}</dl>'


def _protocols(runs: list[Run]) -> str:
    items = []
    for run in runs:
        if not run.eval_info:
            continue
        text = json.dumps(run.eval_info, indent=2, sort_keys=True, default=str)
        items.append(f"<details><summary>{escape(run.name)}</summary><pre>{escape(text)}</pre></details>")
    if not items:
        return ""
    return ('<h2 id="protocol">Evaluation protocol</h2><p class="sub">Sample size, seed and '
            f'settings each evaluation recorded in its eval.json.</p>{"".join(items)}')
