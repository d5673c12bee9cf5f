"""Run logging: ``metrics.jsonl``, TensorBoard scalars and a progress bar."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm


class RunLogger:
    """Appends ``{"step": N, "time": s, **values}`` lines to ``RUN/metrics.jsonl``, writes the
    same scalars to TensorBoard under ``RUN/tb`` and shows the latest losses on a bar."""

    def __init__(self, run_dir: Path, *, total: int, initial: int = 0, progress: bool = True):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.t0 = time.time()
        self.name, self.total, self.step = Path(run_dir).name, total, initial
        self.last: dict[str, float] = {}
        # no terminal (CI logs, nohup): a plain progress line every ~10% of the run
        self.lines = progress and not sys.stderr.isatty()
        self.every = max(1, (total - initial) // 10)
        self.bar = tqdm(total=total, initial=initial, disable=None if progress else True,  # None: off when stderr is not a terminal (CI logs)
                         desc=Path(run_dir).name,
                        dynamic_ncols=True, leave=False)
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(Path(run_dir) / "tb"))
        except ImportError:  # tensorboard missing: keep metrics.jsonl only
            self.tb = None

    def scalars(self, step: int, values: dict[str, float]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, "time": round(time.time() - self.t0, 3), **values}) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)
        short = {k.split("/")[0][:3] + "/" + k.split("/")[-1][:6]: f"{v:.3g}" for k, v in values.items()
                 if k.endswith("loss") or k.startswith("eval/")}
        self.bar.set_postfix(short, refresh=False)
        self.last = {k: v for k, v in values.items() if k.endswith("loss")}

    def advance(self) -> None:
        self.bar.update(1)
        self.step += 1
        if self.lines and (self.step % self.every == 0 or self.step == self.total):
            losses = " ".join(f"{k}={v:.4g}" for k, v in self.last.items())
            print(f"{self.name}: step {self.step}/{self.total} ({100 * self.step / max(1, self.total):.0f}%), "
                  f"{time.time() - self.t0:.0f} s {losses}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()
        if self.tb is not None:
            self.tb.close()
