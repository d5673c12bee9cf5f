"""Real NVP trained by maximum likelihood versus by a Wasserstein critic, on digits.

Danihelka, Lakshminarayanan, Uria, Wierstra and Dayan 2017 (arXiv 1705.05263)
trained the same Real NVP by maximum likelihood and as the generator of a WGAN:
the critic-trained model draws nicer samples but has far worse log-likelihood
(worse than a uniform model) and its codes of held-out data are far from the
Gaussian base. This experiment reproduces that at small scale with the recipes
``digits-realnvp-mle.yaml`` and ``digits-realnvp-wgan.yaml`` (one config line
apart: the objective and its schedule) and reports:

* held-out bits/dim (metric ``bpd``, K = 16 fixed-seed uniform dequantisations);
* a bits/dim table on the test split: the uniform baseline ``log2 17 = 4.09``, an
  independent-pixel categorical fitted on train with add-one smoothing, and the
  other density models of :mod:`genlab.models.flows` trained by MLE;
* sample grids (``samples.png``);
* latent Gaussianity of held-out codes ``z = f^{-1}(dequantised x)``: per-dim mean and
  std, mean excess kurtosis, the pooled Kolmogorov-Smirnov statistic against N(0, 1)
  and the energy distance to N(0, I) samples of the same size (with the value for a
  true N(0, I) sample as reference);
* the independent critic's Wasserstein estimate (metric ``critic``) when registered.

``run(out=..., quick=True)`` trains for a few steps only (a smoke test).
CLI: ``python -m genlab.experiments.realnvp_mle_vs_critic --out runs/mle-vs-critic``.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from genlab import registry
from genlab.config import from_dict, load_yaml
from genlab.data.dequantize import uniform_dequantize
from genlab.data.digits import digits
from genlab.metrics.bpd import BitsPerDim
from genlab.models.base import Flow
from genlab.models.independent import IndependentPixels

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
#: Other density models for the bits/dim table: (model section, steps).
TABLE_MODELS = {"glow": ({"name": "glow", "hidden": 32, "steps": 4, "levels": 2}, 1500),
                "maf": ({"name": "maf", "layers": 4, "hidden": [256, 256]}, 1500),
                "made": ({"name": "made", "hidden": [256, 256]}, 1500)}


def _fit(cfg_dict: dict[str, Any], run_dir: Path, steps: int | None, progress: bool) -> Any:
    from genlab import load
    from genlab.train import fit

    d = json.loads(json.dumps(cfg_dict))
    if steps is not None:
        d["train"]["steps"] = steps
    d["train"]["progress"] = progress
    d["eval"] = {"metrics": []}
    if run_dir.exists():
        shutil.rmtree(run_dir)
    result = fit(from_dict(d), run_dir)
    return load(run_dir), result["seconds"]


def bpd(model, data, samples: int = 16) -> dict[str, float]:
    m = BitsPerDim(dataset=data, samples=samples, seed=0)
    m.update(model, data.test)
    return m.compute()


def energy_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """``2 E|A-B| - E|A-A'| - E|B-B'|`` (V-statistic), rows are points."""
    return float(2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean())


@torch.no_grad()
def latent_stats(model: Flow, data, seed: int = 0) -> dict[str, float]:
    """Gaussianity of held-out codes ``z = f^{-1}(x + u)``, ``(N, D)`` flattened."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    x = uniform_dequantize(data.spec.to_model(data.test), data.spec, g)
    z = model.inverse_and_log_det(x)[0].reshape(len(x), -1).double()
    ref = torch.randn(z.shape, generator=g, dtype=torch.float64)
    finite = bool(torch.isfinite(z).all())
    zc = torch.nan_to_num(z, nan=0.0, posinf=1e6, neginf=-1e6)
    flat = zc.flatten().numpy()
    return {"z_mean_abs": float(zc.mean(0).abs().mean()), "z_std_mean": float(zc.std(0).mean()),
            "z_std_min": float(zc.std(0).min()), "z_std_max": float(zc.std(0).max()),
            "z_excess_kurtosis": float(np.mean(stats.kurtosis(zc.numpy(), axis=0))),
            "z_ks": float(stats.kstest(flat, "norm").statistic),
            "z_energy": energy_distance(zc, ref),
            "z_energy_ref": energy_distance(torch.randn(z.shape, generator=g, dtype=torch.float64), ref),
            "z_finite": float(finite)}


def critic_w(model, data, progress: bool, quick: bool) -> dict[str, float] | None:
    if "critic" not in registry.METRICS:
        return None
    from genlab.metrics.evaluate import evaluate_model
    args = {"progress": progress, **({"steps": 50} if quick else {})}
    return evaluate_model(model, data, ["critic"], n=len(data.test), seed=0, args={"critic": args})


def sample_grid(path: Path, panels: dict[str, torch.Tensor]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
    for ax, (title, x) in zip(axes, panels.items()):
        tiles = torch.nn.functional.pad(x[:64].reshape(64, 8, 8).clamp(0, 16), (1, 1, 1, 1))
        grid = tiles.reshape(8, 8, 10, 10).permute(0, 2, 1, 3).reshape(80, 80).numpy()
        ax.imshow(grid, cmap="gray_r", vmin=0, vmax=16)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _samples(model, data, seed: int = 0) -> torch.Tensor:
    model.eval()
    x = model.sample(64, generator=torch.Generator().manual_seed(seed))
    return data.spec.to_data(x).clamp(0, data.spec.levels - 1).round()


def run(*, out: str | Path, quick: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train both recipes (and the table's models), evaluate, write ``results.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = digits()
    results: dict[str, Any] = {"uniform_bpd": math.log2(data.spec.levels)}
    ind = IndependentPixels(data_spec=data.spec).fit(data.train)
    results["independent_pixels"] = bpd(ind, data)
    models = {}
    for name in ("mle", "wgan"):
        cfg = load_yaml(RECIPES / f"digits-realnvp-{name}.yaml")
        model, secs = _fit(cfg, out / f"realnvp-{name}", 20 if quick else None, progress)
        models[name] = model
        r = {"seconds": secs, **bpd(model, data), "bpd_k1": bpd(model, data, samples=1)["bpd"],
             **latent_stats(model, data)}
        w = critic_w(model, data, progress, quick)
        r["critic"] = w if w is not None else "TODO: metric 'critic' not in the registry"
        results[f"realnvp-{name}"] = r
    base = load_yaml(RECIPES / "digits-realnvp-mle.yaml")
    for name, (section, steps) in TABLE_MODELS.items():
        model, secs = _fit({**base, "model": section, "name": f"digits-{name}-mle"}, out / f"{name}-mle",
                           20 if quick else steps, progress)
        results[f"{name}-mle"] = {"seconds": secs, **bpd(model, data)}
    sample_grid(out / "samples.png", {"held-out data": data.test[:64],
                                      "Real NVP, MLE": _samples(models["mle"], data),
                                      "Real NVP, WGAN-GP": _samples(models["wgan"], data)})
    results["table"] = {"uniform": results["uniform_bpd"], "independent_pixels": results["independent_pixels"]["bpd"],
                        **{k: v["bpd"] for k, v in results.items() if isinstance(v, dict) and "seconds" in v}}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return results


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/realnvp-mle-vs-critic")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    print(json.dumps(run(out=a.out, quick=a.quick)["table"], indent=1))


if __name__ == "__main__":
    main()
