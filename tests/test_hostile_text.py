"""Hostile names and text (issue #11): file names, titles, uploaders and the errors that quote
them are shown literally everywhere (terminal, pictures, HTML, JSON), CSV cells never run as
spreadsheet formulas, every output is checked before the work starts, and one path that cannot
be read fails alone while the batch goes on.

The helpers at the top (excerpt files, metadata CSV, output checks) are shared with
``test_hostile_property.py``."""

from __future__ import annotations

import csv
import functools
import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from cli_runner import run_main
from test_explain import figure_of, query_of
from test_rescan import add_with_metadata, match, scan, work

import audiodup.catalog
import audiodup.cli
import audiodup.report
import audiodup.report_html
from audiodup import Catalog
from audiodup.catalog import expand_paths
from audiodup.errors import AudiodupError
from audiodup.explain import default_picture_path, render_explain
from audiodup.metadata import read_metadata
from audiodup.report import check_writable, rescan_csv, screen_csv
from audiodup.rescan import build_report, rescan
from audiodup.results import Verdict, dumps, listed_text, shown_text
from audiodup.settings import DEFAULT_SETTINGS

ROOT = Path(__file__).resolve().parents[1]
CATALOG_DIR = ROOT / "fixtures" / "audio" / "catalog"
EXIT_CODES = set(range(8))  # the documented flags (1 | 2 | 4): never 70 (internal error)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
SCREEN_TEXT_COLUMNS = ("path", "error", "work_path", "title")
RESCAN_TEXT_COLUMNS = tuple(
    f"{side}_{what}" for side in ("query", "reference") for what in ("path", "title", "uploader")
)
# what a terminal, a browser or a spreadsheet would act on instead of showing
ACTING = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
NAME_MAX = 255


# -- shared helpers ------------------------------------------------------------------------------
@functools.cache
def fixture_audio(work_name: str) -> tuple[np.ndarray, int]:
    return sf.read(CATALOG_DIR / f"{work_name}.ogg", dtype="float32")


def write_excerpt(path: str | bytes | Path, work_name: str, start_s: float, seconds: float) -> None:
    """``seconds`` of a fixture work from ``start_s`` as a WAV file at ``path`` (any name)."""
    y, sr = fixture_audio(work_name)
    sf.write(
        os.fsencode(path),
        y[int(start_s * sr) : int((start_s + seconds) * sr)],
        sr,
        "PCM_16",
        format="WAV",
    )


def write_metadata_csv(csv_path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    """A metadata CSV of ``(absolute path, title, uploader, uploaded_at)`` rows."""
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "title", "uploader", "uploaded_at"])
        writer.writerows(rows)
    return csv_path


def unquoted(cell: str) -> str:
    """The value of a CSV text cell (the report puts a ' before formulas and before ')."""
    return cell[1:] if cell.startswith("'") else cell


def listed(cell: str) -> str:
    """The value of a CSV cell of one listed value (:func:`audiodup.results.listed_text`)."""
    value = unquoted(cell)
    return json.loads(value) if value.startswith('"') else value


def assert_no_formulas(rows: list[dict], text_columns: tuple[str, ...]) -> None:
    """No text cell runs as a formula, and numbers are still numbers."""
    for row in rows:
        assert not any(row[c].startswith(FORMULA_STARTS) for c in text_columns), row
        float(row["pitch_shift_semitones"] or 0)


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV report, read as the csv module wants (a CR inside a cell stays a CR)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def error_lines_of(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error: ")]


def assert_literal_output(code: int, *texts: str) -> None:
    """A documented exit code, no traceback, and nothing a terminal would act on."""
    assert code in EXIT_CODES, texts
    for text in texts:
        assert "Traceback" not in text and "internal error" not in text, text
        assert not ACTING.search(text), repr(text)


def assert_safe_html(page: str) -> None:
    """The fixed sorting script is the page's only script, and no user text acts in it."""
    assert page.count("<script") == 1 and page.count("</script>") == 1, "script injected"
    assert not ACTING.search(page)
    assert "onerror=" not in page.replace("&quot;onerror=", "")


# -- the hostile catalog ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Hostile:
    name: str  # file name
    work: str  # fixture work it is an excerpt of
    start_s: float
    title: str
    uploader: str
    uploaded_at: str


HOSTILE = (
    Hostile("[red]x[bold].wav", "work_00", 0.0, "[/]x", "[/]thief", "2020-01-01"),
    Hostile("$\\frac{$.wav", "work_00", 1.5, "$\\frac{$", "=cmd|' /C calc'!A0", "2021-01-01"),
    Hostile("evil\nduplicate.wav", "work_00", 3.0, "-2+3", "@thief", "2021-02-01"),
    Hostile(
        "[bold]up[red].wav",
        "work_01",
        0.0,
        "</script><script>alert(1)</script>",
        "label",
        "2020-01-01",
    ),
    Hostile('q"onerror=alert(1) x.wav', "work_01", 1.5, "\x1b[2J\x1b[31mred", "+1", "2021-01-01"),
    Hostile(
        "\x1b]0;title\x07:warning:.wav",
        "work_01",
        3.0,
        ":warning: $x$",
        "TAB\tinside",
        "2021-03-01",
    ),
    Hostile("=HYPERLINK(1).wav", "work_02", 0.0, "\u202egnp.exe", "CR\rinside", "2020-01-01"),
    Hostile("-rf.wav", "work_02", 1.5, "line\nerror: forged", "x\u2028y", "2022-01-01"),
)
EXCERPT_S = 10.0


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile") / "up[/x]"  # the folder names are markup too
    folder.mkdir(parents=True)
    files = {}
    for h in HOSTILE:
        files[h.name] = folder / h.name
        write_excerpt(files[h.name], h.work, h.start_s, EXCERPT_S)
    return files


@pytest.fixture(scope="module")
def hostile_catalog(hostile_files: dict[str, Path], tmp_path_factory) -> Path:
    """Closed catalog of the hostile files with hostile titles and uploaders (tests copy it)."""
    base = tmp_path_factory.mktemp("hostile-catalog")
    rows = [(str(hostile_files[h.name]), h.title, h.uploader, h.uploaded_at) for h in HOSTILE]
    csv_path = write_metadata_csv(base / "meta.csv", rows)
    add_with_metadata(base / "catalog", list(hostile_files.values()), csv_path)
    return base / "catalog"


@pytest.fixture(scope="module")
def rescanned(hostile_catalog: Path, tmp_path_factory) -> Path:
    """A copy of the hostile catalog with every work rescanned (commands then only report)."""
    root = tmp_path_factory.mktemp("hostile-rescanned") / "catalog"
    shutil.copytree(hostile_catalog, root)
    with Catalog.open(root, create=False) as catalog:
        report = rescan(catalog)
    assert len(report.clusters) == 3, report.clusters  # one per fixture work
    return root


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables wide enough that no cell wraps, so each shown text appears whole."""
    monkeypatch.setattr(audiodup.cli.out, "width", 400)
    monkeypatch.setattr(audiodup.cli.err, "width", 400)


# -- 4. user text is never markup --------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("[/]x", "[/]x"),
        ("$\\frac{$", "$\\\\frac{$"),  # a backslash is shown doubled
        (":warning:", ":warning:"),
        ("a\nerror: forged", "a\\nerror: forged"),
        ("\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred"),
        ("tab\there\rcr", "tab\\there\\rcr"),
        ("\x9b2J c1", "\\x9b2J c1"),
        ("\u202egnp.exe", "\\u202egnp.exe"),
        ("x\u2028y", "x\\u2028y"),
        ("chanson_\udce9t\udce9", "chanson_\\\\xe9t\\\\xe9"),  # undecodable bytes of a name
        ("café ☃ 音楽", "café ☃ 音楽"),
        ("wo\u200brk_03.ogg", "wo\\u200brk_03.ogg"),  # a zero-width space
        ("\ufeffa\u00adb\u2060c", "\\ufeffa\\xadb\\u2060c"),
        ("a\u00a0b\u3000c", "a\\xa0b\\u3000c"),  # spaces other than U+0020
        ("flag\U000e0067", "flag\\U000e0067"),  # a tag character
        (" song.ogg  ", "\\x20song.ogg\\x20\\x20"),  # spaces at either end
        ("a b", "a b"),
    ],
)
def test_shown_text_escapes_only_what_would_act(text: str, shown: str) -> None:
    assert shown_text(text) == shown
    assert "\n" not in shown_text(text) and not ACTING.search(shown_text(text))


def test_different_text_is_shown_differently() -> None:
    """Names a review reported shown alike in the terminal's table: a newline and the two
    characters backslash and n, a zero-width space, a trailing space. (An undecodable byte and
    the four characters of its escape stay alike, as in JSON: README, "Limits".)"""
    pairs = [
        ("x\ny.ogg", "x\\ny.ogg"),
        ("work_03.ogg", "wo\u200brk_03.ogg"),
        ("song.ogg", "song.ogg "),
        ("a\tb", "a\\tb"),
        ("x\\", "x\\\\"),
    ]
    for a, b in pairs:
        assert shown_text(a) != shown_text(b), (a, b)


def test_no_character_that_acts_or_does_not_show_is_shown_as_it_is() -> None:
    """Every control, format, line or paragraph separator and every space other than U+0020,
    by its Unicode category, is escaped; and JSON writes each as an escape that reads back."""
    import unicodedata

    hidden = [
        chr(c)
        for c in range(0x110000)
        if not 0xD800 <= c <= 0xDFFF
        and (
            unicodedata.category(chr(c)) in ("Cc", "Cf", "Zl", "Zp")
            or (unicodedata.category(chr(c)) == "Zs" and c != 0x20)
        )
    ]
    assert len(hidden) > 200
    for char in hidden:
        shown = shown_text(f"a{char}b")
        assert char not in shown and shown.startswith("a\\") and shown.endswith("b"), hex(ord(char))
    text = dumps({"name": "".join(hidden)}, compact=True)
    assert json.loads(text) == {"name": "".join(hidden)}
    assert not any(char in text for char in hidden)


def test_json_text_reads_back_the_same_and_cannot_drive_a_terminal() -> None:
    values = [h.title for h in HOSTILE] + [h.uploader for h in HOSTILE] + ["\x9b2J", "\x85"]
    text = dumps({"values": values})
    assert json.loads(text) == {"values": values}
    assert not ACTING.search(text)


def test_names_a_narrow_table_cannot_hold_are_folded_whole_not_cut_short(
    pristine_catalog_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Two uploads whose names differ only at their ends: an ellipsis made them one name in
    a terminal's table; folded onto more lines, each is there whole."""
    monkeypatch.setattr(audiodup.cli.out, "width", 90)
    source = Path(__file__).resolve().parents[1] / "fixtures" / "audio" / "uploads"
    names = [f"{'album_2024_final_master_track_07_' * 2}{who}.ogg" for who in ("alice", "bob")]
    for name in names:
        shutil.copy(source / "unrelated_a.ogg", tmp_path / name)
    code, out, err = run_main(
        ["screen", "--db", str(pristine_catalog_dir), *(str(tmp_path / n) for n in names)],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    first_cells = [line.split("│")[1].strip() for line in out.splitlines() if line.count("│") > 2]
    assert "".join(first_cells) == "".join(names)  # each row's lines, in order


def test_index_list_shows_titles_and_paths_literally(
    hostile_catalog: Path, wide, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    code, out, err = run_main(["index", "list", "--db", str(hostile_catalog)], monkeypatch, capsys)
    assert_literal_output(code, out, err)
    assert code == 0
    for h in HOSTILE:
        assert shown_text(h.title) in out and shown_text(h.name) in out, h
    code, out, _ = run_main(
        ["index", "list", "--db", str(hostile_catalog), "--json"], monkeypatch, capsys
    )
    titles = {Path(w["path"]).name: w["title"] for w in json.loads(out)["works"]}
    assert titles == {h.name: h.title for h in HOSTILE}  # JSON keeps the exact values


def test_screen_table_and_error_lines_show_names_literally(
    hostile_catalog: Path, hostile_files: dict[str, Path], wide, monkeypatch, capsys, tmp_path
) -> None:
    missing = [
        tmp_path / n
        for n in (
            "gone\nerror: forged.wav: clean",
            "[/]gone.wav",
            "\x1b[31mgone.wav",
            ":warning:gone.wav",
        )
    ]
    uploads = [str(p) for p in (*hostile_files.values(), *missing)]
    code, out, err = run_main(
        ["screen", "--db", str(hostile_catalog), "--", *uploads], monkeypatch, capsys
    )
    assert_literal_output(code, out, err)
    assert code == 3  # duplicates (1) and files that could not be screened (2)
    # one line per missing file, naming it; a newline in a name cannot add a line
    assert err.splitlines() == [f"error: {shown_text(p)}: file not found" for p in missing]
    for name in (*hostile_files, *(p.name for p in missing)):
        assert shown_text(name) in out, name
    assert len(re.findall(r"[│|] duplicate ", out)) == len(hostile_files)  # none forged
    assert not any(line.startswith("error") for line in out.splitlines())


def test_screen_json_keeps_every_path_exactly(
    hostile_catalog: Path, hostile_files: dict[str, Path], monkeypatch, capsys
) -> None:
    uploads = [str(p) for p in hostile_files.values()]
    code, out, err = run_main(
        ["screen", "--db", str(hostile_catalog), "--json", "--", *uploads], monkeypatch, capsys
    )
    assert_literal_output(code, out, err)
    data = json.loads(out)["results"]
    assert [v["path"] for v in data] == uploads
    assert all(v["verdict"] == "duplicate" for v in data)
    titles = {h.title for h in HOSTILE}
    assert {m["title"] for v in data for m in v["matches"]} <= titles


def test_rescan_shows_uploaders_and_titles_literally(
    rescanned: Path, wide, monkeypatch, capsys
) -> None:
    code, out, err = run_main(["rescan", "--db", str(rescanned)], monkeypatch, capsys)
    assert_literal_output(code, out, err)
    assert code == 1 and "3 clusters" in out
    for h in HOSTILE:
        assert shown_text(h.uploader) in out, h


@pytest.mark.parametrize(
    "name", ["$\\frac{$", "$x$ and $y$", "a$b", "\\$ $^$", "$\\input{/etc/passwd}$", "tab\t$_$"]
)
def test_pictures_draw_names_and_titles_literally(catalog: Catalog, work_ids, name: str) -> None:
    query = query_of(catalog, "pitch_-3_work_03.ogg")
    work_id = work_ids["work_03"]
    hashed, chroma = catalog.work_evidence(query, work_id)
    figure = figure_of(catalog, query, work_id, hashed, chroma, upload_name=name, work_name=name)
    texts = [*figure.texts, figure.axes[0].xaxis.label, figure.axes[0].yaxis.label]
    assert len(texts) == 3  # the title and both axis labels name the upload or the work
    for text in texts:
        assert shown_text(name) in text.get_text()
        assert not text.get_parse_math() and not text.get_usetex()
    assert render_explain(catalog, query, work_id, upload_name=name, dpi=20)[:4] == b"\x89PNG"
    svg = render_explain(catalog, query, work_id, fmt="svg", upload_name=f"{name}--></script>")
    assert b"<script" not in svg and b"</script>" not in svg  # the text is only drawn


def test_a_long_name_leaves_the_pictures_labels_and_numbers_inside_it(
    catalog: Catalog, work_ids
) -> None:
    query = query_of(catalog, "pitch_-3_work_03.ogg")
    work_id = work_ids["work_03"]
    hashed, chroma = catalog.work_evidence(query, work_id)
    upload, work = "u" * 300 + ".ogg", f"work {work_id}: " + "\u202e" * 40 + "t" * 200
    figure = figure_of(catalog, query, work_id, hashed, chroma, upload_name=upload, work_name=work)
    figure.canvas.draw()  # the labels take their places
    renderer = figure.canvas.get_renderer()
    inside, title, hashes, upload_pane = figure.bbox, figure._suptitle, *figure.axes[:2]
    for text in (title, hashes.xaxis.label, hashes.yaxis.label):
        box = text.get_window_extent(renderer)
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1, text.get_text()
        assert inside.y0 <= box.y0 and box.y1 <= inside.y1, text.get_text()
    label = hashes.xaxis.label.get_window_extent(renderer)
    assert not label.overlaps(figure.axes[2].xaxis.label.get_window_extent(renderer))
    assert not title.get_window_extent(renderer).overlaps(
        upload_pane._left_title.get_window_extent(renderer)
    )
    shown = title.get_text()
    assert f"work {work_id}: " in shown and "uuu" in shown and ".ogg" in shown
    assert re.search(r"tempo x[0-9.]+, pitch [-+][0-9.]+ st", shown)


def test_explain_with_a_hostile_name_and_title(
    hostile_catalog: Path, hostile_files: dict[str, Path], monkeypatch, capsys, tmp_path
) -> None:
    with Catalog.open(hostile_catalog, create=False) as catalog:
        ids = {Path(w.path).name: w.work_id for w in catalog.works()}
    monkeypatch.chdir(tmp_path)
    pairs = (
        ("$\\frac{$.wav", "[red]x[bold].wav"),
        ("\x1b]0;title\x07:warning:.wav", "[bold]up[red].wav"),
    )
    for upload, title_of in pairs:
        work_id = ids[title_of]
        code, out, err = run_main(
            ["explain", "--db", str(hostile_catalog), str(hostile_files[upload]), str(work_id)],
            monkeypatch,
            capsys,
        )
        assert_literal_output(code, out, err)
        assert code == 0, err
        written = default_picture_path(hostile_files[upload], work_id)
        assert out.strip() == shown_text(written) and written.read_bytes()[:4] == b"\x89PNG"


def test_default_picture_name_is_a_valid_file_name() -> None:
    long_name = "é" * 126 + ".wav"  # 252 bytes: the default name would exceed 255
    for upload in (long_name, "a\nb\x1b.wav", "-rf.wav"):
        picture = default_picture_path(upload, 12)
        assert len(os.fsencode(picture.name)) <= NAME_MAX
        assert not ACTING.search(picture.name) and picture.name.endswith("-12.png")


def test_html_reports_escape_user_text(
    hostile_catalog: Path, rescanned: Path, hostile_files, monkeypatch, capsys, tmp_path
) -> None:
    uploads = [str(p) for p in hostile_files.values()]
    pages = {"screen": tmp_path / "screen.html", "rescan": tmp_path / "rescan.html"}
    code, out, err = run_main(
        ["screen", "--db", str(hostile_catalog), "--out", str(pages["screen"]), "--", *uploads],
        monkeypatch,
        capsys,
    )
    assert_literal_output(code, out, err)
    code, out, err = run_main(
        ["rescan", "--db", str(rescanned), "--out", str(pages["rescan"])], monkeypatch, capsys
    )
    assert_literal_output(code, out, err)
    for kind, path in pages.items():
        page = path.read_text(encoding="utf-8")
        assert_safe_html(page)
        assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page, kind
        assert "No picture" not in page, kind  # every flagged pair got its picture
        for text in (*hostile_files, *(h.title for h in HOSTILE)):
            assert html.escape(shown_text(text)) in page, (kind, text)


def test_a_picture_that_fails_costs_only_its_own_upload(
    hostile_catalog: Path, hostile_files, monkeypatch, capsys, tmp_path
) -> None:
    real = audiodup.report_html.render_explain
    victim = "$\\frac{$.wav"

    def crash_on_victim(catalog, query, work_id, *, upload_name="upload", **options):
        if upload_name == victim:  # as matplotlib once did on this name
            raise ValueError("Expected \\frac{num}{den}")
        return real(catalog, query, work_id, upload_name=upload_name, **options)

    monkeypatch.setattr(audiodup.report_html, "render_explain", crash_on_victim)
    page = tmp_path / "screen.html"
    uploads = [str(p) for p in hostile_files.values()]
    code, out, err = run_main(
        ["screen", "--db", str(hostile_catalog), "--out", str(page), "--", *uploads],
        monkeypatch,
        capsys,
    )
    assert_literal_output(code, out, err)
    text = page.read_text(encoding="utf-8")
    assert text.count("No picture: ValueError") == 1
    assert text.count("<img") == len(uploads) - 1


# -- 11. CSV cells never run as formulas ---------------------------------------------------------
def verdict_with(path: str, title: str, pitch: float, error: str | None = None) -> Verdict:
    if error is not None:
        return Verdict(path=path, verdict=None, error=error)
    m = replace(match(7, 80.0, pitch=pitch), path=path, title=title)
    return Verdict(path=path, verdict="duplicate", matches=(m,), duration_s=30.0)


@pytest.mark.parametrize("start", FORMULA_STARTS)
def test_screen_csv_neutralises_formulas_and_keeps_numbers(start: str) -> None:
    hostile = f'{start}HYPERLINK("http://x","y")'
    verdicts = [
        verdict_with(hostile + ".wav", hostile, pitch=-2.0),
        verdict_with("a=b.wav", "plain -title", pitch=-0.5),
        verdict_with("'quoted.wav", f"'{start}", pitch=1.0),
        verdict_with(f"{start}gone.wav", "", 0.0, error=f"{start}1 cannot decode"),
    ]
    rows = list(csv.DictReader(io.StringIO(screen_csv(verdicts))))
    assert rows[0]["path"] == rows[0]["work_path"] == "'" + hostile + ".wav"
    assert rows[0]["title"] == "'" + hostile
    assert rows[0]["pitch_shift_semitones"] == "-2.0"  # a number, not a formula to defuse
    assert (rows[1]["path"], rows[1]["title"]) == ("a=b.wav", "plain -title")
    assert rows[1]["pitch_shift_semitones"] == "-0.5"
    assert (rows[2]["path"], rows[2]["title"]) == ("''quoted.wav", f"''{start}")
    assert (rows[3]["path"], rows[3]["error"]) == (f"'{start}gone.wav", f"'{start}1 cannot decode")
    assert_no_formulas(rows, SCREEN_TEXT_COLUMNS)
    assert [unquoted(row["path"]) for row in rows] == [v.path for v in verdicts]


def test_rescan_csv_neutralises_uploaders_titles_and_paths() -> None:
    works = [
        replace(work(1, uploader="=cmd|' /C calc'!A0", uploaded_at="2020-01-01"), title="@SUM(1)"),
        replace(work(2, uploader="+thief", uploaded_at="2021-01-01"), path="-rf.wav"),
        replace(work(3, uploader="\tTAB", uploaded_at="2022-01-01"), title="-2+3"),
    ]
    scans = {
        1: scan(1),
        2: scan(2, match(1, 80.0, tempo=1.25, pitch=-2.0)),
        3: scan(3, match(1, 70.0, pitch=-1.5)),
    }
    text = rescan_csv(build_report(works, scans, DEFAULT_SETTINGS))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 2
    by_query = {row["query_work_id"]: row for row in rows}
    assert by_query["2"]["query_path"] == "'-rf.wav"
    assert by_query["2"]["query_uploader"] == "'+thief"
    assert by_query["2"]["reference_uploader"] == "\"=cmd|' /C calc'!A0\""  # listed_text
    assert by_query["2"]["reference_title"] == "'@SUM(1)"
    assert by_query["3"]["query_title"] == "'-2+3" and by_query["3"]["query_uploader"] == '"\\tTAB"'
    assert by_query["2"]["pitch_shift_semitones"] == "-2.0"
    assert by_query["3"]["pitch_shift_semitones"] == "-1.5"
    assert_no_formulas(rows, RESCAN_TEXT_COLUMNS)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("label-a", "label-a"),
        ("", ""),
        ("bob; alice", '"bob; alice"'),
        ("x isrc=USRC17607839", '"x isrc=USRC17607839"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("a,b", '"a,b"'),
        ("(owner)", '"(owner)"'),
    ],
)
def test_a_listed_value_never_passes_for_two(value: str, shown: str) -> None:
    assert listed_text(value) == shown
    assert (json.loads(shown) if shown.startswith('"') else shown) == value


def test_an_uploader_or_identifier_holding_a_separator_forges_nothing_in_the_rescan_csv() -> None:
    works = [
        work(1, uploader="label", uploaded_at="2020-01-01", external_id="L-1"),
        work(2, uploader="bob; alice", uploaded_at="2021-01-01", external_id="x isrc=USRC17607839"),
    ]
    text = rescan_csv(
        build_report(works, {1: scan(1), 2: scan(2, match(1, 80.0))}, DEFAULT_SETTINGS)
    )
    (row,) = csv.DictReader(io.StringIO(text))
    assert row["query_uploader"] == '"bob; alice"'
    assert row["query_external_ids"] == 'external_id="x isrc=USRC17607839"'
    assert (
        row["reference_uploader"] == "label" and row["reference_external_ids"] == "external_id=L-1"
    )


def test_csv_reports_from_the_command_line(
    hostile_catalog: Path, rescanned: Path, hostile_files, monkeypatch, capsys, tmp_path
) -> None:
    uploads = [str(p) for p in hostile_files.values()]
    code, _, err = run_main(
        ["screen", "--db", str(hostile_catalog), "--out", str(tmp_path / "s.csv"), "--", *uploads],
        monkeypatch,
        capsys,
    )
    assert code == 1, err
    code, _, err = run_main(
        ["rescan", "--db", str(rescanned), "--out", str(tmp_path / "r.csv")], monkeypatch, capsys
    )
    assert code == 1, err
    screened = read_csv(tmp_path / "s.csv")
    assert {unquoted(r["path"]) for r in screened} == set(uploads)
    titles = {h.title for h in HOSTILE}
    assert {unquoted(r["title"]) for r in screened} <= titles
    pairs = read_csv(tmp_path / "r.csv")
    uploaders = {h.uploader for h in HOSTILE}
    assert {listed(r["query_uploader"]) for r in pairs} <= uploaders
    assert_no_formulas(screened, SCREEN_TEXT_COLUMNS)
    assert_no_formulas(pairs, RESCAN_TEXT_COLUMNS)


# -- 9. every output is checked before the work --------------------------------------------------
@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Screening, rescanning and decoding fail the test if they start."""

    def started(*args, **kwargs):
        raise AssertionError("the work started before its output was checked")

    monkeypatch.setattr(audiodup.catalog.Catalog, "screen_many", started)
    monkeypatch.setattr("audiodup.rescan.run_rescan", started)
    monkeypatch.setattr("audiodup.explain.load_audio", started)


@pytest.mark.parametrize(
    ("command", "out", "words"),
    [
        ("screen", "missing/report.csv", "there is no folder"),
        ("screen", "a-folder.html", "it is a folder"),
        ("screen", "report.txt", ".json, .csv or .html"),
        ("screen", "x" * 300 + ".json", "File name too long"),
        ("rescan", "missing/r.html", "there is no folder"),
        ("rescan", "a-folder.json", "it is a folder"),
        ("explain", "missing/e.png", "there is no folder"),
        ("explain", "e.jpg", ".png or .svg"),
        ("explain", "x" * 300 + ".svg", "File name too long"),
    ],
)
def test_outputs_are_checked_before_the_work(
    catalog_copy: Path, tmp_path: Path, command, out, words, no_work, monkeypatch, capsys
) -> None:
    (tmp_path / "a-folder.html").mkdir()
    (tmp_path / "a-folder.json").mkdir()
    upload = str(CATALOG_DIR / "work_00.ogg")
    args = {"screen": ["screen", upload], "rescan": ["rescan"], "explain": ["explain", upload, "1"]}
    code, stdout, err = run_main(
        [*args[command], "--db", str(catalog_copy), "--out", str(tmp_path / out)],
        monkeypatch,
        capsys,
    )
    assert code == 2 and stdout == ""
    (line,) = err.splitlines()
    assert line.startswith(f"error: cannot write {tmp_path / out}: ") and words in line


def test_an_output_folder_that_may_not_be_written(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # root may write anywhere
    with pytest.raises(AudiodupError, match="permission denied"):
        check_writable(tmp_path / "report.html")


def test_a_report_that_fails_late_keeps_the_verdicts(
    catalog_copy: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    def disk_full(out, text):
        raise AudiodupError(f"cannot write {out}: No space left on device")

    monkeypatch.setattr(audiodup.report, "_write", disk_full)
    for upload, expected in ((CATALOG_DIR / "work_00.ogg", 3), (ROOT / "README.md", 2)):
        code, out, err = run_main(
            ["screen", "--db", str(catalog_copy), "--out", str(tmp_path / "r.csv"), str(upload)],
            monkeypatch,
            capsys,
        )
        assert code == expected  # the lost report adds the error flag (2) to the duplicate's 1
        assert upload.name in out  # the verdict table was printed
        assert "No space left on device" in err


# -- 5. one bad path fails alone -----------------------------------------------------------------
@pytest.fixture
def good_and_long(tmp_path: Path) -> tuple[Path, Path]:
    """A good upload and a path whose name is longer than 255 bytes (ENAMETOOLONG)."""
    good = tmp_path / "good.wav"
    write_excerpt(good, "work_04", 2.0, 8.0)
    return good, tmp_path / ("x" * 300 + ".wav")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_name_too_long_fails_alone_in_screen(
    catalog_copy: Path, good_and_long, workers: str, monkeypatch, capsys
) -> None:
    good, long = good_and_long
    code, out, err = run_main(
        ["screen", "--db", str(catalog_copy), "--json", "--workers", workers, str(long), str(good)],
        monkeypatch,
        capsys,
    )
    assert code == 3, err  # a duplicate and an error
    too_long, verdict = json.loads(out)["results"]
    assert too_long["path"] == str(long) and too_long["error"].endswith("File name too long")
    assert verdict["verdict"] == "duplicate"


def add_beside_a_bad_path(bad: Path, good: Path, tmp_path: Path, monkeypatch, capsys) -> str:
    """``index add --metadata`` of a path that cannot be read and a good file: the good file is
    added with its metadata, the bad path is one failed entry. Returns its error line."""
    csv_path = write_metadata_csv(tmp_path / "m.csv", [(str(good), "Good", "ring", "2024-01-01")])
    db = tmp_path / "db"
    code, out, err = run_main(
        ["index", "add", "--db", str(db), "--metadata", str(csv_path), str(bad), str(good)],
        monkeypatch,
        capsys,
    )
    assert code == 2 and "added 1, identical 0, already present 0, failed 1" in out, (out, err)
    with Catalog.open(db, create=False) as catalog:
        (added,) = catalog.works()
    assert added.title == "Good" and added.metadata["uploader"] == "ring"
    (line,) = error_lines_of(err)
    return line


def test_a_name_too_long_fails_alone_in_index_add_with_metadata(
    good_and_long, tmp_path: Path, monkeypatch, capsys
) -> None:
    good, long = good_and_long
    line = add_beside_a_bad_path(long, good, tmp_path, monkeypatch, capsys)
    assert line == f"error: {long}: cannot read: File name too long"


def test_a_metadata_row_naming_a_name_too_long_is_one_problem(tmp_path: Path) -> None:
    csv_path = write_metadata_csv(tmp_path / "m.csv", [("x" * 300 + ".wav", "t", "u", "")])
    with pytest.raises(AudiodupError, match="line 2: cannot read x+\\.wav: File name too long"):
        read_metadata(csv_path)


def deny_under(monkeypatch: pytest.MonkeyPatch, locked: Path) -> None:
    """Root enters every folder, so stat and listing of paths under ``locked`` are refused here
    as they would be for a user without the execute bit (EACCES)."""
    real_stat, real_scandir = os.stat, os.scandir

    def refused(path) -> bool:
        text = os.fsdecode(path) if isinstance(path, str | bytes | os.PathLike) else ""
        return text == str(locked) or text.startswith(str(locked) + os.sep)

    def stat(path, *args, **kwargs):
        if refused(path) and os.fsdecode(path) != str(locked):
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real_stat(path, *args, **kwargs)

    def scandir(path="."):
        if refused(path):
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.setattr(os, "scandir", scandir)


@pytest.fixture
def locked_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """``music/good.wav`` and ``music/locked/`` (with ``in.wav``) that cannot be entered."""
    music = tmp_path / "music"
    (music / "locked").mkdir(parents=True)
    write_excerpt(music / "good.wav", "work_05", 1.0, 8.0)
    write_excerpt(music / "locked" / "in.wav", "work_03", 1.0, 8.0)
    deny_under(monkeypatch, music / "locked")
    return music, music / "good.wav", music / "locked"


def test_a_folder_that_cannot_be_listed_is_one_failed_entry(
    locked_tree, tmp_path, monkeypatch, capsys
) -> None:
    music, _, locked = locked_tree
    assert list(expand_paths([locked])) == [(locked, "cannot read folder: Permission denied")]
    for paths, counts in (
        ([locked], "added 0, identical 0, already present 0, failed 1"),
        ([music], "added 1, identical 0, already present 0, failed 1"),
    ):
        code, out, err = run_main(
            ["index", "add", "--db", str(tmp_path / "db"), *map(str, paths)], monkeypatch, capsys
        )
        assert code == 2 and counts in out
        assert error_lines_of(err) == [f"error: {locked}: cannot read folder: Permission denied"]


def test_a_path_inside_a_folder_that_cannot_be_entered_fails_alone(
    locked_tree, catalog_copy: Path, tmp_path, monkeypatch, capsys
) -> None:
    _, good, locked = locked_tree
    inside = locked / "in.wav"
    code, out, err = run_main(
        ["screen", "--db", str(catalog_copy), "--json", str(inside), str(good)], monkeypatch, capsys
    )
    assert code == 3  # a duplicate and an error
    refused, verdict = json.loads(out)["results"]
    assert refused["path"] == str(inside) and refused["error"].endswith("Permission denied")
    assert verdict["verdict"] == "duplicate"
    line = add_beside_a_bad_path(inside, good, tmp_path, monkeypatch, capsys)
    assert line == f"error: {inside}: cannot read: Permission denied"


def test_folders_that_cannot_be_entered_for_real(catalog_copy: Path, tmp_path: Path) -> None:
    """The same without simulation: the command line in a process that file permissions apply
    to (root without its capabilities to bypass them, through setpriv; another user as is)."""
    music = tmp_path / "music"
    locked = music / "locked"
    locked.mkdir(parents=True)
    write_excerpt(music / "good.wav", "work_05", 1.0, 8.0)
    write_excerpt(locked / "in.wav", "work_03", 1.0, 8.0)
    locked.chmod(0)
    try:
        unprivileged = [*permissions_apply(locked), sys.executable, "-m", "audiodup"]
        env = {k: v for k, v in os.environ.items() if k != "AUDIODUP_DB"}
        add, screen = (
            subprocess.run(
                [*unprivileged, *map(str, args)], capture_output=True, text=True, env=env
            )
            for args in (
                ["index", "add", "--db", tmp_path / "db", music, locked, locked / "in.wav"],
                ["screen", "--db", catalog_copy, "--json", locked / "in.wav", music / "good.wav"],
            )
        )
    finally:
        locked.chmod(0o755)
    assert add.returncode == 2, add.stderr
    assert (
        "added 1, identical 0, already present 0, failed 3" in add.stdout
    )  # not refused by click either
    assert error_lines_of(add.stderr) == [
        *[f"error: {locked}: cannot read folder: Permission denied"] * 2,  # walked, then given
        f"error: {locked / 'in.wav'}: cannot read: Permission denied",
    ]
    assert screen.returncode == 3, screen.stderr  # a duplicate and an error
    refused, verdict = json.loads(screen.stdout)["results"]
    assert refused["error"].endswith("Permission denied") and verdict["verdict"] == "duplicate"


def permissions_apply(locked: Path) -> list[str]:
    """The command prefix under which ``locked`` (mode 0) cannot be listed: none for a user
    other than root; for root, setpriv dropping the capabilities that bypass permissions.
    Skips where neither works."""
    prefix = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("root reads every folder and setpriv (util-linux) is not installed")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", "import os, sys; os.listdir(sys.argv[1])", str(locked)],
        capture_output=True,
        text=True,
    )
    if "PermissionError" not in probe.stderr:
        pytest.skip(f"file permissions cannot be made to apply here: {probe.stderr[-200:]}")
    return prefix
