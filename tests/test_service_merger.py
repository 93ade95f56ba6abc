"""The service's shard merger: due merges made in a child process, failures logged, the child
stopped with the worker."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf

from audiodup import Catalog
from audiodup.service import merger as merger_module
from audiodup.service.merger import ShardMerger
from audiodup.settings import DEFAULT_SETTINGS
from audiodup.synth import synthesize_work

ONE_SHARD = dataclasses.replace(DEFAULT_SETTINGS, max_shards=1)


def _shards(db: Path) -> int:
    with Catalog.open(db, create=False) as catalog:
        return catalog.store.db.execute("SELECT COUNT(*) FROM shards").fetchone()[0]


def _with_a_second_shard(db: Path, tmp_path: Path) -> None:
    """One more shard, unmerged: a merge is due under ``ONE_SHARD``."""
    path = tmp_path / "small.wav"
    sf.write(path, synthesize_work(951, 8.0, 22050), 22050)
    with Catalog.open(db, create=False) as catalog:
        catalog.store.merge_after_commit = False
        before = catalog.store.db.execute("SELECT COUNT(*) FROM shards").fetchone()[0]
        assert [r.status for r in catalog.add_paths([path])] == ["added"]
    assert _shards(db) == before + 1 > 1


def test_without_a_due_merge_no_child_runs(catalog_copy: Path):
    merger = ShardMerger(catalog_copy, DEFAULT_SETTINGS)
    try:
        merger.request()
        assert merger.wait_idle(600.0)  # a bound against a hang, not a timing
        assert merger.children == [] and merger.merges == 0
    finally:
        merger.close()


FAILING_CHILD = (
    "import json, sys\n"
    "for line in sys.stdin:\n"
    "    if line.strip() == 'merge':\n"
    "        print(json.dumps({'error': 'no room: disk full'}), flush=True)\n"
)


def _failed_round(merger: ShardMerger, child_code: str, monkeypatch, caplog) -> str:
    """A round of merges with ``child_code`` as the child: the error the worker logged."""
    with monkeypatch.context() as patch, caplog.at_level(logging.WARNING, "audiodup.service"):
        patch.setattr(merger, "command", lambda: [sys.executable, "-c", child_code])
        merger.request()
        assert merger.wait_idle(600.0)  # a bound against a hang, not a timing
    (record,) = [r for r in caplog.records if r.getMessage() == "shards not merged"]
    return record.fields["error"]


def test_a_failed_merge_is_logged_and_the_next_request_merges(
    catalog_copy: Path, tmp_path: Path, monkeypatch, caplog
):
    _with_a_second_shard(catalog_copy, tmp_path)
    merger = ShardMerger(catalog_copy, ONE_SHARD)
    try:
        assert _failed_round(merger, FAILING_CHILD, monkeypatch, caplog) == "no room: disk full"
        assert merger.merges == 0 and len(merger.children) == 1
        assert _shards(catalog_copy) == 2
        merger.request()  # the failed child was stopped: a new one merges
        assert merger.wait_idle(600.0)
        assert merger.merges == 1 and len(merger.children) == 2
    finally:
        merger.close()
    assert _shards(catalog_copy) == 1
    with Catalog.open(catalog_copy, create=False, settings=ONE_SHARD) as catalog:
        assert catalog.verify() == []
        assert catalog.screen(tmp_path / "small.wav").verdict == "duplicate"


def test_a_child_that_ends_without_an_answer_is_named_by_its_status(
    catalog_copy: Path, tmp_path: Path, monkeypatch, caplog
):
    _with_a_second_shard(catalog_copy, tmp_path)
    merger = ShardMerger(catalog_copy, ONE_SHARD)
    try:
        error = _failed_round(merger, "raise SystemExit(3)", monkeypatch, caplog)
        assert error == "the merging process ended (3)"
        assert merger.merges == 0 and _shards(catalog_copy) == 2
    finally:
        merger.close()


def test_one_child_makes_the_merges_of_several_requests(catalog_copy: Path, tmp_path: Path):
    _with_a_second_shard(catalog_copy, tmp_path)
    merger = ShardMerger(catalog_copy, ONE_SHARD)
    try:
        merger.request()
        assert merger.wait_idle(600.0) and merger.merges == 1
        path = tmp_path / "another.wav"
        sf.write(path, synthesize_work(952, 8.0, 22050), 22050)
        with Catalog.open(catalog_copy, create=False) as catalog:
            catalog.store.merge_after_commit = False
            assert [r.status for r in catalog.add_paths([path])] == ["added"]
        assert _shards(catalog_copy) == 2
        merger.request()
        assert merger.wait_idle(600.0) and merger.merges == 2
        assert len(merger.children) == 1  # started once, at the first due merge
    finally:
        merger.close()
    assert _shards(catalog_copy) == 1
    with pytest.raises(ChildProcessError):  # stopped and reaped with the merger
        os.waitpid(merger.children[0], os.WNOHANG)


def test_closing_the_merger_stops_its_child(catalog_copy: Path, tmp_path: Path, monkeypatch):
    _with_a_second_shard(catalog_copy, tmp_path)
    merger = ShardMerger(catalog_copy, ONE_SHARD)
    monkeypatch.setattr(
        merger, "command", lambda: [sys.executable, "-c", "import time; time.sleep(600)"]
    )
    merger.request()
    for _ in range(6000):  # until the child runs; a bound against a hang, not a timing
        if merger.children:
            break
        time.sleep(0.1)
    (pid,) = merger.children
    merger.close()
    assert merger.wait_idle(600.0) and merger.merges == 0
    with pytest.raises(ChildProcessError):  # stopped and reaped with the merger
        os.waitpid(pid, os.WNOHANG)
    assert _shards(catalog_copy) == 2


def test_the_child_answers_each_round_in_one_line(tmp_path: Path, monkeypatch):
    answers = io.StringIO()
    monkeypatch.setattr(sys, "stdin", io.StringIO("not settings\n"))
    assert merger_module.main([str(tmp_path / "nowhere")], answers) == 1
    (line,) = answers.getvalue().splitlines()
    assert json.loads(line)["error"].startswith("no settings")
    answers = io.StringIO()
    rounds = DEFAULT_SETTINGS.to_json() + "\nmerge\nsomething else\nmerge\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(rounds))
    assert merger_module.main([str(tmp_path / "nowhere")], answers) == 0
    lines = answers.getvalue().splitlines()
    assert len(lines) == 2 and all(
        json.loads(x)["error"].startswith("no catalog at") for x in lines
    )


WORKER_THAT_ASKS = """
import dataclasses, sys
from pathlib import Path
from audiodup.service.merger import ShardMerger
from audiodup.settings import DEFAULT_SETTINGS

merger = ShardMerger(Path(sys.argv[1]), dataclasses.replace(DEFAULT_SETTINGS, max_shards=1))
child = merger._start_child()
child.stdin.write("merge\\n")
child.stdin.flush()
print(child.pid, flush=True)
sys.stdin.read()  # until killed
"""


def _ended(pid: int) -> bool:
    """Whether ``pid`` has exited (gone, or a zombie its new parent has not reaped yet)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in status


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_a_child_whose_worker_is_killed_finishes_its_merge_alone(
    catalog_copy: Path, tmp_path: Path
):
    """A worker killed outright (SIGKILL) after asking its child for a merge: the child makes
    the merge, finds no one to answer, and ends by itself; the catalog is whole and merged.
    (How the child ends: the next test.)"""
    import signal
    import subprocess

    _with_a_second_shard(catalog_copy, tmp_path)
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER_THAT_ASKS, str(catalog_copy)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=merger_module._child_environment(),
    )
    child_pid = int(worker.stdout.readline())
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    worker.stdin.close()
    worker.stdout.close()
    try:
        for _ in range(6000):  # a bound against a hang, not a timing
            if _ended(child_pid):
                break
            time.sleep(0.1)
        assert _ended(child_pid)
    finally:
        if not _ended(child_pid):
            os.kill(child_pid, signal.SIGKILL)
    assert _shards(catalog_copy) == 1
    with Catalog.open(catalog_copy, create=False) as catalog:
        verdict = catalog.screen(tmp_path / "small.wav")
    assert verdict.verdict == "duplicate"


def test_a_child_whose_answer_no_one_reads_ends_quietly(catalog_copy: Path, tmp_path: Path):
    """The child's answer to a worker that is gone (its pipe closed): the merge made, the
    child returns 0 instead of raising, and nothing is left to flush into the closed pipe."""
    _with_a_second_shard(catalog_copy, tmp_path)
    read_end, write_end = os.pipe()
    os.close(read_end)
    answers = os.fdopen(write_end, "w")
    stdin = io.StringIO(ONE_SHARD.to_json() + "\nmerge\n")
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sys, "stdin", stdin)
            assert merger_module.main([str(catalog_copy)], answers) == 0
        answers.close()  # a flush into the closed pipe here would raise
    finally:
        with contextlib.suppress(OSError):
            answers.close()
    assert _shards(catalog_copy) == 1
