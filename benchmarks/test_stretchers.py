"""The command-line stretchers follow the benchmark's tempo and pitch conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks import stretchers
from benchmarks.alterations import BY_NAME, Truth, apply

SR = 22050


def tone(freq_hz: float = 440.0, seconds: float = 3.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def need(name: str) -> None:
    if not stretchers.available(name):
        pytest.skip(stretchers.missing_message(name))


@pytest.mark.parametrize("tempo_ratio", [0.5, 2.0, 0.3, 3.5, 1.0])
def test_atempo_chain_multiplies_to_the_ratio(tempo_ratio: float) -> None:
    parts = [float(f.split("=")[1]) for f in stretchers._atempo_chain(tempo_ratio)]
    assert all(0.5 <= p <= 2.0 for p in parts)
    assert math.prod(parts) == pytest.approx(tempo_ratio, rel=1e-5)


def test_unknown_stretcher_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown stretcher"):
        stretchers.command("audacity", "a.wav", "b.wav", SR, tempo_ratio=2.0)


@pytest.mark.parametrize("name", stretchers.STRETCHERS)
@pytest.mark.parametrize("tempo_ratio", [0.5, 2.0])
def test_tempo_changes_length_not_pitch(name: str, tempo_ratio: float) -> None:
    need(name)
    y = stretchers.render(name, tone(), SR, tempo_ratio=tempo_ratio)
    assert y.size / tone().size == pytest.approx(1 / tempo_ratio, rel=0.02)
    assert stretchers.dominant_frequency_hz(y, SR) == pytest.approx(440.0, abs=4.0)


@pytest.mark.parametrize("name", stretchers.STRETCHERS)
@pytest.mark.parametrize("semitones", [-4.0, 3.0])
def test_pitch_changes_pitch_not_length(name: str, semitones: float) -> None:
    need(name)
    y = stretchers.render(name, tone(), SR, semitones=semitones)
    assert y.size / tone().size == pytest.approx(1.0, rel=0.02)
    assert 12 * math.log2(stretchers.dominant_frequency_hz(y, SR) / 440.0) == pytest.approx(
        semitones, abs=0.15
    )


def test_external_variant_updates_the_truth() -> None:
    need("sox")
    variant = BY_NAME["tempo 1.25 [sox]"]
    y, truth, _ = apply(variant, tone(), SR, Truth(ref_end_s=3.0), np.random.default_rng(0))
    assert truth.tempo_ratio == pytest.approx(1.25)
    assert y.size / SR == pytest.approx(3.0 / 1.25, rel=0.02)
