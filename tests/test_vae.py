"""Contract tests for latent-variable models with amortised posteriors (VAE, cond_vae,
linear_gaussian) and the variational objectives (elbo, iwae)."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.data.base import Batch, DataSpec, image_spec
from genlab.data.digits import digits
from genlab.metrics.iwae import IWAEBound
from genlab.metrics.latent import LatentMarginal
from genlab.models.likelihoods import LIKELIHOODS, make_likelihood, params_per_pixel
from genlab.models.linear_gaussian import LinearGaussian
from genlab.models.vae import VAE, ConditionalVAE
from genlab.objectives.variational import ELBO, IWAE, kl_term

POINTS = DataSpec(name="pts", kind="points", event_shape=(5,))
DIGITS = image_spec("digits", (1, 8, 8), levels=17, classes=10)


def _vae(lik: str, net: str, spec: DataSpec = DIGITS, cls=VAE, **kw) -> VAE:
    torch.manual_seed(0)
    return cls(data_spec=spec, likelihood=lik, latent_dim=3, encoder={"name": net, **({"hidden": 16} if net == "mlp"
                                                                                       else {"width": 8})},
               decoder={"name": net, **({"hidden": 16} if net == "mlp" else {"width": 8})}, **kw)


def _binary_batch(n: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return DIGITS.to_model(16.0 * (torch.rand(n, 1, 8, 8, generator=g) > 0.5).float())


def _levels_batch(n: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return DIGITS.to_model(torch.randint(0, 17, (n, 1, 8, 8), generator=g).float())


CASES = [(lik, net) for lik in LIKELIHOODS for net in ("mlp", "conv")]


# --- likelihoods: closed form ---------------------------------------------------------

@pytest.mark.parametrize("lik", ["categorical", "logistic"])
def test_discrete_likelihood_masses_sum_to_one_over_levels(lik):
    spec = image_spec("t", (1, 1, 1), levels=17)
    torch.manual_seed(0)
    params = torch.randn(1, params_per_pixel(lik, spec), 1, 1, 1, dtype=torch.float64)
    dist = make_likelihood(lik, params, spec)
    levels = spec.to_model(torch.arange(17, dtype=torch.float64)).reshape(17, 1, 1, 1)
    total = sum(float(dist.log_prob(levels[k:k + 1]).exp()) for k in range(17))
    assert total == pytest.approx(1.0, abs=1e-10)


def test_bernoulli_is_a_mass_over_the_two_extreme_levels_and_refuses_other_levels():
    spec = image_spec("t", (1, 1, 1), levels=17)
    dist = make_likelihood("bernoulli", torch.tensor([[[[[0.3]]]]], dtype=torch.float64), spec)
    lo, hi = spec.to_model(torch.tensor(0.0)), spec.to_model(torch.tensor(16.0))
    p = [float(dist.log_prob(v.reshape(1, 1, 1, 1)).exp()) for v in (lo, hi)]
    assert p[1] == pytest.approx(1 / (1 + math.exp(-0.3)), abs=1e-12) and sum(p) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="binary data"):
        dist.log_prob(spec.to_model(torch.tensor(8.0)).reshape(1, 1, 1, 1))


def test_discretised_logistic_matches_the_logistic_cdf_and_is_finite_in_the_tails():
    spec = image_spec("t", (1, 1, 1), levels=17)
    loc, log_s = 0.1, math.log(0.2)
    dist = make_likelihood("logistic", torch.tensor([loc, log_s], dtype=torch.float64).reshape(1, 2, 1, 1, 1), spec)
    k = 9
    x = spec.to_model(torch.tensor(float(k))).reshape(1, 1, 1, 1)

    def cdf(v):
        return 1 / (1 + math.exp(-(v - loc) / math.exp(log_s)))
    half = 0.5 / spec.scale
    assert float(dist.log_prob(x).exp()) == pytest.approx(cdf(float(x) + half) - cdf(float(x) - half), rel=1e-10)
    params = torch.tensor([40.0, -7.0], dtype=torch.float64).reshape(1, 2, 1, 1, 1).requires_grad_()
    v = make_likelihood("logistic", params, spec).log_prob(x)  # a level far below the location
    v.backward()
    assert torch.isfinite(v).all() and torch.isfinite(params.grad).all() and float(v.detach()) < -100


def test_gaussian_likelihood_is_the_normal_density():
    spec = POINTS
    params = torch.randn(2, 2, 5, dtype=torch.float64)
    dist = make_likelihood("gaussian", params, spec)
    x = torch.randn(2, 5, dtype=torch.float64)
    std = torch.nn.functional.softplus(params[:, 1]) + 1e-3
    ref = torch.distributions.Normal(params[:, 0], std).log_prob(x).sum(1)
    torch.testing.assert_close(dist.log_prob(x), ref)


# --- models: shapes, gradients, save/load ----------------------------------------------

@pytest.mark.parametrize("lik,net", CASES)
def test_vae_shapes_and_gradients_reach_encoder_and_decoder(lik, net):
    m = _vae(lik, net)
    x = _binary_batch() if lik == "bernoulli" else _levels_batch()
    obj = ELBO()
    obj.setup(m, DIGITS)
    out = obj.loss("model", m, Batch(x), generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    for part in (m.encoder, m.decoder):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)
    assert m.sample(4).shape == (4, 1, 8, 8)
    assert m.sample((2, 3)).shape == (2, 3, 1, 8, 8)
    assert m.reconstruct(x).shape == x.shape
    q = m.posterior(x)
    assert q.batch_shape == (6,) and q.event_shape == (3,)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(m.sample(3, generator=g1), m.sample(3, generator=g2))


def test_vae_on_flat_data_with_gaussian_decoder():
    m = _vae("gaussian", "mlp", spec=POINTS)
    x = torch.randn(7, 5)
    obj = IWAE(k=3)
    obj.setup(m, POINTS)
    obj.loss("model", m, Batch(x)).loss.backward()
    assert m.sample(2).shape == (2, 5) and m.reconstruct(x).shape == (7, 5)


@pytest.mark.parametrize("prior", ["standard", "vampprior"])
def test_vae_save_load_round_trip_keeps_posterior_prior_and_likelihood(tmp_path, prior):
    from genlab.build import load_config
    from genlab import load
    from genlab.train import fit

    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(
        "name: t\nseed: 0\ndata: {name: digits}\n"
        f"model: {{name: vae, latent_dim: 3, likelihood: logistic, prior: {prior}, pseudo_inputs: 4,\n"
        "        encoder: {name: mlp, hidden: 16}, decoder: {name: mlp, hidden: 16}}\n"
        "objective: {name: elbo}\ntrain: {steps: 3, batch_size: 8, sample_every: 0, ckpt_every: 0}\n"
        "eval: {metrics: []}\n")
    fit(load_config(cfg_path), tmp_path / "run")
    m = load(tmp_path / "run")
    x = _levels_batch()
    ref = VAE(data_spec=DIGITS, latent_dim=3, likelihood="logistic", prior=prior, pseudo_inputs=4,
              encoder={"name": "mlp", "hidden": 16}, decoder={"name": "mlp", "hidden": 16})
    ref.load_state_dict(m.state_dict())
    z = torch.randn(4, 3)
    torch.testing.assert_close(m.posterior(x).mean, ref.posterior(x).mean)
    torch.testing.assert_close(m.likelihood(z).log_prob(x[:4]), ref.likelihood(z).log_prob(x[:4]))
    torch.testing.assert_close(m.prior().log_prob(z), ref.prior().log_prob(z))


# --- bounds: exactness and ordering --------------------------------------------------------

def _ppca(seed: int = 0) -> LinearGaussian:
    torch.manual_seed(seed)
    return LinearGaussian(data_spec=POINTS, latent_dim=2, noise_std=0.7).double()


def test_elbo_equals_log_px_when_the_posterior_is_exact():
    m = _ppca()
    x = m.sample(16).double()
    obj = ELBO(samples=4)
    obj.setup(m, POINTS)
    rec, kl = obj.terms(m, x, None, torch.Generator().manual_seed(0))
    torch.testing.assert_close(rec - kl, m.log_prob(x), atol=1e-9, rtol=0)
    iw = IWAE(k=7)
    iw.setup(m, POINTS)
    torch.testing.assert_close(iw.bound(m, x, None, torch.Generator().manual_seed(1)), m.log_prob(x),
                               atol=1e-9, rtol=0)


def test_iwae_bound_increases_with_k_and_converges_to_log_px():
    m = _ppca()
    x = m.sample(200).double()
    with torch.no_grad():
        exact = float(m.log_prob(x).mean())
    values = []
    for k in (1, 10, 100, 3000):
        met = IWAEBound(k=k, proposal="prior", data_spec=POINTS, seed=3)
        met.update(m, Batch(x))
        values.append(met.compute()["iwae_log_px"])
    assert all(a < b for a, b in zip(values, values[1:])), values
    assert values[-1] <= exact + 0.02 and values[-1] == pytest.approx(exact, abs=0.05), (values, exact)
    assert values[0] < exact - 0.5  # the prior is a poor proposal: k = 1 is loose


def test_kl_warmup_weight_and_analytic_kl_matches_sampled_kl():
    obj = ELBO(beta=0.5, warmup=100)
    assert [obj.kl_weight(s) for s in (0, 50, 100, 400)] == [0.0, 0.25, 0.5, 0.5]
    m = _vae("logistic", "mlp").double()
    x = _levels_batch().double()
    _, kl_exact = ELBO(kl="analytic").terms(m, x, None)
    q = m.posterior(x)
    z = q.sample((40000,))
    kl_mc = kl_term(q, m.prior(), z, "sample")
    torch.testing.assert_close(kl_mc, kl_exact, atol=0.03, rtol=0.02)


def test_vampprior_is_the_mixture_of_posteriors_at_the_pseudo_inputs():
    m = _vae("logistic", "mlp", prior="vampprior", pseudo_inputs=5).double()
    z = torch.randn(4, 3, dtype=torch.float64)
    q = m.posterior(m.pseudo)
    manual = torch.logsumexp(q.log_prob(z.unsqueeze(1)), 1) - math.log(5)
    torch.testing.assert_close(m.prior().log_prob(z), manual)
    obj = ELBO()  # no analytic KL for a mixture prior: auto falls back to the sampled KL
    obj.setup(m, DIGITS)
    assert torch.isfinite(obj.loss("model", m, Batch(_levels_batch().double())).loss)
    with pytest.raises(ValueError, match="no analytic KL"):
        bad = ELBO(kl="analytic")
        bad.setup(m, DIGITS)
        bad.loss("model", m, Batch(_levels_batch().double()))


# --- objectives learn what they should ------------------------------------------------------

@pytest.mark.parametrize("objective", [ELBO(), IWAE(k=5)])
def test_variational_objectives_fit_a_linear_gaussian_to_ppca_data(objective):
    from genlab.experiments import simple_fit

    truth = _ppca(seed=1).float()
    g = torch.Generator().manual_seed(0)
    data = truth.sample(4000, generator=g)
    test = truth.sample(1000, generator=g)
    torch.manual_seed(2)
    model = LinearGaussian(data_spec=POINTS, latent_dim=2, noise_std=1.0)
    objective.setup(model, POINTS)

    def draw(n, gen):
        return data[torch.randint(len(data), (n,), generator=gen)]
    with torch.no_grad():
        before = float(model.log_prob(test).mean())
    simple_fit(model, objective, draw, steps=1500, lr=2e-2, batch_size=128, betas=(0.9, 0.999), decay=True)
    with torch.no_grad():
        after, best = float(model.log_prob(test).mean()), float(truth.log_prob(test).mean())
    assert after > before + 1.0 and after == pytest.approx(best, abs=0.05), (before, after, best)


def test_vae_beats_independent_pixels_on_binarised_digits():
    from genlab.experiments import simple_fit

    ds = digits(binarize="threshold")
    spec = ds.spec
    train, test = spec.to_model(ds.train), ds.test
    torch.manual_seed(0)
    m = VAE(data_spec=spec, likelihood="bernoulli", latent_dim=8, encoder={"name": "mlp", "hidden": 64, "depth": 1},
            decoder={"name": "mlp", "hidden": 64, "depth": 1})
    obj = IWAE(k=5)
    obj.setup(m, spec)
    simple_fit(m, obj, lambda n, g: train[torch.randint(len(train), (n,), generator=g)], steps=400, lr=3e-3,
               batch_size=64, betas=(0.9, 0.999))
    met = IWAEBound(k=100, dataset=ds)
    met.update(m, Batch(test))
    vae = met.compute()["iwae_log_px"]
    p = ((ds.train == 16).float().mean(0) * 0.998 + 0.001)  # independent Bernoulli pixels, smoothed
    on = (test == 16).float()
    indep = float((on * p.log() + (1 - on) * (1 - p).log()).flatten(1).sum(1).mean())
    assert vae > indep + 5.0, (vae, indep)


# --- conditional model, metrics, data ---------------------------------------------------------

def test_conditional_vae_uses_labels_and_unconditional_refuses_them():
    m = _vae("logistic", "conv", cls=ConditionalVAE).double()
    x = _levels_batch().double()
    y0, y1 = torch.zeros(6, dtype=torch.long), torch.ones(6, dtype=torch.long)
    z = torch.randn(6, 3, dtype=torch.float64)
    assert not torch.allclose(m.likelihood(z, context=y0).log_prob(x), m.likelihood(z, context=y1).log_prob(x))
    assert not torch.allclose(m.posterior(x, context=y0).mean, m.posterior(x, context=y1).mean)
    assert m.sample(4, context=torch.arange(4)).shape == (4, 1, 8, 8)
    obj = IWAE(k=2)
    obj.setup(m, DIGITS)
    assert torch.isfinite(obj.loss("model", m, Batch(x, y0)).loss)
    with pytest.raises(ValueError, match="is conditional"):
        m.posterior(x)
    with pytest.raises(ValueError, match="unconditional"):
        _vae("logistic", "mlp").posterior(x.float(), context=y0)
    with pytest.raises(ValueError, match="labelled data"):
        ConditionalVAE(data_spec=POINTS, likelihood="gaussian")


def test_latent_marginal_test_separates_matched_from_mismatched_aggregate_posteriors():
    """Data drawn from the model itself with its exact posterior: q(z) = p(z), so p-values are
    uniform (over 8 seeds at most 2 fall below 0.05); shifted data: always detected."""
    m = _ppca()
    low = 0
    for s in range(8):
        g = torch.Generator().manual_seed(1000 + s)  # independent of the metric's own noise (seed s)
        matched = LatentMarginal(data_spec=POINTS, seed=s, permutations=100, c2st_steps=50)
        matched.update(m, Batch(m.sample(300, generator=g)))
        a = matched.compute()
        low += (a["latent_mmd_pvalue"] < 0.05) + (a["latent_c2st_pvalue"] < 0.05)
    assert low <= 3, low
    shifted = LatentMarginal(data_spec=POINTS, seed=0, permutations=100, c2st_steps=50)
    shifted.update(m, Batch(m.sample(300, generator=torch.Generator().manual_seed(7)) + 3.0))
    b = shifted.compute()
    assert b["latent_mmd_pvalue"] <= 1 / 101 + 1e-9 and b["latent_c2st_pvalue"] < 1e-4, b  # smallest possible p


def test_binarised_digits_options():
    t = digits(binarize="threshold")
    assert set(t.train.unique().tolist()) == {0.0, 16.0} and t.spec.name == "digits_binary"
    raw = digits()
    torch.testing.assert_close(t.train, 16.0 * (raw.train > 8).float())
    s1, s2 = digits(binarize="stochastic", seed=3), digits(binarize="stochastic", seed=3)
    assert torch.equal(s1.train, s2.train) and not torch.equal(s1.train, digits(binarize="stochastic", seed=4).train)
    assert abs(float((s1.train == 16).float().mean()) - float((raw.train / 16).mean())) < 0.01
    with pytest.raises(ValueError, match="binarize"):
        digits(binarize="sometimes")


def test_bernoulli_decoder_on_grey_digits_is_a_clear_error():
    m = _vae("bernoulli", "mlp")
    obj = ELBO()
    obj.setup(m, DIGITS)
    with pytest.raises(ValueError, match="binarise it"):
        obj.loss("model", m, Batch(_levels_batch()))


# --- hierarchical prior, GECO, interpolation ---------------------------------------------------

def test_hierarchical_prior_importance_estimate_matches_quadrature_and_is_deterministic_in_eval():
    from genlab.models.priors import HierarchicalPriorNets, _gaussian

    torch.manual_seed(0)
    nets = HierarchicalPriorNets(latent_dim=2, hyper_dim=1, hidden=16, depth=1, samples=20000).double()
    with torch.no_grad():
        for p in nets.conditional_prior.parameters():
            p.add_(0.3 * torch.randn_like(p))
        last = nets.hyper_posterior.net[-1]  # a broad proposal q(zeta|z) = N(0, 1.5^2): the estimate converges
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0, math.log(math.expm1(1.5))], dtype=torch.float64))
    z = torch.randn(5, 2, dtype=torch.float64)
    grid = torch.linspace(-8, 8, 8001, dtype=torch.float64).unsqueeze(1)  # quadrature over zeta
    with torch.no_grad():
        cond = _gaussian(nets.conditional_prior(grid))
        log_joint = cond.log_prob(z.unsqueeze(1)) + torch.distributions.Normal(0.0, 1.0).log_prob(grid[:, 0])
        exact = torch.logsumexp(log_joint, 1) + math.log(float(grid[1] - grid[0]))
        nets.eval()
        est = nets.distribution().log_prob(z)
        again = nets.distribution().log_prob(z)
    torch.testing.assert_close(est, exact, atol=0.01, rtol=0)
    assert torch.equal(est, again)  # eval mode: a fixed inner generator
    m = _vae("gaussian", "mlp", spec=POINTS, prior="hierarchical", hyper_dim=2, prior_samples=4)
    assert m.sample(6).shape == (6, 5) and m.sample_prior(3).shape == (3, 3)
    obj = ELBO()
    obj.setup(m, POINTS)
    out = obj.loss("model", m, Batch(torch.randn(8, 5)))
    out.loss.backward()
    assert all(p.grad is not None for p in m.hyperprior.parameters())


def test_geco_multiplier_rises_while_violated_falls_when_satisfied_and_is_saved():
    from genlab.objectives.variational import GECO

    obj = GECO(tolerance=0.1, rate=0.5, ma=0.0)
    obj._last_c = 0.3  # violated
    obj.after_step("model")
    assert float(obj.lagrange) == pytest.approx(math.exp(0.5))  # relative violation clipped to 1
    obj._last_c = 0.05  # satisfied by half the tolerance
    obj.after_step("model")
    assert float(obj.lagrange) == pytest.approx(math.exp(0.5) * math.exp(-0.25))
    state = obj.state_dict()
    assert {"lagrange", "c_ma"} <= set(state) and float(state["c_ma"]) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="lambda_min"):
        GECO(lambda_init=1e6)


def test_geco_reaches_its_reconstruction_constraint_on_ppca_data():
    from genlab.experiments import simple_fit
    from genlab.objectives.variational import GECO

    truth = _ppca(seed=1).float()
    data = truth.sample(4000, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(2)
    model = LinearGaussian(data_spec=POINTS, latent_dim=2, noise_std=1.0)
    obj = GECO(tolerance=0.9, rate=0.05)
    obj.setup(model, POINTS)
    simple_fit(model, obj, lambda n, g: data[torch.randint(len(data), (n,), generator=g)], steps=1500, lr=1e-2,
               batch_size=128, betas=(0.9, 0.999))
    assert float(obj.c_ma) == pytest.approx(0.9, rel=0.1), float(obj.c_ma)


def test_graph_path_follows_the_data_and_resampling_is_even():
    from genlab.sampling.interpolation import graph_path, linear_path, resample_path

    angles = torch.linspace(0, 2 * math.pi, 200)[:-1]
    ring = torch.stack([angles.cos(), angles.sin()], 1).double()
    a, b = ring[0], ring[100]  # opposite points
    path = graph_path(ring, a, b, k=3)
    assert torch.allclose(path.norm(dim=1), torch.ones(len(path), dtype=torch.float64), atol=1e-6)
    assert float(linear_path(a, b, 5)[2].norm()) < 0.05  # the straight line crosses the empty centre
    even = resample_path(path, 9)
    steps = (even[1:] - even[:-1]).norm(dim=1)
    assert float(steps.max() - steps.min()) < 0.05 and torch.allclose(even[0], a) and torch.allclose(even[-1], b)
    with pytest.raises(ValueError, match="not connected"):
        graph_path(torch.cat([ring, ring + 10]), ring[0], ring[0] + 10, k=2)


def test_variational_objectives_refuse_an_implicit_posterior_at_setup():
    m = _vae("logistic", "mlp", posterior="implicit", noise_dim=2)
    for obj in (ELBO(), IWAE(k=2)):
        with pytest.raises(ValueError, match="implicit"):
            obj.setup(m, DIGITS)


def test_conditional_model_with_hidden_labels_is_refused_before_training():
    from genlab.build import validate
    from genlab.config import from_dict
    from genlab.kwargs import ConfigError

    cfg = from_dict({"data": {"name": "digits", "labelled": 100}, "model": {"name": "cond_vae"},
                     "objective": {"name": "elbo"}})
    with pytest.raises(ConfigError, match="data.labelled"):
        validate(cfg)
    validate(from_dict({"data": {"name": "digits"}, "model": {"name": "cond_vae"}, "objective": {"name": "elbo"}}))
