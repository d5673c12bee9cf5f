"""Mode-coverage table: every critic objective (and GMMN) trained on ring8 and
grid25 with the engine (:func:`genlab.train.fit`), several seeds each, judged by
the ``modes`` metric (VEEGAN/PacGAN protocol, arXiv 1705.07761 / 1712.04086):
modes captured, percent high-quality samples (within 3 std of a mode) and the
reverse KL of the mode histogram to uniform; mean and standard error over seeds.

The ``recommended`` row is genlab's configuration for mixtures of tight modes
(:data:`RECOMMENDED`): non-saturating GAN, PacGAN packing of 2, an R1 penalty
(arXiv 1801.04406) of weight 0.1 on ring8 and 0.5 on grid25, Adam(0.5, 0.9) at 3e-3 with
cosine decay to 0, batch 1024, 10000 steps, and a generator with an 8-dimensional code
(about 2 min per run on one core). The misses that remain are thin "bridges" of samples
between neighbouring modes. The tuning runs are in the comments of :data:`RECOMMENDED`;
the 5-seed table's figures are in docs/results.md. The same configurations as recipes:
``recipes/ring8-recommended.yaml`` and ``recipes/grid25-recommended.yaml``.
Runs go to ``out/runs/<dataset>/<row>/seed-<k>`` and are spread over ``workers``
processes (one thread each).
"""

from __future__ import annotations

import copy
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from genlab.experiments import progress_bar, write_table

NETS = {"critic": {"name": "mlp", "hidden": 128, "depth": 3}}
GP = [{"name": "gp", "weight": 10.0}]

#: row name -> objective section and train overrides (the common train settings are in :func:`config`).
ROWS: dict[str, dict[str, Any]] = {
    "gan": {"objective": {"name": "gan"}},
    "nsgan": {"objective": {"name": "nsgan"}},
    **{f"fgan-{d}": {"objective": {"name": "fgan", "divergence": d}}
       for d in ("kl", "reverse_kl", "pearson", "neyman", "hellinger", "js", "tv", "gan")},
    "lsgan": {"objective": {"name": "lsgan"}},
    "hinge": {"objective": {"name": "hinge"}},
    "wgan": {"objective": {"name": "wgan", "clip": 0.05}, "train": {"schedule": {"critic": 5}, "steps": 800}},
    "wgan-gp": {"objective": {"name": "wgan-gp"}, "train": {"schedule": {"critic": 2}}},
    "cramer": {"objective": {"name": "cramer"}},
    "gmmn": {"objective": {"name": "gmmn", "sigmas": [0.01, 0.02, 0.05, 0.1, 0.3, 1.0]}},
    "mmd-gan": {"objective": {"name": "mmd-gan"}},
    **{f"ratio-{b}": {"objective": {"name": "ratio", "bregman": b}} for b in ("lsif", "kliep", "logistic")},
    "nsgan+pack2": {"objective": {"name": "nsgan", "pack": 2}},
    "nsgan+dragan": {"objective": {"name": "nsgan", "penalty": [{"name": "dragan", "weight": 10.0}]}},
    "nsgan+sn": {"objective": {"name": "nsgan", "spectral_norm": True}},
}

#: genlab's recommended configurations for ring8 / grid25 (objective, train and model sections;
#: ``per_data`` holds what differs between the two datasets: the R1 weight).
RECOMMENDED: dict[str, Any] = {
    "objective": {"name": "nsgan", "pack": 2, "penalty": [{"name": "r1", "weight": 0.5}]},
    # cosine decay to 0 over 10000 steps is what removes most of grid25's bridges
    # (linear decay over 4000 steps: 34% HQ, reverse KL 0.32); batch 1024 rather than 256
    # thins them further (grid25 96.7% vs 92.4% HQ, seeds 0-1) at twice the cost per run.
    "train": {"steps": 10000, "batch_size": 1024, "lr": 3e-3, "lr_schedule": "cosine"},
    # an 8-dimensional code thins the bridges further (grid25 92.3% vs 87.1% HQ with 2)
    "model": {"latent_dim": 8},
    # ring8's modes are 5 times narrower; a lighter R1 suits it (seeds 0-1: 97.9% HQ with
    # weight 0.1, 97.8% with 0.25, 97.5% with 0.5), while grid25 wants 0.5 (95.7% with 0.1).
    "per_data": {"ring8": {"objective": {"penalty": [{"name": "r1", "weight": 0.1}]}}},
}


#: rows whose runs take longest (s/run with both cores busy: recommended ~130, mmd-gan ~80,
#: gmmn ~15, most others 5-25); the table submits them first.
HEAVY_FIRST = ("recommended", "mmd-gan", "gmmn")


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``over`` recursively (mappings merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def config(row: dict[str, Any], data: str, seed: int, steps: int | None = None) -> dict[str, Any]:
    """A full run config (mapping) for one table cell; ``row["per_data"][data]`` (optional)
    overrides the row's sections for that dataset."""
    row = merge({k: v for k, v in row.items() if k != "per_data"}, row.get("per_data", {}).get(data, {}))
    obj = copy.deepcopy(row["objective"])
    if obj["name"] != "gmmn":
        obj.setdefault("critic", dict(NETS["critic"]))
    train = {"steps": 2000, "batch_size": 256, "lr": 1e-3, "betas": [0.5, 0.9], "lr_schedule": "linear",
             "log_every": 500, "progress": False, "cpu": True, **copy.deepcopy(row.get("train", {}))}
    if steps is not None:
        train["steps"] = steps
    return {"seed": seed, "name": f"{data}-{obj['name']}",
            "data": {"name": data, "seed": seed},
            "model": {"name": "mlp_generator", "latent_dim": 2, "hidden": 128, "depth": 3,
                      **copy.deepcopy(row.get("model", {}))},
            "objective": obj, "train": train, "eval": {"metrics": ["modes"], "n": 2500, "seed": 0}}


def _diverged(data: str, message: str) -> dict[str, float]:
    """A diverged run captured nothing: 0 modes, 0% HQ, the worst reverse KL (log K)."""
    k = {"ring8": 8, "grid25": 25}.get(data, 0)
    return {"modes": 0.0, "hq_percent": 0.0, "reverse_kl": math.log(k) if k else float("nan"),
            "diverged": 1.0, "error": message[:200]}


def _cached(run_dir: Path, data: str) -> dict[str, float] | None:
    """Results of a cell finished by an earlier (interrupted) call, so the table resumes."""
    if (run_dir / "diverged.txt").is_file():
        values = _diverged(data, (run_dir / "diverged.txt").read_text())
    elif (run_dir / "eval.json").is_file():
        values = {**json.loads((run_dir / "eval.json").read_text())["metrics"], "diverged": 0.0}
    else:
        return None
    lines = (run_dir / "metrics.jsonl").read_text().splitlines() if (run_dir / "metrics.jsonl").is_file() else []
    values["seconds"] = json.loads(lines[-1])["time"] if lines else float("nan")
    return values


def train_one(cfg_dict: dict[str, Any], run_dir: str) -> dict[str, float]:
    """Train one config with the engine in this process (one thread); returns the eval metrics
    plus ``seconds`` and ``diverged`` (1 when the loss became NaN/inf: see :func:`_diverged`)."""
    import torch

    from genlab.config import from_dict
    from genlab.train import TrainingDiverged, fit

    data = cfg_dict["data"]["name"]
    cached = _cached(Path(run_dir), data)
    if cached is not None:
        return cached
    torch.set_num_threads(1)
    cfg = from_dict(cfg_dict)
    t0 = time.time()
    try:
        values = {**fit(cfg, run_dir)["eval"], "diverged": 0.0}
    except TrainingDiverged as e:  # a diverged run counts as a failure, it does not stop the table
        (Path(run_dir) / "diverged.txt").write_text(str(e))
        values = _diverged(data, str(e))
    values["seconds"] = time.time() - t0
    return values


def _mean_se(xs: list[float]) -> tuple[float, float]:
    a = np.asarray([x for x in xs if math.isfinite(x)], dtype=float)
    if len(a) == 0:
        return float("nan"), float("nan")
    return float(a.mean()), float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else 0.0


def run(*, out: str | Path, quick: bool = False, seeds: int = 5, progress: bool = True,
        rows: list[str] | None = None, datasets: tuple[str, ...] = ("ring8", "grid25"),
        workers: int = 2, steps: int | None = None) -> dict:
    """Train every row of :data:`ROWS` plus ``recommended`` on each dataset for ``seeds`` seeds;
    writes ``modes_table.md`` and ``modes_table.png`` into ``out``. ``quick``: 1 seed, a few
    rows, 300 steps (a smoke test, not a result)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = {**ROWS, "recommended": RECOMMENDED}
    if quick:
        seeds, steps = 1, steps or 300
        rows = rows or ["nsgan", "wgan-gp", "gmmn", "recommended"]
    names = rows or list(table)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"unknown rows {unknown}; valid rows: {', '.join(table)}")
    jobs = [(d, n, s) for d in datasets for n in names for s in range(seeds)]
    bar = progress_bar(len(jobs), progress, "modes-table")
    results: dict[tuple[str, str, int], dict[str, float]] = {}
    # longest jobs first, so that the short ones fill the workers at the end (no lone long tail)
    order = sorted(jobs, key=lambda j: HEAVY_FIRST.index(j[1]) if j[1] in HEAVY_FIRST else len(HEAVY_FIRST))
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(train_one, config(table[n], d, s, steps), str(out / "runs" / d / n / f"seed-{s}")):
                   (d, n, s) for d, n, s in order}
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            bar.update(1)
    bar.close()
    summary: dict[str, dict[str, dict[str, float]]] = {}
    rows_md = []
    for d in datasets:
        summary[d] = {}
        for n in names:
            cells = [results[(d, n, s)] for s in range(seeds)]
            stats = {}
            for k in ("modes", "hq_percent", "reverse_kl", "seconds"):
                stats[k], stats[k + "_se"] = _mean_se([c[k] for c in cells])
            stats["diverged"] = sum(c["diverged"] for c in cells)
            summary[d][n] = stats
            rows_md.append([d, n, f"{stats['modes']:.2f} ± {stats['modes_se']:.2f}",
                            f"{stats['hq_percent']:.1f} ± {stats['hq_percent_se']:.1f}",
                            f"{stats['reverse_kl']:.3f} ± {stats['reverse_kl_se']:.3f}",
                            f"{stats['diverged']:.0f}/{seeds}", f"{stats['seconds']:.0f}"])
    text = write_table(out / "modes_table.md", "Mode coverage on ring8 and grid25",
                       ["data", "objective", "modes", "HQ %", "reverse KL", "diverged", "s/run"], rows_md,
                       note=(f"Mean ± standard error over {seeds} seed(s); 2,500 samples; MLP generator and critic "
                             f"(128 x 3); modes of 8 (ring8) or 25 (grid25). Target for `recommended`: all modes, "
                             f"HQ >= 97% (ring8) / 95% (grid25), reverse KL <= 0.05. A diverged run (NaN/inf loss, "
                             f"counted in `diverged`) scores 0 modes, 0% HQ and the worst reverse KL, log K. "
                             f"s/run is training time (finished cells of an interrupted call are reused)."))
    _figure(out / "modes_table.png", summary, names, datasets)
    return {"summary": summary, "runs": {f"{d}/{n}/{s}": v for (d, n, s), v in results.items()},
            "table": str(out / "modes_table.md"), "figure": str(out / "modes_table.png"), "text": text}


def _figure(path: Path, summary: dict, names: list[str], datasets: tuple[str, ...]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 0.3 * len(names) + 1.5), squeeze=False)
    y = np.arange(len(names))
    for ax, d in zip(axes[0], datasets):
        hq = [summary[d][n]["hq_percent"] for n in names]
        err = [summary[d][n]["hq_percent_se"] for n in names]
        ax.barh(y, hq, xerr=err, color="C0")
        for i, n in enumerate(names):
            x = summary[d][n]["hq_percent"]
            x = (x if math.isfinite(x) else 0.0) + summary[d][n]["hq_percent_se"] + 1
            ax.text(min(x, 82), i, f"{summary[d][n]['modes']:.1f} modes", va="center", fontsize=7)
        ax.set(yticks=y, yticklabels=names, xlim=(0, 100), xlabel="high-quality samples (%)", title=d)
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
