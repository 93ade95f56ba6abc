"""The stock-sample benchmark's parts: how the sample is placed, how a set is summarised, and
the command's one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.conftest import one_error_line
from benchmarks.stock_samples import SETS, summary, with_sample

SR = 22050


def test_a_spliced_sample_replaces_the_music_and_a_mixed_one_joins_it() -> None:
    music = np.full(4 * SR, 0.5, dtype=np.float32)
    sample = np.full(SR, 2.0, dtype=np.float32)
    spliced, mixed = (s for s in SETS if s.name in "CD")
    assert spliced.spliced and not mixed.spliced
    y = with_sample(music, sample, 1.0, spliced)  # -3 dB under the music it replaces
    assert np.allclose(y[SR : 2 * SR], 0.5 * 10 ** (-3 / 20), rtol=1e-4)
    assert np.array_equal(y[:SR], music[:SR]) and np.array_equal(y[2 * SR :], music[2 * SR :])
    z = with_sample(music, sample, 1.0, mixed)  # +3 dB over it, added
    assert np.allclose(z[SR : 2 * SR], 0.5 + 0.5 * 10 ** (3 / 20), rtol=1e-4)
    assert np.array_equal(music, np.full(4 * SR, 0.5, dtype=np.float32))  # not changed in place


def test_a_copy_counts_only_as_a_duplicate_of_the_work_it_copies() -> None:
    records = [
        {"copied": None, "verdict": "duplicate", "top": "w01"},
        {"copied": None, "verdict": "suspect", "top": "w02"},
        {"copied": None, "verdict": "clean", "top": None},
        {"copied": "w00", "verdict": "duplicate", "top": "w00"},
        {"copied": "w00", "verdict": "duplicate", "top": "w03"},
        {"copied": "w01", "verdict": "suspect", "top": "w01"},
    ]
    assert summary(records) == {
        "chance": 3,
        "chance_duplicate": 1,
        "chance_suspect": 1,
        "copies": 3,
        "copies_found": 1,
    }


@pytest.mark.parametrize("module", ["benchmarks.stock_samples", "benchmarks.recorded_copies"])
@pytest.mark.parametrize("missing", ["corpus", "tracks", "out folder"])
def test_the_command_says_what_is_missing_in_one_line(
    module: str, missing: str, tmp_path: Path
) -> None:
    """Both benchmarks on real clips (``argument_error``)."""
    data = tmp_path / "data"
    data.mkdir()
    track = {"path": "/none.ogg", "duration_s": 100.0, "samplerate": 44100}
    n = {"corpus": 0, "tracks": 5, "out folder": 61}[missing]
    if missing != "corpus":
        tracks = ", ".join([str(track).replace("'", '"')] * n)
        (data / "corpus.json").write_text(f'{{"tracks": [{tracks}]}}')
    out = tmp_path / "no-folder" / "STOCK.md"
    args = ["--work", str(tmp_path / "w"), "--out", str(out)]
    line = one_error_line(module, args, data)
    expected = {"corpus": "no readable tuning corpus", "tracks": "the tuning corpus has 5"}
    assert line.startswith(f"error: {expected.get(missing, 'cannot write')}")
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("bad", ["out is a folder", "work is a file", "unknown set"])
def test_bad_arguments_are_said_in_one_line_before_any_work(bad: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    track = {"path": "/none.ogg", "duration_s": 100.0, "samplerate": 44100}
    tracks = ", ".join([str(track).replace("'", '"')] * 61)
    (data / "corpus.json").write_text(f'{{"tracks": [{tracks}]}}')
    work, out, sets = tmp_path / "w", tmp_path / "STOCK.md", "AB"
    if bad == "out is a folder":
        out.mkdir()
    elif bad == "work is a file":
        work.write_text("not a folder")
    else:
        sets = "AZ"
    args = ["--work", str(work), "--out", str(out), "--sets", sets]
    line = one_error_line("benchmarks.stock_samples", args, data)
    expected = {"out is a folder": "it is a folder", "work is a file": "it is no folder"}
    assert line.endswith(expected.get(bad, "choose among ABCD"))
    assert not (work.is_dir() or (out.exists() and not out.is_dir()))
