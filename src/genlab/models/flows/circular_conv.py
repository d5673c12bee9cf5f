"""Invertible convolutional flow: circular convolutions computed with the FFT.

Karami, Schuurmans, Sohl-Dickstein, Dinh & Duckworth 2019, "Invertible Convolutional
Flow", arXiv 1901.05442.

A circular convolution ``y = k (*) x`` over a signal of ``N`` positions is multiplication
by a circulant matrix ``C``, which the DFT diagonalises: ``F(y) = F(k) * F(x)``. Hence

* forward: ``y = IFFT(FFT(k) FFT(x))``, ``O(N log N)``;
* inverse: ``x = IFFT(FFT(y) / FFT(k))`` (division in the Fourier domain);
* ``log|det C| = sum_f log|FFT(k)_f|`` over all ``N`` frequencies.

Near-singular kernels: a DFT coefficient near 0 makes ``log|det|`` -> -inf and the
inverse blow up. The layer therefore applies the circulant whose eigenvalues are the
kernel's DFT with a floor on the modulus, ``lambda' = lambda sqrt(1 + eps^2 / |lambda|^2)``
(``lambda' = eps`` where ``lambda = 0``; ``eps = min_modulus``): ``|lambda'| =
sqrt(|lambda|^2 + eps^2) >= eps``, the phase (and so the real, Hermitian structure) is
kept, and ``log|det| = sum_f 0.5 log(|lambda_f|^2 + eps^2)`` is exact for the map applied.
Where ``|lambda| >> eps`` this is the convolution by ``k`` up to a relative
``eps^2 / (2 |lambda|^2)``; :meth:`CircularConv.effective_kernel` is the kernel of the map.

Event shapes: ``(D,)`` is one channel of length ``D``; ``(C, *spatial)`` (e.g. images
``(C, H, W)``) gets a separate kernel per channel convolved over the spatial axes
(2-D circular convolution for images), followed by an invertible ``C x C`` channel
mixing when ``C > 1``. Each block ends with a learnable element-wise bijection
(sinh-arcsinh, Jones & Pewsey 2009, with an affine map), so the flow is not linear.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.kwargs import PositiveFloat, PositiveInt
from genlab.data.base import DataSpec
from genlab.models.base import Flow


def _layout(event_shape: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    """``(channels, spatial)``: ``(D,) -> (1, (D,))``, ``(C, *S) -> (C, S)``."""
    if len(event_shape) == 1:
        return 1, tuple(event_shape)
    return event_shape[0], tuple(event_shape[1:])


class CircularConv(nn.Module):
    """Per-channel circular convolution of ``(B, C, *spatial)`` by kernels ``(C, *kernel)``,
    zero-padded to ``spatial``; initialised at the identity (a delta kernel). Eigenvalue
    moduli are floored at ``min_modulus`` (see the module docstring)."""

    def __init__(self, channels: int, spatial: tuple[int, ...], kernel_size: int | None,
                 min_modulus: float = 1e-4):
        super().__init__()
        if not min_modulus > 0:
            raise ValueError(f"min_modulus must be > 0, got {min_modulus}")
        self.spatial = spatial
        self.min_modulus = float(min_modulus)
        ks = tuple(s if kernel_size is None else min(kernel_size, s) for s in spatial)
        kernel = torch.zeros(channels, *ks)
        kernel[(slice(None),) + (0,) * len(ks)] = 1.0
        self.kernel = nn.Parameter(kernel)

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(range(-len(self.spatial), 0))

    def full_kernel(self) -> Tensor:
        """``(C, *spatial)`` kernel, zero-padded at the high end of every axis."""
        pad: list[int] = []
        for s, k in zip(reversed(self.spatial), reversed(self.kernel.shape[1:])):
            pad += [0, s - k]
        return F.pad(self.kernel, pad)

    def spectrum(self) -> Tensor:
        """Complex ``(C, *spatial)`` DFT of the kernel (the circulant's eigenvalues before the floor)."""
        return torch.fft.fftn(self.full_kernel(), dim=self.dims)

    def _floored(self, lam: Tensor) -> Tensor:
        """``lambda sqrt(1 + eps^2/|lambda|^2)``, ``eps`` at ``lambda = 0`` (finite gradients there)."""
        r2 = lam.real**2 + lam.imag**2
        nonzero = r2 > 0
        gain = torch.sqrt(1 + self.min_modulus**2 / torch.where(nonzero, r2, torch.ones_like(r2)))
        return torch.where(nonzero, lam * gain, torch.full_like(lam, self.min_modulus))

    def _eigenvalues(self) -> Tensor:
        """Floored half spectrum (``rfftn``) of the map applied."""
        return self._floored(torch.fft.rfftn(self.full_kernel(), dim=self.dims))

    def effective_kernel(self) -> Tensor:
        """``(C, *spatial)`` kernel of the convolution actually applied (``full_kernel`` with the
        eigenvalue floor)."""
        return torch.fft.irfftn(self._eigenvalues(), s=self.spatial, dim=self.dims)

    def forward_and_log_det(self, x: Tensor) -> tuple[Tensor, Tensor]:
        k = self._eigenvalues()
        y = torch.fft.irfftn(torch.fft.rfftn(x, dim=self.dims) * k, s=self.spatial, dim=self.dims)
        return y, self.log_abs_det().expand(x.shape[0])

    def inverse_and_log_det(self, y: Tensor) -> tuple[Tensor, Tensor]:
        k = self._eigenvalues()
        x = torch.fft.irfftn(torch.fft.rfftn(y, dim=self.dims) / k, s=self.spatial, dim=self.dims)
        return x, -self.log_abs_det().expand(y.shape[0])

    def log_abs_det(self) -> Tensor:
        """``sum_f 0.5 log(|FFT(k)_f|^2 + eps^2)`` over channels and all frequencies (scalar):
        ``log|det|`` of the map applied, finite for every kernel."""
        lam = self.spectrum()
        return (0.5 * torch.log(lam.real**2 + lam.imag**2 + self.min_modulus**2)).sum()


class ChannelMix(nn.Module):
    """``(B, C, *spatial)``: the same invertible ``C x C`` matrix at every position
    (a 1x1 convolution), initialised to a random rotation."""

    def __init__(self, channels: int, positions: int):
        super().__init__()
        self.positions = positions
        self.weight = nn.Parameter(torch.linalg.qr(torch.randn(channels, channels))[0])

    def forward_and_log_det(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = torch.einsum("ij,bj...->bi...", self.weight, x)
        return y, (self.positions * torch.linalg.slogdet(self.weight)[1]).expand(x.shape[0])

    def inverse_and_log_det(self, y: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.einsum("ij,bj...->bi...", torch.linalg.inv(self.weight), y)
        return x, (-self.positions * torch.linalg.slogdet(self.weight)[1]).expand(y.shape[0])


def _log_cosh(t: Tensor) -> Tensor:
    a = t.abs()
    return a + torch.log1p(torch.exp(-2 * a)) - math.log(2.0)


class SinhArcsinh(nn.Module):
    """Element-wise ``y = mu + sigma * sinh(delta * asinh(x) - eps)`` per channel,
    ``(B, C, *spatial)``; ``delta, sigma > 0``; the identity at initialisation."""

    def __init__(self, channels: int, n_spatial: int):
        super().__init__()
        shape = (channels,) + (1,) * n_spatial
        self.mu, self.log_sigma = nn.Parameter(torch.zeros(shape)), nn.Parameter(torch.zeros(shape))
        self.eps, self.log_delta = nn.Parameter(torch.zeros(shape)), nn.Parameter(torch.zeros(shape))

    def forward_and_log_det(self, x: Tensor) -> tuple[Tensor, Tensor]:
        delta = self.log_delta.exp()
        inner = delta * torch.asinh(x) - self.eps
        y = self.mu + self.log_sigma.exp() * torch.sinh(inner)
        ld = self.log_sigma + self.log_delta + _log_cosh(inner) - 0.5 * torch.log1p(x * x)
        return y, ld.reshape(x.shape[0], -1).sum(1)

    def inverse_and_log_det(self, y: Tensor) -> tuple[Tensor, Tensor]:
        inner = torch.asinh((y - self.mu) * torch.exp(-self.log_sigma))
        x = torch.sinh((inner + self.eps) * torch.exp(-self.log_delta))
        ld = self.log_sigma + self.log_delta + _log_cosh(inner) - 0.5 * torch.log1p(x * x)
        return x, -ld.reshape(y.shape[0], -1).sum(1)


class ConvFlow(Flow):
    """Invertible convolutional flow (arXiv 1901.05442) on a standard normal base.

    Noise -> data applies ``blocks`` times: circular convolution (FFT), channel mixing
    (if ``C > 1``), element-wise sinh-arcsinh. ``kernel_size=None`` uses full-size
    kernels (every circulant); an integer ``k`` uses ``k`` (x ``k``) taps, zero-padded.
    Works for ``(D,)`` points/tabular rows and ``(C, H, W)`` images alike. ``min_modulus``
    floors the moduli of the convolutions' eigenvalues (module docstring), so that a
    near-singular kernel gives a finite log-det and a bounded inverse.
    """

    def __init__(self, *, data_spec: DataSpec, blocks: PositiveInt = 4, kernel_size: int | None = None,
                 min_modulus: PositiveFloat = 1e-4):
        super().__init__()
        self.event_shape = torch.Size(data_spec.event_shape)
        channels, spatial = _layout(tuple(data_spec.event_shape))
        self.view = (channels, *spatial)
        layers: list[nn.Module] = []
        for _ in range(blocks):
            layers.append(CircularConv(channels, spatial, kernel_size, min_modulus))
            if channels > 1:
                layers.append(ChannelMix(channels, math.prod(spatial)))
            layers.append(SinhArcsinh(channels, len(spatial)))
        self.layers = nn.ModuleList(layers)

    def _check(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != tuple(self.event_shape):
            raise ValueError(f"ConvFlow expects (B, {', '.join(map(str, self.event_shape))}), "
                             f"got {tuple(x.shape)}")
        return x.reshape(x.shape[0], *self.view)

    def forward_and_log_det(self, z: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self.check_context(context, len(z))
        h = self._check(z)
        total = h.new_zeros(h.shape[0])
        for layer in self.layers:
            h, ld = layer.forward_and_log_det(h)
            total = total + ld
        return h.reshape(z.shape), total

    def inverse_and_log_det(self, x: Tensor, *, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self.check_context(context, len(x))
        h = self._check(x)
        total = h.new_zeros(h.shape[0])
        for layer in reversed(self.layers):
            h, ld = layer.inverse_and_log_det(h)
            total = total + ld
        return h.reshape(x.shape), total

    def log_prob(self, x: Tensor, *, context: Tensor | None = None) -> Tensor:
        self.check_context(context, len(x))
        z, ld = self.inverse_and_log_det(x)
        flat = z.reshape(z.shape[0], -1)
        return -0.5 * (flat**2).sum(1) - 0.5 * flat.shape[1] * math.log(2 * math.pi) + ld

    def _rsample(self, n: int, *, context: Tensor | None, generator: torch.Generator | None) -> Tensor:
        ref = self.layers[0].kernel
        z = torch.randn(n, *self.event_shape, generator=generator, device=ref.device, dtype=ref.dtype)
        return self.forward_and_log_det(z)[0]
