"""The flow benchmark table: every genlab flow in the registry, and zuko's NSF, MAF and CNF,
trained for the same wall-clock budget on one core, on three datasets.

Run it with ``genlab bench flows [--budget SECONDS] [--out DIR]`` or
``python benchmarks/bench_flows.py`` (the same :func:`run`, with more options).

Rows: the registry's unconditional flows (:class:`~genlab.models.base.Flow` subclasses)
with their registry defaults, except those that cannot take these data (``sphere_flow``:
data on spheres only); a name the issue asks for (:data:`WANTED`) that is not in the
registry is listed as skipped. zuko (``pip install 'genlab[bench]'`` or ``pip install
zuko``) adds ``zuko_nsf`` (``zuko.flows.NSF``, a masked autoregressive spline flow),
``zuko_maf`` and ``zuko_cnf`` (FFJORD, ``zuko.flows.CNF``), each with zuko's defaults; a
zuko flow is wrapped as a genlab :class:`~genlab.models.base.DensityModel`
(:class:`ZukoDensity`) so that training and evaluation run the same code as for genlab's
flows. Like genlab's ``ffjord``, ``zuko_cnf`` trains with the exact trace when
``D <= 10`` and with Hutchinson's estimator otherwise, and evaluates with the exact trace.

Datasets (:func:`load`):

* ``digits``: genlab's split (:mod:`genlab.data.digits`, 1,497 train / 300 test; the last
  150 training images are the validation set). Trained with uniform dequantisation over
  the 17 levels (the ``mle`` objective); reported: bits/dim of the 300 test images with the
  K = 16 importance-weighted dequantisation bound, computed by the ``bpd`` metric
  (:class:`~genlab.metrics.bpd.BitsPerDim`, ``samples=16, seed=0``) for every model.
* ``ring8``: 8 Gaussians of std 0.2 on the unit circle (:func:`genlab.data.synthetic.ring8`,
  18,000 train, 2,000 validation, 20,000 test). Reported: the KL gap ``KL(p || q) =
  CE - H`` in nats, ``CE`` the cross-entropy of the model on the test points and ``H`` the
  true entropy, estimated by Monte Carlo with 10^6 draws from the mixture and its exact
  log-density (the standard error combines both).
* ``breast_cancer``: scikit-learn's bundled Wisconsin breast-cancer table (569 x 30; no
  download; California housing is not bundled, it downloads). A seeded permutation: 20%
  test, 10% of the rest validation, the rest train; standardised with the training mean
  and std. Reported: test negative log-likelihood in nats per dimension.

Training (:func:`train_cell`): Adam (lr 1e-3), batch 64, the learning rate on a cosine
from 1e-3 to 0 over the budget of *training* seconds (validation excluded), one thread.
Ten times in the budget (and at its end) the validation NLL (K = 1 on digits) is computed
in eval mode and the best weights are kept; the test numbers are those of the best
weights (early stopping, as in the MAF paper's protocol, arXiv 1705.07057). A run whose
loss turns NaN/inf stops there and keeps its best validated weights (marked ``*``).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from genlab.data.base import Batch, DataSpec
from genlab.experiments import progress_bar, write_table
from genlab.models.base import DensityModel, Flow

DATASETS = ("digits", "ring8", "breast_cancer")
#: training seconds per model and dataset when ``budget`` is not given
DEFAULT_BUDGET = {"digits": 60.0, "ring8": 30.0, "breast_cancer": 30.0}
QUICK_BUDGET = 2.0
#: flows the table is meant to cover; those missing from the registry are reported as skipped
WANTED = ("realnvp", "glow", "made", "maf", "iaf", "residual_flow", "conv_flow", "ffjord", "nsf", "nsf_ar")
#: registry flows that cannot take these datasets, with the reason
NOT_APPLICABLE = {"sphere_flow": "densities on spheres S^n only (data must have unit norm)"}
ZUKO = ("zuko_nsf", "zuko_maf", "zuko_cnf")
ZUKO_HINT = "zuko is not installed: pip install 'genlab[bench]' (or pip install zuko) to add the zuko rows"
LR, BATCH, VALIDATIONS, K_TEST = 1e-3, 64, 10, 16
EVAL_CHUNK = 2000
MC_ENTROPY = 1_000_000


@dataclass
class BenchData:
    """Data space tensors of one dataset (train / validation / test) and how to report it."""

    name: str
    spec: DataSpec
    train: Tensor
    val: Tensor
    test: Tensor
    entropy: tuple[float, float] | None = None  # (H, standard error), nats, when known
    note: str = ""


def load(name: str) -> BenchData:
    """One benchmark dataset (see the module docstring)."""
    if name == "digits":
        from genlab.data.digits import digits

        ds = digits()
        return BenchData(name, ds.spec, ds.train[:-150], ds.train[-150:], ds.test,
                         note="bits/dim, K = 16 dequantisation bound, 300 test images")
    if name == "ring8":
        from genlab.data.synthetic import ring8

        ds = ring8(n_train=20_000, n_test=20_000, std=0.2, seed=0)
        g = torch.Generator().manual_seed(12345)
        lp = ds.log_prob(ds.sample(MC_ENTROPY, g).double())
        h = (float(-lp.mean()), float(lp.std() / math.sqrt(MC_ENTROPY)))
        return BenchData(name, ds.spec, ds.train[:-2000], ds.train[-2000:], ds.test, entropy=h,
                         note=f"KL gap = test cross-entropy - true entropy (H = {h[0]:.4f} ± {h[1]:.4f} nats, "
                              f"Monte Carlo, 10^6 draws)")
    if name == "breast_cancer":
        from sklearn.datasets import load_breast_cancer

        x = load_breast_cancer().data.astype(np.float64)
        order = np.random.default_rng(0).permutation(len(x))
        n_test = len(x) // 5
        test, rest = x[order[:n_test]], x[order[n_test:]]
        n_val = len(rest) // 10
        val, train = rest[:n_val], rest[n_val:]
        mu, sd = train.mean(0), train.std(0)
        t = lambda a: torch.tensor((a - mu) / sd, dtype=torch.float32)  # noqa: E731
        spec = DataSpec(name="breast_cancer", kind="points", event_shape=(x.shape[1],))
        return BenchData(name, spec, t(train), t(val), t(test),
                         note=f"test NLL in nats/dim (standardised; {len(train)} train, {len(val)} val, "
                              f"{len(test)} test rows)")
    raise ValueError(f"unknown flow-bench dataset {name!r}; choose from {', '.join(DATASETS)}")


class ZukoDensity(DensityModel):
    """A zuko flow (``zuko.flows.*``, unconditional) as a genlab density model on flat data.

    ``exact_train``: for a zuko CNF, whether its trace is exact in training mode (it is
    always exact in eval mode); ignored for other flows."""

    def __init__(self, flow: torch.nn.Module, spec: DataSpec, *, exact_train: bool = True):
        super().__init__()
        self.flow, self.event_shape, self.exact_train = flow, torch.Size(spec.event_shape), exact_train

    def _dist(self):
        if hasattr(self.flow.transform, "exact"):
            self.flow.transform.exact = self.exact_train or not self.training
        return self.flow()

    def log_prob(self, x: Tensor, *, context: Tensor | None = None) -> Tensor:
        self.check_context(context, len(x))
        return self._dist().log_prob(x.reshape(len(x), -1))

    def _sample(self, n: int, *, context: Tensor | None, generator: torch.Generator | None) -> Tensor:
        with torch.random.fork_rng():
            if generator is not None:
                torch.manual_seed(int(torch.randint(2**62, (), generator=generator)))
            return self._dist().sample((n,)).reshape(n, *self.event_shape)


def zuko_available() -> bool:
    return importlib.util.find_spec("zuko") is not None


def genlab_rows() -> tuple[list[str], dict[str, str]]:
    """(registry flows to train, {name: why skipped})."""
    from genlab import registry

    rows, skipped = [], {}
    for name, cls in registry.MODELS.items():
        if not (isinstance(cls, type) and issubclass(cls, Flow)):
            continue
        if getattr(cls, "conditional", False):
            skipped[name] = "conditional (needs labels)"
        elif name in NOT_APPLICABLE:
            skipped[name] = NOT_APPLICABLE[name]
        else:
            rows.append(name)
    for name in WANTED:
        if name not in registry.MODELS:
            skipped[name] = "not in genlab.registry.MODELS in this version"
    return rows, skipped


def build(name: str, spec: DataSpec) -> DensityModel:
    """A genlab registry flow (registry defaults) or a zuko flow (zuko defaults)."""
    if name.startswith("zuko_"):
        import zuko

        d = spec.dim
        flows = {"zuko_nsf": lambda: zuko.flows.NSF(d), "zuko_maf": lambda: zuko.flows.MAF(d),
                 "zuko_cnf": lambda: zuko.flows.CNF(d)}
        return ZukoDensity(flows[name](), spec, exact_train=d <= 10)
    from genlab import registry

    return registry.MODELS[name](data_spec=spec)


class _Clock:
    """Training seconds only: ``run()`` around each step; validation time is not counted."""

    def __init__(self):
        self.elapsed = 0.0

    def run(self, fn):
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            self.elapsed += time.perf_counter() - t0


class TimeCosine:
    """Sets the learning rate to ``lr * (1 + cos(pi * min(1, elapsed / budget))) / 2`` at each
    ``step()`` (a cosine decay over a wall-clock budget rather than a step count)."""

    def __init__(self, opt: torch.optim.Optimizer, lr: float, clock: _Clock, budget: float):
        self.opt, self.lr, self.clock, self.budget = opt, lr, clock, budget

    def step(self) -> None:
        frac = min(1.0, self.clock.elapsed / self.budget)
        for group in self.opt.param_groups:
            group["lr"] = self.lr * 0.5 * (1 + math.cos(math.pi * frac))

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def log_likelihoods(model: DensityModel, data: BenchData, x: Tensor, *, samples: int) -> Tensor:
    """Data-space log-likelihoods ``(N,)`` (nats) of data-space rows ``x`` by the ``bpd`` metric's
    :meth:`~genlab.metrics.bpd.BitsPerDim.log_likelihood` (K = ``samples`` dequantisation draws for
    discrete data, generator seeded 0), in eval mode, in chunks."""
    from genlab.metrics.bpd import BitsPerDim

    metric = BitsPerDim(data_spec=data.spec, samples=samples, seed=0)
    was = model.training
    model.eval()
    try:
        return torch.cat([metric.log_likelihood(model, Batch(c)).double().cpu() for c in x.split(EVAL_CHUNK)])
    finally:
        model.train(was)


def train_cell(model: DensityModel, data: BenchData, budget: float, *, seed: int = 0) -> dict[str, Any]:
    """Train ``model`` by maximum likelihood for ``budget`` training seconds with early stopping on
    the validation NLL; leaves the best weights in ``model``; returns the training record."""
    from genlab.data.batches import InMemoryBatches
    from genlab.objectives.likelihood import MaximumLikelihood
    from genlab.train.trainer import Trainer, TrainingDiverged

    obj = MaximumLikelihood()
    obj.setup(model, data.spec)
    opt = torch.optim.Adam(obj.player_parameters(model)["model"], lr=LR)
    clock = _Clock()
    batches = InMemoryBatches(data.spec.to_model(data.train), batch_size=BATCH, seed=seed)
    trainer = Trainer(model, obj, batches, {"model": opt}, schedulers={"model": TimeCosine(opt, LR, clock, budget)},
                      noise_seed=seed)
    best = {"val_nll": math.inf, "step": 0, "state": None}
    rec: dict[str, Any] = {"diverged": None, "validations": 0, "validated_step": -1}
    next_check = budget / VALIDATIONS
    while clock.elapsed < budget:
        try:
            clock.run(trainer.train_step)
        except TrainingDiverged as err:
            rec["diverged"] = str(err)
            break
        if clock.elapsed >= next_check or clock.elapsed >= budget:
            next_check += budget / VALIDATIONS
            _validate(model, data, trainer.step, best, rec)
    if rec["diverged"] is None and rec["validated_step"] != trainer.step:
        _validate(model, data, trainer.step, best, rec)
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    rec.update(steps=trainer.step, train_seconds=clock.elapsed, best_step=best["step"], val_nll=best["val_nll"],
               usable=best["state"] is not None)
    return rec


def _validate(model: DensityModel, data: BenchData, step: int, best: dict[str, Any], rec: dict[str, Any]) -> None:
    with torch.no_grad():
        nll = float(-log_likelihoods(model, data, data.val, samples=1).mean())
    rec["validations"] += 1
    rec["validated_step"] = step
    if math.isfinite(nll) and nll < best["val_nll"]:
        best.update(val_nll=nll, step=step, state=copy.deepcopy(model.state_dict()))


def score(model: DensityModel, data: BenchData) -> dict[str, float]:
    """Test numbers: ``value`` (digits: bits/dim with K = 16; ring8: KL gap in nats; tabular:
    nats/dim) and its standard error ``se``."""
    samples = K_TEST if data.spec.levels is not None else 1
    ll = log_likelihoods(model, data, data.test, samples=samples)
    n, d = len(ll), data.spec.dim
    mean, se = float(-ll.mean()), float(ll.std() / math.sqrt(n))
    if data.name == "digits":
        return {"value": mean / (d * math.log(2)), "se": se / (d * math.log(2)), "nll": mean}
    if data.entropy is not None:
        h, h_se = data.entropy
        return {"value": mean - h, "se": math.hypot(se, h_se), "nll": mean}
    return {"value": mean / d, "se": se / d, "nll": mean}


def run_cell(name: str, data: BenchData, budget: float, seed: int = 0) -> dict[str, Any]:
    """Build, train and score one (model, dataset) cell; errors are recorded, not raised."""
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    try:
        model = build(name, data.spec)
        params = sum(p.numel() for p in model.parameters())
        rec = train_cell(model, data, budget, seed=seed)
        t1 = time.perf_counter()
        result = score(model, data) if rec["usable"] else {"value": math.nan, "se": math.nan}
        return {**rec, **result, "params": params, "eval_seconds": time.perf_counter() - t1,
                "wall_seconds": time.perf_counter() - t0}
    except Exception as err:  # one failing cell must not stop the table; the error is reported
        return {"error": f"{type(err).__name__}: {err}"[:300], "value": math.nan, "se": math.nan,
                "wall_seconds": time.perf_counter() - t0}


def _cell_text(c: dict[str, Any]) -> str:
    if "error" in c:
        return "error"
    if not math.isfinite(c["value"]):
        return "diverged" if c.get("diverged") else "nan"
    return f"{c['value']:.3f} ± {c['se']:.3f}" + ("*" if c.get("diverged") else "")


def run(*, out: str | Path, quick: bool = False, progress: bool = True, budget: float | None = None,
        models: Sequence[str] | None = None, datasets: Sequence[str] | None = None, seed: int = 0) -> dict:
    """Train and score every flow on every dataset; write ``flows_table.md`` and ``flows_table.json``
    into ``out``. ``budget``: training seconds per cell (default :data:`DEFAULT_BUDGET`, or
    :data:`QUICK_BUDGET` with ``quick``); ``models``/``datasets``: subsets by name."""
    if budget is not None and not (budget > 0 and math.isfinite(budget)):
        raise ValueError(f"budget must be a positive number of seconds, got {budget}")
    datasets = list(datasets or DATASETS)
    bad = [d for d in datasets if d not in DATASETS]
    if bad:
        raise ValueError(f"unknown flow-bench dataset(s) {bad}; choose from {', '.join(DATASETS)}")
    rows, skipped = genlab_rows()
    has_zuko = zuko_available()
    rows += list(ZUKO) if has_zuko else []
    if not has_zuko:
        skipped.update({z: "zuko not installed" for z in ZUKO})
    if models is not None:
        unknown = [m for m in models if m not in rows and m not in skipped]
        if unknown:
            raise ValueError(f"unknown flow(s) {unknown}; available: {', '.join(rows)}")
        rows = [m for m in rows if m in models]
    budgets = {d: budget if budget is not None else (QUICK_BUDGET if quick else DEFAULT_BUDGET[d]) for d in datasets}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    if not has_zuko:
        print(ZUKO_HINT)
    cells: dict[str, dict[str, Any]] = {m: {} for m in rows}
    notes = {}
    bar = progress_bar(len(rows) * len(datasets), progress, "flows")
    for dname in datasets:
        data = load(dname)
        notes[dname] = data.note
        for m in rows:
            bar.set_postfix_str(f"{m} on {dname}")
            cells[m][dname] = run_cell(m, data, budgets[dname], seed=seed)
            bar.update(1)
    bar.close()
    header = ["model"] + [f"{d} ({'bits/dim' if d == 'digits' else 'KL nats' if d == 'ring8' else 'nats/dim'})"
                          for d in datasets] + ["steps (" + ", ".join(datasets) + ")"]
    table_rows = [[m] + [_cell_text(cells[m][d]) for d in datasets]
                  + [" / ".join(str(cells[m][d].get("steps", "-")) for d in datasets)] for m in rows]
    note_lines = [(f"Training budget per cell (s): {', '.join(f'{d} {budgets[d]:g}' for d in datasets)}; one thread; "
                   f"Adam lr {LR:g}, cosine decay over the budget, batch {BATCH}; best of {VALIDATIONS} validation "
                   "checks; mean ± standard error over the test set; lower is better. `*`: the loss became "
                   "non-finite and the best weights before it were kept.")]
    note_lines += [f"{d}: {notes[d]}." for d in datasets]
    errors = [f"{m} on {d}: {c['error']}" for m in rows for d, c in cells[m].items() if "error" in c]
    if errors:
        note_lines += ["Errors: " + "; ".join(errors) + "."]
    if skipped:
        note_lines += ["Skipped: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()) + "."]
    if not has_zuko:
        note_lines += [ZUKO_HINT + "."]
    text = write_table(out / "flows_table.md", "Flow benchmark", header, table_rows, note="\n\n".join(note_lines))
    result = {"budgets": budgets, "seed": seed, "cells": cells, "skipped": skipped, "notes": notes,
              "zuko": has_zuko, "torch_threads": torch.get_num_threads(), "table": str(out / "flows_table.md"),
              "text": text}
    (out / "flows_table.json").write_text(json.dumps(_plain({k: v for k, v in result.items() if k != "text"}),
                                                     indent=1))
    return result


def _plain(v: Any) -> Any:
    """JSON-safe copy: non-finite floats become ``None``."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
