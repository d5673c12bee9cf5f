"""Residual flows (arXiv 1906.02735), invertible convolutional flows (arXiv 1901.05442)
and flows on spheres (arXiv 1611.02304), plus the vMF mixture datasets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch
from flow_contract import (check_flow_contract, check_gradients, check_log_prob, check_save_load,
                           check_shapes, prepared)

from genlab.build import build_dataset, build_model
from genlab.data.base import DataSpec
from genlab.data.sphere import vmf_s1, vmf_s2
from genlab.models.flows.circular_conv import CircularConv, ConvFlow
from genlab.models.flows.residual import ResidualBlock, ResidualFlow, SpectralLinear, logdet_estimate, logdet_exact
from genlab.models.flows.sphere import SphereFlow

PTS3 = DataSpec(name="t3", kind="points", event_shape=(3,))
S2 = DataSpec(name="s2", kind="sphere", event_shape=(3,))
S1 = DataSpec(name="s1", kind="sphere", event_shape=(2,))


# --- contracts ---------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(3,), (2, 2)])
def test_residual_flow_contract_exact_mode(shape, tmp_path):
    spec = DataSpec(name="t", kind="points", event_shape=shape)
    model = check_flow_contract(lambda: ResidualFlow(data_spec=spec, blocks=2, hidden=8, logdet="exact"),
                                x=torch.randn(4, *shape, generator=torch.Generator().manual_seed(0)),
                                tmp_path=tmp_path)
    model.eval()  # eval mode uses eval_logdet="exact": same numbers
    x = torch.randn(3, *shape, dtype=torch.float64)
    z, ld = model.inverse_and_log_det(x)
    model.train()
    torch.testing.assert_close(model.inverse_and_log_det(x)[1], ld)


@pytest.mark.parametrize("shape,kernel_size", [((5,), None), ((6,), 3), ((2, 4, 3), None), ((3, 4, 4), 2),
                                               ((1, 4, 4), 3)])
def test_conv_flow_contract(shape, kernel_size, tmp_path):
    spec = DataSpec(name="t", kind="image" if len(shape) == 3 else "points", event_shape=shape)
    check_flow_contract(lambda: ConvFlow(data_spec=spec, blocks=2, kernel_size=kernel_size),
                        x=torch.randn(4, *shape, generator=torch.Generator().manual_seed(0)), tmp_path=tmp_path)


def _on_sphere(n: int, d: int, seed: int = 0) -> torch.Tensor:
    g = torch.randn(n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return g / g.norm(dim=1, keepdim=True)


def _chart(a: torch.Tensor) -> torch.Tensor:
    """Spherical angles -> unit vector: ``(theta,) -> S^1``, ``(theta, phi) -> S^2``."""
    if a.shape[-1] == 1:
        return torch.stack([a[..., 0].cos(), a[..., 0].sin()], -1)
    t, p = a[..., 0], a[..., 1]
    return torch.stack([t.sin() * p.cos(), t.sin() * p.sin(), t.cos()], -1)


def _angles(x: torch.Tensor) -> torch.Tensor:
    if x.shape[-1] == 2:
        return torch.atan2(x[..., 1], x[..., 0])[..., None]
    return torch.stack([torch.acos(x[..., 2]), torch.atan2(x[..., 1], x[..., 0])], -1)


def _riemannian_log_det(fn, x: torch.Tensor) -> torch.Tensor:
    """Surface-measure volume change of ``fn: S^n -> S^n`` at one point ``x``, from the
    Gram determinants of ambient autograd Jacobians through the angle chart."""
    a = _angles(x)
    j1 = torch.autograd.functional.jacobian(lambda b: fn(_chart(b)[None])[0], a)
    j0 = torch.autograd.functional.jacobian(_chart, a)
    return 0.5 * (torch.logdet(j1.T @ j1) - torch.logdet(j0.T @ j0))


@pytest.mark.parametrize("spec", [S1, S2], ids=["S1", "S2"])
@pytest.mark.parametrize("base", ["uniform", "normal"])
def test_sphere_flow_contract(spec, base, tmp_path):
    make = lambda: SphereFlow(data_spec=spec, layers=3, hidden=8, n_tanh=2, base=base)  # noqa: E731
    x = _on_sphere(5, spec.event_shape[0])
    model = prepared(make, x, perturb=0.3)
    check_shapes(model, x)
    # round trips on the sphere, and outputs stay on it
    z, ld_inv = model.inverse_and_log_det(x)
    xr, ld_fwd = model.forward_and_log_det(z)
    torch.testing.assert_close(xr, x, atol=1e-10, rtol=0)
    torch.testing.assert_close(ld_fwd, -ld_inv, atol=1e-10, rtol=0)
    z2 = _on_sphere(5, spec.event_shape[0], seed=1)
    x2, ld2 = model.forward_and_log_det(z2)
    torch.testing.assert_close(x2.norm(dim=1), torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(model.inverse_and_log_det(x2)[0], z2, atol=1e-10, rtol=0)
    # log-dets are Riemannian volume changes (Gram determinants of autograd Jacobians)
    for i in range(3):
        ref_inv = _riemannian_log_det(lambda u: model.inverse_and_log_det(u)[0], x[i])
        ref_fwd = _riemannian_log_det(lambda u: model.forward_and_log_det(u)[0], z2[i])
        torch.testing.assert_close(ld_inv[i].detach(), ref_inv, atol=1e-8, rtol=1e-8)
        torch.testing.assert_close(ld2[i].detach(), ref_fwd, atol=1e-8, rtol=1e-8)
    assert model.sample(50).norm(dim=1).sub(1).abs().max() < 1e-12
    check_log_prob(model, x, model.base_log_prob)
    check_gradients(model, x)
    check_save_load(make, model, x, tmp_path)


def test_sphere_flow_rejects_bad_input():
    with pytest.raises(ValueError, match="kind='sphere'"):
        SphereFlow(data_spec=PTS3)
    with pytest.raises(ValueError, match="unit sphere"):
        SphereFlow(data_spec=S2).log_prob(2 * torch.eye(3))


# --- circular convolution: FFT vs the dense circulant -------------------------------

def _dense_circulant(kernel: np.ndarray, spatial: tuple[int, ...]) -> np.ndarray:
    """``C[(i), (j)] = k[(i - j) mod N]`` per axis (block-circulant for 2-D), built by index."""
    full = np.zeros(spatial)
    full[tuple(slice(0, k) for k in kernel.shape)] = kernel
    idx = list(np.ndindex(*spatial))
    mat = np.zeros((len(idx), len(idx)))
    for r, i in enumerate(idx):
        for c, j in enumerate(idx):
            mat[r, c] = full[tuple((a - b) % s for a, b, s in zip(i, j, spatial))]
    return mat


@pytest.mark.parametrize("spatial,kernel_size", [((7,), None), ((8,), 3), ((4, 5), None), ((5, 4), 2)])
def test_fft_log_det_equals_dense_circulant_slogdet(spatial, kernel_size):
    torch.manual_seed(0)
    conv = CircularConv(2, spatial, kernel_size).double()
    with torch.no_grad():
        conv.kernel.normal_()
    x = torch.randn(3, 2, *spatial, dtype=torch.float64)
    y, ld = conv.forward_and_log_det(x)
    # the map applied is the convolution by the kernel (the eigenvalue floor moves it by ~eps^2)
    np.testing.assert_allclose(conv.effective_kernel().detach().numpy(), conv.full_kernel().detach().numpy(),
                               atol=1e-6)
    kernel = conv.effective_kernel().detach().numpy()
    for c in range(2):
        mat = _dense_circulant(kernel[c], spatial)
        np.testing.assert_allclose(y[:, c].reshape(3, -1).detach().numpy(), x[:, c].reshape(3, -1).numpy() @ mat.T,
                                   atol=1e-10)
    ref = sum(np.linalg.slogdet(_dense_circulant(kernel[c], spatial))[1] for c in range(2))
    np.testing.assert_allclose(ld[0].item(), ref, rtol=1e-10)
    xr, ld_inv = conv.inverse_and_log_det(y)
    torch.testing.assert_close(xr, x, atol=1e-9, rtol=0)
    torch.testing.assert_close(ld_inv, -ld)


@pytest.mark.parametrize("spatial,kernel", [((6,), [1.0, -1.0]),                 # DC coefficient exactly 0
                                            ((6,), [1.0, -(1.0 - 1e-12)]),        # DC coefficient 1e-12
                                            ((4, 4), [[1.0, 1.0], [1.0, 1.0]])])  # three exact zeros
def test_near_singular_kernel_gives_finite_correct_log_det(spatial, kernel):
    """Zero or tiny DFT coefficients: the raw ``sum log|FFT(k)|`` is -inf or about -28 per
    coefficient; the floored map stays invertible, its log-det finite and equal to the
    dense slogdet of the map actually applied, its gradients finite."""
    eps = 1e-3
    conv = CircularConv(1, spatial, 2, min_modulus=eps).double()
    with torch.no_grad():
        conv.kernel.zero_()
        k = torch.tensor(kernel, dtype=torch.float64)
        conv.kernel[(0,) + tuple(slice(0, n) for n in k.shape)] = k
    raw = conv.spectrum().abs()
    assert raw.min() < 1e-11, "the kernel is not near-singular; the test would be vacuous"
    x = torch.randn(3, 1, *spatial, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y, ld = conv.forward_and_log_det(x)
    assert torch.isfinite(ld).all() and torch.isfinite(y).all()
    n = math.prod(spatial)
    ref = np.linalg.slogdet(_dense_circulant(conv.effective_kernel()[0].detach().numpy(), spatial))
    assert ref[0] != 0
    np.testing.assert_allclose(ld[0].item(), ref[1], rtol=1e-9)
    assert ld[0].item() >= n * math.log(eps) - 1e-9
    expected = 0.5 * torch.log(raw**2 + eps**2).sum()  # each eigenvalue's modulus is sqrt(|lambda|^2 + eps^2)
    torch.testing.assert_close(ld[0], expected)
    xr, ld_inv = conv.inverse_and_log_det(y)
    torch.testing.assert_close(xr, x, atol=1e-9, rtol=0)
    torch.testing.assert_close(ld_inv, -ld)
    # away from zero the floor moves an eigenvalue by at most eps^2 / (2 |lambda|)
    spec = conv.spectrum()
    big = raw > 0.5
    assert big.any()
    torch.testing.assert_close(conv._floored(spec)[big], spec[big], atol=eps**2, rtol=0)
    # gradients through a flow holding this kernel are finite
    flow = ConvFlow(data_spec=DataSpec(name="t", kind="points", event_shape=spatial) if len(spatial) == 1
                    else DataSpec(name="t", kind="image", event_shape=(1, *spatial)), blocks=1, kernel_size=2,
                    min_modulus=eps).double()
    flow.layers[0].load_state_dict(conv.state_dict())
    xin = x.reshape(3, *flow.event_shape)
    flow.log_prob(xin).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in flow.parameters())


# --- residual flows: Lipschitz, estimators, implicit gradients ----------------------

def _saturated_block(dim: int = 3, coeff: float = 0.9, seed: int = 0) -> ResidualBlock:
    """A float64 block whose layers all sit at spectral norm ``coeff`` (large Jacobians)."""
    torch.manual_seed(seed)
    block = ResidualBlock(dim, hidden=16, depth=1, coeff=coeff, n_power_iterations=1, max_iter=500).double()
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, SpectralLinear):
                m.weight.mul_(5.0)
                m.bias.normal_()
                m.power_iterate(500)
    return block


def test_residual_branch_is_contractive():
    block = _saturated_block(coeff=0.9)
    x = 3 * torch.randn(200, 3, dtype=torch.float64).requires_grad_()
    gx = block.g(x)
    jac = torch.stack([torch.autograd.grad(gx[:, i].sum(), x, retain_graph=True)[0] for i in range(3)], 1)
    top = torch.linalg.matrix_norm(jac, ord=2)
    assert top.max() < 0.9 and top.max() > 0.3  # bounded by coeff, and not trivially small


class _ControlledG(torch.nn.Module):
    """``g(x) = x A^T + c sin(x)`` with spectral radius of ``dg/dx`` about 0.5-0.6: large
    enough that the roulette-weighted terms k >= 2 matter (a test with power)."""

    def __init__(self, dim: int = 4):
        super().__init__()
        torch.manual_seed(0)
        a = torch.randn(dim, dim, dtype=torch.float64)
        self.A = torch.nn.Parameter(0.6 * a / torch.linalg.eigvals(a).abs().max())
        self.c = torch.nn.Parameter(torch.tensor(0.1, dtype=torch.float64))

    def forward(self, x):
        return x @ self.A.T + self.c * torch.sin(x)


def _g_and_x(which: str):
    if which == "controlled":
        g, d = _ControlledG(), 4
    else:
        g, d = _saturated_block(coeff=0.9).g, 3
    return g, torch.randn(4, d, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("which", ["controlled", "residual_block"])
def test_log_det_estimator_is_unbiased(which):
    """Mean of many Russian-roulette/Hutchinson estimates (n_exact_terms=1, geom_p=0.5)
    vs the exact log-det. Tolerance: 4 standard errors of the mean (SE from 400
    independent batches of 128; the roulette draw is shared within a batch). For
    ``controlled`` the roulette reweighting 1/P(N >= k) matters by ~10 SE."""
    g, x = _g_and_x(which)
    xe = x.clone().requires_grad_()
    exact = logdet_exact(xe, g(xe), need_grad=False)
    reps, gen, means = 128, torch.Generator().manual_seed(2), []
    xr = x.repeat(reps, 1).requires_grad_()
    gx = g(xr)
    for _ in range(400):
        est = logdet_estimate(xr, gx, n_exact=1, geom_p=0.5, need_grad=False, generator=gen)
        means.append(est.reshape(reps, 4).mean(0))
    means = torch.stack(means)
    mean, se = means.mean(0), means.std(0) / math.sqrt(len(means))
    assert exact.abs().min() > 0.05  # a non-trivial target
    assert (se < 0.05 * exact.abs()).all(), f"estimator too noisy to test: se={se}, exact={exact}"
    assert ((mean - exact).abs() < 4 * se).all(), f"mean {mean} vs exact {exact} (se {se})"


@pytest.mark.parametrize("which", ["controlled", "residual_block"])
def test_neumann_gradient_is_unbiased(which):
    """Mean of the memory-saving gradient estimates vs the gradient of the exact log-det,
    w.r.t. every parameter that enters the Jacobian and the input. Tolerance: 5 SE per
    entry (300 batches of 64) and 10% in norm."""
    g, x0 = _g_and_x(which)
    params = [p for p in g.parameters() if which == "controlled" or p is not g[-1].bias]  # last bias: not in J
    xe = x0.clone().requires_grad_()
    exact = torch.cat([t.reshape(-1) for t in torch.autograd.grad(_exact_logdet_sum(g, xe), params + [xe])])
    reps, gen, grads = 64, torch.Generator().manual_seed(3), []
    for _ in range(300):
        xr = x0.repeat(reps, 1).requires_grad_()
        est = logdet_estimate(xr, g(xr), n_exact=1, geom_p=0.5, need_grad=True, generator=gen)
        gr = torch.autograd.grad(est.sum() / reps, params + [xr])
        gx = gr[-1].reshape(reps, 4, -1).sum(0)
        grads.append(torch.cat([t.reshape(-1) for t in gr[:-1]] + [gx.reshape(-1)]))
    grads = torch.stack(grads)
    mean, se = grads.mean(0), grads.std(0) / math.sqrt(len(grads))
    assert ((mean - exact).abs() <= 5 * se + 1e-12).all()
    assert (mean - exact).norm() < 0.1 * exact.norm()


def _exact_logdet_sum(g, x: torch.Tensor) -> torch.Tensor:
    return logdet_exact(x, g(x), need_grad=True).sum()


def test_power_series_graph_is_not_kept():
    """Tensors saved for backward do not grow with the number of power-series terms."""
    block = _saturated_block()
    x = torch.randn(8, 3, dtype=torch.float64)

    def saved(n_terms: int) -> int:
        count = [0]

        def pack(t):
            count[0] += 1
            return t

        xr = x.clone().requires_grad_()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            logdet_estimate(xr, block.g(xr), n_exact=n_terms, geom_p=1.0, need_grad=True, generator=None)
        return count[0]

    assert saved(2) == saved(30)


def test_residual_rsample_gradient_matches_unrolled_fixed_point():
    """Implicit-function gradients of the fixed-point inverse equal backprop through
    an unrolled iteration ``x <- z - g(x)`` (float64)."""
    torch.manual_seed(0)
    model = ResidualFlow(data_spec=PTS3, blocks=2, hidden=8, logdet="exact").double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    z = torch.randn(5, 3, dtype=torch.float64)
    w = torch.randn(5, 3, dtype=torch.float64)
    params = list(model.parameters())
    implicit = torch.autograd.grad((model._to_data(z) * w).sum(), params)

    h = z
    for affine, block in zip(reversed(model.affines), reversed(model.blocks)):
        x = h
        for _ in range(300):
            x = h - block.g(x)
        h = affine.to_data(x)
    unrolled = torch.autograd.grad((h * w).sum(), params)
    for a, b in zip(implicit, unrolled):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-7)


def test_residual_estimate_mode_trains_and_keeps_spectral_state():
    torch.manual_seed(0)
    model = ResidualFlow(data_spec=PTS3, blocks=2, hidden=16)  # logdet="estimate" in training mode
    check_gradients(model, torch.randn(16, 3))
    lin = model.blocks[0].g[0]
    u_before = lin.u.clone()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    data = torch.randn(512, 3) @ torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.5, 0.0], [0.0, 0.3, 0.2]])
    model.eval()
    with torch.no_grad():
        nll0 = -model.log_prob(data).mean().item()
    model.train()
    for _ in range(100):
        loss = -model.log_prob(data[torch.randint(512, (128,))]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        nll1 = -model.log_prob(data).mean().item()
    assert not torch.equal(lin.u, u_before)  # power iteration ran after gradient steps
    assert nll1 < nll0 - 0.3
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, SpectralLinear):
                assert torch.linalg.matrix_norm(m.normalized_weight(), ord=2) < 0.97 * 1.01


# --- von Mises-Fisher data ----------------------------------------------------------

def _s2_grid(n_theta: int = 300, n_phi: int = 600) -> tuple[torch.Tensor, torch.Tensor]:
    """Midpoint grid on (theta, phi) in (0, pi) x (0, 2 pi): points ``(M, 3)`` and weights
    ``sin(theta) dtheta dphi``."""
    t = (torch.arange(n_theta, dtype=torch.float64) + 0.5) * math.pi / n_theta
    p = (torch.arange(n_phi, dtype=torch.float64) + 0.5) * 2 * math.pi / n_phi
    tt, pp = torch.meshgrid(t, p, indexing="ij")
    pts = _chart(torch.stack([tt, pp], -1)).reshape(-1, 3)
    return pts, (tt.sin() * (math.pi / n_theta) * (2 * math.pi / n_phi)).reshape(-1)


def _s1_grid(n: int = 20000) -> tuple[torch.Tensor, torch.Tensor]:
    a = (torch.arange(n, dtype=torch.float64) + 0.5) * 2 * math.pi / n
    return torch.stack([a.cos(), a.sin()], 1), torch.full((n,), 2 * math.pi / n, dtype=torch.float64)


def _integral(log_prob, grid) -> float:
    pts, w = grid
    with torch.no_grad():
        lp = torch.cat([log_prob(c) for c in pts.split(20000)])
    return float((lp.exp() * w).sum())


def test_vmf_log_prob_integrates_to_one():
    ds2 = vmf_s2(n_train=10, n_test=10, kappa=[2.0, 10.0, 40.0, 5.0])
    assert abs(_integral(ds2.log_prob, _s2_grid()) - 1) < 1e-4
    ds1 = vmf_s1(n_train=10, n_test=10, kappa=[0.5, 8.0, 50.0])
    assert abs(_integral(ds1.log_prob, _s1_grid()) - 1) < 1e-8


@pytest.mark.parametrize("kappa", [0.7, 5.0, 30.0])
def test_vmf_sampler_matches_closed_forms(kappa):
    ds2 = vmf_s2(n_train=20000, n_test=10, kappa=kappa, means=[[0.3, -0.5, 0.8]], seed=1)
    mu = ds2.means[0].float()
    w = (ds2.train @ mu).double().numpy()
    cdf = lambda t: np.expm1(kappa * (t + 1)) / np.expm1(2 * kappa)  # noqa: E731  P(mu^T x <= t) on S^2
    assert scipy.stats.kstest(w, cdf).pvalue > 1e-3
    # the component orthogonal to mu has no preferred direction
    perp = ds2.train - (ds2.train @ mu)[:, None] * mu
    assert perp.mean(0).norm() < 5 * math.sqrt((1 - (w**2).mean()) / 20000)
    ds1 = vmf_s1(n_train=20000, n_test=10, kappa=kappa, means=[[-1.0, 1.0]], seed=2)
    ang = torch.atan2(ds1.train[:, 1], ds1.train[:, 0]).double().numpy()
    rel = np.mod(ang - 3 * math.pi / 4 + math.pi, 2 * math.pi) - math.pi  # angle from the mean, in [-pi, pi)
    assert scipy.stats.kstest(rel, scipy.stats.vonmises(kappa).cdf).pvalue > 1e-3
    assert ds1.train.norm(dim=1).sub(1).abs().max() < 1e-6 and ds2.spec.kind == "sphere"


# --- sphere flows: normalisation and training ---------------------------------------

@pytest.mark.parametrize("base", ["uniform", "normal"])
def test_untrained_sphere_flow_integrates_to_one(base):
    torch.manual_seed(0)
    m2 = SphereFlow(data_spec=S2, layers=4, hidden=16, base=base).double()
    m1 = SphereFlow(data_spec=S1, layers=4, hidden=16, base=base).double()
    with torch.no_grad():
        for p in list(m2.parameters()) + list(m1.parameters()):
            p.add_(0.3 * torch.randn_like(p))  # away from the near-identity initialisation
    assert abs(_integral(m2.log_prob, _s2_grid()) - 1) < 1e-3
    assert abs(_integral(m1.log_prob, _s1_grid()) - 1) < 1e-6


def _fit(ds, steps: int) -> SphereFlow:
    torch.manual_seed(0)
    model = SphereFlow(data_spec=ds.spec, layers=4, hidden=32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        loss = -model.log_prob(ds.train[torch.randint(len(ds.train), (256,), generator=g)]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


@pytest.mark.parametrize("which", ["S2", "S1"])
def test_trained_sphere_flow_beats_uniform_and_stays_normalised(which):
    ds = vmf_s2(n_train=4000, n_test=2000) if which == "S2" else vmf_s1(n_train=4000, n_test=2000)
    model = _fit(ds, steps=300 if which == "S2" else 600)
    log_area = math.log(4 * math.pi) if which == "S2" else math.log(2 * math.pi)
    with torch.no_grad():
        nll = -model.log_prob(ds.test).mean().item()
        true_nll = -ds.log_prob(ds.test).mean().item()
    # below the uniform density's NLL, closing at least half the gap to the true density
    assert nll < log_area - 0.5 * (log_area - true_nll), \
        f"held-out NLL {nll:.3f} vs uniform {log_area:.3f} (true {true_nll:.3f})"
    assert nll > true_nll - 0.05  # cannot beat the true density on held-out data by much
    grid = _s2_grid() if which == "S2" else _s1_grid()
    assert abs(_integral(model.double().log_prob, grid) - 1) < 1e-3
    # samples follow the data: their mean log-density under the truth is close to the data's
    with torch.no_grad():
        s = model.sample(4000, generator=torch.Generator().manual_seed(5))
    assert ds.log_prob(s).mean().item() > -nll - 0.5


def test_registry_builds_everything():
    ds = build_dataset({"name": "vmf_s2", "n_train": 50, "n_test": 10})
    assert ds.spec.event_shape == (3,) and ds.spec.kind == "sphere"
    assert build_dataset({"name": "vmf_s1", "n_train": 5, "n_test": 5}).spec.event_shape == (2,)
    model = build_model({"name": "sphere_flow", "hidden": 8}, ds.spec, seed=0)
    assert model.log_prob(ds.test).shape == (10,)
    for name in ("residual_flow", "conv_flow"):
        m = build_model({"name": name, "blocks": 1}, PTS3, seed=0)
        assert m.sample(4).shape == (4, 3)


def _report() -> None:
    """Print the figures the tests check: ``python tests/test_flows_advanced.py``."""
    for which in ("controlled", "residual_block"):
        g, x = _g_and_x(which)
        xe = x.clone().requires_grad_()
        exact = logdet_exact(xe, g(xe), need_grad=False)
        xr = x.repeat(128, 1).requires_grad_()
        gx, gen = g(xr), torch.Generator().manual_seed(2)
        means = torch.stack([logdet_estimate(xr, gx, n_exact=1, geom_p=0.5, need_grad=False, generator=gen)
                             .reshape(128, 4).mean(0) for _ in range(400)])
        print(f"log-det {which}: exact {exact.numpy().round(4)} estimate mean {means.mean(0).numpy().round(4)} "
              f"+- {(means.std(0) / 20).numpy().round(4)} (SE)")
    for base in ("uniform", "normal"):
        torch.manual_seed(0)
        m2 = SphereFlow(data_spec=S2, layers=4, hidden=16, base=base).double()
        m1 = SphereFlow(data_spec=S1, layers=4, hidden=16, base=base).double()
        with torch.no_grad():
            for p in list(m2.parameters()) + list(m1.parameters()):
                p.add_(0.3 * torch.randn_like(p))
        print(f"untrained ({base} base): integral S2 {_integral(m2.log_prob, _s2_grid()):.6f}, "
              f"S1 {_integral(m1.log_prob, _s1_grid()):.8f}")
    print(f"vMF S2 integral {_integral(vmf_s2(n_train=10, n_test=10).log_prob, _s2_grid()):.6f}, "
          f"vMF S1 integral {_integral(vmf_s1(n_train=10, n_test=10).log_prob, _s1_grid()):.9f}")
    for which in ("S2", "S1"):
        ds = vmf_s2(n_train=4000, n_test=2000) if which == "S2" else vmf_s1(n_train=4000, n_test=2000)
        model = _fit(ds, steps=300 if which == "S2" else 600)
        with torch.no_grad():
            nll, true = -model.log_prob(ds.test).mean().item(), -ds.log_prob(ds.test).mean().item()
        area = math.log(4 * math.pi) if which == "S2" else math.log(2 * math.pi)
        grid = _s2_grid() if which == "S2" else _s1_grid()
        print(f"trained {which}: held-out NLL {nll:.4f} (uniform {area:.4f}, true {true:.4f}), "
              f"integral {_integral(model.double().log_prob, grid):.6f}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    _report()
