"""Convolutional DRAW (Gregor et al. 2016, arXiv 1604.08772): shapes, gradients, the
autoregressive prior and posterior against quadrature, the generic ELBO/IWAE on it, save/load,
and conceptual compression on a briefly trained model."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.data.base import Batch, DataSpec, image_spec
from genlab.metrics.iwae import IWAEBound
from genlab.models.draw import ConvDRAW
from genlab.objectives.variational import ELBO, IWAE
from genlab.sampling.importance import sample_distribution

DIGITS = image_spec("digits", (1, 8, 8), levels=17, classes=10)
TINY = image_spec("tiny", (1, 2, 2), levels=17)  # downsample 1 -> a 1x1 map per step


def _model(spec: DataSpec = DIGITS, seed: int = 0, **kw) -> ConvDRAW:
    torch.manual_seed(seed)
    kw = {"steps": 3, "hidden": 8, "latent_channels": 2, **kw}
    return ConvDRAW(data_spec=spec, **kw)


def _binary(n: int = 6, spec: DataSpec = DIGITS, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return spec.to_model(16.0 * (torch.rand(n, *spec.event_shape, generator=g) > 0.5).float())


def _perturb(m: ConvDRAW, scale: float = 0.5, seed: int = 3) -> ConvDRAW:
    """Larger weights: the step-2 prior/posterior then depends strongly on the step-1 code."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return m


# --- shapes and refusals -------------------------------------------------------------------------

def test_shapes_of_codes_samples_reconstructions_and_step_terms():
    m = _model(likelihood="logistic")
    x = _binary()
    assert m.latent_shape == (3 * 2 * 4 * 4,) and m.step_dim == 32
    q = m.posterior(x)
    assert q.batch_shape == (6,) and q.event_shape == (96,)
    assert q.rsample().shape == (6, 96) and q.rsample((5,)).shape == (5, 6, 96)
    assert q.log_prob(q.rsample((5,))).shape == (5, 6)
    p = m.prior()
    assert p.sample((4,)).shape == (4, 96) and p.log_prob(torch.randn(2, 3, 96)).shape == (2, 3)
    assert p.expand((6,)).log_prob(torch.randn(7, 6, 96)).shape == (7, 6)
    assert m.likelihood(torch.randn(4, 96)).batch_shape == (4,)
    assert m.sample(4).shape == (4, 1, 8, 8) and m.sample((2, 3)).shape == (2, 3, 1, 8, 8)
    assert m.reconstruct(x).shape == x.shape
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(m.sample(3, generator=g1), m.sample(3, generator=g2))
    st = m.step_terms(x)
    assert st["kl"].shape == st["log_ratio"].shape == (6, 3) and st["rec"].shape == (6,)
    assert st["means"].shape == (6, 3, 1, 8, 8) and bool((st["kl"] >= 0).all())
    dist, kl = m.partial_likelihood(x, 2)
    assert kl.shape == (6, 2) and dist.log_prob(x).shape == (6,)
    with pytest.raises(NotImplementedError, match="autoregressive"):
        _ = q.mean


def test_bad_configurations_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="image data"):
        ConvDRAW(data_spec=DataSpec(name="pts", kind="points", event_shape=(5,)))
    with pytest.raises(ValueError, match="divisible by 4"):
        ConvDRAW(data_spec=image_spec("odd", (1, 6, 6), levels=17), downsample=2)
    with pytest.raises(ValueError, match="needs discrete data"):
        ConvDRAW(data_spec=DataSpec(name="c", kind="image", event_shape=(1, 8, 8)), likelihood="bernoulli")
    m = _model()
    with pytest.raises(ValueError, match="unconditional"):
        m.posterior(_binary(), context=torch.zeros(6, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        m.posterior(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="t must be in 0..3"):
        m.partial_likelihood(_binary(), 4)


# --- gradients and the generic objectives -----------------------------------------------------------

def test_elbo_gradients_reach_encoder_decoder_and_prior_nets():
    m = _model()
    obj = ELBO()
    obj.setup(m, DIGITS)
    obj.loss("model", m, Batch(_binary()), generator=torch.Generator().manual_seed(0)).loss.backward()
    parts = {"encoder": [m.read, m.encoder, m.posterior_head], "decoder": [m.decoder, m.read_canvas, m.write],
             "prior": [m.prior_head]}
    for name, mods in parts.items():
        for mod in mods:
            grads = [p.grad for p in mod.parameters()]
            assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads), name
    assert m.canvas0.grad is not None and float(m.canvas0.grad.abs().sum()) > 0


def test_per_step_terms_sum_to_the_generic_elbo_for_the_same_noise():
    m = _model().double()
    x = _binary().double()
    obj = ELBO()
    obj.setup(m, DIGITS)
    rec, kl = obj.terms(m, x, None, torch.Generator().manual_seed(7))
    z = sample_distribution(m.posterior(x), (1,), generator=torch.Generator().manual_seed(7))[0]
    st = m.step_terms(x, z=z)
    torch.testing.assert_close(st["rec"], rec)
    torch.testing.assert_close(st["log_ratio"].sum(1), kl)  # the objective's single-sample KL
    # the analytic per-step KLs are another estimate of the same KL(q || p): equal in expectation
    many = m.step_terms(x.repeat(400, 1, 1, 1), generator=torch.Generator().manual_seed(8))
    a, s = many["kl"].sum(1).reshape(400, 6), many["log_ratio"].sum(1).reshape(400, 6)
    se = (s - a).std(0) / math.sqrt(400)
    assert bool(((s - a).mean(0).abs() < 4 * se + 1e-6).all()), ((s - a).mean(0), se)
    # a cached posterior draw and a fresh teacher-forced log q agree
    q = m.posterior(x)
    zz = q.rsample((2,))
    torch.testing.assert_close(q.log_prob(zz), m.posterior(x).log_prob(zz.clone()))


def test_iwae_objective_runs_and_the_iwae_metric_increases_with_k():
    m = _model()
    x = _binary(32)
    iw = IWAE(k=3)
    iw.setup(m, DIGITS)
    iw.loss("model", m, Batch(x)).loss.backward()
    data = DIGITS.to_data(x)
    values = []
    for k in (1, 10, 100):
        met = IWAEBound(k=k, data_spec=DIGITS, seed=0)
        met.update(m, Batch(data))
        values.append(met.values())
    means = [float(v.mean()) for v in values]
    for lo, hi in zip(values, values[1:]):
        d = hi - lo
        assert float(d.mean()) > 2 * float(d.std()) / math.sqrt(len(d)), means


def test_ais_and_latent_metrics_run_on_the_sequence_distributions():
    from genlab.metrics.ais import AISLatent
    from genlab.metrics.latent import LatentMarginal

    m = _model(likelihood="bernoulli")
    data = DIGITS.to_data(_binary(4))
    ais = AISLatent(steps=3, chains=2, data_spec=DIGITS, progress=False)
    ais.update(m, Batch(data))
    assert bool(torch.isfinite(ais.values()).all())
    lat = LatentMarginal(data_spec=DIGITS, permutations=10, c2st_steps=5)
    lat.update(m, Batch(DIGITS.to_data(_binary(40))))
    assert lat.codes()[0].shape == lat.codes()[1].shape == (40, 96)


# --- the autoregressive prior and posterior are the distributions they sample -------------------------

def test_one_step_one_dim_prior_is_the_normal_of_the_prior_head_bias():
    m = _model(TINY, steps=1, latent_channels=1, hidden=4).double()
    assert m.latent_shape == (1,)
    b = m.prior_head.bias.detach()
    ref = torch.distributions.Normal(b[0], torch.nn.functional.softplus(b[1]) + 1e-4)
    z = torch.linspace(-3, 3, 13, dtype=torch.float64).unsqueeze(1)
    torch.testing.assert_close(m.prior().log_prob(z), ref.log_prob(z[:, 0]))
    s = m.prior().sample((20000,), generator=torch.Generator().manual_seed(0))[:, 0]
    assert float(s.mean()) == pytest.approx(float(ref.mean), abs=4 * float(ref.stddev) / math.sqrt(20000))
    assert float(s.std()) == pytest.approx(float(ref.stddev), rel=0.03)


@pytest.mark.parametrize("which", ["prior", "posterior"])
def test_two_step_sequential_sampling_matches_log_prob_by_quadrature(which):
    """T = 2 one-dimensional steps: p(z1, z2) on a grid (from log_prob) integrates to 1 and its
    moments, including E[z1 z2] (the dependence through the decoder), match sequential draws."""
    m = _perturb(_model(TINY, steps=2, latent_channels=1, hidden=4), scale=1.0, seed=4).double()
    with torch.no_grad():  # sharper heads: the step-2 distribution then moves with z1
        m.prior_head.weight.mul_(3.0)
        m.posterior_head.weight.mul_(3.0)
    x = TINY.to_model(torch.tensor([[[[16.0, 0.0], [0.0, 16.0]]]], dtype=torch.float64))
    dist = m.prior() if which == "prior" else m.posterior(x)
    with torch.no_grad():
        s = dist.sample((40000,), generator=torch.Generator().manual_seed(1)).reshape(40000, 2)
        lo, hi = s.min(0).values, s.max(0).values
        pad = 0.5 * (hi - lo)
        axes = [torch.linspace(float(lo[i] - pad[i]), float(hi[i] + pad[i]), 401, dtype=torch.float64)
                for i in range(2)]
        z1, z2 = torch.meshgrid(*axes, indexing="ij")
        pts = torch.stack([z1.flatten(), z2.flatten()], 1)
        lp = dist.log_prob(pts if which == "prior" else pts.unsqueeze(1)).reshape(z1.shape)
        dens = lp.exp() * float(axes[0][1] - axes[0][0]) * float(axes[1][1] - axes[1][0])
    assert float(dens.sum()) == pytest.approx(1.0, abs=1e-3)
    for f in (lambda a, b: a, lambda a, b: b, lambda a, b: a * b, lambda a, b: b * b):
        exact = float((f(z1, z2) * dens).sum())
        mc = f(s[:, 0], s[:, 1])
        assert float(mc.mean()) == pytest.approx(exact, abs=5 * float(mc.std()) / math.sqrt(len(mc))), which
    if which == "prior":  # the dependence is real: z2's mean moves with z1 (else this test is weak)
        low, high = s[:, 0] < s[:, 0].quantile(0.2), s[:, 0] > s[:, 0].quantile(0.8)
        assert abs(float(s[high, 1].mean() - s[low, 1].mean())) > 0.3


# --- save/load, conceptual compression ------------------------------------------------------------

def test_train_and_load_round_trip(tmp_path):
    from genlab import load
    from genlab.build import load_config
    from genlab.train import fit

    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(
        "name: t\nseed: 0\ndata: {name: digits, binarize: threshold}\n"
        "model: {name: conv_draw, steps: 2, hidden: 4, latent_channels: 1, likelihood: bernoulli}\n"
        "objective: {name: elbo}\ntrain: {steps: 2, batch_size: 8, sample_every: 0, ckpt_every: 0}\n"
        "eval: {metrics: []}\n")
    fit(load_config(cfg_path), tmp_path / "run")
    m = load(tmp_path / "run")
    ref = ConvDRAW(data_spec=m.spec, steps=2, hidden=4, latent_channels=1, likelihood="bernoulli")
    ref.load_state_dict(m.state_dict())
    x = _binary(5)
    z = torch.randn(5, m.latent_shape[0])
    torch.testing.assert_close(m.prior().log_prob(z), ref.prior().log_prob(z))
    torch.testing.assert_close(m.posterior(x).log_prob(z), ref.posterior(x).log_prob(z))
    torch.testing.assert_close(m.likelihood(z).log_prob(x), ref.likelihood(z).log_prob(x))
    assert float(m.canvas0.detach().abs().sum()) > 0  # trained weights came back, not the zero init


def test_trained_model_reconstructions_improve_as_iterations_are_added():
    """A small model trained briefly on binarised digits: decoding more posterior iterations
    (the rest at the prior mean) lowers the distortion -log p(x | z), and the rate per
    iteration is positive where the encoder is used."""
    from genlab.data.digits import digits
    from genlab.experiments import simple_fit

    ds = digits(binarize="threshold")
    spec = ds.spec
    train, test = spec.to_model(ds.train), spec.to_model(ds.test[:100])
    m = _model(spec, steps=4, hidden=8, latent_channels=2, likelihood="bernoulli")
    obj = ELBO(warmup=100)  # without a KL warm-up this small model's posterior collapses
    obj.setup(m, spec)
    simple_fit(m, obj, lambda n, g: train[torch.randint(len(train), (n,), generator=g)], steps=250, lr=3e-3,
               batch_size=32, betas=(0.9, 0.999))
    m.eval()
    with torch.no_grad():
        dist = []
        for t in range(5):
            p, _ = m.partial_likelihood(test, t, generator=torch.Generator().manual_seed(0))
            dist.append(-p.log_prob(test))
        st = m.step_terms(test, generator=torch.Generator().manual_seed(0))
    d = [float(v.mean()) for v in dist]
    assert d[4] < d[0] - 3.0, d  # all iterations from the posterior beat none by nats per image
    for a, b in ((0, 2), (2, 4)):  # paired over images: each added pair of iterations helps
        diff = dist[a] - dist[b]
        assert float(diff.mean()) > 3 * float(diff.std()) / math.sqrt(len(diff)), (a, b, d)
    assert float(st["kl"].sum(1).mean()) > 1.0


def test_recipe_builds_and_the_bench_is_wired():
    from pathlib import Path

    import genlab
    from genlab.build import build, load_config
    from genlab.cli.commands import BENCHES
    from genlab.experiments import EXPERIMENTS

    cfg = load_config(Path(genlab.__file__).parent / "recipes" / "digits-conv-draw.yaml", [])
    exp = build(cfg)
    assert isinstance(exp.model, ConvDRAW) and exp.model.latent_shape == (8 * 4 * 4 * 4,)
    assert BENCHES["conv-draw"] == "conv_draw" and "conv_draw" in EXPERIMENTS


def test_bench_verdicts_on_known_curves():
    """The bench's two checks: a bent rate-distortion curve holds, a straight one does not."""
    from genlab.experiments.conv_draw import claims

    g = torch.Generator().manual_seed(0)
    rate = torch.linspace(0, 8, 9, dtype=torch.float64).unsqueeze(1).repeat(1, 200)  # 1 nat per iteration
    noise = 0.05 * torch.randn(9, 200, generator=g, dtype=torch.float64)
    bent = claims({"nll_mean": 30 * torch.exp(-rate / 3) + noise, "rate": rate})
    straight = claims({"nll_mean": 30 - 2 * rate + noise, "rate": rate})
    assert bent["bend"]["verdict"] == bent["early"]["verdict"] == "holds"
    assert straight["bend"]["verdict"] == straight["early"]["verdict"] == "equal within 2 s.e."
