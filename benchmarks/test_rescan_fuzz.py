"""The rescan fuzz's generator and checker (benchmarks/rescan_fuzz.py), on a few seeds."""

from __future__ import annotations

from audiodup.rescan import WorkScan, build_report
from audiodup.results import WorkInfo
from audiodup.settings import DEFAULT_SETTINGS
from benchmarks.rescan_fuzz import (
    Catalog,
    FuzzWork,
    _upload,
    evidence,
    generate,
    innocent_accusations,
    run,
)


def test_with_exact_evidence_every_other_accounts_work_is_named() -> None:
    result = run(60, missed=0.0, undated_originals=0.0, ties=False)
    assert result["other_accounts_works"] > 60
    assert result["other_accounts_works_named"] == result["other_accounts_works"]


def test_missed_pairs_are_missed_and_weak_ones_only_suspect() -> None:
    catalog = generate(7, missed=0.3)
    pairs = {p.work_ids for p in catalog.report.suspect_pairs}
    assert catalog.missed and catalog.weak
    assert all(tuple(w) not in pairs for w in catalog.missed)
    assert {tuple(w) for w in catalog.weak} <= pairs


def test_the_checker_names_an_owner_made_a_copier_by_the_date_rule() -> None:
    """The owner's undated original and a thief's dated copy: by the documented rule (an undated
    upload never counts as the first) the owner is the copier, which the checker counts."""
    works = [
        FuzzWork([(0, 0.0, 40.0, 1.0)], "original", "owner0", None, "upload", 0),
        FuzzWork([(0, 2.0, 40.0, 1.0)], "copy", "acct1", 300),
    ]
    a, b = works
    scans = {1: WorkScan(1, "file", (evidence(2, a, b, 60.0),))}
    scans[2] = WorkScan(2, "file", (evidence(1, b, a, 60.0),))
    infos = [
        WorkInfo(1, "/w/1.ogg", None, None, 40.0, "s1", ""),
        WorkInfo(2, "/w/2.ogg", None, None, 38.0, "s2", ""),
    ]
    uploads = [
        _upload(1, 1, "owner0", None, "upload"),
        _upload(2, 2, "acct1", "2020-01-01", "upload"),
    ]
    report = build_report(infos, scans, DEFAULT_SETTINGS, uploads=uploads)
    found = innocent_accusations(Catalog(works, report))
    assert "cluster [1, 2] named by 2" in found
    assert "copier owner0 for own upload 1" in found


def test_a_mashup_shares_both_recordings_over_the_same_seconds() -> None:
    """A mashup plays two recordings at once: its evidence against each holds all its seconds,
    and against another mashup of the same two one section per shared stretch, once."""
    t1 = FuzzWork([(0, 0.0, 40.0, 1.0)], "original", "owner0", 0, "upload", 0)
    t2 = FuzzWork([(1, 0.0, 40.0, 1.0)], "original", "owner1", 10, "upload", 1)
    mix = FuzzWork([(0, 0.0, 40.0, 1.0)], "mashup", "acct2", 20, under=[(1, 0.0, 40.0, 1.0)])
    again = FuzzWork([(1, 0.0, 40.0, 1.0)], "mashup", "acct3", 30, under=[(0, 0.0, 40.0, 1.0)])
    for track in (t1, t2):
        found = evidence(1, mix, track, 60.0)
        assert found is not None and found.coverage_s == 40.0
    assert evidence(2, t1, t2, 60.0) is None
    assert len(evidence(4, mix, again, 60.0).sections) == 1


def test_mashups_are_generated_when_asked_only() -> None:
    kinds = {w.kind for seed in range(40) for w in generate(seed, 0.0, mashups=0.5).works}
    assert "mashup" in kinds
    assert all(w.kind != "mashup" for seed in range(40) for w in generate(seed, 0.0).works)


def test_undated_originals_recorded_as_they_were_uploaded_are_not_made_copiers() -> None:
    """An undated original recorded on the day it was uploaded came before every copy dated
    later: with the catalog recording uploads as they come, far fewer owners are counted
    copiers than with every upload recorded after them all."""
    imported = run(300, missed=0.0, undated_originals=0.3, ties=False)
    as_they_came = run(300, 0.0, 0.3, False, recorded_as_uploaded=True)
    assert imported["items"]["copier"] > 10
    assert as_they_came["items"].get("copier", 0) < imported["items"]["copier"] / 4
    assert as_they_came["other_accounts_works_named"] > imported["other_accounts_works_named"]
