"""Learned priors for VAEs (``model: {name: vae, prior: ...}``).

* ``hierarchical`` (Klushyn, Chen, Kurle, Cseke & van der Smagt 2019, "Learning hierarchical
  priors in VAEs", arXiv 1905.04982): a two-level prior
  ``p(z) = ∫ p(z | zeta) p(zeta) dzeta``, ``p(zeta) = N(0, I)``,
  ``p(z | zeta) = N(mu(zeta), diag sigma(zeta)^2)``, with its own amortised posterior
  ``q(zeta | z)``. ``log p(z)`` has no closed form; :class:`HierarchicalPrior` estimates it by
  importance sampling with ``K`` draws from ``q(zeta | z)``:
  ``log p(z) >= E log (1/K) sum_k p(z | zeta_k) p(zeta_k) / q(zeta_k | z)``. The average inside
  the log is an unbiased estimate of ``p(z)``, so every bound built on it (the ELBO, IWAE_k)
  stays a lower bound on ``log p(x)`` in expectation.

  Noise: in training mode the inner draws use torch's global generator (fresh noise every
  step, seeded by the run); in eval mode a generator seeded with 0 per ``prior()`` call, so
  that metrics are deterministic.

The VampPrior lives in :mod:`genlab.models.vae` (it reuses the VAE's own encoder).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, constraints

from genlab.nets.mlp import MLP

MIN_STD = 1e-4


def _gaussian(h: Tensor) -> Independent:
    mu, raw = h.chunk(2, dim=-1)
    return Independent(Normal(mu, F.softplus(raw) + MIN_STD, validate_args=False), 1, validate_args=False)


class HierarchicalPriorNets(nn.Module):
    """The networks of the two-level prior: ``p(z | zeta)`` and ``q(zeta | z)`` (MLPs)."""

    def __init__(self, *, latent_dim: int, hyper_dim: int, hidden: int, depth: int, samples: int):
        super().__init__()
        self.latent_dim, self.hyper_dim, self.samples = latent_dim, hyper_dim, samples
        self.conditional_prior = MLP(in_shape=(hyper_dim,), out_features=2 * latent_dim, hidden=hidden, depth=depth,
                                     activation="tanh")
        self.hyper_posterior = MLP(in_shape=(latent_dim,), out_features=2 * hyper_dim, hidden=hidden, depth=depth,
                                   activation="tanh")

    def distribution(self) -> "HierarchicalPrior":
        ref = next(self.parameters())
        gen = None if self.training else torch.Generator(device=ref.device).manual_seed(0)
        return HierarchicalPrior(self, gen)

    def sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        """``(n, latent_dim)``: ``zeta ~ N(0, I)``, ``z ~ p(z | zeta)``."""
        ref = next(self.parameters())
        zeta = torch.randn(n, self.hyper_dim, generator=generator, dtype=ref.dtype, device=ref.device)
        p = _gaussian(self.conditional_prior(zeta)).base_dist
        return p.loc + p.scale * torch.randn(p.loc.shape, generator=generator, dtype=ref.dtype, device=ref.device)


class HierarchicalPrior(Distribution):
    """``p(z)`` of the two-level prior as a distribution: ``log_prob`` is the ``K``-sample
    importance estimate (see the module docstring), ``sample`` is exact ancestral sampling."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(self, nets: HierarchicalPriorNets, generator: torch.Generator | None):
        self.nets, self.generator = nets, generator
        super().__init__(torch.Size(), torch.Size((nets.latent_dim,)), validate_args=False)

    def log_prob(self, z: Tensor) -> Tensor:
        lead = z.shape[:-1]
        flat = z.reshape(-1, z.shape[-1])
        q = _gaussian(self.nets.hyper_posterior(flat))
        base = q.base_dist
        k = self.nets.samples
        eps = torch.randn((k, *base.loc.shape), generator=self.generator, dtype=base.loc.dtype,
                          device=base.loc.device)
        zeta = base.loc + base.scale * eps  # (K, N, h)
        p_z = _gaussian(self.nets.conditional_prior(zeta.reshape(-1, zeta.shape[-1])))
        log_pz_given = p_z.log_prob(flat.repeat(k, 1)).reshape(k, -1)
        log_pzeta = Normal(0.0, 1.0).log_prob(zeta).sum(-1)
        log_w = log_pz_given + log_pzeta - q.log_prob(zeta)
        return (torch.logsumexp(log_w, 0) - math.log(k)).reshape(lead)

    def sample(self, sample_shape: torch.Size = torch.Size(), generator: torch.Generator | None = None) -> Tensor:
        n = math.prod(sample_shape) if len(sample_shape) else 1
        return self.nets.sample(n, generator).reshape(*sample_shape, self.nets.latent_dim)
