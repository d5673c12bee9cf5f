"""Class-conditional flows (``cond_realnvp``, ``cond_nsf``, ``cond_maf``): the flow contract
at a fixed context, densities that depend on the label and integrate to 1 for every
label, labels routed per example, a conditional MADE whose every output sees the context,
unconditional flows refusing a context, maximum likelihood and bits/dim with labels."""

from __future__ import annotations

import math

import pytest
import torch
from flow_contract import check_flow_contract, grid_mass, prepared

from genlab import registry
from genlab.data.base import Batch, DataSpec, image_spec
from genlab.metrics.bpd import BitsPerDim
from genlab.models.flows import ConditionalMAF, ConditionalNSF, ConditionalRealNVP
from genlab.nets.made import MADE
from genlab.objectives.likelihood import MaximumLikelihood

PTS = DataSpec(name="pts", kind="points", event_shape=(2,), classes=3)
TAB = DataSpec(name="tab", kind="points", event_shape=(5,), classes=3)
DIG = image_spec("digits", (1, 8, 8), 17, classes=10)
F64 = torch.float64

FLAT = {
    "cond_realnvp": lambda s: ConditionalRealNVP(data_spec=s, couplings=3, hidden=16, embed_dim=4),
    "cond_nsf": lambda s: ConditionalNSF(data_spec=s, couplings=3, hidden=16, bins=4, bound=1.5, embed_dim=4),
    "cond_maf": lambda s: ConditionalMAF(data_spec=s, layers=2, hidden=[16], embed_dim=4),
}
IMAGE = {
    "cond_realnvp": lambda s: ConditionalRealNVP(data_spec=s, hidden=8, scales=2, per_scale=1, actnorm=True,
                                                 embed_dim=3),
    "cond_nsf": lambda s: ConditionalNSF(data_spec=s, hidden=8, scales=1, per_scale=1, bins=3, bound=0.8,
                                         embed_dim=3),
    "cond_maf": lambda s: ConditionalMAF(data_spec=s, layers=1, hidden=[32], embed_dim=3),
}
LABELS = torch.tensor([0, 1, 2, 0, 1, 2])


@pytest.mark.parametrize("spec", [PTS, TAB], ids=["2d", "5d"])
@pytest.mark.parametrize("name", list(FLAT))
def test_contract_flat_at_fixed_context(name, spec, tmp_path):
    x = 1.5 * torch.randn(6, *spec.event_shape, generator=torch.Generator().manual_seed(0))
    check_flow_contract(lambda: FLAT[name](spec), x=x, tmp_path=tmp_path, perturb=0.2, context=LABELS)


@pytest.mark.parametrize("name", list(IMAGE))
def test_contract_images_at_fixed_context(name, tmp_path):
    x = torch.rand(4, *DIG.event_shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    check_flow_contract(lambda: IMAGE[name](DIG), x=x, tmp_path=tmp_path, perturb=0.2, jacobian_examples=2,
                        context=torch.tensor([3, 7, 0, 9]))


@pytest.mark.parametrize("name", list(FLAT))
def test_each_class_density_integrates_to_one_and_they_differ(name):
    x = 1.5 * torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    model = prepared(lambda: FLAT[name](PTS), x, perturb=0.2, context=torch.arange(64) % 3)
    for y in range(3):
        assert abs(grid_mass(model, context=y, lim=6.0, n=300) - 1.0) < 1e-2, f"class {y}"
    inside = torch.rand(64, 2, dtype=F64, generator=torch.Generator().manual_seed(1)) * 2 - 1  # off the tails
    with torch.no_grad():
        lp = torch.stack([model.log_prob(inside, context=torch.full((64,), y)) for y in range(3)])
    assert (lp[0] - lp[1]).abs().min() > 1e-4 and (lp[1] - lp[2]).abs().min() > 1e-4, \
        "different labels must give different densities"


@pytest.mark.parametrize("name", list(FLAT))
def test_labels_are_routed_per_example(name):
    """A batch with mixed labels gives each example the density (and the sample) of its own label."""
    x = torch.randn(6, 5, dtype=F64, generator=torch.Generator().manual_seed(1))
    model = prepared(lambda: FLAT[name](TAB), x, perturb=0.2, context=LABELS)
    with torch.no_grad():
        batch = model.log_prob(x, context=LABELS)
        alone = torch.cat([model.log_prob(x[i:i + 1], context=LABELS[i:i + 1]) for i in range(6)])
        torch.testing.assert_close(batch, alone, atol=1e-10, rtol=0)
        xs, _ = model.forward_and_log_det(x, context=LABELS)
        xs_alone = torch.cat([model.forward_and_log_det(x[i:i + 1], context=LABELS[i:i + 1])[0] for i in range(6)])
        torch.testing.assert_close(xs, xs_alone, atol=1e-10, rtol=0)


def test_conditional_made_every_output_sees_the_context_and_stays_autoregressive():
    torch.manual_seed(0)
    d, k, e = 4, 2, 3
    order = [2, 0, 3, 1]
    made = MADE(in_features=d, hidden=[16, 16], out_per_dim=k, order=order, zero_init=False,
                context_features=e).double()
    x = torch.randn(d, dtype=F64)
    c = torch.randn(e, dtype=F64)
    jx = torch.autograd.functional.jacobian(lambda v: made(v[None], c[None])[0], x).reshape(k, d, d)
    jc = torch.autograd.functional.jacobian(lambda v: made(x[None], v[None])[0], c).reshape(k, d, e)
    o = torch.tensor(order)
    allowed = o[None, :] < o[:, None]
    assert not (jx != 0)[:, ~allowed].any(), "an output depends on an input at or after its own position"
    assert (jx != 0)[:, allowed].all()
    assert (jc != 0).any(-1).all(), "every output, including the first in the order, must depend on the context"
    with pytest.raises(ValueError, match="context"):
        made(x[None])
    with pytest.raises(ValueError, match="context"):
        MADE(in_features=d)(x[None].float(), c[None].float())


# --- refusals and errors ------------------------------------------------------------

UNLABELLED = DataSpec(name="ring8", kind="points", event_shape=(2,))


@pytest.mark.parametrize("name", ["realnvp", "glow", "made", "maf", "iaf", "nsf", "nsf_ar", "conv_flow",
                                  "residual_flow"])
def test_unconditional_flows_refuse_a_context(name):
    torch.manual_seed(0)
    model = registry.MODELS[name](data_spec=UNLABELLED)
    x, y = torch.randn(3, 2), torch.tensor([0, 1, 0])
    for call in (lambda: model.log_prob(x, context=y), lambda: model.inverse_and_log_det(x, context=y),
                 lambda: model.forward_and_log_det(x, context=y), lambda: model.sample(3, context=y),
                 lambda: model.rsample(3, context=y)):
        with pytest.raises(ValueError, match="unconditional"):
            call()


@pytest.mark.parametrize("name", ["cond_realnvp", "cond_nsf", "cond_maf"])
def test_conditional_flows_need_labels(name):
    with pytest.raises(ValueError, match="needs labelled data"):
        registry.MODELS[name](data_spec=UNLABELLED)
    torch.manual_seed(0)
    model = registry.MODELS[name](data_spec=PTS)
    assert model.conditional and model.num_classes == 3
    x = torch.randn(3, 2)
    with pytest.raises(ValueError, match="conditional"):
        model.log_prob(x)
    with pytest.raises(ValueError, match="conditional"):
        model.sample(2)
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.2"):
        model.log_prob(x, context=torch.tensor([0, 1, 3]))
    with pytest.raises(ValueError, match=r"\(3,\) integer labels"):
        model.log_prob(x, context=torch.tensor([0.0, 1.0, 2.0]))
    assert model.sample(4, context=torch.tensor([0, 1, 2, 2])).shape == (4, 2)


# --- learning with labels -------------------------------------------------------------

def _three_blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(3, (n,), generator=g)
    centres = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]])
    return centres[y] + 0.3 * torch.randn(n, 2, generator=g), y


def _train(model, x, y, steps: int = 200) -> MaximumLikelihood:
    spec = DataSpec(name="blobs", kind="points", event_shape=(2,), classes=3)
    obj = MaximumLikelihood()
    obj.setup(model, spec)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        i = torch.randint(len(x), (256,), generator=g)
        out = obj.loss("model", model, Batch(x[i], y[i]), generator=g)
        opt.zero_grad(), out.loss.backward(), opt.step()
    return obj


@pytest.mark.parametrize("cond,uncond", [("cond_realnvp", "realnvp"), ("cond_maf", "maf")])
def test_mle_uses_the_labels(cond, uncond):
    """Three labelled blobs: ``H(X | Y) = H(X) - log 3``, so the conditional flow's held-out
    NLL must be well below its unconditional twin's after the same training. The ``bpd``
    metric reads the batch labels for conditional models."""
    spec = DataSpec(name="blobs", kind="points", event_shape=(2,), classes=3)
    x, y = _three_blobs(4096, 0)
    xt, yt = _three_blobs(1000, 1)
    nll = {}
    for name in (cond, uncond):
        torch.manual_seed(0)
        kw = {"hidden": [32, 32]} if "maf" in name else {"hidden": 32}
        model = registry.MODELS[name](data_spec=spec, **kw)
        _train(model, x, y)
        metric = BitsPerDim(data_spec=spec)
        metric.update(model, Batch(xt, yt))
        nll[name] = metric.compute()["nll"]
    assert nll[cond] < nll[uncond] - 0.5 * math.log(3), nll
    with pytest.raises(ValueError, match="conditional"):
        BitsPerDim(data_spec=spec).update(registry.MODELS[cond](data_spec=spec), Batch(xt))
