"""Worker processes with per-call time limits (audiodup/workers.py) and the batch --timeout."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from audiodup.cli import app
from audiodup.workers import map_with_timeout

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "audio"


def test_calls_that_run_over_are_killed_and_the_rest_complete() -> None:
    start = time.monotonic()
    results = {
        item: (status, value)
        for item, status, value in map_with_timeout(
            time.sleep, [0.01, 3600.0, 0.02], workers=2, timeout_s=1.0
        )
    }
    assert time.monotonic() - start < 1800  # killed, not slept through, however loaded
    assert results[0.01][0] == "ok"
    assert results[0.02][0] == "ok"
    assert results[3600.0] == ("timeout", "timed out after 1 s")


def test_a_worker_whose_parent_died_ends_quietly(tmp_path) -> None:
    """The parent killed while a worker is busy (SIGKILL, or a signal that stops it before it
    stops its workers): the worker's answer has no one to go to, and it ends without a
    traceback on the stderr it shares with the parent."""
    script = (
        "import time\n"
        "from audiodup.workers import map_with_timeout\n"
        "for item, status, _ in map_with_timeout(time.sleep, [2.0, 0.0], workers=2):\n"
        "    print(item, status, flush=True)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert parent.stdout.readline().split() == ["0.0", "ok"]  # the other worker is asleep
    parent.kill()
    parent.wait()
    assert parent.stderr.read() == ""  # read to its end: when the busy worker has ended too


def test_exceptions_come_back_as_one_line_errors() -> None:
    results = list(map_with_timeout(math.sqrt, [4.0, -1.0], workers=1, timeout_s=30.0))
    by_item = {item: (status, value) for item, status, value in results}
    assert by_item[4.0] == ("ok", 2.0)
    assert by_item[-1.0][0] == "error"
    assert "ValueError" in by_item[-1.0][1]


def test_cli_timeout_options_screen_and_add(tmp_path) -> None:
    fixtures_dir = FIXTURES
    db = tmp_path / "cat"
    runner = CliRunner()
    catalog_dir = fixtures_dir / "catalog"
    added = runner.invoke(
        app,
        ["index", "add", "--db", str(db), "--timeout", "60", "--workers", "2", str(catalog_dir)],
    )
    assert added.exit_code == 0, added.output
    assert "added 6" in added.output
    upload = fixtures_dir / "uploads" / "pitch_-3_work_03.ogg"
    screened = runner.invoke(
        app,
        [
            "screen",
            "--db",
            str(db),
            "--json",
            "--timeout",
            "60",
            str(upload),
            str(tmp_path / "missing.wav"),
        ],
    )
    assert screened.exit_code == 3  # a duplicate and a missing file
    assert '"verdict": "duplicate"' in screened.output
    assert '"error": "file not found"' in screened.output


def test_workers_start_from_stdin_and_unguarded_scripts(tmp_path) -> None:
    """Spawned workers must not re-run the caller's __main__ (stdin, or a script with no
    ``if __name__ == "__main__"`` guard)."""
    import subprocess
    import sys

    code = (
        "from audiodup import Catalog\n"
        f"with Catalog.open({str(tmp_path / 'cat')!r}) as catalog:\n"
        f"    results = catalog.add_paths([{str(FIXTURES / 'catalog')!r}], workers=2)\n"
        "    print(sorted(r.status for r in results))\n"
    )
    script = tmp_path / "unguarded.py"
    script.write_text(code)
    from_stdin = subprocess.run(
        [sys.executable, "-"], input=code, capture_output=True, text=True, timeout=300
    )
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert from_stdin.stdout.strip() == str(["added"] * 6)
    from_file = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300
    )
    assert from_file.returncode == 0, from_file.stderr
    assert from_file.stdout.strip() == str(["present"] * 6)  # same catalog, second run
