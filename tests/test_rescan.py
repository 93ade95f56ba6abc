"""Tests for audiodup.rescan and ``audiodup rescan``: planted clusters with no false pair,
originals and alterations, uploader ranking, resumption after SIGKILL, incremental runs, Dask."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from filelock import FileLock
from rescan_fixtures import (
    EXPECTED_CLUSTERS,
    PLANTED,
    UNRELATED,
    clusters_by_name,
    expected_pairs,
    write_metadata,
    write_planted_audio,
)
from typer.testing import CliRunner

import audiodup.cli
from audiodup import Catalog, CatalogError
from audiodup.cli import app
from audiodup.metadata import metadata_for_paths, read_metadata
from audiodup.rescan import (
    LOCK_FILE,
    RESULTS_FILE,
    WorkScan,
    build_report,
    describe_alteration,
    load_report,
    report_to_dict,
    rescan,
    run_rescan,
)
from audiodup.results import Match, Section, WorkInfo
from audiodup.settings import DEFAULT_SETTINGS

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_CATALOG = ROOT / "fixtures" / "audio" / "catalog"


# -- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def planted_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_planted_audio(tmp_path_factory.mktemp("planted") / "audio")


@pytest.fixture(scope="module")
def metadata_csv(planted_files: dict[str, Path], tmp_path_factory) -> Path:
    return write_metadata(tmp_path_factory.mktemp("meta") / "works.csv", planted_files)


def add_with_metadata(root: Path, paths: list[Path], csv_path: Path) -> None:
    matched, _ = metadata_for_paths(read_metadata(csv_path), paths)
    with Catalog.open(root) as catalog:
        results = catalog.add_paths(paths, metadata=matched)
    assert all(r.status == "added" for r in results), results


@pytest.fixture(scope="module")
def pristine_planted(planted_files: dict[str, Path], metadata_csv: Path, tmp_path_factory) -> Path:
    """The planted catalog, never rescanned (tests copy it)."""
    root = tmp_path_factory.mktemp("planted-catalog") / "catalog"
    add_with_metadata(root, [FIXTURE_CATALOG, planted_files["w00_slow.wav"].parent], metadata_csv)
    return root


def copy_catalog(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest)
    return dest


@pytest.fixture(scope="module")
def planted_report(pristine_planted: Path, tmp_path_factory):
    root = copy_catalog(pristine_planted, tmp_path_factory.mktemp("rescanned") / "catalog")
    with Catalog.open(root, create=False) as catalog:
        report = rescan(catalog, workers=1)
    return report


def comparable(report) -> dict:
    """The JSON report without the catalog's own path (copies of a catalog live elsewhere)."""
    data = report_to_dict(report)
    data.pop("catalog")
    return data


def names(report) -> dict[int, str]:
    return {m.work_id: Path(m.path).name for c in report.clusters for m in c.members}


def pair_names(report, pairs) -> set[tuple[str, str]]:
    return {tuple(sorted((Path(p.query_path).name, Path(p.evidence.path).name))) for p in pairs}


# -- the planted catalog ---------------------------------------------------------------------
def test_planted_clusters_are_found_with_no_false_pair(planted_report) -> None:
    report = planted_report
    assert report.works == report.scanned == 6 + len(PLANTED) + len(UNRELATED)
    assert report.unscanned == () and report.errors == () and report.fallbacks == ()
    assert sorted(clusters_by_name(report), key=sorted) == sorted(EXPECTED_CLUSTERS, key=sorted)
    assert pair_names(report, report.pairs) == expected_pairs()
    within = expected_pairs()
    assert not [p for p in report.suspect_pairs if pair_names(report, [p]) - within], (
        "a suspect pair joins works of different clusters"
    )
    for pair in report.pairs:
        assert pair.label == "duplicate" and pair.found_both_ways
        assert pair.work_ids[0] < pair.work_ids[1]
        assert pair.evidence.work_id == pair.reference_work_id != pair.query_work_id
        assert pair.query_source == "file"


def test_originals_and_alterations_follow_upload_dates(planted_report) -> None:
    by_name = {p.name: p for p in PLANTED}
    for cluster in planted_report.clusters:
        members = {m.work_id: m for m in cluster.members}
        original = members[cluster.original_work_id]
        assert original.upload_id == cluster.original_upload_id
        assert Path(original.path).suffix == ".ogg", "the 2020 upload is the original"
        assert cluster.original_reason == f"earliest uploaded_at ({original.uploaded_at})"
        assert cluster.caveats == ()
        assert {a.work_id for a in cluster.alterations} == set(members) - {cluster.original_work_id}
        assert {m.relation for m in cluster.members if m is not original} == {"copy_of"}
        for alteration in cluster.alterations:
            planted = by_name[Path(members[alteration.work_id].path).name]
            assert alteration.relative_to == cluster.original_work_id
            assert alteration.via == (cluster.original_work_id, alteration.work_id)
            assert alteration.tempo_ratio == pytest.approx(planted.tempo_ratio, rel=0.02)
            assert alteration.pitch_shift_semitones == pytest.approx(
                planted.pitch_shift_semitones, abs=0.25
            )
    speed = next(
        a
        for c in planted_report.clusters
        for a in c.alterations
        if Path(next(m.path for m in c.members if m.work_id == a.work_id)).name == "w01_speed.wav"
    )
    assert "resampled" in speed.description


def test_members_carry_metadata(planted_report) -> None:
    member = next(
        m for c in planted_report.clusters for m in c.members if Path(m.path).name == "work_00.ogg"
    )
    assert (member.title, member.uploader, member.uploaded_at) == (
        "Original 0",
        "label",
        "2020-01-01",
    )
    assert member.extra["territory"] == "BR" and member.external_id == "L-0"
    assert (member.role, member.relation) == ("upload", "original")


def test_uploaders_ranked_by_copies_of_others_work(planted_report) -> None:
    ranks = {u.uploader: u for u in planted_report.uploaders}
    order = [u.uploader for u in planted_report.uploaders]
    assert order[:2] == ["ring", "solo"]
    ring, solo, label = ranks["ring"], ranks["solo"], ranks["label"]
    # ring: three copies among five uploads (two of its own synthetic works are unrelated)
    assert (ring.uploads, ring.copies, ring.share) == (5, 3, pytest.approx(0.6))
    names_by_id = {
        m.upload_id: Path(m.path).name for c in planted_report.clusters for m in c.members
    }
    assert {names_by_id[u] for u in ring.copy_upload_ids} == {
        "w00_slow.wav",
        "w00_up2.wav",
        "w01_speed.wav",
    }
    copies_s = sum(
        m.duration_s
        for c in planted_report.clusters
        for m in c.members
        if m.upload_id in ring.copy_upload_ids
    )
    assert ring.copies_duration_s == pytest.approx(copies_s)
    assert (solo.uploads, solo.copies, solo.share) == (1, 1, 1.0)
    # label's originals: work_00 (copied twice), work_01 and work_02 are copied
    assert (label.copies, label.originals_copied, label.uploads) == (0, 3, 6)
    assert "indie" not in ranks, "an uploader in no cluster is not ranked"


# -- hard copies: each work screened against the rest of the catalog --------------------------
def _speed(y, ratio: float):
    from fractions import Fraction

    from scipy.signal import resample_poly

    r = Fraction(ratio).limit_denominator(100)
    return resample_poly(y, r.denominator, r.numerator).astype("float32")


def _slowed_reverb(y, ratio: float, sr: int):
    import pedalboard

    room = pedalboard.Pedalboard([pedalboard.Reverb(room_size=0.8, wet_level=0.5)])
    return room(_speed(y, ratio)[None, :], sr)[0]


def test_hard_copies_inside_the_catalog_are_found_past_their_own_line(tmp_path: Path) -> None:
    """Slowed + reverb and half-speed copies need the chroma and peak checks. A work screened
    against a catalog that holds it gets its own line first, decisive, which ends the look
    before those checks: such copies went unseen from both sides. Screened without itself
    (``LoadedIndexes.without``), each copy is a duplicate of its original, and unrelated works
    stay unpaired."""
    import soundfile as sf

    from audiodup.rescan.screen import work_query
    from audiodup.synth import synthesize_work
    from audiodup.verdict import decide

    sr = 22050
    folder = tmp_path / "audio"
    folder.mkdir()
    copies = {}
    for source, name, make in [
        ("work_03", "w03_slowed_reverb.wav", lambda y: _slowed_reverb(y, 0.8, sr)),
        ("work_03", "w03_half_speed.wav", lambda y: _speed(y, 0.5)),
        ("work_04", "w04_slowed_reverb.wav", lambda y: _slowed_reverb(y, 0.7, sr)),
    ]:
        y, rate = sf.read(FIXTURE_CATALOG / f"{source}.ogg", dtype="float32")
        assert rate == sr
        sf.write(folder / name, make(y), sr)
        copies[name] = f"{source}.ogg"
    for seed in (211, 212):
        sf.write(folder / f"synth_{seed}.wav", synthesize_work(seed, 30.0, sr), sr)
    with Catalog.open(tmp_path / "catalog") as catalog:
        assert all(r.status == "added" for r in catalog.add_paths([FIXTURE_CATALOG, folder]))
        by_name = {Path(w.path).name: w.work_id for w in catalog.works()}
        # the old way: screened against the whole catalog, its own match dropped afterwards;
        # only the original's hash line to its half-speed copy (tempo 2) is decisive beside its
        # own, since the first line's slope is scanned (match._scanned_slope)
        for name, source in copies.items():
            for query_name, other in ((name, source), (source, name)):
                query = work_query(catalog, by_name[query_name]).fingerprint
                assert by_name[query_name] == catalog.match_fingerprint(query)[0].work_id
                found = [m for m in catalog.match_fingerprint(query) if m.work_id == by_name[other]]
                if (query_name, other) == ("work_03.ogg", "w03_half_speed.wav"):
                    assert decide(found, catalog.settings) == "duplicate"
                    assert found[0].tempo_ratio == pytest.approx(2.0, rel=0.01)
                else:
                    assert decide(found, catalog.settings) != "duplicate", (query_name, other)
        report = rescan(catalog, workers=1)
    assert report.errors == () and report.scanned == len(by_name)
    expected = {tuple(sorted(pair)) for pair in copies.items()}
    assert pair_names(report, report.pairs) == expected
    by_query = {Path(p.query_path).name: p.evidence for p in report.pairs}
    ratio = {"w03_slowed_reverb.wav": 0.8, "w03_half_speed.wav": 0.5, "w04_slowed_reverb.wav": 0.7}
    for name, evidence in by_query.items():
        if name in ratio:  # found from the copy's side: tempo of the copy over the original
            assert evidence.tempo_ratio == pytest.approx(ratio[name], rel=0.03), name


def test_a_work_read_from_its_file_takes_the_further_looks_of_an_upload(tmp_path: Path) -> None:
    """Excerpts of 3 and 4 s of every fixture work inside the catalog. In one look the 4-s
    excerpt of work_02 is only ``suspect`` from either side; the other hop phases an upload this
    short is looked at in make it a duplicate. A work screened from its stored fingerprint has
    no audio for further looks. Every duplicate pair joins an excerpt with its own work."""
    import soundfile as sf

    from audiodup.audio import load_audio
    from audiodup.rescan.screen import screen_work, work_query
    from audiodup.verdict import decide

    folder = tmp_path / "audio"
    folder.mkdir()
    with Catalog.open(tmp_path / "catalog") as catalog:
        rate = catalog.settings.sample_rate_hz
        for i in range(6):
            samples = load_audio(FIXTURE_CATALOG / f"work_0{i}.ogg", catalog.settings).samples
            for length in (3, 4):
                start = (7 + i) * rate
                excerpt = samples[start : start + length * rate]
                sf.write(folder / f"excerpt{length}_work_0{i}.wav", excerpt, rate)
        assert all(r.status == "added" for r in catalog.add_paths([FIXTURE_CATALOG, folder]))
        ids = {Path(w.path).name: w.work_id for w in catalog.works()}
        pair = (ids["work_02.ogg"], ids["excerpt4_work_02.wav"])
        for work_id, other in (pair, pair[::-1]):
            query = work_query(catalog, work_id)
            assert query.source == "file" and query.view is not None
            one_look = catalog.match_fingerprint(query.fingerprint, without=(work_id,))
            found = [m for m in one_look if m.work_id == other]
            assert decide(found, catalog.settings) == "suspect", work_id
        scan = screen_work(catalog, pair[1])
        found = [m for m in scan.matches if m.work_id == pair[0]]
        assert decide(found, catalog.settings) == "duplicate"
        stored = work_query(catalog, pair[1], file_problem="gone")
        assert stored.source == "stored_fingerprint" and stored.view is None
        report = rescan(catalog, workers=1)
    found = pair_names(report, report.pairs)
    assert ("excerpt4_work_02.wav", "work_02.ogg") in found
    assert all(a.endswith(b.replace(".ogg", ".wav")) for a, b in found), found


def test_two_2x_copies_do_not_hide_their_original_from_each_other(tmp_path: Path) -> None:
    """Two 2x time-stretches of one work (Rubber Band through pedalboard, librosa's phase
    vocoder) find each other on the first look, decisive; the original only shows 2x slower.
    An upload stops at its first duplicate, so screened that way the original and the second
    copy are no duplicate of each other from either side. A rescan takes every look: all three
    pairs are found, each at its tempo, and the five unrelated fixture works stay unpaired."""
    import librosa
    import pedalboard
    import soundfile as sf

    from audiodup.rescan.screen import work_query
    from audiodup.verdict import decide

    folder = tmp_path / "audio"
    folder.mkdir()
    y, sr = sf.read(FIXTURE_CATALOG / "work_03.ogg", dtype="float32")
    sf.write(folder / "rubberband_2x.wav", pedalboard.time_stretch(y[None, :], sr, 2.0)[0], sr)
    sf.write(folder / "vocoder_2x.wav", librosa.effects.time_stretch(y, rate=2.0), sr)
    with Catalog.open(tmp_path / "catalog") as catalog:
        assert all(r.status == "added" for r in catalog.add_paths([FIXTURE_CATALOG, folder]))
        ids = {Path(w.path).name: w.work_id for w in catalog.works()}
        original, second = ids["work_03.ogg"], ids["vocoder_2x.wav"]
        for work_id, other in ((original, second), (second, original)):
            query = work_query(catalog, work_id)
            found = catalog.match_fingerprint(query.fingerprint, query.view, without=(work_id,))
            pair = [m for m in found if m.work_id == other]  # as an upload is screened
            assert decide(pair, catalog.settings) != "duplicate", work_id
        report = rescan(catalog, workers=1)
    assert report.errors == ()
    names = ("rubberband_2x.wav", "vocoder_2x.wav", "work_03.ogg")
    assert pair_names(report, report.pairs) == {(a, b) for a in names for b in names if a < b}
    assert all(p.label == "duplicate" for p in report.pairs)
    for pair in report.pairs:
        copy_is_query = Path(pair.query_path).name.endswith("_2x.wav")
        to_original = "work_03.ogg" in (Path(pair.query_path).name, Path(pair.evidence.path).name)
        expected = (2.0 if copy_is_query else 0.5) if to_original else 1.0
        assert pair.evidence.tempo_ratio == pytest.approx(expected, rel=0.03), pair


def test_a_local_rescan_reads_the_catalog_files_ahead(
    pristine_planted: Path, tmp_path: Path, monkeypatch
) -> None:
    warmed = []
    monkeypatch.setattr(Catalog, "warm_files", lambda self: warmed.append(self.root))
    root = copy_catalog(pristine_planted, tmp_path / "catalog")
    with Catalog.open(root, create=False) as catalog:
        run_rescan(catalog, workers=1)
        assert warmed == [catalog.root]
        run_rescan(catalog, workers=1, new_only=True)  # nothing to screen: nothing to read
        assert warmed == [catalog.root]


# -- the report from per-work results (pure) --------------------------------------------------
def work(work_id: int, **metadata) -> WorkInfo:
    return WorkInfo(
        work_id, f"/w/{work_id}.wav", None, None, 30.0, f"sha{work_id}", "2024", metadata
    )


def match(work_id: int, score: float, tempo: float = 1.0, pitch: float = 0.0) -> Match:
    return Match(
        work_id=work_id,
        path=f"/w/{work_id}.wav",
        title=None,
        relation="same_recording",
        score=score,
        false_match_probability=10.0**-score,
        tempo_ratio=tempo,
        pitch_shift_semitones=pitch,
        query_start_s=0.0,
        query_end_s=30.0,
        ref_start_s=0.0,
        ref_end_s=30.0 * tempo,
        coverage=1.0,
        coverage_s=30.0,
        matched_hashes=100,
        chroma_similarity=None,
        sections=(Section(0.0, 30.0, 0.0, 30.0 * tempo, 100),),
    )


def scan(work_id: int, *matches: Match) -> WorkScan:
    return WorkScan(work_id, "file", tuple(matches))


def test_symmetric_pairs_keep_the_stronger_direction() -> None:
    works = [work(1), work(2), work(3)]
    scans = {
        1: scan(1, match(2, 40.0, tempo=0.8)),
        2: scan(2, match(1, 90.0, tempo=1.25)),
        3: scan(3),
    }
    report = build_report(works, scans, DEFAULT_SETTINGS)
    (pair,) = report.pairs
    assert pair.work_ids == (1, 2) and pair.found_both_ways
    assert (pair.query_work_id, pair.reference_work_id, pair.evidence.score) == (2, 1, 90.0)


def test_a_partial_line_from_one_side_does_not_hide_the_fuller_one_from_the_other() -> None:
    """Work 2 (30 s) is work 1 (30 s) sped up; 2's own screening saw only 8 s of it (a
    partial line, the more certain one), 1's screening all of it. The share of 2 that 1
    explains is the larger of the two: 2 is a copy of 1, not a work holding an excerpt of it."""
    from dataclasses import replace

    partial = replace(
        match(1, 90.0, tempo=1.08),
        query_start_s=11.0,
        query_end_s=19.0,
        coverage=8.0 / 30.0,
        coverage_s=8.0,
        sections=(Section(11.0, 19.0, 11.88, 20.52, 60),),
    )
    works = [work(1, uploaded_at="2020-01-01"), work(2, uploaded_at="2021-01-01")]
    report = build_report(
        works, {1: scan(1, match(2, 40.0, tempo=0.926)), 2: scan(2, partial)}, DEFAULT_SETTINGS
    )
    (pair,) = report.pairs
    assert pair.evidence.score == 90.0  # the stronger direction's evidence
    assert pair.covered_share[1] == pytest.approx(0.926)  # from 1's screening, not 8 / 30
    (cluster,) = report.clusters
    roles = {m.work_id: m.relation for m in cluster.members}
    assert roles == {1: "original", 2: "copy_of"}


def test_transforms_compose_along_the_cluster_when_not_matched_directly() -> None:
    works = [
        work(1, uploaded_at="2020-01-01"),
        work(2, uploaded_at="2021-01-01"),
        work(3, uploaded_at="2022-01-01"),
    ]
    # 2 is 1 slowed to 0.8; 3 is 2 pitched up 2 semitones; 1 and 3 never matched directly
    scans = {
        1: scan(1),
        2: scan(2, match(1, 80.0, tempo=0.8)),
        3: scan(3, match(2, 60.0, pitch=2.0)),
    }
    (cluster,) = build_report(works, scans, DEFAULT_SETTINGS).clusters
    assert cluster.original_work_id == 1
    composed = next(a for a in cluster.alterations if a.work_id == 3)
    assert composed.via == (1, 2, 3)
    assert composed.tempo_ratio == pytest.approx(0.8)
    assert composed.pitch_shift_semitones == pytest.approx(2.0)
    # seen from the other side: the evidence of 2 -> 1 inverts to 1 -> 2
    direct = next(a for a in cluster.alterations if a.work_id == 2)
    assert (direct.tempo_ratio, direct.via) == (pytest.approx(0.8), (1, 2))


@pytest.mark.parametrize(
    ("dates", "reason"),
    [
        ({}, "undetermined: no reference, no upload dates"),
        ({1: "2020-01-01", 2: "2020-01-01T00:00:00+00:00"}, "undetermined: works 1, 2 share"),
    ],
)
def test_original_is_never_guessed(dates: dict[int, str], reason: str) -> None:
    works = [work(w, **({"uploaded_at": dates[w]} if w in dates else {})) for w in (1, 2)]
    scans = {1: scan(1, match(2, 50.0, tempo=1.1)), 2: scan(2)}
    report = build_report(works, scans, DEFAULT_SETTINGS)
    (cluster,) = report.clusters
    assert cluster.original_work_id is None and cluster.original_upload_id is None
    assert cluster.original_reason.startswith(reason)
    assert {m.relation for m in cluster.members} == {"undetermined"}
    (link,) = report.links
    assert link.kind == "same_recording" and link.direction.startswith("undetermined")
    (alteration,) = cluster.alterations
    assert alteration.relative_to == 1 and alteration.tempo_ratio == pytest.approx(1 / 1.1)
    assert all(u.copies == 0 for u in report.uploaders)
    as_json = report_to_dict(report)
    assert as_json["clusters"][0]["original_upload_id"] is None


def test_one_missing_date_does_not_clear_everybody() -> None:
    """Issue #13: an undated copy used to make every original unknown and every count 0."""
    works = [
        work(1, uploader="label", uploaded_at="2020-01-01"),
        work(2, uploader="ring"),
        work(3, uploader="ring", uploaded_at="2021-01-01"),
    ]
    scans = {1: scan(1), 2: scan(2, match(1, 50.0, tempo=1.1)), 3: scan(3, match(1, 60.0))}
    report = build_report(works, scans, DEFAULT_SETTINGS)
    (cluster,) = report.clusters
    assert cluster.original_work_id == 1
    assert cluster.caveats == (
        "no upload date for upload 2: an undated upload never counts as the first",
    )
    ring = next(u for u in report.uploaders if u.uploader == "ring")
    assert (ring.copies, ring.copy_upload_ids) == (2, (2, 3))


def test_weak_matches_are_suspect_pairs_not_clusters() -> None:
    weak = match(2, 4.0)  # false-match probability 1e-4: suspect
    report = build_report([work(1), work(2)], {1: scan(1, weak), 2: scan(2)}, DEFAULT_SETTINGS)
    assert report.pairs == () and report.clusters == ()
    assert [p.work_ids for p in report.suspect_pairs] == [(1, 2)]


def test_results_of_removed_works_are_ignored() -> None:
    report = build_report(
        [work(1)], {1: scan(1, match(2, 80.0)), 2: scan(2, match(1, 80.0))}, DEFAULT_SETTINGS
    )
    assert report.pairs == () and report.works == report.scanned == 1


@pytest.mark.parametrize(
    ("tempo", "pitch", "words"),
    [
        (1.0, 0.0, "same tempo and pitch"),
        (0.85, 0.0, "tempo x0.850 (slower), pitch kept"),
        (1.0, -3.0, "tempo kept, pitch -3.0 st"),
        (1.25, 12 * math.log2(1.25), "sped up x1.250 like a resampled copy"),
    ],
)
def test_describe_alteration(tempo: float, pitch: float, words: str) -> None:
    assert words in describe_alteration(tempo, pitch)


# -- file fallback, resumption, incremental runs ----------------------------------------------
def test_missing_file_falls_back_to_the_stored_fingerprint(tmp_path: Path, planted_files) -> None:
    copy = tmp_path / "gone.wav"
    shutil.copyfile(planted_files["w01_speed.wav"], copy)
    with Catalog.open(tmp_path / "catalog") as catalog:
        catalog.add_paths([FIXTURE_CATALOG / "work_01.ogg", copy])
        copy.unlink()
        report = rescan(catalog)
    assert [n.path for n in report.fallbacks] == [str(copy)]
    assert "screened with the stored fingerprint" in report.fallbacks[0].note
    (cluster,) = report.clusters
    assert len(cluster.members) == 2
    (pair,) = report.pairs
    assert pair.found_both_ways  # the stored fingerprint still finds the original
    gone_id = next(m.work_id for m in cluster.members if m.path == str(copy))
    if pair.query_work_id == gone_id:
        assert pair.query_source == "stored_fingerprint" and "file unavailable" in pair.note


def test_a_work_that_times_out_is_screened_with_its_stored_fingerprint(
    tmp_path: Path, planted_files
) -> None:
    with Catalog.open(tmp_path / "catalog") as catalog:
        catalog.add_paths([FIXTURE_CATALOG / "work_01.ogg", planted_files["w01_speed.wav"]])
        run_rescan(catalog, timeout_s=0.01)  # no work decodes that fast: every one runs over
        report = load_report(catalog)
    assert len(report.fallbacks) == 2 and report.errors == ()
    assert all("timed out after 0.01 s" in n.note for n in report.fallbacks)
    (cluster,) = report.clusters
    assert len(cluster.members) == 2


def results_count(root: Path) -> int:
    path = root / RESULTS_FILE
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=1.0) as db:
            return db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.OperationalError:  # the table is not there yet
        return 0


def test_killed_rescan_resumes_to_the_uninterrupted_result(
    pristine_planted: Path, planted_report, tmp_path: Path
) -> None:
    root = copy_catalog(pristine_planted, tmp_path / "catalog")
    total = planted_report.works
    process = subprocess.Popen(
        [sys.executable, "-m", "audiodup", "rescan", "--db", str(root), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the pool's workers die with it
    )
    try:
        deadline = time.monotonic() + 120
        while results_count(root) < 2 and process.poll() is None:
            assert time.monotonic() < deadline, "the rescan stored no result"
            time.sleep(0.01)
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    done = results_count(root)
    assert process.returncode == -signal.SIGKILL, "the rescan finished before it could be killed"
    assert 2 <= done < total

    result = CliRunner().invoke(
        app, ["rescan", "--db", str(root), "--out", str(tmp_path / "r.json")]
    )
    assert result.exit_code == 1, result.output  # duplicates found
    assert f"resuming: {done} of {total} works already screened" in result.output
    assert f"screened {total - done} works now" in result.output
    resumed = json.loads((tmp_path / "r.json").read_text())
    resumed.pop("catalog")
    assert resumed == comparable(planted_report)


def test_new_only_after_adding_works_equals_a_full_rescan(
    planted_files, metadata_csv: Path, tmp_path: Path
) -> None:
    root = tmp_path / "catalog"
    base = [FIXTURE_CATALOG] + [planted_files[n] for n in UNRELATED]
    add_with_metadata(root, base, metadata_csv)
    with Catalog.open(root, create=False) as catalog:
        first = run_rescan(catalog)
        assert first.screened == 9 and load_report(catalog).clusters == ()
        added_before = {w.work_id for w in catalog.works()}
    add_with_metadata(root, [planted_files[p.name] for p in PLANTED], metadata_csv)
    with Catalog.open(root, create=False) as catalog:
        new_ids = {w.work_id for w in catalog.works()} - added_before
        since = min(w.added_at for w in catalog.works() if w.work_id in new_ids)
        incremental = run_rescan(catalog, new_only=True)
        assert (incremental.screened, incremental.mode) == (len(PLANTED), "new")
        merged = load_report(catalog)
        again = run_rescan(catalog, new_only=True)
        assert (again.run_id, again.screened) == (None, 0), "nothing is new any more"
        by_date = run_rescan(catalog, since=since)
        assert by_date.screened == len(PLANTED)  # added_at of the base works is earlier or equal
    full_root = copy_catalog(root, tmp_path / "full")
    (full_root / RESULTS_FILE).unlink()
    with Catalog.open(full_root, create=False) as catalog:
        full = rescan(catalog)
    assert sorted(clusters_by_name(merged), key=sorted) == sorted(EXPECTED_CLUSTERS, key=sorted)
    assert [c.work_ids for c in merged.clusters] == [c.work_ids for c in full.clusters]
    assert [(c.original_upload_id, c.original_reason) for c in merged.clusters] == [
        (c.original_upload_id, c.original_reason) for c in full.clusters
    ]
    assert [(p.work_ids, p.label) for p in merged.pairs] == [
        (p.work_ids, p.label) for p in full.pairs
    ]
    assert [p.work_ids for p in merged.suspect_pairs] == [p.work_ids for p in full.suspect_pairs]
    for a, b in zip(
        [a for c in merged.clusters for a in c.alterations],
        [a for c in full.clusters for a in c.alterations],
        strict=True,
    ):
        # the scores differ slightly (the earlier results saw a smaller catalog), not the transform
        assert (a.work_id, a.relative_to) == (b.work_id, b.relative_to)
        assert a.tempo_ratio == pytest.approx(b.tempo_ratio, rel=0.005)
        assert a.pitch_shift_semitones == pytest.approx(b.pitch_shift_semitones, abs=0.05)
    assert comparable(merged)["uploaders"] == comparable(full)["uploaders"]


def test_dask_local_cluster_gives_the_local_result(
    pristine_planted: Path, planted_report, tmp_path: Path
) -> None:
    distributed = pytest.importorskip("distributed")
    root = copy_catalog(pristine_planted, tmp_path / "catalog")
    cli_root = copy_catalog(pristine_planted, tmp_path / "cli-catalog")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        with Catalog.open(root, create=False) as catalog:
            summary = run_rescan(catalog, dask=cluster.scheduler_address)
            report = load_report(catalog)
        result = CliRunner().invoke(
            app,
            [
                "rescan",
                "--db",
                str(cli_root),
                "--dask",
                cluster.scheduler_address,
                "--out",
                str(tmp_path / "r.json"),
            ],
        )
    assert summary.screened == planted_report.works
    assert comparable(report) == comparable(planted_report)
    assert result.exit_code == 1, result.output
    from_cli = json.loads((tmp_path / "r.json").read_text())
    from_cli.pop("catalog")
    assert from_cli == comparable(planted_report)


def test_a_second_rescan_of_the_same_catalog_is_refused(tmp_path: Path) -> None:
    with Catalog.open(tmp_path / "catalog") as catalog:
        catalog.add_paths([FIXTURE_CATALOG / "work_00.ogg"])
        with (
            FileLock(str(tmp_path / "catalog" / LOCK_FILE)),
            pytest.raises(CatalogError, match="another rescan"),
        ):
            run_rescan(catalog)


# -- the command line -------------------------------------------------------------------------
def test_rescan_cli_writes_csv_and_json(pristine_planted: Path, tmp_path: Path) -> None:
    root = copy_catalog(pristine_planted, tmp_path / "catalog")
    runner = CliRunner()
    result = runner.invoke(
        app, ["rescan", "--db", str(root), "--workers", "2", "--out", str(tmp_path / "r.csv")]
    )
    assert result.exit_code == 1, result.output
    # the two copies of work_00 are linked too, as same_recording: neither is the other's source
    assert "3 clusters (0 without a determined original), 4 copy_of" in " ".join(
        result.output.split()
    )
    assert "5 duplicate pairs, 0 suspect pairs" in result.output
    rows = (tmp_path / "r.csv").read_text().splitlines()
    assert rows[0].startswith(
        "label,relation,derived_work_id,source_work_id,direction,caveats,cluster_id,"
        "cluster_original,query_work_id,query_path"
    )
    assert sum(r.startswith("duplicate,copy_of,") for r in rows) == 4
    assert sum(r.startswith("duplicate,same_recording,") for r in rows) == 1
    result = runner.invoke(
        app, ["rescan", "--db", str(root), "--new-only", "--out", str(tmp_path / "r.json")]
    )
    assert result.exit_code == 1 and "nothing new to screen" in result.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert {"clusters", "links", "pairs", "suspect_pairs", "uploaders"} <= set(data)
    assert all(
        {"upload_id", "work_id", "path", "role", "relation", "isrc"} <= set(m)
        for c in data["clusters"]
        for m in c["members"]
    )
    assert {k["kind"] for k in data["links"]} == {"copy_of", "same_recording"}
    evidence = data["pairs"][0]["evidence"]
    for key in (
        "tempo_ratio",
        "pitch_shift_semitones",
        "query_start_s",
        "ref_end_s",
        "coverage",
        "score",
        "false_match_probability",
    ):
        assert key in evidence


@pytest.mark.parametrize(
    "args",
    [["--new-only", "--since", "2024-01-01"], ["--since", "last tuesday"], ["--out", "r.txt"]],
)
def test_rescan_cli_usage_errors(
    catalog_copy: Path, args: list[str], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setattr(sys, "argv", ["audiodup", "rescan", "--db", str(catalog_copy), *args])
    with pytest.raises(SystemExit) as info:
        audiodup.cli.main()
    assert info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err
    assert not (catalog_copy / RESULTS_FILE).exists()


@pytest.mark.parametrize(
    ("source", "stored", "at_cap", "listed"),
    [
        ("file", True, True, True),
        ("file", False, True, False),  # a file of exactly the cap's length, read whole
        ("file", None, True, True),  # stored by a version that did not record it
        ("file", None, False, False),
        ("stored_fingerprint", False, True, True),  # not read: only the length is known
        ("stored_fingerprint", None, False, False),
    ],
)
def test_a_work_is_partly_scanned_as_its_decoding_said_else_by_its_stored_length(
    source: str, stored: bool | None, at_cap: bool, listed: bool
) -> None:
    """The stored form keeps the flag (``null`` when not known); the report trusts it for a
    work read from its file, and otherwise falls back to the stored length."""
    from audiodup.rescan.report import cut_short
    from audiodup.rescan.serialise import scan_from_json, scan_to_json

    scan = scan_from_json(scan_to_json(WorkScan(7, source, truncated=stored)))
    assert scan.truncated is stored
    cap = DEFAULT_SETTINGS.max_duration_s
    work = WorkInfo(7, "/w.flac", None, None, cap if at_cap else cap / 2, "0" * 64, "now")
    assert cut_short(scan, work, DEFAULT_SETTINGS) is listed


def test_a_stored_match_reads_back_as_written_nulls_and_all() -> None:
    """Every field that may be null (``matched_onsets``, ``tempo_drift``, ...) reads back null,
    not as NaN (the rescan page showed "from nan onsets"); a non-finite number reads back NaN."""
    import dataclasses

    from audiodup.rescan.serialise import scan_from_json, scan_to_json

    nulls = dataclasses.replace(match(2, 40.0), matched_peaks=None, matched_onsets=None)
    checked = dataclasses.replace(match(3, 30.0), matched_peaks=40, matched_onsets=9)
    back = scan_from_json(scan_to_json(scan(1, nulls, checked)))
    assert back.matches == (nulls, checked)
    assert back.matches[0].tempo_drift is None and back.matches[0].matched_onsets is None
    infinite = scan_from_json(scan_to_json(scan(1, dataclasses.replace(nulls, score=math.inf))))
    assert math.isnan(infinite.matches[0].score)


def test_a_stored_scan_without_the_flag_reads_back_as_not_known() -> None:
    from audiodup.rescan.serialise import scan_from_json

    old = {"work_id": 3, "query_source": "file", "matches": [], "note": None, "error": None}
    assert scan_from_json(json.dumps(old)).truncated is None


def test_a_resumed_run_also_screens_the_works_added_since_it_started(tmp_path: Path) -> None:
    """Killed, then an ``index add``, then a plain ``rescan``: the resumed run takes the new
    works too (it screened only the run's old targets and listed the new ones unscanned)."""
    from audiodup.rescan.store import RescanStore

    store = RescanStore(tmp_path, DEFAULT_SETTINGS)
    try:
        run_id, ids, done, resumed = store.open_run("all", None, lambda: [1, 2, 3])
        assert (ids, done, resumed) == ([1, 2, 3], set(), False)
        store.save(run_id, "sha1", WorkScan(1, "file", ()))
        again = store.open_run("all", None, lambda: [1, 2, 3, 4])
        assert again == (run_id, [1, 2, 3, 4], {1}, True)
        assert store.open_run("all", None, lambda: [1, 2, 3, 4])[1] == [1, 2, 3, 4]
    finally:
        store.close()
