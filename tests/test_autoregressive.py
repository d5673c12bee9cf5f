"""Autoregressive models (PixelCNN, WaveNet, Transformer), mu-law and the sines dataset.

Contracts: causality by gradients (no dependence on the current or later
elements, and for PixelCNN no blind spot), exact normalisation on enumerable
cases, samples distributed as log_prob says (chi-square), cached == naive
sampling, gradients reach every parameter, save/load, short MLE training.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from genlab.build import build_model
from genlab.data import mulaw
from genlab.data.base import DataSpec, image_spec
from genlab.data.sequences import decode_amplitude, sines
from genlab.models.autoregressive import PixelCNN, Transformer, WaveNet
from genlab.models.base import DiscreteDensityModel
from genlab.sampling.cached import sample_categorical


def seq_spec(length: int, levels: int) -> DataSpec:
    half = (levels - 1) / 2
    return DataSpec(name="toy", kind="sequence", event_shape=(length,), levels=levels, shift=half, scale=half)


def all_events(spec: DataSpec) -> torch.Tensor:
    """Every event of a tiny spec, in model space, float64: ``(levels^D, *event_shape)``."""
    ks = torch.tensor(list(itertools.product(range(spec.levels), repeat=spec.dim)), dtype=torch.float64)
    return spec.to_model(ks.view(-1, *spec.event_shape))


TINY = {
    "wavenet": lambda s: WaveNet(data_spec=s, residual_channels=8, gate_channels=8, skip_channels=8, layers=3,
                                 dilation_cycle=2),
    "transformer": lambda s: Transformer(data_spec=s, dim=16, layers=2, heads=2),
    "transformer_sin": lambda s: Transformer(data_spec=s, dim=16, layers=1, heads=2, positions="sinusoidal"),
}
TINY_IMAGE = {
    "pixelcnn": lambda s: PixelCNN(data_spec=s, hidden=8, layers=2),
    "pixelcnn_dmol": lambda s: PixelCNN(data_spec=s, hidden=8, layers=2, output="logistic_mixture", mixtures=3),
}


def sharpen(model: torch.nn.Module, factor: float = 4.0) -> None:
    """Scale the last layer so the model's pmf is far from uniform (a stronger test)."""
    last = [m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d))][-1]
    with torch.no_grad():
        last.weight.mul_(factor)
        last.bias.normal_(0, 1)


# --- mu-law and data ----------------------------------------------------------

def test_mulaw_compress_matches_formula_and_inverts():
    x = torch.linspace(-1, 1, 2001, dtype=torch.float64)
    ref = np.sign(x.numpy()) * np.log(1 + 255 * np.abs(x.numpy())) / np.log(256)
    assert np.allclose(mulaw.compress(x).numpy(), ref, atol=1e-12)
    assert torch.allclose(mulaw.expand(mulaw.compress(x)), x, atol=1e-12)


def test_mulaw_encode_decode():
    x = torch.linspace(-1, 1, 5001, dtype=torch.float64)
    k = mulaw.encode(x, 256)
    assert k.dtype == torch.long and k.min() == 0 and k.max() == 255
    assert (k.diff() >= 0).all()  # monotone
    xr = mulaw.decode(k, 256)
    # decoding lands on the nearest of the 256 evenly spaced points in the compressed domain
    assert (mulaw.compress(xr) - mulaw.compress(x)).abs().max() <= 1 / 255 + 1e-9
    assert torch.equal(mulaw.encode(mulaw.decode(torch.arange(256), 256), 256), torch.arange(256))
    step = mulaw.decode(torch.arange(256), 256).diff()
    assert step[127] < step[-1] / 50  # finer resolution near 0 than near +-1


def test_sines_dataset():
    ds = sines(n_train=50, n_test=10, length=32, seed=3)
    assert ds.spec.kind == "sequence" and ds.spec.event_shape == (32,) and ds.spec.levels == 256
    assert ds.train.shape == (50, 32) and ds.test.shape == (10, 32)
    assert torch.equal(ds.train, ds.train.round()) and ds.train.min() >= 0 and ds.train.max() <= 255
    m = ds.spec.to_model(ds.train)
    assert m.min() >= -1 and m.max() <= 1
    amp = decode_amplitude(ds.train, ds.info)
    assert amp.abs().max() <= 1 and amp.abs().max(1).values.min() > 0.3  # amplitudes in [0.5, 1]
    assert torch.equal(sines(n_train=50, n_test=10, length=32, seed=3).train, ds.train)
    lin = sines(n_train=20, n_test=5, length=16, levels=17, encoding="linear")
    assert lin.train.max() <= 16 and torch.equal(lin.train, lin.train.round())


def test_sample_categorical_matches_probabilities():
    logits = torch.tensor([[0.0, 1.0, -2.0, float("-inf")]]).expand(40000, 4)
    k = sample_categorical(logits, torch.Generator().manual_seed(0))
    counts = torch.bincount(k, minlength=4).numpy()
    p = torch.softmax(logits[0].double(), 0).numpy()
    assert counts[3] == 0
    assert stats.chisquare(counts[:3], 40000 * p[:3]).pvalue > 1e-3


# --- causality --------------------------------------------------------------

def pixel_dependencies(model: PixelCNN, c: int, r: int, col: int, ch: int) -> torch.Tensor:
    """Which input sub-pixels the output distribution at (r, col, ch) depends on: (C, H, W) bool."""
    # a batch of 16 inputs so that no path is cut by ReLUs that happen to be inactive for every input
    x = (torch.rand(16, *model.event_shape, dtype=torch.float64) * 2 - 1).requires_grad_()
    out = model.params(x)[:, ch, :, r, col]
    (g,) = torch.autograd.grad(out.pow(2).sum(), x)
    return g.abs().sum(0) > 0


@pytest.mark.parametrize("output", ["categorical", "logistic_mixture"])
@pytest.mark.parametrize("shape,layers", [((1, 5, 5), 5), ((3, 4, 4), 4)])
def test_pixelcnn_raster_causality_and_no_blind_spot(shape, layers, output):
    torch.manual_seed(0)
    model = PixelCNN(data_spec=image_spec("t", shape, 4), hidden=24, layers=layers, output=output,
                     mixtures=2).double()
    c, h, w = shape
    for r, col, ch in itertools.product(range(h), range(w), range(c)):
        dep = pixel_dependencies(model, c, r, col, ch)
        expected = torch.zeros(c, h, w, dtype=torch.bool)
        for r2, c2, ch2 in itertools.product(range(h), range(w), range(c)):
            expected[ch2, r2, c2] = (r2, c2, ch2) < (r, col, ch)  # raster order, channels innermost
        assert torch.equal(dep, expected), f"output at row {r}, col {col}, channel {ch}"


@pytest.mark.parametrize("name", ["wavenet", "transformer"])
def test_sequence_causality(name):
    torch.manual_seed(0)
    t_len = 10
    model = (WaveNet(data_spec=seq_spec(t_len, 5), residual_channels=8, gate_channels=8, skip_channels=8,
                     layers=4, dilation_cycle=4) if name == "wavenet"
             else Transformer(data_spec=seq_spec(t_len, 5), dim=16, layers=2, heads=2)).double()
    embed = model.embed if name == "wavenet" else model.tok
    captured = {}
    hook = embed.register_forward_hook(lambda m, i, o: captured.update(e=o) or o.requires_grad_())
    k = torch.randint(5, (3, t_len))
    logits = model.logits(k)
    hook.remove()
    e = captured["e"]  # WaveNet: (B, T, R) embeddings of x_j; Transformer: position p holds x_{p-1}
    for t in range(t_len):
        out = logits[:, :, t] if name == "wavenet" else logits[:, t]
        (g,) = torch.autograd.grad(out.pow(2).sum(), e, retain_graph=True)
        dep = g.abs().sum((0, 2)) > 0
        if name == "transformer":
            assert dep[0]  # the start token reaches every position
            dep = dep[1:]
        expected = torch.arange(dep.shape[0]) < t
        assert torch.equal(dep, expected), f"position {t}"
    assert model.receptive_field() >= t_len if name == "wavenet" else True


# --- normalisation and sampling ----------------------------------------------

@pytest.mark.parametrize("name", list(TINY) + list(TINY_IMAGE))
def test_log_prob_sums_to_one(name):
    torch.manual_seed(1)
    spec = seq_spec(3, 3) if name in TINY else image_spec("t", (1, 1, 3), 3)
    model = (TINY | TINY_IMAGE)[name](spec).double()
    sharpen(model)
    lp = model.log_prob(all_events(spec))
    assert lp.shape == (27,)
    assert abs(torch.logsumexp(lp, 0).item()) < 1e-10
    if name.startswith("pixelcnn"):
        spec2 = image_spec("t", (2, 1, 2), 3)  # two channels: channel order inside a pixel
        lp2 = TINY_IMAGE[name](spec2).double().log_prob(all_events(spec2))
        assert abs(torch.logsumexp(lp2, 0).item()) < 1e-10


@pytest.mark.parametrize("name", list(TINY) + list(TINY_IMAGE))
def test_samples_follow_log_prob(name):
    torch.manual_seed(2)
    spec = seq_spec(3, 3) if name in TINY else image_spec("t", (1, 1, 3), 3)
    model = (TINY | TINY_IMAGE)[name](spec).double()
    sharpen(model)
    events = all_events(spec)
    pmf = model.log_prob(events).exp().detach()
    n = 12000
    x = model.sample(n, generator=torch.Generator().manual_seed(0))
    assert x.shape == (n, *spec.event_shape)
    idx = model.to_index(x).flatten(1)  # raises if samples are off the levels
    code = (idx * torch.tensor([9, 3, 1])).sum(1)  # events are enumerated in this order
    counts = torch.bincount(code, minlength=27).double()
    keep = pmf * n > 5
    chi2 = (((counts - n * pmf) ** 2 / (n * pmf))[keep]).sum().item()
    assert stats.chi2.sf(chi2, int(keep.sum()) - 1) > 1e-3
    assert counts[~keep].sum() <= max(30.0, 3 * n * pmf[~keep].sum().item())
    # mean -log p of the model's own samples = its entropy (Monte Carlo, 5 standard errors)
    nll = -model.log_prob(x).detach()
    entropy = -(pmf * pmf.log()).sum().item()
    assert abs(nll.mean().item() - entropy) < 5 * nll.std().item() / math.sqrt(n)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["wavenet", "wavenet_k3", "transformer", "transformer_sin"])
def test_cached_equals_naive(name, dtype):
    torch.manual_seed(3)
    spec = seq_spec(40, 256)
    if name == "wavenet_k3":
        model = WaveNet(data_spec=spec, residual_channels=8, gate_channels=8, skip_channels=8, layers=4,
                        dilation_cycle=3, kernel_size=3)
    else:
        model = TINY[name](spec)
    model = model.to(dtype)
    sharpen(model, 1.5)
    a = model.sample_naive(8, generator=torch.Generator().manual_seed(5))
    b = model.sample_cached(8, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert len(a.unique()) > 5  # not a degenerate sample
    model.cached_sampling = False
    assert torch.equal(model.sample(8, generator=torch.Generator().manual_seed(5)), a)


# --- training contracts ----------------------------------------------------------

@pytest.mark.parametrize("name", list(TINY) + list(TINY_IMAGE))
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(4)
    spec = seq_spec(12, 7) if name in TINY else image_spec("t", (2, 4, 4), 7)
    model = (TINY | TINY_IMAGE)[name](spec)
    assert isinstance(model, DiscreteDensityModel)
    x = spec.to_model(torch.randint(7, (6, *spec.event_shape)).float())
    (-model.log_prob(x).mean()).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("section", [
    {"name": "pixelcnn", "hidden": 8, "layers": 2},
    {"name": "pixelcnn", "hidden": 8, "layers": 2, "output": "logistic_mixture", "mixtures": 2},
    {"name": "wavenet", "residual_channels": 8, "gate_channels": 8, "skip_channels": 8, "layers": 3},
    {"name": "transformer", "dim": 16, "layers": 1, "heads": 2, "positions": "sinusoidal"},
])
def test_build_save_load(section, tmp_path):
    spec = image_spec("t", (1, 4, 4), 5) if section["name"] == "pixelcnn" else seq_spec(9, 5)
    model = build_model(section, spec, seed=0)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    other = build_model(section, spec, seed=1)
    x = spec.to_model(torch.randint(5, (4, *spec.event_shape)).float())
    assert not torch.allclose(other.log_prob(x), model.log_prob(x))
    other.load_state_dict(torch.load(tmp_path / "w.pt"))
    assert torch.equal(other.log_prob(x), model.log_prob(x))
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(other.sample(3, generator=g()), model.sample(3, generator=g()))


def test_clear_errors():
    spec = seq_spec(4, 5)
    model = TINY["wavenet"](spec)
    with pytest.raises(ValueError, match="exact levels"):
        model.log_prob(torch.full((2, 4), 0.1))
    with pytest.raises(ValueError, match="expected input"):
        model.log_prob(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="discrete data"):
        WaveNet(data_spec=DataSpec(name="p", kind="points", event_shape=(2,)))
    with pytest.raises(ValueError, match="image data"):
        PixelCNN(data_spec=spec)


def _fit(model, x_train, steps, lr=3e-3, batch=64):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        xb = x_train[torch.randint(len(x_train), (batch,), generator=g)]
        loss = -model.log_prob(xb).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def bits_per_dim(model, x) -> float:
    with torch.no_grad():
        return -model.log_prob(x).mean().item() / (math.prod(x.shape[1:]) * math.log(2))


def test_short_training_beats_uniform():
    """A few MLE steps on digits and sines must beat the uniform baseline by a margin."""
    from genlab.data.digits import digits

    torch.manual_seed(0)
    ds = digits()
    model = PixelCNN(data_spec=ds.spec, hidden=16, layers=3)
    x_tr, x_te = ds.spec.to_model(ds.train), ds.spec.to_model(ds.test)
    _fit(model, x_tr, 40)
    assert bits_per_dim(model, x_te) < math.log2(17) - 1.0  # uniform: 4.09 bits/dim
    sq = sines(n_train=512, n_test=128, length=32, levels=32)
    for seq_model in (WaveNet(data_spec=sq.spec, residual_channels=16, gate_channels=16, skip_channels=32, layers=5),
                      Transformer(data_spec=sq.spec, dim=32, layers=2, heads=2)):
        _fit(seq_model, sq.spec.to_model(sq.train), 60)
        assert bits_per_dim(seq_model, sq.spec.to_model(sq.test)) < 5 - 1.25  # uniform: log2(32) = 5 bits


@pytest.mark.slow
def test_pixelcnn_digits_bits_per_dim():
    """Held-out digits bits/dim after 1,500 MLE steps (exact discrete bpd = -log p / (D ln 2))."""
    from genlab.data.digits import digits

    torch.manual_seed(0)
    ds = digits()
    model = PixelCNN(data_spec=ds.spec, hidden=32, layers=5)
    _fit(model, ds.spec.to_model(ds.train), 1500, lr=1e-3)
    assert bits_per_dim(model, ds.spec.to_model(ds.test)) < 2.0
