"""benchmarks.hard_cases: recall per hard variant, short tracks apart, targets marked."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from benchmarks.hard_cases import found, table, target


def record(variant: str, track: str, role: str, verdict: str, top: str | None) -> dict:
    matches = [{"track_id": top}] if top else []
    return {
        "type": "query",
        "query": {"variant": variant, "track_id": track, "role": role},
        "engine": {"verdict": verdict, "matches": matches, "total_s": 0.1},
    }


def write(path: Path, records: list[dict]) -> Path:
    lines = "".join(json.dumps(r) + "\n" for r in records)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(lines.encode()))
    else:
        path.write_text(lines)
    return path


def test_a_positive_is_found_only_as_a_duplicate_of_its_own_work() -> None:
    assert found(record("excerpt 4 s", "a", "positive", "duplicate", "a"))
    assert not found(record("excerpt 4 s", "a", "positive", "duplicate", "b"))
    assert not found(record("excerpt 4 s", "a", "positive", "suspect", "a"))


def test_targets_apply_per_stretcher() -> None:
    assert target("tempo 2.00 [sox]") == target("tempo 2.00") == 0.97
    assert target("excerpt 4 s") == 0.85 and target("mp3 64k") is None


def test_the_table_counts_recall_short_tracks_and_negatives(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.json"
    corpus.write_text(
        json.dumps(
            {
                "tracks": [
                    {"track_id": "a", "duration_s": 40.0},
                    {"track_id": "b", "duration_s": 200.0},
                ]
            }
        )
    )
    variant = "tempo 2.00 [sox]"
    before = write(
        tmp_path / "before.jsonl",
        [
            record(variant, "a", "positive", "clean", None),
            record(variant, "b", "positive", "duplicate", "b"),
            record(variant, "n", "negative", "clean", None),
        ],
    )
    after = write(
        tmp_path / "after.jsonl.gz",
        [
            record(variant, "a", "positive", "duplicate", "a"),
            record(variant, "b", "positive", "duplicate", "b"),
            record(variant, "n", "negative", "suspect", "b"),
        ],
    )
    row = next(line for line in table(before, after, corpus).splitlines() if variant in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:5] == ["0.97", "0.500", "1.000 ✓", "2/2"]
    assert cells[6] == "0/1 / 1/1"  # the 40-s track, before / after
    assert cells[7] == "0, 0 / 0, 1 of 1"
