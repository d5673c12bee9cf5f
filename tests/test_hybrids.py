"""VAE-GAN hybrids and likelihood-plus-adversarial training (objectives alpha_gan, avb, ade) and the
implicit posterior of the VAE: which players each loss reaches, toy learning, AVB's discriminator
against the closed-form log ratio, ADE with weight 0 against maximum likelihood, save/load, and
the errors for configurations that cannot work."""

from __future__ import annotations

import math

import pytest
import torch

from genlab import registry
from genlab.build import validate
from genlab.capabilities import CapabilityError
from genlab.config import from_dict
from genlab.data.base import Batch, DataSpec, image_spec
from genlab.experiments import simple_fit
from genlab.metrics.iwae import IWAEBound
from genlab.models.base import AmortizedPosterior, standard_normal
from genlab.models.flows import RealNVP
from genlab.models.vae import VAE, ImplicitPosterior
from genlab.objectives.hybrids import ADE, AVB, AlphaGAN
from genlab.objectives.likelihood import MaximumLikelihood
from genlab.objectives.variational import ELBO
from genlab.sampling.importance import sample_distribution

POINTS2 = DataSpec(name="p2", kind="points", event_shape=(2,))
DIGITS = image_spec("digits", (1, 8, 8), levels=17)
SMALL = {"name": "mlp", "hidden": 32, "depth": 2}
TARGET = torch.tensor([1.5, -1.0])


def _vae(posterior: str = "gaussian", noise_std: float = 0.1, **kw) -> VAE:
    torch.manual_seed(0)
    return VAE(data_spec=POINTS2, latent_dim=2, likelihood="gaussian_fixed", noise_std=noise_std, encoder=SMALL,
               decoder=SMALL, posterior=posterior, **kw)


def _target(n: int, g: torch.Generator) -> torch.Tensor:
    """The toy data: ``N((1.5, -1), diag(0.5^2, 0.25^2))``."""
    return TARGET + torch.randn(n, 2, generator=g) * torch.tensor([0.5, 0.25])


def _energy(a: torch.Tensor, b: torch.Tensor) -> float:
    """Energy distance ``2 E|A-B| - E|A-A'| - E|B-B'|`` (0 iff the distributions agree)."""
    a, b = a.detach(), b.detach()
    return float(2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean())


def _clear(*modules) -> None:
    for m in modules:
        for p in m.parameters():
            p.grad = None


def _touched(module) -> bool:
    return any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in module.parameters())


def _untouched(module) -> bool:
    return all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in module.parameters())


# --- which players each loss reaches ----------------------------------------------------

def test_alpha_gan_players_reach_only_their_own_networks():
    m = _vae()
    obj = AlphaGAN(critic=SMALL, code_critic=SMALL)
    obj.setup(m, POINTS2)
    params = obj.player_parameters(m)
    assert list(params) == ["model", "critic", "code_critic"]
    assert [id(p) for p in params["model"]] == [id(p) for p in m.parameters()]
    ids = [{id(p) for p in params[k]} for k in params]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    x, g = _target(32, torch.Generator().manual_seed(0)), torch.Generator().manual_seed(1)
    for player, own, others in (("critic", obj.data.critic, (m, obj.code_critic)),
                                ("code_critic", obj.code_critic, (m, obj.data.critic))):
        _clear(m, obj)
        obj.loss(player, m, Batch(x), generator=g).loss.backward()
        assert _touched(own) and all(_untouched(o) for o in others), player
    _clear(m, obj)
    out = obj.loss("model", m, Batch(x), generator=g)
    out.loss.backward()
    assert _touched(m.encoder) and _touched(m.decoder)
    assert {"rec", "adv_rec", "adv_gen", "code_adv"} <= set(out.logs)


def test_alpha_gan_data_critic_moves_the_decoder_but_never_the_encoder():
    """With lambda = 0 and a constant code critic, the only paths to the encoder are the data
    critic's terms on reconstructions, which Algorithm 1 gives to the generator only."""
    m = _vae()
    obj = AlphaGAN(critic=SMALL, code_critic=SMALL, reconstruction_weight=0.0)
    obj.setup(m, POINTS2)
    with torch.no_grad():
        obj.code_critic.net[-1].weight.zero_()
    x = _target(32, torch.Generator().manual_seed(0))
    obj.loss("model", m, Batch(x), generator=torch.Generator().manual_seed(1)).loss.backward()
    assert _touched(m.decoder) and _untouched(m.encoder)


def test_avb_players_reach_only_their_own_networks():
    m = _vae("implicit")
    obj = AVB(discriminator=SMALL, features=8, hidden=32)
    obj.setup(m, POINTS2)
    assert list(obj.player_parameters(m)) == ["model", "discriminator"]
    x, g = _target(32, torch.Generator().manual_seed(0)), torch.Generator().manual_seed(1)
    obj.loss("discriminator", m, Batch(x), generator=g).loss.backward()
    assert _touched(obj) and _untouched(m)
    _clear(m, obj)
    out = obj.loss("model", m, Batch(x), generator=g)
    out.loss.backward()
    assert _touched(m.encoder) and _touched(m.noise_head) and _touched(m.decoder)
    assert {"elbo", "rec", "kl"} <= set(out.logs)


def test_ade_players_reach_only_their_own_networks():
    torch.manual_seed(0)
    m = RealNVP(data_spec=POINTS2, hidden=16, couplings=4)
    obj = ADE(weight=0.5, critic=SMALL)
    obj.setup(m, POINTS2)
    assert list(obj.player_parameters(m)) == ["model", "critic"]
    x, g = _target(32, torch.Generator().manual_seed(0)), torch.Generator().manual_seed(1)
    obj.loss("critic", m, Batch(x), generator=g).loss.backward()
    assert _touched(obj.data.critic) and _untouched(m)
    _clear(m, obj)
    out = obj.loss("model", m, Batch(x), generator=g)
    out.loss.backward()
    assert _touched(m) and {"nll", "adv"} <= set(out.logs)


# --- toy learning --------------------------------------------------------------------------

def _samples(m, n: int = 1000) -> torch.Tensor:
    return m.sample(n, generator=torch.Generator().manual_seed(7))


def test_alpha_gan_learns_a_gaussian_and_pulls_the_codes_to_the_prior():
    m = _vae(sample_from="mean")
    obj = AlphaGAN(critic=SMALL, code_critic=SMALL, reconstruction_weight=1.0, loss="nsgan", code_loss="nsgan")
    obj.setup(m, POINTS2)
    data = _target(1000, torch.Generator().manual_seed(3))
    before = _energy(_samples(m), data)
    simple_fit(m, obj, _target, steps=600, lr=3e-3, batch_size=128, seed=0)
    after = _energy(_samples(m), data)
    assert after < 0.1 * before and after < 0.03, (before, after)  # two samples of the target: 0.004
    codes = sample_distribution(m.posterior(data), generator=torch.Generator().manual_seed(4))
    assert _energy(codes, torch.randn(1000, 2, generator=torch.Generator().manual_seed(5))) < 0.1


def test_avb_learns_a_gaussian():
    """Decoder noise 0.3: the posterior stays broad enough for the logistic discriminator to track
    log q - log p (with 0.1 and one discriminator step per model step, T lags behind a narrowing
    posterior and training drifts after a few hundred steps; three discriminator steps fix it, slower)."""
    m = _vae("implicit", noise_std=0.3)
    obj = AVB(discriminator=SMALL, features=8, hidden=32)
    obj.setup(m, POINTS2)
    data = _target(1000, torch.Generator().manual_seed(3))
    before = _energy(_samples(m), data)
    simple_fit(m, obj, _target, steps=500, lr=3e-3, batch_size=128, seed=0)
    after = _energy(_samples(m), data)
    assert after < 0.1 * before and after < 0.05, (before, after)
    codes = m.posterior(data).sample(generator=torch.Generator().manual_seed(4))
    assert _energy(codes, torch.randn(1000, 2, generator=torch.Generator().manual_seed(5))) < 0.1


def test_ade_learns_a_gaussian_with_a_good_likelihood():
    torch.manual_seed(0)
    m = RealNVP(data_spec=POINTS2, hidden=16, couplings=4)
    obj = ADE(weight=0.5, critic=SMALL)
    obj.setup(m, POINTS2)
    data = _target(1000, torch.Generator().manual_seed(3))
    before = _energy(_samples(m), data)
    simple_fit(m, obj, _target, steps=300, lr=3e-3, batch_size=128, seed=0)
    after = _energy(_samples(m), data)
    assert after < 0.1 * before and after < 0.05, (before, after)
    entropy = 2 * 0.5 * math.log(2 * math.pi * math.e) + math.log(0.5 * 0.25)  # the data's differential entropy
    with torch.no_grad():
        nll = float(-m.log_prob(data).mean())
    assert nll < entropy + 0.15, (nll, entropy)


# --- AVB's discriminator estimates log q(z|x) - log p(z) -----------------------------------------

class _FixedHead(torch.nn.Module):
    """``z = a x + s eps``: an implicit posterior whose density we know, ``N(a x, s^2)``."""

    def __init__(self, a: float, s: float):
        super().__init__()
        self.a, self.s = a, s

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.a * h[:, :1] + self.s * h[:, 1:]


class _KnownPosteriorModel(AmortizedPosterior):
    implicit_posterior = True

    def __init__(self, a: float = 0.8, s: float = 0.5):
        super().__init__()
        self.event_shape, self.latent_shape = torch.Size((1,)), torch.Size((1,))
        self.head, self.dummy = _FixedHead(a, s), torch.nn.Parameter(torch.zeros(()))

    def posterior(self, x, *, context=None):
        return ImplicitPosterior(x, self.head, 1, 1)

    def prior(self, *, context=None):
        return standard_normal((1,))

    def likelihood(self, z, *, context=None):
        return torch.distributions.Independent(torch.distributions.Normal(z, torch.ones_like(z)), 1)

    def _sample(self, n, *, context, generator):
        return torch.randn(n, 1, generator=generator)


def test_avb_discriminator_converges_to_the_log_density_ratio():
    """x ~ N(0, 1), q(z|x) = N(0.8 x, 0.5^2), p(z) = N(0, 1): the optimal T is
    ``log q(z|x) - log p(z)`` and ``E T`` over q is ``KL = -log 0.5 + (0.25 + 0.64)/2 - 1/2``."""
    a, s = 0.8, 0.5
    m = _KnownPosteriorModel(a, s)
    spec = DataSpec(name="p1", kind="points", event_shape=(1,))
    obj = AVB(discriminator={"name": "mlp", "hidden": 32, "depth": 1}, features=8, hidden=64, activation="tanh")
    obj.setup(m, spec)
    torch.manual_seed(0)
    opt = torch.optim.Adam(obj.player_parameters(m)["discriminator"], lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(1500):
        loss = obj.loss("discriminator", m, Batch(torch.randn(256, 1, generator=g)), generator=g).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = torch.randn(4000, 1, generator=g)
    z = a * x + s * torch.randn(4000, 1, generator=g)
    truth = (torch.distributions.Normal(a * x, s).log_prob(z) - torch.distributions.Normal(0.0, 1.0).log_prob(z))[:, 0]
    with torch.no_grad():
        t = obj.discriminator_fn(x, z)
    kl = -math.log(s) + (s ** 2 + a ** 2) / 2 - 0.5
    assert float(t.mean()) == pytest.approx(kl, abs=0.1)
    assert float(truth.mean()) == pytest.approx(kl, abs=0.05)
    assert float((t - truth).abs().mean()) < 0.2


# --- ADE with weight 0 is maximum likelihood ---------------------------------------------------

def test_ade_with_weight_zero_is_maximum_likelihood_exactly():
    torch.manual_seed(0)
    flow = RealNVP(data_spec=DIGITS, hidden=8, scales=1, per_scale=2)
    ade, mle = ADE(weight=0.0, critic={"name": "conv", "width": 4}), MaximumLikelihood()
    ade.setup(flow, DIGITS)
    mle.setup(flow, DIGITS)
    x = DIGITS.to_model(torch.randint(0, 17, (8, 1, 8, 8), generator=torch.Generator().manual_seed(1)).float())
    grads = []
    for obj in (ade, mle):  # same dequantisation noise: the same generator seed
        flow.zero_grad()
        out = obj.loss("model", flow, Batch(x), generator=torch.Generator().manual_seed(2))
        out.loss.backward()
        grads.append([p.grad.clone() for p in flow.parameters()])
        value = float(out.loss.detach())
        if obj is ade:
            ade_value, ade_logs = value, out.logs
    assert ade_value == value and ade_logs == out.logs
    assert all(torch.equal(a, b) for a, b in zip(*grads))
    # whole trajectories: with the critic given no steps, the model sees exactly MLE's batches
    runs = []
    for obj in (ADE(weight=0.0, critic=SMALL), MaximumLikelihood()):
        torch.manual_seed(0)
        m = RealNVP(data_spec=POINTS2, hidden=16, couplings=4)
        obj.setup(m, POINTS2)
        simple_fit(m, obj, _target, steps=20, lr=1e-3, schedule={"critic": 0}, seed=0)
        runs.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    assert torch.equal(runs[0], runs[1])


# --- the implicit posterior: save/load, metrics, errors -----------------------------------------

def test_implicit_posterior_vae_saves_loads_and_falls_back_to_the_prior_in_iwae(tmp_path):
    from genlab import load
    from genlab.build import load_config
    from genlab.train import fit

    path = tmp_path / "c.yaml"
    path.write_text(
        "name: t\nseed: 0\ndata: {name: digits}\n"
        "model: {name: vae, latent_dim: 3, likelihood: logistic, posterior: implicit, noise_dim: 4,\n"
        "        encoder: {name: mlp, hidden: 16}, decoder: {name: mlp, hidden: 16}}\n"
        "objective: {name: avb, discriminator: {name: mlp, hidden: 16}, features: 8, hidden: 16}\n"
        "train: {steps: 3, batch_size: 8, sample_every: 0, ckpt_every: 0}\n"
        "eval: {metrics: [iwae, latent], n: 20, args: {iwae: {k: 5}}}\n")
    result = fit(load_config(path), tmp_path / "run")
    assert math.isfinite(result["eval"]["iwae_log_px"]) and math.isfinite(result["eval"]["latent_c2st_acc"])
    m = load(tmp_path / "run")
    assert m.implicit_posterior and isinstance(m.posterior(torch.zeros(2, 1, 8, 8)), ImplicitPosterior)
    torch.manual_seed(123)
    fresh = VAE(data_spec=DIGITS, latent_dim=3, likelihood="logistic", posterior="implicit", noise_dim=4,
                encoder={"name": "mlp", "hidden": 16}, decoder={"name": "mlp", "hidden": 16})
    x = DIGITS.to_model(torch.randint(0, 17, (6, 1, 8, 8), generator=torch.Generator().manual_seed(1)).float())

    def draws(model):
        return model.posterior(x).sample((2,), generator=torch.Generator().manual_seed(5))
    assert not torch.equal(draws(fresh), draws(m))
    fresh.load_state_dict(m.state_dict())  # strict: the noise head is saved with the encoder
    torch.testing.assert_close(draws(fresh), draws(m))
    batch = Batch(DIGITS.to_data(x))
    auto = IWAEBound(k=5, data_spec=DIGITS)
    auto.update(m, batch)
    prior = IWAEBound(k=5, proposal="prior", data_spec=DIGITS)
    prior.update(m, batch)
    torch.testing.assert_close(auto.values(), prior.values())  # auto = the prior proposal, same seed
    with pytest.raises(ValueError, match="implicit"):
        IWAEBound(k=5, proposal="posterior", data_spec=DIGITS).update(m, batch)


def test_bad_configurations_fail_with_clear_errors():
    gaussian, implicit = _vae(), _vae("implicit")
    with pytest.raises(ValueError, match="implicit posterior"):
        AVB().setup(gaussian, POINTS2)
    with pytest.raises(ValueError, match="exact likelihood"):
        ADE().setup(gaussian, POINTS2)
    with pytest.raises(ValueError, match="encoder: sample"):
        AlphaGAN(encoder="mean").setup(implicit, POINTS2)
    with pytest.raises(ValueError, match="unknown adversarial loss 'nsgn'"):
        AlphaGAN(loss="nsgn")
    with pytest.raises(ValueError, match="VampPrior"):
        _vae("implicit", prior="vampprior")
    with pytest.raises(ValueError, match="posterior is implicit"):  # the ELBO needs log q: refused at setup
        ELBO().setup(implicit, POINTS2)
    with pytest.raises(NotImplementedError, match="no density"):
        _ = implicit.posterior(torch.randn(4, 2)).mean

    def cfg(model, objective, data="ring8"):
        return from_dict({"data": {"name": data}, "model": model, "objective": objective})
    with pytest.raises(CapabilityError, match="log_prob"):
        validate(cfg({"name": "vae"}, {"name": "ade"}))
    with pytest.raises(CapabilityError, match="posterior"):
        validate(cfg({"name": "realnvp"}, {"name": "avb"}))
    with pytest.raises(CapabilityError, match="posterior"):
        validate(cfg({"name": "mlp_generator"}, {"name": "alpha_gan"}))
    with pytest.raises(CapabilityError, match="unconditional"):
        validate(cfg({"name": "cond_vae"}, {"name": "alpha_gan"}, data="digits"))
    for name in ("alpha_gan", "avb", "ade"):
        assert registry.OBJECTIVES[name].__doc__ and "arXiv" in registry.OBJECTIVES[name].__doc__


@pytest.mark.parametrize("recipe", ["digits-alpha-gan", "digits-avb", "digits-realnvp-ade"])
def test_recipes_validate_and_build(recipe):
    from genlab.build import build, load_config
    from genlab.config import RECIPES

    exp = build(load_config(RECIPES / f"{recipe}.yaml", []))
    assert set(exp.objective.player_parameters(exp.model)) == set(exp.objective.players)


@pytest.mark.slow
def test_distribution_matching_bench_quick(tmp_path):
    from genlab.experiments import distribution_matching

    res = distribution_matching.run(out=tmp_path, quick=True, progress=False)
    assert {"VAE (x ~ p(x|z))", "VAE (mean)", "AVB (mean)", "alpha-GAN", "GAN"} <= set(res["rows"])
    assert set(res["latent"]) == {"VAE", "AVB", "alpha-GAN"} and "latent" in res["claims"]
    assert (tmp_path / "distribution_matching.md").is_file() and (tmp_path / "distribution_matching.png").is_file()
