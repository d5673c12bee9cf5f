"""The genlab command end to end on a tiny run."""

import json

import numpy as np
import pytest
import yaml

from genlab.cli.main import main

TINY = ["train.steps=20", "train.batch_size=32", "train.progress=false", "train.log_every=5",
        "train.sample_every=10", "data.n_train=256", "data.n_test=256", "eval.n=200",
        "model.hidden=16", "objective.critic.hidden=16"]


def sets(items):
    return [x for item in items for x in ("--set", item)]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "ring8"
    assert main(["train", "recipes/ring8-nsgan.yaml", "--out", str(out), *sets(TINY)]) == 0
    return out


def test_train_writes_run_directory(run):
    for name in ("config.yaml", "data_spec.json", "metrics.jsonl", "eval.json", "samples/step-000010.png",
                 "samples/step-000020.png", "ckpt/latest"):
        assert (run / name).exists(), name
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["steps"] == 20
    ev = json.loads((run / "eval.json").read_text())
    assert set(ev["metrics"]) == {"modes", "hq_percent", "reverse_kl"}


def test_train_by_recipe_name_and_resume(tmp_path):
    out = tmp_path / "r"
    assert main(["train", "ring8-nsgan", "--out", str(out), *sets(TINY)]) == 0
    assert main(["train", "ring8-nsgan", "--out", str(out), *sets(TINY)]) == 2  # exists, no --resume
    assert main(["train", "ring8-nsgan", "--out", str(out), "--resume",
                 *sets(TINY + ["train.steps=30"])]) == 0
    assert json.loads((out / "ckpt" / "step-000030" / "meta.json").read_text())["step"] == 30


def test_sample_npy_and_png(run, tmp_path):
    assert main(["sample", str(run), "--n", "50", "--out", str(tmp_path / "s.npy"), "--seed", "4"]) == 0
    x = np.load(tmp_path / "s.npy")
    assert x.shape == (50, 2) and np.isfinite(x).all()
    assert main(["sample", str(run), "--n", "50", "--out", str(tmp_path / "s2.npy"), "--seed", "4"]) == 0
    np.testing.assert_array_equal(x, np.load(tmp_path / "s2.npy"))
    assert main(["sample", str(run), "--n", "50", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_json(run, capsys):
    assert main(["eval", str(run), "--json", "--n", "300"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["n"] == 300 and 0 <= doc["metrics"]["modes"] <= 8


def test_eval_arrays(tmp_path, capsys):
    g = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", g.normal(size=(300, 2)))
    np.save(tmp_path / "b.npy", g.normal(size=(300, 2)) + 3)
    assert main(["eval", "--real", str(tmp_path / "a.npy"), "--fake", str(tmp_path / "b.npy"),
                 "--metrics", "fid,mmd", "--features", "identity", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["metrics"]["fid"] > 10


def test_user_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["train", str(tmp_path / "none.yaml")]) == 2
    assert "neither a file nor a bundled recipe" in capsys.readouterr().err
    assert main(["train", "ring8-nsgan", "--set", "model.widht=3", "--out", str(tmp_path / "x")]) == 2
    assert "unknown key 'widht'" in capsys.readouterr().err
    assert main(["train", "ring8-nsgan", "--set", "objective.name=mle", "--out", str(tmp_path / "y")]) == 2
    assert "needs a model with log_prob" in capsys.readouterr().err
    assert main(["sample", str(tmp_path), "--n", "3", "--out", str(tmp_path / "a.npy")]) == 2
    assert "not a genlab run directory" in capsys.readouterr().err


def test_list_shows_every_table(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("datasets:", "ring8", "digits", "models:", "mlp_generator", "objectives:", "nsgan",
                 "metrics:", "modes", "recipes:", "ring8-nsgan"):
        assert word in out


def test_compare(run, tmp_path):
    assert main(["compare", str(run), str(run), "--out", str(tmp_path / "r.html")]) == 0
    assert "<table" in (tmp_path / "r.html").read_text()
