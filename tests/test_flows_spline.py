"""Neural spline flows (arXiv 1906.04032): the rational-quadratic spline itself (knots,
derivatives, inverse, tails, guards), the flow contract for ``nsf`` and ``nsf_ar`` on flat
2-D / 5-D data and (``nsf``) digits-shaped images, with the splines checked to be far
from the identity and fed points both inside ``[-B, B]`` and in the tails, and densities
that integrate to 1."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from flow_contract import check_flow_contract, check_trained_density_integrates, grid_mass, prepared

from genlab import registry
from genlab.build import validate
from genlab.config import from_dict
from genlab.data.base import DataSpec, image_spec
from genlab.kwargs import ConfigError
from genlab.models.flows import NSF, NSFAR, RationalQuadraticSpline

PTS = DataSpec(name="pts", kind="points", event_shape=(2,))
TAB = DataSpec(name="tab", kind="points", event_shape=(5,))
DIG = image_spec("digits", (1, 8, 8), 17)
F64 = torch.float64


# --- the element-wise spline -------------------------------------------------------

def _raw(n: int, bins: int, scale: float, seed: int = 0, dtype=F64) -> torch.Tensor:
    return scale * torch.randn(n, 3 * bins - 1, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("bins", [1, 2, 8])
def test_spline_passes_through_its_knots_with_its_derivatives(bins):
    spline = RationalQuadraticSpline(bins, 2.0)
    raw = _raw(1, bins, 2.0).expand(bins + 1, -1)
    xs, ys, ds = spline.knots(raw[:1])
    knots_x = xs[0]
    y, ld = spline.forward(knots_x, raw)
    torch.testing.assert_close(y, ys[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(ld.exp(), ds[0], atol=1e-10, rtol=1e-10)
    assert knots_x[0] == -2.0 and knots_x[-1] == 2.0 and ys[0, 0] == -2.0 and ys[0, -1] == 2.0
    assert ds[0, 0] == 1.0 and ds[0, -1] == 1.0  # linear tails: slope 1 at both ends


@pytest.mark.parametrize("bins", [1, 3, 8])
def test_spline_inverse_log_det_and_tails(bins):
    spline = RationalQuadraticSpline(bins, 1.5)
    x = torch.linspace(-3, 3, 601, dtype=F64)  # includes +-1.5 exactly and both tails
    raw = _raw(1, bins, 1.5, seed=bins).expand(len(x), -1)  # one spline, evaluated on a grid
    y, ld = spline.forward(x, raw)
    tails = x.abs() > 1.5
    assert torch.equal(y[tails], x[tails]) and torch.all(ld[tails] == 0), "the tails must be the identity"
    assert torch.all(y[~tails].abs() <= 1.5)
    xr, ld_inv = spline.inverse(y, raw)
    torch.testing.assert_close(xr, x, atol=1e-10, rtol=0)
    torch.testing.assert_close(ld_inv, -ld, atol=1e-10, rtol=0)
    # element-wise log-derivative against autograd, both directions
    xg = x.clone().requires_grad_()
    dydx, = torch.autograd.grad(spline.forward(xg, raw)[0].sum(), xg)
    torch.testing.assert_close(dydx.log(), ld, atol=1e-10, rtol=1e-10)
    yg = y.detach().clone().requires_grad_()
    dxdy, = torch.autograd.grad(spline.inverse(yg, raw)[0].sum(), yg)
    torch.testing.assert_close(dxdy.log(), ld_inv, atol=1e-9, rtol=1e-9)
    # monotone, and continuous across +-B
    assert torch.all(y.diff() > 0)
    eps = 1e-9
    edge = torch.tensor([-1.5 - eps, -1.5 + eps, 1.5 - eps, 1.5 + eps], dtype=F64)
    ye, _ = spline.forward(edge, raw[:4])
    torch.testing.assert_close(ye, edge, atol=1e-8, rtol=0)


def test_spline_zero_parameters_are_the_identity():
    spline = RationalQuadraticSpline(8, 3.0)
    x = torch.linspace(-5, 5, 101, dtype=F64)
    y, ld = spline.forward(x, torch.zeros(101, 23, dtype=F64))
    torch.testing.assert_close(y, x, atol=1e-14, rtol=0)
    torch.testing.assert_close(ld, torch.zeros_like(ld), atol=1e-14, rtol=0)


def test_spline_guards_bound_widths_heights_derivatives():
    spline = RationalQuadraticSpline(4, 1.0, min_width=0.01, min_height=0.02, min_derivative=0.05)
    raw = torch.tensor([[60.0, -60, -60, -60, -60, 60, -60, -60, -60, 60, -60]], dtype=F64)
    xs, ys, ds = spline.knots(raw)
    assert xs.diff().min() >= 0.01 * 2 - 1e-15 and ys.diff().min() >= 0.02 * 2 - 1e-15
    assert ds.min() >= 0.05
    for kw in ({"bins": 0, "bound": 1.0}, {"bins": 4, "bound": 0.0}, {"bins": 4, "bound": 1.0, "min_width": 0.25},
               {"bins": 4, "bound": 1.0, "min_derivative": 1.0}):
        with pytest.raises(ValueError):
            RationalQuadraticSpline(**kw)
    with pytest.raises(ValueError, match="parameters per element"):
        spline.forward(torch.zeros(3, dtype=F64), torch.zeros(3, 10, dtype=F64))


def test_spline_inverse_is_stable_where_the_papers_form_cancels():
    """Relative to the inverse's conditioning (``|x - g^-1(g(x))| * g'(x)``) the round trip
    stays at rounding level in float32 for sharp splines; the paper's single form
    ``2c / (-b - sqrt(b^2 - 4ac))`` loses digits where ``b < 0`` (tested on the same points)."""
    spline = RationalQuadraticSpline(5, 2.0)
    x = torch.linspace(-2, 2, 20001)
    raw = _raw(len(x), 5, 4.0, dtype=torch.float32)
    y, ld = spline.forward(x, raw)
    xr, _ = spline.inverse(y, raw)
    err = ((xr - x).abs() * ld.exp()).max()
    assert err < 2e-5, f"float32 round trip error {err:.2e} relative to the conditioning"


# --- which points the splines of a flow see ------------------------------------------

@contextmanager
def _recording_splines(model):
    """Record the inputs and outputs of every spline evaluation of ``model``."""
    seen: list[tuple[torch.Tensor, torch.Tensor, float]] = []
    splines = {id(m.spline): m.spline for m in model.modules() if hasattr(m, "spline")}
    for s in splines.values():
        def rec(v, raw, _s=s, _f=RationalQuadraticSpline.forward):
            out = _f(_s, v, raw)
            seen.append((v.detach(), out[0].detach(), _s.bound))
            return out
        s.forward = rec
    try:
        yield seen
    finally:
        for s in splines.values():
            del s.forward


def assert_splines_exercised(model, x: torch.Tensor, context=None) -> None:
    """The splines on the way from ``x`` to noise see points inside ``[-B, B]`` and in the
    tails, and move the inside points (they are not the identity after perturbation)."""
    with _recording_splines(model) as seen, torch.no_grad():
        model.inverse_and_log_det(x, context=context)
    assert seen, "no spline was evaluated"
    inside = sum(int((v.abs() <= b).sum()) for v, _, b in seen)
    total = sum(v.numel() for v, _, _ in seen)
    moved = max(float(((o - v).abs() * (v.abs() <= b)).max()) for v, o, b in seen)
    assert 0.2 * total < inside < 0.95 * total, f"{inside}/{total} spline inputs inside [-B, B]"
    assert moved > 0.02, f"the splines are nearly the identity (max move {moved:.2g})"


# --- the flow contract ---------------------------------------------------------------

FLAT = {
    "nsf": lambda s: NSF(data_spec=s, couplings=3, hidden=16, bins=4, bound=1.5),
    "nsf-actnorm-linear": lambda s: NSF(data_spec=s, couplings=2, hidden=16, bins=3, bound=1.5, actnorm=True,
                                        linear=True),
    "nsf_ar": lambda s: NSFAR(data_spec=s, layers=2, hidden=16, depth=1, bins=4, bound=1.5),
}
IMAGE = {
    "nsf-2scales": lambda s: NSF(data_spec=s, hidden=8, scales=2, per_scale=1, bins=4, bound=0.8),
    "nsf-1scale-actnorm-linear": lambda s: NSF(data_spec=s, hidden=8, scales=1, per_scale=1, bins=3, bound=0.8,
                                               actnorm=True, linear=True),
}
PERTURB = 0.2


@pytest.mark.parametrize("spec", [PTS, TAB], ids=["2d", "5d"])
@pytest.mark.parametrize("name", list(FLAT))
def test_contract_flat(name, spec, tmp_path):
    x = 1.5 * torch.randn(6, *spec.event_shape, generator=torch.Generator().manual_seed(0))
    model = check_flow_contract(lambda: FLAT[name](spec), x=x, tmp_path=tmp_path, perturb=PERTURB)
    assert_splines_exercised(model, x.double())


@pytest.mark.parametrize("name", list(IMAGE))
def test_contract_images(name, tmp_path):
    x = torch.rand(4, *DIG.event_shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    model = check_flow_contract(lambda: IMAGE[name](DIG), x=x, tmp_path=tmp_path, jacobian_examples=2,
                                perturb=PERTURB)
    assert_splines_exercised(model, x.double())


@pytest.mark.parametrize("name", list(FLAT))
def test_density_integrates_to_one_untrained(name):
    x = 1.5 * torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    model = prepared(lambda: FLAT[name](PTS), x, perturb=PERTURB)
    assert_splines_exercised(model, x.double())
    assert abs(grid_mass(model, lim=6.0) - 1.0) < 1e-2


@pytest.mark.parametrize("name", ["nsf", "nsf_ar"])
def test_density_integrates_to_one_trained(name):
    torch.manual_seed(0)
    check_trained_density_integrates(FLAT[name](PTS), lr=5e-3, steps=120, min_drop=0.3, lim=6.0)


# --- registry and config ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["nsf", "nsf_ar"])
@pytest.mark.parametrize("spec", [PTS, DIG], ids=["2d", "digits"])
def test_registry_defaults_build_score_and_sample(name, spec):
    torch.manual_seed(0)
    model = registry.MODELS[name](data_spec=spec)
    x = torch.rand(4, *spec.event_shape) * 2 - 1
    lp = model.log_prob(x)
    assert lp.shape == (4,) and torch.isfinite(lp).all()
    s = model.sample(3)
    assert s.shape == (3, *spec.event_shape) and torch.isfinite(s).all()


@pytest.mark.parametrize("name,key,value", [("nsf", "bins", 0), ("nsf_ar", "bound", -1.0), ("nsf", "bound", 0),
                                            ("nsf_ar", "layers", 0)])
def test_bad_options_are_refused_before_building(name, key, value):
    cfg = from_dict({"data": {"name": "ring8"}, "model": {"name": name, key: value}, "objective": {"name": "mle"}})
    with pytest.raises(ConfigError, match=key):
        validate(cfg)


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="scales"):
        NSF(data_spec=image_spec("odd", (1, 6, 6), 17), scales=2)
    with pytest.raises(ValueError, match="maf"):
        NSF(data_spec=DataSpec(name="one", kind="points", event_shape=(1,)))


def test_spline_matches_zuko_on_the_same_knots():
    """Reference parity: zuko's ``MonotonicRQSTransform`` (a different code base) evaluated on
    our knots, derivatives and tail bound gives the same map, inverse and log-derivative
    (zuko is the optional ``bench`` dependency; skipped without it)."""
    zuko_transforms = pytest.importorskip("zuko.transforms")
    bins, bound = 6, 2.0
    spline = RationalQuadraticSpline(bins, bound)
    x = torch.cat([torch.rand(500, dtype=F64, generator=torch.Generator().manual_seed(0)) * 2 * bound - bound,
                   torch.tensor([-3.0, -2.5, 2.5, 3.0], dtype=F64)])
    raw = _raw(len(x), bins, 1.5, seed=4)
    xs, ys, ds = spline.knots(raw)
    ref = zuko_transforms.MonotonicRQSTransform(torch.zeros(len(x), bins, dtype=F64),
                                                torch.zeros(len(x), bins, dtype=F64),
                                                torch.zeros(len(x), bins - 1, dtype=F64), bound=bound)
    if not all(hasattr(ref, a) for a in ("horizontal", "vertical", "derivatives")):
        pytest.skip("this zuko version stores its knots differently")
    ref.horizontal, ref.vertical, ref.derivatives = xs, ys, ds
    y, ld = spline.forward(x, raw)
    y_ref, ld_ref = ref.call_and_ladj(x)
    torch.testing.assert_close(y, y_ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(ld, ld_ref, atol=1e-10, rtol=0)
    torch.testing.assert_close(spline.inverse(y, raw)[0], ref.inv(y), atol=1e-10, rtol=0)


@pytest.mark.parametrize("recipe", ["digits-nsf-mle", "digits-cond-nsf-mle", "ring8-nsf-mle"])
def test_recipes_validate_and_build(recipe):
    import genlab
    from genlab.build import build_dataset, build_model, load_config

    cfg = load_config(Path(genlab.__file__).parent / "recipes" / f"{recipe}.yaml", [])
    validate(cfg)
    model = build_model(cfg.model, build_dataset(cfg.data).spec, cfg.seed)
    assert model.conditional == recipe.startswith("digits-cond")
