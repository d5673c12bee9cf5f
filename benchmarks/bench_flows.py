"""The flow benchmark table (not a test): every genlab flow and zuko's NSF, MAF and CNF on
digits (bits/dim), ring8 (KL gap, nats) and breast_cancer (nats/dim), the same training
budget each, on one core.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_flows.py [--budget SECONDS] [--out DIR]
        [--models realnvp ffjord ...] [--datasets digits ring8 breast_cancer] [--quick] [--seed 0]

This script and ``genlab bench flows [--budget SECONDS] [--out DIR]`` run the same code,
:func:`genlab.experiments.flows_table.run` (its docstring states the protocol). Without
``--budget`` each model trains 60 s on digits and 30 s on the other datasets (``--quick``:
2 s). zuko rows need ``pip install 'genlab[bench]'`` (or ``pip install zuko``); without
zuko the genlab rows run alone. Writes ``flows_table.md`` and ``flows_table.json`` into
``--out`` (default ``runs/bench-flows``).
"""

from __future__ import annotations

import argparse

from genlab.experiments import flows_table


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                    help="training seconds per model and dataset (default: digits 60, others 30)")
    ap.add_argument("--out", default="runs/bench-flows")
    ap.add_argument("--models", nargs="+", default=None, help="only these rows (registry or zuko_* names)")
    ap.add_argument("--datasets", nargs="+", default=None, choices=flows_table.DATASETS)
    ap.add_argument("--quick", action="store_true", help=f"{flows_table.QUICK_BUDGET:g} s per cell (a smoke test)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    result = flows_table.run(out=args.out, quick=args.quick, budget=args.budget, models=args.models,
                             datasets=args.datasets, seed=args.seed)
    print(result["text"])
    print(f"outputs in {args.out}")


if __name__ == "__main__":
    main()
