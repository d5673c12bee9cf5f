"""Scripted raters that take a HYPE study over HTTP (``genlab hype simulate URL``).

They exercise the real server (rater creation, images, answers, concurrency) and are
**labelled simulated** in the database and in every report, CSV and comparison: they
test the pipeline and say nothing about human perception.

A simulated rater is created through ``POST /api/start {"simulated": true}`` with the
admin token, then loops: read its state (``GET /api/r/<id>``), fetch the current image,
decide, and post the answer as JSON. Two observers decide:

* ``oracle`` (default): reads the answer key (``/admin/api/truth``, given for simulated
  raters only) and is right with probability ``accuracy``;
* ``nn``: looks only at the pixels: an image is "real" when its nearest neighbour among the
  real training images of ``real`` (a dataset name or run directory) is closer than the
  ``accuracy`` quantile of such distances among real images themselves (so it accepts about
  that share of real images); fakes far from all real data are caught. Its answers depend on
  how realistic each model's images are.

Under HYPE-time both perceive an image only with probability ``1 - exp(-t / tau_ms)`` at
exposure ``t`` and guess otherwise, so the staircase has something to find: the oracle's
75%-correct exposure is ``t* = -tau_ms * ln(1 - 0.25 / (accuracy - 0.5))`` (for accuracy >
0.75; below that the staircase runs up to its maximum).
"""

from __future__ import annotations

import io
import json
import math
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

OBSERVERS = ("oracle", "nn")


class SimulationError(RuntimeError):
    """The server refused a scripted rater's request (status and message)."""


def _request(method: str, url: str, body: Any = None, token: str | None = None, timeout: float = 60.0):
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if token:
        headers["X-Admin-Token"] = token
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return raw if resp.headers.get_content_type() != "application/json" else json.loads(raw)
    except urllib.error.HTTPError as e:
        try:
            msg = json.loads(e.read()).get("error", "")
        except (ValueError, AttributeError):
            msg = ""
        raise SimulationError(f"{method} {url}: HTTP {e.code} {msg}".strip()) from None


def perceive_probability(exposure_ms: float | None, tau_ms: float) -> float:
    """Chance that the simulated observer perceives an image shown for ``exposure_ms``
    (``None``: unlimited time -> 1)."""
    if exposure_ms is None:
        return 1.0
    return 1.0 - math.exp(-float(exposure_ms) / tau_ms)


def oracle_time_threshold(accuracy: float, tau_ms: float, target: float = 0.75) -> float:
    """The exposure at which the oracle is right with probability ``target``:
    ``0.5 + (accuracy - 0.5) * (1 - exp(-t / tau)) = target``; ``inf`` if never."""
    need = (target - 0.5) / (accuracy - 0.5) if accuracy > 0.5 else math.inf
    return -tau_ms * math.log(1.0 - need) if need < 1 else math.inf


@dataclass
class NearestNeighbourObserver:
    """Judges pixels: "real" when the nearest real training image is within ``threshold``
    (Euclidean distance on [0, 1] pixels)."""

    reference: np.ndarray  # (N, D) in [0, 1]
    shape: tuple[int, int]
    threshold: float

    @classmethod
    def fit(cls, real: str, accuracy: float, *, seed: int = 0) -> NearestNeighbourObserver:
        """Reference: the training split of ``real``; threshold: the ``accuracy`` quantile
        of each real image's distance to its nearest other real image."""
        from genlab.human.images import load_real, to_uint8

        train, spec = load_real(real, seed=seed, split="train")
        u8 = to_uint8(train, levels=spec.levels, shift=spec.shift, scale=spec.scale)
        ref = u8.reshape(len(u8), -1).astype(np.float64) / 255.0
        d = _nn_dist(ref, ref, exclude_self=True)
        return cls(ref, tuple(u8.shape[1:3]), float(np.quantile(d, accuracy)))

    def looks_real(self, png: bytes) -> bool:
        with Image.open(io.BytesIO(png)) as im:
            a = np.asarray(im)
        k = a.shape[0] // self.shape[0]
        small = a[k // 2::k, k // 2::k][: self.shape[0], : self.shape[1]]
        return bool(_nn_dist(small.reshape(1, -1).astype(np.float64) / 255.0, self.reference)[0] <= self.threshold)


def _nn_dist(x: np.ndarray, ref: np.ndarray, exclude_self: bool = False) -> np.ndarray:
    d2 = (x ** 2).sum(1)[:, None] + (ref ** 2).sum(1)[None, :] - 2 * x @ ref.T
    if exclude_self:
        np.fill_diagonal(d2, np.inf)
    return np.sqrt(np.maximum(d2.min(1), 0.0))


@dataclass
class RaterLog:
    """What one scripted rater sent: ``answers[i] = (idx, answer)`` in order, the server's
    final ``state``."""

    rater: str
    state: str = ""
    answers: list[tuple[int, str]] = field(default_factory=list)
    error: str | None = None


def run_rater(url: str, rid: str, *, token: str, rng: np.random.Generator, accuracy: float, tau_ms: float,
              observer: NearestNeighbourObserver | None = None, max_answers: int | None = None,
              log: RaterLog | None = None) -> RaterLog:
    """Answer as rater ``rid`` until the study ends for them (or ``max_answers``); every
    answer the server accepted is appended to ``log`` as it is sent."""
    log = log if log is not None else RaterLog(rid)
    while max_answers is None or len(log.answers) < max_answers:
        st = _request("GET", f"{url}/api/r/{rid}")
        log.state = st["state"]
        if st["state"] not in ("qualification", "study"):
            break
        png = _request("GET", url + st["image_url"])
        perceived = rng.random() < perceive_probability(st.get("exposure_ms"), tau_ms)
        if not perceived:
            ans = "real" if rng.random() < 0.5 else "fake"
        elif observer is not None:
            ans = "real" if observer.looks_real(png) else "fake"
        else:
            truth = _request("GET", f"{url}/admin/api/truth/{rid}/{st['idx']}", token=token)["truth"]
            right = rng.random() < accuracy
            ans = truth if right else ("fake" if truth == "real" else "real")
        res = _request("POST", f"{url}/r/{rid}/answer",
                       {"idx": st["idx"], "answer": ans, "response_ms": float(rng.gamma(4.0, 250.0))})
        log.answers.append((st["idx"], ans))
        log.state = res["state"]
    return log


def simulate(url: str, *, raters: int, accuracy: float, seed: int = 0, token: str, observer: str = "oracle",
             real: str | None = None, tau_ms: float = 150.0, max_answers: int | None = None) -> list[RaterLog]:
    """Run ``raters`` scripted raters against the server at ``url``, all at once (one
    thread each). Raters are created one after another first, so rater ``k`` of this call
    always uses ``numpy.random.default_rng([seed, k])``. Returns their logs; a rater whose
    request was refused has ``error`` set."""
    url = url.rstrip("/")
    if isinstance(raters, bool) or not isinstance(raters, int) or raters < 1:
        raise ValueError(f"--raters must be a whole number >= 1, got {raters!r}")
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"--accuracy must be in [0, 1], got {accuracy}")
    if not tau_ms > 0:
        raise ValueError(f"--tau-ms must be > 0, got {tau_ms}")
    if observer not in OBSERVERS:
        raise ValueError(f"--observer must be one of {OBSERVERS}, got {observer!r}")
    nn = None
    if observer == "nn":
        if not real:
            raise ValueError("--observer nn needs --real DATA (the real data it compares images with)")
        nn = NearestNeighbourObserver.fit(real, accuracy, seed=seed)
    ids = [_request("POST", f"{url}/api/start", {"simulated": True}, token=token)["rater"] for _ in range(raters)]
    logs = [RaterLog(rid) for rid in ids]

    def work(k: int) -> None:
        try:
            run_rater(url, ids[k], token=token, rng=np.random.default_rng([seed, k]), accuracy=accuracy,
                      tau_ms=tau_ms, observer=nn, max_answers=max_answers, log=logs[k])
        except (SimulationError, OSError) as e:
            logs[k].error = str(e)

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(raters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return logs
