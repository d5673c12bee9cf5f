"""Protocols v2: batches with labels, context, the sampler axis, posteriors on models,
the config-free trainer, and the hygiene around them."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from genlab import registry
from genlab.build import build_dataset, validate
from genlab.capabilities import CapabilityError
from genlab.cli.main import main
from genlab.config import ConfigError, from_dict
from genlab.data.base import Batch, DataSpec, hide_labels
from genlab.data.batches import FunctionBatches, InMemoryBatches
from genlab.models.base import EnergyModel, ScoreModel
from genlab.objectives.base import LossOutput, Objective
from genlab.sampling.samplers import Ancestral, AnnealedLangevin, Langevin
from genlab.train import Trainer, fit


def tiny(**over):
    d = {"seed": 1, "data": {"name": "ring8", "n_train": 256, "n_test": 128},
         "model": {"name": "mlp_generator", "hidden": 16, "depth": 2},
         "objective": {"name": "nsgan", "critic": {"name": "mlp", "hidden": 16, "depth": 2}},
         "train": {"steps": 4, "batch_size": 32, "progress": False, "ckpt_every": 0}}
    d.update(over)
    return d


def cfg_of(d):
    c = from_dict(d)
    validate(c)
    return c


# --- batches and labels ---------------------------------------------------------------

def test_labelled_datasets_declare_classes_and_labels_left_info():
    data = build_dataset({"name": "digits"})
    assert data.spec.classes == 10 and data.train_y.shape == (len(data.train),)
    assert "train_labels" not in data.info
    assert build_dataset({"name": "ring8"}).spec.classes is None


def test_labelled_keeps_n_per_split_class_balanced_and_seeded():
    data = build_dataset({"name": "digits", "labelled": 100}, seed=3)
    for y, known in ((data.train_y, data.train_known), (data.test_y, data.test_known)):
        assert int(known.sum()) == 100
        assert torch.bincount(y[known], minlength=10).tolist() == [10] * 10
    again = build_dataset({"name": "digits", "labelled": 100}, seed=3)
    other = build_dataset({"name": "digits", "labelled": 100}, seed=4)
    assert torch.equal(data.train_known, again.train_known)
    assert not torch.equal(data.train_known, other.train_known)
    b = data.batch("train")
    assert (b.y[~b.known] == -1).all() and (b.y[b.known] >= 0).all()
    assert len(b.labelled) == 100


def test_labelled_is_range_checked_before_building():
    with pytest.raises(ConfigError, match="data.labelled should be a non-negative int"):
        cfg_of(tiny(data={"name": "digits", "labelled": -1}))
    with pytest.raises(ValueError, match="needs a labelled dataset"):
        hide_labels(build_dataset({"name": "ring8", "n_train": 10, "n_test": 10}), 4)


def test_in_memory_batches_resume_exactly():
    x = torch.arange(100.0)[:, None]
    src = InMemoryBatches(x, y=torch.arange(100) % 3, batch_size=8, seed=0)
    src.draw()
    state = src.state()
    a = src.draw()
    src.set_state(state)
    b = src.draw()
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.y, a.x[:, 0].long() % 3)


# --- context ----------------------------------------------------------------------------

def test_unconditional_models_refuse_context():
    spec = DataSpec(name="t", kind="points", event_shape=(2,))
    for name in ("mlp_generator", "realnvp", "maf"):
        model = registry.MODELS[name](data_spec=spec)
        with pytest.raises(ValueError, match="unconditional; it takes no context"):
            model.sample(3, context=torch.zeros(3, dtype=torch.long))
    flow = registry.MODELS["realnvp"](data_spec=spec)
    with pytest.raises(ValueError, match="unconditional"):
        flow.log_prob(torch.zeros(3, 2), context=torch.zeros(3, dtype=torch.long))
    labels = torch.zeros(3, dtype=torch.long)
    lg = registry.MODELS["linear_gaussian"](data_spec=spec)
    gen = registry.MODELS["mlp_generator"](data_spec=spec)
    for call in (lambda: lg.prior(context=labels), lambda: lg.posterior(torch.zeros(3, 2), context=labels),
                 lambda: lg.likelihood(torch.zeros(3, 2), context=labels),
                 lambda: gen.decode(torch.zeros(3, 2), context=labels), lambda: gen.prior(context=labels)):
        with pytest.raises(ValueError, match="unconditional"):
            call()


# --- samplers ---------------------------------------------------------------------------

class GaussEnergy(EnergyModel):
    """E(x) = |x - mu|^2 / (2 s^2): p = N(mu, s^2 I)."""

    def __init__(self, mu=1.5, s=0.5):
        super().__init__()
        self.event_shape = torch.Size((2,))
        self.mu, self.s = mu, s
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def energy(self, x, *, context=None):
        return ((x - self.mu) ** 2).sum(1) / (2 * self.s**2) + 0 * self.dummy

    def _sample(self, n, *, context, generator):
        raise NotImplementedError("sampled by MCMC")


class GaussScore(ScoreModel):
    """Exact score of N(mu, s^2) convolved with N(0, sigma^2): -(x - mu) / (s^2 + sigma^2)."""

    def __init__(self, mu=-1.0, s=0.3):
        super().__init__()
        self.event_shape = torch.Size((2,))
        self.mu, self.s = mu, s

    def score(self, x, sigma, *, context=None):
        return -(x - self.mu) / (self.s**2 + sigma[:, None] ** 2)

    def _sample(self, n, *, context, generator):
        raise NotImplementedError("sampled by Langevin")


def test_ancestral_is_model_sample():
    spec = DataSpec(name="t", kind="points", event_shape=(2,))
    model = registry.MODELS["realnvp"](data_spec=spec)
    a = Ancestral()(model, 50, generator=torch.Generator().manual_seed(0))
    b = model.sample(50, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


def test_langevin_on_an_energy_reaches_the_gaussian():
    x = Langevin(steps=600, step_size=0.02, init="normal", init_scale=2.0)(
        GaussEnergy(), 4000, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(x.mean(0), torch.tensor([1.5, 1.5]), atol=0.04)
    assert torch.allclose(x.std(0), torch.tensor([0.5, 0.5]), atol=0.04)  # ULA bias ~ step_size/8 relative


def test_annealed_langevin_on_an_exact_score_ends_at_the_smallest_noise_level():
    sampler = AnnealedLangevin(sigma_max=3.0, sigma_min=0.1, levels=8, steps_per_level=100, eps=1e-2)
    x = sampler(GaussScore(), 4000, generator=torch.Generator().manual_seed(1))
    want = math.sqrt(0.3**2 + 0.1**2)
    assert torch.allclose(x.mean(0), torch.tensor([-1.0, -1.0]), atol=0.03)
    assert torch.allclose(x.std(0), torch.tensor([want, want]), atol=0.03)


def test_sampler_requirements_are_checked_before_training():
    with pytest.raises(CapabilityError, match="sampler 'langevin' needs a model with score .* or energy"):
        cfg_of(tiny(sampler={"name": "langevin"}))
    with pytest.raises(ConfigError, match="unknown sampler 'nosuch'; valid samplers:.*ancestral"):
        cfg_of(tiny(sampler={"name": "nosuch"}))
    with pytest.raises(ConfigError, match="unknown key 'stepz' in sampler 'ancestral'"):
        cfg_of(tiny(sampler={"name": "ancestral", "stepz": 3}))


class Jitter(Ancestral):
    """A sampler added in one class: ancestral samples plus a fixed offset."""

    def __init__(self, *, offset: float = 100.0):
        self.offset = offset

    def draw(self, model, n, *, context, generator):
        return super().draw(model, n, context=context, generator=generator) + self.offset


def test_a_new_sampler_is_one_class_plus_the_registry_and_reaches_the_cli(tmp_path, monkeypatch):
    monkeypatch.setitem(registry.SAMPLERS, "jitter", Jitter)
    run = tmp_path / "r"
    fit(cfg_of(tiny(sampler={"name": "jitter", "offset": 50.0})), run)
    assert main(["sample", str(run), "--n", "20", "--out", str(tmp_path / "a.npy")]) == 0
    assert np.load(tmp_path / "a.npy").mean() > 40  # the run's sampler
    assert main(["sample", str(run), "--n", "20", "--out", str(tmp_path / "b.npy"), "--sampler", "ancestral"]) == 0
    assert abs(np.load(tmp_path / "b.npy").mean()) < 10
    assert main(["sample", str(run), "--n", "20", "--out", str(tmp_path / "c.npy"),
                 "--set", "sampler.offset=-50"]) == 0
    assert np.load(tmp_path / "c.npy").mean() < -40
    import genlab
    loaded = genlab.load_run(run)
    assert loaded.sample(10).mean() > 40 and isinstance(loaded.sampler, Jitter)


# --- posteriors -------------------------------------------------------------------------

def test_posterior_is_a_model_capability_saved_and_loaded_with_it(tmp_path):
    import genlab
    d = {"seed": 0, "data": {"name": "moons", "n_train": 256, "n_test": 64},
         "model": {"name": "linear_gaussian", "latent_dim": 1},
         "objective": {"name": "mle"}, "eval": {"metrics": ["iwae"], "args": {"iwae": {"k": 5}}, "n": 64},
         "train": {"steps": 20, "batch_size": 64, "lr": 0.05, "progress": False, "ckpt_every": 0}}
    fit(cfg_of(d), tmp_path / "r")
    model = genlab.load(tmp_path / "r")
    x = torch.randn(7, 2)
    q = model.posterior(x)
    assert q.batch_shape == (7,) and q.event_shape == (1,)
    # the exact posterior makes every importance weight equal p(x): IWAE = log p(x) for any k
    from genlab.metrics.iwae import IWAEBound
    m = IWAEBound(k=2, data_spec=DataSpec(name="t", kind="points", event_shape=(2,)))
    m.update(model, Batch(x))
    assert torch.allclose(m.values().float(), model.log_prob(x).detach(), atol=1e-4)


# --- the trainer ------------------------------------------------------------------------

class Recorder(Objective):
    """Records the step and batch each player sees; learns a mean."""

    players = ("model", "helper")
    shares_batch = True

    def __init__(self):
        super().__init__()
        self.seen = []
        self.w = torch.nn.Parameter(torch.zeros(1))

    def helper_modules(self):
        return {"helper": []}

    def player_parameters(self, model):
        return {"model": list(model.parameters()), "helper": [self.w]}

    def loss(self, player, model, batch, *, step=0, generator=None):
        self.seen.append((player, step, batch.x.sum().item()))
        target = batch.x.mean() if player == "model" else torch.zeros(())
        params = list(model.parameters()) if player == "model" else [self.w]
        return LossOutput((params[0].sum() - target) ** 2, {})


def test_trainer_needs_no_config_passes_the_step_and_shares_batches():
    spec = DataSpec(name="t", kind="points", event_shape=(2,))
    model = registry.MODELS["linear_gaussian"](data_spec=spec)
    obj = Recorder()
    opts = {"model": torch.optim.SGD(model.parameters(), lr=0.01), "helper": torch.optim.SGD([obj.w], lr=0.1)}
    src = FunctionBatches(lambda n, g: torch.randn(n, 2, generator=g), batch_size=4, seed=0)
    Trainer(model, obj, src, opts).fit(3)
    assert [(p, s) for p, s, _ in obj.seen] == [("helper", 0), ("model", 0), ("helper", 1), ("model", 1),
                                                ("helper", 2), ("model", 2)]
    sums = [v for _, _, v in obj.seen]
    assert sums[0] == sums[1] and sums[2] == sums[3] and sums[0] != sums[2]  # one batch per step


def test_one_training_loop():
    import inspect

    import genlab.experiments as ex
    src = inspect.getsource(ex.simple_fit)
    assert "Trainer(" in src and ".backward(" not in src and ".loss(" not in src


# --- hygiene ----------------------------------------------------------------------------

def test_no_import_cycles_between_config_and_build_or_demo_and_cli():
    code = ("import sys, genlab.config, genlab.nets.build; "
            "assert 'genlab.build' not in sys.modules, 'config imports build'; "
            "import genlab.demo; assert 'genlab.cli.commands' not in sys.modules, 'demo imports the CLI'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_eval_args_are_validated_before_training():
    with pytest.raises(ConfigError, match="eval.args has arguments for metric 'kid', which is not in eval.metrics"):
        cfg_of(tiny(eval={"metrics": ["modes"], "args": {"kid": {"subset_size": 10}}}))
    with pytest.raises(ConfigError, match="unknown key 'subsetsize' in eval.args.kid"):
        cfg_of(tiny(data={"name": "digits"}, model={"name": "conv_generator"},
                    objective={"name": "nsgan"}, eval={"metrics": ["kid"], "args": {"kid": {"subsetsize": 10}}}))


def test_readme_and_docs_link_only_inside_the_repository():
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+)", doc.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path = (doc.parent / target).resolve()
            assert path.is_relative_to(root) and path.exists(), f"{doc.name} links to {target}"
    assert (root / "docs" / "design.md").is_file()


@pytest.mark.parametrize("quick", [True, False])
def test_every_demo_entry_builds_a_valid_config(quick):
    """The demo adds the battery and metric arguments to each recipe; every entry must validate."""
    from genlab.demo import STUDY, demo_config

    for run in STUDY:
        cfg = demo_config(run, quick)
        assert set(cfg.eval.args) <= set(cfg.eval.metrics), run.label
    assert any(r.recipe == "digits-vae" for r in STUDY)
