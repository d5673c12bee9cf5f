"""Scores of a HYPE study database: ``genlab hype report DB`` and ``genlab hype export DB``.

:func:`scores` reads the complete blocks (:func:`genlab.human.db.complete_blocks`) and
scores each model separately for human and for simulated raters (never mixed), with the
definitions of :mod:`genlab.human.protocol`. :func:`write_report` writes ``hype.json``
(read by ``genlab compare --hype``, format ``genlab-hype/1``) and ``hype.png`` (matplotlib),
and returns the text table; :func:`export_csv` writes every judgement as CSV.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from genlab.human import db as hdb
from genlab.human.protocol import hype_inf_scores, hype_time_scores
from genlab.report.hype import FORMAT, GROUPS, metric_key

N_BOOT = 2000


def scores(study: hdb.Study, *, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """``{"protocol", "config", "db", "progress", "models": {name: {"origin", "scores":
    {"human": {...} | None, "simulated": {...} | None}}}}`` for ``study``."""
    conn = hdb.connect(study.path)
    try:
        blocks = hdb.complete_blocks(conn)
        prog = hdb.progress(conn)
    finally:
        conn.close()
    protocol = study.config.protocol
    models: dict[str, Any] = {}
    for name in study.models:
        entry: dict[str, Any] = {"origin": study.origins[name], "scores": {}}
        for group in GROUPS:
            bl = blocks.get((group, name), [])
            if protocol == "infinity":
                s = hype_inf_scores([(b["rater"], b["truths"], b["corrects"]) for b in bl], n_boot=n_boot, seed=seed)
            else:
                s = hype_time_scores([(b["rater"], b["exposures"]) for b in bl], n_boot=n_boot, seed=seed)
            entry["scores"][group] = s.to_dict() if s is not None else None
            if protocol == "time" and bl:
                entry.setdefault("traces", {})[group] = [b["exposures"] for b in bl]
        models[name] = entry
    return {"format": FORMAT, "protocol": protocol, "db": str(Path(study.path).resolve()),
            "config": study.config.to_dict(), "generated": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "n_boot": n_boot, "bootstrap_seed": seed,
            "progress": {"counts": prog["counts"], "judgements": prog["judgements"]}, "models": models}


def text_table(res: dict[str, Any]) -> str:
    """The scores as a plain-text table; simulated rows say so."""
    inf = res["protocol"] == "infinity"
    head = ("HYPE-infinity: percent of images misjudged (unlimited time; 50 = indistinguishable)" if inf else
            "HYPE-time: mean modal staircase exposure in ms (higher = more realistic)")
    cols = ["model", "raters are", "score [95% CI]", "fakes err %", "reals err %", "raters", "blocks", "judgements"]
    rows = []
    for name, entry in res["models"].items():
        for group in GROUPS:
            s = entry["scores"].get(group)
            if s is None:
                continue
            ci = f" [{s['ci'][0]:.1f}, {s['ci'][1]:.1f}]" if s["ci"] else " [1 rater: no CI]"
            rows.append([name, "SIMULATED" if group == "simulated" else "human", f"{s['value']:.1f}{ci}",
                         f"{s['fake_error']:.1f}" if inf else "-", f"{s['real_error']:.1f}" if inf else "-",
                         str(s["raters"]), str(s["blocks"]), str(s["judgements"])])
    lines = [head, "95% CI: percentile bootstrap over raters; only complete blocks count", ""]
    if not rows:
        return "\n".join(lines + ["no complete blocks yet"])
    widths = [max(len(c), *(len(r[j]) for r in rows)) for j, c in enumerate(cols)]
    lines.append("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    if any(r[1] == "SIMULATED" for r in rows):
        lines.append("SIMULATED rows come from scripted raters (genlab hype simulate), not from people.")
    return "\n".join(lines)


def plot(res: dict[str, Any], path: Path) -> Path:
    """Bar chart of the scores with their intervals (simulated bars hatched and labelled);
    for HYPE-time a second panel with each model's mean staircase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    inf = res["protocol"] == "infinity"
    names = list(res["models"])
    traces = not inf and any(e.get("traces") for e in res["models"].values())
    fig, axes = plt.subplots(1, 2 if traces else 1, figsize=(10 if traces else 5.5, 3.8), squeeze=False)
    ax = axes[0, 0]
    colors = {"human": "tab:blue", "simulated": "tab:orange"}
    present = [g for g in GROUPS if any(res["models"][n]["scores"].get(g) for n in names)]
    width = 0.76 / max(len(present), 1)
    for k, group in enumerate(present):
        for i, name in enumerate(names):
            s = res["models"][name]["scores"].get(group)
            if s is None:
                continue
            x = i + (k - (len(present) - 1) / 2) * width
            ax.bar(x, s["value"], width, color=colors[group], hatch="//" if group == "simulated" else None,
                   edgecolor="black", lw=0.5, label=f"{'SIMULATED' if group == 'simulated' else 'human'} raters")
            if s["ci"]:
                ax.errorbar(x, s["value"], yerr=[[s["value"] - s["ci"][0]], [s["ci"][1] - s["value"]]],
                            fmt="none", ecolor="black", capsize=4)
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    if uniq:
        ax.legend(uniq.values(), uniq.keys(), fontsize=8, loc="upper right")
    if inf:
        ax.axhline(50, color="gray", ls="--", lw=1)
        ax.set_ylabel("HYPE-infinity: error rate (%)")
        ax.set_ylim(0, 100)
    else:
        ax.axhline(res["config"]["staircase"]["min_ms"], color="gray", ls="--", lw=1)
        ax.set_ylabel("HYPE-time (ms)")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=8, rotation=15)
    ax.set_title(f"{metric_key(res['protocol'], 'human')}: 95% bootstrap CI over raters", fontsize=9)
    if traces:
        ax2 = axes[0, 1]
        for i, name in enumerate(names):
            for group in GROUPS:
                tr = (res["models"][name].get("traces") or {}).get(group)
                if not tr:
                    continue
                mean = np.mean(np.array(tr, dtype=float), axis=0)
                ax2.plot(mean, color=plt.rcParams["axes.prop_cycle"].by_key()["color"][i % 10],
                         ls="--" if group == "simulated" else "-",
                         label=f"{name} ({'SIMULATED' if group == 'simulated' else 'human'})")
        ax2.set_xlabel("image in block")
        ax2.set_ylabel("exposure (ms), mean over blocks")
        ax2.set_title("staircases", fontsize=9)
        ax2.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(db_path: str | Path, out_dir: str | Path | None = None, *, n_boot: int = N_BOOT,
                 seed: int = 0) -> tuple[Path, Path, str]:
    """Write ``hype.json`` and ``hype.png`` to ``out_dir`` (default: the database's folder);
    returns their paths and the text table."""
    study = hdb.Study.load(db_path)
    res = scores(study, n_boot=n_boot, seed=seed)
    out = Path(out_dir) if out_dir is not None else Path(db_path).resolve().parent
    out.mkdir(parents=True, exist_ok=True)
    js = out / "hype.json"
    js.write_text(json.dumps(res, indent=1))
    png = plot(res, out / "hype.png")
    return js, png, text_table(res)


def export_csv(db_path: str | Path, out: str | Path | None = None) -> str:
    """Every judgement as CSV (:data:`genlab.human.db.EXPORT_COLUMNS`); written to ``out``
    when given, and returned as text."""
    hdb.Study.load(db_path)  # a clear error when the file holds no study
    conn = hdb.connect(db_path)
    try:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(hdb.EXPORT_COLUMNS)
        w.writerows(hdb.export_rows(conn))
    finally:
        conn.close()
    text = buf.getvalue()
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
    return text
