"""Load and faults of ``audiodup serve`` (issue #15), on loopback, bounded in count and time.
Not run in CI.

    python -m benchmarks.service_load [--catalog DIR] [--workers 2] [--per-client 2]
        [--files 6] [--duration 240] [--out benchmarks/SERVICE.md]

1. **Engine baseline**: the same 4-minute uploads screened in this process with
   ``Catalog.screen`` (p50), and as a batch with ``screen_many(workers=2)`` (uploads/min).
2. **Start**: ``audiodup serve --workers N``; seconds until ``/readyz`` answers and every
   worker said it is ready.
3. **Overhead**: ``POST /v1/screen`` of the same files one at a time; p50 minus the engine's.
4. **Load**: ``POST /v1/uploads`` (screen and record) at 1, 4 and 16 concurrent clients, each
   sending ``--per-client`` uploads with an idempotency key: uploads/min, p50/p95, 5xx, lost.
5. **Fault**: 16 clients again, and ``kill -9`` of one worker while they run. A client whose
   connection breaks (or that gets a 5xx) retries with the same idempotency key, at most 5
   times. Then: requests lost, uploads recorded twice, uploads without their screening (a
   half-recorded upload), ``audiodup index verify``.
6. **Restart**: stop the server, start it again: every recorded upload is still listed.

The catalog is a copy of ``--catalog`` (default: the benchmark catalog of real tracks in the
cache when it is there, else the bundled fixtures); the uploads are synthetic music
(``audiodup.synth``), 22,050 Hz mono WAV, distinct from every catalog work.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import soundfile as sf

from audiodup import Catalog
from audiodup.service.auth import KeyFile
from audiodup.service.local import LocalServer, start_local_server
from audiodup.synth import synthesize_work

ROOT = Path(__file__).resolve().parents[1]
BENCH_CATALOG = Path(os.environ.get("AUDIODUP_BENCH_DATA", "~/.cache/audiodup-bench")).expanduser()
SR = 22050
READY_WAIT_S = 300.0


# -- the server ----------------------------------------------------------------------------------
def start_service(db: Path, workers: int, log: Path) -> LocalServer:
    try:
        return start_local_server(db, log, workers=workers, ready_wait_s=READY_WAIT_S)
    except RuntimeError as exc:
        raise SystemExit(str(exc)[-2000:]) from None


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_to_ready(db: Path, workers: int, log: Path, repeats: int) -> dict:
    """``audiodup serve`` started ``repeats`` times: wall seconds until every worker is ready,
    and the CPU seconds the supervisor and each worker had used by then (read from /proc)."""
    runs = []
    for _ in range(repeats):
        service = start_service(db, workers, log)
        try:
            pids = service.worker_pids()
            runs.append(
                {
                    "ready_s": service.ready_s,
                    "supervisor_cpu_s": _cpu_s(service.process.pid),
                    "worker_cpu_s": [_cpu_s(pid) for pid in pids],
                }
            )
        finally:
            service.stop()
    return {
        "ready_s": [r["ready_s"] for r in runs],
        "supervisor_cpu_s": statistics.median(r["supervisor_cpu_s"] for r in runs),
        "worker_cpu_s": statistics.median(c for r in runs for c in r["worker_cpu_s"]),
    }


_WORKER_STAGES = """
import sys, time
c0 = time.process_time()
import audiodup.service.app as app_module
c1 = time.process_time()
from pathlib import Path
from audiodup.service.config import ServiceConfig
app = app_module.create_app(ServiceConfig(db=Path(sys.argv[1])))
c2 = time.process_time()
from audiodup.service.engine import Engine
engine = Engine(app.state.config)
engine.open()
c3 = time.process_time()
print(c0, c1 - c0, c2 - c1, c3 - c2)
"""


def worker_stages(db: Path, repeats: int) -> dict:
    """A worker's start, stage by stage, in a fresh process (CPU seconds, medians): the
    interpreter, importing the application, building it, opening the catalog with its
    indexes."""
    runs = []
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, "-c", _WORKER_STAGES, str(db)], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"a worker's start failed:\n{done.stderr[-2000:]}")
        runs.append([float(x) for x in done.stdout.split()])
    names = ("interpreter", "import_app", "create_app", "open_catalog_and_indexes")
    return {name: statistics.median(r[i] for r in runs) for i, name in enumerate(names)}


# -- clients -------------------------------------------------------------------------------------
@dataclass
class Outcome:
    latency_s: float | None  # None: lost (no success after every retry)
    status: int | None
    attempts: int
    server_errors: int  # 5xx answers seen
    broken: int  # connections that broke
    upload_id: int | None = None
    idempotency_key: str = ""


def send_upload(
    url: str, key: str, data: bytes, idem: str, uploader: str, retries: int = 5
) -> Outcome:
    started = time.perf_counter()
    server_errors = broken = 0
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "audio/wav",
        "Idempotency-Key": idem,
    }
    with httpx.Client(base_url=url, timeout=900) as http:
        for attempt in range(1, retries + 1):
            try:
                answer = http.post(
                    "/v1/uploads",
                    params={"uploader": uploader, "title": idem},
                    content=data,
                    headers=headers,
                )
            except httpx.HTTPError:
                broken += 1
                time.sleep(0.5 * attempt)
                continue
            if answer.status_code >= 500:
                server_errors += 1
                time.sleep(0.5 * attempt)
                continue
            upload_id = answer.json()["upload"]["upload_id"] if answer.status_code < 300 else None
            return Outcome(
                time.perf_counter() - started,
                answer.status_code,
                attempt,
                server_errors,
                broken,
                upload_id,
                idem,
            )
    return Outcome(None, None, retries, server_errors, broken, None, idem)


def run_level(
    service: LocalServer,
    key: str,
    files: list[bytes],
    clients: int,
    per_client: int,
    tag: str,
    during=None,
) -> tuple[list[Outcome], float]:
    """``clients`` threads, each sending ``per_client`` uploads in turn; ``during`` runs in
    another thread meanwhile (the fault)."""
    jobs = [(c, i) for c in range(clients) for i in range(per_client)]

    def client(c: int) -> list[Outcome]:
        out = []
        for i in range(per_client):
            n = c * per_client + i
            out.append(
                send_upload(service.url, key, files[n % len(files)], f"{tag}-{n}", f"{tag}-c{c}")
            )
        return out

    started = time.perf_counter()
    fault = threading.Thread(target=during, daemon=True) if during else None
    if fault:
        fault.start()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        outcomes = [o for batch in pool.map(client, range(clients)) for o in batch]
    if fault:
        fault.join()
    assert len(outcomes) == len(jobs)
    return outcomes, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def summarise(outcomes: list[Outcome], wall_s: float) -> dict:
    done = [o.latency_s for o in outcomes if o.latency_s is not None and o.status < 300]
    return {
        "requests": len(outcomes),
        "ok": len(done),
        "uploads_per_min": 60.0 * len(done) / wall_s,
        "p50_s": percentile(done, 0.5),
        "p95_s": percentile(done, 0.95),
        "server_errors": sum(o.server_errors for o in outcomes),
        "broken": sum(o.broken for o in outcomes),
        "retried": sum(o.attempts > 1 for o in outcomes),
        "lost": sum(o.latency_s is None for o in outcomes),
        "client_errors": sum(o.status is not None and o.status >= 400 for o in outcomes),
        "wall_s": wall_s,
    }


# -- the run -------------------------------------------------------------------------------------
def make_uploads(folder: Path, count: int, duration_s: float) -> list[Path]:
    paths = []
    for i in range(count):
        path = folder / f"upload-{i:02d}.wav"
        sf.write(path, synthesize_work(90_000 + i, duration_s, SR), SR, subtype="PCM_16")
        paths.append(path)
    return paths


def engine_baseline(db: Path, paths: list[Path]) -> dict:
    with Catalog.open(db, create=False) as catalog:
        catalog.indexes()
        catalog.screen(paths[0])  # warm
        times, cpu = [], []
        for path in paths:
            start, cpu0 = time.perf_counter(), time.process_time()
            catalog.screen(path)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - cpu0)
        batch = paths * 2  # twice over: the worker processes' start is spread thinner
        start = time.perf_counter()
        catalog.screen_many(batch, workers=2)
        batch_s = time.perf_counter() - start
    return {
        "p50_s": statistics.median(times),
        "cpu_per_upload_s": statistics.fmean(cpu),
        "batch_per_min": 60.0 * len(batch) / batch_s,
    }


_ENGINE_PROCESS = """
import sys, time
from pathlib import Path
from audiodup import Catalog
paths = [Path(p) for p in sys.argv[2:]]
with Catalog.open(Path(sys.argv[1]), create=False) as catalog:
    catalog.screen(paths[0])  # warm
    print("warm", flush=True)
    sys.stdin.readline()  # both processes start together
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for path in paths:
        catalog.screen(path)
    print(time.process_time() - cpu0, time.perf_counter() - wall0, flush=True)
"""


def engine_on_cores(db: Path, paths: list[Path], processes: int) -> dict:
    """The engine with one process per core: ``processes`` processes, each with its catalog
    open and warm, screen every file at the same moment (no start-up in the figures): CPU
    seconds per upload, and uploads per minute (each process's rate, summed)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _ENGINE_PROCESS, str(db), *map(str, paths)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    for proc in procs:
        if proc.stdout.readline().strip() != "warm":
            raise SystemExit("an engine process failed to start")
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    done = []
    for proc in procs:
        out, _ = proc.communicate()
        cpu_s, wall_s = (float(x) for x in out.split())
        done.append((cpu_s, wall_s))
    return {
        "cpu_per_upload_s": sum(c for c, _ in done) / (processes * len(paths)),
        "per_min": sum(60.0 * len(paths) / w for _, w in done),
    }


def _thread_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of a running process, by thread id."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            found[int(task.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


def _workers_threads_cpu_s(pids: list[int]) -> dict[tuple[int, int], float]:
    return {(pid, tid): cpu for pid in pids for tid, cpu in _thread_cpu_s(pid).items()}


def served_requests(
    service: LocalServer, route: str, since_line: int, expected: int
) -> dict[int, int]:
    """Requests to ``route`` each worker answered, in the log lines after ``since_line``
    (waiting up to 30 s for ``expected`` of them: a request's line is written after its
    answer is sent)."""
    deadline = time.monotonic() + 30.0
    while True:
        counts: dict[int, int] = {}
        for entry in service.log_lines()[since_line:]:
            if entry.get("message") == "request" and entry.get("route") == route:
                counts[entry["pid"]] = counts.get(entry["pid"], 0) + 1
        if sum(counts.values()) >= expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def screen_overhead(service: LocalServer, key: str, db_copy: Path, paths: list[Path]) -> dict:
    """Each file screened by the engine in this process (``Catalog.screen`` on a copy of the
    catalog) and by ``POST /v1/screen``, alternately, so a busy machine slows both alike:
    p50 of each and of the paired differences."""
    engine_s, served_s = [], []
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "audio/wav"}
    with (
        Catalog.open(db_copy, create=False) as catalog,
        httpx.Client(base_url=service.url, timeout=900) as http,
    ):
        catalog.screen(paths[0])  # warm both
        for _ in range(2):  # both workers
            http.post("/v1/screen", content=paths[0].read_bytes(), headers=headers)
        pids = service.worker_pids()
        engine_cpu, served_cpu = [], []
        for _ in range(2):
            for path in paths:
                data = path.read_bytes()
                start, cpu0 = time.perf_counter(), time.process_time()
                catalog.screen(path)
                engine_s.append(time.perf_counter() - start)
                engine_cpu.append(time.process_time() - cpu0)
                # one request at a time: the CPU both workers used is this request's
                start, cpu0 = time.perf_counter(), sum(_cpu_s(pid) for pid in pids)
                http.post("/v1/screen", content=data, headers=headers).raise_for_status()
                served_s.append(time.perf_counter() - start)
                served_cpu.append(sum(_cpu_s(pid) for pid in pids) - cpu0)
    differences = [b - a for a, b in zip(engine_s, served_s, strict=True)]
    return {
        "engine_p50_s": statistics.median(engine_s),
        "served_p50_s": statistics.median(served_s),
        "overhead_p50_s": statistics.median(differences),
        "engine_cpu_p50_s": statistics.median(engine_cpu),
        "served_cpu_p50_s": statistics.median(served_cpu),
        "overhead_cpu_p50_s": statistics.median(
            b - a for a, b in zip(engine_cpu, served_cpu, strict=True)
        ),
        "pairs": len(engine_s),
    }


def screen_throughput(service: LocalServer, key: str, files: list[bytes], clients: int) -> dict:
    """``POST /v1/screen`` (screening only, as the engine's batch) of every file twice by
    ``clients`` clients at once: uploads per minute, the workers' CPU seconds per upload
    (everything a worker does for a request: receiving, auth, decoding, screening, JSON),
    the part of it outside the engine thread (the event loop and its helper threads), and
    how many requests each worker answered."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "audio/wav"}

    def one(data: bytes) -> None:
        with httpx.Client(base_url=service.url, timeout=900) as http:
            http.post("/v1/screen", content=data, headers=headers).raise_for_status()

    pids = service.worker_pids()
    lines = len(service.log_lines())
    threads0 = _workers_threads_cpu_s(pids)
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, files * 2))
    wall_s = time.perf_counter() - started
    n = 2 * len(files)
    per_worker = sorted(served_requests(service, "/v1/screen", lines, n).values())
    used = {k: cpu - threads0.get(k, 0.0) for k, cpu in _workers_threads_cpu_s(pids).items()}
    # the engine thread of each worker is its busiest; every other thread is service overhead
    engine_s = sum(max(c for (p, _), c in used.items() if p == pid) for pid in pids)
    return {
        "clients": clients,
        "per_min": 60.0 * n / wall_s,
        "cpu_per_upload_s": sum(used.values()) / n,
        "outside_engine_per_upload_s": (sum(used.values()) - engine_s) / n,
        "per_worker": per_worker,
    }


def ledger(url: str, key: str, prefix: str) -> list[dict]:
    """Every upload whose uploader starts with ``prefix``."""
    found, after = [], 0
    with httpx.Client(base_url=url, timeout=300) as http:
        while True:
            page = http.get(
                "/v1/uploads",
                params={"after": after, "limit": 1000},
                headers={"Authorization": f"Bearer {key}"},
            ).json()
            found += [u for u in page["uploads"] if (u["uploader"] or "").startswith(prefix)]
            if not page["next"]:
                return found
            after = page["uploads"][-1]["upload_id"]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"


def commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return done.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--per-client", type=int, default=2)
    parser.add_argument("--levels", default="1,4,16")
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--duration", type=float, default=240.0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--ready-only",
        type=int,
        metavar="N",
        help="only start the server N times: time to ready, and a worker's start by stage",
    )
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    source = args.catalog
    if source is None:
        cached = BENCH_CATALOG / "catalog-full"
        source = cached if (cached / "catalog.sqlite").exists() else None
    args.load_start = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    work = Path(tempfile.mkdtemp(prefix="audiodup-service-load-"))
    db = work / "db"
    if source is not None:
        shutil.copytree(source, db, ignore=shutil.ignore_patterns("catalog.lock"))
        label = f"{source.name}"
    else:
        with Catalog.open(db) as catalog:
            catalog.add_paths([ROOT / "fixtures" / "audio" / "catalog"])
        label = "bundled fixtures"
    with Catalog.open(db, create=False) as catalog:
        stats = catalog.stats()
    print(f"catalog: {label}, {stats.works} works, {stats.hours:.1f} h; work folder {work}")
    key = KeyFile(db / "service" / "keys.json").create("bench", ["admin"])
    if args.ready_only:
        text = ready_report(args, label, stats, db, work / "server.log")
        print(text)
        if args.out:
            args.out.write_text(text)
        shutil.rmtree(work, ignore_errors=True)
        return
    paths = make_uploads(work, args.files, args.duration)
    print(f"{len(paths)} uploads of {args.duration:g} s written")
    engine_db = work / "engine-db"  # the engine's own copy: the service's catalog changes
    shutil.copytree(db, engine_db)
    engine = engine_baseline(engine_db, paths)
    engine["on_cores"] = engine_on_cores(engine_db, paths, args.workers)
    print(f"engine: p50 {engine['p50_s']:.2f} s, batch {engine['batch_per_min']:.1f}/min")
    print(f"engine on {args.workers} cores: {engine['on_cores']}")
    log = work / "server.log"
    service = start_service(db, args.workers, log)
    print(f"ready in {service.ready_s:.2f} s")
    first_ready_s = service.ready_s
    rows, fault, restart = [], {}, {}
    try:
        served = screen_overhead(service, key, engine_db, paths)
        print(f"overhead {served}")
        data = [p.read_bytes() for p in paths]
        throughput = [screen_throughput(service, key, data, c) for c in (1, 4)]
        print(f"service /v1/screen: {throughput}")
        for clients in levels:
            lines = len(service.log_lines())
            outcomes, wall = run_level(
                service, key, data, clients, args.per_client, f"load{clients}"
            )
            rows.append((clients, summarise(outcomes, wall)))
            rows[-1][1]["per_worker"] = sorted(
                served_requests(service, "/v1/uploads", lines, len(outcomes)).values()
            )
            print(clients, rows[-1][1])
        # the fault: kill -9 of one worker while 16 clients send
        victims: list[int] = []

        # a third into the run (as long as the same load took before): requests are in flight
        kill_after_s = max(2.0, rows[-1][1]["wall_s"] / 3)

        def kill_one() -> None:
            time.sleep(kill_after_s)
            pids = service.worker_pids()
            if pids:
                victims.append(pids[0])
                os.kill(pids[0], signal.SIGKILL)

        clients = max(levels)
        outcomes, wall = run_level(
            service, key, data, clients, args.per_client, "fault", during=kill_one
        )
        fault = summarise(outcomes, wall)
        deadline = time.monotonic() + 120  # the supervisor replaces the killed worker
        while time.monotonic() < deadline:
            serving = service.worker_pids()
            if len(serving) >= args.workers and not set(victims) & set(serving):
                break
            time.sleep(0.2)
        recorded = ledger(service.url, key, "fault-")
        by_key: dict[str, int] = {}  # the title is the request's idempotency key
        for upload in recorded:
            by_key[upload["title"]] = by_key.get(upload["title"], 0) + 1
        returned = {o.upload_id for o in outcomes if o.upload_id is not None}
        fault.update(
            killed=victims,
            recorded=len(recorded),
            half_recorded=sum(u["verdict"] is None for u in recorded),
            returned_not_recorded=len(returned - {u["upload_id"] for u in recorded}),
            recorded_twice=sum(n - 1 for n in by_key.values()),
            workers_after=len(service.worker_pids()),
        )
        print("fault", fault)
        before = {u["upload_id"] for u in ledger(service.url, key, "")}
    finally:
        service.stop()
    verify = subprocess.run(
        [sys.executable, "-m", "audiodup", "index", "verify", "--db", str(db)],
        capture_output=True,
        text=True,
    )
    service = start_service(db, args.workers, log)
    try:
        after = {u["upload_id"] for u in ledger(service.url, key, "")}
        restart = {
            "ready_s": service.ready_s,
            "kept": len(before & after),
            "before": len(before),
            "verify": (verify.stdout + verify.stderr).strip().splitlines()[-1],
        }
        print("restart", restart)
    finally:
        service.stop()
    engine["throughput"] = throughput
    engine["ready_s"] = first_ready_s
    text = report(args, label, stats, engine, served, rows, fault, restart, service)
    print(text)
    if args.out:
        args.out.write_text(text)
    shutil.rmtree(work, ignore_errors=True)


def ready_report(args, label, stats, db: Path, log: Path) -> str:
    load_start = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    ready = time_to_ready(db, args.workers, log, args.ready_only)
    stages = worker_stages(db, args.ready_only)
    load_end = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    shown = ", ".join(f"{s:.2f}" for s in ready["ready_s"])
    return "\n".join(
        [
            f"### Time to ready at {stats.works:,} works",
            "",
            f"`python -m benchmarks.service_load --catalog {args.catalog} --workers "
            f"{args.workers} --ready-only {args.ready_only}` ({now}, commit {commit()}, "
            f"{machine()}; load average 1 / 5 / 15 min {load_start} at the start, {load_end} "
            f"at the end). Catalog: {label} ({stats.works:,} works, {stats.hours:.1f} h).",
            "",
            f"- From `audiodup serve` to every worker ready: {shown} s "
            f"(median {statistics.median(ready['ready_s']):.2f} s).",
            f"- CPU used by then: the supervisor (CLI, configuration, catalog check, uvicorn) "
            f"{ready['supervisor_cpu_s']:.2f} s, each worker {ready['worker_cpu_s']:.2f} s.",
            "- A worker's start by stage (a fresh process, CPU seconds, medians): "
            + ", ".join(f"{name.replace('_', ' ')} {cpu:.2f}" for name, cpu in stages.items())
            + ".",
            "",
        ]
    )


def report(args, label, stats, engine, served, rows, fault, restart, service) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    on_cores = engine["on_cores"]
    lines = [
        "## Service load and faults (issue #15)",
        "",
        f"`python -m benchmarks.service_load --workers {args.workers} --per-client "
        f"{args.per_client} --files {args.files} --duration {args.duration:g}` "
        f"({now}, commit {commit()}, {machine()}; load average 1 / 5 / 15 min "
        f"{args.load_start} at the start, "
        f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())} at the end). "
        f"Catalog: {label} ({stats.works} works, "
        f"{stats.hours:.1f} h); uploads: {args.duration / 60:g}-minute synthetic WAV "
        f"(22,050 Hz mono), `POST /v1/uploads` (screen and record) with an idempotency key; "
        f"{args.workers} uvicorn workers on loopback.",
        "",
        "| concurrent clients | uploads | ok | uploads/min | p50 s | p95 s | 5xx | broken "
        "connections | lost | requests per worker |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for clients, row in rows:
        lines.append(
            f"| {clients} | {row['requests']} | {row['ok']} | {row['uploads_per_min']:.1f} | "
            f"{row['p50_s']:.2f} | {row['p95_s']:.2f} | {row['server_errors']} | "
            f"{row['broken']} | {row['lost']} | {row.get('per_worker')} |"
        )
    lines += [
        "",
        f"- Engine alone (`Catalog.screen` in one process, same files): p50 "
        f"{engine['p50_s']:.3f} s, {engine['cpu_per_upload_s']:.3f} CPU-s per upload; batch "
        f"`screen_many(workers=2)` of every file twice (worker start-up included): "
        f"{engine['batch_per_min']:.1f} uploads/min.",
        f"- Engine on {args.workers} cores ({args.workers} processes, each with the catalog "
        f"open and warm, screening every file at the same moment): "
        f"{on_cores['per_min']:.1f} uploads/min, {on_cores['cpu_per_upload_s']:.3f} CPU-s "
        "per upload. This is the engine's batch throughput without its start-up, the "
        "reference of the target.",
        f"- Service overhead: the same files screened alternately by the engine in-process "
        f"and by `POST /v1/screen`, one at a time ({served['pairs']} pairs): p50 "
        f"{served['engine_p50_s']:.3f} s against {served['served_p50_s']:.3f} s; p50 of the "
        f"paired differences **{1000 * served['overhead_p50_s']:.0f} ms** wall (the upload "
        "over loopback, a temporary file, auth, the engine thread, JSON). In CPU time: p50 "
        f"{served['engine_cpu_p50_s']:.3f} s in-process, {served['served_cpu_p50_s']:.3f} s "
        f"in the worker (/proc, 10 ms ticks); p50 of the paired differences "
        f"**{1000 * served['overhead_cpu_p50_s']:.0f} ms**.",
    ]
    for row in engine["throughput"]:
        lines.append(
            f"- `POST /v1/screen` at {row['clients']} client(s), {args.workers} workers "
            f"({2 * args.files} uploads): {row['per_min']:.1f} uploads/min "
            f"(**{100 * row['per_min'] / on_cores['per_min']:.0f} %** of the engine on "
            f"{args.workers} cores, wall); {row['cpu_per_upload_s']:.3f} CPU-s per upload in "
            f"the workers, of which {1000 * row['outside_engine_per_upload_s']:.0f} ms outside "
            "the engine thread (event loop: receiving, auth, JSON): "
            f"**{100 * on_cores['cpu_per_upload_s'] / row['cpu_per_upload_s']:.0f} %** of the "
            f"engine's throughput per CPU-second; requests per worker {row['per_worker']}."
        )
    lines += [
        f"- Time from `audiodup serve` to ready (every worker): {engine['ready_s']:.2f} s at "
        f"{stats.works} works.",
        "",
        f"**Fault** ({max(r[0] for r in rows)} clients, `kill -9` of worker "
        f"{', '.join(map(str, fault.get('killed', []))) or '(none)'} mid-run; clients retry a "
        f"broken connection or a 5xx with the same idempotency key, at most 5 times): "
        f"{fault.get('ok')} of {fault.get('requests')} uploads recorded, "
        f"{fault.get('broken')} broken connections, {fault.get('server_errors')} 5xx answers, "
        f"{fault.get('retried')} requests retried, {fault.get('lost')} lost; the ledger holds "
        f"{fault.get('recorded')} uploads for them, {fault.get('recorded_twice')} recorded "
        f"twice, {fault.get('half_recorded')} without their screening (half-recorded), "
        f"{fault.get('returned_not_recorded')} answered but missing; "
        f"{fault.get('workers_after')} workers serving afterwards.",
        "",
        f"**Restart**: ready again in {restart.get('ready_s', float('nan')):.2f} s; "
        f"{restart.get('kept')} of {restart.get('before')} recorded uploads listed after it; "
        f"`index verify`: {restart.get('verify')}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
