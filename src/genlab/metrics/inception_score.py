"""Inception-style score from a classifier's predictions (Salimans et al. 2016, arXiv 1606.03498).

``IS = exp(E_x KL(p(y|x) || p(y)))`` with ``p(y)`` the mean prediction over the
split. The fake samples are shuffled (``torch.Generator`` seeded with ``seed``)
and cut into ``splits`` near-equal parts; ``is`` is the mean of the per-split
scores and ``is_std`` their standard deviation (population form), as in the
original protocol (10 splits). The score lies in ``[1, K]`` for ``K`` classes:
1 when every prediction is the same, ``K`` for confident, class-balanced
predictions. Predictions come from the ``features`` extractor's logits
(``digits``: the digits CNN; a TorchScript file: its output). Only ``fake`` is used.
"""

from __future__ import annotations

import torch
from torch import Tensor

from genlab.data.base import Dataset
from genlab.metrics.base import SampleMetric
from genlab.metrics.features import FeatureSets


def inception_score_from_probs(probs: Tensor, splits: int = 10,
                               generator: torch.Generator | None = None) -> tuple[float, float]:
    """``probs (N, K)`` rows summing to 1 -> (mean, std) of the per-split scores."""
    probs = probs.double()
    if probs.ndim != 2:
        raise ValueError(f"probs must be (N, K), got {tuple(probs.shape)}")
    if splits < 1 or len(probs) < splits:
        raise ValueError(f"the Inception-style score needs at least `splits` samples and splits >= 1; "
                         f"got {len(probs)} samples and splits={splits}")
    if (probs < 0).any() or not torch.allclose(probs.sum(1), torch.ones(len(probs), dtype=probs.dtype),
                                                atol=1e-6):
        raise ValueError("probs must be non-negative rows summing to 1")
    probs = probs[torch.randperm(len(probs), generator=generator)]
    scores = []
    for part in torch.tensor_split(probs, splits):
        marginal = part.mean(0, keepdim=True)
        kl = (torch.xlogy(part, part) - torch.xlogy(part, marginal)).sum(1).mean()
        scores.append(kl.exp())
    s = torch.stack(scores)
    return float(s.mean()), float(s.std(unbiased=False))


class InceptionScore(SampleMetric):
    """``exp(E KL(p(y|x) || p(y)))`` of the fake samples under a classifier (the ``features`` logits).

    ``update(fake=(B, *event_shape))`` in data space; ``real`` is ignored.
    """

    higher_is_better = {"is": True, "is_std": False}

    def __init__(self, *, features: str = "auto", splits: int = 10, seed: int = 0,
                 dataset: Dataset | None = None):
        self.features, self.splits, self.seed = features, splits, seed
        self.reset()

    def reset(self) -> None:
        self._sets = FeatureSets(self.features)

    def update(self, *, real: Tensor | None = None, fake: Tensor | None = None) -> None:
        self._sets.add(None, fake)

    def compute(self) -> dict[str, float]:
        fake = self._sets.raw("fake")
        logits = self._sets.extractor(tuple(fake.shape[1:])).logits(fake)
        mean, std = inception_score_from_probs(logits.softmax(1), self.splits,
                                               torch.Generator().manual_seed(self.seed))
        return {"is": mean, "is_std": std}
