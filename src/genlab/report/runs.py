"""Read a run directory into plain Python data for reports.

A run directory (written by :func:`genlab.train.fit`) holds ``config.yaml``,
``metrics.jsonl`` (one JSON object per logged step), ``samples/step-XXXXXX.png``
and ``eval.json``::

    {"metrics": {"fid": 12.3, "kid": 0.01, "kid_std": 0.002,
                 "critic": {"value": 0.4, "ci": [0.3, 0.5]}},
     "ci": {"fid": [11.9, 12.8]}, "n": 2500, "seed": 0, "protocol": {...}}

A run is labelled by its **directory name** (``runs/ring8-nsgan-2`` -> ``ring8-nsgan-2``),
not by the recipe name in ``config.yaml`` (two runs of one recipe would share it);
:func:`load_runs` disambiguates equal directory names with their parent folders
(``seed0/ring8``, ``seed1/ring8``) and the same directory given twice with ``#2``.
The recipe name is kept as :attr:`Run.recipe`.

Reading is tolerant: a missing or unreadable file leaves a blank and a note, so
a report can still show the run. Keys ending in ``_std`` / ``_se`` become
symmetric error bars of their base key, and ``_lo``/``_hi`` pairs its interval
(see :func:`parse_metrics`).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from genlab.report.metric_docs import ERROR_BASE_ALIASES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_AUX_KINDS = ("std", "se", "lo", "hi")
_STEP_RE = re.compile(r"^step-(\d+)\.png$")


@dataclass
class Stat:
    """One evaluation number: ``value`` with an optional interval ``[lo, hi]``.

    ``err_kind`` says where the interval came from: ``"ci"`` (an eval.json ``ci``),
    ``"interval"`` (``k_lo``/``k_hi`` keys), ``"std"`` or ``"se"`` (``value +- err``),
    or ``None`` when there is none.
    """

    value: float
    lo: float | None = None
    hi: float | None = None
    err_kind: str | None = None

    def text(self, digits: int = 4) -> str:
        """``"12.3 [11.9, 12.8]"``, ``"0.01 +- 0.002"`` or ``"12.3"``."""
        v = fmt(self.value, digits)
        if self.lo is None or self.hi is None:
            return v
        if self.err_kind in ("std", "se"):
            return f"{v} \u00b1 {fmt((self.hi - self.lo) / 2, digits)}"
        return f"{v} [{fmt(self.lo, digits)}, {fmt(self.hi, digits)}]"


@dataclass
class Run:
    """Everything a report shows about one run directory.

    ``name`` is the label shown in reports: the directory name (made unique over a
    list of runs by :func:`load_runs`); ``recipe`` is ``config.yaml``'s ``name``."""

    path: Path
    name: str
    recipe: str = ""
    model: str = ""
    objective: str = ""
    dataset: str = ""
    seed: Any = None
    stats: dict[str, Stat] = field(default_factory=dict)
    eval_info: dict[str, Any] = field(default_factory=dict)
    directions: dict[str, bool] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    sample: Path | None = None
    notes: list[str] = field(default_factory=list)


def fmt(x: float, digits: int = 4) -> str:
    """Compact number text: 4 significant digits, ints stay ints."""
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e15):
        return str(int(x))
    if not math.isfinite(x):
        return str(x)
    return f"{x:.{digits}g}"


def load_run(path: Path | str) -> Run:
    """Read ``path`` (a run directory). Raises ``FileNotFoundError`` if it is not a directory."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"run directory {str(path)!r} does not exist or is not a directory")
    run = Run(path=path, name=_abs(path).name)
    _read_config(run)
    _read_eval(run)
    _read_history(run)
    run.sample = find_sample(path)
    if run.sample is None:
        run.notes.append("no samples (samples/step-*.png or samples.png)")
    return run


def load_runs(paths: list[Path | str]) -> list[Run]:
    """:func:`load_run` for each path, labelled uniquely (:func:`label_runs`)."""
    runs = [load_run(p) for p in paths]
    label_runs(runs)
    return runs


def _abs(path: Path) -> Path:
    """Absolute, with ``.``/``..`` folded (symlinks kept: the name the user gave)."""
    return Path(os.path.abspath(path))


def label_runs(runs: list[Run]) -> None:
    """Set each ``run.name`` to its directory name, prefixed with as many parent
    folders as needed to tell apart runs whose directory names are equal
    (``a/ring8``, ``b/ring8``); the same directory listed again gets ``#2``, ``#3``..."""
    parts = [_abs(r.path).parts for r in runs]
    depth = [1] * len(runs)

    def label(i: int) -> str:
        return "/".join(parts[i][-depth[i]:]) if len(parts[i]) > 1 else str(parts[i][0])

    while True:
        groups: dict[str, list[int]] = {}
        for i in range(len(runs)):
            groups.setdefault(label(i), []).append(i)
        grow = [i for g in groups.values() if len({parts[j] for j in g}) > 1 for i in g
                if depth[i] < len(parts[i]) - 1]
        if not grow:
            break
        for i in grow:
            depth[i] += 1
    seen: dict[str, int] = {}
    for i, run in enumerate(runs):
        base = label(i)
        seen[base] = seen.get(base, 0) + 1
        run.name = base if seen[base] == 1 else f"{base} #{seen[base]}"


def _read_config(run: Run) -> None:
    cfg_path = run.path / "config.yaml"
    if not cfg_path.is_file():
        run.notes.append("no config.yaml")
        return
    try:
        cfg = yaml.safe_load(cfg_path.read_text()) or {}
    except (yaml.YAMLError, OSError) as e:
        run.notes.append(f"config.yaml unreadable: {e}")
        return
    if not isinstance(cfg, dict):
        run.notes.append("config.yaml is not a mapping")
        return
    run.recipe = str(cfg.get("name") or "")
    run.seed = cfg.get("seed")
    for attr, key in (("model", "model"), ("objective", "objective"), ("dataset", "data")):
        section = cfg.get(key)
        if isinstance(section, dict):
            setattr(run, attr, str(section.get("name", "")))
        elif isinstance(section, str):
            setattr(run, attr, section)


def _read_eval(run: Run) -> None:
    eval_path = run.path / "eval.json"
    if not eval_path.is_file():
        run.notes.append("no eval.json (run `genlab eval` on it)")
        return
    try:
        data = json.loads(eval_path.read_text())
    except (json.JSONDecodeError, OSError) as e:
        run.notes.append(f"eval.json unreadable: {e}")
        return
    if not isinstance(data, dict):
        run.notes.append("eval.json is not a JSON object")
        return
    metrics = data.get("metrics", {})
    if not isinstance(metrics, dict):
        run.notes.append("eval.json 'metrics' is not an object")
        metrics = {}
    cis = data.get("ci") if isinstance(data.get("ci"), dict) else {}
    run.stats = parse_metrics(metrics, cis)
    hib = data.get("higher_is_better")
    if isinstance(hib, dict):
        run.directions = {str(k): bool(v) for k, v in hib.items()}
    run.eval_info = {k: v for k, v in data.items() if k not in ("metrics", "ci", "higher_is_better")}


def parse_metrics(metrics: dict[str, Any], cis: dict[str, Any] | None = None) -> dict[str, Stat]:
    """``eval.json``'s ``metrics`` (and ``ci``) as ``{name: Stat}``.

    Values may be numbers, ``{"value": x, "ci": [lo, hi]}`` (or ``"std"``/``"se"``),
    or nested objects of numbers (flattened to ``"outer/inner"``). Sibling keys give
    intervals: ``k_std``/``k_se`` (``k +- e``) and the pair ``k_lo``/``k_hi``; they
    attach to ``k``, or to ``ERROR_BASE_ALIASES[k]`` (``critic_lo`` -> ``critic_w``),
    and are then not metrics of their own. Precedence: an explicit ``ci`` over
    ``_lo``/``_hi`` over ``_std``/``_se``. Non-numeric values are skipped.
    """
    flat = _flatten(metrics)
    aux: dict[str, tuple[str, str]] = {}  # key -> (the metric it bounds, kind)
    for key in flat:
        base, kind = _split_aux(key)
        target = base if base in flat else ERROR_BASE_ALIASES.get(base or "")
        if target in flat and _is_number(flat[key]):
            if kind in ("lo", "hi") and not all(_is_number(flat.get(f"{base}_{k}")) for k in ("lo", "hi")):
                continue
            aux[key] = (target, kind)
    stats = {k: st for k, v in flat.items() if k not in aux and (st := _to_stat(v)) is not None}
    for key, (target, kind) in sorted(aux.items(), key=lambda kv: kv[1][1] in ("lo", "hi")):
        s = stats.get(target)
        if s is None or s.err_kind == "ci":
            continue
        v = float(flat[key])
        if kind in ("std", "se"):
            s.lo, s.hi, s.err_kind = s.value - v, s.value + v, kind
        else:
            setattr(s, kind, v)
            s.err_kind = "interval"
    for key, ci in (cis or {}).items():
        interval = _interval(ci)
        if key in stats and interval is not None:
            stats[key].lo, stats[key].hi = interval
            stats[key].err_kind = "ci"
    return stats


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and "value" not in v:
            out.update(_flatten(v, key + "/"))
        else:
            out[key] = v
    return out


def _split_aux(key: str) -> tuple[str | None, str | None]:
    """``"kid_std"`` -> ``("kid", "std")``; ``(None, None)`` for an ordinary key."""
    for kind in _AUX_KINDS:
        suffix = "_" + kind
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)], kind
    return None, None


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _interval(ci: Any) -> tuple[float, float] | None:
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_is_number(c) for c in ci):
        return float(ci[0]), float(ci[1])
    return None


def _to_stat(raw: Any) -> Stat | None:
    if _is_number(raw):
        return Stat(raw)
    if not (isinstance(raw, dict) and _is_number(raw.get("value"))):
        return None
    stat = Stat(raw["value"])
    interval = _interval(raw.get("ci"))
    if interval is not None:
        stat.lo, stat.hi, stat.err_kind = *interval, "ci"
        return stat
    for kind in ("std", "se"):
        if _is_number(raw.get(kind)):
            e = float(raw[kind])
            stat.lo, stat.hi, stat.err_kind = stat.value - e, stat.value + e, kind
            break
    return stat


def _read_history(run: Run) -> None:
    hist_path = run.path / "metrics.jsonl"
    if not hist_path.is_file():
        run.notes.append("no metrics.jsonl (no training curves)")
        return
    bad = 0
    for line in hist_path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(row, dict) and _is_number(row.get("step")):
            run.history.append({k: float(v) for k, v in row.items() if _is_number(v)})
        else:
            bad += 1
    if bad:
        run.notes.append(f"metrics.jsonl: skipped {bad} unreadable line(s)")


def find_sample(path: Path) -> Path | None:
    """The run's newest sample grid: ``samples/final.png``, else the highest
    ``samples/step-N.png``, else ``samples.png`` (run root or ``samples/``)."""
    samples = path / "samples"
    if (samples / "final.png").is_file():
        return samples / "final.png"
    steps = []
    if samples.is_dir():
        for p in samples.iterdir():
            m = _STEP_RE.match(p.name)
            if m and p.is_file():
                steps.append((int(m.group(1)), p))
    if steps:
        return max(steps)[1]
    for p in (path / "samples.png", samples / "samples.png"):
        if p.is_file():
            return p
    return None
