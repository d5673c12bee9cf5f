"""VAE-GAN hybrids and likelihood-plus-adversarial training: objectives that combine an
encoder or an exact likelihood with discriminators. All three hold their helper networks
(discriminators) themselves, like the GAN objectives; the model's weights stay in the model.

* ``alpha_gan``: alpha-GAN (Rosca, Lakshminarayanan, Warde-Farley & Mohamed 2017,
  arXiv 1706.04987) on a model with an amortised posterior (``vae``). Encoder ``z^ ~ q(z|x)``
  (or its mean), generator ``G(z) = E[x | z]`` (the decoder mean), a data critic ``D(x)``
  and a code critic ``C(z)``. With ``lambda = reconstruction_weight`` and the losses of the
  two games (``loss``, ``code_loss``), one training step is (Algorithm 1 of the paper):

  - critic ``D``: ``L_D(real = x, fake = [G(z^), G(z)])``, ``z ~ p(z)``: data against
    reconstructions *and* samples, pooled;
  - code critic ``C``: ``L_C(real = z ~ p(z), fake = z^)``;
  - encoder: ``lambda * rec(x, G(z^)) + l_C(C(z^))``;
  - generator: ``lambda * rec(x, G(z^)) + l_D(D(G(z^))) + l_D(D(G(z)))``.

  The encoder and generator are one player, ``model`` (one optimiser over both, so both take
  Adam steps with the same settings, simultaneously), but each gets exactly its own
  gradient: the adversarial term on reconstructions is computed from ``z^`` with its
  gradient stopped, so it moves the generator and not the encoder, and ``C(z^)`` depends on
  the encoder only. ``rec`` is ``l1`` (the paper's ``||x - G(z^)||_1``, here the mean over
  dimensions so that ``lambda`` does not scale with D) or ``likelihood`` (``-log p(x | z^)``
  per dimension under the model's own decoder likelihood, on dequantised inputs for a
  continuous likelihood on discrete data). The default game for both critics is ``ratio``:
  a logistic critic whose player minimises ``-E logit D = E[log(1 - D) - log D]``, the
  density-ratio form ``-log r``, ``r = D / (1 - D)``, of the paper's Algorithm 1 as we read it
  (for the code game it is the estimate of ``KL(q(z) || p(z))`` the paper derives);
  ``gan``, ``nsgan``, ``hinge``, ``lsgan`` and ``wgan`` are the components of
  :mod:`genlab.objectives.gan_losses`. ``encoder: sample`` uses a reparameterised draw of the
  posterior (so its variance is trained too, and the ``latent`` metric's one-draw codes are
  what the code critic saw); ``mean`` is a deterministic encoder. With ``reconstruction: l1``
  only the decoder mean is trained (e.g. the discretised logistic's log-scale never is): sample
  such a model with ``sample_from: mean``, and do not read its likelihood bounds.

* ``avb``: adversarial variational Bayes (Mescheder, Nowozin & Geiger 2017, arXiv 1701.04722)
  on a VAE with an implicit posterior (``vae`` with ``posterior: implicit``): a discriminator
  ``T(x, z)`` is trained as the logistic classifier of ``(x, z ~ q(z|x))`` against
  ``(x, z ~ p(z))``, ``min E_q softplus(-T) + E_p softplus(T)``, whose optimum is
  ``T*(x, z) = log q(z|x) - log p(z)`` (their Proposition 1). The model maximises
  ``E_q[log p(x|z) - beta T(x, z)]`` (their Algorithm 1; ``beta = 1`` is the ELBO estimate)
  with ``z = g(x, eps)`` reparameterised; ``T``'s weights are not stepped by the model
  (Proposition 2: the gradient through ``T``'s parameters vanishes at the optimum). ``T`` is a
  net ``h(x)`` (``discriminator`` spec, ``features`` outputs) whose output is concatenated
  with ``z`` and passed through an MLP (``hidden`` x ``depth``). Adaptive contrast (their
  Section 3.2) is not implemented.

* ``ade``: adaptive density estimation's training principle (Lucas, Shmelkov, Alahari, Schmid
  & Verbeek 2019, "Adaptive density estimation for generative models", NeurIPS, arXiv
  1901.01091) on ONE model with an exact likelihood (a flow): the model minimises
  ``NLL / D + weight * l_D(D(x~))``, ``x~ = model.rsample(B)``: maximum likelihood (the
  ``mle`` objective's ``data_log_prob``, uniform or variational dequantisation) for coverage,
  plus an adversarial term for sample quality, with a critic player ``D``. The critic sees
  uniformly dequantised data when the data are discrete (the flow models the dequantised
  density, so both terms have the same optimum). ``weight: 0`` is maximum likelihood exactly
  (same loss, same gradients, same random numbers). The paper's flow-in-feature-space VAE
  decoder is not reproduced: the principle is applied to any density model, which is the
  Flow-GAN hybrid of Grover, Dhar & Ermon 2018 (arXiv 1705.08868).

The data critics ``D`` of ``alpha_gan`` and ``ade`` are a component, :class:`DataCritic` (the
critic machinery of :mod:`genlab.objectives.adversarial`), so they take the shared critic
options ``penalty``, ``spectral_norm`` and ``pack``, and log ``critic/estimate``. All three
objectives are unconditional (``conditional = False``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from genlab.data.base import Batch, DataSpec
from genlab.data.dequantize import uniform_dequantize
from genlab.kwargs import NonNegativeFloat, PositiveInt
from genlab.models.base import (
    AmortizedPosterior,
    DensityModel,
    GenerativeModel,
    ReparameterizedModel,
)
from genlab.models.likelihoods import likelihood_is_discrete, variational_input
from genlab.models.vae import ImplicitPosterior
from genlab.nets.build import build_encoder
from genlab.nets.mlp import MLP
from genlab.objectives.adversarial import AdversarialObjective
from genlab.objectives.base import LossOutput, Objective
from genlab.objectives.gan_losses import (
    ADVERSARIAL_LOSSES,
    AdversarialLoss,
    logistic_critic_loss,
)
from genlab.objectives.likelihood import MaximumLikelihood
from genlab.sampling.importance import sample_distribution

HybridLossName = Literal["ratio", "gan", "nsgan", "hinge", "lsgan", "wgan"]


class LogRatioLoss(AdversarialLoss):
    """The density-ratio game: a logistic critic whose logit ``D`` estimates ``log p/q`` (data over
    model); the player minimises ``-E_Q D = E_Q[log(1 - sigmoid D) - log sigmoid D]``, the sum of
    the saturating and non-saturating GAN losses, i.e. an estimate of ``KL(Q || P)`` (alpha-GAN,
    arXiv 1706.04987)."""

    def critic_loss(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        return logistic_critic_loss(d_real, d_fake)

    def generator_loss(self, d_fake: Tensor, d_real: Tensor | None) -> Tensor:
        return -d_fake.mean()

    def estimate(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        """``2 JS - log 4``."""
        return -self.critic_loss(d_real, d_fake)


def hybrid_loss(name: str, where: str) -> AdversarialLoss:
    """The loss component ``name``: ``ratio`` or one of :data:`ADVERSARIAL_LOSSES`."""
    if name == "ratio":
        return LogRatioLoss()
    if name not in ADVERSARIAL_LOSSES:
        raise ValueError(f"{where}: unknown adversarial loss {name!r}; choose ratio or one of "
                         f"{', '.join(ADVERSARIAL_LOSSES)}")
    return ADVERSARIAL_LOSSES[name]()


def posterior_draw(q: Distribution, generator: torch.Generator | None) -> Tensor:
    """One reparameterised draw ``(B, *latent)`` of ``q`` (Gaussian or implicit) with ``generator``."""
    if isinstance(q, ImplicitPosterior):  # it takes the generator itself
        return q.rsample(generator=generator)
    return sample_distribution(q, generator=generator)


def prior_draw(model: AmortizedPosterior, n: int, generator: torch.Generator | None) -> Tensor:
    """``(n, *latent)`` codes from the model's prior, drawn with ``generator``."""
    prior = model.prior()
    z = sample_distribution(prior, (n,), generator=generator)
    return z.to(next(model.parameters()).dtype)


def _check_unconditional(model: GenerativeModel, name: str) -> None:
    if model.conditional:
        raise ValueError(f"{name} is unconditional: its discriminators never see labels; use model: vae "
                         "(not cond_vae) or a class-conditional objective")


class DataCritic(AdversarialObjective):
    """A scalar data critic ``D(x)`` with a loss component and the shared critic options
    (penalties, spectral normalisation, packing): the ``D`` of ``alpha_gan`` and ``ade``, held as a
    component (not registered; its own ``loss`` and players are unused)."""

    def __init__(self, *, adversarial: AdversarialLoss, critic: dict[str, Any] | None = None,
                 penalty: list[dict] | None = None, spectral_norm: bool = False, pack: int = 1):
        super().__init__(adversarial=adversarial, critic=critic, penalty=penalty, spectral_norm=spectral_norm,
                         pack=pack)


class AlphaGAN(Objective):
    """alpha-GAN (arXiv 1706.04987): an auto-encoder whose reconstructions and samples face a
    data critic and whose codes face a code critic; players ``model`` (encoder and decoder),
    ``critic`` (``D(x)``), ``code_critic`` (``C(z)``)."""

    requires: ClassVar[tuple[type, ...]] = (AmortizedPosterior,)
    players: ClassVar[tuple[str, ...]] = ("model", "critic", "code_critic")
    conditional: ClassVar[bool | None] = False

    def __init__(self, *, reconstruction_weight: NonNegativeFloat = 1.0,
                 reconstruction: Literal["l1", "likelihood"] = "l1", encoder: Literal["sample", "mean"] = "sample",
                 loss: HybridLossName = "ratio", code_loss: HybridLossName = "ratio",
                 critic: dict[str, Any] | None = None, code_critic: dict[str, Any] | None = None,
                 penalty: list[dict] | None = None, spectral_norm: bool = False, pack: PositiveInt = 1):
        """``reconstruction_weight``: lambda; ``critic``/``code_critic``: net specs of ``D`` (on data)
        and ``C`` (on codes; default an MLP)."""
        if reconstruction not in ("l1", "likelihood"):
            raise ValueError(f"alpha_gan: reconstruction must be l1 or likelihood, got {reconstruction!r}")
        if encoder not in ("sample", "mean"):
            raise ValueError(f"alpha_gan: encoder must be sample or mean, got {encoder!r}")
        super().__init__()
        self.data = DataCritic(adversarial=hybrid_loss(loss, "alpha_gan loss"), critic=critic, penalty=penalty,
                               spectral_norm=spectral_norm, pack=pack)
        self.code_adversarial = hybrid_loss(code_loss, "alpha_gan code_loss")
        self.reconstruction_weight, self.reconstruction, self.encoder = reconstruction_weight, reconstruction, encoder
        self.code_critic_spec = dict(code_critic or {})
        self.code_critic: nn.Module | None = None

    def setup(self, model: GenerativeModel, data_spec: DataSpec) -> None:
        if not isinstance(model, AmortizedPosterior):
            raise ValueError(f"alpha_gan needs a model with an encoder (amortised posterior), such as vae; "
                             f"{type(model).__name__} has none")
        _check_unconditional(model, "alpha_gan")
        if self.encoder == "mean" and getattr(model, "implicit_posterior", False):
            raise ValueError("alpha_gan: encoder: mean needs a posterior with a mean; this model's posterior is "
                             "implicit. Use encoder: sample")
        self.data.setup(model, data_spec)
        self.spec = data_spec
        self.discrete = likelihood_is_discrete(model)
        self.code_critic = build_encoder(self.code_critic_spec, in_shape=tuple(model.latent_shape), out_features=1)

    def helper_modules(self) -> dict[str, list[nn.Module]]:
        if self.code_critic is None:
            raise RuntimeError("AlphaGAN.setup(model, data_spec) must be called before use (it builds the critics)")
        return {"critic": [self.data._critic()], "code_critic": [self.code_critic]}

    def code_fn(self, z: Tensor) -> Tensor:
        """The code critic's output ``(B,)`` on codes ``(B, *latent)``."""
        return self.code_critic(z).squeeze(-1)

    def _encode(self, model: AmortizedPosterior, x: Tensor, generator: torch.Generator | None) -> Tensor:
        q = model.posterior(x)
        return q.mean if self.encoder == "mean" else posterior_draw(q, generator)

    def _inputs(self, x: Tensor, generator: torch.Generator | None) -> tuple[Tensor, float]:
        if self.reconstruction == "likelihood":
            return variational_input(x, self.spec, discrete=self.discrete, generator=generator)
        return x, 0.0

    def loss(self, player: str, model: GenerativeModel, batch: Batch, *, step: int = 0,
             generator: torch.Generator | None = None) -> LossOutput:
        if not hasattr(self, "spec"):
            raise RuntimeError("AlphaGAN.setup(model, data_spec) must be called before loss()")
        x = batch.x
        b = x.shape[0]
        if player == "critic":
            with torch.no_grad():
                x_in, _ = self._inputs(x, generator)
                z_hat = self._encode(model, x_in, generator)
                fake = torch.cat([model.likelihood(z_hat).mean, model.likelihood(prior_draw(model, b, generator)).mean])
            return self.data.critic_step(x, fake, generator)
        if player == "code_critic":
            with torch.no_grad():
                x_in, _ = self._inputs(x, generator)
                z_hat = self._encode(model, x_in, generator)
                z = prior_draw(model, b, generator)
            c_prior, c_post = self.code_fn(z), self.code_fn(z_hat)
            loss = self.code_adversarial.critic_loss(c_prior, c_post)
            return LossOutput(loss, {"loss": loss.item(), "c_prior": c_prior.mean().item(),
                                     "c_posterior": c_post.mean().item()})
        if player != "model":
            raise ValueError(f"alpha_gan has players {self.players}, got {player!r}")
        x_in, offset = self._inputs(x, generator)
        z_hat = self._encode(model, x_in, generator)
        if self.reconstruction == "l1":
            rec = (x - model.likelihood(z_hat).mean).abs().flatten(1).mean(1)
        else:
            rec = -model.likelihood(z_hat).log_prob(x_in) / self.spec.dim
        x_rec = model.likelihood(z_hat.detach()).mean  # the generator's term: no gradient into the encoder
        x_gen = model.likelihood(prior_draw(model, b, generator)).mean
        d = self.data
        d_real = d.critic_fn(x) if d.uses_real_in_generator else None
        adv_rec = d.generator_loss(d.critic_fn(x_rec), d_real)
        adv_gen = d.generator_loss(d.critic_fn(x_gen), d_real)
        code_adv = self.code_adversarial.generator_loss(self.code_fn(z_hat), None)
        loss = self.reconstruction_weight * rec.mean() + adv_rec + adv_gen + code_adv
        logs = {"loss": loss.item(), "rec": rec.mean().item(), "adv_rec": adv_rec.item(), "adv_gen": adv_gen.item(),
                "code_adv": code_adv.item()}
        if self.reconstruction == "likelihood":
            logs["rec_nats"] = -(rec.mean().item() * self.spec.dim) - offset
        return LossOutput(loss, logs)


class AVB(Objective):
    """Adversarial variational Bayes (arXiv 1701.04722): a VAE with an implicit posterior, its
    KL term estimated by a discriminator ``T(x, z)``; players ``model`` and ``discriminator``."""

    requires: ClassVar[tuple[type, ...]] = (AmortizedPosterior,)
    players: ClassVar[tuple[str, ...]] = ("model", "discriminator")
    conditional: ClassVar[bool | None] = False

    def __init__(self, *, beta: NonNegativeFloat = 1.0, discriminator: dict[str, Any] | None = None,
                 features: PositiveInt = 64, hidden: PositiveInt = 128, depth: PositiveInt = 2,
                 activation: str = "relu"):
        """``discriminator``: net spec of ``T``'s data branch ``h(x)`` (``features`` outputs);
        ``hidden``/``depth``/``activation``: the MLP on ``[h(x), z]``; ``beta``: weight of ``T``
        in the model's loss (1: the ELBO)."""
        super().__init__()
        self.beta, self.disc_spec, self.features = beta, dict(discriminator or {}), features
        self.hidden, self.depth, self.activation = hidden, depth, activation
        self.x_net: nn.Module | None = None
        self.joint: nn.Module | None = None

    def setup(self, model: GenerativeModel, data_spec: DataSpec) -> None:
        if not isinstance(model, AmortizedPosterior) or not getattr(model, "implicit_posterior", False):
            raise ValueError(f"avb needs a model with an implicit posterior (model: vae with posterior: implicit); "
                             f"{type(model).__name__} has "
                             f"{'a Gaussian posterior: train it with elbo' if isinstance(model, AmortizedPosterior) else 'no posterior'}")
        _check_unconditional(model, "avb")
        self.spec = data_spec
        self.discrete = likelihood_is_discrete(model)
        self.x_net = build_encoder(self.disc_spec, in_shape=tuple(data_spec.event_shape), out_features=self.features)
        self.joint = MLP(in_shape=(self.features + math.prod(model.latent_shape),), out_features=1,
                         hidden=self.hidden, depth=self.depth, activation=self.activation)

    def helper_modules(self) -> dict[str, list[nn.Module]]:
        if self.x_net is None:
            raise RuntimeError("AVB.setup(model, data_spec) must be called before use (it builds the discriminator)")
        return {"discriminator": [self.x_net, self.joint]}

    def discriminator_fn(self, x: Tensor, z: Tensor) -> Tensor:
        """``T(x, z)`` ``(B,)`` for data ``(B, *event)`` and codes ``(B, *latent)``: at the optimum,
        ``log q(z|x) - log p(z)``."""
        if self.x_net is None:
            raise RuntimeError("AVB.setup(model, data_spec) must be called before use (it builds the discriminator)")
        return self.joint(torch.cat([self.x_net(x), z.flatten(1)], 1)).squeeze(-1)

    def loss(self, player: str, model: GenerativeModel, batch: Batch, *, step: int = 0,
             generator: torch.Generator | None = None) -> LossOutput:
        if not hasattr(self, "spec"):
            raise RuntimeError("AVB.setup(model, data_spec) must be called before loss()")
        x_in, offset = variational_input(batch.x, self.spec, discrete=self.discrete, generator=generator)
        if player == "discriminator":
            with torch.no_grad():
                z_q = posterior_draw(model.posterior(x_in), generator)
                z_p = prior_draw(model, x_in.shape[0], generator)
            t_q, t_p = self.discriminator_fn(x_in, z_q), self.discriminator_fn(x_in, z_p)
            loss = logistic_critic_loss(t_q, t_p)
            return LossOutput(loss, {"loss": loss.item(), "t_posterior": t_q.mean().item(),
                                     "t_prior": t_p.mean().item()})
        if player != "model":
            raise ValueError(f"avb has players {self.players}, got {player!r}")
        z = posterior_draw(model.posterior(x_in), generator)
        rec = model.likelihood(z).log_prob(x_in)
        t = self.discriminator_fn(x_in, z)
        loss = -(rec - self.beta * t).mean() / self.spec.dim
        elbo = float((rec - t).detach().mean()) - offset
        logs = {"loss": loss.item(), "elbo": elbo, "rec": rec.mean().item(), "kl": t.mean().item()}
        if self.spec.levels is not None:
            logs["bpd"] = -elbo / (self.spec.dim * math.log(2))
        return LossOutput(loss, logs)


class ADE(Objective):
    """Maximum likelihood plus an adversarial term on one exact-likelihood model (adaptive
    density estimation, Lucas et al. 2019, arXiv 1901.01091); players ``model`` and ``critic``."""

    requires: ClassVar[tuple[type, ...]] = (DensityModel, ReparameterizedModel)
    players: ClassVar[tuple[str, ...]] = ("model", "critic")
    conditional: ClassVar[bool | None] = False

    def __init__(self, *, weight: NonNegativeFloat = 0.1, loss: HybridLossName = "nsgan",
                 dequantize: Literal["uniform", "variational"] = "uniform", critic: dict[str, Any] | None = None,
                 penalty: list[dict] | None = None, spectral_norm: bool = False, pack: PositiveInt = 1):
        """``weight``: of the adversarial generator loss beside the NLL per dimension (0: pure MLE);
        ``loss``: the adversarial game; ``dequantize``: as in ``mle``."""
        super().__init__()
        self.data = DataCritic(adversarial=hybrid_loss(loss, "ade loss"), critic=critic, penalty=penalty,
                               spectral_norm=spectral_norm, pack=pack)
        self.weight = weight
        self.mle = MaximumLikelihood(dequantize=dequantize)

    def setup(self, model: GenerativeModel, data_spec: DataSpec) -> None:
        if not isinstance(model, DensityModel) or not isinstance(model, ReparameterizedModel):
            raise ValueError(f"ade needs one model with an exact likelihood (log_prob) and reparameterised samples "
                             f"(rsample), such as realnvp; {type(model).__name__} lacks "
                             f"{'log_prob' if not isinstance(model, DensityModel) else 'rsample'}")
        _check_unconditional(model, "ade")
        self.mle.setup(model, data_spec)
        self.data.setup(model, data_spec)
        self.spec = data_spec

    def helper_modules(self) -> dict[str, list[nn.Module]]:
        return {"critic": [self.data._critic()]}

    def player_parameters(self, model: GenerativeModel) -> dict[str, list[nn.Parameter]]:
        params = super().player_parameters(model)
        if self.mle.dequantizer is not None:  # the variational dequantiser learns with the model, as in mle
            params["model"] = params["model"] + list(self.mle.dequantizer.parameters())
        return params

    def _real(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        return uniform_dequantize(x, self.spec, generator) if self.spec.levels is not None else x

    def loss(self, player: str, model: GenerativeModel, batch: Batch, *, step: int = 0,
             generator: torch.Generator | None = None) -> LossOutput:
        if not hasattr(self, "spec"):
            raise RuntimeError("ADE.setup(model, data_spec) must be called before loss()")
        if player == "critic":
            with torch.no_grad():
                fake = model.rsample(batch.x.shape[0], generator=generator)
            return self.data.critic_step(self._real(batch.x, generator), fake, generator)
        if player != "model":
            raise ValueError(f"ade has players {self.players}, got {player!r}")
        out = self.mle.loss("model", model, batch, step=step, generator=generator)
        if self.weight == 0:
            return out
        fake = model.rsample(batch.x.shape[0], generator=generator)
        d = self.data
        d_real = d.critic_fn(self._real(batch.x, generator)) if d.uses_real_in_generator else None
        adv = d.generator_loss(d.critic_fn(fake), d_real)
        loss = out.loss + self.weight * adv
        return LossOutput(loss, {**out.logs, "loss": loss.item(), "adv": adv.item()})
