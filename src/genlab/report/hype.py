"""HYPE results (``genlab hype report DB`` -> ``hype.json``) folded into ``genlab compare``.

``genlab compare RUN... --hype hype.json`` (repeatable) adds, for each run the study
evaluated, a leaderboard column per protocol and rater kind: ``hype_inf`` / ``hype_time``
from people and ``hype_inf_simulated`` / ``hype_time_simulated`` from scripted raters
(never mixed), with their 95% bootstrap intervals, and a "Human evaluation (HYPE)"
section with every number of the file. A model of the study is matched to a run by its
recorded run directory (absolute path), else by the directory name.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from genlab.report.runs import Run, Stat, fmt

FORMAT = "genlab-hype/1"
PROTOCOL_KEYS = {"infinity": "hype_inf", "time": "hype_time"}
GROUPS = ("human", "simulated")


def metric_key(protocol: str, group: str) -> str:
    """``hype_inf``, ``hype_time``, ``hype_inf_simulated`` or ``hype_time_simulated``."""
    return PROTOCOL_KEYS[protocol] + ("_simulated" if group == "simulated" else "")


@dataclass
class HypeFile:
    """One ``hype.json``: its path, protocol and models, and which runs matched."""

    path: Path
    protocol: str
    models: dict[str, dict[str, Any]]
    matched: dict[str, str] = field(default_factory=dict)  # model -> run label


def read(path: Path | str) -> HypeFile:
    """Read and check a ``hype.json`` written by ``genlab hype report``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"--hype {path}: no such file; write it with `genlab hype report DB`") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"--hype {path} is not JSON ({e}); write it with `genlab hype report DB`") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"--hype {path} is not a genlab HYPE result (format {FORMAT!r}); write it with "
                         "`genlab hype report DB`")
    if data.get("protocol") not in PROTOCOL_KEYS or not isinstance(data.get("models"), dict):
        raise ValueError(f"--hype {path}: unknown protocol {data.get('protocol')!r} or no models")
    return HypeFile(path, data["protocol"], data["models"])


def attach(runs: list[Run], paths: list[Path | str]) -> list[HypeFile]:
    """Add the HYPE scores in ``paths`` to the matching ``runs`` (stats, directions, a note)."""
    files = [read(p) for p in paths]
    by_path = {os.path.abspath(r.path): r for r in runs}
    by_name: dict[str, list[Run]] = {}
    for r in runs:
        by_name.setdefault(Path(os.path.abspath(r.path)).name, []).append(r)
    for hf in files:
        for name, entry in hf.models.items():
            origin = entry.get("origin") or ""
            run = by_path.get(os.path.abspath(origin)) if origin else None
            if run is None and len(by_name.get(name, [])) == 1:
                run = by_name[name][0]
            if run is None:
                continue
            hf.matched[name] = run.name
            for group in GROUPS:
                score = (entry.get("scores") or {}).get(group)
                if not isinstance(score, dict) or not isinstance(score.get("value"), (int, float)):
                    continue
                key = metric_key(hf.protocol, group)
                ci = score.get("ci")
                lo, hi = (ci if isinstance(ci, list) and len(ci) == 2 else (None, None))
                run.stats[key] = Stat(float(score["value"]), lo, hi, "ci" if lo is not None else None)
                run.directions[key] = True
                if group == "simulated":
                    run.notes.append(f"{key}: from SIMULATED raters (scripted, not people)")
    return files


def section(files: list[HypeFile]) -> str:
    """The report's "Human evaluation (HYPE)" section (empty without files)."""
    if not files:
        return ""
    parts = ['<h2 id="hype">Human evaluation (HYPE)</h2>',
             ('<p class="sub">HYPE (arXiv 1904.01121). HYPE&infin;: percent of images misjudged with unlimited '
              'viewing time (50 = fakes indistinguishable from real). HYPE-time: exposure in ms at which raters '
              'stay 75% right (adaptive staircase; higher = more realistic). Intervals: 95% bootstrap over '
              'raters. Rows from <b>simulated</b> raters are scripted, not people.</p>')]
    for hf in files:
        rows = []
        for name, entry in hf.models.items():
            for group in GROUPS:
                s = (entry.get("scores") or {}).get(group)
                if not isinstance(s, dict):
                    continue
                ci = s.get("ci")
                value = fmt(float(s["value"])) + (f" [{fmt(float(ci[0]))}, {fmt(float(ci[1]))}]" if ci else "")
                extra = (f"{fmt(float(s['fake_error']))} / {fmt(float(s['real_error']))}"
                         if "fake_error" in s else "&ndash;")
                kind = "<b>simulated</b>" if group == "simulated" else "human"
                run = hf.matched.get(name, "(not among the runs)")
                rows.append(f"<tr><td>{escape(name)}</td><td>{escape(run)}</td><td>{kind}</td>"
                            f'<td class="num">{escape(value)}</td><td class="num">{extra}</td>'
                            f'<td class="num">{int(s.get("raters", 0))}</td>'
                            f'<td class="num">{int(s.get("judgements", 0))}</td></tr>')
        unit = "error %" if hf.protocol == "infinity" else "ms"
        parts.append(f"<h3>{escape(metric_key(hf.protocol, 'human'))} &middot; <code>{escape(str(hf.path))}</code>"
                     f"</h3><table><thead><tr><th>model</th><th>run</th><th>raters are</th>"
                     f"<th>score ({unit}) [95% CI]</th><th>fakes / reals error %</th><th>raters</th>"
                     f"<th>judgements</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    return "".join(parts)
