"""Normalizing flows on spheres S^n through stereographic projection.

Gemici, Rezende & Mohamed 2016, "Normalizing Flows on Riemannian Manifolds",
arXiv 1611.02304.

Points ``x`` on S^n are unit vectors in R^{n+1} (``event_shape (n+1,)``). Stereographic
projection from the north pole ``e_{n+1}`` is a homeomorphism ``S^n \\ {pole} -> R^n``::

    P(x) = x_{1:n} / (1 - x_{n+1}),     P^{-1}(u) = (2u, |u|^2 - 1) / (|u|^2 + 1).

``P^{-1}`` is conformal with factor ``2 / (1 + |u|^2)``, so the surface measure is
``dS = (2 / (1 + |u|^2))^n du``. The model is ``x = P^{-1}(T^{-1}(P(z)))`` for a
bijection ``T`` of R^n (data -> noise) and a base ``z`` on S^n, and every density and
log-det here is with respect to the sphere's surface measure::

    log p(x) = log p_base(z) + log|det dT/du| + n log(1 + |u|^2) - n log(1 + |u_0|^2),

with ``u = P(x)``, ``u_0 = T(u)``, ``z = P^{-1}(u_0)``. ``base="uniform"`` (the uniform
density ``1/|S^n|``: in R^n a heavy-tailed density, so mass can reach the pole) or
``"normal"`` (the image of ``N(0, I_n)`` under ``P^{-1}``).

``T`` is a stack of coupling layers with a monotone element-wise map
``f(t) = e^s t + b + sum_j c_j tanh(e^{d_j} t + e_j)`` (``c_j > 0``) whose parameters an
MLP computes from the other coordinates (``asinh``-squashed); on S^1 (``n = 1``) the
parameters are free (the MLP sees zeros). ``T`` is explicit, so ``log_prob`` is cheap;
``T^{-1}`` (sampling) uses bisection plus one differentiable Newton step.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.kwargs import PositiveInt
from genlab.data.base import DataSpec
from genlab.models.base import Flow
from genlab.nets.mlp import MLP


def stereographic(x: Tensor) -> Tensor:
    """``(B, n+1)`` unit vectors -> ``(B, n)``; two equivalent formulas for accuracy near either pole."""
    head, last = x[:, :-1], x[:, -1:]
    use_south = last <= 0  # each formula only where its denominator is >= 1 or >= |head|^2 > 0
    south = head / torch.where(use_south, 1 - last, torch.ones_like(last))
    sq = (head * head).sum(1, keepdim=True)
    north = head * (1 + last) / torch.where(use_south, torch.ones_like(sq), sq)
    return torch.where(use_south, south, north)


def inverse_stereographic(u: Tensor) -> Tensor:
    """``(B, n) -> (B, n+1)`` unit vectors."""
    sq = (u * u).sum(1, keepdim=True)
    return torch.cat([2 * u, sq - 1], 1) / (sq + 1)


def log_conformal(u: Tensor) -> Tensor:
    """``log dS/du = n log(2 / (1 + |u|^2))`` of ``P^{-1}`` at ``u: (B, n)`` -> ``(B,)``."""
    return u.shape[1] * (math.log(2.0) - torch.log1p((u * u).sum(1)))


def log_sphere_area(n: int) -> float:
    """``log |S^n| = log(2 pi^{(n+1)/2} / Gamma((n+1)/2))``."""
    return math.log(2.0) + 0.5 * (n + 1) * math.log(math.pi) - math.lgamma(0.5 * (n + 1))


def _log_sech2(t: Tensor) -> Tensor:
    a = t.abs()
    return 2 * (math.log(2.0) - a - torch.log1p(torch.exp(-2 * a)))


class _Constant(nn.Module):
    """``(B, ...) -> (B, features)``: a learned vector, randomly initialised so that the
    tanh terms of the monotone map start different."""

    def __init__(self, features: int):
        super().__init__()
        self.value = nn.Parameter(0.5 * torch.randn(features))

    def forward(self, x: Tensor) -> Tensor:
        return self.value.expand(x.shape[0], -1)


class MonotoneCoupling(nn.Module):
    """``(B, n)``: coordinates where ``mask`` is True go through the monotone map ``f``
    whose parameters depend on the other coordinates; the rest pass unchanged."""

    def __init__(self, n: int, mask: Tensor, *, hidden: int, n_tanh: int):
        super().__init__()
        self.n, self.k = n, n_tanh
        self.register_buffer("mask", mask.clone())
        out = n * (2 + 3 * n_tanh)
        if bool(mask.all()):  # nothing to condition on (S^1): free parameters
            self.net: nn.Module = _Constant(out)
        else:
            self.net = MLP(in_shape=(n,), out_features=out, hidden=hidden, depth=2, activation="tanh")

    def _params(self, u: Tensor) -> tuple[Tensor, ...]:
        h = self.net(torch.asinh(u) * (~self.mask)).reshape(u.shape[0], self.n, 2 + 3 * self.k)
        s = 3 * torch.tanh(h[..., 0] / 3)
        b = h[..., 1]
        raw_c, raw_d, e = h[..., 2:2 + self.k], h[..., 2 + self.k:2 + 2 * self.k], h[..., 2 + 2 * self.k:]
        return s, b, F.softplus(raw_c - 3.0), 3 * torch.tanh(raw_d / 3), e

    @staticmethod
    def _map(t: Tensor, s: Tensor, b: Tensor, c: Tensor, d: Tensor, e: Tensor) -> tuple[Tensor, Tensor]:
        """``f(t)`` and ``log f'(t)``, element-wise over ``(B, n)``."""
        arg = d.exp() * t[..., None] + e
        y = s.exp() * t + b + (c * torch.tanh(arg)).sum(-1)
        terms = torch.cat([s[..., None], torch.log(c) + d + _log_sech2(arg)], -1)
        return y, torch.logsumexp(terms, -1)

    def to_noise(self, u: Tensor) -> tuple[Tensor, Tensor]:
        params = self._params(u)
        y, dlog = self._map(u, *params)
        return torch.where(self.mask, y, u), (dlog * self.mask).sum(1)

    def to_data(self, y: Tensor) -> Tensor:
        """Invert: conditioning coordinates are unchanged, so the parameters are known."""
        params = self._params(y)
        s, b, c = params[0], params[1], params[2]
        spread = c.sum(-1)
        with torch.no_grad():
            lo, hi = (y - b - spread) * torch.exp(-s), (y - b + spread) * torch.exp(-s)
            for _ in range(100 if y.dtype == torch.float64 else 60):
                mid = 0.5 * (lo + hi)
                above = self._map(mid, *(p.detach() for p in params))[0] > y
                hi, lo = torch.where(above, mid, hi), torch.where(above, lo, mid)
            t0 = 0.5 * (lo + hi)
        f0, dlog = self._map(t0, *params)
        t = t0 - (f0 - y) * torch.exp(-dlog)  # Newton step: exact value, implicit gradient
        return torch.where(self.mask, t, y)


class SphereFlow(Flow):
    """A flow on S^n (arXiv 1611.02304) for ``DataSpec(kind="sphere", event_shape=(n+1,))``.

    ``forward_and_log_det`` / ``inverse_and_log_det`` map S^n to S^n; their log-dets are
    Riemannian (surface-measure) volume changes. ``log_prob`` is w.r.t. surface measure.
    """

    def __init__(self, *, data_spec: DataSpec, layers: PositiveInt = 6, hidden: PositiveInt = 64, n_tanh: int = 4,
                 base: Literal["uniform", "normal"] = "uniform"):
        super().__init__()
        if data_spec.kind != "sphere" or len(data_spec.event_shape) != 1 or data_spec.event_shape[0] < 2:
            raise ValueError(f"sphere_flow needs DataSpec(kind='sphere', event_shape=(n+1,)) with n >= 1; "
                             f"{data_spec.name} has kind {data_spec.kind!r}, shape {data_spec.event_shape}. "
                             f"Use a vMF dataset such as vmf_s2")
        if base not in ("uniform", "normal"):
            raise ValueError(f"base must be 'uniform' or 'normal', got {base!r}")
        self.event_shape = torch.Size(data_spec.event_shape)
        self.n, self.base = data_spec.event_shape[0] - 1, base
        idx = torch.arange(self.n)
        masks = [torch.ones(self.n, dtype=torch.bool) if self.n == 1 else (idx % 2 == i % 2) for i in range(layers)]
        self.couplings = nn.ModuleList(MonotoneCoupling(self.n, m, hidden=hidden, n_tanh=n_tanh) for m in masks)

    def _check(self, x: Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.n + 1:
            raise ValueError(f"SphereFlow expects (B, {self.n + 1}) unit vectors, got {tuple(x.shape)}")
        err = (x.norm(dim=1) - 1).abs().max().item() if len(x) else 0.0
        if err > 1e-3:
            raise ValueError(f"SphereFlow inputs must lie on the unit sphere S^{self.n}; a norm is off by {err:.3g}. "
                             f"Normalise with x / x.norm(dim=1, keepdim=True)")

    def base_log_prob(self, z: Tensor) -> Tensor:
        """``(B, n+1)`` points on S^n -> ``(B,)`` base log density (surface measure)."""
        if self.base == "uniform":
            return z.new_full((z.shape[0],), -log_sphere_area(self.n))
        u = stereographic(z)
        return -0.5 * (u * u).sum(1) - 0.5 * self.n * math.log(2 * math.pi) - log_conformal(u)

    def inverse_and_log_det(self, x: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Data -> base on S^n: ``(B, n+1) -> (z, log dS_z/dS_x (B,))``."""
        self.check_context(context, len(x))
        self._check(x)
        u = stereographic(x)
        h, total = u, u.new_zeros(u.shape[0])
        for layer in self.couplings:
            h, ld = layer.to_noise(h)
            total = total + ld
        return inverse_stereographic(h), total + log_conformal(h) - log_conformal(u)

    def forward_and_log_det(self, z: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Base -> data on S^n; the log-det is minus the inverse's at the image."""
        self.check_context(context, len(z))
        self._check(z)
        u0 = stereographic(z)
        h = u0
        for layer in reversed(self.couplings):
            h = layer.to_data(h)
        u, x = h, inverse_stereographic(h)
        total = h.new_zeros(h.shape[0])
        for layer in self.couplings:  # log|det dT/du| at u, recomputed explicitly
            h, ld = layer.to_noise(h)
            total = total + ld
        return x, -(total + log_conformal(u0) - log_conformal(u))

    def log_prob(self, x: Tensor, *, context: Tensor | None = None) -> Tensor:
        self.check_context(context, len(x))
        z, ld = self.inverse_and_log_det(x)
        return self.base_log_prob(z) + ld

    def _base_sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        dtype = next(self.parameters()).dtype
        if self.base == "uniform":
            g = torch.randn(n, self.n + 1, generator=generator, device=self.device, dtype=dtype)
            return g / g.norm(dim=1, keepdim=True)
        return inverse_stereographic(torch.randn(n, self.n, generator=generator, device=self.device, dtype=dtype))

    def _rsample(self, n: int, *, context: Tensor | None, generator: torch.Generator | None) -> Tensor:
        h = stereographic(self._base_sample(n, generator))
        for layer in reversed(self.couplings):
            h = layer.to_data(h)
        return inverse_stereographic(h)
