"""Loaders for data on disk: MNIST IDX, CIFAR-10 pickles, image folders, NumPy arrays, WAV.

Each loader is a builder with keyword-only arguments (the YAML keys, e.g.
``data: {name: mnist, path: /data/mnist}``) that reads everything into memory and
returns a :class:`~genlab.data.base.Dataset` in data space. Nothing is downloaded.
A missing path raises :class:`FileNotFoundError`; a malformed file raises
:class:`DataFileError` (a ``ValueError``); both messages name the file, say what is
wrong and what was expected. See ``docs/data.md``.
"""

from __future__ import annotations

import gzip
import pickle
import zlib
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from genlab.data.base import DataSpec, Dataset, image_spec, labelled_dataset


class DataFileError(ValueError):
    """A data file that exists but cannot be used as it is."""


def _existing(path: str | Path, what: str) -> Path:
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise FileNotFoundError(f"{what} {str(p)!r} does not exist")
    return p


def _split(x: np.ndarray, y: np.ndarray | None, test_fraction: float, seed: int, where: str):
    """Random split with ``numpy.random.default_rng(seed)``: the last ``round(N * test_fraction)``
    of a permutation go to test."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"{where}: test_fraction must be in [0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    tr, te = order[: len(x) - n_test], order[len(x) - n_test:]
    return x[tr], x[te], (None if y is None else y[tr]), (None if y is None else y[te])


def _labelled(spec: DataSpec, x_tr: np.ndarray, x_te: np.ndarray, y_tr: np.ndarray | None,
              y_te: np.ndarray | None, classes: int, **info: Any) -> Dataset:
    """A dataset whose labels (when there are any, of at least two classes) are ``train_y``/``test_y``."""
    labelled = y_tr is not None and classes >= 2
    return labelled_dataset(spec, torch.from_numpy(x_tr).float(), torch.from_numpy(x_te).float(),
                            y_tr if labelled else None, y_te if labelled else None, classes, info)


# --- IDX (MNIST) ---------------------------------------------------------------------

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Parse an IDX file (raw or gzipped): 4-byte magic ``0 0 type ndim``, then ``ndim``
    big-endian uint32 sizes, then the data. Checks the magic and the data length."""
    p = _existing(path, "IDX file")
    raw = p.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataFileError(f"{p}: gzip data is corrupt ({e}); expected a gzipped IDX file") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise DataFileError(f"{p}: bad IDX magic number {raw[:4].hex() or '(empty file)'}; expected "
                            f"00 00 <type in 08,09,0b,0c,0d,0e> <ndim >= 1> (e.g. 00000803 for images)")
    dtype, ndim = np.dtype(_IDX_TYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFileError(f"{p}: truncated IDX header: {len(raw)} bytes, expected {header}")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expected:
        raise DataFileError(f"{p}: IDX header says shape {dims} ({expected} bytes in all) but the file "
                            f"has {len(raw)} bytes; the file is truncated or not an IDX file")
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _idx_file(root: Path, stem: str) -> Path:
    """``train-images-idx3-ubyte`` or the ``train-images.idx3-ubyte`` spelling, raw or ``.gz``."""
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"MNIST file {str(root / stem)!r} (or {stem}.gz) does not exist; "
                            f"expected the four IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                            f"t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte in {str(root)!r}")


def _mnist_split(root: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    fi, fl = _idx_file(root, f"{prefix}-images-idx3-ubyte"), _idx_file(root, f"{prefix}-labels-idx1-ubyte")
    x, y = read_idx(fi), read_idx(fl)
    if x.dtype != np.uint8 or x.ndim != 3:
        raise DataFileError(f"{fi}: expected uint8 images of shape (N, H, W) (magic 00000803), "
                            f"got {x.dtype} with shape {x.shape}")
    if y.dtype != np.uint8 or y.ndim != 1 or len(y) != len(x):
        raise DataFileError(f"{fl}: expected {len(x)} uint8 labels (magic 00000801), "
                            f"got {y.dtype} with shape {y.shape}")
    return x[:, None], y


def mnist(*, path: str) -> Dataset:
    """MNIST (or Fashion-MNIST, same format) from a folder of IDX files: ``(1, 28, 28)``, 256 levels.

    ``path`` holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each raw or ``.gz``.
    Train/test are the files' own splits; labels are ``train_y``/``test_y``.
    """
    root = _existing(path, "MNIST directory")
    x_tr, y_tr = _mnist_split(root, "train")
    x_te, y_te = _mnist_split(root, "t10k")
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DataFileError(f"{root}: train images are {x_tr.shape[2:]} but test images {x_te.shape[2:]}")
    return _labelled(image_spec("mnist", x_tr.shape[1:], 256), x_tr, x_te, y_tr, y_te, 10)


# --- CIFAR-10 pickles ------------------------------------------------------------------

_PICKLE_OK = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
              ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
              ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
              ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode")}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and NumPy arrays only, so a batch file cannot run code
    (``_codecs.encode`` is how protocol-2 pickles written by Python 3 spell bytes)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_OK:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _cifar_batch(p: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(p, "rb") as f:
            d = _ArrayUnpickler(f, encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
        raise DataFileError(f"{p}: cannot unpickle CIFAR-10 batch ({type(e).__name__}: {e}); expected the "
                            f"python-pickle batch of cifar-10-python.tar.gz") from None
    d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()} if isinstance(d, dict) else {}
    if "data" not in d or "labels" not in d:
        raise DataFileError(f"{p}: expected a dict with keys b'data' and b'labels', got keys {sorted(d)}")
    x, y = np.asarray(d["data"]), np.asarray(d["labels"])
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        raise DataFileError(f"{p}: b'data' should be uint8 of shape (N, 3072), got {x.dtype} {x.shape}")
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise DataFileError(f"{p}: b'labels' should be {len(x)} integers, got {y.dtype} {y.shape}")
    return x.reshape(-1, 3, 32, 32), y


def cifar10(*, path: str, train_batches: list[int] | None = None) -> Dataset:
    """CIFAR-10 from the python-pickle batches: ``(3, 32, 32)``, 256 levels, labels ``train_y``/``test_y``.

    ``path`` is the ``cifar-10-batches-py`` folder (or its parent). ``train_batches``
    picks which of ``data_batch_1..5`` to read (default all five; each one listed
    must exist). ``test_batch`` is always required. Only the classes NumPy needs
    are unpickled, so a batch file cannot run code.
    """
    root = _existing(path, "CIFAR-10 directory")
    if not (root / "test_batch").exists() and (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    ids = [1, 2, 3, 4, 5] if train_batches is None else list(train_batches)
    if not ids or any(i not in (1, 2, 3, 4, 5) for i in ids):
        raise ValueError(f"cifar10: train_batches must be a non-empty subset of 1..5, got {train_batches}")
    names = [f"data_batch_{i}" for i in ids] + ["test_batch"]
    for n in names:
        if not (root / n).is_file():
            raise FileNotFoundError(f"CIFAR-10 batch {str(root / n)!r} does not exist; expected "
                                    f"{', '.join(names)} in {str(root)!r} (set train_batches to read fewer)")
    parts = [_cifar_batch(root / n) for n in names]
    x_tr = np.concatenate([p[0] for p in parts[:-1]])
    y_tr = np.concatenate([p[1] for p in parts[:-1]])
    return _labelled(image_spec("cifar10", (3, 32, 32), 256), x_tr, parts[-1][0], y_tr, parts[-1][1], 10,
                     batches=ids)


# --- image folder ----------------------------------------------------------------------

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _read_image(p: Path, grayscale: bool, size: tuple[int, int] | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            im = im.convert("L" if grayscale else "RGB")
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataFileError(f"{p}: unreadable image ({e}); expected a PNG/JPEG/... file Pillow can open") from None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def image_folder(*, path: str, size: list[int] | None = None, grayscale: bool = False,
                 test_fraction: float = 0.1, seed: int = 0) -> Dataset:
    """A folder of images (PNG, JPEG, ...): ``(C, H, W)`` with C = 1 (``grayscale``) or 3, 256 levels.

    Either all images sit directly in ``path`` (no labels) or each lies under a
    class subfolder ``path/<class>/...`` (labels = index of the sorted class
    names). ``size: [H, W]`` resizes every image (bilinear); without it all images
    must share one size. Alpha is dropped. Split as in :func:`array`.
    """
    root = _existing(path, "image folder")
    if not root.is_dir():
        raise DataFileError(f"{root}: expected a directory of images")
    files = sorted(f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataFileError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)}) found")
    depth = {len(f.relative_to(root).parts) > 1 for f in files}
    if len(depth) > 1:
        raise DataFileError(f"{root}: some images are in class subfolders and some are not; put all in "
                            f"subfolders (one per class) or all directly in the folder")
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise ValueError(f"image_folder: size must be [H, W] with positive entries, got {size}")
    shape = None if size is None else (int(size[0]), int(size[1]))
    images = [_read_image(f, grayscale, shape) for f in files]
    for f, im in zip(files, images):
        if im.shape != images[0].shape:
            raise DataFileError(f"{f}: image is {im.shape[1:]} but {files[0]} is {images[0].shape[1:]}; "
                                f"set size: [H, W] to resize all images to one size")
    y = None
    classes: list[str] = []
    if depth == {True}:
        classes = sorted({f.relative_to(root).parts[0] for f in files})
        y = np.array([classes.index(f.relative_to(root).parts[0]) for f in files])
    x_tr, x_te, y_tr, y_te = _split(np.stack(images), y, test_fraction, seed, "image_folder")
    return _labelled(image_spec("image_folder", images[0].shape, 256), x_tr, x_te, y_tr, y_te, len(classes),
                     class_names=classes)


# --- NumPy arrays ----------------------------------------------------------------------

def _load_array(p: Path, key: str | None) -> np.ndarray:
    _existing(p, "array file")
    try:
        obj = np.load(p, allow_pickle=False)
    except Exception as e:  # noqa: BLE001
        raise DataFileError(f"{p}: cannot read as .npy/.npz ({type(e).__name__}: {e}); expected a file "
                            f"written by numpy.save or numpy.savez (object arrays are not allowed)") from None
    if isinstance(obj, np.ndarray):
        return obj
    with obj:
        keys = list(obj.keys())
        if key is None:
            key = keys[0] if len(keys) == 1 else next((k for k in ("x", "arr_0") if k in keys), None)
        if key not in keys:
            raise DataFileError(f"{p}: no array {key!r} in the .npz; it holds {keys}. Set key: <name>")
        try:
            return obj[key]
        except Exception as e:  # noqa: BLE001
            raise DataFileError(f"{p}: cannot read array {key!r} ({type(e).__name__}: {e})") from None


def _as_events(a: np.ndarray, p: Path, channels_last: bool) -> np.ndarray:
    if a.ndim == 4 and channels_last:
        a = a.transpose(0, 3, 1, 2)
    elif a.ndim == 4 and a.shape[1] not in (1, 3, 4) and a.shape[3] in (1, 3, 4):
        raise DataFileError(f"{p}: shape {a.shape} looks like (N, H, W, C); set channels_last: true "
                            f"(or store (N, C, H, W))")
    if a.ndim not in (2, 4) or len(a) == 0:
        raise DataFileError(f"{p}: array of shape {a.shape}; expected (N, D) rows or (N, C, H, W) images "
                            f"with N >= 1")
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise DataFileError(f"{p}: dtype {a.dtype} is not numeric")
    if np.issubdtype(a.dtype, np.complexfloating):
        raise DataFileError(f"{p}: dtype {a.dtype} is complex; genlab models real values. Store the real and "
                            "imaginary parts as separate columns or channels")
    if np.issubdtype(a.dtype, np.inexact) and not np.isfinite(a).all():
        raise DataFileError(f"{p}: the array holds NaN or infinite values")
    return a


def _array_spec(x: np.ndarray) -> DataSpec:
    if x.ndim == 4 and x.dtype == np.uint8:
        return image_spec("array", x.shape[1:], 256)
    lo, hi = float(x.min()), float(x.max())
    if x.ndim == 4:  # continuous images: train range -> [-1, 1]
        half = (hi - lo) / 2 or 1.0
        return DataSpec(name="array", kind="image", event_shape=x.shape[1:], shift=lo + half, scale=half)
    std = float(x.std()) or 1.0
    return DataSpec(name="array", kind="points", event_shape=x.shape[1:], shift=float(x.mean()), scale=std)


def array(*, path: str, key: str | None = None, labels: str | None = None, channels_last: bool = False,
          test_path: str | None = None, test_fraction: float = 0.1, seed: int = 0) -> Dataset:
    """A ``.npy``/``.npz`` array: ``(N, D)`` -> points ``(D,)``; ``(N, C, H, W)`` -> images.

    ``key`` names the array in a ``.npz`` (default: its only array, else ``x``, else
    ``arr_0``). ``channels_last`` reads ``(N, H, W, C)``. uint8 images have 256
    levels (model space [-1, 1]); other images are continuous, model space maps
    the train min/max to [-1, 1]; rows are continuous, model space subtracts the
    train mean and divides by the train std (one scalar each, over all entries).
    Test set: ``test_path`` (same format and ``key``) if given, else a random
    ``test_fraction`` drawn with ``numpy.random.default_rng(seed)``.
    ``labels`` names an array of ``(N,)`` integer class labels ``0..K-1`` in the same
    ``.npz`` (and in ``test_path``); the dataset is then labelled with ``K`` classes.
    """
    p = Path(path).expanduser()
    x = _as_events(_load_array(p, key), p, channels_last)
    y = None if labels is None else _labels_array(p, labels, len(x))
    if test_path is not None:
        tp = Path(test_path).expanduser()
        x_te = _as_events(_load_array(tp, key), tp, channels_last)
        if x_te.shape[1:] != x.shape[1:] or (x_te.dtype == np.uint8) != (x.dtype == np.uint8):
            raise DataFileError(f"{tp}: test array is {x_te.dtype} {x_te.shape[1:]} per example but "
                                f"{p} is {x.dtype} {x.shape[1:]}; they must match")
        x_tr, y_tr, y_te = x, y, None if labels is None else _labels_array(tp, labels, len(x_te))
    else:
        x_tr, x_te, y_tr, y_te = _split(x, y, test_fraction, seed, "array")
    classes = 0 if y is None else int(max(y.max(), -1 if y_te is None or not len(y_te) else y_te.max())) + 1
    return _labelled(_array_spec(x_tr), x_tr.astype(np.float32), x_te.astype(np.float32), y_tr, y_te, classes,
                     source=str(p), dtype=str(x.dtype))


def _labels_array(p: Path, key: str, n: int) -> np.ndarray:
    if p.suffix != ".npz":
        raise DataFileError(f"{p}: labels: {key!r} needs a .npz file holding the images/rows and the labels")
    y = _load_array(p, key)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or (n and y.min() < 0):
        raise DataFileError(f"{p}: labels {key!r} must be ({n},) non-negative integers, got {y.dtype} {y.shape}")
    return y.astype(np.int64)


# --- WAV audio -------------------------------------------------------------------------

_PCM_SCALE = {np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31}


def read_wav(path: str | Path) -> tuple[int, np.ndarray]:
    """``(sample_rate, samples (T, channels) float64 in [-1, 1])``; 8-bit PCM is centred at 128,
    16/24/32-bit PCM divided by its full scale, float WAVs kept as they are."""
    from scipy.io import wavfile

    p = _existing(path, "WAV file")
    try:
        rate, a = wavfile.read(p)
    except Exception as e:  # noqa: BLE001 - scipy raises several types (even UnboundLocalError)
        raise DataFileError(f"{p}: cannot read as WAV ({e}); expected a PCM or float RIFF/WAVE file") from None
    if a.dtype == np.uint8:
        x = (a.astype(np.float64) - 128.0) / 128.0
    elif a.dtype in _PCM_SCALE:
        x = a.astype(np.float64) / _PCM_SCALE[a.dtype]
    elif np.issubdtype(a.dtype, np.floating):
        x = a.astype(np.float64)
    else:
        raise DataFileError(f"{p}: unsupported WAV sample type {a.dtype}")
    return int(rate), x.reshape(len(x), -1)


def _windows(x: np.ndarray, window: int, hop: int) -> np.ndarray:
    n = 0 if len(x) < window else 1 + (len(x) - window) // hop
    return np.stack([x[i * hop: i * hop + window] for i in range(n)]) if n else np.zeros((0, window))


def wav(*, path: str, window: int = 1024, hop: int | None = None, channel: Literal["mean", "left", "right"] = "mean",
        test_fraction: float = 0.1) -> Dataset:
    """A WAV file cut into windows of ``window`` samples every ``hop`` (default ``window``):
    sequences ``(T,) = (window,)`` of floats in [-1, 1].

    Stereo is averaged (``channel: mean``) or one channel taken (``left``/``right``).
    The last ``test_fraction`` of the recording (in time) is the test set, so
    overlapping windows never straddle train and test. ``info`` holds the sample rate.
    """
    hop = window if hop is None else hop
    if window < 1 or hop < 1:
        raise ValueError(f"wav: window and hop must be >= 1, got {window}, {hop}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"wav: test_fraction must be in [0, 1), got {test_fraction}")
    rate, a = read_wav(path)
    if channel == "mean" or a.shape[1] == 1:
        x = a.mean(1)
    else:
        x = a[:, 0 if channel == "left" else 1]
    cut = len(x) - int(round(len(x) * test_fraction))
    tr, te = _windows(x[:cut], window, hop), _windows(x[cut:], window, hop)
    if len(tr) == 0:
        raise DataFileError(f"{path}: {len(x)} samples leave {cut} for training, fewer than one window of "
                            f"{window}; use a smaller window or a longer file")
    spec = DataSpec(name="wav", kind="sequence", event_shape=(window,))
    return Dataset(spec=spec, train=torch.from_numpy(tr).float(), test=torch.from_numpy(te).float(),
                   info={"sample_rate": rate, "channels": a.shape[1], "hop": hop, "source": str(path)})
