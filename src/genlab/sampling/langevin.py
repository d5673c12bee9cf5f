"""Langevin samplers, stateless and batched.

* :func:`langevin`: unadjusted Langevin dynamics (ULA)
  ``x <- x + (eps / 2) * score(x) + sqrt(eps) * noise`` for ``n_steps`` steps; its
  stationary law approaches ``p`` as ``eps -> 0`` (Welling & Teh 2011, SGLD; Roberts
  & Tweedie 1996). Metropolis-adjusted Langevin (MALA) is
  :func:`genlab.sampling.hmc.hmc_step` with ``n_leapfrog=1``.
* :func:`annealed_langevin`: the sampler of noise-conditional score networks
  (Song & Ermon 2019, arXiv 1907.05600, Algorithm 1): for noise levels
  ``sigma_1 > ... > sigma_L`` run ``steps_per_level`` Langevin steps with
  ``alpha_i = eps * sigma_i^2 / sigma_L^2`` using ``score(x, sigma_i)``.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm


def langevin(x: Tensor, score_fn: Callable[[Tensor], Tensor], *, step_size: float, n_steps: int,
             generator: torch.Generator | None = None, progress: bool = False) -> Tensor:
    """ULA from ``x`` ``(N, *event_shape)``; ``score_fn(x) = grad log p(x)``, same shape."""
    if step_size <= 0 or n_steps < 0:
        raise ValueError(f"langevin needs step_size > 0 and n_steps >= 0, got {step_size}, {n_steps}")
    x = x.detach()
    for _ in tqdm(range(n_steps), desc="Langevin", leave=False, disable=not progress):
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = (x + 0.5 * step_size * score_fn(x) + math.sqrt(step_size) * noise).detach()
    return x


def annealed_langevin(x: Tensor, score_fn: Callable[[Tensor, Tensor], Tensor], sigmas: Sequence[float], *,
                      eps: float = 2e-5, steps_per_level: int = 100,
                      generator: torch.Generator | None = None, progress: bool = False) -> Tensor:
    """Annealed Langevin dynamics (NCSN). ``x``: ``(N, *event_shape)`` initial points;
    ``score_fn(x, sigma)`` with ``sigma`` ``(N,)``; ``sigmas`` decreasing."""
    sig = [float(s) for s in sigmas]
    if any(a <= b for a, b in zip(sig, sig[1:])) or sig[-1] <= 0:
        raise ValueError(f"annealed_langevin needs strictly decreasing positive sigmas, got {sig}")
    for s in tqdm(sig, desc="annealed Langevin", leave=False, disable=not progress):
        alpha = eps * s**2 / sig[-1] ** 2
        level = torch.full((x.shape[0],), s, dtype=x.dtype, device=x.device)
        x = langevin(x, lambda u: score_fn(u, level), step_size=alpha, n_steps=steps_per_level,
                     generator=generator)
    return x
