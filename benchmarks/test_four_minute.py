"""The four-minute uploads of the scaling benchmark: how their verdicts and search CPU are
summarised and shown, and the command's one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.conftest import one_error_line
from benchmarks.scaling_prints import four_minute_summary, four_minute_table


def _record(upload: str, role: str, plan: str, verdict: str, top: str | None, cpu_s: float):
    source = f"/music/{upload}.ogg"
    return {
        "upload": upload,
        "role": role,
        "source": source,
        "plan": plan,
        "verdict": verdict,
        "top_path": top if top != "source" else source,
        "top_fmp": 1e-30,
        "looks": 1,
        "search_s": cpu_s,
        "search_cpu_s": cpu_s,
    }


def test_copies_count_only_as_a_duplicate_of_their_own_source() -> None:
    records = [
        _record("a", "catalog", "every look", "duplicate", "source", 0.1),
        _record("b", "catalog", "every look", "duplicate", "/music/other.ogg", 0.2),
        _record("c", "catalog", "every look", "suspect", "source", 0.3),
        _record("d", "negative", "every look", "clean", None, 1.0),
        _record("e", "negative", "every look", "duplicate", "/music/x.ogg", 2.0),
        _record("d", "negative", "quick", "clean", None, 0.5),
    ]
    summary = four_minute_summary(records)
    full = summary["every look"]
    assert (full["copies"], full["found"], full["clean"], full["kept_clean"]) == (3, 1, 2, 1)
    assert full["wrong_duplicates"] == 2  # another work for a copy, any work for a clean one
    assert full["copies_cpu_ms"][0] == pytest.approx(200.0)
    assert full["clean_cpu_ms"] == (pytest.approx(1500.0), pytest.approx(1950.0))
    quick = summary["quick"]
    assert (quick["copies"], quick["clean"], quick["kept_clean"]) == (0, 1, 1)
    table = four_minute_table([{"label": "x", "works": 100000, "four_minute": summary}])
    # a file written before the stereo parts were screened holds no mix-only CPU
    assert (
        "| x | 100,000 | every look | 1/3 | 1/2 | 2 | 200 / 290 | 1,500 / 1,950 | - / - |" in table
    )
    assert four_minute_table([{"label": "x", "works": 113, "four_minute": None}]) == []


def test_the_clean_uploads_mixes_alone_are_shown_beside_them_with_their_stereo_parts() -> None:
    records = [
        {**_record("d", "negative", "every look", "clean", None, 5.0), "mix_search_cpu_s": 2.0},
        {**_record("e", "negative", "every look", "clean", None, 1.0), "mix_search_cpu_s": 1.0},
        {
            **_record("a", "catalog", "every look", "duplicate", "source", 0.1),
            "mix_search_cpu_s": 0.1,
        },
    ]
    summary = four_minute_summary(records)["every look"]
    assert summary["clean_cpu_ms"] == (pytest.approx(3000.0), pytest.approx(4800.0))
    assert summary["clean_mix_cpu_ms"] == (pytest.approx(1500.0), pytest.approx(1950.0))
    table = four_minute_table(
        [{"label": "x", "works": 113, "four_minute": {"every look": summary}}]
    )
    assert table[-1].endswith("| 3,000 / 4,800 | 1,500 / 1,950 |")


@pytest.mark.parametrize("missing", ["corpus", "catalog", "out folder"])
def test_the_four_minute_command_says_what_is_missing_in_one_line(
    missing: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    out = tmp_path / ("no-folder" if missing == "out folder" else "") / "out.jsonl"
    if missing != "corpus":
        (data / "corpus.json").write_text('{"tracks": []}')
        (data / "cpu-uploads").mkdir()
        (data / "cpu-uploads" / "plan.json").write_text('{"uploads": {"4min": []}}')
    args = ["four-minute", "--catalog", str(tmp_path / "none"), "--out", str(out)]
    line = one_error_line("benchmarks.scaling_prints", args, data)
    expected = {"corpus": "no benchmark corpus at", "catalog": "no catalog at"}
    assert line.startswith(f"error: {expected.get(missing, 'cannot write')}")
    assert not out.exists()
