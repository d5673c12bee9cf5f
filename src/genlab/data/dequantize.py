"""Dequantisation of discrete data and the exact bits/dim bookkeeping.

Discrete data (``spec.levels = L``) holds integers ``k in {0..L-1}^D`` in data
space; models see ``x = (k - shift) / scale`` (model space). A continuous density
``p_Y`` on model space is turned into a probability mass on the integers by
giving each integer the unit bin ``[k - 1/2, k + 1/2)`` in data space:

* uniform dequantisation (Theis et al. 2016, arXiv 1511.01844): ``u = k + v - 1/2``,
  ``v ~ U[0, 1)^D``, i.e. ``y = x + (v - 1/2) / scale`` in model space;
* the data-space density is ``p_U(u) = p_Y(y) * scale^{-D}`` (change of variables),
  so ``log P(k) = log E_v p_U(u) >= E_v[log p_Y(y)] - D log|scale|``;
* with ``K`` samples, ``log P(k) >= E log (1/K sum_i p_U(u_i))`` (importance-weighted,
  tighter as ``K`` grows, exact as ``K -> inf``);
* variational dequantisation (Ho et al. 2019, Flow++, arXiv 1902.00275):
  ``v ~ q(v | k)`` on ``[0, 1)^D`` gives ``log P(k) >= E_q[log p_Y(y) - D log|scale| - log q(v|k)]``.

Bits/dim is ``-log P(k) / (D ln 2)``. A model uniform on the model-space box
``[-1 - 1/(2 scale), 1 + 1/(2 scale)]^D`` (width ``L / scale`` when
``scale = (L-1)/2``) has ``log P(k) = -D log L``: exactly ``log2 L`` bits/dim.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.data.base import DataSpec
from genlab.nets.mlp import MLP


def require_levels(spec: DataSpec) -> int:
    if spec.levels is None:
        raise ValueError(f"{spec.name} is continuous (levels=None); dequantisation needs discrete data")
    return int(spec.levels)


def log_scale_offset(spec: DataSpec) -> float:
    """``D * log|scale|``: subtract from a model-space log density to get data-space units."""
    return spec.dim * math.log(abs(spec.scale))


def uniform_dequantize(x: Tensor, spec: DataSpec, generator: torch.Generator | None = None) -> Tensor:
    """``x``: model-space levels ``(B, *event)`` -> ``x + (v - 1/2) / scale``, ``v ~ U[0,1)``."""
    require_levels(spec)
    v = torch.rand(x.shape, generator=generator, device="cpu" if generator is None else generator.device,
                   dtype=x.dtype).to(x.device)
    return x + (v - 0.5) / spec.scale


def to_data_log_density(log_p_model: Tensor, spec: DataSpec | None, *, discrete: bool) -> Tensor:
    """Model-space log density ``(B,)`` -> data space: subtract ``D log|scale|`` unless the
    values are probability masses (``discrete``) or there is no spec."""
    return log_p_model if discrete or spec is None else log_p_model - log_scale_offset(spec)


def data_log_prob(log_prob: Callable[[Tensor], Tensor], x: Tensor, spec: DataSpec, *, discrete: bool,
                  dequantizer: "VariationalDequantizer | None" = None, samples: int = 1,
                  generator: torch.Generator | None = None) -> Tensor:
    """The data-space log-likelihood ``(B,)`` in nats of model-space data ``x`` ``(B, *event)``,
    the one place that branches on the kind of model and data (objectives and metrics call it):

    * ``discrete`` (a probability mass over the levels): ``log_prob(x)``;
    * continuous data (``spec.levels`` None): ``log_prob(x) - D log|scale|``;
    * discrete data, continuous model: with ``dequantizer``, ``log p(y) - D log|scale| - log q(v|k)``;
      otherwise the ``samples``-draw uniformly dequantised importance-weighted bound
      (``samples = 1``: the usual bound).

    ``log_prob`` is the model's ``log_prob`` with any context already bound.
    """
    if discrete:
        return log_prob(x)
    if spec.levels is None:
        return to_data_log_density(log_prob(x), spec, discrete=False)
    if dequantizer is not None:
        y, log_q = dequantizer.dequantize(x, generator)
        return to_data_log_density(log_prob(y), spec, discrete=False) - log_q
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    draws = torch.stack([log_prob(uniform_dequantize(x, spec, generator)) for _ in range(samples)])
    return to_data_log_density(torch.logsumexp(draws, 0) - math.log(samples), spec, discrete=False)


def bits_per_dim(log_p_data: Tensor, spec: DataSpec) -> Tensor:
    """``(B,)`` data-space log-likelihoods in nats -> ``(B,)`` bits/dim."""
    return -log_p_data / (spec.dim * math.log(2))


class VariationalDequantizer(nn.Module):
    """``q(v | k)``: a logit-normal on ``[0, 1)^D`` whose mean and log-std come from an
    MLP on the model-space levels ``x``: ``v = sigmoid(mu(x) + sigma(x) * eps)``.

    ``log q(v|x) = log N(eps) - log sigma - log sigmoid'(h)``, summed over dims, with
    ``h = logit(v)``. Starts at ``mu = 0, sigma = 1``.
    """

    def __init__(self, *, spec: DataSpec, hidden: int = 128, depth: int = 2):
        super().__init__()
        self.spec = spec
        self.net = MLP(in_shape=spec.event_shape, out_features=2 * spec.dim, hidden=hidden, depth=depth)
        nn.init.zeros_(self.net.net[-1].weight), nn.init.zeros_(self.net.net[-1].bias)

    def _mu_log_sigma(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.net(x).reshape(x.shape[0], 2, *x.shape[1:])
        return h[:, 0], 3.0 * torch.tanh(h[:, 1] / 3.0)

    @staticmethod
    def _log_q(eps: Tensor, log_sigma: Tensor, h: Tensor) -> Tensor:
        log_deriv = -F.softplus(-h) - F.softplus(h)  # log sigmoid'(h)
        lq = -0.5 * eps**2 - 0.5 * math.log(2 * math.pi) - log_sigma - log_deriv
        return lq.reshape(lq.shape[0], -1).sum(1)

    def sample(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``x (B, *event)`` -> ``(v, log q(v|x) (B,))``, ``v`` in ``(0, 1)^D``."""
        mu, log_sigma = self._mu_log_sigma(x)
        dev = "cpu" if generator is None else generator.device
        eps = torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype).to(x.device)
        h = mu + log_sigma.exp() * eps
        return torch.sigmoid(h), self._log_q(eps, log_sigma, h)

    def log_density(self, v: Tensor, x: Tensor) -> Tensor:
        """``log q(v | x)`` for ``v`` in ``(0, 1)^D``: ``(B,)``."""
        mu, log_sigma = self._mu_log_sigma(x)
        h = torch.logit(v)
        return self._log_q((h - mu) / log_sigma.exp(), log_sigma, h)

    def dequantize(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``x`` model-space levels -> ``(y = x + (v - 1/2)/scale, log q(v|x))``."""
        v, log_q = self.sample(x, generator)
        return x + (v - 0.5) / self.spec.scale, log_q
