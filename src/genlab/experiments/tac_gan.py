"""AC-GAN versus TAC-GAN on overlapping classes (Gong et al. 2019, arXiv 1907.02690, Section 4.1).

Data: ``overlap1d``, three labelled 1-D Gaussians that overlap, class 0 ``N(0, 1)``,
class 1 ``N(3, 2^2)``, class 2 ``N(6, 3^2)``, every class-conditional density known
exactly. The claim: AC-GAN's auxiliary classifier rewards samples it can classify,
so where classes overlap it pushes them apart and shrinks them (it minimises the
conditional entropy of the generated pairs); TAC-GAN's twin classifier cancels that
term and the class-conditionals come out right.

Both objectives are trained from the bundled recipes ``overlap1d-acgan.yaml`` and
``overlap1d-tacgan.yaml`` (same generator, critic, steps, schedule and optimiser; the
twin is TAC-GAN's extra player), for ``seeds`` seeds each. For each class ``k`` the
generator's samples ``x ~ G(z, k)`` (``n = 5000``) are compared with the truth
``p(x | k)``:

* ``W1``: the 1-D Wasserstein distance ``int |F_n(x) - F_k(x)| dx`` between the samples'
  empirical CDF and the exact CDF (quadrature on a fine grid);
* ``MMD^2``: unbiased RBF-kernel MMD (bandwidths 0.5, 1, 2 data units) between 2,000
  of the samples and 2,000 fresh exact samples of class ``k``;
* the samples' mean and standard deviation (truth: ``(0, 1), (3, 2), (6, 3)``).

The floor row scores ``n`` exact samples of each class the same way (finite-sample
noise). Outputs ``tac_gan.png`` (per-class histograms against the true densities) and
``tac_gan.md``.

:func:`digits_report` scores a class-conditional digits run: per-class agreement of the
digits classifier with the requested class, intra-class diversity against the real
data's, and per-class FID (features ``digits``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab.data.synthetic import ClassGaussians, overlap1d
from genlab.experiments import progress_bar, train_recipe, write_table
from genlab.objectives.mmd import mmd2_unbiased

METHODS = {"AC-GAN": "overlap1d-acgan", "TAC-GAN": "overlap1d-tacgan"}
N_EVAL = 5000
N_MMD = 2000
SIGMAS = (0.5, 1.0, 2.0)


def w1_to_truth(x: torch.Tensor, data: ClassGaussians, k: int, grid: int = 40001) -> float:
    """``int |F_n(t) - F_k(t)| dt`` for 1-D samples ``x`` ``(n, 1)`` against class ``k``'s CDF."""
    s = torch.sort(x.double().flatten()).values
    mu, sd = float(data.means[k, 0]), float(data.stds[k])
    lo, hi = min(float(s[0]), mu - 10 * sd), max(float(s[-1]), mu + 10 * sd)
    t = torch.linspace(lo, hi, grid, dtype=torch.float64)
    ecdf = torch.searchsorted(s, t, right=True).double() / len(s)
    return float(torch.trapezoid((ecdf - data.class_cdf(t, k)).abs(), t))


def class_scores(samples: list[torch.Tensor], data: ClassGaussians, seed: int = 0) -> list[dict[str, float]]:
    """Per class: W1 and MMD^2 to the truth, mean and std of ``samples[k]`` ``(n, 1)`` (data space)."""
    g = torch.Generator().manual_seed(10_000 + seed)
    out = []
    for k, x in enumerate(samples):
        ref = data.class_sample(N_MMD, k, g).double()
        out.append({"w1": w1_to_truth(x, data, k), "mmd2": float(mmd2_unbiased(x[:N_MMD].double(), ref, SIGMAS)),
                    "mean": float(x.mean()), "std": float(x.std())})
    return out


def class_samples(model, data: ClassGaussians, n: int = N_EVAL, seed: int = 0) -> list[torch.Tensor]:
    """``n`` samples of each class from a conditional model, data space."""
    from genlab.metrics.evaluate import draw_samples

    return [draw_samples(model, n, seed=seed + k, spec=data.spec, context=torch.full((n,), k))
            for k in range(int(data.spec.classes))]


def _mean(rows: list[list[dict[str, float]]], key: str) -> list[float]:
    return [float(np.mean([r[k][key] for r in rows])) for k in range(len(rows[0]))]


def run(*, out: str | Path, quick: bool = False, seeds: int = 3, progress: bool = True) -> dict:
    """Train AC-GAN and TAC-GAN on ``overlap1d`` (``seeds`` seeds; ``quick``: 1 seed, 300 steps),
    write ``tac_gan.png`` and ``tac_gan.md`` into ``out``; return the numbers."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = 1 if quick else seeds
    steps = 300 if quick else None
    data = overlap1d()
    res: dict[str, Any] = {"methods": {}, "seeds": seeds, "steps": steps}
    bar = progress_bar(len(METHODS) * seeds, progress, "tac-gan")
    kept: dict[str, list[torch.Tensor]] = {}
    for name, recipe in METHODS.items():
        rows, secs = [], []
        for s in range(seeds):
            model, t = train_recipe(recipe, out / "runs" / recipe / f"seed-{s}", seed=s, steps=steps, progress=False)
            xs = class_samples(model, data, seed=s)
            rows.append(class_scores(xs, data, seed=s))
            secs.append(t)
            kept.setdefault(name, xs)
            bar.update(1)
        res["methods"][name] = {"per_seed": rows, "seconds": secs,
                                **{key: _mean(rows, key) for key in ("w1", "mmd2", "mean", "std")}}
    bar.close()
    g = torch.Generator().manual_seed(99)
    truth = [data.class_sample(N_EVAL, k, g) for k in range(3)]
    floor = class_scores(truth, data, seed=0)
    res["floor"] = {key: [f[key] for f in floor] for key in ("w1", "mmd2", "mean", "std")}
    res["figure"] = str(_figure(out / "tac_gan.png", data, {"exact samples": truth, **kept}))
    res["table"], res["text"] = str(out / "tac_gan.md"), _table(out / "tac_gan.md", res, data, steps)
    (out / "tac_gan.json").write_text(json.dumps({k: v for k, v in res.items() if k != "text"}, indent=1))
    return res


def _table(path: Path, res: dict, data: ClassGaussians, steps: int | None) -> str:
    header = ["method", "class", "truth (mean, std)", "mean", "std", "W1 to truth", "MMD^2 to truth"]
    rows = []
    for name, r in [*res["methods"].items(), ("exact samples (floor)", res["floor"])]:
        for k in range(3):
            rows.append([name, k, f"({float(data.means[k, 0]):g}, {float(data.stds[k]):g})", r["mean"][k],
                         r["std"][k], r["w1"][k], r["mmd2"][k]])
        rows.append([name, "mean", "", "", "", float(np.mean(r["w1"])), float(np.mean(r["mmd2"]))])
    budget = "recipe steps" if steps is None else f"{steps} steps"
    note = (f"overlap1d (TAC-GAN 4.1): {res['seeds']} seed(s), {budget}, {N_EVAL} samples per class; W1 = "
            f"int |F_n - F_k|; MMD^2 unbiased on {N_MMD} vs {N_MMD} exact, RBF bandwidths 0.5/1/2. "
            "Numbers are means over seeds.")
    return write_table(path, "AC-GAN vs TAC-GAN: class-conditional distances to the truth", header, rows, note)


def _figure(path: Path, data: ClassGaussians, sets: dict[str, list[torch.Tensor]]) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = torch.linspace(-6, 18, 400)
    fig, axes = plt.subplots(1, len(sets), figsize=(5 * len(sets), 3.6), sharey=True)
    for ax, (name, xs) in zip(np.atleast_1d(axes), sets.items()):
        for k, x in enumerate(xs):
            ax.hist(x.flatten().numpy(), bins=80, range=(-6, 18), density=True, alpha=0.45, color=f"C{k}",
                    label=f"class {k}")
            ax.plot(t, data.class_log_prob(t[:, None], k).exp(), color=f"C{k}", lw=1.5, ls="--")
        ax.set(title=name, xlabel="x")
        ax.legend(fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("density (dashed: true p(x | class))")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- class-conditional digits ------------------------------------------------------------

def digits_report(run_dir: str | Path, *, n: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Score a conditional digits run: for each class ``k``, ``n`` samples ``G(z, k)`` (as
    ``genlab sample RUN --class k``) and the digits classifier's agreement with ``k``; the
    mean pairwise distance within the class (pixels in [0, 1]) against the real test+train
    digits of that class; FID of the class's samples against the real class (features
    ``digits``)."""
    from genlab.api import load_run
    from genlab.data.digits import digits
    from genlab.metrics.features import DIGITS_LEVELS_MAX, digits_net
    from genlab.metrics.fid import fid_from_features

    run = load_run(run_dir)
    data = digits()
    net, _ = digits_net()
    real_x = torch.cat([data.train, data.test]) / DIGITS_LEVELS_MAX
    real_y = torch.cat([data.train_y, data.test_y])
    out: dict[str, Any] = {"agreement": [], "diversity": [], "diversity_real": [], "fid": []}
    with torch.no_grad():
        for k in range(10):
            x = run.sample(n, seed=seed + k, context=torch.full((n,), k)) / DIGITS_LEVELS_MAX
            out["agreement"].append(float((net(x).argmax(1) == k).double().mean()))
            real = real_x[real_y == k]
            out["diversity"].append(_mean_pairwise(x))
            out["diversity_real"].append(_mean_pairwise(real))
            out["fid"].append(fid_from_features(net.embed(real).double(), net.embed(x).double()))
    out["mean_agreement"] = float(np.mean(out["agreement"]))
    out["min_agreement"] = float(np.min(out["agreement"]))
    return out


def _mean_pairwise(x: torch.Tensor) -> float:
    d = torch.cdist(x.flatten(1).double(), x.flatten(1).double())
    return float(d.sum() / (len(x) * (len(x) - 1)))
