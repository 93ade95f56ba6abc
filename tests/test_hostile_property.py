"""Property (issue #11): arbitrary byte file names, titles and uploaders go through every
command (``index add --metadata``, ``index list``, ``screen --json``, ``screen --out``,
``rescan --new-only --out``, ``explain``). Each file gets a verdict or one error line that names
it, the batch goes on, nothing a terminal would act on is printed, reports keep every value, and
no command crashes (exit codes 0-3 only, never 70 or a traceback)."""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from cli_runner import run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hostile_text import (
    EXIT_CODES,
    NAME_MAX,
    assert_literal_output,
    assert_safe_html,
    error_lines_of,
    read_csv,
    unquoted,
    write_excerpt,
    write_metadata_csv,
)

from audiodup import Catalog
from audiodup.ingest import source_path
from audiodup.rescan import rescan
from audiodup.results import path_text, shown_text
from audiodup.schema import validate

# pieces a hostile uploader would put in a name: decoder protocols, rich markup, mathtext,
# line breaks, terminal escapes, option-like and formula-like starts, bytes that are not UTF-8
NAME_PIECES = [
    b"concat:",
    b"file:",
    b"pipe:",
    b"[/]",
    b"[bold]",
    b"$\\frac{$",
    b"\n",
    b"\r",
    b"\t",
    b"\x1b[2J",
    b"\x9b",
    b"-",
    b"--",
    b"=",
    b"+",
    b"@",
    b"'",
    b'"',
    b"</script>",
    b":warning:",
    b"\xff\xfe",
    b"\xe9",
    "é☃".encode(),
    b" ",
    b"\\",
    b"~",
]
TEXT_PIECES = [
    "[/]",
    "[bold]",
    "$\\frac{$",
    "\n",
    "\r",
    "\t",
    "\x1b[2J",
    "\u202e",
    "=",
    "+",
    "-2",
    "@",
    "'",
    "</script>",
    ":warning:",
    "\x85",
]
WORKS = [f"work_0{i}" for i in range(6)]
EXCERPT_S = 6.0


def file_names() -> st.SearchStrategy[bytes]:
    """A file name (bytes, ``.wav``): hostile pieces and random bytes, sometimes padded to
    about NAME_MAX bytes, sometimes over it (the system refuses those)."""
    core = st.lists(
        st.one_of(st.sampled_from(NAME_PIECES), st.binary(min_size=1, max_size=6)),
        min_size=1,
        max_size=5,
    ).map(lambda parts: b"".join(parts).replace(b"/", b"_").replace(b"\x00", b"_"))
    target = st.one_of(st.just(0), st.integers(NAME_MAX - 8, NAME_MAX + 6))
    return st.builds(lambda c, n: c + b"x" * max(0, n - len(c) - 4) + b".wav", core, target)


def texts() -> st.SearchStrategy[str]:
    """A title or an uploader: hostile pieces and any characters a UTF-8 CSV can hold."""
    free = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
    return st.lists(st.one_of(st.sampled_from(TEXT_PIECES), free), max_size=4).map("".join)


uploads = st.lists(
    st.tuples(file_names(), st.sampled_from(WORKS), st.floats(0.0, 30.0), texts(), texts()),
    min_size=1,
    max_size=3,
    unique_by=lambda upload: upload[0],
)


@pytest.fixture(scope="module")
def rescanned_base(pristine_catalog_dir: Path, tmp_path_factory) -> Path:
    """The six fixture works, rescanned once: each example copies it and adds its files."""
    root = tmp_path_factory.mktemp("hostile-base") / "catalog"
    shutil.copytree(pristine_catalog_dir, root)
    with Catalog.open(root, create=False) as catalog:
        rescan(catalog)
    return root


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    files=uploads,
    screen_report=st.sampled_from(["csv", "html", "json"]),
    rescan_report=st.sampled_from(["csv", "html", "json"]),
)
def test_hostile_names_and_text_through_every_command(
    rescanned_base: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    files: list[tuple[bytes, str, float, str, str]],
    screen_report: str,
    rescan_report: str,
) -> None:
    where = tmp_path_factory.mktemp("example")
    db = where / "catalog"
    shutil.copytree(rescanned_base, db)
    folder = where / "in"
    folder.mkdir()
    names, too_long, rows, described = [], set(), [], {}
    for raw, work, start_s, title, uploader in files:
        name = os.fsdecode(raw)  # as a shell hands it over: undecodable bytes as surrogates
        names.append(name)
        if len(raw) > NAME_MAX:
            too_long.add(name)
            continue
        write_excerpt(os.path.join(os.fsencode(folder), raw), work, start_s, EXCERPT_S)
        with contextlib.suppress(UnicodeEncodeError):  # only UTF-8 names fit in a UTF-8 CSV
            rows.append((str(folder / name).encode().decode(), title, uploader, "2024-01-01"))
            # the CSV reader keeps a name's cells as written; a blank cell is no value
            described[name] = (
                title if title.strip() else None,
                uploader if uploader.strip() else None,
            )
    csv_path = write_metadata_csv(where / "meta.csv", rows)

    def run(*args: str) -> tuple[int, str, str]:
        code, out, err = run_main([*args], monkeypatch, capsys)
        assert_literal_output(code, out, err)
        return code, out, err

    def assert_one_line_per_failure(err: str) -> None:
        lines = error_lines_of(err)
        assert len(lines) == len(too_long), err
        for name in too_long:
            (line,) = [x for x in lines if x.startswith(f"error: {shown_text(name)}: ")]
            assert line.endswith("File name too long"), line

    with contextlib.chdir(folder):  # names are passed as given, after "--" (some start with -)
        code, out, err = run(
            "index", "add", "--db", str(db), "--metadata", str(csv_path), "--", *names
        )
        assert code == (2 if too_long else 0)
        counts = re.search(
            r"^added (\d+), identical (\d+), already present (\d+), failed (\d+)$", out, re.M
        )
        added, identical, present, failed = map(int, counts.groups())
        assert (added + identical + present, failed) == (
            len(names) - len(too_long),
            len(too_long),
        )
        assert_one_line_per_failure(err)

        code, _, _ = run("index", "list", "--db", str(db))
        assert code == 0
        _, out, _ = run("index", "list", "--db", str(db), "--json")
        validate(json.loads(out), "index-list")
        _, out, _ = run("index", "uploads", "--db", str(db), "--json")
        validate(json.loads(out), "index-uploads")
        recorded = {u["source_path"]: u for u in json.loads(out)["uploads"]}
        for name, (title, uploader) in described.items():  # every upload keeps its own text
            upload = recorded[source_path(folder / name)]
            assert (upload["title"], upload["uploader"]) == (title, uploader), upload

        code, out, err = run("screen", "--db", str(db), "--json", "--", *names)
        # 1: a duplicate (every file that exists finds itself), 2: a name too long
        assert code == (1 if len(too_long) < len(names) else 0) | (2 if too_long else 0)
        validate(json.loads(out), "screen")
        verdicts = json.loads(out)["results"]
        assert [v["path"] for v in verdicts] == [path_text(n) for n in names]
        for name, v in zip(names, verdicts, strict=True):
            if name in too_long:
                assert v["error"].endswith("File name too long"), v
            else:  # each file is in the catalog now: it finds itself
                assert v["verdict"] == "duplicate", v
        assert err == ""  # with --json the errors are in the JSON

        report = where / f"screen.{screen_report}"
        screen_code, out, err = run("screen", "--db", str(db), "--out", str(report), "--", *names)
        assert screen_code == code
        assert_one_line_per_failure(err)
        assert_report_keeps_names(report, names)

        rescanned = where / f"rescan.{rescan_report}"
        code, _, _ = run("rescan", "--db", str(db), "--new-only", "--out", str(rescanned))
        assert code in EXIT_CODES and rescanned.exists()
        if rescan_report == "json":
            summary = json.loads(rescanned.read_text(encoding="utf-8"))
            validate(summary, "rescan")
            assert summary["scanned"] == summary["works"] and summary["errors"] == []
        elif rescan_report == "html":
            assert_safe_html(rescanned.read_text(encoding="utf-8"))

        for name, verdict in zip(names, verdicts, strict=True):
            if name not in too_long:  # the first file that exists, against what it matched
                work_id = str(verdict["matches"][0]["work_id"])
                code, out, _ = run("explain", "--db", str(db), "--", name, work_id)
                assert code == 0 and len(list(Path().glob("explain-*.png"))) == 1
                break


def assert_report_keeps_names(report: Path, names: list[str]) -> None:
    """Every upload is in the report under its exact name (CSV, JSON) or shown escaped (HTML)."""
    expected = [path_text(n) for n in names]
    if report.suffix == ".csv":
        rows = read_csv(report)
        assert {unquoted(r["path"]) for r in rows} == set(expected)
    elif report.suffix == ".json":
        document = json.loads(report.read_text(encoding="utf-8"))
        validate(document, "screen")
        assert [v["path"] for v in document["results"]] == expected
    else:
        page = report.read_text(encoding="utf-8")
        assert_safe_html(page)
        for name in expected:
            assert html.escape(shown_text(Path(name).name)) in page, name
