"""Semi-supervised digits with 100 labels (Kingma, Rezende, Mohamed & Welling 2014,
"Semi-supervised learning with deep generative models", arXiv 1406.5298, Table 1), the small
stand-in for their MNIST experiment: 1,497 8x8 training digits of which 100 keep their label
(10 per class, ``data.labelled: 100``), test error on the 300 test digits.

For each seed (the run seed, which picks the 100 labelled images and initialises the nets):

* **supervised MLP**: the classifier net of M2's ``q(y|x)`` (same architecture), trained by
  cross-entropy on the 100 labelled images alone, as many steps as M2 (Adam, same rate);
* **logistic on pixels**: scikit-learn's logistic regression on the 100 labelled images'
  pixels (the classifier M1 uses, on the raw data);
* **M1**: recipe ``digits-m1``, a VAE trained without labels, and the same logistic regression
  on its posterior means (metric ``latent_probe``);
* **M2**: recipe ``digits-m2`` (metric ``classify_error``);
* **M1+M2**: recipe ``digits-m1m2``, M2 on the M1 run's posterior means (dataset ``vae_codes``);
* **SSVAE**: recipe ``digits-ssvae``, the partially-specified model of Siddharth et al. 2017
  (arXiv 1706.00400) with the code-first encoder ``q(z|x) q(y|x,z)`` (metric ``classify_error``).

Also reported: the held-out ``IWAE_100`` bound of M1 and M2 (same decoder family and nets),
nats per image. Outputs ``semi_supervised.md``, ``semi_supervised.png`` (test errors with
one dot per seed; M2's class-conditional samples; SSVAE's style transfer: test digits' codes
decoded under every label) and ``semi_supervised.json``.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from genlab.experiments import progress_bar, write_table

#: The paper's MNIST test errors with 100 labels (Table 1), for reference.
PAPER = {"supervised MLP": 25.81, "logistic on pixels": 16.81, "M1": 11.82, "M2": 11.97, "M1+M2": 3.33}
PAPER_NOTE = {"logistic on pixels": "TSVM on pixels", "M1": "M1+TSVM", "supervised MLP": "NN"}
METHODS = ("supervised MLP", "logistic on pixels", "M1", "M2", "M1+M2", "SSVAE")
LABELS = 100


def train_run(recipe: str, run_dir: Path, *, seed: int, steps: int | None, data: dict | None = None) -> dict:
    """Train a bundled recipe (seed, steps and ``data`` keys overridden) into a fresh ``run_dir``;
    returns ``fit``'s result (``eval`` holds the recipe's metrics)."""
    from genlab.config import RECIPES, from_dict, load_yaml
    from genlab.train import fit

    d = load_yaml(RECIPES / f"{recipe}.yaml")
    d["seed"], d["train"]["progress"] = seed, False
    d["train"]["sample_every"], d["train"]["ckpt_every"] = 0, 0
    if steps is not None:
        d["train"]["steps"] = steps
    d["data"].update(data or {})
    if run_dir.exists():
        shutil.rmtree(run_dir)
    return fit(from_dict(d), run_dir)


def supervised_baseline(dataset, classifier: dict[str, Any], *, steps: int, lr: float = 1e-3,
                        batch_size: int = 100, seed: int = 0) -> float:
    """Test error of the classifier net ``classifier`` (an encoder spec, as M2's ``q(y|x)``) trained
    by cross-entropy on the labelled training examples only (Adam, ``steps`` minibatches drawn
    with replacement)."""
    from genlab.nets.build import build_encoder

    spec = dataset.spec
    keep = dataset.train_known if dataset.train_known is not None else torch.ones(len(dataset.train), dtype=torch.bool)
    x, y = spec.to_model(dataset.train[keep]), dataset.train_y[keep]
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_encoder(classifier, in_shape=spec.event_shape, out_features=spec.classes)
    opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.999))
    for _ in range(steps):
        idx = torch.randint(len(x), (batch_size,), generator=g)
        loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = net(spec.to_model(dataset.test)).argmax(1)
    return float((pred != dataset.test_y).float().mean())


def pixel_baseline(dataset, seed: int = 0) -> float:
    """Test error of the ``latent_probe`` classifier (logistic regression) on the labelled pixels."""
    from genlab.metrics.classification import probe_error

    keep = dataset.train_known if dataset.train_known is not None else torch.ones(len(dataset.train), dtype=torch.bool)
    def flat(t: torch.Tensor):
        return t.reshape(len(t), -1).double().numpy()
    return probe_error(flat(dataset.train[keep]), dataset.train_y[keep].numpy(), flat(dataset.test),
                       dataset.test_y.numpy(), seed=seed)


def run(*, out: str | Path, quick: bool = False, progress: bool = True, seeds: Sequence[int] | None = None) -> dict:
    """Every method for each seed (``quick``: one seed, 300 steps each; default: seeds 0, 1, 2 and
    the recipes' steps)."""
    from genlab.build import build_dataset
    from genlab.config import RECIPES, load_yaml

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = tuple(seeds if seeds is not None else ((0,) if quick else (0, 1, 2)))
    steps = 300 if quick else None
    m2_recipe = load_yaml(RECIPES / "digits-m2.yaml")
    m2_steps = steps or int(m2_recipe["train"]["steps"])
    errors: dict[str, list[float]] = {m: [] for m in METHODS}
    seconds: dict[str, list[float]] = {m: [] for m in METHODS}
    bounds: dict[str, list[float]] = {"M1": [], "M2": [], "SSVAE": []}
    bar = progress_bar(len(seeds) * len(METHODS), progress, "semi-supervised")
    for seed in seeds:
        data = build_dataset({"name": "digits", "labelled": LABELS}, seed)
        t0 = time.time()
        errors["supervised MLP"].append(supervised_baseline(data, m2_recipe["model"]["classifier"], steps=m2_steps,
                                                            lr=float(m2_recipe["train"]["lr"]),
                                                            batch_size=int(m2_recipe["train"]["batch_size"]),
                                                            seed=seed))
        seconds["supervised MLP"].append(time.time() - t0)
        t0 = time.time()
        errors["logistic on pixels"].append(pixel_baseline(data, seed))
        seconds["logistic on pixels"].append(time.time() - t0)
        bar.update(2)
        runs = out / "runs" / f"seed{seed}"
        m1 = train_run("digits-m1", runs / "digits-m1", seed=seed, steps=steps)
        errors["M1"].append(m1["eval"]["probe_error"])
        bounds["M1"].append(m1["eval"]["iwae_log_px"])
        seconds["M1"].append(m1["seconds"])
        bar.update(1)
        m2 = train_run("digits-m2", runs / "digits-m2", seed=seed, steps=steps)
        errors["M2"].append(m2["eval"]["classify_error"])
        bounds["M2"].append(m2["eval"]["iwae_log_px"])
        seconds["M2"].append(m2["seconds"])
        bar.update(1)
        m12 = train_run("digits-m1m2", runs / "digits-m1m2", seed=seed, steps=steps,
                        data={"run": str(runs / "digits-m1")})
        errors["M1+M2"].append(m12["eval"]["classify_error"])
        seconds["M1+M2"].append(m1["seconds"] + m12["seconds"])
        bar.update(1)
        ss = train_run("digits-ssvae", runs / "digits-ssvae", seed=seed, steps=steps)
        errors["SSVAE"].append(ss["eval"]["classify_error"])
        bounds["SSVAE"].append(ss["eval"]["iwae_log_px"])
        seconds["SSVAE"].append(ss["seconds"])
        bar.update(1)
    bar.close()
    res: dict[str, Any] = {"seeds": list(seeds), "labels": LABELS, "steps": steps, "errors": errors,
                           "seconds": seconds, "iwae_100": bounds, "paper_mnist_100": PAPER}
    first = out / "runs" / f"seed{seeds[0]}"
    res["figure"] = str(_figure(out / "semi_supervised.png", res, first / "digits-m2", first / "digits-ssvae"))
    res["text"] = _table(out / "semi_supervised.md", res)
    (out / "semi_supervised.json").write_text(json.dumps({k: v for k, v in res.items() if k != "text"}, indent=1))
    return res


def _mean_sd(v: Sequence[float]) -> tuple[float, float]:
    m = sum(v) / len(v)
    sd = math.sqrt(sum((a - m) ** 2 for a in v) / (len(v) - 1)) if len(v) > 1 else float("nan")
    return m, sd


def _table(path: Path, res: dict) -> str:
    rows = []
    for m in METHODS:
        mean, sd = _mean_sd(res["errors"][m])
        err = f"{100 * mean:.1f}" + ("" if math.isnan(sd) else f" ± {100 * sd:.1f}")
        paper = "-" if m not in PAPER else f"{PAPER[m]:.2f}" + (f" ({PAPER_NOTE[m]})" if m in PAPER_NOTE else "")
        rows.append([m, err, ", ".join(f"{100 * e:.1f}" for e in res["errors"][m]),
                     f"{sum(res['seconds'][m]) / len(res['seconds'][m]):.0f}", paper])
    n = len(res["seeds"])
    note = (f"8x8 digits, {res['labels']} labelled training images (10 per class) of 1,497, test error (%) on the "
            f"300 test images; mean ± standard deviation over {n} seed(s) of the labelled subset "
            f"({', '.join(map(str, res['seeds']))}). Steps: {res['steps'] or 'as in the recipes'}. The last column is "
            "the paper's MNIST error with 100 labels (Kingma et al. 2014, Table 1), for orientation only: a different "
            "data set, 50,000 training images. M1+M2 seconds include M1's training.")
    text = write_table(path, "Semi-supervised digits, 100 labels (Kingma et al. 2014)",
                       ["method", "test error %", "per seed", "train s", "paper, MNIST-100 %"], rows, note=note)
    b = res["iwae_100"]
    lines = ["", "Held-out IWAE_100 bound on log p(x) (nats per image, mean over seeds; same decoder and nets): "
             + ", ".join(f"{k} {sum(v) / len(v):.2f}" for k, v in b.items()) + "."]
    text += "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def _digit_grid(x: torch.Tensor, rows: int, cols: int, spec) -> torch.Tensor:
    """``(rows * cols, 1, h, w)`` data-space images -> one ``(rows*(h+1), cols*(w+1))`` picture with
    a blank (NaN) pixel between images."""
    h, w = spec.event_shape[1:]
    tiles = torch.full((rows, cols, h + 1, w + 1), float("nan"))
    tiles[:, :, :h, :w] = x.reshape(rows, cols, h, w)
    return tiles.permute(0, 2, 1, 3).reshape(rows * (h + 1), cols * (w + 1))


def _figure(path: Path, res: dict, m2_run: Path, ssvae_run: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genlab import load

    fig, (ax, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.4), gridspec_kw={"width_ratios": [1.5, 1, 1.1]})
    for i, m in enumerate(METHODS):
        v = [100 * e for e in res["errors"][m]]
        mean, sd = _mean_sd(v)
        ax.bar(i, mean, color="C0" if m.startswith("M") else "0.6", alpha=0.7)
        if not math.isnan(sd):
            ax.errorbar(i, mean, yerr=sd, color="k", capsize=4)
        ax.scatter([i] * len(v), v, color="k", s=12, zorder=3)
    ax.set_xticks(range(len(METHODS)), METHODS, rotation=20)
    ax.set_ylabel("test error (%)")
    ax.set_title(f"digits, {res['labels']} labels ({len(res['seeds'])} seed(s))")
    ax.grid(axis="y", alpha=0.3)
    model = load(m2_run)
    spec = model.spec
    y = torch.arange(model.num_classes).repeat_interleave(10)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        z = torch.randn(len(y), *model.latent_shape, generator=g)
        x = spec.to_data(model.likelihood_given(z, y).mean).clamp(0, spec.levels - 1)
    cmap = matplotlib.colormaps["gray_r"].with_extremes(bad="white")
    ax2.imshow(_digit_grid(x, model.num_classes, 10, spec).numpy(), cmap=cmap, vmin=0, vmax=spec.levels - 1)
    ax2.set_title("M2: x ~ p(x | y, z) (decoder mean), row = y")
    ax2.axis("off")
    from genlab.build import build_dataset

    ss = load(ssvae_run)
    test = build_dataset({"name": "digits"}, 0).test[:8]
    with torch.no_grad():
        xm = spec.to_model(test.float())
        moved = torch.cat([torch.cat([test[i:i + 1].float(), spec.to_data(ss.transfer(
            xm[i:i + 1].expand(10, *xm.shape[1:]), torch.arange(10))).clamp(0, spec.levels - 1)]) for i in range(8)])
    ax3.imshow(_digit_grid(moved, 8, 11, spec).numpy(), cmap=cmap, vmin=0, vmax=spec.levels - 1)
    ax3.set_title("SSVAE: test digit (left), its code z\nwith y = 0..9 (style transfer)")
    ax3.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
