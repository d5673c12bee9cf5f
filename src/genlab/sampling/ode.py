"""Numerical integration of ODEs ``dy/dt = fn(t, y)``: the one place genlab solves ODEs.

Used by the continuous-time flow (:mod:`genlab.models.flows.ffjord`, FFJORD, arXiv
1810.01367) and meant to be reused as it is by a future probability-flow ODE sampler for
score models (Song et al. 2021, arXiv 2011.13456): both only need :func:`odeint`.

The solvers are ``torchdiffeq``'s (Chen et al. 2018, Neural ODEs, arXiv 1806.07366;
the library FFJORD itself uses), reached through this small API so that the rest of
genlab never imports it directly:

* ``method="dopri5"`` (default): the adaptive Dormand-Prince 5(4) pair (Dormand & Prince
  1980) with the usual error control: a step is accepted when the RMS norm of
  ``err / (atol + rtol * max(|y_old|, |y_new|))`` is at most 1, per tensor of the state
  (the largest over the tensors of a tuple state). One step costs 6 evaluations of ``fn``
  (first-same-as-last). ``rtol``/``atol`` bound the *local* error; the global error is
  usually a small multiple of them (tested on ``dy/dt = A y`` against ``expm``).
* ``method="rk4"``: fixed-step fourth-order Runge-Kutta (``torchdiffeq``'s ``rk4``, the
  3/8-rule variant) on ``steps`` equal steps, 4 evaluations each; ``rtol``/``atol`` are
  ignored; global error ``O((|t1 - t0| / steps)^4)``.

Gradients: backpropagation through the solver's operations (memory grows with the
number of steps). The step-size controller runs without gradients, as in
``torchdiffeq``. There is no adjoint method here (yet).

The whole batch shares one step size (the error norm is over the whole state), so an
adaptive solution for one row depends on the other rows, at the level of the tolerance.
"""

from __future__ import annotations

from typing import Callable, Literal, Union

import torch
from torch import Tensor

State = Union[Tensor, tuple[Tensor, ...]]
Method = Literal["dopri5", "rk4"]
METHODS = ("dopri5", "rk4")

#: Defaults (also those of the FFJORD model): FFJORD trains with ``rtol = atol = 1e-5``.
DEFAULT_RTOL = 1e-5
DEFAULT_ATOL = 1e-5


class ODESolverError(RuntimeError):
    """The adaptive solver needed more than ``max_steps`` steps (stiff or exploding dynamics)."""


def check_solver_options(method: str, rtol: float, atol: float, steps: int | None, max_steps: int) -> None:
    """Raise a clear ``ValueError`` for bad solver options (called before any work)."""
    if method not in METHODS:
        raise ValueError(f"unknown ODE method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "dopri5" and not (rtol > 0 and atol > 0):
        raise ValueError(f"dopri5 needs rtol > 0 and atol > 0, got rtol={rtol}, atol={atol}")
    if method == "rk4" and (steps is None or isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"rk4 needs steps >= 1 (an int), got {steps!r}")
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")


def odeint(fn: Callable[[Tensor, State], State], y0: State, t0: float, t1: float, *,
           method: Method = "dopri5", rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL,
           steps: int | None = None, max_steps: int = 10_000) -> State:
    """Solve ``dy/dt = fn(t, y)``, ``y(t0) = y0`` and return ``y(t1)``.

    ``y0`` is a tensor or a tuple of tensors (any shapes; ``fn`` returns the same
    structure); ``t`` is passed to ``fn`` as a 0-dim float64 tensor (cast it as needed).
    ``t1 < t0`` integrates backwards. ``method``: ``"dopri5"`` (adaptive, tolerances
    ``rtol``/``atol``, at most ``max_steps`` steps, else :class:`ODESolverError`) or
    ``"rk4"`` (``steps`` equal steps). ``t0 == t1`` returns ``y0``.
    """
    from torchdiffeq import odeint as _odeint

    check_solver_options(method, rtol, atol, steps, max_steps)
    if t0 == t1:
        return y0
    first = y0[0] if isinstance(y0, tuple) else y0
    t = torch.tensor([float(t0), float(t1)], dtype=torch.float64, device=first.device)
    if method == "rk4":
        grid = torch.linspace(float(t0), float(t1), steps + 1, dtype=torch.float64, device=first.device)
        options = {"grid_constructor": lambda *_: grid}
    else:
        options = {"max_num_steps": max_steps}
    try:
        out = _odeint(fn, y0, t, rtol=rtol, atol=atol, method=method, options=options)
    except AssertionError as err:  # torchdiffeq signals too many steps with an assertion
        if "max_num_steps" in str(err):
            raise ODESolverError(f"dopri5 needed more than max_steps={max_steps} steps from t={t0} to t={t1} "
                                 f"(rtol={rtol}, atol={atol}); loosen the tolerances, raise max_steps, or "
                                 "use method='rk4'") from None
        raise
    return tuple(o[-1] for o in out) if isinstance(out, tuple) else out[-1]
