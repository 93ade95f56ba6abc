"""The analysis tools that follow a full run say what is missing in one line, with no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("tool", ["calibrate", "chroma_index"])
def test_a_tool_without_a_benchmark_cache_fails_in_one_line(tool: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{tool}", "--data", str(tmp_path / "empty")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "python -m benchmarks run" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_same_verdicts_counts_entries_that_differ_in_any_field(tmp_path) -> None:
    from benchmarks.same_verdicts import compare

    def line(role: str, label: str, fmp: float) -> str:
        entry = {"verdict": label, "matches": [{"false_match_probability": fmp}]}
        return json.dumps({"variant": "v", "role": role, "verdict": entry}) + "\n"

    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text(line("positive", "duplicate", 1e-9) + line("negative", "clean", 0.5))
    second.write_text(line("positive", "duplicate", 1e-9) + line("negative", "clean", 0.5))
    assert "2 queries, 0 differ" in compare(first, second)
    second.write_text(line("positive", "duplicate", 2e-9) + line("negative", "clean", 0.5))
    assert "2 queries, 1 differ" in compare(first, second)
    second.write_text(line("positive", "duplicate", 1e-9))
    assert "not the same queries" in compare(first, second)


def test_the_scale_tools_measure_a_small_catalog(tmp_path: Path) -> None:
    """screening_memory (memory per upload, chroma search both ways) and rescan_per_work run
    end to end and report what they measured."""
    from audiodup import Catalog

    works = sorted((REPO / "fixtures" / "audio" / "catalog").iterdir())[:2]
    with Catalog.open(tmp_path / "catalog") as catalog:
        catalog.add_paths(works)

    def tool(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, check=True
        )
        return proc.stdout

    verdicts = tmp_path / "verdicts.jsonl"
    out = tool("benchmarks.screening_memory", "screen", str(tmp_path / "catalog"), str(works[0]))
    assert out.startswith("loaded") and "RssAnon" in out and "ru_maxrss" in out
    tool(
        "benchmarks.screening_memory", "screen", str(tmp_path / "catalog"), str(works[0]),
        "--out", str(verdicts),
    )  # fmt: skip
    assert json.loads(verdicts.read_text())["verdict"] == "duplicate"
    out = tool("benchmarks.screening_memory", "chroma-io", str(tmp_path / "catalog"), "--repeats=1")
    assert "same hits: True" in out
    out = tool("benchmarks.rescan_per_work", str(tmp_path / "catalog"), "--sample", "2")
    assert "2 works screened" in out and "stored_fingerprint': 2" in out
