"""Tests for the pure rescan relations (audiodup.rescan.relations, .clusters, .report): typed and
directed links, clusters of one original and its copies, the uploader ranking, and the chance
cases that must never accuse anybody (issue #13)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audiodup.report_html import rescan_html
from audiodup.rescan import WorkScan, build_report, decide_direction, work_originality
from audiodup.rescan.clusters import covered_share
from audiodup.results import Match, Section, UploadInfo, WorkInfo
from audiodup.settings import DEFAULT_SETTINGS


def work(work_id: int, duration_s: float = 40.0) -> WorkInfo:
    return WorkInfo(work_id, f"/w/{work_id}.ogg", None, None, duration_s, f"sha{work_id}", "2024")


def upload(
    upload_id: int,
    work_id: int,
    uploader: str | None,
    uploaded_at: str | None = None,
    role: str = "upload",
    **ids,
) -> UploadInfo:
    return UploadInfo(
        upload_id=upload_id,
        work_id=work_id,
        role=role,
        source_path=f"/up/{upload_id}.ogg",
        sha256=f"sha{work_id}",
        recorded_at="2024-06-01T00:00:00+00:00",
        uploader=uploader,
        uploaded_at=uploaded_at,
        **ids,
    )


def match(
    work_id: int,
    query_span: tuple[float, float],
    ref_span: tuple[float, float],
    query_duration_s: float = 40.0,
    score: float = 60.0,
    tempo: float = 1.0,
) -> Match:
    """A same-recording match of ``work_id``: query seconds ``query_span`` line up with its
    seconds ``ref_span``."""
    section = Section(*query_span, *ref_span, 80)
    covered = query_span[1] - query_span[0]
    return Match(
        work_id=work_id,
        path=f"/w/{work_id}.ogg",
        title=None,
        relation="same_recording",
        score=score,
        false_match_probability=10.0**-score,
        tempo_ratio=tempo,
        pitch_shift_semitones=0.0,
        query_start_s=query_span[0],
        query_end_s=query_span[1],
        ref_start_s=ref_span[0],
        ref_end_s=ref_span[1],
        coverage=covered / query_duration_s,
        coverage_s=covered,
        matched_hashes=80,
        chroma_similarity=None,
        sections=(section,),
    )


def scans(*found: tuple[int, list[Match]]) -> dict[int, WorkScan]:
    return {w: WorkScan(w, "file", tuple(ms)) for w, ms in found}


def both_ways(a: int, b: int, a_span, b_span, a_s: float = 40.0, b_s: float = 40.0):
    """Matches of ``a`` against ``b`` and back: ``a_span`` of a is ``b_span`` of b."""
    return match(b, a_span, b_span, a_s), match(a, b_span, a_span, b_s)


def report_of(works, found, uploads):
    return build_report(works, found, DEFAULT_SETTINGS, uploads=uploads)


def kinds(report) -> set[tuple[int, str, int]]:
    return {(k.work_id, k.kind, k.source_work_id) for k in report.links}


# -- originality -------------------------------------------------------------------------------
def test_a_reference_is_the_source_even_when_an_upload_is_dated_earlier() -> None:
    ref = work_originality(1, [upload(1, 1, "label", "2022-01-01", role="reference")])
    early = work_originality(2, [upload(2, 2, "ring", "2019-01-01")])
    direction = decide_direction(ref, early, "work 1", "work 2")
    assert direction.source == 1 and direction.reason == "work 1 has a reference upload"


@pytest.mark.parametrize(
    ("a_date", "b_date", "source", "caveat"),
    [
        ("2020-01-01", "2021-01-01", 1, None),
        ("2021-01-01", "2020-01-01T00:00:00Z", 2, None),
        ("2021-01-01", None, 1, "work 2 has no upload date"),
        (None, "2021-01-01", 2, "work 1 has no upload date"),
        ("not a date", "2021-01-01", 2, "work 1 has no upload date"),
        (None, None, None, None),
        ("2020-01-01", "2020-01-01T00:00:00+00:00", None, None),
        # a day is not its first instant: the same day's instants are not after it (a review: a
        # copy dated 2024-03-01 was the original of one uploaded at 08:00 UTC that day)
        ("2024-03-01", "2024-03-01T09:00:00+01:00", None, None),
        ("2024-03-01T23:30:00Z", "2024-03-01", None, None),
        ("2024-02-29", "2024-03-01T08:00:00Z", 1, None),
        ("2024-03-01T08:00:00Z", "2024-03-02", 1, None),
    ],
)
def test_the_earlier_dated_upload_is_the_source_and_undated_never_wins(
    a_date, b_date, source, caveat
) -> None:
    a = work_originality(1, [upload(1, 1, "x", a_date)])
    b = work_originality(2, [upload(2, 2, "y", b_date)])
    direction = decide_direction(a, b, "work 1", "work 2")
    assert direction.source == source
    if source is None:
        assert direction.reason.startswith("undetermined")
    assert (caveat is None) == (not direction.caveats)
    if caveat:
        assert direction.caveats[0].startswith(caveat)


def test_two_references_the_earlier_registration_counts_with_a_caveat() -> None:
    a = work_originality(1, [upload(1, 1, "label-a", "2021-01-01", role="reference")])
    b = work_originality(2, [upload(2, 2, "label-b", "2020-01-01", role="reference")])
    direction = decide_direction(a, b, "work 1", "work 2")
    assert direction.source == 2
    assert "both are references" in direction.caveats[0]
    undated = work_originality(3, [upload(3, 3, "label-c", role="reference")])
    other = work_originality(4, [upload(4, 4, "label-d", role="reference")])
    assert decide_direction(undated, other, "work 3", "work 4").source is None


# -- shares ------------------------------------------------------------------------------------
def test_covered_share_from_reference_spans_counts_overlaps_once() -> None:
    m = match(2, (0.0, 10.0), (5.0, 15.0))
    m = m.__class__(
        **{**m.__dict__, "sections": (Section(0, 10, 5, 15, 9), Section(20, 30, 10, 20, 9))}
    )
    assert covered_share(work(2, 40.0), m, found_as_query=False) == pytest.approx(15 / 40)
    assert covered_share(work(1, 40.0), m, found_as_query=True) == pytest.approx(10 / 40)


# -- links and clusters ------------------------------------------------------------------------
def medley_catalog(references: bool, dated: bool):
    """Works 1 and 2 (two labels), 3 and 4 altered copies of them, 5 a medley of 20 s of 1 then
    20 s of 2. Every pair found both ways."""
    works = [work(w) for w in range(1, 6)]
    c31, c13 = both_ways(3, 1, (0, 40), (0, 40))
    c42, c24 = both_ways(4, 2, (0, 40), (0, 40))
    m51, m15 = both_ways(5, 1, (0, 20), (0, 20))
    m52, m25 = both_ways(5, 2, (20, 40), (20, 40))
    found = scans((1, [c13, m15]), (2, [c24, m25]), (3, [c31]), (4, [c42]), (5, [m51, m52]))
    role = "reference" if references else "upload"

    def date(text):
        return text if dated else None

    uploads = [
        upload(1, 1, "label-a", date("2020-01-01"), role=role, isrc="AAA000000001"),
        upload(2, 2, "label-b", date("2020-02-01"), role=role),
        upload(3, 3, "ring", date("2023-01-01")),
        upload(4, 4, "solo", date("2023-02-01")),
        upload(5, 5, "dj", date("2024-01-01")),
    ]
    return works, found, uploads


@pytest.mark.parametrize(("references", "dated"), [(True, True), (True, False), (False, True)])
def test_a_medley_is_an_excerpt_of_each_source_and_never_merges_clusters(references, dated):
    report = report_of(*medley_catalog(references, dated))
    assert [c.work_ids for c in report.clusters] == [(1, 3), (2, 4)]
    assert kinds(report) == {
        (3, "copy_of", 1),
        (4, "copy_of", 2),
        (5, "contains_excerpt_of", 1),
        (5, "contains_excerpt_of", 2),
    }
    for cluster, owner in zip(report.clusters, ("label-a", "label-b"), strict=True):
        original = next(m for m in cluster.members if m.relation == "original")
        assert original.uploader == owner and original.work_id == cluster.work_ids[0]
    ranks = {u.uploader: u for u in report.uploaders}
    assert (ranks["dj"].copies, ranks["dj"].excerpts_used) == (0, 1)
    assert ranks["label-a"].copies == ranks["label-b"].copies == 0
    assert [u.uploader for u in report.uploaders[:2]] == ["ring", "solo"]
    medley = next(m for m in report.linked_uploads if m.work_id == 5)
    assert medley.relation == "unclustered"


def test_an_undated_catalog_accuses_nobody() -> None:
    report = report_of(*medley_catalog(references=False, dated=False))
    assert [c.work_ids for c in report.clusters] == [(1, 3), (2, 4)]
    assert all(not c.determined for c in report.clusters)
    assert {k.kind for k in report.links} == {"same_recording", "overlap"}
    assert all(u.copies == 0 and u.excerpts_used == 0 for u in report.uploaders)
    assert {u.uploader: u.undetermined for u in report.uploaders} == {
        "label-a": 1,
        "label-b": 1,
        "ring": 1,
        "solo": 1,
    }
    for link in report.links:
        assert link.direction.startswith("undetermined")
        if link.kind == "overlap":
            assert "neither is called a copy" in link.caveats[-1]


def test_a_medley_of_whole_tracks_is_not_a_copy_of_either() -> None:
    """Work 3 is all of 1 (30 s) then all of 2 (30 s): each source is entirely in it."""
    works = [work(1, 30.0), work(2, 30.0), work(3, 60.0)]
    a31, a13 = both_ways(3, 1, (0, 30), (0, 30), 60.0, 30.0)
    b32, b23 = both_ways(3, 2, (30, 60), (0, 30), 60.0, 30.0)
    found = scans((1, [a13]), (2, [b23]), (3, [a31, b32]))
    uploads = [
        upload(1, 1, "label-a", "2020-01-01", role="reference"),
        upload(2, 2, "label-b", "2020-01-01", role="reference"),
        upload(3, 3, "dj", "2024-01-01"),
    ]
    report = report_of(works, found, uploads)
    assert report.clusters == ()
    assert kinds(report) == {(3, "contains_excerpt_of", 1), (3, "contains_excerpt_of", 2)}
    # without any date or reference: linked, direction unknown, nothing merged
    bare = [upload(u.upload_id, u.work_id, u.uploader) for u in uploads]
    report = report_of(works, found, bare)
    assert report.clusters == ()
    assert {k.kind for k in report.links} == {"overlap"}
    assert all("mostly contained in work 3" in k.caveats[-1] for k in report.links)


def test_a_trimmed_copy_joins_the_cluster_of_its_source() -> None:
    """Work 2 is 25 s cut out of work 1 (40 s; 62 % of it: one recording); work 3 is a 20-s
    cut (50 % of work 1: mostly contained in it, and work 1 is the original side)."""
    works = [work(1), work(2, 25.0), work(3, 20.0)]
    t21, t12 = both_ways(2, 1, (0, 25), (10, 35), 25.0, 40.0)
    s31, s13 = both_ways(3, 1, (0, 20), (0, 20), 20.0, 40.0)
    s32, s23 = both_ways(3, 2, (10, 20), (0, 10), 20.0, 25.0)
    found = scans((1, [t12, s13]), (2, [t21, s23]), (3, [s31, s32]))
    uploads = [
        upload(1, 1, "label", "2020-01-01", role="reference"),
        upload(2, 2, "ring", "2023-01-01"),
        upload(3, 3, "ring", None),
    ]
    report = report_of(works, found, uploads)
    (cluster,) = report.clusters
    assert cluster.work_ids == (1, 2, 3) and cluster.original_work_id == 1
    assert (2, "copy_of", 1) in kinds(report) and (3, "copy_of", 1) in kinds(report)
    ring = next(u for u in report.uploaders if u.uploader == "ring")
    assert ring.copies == 2


def test_two_copies_in_one_cluster_are_not_each_others_source_nor_counted_twice() -> None:
    """A reference (work 1), an older 15-s excerpt of it (2), a 30-s trim (3) and a whole copy
    (4): the whole copy holds the excerpt's 15 s too, but both are copies of the reference,
    so the excerpt's uploader is named as nobody's source and the copy is counted once."""
    works = [work(1), work(2, 15.0), work(3, 30.0), work(4)]
    spans = {1: (0, 40), 2: (10, 25), 3: (5, 35), 4: (0, 40)}  # each work's seconds of work 1
    durations = {1: 40.0, 2: 15.0, 3: 30.0, 4: 40.0}
    found = {}
    for q in spans:
        matches = []
        for r in spans:
            start, end = max(spans[q][0], spans[r][0]), min(spans[q][1], spans[r][1])
            if r != q and end > start:
                in_q = (start - spans[q][0], end - spans[q][0])
                in_r = (start - spans[r][0], end - spans[r][0])
                matches.append(match(r, in_q, in_r, durations[q]))
        found[q] = matches
    uploads = [
        upload(1, 1, "carol", "2020-01-01", role="reference"),
        upload(2, 2, "alice", "2019-01-01"),
        upload(3, 3, "dan", "2021-01-01"),
        upload(4, 4, "eve", "2023-01-01"),
    ]
    report = report_of(works, scans(*found.items()), uploads)
    (cluster,) = report.clusters
    assert cluster.original_upload_id == 1 and set(cluster.work_ids) == {1, 2, 3, 4}
    undirected = ("same_recording", "overlap")
    assert not {k for k in kinds(report) if 1 not in (k[0], k[2]) and k[1] not in undirected}
    ranks = {u.uploader: u for u in report.uploaders}
    assert (ranks["eve"].copies, ranks["eve"].excerpts_used) == (1, 0)
    assert all(u.excerpts_used == 0 for u in report.uploaders)


def test_a_suspect_pairs_uploads_are_in_the_report_and_its_evidence_names_the_owner() -> None:
    import csv
    import io

    from audiodup.report import rescan_csv

    works = [work(1), work(2, 6.0)]
    found = scans((1, []), (2, [match(1, (0, 6), (10, 16), 6.0, score=4.0)]))
    uploads = [upload(1, 1, "carol", "2020-01-01", role="reference"), upload(2, 2, "bob")]
    report = report_of(works, found, uploads)
    (pair,) = report.suspect_pairs
    assert not report.pairs and {m.upload_id for m in report.linked_uploads} == {1, 2}
    assert (pair.evidence.uploader, pair.evidence.role) == ("carol", "reference")
    (row,) = csv.DictReader(io.StringIO(rescan_csv(report)))
    assert (row["query_uploader"], row["reference_uploader"]) == ("bob", "carol")
    assert (row["relation"], row["match_relation"]) == ("", "same_recording")


def test_a_copy_padded_with_an_earlier_track_does_not_make_that_track_its_excerpt() -> None:
    """Work 3 (a 2023 upload, 60 s) is 10 s of work 2 (another label's 2021 upload) and then
    all of work 1 (a reference): a copy of work 1. The 10 s it shares with work 2 are work 2's
    music, not work 1's (work 1 does not match work 2): work 2 must not be said to contain an
    excerpt of work 3 because work 3's cluster holds a reference. Work 3 itself holds those
    10 s, later than work 2: it is the one that contains an excerpt."""
    works = [work(1), work(2), work(3, 60.0)]
    c31, c13 = both_ways(3, 1, (10, 50), (0, 40), 60.0, 40.0)
    p32, p23 = both_ways(3, 2, (0, 10), (20, 30), 60.0, 40.0)
    found = scans((1, [c13]), (2, [p23]), (3, [c31, p32]))
    uploads = [
        upload(1, 1, "label-a", "2020-01-01", role="reference"),
        upload(2, 2, "label-b", "2021-01-01"),
        upload(3, 3, "pirate", "2023-01-01"),
    ]
    report = report_of(works, found, uploads)
    assert [c.work_ids for c in report.clusters] == [(1, 3)]
    assert (3, "copy_of", 1) in kinds(report)
    shared = next(k for k in report.links if {k.work_id, k.source_work_id} == {2, 3})
    assert (shared.work_id, shared.kind, shared.source_work_id) == (3, "contains_excerpt_of", 2)
    assert shared.direction == "work 2 was uploaded first (2021-01-01)"
    ranks = {u.uploader: u for u in report.uploaders}
    assert "label-b" not in ranks or ranks["label-b"].excerpts_used == 0
    assert (ranks["pirate"].copies, ranks["pirate"].excerpts_used) == (1, 1)
    # the pirate's upload first: work 2 took the 10 s from it
    later = [*uploads[:1], upload(2, 2, "label-b", "2024-01-01"), uploads[2]]
    assert (2, "contains_excerpt_of", 3) in kinds(report_of(works, found, later))
    # an undated pirate never counts as the first, whatever its cluster's reference
    undated = [*uploads[:2], upload(3, 3, "pirate", None)]
    assert (3, "contains_excerpt_of", 2) in kinds(report_of(works, found, undated))
    # were work 1 to hold those 10 s too, its reference would be their first upload
    r12, r21 = both_ways(1, 2, (0, 10), (20, 30), 40.0, 40.0)
    held = scans((1, [c13, r12]), (2, [p23, r21]), (3, [c31, p32]))
    kinds_held = kinds(report_of(works, held, uploads))
    assert (2, "contains_excerpt_of", 3) in kinds_held or (
        2,
        "contains_excerpt_of",
        1,
    ) in kinds_held


@pytest.mark.parametrize(
    ("s_role", "t_role"),
    [("upload", "upload"), ("reference", "upload"), ("reference", "reference")],
)
def test_a_medley_mostly_of_one_track_makes_no_copy_of_the_other_it_quotes(s_role, t_role):
    """Work 3 (mallory, 2023, 60 s) is 40 s of work 1 (sam, 2020-03) then 20 s of work 2 (tom,
    2020-04, 24 s): mostly work 1, so one recording with it. Work 2 is mostly inside work 3,
    but work 1 does not hold it: tom's older track is no copy in sam's cluster, the medley
    contains an excerpt of it (session 46's red team: tom was counted a copier)."""
    works = [work(1, 55.0), work(2, 24.0), work(3, 60.0)]
    s31, s13 = both_ways(3, 1, (0, 40), (5, 45), 60.0, 55.0)
    t32, t23 = both_ways(3, 2, (40, 59), (2, 21), 60.0, 24.0)
    found = scans((1, [s13]), (2, [t23]), (3, [s31, t32]))
    uploads = [
        upload(1, 1, "sam", "2020-03-01", role=s_role),
        upload(2, 2, "tom", "2020-04-01", role=t_role),
        upload(3, 3, "mallory", "2023-01-01"),
    ]
    report = report_of(works, found, uploads)
    assert [c.work_ids for c in report.clusters] == [(1, 3)]
    assert kinds(report) == {(3, "copy_of", 1), (3, "contains_excerpt_of", 2)}
    ranks = {u.uploader: u for u in report.uploaders}
    assert "tom" not in ranks or (ranks["tom"].copies, ranks["tom"].excerpts_used) == (0, 0)
    assert (ranks["mallory"].copies, ranks["mallory"].excerpts_used) == (1, 1)
    assert all("tom" not in c for cluster in report.clusters for c in cluster.caveats)
    # the medley first: then tom's track is the later one, a trimmed copy of what it quotes
    early = [*uploads[:2], upload(3, 3, "mallory", "2019-01-01")]
    if t_role == "upload":
        assert (2, "copy_of", 3) in kinds(report_of(works, found, early))


def test_a_cluster_member_whose_pair_covers_the_shared_seconds_dates_its_side() -> None:
    """The label's reference (work 1, 2020) and its own 2023 re-upload (work 3, the same
    recording); a thief's 20-s trim (work 2, 2022) found against the re-upload only (the
    pair 1-2 missed). The reference lines up with all of the re-upload, the thief's 20 s
    included, so it dates that side: the thief's trim is the copy, not the label's re-upload
    an excerpt user (session 46's review)."""
    works = [work(1, 60.0), work(2, 20.0), work(3, 60.0)]
    r13, r31 = both_ways(1, 3, (0, 60), (0, 60), 60.0, 60.0)
    t23, t32 = both_ways(2, 3, (0, 20), (10, 30), 20.0, 60.0)
    found = scans((1, [r13]), (2, [t23]), (3, [r31, t32]))
    uploads = [
        upload(1, 1, "label", "2020-01-01", role="reference"),
        upload(2, 2, "thief", "2022-01-01"),
        upload(3, 3, "label", "2023-01-01"),
    ]
    report = report_of(works, found, uploads)
    assert kinds(report) == {(3, "copy_of", 1), (2, "copy_of", 3)}
    ranks = {u.uploader: u for u in report.uploaders}
    assert (ranks["thief"].copies, ranks["label"].excerpts_used) == (1, 0)


def test_a_member_matching_the_other_side_elsewhere_does_not_hold_what_is_shared() -> None:
    """The medley case with nina's 2024 copy of tom's track padded with 10 s of sam's (work
    4): sam's track matches nina's copy, but over its own 10 s, not over what the medley
    shares with tom's track; tom is still no copier."""
    works = [work(1, 55.0), work(2, 24.0), work(3, 60.0), work(4, 34.0)]
    s31, s13 = both_ways(3, 1, (0, 40), (5, 45), 60.0, 55.0)
    t32, t23 = both_ways(3, 2, (40, 59), (2, 21), 60.0, 24.0)
    n42, n24 = both_ways(4, 2, (10, 34), (0, 24), 34.0, 24.0)
    n41, n14 = both_ways(4, 1, (0, 10), (20, 30), 34.0, 55.0)
    found = scans((1, [s13, n14]), (2, [t23, n24]), (3, [s31, t32]), (4, [n42, n41]))
    uploads = [
        upload(1, 1, "sam", "2020-03-01"),
        upload(2, 2, "tom", "2020-04-01"),
        upload(3, 3, "mallory", "2023-01-01"),
        upload(4, 4, "nina", "2024-01-01"),
    ]
    report = report_of(works, found, uploads)
    assert {(3, "contains_excerpt_of", 2), (4, "copy_of", 2)} <= kinds(report)
    assert (2, "copy_of", 3) not in kinds(report)
    ranks = {u.uploader: u for u in report.uploaders}
    assert "tom" not in ranks or (ranks["tom"].copies, ranks["tom"].excerpts_used) == (0, 0)


def test_a_short_work_inside_two_longer_originals_joins_only_the_stronger() -> None:
    """Work 3 (20 s) lies inside both 1 and 2 (two long mixes of the same label that share it):
    a copy of each, but the two mixes must not become one cluster through it."""
    works = [work(1, 60.0), work(2, 60.0), work(3, 20.0)]
    a31, a13 = both_ways(3, 1, (0, 20), (0, 20), 20.0, 60.0)
    b32, b23 = both_ways(3, 2, (2, 20), (30, 48), 20.0, 60.0)
    ab12, ab21 = both_ways(1, 2, (0, 18), (30, 48), 60.0, 60.0)
    found = scans((1, [a13, ab12]), (2, [b23, ab21]), (3, [a31, b32]))
    uploads = [
        upload(1, 1, "label", "2020-01-01", role="reference"),
        upload(2, 2, "label", "2020-03-01", role="reference"),
        upload(3, 3, "ring", "2023-01-01"),
    ]
    report = report_of(works, found, uploads)
    assert [c.work_ids for c in report.clusters] == [(1, 3)]
    loose = next(k for k in report.links if k.source_work_id == 2 and k.work_id == 3)
    assert loose.kind == "copy_of" and not loose.clustered
    assert "already clustered with work 1" in loose.caveats[-1]


def test_identical_reuploads_are_members_and_count_as_copies_of_another_account() -> None:
    works = [work(1), work(2)]
    found = scans((1, []), (2, []))
    uploads = [
        upload(1, 1, "label", "2020-01-01", role="reference", external_id="L-1"),
        upload(2, 1, "thief", "2023-01-01"),
        upload(3, 1, "label", "2023-02-01"),
        upload(4, 2, "indie", "2022-01-01"),
    ]
    report = report_of(works, found, uploads)
    (cluster,) = report.clusters
    assert cluster.work_ids == (1,) and cluster.original_upload_id == 1
    assert [(m.upload_id, m.relation) for m in cluster.members] == [
        (1, "original"),
        (2, "identical"),
        (3, "identical"),
    ]
    ranks = {u.uploader: u for u in report.uploaders}
    assert (ranks["thief"].copies, ranks["thief"].copy_upload_ids) == (1, (2,))
    assert (ranks["label"].copies, ranks["label"].self_copies) == (0, 1)
    assert ranks["label"].originals_copied == 1
    assert "indie" not in ranks
    assert report.uploads == 4


@pytest.mark.parametrize("order", [(1, 2), (2, 1)])
def test_one_recording_from_two_accounts_at_one_instant_accuses_neither(order) -> None:
    """The same audio uploaded by two accounts at the same instant (in two time zones): which
    was recorded first must not make the other a copier, whatever the order of adding."""
    works = [work(1), work(2)]
    given = {
        1: upload(1, 1, "alice", "2021-05-05T10:00:00Z"),
        2: upload(2, 1, "bob", "2021-05-05T12:00:00+02:00"),
    }
    uploads = [given[i] for i in order] + [upload(3, 2, "carol", "2022-01-01")]
    found = scans((1, [match(2, (0, 40), (0, 40))]), (2, [match(1, (0, 40), (0, 40))]))
    report = report_of(works, found, uploads)
    (cluster,) = report.clusters
    assert cluster.original_upload_id is None and "undetermined" in cluster.original_reason
    assert all(u.copies == 0 for u in report.uploaders)
    # one account uploading its own audio twice at one instant decides nothing either way
    twice = [upload(i, 1, "alice", "2021-05-05T10:00:00Z") for i in (1, 2)]
    (same,) = report_of(works, found, [*twice, upload(3, 2, "carol", "2022-01-01")]).clusters
    assert same.original_upload_id == 1


@pytest.mark.parametrize("year", ["2024-02-29", "0001-01-01"])
def test_microseconds_apart_far_from_1970_still_decide_the_direction(year: str) -> None:
    first = work_originality(1, [upload(1, 1, "x", f"{year}T00:00:00.000001+00:00")])
    later = work_originality(2, [upload(2, 2, "y", f"{year}T00:00:00.000002+00:00")])
    assert decide_direction(first, later, "work 1", "work 2").source == 1


def test_dates_in_the_future_decide_nothing() -> None:
    first = work_originality(1, [upload(1, 1, "x", "9999-12-31T00:00:00.000001+00:00")])
    later = work_originality(2, [upload(2, 2, "y", "9999-12-31T00:00:00.000002+00:00")])
    assert first.first is None and later.first is None
    assert decide_direction(first, later, "work 1", "work 2").source is None


def test_several_references_the_earliest_dated_is_the_original_the_other_is_disputed() -> None:
    works = [work(1), work(2), work(3)]
    c21, c12 = both_ways(2, 1, (0, 40), (0, 40))
    c31, c13 = both_ways(3, 1, (0, 40), (0, 40))
    found = scans((1, [c12, c13]), (2, [c21]), (3, [c31]))
    uploads = [
        upload(1, 1, "label-a", "2021-01-01", role="reference"),
        upload(2, 2, "label-b", "2020-06-01", role="reference"),
        upload(3, 3, "ring", "2019-01-01"),
    ]
    report = report_of(works, found, uploads)
    (cluster,) = report.clusters
    assert cluster.original_upload_id == 2
    assert cluster.original_reason == "earliest dated reference upload (2020-06-01)"
    assert any(c.startswith("several references: upload 1 (label-a)") for c in cluster.caveats)
    assert any("upload 3 is dated before the reference" in c for c in cluster.caveats)
    ranks = {u.uploader: u for u in report.uploaders}
    assert (ranks["label-a"].copies, ranks["label-a"].disputed_references) == (0, 1)
    assert ranks["ring"].copies == 1


def test_an_undated_pair_never_yields_an_accusation() -> None:
    works = [work(1), work(2), work(3, 80.0)]
    c21, c12 = both_ways(2, 1, (0, 40), (0, 40))
    e31, e13 = both_ways(3, 1, (0, 20), (0, 20), 80.0, 40.0)
    found = scans((1, [c12, e13]), (2, [c21]), (3, [e31]))
    uploads = [upload(1, 1, "a"), upload(2, 2, "b"), upload(3, 3, "c")]
    report = report_of(works, found, uploads)
    assert {k.kind for k in report.links} == {"same_recording", "overlap"}
    (cluster,) = report.clusters
    assert not cluster.determined and cluster.original_reason.startswith("undetermined")
    assert all(u.copies == 0 and u.excerpts_used == 0 for u in report.uploaders)


# -- property: excerpts never merge the clusters of different recordings --------------------
# A synthetic catalog with exact evidence: works are sequences of segments of a few source
# recordings (references, altered copies, medleys of two or three excerpts); every two works
# that share at least 3 s of a recording match both ways with the shared spans as sections.
Segment = tuple[int, float, float, float]  # recording, its start and end (s), tempo ratio


def duration_of(segments: list[Segment]) -> float:
    return sum((b - a) / t for _, a, b, t in segments)


def shared_sections(x: list[Segment], y: list[Segment]) -> list[Section]:
    """Sections of ``x`` (query) against ``y`` (reference): where they hold the same music."""
    out, x_at = [], 0.0
    for rx, ax, bx, tx in x:
        y_at = 0.0
        for ry, ay, by, ty in y:
            lo, hi = max(ax, ay), min(bx, by)
            if rx == ry and hi - lo > 0:
                out.append(
                    Section(
                        x_at + (lo - ax) / tx,
                        x_at + (hi - ax) / tx,
                        y_at + (lo - ay) / ty,
                        y_at + (hi - ay) / ty,
                        50,
                    )
                )
            y_at += (by - ay) / ty
        x_at += (bx - ax) / tx
    return out


def evidence(query_id: int, x: list[Segment], ref_id: int, y: list[Segment]) -> Match | None:
    sections = shared_sections(x, y)
    covered = sum(s.query_end_s - s.query_start_s for s in sections)
    if covered < 3.0:
        return None
    main = max(sections, key=lambda s: s.query_end_s - s.query_start_s)
    tempo = (main.ref_end_s - main.ref_start_s) / (main.query_end_s - main.query_start_s)
    m = match(ref_id, (main.query_start_s, main.query_end_s), (main.ref_start_s, main.ref_end_s))
    return m.__class__(
        **{
            **m.__dict__,
            "tempo_ratio": 1.0 / tempo,
            "coverage": min(1.0, covered / duration_of(x)),
            "coverage_s": covered,
            "sections": tuple(sections),
        }
    )


@st.composite
def catalogs(draw):
    n_recordings = draw(st.integers(2, 4))
    lengths = [draw(st.sampled_from([30.0, 40.0, 60.0])) for _ in range(n_recordings)]
    works: list[tuple[list[Segment], str]] = []  # segments, kind
    for r, length in enumerate(lengths):
        works.append(([(r, 0.0, length, 1.0)], "original"))
        for _ in range(draw(st.integers(0, 2))):
            start = draw(st.sampled_from([0.0, 2.0, 5.0]))
            tempo = draw(st.sampled_from([0.8, 1.0, 1.12]))
            works.append(([(r, start, length, tempo)], "copy"))
    for _ in range(draw(st.integers(1, 3))):
        used = draw(st.lists(st.integers(0, n_recordings - 1), min_size=2, max_size=3, unique=True))
        cut = draw(st.sampled_from([10.0, 15.0, 20.0]))
        works.append(([(r, 0.0, min(cut, lengths[r]), 1.0) for r in used], "medley"))
    references = draw(st.booleans())
    dated = draw(st.sampled_from(["all", "none", "medleys undated"]))
    return works, references, dated


def build(works, references: bool, dated: str):
    infos = [work(i + 1, duration_of(segments)) for i, (segments, _) in enumerate(works)]
    found = {}
    for i, (x, _) in enumerate(works):
        matches = [
            m
            for j, (y, _) in enumerate(works)
            if j != i and (m := evidence(i + 1, x, j + 1, y)) is not None
        ]
        found[i + 1] = WorkScan(i + 1, "file", tuple(matches))
    uploads = []
    for i, (_, kind) in enumerate(works):
        when = {"original": "2020-01-01", "copy": "2022-01-01", "medley": "2024-01-01"}[kind]
        if dated == "none" or (dated == "medleys undated" and kind == "medley"):
            when = None
        role = "reference" if references and kind == "original" else "upload"
        uploads.append(upload(i + 1, i + 1, f"account-{i + 1}", when, role=role))
    return build_report(infos, found, DEFAULT_SETTINGS, uploads=uploads)


@given(catalogs())
def test_excerpts_never_merge_the_clusters_of_different_recordings(catalog) -> None:
    works, references, dated = catalog
    report = build(works, references, dated)
    recordings = {i + 1: {r for r, *_ in segments} for i, (segments, _) in enumerate(works)}
    kind = {i + 1: k for i, (_, k) in enumerate(works)}
    for cluster in report.clusters:
        single = {next(iter(recordings[w])) for w in cluster.work_ids if kind[w] != "medley"}
        assert len(single) <= 1, "a cluster holds copies of two different recordings"
        if single:
            assert all(kind[w] != "medley" for w in cluster.work_ids), "a medley was clustered"
    for link in report.links:
        if link.kind == "copy_of":
            assert link.work_share >= DEFAULT_SETTINGS.copy_min_share
        if kind[link.work_id] == "medley" or kind[link.source_work_id] == "medley":
            assert link.kind in ("contains_excerpt_of", "overlap", "same_recording")
            assert not link.clustered or kind[link.work_id] == kind[link.source_work_id]
    if not references and dated == "none":
        assert all(u.copies == 0 and u.excerpts_used == 0 for u in report.uploaders)
        assert all(not c.determined for c in report.clusters)


def lined(a: int, b: int, spans, a_s: float, b_s: float) -> tuple[Match, Match]:
    """Matches of ``a`` against ``b`` and back, one section per ``(a0, a1, b0, b1)`` of
    ``spans`` (the first is the main one)."""

    def one(query: int, ref: int, pieces, query_s: float) -> Match:
        m = match(ref, pieces[0][:2], pieces[0][2:], query_s)
        covered = sum(q1 - q0 for q0, q1, _, _ in pieces)
        sections = tuple(Section(q0, q1, r0, r1, 80) for q0, q1, r0, r1 in pieces)
        return m.__class__(
            **{
                **m.__dict__,
                "coverage": covered / query_s,
                "coverage_s": covered,
                "sections": sections,
            }
        )

    back = [(b0, b1, a0, a1) for a0, a1, b0, b1 in spans]
    return one(a, b, spans, a_s), one(b, a, back, b_s)


def weak(matches: tuple[Match, ...]) -> tuple[Match, ...]:
    """``matches`` as a suspect pair's: probability 1e-4."""
    return tuple(
        m.__class__(**{**m.__dict__, "score": 4.0, "false_match_probability": 1e-4})
        for m in matches
    )


def report_of_pairs(durations: dict[int, float], pairs, uploads):
    """The report of works of ``durations`` whose every pair ``(a, b, sections)`` or ``(a, b,
    sections, "weak")`` is found both ways (:func:`lined`; "weak": as a suspect pair)."""
    found: dict[int, list[Match]] = {w: [] for w in durations}
    for a, b, sections, *how in pairs:
        ab, ba = lined(a, b, sections, durations[a], durations[b])
        if how == ["weak"]:
            ab, ba = weak((ab, ba))
        found[a].append(ab)
        found[b].append(ba)
    works = [work(w, d) for w, d in durations.items()]
    return report_of(works, scans(*found.items()), uploads)


def test_two_medleys_of_the_same_two_tracks_never_join_the_tracks_clusters() -> None:
    """Sam's reference S (work 1, 30 s) and tom's track T (work 2, 30 s, 2021); two medleys of
    both: P (work 3) is 10 s of T then all of S, M (work 4) all of T then 20 s of S, and carl's
    copy of T (work 5). P is mostly S and M mostly T, and P and M are mostly each other, but
    what they share is half S, half T: joining them made one cluster of S and T, with sam's
    reference its original and tom a copier of his own track (session 47, the rescan fuzz)."""
    durations = {1: 30.0, 2: 30.0, 3: 40.0, 4: 50.0, 5: 28.0}
    pairs = [
        (3, 1, [(10, 40, 0, 30)]),
        (3, 2, [(0, 10, 10, 20)]),
        (4, 2, [(0, 30, 0, 30)]),
        (4, 1, [(30, 50, 5, 25)]),
        (3, 4, [(15, 35, 30, 50), (0, 10, 10, 20)]),
        (5, 2, [(0, 28, 2, 30)]),
        (5, 4, [(0, 28, 2, 30)]),
        (5, 3, [(8, 18, 0, 10)]),
    ]
    uploads = [
        upload(1, 1, "sam", "2020-01-01", role="reference"),
        upload(2, 2, "tom", "2021-01-01"),
        upload(3, 3, "pete", "2023-01-01"),
        upload(4, 4, "mallory", "2022-01-01"),
        upload(5, 5, "carl", "2022-06-01"),
    ]
    report = report_of_pairs(durations, pairs, uploads)
    assert not any({1, 2} <= set(c.work_ids) for c in report.clusters)
    originals = {c.original_work_id for c in report.clusters}
    assert {1, 2} <= originals
    ranks = {u.uploader: u for u in report.uploaders}
    assert "tom" not in ranks or (ranks["tom"].copies, ranks["tom"].excerpts_used) == (0, 0)
    assert (ranks["carl"].copies, ranks["pete"].copies, ranks["mallory"].copies) == (1, 1, 1)
    kept_apart = next(k for k in report.links if {k.work_id, k.source_work_id} == {3, 4})
    assert not kept_apart.clustered
    assert "not clustered together" in kept_apart.caveats[-1]


def test_a_medley_mostly_inside_another_is_not_attached_through_a_track_it_quotes() -> None:
    """Step 2 (a group mostly contained in a longer one): M (work 3) is all of U (work 2, 30 s)
    then 20 s of S (work 1, a 60-s reference); P (work 4) is 10 s of U then all of S. M is
    mostly inside P, but over U's part only in a third of it: U's group is not P's, and U's
    owner is no copier of S."""
    durations = {1: 60.0, 2: 30.0, 3: 50.0, 4: 70.0}
    pairs = [
        (1, 4, [(0, 60, 10, 70)]),
        (2, 3, [(0, 30, 0, 30)]),
        (3, 4, [(30, 50, 10, 30), (10, 20, 0, 10)]),
        (1, 3, [(0, 20, 30, 50)]),
        (2, 4, [(10, 20, 0, 10)]),
    ]
    uploads = [
        upload(1, 1, "label", "2020-01-01", role="reference"),
        upload(2, 2, "una", "2021-01-01"),
        upload(3, 3, "mallory", "2023-01-01"),
        upload(4, 4, "pete", "2022-01-01"),
    ]
    report = report_of_pairs(durations, pairs, uploads)
    assert [c.work_ids for c in report.clusters] == [(1, 4), (2, 3)]
    ranks = {u.uploader: u for u in report.uploaders}
    assert "una" not in ranks or ranks["una"].copies == 0


def test_a_partial_line_does_not_keep_a_copy_out_of_its_cluster() -> None:
    """The pair of the label's work 1 and the copy 2 is kept with its stronger direction's
    evidence, a line over 12 s only (the other direction saw all of it); a trim of the copy's
    other 28 s (work 3) still joins their cluster: a partial line says nothing about what
    work 2 does not hold."""
    works = [work(1, 40.0), work(2, 40.0), work(3, 28.0)]
    short, _ = lined(2, 1, [(0, 12, 0, 12)], 40.0, 40.0)
    short = short.__class__(**{**short.__dict__, "score": 80.0, "coverage": 1.0})
    _, full = lined(2, 1, [(0, 40, 0, 40)], 40.0, 40.0)
    c23, c32 = lined(2, 3, [(12, 40, 0, 28)], 40.0, 28.0)
    found = scans((1, [full]), (2, [short, c23]), (3, [c32]))
    uploads = [
        upload(1, 1, "label", "2020-01-01", role="reference"),
        upload(2, 2, "thief", "2022-01-01"),
        upload(3, 3, "thief2", "2023-01-01"),
    ]
    report = report_of(works, found, uploads)
    assert [c.work_ids for c in report.clusters] == [(1, 2, 3)]


def test_a_copy_dated_in_the_future_is_not_the_original_of_an_undated_work() -> None:
    """A copy's stored uploaded_at of 2999 (stored before index add refused it) would beat the
    undated owner's upload: it counts as undated too, so nobody is accused (session 46's
    operations audit, O6)."""
    works = [work(1), work(2)]
    a, b = both_ways(1, 2, (0, 40), (0, 40))
    found = scans((1, [a]), (2, [b]))
    uploads = [upload(1, 1, "owner"), upload(2, 2, "ring", "2999-01-01")]
    report = report_of(works, found, uploads)
    assert kinds(report) == {(1, "same_recording", 2)} or kinds(report) == {
        (2, "same_recording", 1)
    }
    assert not any(u.copies or u.excerpts_used for u in report.uploaders)


@pytest.mark.parametrize("first_uploader", ["una", "label"])
def test_a_weak_match_of_the_uploaders_own_earlier_upload_leaves_the_direction_open(
    first_uploader: str,
) -> None:
    """Una's track (work 1, 2019) and her own re-encoded re-upload (work 3, 2021) match only as
    a suspect pair; a thief's 20-s trim (work 2, 2020) is found against the re-upload alone.
    By the duplicate pairs the re-upload contains an excerpt of the thief's trim; but una
    uploaded that material first herself, so nobody is accused through this pair. When work 1
    is another uploader's, the duplicate pairs decide as before."""
    pairs = [(1, 3, [(0, 60, 0, 60)], "weak"), (2, 3, [(0, 20, 20, 40)])]
    uploads = [
        upload(1, 1, first_uploader, "2019-01-01"),
        upload(2, 2, "thief", "2020-01-01"),
        upload(3, 3, "una", "2021-01-01"),
    ]
    report = report_of_pairs({1: 60.0, 2: 20.0, 3: 60.0}, pairs, uploads)
    assert [p.work_ids for p in report.suspect_pairs] == [(1, 3)]
    (link,) = report.links
    ranks = {u.uploader: u for u in report.uploaders}
    if first_uploader == "una":
        assert link.kind == "overlap" and {link.work_id, link.source_work_id} == {2, 3}
        assert "una uploaded work 1 first (2019-01-01) and work 3 too" in link.direction
        assert "una" not in ranks or ranks["una"].excerpts_used == 0
    else:
        assert (link.work_id, link.kind, link.source_work_id) == (3, "contains_excerpt_of", 2)


def test_a_cluster_member_without_a_pair_does_not_date_what_its_group_does_not_hold() -> None:
    """A thief's undated upload (work 3) is 10 s of sam's track (work 1, 2020) then all of the
    label's reference (work 2); the label's own re-upload (work 4) is found with both, the
    reference with the thief's upload only as a suspect pair. Work 3 is in the reference's
    cluster, but what it shares with sam's track lies outside what that cluster holds of it:
    the reference does not date it, and sam is no excerpt user of the thief's upload."""
    pairs = [
        (2, 3, [(0, 60, 10, 70)], "weak"),
        (2, 4, [(0, 60, 0, 60)]),
        (3, 4, [(10, 70, 0, 60)]),
        (1, 3, [(10, 20, 0, 10)]),
    ]
    uploads = [
        upload(1, 1, "sam", "2020-06-01"),
        upload(2, 2, "label", "2019-01-01", role="reference"),
        upload(3, 3, "thief", None),
        upload(4, 4, "label", "2021-01-01"),
    ]
    report = report_of_pairs({1: 30.0, 2: 60.0, 3: 70.0, 4: 60.0}, pairs, uploads)
    assert [c.work_ids for c in report.clusters] == [(2, 3, 4)]
    assert (3, "contains_excerpt_of", 1) in kinds(report)
    ranks = {u.uploader: u for u in report.uploaders}
    assert "sam" not in ranks or ranks["sam"].excerpts_used == 0


def test_two_large_trims_of_one_original_stay_in_its_cluster() -> None:
    """The label's reference (work 1, 60 s), ua's first 42 s (work 2) and ub's last 42 s (work
    3): each trim is mostly one recording with the original (70 % of it), the two trims share
    24 s. The rest of the original beyond one trim is still the original: both are copies in
    its cluster (session 47's real-audio audit: the first form of the rule split them and named
    ua's trim the source of ub's)."""
    pairs = [(1, 2, [(0, 42, 0, 42)]), (1, 3, [(18, 60, 0, 42)]), (2, 3, [(18, 42, 0, 24)])]
    uploads = [
        upload(1, 1, "label", "2019-06-01", role="reference"),
        upload(2, 2, "ua", "2021-01-15"),
        upload(3, 3, "ub", "2021-02-15"),
    ]
    report = report_of_pairs({1: 60.0, 2: 42.0, 3: 42.0}, pairs, uploads)
    assert [(c.work_ids, c.original_work_id) for c in report.clusters] == [((1, 2, 3), 1)]
    assert {(2, "copy_of", 1), (3, "copy_of", 1)} <= kinds(report)
    ranks = {u.uploader: u for u in report.uploaders}
    assert (ranks["ua"].copies, ranks["ub"].copies) == (1, 1)


def test_medleys_that_are_more_each_other_than_their_tracks_never_join_the_tracks() -> None:
    """S (work 1, label's reference) and T (work 2, tom) of 22 s; P (work 3) is 12 s of T then
    all of S, M (work 4) all of T then 12 s of S. P and M line up 70 % of each other, more than
    each does of its own track (65 %), but in two pieces: the pairs of one aligned stretch
    join first, and P and M then share half S, half T."""
    pairs = [
        (1, 3, [(0, 22, 12, 34)]),
        (2, 4, [(0, 22, 0, 22)]),
        (3, 4, [(0, 12, 4, 16), (18, 30, 22, 34)]),
        (1, 4, [(6, 18, 22, 34)]),
        (2, 3, [(4, 16, 0, 12)]),
    ]
    uploads = [
        upload(1, 1, "label", "2020-01-10", role="reference"),
        upload(2, 2, "tom", "2020-02-10"),
        upload(3, 3, "mash-a", "2022-03-01"),
        upload(4, 4, "mash-b", "2022-05-01"),
    ]
    report = report_of_pairs({1: 22.0, 2: 22.0, 3: 34.0, 4: 34.0}, pairs, uploads)
    assert [c.work_ids for c in report.clusters] == [(1, 3), (2, 4)]
    ranks = {u.uploader: u for u in report.uploaders}
    assert "tom" not in ranks or (ranks["tom"].copies, ranks["tom"].excerpts_used) == (0, 0)


def test_a_ringtone_of_the_part_a_radio_edit_left_out_joins_the_original() -> None:
    """The label's reference (work 1, 60 s), a radio edit of its first 42 s (work 2) and a
    ringtone of its last 20 s (work 3). The ringtone lines up the rest of the original beyond
    the edit, but that rest is still the original's own recording: the original came first, so
    its recording is never narrowed to what a later copy of it holds (session 47's second
    real-audio audit)."""
    pairs = [(1, 2, [(0, 42, 0, 42)]), (1, 3, [(40, 60, 0, 20)])]
    uploads = [
        upload(1, 1, "label", "2019-06-01", role="reference"),
        upload(2, 2, "radio", "2021-01-01"),
        upload(3, 3, "ring", "2022-01-01"),
    ]
    report = report_of_pairs({1: 60.0, 2: 42.0, 3: 20.0}, pairs, uploads)
    assert [(c.work_ids, c.original_work_id) for c in report.clusters] == [((1, 2, 3), 1)]
    ranks = {u.uploader: u for u in report.uploaders}
    assert (ranks["radio"].copies, ranks["ring"].copies) == (1, 1)


@pytest.mark.parametrize("first_uploader", ["una", "label"])
def test_a_weak_match_of_the_uploaders_earlier_upload_leaves_the_member_uncounted(
    first_uploader: str,
) -> None:
    """Una's track (work 1, 2019) and her 2021 remaster (work 2) match only as a suspect pair; a
    thief's 2020 trim of 70 % of it (work 3) is one recording with the remaster. By the dates
    the thief's trim is the cluster's original and una a copier; but una uploaded it first
    herself, so none of her uploads in the cluster is counted as a copy, her clean edit (work 4)
    included, with a caveat (session 47's second and seventh real-audio audits). When work 1 is
    another uploader's, the dates decide as before."""
    pairs = [
        (1, 2, [(0, 50, 0, 50)], "weak"),
        (2, 3, [(10, 45, 0, 35)]),
        (2, 4, [(0, 50, 0, 50)]),
        (3, 4, [(0, 35, 10, 45)]),
    ]
    uploads = [
        upload(1, 1, first_uploader, "2019-04-01"),
        upload(2, 2, "una", "2021-04-01"),
        upload(3, 3, "thief", "2020-06-01"),
        upload(4, 4, "una", "2022-01-01"),  # her clean edit, no weak match of work 1
    ]
    report = report_of_pairs({1: 50.0, 2: 50.0, 3: 35.0, 4: 50.0}, pairs, uploads)
    (cluster,) = report.clusters
    ranks = {u.uploader: u for u in report.uploaders}
    assert cluster.work_ids == (2, 3, 4) and cluster.original_work_id == 3
    remaster = next(m for m in cluster.members if m.work_id == 2)
    if first_uploader == "una":
        assert remaster.relation == "undetermined"
        assert any(
            "una's uploads are not counted as copies: they uploaded work 1 first (2019-04-01)" in c
            for c in cluster.caveats
        )
        assert (ranks["una"].copies, ranks["una"].undetermined) == (0, 2)
        assert "thief" not in ranks or ranks["thief"].originals_copied == 0
    else:
        assert remaster.relation == "copy_of" and ranks["una"].copies == 2
    # the member row says why it is not counted; the thief's stays the original
    page = rescan_html(report, None)
    in_doubt = "undetermined: its uploader is in doubt, not counted (see the caveats)"
    assert cluster.relation_text(remaster) == (in_doubt if first_uploader == "una" else "copy_of")
    assert page.count(in_doubt) == (2 if first_uploader == "una" else 0)
    thief = next(m for m in cluster.members if m.work_id == 3)
    assert cluster.relation_text(thief) == "original"


def test_mixing_ones_own_older_track_into_a_copy_clears_only_that_copy() -> None:
    """A label's single (work 1, 2020) and album version (work 2); a thief's own track (work 3,
    2018), mixed quietly under his 2022 trim of the single (work 4: a suspect match of 55 % of
    it); uc's copy of the trim (work 5) and uc2's copy of the single (work 6). The thief's trim
    is left uncounted, but the single stays the original and the other copiers are counted,
    also one who re-posted the thief's file (session 47's sixth and seventh real-audio audits:
    the whole cluster was cleared, then every upload of the doubted work)."""
    pairs = [
        (1, 2, [(0, 60, 0, 60)]),
        (1, 4, [(20, 35, 0, 15)]),
        (1, 5, [(20, 35, 0, 15)]),
        (1, 6, [(0, 60, 0, 60)]),
        (2, 4, [(20, 35, 0, 15)]),
        (2, 6, [(0, 60, 0, 60)]),
        (4, 5, [(0, 15, 0, 15)]),
        (3, 4, [(10, 18, 0, 8.25)], "weak"),
    ]
    uploads = [
        upload(1, 1, "label", "2020-01-01"),
        upload(2, 2, "label", "2020-06-01"),
        upload(3, 3, "thief", "2018-01-01"),
        upload(4, 4, "thief", "2022-01-01"),
        upload(5, 5, "uc", "2023-01-01"),
        upload(6, 6, "uc2", "2023-02-01"),
        upload(7, 4, "reposter", "2023-03-01"),  # the thief's file, byte for byte
    ]
    durations = {1: 60.0, 2: 60.0, 3: 60.0, 4: 15.0, 5: 15.0, 6: 60.0}
    report = report_of_pairs(durations, pairs, uploads)
    label = next(c for c in report.clusters if 1 in c.work_ids)
    assert label.original_work_id == 1 and {4, 5, 6} <= set(label.work_ids)
    ranks = {u.uploader: u for u in report.uploaders}
    assert (ranks["uc"].copies, ranks["uc2"].copies, ranks["reposter"].copies) == (1, 1, 1)
    assert ranks["thief"].copies == 0


@pytest.mark.parametrize("first_uploader", ["una", "label"])
def test_nobody_uses_an_excerpt_of_what_they_uploaded_first(first_uploader: str) -> None:
    """Una's track (work 1, 2019), her 2021 re-upload (work 2; its pair with work 1 missed) and a
    thief's 2020 trim of the track (work 3, in work 1's cluster). The re-upload shares the trim's
    seconds; the trim's side is dated by work 1, una's own: she is no excerpt user of the thief's
    trim. When work 1 is another uploader's, the re-upload contains an excerpt as before."""
    pairs = [(1, 3, [(5, 25, 0, 20)]), (2, 3, [(3, 23, 0, 20)])]
    uploads = [
        upload(1, 1, first_uploader, "2019-11-13"),
        upload(2, 2, "una", "2021-04-29"),
        upload(3, 3, "thief", "2021-03-14"),
    ]
    report = report_of_pairs({1: 40.0, 2: 38.0, 3: 20.0}, pairs, uploads)
    link = next(k for k in report.links if {k.work_id, k.source_work_id} == {2, 3})
    ranks = {u.uploader: u for u in report.uploaders}
    if first_uploader == "una":
        assert link.kind == "overlap" and "uploaded by una too" in link.direction
        assert ranks["una"].excerpts_used == 0
    else:
        assert (link.work_id, link.kind, link.source_work_id) == (2, "contains_excerpt_of", 3)
        assert ranks["una"].excerpts_used == 1


def test_a_medley_attached_to_a_cluster_holds_only_that_clusters_recording() -> None:
    """Ann's medley (work 4: 15 s of S, then 15 s of U) is attached to bob's work mostly of S
    (work 5), in the cluster of S (work 1, a reference); the pair of S and the medley was
    missed. What the medley shares with U's owner's re-upload (work 6) is U, outside S's part
    of it: S's reference does not date it, and U's owner is no excerpt user of the medley."""
    pairs = [
        (1, 5, [(0, 30, 0, 30)]),
        (3, 6, [(0, 30, 0, 30)]),
        (3, 5, [(5, 20, 30, 45)]),
        (3, 4, [(0, 15, 15, 30)]),
        (4, 5, [(0, 15, 0, 15), (20, 30, 30, 40)]),
        (4, 6, [(15, 30, 0, 15)]),
        (5, 6, [(30, 45, 5, 20)]),
    ]
    uploads = [
        upload(1, 1, "sam", "2019-06-25", role="reference"),
        upload(3, 3, "una", "2019-11-10", role="reference"),
        upload(4, 4, "ann", "2020-05-04"),
        upload(5, 5, "bob", "2021-07-01"),
        upload(6, 6, "una", "2022-01-01"),
    ]
    report = report_of_pairs({1: 30.0, 3: 30.0, 4: 30.0, 5: 45.0, 6: 30.0}, pairs, uploads)
    assert (6, "contains_excerpt_of", 4) not in kinds(report)
    ranks = {u.uploader: u for u in report.uploaders}
    assert "una" not in ranks or ranks["una"].excerpts_used == 0


def test_reuploading_an_old_track_is_no_earlier_upload_of_it() -> None:
    """A label's 2015 track (work 1) and another label's 2020 remaster of it (work 2) match only
    as a suspect pair. A thief copies the remaster in 2022 (work 3) and re-uploads the 2015
    track unchanged the same day; uc copies the remaster in 2023 (work 4). The thief's upload of
    work 1 is from 2022, not 2015: no doubt on the remaster's cluster, both copiers counted
    (session 47's third real-audio audit)."""
    pairs = [
        (1, 2, [(0, 60, 0, 60)], "weak"),
        (1, 3, [(0, 60, 0, 60)], "weak"),
        (2, 3, [(0, 60, 0, 60)]),
        (2, 4, [(0, 60, 0, 60)]),
        (3, 4, [(0, 60, 0, 60)]),
    ]
    uploads = [
        upload(1, 1, "label-w", "2015-03-01"),
        upload(2, 2, "label-o", "2020-05-01"),
        upload(3, 3, "thief", "2022-02-02"),
        upload(4, 4, "uc", "2023-01-01"),
        upload(5, 1, "thief", "2022-02-02"),
    ]
    report = report_of_pairs({w: 60.0 for w in (1, 2, 3, 4)}, pairs, uploads)
    remaster = next(c for c in report.clusters if 2 in c.work_ids)
    assert remaster.work_ids == (2, 3, 4) and remaster.original_work_id == 2
    ranks = {u.uploader: u for u in report.uploaders}
    assert 3 in ranks["thief"].copy_upload_ids and ranks["uc"].copies == 1


def test_a_ringtone_of_the_album_version_joins_the_labels_single_and_album() -> None:
    """A label's radio-edit single (work 1, the first 42 s, 2020), its album version (work 2,
    60 s, 2021), a ringtone of the album's last 20 s (work 3, 2022) and a medley quoting that
    outro (work 4, 2022). Later works that quote the album are no other recording in it: the
    ringtone is a copy in the label's cluster, the medley only contains an excerpt."""
    pairs = [(1, 2, [(0, 42, 0, 42)]), (2, 3, [(40, 60, 0, 20)]), (2, 4, [(40, 60, 20, 40)])]
    uploads = [
        upload(1, 1, "label", "2020-01-01"),
        upload(2, 2, "label", "2021-01-01"),
        upload(3, 3, "ug", "2022-01-01"),
        upload(4, 4, "mallory", "2022-02-01"),
    ]
    report = report_of_pairs({1: 42.0, 2: 60.0, 3: 20.0, 4: 60.0}, pairs, uploads)
    assert [(c.work_ids, c.original_work_id) for c in report.clusters] == [((1, 2, 3), 1)]
    assert (4, "contains_excerpt_of", 2) in kinds(report)
    ranks = {u.uploader: u for u in report.uploaders}
    assert ranks["ug"].copies == 1 and ranks["mallory"].copies == 0


@pytest.mark.parametrize("thief_reupload", [False, True])
def test_an_owners_own_older_mix_leaves_the_copies_of_its_single_counted(thief_reupload) -> None:
    """A label's 2015 mix (work 1), its 2020 single (work 2, a suspect match of the mix) and
    album version (work 3); a thief's 2022 copy of the single (work 4) and uc's 2023 copy (work
    5). The label's own older mix casts no doubt on its single's cluster, nor does the thief's
    byte-identical re-upload of the mix in 2016: the mix was the label's first (session 47's
    fourth real-audio audit)."""
    pairs = [
        (1, 2, [(0, 60, 0, 60)], "weak"),
        (1, 3, [(0, 60, 0, 60)], "weak"),
        (1, 4, [(0, 60, 0, 60)], "weak"),
        (2, 3, [(0, 60, 0, 60)]),
        (2, 4, [(0, 60, 0, 60)]),
        (2, 5, [(0, 60, 0, 60)]),
        (3, 4, [(0, 60, 0, 60)]),
        (3, 5, [(0, 60, 0, 60)]),
        (4, 5, [(0, 60, 0, 60)]),
    ]
    uploads = [
        upload(1, 1, "label", "2015-03-01"),
        upload(2, 2, "label", "2020-01-15"),
        upload(3, 3, "label", "2020-06-01"),
        upload(4, 4, "thief", "2022-02-01"),
        upload(5, 5, "uc", "2023-01-01"),
    ]
    if thief_reupload:
        uploads.append(upload(6, 1, "thief", "2016-01-01"))
    report = report_of_pairs({w: 60.0 for w in range(1, 6)}, pairs, uploads)
    single = next(c for c in report.clusters if 2 in c.work_ids)
    assert single.work_ids == (2, 3, 4, 5) and single.original_work_id == 2
    ranks = {u.uploader: u for u in report.uploaders}
    assert 4 in ranks["thief"].copy_upload_ids and ranks["uc"].copies == 1


@pytest.mark.parametrize("mashup_date", [None, "2021-01-01"])
def test_an_undated_or_same_day_mashup_quoting_the_album_does_not_narrow_it(mashup_date) -> None:
    """A label's single (work 1, the first 42 s, 2020) and album version (work 2, 60 s, 2021);
    ug's ringtone of the album's last 20 s (work 3, 2022), ug2's copy of it (work 4, 2023), and
    ug's mashup quoting that outro (work 5), undated or of the album's day. Only a work known to
    be earlier can be another recording in the album: the ringtones stay copies in the label's
    cluster, not ug's (the fourth audit: ug was named the original)."""
    pairs = [
        (1, 2, [(0, 42, 0, 42)]),
        (2, 3, [(40, 60, 0, 20)]),
        (2, 4, [(40, 60, 0, 20)]),
        (3, 4, [(0, 20, 0, 20)]),
        (2, 5, [(40, 60, 0, 20)]),
        (3, 5, [(0, 20, 0, 20)]),
        (4, 5, [(0, 20, 0, 20)]),
    ]
    uploads = [
        upload(1, 1, "label", "2020-01-01"),
        upload(2, 2, "label", "2021-01-01"),
        upload(3, 3, "ug", "2022-01-01"),
        upload(4, 4, "ug2", "2023-01-01"),
        upload(5, 5, "ug", mashup_date),
    ]
    report = report_of_pairs({1: 42.0, 2: 60.0, 3: 20.0, 4: 20.0, 5: 40.0}, pairs, uploads)
    label = next(c for c in report.clusters if 2 in c.work_ids)
    assert label.original_work_id == 1 and {3, 4} <= set(label.work_ids)
    ranks = {u.uploader: u for u in report.uploaders}
    assert ranks["ug2"].copies == 1 and ranks["ug"].originals_copied == 0


@pytest.mark.parametrize("how", ["copy_of_old_mix", "undated_first_upload"])
def test_a_thiefs_copy_of_an_old_release_casts_no_doubt_on_the_remaster(how: str) -> None:
    """A label's 2015 mix (work 1) and 2020 remaster (work 3); W (work 2), weakly matching the
    remaster, is the thief's 2016 altered copy of the mix, or (without the mix) a track someone
    uploaded undated that the thief re-uploaded in 2016. The thief's 2022 copy of the remaster
    (work 4) and uc's 2023 copy (work 5) are still counted: W is no upload the thief made
    first (session 47's fifth real-audio audit)."""
    pairs = [
        (2, 3, [(0, 60, 0, 60)], "weak"),
        (2, 4, [(0, 60, 0, 60)], "weak"),
        (3, 4, [(0, 60, 0, 60)]),
        (3, 5, [(0, 60, 0, 60)]),
        (4, 5, [(0, 60, 0, 60)]),
    ]
    uploads = [
        upload(2, 2, "thief", "2016-05-01"),
        upload(3, 3, "label", "2020-01-15"),
        upload(4, 4, "thief", "2022-02-01"),
        upload(5, 5, "uc", "2023-01-01"),
    ]
    if how == "copy_of_old_mix":
        pairs.append((1, 2, [(0, 60, 0, 60)]))
        uploads.append(upload(1, 1, "label", "2015-03-01"))
    else:
        uploads.append(upload(6, 2, "pirate2", None))
    durations = {w: 60.0 for w in (1, 2, 3, 4, 5) if how == "copy_of_old_mix" or w != 1}
    report = report_of_pairs(durations, pairs, uploads)
    remaster = next(c for c in report.clusters if 3 in c.work_ids)
    assert remaster.work_ids == (3, 4, 5) and remaster.original_work_id == 3
    ranks = {u.uploader: u for u in report.uploaders}
    assert 4 in ranks["thief"].copy_upload_ids and ranks["uc"].copies == 1


FULL = [(0, 40, 0, 40)]


@pytest.mark.parametrize("ids", [(1, 2, 3, 4, 5), (3, 1, 2, 5, 4), (5, 4, 1, 2, 3)])
def test_a_mashup_of_two_tracks_never_joins_their_clusters(ids) -> None:
    """Alice's track T1 (2019) and bob's T2 (2020); dj's mashup M (2021) plays both over the
    same 40 s, so it is mostly each of them; carol's copy of T1 and dan's copy of T2 (2022)
    each match the mashup too. T1 and T2 never match each other: joining both through M made
    bob a copier of alice's track (session 47's known limit). Whatever the order the pairs
    come in, the tracks stay apart and the copiers are counted."""
    t1, t2, mix, carol, dan = ids
    durations = dict.fromkeys(ids, 40.0)
    pairs = [(mix, t1, FULL), (mix, t2, FULL), (carol, t1, FULL), (carol, mix, FULL)]
    pairs += [(dan, t2, FULL), (dan, mix, FULL)]
    uploads = [
        upload(t1, t1, "alice", "2019-03-01"),
        upload(t2, t2, "bob", "2020-05-01"),
        upload(mix, mix, "dj", "2021-01-01"),
        upload(carol, carol, "carol", "2022-01-01"),
        upload(dan, dan, "dan", "2022-02-01"),
    ]
    report = report_of_pairs(durations, pairs, uploads)
    assert not any({t1, t2} <= set(c.work_ids) for c in report.clusters)
    ranks = {u.uploader: u for u in report.uploaders}
    assert all(ranks[owner].copies == 0 for owner in ("alice", "bob") if owner in ranks)
    assert (ranks["carol"].copies, ranks["dan"].copies) == (1, 1)
    assert not {(t2, "copy_of", t1), (t1, "copy_of", t2)} & kinds(report)
    # the mix joins neither cluster, and its links decide nothing (no one is accused by them)
    mixed = [k for k in report.links if mix in (k.work_id, k.source_work_id)]
    assert len(mixed) == 4 and not any(k.clustered for k in mixed)
    assert {k.kind for k in mixed} == {"same_recording"}
    assert all(f"work {mix} plays works" in k.direction for k in mixed)
    assert "dj" not in ranks or ranks["dj"].copies == 0


def test_a_chain_of_copies_whose_ends_never_matched_stays_one_cluster() -> None:
    """Alice's original O (2019), thief1's copy C1 of it (2020) and thief2's copy C2 of C1
    (2021), the O-C2 pair missed: C1 is lined up by both over the same seconds, but it is
    earlier than C2, so it is no mix; and an original copied twice (O with C1 and C3, 2022,
    their pair missed) is earlier than both. One cluster, three copiers counted."""
    durations = dict.fromkeys((1, 2, 3, 4), 40.0)
    pairs = [(1, 2, FULL), (2, 3, FULL), (1, 4, FULL), (2, 4, FULL)]
    uploads = [
        upload(1, 1, "alice", "2019-01-01"),
        upload(2, 2, "thief1", "2020-01-01"),
        upload(3, 3, "thief2", "2021-01-01"),
        upload(4, 4, "thief3", "2022-01-01"),
    ]
    report = report_of_pairs(durations, pairs, uploads)
    (cluster,) = report.clusters
    assert cluster.work_ids == (1, 2, 3, 4) and cluster.original_work_id == 1
    ranks = {u.uploader: u for u in report.uploaders}
    assert [ranks[t].copies for t in ("thief1", "thief2", "thief3")] == [1, 1, 1]


@pytest.mark.parametrize("weak_pair", [False, True])
def test_works_the_mix_holds_that_match_each_other_are_one_recording(weak_pair: bool) -> None:
    """When the two works a later work lines up over the same seconds match each other, even
    only as a suspect pair, they may be one recording: the mix rule leaves them to the
    clusters as before (here bob's re-upload of alice's track, 2020, with a later copy of
    both by dj)."""
    durations = dict.fromkeys((1, 2, 3), 40.0)
    pairs = [(3, 1, FULL), (3, 2, FULL), (1, 2, FULL, "weak") if weak_pair else (1, 2, FULL)]
    uploads = [
        upload(1, 1, "alice", "2019-03-01"),
        upload(2, 2, "bob", "2020-05-01"),
        upload(3, 3, "dj", "2021-01-01"),
    ]
    report = report_of_pairs(durations, pairs, uploads)
    assert any({1, 2, 3} <= set(c.work_ids) for c in report.clusters)
    assert not any("plays works" in k.direction for k in report.links)


@pytest.mark.parametrize("mix_day", ["2021-01-01", "2020-05-01", None])
def test_a_mashup_met_through_a_later_copy_of_its_track_joins_neither_cluster(mix_day) -> None:
    """Dj's mashup M (work 3) of alice's T1 and bob's T2 lines up with T1 only over 47 % of
    it (a contained excerpt), but carol's 2022 copy of T1 lines up 63 % of it and bob's T2
    98 %: carol's copy stands for T1's recording, which was uploaded before M (session 48's
    real-audio audit, `dj_tempo_0db`: bob was counted a copier of alice). The same when M is
    uploaded the day of T2 or is undated."""
    durations = {1: 45.0, 2: 48.0, 3: 45.0, 4: 45.0, 5: 48.0}
    pairs = [
        (3, 1, [(0, 21, 0, 21)]),
        (3, 2, [(0, 44, 0, 47)]),
        (3, 4, [(0, 28.3, 0, 28.3)]),
        (4, 1, [(0, 45, 0, 45)]),
        (5, 2, [(0, 48, 0, 48)]),
        (5, 3, [(0, 38, 0, 43)]),
    ]
    uploads = [
        upload(1, 1, "alice", "2019-03-01"),
        upload(2, 2, "bob", "2020-05-01"),
        upload(3, 3, "dj", mix_day),
        upload(4, 4, "carol", "2022-02-01"),
        upload(5, 5, "dan", "2022-03-01"),
    ]
    report = report_of_pairs(durations, pairs, uploads)
    assert not any({1, 2} <= set(c.work_ids) for c in report.clusters)
    ranks = {u.uploader: u for u in report.uploaders}
    assert "bob" not in ranks or ranks["bob"].copies == 0
    assert (ranks["carol"].copies, ranks["dan"].copies) == (1, 1)
    assert any("work 3 plays works" in k.direction for k in report.links)


def test_a_labels_stems_and_their_mix_stay_one_cluster_with_its_copies() -> None:
    """Alice's two stems (works 1 and 2) and her full mix of both (work 3), all on one day, and
    thief1's copy of the mix (work 4, 2020), which lines up both stems as the mix does. Joining
    one uploader's recordings accuses nobody, so neither the mix nor the copy is taken for a
    mashup: the copy stays alice's copier (session 48's red team, `stems_accuse`)."""
    durations = dict.fromkeys((1, 2, 3, 4), 40.0)
    pairs = [(3, 1, FULL), (3, 2, FULL), (4, 1, FULL), (4, 2, FULL), (4, 3, FULL)]
    uploads = [
        upload(1, 1, "alice", "2019-03-01T09:00:00+00:00"),
        upload(2, 2, "alice", "2019-03-01T09:30:00+00:00"),
        upload(3, 3, "alice", "2019-03-01T10:00:00+00:00"),
        upload(4, 4, "thief1", "2020-04-01"),
    ]
    report = report_of_pairs(durations, pairs, uploads)
    (cluster,) = report.clusters
    assert cluster.work_ids == (1, 2, 3, 4) and cluster.original_work_id == 1
    ranks = {u.uploader: u for u in report.uploaders}
    assert ranks["thief1"].copies == 1 and ranks["alice"].copies == 0
    assert not any("plays works" in k.direction for k in report.links)


def test_copies_of_a_remix_are_not_attached_to_the_long_track_it_samples() -> None:
    """Alice's track O (2019-03) and gina's 120-s track G (2019-06); alice's 2020 remix R plays
    O and 40 s of G at once; thief1's copy of the remix (2021) and alice's own re-upload of it
    (2022) are each mostly G's 40 s too. R is a mix, so it joins no cluster; its copies would,
    left to themselves, be attached to G as trims of it, with thief1's copy their original and
    alice a copier of gina (session 48's second red team, `remix_long_accuse_c`). A copy of a
    mix joins nothing either, and accuses nobody."""
    durations = {1: 40.0, 2: 120.0, 3: 40.0, 4: 40.0, 5: 40.0}
    on_g = [(0, 40, 10, 50)]
    pairs = [(3, 1, FULL), (3, 2, on_g), (4, 3, FULL), (4, 2, on_g), (4, 1, [(0, 22, 0, 22)])]
    pairs += [(5, 4, FULL), (5, 3, FULL), (5, 2, on_g), (5, 1, [(0, 20, 0, 20)])]
    uploads = [
        upload(1, 1, "alice", "2019-03-01"),
        upload(2, 2, "gina", "2019-06-01"),
        upload(3, 3, "alice", "2020-01-01"),
        upload(4, 4, "thief1", "2021-01-01"),
        upload(5, 5, "alice", "2022-01-01"),
    ]
    report = report_of_pairs(durations, pairs, uploads)
    assert not any(2 in c.work_ids and {4, 5} & set(c.work_ids) for c in report.clusters)
    ranks = {u.uploader: u for u in report.uploaders}
    assert "alice" not in ranks or (ranks["alice"].copies, ranks["alice"].excerpts_used) == (0, 0)
    assert any("work 4 is a copy of work 3, which plays" in k.direction for k in report.links)


def test_an_original_recorded_long_after_another_upload_is_named_with_a_caveat() -> None:
    """A review made a thief's copy the original with a date written back (1970) after the
    owner's upload had been recorded, and the report said nothing. The earliest date still
    decides (a backfill of history is recorded late too), but a day between the recordings is
    said; one import of history (recordings an hour apart) is not."""
    from dataclasses import replace

    from audiodup.rescan.clusters import choose_original

    owner = replace(upload(1, 1, "alice", "2021-05-01"), recorded_at="2024-06-01T00:00:00+00:00")
    thief = replace(upload(2, 2, "mallory", "1970-01-01"), recorded_at="2024-06-03T09:00:00+00:00")
    chosen = choose_original([owner, thief])
    assert chosen.upload_id == 2
    (caveat,) = chosen.caveats
    assert caveat.startswith("upload 1 was recorded more than a day before the original (upload 2")

    same_import = replace(thief, recorded_at="2024-06-01T01:00:00+00:00")
    assert choose_original([owner, same_import]).caveats == ()
    own_edit = replace(thief, uploader="alice")  # one uploader's own uploads
    assert choose_original([owner, own_edit]).caveats == ()
    recorded_first = replace(thief, recorded_at="2024-05-01T00:00:00+00:00")
    assert choose_original([owner, recorded_first]).caveats == ()


def test_a_cluster_whose_earliest_date_is_a_day_holding_another_upload_is_undetermined() -> None:
    from audiodup.rescan.clusters import choose_original

    alice = upload(1, 1, "alice", "2024-03-01T09:00:00+01:00")
    mallory = upload(2, 2, "mallory", "2024-03-01")
    chosen = choose_original([alice, mallory])
    assert chosen.upload_id is None
    assert chosen.reason == (
        "undetermined: works 1, 2 share the earliest upload date (2024-03-01, a day)"
    )
    earlier = upload(3, 2, "mallory", "2024-02-29")
    assert choose_original([alice, earlier]).upload_id == 3


def test_a_work_s_undated_upload_recorded_before_the_earliest_date_is_its_original() -> None:
    """A catalog added without dates, then a thief's identical upload dated by its arrival
    (the same work) and a copy of it (another work): the cluster's original is the work's
    undated upload, recorded before either date, not the thief's (a review). So is another
    work's undated upload recorded before every date (a thief's re-encode is another work: a
    second review); two works' such uploads leave it undetermined."""
    from dataclasses import replace

    from audiodup.rescan.clusters import choose_original

    label = replace(upload(1, 1, "label"), recorded_at="2026-03-01T00:00:00+00:00")
    thief = replace(upload(2, 1, "thief", "2026-03-02"), recorded_at="2026-03-02T00:00:00+00:00")
    copy = replace(upload(3, 2, "mallory", "2026-03-05"), recorded_at="2026-03-05T00:00:00+00:00")
    chosen = choose_original([label, thief, copy])
    assert (chosen.upload_id, chosen.work_id) == (1, 1)
    assert "first recorded upload of work 1" in chosen.reason
    assert not any("upload 1" in c and "no upload date" in c for c in chosen.caveats)
    reencode = replace(upload(4, 2, "thief", "2026-03-02"), recorded_at="2026-03-02T00:00:00+00:00")
    chosen = choose_original([label, reencode])
    assert (chosen.upload_id, chosen.work_id) == (1, 1)
    other = replace(upload(5, 3, "bob"), recorded_at="2026-02-01T00:00:00+00:00")
    chosen = choose_original([label, reencode, other])
    assert chosen.upload_id is None
    assert "works 1, 3 hold uploads recorded without a date before" in chosen.reason
    late = replace(other, recorded_at="2026-04-01T00:00:00+00:00")  # after every date
    chosen = choose_original([label, reencode, late])
    assert chosen.upload_id == 1
    assert any("no upload date for upload 5" in c for c in chosen.caveats)


def test_a_re_encoded_catalog_work_dated_later_does_not_make_its_owner_the_copier() -> None:
    """Link direction: a catalog work added without dates, and a re-encode of it (another
    work) uploaded through the service, dated by its arrival: the catalog work came first."""
    label = work_originality(
        1, [replace(upload(1, 1, "label"), recorded_at="2026-03-01T00:00:00+00:00")]
    )
    thief = work_originality(
        2, [replace(upload(2, 2, "thief", "2026-03-02"), recorded_at="2026-03-02T00:00:00+00:00")]
    )
    direction = decide_direction(label, thief, "work 1", "work 2")
    assert direction.source == 1 and "work 1 was recorded (undated)" in direction.reason
    assert decide_direction(thief, label, "work 2", "work 1").source == 1
    # the dated side also held an undated upload recorded before its date: undetermined
    both = work_originality(
        3,
        [
            replace(upload(3, 3, "x", "2026-03-02"), recorded_at="2026-03-02T00:00:00+00:00"),
            replace(upload(4, 3, "y"), recorded_at="2026-02-15T00:00:00+00:00"),
        ],
    )
    assert decide_direction(label, both, "work 1", "work 3").source is None
    # recorded after the other's date: the dates decide, as before
    late = work_originality(
        5, [replace(upload(5, 5, "z"), recorded_at="2026-03-03T00:00:00+00:00")]
    )
    assert decide_direction(late, thief, "work 5", "work 2").source == 2


def test_a_track_an_earlier_mix_holds_is_not_counted_a_copy_of_the_mix() -> None:
    """A review: a DJ's medley (dated June 2023) of alice's earlier track and all of bob's,
    and bob's own upload of his track (2024). By date the medley was bob's original, and bob
    a copier. A mix, a third of it another uploader's earlier recording, may have used bob's
    too: bob's upload is not counted, with a caveat. A thief who copies the whole mix is
    counted, also when he uploaded a trim of it too (a review of the first form: the trim left
    all his uploads uncounted), and so is a trim of a long original that holds nobody else's
    recording, or only a 5-s sample of one."""
    works = [work(1, 50.0), work(2, 56.0), work(3, 150.0), work(4, 150.0), work(5, 40.0)]
    uploads = [
        upload(1, 1, "alice", "2023-01-01"),
        upload(2, 2, "bob", "2024-01-01"),
        upload(3, 3, "dj", "2023-06-01"),
        upload(4, 4, "thief", "2024-06-01"),
        upload(5, 5, "thief", "2024-06-02"),
    ]
    alice_in_mix = both_ways(3, 1, (20.0, 70.0), (0.0, 50.0), 150.0, 50.0)
    bob_in_mix = both_ways(3, 2, (70.0, 126.0), (0.0, 56.0), 150.0, 56.0)
    mix_copied = both_ways(4, 3, (0.0, 150.0), (0.0, 150.0), 150.0, 150.0)
    mix_trimmed = both_ways(5, 3, (0.0, 40.0), (100.0, 140.0), 40.0, 150.0)
    found = scans(
        (1, [alice_in_mix[1]]),
        (2, [bob_in_mix[1]]),
        (3, [alice_in_mix[0], bob_in_mix[0], mix_copied[1], mix_trimmed[1]]),
        (4, [mix_copied[0]]),
        (5, [mix_trimmed[0]]),
    )
    report = report_of(works, found, uploads)
    assert (2, "copy_of", 3) in kinds(report) and (3, "contains_excerpt_of", 1) in kinds(report)
    (cluster,) = [c for c in report.clusters if 2 in c.work_ids]
    assert cluster.original_work_id == 3
    relation = {m.upload_id: m.relation for m in cluster.members}
    assert relation[2] == "undetermined" and relation[4] == "copy_of"
    assert any("is a mix" in c and "work 2's uploads" in c for c in cluster.caveats)
    ranks = {r.uploader: r for r in report.uploaders}
    assert ranks["bob"].copies == 0 and ranks["bob"].undetermined == 1
    assert ranks["thief"].copies >= 1 and 4 in ranks["thief"].copy_upload_ids

    # the same geometry with no other uploader's recording in the long work: a trimmed copy
    trimmed = report_of(works[1:3], scans((2, [bob_in_mix[1]]), (3, [bob_in_mix[0]])), uploads[1:3])
    assert {r.uploader: r.copies for r in trimmed.uploaders}["bob"] == 1
    # nor is a 5-s sample of alice's track in it a mix
    sample = both_ways(3, 1, (20.0, 25.0), (0.0, 5.0), 150.0, 50.0)
    sampled = report_of(
        works[:3],
        scans((1, [sample[1]]), (2, [bob_in_mix[1]]), (3, [sample[0], bob_in_mix[0]])),
        uploads[:3],
    )
    assert {r.uploader: r.copies for r in sampled.uploaders}["bob"] == 1


def test_a_mix_is_measured_by_the_seconds_others_cover_and_a_djs_mix_of_one_owner_counts() -> None:
    """A review of the second form: the shares of three copies of one 15-s sample added up to
    "30 %" (a mix; the thief's trim uncounted), and a DJ's mix of two of bob's own tracks left
    bob a copier of the mix for the second (his first was not a third party's)."""
    sample = [work(1, 50.0), work(2, 50.0), work(3, 50.0), work(4, 150.0), work(5, 60.0)]
    sample_uploads = [
        upload(1, 1, "alice", "2023-01-01"),
        upload(2, 2, "carol", "2023-02-01"),  # copies of alice's track
        upload(3, 3, "dave", "2023-03-01"),
        upload(4, 4, "victim", "2023-06-01"),
        upload(5, 5, "thief", "2024-01-01"),
    ]
    in_victim = [both_ways(4, w, (20.0, 35.0), (0.0, 15.0), 150.0, 50.0) for w in (1, 2, 3)]
    copies = [both_ways(w, 1, (0.0, 50.0), (0.0, 50.0), 50.0, 50.0) for w in (2, 3)]
    trim = both_ways(5, 4, (0.0, 60.0), (60.0, 120.0), 60.0, 150.0)
    found = scans(
        (1, [in_victim[0][1], copies[0][1], copies[1][1]]),
        (2, [in_victim[1][1], copies[0][0]]),
        (3, [in_victim[2][1], copies[1][0]]),
        (4, [m for pair in in_victim for m in pair[:1]] + [trim[1]]),
        (5, [trim[0]]),
    )
    ranks = {r.uploader: r for r in report_of(sample, found, sample_uploads).uploaders}
    assert ranks["thief"].copies == 1

    mix = [work(6, 50.0), work(7, 150.0), work(8, 56.0)]
    mix_uploads = [
        upload(6, 6, "bob", "2023-01-01"),
        upload(7, 7, "dj", "2023-06-01"),
        upload(8, 8, "bob", "2024-01-01"),
    ]
    first = both_ways(7, 6, (20.0, 70.0), (0.0, 50.0), 150.0, 50.0)
    second = both_ways(7, 8, (70.0, 126.0), (0.0, 56.0), 150.0, 56.0)
    found = scans((6, [first[1]]), (7, [first[0], second[0]]), (8, [second[1]]))
    ranks = {r.uploader: r for r in report_of(mix, found, mix_uploads).uploaders}
    assert ranks["bob"].copies == 0 and ranks["bob"].undetermined == 1
