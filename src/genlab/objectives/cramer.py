"""Cramer GAN (Bellemare et al. 2017, arXiv 1705.10743).

The critic is a feature map ``h: x -> R^k``. With data ``x_r`` and two independent
batches of samples ``x_g, x_g'``, the generator minimises the (generalised)
energy distance in feature space, whose sample gradients are unbiased::

    L_g = E ||h(x_r) - h(x_g)|| + E ||h(x_r) - h(x_g')|| - E ||h(x_g) - h(x_g')||

The critic maximises the surrogate ``f(x_r) - f(x_g)`` of the paper's Algorithm 1,
with ``f(x) = ||h(x) - h(x_g')|| - ||h(x)||``, under a two-sided gradient penalty
on ``f`` at interpolates of ``x_r`` and ``x_g`` (default ``[{name: gp, weight: 10}]``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from genlab.data.base import Batch
from genlab.models.base import GenerativeModel
from genlab.objectives.adversarial import CriticObjective
from genlab.objectives.base import LossOutput


def _dist(a: Tensor, b: Tensor) -> Tensor:
    return (a - b).norm(dim=-1)


class CramerGAN(CriticObjective):
    """Cramer GAN (arXiv 1705.10743): energy distance between data and samples in the
    critic's ``features``-dimensional space; critic trained on the surrogate
    ``f(x_r) - f(x_g)`` with a gradient penalty on ``f``."""

    def __init__(self, *, features: int = 32, critic: dict[str, Any] | None = None,
                 penalty: list[dict] | None = None, spectral_norm: bool = False, pack: int = 1):
        penalty = [{"name": "gp", "weight": 10.0}] if penalty is None else penalty
        super().__init__(critic=critic, penalty=penalty, spectral_norm=spectral_norm, pack=pack)
        self.features = features

    def critic_out_features(self) -> int:
        return self.features

    def h(self, xp: Tensor) -> Tensor:
        """Features ``(N, features)`` of packed inputs."""
        return self._critic()(xp)

    def surrogate_critic(self, h_ref: Tensor):
        """``f(x) = ||h(x) - h(x_g')|| - ||h(x)||`` with ``h_ref = h(x_g')`` paired by row."""
        def f(xp: Tensor) -> Tensor:
            hx = self.h(xp)
            return _dist(hx, h_ref[: len(hx)]) - hx.norm(dim=-1)
        return f

    def loss(self, player: str, model: GenerativeModel, batch: Batch, *, step: int = 0,
             generator: torch.Generator | None = None) -> LossOutput:
        x = batch.x
        b = x.shape[0]
        if player == "critic":
            with torch.no_grad():
                fakes = model.rsample(2 * b, generator=generator)
            rp, fp, fp2 = self.packed(x), self.packed(fakes[:b]), self.packed(fakes[b:])
            f = self.surrogate_critic(self.h(fp2))
            surrogate = f(rp).mean() - f(fp).mean()
            loss = -surrogate
            logs = {"surrogate": surrogate.item()}
            if self.penalties:
                pen, plogs = self.penalty_terms(f, rp, fp, generator)
                loss = loss + pen
                logs.update(plogs)
            logs["loss"] = loss.item()
            return LossOutput(loss, logs)
        if player == "generator":
            fakes = model.rsample(2 * b, generator=generator)
            hr, hg, hg2 = self.h(self.packed(x)), self.h(self.packed(fakes[:b])), self.h(self.packed(fakes[b:]))
            loss = self.energy_loss(hr, hg, hg2)
            return LossOutput(loss, {"loss": loss.item()})
        raise ValueError(f"CramerGAN has players {self.players}, got {player!r}")

    @staticmethod
    def energy_loss(hr: Tensor, hg: Tensor, hg2: Tensor) -> Tensor:
        """``E||hr - hg|| + E||hr - hg2|| - E||hg - hg2||`` (rows paired)."""
        return _dist(hr, hg).mean() + _dist(hr, hg2).mean() - _dist(hg, hg2).mean()

    @torch.no_grad()
    def divergence_estimate(self, real: Tensor, fake: Tensor) -> float:
        """Energy distance ``2E||h(X)-h(Y)|| - E||h(X)-h(X')|| - E||h(Y)-h(Y')||`` in feature
        space, from ``real`` and ``fake`` split into halves (rows paired)."""
        hr, hf = self.h(self.packed(real)), self.h(self.packed(fake))
        n = min(len(hr), len(hf)) // 2
        r1, r2, g1, g2 = hr[:n], hr[n:2 * n], hf[:n], hf[n:2 * n]
        return float(_dist(r1, g1).mean() + _dist(r2, g2).mean() - _dist(r1, r2).mean() - _dist(g1, g2).mean())
