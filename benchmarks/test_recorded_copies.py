"""The recorded-copies benchmark's parts: the earlier copies it makes and how a copy counts as
found (its one-line errors: ``test_stock_samples``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiodup.synth import synthesize_work
from benchmarks.recorded_copies import SR, earlier_copy, family, summary


def test_a_copy_is_found_as_its_work_or_one_of_its_earlier_copies() -> None:
    assert family("w01~2") == family("w01") == "w01" and family(None) is None
    records = [
        {"copied": None, "verdict": "duplicate", "top": "w05"},
        {"copied": None, "verdict": "suspect", "top": "w01~0"},
        {"copied": "w00", "verdict": "duplicate", "top": "w00"},
        {"copied": "w00", "verdict": "duplicate", "top": "w00~1"},
        {"copied": "w00", "verdict": "duplicate", "top": "w01"},  # another work: not found
        {"copied": "w01", "verdict": "suspect", "top": "w01"},
    ]
    assert summary(records) == {
        "chance": 2,
        "chance_duplicate": 1,
        "chance_suspect": 1,
        "copies": 4,
        "copies_found": 2,
        "named_the_work": 1,
    }


@pytest.mark.parametrize("which", [0, 1, 2])
def test_the_earlier_copies_are_altered_copies_of_the_work(which: int, tmp_path: Path) -> None:
    """Speed 0.9 plays 10/9 as long, a 1.15 stretch 1/1.15 as long, a pitch shift as long."""
    y = synthesize_work(3, 10.0, SR).astype(np.float32)
    source, target = tmp_path / "w.wav", tmp_path / "c.wav"
    sf.write(source, y, SR)
    earlier_copy(y, source, target, which)
    made, rate = sf.read(target)
    assert rate == SR and np.max(np.abs(made)) == pytest.approx(0.9, abs=1e-3)
    expected_s = {0: 10.0 / 0.9, 1: 10.0 / 1.15, 2: 10.0}[which]
    assert len(made) / SR == pytest.approx(expected_s, rel=0.02)
