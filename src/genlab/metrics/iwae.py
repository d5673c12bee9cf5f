"""The importance-weighted bound on ``log p(x)`` of a latent-variable model (Burda et
al. 2015, arXiv 1509.00519), metric ``iwae``.

``L_K(x) = log (1/K) sum_k p(z_k) p(x | z_k) / q(z_k | x)``, ``z_k ~ q(. | x)``: a
stochastic lower bound whose expectation increases with ``k`` to ``log p(x)``.

The proposal ``q``: ``proposal: auto`` (the default) uses the model's amortised
posterior when it has one (:class:`~genlab.models.base.AmortizedPosterior`, e.g. a
VAE's encoder or the exact posterior of
:class:`~genlab.models.linear_gaussian.LinearGaussian`) and the prior otherwise;
``posterior`` insists on the encoder; ``prior`` (``q = p(z)``) is plain importance
sampling of the marginal, valid but loose (use a large ``k``). An implicit posterior
(``vae`` with ``posterior: implicit``, trained by ``avb``) has no ``log q(z | x)``: ``auto``
then uses the prior (note: a much looser bound at the same ``k`` than a posterior
proposal would give), and ``posterior`` is refused. From Python,
``proposal_fn(model, x_model) -> Distribution`` (batch shape ``(B,)``, event shape
``latent_shape``) overrides all three. Values are in data space: a discrete likelihood
is a mass over the levels; a continuous likelihood on discrete data is evaluated on
uniformly dequantised inputs (one draw per example, a bound in expectation) and the
``D log|scale|`` change of variables is applied
(:func:`genlab.models.likelihoods.variational_input`). Conditional models get the
batch's labels as context. ``k = 1`` with the posterior proposal is the ELBO.
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
from torch import Tensor
from torch.distributions import Distribution

from genlab.kwargs import PositiveInt
from genlab.data.base import Batch, Dataset, DataSpec
from genlab.metrics.base import ModelMetric
from genlab.models.base import AmortizedPosterior, LatentVariableModel
from genlab.models.likelihoods import likelihood_is_discrete, variational_input
from genlab.sampling.importance import iwae_bound

ProposalFn = Callable[[LatentVariableModel, Tensor], Distribution]


class IWAEBound(ModelMetric):
    """IWAE bound with ``k`` importance samples: nats per example and bits/dim."""

    requires = (LatentVariableModel,)
    higher_is_better = {"iwae_log_px": True, "iwae_bpd": False}

    def __init__(self, *, k: PositiveInt = 1000, proposal: Literal["auto", "posterior", "prior"] = "auto",
                 proposal_fn: ProposalFn | None = None, chunk_size: int = 250, batch_size: int = 64,
                 max_examples: int = 2500, seed: int = 0, dataset: Dataset | None = None,
                 data_spec: DataSpec | None = None):
        if k < 1:
            raise ValueError(f"iwae: k (importance samples) must be >= 1, got {k}")
        if proposal not in ("auto", "posterior", "prior"):
            raise ValueError(f"iwae: unknown proposal {proposal!r}; choose auto, posterior or prior")
        self.k, self.proposal, self.proposal_fn, self.chunk_size = k, proposal, proposal_fn, chunk_size
        self.batch_size, self.max_examples, self.seed = batch_size, max_examples, seed
        self.spec = dataset.spec if dataset is not None else data_spec
        self.reset()

    def reset(self) -> None:
        self._log_px: list[Tensor] = []
        self._dim: int | None = None
        self._gen: torch.Generator | None = None

    def _proposal(self, model: LatentVariableModel, xm: Tensor, context: Tensor | None = None) -> Distribution:
        if self.proposal_fn is not None:
            return self.proposal_fn(model, xm)
        has_encoder = isinstance(model, AmortizedPosterior)
        if self.proposal == "posterior" and not has_encoder:
            raise ValueError(f"iwae: proposal 'posterior' needs a model with an amortised posterior; "
                             f"{type(model).__name__} has none. Use proposal: prior")
        if has_encoder and getattr(model, "implicit_posterior", False):  # no log q(z|x): cannot weight by it
            if self.proposal == "posterior":
                raise ValueError(f"iwae: proposal 'posterior' needs log q(z|x), but this {type(model).__name__}'s "
                                 "posterior is implicit (posterior: implicit) and has no density. Use proposal: "
                                 "prior (auto picks it)")
            has_encoder = False
        if has_encoder and self.proposal != "prior":
            return model.posterior(xm, context=context)
        return model.prior(context=context).expand((len(xm),))

    def update(self, model: LatentVariableModel, batch: Batch) -> None:
        seen = sum(len(t) for t in self._log_px)
        keep = max(0, self.max_examples - seen)
        x = batch.x[:keep]
        y = batch.y[:keep] if (model.conditional and batch.y is not None) else None
        if model.conditional and y is None:
            raise ValueError("iwae: a conditional model needs labelled evaluation data (batch.y)")
        if self._gen is None:
            self._gen = torch.Generator(device=model.device).manual_seed(self.seed)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(x), self.batch_size):
                    ctx = None if y is None else y[start:start + self.batch_size].to(model.device)
                    self._update_batch(model, x[start:start + self.batch_size], ctx)
        finally:
            model.train(was_training)

    def _update_batch(self, model: LatentVariableModel, x: Tensor, context: Tensor | None) -> None:
        dtype = next((p.dtype for p in model.parameters()), torch.float32)
        x = x.to(device=model.device, dtype=dtype)
        xm = self.spec.to_model(x) if self.spec is not None else x
        discrete = likelihood_is_discrete(model)
        xm, offset = variational_input(xm, self.spec, discrete=discrete, generator=self._gen)
        prior, b = model.prior(context=context), len(xm)

        def log_joint(z: Tensor) -> Tensor:  # (k, B, *latent) -> (k, B)
            k = z.shape[0]
            zf = z.reshape(k * b, *z.shape[2:]).to(dtype)
            xf = xm.unsqueeze(0).expand(k, *xm.shape).reshape(k * b, *xm.shape[1:])
            ctx = None if context is None else context.repeat(k)
            return (prior.log_prob(z).reshape(k, b) + model.likelihood(zf, context=ctx).log_prob(xf).reshape(k, b))

        bound = iwae_bound(log_joint, self._proposal(model, xm, context), self.k, generator=self._gen,
                           chunk_size=self.chunk_size)
        self._dim = math.prod(x.shape[1:])
        self._log_px.append((bound - offset).double().cpu())

    def values(self) -> Tensor:
        """Per-example bounds ``L_K(x)`` in data space (nats): ``(N,)``."""
        if not self._log_px:
            raise ValueError("iwae: update(model, x) was never called; nothing to compute")
        return torch.cat(self._log_px)

    def compute(self) -> dict[str, float]:
        v = self.values()
        se = float(v.std() / math.sqrt(len(v))) if len(v) > 1 else float("nan")
        return {"iwae_log_px": float(v.mean()), "iwae_log_px_se": se,
                "iwae_bpd": float(-v.mean() / (self._dim * math.log(2))), "iwae_k": float(self.k)}
