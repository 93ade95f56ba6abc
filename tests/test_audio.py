"""Tests for audiodup.audio: decoding, mixdown, resampling, limits and decode errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

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


def test_mixdown_sums_different_channel_content(tmp_path: Path) -> None:
    left = synthesize_work(1, duration_s=5.0, sr=SR)
    right = synthesize_work(2, duration_s=5.0, sr=SR)
    path = tmp_path / "stereo.flac"
    sf.write(str(path), np.stack([left, right], axis=1), SR, subtype="PCM_24")
    audio = load_audio(path)
    assert correlation(audio.samples, expected_analysis((left + right) / 2)) > 0.9999


def test_opposite_phase_stereo_cancels_to_silence(tmp_path: Path, music: np.ndarray) -> None:
    """Proves the mixdown averages channels rather than taking the first one."""
    path = tmp_path / "antiphase.wav"
    sf.write(str(path), np.stack([music, -music], axis=1), SR, subtype="FLOAT")
    with pytest.raises(SilentAudioError):
        load_audio(path)


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


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioDecodeError, match="empty"):
        load_audio(path)


@pytest.mark.parametrize("suffix", [".wav", ".mp3", ".flac", ".ogg"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_bytes_are_a_decode_error(tmp_path: Path, suffix: str, seed: int) -> None:
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
def test_non_audio_renamed_wav(tmp_path: Path, content: bytes) -> None:
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
    tmp_path: Path, suffix: str, kwargs: dict, keep: float
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


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioDecodeError, match="not found"):
        load_audio(tmp_path / "nope.wav")


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    with pytest.raises(AudioDecodeError):
        load_audio(folder)


def test_named_pipe_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    with pytest.raises(AudioDecodeError):
        load_audio(fifo)


def test_broken_symlink(tmp_path: Path) -> None:
    link = tmp_path / "dangling.wav"
    link.symlink_to(tmp_path / "gone.wav")
    with pytest.raises(AudioDecodeError):
        load_audio(link)


def test_symlink_to_audio_is_followed(tmp_path: Path, music: np.ndarray) -> None:
    target = tmp_path / "music.wav"
    sf.write(str(target), music, SR)
    link = tmp_path / "link.wav"
    link.symlink_to(target)
    assert load_audio(link).sha256 == load_audio(target).sha256


def test_wrong_extension_is_irrelevant(tmp_path: Path, music: np.ndarray) -> None:
    """The container is sniffed from the bytes, not trusted from the name."""
    path = tmp_path / "really_flac.mp3"
    sf.write(str(path), music, SR, format="FLAC")
    assert_analysis_audio(load_audio(path), 6.0)


def test_non_utf8_file_name_decodes(tmp_path: Path, music: np.ndarray) -> None:
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9_\xff.wav")  # latin-1 name, not UTF-8
    sf.write(raw, music, SR)
    audio = load_audio(os.fsdecode(raw))
    assert_analysis_audio(audio, 6.0)


def test_decode_errors_are_audiodup_errors() -> None:
    for error in (AudioDecodeError, AudioTooShortError, SilentAudioError):
        assert issubclass(error, AudiodupError)
    assert issubclass(AudioTooShortError, AudioDecodeError)
    assert issubclass(SilentAudioError, AudioDecodeError)
