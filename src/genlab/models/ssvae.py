"""Partially-specified semi-supervised VAE (Siddharth, Paige, van de Meent, Desmaison, Goodman,
Kohli, Wood & Torr 2017, "Learning disentangled representations with semi-supervised deep
generative models", arXiv 1706.00400), model ``ssvae``.

Some latent variables are tied to labels, the rest stay free. Generative model: a label
variable ``y`` with its own, specified prior ``p(y) = Cat(1/K)``, a free code ``z`` with
``p(z) = N(0, I)``, and any genlab decoder likelihood ``p(x | y, z)``. What sets the paper
apart from M2 is that the encoder is a general graphical model: here it is factorised
**code first**, ``q(z, y | x) = q(z | x) q(y | x, z)``, the order in which M2's exact labelled
bound does not exist (``q(z | x, y)`` has no closed form). The ``ssvae`` objective
(:mod:`genlab.objectives.ssvae`) uses the paper's importance-sampled supervised term for it.
(M2's order, ``q(y | x) q(z | x, y)``, is model ``m2``.)

Parts used by the objective: ``class_prior()``, ``likelihood_given(z, y)``, ``code_posterior(x)``
(``q(z | x)``, Gaussian, reparameterised) and ``label_logits(x, z)`` (``q(y | x, z)``).

For genlab's battery the model is an ordinary latent-variable model over ``z`` with ``y``
summed out: ``prior()`` is ``N(0, I)``, ``likelihood(z) = sum_y p(y) p(x | y, z)``, and
``posterior(x) = q(z | x)`` (a valid IWAE proposal for ``p(x)``). ``classify(x)`` returns
``q(y | x, z = E q(z | x))``, a deterministic classifier (``classify_error`` metric).
``transfer(x, y)`` decodes a digit's code ``E q(z | x)`` under another label: the paper's
style/content disentanglement figure.

Nets: ``encoder`` (``x -> 2 * latent_dim``: the Gaussian ``q(z | x)``) and ``decoder`` are
net specs as for ``vae``; ``classifier`` is a net ``x -> features`` (``features`` units) whose
output, concatenated with ``z``, goes through a one-hidden-layer MLP (``head_hidden``) to the
``K`` logits of ``q(y | x, z)``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Categorical, Distribution, Independent

from genlab.data.base import DataSpec
from genlab.kwargs import PositiveFloat, PositiveInt
from genlab.models.base import AmortizedPosterior, Classifier, PartiallySpecifiedModel, standard_normal
from genlab.models.likelihoods import LikelihoodName, check_likelihood, make_likelihood, params_per_pixel
from genlab.models.semi_supervised import ClassMixture, repeat_classes
from genlab.models.vae import build_decoder, gaussian_posterior
from genlab.nets.build import build_encoder
from genlab.nets.mlp import MLP


class PartiallySpecifiedVAE(AmortizedPosterior, PartiallySpecifiedModel, Classifier):
    """Siddharth et al. 2017 (arXiv 1706.00400): p(y) p(z) p(x|y,z) with the code-first encoder
    q(z|x) q(y|x,z)."""

    conditional: ClassVar[bool] = False

    def __init__(self, *, data_spec: DataSpec, latent_dim: PositiveInt = 16,
                 likelihood: LikelihoodName = "logistic", encoder: dict[str, Any] | None = None,
                 decoder: dict[str, Any] | None = None, classifier: dict[str, Any] | None = None,
                 features: PositiveInt = 64, head_hidden: PositiveInt = 64, noise_std: PositiveFloat = 0.1,
                 sample_from: Literal["likelihood", "mean"] = "likelihood"):
        super().__init__()
        if data_spec.classes is None:
            raise ValueError(f"ssvae needs labelled data (data_spec.classes); {data_spec.name} has none. Use a "
                             "labelled dataset (e.g. digits) with data.labelled: N to hide all but N labels")
        check_likelihood(likelihood, data_spec)
        if sample_from not in ("likelihood", "mean"):
            raise ValueError(f"sample_from must be 'likelihood' or 'mean', got {sample_from!r}")
        self.spec = data_spec
        self.num_classes = int(data_spec.classes)
        self.event_shape = torch.Size(data_spec.event_shape)
        self.latent_shape = torch.Size((latent_dim,))
        self.likelihood_name, self.noise_std, self.sample_from = likelihood, noise_std, sample_from
        event = tuple(data_spec.event_shape)
        self.encoder = build_encoder(encoder, in_shape=event, out_features=2 * latent_dim)
        self.classifier = build_encoder(classifier, in_shape=event, out_features=features)
        self.label_head = MLP(in_shape=(features + latent_dim,), out_features=self.num_classes,
                              hidden=head_hidden, depth=1)
        self.n_params = params_per_pixel(likelihood, data_spec)
        self.decoder = build_decoder(decoder, in_features=latent_dim + self.num_classes,
                                     out_shape=(self.n_params * event[0], *event[1:]))

    # --- the parts the ssvae objective uses -----------------------------------------------
    def class_prior(self) -> Categorical:
        """Uniform ``p(y)``."""
        dtype = next(self.parameters()).dtype
        return Categorical(logits=torch.zeros(self.num_classes, dtype=dtype, device=self.device))

    def likelihood_given(self, z: Tensor, y: Tensor) -> Distribution:
        """``p(x | y, z)``: codes ``(B, latent_dim)``, labels ``(B,)`` -> batch shape ``(B,)``."""
        h = self.decoder(torch.cat([z, F.one_hot(y.long(), self.num_classes).to(z.dtype)], 1))
        return make_likelihood(self.likelihood_name, h.reshape(z.shape[0], self.n_params, *self.event_shape),
                               self.spec, noise_std=self.noise_std)

    def code_posterior(self, x: Tensor) -> Independent:
        """``q(z | x) = N(mu(x), diag sigma(x)^2)``, batch shape ``(B,)``."""
        self._check_x(x)
        return gaussian_posterior(self.encoder(x))

    def label_logits(self, x: Tensor, z: Tensor) -> Tensor:
        """Logits of ``q(y | x, z)``: ``x`` ``(B, *event)``, ``z`` ``(B, latent_dim)`` -> ``(B, K)``."""
        return self.label_head(torch.cat([self.classifier(x), z], 1))

    # --- y summed out (LatentVariableModel, AmortizedPosterior, Classifier) ---------------
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
        """``q(z | x)`` (the code's own posterior; ``y`` is inferred after it)."""
        self.check_context(context, x.shape[0])
        return self.code_posterior(x)

    def classify(self, x: Tensor, *, context: Tensor | None = None) -> Tensor:
        """Logits of ``q(y | x, z)`` at ``z = E q(z | x)``: ``(B, K)``."""
        self.check_context(context, x.shape[0])
        return self.label_logits(x, self.code_posterior(x).mean)

    def reconstruct(self, x: Tensor, *, context: Tensor | None = None) -> Tensor:
        """Decoder mean at ``z = E q(z | x)`` and ``y = argmax q(y | x, z)``."""
        z = self.posterior(x, context=context).mean
        return self.likelihood_given(z, self.label_logits(x, z).argmax(1)).mean

    def transfer(self, x: Tensor, y: Tensor) -> Tensor:
        """Style transfer: the decoder mean at ``x``'s code ``E q(z | x)`` with label ``y`` ``(B,)``."""
        return self.likelihood_given(self.code_posterior(x).mean, y).mean

    # --- sampling ---------------------------------------------------------------------------
    def _sample(self, n: int, *, context: Tensor | None, generator: torch.Generator | None) -> Tensor:
        y = torch.randint(self.num_classes, (n,), generator=generator, device=self.device)
        return self.sample_given(y, generator=generator)

    def sample_given(self, y: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """``x ~ p(x | y)`` for labels ``(n,)``: ``(n, *event_shape)`` (no gradients)."""
        dtype = next(self.parameters()).dtype
        with torch.no_grad():
            z = torch.randn(len(y), *self.latent_shape, generator=generator, dtype=dtype, device=self.device)
            p = self.likelihood_given(z, y.to(self.device))
            if self.sample_from == "mean":
                return p.mean
            if isinstance(p, Independent):  # Gaussian: draw with our generator
                base = p.base_dist
                return base.loc + base.scale * torch.randn(base.loc.shape, generator=generator, dtype=dtype,
                                                           device=self.device)
            return p.sample(generator=generator)

    def _check_x(self, x: Tensor) -> None:
        if tuple(x.shape[1:]) != tuple(self.event_shape):
            raise ValueError(f"ssvae expects x of shape (B, {', '.join(map(str, self.event_shape))}), "
                             f"got {tuple(x.shape)}")
