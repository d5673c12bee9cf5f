"""Time cached vs naive ancestral sampling of the autoregressive models (not a test).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_ar_sampling.py [--length 256] [--n 16] [--repeats 3]
        [--device cpu|cuda]

For WaveNet and the Transformer on ``sines``-shaped data (``(length,)``, 256
levels) it draws ``n`` samples both ways from the same generator seed, checks the
samples are identical, and prints the best-of-``repeats`` wall time and the ratio
naive / cached. PixelCNN has only naive sampling; its time on digits
``(1, 8, 8)`` is printed for reference.
"""

from __future__ import annotations

import argparse
import time

import torch
from tqdm import tqdm

from genlab.data.base import DataSpec, image_spec
from genlab.models.autoregressive import PixelCNN, Transformer, WaveNet


def best_time(fn, repeats: int) -> tuple[float, torch.Tensor]:
    times, out = [], None
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    spec = DataSpec(name="sines", kind="sequence", event_shape=(args.length,), levels=256, shift=127.5, scale=127.5)
    models = {
        "wavenet (10 layers, dilations 1..512)": WaveNet(data_spec=spec, layers=10, dilation_cycle=10),
        "transformer (4 layers, dim 64)": Transformer(data_spec=spec, dim=64, layers=4, heads=4),
    }
    print(f"device={args.device} length={args.length} n={args.n} threads={torch.get_num_threads()}")
    for name, model in tqdm(models.items(), desc="models", leave=False):
        model = model.to(args.device).eval()
        gen = lambda: torch.Generator(device="cpu").manual_seed(1)  # noqa: E731
        t_naive, a = best_time(lambda: model.sample_naive(args.n, generator=gen()), args.repeats)
        t_cached, b = best_time(lambda: model.sample_cached(args.n, generator=gen()), args.repeats)
        print(f"{name:40s} naive {t_naive:8.3f}s  cached {t_cached:8.3f}s  ratio naive/cached "
              f"{t_naive / t_cached:6.1f}x  identical={torch.equal(a, b)}")
    px = PixelCNN(data_spec=image_spec("digits", (1, 8, 8), 17), hidden=32, layers=5).to(args.device).eval()
    t_px, _ = best_time(lambda: px.sample_naive(args.n, generator=torch.Generator().manual_seed(1)), args.repeats)
    print(f"{'pixelcnn digits (naive only, 64 passes)':40s} naive {t_px:8.3f}s")


if __name__ == "__main__":
    main()
