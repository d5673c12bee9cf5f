"""Neural spline flows (Durkan, Bekasov, Murray and Papamakarios 2019, arXiv 1906.04032).

The element-wise map is a monotone rational-quadratic spline (Sec. 3.1, after Gregory
and Delbourgo 1982) on ``[-B, B]`` with ``K`` bins, and the identity outside
("linear tails"): ``K`` widths and ``K`` heights (softmax, each at least
``min_width``/``min_height`` of the interval) place ``K + 1`` knots from ``(-B, -B)`` to
``(B, B)``; the ``K - 1`` interior knot derivatives are ``min_derivative + softplus``,
and the two boundary derivatives are 1, so the map is C^1 across ``+-B``. In bin ``k``,
with ``xi = (x - x_k) / w_k``, ``s_k = h_k / w_k`` (Eq. 4):

    g(x) = y_k + h_k (s_k xi^2 + d_k xi (1 - xi)) / (s_k + (d_{k+1} + d_k - 2 s_k) xi (1 - xi)),

its derivative is Eq. 5, and the inverse solves the quadratic ``a xi^2 + b xi + c = 0``
(Eqs. 6-8) by the paper's ``xi = 2c / (-b - sqrt(b^2 - 4ac))`` when ``b >= 0`` and by the
equal ``(-b + sqrt(b^2 - 4ac)) / 2a`` when ``b < 0`` (near the right end of a bin whose
right derivative exceeds twice its slope), so neither form subtracts nearly equal
numbers. Zero conditioner outputs give equal bins and unit derivatives, i.e. the
identity, so every layer starts as the identity.

* :class:`SplineCoupling`: Real NVP's mask-based coupling with the affine map replaced by
  the spline; ``nsf`` uses :func:`~genlab.models.flows.realnvp.coupling_stack`, so flat
  data get alternating halves and images Real NVP's multi-scale stack (checkerboard and
  channel masks, squeeze, factor-out).
* :class:`MaskedSpline`: the autoregressive form on a MADE (``nsf_ar``): density in one
  pass, sampling in ``D`` passes (like :class:`~genlab.models.flows.maf.MaskedAffine`).
* ``cond_nsf``: the coupling model with a learned class embedding fed to every conditioner.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.data.base import DataSpec
from genlab.kwargs import PositiveFloat, PositiveInt
from genlab.models.flows.core import (ActNorm, Compose, LUInvertibleLinear, Transform, TransformFlow, coupling_net,
                                      labelled_classes)
from genlab.models.flows.maf import alternating_orders
from genlab.models.flows.realnvp import StepFactory, coupling_stack
from genlab.nets.made import MADE


class RationalQuadraticSpline:
    """Monotone rational-quadratic spline on ``[-bound, bound]`` with ``bins`` bins, the
    identity outside; element-wise, with per-element parameters.

    ``raw`` has shape ``(*x.shape, 3 * bins - 1)``: unnormalised widths (``bins``),
    heights (``bins``) and interior derivatives (``bins - 1``), as a conditioner emits
    them. :meth:`forward` and :meth:`inverse` return the output and the element-wise
    ``log|dy/dx|`` (resp. ``log|dx/dy|``), ``0`` in the tails.
    """

    def __init__(self, bins: int, bound: float, *, min_width: float = 1e-3, min_height: float = 1e-3,
                 min_derivative: float = 1e-3):
        if bins < 1:
            raise ValueError(f"a spline needs at least 1 bin, got bins={bins}")
        if not bound > 0:
            raise ValueError(f"the spline's tail bound must be > 0, got bound={bound}")
        if min_width * bins >= 1 or min_height * bins >= 1:
            raise ValueError(f"min_width and min_height must be < 1/bins = {1 / bins:g}")
        if not 0 < min_derivative < 1:
            raise ValueError(f"min_derivative must be in (0, 1), got {min_derivative}")
        self.bins, self.bound = bins, float(bound)
        self.min_width, self.min_height, self.min_derivative = min_width, min_height, min_derivative
        # softplus(0 + shift) = 1 - min_derivative: zero raw derivatives give slope 1
        self._shift = math.log(math.expm1(1 - min_derivative))

    @property
    def params_per_dim(self) -> int:
        return 3 * self.bins - 1

    def _knot_positions(self, raw: Tensor, min_size: float) -> Tensor:
        """``(..., K)`` unnormalised sizes -> ``(..., K + 1)`` knots from ``-B`` to ``B`` exactly."""
        size = min_size + (1 - min_size * self.bins) * torch.softmax(raw, -1)
        inner = 2 * self.bound * torch.cumsum(size, -1)[..., :-1] - self.bound
        ends = raw.new_full((*raw.shape[:-1], 1), self.bound)
        return torch.cat([-ends, inner, ends], -1)

    def knots(self, raw: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``raw (..., 3K - 1)`` -> knot abscissae, ordinates and derivatives, each ``(..., K + 1)``."""
        if raw.shape[-1] != self.params_per_dim:
            raise ValueError(f"a {self.bins}-bin spline takes {self.params_per_dim} parameters per element, "
                             f"got {raw.shape[-1]}")
        k = self.bins
        xs = self._knot_positions(raw[..., :k], self.min_width)
        ys = self._knot_positions(raw[..., k:2 * k], self.min_height)
        inner = self.min_derivative + F.softplus(raw[..., 2 * k:] + self._shift)
        one = raw.new_ones((*raw.shape[:-1], 1))
        return xs, ys, torch.cat([one, inner, one], -1)

    def _bin(self, v: Tensor, knots: Tensor) -> Tensor:
        """Index ``k`` in ``0..K-1`` of the bin ``[knots_k, knots_{k+1}]`` holding ``v`` (in range)."""
        return (v[..., None] >= knots[..., 1:-1]).sum(-1, keepdim=True)

    @staticmethod
    def _log_slope(xi: Tensor, s: Tensor, d0: Tensor, d1: Tensor) -> Tensor:
        """``log g'(x)`` at ``xi`` in a bin of slope ``s`` with end derivatives ``d0, d1`` (Eq. 5)."""
        t = xi * (1 - xi)
        num = d1 * xi**2 + 2 * s * t + d0 * (1 - xi) ** 2
        return 2 * torch.log(s) + torch.log(num) - 2 * torch.log(s + (d0 + d1 - 2 * s) * t)

    def _gather(self, k: Tensor, xs: Tensor, ys: Tensor, ds: Tensor) -> tuple[Tensor, ...]:
        def pick(t: Tensor, i: Tensor) -> Tensor:
            return t.gather(-1, i).squeeze(-1)
        x0, x1, y0, y1 = pick(xs, k), pick(xs, k + 1), pick(ys, k), pick(ys, k + 1)
        return x0, x1 - x0, y0, y1 - y0, pick(ds, k), pick(ds, k + 1)

    def forward(self, x: Tensor, raw: Tensor) -> tuple[Tensor, Tensor]:
        """``y = g(x)`` and ``log g'(x)``, both shaped like ``x``."""
        xs, ys, ds = self.knots(raw)
        inside = (x >= -self.bound) & (x <= self.bound)
        xc = x.clamp(-self.bound, self.bound)  # tails are computed at the boundary, then discarded
        x0, w, y0, h, d0, d1 = self._gather(self._bin(xc, xs), xs, ys, ds)
        s = h / w
        xi = (xc - x0) / w
        t = xi * (1 - xi)
        y = y0 + h * (s * xi**2 + d0 * t) / (s + (d0 + d1 - 2 * s) * t)
        ld = self._log_slope(xi, s, d0, d1)
        return torch.where(inside, y, x), torch.where(inside, ld, torch.zeros_like(ld))

    def inverse(self, y: Tensor, raw: Tensor) -> tuple[Tensor, Tensor]:
        """``x = g^{-1}(y)`` and ``log |dx/dy|``, both shaped like ``y``."""
        xs, ys, ds = self.knots(raw)
        inside = (y >= -self.bound) & (y <= self.bound)
        yc = y.clamp(-self.bound, self.bound)
        x0, w, y0, h, d0, d1 = self._gather(self._bin(yc, ys), xs, ys, ds)
        s = h / w
        dy = yc - y0
        c2 = d0 + d1 - 2 * s
        a = h * (s - d0) + dy * c2
        b = h * d0 - dy * c2
        c = -s * dy
        root = torch.sqrt((b * b - 4 * a * c).clamp_min(0))
        # the root in [0, 1] is 2c / (-b - root) = (-b + root) / (2a); the first form has no
        # cancellation when b >= 0, the second when b < 0 (where a > 0). Unused branches get
        # safe denominators so that their gradients stay finite.
        pos = b >= 0
        xi = torch.where(pos, 2 * c / torch.where(pos, -b - root, -torch.ones_like(b)),
                         (root - b) / torch.where(pos, torch.ones_like(a), 2 * a))
        x = x0 + xi * w
        ld = -self._log_slope(xi, s, d0, d1)
        return torch.where(inside, x, y), torch.where(inside, ld, torch.zeros_like(ld))


class SplineCoupling(Transform):
    """Rational-quadratic spline coupling (arXiv 1906.04032, Sec. 3.2). With binary ``mask``
    ``b`` (the event shape), data -> noise is ``z = b*x + (1-b)*g_theta(x)``,
    ``theta = net(b*x, context)`` emitting ``3K - 1`` parameters per element
    (parameter-major, see :func:`~genlab.models.flows.core.coupling_net`)."""

    def __init__(self, mask: Tensor, net: nn.Module, spline: RationalQuadraticSpline):
        super().__init__()
        self.register_buffer("mask", mask.float())
        self.net, self.spline = net, spline

    def _raw(self, v: Tensor, context: Tensor | None) -> Tensor:
        masked = v * self.mask
        h = self.net(masked, context).reshape(v.shape[0], self.spline.params_per_dim, *v.shape[1:])
        return h.movedim(1, -1)

    def _combine(self, v: Tensor, out: Tensor, ld: Tensor) -> tuple[Tensor, Tensor]:
        keep = 1 - self.mask
        return v * self.mask + keep * out, (keep * ld).reshape(v.shape[0], -1).sum(1)

    def inverse_and_log_det(self, x: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._combine(x, *self.spline.forward(x, self._raw(x, context)))

    def forward_and_log_det(self, z: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._combine(z, *self.spline.inverse(z, self._raw(z, context)))


class MaskedSpline(Transform):
    """Autoregressive rational-quadratic spline layer (arXiv 1906.04032, Sec. 3.2) on
    ``(B, *event)`` flattened to ``(B, D)``: data -> noise ``z_i = g_{theta_i(x_<i)}(x_i)``
    in one MADE pass; noise -> data in ``D`` passes (after pass ``k`` the first ``k``
    positions in ``order`` are exact)."""

    def __init__(self, dim: int, hidden: list[int], order: list[int] | None, spline: RationalQuadraticSpline,
                 context_features: int = 0):
        super().__init__()
        self.dim, self.spline = dim, spline
        self.made = MADE(in_features=dim, hidden=hidden, out_per_dim=spline.params_per_dim, order=order,
                         context_features=context_features)

    def _raw(self, flat: Tensor, context: Tensor | None) -> Tensor:
        return self.made(flat, context).reshape(flat.shape[0], self.spline.params_per_dim, self.dim).transpose(1, 2)

    def inverse_and_log_det(self, x: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        flat = x.reshape(x.shape[0], -1)
        z, ld = self.spline.forward(flat, self._raw(flat, context))
        return z.reshape(x.shape), ld.sum(1)

    def forward_and_log_det(self, z: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        zf = z.reshape(z.shape[0], -1)
        x = torch.zeros_like(zf)
        for _ in range(self.dim):
            x, ld = self.spline.inverse(zf, self._raw(x, context))
        return x.reshape(z.shape), ld.sum(1)


def spline_step(*, hidden: int, depth: int, bins: int, bound: float, actnorm: bool, linear: bool,
                context_features: int = 0) -> StepFactory:
    """One NSF coupling step: [ActNorm,] [LU 1x1 convolution / linear map,] spline coupling.
    The LU map is left out where the step sees one channel (it would only be a scale)."""
    spline = RationalQuadraticSpline(bins, bound)

    def step(mask: Tensor) -> list[Transform]:
        c = mask.shape[0]
        net = coupling_net(tuple(mask.shape), hidden, depth, params_per_dim=spline.params_per_dim,
                           context_features=context_features)
        pre: list[Transform] = ([ActNorm(c)] if actnorm else []) + ([LUInvertibleLinear(c)] if linear and c > 1 else [])
        return pre + [SplineCoupling(mask, net, spline)]
    return step


class NSF(TransformFlow):
    """Neural spline flow, coupling form (RQ-NSF (C), arXiv 1906.04032): spline couplings on
    alternating halves (flat data) or in Real NVP's multi-scale stack (images).

    ``couplings``: number of couplings on flat data; ``scales``, ``per_scale``: the image
    stack (as ``realnvp``); ``bins``: ``K``; ``bound``: the tail bound ``B`` (identity
    outside ``[-B, B]``); ``actnorm``: ActNorm before every coupling; ``linear``: an
    LU-parametrised 1x1 convolution (a ``D x D`` linear map on flat data) before every
    coupling that sees more than one channel, as in the paper's coupling models.
    """

    def __init__(self, *, data_spec: DataSpec, couplings: PositiveInt = 8, hidden: PositiveInt = 64,
                 depth: PositiveInt = 2, scales: PositiveInt = 2, per_scale: PositiveInt = 3, bins: PositiveInt = 8,
                 bound: PositiveFloat = 3.0, actnorm: bool = True, linear: bool = False):
        super().__init__()
        self.event_shape = torch.Size(data_spec.event_shape)
        step = spline_step(hidden=hidden, depth=depth, bins=bins, bound=bound, actnorm=actnorm, linear=linear)
        self.transform = coupling_stack(self.event_shape, step, couplings=couplings, scales=scales,
                                        per_scale=per_scale, name="NSF")


class ConditionalNSF(TransformFlow):
    """Class-conditional neural spline flow (coupling form): ``p(x | y)``, labels ``y (B,)``;
    every conditioner sees a learned class embedding (concatenated to MLP inputs, extra
    channels for conv nets)."""

    conditional: ClassVar[bool] = True

    def __init__(self, *, data_spec: DataSpec, couplings: PositiveInt = 8, hidden: PositiveInt = 64,
                 depth: PositiveInt = 2, scales: PositiveInt = 2, per_scale: PositiveInt = 3, bins: PositiveInt = 8,
                 bound: PositiveFloat = 3.0, actnorm: bool = False, linear: bool = False,
                 embed_dim: PositiveInt = 8):
        super().__init__()
        self.num_classes = labelled_classes(data_spec, "cond_nsf", "nsf")
        self.event_shape = torch.Size(data_spec.event_shape)
        self.embed = nn.Embedding(self.num_classes, embed_dim)
        step = spline_step(hidden=hidden, depth=depth, bins=bins, bound=bound, actnorm=actnorm, linear=linear,
                           context_features=embed_dim)
        self.transform = coupling_stack(self.event_shape, step, couplings=couplings, scales=scales,
                                        per_scale=per_scale, name="ConditionalNSF")


class NSFAR(TransformFlow):
    """Neural spline flow, autoregressive form (RQ-NSF (AR), arXiv 1906.04032): ``layers``
    MADE spline layers, orders alternately natural and reversed; any event shape is
    flattened. Density: one pass per layer; sampling: ``D`` passes per layer."""

    def __init__(self, *, data_spec: DataSpec, layers: PositiveInt = 5, hidden: PositiveInt = 64,
                 depth: PositiveInt = 2, bins: PositiveInt = 8, bound: PositiveFloat = 3.0):
        super().__init__()
        self.event_shape = torch.Size(data_spec.event_shape)
        d = data_spec.dim
        spline = RationalQuadraticSpline(bins, bound)
        self.transform = Compose([MaskedSpline(d, [hidden] * depth, order, spline)
                                  for order in alternating_orders(d, layers)])
