"""Wake-sleep learning for Helmholtz machines (:mod:`genlab.models.helmholtz`).

Two players: ``model`` (the generative weights, trained in the *wake* phase on real data) and
``recognition`` (the recognition weights, trained in the *sleep* phase on dreamt pairs
``(z, x) ~ p(z) p(x | z)``). The trainer steps ``recognition`` first, then ``model``.

* ``wake_sleep`` (Hinton, Dayan, Frey & Neal 1995, "The wake-sleep algorithm for
  unsupervised neural networks", Science 268): wake: maximise ``log p(x, z)``, ``z ~ q(z | x)``
  (a sample, no gradient through it) over the generative weights; sleep: maximise
  ``log q(z | x)`` over the recognition weights on ``sleep_samples`` dreamt pairs. Model:
  ``helmholtz``.
* ``ddc_wake_sleep`` (Vértes & Sahani 2018, "Flexible and accurate inference and learning for
  deep generative models", arXiv 1805.11051, Algorithm 1): sleep: regress the DDC
  ``r(x)`` on the features ``T(z)`` of dreamt pairs (squared error); wake: the generative
  weights follow ``E_q[grad_theta log p(x, z)] ≈ alpha [1, r(x)]``, where ``alpha`` is the
  linear map from ``[1, T(z)]`` to ``grad_theta log p(x, z)`` fitted by ridge regression on
  ``regression_samples`` codes ``z_s ~ p(z)`` drawn afresh each step. Model: ``ddc_helmholtz``.

  The regression of a gradient (a vector as long as the generative weights, for each data
  ``x``) is done in its dual form, which is exactly equal and cheap: ridge regression is
  linear in its targets, so ``alpha_f [1, r(x)] = sum_s w_s(x) f(z_s)`` with weights
  ``w(x) = Phi (Phi^T Phi + ridge S I')^{-1} [1, r(x)]``, ``Phi = [1, T(z_s)]``, that do not
  depend on ``f`` (:func:`genlab.models.helmholtz.ddc_weights`). The wake loss is then the
  surrogate ``-sum_s w_s(x) log p_theta(x, z_s)`` with ``w`` held fixed, whose gradient is the
  DDC estimate of ``-E_q[grad_theta log p(x, z)]``. The paper stores ``alpha`` for the
  specific sufficient statistics of its sigmoid-belief-net layers; the dual form gives the
  same estimate for any decoder without materialising ``alpha``.

Losses are per dimension; logged: ``wake`` (the surrogate, nats per example), ``sleep``
(the sleep loss) and, for ``ddc_wake_sleep``, ``weight_sum`` (the mean of ``sum_s w_s``,
near 1 when the read-out of the constant is accurate).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from genlab.data.base import Batch, DataSpec
from genlab.kwargs import PositiveFloat, PositiveInt
from genlab.models.base import GenerativeModel
from genlab.models.helmholtz import DDCHelmholtzMachine, HelmholtzMachine, ddc_weights
from genlab.models.likelihoods import (
    BernoulliLevels,
    likelihood_is_discrete,
    variational_input,
)
from genlab.objectives.base import LossOutput, Objective


class _WakeSleep(Objective):
    players: ClassVar[tuple[str, ...]] = ("model", "recognition")
    conditional: ClassVar[bool | None] = False

    def __init__(self, *, sleep_samples: PositiveInt = 128):
        super().__init__()
        self.sleep_samples = sleep_samples

    def setup(self, model: GenerativeModel, data_spec: DataSpec) -> None:
        if not isinstance(model, self.requires):
            raise ValueError(f"{self.name} needs model {self.model_name}, got {type(model).__name__}")  # noqa: TRY004
        self.spec = data_spec
        self.discrete = likelihood_is_discrete(model)

    def player_parameters(self, model: GenerativeModel) -> dict[str, list[nn.Parameter]]:
        return {"model": model.generative_parameters(), "recognition": model.recognition_parameters()}

    def _data(self, batch: Batch, generator: torch.Generator | None) -> torch.Tensor:
        if not hasattr(self, "spec"):
            raise RuntimeError(f"{type(self).__name__}.setup(model, data_spec) must be called before loss()")
        x, _ = variational_input(batch.x, self.spec, discrete=self.discrete, generator=generator)
        return x

    def loss(self, player: str, model: GenerativeModel, batch: Batch, *, step: int = 0,
             generator: torch.Generator | None = None) -> LossOutput:
        if player == "model":
            return self.wake(model, self._data(batch, generator), generator)
        if player == "recognition":
            if not hasattr(self, "spec"):
                raise RuntimeError(f"{type(self).__name__}.setup(model, data_spec) must be called before loss()")
            return self.sleep(model, generator)
        raise ValueError(f"{self.name} has players 'model' (wake) and 'recognition' (sleep); got {player!r}")


class WakeSleep(_WakeSleep):
    """Plain wake-sleep (Hinton, Dayan, Frey & Neal 1995) for a Helmholtz machine with a
    Gaussian recognition model: wake maximises ``log p(x, z)``, ``z ~ q(z|x)``; sleep maximises
    ``log q(z | x)`` on ``sleep_samples`` dreamt ``(z, x) ~ p``."""

    requires: ClassVar[tuple[type, ...]] = (HelmholtzMachine,)
    name, model_name = "wake_sleep", "helmholtz"

    def wake(self, model: HelmholtzMachine, x: torch.Tensor, generator: torch.Generator | None) -> LossOutput:
        with torch.no_grad():
            q = model.posterior(x)
            z = q.base_dist.loc + q.base_dist.scale * torch.randn(q.base_dist.loc.shape, generator=generator,
                                                                  dtype=x.dtype, device=x.device)
        joint = model.prior().log_prob(z) + model.likelihood(z).log_prob(x)
        return LossOutput(-joint.mean() / self.spec.dim, {"wake": float(joint.detach().mean())})

    def sleep(self, model: HelmholtzMachine, generator: torch.Generator | None) -> LossOutput:
        z, x = model.dream(self.sleep_samples, generator)
        log_q = model.posterior(x).log_prob(z)
        return LossOutput(-log_q.mean() / self.spec.dim, {"sleep": float(-log_q.detach().mean())})


class DDCWakeSleep(_WakeSleep):
    """DDC wake-sleep (Vértes & Sahani 2018, arXiv 1805.11051): sleep regresses ``r(x)`` on
    ``T(z)`` over dreamt pairs; wake follows the DDC read-out of ``E_q[grad log p(x, z)]``."""

    requires: ClassVar[tuple[type, ...]] = (DDCHelmholtzMachine,)
    name, model_name = "ddc_wake_sleep", "ddc_helmholtz"

    def __init__(self, *, sleep_samples: PositiveInt = 128, regression_samples: PositiveInt = 1000,
                 ridge: PositiveFloat = 1e-4):
        super().__init__(sleep_samples=sleep_samples)
        self.regression_samples, self.ridge = regression_samples, ridge

    def weights(self, model: DDCHelmholtzMachine, x: torch.Tensor, generator: torch.Generator | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes ``z_s ~ p(z)`` ``(S, latent)`` and read-out weights ``w`` ``(B, S)`` (no gradients)."""
        with torch.no_grad():
            z = model.sample_prior(self.regression_samples, generator)
            w = ddc_weights(model.features(z), model.ddc(x), self.ridge)
        return z, w

    def wake(self, model: DDCHelmholtzMachine, x: torch.Tensor, generator: torch.Generator | None) -> LossOutput:
        z, w = self.weights(model, x, generator)
        b, s = w.shape
        lik = model.likelihood(z)
        if isinstance(lik, BernoulliLevels):
            # sum_b w_bs log p(x_b | z_s) = sum_i eta_si (w^T x)_si - softplus(eta_si) sum_b w_bs: the same
            # number as the general branch, without forming all B x S pairs
            k, top = lik.levels_of(x), self.spec.levels - 1
            if not bool(((k == 0) | (k == top)).all()):
                raise ValueError(f"likelihood 'bernoulli' needs binary data (levels 0 and {top} only); binarise "
                                 "it (data.binarize: threshold or stochastic) or use likelihood: categorical")
            on = (k == top).to(x.dtype).flatten(1)  # (B, D)
            eta = lik.logits.flatten(1)  # (S, D)
            ws = w.sum(0)  # (S,)
            per_s = (eta * (w.T @ on)).sum(1) - F.softplus(eta).sum(1) * ws + ws * model.prior().log_prob(z)
            mean_surrogate = per_s.sum() / b
        else:
            xs = x.unsqueeze(1).expand(b, s, *x.shape[1:])
            log_joint = model.prior().log_prob(z) + lik.log_prob(xs)  # (B, S)
            mean_surrogate = (w * log_joint).sum(1).mean()
        return LossOutput(-mean_surrogate / self.spec.dim,
                          {"wake": float(mean_surrogate.detach()), "weight_sum": float(w.sum(1).mean())})

    def sleep(self, model: DDCHelmholtzMachine, generator: torch.Generator | None) -> LossOutput:
        z, x = model.dream(self.sleep_samples, generator)
        err = (model.ddc(x) - model.features(z)).pow(2).sum(1)
        return LossOutput(err.mean(), {"sleep": float(err.detach().mean())})
