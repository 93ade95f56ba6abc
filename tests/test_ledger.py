"""The upload ledger (issue #13): every submission is an upload record, content is stored once,
roles name the owner, metadata is changed with ``index update`` (all or nothing), ids follow
input order, and a catalog of the first layout gets its ledger without changing any id."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli_runner import run_main

from audiodup import Catalog
from audiodup.errors import MetadataError
from audiodup.ingest import source_path
from audiodup.metadata import read_metadata_update
from audiodup.owners import owner
from audiodup.results import UploadInfo
from audiodup.schema import validate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "audio"
CATALOG_DIR = FIXTURES / "catalog"
UPLOADS_DIR = FIXTURES / "uploads"


@pytest.fixture
def run(monkeypatch, capsys):
    """``run(*args)``: ``(exit code, stdout, stderr)`` of the console entry point."""
    return lambda *args: run_main([str(a) for a in args], monkeypatch, capsys)


def upload(upload_id: int, role: str = "upload", uploaded_at: str | None = None, **kw):
    return UploadInfo(
        upload_id=upload_id,
        work_id=kw.pop("work_id", 1),
        role=role,
        source_path=f"/music/{upload_id}.ogg",
        sha256="0" * 64,
        recorded_at=kw.pop("recorded_at", "2026-01-01T00:00:00+00:00"),
        uploaded_at=uploaded_at,
        **kw,
    )


# -- owners (pure) ---------------------------------------------------------------------------
def test_a_reference_names_the_work_whatever_the_dates() -> None:
    chosen, why = owner([upload(1, uploaded_at="2019-01-01"), upload(2, "reference", "2024-01-01")])
    assert chosen.upload_id == 2 and "reference" in why and "1 other upload" in why


def test_without_reference_the_earliest_dated_upload_names_it_and_undated_never_win() -> None:
    chosen, why = owner(
        [upload(1), upload(2, uploaded_at="2023-05-01"), upload(3, uploaded_at="2022-01-01")]
    )
    assert chosen.upload_id == 3 and "earliest dated upload (2022-01-01)" in why
    chosen, why = owner([upload(4), upload(5)])
    assert chosen.upload_id == 4 and "no upload dates" in why


def test_uploads_of_two_accounts_at_one_instant_are_named_as_tied() -> None:
    tied = [
        upload(1, uploaded_at="2021-05-05T10:00:00Z", uploader="alice"),
        upload(2, uploaded_at="2021-05-05T12:00:00+02:00", uploader="bob"),
    ]
    chosen, why = owner(tied)
    assert chosen.upload_id == 1
    assert "tied with upload 2 of another uploader" in why and "neither is the original" in why
    _, why = owner([upload(3, uploaded_at="2021-05-05T10:00:00Z", uploader="alice"), *tied[:1]])
    assert "tied" not in why  # one account's own audio twice


def test_a_date_after_the_upload_was_recorded_counts_as_its_recording() -> None:
    """An upload is uploaded no later than it is recorded: alice's, recorded first but dated 20
    hours ahead (within the day's slack for clocks ahead), lost her work to bob's identical
    upload recorded two seconds later and dated at its arrival (a red team)."""
    alice = upload(
        1,
        uploaded_at="2026-03-02T09:00:00Z",
        recorded_at="2026-03-01T13:00:00+00:00",
        uploader="alice",
    )
    bob = upload(
        2,
        uploaded_at="2026-03-01T13:00:02Z",
        recorded_at="2026-03-01T13:00:02+00:00",
        uploader="bob",
    )
    chosen, _ = owner([alice, bob])
    assert chosen.uploader == "alice"


def test_uploads_of_two_accounts_on_one_day_one_dated_by_the_day_are_tied() -> None:
    """A day (2024-03-01) is read as its first instant, but an upload at 08:00 that day is not
    after it: tied, not the later one."""
    day = upload(1, uploaded_at="2024-03-01", uploader="mallory")
    instant = upload(2, uploaded_at="2024-03-01T09:00:00+01:00", uploader="alice")
    _, why = owner([day, instant])
    assert "tied with upload 2 of another uploader" in why
    _, why = owner([day, upload(3, uploaded_at="2024-03-02T00:00:00Z", uploader="alice")])
    assert "tied" not in why


def test_a_stored_date_in_the_future_counts_as_no_date() -> None:
    """A date still to come (stored before index add refused it, or by a clock that ran ahead)
    would make its upload the earliest dated one: it counts as undated, a day's slack aside."""
    chosen, why = owner([upload(1, uploaded_at="2999-01-01"), upload(2, uploaded_at="2021-01-01")])
    assert chosen.upload_id == 2 and "earliest dated upload (2021-01-01)" in why
    chosen, why = owner([upload(3), upload(4, uploaded_at="2999-01-01T00:00:00Z")])
    assert chosen.upload_id == 3 and "no upload dates" in why
    tomorrow = (datetime.now(UTC) + timedelta(hours=20)).isoformat()
    later = (datetime.now(UTC) + timedelta(hours=22)).isoformat()  # recorded after that date
    chosen, _ = owner([upload(5, recorded_at=later), upload(6, uploaded_at=tomorrow)])
    assert chosen.upload_id == 6


def test_a_date_after_an_undated_upload_was_recorded_does_not_take_its_work() -> None:
    """A catalog added without dates, then the same audio recorded with a date (the service
    dates a screening key's upload by its arrival): the undated upload was uploaded before it
    was recorded, so before that date, and keeps naming the work (a review: any screening key
    took a work from the catalog of the README's first command so). A date before the
    undated upload was recorded still wins, as the dates of history backfilled do."""
    catalog = upload(1, recorded_at="2026-03-01T00:00:00+00:00", uploader="label")
    thief = upload(
        2,
        uploaded_at="2026-03-02T00:00:00Z",
        recorded_at="2026-03-02T00:00:01+00:00",
        uploader="thief",
    )
    chosen, why = owner([catalog, thief])
    assert chosen.upload_id == 1 and chosen.uploader == "label"
    assert "recorded before the earliest dated one (2026-03-02T00:00:00Z)" in why
    history = upload(3, uploaded_at="2019-05-01", uploader="artist")
    chosen, why = owner([catalog, thief, history])
    assert chosen.upload_id == 3 and "earliest dated upload (2019-05-01)" in why
    # references: the same rule within them; a reference still comes before any upload
    ref = upload(4, "reference", recorded_at="2026-02-01T00:00:00+00:00")
    late_ref = upload(5, "reference", "2026-02-05", recorded_at="2026-02-05T00:00:01+00:00")
    chosen, why = owner([thief, late_ref, ref])
    assert chosen.upload_id == 4 and "first recorded reference" in why


def test_verify_notes_stored_dates_in_the_future(ledger: Path, run) -> None:
    code, _, err = run("index", "verify", "--db", ledger)
    assert code == 0 and "in the future" not in err
    with sqlite3.connect(ledger / "catalog.sqlite") as db:
        db.execute("UPDATE uploads SET uploaded_at = '2999-01-01' WHERE upload_id IN (2, 3)")
    code, _, err = run("index", "verify", "--db", ledger)
    assert code == 0
    assert "2 live upload(s) have an uploaded_at in the future (upload 2: '2999-01-01')" in err


# -- adding: uploads and content ------------------------------------------------------------
def test_identical_reupload_by_another_account_is_recorded_with_its_metadata(
    tmp_path: Path,
) -> None:
    other = tmp_path / "ring" / "song.ogg"  # same base name as nothing; another account's file
    other.parent.mkdir()
    shutil.copyfile(CATALOG_DIR / "work_02.ogg", other)
    label = source_path(CATALOG_DIR / "work_02.ogg")
    metadata = {
        label: {"uploader": "label", "uploaded_at": "2020-01-01", "role": "reference"},
        source_path(other): {"uploader": "ring", "uploaded_at": "2024-06-01", "external_id": "R-9"},
    }
    with Catalog.open(tmp_path / "db") as catalog:
        first, second = catalog.add_paths([CATALOG_DIR / "work_02.ogg", other], metadata=metadata)
        assert (first.status, second.status) == ("added", "identical")
        assert first.work_id == second.work_id and first.upload_id != second.upload_id
        ledger = {u.upload_id: u for u in catalog.uploads()}
        assert ledger[first.upload_id].role == "reference"
        assert ledger[second.upload_id].uploader == "ring"
        assert ledger[second.upload_id].external_ids == {"external_id": "R-9"}
        assert ledger[second.upload_id].source_path == str(other.resolve())
        assert len(catalog.works()) == 1 and catalog.stats().uploads == 2

        verdict = catalog.screen(other)
        top = verdict.matches[0]
        assert verdict.verdict == "duplicate" and top.identical_content
        assert (top.upload_id, top.uploader, top.role) == (first.upload_id, "label", "reference")
        assert "reference" in top.attribution and "1 other upload" in top.attribution


def test_metadata_never_follows_a_base_name(tmp_path: Path, run) -> None:
    a, b = tmp_path / "a" / "song.ogg", tmp_path / "b" / "song.ogg"
    for path, source in ((a, "work_00.ogg"), (b, "work_01.ogg")):
        path.parent.mkdir()
        shutil.copyfile(CATALOG_DIR / source, path)
    csv_path = tmp_path / "meta.csv"
    csv_path.write_text("path,uploader,external_id\na/song.ogg,first,X-1\n")
    code, _, err = run("index", "add", "--db", tmp_path / "db", "--metadata", csv_path, a, b)
    assert code == 0, err
    with Catalog.open(tmp_path / "db") as catalog:
        by_path = {u.source_path: u for u in catalog.uploads()}
    assert (by_path[str(a.resolve())].uploader, by_path[str(a.resolve())].external_id) == (
        "first",
        "X-1",
    )
    assert (by_path[str(b.resolve())].uploader, by_path[str(b.resolve())].external_id) == (
        None,
        None,
    )


def test_ids_follow_input_order_whatever_the_workers(tmp_path: Path) -> None:
    files = sorted(CATALOG_DIR.glob("*.ogg"), reverse=True) + [UPLOADS_DIR / "not-a-file.ogg"]
    orders = []
    for workers in (1, 2):
        with Catalog.open(tmp_path / f"db{workers}") as catalog:
            results = catalog.add_paths(files, workers=workers)
            orders.append([(r.path, r.status, r.work_id, r.upload_id) for r in results])
            assert [u.source_path for u in catalog.uploads()] == [
                source_path(f) for f in files[:-1]
            ]
    assert orders[0] == orders[1]
    assert [r[1] for r in orders[0]] == ["added"] * 6 + ["failed"]
    assert [r[3] for r in orders[0][:6]] == [1, 2, 3, 4, 5, 6]


def test_role_option_and_paths_stored_absolute(tmp_path: Path, monkeypatch, run) -> None:
    shutil.copytree(CATALOG_DIR, tmp_path / "music")
    monkeypatch.chdir(tmp_path)
    code, out, err = run("index", "add", "--db", "db", "--role", "reference", "music/work_00.ogg")
    assert code == 0 and "added 1, identical 0" in out, err
    code, out, _ = run("index", "uploads", "--db", "db", "--json")
    validate(json.loads(out), "index-uploads")
    (record,) = json.loads(out)["uploads"]
    assert record["role"] == "reference"
    assert record["source_path"] == str((tmp_path / "music" / "work_00.ogg").resolve())
    code, _, err = run("index", "add", "--db", "db", "--role", "owner", "music/work_01.ogg")
    assert code == 2 and "owner" in err


# -- index update ---------------------------------------------------------------------------
@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    """A catalog of three uploads: work_00, work_01 and an identical copy of work_00."""
    copy = tmp_path / "copy" / "work_00.ogg"
    copy.parent.mkdir()
    shutil.copyfile(CATALOG_DIR / "work_00.ogg", copy)
    metadata = {
        source_path(CATALOG_DIR / "work_00.ogg"): {"external_id": "A-1"},
        source_path(CATALOG_DIR / "work_01.ogg"): {"external_id": "A-2"},
        source_path(copy): {"external_id": "A-1"},  # a distributor's id need not be unique
    }
    with Catalog.open(tmp_path / "db") as catalog:
        catalog.add_paths(
            [CATALOG_DIR / "work_00.ogg", CATALOG_DIR / "work_01.ogg", copy], metadata=metadata
        )
    return tmp_path / "db"


def test_update_by_upload_id_external_id_and_full_path(ledger: Path, tmp_path: Path, run) -> None:
    csv_path = tmp_path / "update.csv"
    csv_path.write_text(
        "upload_id,external_id,path,uploader,role,uploaded_at,territory\n"
        "1,,,label,reference,2020-01-01,BR\n"
        ",A-2,,label,,2021-02-02,\n"
        f",,{tmp_path / 'copy' / '..' / 'copy' / 'work_00.ogg'},ring,upload,,\n"
    )
    code, out, err = run("index", "update", "--db", ledger, "--metadata", csv_path)
    assert code == 0 and "updated 3 uploads" in out, err
    with Catalog.open(ledger) as catalog:
        got = {u.upload_id: u for u in catalog.uploads()}
    assert (got[1].uploader, got[1].role, got[1].uploaded_at) == (
        "label",
        "reference",
        "2020-01-01",
    )
    assert got[1].extra == {"territory": "BR"} and got[1].external_id == "A-1"
    assert (got[2].uploader, got[2].uploaded_at) == ("label", "2021-02-02")
    assert (got[3].uploader, got[3].role) == ("ring", "upload")
    # a work's row shows its first upload's metadata as it now is (a review found `index
    # list` still showing the old uploader); the identical copy, upload 3, changes no work
    code, out, _ = run("index", "list", "--db", ledger, "--json")
    listed = {w["work_id"]: w["metadata"] for w in json.loads(out)["works"]}
    assert listed[1]["uploader"] == "label" and listed[1]["role"] == "reference"
    assert listed[1]["territory"] == "BR" and listed[1]["external_id"] == "A-1"
    assert listed[2]["uploaded_at"] == "2021-02-02"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("external_id,uploader\nA-1,x\n", 2, "ambiguous: uploads 1, 3"),
        ("external_id,uploader\nZ-9,x\n", 2, "names no upload"),
        ("upload_id,uploader\n99,x\n", 2, "names no upload"),
        ("upload_id,uploader\n\u00b2,x\n", 2, "names no upload"),  # a digit int() cannot read
        ("upload_id,uploader\n\u0663,x\n", 2, "names no upload"),  # an Arabic-Indic three
        ("path,uploader\nwork_00.ogg,x\n", 2, "names no upload"),  # a base name names nothing
        ("upload_id,role\n2,owner\n", 2, "role 'owner'"),
        ("upload_id,uploaded_at\n2,yesterday\n", 2, "not an ISO 8601 date"),
        ("upload_id,uploaded_at\n2,2999-01-01\n", 2, "is in the future"),
        ("upload_id,uploader\n2,x\n2,y\n", 3, "already changed on line 2"),
        ("uploader\nx\n", 1, "no 'upload_id', 'external_id' or 'path' column"),
        ("", 1, "empty file"),
    ],
)
def test_update_errors_name_their_line(
    ledger: Path, tmp_path: Path, run, text: str, line: int, words: str
) -> None:
    csv_path = tmp_path / "update.csv"
    csv_path.write_text(text)
    with Catalog.open(ledger) as catalog:
        before = catalog.uploads()
        with pytest.raises(MetadataError) as exc:
            read_metadata_update(csv_path, before)
    assert f"line {line}" in str(exc.value) and words in str(exc.value)
    code, _, err = run("index", "update", "--db", ledger, "--metadata", csv_path)
    assert code == 2 and words in err and "nothing was changed" in err
    with Catalog.open(ledger) as catalog:
        assert catalog.uploads() == before


def test_an_update_with_one_bad_line_changes_nothing(ledger: Path, tmp_path: Path, run) -> None:
    csv_path = tmp_path / "update.csv"
    csv_path.write_text("upload_id,uploader,role\n1,changed,reference\n2,x,owner\n3,y,\n")
    with Catalog.open(ledger) as catalog:
        before = catalog.uploads()
    code, out, err = run("index", "update", "--db", ledger, "--metadata", csv_path)
    assert code == 2 and "line 3" in err and "updated" not in out
    with Catalog.open(ledger) as catalog:
        assert catalog.uploads() == before


# -- a catalog of the first layout -----------------------------------------------------------
def test_a_first_layout_catalog_gets_its_ledger_with_the_same_ids(tmp_path: Path) -> None:
    db = tmp_path / "db"
    with Catalog.open(db) as catalog:
        catalog.add_paths(sorted(CATALOG_DIR.glob("*.ogg"))[:3])
    with sqlite3.connect(db / "catalog.sqlite") as con:  # make it a schema-1 catalog
        con.execute("DROP TABLE uploads")
        con.execute(
            "UPDATE works SET metadata = ? WHERE work_id = 2",
            (json.dumps({"work_id": "OLD-2", "uploader": "u"}),),
        )
        con.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    con.close()
    with Catalog.open(db) as catalog:
        got = catalog.uploads()
        assert [(u.upload_id, u.work_id) for u in got] == [(1, 1), (2, 2), (3, 3)]
        assert (got[1].external_id, got[1].uploader) == ("OLD-2", "u")
        added = catalog.add_paths([CATALOG_DIR / "work_05.ogg"])
        assert added[0].upload_id == 4


def test_reference_originals_name_only_copies_of_references() -> None:
    from audiodup.owners import reference_originals
    from audiodup.rescan.results import Cluster, Member

    def member(upload_id, work_id, role, relation):
        return Member(
            upload_id,
            work_id,
            role,
            f"/m/{upload_id}",
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            10.0,
            relation,
        )

    by_reference = Cluster(
        1,
        (1, 2),
        (member(1, 1, "reference", "original"), member(2, 2, "upload", "copy_of")),
        1,
        1,
        "reference upload",
        (),
        (),
    )
    by_date = Cluster(
        2,
        (3, 4),
        (member(3, 3, "upload", "original"), member(4, 4, "upload", "copy_of")),
        3,
        3,
        "earliest dated",
        (),
        (),
    )
    undetermined = Cluster(
        3,
        (5, 6),
        (member(5, 5, "upload", "undetermined"), member(6, 6, "upload", "undetermined")),
        None,
        None,
        "undetermined",
        (),
        (),
    )
    found = reference_originals([by_reference, by_date, undetermined])
    assert set(found) == {2}
    assert found[2][0].upload_id == 1 and "cluster 1" in found[2][1]


def test_copy_owners_are_read_again_only_when_the_rescan_or_the_ledger_edits_change(
    tmp_path: Path,
) -> None:
    from audiodup.owners import RESCAN_RESULTS, CopyOwners

    loads, edits = [], [0]
    owners_of = CopyOwners(tmp_path, lambda: loads.append(1) or [], lambda: edits[0])
    assert owners_of() == {} and loads == []  # never rescanned: nothing to read
    (tmp_path / RESCAN_RESULTS).write_bytes(b"x")
    owners_of(), owners_of()
    assert len(loads) == 1
    (tmp_path / "catalog.sqlite").write_bytes(b"new uploads")  # not a reason to read again
    owners_of()
    assert len(loads) == 1
    edits[0] += 1  # roles or dates edited: originals may change
    owners_of()
    assert len(loads) == 2
    (tmp_path / RESCAN_RESULTS).write_bytes(b"a new rescan")
    owners_of()
    assert len(loads) == 3


def test_update_uploads_counts_its_edits(ledger: Path, tmp_path: Path, run) -> None:
    with Catalog.open(ledger) as catalog:
        assert catalog.store.ledger_edits() == 0
        catalog.update_uploads([(1, {"role": "reference"})])
        catalog.update_uploads([(2, {"uploader": "x"})])
        assert catalog.store.ledger_edits() == 2
