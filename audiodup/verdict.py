"""From evidence to a calibrated false-match probability, a relation and a verdict.

Chance hits are not rare: a query's hashes collide with every large catalog work now and then, and
the Hough search then finds the best line through them. Any line holds at least ``MIN_LINE_HASHES``
hits, so the statistic is the *excess* over that minimum. On the Debian benchmark corpus the excess
of unrelated works is small and grows slowly with the number of hits the work received; its tail is
modelled as geometric (heavier than Poisson) with mean ``base + per_vote * votes``. Per query, the
works that received hits but are not the match form a background sample that can only raise that
mean. A union over the works in competition turns the tail probability into
``false_match_probability``: only a work whose retrieved hits number at least the line's inliers
could have produced a line this strong, so works the look-up gave fewer hits do not pay, however
large the catalog (:func:`hash_false_match_probability`).

A chroma alignment is a maximum over scales, rotations and offsets; how high chance reaches
depends on the query (its length, how stationary its chroma is), so its chance law is measured on
the query itself, from the best similarity per stretch of the candidates' references away from
the match (:func:`chroma_false_match_probability`).

The channels combine by the rules below (:func:`combine_hash_and_chroma`,
:func:`combine_peaks_and_chroma`), and :func:`decide` labels the matches, reading only evidence
counts and ``chroma_confirmed``, never a display field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .match import ChromaEvidence, HashEvidence
from .peakcheck import PeakCheck, confirms_recording
from .results import Match, VerdictLabel
from .settings import Settings

MAX_SCORE = 300.0
MIN_LINE_HASHES = 3  # _fit_line never returns fewer inliers


def chance_excess_scale(
    evidence: list[HashEvidence], exclude: set[int], settings: Settings
) -> float:
    """Factor (>= 1) by which this query's background exceeds the prior chance excess."""
    background = [e for e in evidence if e.work_id not in exclude]
    if len(background) < 8:
        return 1.0
    observed = np.mean([e.main_inliers - MIN_LINE_HASHES for e in background])
    expected = np.mean([_prior_excess(e.votes, settings) for e in background])
    return max(1.0, float(observed / expected))


def hash_false_match_probability(
    evidence: HashEvidence,
    scale: float,
    n_works: int,
    settings: Settings,
    hits_per_work: np.ndarray | None = None,
) -> float:
    """Probability that chance gives some work a line as strong as ``evidence``'s.

    Per work, the line's excess has a geometric tail given the work's hits. Without
    ``hits_per_work`` the tail of this work is paid ``n_works`` times. With it (the number of
    retrieved hits of each work that got some, in any order) two searches are paid, each over
    the works in competition only (:class:`HashCompetition`), and the query's probability budget
    is split between them (``settings.hash_own_tail_share`` to the second):

    - the most inliers on one line: a work with fewer hits than the line's inliers cannot give
      it, and the others each pay their own tail;
    - the rarest line given its own work's hits: a line of 23 inliers among 672 hits is rarer
      than one among 9,756, and a large catalog of long works holds works with that many chance
      hits, whose tails the first search pays in full.

    Each is a valid union bound given the hits, however large the catalog, and so is the split:
    with share ``s``, P(the first <= (1 - s) p or the second <= s p) <= p. In a large catalog a
    short upload gives most works a few chance hits only."""
    if hits_per_work is None:
        return min(1.0, _own_tail(evidence, scale, settings) * max(n_works, 1))
    return HashCompetition.of(hits_per_work, scale, settings).false_match_probability(evidence)


@dataclass(frozen=True)
class HashCompetition:
    """The works in competition for one query's hash lines: the retrieved hits of each work that
    got some, in any order (the sums below sort what they add: the order the works came in, one
    process or shards, does not change them)."""

    hits: np.ndarray
    scale: float
    settings: Settings
    # the sum over the works with enough hits, per line strength: most lines of a query are
    # weak, of a few strengths, and a look at 10^5 works scores ~50 against ~10^5 works
    _by_inliers: dict[int, float] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, hits_per_work: np.ndarray, scale: float, settings: Settings) -> HashCompetition:
        return cls(np.asarray(hits_per_work, dtype=np.float64), scale, settings)

    def __getstate__(self) -> dict:
        """Pickled as its hits, scale and settings: the sums made so far are a cache."""
        return {"hits": self.hits, "scale": self.scale, "settings": self.settings}

    def __setstate__(self, state: dict) -> None:
        for name, value in {**state, "_by_inliers": {}}.items():
            object.__setattr__(self, name, value)

    def false_match_probability(self, evidence: HashEvidence) -> float:
        own = _own_tail(evidence, self.scale, self.settings)
        share = self.settings.hash_own_tail_share
        fmp = min(1.0, self.by_inliers(evidence.main_inliers, own) / (1.0 - share))
        if own / share < fmp:  # else the second search cannot give less (it pays own at least)
            fmp = min(fmp, self.by_own_tail(own) / share)
        return fmp

    def by_inliers(self, inliers: int, own: float) -> float:
        """P(some work has a chance line of at least ``inliers``): the sum of the tails of the
        works with at least that many hits, each at its own hit count; the matched work (tail
        ``own``) always competes."""
        total = self._by_inliers.get(inliers)
        if total is None:
            competing = np.sort(self.hits[self.hits >= max(inliers, 1)])
            excess = max(inliers - MIN_LINE_HASHES, 0)
            total = float(np.sum(_line_tail(competing, excess, self.scale, self.settings)))
            self._by_inliers[inliers] = total
        return max(total, own)

    def by_own_tail(self, own: float) -> float:
        """P(some work has a chance line whose tail given its hits is at most ``own``): ``own``
        times the works that could give such a line, the matched work among them."""
        rivals = int(np.count_nonzero(self.rarest_tails <= own))
        return own * max(rivals, 1)

    @cached_property
    def rarest_tails(self) -> np.ndarray:
        """The tail of the rarest line each work could give (all its hits on one line): made for
        the first line strong enough to need them (none on a clean upload)."""
        hits = self.hits
        return _line_tail(hits, np.maximum(hits - MIN_LINE_HASHES, 0.0), self.scale, self.settings)


def _own_tail(evidence: HashEvidence, scale: float, settings: Settings) -> float:
    """The tail of ``evidence``'s line given its own work's hits."""
    excess = max(evidence.main_inliers - MIN_LINE_HASHES, 0)
    return float(_line_tail(np.asarray(evidence.votes), excess, scale, settings))


def _line_tail(votes: np.ndarray, excess, scale: float, settings: Settings) -> np.ndarray:
    """P(a work with ``votes`` hits gives a chance line with at least this ``excess``)."""
    mean_excess = _prior_excess(votes, settings) * scale
    return (mean_excess / (1.0 + mean_excess)) ** excess


def _prior_excess(votes, settings: Settings):
    return settings.chance_excess_base + settings.chance_excess_per_vote * votes


def chroma_null_sample(aligned: Sequence[ChromaEvidence], work_id: int) -> np.ndarray:
    """The chance sample for the alignment of ``work_id``: the block maxima of every aligned
    candidate, except the block of ``work_id`` that holds its match and the blocks either side
    (an alignment straddling two blocks raises both)."""
    parts = []
    for ev in aligned:
        blocks = np.asarray(ev.block_maxima, dtype=np.float64)
        if ev.work_id == work_id and len(blocks):
            keep = np.abs(np.arange(len(blocks)) - ev.best_block) > 1
            blocks = blocks[keep]
        parts.append(blocks)
    return np.concatenate(parts) if parts else np.zeros(0)


def chroma_false_match_probability(
    evidence: ChromaEvidence,
    aligned: Sequence[ChromaEvidence],
    settings: Settings,
    n_works: int,
) -> float:
    """Probability that chance alone gives some work of the catalog an alignment this similar.

    The similarity is a maximum over scales, rotations and offsets, and how high chance reaches
    depends on the query: its length, how stationary its chroma is (neighbouring frames are far
    from independent), how generic its harmony is. So chance is measured on the query itself:
    the best similarity in each ``chance_block_s`` of the candidates' references
    (:func:`chroma_null_sample`) is a maximum over the same search. A maximum of mean cosines is
    bounded by 1, so block maxima follow a reversed Weibull law with its end point at 1:
    ``P(block > x) = 1 - exp(-((1 - x) / sigma) ** alpha)``, fitted by the moments of
    ``log(1 - block)`` (a Gumbel law), its spread widened by ``1 + chance_fit_margin /
    sqrt(blocks)`` (a moment fit to a few dozen blocks misjudges the far tail, mostly too
    light). The catalog holds ``n_works`` x (blocks per work) x
    (tempo windows, :func:`tempo_windows`) such blocks, all counted as independent; the
    candidates are the works most like the query, so their blocks overstate chance elsewhere.

    With fewer than ``chance_min_blocks`` blocks (a tiny catalog, a query as long as the works)
    the prior applies: a Gaussian tail per work with ``chance_chroma_mean`` and
    ``chance_chroma_std``, the std widened for alignments shorter than ``chance_block_s`` (a mean
    over fewer frames varies more)."""
    null = chroma_null_sample(aligned, evidence.work_id)
    n_works = max(n_works, 1)
    if len(null) < settings.chance_min_blocks:
        aligned_s = max(evidence.query_end_s - evidence.query_start_s, 1e-3)
        widen = max(1.0, float(np.sqrt(settings.chance_block_s / aligned_s)))
        z = (evidence.similarity - settings.chance_chroma_mean) / (
            settings.chance_chroma_std * widen
        )
        from scipy import special  # stats.norm.sf(z) is special.ndtr(-z); stats costs 0.7 CPU-s

        return min(1.0, float(special.ndtr(-z)) * n_works)
    gap = np.log(np.maximum(1.0 - null, 1e-6))
    # a tail extrapolated from a few dozen blocks: widen it for the error of the fit
    spread = float(np.std(gap, ddof=1)) * (1.0 + settings.chance_fit_margin / np.sqrt(len(null)))
    alpha = np.pi / (np.sqrt(6.0) * max(spread, 1e-6))
    log_sigma = float(np.mean(gap)) + np.euler_gamma / alpha
    block_frames = settings.chance_block_s * settings.chroma_fps
    blocks_per_work = np.mean([max(np.ceil(ev.ref_frames / block_frames), 1.0) for ev in aligned])
    tests = n_works * blocks_per_work * tempo_windows(settings)
    per_block = np.exp(alpha * (np.log(max(1.0 - evidence.similarity, 1e-9)) - log_sigma))
    # P(the largest of `tests` blocks reaches the similarity) = 1 - P(no block does)
    return float(-np.expm1(-tests * per_block))


def tempo_windows(settings: Settings) -> float:
    """How many spans of the fine chroma alignment grid (``chroma_scale_step`` squared) tile the
    searched tempo range: the independent tempo hypotheses a chroma search tries per block."""
    span = np.log(settings.tempo_ratio_max / settings.tempo_ratio_min)
    return max(1.0, float(span / np.log(settings.chroma_scale_step**2)))


def score_from_probability(probability: float) -> float:
    if probability <= 0:
        return MAX_SCORE
    return float(min(MAX_SCORE, -np.log10(probability)))


def decide(matches: list[Match], settings: Settings) -> VerdictLabel:
    """Verdict from the reported matches.

    Only a verified same recording can be a duplicate; a same composition is at most suspect.
    A duplicate also needs a channel that confirmed it on its own (:func:`clears_floor`), a
    floor under the probability model.
    """
    label: VerdictLabel = "clean"
    for m in matches:
        fmp = m.false_match_probability
        if (
            m.relation == "same_recording"
            and fmp <= settings.duplicate_max_fmp
            and m.coverage_s >= settings.min_coverage_s
            and clears_floor(m, settings)
        ):
            return "duplicate"
        if fmp <= settings.suspect_max_fmp:
            label = "suspect"
    return label


def clears_floor(match: Match, settings: Settings) -> bool:
    """Whether a channel confirmed ``match`` on its own: at least ``duplicate_min_hashes``
    aligned hashes, at least ``duplicate_min_peaks`` coinciding peaks, or a chroma alignment that
    found the hashes' transform (``chroma_confirmed``). ``chroma_similarity`` is shown, not
    evidence: a guided peak check fills it in whenever a chroma alignment led it, significant or
    not."""
    return (
        match.matched_hashes >= settings.duplicate_min_hashes
        or (match.matched_peaks or 0) >= settings.duplicate_min_peaks
        or match.chroma_confirmed
    )


# -- combining channels --------------------------------------------------------------------------
def channels_agree(
    hashed: HashEvidence, chroma: ChromaEvidence, check: PeakCheck | None, settings: Settings
) -> bool:
    """Whether hashes and chroma found the same transform for one work (:func:`transforms_agree`)
    and the guided peak check confirms the recording (:func:`confirms_recording`): then
    :func:`combine_hash_and_chroma` applies. A re-arrangement of the same music makes hashes and
    chroma agree too; its peaks say it is not this recording."""
    return (
        transforms_agree(hashed, chroma, settings)
        and check is not None
        and confirms_recording(check, settings)
    )


def combine_hash_and_chroma(hash_fmp: float, chroma_fmp: float, n_works: int) -> float:
    """Two independent channels found the same transform of one work: the per-work
    probabilities multiply and the search over ``n_works`` works is paid once (each false-match
    probability already holds it)."""
    return min(1.0, hash_fmp * chroma_fmp / n_works)


def peak_false_match_probability(check_probability: float, n_works: int) -> float:
    """A guided peak check alone: its per-work tail probability times the works searched."""
    return min(1.0, check_probability * n_works)


def combine_peaks_and_chroma(
    check_probability: float,
    n_works: int,
    chroma_fmp: float | None,
    settings: Settings,
    *,
    confirmed: bool,
) -> float:
    """A guided peak check's false-match probability. When a significant chroma alignment
    (``chroma_fmp <= suspect_max_fmp``) led it and the peaks ``confirmed`` the recording (they
    cleared the floors of :func:`audiodup.peakcheck.confirms_recording`), the peaks coincide where
    that alignment put them: the two per-work probabilities multiply (the chroma one already pays
    the search), when that is lower than the check alone. Peaks that did not confirm the recording
    add nothing: the chroma alignment alone must not pass for a same recording through them."""
    fmp = peak_false_match_probability(check_probability, n_works)
    if confirmed and chroma_fmp is not None and chroma_fmp <= settings.suspect_max_fmp:
        fmp = min(fmp, check_probability * chroma_fmp)
    return fmp


def transforms_agree(
    hashed: HashEvidence, chroma: ChromaEvidence, settings: Settings, max_offset_s: float = 2.0
) -> bool:
    """Whether the peak hashes and the chroma alignment found the same tempo, pitch (chroma knows
    it only modulo an octave) and time offset for one work."""
    if abs(np.log(hashed.tempo_ratio / chroma.tempo_ratio)) > 0.03:
        return False
    pitch_gap = (hashed.pitch_shift_semitones - chroma.pitch_shift_semitones + 6.0) % 12.0 - 6.0
    if abs(pitch_gap) > 0.5:
        return False
    main = hashed.lines[0]
    fps = settings.frames_per_second
    predicted_ref_s = (
        main.ref_start_frame / fps
        + (chroma.query_start_s - main.query_start_frame / fps) * hashed.tempo_ratio
    )
    return abs(predicted_ref_s - chroma.ref_start_s) <= max_offset_s
