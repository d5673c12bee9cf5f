"""Regularisers for critics, shared by every critic-based objective.

Each penalty is a config entry ``{name: ..., weight: ..., **options}`` in the
objective's ``penalty`` list and is added to the *critic's* loss. ``fn`` is the
scalar critic ``(B, *critic_in) -> (B,)`` on (possibly packed) inputs.

* ``gp``: two-sided gradient penalty on random interpolates of data and samples,
  ``E (||grad f(x_hat)|| - target)^2`` (WGAN-GP, Gulrajani et al. 2017, arXiv 1704.00028).
* ``gp-one-sided``: ``E max(0, ||grad f(x_hat)|| - target)^2`` (Petzka et al. 2017,
  arXiv 1709.08894; also in Gulrajani et al.).
* ``dragan``: two-sided penalty at perturbed data points
  ``x + alpha * c * std(x) * u``, ``u ~ U[0, 1]`` elementwise, ``alpha ~ U[0, 1]``
  (DRAGAN, Kodali et al. 2017, arXiv 1705.07215).
* ``r1`` / ``r2``: ``E ||grad f(x)||^2`` on data / on samples (Mescheder et al. 2018,
  arXiv 1801.04406; their ``gamma / 2`` is our ``weight``).

Every penalty also takes ``every: k`` (default 1): *lazy regularisation* (Karras et al.
2020, StyleGAN2, arXiv 1912.04958, section 4.1) computes the penalty on one critic step
in ``k`` only, with its weight multiplied by ``k`` so that its average pull is unchanged.
The double backward pass is the costly part of a penalised critic step, so ``every: 4``
makes such a step up to about 4 times cheaper in the penalty.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

CriticFn = Callable[[Tensor], Tensor]


def grad_norm(fn: CriticFn, x: Tensor) -> Tensor:
    """``||d fn(x)_i / d x_i||`` per sample, ``(B,)``, kept in the graph (double backprop)."""
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(x).sum(), x, create_graph=True)
    return g.flatten(1).norm(dim=1)


def _uniform_like(x: Tensor, generator: torch.Generator | None, per_sample: bool) -> Tensor:
    shape = (x.shape[0],) + (1,) * (x.dim() - 1) if per_sample else x.shape
    return torch.rand(shape, generator=generator, device=x.device, dtype=x.dtype)


def gp(fn: CriticFn, real: Tensor, fake: Tensor, generator: torch.Generator | None, *,
       target: float = 1.0) -> Tensor:
    n = min(len(real), len(fake))
    a = _uniform_like(real[:n], generator, per_sample=True)
    x_hat = a * real[:n].detach() + (1 - a) * fake[:n].detach()
    return ((grad_norm(fn, x_hat) - target) ** 2).mean()


def gp_one_sided(fn: CriticFn, real: Tensor, fake: Tensor, generator: torch.Generator | None, *,
                 target: float = 1.0) -> Tensor:
    n = min(len(real), len(fake))
    a = _uniform_like(real[:n], generator, per_sample=True)
    x_hat = a * real[:n].detach() + (1 - a) * fake[:n].detach()
    return (torch.relu(grad_norm(fn, x_hat) - target) ** 2).mean()


def dragan(fn: CriticFn, real: Tensor, fake: Tensor, generator: torch.Generator | None, *,
           c: float = 0.5, target: float = 1.0) -> Tensor:
    real = real.detach()
    delta = c * real.std() * _uniform_like(real, generator, per_sample=False)
    x_hat = real + _uniform_like(real, generator, per_sample=True) * delta
    return ((grad_norm(fn, x_hat) - target) ** 2).mean()


def r1(fn: CriticFn, real: Tensor, fake: Tensor, generator: torch.Generator | None) -> Tensor:
    return (grad_norm(fn, real) ** 2).mean()


def r2(fn: CriticFn, real: Tensor, fake: Tensor, generator: torch.Generator | None) -> Tensor:
    return (grad_norm(fn, fake) ** 2).mean()


PENALTIES: dict[str, Callable[..., Tensor]] = {
    "gp": gp, "gp-one-sided": gp_one_sided, "dragan": dragan, "r1": r1, "r2": r2,
}
_OPTIONS = {"gp": ("target",), "gp-one-sided": ("target",), "dragan": ("c", "target"), "r1": (), "r2": ()}


class Penalty:
    """One configured penalty: ``weight * PENALTIES[name](fn, real, fake, generator, **options)``,
    applied on critic steps ``0, every, 2 * every, ...`` with weight ``weight * every``."""

    def __init__(self, spec: dict[str, Any]):
        spec = dict(spec)
        name = spec.pop("name", None)
        if name not in PENALTIES:
            raise ValueError(f"unknown penalty {name!r}; choose one of {sorted(PENALTIES)} "
                             f"(e.g. penalty: [{{name: gp, weight: 10}}])")
        self.name = name
        self.weight = float(spec.pop("weight", 1.0))
        every = spec.pop("every", 1)
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"penalty {name!r}: 'every' must be a whole number >= 1 (apply the penalty on "
                             f"one critic step in 'every', with its weight times 'every'), got {every!r}")
        self.every = every
        bad = [k for k in spec if k not in _OPTIONS[name]]
        if bad:
            raise ValueError(f"penalty {name!r}: unknown key {bad[0]!r}; valid keys: "
                             f"{', '.join(('name', 'weight', 'every') + _OPTIONS[name])}")
        self.options = {k: float(v) for k, v in spec.items()}

    def __call__(self, fn: CriticFn, real: Tensor, fake: Tensor,
                 generator: torch.Generator | None = None) -> Tensor:
        return self.weight * self.every * PENALTIES[self.name](fn, real, fake, generator, **self.options)

    def due(self, critic_step: int) -> bool:
        """Whether this penalty is computed on critic step ``critic_step`` (counted from 0)."""
        return critic_step % self.every == 0

    def __repr__(self) -> str:
        return f"Penalty({self.name}, weight={self.weight}, every={self.every}, {self.options})"
