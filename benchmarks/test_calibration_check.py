"""benchmarks.calibration_check: the share and bound arithmetic on hand-made numbers, the query
plan, and the whole check on the bundled fixtures (generated negatives, ~60 short queries)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from benchmarks.calibration_check import (
    MENU,
    TARGETS,
    UNALTERED,
    Lead,
    Source,
    calibration_rows,
    clopper_pearson,
    path_of,
    plan_query,
    upper_bound,
)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "fixtures" / "audio" / "catalog"


# --------------------------------------------------------------------------- arithmetic


def test_shares_count_fmps_at_or_below_each_level():
    fmps = [1e-5, 0.5, 2e-3, 1e-2, 1.0, 1e-3, 3e-7, 0.2]
    rows = calibration_rows(fmps, levels=(1e-1, 1e-2, 1e-3, 1e-4, 1e-6))
    assert [r.k for r in rows] == [5, 5, 3, 2, 1]  # <= is inclusive: 1e-2 and 1e-3 count
    assert all(r.n == 8 for r in rows)
    assert rows[0].share == pytest.approx(5 / 8)
    assert [r.passes for r in rows] == [False, False, False, False, False]
    assert calibration_rows([0.5] * 100, levels=(1e-2,))[0].passes
    # 1 in 100 at p = 1e-2 is exactly at the target: it passes
    assert calibration_rows([1e-3] + [0.5] * 99, levels=(1e-2,))[0].passes


def test_clopper_pearson_matches_closed_forms_and_scipy():
    n = 10
    lo, hi = clopper_pearson(0, n)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / n))
    lo, hi = clopper_pearson(n, n)
    assert lo == pytest.approx(0.025 ** (1 / n)) and hi == 1.0
    assert upper_bound(0, 3000) == pytest.approx(1 - 0.05 ** (1 / 3000))  # the "3/n" rule
    assert upper_bound(0, 3000) == pytest.approx(3 / 3000, rel=0.01)
    exact = stats.binomtest(5, 100).proportion_ci(confidence_level=0.95, method="exact")
    assert clopper_pearson(5, 100) == pytest.approx((exact.low, exact.high))
    assert clopper_pearson(5, 100) == pytest.approx((0.0164, 0.1128), abs=1e-4)
    assert math.isnan(upper_bound(0, 0))


def test_a_share_whose_interval_lies_above_p_is_marked():
    rows = calibration_rows([1e-4] * 30 + [1.0] * 970, levels=(1e-2, 1e-3))
    at_1e2, at_1e3 = rows
    assert at_1e2.share == pytest.approx(0.03) and not at_1e2.passes
    assert at_1e2.significantly_above  # 30/1000 cannot come from a share of 1 %
    assert at_1e3.significantly_above


# --------------------------------------------------------------------------- the plan


SOURCES = [Source("short", 30.0), Source("long", 600.0)]


def test_the_plan_depends_on_seed_and_index_only():
    a = [plan_query(i, SOURCES, (5.0, 8.0), 3, MENU, 0.5) for i in range(200)]
    b = [plan_query(i, SOURCES, (5.0, 8.0), 3, MENU, 0.5) for i in range(50)]
    assert a[:50] == b
    assert a != [plan_query(i, SOURCES, (5.0, 8.0), 4, MENU, 0.5) for i in range(200)]
    assert [q.length_s for q in a[:4]] == [5.0, 8.0, 5.0, 8.0]
    assert len({q.query_id for q in a}) == 200
    by_name = {m.name: m for m in (*MENU, UNALTERED)}
    duration = {s.track_id: s.duration_s for s in SOURCES}
    for q in a:
        span = q.length_s * by_name[q.alteration].source_per_query_s
        assert q.start_s >= 0.5 and q.start_s + span + 0.5 <= duration[q.track_id] + 1e-6
    unaltered = sum(q.alteration == "unaltered" for q in a)
    assert 60 < unaltered < 140  # about half
    assert sum(q.track_id == "long" for q in a) > 150  # drawn in proportion to duration


def test_a_track_too_short_for_the_window_is_drawn_again():
    """30-s windows of a 30-s and a 600-s track: every query comes from the long one; windows
    no track holds are one error, not a plan."""
    from benchmarks.calibration_check import CheckError

    plan = [plan_query(i, SOURCES, (30.0,), 3, MENU, 0.5) for i in range(100)]
    assert {q.track_id for q in plan} == {"long"}
    # a plan whose first draw fits is the one a single draw made
    for i in range(50):
        rng = np.random.default_rng([3, i])
        track = SOURCES[int(rng.choice(2, p=np.array([30.0, 600.0]) / 630.0))]
        alteration = MENU[int(rng.integers(len(MENU)))] if rng.random() < 0.5 else UNALTERED
        offset_s = rng.uniform(0.0, track.duration_s - alteration.source_per_query_s * 5.0 - 1.0)
        q = plan_query(i, SOURCES, (5.0,), 3, MENU, 0.5)
        assert (q.track_id, q.alteration) == (track.track_id, alteration.name)
        assert q.start_s == round(offset_s + 0.5, 3)
    with pytest.raises(CheckError, match="no negative track is long enough for a 900-s window"):
        plan_query(0, SOURCES, (900.0,), 3, MENU, 0.5)


def test_path_of_names_the_lead_that_reproduces_a_match():
    leads = [
        Lead(7, "hash", 0.5, {}),
        Lead(7, "chroma", 2.4e-9, {}),
        Lead(7, "peaks x chroma", 2.4e-9, {}),  # a check with probability 1 times the chroma FMP
        Lead(8, "peaks<-hash", 1e-4, {}),
    ]

    def match(work_id, fmp, relation="same_recording"):
        return SimpleNamespace(work_id=work_id, false_match_probability=fmp, relation=relation)

    assert path_of(match(7, 2.4e-9), leads) == "peaks x chroma"
    assert path_of(match(7, 2.4e-9, "same_composition"), leads) == "chroma"
    assert path_of(match(8, 1e-4), leads) == "peaks<-hash"
    assert path_of(match(9, 0.5), leads) == "?"


# --------------------------------------------------------------------------- end to end


def _run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.calibration_check", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=1800,  # a hang guard only
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--queries", "0"],
        ["--queries", "many"],
        ["--lengths", "2,5"],
        ["--lengths", "5,x"],
        ["--workers", "0"],
        ["--altered-share", "1.5"],
        ["--max-minutes", "-1"],
        ["--only", "3,x"],
        ["--queries", "5", "--only", "2,7"],
        ["--no-such-option"],
    ],
)
def test_bad_arguments_are_one_error_line(args, tmp_path):
    proc = _run(*args, "--data", str(tmp_path / "cache"), "--out", str(tmp_path / "o" / "C.md"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_a_missing_corpus_is_one_error_line(tmp_path):
    proc = _run(
        "--queries", "5", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "C.md")
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "python -m benchmarks run" in lines[0]


def test_smoke_check_writes_a_report_with_no_duplicates(tmp_path):
    pytest.importorskip("pedalboard")
    if not sorted(FIXTURES.glob("*.ogg")):
        pytest.skip("fixtures/audio/catalog/*.ogg not generated")
    out = tmp_path / "calibration" / "CALIBRATION.md"
    common = ["--smoke", "--data", str(tmp_path / "cache"), "--out", str(out)]
    proc = _run(*common, "--queries", "60", "--workers", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert (out.parent / "calibration.png").stat().st_size > 1000
    jsonl = out.parent / "calibration.jsonl"
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    records = [r for r in rows if r["type"] == "query"]
    assert len(records) == 60
    assert {r["length_s"] for r in records} == {5.0, 8.0}
    assert any(r["alteration"] != "unaltered" for r in records)
    screened = [r for r in records if not r["error"]]
    assert len(screened) >= 55, [r["error"] for r in records if r["error"]]
    assert all(r["verdict"] in ("clean", "suspect") for r in screened)  # no duplicate
    # every reported FMP is reproduced by one evidence path recomputed from the screening
    assert all(m["path"] != "?" for r in screened for m in r["matches"])
    for r in screened:  # a reported FMP is one of the leads: the lowest lead is at most it
        if r["matches"]:
            assert r["fmp"] == r["matches"][0]["fmp"] >= r["latent_fmp"]
        else:
            assert r["fmp"] == r["latent_fmp"]
    assert re.search(r"\*\*0 `duplicate`\*\*", text)
    # the target on this smaller sample: at each p, at most p of the queries at or below
    fmps = [r["fmp"] for r in screened]
    for p in TARGETS:
        assert sum(f <= p for f in fmps) <= p * len(fmps), (p, sorted(fmps)[:5])
    # the table is the arithmetic above applied to the recorded FMPs
    for row in calibration_rows([r["fmp"] for r in screened]):
        assert f"| {row.k} / {row.n} |" in text
    for p in ("1e-2", "1e-3", "1e-4"):
        assert re.search(rf"^\| {p} \|.*\*\*(pass|FAIL)\*\*", text, re.M), p

    # resuming screens nothing new; a longer run adds only the new queries
    again = _run(*common, "--queries", "60", "--workers", "1")
    assert again.returncode == 0 and "0 to go" in again.stderr
    more = _run(*common, "--queries", "64", "--workers", "1")
    assert more.returncode == 0 and "4 to go" in more.stderr
    queries = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert sum(r["type"] == "query" for r in queries) == 64

    # --only screens those query numbers again, the same queries with the same evidence
    other = tmp_path / "again" / "CALIBRATION.md"
    only = _run(*common[:-1], str(other), "--queries", "64", "--only", "3,61", "--workers", "1")
    assert only.returncode == 0, only.stderr[-3000:]
    redone = [json.loads(x) for x in (other.parent / "calibration.jsonl").read_text().splitlines()]
    redone = {r["query_id"]: r for r in redone if r["type"] == "query"}
    first = {r["query_id"]: r for r in queries if r["type"] == "query"}
    assert sorted(redone) == ["s0-000003", "s0-000061"]
    for query_id, r in redone.items():
        assert (r["verdict"], r["fmp"]) == (first[query_id]["verdict"], first[query_id]["fmp"])

    out.unlink()
    rendered = _run("--render-only", "--out", str(out))
    assert rendered.returncode == 0 and out.exists()

    # other parameters on the same JSONL are refused, in one line
    other = _run(*common, "--queries", "60", "--lengths", "6")
    assert other.returncode == 2
    assert len(other.stderr.strip().splitlines()) == 1 and "lengths" in other.stderr
