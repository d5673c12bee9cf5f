"""Checkpoints: safetensors weights + JSON metadata + optimiser/RNG state.

Layout::

    RUN/ckpt/step-000500/model.safetensors      the model's weights
                         ema.safetensors        EMA weights (when train.ema is set)
                         objective.safetensors  helper networks (critics, encoders)
                         state.pt               optimisers, LR schedules, RNG states
                         meta.json              step, time, last logged values
    RUN/ckpt/latest                             name of the newest complete checkpoint

A checkpoint is written into a temporary folder and renamed into place, and
``latest`` is replaced atomically, so a run killed mid-write keeps its previous
checkpoint intact.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn


def ckpt_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "ckpt"


def latest(run_dir: Path) -> Path | None:
    """The newest complete checkpoint folder, or ``None``."""
    marker = ckpt_dir(run_dir) / "latest"
    if not marker.is_file():
        return None
    path = ckpt_dir(run_dir) / marker.read_text().strip()
    return path if (path / "meta.json").is_file() else None


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save(run_dir: Path, step: int, modules: dict[str, nn.Module], state: dict[str, Any],
         meta: dict[str, Any], keep: int = 2) -> Path:
    """Write ``modules`` (name -> module, as safetensors) and ``state`` (torch.save) for ``step``."""
    root = ckpt_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:06d}"
    tmp = root / f".tmp-step-{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, module in modules.items():
        save_model(module, str(tmp / f"{name}.safetensors"))
    torch.save(state, tmp / "state.pt")
    (tmp / "meta.json").write_text(json.dumps({"step": step, **meta}, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _atomic_write_text(root / "latest", final.name)
    _prune(root, keep)
    return final


def _prune(root: Path, keep: int) -> None:
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def load_modules(path: Path, modules: dict[str, nn.Module]) -> None:
    """Load weights saved by :func:`save` into ``modules`` (strict)."""
    for name, module in modules.items():
        file = Path(path) / f"{name}.safetensors"
        if not file.is_file():
            raise FileNotFoundError(f"checkpoint {path} has no {file.name}")
        load_model(module, str(file), strict=True)


def load_state(path: Path) -> dict[str, Any]:
    return torch.load(Path(path) / "state.pt", weights_only=False)
