"""Checkpoints: safetensors tensors + JSON, with hashes; never pickle.

Layout::

    RUN/.lock                                   flock'ed by the one `genlab train` writing RUN (holds its pid)
    RUN/ckpt/step-000500/model.safetensors      the model's weights
                         ema.safetensors        EMA weights (when train.ema is set)
                         objective.safetensors  helper networks (critics, encoders)
                         state.safetensors      every tensor of the training state (optimiser moments,
                                                step counters, RNG states), under generated names t0, t1, ...
                         state.json             the rest of that state: its structure with type tags
                         meta.json              step, time, last logged values and
                                                "files": {file name: sha256 hex} for every file above
    RUN/ckpt/latest                             name of the newest complete checkpoint

Trust model: a checkpoint folder is untrusted data (a downloaded run, a shared
disk). genlab only ever reads safetensors and JSON from it, checks the sha256
recorded in ``meta.json`` before using a file, and never unpickles or executes
anything from it. Checkpoints of older genlab versions keep the optimiser/RNG
state in a pickle (``state.pt``): their weights still load, but their state is
refused and the pickle is never opened. Their ``meta.json`` has no ``"files"``,
so their weights load unverified (safetensors is plain data, not code).

Writing: a checkpoint is written into ``.tmp-step-N`` and renamed into place.
A step that already exists is first renamed to ``.old-step-N`` and deleted only
after the new folder and ``latest`` are in place, so a kill at any moment leaves
a complete checkpoint that :func:`latest` finds (it falls back to the newest
complete folder when ``latest`` names a missing one). :func:`lock_run` keeps a
second writer out of a run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

STATE_FORMAT = 1
_ADVICE = "use an earlier checkpoint (genlab.load(run, step=N)) or retrain"
_NAME = re.compile(r"[A-Za-z0-9_-]+")
_HELD: set[Path] = set()  # run directories whose lock this process holds


class CheckpointError(ValueError):
    """A checkpoint is missing, damaged, altered, in an unsupported format, or does not fit the model."""


class RunLockedError(CheckpointError):
    """Another process is writing the run directory."""


def ckpt_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "ckpt"


# --- finding the latest checkpoint ------------------------------------------------------

def _complete(path: Path) -> bool:
    return path.is_dir() and (path / "meta.json").is_file()


def _numbered(root: Path, prefix: str) -> list[tuple[int, Path]]:
    """``(step, folder)`` for the folders named ``PREFIX<digits>``, oldest first."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)")
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := pattern.fullmatch(p.name)) and p.is_dir()]
    return sorted(found, key=lambda sp: (sp[0], sp[1].name))


def latest(run_dir: Path) -> Path | None:
    """The newest complete checkpoint folder; ``None`` when the run has no checkpoint at all.

    Uses the ``latest`` marker when it names a complete folder, else the newest complete
    ``step-*`` folder, or a complete ``.old-step-N`` left by a save killed mid-swap (renamed
    back to ``step-N``). Raises :class:`CheckpointError` when checkpoints exist but none is usable.
    """
    root = ckpt_dir(run_dir)
    if not root.is_dir():
        return None
    marker = root / "latest"
    try:
        name = marker.read_text().strip() if marker.is_file() else ""
    except (OSError, UnicodeDecodeError):
        name = ""
    if re.fullmatch(r"step-\d+", name) and _complete(root / name):
        return root / name
    steps, olds = _numbered(root, "step-"), _numbered(root, ".old-step-")
    good = {s: p for s, p in steps if _complete(p)}
    for s, old in olds:  # the previous copy of a step whose re-save was killed mid-swap
        if s not in good and _complete(old):
            good[s] = old
    if good:
        best = good[max(good)]
        return _restore_old(run_dir, best) if best.name.startswith(".old-") else best
    if marker.exists() or steps or olds:
        names = ", ".join(p.name for _, p in steps + olds) or "none"
        raise CheckpointError(f"{run_dir} has checkpoints (latest -> {name or '?'}; folders: {names}) but none is "
                              "complete (each needs a meta.json), so it cannot be resumed; genlab will not silently "
                              f"start it from scratch. Restore a checkpoint, or delete {root} to start over.")
    return None


def _restore_old(run_dir: Path, old: Path) -> Path:
    """Rename ``.old-step-N`` back to ``step-N`` unless another process is writing the run."""
    final = old.with_name(old.name[len(".old-"):])
    if final.exists():
        return old
    try:
        if Path(run_dir).resolve() in _HELD:
            os.replace(old, final)
        else:
            with lock_run(run_dir):
                os.replace(old, final)
    except (OSError, CheckpointError):  # a writer is busy, or the run is read-only: use it where it is
        return old
    return final


# --- writing ----------------------------------------------------------------------------

def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _encode(value: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    """``value`` as JSON with type tags; its tensors go into ``tensors`` (contiguous CPU copies)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        v = float(value)
        return v if math.isfinite(v) else {"$": "float", "v": "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")}
    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = value.detach().cpu().contiguous().clone()
        return {"$": "tensor", "v": key}
    if isinstance(value, (list, tuple)):
        tag = "tuple" if isinstance(value, tuple) else "list"
        return {"$": tag, "v": [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, dict):
        items = []
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"cannot checkpoint {where}: key {k!r} is a {type(k).__name__}, not a str or int")
            items.append([k if isinstance(k, (bool, str)) else int(k), _encode(v, tensors, f"{where}[{k!r}]")])
        return {"$": "dict", "v": items}
    raise TypeError(f"cannot checkpoint {where}: a {type(value).__name__} is not one of dict, list, tuple, "
                    "tensor, int, float, bool, str, None")


def save(run_dir: Path, step: int, modules: dict[str, nn.Module], state: dict[str, Any],
         meta: dict[str, Any], keep: int = 2) -> Path:
    """Write ``modules`` (name -> module) and ``state`` for ``step``; keep the ``keep`` newest (0: all)."""
    for name in modules:
        if not _NAME.fullmatch(name) or name == "state":
            raise ValueError(f"module name {name!r} cannot name a checkpoint file (letters, digits, _ and -; "
                             "not 'state')")
    root = ckpt_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:06d}"
    tmp, old = root / f".tmp-{final.name}", root / f".old-{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for name, module in modules.items():
            save_model(module, str(tmp / f"{name}.safetensors"))
        tensors: dict[str, torch.Tensor] = {}
        tree = _encode(state, tensors, "state")
        save_file(tensors, str(tmp / "state.safetensors"))
        (tmp / "state.json").write_text(json.dumps({"format": STATE_FORMAT, "tree": tree}, allow_nan=False))
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
        (tmp / "meta.json").write_text(json.dumps({"step": step, **meta, "files": files}, indent=1))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    _atomic_write_text(root / "latest", final.name)
    shutil.rmtree(old, ignore_errors=True)
    _prune(root, keep, final)
    return final


def _prune(root: Path, keep: int, current: Path) -> None:
    if keep <= 0:
        return
    others = [p for _, p in _numbered(root, "step-") if p != current]
    for old in others[:max(0, len(others) - (keep - 1))]:
        shutil.rmtree(old, ignore_errors=True)


# --- reading ----------------------------------------------------------------------------

def _read_meta(path: Path) -> dict[str, Any]:
    file = path / "meta.json"
    if not file.is_file():
        raise CheckpointError(f"checkpoint {path} is incomplete: it has no meta.json")
    try:
        meta = json.loads(file.read_text())
    except (ValueError, RecursionError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupted: meta.json is not valid JSON ({err}); "
                              f"{_ADVICE}") from err
    files = meta.get("files") if isinstance(meta, dict) else None
    if not isinstance(meta, dict) or not (files is None or isinstance(files, dict)
                                          and all(isinstance(v, str) for v in files.values())):
        raise CheckpointError(f"checkpoint {path} is corrupted: meta.json is not a genlab checkpoint record; {_ADVICE}")
    return meta


def _verify(path: Path, meta: dict[str, Any], name: str) -> None:
    """Check ``name`` against the hash in ``meta``; checkpoints of older genlab record none."""
    files = meta.get("files")
    if files is None:
        return
    expected, file = files.get(name), path / name
    if expected is None:
        raise CheckpointError(f"checkpoint {path} is corrupted: its meta.json records no hash for {name}, so the "
                              f"folder was altered after it was written; {_ADVICE}")
    if not file.is_file():
        raise CheckpointError(f"checkpoint {path} is corrupted: {name} is missing; {_ADVICE}")
    actual = _sha256(file)
    if actual != expected:
        raise CheckpointError(f"checkpoint {path} is corrupted: {name} does not match the hash recorded when it was "
                              f"written (sha256 {actual[:16]}..., recorded {expected[:16]}...); {_ADVICE}")


def _shapes(path: Path, file: Path) -> dict[str, list[int]]:
    try:
        with safe_open(str(file), framework="pt") as f:
            return {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupted: {file.name} is not a readable safetensors file "
                              f"(truncated or overwritten: {err}); {_ADVICE}") from err


def _mismatch(module: nn.Module, saved: dict[str, list[int]]) -> str:
    """The first difference between ``module``'s tensors and the file's."""
    have = {k: list(v.shape) for k, v in module.state_dict().items()}
    for k, shape in have.items():
        if k in saved and saved[k] != shape:
            return f"tensor {k!r} has shape {saved[k]} in the file but {shape} in the model"
    if extra := [k for k in saved if k not in have]:
        return f"the file has a tensor {extra[0]!r} that the model lacks"
    if missing := [k for k in have if k not in saved]:
        return f"the model's tensor {missing[0]!r} is not in the file"
    return "its tensors do not fit the model"


def load_modules(path: Path, modules: dict[str, nn.Module]) -> None:
    """Load weights saved by :func:`save` into ``modules`` (strict), after checking their hashes."""
    path = Path(path)
    meta = _read_meta(path)
    for name, module in modules.items():
        file = path / f"{name}.safetensors"
        if not file.is_file() and file.name not in (meta.get("files") or {}):
            raise FileNotFoundError(f"checkpoint {path} has no {file.name}")
        _verify(path, meta, file.name)
        saved = _shapes(path, file)
        try:
            load_model(module, str(file), strict=True)
        except RuntimeError as err:
            raise CheckpointError(f"checkpoint {path}: {file.name} does not fit the {name}: {_mismatch(module, saved)}"
                                  "; the run's config.yaml does not match its weights (was it edited after "
                                  "training?)") from err
        except SafetensorError as err:
            raise CheckpointError(f"checkpoint {path} is corrupted: {file.name} cannot be read ({err}); "
                                  f"{_ADVICE}") from err


class _Malformed(Exception):
    pass


def _decode(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    tag, v = (node.get("$"), node.get("v")) if isinstance(node, dict) else (None, None)
    if tag == "dict" and isinstance(v, list):
        out = {}
        for item in v:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], (str, int))):
                raise _Malformed(f"a dict item is {item!r:.80}")
            out[item[0]] = _decode(item[1], tensors)
        return out
    if tag in ("list", "tuple") and isinstance(v, list):
        items = [_decode(x, tensors) for x in v]
        return tuple(items) if tag == "tuple" else items
    if tag == "float" and v in ("nan", "inf", "-inf"):
        return float(v)
    if tag == "tensor" and isinstance(v, str) and v in tensors:
        return tensors[v]
    raise _Malformed(f"unexpected node {node!r:.80}")


def checkpoint_step(path: Path) -> int:
    """The step a checkpoint folder was written at (from its ``meta.json``)."""
    step = _read_meta(Path(path)).get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"checkpoint {path} has no valid step in meta.json ({step!r}); {_ADVICE}")
    return step


def load_state(path: Path) -> dict[str, Any]:
    """The ``state`` given to :func:`save`, rebuilt from JSON and safetensors (tensors on CPU)."""
    path = Path(path)
    if not (path / "state.json").is_file():
        if (path / "state.pt").exists():
            raise CheckpointError(f"checkpoint {path} uses an old pickle format (state.pt) that genlab no longer "
                                  "loads for safety: unpickling a file can run arbitrary code. Its weights still "
                                  "load (genlab sample/eval), but training cannot resume from it; retrain the run.")
        raise CheckpointError(f"checkpoint {path} is incomplete: it has no state.json; {_ADVICE}")
    meta = _read_meta(path)
    _verify(path, meta, "state.json")
    _verify(path, meta, "state.safetensors")
    try:
        doc = json.loads((path / "state.json").read_text())
        if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
            raise _Malformed(f"unknown format {doc.get('format') if isinstance(doc, dict) else doc!r:.40}")
        tensors = load_file(str(path / "state.safetensors")) if (path / "state.safetensors").is_file() else {}
        state = _decode(doc.get("tree"), tensors)
        if not isinstance(state, dict):
            raise _Malformed("the state is not a dict")
    except (ValueError, RecursionError, SafetensorError, OSError, _Malformed) as err:
        raise CheckpointError(f"checkpoint {path} is corrupted: its training state cannot be read ({err}); "
                              f"{_ADVICE}") from err
    return state


# --- one writer per run ------------------------------------------------------------------

@contextmanager
def lock_run(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``RUN/.lock`` (with this pid in it); :class:`RunLockedError` if taken."""
    import fcntl  # POSIX only; imported here so the rest of the module also works elsewhere

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            who = f"process {holder}" if holder.isdigit() else "another process"
            raise RunLockedError(f"{run_dir} is locked by {who}: another `genlab train` is writing this run. "
                                 "Wait for it to finish or stop it, or train into another --out.") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        key = run_dir.resolve()
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
