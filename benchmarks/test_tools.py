"""The analysis tools that follow a full run say what is missing in one line, with no traceback."""

from __future__ import annotations

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
