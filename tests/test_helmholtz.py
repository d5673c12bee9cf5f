"""Helmholtz machines (helmholtz, ddc_helmholtz) and wake-sleep (wake_sleep, ddc_wake_sleep)."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.data.base import Batch, DataSpec, image_spec
from genlab.models.helmholtz import (
    DDCHelmholtzMachine,
    HelmholtzMachine,
    ddc_weights,
    ridge_readout,
)
from genlab.objectives.wake_sleep import DDCWakeSleep, WakeSleep

DIGITS = image_spec("digits_binary", (1, 8, 8), levels=17)
POINTS = DataSpec(name="pts", kind="points", event_shape=(2,))
SMALL = {"name": "mlp", "hidden": 16, "depth": 1}


def _binary(n: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return DIGITS.to_model(16.0 * (torch.rand(n, 1, 8, 8, generator=g) > 0.5).float())


def _models():
    torch.manual_seed(0)
    ws = HelmholtzMachine(data_spec=DIGITS, latent_dim=3, decoder=SMALL, recognition=SMALL)
    torch.manual_seed(0)
    ddc = DDCHelmholtzMachine(data_spec=DIGITS, latent_dim=3, decoder=SMALL, recognition=SMALL, features=20)
    return ws, ddc


def test_shapes_and_the_generative_half_is_shared():
    ws, ddc = _models()
    x = _binary()
    for m in (ws, ddc):
        assert m.sample(4).shape == (4, 1, 8, 8) and m.sample((2, 3)).shape == (2, 3, 1, 8, 8)
        assert m.likelihood(torch.zeros(5, 3)).batch_shape == (5,) and m.prior().event_shape == (3,)
        assert m.reconstruct(x).shape == x.shape
        g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        assert torch.equal(m.sample(3, generator=g1), m.sample(3, generator=g2))
    q = ws.posterior(x)
    assert q.batch_shape == (6,) and q.event_shape == (3,)
    assert ddc.ddc(x).shape == (6, 20) and ddc.features(torch.zeros(7, 3)).shape == (7, 20)
    assert ddc.expectation(x, lambda z: torch.cat([z, z ** 2], 1)).shape == (6, 6)
    for a, b in zip(ws.decoder.parameters(), ddc.decoder.parameters()):  # same seed: same initial decoder
        assert torch.equal(a, b)
    assert not hasattr(ddc, "posterior")  # a DDC is not a density: no posterior capability


@pytest.mark.parametrize("which", ["ws", "ddc"])
def test_each_phase_updates_only_its_own_parameters(which):
    ws, ddc = _models()
    m, obj = (ws, WakeSleep(sleep_samples=8)) if which == "ws" else (ddc, DDCWakeSleep(sleep_samples=8,
                                                                                        regression_samples=50))
    obj.setup(m, DIGITS)
    params = obj.player_parameters(m)
    assert {id(p) for p in params["model"]} == {id(p) for p in m.decoder.parameters()}
    assert {id(p) for p in params["recognition"]} == {id(p) for p in m.recognition.parameters()}
    for player, own, other in (("model", m.decoder, m.recognition), ("recognition", m.recognition, m.decoder)):
        m.zero_grad(set_to_none=True)
        out = obj.loss(player, m, Batch(_binary()), generator=torch.Generator().manual_seed(0))
        out.loss.backward()
        assert all(p.grad is not None for p in own.parameters())
        assert any(float(p.grad.abs().sum()) > 0 for p in own.parameters())
        assert all(p.grad is None for p in other.parameters()), player
    with pytest.raises(ValueError, match="players 'model'"):
        obj.loss("critic", m, Batch(_binary()))


def test_sleep_regression_recovers_a_known_linear_map_and_the_dual_form_is_exact():
    torch.manual_seed(0)
    feats = torch.rand(500, 6, dtype=torch.float64)
    alpha = torch.randn(7, 3, dtype=torch.float64)
    targets = torch.cat([torch.ones(500, 1, dtype=torch.float64), feats], 1) @ alpha
    torch.testing.assert_close(ridge_readout(feats, targets + 1e-3 * torch.randn_like(targets), 1e-10), alpha,
                               atol=5e-3, rtol=0)
    code = torch.rand(4, 6, dtype=torch.float64)
    fn = torch.randn(500, 5, dtype=torch.float64)  # any targets f(z_s)
    primal = torch.cat([torch.ones(4, 1, dtype=torch.float64), code], 1) @ ridge_readout(feats, fn, 1e-3)
    torch.testing.assert_close(ddc_weights(feats, code, 1e-3) @ fn, primal)
    with pytest.raises(ValueError, match="features"):
        ridge_readout(feats, targets[:10], 1e-3)


def test_ddc_reads_posterior_moments_off_an_exact_code():
    """With the exact code r = E_q[T(z)] of a Gaussian q, the linear read-out gives E_q[z] and E_q[z^2]."""
    m = DDCHelmholtzMachine(data_spec=POINTS, latent_dim=1, likelihood="gaussian", decoder=SMALL,
                            recognition=SMALL, features=100, feature_scale=2.0).double()
    g = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 1, generator=g, dtype=torch.float64)
    fz = torch.cat([z, z ** 2], 1)
    alpha = ridge_readout(m.features(z), fz, 1e-7)
    for mean, std in ((0.5, 0.3), (-1.0, 0.5)):
        zq = mean + std * torch.randn(20000, 1, generator=g, dtype=torch.float64)
        r = m.features(zq).mean(0, keepdim=True)
        est = torch.cat([torch.ones(1, 1, dtype=torch.float64), r], 1) @ alpha
        torch.testing.assert_close(est[0], torch.tensor([mean, mean ** 2 + std ** 2], dtype=torch.float64),
                                   atol=0.03, rtol=0)


def test_ddc_bernoulli_wake_shortcut_equals_the_pairwise_surrogate():
    _, m = _models()
    m = m.double()
    obj = DDCWakeSleep(regression_samples=30)
    obj.setup(m, DIGITS)
    x = _binary().double()
    out = obj.loss("model", m, Batch(x), generator=torch.Generator().manual_seed(3))
    z, w = obj.weights(m, x, torch.Generator().manual_seed(3))
    xs = x.unsqueeze(1).expand(6, 30, *x.shape[1:])
    ref = (w * (m.prior().log_prob(z) + m.likelihood(z).log_prob(xs))).sum(1).mean()
    torch.testing.assert_close(out.loss, -ref / DIGITS.dim)
    with pytest.raises(ValueError, match="binary data"):
        obj.loss("model", m, Batch(DIGITS.to_model(torch.full((2, 1, 8, 8), 8.0, dtype=torch.float64))))


def _toy():
    """x = a z + noise, z ~ N(0, 1), noise ~ N(0, 0.3^2 I), in 2-D: log p(x) is known exactly (and the
    models below, with a linear decoder and the true noise level, contain the truth)."""
    a, noise = torch.tensor([1.5, -1.0]), 0.3
    cov = torch.outer(a, a) + noise ** 2 * torch.eye(2)
    truth = torch.distributions.MultivariateNormal(torch.zeros(2), cov)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4000, 1, generator=g)
    data = z * a + noise * torch.randn(4000, 2, generator=g)
    test = torch.randn(500, 1, generator=g) * a + noise * torch.randn(500, 2, generator=g)
    return data, test, float(truth.log_prob(test).mean())


def _heldout(m, test, proposal):
    from genlab.metrics.iwae import IWAEBound

    met = IWAEBound(k=2000, proposal=proposal, data_spec=POINTS, seed=0)
    met.update(m, Batch(test))
    return met.compute()["iwae_log_px"]


@pytest.mark.parametrize("which", ["ws", "ddc"])
def test_wake_sleep_fits_a_linear_gaussian_toy_model(which):
    from genlab.experiments import simple_fit

    data, test, best = _toy()
    torch.manual_seed(0)
    lin = {"name": "mlp", "hidden": 16, "depth": 0}
    if which == "ws":
        m = HelmholtzMachine(data_spec=POINTS, latent_dim=1, likelihood="gaussian_fixed", noise_std=0.3, decoder=lin,
                             recognition=SMALL)
        obj, proposal = WakeSleep(sleep_samples=64), "posterior"
    else:
        m = DDCHelmholtzMachine(data_spec=POINTS, latent_dim=1, likelihood="gaussian_fixed", noise_std=0.3, decoder=lin,
                                recognition={"name": "mlp", "hidden": 32, "depth": 1}, features=30,
                                feature_scale=2.0)
        obj, proposal = DDCWakeSleep(sleep_samples=64, regression_samples=300, ridge=1e-5), "prior"
    obj.setup(m, POINTS)
    before = _heldout(m, test, proposal)
    simple_fit(m, obj, lambda n, g: data[torch.randint(len(data), (n,), generator=g)], steps=600, lr=1e-2,
               batch_size=64, betas=(0.9, 0.999), decay=True)
    after = _heldout(m, test, proposal)
    assert after > before + 1.0 and after == pytest.approx(best, abs=0.15), (before, after, best)


@pytest.mark.parametrize("model,objective", [("helmholtz", "wake_sleep"), ("ddc_helmholtz", "ddc_wake_sleep")])
def test_save_load_round_trip(tmp_path, model, objective):
    from genlab import load
    from genlab.build import load_config
    from genlab.train import fit

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "name: t\nseed: 0\ndata: {name: digits, binarize: threshold}\n"
        f"model: {{name: {model}, latent_dim: 3, decoder: {{name: mlp, hidden: 16}}, "
        "recognition: {name: mlp, hidden: 16}}\n"
        f"objective: {{name: {objective}, sleep_samples: 8}}\n"
        "train: {steps: 3, batch_size: 8, sample_every: 0, ckpt_every: 0}\neval: {metrics: []}\n")
    fit(load_config(cfg), tmp_path / "run")
    m = load(tmp_path / "run")
    cls = HelmholtzMachine if model == "helmholtz" else DDCHelmholtzMachine
    ref = cls(data_spec=DIGITS, latent_dim=3, decoder={"name": "mlp", "hidden": 16},
              recognition={"name": "mlp", "hidden": 16})
    ref.load_state_dict(m.state_dict())
    x, z = _binary(4), torch.randn(4, 3)
    torch.testing.assert_close(m.likelihood(z).log_prob(x), ref.likelihood(z).log_prob(x))
    if model == "helmholtz":
        torch.testing.assert_close(m.posterior(x).mean, ref.posterior(x).mean)
    else:
        torch.testing.assert_close(m.ddc(x), ref.ddc(x))
        torch.testing.assert_close(m.features(z), ref.features(z))
        assert "feature_w" in m.state_dict()


def test_clear_config_errors(tmp_path):
    from genlab.build import build, load_config

    def cfg(model: str, objective: str, data: str = "{name: digits, binarize: threshold}"):
        p = tmp_path / "c.yaml"
        p.write_text(f"name: t\nseed: 0\ndata: {data}\nmodel: {model}\nobjective: {objective}\n"
                     "train: {steps: 3}\n")
        return build(load_config(p))

    with pytest.raises(Exception, match="HelmholtzMachine"):
        cfg("{name: ddc_helmholtz}", "{name: wake_sleep}")
    with pytest.raises(Exception, match="DDCHelmholtzMachine"):
        cfg("{name: helmholtz}", "{name: ddc_wake_sleep}")
    with pytest.raises(Exception, match="features"):
        cfg("{name: ddc_helmholtz, features: 0}", "{name: ddc_wake_sleep}")
    with pytest.raises(Exception, match="ridge"):
        cfg("{name: ddc_helmholtz}", "{name: ddc_wake_sleep, ridge: -1}")
    with pytest.raises(ValueError, match="likelihood"):
        HelmholtzMachine(data_spec=DIGITS, likelihood="poisson")
    with pytest.raises(ValueError, match="discrete data"):
        HelmholtzMachine(data_spec=POINTS, likelihood="bernoulli")
    m = HelmholtzMachine(data_spec=DIGITS, latent_dim=2, decoder=SMALL, recognition=SMALL)
    obj = WakeSleep()
    obj.setup(m, DIGITS)
    with pytest.raises(ValueError, match="binarise it"):
        obj.loss("model", m, Batch(DIGITS.to_model(torch.full((2, 1, 8, 8), 8.0))))
    with pytest.raises(ValueError, match="needs model ddc_helmholtz"):
        DDCWakeSleep().setup(m, DIGITS)
    assert math.isfinite(float(obj.loss("recognition", m, Batch(_binary())).loss.detach()))


@pytest.mark.parametrize("recipe", ["digits-binary-helmholtz-ws", "digits-binary-helmholtz-ddc"])
def test_recipes_build_the_twins(recipe):
    from genlab.build import build, load_config
    from genlab.config import RECIPES

    exp = build(load_config(RECIPES / f"{recipe}.yaml", []))
    assert isinstance(exp.model, HelmholtzMachine if recipe.endswith("ws") else DDCHelmholtzMachine)
    assert exp.model.latent_shape == (8,) and type(exp.objective).__name__ in ("WakeSleep", "DDCWakeSleep")
