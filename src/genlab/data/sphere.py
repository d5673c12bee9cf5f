"""Mixtures of von Mises-Fisher distributions on the circle S^1 and the sphere S^2.

Points are unit vectors in R^{p}, ``p = n + 1`` (``event_shape (p,)``,
``DataSpec(kind="sphere")``, model space = data space). The density is with respect
to the sphere's surface measure (arc length on S^1, area on S^2)::

    vMF(x; mu, kappa) = C_p(kappa) exp(kappa mu^T x),
    C_3(kappa) = kappa / (4 pi sinh kappa),      C_2(kappa) = 1 / (2 pi I_0(kappa)).

Sampling is exact: for S^2 the cosine ``w = mu^T x`` has the closed-form inverse CDF
``w = 1 + log(u + (1 - u) exp(-2 kappa)) / kappa``; for S^1 Wood's (1994) rejection
sampler with its Beta(1/2, 1/2) proposal drawn as ``sin^2(pi u / 2)``. The tangent
direction is uniform, and a Householder reflection maps the pole ``e_p`` to ``mu``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from genlab.kwargs import NonNegativeInt, PositiveInt
from genlab.data.base import DataSpec, Dataset, KnownDensity


def vmf_log_normalizer(kappa: Tensor, p: int) -> Tensor:
    """``log C_p(kappa)`` for ``p`` in {2, 3}; ``kappa > 0``, any shape."""
    kappa = kappa.double()
    if p == 3:  # log kappa - log 4pi - log sinh kappa, stable for large kappa
        log_sinh = kappa + torch.log1p(-torch.exp(-2 * kappa)) - math.log(2.0)
        return torch.log(kappa) - math.log(4 * math.pi) - log_sinh
    if p == 2:
        return -math.log(2 * math.pi) - (torch.log(torch.special.i0e(kappa)) + kappa)
    raise ValueError(f"von Mises-Fisher is implemented on S^1 and S^2 (p = 2 or 3), got p = {p}")


def _sample_cosine(n: int, kappa: Tensor, p: int, g: torch.Generator | None) -> Tensor:
    """``w = mu^T x`` for ``n`` draws, ``kappa: (n,)`` (float64)."""
    if p == 3:
        u = torch.rand(n, generator=g, dtype=torch.float64)
        return 1.0 + torch.log(u + (1 - u) * torch.exp(-2 * kappa)) / kappa
    b = (-2 * kappa + torch.sqrt(4 * kappa**2 + (p - 1) ** 2)) / (p - 1)
    x0 = (1 - b) / (1 + b)
    c = kappa * x0 + (p - 1) * torch.log(1 - x0**2)
    w = torch.empty(n, dtype=torch.float64)
    todo = torch.arange(n)
    while len(todo):
        m = len(todo)
        z = torch.sin(math.pi * torch.rand(m, generator=g, dtype=torch.float64) / 2) ** 2  # Beta(1/2, 1/2)
        u = torch.rand(m, generator=g, dtype=torch.float64)
        bb, xx, cc, kk = b[todo], x0[todo], c[todo], kappa[todo]
        cand = (1 - (1 + bb) * z) / (1 - (1 - bb) * z)
        ok = kk * cand + (p - 1) * torch.log(1 - xx * cand) - cc >= torch.log(u)
        w[todo[ok]] = cand[ok]
        todo = todo[~ok]
    return w


def sample_vmf(mu: Tensor, kappa: Tensor, g: torch.Generator | None = None) -> Tensor:
    """One exact draw per row: ``mu: (n, p)`` unit vectors, ``kappa: (n,)`` -> ``(n, p)`` float64."""
    n, p = mu.shape
    mu, kappa = mu.double(), kappa.double()
    w = _sample_cosine(n, kappa, p, g).clamp(-1.0, 1.0)
    tangent = torch.randn(n, p - 1, generator=g, dtype=torch.float64)
    tangent = tangent / tangent.norm(dim=1, keepdim=True)
    x = torch.cat([torch.sqrt(1 - w**2)[:, None] * tangent, w[:, None]], 1)  # around e_p
    pole = torch.zeros(p, dtype=torch.float64)
    pole[-1] = 1.0
    h = pole - mu  # Householder: I - 2 h h^T / |h|^2 maps e_p to mu
    hn = (h * h).sum(1, keepdim=True)
    safe = hn.squeeze(1) > 1e-12
    proj = torch.where(safe[:, None], 2 * (x * h).sum(1, keepdim=True) / hn.clamp_min(1e-12) * h, 0.0)
    return x - proj


@dataclass
class VMFMixtureDataset(Dataset, KnownDensity):
    """An equal-weight mixture of vMF distributions: ``means (K, p)``, ``kappas (K,)``."""

    means: Tensor = None  # type: ignore[assignment]
    kappas: Tensor = None  # type: ignore[assignment]

    def log_prob(self, x: Tensor) -> Tensor:
        """``(B, p)`` unit vectors -> ``(B,)`` log density w.r.t. the surface measure."""
        p = self.means.shape[1]
        log_comp = vmf_log_normalizer(self.kappas, p) + self.kappas.double() * (x.double() @ self.means.double().t())
        return (torch.logsumexp(log_comp, 1) - math.log(len(self.means))).to(x.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        k = torch.randint(len(self.means), (n,), generator=generator)
        return sample_vmf(self.means[k], self.kappas[k], generator).float()


def _vmf_mixture(name: str, means: list[list[float]], kappa: float | list[float], n_train: int,
                 n_test: int, seed: int) -> VMFMixtureDataset:
    mu = torch.tensor(means, dtype=torch.float64)
    if mu.ndim != 2 or mu.shape[1] not in (2, 3) or not (mu.norm(dim=1) > 0).all():
        raise ValueError(f"{name}: means must be a list of non-zero vectors of length 2 or 3, got {means}")
    mu = mu / mu.norm(dim=1, keepdim=True)
    kap = torch.tensor(kappa if isinstance(kappa, list) else [kappa] * len(mu), dtype=torch.float64)
    if kap.shape != (len(mu),) or not (kap > 0).all():
        raise ValueError(f"{name}: kappa must be > 0, one value or one per mean; got {kappa}")
    spec = DataSpec(name=name, kind="sphere", event_shape=(mu.shape[1],))
    empty = torch.zeros(0, mu.shape[1])
    probe = VMFMixtureDataset(spec=spec, train=empty, test=empty, means=mu, kappas=kap)
    g = torch.Generator().manual_seed(seed)
    return VMFMixtureDataset(spec=spec, train=probe.sample(n_train, g), test=probe.sample(n_test, g),
                             info={"modes": len(mu), "kappa": kap.tolist()}, means=mu, kappas=kap)


_TETRAHEDRON = [[1.0, 1.0, 1.0], [1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]]


def vmf_s2(*, n_train: PositiveInt = 20000, n_test: NonNegativeInt = 5000, seed: int = 0, kappa: float | list[float] = 10.0,
           means: list[list[float]] | None = None) -> VMFMixtureDataset:
    """Mixture of vMF distributions on the sphere S^2 (points in R^3); default: 4 modes
    at the vertices of a tetrahedron, kappa 10."""
    return _vmf_mixture("vmf_s2", means or _TETRAHEDRON, kappa, n_train, n_test, seed)


def vmf_s1(*, n_train: PositiveInt = 20000, n_test: NonNegativeInt = 5000, seed: int = 0, kappa: float | list[float] = 8.0,
           means: list[list[float]] | None = None) -> VMFMixtureDataset:
    """Mixture of von Mises distributions on the circle S^1 (points in R^2); default:
    3 modes at angles 0, 2pi/3, 4pi/3, kappa 8."""
    default = [[math.cos(a), math.sin(a)] for a in (0.0, 2 * math.pi / 3, 4 * math.pi / 3)]
    return _vmf_mixture("vmf_s1", means or default, kappa, n_train, n_test, seed)
