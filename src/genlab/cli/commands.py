"""Implementations of the ``genlab`` subcommands (each over the Python API)."""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
from pathlib import Path

import numpy as np
import torch

from genlab import registry
from genlab.api import RunNotFound, load_run
from genlab.capabilities import CapabilityError, capabilities_of
from genlab.config import RECIPES, ConfigError, resolve_recipe
from genlab.train.loop import RunDirError
from genlab.train.trainer import TrainingDiverged

USER_ERRORS = (ConfigError, CapabilityError, RunNotFound, RunDirError, FileNotFoundError, ValueError)
DIVERGED = (TrainingDiverged,)

#: ``genlab bench NAME``: module in genlab.experiments with ``run(*, out, quick, progress)``.
BENCHES = {
    "modes": "modes_table",
    "cramer": "cramer_bias",
    "many-paths": "many_paths",
    "realnvp-mle-vs-critic": "realnvp_mle_vs_critic",
    "tac-gan": "tac_gan",
    "flows": "flows_table",
    "vae-bounds": "vae_bounds",
    "distribution-matching": "distribution_matching",
    "semi-supervised": "semi_supervised",
    "hierarchical-prior": "hierarchical_prior",
    "conv-draw": "conv_draw",
    "helmholtz": "helmholtz",
    "generalisation": "generalisation",
    "csvae": "csvae",
}
#: Feature extractors built into genlab (anything else is a TorchScript path: code).
BUILTIN_FEATURES = ("auto", "identity", "digits")
LISTABLE = ("datasets", "models", "objectives", "samplers", "metrics", "recipes", "benches")


def cmd_train(args: argparse.Namespace) -> int:
    from genlab.build import load_config
    from genlab.train import fit

    path = resolve_recipe(args.config)
    cfg = load_config(path, args.set)
    out = Path(args.out or f"runs/{cfg.name or path.stem}")
    result = fit(cfg, out, resume=args.resume)
    print(f"trained {result['step']} steps in {result['seconds']:.1f} s -> {out}")
    for k, v in result["eval"].items():
        print(f"  {k}: {v:.4g}")
    print(f"samples: {out / 'samples'}   metrics: {out / 'metrics.jsonl'}")
    return 0


def sampler_section(args: argparse.Namespace) -> dict | None:
    """The ``sampler:`` section asked for on the command line, or ``None`` for the run's own:
    ``--sampler NAME`` replaces the run's sampler (unless it is the same one), and
    ``--set sampler.K=V`` overrides keys of the resulting section."""
    from genlab.api import read_config
    from genlab.config import apply_overrides

    sets = list(getattr(args, "set", None) or [])
    bad = [s for s in sets if not s.startswith("sampler.")]
    if bad:
        raise ConfigError(f"--set here only sets sampler keys (sampler.KEY=VALUE); got {bad[0]!r}")
    if not args.sampler and not sets:
        return None
    own = dict(read_config(args.run).get("sampler") or {"name": "ancestral"})
    section = own if args.sampler in (None, own.get("name")) else {"name": args.sampler}
    return apply_overrides({"sampler": section}, sets)["sampler"]


def class_labels(arg: str | None, model, n: int) -> tuple[torch.Tensor | None, int, int | None]:
    """``--class K`` / ``--class all`` -> (labels, n, images per row)."""
    if arg is None:
        return None, n, None
    if not model.conditional:
        raise ValueError(f"--class needs a conditional model; this run's {type(model).__name__} is unconditional")
    k = model.num_classes
    if arg == "all":
        per = max(1, n // k)
        return torch.arange(k).repeat_interleave(per), per * k, per
    if not arg.isdigit() or int(arg) >= k:
        raise ValueError(f"--class must be a class index 0..{k - 1} or 'all', got {arg!r}")
    return torch.full((n,), int(arg)), n, None


def cmd_sample(args: argparse.Namespace) -> int:
    from genlab.train.pictures import save_samples_png

    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    out = Path(args.out)
    if out.suffix not in (".npy", ".png"):
        raise ValueError(f"--out must end in .npy or .png, got {out.name!r}")
    run = load_run(args.run, ema=False if args.no_ema else None, sampler=sampler_section(args))
    labels, n, nrow = class_labels(args.class_, run.model, args.n)
    x = run.sample(n, seed=args.seed, context=labels)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, x.numpy())
        if labels is not None:
            np.save(out.with_name(out.stem + "-labels.npy"), labels.numpy())
    else:
        what = "" if args.class_ is None else f", class {args.class_}"
        save_samples_png(out, x, run.spec, title=f"{Path(args.run).name}: {n} samples{what}, seed {args.seed}",
                         labels=labels, nrow=nrow)
    print(f"wrote {n} samples of shape {tuple(x.shape[1:])} to {out}")
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

    if args.n is not None and args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    run = load_run(args.run, sampler=sampler_section(args))
    cfg, model = run.config, run.model
    ev = cfg.get("eval", {})
    names = metrics or ev.get("metrics") or []
    if not names:
        raise ValueError(f"no metrics: pass --metrics (see `genlab list metrics`) or set eval.metrics in "
                         f"{Path(args.run) / 'config.yaml'}")
    metric_args = {m: dict(a) for m, a in (ev.get("args") or {}).items() if m in names}
    for m, a in metric_args.items():  # a run directory is untrusted: it may not name code to run
        if str(a.get("features", "auto")) not in BUILTIN_FEATURES and args.features == "auto":
            raise ValueError(f"{args.run}'s config.yaml names a TorchScript feature file for {m} "
                             f"({a['features']!r}). Feature files are code; genlab does not load one named by a "
                             "run directory. If you trust it, pass it yourself: --features PATH")
    if args.features != "auto":  # the flag wins over the run's eval.args
        for m in names:
            if "features" in inspect.signature(registry.lookup("metrics", m)).parameters:
                metric_args.setdefault(m, {})["features"] = args.features
    dataset = build_dataset(cfg["data"], int(cfg.get("seed", 0)))
    for m in names:
        check_metric(m, type(model), cfg["model"]["name"], type(dataset), cfg["data"]["name"], metric_args.get(m))
    n, seed = args.n or ev.get("n", 2500), ev.get("seed", 0) if args.seed is None else args.seed
    values = evaluate_model(model, dataset, names, n=n, seed=seed, args=metric_args, sampler=run.sampler)
    doc = {"metrics": values, "n": n, "seed": seed, "step": run.step, "weights": run.weights,
           "sampler": run.sampler_section}
    (Path(args.run) / "eval.json").write_text(json.dumps(doc, indent=1))
    return doc


def cmd_compare(args: argparse.Namespace) -> int:
    from genlab.report import compare, print_leaderboard

    hype = [Path(h) for h in args.hype]
    out = compare([Path(r) for r in args.runs], Path(args.out), title=args.title, hype=hype)
    print(print_leaderboard([Path(r) for r in args.runs], hype=hype))
    print(f"report: {out}")
    return 0


def cmd_hype(args: argparse.Namespace) -> int:
    from genlab.human.cli import run

    return run(args)


def cmd_list(args: argparse.Namespace) -> int:
    tables = [args.what] if args.what else list(LISTABLE)
    for table in tables:
        print(f"{table}:")
        for name, line in _rows(table):
            print(f"  {name:<24} {line}")
        print()
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Everything about one registered name: its table, full description and config keys."""
    from genlab.kwargs import describe_keys

    hits = [(t, entries[args.name]) for t, entries in registry.TABLES.items() if args.name in entries]
    if not hits:
        every = sorted(n for entries in registry.TABLES.values() for n in entries)
        raise ValueError(f"unknown name {args.name!r}; genlab list shows every name ({', '.join(every)})")
    for table, obj in hits:
        print(f"{args.name} ({table[:-1]}): {obj.__module__}.{obj.__name__}\n")
        print(inspect.cleandoc(obj.__doc__ or "(no description)") + "\n")
        if table == "models":
            print("capabilities: " + "; ".join(capabilities_of(obj)) + "\n")
        reserved = {"models": ("data_spec",), "metrics": ("dataset", "data_spec", "proposal_fn")}.get(table, ())
        rows = describe_keys(obj, reserved)
        print("config keys:" if rows else "config keys: none")
        for key, kind, default, allowed in rows:
            print(f"  {key:<20} {kind:<28} default {default:<14} {allowed}")
        keys = {r[0] for r in rows}
        if "penalty" in keys:
            from genlab.objectives.penalties import _OPTIONS, PENALTIES
            print("\n  penalty entries: {name, weight, every, **options}; names: " + ", ".join(
                f"{n} ({', '.join(_OPTIONS.get(n, ())) or 'no options'})" for n in PENALTIES))
        if "critic" in keys:
            from genlab.nets.build import ENCODER_NETS
            print("  critic: {name: auto|" + "|".join(ENCODER_NETS) + ", **net keys} (genlab show shows nets' keys "
                  "in src/genlab/nets); spectral_norm: normalise every critic layer; pack: samples per critic input")
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
    extra = {}
    if getattr(args, "budget", None) is not None:
        if "budget" not in inspect.signature(module.run).parameters:
            raise ValueError(f"bench {args.name!r} takes no --budget (it has a fixed number of steps)")
        extra["budget"] = args.budget
    result = module.run(out=out, quick=args.quick, progress=True, **extra)
    text = result.get("text") if isinstance(result, dict) else None
    if not text and isinstance(result, dict) and Path(str(result.get("table", ""))).is_file():
        text = Path(result["table"]).read_text()
    print(text if text else json.dumps(result, indent=1, default=str)[:4000])
    print(f"outputs in {out}")
    return 0
