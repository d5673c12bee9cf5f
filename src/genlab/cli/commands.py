"""Implementations of the ``genlab`` subcommands (each over the Python API)."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

import numpy as np
import torch
import yaml

from genlab import registry
from genlab.api import RunNotFound, load, load_spec
from genlab.capabilities import CapabilityError, capabilities_of
from genlab.config import ConfigError
from genlab.train.loop import RunDirError, TrainingDiverged

USER_ERRORS = (ConfigError, CapabilityError, RunNotFound, RunDirError, FileNotFoundError, ValueError)
DIVERGED = (TrainingDiverged,)
RECIPES = Path(__file__).resolve().parent.parent / "recipes"

#: ``genlab bench NAME``: module in genlab.experiments with ``run(*, out, quick, progress)``.
BENCHES = {
    "modes": "modes_table",
    "cramer": "cramer_bias",
    "many-paths": "many_paths",
    "realnvp-mle-vs-critic": "realnvp_mle_vs_critic",
}
LISTABLE = ("datasets", "models", "objectives", "metrics", "recipes", "benches")


def resolve_config(name: str) -> Path:
    """A YAML path, or the name of a bundled recipe (``ring8-nsgan``)."""
    path = Path(name)
    if path.is_file():
        return path
    bundled = RECIPES / (name if name.endswith(".yaml") else f"{name}.yaml")
    if bundled.is_file():
        return bundled
    have = ", ".join(sorted(p.stem for p in RECIPES.glob("*.yaml")))
    raise ConfigError(f"config {name!r} is neither a file nor a bundled recipe; recipes: {have}")


def cmd_train(args: argparse.Namespace) -> int:
    from genlab.config import load_config
    from genlab.train import fit

    path = resolve_config(args.config)
    cfg = load_config(path, args.set)
    out = Path(args.out or f"runs/{cfg.name or path.stem}")
    result = fit(cfg, out, resume=args.resume)
    print(f"trained {result['step']} steps in {result['seconds']:.1f} s -> {out}")
    for k, v in result["eval"].items():
        print(f"  {k}: {v:.4g}")
    print(f"samples: {out / 'samples'}   metrics: {out / 'metrics.jsonl'}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from genlab.metrics.evaluate import draw_samples
    from genlab.train.pictures import save_samples_png

    model = load(args.run, ema=False if args.no_ema else None)
    spec = load_spec(args.run)
    x = draw_samples(model, args.n, seed=args.seed, spec=spec)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, x.numpy())
    elif out.suffix == ".png":
        save_samples_png(out, x, spec, title=f"{Path(args.run).name}: {args.n} samples, seed {args.seed}")
    else:
        raise ValueError(f"--out must end in .npy or .png, got {out.name!r}")
    print(f"wrote {args.n} samples of shape {tuple(x.shape[1:])} to {out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    metrics = [m.strip() for m in args.metrics.split(",")] if args.metrics else None
    if args.real or args.fake:
        results = _eval_arrays(args, metrics)
    elif args.run:
        results = _eval_run(args, metrics)
    else:
        raise ValueError("give a RUN directory, or --real A.npy --fake B.npy")
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        for k, v in results["metrics"].items():
            print(f"{k:>20}: {v:.6g}")
    return 0


def _eval_arrays(args: argparse.Namespace, metrics: list[str] | None) -> dict:
    from genlab.metrics.samples import evaluate_samples, load_samples

    if not (args.real and args.fake):
        raise ValueError("--real and --fake go together: two arrays (N, *event_shape) to compare")
    real, fake = load_samples(args.real), load_samples(args.fake)
    names = metrics or ["fid", "kid", "prdc"]
    values = evaluate_samples(torch.from_numpy(real), torch.from_numpy(fake), names, features=args.features,
                              seed=args.seed or 0)
    return {"metrics": values, "real": args.real, "fake": args.fake, "features": args.features}


def _eval_run(args: argparse.Namespace, metrics: list[str] | None) -> dict:
    from genlab.build import build_dataset, check_metric
    from genlab.metrics.evaluate import evaluate_model

    run = Path(args.run)
    model = load(run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    ev = cfg.get("eval", {})
    names = metrics or ev.get("metrics") or []
    if not names:
        raise ValueError(f"no metrics: pass --metrics (see `genlab list metrics`) or set eval.metrics in "
                         f"{run / 'config.yaml'}")
    for m in names:
        check_metric(m, type(model), cfg["model"]["name"], type(build_dataset(cfg["data"])), cfg["data"]["name"])
    dataset = build_dataset(cfg["data"])
    n, seed = args.n or ev.get("n", 2500), ev.get("seed", 0) if args.seed is None else args.seed
    values = evaluate_model(model, dataset, names, n=n, seed=seed, args=ev.get("args", {}))
    doc = {"metrics": values, "n": n, "seed": seed}
    (run / "eval.json").write_text(json.dumps(doc, indent=1))
    return doc


def cmd_compare(args: argparse.Namespace) -> int:
    from genlab.report import compare, print_leaderboard

    out = compare([Path(r) for r in args.runs], Path(args.out), title=args.title)
    print(print_leaderboard([Path(r) for r in args.runs]))
    print(f"report: {out}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    tables = [args.what] if args.what else list(LISTABLE)
    for table in tables:
        print(f"{table}:")
        for name, line in _rows(table):
            print(f"  {name:<24} {line}")
        print()
    return 0


def _rows(table: str) -> list[tuple[str, str]]:
    if table == "recipes":
        return [(p.stem, _recipe_line(p)) for p in sorted(RECIPES.glob("*.yaml"))]
    if table == "benches":
        return [(name, f"genlab.experiments.{mod}") for name, mod in BENCHES.items()]
    rows = []
    for name, obj in sorted(registry.TABLES[table].items()):
        line = registry.summary(obj)
        if table == "models":
            line += f"  [{'; '.join(capabilities_of(obj))}]"
        rows.append((name, line))
    return rows


def _recipe_line(path: Path) -> str:
    first = path.read_text().splitlines()[0] if path.read_text() else ""
    return first.lstrip("# ").strip()


def cmd_demo(args: argparse.Namespace) -> int:
    from genlab.demo import run_demo

    run_demo(Path(args.out), quick=args.quick)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.name not in BENCHES:
        raise ValueError(f"unknown bench {args.name!r}; choose one of {', '.join(BENCHES)}")
    module = importlib.import_module(f"genlab.experiments.{BENCHES[args.name]}")
    out = Path(args.out or f"runs/bench-{args.name}")
    result = module.run(out=out, quick=args.quick, progress=True)
    text = result.get("text") if isinstance(result, dict) else None
    if not text and isinstance(result, dict) and Path(str(result.get("table", ""))).is_file():
        text = Path(result["table"]).read_text()
    print(text if text else json.dumps(result, indent=1, default=str)[:4000])
    print(f"outputs in {out}")
    return 0
