"""Real NVP (Dinh, Sohl-Dickstein and Bengio 2016, arXiv 1605.08803).

Affine coupling layers (:class:`~genlab.models.flows.core.AffineCoupling`) on a
standard normal base.

* Flat data ``(D,)``: ``couplings`` layers alternating which half of the features
  is kept; MLP conditioners.
* Images ``(C, H, W)``: the multi-scale architecture of Sec. 3.6. At each of
  ``scales`` scales: ``per_scale`` checkerboard couplings, a squeeze
  ``(C, H, W) -> (4C, H/2, W/2)``, ``per_scale`` channel couplings, then half the
  channels are factored out to the base; the last scale is ``per_scale + 1``
  checkerboard couplings. H and W must be divisible by ``2 ** scales``; digits
  ``(1, 8, 8)`` work with ``scales`` 1 or 2 (the last scale then sees 2x2 images).
  If the last scale is 1x1 it uses channel masks instead. The output ``z`` is unsqueezed back to ``(C, H, W)`` (a permutation of an i.i.d.
  normal is i.i.d. normal), so ``z`` has the event shape.

No batch normalisation (the paper's) so that ``log_prob`` of one example never
depends on the batch; ``actnorm: true`` adds ActNorm before every coupling instead.
"""

from __future__ import annotations

import torch

from genlab.kwargs import PositiveInt
from genlab.data.base import DataSpec
from genlab.models.flows.core import (ActNorm, AffineCoupling, Compose, FactorOut, Inverse, Squeeze,
                                      Transform, TransformFlow, channel_mask, checkerboard_mask,
                                      coupling_net, half_mask)


def _coupling(mask: torch.Tensor, hidden: int, depth: int, clamp: float, actnorm: bool) -> list[Transform]:
    layer = AffineCoupling(mask, coupling_net(tuple(mask.shape), hidden, depth), clamp)
    return [ActNorm(mask.shape[0]), layer] if actnorm else [layer]


class RealNVP(TransformFlow):
    """Real NVP: affine couplings (checkerboard/channel masks, squeeze, multi-scale for images)."""

    def __init__(self, *, data_spec: DataSpec, couplings: int = 8, hidden: PositiveInt = 64, depth: PositiveInt = 2,
                 scales: PositiveInt = 2, per_scale: int = 3, clamp: float = 3.0, actnorm: bool = False):
        super().__init__()
        self.event_shape = torch.Size(data_spec.event_shape)
        self._opts = dict(hidden=hidden, depth=depth, clamp=clamp, actnorm=actnorm)
        if len(self.event_shape) == 3:
            c, h, w = self.event_shape
            if scales < 1 or h % 2**scales or w % 2**scales:
                raise ValueError(f"RealNVP with scales={scales} needs H and W divisible by {2**scales}, "
                                 f"got {h}x{w}; lower model.scales")
            self.transform = self._scale(tuple(self.event_shape), scales, per_scale)
        else:
            d = data_spec.dim
            layers: list[Transform] = []
            for i in range(couplings):
                layers += _coupling(half_mask(d, i % 2), **self._opts)
            self.transform = Compose(layers)

    def _scale(self, shape: tuple[int, int, int], scales: int, k: int) -> Transform:
        c, h, w = shape
        if scales == 0:  # last scale; a 1x1 image has no checkerboard, so it couples channels
            mask = channel_mask if h * w == 1 else checkerboard_mask
            return Compose([t for i in range(k + 1) for t in _coupling(mask(shape, i % 2), **self._opts)])
        sq = (4 * c, h // 2, w // 2)
        layers: list[Transform] = []
        for i in range(k):
            layers += _coupling(checkerboard_mask(shape, i % 2), **self._opts)
        layers.append(Squeeze())
        for i in range(k):
            layers += _coupling(channel_mask(sq, i % 2), **self._opts)
        n_out = sq[0] // 2
        layers += [FactorOut(n_out, self._scale((sq[0] - n_out, h // 2, w // 2), scales - 1, k)),
                   Inverse(Squeeze())]
        return Compose(layers)
