"""Flows: the shared contract on 2-D points and small images, normalisation on a
2-D grid (untrained and trained), MADE's autoregressive masks, ActNorm init."""

from __future__ import annotations

import math

import pytest
import torch

from flow_contract import check_flow_contract, check_trained_density_integrates, grid_mass, prepared
from genlab import registry
from genlab.data.base import DataSpec, image_spec
from genlab.models.flows import IAF, MAF, ActNorm, Glow, MADEFlow, RealNVP
from genlab.nets.made import MADE

PTS = DataSpec(name="pts", kind="points", event_shape=(2,))
TAB = DataSpec(name="tab", kind="points", event_shape=(5,))
DIG = image_spec("digits", (1, 8, 8), 17)
IMG2 = image_spec("two", (2, 4, 4), 17)

FLAT = {
    "realnvp": lambda s: RealNVP(data_spec=s, couplings=4, hidden=16),
    "glow": lambda s: Glow(data_spec=s, steps=3, hidden=16),
    "made": lambda s: MADEFlow(data_spec=s, hidden=[16, 16]),
    "maf": lambda s: MAF(data_spec=s, layers=3, hidden=[16, 16]),
    "iaf": lambda s: IAF(data_spec=s, layers=3, hidden=[16, 16]),
}
IMAGE = {
    "realnvp-2scales": lambda s: RealNVP(data_spec=s, hidden=8, scales=2, per_scale=2),
    "realnvp-1scale-actnorm": lambda s: RealNVP(data_spec=s, hidden=8, scales=1, per_scale=2, actnorm=True),
    "glow-2levels": lambda s: Glow(data_spec=s, hidden=8, steps=2, levels=2),
    "maf": lambda s: MAF(data_spec=s, layers=2, hidden=[32]),
    "iaf": lambda s: IAF(data_spec=s, layers=1, hidden=[32]),
}


@pytest.mark.parametrize("spec", [PTS, TAB], ids=["2d", "5d"])
@pytest.mark.parametrize("name", list(FLAT))
def test_contract_flat(name, spec, tmp_path):
    x = torch.randn(6, *spec.event_shape, generator=torch.Generator().manual_seed(0))
    check_flow_contract(lambda: FLAT[name](spec), x=x, tmp_path=tmp_path)


@pytest.mark.parametrize("spec", [DIG, IMG2], ids=["1x8x8", "2x4x4"])
@pytest.mark.parametrize("name", list(IMAGE))
def test_contract_images(name, spec, tmp_path):
    x = torch.rand(6, *spec.event_shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    check_flow_contract(lambda: IMAGE[name](spec), x=x, tmp_path=tmp_path, jacobian_examples=2)


@pytest.mark.parametrize("name", list(FLAT))
def test_density_integrates_to_one_untrained(name):
    model = prepared(lambda: FLAT[name](PTS), torch.randn(64, 2), perturb=0.1)
    assert abs(grid_mass(model) - 1.0) < 1e-2


@pytest.mark.parametrize("name", list(FLAT))
def test_density_integrates_to_one_trained(name):
    torch.manual_seed(0)
    check_trained_density_integrates(FLAT[name](PTS), lr=3e-3, steps=150, min_drop=0.2)


def _made_dependencies(made: MADE, d: int, k: int) -> torch.Tensor:
    """``dep[o, i, j]``: does output block ``o``, dim ``i`` depend on input ``j``, over several points."""
    dep = torch.zeros(k, d, d, dtype=torch.bool)
    for s in range(5):
        x = torch.randn(d, dtype=torch.float64, generator=torch.Generator().manual_seed(s))
        jac = torch.autograd.functional.jacobian(lambda v: made(v[None])[0], x)  # (k*d, d)
        dep |= (jac.reshape(k, d, d) != 0)
    return dep


@pytest.mark.parametrize("order", [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 0, 4, 1, 3]])
def test_made_masks_are_autoregressive(order):
    torch.manual_seed(0)
    d, k = 5, 3
    made = MADE(in_features=d, hidden=[16, 16], out_per_dim=k, order=order, zero_init=False).double()
    dep = _made_dependencies(made, d, k)
    o = torch.tensor(order)
    allowed = o[None, :] < o[:, None]  # allowed[i, j]: order[j] < order[i]
    for b in range(k):
        assert not dep[b][~allowed].any(), f"output block {b} depends on inputs at or after its own position"
        assert dep[b][allowed].all(), f"output block {b} misses a dependency on an earlier input"


def test_made_rejects_bad_order():
    with pytest.raises(ValueError, match="permutation"):
        MADE(in_features=3, order=[0, 0, 1])


def test_actnorm_data_dependent_init():
    layer = ActNorm(3)
    x = torch.randn(500, 3, 4, 4) * torch.tensor([2.0, 0.5, 3.0]).reshape(1, 3, 1, 1) + 1.5
    layer.eval()
    layer.inverse_and_log_det(x)
    assert layer.initialized.item() == 0, "ActNorm must not initialise outside training mode"
    layer.train()
    z, _ = layer.inverse_and_log_det(x)
    assert layer.initialized.item() == 1
    torch.testing.assert_close(z.mean((0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4, rtol=0)
    before = layer.bias.detach().clone()
    layer.inverse_and_log_det(x * 7)
    assert torch.equal(layer.bias.detach(), before), "ActNorm re-initialised on a second batch"


def test_image_shape_errors_are_clear():
    with pytest.raises(ValueError, match="scales"):
        RealNVP(data_spec=image_spec("odd", (1, 6, 6), 17), scales=2)
    with pytest.raises(ValueError, match="levels"):
        Glow(data_spec=image_spec("odd", (1, 6, 6), 17), levels=2)
    with pytest.raises(ValueError, match="maf"):
        RealNVP(data_spec=DataSpec(name="one", kind="points", event_shape=(1,)))


@pytest.mark.parametrize("name", ["realnvp", "glow", "made", "maf", "iaf"])
@pytest.mark.parametrize("spec", [PTS, DIG], ids=["2d", "digits"])
def test_registry_defaults_build_and_score(name, spec):
    torch.manual_seed(0)
    model = registry.MODELS[name](data_spec=spec)
    x = torch.rand(4, *spec.event_shape) * 2 - 1
    lp = model.log_prob(x)
    assert lp.shape == (4,) and torch.isfinite(lp).all()
    assert model.sample(3).shape == (3, *spec.event_shape)
    assert math.isfinite(float(lp.detach().sum()))
