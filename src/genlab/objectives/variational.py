"""Variational learning principles for latent-variable models with an amortised posterior.

* ``elbo``: the evidence lower bound (Kingma & Welling 2013, arXiv 1312.6114)
  ``log p(x) >= E_q[log p(x | z)] - KL(q(z | x) || p(z))``, trained as
  ``-(rec - w_t KL)`` with the KL weight ``w_t = beta * min(1, t / warmup)`` (KL warm-up,
  Sønderby et al. 2016, arXiv 1602.02282; ``beta`` as in beta-VAE, Higgins et al. 2017).
  The KL is analytic when torch knows it for the pair (Gaussian posterior and standard
  normal prior) and a single-sample estimate ``log q(z|x) - log p(z)`` otherwise (VampPrior).
* ``iwae``: the importance-weighted bound (Burda et al. 2015, arXiv 1509.00519)
  ``L_k = E log (1/k) sum_i p(x, z_i) / q(z_i | x)``, ``z_i ~ q(z | x)``; ``k = 1`` is the ELBO.
* ``geco``: minimise the KL subject to a reconstruction-error constraint with a Lagrange
  multiplier (Rezende & Viola 2018, arXiv 1810.00597; Klushyn et al. 2019, arXiv 1905.04982).

Both handle the data as :func:`genlab.models.likelihoods.variational_input` says: a
discrete likelihood (Bernoulli, categorical, discretised logistic) is a mass over the
levels; a Gaussian likelihood on discrete data sees uniformly dequantised inputs. Logged
values are data-space nats per example (``elbo`` / ``iwae``, plus ``bpd`` on discrete data);
the loss is per dimension. Conditional models (``cond_vae``) get ``batch.y`` as context.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from torch import Tensor
from torch.distributions import Distribution, kl_divergence

from genlab.data.base import Batch, DataSpec
from genlab.kwargs import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Probability
from genlab.models.base import AmortizedPosterior, GenerativeModel
from genlab.models.likelihoods import likelihood_is_discrete, variational_input
from genlab.objectives.base import LossOutput, Objective
from genlab.sampling.importance import log_mean_exp, sample_distribution


def kl_term(q: Distribution, prior: Distribution, z: Tensor, how: str) -> Tensor:
    """``KL(q || p)`` per example ``(B,)``: analytic if possible (``how`` auto/analytic), else the
    Monte-Carlo estimate ``mean_s [log q(z_s) - log p(z_s)]`` over ``z`` ``(S, B, *latent)``."""
    if how != "sample":
        try:
            return kl_divergence(q, prior).expand(z.shape[1])
        except NotImplementedError:
            if how == "analytic":
                raise ValueError(f"no analytic KL between {type(q).__name__} and {type(prior).__name__}; "
                                 "use kl: sample (or auto)") from None
    return (q.log_prob(z) - prior.log_prob(z)).mean(0)


class _Variational(Objective):
    requires: ClassVar[tuple[type, ...]] = (AmortizedPosterior,)
    players: ClassVar[tuple[str, ...]] = ("model",)
    conditional: ClassVar[bool | None] = None

    def setup(self, model: GenerativeModel, data_spec: DataSpec) -> None:
        if getattr(model, "implicit_posterior", False):
            raise ValueError(f"{type(self).__name__.lower()} needs log q(z|x), but the model's posterior is implicit "
                             "(posterior: implicit); train it with objective avb, or use posterior: gaussian")
        self.spec = data_spec
        self.discrete = likelihood_is_discrete(model)

    def _inputs(self, model: AmortizedPosterior, batch: Batch, generator: torch.Generator | None):
        if not hasattr(self, "spec"):
            raise RuntimeError(f"{type(self).__name__}.setup(model, data_spec) must be called before loss()")
        x, offset = variational_input(batch.x, self.spec, discrete=self.discrete, generator=generator)
        return x, offset, (batch.y if model.conditional else None)

    def _logs(self, bound: Tensor, offset: float) -> dict[str, float]:
        nats = float(bound.detach().mean()) - offset
        logs = {self.bound_name: nats}
        if self.spec.levels is not None:
            logs["bpd"] = -nats / (self.spec.dim * math.log(2))
        return logs


class ELBO(_Variational):
    """The evidence lower bound with a KL weight ``beta`` and a linear KL warm-up over ``warmup`` steps."""

    bound_name = "elbo"

    def __init__(self, *, beta: NonNegativeFloat = 1.0, warmup: NonNegativeInt = 0,
                 kl: Literal["auto", "analytic", "sample"] = "auto", samples: PositiveInt = 1):
        super().__init__()
        if kl not in ("auto", "analytic", "sample"):
            raise ValueError(f"elbo: kl must be auto, analytic or sample, got {kl!r}")
        self.beta, self.warmup, self.kl, self.samples = beta, warmup, kl, samples

    def kl_weight(self, step: int) -> float:
        return self.beta * (1.0 if self.warmup == 0 else min(1.0, step / self.warmup))

    def terms(self, model: AmortizedPosterior, x: Tensor, context: Tensor | None,
              generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Per-example ``(rec, kl)``, each ``(B,)``, in model space."""
        q = model.posterior(x, context=context)
        z = sample_distribution(q, (self.samples,), generator=generator)  # (S, B, d)
        s, b = z.shape[:2]
        ctx = None if context is None else context.repeat(s)
        xr = x.unsqueeze(0).expand(s, *x.shape).reshape(s * b, *x.shape[1:])
        rec = model.likelihood(z.reshape(s * b, *z.shape[2:]), context=ctx).log_prob(xr).reshape(s, b).mean(0)
        return rec, kl_term(q, model.prior(context=context), z, self.kl)

    def loss(self, player: str, model: GenerativeModel, batch: Batch, *, step: int = 0,
             generator: torch.Generator | None = None) -> LossOutput:
        if player != "model":
            raise ValueError(f"elbo has one player, 'model'; got {player!r}")
        x, offset, ctx = self._inputs(model, batch, generator)
        rec, kl = self.terms(model, x, ctx, generator)
        w = self.kl_weight(step)
        loss = -(rec - w * kl).mean() / self.spec.dim
        logs = self._logs(rec - kl, offset)
        logs.update(loss=float(loss.detach()), rec=float(rec.detach().mean()), kl=float(kl.detach().mean()),
                    kl_weight=w)
        return LossOutput(loss, logs)


class IWAE(_Variational):
    """The importance-weighted bound with ``k`` samples (``k = 1``: the ELBO)."""

    bound_name = "iwae"

    def __init__(self, *, k: PositiveInt = 5):
        super().__init__()
        self.k = k

    def bound(self, model: AmortizedPosterior, x: Tensor, context: Tensor | None,
              generator: torch.Generator | None = None) -> Tensor:
        """``L_k`` per example ``(B,)`` in model space."""
        q = model.posterior(x, context=context)
        z = sample_distribution(q, (self.k,), generator=generator)
        k, b = z.shape[:2]
        ctx = None if context is None else context.repeat(k)
        xr = x.unsqueeze(0).expand(k, *x.shape).reshape(k * b, *x.shape[1:])
        log_px_z = model.likelihood(z.reshape(k * b, *z.shape[2:]), context=ctx).log_prob(xr).reshape(k, b)
        log_w = model.prior(context=context).log_prob(z) + log_px_z - q.log_prob(z)
        return log_mean_exp(log_w, dim=0)

    def loss(self, player: str, model: GenerativeModel, batch: Batch, *, step: int = 0,
             generator: torch.Generator | None = None) -> LossOutput:
        if player != "model":
            raise ValueError(f"iwae has one player, 'model'; got {player!r}")
        x, offset, ctx = self._inputs(model, batch, generator)
        bound = self.bound(model, x, ctx, generator)
        loss = -bound.mean() / self.spec.dim
        return LossOutput(loss, {"loss": float(loss.detach()), **self._logs(bound, offset)})


class GECO(_Variational):
    """Minimise the KL subject to a reconstruction constraint, with a Lagrange multiplier
    (GECO: Rezende & Viola 2018, "Taming VAEs", arXiv 1810.00597; the optimisation Klushyn et
    al. 2019, arXiv 1905.04982, use for hierarchical priors).

    Per example ``C(x, z)`` is the reconstruction error per dimension: ``mse``, the squared
    error of the decoder mean in model space, or ``nll``, ``-log p(x | z) / D`` in nats. The
    loss is the Lagrangian ``KL / D + lambda * (C - tolerance)`` (batch means); after each
    optimiser step ``lambda <- clamp(lambda * exp(rate * v))`` with the relative violation
    ``v = (C_ma - tolerance) / tolerance`` clipped to [-1, 1] (so ``rate`` does not depend on the
    units of ``C``, and lambda moves by at most a factor ``e^rate`` per step), where ``C_ma``
    is an exponential moving average (factor ``ma``) of the batch constraint. ``lambda`` grows
    while the constraint is violated and shrinks once it holds, so training first fits the
    data and then spends the slack on a smaller KL. ``lambda`` and ``C_ma`` are buffers of the
    objective, saved in checkpoints (exact resume).

    Klushyn et al. also update the prior only while the constraint holds; here every
    parameter is updated every step (a simplification, stated in docs/latent.md).
    """

    bound_name = "elbo"

    def __init__(self, *, tolerance: PositiveFloat = 0.05, constraint: Literal["mse", "nll"] = "mse",
                 rate: PositiveFloat = 0.01, ma: Probability = 0.99, lambda_init: PositiveFloat = 1.0,
                 lambda_min: PositiveFloat = 1e-3, lambda_max: PositiveFloat = 1e4, samples: PositiveInt = 1):
        super().__init__()
        if constraint not in ("mse", "nll"):
            raise ValueError(f"geco: constraint must be mse or nll, got {constraint!r}")
        if not lambda_min <= lambda_init <= lambda_max:
            raise ValueError(f"geco: need lambda_min <= lambda_init <= lambda_max, got {lambda_min}, {lambda_init}, "
                             f"{lambda_max}")
        self.tolerance, self.constraint, self.rate, self.ma = tolerance, constraint, rate, ma
        self.lambda_min, self.lambda_max, self.samples = lambda_min, lambda_max, samples
        self.register_buffer("lagrange", torch.tensor(float(lambda_init), dtype=torch.float64))
        self.register_buffer("c_ma", torch.tensor(float("nan"), dtype=torch.float64))
        self._last_c: float | None = None

    def terms(self, model: AmortizedPosterior, x: Tensor, context: Tensor | None,
              generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Per-example ``(rec, kl, C)`` in model space (``C`` per dimension)."""
        q = model.posterior(x, context=context)
        z = sample_distribution(q, (self.samples,), generator=generator)
        s, b = z.shape[:2]
        ctx = None if context is None else context.repeat(s)
        xr = x.unsqueeze(0).expand(s, *x.shape).reshape(s * b, *x.shape[1:])
        p = model.likelihood(z.reshape(s * b, *z.shape[2:]), context=ctx)
        rec = p.log_prob(xr).reshape(s, b).mean(0)
        if self.constraint == "nll":
            c = -rec / self.spec.dim
        else:
            c = (p.mean - xr).reshape(s, b, -1).pow(2).mean(-1).mean(0)
        return rec, kl_term(q, model.prior(context=context), z, "auto"), c

    def loss(self, player: str, model: GenerativeModel, batch: Batch, *, step: int = 0,
             generator: torch.Generator | None = None) -> LossOutput:
        if player != "model":
            raise ValueError(f"geco has one player, 'model'; got {player!r}")
        x, offset, ctx = self._inputs(model, batch, generator)
        rec, kl, c = self.terms(model, x, ctx, generator)
        lam = float(self.lagrange)
        loss = kl.mean() / self.spec.dim + lam * (c.mean() - self.tolerance)
        self._last_c = float(c.detach().mean())
        logs = self._logs(rec - kl, offset)
        logs.update(loss=float(loss.detach()), rec=float(rec.detach().mean()), kl=float(kl.detach().mean()),
                    constraint=self._last_c,
                    **{"lambda": lam})
        return LossOutput(loss, logs)

    def after_step(self, player: str) -> None:
        if self._last_c is None:
            return
        c_ma = self._last_c if math.isnan(float(self.c_ma)) else \
            self.ma * float(self.c_ma) + (1 - self.ma) * self._last_c
        self.c_ma.fill_(c_ma)
        violation = min(1.0, max(-1.0, (c_ma - self.tolerance) / self.tolerance))
        lam = float(self.lagrange) * math.exp(self.rate * violation)
        self.lagrange.fill_(min(self.lambda_max, max(self.lambda_min, lam)))
        self._last_c = None
