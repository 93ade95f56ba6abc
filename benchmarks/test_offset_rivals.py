"""benchmarks/offset_rivals.py: the peaks at an alignment against those a beat or a bar away."""

from __future__ import annotations

import numpy as np

from audiodup.peakcheck import Alignment, reference_peaks
from audiodup.peaks import PEAK_DTYPE
from audiodup.settings import DEFAULT_SETTINGS
from benchmarks.offset_rivals import offset_counts, summary

N_BINS = DEFAULT_SETTINGS.bins_per_octave * DEFAULT_SETTINGS.n_octaves


def peaks(frames, bins) -> np.ndarray:
    out = np.zeros(len(frames), dtype=PEAK_DTYPE)
    out["frame"], out["bin"], out["strength"] = frames, bins, 1.0
    return out[np.lexsort((out["bin"], out["frame"]))]


def test_a_bar_that_repeats_lines_up_as_well_a_bar_away_and_music_that_moves_does_not() -> None:
    rng = np.random.default_rng(3)
    fps = DEFAULT_SETTINGS.frames_per_second
    bar = int(2 * fps)
    one_bar = rng.integers(0, bar, 12), rng.integers(10, N_BINS - 10, 12)
    looped = peaks(
        np.concatenate([one_bar[0] + k * bar for k in range(20)]), np.tile(one_bar[1], 20)
    )
    moving = peaks(rng.integers(0, 20 * bar, 240), rng.integers(10, N_BINS - 10, 240))
    at_zero = Alignment(1.0, 0.0, 10 * bar, 10 * bar)
    for work, expected in ((looped, (0.95, 1.0)), (moving, (0.0, 0.3))):
        at, rival, shift = offset_counts(
            work, reference_peaks(work, N_BINS), at_zero, DEFAULT_SETTINGS
        )
        assert at >= 200
        assert expected[0] <= rival / at <= expected[1]
        if work is looped:
            assert abs(abs(shift) % 2.0) < 0.05 or abs(abs(shift) % 2.0 - 2.0) < 0.05


def test_the_summary_is_per_verdict() -> None:
    rows = [
        {"verdict": "duplicate", "ratio": 0.2},
        {"verdict": "duplicate", "ratio": 0.95},
        {"verdict": "clean"},
    ]
    out = summary(rows)
    assert out["duplicate"]["uploads"] == 2 and out["duplicate"]["at_least_0.9"] == 1
    assert "clean" not in out
