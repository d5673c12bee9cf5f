"""Model-based evaluation (AIS, IWAE) and the independent Wasserstein critic.

Reference answers are closed forms: the linear-Gaussian model has
p(x) = N(b, W W^T + s^2 I) and an exact Gaussian posterior; W1 between two
Gaussians that differ by a shift is the length of the shift; a nonlinear decoder
with a 2-D code is checked against grid quadrature.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from torch import nn

from genlab.data.base import Batch
from genlab import registry
from genlab.build import build_metric, build_model
from genlab.capabilities import CapabilityError, check_requirements
from genlab.data.base import DataSpec, Dataset
from genlab.metrics.ais import AISDecoder, AISLatent
from genlab.metrics.critic import IndependentCritic
from genlab.metrics.iwae import IWAEBound
from genlab.models.base import DecoderModel
from genlab.models.gan import MLPGenerator
from genlab.models.linear_gaussian import LinearGaussian
from genlab.sampling.ais import ais_log_marginal, annealing_schedule, reverse_ais_upper_bound
from genlab.sampling.hmc import hmc_step
from genlab.sampling.importance import iwae_bound, sample_distribution
from genlab.sampling.langevin import annealed_langevin, langevin

F64 = torch.float64


class LinearDecoder(DecoderModel):
    """x = W z + b as a DecoderModel; under N(decode(z), sigma^2 I): p(x) = N(b, WW^T + sigma^2 I)."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor):
        super().__init__()
        self.event_shape = torch.Size((w.shape[0],))
        self.latent_shape = torch.Size((w.shape[1],))
        self.w, self.b = nn.Parameter(w), nn.Parameter(b)

    def decode(self, z, *, context=None):
        return z @ self.w.T + self.b


def _exact(w, b, sigma, x):
    cov = w @ w.T + sigma**2 * torch.eye(w.shape[0], dtype=w.dtype)
    return torch.distributions.MultivariateNormal(b, cov).log_prob(x)


@pytest.fixture
def linear_problem():
    g = torch.Generator().manual_seed(0)
    d_x, d_z, sigma = 5, 2, 0.3
    w = torch.randn(d_x, d_z, generator=g, dtype=F64)
    b = torch.randn(d_x, generator=g, dtype=F64)
    z = torch.randn(30, d_z, generator=g, dtype=F64)
    x = z @ w.T + b + sigma * torch.randn(30, d_x, generator=g, dtype=F64)
    return w, b, sigma, x, z


def _lg_model(d_x=4, d_z=2, noise=0.5, seed=0, spec=None):
    spec = spec or DataSpec(name="t", kind="points", event_shape=(d_x,))
    torch.manual_seed(seed)
    m = LinearGaussian(data_spec=spec, latent_dim=d_z, noise_std=noise).double()
    with torch.no_grad():
        m.bias.copy_(torch.randn(d_x, dtype=F64))
    return m


# --- samplers -----------------------------------------------------------------------------

@pytest.mark.parametrize("n_leapfrog", [1, 5])
def test_hmc_leaves_a_correlated_gaussian_invariant(n_leapfrog):
    a = torch.tensor([[2.0, 0.0], [0.9, 0.4]], dtype=F64)
    cov, mu = a @ a.T, torch.tensor([1.0, -2.0], dtype=F64)
    prec = torch.linalg.inv(cov)
    g = torch.Generator().manual_seed(0)
    z = mu + torch.randn(20000, 2, generator=g, dtype=F64) @ a.T  # exact samples
    for _ in range(10):
        z, acc = hmc_step(z, lambda u: -0.5 * ((u - mu) @ prec * (u - mu)).sum(1), step_size=0.4,
                          n_leapfrog=n_leapfrog, generator=g)
    assert 0.2 < acc.mean() < 1.0  # proposals are really being rejected sometimes
    se = (torch.diag(cov) / len(z)).sqrt()
    assert ((z.mean(0) - mu).abs() < 4 * se).all()
    assert torch.allclose(torch.cov(z.T), cov, atol=0.1)


@pytest.mark.parametrize("kind", ["linear", "sigmoid", "geometric"])
def test_annealing_schedule_runs_from_0_to_1(kind):
    b = annealing_schedule(50, kind)
    assert b.shape == (51,) and b[0] == 0 and abs(b[-1] - 1) < 1e-12 and (b.diff() > 0).all()


def test_sample_distribution_uses_the_generator_and_leaves_global_rng_alone():
    mvn = torch.distributions.MultivariateNormal(torch.tensor([1.0, 2.0], dtype=F64),
                                                 torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=F64))
    state = torch.get_rng_state()
    a = sample_distribution(mvn, (40000,), generator=torch.Generator().manual_seed(3))
    b = sample_distribution(mvn, (40000,), generator=torch.Generator().manual_seed(3))
    gam = torch.distributions.Gamma(torch.tensor(2.0), torch.tensor(1.0))  # fallback path
    c1 = sample_distribution(gam, (5,), generator=torch.Generator().manual_seed(4))
    c2 = sample_distribution(gam, (5,), generator=torch.Generator().manual_seed(4))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and torch.equal(c1, c2)
    assert torch.allclose(a.mean(0), mvn.mean, atol=0.03)
    assert torch.allclose(torch.cov(a.T), mvn.covariance_matrix, atol=0.05)


def test_langevin_and_annealed_langevin_reach_the_gaussian():
    g = torch.Generator().manual_seed(0)
    mu, s = 1.0, 0.5
    x = langevin(torch.zeros(20000, 1, dtype=F64), lambda u: -(u - mu) / s**2, step_size=0.01,
                 n_steps=500, generator=g)
    assert abs(x.mean() - mu) < 0.02 and abs(x.std() - s) < 0.02  # ULA bias O(eps): ~0.3% here
    sigmas = torch.logspace(0, -2, 10).tolist()
    y = annealed_langevin(3 * torch.randn(20000, 1, generator=g, dtype=F64),
                          lambda u, sig: -(u - mu) / (s**2 + sig[:, None] ** 2), sigmas,
                          eps=1e-4, steps_per_level=100, generator=g)
    assert abs(y.mean() - mu) < 0.02 and abs(y.std() - math.sqrt(s**2 + sigmas[-1] ** 2)) < 0.02


# --- the linear-Gaussian reference model ---------------------------------------------------

def test_linear_gaussian_log_prob_and_posterior_are_exact():
    m = _lg_model()
    x = m.sample(7, generator=torch.Generator().manual_seed(1)).double()
    cov = (m.weight @ m.weight.T + m.noise_std**2 * torch.eye(4, dtype=F64)).detach().numpy()
    ref = multivariate_normal(m.bias.detach().numpy(), cov).logpdf(x.numpy())
    np.testing.assert_allclose(m.log_prob(x).detach().numpy(), ref, rtol=1e-10)
    z = torch.randn(7, 2, dtype=F64)  # Bayes: log p(z|x) = log p(z) + log p(x|z) - log p(x)
    bayes = m.prior().log_prob(z) + m.likelihood(z).log_prob(x) - m.log_prob(x)
    assert torch.allclose(m.posterior(x).log_prob(z), bayes, atol=1e-10)


# --- AIS ----------------------------------------------------------------------------------

def test_ais_decoder_matches_the_exact_linear_gaussian_likelihood(linear_problem):
    """Tolerance: mean error over 30 points < 0.1 nats, every point within 0.6 nats."""
    w, b, sigma, x, _ = linear_problem
    metric = AISDecoder(sigma=sigma, steps=500, chains=16, leapfrog=5, schedule="geometric",
                        progress=False, seed=1)
    metric.update(LinearDecoder(w.clone(), b.clone()), Batch(x))
    err = metric.values() - _exact(w, b, sigma, x)
    assert abs(err.mean()) < 0.1 and err.abs().max() < 0.6
    out = metric.compute()
    assert out["ais_bpd"] == pytest.approx(-out["ais_log_px"] / (5 * math.log(2)))


def test_ais_latent_reports_data_space_likelihood():
    spec = DataSpec(name="t", kind="points", event_shape=(4,), shift=1.0, scale=2.0)
    m = _lg_model(spec=spec)
    x_model = m.sample(20, generator=torch.Generator().manual_seed(2)).double()
    x_data = spec.to_data(x_model)
    exact = m.log_prob(x_model).detach() - 4 * math.log(2.0)  # Jacobian of x_model = (x - 1) / 2
    metric = AISLatent(steps=300, chains=16, leapfrog=5, schedule="geometric", progress=False,
                       data_spec=spec)
    metric.update(m, Batch(x_data))
    err = metric.values() - exact
    assert abs(err.mean()) < 0.1 and err.abs().max() < 0.6


def test_ais_is_a_lower_bound_in_expectation_that_tightens_with_steps(linear_problem):
    w, b, sigma, x, z_true = linear_problem
    exact = _exact(w, b, sigma, x)
    gaps, ses = [], []
    for steps in (5, 50, 500):
        m = AISDecoder(sigma=sigma, steps=steps, chains=1, leapfrog=5, schedule="geometric",
                       progress=False, seed=3)
        m.update(LinearDecoder(w.clone(), b.clone()), Batch(x))
        d = m.values() - exact
        gaps.append(float(d.mean()))
        ses.append(float(d.std() / math.sqrt(len(d))))
    assert gaps[0] < gaps[1] < gaps[2]  # tightens
    assert gaps[0] + 3 * ses[0] < 0 and gaps[1] + 3 * ses[1] < 0  # clearly below log p(x)
    assert gaps[2] < 3 * ses[2]  # never significantly above


def test_bdmc_reverse_ais_gives_an_upper_bound_on_simulated_data(linear_problem):
    w, b, sigma, x, z_true = linear_problem  # z_true is an exact posterior sample for x
    exact = _exact(w, b, sigma, x)
    lp = lambda z: -0.5 * z.pow(2).sum(1) - math.log(2 * math.pi)
    ll = lambda z: (-0.5 * (x - z @ w.T - b).pow(2).sum(1) / sigma**2
                    - 5 * (math.log(sigma) + 0.5 * math.log(2 * math.pi)))
    g = torch.Generator().manual_seed(0)
    ups, lows = [], []
    for steps in (10, 200):
        up, _ = reverse_ais_upper_bound(z_true, lp, ll, 1, n_steps=steps, step_size=0.05, generator=g)
        low, _ = ais_log_marginal(torch.randn(30, 2, generator=g, dtype=F64), lp, ll, 1, n_steps=steps,
                                  step_size=0.05, generator=g)
        ups.append(float((up - exact).mean()))
        lows.append(float((low - exact).mean()))
    assert ups[0] > ups[1] > 0 > lows[1] > lows[0]


def test_ais_on_a_nonlinear_generator_matches_grid_quadrature():
    spec = DataSpec(name="t", kind="points", event_shape=(2,))
    torch.manual_seed(0)
    gen = MLPGenerator(data_spec=spec, latent_dim=2, hidden=16, depth=2, activation="tanh").double()
    sigma = 0.3
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        x = gen.decode(torch.randn(10, 2, generator=g, dtype=F64)) + sigma * torch.randn(10, 2, generator=g, dtype=F64)
        grid = torch.linspace(-7, 7, 561, dtype=F64)
        zz = torch.cartesian_prod(grid, grid)
        mean = gen.decode(zz)
        log_pz = -0.5 * zz.pow(2).sum(1) - math.log(2 * math.pi)
        sq = (x[:, None, :] - mean[None]).pow(2).sum(-1)
        log_lik = -0.5 * sq / sigma**2 - 2 * math.log(sigma) - math.log(2 * math.pi)
        ref = torch.logsumexp(log_pz + log_lik, dim=1) + 2 * math.log(float(grid[1] - grid[0]))
    metric = AISDecoder(sigma=sigma, steps=300, chains=16, leapfrog=5, progress=False)
    metric.update(gen, Batch(x))
    err = metric.values() - ref
    assert abs(err.mean()) < 0.1 and err.abs().max() < 0.3


def test_ais_metrics_declare_their_capabilities():
    assert registry.METRICS["ais"] is AISDecoder and registry.METRICS["ais_latent"] is AISLatent
    with pytest.raises(CapabilityError, match="prior / decode"):
        check_requirements("metric 'ais'", AISDecoder.requires, LinearGaussian, "linear_gaussian")
    check_requirements("metric 'ais_latent'", AISLatent.requires, LinearGaussian, "linear_gaussian")
    check_requirements("metric 'ais'", AISDecoder.requires, MLPGenerator, "mlp_generator")
    spec = DataSpec(name="t", kind="points", event_shape=(3,))
    m = build_model({"name": "linear_gaussian", "latent_dim": 2}, spec, seed=0)
    assert isinstance(m, LinearGaussian) and m.sample(4).shape == (4, 3)
    with pytest.raises(ValueError, match="sigma"):
        AISDecoder(sigma=0.0)


# --- IWAE ---------------------------------------------------------------------------------

def _joint(m, x):
    def log_joint(z):  # (k, B, d) -> (k, B)
        return m.prior().log_prob(z) + m.likelihood(z).log_prob(x.expand(z.shape[0], *x.shape))
    return log_joint


@pytest.mark.parametrize("k", [1, 5, 100])
def test_iwae_with_the_exact_posterior_equals_log_px_for_any_k(k):
    m = _lg_model()
    with torch.no_grad():
        x = m.sample(16, generator=torch.Generator().manual_seed(5)).double()
        bound = iwae_bound(_joint(m, x), m.posterior(x), k, generator=torch.Generator().manual_seed(k))
        assert torch.allclose(bound, m.log_prob(x), atol=1e-9)


def test_iwae_with_a_worse_proposal_is_below_log_px_and_increases_with_k():
    m = _lg_model(noise=0.3)
    with torch.no_grad():
        x = m.sample(200, generator=torch.Generator().manual_seed(6)).double()
        post = m.posterior(x)
        q = torch.distributions.MultivariateNormal(post.mean + 0.3, 2.0 * post.covariance_matrix)
        exact = m.log_prob(x)
        g = torch.Generator().manual_seed(0)
        gaps = [float((iwae_bound(_joint(m, x), q, k, generator=g, chunk_size=64) - exact).mean())
                for k in (1, 10, 100, 1000)]
    # E L_K increases with K; beyond K = 100 the increase is below the Monte Carlo noise
    assert gaps[0] < gaps[1] < gaps[2] < 0
    assert gaps[0] < -1.0 and abs(gaps[3]) < 0.02  # KL(q || posterior) ~ 3.4 nats at K = 1


def test_iwae_metric_prior_proposal_and_custom_proposal_in_data_space():
    spec = DataSpec(name="t", kind="points", event_shape=(4,), shift=0.5, scale=3.0)
    m = _lg_model(noise=1.0, spec=spec)
    x_model = m.sample(50, generator=torch.Generator().manual_seed(7)).double()
    exact = m.log_prob(x_model).detach() - 4 * math.log(3.0)
    x_data = spec.to_data(x_model)
    exact_q = IWAEBound(k=3, proposal_fn=lambda model, xm: model.posterior(xm), data_spec=spec)
    exact_q.update(m, Batch(x_data))
    assert torch.allclose(exact_q.values(), exact, atol=1e-9)
    auto_q = build_metric("iwae", Dataset(spec, x_data, x_data), k=3)  # auto: the model's own posterior
    auto_q.update(m, Batch(x_data))
    assert torch.allclose(auto_q.values(), exact, atol=1e-9)
    prior_q = build_metric("iwae", Dataset(spec, x_data, x_data), k=4000, proposal="prior")
    prior_q.update(m, Batch(x_data))
    out = prior_q.compute()
    err = prior_q.values() - exact  # prior proposal: a per-point draw can land above log p(x)
    assert abs(err.mean()) < 0.05 and err.abs().max() < 0.5
    few = IWAEBound(k=10, data_spec=spec, proposal="prior")
    few.update(m, Batch(x_data))
    assert few.compute()["iwae_log_px"] < out["iwae_log_px"] - 0.1  # loose with K = 10
    assert out["iwae_bpd"] == pytest.approx(-out["iwae_log_px"] / (4 * math.log(2)))


# --- independent critic ---------------------------------------------------------------------

def _critic(**kw):
    return IndependentCritic(steps=400, progress=False, critic={"name": "mlp", "hidden": 64, "depth": 2}, **kw)


def test_critic_estimates_w1_between_shifted_gaussians():
    """N(0, 1) vs N(2, 1): W1 = 2. Tolerance 0.1 (SE ~0.03, GP bias ~1%)."""
    g = torch.Generator().manual_seed(0)
    m = _critic()
    m.update(real=torch.randn(4000, 1, generator=g), fake=2 + torch.randn(4000, 1, generator=g))
    out = m.compute()
    assert abs(out["critic_w"] - 2.0) < 0.1
    assert out["critic_lo"] < out["critic_w"] < out["critic_hi"]
    assert 0.01 < out["critic_se"] < 0.06


def test_critic_is_near_zero_for_one_distribution_and_in_data_units():
    g = torch.Generator().manual_seed(1)
    same = _critic()
    same.update(real=torch.randn(4000, 2, generator=g), fake=torch.randn(4000, 2, generator=g))
    out = same.compute()
    assert out["critic_lo"] <= 0.0 <= out["critic_hi"] and abs(out["critic_w"]) < 0.1
    scaled = _critic()  # N(0, 10^2 I) vs N((20, 0), 10^2 I): W1 = 20 in data units
    shift = torch.tensor([20.0, 0.0])
    scaled.update(real=10 * torch.randn(4000, 2, generator=g), fake=shift + 10 * torch.randn(4000, 2, generator=g))
    assert abs(scaled.compute()["critic_w"] - 20.0) < 1.0


def test_critic_uses_a_conv_net_for_images():
    g = torch.Generator().manual_seed(2)
    spec = DataSpec(name="img", kind="image", event_shape=(1, 8, 8), levels=17, shift=8.0, scale=8.0)
    real = (8 + 4 * torch.randn(600, 1, 8, 8, generator=g)).clamp(0, 16)
    fake = (12 + 4 * torch.randn(600, 1, 8, 8, generator=g)).clamp(0, 16)
    m = IndependentCritic(steps=200, batch_size=64, progress=False, data_spec=spec, critic={"width": 8})
    m.update(real=real, fake=fake)
    # the coupling fake = clamp(real_noise + 4) moves each of 64 pixels <= 4 levels: W1 <= 32
    assert 5.0 < m.compute()["critic_w"] < 34.0
    with pytest.raises(ValueError, match="event shape"):
        bad = _critic()
        bad.update(real=torch.randn(10, 2), fake=torch.randn(10, 3))
        bad.compute()


def test_ais_runs_on_a_conv_generator_in_data_space_and_restores_train_mode():
    from genlab.models.gan import ConvGenerator
    spec = DataSpec(name="img", kind="image", event_shape=(1, 8, 8), levels=17, shift=8.0, scale=8.0)
    torch.manual_seed(0)
    gen = ConvGenerator(data_spec=spec, latent_dim=4, width=8).train()
    x = torch.randint(0, 17, (5, 1, 8, 8)).float()
    metric = build_metric("ais", Dataset(spec, x, x), sigma=0.2, steps=5, chains=2, max_examples=3,
                          progress=False)
    metric.update(gen, Batch(x[:2]))
    metric.update(gen, Batch(x[2:]))
    out = metric.compute()
    assert gen.training and out["ais_n"] == 3 and math.isfinite(out["ais_log_px"])
    assert out["ais_bpd"] == pytest.approx(-out["ais_log_px"] / (64 * math.log(2)))
