"""Codes of a trained latent-variable model as a dataset, ``vae_codes``: the data of the
stacked M1+M2 model (Kingma, Rezende, Mohamed & Welling 2014, arXiv 1406.5298, Section 3.2),
where M2 is trained on the codes ``z1`` of a VAE (M1) instead of the pixels.

``data: {name: vae_codes, run: RUNDIR}`` loads the run with :func:`genlab.load_run` (safe
YAML, safetensors with checksums: nothing in the directory is unpickled or executed), rebuilds
the run's own dataset from its ``config.yaml`` (its ``labelled`` key dropped; ``data:`` replaces
that section) and encodes both splits with the model's amortised posterior:

* ``codes: mean``: the posterior means ``E_q[z | x]``;
* ``codes: sample``: one draw ``z ~ q(z | x)`` per example (seeded with ``seed``). The paper
  draws fresh samples during training; a fixed draw is the closest static dataset.

The examples keep their order and labels, so ``data.labelled: N`` with the same run seed
labels the same examples as on the source data. Kind ``points``, event shape
``(latent_dim,)``, continuous (use ``likelihood: gaussian``); model space is the codes
standardised with the training codes' mean and standard deviation (one scalar each).
``info`` holds ``run``, ``source`` (the source dataset's name), ``codes`` and ``step``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch

from genlab.data.base import Dataset, DataSpec, labelled_dataset
from genlab.kwargs import PositiveInt


def vae_codes(*, run: str, codes: Literal["mean", "sample"] = "mean", seed: int = 0,
              data: dict[str, Any] | None = None, step: int | None = None,
              batch_size: PositiveInt = 500) -> Dataset:
    """Posterior codes of a trained VAE run's data (M1+M2, arXiv 1406.5298)."""
    from genlab.api import RunNotFound, load_run
    from genlab.build import build_dataset
    from genlab.models.base import AmortizedPosterior

    if codes not in ("mean", "sample"):
        raise ValueError(f"vae_codes: codes must be 'mean' or 'sample', got {codes!r}")
    path = Path(run).expanduser()
    try:
        loaded = load_run(path, step=step)
    except RunNotFound as e:
        raise FileNotFoundError(f"vae_codes: {e}. Train the VAE (M1) first, e.g. genlab train digits-m1 --out "
                                f"{run}") from None
    model = loaded.model
    if not isinstance(model, AmortizedPosterior):
        raise ValueError(f"vae_codes: the model of {run} ({type(model).__name__}) has no amortised posterior; "
                         "train a vae (e.g. recipe digits-m1)")
    if model.conditional:
        raise ValueError(f"vae_codes: the model of {run} is conditional; its codes would need the labels. Use an "
                         "unconditional vae")
    section = dict(data if data is not None else loaded.config.get("data") or {})
    section.pop("labelled", None)
    if section.get("name") == "vae_codes":
        raise ValueError(f"vae_codes: the run {run} was itself trained on vae_codes; codes of codes are not "
                         "supported. Pass data: {name: ...} for the source data")
    if "name" not in section:
        raise ValueError(f"vae_codes: {run}'s config has no data section; pass data: {{name: ...}}")
    source = build_dataset(section)
    if tuple(source.spec.event_shape) != tuple(loaded.spec.event_shape):
        raise ValueError(f"vae_codes: the data {section['name']!r} have event shape {source.spec.event_shape} but "
                         f"the run was trained on {loaded.spec.event_shape}")
    if source.spec.classes is None:
        raise ValueError(f"vae_codes: the source data {section['name']!r} have no labels; M1+M2 needs labels")
    gen = torch.Generator().manual_seed(seed)

    def encode(x: torch.Tensor) -> torch.Tensor:
        out = []
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                q = model.posterior(loaded.spec.to_model(x[i:i + batch_size].float()))
                if codes == "mean":
                    z = q.mean
                else:
                    from genlab.sampling.importance import sample_distribution
                    z = sample_distribution(q, generator=gen)
                out.append(z.reshape(len(z), -1).float())
        return torch.cat(out)

    train, test = encode(source.train), encode(source.test)
    shift, scale = float(train.mean()), float(train.std())
    spec = DataSpec(name="vae_codes", kind="points", event_shape=(train.shape[1],), shift=shift,
                    scale=scale if scale > 0 else 1.0)
    info = {"run": str(run), "source": source.spec.name, "codes": codes, "step": loaded.step}
    return labelled_dataset(spec, train, test, source.train_y, source.test_y, source.spec.classes, info)
