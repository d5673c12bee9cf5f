"""``fit(cfg, run_dir)``: build the pieces of a run from its config and hand them to the
config-free :class:`~genlab.train.trainer.Trainer`.

What ``fit`` adds to the trainer, as callbacks: ``metrics.jsonl``/TensorBoard logs
and the progress bar, sample pictures, evaluation during training, checkpoints,
and at the end a final checkpoint, a picture and ``eval.json``.

Exact resume: batches are drawn with replacement by a dedicated generator
(``seed + 1``), objective noise by another (``seed + 2``), and both (with the
global torch RNG, forked so the caller's is untouched) are saved in every
checkpoint. On CPU a run stopped at step k and resumed ends with bit-identical
weights to an uninterrupted run.
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
from genlab.data.batches import InMemoryBatches
from genlab.metrics.evaluate import MAX_VALUES, draw_samples, evaluate_model
from genlab.models.base import AmortizedPosterior
from genlab.train import checkpoint as ckpt
from genlab.train.ema import make_ema
from genlab.train.pictures import save_samples_png
from genlab.train.trainer import Callback, Trainer, TrainingDiverged


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


# --- the run's callbacks ------------------------------------------------------------

class RunContext:
    """What the callbacks of one run share: its config, directory and experiment."""

    def __init__(self, cfg: RunConfig, run_dir: Path, exp: Experiment):
        self.cfg, self.run_dir, self.exp = cfg, run_dir, exp
        self.saved_step = -1

    def save(self, tr: Trainer) -> Path:
        meta = {"time": time.time(), "logs": tr.last_logs}
        path = ckpt.save(self.run_dir, tr.step, tr.modules(), tr.state(), meta)
        self.saved_step = tr.step
        return path

    def evaluate(self, tr: Trainer) -> dict[str, float]:
        e = self.cfg.eval
        return evaluate_model(tr.eval_model(), self.exp.dataset, e.metrics, n=e.n, seed=e.seed, args=e.args,
                              sampler=self.exp.sampler)

    def write_eval(self, tr: Trainer) -> dict[str, float]:
        values = self.evaluate(tr)
        e = self.cfg.eval
        doc = {"metrics": values, "n": e.n, "seed": e.seed, "step": tr.step,
               "weights": "ema" if tr.ema is not None else "model", "sampler": self.cfg.sampler}
        (self.run_dir / "eval.json").write_text(json.dumps(doc, indent=1))
        return values

    def picture(self, tr: Trainer) -> Path:
        spec, model = self.exp.dataset.spec, tr.eval_model()
        n, labels, nrow = (64 if spec.kind == "image" else 2500), None, None
        if model.conditional:  # one row per class
            per = 10 if spec.kind == "image" else max(1, 2500 // model.num_classes)
            n, nrow = per * model.num_classes, per
            labels = torch.arange(model.num_classes).repeat_interleave(per)
        if labels is None:  # wide data (e.g. 2M-column tables): a picture needs only a few rows
            n = max(8, min(n, MAX_VALUES // (10 * spec.dim)))
        x = draw_samples(model, n, seed=0, spec=spec, sampler=self.exp.sampler, context=labels)
        title = f"{self.cfg.name or self.run_dir.name} — step {tr.step}"
        if isinstance(model, AmortizedPosterior) and spec.kind == "image":
            self.reconstructions(model, tr.step)
        return save_samples_png(self.run_dir / "samples" / f"step-{tr.step:06d}.png", x, spec,
                                self.exp.dataset.test, title, labels=labels, nrow=nrow)

    def reconstructions(self, model: AmortizedPosterior, step: int) -> Path:
        """``samples/recon-step-N.png``: rows of 8 test images, each followed by its reconstruction
        (decoder mean at the posterior mean)."""
        ds = self.exp.dataset
        spec, x = ds.spec, ds.test[:32]
        labels = ds.test_y[:32] if model.conditional else None
        dtype = next(model.parameters()).dtype
        with torch.no_grad():
            xm = spec.to_model(x.to(model.device, dtype))
            rec = spec.to_data(model.reconstruct(xm, context=None if labels is None else labels.to(model.device)))
        rows = [t for i in range(4) for t in (x[8 * i:8 * i + 8], rec[8 * i:8 * i + 8].cpu().to(x.dtype))]
        title = f"{self.cfg.name or self.run_dir.name} — each data row above its reconstruction, step {step}"
        return save_samples_png(self.run_dir / "samples" / f"recon-step-{step:06d}.png", torch.cat(rows), spec,
                                ds.test, title, nrow=8)


class LogCallback(Callback):
    def __init__(self, ctx: RunContext, logger):
        self.ctx, self.log = ctx, logger

    def on_step(self, tr: Trainer, logs: dict[str, float]) -> None:
        t = self.ctx.cfg.train
        if tr.step % t.log_every == 0 or tr.step == t.steps:
            tr.last_logs = logs
            self.log.scalars(tr.step, logs)
        self.log.advance()


class PictureCallback(Callback):
    def __init__(self, ctx: RunContext):
        self.ctx = ctx

    def on_step(self, tr: Trainer, logs: dict[str, float]) -> None:
        every = self.ctx.cfg.train.sample_every
        if every and tr.step % every == 0:
            self.ctx.picture(tr)


class EvalCallback(Callback):
    def __init__(self, ctx: RunContext, logger):
        self.ctx, self.log = ctx, logger

    def on_step(self, tr: Trainer, logs: dict[str, float]) -> None:
        e = self.ctx.cfg.eval
        if e.every and e.metrics and tr.step % e.every == 0:
            self.log.scalars(tr.step, {f"eval/{k}": v for k, v in self.ctx.evaluate(tr).items()})


class CheckpointCallback(Callback):
    def __init__(self, ctx: RunContext):
        self.ctx = ctx

    def on_step(self, tr: Trainer, logs: dict[str, float]) -> None:
        every = self.ctx.cfg.train.ckpt_every
        if every and tr.step % every == 0:
            self.ctx.save(tr)

    def on_end(self, tr: Trainer) -> None:
        if self.ctx.saved_step != tr.step:
            self.ctx.save(tr)


# --- building a run -------------------------------------------------------------------

def make_trainer(cfg: RunConfig, exp: Experiment, callbacks: list[Callback]) -> Trainer:
    """The trainer of ``cfg`` for the built experiment ``exp``."""
    acc = Accelerator(cpu=cfg.train.cpu, mixed_precision=cfg.train.mixed_precision)
    model, objective, data = exp.model.to(acc.device), exp.objective.to(acc.device), exp.dataset
    params = objective.player_parameters(model)
    opts = {p: make_optimizer(ps, cfg, p) for p, ps in params.items()}
    scheds = {p: torch.optim.lr_scheduler.LambdaLR(o, lr_lambda(cfg)) for p, o in opts.items()}
    train = data.spec.to_model(data.train).to(acc.device)
    y = None if data.train_y is None else data.train_y.to(acc.device)
    known = None if data.train_known is None else data.train_known.to(acc.device)
    batches = InMemoryBatches(train, y=y, known=known, batch_size=cfg.train.batch_size, seed=cfg.seed + 1)
    ema = make_ema(model, cfg.train.ema) if cfg.train.ema else None
    return Trainer(model, objective, batches, opts, callbacks, schedulers=scheds, schedule=cfg.train.schedule,
                   ema=ema, grad_clip=cfg.train.grad_clip, accelerator=acc, noise_seed=cfg.seed + 2)


#: ``train:`` keys that cannot change on resume (the saved state depends on them).
FROZEN_ON_RESUME = ("optimizer", "ema")


def prepare_run_dir(cfg: RunConfig, run_dir: Path, resume: bool) -> tuple[Path | None, dict[str, Any]]:
    """Create the run directory; return the checkpoint to resume from (if any) and the
    ``train:`` keys the user changed since the run was saved (``{key: (old, new)}``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    found = ckpt.latest(run_dir)
    if found is not None and not resume:
        raise RunDirError(f"{run_dir} already holds a run (checkpoint {found.name}); pass --resume to "
                          "continue it or choose another --out")
    if found is None and resume and (run_dir / "config.yaml").is_file():
        print(f"note: {run_dir} has no checkpoint yet; --resume starts it from step 0", flush=True)
    changed: dict[str, Any] = {}
    if found is not None:
        from genlab.api import read_config  # here: genlab.api imports genlab.train

        saved = read_config(run_dir)
        new = cfg.to_dict()
        for sec in ("data", "model", "objective", "seed"):
            if saved.get(sec) != new.get(sec):
                raise RunDirError(f"cannot resume {run_dir}: its {sec!r} differs from the given config "
                                  f"({saved.get(sec)} vs {new.get(sec)})")
        old_train = saved.get("train") or {}
        changed = {k: (old_train.get(k), v) for k, v in new["train"].items() if old_train.get(k) != v}
        for key in FROZEN_ON_RESUME:
            if key in changed:
                raise RunDirError(f"cannot resume {run_dir} with train.{key} changed ({changed[key][0]!r} -> "
                                  f"{changed[key][1]!r}): the saved optimiser/EMA state depends on it. Start a new "
                                  "run (another --out) to change it")
        at = ckpt.checkpoint_step(found)
        if cfg.train.steps < at:
            raise RunDirError(f"{run_dir} is already at step {at}; train.steps={cfg.train.steps} would train "
                              f"backwards. Give train.steps >= {at} (e.g. --set train.steps={2 * at}) to continue")
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return found, changed


def apply_resumed_hyperparameters(tr: Trainer, cfg: RunConfig) -> None:
    """After restoring optimiser and scheduler state, make the config's learning rates, betas
    and weight decay (global and per player) and its LR schedule take effect."""
    f = lr_lambda(cfg)
    for player, opt in tr.opts.items():
        o = {"lr": cfg.train.lr, "betas": cfg.train.betas, "weight_decay": cfg.train.weight_decay,
             **cfg.train.optim.get(player, {})}
        sched = tr.scheds.get(player)
        if sched is not None:
            sched.base_lrs = [float(o["lr"])] * len(opt.param_groups)
            sched.lr_lambdas = [f] * len(opt.param_groups)
        for group in opt.param_groups:
            group["initial_lr"] = float(o["lr"])
            group["lr"] = float(o["lr"]) * (f(sched.last_epoch) if sched is not None else 1.0)
            group["weight_decay"] = float(o["weight_decay"])
            if "betas" in group:
                group["betas"] = tuple(o["betas"])


def truncate_log(run_dir: Path, step: int) -> None:
    """Drop ``metrics.jsonl`` lines logged after ``step`` (the checkpoint a run resumes from)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if int(json.loads(line).get("step", 0)) <= step:
                keep.append(line)
        except (ValueError, AttributeError):
            continue  # a torn last line from a kill
    path.write_text("".join(k + "\n" for k in keep))


def fit(cfg: RunConfig, run_dir: str | Path, *, resume: bool = False) -> dict[str, Any]:
    """Train ``cfg`` into ``run_dir``; returns ``{"step", "seconds", "eval", "run_dir"}``.

    Raises :class:`TrainingDiverged` on a NaN/inf loss (no checkpoint is written
    after it) and :class:`RunDirError` when the directory cannot be used as asked.
    One writer per run: the directory is locked while training
    (:func:`genlab.train.checkpoint.lock_run`).
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"--out {run_dir} is a file, not a directory; choose another --out")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except (NotADirectoryError, FileExistsError):
        raise RunDirError(f"cannot create run directory {run_dir}: a parent is a regular file") from None
    with ckpt.lock_run(run_dir):
        return _fit_locked(cfg, run_dir, resume)


def _fit_locked(cfg: RunConfig, run_dir: Path, resume: bool) -> dict[str, Any]:
    from genlab.train.logging import RunLogger

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        found, changed = prepare_run_dir(cfg, run_dir, resume)
        exp = build(cfg)
        (run_dir / "data_spec.json").write_text(json.dumps(exp.dataset.spec.to_dict()))
        ctx = RunContext(cfg, run_dir, exp)
        tr = make_trainer(cfg, exp, [])
        if found is not None:
            ckpt.load_modules(found, tr.modules())
            tr.load_state(ckpt.load_state(found))
            apply_resumed_hyperparameters(tr, cfg)
            ctx.saved_step = tr.step
            truncate_log(run_dir, tr.step)
            for key, (old, new) in changed.items():
                print(f"resume: train.{key} changed {old!r} -> {new!r}; in effect from step {tr.step + 1}",
                      flush=True)
        log = RunLogger(run_dir, total=cfg.train.steps, initial=tr.step, progress=cfg.train.progress)
        if changed:
            with (run_dir / "changes.jsonl").open("a") as f:
                f.write(json.dumps({"step": tr.step, "time": time.time(),
                                    "changed": {k: {"old": o, "new": n} for k, (o, n) in changed.items()}}) + "\n")
        tr.callbacks = [LogCallback(ctx, log), PictureCallback(ctx), EvalCallback(ctx, log),
                        CheckpointCallback(ctx)]
        t0 = time.time()
        try:
            tr.fit(cfg.train.steps)
        except TrainingDiverged as e:
            raise TrainingDiverged(divergence_message(run_dir, e), step=e.step, player=e.player,
                                   value=e.value) from None
        finally:
            log.close()
        ctx.picture(tr)
        result = {"step": tr.step, "seconds": time.time() - t0, "run_dir": str(run_dir), "eval": {}}
        if cfg.eval.metrics:
            result["eval"] = ctx.write_eval(tr)
        return result


def divergence_message(run_dir: Path, e: TrainingDiverged) -> str:
    try:
        good = ckpt.latest(run_dir)
    except ckpt.CheckpointError:
        good = None
    keep = f"the last good checkpoint is {good}" if good else "no checkpoint had been written yet"
    return (f"{e}. The run stopped; {keep}. Try a lower learning rate (train.lr / train.optim.{e.player}.lr), "
            f"gradient clipping (train.grad_clip) or a gradient penalty, then resume with --resume.")
