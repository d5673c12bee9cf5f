"""Auxiliary-classifier GANs: AC-GAN (Odena, Olah & Shlens 2017, arXiv 1610.09585) and
TAC-GAN (Gong, Xu, Li, Zhang & Batmanghelich 2019, arXiv 1907.02690).

AC-GAN. The critic ``D`` has an auxiliary classifier head ``C`` on its features. With
``lambda = classifier_weight`` and ``CE(C(x), y) = -log C(x)_y``:

* critic: ``L_adv(D) + lambda (E_P CE(C(x), y) + E_Q CE(C(x), y))`` (the second term
  only with ``classify_fake: true``, Odena et al.'s choice and the default);
* generator: ``L_adv(G) + lambda E_Q CE(C(G(z, y)), y)``.

The classifier term rewards samples that ``C`` classifies confidently, i.e. it also
minimises the conditional entropy ``H_Q(Y | X)`` of the generated pairs: when class
supports overlap, AC-GAN pushes the classes apart and no longer matches ``P(x | y)``
(TAC-GAN's Section 3).

TAC-GAN adds a *twin* classifier ``C_mi`` (a separate net, the player ``twin``) trained
on generated pairs only, ``min E_Q CE(C_mi(x), y)``, so that ``E_Q CE(C_mi(x), y)``
estimates ``H_Q(Y | X)``; the generator *subtracts* it::

    generator: L_adv(G) + lambda E_Q CE(C(x), y) - lambda_twin E_Q CE(C_mi(x), y)

which cancels the entropy term and leaves the generator matching the joint
distribution (their Theorem 1; ``twin_weight`` defaults to ``lambda``).

Both use an unconditioned critic (``conditioning: none``) by default, as the papers;
``projection`` is allowed (the classifier heads never see the label).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from genlab.kwargs import PositiveFloat, PositiveInt
from genlab.objectives.conditional import ConditionalCriticObjective, FakeLabels, LossName

LabelFreeConditioning = Literal["none", "projection"]


class ACGAN(ConditionalCriticObjective):
    """AC-GAN (arXiv 1610.09585): a critic with an auxiliary classifier head; the
    generator is rewarded when the classifier recognises its samples' classes."""

    def __init__(self, *, loss: LossName = "nsgan", classifier_weight: PositiveFloat = 1.0,
                 classify_fake: bool = True, conditioning: LabelFreeConditioning = "none",
                 critic: dict[str, Any] | None = None, features: PositiveInt = 128, penalty: list[dict] | None = None, spectral_norm: bool = False,
                 fake_labels: FakeLabels = "data"):
        _check(conditioning, classifier_weight, "acgan")
        super().__init__(loss=loss, critic=critic, penalty=penalty, spectral_norm=spectral_norm,
                         conditioning=conditioning, features=features, classifier_weight=classifier_weight,
                         classify_fake=classify_fake, fake_labels=fake_labels)


class TACGAN(ConditionalCriticObjective):
    """TAC-GAN (arXiv 1907.02690): AC-GAN plus a twin classifier trained on generated
    samples (player ``twin``), whose cross-entropy the generator subtracts."""

    players: ClassVar[tuple[str, ...]] = ("generator", "critic", "twin")

    def __init__(self, *, loss: LossName = "nsgan", classifier_weight: PositiveFloat = 1.0,
                 twin_weight: PositiveFloat | None = None, classify_fake: bool = True,
                 conditioning: LabelFreeConditioning = "none", critic: dict[str, Any] | None = None,
                 twin: dict[str, Any] | None = None, features: PositiveInt = 128, penalty: list[dict] | None = None,
                 spectral_norm: bool = False, fake_labels: FakeLabels = "data"):
        """``twin``: the twin classifier's net spec (default: the critic's); ``twin_weight``:
        its weight in the generator's loss (default: ``classifier_weight``)."""
        _check(conditioning, classifier_weight, "tacgan")
        twin_weight = classifier_weight if twin_weight is None else twin_weight
        if twin_weight <= 0:
            raise ValueError(f"tacgan: twin_weight must be > 0 (0 is acgan), got {twin_weight}")
        super().__init__(loss=loss, critic=critic, penalty=penalty, spectral_norm=spectral_norm,
                         conditioning=conditioning, features=features, classifier_weight=classifier_weight,
                         classify_fake=classify_fake, twin_weight=twin_weight, twin=twin, fake_labels=fake_labels)


def _check(conditioning: str, classifier_weight: float, name: str) -> None:
    if conditioning not in ("none", "projection"):
        raise ValueError(f"{name}: conditioning must be none or projection (the classifier must not see the "
                         f"label), got {conditioning!r}")
    if classifier_weight <= 0:
        raise ValueError(f"{name}: classifier_weight must be > 0, got {classifier_weight} (for no classifier "
                         "use cgan)")
