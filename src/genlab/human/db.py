"""The SQLite store of a HYPE study: its images, raters, their planned trials and every judgement.

One file holds one study. Nothing about raters lives in server memory: each request opens
its own connection, and a rater's whole state (where they are, their exposure time, whether
they passed qualification) is derived from the database, so a server killed and restarted
on the same file carries on where it stopped.

Tables:

* ``meta``: ``config`` (the :class:`StudyConfig` as JSON), ``admin_token``, ``schema``.
* ``models``: the generators compared (``name``, ``origin``: run directory or array file).
* ``images``: every PNG shown (``pool`` ``qualification``/``study``, ``source`` ``real`` or a
  model name, ``is_real``).
* ``raters``: anonymous random ``id``, ``number`` (seeds their plan), ``simulated`` (1 for a
  scripted rater), ``state`` (``qualification`` -> ``study`` -> ``done``, or ``failed``),
  ``position`` (how many trials they answered).
* ``trials``: each rater's plan, made when they arrive: ``(rater_id, idx)`` -> phase, block,
  model, image, truth. Qualification first, then the study blocks.
* ``judgements``: ``(rater_id, idx)`` -> ``answer`` (``real``/``fake``), ``correct``, the
  ``exposure_ms`` the server set (HYPE-time), the client's ``response_ms`` and ``shown_ms``,
  ``simulated``, time.

A judgement is inserted in the same transaction (``BEGIN IMMEDIATE``) as the rater's new
``position``/``state``; the database is in WAL mode with ``synchronous=FULL``, so a committed
judgement survives the server being killed. A request that fails validation raises
:class:`RequestError` and changes nothing.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genlab.human.protocol import Staircase

SCHEMA = 1
PROTOCOLS = ("infinity", "time")
ANSWERS = ("real", "fake")
STATES = ("qualification", "study", "failed", "done")
MAX_RESPONSE_MS = 24 * 3600 * 1000.0

_DDL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE models (name TEXT PRIMARY KEY, origin TEXT NOT NULL, position INTEGER NOT NULL);
CREATE TABLE images (
    id INTEGER PRIMARY KEY,
    pool TEXT NOT NULL CHECK (pool IN ('qualification', 'study')),
    source TEXT NOT NULL,
    is_real INTEGER NOT NULL CHECK (is_real IN (0, 1)),
    png BLOB NOT NULL);
CREATE TABLE raters (
    id TEXT PRIMARY KEY,
    number INTEGER NOT NULL UNIQUE,
    simulated INTEGER NOT NULL CHECK (simulated IN (0, 1)),
    state TEXT NOT NULL CHECK (state IN ('qualification', 'study', 'failed', 'done')),
    position INTEGER NOT NULL DEFAULT 0,
    n_trials INTEGER NOT NULL,
    created REAL NOT NULL);
CREATE TABLE trials (
    rater_id TEXT NOT NULL REFERENCES raters(id),
    idx INTEGER NOT NULL,
    phase TEXT NOT NULL CHECK (phase IN ('qualification', 'study')),
    block INTEGER,
    model TEXT,
    image_id INTEGER NOT NULL REFERENCES images(id),
    is_real INTEGER NOT NULL,
    PRIMARY KEY (rater_id, idx));
CREATE TABLE judgements (
    rater_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    answer TEXT NOT NULL CHECK (answer IN ('real', 'fake')),
    correct INTEGER NOT NULL CHECK (correct IN (0, 1)),
    exposure_ms INTEGER,
    response_ms REAL,
    shown_ms REAL,
    simulated INTEGER NOT NULL CHECK (simulated IN (0, 1)),
    created REAL NOT NULL,
    PRIMARY KEY (rater_id, idx),
    FOREIGN KEY (rater_id, idx) REFERENCES trials(rater_id, idx));
"""


class RequestError(Exception):
    """A rejected request: ``status`` (an HTTP 4xx code) and a message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class StudyConfig:
    """How a study runs (saved in the database; fixed for its life).

    ``protocol``: ``"infinity"`` (HYPE-infinity) or ``"time"`` (HYPE-time).
    ``block_size``: images per block, half real and half fake (default 100 for infinity,
    150 for time, as in the paper). ``blocks``: blocks per model for each rater (default 1
    for infinity, 3 staircases for time). ``qual_size``: qualification images, half real
    and half fake with the fakes spread evenly over the models (default 100; 0: none).
    ``qual_threshold``: a rater qualifies with at least this share right on the real *and*
    on the fake qualification images (paper: 0.65). ``feedback``: tell the rater after each
    study answer whether it was right (default: on for time, as in the paper; off for
    infinity). ``staircase``: HYPE-time's ladder. ``countdown_ms``: HYPE-time shows a 3-2-1
    countdown before each timed image, each number for this long (paper: 500). ``px``:
    displayed image size (longer side, an integer multiple of the data's). ``seed``: seeds
    every rater's plan.
    """

    protocol: str = "infinity"
    block_size: int | None = None
    blocks: int | None = None
    qual_size: int = 100
    qual_threshold: float = 0.65
    feedback: bool | None = None
    staircase: Staircase = field(default_factory=Staircase)
    countdown_ms: int = 500
    px: int = 128
    seed: int = 0

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        time_ = self.protocol == "time"
        if self.block_size is None:
            object.__setattr__(self, "block_size", 150 if time_ else 100)
        if self.blocks is None:
            object.__setattr__(self, "blocks", 3 if time_ else 1)
        if self.feedback is None:
            object.__setattr__(self, "feedback", time_)
        for key, lo in (("block_size", 2), ("blocks", 1), ("qual_size", 0), ("countdown_ms", 0), ("px", 8)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{key} must be a whole number >= {lo}, got {v!r}")
        for key in ("block_size", "qual_size"):
            if getattr(self, key) % 2:
                raise ValueError(f"{key} must be even (half real, half fake images), got {getattr(self, key)}")
        if not 0.0 <= float(self.qual_threshold) <= 1.0:
            raise ValueError(f"qual_threshold must be in [0, 1], got {self.qual_threshold}")
        if isinstance(self.staircase, dict):
            object.__setattr__(self, "staircase", Staircase(**self.staircase))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["staircase"] = self.staircase.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StudyConfig:
        return cls(**{**d, "staircase": Staircase(**d["staircase"])})


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection for one request: autocommit (transactions are explicit), foreign keys
    on, waits up to 30 s for a writer, ``synchronous=FULL``."""
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


class _Tx:
    """``with _Tx(conn):`` BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        return False


def has_study(path: str | Path) -> bool:
    """Whether ``path`` is a SQLite file holding a study."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return False
    return row is not None


def create_study(path: str | Path, config: StudyConfig, *, real_study: list[bytes], real_qual: list[bytes],
                 fakes: dict[str, tuple[str, list[bytes], list[bytes]]], admin_token: str | None = None) -> str:
    """Write a new study to ``path`` (which must not hold one) in one transaction.

    ``real_study``/``real_qual``: PNGs of real images for the study blocks and for
    qualification. ``fakes``: ``name -> (origin, study PNGs, qualification PNGs)``.
    Returns the admin token (``admin_token`` or a new random one).
    """
    path = Path(path)
    if has_study(path):
        raise ValueError(f"{path} already holds a HYPE study; serve it as it is, or choose a new --db file")
    if path.exists() and path.stat().st_size > 0:
        raise ValueError(f"{path} exists and is not a HYPE study; choose a new --db file")
    if not fakes:
        raise ValueError("a study needs at least one model (RUN directories or --fake NAME=ARRAY.npy)")
    for name in fakes:
        if not isinstance(name, str) or not name.strip() or name == "real" or len(name) > 100 \
                or not name.isprintable():
            raise ValueError(f"model name {name!r} is not allowed: give 1..100 printable characters, not 'real'")
    half, q_half, m = config.block_size // 2, config.qual_size // 2, len(fakes)
    if len(real_study) < half:
        raise ValueError(f"{len(real_study)} real study images but a block needs {half}; use a smaller --block-size "
                         "or more real data")
    if len(real_qual) < q_half:
        raise ValueError(f"{len(real_qual)} real qualification images but qualification needs {q_half}; use a "
                         "smaller --qual-size or more real data")
    for name, (_, study, qual) in fakes.items():
        if len(study) < half:
            raise ValueError(f"model {name!r} has {len(study)} study images but a block needs {half}")
        if len(qual) < -(-q_half // m):
            raise ValueError(f"model {name!r} has {len(qual)} qualification images; needs {-(-q_half // m)}")
    token = admin_token or secrets.token_urlsafe(18)
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = path.exists()
    conn = connect(path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        with _Tx(conn):
            for stmt in filter(str.strip, _DDL.split(";")):  # executescript would COMMIT mid-way
                conn.execute(stmt)
            meta = {"schema": str(SCHEMA), "config": json.dumps(config.to_dict()), "admin_token": token,
                    "created": str(time.time())}
            conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
            conn.executemany("INSERT INTO images (pool, source, is_real, png) VALUES (?, 'real', 1, ?)",
                             [("study", p) for p in real_study] + [("qualification", p) for p in real_qual])
            for pos, (name, (origin, study, qual)) in enumerate(fakes.items()):
                conn.execute("INSERT INTO models VALUES (?, ?, ?)", (name, origin, pos))
                conn.executemany("INSERT INTO images (pool, source, is_real, png) VALUES (?, ?, 0, ?)",
                                 [("study", name, p) for p in study] + [("qualification", name, p) for p in qual])
    except BaseException:
        conn.close()
        if not existed:  # leave no half-made file behind
            for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                p.unlink(missing_ok=True)
        raise
    conn.close()
    return token


@dataclass
class Study:
    """The fixed part of a study, read once from its database: config, models, image pools."""

    path: Path
    config: StudyConfig
    models: list[str]
    origins: dict[str, str]
    admin_token: str
    pools: dict[tuple[str, str], list[int]]  # (pool, source) -> image ids

    @classmethod
    def load(cls, path: str | Path) -> Study:
        path = Path(path)
        if not has_study(path):
            raise ValueError(f"{path} holds no HYPE study; create one with `genlab hype serve RUN... --real DATA "
                             f"--db {path}`")
        conn = connect(path)
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if int(meta.get("schema", 0)) != SCHEMA:
                raise ValueError(f"{path} has study schema {meta.get('schema')}; this genlab reads schema {SCHEMA}")
            rows = conn.execute("SELECT name, origin FROM models ORDER BY position").fetchall()
            pools: dict[tuple[str, str], list[int]] = {}
            for r in conn.execute("SELECT id, pool, source FROM images ORDER BY id"):
                pools.setdefault((r["pool"], r["source"]), []).append(r["id"])
        finally:
            conn.close()
        return cls(path, StudyConfig.from_dict(json.loads(meta["config"])), [r["name"] for r in rows],
                   {r["name"]: r["origin"] for r in rows}, meta["admin_token"], pools)

    @property
    def n_trials(self) -> int:
        c = self.config
        return c.qual_size + len(self.models) * c.blocks * c.block_size

    def plan(self, number: int) -> list[tuple[str, int | None, str | None, int, int]]:
        """The trials of rater ``number``: ``(phase, block, model, image_id, is_real)``.

        Qualification (half real; fakes spread evenly over the models), then one block per
        (model, repeat) in a random order, each half real and half fake, shuffled. Images
        are drawn without replacement within a rater while the pool allows, else within
        each block. Seeded by ``(config.seed, number)``."""
        c = self.config
        rng = np.random.default_rng([c.seed, number])
        half, q_half, m = c.block_size // 2, c.qual_size // 2, len(self.models)
        trials: list[tuple[str, int | None, str | None, int, int]] = []
        if q_half:
            qual = [(i, 1) for i in _draw(rng, self.pools[("qualification", "real")], q_half, 1)[0]]
            counts = np.full(m, q_half // m)
            counts[rng.choice(m, q_half % m, replace=False)] += 1
            for name, k in zip(self.models, counts):
                if k:
                    qual += [(i, 0) for i in _draw(rng, self.pools[("qualification", name)], int(k), 1)[0]]
            for j in rng.permutation(len(qual)):
                trials.append(("qualification", None, None, int(qual[j][0]), qual[j][1]))
        order = [(name, r) for name in self.models for r in range(c.blocks)]
        reals = iter(_draw(rng, self.pools[("study", "real")], half, len(order)))
        fakes = {name: iter(_draw(rng, self.pools[("study", name)], half, c.blocks)) for name in self.models}
        for b, j in enumerate(rng.permutation(len(order))):
            name = order[j][0]
            items = [(i, 1) for i in next(reals)] + [(i, 0) for i in next(fakes[name])]
            for k in rng.permutation(len(items)):
                trials.append(("study", b, name, int(items[k][0]), items[k][1]))
        return trials


def _draw(rng: np.random.Generator, pool: list[int], k: int, groups: int) -> list[list[int]]:
    """``groups`` lists of ``k`` ids from ``pool``: all distinct when the pool is large
    enough, else distinct within each list."""
    if len(pool) >= k * groups:
        ids = rng.choice(pool, k * groups, replace=False)
        return [list(ids[g * k:(g + 1) * k]) for g in range(groups)]
    return [list(rng.choice(pool, k, replace=False)) for _ in range(groups)]


# --- raters -------------------------------------------------------------------------------

def create_rater(conn: sqlite3.Connection, study: Study, *, simulated: bool = False) -> str:
    """A new anonymous rater with a fresh random id and their whole plan, in one transaction."""
    rid = secrets.token_urlsafe(12)
    with _Tx(conn):
        number = conn.execute("SELECT COALESCE(MAX(number), -1) + 1 FROM raters").fetchone()[0]
        plan = study.plan(number)
        state = "qualification" if study.config.qual_size else "study"
        conn.execute("INSERT INTO raters (id, number, simulated, state, position, n_trials, created) "
                     "VALUES (?, ?, ?, ?, 0, ?, ?)", (rid, number, int(simulated), state, len(plan), time.time()))
        conn.executemany("INSERT INTO trials VALUES (?, ?, ?, ?, ?, ?, ?)",
                         [(rid, i, *t) for i, t in enumerate(plan)])
    return rid


def _rater(conn: sqlite3.Connection, rid: str) -> sqlite3.Row:
    row = conn.execute("SELECT * FROM raters WHERE id = ?", (rid,)).fetchone()
    if row is None:
        raise RequestError(404, "unknown rater id; open the study's start page to get a new one")
    return row


def exposure_ms(conn: sqlite3.Connection, study: Study, rid: str, trial: sqlite3.Row) -> int | None:
    """HYPE-time exposure of a study trial, from the rater's earlier answers in its block
    (:meth:`Staircase.trace`); ``None`` for qualification or HYPE-infinity."""
    if study.config.protocol != "time" or trial["phase"] != "study":
        return None
    rows = conn.execute("SELECT j.correct FROM judgements j JOIN trials t ON t.rater_id = j.rater_id AND "
                        "t.idx = j.idx WHERE t.rater_id = ? AND t.phase = 'study' AND t.block = ? AND t.idx < ? "
                        "ORDER BY t.idx", (rid, trial["block"], trial["idx"])).fetchall()
    return study.config.staircase.trace([r["correct"] for r in rows])[-1]


def state(conn: sqlite3.Connection, study: Study, rid: str) -> dict[str, Any]:
    """What a rater sees now: ``state``, ``idx`` (the trial to answer next), ``total``,
    ``phase`` and the progress within it, ``exposure_ms`` (HYPE-time), ``last_correct``
    (feedback on the previous study answer, when the study gives feedback). Never the
    truth of the current image. Raises :class:`RequestError` (404) for an unknown id."""
    r = _rater(conn, rid)
    out: dict[str, Any] = {"rater": rid, "state": r["state"], "idx": r["position"], "total": r["n_trials"],
                           "protocol": study.config.protocol, "exposure_ms": None, "last_correct": None}
    q = study.config.qual_size
    if r["state"] in ("qualification", "study"):
        trial = conn.execute("SELECT * FROM trials WHERE rater_id = ? AND idx = ?", (rid, r["position"])).fetchone()
        out["phase"] = trial["phase"]
        out["phase_idx"] = r["position"] if trial["phase"] == "qualification" else r["position"] - q
        out["phase_total"] = q if trial["phase"] == "qualification" else r["n_trials"] - q
        out["exposure_ms"] = exposure_ms(conn, study, rid, trial)
    if study.config.feedback and r["position"] > q:
        last = conn.execute("SELECT correct FROM judgements WHERE rater_id = ? AND idx = ?",
                            (rid, r["position"] - 1)).fetchone()
        out["last_correct"] = bool(last["correct"]) if last is not None else None
    return out


def current_png(conn: sqlite3.Connection, rid: str, idx: int) -> bytes:
    """The PNG of trial ``idx``, only while it is the rater's current trial."""
    r = _rater(conn, rid)
    if r["state"] not in ("qualification", "study") or idx != r["position"]:
        raise RequestError(404, f"image {idx} is not this rater's current image (the current one is "
                                f"{r['position']})" if r["state"] in ("qualification", "study") else
                           "this rater has no image to judge")
    row = conn.execute("SELECT i.png FROM trials t JOIN images i ON i.id = t.image_id WHERE t.rater_id = ? AND "
                       "t.idx = ?", (rid, idx)).fetchone()
    return bytes(row["png"])


def parse_answer(body: Any) -> tuple[int, str, float | None, float | None]:
    """``(idx, answer, response_ms, shown_ms)`` from a request body (a mapping), or
    :class:`RequestError` (400) naming what is wrong."""
    if not isinstance(body, dict):
        raise RequestError(400, "the body must be a JSON object or a form with fields idx and answer")
    unknown = set(body) - {"idx", "answer", "response_ms", "shown_ms"}
    if unknown:
        raise RequestError(400, f"unknown field(s) {', '.join(sorted(map(str, unknown)))}; allowed: idx, answer, "
                                "response_ms, shown_ms")
    idx = body.get("idx")
    if isinstance(idx, str) and idx.strip().isdigit():
        idx = int(idx.strip())
    if isinstance(idx, bool) or not isinstance(idx, int) or idx < 0:
        raise RequestError(400, f"idx must be a whole number >= 0 (the trial being answered), got {idx!r}")
    answer = body.get("answer")
    if answer not in ANSWERS:
        raise RequestError(400, f"answer must be 'real' or 'fake', got {answer!r}")
    times = []
    for key in ("response_ms", "shown_ms"):
        v = body.get(key)
        if v in (None, ""):
            times.append(None)
            continue
        try:
            v = float(v) if not isinstance(v, bool) else None
        except (TypeError, ValueError):
            v = None
        if v is None or not np.isfinite(v) or not 0 <= v <= MAX_RESPONSE_MS:
            raise RequestError(400, f"{key} must be a number of milliseconds in [0, {MAX_RESPONSE_MS:.0f}], "
                                    f"got {body.get(key)!r}")
        times.append(v)
    return idx, answer, times[0], times[1]


def answer(conn: sqlite3.Connection, study: Study, rid: str, idx: int, ans: str, *, response_ms: float | None = None,
           shown_ms: float | None = None) -> dict[str, Any]:
    """Store rater ``rid``'s answer to trial ``idx`` and advance them, atomically.

    Rejected (:class:`RequestError`, nothing stored): an unknown rater (404), a rater who
    failed qualification (403) or finished (409), an answer to a trial already answered
    (409, a replay) or ahead of the current one (409, out of order). Returns
    ``{"idx", "correct", "state"}``; ``correct`` is only revealed when the study gives
    feedback (``None`` otherwise)."""
    if ans not in ANSWERS:
        raise RequestError(400, f"answer must be 'real' or 'fake', got {ans!r}")
    with _Tx(conn):
        r = _rater(conn, rid)
        if r["state"] == "failed":
            raise RequestError(403, "this rater did not pass qualification; no further answers are taken")
        if r["state"] == "done":
            raise RequestError(409, "this rater has finished the study; no further answers are taken")
        pos = r["position"]
        if idx < pos:
            raise RequestError(409, f"trial {idx} is already answered (a replay); the current trial is {pos}")
        if idx > pos:
            raise RequestError(409, f"trial {idx} is out of order; the current trial is {pos}")
        trial = conn.execute("SELECT * FROM trials WHERE rater_id = ? AND idx = ?", (rid, idx)).fetchone()
        exp = exposure_ms(conn, study, rid, trial)
        correct = int((ans == "real") == bool(trial["is_real"]))
        conn.execute("INSERT INTO judgements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (rid, idx, ans, correct, exp, response_ms, shown_ms, r["simulated"], time.time()))
        new_state = r["state"]
        q = study.config.qual_size
        if trial["phase"] == "qualification" and idx == q - 1:
            new_state = "study" if _qualifies(conn, rid, study.config.qual_threshold) else "failed"
        elif idx == r["n_trials"] - 1:
            new_state = "done"
        conn.execute("UPDATE raters SET position = ?, state = ? WHERE id = ?", (pos + 1, new_state, rid))
    show = study.config.feedback and trial["phase"] == "study"
    return {"idx": idx, "state": new_state, "correct": bool(correct) if show else None}


def _qualifies(conn: sqlite3.Connection, rid: str, threshold: float) -> bool:
    """At least ``threshold`` right on the real and on the fake qualification images."""
    rows = conn.execute("SELECT t.is_real, AVG(j.correct) AS acc FROM trials t JOIN judgements j ON "
                        "j.rater_id = t.rater_id AND j.idx = t.idx WHERE t.rater_id = ? AND t.phase = "
                        "'qualification' GROUP BY t.is_real", (rid,)).fetchall()
    return len(rows) == 2 and all(r["acc"] >= threshold - 1e-12 for r in rows)


def truth(conn: sqlite3.Connection, rid: str, idx: int) -> str:
    """``"real"``/``"fake"`` of a **simulated** rater's trial (the scripted rater's answer key)."""
    if not _rater(conn, rid)["simulated"]:
        raise RequestError(403, "the answer key is only given for simulated raters")
    return truth_unchecked(conn, rid, idx)


def truth_unchecked(conn: sqlite3.Connection, rid: str, idx: int) -> str:
    """``"real"``/``"fake"`` of any rater's trial (for analysis and tests; never served to raters)."""
    row = conn.execute("SELECT is_real FROM trials WHERE rater_id = ? AND idx = ?", (rid, idx)).fetchone()
    if row is None:
        raise RequestError(404, f"rater has no trial {idx}")
    return "real" if row["is_real"] else "fake"


# --- reading a study back -------------------------------------------------------------------

EXPORT_COLUMNS = ("rater_id", "rater_kind", "rater_state", "phase", "idx", "block", "model", "image_id", "truth",
                  "answer", "correct", "exposure_ms", "response_ms", "shown_ms", "answered_at")


def export_rows(conn: sqlite3.Connection) -> Iterable[tuple]:
    """Every judgement joined with its trial and rater, in :data:`EXPORT_COLUMNS` order;
    ``rater_kind`` is ``human`` or ``simulated``."""
    q = ("SELECT j.rater_id, CASE j.simulated WHEN 1 THEN 'simulated' ELSE 'human' END, r.state, t.phase, j.idx, "
         "t.block, t.model, t.image_id, CASE t.is_real WHEN 1 THEN 'real' ELSE 'fake' END, j.answer, j.correct, "
         "j.exposure_ms, j.response_ms, j.shown_ms, j.created FROM judgements j JOIN trials t ON "
         "t.rater_id = j.rater_id AND t.idx = j.idx JOIN raters r ON r.id = j.rater_id ORDER BY r.number, j.idx")
    return conn.execute(q)


def complete_blocks(conn: sqlite3.Connection) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Study blocks with every image judged, grouped by ``(group, model)`` where group is
    ``"human"`` or ``"simulated"``: each ``{"rater", "truths", "corrects", "exposures"}``
    in trial order."""
    rows = conn.execute("SELECT t.rater_id, t.idx, t.block, t.model, t.is_real, j.correct, j.exposure_ms, "
                        "r.simulated FROM trials t JOIN raters r ON r.id = t.rater_id LEFT JOIN judgements j ON "
                        "j.rater_id = t.rater_id AND j.idx = t.idx WHERE t.phase = 'study' "
                        "ORDER BY r.number, t.idx").fetchall()
    blocks: dict[tuple[str, int], dict[str, Any]] = {}
    for r in rows:
        b = blocks.setdefault((r["rater_id"], r["block"]), {
            "rater": r["rater_id"], "model": r["model"], "group": "simulated" if r["simulated"] else "human",
            "truths": [], "corrects": [], "exposures": [], "complete": True})
        if r["correct"] is None:
            b["complete"] = False
            continue
        b["truths"].append(bool(r["is_real"]))
        b["corrects"].append(bool(r["correct"]))
        b["exposures"].append(r["exposure_ms"])
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for b in blocks.values():
        if b["complete"]:
            out.setdefault((b["group"], b["model"]), []).append(b)
    return out


def progress(conn: sqlite3.Connection) -> dict[str, Any]:
    """Counts for the admin page: raters per (kind, state), judgements, and per-rater rows."""
    raters = [dict(r) for r in conn.execute("SELECT id, number, simulated, state, position, n_trials, created FROM "
                                            "raters ORDER BY number")]
    counts: dict[str, dict[str, int]] = {"human": {s: 0 for s in STATES}, "simulated": {s: 0 for s in STATES}}
    for r in raters:
        counts["simulated" if r["simulated"] else "human"][r["state"]] += 1
    n = conn.execute("SELECT simulated, COUNT(*) FROM judgements GROUP BY simulated").fetchall()
    judged = {"human": 0, "simulated": 0}
    for sim, c in n:
        judged["simulated" if sim else "human"] = c
    return {"raters": raters, "counts": counts, "judgements": judged}
