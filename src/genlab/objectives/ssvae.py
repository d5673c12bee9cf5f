"""The semi-supervised objective of partially-specified VAEs (Siddharth et al. 2017,
"Learning disentangled representations with semi-supervised deep generative models",
arXiv 1706.00400, Section 3), objective ``ssvae``, for a code-first encoder
``q(z | x) q(y | x, z)`` (model ``ssvae``).

Unlabelled ``x``: the ELBO on ``log p(x)`` with ``y`` summed out exactly given each draw
``z_s ~ q(z | x)`` and the KL of ``z`` in closed form::

    U(x) = mean_s sum_y q(y | x, z_s) [log p(x | y, z_s) + log p(y) - log q(y | x, z_s)]
           - KL(q(z | x) || p(z))

Labelled ``(x, y)``: the bound on ``log p(x, y)`` is an expectation under ``q(z | x, y) =
q(z | x) q(y | x, z) / q(y | x)``, which has no closed form in this order. The paper estimates
it by importance sampling from ``q(z | x)``: with ``S`` draws ``z_s`` and weights
``w_s = q(y | x, z_s)``, ``q(y | x) ~= mean_s w_s`` and::

    L(x, y) = sum_s (w_s / sum_t w_t) [log p(x | y, z_s) + log p(y) + log p(z_s)
                                       - log q(z_s | x) - log q(y | x, z_s) + log q(y | x)]

(self-normalised, so a consistent estimate of the bound, exact as ``S -> inf``), plus
``alpha log q(y | x)``: the classifier term, with the estimated ``q(y | x)``. Gradients flow
through the draws (reparameterised) and through the weights, as in the paper.

The loss of a batch is the per-example average of ``-L - alpha log q(y|x)`` over labelled
examples (``batch.known``) and ``-U`` over the others, divided by the data dimension. Labels
hidden by ``data.labelled: N`` are never read. Logged (data-space nats): ``bound_l``,
``bound_u``; ``ce`` (``-log q(y|x)``) and ``acc`` (of ``argmax q(y | x, E z)``, the model's
``classify``) on labelled examples; ``entropy`` (mean ``H(q(y | x, z))`` on unlabelled ones).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from genlab.data.base import Batch, DataSpec
from genlab.kwargs import NonNegativeFloat, PositiveInt
from genlab.models.base import GenerativeModel, PartiallySpecifiedModel
from genlab.models.likelihoods import likelihood_is_discrete, variational_input
from genlab.models.semi_supervised import repeat_classes
from genlab.objectives.base import LossOutput, Objective
from genlab.objectives.variational import kl_term
from genlab.sampling.importance import sample_distribution


class SSVAEObjective(Objective):
    """Siddharth et al. 2017 (arXiv 1706.00400): importance-sampled labelled bound for a
    code-first encoder, exact sum over ``y`` for unlabelled data, ``alpha log q(y|x)``."""

    requires: ClassVar[tuple[type, ...]] = (PartiallySpecifiedModel,)
    players: ClassVar[tuple[str, ...]] = ("model",)
    conditional: ClassVar[bool | None] = False
    partial_labels: ClassVar[bool] = True

    def __init__(self, *, alpha: NonNegativeFloat = 1.0, samples: PositiveInt = 8):
        super().__init__()
        self.alpha, self.samples = float(alpha), samples

    def setup(self, model: GenerativeModel, data_spec: DataSpec) -> None:
        if data_spec.classes is None:
            raise ValueError(f"objective ssvae needs labelled data; {data_spec.name} has no labels. Use a labelled "
                             "dataset (e.g. digits) and data.labelled: N to keep N labels")
        self.spec = data_spec
        self.discrete = likelihood_is_discrete(model)

    def _draws(self, model: PartiallySpecifiedModel, x: Tensor, generator: torch.Generator | None):
        q = model.code_posterior(x)
        z = sample_distribution(q, (self.samples,), generator=generator)  # (S, B, d)
        return q, z

    def labelled_bound(self, model: PartiallySpecifiedModel, x: Tensor, xc: Tensor, y: Tensor,
                       generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``(L(x, y), log q(y | x))`` per example, each ``(B,)``; ``x`` the bound's input, ``xc``
        the clean input of ``q(y | x, z)``."""
        q, z = self._draws(model, x, generator)
        s, b = z.shape[:2]
        zf = z.reshape(s * b, -1)
        rep = lambda t: t.unsqueeze(0).expand(s, *t.shape).reshape(s * b, *t.shape[1:])  # noqa: E731
        log_w = torch.log_softmax(model.label_logits(rep(xc), zf), -1).gather(1, rep(y).unsqueeze(1))
        log_w = log_w.reshape(s, b)
        log_qy = torch.logsumexp(log_w, 0) - math.log(s)
        rec = model.likelihood_given(zf, rep(y)).log_prob(rep(x)).reshape(s, b)
        f = rec + model.class_prior().log_prob(y) + model.prior().log_prob(z) - q.log_prob(z) - log_w + log_qy
        return (torch.softmax(log_w, 0) * f).sum(0), log_qy

    def unlabelled_bound(self, model: PartiallySpecifiedModel, x: Tensor, xc: Tensor,
                         generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``(U(x), H(q(y | x, z)))`` per example, each ``(B,)``."""
        q, z = self._draws(model, x, generator)
        s, b = z.shape[:2]
        k = model.num_classes
        zf = z.reshape(s * b, -1)
        xr = x.unsqueeze(0).expand(s, *x.shape).reshape(s * b, *x.shape[1:])
        xcr = xc.unsqueeze(0).expand(s, *xc.shape).reshape(s * b, *xc.shape[1:])
        logq = torch.log_softmax(model.label_logits(xcr, zf), -1)  # (S*B, K)
        xk, yk = repeat_classes(xr, k)
        zk, _ = repeat_classes(zf, k)
        rec = model.likelihood_given(zk, yk).log_prob(xk).reshape(k, s * b).T  # (S*B, K)
        prob = logq.exp()
        inner = (prob * (rec + model.class_prior().logits - logq)).sum(-1).reshape(s, b).mean(0)
        entropy = -(prob * logq).sum(-1).reshape(s, b).mean(0)
        return inner - kl_term(q, model.prior(), z, "auto"), entropy

    def loss(self, player: str, model: GenerativeModel, batch: Batch, *, step: int = 0,
             generator: torch.Generator | None = None) -> LossOutput:
        if player != "model":
            raise ValueError(f"ssvae has one player, 'model'; got {player!r}")
        if not hasattr(self, "spec"):
            raise RuntimeError("SSVAEObjective.setup(model, data_spec) must be called before loss()")
        if batch.y is None:
            raise ValueError("objective ssvae needs labels in the batch (batch.y); the data are unlabelled. Use a "
                             "labelled dataset with data.labelled: N")
        known = torch.ones(len(batch), dtype=torch.bool, device=batch.x.device) if batch.known is None \
            else batch.known.to(batch.x.device).bool()
        x, offset = variational_input(batch.x, self.spec, discrete=self.discrete, generator=generator)
        n = len(batch)
        total = batch.x.new_zeros(())
        logs: dict[str, float] = {"labelled": float(known.sum())}
        if known.any():
            y = batch.y[known].long()
            bound_l, log_qy = self.labelled_bound(model, x[known], batch.x[known], y, generator)
            total = total - bound_l.sum() - self.alpha * log_qy.sum()
            with torch.no_grad():
                acc = (model.classify(batch.x[known]).argmax(1) == y).float().mean()
            logs.update(bound_l=float(bound_l.detach().mean()) - offset, ce=float(-log_qy.detach().mean()),
                        acc=float(acc))
        if (~known).any():
            bound_u, entropy = self.unlabelled_bound(model, x[~known], batch.x[~known], generator)
            total = total - bound_u.sum()
            logs.update(bound_u=float(bound_u.detach().mean()) - offset, entropy=float(entropy.detach().mean()))
        return LossOutput(total / (n * self.spec.dim), logs)
