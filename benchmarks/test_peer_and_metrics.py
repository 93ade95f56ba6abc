"""Chromaprint matcher against brute force; metrics on hand-made results."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.metrics import negative_rows, peer_threshold, positive_rows
from benchmarks.peer_chromaprint import SILENCE_ITEM, ChromaprintIndex
from benchmarks.queries import Query
from benchmarks.records import EngineResult, MatchRecord, PeerResult, QueryResult


def _brute(q, r, min_overlap=10):
    best = (-1.0, 0, 0)
    m, n = q.size, r.size
    for k in range(-(m - 1), n):
        lo, hi = max(0, -k), min(m, n - k)
        a, b = q[lo:hi], r[lo + k : hi + k]
        keep = (a != SILENCE_ITEM) & (b != SILENCE_ITEM)
        if keep.sum() < min_overlap:
            continue
        ber = np.bitwise_count(a[keep] ^ b[keep]).sum() / (32 * keep.sum())
        if 1 - ber > best[0] + 1e-12:
            best = (1 - ber, k, int(keep.sum()))
    return best


@pytest.mark.parametrize("seed", range(9))
def test_fft_matcher_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    r = rng.integers(0, 2**32, size=int(rng.integers(30, 300)), dtype=np.uint32)
    q = rng.integers(0, 2**32, size=int(rng.integers(12, 80)), dtype=np.uint32)
    if seed % 2 == 0:  # plant a noisy copy
        s = int(rng.integers(0, r.size - 12))
        n = min(q.size, r.size - s)
        q[:n] = r[s : s + n] ^ (rng.random(n) < 0.2).astype(np.uint32)
    if seed % 3 == 0:  # silence must not match silence
        q[:8] = SILENCE_ITEM
        r[-20:] = SILENCE_ITEM
    got = ChromaprintIndex({"r": r}).search(q)[0]
    score, k, overlap = _brute(q, r)
    assert got.score == pytest.approx(score)
    assert (got.offset_items, got.overlap_items) == (k, overlap)


def test_silence_alone_does_not_match():
    silence = np.full(40, SILENCE_ITEM, dtype=np.uint32)
    ref = np.concatenate([silence, np.arange(100, 300, dtype=np.uint32) * 7919])
    assert ChromaprintIndex({"r": ref}).search(silence) == []


def _q(track, role, variant="tempo 0.80", tempo=0.8):
    return Query(
        f"{track}|{variant}",
        track,
        role,
        variant,
        "time-stretch",
        "/x.flac",
        60.0,
        tempo,
        0.0,
        10.0,
        70.0,
        0.0,
        True,
    )


def _e(verdict, track=None, tempo=1.0, fmp=1e-9):
    ms = (
        (
            MatchRecord(
                work_id=1,
                path="/a",
                tempo_ratio=tempo,
                pitch_shift_semitones=0.1,
                false_match_probability=fmp,
                query_start_s=0.0,
                ref_start_s=10.0,
                track_id=track,
            ),
        )
        if track
        else ()
    )
    return EngineResult(verdict, ms, search_s=0.01, total_s=0.02)


def test_metrics_on_hand_made_results():
    results = [
        QueryResult(_q("a", "positive"), _e("duplicate", "a", 0.804), PeerResult("a", 0.9)),
        QueryResult(_q("b", "positive"), _e("duplicate", "a"), PeerResult("b", 0.6)),
        QueryResult(_q("c", "positive"), _e("suspect", "c"), PeerResult("c", 0.75)),
        QueryResult(_q("d", "positive"), _e("clean"), PeerResult("x", 0.95)),
        QueryResult(_q("n1", "negative"), _e("duplicate", "a"), PeerResult("a", 0.7)),
        QueryResult(_q("n2", "negative"), _e("clean"), PeerResult("b", 0.55)),
    ]
    thr = peer_threshold(results)
    assert thr == 0.7
    (row,) = positive_rows(results, thr)
    assert row.n == 4 and row.recall == 0.25 and row.suspect == 0.25
    assert row.wrong_duplicate == 0.25
    assert row.tempo_err_med_pct == pytest.approx(0.5)
    assert row.pitch_err_med_st == pytest.approx(0.1)
    assert row.align_err_med_s == pytest.approx(0.0)
    assert row.peer_recall == pytest.approx(2 / 4)  # a (0.9) and c (0.75) above 0.7
    (neg,) = negative_rows(results, thr)
    assert neg.false_positive == 0.5 and neg.peer_false_positive == 0.0
