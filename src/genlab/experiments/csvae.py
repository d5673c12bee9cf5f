"""Latent subspaces and attribute swapping with CSVAE (Klys, Snell & Zemel 2018, "Learning latent
subspaces in variational autoencoders", arXiv 1812.06190), on 8x8 digits with the attribute
"even digit" (recipe ``digits-csvae``).

Three models are trained (3,000 steps each) from the recipe: CSVAE as specified (the paper's
beta2..beta4 = 1, 0.2, 10 with beta1 = 1), the same with the paper's beta1 = 20
(``reconstruction: 20``), and the recipe with ``entropy: 0`` (the adversary is still trained, but
the encoder ignores it: an ablation of the mutual-information term). Then, on the 300 held-out
digits:

(a) how well the attribute ``y`` can be predicted from the codes: scikit-learn's logistic
    regression, and an MLP classifier (2 x 64 ReLU units; the adversary is nonlinear too), on
    standardised posterior means, fitted on the training codes, accuracy on the
    test codes, for ``z = E q(z|x)`` (the paper's goal: near chance, the majority rate) and for
    ``w = E q(w|x,y)`` (high; note that ``q(w|x,y)`` is given ``y``), beside the same probe on the
    pixels;
(b) attribute swapping: a logistic-regression attribute classifier fitted on the training pixels
    is applied to ``swap(x, 1 - y)`` (``z`` from ``x``, ``w`` the mean of ``p(w | 1 - y)``): the
    fraction classified as the new attribute is the swap success; the same for ``swap(x, y)``
    (the attribute kept) and the plain reconstructions. A 10-class logistic regression on the
    pixels tells which digit each swap became.

Outputs ``csvae.md``, ``csvae.json`` and ``csvae.png`` (test digits, reconstructions, swaps to
odd and to even for both models).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab.experiments import progress_bar, write_table

RECIPE = "digits-csvae"
#: (name, objective overrides of the recipe) of the models trained.
VARIANTS = (("csvae (recipe, beta1 = 1)", None), ("paper's beta1 = 20", {"reconstruction": 20.0}),
            ("no adversary (beta4 = 0)", {"entropy": 0.0}))
SHORT = {"csvae (recipe, beta1 = 1)": "csvae", "paper's beta1 = 20": "beta1=20", "no adversary (beta4 = 0)": "beta4=0"}


def _train(run_dir: Path, *, steps: int | None, objective: dict[str, Any] | None = None, seed: int = 0):
    from genlab import load
    from genlab.config import RECIPES, from_dict, load_yaml
    from genlab.train import fit

    d = load_yaml(RECIPES / f"{RECIPE}.yaml")
    d["seed"], d["train"]["progress"] = seed, False
    if steps is not None:
        d["train"]["steps"] = steps
    d["objective"].update(objective or {})
    d["train"]["sample_every"], d["train"]["ckpt_every"], d["eval"] = 0, 0, {"metrics": []}
    if run_dir.exists():
        shutil.rmtree(run_dir)
    result = fit(from_dict(d), run_dir)
    return load(run_dir).eval(), result["seconds"]


def _probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, *,
           kind: str = "logistic") -> float:
    """Test accuracy of a logistic regression (``kind: mlp``: an MLP, 2 x 64 ReLU units, seed 0) on
    standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    head = LogisticRegression(max_iter=3000) if kind == "logistic" else \
        MLPClassifier(hidden_layer_sizes=(64, 64), max_iter=2000, random_state=0)
    clf = make_pipeline(StandardScaler(), head).fit(train_x, train_y)
    return float((clf.predict(test_x) == test_y).mean())


def measure(model, dataset, attr_clf, digit_clf) -> dict[str, Any]:
    """Probe accuracies of ``y`` from ``z`` and ``w``, and the attribute classifier on swaps."""
    spec = dataset.spec
    xtr, xte = spec.to_model(dataset.train), spec.to_model(dataset.test)
    ytr, yte = model.attribute(dataset.train_y), model.attribute(dataset.test_y)
    with torch.no_grad():
        ztr, zte = model.posterior_z(xtr).mean, model.posterior_z(xte).mean
        wtr, wte = model.posterior_w(xtr, ytr).mean, model.posterior_w(xte, yte).mean
        swapped = spec.to_data(model.swap(xte, 1 - yte))
        kept = spec.to_data(model.swap(xte, yte))
        recon = spec.to_data(model.reconstruct(xte, context=dataset.test_y))
    y_np, yte_np = ytr.numpy(), yte.numpy()

    def attr(images):
        return attr_clf.predict((images.flatten(1) / 16.0).numpy())
    digits_after = digit_clf.predict((swapped.flatten(1) / 16.0).numpy())
    mapping = {}
    for c in range(int(spec.classes)):
        sel = dataset.test_y.numpy() == c
        if sel.any():
            vals, counts = np.unique(digits_after[sel], return_counts=True)
            mapping[c] = {"to": int(vals[counts.argmax()]), "share": float(counts.max() / sel.sum())}
    return {"z_probe": _probe(ztr.numpy(), y_np, zte.numpy(), yte_np),
            "z_probe_mlp": _probe(ztr.numpy(), y_np, zte.numpy(), yte_np, kind="mlp"),
            "w_probe": _probe(wtr.numpy(), y_np, wte.numpy(), yte_np),
            "swap_success": float((attr(swapped) == 1 - yte_np).mean()),
            "keep_success": float((attr(kept) == yte_np).mean()),
            "recon_attribute": float((attr(recon) == yte_np).mean()),
            "digit_mapping": mapping,
            "pictures": {"recon": recon, "to_odd": spec.to_data(model.swap(xte, torch.zeros_like(yte))).detach(),
                         "to_even": spec.to_data(model.swap(xte, torch.ones_like(yte))).detach()}}


def run(*, out: str | Path, quick: bool = False, progress: bool = True) -> dict:
    """Train ``digits-csvae`` with and without the adversarial term (``quick``: 300 steps each) and
    measure attribute information in ``z`` and ``w`` and the attribute-swap success."""
    from sklearn.linear_model import LogisticRegression

    from genlab.registry import DATASETS

    torch.set_num_threads(1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    steps = 300 if quick else None
    dataset = DATASETS["digits"]()
    bar = progress_bar(len(VARIANTS) + 1, progress, "csvae")
    models, secs = {}, {}
    for name, over in VARIANTS:
        models[name], secs[name] = _train(out / "runs" / SHORT[name].replace(" ", "-").replace("=", ""),
                                          steps=steps, objective=over)
        bar.update(1)
    attr_of = next(iter(models.values())).attribute
    ytr, yte = attr_of(dataset.train_y).numpy(), attr_of(dataset.test_y).numpy()
    pix_tr, pix_te = (dataset.train.flatten(1) / 16.0).numpy(), (dataset.test.flatten(1) / 16.0).numpy()
    attr_clf = LogisticRegression(max_iter=3000).fit(pix_tr, ytr)
    digit_clf = LogisticRegression(max_iter=3000).fit(pix_tr, dataset.train_y.numpy())
    res: dict[str, Any] = {
        "recipe": RECIPE, "steps": steps, "n_test": len(yte),
        "attribute_classes": list(next(iter(models.values())).attribute_classes),
        "chance": float(max(yte.mean(), 1 - yte.mean())),
        "pixel_probe": _probe(pix_tr, ytr, pix_te, yte),
        "pixel_probe_mlp": _probe(pix_tr, ytr, pix_te, yte, kind="mlp"),
        "attribute_classifier_test_accuracy": float((attr_clf.predict(pix_te) == yte).mean()),
        "models": {}}
    pictures = {}
    for name, model in models.items():
        m = measure(model, dataset, attr_clf, digit_clf)
        pictures[name] = m.pop("pictures")
        res["models"][name] = {**m, "train_seconds": secs[name]}
    bar.update(1)
    bar.close()
    res["figure"] = str(_figure(out / "csvae.png", dataset, pictures))
    res["text"] = _table(out / "csvae.md", res)
    (out / "csvae.json").write_text(json.dumps({k: v for k, v in res.items() if k != "text"}, indent=1))
    return res


def _table(path: Path, res: dict) -> str:
    header = ["model", "y from z (logistic probe)", "y from z (MLP probe)", "y from w", "swap success",
              "attribute kept (swap to own y)",
              "attribute of reconstructions", "train s"]
    rows = [[name, f"{m['z_probe']:.3f}", f"{m['z_probe_mlp']:.3f}", f"{m['w_probe']:.3f}", f"{m['swap_success']:.3f}",
             f"{m['keep_success']:.3f}", f"{m['recon_attribute']:.3f}", f"{m['train_seconds']:.0f}"]
            for name, m in res["models"].items()]
    rows.append(["pixels", f"{res['pixel_probe']:.3f}", f"{res['pixel_probe_mlp']:.3f}", "-", "-", "-", "-", "-"])
    note = (f"8x8 digits, attribute y = 1 for classes {res['attribute_classes']}; {res['n_test']} test digits; chance "
            f"(majority) {res['chance']:.3f}. Probes: logistic regression or an MLP (2 x 64) on standardised "
            f"posterior means, fitted on the training codes. Swap: z = E q(z|x), w = mean of p(w | 1 - y); "
            f"success = the pixel attribute classifier (test accuracy on real digits "
            f"{res['attribute_classifier_test_accuracy']:.3f}) says 1 - y.")
    lines = []
    for name, m in res["models"].items():
        maps = ", ".join(f"{c}->{v['to']} ({100 * v['share']:.0f}%)" for c, v in m["digit_mapping"].items())
        lines.append(f"- {name}, digit after swapping (most frequent, 10-class pixel classifier): {maps}")
    text = write_table(path, "CSVAE: attribute subspace and swapping (Klys et al. 2018)", header, rows, note=note)
    text += "\n" + "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def _figure(path: Path, dataset, pictures: dict[str, dict[str, torch.Tensor]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = [int(torch.nonzero(dataset.test_y == c)[0]) for c in range(10)]
    rows, labels = [dataset.test[idx]], ["data"]
    for name, pics in pictures.items():
        short = SHORT[name]
        for key in ("recon", "to_odd", "to_even"):
            rows.append(pics[key][idx])
            labels.append(f"{short}: {key.replace('_', ' ')}")
    h, w = rows[0].shape[-2:]
    pad = 1
    canvas = torch.full((len(rows) * (h + pad) - pad, len(idx) * (w + pad) - pad), float("nan"))
    for i, r in enumerate(rows):
        for j in range(len(idx)):
            canvas[i * (h + pad):i * (h + pad) + h, j * (w + pad):j * (w + pad) + w] = r[j, 0].float()
    fig, ax = plt.subplots(figsize=(7, 0.75 * len(rows) + 1))
    cmap = plt.get_cmap("gray_r").copy()
    cmap.set_bad("tab:orange")
    ax.imshow(canvas.numpy(), cmap=cmap, vmin=0, vmax=16, interpolation="nearest")
    ax.set_yticks([i * (h + pad) + h / 2 for i in range(len(rows))], labels, fontsize=8)
    ax.set_xticks([j * (w + pad) + w / 2 for j in range(len(idx))], [str(c) for c in range(10)])
    ax.set_title("CSVAE attribute swapping (even digits: y = 1); decoder means")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
