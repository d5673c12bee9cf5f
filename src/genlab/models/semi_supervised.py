"""The semi-supervised generative model M2 (Kingma, Rezende, Mohamed & Welling 2014,
"Semi-supervised learning with deep generative models", arXiv 1406.5298), model ``m2``.

Generative model: ``p(y) = Cat(1/K)``, ``p(z) = N(0, I)``, ``p(x | y, z)`` any genlab
decoder likelihood (:mod:`genlab.models.likelihoods`). Inference: ``q(z | x, y)`` Gaussian and
a classifier ``q(y | x)``. The model computes no loss: the ``m2`` objective
(:mod:`genlab.objectives.semi_supervised`) uses its parts ``class_prior()``,
``likelihood_given(z, y)``, ``posterior_given(x, y)`` and ``classify(x)``.

The decoder and ``q(z | x, y)`` are a :class:`~genlab.models.vae.ConditionalVAE` (composition:
``encoder``/``decoder``/``likelihood`` keys mean what they mean for ``cond_vae``); the classifier
is an encoder net ``(B, *event) -> (B, K)`` (``classifier: {name: auto|mlp|conv, ...}``).

For genlab's battery M2 is an ordinary (unconditional) latent-variable model over ``z`` with
the class summed out:

* ``sample()`` draws ``y ~ p(y)``, ``z ~ p(z)``, ``x ~ p(x | y, z)``;
* ``prior()`` is ``N(0, I)`` (``z`` and ``y`` are independent a priori);
* ``likelihood(z)`` is the mixture ``p(x | z) = sum_y p(y) p(x | y, z)``;
* ``posterior(x)`` is the mixture ``q(z | x) = sum_y q(y | x) q(z | x, y)``.

So ``iwae`` (with the mixture posterior as proposal) gives a held-out bound on ``log p(x)``
of the same kind as a VAE's, and ``latent`` compares the aggregate posterior of ``z`` with
``N(0, I)``. The mixture posterior has no reparameterised samples, so ``posterior(x)`` refuses
to run under gradient tracking: the ``elbo``/``iwae`` objectives would get biased encoder
gradients through it; train M2 with objective ``m2``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from torch import Tensor
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal

from genlab.data.base import DataSpec
from genlab.kwargs import PositiveFloat, PositiveInt
from genlab.models.base import AmortizedPosterior, Classifier, ClassLatentModel, standard_normal
from genlab.models.likelihoods import LikelihoodName
from genlab.models.vae import ConditionalVAE
from genlab.nets.build import build_encoder
from genlab.sampling.importance import sample_distribution


def repeat_classes(t: Tensor, classes: int) -> tuple[Tensor, Tensor]:
    """``t`` ``(B, ...)`` -> ``(K*B, ...)`` (class-major: row ``k*B + b`` is ``t[b]``) and the
    labels ``(K*B,)`` ``[0]*B + [1]*B + ...`` that go with it."""
    b = t.shape[0]
    rep = t.repeat(classes, *([1] * (t.dim() - 1)))
    return rep, torch.arange(classes, device=t.device).repeat_interleave(b)


class ClassMixture(Distribution):
    """``sum_k w_k p_k(x)`` per example: ``log_w`` ``(B, K)`` (normalised here) and ``components``,
    one distribution of batch shape ``(K*B,)`` laid out class-major (:func:`repeat_classes`).
    Discrete when the components are (``support`` is theirs)."""

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, log_w: Tensor, components: Distribution):
        self.log_w = torch.log_softmax(log_w, -1)
        self.components = components
        self.k = log_w.shape[1]
        super().__init__(log_w.shape[:1], components.event_shape, validate_args=False)

    @property
    def support(self):
        return self.components.support

    def component_log_prob(self, x: Tensor) -> Tensor:
        """``(B, K)``: ``log p_k(x_b)``."""
        rep, _ = repeat_classes(x, self.k)
        return self.components.log_prob(rep).reshape(self.k, x.shape[0]).T

    def log_prob(self, x: Tensor) -> Tensor:
        return torch.logsumexp(self.log_w + self.component_log_prob(x), -1)

    @property
    def mean(self) -> Tensor:
        b = self.log_w.shape[0]
        means = self.components.mean.reshape(self.k, b, *self.event_shape)
        w = self.log_w.exp().T.reshape(self.k, b, *([1] * len(self.event_shape)))
        return (w * means).sum(0)

    def sample(self, sample_shape: torch.Size = torch.Size(), generator: torch.Generator | None = None) -> Tensor:
        shape = torch.Size(sample_shape)
        n, b = max(1, int(torch.Size(shape).numel())), self.log_w.shape[0]
        comp = torch.multinomial(self.log_w.exp(), n, replacement=True, generator=generator).T  # (n, B)
        draws = sample_distribution(self.components, (n,), generator=generator)  # (n, K*B, *event)
        draws = draws.reshape(n, self.k, b, *self.event_shape)
        idx = comp.reshape(n, 1, b, *([1] * len(self.event_shape))).expand(n, 1, b, *self.event_shape)
        return draws.gather(1, idx).squeeze(1).reshape(*shape, b, *self.event_shape)


class M2(AmortizedPosterior, ClassLatentModel, Classifier):
    """Semi-supervised M2 (Kingma et al. 2014, arXiv 1406.5298): p(y) p(z) p(x|y,z), q(z|x,y), q(y|x)."""

    conditional: ClassVar[bool] = False

    def __init__(self, *, data_spec: DataSpec, latent_dim: PositiveInt = 16,
                 likelihood: LikelihoodName = "logistic", encoder: dict[str, Any] | None = None,
                 decoder: dict[str, Any] | None = None, classifier: dict[str, Any] | None = None,
                 noise_std: PositiveFloat = 0.1, sample_from: Literal["likelihood", "mean"] = "likelihood"):
        super().__init__()
        if data_spec.classes is None:
            raise ValueError(f"m2 needs labelled data (data_spec.classes); {data_spec.name} has none. Use a "
                             "labelled dataset (e.g. digits) with data.labelled: N to hide all but N labels")
        self.cvae = ConditionalVAE(data_spec=data_spec, latent_dim=latent_dim, likelihood=likelihood,
                                   encoder=encoder, decoder=decoder, noise_std=noise_std, sample_from=sample_from)
        self.spec = data_spec
        self.num_classes = int(data_spec.classes)
        self.event_shape = torch.Size(data_spec.event_shape)
        self.latent_shape = torch.Size((latent_dim,))
        self.classifier = build_encoder(classifier, in_shape=tuple(data_spec.event_shape),
                                        out_features=self.num_classes)

    # --- the parts (ClassLatentModel, Classifier) -----------------------------------------
    def class_prior(self) -> Categorical:
        """Uniform ``p(y)``."""
        dtype = next(self.parameters()).dtype
        return Categorical(logits=torch.zeros(self.num_classes, dtype=dtype, device=self.device))

    def likelihood_given(self, z: Tensor, y: Tensor) -> Distribution:
        return self.cvae.likelihood(z, context=y)

    def posterior_given(self, x: Tensor, y: Tensor) -> Distribution:
        return self.cvae.posterior(x, context=y)

    def classify(self, x: Tensor, *, context: Tensor | None = None) -> Tensor:
        """Logits of ``q(y | x)``: ``(B, num_classes)``."""
        self.check_context(context, x.shape[0])
        self._check_x(x)
        return self.classifier(x)

    # --- y summed out (LatentVariableModel, AmortizedPosterior) -----------------------------
    def prior(self, *, context: Tensor | None = None) -> Distribution:
        """``p(z) = N(0, I)``."""
        if context is not None:
            self.check_context(context, len(context))
        return standard_normal(self.latent_shape, self.device)

    def likelihood(self, z: Tensor, *, context: Tensor | None = None) -> Distribution:
        """``p(x | z) = sum_y p(y) p(x | y, z)``, batch shape ``(B,)``."""
        self.check_context(context, z.shape[0])
        zr, yr = repeat_classes(z, self.num_classes)
        log_w = self.class_prior().logits.expand(z.shape[0], self.num_classes)
        return ClassMixture(log_w, self.likelihood_given(zr, yr))

    def posterior(self, x: Tensor, *, context: Tensor | None = None) -> Distribution:
        """``q(z | x) = sum_y q(y | x) q(z | x, y)`` (a Gaussian mixture, batch shape ``(B,)``).
        For evaluation only: refused under gradient tracking (see the module docstring)."""
        if torch.is_grad_enabled():
            raise ValueError("M2.posterior(x) is the mixture sum_y q(y|x) q(z|x,y), which has no reparameterised "
                             "samples; it is for evaluation under torch.no_grad() (iwae, latent metrics). Train m2 "
                             "with objective: m2 (elbo and iwae would give biased encoder gradients)")
        logits = self.classify(x, context=context)
        xr, yr = repeat_classes(x, self.num_classes)
        q = self.posterior_given(xr, yr).base_dist
        b, k = x.shape[0], self.num_classes
        loc = q.loc.reshape(k, b, -1).transpose(0, 1)
        scale = q.scale.reshape(k, b, -1).transpose(0, 1)
        return MixtureSameFamily(Categorical(logits=logits), Independent(Normal(loc, scale), 1))

    def reconstruct(self, x: Tensor, *, context: Tensor | None = None) -> Tensor:
        """Decoder mean at ``y = argmax q(y|x)`` and ``z = E q(z | x, y)``."""
        y = self.classify(x, context=context).argmax(1)
        return self.likelihood_given(self.posterior_given(x, y).mean, y).mean

    # --- sampling ---------------------------------------------------------------------------
    def _sample(self, n: int, *, context: Tensor | None, generator: torch.Generator | None) -> Tensor:
        y = torch.randint(self.num_classes, (n,), generator=generator, device=self.device)
        return self.sample_given(y, generator=generator)

    def sample_given(self, y: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """``x ~ p(x | y)`` for labels ``(n,)``: ``(n, *event_shape)`` (no gradients)."""
        return self.cvae.sample(len(y), context=y, generator=generator)

    def _check_x(self, x: Tensor) -> None:
        if tuple(x.shape[1:]) != tuple(self.event_shape):
            raise ValueError(f"M2 expects x of shape (B, {', '.join(map(str, self.event_shape))}), "
                             f"got {tuple(x.shape)}")
