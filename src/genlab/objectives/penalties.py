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
    """One configured penalty: ``weight * PENALTIES[name](fn, real, fake, generator, **options)``."""

    def __init__(self, spec: dict[str, Any]):
        spec = dict(spec)
        name = spec.pop("name", None)
        if name not in PENALTIES:
            raise ValueError(f"unknown penalty {name!r}; choose one of {sorted(PENALTIES)} "
                             f"(e.g. penalty: [{{name: gp, weight: 10}}])")
        self.name = name
        self.weight = float(spec.pop("weight", 1.0))
        bad = [k for k in spec if k not in _OPTIONS[name]]
        if bad:
            raise ValueError(f"penalty {name!r}: unknown key {bad[0]!r}; valid keys: "
                             f"{', '.join(('name', 'weight') + _OPTIONS[name])}")
        self.options = {k: float(v) for k, v in spec.items()}

    def __call__(self, fn: CriticFn, real: Tensor, fake: Tensor,
                 generator: torch.Generator | None = None) -> Tensor:
        return self.weight * PENALTIES[self.name](fn, real, fake, generator, **self.options)

    def __repr__(self) -> str:
        return f"Penalty({self.name}, weight={self.weight}, {self.options})"
