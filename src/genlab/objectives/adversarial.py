"""Critic-based ("learning by comparison") objectives: the shared machinery.

A critic ``D`` compares data with model samples; the generator learns from that
comparison. Any model with ``rsample`` can be the generator (MLP and conv
generators, flows, VAE decoders): the objective only calls
``model.rsample(n, generator=...)``. The critic net is owned by the objective
and sized from ``data_spec`` in :meth:`AdversarialObjective.setup`.

Regularisers shared by every critic objective are constructor options:

* ``penalty``: a list like ``[{name: gp, weight: 10}]`` of gradient penalties
  (``gp``, ``gp-one-sided``, ``dragan``, ``r1``, ``r2``; see
  :mod:`genlab.objectives.penalties`), added to the critic's loss;
* ``spectral_norm``: spectral normalisation of every linear and conv layer of the
  critic (Miyato et al. 2018, arXiv 1802.05957);
* ``pack``: PacGAN packing, the critic sees ``pack`` samples concatenated
  (arXiv 1712.04086; :mod:`genlab.objectives.packing`).

:class:`CriticObjective` holds all of that; :class:`AdversarialObjective` adds the
scalar-critic protocol. It holds a loss component
(:class:`~genlab.objectives.gan_losses.AdversarialLoss`) that gives two losses from
critic outputs ``(B,)``::

    critic_loss(d_real, d_fake) -> Tensor
    generator_loss(d_fake, d_real) -> Tensor      # d_real only if uses_real_in_generator

and optionally ``estimate(d_real, d_fake)``, the divergence the critic estimates. The
registered objectives are leaves ("abstract or final"): ``gan`` and ``nsgan`` are two
leaves built with two components, not a class and its subclass. Objectives whose
critic outputs features (Cramer, MMD-GAN) subclass :class:`CriticObjective` and
implement ``loss`` themselves.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from genlab.data.base import Batch, DataSpec
from genlab.models.base import GenerativeModel, ReparameterizedModel
from genlab.nets.build import build_encoder
from genlab.objectives.base import LossOutput, Objective
from genlab.objectives.gan_losses import AdversarialLoss, MinimaxLoss, NonSaturatingLoss
from genlab.objectives.packing import pack, packed_shape
from genlab.objectives.penalties import CriticFn, Penalty


def apply_spectral_norm(net: nn.Module) -> nn.Module:
    """Spectrally normalise every ``Linear`` and ``Conv*`` layer of ``net`` in place."""
    for name, child in list(net.named_children()):
        if isinstance(child, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            setattr(net, name, nn.utils.parametrizations.spectral_norm(child))
        else:
            apply_spectral_norm(child)
    return net


class CriticObjective(Objective):
    """Base for objectives with a ``generator`` and a ``critic`` net (scalar or feature
    output). Owns the critic, packing, spectral normalisation and penalties;
    subclasses implement :meth:`loss`.

    ``critic``: net spec ``{name: auto|mlp|conv, **kwargs}``; ``penalty``: list of
    ``{name, weight, **options}``; ``spectral_norm``: normalise critic layers;
    ``pack``: samples per critic input.
    """

    requires: ClassVar[tuple[type, ...]] = (ReparameterizedModel,)
    players: ClassVar[tuple[str, ...]] = ("generator", "critic")

    def __init__(self, *, critic: dict[str, Any] | None = None, penalty: list[dict] | None = None,
                 spectral_norm: bool = False, pack: int = 1):
        super().__init__()
        if pack < 1:
            raise ValueError(f"pack must be >= 1 (samples per critic input), got {pack}")
        self.critic_spec = dict(critic or {})
        self.penalties = [Penalty(p) for p in (penalty or [])]
        if any(p.every > 1 for p in self.penalties):
            # lazy penalties count critic steps; a buffer, so the count is checkpointed and resume is exact
            self.register_buffer("penalty_step", torch.zeros((), dtype=torch.long))
        self._penalty_logs: dict[str, float] = {}
        self.spectral_norm = spectral_norm
        self.pack = pack
        self.critic: nn.Module | None = None

    # --- construction ---------------------------------------------------------
    def critic_out_features(self) -> int:
        """Width of the critic's output: 1 for scalar critics, ``k`` for feature critics."""
        return 1

    def setup(self, model: GenerativeModel, data_spec: DataSpec) -> None:
        in_shape = packed_shape(data_spec.event_shape, self.pack)
        self.critic = build_encoder(self.critic_spec, in_shape=in_shape, out_features=self.critic_out_features())
        if self.spectral_norm:
            apply_spectral_norm(self.critic)

    def helper_modules(self) -> dict[str, list[nn.Module]]:
        return {"critic": [self._critic()]}

    def _critic(self) -> nn.Module:
        if self.critic is None:
            raise RuntimeError(f"{type(self).__name__}.setup(model, data_spec) must be called before use "
                               "(it builds the critic)")
        return self.critic

    # --- critic evaluation ------------------------------------------------------
    def packed(self, x: Tensor) -> Tensor:
        """``(B, *event_shape)`` -> the critic's input ``(B // pack, ...)``."""
        return pack(x, self.pack)

    def critic_net(self, xp: Tensor) -> Tensor:
        """Critic output on packed input: ``(N, out_features)``, squeezed to ``(N,)`` when 1."""
        out = self._critic()(xp)
        return out.squeeze(-1) if out.shape[-1] == 1 else out

    def critic_fn(self, x: Tensor) -> Tensor:
        """Critic output on samples ``(B, *event_shape)`` (packed first): ``(B // pack,)``."""
        return self.critic_net(self.packed(x))

    def penalty_terms(self, fn: CriticFn, real_p: Tensor, fake_p: Tensor,
                      generator: torch.Generator | None) -> tuple[Tensor, dict[str, float]]:
        """Sum of the penalties due on this critic step (see ``every`` in
        :mod:`genlab.objectives.penalties`) on packed inputs, and their latest values for logging."""
        total = real_p.new_zeros(())
        step = int(self.penalty_step) if hasattr(self, "penalty_step") else 0
        for p in self.penalties:
            if p.due(step):
                v = p(fn, real_p, fake_p, generator)
                total = total + v
                self._penalty_logs[f"penalty/{p.name}"] = v.item() / p.every
        if hasattr(self, "penalty_step"):
            self.penalty_step += 1
        return total, dict(self._penalty_logs)

    @abstractmethod
    def divergence_estimate(self, real: Tensor, fake: Tensor) -> float:
        """The critic's current estimate of the divergence between data ``real`` and
        samples ``fake`` (``(N, *event_shape)``)."""


class AdversarialObjective(CriticObjective):
    """Abstract base of the critic objectives with a scalar critic
    ``D: (B, *event_shape) -> (B,)``. Each leaf's constructor (its config keys) passes an
    :class:`~genlab.objectives.gan_losses.AdversarialLoss` component, to which
    :meth:`critic_loss`, :meth:`generator_loss` and :meth:`estimate` delegate; ``clip``
    clips the critic's weights to ``[-clip, clip]`` after every critic step (WGAN)."""

    @abstractmethod
    def __init__(self, *, adversarial: AdversarialLoss, critic: dict[str, Any] | None = None,
                 penalty: list[dict] | None = None, spectral_norm: bool = False, pack: int = 1,
                 clip: float | None = None):
        super().__init__(critic=critic, penalty=penalty, spectral_norm=spectral_norm, pack=pack)
        self.adversarial = adversarial
        self.clip = clip

    @property
    def uses_real_in_generator(self) -> bool:
        """Whether :meth:`generator_loss` needs the critic's outputs on data."""
        return self.adversarial.uses_real_in_generator

    def loss(self, player: str, model: GenerativeModel, batch: Batch, *, step: int = 0,
             generator: torch.Generator | None = None) -> LossOutput:
        x = batch.x
        if player == "critic":
            with torch.no_grad():
                fake = model.rsample(x.shape[0], generator=generator)
            return self.critic_step(x, fake.detach(), generator)
        if player == "generator":
            return self.generator_step(x, model, generator)
        raise ValueError(f"{type(self).__name__} has players {self.players}, got {player!r}")

    def critic_step(self, real: Tensor, fake: Tensor, generator: torch.Generator | None) -> LossOutput:
        """Critic loss on data ``real`` and detached samples ``fake`` (both ``(B, *event_shape)``)."""
        rp, fp = self.packed(real), self.packed(fake)
        d_real, d_fake = self.critic_net(rp), self.critic_net(fp)
        loss = self.critic_loss(d_real, d_fake)
        logs = {"loss": loss.item(), "d_real": d_real.mean().item(), "d_fake": d_fake.mean().item()}
        est = self.estimate(d_real.detach(), d_fake.detach())
        if est is not None:
            logs["estimate"] = est.item()
        if self.penalties:
            pen, plogs = self.penalty_terms(self.critic_net, rp, fp, generator)
            loss = loss + pen
            logs.update(plogs)
        return LossOutput(loss, logs)

    def generator_step(self, real: Tensor, model: GenerativeModel,
                       generator: torch.Generator | None) -> LossOutput:
        fake = model.rsample(real.shape[0], generator=generator)
        d_real = self.critic_fn(real) if self.uses_real_in_generator else None
        loss = self.generator_loss(self.critic_fn(fake), d_real)
        return LossOutput(loss, {"loss": loss.item()})

    @torch.no_grad()
    def divergence_estimate(self, real: Tensor, fake: Tensor) -> float:
        """``estimate`` on critic outputs for ``real`` and ``fake``; raises if there is none."""
        est = self.estimate(self.critic_fn(real), self.critic_fn(fake))
        if est is None:
            raise NotImplementedError(f"{type(self).__name__} does not estimate a divergence")
        return float(est)

    def after_step(self, player: str) -> None:
        if player == "critic" and self.clip is not None:
            clip_weights(self._critic(), self.clip)

    # --- the loss component -------------------------------------------------------
    def critic_loss(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        """Loss the critic minimises, from its outputs ``(B,)`` on data and samples."""
        return self.adversarial.critic_loss(d_real, d_fake)

    def generator_loss(self, d_fake: Tensor, d_real: Tensor | None) -> Tensor:
        """Loss the generator minimises, from the critic's outputs on its samples."""
        return self.adversarial.generator_loss(d_fake, d_real)

    def estimate(self, d_real: Tensor, d_fake: Tensor) -> Tensor | None:
        """The divergence the optimal critic's outputs estimate, or None."""
        return self.adversarial.estimate(d_real, d_fake)


def clip_weights(net: nn.Module, clip: float) -> None:
    """Clamp every parameter of ``net`` to ``[-clip, clip]`` in place (WGAN weight clipping)."""
    with torch.no_grad():
        for p in net.parameters():
            p.clamp_(-clip, clip)


class MinimaxGAN(AdversarialObjective):
    """The original GAN (Goodfellow et al. 2014, arXiv 1406.2661): a classifier
    ``D = sigmoid(logit)`` estimates the class probability of data versus samples,
    and the generator minimises ``E log(1 - D(G(z)))`` (saturates when D wins).

    With the optimal critic, ``-critic_loss = 2 JS(P, Q) - log 4``."""

    def __init__(self, *, critic: dict[str, Any] | None = None, penalty: list[dict] | None = None,
                 spectral_norm: bool = False, pack: int = 1):
        super().__init__(adversarial=MinimaxLoss(), critic=critic, penalty=penalty, spectral_norm=spectral_norm,
                         pack=pack)


class NonSaturatingGAN(AdversarialObjective):
    """The non-saturating GAN (Goodfellow et al. 2014, arXiv 1406.2661): the minimax
    GAN's classifier, but the generator minimises ``-E log D(G(z))``, which gives strong
    gradients when D rejects the samples (Fedus et al. 2018, arXiv 1710.08446)."""

    def __init__(self, *, critic: dict[str, Any] | None = None, penalty: list[dict] | None = None,
                 spectral_norm: bool = False, pack: int = 1):
        super().__init__(adversarial=NonSaturatingLoss(), critic=critic, penalty=penalty,
                         spectral_norm=spectral_norm, pack=pack)
