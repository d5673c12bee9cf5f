"""The linear-Gaussian latent-variable model (probabilistic PCA, Tipping & Bishop 1999;
factor analysis with isotropic noise)::

    z ~ N(0, I_d),   x | z ~ N(W z + b, s^2 I_D)   =>   p(x) = N(b, W W^T + s^2 I_D)

Everything is closed-form: the marginal ``log_prob``, and the exact posterior
``p(z | x) = N(S W^T (x - b) / s^2, S)`` with ``S = (I + W^T W / s^2)^{-1}``. It is the
reference model for testing likelihood estimators (AIS, IWAE, ELBO): an estimator
run on it can be compared with the exact answer.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Independent, MultivariateNormal, Normal

from genlab.kwargs import PositiveInt
from genlab.data.base import DataSpec
from genlab.models.base import AmortizedPosterior, DensityModel, ReparameterizedModel


class LinearGaussian(AmortizedPosterior, DensityModel, ReparameterizedModel):
    """Probabilistic PCA ``x = W z + b + s * eps``: exact ``log_prob``, ``prior``,
    ``likelihood(z)`` and ``posterior(x)``. ``x``: ``(B, *event_shape)`` (flattened to D)."""

    def __init__(self, *, data_spec: DataSpec, latent_dim: PositiveInt = 2, noise_std: float = 1.0,
                 learn_noise: bool = True):
        super().__init__()
        if noise_std <= 0:
            raise ValueError(f"linear_gaussian needs noise_std > 0, got {noise_std}")
        self.event_shape = torch.Size(data_spec.event_shape)
        self.latent_shape = torch.Size((latent_dim,))
        d_x = data_spec.dim
        self.weight = nn.Parameter(torch.randn(d_x, latent_dim) / math.sqrt(latent_dim))
        self.bias = nn.Parameter(torch.zeros(d_x))
        log_s = torch.tensor(math.log(noise_std))
        if learn_noise:
            self.log_noise_std = nn.Parameter(log_s)
        else:
            self.register_buffer("log_noise_std", log_s)

    @property
    def noise_std(self) -> Tensor:
        return self.log_noise_std.exp()

    def prior(self, *, context: Tensor | None = None) -> torch.distributions.Distribution:
        self.check_context(context, 0 if context is None else len(context))
        zeros = torch.zeros(self.latent_shape, dtype=self.weight.dtype, device=self.weight.device)
        return Independent(Normal(zeros, torch.ones_like(zeros)), 1)

    def decode(self, z: Tensor, *, context: Tensor | None = None) -> Tensor:
        """Mean of ``p(x | z)``: ``(B, d)`` -> ``(B, *event_shape)``."""
        self.check_context(context, z.shape[0])
        return (z @ self.weight.T + self.bias).reshape(*z.shape[:-1], *self.event_shape)

    def likelihood(self, z: Tensor, *, context: Tensor | None = None) -> torch.distributions.Distribution:
        mean = self.decode(z, context=context)
        return Independent(Normal(mean, self.noise_std.expand_as(mean)), len(self.event_shape))

    def marginal(self) -> MultivariateNormal:
        """``p(x) = N(b, W W^T + s^2 I)`` over flattened ``x`` ``(D,)``."""
        w = self.weight
        cov = w @ w.T + self.noise_std**2 * torch.eye(w.shape[0], dtype=w.dtype, device=w.device)
        return MultivariateNormal(self.bias, covariance_matrix=cov)

    def log_prob(self, x: Tensor, *, context: Tensor | None = None) -> Tensor:
        self.check_context(context, len(x))
        return self.marginal().log_prob(x.reshape(x.shape[0], -1))

    def posterior(self, x: Tensor, *, context: Tensor | None = None) -> MultivariateNormal:
        """Exact ``p(z | x)`` with batch shape ``(B,)`` and event shape ``(d,)``."""
        self.check_context(context, x.shape[0])
        w, s2 = self.weight, self.noise_std**2
        prec = torch.eye(w.shape[1], dtype=w.dtype, device=w.device) + w.T @ w / s2
        cov = torch.linalg.inv(prec)
        cov = 0.5 * (cov + cov.T)
        mean = (x.reshape(x.shape[0], -1) - self.bias) @ w @ cov / s2
        return MultivariateNormal(mean, covariance_matrix=cov.expand(x.shape[0], -1, -1))

    def _rsample(self, n: int, *, context: Tensor | None, generator: torch.Generator | None) -> Tensor:
        w = self.weight
        z = torch.randn(n, w.shape[1], generator=generator, dtype=w.dtype, device=w.device)
        eps = torch.randn(n, w.shape[0], generator=generator, dtype=w.dtype, device=w.device)
        return self.decode(z) + self.noise_std * eps.reshape(n, *self.event_shape)
