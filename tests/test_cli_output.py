"""Where the CLI's output goes wrong: a report is replaced whole or not at all, output that
cannot be written (a full disk, a reader that went away) is an error's exit code and never a
verdict's flag, and a report is never written over an upload or into the catalog."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from audiodup.errors import AudiodupError
from audiodup.report import write_atomically

UPLOADS = Path(__file__).resolve().parents[1] / "fixtures" / "audio" / "uploads"
CLEAN = UPLOADS / "unrelated_a.ogg"


def clean_env() -> dict[str, str]:
    """This environment without audiodup's settings, and with Python's output buffered as in a
    plain shell (output that is still buffered at exit is where a lost output shows)."""
    skip = ("AUDIODUP_", "PYTHONUNBUFFERED")
    return {k: v for k, v in os.environ.items() if not k.startswith(skip)}


def audiodup(*args: str, **options) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "audiodup", *args], env=clean_env(), timeout=600, **options
    )


def test_a_report_that_fails_to_write_leaves_the_earlier_one_whole(tmp_path, monkeypatch):
    report = tmp_path / "report.json"
    write_atomically(report, b'{"earlier": true}')

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(AudiodupError, match="No space left on device"):
        write_atomically(report, b'{"later": ' + b"1" * 100_000 + b"}")
    assert json.loads(report.read_text()) == {"earlier": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # no temporary left


def test_a_reader_that_goes_away_is_an_error_not_a_duplicate(pristine_catalog_dir: Path) -> None:
    """A clean upload exits with 0; with its output's reader gone before the verdict is
    written, with 2 (an error) and no traceback, never with 1 (a duplicate)."""
    assert audiodup("screen", "--db", str(pristine_catalog_dir), str(CLEAN)).returncode == 0
    for args in (
        ("screen", "--db", str(pristine_catalog_dir), str(CLEAN)),
        ("screen", "--json", "--top", "2", "--db", str(pristine_catalog_dir), str(CLEAN)),
        ("index", "list", "--db", str(pristine_catalog_dir)),
    ):
        child = subprocess.Popen(
            [sys.executable, "-m", "audiodup", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=clean_env(),
        )
        child.stdout.close()  # before the child has written anything
        stderr = child.stderr.read()
        assert child.wait(timeout=600) == 2, (args, stderr)
        assert stderr == b"", args


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_a_full_disk_under_stdout_is_one_error_line(pristine_catalog_dir: Path) -> None:
    for args in (("screen", str(CLEAN)), ("screen", "--json", str(CLEAN)), ("index", "list")):
        with open("/dev/full", "w") as full:
            done = audiodup(
                *args, "--db", str(pristine_catalog_dir), stdout=full, stderr=subprocess.PIPE
            )
        assert done.returncode == 2, done.stderr
        lines = done.stderr.decode().splitlines()
        assert lines == ["error: cannot write the output: No space left on device"], lines


def test_a_report_is_never_written_over_an_upload_or_into_the_catalog(
    catalog_copy: Path, tmp_path: Path
) -> None:
    upload = tmp_path / "victim.json"  # an upload whose name ends like a report
    shutil.copy(CLEAN, upload)
    before = upload.read_bytes()
    done = audiodup(
        "screen",
        "--db",
        str(catalog_copy),
        "--out",
        str(upload),
        str(upload),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: cannot write {upload}: it is one of the uploads"
    assert upload.read_bytes() == before
    inside = catalog_copy / "report.csv"
    for args in (("screen", str(CLEAN)), ("rescan",)):
        done = audiodup(
            *args,
            "--db",
            str(catalog_copy),
            "--out",
            str(inside),
            capture_output=True,
            text=True,
        )
        assert done.returncode == 2, done.stderr
        assert "it is inside the catalog folder" in done.stderr
        assert not inside.exists()


def test_a_picture_is_never_written_over_its_upload_or_into_the_catalog(
    catalog_copy: Path, tmp_path: Path
) -> None:
    """``explain --out``, checked as a report is: not the upload it draws, not a file of the
    catalog folder, nor a symbolic link to one (a PNG written through it would replace the
    catalog database)."""
    upload = tmp_path / "upload.png"  # an upload whose name ends like a picture
    shutil.copy(CLEAN, upload)
    database = catalog_copy / "catalog.sqlite"
    link = tmp_path / "pic.png"
    link.symlink_to(database)
    kept = {path: path.read_bytes() for path in (upload, database)}
    refused = {
        upload: "it is one of the uploads",
        link: "it is inside the catalog folder",
        catalog_copy / "pic.png": "it is inside the catalog folder",
    }
    for out, why in refused.items():
        done = audiodup(
            "explain",
            "--db",
            str(catalog_copy),
            str(upload),
            "1",
            "--out",
            str(out),
            capture_output=True,
            text=True,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip() == f"error: cannot write {out}: {why}"
    assert {path: path.read_bytes() for path in kept} == kept
    assert not (catalog_copy / "pic.png").exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_a_full_disk_under_stderr_is_an_error_s_exit_code(
    pristine_catalog_dir: Path, tmp_path: Path
) -> None:
    """A clean upload whose report line ('report written to ...') cannot reach stderr: exit 2,
    not 0 and not Python's 120 for a flush that fails at exit."""
    with open("/dev/full", "w") as full:
        done = audiodup(
            "screen",
            "--db",
            str(pristine_catalog_dir),
            "--out",
            str(tmp_path / "r.json"),
            str(CLEAN),
            stdout=subprocess.DEVNULL,
            stderr=full,
        )
    assert done.returncode == 2
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["clean"] == 1


def test_a_report_keeps_its_mode_and_is_written_through_a_symlink(tmp_path: Path) -> None:
    report = tmp_path / "reports" / "r.csv"
    report.parent.mkdir()
    write_atomically(report, b"first")
    report.chmod(0o600)
    link = tmp_path / "latest.csv"
    link.symlink_to(report)
    write_atomically(link, b"second")
    assert link.is_symlink() and report.read_bytes() == b"second"
    assert report.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in report.parent.iterdir()) == ["r.csv"]


def test_a_log_of_stderr_gets_no_progress_bar_and_no_blank_line(tmp_path: Path) -> None:
    """Redirected to a file, stderr holds lines a person or a log collector reads: the
    progress bars draw only on a terminal."""
    db = tmp_path / "catalog"
    catalog = Path(__file__).resolve().parents[1] / "fixtures" / "audio" / "catalog"
    for args in (("index", "add", "--db", str(db), str(catalog)), ("rescan", "--db", str(db))):
        done = audiodup(*args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert done.returncode == 0, done.stderr
        assert all(line.strip() for line in done.stderr.splitlines()), repr(done.stderr)
