"""``genlab demo``: the model-comparison study on the embedded data.

Trains, on scikit-learn's 8x8 digits, a DCGAN with the non-saturating loss and
with WGAN-GP, one Real NVP by maximum likelihood and by a Wasserstein critic
(only the objective differs), and a VAE on the ELBO; judges all of them by the same
battery of metrics (likelihood bounds where the model has the capability: bits/dim for
flows, the IWAE bound and the latent marginal test for the VAE);
also trains the 2-D GAN slice on ring8 and grid25 (mode coverage). Ends with a
printed leaderboard and a self-contained HTML report.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from genlab import registry
from genlab.capabilities import missing
from genlab.build import load_config
from genlab.config import resolve_recipe
from genlab.train import fit

#: The battery every digits model is judged by (model-based metrics only where the
#: model has the capability they need).
DIGITS_BATTERY = ["fid", "kid", "prdc", "is", "c2st", "critic", "bpd", "iwae", "latent"]


@dataclass
class DemoRun:
    recipe: str
    label: str
    overrides: list[str] = field(default_factory=list)
    quick_steps: int = 100


STUDY = [
    DemoRun("digits-dcgan", "dcgan-nsgan", quick_steps=120),
    DemoRun("digits-dcgan-wgangp", "dcgan-wgangp", quick_steps=60),
    DemoRun("digits-realnvp-mle", "realnvp-mle", quick_steps=150),
    DemoRun("digits-realnvp-wgan", "realnvp-wgan", quick_steps=60),
    DemoRun("digits-vae", "vae-elbo", quick_steps=150),
    DemoRun("ring8-nsgan", "ring8-nsgan", quick_steps=300),
    DemoRun("grid25-nsgan", "grid25-nsgan", quick_steps=300),
]


def battery_for(model_name: str, data_name: str) -> list[str]:
    """The metrics of the battery that apply to this model and data."""
    if data_name != "digits":
        return ["modes"]
    model_cls = registry.MODELS[model_name]
    return [m for m in DIGITS_BATTERY if not missing(registry.METRICS[m].requires, model_cls)]


def demo_config(run: DemoRun, quick: bool):
    """The validated config of one study entry: its recipe with the demo's battery and protocol."""
    cfg = load_config(resolve_recipe(run.recipe), run.overrides)
    battery = battery_for(cfg.model["name"], cfg.data["name"])
    critic = {"steps": 150 if quick else 600, "progress": False}
    sets = [f"eval.metrics={json.dumps(battery)}", "train.progress=true", "train.ckpt_every=0"]
    if cfg.data["name"] == "digits":  # the test split has 300 images: KID subsets of at most 300
        args = {"critic": critic, "kid": {"subset_size": 100 if quick else 300}, "iwae": {"k": 20 if quick else 200}}
        sets.append(f"eval.args={json.dumps({m: a for m, a in args.items() if m in battery})}")
    # one protocol for every model: the same number of samples, whatever the recipe says
    sets.append("eval.n=300" if quick and cfg.data["name"] == "digits" else "eval.n=2500")
    if quick:
        sets += [f"train.steps={run.quick_steps}", "train.sample_every=0"]
    return load_config(resolve_recipe(run.recipe), run.overrides + sets)


def run_one(run: DemoRun, out: Path, quick: bool) -> dict:
    cfg = demo_config(run, quick)
    t0 = time.time()
    result = fit(cfg, out / run.label)
    result["seconds"] = time.time() - t0
    return result


def run_demo(out: Path, *, quick: bool = False) -> dict:
    """Run the study into ``out`` (one run directory per model, plus ``report.html``)."""
    from genlab.report import compare, print_leaderboard

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    results = {}
    for i, run in enumerate(STUDY, 1):
        print(f"[{i}/{len(STUDY)}] {run.label} ({run.recipe}{', quick' if quick else ''})", flush=True)
        if (out / run.label / "ckpt").exists():
            import shutil
            shutil.rmtree(out / run.label)
        results[run.label] = run_one(run, out, quick)
        print(f"      {results[run.label]['seconds']:.0f} s: " +
              ", ".join(f"{k}={v:.3g}" for k, v in results[run.label]["eval"].items()), flush=True)
    dirs = [out / r.label for r in STUDY]
    report = compare(dirs, out / "report.html", title="genlab demo: one battery, many models")
    total = time.time() - t0
    print()
    print(print_leaderboard(dirs))
    print(f"\ndemo finished in {total:.0f} s. report: {report}\nsample grids: {out}/*/samples/")
    (out / "demo.json").write_text(json.dumps({"seconds": total, "quick": quick,
                                               "results": results}, indent=1, default=str))
    return results
