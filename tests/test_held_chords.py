"""A held chord is not a recording (issue #14, session 37): the harmonics of a chord held for a
few seconds each get a peak only now and then, so its coinciding peaks break into several
onsets and pass the onsets floor of :mod:`tests.test_sustained_tones`; a power chord of 6 s
was a ``duplicate`` of a work ending on it (p 7e-8). A same recording whose upload keeps one
chord over the aligned part (:func:`audiodup.chroma.steadiness`) is now at most ``suspect``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiodup import Catalog
from audiodup.chroma import steadiness
from audiodup.settings import Settings
from audiodup.synth import synthesize_work

S = Settings()
SR = 22050
FPS = S.chroma_fps
CHORDS_HZ = ((220.0, 277.2, 329.6), (110.0, 164.8), (130.8, 164.8, 196.0, 246.9))


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_one_chord_is_steady_and_changing_chords_are_not() -> None:
    rng = np.random.default_rng(0)
    chord = np.zeros(12)
    chord[[0, 4, 7]] = 1.0
    held = unit_rows(chord - chord.mean() + 0.05 * rng.standard_normal((50, 12)))
    assert steadiness(held, [(0.0, 10.0)], FPS) >= S.held_chord_min_steadiness
    # a new chord every second: four pitch-class sets
    progression = np.repeat(np.eye(12)[[0, 5, 7, 9]] - 1 / 12, int(FPS), axis=0)
    changing = unit_rows(np.tile(progression, (3, 1)) + 0.05 * rng.standard_normal((60, 12)))
    assert steadiness(changing, [(0.0, 12.0)], FPS) < 0.6
    # silent frames (zero rows) are left out; the spans are taken together
    with_rests = np.vstack([held[:20], np.zeros((20, 12)), held[20:]])
    assert steadiness(with_rests, [(0.0, 14.0)], FPS) == pytest.approx(
        steadiness(held, [(0.0, 10.0)], FPS), abs=1e-6
    )
    both = np.vstack([held[:25], changing[:25]])
    assert steadiness(both, [(0.0, 4.8)], FPS) >= S.held_chord_min_steadiness
    assert steadiness(both, [(0.0, 4.8), (5.0, 10.0)], FPS) < S.held_chord_min_steadiness
    assert steadiness(np.zeros((10, 12)), [(0.0, 2.0)], FPS) == 1.0


def chord(freqs_hz, seconds: float, rolloff: float = 1.0, seed: int | None = None) -> np.ndarray:
    """``freqs_hz`` with 12 harmonics each (amplitude 1 / h ** rolloff), faded in and out;
    with ``seed`` each harmonic starts at a random phase, else at 0."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = np.zeros_like(t)
    for f0 in freqs_hz:
        for h in range(1, 13):
            if f0 * h < 0.45 * SR:
                phase = rng.uniform(0, 2 * np.pi) if seed is not None else 0.0
                x += np.sin(2 * np.pi * f0 * h * t + phase) / h**rolloff
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


def test_held_chords_are_no_duplicate_of_a_work_ending_on_them(chord_catalog) -> None:
    """The works' own chords, sample for sample (the works' last 6 s but for the fade), with
    another harmonic rolloff, other phases, 10 s long, and after unrelated music: none is a
    duplicate. Before, 4 of the 15 were (p 1.7e-24 to 4.3e-9) and 4 were suspect."""
    catalog, _, folder = chord_catalog
    unrelated = synthesize_work(9499, duration_s=30.0, sr=SR)
    uploads = []
    for index, freqs in enumerate(CHORDS_HZ):
        for name, samples in [
            ("same", chord(freqs, 6.0)),
            ("rolloff", chord(freqs, 6.0, rolloff=1.2)),
            ("phases", chord(freqs, 6.0, seed=11)),
            ("long", chord(freqs, 10.0)),
            ("after-music", np.concatenate([unrelated, chord(freqs, 6.0)])),
        ]:
            uploads.append(folder / f"chord{index}-{name}.wav")
            sf.write(uploads[-1], samples, SR)
    for upload in uploads:
        verdict = catalog.screen(upload)
        assert verdict.verdict != "duplicate", (upload.name, verdict)
        for m in verdict.matches:
            if m.relation == "same_recording" and m.false_match_probability <= 1e-6:
                assert m.chroma_steadiness >= S.held_chord_min_steadiness, (upload.name, m)


def test_a_copy_of_a_work_ending_on_a_held_chord_is_still_found(chord_catalog) -> None:
    """Music with the chord after it, cut from the work, is the work's duplicate; the match
    reports a steadiness well below the held chord's."""
    catalog, paths, folder = chord_catalog
    samples, _ = sf.read(paths[1], dtype="float32")
    excerpt = folder / "excerpt.wav"
    sf.write(excerpt, samples[25 * SR :], SR)
    verdict = catalog.screen(excerpt)
    assert verdict.verdict == "duplicate", verdict
    best = verdict.matches[0]
    assert Path(best.path).name == "work1.wav"
    assert best.chroma_steadiness < 0.9


def test_a_work_that_is_only_a_held_chord_is_not_proved_even_by_identical_audio(
    tmp_path: Path,
) -> None:
    """The same file again is identical audio, but a tone generator makes it for anyone: the
    match shows ``identical_content`` and stays suspect."""
    samples = chord(CHORDS_HZ[0], 10.0)
    sf.write(tmp_path / "chord.wav", samples, SR)
    sf.write(tmp_path / "again.wav", samples, SR)
    with Catalog.open(tmp_path / "catalog", create=True) as catalog:
        catalog.add_paths([tmp_path / "chord.wav"])
        verdict = catalog.screen(tmp_path / "again.wav")
    assert verdict.verdict == "suspect", verdict
    best = verdict.matches[0]
    assert best.identical_content and best.false_match_probability < 1e-20
    assert best.chroma_steadiness >= S.held_chord_min_steadiness
