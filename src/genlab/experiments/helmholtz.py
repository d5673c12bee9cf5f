"""Plain wake-sleep against DDC wake-sleep on the same Helmholtz machine (Hinton, Dayan, Frey &
Neal 1995; Vértes & Sahani 2018, "Flexible and accurate inference and learning for deep
generative models", arXiv 1805.11051), on binarised digits.

Twins from the bundled recipes ``digits-binary-helmholtz-ws`` (``helmholtz`` model, Gaussian
recognition model, ``wake_sleep``) and ``digits-binary-helmholtz-ddc`` (``ddc_helmholtz``, a
DDC recognition model, ``ddc_wake_sleep``): the same generative model ``z ~ N(0, I_8)``, Bernoulli
MLP decoder (identical initial weights: same seed, decoder built first), data, optimiser and
number of steps. For reference the ``helmholtz`` model is also trained by the ``elbo`` objective
(a VAE: same nets, reparameterised gradients), with the same budget.

Every model is scored the same way, without its recognition model, on the held-out images:

* ``ais_latent`` (AIS from the prior to the posterior with HMC on the model's own decoder,
  ``ais_steps`` intermediate distributions, 8 chains; Wu et al. 2017, arXiv 1611.04273);
* ``iwae`` with the *prior* as proposal and ``k = 5000`` (a looser bound);
* learning curves: ``iwae`` (prior proposal, ``k = 1000``, 100 held-out images) every
  ``curve_every`` steps during training.

Outputs ``helmholtz.md`` (table), ``helmholtz.png`` (learning curves and samples) and
``helmholtz.json``. The verdict (which training did better on AIS) comes from paired
differences over images.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import torch

from genlab.data.base import Batch
from genlab.experiments import progress_bar, write_table

RUNS = {"wake-sleep": ("digits-binary-helmholtz-ws", None),
        "DDC wake-sleep": ("digits-binary-helmholtz-ddc", None),
        "ELBO (reference)": ("digits-binary-helmholtz-ws", {"name": "elbo"})}


def _train(recipe: str, objective: dict | None, run_dir: Path, *, steps: int | None, curve_every: int,
           curve_n: int):
    from genlab import load
    from genlab.config import RECIPES, from_dict, load_yaml
    from genlab.train import fit

    d = load_yaml(RECIPES / f"{recipe}.yaml")
    d["seed"], d["train"]["progress"] = 0, False
    if steps is not None:
        d["train"]["steps"] = steps
    if objective is not None:
        d["objective"] = objective
    d["train"]["sample_every"], d["train"]["ckpt_every"] = 0, 0
    d["eval"] = {"metrics": ["iwae"], "n": curve_n, "every": curve_every,
                 "args": {"iwae": {"k": 1000, "proposal": "prior"}}}
    if run_dir.exists():
        shutil.rmtree(run_dir)
    result = fit(from_dict(d), run_dir)
    curve = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        key = next((k for k in row if k.endswith("iwae_log_px")), None)
        if key is not None:
            curve.append((int(row["step"]), float(row[key])))
    return load(run_dir), result["seconds"], curve, d["objective"]["name"]


def scores(model, dataset, *, n: int, ais_steps: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Per-example held-out ``{ "AIS": (n,), "IWAE_prior_5000": (n,) }`` in nats."""
    from genlab.metrics.ais import AISLatent
    from genlab.metrics.iwae import IWAEBound

    batch = Batch(dataset.test[:n])
    a = AISLatent(steps=ais_steps, chains=8, dataset=dataset, seed=seed, max_examples=n, progress=False)
    a.update(model, batch)
    iw = IWAEBound(k=5000, proposal="prior", dataset=dataset, seed=seed, max_examples=n)
    iw.update(model, batch)
    return {"AIS": a.values(), "IWAE_prior_5000": iw.values()}


def run(*, out: str | Path, quick: bool = False, progress: bool = True) -> dict:
    """Train the three (``quick``: 1,500 steps, 100 images, 100 AIS steps) and compare."""
    from genlab.registry import DATASETS

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    steps, n, ais_steps, every = (1500, 100, 100, 250) if quick else (None, 300, 500, 500)
    dataset = DATASETS["digits"](binarize="threshold")
    res: dict[str, Any] = {"models": {}, "n": n, "ais_steps": ais_steps, "steps": steps}
    per_example: dict[str, dict[str, torch.Tensor]] = {}
    samples: dict[str, torch.Tensor] = {}
    bar = progress_bar(len(RUNS), progress, "helmholtz")
    for name, (recipe, objective) in RUNS.items():
        tag = recipe + ("" if objective is None else "-" + objective["name"])
        model, secs, curve, objective_name = _train(recipe, objective, out / "runs" / tag, steps=steps,
                                                    curve_every=every, curve_n=100)
        s = scores(model, dataset, n=n, ais_steps=ais_steps)
        per_example[name] = s
        samples[name] = model.sample(32, generator=torch.Generator().manual_seed(0))
        res["models"][name] = {"recipe": recipe, "objective": objective_name,
                               "seconds": secs, "curve": curve,
                               "scores": {k: float(v.mean()) for k, v in s.items()},
                               "se": {k: float(v.std() / math.sqrt(len(v))) for k, v in s.items()}}
        bar.update(1)
    bar.close()
    ws, ddc = per_example["wake-sleep"]["AIS"], per_example["DDC wake-sleep"]["AIS"]
    res["ddc_minus_ws"] = _paired("DDC wake-sleep - wake-sleep (AIS)", ddc - ws)
    res["elbo_minus_ws"] = _paired("ELBO - wake-sleep (AIS)", per_example["ELBO (reference)"]["AIS"] - ws)
    res["figure"] = str(_figure(out / "helmholtz.png", res, samples))
    res["text"] = _table(out / "helmholtz.md", res, dataset.spec.dim)
    (out / "helmholtz.json").write_text(json.dumps({k: v for k, v in res.items() if k != "text"}, indent=1))
    return res


def _paired(pair: str, d: torch.Tensor) -> dict[str, Any]:
    mean, se = float(d.mean()), float(d.std() / math.sqrt(len(d)))
    verdict = "first better" if mean > 2 * se else ("second better" if mean < -2 * se else "equal within 2 s.e.")
    return {"pair": pair, "diff": mean, "se": se, "verdict": verdict}


def _table(path: Path, res: dict, dim: int) -> str:
    header = ["training", "objective", "AIS log p(x) (nats)", "IWAE_5000, prior proposal (nats)", "train s"]
    rows = [[m, r["objective"], f"{r['scores']['AIS']:.2f} ± {r['se']['AIS']:.2f}",
             f"{r['scores']['IWAE_prior_5000']:.2f} ± {r['se']['IWAE_prior_5000']:.2f}", f"{r['seconds']:.0f}"]
            for m, r in res["models"].items()]
    steps = res["steps"] or "the recipes'"
    note = (f"Binarised digits (threshold 8), the first {res['n']} test images, held-out log-likelihood in nats per "
            f"image (D = {dim}; ± standard error over images). Same generative model (z ~ N(0, I_8), Bernoulli MLP "
            f"decoder), seed, optimiser and {steps} steps. AIS: {res['ais_steps']} steps, 8 chains, no recognition "
            "model used.")
    lines = [f"- {p['pair']}: {p['diff']:+.3f} ± {p['se']:.3f} nats ({p['verdict']})"
             for p in (res["ddc_minus_ws"], res["elbo_minus_ws"])]
    text = write_table(path, "Wake-sleep vs DDC wake-sleep (Vértes & Sahani 2018)", header, rows, note=note) + \
        "\n" + "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def _figure(path: Path, res: dict, samples: dict[str, torch.Tensor]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(samples)
    fig, axes = plt.subplots(1, 1 + k, figsize=(4.2 + 2.6 * k, 3.4), gridspec_kw={"width_ratios": [1.6] + [1] * k})
    ax = axes[0]
    for m, r in res["models"].items():
        if r["curve"]:
            xs, ys = zip(*r["curve"])
            ax.plot(xs, ys, marker="o", ms=3, label=m)
    ax.set_xlabel("step")
    ax.set_ylabel("held-out IWAE_1000, prior proposal (nats)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    for a, (m, x) in zip(axes[1:], samples.items()):
        v = x[:32, 0].float()
        v = (v - v.min()) / (v.max() - v.min() + 1e-12)
        v = torch.nn.functional.pad(v, (1, 1, 1, 1), value=0.5)  # (32, 10, 10), grey borders
        grid = v.reshape(4, 8, 10, 10).permute(0, 2, 1, 3).reshape(40, 80)
        a.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=1)
        a.set_title(f"samples: {m}", fontsize=8)
        a.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
