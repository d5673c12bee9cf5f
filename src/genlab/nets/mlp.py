"""Multi-layer perceptrons. No probabilistic meaning: tensors in, tensors out."""

from __future__ import annotations

import math
from typing import Sequence

from torch import Tensor, nn

from genlab.kwargs import NonNegativeInt, PositiveInt

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class MLP(nn.Module):
    """``(B, *in_shape)`` -> ``(B, out_features)``: ``depth`` hidden layers of ``hidden`` units."""

    def __init__(self, *, in_shape: Sequence[int], out_features: int, hidden: PositiveInt = 128,
                 depth: NonNegativeInt = 3, activation: str = "relu"):
        super().__init__()
        self.in_shape = tuple(in_shape)
        layers: list[nn.Module] = []
        width = math.prod(self.in_shape)
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), globals()["activation"](activation)]
            width = hidden
        layers.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.reshape(x.shape[0], -1))
