"""Variational autoencoders (Kingma & Welling 2013, arXiv 1312.6114; Rezende, Mohamed &
Wierstra 2014, arXiv 1401.4082): a decoder ``p(x | z)``, a prior ``p(z)`` and an amortised
Gaussian posterior ``q(z | x) = N(mu(x), diag sigma(x)^2)`` that is part of the model
(saved, EMA-averaged and loaded with it).

The model computes no loss: the ELBO and IWAE objectives (:mod:`genlab.objectives.variational`),
the hybrids and the metrics use its capabilities ``prior``, ``likelihood``, ``posterior``.

* ``likelihood``: one of :mod:`genlab.models.likelihoods` (``bernoulli``, ``categorical``,
  ``logistic``, ``gaussian``, ``gaussian_fixed``), checked against the data.
* ``encoder`` / ``decoder``: net specs ``{name: auto|mlp|conv, ...}``; ``auto`` is conv for
  ``(C, H, W)`` images and an MLP otherwise. The conv decoder has no batch norm, so that
  ``p(x | z)`` of one example never depends on the rest of the batch.
* ``prior``: ``standard`` (``N(0, I)``) or ``vampprior`` (Tomczak & Welling 2018,
  arXiv 1705.07120): the mixture ``(1/K) sum_k q(z | u_k)`` over ``pseudo_inputs`` learned
  pseudo-inputs ``u_k`` (model space, initialised from ``N(0, 0.1^2)``), or ``hierarchical``
  (Klushyn et al. 2019, arXiv 1905.04982; :mod:`genlab.models.priors`): ``p(z) = ∫ p(z|zeta)
  p(zeta) dzeta`` with ``hyper_dim`` hyper-latents, MLPs of ``prior_hidden`` x ``prior_depth``,
  and ``log p(z)`` estimated with ``prior_samples`` importance draws from ``q(zeta | z)``.
  Train it with the ``geco`` objective, as the paper does.
* ``posterior``: ``gaussian`` (``q(z | x) = N(mu(x), diag sigma(x)^2)``) or ``implicit``
  (adversarial variational Bayes, Mescheder, Nowozin & Geiger 2017, arXiv 1701.04722):
  ``z = g([h(x), eps])``, ``eps ~ N(0, I_noise_dim)``, with ``h`` the encoder net (``2 *
  latent_dim`` features, as for the Gaussian posterior) and ``g`` an MLP (2 hidden layers
  of 128 ReLU units). ``posterior(x)`` then returns an :class:`ImplicitPosterior`: it draws
  (``rsample``/``sample``) but has no density, so its ``log_prob`` (and ``mean``) raise a
  clear error. Train it with ``objective: avb`` (or ``alpha_gan``); the ``iwae`` metric's
  ``proposal: auto`` falls back to the prior for it, and the ELBO/IWAE objectives cannot
  use it. ``reconstruct`` decodes one posterior draw (seed 0) instead of the mean.
* ``sample_from``: ``likelihood`` draws ``x ~ p(x | z)`` (the model's samples, what the
  likelihood is the likelihood of); ``mean`` returns the decoder mean ``E[x | z]``, the
  smoother picture most VAE papers show. Metrics judge whatever ``sample`` returns;
  reports state which.

``cond_vae`` is the class-conditional variant: the one-hot label is appended to the
encoder's input (features or channels) and to the code, ``p(x | z, y)``, ``q(z | x, y)``,
``p(z)`` unchanged.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal, constraints

from genlab.data.base import DataSpec
from genlab.kwargs import PositiveFloat, PositiveInt
from genlab.models.base import AmortizedPosterior, standard_normal
from genlab.models.priors import HierarchicalPriorNets
from genlab.models.likelihoods import LikelihoodName, check_likelihood, make_likelihood, params_per_pixel
from genlab.nets.build import build_encoder
from genlab.nets.conditional import concat_onehot, concat_shape
from genlab.nets.dcgan import ConvDecoder
from genlab.nets.mlp import MLP

MIN_STD = 1e-4
PRIORS = ("standard", "vampprior", "hierarchical")


def build_decoder(spec: dict[str, Any] | None, *, in_features: int, out_shape: tuple[int, ...]) -> nn.Module:
    """``(B, in_features) -> (B, *out_shape)``. ``spec``: ``{name: auto|mlp|conv, **kwargs}``;
    ``auto`` is conv for ``(C, H, W)`` outputs (a :class:`~genlab.nets.dcgan.ConvDecoder`
    without batch norm) and an MLP otherwise."""
    from genlab.kwargs import validate_kwargs

    spec = dict(spec or {})
    name = spec.pop("name", "auto")
    if name == "auto":
        name = "conv" if len(out_shape) == 3 else "mlp"
    if name == "conv":
        if len(out_shape) != 3:
            raise ValueError(f"a conv decoder needs image data (C, H, W), got event shape {out_shape}; use mlp")
        kwargs = validate_kwargs(ConvDecoder, {"batch_norm": False, **spec}, where="decoder 'conv'",
                                 reserved=("in_features", "out_shape"))
        return ConvDecoder(in_features=in_features, out_shape=out_shape, **kwargs)
    if name == "mlp":
        kwargs = validate_kwargs(MLP, spec, where="decoder 'mlp'", reserved=("in_shape", "out_features"))
        return _Reshape(MLP(in_shape=(in_features,), out_features=math.prod(out_shape), **kwargs), out_shape)
    raise ValueError(f"unknown decoder net {name!r}; choose mlp, conv or auto")


class _Reshape(nn.Module):
    def __init__(self, net: nn.Module, shape: tuple[int, ...]):
        super().__init__()
        self.net, self.shape = net, tuple(shape)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).reshape(z.shape[0], *self.shape)


def gaussian_posterior(h: Tensor) -> Distribution:
    """Encoder output ``(B, 2d)`` -> ``N(mu, diag sigma^2)``, ``sigma = softplus(.) + 1e-4``."""
    mu, raw = h.chunk(2, dim=-1)
    return Independent(Normal(mu, F.softplus(raw) + MIN_STD, validate_args=False), 1, validate_args=False)


IMPLICIT_NO_DENSITY = ("the implicit posterior q(z|x) = g(x, eps) (model option posterior: implicit) can be "
                       "sampled but has no density: {what} is unavailable. Train it with objective avb (or "
                       "alpha_gan), not elbo/iwae; the iwae metric needs proposal: prior (auto picks it)")


class ImplicitPosterior(Distribution):
    """An implicit posterior ``q(z | x)``: ``z = head([features, eps])``, ``eps ~ N(0, I_noise)``
    (AVB, arXiv 1701.04722). Batch shape ``(B,)`` (one per example), event shape
    ``(latent_dim,)``. ``rsample``/``sample`` take an optional ``generator``; ``log_prob``
    and ``mean`` raise :class:`NotImplementedError` (there is no closed form)."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, features: Tensor, head: nn.Module, noise_dim: int, latent_dim: int):
        self.features, self.head, self.noise_dim = features, head, int(noise_dim)
        super().__init__(features.shape[:1], torch.Size((latent_dim,)), validate_args=False)

    def rsample(self, sample_shape: torch.Size | tuple = (), generator: torch.Generator | None = None
                ) -> Tensor:
        """Reparameterised draws ``(*sample_shape, B, latent_dim)``."""
        shape = torch.Size(sample_shape)
        n, b = math.prod(shape), self.features.shape[0]
        h = self.features.unsqueeze(0).expand(n, *self.features.shape).reshape(n * b, -1)
        eps = torch.randn(n * b, self.noise_dim, generator=generator, dtype=h.dtype, device=h.device)
        return self.head(torch.cat([h, eps], 1)).reshape(*shape, b, *self.event_shape)

    def sample(self, sample_shape: torch.Size | tuple = (), generator: torch.Generator | None = None
               ) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape, generator)

    def log_prob(self, value: Tensor) -> Tensor:
        raise NotImplementedError(IMPLICIT_NO_DENSITY.format(what="log_prob"))

    @property
    def mean(self) -> Tensor:
        raise NotImplementedError(IMPLICIT_NO_DENSITY.format(what="its mean in closed form"))


class _VAE(AmortizedPosterior):
    """The shared body of :class:`VAE` and :class:`ConditionalVAE` (not registered)."""

    def __init__(self, *, data_spec: DataSpec, latent_dim: PositiveInt = 16,
                 likelihood: LikelihoodName = "logistic", encoder: dict[str, Any] | None = None,
                 decoder: dict[str, Any] | None = None,
                 prior: Literal["standard", "vampprior", "hierarchical"] = "standard",
                 pseudo_inputs: PositiveInt = 50, hyper_dim: PositiveInt = 8, prior_hidden: PositiveInt = 128,
                 prior_depth: PositiveInt = 2, prior_samples: PositiveInt = 16, noise_std: PositiveFloat = 0.1,
                 sample_from: Literal["likelihood", "mean"] = "likelihood",
                 posterior: Literal["gaussian", "implicit"] = "gaussian", noise_dim: PositiveInt = 16):
        super().__init__()
        check_likelihood(likelihood, data_spec)
        if posterior not in ("gaussian", "implicit"):
            raise ValueError(f"unknown posterior {posterior!r}; choose gaussian or implicit")
        if posterior == "implicit" and prior == "vampprior":
            raise ValueError("the VampPrior is a mixture of Gaussian posteriors; use prior: standard (or "
                             "hierarchical) with posterior: implicit")
        if prior not in PRIORS:
            raise ValueError(f"unknown prior {prior!r}; choose one of {', '.join(PRIORS)}")
        if sample_from not in ("likelihood", "mean"):
            raise ValueError(f"sample_from must be 'likelihood' or 'mean', got {sample_from!r}")
        if self.conditional:
            if data_spec.classes is None:
                raise ValueError(f"{type(self).__name__} needs labelled data (data_spec.classes); {data_spec.name} "
                                 "has none. Use model: vae, or a labelled dataset")
            self.num_classes = int(data_spec.classes)
        if prior != "standard" and self.conditional:
            raise ValueError(f"the {prior} prior is unconditional; use prior: standard with cond_vae")
        self.spec = data_spec
        self.event_shape = torch.Size(data_spec.event_shape)
        self.latent_shape = torch.Size((latent_dim,))
        self.likelihood_name, self.noise_std, self.sample_from = likelihood, noise_std, sample_from
        self.prior_name = prior
        #: ``True`` for ``posterior: implicit`` (no ``log q``; read by the avb objective and the iwae metric).
        self.implicit_posterior = posterior == "implicit"
        self.noise_dim = noise_dim
        classes = self.num_classes or 0
        in_shape = concat_shape(data_spec.event_shape, classes) if classes else tuple(data_spec.event_shape)
        self.encoder = build_encoder(encoder, in_shape=in_shape, out_features=2 * latent_dim)
        if self.implicit_posterior:
            self.noise_head = MLP(in_shape=(2 * latent_dim + noise_dim,), out_features=latent_dim, hidden=128,
                                  depth=2)
        self.n_params = params_per_pixel(likelihood, data_spec)
        event = tuple(data_spec.event_shape)
        out_shape = (self.n_params * event[0], *event[1:])
        self.decoder = build_decoder(decoder, in_features=latent_dim + classes, out_shape=out_shape)
        if prior == "vampprior":
            self.pseudo = nn.Parameter(0.1 * torch.randn(pseudo_inputs, *event))
        if prior == "hierarchical":
            self.hyperprior = HierarchicalPriorNets(latent_dim=latent_dim, hyper_dim=hyper_dim, hidden=prior_hidden,
                                                    depth=prior_depth, samples=prior_samples)

    # --- capabilities ---------------------------------------------------------------
    def _encode(self, x: Tensor, y: Tensor | None) -> Distribution:
        if y is not None:
            x = concat_onehot(x, y, self.num_classes)
        if self.implicit_posterior:
            return ImplicitPosterior(self.encoder(x), self.noise_head, self.noise_dim, self.latent_shape[0])
        return gaussian_posterior(self.encoder(x))

    def posterior(self, x: Tensor, *, context: Tensor | None = None) -> Distribution:
        """``q(z | x)``: batch shape ``(B,)``, event shape ``(latent_dim,)``."""
        self._check_x(x)
        return self._encode(x, self.check_context(context, x.shape[0]))

    def reconstruct(self, x: Tensor, *, context: Tensor | None = None) -> Tensor:
        """The decoder mean at the posterior mean (Gaussian posterior) or at one posterior draw
        from a fixed seed (implicit posterior, whose mean has no closed form)."""
        q = self.posterior(x, context=context)
        if not self.implicit_posterior:
            return self.likelihood(q.mean, context=context).mean
        z = q.sample(generator=torch.Generator(device=x.device).manual_seed(0))
        return self.likelihood(z, context=context).mean

    def prior(self, *, context: Tensor | None = None) -> Distribution:
        if context is not None:
            self.check_context(context, len(context))
        if self.prior_name == "standard":
            return standard_normal(self.latent_shape, self.device)
        if self.prior_name == "hierarchical":
            return self.hyperprior.distribution()
        q = self._encode(self.pseudo, None)
        k = self.pseudo.shape[0]
        return MixtureSameFamily(Categorical(logits=torch.zeros(k, dtype=self.pseudo.dtype,
                                                                device=self.pseudo.device)), q)

    def decoder_params(self, z: Tensor, context: Tensor | None) -> Tensor:
        """``(B, P, *event)``: the decoder's per-pixel parameters."""
        y = self.check_context(context, z.shape[0])
        if y is not None:
            z = torch.cat([z, F.one_hot(y, self.num_classes).to(z.dtype)], 1)
        h = self.decoder(z)
        return h.reshape(z.shape[0], self.n_params, *self.event_shape)

    def likelihood(self, z: Tensor, *, context: Tensor | None = None) -> Distribution:
        return make_likelihood(self.likelihood_name, self.decoder_params(z, context), self.spec,
                               noise_std=self.noise_std)

    def decode(self, z: Tensor, *, context: Tensor | None = None) -> Tensor:
        """The decoder mean ``E[x | z]`` in model space, ``(B, *event_shape)``."""
        return self.likelihood(z, context=context).mean

    def _sample(self, n: int, *, context: Tensor | None, generator: torch.Generator | None) -> Tensor:
        dtype = next(self.parameters()).dtype
        z = self.sample_prior(n, generator)
        p = self.likelihood(z, context=context)
        if self.sample_from == "mean":
            return p.mean
        if isinstance(p, Independent):  # Gaussian: reparameterised draw with our generator
            base = p.base_dist
            return base.loc + base.scale * torch.randn(base.loc.shape, generator=generator, dtype=dtype,
                                                       device=self.device)
        return p.sample(generator=generator)

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``(n, latent_dim)`` codes ``z ~ p(z)`` drawn with ``generator``."""
        dtype = next(self.parameters()).dtype
        if self.prior_name == "hierarchical":
            return self.hyperprior.sample(n, generator)
        eps = torch.randn(n, *self.latent_shape, generator=generator, dtype=dtype, device=self.device)
        if self.prior_name == "standard":
            return eps
        comp = torch.randint(self.pseudo.shape[0], (n,), generator=generator, device=self.device)
        comps = self.prior().component_distribution.base_dist
        return comps.loc[comp] + comps.scale[comp] * eps

    def _check_x(self, x: Tensor) -> None:
        if tuple(x.shape[1:]) != tuple(self.event_shape):
            raise ValueError(f"{type(self).__name__} expects x of shape (B, {', '.join(map(str, self.event_shape))})"
                             f", got {tuple(x.shape)}")


class VAE(_VAE):
    """A VAE: any decoder likelihood, MLP or conv nets, standard or VampPrior prior, Gaussian or
    implicit posterior."""


class ConditionalVAE(_VAE):
    """A class-conditional VAE: ``p(x | z, y)``, ``q(z | x, y)``, ``p(z) = N(0, I)``; labels ``y`` ``(B,)``."""

    conditional: ClassVar[bool] = True
