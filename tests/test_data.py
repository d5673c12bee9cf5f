"""Data axis: synthetic sets, digits, file loaders (on tiny files written here), registry."""

from __future__ import annotations

import gzip
import inspect
import math
import pickle

import numpy as np
import pytest
import torch
from scipy.io import wavfile
from scipy.stats import multivariate_normal

from genlab import registry
from genlab.build import build_dataset
from genlab.data import files, synthetic
from genlab.data.base import Dataset
from genlab.data.digits import digits
from genlab.data.files import DataFileError

SYNTHETIC = ["ring8", "grid25", "moons", "spiral", "checkerboard", "pinwheel", "swissroll"]


def _required(fn) -> list[str]:
    return [n for n, p in inspect.signature(fn).parameters.items() if p.default is inspect.Parameter.empty]


# --- synthetic -------------------------------------------------------------------------

@pytest.mark.parametrize("name", SYNTHETIC)
def test_synthetic_contract(name):
    fn = registry.DATASETS[name]
    ds = fn(n_train=600, n_test=150, seed=3)
    assert ds.spec.name == name and ds.spec.kind == "points" and ds.spec.event_shape == (2,)
    assert ds.spec.levels is None
    assert ds.train.shape == (600, 2) and ds.test.shape == (150, 2) and ds.train.dtype == torch.float32
    assert torch.isfinite(ds.train).all() and torch.isfinite(ds.test).all()
    again = fn(n_train=600, n_test=150, seed=3)
    assert torch.equal(ds.train, again.train) and torch.equal(ds.test, again.test)
    other = fn(n_train=600, n_test=150, seed=4)
    assert not torch.equal(ds.train, other.train)
    assert not torch.equal(ds.train[:150], ds.test)
    state = torch.random.get_rng_state()
    fn(n_train=10, n_test=10, seed=0)
    assert torch.equal(state, torch.random.get_rng_state()), "builders must not touch the global RNG"


def test_moons_lie_on_two_unit_half_circles():
    ds = synthetic.moons(n_train=2000, n_test=10, seed=1, noise=0.0)
    x, y = ds.train.double(), ds.train_y
    centres = torch.tensor([[-0.5, -0.25], [0.5, 0.25]], dtype=torch.float64)
    r = (x - centres[y]).norm(dim=1)
    assert torch.allclose(r, torch.ones_like(r), atol=1e-5)
    up = y == 0
    assert (x[up, 1] >= -0.25 - 1e-6).all() and (x[~up, 1] <= 0.25 + 1e-6).all()
    assert abs(up.double().mean().item() - 0.5) < 0.05
    noisy = synthetic.moons(n_train=4000, n_test=10, seed=1, noise=0.1).train.double()
    assert noisy.mean(0).abs().max() < 0.05  # raw mean is (1/2, 1/4); the shift centres it


def test_spiral_geometry():
    ds = synthetic.spiral(n_train=3000, n_test=10, seed=2, arms=3, turns=1.25, radius=2.0, noise=0.0)
    x, k = ds.train.double(), ds.train_y.double()
    s = x.norm(dim=1) / 2.0
    assert (s <= 1 + 1e-6).all()
    angle = torch.atan2(x[:, 1], x[:, 0])
    expect = 2 * math.pi * (1.25 * s + k / 3)
    gap = torch.remainder(angle - expect + math.pi, 2 * math.pi) - math.pi
    assert gap.abs().max() < 1e-4
    # uniform over the disc in s^2: P(s < 1/2) = 1/4
    assert abs((s < 0.5).double().mean().item() - 0.25) < 0.03


def test_checkerboard_uniform_on_filled_squares():
    ds = synthetic.checkerboard(n_train=16000, n_test=10, seed=0, cells=4, half_width=4.0)
    x = ds.train.double()
    assert (x.abs() <= 4).all()
    ij = torch.floor((x + 4) / 2).long().clamp(0, 3)
    assert ((ij.sum(1) % 2) == 0).all()
    counts = torch.bincount(ij[:, 0] * 4 + ij[:, 1], minlength=16).double()
    filled = counts[counts > 0]
    assert len(filled) == 8
    expected = 16000 / 8
    chi2 = ((filled - expected) ** 2 / expected).sum().item()
    assert chi2 < 24.3  # chi-square, 7 dof, p = 0.001
    frac = (x + 4) / 2 - ij
    assert torch.allclose(frac.mean(0), torch.full((2,), 0.5, dtype=torch.float64), atol=0.02)


def test_pinwheel_arms_follow_the_rotation_law():
    ds = synthetic.pinwheel(n_train=2000, n_test=10, seed=5, arms=4, radial_std=0.1,
                            tangential_std=0.0, rate=0.3, scale=1.5)
    x, k = ds.train.double() / 1.5, ds.train_y.double()
    r = x.norm(dim=1)
    expect = 2 * math.pi * k / 4 + 0.3 * r.exp()
    gap = torch.remainder(torch.atan2(x[:, 1], x[:, 0]) - expect + math.pi, 2 * math.pi) - math.pi
    assert gap.abs().max() < 1e-4
    assert abs(r.mean().item() - 1.0) < 0.01 and abs(r.std().item() - 0.1) < 0.01


def test_swissroll_geometry():
    ds = synthetic.swissroll(n_train=2000, n_test=10, seed=6, radius=4.0, noise=0.0)
    x, t = ds.train.double(), ds.info["train_t"].double()
    assert ((t >= 1.5 * math.pi) & (t <= 4.5 * math.pi)).all()
    assert torch.allclose(x.norm(dim=1), t * 4.0 / (4.5 * math.pi), atol=1e-5)
    gap = torch.remainder(torch.atan2(x[:, 1], x[:, 0]) - t + math.pi, 2 * math.pi) - math.pi
    assert gap.abs().max() < 1e-4
    assert x.norm(dim=1).max() <= 4.0 + 1e-5


@pytest.mark.parametrize("name,lim,h", [("ring8", 1.1, 0.002), ("grid25", 4.5, 0.01)])
def test_mixture_density_integrates_to_one(name, lim, h):
    ds = registry.DATASETS[name](n_train=10, n_test=10)
    v = torch.arange(-lim, lim + h / 2, h, dtype=torch.float64)
    grid = torch.cartesian_prod(v, v)
    total = sum(ds.log_prob(chunk).exp().sum().item() for chunk in grid.split(200_000)) * h * h
    assert abs(total - 1.0) < 1e-6, total


def test_mixture_means_are_the_published_ones():
    ring = synthetic.ring8()
    c = math.sqrt(0.5)
    published = torch.tensor([[1, 0], [c, c], [0, 1], [-c, c], [-1, 0], [-c, -c], [0, -1], [c, -c]])
    assert torch.allclose(ring.means.double(), published.double(), atol=1e-6) and ring.std == 0.01
    grid = synthetic.grid25()
    pub = {(float(a), float(b)) for a in (-4, -2, 0, 2, 4) for b in (-4, -2, 0, 2, 4)}
    assert {tuple(m) for m in grid.means.tolist()} == pub and grid.std == 0.05
    # samples: nearest-mode residuals have the stated std, modes are used evenly
    for ds in (ring, grid):
        d = torch.cdist(ds.train.double(), ds.means.double())
        near = d.argmin(1)
        resid = ds.train.double() - ds.means.double()[near]
        assert abs(resid.std().item() / ds.std - 1) < 0.03
        share = torch.bincount(near, minlength=len(ds.means)).double() / len(near)
        assert (share - 1 / len(ds.means)).abs().max() < 0.02


def test_mixture_log_prob_matches_scipy():
    ds = synthetic.grid25(std=0.7)
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    ref = np.log(np.mean([multivariate_normal(m, 0.49 * np.eye(2)).pdf(x.numpy())
                          for m in ds.means.double().numpy()], axis=0))
    assert np.allclose(ds.log_prob(x).numpy(), ref, atol=1e-9)


# --- digits ----------------------------------------------------------------------------

def test_digits_split():
    from sklearn.datasets import load_digits

    ds = digits()
    assert ds.train.shape == (1497, 1, 8, 8) and ds.test.shape == (300, 1, 8, 8)
    assert ds.spec.levels == 17 and ds.spec.shift == ds.spec.scale == 8.0
    both = torch.cat([ds.train, ds.test])
    assert torch.equal(both, both.round()) and both.min() == 0 and both.max() == 16
    again = digits()
    assert torch.equal(ds.train, again.train) and torch.equal(ds.test, again.test)
    bunch = load_digits()
    order = np.random.default_rng(0).permutation(1797)
    assert np.array_equal(both[:, 0].numpy(), bunch.images[order])
    assert np.array_equal(torch.cat([ds.train_y, ds.test_y]).numpy(),
                          bunch.target[order])


# --- registry --------------------------------------------------------------------------

def test_every_registered_dataset_builds():
    loaders = {n for n, fn in registry.DATASETS.items() if _required(fn)}
    assert loaders == {"mnist", "cifar10", "image_folder", "array", "wav", "vae_codes"}
    for name, fn in registry.DATASETS.items():
        params = inspect.signature(fn).parameters.values()
        assert all(p.kind is p.KEYWORD_ONLY for p in params), f"{name}: arguments must be keyword-only"
        if name in loaders:
            continue
        ds = build_dataset({"name": name})
        assert isinstance(ds, Dataset) and ds.spec.name == name
        assert len(ds.train) > 0 and len(ds.test) > 0
        assert torch.isfinite(ds.train).all()


# --- file loaders: helpers that write the real formats ---------------------------------

def write_idx(path, a: np.ndarray, gz: bool = False):
    code = {np.dtype(np.uint8): 0x08, np.dtype(np.int16): 0x0B, np.dtype(np.float32): 0x0D}[a.dtype]
    header = bytes([0, 0, code, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    raw = header + a.astype(a.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def make_mnist(root, gz=False, n=(5, 3), seed=0):
    rng = np.random.default_rng(seed)
    root.mkdir(exist_ok=True)
    out = {}
    for prefix, m in zip(("train", "t10k"), n):
        x = rng.integers(0, 256, (m, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, m, dtype=np.uint8)
        sfx = ".gz" if gz else ""
        write_idx(root / f"{prefix}-images-idx3-ubyte{sfx}", x, gz)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{sfx}", y, gz)
        out[prefix] = (x, y)
    return out


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_round_trip(tmp_path, gz):
    ref = make_mnist(tmp_path / "m", gz=gz)
    ds = build_dataset({"name": "mnist", "path": str(tmp_path / "m")})
    assert ds.spec.event_shape == (1, 28, 28) and ds.spec.levels == 256 and ds.spec.shift == 127.5
    assert np.array_equal(ds.train[:, 0].numpy(), ref["train"][0])
    assert np.array_equal(ds.test[:, 0].numpy(), ref["t10k"][0])
    assert np.array_equal(ds.train_y.numpy(), ref["train"][1])
    assert np.array_equal(ds.test_y.numpy(), ref["t10k"][1])


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_read_idx_dtypes(tmp_path, dtype):
    a = (np.arange(24).reshape(2, 3, 4) * 7 - 50).astype(dtype) if dtype != np.uint8 else \
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(files.read_idx(write_idx(tmp_path / "a.idx", a)), a)


def test_mnist_errors(tmp_path):
    make_mnist(tmp_path / "m")
    f = tmp_path / "m" / "train-images-idx3-ubyte"
    good = f.read_bytes()
    f.write_bytes(b"\x00\x00\x08\x07" + good[4:])  # ndim 7 instead of 3
    with pytest.raises(DataFileError, match="train-images-idx3-ubyte.*(truncated|header)"):
        files.mnist(path=str(tmp_path / "m"))
    f.write_bytes(b"\x12\x34" + good[2:])
    with pytest.raises(DataFileError, match="train-images-idx3-ubyte.*magic"):
        files.mnist(path=str(tmp_path / "m"))
    f.write_bytes(good[:-10])
    with pytest.raises(DataFileError, match="train-images-idx3-ubyte.*truncated"):
        files.mnist(path=str(tmp_path / "m"))
    f.write_bytes(gzip.compress(good)[:-20])
    with pytest.raises(DataFileError, match="train-images-idx3-ubyte.*gzip"):
        files.mnist(path=str(tmp_path / "m"))
    f.write_bytes(good)
    write_idx(tmp_path / "m" / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8))  # 4 labels, 3 images
    with pytest.raises(DataFileError, match="t10k-labels-idx1-ubyte.*3 uint8 labels"):
        files.mnist(path=str(tmp_path / "m"))
    (tmp_path / "m" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        files.mnist(path=str(tmp_path / "m"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        files.mnist(path=str(tmp_path / "nowhere"))


def write_cifar(root, names, n=4, seed=0, protocol=2):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in names:
        d = {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, n).tolist(),
             b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"filenames": [f"{name}_{i}.png".encode() for i in range(n)]}
        (root / name).write_bytes(pickle.dumps(d, protocol=protocol))
        out[name] = d
    return out


ALL_CIFAR = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_round_trip(tmp_path, protocol):
    ref = write_cifar(tmp_path / "cifar-10-batches-py", ALL_CIFAR, protocol=protocol)
    ds = build_dataset({"name": "cifar10", "path": str(tmp_path)})  # parent folder also accepted
    assert ds.train.shape == (20, 3, 32, 32) and ds.test.shape == (4, 3, 32, 32) and ds.spec.levels == 256
    data = np.concatenate([ref[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    # row layout: 1024 red, then green, then blue, each row-major 32x32
    assert ds.train[7, 1, 2, 5].item() == data[7, 1024 + 2 * 32 + 5]
    assert np.array_equal(ds.train.numpy().reshape(20, -1), data)
    assert np.array_equal(ds.test.numpy().reshape(4, -1), ref["test_batch"][b"data"])
    labels = sum((ref[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert ds.train_y.tolist() == labels
    assert ds.test_y.tolist() == ref["test_batch"][b"labels"]


def test_cifar10_subset_and_errors(tmp_path):
    root = tmp_path / "c"
    write_cifar(root, ["data_batch_1", "data_batch_2", "test_batch"])
    with pytest.raises(FileNotFoundError, match="data_batch_3.*train_batches"):
        files.cifar10(path=str(root))
    ds = files.cifar10(path=str(root), train_batches=[2])
    assert len(ds.train) == 4 and ds.info["batches"] == [2]
    (root / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match="test_batch"):
        files.cifar10(path=str(root), train_batches=[1])
    (root / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataFileError, match=r"test_batch.*\(N, 3072\)"):
        files.cifar10(path=str(root), train_batches=[1])
    (root / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataFileError, match="test_batch.*unpickle"):
        files.cifar10(path=str(root), train_batches=[1])
    with pytest.raises(ValueError, match="train_batches"):
        files.cifar10(path=str(root), train_batches=[6])


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_cifar10_pickle_cannot_run_code(tmp_path):
    root = tmp_path / "c"
    write_cifar(root, ["data_batch_1"])
    marker = tmp_path / "pwned"
    (root / "test_batch").write_bytes(pickle.dumps({b"data": _Evil(str(marker)), b"labels": []}))
    with pytest.raises(DataFileError, match="test_batch.*refusing"):
        files.cifar10(path=str(root), train_batches=[1])
    assert not marker.exists()


def _png(path, a):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


def test_image_folder_classes_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    imgs = {}
    for cls in ("cat", "dog"):
        for i in range(4):
            a = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
            _png(tmp_path / "im" / cls / f"{i}.png", a)
            imgs[(cls, i)] = a
    ds = build_dataset({"name": "image_folder", "path": str(tmp_path / "im"), "test_fraction": 0.25, "seed": 1})
    assert ds.spec.event_shape == (3, 6, 5) and ds.spec.levels == 256
    assert ds.train.shape == (6, 3, 6, 5) and ds.test.shape == (2, 3, 6, 5)
    assert ds.info["class_names"] == ["cat", "dog"]
    order = sorted(imgs)  # files are read in sorted path order
    perm = np.random.default_rng(1).permutation(8)
    got = torch.cat([ds.train, ds.test]).numpy().transpose(0, 2, 3, 1)
    labels = torch.cat([ds.train_y, ds.test_y]).tolist()
    for j, idx in enumerate(perm):
        cls, i = order[idx]
        assert np.array_equal(got[j], imgs[(cls, i)]) and labels[j] == ["cat", "dog"].index(cls)
    again = files.image_folder(path=str(tmp_path / "im"), test_fraction=0.25, seed=1)
    assert torch.equal(again.test, ds.test)


def test_image_folder_gray_resize_jpeg(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    _png(tmp_path / "a" / "x.png", rgb)
    ds = files.image_folder(path=str(tmp_path / "a"), grayscale=True, test_fraction=0.0)
    assert ds.spec.event_shape == (1, 4, 4) and ds.train_y is None and ds.spec.classes is None
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # ITU-R 601-2, as Pillow documents
    assert np.abs(ds.train[0, 0].numpy() - luma).max() <= 1.0
    smooth = np.tile(np.linspace(0, 255, 16, dtype=np.uint8), (16, 1))
    Image.fromarray(np.stack([smooth] * 3, -1)).save(tmp_path / "a" / "y.jpg", quality=95)
    with pytest.raises(DataFileError, match="x.png.*size"):
        files.image_folder(path=str(tmp_path / "a"))
    ds = files.image_folder(path=str(tmp_path / "a"), size=[8, 6], test_fraction=0.0)
    assert ds.train.shape == (2, 3, 8, 6)
    jpg = files.image_folder(path=str(tmp_path / "a"), size=[16, 16], test_fraction=0.0, seed=0)
    # the JPEG (lossy) comes back close to the gradient it encodes
    diffs = [np.abs(im.numpy() - smooth).mean() for im in jpg.train[:, 0]]
    assert min(diffs) < 3.0


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        files.image_folder(path=str(tmp_path / "nope"))
    (tmp_path / "e").mkdir()
    with pytest.raises(DataFileError, match="no image files"):
        files.image_folder(path=str(tmp_path / "e"))
    _png(tmp_path / "b" / "ok.png", np.zeros((3, 3), np.uint8))
    (tmp_path / "b" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataFileError, match="broken.png.*unreadable"):
        files.image_folder(path=str(tmp_path / "b"))
    (tmp_path / "b" / "broken.png").unlink()
    _png(tmp_path / "b" / "cls" / "in_class.png", np.zeros((3, 3), np.uint8))
    with pytest.raises(DataFileError, match="subfolders"):
        files.image_folder(path=str(tmp_path / "b"))


def test_array_points_npy_and_split(tmp_path):
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    ds = build_dataset({"name": "array", "path": str(tmp_path / "x.npy"), "test_fraction": 0.25, "seed": 2})
    assert ds.spec.kind == "points" and ds.spec.event_shape == (3,) and ds.spec.levels is None
    assert ds.train.shape == (30, 3) and ds.test.shape == (10, 3)
    perm = np.random.default_rng(2).permutation(40)
    assert np.array_equal(ds.train.numpy(), x[perm[:30]]) and np.array_equal(ds.test.numpy(), x[perm[30:]])
    assert abs(ds.spec.shift - x[perm[:30]].mean()) < 1e-6 and abs(ds.spec.scale - x[perm[:30]].std()) < 1e-6
    z = ds.spec.to_model(ds.train)
    assert abs(z.mean().item()) < 1e-5 and abs(z.std(unbiased=False).item() - 1) < 1e-5


def test_array_images_npz(tmp_path):
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 256, (6, 5, 4, 3), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", x=hwc, y=np.arange(6))
    with pytest.raises(DataFileError, match="a.npz.*channels_last"):
        files.array(path=str(tmp_path / "a.npz"))
    ds = files.array(path=str(tmp_path / "a.npz"), channels_last=True, test_fraction=0.0)
    assert ds.spec.kind == "image" and ds.spec.event_shape == (3, 5, 4) and ds.spec.levels == 256
    perm = np.random.default_rng(0).permutation(6)
    assert np.array_equal(ds.train.numpy(), hwc[perm].transpose(0, 3, 1, 2))
    with pytest.raises(DataFileError, match=r"a.npz.*'z'.*\['x', 'y'\]"):
        files.array(path=str(tmp_path / "a.npz"), key="z")
    f = rng.uniform(0.2, 0.9, (8, 1, 4, 4))
    np.savez(tmp_path / "f.npz", f)  # stored as arr_0, the only key
    np.save(tmp_path / "ft.npy", f[:3])
    ds = files.array(path=str(tmp_path / "f.npz"), test_path=str(tmp_path / "ft.npy"))
    assert ds.spec.levels is None and ds.spec.kind == "image" and ds.train.shape == (8, 1, 4, 4)
    assert np.allclose(ds.test.numpy(), f[:3].astype(np.float32))
    z = ds.spec.to_model(ds.train.double())
    assert abs(z.min().item() + 1) < 1e-5 and abs(z.max().item() - 1) < 1e-5


def test_array_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        files.array(path=str(tmp_path / "missing.npy"))
    np.save(tmp_path / "cube.npy", np.zeros((4, 5, 6)))
    with pytest.raises(DataFileError, match=r"cube.npy.*\(4, 5, 6\).*\(N, D\)"):
        files.array(path=str(tmp_path / "cube.npy"))
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan]]))
    with pytest.raises(DataFileError, match="nan.npy.*NaN"):
        files.array(path=str(tmp_path / "nan.npy"))
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY junk")
    with pytest.raises(DataFileError, match="junk.npy.*cannot read"):
        files.array(path=str(tmp_path / "junk.npy"))
    np.save(tmp_path / "a.npy", np.zeros((4, 3)))
    np.save(tmp_path / "b.npy", np.zeros((4, 2)))
    with pytest.raises(DataFileError, match="b.npy.*must match"):
        files.array(path=str(tmp_path / "a.npy"), test_path=str(tmp_path / "b.npy"))
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 2)), b=np.zeros((2, 2)))
    with pytest.raises(DataFileError, match="two.npz.*key"):
        files.array(path=str(tmp_path / "two.npz"))


def test_wav_int16_stereo_windows(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(-32768, 32768, (100, 2), dtype=np.int16)
    wavfile.write(tmp_path / "s.wav", 8000, a)
    ds = build_dataset({"name": "wav", "path": str(tmp_path / "s.wav"), "window": 8, "hop": 4,
                        "channel": "left", "test_fraction": 0.2})
    assert ds.spec.kind == "sequence" and ds.spec.event_shape == (8,) and ds.info["sample_rate"] == 8000
    left = a[:, 0] / 32768.0
    assert len(ds.train) == 1 + (80 - 8) // 4 and len(ds.test) == 1 + (20 - 8) // 4
    for i in range(len(ds.train)):
        assert np.array_equal(ds.train[i].numpy(), left[4 * i: 4 * i + 8].astype(np.float32))
    assert np.array_equal(ds.test[0].numpy(), left[80:88].astype(np.float32))
    assert ds.train.min() >= -1 and ds.train.max() < 1
    mono = files.wav(path=str(tmp_path / "s.wav"), window=10, test_fraction=0.0)
    assert np.allclose(mono.train.numpy().reshape(-1), (a.astype(np.float64).mean(1) / 32768), atol=1e-7)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_wav_other_sample_types(tmp_path, dtype):
    raw = np.array([0, 64, 128, 192, 255] * 4, np.uint8) if dtype == np.uint8 else \
        np.linspace(-1, 1, 20, dtype=np.float32)
    wavfile.write(tmp_path / "m.wav", 100, raw)
    ds = files.wav(path=str(tmp_path / "m.wav"), window=5, test_fraction=0.0)
    expect = (raw.astype(np.float64) - 128) / 128 if dtype == np.uint8 else raw
    assert np.allclose(ds.train.numpy().reshape(-1), expect, atol=1e-7)


def test_wav_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="none.wav"):
        files.wav(path=str(tmp_path / "none.wav"))
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(DataFileError, match="bad.wav.*WAV"):
        files.wav(path=str(tmp_path / "bad.wav"))
    wavfile.write(tmp_path / "short.wav", 100, np.zeros(50, np.int16))
    with pytest.raises(DataFileError, match="short.wav.*window"):
        files.wav(path=str(tmp_path / "short.wav"), window=64)
