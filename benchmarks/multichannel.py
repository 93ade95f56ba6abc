"""A copy in one channel of a 5.1, 7.1 or quad file, drowned in the mix by music or noise in
the others: how often the channel gate screens an ordinary upmix's channels, what screening
them finds, what it costs, and that never-indexed music stays clean.

    python -m benchmarks.multichannel run CATALOG OUT.jsonl [--corpus tuning] [--attacks 48]
        [--track-step K] [--only attacks|tracks|cost]
    python -m benchmarks.multichannel table OUT.jsonl >> benchmarks/STEREO.md

No corpus track has more than two channels, so the multichannel files are made here, by two
upmixers: ffmpeg's ``surround`` filter (where ffmpeg is installed) and a passive matrix in
numpy (centre = the channels' mean, LFE = the mean under 120 Hz, surrounds = the difference
delayed 12 ms). ``run`` writes one JSON line per screening:

- ``gate``: every stereo corpus track upmixed to 5.1 by each upmixer: how many of its channels
  ``stereo_channels="auto"`` screens, and for how long
  (:func:`audiodup.stereo.numbered_channels_apart`);
- ``attack``: a catalog work's copy in one channel of a 5.1, 7.1 or quad file, or in
  antiphase between two of its channels (added to one, taken from the other), the channels
  holding a never-indexed track's matrix upmix or noise (white, pink or brown, one seed per
  channel), together 6, 14 or 22 dB above the copy (the copy alone in its channel, or beside
  them in its pair); 40 s or the whole copy, as it is or sped
  up x1.1; written as FLAC, or through ffmpeg as AAC, Opus or AC-3 where it is installed.
  Screened with ``stereo_channels`` and ``stereo_difference`` both never (the mix alone),
  both auto and both always;
- ``decoy``: the same with a never-indexed track in place of the copy: a ``duplicate`` there
  is a false accusation;
- ``negative``: every never-indexed stereo track upmixed by each upmixer, screened with
  ``auto`` and ``always``; ``upmix``: every catalog work's upmix, screened with ``auto``
  (still a ``duplicate`` of its own work, and what the gate costs it);
- ``cost`` (only with ``--only cost``, best run alone on the machine): every never-indexed
  stereo track as a stereo FLAC and as each upmix, screened with ``never`` and ``auto``, the
  second of two screens measured: what a 5.1 upload costs against its stereo original.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from scipy.signal import butter, sosfilt

from audiodup import Catalog
from audiodup.audio import load_audio
from audiodup.results import NUMBERED_PARTS
from audiodup.stereo import numbered_parts_apart
from benchmarks.corpus import Corpus, Track, read_manifest
from benchmarks.stereo import MODES, command_line, mode_rows, results_file, screened_row
from benchmarks.stereo_channels import copied_audio, noise

RATE_HZ = 22050
# a mode rules a file's channels and the differences of its pairs alike: `never` is the mix
# alone, as a file of more than two channels was screened before session 56
BOTH = ("stereo_channels", "stereo_difference")
LAYOUTS = {"5.1": 6, "quad": 4, "7.1": 8}
MASKS = ("music", "white", "pink", "brown")
LOUDER_DB = (6.0, 14.0, 22.0)
CODECS = ("flac", "aac", "opus", "ac3")
_SUFFIX = {"flac": ".flac", "aac": ".m4a", "opus": ".opus", "ac3": ".ac3"}


def _stereo(track: Track) -> np.ndarray:
    samples, rate = sf.read(track.path, dtype="float32", always_2d=True)
    return soxr.resample(samples[:, :2], rate, RATE_HZ)


def matrix_upmix(stereo: np.ndarray, channels: int = 6) -> np.ndarray:
    """A passive upmix of ``(frames, 2)``: front left and right as they are, then (5.1 and
    7.1) the centre and the LFE, then surrounds of the difference delayed 12 ms (7.1: twice,
    the second pair 20 ms)."""
    left, right = stereo[:, 0], stereo[:, 1]
    mean, difference = (left + right) / 2, (left - right) / 2

    def delayed(x: np.ndarray, ms: float) -> np.ndarray:
        return np.pad(x, (int(RATE_HZ * ms / 1000), 0))[: len(x)]

    front = [left, right]
    if channels == 4:
        return np.stack(front + [delayed(difference, 12), -delayed(difference, 12)], axis=1)
    lfe = sosfilt(butter(4, 120, fs=RATE_HZ, output="sos"), mean).astype(np.float32)
    out = front + [0.7 * mean, lfe, delayed(difference, 12), -delayed(difference, 12)]
    if channels == 8:
        out += [delayed(difference, 20), -delayed(difference, 20)]
    return np.stack(out, axis=1).astype(np.float32)


def surround_upmix(stereo: np.ndarray, folder: Path) -> np.ndarray | None:
    """``stereo`` (at :data:`RATE_HZ`) upmixed to 5.1 by ffmpeg's ``surround`` filter; None
    without ffmpeg."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return None
    source, out = folder / "stereo.wav", folder / "surround.flac"
    sf.write(source, stereo, RATE_HZ, subtype="FLOAT")
    subprocess.run(
        [ffmpeg, "-v", "error", "-y", "-i", str(source), "-af", "surround=chl_out=5.1"]
        + ["-c:a", "flac", str(out)],
        check=True,
        capture_output=True,
    )
    return sf.read(out, dtype="float32", always_2d=True)[0]


def _peak(samples: np.ndarray) -> np.ndarray:
    return (0.9 * samples / max(float(np.abs(samples).max()), 1e-9)).astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def attack_plan(corpus: Corpus, n: int, seed: int = 5) -> list[dict]:
    """``n`` attacks: a catalog work, its layout and channel, what fills the others, how much
    louder, the copy's length and speed, the codec."""
    rng = np.random.default_rng(seed)
    others = [t for t in corpus.negatives if t.channels == 2]
    plan = []
    for k in range(n):
        layout = tuple(LAYOUTS)[k % len(LAYOUTS)]
        plan.append(
            {
                "work": corpus.catalog[int(rng.integers(len(corpus.catalog)))].track_id,
                "layout": layout,
                "hide": ("channel", "pair")[(k // 2) % 2],
                "channel": int(rng.integers(LAYOUTS[layout])),
                "second": int(rng.integers(LAYOUTS[layout] - 1)),
                "mask": MASKS[(k // len(LAYOUTS)) % len(MASKS)],
                "other": others[k % len(others)].track_id,
                "louder_db": LOUDER_DB[k % len(LOUDER_DB)],
                "length": ("40 s", "whole")[(k // 2) % 2],
                "speed": (1.0, 1.0, 1.1)[(k // 4) % 3],
                "codec": CODECS[(k // 3) % len(CODECS)] if layout != "7.1" else "flac",
                "seed": k,
            }
        )
    return plan


def make_attack(corpus: Corpus, spec: dict, folder: Path, copied: str | None = None) -> np.ndarray:
    """The attack ``spec`` describes, ``(frames, channels)``, with ``copied`` (a track id) in
    place of its work."""
    tracks = corpus.by_id()
    copy = copied_audio(tracks[copied or spec["work"]], spec)
    channels = LAYOUTS[spec["layout"]]
    if spec["mask"] == "music":
        stereo = _stereo(tracks[spec["other"]])
        others = matrix_upmix(np.resize(stereo, (len(copy), 2)), channels)
    else:
        others = np.stack(
            [noise(spec["mask"], len(copy), spec["seed"] * 8 + c, folder) for c in range(channels)],
            axis=1,
        )
    first = spec["channel"]
    if spec["hide"] == "channel":
        others[:, first] = 0.0
    louder = 10 ** (spec["louder_db"] / 20) * _rms(copy) / max(_rms(others.sum(axis=1)), 1e-12)
    layout = others * louder
    if spec["hide"] == "channel":
        layout[:, first] = copy
    else:  # the second channel of the pair: any other
        second = spec["second"] + (spec["second"] >= first)
        layout[:, first] += copy
        layout[:, second] -= copy
    return _peak(layout)


def write_encoded(samples: np.ndarray, codec: str, folder: Path, name: str) -> Path:
    """``samples`` written as FLAC, or through ffmpeg as ``codec`` (FLAC without ffmpeg)."""
    flac = folder / f"{name}.flac"
    sf.write(flac, samples, RATE_HZ)
    ffmpeg = shutil.which("ffmpeg")
    if codec == "flac" or ffmpeg is None:
        return flac
    out = folder / f"{name}{_SUFFIX[codec]}"
    rate = ["-ar", "48000"] if codec in ("opus", "ac3") else []
    # libsndfile labels 6 channels 5.1(side), which libopus refuses: the same channels, relabelled
    layout = {4: "quad", 6: "5.1", 8: "7.1"}[samples.shape[1]]
    labels = [
        "-af",
        f"channelmap=map={'|'.join(map(str, range(samples.shape[1])))}:channel_layout={layout}",
    ]
    encoder = {
        "aac": ["aac", "-b:a", "384k"],
        "opus": ["libopus", "-mapping_family", "1", "-b:a", "256k"],
        "ac3": ["ac3", "-b:a", "448k"],
    }
    subprocess.run(
        [ffmpeg, "-v", "error", "-y", "-i", str(flac), *labels, *rate, "-c:a", *encoder[codec]]
        + [str(out)],
        check=True,
        capture_output=True,
    )
    return out


def _upmixes(track: Track, folder: Path) -> dict[str, Path]:
    """``track`` upmixed to 5.1 by each upmixer, as FLAC files in ``folder``."""
    stereo = _stereo(track)
    made = {"matrix": matrix_upmix(stereo)}
    if (surround := surround_upmix(stereo, folder)) is not None:
        made["surround"] = surround
    paths = {}
    for tool, samples in made.items():
        paths[tool] = folder / f"{track.track_id}-{tool}.flac"
        sf.write(paths[tool], _peak(samples), RATE_HZ)
    return paths


def _gate_row(track: Track, tool: str, path: Path, catalog: Catalog) -> dict:
    audio = load_audio(path, catalog.settings)
    assert audio.channels is not None
    spans = numbered_parts_apart(audio.channels, audio.sample_rate_hz, catalog.settings)
    row = {"type": "gate", "track": track.track_id, "tool": tool}
    for kind, width in (("channels", 1), ("differences", 2)):
        mine = [span for signal, span in spans.items() if len(NUMBERED_PARTS[signal]) == width]
        row[f"{kind}_screened"] = sum(span is not None for span in mine)
        row[f"{kind}_screened_s"] = sum(span[1] - span[0] for span in mine if span is not None)
        row[f"{kind}_s"] = audio.duration_s * len(mine)
    return row


def run(
    catalog_path: Path,
    out: Path,
    corpus_name: str,
    n_attacks: int,
    track_step: int = 1,
    only: str | None = None,
) -> None:
    """The rows the module's docstring lists; ``track_step``: only every so many stereo corpus
    tracks for the gate, upmix, negative and cost rows; ``only``: ``"attacks"`` (with their
    decoys) or ``"tracks"`` (the rest), to run the two halves side by side, or ``"cost"``."""
    corpus = Corpus.from_json(read_manifest(corpus_name))
    tracks = corpus.by_id()
    negatives = [t for t in corpus.negatives if t.channels == 2]
    catalog_ids = {t.track_id for t in corpus.catalog}
    with (
        results_file(catalog_path, out) as (catalog, write),
        tempfile.TemporaryDirectory(prefix="audiodup-multichannel-") as name,
    ):
        folder = Path(name)
        plan = attack_plan(corpus, n_attacks if only in (None, "attacks") else 0)
        for k, spec in enumerate(plan):
            path = write_encoded(
                make_attack(corpus, spec, folder), spec["codec"], folder, f"attack-{k:02d}"
            )
            expected = Path(tracks[spec["work"]].path).name
            for mode in MODES:
                row = screened_row(catalog, path, mode, expected, BOTH)
                write({"type": "attack", **spec, **row})
            decoy = negatives[(k + 7) % len(negatives)].track_id
            samples = make_attack(corpus, spec, folder, copied=decoy)
            path = write_encoded(samples, spec["codec"], folder, f"decoy-{k:02d}")
            row = screened_row(catalog, path, "always", None, BOTH)
            write({"type": "decoy", **spec, "copied": decoy, **row})
        if only == "cost":
            for track in negatives[::track_step]:
                _cost_rows(track, folder, catalog, write)
            return
        stereo = [t for t in corpus.tracks if t.channels == 2][::track_step]
        for track in stereo if only != "attacks" else []:
            for tool, path in _upmixes(track, folder).items():
                write(_gate_row(track, tool, path, catalog))
                if track.track_id in catalog_ids:
                    expected = Path(track.path).name
                    row = screened_row(catalog, path, "auto", expected, BOTH)
                    write({"type": "upmix", "track": track.track_id, "tool": tool, **row})
                elif track in negatives:
                    for mode in ("auto", "always"):
                        row = screened_row(catalog, path, mode, None, BOTH)
                        write({"type": "negative", "track": track.track_id, "tool": tool, **row})
                path.unlink()


def _cost_rows(track: Track, folder: Path, catalog: Catalog, write) -> None:
    """A never-indexed stereo track as a stereo FLAC and as each upmix, each screened with the
    mix alone (``never``) and with ``auto``: once to warm up, then measured (for a machine
    without other work: ``--only cost`` alone)."""
    stereo = _stereo(track)
    paths = {"stereo": folder / f"{track.track_id}-stereo.flac", **_upmixes(track, folder)}
    sf.write(paths["stereo"], _peak(stereo), RATE_HZ)
    for tool, path in paths.items():
        for mode in ("never", "auto"):
            screened_row(catalog, path, mode, None, BOTH)
            row = screened_row(catalog, path, mode, None, BOTH)
            write({"type": "cost", "track": track.track_id, "tool": tool, **row})
        path.unlink()


def _cost_table(rows: list[dict]) -> list[str]:
    """Median screening CPU per file kind and mode, and its median ratio, track by track, to
    the stereo file's with ``auto``."""
    stereo = {r["track"]: r for r in rows if r["tool"] == "stereo" and r["mode"] == "auto"}
    lines = [
        "",
        f"| never-indexed tracks ({len(stereo)}), as, screened with | verdicts not `clean` "
        "| CPU s, median | ratio to the stereo file with `auto`, median |",
        "|---|---:|---:|---:|",
    ]
    for tool in ("stereo", "matrix", "surround"):
        for mode in ("never", "auto"):
            mine = [r for r in rows if r["tool"] == tool and r["mode"] == mode]
            if not mine:
                continue
            ratio = np.median([_cpu([r]) / _cpu([stereo[r["track"]]]) for r in mine])
            flagged = sum(r["verdict"] != "clean" for r in mine)
            lines.append(f"| {tool}, `{mode}` | {flagged} | {_cpu(mine):.2f} | {ratio:.2f} |")
    return lines


def _cpu(rows: list[dict]) -> float:
    if not rows:
        return float("nan")
    return float(np.median([r["fingerprint_cpu_s"] + r["search_cpu_s"] for r in rows]))


def _attack_tables(attacks: list[dict]) -> list[str]:
    """Attacks found per mode, then per kind of attack with ``never`` and ``auto``."""
    lines = [
        "",
        "| `stereo_channels` and `stereo_difference` | attacks found (`duplicate` of the copied "
        "work) | of them in a channel or a difference | `suspect` | CPU s per attack, median "
        "(fingerprint + search) |",
        "|---|---:|---:|---:|---:|",
        *mode_rows(attacks, tuple(NUMBERED_PARTS)),
        "",
        "| attack | found, never | found, auto |",
        "|---|---:|---:|",
    ]
    for key in ("hide", "layout", "mask", "louder_db", "codec"):
        for value in sorted({r[key] for r in attacks}, key=str):
            mine = [r for r in attacks if r[key] == value]
            found = {
                mode: sum(
                    r["mode"] == mode and r["verdict"] == "duplicate" and r["right_work"]
                    for r in mine
                )
                for mode in ("never", "auto")
            }
            n = len(mine) // len(MODES)
            lines.append(f"| {key} {value} | {found['never']} / {n} | {found['auto']} / {n} |")
    return lines


def _chance_table(rows: list[dict]) -> list[str]:
    """Decoys and never-indexed upmixes: ``duplicate`` and ``suspect`` verdicts, CPU."""
    decoys = [r for r in rows if r["type"] == "decoy"]
    groups = [(f"{len(decoys)} never-indexed tracks in one channel (always)", decoys)]
    for mode in ("auto", "always"):
        for tool in sorted({r["tool"] for r in rows if r["type"] == "negative"}):
            mine = [
                r
                for r in rows
                if r["type"] == "negative" and r["mode"] == mode and r["tool"] == tool
            ]
            groups.append((f"{len(mine)} never-indexed tracks, {tool} upmix ({mode})", mine))
    lines = ["", "| chance uploads | `duplicate` | `suspect` | CPU s, median |"]
    lines.append("|---|---:|---:|---:|")
    for label, mine in groups:
        if mine:
            counts = Counter(r["verdict"] for r in mine)
            lines.append(
                f"| {label} | {counts['duplicate']} | {counts['suspect']} | {_cpu(mine):.2f} |"
            )
    return lines


def table(rows: list[dict]) -> str:
    meta = next(r for r in rows if r["type"] == "meta")
    lines = [
        f"commit {meta['commit']}, {meta['machine']['cpu']}, {meta['machine']['cores']} cores",
        "",
    ]
    for tool in sorted({r["tool"] for r in rows if r["type"] == "gate"}):
        gates = [r for r in rows if r["type"] == "gate" and r["tool"] == tool]
        for kind in ("channels", "differences"):
            opened = [r for r in gates if r[f"{kind}_screened"]]
            seconds = sum(r[f"{kind}_screened_s"] for r in gates)
            share = seconds / max(sum(r[f"{kind}_s"] for r in gates), 1e-9)
            lines.append(
                f"- gate, {tool} upmix to 5.1: {len(opened)} of {len(gates)} stereo corpus "
                f"tracks have one of their {kind} screened (`auto`), {100 * share:.1f} % of "
                f"the seconds of all their {kind}"
            )
    if attacks := [r for r in rows if r["type"] == "attack"]:
        lines += _attack_tables(attacks)
    if any(r["type"] in ("decoy", "negative") for r in rows):
        lines += _chance_table(rows)
    if upmixes := [r for r in rows if r["type"] == "upmix"]:
        found = sum(r["verdict"] == "duplicate" and r["right_work"] for r in upmixes)
        in_mix = sum(r["signal"] == "mix" for r in upmixes if r["right_work"])
        lines += [
            "",
            f"- upmixed catalog works (`auto`): {found} of {len(upmixes)} `duplicate` of their "
            f"own work, {in_mix} of them in the mix; CPU s median {_cpu(upmixes):.2f}",
        ]
    if costs := [r for r in rows if r["type"] == "cost"]:
        lines += _cost_table(costs)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--track-step", type=int, default=1)
    parser.add_argument("--only", choices=("attacks", "tracks", "cost"))
    extra, rest = parser.parse_known_args(argv)

    def run_part(catalog_path: Path, out: Path, corpus_name: str, n_attacks: int) -> None:
        run(catalog_path, out, corpus_name, n_attacks, extra.track_step, extra.only)

    command_line("python -m benchmarks.multichannel", run_part, table, 48, rest)


if __name__ == "__main__":
    main()
