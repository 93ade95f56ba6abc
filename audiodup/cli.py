"""Command-line interface: parse, call the library, render. Every command has a Python twin."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import signal
import sys
from collections.abc import Iterator
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .allocator import keep_freed_memory
from .catalog import Catalog, default_catalog_path
from .errors import AudiodupError, MetadataError
from .ingest import file_key
from .results import (
    BEYOND_DECODING_LIMITS,
    AddResult,
    Verdict,
    dumps,
    ids_text,
    listed_text,
    partly_screened,
    path_text,
    relation_text,
    screen_document,
    screen_summary,
    screened_part,
    shown_text,
    stats_document,
    upload_text,
    uploads_document,
    works_document,
)
from .service.config import ServiceConfig
from .settings import MAX_HIT_BUDGET, MIN_HIT_BUDGET
from .store import require_catalog_folder

# Exit codes of screen and rescan are bit flags, so no fact hides another: 1 a duplicate,
# 2 an error (an input or work that could not be screened, a report that could not be
# written; alone, also any error that stops a command), 4 a suspect. 3 = duplicate and error,
# 5 = duplicate and suspect, and so on; 0 all clean. README.md, "Exit codes", documents them.
EXIT_CLEAN, EXIT_DUPLICATE, EXIT_ERROR, EXIT_SUSPECT = 0, 1, 2, 4
EXIT_INPUT_ERROR = EXIT_ERROR  # index add, index remove, and every one-line error

app = typer.Typer(
    rich_markup_mode="markdown",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Find uploads that are tempo-, pitch- or length-altered copies of catalog works.",
)


class Role(StrEnum):
    reference = "reference"
    upload = "upload"


class StereoPart(StrEnum):
    auto = "auto"
    always = "always"
    never = "never"


index_app = typer.Typer(
    rich_markup_mode="markdown", no_args_is_help=True, help="Build and maintain the catalog."
)
app.add_typer(index_app, name="index")


def _print_version(value: bool) -> None:
    if value:
        from . import __version__
        from .settings import RECIPE

        print(f"audiodup {__version__} (fingerprint recipe {RECIPE})")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version and the fingerprint recipe, then exit.",
        ),
    ] = False,
) -> None:
    """Find uploads that are tempo-, pitch- or length-altered copies of catalog works."""


# File names, titles and uploaders are user text: nothing printed is read as rich markup or
# :emoji: codes (styles are given as Text objects), and user text goes through shown_text, so a
# control character or a newline in a name cannot drive the terminal or forge a line.
out = Console(
    highlight=False, markup=False, emoji=False, width=None if sys.stdout.isatty() else 160
)
err = Console(
    stderr=True,
    highlight=False,
    markup=False,
    emoji=False,
    width=None if sys.stderr.isatty() else 160,
)


def _input_path(text: str) -> Path:
    """An input path as given; an empty one (an unset shell variable) is a usage error, not
    ``Path("")``, which is the current folder."""
    if not text:
        raise typer.BadParameter("an empty path names nothing")
    return Path(text)


def _paths_argument(help_text: str):
    """Input paths, not checked by click: one it cannot read (a folder without read access)
    would otherwise refuse the whole batch; each path's problem is that file's own error."""
    return typer.Argument(help=help_text, readable=False, parser=_input_path)


DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="Catalog directory.",
        show_default="$AUDIODUP_DB or ./audiodup-catalog",
        parser=_input_path,
    ),
]


TimeoutOption = Annotated[
    float | None,
    typer.Option(min=0.1, help="Seconds allowed per file; a file that runs over fails alone."),
]


def _open(db: Path | None, create: bool = False, write: bool | None = None) -> Catalog:
    """The catalog of ``--db`` (or the default). Opening never waits for a writer; ``write``
    (default: ``create``) refuses a catalog that cannot be written before any work is done."""
    return Catalog.open(
        db if db is not None else default_catalog_path(),
        create=create,
        write=create if write is None else write,
    )


def _added_counts(counts: dict[str, int]) -> str:
    return (
        f"added {counts['added']}, identical {counts['identical']}, "
        f"already present {counts['present']}, failed {counts['failed']}"
    )


@index_app.command("add")
def index_add(
    paths: Annotated[
        list[Path],
        _paths_argument(
            "Audio files, read whatever their names, or folders (recursive: the files with "
            "an audio extension, the others counted in a note)."
        ),
    ],
    db: DbOption = None,
    workers: Annotated[int, typer.Option(min=1, help="Fingerprinting processes.")] = 1,
    timeout: TimeoutOption = None,
    metadata: Annotated[
        Path | None,
        typer.Option(
            "--metadata",
            help="CSV with a 'path' column and e.g. external_id, title, artist, isrc, upc, "
            "uploader, uploaded_at, role (other columns are kept). Rows are matched by full "
            "path. Checked in full before anything is added.",
        ),
    ] = None,
    role: Annotated[
        Role,
        typer.Option(
            help="reference: the files are a rights holder's own registrations; upload: "
            "submissions to screen and attribute. A 'role' column overrides it per file.",
        ),
    ] = Role.upload,
) -> None:
    """Record files as uploads in the catalog: new audio is fingerprinted and indexed, audio
    already there becomes another upload of it (reported as identical)."""
    extra: dict[str, dict] = {}
    if metadata is not None:
        from .metadata import metadata_for_paths, read_metadata

        # the whole file is checked before the catalog is even opened: nothing half-imported
        extra, unused = metadata_for_paths(read_metadata(metadata), paths)
        if unused:
            err.print(
                f"note: {len(unused)} rows of {shown_text(metadata)} name files that are not "
                "among the paths to add; they were ignored",
                soft_wrap=True,
            )
    counts = {"added": 0, "identical": 0, "present": 0, "failed": 0}
    present_with_metadata = 0
    skipped: list[Path] = []
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with (
        _open(db, create=True) as catalog,
        Progress(
            TextColumn("[bold]adding"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[name]}", markup=False),
            console=err,
            transient=True,
            disable=not err.is_terminal,  # a log gets no bar and no blank line
        ) as progress,
    ):
        task = progress.add_task("add", total=None, name="")

        def on_result(result: AddResult) -> None:
            nonlocal present_with_metadata
            counts[result.status] += 1
            if result.status == "present" and file_key(result.path) in extra:
                present_with_metadata += 1
            progress.update(task, advance=1, name=shown_text(Path(result.path).name)[:40])
            if result.status == "failed":
                _print_error(result.path, result.error, progress.console)
            elif result.truncated and result.status in ("added", "identical"):
                _print_partly_added(result, progress.console)

        try:
            catalog.add_paths(
                paths,
                workers=workers,
                metadata=extra,
                on_result=on_result,
                timeout_s=timeout,
                role=role.value,
                on_skip=skipped.append,
            )
        except Exception:
            if any(counts.values()):  # what the committed batches hold stays: say what it is
                err.print(f"committed before the error: {_added_counts(counts)}", soft_wrap=True)
            raise
    out.print(_added_counts(counts))
    if skipped:
        err.print(_skipped_note(skipped), soft_wrap=True)
    if present_with_metadata:
        err.print(
            f"note: {present_with_metadata} files with metadata were already recorded; their "
            "metadata was not changed (use 'audiodup index update --metadata')",
            soft_wrap=True,
        )
    if counts["failed"]:
        raise typer.Exit(EXIT_INPUT_ERROR)


def _skipped_note(skipped: list[Path], shown: int = 3) -> str:
    """The files folder walks left out, counted and the first few named: a skip is silent in
    the summary, and a copy must not hide from the catalog (and rescan) by its extension."""
    names = ", ".join(shown_text(listed_text(path_text(p))) for p in skipped[:shown])
    some = "e.g. " if len(skipped) > shown else ""
    files = "file" if len(skipped) == 1 else "files"
    return (
        f"note: skipped {len(skipped)} {files} in folders without an audio extension "
        f"({some}{names}); name them explicitly to add them"
    )


@index_app.command("list")
def index_list(
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the works in the catalog."""
    with _open(db) as catalog:
        works = catalog.works()
    if as_json:
        print(dumps(works_document(works)))
        return
    table = Table("work_id", "duration", "title", "path")
    for w in works:
        table.add_row(str(w.work_id), f"{w.duration_s:.1f} s", _user(w.title), _user(w.path))
    out.print(table)


@index_app.command("update")
def index_update(
    metadata: Annotated[
        Path,
        typer.Option(
            "--metadata",
            help="CSV naming each upload by upload_id, external_id or path (full path, never "
            "a base name), with the fields to change (title, artist, isrc, upc, external_id, "
            "uploader, uploaded_at, role, others). Empty cells change nothing.",
        ),
    ],
    db: DbOption = None,
) -> None:
    """Change the metadata and roles of uploads already in the catalog: every line is checked
    first, and nothing is changed unless all are valid."""
    from .metadata import read_metadata_update

    with _open(db, write=True) as catalog:
        changes = read_metadata_update(metadata, catalog.uploads())
        catalog.update_uploads(changes)
    out.print(f"updated {len(changes)} uploads")


@index_app.command("uploads")
def index_uploads(
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the upload ledger: every submission, its work (content), role and identifiers."""
    with _open(db) as catalog:
        uploads = catalog.uploads()
    if as_json:
        print(dumps(uploads_document(uploads)))
        return
    table = Table("upload_id", "work_id", "role", "uploader", "uploaded_at", "external ids", "path")
    for u in uploads:
        ids = ids_text(u.external_ids, ", ")
        table.add_row(
            str(u.upload_id),
            str(u.work_id),
            u.role,
            _user(u.uploader or ""),
            _user(u.uploaded_at or ""),
            _user(ids),
            _user(u.source_path),
        )
    out.print(table)


@index_app.command("remove")
def index_remove(work_id: int, db: DbOption = None) -> None:
    """Remove a work (its index entries are dropped at the next compaction or rebuild)."""
    with _open(db) as catalog:
        if not catalog.remove(work_id):
            err.print(f"error: no work {work_id} in the catalog")
            raise typer.Exit(EXIT_INPUT_ERROR)
    out.print(f"removed work {work_id}")


@index_app.command("stats")
def index_stats(
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Works, uploads, hours of audio, index size."""
    with _open(db) as catalog:
        stats = catalog.stats()
    if as_json:
        print(dumps(stats_document(stats)))
        return
    table = Table("statistic", "value")
    table.add_row("works (distinct audio)", str(stats.works))
    table.add_row("uploads (of which references)", f"{stats.uploads} ({stats.references})")
    table.add_row("hours of audio", f"{stats.hours:.2f}")
    table.add_row("index bytes", f"{stats.index_bytes:,}")
    table.add_row("catalog bytes (index + SQLite)", f"{stats.catalog_bytes:,}")
    table.add_row("bytes per work", f"{stats.bytes_per_work:,.0f}")
    table.add_row("MB per hour of audio", f"{stats.bytes_per_hour / 1e6:.2f}")
    table.add_row("hash entries", f"{stats.hash_entries:,}")
    table.add_row("chroma vectors", f"{stats.chroma_vectors:,}")
    table.add_row("index shards", str(stats.shards))
    out.print(table)


@index_app.command("verify")
def index_verify(db: DbOption = None) -> None:
    """Check that SQLite and the index shards agree and every work has its fingerprints.

    Exit code: 0 sound, 1 problems found (each printed; damage is a finding, not an error)."""
    from .errors import CatalogDamagedError
    from .store import VERIFY_HINT

    advice = (
        "run 'audiodup index rebuild' to regenerate the indexes from stored fingerprints "
        "(a work without a readable fingerprint: 'audiodup index remove ID' first)"
    )
    try:
        with _open(db) as catalog:
            check = catalog.check()
        problems, notes = check.problems, check.notes
    except CatalogDamagedError as exc:  # too damaged to open: that is the finding
        problems, notes = (str(exc).removesuffix(VERIFY_HINT),), ()
        advice = (
            "the catalog database itself cannot be read, and 'audiodup index rebuild' rebuilds "
            "the indexes from it: restore catalog.sqlite from a backup"
        )
    for note in notes:
        err.print(f"note: {shown_text(note)}", soft_wrap=True)
    for problem in problems:
        err.print(f"problem: {shown_text(problem)}", soft_wrap=True)
    if problems:
        err.print(advice, soft_wrap=True)
        raise typer.Exit(1)
    out.print("catalog OK")


@index_app.command("rebuild")
def index_rebuild(db: DbOption = None) -> None:
    """Regenerate every index shard (hash and chroma) from the fingerprints stored in SQLite."""
    with _open(db, write=True) as catalog:
        catalog.rebuild()
        stats = catalog.stats()
    out.print(
        f"rebuilt: {stats.works} works, {stats.hash_entries:,} hashes, "
        f"{stats.chroma_vectors:,} chroma vectors"
    )


@index_app.command("upgrade")
def index_upgrade(db: DbOption = None) -> None:
    """Make the index of a catalog whose recipe stored the same fingerprints (other hash keys or
    chroma segment vectors) again from them, no audio needed. Rewrite chroma shards of an
    older layout so FAISS scans them with SIMD (about 2x faster), keeping their lists and codes:
    searches find the same segments (similarities equal to float rounding, so only a tie at that
    level can order two differently). Write the four-peak index of shards written before it
    (large catalogs find more hard copies). Nothing to do prints 0."""
    with Catalog.open(
        db if db is not None else default_catalog_path(), create=False, write=True, rekey=True
    ) as catalog:
        rekeyed = catalog.rekey()
        padded, quads = catalog.upgrade()
    out.print(
        f"upgraded: {padded} chroma shards, {quads} four-peak indexes written, "
        f"{rekeyed} works re-keyed"
    )


@index_app.command("shard")
def index_shard(
    groups: Annotated[
        int,
        typer.Option(
            "--groups",
            min=0,
            max=4096,
            help="Shard groups (work w goes to group w % N); 0 joins them into one shard.",
        ),
    ],
    db: DbOption = None,
) -> None:
    """Split the catalog's index into shard groups that Dask workers hold apart (screen --dask,
    rescan --dask). New works go to their group's own shards."""
    with _open(db, write=True) as catalog:
        catalog.store.split_shards(groups)
        stats = catalog.stats()
    if groups:
        out.print(f"{stats.works} works in {groups} shard groups ({stats.shards} shards)")
    else:
        out.print(f"{stats.works} works joined into one shard group ({stats.shards} shards)")


DaskOption = Annotated[
    str | None,
    typer.Option(
        "--dask",
        metavar="ADDRESS",
        help="Screen against the catalog's shard groups on this Dask scheduler (e.g. "
        "tcp://host:8786); its workers must see the catalog at the same absolute path.",
    ),
]
DaskTimeoutOption = Annotated[
    float,
    typer.Option(
        "--dask-timeout",
        min=1.0,
        help="Seconds to wait for the Dask workers' answers before giving up with an error.",
    ),
]


@app.command()
def screen(
    paths: Annotated[list[Path], _paths_argument("Uploads to screen.")],
    db: DbOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document: a summary and the results.")
    ] = False,
    top: Annotated[int, typer.Option("--top", min=1, help="Matches reported per upload.")] = 5,
    workers: Annotated[int, typer.Option(min=1, help="Decoding processes.")] = 1,
    timeout: TimeoutOption = None,
    report: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Also write a report: FILE.json, FILE.csv or FILE.html (self-contained, with "
            "pictures and audio excerpts of every flagged upload).",
        ),
    ] = None,
    dask: DaskOption = None,
    dask_timeout: DaskTimeoutOption = 300.0,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="Only look at each upload as it is: no further looks at 2x slower/faster or "
            "other frame phases (less CPU per clean upload; misses more 2x stretches and "
            "4-5 s excerpts).",
        ),
    ] = False,
    hit_budget: Annotated[
        int | None,
        typer.Option(
            "--hit-budget",
            min=MIN_HIT_BUDGET,
            max=MAX_HIT_BUDGET,
            help="Hash hits one look-up keeps (default 300,000) in a catalog of more than 2 M "
            "hash entries (a smaller one is looked up whole). More finds more hard copies for "
            "more CPU: at 10^5 works in one shard, 0.3 / 1 / 3 M hits found 83.6 / 87.3 / "
            "90.0 % of the hard variants, negatives' search CPU p50 0.8 / 1.3 / 2.1 s "
            "(benchmarks/SCALING.md).",
        ),
    ] = None,
    stereo_difference: Annotated[
        StereoPart,
        typer.Option(
            "--stereo-difference",
            help="Also screen what a stereo upload's mix cancels (half the left channel minus "
            "the right, where a copy can hide; of a 5.1, 7.1 or quad upload, half the "
            "difference of each pair of channels): auto, the stretch where it does not follow the "
            "mix (7 % of the tuning corpus's stereo tracks, 25 % of the held-out one's; "
            "benchmarks/STEREO.md); always, all of it; never.",
        ),
    ] = StereoPart.auto,
    stereo_channels: Annotated[
        StereoPart,
        typer.Option(
            "--stereo-channels",
            help="Also screen each channel of a stereo upload alone (a copy in one ear under "
            "loud noise or other music in the other, which the mix and the difference both "
            "drown; of a 5.1, 7.1 or quad upload, each of its channels): auto, the stretch "
            "where a channel's band energies do not follow the other's (the others' sum) "
            "(1 of the tuning corpus's 161 stereo tracks; benchmarks/STEREO.md); always, all "
            "of every channel; never.",
        ),
    ] = StereoPart.auto,
) -> None:
    """Screen uploads against the catalog.

    Exit code: the sum of 1 (any duplicate), 2 (any input that could not be screened, or
    only in part, the decoding limits cutting it, with no duplicate in that part, or a report
    that could not be written) and 4 (any suspect); 0 when every upload is clean.
    """
    if report is not None:
        # the report writers (and rescan behind them) load only when a report is asked for
        from .report import check_report_path, write_screen_report

        # a report that cannot be written fails before the work
        check_report_path(report, paths, db if db is not None else default_catalog_path())
    with _open(db) as catalog:
        if quick:
            catalog.settings = catalog.settings.without_further_looks()
        catalog.settings = catalog.settings.with_hit_budget(hit_budget)
        catalog.settings = replace(
            catalog.settings,
            stereo_difference=stereo_difference.value,
            stereo_channels=stereo_channels.value,
        )
        with _sharded(catalog, dask, dask_timeout):
            verdicts = catalog.screen_many(paths, top_k=top, workers=workers, timeout_s=timeout)
        if as_json:
            print(dumps(screen_document(verdicts)))
        else:
            for verdict in verdicts:
                if verdict.error:
                    _print_error(verdict.path, verdict.error)
                elif partly_screened(verdict):
                    _print_partly_screened(verdict)
            _print_verdicts(verdicts)
        # after the verdicts: a report that fails to write late (disk full) loses no verdict
        failed = report is not None and not _write_report(
            functools.partial(write_screen_report, files=paths), verdicts, report, catalog
        )
    raise typer.Exit(_with_report(_screen_exit_code(verdicts), failed))


def _quiet_dask() -> None:
    """Dask's own log lines stay off stderr, which holds our one-line messages."""
    from .dask_client import quiet_logs, require_distributed

    require_distributed()
    quiet_logs()


@contextlib.contextmanager
def _sharded(catalog: Catalog, dask: str | None, timeout_s: float) -> Iterator[None]:
    """With ``dask``, ``catalog`` screens on that cluster's workers, over its shard groups."""
    if dask is None:
        yield
        return
    from .sharded import ShardedScreening

    _quiet_dask()
    with ShardedScreening(catalog.store, catalog.settings, dask, timeout_s=timeout_s) as sharded:
        catalog.screen_with(sharded.match_fingerprint, sharded.totals)
        try:
            yield
        finally:
            catalog.screen_with(None)


def _write_report(write, result, report: Path, catalog: Catalog) -> bool:
    """Write a report with ``write(result, report, catalog)``; False (with one error line) when
    it fails."""
    try:
        written = write(result, report, catalog)
    except AudiodupError as exc:
        err.print(f"error: {shown_text(exc)}", soft_wrap=True)
        return False
    err.print(f"report written to {shown_text(written)}", soft_wrap=True)
    return True


def _with_report(code: int, report_failed: bool) -> int:
    """A report that could not be written adds the error flag to the verdicts' code."""
    return code | EXIT_ERROR if report_failed else code


def exit_code(*, duplicates: int, errors: int, suspects: int) -> int:
    """The exit code of a batch: one flag per kind of fact present, so none hides another."""
    return (
        (EXIT_DUPLICATE if duplicates else 0)
        | (EXIT_ERROR if errors else 0)
        | (EXIT_SUSPECT if suspects else 0)
    )


def _print_error(path: str, error: str | None, console: Console | None = None) -> None:
    """The one line of a file that failed: its path, then the cause."""
    (console or err).print(f"error: {shown_text(path)}: {shown_text(error)}", soft_wrap=True)


def _user(text: str | None) -> Text:
    """A table cell of user text, shown literally and whole: folded onto more lines where the
    column is narrower, never cut short (two names that differ at their ends stay apart)."""
    return Text(shown_text(text or ""), overflow="fold")


def _screen_exit_code(verdicts: list[Verdict]) -> int:
    """The flags of :func:`exit_code`; an upload screened only in part with no duplicate in
    that part (:func:`audiodup.results.partly_screened`) raises the error flag: what follows
    is unseen."""
    counts = screen_summary(verdicts)
    return exit_code(
        duplicates=counts["duplicate"],
        errors=counts["error"] + counts["partly_screened"],
        suspects=counts["suspect"],
    )


def _print_partly_added(result: AddResult, console: Console) -> None:
    seen = f"{result.duration_s or 0:.1f} s"
    if result.status == "added":
        what = f"only its first {seen} are in the catalog"
        then = "an upload that copies the rest will not be found"
    else:
        what = f"identical to work {result.work_id} in its first {seen}"
        then = "the rest was not compared"
    console.print(
        f"warning: {shown_text(result.path)}: {what} ({BEYOND_DECODING_LIMITS}): {then}",
        soft_wrap=True,
    )


def _print_partly_screened(verdict: Verdict) -> None:
    err.print(
        f"warning: {shown_text(verdict.path)}: only its first {verdict.duration_s or 0:.1f} s "
        f"were screened ({BEYOND_DECODING_LIMITS}), and they hold no duplicate: what follows "
        "is unseen",
        soft_wrap=True,
    )


def _print_verdicts(verdicts: list[Verdict]) -> None:
    table = Table(
        "upload",
        "verdict",
        "work",
        "relation",
        "tempo",
        "pitch (st)",
        "upload s",
        "work s",
        "hashes",
        "false-match p",
    )
    style = {"duplicate": "bold red", "suspect": "yellow", "clean": "green"}
    for v in verdicts:
        name = _user(Path(v.path).name)
        if v.error:
            table.add_row(name, Text("error", style="red"), _user(v.error), *[""] * 7)
            continue
        part = screened_part(v)
        label = Text(v.verdict + (f" ({part})" if part else ""), style=style[v.verdict])
        if not v.matches:
            table.add_row(name, label, *[""] * 8)
        for i, m in enumerate(v.matches):
            table.add_row(
                name if i == 0 else "",
                label if i == 0 else "",
                _user(f"{m.work_id}: {Path(m.path).name}"),
                relation_text(m),
                f"x{m.tempo_ratio:.3f}",
                f"{m.pitch_shift_semitones:+.2f}",
                f"{m.query_start_s:.1f}-{m.query_end_s:.1f}",
                f"{m.ref_start_s:.1f}-{m.ref_end_s:.1f}",
                str(m.matched_hashes)
                + ("" if m.matched_peaks is None else f" ({m.matched_peaks} peaks)")
                + (
                    f", {m.matched_on_shared_material} on shared material"
                    if m.matched_on_shared_material
                    else ""
                ),
                f"{m.false_match_probability:.1e}",
            )
    out.print(table)


@app.command("rescan")
def rescan_command(
    db: DbOption = None,
    workers: Annotated[int, typer.Option(min=1, help="Screening processes.")] = 1,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=0.1,
            help="Seconds allowed per work; a work whose file runs over (or crashes the "
            "decoder) is screened with its stored fingerprint instead.",
        ),
    ] = None,
    new_only: Annotated[
        bool,
        typer.Option(
            "--new-only",
            help="Screen only works added since the last rescan (against everything) and merge "
            "with the earlier results.",
        ),
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="DATE",
            help="Screen only works added to the catalog at or after DATE (ISO 8601) and merge "
            "with the earlier results.",
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option("--out", help="Write the report: FILE.json, FILE.csv or FILE.html."),
    ] = None,
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask",
            metavar="ADDRESS",
            help="Screen on this Dask scheduler (e.g. tcp://host:8786); its workers must see "
            "the catalog and the audio files at the same absolute paths. A catalog split by "
            "'index shard' is screened over its shard groups. --timeout is then the longest "
            "wait for the next result (default 300 s).",
        ),
    ] = None,
) -> None:
    """Screen every work against all others: typed links (copy_of, contains_excerpt_of),
    clusters of an original and its copies, owners, caveats, uploaders. Killed and restarted,
    it resumes where it stopped.

    Exit code: the sum of 1 (duplicate pairs), 2 (works that could not be screened at all, or
    a report that could not be written) and 4 (suspect pairs); 0 when nothing matched.
    """
    from .metadata import parse_timestamp
    from .report import check_report_path, write_rescan_report
    from .rescan import load_report, run_rescan
    from .rescan.serialise import report_summary

    if new_only and since is not None:
        raise typer.BadParameter("use either --new-only or --since, not both", param_hint="--since")
    since_dt = None
    if since is not None:
        try:
            since_dt = parse_timestamp(since)
        except ValueError:
            raise typer.BadParameter(
                f"{since!r} is not an ISO 8601 date (e.g. 2024-03-01)", param_hint="--since"
            ) from None
    if report is not None:
        # before the work: a rescan can take hours
        check_report_path(report, (), db if db is not None else default_catalog_path())
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if dask is not None:
        _quiet_dask()
    with (
        _open(db) as catalog,
        Progress(
            TextColumn("[bold]rescanning"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[name]}"),
            console=err,
            transient=True,
            disable=not err.is_terminal,  # a log gets no bar and no blank line
        ) as progress,
    ):
        task = progress.add_task("rescan", total=None, name="")

        def on_progress(done: int, total: int, scan) -> None:
            if scan is None:
                if done:
                    progress.console.print(f"resuming: {done} of {total} works already screened")
                progress.reset(task, total=total, completed=done)
                return
            progress.update(task, completed=done, name=f"work {scan.work_id}")

        summary = run_rescan(
            catalog,
            workers=workers,
            new_only=new_only,
            since=since_dt,
            dask=dask,
            timeout_s=timeout,
            on_progress=on_progress,
        )
        progress.stop()
        result = load_report(catalog)
        _print_rescan(result, summary)
        failed = report is not None and not _write_report(
            write_rescan_report, result, report, catalog
        )
    counts = report_summary(result)
    code = exit_code(
        duplicates=counts["duplicate_pairs"],
        errors=counts["errors"],
        suspects=counts["suspect_pairs"],
    )
    raise typer.Exit(_with_report(code, failed))


_MAX_CONSOLE_CLUSTERS = 50


def _print_rescan(result, summary) -> None:
    uploads = {m.upload_id: m for m in result.linked_uploads}
    by_work: dict[int, list] = {}
    for m in result.linked_uploads:
        by_work.setdefault(m.work_id, []).append(m)
    if result.clusters:
        table = Table("cluster", "original (owner)", "uploads: relation to the original", "caveats")
        for c in result.clusters[:_MAX_CONSOLE_CLUSTERS]:
            alteration = {a.work_id: a for a in c.alterations}
            original = [c.original_reason]
            if c.determined:
                original.insert(0, upload_text(uploads[c.original_upload_id]))
            lines = []
            for m in c.members:
                how = c.relation_text(m)
                if m.work_id in alteration and m.relation != "identical":
                    how += f" ({alteration[m.work_id].description})"
                lines.append(f"{upload_text(m)}: {how}")
            table.add_row(
                str(c.cluster_id),
                Text("\n".join(shown_text(line) for line in original)),
                Text("\n".join(shown_text(line) for line in lines)),
                Text("\n".join(shown_text(caveat) for caveat in c.caveats)),
            )
        out.print(table)
        if len(result.clusters) > _MAX_CONSOLE_CLUSTERS:
            out.print(
                f"... and {len(result.clusters) - _MAX_CONSOLE_CLUSTERS} more clusters "
                "(write them all with --out)"
            )
    others = _grouped_links(result)
    if others:
        table = Table("work", "relation", "source work", "shares", "why, caveats")
        for k, also in others[: 2 * _MAX_CONSOLE_CLUSTERS]:
            source = _work_text(k.source_work_id, by_work)
            if also:
                source += f"\nand its copies: work {', '.join(str(w) for w in also)}"
            table.add_row(
                Text(_work_text(k.work_id, by_work)),
                k.kind,
                Text(source),
                f"{100 * k.work_share:.0f} % of it, {100 * k.source_share:.0f} % of the source",
                Text("\n".join(shown_text(t) for t in (k.direction, *k.caveats))),
            )
        out.print(table)
    if result.uploaders:
        table = Table(
            "uploader",
            "copies",
            "share",
            "copies duration",
            "uploads",
            "excerpts used",
            "undetermined",
        )
        for u in result.uploaders[:10]:
            table.add_row(
                _user(u.uploader),
                str(u.copies),
                f"{100 * u.share:.0f} %",
                f"{u.copies_duration_s / 60:.1f} min",
                str(u.uploads),
                str(u.excerpts_used),
                str(u.undetermined),
            )
        out.print(table)
    for note in (*result.fallbacks, *result.errors, *result.partly_scanned):
        err.print(f"note: work {note.work_id}: {shown_text(note.note)}", soft_wrap=True)
    if summary.decoded_here:
        works = ", ".join(str(w) for w in summary.decoded_here[:10])
        more = ", ..." if len(summary.decoded_here) > 10 else ""
        err.print(
            f"note: the Dask workers could not read the files of {len(summary.decoded_here)} "
            f"works (work {works}{more}) that this machine reads; they were decoded here. "
            "The workers must see the audio files at the same absolute paths.",
            soft_wrap=True,
        )
    if summary.run_id is None:
        now = "nothing new to screen; "
    else:
        resumed = ", resumed" if summary.resumed else ""
        now = f"screened {summary.screened} works now (run {summary.run_id}{resumed}); "
    kinds = [k.kind for k in result.links]
    undetermined = sum(not c.determined for c in result.clusters)
    out.print(
        f"{now}"
        f"{result.scanned} of {result.works} works ({result.uploads} uploads) have results: "
        f"{len(result.clusters)} clusters ({undetermined} without a determined original), "
        f"{kinds.count('copy_of')} copy_of, {kinds.count('contains_excerpt_of')} "
        f"contains_excerpt_of, {kinds.count('same_recording')} same_recording, "
        f"{kinds.count('overlap')} overlap links; {len(result.pairs)} duplicate pairs, "
        f"{len(result.suspect_pairs)} suspect pairs"
    )


def _work_text(work_id: int, by_work: dict) -> str:
    """A work and who stands for it: its references (the owners), else its first upload."""
    uploads = by_work.get(work_id, [])
    if not uploads:
        return f"work {work_id}"
    name = shown_text(listed_text(uploads[0].title or Path(uploads[0].path).name))
    shown = [m for m in uploads if m.role == "reference"] or uploads[:1]
    more = len(uploads) - len(shown)
    lines = [f"work {work_id} {name}", *(shown_text(upload_text(m)) for m in shown)]
    if more:
        lines.append(f"+{more} other upload{'s' if more > 1 else ''}")
    return "\n".join(lines)


def _grouped_links(result) -> list:
    """The links outside clusters, one row per derived work and source cluster: the link to the
    cluster's original when there is one (else the strongest), with the other works of that
    cluster it also matched."""
    cluster_of = {w: c for c in result.clusters for w in c.work_ids}
    groups: dict[tuple, list] = {}
    for k in result.links:
        if k.clustered:
            continue
        cluster = cluster_of.get(k.source_work_id)
        key = (k.work_id, k.kind, cluster.cluster_id if cluster else -k.source_work_id)
        groups.setdefault(key, []).append(k)
    rows = []
    for links in groups.values():
        cluster = cluster_of.get(links[0].source_work_id)
        original = cluster.original_work_id if cluster else None
        lead = next(
            (k for k in links if k.source_work_id == original),
            max(links, key=lambda k: k.score),
        )
        rows.append((lead, sorted(k.source_work_id for k in links if k is not lead)))
    return rows


@app.command("explain")
def explain_command(
    upload: Annotated[Path, _paths_argument("The upload (any audio file).")],
    work_id: Annotated[int, typer.Argument(help="The catalog work to compare it with.")],
    db: DbOption = None,
    picture: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="PNG or SVG file.",
            show_default="explain-<upload name>-<work id>.png",
        ),
    ] = None,
) -> None:
    """Draw why UPLOAD matches WORK_ID: matched hashes (upload time against reference time,
    the slope is the tempo ratio) with the fitted sections, and the aligned chroma of both."""
    from .explain import explain

    with _open(db) as catalog:
        written = explain(catalog, upload, work_id, picture)
    out.print(shown_text(written), soft_wrap=True)


# ``audiodup screen`` without anything unusual is parsed here, not by typer: typer converts
# every parameter through a pydantic adapter, ~0.11 CPU-s of imports and schema building
# (issue #16). Anything this parser is not sure of (help, an unknown or repeated option, an
# odd value, no path) goes to typer, which gives its usual help and error messages.
_SCREEN_FLAGS = {"--json": "as_json", "--quick": "quick"}
_SCREEN_OPTIONS = {
    "--db": "db",
    "--top": "top",
    "--workers": "workers",
    "--timeout": "timeout",
    "--out": "report",
}
_COUNT = re.compile(r"[1-9][0-9]{0,5}")
_SECONDS = re.compile(r"[0-9]{1,6}(\.[0-9]{1,6})?")


def _screen_value(name: str, text: str) -> object | None:
    """An option's value as typer would convert it, or None when typer should decide."""
    if name in ("top", "workers"):
        return int(text) if _COUNT.fullmatch(text) else None
    if name == "timeout":
        return float(text) if _SECONDS.fullmatch(text) and float(text) >= 0.1 else None
    return Path(text)


def parse_plain_screen(argv: list[str]) -> dict | None:
    """The keyword arguments of :func:`screen` for ``audiodup ARGV``, or None unless ``ARGV``
    is a plain ``screen`` command line (then typer parses it)."""
    if len(argv) < 2 or argv[0] != "screen":
        return None
    params: dict = {}
    paths: list[Path] = []
    tokens = iter(argv[1:])
    for token in tokens:
        if token == "--":
            paths += [Path(rest) for rest in tokens]
            break
        name, equals, inline = token.partition("=")
        if token in _SCREEN_FLAGS and _SCREEN_FLAGS[token] not in params:
            params[_SCREEN_FLAGS[token]] = True
        elif name in _SCREEN_OPTIONS and _SCREEN_OPTIONS[name] not in params:
            text = inline if equals else next(tokens, "")
            value = _screen_value(_SCREEN_OPTIONS[name], text)
            if not text or text.startswith("-") or value is None:
                return None
            params[_SCREEN_OPTIONS[name]] = value
        elif token.startswith("-") or not token:
            return None
        else:
            paths.append(Path(token))
    if not paths or any(not str(p) or str(p) == "-" for p in paths):
        return None
    return {"paths": paths, **params}


def _run_plain_screen(params: dict) -> None:
    """:func:`screen` with typer's exit handling: its exit code (an interrupt goes on to
    :func:`main`, which says so)."""
    try:
        screen(**params)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(0)


class OutputLost(Exception):
    """stdout or stderr refused a write: its reader went away (a closed pipe) or its disk is
    full. No command catches it, and neither does click, which would exit with 1 on a closed
    pipe: the flag of a duplicate."""

    def __init__(self, error: OSError):
        super().__init__(error.strerror or str(error))
        self.errno = error.errno


class _GuardedStream:
    """A text stream whose failed writes raise :class:`OutputLost`."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise OutputLost(exc) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise OutputLost(exc) from None

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _say(text: str) -> None:
    """One line on stderr, unless stderr itself is what cannot be written (then what it holds
    goes nowhere, so that flushing it at exit cannot fail either)."""
    try:
        err.print(text, soft_wrap=True)
        sys.stderr.flush()
    except (OSError, OutputLost):
        _discard(sys.__stderr__)


def _discard(stream) -> None:
    """Point ``stream``'s descriptor at /dev/null: what is still buffered goes nowhere."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


def _output_lost(exc: OutputLost) -> None:
    """Stop writing: what is still buffered goes nowhere (a closed pipe's reader wants no more),
    and the exit code is the one of an error, never a verdict's flag."""
    with contextlib.suppress(OSError, OutputLost):
        sys.stdout.flush()
    _discard(sys.__stdout__)
    if exc.errno != errno.EPIPE:
        _say(f"error: cannot write the output: {exc}")
    sys.exit(EXIT_INPUT_ERROR)


class Terminated(BaseException):
    """SIGTERM or SIGHUP reached the command: it stops as on an interrupt (a ``BaseException``,
    so no batch takes it for one file's error), its workers stopped and its locks released,
    and exits 128 + the signal's number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_STOPS = (signal.SIGTERM, signal.SIGHUP)


def _terminate(signum: int, _frame) -> None:
    # the command unwinds once: either signal again while it does is ignored (no traceback
    # from the cleanup it would cut short; SIGKILL still stops it)
    for stop in _STOPS:
        signal.signal(stop, signal.SIG_IGN)
    raise Terminated(signum)


def _run_command() -> None:
    """The command of ``sys.argv``; its output flushed before it exits, so that output which
    cannot be written is :class:`OutputLost` here and not an error at interpreter exit."""
    try:
        plain_screen = parse_plain_screen(sys.argv[1:])
        if plain_screen is not None:
            _run_plain_screen(plain_screen)
        try:
            app()
        except SystemExit as exc:
            if exc.code == 130:  # typer makes Ctrl-C a silent exit 130: main says it
                raise KeyboardInterrupt from None
            raise
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def main() -> None:
    """Console entry point: every error becomes one line, never a traceback."""
    keep_freed_memory()
    streams, handlers = (sys.stdout, sys.stderr), {}
    # the service logs to stderr itself, never raises there, and stops its workers on a signal
    if sys.argv[1:2] != ["serve"]:
        sys.stdout, sys.stderr = _GuardedStream(sys.stdout), _GuardedStream(sys.stderr)
        # a signal the caller ignores (nohup) stays ignored
        handlers = {
            stop: signal.signal(stop, _terminate)
            for stop in _STOPS
            if signal.getsignal(stop) == signal.SIG_DFL
        }
    try:
        _run_command()
    except AudiodupError as exc:
        # one line; a metadata CSV's problems one line each, their text escaped here, once
        if isinstance(exc, MetadataError):
            _say("error: " + "\n".join(exc.lines(shown_text)))
        else:
            _say(f"error: {shown_text(exc)}")
        sys.exit(EXIT_INPUT_ERROR)
    except KeyboardInterrupt:
        _say("interrupted")
        sys.exit(130)
    except Terminated as exc:
        _say(f"terminated ({exc})")
        sys.exit(128 + exc.signum)
    except OutputLost as exc:
        _output_lost(exc)
    except Exception as exc:  # noqa: BLE001
        _say(f"internal error: {type(exc).__name__}: {shown_text(exc)}")
        sys.exit(70)
    finally:
        sys.stdout, sys.stderr = streams
        for stop, handler in handlers.items():
            signal.signal(stop, handler)


# -- the service (issue #15): audiodup serve, audiodup keys ---------------------------------------
keys_app = typer.Typer(
    rich_markup_mode="markdown", no_args_is_help=True, help="Manage the service's API keys."
)
app.add_typer(keys_app, name="keys")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="TOML settings file (environment and flags override it)."),
]


def _service_config(config_file: Path | None, **flags):
    try:
        from .service.config import load_config
    except ImportError as exc:  # pragma: no cover - the serve extra is missing
        raise AudiodupError(
            f"the service needs its extra: pip install 'audiodup[serve]' ({exc})"
        ) from None
    return load_config(config_file, flags)


def _key_file(config_file: Path | None, db: Path | None):
    """The service's key file (``service.auth.KeyFile``); one kept in the catalog (no
    ``key_file`` configured) needs the catalog: a key is never written into a folder that
    holds none (it would then refuse to become one). Only that the catalog is there is
    checked: a key can be revoked while the catalog needs an upgrade or a repair."""
    from .service.auth import KeyFile

    settings = _service_config(config_file, db=db)
    if settings.key_file is None:
        require_catalog_folder(settings.db)
    return KeyFile(settings.keys_path)


class Scope(StrEnum):
    screen = "screen"
    review = "review"
    admin = "admin"


def _service_option(help_text: str, default: object):
    """A ``serve`` flag whose default, shown in ``--help``, the config file and the environment
    come before."""
    return typer.Option(
        help=help_text, show_default=f"{default}, unless --config or AUDIODUP_* sets it"
    )


@app.command("serve")
def serve_command(
    db: DbOption = None,
    host: Annotated[
        str | None, _service_option("Address to listen on.", ServiceConfig.host)
    ] = None,
    port: Annotated[int | None, _service_option("Port to listen on.", ServiceConfig.port)] = None,
    workers: Annotated[
        int | None, _service_option("Worker processes.", ServiceConfig.workers)
    ] = None,
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask",
            help="Screen over the catalog's shard groups held by this Dask scheduler's "
            "workers (a catalog split by 'index shard').",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Run the screening service (HTTP API, docs at /docs) until interrupted."""
    settings = _service_config(config, db=db, host=host, port=port, workers=workers, dask=dask)
    try:
        from .service import server
    except ImportError as exc:
        raise AudiodupError(
            f"the service needs its extra: pip install 'audiodup[serve]' ({exc})"
        ) from None
    server.run(settings, warnings=server.check(settings))


@keys_app.command("create")
def keys_create(
    name: Annotated[
        str, typer.Argument(help="A name for the key's holder (letters, digits, ._-).")
    ],
    scope: Annotated[
        list[Scope], typer.Option("--scope", help="screen, review or admin (repeatable).")
    ],
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Create an API key and print it, once: only its hash is kept."""
    key = _key_file(config, db).create(name, [s.value for s in scope])
    print(key)
    err.print(f"key {name} created; it is shown only now", soft_wrap=True)


@keys_app.command("list")
def keys_list(db: DbOption = None, config: ConfigOption = None) -> None:
    """List the API keys (names, scopes, dates; never the keys)."""
    table = Table("name", "scopes", "created", "revoked")
    for record in _key_file(config, db).records():
        table.add_row(
            _user(record.name), ",".join(record.scopes), record.created_at, record.revoked_at or ""
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(name: str, db: DbOption = None, config: ConfigOption = None) -> None:
    """Revoke an API key (running servers refuse it from their next request)."""
    count = _key_file(config, db).revoke(name)
    out.print(f"revoked {count} key{'s' if count > 1 else ''} named {_user(name)}")


if __name__ == "__main__":
    main()
