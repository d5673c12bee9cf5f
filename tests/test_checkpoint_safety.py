"""Checkpoint safety: no pickle, exact JSON+safetensors state, hashes, kill-safe swaps, one writer per run."""

import hashlib
import json
import math
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_model
from torch import nn

from genlab.train import checkpoint as ckpt
from genlab.train.checkpoint import CheckpointError, RunLockedError, lock_run

torch.set_num_threads(1)


def _modules(seed: int = 0) -> dict[str, nn.Module]:
    torch.manual_seed(seed)
    return {"model": nn.Linear(3, 2), "objective": nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1))}


def _save(run: Path, step: int, seed: int = 0, **kw) -> Path:
    return ckpt.save(run, step, _modules(seed), {"n": step, "t": torch.arange(3)}, {"time": 1.0}, **kw)


def _assert_same(a, b, where="state"):
    """Equal values of exactly the same types; tensors with the same dtype, shape and values (NaN == NaN)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=where)
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b and (not isinstance(a, float) or math.copysign(1, a) == math.copysign(1, b)), where


def _trained():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, betas=(0.8, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 ** t)
    return net, opt, sched


def _step(net, opt, sched, i):
    x = torch.linspace(-1, 1, 12).reshape(4, 3) * (i + 1)
    opt.zero_grad()
    net(x).pow(2).mean().backward()
    opt.step()
    sched.step()


# --- 1. no pickle: exact JSON + safetensors state --------------------------------------

def test_state_round_trip_is_exact(tmp_path):
    net, opt, sched = _trained()
    for i in range(3):
        _step(net, opt, sched, i)
    gen = torch.Generator().manual_seed(7)
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    state = {
        "optimizers": {"generator": opt.state_dict()},
        "schedulers": {"generator": sched.state_dict()},
        "rng": {"global": torch.get_rng_state(), "data": gen.get_state()},
        "ema_n": torch.tensor(5, dtype=torch.long),
        "mixed": {0: [1, (2.5, "x"), None], 7: (), "f": [float("inf"), float("-inf"), float("nan"), -0.0, 1e-310],
                  "big": 2 ** 70, "flags": [True, False], "empty": {}, "list": [],
                  "tensors": [torch.tensor(3.5), torch.zeros(0, 2), torch.tensor([True, False]),
                              torch.tensor([1, 2], dtype=torch.int8), torch.ones(2, dtype=torch.bfloat16),
                              torch.tensor([float("nan"), 1.0], dtype=torch.float16),
                              base.t(), base[1], base]},  # non-contiguous and sharing one storage
    }
    assert state["schedulers"]["generator"]["lr_lambdas"] == [None]  # plain functions are not saved
    path = ckpt.save(tmp_path / "run", 3, {}, state, {})
    _assert_same(state, ckpt.load_state(path))
    assert not (path / "state.pt").exists()
    tree = json.loads((path / "state.json").read_text())  # strict JSON: no NaN/Infinity tokens, no pickle
    assert tree["format"] == 1 and "NaN" not in (path / "state.json").read_text()
    assert len(load_file(str(path / "state.safetensors"))) == 12 + 2 + 1 + 9  # Adam: 3 tensors x 4 params; 2 RNG; ema_n; 9


def test_restored_optimizer_and_schedule_continue_identically(tmp_path):
    net, opt, sched = _trained()
    for i in range(3):
        _step(net, opt, sched, i)
    path = ckpt.save(tmp_path / "run", 3, {"model": net},
                     {"opt": opt.state_dict(), "sched": sched.state_dict()}, {})
    net2, opt2, sched2 = _trained()
    ckpt.load_modules(path, {"model": net2})
    st = ckpt.load_state(path)
    opt2.load_state_dict(st["opt"])
    sched2.load_state_dict(st["sched"])
    for i in range(3, 6):
        _step(net, opt, sched, i)
        _step(net2, opt2, sched2, i)
    for a, b in zip(net.parameters(), net2.parameters()):
        assert torch.equal(a, b)
    assert sched.get_last_lr() == sched2.get_last_lr() == [1e-2 * 0.5 ** 6]


def test_unsupported_state_value_is_refused_and_nothing_is_left_behind(tmp_path):
    run = tmp_path / "run"
    good = _save(run, 2)
    with pytest.raises(TypeError, match=r"state\['opt'\]\[0\]: a set is not one of dict, list"):
        ckpt.save(run, 4, _modules(), {"opt": [{1, 2}]}, {})
    with pytest.raises(TypeError, match=r"key 1.5 is a float, not a str or int"):
        ckpt.save(run, 4, _modules(), {"opt": {1.5: 0}}, {})
    assert ckpt.latest(run) == good
    assert sorted(p.name for p in ckpt.ckpt_dir(run).iterdir()) == ["latest", "step-000002"]


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def test_legacy_pickle_state_is_refused_and_never_opened(tmp_path):
    armed = tmp_path / "armed"  # prove the payload really runs code when unpickled
    pickle.loads(pickle.dumps(_Payload(armed)))
    assert armed.exists()

    marker = tmp_path / "PWNED"
    run = tmp_path / "run"
    old = ckpt.ckpt_dir(run) / "step-000004"
    old.mkdir(parents=True)
    mods = _modules(1)
    save_model(mods["model"], str(old / "model.safetensors"))
    (old / "state.pt").write_bytes(pickle.dumps({"optimizers": _Payload(marker)}))
    (old / "meta.json").write_text(json.dumps({"step": 4}))  # older genlab: no "files"
    (ckpt.ckpt_dir(run) / "latest").write_text("step-000004")

    assert ckpt.latest(run) == old
    fresh = nn.Linear(3, 2)
    ckpt.load_modules(old, {"model": fresh})  # weights are safetensors: still usable, unverified
    assert torch.equal(fresh.weight, mods["model"].weight)
    with pytest.raises(CheckpointError, match=r"uses an old pickle format \(state.pt\) that genlab no longer "
                                              r"loads for safety.*training cannot resume from it"):
        ckpt.load_state(old)
    assert not marker.exists()


# --- 2. integrity -----------------------------------------------------------------------

def test_meta_records_the_sha256_of_every_file(tmp_path):
    path = _save(tmp_path / "run", 6)
    meta = json.loads((path / "meta.json").read_text())
    assert meta["step"] == 6 and meta["time"] == 1.0
    assert sorted(meta["files"]) == ["model.safetensors", "objective.safetensors", "state.json",
                                     "state.safetensors"]
    for name, digest in meta["files"].items():
        assert hashlib.sha256((path / name).read_bytes()).hexdigest() == digest


def _flip(file: Path) -> None:
    data = bytearray(file.read_bytes())
    data[-3] ^= 0xFF  # inside the tensor data: the header stays valid
    file.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["model.safetensors", "state.safetensors", "state.json"])
def test_a_changed_byte_is_detected(tmp_path, name):
    path = _save(tmp_path / "run", 6)
    _flip(path / name)
    load = (lambda: ckpt.load_modules(path, _modules())) if name == "model.safetensors" else \
        (lambda: ckpt.load_state(path))
    with pytest.raises(CheckpointError, match=rf"checkpoint .*step-000006 is corrupted: {name} does not match "
                                              r"the hash recorded when it was written .*use an earlier checkpoint"):
        load()


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_truncated_or_empty_weights_give_a_clear_error(tmp_path, damage):
    path = _save(tmp_path / "run", 6)
    file = path / "model.safetensors"
    file.write_bytes(file.read_bytes()[:40] if damage == "truncated" else b"")
    with pytest.raises(CheckpointError, match="model.safetensors does not match the hash"):
        ckpt.load_modules(path, _modules())
    meta = json.loads((path / "meta.json").read_text())
    del meta["files"]  # as an older genlab wrote it: no hashes, the file itself is checked
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"is corrupted: model.safetensors is not a readable safetensors "
                                              r"file \(truncated or overwritten"):
        ckpt.load_modules(path, _modules())


def test_older_meta_without_hashes_still_loads_weights(tmp_path):
    path = _save(tmp_path / "run", 6, seed=3)
    meta = json.loads((path / "meta.json").read_text())
    del meta["files"]
    (path / "meta.json").write_text(json.dumps(meta))
    mods = _modules(0)
    ckpt.load_modules(path, mods)
    assert torch.equal(mods["model"].weight, _modules(3)["model"].weight)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"files": ["a"]}'])
def test_meta_that_is_not_a_record_is_an_error(tmp_path, text):
    path = _save(tmp_path / "run", 6)
    (path / "meta.json").write_text(text)
    with pytest.raises(CheckpointError, match=r"step-000006 is corrupted: meta.json is not"):
        ckpt.load_modules(path, _modules())
    with pytest.raises(CheckpointError, match=r"step-000006 is corrupted: meta.json is not"):
        ckpt.load_state(path)


def test_tampered_state_json_with_a_matching_hash_is_still_rejected(tmp_path):
    path = _save(tmp_path / "run", 6)
    meta = json.loads((path / "meta.json").read_text())
    for text in ['{"format": 1, "tree": {"$": "pickle", "v": "x"}}', '{"format": 2, "tree": {}}',
                 '{"format": 1, "tree": {"$": "tensor", "v": "t99"}}']:
        (path / "state.json").write_text(text)
        meta["files"]["state.json"] = hashlib.sha256(text.encode()).hexdigest()
        (path / "meta.json").write_text(json.dumps(meta))
        with pytest.raises(CheckpointError, match="is corrupted: its training state cannot be read"):
            ckpt.load_state(path)


def test_an_unrecorded_file_is_rejected(tmp_path):
    path = _save(tmp_path / "run", 6)
    save_model(nn.Linear(3, 2), str(path / "ema.safetensors"))
    with pytest.raises(CheckpointError, match="records no hash for ema.safetensors"):
        ckpt.load_modules(path, {"ema": nn.Linear(3, 2)})
    with pytest.raises(FileNotFoundError, match="has no critic.safetensors"):
        ckpt.load_modules(path, {"critic": nn.Linear(3, 2)})


def test_weights_that_do_not_fit_the_model_name_the_tensor(tmp_path):
    path = _save(tmp_path / "run", 6)
    with pytest.raises(CheckpointError, match=r"model.safetensors does not fit the model: tensor 'weight' has "
                                              r"shape \[2, 3\] in the file but \[4, 3\] in the model; the run's "
                                              r"config.yaml does not match its weights"):
        ckpt.load_modules(path, {"model": nn.Linear(3, 4)})
    with pytest.raises(CheckpointError, match=r"the file has a tensor 'bias' that the model lacks"):
        ckpt.load_modules(path, {"model": nn.Linear(3, 2, bias=False)})


# --- 3. kill-safe swap and fallback ----------------------------------------------------

def _kill_after_first_rename(monkeypatch):
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) > 1:
            raise KeyboardInterrupt("killed")
        real(src, dst)
    monkeypatch.setattr(ckpt.os, "replace", replace)
    return calls


def test_kill_between_the_renames_keeps_the_previous_copy(tmp_path, monkeypatch):
    run = tmp_path / "run"
    _save(run, 4, seed=1)
    _save(run, 8, seed=2)
    calls = _kill_after_first_rename(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        _save(run, 8, seed=3)  # re-save of step 8 (e.g. the final save after a resume)
    monkeypatch.undo()
    assert calls == [("step-000008", ".old-step-000008"), (".tmp-step-000008", "step-000008")]
    assert not (ckpt.ckpt_dir(run) / "step-000008").exists()
    found = ckpt.latest(run)
    assert found == ckpt.ckpt_dir(run) / "step-000008"  # renamed back from .old-step-000008
    assert not (ckpt.ckpt_dir(run) / ".old-step-000008").exists()
    mods = _modules(0)
    ckpt.load_modules(found, mods)
    assert torch.equal(mods["model"].weight, _modules(2)["model"].weight)
    assert ckpt.load_state(found)["n"] == 8


def test_only_an_old_copy_left(tmp_path):
    run = tmp_path / "run"
    _save(run, 10)
    root = ckpt.ckpt_dir(run)
    os.replace(root / "step-000010", root / ".old-step-000010")
    assert ckpt.latest(run) == root / "step-000010" and ckpt.load_state(root / "step-000010")["n"] == 10


def test_marker_naming_a_missing_folder_falls_back_to_the_newest_complete_one(tmp_path):
    run = tmp_path / "run"
    _save(run, 2, keep=0)
    _save(run, 10, keep=0)
    root = ckpt.ckpt_dir(run)
    (root / "step-000012").mkdir()  # killed before meta.json: incomplete
    for name in ["step-000020", "../../etc", ""]:
        (root / "latest").write_text(name)
        assert ckpt.latest(run) == root / "step-000010"
    ckpt.load_modules(root / "step-000010", _modules(1))


def test_no_usable_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    run = tmp_path / "run"
    assert ckpt.latest(run) is None
    root = ckpt.ckpt_dir(run)
    (root / ".tmp-step-000002").mkdir(parents=True)  # killed during the very first save
    assert ckpt.latest(run) is None
    (root / "step-000002").mkdir()
    (root / "latest").write_text("step-000002")
    with pytest.raises(CheckpointError, match=r"has checkpoints \(latest -> step-000002; folders: step-000002\) "
                                              r"but none is complete.*will not silently start it from scratch"):
        ckpt.latest(run)


def test_prune_orders_steps_by_number(tmp_path):
    run = tmp_path / "run"
    _save(run, 999_999)
    _save(run, 1_000_000, keep=1)
    assert sorted(p.name for p in ckpt.ckpt_dir(run).iterdir()) == ["latest", "step-1000000"]


# --- 4. one writer per run ---------------------------------------------------------------

def test_a_second_lock_in_the_same_process_fails(tmp_path):
    run = tmp_path / "run"
    with lock_run(run):
        assert (run / ".lock").read_text().strip() == str(os.getpid())
        with pytest.raises(RunLockedError, match=rf"{run} is locked by process {os.getpid()}: another "
                                                 r"`genlab train` is writing this run"):
            with lock_run(run):
                pass
    with lock_run(run):  # released on exit
        pass


_HOLDER = """
import importlib.util, sys, time
from pathlib import Path
spec = importlib.util.spec_from_file_location("ckpt_only", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
with mod.lock_run(Path(sys.argv[2])):
    Path(sys.argv[3]).write_text("held")
    time.sleep(30)
"""


def test_a_lock_held_by_another_process(tmp_path):
    run, ready = tmp_path / "run", tmp_path / "ready"
    _save(run, 10)
    root = ckpt.ckpt_dir(run)
    os.replace(root / "step-000010", root / ".old-step-000010")
    child = subprocess.Popen([sys.executable, "-c", _HOLDER, ckpt.__file__, str(run), str(ready)])
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert child.poll() is None and time.monotonic() < deadline, "the lock holder did not start"
            time.sleep(0.02)
        with pytest.raises(RunLockedError, match=rf"locked by process {child.pid}: another `genlab train`"):
            with lock_run(run):
                pass
        # a reader does not rename behind a writer's back: it uses the old copy where it is
        assert ckpt.latest(run) == root / ".old-step-000010"
    finally:
        child.kill()
        child.wait(timeout=5)
    with lock_run(run):  # the kernel drops the lock of a dead process: no stale lock
        assert ckpt.latest(run) == root / "step-000010"
