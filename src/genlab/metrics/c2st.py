"""Classifier two-sample test (C2ST; Lopez-Paz & Oquab 2017, arXiv 1610.06545).

Protocol: both sets are subsampled to the same size ``n = min(N, M, max_samples)``
(so chance accuracy is exactly 1/2), labelled real=1 / fake=0, pooled, shuffled
and split in half (``torch.Generator(seed)``). Identical rows (a point present in
both sets, or repeated) are kept on the same side of the split: the pooled rows are
grouped with ``torch.unique``, each group takes the place of its first member in the
shuffled order, and the cut falls at the group boundary nearest to the middle (it
moves by at most half the group it would have split; with no repeated rows the split
is the plain half/half one). Otherwise a point learnt as "real" and met as "fake" at
test time is misclassified systematically: ``fake == real`` gave accuracies near
0.23. With ``fake == real`` every test point meets its copy with the other label, so
the accuracy is exactly 1/2 (p-value just above 1/2). If all rows are identical there
is nothing to split or learn: ``(0.5, 1.0)``. Features are standardised with the
training half's mean and std. A one-hidden-layer MLP (``hidden`` tanh units) is
trained on the training half by full-batch Adam (``steps`` steps, default 100, lr 1e-2,
weight decay 1e-4; weights initialised from ``seed``). ``c2st_acc`` is its
accuracy on the held-out half; under the null hypothesis (same distribution) the
number of correct held-out predictions is Binomial(n_test, 1/2), so
``c2st_pvalue = P(Binomial(n_test, 1/2) >= correct)`` (one-sided). Accuracy near
0.5 and a large p-value mean the classifier cannot tell the sets apart.
"""

from __future__ import annotations

import torch
from scipy.stats import binom
from torch import Tensor, nn

from genlab.data.base import Dataset
from genlab.metrics.features import FeatureMetric


def c2st(real: Tensor, fake: Tensor, *, hidden: int = 64, steps: int = 100, max_samples: int = 2000,
         seed: int = 0) -> tuple[float, float]:
    """``real (N, F), fake (M, F)`` -> (held-out accuracy, one-sided binomial p-value)."""
    gen = torch.Generator().manual_seed(seed)
    n = min(len(real), len(fake), max_samples)
    if n < 4:
        raise ValueError(f"C2ST needs at least 4 samples per set, got {len(real)} real and {len(fake)} fake")
    real = real[torch.randperm(len(real), generator=gen)[:n]]
    fake = fake[torch.randperm(len(fake), generator=gen)[:n]]
    z = torch.cat([real, fake]).float()
    y = torch.cat([torch.ones(n), torch.zeros(n)])
    split = _grouped_split(z, torch.randperm(2 * n, generator=gen))
    if split is None:  # every row identical: indistinguishable by construction
        return 0.5, 1.0
    tr, te = split
    mu = z[tr].mean(0)
    sd = z[tr].std(0).clamp_min(1e-8) if len(tr) > 1 else torch.ones_like(mu)
    z = (z - mu) / sd
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(z.shape[1], hidden), nn.Tanh(), nn.Linear(hidden, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(steps):
        loss = nn.functional.binary_cross_entropy_with_logits(net(z[tr]).squeeze(1), y[tr])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        correct = int(((net(z[te]).squeeze(1) > 0).float() == y[te]).sum())
    n_test = len(te)
    return correct / n_test, float(binom.sf(correct - 1, n_test, 0.5))


def _grouped_split(z: Tensor, order: Tensor) -> tuple[Tensor, Tensor] | None:
    """Train/test indices of the rows of ``z`` from the shuffled ``order``, with all
    copies of a row on the same side; ``None`` if all rows are identical.

    Each group of identical rows is moved to the position of its first member in
    ``order`` (members keep their order), and the cut is the group boundary nearest
    to the middle (ties: the earlier one). Without repeated rows this is
    ``order[:N/2], order[N/2:]``."""
    _, group = torch.unique(z, dim=0, return_inverse=True)
    g = group[order]
    rank = torch.arange(len(order))
    first = torch.full((int(group.max()) + 1,), len(order), dtype=torch.long)
    first = first.scatter_reduce(0, g, rank, reduce="amin")
    key = first[g] * len(order) + rank  # group's first position, then own position
    order = order[torch.argsort(key)]
    g = group[order]
    bounds = (torch.nonzero(g[1:] != g[:-1]).flatten() + 1)
    if len(bounds) == 0:
        return None
    cut = int(bounds[torch.argmin((bounds - len(order) // 2).abs())])
    return order[:cut], order[cut:]


class C2ST(FeatureMetric):
    """Classifier two-sample test on ``features``: held-out accuracy and binomial p-value.

    ``update(real=(B, *event_shape), fake=(B, *event_shape))`` in data space.
    """

    higher_is_better = {"c2st_acc": False, "c2st_pvalue": True}

    def __init__(self, *, features: str = "auto", hidden: int = 64, steps: int = 100,
                 max_samples: int = 2000, seed: int = 0, dataset: Dataset | None = None):
        self.features, self.hidden, self.steps = features, hidden, steps
        self.max_samples, self.seed = max_samples, seed
        self.reset()

    def compute(self) -> dict[str, float]:
        real, fake = self._sets.both()
        acc, p = c2st(real, fake, hidden=self.hidden, steps=self.steps,
                      max_samples=self.max_samples, seed=self.seed)
        return {"c2st_acc": acc, "c2st_pvalue": p}
