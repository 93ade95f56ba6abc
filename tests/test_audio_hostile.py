"""Hostile names, containers and cost bombs against the decoder (audiodup/audio.py), issue #11.

Each class of problem is tested with several instances, on both decoder paths where it concerns
both (the ``decoder`` fixture of test_audio: ffmpeg disabled, ffmpeg enabled). Legs that need
ffmpeg to build their input are skipped, with the reason, where it is not installed.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import struct
import subprocess
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_audio import FFMPEG, correlation, decoder_fixture, needs_ffmpeg  # noqa: F401

import audiodup.audio as audio_module
import audiodup.ffmpeg as ffmpeg_module
import audiodup.mp4 as mp4_module
import audiodup.ogg as ogg_module
from audiodup.audio import ffmpeg_executable, load_audio
from audiodup.errors import AudioDecodeError, SilentAudioError
from audiodup.settings import Settings
from audiodup.synth import synthesize_work
from audiodup.workers import map_with_timeout

SR = 22050
ANALYSIS_SR = Settings().sample_rate_hz
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "audio"


def music(seed: int, duration_s: float, sr: int = SR) -> np.ndarray:
    return synthesize_work(seed, duration_s=duration_s, sr=sr)


def ffmpeg(*args: str | Path | int) -> None:
    subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-y", *map(str, args)], check=True)


def encode(tmp_path: Path, name: str, tracks: list[np.ndarray], *codec: str) -> Path:
    """Encode each of ``tracks`` (at SR) as one audio stream of ``name``, with ffmpeg."""
    inputs: list[str | Path] = []
    for index, track in enumerate(tracks):
        wav = tmp_path / f"track{index}.wav"
        sf.write(wav, track, SR)
        inputs += ["-i", wav]
    maps = [arg for index in range(len(tracks)) for arg in ("-map", f"{index}:a")]
    target = tmp_path / name
    ffmpeg(*inputs, *maps, *codec, target)
    return target


@pytest.fixture(scope="module")
def m4a_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """AAC in MP4 made by ffmpeg: with the index (moov) at the end, as ffmpeg writes it by
    default (only a seekable input decodes), and at the start."""
    if FFMPEG is None:
        pytest.skip("ffmpeg is not installed: it is needed to make AAC files")
    folder = tmp_path_factory.mktemp("m4a")
    moov_last = encode(folder, "moov_last.m4a", [music(21, 6.0)], "-c:a", "aac")
    faststart = folder / "faststart.m4a"
    ffmpeg("-i", moov_last, "-c", "copy", "-movflags", "+faststart", faststart)
    blobs = {"moov-last": moov_last.read_bytes(), "faststart": faststart.read_bytes()}
    assert blobs["moov-last"].rfind(b"moov") > blobs["moov-last"].find(b"mdat")
    return blobs


# --- 1. a file name is never read as a URL, a protocol or an option --------------------------

HOSTILE_NAMES = [
    "concat:a.ogg|b.ogg",
    "concat:clean.ogg",
    "subfile,,start,0,end,0,,:x.m4a",
    "file:x",
    "pipe:0",
    "-i.m4a",
    "-",
    "http:x.m4a",
    "data:audio;base64,AAAA",
    "tee:x.m4a",
    "%d.m4a",
    "new\nline.m4a",
    " a|b:c%00.m4a",
    "x" * 251 + ".m4a",  # NAME_MAX
]
NON_UTF8_NAME = b"caf\xe9_concat:\xff.m4a"


@pytest.fixture(scope="module")
def decoys() -> dict[str, bytes]:
    """Files a name read as a protocol would open instead: then the audio would differ."""
    blobs = {}
    for index, name in enumerate(["a.ogg", "b.ogg", "clean.ogg", "x", "x.m4a"]):
        blobs[name] = ogg_bytes(music(40 + index, 4.0), SR)
    return blobs


def store_as(folder: Path, name: str | bytes, blob: bytes, decoys: dict[str, bytes]) -> str:
    """Write ``blob`` as ``name`` in ``folder``, among the decoys; the name to open it by."""
    for decoy, content in decoys.items():
        (folder / decoy).write_bytes(content)
    raw_name = os.fsencode(name)
    Path(os.fsdecode(os.path.join(os.fsencode(folder), raw_name))).write_bytes(blob)
    return os.fsdecode(raw_name)


@pytest.fixture(scope="module")
def plain_m4a(m4a_files: dict[str, bytes], tmp_path_factory) -> audio_module.Audio:
    path = tmp_path_factory.mktemp("plain") / "plain.m4a"
    path.write_bytes(m4a_files["moov-last"])
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("AUDIODUP_FFMPEG", FFMPEG)
        return load_audio(path)


def test_aac_with_its_index_at_the_end_decodes_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, m4a_files: dict, plain_m4a
) -> None:
    """ffmpeg reads the file itself, seekable: not a pipe, where an MP4 index written after the
    audio cannot be reached."""
    monkeypatch.setenv("AUDIODUP_FFMPEG", FFMPEG)
    assert plain_m4a.duration_s == pytest.approx(6.0, abs=0.1)
    path = tmp_path / "faststart.m4a"
    path.write_bytes(m4a_files["faststart"])
    assert load_audio(path).sha256 == plain_m4a.sha256  # same packets, index moved


@pytest.mark.parametrize("name", [*HOSTILE_NAMES, NON_UTF8_NAME])
def test_protocol_like_names_decode_the_aac_file_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, m4a_files, plain_m4a, decoys, name
) -> None:
    """ffmpeg reads these files (libsndfile does not read AAC): the samples must be those the
    same bytes give under a plain name, whatever ffmpeg would make of the name."""
    monkeypatch.setenv("AUDIODUP_FFMPEG", FFMPEG)
    monkeypatch.chdir(tmp_path)
    audio = load_audio(store_as(tmp_path, name, m4a_files["moov-last"], decoys))
    assert np.array_equal(audio.samples, plain_m4a.samples)
    assert audio.sha256 == plain_m4a.sha256


@pytest.mark.parametrize("name", [*HOSTILE_NAMES[:8], NON_UTF8_NAME])
def test_protocol_like_names_decode_the_file_itself_on_every_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, decoder: str, decoys, name
) -> None:
    """The same for files libsndfile reads, with and without ffmpeg installed, by relative
    and by absolute path."""
    monkeypatch.chdir(tmp_path)
    blob = io.BytesIO()
    sf.write(blob, music(22, 5.0), SR, format="FLAC")
    expected = audio_module.audio_from_samples(sf.read(io.BytesIO(blob.getvalue()))[0], SR)
    relative = store_as(tmp_path, name, blob.getvalue(), decoys)
    for path in (relative, tmp_path / relative):
        assert load_audio(path).sha256 == expected.sha256


@needs_ffmpeg
def test_aac_copy_named_like_a_protocol_screens_as_the_copy(
    catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reported case: an AAC copy of a catalog work stored as ``concat:clean.ogg`` next to
    an unrelated ``clean.ogg`` was screened as ``clean.ogg``."""
    monkeypatch.setenv("AUDIODUP_FFMPEG", FFMPEG)
    monkeypatch.chdir(tmp_path)
    shutil.copy(FIXTURES / "uploads" / "unrelated_a.ogg", tmp_path / "clean.ogg")
    ffmpeg("-i", FIXTURES / "catalog" / "work_03.ogg", "-c:a", "aac", tmp_path / "copy.m4a")
    os.rename("copy.m4a", "concat:clean.ogg")
    verdict = catalog.screen("concat:clean.ogg")
    assert verdict.error is None, verdict.error
    assert verdict.verdict == "duplicate"
    assert Path(verdict.matches[0].path).name == "work_03.ogg"
    assert catalog.screen("clean.ogg").verdict == "clean"


@needs_ffmpeg
@pytest.mark.parametrize(
    ("name", "text"),
    [
        (
            "list.m3u8",
            "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n{target}\n#EXT-X-ENDLIST\n",
        ),
        ("list.ffconcat", "ffconcat version 1.0\nfile '{target}'\n"),
        ("relative.ffconcat", "ffconcat version 1.0\nfile target.mp3\n"),
    ],
    ids=["hls", "ffconcat-absolute", "ffconcat-relative"],
)
def test_playlists_do_not_open_other_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, text: str
) -> None:
    """A 100-byte playlist naming a catalog file is not that file."""
    monkeypatch.setenv("AUDIODUP_FFMPEG", FFMPEG)
    target = encode(tmp_path, "target.mp3", [music(23, 12.0)], "-c:a", "libmp3lame")
    playlist = tmp_path / name
    playlist.write_text(text.format(target=target))
    with pytest.raises(AudioDecodeError, match="not an audio container audiodup reads"):
        load_audio(playlist)


@needs_ffmpeg
@pytest.mark.parametrize("container", ["spdif", "WAV", "WAVEX", "RF64", "W64"])
def test_ac3_in_spdif_framing_is_decoded(tmp_path: Path, monkeypatch, container: str) -> None:
    """AC3 in IEC 61937 (S/PDIF) bursts, as DVD and CD rips carry it, alone or as the samples
    of a 16-bit stereo PCM WAV (plain, extensible or RF64) or Wave64: ffmpeg's default plays
    the AC3, libsndfile the bursts as loud noise (a red team's copy screened `clean`). It
    goes to ffmpeg; without it, an error."""
    monkeypatch.setenv("AUDIODUP_FFMPEG", FFMPEG)
    wav = tmp_path / "plain.wav"
    sf.write(wav, music(31, 8.0), SR)
    spdif = tmp_path / "spdif.wav"
    ffmpeg("-i", wav, "-ar", "48000", "-ac", "2", "-c:a", "ac3", "-f", "spdif", spdif)
    if container != "spdif":  # the bursts as the samples of a PCM file of that container
        bursts = np.frombuffer(spdif.read_bytes(), "<i2")
        frames = bursts[: len(bursts) // 2 * 2].reshape(-1, 2)
        sf.write(spdif, frames, 48000, format=container, subtype="PCM_16")
    audio, plain = load_audio(spdif), load_audio(wav)
    assert audio.source_duration_s == pytest.approx(8.0, abs=0.1)
    window = plain.samples[: 4 * ANALYSIS_SR]
    best = max(  # at the AC3 encoder's delay
        correlation(audio.samples[i : i + len(window)], window) for i in range(ANALYSIS_SR // 10)
    )
    assert best > 0.9
    monkeypatch.setenv("AUDIODUP_FFMPEG", "none")
    with pytest.raises(AudioDecodeError, match="S/PDIF|Format not recognised"):
        load_audio(spdif)


# --- 4. a file that cannot be opened is one error, and never reaches ffmpeg ------------------


@pytest.fixture
def fake_ffmpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An "ffmpeg" that records its pid in the returned file, then sleeps
    ``FAKE_FFMPEG_SLEEP_S`` seconds (0 unless set) and prints nothing."""
    calls = tmp_path / "ffmpeg_calls"
    script = tmp_path / "bin" / "ffmpeg"
    script.parent.mkdir()
    script.write_text(
        '#!/bin/sh\necho "$$" >> "$FAKE_FFMPEG_CALLS"\nexec sleep "${FAKE_FFMPEG_SLEEP_S:-0}"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("AUDIODUP_FFMPEG", str(script))
    monkeypatch.setenv("FAKE_FFMPEG_CALLS", str(calls))
    return calls


def _missing(tmp: Path) -> Path:
    return tmp / "missing.wav"


def _dangling(tmp: Path) -> Path:
    (tmp / "dangling.wav").symlink_to(tmp / "gone.wav")
    return tmp / "dangling.wav"


def _loop(tmp: Path) -> Path:
    (tmp / "loop_a.wav").symlink_to(tmp / "loop_b.wav")
    (tmp / "loop_b.wav").symlink_to(tmp / "loop_a.wav")
    return tmp / "loop_a.wav"


def _too_long(tmp: Path) -> Path:
    return tmp / ("y" * 300 + ".wav")


def _under_a_file(tmp: Path) -> Path:
    (tmp / "file.wav").write_bytes(b"RIFF")
    return tmp / "file.wav" / "inner.wav"


def _folder(tmp: Path) -> Path:
    (tmp / "folder.wav").mkdir()
    return tmp / "folder.wav"


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "pipe.wav")
    return tmp / "pipe.wav"


def _empty(tmp: Path) -> Path:
    (tmp / "empty.wav").write_bytes(b"")
    return tmp / "empty.wav"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_missing, "file not found"),
        (_dangling, "file not found"),
        (_loop, "cannot open file: Too many levels of symbolic links"),
        (_too_long, "cannot open file: File name too long"),
        (_under_a_file, "cannot open file: Not a directory"),
        (_folder, "not a regular file"),
        (_fifo, "not a regular file"),
        (lambda tmp: Path(os.devnull), "not a regular file"),
        (_empty, r"empty file \(0 bytes\)"),
    ],
    ids=[
        "ENOENT",
        "dangling",
        "ELOOP",
        "ENAMETOOLONG",
        "ENOTDIR",
        "EISDIR",
        "fifo",
        "device",
        "empty",
    ],
)
def test_files_that_cannot_be_opened_never_reach_ffmpeg(
    tmp_path: Path, fake_ffmpeg: Path, make, message: str
) -> None:
    with pytest.raises(AudioDecodeError, match=f"^{message}$"):
        load_audio(make(tmp_path))
    assert not fake_ffmpeg.exists()


@pytest.mark.parametrize(
    ("where", "error", "message"),
    [
        ("open", PermissionError(13, "Permission denied"), "cannot open file: Permission denied"),
        ("open", OSError(24, "Too many open files"), "cannot open file: Too many open files"),
        (
            "libsndfile",
            PermissionError(13, "Permission denied"),
            "cannot read file: Permission denied",
        ),
        ("libsndfile", OSError(5, "Input/output error"), "cannot read file: Input/output error"),
    ],
    ids=["EACCES-open", "EMFILE-open", "EACCES-read", "EIO-read"],
)
def test_system_errors_are_one_line_and_never_reach_ffmpeg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_ffmpeg: Path, where, error, message
) -> None:
    """Root opens any file, so the errors are raised where the decoder opens or reads."""
    path = tmp_path / "locked.wav"
    sf.write(path, music(24, 4.0), SR)
    if where == "open":
        real_open = os.open

        def failing_open(name, *args, **kwargs):
            if os.fsdecode(name) == str(path):
                raise error
            return real_open(name, *args, **kwargs)

        monkeypatch.setattr(audio_module.os, "open", failing_open)
    else:

        def failing_soundfile(*args, **kwargs):
            raise error

        monkeypatch.setattr(audio_module.sf, "SoundFile", failing_soundfile)
    with pytest.raises(AudioDecodeError, match=f"^{message}$"):
        load_audio(path)
    assert not fake_ffmpeg.exists()


def test_a_format_libsndfile_cannot_parse_goes_to_ffmpeg(tmp_path: Path, fake_ffmpeg) -> None:
    """The control for the tests above: the fake ffmpeg does get the files it should."""
    path = tmp_path / "unknown.m4a"
    path.write_bytes(np.random.default_rng(0).bytes(20_000))
    with pytest.raises(AudioDecodeError, match="cannot decode"):
        load_audio(path)
    assert fake_ffmpeg.exists()


def test_ffmpeg_executable_is_chosen_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_ffmpeg: Path
) -> None:
    fake = os.environ["AUDIODUP_FFMPEG"]
    assert ffmpeg_executable() == fake
    for disabled in ("none", "NONE", " none "):
        monkeypatch.setenv("AUDIODUP_FFMPEG", disabled)
        assert ffmpeg_executable() is None
    monkeypatch.setenv("AUDIODUP_FFMPEG", str(tmp_path / "no_such_ffmpeg"))
    assert ffmpeg_executable() is None
    monkeypatch.delenv("AUDIODUP_FFMPEG")
    assert ffmpeg_executable() == shutil.which("ffmpeg")
    monkeypatch.setenv("AUDIODUP_FFMPEG", "none")
    path = tmp_path / "unknown.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(2000))
    with pytest.raises(AudioDecodeError, match="disabled by AUDIODUP_FFMPEG=none"):
        load_audio(path)


# --- 2. chained and multiplexed containers: everything a player can play ---------------------


def ogg_bytes(samples: np.ndarray, sr: int, subtype: str = "VORBIS") -> bytes:
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", sr, 1, format="OGG", subtype=subtype) as f:
        for start in range(0, len(samples), sr):  # small writes: libvorbis crashes on big ones
            f.write(samples[start : start + sr])
    return buffer.getvalue()


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return table


CRC_TABLE = _crc_table()


def ogg_crc(page: bytes) -> int:
    """The Ogg page checksum, bit by bit from the specification (independent of ogg.py)."""
    crc = 0
    for byte in page[:22] + b"\x00" * 4 + page[26:]:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ CRC_TABLE[(crc >> 24) ^ byte]
    return crc


def ogg_pages(blob: bytes) -> list[bytes]:
    pages, offset = [], 0
    while offset < len(blob):
        assert blob[offset : offset + 4] == b"OggS"
        n_segments = blob[offset + 26]
        length = 27 + n_segments + sum(blob[offset + 27 : offset + 27 + n_segments])
        pages.append(blob[offset : offset + length])
        offset += length
    return pages


def sealed(page: bytes) -> bytes:
    """``page`` with its checksum recomputed."""
    return page[:22] + struct.pack("<I", ogg_crc(page)) + page[26:]


def with_serial(page: bytes, serial: int) -> bytes:
    return sealed(page[:14] + struct.pack("<I", serial) + page[18:])


def make_page(serial: int, body: bytes, flags: int = 0x02, sequence: int = 0) -> bytes:
    assert len(body) < 255
    header = b"OggS" + struct.pack("<BBqIIIB", 0, flags, 0, serial, sequence, 0, 1)
    return sealed(header + bytes([len(body)]) + body)


def multiplexed(*streams: list[bytes]) -> bytes:
    """Logical streams in one link: every BOS page first, then the other pages in turn."""
    streams = [[with_serial(p, 1000 + i) for p in pages] for i, pages in enumerate(streams)]
    out = [pages[0] for pages in streams]
    rest = [pages[1:] for pages in streams]
    while any(rest):
        for pages in rest:
            if pages:
                out.append(pages.pop(0))
    return b"".join(out)


def assert_holds_in_order(audio, parts: list[audio_module.Audio]) -> None:
    """``audio`` is ``parts`` one after another (each decoded alone: same length, same sound)."""
    assert len(audio.samples) == sum(len(p.samples) for p in parts)
    start = 0
    for part in parts:
        inner = slice(start + 200, start + len(part.samples) - 200)
        assert correlation(audio.samples[inner], part.samples[200:-200]) > 0.999
        start += len(part.samples)


OGG_LINKS = {  # (seed, seconds, sample rate, codec) of each link
    "2-vorbis": [(31, 5.0, SR, "VORBIS"), (32, 8.0, SR, "VORBIS")],
    "3-vorbis-3-rates": [
        (33, 4.0, 16000, "VORBIS"), (34, 5.0, 44100, "VORBIS"), (35, 4.0, SR, "VORBIS"),
    ],
    "2-opus": [(36, 4.0, 48000, "OPUS"), (37, 6.0, 48000, "OPUS")],
    "vorbis-opus-vorbis": [
        (38, 3.5, SR, "VORBIS"), (39, 4.0, 48000, "OPUS"), (30, 3.5, SR, "VORBIS"),
    ],
}  # fmt: skip


@pytest.mark.parametrize("links", list(OGG_LINKS), ids=list(OGG_LINKS))
def test_every_link_of_a_chained_ogg_is_decoded(tmp_path: Path, decoder: str, links: str) -> None:
    blobs = [
        ogg_bytes(music(seed, seconds, sr), sr, subtype)
        for seed, seconds, sr, subtype in OGG_LINKS[links]
    ]
    parts = []
    for index, blob in enumerate(blobs):
        (tmp_path / f"link{index}.ogg").write_bytes(blob)
        parts.append(load_audio(tmp_path / f"link{index}.ogg"))
    chain = tmp_path / "chain.ogg"
    chain.write_bytes(b"".join(blobs))  # what `cat a.ogg b.ogg > chain.ogg` makes
    audio = load_audio(chain)
    assert audio.source_duration_s == pytest.approx(
        sum(s for _, s, _, _ in OGG_LINKS[links]), abs=0.05
    )
    assert not audio.truncated
    assert_holds_in_order(audio, parts)


def test_a_copy_after_unrelated_audio_in_an_ogg_chain_is_found(
    catalog, tmp_path: Path, decoder: str
) -> None:
    """The reported case: 5 s of other audio, then a whole catalog work, decoded as 5 s."""
    chain = tmp_path / "chain.ogg"
    stolen = (FIXTURES / "catalog" / "work_03.ogg").read_bytes()
    chain.write_bytes(ogg_bytes(music(41, 5.0), SR) + stolen)
    verdict = catalog.screen(chain)
    assert verdict.duration_s == pytest.approx(45.0, abs=0.1)
    assert verdict.verdict == "duplicate"
    assert Path(verdict.matches[0].path).name == "work_03.ogg"


@needs_ffmpeg
def test_a_chain_holding_a_link_libsndfile_cannot_read_is_decoded_link_by_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libsndfile cannot read ffmpeg's Ogg FLAC, and ffmpeg reads a chain only as far as its
    links share one format: a copy in a 24-bit link after a 16-bit one was dropped with the
    file screened as whole. Each link is now decoded by ffmpeg on its own."""
    monkeypatch.setenv("AUDIODUP_FFMPEG", FFMPEG)
    blobs = []
    for index, (samples, sample_format) in enumerate(
        [(music(44, 4.0), "s16"), (music(45, 6.0), "s32")]
    ):
        flac = ("-c:a", "flac", "-sample_fmt", sample_format)
        blobs.append(encode(tmp_path, f"link{index}.oga", [samples], *flac).read_bytes())
    chain = tmp_path / "chain.oga"
    chain.write_bytes(b"".join(blobs))
    walks = []
    walk = ogg_module._links
    monkeypatch.setattr(ogg_module, "_links", lambda fd: walks.append(fd) or walk(fd))
    audio = load_audio(chain)
    assert len(walks) == 1  # libsndfile's attempt and ffmpeg's share one walk of the pages
    assert audio.source_duration_s == pytest.approx(10.0, abs=0.05)
    assert not audio.truncated
    assert_holds_in_order(audio, [load_audio(tmp_path / f"link{i}.oga") for i in range(2)])


@pytest.mark.parametrize("count", [2, 3])
def test_every_stream_multiplexed_in_an_ogg_link_is_decoded(
    tmp_path: Path, decoder: str, count: int
) -> None:
    """libsndfile alone decodes the first logical stream of a link and says nothing of the rest."""
    blobs = [ogg_bytes(music(50 + i, 4.0 + 2 * i), SR) for i in range(count)]
    parts = [load_audio_bytes(tmp_path, f"stream{i}.ogg", blob) for i, blob in enumerate(blobs)]
    audio = load_audio_bytes(tmp_path, "mux.ogg", multiplexed(*map(ogg_pages, blobs)))
    assert audio.source_duration_s == pytest.approx(
        sum(4.0 + 2 * i for i in range(count)), abs=0.05
    )
    assert_holds_in_order(audio, parts)


def load_audio_bytes(folder: Path, name: str, blob: bytes) -> audio_module.Audio:
    (folder / name).write_bytes(blob)
    return load_audio(folder / name)


def test_video_and_skeleton_streams_of_an_ogg_link_are_skipped(tmp_path: Path, decoder) -> None:
    vorbis = ogg_bytes(music(55, 5.0), SR)
    theora = [make_page(7, b"\x80theora" + bytes(40))]
    skeleton = [make_page(8, b"fishead\x00" + bytes(56))]
    alone = load_audio_bytes(tmp_path, "alone.ogg", vorbis)
    for order in ([theora, ogg_pages(vorbis), skeleton], [skeleton, ogg_pages(vorbis)]):
        audio = load_audio_bytes(tmp_path, "video.ogg", multiplexed(*order))
        assert audio.sha256 == alone.sha256


def test_an_ogg_stream_of_an_unknown_codec_is_not_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audio libsndfile does not read (Speex here) may hold the copy: without ffmpeg the file
    is refused rather than screened without it."""
    monkeypatch.setenv("AUDIODUP_FFMPEG", "none")
    vorbis = ogg_pages(ogg_bytes(music(56, 5.0), SR))
    speex = [make_page(9, b"Speex   1.2" + bytes(69))]
    for streams in ([vorbis, speex], [speex, vorbis]):
        path = tmp_path / "speex.ogg"
        path.write_bytes(multiplexed(*streams))
        with pytest.raises(AudioDecodeError, match="codec libsndfile does not read.*ffmpeg"):
            load_audio(path)


def _junk_between(first: bytes, second: bytes) -> bytes:
    junk = np.random.default_rng(3).bytes(5000)
    return first + junk + b"OggS" + junk[:100] + b"OggS\x00\x02" + bytes(40) + second


def _bad_page_spanning_the_next_link(first: bytes, second: bytes) -> bytes:
    """A page header whose lacing claims 65 KB, so a walker that trusts it without checking
    the CRC jumps over the next link's first pages; libogg resynchronises byte by byte."""
    header = b"OggS" + struct.pack("<BBqIIIB", 0, 0, 0, 77, 0, 0xDEADBEEF, 255)
    return first + header + b"\xff" * 255 + second


def _damaged_page_inside(first: bytes, second: bytes) -> bytes:
    pages = ogg_pages(first)
    middle = bytearray(pages[len(pages) // 2])
    middle[len(middle) // 2] ^= 0xFF  # its CRC no longer matches: players drop the page
    pages[len(pages) // 2] = bytes(middle)
    return b"".join(pages) + second


@pytest.mark.parametrize(
    "damage", [_junk_between, _bad_page_spanning_the_next_link, _damaged_page_inside]
)
def test_damage_between_links_does_not_hide_the_next_link(
    tmp_path: Path, decoder: str, damage
) -> None:
    first, second = ogg_bytes(music(57, 5.0), SR), ogg_bytes(music(58, 8.0), SR)
    alone = load_audio_bytes(tmp_path, "second.ogg", second)
    audio = load_audio_bytes(tmp_path, "damaged.ogg", damage(first, second))
    assert audio.source_duration_s > 12.0
    tail = audio.samples[-len(alone.samples) :]
    assert correlation(tail[200:-200], alone.samples[200:-200]) > 0.999


def test_ogg_walk_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, decoder: str) -> None:
    """Past the page or stream limits of the walk in Python, ffmpeg (in C) reads the chain;
    without it the file is refused, never decoded in part."""
    links = [ogg_bytes(music(60 + i, 3.5), SR) for i in range(3)]
    path = tmp_path / "chain.ogg"
    path.write_bytes(b"".join(links))
    assert load_audio(path).source_duration_s == pytest.approx(10.5, abs=0.05)
    for module, limit, value, message in [
        (audio_module, "_MAX_OGG_STREAMS", 2, "more than 2 chained Ogg streams"),
        (ogg_module, "_MAX_PAGES", 10, "more than 10 Ogg pages"),
    ]:
        with monkeypatch.context() as patched:
            patched.setattr(module, limit, value)
            if decoder == "ffmpeg-fallback":
                assert load_audio(path).source_duration_s == pytest.approx(10.5, abs=0.1)
            else:
                with pytest.raises(
                    AudioDecodeError, match=f"{message} .*disabled by AUDIODUP_FFMPEG"
                ):
                    load_audio(path)


@needs_ffmpeg
def test_a_chain_past_both_limits_is_refused_by_its_own_count(tmp_path: Path, monkeypatch) -> None:
    """A chain longer than libsndfile's link limit and ffmpeg's stream limit is one error that
    counts its links (a red team's 1,100 links were "17 audio streams")."""
    monkeypatch.setenv("AUDIODUP_FFMPEG", FFMPEG)
    path = tmp_path / "chain.ogg"
    path.write_bytes(b"".join(ogg_bytes(music(60 + i, 3.5), SR) for i in range(4)))
    monkeypatch.setattr(audio_module, "_MAX_OGG_STREAMS", 2)
    monkeypatch.setattr(audio_module, "_MAX_FFMPEG_AUDIO_STREAMS", 2)
    with pytest.raises(
        AudioDecodeError, match=r"4 Ogg streams \(chained or multiplexed\), at most 2"
    ):
        load_audio(path)


def ogg_hiding_a_page(blob: bytes, headers: int, sr: int) -> bytes:
    """The Ogg stream ``blob`` (``headers`` header packets) with the packets from about a
    quarter of it on riding one page (as many as it holds), followed by a last page of one
    packet that states the stream ends 0.5 s into them: libsndfile reads the big page whole
    and stops at the stated end, ffmpeg plays it all."""
    pages, packets, packet = ogg_pages(blob), [], b""
    ends_page = {}  # packet -> the pages up to it, for a packet that ends its page's last
    for number, page in enumerate(pages):
        n, granule = page[26], struct.unpack_from("<q", page, 6)[0]
        body = 27 + n
        for i, value in enumerate(page[27 : 27 + n]):
            packet += page[body : body + value]
            body += value
            if value < 255:
                packets.append((packet, granule if i == n - 1 else -1))
                packet = b""
                if i == n - 1:
                    ends_page[len(packets) - 1] = number + 1
    serial = struct.unpack_from("<I", pages[0], 14)[0]

    def page_of(sequence: int, granule: int, held: list, flags: int = 0) -> bytes:
        lacing = b"".join(b"\xff" * (len(k) // 255) + bytes([len(k) % 255]) for k, _ in held)
        head = b"OggS" + struct.pack(
            "<BBqIIIB", 0, flags, granule, serial, sequence, 0, len(lacing)
        )
        return sealed(head + lacing + b"".join(k for k, _ in held))

    first = next(i for i in range(len(packets) // 4, len(packets)) if i - 1 in ends_page)
    stated, out = packets[first - 1][1] + sr // 2, pages[: ends_page[first - 1]]
    last, lacing = first, 0
    while lacing + len(packets[last][0]) // 255 + 1 <= 255:  # as many as one page holds
        lacing += len(packets[last][0]) // 255 + 1
        last += 1
    through = next(packets[j][1] for j in range(last - 1, len(packets)) if packets[j][1] >= 0)
    out.append(page_of(len(out), through, packets[first:last]))  # about where its packets end
    out.append(page_of(len(out), stated, packets[last : last + 1], 0x04))
    return b"".join(out)


@pytest.mark.parametrize("codec", ["OPUS", "VORBIS"])
def test_ogg_packets_past_the_stated_end_hide_nothing(
    tmp_path: Path, decoder: str, codec: str
) -> None:
    """One page of long packets before a last page stating an earlier end: libsndfile reads
    all the bytes and stops at the stated end, ffmpeg plays the page (a red team's Opus and
    Vorbis copies screened `clean`). The packets' own durations count: ffmpeg decodes it, or
    an error."""
    sr = 48000 if codec == "OPUS" else SR
    blob = ogg_bytes(music(62, 40.0, sr), sr, codec)
    path = tmp_path / "hiding.ogg"
    path.write_bytes(ogg_hiding_a_page(blob, 2 if codec == "OPUS" else 3, sr))
    if decoder == "libsndfile-only":
        with pytest.raises(AudioDecodeError, match=r"packets hold [\d.]+ s more than the"):
            load_audio(path)
        return
    assert load_audio(path).source_duration_s > 14.0


def test_the_packets_summed_are_bounded(tmp_path: Path, decoder: str, monkeypatch) -> None:
    """A stream of more packets than the check sums (a million, about 1 CPU-s: 20 minutes of
    2.5-ms Opus frames are 480,000) is not read to its stated end by libsndfile alone."""
    monkeypatch.setattr(ogg_module, "MAX_CHECKED_PACKETS", 100)
    path = tmp_path / "many.opus"
    path.write_bytes(ogg_bytes(music(64, 10.0, 48000), 48000, "OPUS"))  # 500 packets
    if decoder == "libsndfile-only":
        with pytest.raises(AudioDecodeError, match="more than 100 Ogg packets"):
            load_audio(path)
        return
    assert load_audio(path).source_duration_s == pytest.approx(10.0, abs=0.1)


def test_the_packet_walk_keeps_only_what_durations_need() -> None:
    """The three first packets up to 1 MiB (a Vorbis setup header), the others' first 2 bytes:
    a packet over thousands of pages (a hostile 40 MB over 160,000) is not built up by copies
    of all of it."""
    blob = ogg_bytes(music(65, 4.0, 48000), 48000, "OPUS")
    pages = ogg_pages(blob)
    serial = struct.unpack_from("<I", pages[0], 14)[0]

    def page(sequence: int, continued: bool, lacing: int, body: bytes, granule: int = -1) -> bytes:
        head = b"OggS" + struct.pack("<BBqIIIB", 0, int(continued), granule, serial, sequence, 0, 1)
        return sealed(head + bytes([lacing]) + body)

    out = pages[:2]
    for number, first in enumerate((0xF8, 0xFC)):  # 2,000 full segments and 10 bytes each
        for i in range(2000):
            out.append(page(len(out), i > 0, 255, bytes([first + i % 2]) * 255))
        out.append(page(len(out), True, 10, bytes(10), granule=960 * (number + 1)))  # 20 ms
    data = b"".join(out)
    packets = [k for k, _ in ogg_module._packets(lambda at, n: data[at : at + n], len(data))]
    assert packets[0].startswith(b"OpusHead") and packets[1].startswith(b"OpusTags")
    assert len(packets[2]) == 2000 * 255 + 10 and packets[3:] == [b"\xfc\xfc"]
    assert ogg_module.seconds_past_end(lambda at, n: data[at : at + n], len(data)) == 0.0


def test_honest_ogg_packets_end_where_their_stream_says(tmp_path: Path) -> None:
    for codec, sr in (("OPUS", 48000), ("VORBIS", SR)):
        blob = ogg_bytes(music(63, 20.0, sr), sr, codec)
        past = ogg_module.seconds_past_end(lambda at, n, blob=blob: blob[at : at + n], len(blob))
        assert past < 0.15, codec


def test_the_ogg_checksum_matches_the_specification() -> None:
    blob = ogg_bytes(music(61, 4.0), SR)
    for page in ogg_pages(blob):
        assert ogg_module._page_crc(page[:22] + bytes(4) + page[26:]) == ogg_crc(page)
        assert ogg_crc(page) == struct.unpack_from("<I", page, 22)[0]


@needs_ffmpeg
@pytest.mark.parametrize(
    ("name", "codec"),
    [
        ("two.mkv", ["-c:a", "flac"]),
        ("two.mp4", ["-c:a", "aac"]),
    ],
)
def test_every_audio_stream_of_a_container_is_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, codec: list[str]
) -> None:
    """Tracks of an MKV or MP4 (which ffmpeg reads), one after another: a player lets the
    listener pick any track, so each is screened."""
    monkeypatch.setenv("AUDIODUP_FFMPEG", FFMPEG)
    tracks = [music(70, 5.0), music(71, 7.0), music(72, 4.0)]
    parts = [
        load_audio(encode(tmp_path, f"alone{i}.{name}", [t], *codec)) for i, t in enumerate(tracks)
    ]
    audio = load_audio(encode(tmp_path, name, tracks, *codec))
    assert audio.source_duration_s == pytest.approx(16.0, abs=0.2)
    start = 0
    for part in parts:
        inner = slice(start + 2000, start + len(part.samples) - 2000)
        assert correlation(audio.samples[inner], part.samples[2000:-2000]) > 0.99
        start += len(part.samples)


@needs_ffmpeg
def test_video_streams_are_skipped_and_stream_count_is_capped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDIODUP_FFMPEG", FFMPEG)
    wav = tmp_path / "a.wav"
    sf.write(wav, music(73, 5.0), SR)
    video = tmp_path / "video.mkv"
    ffmpeg("-f", "lavfi", "-i", "color=c=black:s=32x32:d=5", "-i", wav, "-map", "0:v", "-map",
           "1:a", "-map", "1:a", "-c:v", "mpeg4", "-c:a", "flac", video)  # fmt: skip
    assert load_audio(video).source_duration_s == pytest.approx(10.0, abs=0.1)
    monkeypatch.setattr(audio_module, "_MAX_FFMPEG_AUDIO_STREAMS", 1)
    with pytest.raises(AudioDecodeError, match="2 audio streams, at most 1 through ffmpeg"):
        load_audio(video)


def two_stream_mkv(tmp_path: Path, *tags: str) -> Path:
    """An MKV of two FLAC streams, 3 s then 5 s, with ffmpeg's ``-metadata`` ``tags``."""
    for index, (seed, seconds) in enumerate([(80, 3.0), (81, 5.0)]):
        sf.write(tmp_path / f"s{index}.wav", music(seed, seconds), SR)
    target = tmp_path / "tagged.mkv"
    inputs = ["-i", tmp_path / "s0.wav", "-i", tmp_path / "s1.wav", "-map", "0:a", "-map", "1:a"]
    ffmpeg(*inputs, "-c:a", "flac", *tags, target)
    return target


STREAM_TAGS = {
    # ffmpeg prints a title's lines under the stream: 4,200 of them that name a stream
    "title-of-stream-lines": ["-metadata:s:a:0", "title=x" + "\nStream #0:9" * 4200],
    # a stream's language is printed inside its own line, as the file has it
    "language-with-spaces": ["-metadata:s:a:1", "language=a b"],
    "language-of-20000-bytes": ["-metadata:s:a:1", "language=" + "z" * 20_000],
    "language-forging-a-description": [
        "-metadata:s:a:1",
        "language=x): Audio: pcm_s16le, 8000 Hz, mono, s16 (y",
    ],
}


@needs_ffmpeg
@pytest.mark.parametrize("tags", list(STREAM_TAGS))
def test_a_stream_s_tags_neither_hide_nor_forge_a_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tags: str
) -> None:
    """ffmpeg's description of its input is read for the audio streams to decode; the file's
    tags are printed in it (a red-team review: a title of stream lines, or a language with a
    space, hid the second stream, a copy, and the upload was clean)."""
    monkeypatch.setenv("AUDIODUP_FFMPEG", FFMPEG)
    path = two_stream_mkv(tmp_path, *STREAM_TAGS[tags])
    with path.open("rb") as f:
        streams = ffmpeg_module.audio_streams(FFMPEG, f.fileno())
    assert streams == [ffmpeg_module.FfmpegStream(SR, 1, "mono", "mono", "matroska,webm")] * 2
    assert load_audio(path).source_duration_s == pytest.approx(8.0, abs=0.1)


@needs_ffmpeg
def test_a_tag_that_breaks_a_stream_s_line_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A language with a line break splits its stream's line: which stream it describes cannot
    be told, and a forged line after it could stand for another. One error, no guess."""
    monkeypatch.setenv("AUDIODUP_FFMPEG", FFMPEG)
    forged = "language=x\n    Stream #0:0: Audio: pcm_s16le, 8000 Hz, mono, s16"
    path = two_stream_mkv(tmp_path, "-metadata:s:a:1", forged)
    with pytest.raises(AudioDecodeError, match="ffmpeg's list of its streams is garbled"):
        load_audio(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"mono", (1, "mono")),
        (b"quad", (4, "quad")),
        (b"quad(side)", (4, "quad(side)")),
        (b"5.1(side)", (6, "5.1(side)")),
        (b"7.1.4", (12, "7.1.4")),
        (b"cube", (8, "cube")),
        (b"4 channels (FL+FR+BL+BR)", (4, "FL+FR+BL+BR")),
        (b"4 channels", (4, None)),  # no order stated: -ac keeps theirs
        (b"5 channels (FL+FR)", (5, None)),  # a list that is not the count: not passed on
        (b"ambisonic 1", (None, None)),
    ],
)
def test_a_probed_layout_gives_its_channels_and_the_name_that_keeps_them(
    text: bytes, expected: tuple[int | None, str | None]
) -> None:
    assert ffmpeg_module._layout(text) == expected


def quad_copy(copy: np.ndarray, seed: int) -> np.ndarray:
    """Quad (FL FR BL BR): noise in front, ``copy`` in antiphase between the back channels."""
    noise = np.random.default_rng(seed).standard_normal((len(copy), 2)).astype(np.float32)
    return np.column_stack([0.05 * noise, 0.8 * copy, -0.8 * copy]).astype(np.float32)


@needs_ffmpeg
@pytest.mark.parametrize("name", ["quad.mov", "quad.mkv"])
def test_a_layout_other_than_ffmpeg_s_default_keeps_its_channels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """A quad file's back channels are not 4.0's back centre: ``-ac 4`` summed them, and a copy
    in antiphase between them was gone before the channels were screened (a red-team review:
    MOV and MKV, which ffmpeg reads, were clean; the same samples in a WAV were not)."""
    monkeypatch.setenv("AUDIODUP_FFMPEG", FFMPEG)
    copy = music(82, 8.0)
    source = tmp_path / "quad.wav"
    sf.write(source, quad_copy(copy, 83), SR)  # WAVE_FORMAT_EXTENSIBLE, no mask: 4.0 to ffmpeg
    path = tmp_path / name
    ffmpeg("-i", source, "-af", "channelmap=channel_layout=quad", "-c:a", "pcm_s24le"
           if name.endswith(".mov") else "flac", path)  # fmt: skip
    direct, through_ffmpeg = load_audio(source), load_audio(path)
    assert through_ffmpeg.channels is not None and through_ffmpeg.channels.shape[1] == 4
    for index in range(4):  # as libsndfile reads them from the WAV
        a, b = direct.channels[:, index], through_ffmpeg.channels[:, index]
        assert correlation(a, b) > 0.99, index
    assert np.sqrt(np.mean(through_ffmpeg.channels[:, 2:] ** 2)) > 0.1


@needs_ffmpeg
@pytest.mark.parametrize("container", ["adts", "mp3"])
def test_a_mono_stream_that_turns_stereo_keeps_its_stereo_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, container: str
) -> None:
    """ffmpeg keeps a stream's first layout and mixes later frames down to it: mono frames,
    then a copy in antiphase between stereo ones (concatenated ADTS or MP3), cancelled the
    copy (a red-team review). A mono stream is now asked for as two channels; one that
    stays mono decodes to the samples ffmpeg's mono output gives, and no difference."""
    monkeypatch.setenv("AUDIODUP_FFMPEG", FFMPEG)
    codec = ["-c:a", "aac", "-f", "adts"] if container == "adts" else ["-c:a", "libmp3lame"]
    sf.write(tmp_path / "decoy.wav", music(84, 4.0), SR)
    copy = music(85, 8.0)
    sf.write(tmp_path / "anti.wav", np.column_stack([0.8 * copy, -0.8 * copy]), SR)
    parts = []
    for name in ("decoy", "anti"):
        parts.append(tmp_path / f"{name}.{container}")
        ffmpeg("-i", tmp_path / f"{name}.wav", *codec, "-b:a", "128k", parts[-1])
    joined = tmp_path / f"joined.{container}"
    joined.write_bytes(parts[0].read_bytes() + parts[1].read_bytes())
    audio = load_audio(joined)
    sf.write(tmp_path / "copy.wav", copy, SR)
    honest = load_audio(tmp_path / "copy.wav").samples
    hidden = honest[2 * ANALYSIS_SR : 5 * ANALYSIS_SR]
    start = 6 * ANALYSIS_SR  # give or take the codecs' delays and the copy's leading silence
    lags = range(start - ANALYSIS_SR // 2, start + ANALYSIS_SR // 2, 2)
    assert max(abs(correlation(audio.samples[i : i + len(hidden)], hidden)) for i in lags) > 0.95
    mono = load_audio(parts[0])
    assert mono.difference is None
    if container == "mp3":  # libsndfile decodes an MP3 that stays mono
        return
    own = tmp_path / "own.wav"  # ffmpeg's mono output, at the analysis rate already
    ffmpeg("-i", parts[0], "-ac", "1", "-ar", ANALYSIS_SR, "-c:a", "pcm_f32le", own)
    np.testing.assert_allclose(mono.samples, load_audio(own).samples, rtol=0, atol=1e-5)


@needs_ffmpeg
@pytest.mark.parametrize("codec", ["ac3", "adts"])
def test_a_stream_whose_layout_changes_mid_stream_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, codec: str
) -> None:
    """ffmpeg mixes every frame down to the first frames' layout: stereo, then 5.1 frames with
    a copy at +0.5 in front left and -0.707 in side left cancelled it, in the mix and in every
    channel (a red team). Such a stream is one error, never a `clean`; one that stays in its
    layout decodes."""
    monkeypatch.setenv("AUDIODUP_FFMPEG", FFMPEG)
    copy = music(86, 6.0)
    six = np.zeros((len(copy), 6), np.float32)
    six[:, 0], six[:, 4] = 0.5 * copy, -0.707 * copy  # 5.1(side): FL FR FC LFE SL SR
    sf.write(tmp_path / "stereo.wav", np.column_stack([music(87, 2.0)] * 2), SR)
    sf.write(tmp_path / "six.wav", six, SR)
    encode = ["-c:a", "ac3"] if codec == "ac3" else ["-c:a", "aac", "-f", "adts"]
    parts = []
    for name, layout in (("stereo", "stereo"), ("six", "5.1(side)")):
        parts.append(tmp_path / f"{name}.{codec}")
        ffmpeg("-i", tmp_path / f"{name}.wav", "-af", f"channelmap=channel_layout={layout}",
               *encode, parts[-1])  # fmt: skip
    joined = tmp_path / f"joined.{codec}"
    joined.write_bytes(parts[0].read_bytes() + parts[1].read_bytes())
    with pytest.raises(AudioDecodeError, match="its channel layout changes mid-stream"):
        load_audio(joined)
    assert load_audio(parts[1]).channels.shape[1] == 6


@needs_ffmpeg
def test_an_audio_stream_that_starts_mid_file_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An MPEG program stream whose second audio stream (the copy) starts after the part
    ffmpeg reads to list the streams: it was never decoded, and the file was `clean`."""
    monkeypatch.setenv("AUDIODUP_FFMPEG", FFMPEG)
    sf.write(tmp_path / "cover.wav", music(88, 60.0), 48_000)
    sf.write(tmp_path / "copy.wav", music(89, 20.0), 48_000)
    mp2 = ["-c:a", "mp2", "-b:a", "192k", "-f", "mpeg"]
    ffmpeg("-i", tmp_path / "cover.wav", "-t", "10", *mp2, tmp_path / "a.mpg")
    ffmpeg("-i", tmp_path / "cover.wav", "-i", tmp_path / "copy.wav", "-map", "0:a", "-map",
           "1:a", "-t", "20", *mp2[:4], "-output_ts_offset", "10", "-f", "mpeg",
           tmp_path / "b.mpg")  # fmt: skip
    ffmpeg("-i", tmp_path / "cover.wav", "-ss", "30", *mp2[:4], "-output_ts_offset", "30",
           "-f", "mpeg", tmp_path / "c.mpg")  # fmt: skip
    joined = tmp_path / "joined.mpg"
    joined.write_bytes(b"".join((tmp_path / f"{x}.mpg").read_bytes() for x in "abc"))
    with pytest.raises(AudioDecodeError, match="an audio stream starts mid-file"):
        load_audio(joined)
    assert load_audio(tmp_path / "a.mpg").source_duration_s == pytest.approx(10.0, abs=0.2)


def with_edit(
    blob: bytes, duration_s: float, media_start_s: float | None = None, header_too: bool = False
) -> bytes:
    """An MP4 whose one edit (``elst``) plays ``duration_s`` of its media, from
    ``media_start_s`` (its own start where None); with ``header_too``, its media header
    (``mdhd``) states that length too, the samples' table holding more."""
    out = bytearray(blob)
    edit, mvhd, mdhd = (out.find(box) for box in (b"elst", b"mvhd", b"mdhd"))
    assert out[edit + 4] == out[mvhd + 4] == out[mdhd + 4] == 0  # version 0 boxes
    movie_scale = struct.unpack(">I", out[mvhd + 16 : mvhd + 20])[0]
    media_scale = struct.unpack(">I", out[mdhd + 16 : mdhd + 20])[0]
    start = struct.unpack(">i", out[edit + 16 : edit + 20])[0]  # the encoder's priming
    if media_start_s is not None:
        start += round(media_start_s * media_scale)
    out[edit + 12 : edit + 20] = struct.pack(">Ii", round(duration_s * movie_scale), start)
    if header_too:
        out[mdhd + 20 : mdhd + 24] = struct.pack(">I", round(duration_s * media_scale) + start)
    return bytes(out)


def mp4_leaves_media_out(path: Path) -> bool:
    data = path.read_bytes()
    return mp4_module.edits_leave_media_out(lambda at, n: data[at : at + n], len(data))


@needs_ffmpeg
@pytest.mark.parametrize("edit", ["cut-short", "copy-before-the-edit", "header-states-the-edit"])
def test_an_mp4_edit_list_hides_no_media(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: str
) -> None:
    """ffmpeg plays only what an MP4's edit list selects: an edit of 2 s of 12 (the copy after
    them), or one that starts after the copy, left the copy undecoded and the file `clean` (a
    red team). Such an MP4 is decoded whole; an honest one, whose one edit skips the encoder's
    priming, is decoded as ffmpeg plays it, as before."""
    monkeypatch.setenv("AUDIODUP_FFMPEG", FFMPEG)
    decoy, copy = music(90, 4.0), music(91, 8.0)
    tracks = [copy, decoy] if edit == "copy-before-the-edit" else [decoy, copy]
    honest = encode(tmp_path, "honest.m4a", [np.concatenate(tracks)], "-c:a", "aac")
    edited = tmp_path / "edited.m4a"
    start = 8.0 if edit == "copy-before-the-edit" else None
    header_too = edit == "header-states-the-edit"  # what ffmpeg indexes is the sample table
    edited.write_bytes(with_edit(honest.read_bytes(), 2.0, start, header_too))
    audio, whole = load_audio(edited), load_audio(honest)
    assert audio.source_duration_s > 12.0 and not audio.truncated
    priming = len(audio.samples) - len(whole.samples)  # decoded whole, the encoder's too
    assert 0 < priming < ANALYSIS_SR // 10
    assert correlation(audio.samples[priming:], whole.samples) > 0.999
    ffmpeg("-i", honest, "-ar", ANALYSIS_SR, "-ac", "1", "-c:a", "pcm_f32le", tmp_path / "o.wav")
    played = sf.read(tmp_path / "o.wav", dtype="float32")[0]  # the edit's own samples
    assert len(whole.samples) == len(played)
    assert correlation(whole.samples, played - played.mean()) > 0.9999
    plain, hiding = (mp4_leaves_media_out(path) for path in (honest, edited))
    assert not plain and hiding


def mp4_box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def edit_list(edits: list[tuple[int, int, int]]) -> bytes:
    """A version-0 ``elst`` of ``(duration in ms, media time in samples, rate)`` entries."""
    entries = b"".join(struct.pack(">IiI", *edit) for edit in edits)
    return mp4_box(b"elst", bytes(4) + struct.pack(">I", len(edits)) + entries)


def mp4_of(
    handler: bytes, edits: list[tuple[int, int, int]] | None, media_s: float = 10.0, extra=b""
) -> bytes:
    """A moov box of one track (``handler``: ``soun``, ``vide``) of ``media_s`` at 44.1 kHz,
    with an edit list of ``edits`` and ``extra`` boxes after it in its ``edts``."""
    mvhd = mp4_box(b"mvhd", bytes(12) + struct.pack(">II", 1000, 0) + bytes(80))
    hdlr = mp4_box(b"hdlr", bytes(8) + handler + bytes(12))
    length = struct.pack(">II", 44100, round(media_s * 44100))
    trak = mp4_box(b"mdia", hdlr + mp4_box(b"mdhd", bytes(12) + length + bytes(4)))
    if edits is not None:
        trak += mp4_box(b"edts", edit_list(edits) + extra)
    moov = mp4_box(b"moov", mvhd + mp4_box(b"trak", trak))
    return mp4_box(b"ftyp", b"M4A \x00\x00\x00\x00") + moov


ONE = 0x10000  # an edit's rate 1.0


@pytest.mark.parametrize(
    ("handler", "edits", "leaves_out"),
    [
        (b"soun", None, False),  # no edit list
        (b"soun", [(9953, 2112, ONE)], False),  # an encoder's: its priming skipped
        (b"soun", [(500, -1, ONE), (9953, 2112, ONE)], False),  # an empty edit: a delay
        (b"soun", [(5000, 2112, ONE)], True),  # 5 s of 10
        (b"soun", [(5000, 5 * 44100, ONE)], True),  # starts after the first 5 s
        (b"soun", [(4000, 0, ONE), (4000, 0, ONE)], True),  # the start played twice
        (b"soun", [(5000, 0, 2 * ONE)], True),  # played at twice the rate
        (b"vide", [(1000, 0, ONE)], False),  # not a sound track
        (b"xxxx", [(5000, 2112, ONE)], True),  # ffmpeg takes it for sound by its codec
        (b"soun", [], False),  # no edit that plays media
    ],
)
def test_an_mp4_edit_list_is_plain_only_where_it_plays_a_sound_track_whole(
    handler: bytes, edits, leaves_out: bool
) -> None:
    data = mp4_of(handler, edits)
    assert mp4_module.edits_leave_media_out(lambda at, n: data[at : at + n], len(data)) == (
        leaves_out
    )
    for cut in (len(data) - 3, len(data) // 2, 12):  # a file cut short: walked, never raised
        short = data[:cut]
        mp4_module.edits_leave_media_out(lambda at, n, b=short: b[at : at + n], len(short))


@pytest.mark.parametrize("wrapper", [b"udta", b"edts", b"dinf"])
def test_a_movie_box_inside_another_box_counts_as_leaving_media_out(wrapper: bytes) -> None:
    """ffmpeg finds a movie box inside other boxes too, and uses the first it finds: wrapped,
    its edit list (2 s of 10) went unchecked, and the copy after it unscreened (a red team).
    A title that only reads "moovie" is no movie box."""
    data = mp4_of(b"soun", [(2000, 2112, ONE)])
    ftyp_size = struct.unpack(">I", data[:4])[0]
    wrapped = data[:ftyp_size] + mp4_box(wrapper, data[ftyp_size:])
    assert mp4_module.edits_leave_media_out(lambda at, n: wrapped[at : at + n], len(wrapped))
    plain = mp4_of(b"soun", [(9953, 2112, ONE)])
    titled = plain + mp4_box(b"udta", mp4_box(b"\xa9nam", bytes(8) + b"moovie night"))
    assert not mp4_module.edits_leave_media_out(lambda at, n: titled[at : at + n], len(titled))


def test_a_second_box_of_a_kind_that_is_read_counts_as_leaving_media_out() -> None:
    """ffmpeg reads the last of two edit lists (or timescales, handlers), this check the first:
    a plain edit list, then one that plays 2 s of 10, passed as plain. Two are not walked."""
    data = mp4_of(b"soun", [(9953, 2112, ONE)], extra=edit_list([(2000, 0, ONE)]))
    assert mp4_module.edits_leave_media_out(lambda at, n: data[at : at + n], len(data))
    plain = mp4_of(b"soun", [(9953, 2112, ONE)])
    assert not mp4_module.edits_leave_media_out(lambda at, n: plain[at : at + n], len(plain))


def surround_after_many_channels(tmp_path: Path, container: str, copy: np.ndarray) -> Path:
    """Two streams: 3 s of 64 channels of noise at 8 kHz, which fill the kept-channel budget of
    a 20-s cap, then 5.1 (FL FR FC LFE BL BR) of ``copy`` in antiphase between the back
    channels, noise in front."""
    rng = np.random.default_rng(94)
    many = (0.05 * rng.standard_normal((3 * 8000, 64))).astype(np.float32)
    six = np.zeros((len(copy), 6), np.float32)
    six[:, :2] = 0.05 * rng.standard_normal((len(copy), 2))
    six[:, 4], six[:, 5] = 0.8 * copy, -0.8 * copy
    streams = [(many, 8000), (six, SR)]
    if container == "ogg":  # a chain: libsndfile decodes it link by link
        path = tmp_path / "chain.ogg"
        with path.open("wb") as out:
            for samples, rate_hz in streams:
                with sf.SoundFile(out, "w", rate_hz, samples.shape[1], format="OGG") as f:
                    for at in range(0, len(samples), 4096):  # libvorbis crashes on big writes
                        f.write(samples[at : at + 4096])
        return path
    for index, (samples, rate_hz) in enumerate(streams):
        sf.write(tmp_path / f"{index}.wav", samples, rate_hz, subtype="FLOAT")
    path = tmp_path / "two.mkv"
    ffmpeg("-i", tmp_path / "0.wav", "-i", tmp_path / "1.wav", "-map", "0:a", "-map", "1:a",
           "-c:a", "pcm_f32le", path)  # fmt: skip
    return path


@pytest.mark.parametrize("container", ["mkv", "ogg"])
def test_a_stream_of_many_channels_leaves_room_for_a_later_stream_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, container: str
) -> None:
    """The kept channels' budget is shared by a file's streams: 64 channels took it all, and a
    5.1 stream after them, its back channels holding a copy in antiphase, kept none (a red
    team: `clean`). Each stream takes at most its share; a later one's channels are kept,
    the earlier one's narrowed to fit beside them, within the same budget."""
    if container == "mkv":
        if FFMPEG is None:
            pytest.skip("ffmpeg is not installed: it is needed to make and read MKV files")
        monkeypatch.setenv("AUDIODUP_FFMPEG", FFMPEG)
    settings = Settings(max_duration_s=20.0, min_duration_s=1.0)
    copy = music(92, 4.0)
    audio = load_audio(surround_after_many_channels(tmp_path, container, copy), settings)
    assert audio.source_duration_s == pytest.approx(7.0, abs=0.05) and not audio.truncated
    assert audio.channels.size <= audio_module.kept_channel_budget(settings)
    assert audio.channels.shape[1] >= 8 and len(audio.channels) == len(audio.samples)
    back = audio_module.numbered_part_audio(audio, (4,), settings)  # antiphase undone
    sf.write(tmp_path / "copy.wav", copy, SR)
    hidden = load_audio(tmp_path / "copy.wav").samples[ANALYSIS_SR : 3 * ANALYSIS_SR]
    start = 4 * ANALYSIS_SR  # the copy's second second, give or take the codec's delay
    lags = range(-ANALYSIS_SR // 10, ANALYSIS_SR // 10)
    assert max(correlation(back.samples[start + i :], hidden) for i in lags) > 0.95


# --- 3. cost bombs: bounded by what is decoded ----------------------------------------------


# --- a header that states less audio than the stream holds ------------------------------------


def flac_stating(samples: np.ndarray, sr: int, frames: int) -> bytes:
    """``samples`` as FLAC whose STREAMINFO states ``frames`` frames in all."""
    buffer = io.BytesIO()
    sf.write(buffer, samples, sr, format="FLAC")
    blob = bytearray(buffer.getvalue())
    assert blob[:4] == b"fLaC" and blob[4] & 0x7F == 0  # STREAMINFO is the first block
    word = int.from_bytes(blob[18:26], "big")  # rate, channels, bits, then 36 bits of frames
    blob[18:26] = (word >> 36 << 36 | frames).to_bytes(8, "big")
    return bytes(blob)


def ogg_stating(samples: np.ndarray, sr: int, frames: int) -> bytes:
    """``samples`` as Ogg Vorbis whose last page's granule position states ``frames``."""
    pages = ogg_pages(ogg_bytes(samples, sr))
    last = pages[-1]
    pages[-1] = sealed(last[:6] + struct.pack("<q", frames) + last[14:])
    return b"".join(pages)


def au_stating(samples: np.ndarray, sr: int, frames: int) -> bytes:
    """``samples`` as 16-bit AU whose header's data size states ``frames`` frames."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype(">i2").tobytes()
    return b".snd" + struct.pack(">IIIII", 24, 2 * frames, 3, sr, 1) + pcm


LYING_HEADERS = {
    "au": lambda music_: au_stating(music_, SR, 2 * SR),
    "flac": lambda music_: flac_stating(music_, SR, 2 * SR),
    "ogg": lambda music_: ogg_stating(music_, SR, 2 * SR),
    "ogg-chain": lambda music_: ogg_bytes(music(43, 3.0), SR) + ogg_stating(music_, SR, 2 * SR),
    # the last 1.5 s only: a few KB, as many seconds of a low-bitrate stream are
    "ogg-last-seconds": lambda music_: ogg_stating(music_, SR, int(10.5 * SR)),
}


@pytest.mark.parametrize("kind", list(LYING_HEADERS))
def test_a_header_stating_less_audio_than_the_stream_holds_hides_nothing(
    tmp_path: Path, decoder: str, kind: str
) -> None:
    """libsndfile stops where AU's data size, FLAC's total samples or an Ogg stream's last
    granule says the audio ends, and an attacker can hide a copy after the few seconds such a
    header admits to. ffmpeg, which reads on (as players built on it do), decodes it then;
    without ffmpeg the file is an error, never a short decode screened as if it were all."""
    samples = music(42, 12.0)
    path = tmp_path / f"lying.{kind}"
    path.write_bytes(LYING_HEADERS[kind](samples))
    if decoder != "ffmpeg-fallback":
        stated = 10.5 if kind == "ogg-last-seconds" else 2.0
        with pytest.raises(AudioDecodeError, match=rf"bytes follow the {stated} s of audio"):
            load_audio(path)
        return
    audio = load_audio(path)
    whole = 12.0 + (3.0 if kind == "ogg-chain" else 0.0)
    assert audio.source_duration_s == pytest.approx(whole, abs=0.1)
    sf.write(tmp_path / "honest.wav", samples, SR)
    honest = load_audio(tmp_path / "honest.wav").samples
    # past what the header admits to, where it lies (a link's start moves by its decoder delay)
    hidden = honest[6 * ANALYSIS_SR : 7 * ANALYSIS_SR]
    start = int((whole - 6.0) * ANALYSIS_SR)
    lags = range(start - ANALYSIS_SR // 10, start + ANALYSIS_SR // 10)
    assert max(correlation(audio.samples[i : i + len(hidden)], hidden) for i in lags) > 0.99


def ape_tag(value: bytes) -> bytes:
    """An APEv2 tag (header, one binary item, footer), as taggers append to MP3 and other files."""
    item = struct.pack("<II", len(value), 2) + b"Cover Art (Front)\x00" + value
    size = len(item) + 32  # the items and the footer

    def block(header: bool) -> bytes:
        flags = 0x80000000 | (0x20000000 if header else 0)  # has a header; this is the header
        return b"APETAGEX" + struct.pack("<IIII", 2000, size, 1, flags) + bytes(8)

    return block(True) + item + block(False)


def lyrics3v2_tag(lyrics: bytes) -> bytes:
    """A Lyrics3v2 tag (one LYR field), as it sits between an MP3's APEv2 and ID3v1 tags."""
    body = b"LYRICSBEGIN" + b"IND00002" + b"10" + b"LYR" + b"%05d" % len(lyrics) + lyrics
    return body + b"%06d" % len(body) + b"LYRICS200"


ID3V1 = b"TAG" + b"a title".ljust(30, b"\x00") + bytes(95)


FORGED_TAILS = {
    # a footer alone whose size claims far more than the file holds
    "ape-footer": b"APETAGEX" + struct.pack("<IIII", 2000, 0x10000000, 1, 0) + bytes(8),
    # a Lyrics3v2 size of 999,999 bytes with no LYRICSBEGIN there, then an ID3v1 tag
    "lyrics3-id3v1": b"999999LYRICS200" + ID3V1,
}


@pytest.mark.parametrize("tail", list(FORGED_TAILS))
@pytest.mark.parametrize("kind", ["flac", "ogg"])
def test_a_forged_tag_after_audio_a_header_hid_hides_nothing(
    tmp_path: Path, decoder: str, kind: str, tail: str
) -> None:
    """An end tag's size is the uploader's: a forged footer claiming the hidden copy as its
    tag sent nothing to ffmpeg, and the file was screened on the seconds its header admits to
    (a red team's FLAC, MP3 and Opus files, all `clean`)."""
    samples = music(42, 12.0)
    path = tmp_path / f"forged.{kind}"
    path.write_bytes(LYING_HEADERS[kind](samples) + FORGED_TAILS[tail])
    if decoder != "ffmpeg-fallback":
        with pytest.raises(AudioDecodeError, match=r"bytes follow the 2.0 s of audio"):
            load_audio(path)
        return
    assert load_audio(path).source_duration_s == pytest.approx(12.0, abs=0.1)


def test_a_tag_past_the_size_read_whole_is_not_taken_for_one(tmp_path: Path, monkeypatch) -> None:
    """A tag is read whole to be checked, so a footer claiming gigabytes costs no read of them:
    past ``_MAX_APE_TAG_BYTES`` it is not taken for a tag (without ffmpeg, an error)."""
    monkeypatch.setenv("AUDIODUP_FFMPEG", "none")
    monkeypatch.setattr(audio_module, "_MAX_APE_TAG_BYTES", 30_000)
    path = tmp_path / "tagged.flac"
    path.write_bytes(honest_stream("flac", music(46, 6.0)) + ape_tag(os.urandom(40_000)))
    with pytest.raises(AudioDecodeError, match="bytes follow the 6.0 s of audio"):
        load_audio(path)


@needs_ffmpeg
@pytest.mark.parametrize("kind", ["flac", "ogg"])
def test_audio_wrapped_in_a_well_formed_tag_is_decoded_by_ffmpeg(
    tmp_path: Path, kind: str, monkeypatch
) -> None:
    """ffmpeg plays FLAC or Ogg pages wrapped in an APEv2 item after a header's stated length:
    with ffmpeg, only the fixed-size ID3v1 tag is taken for a tag, so ffmpeg reads it all."""
    monkeypatch.setenv("AUDIODUP_FFMPEG", FFMPEG)
    blob = LYING_HEADERS[kind](music(42, 12.0))
    cut = len(blob) // 12  # inside the 2 s stated: libsndfile reads on into the tag
    path = tmp_path / f"wrapped.{kind}"
    path.write_bytes(blob[:cut] + ape_tag(blob[cut:]) + ID3V1)
    assert load_audio(path).source_duration_s > 11.0


def honest_stream(kind: str, samples: np.ndarray) -> bytes:
    if kind == "ogg":
        return ogg_bytes(samples, SR)
    buffer = io.BytesIO()
    sf.write(buffer, samples, SR, format="FLAC")
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["flac", "ogg"])
def test_tags_that_end_a_file_are_not_audio_a_header_hid(
    tmp_path: Path, kind: str, decoder: str
) -> None:
    """APEv2 tags (40 KB of cover art, a gain), a Lyrics3v2 and an ID3v1 tag after an honest
    stream, stacked in either order: without ffmpeg, decoded by libsndfile as it is, not
    refused as a header that hid audio; with ffmpeg (which plays audio wrapped in a tag's
    item), read through by ffmpeg: the same audio."""
    stream = honest_stream(kind, music(46, 6.0))
    plain, tagged = tmp_path / f"plain.{kind}", tmp_path / f"tagged.{kind}"
    plain.write_bytes(stream)
    lyrics = lyrics3v2_tag(b"la la la\r\n" * 400)
    cover, gain = ape_tag(os.urandom(40_000)), ape_tag(b"-6.2 dB")
    tagged.write_bytes(stream + {"flac": cover + lyrics + gain, "ogg": gain + cover}[kind] + ID3V1)
    audio, alone = load_audio(tagged), load_audio(plain)
    assert audio.source_duration_s == pytest.approx(6.0, abs=0.05)
    if decoder == "libsndfile-only":
        assert audio.sha256 == alone.sha256
    else:
        n = min(len(audio.samples), len(alone.samples))
        assert correlation(audio.samples[:n], alone.samples[:n]) > 0.99


def wav_header(channels: int, sample_rate_hz: int, bits: int, data_bytes: int) -> bytes:
    block_align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, sample_rate_hz, sample_rate_hz * block_align,
                      block_align, bits)  # fmt: skip
    return (b"RIFF" + struct.pack("<I", min(36 + data_bytes, 0xFFFFFFFF)) + b"WAVE" + b"fmt "
            + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", data_bytes))  # fmt: skip


def flac_declaring(sample_rate_hz: int, seconds: float = 1.0) -> bytes:
    """A FLAC of silence whose STREAMINFO declares ``sample_rate_hz`` (20 bits)."""
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(int(seconds * 96000)), 96000, format="FLAC")
    blob = bytearray(buffer.getvalue())
    assert blob[:4] == b"fLaC"
    rate_bits = int.from_bytes(blob[18:21], "big") & 0x000FFF  # keep channels and bits
    blob[18:21] = ((sample_rate_hz << 4) | rate_bits).to_bytes(3, "big")
    return bytes(blob)


class DecodeSpy:
    """Counts the frames libsndfile decodes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.frames = 0
        real_read = sf.SoundFile.read

        def read(soundfile, *args, **kwargs):
            block = real_read(soundfile, *args, **kwargs)
            self.frames += len(block)
            return block

        monkeypatch.setattr(sf.SoundFile, "read", read)


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (flac_declaring(655_350), "invalid sample rate 655350 Hz"),
        (flac_declaring(400_000), "invalid sample rate 400000 Hz"),
        (wav_header(1, 2_000_000_000, 16, 64_000) + bytes(64_000), "invalid sample rate"),
        (wav_header(1, 384_001, 16, 64_000) + bytes(64_000), "invalid sample rate 384001 Hz"),
        (wav_header(1, 999, 16, 64_000) + bytes(64_000), "invalid sample rate 999 Hz"),
        (
            wav_header(65, 8000, 16, 65 * 2 * 8000) + bytes(65 * 2 * 8000),
            "invalid channel count 65",
        ),
        (wav_header(300, 1000, 16, 300 * 2 * 4000) + bytes(300 * 2 * 4000), "channel count 300"),
    ],
    ids=[
        "flac-655kHz",
        "flac-400kHz",
        "wav-2GHz",
        "wav-384001Hz",
        "wav-999Hz",
        "wav-65ch",
        "wav-300ch",
    ],
)
def test_absurd_headers_are_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, decoder: str, blob: bytes, message: str
) -> None:
    spy = DecodeSpy(monkeypatch)
    path = tmp_path / "bomb.bin"
    path.write_bytes(blob)
    with pytest.raises(AudioDecodeError, match=message):
        load_audio(path)
    assert spy.frames == 0


@pytest.mark.parametrize(("rate_hz", "channels"), [(1000, 1), (384_000, 1), (8000, 64)])
def test_the_limits_themselves_are_accepted(tmp_path: Path, rate_hz: int, channels: int) -> None:
    t = np.arange(int(3.5 * rate_hz)) / rate_hz
    tone = 0.3 * np.sin(2 * np.pi * min(300.0, rate_hz / 4) * t)
    path = tmp_path / "edge.wav"
    sf.write(path, np.repeat(tone[:, None], channels, axis=1), rate_hz, subtype="PCM_16")
    assert load_audio(path).source_duration_s == pytest.approx(3.5, abs=1e-3)
    audio = audio_module.audio_from_samples(np.repeat(tone[:, None], channels, axis=1), rate_hz)
    assert audio.source_duration_s == pytest.approx(3.5, abs=1e-3)


@pytest.mark.parametrize(("rate_hz", "channels"), [(999, 1), (384_001, 1), (8000, 65), (1, 1)])
def test_in_memory_samples_obey_the_same_limits(rate_hz: int, channels: int) -> None:
    samples = np.random.default_rng(0).standard_normal((max(4 * rate_hz, 8), channels))
    with pytest.raises(AudioDecodeError, match="invalid (sample rate|channel count)"):
        audio_module.audio_from_samples(samples, rate_hz)


def test_native_sample_budget_caps_many_channels(tmp_path: Path) -> None:
    """With a 10 s cap, 1.92 M native samples: 5 s of 48 kHz 8-channel audio, 10 s of mono."""
    settings = Settings(max_duration_s=10.0, min_duration_s=1.0)
    track = music(80, 8.0, sr=48000)
    for channels, decoded_s in [(8, 5.0), (1, 8.0)]:
        path = tmp_path / f"{channels}ch.wav"
        sf.write(path, np.repeat(track[:, None], channels, axis=1), 48000, subtype="PCM_16")
        audio = load_audio(path, settings)
        assert audio.source_duration_s == pytest.approx(decoded_s, abs=1e-6)
        assert audio.truncated == (decoded_s < 8.0)


def test_decoding_stops_at_the_cap_and_silence_is_not_resampled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long FLAC of silence at 384 kHz: the caps bound the frames decoded (here the native
    sample budget, 4 s x 192,000, before the 4 s), and a constant signal is refused without
    resampling it."""
    spy = DecodeSpy(monkeypatch)
    resamplers = []
    real_stream = audio_module.soxr.ResampleStream
    monkeypatch.setattr(
        audio_module.soxr,
        "ResampleStream",
        lambda *a, **k: resamplers.append(1) or real_stream(*a, **k),
    )
    path = tmp_path / "silence.flac"
    with sf.SoundFile(path, "w", 384_000, 1, format="FLAC") as f:
        for _ in range(20):
            f.write(np.zeros(384_000))
    with pytest.raises(SilentAudioError):
        load_audio(path, Settings(max_duration_s=4.0, min_duration_s=1.0))
    budget = 4 * min(384_000, audio_module._NATIVE_SAMPLES_PER_CAP_S)
    assert budget <= spy.frames <= budget + 1  # one frame more tells whether the cap cut
    assert resamplers == []


def test_a_wav_claiming_a_billion_frames_decodes_what_it_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, decoder: str
) -> None:
    spy = DecodeSpy(monkeypatch)
    body = (music(81, 5.0) * 20000).astype("<i2").tobytes()
    path = tmp_path / "claims.wav"
    path.write_bytes(wav_header(1, SR, 16, 0xFFFFFFF0) + body)
    audio = load_audio(path)
    assert audio.source_duration_s == pytest.approx(5.0, abs=1e-3)
    assert spy.frames == 5 * SR


def test_memory_follows_the_analysis_rate_not_the_native_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """192 kHz for 30 s is 23 MB of native float32 samples; beyond the replay cache only the
    analysis-rate samples (1.3 MB) and a block are held, and the result is the same."""
    path = tmp_path / "hires.wav"
    sf.write(path, music(82, 30.0, sr=192_000), 192_000, subtype="PCM_16")
    cached = load_audio(path)
    monkeypatch.setattr(audio_module, "_REPLAY_CACHE_SAMPLES", 1 << 16)
    tracemalloc.start()
    try:
        streamed = load_audio(path)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < 6e6
    assert streamed.sha256 == cached.sha256
    assert np.array_equal(streamed.samples, cached.samples)


@needs_ffmpeg
def test_ffmpeg_output_is_read_up_to_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, m4a_files: dict
) -> None:
    monkeypatch.setenv("AUDIODUP_FFMPEG", FFMPEG)
    path = tmp_path / "six_seconds.m4a"
    path.write_bytes(m4a_files["moov-last"])
    full = load_audio(path)
    capped = load_audio(path, Settings(max_duration_s=4.0))
    assert not full.truncated and capped.truncated
    assert len(capped.samples) == 4 * ANALYSIS_SR
    inner = slice(1000, 4 * ANALYSIS_SR - 1000)
    assert correlation(capped.samples[inner], full.samples[inner]) > 0.999


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie waits for a parent that may never reap it


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to see processes")
def test_a_timed_out_decode_leaves_no_ffmpeg_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_ffmpeg: Path
) -> None:
    """--timeout kills the worker and the ffmpeg it started, so neither holds memory on."""
    monkeypatch.setenv("FAKE_FFMPEG_SLEEP_S", "600")
    path = tmp_path / "stuck.m4a"
    path.write_bytes(np.random.default_rng(1).bytes(5000))  # not for libsndfile: to ffmpeg
    results = list(map_with_timeout(load_audio, [str(path)], workers=1, timeout_s=2.0))
    assert [status for _, status, _ in results] == ["timeout"]
    (pid,) = map(int, fake_ffmpeg.read_text().split())
    for _ in range(600):  # SIGKILL is delivered at once; the exit is seen a moment later
        if not _alive(pid):
            break
        time.sleep(0.1)
    assert not _alive(pid), "the ffmpeg the timed-out worker started is still running"


@pytest.mark.parametrize("peak", [1e38, 1e39, 1e300])
def test_a_float64_file_of_absurd_scale_is_normalised_or_said_to_be_out_of_range(
    tmp_path: Path, peak: float
) -> None:
    samples = music(61, 4.0).astype(np.float64)
    sf.write(tmp_path / "plain.wav", samples, SR, subtype="DOUBLE")
    sf.write(tmp_path / "scaled.wav", samples / np.abs(samples).max() * peak, SR, subtype="DOUBLE")
    if peak <= np.finfo(np.float32).max:
        plain, scaled = (load_audio(tmp_path / n).samples for n in ("plain.wav", "scaled.wav"))
        assert correlation(plain, scaled) > 0.999
    else:  # read as float32, they would be infinite: refused, and the error says why
        with pytest.raises(AudioDecodeError, match="out-of-range"):
            load_audio(tmp_path / "scaled.wav")
