"""Generalisation probes (Zhao et al. 2018, arXiv 1811.03259): probe datasets, feature
extractors, config errors and a tiny end-to-end run of ``genlab bench generalisation``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from genlab.build import build_dataset
from genlab.data.probes import bar, colour_proportion, count_dots, dots
from genlab.kwargs import ConfigError


def test_dots_deterministic_and_exact():
    a = dots(counts=[2, 6], n_train=300, n_test=100, seed=3)
    b = dots(counts=[2, 6], n_train=300, n_test=100, seed=3)
    c = dots(counts=[2, 6], n_train=300, n_test=100, seed=4)
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test)
    assert not torch.equal(a.train, c.train)
    assert a.train.shape == (300, 1, 12, 12) and a.test.shape == (100, 1, 12, 12)
    assert set(a.train.unique().tolist()) == {0.0, 1.0} and a.spec.levels == 2
    for split in ("train", "test"):
        x, k = getattr(a, split), a.info[f"{split}_feature"].numpy()
        assert set(k.tolist()) == {2, 6}
        assert np.array_equal(count_dots(x), k)
        # the gap keeps dots apart even diagonally: 8-connected components give the same count
        eight = [ndimage.label(img[0].numpy() > 0.5, structure=np.ones((3, 3)))[1] for img in x]
        assert np.array_equal(np.array(eight), k)
        # every dot is a full dot x dot square
        assert np.array_equal(x.sum((1, 2, 3)).numpy(), 4 * k)


def test_bar_deterministic_and_exact():
    a = bar(proportions=[0.2, 0.8], n_train=300, n_test=100, seed=1)
    b = bar(proportions=[0.2, 0.8], n_train=300, n_test=100, seed=1)
    assert torch.equal(a.train, b.train)
    assert a.spec.levels == 3 and set(a.train.unique().tolist()) == {0.0, 1.0, 2.0}
    for split in ("train", "test"):
        p = a.info[f"{split}_feature"].numpy()
        assert set(np.round(p, 6).tolist()) == {0.2, 0.8}
        assert np.array_equal(colour_proportion(getattr(a, split)), p)
    assert (((a.train > 0).sum((1, 2, 3))) == 30).all()  # 3 x 10 bar


def test_labels_follow_values():
    d = dots(counts=[2, 5], n_train=100, n_test=20, labels=True)
    assert d.spec.classes == 2
    assert torch.equal(torch.tensor([2, 5])[d.train_y], d.info["train_feature"])
    assert dots(counts=[3], n_train=10, n_test=0).spec.classes is None


def test_count_dots_robust_to_blur_noise_and_specks():
    d = dots(counts=[1, 4], n_train=200, n_test=0, seed=0)
    k = d.info["train_feature"].numpy()
    x = d.train.numpy()
    blurred = ndimage.gaussian_filter(x, sigma=(0, 0, 0.5, 0.5))
    assert np.array_equal(count_dots(blurred), k)
    noisy = x + np.random.default_rng(0).uniform(-0.3, 0.3, x.shape)
    assert np.array_equal(count_dots(torch.tensor(noisy)), k)
    # a lone bright pixel in an empty corner region is noise, not a dot
    img = np.zeros((1, 1, 12, 12))
    img[0, 0, 2:4, 2:4] = 1
    img[0, 0, 9, 9] = 1
    assert count_dots(img).tolist() == [1]
    assert count_dots(img, min_area=1).tolist() == [2]
    # two dots joined by a bright bridge count as one (the documented rule)
    img[0, 0, 2:4, 6:8] = 1
    assert count_dots(img).tolist() == [2]
    img[0, 0, 3, 4:6] = 1
    assert count_dots(img).tolist() == [1]
    # 17-level data: threshold at half the top level
    assert count_dots(d.train * 16, levels=17).tolist() == k.tolist()


def test_colour_proportion_robust_and_empty():
    d = bar(proportions=[0.4, 0.6], n_train=200, n_test=0, seed=2)
    p = d.info["train_feature"].numpy()
    # any perturbation below half a level per pixel leaves the proportion exact
    noise = 0.8 * (torch.rand(d.train.shape, generator=torch.Generator().manual_seed(0)) - 0.5)
    assert np.array_equal(colour_proportion(d.train + noise), p)
    # a larger one moves it: 0.6 added everywhere turns background blue and blue red
    assert not np.array_equal(colour_proportion(d.train + 0.6), p)
    assert np.isnan(colour_proportion(torch.zeros(1, 1, 12, 12)))[0]
    with pytest.raises(ValueError, match="one-channel"):
        colour_proportion(torch.zeros(2, 3, 12, 12))


@pytest.mark.parametrize("section, match", [
    ({"name": "dots", "counts": [40]}, "do not fit"),
    ({"name": "dots", "counts": []}, "at least one"),
    ({"name": "dots", "counts": [3, 3]}, "repeated"),
    ({"name": "dots", "counts": [0]}, "counts"),
    ({"name": "dots", "counts": [3], "labels": True}, "at least two"),
    ({"name": "dots", "dot": 20}, "larger than the image"),
    ({"name": "bar", "proportions": [0.55]}, "whole number"),
    ({"name": "bar", "proportions": [1.5]}, "proportions"),
    ({"name": "bar", "length": 20}, "does not fit"),
])
def test_config_errors(section, match):
    with pytest.raises(ConfigError, match=match):
        build_dataset(section)


def test_registered_names():
    from genlab.cli.commands import BENCHES
    from genlab.experiments import EXPERIMENTS
    from genlab.registry import DATASETS

    assert DATASETS["dots"] is dots and DATASETS["bar"] is bar
    assert BENCHES["generalisation"] == "generalisation" and "generalisation" in EXPERIMENTS
    d = build_dataset({"name": "dots", "counts": [2, 6], "n_train": 50, "n_test": 10})
    assert set(d.info["train_feature"].tolist()) <= {2, 6}


def test_modes_and_summary():
    from genlab.experiments.generalisation import count_modes, summarise

    assert count_modes(np.array([0, 0.5, 0, 0.5, 0])) == 2
    assert count_modes(np.array([0.2, 0.3, 0.3, 0.2])) == 1  # a plateau counts once
    assert count_modes(np.array([0.9, 0.04, 0.06])) == 2
    assert count_modes(np.array([0.9, 0.04, 0.03, 0.03])) == 1  # below 5%: not a mode
    f = np.array([3.0] * 60 + [2.0] * 10 + [4.0] * 20 + [5.0] * 10)
    s = summarise("dots", [3], f)
    assert s["at_train"] == 0.6 and s["modes"] == 1 and s["mode_at"] == [3.0]
    assert abs(s["mean"] - 3.3) < 1e-9 and s["skew"] > 0
    s2 = summarise("dots", [2, 6], np.array([2.0] * 40 + [3.0] * 10 + [4.0] * 5 + [5.0] * 5 + [6.0] * 40))
    assert s2["modes"] == 2 and s2["mode_at"] == [2.0, 6.0] and s2["between"] == 0.2 and s2["at_train"] == 0.8
    assert summarise("dots", [2, 6], np.array([2.0] * 40 + [4.0] * 20 + [6.0] * 40))["modes"] == 3
    s3 = summarise("bar", [0.4, 0.6], np.array([0.5] * 70 + [0.4] * 30 + [np.nan] * 0))
    assert s3["between"] == 0.7 and s3["at_train"] == 0.3


def test_bench_smoke(tmp_path):
    from genlab.experiments.generalisation import run

    res = run(out=tmp_path, steps=2, n_samples=6, n_train=64, settings=["dots-far", "bar-close"], progress=False)
    for name in ("generalisation.md", "generalisation.png", "generalisation.json", "generalisation_samples.png"):
        assert (tmp_path / name).is_file()
    saved = json.loads((tmp_path / "generalisation.json").read_text())
    assert set(saved["runs"]) == {"GAN", "VAE", "PixelCNN"}
    for m, per in saved["runs"].items():
        assert set(per) == {"dots-far", "bar-close"}
        assert per["dots-far"]["n"] == 6 and 0 <= per["dots-far"]["at_train"] <= 1
        assert set(res["verdicts"][m]) == {"dots-far", "bar-close"}
    with pytest.raises(ValueError, match="unknown setting"):
        run(out=tmp_path, settings=["nope"], progress=False)
