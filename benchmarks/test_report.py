"""The benchmark report keeps the notes written by hand into its header when it is rendered
again from the raw results (``python -m benchmarks report``)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.report import NOTES_END, NOTES_START, kept_notes


def test_notes_between_the_markers_are_kept(tmp_path: Path) -> None:
    report = tmp_path / "RESULTS.md"
    notes = [NOTES_START, "- later: a change measured by hand", "  - its numbers", NOTES_END]
    report.write_text("\n".join(["# results", "- commit: abc", *notes, "- engine: x", ""]))
    assert kept_notes(report) == notes


def test_no_notes_without_both_markers(tmp_path: Path) -> None:
    report = tmp_path / "RESULTS.md"
    assert kept_notes(report) == []  # no report yet
    report.write_text("\n".join(["# results", NOTES_START, "- a note", "- engine: x"]))
    assert kept_notes(report) == []
    report.write_text("\n".join([NOTES_END, "- a note", NOTES_START]))
    assert kept_notes(report) == []


def test_the_committed_report_keeps_its_notes() -> None:
    committed = Path(__file__).resolve().parent / "RESULTS.md"
    notes = kept_notes(committed)
    assert notes[0] == NOTES_START and notes[-1] == NOTES_END and len(notes) > 2


def test_a_held_out_report_says_how_to_run_it_again() -> None:
    from benchmarks.records import RunMeta
    from benchmarks.report import _header

    tuning = "\n".join(_header(RunMeta(), []))
    held_out = "\n".join(_header(RunMeta(corpus={"name": "heldout"}), []))
    quick = "\n".join(_header(RunMeta(mode="quick", corpus={"name": "heldout"}), []))
    assert "`python -m benchmarks run`;" in tuning and "`python -m benchmarks report`" in tuning
    assert "`python -m benchmarks run --corpus heldout`" in held_out
    assert (
        "`python -m benchmarks report --results benchmarks/heldout/results.jsonl "
        "--out benchmarks/heldout/RESULTS.md`" in held_out
    )
    assert "run --quick --corpus heldout" in quick and "heldout-quick/RESULTS.md" in quick
