"""The one-channel attacks of benchmarks/stereo_channels.py are what they say, and the tool
(and the multichannel one) says what is wrong in one line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks.stereo_channels import (
    LOUDER_DB,
    MASKS,
    RATE_HZ,
    attack_plan,
    noise,
    one_channel,
)

REPO = Path(__file__).resolve().parents[1]


def _db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(x, dtype=np.float64)))


@pytest.mark.parametrize("left", [True, False])
def test_the_copy_is_in_one_channel_and_the_mask_louder_in_the_other(left: bool) -> None:
    rng = np.random.default_rng(0)
    copy, mask = rng.standard_normal(RATE_HZ), rng.standard_normal(2 * RATE_HZ)
    stereo = one_channel(copy, mask, 14.0, left)
    held, masked = (stereo[:, 0], stereo[:, 1]) if left else (stereo[:, 1], stereo[:, 0])
    assert len(stereo) == RATE_HZ and np.abs(stereo).max() == pytest.approx(0.9)
    assert np.corrcoef(held, copy)[0, 1] > 0.999
    assert _db(masked) - _db(held) == pytest.approx(14.0, abs=0.01)


def _high_share(x: np.ndarray) -> float:
    power = np.abs(np.fft.rfft(x)) ** 2
    return float(power[len(power) // 2 :].sum() / power.sum())


@pytest.mark.parametrize("seed", [0, 1])  # numpy's noise, then sox's where it is installed
def test_each_noise_has_its_colour(seed: int, tmp_path: Path) -> None:
    if seed % 2 and shutil.which("sox") is None:
        pytest.skip("sox is not installed")
    n = 4 * RATE_HZ
    shares = [_high_share(noise(kind, n, seed, tmp_path)) for kind in ("white", "pink", "brown")]
    assert all(len(noise(kind, n, seed, tmp_path)) == n for kind in ("white", "brown"))
    assert shares[0] > 0.4 and shares[0] > 5 * shares[1] > 5 * shares[2]


@pytest.mark.parametrize("seed", [2, 3])  # numpy's noise, then sox's where it is installed
def test_a_seed_makes_the_same_noise_and_another_seed_other_noise(seed: int, tmp_path: Path):
    if seed % 2 and shutil.which("sox") is None:
        pytest.skip("sox is not installed")
    n = RATE_HZ
    once, again = noise("pink", n, seed, tmp_path), noise("pink", n, seed, tmp_path)
    other = noise("pink", n, seed + 2, tmp_path)
    np.testing.assert_array_equal(once, again)
    assert abs(np.corrcoef(once, other)[0, 1]) < 0.5


def test_the_plan_covers_every_mask_at_every_level_in_both_channels() -> None:
    tracks = [SimpleNamespace(track_id=f"t{k}", channels=1 + k % 2) for k in range(6)]
    corpus = SimpleNamespace(catalog=tracks[:3], negatives=tracks[3:])
    plan = attack_plan(corpus, 36)
    kinds = Counter((a["mask"], a["louder_db"]) for a in plan)
    assert set(kinds) == {(m, db) for m in MASKS for db in LOUDER_DB}
    assert set(kinds.values()) == {3}
    assert {a["left"] for a in plan} == {True, False}
    assert {a["other"] for a in plan} == {"t3", "t5"}  # the stereo never-indexed tracks


@pytest.mark.parametrize("tool", ["benchmarks.stereo_channels", "benchmarks.multichannel"])
def test_a_missing_catalog_is_one_error_line(tmp_path: Path, tool: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", tool, "run", str(tmp_path / "none"),
         str(tmp_path / "out.jsonl")],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1
