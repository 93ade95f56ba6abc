"""Alterations produce what their truth says (run: pytest benchmarks/)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.alterations import (
    BY_NAME,
    QUICK_VARIANTS,
    SMOKE_VARIANTS,
    VARIANTS,
    Truth,
    apply,
    mp3_roundtrip,
    verify_pedalboard_conventions,
)

SR = 22050


def _music(seconds: float, seed: int = 0) -> np.ndarray:
    """Non-periodic test signal: random tone bursts, so alignments are unambiguous."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    y = np.zeros(n, np.float32)
    t = np.arange(SR // 4) / SR
    for start in range(0, n - t.size, t.size):
        f = rng.uniform(200, 2000)
        y[start : start + t.size] = 0.3 * np.sin(2 * np.pi * f * t) * np.hanning(t.size)
    return y


def _dominant_hz(y: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    return float(np.argmax(spec) * SR / y.size)


def test_pedalboard_conventions_hold():
    c = verify_pedalboard_conventions(SR)
    assert c["length_ratio_at_stretch_factor_0.8"] == pytest.approx(1.25, abs=0.02)
    assert c["tone_440hz_plus12_semitones_hz"] == pytest.approx(880, abs=5)


def test_variant_lists_are_consistent():
    assert len({v.name for v in VARIANTS}) == len(VARIANTS)
    assert len({v.slug for v in VARIANTS}) == len(VARIANTS)
    for name in QUICK_VARIANTS + SMOKE_VARIANTS:
        assert name in BY_NAME


@pytest.mark.parametrize("tempo", [0.5, 0.8, 1.2, 2.0])
def test_time_stretch_length_follows_tempo_ratio(tempo):
    y = _music(10)
    v = BY_NAME[f"tempo {tempo:.2f}"]
    out, truth, _ = apply(v, y, SR, Truth(ref_end_s=10), np.random.default_rng(0))
    assert truth.tempo_ratio == pytest.approx(tempo)
    assert out.size / y.size == pytest.approx(1 / tempo, rel=0.01)


def test_speed_changes_tempo_and_pitch_together():
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(4 * SR) / SR)).astype(np.float32)
    out, truth, _ = apply(BY_NAME["speed 1.25"], tone, SR, Truth(), np.random.default_rng(0))
    assert truth.tempo_ratio == pytest.approx(1.25)
    assert truth.pitch_shift_semitones == pytest.approx(12 * math.log2(1.25))
    assert out.size / tone.size == pytest.approx(0.8, rel=0.01)
    assert _dominant_hz(out) == pytest.approx(550, abs=3)


def test_pitch_shift_keeps_length():
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(4 * SR) / SR)).astype(np.float32)
    out, truth, _ = apply(BY_NAME["pitch +2"], tone, SR, Truth(), np.random.default_rng(0))
    assert out.size == tone.size
    assert truth.pitch_shift_semitones == 2
    assert _dominant_hz(out) == pytest.approx(440 * 2 ** (2 / 12), abs=3)


def test_excerpt_truth_points_at_the_source():
    y = _music(60)
    out, truth, _ = apply(
        BY_NAME["excerpt 8 s"], y, SR, Truth(ref_end_s=60), np.random.default_rng(3)
    )
    start = int(round(truth.ref_start_s * SR))
    np.testing.assert_array_equal(out, y[start : start + out.size])
    assert truth.ref_end_s - truth.ref_start_s == pytest.approx(8)


def test_prepend_and_pad_shift_the_query_offset():
    y, other = _music(30, 1), _music(40, 2)
    out, truth, _ = apply(
        BY_NAME["prepend 20 s other"],
        y,
        SR,
        Truth(ref_end_s=30),
        np.random.default_rng(0),
        other=other,
    )
    assert truth.query_offset_s == pytest.approx(20)
    np.testing.assert_array_equal(out[20 * SR :], y)
    out, truth, _ = apply(
        BY_NAME["silence pad 5+10 s"], y, SR, Truth(ref_end_s=30), np.random.default_rng(0)
    )
    assert truth.query_offset_s == 5 and out.size == y.size + 15 * SR


def test_cut_and_loop_lengths():
    y = _music(40)
    out, truth, _ = apply(BY_NAME["cut middle 25 %"], y, SR, Truth(), np.random.default_rng(0))
    assert out.size / y.size == pytest.approx(0.75, abs=0.01) and not truth.contiguous
    out, truth, _ = apply(BY_NAME["loop +50 %"], y, SR, Truth(), np.random.default_rng(0))
    assert out.size / y.size == pytest.approx(1.5, abs=0.01) and not truth.contiguous


def test_chain_excerpt_after_tempo_maps_back_to_source_time():
    y = _music(60)
    v = BY_NAME["chain: speed 1.25 + mp3 64k + 30 s"]
    out, truth, _ = apply(v, y, SR, Truth(ref_end_s=60), np.random.default_rng(0))
    assert out.size == 30 * SR
    assert truth.ref_end_s - truth.ref_start_s == pytest.approx(30 * 1.25)
    assert truth.ref_start_s >= 0 and truth.ref_end_s <= 60 + 1e-6


def test_mp3_roundtrip_is_time_aligned():
    y = _music(8)
    out = mp3_roundtrip(y, SR, 64)
    assert out.size == y.size
    corr = [np.dot(y[SR : 7 * SR], out[SR + k : 7 * SR + k]) for k in range(-20, 21)]
    assert abs(int(np.argmax(corr)) - 20) <= 2


@pytest.mark.parametrize("snr", [0, 10])
def test_white_noise_snr(snr):
    y = _music(10)
    out, _, _ = apply(BY_NAME[f"white noise {snr} dB"], y, SR, Truth(), np.random.default_rng(0))
    noise = out - y  # no peak normalization happens at this level
    measured = 10 * np.log10(np.mean(y.astype(np.float64) ** 2) / np.mean(noise**2))
    assert measured == pytest.approx(snr, abs=0.3)


def test_speed_ramp_drifts_pitch_and_tempo_from_start_to_end():
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(20 * SR) / SR)).astype(np.float32)
    out, truth, notes = apply(
        BY_NAME["speed drift 1.00-1.08"], tone, SR, Truth(ref_end_s=20), np.random.default_rng(0)
    )
    mean = 0.08 / math.log(1.08)  # source length / query length of a linear ramp
    assert out.size / tone.size == pytest.approx(1 / mean, rel=0.002)
    assert truth.tempo_ratio == pytest.approx(mean, rel=0.002) and not truth.contiguous
    assert "tempo ramp 1.00 -> 1.08" in notes[0]
    second = SR
    assert _dominant_hz(out[:second]) == pytest.approx(440 * 1.002, abs=3)  # the first second
    assert _dominant_hz(out[-second:]) == pytest.approx(440 * 1.078, abs=3)  # the last one


def test_tempo_ramp_keeps_the_key():
    from benchmarks import stretchers

    if not stretchers.available("rb-r3"):
        pytest.skip(stretchers.missing_message("rb-r3"))
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(20 * SR) / SR)).astype(np.float32)
    out, truth, _ = apply(
        BY_NAME["tempo drift 1.00-1.08 [rb-r3]"],
        tone,
        SR,
        Truth(ref_end_s=20),
        np.random.default_rng(0),
    )
    mean = 0.08 / math.log(1.08)
    assert out.size / tone.size == pytest.approx(1 / mean, rel=0.01)
    assert truth.pitch_shift_semitones == 0.0
    for part in (out[: 2 * SR], out[-2 * SR :]):
        assert stretchers.dominant_frequency_hz(part, SR) == pytest.approx(440, abs=4)
