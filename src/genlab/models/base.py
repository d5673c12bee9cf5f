"""Capability protocols for generative models.

A model *declares* what it can do by the abstract classes it inherits; objectives
and metrics state what they need (``requires = (DensityModel,)``) and
:func:`genlab.capabilities.check_requirements` compares the two before any
training starts. Models never compute a training loss.

Shapes: ``event_shape`` is the shape of one sample, e.g. ``(2,)`` for points or
``(C, H, W)`` for images. ``sample(sample_shape)`` returns
``(*sample_shape, *event_shape)``; ``log_prob(x)`` takes ``(B, *event_shape)`` and
returns ``(B,)``.

Context: every capability takes a keyword-only ``context`` (class labels ``(B,)``
long now; any tensor ``(B, ...)`` later). A model declares ``conditional = True``
when it needs one; an unconditional model refuses one (:meth:`check_context`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar, Sequence

import torch
from torch import Tensor, nn


def _as_shape(sample_shape: int | Sequence[int] | torch.Size) -> torch.Size:
    if isinstance(sample_shape, int):
        return torch.Size((sample_shape,))
    return torch.Size(sample_shape)


class GenerativeModel(nn.Module, ABC):
    """Every model can draw samples. Subclasses implement
    ``_sample(n, *, context, generator)``.

    ``event_shape`` must be set by the constructor. ``generator`` is an optional
    ``torch.Generator``; the library never seeds globally. ``conditional`` models
    set ``num_classes`` and take ``context`` labels ``(n,)`` in ``0..num_classes-1``.
    """

    event_shape: torch.Size
    #: Whether every capability needs a ``context`` (class labels).
    conditional: ClassVar[bool] = False
    num_classes: int | None = None

    def sample(self, sample_shape: int | Sequence[int] = (), *, context: Tensor | None = None,
               generator: torch.Generator | None = None) -> Tensor:
        """Draw samples without gradients: ``(*sample_shape, *event_shape)``; ``context``
        ``(prod(sample_shape),)`` for conditional models."""
        shape = _as_shape(sample_shape)
        n = max(1, math.prod(shape))
        context = self.check_context(context, n)
        with torch.no_grad():
            x = self._sample(n, context=context, generator=generator)
        return x.reshape(*shape, *self.event_shape)

    @abstractmethod
    def _sample(self, n: int, *, context: Tensor | None, generator: torch.Generator | None) -> Tensor:
        """Return ``(n, *event_shape)`` samples (``context`` already checked)."""

    def check_context(self, context: Tensor | None, n: int) -> Tensor | None:
        """Validate ``context`` for ``n`` examples: required (labels ``(n,)``) for conditional
        models, refused for unconditional ones. Returns it on the model's device."""
        name = type(self).__name__
        if not self.conditional:
            if context is not None:
                raise ValueError(f"{name} is unconditional; it takes no context. Use a conditional model "
                                 "(genlab list models) to condition on labels")
            return None
        if context is None:
            raise ValueError(f"{name} is conditional: pass context= labels (n,) in 0..{self.num_classes - 1}")
        context = torch.as_tensor(context, device=self.device)
        if context.shape != (n,) or context.dtype.is_floating_point:
            raise ValueError(f"{name}: context must be ({n},) integer labels, got {context.dtype} "
                             f"{tuple(context.shape)}")
        if n and (int(context.min()) < 0 or int(context.max()) >= self.num_classes):
            raise ValueError(f"{name}: context labels must be in 0..{self.num_classes - 1}, got "
                             f"{int(context.min())}..{int(context.max())}")
        return context.long()

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")


class ReparameterizedModel(GenerativeModel):
    """A model whose samples are a differentiable function of its parameters.

    This is the capability every adversarial (critic-based) objective needs.
    """

    def rsample(self, sample_shape: int | Sequence[int] = (), *, context: Tensor | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        """Draw samples that carry gradients: ``(*sample_shape, *event_shape)``."""
        shape = _as_shape(sample_shape)
        n = max(1, math.prod(shape))
        x = self._rsample(n, context=self.check_context(context, n), generator=generator)
        return x.reshape(*shape, *self.event_shape)

    @abstractmethod
    def _rsample(self, n: int, *, context: Tensor | None, generator: torch.Generator | None) -> Tensor:
        """Return ``(n, *event_shape)`` reparameterised samples."""

    def _sample(self, n: int, *, context: Tensor | None, generator: torch.Generator | None) -> Tensor:
        return self._rsample(n, context=context, generator=generator)


class DensityModel(GenerativeModel):
    """A prescribed model with an exact (normalised) ``log_prob``."""

    @abstractmethod
    def log_prob(self, x: Tensor, *, context: Tensor | None = None) -> Tensor:
        """``x``: ``(B, *event_shape)`` in model space -> ``(B,)`` log density (nats)."""


class DiscreteDensityModel(DensityModel):
    """A density model over discrete data (categorical outputs over ``data_spec.levels``).

    ``log_prob(x)`` is a log *probability mass* of ``x`` given in model space at the
    exact level values ``spec.to_model(k)``, ``k = 0..levels-1``; likelihood
    objectives do not dequantise for such models.
    """


class Flow(DensityModel, ReparameterizedModel):
    """A bijection ``x = f(z)`` applied to a base distribution.

    ``forward_and_log_det(z)`` maps base to data and returns
    ``log|det df/dz|`` per sample; ``inverse_and_log_det(x)`` maps data to base
    and returns ``log|det df^{-1}/dx|``. A conditional flow's bijection ``f_y`` depends
    on the ``context`` labels ``(B,)``; unconditional flows refuse one.
    """

    @abstractmethod
    def forward_and_log_det(self, z: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``z``: ``(B, *event_shape)`` -> ``(x, log_det (B,))``."""

    @abstractmethod
    def inverse_and_log_det(self, x: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``x``: ``(B, *event_shape)`` -> ``(z, log_det (B,))``."""


class LatentVariableModel(GenerativeModel):
    """``p(x) = ∫ p(x|z) p(z) dz`` with an explicit prior and decoder.

    ``prior()`` and ``likelihood(z)`` return ``torch.distributions`` objects whose
    ``event_shape`` are ``latent_shape`` and ``event_shape``. An amortised posterior
    is a separate capability (:class:`AmortizedPosterior`), saved and loaded with
    the model.
    """

    latent_shape: torch.Size

    @abstractmethod
    def prior(self, *, context: Tensor | None = None) -> torch.distributions.Distribution:
        """The prior over codes, event shape ``latent_shape`` (batch shape ``(B,)`` when
        a context ``(B,)`` is given)."""

    @abstractmethod
    def likelihood(self, z: Tensor, *, context: Tensor | None = None) -> torch.distributions.Distribution:
        """``p(x | z)`` for codes ``z`` of shape ``(B, *latent_shape)``."""


class AmortizedPosterior(LatentVariableModel):
    """A latent-variable model with an amortised posterior ``q(z | x)`` (an encoder that is
    part of the model: saved, EMA-averaged and loaded with it). Used by variational
    objectives, the IWAE metric, bits-back coding and reconstructions."""

    @abstractmethod
    def posterior(self, x: Tensor, *, context: Tensor | None = None) -> torch.distributions.Distribution:
        """``q(z | x)`` for ``x`` ``(B, *event_shape)`` in model space: batch shape ``(B,)``,
        event shape ``latent_shape``."""

    def reconstruct(self, x: Tensor, *, context: Tensor | None = None) -> Tensor:
        """``E[x | z = E_q z]``: the decoder mean at the posterior mean, ``(B, *event_shape)``
        in model space (pictures of reconstructions)."""
        return self.likelihood(self.posterior(x, context=context).mean, context=context).mean


class Classifier(GenerativeModel):
    """A model that also classifies its inputs: ``classify(x)`` gives the logits of its
    ``q(y | x)`` over ``num_classes`` classes (e.g. M2, Kingma et al. 2014, arXiv 1406.5298).
    Used by the ``classify_error`` metric."""

    @abstractmethod
    def classify(self, x: Tensor, *, context: Tensor | None = None) -> Tensor:
        """``x``: ``(B, *event_shape)`` in model space -> ``(B, num_classes)`` logits."""


class ClassLatentModel(LatentVariableModel):
    """A latent-variable model with a discrete class ``y`` beside the code ``z``:
    ``p(x) = sum_y p(y) ∫ p(z) p(x | y, z) dz`` (M2, Kingma et al. 2014, arXiv 1406.5298).
    ``prior()`` and ``likelihood(z)`` are over ``z`` with ``y`` summed out; the parts that
    semi-supervised objectives need are ``class_prior()`` ``p(y)``, ``likelihood_given(z, y)``
    ``p(x | y, z)`` and ``posterior_given(x, y)`` ``q(z | x, y)``; labels ``y`` ``(B,)`` long."""

    num_classes: int

    @abstractmethod
    def class_prior(self) -> torch.distributions.Categorical:
        """``p(y)`` over ``num_classes`` classes (batch shape ``()``)."""

    @abstractmethod
    def likelihood_given(self, z: Tensor, y: Tensor) -> torch.distributions.Distribution:
        """``p(x | y, z)`` for codes ``(B, *latent_shape)`` and labels ``(B,)``: batch shape ``(B,)``."""

    @abstractmethod
    def posterior_given(self, x: Tensor, y: Tensor) -> torch.distributions.Distribution:
        """``q(z | x, y)`` for ``x`` ``(B, *event_shape)`` (model space) and labels ``(B,)``:
        batch shape ``(B,)``, event shape ``latent_shape``, reparameterised."""


class PartiallySpecifiedModel(LatentVariableModel):
    """A latent-variable model whose latents are partly tied to labels (Siddharth et al. 2017,
    arXiv 1706.00400): ``p(y) p(z) p(x | y, z)`` with a code-first encoder ``q(z | x) q(y | x, z)``.
    ``prior()``/``likelihood(z)`` are over ``z`` with ``y`` summed out; the parts the ``ssvae``
    objective needs are ``class_prior()``, ``likelihood_given(z, y)``, ``code_posterior(x)``
    (reparameterised ``q(z | x)``) and ``label_logits(x, z)`` (``q(y | x, z)``)."""

    num_classes: int

    @abstractmethod
    def class_prior(self) -> torch.distributions.Categorical:
        """``p(y)`` over ``num_classes`` classes (batch shape ``()``)."""

    @abstractmethod
    def likelihood_given(self, z: Tensor, y: Tensor) -> torch.distributions.Distribution:
        """``p(x | y, z)`` for codes ``(B, *latent_shape)`` and labels ``(B,)``: batch shape ``(B,)``."""

    @abstractmethod
    def code_posterior(self, x: Tensor) -> torch.distributions.Distribution:
        """``q(z | x)`` for ``x`` ``(B, *event_shape)``: batch shape ``(B,)``, reparameterised."""

    @abstractmethod
    def label_logits(self, x: Tensor, z: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` of ``q(y | x, z)``."""


class DecoderModel(ReparameterizedModel):
    """An implicit model ``x = g(z)``, ``z ~ N(0, I)``: a GAN generator.

    The prior is always the standard normal over ``latent_shape``. Exposes the code so that decoder-based evaluation (AIS under a Gaussian
    observation model, Wu et al. 2017, arXiv 1611.04273) can use it.
    """

    latent_shape: torch.Size

    def prior(self, *, context: Tensor | None = None) -> torch.distributions.Distribution:
        """``N(0, I)`` over ``latent_shape`` (the same for every context)."""
        if context is not None:
            self.check_context(context, len(context))
        return standard_normal(self.latent_shape, self.device)

    @abstractmethod
    def decode(self, z: Tensor, *, context: Tensor | None = None) -> Tensor:
        """``z``: ``(B, *latent_shape)`` -> ``(B, *event_shape)``; ``context`` ``(B,)`` labels
        for conditional generators."""

    def _rsample(self, n: int, *, context: Tensor | None, generator: torch.Generator | None) -> Tensor:
        dtype = next(self.parameters(), torch.empty(0)).dtype
        z = torch.randn(n, *self.latent_shape, generator=generator, device=self.device, dtype=dtype)
        return self.decode(z, context=context)


def standard_normal(shape: Sequence[int], device: torch.device | str = "cpu") -> torch.distributions.Distribution:
    """``N(0, I)`` with event shape ``shape``."""
    zeros = torch.zeros(*shape, device=device)
    return torch.distributions.Independent(torch.distributions.Normal(zeros, torch.ones_like(zeros)), len(shape))


class EnergyModel(GenerativeModel):
    """An unnormalised model ``p(x) ∝ exp(-E(x))``; sampled by MCMC."""

    @abstractmethod
    def energy(self, x: Tensor, *, context: Tensor | None = None) -> Tensor:
        """``x``: ``(B, *event_shape)`` -> ``(B,)`` energies."""


class ScoreModel(GenerativeModel):
    """A noise-conditional score network ``s(x, σ) ≈ ∇_x log p_σ(x)`` (NCSN, arXiv 1907.05600)."""

    @abstractmethod
    def score(self, x: Tensor, sigma: Tensor, *, context: Tensor | None = None) -> Tensor:
        """``x``: ``(B, *event_shape)``, ``sigma``: ``(B,)`` -> ``(B, *event_shape)``."""
