"""Helmholtz machines: a generative model ``p(z) p(x | z)`` with a separate bottom-up
recognition model, trained by wake-sleep (:mod:`genlab.objectives.wake_sleep`).

* ``helmholtz`` (:class:`HelmholtzMachine`): the recognition model is a Gaussian
  ``q(z | x) = N(mu(x), diag sigma(x)^2)`` (Dayan, Hinton, Neal & Zemel 1995, "The Helmholtz
  machine", Neural Computation 7; Hinton, Dayan, Frey & Neal 1995, "The wake-sleep algorithm
  for unsupervised neural networks", Science 268). It is a proper distribution, so the model
  is an :class:`~genlab.models.base.AmortizedPosterior` (the ``iwae`` metric uses it as its
  proposal, and the ``elbo``/``iwae`` objectives can also train it).
* ``ddc_helmholtz`` (:class:`DDCHelmholtzMachine`): the recognition model outputs a
  *distributed distributional code* ``r(x) ≈ E_q[T(z) | x]``, the posterior expectations of
  ``features`` fixed random nonlinear features ``T(z) = sigmoid(W z + b)`` (Vértes & Sahani
  2018, "Flexible and accurate inference and learning for deep generative models",
  arXiv 1805.11051). A DDC defines no density over ``z``: this model is only a
  :class:`~genlab.models.base.LatentVariableModel`; metrics use the prior proposal
  (``iwae`` with ``proposal: prior``/``auto``) or AIS (``ais_latent``). Posterior
  expectations of any function ``f(z)`` are read off the code linearly:
  ``E_q[f(z) | x] ≈ alpha_f [1, r(x)]`` with ``alpha_f`` the ridge regression of ``f(z)`` on
  ``[1, T(z)]`` over ``z ~ p(z)`` (:meth:`DDCHelmholtzMachine.expectation`,
  :func:`ridge_readout`). ``W``, ``b`` are buffers saved with the model.

The generative model is the same in both: ``z ~ N(0, I_latent_dim)`` and a decoder ``p(x | z)``
(:mod:`genlab.models.likelihoods`, ``bernoulli`` for binarised digits) from an MLP or conv
net. One layer of continuous latents (the paper's experiments also use sigmoid belief nets
and deeper hierarchies; continuous latents let ``ais_latent`` score the model with HMC).
``generative_parameters()`` and ``recognition_parameters()`` split the weights between the
wake and sleep players.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent

from genlab.data.base import DataSpec
from genlab.kwargs import PositiveFloat, PositiveInt
from genlab.models.base import AmortizedPosterior, LatentVariableModel, standard_normal
from genlab.models.likelihoods import (
    LikelihoodName,
    check_likelihood,
    make_likelihood,
    params_per_pixel,
)
from genlab.models.vae import build_decoder, gaussian_posterior
from genlab.nets.build import build_encoder


def ridge_readout(features: Tensor, targets: Tensor, ridge: float) -> Tensor:
    """Least-squares linear map ``alpha`` with ``targets ≈ [1, features] @ alpha``:
    ``features`` ``(S, K)``, ``targets`` ``(S, P)`` -> ``alpha`` ``(K + 1, P)``. The ridge
    penalty ``ridge * S`` acts on the feature weights, not on the intercept."""
    if features.dim() != 2 or targets.dim() != 2 or features.shape[0] != targets.shape[0]:
        raise ValueError(f"ridge_readout: need features (S, K) and targets (S, P), got {tuple(features.shape)} "
                         f"and {tuple(targets.shape)}")
    s, k = features.shape
    design = torch.cat([features.new_ones(s, 1), features], 1)
    gram = design.T @ design
    pen = torch.full((k + 1,), float(ridge) * s, dtype=features.dtype, device=features.device)
    pen[0] = 0.0
    return torch.linalg.solve(gram + torch.diag(pen), design.T @ targets)


def ddc_weights(features: Tensor, code: Tensor, ridge: float) -> Tensor:
    """The dual form of the DDC read-out: weights ``w`` ``(B, S)`` over the regression points
    such that ``alpha_f^T [1, r(x)] = sum_s w_s(x) f(z_s)`` for *every* target ``f``
    (``alpha_f`` = :func:`ridge_readout` of ``f(z_s)`` on ``features`` ``(S, K)``);
    ``code`` ``(B, K)`` is ``r(x)``."""
    s, k = features.shape
    design = torch.cat([features.new_ones(s, 1), features], 1)
    pen = torch.full((k + 1,), float(ridge) * s, dtype=features.dtype, device=features.device)
    pen[0] = 0.0
    read = torch.cat([code.new_ones(code.shape[0], 1), code], 1)  # (B, K + 1)
    a = torch.linalg.solve(design.T @ design + torch.diag(pen), read.T)  # (K + 1, B)
    return (design @ a).T


class _Helmholtz(LatentVariableModel):
    """The shared generative half: ``z ~ N(0, I)``, ``x | z ~ likelihood(decoder(z))`` (not registered)."""

    def __init__(self, *, data_spec: DataSpec, latent_dim: PositiveInt = 8, likelihood: LikelihoodName = "bernoulli",
                 decoder: dict[str, Any] | None = None, recognition: dict[str, Any] | None = None,
                 sample_from: Literal["likelihood", "mean"] = "likelihood", noise_std: PositiveFloat = 0.1):
        super().__init__()
        check_likelihood(likelihood, data_spec)
        if sample_from not in ("likelihood", "mean"):
            raise ValueError(f"sample_from must be 'likelihood' or 'mean', got {sample_from!r}")
        self.spec = data_spec
        self.event_shape = torch.Size(data_spec.event_shape)
        self.latent_shape = torch.Size((latent_dim,))
        self.likelihood_name, self.sample_from, self.noise_std = likelihood, sample_from, noise_std
        self.n_params = params_per_pixel(likelihood, data_spec)
        event = tuple(data_spec.event_shape)
        # the decoder is built first so that models with the same seed share its initial weights
        self.decoder = build_decoder(decoder or {"name": "mlp", "hidden": 200, "depth": 2, "activation": "tanh"},
                                     in_features=latent_dim, out_shape=(self.n_params * event[0], *event[1:]))
        self.recognition = build_encoder(recognition or {"name": "mlp", "hidden": 200, "depth": 2,
                                                         "activation": "tanh"},
                                         in_shape=event, out_features=self._recognition_outputs(latent_dim))

    def _recognition_outputs(self, latent_dim: int) -> int:
        raise NotImplementedError

    def generative_parameters(self) -> list[nn.Parameter]:
        """The weights of ``p(z) p(x | z)`` (the wake phase's)."""
        return list(self.decoder.parameters())

    def recognition_parameters(self) -> list[nn.Parameter]:
        """The weights of the recognition model (the sleep phase's)."""
        return list(self.recognition.parameters())

    def prior(self, *, context: Tensor | None = None) -> Distribution:
        if context is not None:
            self.check_context(context, len(context))
        return standard_normal(self.latent_shape, self.device)

    def likelihood(self, z: Tensor, *, context: Tensor | None = None) -> Distribution:
        self.check_context(context, z.shape[0])
        h = self.decoder(z).reshape(z.shape[0], self.n_params, *self.event_shape)
        return make_likelihood(self.likelihood_name, h, self.spec, noise_std=self.noise_std)

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``(n, latent_dim)`` codes ``z ~ N(0, I)``."""
        dtype = next(self.parameters()).dtype
        return torch.randn(n, *self.latent_shape, generator=generator, dtype=dtype, device=self.device)

    def sample_likelihood(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One ``x ~ p(x | z)`` per code (model space), drawn with ``generator``."""
        p = self.likelihood(z)
        if isinstance(p, Independent):  # Gaussian decoders
            base = p.base_dist
            return base.loc + base.scale * torch.randn(base.loc.shape, generator=generator, dtype=base.loc.dtype,
                                                       device=base.loc.device)
        return p.sample(generator=generator)

    def dream(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``n`` pairs ``(z, x) ~ p(z) p(x | z)`` without gradients (the sleep phase's data)."""
        with torch.no_grad():
            z = self.sample_prior(n, generator)
            return z, self.sample_likelihood(z, generator)

    def _sample(self, n: int, *, context: Tensor | None, generator: torch.Generator | None) -> Tensor:
        z = self.sample_prior(n, generator)
        return self.likelihood(z).mean if self.sample_from == "mean" else self.sample_likelihood(z, generator)

    def _check_x(self, x: Tensor) -> None:
        if tuple(x.shape[1:]) != tuple(self.event_shape):
            raise ValueError(f"{type(self).__name__} expects x of shape (B, {', '.join(map(str, self.event_shape))})"
                             f", got {tuple(x.shape)}")


class HelmholtzMachine(_Helmholtz, AmortizedPosterior):
    """A Helmholtz machine with a Gaussian recognition model ``q(z | x)`` (Dayan et al. 1995;
    trained by ``wake_sleep``, Hinton et al. 1995)."""

    def _recognition_outputs(self, latent_dim: int) -> int:
        return 2 * latent_dim

    def posterior(self, x: Tensor, *, context: Tensor | None = None) -> Distribution:
        """``q(z | x) = N(mu(x), diag sigma(x)^2)``: batch shape ``(B,)``, event ``(latent_dim,)``."""
        self._check_x(x)
        self.check_context(context, x.shape[0])
        return gaussian_posterior(self.recognition(x))


class DDCHelmholtzMachine(_Helmholtz):
    """A DDC Helmholtz machine (Vértes & Sahani 2018, arXiv 1805.11051): the recognition net
    outputs ``r(x) ≈ E_q[T(z) | x]`` for ``features`` random features ``T(z) = sigmoid(W z + b)``,
    ``W ~ N(0, feature_scale^2)``, ``b ~ N(0, feature_scale^2)`` drawn from ``feature_seed``."""

    def __init__(self, *, data_spec: DataSpec, latent_dim: PositiveInt = 8, likelihood: LikelihoodName = "bernoulli",
                 decoder: dict[str, Any] | None = None, recognition: dict[str, Any] | None = None,
                 sample_from: Literal["likelihood", "mean"] = "likelihood", noise_std: PositiveFloat = 0.1,
                 features: PositiveInt = 200,
                 feature_scale: PositiveFloat = 1.0, feature_seed: int = 0, readout_points: PositiveInt = 2000,
                 readout_ridge: PositiveFloat = 1e-4):
        self.n_features = features
        super().__init__(data_spec=data_spec, latent_dim=latent_dim, likelihood=likelihood, decoder=decoder,
                         recognition=recognition, sample_from=sample_from, noise_std=noise_std)
        g = torch.Generator().manual_seed(feature_seed)
        self.register_buffer("feature_w", feature_scale * torch.randn(features, latent_dim, generator=g))
        self.register_buffer("feature_b", feature_scale * torch.randn(features, generator=g))
        self.readout_points, self.readout_ridge = readout_points, readout_ridge

    def _recognition_outputs(self, latent_dim: int) -> int:
        return self.n_features

    def features(self, z: Tensor) -> Tensor:
        """``T(z) = sigmoid(W z + b)``: ``(..., latent_dim) -> (..., features)``."""
        return torch.sigmoid(z @ self.feature_w.T + self.feature_b)

    def ddc(self, x: Tensor, *, context: Tensor | None = None) -> Tensor:
        """The code ``r(x) ≈ E_q[T(z) | x]``: ``(B, *event_shape) -> (B, features)``."""
        self._check_x(x)
        self.check_context(context, x.shape[0])
        return self.recognition(x)

    def expectation(self, x: Tensor, fn: Callable[[Tensor], Tensor], *, points: int | None = None,
                    ridge: float | None = None, seed: int = 0) -> Tensor:
        """``E_q[fn(z) | x] ≈ alpha [1, r(x)]``, ``alpha`` the ridge regression of ``fn(z)``
        ``(S, P)`` on ``[1, T(z)]`` over ``points`` codes ``z ~ p(z)`` (seeded): ``(B, P)``."""
        g = torch.Generator(device=self.device).manual_seed(seed)
        z = self.sample_prior(points or self.readout_points, g)
        alpha = ridge_readout(self.features(z), fn(z), self.readout_ridge if ridge is None else ridge)
        r = self.ddc(x)
        return torch.cat([r.new_ones(r.shape[0], 1), r], 1) @ alpha

    def reconstruct(self, x: Tensor, *, context: Tensor | None = None) -> Tensor:
        """The decoder mean at the DDC's posterior mean ``E_q[z | x]`` (read off the code)."""
        return self.likelihood(self.expectation(x, lambda z: z)).mean
