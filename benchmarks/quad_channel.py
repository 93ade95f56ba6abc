"""Experiment (issue #14): four-peak keys as a third candidate channel in large catalogs.

Not part of audiodup's screening. In a catalog of 10^5 works a triplet key holds about 257
entries, so a look-up keeps only its rarest keys' 300,000 hits (0.1-0.7 % of a long copy's)
and some hard copies' works are never among the candidates. A key of four peaks (two
tempo-invariant time ratios, three pitch-invariant frequency differences) is far rarer: the
10^5-work catalog's 135 M four-peak entries fall in 22 M keys. This builds such an index from a
catalog's stored fingerprints and screens the scaling benchmark's queries with the channel
switched in: after a sampled look-up, the works with the most four-peak hits in one cell of
(tempo, pitch shift, time offset) join the chroma-voted works as extra candidates, and like
them are verified on all of their triplet hits and weighed against every work in competition
(:func:`audiodup.screening.chroma_voted_candidates`). Verdicts still come from the triplet lines,
chroma and peak checks alone; a look-up of the whole catalog (small catalogs) takes no votes.

    python -m benchmarks.quad_channel build CATALOG QUAD_DIR
    python -m benchmarks.quad_channel screen --catalog CATALOG --quads QUAD_DIR \\
        --queries QUERIES.pkl --out OUT.jsonl [--budget 300000] [--top 8] \\
        [--query-fanout 6] [--probe 0,1,2,3,4] [--groups 1]

``QUERIES.pkl`` and the output are those of ``python -m benchmarks.scaling_prints screen``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import pickle
import sqlite3
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiodup.errors import AudiodupError
from audiodup.fingerprint import Fingerprint
from audiodup.hashes import partner_slots, probe_cells
from audiodup.peaks import PEAK_DTYPE, thin_peaks
from audiodup.settings import DEFAULT_SETTINGS, Settings

CATALOG_FANOUT = 3  # one quad per anchor: its first three partners, as triplets choose theirs
QUERY_FANOUT = 6  # every three of the query anchor's first six partners: 20 quads
ALL_COORDINATES = (0, 1, 2, 3, 4)  # the two time ratios, the three frequency differences
_FIELDS = ("keys", "work", "frame", "bin", "span")
_DTYPES = (np.int64, np.int32, np.int32, np.float32, np.int32)


@dataclass(frozen=True)
class Quads:
    """Four-peak hashes of one recording, parallel arrays."""

    keys: np.ndarray  # int64
    anchor_frame: np.ndarray  # int64
    anchor_bin: np.ndarray  # float64
    span_frames: np.ndarray  # int64: t_d - t_a


def quad_hashes(
    peaks: np.ndarray,
    fanout: int,
    settings: Settings = DEFAULT_SETTINGS,
    probe: Sequence[int] = (),
) -> Quads:
    """Each anchor's quads ``(a, b, c, d)`` of three of its first ``fanout`` partners (chosen
    by rank in time within the triplets' reach, as :func:`audiodup.hashes.triplet_hashes` does),
    keyed by ``(t_b - t_a) / span``, ``(t_c - t_a) / span`` (``settings.ratio_levels`` levels)
    and ``f_b - f_a``, ``f_c - f_a``, ``f_d - f_a`` (whole log bins). Each coordinate in
    ``probe`` (queries) near a level's edge also emits its neighbour's key."""
    peaks = np.asarray(peaks, dtype=PEAK_DTYPE)
    n = len(peaks)
    if n < 4:
        return _no_quads()
    t = peaks["frame"].astype(np.int64)
    f = peaks["bin"].astype(np.float64)
    max_df = settings.hash_max_df_bins
    max_dt = int(settings.hash_max_dt_s * settings.frames_per_second)
    slots = partner_slots(t, f, fanout, max_dt, max_df)
    combos = list(itertools.combinations(range(fanout), 3))
    a = np.repeat(np.arange(n), len(combos))
    b, c, d = (slots[:, [combo[i] for combo in combos]].ravel() for i in range(3))
    ok = (b >= 0) & (c >= 0) & (d >= 0)
    a, b, c, d = a[ok], b[ok], c[ok], d[ok]
    span = t[d] - t[a]
    ok = span >= 3
    a, b, c, d, span = a[ok], b[ok], c[ok], d[ok], span[ok]
    levels = settings.ratio_levels
    df_levels = 2 * max_df + 1
    coords = [
        ((t[b] - t[a]) / span * levels, levels),
        ((t[c] - t[a]) / span * levels, levels),
        (f[b] - f[a] + max_df + 0.5, df_levels),
        (f[c] - f[a] + max_df + 0.5, df_levels),
        (f[d] - f[a] + max_df + 0.5, df_levels),
    ]
    keys, owner = _probed_keys(coords, probe)
    return Quads(keys, t[a][owner], f[a][owner], span[owner])


def _probed_keys(coords, probe: Sequence[int], margin: float = 0.12):
    cells, alternatives = [], []
    for i, (value, levels) in enumerate(coords):
        cell, neighbour = probe_cells(value, levels, margin)
        cells.append(cell)
        alternatives.append(neighbour if i in probe else cell)
    keys, owner = [], []
    for choice in itertools.product((False, True), repeat=len(coords)):
        if any(alt and i not in probe for i, alt in enumerate(choice)):
            continue
        mask = np.ones(len(cells[0]), dtype=bool)
        key = np.zeros(len(cells[0]), dtype=np.int64)
        for alt, cell, other, (_, levels) in zip(choice, cells, alternatives, coords, strict=True):
            if alt:
                mask &= other != cell
            key = key * levels + (other if alt else cell)
        keys.append(key[mask])
        owner.append(np.nonzero(mask)[0])
    return np.concatenate(keys), np.concatenate(owner)


def _no_quads() -> Quads:
    empty = np.zeros(0, dtype=np.int64)
    return Quads(empty, empty, np.zeros(0), empty)


def quad_index(
    works: Iterable[tuple[int, np.ndarray]], settings: Settings = DEFAULT_SETTINGS
) -> dict[str, np.ndarray]:
    """The catalog quads of ``(work_id, peaks)`` pairs, sorted by key."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in _FIELDS}
    for work_id, peaks in works:
        quads = quad_hashes(peaks, CATALOG_FANOUT, settings)
        parts["keys"].append(quads.keys)
        parts["work"].append(np.full(len(quads.keys), work_id, dtype=np.int32))
        parts["frame"].append(quads.anchor_frame.astype(np.int32))
        parts["bin"].append(quads.anchor_bin.astype(np.float32))
        parts["span"].append(quads.span_frames.astype(np.int32))
    if not parts["keys"]:
        return {name: np.zeros(0, dtype) for name, dtype in zip(_FIELDS, _DTYPES, strict=True)}
    keys = np.concatenate(parts.pop("keys"))
    order = np.argsort(keys, kind="stable")
    return {"keys": keys[order]} | {name: np.concatenate(a)[order] for name, a in parts.items()}


def build_quad_index(catalog_dir: Path, out_dir: Path, settings: Settings = DEFAULT_SETTINGS):
    """Every live work's catalog quads, sorted by key, as memory-mappable ``.npy`` files."""
    db = sqlite3.connect(f"file:{catalog_dir / 'catalog.sqlite'}?mode=ro", uri=True)
    rows = db.execute(
        "SELECT f.work_id, f.blob FROM fingerprints f JOIN works w USING (work_id) "
        "WHERE NOT w.removed"
    )
    index = quad_index(((w, Fingerprint.from_bytes(blob).peaks) for w, blob in rows), settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, array in index.items():
        np.save(out_dir / f"{name}.npy", array)
    return len(index["keys"])


def load_quad_index(quad_dir: Path) -> dict[str, np.ndarray]:
    return {name: np.load(quad_dir / f"{name}.npy", mmap_mode="r") for name in _FIELDS}


def quad_candidates(
    groups: list[dict[str, np.ndarray]],
    query: Fingerprint,
    settings: Settings = DEFAULT_SETTINGS,
    budget: int = 300_000,
    top: int = 8,
    fanout: int = QUERY_FANOUT,
    probe: Sequence[int] = ALL_COORDINATES,
) -> list[int]:
    """The ``top`` works with the most quad hits of the query in one cell of (tempo ratio,
    pitch shift, time offset), from the rarest keys first until ``budget`` hits. With several
    ``groups`` (an index split as shard groups would hold it, no second round trip) each looks
    up its own rarest keys within an equal share of ``budget`` and gives its ``top`` works with
    their supports; the merge keeps the ``top`` best (support, then work id: the order one
    index breaks ties in)."""
    quads = query_quads(query, settings, fanout, probe)
    share = budget // len(groups)
    merged = sorted(
        (item for group in groups for item in best_cells(group, quads, settings, share, top)),
        key=lambda item: (-item[1], item[0]),
    )
    return [work for work, _ in merged[:top]]


def split_index(index: dict[str, np.ndarray], groups: int) -> list[dict[str, np.ndarray]]:
    """``index`` split into ``groups`` by work id modulo ``groups``, each still sorted by key."""
    group_of = np.asarray(index["work"]) % groups
    masks = [group_of == g for g in range(groups)]
    return [{name: np.asarray(a)[mask] for name, a in index.items()} for mask in masks]


def query_quads(
    query: Fingerprint,
    settings: Settings = DEFAULT_SETTINGS,
    fanout: int = QUERY_FANOUT,
    probe: Sequence[int] = ALL_COORDINATES,
) -> Quads:
    """The query's quads (at its densest peaks), sorted by key: the searches walk in order."""
    peaks = thin_peaks(query.peaks, max(settings.query_peak_densities), settings.frames_per_second)
    quads = quad_hashes(peaks, fanout, settings, probe)
    order = np.argsort(quads.keys, kind="stable")
    return Quads(*(field[order] for field in dataclasses.astuple(quads)))


def best_cells(
    index: dict[str, np.ndarray], quads: Quads, settings: Settings, budget: int, top: int
) -> list[tuple[int, int]]:
    """``(work_id, support)`` of the ``top`` works whose fullest cell holds most hits."""
    keys = index["keys"]
    lo, hi = np.searchsorted(keys, quads.keys, "left"), np.searchsorted(keys, quads.keys, "right")
    count = hi - lo
    if count.sum() > budget:  # the rarest keys carry the most evidence per hit
        sizes = np.sort(count[count > 0])
        within = sizes[np.cumsum(sizes) <= budget]
        count = np.where(count <= (within[-1] if len(within) else 0), count, 0)
    total = int(count.sum())
    if total == 0:
        return []
    q = np.repeat(np.arange(len(count)), count)
    entry = np.repeat(lo - (np.cumsum(count) - count), count) + np.arange(total)
    log_tempo = np.log(np.maximum(index["span"][entry], 1) / np.maximum(quads.span_frames[q], 1))
    pitch = (quads.anchor_bin[q] - index["bin"][entry]) / settings.bins_per_semitone
    plausible = (np.abs(log_tempo) <= np.log(2.1)) & (np.abs(pitch) <= 12.5)
    q, entry = q[plausible], entry[plausible]
    log_tempo, pitch = log_tempo[plausible], pitch[plausible]
    offset_s = (
        index["frame"][entry] - quads.anchor_frame[q] * np.exp(log_tempo)
    ) / settings.frames_per_second
    # one int64 per cell, ordered as (work, tempo, pitch, offset): work ids below 2^23
    cell = index["work"][entry].astype(np.int64) << 8 | np.round(log_tempo / 0.05).astype(int) + 64
    cell = cell << 8 | np.round(pitch).astype(np.int64) + 64
    cell = cell << 24 | np.round(offset_s / 2).astype(np.int64) + (1 << 23)
    cells, support = np.unique(cell, return_counts=True)
    ranked: dict[int, int] = {}
    for row in np.argsort(-support, kind="stable"):
        ranked.setdefault(int(cells[row] >> 40), int(support[row]))
        if len(ranked) == top:
            break
    return list(ranked.items())


def screen_with_quads(
    catalog_dir: Path,
    quad_dir: Path,
    queries: Path,
    out: Path,
    budget: int = 300_000,
    top: int = 8,
    fanout: int = QUERY_FANOUT,
    probe: Sequence[int] = ALL_COORDINATES,
    groups: int = 1,
) -> None:
    """``scaling_prints.screen_catalog`` with the quad channel's works added to each sampled
    look-up's chroma-voted works (the screening functions patched in this process only); with
    ``groups`` the index split as :func:`quad_candidates` takes it."""
    import audiodup.screening as screening
    from benchmarks.scaling_prints import screen_catalog

    index = load_quad_index(quad_dir)
    parts = split_index(index, groups) if groups > 1 else [index]
    looked_at: list[Fingerprint] = []
    gather, voted = screening.gather_evidence, screening.chroma_voted_works

    def gather_evidence(query, *args, **kwargs):
        looked_at[:] = [query]
        return gather(query, *args, **kwargs)

    def chroma_voted_works(search, limit):
        works = voted(search, limit)
        extra = quad_candidates(
            parts, looked_at[0], budget=budget, top=top, fanout=fanout, probe=probe
        )
        return works + [w for w in extra if w not in works]

    screening.gather_evidence, screening.chroma_voted_works = gather_evidence, chroma_voted_works
    try:
        screen_catalog(catalog_dir, queries, out)
    finally:
        screening.gather_evidence, screening.chroma_voted_works = gather, voted


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quad_channel")
    sub = parser.add_subparsers(dest="command", required=True)
    p_build = sub.add_parser("build")
    p_build.add_argument("catalog", type=Path)
    p_build.add_argument("out", type=Path)
    p_screen = sub.add_parser("screen")
    p_screen.add_argument("--catalog", type=Path, required=True)
    p_screen.add_argument("--quads", type=Path, required=True)
    p_screen.add_argument("--queries", type=Path, required=True)
    p_screen.add_argument("--out", type=Path, required=True)
    p_screen.add_argument("--budget", type=int, default=300_000)
    p_screen.add_argument("--top", type=int, default=8)
    p_screen.add_argument("--query-fanout", type=int, default=QUERY_FANOUT)
    p_screen.add_argument("--groups", type=int, default=1, help="split by work id, budget shared")
    p_screen.add_argument(
        "--probe", default="0,1,2,3,4", help="coordinates probed at their edges ('' for none)"
    )
    args = parser.parse_args(argv)
    if args.command == "build":
        if not (args.catalog / "catalog.sqlite").is_file():
            print(f"error: no catalog at {args.catalog}", file=sys.stderr)
            return 2
        started = time.process_time()
        try:
            n = build_quad_index(args.catalog, args.out)
        except (AudiodupError, sqlite3.Error) as exc:
            print(f"error: {args.catalog}: {exc}", file=sys.stderr)
            return 2
        print(f"{n:,} quad entries in {time.process_time() - started:.0f} CPU-s -> {args.out}")
        return 0
    needed = [args.catalog / "catalog.sqlite", args.queries]
    for path in needed + [args.quads / f"{name}.npy" for name in _FIELDS]:
        if not path.is_file():
            print(f"error: {path} not found", file=sys.stderr)
            return 2
    probe = tuple(int(i) for i in args.probe.split(",") if i.strip())
    try:
        screen_with_quads(
            args.catalog,
            args.quads,
            args.queries,
            args.out,
            args.budget,
            args.top,
            args.query_fanout,
            probe,
            max(args.groups, 1),
        )
    except (ValueError, EOFError, pickle.UnpicklingError) as exc:  # a damaged index or queries
        print(f"error: {args.quads} or {args.queries}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
