"""CI smoke: the benchmark runner end to end on the bundled fixtures, real engine.

Runs ``python -m benchmarks run --smoke`` into a temporary folder and checks that the report is
produced and its scores are sane (not how fast anything is).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "fixtures" / "audio" / "catalog"


@pytest.mark.timeout(120)
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
        timeout=110,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.exists()
    assert (tmp_path / "results.jsonl").exists()
    text = out.read_text()
    assert "| variant | n | audiodup recall@1 |" in text
    rows = [
        line for line in text.splitlines() if re.match(r"\| (tempo|pitch|speed|excerpt|mp3) ", line)
    ]
    assert len(rows) >= 5
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        recall = float(cells[2].split()[0])
        assert 0.0 <= recall <= 1.0
        peer = cells[-1]
        assert peer == "n/a" or 0.0 <= float(peer) <= 1.0
