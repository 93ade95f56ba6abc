"""The per-query background fits of :mod:`audiodup.verdict`, run on real screening evidence.

Chance hash lines are modelled with a prior mean excess (``chance_excess_base`` +
``chance_excess_per_vote * votes``); per query, the verified works outside the three strongest
lines are a background sample that can only raise that mean (``chance_excess_scale``, which
needs 8 or more of them). The bundled fixtures (6 works) and unrelated synthetic music never get
there: unrelated works give too few candidates with verified lines.

Here every catalog work carries the same 4 s sample (the same recording spliced in at a different
place in each: loop-based music shares samples that way), so an upload that holds the sample
verifies a line in every work and the fit runs. The sample is what the fit is for: it makes an
upload that shares nothing else with the catalog look like a duplicate of whichever work's line
happens to be best, unless the background says that such lines are common for this upload.

Chroma chance is measured per query from block maxima of the same search (issue #12), not by a
background fit; ``tests/test_chroma_calibration.py`` and ``tests/test_verdict.py`` test it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pedalboard
import pytest
import soundfile as sf
from hypothesis import given
from hypothesis import strategies as st
from scipy.signal import resample_poly

from audiodup import Catalog
from audiodup.audio import load_audio
from audiodup.fingerprint import Fingerprint, fingerprint_audio
from audiodup.match import AlignedLine, HashEvidence
from audiodup.screening import (
    Evidence,
    HashFinding,
    gather_evidence,
    hash_candidates,
    matches_from_evidence,
    score_hashes,
)
from audiodup.settings import DEFAULT_SETTINGS as S
from audiodup.synth import synthesize_work
from audiodup.verdict import (
    MIN_LINE_HASHES,
    chance_excess_scale,
    decide,
    hash_false_match_probability,
)

SR = 22050
N_WORKS = 24
WORK_S = 30.0
SAMPLE_S = 4.0  # longer than min_coverage_s: a line through the sample alone could be decisive
SAMPLE = synthesize_work(1000, SAMPLE_S, SR)  # a seed no catalog work uses
MIN_BACKGROUND = 8  # chance_excess_scale and chroma_false_match_probability use no fewer


def sample_start_s(seed: int) -> float:
    """Where work ``seed`` holds the shared sample: spread over the work, different per work."""
    return 0.5 + (seed * 7.3) % (WORK_S - SAMPLE_S - 1.0)


def work_audio(seed: int, *, with_sample: bool = True) -> np.ndarray:
    """A distinct synthetic piece with the shared sample spliced in (replacing its music)."""
    y = synthesize_work(seed, WORK_S, SR).astype(np.float64)
    if with_sample:
        start = round(sample_start_s(seed) * SR)
        y[start : start + len(SAMPLE)] = SAMPLE
    return (0.9 * y / np.max(np.abs(y))).astype(np.float32)


def change_speed(y: np.ndarray, speed: float) -> np.ndarray:
    ratio = Fraction(speed).limit_denominator(100)
    return resample_poly(y, ratio.denominator, ratio.numerator)


def time_stretch(y: np.ndarray, tempo_ratio: float, semitones: float) -> np.ndarray:
    return pedalboard.time_stretch(
        y[None, :], SR, stretch_factor=tempo_ratio, pitch_shift_in_semitones=semitones
    )[0]


def fingerprint_upload(y: np.ndarray, path: Path) -> Fingerprint:
    y = np.asarray(y, dtype=np.float32)
    sf.write(path, 0.9 * y / np.max(np.abs(y)), SR)
    return fingerprint_audio(load_audio(path, S), S, query=True)


@pytest.fixture(scope="module")
def shared_sample_catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:
    """A catalog of ``N_WORKS`` distinct works that all hold the shared sample."""
    works = tmp_path_factory.mktemp("shared-sample") / "works"
    works.mkdir()
    for seed in range(N_WORKS):
        sf.write(works / f"w{seed:02d}.wav", work_audio(seed), SR)
    with Catalog.open(works.parent / "catalog") as catalog:
        results = catalog.add_paths([works])
        assert [r.status for r in results] == ["added"] * N_WORKS
        yield catalog


def work_id(catalog: Catalog, seed: int) -> int:
    return next(w.work_id for w in catalog.works() if Path(w.path).stem == f"w{seed:02d}")


def background(evidence: Evidence) -> list[HashEvidence]:
    """The works that form the hash background: all but the three strongest lines."""
    ranked = sorted(evidence.hashes.values(), key=lambda f: -f.evidence.main_inliers)
    return [f.evidence for f in ranked[3:]]


def fitted_scale(evidence: Evidence) -> float:
    hashed = [f.evidence for f in evidence.hashes.values()]
    top = {e.work_id for e in sorted(hashed, key=lambda e: -e.main_inliers)[:3]}
    return chance_excess_scale(hashed, top, S)


def hits_of(query: Fingerprint, catalog: Catalog) -> np.ndarray:
    """The retrieved hits of each work that got some: they say the works in competition."""
    return hash_candidates(query, catalog.indexes(), S)[1]


def without_the_fit(evidence: Evidence, hits: np.ndarray) -> Evidence:
    """The evidence scored with the prior alone (scale 1), as screening gathers it then: a hash
    line that is decisive under the prior ends the search before chroma and peaks."""
    hashes = {
        w: HashFinding(
            f.evidence, hash_false_match_probability(f.evidence, 1.0, evidence.n_works, S, hits)
        )
        for w, f in evidence.hashes.items()
    }
    if any(f.false_match_probability <= S.duplicate_max_fmp for f in hashes.values()):
        return Evidence(evidence.n_works, hashes)
    return replace(evidence, hashes=hashes)


def assert_the_hash_fit_ran(evidence: Evidence, hits: np.ndarray) -> float:
    """The background is large enough, it holds verified lines above chance, and every hash
    probability screening reported is the one of the fitted scale, at least the prior's."""
    sample = background(evidence)
    assert len(sample) >= MIN_BACKGROUND
    assert sum(e.main_inliers > MIN_LINE_HASHES for e in sample) >= MIN_BACKGROUND
    scale = fitted_scale(evidence)
    assert scale > 2.0
    for finding in evidence.hashes.values():
        e = finding.evidence
        assert finding.false_match_probability == hash_false_match_probability(
            e, scale, evidence.n_works, S, hits
        )
        assert finding.false_match_probability >= hash_false_match_probability(
            e, 1.0, evidence.n_works, S, hits
        )
    return scale


# (seed of the work copied, make(y), tempo_ratio, pitch_shift_semitones)
COPIES = {
    "speed_1.1": (3, lambda y: change_speed(y, 1.1), 1.1, 12 * np.log2(1.1)),
    "stretch_1.15_pitch_-2": (10, lambda y: time_stretch(y, 1.15, -2.0), 1.15, -2.0),
}


@pytest.mark.parametrize("name", list(COPIES))
def test_an_altered_copy_is_found_with_the_fit_running(
    shared_sample_catalog: Catalog, tmp_path: Path, name: str
) -> None:
    catalog = shared_sample_catalog
    seed, make, tempo_ratio, semitones = COPIES[name]
    query = fingerprint_upload(make(work_audio(seed)), tmp_path / f"{name}.wav")
    evidence = gather_evidence(query, catalog.indexes(), S, catalog.store)
    hits = hits_of(query, catalog)
    assert_the_hash_fit_ran(evidence, hits)
    copied = work_id(catalog, seed)
    # the fit scales every line's chance mean, the copy's own too: here it is no no-op
    line = evidence.hashes[copied]
    assert line.false_match_probability > hash_false_match_probability(
        line.evidence, 1.0, evidence.n_works, S, hits
    )
    matches = matches_from_evidence(evidence, query, S, catalog.store)
    assert decide(matches, S) == "duplicate"
    top = matches[0]
    assert top.work_id == copied and top.relation == "same_recording"
    assert top.tempo_ratio == pytest.approx(tempo_ratio, rel=0.02)
    assert top.pitch_shift_semitones == pytest.approx(semitones, abs=0.3)
    assert top.coverage_s >= 0.8 * WORK_S / tempo_ratio


@pytest.mark.parametrize("seed", [500, 501])
def test_an_upload_sharing_only_the_sample_is_no_duplicate_because_of_the_fit(
    shared_sample_catalog: Catalog, tmp_path: Path, seed: int
) -> None:
    catalog = shared_sample_catalog
    query = fingerprint_upload(work_audio(seed), tmp_path / f"unrelated_{seed}.wav")
    evidence = gather_evidence(query, catalog.indexes(), S, catalog.store)
    hits = hits_of(query, catalog)
    assert_the_hash_fit_ran(evidence, hits)
    matches = matches_from_evidence(evidence, query, S, catalog.store)
    assert decide(matches, S) != "duplicate"
    # the direction the fit intends: under the prior alone, the best line through the sample
    # would make this upload a duplicate of one of the works that hold it
    prior_only = without_the_fit(evidence, hits)
    best = min(f.false_match_probability for f in prior_only.hashes.values())
    assert best <= S.duplicate_max_fmp
    assert decide(matches_from_evidence(prior_only, query, S, catalog.store), S) == "duplicate"
    assert min(f.false_match_probability for f in evidence.hashes.values()) > S.suspect_max_fmp


SAMPLED = replace(S, whole_lookup_max_entries=0, max_query_hits=3_000)


def test_an_upload_sharing_only_the_sample_is_no_duplicate_after_a_sampled_look_up(
    shared_sample_catalog: Catalog, tmp_path: Path
) -> None:
    """The same upload as above, its look-up sampled as in a catalog of more than
    ``whole_lookup_max_entries`` (here by a budget of 3,000 hits): the hash lines stay below
    `suspect` as above, and the checks the four-peak votes lead land on the 4-s sample in every
    work they check. Each such check is as far above chance as a copy's (one, 26 of 78 peaks,
    made this upload a duplicate before session 44), but the other works' checks hold the same
    upload peaks: material many works share confirms none of them
    (:func:`audiodup.peakcheck.shared_material`)."""
    catalog = shared_sample_catalog
    query = fingerprint_upload(work_audio(500), tmp_path / "unrelated_500.wav")
    evidence = gather_evidence(query, catalog.indexes(), SAMPLED, catalog.store)
    assert min(f.false_match_probability for f in evidence.hashes.values()) > S.suspect_max_fmp
    on_the_sample = [
        f.check
        for f in evidence.peaks.values()
        if f.check.matched_peaks >= S.peak_check_min_ratio * f.check.chance_peaks
    ]
    assert len(on_the_sample) > S.peak_check_shared_works
    # those that clear the rate floor too would each be a recording's evidence on their own
    alone = [c for c in on_the_sample if c.matched_peaks >= S.peak_check_min_rate * c.checked_peaks]
    assert alone and all(c.shared_with >= S.peak_check_shared_works for c in alone)
    assert all(f.probability == 1.0 for f in evidence.peaks.values())
    matches = matches_from_evidence(evidence, query, SAMPLED, catalog.store)
    assert decide(matches, SAMPLED) == "clean"


@pytest.mark.parametrize("name", list(COPIES))
def test_an_altered_copy_is_found_after_a_sampled_look_up(
    shared_sample_catalog: Catalog, tmp_path: Path, name: str
) -> None:
    """A copy of one of the works that hold the sample: the other works share its sample's
    seconds only, the copied work lines up over the whole upload."""
    catalog = shared_sample_catalog
    seed, make, tempo_ratio, semitones = COPIES[name]
    query = fingerprint_upload(make(work_audio(seed)), tmp_path / f"{name}.wav")
    evidence = gather_evidence(query, catalog.indexes(), SAMPLED, catalog.store)
    matches = matches_from_evidence(evidence, query, SAMPLED, catalog.store)
    assert decide(matches, SAMPLED) == "duplicate"
    top = matches[0]
    assert top.work_id == work_id(catalog, seed)
    assert top.tempo_ratio == pytest.approx(tempo_ratio, rel=0.02)
    assert top.pitch_shift_semitones == pytest.approx(semitones, abs=0.3)


def test_an_unrelated_upload_without_the_sample_has_no_background(
    shared_sample_catalog: Catalog, tmp_path: Path
) -> None:
    catalog = shared_sample_catalog
    query = fingerprint_upload(work_audio(500, with_sample=False), tmp_path / "unrelated.wav")
    evidence = gather_evidence(query, catalog.indexes(), S, catalog.store)
    assert len(background(evidence)) < MIN_BACKGROUND and fitted_scale(evidence) == 1.0
    assert decide(matches_from_evidence(evidence, query, S, catalog.store), S) == "clean"


# -- the fits on constructed evidence ------------------------------------------------------------
def line(work_id: int, main_inliers: int, votes: int) -> HashEvidence:
    empty = np.zeros(0)
    aligned = AlignedLine(0.0, 100.0, 0.0, 100.0, main_inliers)
    return HashEvidence(
        work_id, votes, main_inliers, main_inliers, 1.0, 0.0, (aligned,), 10.0, empty, empty
    )


def test_score_hashes_fits_the_works_outside_the_three_strongest() -> None:
    strong = [line(w, 100 + w, 2000) for w in range(3)]
    weak = [line(10 + w, MIN_LINE_HASHES + 4, 500) for w in range(MIN_BACKGROUND)]
    scored = score_hashes(strong + weak, N_WORKS, S)
    scale = 4 / (S.chance_excess_base + S.chance_excess_per_vote * 500)
    for e in strong + weak:
        assert scored[e.work_id].false_match_probability == pytest.approx(
            hash_false_match_probability(e, scale, N_WORKS, S)
        )
    # one background work fewer: the prior alone
    scored = score_hashes(strong + weak[1:], N_WORKS, S)
    for e in strong + weak[1:]:
        assert scored[e.work_id].false_match_probability == hash_false_match_probability(
            e, 1.0, N_WORKS, S
        )
    # the strongest lines are never their own background, whatever order they come in
    reordered = score_hashes(weak + strong[::-1], N_WORKS, S)
    assert reordered[0].false_match_probability == pytest.approx(
        hash_false_match_probability(strong[0], scale, N_WORKS, S)
    )


evidence_lists = st.lists(
    st.tuples(st.integers(MIN_LINE_HASHES, 60), st.integers(3, 20_000)), min_size=0, max_size=20
)


@given(evidence_lists)
def test_the_hash_fit_never_lowers_a_probability(lines: list[tuple[int, int]]) -> None:
    evidence = [line(w, inliers, votes) for w, (inliers, votes) in enumerate(lines)]
    scored = score_hashes(evidence, N_WORKS, S)
    for e in evidence:
        assert scored[e.work_id].false_match_probability >= hash_false_match_probability(
            e, 1.0, N_WORKS, S
        )
