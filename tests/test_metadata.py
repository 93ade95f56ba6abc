"""Tests for audiodup.metadata and ``audiodup index add --metadata``: reading, path resolution,
validation errors with line numbers, and nothing added when the CSV is invalid."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cli_runner import run_main

from audiodup import Catalog
from audiodup.errors import AudiodupError, MetadataError
from audiodup.metadata import metadata_for_paths, parse_timestamp, read_metadata

ROOT = Path(__file__).resolve().parents[1]
CATALOG_DIR = ROOT / "fixtures" / "audio" / "catalog"


@pytest.fixture
def music(tmp_path: Path) -> Path:
    """A folder ``music/`` with three fixture works and ``music/sub/`` with one."""
    folder = tmp_path / "music"
    (folder / "sub").mkdir(parents=True)
    for i in range(3):
        shutil.copyfile(CATALOG_DIR / f"work_0{i}.ogg", folder / f"w{i}.ogg")
    shutil.copyfile(CATALOG_DIR / "work_03.ogg", folder / "sub" / "w3.ogg")
    return folder


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


def problems_of(exc: pytest.ExceptionInfo[MetadataError]) -> list[tuple[int, str]]:
    return exc.value.problems


# -- reading ---------------------------------------------------------------------------------
def test_known_and_unknown_columns_are_kept(music: Path) -> None:
    csv_path = write(
        music / "meta.csv",
        "path,work_id,Title,artist,isrc,uploader,uploaded_at,Territory,empty\n"
        "w0.ogg,D-1,First,Ana,BR-ABC-20-00001,label,2020-01-02,BR,\n"
        f"{music / 'w1.ogg'},D-2,Second,,,ring,2023-05-01T10:00:00Z,,\n",
    )
    table = read_metadata(csv_path)
    assert table == {
        str((music / "w0.ogg").resolve()): {
            "external_id": "D-1",  # the column's older name, read as external_id
            "title": "First",
            "artist": "Ana",
            "isrc": "BR-ABC-20-00001",
            "uploader": "label",
            "uploaded_at": "2020-01-02",
            "Territory": "BR",
        },
        str((music / "w1.ogg").resolve()): {
            "external_id": "D-2",
            "title": "Second",
            "uploader": "ring",
            "uploaded_at": "2023-05-01T10:00:00Z",
        },
    }


def test_paths_resolve_next_to_the_csv_or_in_the_current_folder(
    music: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "csvs"
    elsewhere.mkdir()
    write(elsewhere / "local.ogg", "")  # resolves next to the CSV, though it is not audio
    csv_path = write(elsewhere / "meta.csv", "path,title\nmusic/w0.ogg,cwd\nlocal.ogg,csv dir\n")
    monkeypatch.chdir(tmp_path)
    table = read_metadata(csv_path)
    assert table[str((music / "w0.ogg").resolve())] == {"title": "cwd"}
    assert table[str((elsewhere / "local.ogg").resolve())] == {"title": "csv dir"}


def test_semicolons_bom_and_blank_lines(music: Path) -> None:
    csv_path = music / "meta.csv"
    csv_path.write_bytes("\ufeffpath;title;uploader\n\nw0.ogg;Café; ring \n\n".encode())
    (row,) = read_metadata(csv_path).values()
    assert row == {"title": "Café", "uploader": " ring "}  # as written: " ring " is not "ring"


def test_parse_timestamp() -> None:
    assert parse_timestamp("2024-03-01") == datetime(2024, 3, 1, tzinfo=UTC)
    assert parse_timestamp("2024-03-01T14:30:00+02:00") == datetime(
        2024, 3, 1, 14, 30, tzinfo=timezone(timedelta(hours=2))
    )
    assert parse_timestamp("2024-03-01T12:00:00Z") == datetime(2024, 3, 1, 12, tzinfo=UTC)
    for bad in ("", "01/03/2024", "2024-13-01", "yesterday"):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


def test_metadata_for_paths_keys_rows_the_way_add_paths_looks_them_up(
    music: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv_path = write(music / "meta.csv", "path,title\nw0.ogg,zero\nsub/w3.ogg,three\n")
    table = read_metadata(csv_path)
    monkeypatch.chdir(music.parent)
    matched, unused = metadata_for_paths(table, [Path("music/w0.ogg"), Path("music/w1.ogg")])
    assert matched == {str((music / "w0.ogg").resolve()): {"title": "zero"}}
    assert unused == [str((music / "sub" / "w3.ogg").resolve())]
    matched, unused = metadata_for_paths(table, [Path("music")])  # a folder, walked
    assert set(matched) == {str((music / n).resolve()) for n in ("w0.ogg", "sub/w3.ogg")}
    assert unused == []


def test_a_path_starting_with_a_tilde_names_a_folder_beside_the_csv(
    music: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (music / "~").mkdir()
    shutil.copy(music / "w0.ogg", music / "~" / "song.ogg")
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "song.ogg").write_bytes(b"not this one")
    table = read_metadata(write(music / "meta.csv", "path,title\n~/song.ogg,tilde\n"))
    assert table == {str((music / "~" / "song.ogg").resolve()): {"title": "tilde"}}


def test_paths_names_and_ids_are_read_as_written(music: Path) -> None:
    """A review found a row for ``a.ogg `` (an uploader's name, ending in a space) applied to
    ``a.ogg``: cells were stripped. A path, a title, an uploader and an id are kept as written;
    only cells of a format (role, date, codes) lose the spaces around them."""
    shutil.copyfile(music / "w0.ogg", music / "a.ogg")
    shutil.copyfile(music / "w1.ogg", music / "a.ogg ")
    table = read_metadata(
        write(
            music / "meta.csv",
            "path,uploader,title,external_id,role,uploaded_at\n"
            '"a.ogg ", alice ,"t ", X1 , Reference , 2020-01-02 \n',
        )
    )
    assert table == {
        str((music / "a.ogg ").resolve()): {
            "uploader": " alice ",
            "title": "t ",
            "external_id": " X1 ",
            "role": "reference",
            "uploaded_at": "2020-01-02",
        }
    }
    matched, unused = metadata_for_paths(table, [music / "a.ogg", music / "a.ogg "])
    assert list(matched) == [str((music / "a.ogg ").resolve())] and unused == []
    with pytest.raises(MetadataError) as exc:
        read_metadata(write(music / "meta.csv", "path,title\n w1.ogg,x\n"))
    ((line, problem),) = problems_of(exc)
    assert line == 2 and problem.startswith('file not found: " w1.ogg" (')
    assert problem.endswith("; w1.ogg exists, but a path is read as written")


# -- validation ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("file,title\nw0.ogg,x\n", [(1, "no 'path' column")]),
        ("", [(1, "empty file")]),
        ("path,path\nw0.ogg,w1.ogg\n", [(1, "column 'path' appears twice")]),
        ("path,uploaded_at\nw0.ogg,2020-01-01\nw1.ogg,01/02/2020\n", [(3, "uploaded_at '01/02")]),
        ("path,title\nw0.ogg,a\nmissing.ogg,b\n", [(3, "file not found: missing.ogg")]),
        ("path,title\nw0.ogg,a\n./w0.ogg,b\n", [(3, "is already described on line 2")]),
        ("path,work_id\nw0.ogg,A\nw1.ogg,A\n", [(3, "external_id 'A' repeats line 2")]),
        ("path,external_id\nw0.ogg,A\nw1.ogg,A\n", [(3, "external_id 'A' repeats line 2")]),
        ("path,upc\nw0.ogg,12345\n", [(2, "upc '12345' is not a UPC")]),
        ("path,role\nw0.ogg,owner\n", [(2, "role 'owner' is not one of")]),
        ("path,upload_id\nw0.ogg,3\n", [(2, "upload_id belongs in 'index update'")]),
        ("path,isrc\nw0.ogg,not-an-isrc\n", [(2, "isrc 'not-an-isrc' is not an ISRC")]),
        ("path,title\nw0.ogg,a,b,c\n", [(2, "4 cells but the header has 2 columns")]),
        ("path,title\n,a\n", [(2, "empty path")]),
        ("path,title\nsub,a\n", [(2, "not a regular file: sub")]),
        (
            'path,title\nw0.ogg,"two\nlines"\nw1.ogg,x\nnope.ogg,y\n',
            [(5, "file not found: nope.ogg")],
        ),
    ],
)
def test_invalid_rows_name_their_line(
    music: Path, text: str, expected: list[tuple[int, str]]
) -> None:
    csv_path = write(music / "meta.csv", text)
    with pytest.raises(MetadataError) as exc:
        read_metadata(csv_path)
    found = problems_of(exc)
    assert len(found) == len(expected), found
    for (line, text_found), (want_line, want_text) in zip(found, expected, strict=True):
        assert line == want_line and want_text in text_found, found
    assert isinstance(exc.value, AudiodupError)
    assert str(exc.value).startswith(f"{csv_path}: {len(expected)} problem")
    assert f"line {expected[0][0]}: " in str(exc.value)


def test_every_problem_is_listed_at_once(music: Path) -> None:
    csv_path = write(
        music / "meta.csv",
        "path,uploaded_at\nmissing.ogg,2020-01-01\nw0.ogg,2020-31-01\nw1.ogg,2020-01-01\nw1.ogg,\n",
    )
    with pytest.raises(MetadataError) as exc:
        read_metadata(csv_path)
    assert [line for line, _ in problems_of(exc)] == [2, 3, 5]


def test_ambiguous_relative_path_is_refused(
    music: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    shutil.copyfile(music / "w1.ogg", other / "w0.ogg")  # another file under the same name
    monkeypatch.chdir(other)
    csv_path = write(music / "meta.csv", "path\nw0.ogg\n")
    with pytest.raises(MetadataError, match="ambiguous path w0.ogg"):
        read_metadata(csv_path)


def test_non_utf8_csv_names_the_line(music: Path) -> None:
    csv_path = music / "meta.csv"
    csv_path.write_bytes(b"path,title\nw0.ogg,ok\nw1.ogg,caf\xe9\n")
    with pytest.raises(MetadataError) as exc:
        read_metadata(csv_path)
    assert problems_of(exc) == [(3, "not UTF-8 text (byte 0xe9)")]


# -- the command line ------------------------------------------------------------------------
def test_index_add_with_metadata(
    music: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    csv_path = write(
        music / "meta.csv",
        "path,work_id,title,artist,uploader,uploaded_at,label_code\n"
        "w0.ogg,D-0,Zero,Ana,label,2020-01-01,LC-1\n"
        "w1.ogg,D-1,One,,ring,2023-01-01,\n"
        "sub/w3.ogg,D-3,Three,,label,2020-02-01,\n",
    )
    db = tmp_path / "catalog"
    code, out, err = run_main(
        [
            "index",
            "add",
            "--db",
            str(db),
            "--metadata",
            str(csv_path),
            str(music / "w0.ogg"),
            str(music / "w1.ogg"),
            str(music / "w2.ogg"),
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert "added 3" in out
    assert "1 rows of" in err and "not among the paths" in err  # sub/w3.ogg was not added
    code, out, _ = run_main(["index", "list", "--db", str(db), "--json"], monkeypatch, capsys)
    works = {Path(w["path"]).name: w for w in json.loads(out)["works"]}
    assert (works["w0.ogg"]["title"], works["w0.ogg"]["artist"]) == ("Zero", "Ana")
    assert works["w0.ogg"]["metadata"] == {
        "external_id": "D-0",
        "title": "Zero",
        "artist": "Ana",
        "uploader": "label",
        "uploaded_at": "2020-01-01",
        "label_code": "LC-1",
    }
    assert works["w1.ogg"]["metadata"]["uploader"] == "ring"
    assert works["w2.ogg"]["metadata"] == {}
    code, out, _ = run_main(["index", "uploads", "--db", str(db), "--json"], monkeypatch, capsys)
    uploads = {Path(u["source_path"]).name: u for u in json.loads(out)["uploads"]}
    assert uploads["w0.ogg"]["external_id"] == "D-0"
    assert uploads["w0.ogg"]["extra"] == {"label_code": "LC-1"}
    assert uploads["w0.ogg"]["source_path"] == str((music / "w0.ogg").resolve())
    assert (uploads["w1.ogg"]["uploader"], uploads["w1.ogg"]["role"]) == ("ring", "upload")


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("path,uploaded_at\nw0.ogg,2020-01-01\nw1.ogg,2020-02-30\n", 3, "not an ISO 8601 date"),
        (
            "path,uploaded_at\nw0.ogg,2999-12-31T23:59:59Z\n",
            2,
            "'2999-12-31T23:59:59Z' is in the future",
        ),
        ("name,title\nw0.ogg,x\n", 1, "no 'path' column"),
        ("path,title\nw0.ogg,x\nw9.ogg,y\n", 3, "file not found: w9.ogg"),
    ],
)
def test_invalid_metadata_adds_nothing(
    music: Path,
    tmp_path: Path,
    catalog_copy: Path,
    text: str,
    line: int,
    words: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys,
) -> None:
    csv_path = write(music / "meta.csv", text)
    with Catalog.open(catalog_copy, create=False) as catalog:
        before = catalog.works()
    code, out, err = run_main(
        ["index", "add", "--db", str(catalog_copy), "--metadata", str(csv_path), str(music)],
        monkeypatch,
        capsys,
    )
    assert code == 2
    assert err.startswith(f"error: {csv_path}: 1 problem, nothing was added\n")
    assert f"\n  line {line}: " in err and words in err  # indented as it is, not escaped
    assert "Traceback" not in err and out == ""
    with Catalog.open(catalog_copy, create=False) as catalog:
        assert catalog.works() == before
    # a new catalog is not even created
    fresh = tmp_path / "fresh"
    code, _, _ = run_main(
        ["index", "add", "--db", str(fresh), "--metadata", str(csv_path), str(music)],
        monkeypatch,
        capsys,
    )
    assert code == 2 and not fresh.exists()


def test_a_metadata_file_name_holding_a_newline_stays_on_its_error_line(
    music: Path, catalog_copy: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    folder = music / "m\nerror: forged line"
    folder.mkdir()
    csv_path = write(folder / "meta.csv", "path,title\nw9.ogg,y\n")
    code, _, err = run_main(
        ["index", "add", "--db", str(catalog_copy), "--metadata", str(csv_path), str(music)],
        monkeypatch,
        capsys,
    )
    assert code == 2
    lines = err.splitlines()
    assert (
        lines[0] == f"error: {music}/m\\nerror: forged line/meta.csv: 1 problem, nothing was added"
    )
    assert [line for line in lines if line.startswith("error:")] == lines[:1]


def test_an_upload_date_a_day_ahead_is_believed_and_later_ones_are_not() -> None:
    from datetime import UTC, datetime

    from audiodup.metadata import upload_date_problem

    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    assert upload_date_problem("2026-12-07T11:00:00Z", now) is None  # a clock ahead
    assert upload_date_problem("2026-12-07T13:00:00+00:00", now) == (
        "'2026-12-07T13:00:00+00:00' is in the future"
    )
    assert "not an ISO 8601 date" in upload_date_problem("2026-02-30", now)
