"""Critic-based ("learning by comparison") objectives: the shared machinery.

A critic ``D: (B, *event_shape) -> (B,)`` compares data with model samples; the
generator learns from that comparison. Any model with ``rsample`` can be the
generator (MLP and conv generators, flows, VAE decoders). Subclasses give the two
losses from critic outputs on real and fake batches::

    critic_loss(d_real, d_fake) -> Tensor
    generator_loss(d_fake, d_real) -> Tensor
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.data.base import DataSpec
from genlab.models.base import GenerativeModel, ReparameterizedModel
from genlab.nets.build import build_encoder
from genlab.objectives.base import LossOutput, Objective


class AdversarialObjective(Objective):
    """Base for objectives with a ``generator`` and a ``critic``.

    ``critic``: net spec ``{name: auto|mlp|conv, **kwargs}``.
    """

    requires: ClassVar[tuple[type, ...]] = (ReparameterizedModel,)
    players: ClassVar[tuple[str, ...]] = ("generator", "critic")

    def __init__(self, *, critic: dict[str, Any] | None = None):
        super().__init__()
        self.critic_spec = dict(critic or {})
        self.critic: nn.Module | None = None

    def setup(self, model: GenerativeModel, data_spec: DataSpec) -> None:
        self.critic = build_encoder(self.critic_spec, in_shape=data_spec.event_shape, out_features=1)

    def helper_modules(self) -> dict[str, list[nn.Module]]:
        return {"critic": [self.critic]}

    def critic_fn(self, x: Tensor) -> Tensor:
        """Critic output ``(B,)``."""
        return self.critic(x).squeeze(-1)

    def loss(self, player: str, model: GenerativeModel, x: Tensor, *,
             generator: torch.Generator | None = None) -> LossOutput:
        fake = model.rsample(x.shape[0], generator=generator)
        if player == "critic":
            fake = fake.detach()
            d_real, d_fake = self.critic_fn(x), self.critic_fn(fake)
            loss = self.critic_loss(d_real, d_fake)
            return LossOutput(loss, {"loss": loss.item(), "d_real": d_real.mean().item(),
                                     "d_fake": d_fake.mean().item()})
        loss = self.generator_loss(self.critic_fn(fake), None)
        return LossOutput(loss, {"loss": loss.item()})

    @abstractmethod
    def critic_loss(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        """Loss the critic minimises, from its outputs ``(B,)`` on data and samples."""

    @abstractmethod
    def generator_loss(self, d_fake: Tensor, d_real: Tensor | None) -> Tensor:
        """Loss the generator minimises, from the critic's outputs on its samples."""


class MinimaxGAN(AdversarialObjective):
    """The original GAN (Goodfellow et al. 2014, arXiv 1406.2661): a classifier
    ``D = sigmoid(logit)`` estimates the class probability of data versus samples,
    and the generator minimises ``E log(1 - D(G(z)))`` (saturates when D wins)."""

    def critic_loss(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()

    def generator_loss(self, d_fake: Tensor, d_real: Tensor | None) -> Tensor:
        return -F.softplus(d_fake).mean()


class NonSaturatingGAN(MinimaxGAN):
    """The non-saturating GAN: the same classifier, but the generator minimises
    ``-E log D(G(z))``, which gives strong gradients when D rejects the samples."""

    def generator_loss(self, d_fake: Tensor, d_real: Tensor | None) -> Tensor:
        return F.softplus(-d_fake).mean()
