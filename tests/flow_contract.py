"""A reusable contract for every :class:`genlab.models.base.Flow`.

Usage from any test file (the ``tests`` folder is on ``sys.path`` under pytest)::

    from flow_contract import check_flow_contract

    @pytest.mark.parametrize("make", [lambda: MyFlow(data_spec=spec, hidden=8)])
    def test_my_flow(make, tmp_path):
        check_flow_contract(make, x=torch.randn(4, 2), tmp_path=tmp_path)

``make()`` builds a fresh model (it is called twice, under different seeds).
``x`` is a small batch of data in model space (float; cast to float64 here).
Each check is also importable on its own (``check_round_trip`` etc.) so that a
test file can parametrise over them and see which one failed.

Before checking, the model is cast to float64, run once on ``x`` (so that
data-dependent initialisation such as ActNorm's happens) and its parameters are
perturbed with seeded Gaussian noise of std ``perturb``: a flow initialised at
the identity (zero-initialised coupling outputs) would otherwise pass every
log-det test trivially and would not pass gradients to its inner layers.

``base_log_prob(z) -> (B,)`` defaults to the standard normal over the event
shape; pass your own for flows with another base (e.g. uniform on a sphere).

Conditional flows: pass ``context`` (labels ``(B,)`` for ``x``); every check then runs at
that fixed context (the Jacobian of example ``i`` at ``context[i]``; samples drawn with
the labels repeated).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from genlab.models.base import Flow

Factory = Callable[[], Flow]


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """``(B, *event) -> (B,)`` log N(z; 0, I)."""
    flat = z.reshape(z.shape[0], -1)
    return -0.5 * (flat**2).sum(1) - 0.5 * flat.shape[1] * math.log(2 * math.pi)


def _labels(context: Tensor | None, n: int) -> Tensor | None:
    """``n`` labels cycling through ``context`` (``None`` stays ``None``)."""
    return None if context is None else context[torch.arange(n) % len(context)]


def prepared(make: Factory, x: Tensor, *, perturb: float = 0.05, seed: int = 0,
             context: Tensor | None = None) -> Flow:
    """Build with ``torch.manual_seed(seed)``, cast to float64, warm up on ``x``, perturb."""
    torch.manual_seed(seed)
    model = make().double()
    assert isinstance(model, Flow), f"{type(model).__name__} is not a genlab Flow"
    with torch.no_grad():
        model.log_prob(x.double(), context=context)
        g = torch.Generator().manual_seed(seed + 1000)
        for p in model.parameters():
            p.add_(perturb * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def check_shapes(model: Flow, x: Tensor, context: Tensor | None = None) -> None:
    b, event = x.shape[0], tuple(x.shape[1:])
    assert tuple(model.event_shape) == event, f"event_shape {tuple(model.event_shape)} != data {event}"
    assert model.log_prob(x, context=context).shape == (b,)
    z, ld = model.inverse_and_log_det(x, context=context)
    assert z.shape == x.shape and ld.shape == (b,)
    xr, ld2 = model.forward_and_log_det(z, context=context)
    assert xr.shape == x.shape and ld2.shape == (b,)
    assert model.sample((3, 2), context=_labels(context, 6)).shape == (3, 2, *event)
    assert model.rsample(5, context=_labels(context, 5)).shape == (5, *event)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    c4 = _labels(context, 4)
    assert torch.equal(model.sample(4, context=c4, generator=g1), model.sample(4, context=c4, generator=g2)), \
        "sample() with equally seeded generators must be identical"


def check_round_trip(model: Flow, x: Tensor, atol: float = 1e-7, context: Tensor | None = None) -> None:
    """``forward(inverse(x)) == x`` and ``inverse(forward(z)) == z`` in float64, and the
    two log-dets are negatives of each other."""
    z, ld_inv = model.inverse_and_log_det(x, context=context)
    xr, ld_fwd = model.forward_and_log_det(z, context=context)
    torch.testing.assert_close(xr, x, atol=atol, rtol=0)
    torch.testing.assert_close(ld_fwd, -ld_inv, atol=atol, rtol=0)
    z2 = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(7))
    x2, _ = model.forward_and_log_det(z2, context=context)
    z2r, _ = model.inverse_and_log_det(x2, context=context)
    torch.testing.assert_close(z2r, z2, atol=atol, rtol=0)


def _jacobian_logdet(fn: Callable[[Tensor], Tensor], v: Tensor) -> Tensor:
    """``log|det d fn / d v|`` for one example ``v`` of any event shape."""
    shape = v.shape

    def flat(u: Tensor) -> Tensor:
        return fn(u.reshape(1, *shape)).reshape(-1)

    jac = torch.autograd.functional.jacobian(flat, v.reshape(-1))
    sign, logabs = torch.linalg.slogdet(jac)
    assert sign != 0, "singular Jacobian"
    return logabs


def check_log_det(model: Flow, x: Tensor, n: int = 3, atol: float = 1e-6, context: Tensor | None = None) -> None:
    """Both directions' log-dets equal ``slogdet`` of the float64 autograd Jacobian."""
    c = None if context is None else context[:n]
    z, ld_inv = model.inverse_and_log_det(x[:n], context=c)
    _, ld_fwd = model.forward_and_log_det(z, context=c)
    for i in range(min(n, x.shape[0])):
        ci = None if context is None else context[i:i + 1]
        ref_inv = _jacobian_logdet(lambda u, c=ci: model.inverse_and_log_det(u, context=c)[0], x[i])
        ref_fwd = _jacobian_logdet(lambda u, c=ci: model.forward_and_log_det(u, context=c)[0], z[i].detach())
        torch.testing.assert_close(ld_inv[i].detach(), ref_inv, atol=atol, rtol=1e-6)
        torch.testing.assert_close(ld_fwd[i].detach(), ref_fwd, atol=atol, rtol=1e-6)


def check_log_prob(model: Flow, x: Tensor,
                   base_log_prob: Callable[[Tensor], Tensor] = standard_normal_log_prob,
                   context: Tensor | None = None) -> None:
    """``log_prob(x) == base_log_prob(z) + log|det d f^{-1}/dx|``."""
    z, ld = model.inverse_and_log_det(x, context=context)
    torch.testing.assert_close(model.log_prob(x, context=context), base_log_prob(z) + ld, atol=1e-8, rtol=1e-8)


def check_gradients(model: Flow, x: Tensor, rsample: bool = True, context: Tensor | None = None) -> None:
    """Every parameter gets a non-zero gradient from ``log_prob`` (and from ``rsample``)."""
    losses = {"log_prob": lambda: model.log_prob(x, context=context).sum()}
    if rsample:
        losses["rsample"] = lambda: model.rsample(x.shape[0], context=context,
                                                  generator=torch.Generator().manual_seed(1)).square().sum()
    for what, loss_fn in losses.items():
        model.zero_grad(set_to_none=True)
        loss_fn().backward()
        dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
        assert not dead, f"no gradient from {what} reaches: {dead}"
    model.zero_grad(set_to_none=True)


def check_save_load(make: Factory, model: Flow, x: Tensor, tmp_path: Path, context: Tensor | None = None) -> None:
    """A safetensors round trip of ``state_dict`` into a fresh (differently seeded) model
    gives identical ``log_prob``, in training mode (so a lost data-dependent-init flag
    would re-initialise and show)."""
    from safetensors.torch import load_file, save_file

    path = Path(tmp_path) / "flow.safetensors"
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(path))
    torch.manual_seed(12345)
    fresh = make().double()
    fresh.load_state_dict(load_file(str(path)))
    model.train(), fresh.train()
    with torch.no_grad():
        torch.testing.assert_close(fresh.log_prob(x, context=context), model.log_prob(x, context=context),
                                   atol=0, rtol=0)


def check_flow_contract(make: Factory, *, x: Tensor, tmp_path: Path, perturb: float = 0.05,
                        base_log_prob: Callable[[Tensor], Tensor] = standard_normal_log_prob,
                        jacobian_examples: int = 3, rsample_grad: bool = True,
                        context: Tensor | None = None) -> Flow:
    """Run every check on ``make()`` (at the fixed ``context`` labels ``(B,)`` for
    conditional flows); returns the prepared float64 model."""
    x = x.double()
    model = prepared(make, x, perturb=perturb, context=context)
    check_shapes(model, x, context=context)
    check_round_trip(model, x, context=context)
    check_log_det(model, x, n=jacobian_examples, context=context)
    check_log_prob(model, x, base_log_prob, context=context)
    check_gradients(model, x, rsample=rsample_grad, context=context)
    check_save_load(make, model, x, tmp_path, context=context)
    return model


def grid_mass(model: Flow, *, lim: float = 5.0, n: int = 400, context: int | None = None) -> float:
    """Midpoint-rule integral of a 2-D flow's density over ``[-lim, lim]^2`` (``context``: one class
    label used for every grid point)."""
    h = 2 * lim / n
    dtype = next(model.parameters()).dtype
    c = torch.linspace(-lim + h / 2, lim - h / 2, n, dtype=dtype)
    pts = torch.cartesian_prod(c, c)
    ctx = None if context is None else torch.full((len(pts),), context)
    with torch.no_grad():
        return float(model.log_prob(pts, context=ctx).exp().sum() * h * h)


def check_trained_density_integrates(model: Flow, *, lr: float, steps: int, min_drop: float,
                                     lim: float = 5.0) -> None:
    """Train ``model`` briefly by maximum likelihood on ring8 (std 0.15), check that training moved
    it (the NLL fell by ``min_drop``), then that its density still integrates to 1 (2-D)."""
    from genlab.data.base import Batch
    from genlab.data.synthetic import ring8
    from genlab.objectives.likelihood import MaximumLikelihood

    data = ring8(n_train=4096, n_test=10, std=0.15, seed=1)
    obj = MaximumLikelihood()
    obj.setup(model, data.spec)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    first = None
    for _ in range(steps):
        x = data.train[torch.randint(len(data.train), (256,), generator=g)]
        out = obj.loss("model", model, Batch(x), generator=g)
        first = first if first is not None else out.logs["nll"]
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert out.logs["nll"] < first - min_drop, "training did not move the model; the grid check would be vacuous"
    assert abs(grid_mass(model.double(), lim=lim) - 1.0) < 2e-2
