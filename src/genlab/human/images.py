"""Images for a HYPE study: real ones from a dataset, fakes from runs, as PNGs a person can see.

Real and generated images go through the **same** path so that nothing but their content
tells them apart: data-space arrays ``(N, C, H, W)`` (C = 1 or 3) are quantised to the
dataset's grey levels when it has them (17 for the 8x8 digits: a model's continuous output
would otherwise give itself away by its palette), mapped to 8-bit, enlarged by an integer
factor with nearest-neighbour (no smoothing: the 8x8 digits become 128x128 pixel blocks)
and encoded as PNG with no metadata.

Sources:

* real data (``--real DATA``): a dataset name from ``genlab.registry.DATASETS`` (built with
  its default keys) or a run directory (its ``data:`` section); images come from the
  held-out ``test`` split, which no model trained on;
* fakes: a run directory, sampled with the run's own sampler through
  ``genlab.load_run(run).sample(n, seed=...)`` (what ``genlab sample`` draws), or an array
  file ``NAME=ARRAY.npy`` of samples in the real data's data space.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_PX = 128


def check_image_shape(shape: tuple[int, ...], what: str) -> None:
    """A HYPE image is ``(C, H, W)`` with C = 1 (grey) or 3 (RGB)."""
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise ValueError(f"{what}: HYPE shows images of shape (C, H, W) with C = 1 or 3; got event shape "
                         f"{tuple(shape)}. Use an image dataset (e.g. digits, mnist, cifar10, image_folder)")


def to_uint8(x: np.ndarray, *, levels: int | None, shift: float, scale: float) -> np.ndarray:
    """Data-space images ``(N, C, H, W)`` -> ``(N, H, W)`` (grey) or ``(N, H, W, 3)`` uint8.

    With ``levels`` (discrete data), values are rounded to the nearest level in
    ``0..levels-1`` first; otherwise ``(x - shift) / scale`` in [-1, 1] is mapped to [0, 1].
    Non-finite values become black."""
    x = np.nan_to_num(np.asarray(x, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if levels:
        v = np.clip(np.rint(x), 0, levels - 1) / (levels - 1)
    else:
        v = (np.clip((x - shift) / scale, -1.0, 1.0) + 1.0) / 2.0
    u8 = np.rint(v * 255.0).astype(np.uint8)
    u8 = np.moveaxis(u8, 1, -1)  # (N, H, W, C)
    return u8[..., 0] if u8.shape[-1] == 1 else u8


def upscale_factor(h: int, w: int, px: int) -> int:
    """The integer nearest-neighbour factor that brings the longer side to at most ``px``
    (at least 1)."""
    return max(1, int(px) // max(h, w))


def png_bytes(img: np.ndarray, px: int = DEFAULT_PX) -> bytes:
    """One ``(H, W)`` or ``(H, W, 3)`` uint8 image enlarged by an integer factor with
    nearest-neighbour (:func:`upscale_factor`) as PNG bytes, no metadata chunks."""
    k = upscale_factor(img.shape[0], img.shape[1], px)
    big = np.repeat(np.repeat(img, k, axis=0), k, axis=1)
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, format="PNG")  # uint8 (H, W) -> L, (H, W, 3) -> RGB
    return buf.getvalue()


def encode_all(x: np.ndarray, spec, px: int = DEFAULT_PX) -> list[bytes]:
    """PNGs of data-space images ``x`` ``(N, C, H, W)`` displayed by ``spec`` (a
    :class:`genlab.data.base.DataSpec` or anything with ``levels``/``shift``/``scale``)."""
    u8 = to_uint8(x, levels=spec.levels, shift=spec.shift, scale=spec.scale)
    return [png_bytes(im, px) for im in u8]


def load_real(data: str, *, seed: int = 0, split: str = "test"):
    """``(images (N, C, H, W) float64 data space, spec)`` of ``data``'s ``split`` (``test``
    or ``train``): a registered dataset name or a run directory (its ``data:`` section)."""
    from genlab.build import build_dataset

    path = Path(data)
    if (path / "config.yaml").is_file():
        from genlab.api import read_config

        cfg = read_config(path)
        section, seed = cfg.get("data"), int(cfg.get("seed", seed))
        if not isinstance(section, dict):
            raise ValueError(f"{path / 'config.yaml'} has no data: section to take real images from")
    else:
        from genlab.registry import DATASETS

        if data not in DATASETS:
            raise ValueError(f"--real {data!r} is neither a dataset name ({', '.join(sorted(DATASETS))}) nor a run "
                             "directory")
        section = {"name": data}
    dataset = build_dataset(dict(section), seed)
    check_image_shape(dataset.spec.event_shape, f"dataset {dataset.spec.name!r}")
    return getattr(dataset, split).double().numpy(), dataset.spec


def sample_run(run_dir: str | Path, n: int, *, seed: int) -> tuple[np.ndarray, object]:
    """``n`` samples of a run (data space, ``(n, C, H, W)``) with ``genlab.load_run`` and the
    run's sampler, and the run's data spec."""
    import genlab

    run = genlab.load_run(run_dir)
    check_image_shape(run.spec.event_shape, f"run {str(run_dir)!r}")
    return run.sample(n, seed=seed).double().numpy(), run.spec


def load_array(path: str | Path, event_shape: tuple[int, ...]) -> np.ndarray:
    """Samples from a ``.npy`` file, ``(N, *event_shape)`` (``(N, H, W)`` accepted for grey)."""
    path = Path(path)
    if path.suffix != ".npy" or not path.is_file():
        raise ValueError(f"--fake NAME=ARRAY: {str(path)!r} is not an existing .npy file")
    x = np.load(path, allow_pickle=False)
    if x.ndim == 3 and event_shape[0] == 1:
        x = x[:, None]
    if tuple(x.shape[1:]) != tuple(event_shape):
        raise ValueError(f"{path}: samples have shape {tuple(x.shape)}; the real data's images are "
                         f"{tuple(event_shape)}, so expected (N, {', '.join(map(str, event_shape))})")
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{path}: expected a numeric array, got dtype {x.dtype}")
    return x.astype(np.float64)


def build_study(db_path: str | Path, config, *, runs: list[str | Path] = (), fakes: dict[str, str | Path] | None = None,
                real: str, pool: int = 300, admin_token: str | None = None, progress=None) -> str:
    """Sample every model, encode every image and write a new study to ``db_path``.

    ``runs``: run directories (each named by its directory, disambiguated like
    ``genlab compare`` labels); ``fakes``: ``name -> .npy`` sample files; ``real``: see
    :func:`load_real`. The real test split is shuffled (``config.seed``) and split into a
    qualification third and a study two thirds. Each model gives ``pool`` study images and
    then the qualification images (an even share of ``config.qual_size / 2``, twice over)
    in one draw seeded with ``config.seed``. Returns the admin token.
    """
    from genlab.human.db import create_study, has_study
    from genlab.report.runs import Run, label_runs

    say = progress or (lambda _msg: None)
    fakes = dict(fakes or {})
    if has_study(db_path):
        raise ValueError(f"{db_path} already holds a study")
    if not runs and not fakes:
        raise ValueError("give at least one RUN directory or --fake NAME=ARRAY.npy to evaluate")
    if isinstance(pool, bool) or not isinstance(pool, int) or pool < config.block_size // 2:
        raise ValueError(f"--pool must be a whole number >= half a block ({config.block_size // 2}), got {pool!r}")
    for p in runs:
        if not (Path(p) / "config.yaml").is_file():
            raise ValueError(f"{p} is not a genlab run directory (no config.yaml)")
    labelled = [Run(path=Path(p), name="") for p in runs]
    label_runs(labelled)
    names = [r.name for r in labelled] + list(fakes)
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be distinct, got {names}")
    say(f"real images: {real}")
    x_real, spec = load_real(real, seed=config.seed)
    order = np.random.default_rng(config.seed).permutation(len(x_real))
    n_qual = len(x_real) // 3
    real_png = encode_all(x_real[order], spec, config.px)
    q_half, m = config.qual_size // 2, len(names)
    n_q = 2 * -(-q_half // m) if q_half else 0
    models: dict[str, tuple[str, list[bytes], list[bytes]]] = {}
    for r in labelled:
        say(f"sampling {pool + n_q} images from {r.path}")
        x, run_spec = sample_run(r.path, pool + n_q, seed=config.seed)
        if tuple(run_spec.event_shape) != tuple(spec.event_shape) or run_spec.levels != spec.levels:
            raise ValueError(f"run {r.path} makes {tuple(run_spec.event_shape)} images with {run_spec.levels} levels "
                             f"but the real data {spec.name!r} has {tuple(spec.event_shape)} with {spec.levels}")
        png = encode_all(x, spec, config.px)
        models[r.name] = (str(Path(r.path).resolve()), png[:pool], png[pool:])
    for name, path in fakes.items():
        x = load_array(path, spec.event_shape)
        if len(x) < pool + n_q:
            raise ValueError(f"--fake {name}={path}: {len(x)} samples; need {pool + n_q} ({pool} for the study pool "
                             f"and {n_q} for qualification). Sample more, or lower --pool")
        png = encode_all(x[:pool + n_q], spec, config.px)
        models[name] = (str(Path(path).resolve()), png[:pool], png[pool:])
    return create_study(db_path, config, real_study=real_png[n_qual:], real_qual=real_png[:n_qual], fakes=models,
                        admin_token=admin_token)
