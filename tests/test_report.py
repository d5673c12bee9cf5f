"""`genlab compare`: the HTML report, its parser-level contract, and a real render
in headless Chromium (install it with scripts/install-browser.sh; set
GENLAB_SKIP_BROWSER=1 to skip the browser tests instead of failing them)."""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402

from genlab.report import compare, load_run, print_leaderboard  # noqa: E402
from genlab.report.runs import parse_metrics  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
EVIL = '<b>c&d "x"</b>'  # a recipe name that must be escaped
EVIL_DIR = 'c&<x>'  # a run directory name (the run's label) that must be escaped


def _png(path: Path, kind: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=(2, 2), dpi=50)
    if kind == "scatter":
        ang = rng.integers(0, 8, 300) * np.pi / 4
        ax.scatter(np.cos(ang) * 2 + 0.05 * rng.standard_normal(300),
                   np.sin(ang) * 2 + 0.05 * rng.standard_normal(300), s=2)
    else:
        ax.imshow(rng.random((32, 32)), cmap="gray")
    ax.set_axis_off()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path.read_bytes()


def _write_run(root: Path, name: str, cfg: dict, history: list[dict], ev: dict | None) -> Path:
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(yaml.safe_dump({"name": name, "seed": 0, **cfg}))
    (root / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    if ev is not None:
        (root / "eval.json").write_text(json.dumps(ev))
    return root


def _history(scale: float, n: int = 30, eval_every: int = 10) -> list[dict]:
    rows = []
    for s in range(1, n + 1):
        row = {"step": s * 10, "generator/loss": scale * (1 + math.exp(-s / 8)),
               "critic/loss": 1.3 - 0.2 * scale * math.exp(-s / 5), "time": 0.1 * s}
        if s % eval_every == 0:
            row["eval/modes"] = min(8, round(s * scale / 3))
        rows.append(row)
    return rows


@pytest.fixture
def runs(tmp_path):
    """Three runs: (A) full, latest of two step PNGs; (B) samples.png, other metrics;
    (C) no eval.json, no samples, another dataset, names that need escaping."""
    a = _write_run(tmp_path / "a", "nsgan-ring8",
                   {"data": {"name": "ring8"}, "model": {"name": "mlp_generator"},
                    "objective": {"name": "nsgan"}},
                   _history(0.7),
                   {"metrics": {"fid": 12.3, "kid": 0.010, "kid_std": 0.002, "modes": 8,
                                "critic": {"value": 0.40, "ci": [0.31, 0.52]}},
                    "ci": {"fid": [11.9, 12.8]}, "n": 2500, "seed": 0, "protocol": {"k": 3}})
    _png(a / "samples" / "step-000100.png", "scatter", 1)
    latest = _png(a / "samples" / "step-000300.png", "scatter", 2)
    b = _write_run(tmp_path / "b", "gan-ring8",
                   {"data": {"name": "ring8"}, "model": {"name": "mlp_generator"},
                    "objective": {"name": "gan"}},
                   _history(0.9),
                   {"metrics": {"fid": 20.5, "kid": 0.005, "kid_se": 0.004, "modes": 5,
                                "bpd": 3.1},
                    "ci": {"critic": [0.5, 0.7]}, "n": 2500, "seed": 0})
    b_png = _png(b / "samples.png", "image", 3)
    c = _write_run(tmp_path / EVIL_DIR, EVIL, {"data": {"name": "digits"}}, _history(1.1), None)
    return [a, b, c], {"a": latest, "b": b_png}


class _Collect(HTMLParser):
    """Rows of #leaderboard-table (cells with their class) and every img src."""

    def __init__(self):
        super().__init__()
        self.in_table = False
        self.header: list[str] = []
        self.rows: list[list[tuple[str, str]]] = []
        self.imgs: list[str] = []
        self._cell: list[str] | None = None
        self._cls = ""
        self._in_head = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag == "table" and a.get("id") == "leaderboard-table":
            self.in_table = True
        if not self.in_table:
            return
        if tag == "thead":
            self._in_head = True
        elif tag == "tr" and not self._in_head:
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell, self._cls = [], a.get("class") or ""

    def handle_endtag(self, tag):
        if tag == "table":
            self.in_table = False
        if tag == "thead":
            self._in_head = False
        if tag in ("td", "th") and self._cell is not None and self.in_table:
            text = "".join(self._cell).strip()
            if self._in_head:
                self.header.append(text)
            else:
                self.rows[-1].append((text, self._cls))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _decode_png(src: str) -> bytes:
    assert src.startswith("data:image/png;base64,"), src[:60]
    raw = base64.b64decode(src.split(",", 1)[1], validate=True)
    with Image.open(io.BytesIO(raw)) as im:
        im.verify()
        assert im.format == "PNG"
    return raw


def test_parse_metrics_error_bars():
    s = parse_metrics({"kid": 0.01, "kid_std": 0.002, "x": {"value": 2.0, "ci": [1.5, 2.5]},
                       "y": {"value": 1, "se": 0.5}, "z_se": 0.3, "name": "text",
                       "prdc": {"recall": 0.6}}, {"kid": [0.0, 0.05]})
    assert set(s) == {"kid", "x", "y", "z_se", "prdc/recall"}
    assert (s["kid"].lo, s["kid"].hi, s["kid"].err_kind) == (0.0, 0.05, "ci")  # ci wins over std
    assert (s["x"].lo, s["x"].hi) == (1.5, 2.5)
    assert (s["y"].lo, s["y"].hi, s["y"].err_kind) == (0.5, 1.5, "se")
    assert s["z_se"].lo is None  # a lone _se key is a metric of its own
    s2 = parse_metrics({"kid": 0.01, "kid_std": 0.002})
    assert s2["kid"].lo == pytest.approx(0.008) and s2["kid"].text() == "0.01 \u00b1 0.002"


def test_parse_metrics_flat_engine_keys():
    """The flat keys genlab's metrics write: _lo/_hi pairs, aliases, _se of a long key."""
    s = parse_metrics({"critic_w": 0.2, "critic_se": 0.05, "critic_lo": 0.1, "critic_hi": 0.3,
                       "critic_w_train": 0.25, "ais_log_px": -80.0, "ais_log_px_se": 1.5,
                       "ais_bpd": 1.2, "q_lo": 1.0, "c2st_acc": 0.55})
    assert set(s) == {"critic_w", "critic_w_train", "ais_log_px", "ais_bpd", "q_lo", "c2st_acc"}
    assert (s["critic_w"].lo, s["critic_w"].hi) == (0.1, 0.3)  # lo/hi beat se
    assert s["critic_w"].text() == "0.2 [0.1, 0.3]"
    assert (s["ais_log_px"].lo, s["ais_log_px"].hi) == (-81.5, -78.5)
    assert s["q_lo"].lo is None  # no base, no partner: a metric of its own


def test_best_runs_directions_and_ties():
    from genlab.report.runs import Run, Stat
    from genlab.report.table import best_runs

    def mk(*vals):
        return [Run(path=Path("."), name=str(i), stats={"m": Stat(v)}) for i, v in enumerate(vals)]

    assert best_runs("m", mk(3.0, 1.0, 1.0, 2.0), "min") == {1, 2}
    assert best_runs("m", mk(3.0, 1.0, float("nan")), "max") == {0}
    assert best_runs("m", mk(0.9, 0.45, 0.7), 0.5) == {1}
    assert best_runs("m", mk(2.0, 2.0), "min") == set()  # all tie: nothing stands out
    assert best_runs("m", mk(1.0, 2.0), None) == set()
    assert best_runs("m", mk(1.0), "min") == set()


def test_load_run_picks_latest_samples_and_notes(runs):
    (a, b, c), pngs = runs
    ra, rb, rc = load_run(a), load_run(b), load_run(c)
    assert ra.sample.name == "step-000300.png" and rb.sample.name == "samples.png"
    assert (ra.model, ra.objective, ra.dataset) == ("mlp_generator", "nsgan", "ring8")
    assert rc.sample is None and rc.stats == {}
    assert any("eval.json" in n for n in rc.notes) and any("samples" in n for n in rc.notes)
    assert [h["step"] for h in ra.history] == [10.0 * s for s in range(1, 31)]
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_run(a / "missing")


def test_compare_html_contract(runs, tmp_path):
    dirs, pngs = runs
    out = compare(dirs, tmp_path / "out" / "report.html", title="ring8 <GANs>")
    html = out.read_text()
    p = _Collect()
    p.feed(html)
    assert p.header == ["run", "recipe", "model", "objective", "dataset", "fid\u2193", "kid\u2193",
                        "modes\u2191", "critic\u2193", "bpd\u2193", "notes"]
    assert len(p.rows) == 3 and all(len(r) == len(p.header) for r in p.rows)
    assert [r[0][0] for r in p.rows] == ["a", "b", EVIL_DIR]  # labelled by directory
    assert [r[1][0] for r in p.rows] == ["nsgan-ring8", "gan-ring8", EVIL]  # recipe names
    col = {h: j for j, h in enumerate(p.header)}
    # values with intervals, best per column by direction (fid: min, modes: max, kid: min)
    assert p.rows[0][col["fid\u2193"]][0] == "12.3 [11.9, 12.8]"
    assert p.rows[1][col["kid\u2193"]][0] == "0.005 \u00b1 0.004"
    assert p.rows[1][col["critic\u2193"]][1] == "blank"  # a CI with no value: blank
    for key, best in (("fid\u2193", 0), ("kid\u2193", 1), ("modes\u2191", 0)):
        classes = [r[col[key]][1] for r in p.rows]
        assert "best" in classes[best] and all("best" not in c for j, c in enumerate(classes) if j != best)
    assert "best" not in p.rows[1][col["bpd\u2193"]][1]  # only one run reports bpd
    assert all(p.rows[2][j][1] == "blank" for j in range(5, 10))  # run C: no eval.json
    assert "no eval.json" in p.rows[2][col["notes"]][0]
    # escaping: the hostile name and title never appear raw
    assert EVIL not in html and "&lt;b&gt;c&amp;d" in html and "ring8 &lt;GANs&gt;" in html
    assert EVIL_DIR not in html and "c&amp;&lt;x&gt;" in html
    # images: 2 sample grids + curves + metric bars, all embedded valid PNGs
    assert len(p.imgs) == 4
    decoded = [_decode_png(s) for s in p.imgs]
    assert decoded[0] == pngs["a"] and decoded[1] == pngs["b"]
    # self-contained: no external references of any kind
    assert not re.search(r"https?://|<link\b|<script\b|@import|url\(", html, re.I)
    # glossary describes each column
    for key in ("fid", "kid", "modes", "critic", "bpd"):
        assert f"<dt>{key}</dt>" in html


def test_compare_rejects_empty_and_missing(tmp_path):
    with pytest.raises(ValueError, match="at least one"):
        compare([], tmp_path / "r.html")
    with pytest.raises(FileNotFoundError):
        compare([tmp_path / "nope"], tmp_path / "r.html")


def test_print_leaderboard(runs):
    dirs, _ = runs
    text = print_leaderboard(dirs)
    lines = text.splitlines()
    assert lines[0].split()[:6] == ["run", "recipe", "model", "objective", "dataset", "fid\u2193"]
    body = lines[2:5]
    assert body[0].split()[:2] == ["a", "nsgan-ring8"] and "12.3 [11.9, 12.8] *" in body[0]
    assert "20.5" in body[1] and "20.5 *" not in body[1]
    assert body[2].startswith(EVIL_DIR) and EVIL in body[2]
    assert any("no eval.json" in line for line in lines[5:])


def _chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    if os.environ.get("GENLAB_SKIP_BROWSER") == "1":
        pytest.skip("GENLAB_SKIP_BROWSER=1 and /usr/bin/chromium is missing")
    pytest.fail("/usr/bin/chromium is missing: run scripts/install-browser.sh "
                "(or set GENLAB_SKIP_BROWSER=1 to skip browser tests)")


def _chrome(tmp_path: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{name}"
    cmd = [str(_chromium()), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_missing_browser_fails_unless_opted_out(monkeypatch, tmp_path):
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("GENLAB_SKIP_BROWSER", raising=False)
    with pytest.raises(pytest.fail.Exception, match="install-browser.sh"):
        _chromium()
    monkeypatch.setenv("GENLAB_SKIP_BROWSER", "1")
    with pytest.raises(pytest.skip.Exception, match="GENLAB_SKIP_BROWSER"):
        _chromium()


def test_report_renders_in_chromium(runs, tmp_path):
    dirs, _ = runs
    _chromium()
    out = compare(dirs, tmp_path / "report.html", title="genlab report test")
    url = out.resolve().as_uri()
    dom = _chrome(tmp_path, "dom", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    p = _Collect()
    p.feed(dom.stdout)
    assert len(p.rows) == 3 and p.header[0] == "run"
    assert len(p.imgs) == 4 and all(s.startswith("data:image/png;base64,") for s in p.imgs)

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    res = _chrome(tmp_path, "shot", f"--screenshot={shot}", "--window-size=1280,2000",
                  "--hide-scrollbars", url)
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    shutil.copy(out, ARTIFACTS / "report.html")
    with Image.open(shot) as im:
        assert im.size == (1280, 2000)
        px = np.asarray(im.convert("RGB"), dtype=float)
    # a real page: mostly white background but with substantial non-white content
    # (table, text, plots), and colour from the embedded matplotlib figures
    nonwhite = (px.min(axis=2) < 240).mean()
    colourful = (px.max(axis=2) - px.min(axis=2) > 60).mean()
    assert 0.02 < nonwhite < 0.8, nonwhite
    assert colourful > 0.002, colourful


# --- labels, like-with-like stars, 2-D sample pictures ------------------------------------

def _ring8_eval(fid: float) -> dict:
    return {"metrics": {"fid": fid}, "n": 100, "seed": 0}


def test_runs_are_labelled_by_directory_and_disambiguated(tmp_path):
    """Two runs of one recipe keep distinct labels (recipe names are not unique)."""
    cfg = {"data": {"name": "ring8"}, "objective": {"name": "nsgan"}}
    s0 = _write_run(tmp_path / "seed0" / "ring8", "ring8-nsgan", cfg, _history(0.7), _ring8_eval(3.0))
    s1 = _write_run(tmp_path / "seed1" / "ring8", "ring8-nsgan", cfg, _history(0.8), _ring8_eval(4.0))
    other = _write_run(tmp_path / "deep" / "x" / "seed0" / "ring8", "ring8-nsgan", cfg, _history(0.9),
                       _ring8_eval(5.0))
    solo = _write_run(tmp_path / "solo", "ring8-nsgan", cfg, _history(0.9), None)
    from genlab.report import load_runs

    runs = load_runs([s0, s1, other, solo, solo, tmp_path / "solo" / ".." / "seed1" / "ring8"])
    # the shortest path suffix no other run shares ("seed0/ring8" is also the end of
    # deep/x/seed0/ring8); the same directory again gets "#2"
    assert [r.name for r in runs] == [f"{tmp_path.name}/seed0/ring8", "seed1/ring8", "x/seed0/ring8",
                                      "solo", "solo #2", "seed1/ring8 #2"]
    assert {r.recipe for r in runs} == {"ring8-nsgan"}
    assert load_run(s0).name == "ring8"  # a single run: just its directory name
    html = compare([s0, s1], tmp_path / "r.html").read_text()
    p = _Collect()
    p.feed(html)
    assert [r[0][0] for r in p.rows] == ["seed0/ring8", "seed1/ring8"]
    text = print_leaderboard([s0, s1]).splitlines()
    assert text[2].startswith("seed0/ring8 ") and text[3].startswith("seed1/ring8 ")


def test_best_is_marked_only_among_runs_on_the_same_dataset(tmp_path):
    def run(name, data, fid):
        return _write_run(tmp_path / name, "recipe", {"data": {"name": data}}, _history(1.0),
                          _ring8_eval(fid))

    # given interleaved; digits numbers are far lower than ring8's but must not win there
    dirs = [run("r1", "ring8", 10.0), run("d1", "digits", 2.0), run("r2", "ring8", 20.0),
            run("d2", "digits", 1.0), run("m1", "moons", 7.0)]
    html = compare(dirs, tmp_path / "r.html").read_text()
    p = _Collect()
    p.feed(html)
    col = p.header.index("fid\u2193")
    assert [r[0][0] for r in p.rows] == ["r1", "r2", "d1", "d2", "m1"]  # grouped by dataset
    assert ["best" in r[col][1] for r in p.rows] == [True, False, False, True, False]
    # a thicker rule where a new dataset starts
    starts = re.findall(r'<tr class="([^"]*)">', html)
    assert ["group-start" in c for c in starts] == [False, False, True, False, True]
    assert "among the runs on the same dataset" in html
    lines = print_leaderboard(dirs).splitlines()
    body = lines[2:7]
    assert [ln.split()[0] for ln in body] == ["r1", "r2", "d1", "d2", "m1"]
    assert ["*" in ln for ln in body] == [True, False, False, True, False]
    assert "* best in column among runs on the same dataset" in lines
    # one dataset: unchanged order and legend
    one = print_leaderboard([dirs[2], dirs[0]]).splitlines()
    assert one[2].startswith("r2") and "10 *" in one[3] and "* best in column" in one


def _scatter_figure(monkeypatch, tmp_path, x, data, labels=None):
    """Draw with train.pictures._scatter_png; return (axes limits, texts, RGB pixels)."""
    from genlab.train import pictures

    figs = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: figs.append(fig))
    path = tmp_path / f"scatter-{len(list(tmp_path.iterdir()))}.png"
    pictures._scatter_png(path, x, data, "t", labels)
    monkeypatch.setattr(plt, "close", real_close)
    (ax,) = figs[0].axes
    texts = [t.get_text() for t in ax.texts]
    lims = ax.get_xlim(), ax.get_ylim()
    plt.close(figs[0])
    with Image.open(path) as im:
        px = np.asarray(im.convert("RGB"), dtype=int)
    return lims, texts, px


def _red_pixels(px):  # tab:red (214, 39, 40)
    return int(((abs(px[..., 0] - 214) < 30) & (px[..., 1] < 90) & (px[..., 2] < 90)).sum())


def test_scatter_frame_includes_far_samples_and_counts_outliers(monkeypatch, tmp_path):
    rng = np.random.default_rng(0)
    ang = rng.integers(0, 8, 2000) * np.pi / 4
    data = np.stack([2 * np.cos(ang), 2 * np.sin(ang)], 1) + 0.05 * rng.standard_normal((2000, 2))
    # samples far to the right of the data (WGAN-GP at x in [5, 21]) plus 3 wild outliers
    far = np.stack([rng.uniform(5, 21, 1000), rng.normal(0, 1, 1000)], 1)
    far[:3] = [[1e4, 0.0], [0.0, -1e4], [np.nan, 0.0]]
    (xl, yl), texts, px = _scatter_figure(monkeypatch, tmp_path, far, data)
    assert xl[0] < -2 and 21 < xl[1] < 40, xl  # data and samples in the frame, outliers not
    assert -40 < yl[0] < -2 and 2 < yl[1] < 40, yl
    assert texts == ["3 of 1000 samples outside the frame"]
    assert _red_pixels(px) > 500  # the samples are visible
    # samples on the data: the frame is the data's, nothing is reported outside
    (xl, yl), texts, px = _scatter_figure(monkeypatch, tmp_path, data[:500] + 0.01, data)
    assert -3 < xl[0] < -2 and 2 < xl[1] < 3 and texts == []
    assert _red_pixels(px) > 200
    # no data, labelled: the frame follows the samples, outliers are still counted
    (xl, yl), texts, _ = _scatter_figure(monkeypatch, tmp_path, far, None, np.arange(1000) % 3)
    assert 0 < xl[0] < 5 and 21 < xl[1] < 40 and texts == ["3 of 1000 samples outside the frame"]
