"""MMD-GAN with a learned feature critic and a gradient penalty (Li et al. 2017,
arXiv 1705.08584; the gradient-penalised form of Binkowski et al. 2018,
"Demystifying MMD GANs", arXiv 1801.01401).

The critic is a feature map ``h: x -> R^k``; the kernel is a fixed RBF mixture
on features, ``k(x, y) = sum_s exp(-||h(x) - h(y)||^2 / (2 s^2))``. The critic
maximises ``MMD^2_u(h(X), h(Y))`` minus a penalty on the witness function
``w(x) = mean_i k(x, x_i) - mean_j k(x, y_j)`` (default ``[{name: gp, weight: 1}]``);
the generator minimises ``MMD^2_u``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from genlab.data.base import Batch
from genlab.models.base import GenerativeModel
from genlab.objectives.adversarial import CriticObjective
from genlab.objectives.base import LossOutput
from genlab.objectives.mmd import mmd2_unbiased, rbf_mixture


class MMDGAN(CriticObjective):
    """MMD-GAN (arXiv 1705.08584, 1801.01401): ``MMD^2_u`` with an RBF-mixture kernel
    (bandwidths ``sigmas``) on ``features``-dimensional critic features."""

    def __init__(self, *, features: int = 16, sigmas: list[float] | None = None,
                 critic: dict[str, Any] | None = None, penalty: list[dict] | None = None,
                 spectral_norm: bool = False, pack: int = 1):
        penalty = [{"name": "gp", "weight": 1.0}] if penalty is None else penalty
        super().__init__(critic=critic, penalty=penalty, spectral_norm=spectral_norm, pack=pack)
        self.features = features
        self.sigmas = list(sigmas) if sigmas is not None else [0.5, 1.0, 2.0, 4.0, 8.0]

    def critic_out_features(self) -> int:
        return self.features

    def h(self, xp: Tensor) -> Tensor:
        return self._critic()(xp)

    def witness(self, h_real: Tensor, h_fake: Tensor):
        """``w(x) = mean_i k(h(x), h_real_i) - mean_j k(h(x), h_fake_j)`` on packed inputs."""
        def w(xp: Tensor) -> Tensor:
            hx = self.h(xp)
            return rbf_mixture(hx, h_real, self.sigmas).mean(1) - rbf_mixture(hx, h_fake, self.sigmas).mean(1)
        return w

    def loss(self, player: str, model: GenerativeModel, batch: Batch, *, step: int = 0,
             generator: torch.Generator | None = None) -> LossOutput:
        x = batch.x
        if player == "critic":
            with torch.no_grad():
                fake = model.rsample(x.shape[0], generator=generator)
            rp, fp = self.packed(x), self.packed(fake)
            hr, hf = self.h(rp), self.h(fp)
            mmd2 = mmd2_unbiased(hr, hf, self.sigmas)
            loss, logs = -mmd2, {"mmd2": mmd2.item()}
            if self.penalties:
                pen, plogs = self.penalty_terms(self.witness(hr, hf), rp, fp, generator)
                loss = loss + pen
                logs.update(plogs)
            logs["loss"] = loss.item()
            return LossOutput(loss, logs)
        if player == "generator":
            fake = model.rsample(x.shape[0], generator=generator)
            mmd2 = mmd2_unbiased(self.h(self.packed(x)), self.h(self.packed(fake)), self.sigmas)
            return LossOutput(mmd2, {"loss": mmd2.item()})
        raise ValueError(f"MMDGAN has players {self.players}, got {player!r}")

    @torch.no_grad()
    def divergence_estimate(self, real: Tensor, fake: Tensor) -> float:
        """``MMD^2_u`` in the critic's feature space."""
        return float(mmd2_unbiased(self.h(self.packed(real)), self.h(self.packed(fake)), self.sigmas))
