"""Hostile and broken input end to end: fuzzed and mutated files, crafted headers, odd file
system entries. audiodup may refuse any of them, but only with its own error types, and a
catalog batch always completes."""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_audio import decoder_fixture  # noqa: F401 - the `decoder` fixture: both decoder paths

from audiodup import Catalog
from audiodup.audio import load_audio
from audiodup.errors import AudioDecodeError
from audiodup.synth import synthesize_work

SR = 22050
SUFFIXES = [".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".m4a", ".bin"]
MAGIC = [
    b"",
    b"RIFF\xff\xff\xff\x7fWAVEfmt ",
    b"fLaC\x00\x00\x00\x22",
    b"OggS\x00\x02" + b"\x00" * 8,
    b"ID3\x04\x00\x00\x00\x00\x00\x00",
    b"\xff\xfb\x90\x64",
    b"FORM\x00\x00\x10\x00AIFF",
    b"\x00\x00\x00\x20ftypM4A ",
]


def decode_or_refuse(path: Path) -> None:
    """load_audio either returns finite analysis audio or raises AudioDecodeError."""
    try:
        audio = load_audio(path)
    except AudioDecodeError:
        return
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert np.all(np.isfinite(audio.samples))
    assert audio.duration_s >= 3.0


def encoded(fmt: str, subtype: str | None, seconds: float = 5.0, channels: int = 1) -> bytes:
    y = synthesize_work(60, duration_s=seconds, sr=SR)
    if channels > 1:
        y = np.repeat(y[:, None], channels, axis=1)
    buffer = io.BytesIO()
    sf.write(buffer, y, SR, format=fmt, subtype=subtype)
    return buffer.getvalue()


VALID_FILES = {
    ".wav": encoded("WAV", "PCM_16"),
    ".flac": encoded("FLAC", "PCM_16", channels=2),
    ".ogg": encoded("OGG", "VORBIS"),
    ".mp3": encoded("MP3", "MPEG_LAYER_III"),
}


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    magic=st.sampled_from(MAGIC),
    body=st.binary(min_size=0, max_size=4096),
    suffix=st.sampled_from(SUFFIXES),
)
def test_arbitrary_bytes(tmp_path: Path, magic: bytes, body: bytes, suffix: str) -> None:
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(magic + body)
    decode_or_refuse(path)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    suffix=st.sampled_from(sorted(VALID_FILES)),
    data=st.data(),
)
def test_mutated_valid_files(tmp_path: Path, suffix: str, data: st.DataObject) -> None:
    """Flip, zero and cut bytes of real files, headers included."""
    blob = bytearray(VALID_FILES[suffix])
    n_edits = data.draw(st.integers(1, 12))
    for _ in range(n_edits):
        position = data.draw(
            st.one_of(st.integers(0, min(200, len(blob) - 1)), st.integers(0, len(blob) - 1))
        )
        blob[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.one_of(st.none(), st.integers(1, len(blob))))
    path = tmp_path / f"mutated{suffix}"
    path.write_bytes(bytes(blob[:cut]))
    decode_or_refuse(path)


def wav_header(
    channels: int, sample_rate_hz: int, bits: int, data_bytes: int, fmt_tag: int = 1
) -> bytes:
    block_align = channels * bits // 8
    fmt = struct.pack(
        "<HHIIHH",
        fmt_tag,
        channels,
        sample_rate_hz,
        sample_rate_hz * block_align,
        block_align,
        bits,
    )
    return (
        b"RIFF" + struct.pack("<I", min(36 + data_bytes, 0xFFFFFFFF)) + b"WAVE"
        + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"data" + struct.pack("<I", data_bytes)
    )  # fmt: skip


@pytest.mark.parametrize(
    ("channels", "sample_rate_hz", "bits", "claimed", "actual", "fmt_tag"),
    [
        (0, 8000, 16, 32000, 32000, 1),  # no channels
        (1, 0, 16, 32000, 32000, 1),  # no sample rate
        (1, 8000, 16, 0xFFFFFFF0, 64000, 1),  # data chunk claims 4 GB
        (1, 8000, 16, 64000, 100, 1),  # data chunk claims more than there is
        (1, 8000, 7, 64000, 64000, 1),  # odd bit depth
        (1, 8000, 16, 64000, 64000, 0x55),  # MP3-in-WAV tag with PCM bytes
        (1, 1, 16, 20, 20, 1),  # 1 Hz, ten samples
        (1, 2_000_000_000, 16, 64000, 64000, 1),  # absurd rate
        (300, 1000, 16, 300 * 2 * 4000, 300 * 2 * 4000, 1),  # 300 channels
    ],
    ids=[
        "no-channels",
        "no-rate",
        "4GB-claim",
        "short-data",
        "7-bit",
        "mp3-tag",
        "1Hz",
        "2GHz",
        "300-channels",
    ],
)
def test_crafted_wav_headers(
    tmp_path: Path,
    channels: int,
    sample_rate_hz: int,
    bits: int,
    claimed: int,
    actual: int,
    fmt_tag: int,
    decoder: str,
) -> None:
    rng = np.random.default_rng(0)
    body = (rng.standard_normal(actual // 2) * 3000).astype("<i2").tobytes()[:actual]
    path = tmp_path / "crafted.wav"
    path.write_bytes(wav_header(channels, sample_rate_hz, bits, claimed, fmt_tag) + body)
    decode_or_refuse(path)


def test_catalog_batch_survives_every_kind_of_bad_entry(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    sf.write(folder / "good.wav", synthesize_work(61, duration_s=6.0, sr=SR), SR)
    (folder / "empty.mp3").write_bytes(b"")
    (folder / "random.flac").write_bytes(np.random.default_rng(1).bytes(5000))
    (folder / "short.wav").write_bytes(VALID_FILES[".wav"][:3000])
    sf.write(folder / "silence.wav", np.zeros(SR * 5), SR)
    os.mkfifo(folder / "pipe.ogg")
    (folder / "folder.wav").mkdir()
    (folder / "dangling.wav").symlink_to(folder / "nowhere.wav")
    for suffix, blob in VALID_FILES.items():
        (folder / f"truncated{suffix}").write_bytes(blob[: len(blob) // 3])

    with Catalog.open(tmp_path / "db") as catalog:
        results = catalog.add_paths([folder])
        by_name = {Path(r.path).name: r for r in results}
        assert by_name["good.wav"].status == "added"
        assert "folder.wav" not in by_name  # a folder is walked, not decoded
        for name in ("empty.mp3", "random.flac", "short.wav", "silence.wav", "pipe.ogg",
                     "dangling.wav"):  # fmt: skip
            assert by_name[name].status == "failed", by_name[name]
            assert by_name[name].error and "unexpected" not in by_name[name].error
        for r in results:
            assert r.error is None or "unexpected error" not in r.error, r
        assert catalog.verify() == []
        # and every entry screens to a verdict or a clean error, never an exception
        for path in sorted(folder.iterdir()):
            verdict = catalog.screen(path)
            assert (verdict.verdict is None) == (verdict.error is not None)


def test_the_catalogs_own_databases_are_never_decoded(tmp_path: Path, monkeypatch) -> None:
    """Naming the catalog's database (or the rescan's) as an upload is one clear error and is
    never opened: decoding it would open and close a second descriptor of an SQLite file this
    process holds, which drops its connections' locks. An ``.sqlite`` file elsewhere is only
    an undecodable file; the batch goes on."""
    from datetime import timedelta

    import audiodup.audio as audio_module
    from audiodup.rescan import rescan

    # good.wav, written just before its first look, is then taken as present unread
    monkeypatch.setattr("audiodup.ingest.CTIME_MARGIN", timedelta(0))
    sf.write(tmp_path / "good.wav", synthesize_work(62, duration_s=6.0, sr=SR), SR)
    (tmp_path / "other.sqlite").write_bytes(b"SQLite format 3\x00" + bytes(500))
    root = tmp_path / "db"
    with Catalog.open(root) as catalog:
        catalog.add_paths([tmp_path / "good.wav"])
        rescan(catalog, workers=1)
        own = [root / "catalog.sqlite", root / "rescan.sqlite", root / "." / "catalog.sqlite"]
        decoded = []
        real_load = audio_module.load_audio

        def spy(path, *args, **kwargs):
            decoded.append(Path(path).name)
            return real_load(path, *args, **kwargs)

        monkeypatch.setattr("audiodup.catalog.load_audio", spy)
        monkeypatch.setattr("audiodup.ingest.load_audio", spy)
        results = catalog.add_paths([*own, tmp_path / "other.sqlite", tmp_path / "good.wav"])
        assert [r.status for r in results] == ["failed"] * 4 + ["present"]
        assert {r.error for r in results[:3]} == {"one of the catalog's own database files: "
                                                  "never read as audio"}  # fmt: skip
        assert "own database" not in results[3].error
        for path in own:
            verdict = catalog.screen(path)
            assert verdict.verdict is None and "own database" in verdict.error
        many = catalog.screen_many([own[0], tmp_path / "good.wav"], workers=2)
        assert "own database" in many[0].error and many[1].verdict == "duplicate"
        assert decoded == ["other.sqlite"], "the own databases were never opened"
        assert catalog.verify() == []


def test_a_nul_byte_in_a_name_is_one_clear_error(tmp_path: Path) -> None:
    """Through the library a path can hold a NUL byte (never through argv): each entry fails
    alone, the batch goes on."""
    sf.write(tmp_path / "good.wav", synthesize_work(63, duration_s=6.0, sr=SR), SR)
    names = [str(tmp_path / "bad\x00.wav"), str(tmp_path / "db" / "bad\x00.sqlite")]
    with Catalog.open(tmp_path / "db") as catalog:
        results = catalog.add_paths([*names, tmp_path / "good.wav"])
        assert [r.status for r in results] == ["failed", "failed", "added"]
        assert results[0].error == results[1].error == "invalid file name"
        for name in names:
            assert catalog.screen(name).error == "invalid file name"


def test_unreadable_file(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root can read any file")
    path = tmp_path / "locked.wav"
    path.write_bytes(VALID_FILES[".wav"])
    path.chmod(0)
    with pytest.raises(AudioDecodeError):
        load_audio(path)


def test_permission_denied_is_one_clear_error(tmp_path: Path, monkeypatch, decoder: str) -> None:
    """Root reads any file, so the denial is simulated where the decoder opens the file. The
    error is the denial, not what ffmpeg (when installed) makes of a file it reads anyway."""
    import audiodup.audio as audio_module

    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    path = tmp_path / "locked.wav"
    path.write_bytes(VALID_FILES[".wav"])
    monkeypatch.setattr(audio_module.sf, "SoundFile", deny)
    with pytest.raises(AudioDecodeError, match="^cannot read file: Permission denied$"):
        load_audio(path)


def test_longest_possible_file_name(tmp_path: Path) -> None:
    name = "x" * (255 - len(".wav")) + ".wav"  # NAME_MAX on Linux
    path = tmp_path / name
    path.write_bytes(VALID_FILES[".wav"])
    audio = load_audio(path)
    assert audio.duration_s > 3
    catalog = Catalog.open(tmp_path / "cat")
    try:
        (result,) = catalog.add_paths([path])
        assert result.status == "added"
        assert catalog.works()[0].path.endswith(name)
    finally:
        catalog.close()
