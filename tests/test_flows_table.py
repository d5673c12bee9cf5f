"""The flow benchmark's protocol (genlab.experiments.flows_table): its scores are right on
models whose answer is known, the time-based cosine schedule, a tiny end-to-end run,
the zuko wrapper, and clear errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from genlab.cli.main import main as cli_main
from genlab.experiments import flows_table as ft
from genlab.models.base import DensityModel


class _Known(DensityModel):
    """A fixed density ``log_prob`` (no parameters but one dummy, so ``.parameters()`` is not empty)."""

    def __init__(self, event_shape, fn):
        super().__init__()
        self.event_shape, self.fn = torch.Size(event_shape), fn
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def log_prob(self, x, *, context=None):
        return self.fn(x)

    def _sample(self, n, *, context, generator):
        raise NotImplementedError


def test_true_density_has_zero_kl_gap_on_ring8():
    data = ft.load("ring8")
    from genlab.data.synthetic import ring8

    truth = ring8(n_train=1, n_test=0, std=0.2)
    res = ft.score(_Known((2,), lambda x: truth.log_prob(x.double()).to(x.dtype)), data)
    assert abs(res["value"]) < 4 * res["se"] and res["se"] < 0.02, res


def test_uniform_box_scores_log2_levels_on_digits():
    """A density uniform on the dequantisation box has bits/dim exactly log2(17)."""
    data = ft.load("digits")
    width = data.spec.levels / data.spec.scale  # (2 scale + 1) / scale
    res = ft.score(_Known((1, 8, 8), lambda x: torch.full((len(x),), -64 * math.log(width), dtype=x.dtype)), data)
    assert res["value"] == pytest.approx(math.log2(17), abs=1e-6)


def test_breast_cancer_split_is_standardised():
    data = ft.load("breast_cancer")
    assert data.train.shape[1] == 30 and len(data.train) + len(data.val) + len(data.test) == 569
    torch.testing.assert_close(data.train.mean(0), torch.zeros(30), atol=1e-5, rtol=0)


def test_time_cosine_schedule():
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    clock = ft._Clock()
    sched = ft.TimeCosine(opt, 2e-3, clock, budget=10.0)
    for elapsed, lr in ((0.0, 2e-3), (5.0, 1e-3), (10.0, 0.0), (12.0, 0.0)):
        clock.elapsed = elapsed
        sched.step()
        assert opt.param_groups[0]["lr"] == pytest.approx(lr, abs=1e-12)


def test_tiny_run_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setattr(ft, "zuko_available", lambda: False)
    res = ft.run(out=tmp_path, budget=0.3, models=["maf"], datasets=["breast_cancer"], progress=False)
    cell = res["cells"]["maf"]["breast_cancer"]
    assert "error" not in cell and math.isfinite(cell["value"]) and cell["steps"] > 0
    assert cell["train_seconds"] >= 0.3 and cell["validations"] >= 1
    assert "sphere_flow" in res["skipped"] and "zuko_cnf" in res["skipped"]
    text = (tmp_path / "flows_table.md").read_text()
    assert "| maf |" in text and "pip install 'genlab[bench]'" in text
    saved = json.loads((tmp_path / "flows_table.json").read_text())
    assert saved["cells"]["maf"]["breast_cancer"]["value"] == pytest.approx(cell["value"])


def test_bad_arguments_are_refused_before_work(tmp_path):
    with pytest.raises(ValueError, match="dataset"):
        ft.run(out=tmp_path, datasets=["cifar10"])
    with pytest.raises(ValueError, match="unknown flow"):
        ft.run(out=tmp_path, models=["nope"], datasets=["ring8"])
    with pytest.raises(ValueError, match="budget"):
        ft.run(out=tmp_path, budget=-1.0)
    assert cli_main(["bench", "cramer", "--budget", "1"]) == 2  # that bench has no time budget


def test_zuko_wrapper_matches_zuko():
    zuko = pytest.importorskip("zuko")
    spec = ft.load("breast_cancer").spec
    torch.manual_seed(0)
    model = ft.build("zuko_maf", spec)
    x = torch.randn(5, 30)
    torch.testing.assert_close(model.log_prob(x), model.flow().log_prob(x))
    cnf = ft.build("zuko_cnf", spec)
    assert isinstance(cnf.flow, zuko.flows.CNF) and not cnf.exact_train  # D = 30 > 10
    cnf.train()
    cnf._dist()
    assert cnf.flow.transform.exact is False
    cnf.eval()
    cnf._dist()
    assert cnf.flow.transform.exact is True
