"""The mode-coverage table (`genlab bench modes`): its cells' configs, the recipes that
publish the recommended configurations, and a tiny end-to-end table."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from genlab.build import validate
from genlab.config import from_dict
from genlab.experiments import modes_table

RECIPES = Path(__file__).resolve().parents[1] / "src" / "genlab" / "recipes"


@pytest.mark.parametrize("data,r1", [("ring8", 0.1), ("grid25", 0.5)])
def test_recommended_cell_is_the_published_recipe(data, r1):
    cell = modes_table.config(modes_table.RECOMMENDED, data, seed=0)
    recipe = yaml.safe_load((RECIPES / f"{data}-recommended.yaml").read_text())
    assert cell["objective"]["penalty"] == [{"name": "r1", "weight": r1}] == recipe["objective"]["penalty"]
    assert cell["data"]["name"] == recipe["data"]["name"] == data
    assert cell["model"] == recipe["model"]
    assert cell["objective"] == recipe["objective"]
    for key in ("steps", "batch_size", "lr", "betas", "lr_schedule"):
        assert cell["train"][key] == recipe["train"][key], key
    assert recipe["train"]["ema"] is None and "ema" not in cell["train"]
    validate(from_dict(recipe))
    validate(from_dict(cell))


def test_rows_share_the_protocol_and_per_data_overrides_stay_local():
    ring = modes_table.config(modes_table.RECOMMENDED, "ring8", seed=1)
    ring["objective"]["penalty"][0]["weight"] = 99.0     # a cell's config is a copy
    assert modes_table.RECOMMENDED["objective"]["penalty"][0]["weight"] == 0.5
    gan = modes_table.config(modes_table.ROWS["gan"], "grid25", seed=2, steps=7)
    assert gan["train"]["steps"] == 7 and gan["train"]["batch_size"] == 256 and gan["seed"] == 2
    assert gan["eval"] == {"metrics": ["modes"], "n": 2500, "seed": 0}


def test_a_tiny_table_trains_writes_and_resumes(tmp_path):
    out = modes_table.run(out=tmp_path, seeds=2, rows=["nsgan"], datasets=("ring8",), steps=20,
                          workers=1, progress=False)
    row = out["summary"]["ring8"]["nsgan"]
    assert 0 <= row["modes"] <= 8 and 0 <= row["hq_percent"] <= 100 and row["diverged"] == 0
    text = (tmp_path / "modes_table.md").read_text()
    assert "| ring8 | nsgan |" in text and (tmp_path / "modes_table.png").stat().st_size > 0
    # a second call reuses the finished cells rather than training again
    evals = sorted(tmp_path.glob("runs/ring8/nsgan/seed-*/eval.json"))
    stamps = [p.stat().st_mtime_ns for p in evals]
    again = modes_table.run(out=tmp_path, seeds=2, rows=["nsgan"], datasets=("ring8",), steps=20,
                            workers=1, progress=False)
    assert len(evals) == 2 and [p.stat().st_mtime_ns for p in evals] == stamps
    drop = lambda runs: {k: {m: v for m, v in cell.items() if m != "seconds"} for k, cell in runs.items()}  # noqa: E731
    assert drop(again["runs"]) == drop(out["runs"])
    with pytest.raises(ValueError, match="unknown rows"):
        modes_table.run(out=tmp_path, rows=["nope"])
