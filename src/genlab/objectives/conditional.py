"""Class-conditional critic objectives: the shared machinery, and the conditional GAN.

The generator is a conditional model (``conditional = True``: ``model.rsample(n,
context=labels)``); data batches carry labels (``batch.y``, all known). The critic is a
:class:`~genlab.nets.conditional.ConditionalCritic`: a scalar score, conditioned on the
label by ``projection`` or ``concat`` (or not at all, ``none``), plus an optional
auxiliary classifier head. Leaves:

* ``cgan`` (:class:`ConditionalGAN`): a label-conditioned critic (projection by default,
  Miyato & Koyama 2018, arXiv 1802.05637) plays the game ``loss`` on pairs ``(x, y)``.
* ``acgan``, ``tacgan`` (:mod:`genlab.objectives.acgan`): an auxiliary classifier on the
  critic's features (AC-GAN, arXiv 1610.09585) and its twin (TAC-GAN, arXiv 1907.02690).

Shared options: ``loss`` names the adversarial component
(:data:`~genlab.objectives.gan_losses.ADVERSARIAL_LOSSES`: ``gan|nsgan|hinge|lsgan|wgan``);
``penalty`` and ``spectral_norm`` as for every critic objective (spectral normalisation
covers the critic's body and score head, not the classifier heads); ``critic`` is the
body's net spec and ``features`` its width.

Labels of generated samples (``fake_labels``): ``data`` (default) reuses the batch's own
labels, i.e. draws ``y ~ P_Y`` from the empirical class distribution as the papers do
(``c ~ p_c``), and pairs each generated sample with a real one of the same class, so a
penalty on interpolates sees one consistent label; ``uniform`` draws them uniformly over
the classes (the TAC-GAN code's choice on its balanced data). Semi-supervised batches
(``batch.known`` with unknown labels) are not supported: they raise.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.data.base import Batch, DataSpec
from genlab.kwargs import PositiveInt
from genlab.models.base import GenerativeModel
from genlab.nets.build import build_encoder
from genlab.nets.conditional import Conditioning, ConditionalCritic
from genlab.objectives.adversarial import CriticObjective, apply_spectral_norm
from genlab.objectives.base import LossOutput
from genlab.objectives.gan_losses import adversarial_loss

LossName = Literal["gan", "nsgan", "hinge", "lsgan", "wgan"]
FakeLabels = Literal["data", "uniform"]
#: penalties that evaluate the critic at generated samples (or between data and samples)
_FAKE_SIDE_PENALTIES = ("gp", "gp-one-sided", "r2")


class ConditionalCriticObjective(CriticObjective):
    """Abstract base of the class-conditional critic objectives. A leaf's constructor (its
    config keys) chooses the critic's ``conditioning``, the auxiliary classifier's weight
    ``classifier_weight`` (0: no classifier head) and the twin classifier's weight
    ``twin_weight`` (0: no twin; a twin is a separate net, stepped as the player ``twin``)."""

    conditional: ClassVar[bool | None] = True

    @abstractmethod
    def __init__(self, *, loss: LossName = "nsgan", critic: dict[str, Any] | None = None,
                 penalty: list[dict] | None = None, spectral_norm: bool = False,
                 conditioning: Conditioning = "projection", features: int = 128, classifier_weight: float = 0.0,
                 classify_fake: bool = True, twin_weight: float = 0.0, twin: dict[str, Any] | None = None,
                 fake_labels: FakeLabels = "data"):
        super().__init__(critic=critic, penalty=penalty, spectral_norm=spectral_norm, pack=1)
        if fake_labels not in ("data", "uniform"):
            raise ValueError(f"fake_labels must be 'data' or 'uniform', got {fake_labels!r}")
        if fake_labels == "uniform" and conditioning != "none":
            bad = [p.name for p in self.penalties if p.name in _FAKE_SIDE_PENALTIES]
            if bad:
                raise ValueError(f"penalty {bad[0]!r} evaluates the label-conditioned critic at generated samples "
                                 "with the data's labels; with fake_labels: uniform those labels differ. Use "
                                 "fake_labels: data (samples share the batch's labels), or r1 / dragan")
        self.adversarial = adversarial_loss(loss)
        self.loss_name, self.conditioning, self.features = loss, conditioning, features
        self.classifier_weight, self.classify_fake = float(classifier_weight), classify_fake
        self.twin_weight, self.twin_spec = float(twin_weight), twin
        self.fake_labels = fake_labels
        self.num_classes: int | None = None
        self.twin: nn.Module | None = None

    # --- construction ---------------------------------------------------------
    def setup(self, model: GenerativeModel | None, data_spec: DataSpec) -> None:
        name = type(self).__name__
        if data_spec.classes is None:
            raise ValueError(f"{name} needs labelled data (data_spec.classes); {data_spec.name} has none")
        k = int(data_spec.classes)
        if model is not None and model.num_classes not in (None, k):
            raise ValueError(f"{name}: the model has {model.num_classes} classes but {data_spec.name} has {k}")
        self.num_classes = k
        heads = (k,) if self.classifier_weight > 0 else ()
        self.critic = ConditionalCritic(body=self.critic_spec, in_shape=data_spec.event_shape, classes=k,
                                        conditioning=self.conditioning, features=self.features, heads=heads)
        if self.spectral_norm:
            apply_spectral_norm(self.critic.body)
            self.critic.psi = nn.utils.parametrizations.spectral_norm(self.critic.psi)
        if self.twin_weight > 0:
            spec = self.critic_spec if self.twin_spec is None else self.twin_spec
            self.twin = build_encoder(spec, in_shape=data_spec.event_shape, out_features=k)

    def helper_modules(self) -> dict[str, list[nn.Module]]:
        mods: dict[str, list[nn.Module]] = {"critic": [self._critic()]}
        if self.twin is not None:
            mods["twin"] = [self.twin]
        return mods

    # --- labels -----------------------------------------------------------------
    def labels(self, batch: Batch) -> Tensor:
        """The batch's labels ``(B,)``; raises when there are none or some are unknown."""
        name = type(self).__name__
        if batch.y is None:
            raise ValueError(f"{name} trains on class labels; the batch has none (use a labelled dataset, "
                             "data_spec.classes)")
        if batch.known is not None and not bool(batch.known.all()):
            raise ValueError(f"{name} needs every label: semi-supervised batches (data.labelled, some labels "
                             "unknown) are not supported; drop data.labelled")
        return batch.y.long()

    def generated_labels(self, y: Tensor, generator: torch.Generator | None) -> Tensor:
        """Labels ``(B,)`` for generated samples (see ``fake_labels``)."""
        if self.fake_labels == "data":
            return y
        dev = generator.device if generator is not None else y.device
        return torch.randint(self.num_classes, y.shape, generator=generator, device=dev).to(y.device)

    # --- the players' losses ------------------------------------------------------
    def loss(self, player: str, model: GenerativeModel, batch: Batch, *, step: int = 0,
             generator: torch.Generator | None = None) -> LossOutput:
        y = self.labels(batch)
        yf = self.generated_labels(y, generator)
        if player == "critic":
            with torch.no_grad():
                fake = model.rsample(len(yf), context=yf, generator=generator)
            return self.critic_step(batch.x, y, fake.detach(), yf, generator)
        if player == "generator":
            return self.generator_step(batch.x, y, model.rsample(len(yf), context=yf, generator=generator), yf)
        if player == "twin" and self.twin is not None:
            with torch.no_grad():
                fake = model.rsample(len(yf), context=yf, generator=generator)
            return self.twin_step(fake, yf)
        raise ValueError(f"{type(self).__name__} has players {self.players}, got {player!r}")

    def critic_step(self, real: Tensor, y: Tensor, fake: Tensor, yf: Tensor,
                    generator: torch.Generator | None) -> LossOutput:
        """Critic loss on data ``(real, y)`` and detached samples ``(fake, yf)``."""
        critic = self._critic()
        d_real, h_real = critic(real, y)
        d_fake, h_fake = critic(fake, yf)
        loss = self.adversarial.critic_loss(d_real, d_fake)
        logs = {"adversarial": loss.item(), "d_real": d_real.mean().item(), "d_fake": d_fake.mean().item()}
        if self.classifier_weight > 0:
            ce = F.cross_entropy(h_real[0], y)
            logs.update(ce_real=ce.item(), acc_real=_accuracy(h_real[0], y))
            if self.classify_fake:
                ce_fake = F.cross_entropy(h_fake[0], yf)
                logs.update(ce_fake=ce_fake.item(), acc_fake=_accuracy(h_fake[0], yf))
                ce = ce + ce_fake
            loss = loss + self.classifier_weight * ce
        if self.penalties:
            pen, plogs = self.penalty_terms(lambda x: critic(x, y)[0], real, fake, generator)
            loss = loss + pen
            logs.update(plogs)
        logs["loss"] = loss.item()
        return LossOutput(loss, logs)

    def generator_step(self, real: Tensor, y: Tensor, fake: Tensor, yf: Tensor) -> LossOutput:
        """Generator loss on its samples ``fake`` (with gradients) of classes ``yf``."""
        critic = self._critic()
        d_fake, h_fake = critic(fake, yf)
        d_real = critic(real, y)[0] if self.adversarial.uses_real_in_generator else None
        loss = self.adversarial.generator_loss(d_fake, d_real)
        logs = {"adversarial": loss.item()}
        if self.classifier_weight > 0:
            ce = F.cross_entropy(h_fake[0], yf)
            loss = loss + self.classifier_weight * ce
            logs.update(ce=ce.item(), acc=_accuracy(h_fake[0], yf))
        if self.twin is not None:
            ce_twin = F.cross_entropy(self.twin(fake), yf)
            loss = loss - self.twin_weight * ce_twin
            logs["ce_twin"] = ce_twin.item()
        logs["loss"] = loss.item()
        return LossOutput(loss, logs)

    def twin_step(self, fake: Tensor, yf: Tensor) -> LossOutput:
        """The twin classifier's cross-entropy on detached samples of classes ``yf``."""
        logits = self.twin(fake)  # type: ignore[misc]
        ce = F.cross_entropy(logits, yf)
        return LossOutput(ce, {"loss": ce.item(), "acc": _accuracy(logits, yf)})

    # --- reading the critic -------------------------------------------------------
    @torch.no_grad()
    def divergence_estimate(self, real: Tensor, fake: Tensor, *, real_y: Tensor | None = None,
                            fake_y: Tensor | None = None) -> float:
        """The loss component's estimate on critic scores of ``real`` and ``fake`` (labels are
        needed when the critic is label-conditioned); raises if the component has none."""
        critic = self._critic()
        est = self.adversarial.estimate(critic(real, real_y)[0], critic(fake, fake_y)[0])
        if est is None:
            raise NotImplementedError(f"{type(self).__name__} with loss {self.loss_name!r} does not estimate a "
                                      "divergence")
        return float(est)

    @torch.no_grad()
    def classify(self, x: Tensor, *, twin: bool = False) -> Tensor:
        """Class logits ``(B, K)`` of the auxiliary classifier (or of the twin) on ``x``."""
        if twin:
            if self.twin is None:
                raise ValueError(f"{type(self).__name__} has no twin classifier")
            return self.twin(x)
        critic = self._critic()
        if not critic.heads or critic.conditioning == "concat":
            raise ValueError(f"{type(self).__name__} has no label-free auxiliary classifier")
        return critic.heads[0](critic.features(x))


def _accuracy(logits: Tensor, y: Tensor) -> float:
    return float((logits.argmax(-1) == y).float().mean())


class ConditionalGAN(ConditionalCriticObjective):
    """Conditional GAN (Mirza & Osindero 2014, arXiv 1411.1784) with a projection critic
    (Miyato & Koyama 2018, arXiv 1802.05637) by default, or ``conditioning: concat``: the
    critic scores pairs ``(x, y)``; the game is ``loss`` (default ``hinge``, as in the
    projection paper)."""

    def __init__(self, *, loss: LossName = "hinge", conditioning: Literal["projection", "concat"] = "projection",
                 critic: dict[str, Any] | None = None, features: PositiveInt = 128,
                 penalty: list[dict] | None = None, spectral_norm: bool = False, fake_labels: FakeLabels = "data"):
        if conditioning not in ("projection", "concat"):
            raise ValueError(f"cgan needs a label-conditioned critic: conditioning projection or concat, "
                             f"got {conditioning!r} (for an unconditioned critic with a classifier use acgan)")
        super().__init__(loss=loss, critic=critic, penalty=penalty, spectral_norm=spectral_norm,
                         conditioning=conditioning, features=features, fake_labels=fake_labels)
