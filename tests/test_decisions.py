"""Review decisions (audiodup/store.py, Catalog): appended, never changed, the latest in force;
refused for an upload not in the catalog or a catalog that cannot be written; kept across a
reopen; exported as CSV (formula-safe) and as a JSON document valid against its schema; shown
in rescan reports beside the pair they decide."""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from audiodup import Catalog
from audiodup.errors import CatalogError
from audiodup.report import (
    decisions_by_pair,
    decisions_csv,
    rescan_csv,
    with_decision_columns,
    write_rescan_report,
)
from audiodup.report_html import rescan_html, with_decisions_section
from audiodup.rescan import report_to_dict
from audiodup.results import ReviewDecision, decisions_document, dumps
from audiodup.schema import SCHEMA_VERSION, validate


@pytest.fixture
def opened(catalog_copy: Path):
    with Catalog.open(catalog_copy, create=False) as catalog:
        yield catalog


def test_decisions_are_appended_and_the_latest_is_in_force(opened: Catalog) -> None:
    first, second, third = (u.upload_id for u in opened.uploads()[:3])
    assert opened.decisions() == [] and opened.latest_decisions() == []
    a = opened.record_decision(first, second, "escalate", "ask the label", "alice")
    b = opened.record_decision(second, first, "not_a_copy", "", "bob")
    c = opened.record_decision(first, second, "copy", "same master, +3 st", "carol")
    assert a.decision_id < b.decision_id < c.decision_id
    assert (c.upload_id, c.work_id, c.decision, c.note, c.reviewer) == (
        first,
        second,
        "copy",
        "same master, +3 st",
        "carol",
    )
    assert c.decided_at.endswith("+00:00")
    assert opened.decisions() == [a, b, c]  # the history, oldest first
    assert opened.decisions(first) == [a, c]
    assert opened.decisions(third) == []
    assert opened.latest_decisions() == [c, b]  # by upload id: first, then second


def test_decisions_survive_a_reopen_and_hostile_text_is_kept_as_given(catalog_copy: Path) -> None:
    note = '=HYPERLINK("x")\n<script>alert(1)</script>\u202e'
    with Catalog.open(catalog_copy, create=False) as catalog:
        upload = catalog.uploads()[0].upload_id
        made = catalog.record_decision(upload, upload + 1, "copy", note, "<b>eve</b>")
    with Catalog.open(catalog_copy, create=False) as catalog:
        assert catalog.latest_decisions() == [made]
        assert catalog.latest_decisions()[0].note == note


def test_a_decision_needs_a_live_upload_and_a_known_label(opened: Catalog) -> None:
    upload = opened.uploads()[0]
    with pytest.raises(CatalogError, match="upload 999 is not in the catalog"):
        opened.record_decision(999, 1, "copy", "", "alice")
    with pytest.raises(ValueError, match="copy, not_a_copy, escalate"):
        opened.record_decision(upload.upload_id, 1, "maybe", "", "alice")  # type: ignore[arg-type]
    opened.remove(upload.work_id)
    with pytest.raises(CatalogError, match="not in the catalog"):
        opened.record_decision(upload.upload_id, 1, "copy", "", "alice")
    assert opened.decisions() == []


def test_a_catalog_opened_read_only_refuses_a_decision(opened: Catalog) -> None:
    opened.store.read_only = "its folder is not writable"  # as _connect finds it
    with pytest.raises(CatalogError, match="cannot record a review decision"):
        opened.record_decision(opened.uploads()[0].upload_id, 1, "copy", "", "alice")
    opened.store.read_only = None
    assert opened.decisions() == []


def decision(decision_id: int, upload_id: int, work_id: int, label: str, note: str = ""):
    return ReviewDecision(
        decision_id, upload_id, work_id, label, note, "alice", "2026-11-30T09:00:00+00:00"
    )


def test_the_json_export_is_a_valid_versioned_document() -> None:
    decisions = [decision(1, 4, 2, "copy", "same master"), decision(2, 5, 1, "escalate")]
    document = json.loads(dumps(decisions_document(decisions, latest_only=True)))
    validate(document, "decisions")
    assert document["schema_version"] == SCHEMA_VERSION and document["latest_only"] is True
    assert [d["decision"] for d in document["decisions"]] == ["copy", "escalate"]
    drifted = {**document, "decisions": [{**document["decisions"][0], "decision": "maybe"}]}
    with pytest.raises(Exception, match="maybe"):
        validate(drifted, "decisions")
    with pytest.raises(Exception, match="reviewer"):
        validate({**document, "decisions": [{"decision_id": 1}]}, "decisions")


def test_the_csv_export_neutralises_formulas_and_keeps_text() -> None:
    text = decisions_csv([decision(1, 4, 2, "copy", '=cmd|"/c calc"!A1\r\nsecond line')])
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == [
        "decision_id",
        "upload_id",
        "work_id",
        "decision",
        "note",
        "reviewer",
        "decided_at",
    ]
    assert rows[1][:4] == ["1", "4", "2", "copy"]
    assert rows[1][4] == '\'=cmd|"/c calc"!A1\r\nsecond line'
    assert text.endswith("\r\n")


def test_rescan_reports_show_the_decision_beside_its_pair(
    rescan_report_and_catalog, tmp_path: Path
) -> None:
    report, catalog = rescan_report_and_catalog
    uploads = catalog.uploads()
    pair = report.pairs[0]
    upload_id = next(u.upload_id for u in uploads if u.work_id == pair.query_work_id)
    made = catalog.record_decision(
        upload_id, pair.reference_work_id, "not_a_copy", "=licensed remix", "rita"
    )
    assert decisions_by_pair([made], uploads) == {pair.work_ids: (made,)}
    # the CSV written with the catalog: the decision in its pair's row, cells formula-safe
    out = write_rescan_report(report, tmp_path / "rescan.csv", catalog)
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"), newline="")))
    assert rows[0].keys() >= {"review_decision", "review_note", "reviewer", "reviewed_at"}
    decided = [r for r in rows if r["review_decision"]]
    assert [(r["query_work_id"], r["reference_work_id"]) for r in decided] == [
        (str(pair.query_work_id), str(pair.reference_work_id))
    ]
    assert decided[0]["reviewed_upload_ids"] == str(upload_id)
    assert decided[0]["review_note"] == '"=licensed remix"' and decided[0]["reviewer"] == "rita"
    plain = rescan_csv(report)
    assert with_decision_columns(plain, report, [], uploads).count("not_a_copy") == 0
    # every cell before the new ones is copied as rescan_csv wrote it
    original = list(csv.reader(io.StringIO(plain, newline="")))
    assert [
        r[: len(original[0])] for r in csv.reader(io.StringIO(out.read_text(), newline=""))
    ] == (original)
    # the HTML report gets a section, escaped
    page = rescan_html(report, None)
    shown = with_decisions_section(page, report, [made], uploads)
    section = shown[shown.index('<section id="review-decisions">') : shown.index("</main>")]
    assert "not a copy" in section and "=licensed remix" in section and "rita" in section
    assert with_decisions_section(page, report, [], uploads) == page
    hostile = replace(made, note="<img src=x onerror=alert(1)>")
    assert "<img src=x" not in with_decisions_section(page, report, [hostile], uploads)


def test_each_upload_s_decision_on_a_pair_is_shown(rescan_report_and_catalog) -> None:
    """A review found one decision per pair of works: an honest upload decided 'not a copy'
    and a thief's upload of the same audio decided 'copy' showed as one decision, the later
    one, with no upload named in the CSV. Each upload's decision in force is shown."""
    report, catalog = rescan_report_and_catalog
    pair = report.pairs[0]
    honest = next(u for u in catalog.uploads() if u.work_id == pair.query_work_id)
    thief = replace(honest, upload_id=max(u.upload_id for u in catalog.uploads()) + 1)
    uploads = [*catalog.uploads(), thief]
    other = pair.reference_work_id
    decided = [
        decision(1, thief.upload_id, other, "escalate"),
        decision(2, honest.upload_id, other, "not_a_copy", "licensed"),
        decision(3, thief.upload_id, other, "copy", "stolen; re-pitched"),
    ]
    found = decisions_by_pair(decided, uploads)
    assert found == {pair.work_ids: (decided[1], decided[2])}  # each upload's latest
    text = with_decision_columns(rescan_csv(report), report, decided, uploads)
    (row,) = [r for r in csv.DictReader(io.StringIO(text, newline="")) if r["review_decision"]]
    assert row["reviewed_upload_ids"] == f"{honest.upload_id}; {thief.upload_id}"
    assert row["review_decision"] == "not_a_copy; copy"
    assert row["review_note"] == 'licensed; "stolen; re-pitched"'
    page = with_decisions_section(rescan_html(report, None), report, decided, uploads)
    assert (
        f"upload {honest.upload_id} against" in page and f"upload {thief.upload_id} against" in page
    )
    assert ">copy<" in page and ">not a copy<" in page


def test_a_decision_on_an_identical_upload_is_shown_and_json_carries_every_decision(
    rescan_report_and_catalog, tmp_path: Path
) -> None:
    """A review found a decision on a thief's identical re-upload (decided against its own
    work, whose owner uploaded the audio first) in no report, and the JSON report without
    any decision while the CSV and HTML had them."""
    report, catalog = rescan_report_and_catalog
    pair = report.pairs[0]
    owner = next(u for u in catalog.uploads() if u.work_id == pair.reference_work_id)
    thief = replace(owner, upload_id=max(u.upload_id for u in catalog.uploads()) + 1)
    uploads = [*catalog.uploads(), thief]
    same = decision(7, thief.upload_id, owner.work_id, "copy", "identical re-upload")
    assert decisions_by_pair([same], uploads) == {}  # no pair of works holds it
    page = with_decisions_section(rescan_html(report, None), report, [same], uploads)
    section = page[page.index('<section id="review-decisions">') :]
    assert "identical audio" in section and "identical re-upload" in section
    assert f"upload {thief.upload_id} against work {owner.work_id}" in section

    made = catalog.record_decision(
        owner.upload_id, pair.query_work_id, "escalate", "ask legal", "rita"
    )
    out = write_rescan_report(report, tmp_path / "rescan.json", catalog)
    document = json.loads(out.read_text(encoding="utf-8"))
    validate(document, "rescan")
    assert json.loads(dumps(made)) in document["review_decisions"]
    assert {d["upload_id"] for d in document["review_decisions"]} <= {
        u.upload_id for u in catalog.uploads()
    }
    assert json.loads(dumps(report_to_dict(report)))["review_decisions"] == []


@pytest.fixture(scope="module")
def rescan_report_and_catalog(pristine_catalog_dir: Path, tmp_path_factory):
    """A rescan of the fixture catalog with a stretched copy added."""
    from audiodup.rescan import rescan

    root = tmp_path_factory.mktemp("decisions") / "catalog"
    shutil.copytree(pristine_catalog_dir, root)
    uploads = Path(__file__).resolve().parents[1] / "fixtures" / "audio" / "uploads"
    with Catalog.open(root, create=False) as catalog:
        catalog.add_paths([uploads / "stretch_0.80_work_01.ogg"])
        report = rescan(catalog)
        assert report.pairs, "the copy must pair with its original"
        yield report, catalog
