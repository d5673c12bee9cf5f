"""Glow (Kingma and Dhariwal 2018, arXiv 1807.03039).

One *step of flow* is ActNorm (data-dependent init, Sec. 3.1) -> invertible 1x1
convolution in LU form (Sec. 3.2) -> affine coupling (Sec. 3.3).

* Images ``(C, H, W)``: ``levels`` levels, each a squeeze, ``steps`` steps of flow
  with channel-split couplings, then (except at the last level) half the channels
  are factored out (multi-scale, as in Real NVP). H and W must be divisible by
  ``2 ** levels``; digits ``(1, 8, 8)`` work with ``levels`` 1..3. ``z`` is
  unsqueezed back to the event shape.
* Flat data ``(D,)``: ``steps`` steps of flow where the 1x1 convolution is an
  LU-parametrised ``D x D`` linear map and couplings keep alternating halves.
"""

from __future__ import annotations

import torch

from genlab.kwargs import PositiveInt
from genlab.data.base import DataSpec
from genlab.models.flows.core import (ActNorm, AffineCoupling, Compose, FactorOut, Inverse,
                                      LUInvertibleLinear, Squeeze, Transform, TransformFlow, channel_mask,
                                      coupling_net, half_mask)


class Glow(TransformFlow):
    """Glow: ActNorm, LU 1x1 convolution (an LU linear map on flat data) and affine coupling."""

    def __init__(self, *, data_spec: DataSpec, steps: PositiveInt = 8, levels: int = 2, hidden: PositiveInt = 64,
                 depth: PositiveInt = 2, clamp: float = 3.0):
        super().__init__()
        self.event_shape = torch.Size(data_spec.event_shape)
        self._opts = dict(hidden=hidden, depth=depth, clamp=clamp)
        if len(self.event_shape) == 3:
            c, h, w = self.event_shape
            if levels < 1 or h % 2**levels or w % 2**levels:
                raise ValueError(f"Glow with levels={levels} needs H and W divisible by {2**levels}, "
                                 f"got {h}x{w}; lower model.levels")
            self.transform = self._level(tuple(self.event_shape), levels, steps)
        else:
            d = data_spec.dim
            self.transform = Compose([t for i in range(steps) for t in self._step(half_mask(d, i % 2))])

    def _step(self, mask: torch.Tensor) -> list[Transform]:
        c = mask.shape[0]
        net = coupling_net(tuple(mask.shape), self._opts["hidden"], self._opts["depth"])
        return [ActNorm(c), LUInvertibleLinear(c), AffineCoupling(mask, net, self._opts["clamp"])]

    def _level(self, shape: tuple[int, int, int], levels: int, steps: int) -> Transform:
        c, h, w = shape
        sq = (4 * c, h // 2, w // 2)
        layers: list[Transform] = [Squeeze()]
        for i in range(steps):
            layers += self._step(channel_mask(sq, i % 2))
        if levels > 1:
            n_out = sq[0] // 2
            layers.append(FactorOut(n_out, self._level((sq[0] - n_out, h // 2, w // 2), levels - 1, steps)))
        layers.append(Inverse(Squeeze()))
        return Compose(layers)
