"""Tests for audiodup.audio: decoding, mixdown, resampling, limits and decode errors."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from conftest import CATALOG_DIR, stereo_mix

import audiodup.audio as audio_module
from audiodup.audio import Audio, audio_from_samples, load_audio
from audiodup.errors import (
    AudioDecodeError,
    AudiodupError,
    AudioTooShortError,
    SilentAudioError,
)
from audiodup.settings import DEFAULT_SETTINGS, Settings
from audiodup.synth import synthesize_work

SR = 22050
ANALYSIS_SR = DEFAULT_SETTINGS.sample_rate_hz
FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed")


@pytest.fixture(name="decoder", params=["libsndfile-only", "ffmpeg-fallback"])
def decoder_fixture(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test once with the ffmpeg fallback disabled and once with it enabled (skipped
    where ffmpeg is not installed): both decoder paths on one machine."""
    if request.param == "ffmpeg-fallback":
        if FFMPEG is None:
            pytest.skip("ffmpeg is not installed: the fallback path cannot run")
        monkeypatch.setenv("AUDIODUP_FFMPEG", FFMPEG)
    else:
        monkeypatch.setenv("AUDIODUP_FFMPEG", "none")
    return request.param


@pytest.fixture(scope="module")
def music() -> np.ndarray:
    """Six seconds of tonal test music at 22050 Hz, peak 0.7."""
    return synthesize_work(11, duration_s=6.0, sr=SR)


def expected_analysis(samples: np.ndarray, sample_rate_hz: int = SR) -> np.ndarray:
    """What decoding should produce: DC removed, resampled to the analysis rate."""
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples - samples.mean()
    return soxr.resample(samples, sample_rate_hz, ANALYSIS_SR, quality="HQ")


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    a, b = np.asarray(a[:n], np.float64), np.asarray(b[:n], np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def assert_analysis_audio(audio: Audio, duration_s: float, tolerance_s: float = 0.02) -> None:
    assert isinstance(audio, Audio)
    assert audio.samples.dtype == np.float32
    assert audio.samples.ndim == 1
    assert audio.sample_rate_hz == ANALYSIS_SR
    assert np.all(np.isfinite(audio.samples))
    assert audio.duration_s == pytest.approx(duration_s, abs=tolerance_s)
    assert len(audio.sha256) == 64 and int(audio.sha256, 16) >= 0


# --- formats --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "kwargs", "min_correlation"),
    [
        (".wav", {"subtype": "PCM_16"}, 0.9999),
        (".flac", {"subtype": "PCM_16"}, 0.9999),
        (".ogg", {"format": "OGG", "subtype": "VORBIS"}, 0.95),
        (".mp3", {"format": "MP3", "subtype": "MPEG_LAYER_III"}, 0.95),
    ],
    ids=["wav", "flac", "ogg", "mp3"],
)
def test_formats_decode_to_mono_float32_at_analysis_rate(
    tmp_path: Path, music: np.ndarray, suffix: str, kwargs: dict, min_correlation: float
) -> None:
    path = tmp_path / f"music{suffix}"
    sf.write(str(path), music, SR, **kwargs)
    audio = load_audio(path)
    assert_analysis_audio(audio, 6.0, tolerance_s=0.06)
    assert not audio.truncated
    assert correlation(audio.samples, expected_analysis(music)) > min_correlation


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_wav_sample_formats(tmp_path: Path, music: np.ndarray, subtype: str) -> None:
    path = tmp_path / f"{subtype}.wav"
    sf.write(str(path), music, SR, subtype=subtype)
    audio = load_audio(path)
    assert_analysis_audio(audio, 6.0)
    reference = expected_analysis(music)
    assert correlation(audio.samples, reference) > 0.999
    # the level is kept: 8-bit is not read as 0..255, float not rescaled
    rms_ratio = np.sqrt(np.mean(audio.samples**2) / np.mean(reference[: len(audio.samples)] ** 2))
    assert rms_ratio == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("channels", range(1, 9))
def test_multichannel_is_mixed_down_to_the_channel_mean(
    tmp_path: Path, music: np.ndarray, channels: int
) -> None:
    gains = np.linspace(1.0, 0.2, channels)
    path = tmp_path / f"{channels}ch.wav"
    sf.write(str(path), music[:, None] * gains[None, :] * 0.9, SR, subtype="FLOAT")
    audio = load_audio(path)
    assert_analysis_audio(audio, 6.0)
    reference = expected_analysis(music * 0.9 * gains.mean())
    assert correlation(audio.samples, reference) > 0.9999
    rms_ratio = np.sqrt(np.mean(audio.samples**2) / np.mean(reference[: len(audio.samples)] ** 2))
    assert rms_ratio == pytest.approx(1.0, abs=0.01)


EDGE_SAMPLES = np.array(
    [0.0, -0.0, 1e-45, -1e-45, 1.1754942e-38, -1.1754942e-38, 3.4028235e38, -3.4028235e38]
    + [0.5, -0.5, 1.0, -1.0, 1 / 3, -1 / 3],
    np.float32,
)


@pytest.mark.parametrize("channels", [1, 2, 3, 6])
def test_mixdown_is_the_float32_channel_mean_bit_for_bit(channels: int) -> None:
    """The mix-down into a reused array equals numpy's float32 channel mean (of the channels
    with the second one inverted, for a stereo block in antiphase), the sign of zero included:
    every pair of edge values (signed zeros, subnormals, the largest floats, whose sum
    overflows) and random finite bit patterns, and the same block with a channel replaced by
    the loudest one inverted."""
    rng = np.random.default_rng(channels)
    pairs = np.stack(np.meshgrid(EDGE_SAMPLES, EDGE_SAMPLES), axis=-1).reshape(-1, 2)
    edges = pairs[:, rng.integers(0, 2, channels)] if channels != 2 else pairs
    bits = rng.integers(0, 1 << 32, (5000, channels), dtype=np.uint64).astype(np.uint32)
    patterns = bits.view(np.float32)
    patterns = patterns[np.isfinite(patterns).all(axis=1)]
    block = np.ascontiguousarray(np.concatenate([edges, patterns]))
    out = np.full(len(block), np.nan, np.float32)  # what a reused array held before
    inverted = block.copy()  # another channel in antiphase with the loudest
    loudest = int(np.argmax(np.square(block.astype(np.float64)).sum(axis=0)))
    inverted[:, 0 if loudest else -1] = np.float32(-0.75) * block[:, loudest]
    for case in (block, inverted) if channels > 1 else (block,):
        signs = audio_module.antiphase_signs(case)
        assert (signs is not None) == (case is inverted)  # both branches are tested
        mean_of = case
        if signs is not None:  # a stereo block's difference, l - r, whichever is louder
            mean_of = case * (np.array([1, -1], np.float32) if channels == 2 else signs)
        with np.errstate(over="ignore"):  # the largest floats' sums are inf, as intended
            mixed = audio_module._mix_to_mono(case, out)
            expected = mean_of.mean(axis=1, dtype=np.float32)
        assert mixed.tobytes() == expected.tobytes()


def test_mixdown_sums_different_channel_content(tmp_path: Path) -> None:
    left = synthesize_work(1, duration_s=5.0, sr=SR)
    right = synthesize_work(2, duration_s=5.0, sr=SR)
    path = tmp_path / "stereo.flac"
    sf.write(str(path), np.stack([left, right], axis=1), SR, subtype="PCM_24")
    audio = load_audio(path)
    assert correlation(audio.samples, expected_analysis((left + right) / 2)) > 0.9999


def test_antiphase_signs_invert_the_channels_that_strongly_anticorrelate_with_the_loudest() -> None:
    rng = np.random.default_rng(5)
    left = rng.standard_normal(4096).astype(np.float32)
    noise = rng.standard_normal(4096).astype(np.float32)

    def block(*others) -> np.ndarray:
        columns = [left, *(np.broadcast_to(c, left.shape) for c in others)]
        return np.stack(columns, axis=1).astype(np.float32)

    def signs(samples: np.ndarray) -> list[float] | None:
        found = audio_module.antiphase_signs(samples)
        return None if found is None else found.tolist()

    assert signs(block(-left)) == [1, -1]
    assert signs(block(-0.3 * left + 0.1 * noise)) == [1, -1]  # panned, inverted: -0.95
    assert signs(block(-3 * left)) == [-1, 1]  # the loudest channel keeps its sign
    assert signs(block(left)) is None
    assert signs(block(noise)) is None  # unrelated channels
    assert signs(block(-0.2 * left + 0.4 * noise)) is None  # -0.45
    assert signs(block(0.0)) is None  # one silent channel
    assert signs(np.zeros((4096, 2), np.float32)) is None
    assert signs(block(-left, 0.3 * left + 0.3 * noise, left)) == [1, -1, 1, 1]
    # a pair in antiphase under a louder unrelated channel: compared with each other too
    assert signs(block(-left, 3 * noise)) == [1, -1, 1]
    assert signs(block(-left, 3 * noise, 0.0)) == [1, -1, 1, 1]
    with np.errstate(all="raise"):  # no warning reaches the user
        for bad in (np.nan, np.inf, -np.inf):  # counted as silence, not as a veto
            damaged = block(-left)
            damaged[7::50, 1] = bad
            assert signs(damaged) == [1, -1]


@pytest.mark.parametrize(("container", "subtype"), [("WAV", "FLOAT"), ("FLAC", "PCM_24")])
def test_a_polarity_inverted_channel_decodes_as_the_original(
    tmp_path: Path, music: np.ndarray, container: str, subtype: str
) -> None:
    """Inverting one channel cancels the centre of a mean mix-down (all of a dual-mono track,
    which then read as silence) while a stereo listener hears the recording: such blocks are
    mixed as the channels' difference, which is the original's mean sample for sample."""
    original = stereo_mix(music, SR)
    right_inverted = original * np.array([1, -1], np.float32)
    left_inverted = original * np.array([-1, 1], np.float32)
    dual_mono_inverted = np.stack([music, -music], axis=1)
    paths = {}
    for name, samples in [
        ("original", original),
        ("right", right_inverted),
        ("left", left_inverted),
        ("dual_mono", dual_mono_inverted),
    ]:
        paths[name] = tmp_path / f"{name}.{container.lower()}"
        sf.write(str(paths[name]), samples, SR, subtype=subtype, format=container)
    expected = load_audio(paths["original"])
    assert load_audio(paths["right"]).samples.tobytes() == expected.samples.tobytes()
    assert load_audio(paths["right"]).sha256 == expected.sha256
    assert np.array_equal(load_audio(paths["left"]).samples, -expected.samples)  # sign only
    dual_mono = load_audio(paths["dual_mono"])  # no longer "silent"
    assert correlation(dual_mono.samples, expected_analysis(music)) > 0.9999


def to_mka(wav: Path, mka: Path) -> None:
    """``wav`` as float samples in Matroska, a container only ffmpeg reads."""
    args = [FFMPEG, "-v", "error", "-i", str(wav), "-c:a", "pcm_f32le", str(mka)]
    subprocess.run(args, check=True)


@pytest.mark.parametrize("signs", [[1, -1, 1], [1, -1, 1, -1]], ids=["3ch", "4ch"])
def test_an_inverted_channel_among_more_decodes_as_the_original(
    tmp_path: Path, music: np.ndarray, signs: list[int]
) -> None:
    """Channels of the same signal, some inverted (all of it would cancel in four): the mean of
    the channels with their signs undone, the original's samples."""
    gains = np.linspace(1.0, 0.5, len(signs))
    original = (music[:, None] * gains[None, :]).astype(np.float32)
    for name, samples in [("original", original), ("inverted", original * np.float32(signs))]:
        sf.write(str(tmp_path / f"{name}.wav"), samples, SR, subtype="FLOAT")
    expected = load_audio(tmp_path / "original.wav").samples
    assert load_audio(tmp_path / "inverted.wav").samples.tobytes() == expected.tobytes()


@needs_ffmpeg
def test_an_inverted_stereo_stream_under_the_cap_through_ffmpeg(
    tmp_path: Path, music: np.ndarray
) -> None:
    """ffmpeg's stereo output is mixed block by block as it arrives, within the sample budget:
    a capped decode is the first part of the whole one, marked truncated."""
    wav, mka = tmp_path / "inverted.wav", tmp_path / "inverted.mka"
    sf.write(str(wav), stereo_mix(music, SR) * np.float32([1, -1]), SR, subtype="FLOAT")
    to_mka(wav, mka)
    whole = load_audio(mka)
    capped = load_audio(mka, Settings(max_duration_s=4.0))
    assert not whole.truncated and capped.truncated
    assert capped.duration_s == pytest.approx(4.0, abs=1e-3)
    prefix = whole.samples[: len(capped.samples)]
    assert correlation(capped.samples, prefix) > 0.9999  # the DC removed differs a little
    mixed = expected_analysis(stereo_mix(music, SR).mean(axis=1))
    assert correlation(whole.samples, mixed) > 0.999


@needs_ffmpeg
def test_a_polarity_inverted_channel_decodes_as_the_original_through_ffmpeg(
    tmp_path: Path, music: np.ndarray
) -> None:
    """ffmpeg decodes a stereo stream to its two channels, mixed as libsndfile's are: the
    inverted copy in a container only ffmpeg reads decodes to the original's samples."""
    decoded = {}
    for name, signs in [("original", [1, 1]), ("inverted", [1, -1])]:
        wav, mka = tmp_path / f"{name}.wav", tmp_path / f"{name}.mka"
        sf.write(str(wav), stereo_mix(music, SR) * np.array(signs, np.float32), SR, subtype="FLOAT")
        to_mka(wav, mka)
        decoded[name] = load_audio(mka)
    assert decoded["inverted"].samples.tobytes() == decoded["original"].samples.tobytes()
    mixed = expected_analysis(stereo_mix(music, SR).mean(axis=1))
    assert correlation(decoded["original"].samples, mixed) > 0.999


@pytest.mark.parametrize("sample_rate_hz", [8000, 16000, 44100, 48000, 96000, 192000])
def test_any_input_rate_is_resampled(tmp_path: Path, sample_rate_hz: int) -> None:
    t = np.arange(int(4.0 * sample_rate_hz)) / sample_rate_hz
    tone = 0.5 * np.sin(2 * np.pi * 1000.0 * t)
    path = tmp_path / f"tone_{sample_rate_hz}.wav"
    sf.write(str(path), tone, sample_rate_hz, subtype="PCM_24")
    audio = load_audio(path)
    assert_analysis_audio(audio, 4.0)
    spectrum = np.abs(np.fft.rfft(audio.samples * np.hanning(len(audio.samples))))
    peak_hz = np.argmax(spectrum) * ANALYSIS_SR / len(audio.samples)
    assert peak_hz == pytest.approx(1000.0, abs=2.0)  # the pitch is kept


def test_audio_from_samples_matches_decoding_the_same_samples(
    tmp_path: Path, music: np.ndarray
) -> None:
    path = tmp_path / "music.wav"
    sf.write(str(path), music, SR, subtype="FLOAT")
    from_file = load_audio(path)
    from_memory = audio_from_samples(music, SR)
    np.testing.assert_allclose(from_file.samples, from_memory.samples, atol=1e-6)
    assert from_file.sha256 == from_memory.sha256


def test_sha256_identifies_the_audio_not_the_container(tmp_path: Path, music: np.ndarray) -> None:
    pcm = np.round(music * 32767).astype(np.int16)
    wav, flac = tmp_path / "a.wav", tmp_path / "b.flac"
    sf.write(str(wav), pcm, SR, subtype="PCM_16")
    sf.write(str(flac), pcm, SR, subtype="PCM_16")
    assert load_audio(wav).sha256 == load_audio(flac).sha256
    other = synthesize_work(12, duration_s=6.0, sr=SR)
    assert audio_from_samples(other, SR).sha256 != load_audio(wav).sha256


def whole_signal_reference(path: Path) -> tuple[np.ndarray, str]:
    """Decoding as it was done before it streamed (the whole signal in memory, then DC removed,
    then resampled in one call): the samples and sha256 that existing catalogs hold."""
    # in blocks of 65536 frames as the decoder always read: libmpg123 conceals the damaged
    # frames of an MP3 differently in one big read (fixtures/audio/uploads/mp3_work_02.mp3)
    with sf.SoundFile(path) as f:
        sample_rate_hz = f.samplerate
        blocks = []
        while len(block := f.read(1 << 16, dtype="float32", always_2d=True)):
            blocks.append(block)
    samples = np.concatenate(blocks).mean(axis=1, dtype=np.float32)
    samples = samples - np.float32(samples.mean(dtype=np.float64))
    if sample_rate_hz != ANALYSIS_SR:
        samples = soxr.resample(samples, sample_rate_hz, ANALYSIS_SR, quality="HQ")
    quantised = np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2")
    return samples, hashlib.sha256(quantised.tobytes()).hexdigest()


STREAMING_CASES = {  # sample rate, channels, write options
    "44k-stereo-wav": (44100, 2, {"subtype": "PCM_16"}),
    "48k-stereo-flac24": (48000, 2, {"subtype": "PCM_24"}),
    "22k-mono-vorbis": (22050, 1, {"format": "OGG", "subtype": "VORBIS"}),
    "44k-stereo-mp3": (44100, 2, {"format": "MP3", "subtype": "MPEG_LAYER_III"}),
    "96k-6ch-flac": (96000, 6, {"format": "FLAC"}),
    "8k-mono-wav": (8000, 1, {"subtype": "PCM_16"}),
    "analysis-rate-float": (ANALYSIS_SR, 1, {"subtype": "FLOAT"}),
}


@pytest.mark.parametrize("case", list(STREAMING_CASES))
@pytest.mark.parametrize("passes", ["one-pass", "spilled", "two-pass"])
def test_streamed_decoding_is_bit_identical_to_whole_signal_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, passes: str
) -> None:
    """Blocks are mixed, conditioned and resampled as they come, files longer than the replay
    cache are replayed from a spill file, and longer than that decoded twice; none of it
    changes a bit of the result."""
    sample_rate_hz, channels, options = STREAMING_CASES[case]
    left = synthesize_work(13, duration_s=7.0, sr=sample_rate_hz) + 0.05  # with a DC offset
    gains = np.linspace(1.0, 0.3, channels)
    signal = np.stack([np.roll(left, 37 * c) * gains[c] for c in range(channels)], axis=1)
    path = tmp_path / f"{case}.{options.get('format', 'WAV').lower()}"
    with sf.SoundFile(path, "w", sample_rate_hz, channels, **options) as f:
        for start in range(0, len(signal), sample_rate_hz):  # libvorbis: small writes
            f.write(signal[start : start + sample_rate_hz])
    if passes != "one-pass":
        monkeypatch.setattr(audio_module, "_REPLAY_CACHE_SAMPLES", 10_000)
    if passes == "two-pass":
        monkeypatch.setattr(audio_module, "_REPLAY_SPILL_SAMPLES", 20_000)
    expected_samples, expected_sha256 = whole_signal_reference(path)
    audio = load_audio(path)
    assert audio.samples.tobytes() == expected_samples.astype(np.float32).tobytes()
    assert audio.sha256 == expected_sha256


class _CountingSegment:
    """An in-memory segment that counts how often it is decoded."""

    def __init__(self, samples: np.ndarray, sample_rate_hz: int):
        self.inner = audio_module._ArraySegment(samples, sample_rate_hz)
        self.sample_rate_hz, self.channels, self.decodes = sample_rate_hz, self.inner.channels, 0
        self.difference = self.channels_kept = None

    @property
    def more(self) -> bool:
        return self.inner.more

    def blocks(self, max_frames: int):
        self.decodes += 1
        yield from self.inner.blocks(max_frames)


@pytest.mark.parametrize(
    ("cache", "spill", "decodes"),
    [(1 << 24, 1 << 26, 1), (50_000, 1 << 26, 1), (50_000, 100_000, 2)],
    ids=["in-memory", "spilled", "beyond-the-spill"],
)
def test_a_long_file_is_decoded_once_unless_it_outgrows_the_spill(
    monkeypatch: pytest.MonkeyPatch, cache: int, spill: int, decodes: int
) -> None:
    signal = synthesize_work(21, duration_s=6.0, sr=22050) + 0.02
    reference = audio_module._analysis_audio(
        [audio_module._ArraySegment(signal, 22050)], DEFAULT_SETTINGS
    )
    monkeypatch.setattr(audio_module, "_REPLAY_CACHE_SAMPLES", cache)
    monkeypatch.setattr(audio_module, "_REPLAY_SPILL_SAMPLES", spill)
    segment = _CountingSegment(signal, 22050)
    audio = audio_module._analysis_audio([segment], DEFAULT_SETTINGS)
    assert segment.decodes == decodes
    assert audio.samples.tobytes() == reference.samples.tobytes()


def test_a_spill_that_cannot_be_written_means_decoding_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    signal = synthesize_work(22, duration_s=6.0, sr=22050)
    reference = audio_module._analysis_audio(
        [audio_module._ArraySegment(signal, 22050)], DEFAULT_SETTINGS
    )
    monkeypatch.setattr(audio_module, "_REPLAY_CACHE_SAMPLES", 50_000)
    monkeypatch.setattr(audio_module.tempfile, "TemporaryFile", full_disk)
    segment = _CountingSegment(signal, 22050)
    audio = audio_module._analysis_audio([segment], DEFAULT_SETTINGS)
    assert segment.decodes == 2
    assert audio.sha256 == reference.sha256


def test_fixture_files_decode_bit_identically_to_whole_signal_decoding(
    fixture_sha256: dict[str, str],
) -> None:
    """Catalogs built before decoding streamed keep matching these files exactly."""
    for path, sha256 in fixture_sha256.items():
        samples, expected_sha256 = whole_signal_reference(Path(path))
        assert sha256 == expected_sha256, path
        assert load_audio(path).samples.tobytes() == samples.astype(np.float32).tobytes(), path


# --- duration limits ------------------------------------------------------------------------


def test_max_duration_caps_long_files(tmp_path: Path, music: np.ndarray) -> None:
    path = tmp_path / "long.flac"
    sf.write(str(path), music, SR)
    capped = load_audio(path, Settings(max_duration_s=4.0))
    assert capped.truncated
    assert capped.duration_s == pytest.approx(4.0, abs=1e-3)
    assert capped.source_duration_s == pytest.approx(4.0, abs=1e-3)
    full = load_audio(path)
    # the cap keeps the beginning of the file (compare clear of resampling edges)
    inner = slice(ANALYSIS_SR // 10, int(3.8 * ANALYSIS_SR))
    assert correlation(capped.samples[inner], full.samples[inner]) > 0.999


def test_max_duration_does_not_flag_short_files(tmp_path: Path, music: np.ndarray) -> None:
    path = tmp_path / "short.wav"
    sf.write(str(path), music, SR)
    audio = load_audio(path, Settings(max_duration_s=7.0))
    assert not audio.truncated
    assert audio.duration_s == pytest.approx(6.0, abs=1e-3)


def test_max_duration_applies_to_in_memory_samples(music: np.ndarray) -> None:
    audio = audio_from_samples(music, SR, Settings(max_duration_s=3.5))
    assert audio.truncated
    assert audio.duration_s == pytest.approx(3.5, abs=1e-3)


def test_one_second_file_is_too_short(tmp_path: Path) -> None:
    path = tmp_path / "one_second.wav"
    sf.write(str(path), synthesize_work(3, duration_s=1.0, sr=SR), SR)
    with pytest.raises(AudioTooShortError):
        load_audio(path)


def test_min_duration_is_a_setting(music: np.ndarray) -> None:
    with pytest.raises(AudioTooShortError):
        audio_from_samples(music, SR, Settings(min_duration_s=8.0))
    assert audio_from_samples(music[: SR * 2], SR, Settings(min_duration_s=1.5)).duration_s > 1.9


# --- signal conditions ----------------------------------------------------------------------


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_digital_silence_is_rejected(tmp_path: Path, subtype: str) -> None:
    path = tmp_path / "silence.wav"
    sf.write(str(path), np.zeros(SR * 5, dtype=np.float32), SR, subtype=subtype)
    with pytest.raises(SilentAudioError):
        load_audio(path)


def test_constant_dc_is_silence(tmp_path: Path) -> None:
    path = tmp_path / "dc.wav"
    sf.write(str(path), np.full(SR * 5, 0.4, dtype=np.float32), SR, subtype="FLOAT")
    with pytest.raises(SilentAudioError):
        load_audio(path)


def test_dc_offset_is_removed(tmp_path: Path, music: np.ndarray) -> None:
    path = tmp_path / "offset.wav"
    sf.write(str(path), music + 0.25, SR, subtype="FLOAT")
    audio = load_audio(path)
    assert abs(float(np.mean(audio.samples))) < 1e-3
    assert correlation(audio.samples, expected_analysis(music)) > 0.9999


def test_hard_clipped_audio_decodes(tmp_path: Path, music: np.ndarray) -> None:
    clipped = np.clip(music * 6.0, -1.0, 1.0)
    assert np.mean(np.abs(clipped) >= 1.0) > 0.05  # really clipped
    path = tmp_path / "clipped.wav"
    sf.write(str(path), clipped, SR, subtype="PCM_16")
    audio = load_audio(path)
    assert_analysis_audio(audio, 6.0)
    assert correlation(audio.samples, expected_analysis(music)) > 0.8


def test_float_samples_beyond_full_scale_are_not_wrapped(tmp_path: Path, music: np.ndarray) -> None:
    loud = music * 4.0  # peak 2.8: legal in float WAV
    path = tmp_path / "loud.wav"
    sf.write(str(path), loud, SR, subtype="FLOAT")
    audio = load_audio(path)
    assert_analysis_audio(audio, 6.0)
    assert correlation(audio.samples, expected_analysis(loud)) > 0.9999
    assert float(np.max(np.abs(audio.samples))) > 2.0


def test_sparse_nan_samples_are_zeroed(music: np.ndarray) -> None:
    damaged = music.copy()
    damaged[::500] = np.nan
    damaged[250::1000] = np.inf
    audio = audio_from_samples(damaged, SR)
    assert np.all(np.isfinite(audio.samples))
    assert correlation(audio.samples, expected_analysis(np.nan_to_num(music))) > 0.99


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_mostly_nonfinite_samples_are_a_decode_error(music: np.ndarray, bad: float) -> None:
    damaged = music.copy()
    damaged[::10] = bad
    with pytest.raises(AudioDecodeError):
        audio_from_samples(damaged, SR)


def test_all_nan_is_a_decode_error() -> None:
    with pytest.raises(AudioDecodeError):
        audio_from_samples(np.full(SR * 5, np.nan), SR)


@pytest.mark.parametrize(
    ("samples", "sample_rate_hz"),
    [(np.zeros(0), SR), (np.ones(10), 0), (np.ones(10), -8000), (np.ones((4, 4, 4)), SR)],
    ids=["empty", "zero-rate", "negative-rate", "3-d"],
)
def test_invalid_in_memory_samples(samples: np.ndarray, sample_rate_hz: int) -> None:
    with pytest.raises(AudioDecodeError):
        audio_from_samples(samples, sample_rate_hz)


def test_metadata_tags_are_read(tmp_path: Path, music: np.ndarray) -> None:
    path = tmp_path / "tagged.flac"
    with sf.SoundFile(str(path), "w", SR, 1) as f:
        f.title = "A Title"
        f.artist = "An Artist"
        f.write(music)
    audio = load_audio(path)
    assert (audio.title, audio.artist) == ("A Title", "An Artist")


# --- unreadable files -----------------------------------------------------------------------


def test_zero_byte_file(tmp_path: Path, decoder: str) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioDecodeError, match="empty"):
        load_audio(path)


@pytest.mark.parametrize("suffix", [".wav", ".mp3", ".flac", ".ogg"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_bytes_are_a_decode_error(
    tmp_path: Path, suffix: str, seed: int, decoder: str
) -> None:
    path = tmp_path / f"random{suffix}"
    path.write_bytes(np.random.default_rng(seed).bytes(40_000))
    with pytest.raises(AudioDecodeError):
        load_audio(path)


@pytest.mark.parametrize(
    "content",
    [
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n" * 200,
        b"Just some notes, not audio at all.\n" * 500,
        b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 200,  # a WAV header with nothing valid
    ],
    ids=["pdf", "text", "hollow-riff"],
)
def test_non_audio_renamed_wav(tmp_path: Path, content: bytes, decoder: str) -> None:
    path = tmp_path / "document.wav"
    path.write_bytes(content)
    with pytest.raises(AudioDecodeError):
        load_audio(path)


@pytest.mark.parametrize(
    ("suffix", "kwargs"),
    [
        (".flac", {}),
        (".ogg", {"format": "OGG", "subtype": "VORBIS"}),
        (".wav", {}),
        (".mp3", {"format": "MP3", "subtype": "MPEG_LAYER_III"}),
    ],
    ids=["flac", "ogg", "wav", "mp3"],
)
@pytest.mark.parametrize("keep", [0.5, 0.1, 0.01])
def test_truncated_files_decode_partly_or_fail_cleanly(
    tmp_path: Path, suffix: str, kwargs: dict, keep: float, decoder: str
) -> None:
    music = synthesize_work(5, duration_s=12.0, sr=SR)
    whole = tmp_path / f"whole{suffix}"
    sf.write(str(whole), music, SR, **kwargs)
    data = whole.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: max(1, int(len(data) * keep))])
    try:
        audio = load_audio(cut)
    except AudioDecodeError:
        return  # refusing a damaged file is fine
    # decoding the valid part is fine too, but then it must be a plausible prefix
    assert_analysis_audio(audio, audio.duration_s)
    assert DEFAULT_SETTINGS.min_duration_s <= audio.duration_s <= 12.0 * keep + 1.0
    reference = expected_analysis(music)
    inner = slice(ANALYSIS_SR // 10, len(audio.samples) - ANALYSIS_SR // 10)
    assert correlation(audio.samples[inner], reference[inner]) > 0.9


def test_missing_file(tmp_path: Path, decoder: str) -> None:
    with pytest.raises(AudioDecodeError, match="^file not found$"):
        load_audio(tmp_path / "nope.wav")


def test_directory(tmp_path: Path, decoder: str) -> None:
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    with pytest.raises(AudioDecodeError, match="^not a regular file$"):
        load_audio(folder)


def test_named_pipe_does_not_block(tmp_path: Path, decoder: str) -> None:
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    with pytest.raises(AudioDecodeError, match="^not a regular file$"):
        load_audio(fifo)


def test_broken_symlink(tmp_path: Path, decoder: str) -> None:
    link = tmp_path / "dangling.wav"
    link.symlink_to(tmp_path / "gone.wav")
    with pytest.raises(AudioDecodeError, match="^file not found$"):
        load_audio(link)


def test_symlink_to_audio_is_followed(tmp_path: Path, music: np.ndarray) -> None:
    target = tmp_path / "music.wav"
    sf.write(str(target), music, SR)
    link = tmp_path / "link.wav"
    link.symlink_to(target)
    assert load_audio(link).sha256 == load_audio(target).sha256


def test_wrong_extension_is_irrelevant(tmp_path: Path, music: np.ndarray, decoder: str) -> None:
    """The container is sniffed from the bytes, not trusted from the name."""
    path = tmp_path / "really_flac.mp3"
    sf.write(str(path), music, SR, format="FLAC")
    assert_analysis_audio(load_audio(path), 6.0)


def test_non_utf8_file_name_decodes(tmp_path: Path, music: np.ndarray, decoder: str) -> None:
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9_\xff.wav")  # latin-1 name, not UTF-8
    sf.write(raw, music, SR)
    audio = load_audio(os.fsdecode(raw))
    assert_analysis_audio(audio, 6.0)


def test_decode_errors_are_audiodup_errors() -> None:
    for error in (AudioDecodeError, AudioTooShortError, SilentAudioError):
        assert issubclass(error, AudiodupError)
    assert issubclass(AudioTooShortError, AudioDecodeError)
    assert issubclass(SilentAudioError, AudioDecodeError)


def test_a_quiet_copy_after_minutes_of_silence_is_screened_not_refused_as_silent(
    tmp_path: Path, catalog, work_ids: dict[str, int]
) -> None:
    """A review found a copy at -60 dBFS after four minutes of digital silence refused as
    "silent": the whole file's RMS was under the bound, though the copy alone is a
    duplicate. Silence is judged by the loudest second."""
    work, rate = sf.read(str(CATALOG_DIR / "work_03.ogg"), dtype="float32", always_2d=True)
    quiet = work.mean(axis=1) / np.abs(work).max() * 10 ** (-60 / 20)
    samples = np.concatenate([np.zeros(240 * rate, dtype=np.float32), quiet])
    path = tmp_path / "quiet_copy.flac"
    sf.write(str(path), samples, rate, subtype="PCM_24")
    settings = catalog.settings
    whole = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    assert whole < settings.silence_rms  # the bound the file's RMS used to be held to
    verdict = catalog.screen_audio(load_audio(path, settings))
    assert verdict.verdict == "duplicate"
    assert verdict.matches[0].work_id == work_ids["work_03"]
    assert verdict.matches[0].query_start_s >= 235.0


def test_silence_up_to_the_decoding_limits_says_the_rest_was_not_read(tmp_path: Path) -> None:
    path = tmp_path / "long_silence.wav"
    sf.write(str(path), np.zeros(SR * 12, dtype=np.float32), SR, subtype="FLOAT")
    with pytest.raises(SilentAudioError, match="the rest was not read"):
        load_audio(path, Settings(max_duration_s=5.0, min_duration_s=1.0))
    with pytest.raises(SilentAudioError) as whole:
        load_audio(path)
    assert "not read" not in str(whole.value)


def test_the_loudest_second_does_not_depend_on_where_a_click_lies() -> None:
    """A review of the first form: the last part second was measured over its own length, so
    a click at the very end of silence read about 30 times louder than in the middle."""
    rate = ANALYSIS_SR
    samples = np.zeros(rate * 10 + rate // 30, dtype=np.float32)
    click = np.float32(0.003) * np.ones(3, dtype=np.float32)
    middle, end = samples.copy(), samples.copy()
    middle[rate * 5 : rate * 5 + 3] = click
    end[-3:] = click
    loudness = [audio_module._loudest_second_rms(x, rate) for x in (middle, end)]
    assert loudness[0] == pytest.approx(loudness[1], rel=1e-6)
    assert loudness[1] < DEFAULT_SETTINGS.silence_rms
