"""FFJORD: a continuous-time normalizing flow.

Grathwohl, Chen, Bettencourt, Sutskever & Duvenaud 2018, "FFJORD: Free-form Continuous
Dynamics for Scalable Reversible Generative Models", arXiv 1810.01367 (continuous
normalizing flows: Chen et al. 2018, Neural ODEs, arXiv 1806.07366).

Noise -> data is the solution of ``dv/dt = f(v, t)`` from ``t = 0`` (``v(0) = z ~ N(0, I)``)
to ``t = T`` (``v(T) = x``), ``f`` an MLP (:class:`ConcatMLP`) of the flattened state with
the time concatenated to the input of every layer. The instantaneous change of variables,
``d log|det dv(t)/dv(0)| / dt = tr(df/dv)``, gives both log-determinants from one
augmented ODE ``(v, l)``, ``dl/dt = tr(df/dv)``, ``l = 0`` at the start:

* ``forward_and_log_det(z)``: integrate ``0 -> T``; ``l(T) = log|det dx/dz|``;
* ``inverse_and_log_det(x)``: integrate ``T -> 0``; ``l(0) = -∫_0^T tr dt = log|det dz/dx|``;
* ``log_prob(x) = log N(z; 0, I) + log|det dz/dx|``;
* ``rsample``: integrate ``v`` alone ``0 -> T`` (no trace).

The trace ``tr(df/dv)``:

* **exact** when ``D <= exact_trace_max_dim`` and always in eval mode: the ``D`` rows of
  the Jacobian from one batched vector-Jacobian product (``D`` backward passes'
  work, ``D`` times the batch in memory) per function evaluation. So ``log_prob`` of a
  model in ``.eval()`` is exact up to the solver tolerance, and bits/dim with it;
* **Hutchinson** (Hutchinson 1989; FFJORD Sec. 3.1) in training mode above that size:
  ``e^T (df/dv) e`` with one probe ``e`` per example, Rademacher or Gaussian (``noise``),
  drawn once per solve and kept for all its function evaluations (so the log-det
  estimate is unbiased for the integral), one backward pass per evaluation.

Solver: :func:`genlab.sampling.ode.odeint` (adaptive Dormand-Prince 5(4) with
``rtol = atol = 1e-5`` by default, or fixed-step RK4 with ``steps`` steps). Gradients by
backpropagation through the solver's steps (no adjoint). The probe of the Hutchinson
estimator comes from ``generator=`` when given to ``log_prob``/``inverse_and_log_det``/
``forward_and_log_det``, from the global RNG otherwise.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.data.base import DataSpec
from genlab.kwargs import NonNegativeInt, PositiveFloat, PositiveInt
from genlab.models.base import Flow
from genlab.sampling.ode import DEFAULT_ATOL, DEFAULT_RTOL, check_solver_options, odeint

Activation = Literal["tanh", "softplus"]
Noise = Literal["rademacher", "gaussian"]


class ConcatMLP(nn.Module):
    """``f(v, t)``: ``(B, D), t -> (B, D)``; every linear layer sees ``[h, t]`` (FFJORD's
    "concat" layers). ``depth`` hidden layers of ``hidden`` units, ``tanh`` or ``softplus``
    (smooth, so ``f`` has a continuous Jacobian as the ODE theory needs). The last layer
    starts at zero, so the flow starts as the identity."""

    def __init__(self, dim: int, *, hidden: int, depth: int, activation: Activation):
        super().__init__()
        widths = [dim] + [hidden] * depth + [dim]
        self.layers = nn.ModuleList(nn.Linear(a + 1, b) for a, b in zip(widths[:-1], widths[1:]))
        nn.init.zeros_(self.layers[-1].weight), nn.init.zeros_(self.layers[-1].bias)
        self.act = torch.tanh if activation == "tanh" else F.softplus

    def forward(self, t: Tensor, v: Tensor) -> Tensor:
        tt = t.to(v.dtype).expand(v.shape[0], 1)
        h = v
        for i, layer in enumerate(self.layers):
            h = layer(torch.cat([h, tt], 1))
            if i < len(self.layers) - 1:
                h = self.act(h)
        return h


def divergence_exact(f: Tensor, v: Tensor, *, create_graph: bool) -> Tensor:
    """``tr(df/dv)`` per row, ``f = fn(v)`` ``(B, D)`` -> ``(B,)``: the ``D`` Jacobian rows from one
    batched vector-Jacobian product (``grad_outputs`` the ``D`` basis vectors)."""
    d = v.shape[1]
    basis = torch.eye(d, dtype=v.dtype, device=v.device).unsqueeze(1).expand(d, v.shape[0], d)
    rows = torch.autograd.grad(f, v, basis, create_graph=create_graph, is_grads_batched=True)[0]  # (D, B, D)
    return torch.diagonal(rows, dim1=0, dim2=2).sum(-1)


def divergence_hutchinson(f: Tensor, v: Tensor, e: Tensor, *, create_graph: bool) -> Tensor:
    """Hutchinson's estimate ``e^T (df/dv) e`` per row ``(B,)``; unbiased when ``E[e e^T] = I``."""
    vjp = torch.autograd.grad(f, v, e, create_graph=create_graph)[0]
    return (vjp * e).sum(1)


def probe(shape: torch.Size, like: Tensor, noise: Noise, generator: torch.Generator | None) -> Tensor:
    """Hutchinson probes: Rademacher (+-1) or standard Gaussian, drawn from ``generator`` on its
    device (the global RNG on ``like``'s device without one), returned on ``like``'s device."""
    dev = generator.device if generator is not None else like.device
    if noise == "rademacher":
        e = 2.0 * torch.randint(0, 2, shape, generator=generator, device=dev).to(like.dtype) - 1.0
    else:
        e = torch.randn(shape, generator=generator, dtype=like.dtype, device=dev)
    return e.to(like.device)


class FFJORD(Flow):
    """FFJORD continuous normalizing flow (arXiv 1810.01367) on a standard normal base,
    for data of any event shape (flattened to ``(B, D)``).

    Keys: ``hidden``/``depth``/``activation`` size ``f``; ``time`` is ``T``; ``method``
    ``"dopri5"`` (adaptive Dormand-Prince 5(4), ``rtol = atol = 1e-5`` by default, at most
    ``max_steps`` steps) or ``"rk4"`` (``steps`` fixed steps, default 20); the trace is exact
    when ``D <= exact_trace_max_dim`` (default 10) or in eval mode (``D`` backward passes'
    work per function evaluation), a Hutchinson estimate with ``noise`` probes otherwise
    (one backward pass). Gradients: backpropagation through the solver (no adjoint).
    """

    def __init__(self, *, data_spec: DataSpec, hidden: PositiveInt = 64, depth: PositiveInt = 3,
                 activation: Activation = "tanh", time: PositiveFloat = 1.0,
                 method: Literal["dopri5", "rk4"] = "dopri5", rtol: PositiveFloat = DEFAULT_RTOL,
                 atol: PositiveFloat = DEFAULT_ATOL, steps: PositiveInt = 20, max_steps: PositiveInt = 10_000,
                 exact_trace_max_dim: NonNegativeInt = 10, noise: Noise = "rademacher"):
        super().__init__()
        if activation not in ("tanh", "softplus"):
            raise ValueError(f"activation must be 'tanh' or 'softplus' (smooth), got {activation!r}")
        if noise not in ("rademacher", "gaussian"):
            raise ValueError(f"noise must be 'rademacher' or 'gaussian', got {noise!r}")
        if not (isinstance(time, (int, float)) and time > 0 and math.isfinite(time)):
            raise ValueError(f"time (the integration length T) must be a finite number > 0, got {time!r}")
        check_solver_options(method, rtol, atol, steps, max_steps)
        self.event_shape = torch.Size(data_spec.event_shape)
        self.dim = data_spec.dim
        self.time = float(time)
        self.method, self.rtol, self.atol, self.steps, self.max_steps = method, rtol, atol, steps, max_steps
        self.exact_trace_max_dim, self.noise = exact_trace_max_dim, noise
        self.net = ConcatMLP(self.dim, hidden=hidden, depth=depth, activation=activation)

    # --- shapes -----------------------------------------------------------------------
    def _flat(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != tuple(self.event_shape):
            raise ValueError(f"FFJORD expects (B, {', '.join(map(str, self.event_shape))}), got {tuple(x.shape)}")
        return x.reshape(x.shape[0], self.dim)

    def exact_trace(self) -> bool:
        """Whether the trace is exact now: in eval mode, or when ``D <= exact_trace_max_dim``."""
        return not self.training or self.dim <= self.exact_trace_max_dim

    # --- the ODE ----------------------------------------------------------------------
    def _solve(self, v: Tensor, t0: float, t1: float, *, log_det: bool,
               generator: torch.Generator | None) -> tuple[Tensor, Tensor | None]:
        """Integrate ``v`` ``(B, D)`` from ``t0`` to ``t1``; with ``log_det`` also ``l`` (``(B,)``)."""
        keep = torch.is_grad_enabled()
        exact = self.exact_trace()
        e = None if not log_det or exact else probe(v.shape, v, self.noise, generator)

        def velocity(t: Tensor, state):
            u = state[0] if log_det else state
            if not log_det:
                return self.net(t, u)
            with torch.enable_grad():
                if not u.requires_grad:
                    u = u.detach().requires_grad_()
                f = self.net(t, u)
                div = divergence_exact(f, u, create_graph=keep) if exact else \
                    divergence_hutchinson(f, u, e, create_graph=keep)
            return (f, div) if keep else (f.detach(), div.detach())

        y0 = (v, v.new_zeros(v.shape[0])) if log_det else v
        out = odeint(velocity, y0, t0, t1, method=self.method, rtol=self.rtol, atol=self.atol, steps=self.steps,
                     max_steps=self.max_steps)
        return (out[0], out[1]) if log_det else (out, None)

    # --- Flow -------------------------------------------------------------------------
    def forward_and_log_det(self, z: Tensor, *, context: Tensor | None = None,
                            generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Noise -> data: ``(B, *event) -> (x, log|det dx/dz| (B,))``, integrating ``0 -> T``."""
        self.check_context(context, len(z))
        x, ld = self._solve(self._flat(z), 0.0, self.time, log_det=True, generator=generator)
        return x.reshape(z.shape), ld

    def inverse_and_log_det(self, x: Tensor, *, context: Tensor | None = None,
                            generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Data -> noise: ``(B, *event) -> (z, log|det dz/dx| (B,))``, integrating ``T -> 0``."""
        self.check_context(context, len(x))
        z, ld = self._solve(self._flat(x), self.time, 0.0, log_det=True, generator=generator)
        return z.reshape(x.shape), ld

    def log_prob(self, x: Tensor, *, context: Tensor | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
        """``(B, *event) -> (B,)`` nats; exact (up to the solver) in eval mode or when
        ``D <= exact_trace_max_dim``, an unbiased Hutchinson estimate of it otherwise."""
        self.check_context(context, len(x))
        z, ld = self.inverse_and_log_det(x, generator=generator)
        flat = z.reshape(z.shape[0], -1)
        return -0.5 * (flat**2).sum(1) - 0.5 * self.dim * math.log(2 * math.pi) + ld

    def _rsample(self, n: int, *, context: Tensor | None, generator: torch.Generator | None) -> Tensor:
        dtype = self.net.layers[0].weight.dtype
        z = torch.randn(n, self.dim, generator=generator, device=self.device, dtype=dtype)
        x, _ = self._solve(z, 0.0, self.time, log_det=False, generator=None)
        return x.reshape(n, *self.event_shape)
