"""Reports over run directories: ``genlab compare RUN... --out report.html``.

* :func:`compare` writes one self-contained HTML file (leaderboard, sample grids,
  training curves, metric bar charts with confidence intervals, metric glossary).
* :func:`print_leaderboard` returns the leaderboard as plain text for a terminal.
* :func:`load_run` reads one run directory into a :class:`Run`; :func:`load_runs` reads
  several and labels them uniquely by directory.
"""

from genlab.report.html import compare, render
from genlab.report.metric_docs import METRIC_DOCS
from genlab.report.runs import Run, Stat, load_run, load_runs
from genlab.report.table import print_leaderboard

__all__ = ["compare", "render", "print_leaderboard", "load_run", "load_runs", "Run", "Stat", "METRIC_DOCS"]
