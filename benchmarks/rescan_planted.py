"""Hard copies already inside a large catalog: does a rescan find them? (issue #14)

    python -m benchmarks.rescan_planted add CATALOG --queries QUERIES.pkl
    python -m benchmarks.rescan_planted run CATALOG --queries QUERIES.pkl --out OUT.jsonl \\
        [--with-own-line] [--other-tracks]
    python -m benchmarks.rescan_planted summary OUT.jsonl [OUT2.jsonl ...]

``add`` indexes the audio files of the positive queries of a scaling query set
(:mod:`benchmarks.scaling_prints`: hard variants of real corpus tracks) into CATALOG, a copy made
for this (``cp -al`` of its shards and a copy of ``catalog.sqlite``), so the catalog holds both
the originals and their altered copies. ``run`` then screens each planted copy and each of their
originals as a rescan does (:func:`audiodup.rescan.screen.work_query`, the work's file
re-decoded, then :meth:`audiodup.Catalog.match_fingerprint` without the work itself, taking
every further look), and writes one JSON line per screened work: the verdict label of the pair
with its original (or, for an original, with each copy), every other duplicate match, and the
CPU seconds of the search (the further looks' fingerprints, made when a look is taken,
included; decoding not).
``--with-own-line`` screens as rescans did before ef32d06: against the whole catalog in one look,
the work's own match dropped afterwards.

A pair is found when either side's screening labels it (as :func:`audiodup.rescan.find_pairs`
does). Other duplicate matches are sorted by what they are: a copy or original of the same
corpus group (related), a distractor (made from the corpus tracks' fingerprints, so it may hold
real sections of the track) or anything else (false).
"""

from __future__ import annotations

import json
import os
import pickle
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

app = typer.Typer(add_completion=False, no_args_is_help=True)


def _positives(queries: Path) -> list:
    return [q for q, _ in pickle.loads(queries.read_bytes()) if q.role == "positive"]


def _groups() -> tuple[dict[str, str], dict[str, str]]:
    """Corpus track id -> its file, and file -> corpus group."""
    from benchmarks.corpus import cache_dir

    corpus = json.loads((cache_dir(None) / "corpus.json").read_text())
    path_of = {t["track_id"]: os.path.realpath(t["path"]) for t in corpus["tracks"]}
    group_of = {os.path.realpath(t["path"]): t["group"] for t in corpus["tracks"]}
    return path_of, group_of


@app.command()
def add(
    catalog_dir: Path,
    queries: Annotated[Path, typer.Option(help="a scaling query set (pickle)")],
) -> None:
    """Index the positive queries' audio files into CATALOG (a copy made for this)."""
    from audiodup import Catalog

    files = [Path(q.path) for q in _positives(queries)]
    start = time.process_time()
    with Catalog.open(catalog_dir, create=False) as catalog:
        results = catalog.add_paths(files)
    added = sum(r.status == "added" for r in results)
    print(f"{added} of {len(files)} copies added in {time.process_time() - start:.0f} CPU-s")


@app.command()
def run(
    catalog_dir: Path,
    queries: Annotated[Path, typer.Option(help="the query set given to 'add'")],
    out: Annotated[Path, typer.Option(help="JSON lines, one per screened work")],
    with_own_line: Annotated[
        bool, typer.Option(help="screen against the whole catalog, as before ef32d06")
    ] = False,
    other_tracks: Annotated[
        bool, typer.Option(help="also screen every other corpus track of the catalog")
    ] = False,
) -> None:
    """Screen every planted copy and every original (with ``--other-tracks`` every corpus
    track of the catalog: the chance side) as a rescan does."""
    from audiodup import Catalog
    from audiodup.rescan.screen import work_query
    from audiodup.verdict import decide

    positives = _positives(queries)
    path_of, group_of = _groups()
    with Catalog.open(catalog_dir, create=False) as catalog:
        by_path = {os.path.realpath(w.path): w.work_id for w in catalog.works()}
        copy_ids = {by_path[os.path.realpath(q.path)]: q for q in positives}
        original_of = {w: by_path[path_of[q.track_id]] for w, q in copy_ids.items()}
        group = {w: group_of[path_of[q.track_id]] for w, q in copy_ids.items()}
        for w in set(original_of.values()):
            group[w] = group_of[catalog.work(w).path]
        partners: dict[int, set[int]] = {}
        for copy_id, original_id in original_of.items():
            partners.setdefault(copy_id, set()).add(original_id)
            partners.setdefault(original_id, set()).add(copy_id)
        if other_tracks:
            for path, work_id in by_path.items():
                if path in group_of and work_id not in partners:
                    partners[work_id] = set()
                    group[work_id] = group_of[path]
        catalog.indexes()
        with open(out, "w") as sink:
            for work_id in sorted(partners):
                query = work_query(catalog, work_id)
                source = query.source
                start = time.process_time()
                if with_own_line:
                    found = catalog.match_fingerprint(query.fingerprint)
                    found = [m for m in found if m.work_id != work_id]
                else:
                    found = catalog.match_fingerprint(
                        query.fingerprint, query.view, without=(work_id,), every_look=True
                    )
                search_s = time.process_time() - start
                labels = {m.work_id: decide([m], catalog.settings) for m in found}
                others = []
                for m in found:
                    if m.work_id in partners[work_id] or labels[m.work_id] != "duplicate":
                        continue
                    path = catalog.work(m.work_id).path
                    kind = "distractor" if path.startswith("distractor:") else "false"
                    if group.get(m.work_id, group_of.get(os.path.realpath(path))) == group[work_id]:
                        kind = "related"
                    others.append({"work_id": m.work_id, "path": path, "kind": kind})
                record = {
                    "work_id": work_id,
                    "role": "copy"
                    if work_id in copy_ids
                    else "original"
                    if work_id in original_of.values()
                    else "other track",
                    "variant": copy_ids[work_id].variant if work_id in copy_ids else None,
                    "query_id": copy_ids[work_id].query_id if work_id in copy_ids else None,
                    "source": source,
                    "search_cpu_s": search_s,
                    "pairs": {str(p): labels.get(p, "clean") for p in sorted(partners[work_id])},
                    "other_duplicates": others,
                }
                sink.write(json.dumps(record) + "\n")
                sink.flush()
    print(summary_text(out))


def summary_text(path: Path) -> str:
    """Pairs found (duplicate / suspect, from either side), per variant, and search CPU."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    rank = {"clean": 0, "suspect": 1, "duplicate": 2}
    best: dict[tuple[int, int], str] = {}
    variant: dict[tuple[int, int], str] = {}
    for r in records:
        for partner, label in r["pairs"].items():
            key = tuple(sorted((r["work_id"], int(partner))))
            if rank[label] > rank[best.get(key, "clean")]:
                best[key] = label
            best.setdefault(key, "clean")
            if r["role"] == "copy":
                variant[key] = r["variant"]
    n = len(best)
    dup = sum(v == "duplicate" for v in best.values())
    sus = sum(v == "suspect" for v in best.values())
    per_variant: dict[str, list[int]] = {}
    for key, label in best.items():
        per_variant.setdefault(variant.get(key, "?"), [0, 0])
        per_variant[variant.get(key, "?")][0] += label == "duplicate"
        per_variant[variant.get(key, "?")][1] += 1
    kinds: dict[str, int] = {}
    for r in records:
        for o in r["other_duplicates"]:
            kinds[o["kind"]] = kinds.get(o["kind"], 0) + 1
    joined = _joined(records)
    roles: dict[str, int] = {}
    for r in records:
        roles[r["role"]] = roles.get(r["role"], 0) + 1
    cpu = np.array([r["search_cpu_s"] for r in records]) * 1000
    lines = [
        f"{path}: {n} planted pairs, {dup} duplicate, {sus} suspect, {n - dup - sus} missed; "
        f"{sum(joined(*key) for key in best)} of {n} copies in their original's cluster; "
        f"other duplicate matches by kind {kinds}; search CPU per work p50 "
        f"{np.median(cpu):.0f} ms, p95 {np.percentile(cpu, 95):.0f} ms (works screened {roles})"
    ]
    lines += [f"  {v}: {d}/{t}" for v, (d, t) in sorted(per_variant.items())]
    return "\n".join(lines)


def _joined(records: list[dict]):
    """Whether two works are joined by duplicate pairs (a rescan's cluster): a copy may reach
    its original through another copy or the original of the same corpus group, which the
    catalog also holds (links through other works are not followed)."""
    root: dict[int, int] = {}

    def find(w: int) -> int:
        while root.setdefault(w, w) != w:
            w = root[w]
        return w

    for r in records:
        linked = [int(p) for p, label in r["pairs"].items() if label == "duplicate"]
        linked += [o["work_id"] for o in r["other_duplicates"] if o["kind"] == "related"]
        for other in linked:
            root[find(other)] = find(r["work_id"])
    return lambda a, b: find(a) == find(b)


@app.command()
def summary(outs: list[Path]) -> None:
    """Print the summary of each output file."""
    for out in outs:
        print(summary_text(out))


if __name__ == "__main__":
    app()
