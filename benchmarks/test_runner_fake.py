"""The whole runner against the fake Catalog (no audiodup engine needed)."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from benchmarks.distractors import generated_works
from benchmarks.records import read_jsonl
from benchmarks.runner import RunConfig, rerender, run


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    fixtures, _ = generated_works(tmp / "fixtures", range(4), 40.0)
    out = tmp / "report" / "RESULTS.md"
    cfg = RunConfig(
        mode="smoke",
        out=out,
        data=tmp / "cache",
        engine="benchmarks.fake_catalog:FakeCatalog",
        fixtures=fixtures[0].parent,
        workers=2,
    )
    run(cfg)
    return cfg


def test_report_and_raw_results_are_written(fake_run):
    text = fake_run.out.read_text()
    assert "| variant | n | audiodup recall@1 |" in text
    assert (fake_run.out.parent / "plots" / "recall_vs_tempo.png").exists()
    lines = fake_run.results_path.read_text().splitlines()
    assert json.loads(lines[0])["type"] == "meta"
    meta, results = read_jsonl(fake_run.results_path)
    assert meta.mode == "smoke" and len(results) == (4 + 3) * 6
    assert {r.query.role for r in results} == {"positive", "negative"}


def test_recalls_are_numbers_in_unit_interval(fake_run):
    text = fake_run.out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| tempo 0.80")]
    assert rows
    recall = float(re.split(r"\s*\|\s*", rows[0])[3].split()[0])
    assert 0.0 <= recall <= 1.0


def test_report_can_be_rerendered_from_jsonl(fake_run, tmp_path):
    out = rerender(fake_run.results_path, tmp_path / "again.md")
    assert out.read_text().split("## Corpus")[1] == fake_run.out.read_text().split("## Corpus")[1]


def test_notes_stay_with_their_run(fake_run, tmp_path):
    """Notes written by hand into a report survive ``rerender`` of the same run, and a new run
    into that report starts without them (they were about the run before)."""
    from benchmarks.report import NOTES_END, NOTES_START

    out = tmp_path / "RESULTS.md"
    notes = [NOTES_START, "- later: measured by hand", NOTES_END]
    rerender(fake_run.results_path, out)
    lines = out.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("- commit: ")) + 1
    out.write_text("\n".join([*lines[:at], *notes, *lines[at:]]) + "\n")
    rerender(fake_run.results_path, out)
    assert out.read_text().count("- later: measured by hand") == 1
    run(dataclasses.replace(fake_run, out=out))
    assert "measured by hand" not in out.read_text() and NOTES_START not in out.read_text()
