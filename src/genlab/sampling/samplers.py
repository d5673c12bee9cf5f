"""The sampler axis: how samples are drawn from a trained model, chosen in config.

A sampler is stateless: ``sampler(model, n, *, context=None, generator=None)``
returns ``(n, *event_shape)`` samples in **model space**. It declares what it
needs in ``requires`` (capability classes; a tuple inside ``requires`` means
"any of these"), checked before training like an objective's. Its constructor's
keyword arguments are the config keys of the ``sampler:`` section::

    sampler: {name: ancestral}                                  # default: model.sample
    sampler: {name: langevin, steps: 500, step_size: 1.0e-3}    # score or energy models
    sampler: {name: annealed_langevin, sigma_max: 1.0, sigma_min: 0.01, levels: 10}

State that must persist between calls (an EBM's replay buffer) belongs to the
objective, not here.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar, Literal

import torch
from torch import Tensor

from genlab.models.base import EnergyModel, GenerativeModel, ScoreModel
from genlab.sampling.langevin import annealed_langevin, langevin


class Sampler(ABC):
    """Base of every sampler."""

    requires: ClassVar[tuple] = (GenerativeModel,)

    def __call__(self, model: GenerativeModel, n: int, *, context: Tensor | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
        """``n`` samples ``(n, *event_shape)`` in model space; ``context`` ``(n,)`` labels for
        conditional models."""
        context = model.check_context(context, n)
        return self.draw(model, n, context=context, generator=generator)

    @abstractmethod
    def draw(self, model: GenerativeModel, n: int, *, context: Tensor | None,
             generator: torch.Generator | None) -> Tensor:
        """What :meth:`__call__` does once ``context`` is checked."""


class Ancestral(Sampler):
    """The model's own exact sampler, ``model.sample`` (generators, flows, autoregressive
    and latent-variable models)."""

    def draw(self, model: GenerativeModel, n: int, *, context: Tensor | None,
             generator: torch.Generator | None) -> Tensor:
        return model.sample(n, context=context, generator=generator)


def _init(model: GenerativeModel, n: int, init: str, scale: float, generator: torch.Generator | None) -> Tensor:
    dtype = next(model.parameters(), torch.empty(0)).dtype
    dev = generator.device if generator is not None else model.device
    shape = (n, *model.event_shape)
    u = (torch.rand(shape, generator=generator, device=dev, dtype=dtype) * 2 - 1 if init == "uniform"
         else torch.randn(shape, generator=generator, device=dev, dtype=dtype))
    return (scale * u).to(model.device)


def _score_fn(model: GenerativeModel, sigma: float, context: Tensor | None):
    """``x -> grad log p(x)``: the model's score at noise ``sigma``, or ``-grad E`` for an EBM."""
    if isinstance(model, ScoreModel):
        def score(x: Tensor) -> Tensor:
            level = torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device)
            with torch.no_grad():
                return model.score(x, level, context=context)
        return score

    def energy_score(x: Tensor) -> Tensor:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            e = model.energy(x, context=context).sum()
            return -torch.autograd.grad(e, x)[0]
    return energy_score


class Langevin(Sampler):
    """Unadjusted Langevin dynamics ``x <- x + (step_size/2) grad log p(x) + sqrt(step_size) noise``
    for ``steps`` steps from ``init`` (uniform on ``[-init_scale, init_scale]`` or normal
    with std ``init_scale``). Score models are queried at noise level ``sigma``; energy
    models give ``grad log p = -grad E``. Step size and noise are tied (the exact ULA);
    the stationary law approaches ``p`` as ``step_size -> 0``."""

    requires: ClassVar[tuple] = ((ScoreModel, EnergyModel),)

    def __init__(self, *, steps: int = 200, step_size: float = 1e-3, sigma: float = 0.01,
                 init: Literal["uniform", "normal"] = "uniform", init_scale: float = 1.0):
        if steps < 1 or step_size <= 0 or sigma <= 0 or init_scale <= 0:
            raise ValueError(f"langevin needs steps >= 1 and positive step_size, sigma, init_scale; got "
                             f"steps={steps}, step_size={step_size}, sigma={sigma}, init_scale={init_scale}")
        self.steps, self.step_size, self.sigma, self.init, self.init_scale = steps, step_size, sigma, init, init_scale

    def draw(self, model: GenerativeModel, n: int, *, context: Tensor | None,
             generator: torch.Generator | None) -> Tensor:
        x = _init(model, n, self.init, self.init_scale, generator)
        return langevin(x, _score_fn(model, self.sigma, context), step_size=self.step_size, n_steps=self.steps,
                        generator=generator)


class AnnealedLangevin(Sampler):
    """Annealed Langevin dynamics of NCSN (Song & Ermon 2019, arXiv 1907.05600, Algorithm 1):
    ``levels`` geometric noise levels from ``sigma_max`` to ``sigma_min``, ``steps_per_level``
    steps each with step ``eps * sigma_i^2 / sigma_min^2`` (the paper's rule)."""

    requires: ClassVar[tuple] = (ScoreModel,)

    def __init__(self, *, sigma_max: float = 1.0, sigma_min: float = 0.01, levels: int = 10,
                 steps_per_level: int = 100, eps: float = 2e-5,
                 init: Literal["uniform", "normal"] = "uniform", init_scale: float = 1.0):
        if not sigma_max > sigma_min > 0 or levels < 2 or steps_per_level < 1 or eps <= 0:
            raise ValueError(f"annealed_langevin needs sigma_max > sigma_min > 0, levels >= 2, steps_per_level >= 1 "
                             f"and eps > 0; got {sigma_max}, {sigma_min}, {levels}, {steps_per_level}, {eps}")
        ratio = math.log(sigma_min / sigma_max) / (levels - 1)
        self.sigmas = [sigma_max * math.exp(ratio * i) for i in range(levels)]
        self.steps_per_level, self.eps, self.init, self.init_scale = steps_per_level, eps, init, init_scale

    def draw(self, model: GenerativeModel, n: int, *, context: Tensor | None,
             generator: torch.Generator | None) -> Tensor:
        x = _init(model, n, self.init, self.init_scale, generator)

        def score(u: Tensor, sigma: Tensor) -> Tensor:
            with torch.no_grad():
                return model.score(u, sigma, context=context)
        return annealed_langevin(x, score, self.sigmas, eps=self.eps, steps_per_level=self.steps_per_level,
                                 generator=generator)
