"""The four-peak channel experiment (benchmarks.quad_channel): its keys survive a tempo change
and a pitch shift, and its ranking puts the altered work first among unrelated ones."""

from __future__ import annotations

import numpy as np

from audiodup.fingerprint import Fingerprint
from audiodup.peaks import PEAK_DTYPE
from audiodup.settings import DEFAULT_SETTINGS as S
from benchmarks.quad_channel import (
    ALL_COORDINATES,
    CATALOG_FANOUT,
    QUERY_FANOUT,
    quad_candidates,
    quad_hashes,
    quad_index,
    split_index,
)


def random_peaks(seed: int, seconds: float = 60.0, per_second: float = 7.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * per_second)
    peaks = np.zeros(n, PEAK_DTYPE)
    peaks["frame"] = np.sort(rng.integers(0, int(seconds * S.frames_per_second), n))
    peaks["bin"] = rng.uniform(40, 300, n)
    peaks["strength"] = rng.uniform(1, 20, n)
    return peaks


def altered(peaks: np.ndarray, tempo: float, semitones: float) -> np.ndarray:
    """The peaks played ``tempo`` times faster and ``semitones`` higher."""
    out = peaks.copy()
    out["frame"] = np.round(peaks["frame"] / tempo).astype(np.uint32)
    out["bin"] = peaks["bin"] + semitones * S.bins_per_semitone
    return out


def test_quad_keys_survive_a_tempo_change_and_a_pitch_shift() -> None:
    peaks = random_peaks(1)
    stored = set(quad_hashes(peaks, CATALOG_FANOUT).keys.tolist())
    for tempo, semitones in [(1.0, 0.0), (1.25, 0.0), (0.85, -2.0), (1.1, 3.0)]:
        query = quad_hashes(altered(peaks, tempo, semitones), QUERY_FANOUT, probe=ALL_COORDINATES)
        kept = len(stored & set(query.keys.tolist())) / len(stored)
        assert kept > (0.99 if tempo == 1.0 else 0.5), (tempo, semitones, kept)
    unrelated = quad_hashes(random_peaks(2), QUERY_FANOUT, probe=ALL_COORDINATES)
    assert len(stored & set(unrelated.keys.tolist())) / len(stored) < 0.05


def test_the_altered_work_leads_the_quad_candidates() -> None:
    works = {work_id: random_peaks(100 + work_id) for work_id in range(1, 41)}
    source = works[23]
    # work 24 holds 5 s of work 23; work 25 all of it twice, in 16 shuffled pieces: more hits
    # than work 23's own, but fewer in any one alignment
    works[24] = np.sort(np.concatenate([works[24], source[source["frame"] < 215]]), order="frame")
    pieces = np.array_split(source, 8)
    order = np.random.default_rng(0).permutation(16) % 8
    shuffled, start = [], 0
    for i in order:
        piece = pieces[i].copy()
        piece["frame"] = piece["frame"] - piece["frame"][0] + start
        start = int(piece["frame"][-1]) + 5
        shuffled.append(piece)
    works[25] = np.concatenate(shuffled)
    index = quad_index(works.items())
    assert np.all(np.diff(index["keys"]) >= 0)
    upload = Fingerprint(
        peaks=altered(source, 1.2, -1.0),
        chroma=np.zeros((0, 12), np.float32),
        tuning_semitones=0.0,
        duration_s=50.0,
        recipe=S.recipe,
    )
    assert quad_candidates([index], upload, top=3) == [23, 25, 24]
    # a budget below the upload's hits keeps its rarest keys and still finds the work first
    assert quad_candidates([index], upload, budget=300, top=3)[0] == 23
    # split as shard groups would hold it, each group with its share of the budget
    assert quad_candidates(split_index(index, 4), upload, top=3) == [23, 25, 24]
