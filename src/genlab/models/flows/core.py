"""Shared pieces of normalizing flows: transforms, composition, squeeze, multi-scale
splitting, ActNorm, LU-parametrised 1x1 convolution, affine coupling, and the
:class:`TransformFlow` model (a transform on a standard normal base).

Conventions
-----------
A :class:`Transform` is a bijection between data ``x`` and noise ``z`` with
``x.shape == z.shape == (B, *event)``:

* ``inverse_and_log_det(x) -> (z, log|det dz/dx|)``: the normalising direction,
  used by ``log_prob``;
* ``forward_and_log_det(z) -> (x, log|det dx/dz|)``: the generative direction,
  used by ``rsample``.

Event shapes are ``(D,)`` for points/tabular rows or ``(C, H, W)`` for images;
per-channel layers (ActNorm, 1x1 convolution) act on dim 1, so on flat data they
act on the features. :class:`Compose` lists transforms in **data -> noise** order.

Context: both methods take a keyword-only ``context``, the *context features*
``(B, E)`` (a float tensor: for class-conditional flows, the flow's learned class
embedding of the labels). Layers with a conditioner (couplings, masked layers) built
with ``context_features = E > 0`` feed it to their conditioner net; every other layer
passes it on or ignores it. :class:`TransformFlow` turns the labels given to
``log_prob``/``sample`` into these features once, so an unconditional flow never
passes any.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Sequence

import torch
from torch import Tensor, nn

from genlab.data.base import DataSpec
from genlab.kwargs import PositiveInt
from genlab.models.base import Flow
from genlab.nets.mlp import MLP


class Transform(nn.Module, ABC):
    """A bijection ``x <-> z`` with both log-determinants, each ``(B,)``; ``context``:
    optional context features ``(B, E)`` (see the module docstring)."""

    @abstractmethod
    def forward_and_log_det(self, z: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Noise -> data: ``(x, log|det dx/dz|)``."""

    @abstractmethod
    def inverse_and_log_det(self, x: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Data -> noise: ``(z, log|det dz/dx|)``."""


def _zeros(x: Tensor) -> Tensor:
    return x.new_zeros(x.shape[0])


class Compose(Transform):
    """``transforms`` in data -> noise order: ``inverse`` applies them first to last."""

    def __init__(self, transforms: Sequence[Transform]):
        super().__init__()
        self.transforms = nn.ModuleList(transforms)

    def inverse_and_log_det(self, x: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = _zeros(x)
        for t in self.transforms:
            x, ld = t.inverse_and_log_det(x, context=context)
            total = total + ld
        return x, total

    def forward_and_log_det(self, z: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = _zeros(z)
        for t in reversed(self.transforms):
            z, ld = t.forward_and_log_det(z, context=context)
            total = total + ld
        return z, total


class Inverse(Transform):
    """Swaps the two directions of ``base`` (e.g. MAF -> IAF)."""

    def __init__(self, base: Transform):
        super().__init__()
        self.base = base

    def forward_and_log_det(self, z: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.base.inverse_and_log_det(z, context=context)

    def inverse_and_log_det(self, x: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.base.forward_and_log_det(x, context=context)


class Squeeze(Transform):
    """Data -> noise: ``(B, C, H, W) -> (B, 4C, H/2, W/2)`` (a permutation, log-det 0)."""

    def inverse_and_log_det(self, x: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        b, c, h, w = x.shape
        if h % 2 or w % 2:
            raise ValueError(f"Squeeze needs even image sides, got {h}x{w}")
        y = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
        return y.reshape(b, 4 * c, h // 2, w // 2), _zeros(x)

    def forward_and_log_det(self, z: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        b, c4, h, w = z.shape
        c = c4 // 4
        x = z.reshape(b, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return x.reshape(b, c, 2 * h, 2 * w), _zeros(z)


class FactorOut(Transform):
    """Multi-scale split (Real NVP, arXiv 1605.08803, Sec. 3.6): the first ``n_out``
    channels (dim 1) go straight to the base; ``inner`` transforms the rest."""

    def __init__(self, n_out: int, inner: Transform):
        super().__init__()
        self.n_out = n_out
        self.inner = inner

    def _split_apply(self, v: Tensor, fn, context: Tensor | None) -> tuple[Tensor, Tensor]:
        out, ld = fn(v[:, self.n_out:], context=context)
        return torch.cat([v[:, :self.n_out], out], 1), ld

    def inverse_and_log_det(self, x: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._split_apply(x, self.inner.inverse_and_log_det, context)

    def forward_and_log_det(self, z: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._split_apply(z, self.inner.forward_and_log_det, context)


def _per_channel(p: Tensor, x: Tensor) -> Tensor:
    """View a ``(C,)`` parameter to broadcast over ``(B, C, *spatial)``."""
    return p.reshape(1, -1, *([1] * (x.dim() - 2)))


def _spatial(x: Tensor) -> int:
    return math.prod(x.shape[2:])


class ActNorm(Transform):
    """Per-channel affine normalisation, Glow (arXiv 1807.03039), Sec. 3.1.

    Data -> noise: ``z = (x + bias) * exp(log_scale)``. Data-dependent init: the
    first ``inverse_and_log_det`` call in training mode while the ``initialized``
    buffer is 0 sets ``bias``/``log_scale`` so that the batch has zero mean and unit
    variance per channel, then sets ``initialized = 1``. The buffer is part of the
    ``state_dict``, so a loaded model never re-initialises. Sampling from a model
    that has never seen data leaves the identity in place.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.log_scale = nn.Parameter(torch.zeros(num_channels))
        self.register_buffer("initialized", torch.zeros(1))
        self.eps = eps

    @torch.no_grad()
    def _init(self, x: Tensor) -> None:
        flat = x.transpose(0, 1).reshape(x.shape[1], -1)
        self.bias.copy_(-flat.mean(1))
        self.log_scale.copy_(-torch.log(flat.std(1, unbiased=False) + self.eps))
        self.initialized.fill_(1)

    def inverse_and_log_det(self, x: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.training and not bool(self.initialized.item()) and x.shape[0] > 1:
            self._init(x.detach())
        z = (x + _per_channel(self.bias, x)) * _per_channel(self.log_scale, x).exp()
        return z, (_spatial(x) * self.log_scale.sum()).expand(x.shape[0])

    def forward_and_log_det(self, z: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = z * _per_channel(-self.log_scale, z).exp() - _per_channel(self.bias, z)
        return x, (-_spatial(z) * self.log_scale.sum()).expand(z.shape[0])


class LUInvertibleLinear(Transform):
    """Invertible 1x1 convolution in LU form, Glow (arXiv 1807.03039), Sec. 3.2:
    ``W = P L (U + diag(sign * exp(log_s)))`` with fixed permutation ``P`` and signs,
    unit lower-triangular ``L`` and strictly upper ``U``. Data -> noise: ``z = W x``
    per position of ``(B, C, *spatial)``; on flat ``(B, D)`` data it is a linear map.
    ``log|det| = spatial * sum(log_s)``. Initialised from a random rotation."""

    def __init__(self, num_channels: int):
        super().__init__()
        c = num_channels
        q, _ = torch.linalg.qr(torch.randn(c, c))
        p, lower, upper = torch.linalg.lu(q)
        s = torch.diagonal(upper)
        self.register_buffer("perm", p)
        self.register_buffer("sign", torch.sign(s))
        self.register_buffer("lower_mask", torch.tril(torch.ones(c, c), -1))
        self.lower = nn.Parameter(lower * self.lower_mask)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(s.abs()))

    def _factors(self) -> tuple[Tensor, Tensor]:
        eye = torch.eye(self.lower.shape[0], dtype=self.lower.dtype, device=self.lower.device)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign * self.log_s.exp())
        return lower, upper

    def inverse_and_log_det(self, x: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        lower, upper = self._factors()
        w = self.perm @ lower @ upper
        z = torch.einsum("ij,bj...->bi...", w, x)
        return z, (_spatial(x) * self.log_s.sum()).expand(x.shape[0])

    def forward_and_log_det(self, z: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        lower, upper = self._factors()
        c = z.shape[1]
        cols = z.transpose(0, 1).reshape(c, -1)
        y = torch.linalg.solve_triangular(lower, self.perm.T @ cols, upper=False, unitriangular=True)
        x = torch.linalg.solve_triangular(upper, y, upper=True)
        x = x.reshape(c, z.shape[0], *z.shape[2:]).transpose(0, 1)
        return x, (-_spatial(z) * self.log_s.sum()).expand(z.shape[0])


def check_context_features(context: Tensor | None, n: int, batch: int, who: str) -> None:
    """A layer built for ``n`` context features gets ``(batch, n)`` (``n = 0``: none)."""
    if n == 0:
        if context is not None:
            raise ValueError(f"{who} was built without context features (context_features=0) but got a context")
        return
    if context is None:
        raise ValueError(f"{who} is conditional (context_features={n}): pass context features ({batch}, {n})")
    if tuple(context.shape) != (batch, n):
        raise ValueError(f"{who}: context features must be ({batch}, {n}), got {tuple(context.shape)}")


class ConvCouplingNet(nn.Module):
    """``(B, C, H, W)`` (and context features ``(B, E)``, broadcast to ``E`` constant
    channels and concatenated) ``-> (B, out_channels, H, W)``: 3x3 conv, 1x1 conv, 3x3 conv,
    ReLU between; the last layer starts at zero so that a coupling starts as the identity."""

    def __init__(self, *, in_channels: int, out_channels: int, hidden: PositiveInt = 64, context_features: int = 0):
        super().__init__()
        self.context_features = context_features
        last = nn.Conv2d(hidden, out_channels, 3, padding=1)
        nn.init.zeros_(last.weight), nn.init.zeros_(last.bias)
        self.net = nn.Sequential(nn.Conv2d(in_channels + context_features, hidden, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(hidden, hidden, 1), nn.ReLU(), last)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        check_context_features(context, self.context_features, x.shape[0], "ConvCouplingNet")
        if context is not None:
            x = torch.cat([x, context[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)
        return self.net(x)


class MLPConditioner(nn.Module):
    """``(B, *in_shape)`` flattened (and context features ``(B, E)`` concatenated)
    ``-> (B, out_features)``: an MLP of ``depth`` hidden layers whose last layer starts at
    zero, so that a coupling starts as the identity."""

    def __init__(self, *, in_features: int, out_features: int, hidden: PositiveInt = 64, depth: PositiveInt = 2,
                 context_features: int = 0):
        super().__init__()
        self.context_features = context_features
        self.net = MLP(in_shape=(in_features + context_features,), out_features=out_features, hidden=hidden,
                       depth=depth).net
        nn.init.zeros_(self.net[-1].weight), nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        check_context_features(context, self.context_features, x.shape[0], "MLPConditioner")
        h = x.reshape(x.shape[0], -1)
        return self.net(h if context is None else torch.cat([h, context], 1))


def coupling_net(event_shape: Sequence[int], hidden: int, depth: PositiveInt = 2, *, params_per_dim: int = 2,
                 context_features: int = 0) -> nn.Module:
    """A conditioner ``net(x, context)`` emitting ``params_per_dim * C`` channels (images,
    parameter-major: ``out.reshape(B, params_per_dim, C, H, W)``) or ``params_per_dim * D``
    features (flat, ``out.reshape(B, params_per_dim, D)``)."""
    if len(event_shape) == 3:
        return ConvCouplingNet(in_channels=event_shape[0], out_channels=params_per_dim * event_shape[0],
                               hidden=hidden, context_features=context_features)
    d = math.prod(event_shape)
    return MLPConditioner(in_features=d, out_features=params_per_dim * d, hidden=hidden, depth=depth,
                          context_features=context_features)


class AffineCoupling(Transform):
    """Affine coupling, Real NVP (arXiv 1605.08803), Eq. 9. With binary ``mask`` (the
    event shape) ``b``, data -> noise is ``z = b*x + (1-b)*(x*exp(s) + t)``, where
    ``(s, t) = net(b*x, context)`` (see :func:`coupling_net`) and
    ``s = clamp * tanh(s_raw / clamp)`` bounds the scale."""

    def __init__(self, mask: Tensor, net: nn.Module, clamp: float = 3.0):
        super().__init__()
        self.register_buffer("mask", mask.float())
        self.net = net
        self.clamp = clamp

    def _scale_shift(self, masked: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        h = self.net(masked, context).reshape(masked.shape[0], 2, *masked.shape[1:])
        s = self.clamp * torch.tanh(h[:, 0] / self.clamp) * (1 - self.mask)
        return s, h[:, 1] * (1 - self.mask)

    def inverse_and_log_det(self, x: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        s, t = self._scale_shift(x * self.mask, context)
        z = x * self.mask + (1 - self.mask) * (x * s.exp() + t)
        return z, s.reshape(x.shape[0], -1).sum(1)

    def forward_and_log_det(self, z: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        s, t = self._scale_shift(z * self.mask, context)
        x = z * self.mask + (1 - self.mask) * ((z - t) * (-s).exp())
        return x, -s.reshape(z.shape[0], -1).sum(1)


def checkerboard_mask(shape: Sequence[int], parity: int) -> Tensor:
    """``(C, H, W)`` mask, 1 where ``(i + j) % 2 == parity``."""
    c, h, w = shape
    i, j = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return ((i + j) % 2 == parity).float().expand(c, h, w).clone()


def channel_mask(shape: Sequence[int], parity: int) -> Tensor:
    """``(C, H, W)`` mask, 1 on the first (parity 0) or second half of the channels."""
    m = torch.zeros(*shape)
    half = shape[0] // 2
    m[:half] = 1.0
    return m if parity == 0 else 1.0 - m


def half_mask(dim: int, parity: int) -> Tensor:
    """``(D,)`` mask, 1 on the first (parity 0) or second half of the features."""
    if dim < 2:
        raise ValueError(f"coupling layers need at least 2 dimensions, got {dim}; use model: maf or made")
    m = torch.zeros(dim)
    m[: dim // 2] = 1.0
    return m if parity == 0 else 1.0 - m


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """``(B, *event) -> (B,)`` log N(z; 0, I)."""
    flat = z.reshape(z.shape[0], -1)
    return -0.5 * (flat**2).sum(1) - 0.5 * flat.shape[1] * math.log(2 * math.pi)


def labelled_classes(data_spec: DataSpec, name: str, unconditional: str) -> int:
    """``data_spec.classes`` for a class-conditional flow, or a clear error."""
    if data_spec.classes is None:
        raise ValueError(f"{name} needs labelled data (data_spec.classes); {data_spec.name} has none. "
                         f"Use an unconditional flow ({unconditional}), or a labelled dataset")
    return int(data_spec.classes)


class TransformFlow(Flow):
    """A flow ``x = f(z)``, ``z ~ N(0, I)`` over ``event_shape``, ``f`` a :class:`Transform`.

    ``log_prob(x) = log N(f^{-1}(x)) + log|det d f^{-1}/dx|``. Subclasses only build
    ``self.transform`` in their constructor.

    Class-conditional flows (``conditional = True``) also build ``self.embed``, an
    ``nn.Embedding(num_classes, E)``: labels ``(B,)`` given as ``context`` to any method
    become context features ``embed(y)`` ``(B, E)``, which the transform's conditioners
    receive (``log p(x | y) = log N(f_y^{-1}(x)) + log|det d f_y^{-1}/dx|``).
    Unconditional flows refuse a context.
    """

    transform: Transform
    embed: nn.Embedding  # conditional flows only

    def context_features(self, context: Tensor | None, n: int) -> Tensor | None:
        """Labels ``(n,)`` -> context features ``(n, E)``; ``None`` for unconditional flows
        (which refuse a context)."""
        y = self.check_context(context, n)
        return None if y is None else self.embed(y)

    def forward_and_log_det(self, z: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.transform.forward_and_log_det(z, context=self.context_features(context, len(z)))

    def inverse_and_log_det(self, x: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.transform.inverse_and_log_det(x, context=self.context_features(context, len(x)))

    def log_prob(self, x: Tensor, *, context: Tensor | None = None) -> Tensor:
        if tuple(x.shape[1:]) != tuple(self.event_shape):
            raise ValueError(f"{type(self).__name__}.log_prob expects (B, {', '.join(map(str, self.event_shape))})"
                             f", got {tuple(x.shape)}")
        z, ld = self.inverse_and_log_det(x, context=context)
        return standard_normal_log_prob(z) + ld

    def _rsample(self, n: int, *, context: Tensor | None, generator: torch.Generator | None) -> Tensor:
        dtype = next(self.parameters()).dtype
        z = torch.randn(n, *self.event_shape, generator=generator, device=self.device, dtype=dtype)
        return self.forward_and_log_det(z, context=context)[0]
