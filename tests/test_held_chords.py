"""Held chords made independently are no copy of a work that holds them (issue #14, session
37). The onsets floor of :mod:`tests.test_sustained_tones` keeps held tones out; a chord's many
harmonics each get a peak only now and then, so its peaks come from several onsets and only the
timing of the peaks tells a copy from another chord. A chord synthesised with its harmonics at
their own phases beats otherwise than the work's, and lands on none of its peaks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiodup import Catalog
from audiodup.synth import synthesize_work

SR = 22050
CHORDS_HZ = ((220.0, 277.2, 329.6), (110.0, 164.8), (130.8, 164.8, 196.0, 246.9))


def chord(
    freqs_hz, seconds: float, rolloff: float = 1.0, seed: int | None = None, vibrato: float = 0.0
) -> np.ndarray:
    """``freqs_hz`` with 12 harmonics each (amplitude 1 / h ** rolloff), faded in and out;
    with ``seed`` each harmonic starts at a random phase, else at 0; ``vibrato``: the depth
    of a 5-Hz vibrato in radians of the fundamental."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = np.zeros_like(t)
    for f0 in freqs_hz:
        for h in range(1, 13):
            if f0 * h < 0.45 * SR:
                phase = rng.uniform(0, 2 * np.pi) if seed is not None else 0.0
                wobble = vibrato * h * np.sin(2 * np.pi * 5 * t)
                x += np.sin(2 * np.pi * f0 * h * t + wobble + phase) / h**rolloff
    fade = np.minimum(1.0, np.minimum(t / 0.3, (seconds - t) / 0.3))
    return (0.5 * x / np.abs(x).max() * fade).astype(np.float32)


@pytest.fixture(scope="module")
def chord_catalog(tmp_path_factory: pytest.TempPathFactory):
    """Three works of 40 s of music, each ending on a chord held for 6 s."""
    folder = tmp_path_factory.mktemp("chords")
    paths = []
    for index, freqs in enumerate(CHORDS_HZ):
        music = synthesize_work(9400 + index, duration_s=40.0, sr=SR)
        paths.append(folder / f"work{index}.wav")
        sf.write(paths[-1], np.concatenate([music, chord(freqs, 6.0)]), SR)
    with Catalog.open(folder / "catalog", create=True) as catalog:
        catalog.add_paths(paths)
        yield catalog, paths, folder


def test_chords_made_independently_are_no_duplicate_of_a_work_ending_on_them(
    chord_catalog,
) -> None:
    """The works' own chords with their harmonics at other phases: as they are, with another
    roll-off, with vibrato, held 10 s, and after unrelated music. None is a duplicate."""
    catalog, _, folder = chord_catalog
    unrelated = synthesize_work(9499, duration_s=30.0, sr=SR)
    uploads = []
    for index, freqs in enumerate(CHORDS_HZ):
        for name, samples in [
            ("phases", chord(freqs, 6.0, seed=11)),
            ("rolloff", chord(freqs, 6.0, rolloff=1.2, seed=12)),
            ("vibrato", chord(freqs, 6.0, seed=13, vibrato=0.3)),
            ("long", chord(freqs, 10.0, seed=14)),
            ("after-music", np.concatenate([unrelated, chord(freqs, 6.0, seed=15)])),
        ]:
            uploads.append(folder / f"chord{index}-{name}.wav")
            sf.write(uploads[-1], samples, SR)
    for upload in uploads:
        verdict = catalog.screen(upload)
        assert verdict.verdict != "duplicate", (upload.name, verdict)


def test_a_copy_of_a_work_ending_on_a_held_chord_is_found(chord_catalog) -> None:
    """Music with the chord after it, cut from the work, is the work's duplicate."""
    catalog, paths, folder = chord_catalog
    samples, _ = sf.read(paths[1], dtype="float32")
    excerpt = folder / "excerpt.wav"
    sf.write(excerpt, samples[25 * SR :], SR)
    verdict = catalog.screen(excerpt)
    assert verdict.verdict == "duplicate", verdict
    assert Path(verdict.matches[0].path).name == "work1.wav"
