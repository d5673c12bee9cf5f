"""Importance sampling and the importance-weighted (IWAE) bound.

``iwae_bound`` is the K-sample bound of Burda et al. 2015 (arXiv 1509.00519)::

    L_K(x) = E_{z_1..z_K ~ q(z|x)} [ log (1/K) sum_k p(x, z_k) / q(z_k|x) ]

``L_1`` is the ELBO, ``L_K <= L_{K+1} <= log p(x)`` and ``L_K -> log p(x)`` as
``K -> inf`` (for a proposal whose support covers the posterior). When ``q`` is the
exact posterior every weight equals ``p(x)`` and ``L_K = log p(x)`` for every K.

``sample_distribution`` draws from a ``torch.distributions`` object with an
explicit ``torch.Generator`` (``Distribution.sample`` has no generator argument).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal


def log_mean_exp(x: Tensor, dim: int = 0) -> Tensor:
    """``log(mean(exp(x), dim))`` computed stably."""
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])


def sample_distribution(dist: Distribution, sample_shape: Sequence[int] = (), *,
                        generator: torch.Generator | None = None) -> Tensor:
    """Draw ``(*sample_shape, *batch_shape, *event_shape)`` from ``dist`` using ``generator``.

    Reparameterised (gradients flow to the parameters) for Normal, Independent(Normal)
    and MultivariateNormal; other families are sampled under a forked global RNG
    seeded from ``generator`` (the global RNG state is restored afterwards).
    """
    shape = torch.Size(sample_shape)
    if generator is None:
        return dist.rsample(shape) if dist.has_rsample else dist.sample(shape)
    if isinstance(dist, Independent):
        return sample_distribution(dist.base_dist, shape, generator=generator)
    if isinstance(dist, Normal):
        eps = torch.randn(dist._extended_shape(shape), generator=generator, dtype=dist.loc.dtype,
                          device=dist.loc.device)
        return dist.loc + dist.scale * eps
    if isinstance(dist, MultivariateNormal):
        eps = torch.randn(dist._extended_shape(shape), generator=generator, dtype=dist.loc.dtype,
                          device=dist.loc.device)
        return dist.loc + (dist.scale_tril @ eps.unsqueeze(-1)).squeeze(-1)
    seed = int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))
    dev = generator.device
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        return dist.rsample(shape) if dist.has_rsample else dist.sample(shape)


def importance_log_weights(log_joint_fn: Callable[[Tensor], Tensor], proposal: Distribution, k: int, *,
                           generator: torch.Generator | None = None) -> Tensor:
    """``log p(x, z_k) - log q(z_k | x)`` for ``z_k ~ q``: ``(k, B)``.

    ``proposal`` has batch shape ``(B,)`` (one proposal per data point) and event
    shape ``latent_shape``; ``log_joint_fn`` maps ``(k, B, *latent_shape)`` to ``(k, B)``.
    """
    z = sample_distribution(proposal, (k,), generator=generator)
    return log_joint_fn(z) - proposal.log_prob(z)


def iwae_bound(log_joint_fn: Callable[[Tensor], Tensor], proposal: Distribution, k: int, *,
               generator: torch.Generator | None = None, chunk_size: int | None = None) -> Tensor:
    """The K-sample importance-weighted bound ``L_K(x)`` per data point: ``(B,)`` nats.

    One draw of the (random) bound; its expectation increases with ``k`` towards
    ``log p(x)``. ``chunk_size`` bounds how many of the ``k`` samples are held in
    memory at once (the result is identical up to rounding).
    """
    if k < 1:
        raise ValueError(f"iwae_bound needs k >= 1 importance samples, got {k}")
    if proposal.batch_shape == torch.Size():
        raise ValueError("iwae_bound needs a proposal with batch shape (B,) (one per data point); "
                         "got a proposal with empty batch shape. Use .expand((B,)) on it")
    chunk = k if chunk_size is None else max(1, chunk_size)
    parts = []
    for start in range(0, k, chunk):
        lw = importance_log_weights(log_joint_fn, proposal, min(chunk, k - start), generator=generator)
        parts.append(torch.logsumexp(lw, dim=0))
    return torch.logsumexp(torch.stack(parts), dim=0) - math.log(k)
