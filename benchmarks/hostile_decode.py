"""Peak memory and time of decoding hostile inputs (issue #11: cost bombs), before and after.

    python -m benchmarks.hostile_decode [--before DIR] [--modes load,screen,screen-timeout]
                                        [--inputs NAME,...] [--out FILE]

Builds each input in a temporary folder, then decodes it in a fresh process under
``/usr/bin/time`` (peak RSS of the process and of the children it waited for, ffmpeg and
workers included): ``load_audio(X)`` (mode ``load``), ``audiodup screen --db D X`` (``screen``)
and the same with ``--timeout 10`` (``screen-timeout``), ``D`` holding the six fixture works.
With ``--before DIR``, a checkout of older code (``git worktree add --detach /tmp/before HEAD``),
every run is repeated with that code on ``PYTHONPATH``. Prints a markdown table (and writes it to
``--out``): input, mode, code, outcome, peak RSS MB, seconds.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import numpy as np
import soundfile as sf
import typer

from audiodup.synth import synthesize_work

app = typer.Typer(add_completion=False)
REPO = Path(__file__).resolve().parent.parent
RUN_LIMIT_S = 1800  # a run still going after this is reported as killed
LOAD = (
    "import sys\n"
    "from audiodup.audio import load_audio\n"
    "from audiodup.errors import AudiodupError\n"
    "try:\n"
    "    a = load_audio(sys.argv[1])\n"
    "    print(f'decoded {a.source_duration_s:.1f} s' + (', truncated' if a.truncated else ''))\n"
    "except AudiodupError as exc:\n"
    "    print(f'refused: {exc}')\n"
)


# --- inputs ---------------------------------------------------------------------------------


def _write_blocks(path: Path, rate_hz: int, seconds: float, block, **options) -> None:
    """``seconds`` of ``block`` (1 s of samples, repeated) written a second at a time."""
    with sf.SoundFile(path, "w", rate_hz, 1, **options) as f:
        for _ in range(int(seconds)):
            f.write(block)


def _silence(rate_hz: int) -> np.ndarray:
    return np.zeros(rate_hz, dtype=np.int16)


def flac_655khz_silence(folder: Path) -> Path:
    path = folder / "silence_655350Hz.flac"  # the reported file: 3 MB, 21 minutes
    _write_blocks(path, 655_350, 1300, _silence(655_350), format="FLAC", subtype="PCM_16")
    return path


def flac_384khz_silence_30min(folder: Path) -> Path:
    path = folder / "silence_384kHz_30min.flac"
    _write_blocks(path, 384_000, 1800, _silence(384_000), format="FLAC", subtype="PCM_16")
    return path


def flac_384khz_music_then_silence(folder: Path) -> Path:
    """Not constant, so all that is decoded must be resampled: the most a file may cost."""
    path = folder / "music_then_silence_384kHz_30min.flac"
    music = synthesize_work(91, duration_s=10.0, sr=384_000)
    with sf.SoundFile(path, "w", 384_000, 1, format="FLAC", subtype="PCM_16") as f:
        f.write(music)
        for _ in range(1790):
            f.write(_silence(384_000))
    return path


def _wav_header(channels: int, rate_hz: int, data_bytes: int) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, channels, rate_hz, rate_hz * channels * 2, channels * 2, 16)
    riff = struct.pack("<I", min(36 + data_bytes, 0xFFFFFFFF))
    return b"RIFF" + riff + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + \
        struct.pack("<I", data_bytes)  # fmt: skip


def _noise_bytes(n_bytes: int) -> bytes:
    return (np.random.default_rng(0).standard_normal(n_bytes // 2) * 3000).astype("<i2").tobytes()


def wav_384khz_8ch_4gb_header(folder: Path) -> Path:
    path = folder / "claims_4GB_384kHz_8ch.wav"
    path.write_bytes(_wav_header(8, 384_000, 0xFFFFFFF0) + _noise_bytes(16 << 20))
    return path


def wav_a_billion_frames_declared(folder: Path) -> Path:
    path = folder / "claims_1e9_frames.wav"
    music = (synthesize_work(92, duration_s=10.0, sr=48_000) * 20000).astype("<i2").tobytes()
    path.write_bytes(_wav_header(1, 48_000, 2_000_000_000) + music)
    return path


def wav_2ghz(folder: Path) -> Path:
    path = folder / "rate_2GHz.wav"
    path.write_bytes(_wav_header(1, 2_000_000_000, 10 << 20) + _noise_bytes(10 << 20))
    return path


def wav_300_channels(folder: Path) -> Path:
    path = folder / "300_channels.wav"
    data = _noise_bytes(300 * 2 * 8000 * 2)
    path.write_bytes(_wav_header(300, 8000, len(data)) + data)
    return path


def ogg_vorbis_silence_40min(folder: Path) -> Path:
    path = folder / "silence_40min.ogg"
    silence = np.zeros(48_000, dtype=np.float32)
    _write_blocks(path, 48_000, 2400, silence, format="OGG", subtype="VORBIS")
    return path


def mp3_silence_40min(folder: Path) -> Path:
    path = folder / "silence_40min.mp3"
    if shutil.which("ffmpeg"):  # lame through ffmpeg: faster than through libsndfile
        subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono",
             "-t", "2400", "-c:a", "libmp3lame", "-b:a", "32k", str(path)],
            check=True,
        )  # fmt: skip
    else:
        silence = np.zeros(48_000, dtype=np.float32)
        _write_blocks(path, 48_000, 2400, silence, format="MP3", subtype="MPEG_LAYER_III")
    return path


def m4a_aac_silence_40min(folder: Path) -> Path | None:
    """Read through ffmpeg (libsndfile does not read AAC); None without ffmpeg."""
    if not shutil.which("ffmpeg"):
        return None
    path = folder / "silence_40min.m4a"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo",
         "-t", "2400", "-c:a", "aac", "-b:a", "32k", str(path)],
        check=True,
    )  # fmt: skip
    return path


_BIT_REVERSED = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _seal(page: bytes) -> bytes:
    """The Ogg page with its CRC (CRC-32/MPEG-2 without final xor, via zlib on reversed bits)."""
    zeroed = page[:22] + b"\x00" * 4 + page[26:]
    reflected = zlib.crc32(zeroed.translate(_BIT_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return page[:22] + struct.pack("<I", int(f"{reflected:032b}"[::-1], 2)) + page[26:]


def ogg_a_million_empty_pages(folder: Path) -> Path:
    """A 30 s Vorbis file with 1.1 million empty pages before its last one (30 MB)."""
    buffer = io.BytesIO()
    music = synthesize_work(93, duration_s=30.0, sr=22050)
    with sf.SoundFile(buffer, "w", 22050, 1, format="OGG", subtype="VORBIS") as f:
        for start in range(0, len(music), 22050):
            f.write(music[start : start + 22050])
    blob, pages, offset = buffer.getvalue(), [], 0
    while offset < len(blob):
        n = blob[offset + 26]
        length = 27 + n + sum(blob[offset + 27 : offset + 27 + n])
        pages.append(blob[offset : offset + length])
        offset += length
    serial, last_sequence = struct.unpack_from("<II", pages[-1], 14)
    empty = []
    for index in range(1_100_000):
        header = struct.pack("<4sBBqIIIB", b"OggS", 0, 0, -1, serial, last_sequence + index, 0, 0)
        empty.append(_seal(header))
    last = pages[-1][:18] + struct.pack("<I", last_sequence + len(empty)) + pages[-1][22:]
    path = folder / "a_million_empty_pages.ogg"
    path.write_bytes(b"".join(pages[:-1] + empty + [_seal(last)]))
    return path


def baseline_flac_5min(folder: Path) -> Path:
    """An ordinary file, for the cost of the usual case."""
    path = folder / "ordinary_44k_stereo_5min.flac"
    music = synthesize_work(94, duration_s=60.0, sr=44100)
    stereo = np.stack([music, 0.8 * music], axis=1)
    with sf.SoundFile(path, "w", 44100, 2, format="FLAC", subtype="PCM_16") as f:
        for _ in range(5):
            f.write(stereo)
    return path


INPUTS: dict[str, Callable[[Path], Path | None]] = {
    "flac-655kHz-silence-21min": flac_655khz_silence,
    "flac-384kHz-silence-30min": flac_384khz_silence_30min,
    "flac-384kHz-10s-music-then-silence-30min": flac_384khz_music_then_silence,
    "wav-384kHz-8ch-claims-4GB-has-16MB": wav_384khz_8ch_4gb_header,
    "wav-claims-1e9-frames-has-10s": wav_a_billion_frames_declared,
    "wav-2GHz-10MB": wav_2ghz,
    "wav-300ch-2s": wav_300_channels,
    "ogg-vorbis-silence-40min": ogg_vorbis_silence_40min,
    "mp3-silence-40min": mp3_silence_40min,
    "m4a-aac-silence-40min (ffmpeg)": m4a_aac_silence_40min,
    "ogg-1.1M-empty-pages": ogg_a_million_empty_pages,
    "ordinary-flac-44kHz-stereo-5min": baseline_flac_5min,
}


# --- runs -----------------------------------------------------------------------------------


def _env(code: Path) -> dict[str, str]:
    """The environment that imports audiodup from ``code`` (runs start in the temporary folder,
    so the current directory does not shadow it)."""
    return {**os.environ, "PYTHONPATH": str(code)}


def build_catalog(code: Path, db: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "audiodup", "index", "add", "--db", str(db),
         str(REPO / "fixtures" / "audio" / "catalog")],
        check=True, capture_output=True, env=_env(code), cwd=db.parent,
    )  # fmt: skip
    return db


def measure(code: Path, mode: str, path: Path, db: Path, folder: Path) -> tuple[str, float, float]:
    """Outcome, peak RSS in MB and wall seconds of one fresh process."""
    if mode == "load":
        command = [sys.executable, "-c", LOAD, str(path)]
    else:
        timeout = ["--timeout", "10"] if mode == "screen-timeout" else []
        command = [sys.executable, "-m", "audiodup", "screen", "--db", str(db), "--json",
                   *timeout, str(path)]  # fmt: skip
    report = folder / "time.txt"
    try:
        proc = subprocess.run(
            ["/usr/bin/time", "-o", str(report), "-f", "%e %M", *command],
            capture_output=True, text=True, env=_env(code), timeout=RUN_LIMIT_S, cwd=folder,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return f"killed after {RUN_LIMIT_S} s", float("nan"), float(RUN_LIMIT_S)
    seconds, rss_kb = report.read_text().strip().splitlines()[-1].split()
    return _outcome(mode, proc), float(rss_kb) / 1024, float(seconds)


def _outcome(mode: str, proc: subprocess.CompletedProcess) -> str:
    if proc.returncode < 0 or proc.returncode >= 128:
        return f"killed by signal {abs(proc.returncode) % 128}"
    if mode == "load":
        lines = proc.stdout.strip().splitlines() or proc.stderr.strip().splitlines()
        return (lines[-1] if lines else f"exit {proc.returncode}")[:110]
    try:
        data = json.loads(proc.stdout)
        result = data[0] if isinstance(data, list) else data.get("results", [data])[0]
        text = f"error: {result['error']}" if result.get("error") else f"{result.get('verdict')}"
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        text = lines[-1] if lines else ""
    return f"exit {proc.returncode}: {text}"[:110]


@app.command()
def main(
    before: Annotated[
        Path | None, typer.Option(help="Checkout of the code to compare with (PYTHONPATH).")
    ] = None,
    modes: Annotated[str, typer.Option(help="load, screen, screen-timeout")] = "load",
    inputs: Annotated[str | None, typer.Option(help="Comma-separated input names.")] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the table here.")] = None,
) -> None:
    if not Path("/usr/bin/time").exists():
        typer.echo("error: /usr/bin/time (GNU time) is needed to measure peak RSS", err=True)
        raise typer.Exit(2)
    names = list(INPUTS) if inputs is None else [n.strip() for n in inputs.split(",")]
    unknown = [n for n in names if n not in INPUTS]
    if unknown:
        typer.echo(f"error: unknown inputs {unknown}; known: {list(INPUTS)}", err=True)
        raise typer.Exit(2)
    codes = [("before", before.resolve()), ("after", REPO)] if before else [("after", REPO)]
    mode_list = [m.strip() for m in modes.split(",")]
    lines = [
        "| input | file MB | mode | code | outcome | peak RSS MB | seconds |",
        "|---|---:|---|---|---|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        dbs = {}
        if any(m.startswith("screen") for m in mode_list):
            dbs = {label: build_catalog(code, folder / f"db-{label}") for label, code in codes}
        for name in names:
            path = INPUTS[name](folder)
            if path is None:
                print(f"| {name} | | | | skipped: ffmpeg is not installed | | |", flush=True)
                continue
            size_mb = path.stat().st_size / 1e6
            for mode in mode_list:
                for label, code in codes:
                    outcome, rss_mb, seconds = measure(code, mode, path, dbs.get(label), folder)
                    outcome = outcome.replace("|", "/")
                    line = (f"| {name} | {size_mb:.1f} | {mode} | {label} | {outcome} | "
                            f"{rss_mb:.0f} | {seconds:.1f} |")  # fmt: skip
                    lines.append(line)
                    print(line, flush=True)
            path.unlink()
    if out is not None:
        out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    app()
