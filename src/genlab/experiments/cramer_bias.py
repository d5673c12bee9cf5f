"""Biased sample gradients of the Wasserstein distance, unbiased ones of the Cramer
distance (Bellemare et al. 2017, arXiv 1705.10743, Section 3).

Target ``P = Bernoulli(p)``, model ``Q_theta = Bernoulli(theta)``. Training sees
only minibatches: ``P_m``, the empirical distribution of ``m`` draws from ``P``.
The minimiser of the *expected sample distance* ``E d(P_m, Q_theta)`` is

* for the 1-Wasserstein distance: the median of ``K / m``, ``K ~ Binomial(m, p)``
  (for ``p = 0.3``: 0.0, 0.5, 0.2 at ``m = 1, 2, 5``): biased;
* for the squared Cramer distance ``l2^2 = int (F_P - F_Q)^2``: the mean ``p``
  for every ``m``: unbiased.

Both distances are computed from CDFs on the union of supports (no Bernoulli
short cut), exactly, and the expectation is an exact sum over ``K``. A second
check runs SGD on ``theta`` with sample gradients, as a GAN generator would.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from genlab.experiments import progress_bar, write_table


def _cdf_gaps(xa, wa, xb, wb):
    """``|F_a - F_b|`` on each interval between sorted support points, and the interval
    widths. Works on NumPy arrays and on torch tensors (differentiable in the weights)."""
    lib = torch if isinstance(wa, Tensor) or isinstance(wb, Tensor) else np
    xa, xb = np.asarray(xa, dtype=float), np.asarray(xb, dtype=float)
    if lib is torch:
        wa, wb = torch.as_tensor(wa, dtype=torch.float64), torch.as_tensor(wb, dtype=torch.float64)
    pts = np.unique(np.concatenate([xa, xb]))
    fa = [wa[np.flatnonzero(xa <= t)].sum() for t in pts[:-1]]
    fb = [wb[np.flatnonzero(xb <= t)].sum() for t in pts[:-1]]
    if lib is torch:
        gap = (torch.stack(fa) - torch.stack(fb)).abs() if fa else torch.zeros(0, dtype=torch.float64)
        return gap, torch.as_tensor(np.diff(pts))
    return np.abs(np.array(fa) - np.array(fb)), np.diff(pts)


def wasserstein1(xa, wa, xb, wb):
    """``W1 = int |F_a - F_b| dx`` between discrete 1-D distributions (points, weights)."""
    gap, width = _cdf_gaps(xa, wa, xb, wb)
    return (gap * width).sum()


def cramer2(xa, wa, xb, wb):
    """Squared Cramer distance ``l2^2 = int (F_a - F_b)^2 dx`` (half the squared energy distance)."""
    gap, width = _cdf_gaps(xa, wa, xb, wb)
    return (gap ** 2 * width).sum()


DISTANCES = {"wasserstein": wasserstein1, "cramer": cramer2}
_SUPPORT = np.array([0.0, 1.0])


def bernoulli(theta):
    """Support ``[0, 1]`` and weights ``[1 - theta, theta]`` (tensor weights if ``theta`` is one)."""
    if isinstance(theta, Tensor):
        return _SUPPORT, torch.stack([1 - theta, theta])
    return _SUPPORT, np.array([1 - theta, theta])


def expected_sample_distance(theta: float, p: float, m: int, distance: str) -> float:
    """``E_{K ~ Bin(m, p)} d(Bernoulli(K / m), Bernoulli(theta))``, exactly."""
    d = DISTANCES[distance]
    total = 0.0
    for k in range(m + 1):
        w = math.comb(m, k) * p ** k * (1 - p) ** (m - k)
        total += w * float(d(*bernoulli(k / m), *bernoulli(theta)))
    return total


def minimiser(p: float, m: int, distance: str, grid: int = 1001) -> float:
    """``argmin_theta`` of the expected sample distance on a uniform grid of [0, 1]."""
    thetas = np.linspace(0.0, 1.0, grid)
    values = [expected_sample_distance(t, p, m, distance) for t in thetas]
    return float(thetas[int(np.argmin(values))])


def sgd_theta(p: float, m: int, distance: str, *, steps: int = 2000, lr: float = 0.01,
              seed: int = 0) -> float:
    """SGD on ``theta`` with gradients of ``d(P_m, Q_theta)`` on fresh minibatches (step size
    ``lr / sqrt(1 + i / 100)``); returns the mean of the last half of the iterates."""
    g = torch.Generator().manual_seed(seed)
    theta = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    tail = []
    for i in range(steps):
        k = int((torch.rand(m, generator=g) < p).sum())
        loss = DISTANCES[distance](*bernoulli(k / m), *bernoulli(theta))
        (grad,) = torch.autograd.grad(loss, theta)
        with torch.no_grad():
            theta -= lr / math.sqrt(1 + i / 100) * grad
            theta.clamp_(0.0, 1.0)
        if i >= steps // 2:
            tail.append(float(theta.detach()))
    return float(np.mean(tail))


def run(*, out: str | Path, quick: bool = False, seeds: int = 3, progress: bool = True,
        p: float = 0.3, ms: tuple[int, ...] = (1, 2, 5, 10)) -> dict:
    """Minimisers of expected sample W1 and Cramer distances for ``P = B(p)``; writes
    ``cramer_bias.png`` and ``cramer_bias.md`` into ``out``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    grid = 201 if quick else 1001
    steps = 600 if quick else 3000
    seeds = 1 if quick else seeds
    thetas = np.linspace(0, 1, grid)
    res: dict = {"p": p, "m": list(ms), "minimiser": {}, "sgd": {}}
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    bar = progress_bar(len(ms) * 2, progress, "cramer-bias")
    for dist, ax in zip(("wasserstein", "cramer"), axes[:2]):
        res["minimiser"][dist], res["sgd"][dist] = {}, {}
        for m in ms:
            vals = np.array([expected_sample_distance(t, p, m, dist) for t in thetas])
            best = float(thetas[int(np.argmin(vals))])
            sgd = [sgd_theta(p, m, dist, steps=steps, seed=s) for s in range(seeds)]
            res["minimiser"][dist][m] = best
            res["sgd"][dist][m] = float(np.mean(sgd))
            line = ax.plot(thetas, vals - vals.min(), label=f"m={m}: argmin {best:.2f}")[0]
            ax.axvline(best, color=line.get_color(), ls=":")
            bar.update(1)
        ax.axvline(p, color="k", lw=0.8)
        ax.set(title=f"E sample {'W1' if dist == 'wasserstein' else 'Cramer l2^2'} (shifted to min 0)",
               xlabel="theta", ylabel="excess expected loss")
        ax.legend(fontsize=8)
    bar.close()
    x = np.arange(len(ms))
    axes[2].bar(x - 0.2, [res["sgd"]["wasserstein"][m] for m in ms], 0.4, label="SGD on sample W1")
    axes[2].bar(x + 0.2, [res["sgd"]["cramer"][m] for m in ms], 0.4, label="SGD on sample Cramer")
    axes[2].axhline(p, color="k", lw=0.8, label=f"true p = {p}")
    axes[2].set(xticks=x, xticklabels=[f"m={m}" for m in ms], ylabel="final theta", title="SGD with sample gradients")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "cramer_bias.png", dpi=110)
    plt.close(fig)
    rows = [[m, res["minimiser"]["wasserstein"][m], res["minimiser"]["cramer"][m],
             res["sgd"]["wasserstein"][m], res["sgd"]["cramer"][m]] for m in ms]
    write_table(out / "cramer_bias.md", f"Cramer vs Wasserstein sample bias, P = Bernoulli({p})",
                ["m", "argmin E W1(P_m, Q)", "argmin E l2^2(P_m, Q)", "SGD theta (W1)", "SGD theta (Cramer)"], rows)
    res["figure"], res["table"] = str(out / "cramer_bias.png"), str(out / "cramer_bias.md")
    return res
