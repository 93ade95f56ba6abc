"""Helpers for the benchmark commands' tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one_error_line(module: str, args: list[str], data: Path) -> str:
    """Run ``python -m module args`` on the benchmark cache ``data``: it must exit 2 with no
    traceback and one line on stderr, which is returned."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "AUDIODUP_BENCH_DATA": str(data)},
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
    (line,) = proc.stderr.strip().splitlines()
    return line
