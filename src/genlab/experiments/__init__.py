"""Experiments that reproduce claims from the adversarial-learning literature at
small scale. Each module exposes ``run(*, out, quick=False, seeds=..., progress=True)
-> dict`` that writes a PNG figure and a markdown table into ``out`` and returns
the numbers (wired into ``genlab bench <name>``):

* ``cramer_bias``: biased Wasserstein vs unbiased Cramer sample gradients (arXiv 1705.10743);
* ``many_paths``: non-saturating GAN with disjoint supports; learning-rate sweep with
  and without gradient penalties (arXiv 1710.08446);
* ``modes_table``: mode coverage of every objective on ring8 and grid25;
* ``flows_table``: every flow (and zuko's) on digits, ring8 and a tabular set, equal time budgets;
* ``tac_gan``: AC-GAN vs TAC-GAN class-conditionals on overlapping 1-D Gaussians (arXiv 1907.02690);
* ``vae_bounds``: ELBO <= IWAE_k <= AIS, and IWAE training helps (arXiv 1509.00519);
* ``distribution_matching``: VAEs miss the marginals in latent and visible space; alpha-GAN and AVB
  against a GAN with the same decoder (arXiv 1802.06847);
* ``hierarchical_prior``: learned hierarchical prior vs N(0, I) under GECO, graph interpolation (arXiv 1905.04982);
* ``semi_supervised``: M1, M2 and M1+M2 on digits with 100 labels (arXiv 1406.5298);
* ``generalisation``: numerosity and colour-proportion probes of GAN, VAE and PixelCNN (arXiv 1811.03259);
* ``helmholtz``: plain wake-sleep vs DDC wake-sleep on one Helmholtz machine, binarised digits (arXiv 1805.11051);
* ``conv_draw``: Convolutional DRAW, rate and distortion as iterations are added (arXiv 1604.08772).
* ``csvae``: CSVAE latent subspaces, y from z vs w and attribute swapping on digits (arXiv 1812.06190).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

EXPERIMENTS = ("cramer_bias", "flows_table", "many_paths", "modes_table", "tac_gan", "vae_bounds", "hierarchical_prior",
               "semi_supervised", "generalisation", "distribution_matching",
               "helmholtz", "conv_draw", "csvae")


def progress_bar(total: int, enabled: bool, desc: str):
    """A tqdm bar (disabled when ``enabled`` is False)."""
    from tqdm.auto import tqdm
    return tqdm(total=total, disable=not enabled, desc=desc, leave=False)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.3e}"
    return str(v)


def write_table(path: str | Path, title: str, header: Sequence[str], rows: Sequence[Sequence[Any]],
                note: str = "") -> str:
    """Write a markdown table (with a ``# title`` and an optional note); return its text."""
    lines = [f"# {title}", ""]
    if note:
        lines += [note, ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in r) + " |" for r in rows]
    text = "\n".join(lines) + "\n"
    Path(path).write_text(text)
    return text


def simple_fit(model, objective, draw_data, *, steps: int, lr: float | dict[str, float] = 1e-3,
               betas: tuple[float, float] = (0.5, 0.999), schedule: dict[str, int] | None = None,
               batch_size: int = 128, decay: bool = False, seed: int = 0, callback=None) -> None:
    """Train with the engine's :class:`~genlab.train.trainer.Trainer`, configured for small
    experiments and tests: Adam per player, critic players first, data from a function.

    ``draw_data(n, generator) -> (n, *event_shape)`` (or a Batch) gives data in model space,
    drawn from the same generator as the objective's noise (seeded with ``seed``); ``lr`` is
    one rate or ``{player: rate}``; ``decay`` decays rates linearly to 0; ``callback(step)``
    runs after every round."""
    import torch

    from genlab.data.batches import FunctionBatches
    from genlab.train.trainer import EveryStep, Trainer

    g = torch.Generator().manual_seed(seed)
    params = objective.player_parameters(model)
    rates = lr if isinstance(lr, dict) else {p: lr for p in params}
    opts = {p: torch.optim.Adam(ps, lr=rates[p], betas=betas) for p, ps in params.items()}
    scheds = {p: torch.optim.lr_scheduler.LambdaLR(o, lambda k: 1 - k / steps) for p, o in opts.items()} \
        if decay else {}
    trainer = Trainer(model, objective, FunctionBatches(draw_data, batch_size=batch_size, generator=g), opts,
                      [] if callback is None else [EveryStep(callback)], schedulers=scheds, schedule=schedule,
                      noise_generator=g)
    trainer.fit(steps)


def train_recipe(recipe: str, run_dir: Path, *, seed: int, steps: int | None, progress: bool):
    """Train a bundled recipe with ``seed`` (and ``steps``) into a fresh ``run_dir``; returns the model."""
    import shutil

    from genlab import load
    from genlab.config import RECIPES, from_dict, load_yaml
    from genlab.train import fit

    d = load_yaml(RECIPES / f"{recipe}.yaml")
    d["seed"], d["train"]["progress"] = seed, progress
    if steps is not None:
        d["train"]["steps"] = steps
    d["train"]["sample_every"], d["train"]["ckpt_every"], d["eval"] = 0, 0, {"metrics": []}
    if run_dir.exists():
        shutil.rmtree(run_dir)
    result = fit(from_dict(d), run_dir)
    return load(run_dir), result["seconds"]
