"""Tests for audiodup.chroma: tuning estimate, chroma and key/tempo-invariant segment vectors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from audiodup.chroma import chroma_frames, estimate_tuning, segment_vectors
from audiodup.settings import DEFAULT_SETTINGS
from audiodup.spectral import log_spectrogram
from audiodup.synth import synthesize_work

S = DEFAULT_SETTINGS
SR = S.sample_rate_hz
DIM = int(np.prod(S.chroma_coeffs))
C4_HZ = 261.6256


def harmonic_tone(freq_hz: float, duration_s: float = 4.0, harmonics: int = 6) -> np.ndarray:
    t = np.arange(int(duration_s * SR)) / SR
    y = sum(0.3 / h * np.sin(2 * np.pi * freq_hz * h * t) for h in range(1, harmonics + 1))
    return np.asarray(y, dtype=np.float32)


def circular_difference(a: float, b: float) -> float:
    return abs((a - b + 0.5) % 1.0 - 0.5)


@pytest.fixture(scope="module")
def music_chroma() -> np.ndarray:
    spec = log_spectrogram(synthesize_work(31, duration_s=40.0, sr=SR), S)
    return chroma_frames(spec, estimate_tuning(spec), S.chroma_fps)


@pytest.mark.parametrize("detune", [-0.4, -0.25, -0.1, 0.0, 0.15, 0.3, 0.45])
@pytest.mark.parametrize("base_hz", [220.0, C4_HZ, 440.0])
def test_estimate_tuning_recovers_a_fractional_shift(base_hz: float, detune: float) -> None:
    spec = log_spectrogram(harmonic_tone(base_hz * 2 ** (detune / 12)), S)
    tuning = estimate_tuning(spec)
    assert -0.5 <= tuning < 0.5
    assert circular_difference(tuning, detune) < 0.05


def test_estimate_tuning_of_detuned_music() -> None:
    music = synthesize_work(32, duration_s=12.0, sr=SR)
    reference = estimate_tuning(log_spectrogram(music, S))
    # resampling by 2**(0.3/12) raises every frequency by 0.3 semitones
    ratio = 2 ** (0.3 / 12)
    positions = np.arange(0, len(music) - 1, ratio)
    sharp = np.interp(positions, np.arange(len(music)), music).astype(np.float32)
    shifted = estimate_tuning(log_spectrogram(sharp, S))
    assert circular_difference(shifted - reference, 0.3) < 0.05


@pytest.mark.parametrize("semitone", range(12))
def test_chroma_puts_a_note_in_its_pitch_class(semitone: int) -> None:
    # classes are relative to fmin (C); detune slightly to exercise the tuning compensation
    freq_hz = C4_HZ * 2 ** ((semitone + 0.3) / 12)
    spec = log_spectrogram(harmonic_tone(freq_hz), S)
    chroma = chroma_frames(spec, estimate_tuning(spec), S.chroma_fps)
    assert int(np.argmax(chroma.mean(axis=0))) == semitone


def test_chroma_shape_and_normalisation(music_chroma: np.ndarray) -> None:
    assert music_chroma.dtype == np.float32
    assert music_chroma.shape[1] == 12
    norms = np.linalg.norm(music_chroma, axis=1)
    np.testing.assert_allclose(norms[norms > 1e-6], 1.0, atol=1e-5)
    assert np.mean(norms > 1e-6) > 0.9


def test_chroma_frame_rate_is_chroma_fps(music_chroma: np.ndarray) -> None:
    """Segment lengths and every time the chroma channel reports assume ``chroma_fps``."""
    assert len(music_chroma) == pytest.approx(40.0 * S.chroma_fps, rel=0.01)


def test_transposed_music_rotates_chroma() -> None:
    music = synthesize_work(33, duration_s=10.0, sr=SR)
    base_spec = log_spectrogram(music, S)
    base = chroma_frames(base_spec, estimate_tuning(base_spec), S.chroma_fps)
    # resample up by exactly two semitones (and 12 % faster): chroma rotates by two classes
    ratio = 2 ** (2 / 12)
    positions = np.arange(0, len(music) - 1, ratio)
    higher = np.interp(positions, np.arange(len(music)), music).astype(np.float32)
    spec = log_spectrogram(higher, S)
    moved = chroma_frames(spec, estimate_tuning(spec), S.chroma_fps)
    profile, moved_profile = base.mean(axis=0), moved.mean(axis=0)
    scores = [float(np.dot(np.roll(profile, k), moved_profile)) for k in range(12)]
    assert int(np.argmax(scores)) == 2


def test_chroma_of_short_input_is_empty_not_an_error() -> None:
    spec = log_spectrogram(harmonic_tone(440.0, duration_s=0.05), S)
    chroma = chroma_frames(spec, 0.0, S.chroma_fps)
    assert chroma.shape == (0, 12)


@given(
    chroma=arrays(
        np.float64,
        st.tuples(st.integers(20, 120), st.just(12)),
        elements=st.floats(0.0, 1.0, allow_nan=False),
    ),
    shift=st.integers(1, 11),
)
def test_segment_vectors_ignore_key_changes(chroma: np.ndarray, shift: int) -> None:
    """Rolling the pitch-class axis (a transposition) leaves the vectors unchanged."""
    args = (S.chroma_fps, 4.0, 1.0, S.segment_steps)
    vectors, starts = segment_vectors(chroma, *args)
    rolled, rolled_starts = segment_vectors(np.roll(chroma, shift, axis=1), *args)
    assert vectors.shape == rolled.shape
    np.testing.assert_array_equal(starts, rolled_starts)
    np.testing.assert_allclose(rolled, vectors, atol=1e-5)


def test_segment_vectors_shape_and_norm(music_chroma: np.ndarray) -> None:
    vectors, starts = segment_vectors(
        music_chroma, S.chroma_fps, S.segment_s, S.segment_hop_s, S.segment_steps
    )
    duration_s = len(music_chroma) / S.chroma_fps
    assert vectors.shape == (len(starts), DIM)
    assert vectors.dtype == np.float32
    assert len(starts) == int((duration_s - S.segment_s) // S.segment_hop_s) + 1
    np.testing.assert_allclose(np.diff(starts), S.segment_hop_s)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_segment_vectors_of_too_short_chroma_are_empty(music_chroma: np.ndarray) -> None:
    short = music_chroma[: int(S.segment_s * S.chroma_fps * 0.5)]
    vectors, starts = segment_vectors(
        short, S.chroma_fps, S.segment_s, S.segment_hop_s, S.segment_steps
    )
    assert vectors.shape == (0, DIM)
    assert len(starts) == 0


def test_segment_vectors_keep_chroma_coeffs(music_chroma: np.ndarray) -> None:
    args = (music_chroma, S.chroma_fps, S.segment_s, S.segment_hop_s, S.segment_steps)
    default, _ = segment_vectors(*args)
    fewer, _ = segment_vectors(*args, coeffs=(4, 3))
    assert fewer.shape == (len(default), 12)
    np.testing.assert_allclose(np.linalg.norm(fewer, axis=1), 1.0, atol=1e-5)
    # the kept coefficients are a corner of the default ones (before normalisation)
    corner = default.reshape(len(default), 6, 7)[:, :3, :4].reshape(len(default), -1)
    corner /= np.linalg.norm(corner, axis=1, keepdims=True)
    np.testing.assert_allclose(fewer, corner, atol=1e-5)


@pytest.mark.parametrize("tempo_ratio", [0.6, 0.8, 1.25, 1.6])
def test_time_scale_compensates_a_tempo_change(
    music_chroma: np.ndarray, tempo_ratio: float
) -> None:
    """Chroma played at another tempo, cut with ``time_scale = 1 / tempo_ratio``, gives the
    same vectors as the original."""
    n = len(music_chroma)
    positions = np.arange(0, n - 1, tempo_ratio)
    lo = np.floor(positions).astype(int)
    w = (positions - lo)[:, None]
    stretched = music_chroma[lo] * (1 - w) + music_chroma[np.minimum(lo + 1, n - 1)] * w
    scale = 1.0 / tempo_ratio
    original, _ = segment_vectors(
        music_chroma, S.chroma_fps, S.segment_s, S.segment_hop_s, S.segment_steps
    )
    altered, _ = segment_vectors(
        stretched, S.chroma_fps, S.segment_s, S.segment_hop_s * scale, S.segment_steps, scale
    )
    k = min(len(original), len(altered))
    assert k >= 8
    similarity = np.sum(original[:k] * altered[:k], axis=1)
    assert np.median(similarity) > 0.95
    # and unrelated windows are clearly less similar
    assert np.median(np.sum(original[:k] * np.roll(altered[:k], 3, axis=0), axis=1)) < np.median(
        similarity
    )


# --- agreement with librosa, the reference implementation -----------------------------------


@pytest.mark.parametrize("detune", [-0.3, 0.0, 0.2])
def test_tuning_agrees_with_librosa(detune: float) -> None:
    import librosa

    sr = DEFAULT_SETTINGS.sample_rate_hz
    music = synthesize_work(11, 20.0, sr)
    shifted = librosa.effects.pitch_shift(music, sr=sr, n_steps=detune) if detune else music
    ours = estimate_tuning(log_spectrogram(shifted, DEFAULT_SETTINGS))
    theirs = float(librosa.estimate_tuning(y=shifted, sr=sr))  # fractions of a semitone
    gap = (ours - theirs + 0.5) % 1.0 - 0.5  # both are fractions of a semitone
    assert abs(gap) < 0.1


def test_chroma_agrees_with_librosa_chroma() -> None:
    import librosa

    sr = DEFAULT_SETTINGS.sample_rate_hz
    music = synthesize_work(12, 20.0, sr)
    spec = log_spectrogram(music, DEFAULT_SETTINGS)
    ours = chroma_frames(spec, estimate_tuning(spec), DEFAULT_SETTINGS.chroma_fps)
    hop = int(round(sr / DEFAULT_SETTINGS.chroma_fps))
    theirs = librosa.feature.chroma_stft(y=music, sr=sr, hop_length=hop, n_fft=4096)
    # our pitch class 0 is that of fmin (C2), librosa's row 0 is C too
    n = min(len(ours), theirs.shape[1])
    theirs = theirs[:, :n].T
    theirs = theirs - theirs.mean(axis=1, keepdims=True)
    theirs /= np.maximum(np.linalg.norm(theirs, axis=1, keepdims=True), 1e-9)
    agreement = [
        float(np.median(np.sum(np.roll(ours[:n], shift, axis=1) * theirs, axis=1)))
        for shift in range(12)
    ]
    # the pitch classes line up (no rotation fits better), and the frames broadly agree
    # (librosa compresses and frames differently, so not exactly)
    assert int(np.argmax(agreement)) == 0
    assert agreement[0] > 0.45
