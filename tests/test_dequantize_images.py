"""Variational dequantisation (Flow++, arXiv 1902.00275) on digits images, not only 1-D.

An element-wise flow (``conv_flow`` with 1-tap kernels on one channel: every pixel goes
through the same monotone map) has an exact probability mass per image,
``P(k) = prod_i |Phi(T(x_i + 1/2s)) - Phi(T(x_i - 1/2s))|``, so the bounds can be checked
against the truth: trained by ``mle`` with ``dequantize: variational``, the variational
bound is below the exact ``log P(k)`` on held-out images (to Monte-Carlo error) and
tighter than the uniform bound of the same model. A multi-scale spline flow (``nsf``)
trains with the variational dequantiser too (finite, decreasing loss, the dequantiser
learns)."""

from __future__ import annotations

import math

import torch
from torch import special

from genlab.data.base import Batch
from genlab.data.dequantize import data_log_prob
from genlab.data.digits import digits
from genlab.models.flows import NSF
from genlab.models.flows.circular_conv import ConvFlow
from genlab.objectives.likelihood import MaximumLikelihood

DATA = digits()
SPEC = DATA.spec


def _variational(model, hidden: int = 64, depth: int = 2) -> MaximumLikelihood:
    obj = MaximumLikelihood(dequantize="variational", hidden=hidden, depth=depth)
    obj.setup(model, SPEC)
    return obj


def _fit(obj: MaximumLikelihood, model, steps: int, lr: float, batch: int = 128) -> list[float]:
    opt = torch.optim.Adam(obj.player_parameters(model)["model"], lr=lr)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        i = torch.randint(len(DATA.train), (batch,), generator=g)
        out = obj.loss("model", model, Batch(SPEC.to_model(DATA.train[i])), generator=g)
        opt.zero_grad(), out.loss.backward(), opt.step()
        losses.append(float(out.loss.detach()))
    return losses


def _exact_log_mass(model, x: torch.Tensor) -> torch.Tensor:
    """``log P(k)`` of an element-wise flow: the base mass of each pixel's bin image."""
    half = 0.5 / SPEC.scale
    zl, _ = model.inverse_and_log_det(x - half)
    zu, _ = model.inverse_and_log_det(x + half)
    a, b = torch.minimum(zl, zu), torch.maximum(zl, zu)
    flip = a > 0  # Phi(b) - Phi(a) = Phi(-a) - Phi(-b): stay in the lower tail
    a, b = torch.where(flip, -b, a), torch.where(flip, -a, b)
    lb, la = special.log_ndtr(b), special.log_ndtr(a)
    return (lb + torch.log1p(-torch.exp(la - lb))).reshape(len(x), -1).sum(1)


def test_variational_bound_is_below_the_exact_mass_and_tighter_than_uniform():
    torch.manual_seed(0)
    model = ConvFlow(data_spec=SPEC, blocks=2, kernel_size=1)
    obj = _variational(model)
    losses = _fit(obj, model, steps=300, lr=1e-2)
    assert sum(losses[-20:]) / 20 < sum(losses[:20]) / 20 - 0.5, "training did not move the model"
    model.double(), obj.dequantizer.double()
    x = SPEC.to_model(DATA.test[:200]).double()
    with torch.no_grad():
        # the model is element-wise: the Jacobian of one image is diagonal
        jac = torch.autograd.functional.jacobian(lambda v: model.inverse_and_log_det(v[None])[0][0], x[0])
        jac = jac.reshape(64, 64)
        off = jac - torch.diag(torch.diagonal(jac))
        assert off.abs().max() < 1e-12 * jac.abs().max(), "conv_flow(kernel_size=1) is not element-wise"
        exact = _exact_log_mass(model, x)
        g = torch.Generator().manual_seed(1)
        m = 32
        var = torch.stack([data_log_prob(model.log_prob, x, SPEC, discrete=False, dequantizer=obj.dequantizer,
                                         generator=g) for _ in range(m)])
        uni = torch.stack([data_log_prob(model.log_prob, x, SPEC, discrete=False, generator=g) for _ in range(m)])
        iw = data_log_prob(model.log_prob, x, SPEC, discrete=False, samples=512, generator=g)
    bits = SPEC.dim * math.log(2)
    # the exact mass is right: the 512-sample importance-weighted bound is below it and close
    assert float((iw - exact).mean()) < 0 and float((exact - iw).mean()) / bits < 0.02
    # the variational bound is a bound, example by example (to Monte-Carlo error)
    se = var.std(0) / math.sqrt(m)
    assert torch.all(var.mean(0) <= exact + 4 * se + 1e-9), float((var.mean(0) - exact).max())
    # and the learned q is tighter than uniform dequantisation of the same model
    gap_var, gap_uni = float((exact - var.mean(0)).mean()), float((exact - uni.mean(0)).mean())
    assert 0 < gap_var < gap_uni - 0.5, (gap_var, gap_uni)


def test_variational_dequantisation_trains_a_multiscale_spline_flow():
    torch.manual_seed(0)
    model = NSF(data_spec=SPEC, hidden=8, scales=2, per_scale=1, bins=4)
    obj = _variational(model, hidden=32, depth=1)
    before = [p.detach().clone() for p in obj.dequantizer.parameters()]
    losses = _fit(obj, model, steps=40, lr=3e-3, batch=64)
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, obj.dequantizer.parameters())), \
        "the dequantiser did not learn"
    x = SPEC.to_model(DATA.test[:64])
    with torch.no_grad():
        v, log_q = obj.dequantizer.sample(x, torch.Generator().manual_seed(2))
        assert torch.all((v > 0) & (v < 1))
        torch.testing.assert_close(obj.dequantizer.log_density(v, x), log_q, atol=1e-3, rtol=1e-4)
        bound = data_log_prob(model.log_prob, x, SPEC, discrete=False, dequantizer=obj.dequantizer)
    assert torch.isfinite(bound).all()
