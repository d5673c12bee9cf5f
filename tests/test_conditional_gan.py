"""Class-conditional GANs: adversarial losses as components, conditional generators and
critics, the cgan / acgan / tacgan objectives, the overlap1d data, and the command line."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from scipy import stats

from genlab import registry
from genlab.build import validate
from genlab.capabilities import CapabilityError
from genlab.config import from_dict
from genlab.data.base import Batch, DataSpec
from genlab.data.synthetic import overlap1d
from genlab.experiments import simple_fit
from genlab.models.gan import ConditionalConvGenerator, ConditionalMLPGenerator
from genlab.nets.conditional import ConditionalCritic
from genlab.objectives.adversarial import AdversarialObjective
from genlab.objectives.conditional import ConditionalCriticObjective
from genlab.objectives.gan_losses import ADVERSARIAL_LOSSES, AdversarialLoss

POINTS = DataSpec(name="two", kind="points", event_shape=(2,), classes=2)
IMAGES = DataSpec(name="img", kind="image", event_shape=(1, 8, 8), levels=17, shift=8, scale=8, classes=3)
SMALL = {"critic": {"hidden": 32, "depth": 2}, "features": 16}
OBJECTIVES = {
    "cgan-projection": ("cgan", SMALL), "cgan-concat": ("cgan", {"conditioning": "concat", **SMALL}),
    "cgan-sn-gp": ("cgan", {"loss": "nsgan", "spectral_norm": True, "penalty": [{"name": "gp", "weight": 1}],
                            **SMALL}),
    "acgan": ("acgan", SMALL), "acgan-projection-hinge": ("acgan", {"conditioning": "projection", "loss": "hinge",
                                                                    **SMALL}),
    "tacgan": ("tacgan", SMALL), "tacgan-wgan-gp": ("tacgan", {"loss": "wgan", "penalty": [{"name": "gp"}],
                                                               "classify_fake": False, **SMALL}),
    "tacgan-lsgan-uniform": ("tacgan", {"loss": "lsgan", "fake_labels": "uniform", **SMALL}),
}


def build(name: str, spec: DataSpec = POINTS):
    reg, kw = OBJECTIVES[name]
    torch.manual_seed(0)
    model = ConditionalMLPGenerator(data_spec=spec, latent_dim=2, hidden=32, depth=2)
    obj = registry.OBJECTIVES[reg](**kw)
    obj.setup(model, spec)
    return model, obj


def labelled_batch(n: int = 16, classes: int = 2, dim: int = 2) -> Batch:
    g = torch.Generator().manual_seed(0)
    return Batch(torch.randn(n, dim, generator=g), torch.arange(n) % classes)


# --- design: abstract or final; loss components ----------------------------------------

def test_registered_objectives_are_leaves_and_bases_are_abstract():
    classes = set(registry.OBJECTIVES.values())
    for a in classes:
        for b in classes:
            assert a is b or not issubclass(a, b), f"{a.__name__} subclasses the concrete {b.__name__}"
    for base in (AdversarialObjective, ConditionalCriticObjective):
        assert inspect.isabstract(base)
    assert registry.OBJECTIVES["nsgan"].__mro__[1] is AdversarialObjective
    assert registry.OBJECTIVES["wgan-gp"].__mro__[1] is AdversarialObjective


def test_loss_components_registry_and_closed_forms():
    assert list(ADVERSARIAL_LOSSES) == ["gan", "nsgan", "hinge", "lsgan", "wgan"]
    d_real, d_fake = torch.tensor([0.0, 2.0]), torch.tensor([0.0, -1.0])
    log2 = math.log(2)
    expected = {  # (critic, generator) at these outputs, by hand
        "gan": (log2 + (math.log1p(math.exp(-2)) + math.log1p(math.exp(-1))) / 2,
                -(log2 + math.log1p(math.exp(-1))) / 2),
        "nsgan": (log2 + (math.log1p(math.exp(-2)) + math.log1p(math.exp(-1))) / 2,
                  (log2 + math.log1p(math.exp(1))) / 2),
        "hinge": ((1 + 0) / 2 + (1 + 0) / 2, 0.5),
        "lsgan": (0.5 * (1 + 1) / 2 + 0.5 * (0 + 1) / 2, 0.5 * (1 + 4) / 2),
        "wgan": (-0.5 - 1.0, 0.5),
    }
    for name, cls in ADVERSARIAL_LOSSES.items():
        loss = cls()
        assert isinstance(loss, AdversarialLoss) and not loss.uses_real_in_generator
        c, g = expected[name]
        assert float(loss.critic_loss(d_real, d_fake)) == pytest.approx(c, abs=1e-6), name
        assert float(loss.generator_loss(d_fake, None)) == pytest.approx(g, abs=1e-6), name
    assert float(ADVERSARIAL_LOSSES["wgan"]().estimate(d_real, d_fake)) == pytest.approx(1.5)
    assert ADVERSARIAL_LOSSES["hinge"]().estimate(d_real, d_fake) is None


def test_objective_delegates_to_its_component():
    obj = registry.OBJECTIVES["lsgan"](a=-1.0, b=1.0, c=0.0)
    assert (obj.adversarial.a, obj.adversarial.b, obj.adversarial.c) == (-1.0, 1.0, 0.0)
    d = torch.tensor([0.5, -0.5])
    assert torch.equal(obj.critic_loss(d, d), obj.adversarial.critic_loss(d, d))
    assert registry.OBJECTIVES["wgan"]().clip == 0.01 and registry.OBJECTIVES["wgan-gp"]().clip is None


# --- conditional generators ------------------------------------------------------------

@pytest.mark.parametrize("cls,spec", [(ConditionalMLPGenerator, POINTS), (ConditionalConvGenerator, IMAGES)])
def test_conditional_generator_shapes_gradients_and_context(cls, spec):
    torch.manual_seed(0)
    kw = {"width": 8, "latent_dim": 4} if cls is ConditionalConvGenerator else {"hidden": 16, "depth": 2}
    model = cls(data_spec=spec, **kw)
    assert model.conditional and model.num_classes == spec.classes
    y = torch.arange(6) % spec.classes
    x = model.rsample(6, context=y, generator=torch.Generator().manual_seed(0))
    assert x.shape == (6, *spec.event_shape)
    x.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    z = torch.randn(6, *model.latent_shape)
    a, b = model.decode(z, context=torch.zeros(6, dtype=torch.long)), model.decode(z, context=torch.ones(6).long())
    assert not torch.allclose(a, b)  # the label changes the sample
    assert model.sample((2, 3), context=y).shape == (2, 3, *spec.event_shape)
    with pytest.raises(ValueError, match="is conditional: pass context"):
        model.sample(4)
    with pytest.raises(ValueError, match=r"context must be \(4,\) integer labels"):
        model.sample(4, context=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="context labels must be in"):
        model.sample(2, context=torch.tensor([0, spec.classes]))


def test_conditional_generators_need_labelled_data():
    unlabelled = DataSpec(name="ring8", kind="points", event_shape=(2,))
    msg = r"cond_mlp_generator needs labelled data \(data_spec.classes\); ring8 has none"
    with pytest.raises(ValueError, match=msg):
        ConditionalMLPGenerator(data_spec=unlabelled)
    with pytest.raises(ValueError, match="cond_conv_generator needs labelled data"):
        ConditionalConvGenerator(data_spec=DataSpec(name="im", kind="image", event_shape=(1, 8, 8)))
    with pytest.raises(ValueError, match="needs image data"):
        ConditionalConvGenerator(data_spec=POINTS)


# --- conditional critic net --------------------------------------------------------------

@pytest.mark.parametrize("conditioning", ["none", "projection", "concat"])
@pytest.mark.parametrize("shape", [(2,), (1, 8, 8)])
def test_conditional_critic_shapes_gradients_and_label_use(conditioning, shape):
    torch.manual_seed(0)
    body = {"hidden": 16, "depth": 2} if len(shape) == 1 else {"width": 8}
    net = ConditionalCritic(body=body, in_shape=shape, classes=3, conditioning=conditioning, features=8, heads=(3,))
    x, y = torch.randn(5, *shape), torch.tensor([0, 1, 2, 0, 1])
    score, (logits,) = net(x, y)
    assert score.shape == (5,) and logits.shape == (5, 3)
    (score.sum() + logits.sum()).backward()
    assert all(p.grad is not None for p in net.parameters())
    other = net(x, (y + 1) % 3)[0]
    assert torch.allclose(score, other) == (conditioning == "none")
    if conditioning != "none":
        with pytest.raises(ValueError, match=f"conditioned by {conditioning}: pass labels"):
            net(x)
    with pytest.raises(ValueError, match="unknown conditioning"):
        ConditionalCritic(body=body, in_shape=shape, classes=3, conditioning="film")


def test_projection_critic_is_psi_plus_inner_product():
    torch.manual_seed(0)
    net = ConditionalCritic(body={"hidden": 8, "depth": 1}, in_shape=(2,), classes=4, conditioning="projection",
                            features=6)
    x, y = torch.randn(7, 2), torch.tensor([0, 1, 2, 3, 3, 2, 1])
    phi = net.features(x)
    expected = phi @ net.psi.weight[0] + net.psi.bias[0] + (net.embed.weight[y] * phi).sum(1)
    assert torch.allclose(net(x, y)[0], expected, atol=1e-6)


# --- the objectives: contracts -------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_losses_are_finite_and_reach_exactly_their_players_parameters(name):
    model, obj = build(name)
    assert obj.conditional is True
    params = obj.player_parameters(model)
    assert set(params) == set(obj.players) == ({"generator", "critic", "twin"} if "tacgan" in name
                                               else {"generator", "critic"})
    batch = labelled_batch()
    everything = list(model.parameters()) + list(obj.parameters())
    for player in obj.players:
        for p in everything:
            p.grad = None
        out = obj.loss(player, model, batch, step=0, generator=torch.Generator().manual_seed(1))
        assert out.loss.dim() == 0 and torch.isfinite(out.loss)
        assert all(math.isfinite(v) for v in out.logs.values())
        out.loss.backward()
        assert all(p.grad is not None for p in params[player]), f"{player} misses some of its parameters"
        if player != "generator":  # helper players never touch the model's weights
            assert all(p.grad is None for p in model.parameters())


def test_tacgan_generator_subtracts_the_twin_cross_entropy():
    model, obj = build("tacgan")
    batch, g = labelled_batch(), lambda: torch.Generator().manual_seed(3)
    out = obj.loss("generator", model, batch, generator=g())
    logs = out.logs
    assert out.loss.item() == pytest.approx(logs["adversarial"] + logs["ce"] - logs["ce_twin"], abs=1e-5)
    fake = model.rsample(len(batch), context=batch.y, generator=g())  # fake_labels: data reuses batch.y
    ce = torch.nn.functional.cross_entropy(obj.twin(fake), batch.y)
    assert logs["ce_twin"] == pytest.approx(ce.item(), abs=1e-5)


def test_labels_are_required_and_must_all_be_known():
    model, obj = build("acgan")
    x = torch.randn(8, 2)
    with pytest.raises(ValueError, match="trains on class labels; the batch has none"):
        obj.loss("critic", model, Batch(x))
    known = torch.tensor([True] * 7 + [False])
    with pytest.raises(ValueError, match="semi-supervised batches"):
        obj.loss("critic", model, Batch(x, torch.where(known, 1, -1), known))
    with pytest.raises(ValueError, match="needs labelled data"):
        registry.OBJECTIVES["tacgan"]().setup(None, DataSpec(name="ring8", kind="points", event_shape=(2,)))


def test_bad_options_fail_with_clear_messages():
    with pytest.raises(ValueError, match="unknown adversarial loss 'ns'"):
        registry.OBJECTIVES["acgan"](loss="ns")
    with pytest.raises(ValueError, match="cgan needs a label-conditioned critic"):
        registry.OBJECTIVES["cgan"](conditioning="none")
    with pytest.raises(ValueError, match="the classifier must not see the label"):
        registry.OBJECTIVES["tacgan"](conditioning="concat")
    with pytest.raises(ValueError, match="fake_labels: data"):
        registry.OBJECTIVES["cgan"](fake_labels="uniform", penalty=[{"name": "gp", "weight": 1}])


# --- capability checks before training ---------------------------------------------------------

def test_conditional_pairings_are_checked_by_validate():
    def cfg(model, objective, data="moons"):
        return from_dict({"data": {"name": data}, "model": {"name": model}, "objective": {"name": objective}})

    with pytest.raises(CapabilityError, match="is conditional .* cond_mlp_generator or cond_conv_generator"):
        validate(cfg("mlp_generator", "acgan"))
    with pytest.raises(CapabilityError, match="Use a conditional objective such as acgan, tacgan or cgan"):
        validate(cfg("cond_mlp_generator", "nsgan"))
    for obj in ("cgan", "acgan", "tacgan"):
        validate(cfg("cond_mlp_generator", obj))
    validate(cfg("cond_conv_generator", "tacgan", data="digits"))


# --- learning ------------------------------------------------------------------------------

MEANS = torch.tensor([[-2.0, 0.0], [2.0, 1.0]])


def two_gaussians(n: int, g: torch.Generator) -> Batch:
    y = torch.randint(2, (n,), generator=g)
    return Batch(MEANS[y] + 0.3 * torch.randn(n, 2, generator=g), y)


@pytest.mark.parametrize("name", ["cgan-projection", "acgan", "tacgan"])
def test_class_conditional_samples_land_near_their_class(name):
    """Two well-separated labelled Gaussians: the mean of G(z, k), averaged over the last 30% of
    300 rounds (GAN iterates oscillate; the engine's EMA does the same), is within 0.25 of
    class k's mean (the classes are 4.1 apart)."""
    model, obj = build(name)
    steps, tail = 300, []

    def keep(step: int) -> None:
        if step >= 0.7 * steps:
            tail.append(torch.stack([model.sample(256, context=torch.full((256,), k),
                                                  generator=torch.Generator().manual_seed(k)).mean(0)
                                     for k in range(2)]))

    simple_fit(model, obj, two_gaussians, steps=steps, lr=2e-3, batch_size=128, seed=0, callback=keep,
               schedule={"critic": 2, "twin": 2} if "tacgan" in name else {"critic": 2})
    avg = torch.stack(tail).mean(0)
    for k in range(2):
        assert float((avg[k] - MEANS[k]).norm()) < 0.25, (name, k, avg[k])


# --- overlap1d data and the experiment's distances ---------------------------------------------

def test_overlap1d_is_the_tac_gan_simulation_with_exact_class_densities():
    data = overlap1d(n_train=30000, n_test=100, seed=0)
    assert data.spec.classes == 3 and data.spec.event_shape == (1,)
    for k, (mu, sd) in enumerate([(0, 1), (3, 2), (6, 3)]):
        x = data.train[data.train_y == k]
        assert float(x.mean()) == pytest.approx(mu, abs=0.1) and float(x.std()) == pytest.approx(sd, rel=0.03)
        t = torch.linspace(-8, 16, 7)[:, None]
        assert torch.allclose(data.class_log_prob(t, k).double(),
                              torch.from_numpy(stats.norm(mu, sd).logpdf(t.numpy()[:, 0])), atol=1e-5)
        assert torch.allclose(data.class_cdf(t[:, 0], k), torch.from_numpy(stats.norm(mu, sd).cdf(t.numpy()[:, 0])),
                              atol=1e-10)
    grid = torch.linspace(-15, 25, 20001)[:, None]
    assert float(torch.trapezoid(data.log_prob(grid).double().exp(), grid[:, 0].double())) == pytest.approx(1, abs=1e-5)
    assert len(data.class_sample(10, 2)) == 10


def test_w1_to_truth_matches_a_shift():
    from genlab.experiments.tac_gan import w1_to_truth

    data = overlap1d(n_train=10, n_test=10)
    g = torch.Generator().manual_seed(0)
    exact = data.class_sample(20000, 1, g)
    assert w1_to_truth(exact, data, 1) < 0.05
    assert w1_to_truth(exact + 0.7, data, 1) == pytest.approx(0.7, abs=0.05)  # W1 of a shift is the shift


# --- end to end -------------------------------------------------------------------------------

@pytest.mark.parametrize("objective", ["tacgan", "cgan"])
def test_fit_then_sample_one_class_from_the_command_line(tmp_path, objective):
    from genlab.cli.main import main
    from genlab.train import fit

    cfg = from_dict({"data": {"name": "overlap1d", "n_train": 512, "n_test": 256},
                     "model": {"name": "cond_mlp_generator", "hidden": 16, "depth": 1},
                     "objective": {"name": objective, "critic": {"hidden": 16, "depth": 1}, "features": 8},
                     "train": {"steps": 4, "batch_size": 32, "progress": False, "cpu": True, "log_every": 2}})
    run = tmp_path / "run"
    fit(cfg, run)
    out = tmp_path / "c1.npy"
    assert main(["sample", str(run), "--class", "1", "--n", "50", "--out", str(out)]) == 0
    x, labels = np.load(out), np.load(tmp_path / "c1-labels.npy")
    assert x.shape == (50, 1) and np.isfinite(x).all() and (labels == 1).all()
    assert main(["sample", str(run), "--class", "3", "--n", "5", "--out", str(out)]) == 2  # 3 classes: 0..2


@pytest.mark.slow
def test_tac_gan_bench_quick(tmp_path):
    from genlab.experiments import tac_gan

    res = tac_gan.run(out=tmp_path, quick=True, progress=False)
    assert (tmp_path / "tac_gan.png").stat().st_size > 0 and "| TAC-GAN | mean |" in res["text"]
    assert np.mean(res["methods"]["TAC-GAN"]["w1"]) < np.mean(res["methods"]["AC-GAN"]["w1"])


@pytest.mark.slow
def test_digits_tacgan_recipe_draws_the_asked_class(tmp_path):
    """digits-tacgan (about 2.5 min on one thread): `genlab sample RUN --class 3` gives digits the
    digits classifier labels 3 at least 90% of the time."""
    from genlab.cli.main import main
    from genlab.metrics.features import DIGITS_LEVELS_MAX, digits_net

    run, out = tmp_path / "run", tmp_path / "x.npy"
    assert main(["train", "digits-tacgan", "--out", str(run), "--set", "train.progress=false"]) == 0
    assert main(["sample", str(run), "--class", "3", "--n", "1000", "--out", str(out)]) == 0
    net, _ = digits_net()
    with torch.no_grad():
        pred = net(torch.from_numpy(np.load(out)).float() / DIGITS_LEVELS_MAX).argmax(1)
    assert float((pred == 3).double().mean()) >= 0.9
