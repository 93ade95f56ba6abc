"""CI smoke: the benchmark runner end to end on the bundled fixtures, real engine.

Runs ``python -m benchmarks run --smoke`` into a temporary folder and checks that the report is
produced and that quality holds its floor: every variant finds at least 5 of its 6 copies, the
tempo error stays under 1 %, and no negative is called a duplicate (not how fast anything is).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "fixtures" / "audio" / "catalog"


# Floors of the smoke run (6 works, 6 easy variants): every variant measured 1.000 at 0c52362.
MIN_VARIANT_RECALL = 5 / 6
MAX_TEMPO_ERROR_MEDIAN_PCT = 1.0


def test_smoke_run_writes_a_sane_report(tmp_path):
    pytest.importorskip("audiodup.catalog")
    pytest.importorskip("pedalboard")
    if not sorted(FIXTURES.glob("*.ogg")):
        pytest.skip("fixtures/audio/catalog/*.ogg not generated")
    out = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "run",
            "--smoke",
            "--data",
            str(tmp_path / "cache"),
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,  # a hang guard only: the run takes about 15 s on an idle machine
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.exists()
    assert (tmp_path / "results.jsonl").exists()
    text = out.read_text()
    assert "| variant | n | audiodup recall@1 |" in text
    recall_table = text.split("## Recall per variant")[1].split("## False positives")[0]
    rows = [
        line
        for line in recall_table.splitlines()
        if re.match(r"\| (tempo|pitch|speed|excerpt|mp3) [^|]+\|", line)  # not the family rows
    ]
    assert len(rows) >= 5
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        recall = float(cells[2].split()[0])
        assert recall >= MIN_VARIANT_RECALL, line
        tempo_error_median = float(cells[6].split("/")[0])
        assert tempo_error_median <= MAX_TEMPO_ERROR_MEDIAN_PCT, line
        peer = cells[-1]
        assert peer == "n/a" or 0.0 <= float(peer) <= 1.0
    negatives = re.search(r"audiodup: (\d+) `duplicate` verdicts on (\d+) negative queries", text)
    assert negatives is not None
    assert int(negatives.group(1)) == 0 and int(negatives.group(2)) >= 18
