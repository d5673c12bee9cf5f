"""HYPE (arXiv 1904.01121) as a web app: protocol mathematics, the SQLite store, request
validation, concurrency over loopback, kill -9 and restart, the CLI and `genlab compare`,
and a real rater in Chromium driven by Selenium (scripts/install-browser.sh installs
chromium and chromium-driver; GENLAB_SKIP_BROWSER=1 skips the browser tests instead of
failing them)."""

from __future__ import annotations

import http.client as http_client
import io
import json
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from genlab.human import db as hdb
from genlab.human.images import png_bytes, to_uint8
from genlab.human.protocol import Staircase, bootstrap_ci, hype_inf_scores, hype_time_scores, modal_exposure

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


# --- helpers ---------------------------------------------------------------------------------

def _pngs(n: int, seed: int, px: int = 32) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [png_bytes(rng.integers(0, 256, (8, 8), dtype=np.uint8), px) for _ in range(n)]


def make_study(path: Path, *, models=("m1", "m2"), pool: int = 12, real: int = 16, **cfg) -> hdb.Study:
    """A study with random 8x8 images (fast: no dataset, no torch)."""
    cfg.setdefault("qual_size", 4)
    cfg.setdefault("block_size", 6)
    cfg.setdefault("px", 32)
    config = hdb.StudyConfig(**cfg)
    fakes = {m: (f"/nowhere/{m}", _pngs(pool, 10 + i), _pngs(4, 20 + i)) for i, m in enumerate(models)}
    hdb.create_study(path, config, real_study=_pngs(real, 1), real_qual=_pngs(real, 2), fakes=fakes,
                     admin_token="admintoken")
    return hdb.Study.load(path)


def truth_of(path: Path, rid: str, idx: int) -> str:
    conn = hdb.connect(path)
    try:
        return hdb.truth_unchecked(conn, rid, idx)
    finally:
        conn.close()


def rows(path: Path, sql: str, args=()) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def judgements(path: Path) -> set[tuple[str, int, str]]:
    return set(rows(path, "SELECT rater_id, idx, answer FROM judgements"))


def http(method: str, url: str, body=None, headers=None, raw: bytes | None = None, ctype: str | None = None):
    """(status, parsed JSON or bytes) without raising on 4xx."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    h = dict(headers or {})
    if data is not None:
        h["Content-Type"] = ctype or "application/json"
    req = urllib.request.Request(url, data=data, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            payload, status, kind = r.read(), r.status, r.headers.get_content_type()
    except urllib.error.HTTPError as e:
        payload, status, kind = e.read(), e.code, e.headers.get_content_type()
    return status, (json.loads(payload) if kind == "application/json" else payload)


# --- protocol ---------------------------------------------------------------------------------

def test_staircase_moves_as_specified():
    s = Staircase()  # paper: start 500, range [100, 1000], -10 ms after right, +30 ms after wrong
    assert (s.start_ms, s.min_ms, s.max_ms, s.down_ms, s.up_ms) == (500, 100, 1000, 10, 30)
    assert s.target_accuracy == pytest.approx(0.75)
    assert s.trace([True, True, False, True]) == [500, 490, 480, 510, 500]
    assert s.trace([True] * 45)[-1] == 100  # clamped at the minimum exposure
    assert s.trace([False] * 20)[-1] == 1000  # and at the maximum
    assert s.step(100, True) == 100 and s.step(995, False) == 1000
    with pytest.raises(ValueError, match="min_ms <= start_ms"):
        Staircase(start_ms=50)
    with pytest.raises(ValueError, match="positive whole number"):
        Staircase(up_ms=0)


def test_modal_exposure():
    assert modal_exposure([500, 490, 480, 480, 480, 510]) == 480
    assert modal_exposure([500, 490, 500, 490]) == 495  # ties: the mean of the tied values
    with pytest.raises(ValueError):
        modal_exposure([])


def test_staircase_settles_at_the_75_percent_exposure():
    """An observer right with probability 0.5 + 0.45 (1 - exp(-t / 150)) is 75% right at
    t* = -150 ln(1 - 0.25/0.45) = 88 ms; with the floor at 50 ms the staircase's modal
    exposures must gather around t* (not at the start, not at the floor)."""
    from genlab.human.simulate import oracle_time_threshold

    s = Staircase(min_ms=50)
    t_star = oracle_time_threshold(0.95, 150.0)
    assert t_star == pytest.approx(-150 * math.log(1 - 0.25 / 0.45))
    rng = np.random.default_rng(0)
    modes = []
    for _ in range(60):
        t, shown = s.start_ms, []
        for _ in range(300):
            shown.append(t)
            p = 0.5 + 0.45 * (1 - math.exp(-t / 150.0))
            t = s.step(t, rng.random() < p)
        modes.append(modal_exposure(shown[100:]))
    assert abs(np.median(modes) - t_star) < 25, (np.median(modes), t_star)


def test_bootstrap_ci_covers_the_true_error_rate():
    """Raters with accuracies drawn around 0.7 (true population error 30%): the 95% interval
    of HYPE-infinity covers 30% in about 95% of 200 simulated studies."""
    rng = np.random.default_rng(1)
    hits, widths = 0, []
    for rep in range(200):
        acc = rng.beta(70, 30, size=15)  # mean 0.7
        blocks = []
        for r in range(15):
            truths = np.arange(40) % 2 == 0
            blocks.append((f"r{r}", truths, rng.random(40) < acc[r]))
        s = hype_inf_scores(blocks, n_boot=1000, seed=rep)
        hits += s.ci[0] <= 30.0 <= s.ci[1]
        widths.append(s.ci[1] - s.ci[0])
    assert 0.88 <= hits / 200 <= 0.995, hits
    assert 5 < np.mean(widths) < 15


def test_bootstrap_ci_edge_cases():
    assert bootstrap_ci(np.array([[1.0]]), lambda x: x[..., 0].mean(-1)) is None  # one rater: no interval
    lo, hi = bootstrap_ci(np.array([[2.0], [2.0], [2.0]]), lambda x: x[..., 0].mean(-1))
    assert lo == hi == 2.0
    a = bootstrap_ci(np.arange(10.0)[:, None], lambda x: x[..., 0].mean(-1), seed=3)
    assert a == bootstrap_ci(np.arange(10.0)[:, None], lambda x: x[..., 0].mean(-1), seed=3)  # seeded
    assert 0 < a[0] < 4.5 < a[1] < 9


def test_images_same_path_for_real_and_fake():
    """Levels quantised (a continuous fake gets the data's 17 greys), nearest-neighbour blocks."""
    x = np.array([[[[0.0, 16.0], [8.4, 7.6]]], [[[-3.0, 99.0], [np.nan, 16.0]]]])
    u8 = to_uint8(x, levels=17, shift=8, scale=8)
    assert u8.tolist() == [[[0, 255], [128, 128]], [[0, 255], [0, 255]]]
    png = png_bytes(u8[0], 128)
    with Image.open(io.BytesIO(png)) as im:
        assert im.size == (128, 128) and im.mode == "L" and not im.info.get("dpi") and not im.text
        a = np.asarray(im)
    assert (a[:64, :64] == 0).all() and (a[:64, 64:] == 255).all() and (a[64:, :] == 128).all()
    rgb = to_uint8(np.stack([np.zeros((2, 2)), np.ones((2, 2)), -np.ones((2, 2))])[None], levels=None, shift=0,
                   scale=1)  # continuous data in [-1, 1], three channels
    assert rgb.shape == (1, 2, 2, 3) and rgb[0, 0, 0].tolist() == [128, 255, 0]
    with Image.open(io.BytesIO(png_bytes(rgb[0], 128))) as im:
        assert im.mode == "RGB" and im.size == (128, 128)


# --- the store: scores in closed form ---------------------------------------------------------------

def _answer_all(path: Path, study: hdb.Study, rid: str, rights: list[bool]) -> None:
    _answer_all_from(path, study, rid, 0, rights)


def _answer_all_from(path: Path, study: hdb.Study, rid: str, start: int, rights: list[bool]) -> None:
    conn = hdb.connect(path)
    try:
        for idx, right in enumerate(rights, start):
            t = hdb.truth_unchecked(conn, rid, idx)
            hdb.answer(conn, study, rid, idx, t if right else ("fake" if t == "real" else "real"))
    finally:
        conn.close()


def test_hype_inf_scores_closed_form(tmp_path):
    """3 complete raters + 1 partial on one model, blocks of 4 (2 real, 2 fake)."""
    path = tmp_path / "s.sqlite"
    study = make_study(path, models=("m",), qual_size=0, block_size=4)
    conn = hdb.connect(path)
    rids = [hdb.create_rater(conn, study) for _ in range(4)]
    truths = {rid: [hdb.truth_unchecked(conn, rid, i) for i in range(4)] for rid in rids}
    conn.close()

    def wrong_on(rid, kinds):  # rights list with one wrong answer per kind in kinds
        out, left = [], list(kinds)
        for t in truths[rid]:
            if t in left:
                left.remove(t)
                out.append(False)
            else:
                out.append(True)
        return out

    _answer_all(path, study, rids[0], [True] * 4)                   # 0 of 4 wrong
    _answer_all(path, study, rids[1], wrong_on(rids[1], ["fake"]))  # 1 fake called real
    _answer_all(path, study, rids[2], wrong_on(rids[2], ["real", "fake"]))
    _answer_all(path, study, rids[3], [False, False])               # partial block: not counted
    conn = hdb.connect(path)
    blocks = hdb.complete_blocks(conn)
    conn.close()
    bl = blocks[("human", "m")]
    assert len(bl) == 3
    s = hype_inf_scores([(b["rater"], b["truths"], b["corrects"]) for b in bl], n_boot=2000)
    assert s.value == pytest.approx(100 * 3 / 12)
    assert s.details["fake_error"] == pytest.approx(100 * 2 / 6)
    assert s.details["real_error"] == pytest.approx(100 * 1 / 6)
    assert (s.raters, s.blocks, s.judgements) == (3, 3, 12)
    assert 0.0 <= s.ci[0] < s.value < s.ci[1] <= 50.0  # within the per-rater range [0, 50]


def test_hype_time_scores_closed_form(tmp_path):
    """Staircase floor 480: rights R R R R W R give exposures 500 490 480 480 480 510 (mode
    480); W W R R R R give 500 530 560 550 540 530 (mode 530). Rater 1: (480 + 530)/2;
    rater 2 all right in both blocks: 500 490 480 480 480 480 (mode 480) twice."""
    path = tmp_path / "t.sqlite"
    stair = Staircase(start_ms=500, min_ms=480, max_ms=1000, down_ms=10, up_ms=30)
    study = make_study(path, models=("m",), qual_size=0, block_size=6, blocks=2, protocol="time", staircase=stair)
    conn = hdb.connect(path)
    r1, r2 = hdb.create_rater(conn, study), hdb.create_rater(conn, study)
    conn.close()
    _answer_all(path, study, r1, [True, True, True, True, False, True] + [False, False, True, True, True, True])
    _answer_all(path, study, r2, [True] * 11)
    conn = hdb.connect(path)
    st = hdb.state(conn, study, r2)  # HYPE-time: feedback on the last answer, the next exposure
    assert (st["idx"], st["phase"], st["last_correct"], st["exposure_ms"]) == (11, "study", True, 480)
    conn.close()
    _answer_all_from(path, study, r2, 11, [True])
    exposures = rows(path, "SELECT idx, exposure_ms FROM judgements WHERE rater_id = ? ORDER BY idx", (r1,))
    assert [e for _, e in exposures] == [500, 490, 480, 480, 480, 510, 500, 530, 560, 550, 540, 530]
    conn = hdb.connect(path)
    bl = hdb.complete_blocks(conn)[("human", "m")]
    conn.close()
    s = hype_time_scores([(b["rater"], b["exposures"]) for b in bl])
    assert s.value == pytest.approx(((480 + 530) / 2 + 480) / 2)
    assert (s.raters, s.blocks, s.judgements) == (2, 4, 24)
    assert s.ci[0] == pytest.approx(480) and s.ci[1] == pytest.approx(505)


def test_plan_is_balanced_seeded_and_differs_between_raters(tmp_path):
    study = make_study(tmp_path / "p.sqlite", qual_size=6, block_size=8, blocks=2)
    p0, p0b, p1 = study.plan(0), study.plan(0), study.plan(1)
    assert p0 == p0b and p0 != p1
    qual = [t for t in p0 if t[0] == "qualification"]
    assert len(qual) == 6 and sum(t[4] for t in qual) == 3
    study_trials = [t for t in p0 if t[0] == "study"]
    assert len(study_trials) == 2 * 2 * 8
    for b in range(4):
        blk = [t for t in study_trials if t[1] == b]
        assert len(blk) == 8 and sum(t[4] for t in blk) == 4 and len({t[2] for t in blk}) == 1
        assert len({t[3] for t in blk}) == 8  # no image twice in a block
    assert [t[4] for t in study_trials] != sorted(t[4] for t in study_trials)  # not reals first


# --- the web app: validation and blindness --------------------------------------------------------

@pytest.fixture
def client_study(tmp_path):
    from genlab.human.app import create_app

    path = tmp_path / "v.sqlite"
    study = make_study(path, qual_size=4, block_size=4, qual_threshold=0.5)
    app = create_app(path)
    return app.test_client(), path, study


def _snapshot(path: Path):
    return (rows(path, "SELECT * FROM judgements ORDER BY rater_id, idx"),
            rows(path, "SELECT id, state, position FROM raters ORDER BY number"))


def test_requests_are_validated_and_rejections_store_nothing(client_study):
    c, path, _study = client_study
    rid = c.post("/api/start", json={}).get_json()["rater"]
    assert c.post(f"/r/{rid}/answer", json={"idx": 0, "answer": truth_of(path, rid, 0)}).status_code == 200
    before = _snapshot(path)
    bad = [
        (f"/r/{'x' * 16}/answer", {"json": {"idx": 1, "answer": "real"}}, 404, "unknown rater"),
        ("/r/not-an-id/answer", {"json": {"idx": 1, "answer": "real"}}, 404, "unknown rater"),
        (f"/r/{rid}/answer", {"data": "{not json", "content_type": "application/json"}, 400, "not valid JSON"),
        (f"/r/{rid}/answer", {"json": [1, "real"]}, 400, "JSON object"),
        (f"/r/{rid}/answer", {"json": {"idx": 1}}, 400, "answer must be"),
        (f"/r/{rid}/answer", {"json": {"idx": 1, "answer": "REAL"}}, 400, "answer must be"),
        (f"/r/{rid}/answer", {"json": {"idx": -1, "answer": "real"}}, 400, "idx must be"),
        (f"/r/{rid}/answer", {"json": {"idx": "one", "answer": "real"}}, 400, "idx must be"),
        (f"/r/{rid}/answer", {"json": {"idx": True, "answer": "real"}}, 400, "idx must be"),
        (f"/r/{rid}/answer", {"json": {"idx": 1, "answer": "real", "correct": 1}}, 400, "unknown field"),
        (f"/r/{rid}/answer", {"json": {"idx": 1, "answer": "real", "response_ms": -5}}, 400, "response_ms"),
        (f"/r/{rid}/answer", {"json": {"idx": 1, "answer": "real", "shown_ms": "NaN"}}, 400, "shown_ms"),
        (f"/r/{rid}/answer", {"data": "idx=1&answer=real&answer=fake",
                              "content_type": "application/x-www-form-urlencoded"}, 400, "once"),
        (f"/r/{rid}/answer", {"data": "idx=1,answer=real", "content_type": "text/plain"}, 415, "JSON or as a form"),
        (f"/r/{rid}/answer", {"json": {"idx": 0, "answer": "real"}}, 409, "already answered"),
        (f"/r/{rid}/answer", {"json": {"idx": 3, "answer": "real"}}, 409, "out of order"),
        (f"/r/{rid}/answer", {"json": {"idx": 1, "answer": "real", "pad": "x" * 20000}}, 413, "too large"),
        ("/api/start", {"json": {"simulated": True}}, 403, "admin token"),
        ("/api/start", {"json": {"simulated": "yes"}}, 400, "true or false"),
        ("/api/start", {"json": {"who": 1}}, 400, "simulated"),
    ]
    for url, kw, status, msg in bad:
        r = c.post(url, **kw)
        assert r.status_code == status, (url, kw, r.status_code, r.get_data(as_text=True)[:200])
        text = r.get_json()["error"] if r.is_json else r.get_data(as_text=True)  # forms get an HTML page
        assert msg in text, (msg, text)
        assert _snapshot(path) == before, (url, kw)
    for url, status in ((f"/api/r/{'y' * 16}", 404), ("/admin", 403), ("/admin?token=wrong", 403),
                        ("/admin/export.csv", 403), (f"/admin/api/truth/{rid}/1?token=admintoken", 403),
                        (f"/r/{rid}/image/0", 404), (f"/r/{rid}/image/2", 404)):
        assert c.get(url).status_code == status, url
    assert _snapshot(path) == before
    # the form path works too and redirects to the next image
    r = c.post(f"/r/{rid}/answer", data={"idx": "1", "answer": truth_of(path, rid, 1), "response_ms": ""})
    assert r.status_code == 303 and r.headers["Location"].endswith(f"/r/{rid}")


def test_failed_and_finished_raters_are_refused(client_study):
    c, path, study = client_study
    failed = c.post("/api/start", json={}).get_json()["rater"]
    for i in range(4):  # every qualification answer wrong
        t = truth_of(path, failed, i)
        assert c.post(f"/r/{failed}/answer", json={"idx": i, "answer": "fake" if t == "real" else "real"}).status_code == 200
    assert c.get(f"/api/r/{failed}").get_json()["state"] == "failed"
    before = _snapshot(path)
    r = c.post(f"/r/{failed}/answer", json={"idx": 4, "answer": "real"})
    assert r.status_code == 403 and "qualification" in r.get_json()["error"]
    assert "did not reach the qualification" in c.get(f"/r/{failed}").get_data(as_text=True)
    done = c.post("/api/start", json={}).get_json()["rater"]
    for i in range(study.n_trials):
        assert c.post(f"/r/{done}/answer", json={"idx": i, "answer": truth_of(path, done, i)}).status_code == 200
    assert c.get(f"/api/r/{done}").get_json()["state"] == "done"
    before = _snapshot(path)
    r = c.post(f"/r/{done}/answer", json={"idx": study.n_trials, "answer": "real"})
    assert r.status_code == 409 and "finished" in r.get_json()["error"]
    assert _snapshot(path) == before
    # the admin page and the CSV export behind the token
    page = c.get("/admin?token=admintoken").get_data(as_text=True)
    assert "Running scores" in page and f"{study.n_trials} / {study.n_trials}" in page and "failed" in page
    csv_text = c.get("/admin/export.csv", headers={"X-Admin-Token": "admintoken"}).get_data(as_text=True)
    lines = csv_text.splitlines()
    assert lines[0] == ",".join(hdb.EXPORT_COLUMNS) and len(lines) == 1 + 4 + study.n_trials
    assert {ln.split(",")[1] for ln in lines[1:]} == {"human"}


def test_a_double_submit_is_stored_once(tmp_path):
    """Ten threads post the same answer of one rater at once: one is stored, nine get 409."""
    from genlab.human import server

    path = tmp_path / "d.sqlite"
    make_study(path)
    run = server.start(path)
    try:
        rid = http("POST", f"{run.url}/api/start", {})[1]["rater"]
        ans = truth_of(path, rid, 0)
        statuses: list[int] = []
        barrier = threading.Barrier(10)

        def post():
            barrier.wait()
            statuses.append(http("POST", f"{run.url}/r/{rid}/answer", {"idx": 0, "answer": ans})[0])

        threads = [threading.Thread(target=post) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        run.stop()
    assert sorted(statuses) == [200] + [409] * 9
    assert judgements(path) == {(rid, 0, ans)} and rows(path, "SELECT position FROM raters") == [(1,)]


def test_pages_give_no_hint_of_the_truth(client_study):
    """Every page of a phase is the same HTML but for the trial number; image URLs name only
    the rater and the trial; the PNGs are alike in size and format; the answer key is only
    for simulated raters."""
    c, path, study = client_study
    r = c.post("/start")
    assert r.status_code == 303
    rid = r.headers["Location"].rsplit("/", 1)[-1]
    assert c.get("/").headers["Location"].endswith(f"/r/{rid}")  # the cookie leads back
    pages: dict[str, set[str]] = {"qualification": set(), "study": set()}
    seen_truths = {"qualification": set(), "study": set()}
    for i in range(study.n_trials):
        html = c.get(f"/r/{rid}").get_data(as_text=True)
        phase = "qualification" if i < 4 else "study"
        urls = re.findall(r'src="([^"]+)"', html)
        assert urls == [f"/r/{rid}/image/{i}"]
        png = c.get(urls[0])
        assert png.mimetype == "image/png"
        with Image.open(io.BytesIO(png.data)) as im:
            assert (im.size, im.mode, im.text) == ((32, 32), "L", {})
        t = truth_of(path, rid, i)
        seen_truths[phase].add(t)
        norm = re.sub(r"/image/\d+", "/image/N", html)
        norm = re.sub(r'name="idx" value="\d+"', 'name="idx" value="N"', norm)
        norm = re.sub(r"image \d+ of", "image N of", norm)
        norm = re.sub(r'nonce="[^"]*"', 'nonce=""', norm)
        if i == 4:
            norm = norm.replace(re.search(r'<p class="note" id="qualified">[^<]*</p>\n', norm).group(0), "")
        pages[phase].add(norm)
        c.post(f"/r/{rid}/answer", data={"idx": str(i), "answer": t})
    assert seen_truths == {"qualification": {"real", "fake"}, "study": {"real", "fake"}}
    assert len(pages["qualification"]) == 1 and len(pages["study"]) == 1


# --- over HTTP: concurrency, kill -9 and restart ---------------------------------------------------

def test_twenty_concurrent_raters_lose_nothing(tmp_path):
    from genlab.human import server, simulate

    path = tmp_path / "c.sqlite"
    study = make_study(path, qual_size=4, block_size=6, qual_threshold=0.0)
    run = server.start(path, threads=8)
    try:
        t0 = time.time()
        logs = simulate.simulate(run.url, raters=20, accuracy=0.8, seed=0, token="admintoken")
        took = time.time() - t0
    finally:
        run.stop()
    assert all(lg.error is None for lg in logs), [lg.error for lg in logs if lg.error]
    sent = {(lg.rater, idx, ans) for lg in logs for idx, ans in lg.answers}
    assert len(sent) == 20 * study.n_trials
    assert judgements(path) == sent  # exactly what was sent: nothing lost, nothing extra
    assert rows(path, "SELECT DISTINCT state, position, simulated FROM raters") == [("done", study.n_trials, 1)]
    assert rows(path, "SELECT COUNT(*) FROM judgements WHERE simulated = 1")[0][0] == len(sent)
    print(f"20 raters x {study.n_trials} answers over loopback in {took:.1f} s")


def _start_cli_server(db: Path, log: Path, light: bool = False) -> tuple[subprocess.Popen, str]:
    """`genlab hype serve --db DB --port 0` in a subprocess (``light``: the same command through
    `python -m genlab.human`, which skips importing torch: both end in genlab.human.cli.run);
    its rater address."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = ["genlab.human"] if light else ["genlab.cli.main", "hype"]
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", *cmd, "serve", "--db", str(db), "--port", "0", "--threads",
                                 "4"], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    deadline = time.time() + 60
    while time.time() < deadline:
        m = re.search(r"raters:\s+(http://127\.0\.0\.1:\d+)/", log.read_text())
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"server did not start: {log.read_text()[-2000:]}")


def test_kill_minus_9_and_restart_keeps_every_committed_judgement(tmp_path):
    db = tmp_path / "k.sqlite"
    study = make_study(db, qual_size=4, block_size=40, qual_threshold=0.0, pool=40, real=40)
    proc, url = _start_cli_server(db, tmp_path / "server1.log", light=True)
    acked: dict[str, list[tuple[int, str]]] = {}
    sent: set[tuple[str, int, str]] = set()
    stop = threading.Event()
    errors: list = []
    rids = [http("POST", f"{url}/api/start", {})[1]["rater"] for _ in range(4)]

    def rater(rid: str) -> None:
        acked[rid] = []
        idx = 0
        while not stop.is_set() and idx < study.n_trials:
            ans = truth_of(db, rid, idx)
            sent.add((rid, idx, ans))
            try:
                status, res = http("POST", f"{url}/r/{rid}/answer", {"idx": idx, "answer": ans})
            except (OSError, http_client.HTTPException, ValueError):
                return  # the server died under us: this answer is unacknowledged
            if status != 200:
                errors.append((rid, idx, status, res))
                return
            acked[rid].append((idx, ans))
            idx += 1

    threads = [threading.Thread(target=rater, args=(r,)) for r in rids]
    for t in threads:
        t.start()
    deadline = time.time() + 30
    while sum(len(v) for v in list(acked.values())) < 40 and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # kill -9 while answers are in flight
    proc.wait(10)
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors
    got = judgements(db)
    ack = {(r, i, a) for r, lst in acked.items() for i, a in lst}
    assert ack and ack <= got <= sent  # every acknowledged answer committed; nothing invented
    for rid, pos, n in rows(db, "SELECT r.id, r.position, (SELECT COUNT(*) FROM judgements j WHERE "
                                "j.rater_id = r.id) FROM raters r"):
        assert pos == n  # the judgement and the rater's progress were committed together
    positions = dict(rows(db, "SELECT id, position FROM raters"))
    assert any(0 < p < study.n_trials for p in positions.values())

    proc, url = _start_cli_server(db, tmp_path / "server2.log", light=True)  # restart on the same file
    try:
        for k, rid in enumerate(rids):
            st = http("GET", f"{url}/api/r/{rid}")[1]
            assert st["idx"] == positions[rid]  # resumes where the database says
            page = http("GET", f"{url}/r/{rid}")[1].decode()
            assert f'name="idx" value="{positions[rid]}"' in page
            if st["idx"] > 0:  # an answer replayed across the restart is refused
                assert http("POST", f"{url}/r/{rid}/answer", {"idx": st["idx"] - 1, "answer": "real"})[0] == 409
            end = study.n_trials if k == 0 else min(st["idx"] + 3, study.n_trials)  # one rater to the end
            for idx in range(st["idx"], end):
                status, res = http("POST", f"{url}/r/{rid}/answer", {"idx": idx, "answer": truth_of(db, rid, idx)})
                assert status == 200, res
        assert rows(db, "SELECT state FROM raters WHERE id = ?", (rids[0],)) == [("done",)]
        assert got <= judgements(db)
        assert len(judgements(db)) == study.n_trials + sum(min(positions[r] + 3, study.n_trials) for r in rids[1:])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


# --- CLI: report, export, compare --------------------------------------------------------------------

def _fake_run(root: Path, name: str) -> Path:
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(yaml.safe_dump({"name": name, "data": {"name": "digits"},
                                                       "model": {"name": "conv_generator"},
                                                       "objective": {"name": "nsgan"}}))
    (root / "eval.json").write_text(json.dumps({"metrics": {"fid": 3.0}}))
    return root


def test_report_export_and_compare(tmp_path, capsys):
    from genlab.cli.main import main
    from genlab.human import server, simulate

    path = tmp_path / "r.sqlite"
    make_study(path, models=("m1", "m2"), qual_size=0, block_size=6)
    run = server.start(path)
    try:
        _c_status, c_res = http("POST", f"{run.url}/api/start", {})  # one human rater, two blocks
        rid = c_res["rater"]
        for idx in range(12):
            http("POST", f"{run.url}/r/{rid}/answer", {"idx": idx, "answer": truth_of(path, rid, idx)})
        simulate.simulate(run.url, raters=4, accuracy=0.7, seed=0, token="admintoken")
    finally:
        run.stop()
    out = tmp_path / "res"
    assert main(["hype", "report", str(path), "--out", str(out), "--boot", "500"]) == 0
    text = capsys.readouterr().out
    assert "SIMULATED" in text and "human" in text and "hype.json" in text
    res = json.loads((out / "hype.json").read_text())
    assert res["format"] == "genlab-hype/1" and res["protocol"] == "infinity"
    for m in ("m1", "m2"):
        assert res["models"][m]["scores"]["human"]["value"] == 0.0  # the human answered all right
        sim = res["models"][m]["scores"]["simulated"]
        assert sim["raters"] == 4 and sim["judgements"] == 24 and sim["ci"] is not None
    with Image.open(out / "hype.png") as im:
        assert im.format == "PNG" and im.size[0] > 300
    csv_path = tmp_path / "all.csv"
    assert main(["hype", "export", str(path), "-o", str(csv_path)]) == 0
    lines = csv_path.read_text().splitlines()
    assert lines[0].split(",") == list(hdb.EXPORT_COLUMNS) and len(lines) == 1 + 12 + 4 * 12
    kinds = [ln.split(",")[1] for ln in lines[1:]]
    assert kinds.count("human") == 12 and kinds.count("simulated") == 48
    # genlab compare folds the scores in beside the automatic metrics; simulated ones say so
    a, b = _fake_run(tmp_path / "runs" / "m1", "x"), _fake_run(tmp_path / "runs" / "m2", "y")
    html_path = tmp_path / "report.html"
    assert main(["compare", str(a), str(b), "--out", str(html_path), "--hype", str(out / "hype.json")]) == 0
    board = capsys.readouterr().out
    assert "hype_inf\u2191" in board and "hype_inf_simulated\u2191" in board
    html = html_path.read_text()
    assert "hype_inf_simulated\u2191</th>" in html and "hype_inf\u2191</th>" in html
    assert 'id="hype"' in html and "<b>simulated</b>" in html and "SIMULATED raters" in html
    assert main(["compare", str(a), "--out", str(html_path), "--hype", str(tmp_path / "none.json")]) == 2


def test_serve_refuses_bad_input(tmp_path, capsys):
    from genlab.cli.main import main

    assert main(["hype", "serve", "--db", str(tmp_path / "a.sqlite"), "--fake", "x=y.npy"]) == 2
    assert "needs --real" in capsys.readouterr().err
    assert main(["hype", "serve", "--db", str(tmp_path / "a.sqlite"), "--real", "digits", "--fake", "bad"]) == 2
    assert "NAME=ARRAY.npy" in capsys.readouterr().err
    assert main(["hype", "serve", "--db", str(tmp_path / "a.sqlite"), "--real", "ring8", "--fake",
                 f"x={tmp_path / 'x.npy'}"]) == 2
    assert "HYPE shows images" in capsys.readouterr().err
    assert main(["hype", "serve", "--db", str(tmp_path / "a.sqlite"), "--real", "digits", "--block-size", "5",
                 "--fake", f"x={tmp_path / 'x.npy'}"]) == 2
    assert "even" in capsys.readouterr().err
    np.save(tmp_path / "x.npy", np.zeros((10, 1, 8, 8)))
    assert main(["hype", "serve", "--db", str(tmp_path / "a.sqlite"), "--real", "digits", "--fake",
                 f"x={tmp_path / 'x.npy'}"]) == 2
    assert "need" in capsys.readouterr().err and not (tmp_path / "a.sqlite").exists()
    assert main(["hype", "report", str(tmp_path / "none.sqlite")]) == 2
    assert "holds no HYPE study" in capsys.readouterr().err


def test_study_from_a_trained_run(tmp_path):
    """`genlab hype serve RUN` path: samples come from genlab.load_run(run).sample(n, seed)."""
    import genlab
    from genlab.cli.main import main
    from genlab.human.images import build_study, encode_all

    run_dir = tmp_path / "tiny"
    assert main(["train", "recipes/digits-dcgan.yaml", "--out", str(run_dir), "--set", "train.steps=2",
                 "--set", "train.progress=false", "--set", "train.sample_every=2", "--set", "train.ckpt_every=2",
                 "--set", "model.width=8", "--set", "objective.critic.width=8", "--set", "eval.n=64"]) == 0
    cfg = hdb.StudyConfig(qual_size=4, block_size=10)
    build_study(tmp_path / "s.sqlite", cfg, runs=[run_dir], real="digits", pool=20)
    study = hdb.Study.load(tmp_path / "s.sqlite")
    assert study.models == ["tiny"] and study.origins["tiny"] == str(run_dir.resolve())
    loaded = genlab.load_run(run_dir)
    expect = encode_all(loaded.sample(24, seed=0).double().numpy(), loaded.spec, 128)
    got = [bytes(p) for (p,) in rows(tmp_path / "s.sqlite", "SELECT png FROM images WHERE source = 'tiny' "
                                                            "ORDER BY id")]
    assert got == expect  # 20 study + 4 qualification images, exactly the run's seeded samples
    n_real = rows(tmp_path / "s.sqlite", "SELECT pool, COUNT(*) FROM images WHERE is_real = 1 GROUP BY pool")
    assert dict(n_real) == {"qualification": 100, "study": 200}  # digits' 300 held-out images


# --- a real rater in Chromium --------------------------------------------------------------------------

def _driver():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        if os.environ.get("GENLAB_SKIP_BROWSER") == "1":
            pytest.skip("GENLAB_SKIP_BROWSER=1 and chromium or chromedriver is missing")
        pytest.fail("/usr/bin/chromium or /usr/bin/chromedriver is missing: run scripts/install-browser.sh "
                    "(or set GENLAB_SKIP_BROWSER=1 to skip browser tests)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=900,720",
              "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)  # never downloads a driver


def _start_rater(drv, url: str) -> str:
    """Open the start page, press start, and return the rater id the server assigned."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    drv.get(url + "/")
    drv.find_element(By.ID, "start").click()
    WebDriverWait(drv, 10).until(lambda d: "/r/" in d.current_url)
    return drv.current_url.rstrip("/").rsplit("/", 1)[-1]


def _wait_ready(drv, timeout: float = 15.0) -> None:
    """Until the page has loaded its image and opened the answer buttons (data-ready)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(drv, timeout).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && document.body.getAttribute('data-ready')") == "1")


def _click_and_wait(drv, button_id: str) -> None:
    """Click an answer and wait until the browser has left the page (the next one loads)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    page = drv.find_element(By.TAG_NAME, "html")
    drv.find_element(By.ID, button_id).click()
    WebDriverWait(drv, 15).until(EC.staleness_of(page))


def _digits_study(path: Path, **cfg) -> hdb.Study:
    """Real digits from the held-out split; fakes: blends of two training digits."""
    from genlab.human.images import encode_all, load_real

    x, spec = load_real("digits")
    tr, _ = load_real("digits", split="train")
    rng = np.random.default_rng(0)
    blend = (tr[rng.integers(0, len(tr), 60)] + tr[rng.integers(0, len(tr), 60)]) / 2
    fake = encode_all(blend, spec, 128)
    real = encode_all(x[:40], spec, 128)
    config = hdb.StudyConfig(px=128, **cfg)
    hdb.create_study(path, config, real_study=real[:20], real_qual=real[20:], fakes={"blend": ("blend", fake[:40],
                     fake[40:])}, admin_token="admintoken")
    return hdb.Study.load(path)


def test_browser_rater_completes_qualification_and_study(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from genlab.human import server

    path = tmp_path / "b.sqlite"
    study = _digits_study(path, qual_size=4, block_size=6, qual_threshold=0.75)
    run = server.start(path)
    drv = _driver()
    clicks = []
    try:
        rid = _start_rater(drv, run.url)
        for i in range(study.n_trials):
            _wait_ready(drv)
            assert drv.find_element(By.ID, "progress").text.startswith(f"image {i + 1 - (4 if i >= 4 else 0)} of")
            img = drv.find_element(By.ID, "stimulus")
            assert drv.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) == 128
            assert img.get_attribute("alt") == "image to judge" and img.is_displayed()
            assert not drv.find_elements(By.ID, "feedback")  # HYPE-infinity gives no feedback
            if i == 6:
                ARTIFACTS.mkdir(exist_ok=True)
                drv.save_screenshot(str(ARTIFACTS / "hype_study.png"))
            t = truth_of(path, rid, i)
            ans = t if i != 7 else ("fake" if t == "real" else "real")  # one deliberate mistake in the study
            _click_and_wait(drv, f"btn-{ans}")
            clicks.append((rid, i, ans))
        WebDriverWait(drv, 10).until(lambda d: "judged all" in d.find_element(By.ID, "message").text)
        drv.get(f"{run.url}/admin?token=admintoken")
        assert "HYPE study: admin" in drv.page_source and drv.find_element(By.ID, "export")
    finally:
        drv.quit()
        run.stop()
    assert judgements(path) == set(clicks)
    assert rows(path, "SELECT state, simulated FROM raters") == [("done", 0)]
    times = rows(path, "SELECT response_ms FROM judgements")
    assert all(t is not None and 0 <= t < 60000 for (t,) in times)  # the page measured the answers
    with Image.open(ARTIFACTS / "hype_study.png") as im:
        px = np.asarray(im.convert("RGB"), dtype=float)
    assert px.shape[1] >= 600
    assert (px.min(axis=2) < 50).mean() > 0.01  # the enlarged digit and text are on the page


@pytest.mark.slow  # real waiting (countdowns, exposures, masks) and timing-sensitive: make test-all
def test_browser_hype_time_flashes_for_the_staircase_exposure(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from genlab.human import server

    path = tmp_path / "bt.sqlite"
    stair = Staircase(start_ms=300, min_ms=100, max_ms=1000, down_ms=100, up_ms=100)
    study = _digits_study(path, qual_size=2, block_size=4, blocks=1, qual_threshold=0.0, protocol="time",
                          staircase=stair, countdown_ms=100)
    run = server.start(path)
    drv = _driver()
    try:
        rid = _start_rater(drv, run.url)
        for i in range(study.n_trials):
            _wait_ready(drv)
            if i >= 2:  # timed: once answers open, the image has been hidden again
                assert drv.find_element(By.ID, "stimulus").value_of_css_property("visibility") == "hidden"
            if i >= 3:  # HYPE-time tells the rater whether the previous study answer was right
                assert drv.find_element(By.ID, "feedback").text == f"Your last answer was {'wrong' if i == 4 else 'right'}."
            t = truth_of(path, rid, i)
            _click_and_wait(drv, f"btn-{t if i != 3 else ('fake' if t == 'real' else 'real')}")
        WebDriverWait(drv, 10).until(lambda d: "judged all" in d.find_element(By.ID, "message").text)
    finally:
        drv.quit()
        run.stop()
    got = rows(path, "SELECT idx, exposure_ms, shown_ms, correct FROM judgements ORDER BY idx")
    assert [e for _, e, _, _ in got] == [None, None, 300, 200, 300, 200]  # right (-100), wrong (+100), right
    for idx, exposure, shown, _ in got[2:]:
        assert exposure - 10 <= shown <= exposure + 400, (idx, exposure, shown)  # rAF timing on a busy machine
