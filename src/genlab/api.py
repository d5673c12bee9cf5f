"""``genlab.load(run_dir)``: the trained model back, with no dataset and no training code."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from genlab.build import build_model
from genlab.data.base import DataSpec
from genlab.models.base import GenerativeModel
from genlab.train import checkpoint as ckpt


class RunNotFound(FileNotFoundError):
    """The path is not a genlab run directory, or it has no checkpoint yet."""


def resolve_checkpoint(run_dir: Path, step: int | None) -> Path:
    if not (run_dir / "config.yaml").is_file():
        raise RunNotFound(f"{run_dir} is not a genlab run directory (no config.yaml); "
                          "train one with `genlab train CONFIG --out DIR`")
    if step is not None:
        path = ckpt.ckpt_dir(run_dir) / f"step-{step:06d}"
        if not (path / "meta.json").is_file():
            have = sorted(p.name for p in ckpt.ckpt_dir(run_dir).glob("step-*"))
            raise RunNotFound(f"{run_dir} has no checkpoint for step {step}; it has: {', '.join(have) or 'none'}")
        return path
    path = ckpt.latest(run_dir)
    if path is None:
        raise RunNotFound(f"{run_dir} has no checkpoint yet")
    return path


def load_spec(run_dir: str | Path) -> DataSpec:
    return DataSpec.from_dict(json.loads((Path(run_dir) / "data_spec.json").read_text()))


def load(run_dir: str | Path, *, ema: bool | None = None, step: int | None = None) -> GenerativeModel:
    """Rebuild the model of a run from its ``config.yaml``, ``data_spec.json`` and a checkpoint.

    ``ema``: use the EMA weights (default: when the run kept them). ``step``: a
    specific checkpoint (default: the latest). The model is returned in eval mode on CPU.
    """
    run_dir = Path(run_dir)
    path = resolve_checkpoint(run_dir, step)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    model = build_model(cfg["model"], load_spec(run_dir), int(cfg.get("seed", 0)))
    has_ema = (path / "ema.safetensors").is_file()
    if ema and not has_ema:
        raise RunNotFound(f"{path} holds no EMA weights (train.ema was not set)")
    ckpt.load_modules(path, {"ema" if (has_ema if ema is None else ema) else "model": model})
    return model.eval()
