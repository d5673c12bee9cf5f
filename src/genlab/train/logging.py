"""Run logging: ``metrics.jsonl``, TensorBoard scalars and a progress bar."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tqdm.auto import tqdm


class RunLogger:
    """Appends ``{"step": N, "time": s, **values}`` lines to ``RUN/metrics.jsonl``, writes the
    same scalars to TensorBoard under ``RUN/tb`` and shows the latest losses on a bar."""

    def __init__(self, run_dir: Path, *, total: int, initial: int = 0, progress: bool = True):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.t0 = time.time()
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

    def note(self, step: int, record: dict) -> None:
        """Append a non-scalar record (e.g. the keys changed on resume) to ``metrics.jsonl``."""
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, "time": round(time.time() - self.t0, 3), **record}) + "\n")

    def advance(self) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
        if self.tb is not None:
            self.tb.close()
