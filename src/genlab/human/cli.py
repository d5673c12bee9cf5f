"""``genlab hype ...``: serve a HYPE study, report and export it, run scripted raters.

This module only builds the argument parser at import (no Flask, no torch); the commands
import what they need when they run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """examples:
  genlab hype serve runs/a runs/b --real digits --db hype.sqlite --port 8000
  genlab hype serve --fake a=a.npy --real digits --protocol time --db time.sqlite
  genlab hype simulate http://127.0.0.1:8000 --db hype.sqlite --raters 20 --accuracy 0.8 --seed 0
  genlab hype report hype.sqlite --out hype-results
  genlab hype export hype.sqlite -o judgements.csv
  genlab compare runs/a runs/b --hype hype-results/hype.json --out report.html
"""


DESCRIPTION = ("HYPE, Human eYe Perceptual Evaluation (arXiv 1904.01121), as a web app with a SQLite store. "
               "See docs/human.md.")


def add_parser(sub) -> None:
    """Add ``hype`` and its subcommands to the ``genlab`` subparsers ``sub``."""
    h = sub.add_parser("hype", help="human evaluation (HYPE): serve a study, simulate raters, report, export",
                       description=DESCRIPTION, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    fill_parser(h)


def fill_parser(h: argparse.ArgumentParser) -> None:
    """The ``serve``, ``report``, ``export`` and ``simulate`` subcommands, on parser ``h``."""
    hs = h.add_subparsers(dest="hype_command", required=True)

    s = hs.add_parser("serve", help="run a study in a web server on this machine")
    s.add_argument("runs", nargs="*", metavar="RUN", help="run directories to evaluate (sampled with genlab.load_run)")
    s.add_argument("--fake", action="append", default=[], metavar="NAME=ARRAY.npy",
                   help="also evaluate samples from a .npy file (data space of --real), repeatable")
    s.add_argument("--real", metavar="DATA", help="real images: a dataset name (e.g. digits) or a run directory (its data:)")
    s.add_argument("--db", default="hype.sqlite", help="the study's SQLite file; an existing study is resumed")
    s.add_argument("--protocol", choices=("infinity", "time"), help="HYPE-infinity (default) or HYPE-time")
    s.add_argument("--block-size", type=int, help="images per block, half real (default 100 infinity, 150 time)")
    s.add_argument("--blocks", type=int, help="blocks per model per rater (default 1 infinity, 3 time)")
    s.add_argument("--qual-size", type=int, default=100, help="qualification images, half real (0: none)")
    s.add_argument("--qual-threshold", type=float, default=0.65,
                   help="share right needed on real and on fake qualification images")
    s.add_argument("--feedback", action=argparse.BooleanOptionalAction, default=None,
                   help="tell raters after each study answer if it was right (default: on for time only)")
    for key, default, what in (("start", 500, "first exposure of a block"), ("min", 100, "minimum exposure"),
                               ("max", 1000, "maximum exposure"), ("down", 10, "shorter after a right answer"),
                               ("up", 30, "longer after a wrong answer")):
        s.add_argument(f"--{key}-ms", type=int, default=default, help=f"HYPE-time staircase: {what} (ms)")
    s.add_argument("--countdown-ms", type=int, default=500, help="HYPE-time: each number of the 3-2-1 countdown (ms)")
    s.add_argument("--pool", type=int, default=300, help="images sampled per model for the study")
    s.add_argument("--size", type=int, default=128, help="displayed image size in pixels (nearest-neighbour)")
    s.add_argument("--seed", type=int, default=0, help="seeds the samples and every rater's order")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    s.add_argument("--port", type=int, default=8000, help="port (0: any free port)")
    s.add_argument("--threads", type=int, default=8, help="waitress worker threads")
    s.add_argument("--admin-token", help="the admin token of a new study (default: random)")

    r = hs.add_parser("report", help="scores with 95%% bootstrap CIs; writes hype.json and hype.png")
    r.add_argument("db")
    r.add_argument("--out", help="folder for hype.json and hype.png (default: the database's folder)")
    r.add_argument("--boot", type=int, default=2000, help="bootstrap resamples")
    r.add_argument("--seed", type=int, default=0, help="bootstrap seed")

    e = hs.add_parser("export", help="every judgement as CSV")
    e.add_argument("db")
    e.add_argument("-o", "--out", required=True, help="FILE.csv")

    m = hs.add_parser("simulate", help="scripted raters over HTTP (labelled simulated everywhere)")
    m.add_argument("url", help="the study's address, e.g. http://127.0.0.1:8000")
    m.add_argument("--raters", type=int, default=10)
    m.add_argument("--accuracy", type=float, default=0.8,
                   help="oracle: chance of a right answer; nn: share of real images it accepts")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--token", help="the admin token (printed by serve)")
    m.add_argument("--db", help="read the admin token from the study's database instead")
    m.add_argument("--observer", choices=("oracle", "nn"), default="oracle")
    m.add_argument("--real", help="nn observer: the real data to compare with (dataset name or run directory)")
    m.add_argument("--tau-ms", type=float, default=150.0, help="HYPE-time: perception time constant (ms)")


def run(args: argparse.Namespace) -> int:
    return {"serve": _serve, "report": _report, "export": _export, "simulate": _simulate}[args.hype_command](args)


def _config(args: argparse.Namespace):
    from genlab.human.db import StudyConfig
    from genlab.human.protocol import Staircase

    stair = Staircase(start_ms=args.start_ms, min_ms=args.min_ms, max_ms=args.max_ms, down_ms=args.down_ms,
                      up_ms=args.up_ms)
    return StudyConfig(protocol=args.protocol or "infinity", block_size=args.block_size, blocks=args.blocks,
                       qual_size=args.qual_size, qual_threshold=args.qual_threshold, feedback=args.feedback,
                       staircase=stair, countdown_ms=args.countdown_ms, px=args.size, seed=args.seed)


def _fakes(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--fake takes NAME=ARRAY.npy, got {item!r}")
        if name in out:
            raise ValueError(f"--fake name {name!r} given twice")
        out[name] = path
    return out


def _serve(args: argparse.Namespace) -> int:
    from genlab.human.db import Study, has_study
    from genlab.human.images import build_study
    from genlab.human.server import serve

    if args.threads < 1 or not 0 <= args.port <= 65535:
        raise ValueError("--threads must be >= 1 and --port in 0..65535")
    fakes = _fakes(args.fake)
    db = Path(args.db)
    if has_study(db):
        study = Study.load(db)
        if args.runs or fakes:
            from genlab.report.runs import Run, label_runs

            labelled = [Run(path=Path(p), name="") for p in args.runs]
            label_runs(labelled)
            wanted = sorted([r.name for r in labelled] + list(fakes))
            if wanted != sorted(study.models):
                raise ValueError(f"{db} holds a study of {', '.join(study.models)}, not of {', '.join(wanted)}. "
                                 f"Resume it with `genlab hype serve --db {db}` or choose a new --db file")
        if args.protocol and args.protocol != study.config.protocol:
            raise ValueError(f"{db} holds a HYPE-{study.config.protocol} study; --protocol {args.protocol} "
                             "needs a new --db file")
        print(f"resuming the study in {db}; its settings are fixed when it is created")
    else:
        if not args.real:
            raise ValueError("a new study needs --real DATA (a dataset name such as digits, or a run directory)")
        config = _config(args)
        build_study(db, config, runs=args.runs, fakes=fakes, real=args.real, pool=args.pool,
                    admin_token=args.admin_token, progress=print)
        print(f"created the study in {db}")
    try:
        serve(db, host=args.host, port=args.port, threads=args.threads, announce=lambda m: print(m, flush=True))
    except OSError as e:
        raise ValueError(f"cannot listen on {args.host}:{args.port} ({e}); choose another --port") from None
    return 0


def _report(args: argparse.Namespace) -> int:
    from genlab.human.results import write_report

    if args.boot < 100:
        raise ValueError(f"--boot must be >= 100, got {args.boot}")
    js, png, text = write_report(args.db, args.out, n_boot=args.boot, seed=args.seed)
    print(text)
    print(f"\nwrote {js} (for genlab compare --hype) and {png}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from genlab.human.results import export_csv

    text = export_csv(args.db, args.out)
    print(f"wrote {text.count(chr(10)) - 1} judgements to {args.out}")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from genlab.human.db import Study
    from genlab.human.simulate import SimulationError, simulate

    token = args.token or (Study.load(args.db).admin_token if args.db else None)
    if not token:
        raise ValueError("simulated raters need the admin token: --token T (printed by serve) or --db DB")
    try:
        logs = simulate(args.url, raters=args.raters, accuracy=args.accuracy, seed=args.seed, token=token,
                        observer=args.observer, real=args.real, tau_ms=args.tau_ms)
    except SimulationError as e:
        raise ValueError(str(e)) from None
    except OSError as e:
        raise ValueError(f"cannot reach {args.url} ({e}); is `genlab hype serve` running there?") from None
    states: dict[str, int] = {}
    for lg in logs:
        states[lg.state or "error"] = states.get(lg.state or "error", 0) + 1
    print(f"{len(logs)} SIMULATED raters sent {sum(len(lg.answers) for lg in logs)} answers; final states: "
          + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
    errors = [lg for lg in logs if lg.error]
    for lg in errors:
        print(f"rater {lg.rater}: {lg.error}")
    return 1 if errors else 0
