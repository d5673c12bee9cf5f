"""A critic net with optional class conditioning and class heads, built from the
encoder nets (:func:`genlab.nets.build.build_encoder`). No probabilistic meaning:
``(x, y) -> (score, logits)``.

``phi(x) = leaky_relu(body(x))`` is a ``features``-wide representation; then

* ``conditioning: none``: ``score = psi(phi(x))`` (``psi`` linear);
* ``conditioning: projection`` (Miyato & Koyama 2018, arXiv 1802.05637):
  ``score = psi(phi(x)) + <embed(y), phi(x)>``;
* ``conditioning: concat``: the one-hot label is appended to the input (as extra
  features for flat data ``(D,)`` or as constant extra channels for ``(C, ...)``
  data), ``score = psi(phi([x, onehot(y)]))`` (Mirza & Osindero 2014, arXiv 1411.1784).

``heads``: widths of extra linear heads on ``phi(x)`` (e.g. an auxiliary classifier's
``K`` logits, AC-GAN); they never see the label.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.nets.build import build_encoder

Conditioning = Literal["none", "projection", "concat"]
CONDITIONINGS = ("none", "projection", "concat")


def concat_shape(in_shape: Sequence[int], classes: int) -> tuple[int, ...]:
    """Input shape after appending ``classes`` one-hot features/channels to the first event axis."""
    shape = tuple(in_shape)
    return (shape[0] + classes, *shape[1:])


def concat_onehot(x: Tensor, y: Tensor, classes: int) -> Tensor:
    """``x`` ``(B, C, ...)`` and labels ``(B,)`` -> ``(B, C + classes, ...)``: the one-hot label
    broadcast over the remaining event axes."""
    onehot = F.one_hot(y, classes).to(x.dtype)
    onehot = onehot.reshape(*onehot.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
    return torch.cat([x, onehot], 1)


class ConditionalCritic(nn.Module):
    """``(B, *in_shape)`` inputs and ``(B,)`` labels -> scores ``(B,)`` and head outputs
    ``[(B, h) for h in heads]``. ``body``: encoder spec ``{name: auto|mlp|conv, **kwargs}``."""

    def __init__(self, *, body: dict[str, Any] | None, in_shape: Sequence[int], classes: int,
                 conditioning: Conditioning = "projection", features: int = 128, heads: Sequence[int] = ()):
        super().__init__()
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"unknown conditioning {conditioning!r}; choose one of {', '.join(CONDITIONINGS)}")
        self.classes, self.conditioning = int(classes), conditioning
        shape = concat_shape(in_shape, classes) if conditioning == "concat" else tuple(in_shape)
        self.body = build_encoder(body, in_shape=shape, out_features=features)
        self.psi = nn.Linear(features, 1)
        self.embed = nn.Embedding(classes, features) if conditioning == "projection" else None
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, std=0.02)  # starts close to the unconditional critic
        self.heads = nn.ModuleList(nn.Linear(features, h) for h in heads)

    def features(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """``phi``: ``(B, features)`` (``y`` is needed only with ``concat``)."""
        if self.conditioning == "concat":
            x = concat_onehot(x, self._labels(y, x), self.classes)
        return F.leaky_relu(self.body(x), 0.2)

    def score(self, phi: Tensor, y: Tensor | None = None) -> Tensor:
        """The scalar critic ``(B,)`` from features ``phi`` (``y`` needed with ``projection``)."""
        s = self.psi(phi).squeeze(-1)
        if self.embed is not None:
            s = s + (self.embed(self._labels(y, phi)) * phi).sum(-1)
        return s

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        phi = self.features(x, y)
        return self.score(phi, y), [h(phi) for h in self.heads]

    def _labels(self, y: Tensor | None, like: Tensor) -> Tensor:
        if y is None:
            raise ValueError(f"this critic is conditioned by {self.conditioning}: pass labels y ({like.shape[0]},)")
        if y.shape != (like.shape[0],):
            raise ValueError(f"labels must have shape ({like.shape[0]},), got {tuple(y.shape)}")
        return y
