"""Review decisions (audiodup/store.py, Catalog): appended, never changed, the latest in force;
refused for an upload not in the catalog or a catalog that cannot be written; kept across a
reopen; exported as CSV (formula-safe) and as a JSON document valid against its schema; shown
in rescan reports beside the pair they decide."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from audiodup import Catalog
from audiodup.errors import CatalogError
from audiodup.report import decisions_by_pair, decisions_csv, rescan_csv
from audiodup.report_html import decisions_section
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


def test_rescan_reports_show_the_decision_beside_its_pair(rescan_report_and_uploads) -> None:
    report, uploads = rescan_report_and_uploads
    pair = report.pairs[0]
    by_work = {u.work_id: u.upload_id for u in uploads}
    upload_id = by_work[pair.query_work_id]
    made = decision(7, upload_id, pair.reference_work_id, "not_a_copy", "licensed remix")
    assert decisions_by_pair([made], uploads) == {pair.work_ids: made}
    rows = list(csv.DictReader(io.StringIO(rescan_csv(report, [made], uploads), newline="")))
    decided = [r for r in rows if r["review_decision"]]
    assert [(r["query_work_id"], r["reference_work_id"]) for r in decided] == [
        (str(pair.query_work_id), str(pair.reference_work_id))
    ]
    assert decided[0]["review_decision"] == "not_a_copy"
    assert decided[0]["review_note"] == "licensed remix"
    assert "review_decision" in rows[0] and rescan_csv(report).count("not_a_copy") == 0
    section = decisions_section(report, [made], uploads)
    assert "not a copy" in section and "licensed remix" in section
    assert decisions_section(report, [], uploads) == ""
    hostile = decision(8, upload_id, pair.reference_work_id, "copy", "<img src=x onerror=1>")
    assert "<img" not in decisions_section(report, [hostile], uploads)


@pytest.fixture(scope="module")
def rescan_report_and_uploads(pristine_catalog_dir: Path, tmp_path_factory):
    """A rescan of the fixture catalog with its stretched and shifted copies added."""
    from audiodup.rescan import rescan

    root = tmp_path_factory.mktemp("decisions") / "catalog"
    shutil.copytree(pristine_catalog_dir, root)
    uploads = Path(__file__).resolve().parents[1] / "fixtures" / "audio" / "uploads"
    with Catalog.open(root, create=False) as catalog:
        catalog.add_paths([uploads / "stretch_0.80_work_01.ogg"])
        report = rescan(catalog)
        assert report.pairs, "the copy must pair with its original"
        return report, catalog.uploads()
