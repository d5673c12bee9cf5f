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
from genlab.data.base import DataSpec
from genlab.experiments import simple_fit
from genlab.models.gan import ConvGenerator, MLPGenerator
from genlab.objectives.adversarial import AdversarialObjective, CriticObjective, apply_spectral_norm
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
        out = obj.loss(player, model, x, generator=torch.Generator().manual_seed(1))
        assert out.loss.dim() == 0 and torch.isfinite(out.loss)
        assert all(math.isfinite(v) for v in out.logs.values())
        out.loss.backward()
        own = params[player]
        assert own and all(p.grad is not None for p in own), f"{player} gradients miss some of its parameters"
        if player == "critic":  # the critic step never touches the model's weights
            assert all(p.grad is None for p in model.parameters())


def test_every_registered_objective_is_covered_and_validates_from_a_config():
    covered = {reg for reg, _ in CONFIGS.values()}
    mine = {n for n, c in registry.OBJECTIVES.items()
            if issubclass(c, CriticObjective) or n == "gmmn"}
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
        out = obj.loss(player, model, torch.rand(6, 1, 8, 8) * 2 - 1)
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
    assert all(float(p.abs().max()) <= 0.05 + 1e-7 for p in obj.critic.parameters())
    assert any(float(p.abs().max()) > 0.049 for p in obj.critic.parameters())


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
