"""What decoding a 4-minute MP3 upload costs, stage by stage, and whether a change keeps its samples
(issue #16).

    python benchmarks/decode_cost.py split [--repeats 5]
    python benchmarks/decode_cost.py compare ROOT [ROOT...] [--rounds 3] [--repeats 3]
    python benchmarks/decode_cost.py same-samples BEFORE_ROOT [--extra FILE...]
    python -m benchmarks.decode_cost resamplers [--repeats 5]
    python -m benchmarks.decode_cost screen-with-resampler NAME CATALOG RESULTS OUT
    python benchmarks/decode_cost.py verdict-changes FIRST SECOND

``split`` profiles ``audiodup.audio.load_audio`` (cProfile with ``time.process_time`` as its
clock) on the 4-min uploads of ``<cache>/cpu-uploads`` (made by ``python -m benchmarks.cpu_cost``;
the cache is ``$AUDIODUP_BENCH_DATA`` or ``~/.cache/audiodup-bench``) and sorts its CPU time into
stages; it also times, unprofiled, ``load_audio`` whole and libsndfile's decoding alone (the same
reads into one reused array, nothing else: what libmpg123 itself costs).

``compare`` times ``load_audio`` and ``load_audio`` + ``fingerprint_audio(query=True)`` (what
``benchmarks.cpu_cost`` calls decode + fingerprint) per 4-min upload for older checkouts and
this one, each in its own process with its own ``PYTHONPATH``, the codes taking turns ``--rounds``
times so that all see the same load; per upload the least CPU of all its runs, then the median
over uploads.

``same-samples`` decodes every upload of ``cpu-uploads`` (30 s, 4 min, 10 min), every audio file
of ``fixtures/audio`` and the ``--extra`` files with both codes and counts the files whose
``Audio`` differs in any way: the bytes of ``samples``, ``sha256``, the duration, ``truncated``,
the tags, or the error a file gives.

``resamplers`` and ``screen-with-resampler`` are an experiment, not a feature: cheaper resamplers
than soxr HQ (``RESAMPLERS``) put in place of ``audiodup.audio._resample_stream`` in this process
only. ``resamplers`` times each on the native mono samples of the 4-min uploads (44.1 kHz to
11,025 Hz) and of 22,050 Hz queries of the benchmark, and ``load_audio`` whole with each;
``screen-with-resampler`` runs ``benchmarks.same_verdicts screen`` with one of them, so that
``same_verdicts compare`` counts the verdicts it changes, and ``verdict-changes`` shows them
by variant and role: entries that differ in any field, labels that changed, and the labels'
transitions. A catalog already built keeps its
fingerprints: only the queries are decoded, so only the query path changes.

Figures are CPU time (user + system of this process), which the load of a shared machine
still raises: compare codes only within one ``compare`` run. The children run this file as a
script and import nothing from ``benchmarks``, only the audiodup their ``PYTHONPATH`` names.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
AUDIO_SUFFIXES = {".ogg", ".mp3", ".flac", ".wav", ".opus", ".m4a"}

# cProfile entries (file name ending, function name) -> stage, the first match wins; every other
# function's own time goes to the stage of its nearest caller listed here (_profiled_stages)
STAGES: list[tuple[str, str, str]] = [
    ("soundfile.py", "__init__", "open the file and read its header (libsndfile)"),
    ("soundfile.py", "_cdata_io", "decode: sf_readf_float (libsndfile + libmpg123)"),
    ("soundfile.py", "seek", "soundfile's read bookkeeping (tell/seek, checks, array)"),
    ("soundfile.py", "read", "soundfile's read bookkeeping (tell/seek, checks, array)"),
    ("audio.py", "_read_frames", "soundfile's read bookkeeping (tell/seek, checks, array)"),
    ("audio.py", "_mix_to_mono", "stereo mix-down"),
    ("audio.py", "add", "measuring pass (min / max / finite / sum)"),
    ("audio.py", "keep", "keeping the blocks for the second pass"),
    ("soxr/__init__.py", "resample_chunk", "resampling (soxr HQ, streamed)"),
    ("soxr/__init__.py", "__init__", "resampling (soxr HQ, streamed)"),
    ("audio.py", "_append", "copying the resampled blocks out"),
    ("audio.py", "_rms", "RMS (silence check)"),
    ("audio.py", "_sha256_16bit", "sha256 of the 16-bit samples"),
    ("audio.py", "_resample", "second pass: DC removal, scaling, loop"),
]


OTHER = "other (Python around the stages, opening, format checks)"


def _cache_dir() -> Path:
    env = os.environ.get("AUDIODUP_BENCH_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "audiodup-bench"


def _uploads(length: str = "4min") -> list[str]:
    plan = json.loads((_cache_dir() / "cpu-uploads" / "plan.json").read_text())
    return [u["path"] for u in plan["uploads"][length]]


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def _cpu(call) -> float:
    start = time.process_time()
    call()
    return time.process_time() - start


# --------------------------------------------------------------------------- split


def _stage_of(key: tuple[str, int, str]) -> str | None:
    filename, _, name = key
    for suffix, function, stage in STAGES:
        if filename.endswith(suffix) and name == function:
            return stage
    return None


def _profiled_stages(path: str) -> tuple[float, dict[str, float]]:
    """CPU-s of one profiled ``load_audio(path)`` and of each stage: every function's own time
    goes to the stage of its nearest staged caller (shared between its callers as they called
    it), or to ``OTHER``."""
    from audiodup.audio import load_audio

    profile = cProfile.Profile(time.process_time)
    profile.enable()
    load_audio(path)
    profile.disable()
    stats = pstats.Stats(profile).stats  # key -> (calls, primitive, tottime, cumtime, callers)
    shares: dict = {}

    def stage_shares(key, seen: frozenset) -> dict[str, float]:
        if key in shares:
            return shares[key]
        stage = _stage_of(key)
        if stage is not None:
            return {stage: 1.0}
        callers = {c: edge for c, edge in stats[key][4].items() if c in stats and c not in seen}
        weight = sum(edge[2] for edge in callers.values())
        result: dict[str, float] = {}
        if not callers or weight <= 0:
            result = {OTHER: 1.0}
        for caller, edge in callers.items():
            for name, share in stage_shares(caller, seen | {key}).items():
                result[name] = result.get(name, 0.0) + share * edge[2] / weight
        shares[key] = result
        return result

    stages: dict[str, float] = {}
    for key, entry in stats.items():
        for name, share in stage_shares(key, frozenset()).items():
            stages[name] = stages.get(name, 0.0) + share * entry[2]
    return sum(entry[2] for entry in stats.values()), stages


def _decode_only(path: str) -> None:
    """libsndfile's reads of ``load_audio`` (65,536 frames), into one array: the decoder alone."""
    import numpy as np
    import soundfile as sf

    with sf.SoundFile(path) as f:
        buffer = np.empty((1 << 16, f.channels), np.float32)
        while len(f.read(out=buffer[: min(len(buffer), f.frames - f.tell())])):
            pass


def split(repeats: int) -> str:
    from audiodup.audio import load_audio

    paths = _uploads()
    load_audio(paths[0])  # warm: imports, first-use set-up
    load_start = _load()
    rows: dict[str, list[float]] = {}
    whole_min, whole_median, decode_min, profiled = [], [], [], []
    for path in paths:
        runs = [_cpu(lambda p=path: load_audio(p)) for _ in range(repeats)]
        whole_min.append(min(runs))
        whole_median.append(statistics.median(runs))
        decode_min.append(min(_cpu(lambda p=path: _decode_only(p)) for _ in range(repeats)))
        best: tuple[float, dict[str, float]] | None = None
        for _ in range(repeats):  # the profiled run with the least CPU
            total, stages = _profiled_stages(path)
            if best is None or total < best[0]:
                best = (total, stages)
        assert best is not None
        profiled.append(best[0])
        for stage, cpu in best[1].items():
            rows.setdefault(stage, []).append(cpu)
    lines = [
        f"{len(paths)} uploads of 4 min (MP3 192 kb/s, 44.1 kHz stereo), {repeats} repeats each; "
        f"load average at the start {load_start}, at the end {_load()}",
        "",
        "| | CPU-s per upload, median over uploads |",
        "|---|---:|",
        f"| `load_audio` unprofiled, min of the repeats | {statistics.median(whole_min):.3f} |",
        f"| `load_audio` unprofiled, median | {statistics.median(whole_median):.3f} |",
        "| libsndfile's reads alone, into one reused array (min of the repeats) "
        f"| {statistics.median(decode_min):.3f} |",
        f"| `load_audio` under cProfile (the run with the least CPU) "
        f"| {statistics.median(profiled):.3f} |",
        "",
        "| stage (cProfile, the least-CPU run of each upload) | CPU-s, median | share |",
        "|---|---:|---:|",
    ]
    whole = statistics.median(profiled)
    for stage, values in sorted(rows.items(), key=lambda item: -statistics.median(item[1])):
        median = statistics.median(values)
        lines.append(f"| {stage} | {median:.4f} | {100 * median / whole:.0f} % |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- resamplers


class _WholeSignalStream:
    """``soxr.ResampleStream``'s interface over a whole-signal resampler: the output comes at
    the last chunk (an experiment on short queries, not a streaming design)."""

    def __init__(self, resample, from_hz: int, to_hz: int):
        self._resample, self._from_hz, self._to_hz, self._chunks = resample, from_hz, to_hz, []

    def resample_chunk(self, chunk, last: bool = False):
        import numpy as np

        self._chunks.append(np.array(chunk, np.float32))
        if not last:
            return np.zeros(0, np.float32)
        signal = np.concatenate(self._chunks)
        return self._resample(signal, self._from_hz, self._to_hz).astype(np.float32)


def _soxr_stream(quality: str):
    def make(from_hz: int, to_hz: int):
        import soxr

        return soxr.ResampleStream(from_hz, to_hz, 1, dtype="float32", quality=quality)

    return make


def _polyphase(signal, from_hz: int, to_hz: int):
    """scipy's polyphase filter (Kaiser window, its default) for a rational rate ratio."""
    import math

    from scipy.signal import resample_poly

    gcd = math.gcd(from_hz, to_hz)
    return resample_poly(signal, to_hz // gcd, from_hz // gcd)


RESAMPLERS = {
    "soxr-HQ": _soxr_stream("HQ"),  # what audiodup uses
    "soxr-MQ": _soxr_stream("MQ"),
    "soxr-LQ": _soxr_stream("LQ"),
    "soxr-QQ": _soxr_stream("QQ"),
    "scipy-poly": lambda from_hz, to_hz: _WholeSignalStream(_polyphase, from_hz, to_hz),
}


def _native_mono(path: str):
    import numpy as np
    import soundfile as sf

    samples, rate_hz = sf.read(path, dtype="float32", always_2d=True)
    return samples.mean(axis=1, dtype=np.float32), rate_hz


def _resample_all(make, signal, from_hz: int, to_hz: int = 11025) -> None:
    stream = make(from_hz, to_hz)
    for start in range(0, len(signal), 1 << 16):
        stream.resample_chunk(signal[start : start + (1 << 16)])
    stream.resample_chunk(signal[:0], True)


def resamplers(repeats: int, queries: list[str]) -> str:
    import audiodup.audio as audio_module

    uploads = [_native_mono(p) for p in _uploads()]
    flac = [_native_mono(p) for p in queries]
    lines = [
        f"load average at the start {_load()}",
        "",
        "| resampler | 4-min upload, 44.1 kHz -> 11,025 Hz: resampling alone | `load_audio` "
        f"whole | {len(flac)} queries at 22,050 Hz (mean {_mean_s(flac):.0f} s): resampling "
        "alone |",
        "|---|---:|---:|---:|",
    ]
    real_stream = audio_module._resample_stream
    for name, make in RESAMPLERS.items():
        alone = [
            min(_cpu(lambda s=s, r=r, m=make: _resample_all(m, s, r)) for _ in range(repeats))
            for s, r in uploads
        ]
        short = [
            min(_cpu(lambda s=s, r=r, m=make: _resample_all(m, s, r)) for _ in range(repeats))
            for s, r in flac
        ]
        audio_module._resample_stream = make
        try:
            whole = [
                min(_cpu(lambda p=p: audio_module.load_audio(p)) for _ in range(repeats))
                for p in _uploads()
            ]
        finally:
            audio_module._resample_stream = real_stream
        lines.append(
            f"| {name} | {statistics.median(alone):.4f} | {statistics.median(whole):.3f} "
            f"| {statistics.median(short):.4f} |"
        )
    lines.append("")
    lines.append(f"CPU-s, per file the least of {repeats} runs, then the median over files; ")
    lines[-1] += f"load average at the end {_load()}"
    return "\n".join(lines)


def _mean_s(signals) -> float:
    return statistics.fmean(len(s) / r for s, r in signals) if signals else 0.0


def _benchmark_queries(results: Path, variants: set[str], limit: int) -> list[str]:
    from benchmarks.same_verdicts import queries

    return [q["path"] for q in queries(results, variants)][:limit]


def screen_with_resampler(name: str, catalog: Path, results: Path, out: Path) -> str:
    import audiodup.audio as audio_module
    from benchmarks.same_verdicts import screen

    audio_module._resample_stream = RESAMPLERS[name]
    return screen(catalog, results, out, None, None)


def verdict_changes(first: Path, second: Path) -> str:
    """Two ``same_verdicts screen`` files of the same queries, compared by variant and role."""
    a = [json.loads(line) for line in first.open()]
    b = [json.loads(line) for line in second.open()]
    if [(x["variant"], x["role"]) for x in a] != [(y["variant"], y["role"]) for y in b]:
        return "not the same queries"
    groups: dict[tuple[str, str], list[tuple[dict, dict]]] = {}
    for x, y in zip(a, b, strict=True):
        groups.setdefault((x["variant"], x["role"]), []).append((x["verdict"], y["verdict"]))
    lines = [
        "| variant | role | queries | differ in any field | label changed | transitions |",
        "|---|---|---:|---:|---:|---|",
    ]
    for (variant, role), pairs in groups.items():
        changed = [(x["verdict"], y["verdict"]) for x, y in pairs if x["verdict"] != y["verdict"]]
        moves: dict[str, int] = {}
        for old, new in changed:
            moves[f"{old} -> {new}"] = moves.get(f"{old} -> {new}", 0) + 1
        shown = ", ".join(f"{move}: {n}" for move, n in sorted(moves.items())) or "–"
        differ = sum(x != y for x, y in pairs)
        lines.append(f"| {variant} | {role} | {len(pairs)} | {differ} | {len(changed)} | {shown} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- compare


def measure(repeats: int) -> dict:
    """Per 4-min upload, the CPU-s of every ``load_audio`` and of every decode + fingerprint."""
    from audiodup.audio import load_audio
    from audiodup.fingerprint import fingerprint_audio

    paths = _uploads()
    fingerprint_audio(load_audio(paths[0]), query=True)  # warm
    decode: dict[str, list[float]] = {p: [] for p in paths}
    both: dict[str, list[float]] = {p: [] for p in paths}
    for _ in range(repeats):
        for path in paths:
            start = time.process_time()
            audio = load_audio(path)
            decoded = time.process_time()
            fingerprint_audio(audio, query=True)
            decode[path].append(decoded - start)
            both[path].append(time.process_time() - start)
    return {"decode": decode, "decode_fingerprint": both}


def _measure_in_child(root: Path, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "measure.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "measure", str(out)]
        cmd += ["--repeats", str(repeats)]
        env = {**os.environ, "PYTHONPATH": str(root)}
        subprocess.run(cmd, env=env, check=True, cwd=folder)
        return json.loads(out.read_text())


def compare(roots: list[Path], rounds: int, repeats: int) -> str:
    """The figures of each checkout in ``roots``, then of this one, the codes taking turns."""
    load_start = _load()
    columns = [*roots, REPO_ROOT]
    runs: list[dict[str, dict[str, list[float]]]] = [{} for _ in columns]
    for _ in range(rounds):
        for column, root in zip(runs, columns, strict=True):
            for figure, per_upload in _measure_in_child(root, repeats).items():
                for path, values in per_upload.items():
                    column.setdefault(figure, {}).setdefault(path, []).extend(values)

    def median_of_mins(column: dict, figure: str) -> float:
        return statistics.median(min(v) for v in column[figure].values())

    names = [str(root) for root in roots] + ["this checkout"]
    lines = [
        f"{rounds} rounds x {repeats} repeats per code and upload; load average at the start "
        f"{load_start}, at the end {_load()}",
        "",
        "| CPU-s per 4-min MP3 upload (least of its runs, median over uploads) | "
        + " | ".join(names)
        + " |",
        "|---|" + "---:|" * len(names),
    ]
    for figure, label in (
        ("decode", "decode alone (`load_audio`)"),
        ("decode_fingerprint", "decode + fingerprint (`load_audio` + `fingerprint_audio`)"),
    ):
        values = [median_of_mins(column, figure) for column in runs]
        lines.append(f"| {label} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
        if figure == "decode_fingerprint":
            shown = " | ".join(f"{240 / v:,.0f}" for v in values)
            lines.append(f"| … as x real time per core | {shown} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- same-samples


def describe(paths: list[str]) -> dict[str, list]:
    """What ``load_audio`` gives for each file: a digest of every field, or the error."""
    from audiodup.audio import load_audio
    from audiodup.errors import AudioDecodeError

    out: dict[str, list] = {}
    for path in paths:
        try:
            audio = load_audio(path)
        except AudioDecodeError as exc:
            out[path] = ["error", type(exc).__name__, str(exc)]
            continue
        samples = hashlib.sha256(audio.samples.tobytes()).hexdigest()
        out[path] = [
            samples,
            str(audio.samples.dtype),
            audio.sha256,
            audio.sample_rate_hz,
            audio.source_duration_s,
            audio.truncated,
            audio.title,
            audio.artist,
        ]
    return out


def _described_in_child(root: Path, paths: list[str]) -> dict[str, list]:
    with tempfile.TemporaryDirectory() as folder:
        listing, out = Path(folder) / "paths.json", Path(folder) / "described.json"
        listing.write_text(json.dumps(paths))
        cmd = [sys.executable, str(Path(__file__).resolve()), "describe", str(listing), str(out)]
        env = {**os.environ, "PYTHONPATH": str(root)}
        subprocess.run(cmd, env=env, check=True, cwd=folder)
        return json.loads(out.read_text())


def same_samples(before: Path, extra: list[str]) -> str:
    paths = [p for length in ("30s", "4min", "10min") for p in _uploads(length)]
    paths += sorted(
        str(p)
        for p in (REPO_ROOT / "fixtures" / "audio").rglob("*")
        if p.suffix.lower() in AUDIO_SUFFIXES
    )
    paths += extra
    old, new = _described_in_child(before, paths), _described_in_child(REPO_ROOT, paths)
    differ = [p for p in paths if old[p] != new[p]]
    errors = sum(new[p][0] == "error" for p in paths)
    shown = "".join(f"\n  differs: {p!r}" for p in differ)
    return f"{len(paths)} files ({errors} decode errors), {len(differ)} differ{shown}"


def _problem(args: argparse.Namespace) -> str | None:
    """What stops ``args`` from measuring what they say (one line), or ``None``."""
    roots = {"compare": getattr(args, "roots", []), "same-samples": [getattr(args, "before", "")]}
    for root in roots.get(args.command, []):
        if not (Path(root) / "audiodup" / "__init__.py").is_file():
            # with PYTHONPATH on a folder without audiodup the child would import this checkout
            return f"{root} holds no audiodup/ package (give the root of a checkout)"
    if args.command in ("split", "compare", "measure", "same-samples"):
        plan = _cache_dir() / "cpu-uploads" / "plan.json"
        if not plan.is_file():
            return f"{plan} not found: make the uploads with `python -m benchmarks.cpu_cost run`"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("split", help="the stages of load_audio on the 4-min uploads")
    run.add_argument("--repeats", type=int, default=5)
    both = sub.add_parser("compare", help="decode CPU, older checkouts against this one")
    both.add_argument("roots", type=Path, nargs="+", help="roots of the older checkouts")
    both.add_argument("--rounds", type=int, default=3)
    both.add_argument("--repeats", type=int, default=3)
    same = sub.add_parser("same-samples", help="whether both codes decode every file alike")
    same.add_argument("before", type=Path, help="root of the older checkout")
    same.add_argument("--extra", nargs="*", default=[], help="more files to decode")
    cheaper = sub.add_parser("resamplers", help="experiment: the CPU of cheaper resamplers")
    cheaper.add_argument("--repeats", type=int, default=5)
    cheaper.add_argument(
        "--queries",
        type=Path,
        default=REPO_ROOT / "benchmarks" / "results.jsonl",
        help="results file whose 'speed 0.50' queries are timed too",
    )
    cheaper.add_argument("--n-queries", type=int, default=20)
    verdicts = sub.add_parser(
        "screen-with-resampler", help="experiment: same_verdicts screen with another resampler"
    )
    verdicts.add_argument("name", choices=list(RESAMPLERS))
    verdicts.add_argument("catalog", type=Path)
    verdicts.add_argument("results", type=Path)
    verdicts.add_argument("out", type=Path)
    changes = sub.add_parser("verdict-changes", help="experiment: verdicts compared by variant")
    changes.add_argument("first", type=Path)
    changes.add_argument("second", type=Path)
    child = sub.add_parser("measure", help="(child of compare)")
    child.add_argument("out", type=Path)
    child.add_argument("--repeats", type=int, default=3)
    described = sub.add_parser("describe", help="(child of same-samples)")
    described.add_argument("paths", type=Path, help="JSON list of files")
    described.add_argument("out", type=Path)
    args = parser.parse_args()
    problem = _problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    if args.command == "split":
        print(split(args.repeats))
    elif args.command == "compare":
        print(compare(args.roots, args.rounds, args.repeats))
    elif args.command == "same-samples":
        print(same_samples(args.before, args.extra))
    elif args.command == "resamplers":
        flac = _benchmark_queries(args.queries, {"speed 0.50"}, args.n_queries)
        print(resamplers(args.repeats, flac))
    elif args.command == "screen-with-resampler":
        print(screen_with_resampler(args.name, args.catalog, args.results, args.out))
    elif args.command == "verdict-changes":
        print(verdict_changes(args.first, args.second))
    elif args.command == "measure":
        args.out.write_text(json.dumps(measure(args.repeats)))
    else:
        args.out.write_text(json.dumps(describe(json.loads(args.paths.read_text()))))


if __name__ == "__main__":
    main()
