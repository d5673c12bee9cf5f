"""Engine contracts: config validation, capability checks, checkpoints, exact resume, NaN stop."""

import json

import pytest
import torch

from genlab import registry
from genlab.build import build
from genlab.capabilities import CapabilityError
from genlab.build import load_config
from genlab.config import ConfigError, from_dict
from genlab.objectives.adversarial import AdversarialObjective
from genlab.objectives.gan_losses import AdversarialLoss, NonSaturatingLoss
from genlab.train import TrainingDiverged, fit
from genlab.train import checkpoint as ckpt
from genlab.train.loop import RunDirError


def tiny(**train):
    return {"seed": 3, "data": {"name": "ring8", "n_train": 512, "n_test": 256},
            "model": {"name": "mlp_generator", "hidden": 16, "depth": 2},
            "objective": {"name": "nsgan", "critic": {"name": "mlp", "hidden": 16, "depth": 2}},
            "train": {"steps": 12, "batch_size": 32, "progress": False, "log_every": 2, "ckpt_every": 6,
                      "ema": 0.9, **train}}


def cfg_of(d):
    from genlab.build import validate
    c = from_dict(d)
    validate(c)
    return c


# --- config validation ---------------------------------------------------------------

def test_unknown_model_key_lists_valid_keys():
    d = tiny()
    d["model"]["hiden"] = 3
    with pytest.raises(ConfigError, match=r"unknown key 'hiden' in model 'mlp_generator'.*valid keys:.*hidden"):
        cfg_of(d)


def test_unknown_top_level_and_train_keys():
    with pytest.raises(ConfigError, match="unknown top-level key 'trian'"):
        cfg_of({**tiny(), "trian": {}})
    with pytest.raises(ConfigError, match=r"unknown key 'stepz' in section 'train'.*steps"):
        cfg_of(tiny(stepz=3))


def test_wrong_type_and_missing_section():
    with pytest.raises(ConfigError, match=r"key 'steps' should be int, got str"):
        cfg_of(tiny(steps="many"))
    d = tiny()
    del d["objective"]
    with pytest.raises(ConfigError, match="missing required section 'objective'"):
        cfg_of(d)


def test_unknown_names_list_choices():
    d = tiny()
    d["objective"]["name"] = "nosuch"
    with pytest.raises(ConfigError, match=r"unknown objective 'nosuch'; valid objectives:.*nsgan"):
        cfg_of(d)
    with pytest.raises(ConfigError, match="unknown player 'disc'.*generator, critic"):
        cfg_of(tiny(schedule={"disc": 5}))


def test_overrides_and_file_errors(tmp_path):
    p = tmp_path / "c.yaml"
    import yaml
    p.write_text(yaml.safe_dump(tiny()))
    cfg = load_config(p, ["train.steps=7", "model.hidden=8"])
    assert cfg.train.steps == 7 and cfg.model["hidden"] == 8
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_nothing_trained_on_invalid_config(tmp_path):
    d = tiny()
    d["model"]["bogus"] = 1
    with pytest.raises(ConfigError):
        fit(from_dict(d), tmp_path / "r")
    assert not (tmp_path / "r" / "ckpt").exists()


# --- capability checks -----------------------------------------------------------------

def test_mle_with_gan_generator_names_capability():
    d = tiny()
    d["objective"] = {"name": "mle"}
    with pytest.raises(CapabilityError, match=r"needs a model with log_prob.*mlp_generator.*Try: .*nsgan"):
        cfg_of(d)


def test_density_metric_on_gan_fails_before_training():
    d = tiny()
    d["eval"] = {"metrics": ["bpd"]}
    with pytest.raises(CapabilityError, match="metric 'bpd' needs a model with log_prob"):
        cfg_of(d)


def test_mode_metric_needs_mixture_data():
    d = tiny()
    d["data"] = {"name": "moons"}
    d["eval"] = {"metrics": ["modes"]}
    with pytest.raises(ConfigError, match="metric 'modes' needs a dataset of kind MixtureDataset"):
        cfg_of(d)


# --- checkpoints and resume ------------------------------------------------------------

def _weights(run):
    from safetensors.torch import load_file
    return load_file(str(ckpt.latest(run) / "model.safetensors")), load_file(str(ckpt.latest(run) / "ema.safetensors"))


def test_exact_resume_matches_uninterrupted_run(tmp_path):
    full = tmp_path / "full"
    fit(cfg_of(tiny()), full)
    part = tmp_path / "part"
    fit(cfg_of(tiny(steps=6)), part)           # stopped at step 6
    fit(cfg_of(tiny()), part, resume=True)     # resumed to 12
    (wf, ef), (wp, ep) = _weights(full), _weights(part)
    assert wf.keys() == wp.keys()
    for k in wf:
        assert torch.equal(wf[k], wp[k]), k
        assert torch.equal(ef[k], ep[k]), k
    lines = [json.loads(s) for s in (part / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [2, 4, 6, 8, 10, 12]


def test_exact_resume_with_a_lazy_penalty(tmp_path):
    # every: 4 with checkpoints at step 6: the resumed run must pick the penalty's step count up
    # (6 mod 4 != 0), or it would penalise on different steps than the uninterrupted run
    def lazy(**train):
        d = tiny(**train)
        d["objective"]["penalty"] = [{"name": "r1", "weight": 1.0, "every": 4}]
        return d
    fit(cfg_of(lazy()), tmp_path / "full")
    fit(cfg_of(lazy(steps=6)), tmp_path / "part")
    fit(cfg_of(lazy()), tmp_path / "part", resume=True)
    (wf, _), (wp, _) = _weights(tmp_path / "full"), _weights(tmp_path / "part")
    for k in wf:
        assert torch.equal(wf[k], wp[k]), k
    from safetensors.torch import load_file
    obj = load_file(str(ckpt.latest(tmp_path / "part") / "objective.safetensors"))
    assert int(obj["penalty_step"]) == 12


def test_refuses_to_overwrite_a_run_without_resume(tmp_path):
    fit(cfg_of(tiny(steps=2)), tmp_path / "r")
    with pytest.raises(RunDirError, match="--resume"):
        fit(cfg_of(tiny(steps=2)), tmp_path / "r")


def test_resume_with_different_model_is_refused(tmp_path):
    fit(cfg_of(tiny(steps=2)), tmp_path / "r")
    d = tiny(steps=4)
    d["model"]["hidden"] = 8
    with pytest.raises(RunDirError, match="'model' differs"):
        fit(cfg_of(d), tmp_path / "r", resume=True)


def test_checkpoint_round_trip_and_load(tmp_path):
    import genlab
    run = tmp_path / "r"
    fit(cfg_of(tiny(steps=4)), run)
    meta = json.loads((ckpt.latest(run) / "meta.json").read_text())
    assert meta["step"] == 4
    model = genlab.load(run, ema=False)
    exp = build(cfg_of(tiny()))
    from safetensors.torch import load_file
    saved = load_file(str(ckpt.latest(run) / "model.safetensors"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k])
    assert not any(torch.equal(v, exp.model.state_dict()[k]) for k, v in model.state_dict().items()
                   if v.dtype.is_floating_point)
    g = torch.Generator().manual_seed(0)
    assert genlab.load(run).sample(5, generator=g).shape == (5, 2)


def test_crash_during_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    run = tmp_path / "r"
    fit(cfg_of(tiny(steps=6)), run)
    good = ckpt.latest(run)

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(ckpt, "save_file", boom)
    with pytest.raises(OSError):
        fit(cfg_of(tiny(steps=12)), run, resume=True)
    assert ckpt.latest(run) == good and (good / "state.json").is_file()


# --- divergence ------------------------------------------------------------------------

class NanAfterLoss(AdversarialLoss):
    """Wraps the non-saturating loss; its generator loss becomes NaN from the 9th call."""

    def __init__(self):
        self.inner, self.calls = NonSaturatingLoss(), 0

    def critic_loss(self, d_real, d_fake):
        return self.inner.critic_loss(d_real, d_fake)

    def generator_loss(self, d_fake, d_real):
        self.calls += 1
        loss = self.inner.generator_loss(d_fake, d_real)
        return loss * float("nan") if self.calls >= 9 else loss


class NanAfter(AdversarialObjective):
    """nsgan with the NaN-producing loss component (a leaf: a variant is a component)."""

    def __init__(self, *, critic=None):
        super().__init__(adversarial=NanAfterLoss(), critic=critic)


def test_nan_stops_run_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setitem(registry.OBJECTIVES, "nan_after", NanAfter)
    d = tiny(ckpt_every=4)
    d["objective"]["name"] = "nan_after"
    run = tmp_path / "r"
    with pytest.raises(TrainingDiverged, match=r"step 9: the generator loss is nan.*step-000008"):
        fit(cfg_of(d), run)
    assert ckpt.latest(run).name == "step-000008"
    for t in _weights(run)[0].values():
        assert torch.isfinite(t).all()


def test_global_rng_untouched(tmp_path):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    fit(cfg_of(tiny(steps=2)), tmp_path / "r")
    assert torch.equal(before, torch.get_rng_state())


def test_ema_warmup_and_closed_form():
    from genlab.train.ema import make_ema, warmup_decay
    lin = torch.nn.Linear(1, 1, bias=False)
    ema = make_ema(lin, 0.99)
    values = [1.0, 2.0, 3.0, 4.0]
    expect = None
    for t, v in enumerate(values):
        with torch.no_grad():
            lin.weight.fill_(v)
        ema.update_parameters(lin)
        d = warmup_decay(0.99, t)
        expect = v if expect is None else d * expect + (1 - d) * v
    assert ema.module.weight.item() == pytest.approx(expect, rel=1e-6)
    assert warmup_decay(0.99, 0) == pytest.approx(0.1) and warmup_decay(0.99, 10**6) == 0.99


def test_evaluation_during_training_is_logged(tmp_path):
    d = tiny(steps=8, log_every=4)
    d["eval"] = {"metrics": ["modes"], "every": 4, "n": 200}
    result = fit(cfg_of(d), tmp_path / "r")
    rows = [json.loads(s) for s in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval/modes" in r]
    assert [r["step"] for r in evals] == [4, 8]
    assert set(result["eval"]) == {"modes", "hq_percent", "reverse_kl"}
    assert json.loads((tmp_path / "r" / "eval.json").read_text())["metrics"] == result["eval"]
