"""Latent-space marginal matching, metric ``latent``: does the aggregate posterior
``q(z) = E_x q(z | x)`` match the prior ``p(z)``? (Rosca, Lakshminarayanan & Mohamed
2018, "Distribution matching in variational inference", arXiv 1802.06847: VAEs often
leave holes in the prior that the aggregate posterior does not cover, so samples decoded
from those regions are poor.)

Protocol: for each held-out example one code ``z ~ q(z | x)`` (seeded); as many codes
from the prior. Two two-sample tests on the two code sets, the same ones the battery
uses in data space:

* ``latent_mmd2`` / ``latent_mmd_pvalue``: RBF-kernel MMD^2 with the median bandwidth and
  a permutation p-value (:func:`genlab.metrics.mmd.mmd_permutation_test`);
* ``latent_c2st_acc`` / ``latent_c2st_pvalue``: the classifier two-sample test
  (:func:`genlab.metrics.c2st.c2st`).

A small p-value means the aggregate posterior and the prior differ detectably at this
sample size. Conditional models are encoded with their labels and the prior is
``p(z | y)`` for the same labels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from genlab.data.base import Batch, Dataset, DataSpec
from genlab.kwargs import PositiveInt
from genlab.metrics.base import ModelMetric
from genlab.metrics.c2st import c2st
from genlab.metrics.mmd import mmd_permutation_test
from genlab.models.base import AmortizedPosterior
from genlab.sampling.importance import sample_distribution


class LatentMarginal(ModelMetric):
    """Aggregate posterior vs prior: MMD and C2ST two-sample tests on codes."""

    requires = (AmortizedPosterior,)
    higher_is_better = {"latent_mmd2": False, "latent_mmd_pvalue": True, "latent_c2st_acc": False,
                        "latent_c2st_pvalue": True}

    def __init__(self, *, permutations: PositiveInt = 200, c2st_steps: PositiveInt = 100,
                 max_examples: PositiveInt = 2000, seed: int = 0, dataset: Dataset | None = None,
                 data_spec: DataSpec | None = None):
        self.permutations, self.c2st_steps, self.max_examples, self.seed = permutations, c2st_steps, max_examples, seed
        self.spec = dataset.spec if dataset is not None else data_spec
        self.reset()

    def reset(self) -> None:
        self._q: list[Tensor] = []
        self._p: list[Tensor] = []
        self._gen: torch.Generator | None = None

    def update(self, model: AmortizedPosterior, batch: Batch) -> None:
        seen = sum(len(t) for t in self._q)
        x = batch.x[: max(0, self.max_examples - seen)]
        if len(x) == 0:
            return
        y = None
        if model.conditional:
            if batch.y is None:
                raise ValueError("latent: a conditional model needs labelled evaluation data (batch.y)")
            y = batch.y[: len(x)].to(model.device)
        if self._gen is None:
            self._gen = torch.Generator(device=model.device).manual_seed(self.seed)
        dtype = next(model.parameters()).dtype
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                xm = x.to(model.device, dtype)
                xm = self.spec.to_model(xm) if self.spec is not None else xm
                zq = sample_distribution(model.posterior(xm, context=y), generator=self._gen)
                prior = model.prior(context=y)
                shape = () if len(prior.batch_shape) else (len(x),)
                zp = sample_distribution(prior, shape, generator=self._gen)
        finally:
            model.train(was_training)
        self._q.append(zq.reshape(len(x), -1).double().cpu())
        self._p.append(zp.reshape(len(x), -1).double().cpu())

    def codes(self) -> tuple[Tensor, Tensor]:
        """``(posterior codes, prior codes)``, each ``(N, latent_dim)``."""
        if not self._q:
            raise ValueError("latent: update(model, batch) was never called; nothing to compute")
        return torch.cat(self._q), torch.cat(self._p)

    def compute(self) -> dict[str, float]:
        zq, zp = self.codes()
        gen = torch.Generator().manual_seed(self.seed)
        mmd2, p, _ = mmd_permutation_test(zq, zp, permutations=self.permutations, generator=gen)
        acc, p_c2st = c2st(zq, zp, steps=self.c2st_steps, seed=self.seed)
        return {"latent_mmd2": mmd2, "latent_mmd_pvalue": p, "latent_c2st_acc": acc,
                "latent_c2st_pvalue": p_c2st}
