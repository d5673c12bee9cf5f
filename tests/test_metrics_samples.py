"""Sample-based metrics: parity with float64 NumPy/SciPy references, closed forms, tests'
calibration on fixed seeds, degenerate inputs, feature extractors, loading and evaluate_samples."""

from __future__ import annotations

import math
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from genlab.metrics import features as feat
from genlab.metrics import msssim as msssim_mod
from genlab.metrics.c2st import C2ST, _grouped_split, c2st
from genlab.metrics.fid import FID, fid_from_features, frechet_distance
from genlab.metrics.inception_score import InceptionScore, inception_score_from_probs
from genlab.metrics.kid import KID, polynomial_mmd2
from genlab.metrics.memorization import Memorization
from genlab.metrics.mmd import MMD, median_bandwidth, mmd_permutation_test
from genlab.metrics.msssim import MSSSIM, ms_ssim, ms_ssim_protocol
from genlab.metrics.prdc import PRDC, prdc_from_features
from genlab.metrics.samples import evaluate_samples, load_samples
from genlab.registry import METRICS


@pytest.fixture(scope="module", autouse=True)
def digits_cache(tmp_path_factory):
    """Train/cache the digits net in a private folder (once per module)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GENLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


def rand(*shape, seed=0, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


def rel_close(a, b, tol=1e-6):
    assert abs(a - b) <= tol * max(abs(b), 1e-12), (a, b)


# --- NumPy/SciPy references ---------------------------------------------------------

def fid_ref(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    m1, m2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    cross = scipy.linalg.sqrtm(s1 @ s2)
    return float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(cross).real)


def kid_ref(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    k = lambda a, b: (a @ b.T / a.shape[1] + 1.0) ** 3  # noqa: E731
    n, m = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                 - 2 * k(x, y).mean())


def prdc_ref(real, fake, k_pr, k_dc):
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    dist = lambda a, b: np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))  # noqa: E731
    radius = lambda a, k: np.sort(dist(a, a), axis=1)[:, k]  # noqa: E731
    d = dist(real, fake)
    rr, rf, rd = radius(real, k_pr), radius(fake, k_pr), radius(real, k_dc)
    return {"precision": float(np.mean([(d[:, j] <= rr).any() for j in range(len(fake))])),
            "recall": float(np.mean([(d[i] <= rf).any() for i in range(len(real))])),
            "density": float(sum((d[:, j] <= rd).sum() for j in range(len(fake))) / (k_dc * len(fake))),
            "coverage": float(np.mean([d[i].min() <= rd[i] for i in range(len(real))]))}


def correlated(n, d, seed):
    a = rand(d, d, seed=100 + seed)
    return rand(n, d, seed=seed) @ a + rand(d, seed=200 + seed)


# --- FID -----------------------------------------------------------------------------

def test_fid_of_a_set_with_itself_is_zero():
    x = correlated(400, 8, 0)
    m = FID(features="identity")
    m.update(real=x, fake=x)
    assert abs(m.compute()["fid"]) < 1e-9


def test_fid_matches_scipy_reference():
    x, y = correlated(500, 10, 1), correlated(300, 10, 2)
    m = FID(features="identity")
    for i in range(0, 500, 128):  # batched updates
        m.update(real=x[i:i + 128], fake=y[i:i + 128] if i < 300 else None)
    rel_close(m.compute()["fid"], fid_ref(x, y))


def test_fid_matches_torchmetrics_with_custom_features():
    from torchmetrics.image.fid import FrechetInceptionDistance

    class Flat(torch.nn.Module):
        num_features = 6

        def forward(self, x):
            return x.reshape(len(x), -1)

    x, y = correlated(300, 6, 3), correlated(250, 6, 4)
    tm = FrechetInceptionDistance(feature=Flat()).set_dtype(torch.float64)
    tm.update(x, real=True)
    tm.update(y, real=False)
    rel_close(fid_from_features(x, y), float(tm.compute()))


def test_frechet_distance_closed_forms():
    mu1, mu2 = rand(5, seed=1), rand(5, seed=2)
    a, b = rand(5, seed=3).abs() + 0.1, rand(5, seed=4).abs() + 0.1
    # commuting (diagonal) covariances: sum of 1-D W2^2 terms
    want = float(((mu1 - mu2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum())
    rel_close(frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)), want)
    # general covariances vs SciPy
    s1, s2 = correlated(50, 5, 5).T.cov(), correlated(50, 5, 6).T.cov()
    want = float(((mu1 - mu2) ** 2).sum() + s1.trace() + s2.trace()
                 - 2 * np.trace(scipy.linalg.sqrtm(s1.numpy() @ s2.numpy())).real)
    rel_close(frechet_distance(mu1, s1, mu2, s2), want)


def test_sample_fid_between_gaussians_approaches_closed_form():
    d, n = 3, 20000
    l1, l2 = torch.tensor([[1.0, 0, 0], [0.5, 1, 0], [0, 0.3, 0.5]], dtype=torch.float64), \
        torch.tensor([[2.0, 0, 0], [0, 0.5, 0], [0.4, 0, 1]], dtype=torch.float64)
    mu2 = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)
    x, y = rand(n, d, seed=7) @ l1.T, rand(n, d, seed=8) @ l2.T + mu2
    exact = frechet_distance(torch.zeros(d), l1 @ l1.T, mu2, l2 @ l2.T)
    assert abs(fid_from_features(x, y) - exact) < 0.03 * exact


def test_fid_degenerate_inputs():
    with pytest.raises(ValueError, match="at least 2"):
        fid_from_features(rand(1, 3), rand(10, 3))
    y = correlated(200, 3, 9)
    point = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64).repeat(50, 1)  # zero covariance
    want = float(((point[0] - y.mean(0)) ** 2).sum() + y.T.cov().trace())
    got = fid_from_features(point, y)
    assert math.isfinite(got)
    rel_close(got, want)
    # features living in a 2-D subspace of R^5: singular covariances, still real and finite
    x2 = rand(300, 2, seed=10) @ rand(2, 5, seed=11)
    y2 = rand(300, 2, seed=12) @ rand(2, 5, seed=13)
    got = fid_from_features(x2, y2)
    assert math.isfinite(got) and got >= 0
    rel_close(got, fid_ref(x2, y2), tol=1e-4)  # scipy's sqrtm is itself inexact on singular input
    with pytest.warns(UserWarning, match="singular"):
        fid_from_features(rand(5, 8), rand(20, 8, seed=1))


# --- KID -----------------------------------------------------------------------------

def test_kid_unbiased_mmd_matches_reference():
    x, y = correlated(120, 6, 1), correlated(90, 6, 2)
    rel_close(float(polynomial_mmd2(x, y)), kid_ref(x, y))


def test_kid_subsets_match_reference_and_are_seeded():
    x, y = correlated(200, 4, 1), correlated(150, 4, 2)
    m = KID(features="identity", subsets=5, subset_size=50, seed=3)
    m.update(real=x, fake=y)
    out = m.compute()
    gen = torch.Generator().manual_seed(3)  # replay the documented subset draws
    vals = []
    for _ in range(5):
        r = x[torch.randperm(200, generator=gen)[:50]]
        f = y[torch.randperm(150, generator=gen)[:50]]
        vals.append(kid_ref(r, f))
    rel_close(out["kid"], float(np.mean(vals)))
    rel_close(out["kid_std"], float(np.std(vals)))
    assert m.compute() == out
    m2 = KID(features="identity", subsets=5, subset_size=50, seed=4)
    m2.update(real=x, fake=y)
    assert m2.compute()["kid"] != out["kid"]


def test_kid_small_sets_fall_back_or_fail_clearly():
    x, y = correlated(30, 4, 1), correlated(40, 4, 2)
    m = KID(features="identity", subset_size=1000)
    m.update(real=x, fake=y)
    with pytest.warns(UserWarning, match="using subsets of 30"):
        out = m.compute()
    assert all(math.isfinite(v) for v in out.values())
    m = KID(features="identity")
    m.update(real=x[:1], fake=y)
    with pytest.raises(ValueError, match="at least 2"):
        m.compute()


# --- precision / recall / density / coverage --------------------------------------------

def test_prdc_matches_bruteforce_reference():
    real, fake = rand(200, 5, seed=1), rand(150, 5, seed=2) * 1.3 + 0.4
    m = PRDC(features="identity", k_pr=3, k_dc=5)
    m.update(real=real, fake=fake)
    got, want = m.compute(), prdc_ref(real, fake, 3, 5)
    assert 0 < want["precision"] < 1 and 0 < want["coverage"] < 1  # a non-trivial case
    for key in want:
        rel_close(got[key], want[key])


def test_prdc_of_a_set_with_itself():
    x = rand(100, 4, seed=5)
    out = prdc_from_features(x, x, k_pr=3, k_dc=5)
    assert out["precision"] == out["recall"] == out["coverage"] == 1.0
    rel_close(out["density"], 6 / 5)  # each point lies in its own ball and its 5 neighbours' balls


def test_prdc_needs_more_samples_than_k():
    with pytest.raises(ValueError, match="more than k=5"):
        prdc_from_features(rand(5, 2), rand(50, 2), k_pr=3, k_dc=5)


# --- Inception-style score -----------------------------------------------------------

def test_inception_score_limits():
    k = 10
    uniform = torch.full((200, k), 1.0 / k, dtype=torch.float64)
    assert abs(inception_score_from_probs(uniform, splits=4)[0] - 1.0) < 1e-12
    onehot = torch.eye(k, dtype=torch.float64).repeat(30, 1)
    rel_close(inception_score_from_probs(onehot, splits=1)[0], float(k))
    one_class = torch.eye(k, dtype=torch.float64)[torch.zeros(50, dtype=torch.long)]
    assert abs(inception_score_from_probs(one_class, splits=1)[0] - 1.0) < 1e-12
    with pytest.raises(ValueError, match="splits"):
        inception_score_from_probs(uniform[:3], splits=10)


def test_inception_score_through_a_torchscript_classifier(tmp_path):
    class Confident(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # class = first coordinate
            return 50.0 * torch.nn.functional.one_hot(x[:, 0].long(), 4).float()

    path = tmp_path / "clf.pt"
    torch.jit.script(Confident()).save(str(path))
    fake = torch.stack([torch.arange(400) % 4, torch.zeros(400)], 1).double()
    m = InceptionScore(features=str(path), splits=1)
    m.update(fake=fake)
    assert abs(m.compute()["is"] - 4.0) < 1e-6
    m = InceptionScore(features="identity", splits=1)
    m.update(fake=fake)
    with pytest.raises(ValueError, match="no classifier"):
        m.compute()


# --- MS-SSIM -------------------------------------------------------------------------

def test_msssim_protocol_and_identity():
    assert ms_ssim_protocol(8) == (3, 0.5, 2)
    assert ms_ssim_protocol(32) == (11, 1.5, 2)
    assert ms_ssim_protocol(176) == (11, 1.5, 5)
    x = rand(6, 1, 8, 8, seed=1).abs() * 8
    assert torch.allclose(ms_ssim(x, x, data_range=16.0), torch.ones(6, dtype=torch.float64), atol=1e-12)
    y = rand(6, 1, 8, 8, seed=2).abs() * 8
    s = ms_ssim(x, y, data_range=16.0)
    assert (s < 0.9).all() and (s >= 0).all()
    assert torch.allclose(s, ms_ssim(y, x, data_range=16.0))


def test_msssim_metric_collapse_vs_diverse():
    copies = (rand(1, 1, 8, 8, seed=3).abs() * 8).repeat(40, 1, 1, 1)
    diverse = rand(40, 1, 8, 8, seed=4).abs() * 8
    m = MSSSIM(pairs=200)
    m.update(real=diverse, fake=copies)
    out = m.compute()
    assert abs(out["msssim"] - 1.0) < 1e-12 and out["msssim_real"] < 0.5
    m = MSSSIM()
    m.update(fake=rand(10, 2))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        m.compute()


def test_msssim_chunked_equals_unchunked(monkeypatch):
    """Chunking the pairs changes nothing: a tiny forced chunk == one chunk, to 1e-12."""
    for shape, kw in (((1, 8, 8), {}), ((3, 24, 24), {}), ((2, 12, 10), {"scales": 1})):
        x = rand(9, *shape, seed=7).abs() * 5
        vals = [msssim_mod.mean_pair_msssim(x, 37, torch.Generator().manual_seed(3), chunk=c,
                                            data_range=10.0, **kw) for c in (1, 4, 37, 5000)]
        assert max(vals) - min(vals) <= 1e-12, vals
    # the metric sizes chunks from the image: a tiny memory bound forces 1 pair per chunk
    assert msssim_mod.pairs_per_chunk((3, 192, 192)) * 16 * 8 * 3 * 192 * 192 <= msssim_mod.MEMORY_BOUND
    assert msssim_mod.pairs_per_chunk((3, 24, 24), memory_bound=1) == 1
    assert msssim_mod.pairs_per_chunk((1, 8, 8)) == 1024
    x = rand(12, 1, 8, 8, seed=8).abs() * 8
    m = MSSSIM(pairs=50)
    m.update(real=x[:6], fake=x[6:])
    big = m.compute()  # one chunk of 50 pairs
    monkeypatch.setattr(msssim_mod, "MEMORY_BOUND", 1)  # one pair per chunk
    assert msssim_mod.pairs_per_chunk((1, 8, 8)) == 1
    small = m.compute()
    assert all(abs(small[k] - big[k]) <= 1e-12 for k in big), (small, big)


def test_msssim_192x192_is_fast():
    """192x192 images (1 and 3 channels) through the metric: bounded chunks, quick."""
    for c in (1, 3):
        x = torch.rand(6, c, 192, 192, generator=torch.Generator().manual_seed(c)) * 255
        m = MSSSIM(pairs=24)
        m.update(real=x, fake=x.flip(0) * 0.5)
        t0 = time.perf_counter()
        out = m.compute()
        assert time.perf_counter() - t0 < 20
        assert 0 <= out["msssim"] <= 1 and 0 <= out["msssim_real"] <= 1


_PEAK = """
import resource, torch
torch.set_num_threads(1)
from genlab.metrics.msssim import MEMORY_BOUND, mean_pair_msssim
x = torch.rand(8, 3, 192, 192, generator=torch.Generator().manual_seed(0)) * 255
mean_pair_msssim(x[:2], 1, torch.Generator().manual_seed(0), data_range=255.0)  # warm up
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
mean_pair_msssim(x, 60, torch.Generator().manual_seed(0), data_range=255.0)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - r0) * 1024, MEMORY_BOUND)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux only")
def test_msssim_peak_memory_stays_under_the_bound():
    """60 pairs of 3x192x192 images (several chunks) in a fresh process: the peak
    resident memory grows by less than MEMORY_BOUND (one chunk of 60 pairs would
    have needed about 6 GB with the former 2-D convolution)."""
    res = subprocess.run([sys.executable, "-c", _PEAK], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    grown, bound = map(int, res.stdout.split())
    assert grown < bound, (grown / 2 ** 20, bound / 2 ** 20)


# --- MMD and C2ST two-sample tests ---------------------------------------------------

def test_mmd_statistic_matches_reference():
    x, y = rand(40, 3, seed=1), rand(30, 3, seed=2) + 0.5
    h = 1.3
    stat, _, used = mmd_permutation_test(x, y, bandwidth=h, permutations=10)
    k = lambda a, b: np.exp(-scipy.spatial.distance.cdist(a, b, "sqeuclidean") / (2 * h * h))  # noqa: E731
    kxx, kyy = k(x, x), k(y, y)
    want = ((kxx.sum() - np.trace(kxx)) / (40 * 39) + (kyy.sum() - np.trace(kyy)) / (30 * 29)
            - 2 * k(x, y).mean())
    assert used == h
    rel_close(stat, float(want))
    z = torch.cat([x, y])
    rel_close(median_bandwidth(z), float(np.median(scipy.spatial.distance.pdist(z.numpy()))))


def test_mmd_median_bandwidth_excludes_exact_duplicates():
    """1,000 rows drawn from 60 distinct points (far from the origin, where cdist's
    matrix-product path leaves tiny non-zero distances between copies): the median is
    the median over pairs of distinct points."""
    base = rand(60, 5, seed=11, scale=3.0) + 10.0
    z = base[torch.randint(60, (1000,), generator=torch.Generator().manual_seed(12))]
    d = scipy.spatial.distance.pdist(z.numpy())  # exact zeros for copies
    d = np.sort(d[d > 0])
    want = d[(len(d) - 1) // 2]  # torch.median: the lower median
    rel_close(median_bandwidth(z), float(want), tol=1e-9)
    rel_close(median_bandwidth(torch.cat([z, z])), float(want), tol=1e-9)  # more copies: same median
    assert median_bandwidth(torch.full((7, 3), 2.5, dtype=torch.float64)) == 1.0


def test_c2st_fake_equal_to_real_is_at_chance():
    """Shared points never straddle the train/test split, so a classifier cannot
    memorise a point as "real" and meet it as "fake" (the old split gave 0.23)."""
    for dim in (2, 20):
        x = rand(300, dim, seed=dim)
        acc, p = c2st(x, x.clone())
        assert acc == 0.5 and p > 0.5, (dim, acc, p)
    m = C2ST(features="identity")
    x = rand(300, 8, seed=5)
    m.update(real=x, fake=x.clone())
    out = m.compute()
    assert out["c2st_acc"] == 0.5 and out["c2st_pvalue"] > 0.5
    acc, p = c2st(torch.ones(10, 2), torch.ones(10, 2))  # a single repeated point
    assert (acc, p) == (0.5, 1.0)


def test_c2st_grouped_split():
    order = torch.randperm(40, generator=torch.Generator().manual_seed(0))
    tr, te = _grouped_split(rand(40, 3, seed=1).float(), order)  # no copies: plain halves
    assert tr.tolist() == order[:20].tolist() and te.tolist() == order[20:].tolist()
    z = rand(13, 3, seed=2).float()[torch.randint(13, (40,), generator=torch.Generator().manual_seed(3))]
    tr, te = _grouped_split(z, order)
    assert sorted(tr.tolist() + te.tolist()) == list(range(40)) and len(tr) and len(te)
    side = {tuple(z[i].tolist()): "tr" for i in tr.tolist()}
    assert all(tuple(z[i].tolist()) not in side for i in te.tolist())  # no row on both sides
    assert abs(len(tr) - 20) <= max(int((z == z[i]).all(1).sum()) for i in range(40))
    assert _grouped_split(torch.zeros(6, 2), torch.arange(6)) is None


@pytest.mark.parametrize("cls", [MMD, C2ST])
def test_two_sample_tests_calibration(cls):
    same = cls(features="identity", seed=0)
    same.update(real=rand(400, 2, seed=1), fake=rand(400, 2, seed=2))
    shifted = cls(features="identity", seed=0)
    shifted.update(real=rand(400, 2, seed=1), fake=rand(400, 2, seed=2) + torch.tensor([0.6, 0.0]))
    key = "mmd_pvalue" if cls is MMD else "c2st_pvalue"
    p_same, p_shift = same.compute()[key], shifted.compute()[key]
    assert p_same > 0.05, p_same
    assert p_shift < 0.01, p_shift


def test_mmd_degenerate_single_repeated_point():
    x = torch.ones(20, 2, dtype=torch.float64)
    stat, p, h = mmd_permutation_test(x, x.clone(), permutations=20)
    assert h == 1.0 and abs(stat) < 1e-12 and p == 1.0


# --- memorisation --------------------------------------------------------------------

def test_memorization_detects_copies_and_not_fresh_samples():
    train, held_out = rand(500, 3, seed=1), rand(400, 3, seed=2)
    m = Memorization(features="identity")
    m.update(real=held_out, fake=train[:200].clone(), train=train)
    assert m.compute()["memorized_frac"] == 1.0
    m = Memorization(features="identity", quantile=0.1)
    m.update(real=held_out, fake=rand(1000, 3, seed=3), train=train)
    frac = m.compute()["memorized_frac"]
    assert abs(frac - 0.1) < 4 * math.sqrt(0.1 * 0.9 / 1000) + 0.03, frac  # binomial noise + tau estimate
    m = Memorization(features="identity")
    m.update(real=held_out, fake=train)
    with pytest.raises(ValueError, match="training data"):
        m.compute()


# --- feature extractors ----------------------------------------------------------------

def test_digits_net_is_deterministic_and_accurate():
    net1, acc1 = feat.train_digits_net(epochs=2)  # same code path as the full recipe, shorter
    net2, acc2 = feat.train_digits_net(epochs=2)
    for (k, a), b in zip(net1.state_dict().items(), net2.state_dict().values()):
        assert torch.equal(a, b), k
    assert acc1 == acc2
    net3, _ = feat.train_digits_net(epochs=2, seed=1)
    assert not torch.equal(net1.head.weight, net3.head.weight)
    _, acc = feat.digits_net()  # the full recipe (trained once, cached)
    assert acc >= 0.97, acc


def test_digits_features_cache_roundtrip():
    feat._DIGITS_LOADED.clear()
    ext = feat.resolve_features("auto", (1, 8, 8))
    assert isinstance(ext, feat.DigitsFeatures)
    assert (feat.cache_dir() / f"digits_cnn_{feat.DIGITS_VERSION}.safetensors").is_file()
    feat._DIGITS_LOADED.clear()
    again = feat.DigitsFeatures()  # loaded from the safetensors file
    x = torch.randint(0, 17, (7, 1, 8, 8)).double()
    assert torch.equal(ext.features(x), again.features(x)) and again.features(x).shape == (7, 64)
    assert ext.logits(x).shape == (7, 10) and again.test_accuracy == ext.test_accuracy


def test_feature_resolution_rules(tmp_path):
    assert isinstance(feat.resolve_features("auto", (2,)), feat.IdentityFeatures)
    with pytest.raises(ValueError, match="TorchScript"):
        feat.resolve_features("auto", (3, 32, 32))
    with pytest.raises(ValueError, match="does not exist"):
        feat.resolve_features(str(tmp_path / "missing.pt"), (2,))
    lin = torch.nn.Linear(12, 3)
    path = tmp_path / "f.pt"
    torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), lin)).save(str(path))
    x = rand(5, 3, 4)
    out = feat.resolve_features(str(path), (3, 4)).features(x)
    assert out.dtype == torch.float64 and torch.allclose(out, lin(x.float().reshape(5, -1)).double())


# --- evaluate_samples / load_samples -----------------------------------------------------

ALL = ["fid", "kid", "is", "prdc", "msssim", "mmd", "c2st", "memorization"]


def test_evaluate_samples_on_digits_all_metrics():
    from genlab.data.digits import digits

    d = digits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = evaluate_samples(d.test[:150], d.train[:150], ALL, train=d.train[150:], seed=1)
        assert evaluate_samples(d.test[:150], d.train[:150], ["kid", "c2st"], train=d.train[150:],
                                seed=1).items() <= out.items()
    keys = {k for name in ALL for k in METRICS[name].higher_is_better}
    assert set(out) == keys and all(math.isfinite(v) for v in out.values())
    assert out["is"] > 5 and out["precision"] > 0.5  # real digits look like digits to the classifier


def test_evaluate_samples_errors():
    x = rand(50, 2)
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate_samples(x, x, ["nope"])
    with pytest.raises(ValueError, match="dataset"):
        evaluate_samples(x, x, ["modes"])
    with pytest.raises(ValueError, match="training data"):
        evaluate_samples(x, x, ["memorization"])
    with pytest.raises(ValueError, match="event shape"):
        evaluate_samples(x, rand(50, 3), ["fid"])
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        evaluate_samples(x, bad, ["fid"])


def test_load_samples_formats(tmp_path):
    from PIL import Image

    a = np.arange(24, dtype=np.float32).reshape(3, 2, 4)
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "one.npz", whatever=a)
    np.savez(tmp_path / "two.npz", samples=a, labels=np.zeros(3))
    np.savez(tmp_path / "bad.npz", p=a, q=a)
    for name in ("a.npy", "one.npz", "two.npz"):
        got = load_samples(tmp_path / name)
        assert got.dtype == np.float64 and np.array_equal(got, a)
    with pytest.raises(ValueError, match="named samples"):
        load_samples(tmp_path / "bad.npz")
    np.save(tmp_path / "flat.npy", np.zeros(5))
    with pytest.raises(ValueError, match="reshape"):
        load_samples(tmp_path / "flat.npy")
    with pytest.raises(ValueError, match="no such file"):
        load_samples(tmp_path / "missing.npy")
    folder = tmp_path / "imgs"
    folder.mkdir()
    pix = np.random.default_rng(0).integers(0, 256, (4, 5, 6), dtype=np.uint8)
    for i, p in enumerate(pix):
        Image.fromarray(p, mode="L").save(folder / f"{i:02d}.png")
    got = load_samples(folder)
    assert got.shape == (4, 1, 5, 6) and np.array_equal(got[:, 0], pix)
    Image.fromarray(np.zeros((3, 3), np.uint8), mode="L").save(folder / "99.png")
    with pytest.raises(ValueError, match="differ in size"):
        load_samples(folder)
