"""benchmarks.other_tools: each installed tool makes its copies by the module's conventions, a
run finds the copies of catalog tracks and leaves an unrelated track clean, and a bad input is
one error line. A tool that is not installed skips its cases."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from benchmarks.other_tools import (
    AUGMENT,
    EDITS,
    EFFECTS,
    ENCODES,
    GRAINS,
    HARD,
    MODERATE,
    REVERB,
    SETS,
    SR,
    STEREO,
    Copy,
    cut,
    missing_tool,
    read_records,
    render,
    report,
    run,
    write_copy,
)
from benchmarks.stretchers import dominant_frequency_hz

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "fixtures" / "audio"
_CONVENTION_CASES = [
    *MODERATE,
    *(c for c in HARD if not c.then),
    *(c for c in AUGMENT if c.tool != "audiomentations"),
    *GRAINS,
]


@pytest.mark.parametrize("copy", _CONVENTION_CASES, ids=lambda c: c.name)
def test_each_tool_changes_tempo_and_pitch_as_labelled(copy: Copy) -> None:
    if need := missing_tool(copy):
        pytest.skip(f"needs {need}")
    tone = 0.3 * np.sin(2 * np.pi * 440.0 * np.arange(4 * SR) / SR)
    out = render(tone, copy)
    sounding = np.flatnonzero(np.abs(out) > 0.01)  # audiostretchy pads the end with silence
    length_ratio = (sounding[-1] + 1) / tone.size
    assert abs(length_ratio * copy.tempo - 1) < 0.04, length_ratio
    middle = out[sounding[0] : sounding[-1] + 1]
    middle = middle[middle.size // 4 : 3 * middle.size // 4]
    shift = 12 * math.log2(dominant_frequency_hz(middle, SR) / 440.0)
    assert abs(shift - copy.semitones) < 0.25, shift


def _tone_shift(y: np.ndarray, rate: int, hz: float) -> float:
    """The semitones from ``hz`` to the dominant frequency of ``y``'s middle half."""
    middle = y[y.size // 4 : 3 * y.size // 4]
    return 12 * math.log2(dominant_frequency_hz(middle, rate) / hz)


@pytest.mark.parametrize("copy", [c for c in EFFECTS if not c.then], ids=lambda c: c.name)
def test_each_effect_keeps_or_changes_tempo_and_pitch_as_labelled(copy: Copy) -> None:
    """A 1 kHz tone through each effect: its length over the tempo (an echo adds its tail),
    its pitch as labelled (a speed change moves it, a filter or an effect does not)."""
    if need := missing_tool(copy):
        pytest.skip(f"needs {need}")
    tone = 0.3 * np.sin(2 * np.pi * 1000.0 * np.arange(4 * SR) / SR)
    out = render(tone, copy)
    assert np.all(np.isfinite(out)) and np.abs(out).max() > 0.01
    assert abs(out.size / tone.size * copy.tempo - 1) < 0.15, out.size / tone.size
    assert abs(_tone_shift(out, SR, 1000.0) - copy.semitones) < 0.25


@pytest.mark.parametrize("copy", [c for c in EFFECTS if c.then], ids=lambda c: c.name)
def test_each_encoded_copy_decodes_to_its_length_and_pitch(copy: Copy, tmp_path) -> None:
    """An encoded copy of a 1 kHz tone is a file of the encode's kind that audiodup decodes to
    4 s of the same tone."""
    from audiodup.audio import load_audio
    from audiodup.settings import DEFAULT_SETTINGS

    if need := missing_tool(copy):
        pytest.skip(f"needs {need}")
    tone = 0.3 * np.sin(2 * np.pi * 1000.0 * np.arange(4 * SR) / SR)
    path = write_copy(tmp_path / "copy.wav", render(tone, copy), copy)
    assert path.suffix == ENCODES[copy.then][0]
    audio = load_audio(path, DEFAULT_SETTINGS)
    assert abs(audio.duration_s - 4.0) < 0.1, audio.duration_s
    assert abs(_tone_shift(audio.samples, DEFAULT_SETTINGS.sample_rate_hz, 1000.0)) < 0.25


@pytest.mark.parametrize("copy", STEREO, ids=lambda c: c.name)
def test_each_stereo_copy_inverts_one_channel_and_decodes_to_the_music(
    copy: Copy, tmp_path
) -> None:
    """A stereo cut (a tone in both channels, a second one on the left), its copy with one
    channel inverted: a mean of the channels would hold only the second tone, the copy as
    audiodup decodes it is the original's mix of both."""
    from audiodup.audio import load_audio
    from audiodup.settings import DEFAULT_SETTINGS

    if need := missing_tool(copy):
        pytest.skip(f"needs {need}")
    t = np.arange(4 * SR) / SR
    shared, left_only = 0.3 * np.sin(2 * np.pi * 1000.0 * t), 0.05 * np.sin(2 * np.pi * 300 * t)
    stereo = np.stack([shared + left_only, shared], axis=1)
    source = tmp_path / "stereo.wav"
    sf.write(str(source), stereo, SR, subtype="FLOAT")
    channels = cut(str(source), 4.0, mono=False)
    assert channels.shape == (4 * SR, 2)
    made = render(channels, copy)
    if copy.method == "dual":
        assert np.allclose(made[:, 0], -made[:, 1])
    else:
        assert np.allclose(np.abs(made), np.abs(channels)) and not np.allclose(made, channels)
    audio = load_audio(write_copy(tmp_path / "copy.wav", made, copy), DEFAULT_SETTINGS)
    assert abs(audio.duration_s - 4.0) < 0.1, audio.duration_s
    assert abs(_tone_shift(audio.samples, DEFAULT_SETTINGS.sample_rate_hz, 1000.0)) < 0.25


@pytest.mark.parametrize("copy", [c for c in EDITS if c.tool == "edit"], ids=lambda c: c.name)
def test_each_edit_keeps_the_pitch_and_changes_the_length_as_made(copy: Copy) -> None:
    """An 8-s 1 kHz tone: shuffled and warped it keeps its length, with 0.5 s of silence after
    every 4 s it is 9 s; its pitch stays (the wow's +-1 % averages out)."""
    tone = 0.3 * np.sin(2 * np.pi * 1000.0 * np.arange(8 * SR) / SR)
    out = render(tone, copy)
    assert out.size == (9 * SR if copy.method == "gaps" else tone.size)
    assert abs(_tone_shift(out, SR, 1000.0)) < 0.25
    if copy.method.startswith("shuffle"):  # a ramp's sections, all there, in another order
        ramp = np.arange(20.0 * SR)
        shuffled = render(ramp, copy)
        assert np.array_equal(np.sort(shuffled), ramp) and not np.array_equal(shuffled, ramp)


@pytest.mark.parametrize("copy", REVERB, ids=lambda c: c.name)
def test_each_reverb_copy_moves_tempo_and_pitch_by_its_speed_and_rings_on(copy: Copy) -> None:
    """A 440 Hz tone of 2 s, then 2 s of silence: the copy lasts the whole over its speed, its
    tone is at the pitch the speed gives, and the silence after the tone holds its tail."""
    if need := missing_tool(copy):
        pytest.skip(f"needs {need}")
    tone = np.zeros(4 * SR)
    tone[: 2 * SR] = 0.3 * np.sin(2 * np.pi * 440.0 * np.arange(2 * SR) / SR)
    out = render(tone, copy)
    assert abs(out.size / tone.size * copy.tempo - 1) < 0.01, out.size / tone.size
    assert abs(copy.semitones - 12 * math.log2(copy.tempo)) < 1e-9
    sounding = out[: int(2 * SR / copy.tempo)]
    assert abs(_tone_shift(sounding, SR, 440.0) - copy.semitones) < 0.25
    tail = out[int(2.2 * SR / copy.tempo) : int(2.7 * SR / copy.tempo)]
    assert np.sqrt(np.mean(tail**2)) > 1e-3  # the room rings on where the tone stopped


# what each audiomentations copy of 8 s of a tone lasts: a room adds its reverberation tail, a
# repeated part its three repeats of 1.2 s; every other effect keeps the length
_AUGMENTED_S = {"room rt60 0.8 s": (8.5, 9.5), "part repeated 3 times": (11.6, 11.6)}


@pytest.mark.parametrize(
    "copy", [c for c in AUGMENT if c.tool == "audiomentations"], ids=lambda c: c.name
)
def test_each_augmentation_keeps_the_pitch_and_is_the_same_for_a_seed(copy: Copy) -> None:
    """An 8-s 300 Hz tone (below the band stop's band) with faint noise through each
    audiomentations effect: changed, sound at its pitch, as long as the effect makes it, and
    the same copy again from the same seed (its random draws seeded; not the room's)."""
    if need := missing_tool(copy):
        pytest.skip(f"needs {need}")
    tone = 0.3 * np.sin(2 * np.pi * 300.0 * np.arange(8 * SR) / SR)
    tone += 0.02 * np.random.default_rng(0).normal(size=tone.size)  # a roll must show
    out = render(tone, copy, seed=5)
    assert np.all(np.isfinite(out)) and np.sqrt(np.mean(out**2)) > 0.005
    assert not np.allclose(out[: tone.size], tone[: out.size], atol=1e-3)  # it did something
    low, high = _AUGMENTED_S.get(copy.method, (8.0, 8.0))
    assert low - 0.01 <= out.size / SR <= high + 0.01, out.size / SR
    assert abs(_tone_shift(out, SR, 300.0)) < 0.25
    if not copy.method.startswith("room"):  # its ray tracer has a generator of its own
        assert np.array_equal(render(tone, copy, seed=5), out)


def test_the_sets_hold_every_copy_once() -> None:
    assert SETS["all"] == (
        SETS["tsm"]
        + SETS["effects"]
        + SETS["stereo"]
        + SETS["edits"]
        + SETS["augment"]
        + SETS["grains"]
        + SETS["reverb"]
    )
    assert SETS["tsm"] == MODERATE + HARD
    names = [c.name for c in SETS["all"]]
    assert len(names) == len(set(names))


def test_a_run_finds_the_copies_and_leaves_an_unrelated_track_clean(tmp_path, monkeypatch):
    from audiodup import Catalog

    copies = [c for c in (MODERATE[5], MODERATE[2], HARD[9]) if missing_tool(c) is None]
    if not copies:
        pytest.skip("none of audiotsm, soundstretch and pytsmod is installed")
    works = [FIXTURES / "catalog" / f"work_0{i}.ogg" for i in range(3)]
    negative = FIXTURES / "uploads" / "unrelated_a.ogg"
    tracks = [_track(p, "catalog") for p in works] + [_track(negative, "negative")]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "corpus.json").write_text(json.dumps({"seed": 1, "tracks": tracks}))
    monkeypatch.setenv("AUDIODUP_BENCH_DATA", str(tmp_path / "data"))
    with Catalog.open(tmp_path / "catalog") as catalog:
        catalog.add_paths(works)
    results = run(tmp_path / "catalog", tmp_path / "out", copies, 2, 1, 20.0, log=lambda _: None)
    records = read_records(results)
    assert len(records) == 3 * (1 + len(copies))
    for r in records:
        if r["role"] == "catalog":
            assert r["verdict"] == "duplicate" and r["right_work"], r
            assert abs(r["tempo_ratio"] / r["copy"]["tempo"] - 1) < 0.02, r
            assert abs(r["semitones"] - r["copy"]["semitones"]) < 0.3, r
        else:
            assert r["verdict"] == "clean", r
    table = report(records)
    assert "not found: 0" in table and "negatives not clean: 0" in table
    assert f"| {copies[0].name} | 2 | 2 | 2 | 0 | 0 | 0 |" in table


def test_a_tool_that_fails_and_a_track_that_cannot_be_read_leave_the_run_going(
    tmp_path, monkeypatch
) -> None:
    import benchmarks.other_tools as other_tools
    from audiodup import Catalog

    copies = [c for c in (MODERATE[5], MODERATE[2]) if missing_tool(c) is None]
    if not copies:
        pytest.skip("neither audiotsm nor soundstretch is installed")

    def fails(y, copy):
        raise ValueError("the stretcher gave up\nsecond line")

    monkeypatch.setitem(other_tools._RENDER, copies[0].tool, fails)
    work = FIXTURES / "catalog" / "work_00.ogg"
    corrupt = tmp_path / "corrupt.ogg"
    corrupt.write_bytes(b"OggS" + bytes(range(256)) * 8)
    tracks = [_track(work, "catalog"), {**_track(work, "catalog"), "path": str(corrupt)}]
    tracks[1]["track_id"] = "corrupt"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "corpus.json").write_text(json.dumps({"seed": 1, "tracks": tracks}))
    monkeypatch.setenv("AUDIODUP_BENCH_DATA", str(tmp_path / "data"))
    with Catalog.open(tmp_path / "catalog") as catalog:
        catalog.add_paths([work])
    said: list[str] = []
    results = run(tmp_path / "catalog", tmp_path / "out", copies, 2, 0, 20.0, log=said.append)
    records = read_records(results)
    assert [r["track_id"] for r in records] == ["work_00"] * (1 + len(copies))
    failed = [r for r in records if r["copy"]["tool"] == copies[0].tool]
    assert failed and all(r["verdict"] is None for r in failed)
    assert failed[0]["error"] == "making the copy failed: the stretcher gave up"
    assert records[0]["verdict"] == "duplicate"  # the plain cut, screened as before
    assert any(line.startswith("skipped corrupt: ") and "\n" not in line for line in said)


def test_the_report_lists_a_copy_not_found_and_a_negative_flagged() -> None:
    def record(role, verdict, right=True):
        copy = {"name": "audiotsm wsola 2.00", "tempo": 2.0, "semitones": 0.0}
        return {
            "track_id": f"a {role}",
            "role": role,
            "copy": copy,
            "verdict": verdict,
            "error": None,
            "right_work": right,
            "work_id": 7,
            "false_match_probability": 0.5,
            "tempo_ratio": 2.01,
            "semitones": 0.1,
            "matched_hashes": 4,
            "matched_peaks": None,
        }

    table = report([record("catalog", "duplicate"), record("catalog", "suspect", False)])
    assert "| audiotsm wsola 2.00 | 2 | 1 | 1 | 1 | 0 | 0 | 0.0100 | 0.100 | 0 of 0 |" in table
    assert "not found: 1\n- audiotsm wsola 2.00 | a catalog | suspect | work 7" in table
    flagged = report([record("negative", "duplicate", False)])
    assert "negatives not clean: 1\n- audiotsm wsola 2.00 | a negative | duplicate" in flagged


@pytest.mark.parametrize("content", ["", "not json\n", '{"role": "catalog"}\n', "[1, 2]\n"])
def test_a_file_that_is_not_a_results_file_is_one_error_line(tmp_path, content) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match="not a results file"):
        read_records(path)
    proc = _tool("report", str(path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {path} is not a results file of benchmarks.other_tools"
    ]


def test_a_run_without_a_benchmark_corpus_is_one_error_line(tmp_path) -> None:
    proc = _tool(
        "run", "--catalog", str(tmp_path / "c"), "--out", str(tmp_path / "o"),
        AUDIODUP_BENCH_DATA=str(tmp_path / "none"),
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "python -m benchmarks run" in lines[0]


def _track(path: Path, role: str) -> dict:
    import soundfile as sf

    info = sf.info(path)
    return {
        "track_id": path.stem,
        "package": "fixtures",
        "path": str(path),
        "duration_s": info.duration,
        "samplerate": info.samplerate,
        "channels": info.channels,
        "sha1": "",
        "group": f"fixtures:{path.stem}",
        "role": role,
    }


def _tool(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.other_tools", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
