"""FFJORD (arXiv 1810.01367) and the shared ODE solver (genlab.sampling.ode).

Tolerances. The flow contract asks for a float64 round trip within 1e-7 and log-dets
within 1e-6 of the autograd Jacobian. dopri5 controls the *local* error per step;
measured on the contract's flows (perturb 0.3: |z - x| up to 1.1, log-dets ~0.3-0.8), the
round-trip error is about 20 x tol and the log-det error ~25 x tol, so the contract runs
at rtol = atol = 1e-10 (errors ~2e-9, a 50x margin below 1e-7). At 1e-8 the round trip
misses 1e-7 by a factor of 2 (measured 2e-7), which is why the tolerance is not looser.
RK4 is run with 40 steps (global error O(h^4); measured round trip 6e-12 at 50 steps).
"""

from __future__ import annotations

import math

import pytest
import torch

from flow_contract import check_flow_contract, check_gradients, grid_mass, prepared
from genlab import registry
from genlab.data.base import Batch, DataSpec, image_spec
from genlab.data.synthetic import ring8
from genlab.models.flows.ffjord import FFJORD, ConcatMLP, divergence_exact, divergence_hutchinson, probe
from genlab.objectives.likelihood import MaximumLikelihood
from genlab.sampling.ode import ODESolverError, odeint

PTS = DataSpec(name="pts", kind="points", event_shape=(2,))
TAB = DataSpec(name="tab", kind="points", event_shape=(5,))
TINY_IMG = image_spec("tiny", (1, 2, 2), 17)
TIGHT = dict(rtol=1e-10, atol=1e-10)


def _ffjord(spec, **kw):
    return FFJORD(data_spec=spec, hidden=16, depth=2, **kw)


# --- the contract ------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [PTS, TAB, TINY_IMG], ids=["2d", "5d", "1x2x2"])
def test_contract_dopri5(spec, tmp_path):
    x = torch.randn(6, *spec.event_shape, generator=torch.Generator().manual_seed(0))
    check_flow_contract(lambda: _ffjord(spec, **TIGHT), x=x, tmp_path=tmp_path, perturb=0.3)


def test_contract_rk4(tmp_path):
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    check_flow_contract(lambda: _ffjord(PTS, method="rk4", steps=40), x=x, tmp_path=tmp_path, perturb=0.3)


def test_contract_flow_is_not_trivial():
    """The perturbed contract flow moves points and changes volume (else the checks are vacuous)."""
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(0)).double()
    model = prepared(lambda: _ffjord(TAB, **TIGHT), x, perturb=0.3)
    z, ld = model.inverse_and_log_det(x)
    assert (z - x).abs().max() > 0.3 and ld.abs().min() > 0.1


def test_density_integrates_to_one_2d():
    model = prepared(lambda: _ffjord(PTS, rtol=1e-7, atol=1e-7), torch.randn(64, 2), perturb=0.3).eval()
    assert abs(grid_mass(model, lim=6.0, n=300) - 1.0) < 1e-3


# --- trace estimators --------------------------------------------------------------------
@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_for_the_trace(noise):
    """Mean of e^T J e over 20000 probes = tr J within 4 standard errors, for a field
    ``net(v, t) + 2 v`` whose trace (about 23.5) is large against the standard error
    (~0.03), so that a probe with the wrong variance (e.g. scaled by 1.01) fails."""
    torch.manual_seed(0)
    d, n = 12, 20000
    t = torch.tensor(0.3, dtype=torch.float64)
    net = ConcatMLP(d, hidden=32, depth=2, activation="tanh").double()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))

    def field(u):
        return net(t, u) + 2.0 * u

    v = torch.randn(1, d, dtype=torch.float64).expand(n, d).clone().requires_grad_()
    exact = torch.autograd.functional.jacobian(lambda u: field(u[None])[0], v[0].detach()).trace()
    e = probe(v.shape, v, noise, torch.Generator().manual_seed(1))
    est = divergence_hutchinson(field(v), v, e, create_graph=False)
    se = est.std() / math.sqrt(n)
    assert abs(float(est.mean() - exact)) < 4 * float(se), (float(est.mean()), float(exact), float(se))
    assert float(est.std()) > 1e-3  # it is an estimate, not the exact trace in disguise
    torch.testing.assert_close(divergence_exact(field(v), v, create_graph=False), exact.expand(n))


def test_hutchinson_log_det_is_unbiased_and_eval_is_exact():
    """D = 12 > exact_trace_max_dim = 10: training mode estimates the log-det (one probe per
    row, fixed over the solve), eval mode computes it exactly; the mean of many estimates
    matches the exact value."""
    spec = DataSpec(name="d12", kind="points", event_shape=(12,))
    x1 = torch.randn(1, 12, generator=torch.Generator().manual_seed(0))
    model = prepared(lambda: _ffjord(spec, rtol=1e-8, atol=1e-8), x1, perturb=0.3)
    n = 2000
    x = x1.double().expand(n, 12).clone()
    with torch.no_grad():
        model.train()
        _, est = model.inverse_and_log_det(x, generator=torch.Generator().manual_seed(3))
        model.eval()
        _, exact_a = model.inverse_and_log_det(x1.double(), generator=torch.Generator().manual_seed(4))
        _, exact_b = model.inverse_and_log_det(x1.double(), generator=torch.Generator().manual_seed(5))
    assert torch.equal(exact_a, exact_b), "eval-mode log-det must not depend on any probe"
    assert float(est.std()) > 1e-3
    se = float(est.std()) / math.sqrt(n)
    assert abs(float(est.mean()) - float(exact_a)) < 4 * se, (float(est.mean()), float(exact_a), se)
    big = FFJORD(data_spec=spec, hidden=16, depth=2, rtol=1e-8, atol=1e-8, exact_trace_max_dim=12).double()
    big.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(big.train().inverse_and_log_det(x1.double())[1], exact_a)


def test_hutchinson_training_path_has_gradients():
    spec = DataSpec(name="d12", kind="points", event_shape=(12,))
    x = torch.randn(4, 12, generator=torch.Generator().manual_seed(0))
    model = prepared(lambda: _ffjord(spec, rtol=1e-6, atol=1e-6), x, perturb=0.3)
    assert model.training and not model.exact_trace()
    check_gradients(model, x.double())


# --- the solver against closed forms ------------------------------------------------------
def _linear_problem():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 4, generator=g, dtype=torch.float64) - 0.5 * torch.eye(4, dtype=torch.float64)
    y0 = torch.randn(3, 4, generator=g, dtype=torch.float64)
    return a, y0


@pytest.mark.parametrize("t0,t1", [(0.0, 1.5), (1.5, -0.5)])
def test_dopri5_matches_matrix_exponential(t0, t1):
    a, y0 = _linear_problem()
    exact = y0 @ torch.linalg.matrix_exp(a * (t1 - t0)).T
    for tol in (1e-6, 1e-9):
        y = odeint(lambda t, y: y @ a.T, y0, t0, t1, rtol=tol, atol=tol)
        err = float((y - exact).abs().max() / (1 + exact.abs().max()))
        assert err < 100 * tol, (tol, err)


def test_rk4_is_fourth_order():
    a, y0 = _linear_problem()
    exact = y0 @ torch.linalg.matrix_exp(a).T
    errs = [float((odeint(lambda t, y: y @ a.T, y0, 0.0, 1.0, method="rk4", steps=n) - exact).abs().max())
            for n in (20, 40, 80)]
    for coarse, fine in zip(errs[:-1], errs[1:]):
        assert 12 < coarse / fine < 20, errs  # 2^4 = 16
    assert errs[-1] < 1e-6


def test_odeint_tuple_state_and_time_argument():
    """A time-dependent tuple system: dy/dt = t (so y = t^2/2), dw/dt = -w (w = e^-t)."""
    y0 = (torch.zeros(2, dtype=torch.float64), torch.ones(3, dtype=torch.float64))
    y, w = odeint(lambda t, s: (t.expand(2), -s[1]), y0, 0.0, 2.0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(y, torch.full((2,), 2.0, dtype=torch.float64), atol=1e-7, rtol=0)
    torch.testing.assert_close(w, torch.full((3,), math.exp(-2.0), dtype=torch.float64), atol=1e-7, rtol=0)
    assert odeint(lambda t, s: s, y0[1], 1.0, 1.0) is y0[1]


def test_odeint_errors_are_clear():
    f = lambda t, y: y  # noqa: E731
    y0 = torch.ones(2)
    with pytest.raises(ValueError, match="unknown ODE method"):
        odeint(f, y0, 0.0, 1.0, method="euler")
    with pytest.raises(ValueError, match="rtol > 0"):
        odeint(f, y0, 0.0, 1.0, rtol=0.0)
    with pytest.raises(ValueError, match="steps >= 1"):
        odeint(f, y0, 0.0, 1.0, method="rk4")
    with pytest.raises(ODESolverError, match="max_steps=5"):
        odeint(lambda t, y: 50 * y, torch.ones(2, dtype=torch.float64), 0.0, 1.0, rtol=1e-10, atol=1e-10,
               max_steps=5)


# --- the model ----------------------------------------------------------------------------
def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="activation"):
        FFJORD(data_spec=PTS, activation="relu")
    with pytest.raises(ValueError, match="unknown ODE method"):
        FFJORD(data_spec=PTS, method="euler")
    with pytest.raises(ValueError, match="rtol > 0"):
        FFJORD(data_spec=PTS, rtol=-1.0)
    with pytest.raises(ValueError, match="noise"):
        FFJORD(data_spec=PTS, noise="uniform")
    with pytest.raises(ValueError, match=r"expects \(B, 2\)"):
        FFJORD(data_spec=PTS).log_prob(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="unconditional"):
        FFJORD(data_spec=PTS).log_prob(torch.zeros(3, 2), context=torch.zeros(3, dtype=torch.long))


@pytest.mark.parametrize("spec", [PTS, image_spec("digits", (1, 8, 8), 17)], ids=["2d", "digits"])
def test_registry_defaults_build_and_score(spec):
    torch.manual_seed(0)
    model = registry.MODELS["ffjord"](data_spec=spec)
    x = torch.rand(4, *spec.event_shape) * 2 - 1
    lp = model.log_prob(x)
    assert lp.shape == (4,) and torch.isfinite(lp).all()
    assert model.sample(3).shape == (3, *spec.event_shape)


def test_training_with_hutchinson_lowers_the_exact_nll():
    """Trained with the estimator only (exact_trace_max_dim=0), the exact held-out NLL falls."""
    data = ring8(n_train=2048, n_test=512, std=0.2, seed=1)
    torch.manual_seed(0)
    model = FFJORD(data_spec=data.spec, hidden=32, depth=2, exact_trace_max_dim=0, method="rk4", steps=8)
    obj = MaximumLikelihood()
    obj.setup(model, data.spec)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)

    def held_out() -> float:
        model.eval()
        with torch.no_grad():
            value = float(-model.log_prob(data.test).mean())
        model.train()
        return value

    before = held_out()
    for _ in range(60):
        x = data.train[torch.randint(len(data.train), (128,), generator=g)]
        out = obj.loss("model", model, Batch(x), generator=g)
        opt.zero_grad(), out.loss.backward(), opt.step()
    assert held_out() < before - 0.3
