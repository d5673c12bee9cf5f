"""The fit loop: per-player optimisers and an update schedule, on accelerate.

One *step* is one round of the schedule: each player (helpers first, then the
model's player, ``objective.players[1:] + players[:1]``) takes
``train.schedule[player]`` optimiser steps (default 1), each on a fresh data
batch. The loop knows nothing about any model or loss: it asks the objective.

Exact resume: batches are drawn with replacement by a dedicated generator, model
noise by another, and both (with the global torch RNG, forked so the caller's is
untouched) are saved in every checkpoint. On CPU a run stopped at step k and
resumed ends with bit-identical weights to an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import Accelerator
from torch import nn

from genlab.build import Experiment, build
from genlab.config import RunConfig
from genlab.metrics.evaluate import draw_samples, evaluate_model
from genlab.train import checkpoint as ckpt
from genlab.train.ema import make_ema
from genlab.train.pictures import save_samples_png


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the run stopped and kept its last good checkpoint."""


class RunDirError(RuntimeError):
    """The run directory cannot be used as asked (e.g. it holds a run and --resume was not given)."""


_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD,
               "rmsprop": torch.optim.RMSprop}


def make_optimizer(params: list[nn.Parameter], cfg: RunConfig, player: str) -> torch.optim.Optimizer:
    t = cfg.train
    o = {"optimizer": t.optimizer, "lr": t.lr, "betas": t.betas, "weight_decay": t.weight_decay,
         **t.optim.get(player, {})}
    cls = _OPTIMIZERS[o["optimizer"]]
    kw: dict[str, Any] = {"lr": float(o["lr"]), "weight_decay": float(o["weight_decay"])}
    if cls in (torch.optim.Adam, torch.optim.AdamW):
        kw["betas"] = tuple(o["betas"])
    return cls(params, **kw)


def lr_lambda(cfg: RunConfig):
    t = cfg.train

    def f(step: int) -> float:
        warm = min(1.0, (step + 1) / t.warmup_steps) if t.warmup_steps else 1.0
        frac = min(step / max(1, t.steps), 1.0)
        decay = {"constant": 1.0, "linear": 1.0 - frac, "cosine": 0.5 * (1 + math.cos(math.pi * frac))}
        return warm * decay[t.lr_schedule]
    return f


class Trainer:
    """Holds one run's state; :func:`fit` is the entry point."""

    def __init__(self, cfg: RunConfig, run_dir: Path):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.acc = Accelerator(cpu=cfg.train.cpu, mixed_precision=cfg.train.mixed_precision)
        self.exp: Experiment = build(cfg)
        dev = self.acc.device
        self.model = self.exp.model.to(dev)
        self.objective = self.exp.objective.to(dev)
        self.x_train = self.exp.dataset.spec.to_model(self.exp.dataset.train).to(dev)
        self.params = self.objective.player_parameters(self.model)
        self.opts = {p: self.acc.prepare_optimizer(make_optimizer(ps, cfg, p)) for p, ps in self.params.items()}
        self.scheds = {p: torch.optim.lr_scheduler.LambdaLR(o, lr_lambda(cfg)) for p, o in self.opts.items()}
        self.ema = make_ema(self.model, cfg.train.ema) if cfg.train.ema else None
        self.data_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.noise_gen = torch.Generator(device=dev).manual_seed(cfg.seed + 2)
        players = self.objective.players
        self.order = list(players[1:]) + [players[0]]
        self.step = 0
        self.last_logs: dict[str, float] = {}

    # --- state ----------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        mods = {"model": self.model, "objective": self.objective}
        if self.ema is not None:
            mods["ema"] = self.ema.module
        return mods

    def eval_model(self) -> nn.Module:
        """The weights used for samples and evaluation: EMA when configured."""
        return self.ema.module if self.ema is not None else self.model

    def state(self) -> dict[str, Any]:
        return {"optimizers": {p: o.state_dict() for p, o in self.opts.items()},
                "schedulers": {p: s.state_dict() for p, s in self.scheds.items()},
                "ema_n": None if self.ema is None else self.ema.n_averaged.clone(),
                "rng": {"global": torch.get_rng_state(), "data": self.data_gen.get_state(),
                        "noise": self.noise_gen.get_state()}}

    def save(self) -> Path:
        meta = {"time": time.time(), "logs": self.last_logs}
        return ckpt.save(self.run_dir, self.step, self.modules(), self.state(), meta)

    def restore(self, path: Path) -> None:
        ckpt.load_modules(path, self.modules())
        st = ckpt.load_state(path)
        for p, o in self.opts.items():
            o.load_state_dict(st["optimizers"][p])
            self.scheds[p].load_state_dict(st["schedulers"][p])
        if self.ema is not None:
            self.ema.n_averaged.copy_(st["ema_n"])
        torch.set_rng_state(st["rng"]["global"])
        self.data_gen.set_state(st["rng"]["data"])
        self.noise_gen.set_state(st["rng"]["noise"])
        self.step = json.loads((path / "meta.json").read_text())["step"]

    # --- one step -------------------------------------------------------------
    def batch(self) -> torch.Tensor:
        idx = torch.randint(len(self.x_train), (self.cfg.train.batch_size,), generator=self.data_gen)
        return self.x_train[idx.to(self.x_train.device)]

    def player_step(self, player: str) -> dict[str, float]:
        with self.acc.autocast():
            out = self.objective.loss(player, self.model, self.batch(), generator=self.noise_gen)
        value = float(out.loss.detach())
        if not math.isfinite(value):
            raise TrainingDiverged(self.divergence_message(player, value))
        opt = self.opts[player]
        opt.zero_grad(set_to_none=True)
        self.acc.backward(out.loss)
        if self.cfg.train.grad_clip:
            self.acc.clip_grad_norm_(self.params[player], self.cfg.train.grad_clip)
        opt.step()
        self.objective.after_step(player)
        return {f"{player}/{k}": v for k, v in out.logs.items()}

    def divergence_message(self, player: str, value: float) -> str:
        good = ckpt.latest(self.run_dir)
        keep = f"the last good checkpoint is {good}" if good else "no checkpoint had been written yet"
        return (f"training diverged at step {self.step + 1}: the {player} loss is {value}. The run stopped; "
                f"{keep}. Try a lower learning rate (train.lr / train.optim.{player}.lr), gradient clipping "
                f"(train.grad_clip) or a gradient penalty, then resume with --resume.")

    def train_step(self) -> dict[str, float]:
        logs: dict[str, float] = {}
        for player in self.order:
            for _ in range(self.cfg.train.schedule.get(player, 1)):
                logs.update(self.player_step(player))
        for s in self.scheds.values():
            s.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.step += 1
        return logs


def prepare_run_dir(cfg: RunConfig, run_dir: Path, resume: bool) -> Path | None:
    """Create the run directory; return the checkpoint to resume from, if any."""
    run_dir.mkdir(parents=True, exist_ok=True)
    found = ckpt.latest(run_dir)
    if found is not None and not resume:
        raise RunDirError(f"{run_dir} already holds a run (checkpoint {found.name}); pass --resume to "
                          "continue it or choose another --out")
    if found is not None:
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        new = cfg.to_dict()
        for sec in ("data", "model", "objective", "seed"):
            if saved.get(sec) != new.get(sec):
                raise RunDirError(f"cannot resume {run_dir}: its {sec!r} differs from the given config "
                                  f"({saved.get(sec)} vs {new.get(sec)})")
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return found


def fit(cfg: RunConfig, run_dir: str | Path, *, resume: bool = False) -> dict[str, Any]:
    """Train ``cfg`` into ``run_dir``; returns ``{"step", "seconds", "eval", "run_dir"}``.

    Raises :class:`TrainingDiverged` on a NaN/inf loss (no checkpoint is written
    after it) and :class:`RunDirError` when the directory cannot be used as asked.
    """
    run_dir = Path(run_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        found = prepare_run_dir(cfg, run_dir, resume)
        tr = Trainer(cfg, run_dir)
        (run_dir / "data_spec.json").write_text(json.dumps(tr.exp.dataset.spec.to_dict()))
        if found is not None:
            tr.restore(found)
        return _run(tr)


def _run(tr: Trainer) -> dict[str, Any]:
    from genlab.train.logging import RunLogger

    cfg, t0 = tr.cfg, time.time()
    log = RunLogger(tr.run_dir, total=cfg.train.steps, initial=tr.step, progress=cfg.train.progress)
    try:
        while tr.step < cfg.train.steps:
            logs = tr.train_step()
            if tr.step % cfg.train.log_every == 0 or tr.step == cfg.train.steps:
                tr.last_logs = logs
                log.scalars(tr.step, logs)
            if cfg.train.sample_every and tr.step % cfg.train.sample_every == 0:
                picture(tr)
            if cfg.eval.every and cfg.eval.metrics and tr.step % cfg.eval.every == 0:
                log.scalars(tr.step, {f"eval/{k}": v for k, v in evaluate(tr).items()})
            if cfg.train.ckpt_every and tr.step % cfg.train.ckpt_every == 0:
                tr.save()
            log.advance()
        tr.save()
        picture(tr)
        result = {"step": tr.step, "seconds": time.time() - t0, "run_dir": str(tr.run_dir), "eval": {}}
        if cfg.eval.metrics:
            result["eval"] = write_eval(tr)
        return result
    finally:
        log.close()


def evaluate(tr: Trainer) -> dict[str, float]:
    e = tr.cfg.eval
    return evaluate_model(tr.eval_model(), tr.exp.dataset, e.metrics, n=e.n, seed=e.seed, args=e.args)


def write_eval(tr: Trainer) -> dict[str, float]:
    values = evaluate(tr)
    e = tr.cfg.eval
    doc = {"metrics": values, "n": e.n, "seed": e.seed, "step": tr.step,
           "weights": "ema" if tr.ema is not None else "model"}
    (tr.run_dir / "eval.json").write_text(json.dumps(doc, indent=1))
    return values


def picture(tr: Trainer) -> Path:
    spec = tr.exp.dataset.spec
    x = draw_samples(tr.eval_model(), 64 if spec.kind == "image" else 2500, seed=0, spec=spec)
    name = f"step-{tr.step:06d}.png"
    title = f"{tr.cfg.name or tr.run_dir.name} — step {tr.step}"
    return save_samples_png(tr.run_dir / "samples" / name, x, spec, tr.exp.dataset.test, title)
