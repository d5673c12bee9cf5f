"""Annealed importance sampling (Neal 1998, arXiv physics/9803008) along the geometric
path from a prior to a posterior, as used to evaluate decoder-based models by
Wu et al. 2017 (arXiv 1611.04273).

Intermediate targets, for ``0 = beta_0 < beta_1 < ... < beta_K = 1``::

    f_t(z) = p(z) * p(x | z) ** beta_t

Chains start at exact prior samples, make one HMC transition leaving ``f_t``
invariant at each ``t`` and accumulate the log weight
``sum_t (beta_t - beta_{t-1}) log p(x | z_{t-1})``. ``exp(log_w)`` is an unbiased
estimate of ``p(x) = ∫ p(z) p(x|z) dz``, so ``log_mean_exp`` over chains is a
stochastic *lower* bound on ``log p(x)`` (Jensen) that tightens with more steps
and chains.

Run with a *decreasing* schedule from an exact posterior sample (data simulated
from the model) the same weights estimate ``1 / p(x)``, giving a stochastic
*upper* bound: bidirectional Monte Carlo (Grosse et al. 2015, arXiv 1511.02543),
see :func:`reverse_ais_upper_bound`.

Step sizes: Wu et al. adapt them during the run towards an acceptance rate of
0.65. A chain whose kernel depends on its own past no longer gives unbiased
weights (we measured estimates *above* the exact log-likelihood that way), so here
a pilot run (one chain per data point) adapts them and the real run uses the
pilot's step size at each temperature, fixed (:func:`tuned_ais`).
"""

from __future__ import annotations

from typing import Callable, Literal, NamedTuple

import torch
from torch import Tensor
from tqdm.auto import tqdm

from genlab.sampling.hmc import hmc_step
from genlab.sampling.importance import log_mean_exp

LogFn = Callable[[Tensor], Tensor]


def annealing_schedule(n_steps: int, kind: Literal["linear", "sigmoid", "geometric"] = "sigmoid", *,
                       sharpness: float = 4.0, start: float = 1e-4) -> Tensor:
    """Inverse temperatures ``beta_0 = 0 < ... < beta_K = 1``: ``(n_steps + 1,)`` float64.

    ``sigmoid``: ``sigmoid(sharpness * (2t/K - 1))`` rescaled to [0, 1] (BDMC);
    ``geometric``: ``beta_1 = start`` then geometric spacing up to 1.
    """
    if n_steps < 1:
        raise ValueError(f"an annealing schedule needs n_steps >= 1, got {n_steps}")
    t = torch.linspace(0.0, 1.0, n_steps + 1, dtype=torch.float64)
    if kind == "linear":
        return t
    if kind == "sigmoid":
        s = torch.sigmoid(sharpness * (2.0 * t - 1.0))
        return (s - s[0]) / (s[-1] - s[0])
    if kind == "geometric":
        if n_steps == 1:
            return t
        return torch.cat([torch.zeros(1, dtype=torch.float64),
                          torch.logspace(torch.log10(torch.tensor(start)).item(), 0.0, n_steps,
                                         dtype=torch.float64)])
    raise ValueError(f"unknown annealing schedule {kind!r}; choose linear, sigmoid or geometric")


class AISResult(NamedTuple):
    """``log_w``: ``(N,)`` log importance weights per chain; ``z``: final states;
    ``accept_rate``: mean HMC acceptance probability over chains and steps;
    ``step_sizes``: ``(K, N)`` step size each chain used at each transition."""

    log_w: Tensor
    z: Tensor
    accept_rate: float
    step_sizes: Tensor


def anneal(z: Tensor, log_prior_fn: LogFn, log_lik_fn: LogFn, betas: Tensor, *, n_leapfrog: int = 5,
           step_size: float | Tensor = 0.05, jitter: float = 0.5, adapt: bool = False,
           adapt_rate: float = 0.1, target_accept: float = 0.65, generator: torch.Generator | None = None,
           progress: bool = False) -> AISResult:
    """Run ``N`` AIS chains from states ``z`` ``(N, *latent_shape)`` along ``betas`` ``(K + 1,)``.

    ``log_prior_fn`` and ``log_lik_fn`` map ``(N, *latent_shape)`` to ``(N,)``.
    ``z`` must be exact samples of the distribution at ``betas[0]`` (the prior for
    an increasing schedule). ``step_size``: a float, or a fixed ``(K, N)`` schedule;
    each transition multiplies it by ``U(1 - jitter, 1 + jitter)`` (random step
    sizes avoid near-periodic HMC trajectories on near-Gaussian targets).

    ``adapt=True`` adapts each chain's step size to its own acceptance (multiplying
    by ``1 +- adapt_rate``); the kernels then depend on the chain's past and the
    weights are **no longer unbiased**: use it only for a pilot run whose
    ``step_sizes`` are then fixed for the real run (as :func:`tuned_ais` does).
    """
    betas = betas.to(dtype=z.dtype, device=z.device)
    k, n = len(betas) - 1, z.shape[0]
    fixed = torch.is_tensor(step_size) and step_size.dim() == 2
    if fixed and tuple(step_size.shape) != (k, n):
        raise ValueError(f"anneal: a step-size schedule must have shape (K, N) = ({k}, {n}), "
                         f"got {tuple(step_size.shape)}")
    eps = torch.full((n,), float(step_size), dtype=z.dtype, device=z.device) if not fixed else None
    log_w = torch.zeros(n, dtype=z.dtype, device=z.device)
    used, acc_sum = [], 0.0
    for t in tqdm(range(1, k + 1), desc="AIS", leave=False, disable=not progress):
        with torch.no_grad():
            log_w = log_w + (betas[t] - betas[t - 1]) * log_lik_fn(z)
        beta = betas[t]

        def target(u: Tensor, beta: Tensor = beta) -> Tensor:
            return log_prior_fn(u) + beta * log_lik_fn(u)

        eps_t = step_size[t - 1].to(z) if fixed else eps
        jit = 1.0 + jitter * (2 * torch.rand(n, generator=generator, dtype=z.dtype, device=z.device) - 1)
        z, acc = hmc_step(z, target, step_size=eps_t * jit, n_leapfrog=n_leapfrog, generator=generator)
        used.append(eps_t)
        acc_sum += float(acc.mean())
        if adapt and not fixed:
            eps = eps * torch.where(acc > target_accept, 1.0 + adapt_rate, 1.0 - adapt_rate).to(eps.dtype)
    return AISResult(log_w, z, acc_sum / max(1, k), torch.stack(used))


def tuned_ais(z0: Tensor, z_pilot: Tensor, log_prior_fn: LogFn, log_lik_fn: LogFn, pilot_log_lik_fn: LogFn,
              n_chains: int, betas: Tensor, *, step_size: float = 0.05, progress: bool = False,
              **kwargs) -> AISResult:
    """AIS whose step sizes were tuned by a pilot run (so the estimate stays unbiased).

    ``z_pilot``: ``(B, *latent_shape)`` prior samples, one pilot chain per data
    point, adapted towards ``target_accept``; ``z0``: ``(B * n_chains, ...)`` fresh
    prior samples for the real run (layout as in :func:`ais_log_marginal`), which
    uses the pilot's step size at each temperature, fixed. ``pilot_log_lik_fn`` is
    the log-likelihood with one row per data point, ``log_lik_fn`` with ``n_chains``.
    """
    pilot = anneal(z_pilot, log_prior_fn, pilot_log_lik_fn, betas, step_size=step_size, adapt=True,
                   progress=progress, **kwargs)
    schedule = pilot.step_sizes.repeat_interleave(n_chains, dim=1)
    return anneal(z0, log_prior_fn, log_lik_fn, betas, step_size=schedule, adapt=False,
                  progress=progress, **kwargs)


def ais_log_marginal(z0: Tensor, log_prior_fn: LogFn, log_lik_fn: LogFn, n_chains: int, *,
                     n_steps: int = 500, schedule: Literal["linear", "sigmoid", "geometric"] = "sigmoid",
                     z_pilot: Tensor | None = None, pilot_log_lik_fn: LogFn | None = None,
                     **kwargs) -> tuple[Tensor, float]:
    """AIS estimate of ``log p(x)`` for ``B`` data points with ``n_chains`` each.

    ``z0``: ``(B * n_chains, *latent_shape)`` prior samples, chains of data point
    ``b`` in rows ``b * n_chains ... (b + 1) * n_chains - 1`` (as given by
    ``x.repeat_interleave(n_chains, 0)``); the log-likelihood function must use the
    same layout. With ``z_pilot`` ``(B, ...)`` and ``pilot_log_lik_fn`` (one row per
    data point) step sizes are tuned by a pilot run (:func:`tuned_ais`). Returns ``(log p_hat (B,), accept_rate)``; ``kwargs`` go to
    :func:`anneal`.
    """
    betas = annealing_schedule(n_steps, schedule)
    if z_pilot is None:
        res = anneal(z0, log_prior_fn, log_lik_fn, betas, **kwargs)
    else:
        if pilot_log_lik_fn is None:
            raise ValueError("ais_log_marginal: z_pilot needs pilot_log_lik_fn (one row per data point)")
        res = tuned_ais(z0, z_pilot, log_prior_fn, log_lik_fn, pilot_log_lik_fn, n_chains, betas, **kwargs)
    return log_mean_exp(res.log_w.reshape(-1, n_chains), dim=1), res.accept_rate


def reverse_ais_upper_bound(z_post: Tensor, log_prior_fn: LogFn, log_lik_fn: LogFn, n_chains: int, *,
                            n_steps: int = 500,
                            schedule: Literal["linear", "sigmoid", "geometric"] = "sigmoid",
                            **kwargs) -> tuple[Tensor, float]:
    """BDMC upper bound on ``log p(x)``: reverse AIS from *exact posterior samples*.

    Valid only when ``z_post`` ``(B * n_chains, *latent_shape)`` are exact samples of
    ``p(z | x)``, e.g. the codes that generated simulated data ``x``. Returns
    ``(upper bound (B,), accept_rate)``.
    """
    betas = annealing_schedule(n_steps, schedule).flip(0)
    res = anneal(z_post, log_prior_fn, log_lik_fn, betas, **kwargs)
    return -log_mean_exp(res.log_w.reshape(-1, n_chains), dim=1), res.accept_rate
