"""CPU cost of screening and indexing (issue #16), side by side with fpcalc and a floor.

``python -m benchmarks.cpu_cost`` measures, in CPU time (user + system; medians of repeats):

- **screening**: CPU-s per 4-minute upload screened in a batch (one process, catalog open,
  indexes loaded), split into decode + fingerprint and search;
- **search** alone (the upload fingerprinted beforehand), p50 / p95 by upload length: 30 s,
  4 min, 10 min;
- **indexing**: seconds of audio indexed per CPU-second, building the 113-work benchmark
  catalog from its source files;
- **start-up**: a one-file ``audiodup screen --json`` process, whole and until decoding starts;
- the same uploads through ``fpcalc`` (Chromaprint, fingerprint only, whole file) and through
  the floor "decode + resample + one STFT" (soundfile, soxr HQ to 11,025 Hz, a 2048-point
  magnitude STFT with hop 256).

Uploads are MP3 (192 kb/s, 44.1 kHz stereo) cut from the benchmark corpus (``corpus.json`` in the
cache, see :mod:`benchmarks.corpus`): half catalog works, half negatives; made once into
``<cache>/cpu-uploads``. With ``--before ROOT`` (a checkout of an older commit, e.g. ``git
worktree add /tmp/base ff37f8b``) the audiodup measurements run for both codes, each in its own
process with its own ``PYTHONPATH``, and ``benchmarks/CPU.md`` gets a before/after table.

``python -m benchmarks.cpu_cost side-by-side CATALOG BEFORE_ROOT`` measures only
``Catalog.screen`` per 4-min upload (the least CPU of every screening, then the median over the
copies and over the clean uploads) for an older checkout and this one, their processes taking
turns so that both see the same load, and prints the table (a change meant to keep every verdict
must show the same verdict letters).

This file runs as a script too (``python benchmarks/cpu_cost.py measure ...``): the measuring
child imports nothing from ``benchmarks``, only the audiodup its ``PYTHONPATH`` names.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
UPLOAD_BITRATE = "192k"
LENGTHS_S = {"30s": 30.0, "4min": 240.0, "10min": 600.0}
N_UPLOADS = {"30s": 20, "4min": 20, "10min": 6}  # half catalog works, half negatives
REPEATS = 3


def _cache_dir(data: str | None) -> Path:
    if data:
        return Path(data).expanduser()
    env = os.environ.get("AUDIODUP_BENCH_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "audiodup-bench"


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_cpu(
    cmd: list[str], env: dict | None = None, cwd: Path | None = None
) -> tuple[float, subprocess.CompletedProcess]:
    """CPU seconds (user + sys) of one child process and its result."""
    before = _children_cpu()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    return _children_cpu() - before, done


def _median_cpu(call) -> float:
    """The median CPU seconds of ``REPEATS`` calls of ``call()`` in this process."""
    runs = []
    for _ in range(REPEATS):
        cpu0 = time.process_time()
        call()
        runs.append(time.process_time() - cpu0)
    return statistics.median(runs)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# --------------------------------------------------------------------------- inputs


def prepare(cache: Path) -> dict:
    """The uploads (MP3) and the catalog sources, made once and listed in ``plan.json``."""
    folder = cache / "cpu-uploads"
    plan_path = folder / "plan.json"
    corpus = json.loads((cache / "corpus.json").read_text())["tracks"]
    if plan_path.exists():
        plan = json.loads(plan_path.read_text())
        # each upload's source track, in the order they were cut (older plans do not name it)
        for name, group in plan["uploads"].items():
            for upload, track in zip(group, _picked(corpus, name), strict=False):
                upload["source"] = track["path"]
        return plan
    catalog = [t for t in corpus if t["role"] == "catalog"]
    folder.mkdir(parents=True, exist_ok=True)
    uploads: dict[str, list[dict]] = {}
    for name, length_s in LENGTHS_S.items():
        picked = _picked(corpus, name)
        uploads[name] = []
        for i, track in enumerate(picked):
            out = folder / f"{name}_{i:02d}_{track['role']}.mp3"
            # looped when the track is shorter than the upload; starts 10 s in for 30 s excerpts
            start = ["-ss", "10"] if length_s <= 30 and track["duration_s"] > 45 else []
            cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-stream_loop", "-1", *start]
            cmd += ["-i", track["path"], "-t", str(length_s), "-ac", "2", "-ar", "44100"]
            subprocess.run([*cmd, "-b:a", UPLOAD_BITRATE, str(out)], check=True)
            uploads[name].append(
                {
                    "path": str(out),
                    "role": track["role"],
                    "length_s": length_s,
                    "source": track["path"],
                }
            )
    plan = {
        "uploads": uploads,
        "catalog": [{"path": t["path"], "duration_s": t["duration_s"]} for t in catalog],
    }
    plan_path.write_text(json.dumps(plan, indent=1))
    return plan


def _picked(corpus: list[dict], name: str) -> list[dict]:
    """The tracks the uploads of length ``name`` are cut from: half the longest catalog tracks,
    then half the longest others (a 4-minute upload is 4 minutes of one track where possible)."""
    half = N_UPLOADS[name] // 2
    catalog = [t for t in corpus if t["role"] == "catalog"]
    negatives = [t for t in corpus if t["role"] != "catalog"]
    picked = sorted(catalog, key=lambda t: -t["duration_s"])[:half]
    return picked + sorted(negatives, key=lambda t: -t["duration_s"])[:half]


# --------------------------------------------------------------------------- audiodup (child)


def _set_up_as_the_command_line() -> None:
    """This process's allocator set as ``audiodup``'s command line and service set theirs
    (:mod:`audiodup.allocator`; a checkout from before it has nothing to set)."""
    try:
        from audiodup.allocator import keep_freed_memory
    except ImportError:
        return
    keep_freed_memory()


def measure_audiodup(plan: dict, workdir: Path) -> dict:
    """Every audiodup figure, with the audiodup on ``sys.path`` (run in a child process)."""
    _set_up_as_the_command_line()
    import audiodup
    from audiodup import Catalog
    from audiodup.audio import load_audio
    from audiodup.fingerprint import fingerprint_audio

    out: dict = {"audiodup": str(Path(audiodup.__file__).parent), "load_start": _load()}

    # indexing: the 113 catalog works, from their source files, in this process
    db = workdir / "catalog"
    shutil.rmtree(db, ignore_errors=True)
    paths = [Path(t["path"]) for t in plan["catalog"]]
    with Catalog.open(db, create=True) as catalog:
        cpu0 = time.process_time()
        results = catalog.add_paths(paths, workers=1)
        index_cpu = time.process_time() - cpu0
    added = {str(r.path) for r in results if r.status == "added"}
    audio_s = sum(t["duration_s"] for t in plan["catalog"] if str(Path(t["path"])) in added)
    out["indexing"] = {
        "works": len(added),
        "audio_s": audio_s,
        "cpu_s": index_cpu,
        "audio_s_per_cpu_s": audio_s / index_cpu,
    }

    with Catalog.open(db, create=False) as catalog:
        uploads = plan["uploads"]
        # warm: imports, first-use set-up and index loading stay out of the per-upload figures
        cpu0 = time.process_time()
        catalog.indexes()
        out["index_load_cpu_s"] = time.process_time() - cpu0
        catalog.screen(uploads["30s"][0]["path"])

        # screening in a batch: whole screen() calls, decode included
        per_upload: dict[str, list[float]] = {u["path"]: [] for u in uploads["4min"]}
        stages: dict[str, list[tuple[float, float]]] = {u["path"]: [] for u in uploads["4min"]}
        for _ in range(REPEATS):
            for upload in uploads["4min"]:
                cpu0 = time.process_time()
                verdict = catalog.screen(upload["path"])
                per_upload[upload["path"]].append(time.process_time() - cpu0)
                if hasattr(verdict, "fingerprint_cpu_s"):
                    stages[upload["path"]].append((verdict.fingerprint_cpu_s, verdict.search_cpu_s))
        medians = [statistics.median(v) for v in per_upload.values()]
        by_role = {
            role: [statistics.median(per_upload[u["path"]]) for u in uploads["4min"] if pick(u)]
            for role, pick in (
                ("catalog", lambda u: u["role"] == "catalog"),
                ("negative", lambda u: u["role"] != "catalog"),
            )
        }
        out["screen_4min"] = {
            "n": len(medians),
            "median_cpu_s": statistics.median(medians),
            "mean_cpu_s": statistics.fmean(medians),
            "p95_cpu_s": _pct(medians, 0.95),
            # the median of all lies between the two groups: copies stop after the first look,
            # clean uploads take every look
            **{f"median_cpu_s_{role}": _pct(v, 0.5) for role, v in by_role.items()},
        }
        if all(stages.values()):
            fp = [statistics.median(s[0] for s in v) for v in stages.values()]
            search = [statistics.median(s[1] for s in v) for v in stages.values()]
            out["screen_4min"]["fingerprint_cpu_s_median"] = statistics.median(fp)
            out["screen_4min"]["search_cpu_s_median"] = statistics.median(search)

        # decode + fingerprint alone, and search alone, by upload length
        out["by_length"] = {}
        for name, items in uploads.items():
            fp_cpu, decode_cpu, search_cpu = [], [], []
            for upload in items:
                runs, decodes = [], []
                for _ in range(REPEATS):
                    cpu0 = time.process_time()
                    audio = load_audio(upload["path"], catalog.settings)
                    cpu1 = time.process_time()
                    query = fingerprint_audio(audio, catalog.settings, query=True)
                    runs.append(time.process_time() - cpu0)
                    decodes.append(cpu1 - cpu0)
                fp_cpu.append(statistics.median(runs))
                decode_cpu.append(statistics.median(decodes))
                search_cpu.append(_median_cpu(lambda q=query: catalog.match_fingerprint(q)))
            out["by_length"][name] = {
                "n": len(items),
                "decode_fingerprint_p50": _pct(fp_cpu, 0.5),
                "decode_p50": _pct(decode_cpu, 0.5),
                "search_p50": _pct(search_cpu, 0.5),
                "search_p95": _pct(search_cpu, 0.95),
                "search_negatives_p50": _pct(
                    [s for s, u in zip(search_cpu, items, strict=True) if u["role"] != "catalog"],
                    0.5,
                ),
            }
        four = out["by_length"]["4min"]
        out["fingerprint_x_realtime"] = 240.0 / four["decode_fingerprint_p50"]
        out["fingerprint_only_x_realtime"] = 240.0 / (
            four["decode_fingerprint_p50"] - four["decode_p50"]
        )
    if plan.get("catalog_10k"):
        out["at_10k"] = _measure_large_catalog(Path(plan["catalog_10k"]), uploads)
    out["load_end"] = _load()
    return out


def _measure_large_catalog(root: Path, uploads: dict) -> dict:
    """Index loading, whole screenings of the 4-minute uploads and search alone by length, on
    the large catalog (``benchmarks.catalog_10k``): only reads it."""
    from audiodup import Catalog
    from audiodup.audio import load_audio
    from audiodup.fingerprint import fingerprint_audio

    out: dict = {}
    with Catalog.open(root, create=False) as catalog:
        out["works"] = catalog.stats().works
        cpu0 = time.process_time()
        catalog.indexes()
        out["index_load_cpu_s"] = time.process_time() - cpu0
        catalog.screen(uploads["30s"][0]["path"])
        per_upload = [
            _median_cpu(lambda p=upload["path"]: catalog.screen(p)) for upload in uploads["4min"]
        ]
        roles = [u["role"] for u in uploads["4min"]]
        out["screen_4min"] = {
            "median_cpu_s": statistics.median(per_upload),
            "p95_cpu_s": _pct(per_upload, 0.95),
            "median_cpu_s_catalog": _pct(
                [c for c, r in zip(per_upload, roles, strict=True) if r == "catalog"], 0.5
            ),
            "median_cpu_s_negative": _pct(
                [c for c, r in zip(per_upload, roles, strict=True) if r != "catalog"], 0.5
            ),
        }
        out["by_length"] = {}
        for name, items in uploads.items():
            search_cpu = []
            for upload in items:
                query = fingerprint_audio(
                    load_audio(upload["path"], catalog.settings), catalog.settings, query=True
                )
                search_cpu.append(_median_cpu(lambda q=query: catalog.match_fingerprint(q)))
            out["by_length"][name] = {
                "search_p50": _pct(search_cpu, 0.5),
                "search_p95": _pct(search_cpu, 0.95),
            }
    return out


# --------------------------------------------------------------------------- start-up (children)

_UNTIL_DECODE = """
import os, sys, time
import audiodup.catalog as catalog
def stop(*args, **kwargs):
    os.write(2, f"CPU_AT_DECODE {time.process_time()!r}\\n".encode())
    os._exit(0)
catalog.load_audio = stop
from audiodup.cli import main
sys.argv = ["audiodup", "screen", "--db", sys.argv[1], sys.argv[2]]
main()
"""


def measure_startup(root: Path, db: Path, upload: str, pycache: Path | None = None) -> dict:
    """One-file ``audiodup screen`` processes: whole, and until decoding starts. They run in
    ``root``: ``python -m`` and ``-c`` put the current folder first on ``sys.path``. With
    ``pycache``, compiled bytecode is kept there (as an installed package has it); without,
    the environment decides (``PYTHONDONTWRITEBYTECODE=1`` compiles audiodup every time)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
        _run_cpu([sys.executable, "-m", "audiodup", "--version"], env, root)  # compiles once
        _run_cpu([sys.executable, "-c", _UNTIL_DECODE, str(db), upload], env, root)
    whole, until = [], []
    for _ in range(REPEATS + 2):
        cpu, done = _run_cpu(
            [sys.executable, "-m", "audiodup", "screen", "--json", "--db", str(db), upload],
            env,
            root,
        )
        if done.returncode not in (0, 1, 4, 5):
            raise RuntimeError(done.stderr)
        if json.loads(done.stdout)["results"][0]["verdict"] == "error":
            raise RuntimeError(f"the one-file screen failed: {done.stdout}")
        whole.append(cpu)
        cpu, done = _run_cpu([sys.executable, "-c", _UNTIL_DECODE, str(db), upload], env, root)
        line = [x for x in done.stderr.splitlines() if x.startswith("CPU_AT_DECODE")]
        until.append(float(line[0].split()[1]) if line else cpu)
    return {
        "one_file_cpu_s": statistics.median(whole),
        "until_decode_cpu_s": statistics.median(until),
    }


# --------------------------------------------------------------------------- peers (parent)


def measure_fpcalc(plan: dict) -> dict | None:
    exe = shutil.which("fpcalc")
    if exe is None:
        return None
    out = {}
    for name in ("4min",):
        per = []
        for upload in plan["uploads"][name]:
            runs = []
            for _ in range(REPEATS):
                # whole file (the default reads 120 s); fpcalc exits 3 at end of file, output kept
                length = str(int(upload["length_s"]) + 10)
                cpu, done = _run_cpu([exe, "-length", length, upload["path"]])
                if "FINGERPRINT=" not in done.stdout:
                    raise RuntimeError(f"fpcalc failed on {upload['path']}: {done.stderr}")
                runs.append(cpu)
            per.append(statistics.median(runs))
        out[name] = statistics.median(per)
    cpu, _ = _run_cpu([exe, plan["uploads"]["4min"][0]["path"]])
    out["default_120s_one_file"] = cpu
    return out


def measure_floor(plan: dict) -> dict:
    """Decode (soundfile), mix, resample (soxr HQ) and one magnitude STFT, in this process."""
    import numpy as np
    import scipy.fft
    import soundfile as sf
    import soxr

    def floor(path: str) -> None:
        samples, rate = sf.read(path, dtype="float32", always_2d=True)
        mono = samples.mean(axis=1, dtype=np.float32)
        y = soxr.resample(mono, rate, 11025, quality="HQ").astype(np.float32)
        n_fft, hop = 2048, 256
        n = 1 + (len(y) - n_fft) // hop
        frames = np.lib.stride_tricks.as_strided(y, (n, n_fft), (y.strides[0] * hop, y.strides[0]))
        window = np.hanning(n_fft).astype(np.float32)
        for start in range(0, n, 256):
            np.abs(scipy.fft.rfft(frames[start : start + 256] * window, axis=1))

    floor(plan["uploads"]["30s"][0]["path"])  # warm
    per = []
    for upload in plan["uploads"]["4min"]:
        runs = []
        for _ in range(REPEATS):
            cpu0 = time.process_time()
            floor(upload["path"])
            runs.append(time.process_time() - cpu0)
        per.append(statistics.median(runs))
    return {"4min": statistics.median(per), "x_realtime": 240.0 / statistics.median(per)}


# --------------------------------------------------------------------------- orchestration


def _measure_in_child(root: Path, plan_path: Path, workdir: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(root)}
    out_json = workdir / "measure.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "measure"]
    cmd += ["--plan", str(plan_path), "--workdir", str(workdir), "--json", str(out_json)]
    subprocess.run(cmd, env=env, check=True)
    result = json.loads(out_json.read_text())
    uploads = json.loads(plan_path.read_text())["uploads"]
    upload = uploads["4min"][0]["path"]
    result["startup"] = measure_startup(root, workdir / "catalog", upload)
    result["startup_bytecode"] = measure_startup(
        root, workdir / "catalog", upload, workdir / "pycache"
    )
    return result


def _commit(root: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(root), "log", "-1", "--format=%h"], capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--", "audiodup"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return done.stdout.strip() + (" + uncommitted changes" if dirty else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# issue #16's targets: (what, the figure's path in a result, how to show it, the target)
TARGETS = [
    (
        "CPU-s per screened 4-min upload, 113 works",
        ("screen_4min", "median_cpu_s"),
        ".3f",
        "<= 0.25",
    ),
    (
        "CPU-s per screened 4-min upload, 10,000 works",
        ("at_10k", "screen_4min", "median_cpu_s"),
        ".3f",
        "<= 0.25",
    ),
    ("decode + fingerprint, × real time per core", ("fingerprint_x_realtime",), ",.0f", ">= 1,000"),
    (
        "fingerprint only (decoded samples), × real time per core",
        ("fingerprint_only_x_realtime",),
        ",.0f",
        ">= 1,000",
    ),
    (
        "start-up of `audiodup screen one.mp3` until decoding, CPU-s (bytecode cached)",
        ("startup_bytecode", "until_decode_cpu_s"),
        ".2f",
        "<= 0.3",
    ),
    (
        "… the same, audiodup compiled from source (PYTHONDONTWRITEBYTECODE=1)",
        ("startup", "until_decode_cpu_s"),
        ".2f",
        "<= 0.3",
    ),
    *[
        (
            f"search p50 / p95 CPU-ms, {name} upload, 113 works",
            ("by_length", name),
            "ms",
            "reported",
        )
        for name in LENGTHS_S
    ],
    *[
        (
            f"search p50 / p95 CPU-ms, {name} upload, 10,000 works",
            ("at_10k", "by_length", name),
            "ms",
            "reported",
        )
        for name in LENGTHS_S
    ],
]


def _targets(cols: list[str], get: dict) -> list[str]:
    """The targets table: each target's figure before and after."""

    def shown(result: dict | None, path: tuple, fmt: str) -> str:
        try:
            value = result
            for key in path:
                value = value[key]
        except (KeyError, TypeError):
            return "not measured"
        if fmt == "ms":
            return f"{1000 * value['search_p50']:.0f} / {1000 * value['search_p95']:.0f}"
        return format(value, fmt)

    lines = ["| target (issue #16) | " + " | ".join(cols) + " | target |"]
    lines.append("|---|" + "---:|" * len(cols) + "---|")
    for what, path, fmt, target in TARGETS:
        cells = [shown(get[c], path, fmt) for c in cols]
        lines.append(f"| {what} | " + " | ".join(cells) + f" | {target} |")
    return [*lines, "", "Every figure:", ""]


def render(results: dict, peers: dict, meta: dict) -> str:
    after = results["after"]
    before = results.get("before")
    cols = ["before", "after"] if before else ["after"]
    get = {"before": before, "after": after}

    def row(
        label: str, fn, fmt: str, peer_fpcalc: str = "", peer_floor: str = "", peers=True
    ) -> str:
        cells = []
        for c in cols:
            try:
                cells.append(format(fn(get[c]), fmt))
            except (KeyError, TypeError):
                cells.append("–")
        if peers:
            cells += [peer_fpcalc, peer_floor]
        return f"| {label} | " + " | ".join(cells) + " |"

    fpcalc = peers.get("fpcalc")
    floor = peers["floor"]
    head = "| figure (CPU time, user + sys) | " + " | ".join(f"audiodup {c}" for c in cols)
    head += " | fpcalc (Chromaprint, no search) | floor: decode + resample + one STFT |"
    lines = [
        "# CPU cost per upload (issue #16)",
        "",
        f"`{meta['command']}` — {meta['date']}, commit {meta['commit']}"
        + (f" (before: {meta['before_commit']})" if before else "")
        + f"; {meta['machine']}. Load average (1 / 5 / 15 min) at the start {meta['load_start']}, "
        f"at the end {meta['load_end']}: the machine is shared, so every figure is CPU time "
        "(`time.process_time` in-process, `getrusage` of child processes), the median of "
        f"{REPEATS} repeats per upload, then the median over uploads unless stated.",
        "",
        "Uploads: MP3 192 kb/s, 44.1 kHz stereo, cut (looped where a track is shorter) from the "
        "benchmark corpus, half catalog works, half negatives: "
        + ", ".join(f"{N_UPLOADS[k]} x {k}" for k in LENGTHS_S)
        + ". Catalog: the benchmark's 113 catalog works, indexed from their source files "
        "(Ogg Vorbis) in the measuring process.",
        "",
        *_targets(cols, get),
        head,
        "|---|" + "---:|" * (len(cols) + 2),
        row(
            "CPU-s per 4-min upload screened in a batch (113 works), decode included",
            lambda r: r["screen_4min"]["median_cpu_s"],
            ".3f",
            f"{fpcalc['4min']:.3f}" if fpcalc else "not installed",
            f"{floor['4min']:.3f}",
        ),
        row(
            "… mean over uploads",
            lambda r: r["screen_4min"]["mean_cpu_s"],
            ".3f",
        ),
        row(
            "… median of the uploads of catalog works (copies: found on the first look)",
            lambda r: r["screen_4min"]["median_cpu_s_catalog"],
            ".3f",
        ),
        row(
            "… median of the negatives (clean: every look taken)",
            lambda r: r["screen_4min"]["median_cpu_s_negative"],
            ".3f",
        ),
        row(
            "… of which decode + fingerprint (Verdict.fingerprint_cpu_s)",
            lambda r: r["screen_4min"]["fingerprint_cpu_s_median"],
            ".3f",
        ),
        row(
            "… of which search (Verdict.search_cpu_s)",
            lambda r: r["screen_4min"]["search_cpu_s_median"],
            ".3f",
        ),
        row(
            "decode + fingerprint, 4-min upload, × real time per core",
            lambda r: r["fingerprint_x_realtime"],
            ",.0f",
            "",
            f"{floor['x_realtime']:,.0f}",
        ),
        row(
            "fingerprint only (from decoded samples), 4-min upload, × real time per core",
            lambda r: r["fingerprint_only_x_realtime"],
            ",.0f",
        ),
        row(
            "decode alone (libsndfile + soxr HQ to 11,025 Hz), 4-min MP3, p50 CPU-s",
            lambda r: r["by_length"]["4min"]["decode_p50"],
            ".3f",
        ),
        row(
            "indexing, seconds of audio per CPU-second (113 works)",
            lambda r: r["indexing"]["audio_s_per_cpu_s"],
            ",.0f",
        ),
    ]
    startups = {
        "startup": "audiodup compiled from source each time: this machine's "
        "PYTHONDONTWRITEBYTECODE=1",
        "startup_bytecode": "bytecode cached, as an installed package has it",
    }
    for key, how in startups.items():
        lines += [
            row(
                f"one-file process `audiodup screen --json` (4-min upload; {how}), CPU-s",
                lambda r, k=key: r[k]["one_file_cpu_s"],
                ".2f",
                f"{fpcalc['default_120s_one_file']:.2f} (default: first 120 s)" if fpcalc else "",
            ),
            row(
                "… start-up until decoding starts, CPU-s",
                lambda r, k=key: r[k]["until_decode_cpu_s"],
                ".2f",
            ),
        ]
    lines += [
        row(
            "loading the 113-work index in a process, CPU-s",
            lambda r: r["index_load_cpu_s"],
            ".3f",
        ),
    ]
    for name in LENGTHS_S:
        lines.append(
            row(
                f"search alone, {name} upload: p50 / p95 CPU-ms (p50 of negatives)",
                lambda r, n=name: "{:.0f} / {:.0f} ({:.0f})".format(
                    1000 * r["by_length"][n]["search_p50"],
                    1000 * r["by_length"][n]["search_p95"],
                    1000 * r["by_length"][n]["search_negatives_p50"],
                ),
                "",
            )
        )
    for name in LENGTHS_S:
        lines.append(
            row(
                f"decode + fingerprint alone, {name} upload, p50 CPU-s",
                lambda r, n=name: r["by_length"][n]["decode_fingerprint_p50"],
                ".3f",
            )
        )
    if "at_10k" in after:
        works = after["at_10k"]["works"]
        lines += [
            "",
            f"At {works:,} works (`{meta['catalog_10k_command']}`: the 113 real works plus "
            "distractors made from their fingerprints, see `benchmarks/catalog_10k.py`), same "
            "uploads:",
            "",
            "| figure (CPU time) | " + " | ".join(f"audiodup {c}" for c in cols) + " |",
            "|---|" + "---:|" * len(cols),
            row(
                f"CPU-s per 4-min upload screened in a batch ({works:,} works), decode included",
                lambda r: r["at_10k"]["screen_4min"]["median_cpu_s"],
                ".3f",
                peers=False,
            ),
            row(
                "… median of the uploads of catalog works / of the negatives",
                lambda r: "{:.3f} / {:.3f}".format(
                    r["at_10k"]["screen_4min"]["median_cpu_s_catalog"],
                    r["at_10k"]["screen_4min"]["median_cpu_s_negative"],
                ),
                "",
                peers=False,
            ),
            row(
                f"loading the {works:,}-work index in a process, CPU-s",
                lambda r: r["at_10k"]["index_load_cpu_s"],
                ".2f",
                peers=False,
            ),
        ]
        for name in LENGTHS_S:
            lines.append(
                row(
                    f"search alone, {name} upload: p50 / p95 CPU-ms",
                    lambda r, n=name: "{:.0f} / {:.0f}".format(
                        1000 * r["at_10k"]["by_length"][n]["search_p50"],
                        1000 * r["at_10k"]["by_length"][n]["search_p95"],
                    ),
                    "",
                    peers=False,
                )
            )
    else:
        lines += ["", "At 10,000 works: not measured in this run (no `--catalog-10k`)."]
    lines += [
        "",
        "Notes. Decoding is the largest part and is not audiodup's to change without changing "
        "every fingerprint (libsndfile's MP3 decoder, then soxr HQ): the figures with and "
        "without it are both given. The floor reads the whole file at once and resamples it in "
        "one call, as a simple program would: it is a reference, not a strict lower bound "
        "(audiodup decodes in blocks). fpcalc reads the whole file here (`-length` past the "
        "end); by default it stops after 120 s. On this shared machine repeated runs differ by "
        "about 10 % (CPU time rises with the load: caches and the second hyper-thread are "
        "shared).",
        "",
        "Raw figures: `benchmarks/cpu_cost.json`.",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- side by side


def measure_screening(uploads: list[dict], catalog_dir: Path, repeats: int) -> list[dict]:
    """Per upload, the least CPU-s of ``repeats`` ``Catalog.screen`` calls (decode included,
    index loaded beforehand) and its verdict, with the audiodup on ``sys.path``."""
    from audiodup import Catalog

    _set_up_as_the_command_line()
    rows = []
    with Catalog.open(catalog_dir, create=False) as catalog:
        catalog.screen(uploads[0]["path"])  # imports, first-use set-up, the indexes
        for upload in uploads:
            runs, verdict = [], None
            for _ in range(repeats):
                cpu0 = time.process_time()
                verdict = catalog.screen(upload["path"]).verdict
                runs.append(time.process_time() - cpu0)
            rows.append({**upload, "cpu_s": min(runs), "verdict": verdict})
    return rows


def side_by_side(
    roots: dict[str, Path],
    uploads: list[dict],
    catalogs: dict[str, Path],
    rounds: int,
    repeats: int,
    commits: dict[str, str],
) -> str:
    """``Catalog.screen`` CPU per upload of each code (``label -> checkout root``), each in its
    own process on its catalog (``label -> catalog``: the same one, or one a code rewrote),
    the codes taking turns ``rounds`` times so that both see the same load: per upload the least
    of every run, then the median over the copies and over the clean uploads.
    """
    best: dict[str, dict[str, float]] = {label: {} for label in roots}
    verdicts: dict[str, set[str]] = {label: set() for label in roots}
    loads = [_load()]
    with tempfile.TemporaryDirectory(prefix="audiodup-side-") as tmp:
        for turn in range(rounds):
            for label, root in roots.items():
                out = Path(tmp) / f"{label}-{turn}.json"
                cmd = [sys.executable, str(Path(__file__).resolve()), "screen-child"]
                cmd += ["--catalog", str(catalogs[label]), "--json", str(out)]
                cmd += ["--repeats", str(repeats), "--uploads", json.dumps(uploads)]
                env = {**os.environ, "PYTHONPATH": str(root)}
                subprocess.run(cmd, env=env, check=True)
                rows = json.loads(out.read_text())
                for row in rows:
                    seen = best[label].get(row["path"], float("inf"))
                    best[label][row["path"]] = min(seen, row["cpu_s"])
                verdicts[label].add("".join((r["verdict"] or "-")[0] for r in rows))
                loads.append(_load())
    lines = [
        "| code | copies, median CPU-s | clean uploads, median CPU-s | verdicts per upload |",
        "|---|---:|---:|---|",
    ]
    for label, root in roots.items():
        by_role = {
            role: statistics.median(
                best[label][u["path"]] for u in uploads if (u["role"] == "catalog") == copies
            )
            for role, copies in (("copies", True), ("clean", False))
        }
        shown = " / ".join(sorted(verdicts[label]))
        lines.append(
            f"| {label} ({commits.get(label) or _commit(root)}) | {by_role['copies']:.3f} "
            f"| {by_role['clean']:.3f} | {shown} |"
        )
    lines.append("")
    lines.append(f"Load averages (1/5/15 min) before and after each run: {'; '.join(loads)}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="measure and write benchmarks/CPU.md (the default)")
    run.add_argument("--before", type=Path, help="root of an older checkout to compare with")
    run.add_argument(
        "--before-commit", help="the commit --before holds (default: asked of git there)"
    )
    run.add_argument("--data", help="benchmark cache (default: $AUDIODUP_BENCH_DATA)")
    run.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "CPU.md")
    run.add_argument(
        "--catalog-10k",
        type=Path,
        help="a large catalog (python -m benchmarks.catalog_10k DIR) to measure screening at",
    )
    both = sub.add_parser(
        "side-by-side",
        help="Catalog.screen CPU per 4-min upload of two checkouts, taking turns (no CPU.md)",
    )
    both.add_argument("catalog", type=Path, help="a catalog both codes open (read only)")
    both.add_argument(
        "--after-catalog", type=Path, help="the catalog AFTER opens (default: CATALOG)"
    )
    both.add_argument("before", type=Path, help="root of the older checkout")
    both.add_argument("--after", type=Path, default=REPO_ROOT, help="(default: this checkout)")
    both.add_argument("--before-commit", help="the commit BEFORE holds (default: asked of git)")
    both.add_argument("--rounds", type=int, default=2, help="turns each code takes")
    both.add_argument("--repeats", type=int, default=2, help="screenings per upload per turn")
    both.add_argument("--data", help="benchmark cache (default: $AUDIODUP_BENCH_DATA)")
    screen_child = sub.add_parser("screen-child", help="(internal) one code's turn")
    screen_child.add_argument("--catalog", type=Path, required=True)
    screen_child.add_argument("--json", type=Path, required=True)
    screen_child.add_argument("--repeats", type=int, required=True)
    screen_child.add_argument("--uploads", required=True)
    child = sub.add_parser("measure", help="(internal) audiodup figures of this PYTHONPATH")
    child.add_argument("--plan", type=Path, required=True)
    child.add_argument("--workdir", type=Path, required=True)
    child.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv if argv is not None else (sys.argv[1:] or ["run"]))

    if args.command == "measure":
        result = measure_audiodup(json.loads(args.plan.read_text()), args.workdir)
        args.json.write_text(json.dumps(result, indent=1))
        return
    if args.command == "screen-child":
        rows = measure_screening(json.loads(args.uploads), args.catalog, args.repeats)
        args.json.write_text(json.dumps(rows))
        return
    if args.command == "side-by-side":
        uploads = prepare(_cache_dir(args.data))["uploads"]["4min"]
        roots = {"before": args.before.resolve(), "after": args.after.resolve()}
        print(
            f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {_cpu_model()}, {os.cpu_count()} cores"
        )
        commits = {"before": args.before_commit or ""}
        catalogs = {"before": args.catalog, "after": args.after_catalog or args.catalog}
        print(side_by_side(roots, uploads, catalogs, args.rounds, args.repeats, commits))
        return

    cache = _cache_dir(args.data)
    load_start = _load()
    plan = prepare(cache)
    results = {}
    with tempfile.TemporaryDirectory(prefix="audiodup-cpu-") as tmp:
        # the cached plan stays as it is; this run's (with the large catalog) is a copy
        plan_path = Path(tmp) / "plan.json"
        if args.catalog_10k:
            plan = {**plan, "catalog_10k": str(args.catalog_10k.resolve())}
        plan_path.write_text(json.dumps(plan))
        roots = {"after": REPO_ROOT}
        if args.before:
            roots = {"before": args.before.resolve(), **roots}
        for label, root in roots.items():
            workdir = Path(tmp) / label
            workdir.mkdir()
            print(f"measuring audiodup {label} ({root}) ...", file=sys.stderr, flush=True)
            results[label] = _measure_in_child(root, plan_path, workdir)
    print("measuring fpcalc and the floor ...", file=sys.stderr, flush=True)
    peers = {"fpcalc": measure_fpcalc(plan), "floor": measure_floor(plan)}
    command = "python -m benchmarks.cpu_cost run" + (
        f" --before {args.before}" if args.before else ""
    )
    if args.before_commit:
        command += f" --before-commit {args.before_commit}"
    if args.catalog_10k:
        command += f" --catalog-10k {args.catalog_10k}"
    meta = {
        "command": command,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(REPO_ROOT),
        "before_commit": args.before_commit or (_commit(args.before) if args.before else None),
        "machine": f"{_cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_start": load_start,
        "load_end": _load(),
        "catalog_10k_command": f"python -m benchmarks.catalog_10k {args.catalog_10k}",
    }
    args.out.write_text(render(results, peers, meta))
    raw = {"meta": meta, "results": results, "peers": peers}
    args.out.with_name("cpu_cost.json").write_text(json.dumps(raw, indent=1))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
