"""Memorisation check: how many samples sit suspiciously close to a training point.

Protocol: ``d(x) = min_t |phi(x) - phi(t)|`` is the distance of ``x`` to its
nearest training point ``t`` in feature space ``phi`` (``features``; pass
``"identity"`` to compare raw pixels). The threshold ``tau`` is the ``quantile``
(default 0.05, the 5th percentile) of ``d`` over the held-out ``real``
samples. ``memorized_frac`` is the fraction of ``fake`` samples with
``d(fake) <= tau`` (``<=`` so that exact copies count even when ``tau`` is 0,
which happens when held-out data duplicate training points). A model that generalises like the held-out data gives about
``quantile``; a model that copies training points gives up to 1. The ratio
``memorized_frac / quantile`` is reported as ``memorized_ratio``.

Training data: taken from the reserved ``dataset`` constructor argument
(``dataset.train``) when a dataset is given, otherwise it must be passed with
``update(train=(B, *event_shape))`` (batches accumulate); ``compute()`` raises if
there is none. ``real`` must be held-out data, not the training set.
"""

from __future__ import annotations

import torch
from torch import Tensor

from genlab.data.base import Dataset
from genlab.metrics.base import SampleMetric
from genlab.metrics.features import FeatureSets, check_samples


def nn_distance(x: Tensor, ref: Tensor, batch: int = 1024) -> Tensor:
    """``(N, F), (M, F)`` -> ``(N,)`` Euclidean distance of each row of ``x`` to its nearest row of ``ref``."""
    return torch.cat([torch.cdist(x[i:i + batch], ref, compute_mode="donot_use_mm_for_euclid_dist")
                      .min(1).values for i in range(0, len(x), batch)])


def memorized_fraction(train: Tensor, real: Tensor, fake: Tensor, quantile: float = 0.05) -> tuple[float, float]:
    """Features ``train, real (held-out), fake`` -> (fraction of fakes closer than tau, tau)."""
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    if len(real) < 2 or len(train) < 1 or len(fake) < 1:
        raise ValueError(f"memorisation needs >= 1 train, >= 2 held-out real and >= 1 fake samples, got "
                         f"{len(train)}, {len(real)} and {len(fake)}")
    tau = torch.quantile(nn_distance(real, train), quantile)
    return float((nn_distance(fake, train) <= tau).double().mean()), float(tau)


class Memorization(SampleMetric):
    """Fraction of samples closer to a training point than the ``quantile`` of held-out NN distances.

    ``update(real=held-out (B, *event_shape), fake=samples, train=training data)`` in data space.
    """

    higher_is_better = {"memorized_frac": False, "memorized_ratio": False}

    def __init__(self, *, features: str = "auto", quantile: float = 0.05, seed: int = 0,
                 dataset: Dataset | None = None):
        self.features, self.quantile, self.seed = features, quantile, seed
        self._dataset_train = dataset.train if dataset is not None else None
        self.reset()

    def reset(self) -> None:
        self._sets = FeatureSets(self.features)
        self._train: list[Tensor] = [] if self._dataset_train is None else [self._dataset_train.double()]

    def update(self, *, real: Tensor | None = None, fake: Tensor | None = None,
               train: Tensor | None = None) -> None:
        self._sets.add(real, fake)
        if train is not None:
            self._train.append(train.detach().double().cpu())

    def compute(self) -> dict[str, float]:
        if not self._train:
            raise ValueError("the memorisation check needs training data: build the metric with a "
                             "dataset, pass update(train=...), or --train TRAIN.npy on the command line")
        real, fake = self._sets.both()
        train = check_samples(torch.cat(self._train), "train")
        if train.shape[1:] != self._sets.raw("real").shape[1:]:
            raise ValueError(f"train events have shape {tuple(train.shape[1:])}, real events "
                             f"{tuple(self._sets.raw('real').shape[1:])}")
        train_f = self._sets.extractor(tuple(train.shape[1:])).features(train)
        frac, _ = memorized_fraction(train_f, real, fake, self.quantile)
        return {"memorized_frac": frac, "memorized_ratio": frac / self.quantile}
