"""benchmarks.held_chords: its windows measure what the verdict's rule measures."""

from __future__ import annotations

import numpy as np

from audiodup.chroma import steadiness
from audiodup.settings import DEFAULT_SETTINGS
from benchmarks.held_chords import EFFECTS, chord, window_steadiness, with_effect


def test_sliding_windows_equal_the_rule_s_steadiness() -> None:
    fps = DEFAULT_SETTINGS.chroma_fps
    chroma = np.random.default_rng(1).standard_normal((60, 12))
    chroma[10:14] = 0.0  # silent frames
    found = window_steadiness(chroma, 15)
    assert len(found) == 60 - 15 + 1
    for start in (0, 7, 30, 45):
        span = [(start / fps, (start + 14) / fps)]
        assert abs(found[start] - steadiness(chroma, span, fps)) < 1e-6


def test_a_held_chord_is_steady_in_every_variant_and_effect(tmp_path) -> None:
    from audiodup.audio import load_audio
    from audiodup.fingerprint import fingerprint_audio

    fps = DEFAULT_SETTINGS.chroma_fps
    for k, effect in enumerate(EFFECTS):
        x = chord((110.0, 164.8), 6.0, "vibrato")
        path = with_effect(x, effect, tmp_path, f"c{k}", seed=k)
        fingerprint = fingerprint_audio(load_audio(path), DEFAULT_SETTINGS, query=True)
        assert steadiness(fingerprint.chroma, [(0.5, 5.5)], fps) >= 0.99, effect
