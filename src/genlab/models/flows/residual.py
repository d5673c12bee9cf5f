"""Residual flows: invertible residual networks ``z = x + g(x)`` with ``Lip(g) < 1``.

Chen, Behrmann, Duvenaud & Jacobsen 2019, "Residual Flows for Invertible Generative
Modeling", arXiv 1906.02735; built on Behrmann et al. 2019, "Invertible Residual
Networks" (i-ResNet), arXiv 1811.00995.

* ``g`` is an MLP whose linear maps are rescaled to spectral norm ``<= coeff < 1``
  (power iteration, :class:`SpectralLinear`) with 1-Lipschitz LipSwish activations,
  so ``x -> x + g(x)`` is invertible; the inverse is the fixed point of
  ``x <- z - g(x)`` (Banach), and gradients through it use the implicit function
  theorem (a fixed-point solve of ``(I + J)^T u = grad`` in the backward pass).
* ``log|det(I + J_g)| = sum_k (-1)^{k+1} tr(J^k) / k``. In ``"estimate"`` mode it is
  estimated without bias by a Russian-roulette truncation of that series
  (``n_exact_terms`` always, then each further term with probability ``1 - geom_p``)
  and Hutchinson's trace estimator (Rademacher ``v``). Its gradient is the Neumann
  series estimator ``v^T (sum_k (-J)^k) dJ v``, whose coefficient vector is built
  during the forward from vector-Jacobian products with no graph, so the graph of
  the power series is never kept (memory O(1) in the number of terms).
* ``"exact"`` mode builds the ``(D, D)`` Jacobian with ``D`` vector-Jacobian products
  and takes ``slogdet``: exact, for small ``D`` and for tests.

Data -> noise (``inverse_and_log_det``, used by ``log_prob``) is the cheap direction;
noise -> data (``forward_and_log_det``, ``rsample``) solves fixed points.
Any event shape is flattened to ``D`` features, so the network is an MLP.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.kwargs import PositiveInt
from genlab.data.base import DataSpec
from genlab.models.base import Flow

LogDetMode = Literal["estimate", "exact"]


class SpectralLinear(nn.Module):
    """``(B, in) -> (B, out)`` linear map with weight ``W / max(1, sigma / coeff)``.

    ``sigma = u^T W v`` is the power-iteration estimate of ``||W||_2``. The vectors
    ``u, v`` are buffers updated by :meth:`power_iterate`, which runs once after each
    gradient accumulation into ``W`` (i.e. once per training step, Miyato et al.
    arXiv 1802.05957), never inside a forward, so every call between two optimiser
    steps uses the same normalised weight (exact inverses, reproducible log_prob).
    """

    def __init__(self, in_features: int, out_features: int, *, coeff: float, n_power_iterations: int = 1):
        super().__init__()
        self.coeff, self.n_power_iterations = coeff, n_power_iterations
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.register_buffer("u", F.normalize(torch.randn(out_features), dim=0))
        self.register_buffer("v", F.normalize(torch.randn(in_features), dim=0))
        self.power_iterate(100)
        self._hooked = 0

    def _ensure_hook(self) -> None:
        """(Re-)attach the power-iteration hook, e.g. in a deep copy (hooks are not copied)."""
        if self._hooked != id(self.weight):
            self.weight.register_post_accumulate_grad_hook(self._after_grad)
            self._hooked = id(self.weight)

    def _after_grad(self, param: Tensor) -> None:
        if param is self.weight:
            self.power_iterate(self.n_power_iterations)

    @torch.no_grad()
    def power_iterate(self, n: int) -> None:
        """``n`` steps of power iteration on the current weight (in place on ``u, v``)."""
        u, v, w = self.u, self.v, self.weight.detach()
        for _ in range(n):
            v = F.normalize(w.t() @ u, dim=0, eps=1e-12)
            u = F.normalize(w @ v, dim=0, eps=1e-12)
        self.u.copy_(u)
        self.v.copy_(v)

    def normalized_weight(self) -> Tensor:
        sigma = torch.dot(self.u.clone(), self.weight @ self.v.clone())
        return self.weight / (sigma.abs() / self.coeff).clamp(min=1.0)

    def forward(self, x: Tensor) -> Tensor:
        self._ensure_hook()
        return F.linear(x, self.normalized_weight(), self.bias)


class LipSwish(nn.Module):
    """``x * sigmoid(beta x) / 1.1`` with learnable ``beta > 0`` per feature: 1-Lipschitz
    (arXiv 1906.02735, Sec. 4)."""

    def __init__(self, features: int):
        super().__init__()
        self.raw_beta = nn.Parameter(torch.full((features,), math.log(math.e - 1)))  # beta = 1

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(F.softplus(self.raw_beta) * x) / 1.1


def _rademacher(shape: torch.Size, like: Tensor, generator: torch.Generator | None) -> Tensor:
    bits = torch.randint(0, 2, shape, generator=generator, device=like.device)
    return (2 * bits - 1).to(like.dtype)


def _roulette_terms(n_exact: int, geom_p: float, generator: torch.Generator | None) -> int:
    """``n_exact + M`` with ``P(M >= m) = (1 - geom_p)^m`` (geometric number of extra terms)."""
    if geom_p >= 1.0:
        return n_exact
    u = torch.rand((), generator=generator).clamp_min(1e-300).item()
    return n_exact + min(int(math.log(u) / math.log1p(-geom_p)), 10_000)


def logdet_estimate(x: Tensor, gx: Tensor, *, n_exact: int, geom_p: float, need_grad: bool,
                    generator: torch.Generator | None) -> Tensor:
    """Unbiased estimate of ``log|det(I + dg/dx)|`` per row, ``x, gx: (B, D) -> (B,)``.

    Russian roulette over the power series with Hutchinson traces; when ``need_grad``
    the value carries the Neumann-series gradient (arXiv 1906.02735, Eq. 8)."""
    n = _roulette_terms(n_exact, geom_p, generator)

    def tail(k: int) -> float:  # P(N >= k)
        return 1.0 if k <= n_exact else (1.0 - geom_p) ** (k - n_exact)

    v = _rademacher(x.shape, x, generator)
    w, coef = v, v / tail(1)
    est = x.new_zeros(x.shape[0])
    for k in range(1, n + 1):
        w = torch.autograd.grad(gx, x, w, retain_graph=True)[0]  # v^T J^k
        est = est + (-1) ** (k + 1) / (k * tail(k)) * (w * v).sum(1)
        if need_grad and k < n:
            coef = coef + (-1) ** k / tail(k + 1) * w
    if not need_grad:
        return est.detach()
    vjp = torch.autograd.grad(gx, x, coef.detach(), create_graph=True)[0]  # coef^T J, differentiable
    surrogate = (vjp * v).sum(1)
    return est.detach() + surrogate - surrogate.detach()


def logdet_exact(x: Tensor, gx: Tensor, *, need_grad: bool) -> Tensor:
    """``log|det(I + dg/dx)|`` from the brute-force ``(B, D, D)`` Jacobian (``D`` VJPs)."""
    d = x.shape[1]
    rows = [torch.autograd.grad(gx[:, i].sum(), x, retain_graph=True, create_graph=need_grad)[0]
            for i in range(d)]
    jac = torch.stack(rows, 1)
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    return torch.linalg.slogdet(eye + jac)[1]


def _fixed_point_tol(t: Tensor) -> float:
    return 100 * torch.finfo(t.dtype).eps * (1.0 + t.abs().max().item())


class ResidualBlock(nn.Module):
    """``(B, D) -> (B, D)``: ``z = x + g(x)`` with ``Lip(g) <= coeff^(depth+1) < 1``."""

    def __init__(self, dim: int, *, hidden: int, depth: int, coeff: float, n_power_iterations: int,
                 max_iter: int):
        super().__init__()
        widths = [dim] + [hidden] * depth + [dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(SpectralLinear(a, b, coeff=coeff, n_power_iterations=n_power_iterations))
            if i < len(widths) - 2:
                layers.append(LipSwish(b))
        self.g = nn.Sequential(*layers)
        self.max_iter = max_iter

    def to_noise(self, x: Tensor, *, mode: LogDetMode, n_exact: int, geom_p: float,
                 generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        need_grad = torch.is_grad_enabled()
        with torch.enable_grad():
            if not x.requires_grad:
                x = x.detach().requires_grad_()
            gx = self.g(x)
            if mode == "exact":
                ld = logdet_exact(x, gx, need_grad=need_grad)
            else:
                ld = logdet_estimate(x, gx, n_exact=n_exact, geom_p=geom_p, need_grad=need_grad,
                                     generator=generator)
            z = x + gx
        return (z, ld) if need_grad else (z.detach(), ld.detach())

    @torch.no_grad()
    def _solve(self, z: Tensor) -> Tensor:
        tol, x = _fixed_point_tol(z), z.clone()
        for _ in range(self.max_iter):
            x_new = z - self.g(x)
            done = (x_new - x).abs().max().item() <= tol
            x = x_new
            if done:
                break
        return x

    def to_data(self, z: Tensor) -> Tensor:
        """Fixed-point inverse; differentiable by implicit differentiation."""
        x_star = self._solve(z.detach())
        if not torch.is_grad_enabled():
            return x_star
        x = z - self.g(x_star)  # same value; graph carries (dz - dg/dtheta)
        if x.requires_grad:
            x.register_hook(lambda grad: self._implicit_backward(x_star, grad))
        return x

    def _implicit_backward(self, x_star: Tensor, grad: Tensor) -> Tensor:
        """Solve ``(I + J)^T u = grad`` by ``u <- grad - J^T u``."""
        with torch.enable_grad():
            xs = x_star.detach().requires_grad_()
            gx = self.g(xs)
            tol, u = _fixed_point_tol(grad), grad
            for _ in range(self.max_iter):
                u_new = grad - torch.autograd.grad(gx, xs, u, retain_graph=True)[0]
                done = (u_new - u).abs().max().item() <= tol
                u = u_new
                if done:
                    break
        return u.detach()


class ElementwiseAffine(nn.Module):
    """``(B, D)``: ``z = x * exp(log_scale) + shift`` (a learnable ActNorm without data init)."""

    def __init__(self, dim: int):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.shift = nn.Parameter(torch.zeros(dim))

    def to_noise(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x * self.log_scale.exp() + self.shift, self.log_scale.sum().expand(x.shape[0])

    def to_data(self, z: Tensor) -> Tensor:
        return (z - self.shift) * torch.exp(-self.log_scale)


class ResidualFlow(Flow):
    """Residual flow (arXiv 1906.02735) on a standard normal base, for points/tabular
    data of any event shape (flattened to ``(B, D)``).

    ``logdet`` is the log-det mode in training mode, ``eval_logdet`` in eval mode
    (``"exact"`` by default: deterministic, fine up to D of a few hundred).
    ``log_prob``/``inverse_and_log_det`` accept ``generator=`` for the estimator's
    randomness (the global RNG otherwise).
    """

    def __init__(self, *, data_spec: DataSpec, blocks: PositiveInt = 4, hidden: PositiveInt = 64, depth: PositiveInt = 2,
                 coeff: float = 0.97, logdet: LogDetMode = "estimate", eval_logdet: LogDetMode = "exact",
                 n_exact_terms: int = 2, geom_p: float = 0.5, n_power_iterations: int = 1,
                 max_iter: int = 500):
        super().__init__()
        if not 0.0 < coeff < 1.0:
            raise ValueError(f"coeff must be in (0, 1) for g to be contractive; got {coeff}. Try 0.97")
        if not 0.0 < geom_p <= 1.0 or n_exact_terms < 1:
            raise ValueError(f"need 0 < geom_p <= 1 and n_exact_terms >= 1; got {geom_p}, {n_exact_terms}")
        for mode in (logdet, eval_logdet):
            if mode not in ("estimate", "exact"):
                raise ValueError(f"log-det mode must be 'estimate' or 'exact', got {mode!r}")
        self.event_shape = torch.Size(data_spec.event_shape)
        self.dim = data_spec.dim
        self.logdet, self.eval_logdet = logdet, eval_logdet
        self.n_exact_terms, self.geom_p = n_exact_terms, geom_p
        self.affines = nn.ModuleList(ElementwiseAffine(self.dim) for _ in range(blocks))
        self.blocks = nn.ModuleList(
            ResidualBlock(self.dim, hidden=hidden, depth=depth, coeff=coeff,
                          n_power_iterations=n_power_iterations, max_iter=max_iter) for _ in range(blocks))

    def _flat(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != tuple(self.event_shape):
            raise ValueError(f"ResidualFlow expects (B, {', '.join(map(str, self.event_shape))}), "
                             f"got {tuple(x.shape)}")
        return x.reshape(x.shape[0], self.dim)

    def inverse_and_log_det(self, x: Tensor, *, context: Tensor | None = None,
                            generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Data -> noise, ``(B, *event) -> (z, log|det dz/dx| (B,))``."""
        self.check_context(context, len(x))
        h = self._flat(x)
        mode = self.logdet if self.training else self.eval_logdet
        total = h.new_zeros(h.shape[0])
        for affine, block in zip(self.affines, self.blocks):
            h, ld_a = affine.to_noise(h)
            h, ld_b = block.to_noise(h, mode=mode, n_exact=self.n_exact_terms, geom_p=self.geom_p,
                                     generator=generator)
            total = total + ld_a + ld_b
        return h.reshape(x.shape), total

    def _to_data(self, z: Tensor) -> Tensor:
        h = self._flat(z)
        for affine, block in zip(reversed(self.affines), reversed(self.blocks)):
            h = affine.to_data(block.to_data(h))
        return h.reshape(z.shape)

    def forward_and_log_det(self, z: Tensor, *, context: Tensor | None = None,
                            generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Noise -> data by fixed-point inversion; log-det is minus that of the inverse at ``x``."""
        self.check_context(context, len(z))
        x = self._to_data(z)
        _, ld = self.inverse_and_log_det(x, generator=generator)
        return x, -ld

    def log_prob(self, x: Tensor, *, context: Tensor | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
        self.check_context(context, len(x))
        z, ld = self.inverse_and_log_det(x, generator=generator)
        flat = z.reshape(z.shape[0], -1)
        return -0.5 * (flat**2).sum(1) - 0.5 * self.dim * math.log(2 * math.pi) + ld

    def _rsample(self, n: int, *, context: Tensor | None, generator: torch.Generator | None) -> Tensor:
        z = torch.randn(n, *self.event_shape, generator=generator, device=self.device,
                        dtype=self.affines[0].shift.dtype)
        return self._to_data(z)
