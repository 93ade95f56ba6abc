"""On-disk layouts of the hash index (and the chroma index) at 10^5-work scale (issue #14).

    python -m benchmarks.index_layout [--works 100000] [--shards 8] [--workdir DIR]
        [--layouts faiss-ram,faiss-mmap-flag,sorted-mmap,faiss-ondisk,lmdb] [--chroma]

Builds a synthetic hash catalog with the real catalog's statistics: keys drawn from its key
distribution (bucket sizes of ``calibration-catalog`` in the benchmark cache), entries per work
from its works' hashes per second times a real length (uniform 180-252 s: 6,000 h per 10^5
works), entry ids packing the work, a random anchor frame, bin and span. The queries are real
4-minute recordings of the benchmark sources, fingerprinted at query density; a look-up asks
for the keys screening asks for (bucket size > 0 and within the stop-word cap of
``screening.hash_votes``).

Each layout's shards are written to ``--workdir``, then measured in a fresh process:
- RSS (VmRSS, RssAnon, RssFile of /proc/self/status) after importing, after opening every shard,
  after the cold look-ups and after the warm ones;
- look-up latency of one upload's keys over every shard: cold (the shard files dropped from the
  page cache with posix_fadvise before each upload, the process's own maps dropped too) and
  warm (the same uploads again), p50 and p95;
- build time (entries in insertion order to files on disk) and disk size.

``--chroma`` also builds the recipe's IVF/SQ8 chroma shards for the same works (segment vectors
resampled from the real catalog's) and measures RSS and search time read into RAM (as today)
and with FAISS's ``IO_FLAG_MMAP``. Writes ``benchmarks/INDEX_LAYOUT.md`` unless ``--no-report``.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from audiodup.hashes import KEY_BITS, MAX_SPAN, keys_to_codes
from audiodup.index import (
    HashShard,
    load_indexes,
    merge_sorted_hash_shards,
    read_hash_shard,
    sorted_hash_shard,
    write_hash_shard,
    write_sorted_hash_shard,
)
from audiodup.settings import DEFAULT_SETTINGS

BENCH = Path(os.environ.get("AUDIODUP_BENCH_DATA", Path.home() / ".cache" / "audiodup-bench"))
REPORT = Path(__file__).resolve().parent / "INDEX_LAYOUT.md"
LAYOUTS = ("faiss-ram", "faiss-mmap-flag", "sorted-mmap", "faiss-ondisk", "lmdb")
N_KEYS = 1 << KEY_BITS
_WORK_SHIFT = 38  # hashes.pack_entry_ids: frame 18 | quarter bin 10 | span 10

app = typer.Typer(add_completion=False)


# -- the model: real statistics ------------------------------------------------------------------
def real_statistics(catalog_dir: Path) -> dict:
    """Key distribution, hashes per second of each work and segments per second, read from a
    copy of the real catalog (the cached one is never opened for writing)."""
    from audiodup.store import CatalogStore

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "catalog"
        shutil.copytree(catalog_dir, copy)
        store = CatalogStore(copy, DEFAULT_SETTINGS, create=False)
        indexes = store.load_indexes()
        rows = store.db.execute(
            "SELECT duration_s, n_hashes, n_segments FROM works WHERE removed = 0"
        ).fetchall()
        vectors = np.concatenate(
            [
                _reference_vectors(store, w)
                for (w,) in store.db.execute("SELECT work_id FROM works WHERE removed = 0")
            ]
        )
        store.db.close()
    duration, n_hashes, n_segments = (
        np.array(c, dtype=np.float64) for c in zip(*rows, strict=True)
    )
    return {
        "key_sizes": indexes.bucket_sizes.astype(np.int64),
        "hashes_per_s": n_hashes / duration,
        "segments_per_s": float(n_segments.sum() / duration.sum()),
        "n_works": len(rows),
        "hours": float(duration.sum() / 3600),
        "vectors": vectors,
    }


def _reference_vectors(store, work_id: int) -> np.ndarray:
    from audiodup.index import reference_segments

    return reference_segments(store.fingerprint(work_id), DEFAULT_SETTINGS)


def query_hashes(n_queries: int, min_s: float = 200.0, max_s: float = 280.0) -> list[dict]:
    """Query-density hashes (and chroma query vectors) of real recordings of about 4 minutes."""
    import soundfile as sf

    from audiodup.audio import load_audio
    from audiodup.fingerprint import fingerprint_audio, fingerprint_hashes
    from audiodup.match import chroma_candidates

    class Capture:  # stands in for the indexes: keeps the vectors chroma retrieval asks for
        has_chroma = True
        vectors = None

        def search_chroma(self, vectors, k):
            Capture.vectors = vectors

    sources = sorted((BENCH / "sources").glob("*.flac"))
    picked = [p for p in sources if min_s <= sf.info(str(p)).duration <= max_s][:n_queries]
    out = []
    for path in picked:
        fp = fingerprint_audio(load_audio(path, DEFAULT_SETTINGS), DEFAULT_SETTINGS, query=True)
        hashes = fingerprint_hashes(fp, DEFAULT_SETTINGS, query=True)
        chroma_candidates(fp, Capture(), DEFAULT_SETTINGS)
        out.append(
            {
                "keys": hashes.keys.astype(np.int64),
                "anchor_frame": hashes.anchor_frame,
                "anchor_bin": hashes.anchor_bin,
                "span_frames": hashes.span_frames,
                "chroma": np.asarray(Capture.vectors, dtype=np.float32),
                "duration_s": fp.duration_s,
            }
        )
    return out


def synthetic_shard(
    rng: np.random.Generator, stats: dict, first_work: int, n_works: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(keys, ids, hashes per work)`` of ``n_works`` works, in insertion order."""
    cdf = np.cumsum(stats["key_sizes"] / stats["key_sizes"].sum())
    duration = rng.uniform(180.0, 252.0, n_works)
    per_work = np.round(rng.choice(stats["hashes_per_s"], n_works) * duration).astype(np.int64)
    total = int(per_work.sum())
    keys = np.minimum(np.searchsorted(cdf, rng.random(total)), N_KEYS - 1).astype(np.int64)
    work = np.repeat(np.arange(first_work, first_work + n_works, dtype=np.int64), per_work)
    frames = (np.repeat(duration, per_work) * rng.random(total) * 43).astype(np.int64)
    ids = (
        (work << _WORK_SHIFT)
        | (frames << 20)
        | (rng.integers(0, 1 << 10, total) << 10)
        | rng.integers(1, MAX_SPAN, total)
    )
    return keys, ids, per_work


# -- building each layout ------------------------------------------------------------------------
def write_file(path: Path, writer) -> None:
    with open(path, "wb") as handle:
        writer(handle.write)
        handle.flush()
        os.fsync(handle.fileno())


def build_layout(layout: str, folder: Path, keys: np.ndarray, ids: np.ndarray, i: int) -> float:
    """Write shard ``i`` of ``layout`` from entries in insertion order; seconds taken."""
    import faiss

    start = time.perf_counter()
    if layout in ("faiss-ram", "faiss-mmap-flag"):
        index = faiss.IndexBinaryHash(32, 24)
        index.add_with_ids(keys_to_codes(keys), ids)
        sizes = np.bincount(keys, minlength=N_KEYS)
        write_file(folder / f"h-{i:012x}.faiss", write_hash_shard(index, sizes))
    elif layout == "sorted-mmap":
        write_file(
            folder / f"h-{i:012x}.sorted", write_sorted_hash_shard(sorted_hash_shard(keys, ids))
        )
    elif layout == "faiss-ondisk":
        # one inverted list per key, in FAISS's on-disk lists (the documented way: fill lists in
        # RAM, merge them into an OnDiskInvertedLists, write the index around them)
        shard = sorted_hash_shard(keys, ids)
        codes = keys_to_codes(np.repeat(np.arange(N_KEYS, dtype=np.uint32), shard.bucket_sizes))
        in_ram = faiss.ArrayInvertedLists(N_KEYS, 4)
        offsets = shard.offsets
        for key in np.nonzero(shard.bucket_sizes)[0]:
            a, b = int(offsets[key]), int(offsets[key + 1])
            in_ram.add_entries(
                int(key), b - a, faiss.swig_ptr(shard.ids[a:b]), faiss.swig_ptr(codes[a:b])
            )
        on_disk = faiss.OnDiskInvertedLists(N_KEYS, 4, str(folder / f"h-{i:012x}.ivfdata"))
        lists = faiss.InvertedListsPtrVector()
        lists.push_back(in_ram)
        on_disk.merge_from_multiple(lists.data(), lists.size(), False)
        del in_ram
        index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(32), 32, N_KEYS)
        index.is_trained = True
        index.replace_invlists(on_disk, False)
        index.ntotal = len(ids)
        faiss.write_index_binary(index, str(folder / f"h-{i:012x}.ivf"))
        _KEEP_ALIVE.append(on_disk)  # the index does not own the lists
    elif layout == "lmdb":
        import lmdb

        shard = sorted_hash_shard(keys, ids)
        env = lmdb.open(
            str(folder / f"h-{i:012x}.lmdb"),
            subdir=False,
            map_size=int(len(ids) * 8 * 1.5) + (256 << 20),
            sync=True,
            lock=True,
        )
        offsets = shard.offsets
        items = (
            (int(k).to_bytes(4, "big"), shard.ids[offsets[k] : offsets[k + 1]].tobytes())
            for k in np.nonzero(shard.bucket_sizes)[0]
        )
        with env.begin(write=True) as txn:
            txn.cursor().putmulti(items, append=True)
        env.sync(True)
        env.close()
    else:
        raise ValueError(layout)
    return time.perf_counter() - start


_KEEP_ALIVE: list = []


# -- opening and looking up (in the measuring process) -------------------------------------------
class Opened:
    """One layout's shards opened for look-ups: ``lookup(keys) -> (rows, ids)`` over every shard
    in shard order, key by key (the order ``LoadedIndexes.lookup_hashes`` returns)."""

    def __init__(self, layout: str, folder: Path, n_works: int):
        import faiss

        live = np.ones(n_works + 1, dtype=bool)
        self.layout, self.folder, self.files = layout, folder, []
        self.shards = []
        if layout in ("faiss-ram", "sorted-mmap"):
            self.files = sorted(folder.glob("h-*.faiss" if layout == "faiss-ram" else "h-*.sorted"))
            self.shards = [read_hash_shard(p) for p in self.files]
            self.indexes = load_indexes(self.shards, [], live, 1)
        elif layout == "faiss-mmap-flag":
            self.files = sorted(folder.glob("h-*.faiss"))
            self.shards = [
                faiss.read_index_binary(str(p), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
                for p in self.files
            ]
            self.indexes = load_indexes([HashShard(s, None) for s in self.shards], [], live, 1)
        elif layout == "faiss-ondisk":
            self.files = sorted(folder.glob("h-*.ivfdata"))
            self.shards = [
                # the lists are mmapped by OnDiskInvertedLists itself; adding IO_FLAG_MMAP to a
                # binary IVF read crashed FAISS 1.15.1 at the first list read (segfault)
                faiss.read_index_binary(str(p.with_suffix(".ivf")), faiss.IO_FLAG_READ_ONLY)
                for p in self.files
            ]
            self.lists = [faiss.downcast_InvertedLists(s.invlists) for s in self.shards]
        elif layout == "lmdb":
            import lmdb

            self.files = sorted(folder.glob("h-*.lmdb"))
            self.envs = [
                lmdb.open(str(p), subdir=False, readonly=True, lock=False, readahead=False)
                for p in self.files
            ]

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.layout in ("faiss-ram", "sorted-mmap", "faiss-mmap-flag"):
            hits = self.indexes.lookup_hashes(keys)
            return hits.query_rows, hits.entry_ids
        rows, ids = [], []
        if self.layout == "faiss-ondisk":
            import faiss

            for lists in self.lists:
                for row, key in enumerate(keys.tolist()):
                    n = lists.list_size(key)
                    if n:
                        found = faiss.rev_swig_ptr(lists.get_ids(key), n).copy()
                        rows.append(np.full(n, row))
                        ids.append(found)
        else:
            for env in self.envs:
                with env.begin(buffers=True) as txn:
                    for row, key in enumerate(keys.tolist()):
                        value = txn.get(key.to_bytes(4, "big"))
                        if value is not None:
                            found = np.frombuffer(value, dtype="<i8").copy()
                            rows.append(np.full(len(found), row))
                            ids.append(found)
        if not ids:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(rows), np.concatenate(ids)

    def close(self) -> None:
        for env in getattr(self, "envs", []):
            env.close()
        self.shards, self.indexes, self.lists, self.envs = [], None, [], []
        gc.collect()


def drop_from_page_cache(files: list[Path]) -> None:
    """Evict the files' pages from the page cache (only pages no process maps)."""
    for path in files:
        for part in [path, path.with_suffix(".ivf")] if path.suffix == ".ivfdata" else [path]:
            fd = os.open(part, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def rss() -> dict:
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            found[name] = int(value.split()[0]) / 1024  # MiB
    return found


def usable_keys(keys: np.ndarray, sizes: np.ndarray, n_entries: int) -> np.ndarray:
    """The keys screening looks up (``screening.hash_votes`` -> ``match.lookup_hashes``)."""
    s = DEFAULT_SETTINGS
    cap = int(max(s.min_bucket_cap, s.bucket_cap_per_mean * n_entries / N_KEYS))
    size = sizes[keys]
    usable = (size > 0) & (size <= cap)
    if size[usable].sum() > s.max_query_hits:
        by_size = np.sort(size[usable])
        within = by_size[np.cumsum(by_size) <= s.max_query_hits]
        usable &= size <= (within[-1] if len(within) else 0)
    return keys[usable]


@app.command("measure", hidden=True)
def measure(layout: str, folder: Path, queries: Path, warm_rounds: int = 3) -> None:
    """One layout, in this fresh process: print its measurements as one JSON line."""
    import faiss  # noqa: F401  (imported before the baseline, as a screening process has it)

    from audiodup.index import bucket_sizes

    data = np.load(queries)
    query_keys = [data[name] for name in sorted(data.files) if name.startswith("keys")]
    sizes = data["sizes"]
    n_works = int(data["n_works"][0])
    n_entries = int(sizes.sum())
    asked = [usable_keys(k, sizes, n_entries) for k in query_keys]
    out = {"layout": layout, "rss_baseline": rss()}
    drop_from_page_cache(sorted(folder.iterdir()))
    start = time.perf_counter()
    opened = Opened(layout, folder, n_works)
    out["open_s_cold"] = time.perf_counter() - start
    out["rss_open"] = rss()
    if layout in ("faiss-ram", "sorted-mmap"):
        assert np.array_equal(opened.indexes.bucket_sizes, sizes) or np.array_equal(
            bucket_sizes([s.index for s in opened.shards]), sizes
        )
    cold = []
    for keys in asked:
        if layout not in ("faiss-ram", "faiss-mmap-flag"):
            opened.close()
            drop_from_page_cache(opened.files)
            opened = Opened(layout, folder, n_works)
        start = time.perf_counter()
        rows, ids = opened.lookup(keys)
        cold.append(time.perf_counter() - start)
    out["rss_after_cold"] = rss()
    warm = []
    for _ in range(warm_rounds):
        for keys in asked:
            start = time.perf_counter()
            rows, ids = opened.lookup(keys)
            warm.append(time.perf_counter() - start)
    out["rss_after_warm"] = rss()
    out["hits_per_query"] = float(
        np.mean([len(opened.lookup(k)[1]) for k in asked[: min(3, len(asked))]])
    )
    out["keys_per_query"] = float(np.mean([len(k) for k in asked]))
    out["cold_ms"] = [1000 * t for t in cold]
    out["warm_ms"] = [1000 * t for t in warm]
    # every layout must answer the same: a digest of the first query's hits, in order
    rows, ids = opened.lookup(asked[0])
    order = np.ascontiguousarray(np.stack([rows.astype(np.int64), ids.astype(np.int64)]))
    out["digest"] = hashlib.sha256(order.tobytes()).hexdigest()[:16]
    by_pair = order[:, np.lexsort(order[::-1])]
    out["set_digest"] = hashlib.sha256(np.ascontiguousarray(by_pair).tobytes()).hexdigest()[:16]
    print(json.dumps(out))


def measure_chroma(folder: Path, queries: Path, mmap_flag: bool) -> dict:
    """RSS and search time of the chroma shards, read into RAM or with IO_FLAG_MMAP."""
    code = (
        "import json, sys\n"
        "from benchmarks.index_layout import chroma_child\n"
        f"print(json.dumps(chroma_child({str(folder)!r}, {str(queries)!r}, {mmap_flag})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def chroma_child(folder: str, queries: str, mmap_flag: bool) -> dict:
    import faiss

    from audiodup.index import read_index, set_nprobe

    data = np.load(queries)
    vectors = [data[n] for n in sorted(data.files) if n.startswith("chroma")]
    out = {"mmap": mmap_flag, "rss_baseline": rss()}
    files = sorted(Path(folder).glob("c-*.faiss"))
    drop_from_page_cache(files)
    start = time.perf_counter()
    if mmap_flag:
        shards = [
            faiss.read_index(str(p), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY) for p in files
        ]
    else:
        shards = [read_index(p, binary=False) for p in files]
    out["open_s_cold"] = time.perf_counter() - start
    for shard in shards:
        set_nprobe(shard, DEFAULT_SETTINGS.chroma_nprobe)
    out["rss_open"] = rss()
    times = []
    for _ in range(2):
        for v in vectors:
            start = time.perf_counter()
            for shard in shards:
                shard.search(v, 8)
            times.append(time.perf_counter() - start)
    out["rss_after"] = rss()
    out["search_ms"] = [1000 * t for t in times]
    out["ntotal"] = int(sum(s.ntotal for s in shards))
    out["vectors_per_query"] = float(np.mean([len(v) for v in vectors]))
    return out


def run_measure(layout: str, folder: Path, queries: Path) -> dict:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.index_layout",
            "measure",
            layout,
            str(folder),
            str(queries),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"{layout}: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def net_rss(snap: dict, base: dict) -> str:
    """``total (anon/file)`` MiB of ``snap`` above ``base``."""
    anon, file = snap["RssAnon"] - base["RssAnon"], snap["RssFile"] - base["RssFile"]
    return f"{snap['VmRSS'] - base['VmRSS']:,.0f} ({anon:,.0f}/{file:,.0f})"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# -- the run -------------------------------------------------------------------------------------
@app.command("run")
def main(
    works: Annotated[int, typer.Option(help="synthetic works")] = 100_000,
    shards: Annotated[int, typer.Option(help="hash shards the works are written in")] = 8,
    layouts: Annotated[
        str, typer.Option(help="comma-separated, of " + ",".join(LAYOUTS))
    ] = ",".join(LAYOUTS),
    n_queries: Annotated[int, typer.Option(help="real ~4-min uploads looked up")] = 20,
    workdir: Annotated[Path, typer.Option(help="where shard files go (GBs)")] = Path(
        "/tmp/audiodup-index-layout"
    ),
    catalog: Annotated[Path, typer.Option(help="real catalog for the statistics")] = BENCH
    / "calibration-catalog",
    chroma: Annotated[bool, typer.Option(help="also build and measure chroma shards")] = False,
    merge: Annotated[bool, typer.Option(help="also merge the sorted shards into one")] = True,
    report: Annotated[bool, typer.Option(help="write benchmarks/INDEX_LAYOUT.md")] = True,
    seed: int = 14,
) -> None:
    chosen = [name for name in layouts.split(",") if name]
    started = _utc_now()
    workdir.mkdir(parents=True, exist_ok=True)
    stats = real_statistics(catalog)
    print(
        f"real catalog: {stats['n_works']} works, {stats['hours']:.1f} h, "
        f"{np.mean(stats['hashes_per_s']):.2f} hashes/s per work",
        flush=True,
    )
    queries = query_hashes(n_queries)
    rng = np.random.default_rng(seed)
    per_shard = np.diff(np.linspace(0, works, shards + 1).astype(int))
    folders = {name: workdir / name for name in chosen}
    if "faiss-ram" in chosen and "faiss-mmap-flag" in chosen:
        folders["faiss-mmap-flag"] = folders["faiss-ram"]  # the same files, read another way
    built = [name for name in chosen if folders[name] == workdir / name]
    builds = {name: 0.0 for name in chosen}
    for folder in {folders[name] for name in built}:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    sizes = np.zeros(N_KEYS, dtype=np.int64)
    entries, first = 0, 1
    for i, n in enumerate(per_shard):
        keys, ids, _ = synthetic_shard(rng, stats, first, int(n))
        first += int(n)
        entries += len(ids)
        sizes += np.bincount(keys, minlength=N_KEYS)
        for name in built:
            builds[name] += build_layout(name, folders[name], keys, ids, i)
            gc.collect()
        print(f"shard {i + 1}/{shards}: {len(ids):,} entries", flush=True)
        del keys, ids
    _KEEP_ALIVE.clear()
    queries_file = workdir / "queries.npz"
    np.savez(
        queries_file,
        sizes=sizes,
        n_works=np.array([works]),
        **{f"keys{i:03d}": q["keys"] for i, q in enumerate(queries)},
        **{f"chroma{i:03d}": q["chroma"] for i, q in enumerate(queries)},
    )
    results = {}
    for name in chosen:
        results[name] = run_measure(name, folders[name], queries_file)
        results[name]["build_s"] = builds[name] or builds.get("faiss-ram", 0.0)
        results[name]["disk_bytes"] = disk_bytes(folders[name])
        print(json.dumps({k: v for k, v in results[name].items() if not k.endswith("_ms")}))
    merged = None
    if merge and "sorted-mmap" in chosen:
        merged = merge_and_measure(folders["sorted-mmap"], workdir / "sorted-merged", queries_file)
        print(json.dumps({k: v for k, v in merged.items() if not k.endswith("_ms")}))
    chroma_rows = None
    if chroma:
        chroma_rows = build_and_measure_chroma(
            rng, stats, works, shards, workdir / "chroma", queries_file
        )
    saved = {
        "works": works,
        "shards": shards,
        "entries": entries,
        "n_queries": len(queries),
        "real": {
            "n_works": stats["n_works"],
            "hours": stats["hours"],
            "hashes_per_s": float(np.mean(stats["hashes_per_s"])),
        },
        "results": results,
        "merged": merged,
        "chroma": chroma_rows,
        "ran": f"{started} to {_utc_now()}, at commit {_commit()}",
        "load": f"{_load()} at the end of the run",
    }
    (workdir / "results.json").write_text(json.dumps(saved))
    if report:
        write_report(saved)
        print(f"wrote {REPORT}")


@app.command("remeasure")
def remeasure(
    layouts: Annotated[str, typer.Option(help="comma-separated; 'merged' for the merged shard")],
    workdir: Annotated[Path, typer.Option()] = Path("/tmp/audiodup-index-layout"),
) -> None:
    """Measure layouts of a finished run again on its files (build time and disk kept)."""
    started = _utc_now()
    saved = json.loads((workdir / "results.json").read_text())
    queries = workdir / "queries.npz"
    for name in layouts.split(","):
        if name == "merged":
            old = saved["merged"]
            fresh = run_measure("sorted-mmap", workdir / "sorted-merged", queries)
            fresh["layout"] = old["layout"]
            saved["merged"] = {**fresh, "build_s": old["build_s"], "disk_bytes": old["disk_bytes"]}
            continue
        old = saved["results"][name]
        folder = workdir / ("faiss-ram" if name == "faiss-mmap-flag" else name)
        fresh = run_measure(name, folder, queries)
        saved["results"][name] = {
            **fresh,
            "build_s": old["build_s"],
            "disk_bytes": old["disk_bytes"],
        }
        print(json.dumps({k: v for k, v in fresh.items() if not k.endswith("_ms")}))
    saved["remeasured"] = layouts
    saved["ran"] = (
        f"{saved.get('ran', '?')}; re-measured {started} to {_utc_now()}, at commit {_commit()}"
    )
    (workdir / "results.json").write_text(json.dumps(saved))


@app.command("report")
def report_command(
    workdir: Annotated[Path, typer.Option()] = Path("/tmp/audiodup-index-layout"),
) -> None:
    """Write benchmarks/INDEX_LAYOUT.md from a run's saved results."""
    write_report(json.loads((workdir / "results.json").read_text()))
    print(f"wrote {REPORT}")


def merge_and_measure(folder: Path, out: Path, queries: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    shards = [read_hash_shard(p).index for p in sorted(folder.glob("h-*.sorted"))]
    start = time.perf_counter()
    writer, n = merge_sorted_hash_shards(shards, lambda works: np.ones(len(works), bool))
    write_file(out / "h-000000000000.sorted", writer)
    took = time.perf_counter() - start
    result = run_measure("sorted-mmap", out, queries)
    result.update(
        layout="sorted-mmap, merged into 1 shard", build_s=took, disk_bytes=disk_bytes(out)
    )
    return result


def build_and_measure_chroma(rng, stats, works, shards, folder: Path, queries: Path) -> list:
    """Chroma shards of the recipe's factory string for ``works`` works: one trained quantizer
    (training 8 IVF quantizers of 16k lists on 2 cores takes too long for a benchmark; the index
    shape is the same), vectors resampled from the real catalog's with a little noise."""
    import faiss

    from audiodup.index import pack_segment_ids, write_index

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    real = stats["vectors"].astype(np.float32)
    per_shard = np.diff(np.linspace(0, works, shards + 1).astype(int))
    n_per_work = np.maximum(
        1, np.round(stats["segments_per_s"] * rng.uniform(180, 252, works)).astype(int)
    )
    first_shard = int(n_per_work[: per_shard[0]].sum())
    training = real[rng.integers(0, len(real), min(first_shard, 300_000))]
    training += rng.normal(0, 0.02, training.shape).astype(np.float32)
    start = time.perf_counter()
    lists = 1 << max(
        int(np.log2(max(first_shard // DEFAULT_SETTINGS.chroma_vectors_per_list, 1))), 0
    )
    factory = DEFAULT_SETTINGS.chroma_index_factory.format(nlist=lists)
    template = faiss.index_factory(real.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    template.train(training)
    train_s = time.perf_counter() - start
    work, build_s = 1, 0.0
    for i, n in enumerate(per_shard):
        start = time.perf_counter()
        index = faiss.clone_index(template)
        counts = n_per_work[work - 1 : work - 1 + n]
        vectors = real[rng.integers(0, len(real), int(counts.sum()))]
        vectors = vectors + rng.normal(0, 0.02, vectors.shape).astype(np.float32)
        ids = np.concatenate(
            [pack_segment_ids(w, c) for w, c in zip(range(work, work + n), counts, strict=True)]
        )
        index.add_with_ids(vectors, ids)
        write_file(folder / f"c-{i:012x}.faiss", write_index(index, binary=False))
        build_s += time.perf_counter() - start
        work += n
        del index, vectors
        gc.collect()
    rows = []
    for flag in (False, True):
        row = measure_chroma(folder, queries, flag)
        row.update(build_s=build_s, train_s=train_s, disk_bytes=disk_bytes(folder), lists=lists)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if not k.endswith("_ms")}), flush=True)
    return rows


# -- the report ----------------------------------------------------------------------------------
def _utc_now() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def _machine(load: str) -> str:
    mem = Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
    return (
        f"{os.cpu_count()} cores, {int(mem) / 2**20:.0f} GB RAM, shared with other jobs "
        f"(load average {load})"
    )


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "audiodup"], capture_output=True, text=True
    )
    return done.stdout.strip() + (" (+ uncommitted changes)" if dirty.stdout.strip() else "")


def _same(row: dict, first: dict) -> str:
    """Whether a layout answered the first upload with the first row's hits: in the same order,
    the same hits in another order, or different hits."""
    if row["digest"] == first["digest"]:
        return "same, same order"
    return "same, other order" if row["set_digest"] == first["set_digest"] else "DIFFERENT"


def write_report(saved: dict) -> None:
    works, shards, entries = saved["works"], saved["shards"], saved["entries"]
    results, merged, chroma_rows, real = (
        saved["results"],
        saved["merged"],
        saved["chroma"],
        saved["real"],
    )
    date = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
    lines = [
        "# Hash index layouts at 10^5 works (issue #14)",
        "",
        f"Ran {saved.get('ran', '?')}; report written {date}, commit {_commit()}, "
        f"{_machine(saved.get('load') or _load())}.",
        "",
        "Command: `PYTHONPATH=. python -m benchmarks.index_layout run "
        f"--works {works} --shards {shards}{' --chroma' if chroma_rows else ''}`"
        + (
            f"; the rows of {saved['remeasured']} measured again on that run's files with "
            f"`python -m benchmarks.index_layout remeasure --layouts {saved['remeasured']}`"
            if saved.get("remeasured")
            else ""
        ),
        "",
        f"Synthetic catalog: {works:,} works of 180-252 s ({works * 216 / 3600:,.0f} h), "
        f"{entries:,} hash entries ({entries / works:,.0f} per work) in {shards} shards; keys "
        f"drawn from the key distribution of the real catalog ({real['n_works']} works, "
        f"{real['hours']:.1f} h, {real['hashes_per_s']:.2f} entries/s per work). "
        f"Queries: {saved['n_queries']} real recordings of 200-280 s at query density, "
        f"{next(iter(results.values()))['keys_per_query']:,.0f} keys looked up per upload on "
        "average (those screening asks for: stored, under the stop-word cap), "
        f"{next(iter(results.values()))['hits_per_query']:,.0f} hits.",
        "",
        "RSS in MiB from /proc/self/status, net of the process before opening (numpy, FAISS "
        "imported); cold = the shard files evicted from the page cache (posix_fadvise) before "
        "each upload and the shards reopened; warm = the same uploads "
        "again. Build = entries to files on disk, fsynced.",
        "",
        "| layout | build s | disk MB | open s (cold) | RSS open (anon/file) | RSS after cold | "
        "RSS after warm (anon/file) | cold p50/p95 ms | warm p50/p95 ms | hits as the first row |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    first = next(iter(results.values()))
    for r in list(results.values()) + ([merged] if merged else []):
        base = r["rss_baseline"]
        lines.append(
            f"| {r['layout']} | {r['build_s']:.1f} | {r['disk_bytes'] / 1e6:,.0f} | "
            f"{r['open_s_cold']:.2f} | {net_rss(r['rss_open'], base)} | "
            f"{net_rss(r['rss_after_cold'], base)} | "
            f"{net_rss(r['rss_after_warm'], base)} | "
            f"{pct(r['cold_ms'], 50):.1f} / {pct(r['cold_ms'], 95):.1f} | "
            f"{pct(r['warm_ms'], 50):.1f} / {pct(r['warm_ms'], 95):.1f} | "
            f"{_same(r, first)} |"
        )
    lines.append("")
    lines.append(
        "Whole-process RSS of the screening-like process (sorted layout, after the warm "
        "look-ups): "
        + (
            f"{results['sorted-mmap']['rss_after_warm']['VmRSS']:,.0f} MiB (peak "
            f"{results['sorted-mmap']['rss_after_warm']['VmHWM']:,.0f} MiB)."
            if "sorted-mmap" in results
            else "not measured."
        )
    )
    if chroma_rows:
        lines += [
            "",
            "## Chroma shards (FAISS, recipe factory string)",
            "",
            f"{chroma_rows[0]['ntotal']:,} segment vectors in {shards} shards of "
            f"`{DEFAULT_SETTINGS.chroma_index_factory.format(nlist=chroma_rows[0]['lists'])}` "
            f"(one quantizer trained in {chroma_rows[0]['train_s']:.0f} s and cloned), nprobe "
            f"{DEFAULT_SETTINGS.chroma_nprobe}, k = 8, "
            f"{chroma_rows[0]['vectors_per_query']:.0f} query vectors per upload; disk "
            f"{chroma_rows[0]['disk_bytes'] / 1e6:,.0f} MB, "
            f"build {chroma_rows[0]['build_s']:.0f} s.",
            "",
            "| read | open s (cold) | RSS open (anon/file) | RSS after searches (anon/file) | "
            "search p50/p95 ms |",
            "|---|---|---|---|---|",
        ]
        for r in chroma_rows:
            base = r["rss_baseline"]
            lines.append(
                f"| {'IO_FLAG_MMAP' if r['mmap'] else 'into RAM (today)'} | "
                f"{r['open_s_cold']:.2f} | "
                f"{net_rss(r['rss_open'], base)} | {net_rss(r['rss_after'], base)} | "
                f"{pct(r['search_ms'], 50):.0f} / {pct(r['search_ms'], 95):.0f} |"
            )
    lines.append("")
    REPORT.write_text("\n".join(lines) + "\n" + _NOTES)


_NOTES = """
## The candidates

- **faiss-ram**: today's `h-*.faiss` files, `IndexBinaryHash` read into RAM (`read_hash_shard`).
- **faiss-mmap-flag**: the same files read with `faiss.read_index_binary(path, IO_FLAG_MMAP |
  IO_FLAG_READ_ONLY)`. FAISS accepts the flag and ignores it for `IndexBinaryHash`: its buckets
  are rebuilt into an in-memory hash map on reading, so the RSS is that of faiss-ram.
- **sorted-mmap**: `h-*.sorted` (audiodup.index): entries per key (zlib) then the int64 ids sorted
  by key; the ids are mapped with `mmap`, the offsets (4 MB per shard) are in RAM.
- **faiss-ondisk**: FAISS's `OnDiskInvertedLists` with one list per key (a binary IVF over 2^19
  lists whose quantizer is never used: the key is the list number), filled through
  `ArrayInvertedLists` and `merge_from_multiple`, read with `IO_FLAG_READ_ONLY` (the lists file
  is mapped by FAISS itself). Reading it with `IO_FLAG_MMAP` as well crashed FAISS 1.15.1
  (segfault at the first list read). FAISS has no batched "get these lists" call, so a look-up
  is two Python calls per key and shard (`list_size`, `get_ids`).
- **lmdb**: one LMDB file per shard (`lmdb` 3.0.0, installed for this benchmark only), key =
  the 4-byte key, value = its ids; a look-up is one `txn.get` per key and shard.

Chroma: with `IO_FLAG_MMAP` the vectors are file-backed pages of the page cache, shared by every
process that opens the catalog and dropped by the kernel under memory pressure, instead of each
process's anonymous memory. Searches over many uploads touch most inverted lists (88 query
vectors x 24 probes per upload), so the mapped pages (RssFile) grow towards the file's size:
VmRSS is then about that of the index read into RAM, but the anonymous part stays small.

Cold look-ups re-open the shards after evicting their files, so they include the page faults
of the first reads; for faiss-ram and faiss-mmap-flag there is nothing to fault after opening
(the open itself is the cost, in "open s"). "Hits as the first row": the first upload's hits
compared with those of the first layout, in order (a merged shard holds the same hits in the
order a rebuild from the live works would write them, which differs from 8 shards one after
another).
"""


if __name__ == "__main__":
    app()
