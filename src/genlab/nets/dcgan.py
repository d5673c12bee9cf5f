"""DCGAN-style convolutional stacks (Radford et al. 2015, arXiv 1511.06434) for
images whose height and width are multiples of 4 (8x8 digits included).

The number of stride-2 stages is the number of times both sides halve while
staying >= 2 pixels, capped at 4; at least 2.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn


def n_stages(height: int, width: int) -> int:
    if height % 4 or width % 4:
        raise ValueError(f"DCGAN nets need image sides that are multiples of 4, got {height}x{width}; "
                         "pad or crop the images, or use an MLP")
    k = 0
    while k < 4 and height % 2 ** (k + 1) == 0 and width % 2 ** (k + 1) == 0 and height // 2 ** (k + 1) >= 2 \
            and width // 2 ** (k + 1) >= 2:
        k += 1
    return max(k, 2)


class ConvDecoder(nn.Module):
    """``(B, in_features)`` -> ``(B, C, H, W)`` by a linear layer and transposed convolutions."""

    def __init__(self, *, in_features: int, out_shape: Sequence[int], width: int = 64,
                 batch_norm: bool = True):
        super().__init__()
        c, h, w = out_shape
        k = n_stages(h, w)
        self.base = (width * 2 ** (k - 1), h // 2**k, w // 2**k)
        self.fc = nn.Linear(in_features, self.base[0] * self.base[1] * self.base[2])
        layers: list[nn.Module] = []
        ch = self.base[0]
        for i in range(k):
            layers += [nn.BatchNorm2d(ch) if batch_norm else nn.Identity(), nn.ReLU()]
            out = c if i == k - 1 else ch // 2
            layers.append(nn.ConvTranspose2d(ch, out, 4, stride=2, padding=1))
            ch = out
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(self.fc(z).reshape(z.shape[0], *self.base))


class ConvEncoder(nn.Module):
    """``(B, C, H, W)`` -> ``(B, out_features)`` by strided convolutions and a linear layer.

    No batch norm by default, so that gradient penalties see per-sample gradients.
    """

    def __init__(self, *, in_shape: Sequence[int], out_features: int, width: int = 64,
                 layer_norm: bool = False):
        super().__init__()
        c, h, w = in_shape
        k = n_stages(h, w)
        layers: list[nn.Module] = []
        ch = c
        for i in range(k):
            out = width * 2**i
            layers += [nn.Conv2d(ch, out, 4, stride=2, padding=1)]
            if layer_norm:
                layers.append(nn.GroupNorm(1, out))
            layers.append(nn.LeakyReLU(0.2))
            ch = out
        self.net = nn.Sequential(*layers)
        self.fc = nn.Linear(ch * (h // 2**k) * (w // 2**k), out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.net(x).flatten(1))
