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

The architecture is :func:`coupling_stack`, whose coupling *step* (a mask -> a list of
transforms) is a parameter: neural spline flows (``spline.py``) reuse it with spline
couplings, and the conditional variants with conditioners that take a class embedding.

No batch normalisation (the paper's) so that ``log_prob`` of one example never
depends on the batch; ``actnorm: true`` adds ActNorm before every coupling instead.

``cond_realnvp`` (:class:`ConditionalRealNVP`) is the class-conditional version: a learned
class embedding ``e(y)`` (``embed_dim`` numbers) is concatenated to every MLP
conditioner's input, or broadcast as ``embed_dim`` constant extra channels of every conv
conditioner's input.
"""

from __future__ import annotations

import math
from typing import Callable, ClassVar, Sequence

import torch
from torch import nn

from genlab.data.base import DataSpec
from genlab.kwargs import PositiveInt
from genlab.models.flows.core import (ActNorm, AffineCoupling, Compose, FactorOut, Inverse, Squeeze, Transform,
                                      TransformFlow, channel_mask, checkerboard_mask, coupling_net, half_mask,
                                      labelled_classes)

#: A coupling step: binary mask (the shape the step sees) -> the transforms of one step.
StepFactory = Callable[[torch.Tensor], list[Transform]]


def coupling_stack(event_shape: Sequence[int], step: StepFactory, *, couplings: int, scales: int, per_scale: int,
                   name: str) -> Transform:
    """Real NVP's architecture with the coupling step as a parameter.

    Flat ``(D,)``: ``couplings`` steps on alternating halves. Images ``(C, H, W)``: the
    multi-scale stack of the module docstring (``scales`` scales of ``per_scale`` steps);
    ``name`` is used in the error when H, W are not divisible by ``2 ** scales``.
    """
    shape = tuple(event_shape)
    if len(shape) == 3:
        _, h, w = shape
        if scales < 1 or h % 2**scales or w % 2**scales:
            raise ValueError(f"{name} with scales={scales} needs H and W divisible by {2**scales}, "
                             f"got {h}x{w}; lower model.scales")
        return _scale(shape, scales, per_scale, step)
    d = math.prod(shape)
    return Compose([t for i in range(couplings) for t in step(half_mask(d, i % 2))])


def _scale(shape: tuple[int, int, int], scales: int, k: int, step: StepFactory) -> Transform:
    c, h, w = shape
    if scales == 0:  # last scale; a 1x1 image has no checkerboard, so it couples channels
        mask = channel_mask if h * w == 1 else checkerboard_mask
        return Compose([t for i in range(k + 1) for t in step(mask(shape, i % 2))])
    sq = (4 * c, h // 2, w // 2)
    layers: list[Transform] = []
    for i in range(k):
        layers += step(checkerboard_mask(shape, i % 2))
    layers.append(Squeeze())
    for i in range(k):
        layers += step(channel_mask(sq, i % 2))
    n_out = sq[0] // 2
    layers += [FactorOut(n_out, _scale((sq[0] - n_out, h // 2, w // 2), scales - 1, k, step)),
               Inverse(Squeeze())]
    return Compose(layers)


def affine_step(*, hidden: int, depth: int, clamp: float, actnorm: bool, context_features: int = 0) -> StepFactory:
    """Real NVP's step: [ActNorm,] affine coupling with an MLP/conv conditioner."""
    def step(mask: torch.Tensor) -> list[Transform]:
        net = coupling_net(tuple(mask.shape), hidden, depth, context_features=context_features)
        layer = AffineCoupling(mask, net, clamp)
        return [ActNorm(mask.shape[0]), layer] if actnorm else [layer]
    return step


class RealNVP(TransformFlow):
    """Real NVP: affine couplings (checkerboard/channel masks, squeeze, multi-scale for images)."""

    def __init__(self, *, data_spec: DataSpec, couplings: int = 8, hidden: PositiveInt = 64, depth: PositiveInt = 2,
                 scales: PositiveInt = 2, per_scale: int = 3, clamp: float = 3.0, actnorm: bool = False):
        super().__init__()
        self.event_shape = torch.Size(data_spec.event_shape)
        step = affine_step(hidden=hidden, depth=depth, clamp=clamp, actnorm=actnorm)
        self.transform = coupling_stack(self.event_shape, step, couplings=couplings, scales=scales,
                                        per_scale=per_scale, name="RealNVP")


class ConditionalRealNVP(TransformFlow):
    """Class-conditional Real NVP: ``p(x | y)``, labels ``y (B,)``; every conditioner sees a
    learned class embedding (concatenated to MLP inputs, extra channels for conv nets)."""

    conditional: ClassVar[bool] = True

    def __init__(self, *, data_spec: DataSpec, couplings: int = 8, hidden: PositiveInt = 64, depth: PositiveInt = 2,
                 scales: PositiveInt = 2, per_scale: int = 3, clamp: float = 3.0, actnorm: bool = False,
                 embed_dim: PositiveInt = 8):
        super().__init__()
        self.num_classes = labelled_classes(data_spec, "cond_realnvp", "realnvp")
        self.event_shape = torch.Size(data_spec.event_shape)
        self.embed = nn.Embedding(self.num_classes, embed_dim)
        step = affine_step(hidden=hidden, depth=depth, clamp=clamp, actnorm=actnorm, context_features=embed_dim)
        self.transform = coupling_stack(self.event_shape, step, couplings=couplings, scales=scales,
                                        per_scale=per_scale, name="ConditionalRealNVP")
