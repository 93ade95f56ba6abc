"""Copies with one channel's polarity inverted: a stereo listener hears the recording, a mean
mix-down hears what is left when its centre cancels (a dual-mono track: nothing). Such blocks
are mixed as the channels' difference (:func:`audiodup.audio.antiphase_signs`): the copy is
found, and music in no catalog work inverted the same way stays below ``duplicate``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import FIXTURES, chance_music, chord_cover, stereo_mix

from audiodup import Catalog
from audiodup.audio import load_audio


def inverted_stereo(source: Path, folder: Path, dual_mono: bool) -> Path:
    """``source`` as a stereo file whose right channel is polarity-inverted: the same signal
    in both channels (``dual_mono``), or a mix with another piece in the right channel."""
    samples, sr = sf.read(str(source), dtype="float32")
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    stereo = np.stack([samples, samples], axis=1) if dual_mono else stereo_mix(samples, sr, 77)
    kind = "dual-mono" if dual_mono else "stereo"
    path = folder / f"{source.stem}.{kind}-inverted.wav"
    sf.write(str(path), stereo * np.float32([1, -1]), sr)
    return path


@pytest.mark.parametrize("dual_mono", [True, False], ids=["dual-mono", "stereo"])
@pytest.mark.parametrize(
    "upload", ["stretch_1.25_work_02.ogg", "pitch_-3_work_03.ogg", "nightcore_work_03.ogg"]
)
def test_a_copy_with_an_inverted_channel_is_a_duplicate_with_its_transform(
    catalog: Catalog,
    work_ids: dict[str, int],
    manifest: dict,
    tmp_path: Path,
    upload: str,
    dual_mono: bool,
) -> None:
    entry = next(e for e in manifest["uploads"] if e["file"] == f"uploads/{upload}")
    path = inverted_stereo(FIXTURES / entry["file"], tmp_path, dual_mono)
    verdict = catalog.screen(path)
    assert verdict.verdict == "duplicate", verdict
    top = verdict.matches[0]
    assert top.work_id == work_ids[entry["work"]]
    assert top.tempo_ratio == pytest.approx(entry["tempo_ratio"], rel=0.02)
    assert top.pitch_shift_semitones == pytest.approx(entry["pitch_shift_semitones"], abs=0.3)


def test_chance_music_with_an_inverted_channel_stays_below_duplicate(
    catalog: Catalog, catalog_files: dict[str, Path], tmp_path: Path
) -> None:
    """Unrelated music, a medley, a short excerpt and a re-arrangement of work_02, each as
    dual-mono with one channel inverted (which read as "silent" before) and as a stereo mix with
    one channel inverted: none is a duplicate. A dual-mono one decodes to its original's
    samples, so its verdict and matches are the original's."""
    sr = catalog.settings.sample_rate_hz
    cover = tmp_path / "chord_cover.wav"
    sf.write(cover, chord_cover(load_audio(catalog_files["work_02"]).samples, sr), sr)
    chance = chance_music(tmp_path, (9301, 9302, 9303), sr) + [cover]
    for source in chance:
        mono = catalog.screen(source)
        dual = catalog.screen(inverted_stereo(source, tmp_path, dual_mono=True))
        mixed = catalog.screen(inverted_stereo(source, tmp_path, dual_mono=False))
        assert mono.verdict != "duplicate", source.name
        assert dual.error is None and dual.verdict == mono.verdict, source.name
        assert [(m.work_id, m.false_match_probability) for m in dual.matches] == [
            (m.work_id, m.false_match_probability) for m in mono.matches
        ], source.name
        assert mixed.error is None and mixed.verdict != "duplicate", source.name
