"""Screening: from an upload's fingerprint to the catalog works that explain it.

The stages run one way: **retrieve** (hash look-up, chroma candidates) → **verify** (hash lines,
chroma alignment) → **guided check** (peaks where a weak hash line or a chroma alignment put
them) → **combine** (the rules of :mod:`audiodup.verdict`) → matches, which
:func:`audiodup.verdict.decide` labels. Evidence travels as the small frozen records below.

Every function takes the searchable indexes (:class:`audiodup.index.LoadedIndexes`) and a
:class:`WorkSource` (stored fingerprints and work names: a catalog or its store), so screening
needs no :class:`~audiodup.catalog.Catalog` and no FAISS.

>>> with Catalog.open("my-catalog") as catalog:          # doctest: +SKIP
...     matches = match_fingerprint(query, catalog.indexes(), catalog.settings, catalog)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Protocol, TypeVar, overload

import numpy as np

from .errors import AudiodupError
from .fingerprint import Fingerprint, UploadFingerprints, fingerprint_hashes, view_start_samples
from .hashes import KEY_BITS, TripletHashes, flat_level
from .index import LoadedIndexes
from .match import (
    ChromaEvidence,
    ChromaSearch,
    HashEvidence,
    HashLookup,
    HashVotes,
    QueryKeys,
    align_chroma,
    candidate_works,
    chroma_voted_scales,
    look_up,
    query_keys,
    ranked_chroma_works,
    rarity_weights,
    search_chroma_segments,
    usable_hashes,
    verify_hashes,
    votes_by_work,
    work_votes,
)
from .peakcheck import (
    Alignment,
    PeakCheck,
    ReferencePeaks,
    Related,
    cell_alignment,
    check_alignment,
    checks_off_stretches,
    chroma_alignments,
    confirms_recording,
    covers,
    fullest_cell,
    hash_alignment,
    held_stretch,
    on_stretches,
    reference_peaks,
    shared_material,
)
from .quads import QuadVote, query_quads
from .results import NUMBERED_PARTS, Match, Relation, Section, Signal, WorkInfo
from .settings import Settings
from .verdict import (
    HashCompetition,
    chance_excess_scale,
    channels_agree,
    chroma_false_match_probability,
    combine_hash_and_chroma,
    combine_peaks_and_chroma,
    decide,
    hash_false_match_probability,
    score_from_probability,
)

References = Callable[[int], Fingerprint]
T = TypeVar("T")
# a work's catalog hashes (fingerprint.fingerprint_hashes of its stored fingerprint)
ReferenceHashes = Callable[[int], TripletHashes]


class WorkSource(Protocol):
    """What screening reads from a catalog besides its indexes (:class:`CatalogStore` is one)."""

    def fingerprint(self, work_id: int) -> Fingerprint: ...

    def work(self, work_id: int) -> WorkInfo | None: ...


# -- evidence records ----------------------------------------------------------------------------
@dataclass(frozen=True)
class HashFinding:
    """A work's verified hash lines with their false-match probability; ``shared_with``: when
    the main line is on material many works hold (:func:`shared_lines`), how many other works'
    lines hold it (its probability is then 1), else 0."""

    evidence: HashEvidence
    false_match_probability: float
    shared_with: int = 0
    # the probability under the prior chance excess, when the query's background fit raised it
    prior_probability: float | None = None
    # the first and last upload frames of the line's hits that many works hold, when shared
    shared_query_frames: tuple[float, float] = (0.0, 0.0)
    # hits of a line that stays evidence on material many works hold: its probability counts
    # only the rest (:func:`lines_off_stretches`)
    hits_on_shared: int = 0
    # how its look scores a line (the same competition and background fit): the probability of
    # what it holds of its own is scored the same way
    rescore: Callable[[HashEvidence], float] | None = field(default=None, compare=False, repr=False)

    def holds_material(self, settings: Settings) -> bool:
        """Whether the line is at least `suspect` before any background fit (the fit holds down
        material many works hold, which is what :func:`shared_lines` looks for), or is on
        material many works hold."""
        prior = self.false_match_probability
        if self.prior_probability is not None:
            prior = self.prior_probability
        return prior <= settings.suspect_max_fmp or self.shared_with > 0


@dataclass(frozen=True)
class ChromaFinding:
    """A work's best chroma alignment with its false-match probability."""

    evidence: ChromaEvidence
    false_match_probability: float


@dataclass(frozen=True)
class PeakFinding:
    """A work's best guided peak check and the chroma alignment that led to it (``None`` when a
    hash line did), out of ``checks_tried`` checks of that work."""

    work_id: int
    check: PeakCheck
    chroma: ChromaFinding | None
    checks_tried: int = 1

    @property
    def probability(self) -> float:
        """The best check's probability paid for every check tried on the work (the octaves of a
        chroma lead, a hash lead, swept leads): chance had that many tries at this work."""
        return min(1.0, self.check.probability * self.checks_tried)


@dataclass(frozen=True)
class Evidence:
    """Everything screening gathered on one upload. ``chroma`` and ``peaks`` stay empty when a
    hash line alone is decisive (false-match probability <= ``duplicate_max_fmp``)."""

    n_works: int
    hashes: dict[int, HashFinding]
    chroma: tuple[ChromaFinding, ...] = ()
    peaks: dict[int, PeakFinding] = field(default_factory=dict)


# -- retrieve and verify -------------------------------------------------------------------------
def hash_votes(query: Fingerprint, indexes: LoadedIndexes, settings: Settings) -> HashVotes:
    """Hash hits of ``query``; keys far more common than average are skipped (stop words)."""
    return hash_lookup(fingerprint_hashes(query, settings, query=True), indexes, settings).votes


def hash_lookup(hashes: TripletHashes, indexes: LoadedIndexes, settings: Settings) -> HashLookup:
    """:func:`audiodup.match.look_up` of the query ``hashes`` under the settings' stop-word cap
    and hit budget (none in a catalog of at most ``whole_lookup_max_entries``)."""
    small = indexes.n_hash_entries <= settings.whole_lookup_max_entries
    return look_up(
        hashes,
        indexes,
        _max_bucket_hits(indexes, settings),
        1 << 62 if small else settings.max_query_hits,
        bins_per_semitone=settings.bins_per_semitone,
    )


class CatalogStatistics(Protocol):
    """The catalog-wide key statistics the hash side screens with (``LoadedIndexes``, or a
    split catalog's ``audiodup.sharded.CatalogTotals``)."""

    @property
    def bucket_sizes(self) -> np.ndarray: ...

    @property
    def n_hash_entries(self) -> int: ...


def _max_bucket_hits(indexes: CatalogStatistics, settings: Settings) -> int:
    """The stop-word cap: keys of more entries than this are not looked up."""
    return stop_word_cap(indexes.n_hash_entries, settings)


def stop_word_cap(n_hash_entries: float, settings: Settings) -> int:
    """The stop-word cap of a catalog of ``n_hash_entries``: ``bucket_cap_per_mean`` times its
    mean entries per key, at least ``min_bucket_cap``."""
    per_mean = settings.bucket_cap_per_mean * n_hash_entries / 2**KEY_BITS
    return int(max(settings.min_bucket_cap, per_mean))


def hash_evidence(
    query: Fingerprint, indexes: LoadedIndexes, settings: Settings, works: WorkSource | None = None
) -> dict[int, HashEvidence]:
    """The verified hash evidence of every candidate work, best candidates first."""
    return hash_candidates(query, indexes, settings, works)[0]


def hash_candidates(
    query: Fingerprint,
    indexes: LoadedIndexes,
    settings: Settings,
    works: WorkSource | None = None,
    reference_hashes: ReferenceHashes | None = None,
) -> tuple[dict[int, HashEvidence], np.ndarray]:
    """:func:`hash_evidence` and the number of hits of each work that got some, which say which
    works were in competition (:func:`audiodup.verdict.hash_false_match_probability`); at
    most one per hit, however large the catalog. See :func:`verified_candidates`."""
    found = verified_candidates(query, indexes, settings, works, reference_hashes)
    return verified_lines(found), competition_hits(found, indexes)


def verified_lines(found: Candidates) -> dict[int, HashEvidence]:
    """The candidates' verified hash evidence, best candidates first."""
    return {c.work_id: c.evidence for c in found.candidates if c.evidence is not None}


def competition_hits(found: Candidates, indexes: LoadedIndexes) -> np.ndarray:
    """Every work's hits in competition (:func:`hits_in_competition`) for one look-up."""
    unseen = int(indexes.live.sum()) - len(found.hit_works)
    return hits_in_competition(
        found.hit_works, found.hit_counts, found.candidates, unseen, found.unseen_hits
    )


@dataclass(frozen=True)
class Candidate:
    """A candidate work of the hash look-up: its support (hits in its best coarse cell, weighted
    by rarity when the look-up was sampled), its verified hash lines (``None``: none verified),
    when the hit budget dropped keys its hits from every usable key
    (:func:`audiodup.match.work_votes`), and the alignment of its fullest coarse cell
    (:func:`audiodup.peakcheck.cell_alignment`): for the ``peak_check_cell_leads`` best, and for
    every work verified on all its hits, with the hits in that cell (``cell_hits``)."""

    work_id: int
    support: float
    evidence: HashEvidence | None
    full_hits: int | None = None
    lead: Alignment | None = None
    cell_hits: int = 0


@dataclass(frozen=True)
class Candidates:
    """The verified candidates of one look-up, best first, and the hits of every work that got
    some: counted, or estimated for the whole look-up when the hit budget dropped keys."""

    candidates: list[Candidate]
    hit_works: np.ndarray  # int64
    hit_counts: np.ndarray  # float64, one per hit work
    # the estimate for a work the sampled look-up gave no hit: as if it had got one (0: the
    # look-up was whole, such works have no hits)
    unseen_hits: float = 0.0


def verified_candidates(
    query: Fingerprint,
    indexes: LoadedIndexes,
    settings: Settings,
    works: WorkSource | None = None,
    reference_hashes: ReferenceHashes | None = None,
    query_hashes: TripletHashes | None = None,
    verify_sampled: bool = True,
) -> Candidates:
    """The ``settings.candidate_works`` best candidate works
    (:func:`audiodup.match.candidate_works`) with their verified hash lines.

    When the hit budget dropped the most common keys (a large catalog) the look-up is a sample:
    it ranks the works (with the lower ``min_sampled_support``), and each candidate is then
    verified on all of its hits, made from its stored fingerprint in ``works``
    (:func:`audiodup.match.work_votes`): a copy's line keeps the inliers the budget took from it,
    at a cost per candidate that does not grow with the catalog. The other works' hit counts are
    then estimated as their sampled hits over the share of hits the look-up kept (a work the
    sample missed as if it had got one hit), so that the chance model weighs every work as the
    whole look-up would have. Without ``works`` the candidates are verified on the sample's hits
    alone, as before this existed. ``reference_hashes``: the candidates' hashes, when the caller
    keeps them (:func:`stored_hashes`; by default made from ``works``); ``query_hashes``: the
    query's, when the caller made them. Without ``verify_sampled`` a sampled look-up's
    candidates come back unverified, to be verified once ranked among other shard groups'
    (:func:`works_verified`)."""
    hashes = query_hashes
    if hashes is None:
        hashes = fingerprint_hashes(query, settings, query=True)
    found = hash_lookup(hashes, indexes, settings)
    votes = found.votes
    hit_works, counts = np.unique(votes.work, return_counts=True)
    sampled = found.kept_share < 1.0 and works is not None
    min_support = settings.min_sampled_support if sampled else settings.min_candidate_support
    fps = settings.frames_per_second
    # a sample's supports are thin (2-3 hits a cell): the rarer the keys, the less chance
    # (and its 2-3 hits split between two tempo cells more often: a second grid; a whole look-up
    # ranks without it: at 113 works the verdicts were the same, at less cost)
    weights = rarity_weights(votes, indexes.bucket_sizes) if sampled else None
    grids = (0.0, 0.5) if sampled else (0.0,)
    ranked = candidate_works(votes, settings.candidate_works, fps, min_support, weights, grids)
    if not sampled:
        own = votes_by_work(votes, [w for w, _ in ranked])
        candidates = [
            Candidate(w, n, _verify(own[w], w, settings), lead=_lead(own[w], w, rank, settings))
            for rank, (w, n) in enumerate(ranked)
        ]
        return Candidates(candidates, hit_works, counts.astype(np.float64))
    if verify_sampled:
        keys = query_keys(hashes, found.usable)
        hashes_of = reference_hashes or stored_hashes(works.fingerprint, settings)
        candidates = [
            _verified_work(hashes, keys, work_id, hashes_of, support, settings)
            for work_id, support in ranked
        ]
    else:
        candidates = [Candidate(work_id, support, None) for work_id, support in ranked]
    share = found.kept_share
    return Candidates(candidates, hit_works, counts / share, unseen_hits=1.0 / share)


def _verified_work(
    hashes: TripletHashes,
    keys: QueryKeys,
    work_id: int,
    hashes_of: ReferenceHashes,
    support: float,
    settings: Settings,
) -> Candidate:
    """A candidate verified on all of its hits, made from its stored fingerprint, with its
    fullest coarse cell of those hits (:func:`cell_leads`)."""
    own = work_votes(hashes, keys, work_id, hashes_of(work_id), settings.bins_per_semitone)
    evidence = _verify(own, work_id, settings)
    cell = fullest_cell(own, work_id, settings)
    hits, lead = cell if cell is not None else (0, None)
    return Candidate(work_id, support, evidence, len(own.work), lead, hits)


def chroma_voted_candidates(
    query_hashes: TripletHashes,
    found: Candidates,
    chroma_voted: Sequence[int],
    indexes: LoadedIndexes,
    settings: Settings,
    hashes_of: ReferenceHashes,
    quad_works: Sequence[int] = (),
) -> Candidates:
    """``found`` and, after its own, the ``chroma_voted`` works (:func:`look_votes`) and then
    those of ``quad_works`` (:func:`quad_voted_works`) it lacks, each verified on all of its
    hits as a sampled look-up's candidates are (:func:`chroma_voted_works_verified`); ``found``
    itself when its look-up was whole (every work's hits were counted, so the works that could
    hold a line are among its candidates).

    Which works get verified does not enter the chance model: each line is weighed against the
    hits of every work in competition (:func:`audiodup.verdict.hash_false_match_probability`),
    the added works at their full hits like any candidate."""
    if found.unseen_hits <= 0:
        return found
    extra = voted_extra(found, chroma_voted, quad_works)
    if not extra:
        return found
    added = chroma_voted_works_verified(query_hashes, extra, indexes, settings, hashes_of)
    return with_candidates(found, added)


def voted_extra(
    found: Candidates, chroma_voted: Sequence[int], quad_works: Sequence[int]
) -> list[int]:
    """The voted works ``found`` lacks: the chroma-voted ones, then the quad-voted ones."""
    have = {c.work_id for c in found.candidates}
    extra: list[int] = []
    for work_id in [*chroma_voted, *quad_works]:
        if work_id not in have:
            have.add(work_id)
            extra.append(work_id)
    return extra


def quad_voted_works(
    query: Fingerprint, indexes: LoadedIndexes, settings: Settings
) -> list[QuadVote]:
    """The votes for the ``settings.quad_voted_works`` works the query's four-peak hits point
    to most (on one line, then in one cell of tempo, pitch and offset:
    :meth:`audiodup.index.LoadedIndexes.quad_works`); none without four-peak files."""
    if settings.quad_voted_works <= 0 or not indexes.quad_shards:
        return []
    quads = query_quads(query, settings)
    return indexes.quad_works(quads, settings, settings.quad_voted_works)


def quad_leads(votes: Sequence[QuadVote], settings: Settings) -> list[tuple[int, Alignment]]:
    """``(work_id, alignment)`` of the fullest four-peak cells of the first
    ``settings.peak_check_quad_leads`` votes (:func:`audiodup.quads.cell_lead`; all 8 voted
    works by default: at 10^5 works 1 more hard copy found than with the first vote's alone).

    A voted work is verified on all its triplet hits, but a copy whose peaks an alteration
    moves by a frame or two (slowed and reverberated, stretched 2x) can keep too few triplets
    for a line or a full cell, while its four-peak hits, whose keys are ratios of spans, still
    fall in one cell. That cell leads a guided peak check; the check, its floors and its
    probability are those of every lead (:func:`peak_guesses`)."""
    per_semitone = settings.bins_per_semitone
    return [
        (
            v.work_id,
            Alignment(
                v.lead.tempo_ratio,
                v.lead.pitch_semitones * per_semitone,
                v.lead.query_frame,
                v.lead.ref_frame,
            ),
        )
        for v in votes[: settings.peak_check_quad_leads]
        if v.lead is not None
    ]


def vote_density(found: Candidates, settings: Settings) -> int:
    """How much denser than its own the chroma search's vectors are, for the votes of
    :func:`chroma_voted_candidates` (1: a whole look-up, which takes no votes)."""
    return settings.chroma_vote_density if found.unseen_hits > 0 else 1


def chroma_voted_works_verified(
    query_hashes: TripletHashes,
    work_ids: list[int],
    indexes: LoadedIndexes,
    settings: Settings,
    hashes_of: ReferenceHashes,
) -> list[Candidate]:
    """Each of ``work_ids`` verified on all of its hits (:func:`voted_items`)."""
    items = voted_items(work_ids)
    return works_verified(query_hashes, items, indexes, settings, hashes_of)


def voted_items(work_ids: Sequence[int]) -> list[tuple[int, float]]:
    """``(work_id, support)`` of voted works for :func:`works_verified`: no support of their
    own, so they lead a peak check by their fullest cell only, never by their place
    (:func:`cell_leads`)."""
    return [(work_id, 0.0) for work_id in work_ids]


def works_verified(
    query_hashes: TripletHashes,
    items: Sequence[tuple[int, float]],
    indexes: CatalogStatistics,
    settings: Settings,
    hashes_of: ReferenceHashes,
) -> list[Candidate]:
    """Each ``(work_id, support)`` verified on all of its hits of the usable query hashes
    (as :func:`hash_lookup` counts them usable), as a sampled look-up verifies its candidates."""
    usable = usable_hashes(query_hashes, indexes.bucket_sizes, _max_bucket_hits(indexes, settings))
    keys = query_keys(query_hashes, usable)
    return [
        _verified_work(query_hashes, keys, work_id, hashes_of, support, settings)
        for work_id, support in items
    ]


def with_candidates(found: Candidates, extra: list[Candidate]) -> Candidates:
    """``found`` with ``extra`` candidates after its own; a work the sampled look-up gave no
    hit joins the hit works at the estimate it had as an unseen one (replaced by its full hits
    in competition, :func:`hits_in_competition`)."""
    ids = np.array([c.work_id for c in extra], dtype=np.int64)
    missing = ids[~np.isin(ids, found.hit_works)]
    hit_works = np.concatenate([found.hit_works, missing])
    hit_counts = np.concatenate([found.hit_counts, np.full(len(missing), found.unseen_hits)])
    return Candidates(found.candidates + extra, hit_works, hit_counts, found.unseen_hits)


def _lead(votes: HashVotes, work_id: int, rank: int, settings: Settings) -> Alignment | None:
    """The coarse-cell lead of the candidate ranked ``rank`` (none past the leading few)."""
    if rank >= settings.peak_check_cell_leads:
        return None
    return cell_alignment(votes, work_id, settings)


def cell_leads(candidates: list[Candidate], settings: Settings) -> list[tuple[int, Alignment]]:
    """``(work_id, alignment)`` of the coarse-cell leads of the ``peak_check_cell_leads`` best
    ``candidates`` the look-up ranked (ranked as :func:`audiodup.match.candidate_order`; in a
    shard group's candidates the catalog's best are among the group's best, so they carry their
    lead; a voted work has no support of its own), then of the ``peak_check_full_cell_leads``
    other works verified on all their hits whose fullest cell holds the most of them (at least
    ``peak_check_min_inliers``, in candidate order among equals).

    A sampled look-up ranks works by the few hits the budget kept; at 10^5 works a hard copy's
    work often comes in last, voted by its chroma or four-peak hits, and then verified on all
    its hits: its cell there is the fullest of all (8-14 hits against chance works' 3-5), but
    its hash line too weak to decide. Its cell leads the check that finds it."""
    best = candidates[: settings.peak_check_cell_leads]
    leads = [(c.work_id, c.lead) for c in best if c.lead is not None and c.support > 0]
    led = {work_id for work_id, _ in leads}
    rest = [
        c
        for c in candidates
        if c.work_id not in led
        and c.full_hits is not None
        and c.lead is not None
        and c.cell_hits >= settings.peak_check_min_inliers
    ]
    rest.sort(key=lambda c: -c.cell_hits)
    return leads + [(c.work_id, c.lead) for c in rest[: settings.peak_check_full_cell_leads]]


def hits_in_competition(
    hit_works: np.ndarray,
    hit_counts: np.ndarray,
    candidates: Iterable[Candidate],
    unseen_works: int = 0,
    unseen_hits: float = 0.0,
) -> np.ndarray:
    """The hit count of every work that got hits (in the order of ``hit_works``), the
    candidates' full hits in place of their sampled ones, then ``unseen_hits`` for each of the
    ``unseen_works`` works without a hit (:attr:`Candidates.unseen_hits`; none when it is 0)."""
    hits = np.array(hit_counts, dtype=np.float64)
    full = {c.work_id: c.full_hits for c in candidates if c.full_hits is not None}
    if full:
        order = np.argsort(hit_works, kind="stable")
        where = order[np.searchsorted(hit_works[order], list(full))]
        hits[where] = list(full.values())
    if unseen_hits > 0 and unseen_works > 0:
        hits = np.concatenate([hits, np.full(unseen_works, unseen_hits)])
    return hits


def score_hashes(
    evidence: Iterable[HashEvidence],
    n_works: int,
    settings: Settings,
    hits_per_work: np.ndarray | None = None,
) -> dict[int, HashFinding]:
    """Each work's hash evidence with its false-match probability; the works outside the three
    strongest lines form this query's chance background. With ``hits_per_work`` (the retrieved
    hits of each work that got some) the search is paid over the works in competition
    (:func:`audiodup.verdict.hash_false_match_probability`); without it over all ``n_works``."""
    evidence = list(evidence)
    top = {e.work_id for e in sorted(evidence, key=lambda e: -e.main_inliers)[:3]}
    scale = chance_excess_scale(evidence, top, settings)

    def scorer(scale: float) -> Callable[[HashEvidence], float]:
        if hits_per_work is None:
            return partial(
                hash_false_match_probability, scale=scale, n_works=n_works, settings=settings
            )
        return HashCompetition.of(hits_per_work, scale, settings).false_match_probability

    rescore = scorer(scale)
    fitted = [rescore(e) for e in evidence]
    prior = [scorer(1.0)(e) for e in evidence] if scale > 1.0 else [None] * len(evidence)
    return {
        e.work_id: HashFinding(e, fmp, prior_probability=before, rescore=rescore)
        for e, fmp, before in zip(evidence, fitted, prior, strict=True)
    }


def material_lines(
    hashes: dict[int, HashFinding], settings: Settings
) -> dict[int, tuple[float, float]]:
    """The upload frames each main hash line spans that holds material
    (:meth:`HashFinding.holds_material`)."""
    return {
        w: (f.evidence.lines[0].query_start_frame, f.evidence.lines[0].query_end_frame)
        for w, f in hashes.items()
        if f.holds_material(settings)
    }


def shared_lines(
    hashes: dict[int, HashFinding],
    duration_s: float,
    settings: Settings,
    related: Related | None = None,
) -> dict[int, HashFinding]:
    """The scored lines with those on material many works hold made no evidence (probability
    1, ``shared_with`` how many other works hold it, ``shared_query_frames`` where), and the
    others that cross it scored on their own hits (:func:`lines_off_stretches`, the stretches
    of :func:`shared_stretches`)."""
    stretches = shared_stretches(hashes, duration_s, settings, related)
    return lines_off_stretches(hashes, stretches, settings) if stretches else hashes


def shared_stretches(
    hashes: dict[int, HashFinding],
    duration_s: float,
    settings: Settings,
    related: Related | None = None,
) -> list[tuple[float, float, int]]:
    """``(start, end, works)`` upload frames of the look's stretches of material many works
    hold, and how many other works hold each.

    A stock sample or loop spliced into several works gives an upload of other music that holds
    it a strong line to every one of them, over the same seconds of the upload: they say which
    material it holds, not which work it copies. (With many such works the background fit,
    :func:`audiodup.verdict.chance_excess_scale`, holds them down too.) Which seconds those are,
    the lines say together: a line that holds material (:meth:`HashFinding.holds_material`),
    spans at most ``shared_material_max_span`` of the upload (``duration_s`` long, in the
    look's time), and has at least half of its hits spanned by the lines of
    ``shared_material_works`` other works that hold material, each, spans a stretch of them
    (its hits that many lines span). A line with fewer than ``duplicate_min_hashes`` hits off
    such stretches is no evidence (:func:`lines_off_stretches`). A copy of one of those works
    lines up with it beyond the stretch; an excerpt or a copy of a recording several works hold
    spans most of the upload, and makes no stretch."""
    spans = material_lines(hashes, settings)
    enough = settings.shared_material_works
    if len(spans) <= enough:
        return []
    longest = settings.shared_material_max_span * duration_s * settings.frames_per_second
    stretches = []
    for work_id, (start, end) in spans.items():
        if end - start > longest:
            continue
        frames = _line_hits(hashes[work_id])
        held = {
            w: (frames >= s) & (frames <= e) for w, (s, e) in sorted(spans.items()) if w != work_id
        }
        # the hits of all the work's lines: the stretch they make is short too, or it is none
        stretch = held_stretch(frames, held, enough, work_id, related)
        if stretch and stretch[1] - stretch[0] <= longest:
            stretches.append(stretch)
    return stretches


def _line_hits(finding: HashFinding) -> np.ndarray:
    """The upload frames of a line's hits (its ends when the evidence keeps none)."""
    hits = finding.evidence.match_query_frames
    if len(hits):
        return np.asarray(hits, dtype=np.float64)
    line = finding.evidence.lines[0]
    return np.array([line.query_start_frame, line.query_end_frame])


def lines_off_stretches(
    hashes: dict[int, HashFinding],
    stretches: Sequence[tuple[float, float, int]],
    settings: Settings,
) -> dict[int, HashFinding]:
    """``hashes`` with every line that has fewer than ``duplicate_min_hashes`` hits off the
    ``stretches`` of material many works hold (``(start, end, works)`` upload frames) made no
    evidence: what it holds of its own could not make a duplicate. A line with more is scored
    on them alone (:func:`own_line_probability`): its hits on the stretches are no chance
    hits, an upload of other music holding the material has them too."""
    marked = dict(hashes)
    for work_id, finding in hashes.items():
        if finding.shared_with:
            continue
        frames = _line_hits(finding)
        if (on := on_stretches(frames, stretches)) is None:
            continue
        inside, works = on
        if len(frames) - len(inside) < settings.duplicate_min_hashes:
            marked[work_id] = replace(
                finding,
                false_match_probability=1.0,
                shared_with=works,
                shared_query_frames=(float(inside.min()), float(inside.max())),
            )
        else:
            marked[work_id] = replace(
                finding,
                false_match_probability=own_line_probability(finding, len(inside)),
                hits_on_shared=max(finding.hits_on_shared, len(inside)),
            )
    return marked


def own_line_probability(finding: HashFinding, hits_on_shared: int) -> float:
    """The probability of ``finding``'s line without ``hits_on_shared`` of its main line's
    inliers, scored as its look scores lines (:attr:`HashFinding.rescore`), never below the one
    it has. The hits counted on the stretches are of every line of the work, so at least those
    of its main line: its own inliers are counted low, never high."""
    if finding.rescore is None:
        return finding.false_match_probability
    evidence = finding.evidence
    own = replace(evidence, main_inliers=max(evidence.main_inliers - hits_on_shared, 0))
    return max(finding.false_match_probability, finding.rescore(own))


def chroma_evidence(
    query: Fingerprint,
    indexes: LoadedIndexes,
    n_works: int,
    settings: Settings,
    reference: References,
) -> list[ChromaFinding]:
    """Aligned chroma of the three best chroma candidates with their false-match probability;
    every candidate's alignment away from its best is the chance sample
    (:func:`audiodup.verdict.chroma_false_match_probability`)."""
    candidates = chroma_candidate_scales(search_chroma_segments(query, indexes, settings), settings)
    return score_chroma(aligned_chroma(query, candidates, settings, reference), n_works, settings)


def chroma_candidate_scales(
    search: ChromaSearch | None, settings: Settings
) -> list[tuple[int, float]]:
    """``(work_id, time_scale)`` of the chroma candidates of ``search``
    (:func:`audiodup.match.search_chroma_segments`, :func:`audiodup.match.chroma_candidates`)."""
    return [(work_id, scale) for work_id, _, scale in ranked_chroma_works(search, settings)]


def extra_chroma_candidates(
    search: ChromaSearch | None, settings: Settings, query: Fingerprint
) -> list[tuple[int, float]]:
    """``(work_id, time_scale)`` of the chroma candidates ranked after
    :func:`chroma_candidate_scales`' up to ``chroma_short_candidates``, for a ``query``
    shorter than ``chroma_short_max_s`` (none for a longer one). The look as it is sweeps them
    too, and the best of those sweeps lead peak checks of their own (:func:`swept_leads`);
    the first candidates' findings and leads stay as they were."""
    if query.duration_s >= settings.chroma_short_max_s:
        return []
    ranked = ranked_chroma_works(search, settings, settings.chroma_short_candidates)
    return [(work_id, scale) for work_id, _, scale in ranked[settings.chroma_candidates :]]


def aligned_chroma(
    query: Fingerprint,
    candidates: Iterable[tuple[int, float]],
    settings: Settings,
    reference: References,
) -> list[ChromaEvidence]:
    """The chroma alignment of each ``(work_id, time_scale)`` candidate, in their order (those
    that align at all)."""
    aligned: list[ChromaEvidence] = []
    # candidates found at the same scale are aligned over the same fine grid: the query's
    # spectra are computed once
    query_spectra: dict[tuple[int, int], np.ndarray] = {}
    for work_id, scale in candidates:
        fine = (1.0 / scale) * _fine_scales(settings)
        ev = align_chroma(query, reference(work_id), work_id, settings, fine, query_spectra)
        if ev is not None:
            aligned.append(ev)
    return aligned


def swept_chroma(
    query: Fingerprint,
    candidates: Iterable[tuple[int, float]],
    settings: Settings,
    reference: References,
) -> list[ChromaEvidence]:
    """The chroma alignment of each candidate over the whole tempo range, refined on the fine
    grid around its best tempo (those that align at all), in their order.

    A candidate's scale is that of its most similar segment vector, and a reverberated or
    spliced copy's segments can match best at a wrong scale: the fine grid around it
    (:func:`aligned_chroma`) then misses the copy's tempo and the guided peak check is led
    astray (a slowed and reverberated copy at 0.85: 0.51 at the segment's scale, 0.88 at 0.848
    over the whole range, where 252 of 600 peaks then coincide). These alignments only lead
    peak checks (:func:`swept_leads`): their block maxima are maxima over the whole range, which
    the chroma probability already pays for (:func:`audiodup.verdict.tempo_windows`), so they
    would count that search twice as a chance sample."""
    swept: list[ChromaEvidence] = []
    # every candidate is aligned over the same scales: the query's spectra are computed once
    # (issue #16: most of a swept alignment's FFTs)
    query_spectra: dict[tuple[int, int], np.ndarray] = {}
    for work_id, _ in candidates:
        stored = reference(work_id)
        coarse = align_chroma(query, stored, work_id, settings, query_spectra=query_spectra)
        if coarse is None:
            continue
        fine = coarse.tempo_ratio * _fine_scales(settings)
        refined = align_chroma(query, stored, work_id, settings, fine, query_spectra)
        swept.append(refined if refined and refined.similarity > coarse.similarity else coarse)
    return swept


def swept_leads(
    swept: Iterable[ChromaEvidence], chroma: Iterable[ChromaFinding], settings: Settings
) -> list[ChromaEvidence]:
    """The swept alignments worth a guided peak check of their own: the three most similar at
    or above ``peak_check_min_chroma`` that no check led by a chroma finding of their work
    already sweeps (:func:`audiodup.peakcheck.covers`: pitch within a semitone, tempo within
    ``peak_check_tempo_span``, offset within ``peak_check_offset_span_s``), so they add a
    hypothesis rather than repeat one. A finding near the lead's tempo is not enough (a
    SoundTouch 2x copy's finding aligned at 1.875, its swept alignment at 2.0). A lead at the
    finding's tempo but another offset (a repeat in the work) is new too; its checks count among
    the work's checks tried (:attr:`PeakFinding.probability`)."""
    checked = [
        (f.evidence.work_id, a)
        for f in chroma
        if f.evidence.similarity >= settings.peak_check_min_chroma
        for a in chroma_alignments(f.evidence, settings)
    ]

    def known(ev: ChromaEvidence) -> bool:
        lead = chroma_alignments(ev, settings)[0]
        return any(w == ev.work_id and covers(a, lead, settings) for w, a in checked)

    similar = sorted(
        (ev for ev in swept if ev.similarity >= settings.peak_check_min_chroma),
        key=lambda ev: -ev.similarity,
    )
    return [ev for ev in similar if not known(ev)][:3]


def first_and_extra_leads(
    swept: Iterable[ChromaEvidence],
    candidates: list[tuple[int, float]],
    extra: list[tuple[int, float]],
    chroma: Iterable[ChromaFinding],
    settings: Settings,
) -> list[ChromaEvidence]:
    """:func:`swept_leads` of the chroma ``candidates``' sweeps, then of the ``extra``
    candidates' (:func:`extra_chroma_candidates`) on their own, so that a further work never
    takes a lead's place from one of the first."""
    by_work = {ev.work_id: ev for ev in swept}
    chroma = list(chroma)
    leads: list[ChromaEvidence] = []
    for these in (candidates, extra):
        leads += swept_leads([by_work[w] for w, _ in these if w in by_work], chroma, settings)
    return leads


def look_votes(
    search: ChromaSearch | None, found: Candidates, settings: Settings
) -> list[tuple[int, float]]:
    """The look's chroma-voted works with the scale of the vote that ranked them
    (:func:`audiodup.match.chroma_voted_scales`), made once for the verification
    (:func:`chroma_voted_candidates`) and the peak-check leads (:func:`voted_lead_works`); none
    after a whole look-up, which takes no votes."""
    if found.unseen_hits <= 0:
        return []
    return chroma_voted_scales(search, settings.chroma_voted_works)


def voted_lead_works(
    votes: Sequence[tuple[int, float]],
    candidates: Sequence[tuple[int, float]],
    settings: Settings,
) -> list[tuple[int, float]]:
    """``(work_id, time_scale)`` of the first ``chroma_voted_leads`` of the look's ``votes``
    (:func:`look_votes`) that are no chroma candidate, at the scale of their vote."""
    aligned = {work_id for work_id, _ in candidates}
    led = [(w, scale) for w, scale in votes if w not in aligned]
    return led[: max(settings.chroma_voted_leads, 0)]


def voted_leads(aligned: Iterable[ChromaEvidence], settings: Settings) -> list[ChromaEvidence]:
    """The chroma alignments of voted works (:func:`voted_lead_works`, aligned at their vote's
    scale) similar enough to lead a guided peak check (``peak_check_min_chroma``), each at its
    pitch and an octave either side. They lead checks only, never a chroma finding; a check
    stands alone: its peaks must clear their floors and their chance, paid for every check tried
    on the work (:attr:`PeakFinding.probability`) and for every work
    (:func:`audiodup.verdict.peak_false_match_probability`)."""
    return [ev for ev in aligned if ev.similarity >= settings.peak_check_min_chroma]


def score_chroma(
    aligned: list[ChromaEvidence], n_works: int, settings: Settings
) -> list[ChromaFinding]:
    """The three most similar alignments with their false-match probability; all of them are
    the chance sample."""
    aligned = sorted(aligned, key=lambda ev: -ev.similarity)
    return [
        ChromaFinding(ev, chroma_false_match_probability(ev, aligned, settings, n_works))
        for ev in aligned[:3]
    ]


# -- guided check --------------------------------------------------------------------------------
def peak_checks(
    query: Fingerprint,
    hashed: dict[int, HashEvidence],
    chroma: Iterable[ChromaFinding],
    settings: Settings,
    reference: References,
    leads: Iterable[ChromaEvidence] = (),
    cells: Iterable[tuple[int, Alignment]] = (),
    quad_cells: Iterable[tuple[int, Alignment]] = (),
    lines: dict[int, tuple[float, float]] | None = None,
    related: Related | None = None,
) -> dict[int, PeakFinding]:
    """The guided peak check of the strongest weak hash lines and chroma alignments (and of the
    swept alignments ``leads``, :func:`swept_leads`, the look-up's coarse cells ``cells``,
    :func:`cell_leads`, and the four-peak cells ``quad_cells``, :func:`quad_leads`): the best
    check per work, with the chroma finding it came from (``lines`` and ``related``:
    :func:`best_peak_checks`)."""
    guesses = peak_guesses(hashed, chroma, settings, leads, cells, quad_cells)
    checks = checked_guesses(query, [(w, a) for w, a, _ in guesses], settings, reference)
    return best_peak_checks(guesses, checks, settings, lines or {}, related)


PeakGuess = tuple[int, Alignment, ChromaFinding | None]


def peak_guesses(
    hashed: dict[int, HashEvidence],
    chroma: Iterable[ChromaFinding],
    settings: Settings,
    leads: Iterable[ChromaEvidence] = (),
    cells: Iterable[tuple[int, Alignment]] = (),
    quad_cells: Iterable[tuple[int, Alignment]] = (),
) -> list[PeakGuess]:
    """The alignments worth a guided peak check: those of the strongest weak hash lines and of
    the chroma alignments similar enough, each with the chroma finding it came from, then those
    of the swept ``leads`` (:func:`swept_leads`) and of the look-up's coarse ``cells``
    (:func:`cell_leads`) that no earlier guess of their work already sweeps (:func:`covers`),
    then those of the four-peak ``quad_cells`` (:func:`quad_leads`) of works no earlier guess
    checks: they add works to the checks, never a further guess (and its price) to a work
    already checked. These come from no finding: their checks stand alone
    (:func:`audiodup.verdict.peak_false_match_probability`)."""
    guesses: list[PeakGuess] = []
    strongest = sorted(hashed.values(), key=lambda e: -e.main_inliers)
    for e in strongest[: settings.peak_check_hash_candidates]:
        if e.main_inliers >= settings.peak_check_min_inliers:
            guesses.append((e.work_id, hash_alignment(e, settings), None))
    for found in chroma:
        if found.evidence.similarity >= settings.peak_check_min_chroma:
            # chroma knows the pitch only modulo an octave
            alignments = chroma_alignments(found.evidence, settings)
            guesses.extend((found.evidence.work_id, a, found) for a in alignments)
    for lead in leads:
        guesses.extend((lead.work_id, a, None) for a in chroma_alignments(lead, settings))
    for work_id, cell in cells:
        if not any(w == work_id and covers(a, cell, settings) for w, a, _ in guesses):
            guesses.append((work_id, cell, None))
    checked = {w for w, _, _ in guesses}
    for work_id, cell in quad_cells:
        if work_id not in checked:
            checked.add(work_id)
            guesses.append((work_id, cell, None))
    return guesses


def checked_guesses(
    query: Fingerprint,
    guesses: list[tuple[int, Alignment]],
    settings: Settings,
    reference: References,
) -> list[PeakCheck | None]:
    """The guided peak check of each ``(work_id, alignment)``, in their order."""
    stored: dict[int, ReferencePeaks] = {}
    checks = []
    n_bins = settings.bins_per_octave * settings.n_octaves
    for work_id, guess in guesses:
        if work_id not in stored:
            stored[work_id] = reference_peaks(reference(work_id).peaks, n_bins)
        checks.append(check_alignment(query.peaks, stored[work_id], guess, settings))
    return checks


def best_peak_checks(
    guesses: list[PeakGuess],
    checks: list[PeakCheck | None],
    settings: Settings,
    lines: dict[int, tuple[float, float]],
    related: Related | None = None,
) -> dict[int, PeakFinding]:
    """The best check per work (the first of equals), with the chroma finding it came from and
    how many checks of the work ran; a check on material many of the other works hold, by
    their checks or their hash lines (``lines``, :func:`material_lines`), confirms nothing
    (:func:`audiodup.peakcheck.shared_material`; ``related``: :func:`one_recording`)."""
    best: dict[int, tuple[PeakCheck, ChromaFinding | None]] = {}
    tried: Counter[int] = Counter()
    for (work_id, _, source), check in zip(guesses, checks, strict=True):
        if check is None:
            continue
        tried[work_id] += 1
        if work_id not in best or check.probability < best[work_id][0].probability:
            best[work_id] = (check, source)
    marked = shared_material({w: c for w, (c, _) in best.items()}, lines, settings, related)
    return {w: PeakFinding(w, marked[w], source, tried[w]) for w, (_, source) in best.items()}


def gather_evidence(
    query: Fingerprint,
    indexes: LoadedIndexes,
    settings: Settings,
    works: WorkSource,
    reference: References | None = None,
    *,
    sweep_all_tempos: bool = True,
    reference_hashes: ReferenceHashes | None = None,
    time_scale: float = 1.0,
    related: Related | None = None,
    quad_votes_of: Callable[[Fingerprint], list[QuadVote]] | None = None,
    look_factor: int = 1,
) -> Evidence:
    """Retrieve, verify and (unless a hash line is decisive) run the chroma and peak checks.
    ``reference``, ``reference_hashes`` and ``related``: the stored fingerprints, the hashes
    made from them (:func:`stored_hashes`) and which works are copies of one recording
    (:func:`one_recording`), when the caller keeps them across looks. With
    ``sweep_all_tempos`` and ``settings.chroma_sweep_all_tempos`` the chroma candidates are also
    aligned over the whole tempo range, to lead more peak checks (:func:`swept_chroma`,
    :func:`swept_leads`); the further looks of :func:`look_again` leave it off, the look as it
    is covers that range. After a sampled look-up the first chroma-voted works that are no chroma
    candidate are aligned at their vote's scale to lead peak checks too (:func:`voted_lead_works`:
    a copy that leaves no hash line is found by its peaks). ``time_scale``: the query is the
    upload seen that many times slower (a further look), its chroma searched at
    :func:`audiodup.match.view_scales`. ``quad_votes_of``: :func:`quad_voted_works` of a look,
    when the caller reads several looks' four-peak entries at once (:func:`quad_votes_ahead`).
    ``look_factor``: the number the look's probabilities will be multiplied by (a further look
    pays for every look planned, :func:`looks_planned`): a line is decisive only at or below
    the duplicate bound divided by it (:func:`decisive`)."""
    n_works = max(int(indexes.live.sum()), 1)
    # each stored fingerprint decoded once per query, for the hash verification and the checks
    reference = reference or _memo(works.fingerprint)
    reference_hashes = reference_hashes or stored_hashes(reference, settings)
    related = related or one_recording(reference, reference_hashes, settings)
    query_hashes = fingerprint_hashes(query, settings, query=True)
    found = verified_candidates(query, indexes, settings, works, reference_hashes, query_hashes)
    hashes = scored_lines(found, indexes, n_works, query, settings, related)
    if decisive(hashes, settings, look_factor):
        return Evidence(n_works, hashes)
    search = search_chroma_segments(
        query, indexes, settings, time_scale, vote_density(found, settings)
    )
    quad_votes_of = quad_votes_of or partial(quad_voted_works, indexes=indexes, settings=settings)
    quad_votes = quad_votes_of(query) if found.unseen_hits > 0 else []
    votes = look_votes(search, found, settings)
    voted = chroma_voted_candidates(
        query_hashes,
        found,
        [w for w, _ in votes],
        indexes,
        settings,
        reference_hashes,
        [v.work_id for v in quad_votes],
    )
    if voted is not found:
        found = voted
        hashes = scored_lines(found, indexes, n_works, query, settings, related)
        if decisive(hashes, settings, look_factor):
            return Evidence(n_works, hashes)
    candidates = chroma_candidate_scales(search, settings)
    chroma = score_chroma(aligned_chroma(query, candidates, settings, reference), n_works, settings)
    leads: list[ChromaEvidence] = []
    if sweep_all_tempos and settings.chroma_sweep_all_tempos:
        extra = extra_chroma_candidates(search, settings, query)
        # one sweep of both: the query's spectra are computed once
        swept = swept_chroma(query, candidates + extra, settings, reference)
        leads = first_and_extra_leads(swept, candidates, extra, chroma, settings)
    led = voted_lead_works(votes, candidates, settings)
    leads += voted_leads(aligned_chroma(query, led, settings, reference), settings)
    hashed = {w: f.evidence for w, f in hashes.items()}
    cells = cell_leads(found.candidates, settings)
    quad_cells = quad_leads(quad_votes, settings)
    peaks = peak_checks(
        query,
        hashed,
        chroma,
        settings,
        reference,
        leads,
        cells,
        quad_cells,
        material_lines(hashes, settings),
        related,
    )
    return Evidence(n_works, hashes, tuple(chroma), peaks)


def scored_lines(
    found: Candidates,
    indexes: LoadedIndexes,
    n_works: int,
    query: Fingerprint,
    settings: Settings,
    related: Related | None = None,
) -> dict[int, HashFinding]:
    """The verified candidates' lines scored (:func:`score_hashes`), those on material many
    works hold made no evidence (:func:`shared_lines`)."""
    lines = verified_lines(found).values()
    hits = competition_hits(found, indexes)
    return score_lines(lines, n_works, settings, hits, query.duration_s, related)


def score_lines(
    lines: Iterable[HashEvidence],
    n_works: int,
    settings: Settings,
    hits_per_work: np.ndarray,
    duration_s: float,
    related: Related | None = None,
) -> dict[int, HashFinding]:
    """:func:`score_hashes`, with the lines on material many works hold made no evidence
    (:func:`shared_lines`) and the others scored again without them: they are no chance
    lines, and a background fit that counted them (:func:`audiodup.verdict.chance_excess_scale`)
    would hold down a copy of one of those works with them."""
    lines = list(lines)
    scored = score_hashes(lines, n_works, settings, hits_per_work)
    stretches = shared_stretches(scored, duration_s, settings, related)
    if not stretches:
        return scored
    marked = lines_off_stretches(scored, stretches, settings)
    shared = {w: f for w, f in marked.items() if f.shared_with}
    rest = score_hashes(
        [e for e in lines if e.work_id not in shared], n_works, settings, hits_per_work
    )
    return {**lines_off_stretches(rest, stretches, settings), **shared}


def decisive(hashes: dict[int, HashFinding], settings: Settings, look_factor: int = 1) -> bool:
    """Whether a hash line alone decides the look (the chroma and peak checks are skipped): a
    duplicate once its probability is multiplied by ``look_factor``, as a further look's is. A
    line that is not leaves the look its checks, whose peaks may make the copy certain."""
    bound = settings.duplicate_max_fmp / look_factor
    return any(f.false_match_probability <= bound for f in hashes.values())


# -- combine -------------------------------------------------------------------------------------
def matches_from_evidence(
    evidence: Evidence, query: Fingerprint, settings: Settings, works: WorkSource
) -> list[Match]:
    """Every work the evidence explains part of the upload with, most certain first.

    Per work the lowest false-match probability wins among: its hash lines; hash x chroma when
    both found the same transform and the peaks confirm the recording; chroma alone (a
    composition); the guided peak check, alone or x a significant chroma alignment."""
    suspect = settings.suspect_max_fmp
    matches = {
        w: hash_match(
            f.evidence, f.false_match_probability, query, settings, works, shared=f.hits_on_shared
        )
        for w, f in evidence.hashes.items()
        if f.false_match_probability <= suspect
    }
    for found in evidence.chroma:
        ev, work_id = found.evidence, found.evidence.work_id
        hashed = evidence.hashes.get(work_id)
        peaks = evidence.peaks.get(work_id)
        if hashed is not None and channels_agree(
            hashed.evidence, ev, peaks.check if peaks else None, settings
        ):
            fmp = combine_hash_and_chroma(
                hashed.false_match_probability, found.false_match_probability, evidence.n_works
            )
            matches[work_id] = hash_match(
                hashed.evidence,
                fmp,
                query,
                settings,
                works,
                chroma=ev,
                check=peaks.check,
                shared=hashed.hits_on_shared,
            )
        elif (
            work_id not in matches
            and found.false_match_probability <= suspect
            and ev.similarity >= settings.chroma_min_similarity
        ):
            matches[work_id] = chroma_match(ev, found.false_match_probability, query, works)
    for work_id, peaks in evidence.peaks.items():
        chroma_fmp = peaks.chroma.false_match_probability if peaks.chroma else None
        fmp = combine_peaks_and_chroma(
            peaks.probability,
            evidence.n_works,
            chroma_fmp,
            settings,
            confirmed=confirms_recording(peaks.check, settings),
        )
        current = matches.get(work_id)
        if fmp <= suspect and (current is None or fmp < current.false_match_probability):
            hashed = evidence.hashes.get(work_id)
            matches[work_id] = peak_match(
                peaks, fmp, query, settings, works, hashed.evidence if hashed else None
            )
    return sorted(matches.values(), key=lambda m: (m.false_match_probability, -m.coverage_s))


def match_fingerprint(
    query: Fingerprint,
    indexes: LoadedIndexes,
    settings: Settings,
    works: WorkSource,
    view: View | None = None,
    without: Sequence[int] = (),
    *,
    every_look: bool = False,
) -> list[Match]:
    """Every work that explains part of the query, most certain first. With ``view`` (the
    upload's fingerprint at another time scale or hop phase), the further looks of
    :func:`planned_views` follow when the upload as it is gives no duplicate, or with
    ``every_look`` in any case (:func:`look_again`). ``without``: works left out of the catalog
    for this query (:meth:`LoadedIndexes.without`)."""
    looks = gather_looks(query, indexes.without(without), settings, works, view, every_look)
    return matches_from_looks(looks, settings, works)


# -- looks at other time scales and phases ------------------------------------------------------
# (time scale, hop phase) -> the upload's fingerprint played that many times slower, its analysis
# starting that fraction of a hop in (fingerprint.fingerprint_audio)
View = Callable[[float, float], Fingerprint]


@dataclass(frozen=True)
class Look:
    """The evidence gathered on the upload seen ``time_scale`` times slower, its analysis
    starting ``start_s`` seconds in (1.0 and 0.0: the upload as it is)."""

    time_scale: float
    start_s: float
    query: Fingerprint
    evidence: Evidence

    def upload_s(self, frame: float, fps: float) -> float:
        """The second of the upload (in its own time) of this look's ``frame``."""
        return frame / fps / self.time_scale + self.start_s

    def frame(self, upload_s: float, fps: float) -> float:
        """This look's frame of the upload's second ``upload_s``."""
        return (upload_s - self.start_s) * self.time_scale * fps


def planned_views(query: Fingerprint, settings: Settings) -> list[tuple[float, float]]:
    """The ``(time_scale, hop_phase)`` of every further look screening may take at ``query``:
    the other hop phases of a short upload, then the slowed and sped-up looks, then those of
    ``settings.half_hop_scales`` half a hop in (an upload under ``half_hop_max_s``)."""
    phases = []
    if query.duration_s < settings.short_query_max_s:
        n = settings.short_query_phases
        phases = [(1.0, k / n) for k in range(1, n)]
    plan = phases + [(scale, 0.0) for scale in settings.query_view_scales]
    if query.duration_s < settings.half_hop_max_s:
        plan += [(s, 0.5) for s in settings.half_hop_scales if (s, 0.5) not in plan]
    return plan


def looks_planned(query: Fingerprint, settings: Settings) -> int:
    """How many looks screening may take at ``query``: the upload as it is and those of
    :func:`planned_views`. A further look's probabilities are multiplied by it (each look is
    a further search), and its hash line is decisive only once multiplied."""
    return 1 + len(planned_views(query, settings))


def gather_looks(
    query: Fingerprint,
    indexes: LoadedIndexes,
    settings: Settings,
    works: WorkSource,
    view: View | None = None,
    every_look: bool = False,
) -> list[Look]:
    """The look at the upload as it is, then, until one gives a duplicate (``every_look``: all
    of them), the looks of :func:`planned_views` (``view`` makes their fingerprints).

    A WSOLA stretcher at 2x cuts and overlaps the signal every few tens of ms, so the peaks of
    the copy move by a frame or two: at the ordinary hop that is a reference frame or four,
    which breaks most triplet keys and misses the peak check's tolerance. Analysed with half
    the hop, the copy has the original's tempo and the stored peaks' time precision. Slow
    copies (speed 0.5, slowed and reverberated) are seen faster the same way. A short excerpt
    is looked at in other frame phases: a few seconds hold too few triplets to lose half."""
    # the looks mostly check the same candidates: their stored fingerprints are decoded once
    # (a clean upload of the test catalog: 6 reads instead of 18), and hashed once for the
    # verification of a sampled look-up (clean 4-min uploads at 113 works, mean of 10: 93
    # reads and 75 hashings -> 59 and 54, issue #16)
    reference = _memo(works.fingerprint)
    hashes_of = stored_hashes(reference, settings)
    related = one_recording(reference, hashes_of, settings)
    if view is not None:
        view = _memo(view)  # each further look's fingerprint made once, the same object
    votes_of = quad_votes_ahead(query, view, indexes, settings)

    def gather(seen: Fingerprint, **options) -> Evidence:
        return gather_evidence(
            seen,
            indexes,
            settings,
            works,
            reference,
            reference_hashes=hashes_of,
            related=related,
            quad_votes_of=votes_of,
            **options,
        )

    return look_again(query, gather, settings, works, view, every_look)


# further looks whose four-peak entries are read in one pass: at 10^5 works two save a clean
# 4-min upload about 2 % of its search CPU; every look of a short upload's plan at once (up
# to 7) cost the copies that stop before the last look 26 % (benchmarks/SCALING.md, session 52)
LOOKS_READ_TOGETHER = 2


def quad_votes_ahead(
    query: Fingerprint, view: View | None, indexes: LoadedIndexes, settings: Settings
) -> Callable[[Fingerprint], list[QuadVote]]:
    """:func:`quad_voted_works` of each look of an upload (``query`` and the ``view``s of
    :func:`planned_views`), a further look's four-peak entries read in one pass with those of
    the next :data:`LOOKS_READ_TOGETHER` - 1 looks of the plan: their look-ups touch most of
    the same pages of the four-peak files, which a look releases as it reads. Those looks'
    fingerprints are then made before their turn, and a look that the one before makes
    unnecessary was read for nothing. Each look's votes are those it gets alone."""
    plan = planned_views(query, settings) if view is not None else []
    ahead: list[tuple[Fingerprint, list[QuadVote]]] = []

    def votes(seen: Fingerprint) -> list[QuadVote]:
        for fingerprint, found in ahead:
            if fingerprint is seen:
                return found
        if view is None or seen is query or not indexes.quad_shards:
            return quad_voted_works(seen, indexes, settings)
        if settings.quad_voted_works <= 0:
            return []
        # the further looks come in the plan's order: the ones before ``seen`` are made
        turn = next((k for k, look in enumerate(plan) if view(*look) is seen), None)
        if turn is None:
            return quad_voted_works(seen, indexes, settings)
        seens = [view(*look) for look in plan[turn : turn + LOOKS_READ_TOGETHER]]
        looks = [query_quads(fingerprint, settings) for fingerprint in seens]
        found = indexes.quad_works_of(looks, settings, settings.quad_voted_works)
        ahead.extend(zip(seens, found, strict=True))
        return found[0]

    return votes


def look_again(
    query: Fingerprint,
    gather: Callable[..., Evidence],
    settings: Settings,
    works: WorkSource,
    view: View | None = None,
    every_look: bool = False,
) -> list[Look]:
    """:func:`gather_looks` with ``gather(fingerprint)`` gathering each look's evidence (in
    this process, or over a sharded catalog's groups), the further looks' with
    ``sweep_all_tempos=False`` and their ``time_scale`` (:func:`gather_evidence`).

    A further look is gathered with ``look_factor`` :func:`looks_planned`: a hash line
    decisive within the look but not once multiplied leaves it its chroma and peak checks.

    An upload stops at its first duplicate: it is one. A rescan takes ``every_look``: a work
    with a duplicate may still be a copy of another work that only a further look sees (two 2x
    copies of one original find each other on the first look, the original only 2x slower).
    Either way the further looks' probabilities are multiplied by every look planned
    (:func:`matches_from_looks`), so taking them all adds no chance the factor does not count."""
    looks = [Look(1.0, 0.0, query, gather(query))]
    if view is None:
        return looks
    n_looks = looks_planned(query, settings)
    for time_scale, hop_phase in planned_views(query, settings):
        if not every_look and (
            decide(matches_from_looks(looks, settings, works, n_looks), settings) == "duplicate"
        ):
            break
        seen = view(time_scale, hop_phase)
        start_s = view_start_samples(settings, time_scale, hop_phase) / settings.sample_rate_hz
        evidence = gather(seen, sweep_all_tempos=False, time_scale=time_scale, look_factor=n_looks)
        looks.append(Look(time_scale, start_s, seen, evidence))
    return looks


def matches_from_looks(
    looks: list[Look], settings: Settings, works: WorkSource, n_looks: int | None = None
) -> list[Match]:
    """The matches of every look, in the upload's own time, the most certain per work. The
    further looks are further searches: their probabilities are multiplied by ``n_looks``, by
    default :func:`looks_planned` of the upload as it is (``looks[0]``); the look as it is
    keeps its own, so the verdicts it decides do not move.

    A work that one look already makes a duplicate keeps that look's match: a later look may
    be more certain of it but see less of it (the upload 2x slower against a copy at tempo
    1.09 covered 31 % of it, the look as it is 98 %), and the first duplicate is the one an
    upload's screening, which stops there, reports."""
    if n_looks is None:
        n_looks = looks_planned(looks[0].query, settings)
    shared = shared_seconds(looks, settings)
    found = []
    for look in looks:
        evidence = off_shared_seconds(look, shared, settings) if shared else look.evidence
        for m in matches_from_evidence(evidence, look.query, settings, works):
            if (look.time_scale, look.start_s) != (1.0, 0.0):
                m = match_in_upload_time(m, look.time_scale, look.start_s, n_looks)
                if m.false_match_probability > settings.suspect_max_fmp:
                    continue
            found.append(m)
    return most_certain_per_work(found, settings)


def shared_seconds(looks: Iterable[Look], settings: Settings) -> list[tuple[float, float, int]]:
    """``(start_s, end_s, works)``: the stretches of the upload (in its own time) where some
    look found material many works hold (:func:`shared_lines`,
    :func:`audiodup.peakcheck.shared_material`), with how many other works held it."""
    fps = settings.frames_per_second
    found = []
    for look in looks:
        marked = [(f.shared_query_frames, f.shared_with) for f in look.evidence.hashes.values()]
        marked += [
            (p.check.shared_query_frames, p.check.shared_with) for p in look.evidence.peaks.values()
        ]
        found += [
            (look.upload_s(start, fps), look.upload_s(end, fps), n)
            for (start, end), n in marked
            if n
        ]
    return found


def off_shared_seconds(
    look: Look, shared: Sequence[tuple[float, float, int]], settings: Settings
) -> Evidence:
    """The look's evidence with every hash line and peak check that holds too little off the
    ``shared`` stretches (:func:`shared_seconds`) to make a duplicate made no evidence, as if
    this look had found the material many works hold itself (:func:`lines_off_stretches`,
    :func:`audiodup.peakcheck.shared_material`): one look found it, and another look's line or
    check on it names no one of those works either."""
    fps = settings.frames_per_second
    stretches = [(look.frame(s, fps), look.frame(e, fps), n) for s, e, n in shared]
    found = look.evidence.peaks
    checks = checks_off_stretches({w: p.check for w, p in found.items()}, stretches, settings)
    peaks = {w: replace(p, check=checks[w]) for w, p in found.items()}
    hashes = lines_off_stretches(look.evidence.hashes, stretches, settings)
    return replace(look.evidence, hashes=hashes, peaks=peaks)


def most_certain_per_work(matches: Iterable[Match], settings: Settings) -> list[Match]:
    """Per work, the most certain of ``matches`` (in the order they were found), except that
    the first that makes the work a duplicate stays; most certain first."""
    best: dict[int, Match] = {}
    for m in matches:
        held = best.get(m.work_id)
        if held is None or (
            m.false_match_probability < held.false_match_probability
            and decide([held], settings) != "duplicate"
        ):
            best[m.work_id] = m
    return sorted(best.values(), key=lambda m: (m.false_match_probability, -m.coverage_s))


def match_in_upload_time(match: Match, time_scale: float, start_s: float, n_looks: int) -> Match:
    """A match found on the upload seen ``time_scale`` times slower from ``start_s`` on, in the
    upload's own time and tempo, its probability multiplied by ``n_looks`` (the searches)."""

    def upload_s(view_s: float) -> float:
        return view_s / time_scale + start_s

    fmp = min(1.0, match.false_match_probability * n_looks)
    sections = tuple(
        replace(s, query_start_s=upload_s(s.query_start_s), query_end_s=upload_s(s.query_end_s))
        for s in match.sections
    )
    return replace(
        match,
        false_match_probability=fmp,
        score=score_from_probability(fmp),
        tempo_ratio=match.tempo_ratio * time_scale,
        query_start_s=upload_s(match.query_start_s),
        query_end_s=upload_s(match.query_end_s),
        coverage_s=match.coverage_s / time_scale,
        sections=sections,
    )


# (fingerprint, view, works left out, every look) -> matches: match_fingerprint over this
# process's indexes, or over a sharded catalog's groups
Search = Callable[[Fingerprint, "View | None", Sequence[int], bool], list[Match]]


@dataclass(frozen=True)
class SignalQuery:
    """A part of a stereo upload screened beside its mix (its stereo difference, a channel):
    its fingerprint, its further looks, and the second of the upload its stretch starts at."""

    signal: Signal
    fingerprint: Fingerprint
    view: View | None
    start_s: float = 0.0


class SignalQueries(Sequence[SignalQuery]):
    """An upload's stereo and multichannel parts as queries, each fingerprinted when it is
    taken (:class:`audiodup.fingerprint.SignalParts`): screening holds one part's analysis at a
    time."""

    def __init__(self, prints: UploadFingerprints):
        self._parts = prints.parts

    @property
    def signals(self) -> tuple[Signal, ...]:
        return self._parts.signals

    def __len__(self) -> int:
        return len(self._parts)

    @overload
    def __getitem__(self, index: int) -> SignalQuery: ...

    @overload
    def __getitem__(self, index: slice) -> list[SignalQuery]: ...

    def __getitem__(self, index: int | slice) -> SignalQuery | list[SignalQuery]:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        part = self._parts[index]
        return SignalQuery(part.signal, part.prints.query, part.prints.view, part.start_s)


def signal_queries(prints: UploadFingerprints) -> SignalQueries:
    """What of ``prints``' stereo parts to screen beside the mix (none for most uploads)."""
    return SignalQueries(prints)


def _signals_of(parts: Sequence[SignalQuery]) -> tuple[Signal, ...]:
    """The signals of ``parts``, without fingerprinting lazy ones."""
    return parts.signals if isinstance(parts, SignalQueries) else tuple(p.signal for p in parts)


def match_signals(
    search: Search,
    query: Fingerprint,
    view: View | None,
    parts: Sequence[SignalQuery],
    settings: Settings,
    without: Sequence[int] = (),
    every_look: bool = False,
) -> list[Match]:
    """The matches of an upload's mix (``query``, ``view``) and of each of the stereo ``parts``
    screened beside it, in the upload's time (:func:`with_signals`).

    As the looks stop at an upload's first duplicate, so does this: a signal that is a
    duplicate (its probabilities multiplied) leaves the next unsearched, unless
    ``every_look``. A search that stopped at a duplicate that the multiplication undoes is
    taken again with every look, as it would have gone on."""
    if not parts:
        return search(query, view, without, every_look)
    searches = signal_multipliers(_signals_of(parts))

    def searched(signal: Signal, fingerprint: Fingerprint, seen: View | None) -> list[Match]:
        found = search(fingerprint, seen, without, every_look)
        if every_look or decide(found, settings) != "duplicate":
            return found
        if decide(with_signals({signal: found}, searches, settings), settings) == "duplicate":
            return found
        return search(fingerprint, seen, without, True)

    found = {"mix": searched("mix", query, view)}
    for part in parts:
        if not every_look and decide(with_signals(found, searches, settings), settings) == (
            "duplicate"
        ):
            break
        matches = searched(part.signal, part.fingerprint, part.view)
        found[part.signal] = [in_upload(m, part.start_s, query.duration_s) for m in matches]
    return with_signals(found, searches, settings)


def in_upload(match: Match, start_s: float, duration_s: float) -> Match:
    """A match found in a stretch of an upload that starts ``start_s`` seconds in, in the
    upload's time, its ``coverage`` a share of the whole upload (``duration_s``)."""
    moved = match_in_upload_time(match, 1.0, start_s, 1) if start_s else match
    return replace(moved, coverage=min(1.0, moved.coverage_s / max(duration_s, 1e-9)))


def signal_multipliers(parts: Sequence[Signal]) -> dict[Signal, float]:
    """What each probability of an upload whose mix and ``parts`` are screened is multiplied
    by: the number of searches, for the mix and a stereo file's parts alike (at most 4); once a
    multichannel file's parts are among them (up to 64 channels and 28 differences), half the
    chance goes to the mix (x2) and half is shared by the parts (x2 x their number), so that a
    copy plainly in the mix is not weakened by a 7.1 file's 36 parts. Either way the weights
    sum to one (Bonferroni's bound, weighted)."""
    if not any(part in NUMBERED_PARTS for part in parts):
        return dict.fromkeys(["mix", *parts], float(1 + len(parts)))
    return {"mix": 2.0} | dict.fromkeys(parts, 2.0 * len(parts))


def with_signals(
    found: dict[Signal, list[Match]], multipliers: dict[Signal, float], settings: Settings
) -> list[Match]:
    """The matches of an upload whose mix and stereo parts were screened, ``found`` per
    signal, every probability multiplied by its signal's ``multipliers``
    (:func:`signal_multipliers`); per work the more certain match (but a duplicate is kept, as
    :func:`matches_from_looks` keeps a look's), each marked with its signal; most certain
    first."""

    def multiplied(m: Match, signal: Signal) -> Match:
        fmp = min(1.0, multipliers[signal] * m.false_match_probability)
        return replace(
            m, false_match_probability=fmp, score=score_from_probability(fmp), signal=signal
        )

    every = [multiplied(m, signal) for signal, matches in found.items() for m in matches]
    return most_certain_per_work(every, settings)


# -- matches from evidence -----------------------------------------------------------------------
def hash_match(
    e: HashEvidence,
    fmp: float,
    query: Fingerprint,
    settings: Settings,
    works: WorkSource,
    *,
    chroma: ChromaEvidence | None = None,
    check: PeakCheck | None = None,
    shared: int = 0,
) -> Match:
    """A same-recording match from hash lines; with ``chroma`` and ``check`` the combined match
    of hashes, an agreeing chroma alignment and the peaks that confirm it. ``shared``: its hits
    on material many works hold (:attr:`HashFinding.hits_on_shared`)."""
    fps = settings.frames_per_second
    sections = tuple(
        Section(
            line.query_start_frame / fps,
            line.query_end_frame / fps,
            line.ref_start_frame / fps,
            line.ref_end_frame / fps,
            line.inliers,
        )
        for line in e.lines
    )
    return _match(
        works,
        query,
        e.work_id,
        "same_recording",
        fmp,
        sections[0],
        e.coverage_s,
        tempo_ratio=e.tempo_ratio,
        pitch_shift_semitones=e.pitch_shift_semitones,
        matched_hashes=e.inliers,
        chroma_similarity=chroma.similarity if chroma else None,
        sections=sections,
        matched_peaks=check.matched_peaks if check else None,
        matched_onsets=check.matched_onsets if check else None,
        matched_on_shared_material=min(shared, e.inliers),  # hits, of patterns
        chroma_confirmed=chroma is not None,
        # the fit of all hits first: the sections' own tempos scatter (114 ramped benchmark
        # copies that both read: p10-p90 1.046-1.079 from the sections, 1.064-1.078 from the
        # fit, a 1.08 ramp); the set of copies given a drift is the same
        tempo_drift=curve_drift(e, fps) or _bending_drift(e, fps) or tempo_drift(sections),
    )


# a section counts for drift with this much evidence; tempos closer than this are one tempo
_DRIFT_MIN_HASHES = 8
_DRIFT_MIN_S = 5.0
_DRIFT_MIN_LOG = 0.015


_BEND_MIN_HITS = 40
_BEND_MIN_SPAN_S = 20.0
_BEND_MIN_GAIN = 0.5  # the curve must remove this share of the straight line's residual


def _bending_drift(e: HashEvidence, fps: float) -> float | None:
    """The drift of one hash line that bends: a ramp slow enough to stay inside one line's
    tolerance still curves its hits. Upload time against reference time is fitted with a
    straight line and with a parabola; when the parabola removes most of the line's residual,
    the local tempo (its slope) at the two ends of the hits is the drift."""
    if len(e.lines) != 1 or len(e.match_query_frames) < _BEND_MIN_HITS:
        return None
    tq = np.asarray(e.match_query_frames, dtype=np.float64) / fps
    tr = np.asarray(e.match_ref_frames, dtype=np.float64) / fps
    if np.ptp(tq) < _BEND_MIN_SPAN_S:
        return None
    center = tq - tq.mean()
    straight = tr - np.polyval(np.polyfit(center, tr, 1), center)
    curve_fit = np.polyfit(center, tr, 2)
    curved = tr - np.polyval(curve_fit, center)
    if np.sum(curved**2) > (1.0 - _BEND_MIN_GAIN) * np.sum(straight**2):
        return None
    a, b = curve_fit[0], curve_fit[1]
    start, end = b + 2 * a * center.min(), b + 2 * a * center.max()
    if start <= 0 or end <= 0:
        return None
    drift = float(end / start)
    return drift if abs(np.log(drift)) >= _DRIFT_MIN_LOG else None


_CURVE_MIN_HITS = 40
_CURVE_MIN_SPAN_S = 20.0
_CURVE_LINE_TOL_FRAMES = 5.0  # a hit belongs to the section whose line passes this near
_CURVE_MIN_F = 50.0  # the curve's F statistic over the straight lines (1 degree of freedom)


def curve_drift(e: HashEvidence, fps: float) -> float | None:
    """The drift of all a work's hits, on one line or several: a ramp makes the verifier cut
    the aligned part into sections, and loops or repeats add parallel ones, so the sections
    alone seldom show the ramp (:func:`tempo_drift`). Each hit is put on the section whose line
    passes nearest; the hits are fitted with one offset per section and a shared slope, then
    also with a shared curvature (reference time quadratic in upload time). When the curvature
    removes at least ``_BEND_MIN_GAIN`` of the straight fit's residual and is significant (F
    statistic at least ``_CURVE_MIN_F``: a steady copy's hits scatter by a frame or two around
    straight lines), the local tempo (the slope) at the two ends of the hits is the drift."""
    tq = np.asarray(e.match_query_frames, dtype=np.float64)
    tr = np.asarray(e.match_ref_frames, dtype=np.float64)
    if len(tq) < _CURVE_MIN_HITS or np.ptp(tq) < _CURVE_MIN_SPAN_S * fps or not e.lines:
        return None
    q0 = np.array([line.query_start_frame for line in e.lines])
    q1 = np.array([line.query_end_frame for line in e.lines])
    r0 = np.array([line.ref_start_frame for line in e.lines])
    r1 = np.array([line.ref_end_frame for line in e.lines])
    slope = (r1 - r0) / np.maximum(q1 - q0, 1.0)
    residual = np.abs(tr[:, None] - (r0 + slope * (tq[:, None] - q0)))
    margin = _CURVE_LINE_TOL_FRAMES
    residual[(tq[:, None] < q0 - margin) | (tq[:, None] > q1 + margin)] = np.inf
    section = np.argmin(residual, axis=1)
    on_line = residual[np.arange(len(tq)), section] <= _CURVE_LINE_TOL_FRAMES
    tq, tr, section = tq[on_line], tr[on_line], section[on_line]
    if len(tq) < _CURVE_MIN_HITS or np.ptp(tq) < _CURVE_MIN_SPAN_S * fps:
        return None
    x = (tq - tq.mean()) / fps
    offsets = (section[:, None] == np.unique(section)[None, :]).astype(np.float64)
    straight = np.column_stack([offsets, x])
    curved = np.column_stack([straight, x**2])

    def rss(design: np.ndarray) -> tuple[float, np.ndarray]:
        coef = np.linalg.lstsq(design, tr, rcond=None)[0]
        return float(np.sum((tr - design @ coef) ** 2)), coef

    rss_straight, _ = rss(straight)
    rss_curved, coef = rss(curved)
    dof = len(tq) - curved.shape[1]
    if dof < 8 or rss_curved > (1.0 - _BEND_MIN_GAIN) * rss_straight:
        return None
    if (rss_straight - rss_curved) < _CURVE_MIN_F * rss_curved / dof:
        return None
    b, a = coef[-2], coef[-1]
    start, end = b + 2 * a * x.min(), b + 2 * a * x.max()
    if start <= 0 or end <= 0:
        return None
    drift = float(end / start)
    return drift if abs(np.log(drift)) >= _DRIFT_MIN_LOG else None


def _follows(a: Section, b: Section) -> bool:
    """Whether ``b`` starts past the middle of ``a`` in both upload and reference time: not
    the same stretch of the upload matched again at a repeat of the work (a chorus), which
    gave a steady copy a drift from two sections at one upload time."""
    return (
        b.query_start_s > (a.query_start_s + a.query_end_s) / 2
        and b.ref_start_s > (a.ref_start_s + a.ref_end_s) / 2
    )


def tempo_drift(sections: tuple[Section, ...]) -> float | None:
    """Upload tempo at the end of the aligned part over the tempo at its start, when the hash
    sections show a tempo that changes along the upload (a DJ's ramp); None otherwise. The
    ramp is taken as linear in log tempo along the upload.

    Each section is one fitted line, its own tempo ratio is reference span / upload span. A
    drift needs two or more well-supported sections that follow each other in both upload and
    reference time (a loop or a cut is not a drift) with tempos changing one way only."""
    solid = sorted(
        (
            s
            for s in sections
            if s.matched_hashes >= _DRIFT_MIN_HASHES
            and s.query_end_s - s.query_start_s >= _DRIFT_MIN_S
        ),
        key=lambda s: s.query_start_s,
    )
    if len(solid) < 2:
        return None
    if any(not _follows(a, b) for a, b in zip(solid, solid[1:], strict=False)):
        return None
    logs = np.log(
        [(s.ref_end_s - s.ref_start_s) / (s.query_end_s - s.query_start_s) for s in solid]
    )
    steps = np.diff(logs)
    one_way = bool(np.all(steps >= -_DRIFT_MIN_LOG / 2) or np.all(steps <= _DRIFT_MIN_LOG / 2))
    if not one_way or abs(float(logs[-1] - logs[0])) < _DRIFT_MIN_LOG:
        return None
    # a section's tempo is its mean: the ramp's rate comes from the sections' middles, and the
    # drift is that rate over the whole aligned part
    middles = [(s.query_start_s + s.query_end_s) / 2 for s in solid]
    rate = float(np.polyfit(middles, logs, 1)[0])
    return float(np.exp(rate * (solid[-1].query_end_s - solid[0].query_start_s)))


def peak_match(
    found: PeakFinding,
    fmp: float,
    query: Fingerprint,
    settings: Settings,
    works: WorkSource,
    hashed: HashEvidence | None,
) -> Match:
    """A same-recording match made by the guided peak check."""
    fps = settings.frames_per_second
    check, a = found.check, found.check.alignment
    q0, q1, r0, r1 = check.aligned_frames()
    inliers = hashed.inliers if hashed else 0
    section = Section(q0 / fps, q1 / fps, r0 / fps, r1 / fps, inliers)
    return _match(
        works,
        query,
        found.work_id,
        "same_recording",
        fmp,
        section,
        (q1 - q0) / fps,
        tempo_ratio=a.tempo_ratio,
        pitch_shift_semitones=a.pitch_bins / (settings.bins_per_octave // 12),
        matched_hashes=inliers,
        # shown, not evidence: the alignment that led the check may be insignificant
        chroma_similarity=found.chroma.evidence.similarity if found.chroma else None,
        sections=(section,),
        matched_peaks=check.matched_peaks,
        matched_onsets=check.matched_onsets,
        matched_on_shared_material=check.peaks_on_shared,
    )


def chroma_match(ev: ChromaEvidence, fmp: float, query: Fingerprint, works: WorkSource) -> Match:
    """A same-composition match from chroma alone."""
    aligned = Section(ev.query_start_s, ev.query_end_s, ev.ref_start_s, ev.ref_end_s, 0)
    return _match(
        works,
        query,
        ev.work_id,
        "same_composition",
        fmp,
        aligned,
        ev.query_end_s - ev.query_start_s,
        tempo_ratio=ev.tempo_ratio,
        pitch_shift_semitones=ev.pitch_shift_semitones,
        matched_hashes=0,
        chroma_similarity=ev.similarity,
    )


def _match(
    works: WorkSource,
    query: Fingerprint,
    work_id: int,
    relation: Relation,
    fmp: float,
    main: Section,
    coverage_s: float,
    **evidence,
) -> Match:
    """A :class:`Match` of ``work_id``, named from the catalog, placed by its ``main`` section;
    ``evidence`` holds the remaining :class:`Match` fields."""
    info = works.work(work_id)
    return Match(
        work_id=work_id,
        path=info.path if info else "",
        title=info.title if info else None,
        relation=relation,
        score=score_from_probability(fmp),
        false_match_probability=fmp,
        query_start_s=main.query_start_s,
        query_end_s=main.query_end_s,
        ref_start_s=main.ref_start_s,
        ref_end_s=main.ref_end_s,
        coverage=min(1.0, coverage_s / max(query.duration_s, 1e-9)),
        coverage_s=coverage_s,
        **evidence,
    )


# -- one work's evidence, for pictures and reports -----------------------------------------------
def work_evidence(
    query: Fingerprint,
    work_id: int,
    statistics: CatalogStatistics,
    settings: Settings,
    works: WorkSource,
) -> tuple[HashEvidence | None, ChromaEvidence | None]:
    """The raw evidence that ``query`` contains work ``work_id``: the verified hash matches
    (with every inlier's upload and reference frame) and the best chroma alignment.
    For pictures and reports; screening does not need it. The hash hits are all of the work's
    (:func:`audiodup.match.work_votes`, from its stored fingerprint), as a sampled look-up's
    candidates are verified, so only the catalog's key statistics are needed, not its index:
    ``statistics`` is the loaded indexes or a split catalog's totals."""
    reference = works.fingerprint(work_id)
    (verified,) = works_verified(
        fingerprint_hashes(query, settings, query=True),
        voted_items([work_id]),
        statistics,
        settings,
        stored_hashes(lambda _: reference, settings),
    )
    hashed = verified.evidence
    chroma = align_chroma(query, reference, work_id, settings)
    if chroma is not None:  # then a finer grid around the best scale, as screening does
        fine = chroma.tempo_ratio * _fine_scales(settings)
        chroma = align_chroma(query, reference, work_id, settings, fine) or chroma
    return hashed, chroma


def peak_evidence(
    query: Fingerprint,
    work_id: int,
    hashed: HashEvidence | None,
    chroma: ChromaEvidence | None,
    settings: Settings,
    works: WorkSource,
) -> PeakCheck | None:
    """The guided peak check of ``work_id`` from its hash and chroma evidence, as screening
    runs it (for pictures; ``None`` when neither gives an alignment)."""
    checks = peak_checks(
        query,
        {work_id: hashed} if hashed is not None else {},
        [ChromaFinding(chroma, 1.0)] if chroma is not None else [],
        settings,
        works.fingerprint,
    )
    return checks[work_id].check if work_id in checks else None


def _verify(votes: HashVotes, work_id: int, settings: Settings) -> HashEvidence | None:
    return verify_hashes(
        votes,
        work_id,
        settings.frames_per_second,
        settings.bins_per_octave // 12,
        flat_level=flat_level(settings.hash_max_df_bins, settings.df_quant_bins),
    )


def _fine_scales(settings: Settings) -> np.ndarray:
    """Relative tempo scales around a coarse chroma scale, for the fine alignment."""
    step = settings.chroma_scale_step
    return np.geomspace(1 / step, step, 7)


def _memo(load: Callable[..., T]) -> Callable[..., T]:
    """``load`` with each result kept, by its arguments (a work's id, a look's scale and
    phase)."""
    kept: dict[tuple, T] = {}

    def loaded(*key) -> T:
        if key not in kept:
            kept[key] = load(*key)
        return kept[key]

    return loaded


def one_recording(reference: References, hashes_of: ReferenceHashes, settings: Settings) -> Related:
    """Whether two catalog works are copies of one recording (the catalog holds a work again
    when the service records an upload of it): the shorter's stored fingerprint, hashed as an
    upload, lines up with the longer's hashes at a duplicate's certainty for one pair
    (probability at most ``duplicate_max_fmp``, at least ``duplicate_min_hashes`` hits) over
    at least ``one_recording_share`` of the longer. Two works that share a sample line up over
    the sample only, and so does a short work that is little more than the sample (a jingle):
    neither is a copy of the other. A work that cannot be read is no copy (its material stays
    shared). Each pair is verified once, when material would otherwise be shared."""
    queries = _memo(lambda w: fingerprint_hashes(reference(w), settings, query=True))
    known: dict[tuple[int, int], bool] = {}

    def copies(a: int, b: int) -> bool:
        durations = {w: reference(w).duration_s for w in (a, b)}
        shorter, longer = sorted((a, b), key=lambda w: (durations[w], w))
        hashes = queries(shorter)
        keys = query_keys(hashes, np.ones(len(hashes.keys), dtype=bool))
        own = work_votes(hashes, keys, longer, hashes_of(longer), settings.bins_per_semitone)
        line = _verify(own, longer, settings)
        return (
            line is not None
            and line.main_inliers >= settings.duplicate_min_hashes
            and hash_false_match_probability(line, 1.0, 1, settings) <= settings.duplicate_max_fmp
            and line.coverage_s >= settings.one_recording_share * durations[longer]
        )

    def related(a: int, b: int) -> bool:
        pair = (min(a, b), max(a, b))
        if pair not in known:
            try:
                known[pair] = copies(*pair)
            except (AudiodupError, OSError):
                known[pair] = False
        return known[pair]

    return related


def stored_hashes(reference: References, settings: Settings) -> ReferenceHashes:
    """Each work's catalog hashes from its stored fingerprint (``reference``), made once."""
    return _memo(lambda work_id: fingerprint_hashes(reference(work_id), settings))
