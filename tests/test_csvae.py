"""CSVAE (Klys, Snell & Zemel 2018, arXiv 1812.06190): the model ``csvae``, the objective ``csvae``
and attribute swapping."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.data.base import Batch, DataSpec, image_spec
from genlab.models.csvae import CSVAE
from genlab.objectives.csvae import CSVAEObjective

DIGITS = image_spec("digits", (1, 8, 8), levels=17, classes=10)
POINTS = DataSpec(name="pts", kind="points", event_shape=(4,), classes=3)
EVEN = [0, 2, 4, 6, 8]


def _model(spec=DIGITS, attrs=EVEN, **kw) -> CSVAE:
    torch.manual_seed(0)
    return CSVAE(data_spec=spec, attribute_classes=attrs, z_dim=3, w_dim=2,
                 encoder={"name": "mlp", "hidden": 16, "depth": 1}, decoder={"name": "mlp", "hidden": 16, "depth": 1},
                 **kw)


def _digits_batch(n: int = 6) -> Batch:
    g = torch.Generator().manual_seed(1)
    x = DIGITS.to_model(torch.randint(0, 17, (n, 1, 8, 8), generator=g).float())
    return Batch(x, torch.arange(n) % 10)


def _objective(model, spec=DIGITS, **kw) -> CSVAEObjective:
    obj = CSVAEObjective(hidden=8, depth=1, **kw)
    obj.setup(model, spec)
    return obj


def test_shapes_attribute_map_and_joint_capabilities():
    m = _model()
    b = _digits_batch()
    assert m.attribute(torch.tensor([0, 1, 2, 3, 8, 9])).tolist() == [1, 0, 1, 0, 1, 0]
    q = m.posterior(b.x, context=b.y)
    assert q.batch_shape == (6,) and q.event_shape == (5,) and m.latent_shape == (5,)
    torch.testing.assert_close(q.mean[:, :3], m.posterior_z(b.x).mean)
    torch.testing.assert_close(q.mean[:, 3:], m.posterior_w(b.x, m.attribute(b.y)).mean)
    p = m.prior(context=b.y)
    assert p.batch_shape == (6,) and p.event_shape == (5,)
    torch.testing.assert_close(p.mean[:, 3:], m.prior_w(m.attribute(b.y)).mean)
    assert m.likelihood(q.mean).batch_shape == (6,)
    assert m.sample(4, context=torch.arange(4)).shape == (4, 1, 8, 8)
    assert m.reconstruct(b.x, context=b.y).shape == b.x.shape
    assert m.swap(b.x, torch.ones(6, dtype=torch.long)).shape == b.x.shape
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(m.sample(3, context=torch.zeros(3, dtype=torch.long), generator=g1),
                       m.sample(3, context=torch.zeros(3, dtype=torch.long), generator=g2))
    with pytest.raises(ValueError, match="is conditional"):
        m.posterior(b.x)


def test_gradients_reach_the_right_players_only():
    m = _model()
    obj = _objective(m)
    params = obj.player_parameters(m)
    assert set(params) == {"model", "adversary"}
    assert {id(p) for p in params["model"]}.isdisjoint(id(p) for p in params["adversary"])
    b = _digits_batch()
    obj.loss("model", m, b, generator=torch.Generator().manual_seed(0)).loss.backward()
    for part in (m.encoder, m.w_encoder, m.decoder):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)
    assert m.prior_loc.grad is not None and float(m.prior_loc.grad.abs().sum()) > 0
    assert all(p.grad is None for p in obj.adversary.parameters())  # the model's loss leaves q_delta alone
    m.zero_grad(set_to_none=True)
    obj.loss("adversary", m, b, generator=torch.Generator().manual_seed(0)).loss.backward()
    assert all(p.grad is not None for p in obj.adversary.parameters())
    assert all(p.grad is None for p in m.parameters())


def test_loss_terms_equal_their_closed_forms():
    """Gaussian decoder of fixed noise on points: rec, both KLs, the adversary's entropy and the
    weighted loss against hand-written formulas on the same noise."""
    m = _model(spec=POINTS, attrs=[1], likelihood="gaussian_fixed", noise_std=0.5).double()
    with torch.no_grad():
        m.prior_loc.copy_(torch.tensor([[0.3, -0.2], [1.5, 0.7]], dtype=torch.float64))
        m.prior_raw_scale.copy_(torch.tensor([[0.1, -0.4], [0.6, 0.2]], dtype=torch.float64))
    obj = _objective(m, spec=POINTS, reconstruction=2.0, kl_w=0.7, kl_z=0.3, entropy=5.0).double()
    x = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([0, 1, 2, 1, 0])
    y = m.attribute(labels)
    assert y.tolist() == [0, 1, 0, 1, 0]
    t = obj.terms(m, x, y, torch.Generator().manual_seed(4))

    g = torch.Generator().manual_seed(4)
    qz, qw = m.posterior_z(x).base_dist, m.posterior_w(x, y).base_dist
    z = qz.loc + qz.scale * torch.randn(5, 3, generator=g, dtype=torch.float64)
    w = qw.loc + qw.scale * torch.randn(5, 2, generator=g, dtype=torch.float64)
    torch.testing.assert_close(t["z"], z)
    torch.testing.assert_close(t["w"], w)
    mean = m.decoder(torch.cat([z, w], 1)).reshape(5, 4)
    rec = (-0.5 * ((x - mean) / 0.5) ** 2 - math.log(0.5) - 0.5 * math.log(2 * math.pi)).sum(1)
    torch.testing.assert_close(t["rec"], rec)
    mp = m.prior_loc[y]
    sp = torch.nn.functional.softplus(m.prior_raw_scale[y]) + 1e-4

    def kl(mq, sq, mp, sp):
        return (torch.log(sp / sq) + (sq ** 2 + (mq - mp) ** 2) / (2 * sp ** 2) - 0.5).sum(1)
    torch.testing.assert_close(t["kl_w"], kl(qw.loc, qw.scale, mp, sp))
    torch.testing.assert_close(t["kl_z"], kl(qz.loc, qz.scale, torch.zeros_like(qz.loc), torch.ones_like(qz.loc)))

    out = obj.loss("model", m, Batch(x, labels), generator=torch.Generator().manual_seed(4))
    pr = torch.sigmoid(obj.adversary(z).squeeze(-1))
    entropy = -(pr * pr.log() + (1 - pr) * (1 - pr).log())
    want = (-2.0 * rec + 0.7 * t["kl_w"] + 0.3 * t["kl_z"] - 5.0 * entropy).mean() / 4
    torch.testing.assert_close(out.loss, want)
    assert out.logs["elbo"] == pytest.approx(float((rec - t["kl_w"] - t["kl_z"]).detach().mean()))
    assert out.logs["entropy"] == pytest.approx(float(entropy.detach().mean()))
    adv = obj.loss("adversary", m, Batch(x, labels), generator=torch.Generator().manual_seed(4))
    zq = qz.loc + qz.scale * torch.randn(5, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    pa = torch.sigmoid(obj.adversary(zq).squeeze(-1))
    ce = -(y * pa.log() + (1 - y) * (1 - pa).log()).mean()
    torch.testing.assert_close(adv.loss, ce)


def test_entropy_term_pushes_the_adversary_towards_one_half_and_the_adversary_learns_y():
    torch.manual_seed(0)
    m = _model(spec=POINTS, attrs=[1], likelihood="gaussian")
    obj = _objective(m, spec=POINTS, reconstruction=0.0, kl_w=0.0, kl_z=0.0, entropy=1.0)
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        last = [mod for mod in m.encoder.modules() if isinstance(mod, torch.nn.Linear)][-1]
        last.bias[3:] = -6.0  # posterior std softplus(-6) = 0.0025: the draws are the means
        zm = m.posterior_z(x).mean[:, 0]
    labels = (zm > zm.median()).long()  # the attribute is visible in the (untrained) encoder's z
    batch = Batch(x, labels)
    y = m.attribute(labels).float()

    def adv_step(n):
        opt = torch.optim.Adam(obj.adversary.parameters(), lr=1e-2)
        for s in range(n):
            opt.zero_grad()
            obj.loss("adversary", m, batch, generator=torch.Generator().manual_seed(s)).loss.backward()
            opt.step()

    def confidence():
        with torch.no_grad():
            return float((torch.sigmoid(obj.adversary_logits(m.posterior_z(x).mean)) - 0.5).abs().mean())
    ce0 = obj.loss("adversary", m, batch, generator=torch.Generator().manual_seed(0)).loss.item()
    adv_step(200)
    ce1 = obj.loss("adversary", m, batch, generator=torch.Generator().manual_seed(0)).loss.item()
    assert ce1 < ce0 - 0.05, (ce0, ce1)  # q_delta(y|z) learns y from z
    with torch.no_grad():
        acc = float(((obj.adversary_logits(m.posterior_z(x).mean) > 0).float() == y).float().mean())
    assert acc > 0.7
    before = confidence()
    opt = torch.optim.Adam(m.encoder.parameters(), lr=1e-2)
    for s in range(50):
        opt.zero_grad()
        obj.loss("model", m, batch, generator=torch.Generator().manual_seed(s)).loss.backward()
        opt.step()
    after = confidence()
    assert after < 0.25 * before, (before, after)  # the encoder made the (fixed) adversary unsure


def test_swap_changes_the_attribute_latent_only():
    m = _model()
    b = _digits_batch()
    zero, one = torch.zeros(6, dtype=torch.long), torch.ones(6, dtype=torch.long)
    with torch.no_grad():
        z0, w0 = m.swap_codes(b.x, zero)
        z1, w1 = m.swap_codes(b.x, one)
        torch.testing.assert_close(z0, m.posterior_z(b.x).mean)
        assert torch.equal(z0, z1)
        torch.testing.assert_close(w0, m.prior_loc[zero])
        torch.testing.assert_close(w1, m.prior_loc[one])
        torch.testing.assert_close(m.swap(b.x, one), m.likelihood_zw(z1, w1).mean)
        assert not torch.allclose(m.swap(b.x, one), m.swap(b.x, zero))
        d1 = m.swap_codes(b.x, one, draw=True, generator=torch.Generator().manual_seed(0))
        d2 = m.swap_codes(b.x, one, draw=True, generator=torch.Generator().manual_seed(0))
        assert torch.equal(d1[1], d2[1]) and torch.equal(d1[0], z1) and not torch.equal(d1[1], w1)
    with pytest.raises(ValueError, match=r"in \{0, 1\}"):
        m.swap(b.x, torch.full((6,), 2))


def test_save_load_round_trip_through_genlab_train(tmp_path):
    from genlab import load
    from genlab.build import load_config
    from genlab.train import fit

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "name: t\nseed: 0\ndata: {name: digits}\n"
        "model: {name: csvae, attribute_classes: [0, 2, 4, 6, 8], z_dim: 3, w_dim: 2,\n"
        "        encoder: {name: mlp, hidden: 16, depth: 1}, decoder: {name: mlp, hidden: 16, depth: 1}}\n"
        "objective: {name: csvae, hidden: 8, depth: 1}\n"
        "train: {steps: 3, batch_size: 8, sample_every: 0, ckpt_every: 0}\neval: {metrics: []}\n")
    fit(load_config(cfg), tmp_path / "run")
    from safetensors.torch import load_file

    adversary = load_file(next((tmp_path / "run" / "ckpt").glob("step-*/objective.safetensors")))
    assert any(k.startswith("adversary.") for k in adversary)  # q_delta is saved with the objective
    m = load(tmp_path / "run")
    assert isinstance(m, CSVAE) and m.attribute_classes == EVEN
    ref = CSVAE(data_spec=DIGITS, attribute_classes=EVEN, z_dim=3, w_dim=2,
                encoder={"name": "mlp", "hidden": 16, "depth": 1}, decoder={"name": "mlp", "hidden": 16, "depth": 1})
    assert not torch.allclose(ref.prior_loc, m.prior_loc)  # trained for 3 steps: the learned prior moved
    ref.load_state_dict(m.state_dict())
    b = _digits_batch()
    with torch.no_grad():
        torch.testing.assert_close(m.posterior(b.x, context=b.y).mean, ref.posterior(b.x, context=b.y).mean)
        torch.testing.assert_close(m.swap(b.x, torch.ones(6, dtype=torch.long)),
                                   ref.swap(b.x, torch.ones(6, dtype=torch.long)))
        z = torch.randn(6, 5)
        torch.testing.assert_close(m.likelihood(z).log_prob(b.x), ref.likelihood(z).log_prob(b.x))


def test_clear_errors():
    unlabelled = DataSpec(name="pts", kind="points", event_shape=(4,))
    with pytest.raises(ValueError, match="labelled data"):
        _model(spec=unlabelled, attrs=[0], likelihood="gaussian")
    for bad, msg in (([], "non-empty list"), ([10], "not labels"), ([1, 1], "repeated"),
                     (list(range(10)), "every class"), (["a"], "non-empty list"), (3, "non-empty list")):
        with pytest.raises(ValueError, match=msg):
            _model(attrs=bad)
    m = _model()
    obj = _objective(m)
    with pytest.raises(ValueError, match="needs labels in the batch"):
        obj.loss("model", m, Batch(_digits_batch().x))
    with pytest.raises(ValueError, match="players"):
        obj.loss("critic", m, _digits_batch())


def test_config_checks_and_the_plain_elbo_objective_on_csvae(tmp_path):
    from genlab.build import load_config
    from genlab.objectives.variational import ELBO

    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: t\ndata: {name: digits}\nmodel: {name: csvae, attribute_classes: [0], z_dim: 0}\n"
                   "objective: {name: csvae}\ntrain: {steps: 1}\n")
    with pytest.raises(Exception, match="z_dim"):
        load_config(cfg)
    m = _model()
    elbo = ELBO()
    elbo.setup(m, DIGITS)
    assert torch.isfinite(elbo.loss("model", m, _digits_batch()).loss)


def test_bench_is_registered():
    from genlab import registry
    from genlab.cli.commands import BENCHES
    from genlab.experiments import EXPERIMENTS

    assert BENCHES["csvae"] == "csvae" and "csvae" in EXPERIMENTS
    assert registry.MODELS["csvae"] is CSVAE and registry.OBJECTIVES["csvae"] is CSVAEObjective


def test_recipe_validates_and_builds():
    from pathlib import Path

    import genlab
    from genlab.build import build, load_config

    exp = build(load_config(Path(genlab.__file__).parent / "recipes" / "digits-csvae.yaml", []))
    assert isinstance(exp.model, CSVAE) and exp.model.attribute_classes == EVEN
    assert isinstance(exp.objective, CSVAEObjective) and exp.objective.beta_rec == 1.0
