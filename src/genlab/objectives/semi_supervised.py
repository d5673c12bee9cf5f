"""The semi-supervised objective of M2 (Kingma, Rezende, Mohamed & Welling 2014, arXiv 1406.5298,
Section 3.1.2), objective ``m2``.

For a labelled example ``(x, y)`` the bound on ``log p(x, y)``::

    L(x, y) = E_q(z|x,y)[log p(x | y, z)] + log p(y) - KL(q(z | x, y) || p(z))

and for an unlabelled ``x`` the bound on ``log p(x)`` with the class summed out exactly::

    U(x) = sum_y q(y | x) L(x, y) + H(q(y | x))

The loss of a batch is the per-example average of ``-L(x, y) - alpha log q(y | x)`` over the
examples whose label is known (``batch.known``; all of them when ``known`` is ``None``) and
``-U(x)`` over the others, divided by the data dimension like the other variational
objectives. ``alpha`` weighs the classifier's own cross-entropy on labelled examples; the
paper's ``alpha = 0.1 N`` on a sum over the data set is ``0.1 N / N_labelled`` per labelled
example in this per-example form (1.5 for 100 labels among 1,497 digits). The expectation of
the batch loss over uniformly drawn batches is the paper's ``J^alpha / N``.

Labels hidden by ``data.labelled: N`` are never read: only ``batch.y[batch.known]`` enters the
loss. A Gaussian decoder on discrete data sees uniformly dequantised inputs in the bound
(:func:`genlab.models.likelihoods.variational_input`); the classifier sees the clean batch.

Logged: ``bound_l`` (mean ``L`` of labelled examples) and ``bound_u`` (mean ``U`` of unlabelled
ones), data-space nats; ``ce`` and ``acc`` of ``q(y|x)`` on the batch's labelled examples;
``entropy`` (mean ``H(q(y|x))`` on unlabelled ones); ``labelled`` (how many labelled examples
the batch held).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.data.base import Batch, DataSpec
from genlab.kwargs import NonNegativeFloat, PositiveInt
from genlab.models.base import Classifier, ClassLatentModel, GenerativeModel
from genlab.models.likelihoods import likelihood_is_discrete, variational_input
from genlab.models.semi_supervised import repeat_classes
from genlab.objectives.base import LossOutput, Objective
from genlab.objectives.variational import kl_term
from genlab.sampling.importance import sample_distribution


class M2Objective(Objective):
    """Kingma et al. 2014 (arXiv 1406.5298) M2: labelled bound, unlabelled bound with the class
    summed out, and ``alpha`` times the classifier's cross-entropy on labelled examples."""

    requires: ClassVar[tuple[type, ...]] = (ClassLatentModel, Classifier)
    players: ClassVar[tuple[str, ...]] = ("model",)
    conditional: ClassVar[bool | None] = False
    partial_labels: ClassVar[bool] = True

    def __init__(self, *, alpha: NonNegativeFloat = 1.0, samples: PositiveInt = 1):
        super().__init__()
        self.alpha, self.samples = float(alpha), samples

    def setup(self, model: GenerativeModel, data_spec: DataSpec) -> None:
        if data_spec.classes is None:
            raise ValueError(f"objective m2 needs labelled data; {data_spec.name} has no labels. Use a labelled "
                             "dataset (e.g. digits, moons) and data.labelled: N to keep N labels")
        self.spec = data_spec
        self.discrete = likelihood_is_discrete(model)

    # --- the two bounds ------------------------------------------------------------------
    def labelled_bound(self, model: ClassLatentModel, x: Tensor, y: Tensor,
                       generator: torch.Generator | None = None) -> Tensor:
        """``L(x, y)`` per example ``(B,)`` in model space (``samples`` draws of ``z``)."""
        q = model.posterior_given(x, y)
        z = sample_distribution(q, (self.samples,), generator=generator)  # (S, B, d)
        s, b = z.shape[:2]
        xr = x.unsqueeze(0).expand(s, *x.shape).reshape(s * b, *x.shape[1:])
        rec = model.likelihood_given(z.reshape(s * b, *z.shape[2:]), y.repeat(s)).log_prob(xr)
        rec = rec.reshape(s, b).mean(0)
        return rec + model.class_prior().log_prob(y) - kl_term(q, model.prior(), z, "auto")

    def unlabelled_bound(self, model: ClassLatentModel, x: Tensor, logits: Tensor,
                         generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``(U(x), H(q(y|x)))`` per example, each ``(B,)``: ``logits`` ``(B, K)`` of ``q(y | x)``;
        ``L(x, y)`` is computed for every class (one batch of ``K*B``, class-major)."""
        k = logits.shape[1]
        xr, yr = repeat_classes(x, k)
        bounds = self.labelled_bound(model, xr, yr, generator).reshape(k, x.shape[0]).T  # (B, K)
        logq = torch.log_softmax(logits, -1)
        q = logq.exp()
        entropy = -(q * logq).sum(-1)
        return (q * bounds).sum(-1) + entropy, entropy

    # --- the loss --------------------------------------------------------------------------
    def loss(self, player: str, model: GenerativeModel, batch: Batch, *, step: int = 0,
             generator: torch.Generator | None = None) -> LossOutput:
        if player != "model":
            raise ValueError(f"m2 has one player, 'model'; got {player!r}")
        if not hasattr(self, "spec"):
            raise RuntimeError("M2Objective.setup(model, data_spec) must be called before loss()")
        if batch.y is None:
            raise ValueError("objective m2 needs labels in the batch (batch.y); the data are unlabelled. Use a "
                             "labelled dataset with data.labelled: N")
        known = torch.ones(len(batch), dtype=torch.bool, device=batch.x.device) if batch.known is None \
            else batch.known.to(batch.x.device).bool()
        x, offset = variational_input(batch.x, self.spec, discrete=self.discrete, generator=generator)
        logits = model.classify(batch.x)
        n = len(batch)
        total = batch.x.new_zeros(())
        logs: dict[str, float] = {"labelled": float(known.sum())}
        if known.any():
            y = batch.y[known].long()
            bound_l = self.labelled_bound(model, x[known], y, generator)
            ce = F.cross_entropy(logits[known], y, reduction="none")
            total = total - bound_l.sum() + self.alpha * ce.sum()
            logs.update(bound_l=float(bound_l.detach().mean()) - offset, ce=float(ce.detach().mean()),
                        acc=float((logits[known].argmax(1) == y).float().mean()))
        if (~known).any():
            bound_u, entropy = self.unlabelled_bound(model, x[~known], logits[~known], generator)
            total = total - bound_u.sum()
            logs.update(bound_u=float(bound_u.detach().mean()) - offset, entropy=float(entropy.detach().mean()))
        return LossOutput(total / (n * self.spec.dim), logs)
