"""Masked autoregressive flows: MADE (Germain et al. 2015, arXiv 1502.03509), MAF
(Papamakarios et al. 2017, arXiv 1705.07057) and its inverse direction, IAF
(Kingma et al. 2016, arXiv 1606.04934).

One :class:`MaskedAffine` layer on flattened data ``x (B, D)`` (any event shape is
flattened, so images work too): with ``(mu, alpha) = MADE(x)``,

* data -> noise (one pass): ``z = (x - mu(x_<i)) * exp(-alpha(x_<i))``, log-det
  ``-sum(alpha)``;
* noise -> data (``D`` passes): ``x_i = z_i * exp(alpha_i) + mu_i`` in order; after
  pass ``k`` the first ``k`` positions are exact, so ``D`` passes are exact.

MAF stacks layers with alternately natural and reversed orders: density is one
pass per layer, sampling ``D`` passes. IAF is the same stack inverted (sampling one
pass, density ``D`` passes), the direction a VAE posterior or a critic-trained
sampler wants. ``alpha = clamp * tanh(raw / clamp)`` bounds the scale.

Conditional MAF (``cond_maf``, arXiv 1705.07057 Sec. 3.4): a learned class embedding
``e(y)`` enters every MADE's first hidden layer (``MADE(context_features=E)``), so
``p(x | y) = prod_i p(x_i | x_<i, y)``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from genlab.kwargs import PositiveInt
from genlab.data.base import DataSpec
from genlab.models.flows.core import Compose, Inverse, Transform, TransformFlow, labelled_classes
from genlab.nets.made import MADE


class MaskedAffine(Transform):
    """MAF layer on ``(B, *event)`` flattened to ``(B, D)``; see the module docstring.
    ``context_features``: width of the context features its MADE takes (0: none)."""

    def __init__(self, dim: int, hidden: list[int], order: list[int] | None, clamp: float = 3.0,
                 context_features: int = 0):
        super().__init__()
        self.made = MADE(in_features=dim, hidden=hidden, out_per_dim=2, order=order,
                         context_features=context_features)
        self.dim, self.clamp = dim, clamp

    def _params(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        h = self.made(x, context).reshape(x.shape[0], 2, self.dim)
        return h[:, 0], self.clamp * torch.tanh(h[:, 1] / self.clamp)

    def inverse_and_log_det(self, x: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        flat = x.reshape(x.shape[0], -1)
        mu, alpha = self._params(flat, context)
        return ((flat - mu) * (-alpha).exp()).reshape(x.shape), -alpha.sum(1)

    def forward_and_log_det(self, z: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        zf = z.reshape(z.shape[0], -1)
        x = torch.zeros_like(zf)
        for _ in range(self.dim):
            mu, alpha = self._params(x, context)
            x = zf * alpha.exp() + mu
        return x.reshape(z.shape), alpha.sum(1)


def alternating_orders(dim: int, layers: int) -> list[list[int]]:
    """Autoregressive orders for a stack: natural, reversed, natural, ..."""
    nat = list(range(dim))
    return [nat if i % 2 == 0 else nat[::-1] for i in range(layers)]


def _stack(data_spec: DataSpec, layers: int, hidden: list[int], clamp: float, context_features: int = 0) -> Compose:
    d = data_spec.dim
    return Compose([MaskedAffine(d, list(hidden), o, clamp, context_features)
                    for o in alternating_orders(d, layers)])


class MADEFlow(TransformFlow):
    """Gaussian MADE: one masked autoregressive affine layer (the MAF paper's "MADE")."""

    def __init__(self, *, data_spec: DataSpec, hidden: list[int] = [64, 64], clamp: float = 3.0):
        super().__init__()
        self.event_shape = torch.Size(data_spec.event_shape)
        self.transform = _stack(data_spec, 1, hidden, clamp)


class MAF(TransformFlow):
    """Masked autoregressive flow: fast density, sampling in ``D`` passes per layer."""

    def __init__(self, *, data_spec: DataSpec, layers: PositiveInt = 5, hidden: list[int] = [64, 64],
                 clamp: float = 3.0):
        super().__init__()
        self.event_shape = torch.Size(data_spec.event_shape)
        self.transform = _stack(data_spec, layers, hidden, clamp)


class IAF(TransformFlow):
    """Inverse autoregressive flow: MAF's layers inverted, fast sampling, density in ``D`` passes."""

    def __init__(self, *, data_spec: DataSpec, layers: PositiveInt = 5, hidden: list[int] = [64, 64],
                 clamp: float = 3.0):
        super().__init__()
        self.event_shape = torch.Size(data_spec.event_shape)
        self.transform = Inverse(_stack(data_spec, layers, hidden, clamp))


class ConditionalMAF(TransformFlow):
    """Class-conditional MAF: ``p(x | y)``, labels ``y (B,)``; a learned class embedding
    (``embed_dim`` numbers) enters every MADE (arXiv 1705.07057, Sec. 3.4)."""

    conditional: ClassVar[bool] = True

    def __init__(self, *, data_spec: DataSpec, layers: PositiveInt = 5, hidden: list[int] = [64, 64],
                 clamp: float = 3.0, embed_dim: PositiveInt = 8):
        super().__init__()
        self.num_classes = labelled_classes(data_spec, "cond_maf", "maf")
        self.event_shape = torch.Size(data_spec.event_shape)
        self.embed = nn.Embedding(self.num_classes, embed_dim)
        self.transform = _stack(data_spec, layers, hidden, clamp, context_features=embed_dim)
