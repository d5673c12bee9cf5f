"""An independent Wasserstein critic, metric ``critic``.

Judging a model by a critic it never trained against (Danihelka et al. 2017,
arXiv 1705.05263; critic as in WGAN-GP, Gulrajani et al. 2017, arXiv 1704.00028):

1. Split held-out data and model samples at random into a *training* and an
   *evaluation* half each (seeded).
2. Train a fresh critic ``f`` (``nets.build_encoder``: an MLP for flat data, a small
   conv net for ``(C, H, W)`` images) for a fixed number of steps with the WGAN-GP
   loss ``E f(fake) - E f(real) + gp_weight * E (|grad f(x_hat)| - 1)^2`` on the
   training halves.
3. Report ``W = mean f(real_eval) - mean f(fake_eval)`` on the evaluation halves,
   with a normal-approximation confidence interval from the standard error
   ``sqrt(var f(real_eval) / n_r + var f(fake_eval) / n_f)``. Given the trained
   critic, the halves are independent of it, so this is a valid interval for
   ``E_data f - E_model f``, which is a lower bound on W1 when ``f`` is 1-Lipschitz
   (the gradient penalty makes it approximately so). Also reported: the estimate
   on the training halves (``critic_w_train``); a large excess over ``critic_w``
   means the critic overfits.

Bias of the soft constraint: the penalty lets the critic's slope exceed 1. For two
distributions whose optimal critic is linear (e.g. Gaussians differing by a shift
of W1 = w) the WGAN-GP optimum has slope ``1 + w / (2 gp_weight)``, so the estimate
is ``w (1 + w / (2 gp_weight))``: 20% high for w = 2 with the usual weight 10,
hence the default ``gp_weight = 100`` (1% high for w = 2 in normalised units).
``critic_lip``, the mean gradient norm of ``f`` at random interpolates of the
training halves, reports the slope actually reached (about 1 is good).

Scale: inputs are mapped to model space with ``dataset.spec`` when given, else
standardised by the scalar mean and std of the real training half; ``W`` is then
multiplied by that scale, so it is in **data-space** units (W1 is homogeneous under
a common scalar rescaling and invariant to a common shift).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from scipy.stats import norm
from torch import Tensor
from tqdm.auto import tqdm

from genlab.data.base import Dataset, DataSpec
from genlab.metrics.base import SampleMetric, _Accumulator
from genlab.nets.build import build_encoder


def gradient_penalty(critic: torch.nn.Module, real: Tensor, fake: Tensor, generator: torch.Generator) -> Tensor:
    """WGAN-GP penalty ``E (|grad f(x_hat)| - 1)^2`` on random interpolates (scalar)."""
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    t = torch.rand(shape, generator=generator, dtype=real.dtype, device=real.device)
    x_hat = (t * real + (1 - t) * fake).requires_grad_(True)
    (g,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (g.flatten(1).norm(dim=1) - 1).pow(2).mean()


def mean_grad_norm(critic: torch.nn.Module, real: Tensor, fake: Tensor, generator: torch.Generator) -> float:
    """Mean ``|grad f|`` at random interpolates of paired rows of ``real`` and ``fake``."""
    n = min(len(real), len(fake))
    shape = (n,) + (1,) * (real.dim() - 1)
    t = torch.rand(shape, generator=generator, dtype=real.dtype, device=real.device)
    with torch.enable_grad():
        x = (t * real[:n] + (1 - t) * fake[:n]).requires_grad_(True)
        (g,) = torch.autograd.grad(critic(x).sum(), x)
    return float(g.flatten(1).norm(dim=1).mean())


class IndependentCritic(SampleMetric):
    """Wasserstein-1 estimate by a freshly trained WGAN-GP critic, with a confidence interval."""

    higher_is_better = {"critic_w": False}

    def __init__(self, *, critic: dict[str, Any] | None = None, steps: int = 1000, batch_size: int = 256,
                 lr: float = 1e-3, gp_weight: float = 100.0, confidence: float = 0.95, seed: int = 0,
                 progress: bool = True, dataset: Dataset | None = None,
                 data_spec: DataSpec | None = None):
        if steps < 1 or not 0 < confidence < 1:
            raise ValueError(f"critic: need steps >= 1 and 0 < confidence < 1, got {steps}, {confidence}")
        self.critic_spec = dict(critic or {})
        self.steps, self.batch_size, self.lr, self.gp_weight = steps, batch_size, lr, gp_weight
        self.confidence, self.seed, self.progress = confidence, seed, progress
        self.spec = dataset.spec if dataset is not None else data_spec
        self.reset()

    def reset(self) -> None:
        self._acc = _Accumulator()

    def update(self, *, real: Tensor | None = None, fake: Tensor | None = None) -> None:
        self._acc.add(real, fake)

    def _split(self, x: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        if len(x) < 4:
            raise ValueError(f"critic needs at least 4 real and 4 fake samples, got {len(x)}")
        idx = torch.randperm(len(x), generator=gen)
        half = len(x) // 2
        return x[idx[:half]], x[idx[half:]]

    def _normaliser(self, real_train: Tensor) -> tuple[float, float]:
        if self.spec is not None:
            return float(self.spec.shift), float(self.spec.scale)
        return float(real_train.mean()), float(real_train.std()) or 1.0

    def _train(self, real: Tensor, fake: Tensor, gen: torch.Generator) -> torch.nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            f = build_encoder(self.critic_spec, in_shape=real.shape[1:], out_features=1).double()
        opt = torch.optim.Adam(f.parameters(), lr=self.lr, betas=(0.5, 0.9))
        bs = min(self.batch_size, len(real), len(fake))
        for _ in tqdm(range(self.steps), desc="critic", leave=False, disable=not self.progress):
            r = real[torch.randint(len(real), (bs,), generator=gen)]
            q = fake[torch.randint(len(fake), (bs,), generator=gen)]
            loss = f(q).mean() - f(r).mean() + self.gp_weight * gradient_penalty(f, r, q, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return f.eval()

    def _estimate(self, f: torch.nn.Module, real: Tensor, fake: Tensor) -> tuple[float, float]:
        with torch.no_grad():
            fr, ff = f(real).squeeze(-1), f(fake).squeeze(-1)
        se = math.sqrt(float(fr.var()) / len(fr) + float(ff.var()) / len(ff))
        return float(fr.mean() - ff.mean()), se

    def compute(self) -> dict[str, float]:
        real, fake = self._acc.get("real"), self._acc.get("fake")
        if real.shape[1:] != fake.shape[1:]:
            raise ValueError(f"critic: real samples have event shape {tuple(real.shape[1:])} but fake "
                             f"samples {tuple(fake.shape[1:])}; they must match")
        gen = torch.Generator().manual_seed(self.seed)
        (r_tr, r_ev), (f_tr, f_ev) = self._split(real, gen), self._split(fake, gen)
        shift, scale = self._normaliser(r_tr)
        r_tr, r_ev, f_tr, f_ev = ((t - shift) / scale for t in (r_tr, r_ev, f_tr, f_ev))
        with torch.enable_grad():
            f = self._train(r_tr, f_tr, gen)
        w, se = self._estimate(f, r_ev, f_ev)
        w_train, _ = self._estimate(f, r_tr, f_tr)
        lip = mean_grad_norm(f, r_tr, f_tr, gen)
        z = float(norm.ppf(0.5 + self.confidence / 2))
        return {"critic_w": w * scale, "critic_se": se * scale, "critic_lo": (w - z * se) * scale,
                "critic_hi": (w + z * se) * scale, "critic_w_train": w_train * scale, "critic_lip": lip}
