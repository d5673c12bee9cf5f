"""Generalisation probes (Zhao, Ren, Yuan, Song, Goodman & Ermon 2018, "Bias and
generalization in deep generative models: an empirical study", arXiv 1811.03259).

Train a GAN (``conv_generator`` + ``nsgan`` with PacGAN packing 2 and an R1 penalty:
without them the generator collapsed to one image on these sets), a VAE (``vae``, categorical decoder,
``elbo``) and an autoregressive model (``pixelcnn``, ``mle``) on probe sets in which one
feature takes only configured values (:mod:`genlab.data.probes`):

* ``dots-one``: 3 dots; ``dots-far``: 2 or 6 dots; ``dots-close``: 3 or 5 dots;
* ``bar-one``: red proportion 0.5; ``bar-far``: 0.2 or 0.8; ``bar-close``: 0.4 or 0.6.

Each model draws ``n_samples`` images; the feature is read back with
:func:`~genlab.data.probes.count_dots` / :func:`~genlab.data.probes.colour_proportion`
and summarised (mean, std, fraction at a training value, number of histogram modes,
fraction strictly between two training values). The paper's findings checked: a single
training value gives a spread around it (log-normal-like for numerosity: skewed to the
right, closer to normal in ``log k``); two far values give two modes; two close values
give a prototype between them. Outputs ``generalisation.md``, ``generalisation.png``
(histograms against the training values) and ``generalisation.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab.experiments import progress_bar, simple_fit, write_table

#: setting -> (dataset, values)
SETTINGS: dict[str, tuple[str, list]] = {
    "dots-one": ("dots", [3]),
    "dots-far": ("dots", [2, 6]),
    "dots-close": ("dots", [3, 5]),
    "bar-one": ("bar", [0.5]),
    "bar-far": ("bar", [0.2, 0.8]),
    "bar-close": ("bar", [0.4, 0.6]),
}

#: model name -> (model section, objective section, lr, default steps, most samples drawn)
MODELS: dict[str, tuple[dict, dict, float, int]] = {
    "GAN": ({"name": "conv_generator", "latent_dim": 32, "width": 32},
            {"name": "nsgan", "critic": {"name": "conv", "width": 32}, "pack": 2,
             "penalty": [{"name": "r1", "weight": 1.0}]}, 2e-4, 2000, 1000),
    "VAE": ({"name": "vae", "latent_dim": 16, "likelihood": "categorical", "encoder": {"name": "conv", "width": 32},
             "decoder": {"name": "conv", "width": 32}}, {"name": "elbo", "warmup": 300}, 1e-3, 1500, 1000),
    "PixelCNN": ({"name": "pixelcnn", "hidden": 24, "layers": 4}, {"name": "mle"}, 1e-3, 400, 300),
}

BAR_LENGTH = 10
MODE_MIN_MASS = 0.05


def feature(dataset_name: str, x: torch.Tensor) -> np.ndarray:
    """The probe feature of data-space images ``x`` ``(N, 1, H, W)`` -> ``(N,)``."""
    from genlab.data.probes import colour_proportion, count_dots

    return count_dots(x).astype(np.float64) if dataset_name == "dots" else colour_proportion(x)


def bins(dataset_name: str) -> np.ndarray:
    """Histogram bin edges: one bin per count for dots, one per bar column for the bar."""
    if dataset_name == "dots":
        return np.arange(-0.5, 17.5, 1.0)
    w = 1.0 / BAR_LENGTH
    return np.linspace(-w / 2, 1 + w / 2, BAR_LENGTH + 2)


def find_modes(hist: np.ndarray, min_mass: float = MODE_MIN_MASS) -> list[int]:
    """Bin indices of the local maxima of a normalised histogram holding at least ``min_mass``
    (a plateau counts once, at its first bin)."""
    h = np.concatenate([[0.0], hist, [0.0]])
    modes, i = [], 1
    while i < len(h) - 1:
        j = i
        while j + 1 < len(h) - 1 and h[j + 1] == h[i]:
            j += 1
        if h[i] >= min_mass and h[i] > h[i - 1] and h[i] > h[j + 1]:
            modes.append(i - 1)
        i = j + 1
    return modes


def count_modes(hist: np.ndarray, min_mass: float = MODE_MIN_MASS) -> int:
    """Number of :func:`find_modes` maxima."""
    return len(find_modes(hist, min_mass))


def summarise(dataset_name: str, values: list, f: np.ndarray) -> dict[str, Any]:
    """Statistics of the feature ``f`` ``(N,)`` of samples against the training ``values``."""
    ok = f[~np.isnan(f)]
    tol = 0.5 if dataset_name == "dots" else 0.5 / BAR_LENGTH
    at = np.zeros(len(ok), dtype=bool)
    for v in values:
        at |= np.abs(ok - v) < tol
    edges = bins(dataset_name)
    centres = (edges[:-1] + edges[1:]) / 2
    hist = np.histogram(ok, bins=edges)[0] / max(len(f), 1)
    out: dict[str, Any] = {"n": int(len(f)), "valid": float(len(ok) / max(len(f), 1)),
                           "mean": float(ok.mean()) if len(ok) else float("nan"),
                           "std": float(ok.std()) if len(ok) else float("nan"),
                           "at_train": float(at.sum() / max(len(f), 1)), "modes": count_modes(hist),
                           "mode_at": [float(centres[i]) for i in find_modes(hist)],
                           "hist": hist.tolist()}
    if len(values) == 2:
        lo, hi = sorted(values)
        out["between"] = float(((ok > lo + tol) & (ok < hi - tol)).sum() / max(len(f), 1))
    if dataset_name == "dots" and len(values) == 1:
        pos = ok[ok > 0]
        out["skew"] = float(_skew(pos))
        out["log_skew"] = float(_skew(np.log(pos)))
    return out


def _skew(a: np.ndarray) -> float:
    if len(a) < 3 or a.std() == 0:
        return float("nan")
    return float(((a - a.mean()) ** 3).mean() / a.std() ** 3)


def train_and_sample(model_name: str, setting: str, *, steps: int | None = None, n_train: int = 5000,
                     n_samples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Train ``MODELS[model_name]`` on ``SETTINGS[setting]`` and draw ``n_samples`` images (at most
    the model's cap: PixelCNN samples pixel by pixel, so it draws 300); return the samples'
    feature and statistics."""
    from genlab.build import build_model, build_objective
    from genlab.registry import DATASETS

    ds_name, values = SETTINGS[setting]
    key = "counts" if ds_name == "dots" else "proportions"
    data = DATASETS[ds_name](**{key: values}, n_train=n_train, n_test=0, seed=seed)
    msec, osec, lr, default_steps, most = MODELS[model_name]
    steps = default_steps if steps is None else steps
    n_samples = min(n_samples, most)
    torch.set_num_threads(1)
    model = build_model(dict(msec), data.spec, seed)
    objective = build_objective(dict(osec), model, data.spec, seed)
    train = data.spec.to_model(data.train)

    def draw(n: int, g: torch.Generator) -> torch.Tensor:
        return train[torch.randint(len(train), (n,), generator=g)]

    t0 = time.time()
    model.train()
    simple_fit(model, objective, draw, steps=steps, lr=lr, betas=(0.5, 0.999) if model_name == "GAN" else (0.9, 0.999),
               batch_size=64, seed=seed)
    secs = time.time() - t0
    model.eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        x = torch.cat([model.sample(m, generator=g) for m in _chunks(n_samples, 250)])
    x = data.spec.to_data(x)
    f = feature(ds_name, x)
    return {"model": model_name, "setting": setting, "values": values, "steps": steps, "seconds": secs,
            "feature": f, "stats": summarise(ds_name, values, f), "examples": x[:8]}


def _chunks(n: int, size: int) -> list[int]:
    return [min(size, n - i) for i in range(0, n, size)]


def verdicts(res: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Per model, whether each of the paper's findings held (judged from the statistics)."""
    out: dict[str, dict[str, str]] = {}
    for m, per in res["runs"].items():
        v: dict[str, str] = {}
        if "dots-one" in per:
            s = per["dots-one"]
            if s["at_train"] > 0.98:
                v["dots-one"] = f"no spread: {s['at_train']:.0%} of samples have exactly 3 dots (memorised)"
            elif s["at_train"] < 0.2:
                v["dots-one"] = f"failed to learn: only {s['at_train']:.0%} of samples have 3 dots (mean {s['mean']:.2f})"
            else:
                shape = ("right-skewed, more symmetric in log k (log-normal-like)"
                         if s.get("skew", 0) > 0 and abs(s.get("log_skew", 0)) < abs(s.get("skew", 0))
                         else f"not log-normal-like (skew {s.get('skew', float('nan')):.2f}, "
                              f"log-skew {s.get('log_skew', float('nan')):.2f})")
                v["dots-one"] = f"spread around 3 (std {s['std']:.2f}, {s['at_train']:.0%} at 3); {shape}"
        for kind in ("dots", "bar"):
            if f"{kind}-far" in per:
                s, (lo, hi) = per[f"{kind}-far"], sorted(res["settings"][f"{kind}-far"])
                near = 1.01 if kind == "dots" else 1.01 / BAR_LENGTH  # a mode within one bin of the value
                both = any(abs(m_ - lo) <= near for m_ in s["mode_at"]) and any(abs(m_ - hi) <= near
                                                                                for m_ in s["mode_at"])
                v[f"{kind}-far"] = (f"modes at {s['mode_at']}: " + ("two modes at the training values (holds)" if both
                                    else "not a mode near each training value (does not hold)")
                                    + f"; {s['at_train']:.0%} at the training values")
            if f"{kind}-close" in per:
                s = per[f"{kind}-close"]
                held = s["between"] > 0.25 and s["between"] >= s["at_train"] / 2
                v[f"{kind}-close"] = (f"prototype between: {s['between']:.0%} strictly between vs "
                                      f"{s['at_train']:.0%} at the values ({'holds' if held else 'does not hold'})")
        if "bar-one" in per:
            s = per["bar-one"]
            v["bar-one"] = (f"spread around 0.5: std {s['std']:.3f}, {s['at_train']:.0%} at 0.5, "
                            f"{s['valid']:.0%} of samples have a bar")
        for k, st in per.items():
            if k in v and "failed" not in v[k] and st["at_train"] + st.get("between", 0.0) < 0.3:
                v[k] += f" [model failed to learn the set: {st['at_train'] + st.get('between', 0.0):.0%} of samples at or between the values]"
        out[m] = v
    return out


def run(*, out: str | Path, quick: bool = False, progress: bool = True, models: list[str] | None = None,
        settings: list[str] | None = None, steps: int | None = None, n_samples: int | None = None,
        n_train: int = 5000) -> dict:
    """Every model on every setting (``quick``: 200 steps, 300 samples). ``steps`` overrides
    each model's default steps; ``models``/``settings`` restrict the grid."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    models = list(MODELS) if models is None else list(models)
    settings = list(SETTINGS) if settings is None else list(settings)
    for m in models:
        if m not in MODELS:
            raise ValueError(f"unknown model {m!r}; choose from {', '.join(MODELS)}")
    for s in settings:
        if s not in SETTINGS:
            raise ValueError(f"unknown setting {s!r}; choose from {', '.join(SETTINGS)}")
    if quick:
        steps = 200 if steps is None else steps
        n_samples = 300 if n_samples is None else n_samples
    n_samples = 1000 if n_samples is None else n_samples
    res: dict[str, Any] = {"runs": {m: {} for m in models}, "seconds": {m: {} for m in models},
                           "steps": {}, "n_samples": {m: min(n_samples, MODELS[m][4]) for m in models}, "settings": {s: SETTINGS[s][1] for s in settings}}
    feats: dict[tuple[str, str], np.ndarray] = {}
    examples: dict[tuple[str, str], torch.Tensor] = {}
    bar = progress_bar(len(models) * len(settings), progress, "generalisation")
    for m in models:
        for s in settings:
            r = train_and_sample(m, s, steps=steps, n_train=n_train, n_samples=n_samples)
            res["runs"][m][s] = r["stats"]
            res["seconds"][m][s] = r["seconds"]
            res["steps"][m] = r["steps"]
            feats[(m, s)] = r["feature"]
            examples[(m, s)] = r["examples"]
            bar.update(1)
    bar.close()
    res["verdicts"] = verdicts(res)
    (out / "generalisation.json").write_text(json.dumps(res, indent=1))
    res["text"] = _table(out / "generalisation.md", res)
    _figure(out / "generalisation.png", res, feats, models, settings)
    _examples(out / "generalisation_samples.png", examples, models, settings)
    res["table"] = str(out / "generalisation.md")
    res["figure"] = str(out / "generalisation.png")
    return res


def _table(path: Path, res: dict) -> str:
    header = ["model", "setting", "training values", "mean", "std", "at train", "between", "modes", "train s"]
    rows = []
    for m, per in res["runs"].items():
        for s, st in per.items():
            rows.append([m, s, ", ".join(str(v) for v in res["settings"][s]), f"{st['mean']:.3f}", f"{st['std']:.3f}",
                         f"{st['at_train']:.2f}", f"{st['between']:.2f}" if "between" in st else "-", st["modes"],
                         f"{res['seconds'][m][s]:.0f}"])
    note = (f"Zhao et al. 2018 (arXiv 1811.03259) probes at 12x12. Samples per model: "
            + ", ".join(f"{m} {k}" for m, k in res["n_samples"].items()) + "; steps "
            + ", ".join(f"{m} {k}" for m, k in res["steps"].items()) + ". Dots: count of 4-connected components "
            f"(>= 2 pixels) of pixels brighter than half the top level; bar: red / (red + blue) pixels after rounding "
            f"to the nearest of 3 levels. 'at train': fraction within half a bin of a training value; 'between': "
            f"strictly between two training values; modes: histogram maxima holding >= {MODE_MIN_MASS:.0%}.")
    text = write_table(path, "Generalisation probes", header, rows, note=note)
    lines = [f"- {m}, {s}: {v}" for m, per in res["verdicts"].items() for s, v in per.items()]
    text += "\nVerdicts:\n\n" + "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def _figure(path: Path, res: dict, feats: dict, models: list[str], settings: list[str]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(models), len(settings), figsize=(2.6 * len(settings), 2.1 * len(models)),
                             squeeze=False)
    for i, m in enumerate(models):
        for j, s in enumerate(settings):
            ax = axes[i][j]
            ds, values = SETTINGS[s]
            f = feats[(m, s)]
            f = f[~np.isnan(f)]
            edges = bins(ds)
            w = np.full(len(f), 1.0 / max(len(feats[(m, s)]), 1))
            ax.hist(f, bins=edges, weights=w, color="C0")
            for v in values:
                ax.axvline(v, color="C3", ls="--", lw=1)
            ax.set_xlim(-0.5, 10.5) if ds == "dots" else ax.set_xlim(-0.05, 1.05)
            if i == 0:
                ax.set_title(f"{s}: {values}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{m}\nfraction", fontsize=9)
            if i == len(models) - 1:
                ax.set_xlabel("dot count" if ds == "dots" else "red proportion", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.suptitle("Feature of samples (blue) vs training values (red dashed), Zhao et al. 2018 probes", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _examples(path: Path, examples: dict, models: list[str], settings: list[str]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(models), len(settings), figsize=(2.2 * len(settings), 1.2 * len(models)),
                             squeeze=False)
    for i, m in enumerate(models):
        for j, s in enumerate(settings):
            x = examples[(m, s)][:4, 0].clamp(0, 2 if SETTINGS[s][0] == "bar" else 1)
            axes[i][j].imshow(torch.cat(list(x), 1).numpy(), cmap="gray", vmin=0, vmax=float(x.max().clamp(min=1)))
            axes[i][j].axis("off")
            if i == 0:
                axes[i][j].set_title(s, fontsize=8)
        axes[i][0].text(-2, 6, m, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

