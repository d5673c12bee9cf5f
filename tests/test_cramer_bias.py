"""Cramer versus Wasserstein sample bias (Bellemare et al. 2017, arXiv 1705.10743)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from genlab.experiments import cramer_bias as cb


def test_distances_match_scipy_on_random_discrete_distributions():
    rng = np.random.default_rng(0)
    for _ in range(20):
        xa, xb = rng.normal(size=4), rng.normal(size=3)
        wa, wb = rng.dirichlet(np.ones(4)), rng.dirichlet(np.ones(3))
        assert cb.wasserstein1(xa, wa, xb, wb) == pytest.approx(stats.wasserstein_distance(xa, xb, wa, wb))
        # scipy's energy distance is sqrt(2 * l2^2)
        assert np.sqrt(2 * cb.cramer2(xa, wa, xb, wb)) == pytest.approx(stats.energy_distance(xa, xb, wa, wb))


def test_torch_and_numpy_paths_agree_and_differentiate():
    theta = torch.tensor(0.42, dtype=torch.float64, requires_grad=True)
    d = cb.cramer2(*cb.bernoulli(0.3), *cb.bernoulli(theta))
    assert float(d.detach()) == pytest.approx(cb.cramer2(*cb.bernoulli(0.3), *cb.bernoulli(0.42)))
    (g,) = torch.autograd.grad(d, theta)
    assert float(g) == pytest.approx(2 * (0.42 - 0.3))  # d/dtheta (theta - p)^2


@pytest.mark.parametrize("m,expected", [(1, 0.0), (2, 0.5), (5, 0.2)])
def test_sample_wasserstein_minimiser_is_biased(m, expected):
    assert cb.minimiser(0.3, m, "wasserstein") == pytest.approx(expected, abs=1e-9)
    # it is the median of K/m, K ~ Binomial(m, 0.3)
    assert stats.binom(m, 0.3).median() / m == pytest.approx(expected)


@pytest.mark.parametrize("m", [1, 2, 5, 10])
def test_sample_cramer_minimiser_is_the_true_parameter(m):
    assert cb.minimiser(0.3, m, "cramer") == pytest.approx(0.3, abs=1e-9)


def test_sgd_on_sample_gradients_follows_the_minimisers():
    assert cb.sgd_theta(0.3, 1, "wasserstein", steps=800) < 0.05
    assert cb.sgd_theta(0.3, 1, "cramer", steps=800) == pytest.approx(0.3, abs=0.05)


def test_run_writes_figure_and_table(tmp_path):
    res = cb.run(out=tmp_path, quick=True, progress=False, ms=(1, 2))
    assert (tmp_path / "cramer_bias.png").stat().st_size > 0
    assert "argmin" in (tmp_path / "cramer_bias.md").read_text()
    assert res["minimiser"]["wasserstein"][2] == pytest.approx(0.5)
    assert res["minimiser"]["cramer"][2] == pytest.approx(0.3)
