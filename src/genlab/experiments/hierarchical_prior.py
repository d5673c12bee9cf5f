"""A learned hierarchical prior against the standard-normal prior (Klushyn, Chen, Kurle,
Cseke & van der Smagt 2019, "Learning hierarchical priors in VAEs", arXiv 1905.04982).

Twins from the bundled recipes ``digits-vae-hierarchical`` and ``digits-vae-geco``: the same
VAE (Gaussian decoder, MLP nets, 8-d latent) trained with the same GECO constraint (model-
space reconstruction MSE at most ``tolerance`` per pixel), one with the learned two-level
prior, one with ``N(0, I)``. The constraint pins the reconstruction error, so the claim is
about the price paid for it: the hierarchical prior should need a smaller KL (a tighter
ELBO) at an equal reconstruction error. Measured on the 300 held-out digits:

* reconstruction MSE (model space, decoder mean at the posterior mean), KL(q(z|x) || p(z))
  (16-sample estimate; for the hierarchical prior ``log p(z)`` is itself the importance
  estimate of :mod:`genlab.models.priors`), the ELBO and IWAE_100 (``iwae`` metric);
* interpolation: for 20 seeded pairs of test digits of different classes, the straight line
  between their codes and the graph-based path (:func:`genlab.sampling.interpolation.graph_path`
  through the 10-NN graph of the training codes), each resampled to 8 codes and decoded; the
  score of a path is the mean distance (data space, grey levels) from each decoded image to
  its nearest training image: lower means the path stays on the data manifold.

Outputs ``hierarchical_prior.md``, ``hierarchical_prior.png`` (interpolations, graph vs
straight line, for both priors) and ``hierarchical_prior.json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from genlab.data.base import Batch
from genlab.experiments import progress_bar, train_recipe, write_table
from genlab.sampling.interpolation import graph_path, linear_path, resample_path

MODELS = {"hierarchical prior": "digits-vae-hierarchical", "standard normal": "digits-vae-geco"}
PAIRS, STEPS, K_NN = 20, 8, 10


def test_scores(model, dataset, *, samples: int = 16, seed: int = 0) -> dict[str, float]:
    """Reconstruction MSE, KL, ELBO and IWAE_100 on the test split."""
    from genlab.metrics.iwae import IWAEBound
    from genlab.sampling.importance import sample_distribution

    spec = dataset.spec
    model.eval()
    out: dict[str, float] = {}
    with torch.no_grad():
        xm = spec.to_model(dataset.test.to(next(model.parameters()).dtype))
        q = model.posterior(xm)
        rec = model.decode(q.mean)
        out["recon_mse"] = float((rec - xm).pow(2).mean())
        z = sample_distribution(q, (samples,), generator=torch.Generator().manual_seed(seed))
        out["kl"] = float((q.log_prob(z) - model.prior().log_prob(z)).mean())
    for k, name in ((1, "elbo"), (100, "iwae_100")):
        m = IWAEBound(k=k, dataset=dataset, seed=seed)
        m.update(model, Batch(dataset.test))
        out[name] = m.compute()["iwae_log_px"]
    return out


def _pairs(dataset, n: int, seed: int) -> list[tuple[int, int]]:
    g = torch.Generator().manual_seed(seed)
    y, pairs = dataset.test_y, []
    while len(pairs) < n:
        i, j = (int(v) for v in torch.randint(len(y), (2,), generator=g))
        if int(y[i]) != int(y[j]):
            pairs.append((i, j))
    return pairs


def interpolations(model, dataset, pairs: list[tuple[int, int]]) -> dict[str, Any]:
    """Decoded straight-line and graph paths (data space) and their off-manifold scores."""
    spec = dataset.spec
    dtype = next(model.parameters()).dtype
    train = dataset.train.to(dtype)
    with torch.no_grad():
        codes = model.posterior(spec.to_model(train)).mean
        test_codes = model.posterior(spec.to_model(dataset.test.to(dtype))).mean
        flat_train = train.reshape(len(train), -1)
        paths: dict[str, list[torch.Tensor]] = {"linear": [], "graph": []}
        for i, j in pairs:
            a, b = test_codes[i], test_codes[j]
            for name, path in (("linear", linear_path(a, b, STEPS)),
                               ("graph", resample_path(graph_path(codes, a, b, k=K_NN), STEPS))):
                paths[name].append(spec.to_data(model.decode(path)))
        scores = {}
        for name, imgs in paths.items():
            inner = torch.stack([p[1:-1] for p in imgs]).reshape(-1, flat_train.shape[1])
            scores[name] = float(torch.cdist(inner, flat_train).min(1).values.mean())
    return {"paths": paths, "scores": scores}


def run(*, out: str | Path, quick: bool = False, progress: bool = True) -> dict:
    """Train both twins (``quick``: 600 steps) and compare them (see the module docstring)."""
    from genlab.registry import DATASETS

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    steps = 600 if quick else None
    dataset = DATASETS["digits"]()
    pairs = _pairs(dataset, PAIRS, seed=0)
    res: dict[str, Any] = {"models": {}, "steps": steps, "pairs": PAIRS}
    kept: dict[str, dict[str, list[torch.Tensor]]] = {}
    bar = progress_bar(len(MODELS), progress, "hierarchical-prior")
    for name, recipe in MODELS.items():
        model, secs = train_recipe(recipe, out / "runs" / recipe, seed=0, steps=steps, progress=False)
        scores = test_scores(model, dataset)
        inter = interpolations(model, dataset, pairs)
        kept[name] = inter["paths"]
        res["models"][name] = {"recipe": recipe, "seconds": secs, **scores,
                               "off_manifold_linear": inter["scores"]["linear"],
                               "off_manifold_graph": inter["scores"]["graph"]}
        bar.update(1)
    bar.close()
    res["figure"] = str(_figure(out / "hierarchical_prior.png", kept, pairs[:3]))
    res["text"] = _table(out / "hierarchical_prior.md", res)
    (out / "hierarchical_prior.json").write_text(json.dumps({k: v for k, v in res.items() if k != "text"},
                                                            indent=1))
    return res


def _table(path: Path, res: dict) -> str:
    header = ["prior", "test recon MSE", "test KL (nats)", "test ELBO (nats)", "test IWAE_100 (nats)",
              "off-manifold: straight line", "off-manifold: graph path", "train s"]
    rows = [[m, r["recon_mse"], r["kl"], r["elbo"], r["iwae_100"], r["off_manifold_linear"],
             r["off_manifold_graph"], f"{r['seconds']:.0f}"] for m, r in res["models"].items()]
    h, s = res["models"]["hierarchical prior"], res["models"]["standard normal"]
    verdict = [
        f"- KL at the same constraint: hierarchical {h['kl']:.2f} vs standard {s['kl']:.2f} nats "
        f"({'lower: claim holds' if h['kl'] < s['kl'] else 'NOT lower: claim does not hold'}); reconstruction "
        f"MSE {h['recon_mse']:.4f} vs {s['recon_mse']:.4f}.",
        f"- ELBO: {h['elbo']:.2f} vs {s['elbo']:.2f} nats ({'tighter' if h['elbo'] > s['elbo'] else 'not tighter'}"
        " with the hierarchical prior).",
        f"- Graph paths vs straight lines (mean distance of decoded intermediates to the nearest training image, "
        f"grey levels): hierarchical {h['off_manifold_graph']:.2f} vs {h['off_manifold_linear']:.2f}; standard "
        f"{s['off_manifold_graph']:.2f} vs {s['off_manifold_linear']:.2f}.",
    ]
    note = (f"Digits, 300 test images; both priors trained with GECO under the same reconstruction constraint "
            f"(steps: {res['steps'] or 'recipe'}). Interpolations: {res['pairs']} seeded pairs of test digits of "
            f"different classes, {STEPS} decoded points per path, graph over the {K_NN}-NN graph of training codes.")
    text = write_table(path, "Hierarchical prior vs standard normal (Klushyn et al. 2019)", header, rows,
                       note=note) + "\n" + "\n".join(verdict) + "\n"
    path.write_text(text)
    return text


def _figure(path: Path, kept: dict[str, dict[str, list[torch.Tensor]]], pairs: list) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(f"{m}: {kind}", kept[m][kind][p]) for p in range(len(pairs)) for m in kept for kind in ("linear", "graph")]
    fig, axes = plt.subplots(len(rows), STEPS, figsize=(STEPS * 0.8 + 2.6, len(rows) * 0.8))
    for r, (label, imgs) in enumerate(rows):
        for c in range(STEPS):
            ax = axes[r, c]
            ax.imshow(imgs[c, 0].cpu().numpy(), cmap="gray", vmin=0, vmax=16, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle("Latent interpolation: straight line vs graph path (Klushyn et al. 2019)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
