"""Classification error on held-out data, for semi-supervised models (Kingma, Rezende, Mohamed
& Welling 2014, arXiv 1406.5298).

* ``classify_error``: a model with the ``Classifier`` capability (M2): the error of
  ``argmax q(y | x)`` (``classify_error``), its mean cross-entropy (``classify_nll``, nats)
  and the number of examples (``classify_n``).
* ``latent_probe``: the paper's M1 protocol for a model with an amortised posterior (a VAE
  trained without labels): a classifier fitted on the posterior means ``E_q[z | x]`` of the
  *labelled training* examples (``dataset.train`` where ``train_known``; all of them when no
  labels are hidden), then its error on the held-out codes (``probe_error``, ``probe_n``,
  ``probe_train_n``). ``classifier: logistic`` (scikit-learn's L2-regularised logistic
  regression, strength ``1/C``, on standardised codes) or ``svm`` (scikit-learn's RBF-kernel
  SVC). The paper used a transductive SVM, which scikit-learn does not provide; both of ours
  are trained on the labelled codes only.

Held-out labels: ``data.labelled: N`` hides labels in the test split too, but they are never
used for training, and the error is reported over the whole split, as in the paper. With
``labels: all`` (the default) a batch's hidden labels are taken from the reserved ``dataset``
argument's ``test_y`` when the batches are that test split in order (what ``genlab eval`` and
evaluation during training feed; checked by comparing the inputs). Otherwise, or with
``labels: known``, only the batch's known labels count, and ``*_n`` says how many.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.data.base import Batch, Dataset, DataSpec
from genlab.kwargs import PositiveFloat, PositiveInt
from genlab.metrics.base import ModelMetric
from genlab.models.base import AmortizedPosterior, Classifier, GenerativeModel

LabelsUsed = Literal["all", "known"]


class HeldOutLabels:
    """Resolves the labels of consecutive held-out batches (see the module docstring)."""

    def __init__(self, dataset: Dataset | None, labels: LabelsUsed, metric: str):
        if labels not in ("all", "known"):
            raise ValueError(f"{metric}: labels must be 'all' or 'known', got {labels!r}")
        self.dataset, self.labels, self.metric = dataset, labels, metric
        self.offset = 0

    def __call__(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """``(labels (B,), mask (B,) bool)``: which labels to score, on the CPU."""
        if batch.y is None:
            raise ValueError(f"{self.metric} needs labelled evaluation data (batch.y); the data have no labels")
        y = batch.y.detach().cpu().long()
        known = (y >= 0) if batch.known is None else batch.known.detach().cpu().bool()
        start, self.offset = self.offset, self.offset + len(batch)
        ds = self.dataset
        if self.labels == "all" and not bool(known.all()) and ds is not None and ds.test_y is not None \
                and self.offset <= len(ds.test):
            x = batch.x.detach().cpu().to(ds.test.dtype)
            if torch.equal(x, ds.test[start:self.offset]):
                return ds.test_y[start:self.offset].long(), torch.ones(len(batch), dtype=torch.bool)
        return y, known


def _model_input(model: GenerativeModel, x: Tensor, spec: DataSpec | None) -> Tensor:
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    x = x.to(device=model.device, dtype=dtype)
    return spec.to_model(x) if spec is not None else x


class ClassifyError(ModelMetric):
    """Held-out error of ``argmax q(y | x)`` of a model that classifies (M2, arXiv 1406.5298)."""

    requires = (Classifier,)
    higher_is_better = {"classify_error": False, "classify_nll": False}

    def __init__(self, *, labels: LabelsUsed = "all", batch_size: PositiveInt = 500, dataset: Dataset | None = None,
                 data_spec: DataSpec | None = None):
        self.labels, self.batch_size, self.dataset = labels, batch_size, dataset
        self.spec = dataset.spec if dataset is not None else data_spec
        HeldOutLabels(dataset, labels, "classify_error")  # checks `labels` now
        self.reset()

    def reset(self) -> None:
        self._resolve = HeldOutLabels(self.dataset, self.labels, "classify_error")
        self._wrong: list[Tensor] = []
        self._nll: list[Tensor] = []

    def update(self, model: Classifier, batch: Batch) -> None:
        y, mask = self._resolve(batch)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                xm = _model_input(model, batch.x, self.spec)
                logits = torch.cat([model.classify(xm[i:i + self.batch_size])
                                    for i in range(0, len(xm), self.batch_size)]).double().cpu()
        finally:
            model.train(was_training)
        if logits.shape != (len(batch), model.num_classes):
            raise ValueError(f"classify_error: {type(model).__name__}.classify returned {tuple(logits.shape)}, "
                             f"expected ({len(batch)}, {model.num_classes})")
        logits, y = logits[mask], y[mask]
        self._wrong.append((logits.argmax(1) != y).double())
        self._nll.append(F.cross_entropy(logits, y, reduction="none"))

    def compute(self) -> dict[str, float]:
        wrong = torch.cat(self._wrong) if self._wrong else torch.zeros(0)
        if len(wrong) == 0:
            raise ValueError("classify_error: no labelled held-out examples were seen; nothing to compute")
        return {"classify_error": float(wrong.mean()), "classify_nll": float(torch.cat(self._nll).mean()),
                "classify_n": float(len(wrong))}


def fit_probe(train: np.ndarray, train_y: np.ndarray, *, classifier: str = "logistic", C: float = 1.0,
              seed: int = 0):
    """A fitted scikit-learn pipeline (standardise, then ``logistic`` or RBF ``svm``) on features
    ``(N, F)`` with labels ``(N,)``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if classifier == "logistic":
        clf = LogisticRegression(C=C, max_iter=5000, random_state=seed)
    elif classifier == "svm":
        clf = SVC(C=C, kernel="rbf", random_state=seed)
    else:
        raise ValueError(f"unknown probe classifier {classifier!r}; choose logistic or svm")
    if len(np.unique(train_y)) < 2:
        raise ValueError(f"a probe needs labelled training examples of at least 2 classes, got "
                         f"{len(train_y)} examples of {len(np.unique(train_y))} class(es)")
    return make_pipeline(StandardScaler(), clf).fit(train, train_y)


def probe_error(train: np.ndarray, train_y: np.ndarray, test: np.ndarray, test_y: np.ndarray, *,
                classifier: str = "logistic", C: float = 1.0, seed: int = 0) -> float:
    """Test error of :func:`fit_probe` fitted on ``(train, train_y)``."""
    clf = fit_probe(train, train_y, classifier=classifier, C=C, seed=seed)
    return float((clf.predict(test) != test_y).mean())


class LatentProbe(ModelMetric):
    """M1 (Kingma et al. 2014, arXiv 1406.5298): a classifier on posterior means of the labelled
    training examples, its held-out error."""

    requires = (AmortizedPosterior,)
    higher_is_better = {"probe_error": False}

    def __init__(self, *, classifier: Literal["logistic", "svm"] = "logistic", C: PositiveFloat = 1.0,
                 labels: LabelsUsed = "all", batch_size: PositiveInt = 500, seed: int = 0,
                 dataset: Dataset | None = None):
        if classifier not in ("logistic", "svm"):
            raise ValueError(f"latent_probe: unknown classifier {classifier!r}; choose logistic or svm")
        if not math.isfinite(C) or C <= 0:
            raise ValueError(f"latent_probe: C must be > 0, got {C}")
        self.classifier, self.C, self.labels, self.batch_size, self.seed = classifier, C, labels, batch_size, seed
        self.dataset = dataset
        HeldOutLabels(dataset, labels, "latent_probe")
        self.reset()

    def reset(self) -> None:
        self._resolve = HeldOutLabels(self.dataset, self.labels, "latent_probe")
        self._codes: list[Tensor] = []
        self._y: list[Tensor] = []
        self._train: tuple[Tensor, Tensor] | None = None

    def codes(self, model: AmortizedPosterior, x: Tensor) -> Tensor:
        """Posterior means ``E_q[z | x]`` ``(B, latent)`` (CPU, float64) of data-space ``x``."""
        if model.conditional:
            raise ValueError(f"latent_probe: {type(model).__name__} is conditional; its posterior q(z|x,y) needs "
                             "the label the probe should predict. Use an unconditional model (vae)")
        spec = self.dataset.spec if self.dataset is not None else None
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                xm = _model_input(model, x, spec)
                out = [model.posterior(xm[i:i + self.batch_size]).mean.reshape(len(xm[i:i + self.batch_size]), -1)
                       for i in range(0, len(xm), self.batch_size)]
        finally:
            model.train(was_training)
        return torch.cat(out).double().cpu()

    def update(self, model: AmortizedPosterior, batch: Batch) -> None:
        ds = self.dataset
        if ds is None or ds.train_y is None:
            raise ValueError("latent_probe needs the labelled training data: build it with the reserved dataset= "
                             "argument (genlab does this in eval) on a labelled dataset")
        if self._train is None:
            keep = torch.ones(len(ds.train), dtype=torch.bool) if ds.train_known is None else ds.train_known
            if int(keep.sum()) == 0:
                raise ValueError("latent_probe: the training split has no known labels (data.labelled: 0)")
            self._train = (self.codes(model, ds.train[keep]), ds.train_y[keep].long())
        y, mask = self._resolve(batch)
        self._codes.append(self.codes(model, batch.x)[mask])
        self._y.append(y[mask])

    def compute(self) -> dict[str, float]:
        if self._train is None or not self._codes or sum(len(c) for c in self._codes) == 0:
            raise ValueError("latent_probe: no labelled held-out examples were seen; nothing to compute")
        train, train_y = self._train
        test, test_y = torch.cat(self._codes), torch.cat(self._y)
        err = probe_error(train.numpy(), train_y.numpy(), test.numpy(), test_y.numpy(), classifier=self.classifier,
                          C=self.C, seed=self.seed)
        return {"probe_error": err, "probe_n": float(len(test_y)), "probe_train_n": float(len(train_y))}
