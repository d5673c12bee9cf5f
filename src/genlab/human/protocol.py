"""The HYPE protocols: the adaptive staircase, the scores and their bootstrap intervals.

HYPE, Human eYe Perceptual Evaluation: Zhou, Gordon, Krishna, Narcomey, Fei-Fei and
Bernstein, "HYPE: A Benchmark for Human eYe Perceptual Evaluation of Generative Models",
NeurIPS 2019, arXiv 1904.01121. Two variants:

* **HYPE-time** (:class:`Staircase`, :func:`modal_exposure`, :func:`hype_time_scores`):
  each image is flashed for an exposure time set by an adaptive staircase that starts at
  500 ms and stays within [100 ms, 1000 ms]; a correct answer shortens the next exposure
  by 10 ms, a wrong one lengthens it by 30 ms. With steps of 1 down and 3 up the staircase
  settles where the rater is right 75% of the time (Kaernbach's weighted up-down rule:
  ``p * down = (1 - p) * up`` gives ``p = up / (up + down) = 0.75``), the "3-up/1-down
  ... 75% accuracy threshold" of the paper. A rater's score for a model is the mean over
  their blocks (staircases) of each block's **modal** exposure time; the model's score is
  the mean over raters, in milliseconds (higher: the fakes need longer looks to be told
  from real images).
* **HYPE-infinity** (:func:`hype_inf_scores`): unlimited viewing time, half real and half
  fake images; the score is the error rate in percent: images misjudged (fakes called real
  plus reals called fake) over images judged, pooled over a model's raters. 50% means
  fakes and reals are indistinguishable; above 50% fakes look more real than reals.

Both come with a 95% **bootstrap** confidence interval over raters (:func:`bootstrap_ci`):
raters are resampled with replacement, seeded, and the score recomputed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Staircase:
    """HYPE-time's exposure ladder (arXiv 1904.01121, the HYPE-time method).

    ``start_ms``: exposure of a block's first image (paper: 500). ``min_ms``/``max_ms``:
    the range (paper: 100 and 1000; 100 ms is the minimum exposure). ``down_ms``: the
    exposure drops by this after a correct answer (harder); ``up_ms``: it rises by this
    after a wrong one (easier). Paper: 10 and 30, converging to 75% correct.
    """

    start_ms: int = 500
    min_ms: int = 100
    max_ms: int = 1000
    down_ms: int = 10
    up_ms: int = 30

    def __post_init__(self):
        for key in ("start_ms", "min_ms", "max_ms", "down_ms", "up_ms"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"staircase {key} must be a positive whole number of milliseconds, got {v!r}")
        if not self.min_ms <= self.start_ms <= self.max_ms:
            raise ValueError(f"staircase needs min_ms <= start_ms <= max_ms; got {self.min_ms}, {self.start_ms}, "
                             f"{self.max_ms}")

    @property
    def target_accuracy(self) -> float:
        """The accuracy at which the staircase is in equilibrium: ``up / (up + down)``."""
        return self.up_ms / (self.up_ms + self.down_ms)

    def step(self, exposure_ms: int, correct: bool) -> int:
        """The next exposure after an answer at ``exposure_ms``."""
        nxt = exposure_ms - self.down_ms if correct else exposure_ms + self.up_ms
        return int(min(self.max_ms, max(self.min_ms, nxt)))

    def trace(self, corrects: Sequence[bool]) -> list[int]:
        """Exposures of a block, one more than answers: ``trace(c)[i]`` is the exposure
        of image ``i`` given the answers ``c[:i]``; the last entry is the next image's."""
        out = [self.start_ms]
        for c in corrects:
            out.append(self.step(out[-1], bool(c)))
        return out

    def to_dict(self) -> dict[str, int]:
        return {k: int(getattr(self, k)) for k in ("start_ms", "min_ms", "max_ms", "down_ms", "up_ms")}


def modal_exposure(exposures: Sequence[float]) -> float:
    """The most frequent exposure of a block (ties: the mean of the tied values)."""
    if len(exposures) == 0:
        raise ValueError("modal_exposure of an empty block")
    values, counts = np.unique(np.asarray(exposures, dtype=float), return_counts=True)
    return float(values[counts == counts.max()].mean())


def bootstrap_ci(per_rater: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray], *, n_boot: int = 2000,
                 seed: int = 0, level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap interval over raters.

    ``per_rater``: ``(R, k)`` numbers per rater; ``statistic`` maps a stack of resampled
    studies ``(B, R, k)`` to ``(B,)`` scores. Raters are drawn with replacement from a
    ``numpy.random.default_rng(seed)``. ``None`` with fewer than two raters.
    """
    per_rater = np.asarray(per_rater, dtype=float)
    if per_rater.ndim != 2:
        raise ValueError(f"per_rater must be (raters, k), got shape {per_rater.shape}")
    r = per_rater.shape[0]
    if r < 2:
        return None
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, r, size=(n_boot, r))
    stats = statistic(per_rater[idx])
    alpha = (1 - level) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return float(lo), float(hi)


def _pooled_error(x: np.ndarray) -> np.ndarray:
    """``(..., R, 2)`` of (wrong, judged) per rater -> pooled error rate in percent."""
    return 100.0 * x[..., 0].sum(-1) / x[..., 1].sum(-1)


@dataclass
class Score:
    """One model's score from one group of raters (``"human"`` or ``"simulated"``)."""

    value: float
    ci: tuple[float, float] | None
    raters: int
    blocks: int
    judgements: int
    details: dict[str, float]

    def to_dict(self) -> dict:
        return {"value": self.value, "ci": list(self.ci) if self.ci else None, "raters": self.raters,
                "blocks": self.blocks, "judgements": self.judgements, **self.details}


def hype_inf_scores(blocks: Sequence[tuple[str, Sequence[bool], Sequence[bool]]], *, n_boot: int = 2000,
                    seed: int = 0) -> Score | None:
    """HYPE-infinity of one model from complete blocks.

    ``blocks``: ``(rater, truths, corrects)`` per complete block, ``truths[i]`` True for a
    real image and ``corrects[i]`` whether the rater judged it right. Score: percent of
    images misjudged over all the model's blocks; ``fake_error``/``real_error``: percent
    of fakes judged real / reals judged fake. CI: bootstrap over raters.
    """
    if not blocks:
        return None
    per: dict[str, np.ndarray] = {}
    for rater, truths, corrects in blocks:
        t = np.asarray(truths, dtype=bool)
        wrong = ~np.asarray(corrects, dtype=bool)
        row = np.array([[wrong.sum(), t.size], [wrong[~t].sum(), (~t).sum()], [wrong[t].sum(), t.sum()]], float)
        per[rater] = per.get(rater, 0) + row
    stack = np.stack(list(per.values()))  # (R, 3, 2)
    total = stack.sum(0)
    value = float(100.0 * total[0, 0] / total[0, 1])
    ci = bootstrap_ci(stack[:, 0, :], _pooled_error, n_boot=n_boot, seed=seed)
    details = {"fake_error": float(100.0 * total[1, 0] / max(total[1, 1], 1)),
               "real_error": float(100.0 * total[2, 0] / max(total[2, 1], 1))}
    return Score(value, ci, len(per), len(blocks), int(total[0, 1]), details)


def hype_time_scores(blocks: Sequence[tuple[str, Sequence[float]]], *, n_boot: int = 2000,
                     seed: int = 0) -> Score | None:
    """HYPE-time of one model from complete blocks.

    ``blocks``: ``(rater, exposures)`` per complete block, the exposure (ms) of each image
    shown in it. A rater's value is the mean of their blocks' modal exposures; the score
    is the mean over raters (ms). CI: bootstrap over raters.
    """
    if not blocks:
        return None
    per: dict[str, list[float]] = {}
    n = 0
    for rater, exposures in blocks:
        per.setdefault(rater, []).append(modal_exposure(exposures))
        n += len(exposures)
    values = np.array([[np.mean(v)] for v in per.values()])
    ci = bootstrap_ci(values, lambda x: x[..., 0].mean(-1), n_boot=n_boot, seed=seed)
    return Score(float(values.mean()), ci, len(per), len(blocks), n, {})
