"""``genlab.load(run_dir)``: the trained model back, with no dataset and no training code;
``genlab.load_run(run_dir)``: the model with the run's sampler and data spec, for
samples in data space exactly as ``genlab sample`` draws them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from genlab.build import build_model, build_sampler, check_sampler
from genlab.config import ConfigError
from genlab.data.base import DataSpec
from genlab.models.base import GenerativeModel
from genlab.sampling.samplers import Sampler
from genlab.train import checkpoint as ckpt


class RunNotFound(FileNotFoundError):
    """The path is not a genlab run directory, or it has no checkpoint yet."""


def resolve_checkpoint(run_dir: Path, step: int | None) -> Path:
    if not run_dir.is_dir() or not (run_dir / "config.yaml").is_file():
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
    path = Path(run_dir) / "data_spec.json"
    try:
        return DataSpec.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise RunNotFound(f"{run_dir} has no data_spec.json; is it a genlab run directory?") from None
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigError(f"{path} is not a valid data spec ({e}); the run directory is damaged") from None


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """A run's ``config.yaml`` as a mapping (safe YAML: no code), or a clear error."""
    path = Path(run_dir) / "config.yaml"
    try:
        cfg = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RunNotFound(f"{run_dir} is not a genlab run directory (no config.yaml)") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML ({str(e).splitlines()[0]}); the run directory is "
                          "damaged") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict):
        raise ConfigError(f"{path} is not a genlab run config (no 'model' section)")
    return cfg


def load(run_dir: str | Path, *, ema: bool | None = None, step: int | None = None) -> GenerativeModel:
    """Rebuild the model of a run from its ``config.yaml``, ``data_spec.json`` and a checkpoint.

    ``ema``: use the EMA weights (default: when the run kept them). ``step``: a
    specific checkpoint (default: the latest). The model is returned in eval mode on CPU.
    """
    return load_run(run_dir, ema=ema, step=step).model


@dataclass
class LoadedRun:
    """A trained run: ``model`` (eval mode, CPU), ``sampler`` (the run's, or the one asked
    for), ``spec``, the run's ``config`` mapping, the checkpoint ``step`` and which
    ``weights`` were loaded (``"ema"`` or ``"model"``)."""

    model: GenerativeModel
    sampler: Sampler
    sampler_section: dict[str, Any]
    spec: DataSpec
    config: dict[str, Any]
    step: int
    weights: str

    def sample(self, n: int, *, seed: int = 0, context: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` samples in data space ``(n, *event_shape)`` from the run's sampler (conditional
        models: ``context`` labels ``(n,)``, default balanced over the classes)."""
        from genlab.metrics.evaluate import draw_samples

        return draw_samples(self.model, n, seed=seed, spec=self.spec, sampler=self.sampler, context=context)


def load_run(run_dir: str | Path, *, ema: bool | None = None, step: int | None = None,
             sampler: dict[str, Any] | None = None) -> LoadedRun:
    """Rebuild a run's model and sampler (``sampler``: a ``{name, **kwargs}`` section that
    replaces the run's own). See :func:`load` for ``ema`` and ``step``."""
    run_dir = Path(run_dir)
    path = resolve_checkpoint(run_dir, step)
    cfg = read_config(run_dir)
    model = build_model(cfg["model"], load_spec(run_dir), int(cfg.get("seed", 0)))
    has_ema = (path / "ema.safetensors").is_file()
    if ema and not has_ema:
        raise RunNotFound(f"{path} holds no EMA weights (train.ema was not set)")
    use_ema = has_ema if ema is None else ema
    ckpt.load_modules(path, {"ema" if use_ema else "model": model})
    bad = [n for n, t in model.state_dict().items() if t.dtype.is_floating_point and not torch.isfinite(t).all()]
    if bad:
        raise ValueError(f"{path}: the {'EMA ' if use_ema else ''}weights hold NaN or infinite values "
                         f"({len(bad)} tensors, e.g. {bad[0]}); this checkpoint cannot give meaningful samples. "
                         "Use an earlier one (genlab.load(run, step=N)) or retrain with a lower learning rate")
    section = sampler or cfg.get("sampler") or {"name": "ancestral"}
    check_sampler(section, type(model), cfg["model"]["name"])
    meta_step = int(path.name.split("-")[-1])
    return LoadedRun(model.eval(), build_sampler(section), dict(section), load_spec(run_dir), cfg, meta_step,
                     "ema" if use_ema else "model")
