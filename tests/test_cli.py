"""End-to-end tests of the command line: typer's CliRunner on ``audiodup.cli.app`` in-process,
and the installed ``audiodup`` console script as a real process."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from cli_runner import run_main
from click.testing import Result
from typer.testing import CliRunner

import audiodup.cli
from audiodup import Catalog, Verdict
from audiodup.cli import app
from audiodup.results import Match
from audiodup.schema import validate
from audiodup.settings import RECIPE
from audiodup.synth import synthesize_work

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "audio"
CATALOG_DIR = FIXTURES / "catalog"
UPLOADS_DIR = FIXTURES / "uploads"
MATCH_KEYS = {
    "work_id",
    "path",
    "score",
    "false_match_probability",
    "tempo_ratio",
    "pitch_shift_semitones",
    "query_start_s",
    "query_end_s",
    "ref_start_s",
    "ref_end_s",
    "coverage",
    "matched_hashes",
    "relation",
}
SR = 22050


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner(env=env).invoke(app, [str(a) for a in args])


def console_script() -> str:
    found = shutil.which("audiodup") or str(Path(sys.executable).parent / "audiodup")
    assert Path(found).exists(), "the audiodup console script is not installed (pip install -e .)"
    return found


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


@pytest.fixture
def db(catalog_copy: Path) -> Path:
    """A private copy of the six-work fixture catalog."""
    return catalog_copy


@pytest.fixture
def bad_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, list[Path]]]:
    """A folder with one good file and four bad entries: a corrupt file, a socket and a
    two-link symlink loop. Yields ``(folder, bad paths)``."""
    folder = tmp_path / "in"
    folder.mkdir()
    monkeypatch.chdir(folder)  # bind the socket by a short relative name (AF_UNIX limit)
    sf.write(folder / "good.wav", synthesize_work(50, duration_s=8.0, sr=SR), SR)
    corrupt = folder / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + np.random.default_rng(7).bytes(3000))
    sock_path = folder / "sock.wav"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(sock_path.name)
    loop_a, loop_b = folder / "loop_a.wav", folder / "loop_b.wav"
    os.symlink(loop_a, loop_b)
    os.symlink(loop_b, loop_a)
    try:
        yield folder, [corrupt, loop_a, loop_b, sock_path]
    finally:
        sock.close()


def add_non_utf8_file(folder: Path, seed: int = 51) -> str:
    """A valid audio file whose name is not UTF-8 (Latin-1 bytes); returns its str path."""
    raw = os.path.join(os.fsencode(folder), b"chanson_\xe9t\xe9.wav")
    sf.write(raw, synthesize_work(seed, duration_s=8.0, sr=SR), SR)
    return os.fsdecode(raw)


# --- index add ------------------------------------------------------------------------------


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The single ``error: ...`` line a failed command printed, with no traceback."""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_add_then_add_again(tmp_path: Path) -> None:
    db = tmp_path / "db"
    first = run("index", "add", "--db", db, CATALOG_DIR)
    assert first.exit_code == 0, first.output
    assert "added 6" in first.stdout
    second = run("index", "add", "--db", db, CATALOG_DIR)
    assert second.exit_code == 0, second.output
    assert "added 0" in second.stdout
    assert "already present 6" in second.stdout
    with Catalog.open(db) as catalog:
        assert len(catalog.works()) == 6


def test_add_uses_the_environment_catalog(tmp_path: Path) -> None:
    result = run("index", "add", CATALOG_DIR / "work_00.ogg", env={"AUDIODUP_DB": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "catalog.sqlite").exists()


def test_add_folder_with_bad_files_completes_the_batch(
    tmp_path: Path, bad_folder: tuple[Path, list[Path]]
) -> None:
    folder, bad = bad_folder
    result = run("index", "add", "--db", tmp_path / "db", folder)
    assert result.exit_code == 2, result.output
    assert "added 1, identical 0, already present 0, failed 4" in result.stdout
    with Catalog.open(tmp_path / "db") as catalog:
        assert [Path(w.path).name for w in catalog.works()] == ["good.wav"]
    lines = error_lines(result.stderr)
    assert len(lines) == len(bad), result.stderr
    # one line each: nothing else on stderr (a wrapped cause would leave a continuation line)
    assert [x for x in result.stderr.splitlines() if x.strip()] == lines, result.stderr
    for path in bad:
        (line,) = [x for x in lines if x.startswith(f"error: {path}: ")]
        assert len(line) > len(f"error: {path}: ") + 3  # a cause follows the path


def test_add_folder_names_the_files_it_skips(tmp_path: Path) -> None:
    """Review finding 3: copies in a folder under names without an audio extension (none,
    "x.mp3 " with a trailing space, another extension) were left out silently. One note on
    stderr counts them and names the first few as user text (quoted when a space or a control
    character is in the name, escaped); the exit code stays 0; named, they are read."""
    folder = tmp_path / "in"
    folder.mkdir()
    sf.write(folder / "one.wav", synthesize_work(55, duration_s=8.0, sr=SR), SR)
    copies = ["a\nline", "copy", "copy.mp3 ", "copy.xyz"]
    for seed, name in enumerate(copies, 56):
        sf.write(folder / name, synthesize_work(seed, duration_s=8.0, sr=SR), SR, format="WAV")
    db = tmp_path / "db"
    result = run("index", "add", "--db", db, folder)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "added 1, identical 0, already present 0, failed 0"
    shown = f'"{folder}/a\\\\nline", {folder}/copy, "{folder}/copy.mp3 "'
    assert result.stderr.splitlines() == [
        f"note: skipped 4 files in folders without an audio extension (e.g. {shown}); "
        "name them explicitly to add them"
    ]
    named = run("index", "add", "--db", db, *(folder / name for name in copies))
    assert named.exit_code == 0 and "added 4," in named.stdout, named.output
    assert named.stderr == ""
    with Catalog.open(db) as catalog:
        assert len(catalog.works()) == 5
    (tmp_path / "other" / "cover.jpg").parent.mkdir()
    (tmp_path / "other" / "cover.jpg").write_bytes(b"\xff\xd8")
    alone = run("index", "add", "--db", db, tmp_path / "other")
    assert alone.exit_code == 0 and "added 0," in alone.stdout, alone.output
    assert alone.stderr.splitlines() == [
        f"note: skipped 1 file in folders without an audio extension ({tmp_path}/other/"
        "cover.jpg); name them explicitly to add them"
    ]


def test_add_file_with_non_utf8_name(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    sf.write(folder / "plain.wav", synthesize_work(52, duration_s=8.0, sr=SR), SR)
    name = add_non_utf8_file(folder)
    result = run("index", "add", "--db", tmp_path / "db", folder)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "added 2" in result.stdout
    with Catalog.open(tmp_path / "db") as catalog:
        assert len(catalog.works()) == 2
        verdict = catalog.screen(name)
    assert verdict.verdict == "duplicate", verdict


def names_shown_alike(folder: Path) -> tuple[str, str]:
    """In ``folder``: a file named with the byte 0xFF and one whose name spells a backslash,
    ``x``, ``ff``, holding other audio of the same size and modification time; their paths."""
    folder.mkdir()
    byte_name = os.fsdecode(os.path.join(os.fsencode(folder), b"x\xff.wav"))
    spelled = str(folder / "x\\xff.wav")
    for seed, name in ((53, byte_name), (54, spelled)):
        sf.write(os.fsencode(name), synthesize_work(seed, duration_s=8.0, sr=SR), SR)
        os.utime(name, (1_000_000_000, 1_000_000_000))
    assert os.path.getsize(byte_name) == os.path.getsize(spelled)
    return byte_name, spelled


def test_names_that_print_alike_stay_apart(tmp_path: Path) -> None:
    """The two files of :func:`names_shown_alike`: two works, shown alike but each recorded
    under its own path, and a rescan reads each from its own file (none falls back to its
    stored fingerprint)."""
    from audiodup.rescan import rescan

    byte_name, spelled = names_shown_alike(tmp_path / "in")
    db = tmp_path / "db"
    for name in (byte_name, spelled):
        result = run("index", "add", "--db", db, name)
        assert result.exit_code == 0 and "added 1," in result.stdout, result.output
    with Catalog.open(db) as catalog:
        shown = [w.path for w in catalog.works()]
        files = sorted(catalog.store.work_files().values())
        report = rescan(catalog)
    assert shown == [spelled, spelled]  # shown alike, as ``\\xNN`` shows undecodable bytes
    assert files == sorted([byte_name, spelled])
    assert report.scanned == 2 and not report.fallbacks and not report.errors


def test_the_spelled_name_first_does_not_hide_the_byte_name(tmp_path: Path) -> None:
    """The README audit's order: the spelled-out name added first, then the byte name holding
    the same audio (same size and modification time). The byte name is an upload of its own,
    not the spelled file "already present" (a catalog written before kept a byte name as its
    shown text, which is the spelled file's path)."""
    byte_name, spelled = names_shown_alike(tmp_path / "in")
    os.replace(spelled, tmp_path / "spare.wav")
    shutil.copy2(os.fsencode(byte_name), spelled)
    db = tmp_path / "db"
    first = run("index", "add", "--db", db, spelled)
    assert first.exit_code == 0 and "added 1," in first.stdout, first.output
    second = run("index", "add", "--db", db, byte_name)
    assert second.exit_code == 0 and "identical 1," in second.stdout, second.output
    with Catalog.open(db) as catalog:
        assert len(catalog.store.uploads()) == 2  # shown alike
        stored = catalog.store.db.execute("SELECT source_path FROM uploads").fetchall()
    assert sorted(os.fsencode(v) if isinstance(v, str) else v for (v,) in stored) == sorted(
        [os.fsencode(byte_name), os.fsencode(spelled)]
    )
    again = run("index", "add", "--db", db, byte_name)
    assert "already present 1," in again.stdout, again.output
    # the spelled-out file deleted: the byte name is still its own upload, not "present"
    os.remove(spelled)
    db2 = tmp_path / "db2"
    shutil.copy2(os.fsencode(byte_name), spelled)
    assert "added 1," in run("index", "add", "--db", db2, spelled).stdout
    os.remove(spelled)
    last = run("index", "add", "--db", db2, byte_name)
    assert last.exit_code == 0 and "identical 1," in last.stdout, last.output


def test_metadata_rows_and_excerpts_name_the_exact_file(tmp_path: Path) -> None:
    """The same two names shown alike: a metadata row naming the spelled-out file gives its
    title to that file alone, and the reports take excerpts from each work's own file."""
    from audiodup.report_html import _work_file

    folder = tmp_path / "in"
    byte_name, spelled = names_shown_alike(folder)
    table = tmp_path / "m.csv"
    table.write_text(f"path,title\n{spelled},SPELLED\n")
    db = tmp_path / "db"
    result = run("index", "add", "--db", db, "--metadata", table, folder)
    assert result.exit_code == 0 and "added 2," in result.stdout, result.output
    with Catalog.open(db) as catalog:
        files = catalog.store.work_files()
        titles = {files[w.work_id]: w.title for w in catalog.works()}
        shown = {files[w.work_id]: w.path for w in catalog.works()}
        excerpt_files = {_work_file(catalog, w, shown[f]) for w, f in files.items()}
    assert titles == {spelled: "SPELLED", byte_name: None}
    assert excerpt_files == {byte_name, spelled}


def test_screen_report_reads_the_upload_not_its_shown_name(tmp_path: Path) -> None:
    """``screen --out x.html`` draws the picture and the excerpt of an upload whose name is not
    UTF-8 from that file, not from the path its shown name spells (which does not exist)."""
    byte_name, spelled = names_shown_alike(tmp_path / "in")
    os.remove(spelled)
    db, report = tmp_path / "db", tmp_path / "r.html"
    assert run("index", "add", "--db", db, byte_name).exit_code == 0
    result = run("screen", "--db", db, "--out", report, "--", byte_name)
    assert result.exit_code == 1, result.output
    page = report.read_text()
    assert "No picture" not in page and "<img" in page
    assert "audio not available" not in page and page.count("<audio") == 2


def test_a_name_recorded_as_text_before_is_still_present(tmp_path: Path) -> None:
    """A catalog written before names were recorded by their bytes holds a name that is not
    UTF-8 as its shown text: adding that unchanged file again records nothing new."""
    import sqlite3

    folder = tmp_path / "in"
    folder.mkdir()
    byte_name = os.fsdecode(os.path.join(os.fsencode(folder), b"x\xff.wav"))
    sf.write(os.fsencode(byte_name), synthesize_work(53, duration_s=8.0, sr=SR), SR)
    db = tmp_path / "db"
    assert run("index", "add", "--db", db, folder).exit_code == 0
    shown = str(folder / "x\\xff.wav")
    with sqlite3.connect(db / "catalog.sqlite") as old:  # as the code before wrote it
        old.execute("UPDATE works SET path = ?", (shown,))
        old.execute("UPDATE uploads SET source_path = ?", (shown,))
        old.execute("DELETE FROM meta WHERE key = 'path_bytes'")  # nor did it mark its names
    again = run("index", "add", "--db", db, folder)
    assert again.exit_code == 0 and "already present 1" in again.stdout, again.output
    with Catalog.open(db) as catalog:
        assert len(catalog.uploads()) == 1


def test_console_script_bad_folder_has_no_traceback(
    tmp_path: Path, bad_folder: tuple[Path, list[Path]]
) -> None:
    """The installed entry point, as a user runs it, on every kind of bad entry at once."""
    folder, bad = bad_folder
    add_non_utf8_file(folder)
    proc = subprocess.run(
        [console_script(), "index", "add", "--db", str(tmp_path / "db"), str(folder)],
        capture_output=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "AUDIODUP_DB"},
    )
    stdout = proc.stdout.decode("utf-8", "surrogateescape")
    stderr = proc.stderr.decode("utf-8", "surrogateescape")
    assert "Traceback" not in stderr
    assert "internal error" not in stderr, stderr
    assert proc.returncode == 2, (stdout, stderr)
    assert "added 2, identical 0, already present 0, failed 4" in stdout
    assert len(error_lines(stderr)) == len(bad), stderr
    assert [x for x in stderr.splitlines() if x.strip()] == error_lines(stderr), stderr


# --- screen ---------------------------------------------------------------------------------


def screen_json(db: Path, *paths: Path | str, extra: tuple[str, ...] = ()) -> tuple[int, list]:
    """The exit code and the ``results`` of ``screen --json`` (one entry per input)."""
    result = run("screen", "--db", db, "--json", *extra, *paths)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, json.loads(result.stdout)["results"]


def test_screen_json_shape(db: Path, tmp_path: Path) -> None:
    unreadable = tmp_path / "unreadable.wav"
    unreadable.write_bytes(b"definitely not audio" * 50)
    inputs = [UPLOADS_DIR / "stretch_1.25_work_02.ogg", UPLOADS_DIR / "unrelated_a.ogg", unreadable]
    code, data = screen_json(db, *inputs)
    assert code == 3  # a duplicate (1) and an unreadable file (2)
    assert isinstance(data, list) and len(data) == 3
    assert [item["path"] for item in data] == [str(p) for p in inputs]

    duplicate, unrelated, error = data
    assert duplicate["verdict"] == "duplicate"
    assert duplicate["matches"], duplicate
    for match in duplicate["matches"]:
        assert set(match) >= MATCH_KEYS, set(match) ^ MATCH_KEYS
        assert match["relation"] in ("same_recording", "same_composition")
        assert isinstance(match["work_id"], int)
        assert isinstance(match["matched_hashes"], int)
        for key in MATCH_KEYS - {"work_id", "path", "relation", "matched_hashes"}:
            assert isinstance(match[key], int | float) and math.isfinite(match[key]), key
        assert 0 <= match["coverage"] <= 1
        assert 0 <= match["false_match_probability"] <= 1
    top = duplicate["matches"][0]
    assert Path(top["path"]).name == "work_02.ogg"
    assert top["tempo_ratio"] == pytest.approx(1.25, rel=0.02)

    assert unrelated["verdict"] == "clean"
    assert unrelated["matches"] == []
    assert set(error) == set(duplicate)  # an error is an entry of the same shape
    assert (error["verdict"], error["matches"]) == ("error", [])
    assert error["error"] and duplicate["error"] is None


def test_screen_json_probabilities_keep_their_precision(db: Path) -> None:
    """A false-match probability of 1e-40 must not be printed as 0.0 while its score says 40."""
    code, data = screen_json(db, UPLOADS_DIR / "excerpt_15s_work_00.ogg")
    assert code == 1
    for match in data[0]["matches"]:
        if match["score"] < 300:
            assert match["false_match_probability"] > 0, match
            assert -math.log10(match["false_match_probability"]) == pytest.approx(
                match["score"], abs=0.01
            )


def test_screen_top_limits_matches(db: Path) -> None:
    code, data = screen_json(db, UPLOADS_DIR / "padded_work_01.ogg", extra=("--top", "1"))
    assert code == 1
    assert len(data[0]["matches"]) == 1


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        (["unrelated_a.ogg", "unrelated_b.ogg"], 0),
        (["unrelated_a.ogg", "nightcore_work_03.ogg"], 1),
        (["missing.wav", "unrelated_b.ogg"], 2),
        (["missing.wav", "mp3_work_02.mp3"], 3),
        (["missing.wav"], 2),
    ],
    ids=["clean", "duplicate", "unreadable", "unreadable+duplicate", "only-unreadable"],
)
def test_screen_exit_codes(db: Path, inputs: list[str], expected: int) -> None:
    paths = [UPLOADS_DIR / name for name in inputs]
    json_result = run("screen", "--db", db, "--json", *paths)
    assert json_result.exit_code == expected, json_result.output
    table_result = run("screen", "--db", db, *paths)
    assert table_result.exit_code == expected, table_result.output


@pytest.fixture
def short_cap(monkeypatch: pytest.MonkeyPatch):
    """Settings that decode at most 30 s, the CLI made to open catalogs with them (it opens
    them with the default recipe), and ``(work, other, rate)``: a catalog fixture's samples and
    an unrelated upload's, to build files longer than the cap."""
    import dataclasses

    from audiodup.settings import DEFAULT_SETTINGS

    settings = dataclasses.replace(DEFAULT_SETTINGS, max_duration_s=30.0)
    monkeypatch.setattr(
        audiodup.cli, "_open", lambda db, **_: Catalog.open(db, create=False, settings=settings)
    )
    work, sr = sf.read(CATALOG_DIR / "work_02.ogg", dtype="float32")
    other, other_sr = sf.read(UPLOADS_DIR / "unrelated_a.ogg", dtype="float32")
    assert other_sr == sr
    return settings, (work, other, sr)


def test_an_upload_longer_than_the_cap_with_no_duplicate_in_it_is_not_called_clean(
    tmp_path: Path, short_cap
) -> None:
    """A copy after ``max_duration_s`` of other music is never screened: such an upload gets a
    warning line and the error flag (the service refuses it), while a copy within the cap is a
    duplicate as ever."""
    settings, (work, other, sr) = short_cap
    db = tmp_path / "catalog"
    with Catalog.open(db, settings=settings) as catalog:
        catalog.add_paths([CATALOG_DIR])
    hidden, first = tmp_path / "copy after 32 s.wav", tmp_path / "copy first.wav"
    sf.write(hidden, np.concatenate([other[: 32 * sr], work]), sr)
    sf.write(first, np.concatenate([work, other[: 32 * sr]]), sr)

    result = run("screen", "--db", db, hidden)
    assert result.exit_code == 2, result.output
    assert "clean (first 30 s only)" in result.stdout  # the table, not a plain clean
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("warning: ")]
    assert str(hidden) in line and "only its first 30.0 s were screened" in line
    as_json = run("screen", "--db", db, "--json", hidden)
    assert as_json.exit_code == 2
    document = json.loads(as_json.stdout)
    (entry,) = document["results"]
    assert entry["truncated"] and entry["verdict"] == "clean"
    assert document["summary"]["partly_screened"] == 1 and document["summary"]["error"] == 0
    validate(document, "screen")
    # the reports say it too: a CSV column, and a note and a count in the HTML
    assert run("screen", "--db", db, hidden, first, "--out", tmp_path / "r.csv").exit_code == 3
    rows = list(csv.DictReader((tmp_path / "r.csv").open(newline="")))
    assert [(r["verdict"], r["partly_screened"]) for r in rows] == [
        ("clean", "True"),
        ("duplicate", "False"),
    ]
    assert run("screen", "--db", db, hidden, "--out", tmp_path / "r.html").exit_code == 2
    page = (tmp_path / "r.html").read_text()
    assert "first 30 s only" in page
    assert "<b>1</b><span>screened only to the decoding limits</span>" in page

    result = run("screen", "--db", db, first)
    assert result.exit_code == 1, result.output  # a duplicate: known, whatever follows
    assert "warning:" not in result.stderr and "only)" not in result.stdout


def test_a_work_longer_than_the_cap_is_added_with_a_warning_that_its_rest_is_not_indexed(
    tmp_path: Path, short_cap
) -> None:
    """Only the first ``max_duration_s`` of a file go into the catalog: ``index add`` says so
    for that file (added, or identical on that part to a work), stays quiet for a shorter one,
    and the Python API marks the result ``truncated``."""
    settings, (work, other, sr) = short_cap
    db = tmp_path / "catalog"
    with Catalog.open(db, settings=settings):
        pass
    long_file, short_file = tmp_path / "long mix.wav", tmp_path / "short.wav"
    sf.write(long_file, np.concatenate([other[: 32 * sr], work]), sr)
    sf.write(short_file, other[: 20 * sr], sr)

    result = run("index", "add", "--db", db, long_file, short_file)
    assert result.exit_code == 0, result.output
    assert "added 2" in result.stdout
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("warning: ")]
    assert str(long_file) in line and "only its first 30.0 s are in the catalog" in line

    again = tmp_path / "the same mix, another ending.wav"
    sf.write(again, np.concatenate([other[: 32 * sr], work[::-1]]), sr)
    result = run("index", "add", "--db", db, again)
    assert result.exit_code == 0 and "identical 1" in result.stdout, result.output
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("warning: ")]
    assert str(again) in line and "in its first 30.0 s" in line and "not compared" in line

    with Catalog.open(db, create=False, settings=settings) as catalog:
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        sf.write(fresh / "long.wav", np.concatenate([work, other[: 32 * sr]]), sr)
        sf.write(fresh / "short.wav", work[: 20 * sr], sr)
        added = {Path(r.path).name: r for r in catalog.add_paths([fresh])}
    assert added["long.wav"].truncated and added["long.wav"].duration_s == pytest.approx(30.0)
    assert not added["short.wav"].truncated


def test_a_rescan_lists_the_works_it_saw_only_to_the_cap(tmp_path: Path, short_cap) -> None:
    """A work whose file runs past ``max_duration_s`` is screened, and indexed, only to there: a
    rescan lists it in ``partly_scanned`` (JSON, valid against the schema; a note line; the
    HTML report's notes), a shorter work is not listed, and the exit code is the one its pairs
    make."""
    from audiodup.rescan import rescan
    from audiodup.rescan.serialise import report_to_dict

    settings, (work, other, sr) = short_cap
    songs = tmp_path / "songs"
    songs.mkdir()
    sf.write(songs / "long mix.wav", np.concatenate([other[: 32 * sr], work]), sr)
    sf.write(songs / "short.wav", work[: 20 * sr], sr)
    db = tmp_path / "catalog"
    with Catalog.open(db, settings=settings) as catalog:
        added = {Path(r.path).name: r.work_id for r in catalog.add_paths([songs])}
        report = rescan(catalog)
    assert not report.pairs  # the copy of short.wav inside the long mix lies past the cap
    (partly,) = report.partly_scanned
    assert partly.work_id == added["long mix.wav"] and partly.path.endswith("long mix.wav")
    assert partly.duration_s == pytest.approx(30.0)
    assert "only its first 30.0 s were screened" in partly.note
    document = report_to_dict(report)
    assert document["summary"]["partly_scanned"] == 1
    validate(document, "rescan")

    out, page = tmp_path / "report.json", tmp_path / "report.html"
    result = run("rescan", "--db", db, "--out", out)
    assert result.exit_code == (4 if report.suspect_pairs else 0), result.output
    (line,) = [x for x in result.stderr.splitlines() if "only its first" in x]
    assert line.startswith(f"note: work {added['long mix.wav']}: ")
    written = json.loads(out.read_text())
    assert [(p["work_id"], p["duration_s"]) for p in written["partly_scanned"]] == [
        (added["long mix.wav"], pytest.approx(30.0))
    ]
    validate(written, "rescan")
    assert run("rescan", "--db", db, "--out", page).exit_code == result.exit_code
    assert f"work {added['long mix.wav']} <code>" in page.read_text()


def test_a_work_at_the_cap_is_listed_also_when_screened_from_its_stored_fingerprint(
    tmp_path: Path, short_cap
) -> None:
    """With its file gone, a work stored at the cap's length is still known to be cut: its
    duration is the cap's."""
    from audiodup.rescan import rescan

    settings, (work, other, sr) = short_cap
    songs = tmp_path / "songs"
    songs.mkdir()
    sf.write(songs / "long mix.wav", np.concatenate([other[: 32 * sr], work]), sr)
    sf.write(songs / "short.wav", work[: 20 * sr], sr)
    with Catalog.open(tmp_path / "catalog", settings=settings) as catalog:
        added = {Path(r.path).name: r.work_id for r in catalog.add_paths([songs])}
        (songs / "long mix.wav").unlink()
        report = rescan(catalog)
    assert [n.work_id for n in report.fallbacks] == [added["long mix.wav"]]
    assert [n.work_id for n in report.partly_scanned] == [added["long mix.wav"]]


def test_a_file_as_long_as_the_cap_is_not_listed_when_the_rescan_reads_it(
    tmp_path: Path, short_cap
) -> None:
    """A file of exactly ``max_duration_s`` is screened whole: read from its file, decoding says
    nothing was cut, and it is not listed. With the file gone only its stored length is known,
    the cap's, and it is listed: a cut work's stored audio is as long."""
    from audiodup.rescan import rescan

    settings, (work, other, sr) = short_cap
    songs = tmp_path / "songs"
    songs.mkdir()
    sf.write(songs / "exactly 30 s.wav", other[: 30 * sr], sr)
    sf.write(songs / "short.wav", work[: 20 * sr], sr)
    with Catalog.open(tmp_path / "catalog", settings=settings) as catalog:
        added = {Path(r.path).name: r for r in catalog.add_paths([songs])}
        exact = added["exactly 30 s.wav"]
        assert exact.duration_s == pytest.approx(30.0) and not exact.truncated
        assert not rescan(catalog).partly_scanned
        (songs / "exactly 30 s.wav").unlink()
        report = rescan(catalog)
    assert [n.work_id for n in report.fallbacks] == [exact.work_id]
    assert [n.work_id for n in report.partly_scanned] == [exact.work_id]


def test_screen_table_output(db: Path) -> None:
    result = run(
        "screen", "--db", db, UPLOADS_DIR / "pitch_-3_work_03.ogg", UPLOADS_DIR / "missing.wav"
    )
    assert result.exit_code == 3  # a duplicate and a missing file
    assert "pitch_-3_work_03.ogg" in result.stdout
    assert "duplicate" in result.stdout
    assert "work_03.ogg" in result.stdout
    (line,) = error_lines(result.stderr)
    assert str(UPLOADS_DIR / "missing.wav") in line


def test_screen_shows_the_hashes_a_match_left_out_as_shared_material(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy whose line crosses a sample other works hold: the table says how many of its
    hashes lie on it, and the JSON carries the count."""
    shared = Match(
        work_id=4, path="w04.wav", title=None, relation="same_recording", score=20.0,
        false_match_probability=1e-20, tempo_ratio=1.0, pitch_shift_semitones=0.0,
        query_start_s=0.0, query_end_s=15.0, ref_start_s=20.0, ref_end_s=35.0, coverage=1.0,
        coverage_s=15.0, matched_hashes=30, chroma_similarity=None, matched_on_shared_material=9,
    )  # fmt: skip

    def screen(self, path, top_k: int = 5) -> Verdict:
        return Verdict(path=str(path), verdict="duplicate", matches=[shared])

    monkeypatch.setattr(Catalog, "screen", screen)
    table = run("screen", "--db", db, "upload.wav")
    assert "30, 9 on shared material" in " ".join(table.stdout.split())
    document = json.loads(run("screen", "--db", db, "--json", "upload.wav").stdout)
    assert document["results"][0]["matches"][0]["matched_on_shared_material"] == 9
    validate(document, "screen")


@pytest.mark.parametrize("command", [["index", "add"], ["screen"]])
def test_an_empty_path_is_a_usage_error_not_the_current_folder(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty argument (an unset shell variable) read as ``Path("")`` is the current folder:
    ``index add`` would index all of it. It is refused before any work, as is an empty
    ``--db``."""
    (tmp_path / "song.wav").write_bytes(b"")  # what the current folder holds
    monkeypatch.chdir(tmp_path)
    catalog = tmp_path / "catalog"
    for args in ([*command, "--db", catalog, ""], [*command, "--db", "", "song.wav"]):
        result = run(*args)
        assert result.exit_code == 2
        assert "an empty path names nothing" in result.output
        assert sorted(p.name for p in tmp_path.iterdir()) == ["song.wav"]


@pytest.mark.parametrize("holds", [[], ["notes.txt"]], ids=["missing", "other files"])
def test_api_keys_are_never_written_where_there_is_no_catalog(
    tmp_path: Path, holds: list[str], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A key file lives in its catalog: in a folder without one, ``keys`` says so (one line,
    exit 2) and writes nothing there, which would later keep ``index add`` from making it
    a catalog."""
    folder = tmp_path / "nocatalog"
    for name in holds:
        folder.mkdir(exist_ok=True)
        (folder / name).write_text("mine")
    for args in (["create", "ops", "--scope", "admin"], ["list"], ["revoke", "ops"]):
        code, out, err_text = run_main(["keys", *args, "--db", str(folder)], monkeypatch, capsys)
        assert code == 2 and out == ""
        assert err_text == f"error: no catalog at {folder} (run 'audiodup index add' first)\n"
    assert sorted(p.name for p in folder.iterdir()) == holds if holds else not folder.exists()


def test_index_add_stopped_by_a_full_disk_says_what_it_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Batches committed before the disk filled stay: the error comes with their counts."""
    from audiodup.errors import DiskFullError
    from audiodup.store import CatalogStore

    add, commit, calls = Catalog.add_paths, CatalogStore.commit_batch, []
    monkeypatch.setattr(
        Catalog, "add_paths", lambda self, *a, **k: add(self, *a, batch_size=2, **k)
    )

    def filling(self, items):
        calls.append(len(items))
        if len(calls) == 2:
            raise DiskFullError("cannot add works: the disk is full; free some space")
        return commit(self, items)

    monkeypatch.setattr(CatalogStore, "commit_batch", filling)
    db = tmp_path / "catalog"
    code, out, err_text = run_main(
        ["index", "add", "--db", str(db), str(CATALOG_DIR)], monkeypatch, capsys
    )
    assert code == 2 and out == ""
    assert err_text.splitlines() == [
        "committed before the error: added 2, identical 0, already present 0, failed 0",
        "error: cannot add works: the disk is full; free some space",
    ]
    with Catalog.open(db, create=False) as catalog:
        assert len(catalog.uploads()) == 2


def test_api_keys_on_a_full_disk_are_one_line_and_unchanged(
    db: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import errno

    import audiodup.service.auth as auth

    assert (
        run_main(
            ["keys", "create", "ops", "--scope", "admin", "--db", str(db)], monkeypatch, capsys
        )[0]
        == 0
    )
    before = (db / "service" / "keys.json").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(auth, "replace_file", full)
    for args in (["create", "other", "--scope", "screen"], ["revoke", "ops"]):
        code, out, err_text = run_main(["keys", *args, "--db", str(db)], monkeypatch, capsys)
        assert code == 2 and out == ""
        assert err_text.startswith("error: cannot write ") and err_text.count("\n") == 1
        assert "No space left on device; the keys are unchanged" in err_text
    assert (db / "service" / "keys.json").read_bytes() == before


@pytest.mark.parametrize("argv", [["index", "list"], ["screen", "x.ogg"], ["index", "stats"]])
def test_ctrl_c_in_a_command_is_one_line_and_exit_130(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A review found Ctrl-C exiting 130 with nothing said (typer makes it a silent exit), so
    a script's log did not say why the job stopped."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(audiodup.cli, "_open", interrupted)
    monkeypatch.setattr(audiodup.cli, "screen", interrupted)
    code, out, err_text = run_main(argv, monkeypatch, capsys)
    assert (code, out, err_text) == (130, "", "interrupted\n")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP])
def test_a_terminating_signal_stops_a_command_as_an_interrupt_does(
    stop: signal.Signals, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """SIGTERM or SIGHUP unwinds the command (its workers stopped, its locks released: the
    ``finally`` blocks run) and exits 128 + the signal's number with one line, no traceback;
    the same signal during the unwinding is ignored, and the handler is given back after."""
    previous = signal.signal(stop, signal.SIG_DFL)  # as a shell starts a command

    def signalled() -> None:
        try:
            os.kill(os.getpid(), stop)
            time.sleep(600)  # cut short by the signal's exception
            raise AssertionError("the signal did not stop the command")
        finally:
            os.kill(os.getpid(), stop)  # again, while the command unwinds: ignored

    try:
        monkeypatch.setattr(audiodup.cli, "_run_command", signalled)
        code, out, err_text = run_main(["index", "list"], monkeypatch, capsys)
        assert code == 128 + stop
        assert err_text == f"terminated ({stop.name})\n" and out == ""
        assert signal.getsignal(stop) == signal.SIG_DFL
    finally:
        signal.signal(stop, previous)


def test_a_signal_the_caller_ignores_stays_ignored(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """``nohup audiodup index add ...``: SIGHUP is ignored before the command starts, and the
    command leaves it so (a hang-up does not stop it)."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    seen = []

    def command() -> None:
        seen.append(signal.getsignal(signal.SIGHUP))
        raise SystemExit(0)  # as typer's app does

    try:
        monkeypatch.setattr(audiodup.cli, "_run_command", command)
        code, _, _ = run_main(["index", "list"], monkeypatch, capsys)
        assert code == 0 and seen == [signal.SIG_IGN]
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


def fake_screen(labels: dict[str, str | None]):
    def screen(self, path, top_k: int = 5) -> Verdict:
        label = labels[Path(path).name]
        if label is None:
            return Verdict(path=str(path), verdict=None, error="cannot decode")
        return Verdict(path=str(path), verdict=label)

    return screen


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"a": "suspect", "b": "clean"}, 4),
        ({"a": "suspect", "b": "duplicate"}, 5),
        ({"a": "suspect", "b": None}, 6),
        ({"a": "duplicate", "b": None}, 3),
        ({"a": "clean", "b": "clean"}, 0),
    ],
)
def test_screen_exit_code_for_suspects(
    db: Path, monkeypatch: pytest.MonkeyPatch, labels: dict, expected: int
) -> None:
    monkeypatch.setattr(Catalog, "screen", fake_screen(labels))
    result = run("screen", "--db", db, "--json", "a", "b")
    assert result.exit_code == expected, result.output
    data = json.loads(result.stdout)["results"]
    assert [d["verdict"] for d in data] == [labels["a"] or "error", labels["b"] or "error"]


def test_screen_missing_catalog_console_script(tmp_path: Path) -> None:
    missing = Path("/nonexistent")
    if missing.exists():
        pytest.skip("/nonexistent exists on this machine")
    upload = UPLOADS_DIR / "unrelated_a.ogg"
    proc = subprocess.run(
        [console_script(), "screen", "--db", str(missing), str(upload)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert str(missing) in one_error_line(proc)
    assert not missing.exists()  # screening never creates a catalog


def test_missing_catalog_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    missing = tmp_path / "no-catalog"
    for argv in (
        ["screen", "--db", str(missing), "x.wav"],
        ["index", "list", "--db", str(missing)],
    ):
        monkeypatch.setattr(sys, "argv", ["audiodup", *argv])
        with pytest.raises(SystemExit) as info:
            audiodup.cli.main()
        assert info.value.code == 2
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
        assert not missing.exists()


# --- index list / stats / remove / verify / rebuild -----------------------------------------


def test_index_list_json(db: Path, fixture_sha256: dict[str, str]) -> None:
    result = run("index", "list", "--db", db, "--json")
    assert result.exit_code == 0
    works = json.loads(result.stdout)["works"]
    assert len(works) == 6
    for work in works:
        assert {"work_id", "path", "duration_s", "sha256"} <= set(work)
        assert work["sha256"] == fixture_sha256[work["path"]]
        assert work["duration_s"] == pytest.approx(40.0, abs=0.01)
    table = run("index", "list", "--db", db)
    assert table.exit_code == 0
    assert "work_04.ogg" in table.stdout


def test_index_stats_json(db: Path) -> None:
    result = run("index", "stats", "--db", db, "--json")
    assert result.exit_code == 0
    stats = json.loads(result.stdout)
    with Catalog.open(db) as catalog:
        expected = catalog.stats()
    assert stats["works"] == expected.works == 6
    assert stats["hash_entries"] == expected.hash_entries
    assert stats["chroma_vectors"] == expected.chroma_vectors
    assert stats["shards"] == expected.shards
    assert stats["hours"] == pytest.approx(expected.hours, abs=1e-5)
    assert stats["index_bytes"] == expected.index_bytes
    table = run("index", "stats", "--db", db)
    assert table.exit_code == 0 and "works" in table.stdout


def test_index_remove(db: Path) -> None:
    works = json.loads(run("index", "list", "--db", db, "--json").stdout)["works"]
    victim = next(w for w in works if w["path"].endswith("work_01.ogg"))
    result = run("index", "remove", "--db", db, str(victim["work_id"]))
    assert result.exit_code == 0, result.output
    assert f"removed work {victim['work_id']}" in result.stdout
    left = json.loads(run("index", "list", "--db", db, "--json").stdout)["works"]
    assert victim["work_id"] not in {w["work_id"] for w in left}
    assert len(left) == 5
    again = run("index", "remove", "--db", db, str(victim["work_id"]))
    assert again.exit_code == 2
    assert "error" in again.stderr
    for number in (2**63, 10**23):  # past what SQLite stores: no work either, not a crash
        huge = run("index", "remove", "--db", db, "--", str(number))
        assert (
            huge.exit_code == 2 and huge.stderr.strip() == f"error: no work {number} in the catalog"
        )
    assert len(json.loads(run("index", "list", "--db", db, "--json").stdout)["works"]) == 5
    code, data = screen_json(db, UPLOADS_DIR / "stretch_0.80_work_01.ogg")
    assert victim["work_id"] not in {m["work_id"] for m in data[0]["matches"]}
    assert code != 1


def test_index_verify_and_rebuild(db: Path) -> None:
    ok = run("index", "verify", "--db", db)
    assert ok.exit_code == 0 and "catalog OK" in ok.stdout
    next((db / "shards").glob("h-*")).unlink()
    broken = run("index", "verify", "--db", db)
    assert broken.exit_code == 1
    assert "problem:" in broken.stderr
    assert "rebuild" in broken.stderr
    rebuilt = run("index", "rebuild", "--db", db)
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "rebuilt: 6 works" in rebuilt.stdout
    code, data = screen_json(db, UPLOADS_DIR / "speed_1.15_work_05.ogg")
    assert code == 1
    assert Path(data[0]["matches"][0]["path"]).name == "work_05.ogg"


def test_verify_of_an_unreadable_database_says_to_restore_it(db: Path) -> None:
    """A database too damaged to open: verify names it as its finding (not "'index verify'
    lists the problems", itself), and advises a backup, since rebuild reads that database."""
    for name in ("catalog.sqlite-wal", "catalog.sqlite-shm"):
        (db / name).unlink(missing_ok=True)
    (db / "catalog.sqlite").write_bytes(b"this is not a database" * 100)
    result = run("index", "verify", "--db", db)
    assert result.exit_code == 1
    problem, advice = result.stderr.splitlines()
    assert problem.startswith("problem: catalog database ") and "is damaged" in problem
    assert "index verify" not in problem
    assert "restore catalog.sqlite from a backup" in advice
    rebuild = run("index", "rebuild", "--db", db)  # why rebuild is not the advice
    assert rebuild.exit_code != 0 and "is damaged" in str(rebuild.exception)


def test_verify_names_a_writer_lock_no_write_can_take(db: Path) -> None:
    (db / "catalog.lock").unlink(missing_ok=True)
    (db / "catalog.lock").mkdir()
    result = run("index", "verify", "--db", db)
    assert "note: catalog.lock is not a file: no write can run (remove it)" in result.stderr
    refused = run("index", "add", "--db", db, UPLOADS_DIR / "unrelated_a.ogg")
    assert refused.exit_code != 0


def _make_unwritable(path: Path) -> bool:
    """Make ``path`` refuse writers: immutable where chattr works (root), else read-only mode
    (which binds a user other than root); whether it then does."""
    _chattr("+i", path)
    if _refuses_writers(path):
        return True
    path.chmod(0o444)
    return _refuses_writers(path)


def _chattr(flag: str, path: Path) -> None:
    with contextlib.suppress(OSError):  # no chattr on this machine
        subprocess.run(["chattr", flag, str(path)], capture_output=True, check=False)


def _refuses_writers(path: Path) -> bool:
    try:
        os.close(os.open(path, os.O_WRONLY))
    except PermissionError:
        return True
    return False


def test_verify_names_a_writer_lock_no_writer_can_open(db: Path) -> None:
    lock = db / "catalog.lock"
    lock.touch()
    try:
        if not _make_unwritable(lock):
            pytest.skip("no way to make a file refuse writers here")
        result = run("index", "verify", "--db", db)
        assert "note: catalog.lock cannot be opened for writing (" in result.stderr
        refused = run("index", "add", "--db", db, UPLOADS_DIR / "unrelated_a.ogg")
        assert refused.exit_code != 0
    finally:
        _chattr("-i", lock)
        lock.chmod(0o644)
    clean = run("index", "verify", "--db", db)
    assert "catalog.lock" not in clean.stderr


def test_screen_on_a_damaged_index_is_one_line(db: Path) -> None:
    next((db / "shards").glob("c-*.faiss")).unlink()
    proc = subprocess.run(
        [console_script(), "screen", "--db", str(db), str(UPLOADS_DIR / "unrelated_a.ogg")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "rebuild" in one_error_line(proc)


def test_version_names_the_package_and_the_recipe(monkeypatch, capsys) -> None:
    code, out, _ = run_main(["--version"], monkeypatch, capsys)
    assert code == 0
    assert out.strip() == f"audiodup {audiodup.__version__} (fingerprint recipe {RECIPE})"


@pytest.mark.parametrize("command", [["screen"], ["index", "add"], ["index", "list"], ["rescan"]])
def test_help_shows_the_catalog_default(command: list[str], monkeypatch, capsys) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_main([*command, "--help"], monkeypatch, capsys)
    assert code == 0
    assert "$AUDIODUP_DB or ./audiodup-catalog" in out


def test_screen_hit_budget_reaches_the_look_up_and_is_range_checked(
    catalog_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--hit-budget`` sets the budget the catalog screens with; a copy is still found and an
    unrelated upload stays clean; a budget outside 10,000 to 100,000,000 is a usage error."""
    budgets = []
    real = Catalog.screen_many

    def screen_many(self, *args, **kwargs):
        budgets.append(self.settings.max_query_hits)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Catalog, "screen_many", screen_many)
    copy, unrelated = UPLOADS_DIR / "pitch_-3_work_03.ogg", UPLOADS_DIR / "unrelated_a.ogg"
    result = run("screen", "--db", catalog_copy, "--json", "--hit-budget", "20000", copy, unrelated)
    assert result.exit_code == 1, result.output  # a duplicate, no suspect, no error
    verdicts = [r["verdict"] for r in json.loads(result.output)["results"]]
    assert verdicts == ["duplicate", "clean"]
    assert budgets == [20_000]
    for bad in ("9999", "100000001", "lots"):
        refused = run("screen", "--db", catalog_copy, "--hit-budget", bad, copy)
        assert refused.exit_code == 2
    assert budgets == [20_000]  # refused before screening
