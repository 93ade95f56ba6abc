"""A held tone is not a recording (issue #14 review, session 36): a steady sine aligned with a
note a catalog work holds coincided on dozens of peaks where shifted offsets found nothing, and
a test tone, a drone, or unrelated music ending on a held tone was called a ``duplicate``. A
guided peak check now needs coinciding peaks from ``peak_check_min_onsets`` onsets
(:func:`audiodup.peakcheck.matched_onsets`), and hash hits of flat triplets count once per
anchor bin (:func:`audiodup.match.held_tone_patterns`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiodup import Catalog
from audiodup.peakcheck import (
    Alignment,
    check_alignment,
    confirms_recording,
    matched_onsets,
    reference_peaks,
    sustained_partials,
)
from audiodup.peaks import PEAK_DTYPE
from audiodup.settings import Settings
from audiodup.synth import synthesize_work

S = Settings()
SR = 22050
FPS = S.frames_per_second


def peaks(frames, bins) -> np.ndarray:
    out = np.zeros(len(frames), dtype=PEAK_DTYPE)
    out["frame"], out["bin"] = frames, bins
    if "magnitude" in PEAK_DTYPE.names:
        out["magnitude"] = 1.0
    return out


def test_a_held_tone_is_one_partial_and_a_new_note_another() -> None:
    every_fifth_s = np.arange(0, 6 * FPS, FPS / 5)
    held = sustained_partials(every_fifth_s, np.full(len(every_fifth_s), 90.0), 1.0, S)
    assert len(np.unique(held)) == 1
    # re-struck after a rest longer than the sustain gap, a semitone away, a third of one away
    frames = np.array([0, 10, 10 + 2 * FPS, 10 + 2 * FPS, 10 + 2 * FPS])
    bins = np.array([90.0, 90.4, 90.0, 93.0, 90.0 + S.bins_per_semitone * 2])
    assert len(np.unique(sustained_partials(frames, bins, 1.0, S))) == 4
    # in the work's time: at 0.25x tempo the 2-s rest is 0.5 s of the work, within the gap
    assert len(np.unique(sustained_partials(frames, bins, 0.25, S))) == 3
    assert len(sustained_partials(np.zeros(0), np.zeros(0), 1.0, S)) == 0


def test_a_held_tone_is_one_onset_and_a_melody_many() -> None:
    tone = np.arange(0, 6 * FPS, FPS / 6)
    everything = np.ones(len(tone), dtype=bool)
    assert matched_onsets(tone, np.full(len(tone), 120.0), everything, 1.0, S) == 1
    # a note every 0.4 s, a semitone up each time; two notes struck together are one onset
    notes = np.repeat(np.arange(0, 4 * FPS, 0.4 * FPS), 2)
    bins = 90.0 + S.bins_per_semitone * np.arange(len(notes))
    assert matched_onsets(notes, bins, np.ones(len(notes), dtype=bool), 1.0, S) == len(notes) // 2
    assert matched_onsets(notes, bins, np.zeros(len(notes), dtype=bool), 1.0, S) == 0


def test_a_steady_tone_aligned_with_a_held_note_confirms_nothing() -> None:
    """The work holds one note for 3 s among scattered peaks; the upload is that note, held 6 s.
    Every upload peak coincides and shifted offsets find nothing: as peaks that was certainty,
    but it is one partial."""
    rng = np.random.default_rng(3)
    scattered = (rng.uniform(0, 60 * FPS, 400), rng.integers(0, 200, 400).astype(float))
    note = np.arange(20 * FPS, 23 * FPS, 2.0)
    reference = peaks(np.r_[scattered[0], note], np.r_[scattered[1], np.full(len(note), 120.0)])
    tone = np.arange(0, 6 * FPS, FPS / 6)
    upload = peaks(tone, np.full(len(tone), 120.0))
    guess = Alignment(0.5, 0.0, 3 * FPS, 21.5 * FPS)  # 6 s of tone on 3 s of note
    check = check_alignment(upload, reference_peaks(reference, 256), guess, S)
    assert check is None or (check.probability == 1.0 and not confirms_recording(check, S))


def tone(frequency_hz: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    fade = np.minimum(1.0, np.minimum(t / 0.3, (seconds - t) / 0.3))
    return (0.5 * np.sin(2 * np.pi * frequency_hz * t) * fade).astype(np.float32)


@pytest.fixture(scope="module")
def held_note_catalog(tmp_path_factory: pytest.TempPathFactory):
    """Three works, each ending on a note held for 4 s (A3, E5, C7 on a sine)."""
    folder = tmp_path_factory.mktemp("held")
    paths = []
    for index, frequency in enumerate((220.0, 659.3, 2093.0)):
        music = synthesize_work(9400 + index, duration_s=40.0, sr=SR)
        work = np.concatenate([music, tone(frequency, 4.0)])
        paths.append(folder / f"work{index}.wav")
        sf.write(paths[-1], work, SR)
    with Catalog.open(folder / "catalog", create=True) as catalog:
        catalog.add_paths(paths)
        yield catalog, paths, folder


def test_test_tones_and_music_ending_on_a_tone_stay_clean(held_note_catalog) -> None:
    """Pure tones at the works' held notes, a semitone, a fifth and an octave away, for 4-10 s,
    alone and after 30 s of unrelated music: none is a duplicate or suspect."""
    catalog, _, folder = held_note_catalog
    unrelated = synthesize_work(9499, duration_s=30.0, sr=SR)
    uploads = []
    for frequency in (220.0, 233.1, 329.6, 659.3, 1318.5, 2093.0, 1046.5):
        for seconds in (4.0, 6.0, 10.0):
            alone = folder / f"tone{frequency:g}-{seconds:g}.wav"
            sf.write(alone, tone(frequency, seconds), SR)
            after = folder / f"music-then-tone{frequency:g}-{seconds:g}.wav"
            sf.write(after, np.concatenate([unrelated, tone(frequency, seconds)]), SR)
            uploads += [alone, after]
    for upload in uploads:
        verdict = catalog.screen(upload)
        assert verdict.verdict == "clean", (upload.name, verdict)


def test_a_copy_of_a_work_ending_on_a_held_note_is_still_found(held_note_catalog) -> None:
    catalog, paths, folder = held_note_catalog
    samples, _ = sf.read(paths[1], dtype="float32")
    excerpt = folder / "excerpt.wav"
    sf.write(excerpt, samples[10 * SR : 25 * SR], SR)
    verdict = catalog.screen(excerpt)
    assert verdict.verdict == "duplicate", verdict
    assert Path(verdict.matches[0].path).name == "work1.wav"
