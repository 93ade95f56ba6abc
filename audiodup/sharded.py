"""Screening against a catalog split into shard groups held by Dask workers (scatter-gather).

A catalog split with ``audiodup index shard --groups N`` (:meth:`CatalogStore.split_shards`)
keeps work ``w`` in group ``w % N``, and every shard within one group. Each group's shards are
opened once by the Dask worker that first screens against them and kept there (keyed by the
catalog, the group and the catalog's ``index_key``, so a changed catalog is read again).

A screening is :func:`audiodup.screening.gather_evidence` cut at its seams, in up to eight
rounds, each sent at once to every group concerned and gathered with a bounded wait:

1. **hashes**: each group looks the query's hashes up in its shards, with the catalog-wide
   bucket sizes and entry count (:class:`CatalogTotals`, sent once), and ranks its top
   ``candidate_works``; the client keeps the top ``candidate_works`` of all
   (:func:`audiodup.match.candidate_order`, as :func:`audiodup.match.candidate_works` ranks
   them: the global cut is exact because each group returns its own top ones). A whole look-up's
   candidates come verified by their groups; when the hit budget dropped keys, only the
   catalog's top ones are verified, on all their hits, by their groups (one more round: every
   group verifying its own top ones cost one process's verification once per group). The client
   scores them over the whole catalog (``n_works``, the chance background of all candidates,
   the kept candidates' full hits in competition). A decisive line ends here.
2. **chroma search**: each group returns its shards' nearest segments; the client lays them out
   in shard order, as one process would see them, and ranks the chroma candidates. When the
   look-up was a sample, each group also returns its best works on four-peak keys, each shard
   within its catalog-wide share of the budget (one more round; :mod:`audiodup.quads`), and the
   client keeps the best of all; the works most query segments found, then those, that are
   not candidates yet are verified on all their hits by the groups that hold them (one more
   round) and join the candidates in vote order
   (:func:`audiodup.screening.chroma_voted_candidates`); a decisive line ends here.
3. **chroma alignment** of those candidates, each in its own group; scored by the client. On
   the look as it is, their alignments over the whole tempo range too (one more round), from
   which the client picks the swept leads.
4. **guided peak checks** of the alignments the client picked, each in its own group.

Every step's arithmetic is the one-process code on the same shard files, so the verdicts are the
same as screening the catalog in one process (``tests/test_sharded.py`` compares the JSON).
A worker lost during a round: Dask runs its tasks again on another worker, which opens the
group's shards. A lost worker that held the look's query or the catalog totals cancels the
look's rounds; the look is then taken once more, both sent anew (a second loss within it is a
:class:`~audiodup.errors.ClusterError`). So is a look during which the catalog changed before
a group was opened for it (:class:`~audiodup.errors.CatalogChangedError`). A cluster that gives
no answer within ``timeout_s``, or has no worker left, raises
:class:`~audiodup.errors.ClusterError` (:mod:`audiodup.dask_client`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np

from . import dask_client
from .allocator import keep_freed_memory
from .errors import CatalogChangedError, CatalogError, ClusterDataLostError, ClusterError
from .fingerprint import Fingerprint, fingerprint_hashes
from .index import ChromaHits, LoadedIndexes, set_threads
from .match import ChromaEvidence, candidate_order, search_chroma_segments
from .peakcheck import Alignment, PeakCheck, Related
from .quads import QuadVote, merged_quad_works, query_quads
from .results import Match, path_text
from .screening import (
    Candidate,
    Candidates,
    Evidence,
    HashFinding,
    View,
    _memo,
    aligned_chroma,
    best_peak_checks,
    cell_leads,
    checked_guesses,
    chroma_candidate_scales,
    decisive,
    extra_chroma_candidates,
    first_and_extra_leads,
    hits_in_competition,
    look_again,
    look_votes,
    matches_from_looks,
    material_lines,
    one_recording,
    peak_guesses,
    quad_leads,
    score_chroma,
    score_lines,
    stored_hashes,
    swept_chroma,
    verified_candidates,
    verified_lines,
    vote_density,
    voted_extra,
    voted_items,
    voted_lead_works,
    voted_leads,
    with_candidates,
    works_verified,
)
from .settings import Settings
from .store import CatalogStore, available_memory


@dataclass(frozen=True)
class CatalogTotals:
    """What every group screens with besides its own shards: catalog-wide statistics."""

    bucket_sizes: np.ndarray  # int64 entries per hash key over all shards
    n_hash_entries: int
    n_works: int  # live works
    has_chroma: bool
    n_quad_entries: int = 0  # four-peak entries over all shards (each shard's budget share)
    n_quad_shards: int = 0  # four-peak shards over all groups (the floor of a shard's share)


@dataclass
class GroupIndexes(LoadedIndexes):
    """One group's shards, answering for the catalog-wide statistics with the whole catalog's."""

    catalog_hash_entries: int = 0
    catalog_quad_entries: int = 0
    catalog_quad_shards: int = 0

    @property
    def n_hash_entries(self) -> int:
        return self.catalog_hash_entries

    @property
    def n_quad_entries(self) -> int:
        return self.catalog_quad_entries

    @property
    def n_quad_shards(self) -> int:
        return self.catalog_quad_shards


@dataclass(frozen=True)
class GroupSpec:
    """Which shard group of which catalog snapshot a task reads."""

    root: str
    settings: Settings
    group: int
    n_groups: int
    index_key: tuple


# -- on the workers ------------------------------------------------------------------------------
class ShardGroup:
    """One group's shards and its catalog, opened once on a worker."""

    def __init__(self, spec: GroupSpec):
        self.spec = spec
        set_threads(spec.settings.faiss_threads)
        keep_freed_memory()
        try:
            self.store = CatalogStore(Path(spec.root), spec.settings, create=False)
        except (CatalogError, OSError) as exc:  # the client opened it: this worker cannot see it
            raise dask_client.catalog_unseen(spec.root, exc) from exc
        self.lock = threading.Lock()  # one SQLite connection, several worker threads
        self.indexes = self.store.load_indexes(group=(spec.group, spec.n_groups))
        shard_ids = self.store.group_shards(spec.n_groups).get(spec.group, [])
        if self.store.index_key() != spec.index_key:
            self.store.close()
            raise CatalogChangedError(f"catalog {spec.root} changed while screening; try again")
        self.shard_ids = shard_ids  # the loaded shards' ids, in their order
        # the worker keeps the group open: its first rounds do not page the files in one by one
        self.store.read_ahead_in_background(available_memory() // 2, shard_ids)

    def fingerprint(self, work_id: int) -> Fingerprint:
        with self.lock:
            return self.store.fingerprint(work_id)

    def screened(self, totals: CatalogTotals, left_out: tuple[int, ...] = ()) -> GroupIndexes:
        """The group's shards with the catalog-wide statistics, without the works ``left_out``
        for one query (:meth:`LoadedIndexes.without`)."""
        own = self.indexes
        screened = GroupIndexes(
            own.hash_shards,
            own.chroma_shards,
            own.live,
            totals.bucket_sizes,
            own.shard_has_key,
            own.quad_shards,
            catalog_hash_entries=totals.n_hash_entries,
            catalog_quad_entries=totals.n_quad_entries,
            catalog_quad_shards=totals.n_quad_shards,
        )
        return screened.without(left_out)


_OPEN: dict[tuple, ShardGroup] = {}
_OPEN_LOCK = threading.Lock()


def open_group(spec: GroupSpec) -> ShardGroup:
    """The worker's open :class:`ShardGroup` of ``spec`` (opened on first use; an older snapshot
    of the same group is dropped)."""
    worker = _worker_address()
    key = (worker, spec)
    with _OPEN_LOCK:
        if key not in _OPEN:
            for old in [k for k in _OPEN if k[0] == worker and _same_group(k[1], spec)]:
                _OPEN.pop(old).store.close()
            _OPEN[key] = ShardGroup(spec)
        return _OPEN[key]


def _same_group(a: GroupSpec, b: GroupSpec) -> bool:
    return (a.root, a.settings, a.group, a.n_groups) == (b.root, b.settings, b.group, b.n_groups)


def _worker_address() -> str:
    """This worker's address (several workers may share a process: a threaded LocalCluster)."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return "local"


def group_totals(spec: GroupSpec) -> tuple[np.ndarray, int, int, bool, int, int]:
    """The group's bucket sizes, hash entries, the catalog's live works, whether the group
    has chroma shards, its four-peak entries and four-peak shards."""
    indexes = open_group(spec).indexes
    n_live = int(indexes.live.sum())
    return (
        indexes.bucket_sizes,
        indexes.n_hash_entries,
        n_live,
        indexes.has_chroma,
        indexes.n_quad_entries,
        indexes.n_quad_shards,
    )


def group_hashes(
    spec: GroupSpec, totals: CatalogTotals, query: Fingerprint, left_out: tuple[int, ...] = ()
) -> Candidates:
    """The group's best candidate works and the hit counts of its works that got hits
    (:func:`audiodup.screening.verified_candidates`). A whole look-up's candidates come with
    their verified hash lines; a sampled one's without: the client verifies only the
    catalog's best (:func:`group_verified_works`), not every group's."""
    group = open_group(spec)
    indexes = group.screened(totals, left_out)
    return verified_candidates(query, indexes, spec.settings, group, verify_sampled=False)


def group_verified_works(
    spec: GroupSpec,
    totals: CatalogTotals,
    query: Fingerprint,
    items: list[tuple[int, float]],
    left_out: tuple[int, ...] = (),
) -> list[Candidate]:
    """The group's works of ``items`` (``(work_id, support)``) verified on all their hits
    (:func:`audiodup.screening.works_verified`), in order."""
    group = open_group(spec)
    settings = spec.settings
    return works_verified(
        fingerprint_hashes(query, settings, query=True),
        items,
        group.screened(totals, left_out),
        settings,
        stored_hashes(_memo(group.fingerprint), settings),
    )


def group_quad_works(
    spec: GroupSpec, totals: CatalogTotals, query: Fingerprint, left_out: tuple[int, ...] = ()
) -> list[tuple[int, float]]:
    """The group's best ``(work_id, support)`` of the query's four-peak hits, each shard
    within its catalog-wide share of the budget (:meth:`LoadedIndexes.quad_works`)."""
    group = open_group(spec)
    settings = spec.settings
    quads = query_quads(query, settings)
    indexes = group.screened(totals, left_out)
    return indexes.quad_works(quads, settings, settings.quad_voted_works)


def group_chroma_hits(
    spec: GroupSpec, vectors: np.ndarray, k: int, left_out: tuple[int, ...] = ()
) -> list[tuple[int, ChromaHits]]:
    """``(shard_id, hits)`` of each of the group's chroma shards that holds segments."""
    group = open_group(spec)
    live = group.indexes.without(left_out).live
    out = []
    for shard_id, shard in zip(group.shard_ids, group.indexes.chroma_shards, strict=True):
        one = LoadedIndexes([], [shard], live, np.zeros(0, dtype=np.int64))
        hits = one.search_chroma(vectors, k)
        if hits is not None:
            out.append((shard_id, hits))
    return out


def group_alignments(
    spec: GroupSpec, query: Fingerprint, candidates: list[tuple[int, float]]
) -> list[ChromaEvidence]:
    """The chroma alignments of the group's ``(work_id, time_scale)`` candidates."""
    group = open_group(spec)
    return aligned_chroma(query, candidates, spec.settings, _memo(group.fingerprint))


def group_swept_chroma(
    spec: GroupSpec, query: Fingerprint, candidates: list[tuple[int, float]]
) -> list[ChromaEvidence]:
    """The chroma alignments of the group's candidates over the whole tempo range
    (:func:`audiodup.screening.swept_chroma`)."""
    group = open_group(spec)
    return swept_chroma(query, candidates, spec.settings, _memo(group.fingerprint))


def group_peak_checks(
    spec: GroupSpec, query: Fingerprint, guesses: list[tuple[int, Alignment]]
) -> list[PeakCheck | None]:
    """The guided peak checks of the group's ``(work_id, alignment)`` guesses, in order."""
    group = open_group(spec)
    return checked_guesses(query, guesses, spec.settings, _memo(group.fingerprint))


# -- on the client -------------------------------------------------------------------------------
def _scored(
    found: Candidates, n_works: int, query: Fingerprint, settings: Settings, related: Related
) -> dict[int, HashFinding]:
    """The candidates' lines scored over the whole catalog, as one process scores them
    (:func:`audiodup.screening.scored_lines`)."""
    hit_counts = hits_in_competition(
        found.hit_works,
        found.hit_counts,
        found.candidates,
        n_works - len(found.hit_works),
        found.unseen_hits,
    )
    lines = verified_lines(found).values()
    return score_lines(lines, n_works, settings, hit_counts, query.duration_s, related)


_CLIENT_CLOSED = "the Dask scheduler went away and the connection to it was closed"
_RECONNECT_PROBE_S = 2.0  # how long a readiness probe waits to connect again


class ShardedScreening:
    """Screens queries against a split catalog's shard groups on a Dask cluster.

    >>> with Catalog.open("split-catalog") as catalog:                  # doctest: +SKIP
    ...     sharded = ShardedScreening(catalog.store, catalog.settings, "tcp://host:8786")
    ...     catalog.screen_with(sharded.match_fingerprint, sharded.totals)
    ...     verdict = catalog.screen("upload.mp3")

    Every worker must see the catalog folder at the same absolute path. ``timeout_s`` bounds
    each round's wait; ``no_workers_s`` how long a cluster without workers is waited for.
    """

    def __init__(
        self,
        store: CatalogStore,
        settings: Settings,
        dask,
        *,
        timeout_s: float = dask_client.DEFAULT_TIMEOUT_S,
        no_workers_s: float = dask_client.DEFAULT_NO_WORKERS_S,
    ):
        self.store = store
        self.settings = settings
        self.root = str(Path(store.root).absolute())
        self.timeout_s = timeout_s
        self.no_workers_s = no_workers_s
        self._dask = dask  # the address to connect to again, when the client is ours
        self.client, self._own_client = dask_client.connect(dask, min(timeout_s, no_workers_s))
        self._lock = threading.Lock()
        self._key = None
        self._specs: list[GroupSpec] = []
        self._totals = None  # CatalogTotals, and its future on the workers
        self._totals_future = None
        self._homes: list[str] = []

    def close(self) -> None:
        with self._lock:
            self._totals_future = None  # released once no look holds it
            if self._own_client:
                dask_client.close(self.client)

    def __enter__(self) -> ShardedScreening:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the rounds ------------------------------------------------------------------------
    def match_fingerprint(
        self,
        query: Fingerprint,
        view: View | None = None,
        without: Sequence[int] = (),
        every_look: bool = False,
    ) -> list[Match]:
        """Every work that explains part of the query, most certain first, with the further
        looks of ``view`` (all of them with ``every_look``) and ``without`` those works (as
        :func:`audiodup.screening.match_fingerprint`)."""
        works = _LockedWorks(self)
        related = self._one_recording()  # once per screening: its pairs hold for every look
        gather = partial(self.gather_evidence, without=without, related=related)
        looks = look_again(query, gather, self.settings, works, view, every_look)
        return matches_from_looks(looks, self.settings, works)

    def gather_evidence(
        self,
        query: Fingerprint,
        *,
        sweep_all_tempos: bool = True,
        time_scale: float = 1.0,
        without: Sequence[int] = (),
        related: Related | None = None,
        look_factor: int = 1,
    ) -> Evidence:
        """:func:`audiodup.screening.gather_evidence`, scattered over the shard groups
        (``without``: works left out, :meth:`LoadedIndexes.without`; ``related``: as there). A
        look whose query or catalog totals were held by a worker that was lost (its rounds
        cancelled) is taken once more, both sent anew to the workers there are then; so is a
        look during which the catalog changed (a commit, or a merge swapped in, before a group
        was opened for it), on the catalog as it is then."""
        related = related or self._one_recording()
        look = partial(
            self._look,
            query,
            sweep_all_tempos=sweep_all_tempos,
            time_scale=time_scale,
            related=related,
            look_factor=look_factor,
        )
        try:
            return self._attempt(look, without)
        except (ClusterDataLostError, CatalogChangedError):
            return self._attempt(look, without)

    def _one_recording(self) -> Related:
        """Which works are copies of one recording (:func:`audiodup.screening.one_recording`),
        from the client's own store."""
        reference = _memo(_LockedWorks(self).fingerprint)
        return one_recording(reference, stored_hashes(reference, self.settings), self.settings)

    def _attempt(self, look, without: Sequence[int]) -> Evidence:
        """``look(current, without=...)`` on the catalog as it is now. Cancelled rounds forget
        the catalog totals when they were lost too; an error raised because the scheduler
        closed the client meanwhile (an outage longer than the client waits) becomes a
        ``ClusterError``."""
        current = self._current()
        try:
            return look(current, without=without)
        except ClusterDataLostError:
            self._forget_totals(current[2])
            raise
        except ClusterError:
            raise
        except Exception:
            if dask_client.is_closed(self.client):
                raise ClusterError(_CLIENT_CLOSED) from None
            raise

    def _look(
        self,
        query: Fingerprint,
        current: tuple[list[GroupSpec], CatalogTotals, object],
        *,
        sweep_all_tempos: bool,
        time_scale: float,
        without: Sequence[int],
        related: Related,
        look_factor: int,
    ) -> Evidence:
        specs, totals, totals_future = current
        settings = self.settings
        works = _LockedWorks(self)
        left_out = tuple(sorted({w for w in without if works.work(w) is not None}))
        n_works = max(totals.n_works - len(left_out), 1)
        query_future = self._scatter(query)
        try:
            parts = self._each(
                specs, group_hashes, totals_future, query_future, left_out, what="hashes"
            )
            found = Candidates(
                self._top_candidates(parts),
                np.concatenate([part.hit_works for part in parts]),  # apart by group
                np.concatenate([part.hit_counts for part in parts]),
                max((part.unseen_hits for part in parts), default=0.0),  # same in every group
            )
            if found.unseen_hits > 0:  # sampled: the catalog's best, verified in their groups
                ranked = [(c.work_id, c.support) for c in found.candidates]
                verified = self._verified(specs, totals_future, query_future, ranked, left_out)
                found = replace(found, candidates=verified)
            hashes = _scored(found, n_works, query, settings, related)
            if decisive(hashes, settings, look_factor):
                return Evidence(n_works, hashes)
            chroma_search = _GatheredChroma(self, specs, left_out, totals.has_chroma)
            search = search_chroma_segments(
                query, chroma_search, settings, time_scale, vote_density(found, settings)
            )
            votes = look_votes(search, found, settings)
            extra, quad_votes = self._voted(
                specs, totals, totals_future, query_future, found, votes, left_out
            )
            if extra:
                found = with_candidates(found, extra)
                hashes = _scored(found, n_works, query, settings, related)
                if decisive(hashes, settings, look_factor):
                    return Evidence(n_works, hashes)
            candidates = chroma_candidate_scales(search, settings)
            voted = voted_lead_works(votes, candidates, settings)
            # the voted works are no candidates: one round of alignments for both
            aligned = self._per_work(
                specs, group_alignments, query_future, candidates + voted, "alignments"
            )
            by_work = {ev.work_id: ev for part in aligned for ev in part}
            chroma = score_chroma(
                [by_work[w] for w, _ in candidates if w in by_work], n_works, settings
            )
            leads = []
            if sweep_all_tempos and settings.chroma_sweep_all_tempos:
                extra = extra_chroma_candidates(search, settings, query)
                swept = self._per_work(
                    specs, group_swept_chroma, query_future, candidates + extra, "swept alignments"
                )
                every = [ev for part in swept for ev in part]
                leads = first_and_extra_leads(every, candidates, extra, chroma, settings)
            leads += voted_leads([by_work[w] for w, _ in voted if w in by_work], settings)
            hashed = {w: f.evidence for w, f in hashes.items()}
            cells = cell_leads(found.candidates, settings)
            quad_cells = quad_leads(quad_votes, settings)
            guesses = peak_guesses(hashed, chroma, settings, leads, cells, quad_cells)
            checks = self._checks(specs, query_future, guesses)
            lines = material_lines(hashes, settings)
            peaks = best_peak_checks(guesses, checks, settings, lines, related)
            return Evidence(n_works, hashes, tuple(chroma), peaks)
        finally:
            query_future.release()

    def _voted(
        self,
        specs,
        totals: CatalogTotals,
        totals_future,
        query_future,
        found: Candidates,
        votes: list[tuple[int, float]],
        left_out: tuple[int, ...],
    ) -> tuple[list[Candidate], list[QuadVote]]:
        """The chroma-voted works (``votes``, :func:`audiodup.screening.look_votes`) and the
        quad-voted works ``found`` lacks, verified by their groups, in vote
        order (as :func:`audiodup.screening.chroma_voted_candidates` adds them), and the quad
        votes (their leads: :func:`audiodup.screening.quad_leads`); none when the look-up was
        whole."""
        if found.unseen_hits <= 0:
            return [], []
        settings = self.settings
        quad_votes: list[QuadVote] = []
        if settings.quad_voted_works > 0 and totals.n_quad_entries > 0:
            parts = self._each(
                specs, group_quad_works, totals_future, query_future, left_out, what="quads"
            )
            quad_votes = merged_quad_works(
                parts, settings.quad_voted_works, settings.peak_check_quad_leads
            )
        extra = voted_extra(found, [w for w, _ in votes], [v.work_id for v in quad_votes])
        items = voted_items(extra)
        return self._verified(specs, totals_future, query_future, items, left_out), quad_votes

    def _verified(
        self,
        specs,
        totals_future,
        query_future,
        items: list[tuple[int, float]],
        left_out: tuple[int, ...],
    ) -> list[Candidate]:
        """``(work_id, support)`` items verified on all their hits by their groups
        (:func:`group_verified_works`), in order."""
        parts = self._by_group(specs, items)
        busy = [(spec, part) for spec, part in zip(specs, parts, strict=True) if part]
        futures = [
            self._submit(
                group_verified_works,
                spec,
                totals_future,
                query_future,
                part,
                left_out,
                group=spec.group,
            )
            for spec, part in busy
        ]
        verified = {c.work_id: c for part in self._gather(futures, "verified works") for c in part}
        return [verified[w] for w, _ in items]

    def _top_candidates(self, found: list[Candidates]) -> list[Candidate]:
        """The ``candidate_works`` best candidates over all groups, in the order one process
        ranks them (:func:`audiodup.match.candidate_order`)."""
        merged = sorted(
            (c for part in found for c in part.candidates),
            key=lambda c: candidate_order(c.work_id, c.support),
        )
        return merged[: self.settings.candidate_works]

    def _per_work(self, specs, task, query_future, items: list, what: str) -> list:
        """``task(spec, query, its_items)`` on each group that has some of ``items`` (tuples led
        by a work id), results in group order."""
        parts = self._by_group(specs, items)
        busy = [(spec, part) for spec, part in zip(specs, parts, strict=True) if part]
        futures = [
            self._submit(task, spec, query_future, part, group=spec.group) for spec, part in busy
        ]
        return self._gather(futures, what)

    def _checks(self, specs, query_future, guesses) -> list[PeakCheck | None]:
        """Each guess's peak check, in guess order, run in the guess's group."""
        n_groups = len(specs)
        order = [
            [i for i, g in enumerate(guesses) if g[0] % n_groups == k] for k in range(n_groups)
        ]
        busy = [k for k in range(n_groups) if order[k]]
        futures = [
            self._submit(
                group_peak_checks,
                specs[k],
                query_future,
                [(guesses[i][0], guesses[i][1]) for i in order[k]],
                group=k,
            )
            for k in busy
        ]
        checks: list[PeakCheck | None] = [None] * len(guesses)
        for k, part in zip(busy, self._gather(futures, "peak checks"), strict=True):
            for i, check in zip(order[k], part, strict=True):
                checks[i] = check
        return checks

    @staticmethod
    def _by_group(specs, items: list) -> list[list]:
        parts: list[list] = [[] for _ in specs]
        for item in items:
            parts[item[0] % len(specs)].append(item)
        return parts

    def chroma_hits(
        self, specs, vectors: np.ndarray, k: int, left_out: tuple[int, ...] = ()
    ) -> ChromaHits | None:
        """Every group's chroma hits, shards side by side in shard order (as one process lays
        them out: a tie between works is broken the same way)."""
        vectors_future = self._scatter(vectors)
        try:
            futures = [
                self._submit(group_chroma_hits, spec, vectors_future, k, left_out, group=spec.group)
                for spec in specs
            ]
            shards = sorted(
                (pair for part in self._gather(futures, "chroma hits") for pair in part),
                key=lambda pair: pair[0],
            )
        finally:
            vectors_future.release()
        if not shards:
            return None
        return ChromaHits(
            *(
                np.concatenate([getattr(h, name) for _, h in shards], axis=1)
                for name in ("similarities", "work_ids", "segment_indexes", "valid", "ranks")
            )
        )

    # -- Dask --------------------------------------------------------------------------------
    def _each(self, specs, task, *args, what: str) -> list:
        futures = [self._submit(task, spec, *args, group=spec.group) for spec in specs]
        return self._gather(futures, what)

    def _submit(self, task, spec, *args, group: int):
        # each group prefers its own worker (where its shards are open) and goes elsewhere
        # when that worker is gone; with no worker known yet, to the first that comes
        # (distributed refuses allow_other_workers without workers)
        placement = (
            {"workers": [self._homes[group % len(self._homes)]], "allow_other_workers": True}
            if self._homes
            else {}
        )
        return self.client.submit(
            task,
            spec,
            *args,
            pure=False,
            priority=1,  # before the decoding tasks of a rescan queued on the same worker
            **placement,
        )

    def _scatter(self, data, **options):
        return dask_client.scatter(
            self.client, data, self.no_workers_s, self.timeout_s, hash=False, **options
        )

    def _gather(self, futures: list, what: str) -> list:
        try:
            return dask_client.gather(
                self.client, futures, self.timeout_s, self.no_workers_s, f"shard-group {what}"
            )
        finally:
            for future in futures:
                future.release()

    def _current(self) -> tuple[list[GroupSpec], CatalogTotals, object]:
        """The group specs and catalog totals of the catalog as it is now (gathered again from
        the groups when the catalog changed)."""
        with self._lock:
            self._reconnect_if_closed(min(self.timeout_s, self.no_workers_s))
            key = self.store.index_key()
            if key != self._key:
                n_groups = require_split(self.store)
                specs = [
                    GroupSpec(self.root, self.settings, g, n_groups, key) for g in range(n_groups)
                ]
                wait_s = min(self.timeout_s, self.no_workers_s)
                self._homes = sorted(dask_client.nthreads(self.client, wait_s))
                parts = self._each(specs, group_totals, what="statistics")
                totals = CatalogTotals(
                    np.sum([p[0] for p in parts], axis=0),
                    int(sum(p[1] for p in parts)),
                    parts[0][2],
                    any(p[3] for p in parts),
                    int(sum(p[4] for p in parts)),
                    int(sum(p[5] for p in parts)),
                )
                # to one worker: the others fetch it from there when their tasks need it (a
                # broadcast to a worker just killed could wait forever: SCALING.md, session 10);
                # the one it replaces is released once no look in flight holds it
                self._totals_future = self._scatter(totals)
                self._specs, self._totals, self._key = specs, totals, key
            return self._specs, self._totals, self._totals_future

    def cluster_problem(self) -> str | None:
        """Why the cluster cannot screen now (no worker, or a scheduler that does not answer
        within a second, connecting again once when the client was closed), or None."""
        with self._lock:
            try:
                self._reconnect_if_closed(_RECONNECT_PROBE_S)
                reachable = True
            except ClusterError:
                reachable = False
        workers = dask_client.worker_count(self.client) if reachable else None
        if workers is None:
            return "the Dask scheduler does not answer"
        if workers == 0:
            return "the Dask cluster has no workers"
        return None

    def totals(self) -> CatalogTotals:
        """The catalog-wide statistics of the catalog as it is now."""
        return self._current()[1]

    def _forget_totals(self, used) -> None:
        """After a look's rounds were cancelled: when the catalog totals future it ``used`` is
        still the one sent and is no longer held by any worker, the next look gathers and
        sends them anew (the looks of other threads that use it fail and retry alike)."""
        with self._lock:
            if self._totals_future is used and used.status != "finished":
                self._key = None

    def _reconnect_if_closed(self, timeout_s: float) -> None:
        """Connect again when our client was closed for good (its scheduler was away longer
        than the client waits), forgetting what the old one sent. Caller holds the lock."""
        if not dask_client.is_closed(self.client):
            return
        if not self._own_client:
            raise ClusterError(_CLIENT_CLOSED)
        self.client, _ = dask_client.connect(self._dask, timeout_s)
        self._key, self._totals_future = None, None


def require_split(store: CatalogStore) -> int:
    """The number of shard groups ``store``'s catalog is split into; ``CatalogError`` when it
    is not split."""
    n_groups = store.shard_groups()
    if not n_groups:
        raise CatalogError(
            f"catalog {path_text(Path(store.root).absolute())} is not split into shard groups; "
            "run 'audiodup index shard --groups N' first"
        )
    return n_groups


class _LockedWorks:
    """The client's catalog as a ``WorkSource``, one thread at a time (a sharded rescan screens
    several works at once over one SQLite connection)."""

    def __init__(self, screening: ShardedScreening):
        self._screening = screening

    def work(self, work_id: int):
        with self._screening._lock:
            return self._screening.store.work(work_id)

    def fingerprint(self, work_id: int) -> Fingerprint:
        with self._screening._lock:
            return self._screening.store.fingerprint(work_id)


class _GatheredChroma:
    """The chroma search of :func:`audiodup.match.chroma_candidates`, answered by the groups."""

    def __init__(
        self,
        screening: ShardedScreening,
        specs: list[GroupSpec],
        left_out: tuple[int, ...],
        has_chroma: bool,
    ):
        self._screening, self._specs, self.has_chroma = screening, specs, has_chroma
        self._left_out = left_out

    def search_chroma(self, vectors: np.ndarray, k: int) -> ChromaHits | None:
        return self._screening.chroma_hits(self._specs, vectors, k, self._left_out)
