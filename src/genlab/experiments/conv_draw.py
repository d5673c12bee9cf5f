"""Conceptual compression with Convolutional DRAW (Gregor, Besse, Rezende, Danihelka & Wierstra
2016, "Towards conceptual compression", arXiv 1604.08772), on binarised digits.

The bundled recipe ``digits-conv-draw`` (8 iterations, 4x4x4 latent maps per iteration, Bernoulli
likelihood, ELBO with a KL warm-up) is trained, then on the 300 held-out images:

* the rate spent per iteration, ``KL(q_t || p_t)`` (closed form given ``z_<t``, averaged over
  ``draws`` posterior draws per image), in nats and bits per image;
* the distortion when only the first ``t`` iterations' codes come from the posterior (a draw;
  the rate of those ``t`` iterations is ``R_t = sum_{s<=t} KL_s``) and the remaining ``T - t``
  from the prior ``p(z_s | z_<s)``, set to its mean (the paper's "reconstructions as iterations
  are added"; also with a prior draw): ``D_t = -log p(x | z)`` in nats per image, the fraction
  of wrong pixels of the decoder mean, and the accuracy of a logistic-regression digit
  classifier (trained on the binarised training digits) on the decoder means: how much of the
  "concept" (the class) has been transmitted;
* the ELBO and IWAE_k of the model (``iwae`` metric) for reference.

Claim (Sec. 4 of the paper): early iterations carry the global, conceptual content and later
ones the details, i.e. the first iterations buy a large drop in distortion for a small rate.
Checked as: (a) the rate-distortion curve bends: distortion drop per nat of rate in the first
half of the iterations, ``(D_0 - D_{T/2}) / R_{T/2}``, exceeds that of the second half,
``(D_{T/2} - D_T) / (R_T - R_{T/2})``; (b) at ``t = T/4`` the fraction of the total distortion drop
exceeds the fraction of the total rate spent. Both with bootstrap standard errors over images.
Outputs ``conv_draw.md``, ``conv_draw.png`` (rate per iteration, rate-distortion curve,
reconstructions as iterations are added) and ``conv_draw.json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from genlab.data.base import Batch
from genlab.experiments import progress_bar, train_recipe, write_table

RECIPE = "digits-conv-draw"
SHOWN = 8  # test digits in the reconstruction figure


def digit_classifier(dataset):
    """A logistic-regression classifier of binarised training digits (pixels in [0, 1])."""
    from sklearn.linear_model import LogisticRegression

    x = (dataset.train.flatten(1) / 16.0).numpy()
    return LogisticRegression(max_iter=3000).fit(x, dataset.train_y.numpy())


def conceptual_curve(model, dataset, *, n: int = 300, draws: int = 8, seed: int = 0,
                     classifier=None) -> dict[str, Any]:
    """Per-image rate and distortion as posterior iterations are added (``t = 0..T``).

    Returns ``kl`` ``(T, n)`` (nats), ``rate`` ``(T+1, n)`` (cumulative), ``nll_mean`` /
    ``nll_sample`` ``(T+1, n)`` (rest of the codes at the prior mean / a prior draw), ``pixel_err``
    ``(T+1, n)``, ``acc`` ``(T+1,)`` (classifier accuracy on the decoder means, rest at the prior
    mean) and ``pictures`` ``(T+1, SHOWN, *event)`` (data space, first ``SHOWN`` images, first draw)."""
    spec, steps = dataset.spec, model.steps
    dtype = next(model.parameters()).dtype
    x = spec.to_model(dataset.test[:n].to(dtype))
    y = dataset.test_y[:n]
    xr = x.repeat(draws, 1, 1, 1)
    res: dict[str, Any] = {k: [] for k in ("rate", "nll_mean", "nll_sample", "pixel_err", "acc", "pictures")}
    model.eval()
    with torch.no_grad():
        for t in range(steps + 1):
            for rest in ("mean", "sample"):
                p, kl = model.partial_likelihood(xr, t, posterior="sample", rest=rest,
                                                 generator=torch.Generator().manual_seed(seed))
                nll = (-p.log_prob(xr)).reshape(draws, n).mean(0)
                res[f"nll_{rest}"].append(nll)
                if rest == "sample":
                    continue
                res["rate"].append(kl.sum(1).reshape(draws, n).mean(0))
                if t == steps:
                    res["kl"] = kl.reshape(draws, n, steps).mean(0).T
                mean = spec.to_data(p.mean)  # (draws * n, C, H, W), grey levels
                wrong = ((mean > (spec.levels - 1) / 2).to(dtype) * (spec.levels - 1) != dataset.test[:n].repeat(
                    draws, 1, 1, 1).to(dtype)).flatten(1).to(dtype).mean(1)
                res["pixel_err"].append(wrong.reshape(draws, n).mean(0))
                if classifier is not None:
                    pred = classifier.predict((mean.flatten(1) / (spec.levels - 1)).numpy())
                    res["acc"].append(float((torch.as_tensor(pred) == y.repeat(draws)).double().mean()))
                res["pictures"].append(mean[:SHOWN])
    for k in ("rate", "nll_mean", "nll_sample", "pixel_err", "pictures"):
        res[k] = torch.stack(res[k]).double() if k != "pictures" else torch.stack(res[k])
    res["acc"] = torch.tensor(res["acc"], dtype=torch.float64) if res["acc"] else None
    return res


def _bootstrap(stat, arrays: list[torch.Tensor], reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    """``stat(*arrays)`` on all images and its bootstrap standard error (images resampled)."""
    n = arrays[0].shape[-1]
    g = torch.Generator().manual_seed(seed)
    vals = []
    for _ in range(reps):
        idx = torch.randint(n, (n,), generator=g)
        vals.append(stat(*[a[..., idx] for a in arrays]))
    return float(stat(*arrays)), float(torch.tensor(vals).std())


def claims(curve: dict[str, Any]) -> dict[str, Any]:
    """The two checks of the module docstring, with bootstrap standard errors."""
    d, r = curve["nll_mean"], curve["rate"]
    steps = r.shape[0] - 1
    half, quarter = steps // 2, max(1, steps // 4)

    def bend(d, r):  # efficiency of the first half minus that of the second half (nats per nat)
        first = (d[0].mean() - d[half].mean()) / r[half].mean()
        second = (d[half].mean() - d[steps].mean()) / (r[steps].mean() - r[half].mean())
        return first - second

    def early(d, r):  # fraction of distortion drop minus fraction of rate at t = T/4
        return (d[0].mean() - d[quarter].mean()) / (d[0].mean() - d[steps].mean()) - r[quarter].mean() / r[steps].mean()

    out = {}
    for name, fn, what in (("bend", bend, f"distortion drop per nat, iterations 1..{half} minus {half + 1}..{steps}"),
                           ("early", early, f"fraction of distortion drop minus fraction of rate at t = {quarter}")):
        v, se = _bootstrap(fn, [d, r])
        out[name] = {"what": what, "value": v, "se": se,
                     "verdict": "holds" if v > 2 * se else ("equal within 2 s.e." if v >= -2 * se else "does NOT hold")}
    out["quarter"], out["half"] = quarter, half
    out["rate_fraction_at_quarter"] = float(r[quarter].mean() / r[steps].mean())
    out["distortion_fraction_at_quarter"] = float((d[0].mean() - d[quarter].mean()) / (d[0].mean() - d[steps].mean()))
    return out


def run(*, out: str | Path, quick: bool = False, progress: bool = True) -> dict:
    """Train ``digits-conv-draw`` (``quick``: 300 steps, 100 images, 2 draws, IWAE k = 100) and
    measure rate and distortion as iterations are added."""
    from genlab.metrics.iwae import IWAEBound
    from genlab.registry import DATASETS

    torch.set_num_threads(1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    steps, n, draws, k = (300, 100, 2, 100) if quick else (None, 300, 8, 1000)
    dataset = DATASETS["digits"](binarize="threshold")
    bar = progress_bar(3, progress, "conv-draw")
    model, secs = train_recipe(RECIPE, out / "runs" / RECIPE, seed=0, steps=steps, progress=False)
    bar.update(1)
    clf = digit_classifier(dataset)
    real_acc = float((torch.as_tensor(clf.predict((dataset.test[:n].flatten(1) / 16.0).numpy()))
                      == dataset.test_y[:n]).double().mean())
    curve = conceptual_curve(model, dataset, n=n, draws=draws, classifier=clf)
    bar.update(1)
    bounds = {}
    for kk, name in ((1, "ELBO"), (k, f"IWAE_{k}")):
        met = IWAEBound(k=kk, dataset=dataset, seed=0, max_examples=n)
        met.update(model, Batch(dataset.test[:n]))
        v = met.values()
        bounds[name] = {"nats": float(v.mean()), "se": float(v.std() / math.sqrt(len(v)))}
    bar.update(1)
    bar.close()
    T = model.steps
    per_t = []
    for t in range(T + 1):
        rate = float(curve["rate"][t].mean())
        row = {"t": t, "rate_nats": rate, "rate_bits": rate / math.log(2),
               "kl_t_nats": float(curve["kl"][t - 1].mean()) if t else 0.0,
               "nll_prior_mean": float(curve["nll_mean"][t].mean()),
               "nll_prior_mean_se": float(curve["nll_mean"][t].std() / math.sqrt(n)),
               "nll_prior_sample": float(curve["nll_sample"][t].mean()),
               "pixel_error": float(curve["pixel_err"][t].mean()),
               "class_accuracy": float(curve["acc"][t])}
        if t:
            drop = per_t[-1]["nll_prior_mean"] - row["nll_prior_mean"]
            row["nats_per_nat"] = drop / row["kl_t_nats"] if row["kl_t_nats"] > 0 else float("nan")
        per_t.append(row)
    res: dict[str, Any] = {"recipe": RECIPE, "train_seconds": secs, "steps": steps, "n": n, "draws": draws,
                           "iterations": T, "bounds": bounds, "per_iteration": per_t,
                           "real_test_accuracy": real_acc, "claims": claims(curve)}
    res["figure"] = str(_figure(out / "conv_draw.png", res, curve, dataset))
    res["text"] = _table(out / "conv_draw.md", res)
    (out / "conv_draw.json").write_text(json.dumps({k: v for k, v in res.items() if k != "text"}, indent=1))
    return res


def _table(path: Path, res: dict) -> str:
    header = ["t", "KL_t (nats)", "rate R_t (nats)", "rate (bits)", "-log p(x|z), rest prior mean (nats)",
              "rest prior draw (nats)", "wrong pixels", "class acc.", "drop per nat"]
    rows = [[r["t"], f"{r['kl_t_nats']:.2f}", f"{r['rate_nats']:.2f}", f"{r['rate_bits']:.2f}",
             f"{r['nll_prior_mean']:.2f} ± {r['nll_prior_mean_se']:.2f}", f"{r['nll_prior_sample']:.2f}",
             f"{100 * r['pixel_error']:.1f}%", f"{100 * r['class_accuracy']:.1f}%",
             f"{r['nats_per_nat']:.2f}" if "nats_per_nat" in r else "-"] for r in res["per_iteration"]]
    b = res["bounds"]
    c = res["claims"]
    note = (f"Binarised digits, {res['n']} test images, {res['draws']} posterior draws per image; codes of "
            f"iterations 1..t from the posterior, the rest from the prior p(z_s | z_<s) (its mean, or a draw). "
            f"Rate: sum of KL(q_s || p_s) over s <= t, nats per image. Class accuracy: logistic regression trained "
            f"on binarised training digits, on the decoder means (real test digits: "
            f"{100 * res['real_test_accuracy']:.1f}%). Model bounds: "
            + ", ".join(f"{k} {v['nats']:.2f} ± {v['se']:.2f} nats" for k, v in b.items())
            + f". Training: {res['train_seconds']:.0f} s.")
    lines = [f"- {v['what']}: {v['value']:+.3f} ± {v['se']:.3f} ({v['verdict']})" for v in
             (c["bend"], c["early"])]
    lines.append(f"- at t = {c['quarter']} of {res['iterations']}: {100 * c['rate_fraction_at_quarter']:.0f}% of the "
                 f"rate, {100 * c['distortion_fraction_at_quarter']:.0f}% of the distortion drop")
    text = write_table(path, "Convolutional DRAW: conceptual compression (Gregor et al. 2016)", header, rows,
                       note=note) + "\n" + "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def _figure(path: Path, res: dict, curve: dict, dataset) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per = res["per_iteration"]
    T = res["iterations"]
    fig = plt.figure(figsize=(11, 8.5))
    grid = fig.add_gridspec(2, 2, height_ratios=[1, 1.6])
    ax = fig.add_subplot(grid[0, 0])
    ax.bar(range(1, T + 1), [r["kl_t_nats"] / math.log(2) for r in per[1:]], color="tab:blue")
    ax.set_xlabel("iteration t")
    ax.set_ylabel("KL(q_t || p_t) (bits / image)")
    ax.set_title("Rate spent per iteration")
    ax = fig.add_subplot(grid[0, 1])
    rate = [r["rate_bits"] for r in per]
    for key, label, style in (("nll_prior_mean", "rest: prior mean", "o-"), ("nll_prior_sample", "rest: prior draw",
                                                                              "s--")):
        ax.plot(rate, [r[key] / math.log(2) for r in per], style, label=label)
    ax.plot([rate[0], rate[-1]], [per[0]["nll_prior_mean"] / math.log(2), per[-1]["nll_prior_mean"] / math.log(2)],
            ":", color="grey", label="chord (equal value per bit)")
    for r, x in zip(per, rate):
        ax.annotate(str(r["t"]), (x, r["nll_prior_mean"] / math.log(2)), textcoords="offset points", xytext=(3, 4),
                    fontsize=8)
    ax.set_xlabel("rate: bits of the first t iterations")
    ax.set_ylabel("distortion -log2 p(x | z) (bits)")
    ax.set_title("Rate-distortion as iterations are added")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax = fig.add_subplot(grid[1, :])
    pics = curve["pictures"]  # (T+1, SHOWN, C, H, W)
    real = dataset.test[:pics.shape[1]].to(pics.dtype)
    cols = torch.cat([real.unsqueeze(0), pics], 0)  # (T+2, SHOWN, C, H, W)
    h, w = cols.shape[-2:]
    pad = 1
    canvas = torch.full((cols.shape[1] * (h + pad) - pad, cols.shape[0] * (w + pad) - pad), float("nan"))
    for j in range(cols.shape[0]):
        for i in range(cols.shape[1]):
            canvas[i * (h + pad):i * (h + pad) + h, j * (w + pad):j * (w + pad) + w] = cols[j, i, 0]
    cmap = plt.get_cmap("gray_r").copy()
    cmap.set_bad("tab:orange")  # the gaps between images
    ax.imshow(canvas.numpy(), cmap=cmap, vmin=0, vmax=16, interpolation="nearest")
    ax.set_xticks([j * (w + pad) + w / 2 for j in range(cols.shape[0])], ["data"] + [str(t) for t in range(T + 1)])
    ax.set_yticks([])
    ax.set_xlabel("iterations from the posterior (the rest at the prior mean); decoder means")
    ax.set_title("Reconstructions as iterations are added")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
