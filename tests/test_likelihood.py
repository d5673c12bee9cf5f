"""Maximum likelihood, dequantisation and exact bits/dim."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from genlab.data.base import Batch
from genlab.capabilities import CapabilityError, check_requirements
from genlab.data.base import DataSpec, image_spec
from genlab.data.dequantize import VariationalDequantizer, uniform_dequantize
from genlab.data.digits import digits
from genlab.data.synthetic import ring8
from genlab.metrics.bpd import BitsPerDim
from genlab.models.base import DensityModel
from genlab.models.flows import MAF, RealNVP
from genlab.models.gan import MLPGenerator
from genlab.objectives.likelihood import MaximumLikelihood
from genlab.models.independent import IndependentPixels


class UniformBox(DensityModel):
    """Uniform density on the model-space dequantisation box of ``spec``."""

    def __init__(self, spec: DataSpec):
        super().__init__()
        self.spec, self.event_shape = spec, torch.Size(spec.event_shape)
        self.half = (1 + 1 / (2 * spec.scale))  # box [-half, half] when shift == scale

    def log_prob(self, x, *, context=None):
        inside = (x.abs() <= self.half).reshape(x.shape[0], -1).all(1)
        lp = torch.full((x.shape[0],), -self.spec.dim * math.log(2 * self.half), dtype=x.dtype)
        return torch.where(inside, lp, torch.full_like(lp, -math.inf))

    def _sample(self, n, *, context, generator):
        return (torch.rand(n, *self.event_shape, generator=generator) * 2 - 1) * self.half


class Gauss1D(DensityModel):
    """``N(mean, std^2)`` on one model-space dimension."""

    def __init__(self, mean: float, std: float):
        super().__init__()
        self.mean, self.std, self.event_shape = mean, std, torch.Size((1,))

    def log_prob(self, x, *, context=None):
        return torch.distributions.Normal(self.mean, self.std).log_prob(x[:, 0])

    def _sample(self, n, *, context, generator):
        return self.mean + self.std * torch.randn(n, 1, generator=generator)


SPEC1 = DataSpec(name="five", kind="image", event_shape=(1,), levels=5, shift=2.0, scale=2.0)


def _exact_log_p(model: Gauss1D, k: torch.Tensor) -> torch.Tensor:
    lo = (k - 0.5 - SPEC1.shift) / SPEC1.scale
    hi = (k + 0.5 - SPEC1.shift) / SPEC1.scale
    p = norm.cdf(hi.numpy(), model.mean, model.std) - norm.cdf(lo.numpy(), model.mean, model.std)
    return torch.tensor(np.log(p))


@pytest.mark.parametrize("samples", [1, 4])
def test_uniform_model_gives_exactly_log2_levels(samples):
    data = digits()
    model = UniformBox(data.spec)
    metric = BitsPerDim(dataset=data, samples=samples)
    metric.update(model, Batch(data.test))
    out = metric.compute()
    assert out["bpd"] == pytest.approx(math.log2(17), abs=1e-6)  # float32 rounding only
    assert out["nll"] == pytest.approx(64 * math.log(17), abs=1e-4)
    obj = MaximumLikelihood()
    obj.setup(model, data.spec)
    logs = obj.loss("model", model, Batch(data.spec.to_model(data.test[:50])), generator=torch.Generator().manual_seed(0)).logs
    assert logs["bpd"] == pytest.approx(math.log2(17), abs=1e-6)


def test_uniform_discrete_model_gives_exactly_log2_levels():
    data = digits()
    metric = BitsPerDim(dataset=data)
    metric.update(IndependentPixels(data_spec=data.spec).double(), Batch(data.test))
    assert metric.compute()["bpd"] == pytest.approx(math.log2(17), abs=1e-12)


def test_k_sample_bound_is_a_bound_and_converges_to_the_exact_mass():
    model = Gauss1D(mean=0.1, std=0.3)
    g = torch.Generator().manual_seed(0)
    k = torch.randint(0, 5, (2000, 1), generator=g).double()
    exact = _exact_log_p(model, k[:, 0])
    exact_bpd = float(-exact.mean() / math.log(2))
    results = {}
    for K in (1, 1000):
        m = BitsPerDim(data_spec=SPEC1, samples=K, seed=1)
        m.update(model, Batch(k))
        results[K] = m.compute()["bpd"]
    assert results[1] > exact_bpd + 0.01, "K=1 should show a Jensen gap here"
    assert results[1000] >= exact_bpd - 1e-3
    assert results[1000] == pytest.approx(exact_bpd, abs=2e-3)


def test_variational_dequantizer_density_is_normalised_and_consistent():
    torch.manual_seed(0)
    deq = VariationalDequantizer(spec=SPEC1, hidden=8).double()
    with torch.no_grad():
        for p in deq.parameters():
            p.add_(0.3 * torch.randn_like(p))
        x = SPEC1.to_model(torch.tensor([[3.0]], dtype=torch.float64))
        n = 20000
        v = (torch.arange(n, dtype=torch.float64) + 0.5) / n
        mass = deq.log_density(v[:, None], x.expand(n, 1)).exp().mean()
        assert float(mass) == pytest.approx(1.0, abs=1e-3)
        xs = x.expand(8, 1)
        vs, log_q = deq.sample(xs, torch.Generator().manual_seed(0))
        torch.testing.assert_close(log_q, deq.log_density(vs, xs))


def test_variational_bound_never_beats_exact_and_training_tightens_it():
    torch.manual_seed(0)
    model = Gauss1D(mean=0.1, std=0.3)
    obj = MaximumLikelihood(dequantize="variational", hidden=16)
    obj.setup(model, SPEC1)
    params = obj.player_parameters(model)["model"]
    assert {id(p) for p in obj.dequantizer.parameters()} <= {id(p) for p in params}
    k = torch.randint(0, 5, (512, 1), generator=torch.Generator().manual_seed(0)).double()
    x = SPEC1.to_model(k)
    obj.double()
    exact = float(_exact_log_p(model, k[:, 0]).mean())
    g = torch.Generator().manual_seed(1)

    def bound(n=20):
        with torch.no_grad():
            vals = torch.stack([obj.data_log_prob(model, Batch(x), g) for _ in range(n)])
        return float(vals.mean()), float(vals.std() / math.sqrt(vals.numel()))

    before, se = bound()
    assert before <= exact + 3 * se
    opt = torch.optim.Adam(params, lr=1e-2)
    for _ in range(300):
        out = obj.loss("model", model, Batch(x), generator=g)
        opt.zero_grad(), out.loss.backward(), opt.step()
    after, se = bound()
    assert after <= exact + 3 * se, "a variational lower bound exceeded the exact log-probability"
    assert after > before + 0.05, "training q(v|k) did not tighten the bound"


def test_independent_pixels_closed_form_fit():
    data = digits()
    model = IndependentPixels(data_spec=data.spec).fit(data.train)
    k = data.train.reshape(len(data.train), -1).long().numpy()
    counts = np.stack([np.bincount(k[:, d], minlength=17) for d in range(64)])
    probs = (counts + 1) / (len(k) + 17)
    kt = data.test.reshape(len(data.test), -1).long().numpy()
    ref = np.log(probs[np.arange(64)[None, :], kt]).sum(1)
    lp = model.log_prob(data.spec.to_model(data.test)).detach().double().numpy()
    np.testing.assert_allclose(lp, ref, rtol=1e-5)
    with pytest.raises(ValueError, match="off-grid"):
        model.log_prob(uniform_dequantize(data.spec.to_model(data.test[:2]), data.spec))


def _train(model, data, steps, lr=3e-3, batch=256):
    obj = MaximumLikelihood()
    obj.setup(model, data.spec)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = data.spec.to_model(data.train[torch.randint(len(data.train), (batch,), generator=g)])
        out = obj.loss("model", model, Batch(x), generator=g)
        opt.zero_grad(), out.loss.backward(), opt.step()
    return model


@pytest.mark.parametrize("name", ["realnvp", "maf"])
def test_mle_learns_a_mixture_and_never_beats_its_entropy(name):
    data = ring8(n_train=8000, n_test=4000, std=0.2, seed=3)
    torch.manual_seed(0)
    model = (RealNVP(data_spec=data.spec, couplings=6, hidden=64) if name == "realnvp"
             else MAF(data_spec=data.spec, layers=5, hidden=[64, 64]))
    _train(model, data, 400)
    with torch.no_grad():
        log_q = model.log_prob(data.test).double()
    log_p = data.log_prob(data.test.double())
    entropy = float(-log_p.mean())
    gap = log_p - log_q  # mean is an unbiased estimate of KL(p || q) >= 0
    kl, se = float(gap.mean()), float(gap.std() / math.sqrt(len(gap)))
    gauss_nll = float(-torch.distributions.MultivariateNormal(
        data.train.double().mean(0), torch.cov(data.train.double().T)).log_prob(data.test.double()).mean())
    assert kl > -3 * se, f"held-out NLL {entropy + kl:.3f} is below the true entropy {entropy:.3f}"
    assert kl < 0.35, f"KL estimate {kl:.3f} nats: the flow did not learn the mixture"
    assert entropy + kl < gauss_nll - 0.3, "no better than a Gaussian fit"


def test_mle_requires_a_density_model():
    with pytest.raises(CapabilityError, match="log_prob"):
        check_requirements("objective 'mle'", MaximumLikelihood.requires, MLPGenerator, "mlp_generator")


def test_discrete_model_on_continuous_data_is_refused():
    spec = image_spec("d", (1, 2, 2), 3)
    model = IndependentPixels(data_spec=spec)
    obj = MaximumLikelihood()
    with pytest.raises(ValueError, match="continuous"):
        obj.setup(model, DataSpec(name="c", kind="image", event_shape=(1, 2, 2)))
    obj.setup(model, spec)
    x = spec.to_model(torch.tensor([[[[0.0, 1.0], [2.0, 1.0]]]]))
    out = obj.loss("model", model, Batch(x))
    assert out.logs["bpd"] == pytest.approx(math.log2(3), abs=1e-6)
