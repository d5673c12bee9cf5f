"""Bounds are ordered, and IWAE training helps (Burda, Grosse & Salakhutdinov 2015,
arXiv 1509.00519), on binarised digits (the small stand-in for binarised MNIST).

Two twins from the bundled recipes ``digits-binary-vae`` (trained on the ELBO) and
``digits-binary-iwae`` (trained on the IWAE bound, k = 5): same data, Bernoulli decoder,
MLP nets, seed, optimiser and steps. On the 300 held-out images, for each model:

* the ELBO (the ``iwae`` metric with ``k = 1``, posterior proposal) and ``IWAE_k`` for
  ``k = 5, 50, 5000``;
* the AIS estimate (``ais_latent``, the VAE's own decoder; ``ais_steps`` intermediate
  distributions, 8 chains, HMC).

Claims checked: ``ELBO <= IWAE_5 <= IWAE_50 <= IWAE_5000 <= AIS`` for each model (up to
the estimators' noise: the table gives standard errors of the differences, paired over
examples), and the IWAE-trained model's ``IWAE_5000`` is higher than the VAE-trained
one's. Outputs ``vae_bounds.md``, ``vae_bounds.png`` and ``vae_bounds.json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from genlab.data.base import Batch
from genlab.experiments import progress_bar, train_recipe, write_table

MODELS = {"VAE (ELBO)": "digits-binary-vae", "IWAE (k=5)": "digits-binary-iwae"}
KS = (1, 5, 50, 5000)


def bounds(model, dataset, *, ks=KS, ais_steps: int = 1000, n: int = 300, seed: int = 0,
           progress: bool = False) -> dict[str, torch.Tensor]:
    """Per-example data-space log-likelihood bounds ``{name: (n,)}`` on the first ``n`` test images."""
    from genlab.metrics.ais import AISLatent
    from genlab.metrics.iwae import IWAEBound

    batch = Batch(dataset.test[:n])
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        m = IWAEBound(k=k, dataset=dataset, seed=seed, max_examples=n)
        m.update(model, batch)
        out["ELBO" if k == 1 else f"IWAE_{k}"] = m.values()
    a = AISLatent(steps=ais_steps, chains=8, dataset=dataset, seed=seed, max_examples=n, progress=progress)
    a.update(model, batch)
    out["AIS"] = a.values()
    return out


def run(*, out: str | Path, quick: bool = False, progress: bool = True) -> dict:
    """Train both twins (``quick``: 1,000 steps, 100 images, 100 AIS steps) and compare bounds."""
    from genlab.registry import DATASETS

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    steps, n, ais_steps = (1000, 100, 100) if quick else (None, 300, 1000)
    dataset = DATASETS["digits"](binarize="threshold")
    res: dict[str, Any] = {"models": {}, "n": n, "ais_steps": ais_steps, "steps": steps}
    bar = progress_bar(len(MODELS), progress, "vae-bounds")
    per_example: dict[str, dict[str, torch.Tensor]] = {}
    for name, recipe in MODELS.items():
        model, secs = train_recipe(recipe, out / "runs" / recipe, seed=0, steps=steps, progress=False)
        b = bounds(model, dataset, ais_steps=ais_steps, n=n)
        per_example[name] = b
        names = list(b)
        ordered = []
        for lo, hi in zip(names, names[1:]):
            d = b[hi] - b[lo]
            ordered.append(_verdict(f"{lo} <= {hi}", d))
        res["models"][name] = {"recipe": recipe, "seconds": secs,
                               "bounds": {k: float(v.mean()) for k, v in b.items()},
                               "se": {k: float(v.std() / math.sqrt(len(v))) for k, v in b.items()},
                               "ordering": ordered}
        bar.update(1)
    bar.close()
    a, b = (per_example[k]["IWAE_5000"] for k in MODELS)
    d = b - a
    res["iwae_training_helps"] = _verdict("IWAE-trained >= VAE-trained (IWAE_5000)", d)
    res["figure"] = str(_figure(out / "vae_bounds.png", res))
    res["text"] = _table(out / "vae_bounds.md", res, dataset.spec.dim)
    (out / "vae_bounds.json").write_text(json.dumps({k: v for k, v in res.items() if k != "text"}, indent=1))
    return res


def _verdict(pair: str, d: torch.Tensor) -> dict[str, Any]:
    """Paired differences ``d`` (should be >= 0): holds (> 2 s.e.), equal within noise, or fails."""
    mean, se = float(d.mean()), float(d.std() / math.sqrt(len(d)))
    verdict = "holds" if mean > 2 * se else ("equal within 2 s.e." if mean >= -2 * se else "does NOT hold")
    return {"pair": pair, "diff": mean, "se": se, "verdict": verdict}


def _table(path: Path, res: dict, dim: int) -> str:
    names = list(next(iter(res["models"].values()))["bounds"])
    header = ["model", *[f"{k} (nats)" for k in names], "train s"]
    rows = [[m, *[f"{r['bounds'][k]:.2f} ± {r['se'][k]:.2f}" for k in names], f"{r['seconds']:.0f}"]
            for m, r in res["models"].items()]
    lines = []
    for m, r in res["models"].items():
        for o in r["ordering"]:
            lines.append(f"- {m}: {o['pair']}: difference {o['diff']:+.3f} ± {o['se']:.3f} nats ({o['verdict']})")
    h = res["iwae_training_helps"]
    lines.append(f"- IWAE training helps: IWAE_5000 of the IWAE-trained model minus the VAE-trained one's = "
                 f"{h['diff']:+.3f} ± {h['se']:.3f} nats ({h['verdict']})")
    note = (f"Binarised digits (threshold 8), {res['n']} test images, log-likelihood bounds in nats per image "
            f"(D = {dim}; ± standard error over images). AIS: {res['ais_steps']} steps, 8 chains. Differences are "
            "paired over images.")
    text = write_table(path, "VAE bounds (Burda et al. 2015)", header, rows, note=note) + "\n" + \
        "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def _figure(path: Path, res: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for i, (m, r) in enumerate(res["models"].items()):
        names = list(r["bounds"])
        ys = [r["bounds"][k] for k in names]
        es = [r["se"][k] for k in names]
        ax.errorbar(range(len(names)), ys, yerr=es, marker="o", capsize=3, label=m)
        ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("held-out log p(x) bound (nats)")
    ax.set_title("Bounds on binarised digits: ELBO <= IWAE_k <= AIS")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
