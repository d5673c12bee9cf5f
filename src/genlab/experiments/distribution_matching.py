"""VAEs do not match marginals; VAE-GAN hybrids do not beat a GAN (Rosca, Lakshminarayanan &
Mohamed 2018, "Distribution matching in variational inference", arXiv 1802.06847), at small
scale on 8x8 digits, judged by genlab's battery.

Four models share one decoder architecture (a :class:`~genlab.nets.dcgan.ConvDecoder`, 16-d
code, width 32, no batch norm), trained from the bundled recipes for a few CPU-minutes each:

* ``VAE``: ``digits-vae`` (ELBO, discretised-logistic decoder);
* ``AVB``: ``digits-avb`` (the same VAE with an implicit posterior, adversarial variational Bayes);
* ``alpha-GAN``: ``digits-alpha-gan`` (the same VAE trained as an auto-encoding GAN);
* ``GAN``: ``digits-dcgan`` with the generator set to ``conv_generator`` of the same architecture
  (``latent_dim: 16, width: 32, batch_norm: false``) and a conv critic of width 32, no EMA. The
  decoder stacks are layer for layer the same except the last layer's channels (the VAE's emits a
  location and a log-scale per pixel, the GAN's one value) and the output squashing (tanh for the
  GAN; the VAE's decoder mean is the logistic location clamped to the pixel range).

Measured, with ``n`` model samples against the ``n`` held-out images (``n = 300``, all of the
test split; features ``digits``):

1. latent space: the ``latent`` metric (aggregate posterior vs prior: MMD with a permutation
   p-value, C2ST) for the models with an encoder;
2. visible space: ``c2st`` and ``mmd`` two-sample tests of samples vs held-out data, for every
   model and for the training images themselves (the reference row: what two samples of the data
   distribution score);
3. sample quality: FID, KID, precision/recall/density/coverage. FID is the mean ± sd over three
   independent sample draws (evaluation seeds 0, 1, 2) and, with several training ``seeds``, over
   those too.

VAE and AVB samples are reported both as ``x ~ p(x|z)`` (the model's samples; discretised
logistic pixel noise) and as the decoder mean; alpha-GAN and the GAN are deterministic decoders.

Claims checked: (1) the VAE's aggregate posterior is detectably different from the prior
(p < 0.05 on MMD or C2ST); (2) the VAE's samples are detectably different from the data
(C2ST p < 0.05), reported beside the GAN's; (3) neither hybrid has a clearly lower FID than the
GAN (lower by more than twice the combined spread of the FIDs over sample draws and seeds) nor,
with several seeds, a clearly lower KID (lower by more than two standard errors of the difference
over seeds). Default ``seeds``: 0, 1, 2 (about 10 CPU-minutes per seed on one shared core);
``quick`` uses the first seed only. Outputs ``distribution_matching.md``, ``.json`` and ``.png``
(sample grids of the first seed).
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from genlab.experiments import progress_bar, write_table
from genlab.models.base import AmortizedPosterior

#: label -> (recipe, overrides of the recipe's sections)
MODELS: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {
    "VAE": ("digits-vae", {}),
    "AVB": ("digits-avb", {}),
    "alpha-GAN": ("digits-alpha-gan", {}),
    "GAN": ("digits-dcgan", {"model": {"name": "conv_generator", "latent_dim": 16, "width": 32,
                                       "batch_norm": False},
                             "objective": {"name": "nsgan", "critic": {"name": "conv", "width": 32}},
                             "train": {"steps": 6000, "ema": None}}),
}
#: Models whose samples are reported both as x ~ p(x|z) and as the decoder mean.
BOTH_SAMPLE_MODES = ("VAE", "AVB")
SAMPLE_METRICS = ["fid", "kid", "prdc", "c2st", "mmd"]
EVAL_SEEDS = (0, 1, 2)
QUICK_STEPS = {"VAE": 150, "AVB": 150, "alpha-GAN": 100, "GAN": 200}


def recipe_config(label: str, *, seed: int, steps: int | None, progress: bool) -> dict[str, Any]:
    """The config dict of model ``label`` (its recipe plus :data:`MODELS` overrides)."""
    from genlab.config import RECIPES, load_yaml

    recipe, over = MODELS[label]
    d = load_yaml(RECIPES / f"{recipe}.yaml")
    for section, values in over.items():
        if section in ("model", "objective"):
            d[section] = copy.deepcopy(values)
        else:
            d[section].update(copy.deepcopy(values))
    d["seed"], d["train"]["progress"] = seed, progress
    if steps is not None:
        d["train"]["steps"] = steps
    d["train"]["sample_every"], d["train"]["ckpt_every"], d["eval"] = 0, 0, {"metrics": []}
    d.pop("expected", None)
    d["name"] = f"dm-{label}"
    return d


def train(label: str, run_dir: Path, *, seed: int, steps: int | None, progress: bool):
    """Train model ``label`` into a fresh ``run_dir``; returns ``(model, seconds)``."""
    from genlab import load
    from genlab.config import from_dict
    from genlab.train import fit

    if run_dir.exists():
        shutil.rmtree(run_dir)
    result = fit(from_dict(recipe_config(label, seed=seed, steps=steps, progress=progress)), run_dir)
    return load(run_dir), result["seconds"]


def judge(model, dataset, *, n: int, seed: int = 0, metrics: Sequence[str] = SAMPLE_METRICS) -> dict[str, float]:
    """The battery on ``n`` samples (evaluation ``seed``) against ``n`` held-out images."""
    from genlab.metrics.evaluate import evaluate_model

    args = {"kid": {"subset_size": n}} if "kid" in metrics else {}
    return evaluate_model(model, dataset, list(metrics), n=n, seed=seed, args=args)


def reference(dataset, *, n: int) -> dict[str, float]:
    """The battery on ``n`` training images against the ``n`` held-out ones (two samples of the data)."""
    from genlab.metrics.samples import evaluate_samples

    with warnings.catch_warnings():  # KID's subset size is capped at n, as judge() asks explicitly
        warnings.simplefilter("ignore", UserWarning)
        return evaluate_samples(dataset.test[:n], dataset.train[:n], SAMPLE_METRICS, features="digits")


def run(*, out: str | Path, quick: bool = False, seeds: Sequence[int] = (0, 1, 2), progress: bool = True) -> dict:
    """Train the four models for each of ``seeds`` and measure the three claims (``quick``: a few
    hundred steps and 100 samples, a smoke test)."""
    from genlab.registry import DATASETS

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = DATASETS["digits"]()
    n = 100 if quick else len(dataset.test)
    seeds = tuple(seeds)[:1] if quick else tuple(seeds)
    res: dict[str, Any] = {"n": n, "seeds": list(seeds), "quick": quick, "rows": {}, "latent": {}, "seconds": {}}
    res["reference"] = reference(dataset, n=n)
    rows: dict[str, list[dict[str, float]]] = {}
    fids: dict[str, list[float]] = {}
    latent: dict[str, list[dict[str, float]]] = {}
    grids: dict[str, torch.Tensor] = {}
    bar = progress_bar(len(MODELS) * len(seeds), progress, "distribution-matching")
    for seed in seeds:
        for label in MODELS:
            steps = QUICK_STEPS[label] if quick else None
            model, secs = train(label, out / "runs" / f"{label}-seed{seed}", seed=seed, steps=steps, progress=False)
            res["seconds"].setdefault(label, []).append(secs)
            if isinstance(model, AmortizedPosterior):
                latent.setdefault(label, []).append(judge(model, dataset, n=n, metrics=["latent"]))
            modes = ("likelihood", "mean") if label in BOTH_SAMPLE_MODES else (None,)
            for mode in modes:
                if mode is not None:
                    model.sample_from = mode
                row = label if mode is None else f"{label} ({'x ~ p(x|z)' if mode == 'likelihood' else 'mean'})"
                rows.setdefault(row, []).append(judge(model, dataset, n=n, seed=0))
                fids.setdefault(row, []).extend(
                    [rows[row][-1]["fid"]] + [judge(model, dataset, n=n, seed=s, metrics=["fid"])["fid"]
                                              for s in EVAL_SEEDS[1:]])
                if seed == seeds[0]:
                    from genlab.metrics.evaluate import draw_samples
                    grids[row] = draw_samples(model, 64, seed=0, spec=dataset.spec)
            bar.update(1)
    bar.close()
    for row, values in rows.items():
        mean = {k: float(np.mean([v[k] for v in values])) for k in values[0]}
        mean["fid_mean"], mean["fid_sd"] = float(np.mean(fids[row])), float(np.std(fids[row], ddof=1))
        # spread over training seeds (NaN with one seed)
        mean["kid_sd"] = float(np.std([v["kid"] for v in values], ddof=1)) if len(values) > 1 else math.nan
        mean["per_seed"] = {k: [float(v[k]) for v in values] for k in ("fid", "kid", "c2st_acc")}
        res["rows"][row] = mean
    for label, values in latent.items():
        res["latent"][label] = {k: float(np.mean([v[k] for v in values])) for k in values[0]}
    res["claims"] = claims(res)
    res["figure"] = str(_figure(out / "distribution_matching.png", grids, dataset.spec))
    res["text"] = _table(out / "distribution_matching.md", res)
    (out / "distribution_matching.json").write_text(json.dumps({k: v for k, v in res.items() if k != "text"},
                                                               indent=1))
    return res


def claims(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The three verdicts from the measured numbers."""
    out: dict[str, dict[str, Any]] = {}
    lat = res["latent"].get("VAE")
    if lat is not None:
        p_mmd, p_c2st = lat["latent_mmd_pvalue"], lat["latent_c2st_pvalue"]
        out["latent"] = {"holds": bool(min(p_mmd, p_c2st) < 0.05),
                         "text": f"VAE aggregate posterior vs prior: MMD p = {p_mmd:.3g}, C2ST accuracy "
                                 f"{lat['latent_c2st_acc']:.3f} (p = {p_c2st:.3g})"}
    vae_rows = [r for r in res["rows"] if r.startswith("VAE")]
    gan = res["rows"].get("GAN")
    if vae_rows and gan is not None:
        parts = [f"{r}: C2ST {res['rows'][r]['c2st_acc']:.3f} (p = {res['rows'][r]['c2st_pvalue']:.3g})"
                 for r in vae_rows]
        out["visible"] = {"holds": all(res["rows"][r]["c2st_pvalue"] < 0.05 for r in vae_rows),
                          "text": "; ".join(parts) + f"; GAN: C2ST {gan['c2st_acc']:.3f} (p = {gan['c2st_pvalue']:.3g}); "
                                  f"data vs data: {res['reference']['c2st_acc']:.3f}"}
    if gan is not None:
        for hybrid in ("alpha-GAN", "AVB (mean)", "AVB (x ~ p(x|z))"):
            h = res["rows"].get(hybrid)
            if h is None:
                continue
            spread = 2 * math.sqrt(h["fid_sd"] ** 2 + gan["fid_sd"] ** 2)
            better = h["fid_mean"] < gan["fid_mean"] - spread
            text = (f"FID {hybrid} {h['fid_mean']:.1f} ± {h['fid_sd']:.1f} vs GAN {gan['fid_mean']:.1f} ± "
                    f"{gan['fid_sd']:.1f}: {'better' if better else 'not better'} (better: lower by more than "
                    f"{spread:.1f})")
            if not math.isnan(h["kid_sd"]):  # KID's spread comes from the training seeds
                k_spread = 2 * math.sqrt(h["kid_sd"] ** 2 + gan["kid_sd"] ** 2) / math.sqrt(len(res["seeds"]))
                k_better = h["kid"] < gan["kid"] - k_spread
                better = better or k_better
                text += (f"; KID {h['kid']:.0f} ± {h['kid_sd']:.0f} vs GAN {gan['kid']:.0f} ± {gan['kid_sd']:.0f} "
                         f"(sd over seeds): {'better' if k_better else 'not better'} (better: lower by more than "
                         f"{k_spread:.0f}, 2 standard errors of the difference)")
            out[f"no improvement: {hybrid}"] = {"holds": not better, "text": text}
    return out


def _table(path: Path, res: dict[str, Any]) -> str:
    header = ["samples", "FID", "KID", "precision", "recall", "density", "coverage", "C2ST acc",
              "C2ST p", "MMD^2", "MMD p", "train s"]
    rows = []
    for row, r in res["rows"].items():
        label = row.split(" (")[0]
        secs = float(np.mean(res["seconds"][label]))
        kid = f"{r['kid']:.0f}" if math.isnan(r["kid_sd"]) else f"{r['kid']:.0f} ± {r['kid_sd']:.0f}"
        rows.append([row, f"{r['fid_mean']:.1f} ± {r['fid_sd']:.1f}", kid, f"{r['precision']:.2f}",
                     f"{r['recall']:.2f}", f"{r['density']:.2f}", f"{r['coverage']:.2f}", f"{r['c2st_acc']:.3f}",
                     f"{r['c2st_pvalue']:.2g}", f"{r['mmd2']:.4f}", f"{r['mmd_pvalue']:.2g}", f"{secs:.0f}"])
    ref = res["reference"]
    rows.append(["data (train vs held-out)", f"{ref['fid']:.1f}", f"{ref['kid']:.0f}", f"{ref['precision']:.2f}",
                 f"{ref['recall']:.2f}", f"{ref['density']:.2f}", f"{ref['coverage']:.2f}", f"{ref['c2st_acc']:.3f}",
                 f"{ref['c2st_pvalue']:.2g}", f"{ref['mmd2']:.4f}", f"{ref['mmd_pvalue']:.2g}", "-"])
    note = (f"8x8 digits, {res['n']} samples against the {res['n']} held-out images, features 'digits'; training "
            f"seeds {res['seeds']}{' (QUICK smoke run: not a result)' if res['quick'] else ''}. Every model has the "
            "same conv decoder stack (16-d code, width 32, no batch norm). FID: mean ± sd over 3 sample draws"
            " (and seeds); other columns: mean over seeds (KID ± sd over seeds). KID in the digits features' units.")
    text = write_table(path, "Distribution matching (Rosca et al. 2018): samples", header, rows, note=note)
    lat_rows = [[m, f"{v['latent_mmd2']:.4f}", f"{v['latent_mmd_pvalue']:.2g}", f"{v['latent_c2st_acc']:.3f}",
                 f"{v['latent_c2st_pvalue']:.2g}"] for m, v in res["latent"].items()]
    lines = ["", "## Latent space: aggregate posterior vs prior (metric latent, one code per held-out image)", "",
             "| model | MMD^2 | MMD p | C2ST acc | C2ST p |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in lat_rows]
    lines += ["", "## Claims", ""]
    lines += [f"- {name}: {'holds' if c['holds'] else 'does NOT hold'} ({c['text']})" for name, c in res["claims"].items()]
    text += "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def _figure(path: Path, grids: dict[str, torch.Tensor], spec) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genlab.train.pictures import image_grid

    fig, axes = plt.subplots(1, len(grids), figsize=(2.6 * len(grids), 3.0))
    for ax, (row, x) in zip(np.atleast_1d(axes), grids.items()):
        g = image_grid(np.clip(x.double().numpy() / (spec.levels - 1), 0, 1), 8)
        ax.imshow(g.squeeze(-1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(row, fontsize=8)
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
