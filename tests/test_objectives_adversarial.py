"""Adversarial objective family: contracts, penalty mathematics, f-GAN conjugates,
divergence estimates of trained critics against closed forms, and toy learning."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize, stats

from genlab import registry
from genlab.build import validate
from genlab.config import ConfigError, from_dict
from genlab.data.base import Batch, DataSpec
from genlab.experiments import simple_fit
from genlab.models.gan import ConvGenerator, MLPGenerator
from genlab.objectives.adversarial import CriticObjective, apply_spectral_norm
from genlab.objectives.fgan import DIVERGENCES
from genlab.objectives.mmd import mmd2_unbiased
from genlab.objectives.packing import pack, packed_shape
from genlab.objectives.penalties import Penalty

POINTS2 = DataSpec(name="p2", kind="points", event_shape=(2,))
LINE = DataSpec(name="p1", kind="points", event_shape=(1,))
SMALL = {"critic": {"hidden": 32, "depth": 2}}

# every registered objective with a small configuration: (registry name, kwargs)
CONFIGS = {
    "gan": ("gan", SMALL), "nsgan": ("nsgan", SMALL),
    **{f"fgan-{d}": ("fgan", {"divergence": d, **SMALL}) for d in DIVERGENCES},
    "lsgan": ("lsgan", SMALL), "hinge": ("hinge", SMALL), "wgan": ("wgan", {"clip": 0.05, **SMALL}),
    "wgan-gp": ("wgan-gp", SMALL), "cramer": ("cramer", {"features": 8, **SMALL}),
    "gmmn": ("gmmn", {"sigmas": [0.1, 0.3, 1.0, 3.0]}), "mmd-gan": ("mmd-gan", {"features": 8, **SMALL}),
    **{f"ratio-{b}": ("ratio", {"bregman": b, **SMALL}) for b in ("lsif", "kliep", "logistic")},
}


def build(name: str, spec: DataSpec = POINTS2, **extra):
    reg, kw = CONFIGS[name]
    torch.manual_seed(0)
    model = MLPGenerator(data_spec=spec, latent_dim=spec.dim, hidden=32, depth=2)
    obj = registry.OBJECTIVES[reg](**{**kw, **extra})
    obj.setup(model, spec)
    return model, obj


# --- contracts ----------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_losses_are_finite_and_reach_the_right_parameters(name):
    model, obj = build(name)
    params = obj.player_parameters(model)
    assert set(params) == set(obj.players)
    x = torch.randn(16, 2)
    for player in obj.players:
        for p in list(model.parameters()) + list(obj.parameters()):
            p.grad = None
        out = obj.loss(player, model, Batch(x), step=0, generator=torch.Generator().manual_seed(1))
        assert out.loss.dim() == 0 and torch.isfinite(out.loss)
        assert all(math.isfinite(v) for v in out.logs.values())
        out.loss.backward()
        own = params[player]
        assert own and all(p.grad is not None for p in own), f"{player} gradients miss some of its parameters"
        if player == "critic":  # the critic step never touches the model's weights
            assert all(p.grad is None for p in model.parameters())


def test_every_registered_objective_is_covered_and_validates_from_a_config():
    covered = {reg for reg, _ in CONFIGS.values()}
    mine = {n for n, c in registry.OBJECTIVES.items()  # conditional ones: tests/test_conditional_gan.py
            if (issubclass(c, CriticObjective) and not c.conditional) or n == "gmmn"}
    assert mine <= covered
    for name, (reg, kw) in CONFIGS.items():
        cfg = from_dict({"data": {"name": "ring8"}, "model": {"name": "mlp_generator"},
                         "objective": {"name": reg, **kw, **({} if reg == "gmmn" else {"pack": 2})}})
        validate(cfg)


def test_bad_options_fail_with_a_clear_message():
    with pytest.raises(ValueError, match="unknown penalty 'gpp'"):
        registry.OBJECTIVES["nsgan"](penalty=[{"name": "gpp", "weight": 1}])
    with pytest.raises(ValueError, match="valid keys"):
        registry.OBJECTIVES["nsgan"](penalty=[{"name": "r1", "weight": 1, "target": 2}])
    with pytest.raises(ValueError, match="unknown f-divergence"):
        registry.OBJECTIVES["fgan"](divergence="chi")
    cfg = from_dict({"data": {"name": "ring8"}, "model": {"name": "mlp_generator"},
                     "objective": {"name": "gmmn"}, "train": {"schedule": {"critic": 5}}})
    with pytest.raises(ConfigError, match="unknown player 'critic'"):
        validate(cfg)
    _, obj = build("nsgan", pack=4)
    with pytest.raises(ValueError, match="batch of at least 4"):
        obj.critic_fn(torch.randn(3, 2))


def test_conv_generator_and_conv_critic_with_packing_and_spectral_norm():
    spec = DataSpec(name="img", kind="image", event_shape=(1, 8, 8), levels=17, shift=8, scale=8)
    torch.manual_seed(0)
    model = ConvGenerator(data_spec=spec, latent_dim=4, width=8)
    obj = registry.OBJECTIVES["wgan-gp"](critic={"width": 8}, pack=2, spectral_norm=True)
    obj.setup(model, spec)
    assert obj.critic.net[0].parametrizations.weight.original.shape[1] == 2  # 2 packed channels
    for player in obj.players:
        out = obj.loss(player, model, Batch(torch.rand(6, 1, 8, 8) * 2 - 1), step=0, generator=None)
        out.loss.backward()
        assert torch.isfinite(out.loss)


# --- packing, penalties, spectral norm, clipping -------------------------------------------

def test_packing_concatenates_consecutive_samples():
    x = torch.arange(14.0).reshape(7, 2)
    p = pack(x, 3)
    assert p.shape == (2, 6) and packed_shape((2,), 3) == (6,)
    assert torch.equal(p[1], torch.cat([x[3], x[4], x[5]]))
    img = torch.randn(4, 3, 8, 8)
    q = pack(img, 2)
    assert q.shape == (2, 6, 8, 8) and torch.equal(q[1, 3:], img[3])


def linear_critic(w: torch.Tensor):
    return lambda x: x.flatten(1) @ w


def test_penalties_on_a_linear_critic_match_closed_forms():
    w = torch.tensor([0.6, 0.3], dtype=torch.float64)  # ||w|| = 0.6708
    real, fake = torch.randn(64, 2, dtype=torch.float64), torch.randn(64, 2, dtype=torch.float64) + 3
    g = torch.Generator().manual_seed(0)
    n = float(w.norm())
    for name, expected in (("gp", (n - 1) ** 2), ("gp-one-sided", 0.0), ("dragan", (n - 1) ** 2),
                           ("r1", n ** 2), ("r2", n ** 2)):
        v = Penalty({"name": name, "weight": 2.0})(linear_critic(w), real, fake, g)
        assert float(v) == pytest.approx(2 * expected, abs=1e-12), name
    v = Penalty({"name": "gp-one-sided", "weight": 1.0})(linear_critic(3 * w), real, fake, g)
    assert float(v) == pytest.approx((3 * n - 1) ** 2, abs=1e-12)


def test_lazy_penalty_runs_every_k_critic_steps_with_k_times_the_weight():
    model, obj = build("nsgan", penalty=[{"name": "r1", "weight": 0.5, "every": 3}])
    _, eager = build("nsgan", penalty=[{"name": "r1", "weight": 0.5}])
    eager.load_state_dict({k: v for k, v in obj.state_dict().items() if k != "penalty_step"})
    real, fake = torch.randn(16, 2), torch.randn(16, 2)
    fn = obj.critic_net
    totals = [obj.penalty_terms(fn, real, fake, None)[0].item() for _ in range(7)]
    r1 = eager.penalty_terms(eager.critic_net, real, fake, None)[0].item()
    assert r1 > 0
    assert totals == pytest.approx([3 * r1, 0, 0, 3 * r1, 0, 0, 3 * r1], rel=1e-6)
    assert int(obj.penalty_step) == 7
    assert "penalty_step" not in eager.state_dict()  # eager penalties keep the old checkpoint layout
    with pytest.raises(ValueError, match="'every' must be a whole number >= 1"):
        Penalty({"name": "r1", "every": 0})


def test_gradient_penalty_uses_points_between_data_and_samples():
    # f(x) = ||x||^2 / 2 has gradient x; with real = 0 and fake = c, x_hat = (1 - a) c, a ~ U(0, 1)
    real, fake = torch.zeros(20000, 2, dtype=torch.float64), torch.full((20000, 2), 1.0, dtype=torch.float64)
    f = lambda x: 0.5 * (x ** 2).sum(1)  # noqa: E731
    v = Penalty({"name": "gp", "weight": 1.0, "target": 0.0})(f, real, fake, torch.Generator().manual_seed(0))
    assert float(v.detach()) == pytest.approx(2 / 3, rel=0.02)  # E[(1-a)^2] * ||c||^2 = 1/3 * 2
    r1 = Penalty({"name": "r1"})(f, fake, real, None)  # gradient at data = c
    assert float(r1.detach()) == pytest.approx(2.0)


def test_spectral_norm_makes_each_layer_1_lipschitz():
    torch.manual_seed(0)
    net = apply_spectral_norm(torch.nn.Sequential(torch.nn.Linear(5, 30), torch.nn.ReLU(), torch.nn.Linear(30, 1)))
    for _ in range(30):
        net(torch.randn(8, 5))
    for layer in (net[0], net[2]):
        assert torch.linalg.matrix_norm(layer.weight, ord=2).item() == pytest.approx(1.0, abs=0.02)


def test_weight_clipping_after_critic_step_only():
    model, obj = build("wgan")
    with torch.no_grad():
        for p in obj.critic.parameters():
            p.fill_(1.0)
    obj.after_step("generator")
    assert all(bool((p == 1).all()) for p in obj.critic.parameters())
    obj.after_step("critic")
    assert all(float(p.detach().abs().max()) <= 0.05 + 1e-7 for p in obj.critic.parameters())
    assert any(float(p.detach().abs().max()) > 0.049 for p in obj.critic.parameters())


# --- f-GAN conjugates ----------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(DIVERGENCES))
def test_fgan_conjugate_is_the_fenchel_conjugate_of_f(name):
    div = DIVERGENCES[name]
    f = lambda u: float(div.f(torch.tensor(u, dtype=torch.float64)))  # noqa: E731
    for v in (-1.5, -0.4, 0.0, 0.3, 1.2):
        vt = torch.tensor(v, dtype=torch.float64)
        t = float(div.activation(vt))
        assert float(div.conjugate_of_activation(vt)) == pytest.approx(float(div.conjugate(torch.tensor(t))),
                                                                       rel=1e-6, abs=1e-9)
        res = optimize.minimize_scalar(lambda u: f(u) - u * t, bounds=(1e-9, 60.0), method="bounded",
                                       options={"xatol": 1e-10})
        assert -res.fun == pytest.approx(float(div.conjugate(torch.tensor(t, dtype=torch.float64))), abs=1e-5)


# --- trained critics estimate divergences with known values --------------------------------

F_REFERENCE = {  # f(u) for D_f(P || Q) = E_Q f(p / q), written independently of fgan.py
    "kl": lambda u: u * np.log(u), "reverse_kl": lambda u: -np.log(u), "pearson": lambda u: (u - 1) ** 2,
    "neyman": lambda u: (1 - u) ** 2 / u, "hellinger": lambda u: (np.sqrt(u) - 1) ** 2,
    "js": lambda u: -(u + 1) * np.log((1 + u) / 2) + u * np.log(u), "tv": lambda u: 0.5 * np.abs(u - 1),
    "gan": lambda u: u * np.log(u) - (u + 1) * np.log(u + 1),
    "lsif": lambda u: 0.5 * (u - 1) ** 2, "kliep": lambda u: u * np.log(u) - u + 1,
}


def f_divergence(f, delta: float) -> float:
    """``E_Q f(p/q)`` for ``P = N(0, 1)``, ``Q = N(delta, 1)`` by quadrature."""
    p, q = stats.norm(0, 1).pdf, stats.norm(delta, 1).pdf
    return integrate.quad(lambda x: q(x) * f(p(x) / q(x)), -12, 12 + delta, limit=200)[0]


def trained_estimate(reg: str, kw: dict, delta: float, steps: int = 250) -> float:
    """Train only the critic between N(0, 1) (data) and N(delta, 1) (samples), then read its
    estimate on 100k fresh samples of each."""
    torch.manual_seed(0)
    obj = registry.OBJECTIVES[reg](critic={"hidden": 32, "depth": 2}, **kw)
    obj.setup(None, LINE)
    opt = torch.optim.Adam(obj.critic.parameters(), lr=3e-3, betas=(0.5, 0.999))
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        out = obj.critic_step(torch.randn(512, 1, generator=g), delta + torch.randn(512, 1, generator=g), g)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    return obj.divergence_estimate(torch.randn(100000, 1, generator=g), delta + torch.randn(100000, 1, generator=g))


ESTIMATES = [("fgan", {"divergence": d}, d, 0.5 if d in ("pearson", "neyman") else 1.0) for d in DIVERGENCES] + [
    ("ratio", {"bregman": "lsif"}, "lsif", 0.5), ("ratio", {"bregman": "kliep"}, "kliep", 1.0),
    ("ratio", {"bregman": "logistic"}, "gan", 1.0), ("gan", {}, "gan", 1.0)]


@pytest.mark.parametrize("reg,kw,ref,delta", ESTIMATES, ids=[f"{r}-{k}" for r, _, k, _ in ESTIMATES])
def test_trained_critic_estimates_the_divergence(reg, kw, ref, delta):
    """E.g. KL(N(0,1) || N(1,1)) = 0.5; tolerance 5% + 0.02 (the bound is tight at the optimal critic)."""
    truth = f_divergence(F_REFERENCE[ref], delta)
    if ref == "kl":
        assert truth == pytest.approx(0.5, abs=1e-6)
    assert trained_estimate(reg, kw, delta) == pytest.approx(truth, abs=0.05 * abs(truth) + 0.02)


def test_wgan_gp_critic_estimates_w1():
    """W1(N(0,1), N(1,1)) = 1; the penalised critic's slope is slightly above 1."""
    assert trained_estimate("wgan-gp", {}, 1.0) == pytest.approx(1.0, abs=0.06)


def rbf_expectation(mu: float, var: float, sigma: float) -> float:
    """``E exp(-d^2 / (2 sigma^2))`` for ``d ~ N(mu, var)``."""
    return sigma / math.sqrt(sigma ** 2 + var) * math.exp(-mu ** 2 / (2 * (sigma ** 2 + var)))


def test_rbf_kernel_floor_keeps_near_values_exact_and_far_values_normal():
    from genlab.objectives.mmd import EXP_FLOOR, rbf_mixture
    x = torch.tensor([[0.0, 0.0], [0.3, 0.0], [100.0, 0.0]])
    k = rbf_mixture(x, x, [0.5, 1.0])
    d2 = torch.cdist(x, x) ** 2
    exact = torch.exp(-d2 / 0.5) + torch.exp(-d2 / 2)
    assert torch.allclose(k[:2, :2], exact[:2, :2], rtol=1e-6)
    # 100 bandwidths apart: exact values underflow to 0 or denormals; floored ones stay normal floats
    far = k[0, 2]
    assert float(far) == pytest.approx(2 * math.exp(EXP_FLOOR), rel=1e-5)
    assert float(far) > torch.finfo(torch.float32).tiny
    xg = x.clone().requires_grad_(True)
    rbf_mixture(xg, x, [0.5])[0, 2].backward()
    assert float(xg.grad.abs().sum()) == 0.0  # no gradient through the floor


def test_unbiased_mmd_matches_the_gaussian_closed_form():
    sigmas = [0.5, 1.0, 2.0]
    truth = sum(2 * rbf_expectation(0, 2, s) - 2 * rbf_expectation(1, 2, s) for s in sigmas)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4000, 1, generator=g, dtype=torch.float64), 1 + torch.randn(4000, 1, generator=g, dtype=torch.float64)
    assert float(mmd2_unbiased(x, y, sigmas)) == pytest.approx(truth, rel=0.05)
    small = [float(mmd2_unbiased(torch.randn(5, 1, generator=g), 1 + torch.randn(5, 1, generator=g), sigmas))
             for _ in range(1500)]  # unbiased even at 5 samples
    assert np.mean(small) == pytest.approx(truth, abs=4 * np.std(small) / math.sqrt(len(small)))
    _, gmmn = build("gmmn")
    assert gmmn.divergence_estimate(x.float(), x.float()) == pytest.approx(0.0, abs=2e-3)


def test_cramer_energy_distance_with_identity_features():
    """With ``h(x) = x`` the estimate is the energy distance ``2E|X-Y| - E|X-X'| - E|Y-Y'|``."""
    obj = registry.OBJECTIVES["cramer"](features=1, critic={"hidden": 4, "depth": 0})
    obj.setup(None, LINE)
    with torch.no_grad():
        obj.critic.net[0].weight.fill_(1.0)
        obj.critic.net[0].bias.zero_()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(200000, 1, generator=g), 1 + torch.randn(200000, 1, generator=g)
    e_abs = lambda mu, s: s * math.sqrt(2 / math.pi) * math.exp(-mu ** 2 / (2 * s ** 2)) + mu * (1 - 2 * stats.norm.cdf(-mu / s))  # noqa: E731
    truth = 2 * e_abs(1, math.sqrt(2)) - 2 * e_abs(0, math.sqrt(2))
    assert obj.divergence_estimate(x, y) == pytest.approx(truth, abs=0.01)
    assert truth == pytest.approx(stats.energy_distance(x[:5000, 0].numpy(), y[:5000, 0].numpy()) ** 2, rel=0.15)


# --- every objective learns a 2-D Gaussian ---------------------------------------------------

def _affine_model():
    """``x = loc + scale * z``: any ReparameterizedModel works with no glue code."""
    from genlab.models.base import ReparameterizedModel

    class Affine(ReparameterizedModel):
        def __init__(self):
            super().__init__()
            self.event_shape = torch.Size((2,))
            self.loc = torch.nn.Parameter(torch.zeros(2))
            self.log_scale = torch.nn.Parameter(torch.full((2,), math.log(0.1)))

        def _rsample(self, n, *, context, generator):
            return self.loc + self.log_scale.exp() * torch.randn(n, 2, generator=generator)

    return Affine()


TARGET_LOC = torch.tensor([1.5, -1.0])
SLOW_LEARN = {"mmd-gan", "cramer"}  # > 1 s each
UNRELIABLE = {"ratio-lsif": "LSIF ratio matching lands 0.3 off the mean for 2 of 3 seeds (the estimator "
                            "itself is tested above); not yet made reliable"}


def _learn_param(n: str):
    if n in UNRELIABLE:
        return pytest.param(n, marks=pytest.mark.xfail(reason=UNRELIABLE[n], strict=False))
    return pytest.param(n, marks=pytest.mark.slow) if n in SLOW_LEARN else n


@pytest.mark.parametrize("name", [_learn_param(n) for n in sorted(CONFIGS)])
def test_objective_learns_a_gaussian(name):
    """From ``N(0, 0.1^2 I)`` to ``N((1.5, -1), 0.5^2 I)``: location within 0.25 and each scale
    in [0.3, 0.8] (averaged over the last 20% of 500 rounds; WGAN-GP: 300 rounds of 5 critic
    steps, its usual schedule)."""
    reg, kw = CONFIGS[name]
    torch.manual_seed(0)
    model = _affine_model()
    obj = registry.OBJECTIVES[reg](**kw)
    obj.setup(model, POINTS2)
    steps, sched = (300, {"critic": 5}) if name == "wgan-gp" else (600, {})
    tail: list[torch.Tensor] = []  # average the last 20% of iterates (as EMA does in the engine)

    def keep(step: int) -> None:
        if step >= 0.7 * steps:
            tail.append(torch.cat([model.loc.detach(), model.log_scale.detach().exp()]))

    simple_fit(model, obj, lambda n, g: TARGET_LOC + 0.5 * torch.randn(n, 2, generator=g), steps=steps,
               lr={"generator": 1e-2, "critic": 5e-3}, betas=(0.5, 0.9), schedule=sched, batch_size=128,
               decay=False, seed=0, callback=keep)
    avg = torch.stack(tail).mean(0)
    loc, scale = avg[:2], avg[2:]
    assert float((loc - TARGET_LOC).norm()) < 0.25, (loc, scale)
    assert bool(((scale > 0.3) & (scale < 0.8)).all()), (loc, scale)


def test_mlp_generator_learns_with_the_engine_loop_shape():
    """An MLP generator (the registry's) learns the same target with NS-GAN + packing + R1."""
    torch.manual_seed(0)
    model = MLPGenerator(data_spec=POINTS2, latent_dim=2, hidden=32, depth=2)
    obj = registry.OBJECTIVES["nsgan"](critic={"hidden": 32, "depth": 2}, pack=2,
                                       penalty=[{"name": "r1", "weight": 0.1}])
    obj.setup(model, POINTS2)
    simple_fit(model, obj, lambda n, g: TARGET_LOC + 0.5 * torch.randn(n, 2, generator=g), steps=500,
               lr={"generator": 1e-3, "critic": 2e-3}, betas=(0.5, 0.9), batch_size=128, decay=True, seed=0)
    s = model.sample(4000, generator=torch.Generator().manual_seed(1))
    assert float((s.mean(0) - TARGET_LOC).norm()) < 0.25
    assert bool(((s.std(0) > 0.3) & (s.std(0) < 0.8)).all()), s.std(0)


@pytest.mark.parametrize("objective", [
    {"name": "wgan", "clip": 0.05, "pack": 2},
    {"name": "cramer", "features": 4, "spectral_norm": True},
    {"name": "gmmn"},
])
def test_objectives_run_in_the_training_engine(tmp_path, objective):
    import json

    from genlab.train import fit

    cfg = from_dict({"data": {"name": "ring8", "n_train": 512, "n_test": 256},
                     "model": {"name": "mlp_generator", "hidden": 16, "depth": 1},
                     "objective": {**objective, **({} if objective["name"] == "gmmn" else {"critic": {"hidden": 16, "depth": 1}})},
                     "train": {"steps": 6, "batch_size": 32, "log_every": 3, "progress": False, "cpu": True,
                               **({} if objective["name"] == "gmmn" else {"schedule": {"critic": 2}})},
                     "eval": {"metrics": ["modes"], "n": 200}})
    result = fit(cfg, tmp_path / "run")
    assert set(result["eval"]) >= {"modes", "hq_percent", "reverse_kl"}
    logs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("generator/loss" in row for row in logs)
