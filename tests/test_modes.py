"""The mode-coverage metric on hand-made sample sets with known answers."""

import math

import pytest
import torch

from genlab.data.synthetic import grid25, ring8
from genlab.metrics.modes import ModeCoverage


def score(dataset, x):
    m = ModeCoverage(dataset=dataset)
    m.update(fake=x)
    return m.compute()


@pytest.mark.parametrize("make,k", [(ring8, 8), (grid25, 25)])
def test_all_modes_equally(make, k):
    d = make(n_train=10, n_test=10)
    x = d.means.repeat(100, 1) + 0.5 * d.std * torch.randn(100 * k, 2, generator=torch.Generator().manual_seed(0))
    r = score(d, x)
    assert r["modes"] == k and r["hq_percent"] == pytest.approx(100.0)
    assert r["reverse_kl"] == pytest.approx(0.0, abs=1e-12)


def test_one_mode():
    d = ring8(n_train=10, n_test=10)
    r = score(d, d.means[3].repeat(2500, 1))
    assert r["modes"] == 1 and r["hq_percent"] == 100.0
    assert r["reverse_kl"] == pytest.approx(math.log(8))


def test_off_mode_samples_are_not_high_quality():
    d = ring8(n_train=10, n_test=10)
    off = torch.zeros(1500, 2)                           # the ring's centre: 1.0 from every mode
    near = d.means[:2].repeat(500, 1)                    # 1000 samples on two modes, 500 each
    edge = d.means[4] + torch.tensor([3.5 * d.std, 0])   # just beyond 3 std: not high quality
    r = score(d, torch.cat([off, near, edge.repeat(10, 1)]))
    assert r["modes"] == 2
    assert r["hq_percent"] == pytest.approx(100 * 1000 / 2510)
    assert r["reverse_kl"] == pytest.approx(math.log(4))  # uniform over 2 of 8 modes: log(8/2)


def test_no_high_quality_samples():
    d = grid25(n_train=10, n_test=10)
    r = score(d, torch.full((100, 2), 1.0))
    assert r == {"modes": 0.0, "hq_percent": 0.0, "reverse_kl": pytest.approx(math.log(25))}


def test_unbalanced_histogram_closed_form():
    d = ring8(n_train=10, n_test=10)
    x = torch.cat([d.means[0].repeat(300, 1), d.means[1].repeat(100, 1)])
    q = torch.tensor([0.75, 0.25], dtype=torch.float64)
    assert score(d, x)["reverse_kl"] == pytest.approx(float((q * (q * 8).log()).sum()))
