"""benchmarks/peak_check_null.py: guided peak checks on chance candidates, paid two ways."""

from __future__ import annotations

import json

import numpy as np

import audiodup.screening as screening
from audiodup.peakcheck import Alignment, check_alignment, reference_peaks
from audiodup.peaks import PEAK_DTYPE
from audiodup.settings import DEFAULT_SETTINGS
from benchmarks.peak_check_null import (
    check_records,
    main,
    payments,
    related_works,
    summarise,
    table,
    watched_checks,
)

N_BINS = DEFAULT_SETTINGS.bins_per_octave * DEFAULT_SETTINGS.n_octaves


def peaks(frames, bins) -> np.ndarray:
    out = np.zeros(len(frames), dtype=PEAK_DTYPE)
    out["frame"], out["bin"], out["strength"] = frames, bins, 1.0
    return out[np.lexsort((out["bin"], out["frame"]))]


def record(probability: float, related: bool = False, **fields) -> dict:
    base = {
        "query_id": "q",
        "role": "negative",
        "look": 0,
        "work_id": 7,
        "related": related,
        "probability": probability,
        "work_checks": 1,
        "look_checks": 10,
        "n_works": 100_000,
        "refined": True,
        "confirms": True,
        "matched_peaks": 15,
        "checked_peaks": 48,
        "chance_peaks": 0.6,
    }
    return {**base, **fields}


def test_the_source_and_its_corpus_group_are_related_and_other_works_are_chance() -> None:
    paths = {1: "/m/a.ogg", 2: "/m/a-remix.ogg", 3: "/m/b.ogg", 4: "distractor:9"}
    groups = {"/m/a.ogg": "pkg:a", "/m/a-remix.ogg": "pkg:a", "/m/b.ogg": "pkg:b"}
    assert related_works("/m/a.ogg", paths, groups) == {1, 2}
    assert related_works("/m/b.ogg", paths, groups) == {3}
    # a never-indexed track holds no catalog work, and no group joins distractors
    assert related_works("/m/never.ogg", paths, groups) == set()


def test_a_copy_s_check_is_related_and_confirms_and_a_chance_work_s_check_does_not() -> None:
    rng = np.random.default_rng(5)
    fps = DEFAULT_SETTINGS.frames_per_second
    n = int(30 * fps)
    work = peaks(rng.integers(0, n, 400), rng.integers(10, N_BINS - 10, 400))
    other = peaks(rng.integers(0, n, 400), rng.integers(10, N_BINS - 10, 400))
    upload = work[(work["frame"] >= 5 * fps) & (work["frame"] < 15 * fps)]
    at = Alignment(1.0, 0.0, 10 * fps, 10 * fps)
    checks = [
        check_alignment(upload, reference_peaks(stored, N_BINS), at, DEFAULT_SETTINGS)
        for stored in (work, other)
    ]
    guesses = [(1, at, None), (2, at, None), (2, at, None)]
    rows = check_records("q", "positive", 3, 113, guesses, [*checks, None], {1}, DEFAULT_SETTINGS)
    assert [(r["work_id"], r["related"], r["look"]) for r in rows] == [(1, True, 3), (2, False, 3)]
    copy, chance = rows
    assert copy["confirms"] and copy["probability"] < 1e-6
    assert not chance["confirms"] and chance["probability"] > 1e-3
    assert copy["look_checks"] == chance["look_checks"] == 2  # the check that did not run is not
    assert chance["work_checks"] == 1


def test_paying_for_the_checks_run_makes_a_chance_check_a_duplicate_that_every_work_keeps_out():
    # the calibration study's chance check at 113 works (p 3.9e-8 over 3 checks of its work) in
    # a look of 6 checks, the median at 113 works
    rows = [
        record(3.9e-8, work_checks=3, look_checks=6),
        record(0.02),
        record(1.0, confirms=False),
        record(1e-30, related=True),  # the source: never counted as chance
    ]
    every, run = payments(rows[0])
    assert np.isclose(every, 3.9e-8 * 3 * 100_000) and np.isclose(run, 3.9e-8 * 3 * 6)
    summary = summarise(rows)
    assert summary["chance_checks"] == 3
    assert summary["at_or_below"]["1e-01"] == 2 and summary["at_or_below"]["1e-06"] == 1
    assert summary["duplicate"] == {"every work": 0, "checks run": 1}
    assert summary["suspect"] == {"every work": 0, "checks run": 1}
    assert summary["lowest"][0]["probability"] == 3.9e-8
    text = table(summary)
    assert "| checks run | 1 | 1 |" in text and "| every work | 0 | 0 |" in text


def test_watching_the_checks_leaves_screening_as_it_was() -> None:
    real = screening.best_peak_checks, screening.gather_evidence
    seen = []
    with watched_checks(lambda guesses, checks: seen.append((guesses, checks))):
        assert screening.best_peak_checks is not real[0]
        screening.best_peak_checks([], [], DEFAULT_SETTINGS, {})
    assert (screening.best_peak_checks, screening.gather_evidence) == real
    assert seen == [([], [])]


def test_a_file_that_is_not_a_run_s_records_is_one_error_line(tmp_path, capsys) -> None:
    good = json.dumps(record(0.5))
    for name, text in (
        ("empty", ""),
        ("not-json", "not json\n"),
        ("other-json", '{"a": 1}\n'),
        ("one-bad-line", good + "\n[1, 2]\n"),
        ("binary", b"\x88\xff\x00 not text"),
    ):
        path = tmp_path / f"{name}.jsonl"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        assert main(["table", str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and str(path) in err[0]
    assert main(["table", str(tmp_path / "missing.jsonl")]) == 2
    path = tmp_path / "good.jsonl"
    path.write_text(good + "\n")
    assert main(["table", str(path)]) == 0
    assert "1 guided peak checks" in capsys.readouterr().out
