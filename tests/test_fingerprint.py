"""Tests for audiodup.fingerprint: the stored fingerprint, its serialisation, and robustness of
the whole feature pipeline (decode -> spectrogram -> peaks/chroma -> hashes) to any input."""

from __future__ import annotations

import dataclasses
import gc
import io
import sys
import threading

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from audiodup.audio import audio_from_samples, load_audio
from audiodup.errors import AudiodupError, CatalogError
from audiodup.fingerprint import (
    Fingerprint,
    UploadFingerprints,
    fingerprint_audio,
    fingerprint_hashes,
)
from audiodup.peaks import PEAK_DTYPE
from audiodup.settings import CHROMA_LEVELS, DEFAULT_SETTINGS, PEAK_BIN_STEPS, Settings
from audiodup.synth import synthesize_work

S = DEFAULT_SETTINGS


@pytest.fixture(scope="module")
def work_audio(catalog_files):
    return load_audio(catalog_files["work_02"])


@pytest.fixture(scope="module")
def work_fingerprint(work_audio) -> Fingerprint:
    return fingerprint_audio(work_audio)


def test_fingerprint_fields(work_audio, work_fingerprint: Fingerprint) -> None:
    fp = work_fingerprint
    assert fp.recipe == S.recipe
    assert fp.duration_s == pytest.approx(work_audio.duration_s)
    assert fp.peaks.dtype == PEAK_DTYPE
    assert np.all(np.diff(fp.peaks["frame"].astype(np.int64)) >= 0)
    n_frames = 1 + (len(work_audio.samples) - S.n_fft) // S.hop_length
    assert fp.peaks["frame"].max() < n_frames
    # about peaks_per_second peaks over the whole work
    assert len(fp.peaks) == pytest.approx(S.peaks_per_second * fp.duration_s, rel=0.3)
    assert fp.chroma.shape[1] == 12 and fp.chroma.dtype == np.float32
    assert np.all(np.isfinite(fp.chroma))
    assert -0.5 <= fp.tuning_semitones < 0.5


def test_fingerprint_is_deterministic(work_audio, work_fingerprint: Fingerprint) -> None:
    again = fingerprint_audio(work_audio)
    assert np.array_equal(again.peaks, work_fingerprint.peaks)
    assert np.array_equal(again.chroma, work_fingerprint.chroma)
    assert again.to_bytes() == work_fingerprint.to_bytes()


def test_query_fingerprint_is_denser(work_audio, work_fingerprint: Fingerprint) -> None:
    query = fingerprint_audio(work_audio, query=True)
    assert len(query.peaks) > len(work_fingerprint.peaks)
    catalog_hashes = fingerprint_hashes(work_fingerprint)
    query_hashes = fingerprint_hashes(query, query=True)
    assert len(query_hashes) > len(catalog_hashes)
    # the query keys cover the catalog keys of the same audio
    assert np.isin(catalog_hashes.keys, query_hashes.keys).mean() > 0.95


def test_recipe_comes_from_settings(work_audio) -> None:
    other = Settings(peaks_per_second=5.0)
    assert other.recipe != S.recipe
    assert fingerprint_audio(work_audio, other).recipe == other.recipe


def test_to_bytes_round_trip(work_fingerprint: Fingerprint) -> None:
    fp = work_fingerprint
    blob = fp.to_bytes()
    assert isinstance(blob, bytes)
    back = Fingerprint.from_bytes(blob)
    assert back.recipe == fp.recipe
    assert back.tuning_semitones == fp.tuning_semitones
    assert back.duration_s == fp.duration_s
    assert back.peaks.dtype == PEAK_DTYPE
    assert np.array_equal(back.peaks["frame"], fp.peaks["frame"])
    np.testing.assert_allclose(back.peaks["bin"], fp.peaks["bin"], atol=1 / 32 + 1e-6)
    np.testing.assert_allclose(back.peaks["strength"], fp.peaks["strength"], atol=0.051)
    assert back.chroma.shape == fp.chroma.shape
    assert back.chroma.dtype == np.float32
    np.testing.assert_allclose(back.chroma, fp.chroma, atol=0.05)
    # a second round trip is lossless
    assert Fingerprint.from_bytes(back.to_bytes()).to_bytes() == back.to_bytes()


def test_to_bytes_is_compact(work_fingerprint: Fingerprint) -> None:
    per_second = len(work_fingerprint.to_bytes()) / work_fingerprint.duration_s
    assert per_second < 200


def test_empty_fingerprint_round_trips() -> None:
    empty = Fingerprint(
        peaks=np.zeros(0, PEAK_DTYPE),
        chroma=np.zeros((0, 12), np.float32),
        tuning_semitones=0.0,
        duration_s=3.0,
        recipe=S.recipe,
    )
    back = Fingerprint.from_bytes(empty.to_bytes())
    assert len(back.peaks) == 0 and back.chroma.shape == (0, 12)
    assert len(fingerprint_hashes(back)) == 0


def _former_npz_blob(fp: Fingerprint) -> bytes:
    """A blob as catalogs made before 2026-12-01 hold it: an .npz archive of the same fields."""
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        frame_step=np.diff(fp.peaks["frame"], prepend=np.uint32(0)).astype(np.uint32),
        qbin=np.round(fp.peaks["bin"] * PEAK_BIN_STEPS).astype(np.uint16),
        strength=np.round(np.clip(fp.peaks["strength"], 0, 25.5) * 10).astype(np.uint8),
        chroma=np.round(np.clip(fp.chroma, -1, 1) * CHROMA_LEVELS).astype(np.int8),
        meta=np.array([fp.tuning_semitones, fp.duration_s]),
        recipe=np.array(fp.recipe),
    )
    return buffer.getvalue()


def test_fingerprints_stored_in_the_former_form_read_the_same(work_fingerprint) -> None:
    former = _former_npz_blob(work_fingerprint)
    current = work_fingerprint.to_bytes()
    _same_fingerprint(Fingerprint.from_bytes(former), Fingerprint.from_bytes(current))
    assert len(current) < len(former)


def synthetic_fingerprint() -> Fingerprint:
    rng = np.random.default_rng(7)
    peaks = np.zeros(300, PEAK_DTYPE)
    peaks["frame"] = np.cumsum(rng.integers(0, 9, 300))
    peaks["bin"] = rng.integers(0, 400 * PEAK_BIN_STEPS, 300) / PEAK_BIN_STEPS
    peaks["strength"] = rng.integers(0, 255, 300) / 10
    chroma = rng.integers(-CHROMA_LEVELS, CHROMA_LEVELS + 1, (100, 12)) / CHROMA_LEVELS
    return Fingerprint(peaks, chroma.astype(np.float32), 0.25, 12.5, S.recipe)


def test_a_fingerprint_round_trips_exactly_once_quantised() -> None:
    fp = synthetic_fingerprint()
    _same_fingerprint(Fingerprint.from_bytes(fp.to_bytes()), fp)


@given(cut=st.integers(min_value=0, max_value=10_000), flips=st.lists(st.integers(0, 10_000)))
@example(cut=10_000, flips=[5])  # the peak count: sizes the data cannot hold
@example(cut=10_000, flips=[29])  # the recipe id's length
@example(cut=10_000, flips=[40])  # a byte of the recipe id
def test_a_damaged_stored_fingerprint_is_reported_as_damaged(cut: int, flips: list[int]) -> None:
    fp = synthetic_fingerprint()
    blob = bytearray(fp.to_bytes())
    for at in flips:
        blob[at % len(blob)] ^= 0xFF
    damaged = bytes(blob[: min(cut, len(blob))])
    try:
        back = Fingerprint.from_bytes(damaged)
    except CatalogError as exc:
        assert "damaged" in str(exc)
    else:  # a flip in the tuning, duration or strengths reads as other values of the right size
        assert len(back.peaks) == len(fp.peaks) and back.chroma.shape == fp.chroma.shape


class _CycleWithFinalizer:
    """Garbage whose collection runs Python code, so the collector may switch threads."""

    def __init__(self) -> None:
        self.other = self

    def __del__(self) -> None:
        sum(range(100))


@pytest.mark.parametrize("form", ["current", "former npz"])
def test_fingerprints_are_read_back_in_many_threads_at_once(work_fingerprint, form) -> None:
    # Dask workers read stored fingerprints in threads; np.load's header parse (ast) is not
    # thread-safe on CPython 3.11: unguarded, this load failed the former form 2 runs in 3.
    blob = work_fingerprint.to_bytes() if form == "current" else _former_npz_blob(work_fingerprint)
    failures: list[BaseException] = []

    def read_many(depth: int) -> None:
        if depth:  # threads at different stack depths, as the recursion check compares them
            return read_many(depth - 1)
        for _ in range(400):
            _CycleWithFinalizer()
            try:
                assert Fingerprint.from_bytes(blob).duration_s == work_fingerprint.duration_s
            except BaseException as exc:  # noqa: BLE001 - every failure is the finding
                failures.append(exc)

    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    sys.setswitchinterval(1e-6)
    gc.set_threshold(5)
    try:
        threads = [threading.Thread(target=read_many, args=(depth,)) for depth in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*thresholds)
    assert failures == []


def test_stored_fingerprint_regenerates_the_same_hashes(work_fingerprint: Fingerprint) -> None:
    """The catalog rebuilds and compacts its index from stored fingerprints, so hashes of the
    stored form must be the hashes that were indexed when the work was added."""
    original = fingerprint_hashes(work_fingerprint)
    stored = fingerprint_hashes(Fingerprint.from_bytes(work_fingerprint.to_bytes()))
    assert len(stored) == len(original)
    assert np.mean(stored.keys == original.keys) > 0.99


# --- any input: only audiodup errors, and finite results -------------------------------------


@st.composite
def signals(draw) -> tuple[np.ndarray, int]:
    """Synthetic signals of arbitrary kind, length, sample rate, amplitude and channel count."""
    rate = draw(
        st.one_of(
            st.sampled_from([1, 3, 50, 4000, 8000, 11025, 22050, 44100, 96000, 192000]),
            st.integers(1, 200_000),
        )
    )
    duration_s = draw(st.floats(0.0, 8.0))
    n = min(int(rate * duration_s), 1_600_000)
    kind = draw(
        st.sampled_from(["noise", "sine", "music", "impulse", "constant", "square", "sparse_nan"])
    )
    amplitude = draw(
        st.one_of(
            st.sampled_from([0.0, 1e-9, 1e-4, 1.0, 32768.0, 1e30, 3e38]),
            st.floats(1e-12, 1e12),
        )
    )
    channels = draw(st.sampled_from([0, 1, 2, 6]))  # 0: a 1-d array
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    t = np.arange(n) / rate
    if kind == "noise":
        y = rng.standard_normal(n)
    elif kind == "sine":
        y = np.sin(2 * np.pi * rng.uniform(20, max(rate / 2, 21)) * t)
    elif kind == "music":
        music = synthesize_work(1, 8.0, sr=8000)
        y = np.interp(t, np.arange(len(music)) / 8000, music)
    elif kind == "impulse":
        y = np.zeros(n)
        y[: min(n, 1)] = 1.0
    elif kind == "constant":
        y = np.ones(n)
    elif kind == "square":
        y = np.sign(np.sin(2 * np.pi * 3.0 * t))
    else:
        y = rng.standard_normal(n)
        y[rng.random(n) < 0.005] = np.nan
    y = (y * amplitude).astype(np.float32) if amplitude < 3.4e38 else y * amplitude
    if channels:
        y = np.repeat(y[:, None], channels, axis=1) * np.linspace(1, -1, channels)
    return y, rate


def run_pipeline(samples: np.ndarray, rate: int) -> Fingerprint | None:
    """Everything a catalog or a query does with audio; None when audiodup refuses the input."""
    try:
        audio = audio_from_samples(samples, rate)
        fingerprints = []
        for query in (False, True):
            fp = fingerprint_audio(audio, query=query)
            fingerprint_hashes(fp, query=query)
            fingerprint_hashes(Fingerprint.from_bytes(fp.to_bytes()), query=query)
            fingerprints.append(fp)
    except AudiodupError:
        return None
    return fingerprints[0]


@given(signal=signals())
def test_pipeline_raises_only_audiodup_errors(signal: tuple[np.ndarray, int]) -> None:
    run_pipeline(*signal)


@given(
    samples=arrays(
        np.float64,
        st.integers(0, 600),
        elements=st.floats(allow_nan=True, allow_infinity=True),
    ),
    rate=st.integers(1, 200),
)
def test_pipeline_on_arbitrary_float_values(samples: np.ndarray, rate: int) -> None:
    run_pipeline(samples, rate)


@given(signal=signals())
@example(signal=(np.tile(np.float32([3e38, -3e38]), 20_000), 11025))
@example(signal=(np.full(40_000, 2e38, np.float32), 11025))
def test_accepted_audio_is_finite(signal: tuple[np.ndarray, int]) -> None:
    """Whatever audiodup accepts must come out finite: NaN samples poison every comparison."""
    samples, rate = signal
    try:
        audio = audio_from_samples(samples, rate)
    except AudiodupError:
        return
    assert np.all(np.isfinite(audio.samples))
    fp = fingerprint_audio(audio, query=True)
    assert np.all(np.isfinite(fp.chroma))
    assert np.isfinite(fp.tuning_semitones)
    assert np.all(np.isfinite(fp.peaks["bin"])) and np.all(np.isfinite(fp.peaks["strength"]))


def test_a_slowed_view_is_the_upload_played_slower(work_audio) -> None:
    """At ``time_scale=2`` the query is analysed with half the hop and its frames counted as
    ordinary ones: the same peaks at twice the frame numbers, the same pitch, twice the length."""
    as_is = fingerprint_audio(work_audio, query=True)
    slowed = fingerprint_audio(work_audio, query=True, time_scale=2.0)
    assert slowed.duration_s == pytest.approx(2 * as_is.duration_s)
    assert slowed.recipe == as_is.recipe
    assert len(slowed.chroma) == pytest.approx(2 * len(as_is.chroma), abs=2)
    strongest = as_is.peaks[np.argsort(-as_is.peaks["strength"])[:60]]
    frames = slowed.peaks["frame"].astype(np.int64)
    found = [
        np.any(
            (np.abs(frames - 2 * int(p["frame"])) <= 2)
            & (np.abs(slowed.peaks["bin"] - p["bin"]) <= 0.5)
        )
        for p in strongest
    ]
    assert np.mean(found) > 0.8
    sped_up = fingerprint_audio(work_audio, query=True, time_scale=0.5)
    assert sped_up.duration_s == pytest.approx(0.5 * as_is.duration_s)
    assert sped_up.peaks["frame"].max() < 0.51 * as_is.peaks["frame"].max()


def test_a_view_in_another_hop_phase_starts_that_far_in(work_audio) -> None:
    """``hop_phase=0.5`` analyses the upload from half a hop on: the fingerprint of the audio
    with those samples cut."""
    half = S.hop_length // 2
    view = fingerprint_audio(work_audio, query=True, hop_phase=0.5)
    cut = dataclasses.replace(work_audio, samples=work_audio.samples[half:])
    assert np.array_equal(view.peaks, fingerprint_audio(cut, query=True).peaks)
    assert view.duration_s == pytest.approx(work_audio.duration_s - half / S.sample_rate_hz)


def test_only_queries_have_views(work_audio) -> None:
    with pytest.raises(ValueError):
        fingerprint_audio(work_audio, time_scale=2.0)
    with pytest.raises(ValueError):
        fingerprint_audio(work_audio, hop_phase=0.5)


def _same_fingerprint(made: Fingerprint, alone: Fingerprint) -> None:
    assert made.peaks.dtype == alone.peaks.dtype and np.array_equal(made.peaks, alone.peaks)
    assert made.chroma.dtype == alone.chroma.dtype and np.array_equal(made.chroma, alone.chroma)
    assert (made.tuning_semitones, made.duration_s) == (alone.tuning_semitones, alone.duration_s)
    assert made.to_bytes() == alone.to_bytes()


@pytest.mark.parametrize("cut", [0, 1, 128, 255, 300])
def test_upload_fingerprints_are_those_made_one_by_one(work_audio, cut: int) -> None:
    """One analysis gives, bit for bit, what fingerprint_audio gives for the query, the stored
    fingerprint and every view screening takes (hop 512 from every other frame, hop 128 from
    the frames interleaved with an STFT half a hop in), whatever the length modulo the hop."""
    audio = dataclasses.replace(
        work_audio, samples=work_audio.samples[: len(work_audio.samples) - cut]
    )
    prints = UploadFingerprints(audio)
    _same_fingerprint(prints.query, fingerprint_audio(audio, query=True))
    _same_fingerprint(prints.stored(), fingerprint_audio(audio))
    for time_scale, hop_phase in [(0.5, 0.0), (2.0, 0.0), (1.0, 0.25), (1.0, 0.75)]:
        view = prints.view(time_scale, hop_phase)
        alone = fingerprint_audio(audio, query=True, time_scale=time_scale, hop_phase=hop_phase)
        _same_fingerprint(view, alone)


def test_upload_fingerprints_share_the_stft(work_audio, monkeypatch) -> None:
    """The stored fingerprint takes no STFT of its own, the 2x faster view none either, the 2x
    slower view one of the upload's length (its odd frames)."""
    import audiodup.spectral as spectral

    frames = []
    blocks = spectral._magnitude_blocks

    def counted(samples, n_fft, hop_length, n_bins):
        n_frames, found = blocks(samples, n_fft, hop_length, n_bins)
        frames.append(n_frames)
        return n_frames, found

    monkeypatch.setattr(spectral, "_magnitude_blocks", counted)
    prints = UploadFingerprints(work_audio)
    assert len(frames) == 1
    prints.stored()
    prints.view(0.5, 0.0)
    assert len(frames) == 1
    prints.view(2.0, 0.0)
    assert len(frames) == 2 and frames[1] <= frames[0]
