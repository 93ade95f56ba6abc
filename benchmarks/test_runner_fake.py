"""The whole runner against the fake Catalog (no audiodup engine needed)."""

from __future__ import annotations

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
