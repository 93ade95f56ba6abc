"""Verdicts, latency and memory as the catalog grows to 10^4-10^5 works (issue #14, items 1 and 4).

The catalog starts as a copy of the real benchmark catalog (113 works, 4.7 h) and grows with
fingerprint-level distractors (:mod:`benchmarks.distractor_prints`, cut from the *material* half
of the real works). The hard variants of the *positive* half, and negatives (the never-indexed
tracks under the same variants), are fingerprinted once and screened at every size, each size
in a fresh process whose peak RSS is the screening process's memory.

    python -m benchmarks.scaling_prints run --sizes 113,10000,100000 [--work DIR]
    python -m benchmarks.scaling_prints report [--work DIR]    # SCALING.md from the rows
    python -m benchmarks.scaling_prints compact CATALOG [--into K]  # shards into K (1), timed

``run`` grows the catalog in shards of ``BATCH_WORKS`` works and leaves them apart; ``compact``
merges them as the store does when a catalog passes ``max_shards`` (sorted hash files merged,
the chroma index trained anew, at most ``chroma_max_lists`` lists): the layout a catalog grown
by ``audiodup add`` ends in. Screening one and the other measures what the layout changes.

A positive is *found* when the verdict is ``duplicate`` and the top match is its source work; a
false positive is a ``duplicate`` verdict on a negative, or a ``duplicate`` naming a work that is
not the source (a distractor or another real work).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.distractor_prints import (
    REPO,
    distractor_works,
    is_distractor,
    material_sources,
)
from benchmarks.engine import peak_rss_mb

HARD_VARIANTS = (
    "chain: slowed + reverb (speed 0.85)",
    "speed 0.50",
    "tempo 2.00",
    "tempo 2.00 [ffmpeg]",
    "tempo 2.00 [rb-r2]",
    "tempo 2.00 [rb-r3]",
    "tempo 2.00 [sox]",
    "excerpt 5 s",
    "chain: speed 1.25 + mp3 64k + 30 s",
    "chain: tempo 0.93 + pitch -1.5 + eq + noise 20 dB",
    "chain: tempo 1.07 + pitch +1 + mp3 128k + 45 s",
)
DEFAULT_WORK = Path("/tmp/audiodup-scaling-prints")
DEFAULT_OUT = REPO / "benchmarks" / "SCALING.md"
# works per committed shard: a shard trains its chroma IVF with one list per ~40 vectors, so
# training grows with the square of the shard (10,000 works in one shard: >10 CPU-min, and
# compacting to max_shards shards retrains over all of them); 1,250 works train in seconds
BATCH_WORKS = 1_250


def _log(message: str) -> None:
    print(f"{dt.datetime.now(dt.UTC):%H:%M:%S} {message}", flush=True)


# -- queries -------------------------------------------------------------------------------------
def prepare_queries(
    work: Path,
    positives: frozenset[str] | None,
    max_negatives: int,
    seed: int,
    corpus_name: str = "tuning",
) -> Path:
    """Fingerprint (query density) the hard-variant queries of the positive works (``None``:
    every catalog track of the corpus) and a seeded sample of negatives, once; returns the
    pickle holding ``[(Query, Fingerprint), ...]``."""
    from audiodup.audio import load_audio
    from audiodup.fingerprint import fingerprint_audio
    from audiodup.settings import DEFAULT_SETTINGS
    from benchmarks.corpus import corpus_cache, read_manifest
    from benchmarks.queries import Query

    out = work / "queries.pkl"
    if out.exists():
        return out
    root = corpus_cache(corpus_name) / "queries-v1" / "s0"
    corpus = read_manifest(corpus_name)
    if positives is None:
        positives = frozenset(
            os.path.realpath(t["path"]) for t in corpus["tracks"] if t["role"] == "catalog"
        )
    path_of = {t["track_id"]: os.path.realpath(t["path"]) for t in corpus["tracks"]}
    wanted = set(HARD_VARIANTS)
    pos, neg = [], []
    for sidecar in sorted(root.glob("*/*.json")):
        q = Query.from_json(json.loads(sidecar.read_text()))
        if q.variant not in wanted:
            continue
        if q.role == "positive" and path_of.get(q.track_id) in positives:
            pos.append(q)
        elif q.role == "negative":
            neg.append(q)
    rng = np.random.default_rng([seed, 0x4E6])
    neg = [neg[i] for i in sorted(rng.permutation(len(neg))[:max_negatives])]
    prints = []
    for i, q in enumerate(pos + neg):
        audio = load_audio(q.path, DEFAULT_SETTINGS)
        prints.append((q, fingerprint_audio(audio, DEFAULT_SETTINGS, query=True)))
        if (i + 1) % 100 == 0:
            _log(f"fingerprinted {i + 1}/{len(pos) + len(neg)} queries")
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(prints))
    tmp.replace(out)
    return out


def write_catalog_tracks(work: Path, corpus_name: str) -> Path:
    """``work/catalog-tracks.txt``: the corpus's catalog tracks, one path a line, to add to a
    large catalog (``xargs -d '\\n' audiodup index add --db CATALOG < catalog-tracks.txt``)."""
    from benchmarks.corpus import read_manifest

    corpus = read_manifest(corpus_name)
    out = work / "catalog-tracks.txt"
    out.write_text("".join(f"{t['path']}\n" for t in corpus["tracks"] if t["role"] == "catalog"))
    return out


def sample_queries(prepared: Path, per_variant: int, max_negatives: int, seed: int) -> Path:
    """A seeded sample of the prepared queries: at most ``per_variant`` positives of each
    variant and ``max_negatives`` negatives (a loaded machine screens fewer)."""
    out = prepared.with_name(f"queries-{per_variant}-{max_negatives}.pkl")
    if out.exists():
        return out
    prints = pickle.loads(prepared.read_bytes())
    rng = np.random.default_rng([seed, 0x5A3])
    by_group: dict[str, list] = defaultdict(list)
    for item in prints:
        q = item[0]
        by_group[q.variant if q.role == "positive" else "negative"].append(item)
    kept = []
    for group, items in sorted(by_group.items()):
        limit = max_negatives if group == "negative" else per_variant
        kept += [items[i] for i in sorted(rng.permutation(len(items))[:limit])]
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(kept))
    tmp.replace(out)
    return out


# -- building ------------------------------------------------------------------------------------
def grow_catalog(catalog_dir: Path, sources, target_works: int, seed: int) -> dict:
    """Commit distractors until the catalog holds ``target_works`` works, one shard per
    ``BATCH_WORKS``; returns the CPU and wall seconds spent. The shards are not compacted to
    ``max_shards`` (see ``BATCH_WORKS``): screening reads all of them."""
    from audiodup.catalog import Catalog
    from audiodup.settings import DEFAULT_SETTINGS

    # one shard per batch: the store would compact beyond max_shards (see BATCH_WORKS)
    builder = dataclasses.replace(DEFAULT_SETTINGS, max_shards=10_000)
    c0, w0 = time.process_time(), time.perf_counter()
    with Catalog.open(catalog_dir, settings=builder) as catalog:
        have = len(catalog.works())
        n_dist = sum(1 for w in catalog.works() if is_distractor(w.path))
        while have < target_works:
            take = min(BATCH_WORKS, target_works - have)
            items = list(distractor_works(sources, range(n_dist, n_dist + take), seed))
            catalog.store.commit_batch(items)
            have += take
            n_dist += take
            _log(f"catalog at {have} works")
    return {"build_cpu_s": time.process_time() - c0, "build_wall_s": time.perf_counter() - w0}


def compact_catalog(catalog_dir: Path, into: int = 1) -> dict:
    """Merge the catalog's shards into ``into`` shards (consecutive shards together), as the
    store compacts (its write lock held); returns the works, shards after, CPU and wall seconds
    and the process's peak RSS."""
    from audiodup.catalog import Catalog

    c0, w0 = time.process_time(), time.perf_counter()
    with Catalog.open(catalog_dir, create=False) as catalog:
        store = catalog.store
        before = catalog.stats().shards
        ids = [r[0] for r in store.db.execute("SELECT shard_id FROM shards ORDER BY shard_id")]
        size = -(-len(ids) // max(into, 1))
        with store._writing("compact"):
            for start in range(0, len(ids), size):
                store.compact(among=ids[start : start + size])
            store._fold_log()
        st = catalog.stats()
    return {
        "works": st.works,
        "shards_before": before,
        "shards": st.shards,
        "compact_cpu_s": round(time.process_time() - c0, 1),
        "compact_wall_s": round(time.perf_counter() - w0, 1),
        "peak_rss_mb": round(peak_rss_mb()),
    }


def disk_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


# -- screening (its own process) -----------------------------------------------------------------
def prepare_views(queries: Path) -> Path:
    """The further looks screening may take at each prepared query
    (:func:`audiodup.screening.planned_views`: slowed, sped up, other hop phases of a short
    upload), fingerprinted once from the query's audio as a screening worker makes them; returns
    the pickle holding ``{query_id: {(time_scale, hop_phase): Fingerprint}}``."""
    from audiodup.audio import load_audio
    from audiodup.fingerprint import fingerprint_audio
    from audiodup.screening import planned_views
    from audiodup.settings import DEFAULT_SETTINGS

    out = queries.with_name(queries.stem + "-views.pkl")
    if out.exists():
        return out
    views = {}
    for i, (q, fp) in enumerate(pickle.loads(queries.read_bytes())):
        audio = load_audio(q.path, DEFAULT_SETTINGS)
        views[q.query_id] = {
            (scale, phase): fingerprint_audio(
                audio, DEFAULT_SETTINGS, query=True, time_scale=scale, hop_phase=phase
            )
            for scale, phase in planned_views(fp, DEFAULT_SETTINGS)
        }
        if (i + 1) % 50 == 0:
            _log(f"views of {i + 1} queries")
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(views))
    tmp.replace(out)
    return out


def timed_screening(query, indexes, settings, works, view) -> tuple[list, list, str, float, float]:
    """What :meth:`Catalog.match_fingerprint` runs (``screening.match_fingerprint``, kept in its
    two steps for the looks' evidence), timed: ``(looks, matches, verdict, wall s, CPU s)``."""
    from audiodup.screening import gather_looks, matches_from_looks
    from audiodup.verdict import decide

    w0, c0 = time.perf_counter(), time.process_time()
    looks = gather_looks(query, indexes, settings, works, view)
    matches = matches_from_looks(looks, settings, works)
    verdict = decide(matches, settings)
    return looks, matches, verdict, time.perf_counter() - w0, time.process_time() - c0


def screen_catalog(
    catalog_dir: Path,
    queries: Path,
    out: Path,
    max_query_hits: int | None = None,
    quick: bool = False,
    warm: bool = False,
) -> None:
    """Screen every prepared query against the catalog as :meth:`Catalog.match_fingerprint`
    does (:func:`audiodup.screening.match_fingerprint`: the look at the upload as it is, then
    the further looks until one gives a duplicate, their fingerprints made beforehand by
    :func:`prepare_views`, outside the timed search); one JSON line per query, then a summary
    line with this process's peak RSS and the index loading time. ``max_query_hits`` overrides
    the setting (the hit budget of one query's look-up); ``quick`` takes only the look at the
    upload as it is, as ``audiodup screen --quick``; ``warm``: the catalog's index files are
    first dropped from the page cache and read ahead as the service does when it starts
    (:func:`cold_then_read_ahead`), outside the timed search."""
    from audiodup.allocator import keep_freed_memory
    from audiodup.catalog import Catalog, _view_from
    from audiodup.settings import DEFAULT_SETTINGS

    keep_freed_memory()  # as the command line and the service do
    prints = pickle.loads(queries.read_bytes())
    views = pickle.loads(prepare_views(queries).read_bytes())
    rss_before = peak_rss_mb()
    settings = DEFAULT_SETTINGS
    if max_query_hits:
        settings = dataclasses.replace(settings, max_query_hits=max_query_hits)
    if quick:
        settings = settings.without_further_looks()
    with Catalog.open(catalog_dir, create=False, settings=settings) as catalog, out.open("w") as fh:
        settings = catalog.settings
        warm_s = cold_then_read_ahead(catalog) if warm else None
        t0 = time.perf_counter()
        indexes = catalog.indexes()
        load_s = time.perf_counter() - t0
        rss_loaded = peak_rss_mb()
        for q, fp in prints:
            view = _view_from(views[q.query_id])
            looks, matches, verdict, search_s, search_cpu_s = timed_screening(
                fp, indexes, settings, catalog.store, view
            )
            top = matches[0] if matches else None
            best_look, best_hash = None, None
            for look in looks:
                for found in look.evidence.hashes.values():
                    if best_hash is None or (
                        found.false_match_probability < best_hash.false_match_probability
                    ):
                        best_look, best_hash = look, found
            dup = [m for m in matches if m.relation == "same_recording"]
            fh.write(
                json.dumps(
                    {
                        "query_id": q.query_id,
                        "variant": q.variant,
                        "role": q.role,
                        "track_id": q.track_id,
                        "verdict": verdict,
                        "top_path": top.path if top else None,
                        "top_fmp": top.false_match_probability if top else None,
                        "top_relation": top.relation if top else None,
                        "top_hashes": top.matched_hashes if top else None,
                        "top_peaks": top.matched_peaks if top else None,
                        "same_recording_paths": [m.path for m in dup[:3]],
                        "n_works": looks[0].evidence.n_works,
                        "looks": len(looks),
                        "best_hash_inliers": best_hash.evidence.main_inliers if best_hash else 0,
                        "best_hash_fmp": best_hash.false_match_probability if best_hash else None,
                        "best_hash_look": [best_look.time_scale, best_look.start_s]
                        if best_look
                        else None,
                        "search_s": search_s,
                        "search_cpu_s": search_cpu_s,
                    }
                )
                + "\n"
            )
        fh.write(
            json.dumps(
                {
                    "summary": True,
                    "rss_mb_peak": peak_rss_mb(),
                    "rss_mb_queries_loaded": rss_before,
                    "rss_mb_index_loaded": rss_loaded,
                    "index_load_s": load_s,
                    "read_ahead_s": warm_s,
                }
            )
            + "\n"
        )


def four_minute_uploads() -> list[dict]:
    """The 20 four-minute MP3 uploads of :mod:`benchmarks.cpu_cost` (made once in the cache):
    10 cut from catalog works (``source``: the work's file), 10 from never-indexed tracks."""
    from benchmarks.corpus import cache_dir
    from benchmarks.cpu_cost import prepare

    cache = cache_dir(None)
    if not (cache / "corpus.json").is_file():
        raise ValueError(
            f"no benchmark corpus at {cache / 'corpus.json'}; python -m benchmarks run prepares it"
        )
    return prepare(cache)["uploads"]["4min"]


def screen_four_minute(catalog_dir: Path, out: Path, rounds: int = 2) -> None:
    """The search CPU of four-minute uploads, the size issue #14's latency target names: each
    of :func:`four_minute_uploads` fingerprinted with its further looks beforehand (outside
    the timed search), then screened as :func:`screen_catalog` screens (every look, and only
    the look as it is, as ``--quick``), ``rounds`` times over (the last timed: the first reads
    the index pages into the page cache); one JSON line per upload and plan, then a summary
    line with this process's peak RSS. An upload's stereo parts (its difference, its channels,
    where their gates open: :class:`audiodup.fingerprint.SignalParts`) are screened after its
    mix as :func:`audiodup.screening.match_signals` screens them, and their CPU is part of
    ``search_cpu_s`` (the mix's alone: ``mix_search_cpu_s``)."""
    from audiodup.allocator import keep_freed_memory
    from audiodup.audio import load_audio
    from audiodup.catalog import Catalog
    from audiodup.fingerprint import UploadFingerprints
    from audiodup.report import check_writable
    from audiodup.screening import signal_queries

    check_writable(out)  # before minutes of screening
    keep_freed_memory()
    uploads = four_minute_uploads()
    with Catalog.open(catalog_dir, create=False) as catalog:
        full = catalog.settings
        plans = {"every look": full, "quick": full.without_further_looks()}
        indexes = catalog.indexes()
        prepared = []
        for upload in uploads:
            prints = UploadFingerprints(load_audio(upload["path"], full), full)
            parts = [ready_part(part, full) for part in signal_queries(prints)]
            view = ready_view(prints.query, prints.view, full)
            prepared.append((upload, prints.query, view, parts))
        records = []
        for _ in range(max(rounds, 1)):
            records = []
            for upload, query, view, parts in prepared:
                for plan, settings in plans.items():
                    looks, matches, verdict, search_s, search_cpu_s = timed_screening(
                        query, indexes, settings, catalog.store, view
                    )
                    mix_cpu_s = search_cpu_s
                    if parts:
                        matches, verdict, parts_s, parts_cpu_s = timed_parts(
                            query, matches, parts, indexes, settings, catalog.store
                        )
                        search_s, search_cpu_s = search_s + parts_s, search_cpu_s + parts_cpu_s
                    top = matches[0] if matches else None
                    records.append(
                        {
                            "upload": Path(upload["path"]).name,
                            "role": upload["role"],
                            "source": upload["source"],
                            "plan": plan,
                            "verdict": verdict,
                            "top_path": top.path if top else None,
                            "top_fmp": top.false_match_probability if top else None,
                            "looks": len(looks),
                            "search_s": search_s,
                            "search_cpu_s": search_cpu_s,
                            "mix_search_cpu_s": mix_cpu_s,
                            "stereo_parts": [part.signal for part in parts],
                        }
                    )
    lines = [*records, {"summary": True, "rss_mb_peak": peak_rss_mb(), "rounds": rounds}]
    out.write_text("".join(json.dumps(line) + "\n" for line in lines))


def ready_view(query, view, settings):
    """``view``'s every further look of ``query`` made now, outside the timed search."""
    from audiodup.screening import planned_views

    made = {k: view(*k) for k in planned_views(query, settings)}
    return lambda scale, phase: made[(scale, phase)]


def ready_part(part, settings):
    """A stereo part (:class:`audiodup.screening.SignalQuery`) with its further looks made."""
    if part.view is None:
        return part
    return dataclasses.replace(part, view=ready_view(part.fingerprint, part.view, settings))


def timed_parts(query, mix, parts, indexes, settings, works) -> tuple[list, str, float, float]:
    """The stereo ``parts`` screened after the ``mix``'s matches, as
    :func:`audiodup.screening.match_signals` does (each stops the rest at a duplicate; every
    probability multiplied as :func:`audiodup.screening.signal_multipliers` says), timed:
    ``(matches, verdict, wall s, CPU s)`` of the parts' searches."""
    from audiodup.screening import in_upload, signal_multipliers, with_signals
    from audiodup.verdict import decide

    searches = signal_multipliers([part.signal for part in parts])
    found, wall_s, cpu_s = {"mix": mix}, 0.0, 0.0
    for part in parts:
        if decide(with_signals(found, searches, settings), settings) == "duplicate":
            break
        _, matches, _, part_s, part_cpu_s = timed_screening(
            part.fingerprint, indexes, settings, works, part.view
        )
        found[part.signal] = [in_upload(m, part.start_s, query.duration_s) for m in matches]
        wall_s, cpu_s = wall_s + part_s, cpu_s + part_cpu_s
    matches = with_signals(found, searches, settings)
    return matches, decide(matches, settings), wall_s, cpu_s


def four_minute_summary(records: list[dict]) -> dict[str, dict]:
    """Per plan: copies found (a duplicate of the upload's source work), clean uploads kept
    clean, wrong duplicates, and the search CPU p50 / p95 ms of copies and of clean uploads,
    and of the clean uploads' mixes alone (``mix_search_cpu_s``: NaN in a file written before
    the stereo parts were screened, whose ``search_cpu_s`` is the mix's)."""
    summary = {}
    for plan in sorted({r["plan"] for r in records}):
        mine = [r for r in records if r["plan"] == plan]
        copies = [r for r in mine if r["role"] == "catalog"]
        clean = [r for r in mine if r["role"] != "catalog"]
        summary[plan] = {
            "copies": len(copies),
            "found": sum(r["verdict"] == "duplicate" and _names_source(r) for r in copies),
            "clean": len(clean),
            "kept_clean": sum(r["verdict"] == "clean" for r in clean),
            "wrong_duplicates": sum(
                r["verdict"] == "duplicate" and (r["role"] != "catalog" or not _names_source(r))
                for r in mine
            ),
            "copies_cpu_ms": (_cpu_ms(copies, 50), _cpu_ms(copies, 95)),
            "clean_cpu_ms": (_cpu_ms(clean, 50), _cpu_ms(clean, 95)),
            "clean_mix_cpu_ms": (
                _cpu_ms(clean, 50, "mix_search_cpu_s"),
                _cpu_ms(clean, 95, "mix_search_cpu_s"),
            ),
        }
    return summary


def _names_source(record: dict) -> bool:
    return os.path.realpath(record["top_path"] or "") == os.path.realpath(record["source"])


def _cpu_ms(records: list[dict], percentile: float, field: str = "search_cpu_s") -> float:
    if not records or any(field not in r for r in records):
        return np.nan
    return float(np.percentile([r[field] for r in records], percentile)) * 1000


def cold_then_read_ahead(catalog) -> float:
    """Drop the catalog's index files from the page cache (``POSIX_FADV_DONTNEED``: the pages
    no process maps), then read them ahead as ``serve`` and ``rescan`` do when they start
    (:meth:`audiodup.catalog.Catalog.warm_files`, waited for): the page cache a service finds
    after a boot: the four-peak and chroma files in large page-cache folios, the hash files in
    4 KB ones (:func:`audiodup.store.read_ahead`). Returns the seconds the reading took."""
    for path, _ in catalog.store.files_to_warm(1 << 62):
        with contextlib.suppress(OSError, AttributeError), open(path, "rb") as handle:
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    t0 = time.perf_counter()
    thread = catalog.warm_files(share_of_free_memory=1.0)
    if thread is not None:
        thread.join()
    return time.perf_counter() - t0


def screen_over_groups(
    catalog_dir: Path, queries: Path, out: Path, n_groups: int, only: frozenset[str] = frozenset()
) -> None:
    """Screen each prepared query (those of ``only``, when given) in one process and over the
    catalog's ``n_groups`` shard groups on a LocalCluster, one after the other, as an upload is
    (the further looks until a duplicate); one JSON line per query with both verdicts, whether
    the two found the same matches, and the timings (:func:`benchmarks.sharded.side_by_side`)."""
    from audiodup.allocator import keep_freed_memory
    from audiodup.catalog import Catalog, _view_from
    from audiodup.verdict import decide
    from benchmarks.sharded import same_matches, shard_groups, side_by_side

    keep_freed_memory()
    prints = pickle.loads(queries.read_bytes())
    prints = [(q, fp) for q, fp in prints if not only or q.query_id in only]
    if not prints:
        raise ValueError(f"no query of {queries} to screen")
    views = pickle.loads(prepare_views(queries).read_bytes())
    with (
        Catalog.open(catalog_dir, create=False) as catalog,
        shard_groups(catalog, n_groups) as (client, sharded),
        out.open("w") as fh,
    ):
        catalog.indexes()
        sharded.match_fingerprint(prints[0][1])  # the groups open their shards
        for q, fp in prints:
            view = _view_from(views[q.query_id])
            alone, grouped, timings = side_by_side(catalog, client, sharded, fp, view)
            top = alone[0] if alone else None
            record = {
                "query_id": q.query_id,
                "variant": q.variant,
                "role": q.role,
                "verdict": decide(alone, catalog.settings),
                "verdict_over_groups": decide(grouped, catalog.settings),
                "same_matches": same_matches(alone, grouped),
                "top_path": top.path if top else None,
                "top_fmp": top.false_match_probability if top else None,
                **timings,
            }
            fh.write(json.dumps(record) + "\n")
            fh.flush()


# -- the run -------------------------------------------------------------------------------------
def run(
    sizes: Sequence[int],
    work: Path,
    seed: int,
    max_negatives: int,
    source_dir: Path,
    models: dict[str, str | None],
    per_variant: int = 1000,
    built_elsewhere: dict[int, dict] | None = None,
    max_query_hits: int | None = None,
    compact_into: int = 1,
) -> None:
    """Grow the catalog through ``sizes`` and screen at each size once per chance model:
    ``models`` maps a label to the audiodup sources that hold it (prepended to the screening
    process's PYTHONPATH; None: this checkout).

    Before screening, each size's shards are compacted into ``compact_into`` (0: left as grown).
    Left as grown, the real works keep the source catalog's small shards, each searched for its
    own best chroma segments among a few works, while every distractor competes among 1,250:
    that layout favours the positives (at 10^5 works 98 of 110 hard copies found, 88 with one
    shard for all; benchmarks/SCALING.md)."""
    from audiodup.catalog import Catalog

    built_elsewhere = built_elsewhere or {}
    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    catalog_dir = work / "catalog"
    if not catalog_dir.exists():
        shutil.copytree(source_dir, catalog_dir)  # the benchmark's catalog is only read
    positives, material = material_sources(catalog_dir, seed)
    if not material:
        from audiodup.errors import CatalogError

        raise CatalogError(f"{source_dir} holds too few real works to cut distractors from")
    queries = sample_queries(
        prepare_queries(work, positives, max_negatives, seed), per_variant, max_negatives, seed
    )
    prepare_views(queries)
    _log(f"queries ready: {queries}")
    rows_path = work / "rows.jsonl"
    for size in sorted(sizes):
        with Catalog.open(catalog_dir, create=False) as catalog:
            if len(catalog.works()) > size:
                _log(f"the catalog already holds more than {size} works: size skipped")
                continue
        timing = grow_catalog(catalog_dir, material, size, seed)
        if size in built_elsewhere:  # grown by grow_catalog in another process
            timing = built_elsewhere[size]
        if compact_into:
            _log(f"compacting {size} works into {compact_into} shard(s)")
            compacted = compact_catalog(catalog_dir, compact_into)
            timing = {**timing, **{k: compacted[k] for k in ("compact_cpu_s", "compact_wall_s")}}
        with Catalog.open(catalog_dir, create=False) as catalog:
            st = catalog.stats()
            works, hours, shards = st.works, st.hours, st.shards
            entries, vectors = st.hash_entries, st.chroma_vectors
        for label, screen_path in models.items():
            out = work / f"screen-{label}-{size}.jsonl"
            if out.exists() and read_screen(out)[1]:
                _log(f"{out.name} is complete: kept")
                continue
            _log(f"screening at {works} works ({label})")
            env = dict(os.environ)
            if screen_path:
                env["PYTHONPATH"] = os.pathsep.join(
                    [screen_path, str(REPO), env.get("PYTHONPATH", "")]
                )
            screen_args = ["--queries", str(queries), "--out", str(out)]
            if max_query_hits:
                screen_args += ["--max-query-hits", str(max_query_hits)]
            four_minute = work / four_minute_file(label, size)
            for command, options in (
                ("screen", screen_args),
                ("four-minute", ["--out", str(four_minute)]),
            ):
                subprocess.run(
                    [sys.executable, "-m", "benchmarks.scaling_prints", command]
                    + ["--catalog", str(catalog_dir), *options],
                    check=True,
                    env=env,
                    # python -m puts the working directory first on sys.path: in this checkout
                    # it would import this checkout's audiodup, not the label's
                    cwd=screen_path or None,
                )
            row = {
                "label": label,
                "max_query_hits": max_query_hits,
                "size": size,
                "works": works,
                "hours": hours,
                "shards": shards,
                "hash_entries": entries,
                "chroma_vectors": vectors,
                "disk_bytes": disk_bytes(catalog_dir),
                **timing,
                "screen_file": out.name,
                "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "loadavg": [round(x, 2) for x in os.getloadavg()],
                "machine": _machine(),
                "commit": _commit(),
            }
            with rows_path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
        _log(f"size {size} done")


def four_minute_file(label: str, size: int) -> str:
    """The name of a run's :func:`screen_four_minute` file for one label and size."""
    return f"four-minute-{label}-{size}.jsonl"


def _machine() -> str:
    """The CPU model, cores and RAM of this machine (``benchmarks.runner.machine_info``)."""
    from benchmarks.runner import machine_info

    info = machine_info()
    return f"{info['cpu']}, {info['cores']} cores, {info['ram_gb']} GB RAM"


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# -- the report ----------------------------------------------------------------------------------
def read_screen(path: Path) -> tuple[list[dict], dict]:
    records, summary = [], {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.get("summary"):
            summary = row
        else:
            records.append(row)
    return records, summary


def outcome(record: dict, source_paths: dict[str, str]) -> str:
    """``found`` / ``missed`` for a positive, ``clean`` / ``suspect`` for a negative, and
    ``false_positive`` for a duplicate that names anything but the query's source."""
    if record["verdict"] == "duplicate":
        if record["role"] == "positive" and os.path.realpath(
            record["top_path"] or ""
        ) == source_paths.get(record["track_id"]):
            return "found"
        return "false_positive"
    if record["role"] == "positive":
        return "missed"
    return record["verdict"]


def summarise(records: list[dict], source_paths: dict[str, str]) -> dict:
    by_variant: dict[str, list[str]] = defaultdict(list)
    neg: list[str] = []
    distractor_top = 0
    for r in records:
        o = outcome(r, source_paths)
        if r["role"] == "positive":
            by_variant[r["variant"]].append(o)
        else:
            neg.append(o)
        if r["verdict"] != "clean" and is_distractor(r["top_path"]):
            distractor_top += 1
    pos = [o for v in by_variant.values() for o in v]
    search = [r["search_s"] for r in records]
    return {
        "recall": sum(o == "found" for o in pos) / max(len(pos), 1),
        "positives": len(pos),
        "found": sum(o == "found" for o in pos),
        "pos_false_positive": sum(o == "false_positive" for o in pos),
        "negatives": len(neg),
        "neg_duplicate": sum(o == "false_positive" for o in neg),
        "neg_suspect": sum(o == "suspect" for o in neg),
        "distractor_top": distractor_top,
        "search_p50_ms": float(np.percentile(search, 50)) * 1000,
        "search_p95_ms": float(np.percentile(search, 95)) * 1000,
        "search_cpu_p50_ms": float(np.percentile([r["search_cpu_s"] for r in records], 50)) * 1000,
        "search_cpu_p95_ms": float(np.percentile([r["search_cpu_s"] for r in records], 95)) * 1000,
        "by_variant": {
            v: (sum(o == "found" for o in outs), len(outs)) for v, outs in by_variant.items()
        },
    }


def load_rows(works: Sequence[Path]) -> list[dict]:
    """Every row of the run folders, each with its screen file's records (``records``) and
    summary (``screen``); a re-run (model, size) replaces the older row."""
    rows: dict[tuple, dict] = {}
    for work in works:
        for line in (work / "rows.jsonl").read_text().splitlines():
            r = json.loads(line)
            r["records"], r["screen"] = read_screen(work / r["screen_file"])
            four_minute = work / four_minute_file(r["label"], r["size"])
            r["four_minute"] = (
                four_minute_summary(read_screen(four_minute)[0]) if four_minute.exists() else None
            )
            rows[(r["label"], r["size"], len(r["records"]))] = r
    return sorted(rows.values(), key=lambda r: (r["label"], r["size"]))


def paired_tables(rows: list[dict], source_paths: dict[str, str]) -> tuple[list[str], list]:
    """The size table and the per-variant table of ``rows``, all summarised over the queries
    every one of them screened (so the rows compare the same queries)."""
    common = set.intersection(*({x["query_id"] for x in r["records"]} for r in rows))
    stats = []
    table = [
        "| label | works | hours | shards | hash entries (M) | screening RSS MB | disk MB "
        "| build wall / CPU s | compaction CPU s | index load s | search p50 / p95 ms "
        "| search CPU p50 / p95 ms "
        "| recall, hard variants | wrong duplicates on positives | negatives: duplicate / "
        "suspect | load avg | commit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        s = summarise([x for x in r["records"] if x["query_id"] in common], source_paths)
        m = r["screen"]
        stats.append((r, s, m))
        table.append(
            f"| {r['label']} | {r['works']:,} | {r['hours']:,.1f} | {r['shards']} | "
            f"{r['hash_entries'] / 1e6:,.1f} | {m.get('rss_mb_peak', float('nan')):,.0f} | "
            f"{r['disk_bytes'] / 1e6:,.0f} | {r['build_wall_s']:,.0f} / {r['build_cpu_s']:,.0f} | "
            f"{_compaction(r)} | {m.get('index_load_s', float('nan')):.1f} | "
            f"{s['search_p50_ms']:.0f} / {s['search_p95_ms']:.0f} | "
            f"{s['search_cpu_p50_ms']:.0f} / {s['search_cpu_p95_ms']:.0f} | "
            f"{100 * s['recall']:.1f} % ({s['found']}/{s['positives']}) | "
            f"{s['pos_false_positive']} | {s['neg_duplicate']} / {s['neg_suspect']} "
            f"(of {s['negatives']}) | {r['loadavg'][0]:.1f} | `{r['commit']}` |"
        )
    variants = sorted({v for _, s, _ in stats for v in s["by_variant"]})
    header = " | ".join(f"{r['label']}, {r['works']:,} works" for r, _, _ in stats)
    table += ["", f"| variant | {header} |", "|---|" + "---:|" * len(stats)]
    for v in variants:
        cells = []
        for _, s, _ in stats:
            k, n = s["by_variant"].get(v, (0, 0))
            cells.append(f"{k}/{n} ({100 * k / max(n, 1):.0f} %)")
        table.append(f"| {v} | " + " | ".join(cells) + " |")
    return table, stats


def four_minute_table(rows: list[dict]) -> list[str]:
    """Per row with a :func:`screen_four_minute` file: the four-minute uploads' verdicts and
    search CPU, with every look and with only the look as it is (``--quick``), the clean
    uploads' with their stereo parts and for their mixes alone; none without."""
    table = [
        "| label | works | plan | copies found | clean kept clean | wrong duplicates "
        "| search CPU p50 / p95 ms, copies | search CPU p50 / p95 ms, clean "
        "| the same, clean uploads' mixes alone |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        for plan, f in (r.get("four_minute") or {}).items():
            table.append(
                f"| {r['label']} | {r['works']:,} | {plan} | {f['found']}/{f['copies']} | "
                f"{f['kept_clean']}/{f['clean']} | {f['wrong_duplicates']} | "
                f"{_ms_pair(f['copies_cpu_ms'])} | {_ms_pair(f['clean_cpu_ms'])} | "
                f"{_ms_pair(f.get('clean_mix_cpu_ms', (np.nan, np.nan)))} |"
            )
    return table if len(table) > 2 else []


def _ms_pair(pair) -> str:
    """``p50 / p95`` in whole ms, ``-`` where a file did not record them."""
    return " / ".join("-" if np.isnan(v) else f"{v:,.0f}" for v in pair)


def _compaction(row: dict) -> str:
    """The row's compaction CPU seconds, "as grown" for a row screened uncompacted."""
    cpu = row.get("compact_cpu_s")
    return "as grown" if cpu is None else f"{cpu:,.0f}"


TARGET_P95_MS = 300  # search CPU p95 at 10^5 works (issue #14)
TARGET_RSS_MB = 1536  # a screening process's RSS at 10^5 works
TARGET_RECALL_DROP = 1  # recall points lost from the smallest catalog to 10^5 works


def plot_scaling(stats: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for label in sorted({r["label"] for r, _, _ in stats}):
        mine = [(r, s, m) for r, s, m in stats if r["label"] == label]
        works = [r["works"] for r, _, _ in mine]
        axes[0].plot(
            works, [s["search_cpu_p50_ms"] for _, s, _ in mine], "o-", label=f"{label} p50"
        )
        axes[0].plot(
            works, [s["search_cpu_p95_ms"] for _, s, _ in mine], "s--", label=f"{label} p95"
        )
        axes[2].plot(works, [100 * s["recall"] for _, s, _ in mine], "o-", label=label)
        measured = [r for r, _, _ in mine if (r.get("four_minute") or {}).get("every look")]
        if measured:
            axes[0].plot(
                [r["works"] for r in measured],
                [r["four_minute"]["every look"]["clean_cpu_ms"][1] for r in measured],
                "^:",
                label=f"{label} p95, clean 4-min uploads",
            )
    mine = [(r, s, m) for r, s, m in stats if r["label"] == stats[0][0]["label"]]
    works = [r["works"] for r, _, _ in mine]
    axes[1].plot(works, [m.get("rss_mb_peak", np.nan) for _, _, m in mine], "o-", label="RSS MB")
    axes[1].plot(works, [r["disk_bytes"] / 1e6 for r, _, _ in mine], "s--", label="disk MB")
    # the targets of issue #14 at 10^5 works
    axes[0].axhline(TARGET_P95_MS, color="grey", ls=":", label=f"target p95 {TARGET_P95_MS} ms")
    axes[1].axhline(TARGET_RSS_MB, color="grey", ls=":", label=f"target RSS {TARGET_RSS_MB} MB")
    smallest = min(stats, key=lambda row: row[0]["works"])[1]["recall"] * 100
    axes[2].axhline(
        smallest - TARGET_RECALL_DROP,
        color="grey",
        ls=":",
        label=f"target: at most {TARGET_RECALL_DROP} point below the smallest catalog",
    )
    low = min(100 * s["recall"] for _, s, _ in stats)
    axes[2].set_ylim(min(low, smallest - TARGET_RECALL_DROP) - 2, 100.5)
    axes[0].set_ylabel("search CPU ms (after fingerprinting)")
    axes[1].set_ylabel("MB")
    axes[2].set_ylabel("recall %, hard variants (source found)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("works in the catalog")
        ax.legend(fontsize=7)
    axes[1].set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(works: Sequence[Path], out: Path, notes: Sequence[str] = ()) -> Path:
    """SCALING.md from the run folders ``works``: one paired table over the queries every row
    screened, and one per folder over its own (larger) query sample."""
    from benchmarks.corpus import cache_dir

    corpus = json.loads((cache_dir(None) / "corpus.json").read_text())
    source_paths = {t["track_id"]: os.path.realpath(t["path"]) for t in corpus["tracks"]}
    rows = load_rows(works)
    table, stats = paired_tables(rows, source_paths)
    plot_dir = out.parent / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    plot = plot_dir / "scaling_prints.png"
    plot_scaling(stats, plot)
    last = max(rows, key=lambda r: r["date"])
    n_common = stats[0][1]["positives"] + stats[0][1]["negatives"]
    text = [
        "# Scaling with fingerprint-level distractors (issue #14)",
        "",
        "Generated by `benchmarks/scaling_prints.py` "
        "(`python -m benchmarks.scaling_prints run --sizes ...`, then `... report`).",
        "",
        f"* Last row measured {last['date']} at commit `{last['commit']}`; machine: "
        f"{last.get('machine', 'not recorded in the rows')} (load average per row: wall-clock "
        "times are inflated by other work on the machine, CPU times much less).",
        "* Catalog: the 113 real works of the benchmark corpus (4.68 h), then distractor "
        "fingerprints cut from the material half of them (`benchmarks/distractor_prints.py`, "
        "`DISTRACTORS.md`). Queries: the hard variants of the other (positive) half, rendered in "
        "`queries-v1`, and a seeded sample of negatives (never-indexed tracks, same variants), "
        "fingerprinted once; the same queries at every size.",
        "* Labels: the audiodup sources each row screened with (`run --models label=path`; "
        "the commit column is the HEAD of the checkout the benchmark ran from when the row was "
        "written). Notes below name them.",
        "* Screening: one fresh process per size and label (`screen`), the production path "
        "(`screening.gather_looks` + `matches_from_looks` + `decide`, what "
        "`Catalog.match_fingerprint` runs: the look at the upload as it is, then the further "
        "looks until one gives a duplicate; their fingerprints made beforehand, outside the "
        "timed search, `prepare_views`). Search = all looks, after fingerprinting, one thread. "
        "RSS is the process's peak resident memory with the index loaded (hash shards "
        "memory-mapped in the sorted layout, chroma IVF shards mapped in place: pages read on "
        "demand).",
        "* Build: distractors committed in batches of 1,250 works, one shard each; wall / CPU "
        "seconds of that growth step (not of the 113 real works, which were fingerprinted from "
        "audio earlier). Then each size is compacted before screening (`run --compact-into`, "
        "one shard by default, its CPU seconds in the table): every work competes with every "
        "other. Left as grown (`--compact-into 0`, 'as grown' in the table), the real works "
        "keep the source catalog's small shards, whose own nearest chroma segments favour "
        "them (the section of 2026-12-01, 11:30-14:30 UTC).",
        *(f"* {note}" for note in notes),
        "",
        f"## Every size, the {n_common} queries screened at all of them",
        "",
        *table,
        "",
        f"![scaling]({'plots/' + plot.name})",
        "",
    ]
    four_minute = four_minute_table(rows)
    if four_minute:
        text += [
            "### Four-minute uploads",
            "",
            "The 20 four-minute MP3s of `benchmarks/cpu_cost.py` (10 cut from catalog works, 10 "
            "from never-indexed tracks), screened in one process per size after the queries "
            "above (`python -m benchmarks.scaling_prints four-minute --catalog CAT --out F`): "
            "fingerprinted with their further looks first, then screened twice, the second "
            "time measured. Issue #14's target: search p95 <= 300 ms at 10^5 works.",
            "",
            *four_minute,
            "",
        ]
    for work in works[:-1] if len(works) > 1 else []:
        own = load_rows([work])
        extra, extra_stats = paired_tables(own, source_paths)
        n = extra_stats[0][1]["positives"] + extra_stats[0][1]["negatives"]
        sizes = ", ".join(f"{w:,}" for w in sorted({r["works"] for r in own}))
        text += [f"## {sizes} works, a larger sample ({n} queries)", "", *extra, ""]
    text += kept_sections(out)
    out.write_text("\n".join(text).rstrip("\n") + "\n")
    return out


KEPT_MARKER = "<!-- the sections below are written by hand; `scaling_prints report` keeps them -->"


def kept_sections(out: Path) -> list[str]:
    """The marker and the hand-written sections after it in ``out``, which a new report keeps
    (none when ``out`` has no marker)."""
    if not out.is_file():
        return []
    existing = out.read_text()
    at = existing.find(KEPT_MARKER)
    return [] if at < 0 else existing[at:].splitlines()


def _run_from(args: argparse.Namespace, sizes: list[int], source: Path) -> None:
    """``run`` with the command line's arguments."""
    run(
        sizes,
        args.work,
        args.seed,
        args.max_negatives,
        source,
        {
            label: path or None
            for label, _, path in (m.partition("=") for m in args.models.split(","))
        },
        args.per_variant,
        {
            int(k): v
            for k, v in (
                json.loads(args.built_elsewhere.read_text()) if args.built_elsewhere else {}
            ).items()
        },
        args.max_query_hits,
        args.compact_into,
    )


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.corpus import add_corpus_option, cache_dir

    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling_prints")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run")
    p_run.add_argument("--sizes", default="113,10000")
    p_run.add_argument("--work", type=Path, default=DEFAULT_WORK)
    p_run.add_argument("--seed", type=int, default=0)
    p_run.add_argument("--max-negatives", type=int, default=300)
    p_run.add_argument("--per-variant", type=int, default=1000, help="positives per variant")
    p_run.add_argument(
        "--built-elsewhere",
        type=Path,
        default=None,
        help="a JSON file {size: grow_catalog timing} for a catalog grown by another process "
        "and copied (with --compact-into 0 it may hold compact_cpu_s and compact_wall_s too)",
    )
    p_run.add_argument("--max-query-hits", type=int, default=None, help="override the setting")
    p_run.add_argument("--source-catalog", type=Path, default=None)
    p_run.add_argument(
        "--compact-into",
        type=int,
        default=1,
        help="shards each size is compacted into before screening (0: as grown)",
    )
    p_run.add_argument(
        "--models",
        default="competing=",
        help="chance models to screen with: label=audiodup sources (empty: this checkout), ...",
    )
    p_screen = sub.add_parser("screen")
    p_screen.add_argument("--catalog", type=Path, required=True)
    p_screen.add_argument("--queries", type=Path, required=True)
    p_screen.add_argument("--out", type=Path, required=True)
    p_screen.add_argument("--max-query-hits", type=int, default=None)
    p_screen.add_argument("--quick", action="store_true", help="only the look as it is")
    p_screen.add_argument(
        "--warm",
        action="store_true",
        help="drop the index files from the page cache, then read them ahead as serve does",
    )
    p_four = sub.add_parser(
        "four-minute", help="search CPU of the 20 four-minute uploads (every look and --quick)"
    )
    p_four.add_argument("--catalog", type=Path, required=True)
    p_four.add_argument("--out", type=Path, required=True)
    p_four.add_argument("--rounds", type=int, default=2, help="the last one is kept")
    p_groups = sub.add_parser("sharded")
    p_groups.add_argument("--catalog", type=Path, required=True)
    p_groups.add_argument("--queries", type=Path, required=True)
    p_groups.add_argument("--out", type=Path, required=True)
    p_groups.add_argument("--groups", type=int, required=True, help="the catalog's shard groups")
    p_groups.add_argument("--only", type=Path, default=None, help="JSON list of query ids")
    p_queries = sub.add_parser(
        "queries",
        help="fingerprint a corpus's hard-variant queries (its catalog tracks'), and list its "
        "catalog tracks in catalog-tracks.txt",
    )
    add_corpus_option(p_queries)
    p_queries.add_argument("--work", type=Path, required=True, help="queries.pkl goes here")
    p_queries.add_argument("--max-negatives", type=int, default=300)
    p_queries.add_argument("--seed", type=int, default=0)
    p_compact = sub.add_parser("compact")
    p_compact.add_argument("catalog", type=Path)
    p_compact.add_argument("--into", type=int, default=1, help="shards after")
    p_report = sub.add_parser("report")
    p_report.add_argument("--work", type=Path, nargs="+", default=[DEFAULT_WORK])
    p_report.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p_report.add_argument("--note", action="append", default=[], help="a line for the header")
    args = parser.parse_args(argv)
    if args.command == "run":
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
        source = args.source_catalog or cache_dir(None) / "calibration-catalog"
        if not (source / "catalog.sqlite").is_file():
            print(f"error: no catalog at {source} (--source-catalog)", file=sys.stderr)
            return 2
        if args.compact_into < 0:
            print("error: --compact-into takes 0 (as grown) or a number of shards", file=sys.stderr)
            return 2
        from audiodup.errors import CatalogError

        try:
            _run_from(args, sizes, source)
        except CatalogError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    elif args.command == "screen":
        screen_catalog(
            args.catalog, args.queries, args.out, args.max_query_hits, args.quick, args.warm
        )
    elif args.command == "four-minute":
        from audiodup.errors import AudiodupError

        try:
            screen_four_minute(args.catalog, args.out, args.rounds)
        except (AudiodupError, OSError, ValueError, subprocess.CalledProcessError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    elif args.command == "sharded":
        from audiodup.errors import AudiodupError

        try:
            only = frozenset(json.loads(args.only.read_text())) if args.only else frozenset()
            screen_over_groups(args.catalog, args.queries, args.out, args.groups, only)
        except (AudiodupError, OSError, ValueError, pickle.UnpicklingError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    elif args.command == "queries":
        from audiodup.errors import AudiodupError

        try:
            args.work.mkdir(parents=True, exist_ok=True)
            print(prepare_queries(args.work, None, args.max_negatives, args.seed, args.corpus))
            print(write_catalog_tracks(args.work, args.corpus))
        except (OSError, ValueError, KeyError, AudiodupError) as exc:
            missing = isinstance(exc, FileNotFoundError)
            hint = f" (run `python -m benchmarks run --corpus {args.corpus}`)" if missing else ""
            print(f"error: {exc}{hint}", file=sys.stderr)
            return 2
    elif args.command == "compact":
        from audiodup.errors import CatalogError

        try:
            print(json.dumps(compact_catalog(args.catalog, args.into)))
        except CatalogError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    else:
        try:
            print(write_report(args.work, args.out, args.note))
        except FileNotFoundError as exc:
            print(
                f"error: {exc} (run `python -m benchmarks.scaling_prints run` first)",
                file=sys.stderr,
            )
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
