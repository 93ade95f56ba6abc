"""How many of a copy's keys reach its work at catalog scale, for any key recipe, without a rebuild.

Issue #14: at 10^5 works the hard copies are lost at retrieval, not at verification (their work
never reaches the candidates). A new key recipe is the way on, but trying one on the 10^5
catalog means an hour of rebuilding. This tool estimates what a look-up at ``--works`` works
would keep of each hard copy:

* **whole support**: the copy's hits in its own work's fullest (tempo, pitch, offset) cell, every
  key looked up (:func:`audiodup.match.work_votes`, :func:`audiodup.quads.best_quad_works` on the
  work alone): what survives the alteration at all;
* **sampled support**: the same, from the keys a budgeted look-up would keep (the rarest first,
  within ``max_query_hits`` triplet hits / ``quad_budget`` four-peak entries, triplet stop words
  left out). A key's entries at ``--works`` works are the benchmark catalog's real works' plus a
  sample of ``--distractors`` distractor works (``benchmarks.distractor_prints``, cut from the
  material half as the scaling benchmark's are) scaled up to the rest. Triplet keys hold
  hundreds of entries each at 10^5 works, so a sample of thousands sizes them well; four-peak
  keys hold about 6, and a key the sample misses counts as the real works' alone, so the
  four-peak estimate errs towards keeping the copy's keys. ``--sizes-from CATALOG`` takes a grown
  catalog's real sizes instead (the current recipe only), which checks the estimate;
* **rank at scale** (estimates only): the work's rank by its sampled support among the
  distractor sample's works, looked up with the same kept keys, scaled to ``--works``
  (:func:`rank_at_scale`). It reaches the candidates when a triplet rank is within
  ``candidate_works`` or a four-peak rank within ``quad_voted_works``. Ranks go by hit count,
  ties counted half; screening breaks the four-peak ties by the hits' rarity.

Against the real 10^5-work catalog of the scaling benchmark (SCALING.md, session 13) the
estimate's sampled supports correlate at 0.985 (triplets) and 0.996 (four-peak), and its triplet
ranks at 0.96 in log (median factor 1.6, the top 30 agreeing for 92 % of the copies).

``--set field=value`` (repeatable) changes the recipe (:class:`audiodup.settings.Settings`
fields) for the copies, the works and the distractors alike: the fields that make keys from
peaks (fan-outs, quantisation, reach, budgets, query densities). Peaks come from the stored
fingerprints, so fields that pick peaks from audio change nothing here.

    python -m benchmarks.key_survival CATALOG QUERIES.pkl [--works 100000] [--set ratio_levels=16]

One JSON line per positive query, then per variant the median supports and the share of copies
whose work reaches the candidates.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from audiodup.match import rarest_within  # the budget rule of a look-up
from benchmarks.lookup_stages import InputError, prepared_queries

MAX_DISTRACTORS = 100_000  # a sample as large as the 10^5 catalog it stands for


@dataclasses.dataclass(frozen=True)
class KeySizes:
    """Entries per key at the estimated catalog size: the real works' counts plus the
    distractor sample's times ``scale`` (``(keys, counts)`` each, keys sorted)."""

    real_triplet: tuple[np.ndarray, np.ndarray]
    real_quad: tuple[np.ndarray, np.ndarray]
    sample_triplet: tuple[np.ndarray, np.ndarray]
    sample_quad: tuple[np.ndarray, np.ndarray]
    scale: float
    cap: int  # the triplet stop-word cap at this size (screening.stop_word_cap)

    def triplet_sizes(self, keys: np.ndarray) -> np.ndarray:
        return _grown(keys, self.real_triplet, self.sample_triplet, self.scale)

    def quad_sizes(self, keys: np.ndarray) -> np.ndarray:
        return _grown(keys, self.real_quad, self.sample_quad, self.scale)


def _grown(keys, real, sample, scale: float) -> np.ndarray:
    return sizes_of(keys, real) + np.round(sizes_of(keys, sample) * scale).astype(np.int64)


def key_counts(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.unique(np.asarray(keys, dtype=np.int64), return_counts=True)


def sizes_of(asked: np.ndarray, table: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Entries under each of ``asked`` keys in ``table`` (0 for a key it does not hold)."""
    keys, counts = table
    if len(keys) == 0:
        return np.zeros(len(asked), dtype=np.int64)
    at = np.minimum(np.searchsorted(keys, asked), len(keys) - 1)
    return np.where(keys[at] == asked, counts[at], 0)


def triplet_support(query_hashes, reference, work_id: int, kept: np.ndarray, settings) -> int:
    """Hits of the kept query hashes in ``work_id``'s fullest coarse cell."""
    from audiodup.match import candidate_works, query_keys, work_votes

    votes = work_votes(
        query_hashes, query_keys(query_hashes, kept), work_id, reference, settings.bins_per_semitone
    )
    best = candidate_works(votes, 1, settings.frames_per_second, 1)
    return int(best[0][1]) if best else 0


def quad_supports(shard, query_quads, kept: np.ndarray, settings, top: int) -> np.ndarray:
    """The best-cell four-peak supports of the ``top`` works of ``shard`` from the kept query
    quads, in the order they are proposed."""
    from audiodup.quads import Quads, best_quad_works

    sub = Quads(*(getattr(query_quads, f.name)[kept] for f in dataclasses.fields(Quads)))
    ranked = best_quad_works(shard, sub, settings, 1 << 40, top)
    return np.array([v.support for v in ranked], dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class Sample:
    """The distractor sample as a catalog of its own (work ids 0 to ``n_works`` - 1): who else
    a copy's kept keys find, and how well, for its work's rank at scale."""

    triplets: object  # LoadedIndexes over one sorted hash shard
    quads: object  # QuadShard
    n_works: int


def catalog_sample(prints: Sequence, settings) -> tuple[Sample, np.ndarray, np.ndarray]:
    """The :class:`Sample` of ``prints``, and their catalog-side triplet and four-peak keys."""
    from audiodup.fingerprint import fingerprint_hashes
    from audiodup.hashes import pack_entry_ids
    from audiodup.index import HashShard, load_indexes, sorted_hash_shard
    from audiodup.quads import catalog_quads, grouped_quads

    t_keys, t_ids, q_parts = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], []
    n = 0
    for work_id, fp in enumerate(prints):
        hashes = fingerprint_hashes(fp, settings)
        t_keys.append(hashes.keys.astype(np.int64))
        t_ids.append(pack_entry_ids(work_id, hashes))
        q_parts.append(catalog_quads(work_id, fp, settings))
        n += 1
    quad_keys = np.concatenate([k for k, _ in q_parts] + [np.zeros(0, np.int64)])
    triplet_keys = np.concatenate(t_keys)
    shard = sorted_hash_shard(triplet_keys, np.concatenate(t_ids))
    indexes = load_indexes([HashShard(shard, None)], [], np.ones(max(n, 1), bool), nprobe=1)
    return Sample(indexes, grouped_quads(q_parts), n), triplet_keys, quad_keys


def grown_sizes(
    real_prints: Sequence, sources: Sequence, works: int, n_distractors: int, seed: int, settings
) -> tuple[KeySizes, Sample]:
    """:class:`KeySizes` of the real works and ``n_distractors`` distractors cut from
    ``sources`` (:func:`benchmarks.distractor_prints.distractor_print`), scaled to ``works``,
    and the distractors' :class:`Sample`."""
    from audiodup.screening import stop_word_cap
    from benchmarks.distractor_prints import distractor_print

    _, real_t, real_q = catalog_sample(real_prints, settings)
    made = [distractor_print(sources, i, seed, settings=settings) for i in range(n_distractors)]
    sample, sample_t, sample_q = catalog_sample(made, settings)
    scale = max(works - len(real_prints), 0) / max(n_distractors, 1)
    entries = len(real_t) + len(sample_t) * scale
    cap = stop_word_cap(entries, settings)
    real = (key_counts(real_t), key_counts(real_q))
    return KeySizes(*real, key_counts(sample_t), key_counts(sample_q), scale, cap), sample


def rank_at_scale(own: int, supports: np.ndarray, scale: float) -> float | None:
    """The work's rank among ``scale`` times the sample's works: 1 + the sample's works with
    more support than ``own`` (ties count half), scaled; None for a work with no support."""
    if own <= 0:
        return None
    supports = np.asarray(supports)
    ahead = float((supports > own).sum() + 0.5 * (supports == own).sum())
    return round(1.0 + ahead * scale, 1)


def sample_triplet_supports(sample: Sample, query_hashes, kept: np.ndarray, settings) -> np.ndarray:
    """Each sample work's best-cell support from the kept query hashes."""
    from audiodup.match import _votes, candidate_works

    rows = np.nonzero(kept)[0]
    hits = sample.triplets.lookup_hashes(query_hashes.keys[rows])
    if hits is None:
        return np.zeros(0)
    bps = settings.bins_per_semitone
    votes = _votes(query_hashes, rows[hits.query_rows], hits.entry_ids, bps)
    ranked = candidate_works(votes, sample.n_works, settings.frames_per_second, 1)
    return np.array([support for _, support in ranked])


def survival_rows(
    sources: Sequence, prepared, source: dict[str, str], sizes, settings, sample=None
):
    """One dict per positive query (see the module docstring); ``sources``: the benchmark
    catalog's works (:func:`benchmarks.distractor_prints.load_sources`), ``sizes``: a
    :class:`KeySizes` or :class:`CatalogSizes`. With the distractor ``sample`` (and
    ``sizes.scale``) each channel's rank of the copy's work at scale too
    (:func:`rank_at_scale`)."""
    from functools import cache

    from audiodup.fingerprint import fingerprint_hashes
    from audiodup.quads import quad_shard, query_quads

    work_of = {os.path.realpath(s.name): i for i, s in enumerate(sources)}

    @cache
    def stored(work_id: int):
        """A work's catalog hashes and its one-work four-peak shard, made once (each work has
        a copy per variant)."""
        fp = sources[work_id].fingerprint
        return fingerprint_hashes(fp, settings), quad_shard([(work_id, fp)], settings)

    for q, fp in prepared:
        work_id = work_of.get(source.get(q.track_id, ""))
        if q.role != "positive" or work_id is None:
            continue
        hashes = fingerprint_hashes(fp, settings, query=True)
        reference, shard = stored(work_id)
        quads = query_quads(fp, settings)
        size_t = sizes.triplet_sizes(hashes.keys.astype(np.int64))
        size_q = sizes.quad_sizes(quads.keys)
        kept_t = rarest_within(
            size_t, (size_t > 0) & (size_t <= sizes.cap), settings.max_query_hits
        )
        kept_q = rarest_within(size_q, size_q > 0, settings.quad_budget)
        row = {
            "query_id": q.query_id,
            "variant": q.variant,
            "triplet_whole": triplet_support(hashes, reference, work_id, size_t > 0, settings),
            "triplet_sampled": triplet_support(hashes, reference, work_id, kept_t, settings),
            "quad_whole": int(quad_supports(shard, quads, size_q > 0, settings, 1).sum()),
            "quad_sampled": int(quad_supports(shard, quads, kept_q, settings, 1).sum()),
            "triplet_keys_kept": round(float(kept_t.mean()), 4) if len(kept_t) else 0.0,
            "quad_keys_kept": round(float(kept_q.mean()), 4) if len(kept_q) else 0.0,
        }
        if sample is not None:
            others = sample_triplet_supports(sample, hashes, kept_t, settings)
            row["triplet_rank"] = rank_at_scale(row["triplet_sampled"], others, sizes.scale)
            others = quad_supports(sample.quads, quads, kept_q, settings, sample.n_works)
            row["quad_rank"] = rank_at_scale(row["quad_sampled"], others, sizes.scale)
        yield row


def estimated_sizes(sources: Sequence, works: int, n_distractors: int, seed: int, settings):
    """:func:`grown_sizes` (sizes and sample) from the benchmark catalog's works ``sources``,
    the distractors cut from its material half
    (:func:`benchmarks.distractor_prints.split_sources`)."""
    from benchmarks.distractor_prints import split_sources

    _, material = split_sources([s.name for s in sources], seed)
    return grown_sizes(
        [source.fingerprint for source in sources],
        [s for s in sources if s.name in material],
        works,
        n_distractors,
        seed,
        settings,
    )


def catalog_settings(catalog_dir: Path):
    from audiodup.catalog import Catalog

    with Catalog.open(catalog_dir, create=False) as catalog:
        return catalog.settings


class CatalogSizes:
    """A grown catalog's real entries per key (the current recipe's keys only)."""

    def __init__(self, catalog_dir: Path) -> None:
        from audiodup.catalog import Catalog
        from audiodup.screening import _max_bucket_hits

        with Catalog.open(catalog_dir, create=False) as catalog:
            indexes = catalog.indexes()
            self.bucket_sizes = np.asarray(indexes.bucket_sizes)
            self.cap = _max_bucket_hits(indexes, catalog.settings)
            self.quad_shards = list(indexes.quad_shards)

    def triplet_sizes(self, keys: np.ndarray) -> np.ndarray:
        return self.bucket_sizes[keys]

    def quad_sizes(self, keys: np.ndarray) -> np.ndarray:
        """Entries of each key's bucket (about two keys share one, as a look-up counts them)."""
        from audiodup.quads import _bucket_and_check

        total = np.zeros(len(keys), dtype=np.int64)
        for shard in self.quad_shards:
            bucket, _ = _bucket_and_check(keys, shard.bits)
            order = np.argsort(bucket, kind="stable")
            _, count = shard.buckets(bucket[order])
            total[order] += count
        return total


def reaches_candidates(row: dict, settings) -> bool | None:
    """Whether the estimated ranks put the work among the candidates (None: no ranks)."""
    if "triplet_rank" not in row:
        return None
    t, q = row["triplet_rank"], row["quad_rank"]
    return bool(
        (t is not None and t <= settings.candidate_works)
        or (q is not None and q <= settings.quad_voted_works)
    )


def summary(rows: Sequence[dict], settings) -> dict:
    """Per variant: copies, medians of the four supports, and the share whose work reaches the
    candidates (:func:`reaches_candidates`; None without ranks)."""
    by_variant: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_variant[row["variant"]].append(row)
    out = {}
    for variant, group in sorted(by_variant.items()):
        medians = {
            name: float(np.median([r[name] for r in group]))
            for name in ("triplet_whole", "triplet_sampled", "quad_whole", "quad_sampled")
        }
        reached = [reaches_candidates(r, settings) for r in group]
        share = None if None in reached else round(float(np.mean(reached)), 3)
        out[variant] = {"copies": len(group), **medians, "reach_share": share}
    return out


def parse_changes(pairs: Sequence[str]) -> dict:
    """``field=value`` pairs as Settings changes, each value parsed as the field's type."""
    from audiodup.settings import DEFAULT_SETTINGS

    changes = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not hasattr(DEFAULT_SETTINGS, name):
            raise InputError(f"--set takes FIELD=VALUE with a Settings field, not {pair!r}")
        current = getattr(DEFAULT_SETTINGS, name)
        try:
            if isinstance(current, tuple):
                value = tuple(type(current[0])(v) for v in text.split(","))
            else:
                value = type(current)(text)
        except ValueError:
            kind = type(current[0] if isinstance(current, tuple) else current).__name__
            wanted = f"list of {kind}" if isinstance(current, tuple) else kind
            raise InputError(f"--set {name}: {text!r} is not a {wanted}") from None
        changes[name] = value
    return changes


def main(argv: Sequence[str]) -> int:
    from audiodup.errors import AudiodupError

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.key_survival",
        description="What a look-up at catalog scale keeps of each hard copy, for a key recipe.",
    )
    parser.add_argument("catalog", type=Path, help="the benchmark catalog (its real works)")
    parser.add_argument("queries", type=Path, help="query pickle of benchmarks.scaling_prints")
    parser.add_argument("--works", type=int, default=100_000, help="catalog size to estimate")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--sizes-from", type=Path, help="a grown catalog's real key sizes")
    parser.add_argument("--distractors", type=int, default=5000, help="distractor sample size")
    parser.add_argument("--seed", type=int, default=0, help="the scaling benchmark's seed")
    args = parser.parse_args(argv)
    try:
        if args.works < 1 or not 1 <= args.distractors <= MAX_DISTRACTORS:
            raise InputError(
                f"--works takes 1 or more and --distractors 1 to {MAX_DISTRACTORS:,}, "
                f"not {args.works} and {args.distractors}"
            )
        changes = parse_changes(args.set)
        if args.sizes_from is not None and changes:
            raise InputError("--sizes-from holds the current recipe's keys: no --set with it")
        extra = [args.sizes_from] if args.sizes_from is not None else []
        prepared, source = prepared_queries((args.catalog, args.queries, *extra), args.queries)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        from benchmarks.distractor_prints import load_sources

        settings = dataclasses.replace(catalog_settings(args.catalog), **changes)
        real = load_sources(args.catalog)  # each stored fingerprint decoded once
        try:
            catalog_sample([source.fingerprint for source in real[:1]], settings)
        except ValueError as exc:  # e.g. quantisation levels the key layout cannot hold
            raise InputError(f"--set: this recipe cannot make keys: {exc}") from None
        sample = None
        if args.sizes_from is not None:
            sizes = CatalogSizes(args.sizes_from)
        else:
            sizes, sample = estimated_sizes(real, args.works, args.distractors, args.seed, settings)
        rows = []
        for row in survival_rows(real, prepared, source, sizes, settings, sample):
            rows.append(row)
            print(json.dumps(row), flush=True)
    except (AudiodupError, InputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"summary": summary(rows, settings), "works": args.works, "set": args.set}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
