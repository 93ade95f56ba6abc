"""Files replaced whole (audiodup.durable): the earlier file or the new one, never a mix, and
no temporary file left behind."""

import errno
import os
from pathlib import Path

import pytest

from audiodup.durable import replace_file
from audiodup.service.auth import KeyFile


def test_a_write_that_fails_leaves_the_earlier_file_and_no_temporary(tmp_path: Path) -> None:
    final = tmp_path / "index.bin"
    replace_file(final, lambda handle: handle.write(b"earlier"))

    def half_then_full(handle) -> None:
        handle.write(b"half of the new")
        raise OSError(errno.ENOSPC, "No space left on device")

    for tmp in (None, tmp_path / ".tmp-index.bin"):
        with pytest.raises(OSError, match="No space left"):
            replace_file(final, half_then_full, tmp=tmp)
        assert final.read_bytes() == b"earlier"
        assert [p.name for p in tmp_path.iterdir()] == ["index.bin"]


def test_a_fixed_temporary_left_by_a_crash_is_written_over(tmp_path: Path) -> None:
    final, stale = tmp_path / "keys.json", tmp_path / ".keys.json.tmp"
    stale.write_bytes(b"left by a killed writer, longer than the new content")
    replace_file(final, lambda handle: handle.write(b"new"), tmp=stale, mode=0o600)
    assert final.read_bytes() == b"new" and not stale.exists()
    assert final.stat().st_mode & 0o777 == 0o600


def test_a_random_temporary_never_follows_a_planted_symlink(tmp_path: Path, monkeypatch) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    monkeypatch.setattr("secrets.token_hex", lambda n: "0" * (2 * n))
    (tmp_path / f".audiodup-{'0' * 16}.tmp").symlink_to(victim)
    with pytest.raises(FileExistsError):
        replace_file(tmp_path / "report.json", lambda handle: handle.write(b"report"))
    assert victim.read_bytes() == b"untouched"


def test_a_long_file_name_gets_a_temporary_of_its_own_length(tmp_path: Path) -> None:
    final = tmp_path / ("r" * (os.pathconf(tmp_path, "PC_NAME_MAX") - 5) + ".json")
    replace_file(final, lambda handle: handle.write(b"{}"))
    assert final.read_bytes() == b"{}"


def test_the_key_file_is_written_whole_and_private(tmp_path: Path) -> None:
    keys = KeyFile(tmp_path / "service" / "keys.json")
    keys.create("ops", ["screen"])
    keys.create("review", ["review"])
    assert keys.path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in keys.path.parent.iterdir() if not p.name.endswith(".lock")) == [
        "keys.json"
    ]
    assert {r.name for r in KeyFile(keys.path).records()} == {"ops", "review"}


def test_a_fixed_temporary_that_is_a_symlink_is_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    (tmp_path / ".tmp-h.faiss").symlink_to(victim)
    replace_file(tmp_path / "h.faiss", lambda h: h.write(b"index"), tmp=tmp_path / ".tmp-h.faiss")
    assert victim.read_bytes() == b"untouched" and (tmp_path / "h.faiss").read_bytes() == b"index"
