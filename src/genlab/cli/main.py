"""The ``genlab`` command. Every subcommand is a thin layer over the Python API."""

from __future__ import annotations

import argparse
import os
import sys

from genlab.cli import commands
from genlab.human import cli as hype_cli

EPILOG = """examples:
  genlab train recipes/ring8-nsgan.yaml --out runs/ring8
  genlab train recipes/ring8-nsgan.yaml --set train.steps=500 --set model.hidden=256
  genlab sample runs/ring8 --n 2500 --out samples.npy --seed 1
  genlab sample runs/digits-tacgan --class all --n 100 --out grid.png
  genlab eval runs/ring8 --json
  genlab eval --real real.npy --fake fake.npy --metrics fid,kid,prdc --features identity
  genlab compare runs/a runs/b --out report.html
  genlab hype serve runs/a runs/b --real digits --db hype.sqlite   (then: genlab hype report hype.sqlite)
  genlab list objectives
  genlab show wgan-gp
  genlab demo --quick
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genlab", description="Train, sample, evaluate and compare deep "
                                "generative models.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show Python tracebacks (for bug reports)")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model from a YAML config (or a recipe name)")
    t.add_argument("config", help="path to a YAML config, or the name of a bundled recipe")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.steps=500 (repeatable)")
    t.add_argument("--out", help="run directory (default: runs/<config name>)")
    t.add_argument("--resume", action="store_true", help="continue from the run directory's latest checkpoint")

    s = sub.add_parser("sample", help="draw samples from a trained run (no dataset needed)")
    s.add_argument("run")
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--out", required=True, help="FILE.npy (array (N, *event_shape), data space) or FILE.png")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-ema", action="store_true", help="use the raw weights even if the run kept an EMA")
    s.add_argument("--class", dest="class_", metavar="K",
                   help="conditional runs: samples of class K, or 'all' for a grid with one row per class")
    _sampler_args(s)

    e = sub.add_parser("eval", help="evaluate a run, or two sample sets (--real/--fake)")
    e.add_argument("run", nargs="?")
    e.add_argument("--metrics", help="comma-separated metric names (default: the run's eval.metrics)")
    e.add_argument("--n", type=int, help="number of samples (default: the run's eval.n)")
    e.add_argument("--seed", type=int, default=None)
    e.add_argument("--real", help="with --fake: a .npy/.npz file or image folder of data")
    e.add_argument("--fake", help="with --real: a .npy/.npz file or image folder of samples")
    e.add_argument("--features", default="auto",
                   help="auto | identity | digits | PATH to a TorchScript module. A TorchScript file is code: "
                        "only give one you trust (genlab never loads one named by a run directory)")
    e.add_argument("--json", action="store_true", help="print the results as JSON")
    _sampler_args(e)

    c = sub.add_parser("compare", help="one self-contained HTML report over several runs")
    c.add_argument("runs", nargs="+")
    c.add_argument("--out", default="report.html")
    c.add_argument("--title")
    c.add_argument("--hype", action="append", default=[], metavar="HYPE.json",
                   help="add the human-evaluation scores written by `genlab hype report` (repeatable)")

    ls = sub.add_parser("list", help="list datasets, models, objectives, samplers, metrics, recipes, benches")
    ls.add_argument("what", nargs="?", choices=sorted(commands.LISTABLE), help="only this table")

    sh = sub.add_parser("show", help="everything about one model, objective, sampler, dataset or metric: "
                        "its description and every config key with type, default and allowed values")
    sh.add_argument("name")

    d = sub.add_parser("demo", help="the main job: the model-comparison study on the embedded data")
    d.add_argument("--quick", action="store_true", help="a short smoke-test version")
    d.add_argument("--out", default="runs/demo")

    b = sub.add_parser("bench", help="run a reproduction or benchmark experiment")
    b.add_argument("name", help="see `genlab list benches`")
    b.add_argument("--out", help="output folder (default: runs/bench-<name>)")
    b.add_argument("--quick", action="store_true")
    b.add_argument("--budget", type=float, metavar="SECONDS",
                   help="training seconds per model and dataset, for benches with a time budget (flows)")

    hype_cli.add_parser(sub)
    return p


def _sampler_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sampler", help="draw samples with this sampler instead of the run's (genlab list samplers)")
    p.add_argument("--set", action="append", default=[], metavar="sampler.KEY=VALUE",
                   help="override a sampler key, e.g. --set sampler.steps=500 (repeatable)")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return getattr(commands, f"cmd_{args.command}")(args) or 0
    except commands.USER_ERRORS as err:
        if args.debug:
            raise
        print(f"genlab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except commands.DIVERGED as err:
        if args.debug:
            raise
        print(f"genlab {args.command}: {err}", file=sys.stderr)
        return 3
    except BrokenPipeError:  # output piped into a reader that stopped (`genlab show X | head`): not an error
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return 0
    except KeyboardInterrupt:
        print(f"genlab {args.command}: interrupted; a training run resumes from its last checkpoint with "
              "--resume", file=sys.stderr)
        return 130
    except MemoryError:
        if args.debug:
            raise
        print(f"genlab {args.command}: error: out of memory; use fewer samples (--n), a smaller batch or "
              "smaller data", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - a traceback reaching a user is a bug; --debug shows it
        if args.debug:
            raise
        print(f"genlab {args.command}: internal error ({type(err).__name__}: {err}). This is a genlab bug; "
              "rerun with --debug for the traceback and report it", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
