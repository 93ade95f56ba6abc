"""The service's shard merger: due merges made in a child process, failures logged, the child
stopped with the worker."""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import sys
import time
from pathlib import Path

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


def test_a_failed_merge_is_logged_and_the_next_request_merges(
    catalog_copy: Path, tmp_path: Path, monkeypatch, caplog
):
    _with_a_second_shard(catalog_copy, tmp_path)
    merger = ShardMerger(catalog_copy, ONE_SHARD)
    failing = [
        sys.executable,
        "-c",
        "import sys; print('no room: disk full', file=sys.stderr); sys.exit(1)",
    ]
    try:
        with monkeypatch.context() as patch, caplog.at_level(logging.WARNING, "audiodup.service"):
            patch.setattr(merger, "command", lambda: failing)
            merger.request()
            assert merger.wait_idle(600.0)
        assert merger.merges == 0 and len(merger.children) == 1
        (record,) = [r for r in caplog.records if r.getMessage() == "shards not merged"]
        assert record.fields["error"] == "no room: disk full"
        assert _shards(catalog_copy) == 2
        merger.request()
        assert merger.wait_idle(600.0)
        assert merger.merges == 1 and len(merger.children) == 2
    finally:
        merger.close()
    assert _shards(catalog_copy) == 1
    with Catalog.open(catalog_copy, create=False, settings=ONE_SHARD) as catalog:
        assert catalog.verify() == []
        assert catalog.screen(tmp_path / "small.wav").verdict == "duplicate"


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
    # the child is gone (reaped by the merger, so its id is no longer this process's child)
    try:
        os.waitpid(pid, os.WNOHANG)
        raise AssertionError("the child still runs")
    except ChildProcessError:
        pass
    assert _shards(catalog_copy) == 2


def test_the_child_s_error_is_one_line(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(DEFAULT_SETTINGS.to_json()))
    assert merger_module.main([str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("no catalog at")
