"""The multichannel files of benchmarks/multichannel.py are what they say: the upmix keeps the
front and cancels nothing it should not, a copy in one channel sits under louder others, a copy
in antiphase between two channels is gone from their mix, and the plan covers every case."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from audiodup.audio import load_audio
from benchmarks.multichannel import (
    CODECS,
    LAYOUTS,
    MASKS,
    RATE_HZ,
    attack_plan,
    make_attack,
    matrix_upmix,
    table,
    write_encoded,
)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def _db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(x, dtype=np.float64)))


def _surrounds(upmix: np.ndarray) -> np.ndarray:
    return upmix[:, 2:] if upmix.shape[1] == 4 else upmix[:, 4:]


@pytest.mark.parametrize("channels", sorted(LAYOUTS.values()))
def test_the_matrix_upmix_keeps_the_front_and_puts_the_difference_behind(channels: int) -> None:
    rng = np.random.default_rng(0)
    stereo = rng.standard_normal((RATE_HZ, 2)).astype(np.float32)
    upmix = matrix_upmix(stereo, channels)
    assert upmix.shape == (RATE_HZ, channels)
    np.testing.assert_allclose(upmix[:, :2], stereo, atol=1e-6)
    surrounds = _surrounds(upmix)
    np.testing.assert_allclose(surrounds[:, 0::2], -surrounds[:, 1::2], atol=1e-6)
    assert np.abs(surrounds).max() > 0.1
    if channels > 4:  # the centre is the mean, a little lower
        np.testing.assert_allclose(upmix[:, 2], 0.7 * stereo.mean(axis=1), atol=1e-6)
    mono = matrix_upmix(np.repeat(stereo[:, :1], 2, axis=1), channels)
    assert np.abs(_surrounds(mono)).max() < 1e-6  # no difference, nothing behind


@pytest.fixture
def corpus(tmp_path: Path) -> SimpleNamespace:
    """Two 14-s tracks of chords in noise, as a corpus's catalog work and negative."""
    rng = np.random.default_rng(1)
    t = np.arange(14 * RATE_HZ) / RATE_HZ
    tracks = {}
    for k, name in enumerate(("work", "other")):
        tone = sum(np.sin(2 * np.pi * f * (k + 1) * t) for f in (220.0, 277.2, 329.6))
        samples = 0.2 * tone[:, None] + 0.05 * rng.standard_normal((len(t), 2))
        path = tmp_path / f"{name}.wav"
        sf.write(path, samples.astype(np.float32), RATE_HZ)
        tracks[name] = SimpleNamespace(track_id=name, path=str(path), channels=2)
    return SimpleNamespace(by_id=lambda: tracks)


def _copied(corpus: SimpleNamespace) -> np.ndarray:
    """The work as an attack copies it: from 10 s in, as it is."""
    samples = sf.read(corpus.by_id()["work"].path, dtype="float32")[0]
    return samples.mean(axis=1)[10 * RATE_HZ :]


def _spec(**fields) -> dict:
    spec = {"work": "work", "layout": "5.1", "hide": "channel", "channel": 2, "second": 0}
    spec |= {"mask": "white", "other": "other", "louder_db": 14.0, "length": "whole"}
    return spec | {"speed": 1.0, "codec": "flac", "seed": 0} | fields


@pytest.mark.parametrize("mask", ["white", "music"])
def test_a_copy_in_one_channel_sits_under_louder_others(corpus, tmp_path, mask: str) -> None:
    layout = make_attack(corpus, _spec(mask=mask), tmp_path)
    assert layout.shape == (4 * RATE_HZ, 6) and np.abs(layout).max() == pytest.approx(0.9)
    held = layout[:, 2]
    source = _copied(corpus)
    assert _corr(held, source) > 0.999
    others = np.delete(layout, 2, axis=1).sum(axis=1)
    assert _db(others) - _db(held) == pytest.approx(14.0, abs=0.01)


def test_a_copy_in_antiphase_between_two_channels_is_gone_from_their_mix(corpus, tmp_path):
    layout = make_attack(corpus, _spec(hide="pair", channel=3, second=3), tmp_path)
    source = _copied(corpus)
    first, second = layout[:, 3], layout[:, 4]  # `second` skips the first channel's number
    assert _corr((first - second) / 2, source) > 0.3
    assert abs(_corr(layout.mean(axis=1), source)) < 0.05


def test_the_plan_covers_every_layout_hiding_mask_and_codec() -> None:
    catalog = [SimpleNamespace(track_id=f"w{k}", channels=2) for k in range(5)]
    negatives = [SimpleNamespace(track_id=f"n{k}", channels=1 + k % 2) for k in range(4)]
    plan = attack_plan(SimpleNamespace(catalog=catalog, negatives=negatives), 24)
    assert Counter(a["layout"] for a in plan) == dict.fromkeys(LAYOUTS, 8)
    assert {a["hide"] for a in plan} == {"channel", "pair"}
    assert {a["mask"] for a in plan} == set(MASKS) and {a["codec"] for a in plan} == set(CODECS)
    assert {a["codec"] for a in plan if a["layout"] == "7.1"} == {"flac"}
    assert {a["other"] for a in plan} == {"n1", "n3"}  # the stereo never-indexed tracks
    assert all(0 <= a["channel"] < LAYOUTS[a["layout"]] for a in plan)
    assert all(0 <= a["second"] < LAYOUTS[a["layout"]] - 1 for a in plan)


@pytest.mark.parametrize("codec", CODECS)
def test_each_codec_keeps_every_channel(tmp_path: Path, codec: str) -> None:
    if codec != "flac" and shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    rng = np.random.default_rng(2)
    samples = (0.1 * rng.standard_normal((4 * RATE_HZ, 6))).astype(np.float32)
    path = write_encoded(samples, codec, tmp_path, "six")
    audio = load_audio(path)
    assert audio.channels is not None and audio.channels.shape[1] == 6


def test_the_cost_table_gives_medians_and_ratios_to_the_stereo_file() -> None:
    meta = {"type": "meta", "commit": "abc", "machine": {"cpu": "x", "cores": 2}}

    def row(track: str, tool: str, mode: str, cpu: float, verdict: str = "clean") -> dict:
        screened = {"mode": mode, "verdict": verdict, "fingerprint_cpu_s": cpu / 2}
        return {"type": "cost", "track": track, "tool": tool, "search_cpu_s": cpu / 2} | screened

    rows = [meta]
    for track, base in (("a", 1.0), ("b", 2.0), ("c", 4.0)):
        rows += [row(track, "stereo", "never", base), row(track, "stereo", "auto", base)]
        rows += [row(track, "surround", "never", base), row(track, "surround", "auto", 3 * base)]
    rows[-1]["verdict"] = "suspect"
    lines = table(rows).splitlines()
    assert "| stereo, `auto` | 0 | 2.00 | 1.00 |" in lines
    assert "| surround, `auto` | 1 | 6.00 | 3.00 |" in lines
    assert not any("matrix" in line or "attacks found" in line for line in lines)
