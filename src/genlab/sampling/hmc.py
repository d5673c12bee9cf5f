"""Hamiltonian Monte Carlo transitions (Neal 2011, "MCMC using Hamiltonian dynamics",
arXiv 1206.1901), batched over independent chains and stateless.

``hmc_step`` makes one Metropolis-adjusted transition of ``n_leapfrog`` leapfrog
steps with unit mass; it leaves ``exp(log_prob_fn)`` invariant for any fixed step
size. With ``n_leapfrog=1`` it is exactly MALA (Metropolis-adjusted Langevin).
Each chain may have its own step size (a tensor ``(N,)``).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor


class HMCResult(NamedTuple):
    """``z``: new states ``(N, *shape)``; ``accept_prob``: ``(N,)`` Metropolis
    acceptance probabilities ``min(1, exp(-dH))`` of the proposals."""

    z: Tensor
    accept_prob: Tensor


def log_prob_and_grad(log_prob_fn: Callable[[Tensor], Tensor], z: Tensor) -> tuple[Tensor, Tensor]:
    """``log_prob_fn(z)`` ``(N,)`` and its gradient w.r.t. ``z`` ``(N, *shape)``, both detached."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        lp = log_prob_fn(z)
        (grad,) = torch.autograd.grad(lp.sum(), z)
    return lp.detach(), grad.detach()


def _per_chain(step_size: Tensor | float, z: Tensor) -> Tensor:
    s = torch.as_tensor(step_size, dtype=z.dtype, device=z.device)
    return s.reshape(-1, *([1] * (z.dim() - 1))) if s.dim() else s


def leapfrog(z: Tensor, p: Tensor, grad: Tensor, log_prob_fn: Callable[[Tensor], Tensor],
             step_size: Tensor | float, n_steps: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``n_steps`` leapfrog steps from ``(z, p)`` with ``grad = d log_prob / dz`` at ``z``.

    Returns ``(z, p, log_prob, grad)`` at the end point.
    """
    eps = _per_chain(step_size, z)
    p = p + 0.5 * eps * grad
    for i in range(n_steps):
        z = z + eps * p
        lp, grad = log_prob_and_grad(log_prob_fn, z)
        p = p + (eps if i < n_steps - 1 else 0.5 * eps) * grad
    return z, p, lp, grad


def hmc_step(z: Tensor, log_prob_fn: Callable[[Tensor], Tensor], *, step_size: Tensor | float,
             n_leapfrog: int = 5, generator: torch.Generator | None = None) -> HMCResult:
    """One HMC transition for each of ``N`` chains.

    ``z``: ``(N, *shape)``; ``log_prob_fn``: ``(N, *shape) -> (N,)`` unnormalised
    log density; ``step_size``: float or ``(N,)``. Non-finite proposals are rejected.
    """
    if n_leapfrog < 1:
        raise ValueError(f"hmc_step needs n_leapfrog >= 1, got {n_leapfrog}")
    lp0, grad0 = log_prob_and_grad(log_prob_fn, z)
    p0 = torch.randn(z.shape, generator=generator, dtype=z.dtype, device=z.device)
    z1, p1, lp1, _ = leapfrog(z, p0, grad0, log_prob_fn, step_size, n_leapfrog)
    kin0 = 0.5 * p0.flatten(1).pow(2).sum(1)
    kin1 = 0.5 * p1.flatten(1).pow(2).sum(1)
    log_accept = (lp1 - kin1) - (lp0 - kin0)
    log_accept = torch.where(torch.isfinite(log_accept), log_accept, torch.full_like(log_accept, -torch.inf))
    accept_prob = log_accept.clamp(max=0.0).exp()
    u = torch.rand(accept_prob.shape, generator=generator, dtype=z.dtype, device=z.device)
    keep = (u < accept_prob).reshape(-1, *([1] * (z.dim() - 1)))
    return HMCResult(torch.where(keep, z1.detach(), z.detach()), accept_prob)
