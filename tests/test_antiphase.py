"""Copies with one channel's polarity inverted: a stereo listener hears the recording, a mean
mix-down hears what is left when its centre cancels (a dual-mono track: nothing). Such blocks
are mixed as the channels' difference (:func:`audiodup.audio.antiphase_signs`): the copy is
found, and music in no catalog work inverted the same way stays below ``duplicate``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import FIXTURES, chance_music, chord_cover, stereo_mix

from audiodup import Catalog
from audiodup.audio import load_audio
from audiodup.synth import synthesize_work


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


def surround(front: np.ndarray, centre: np.ndarray, sr: int, path: Path) -> Path:
    """A 5.1 file: ``front`` in front left and, polarity-inverted, in front right, under a
    ``centre`` 1.5 times as loud (the loudest channel, unrelated to either front one); the
    channels' mean keeps only the centre."""
    n = min(len(front), len(centre))
    front, centre = front[:n], centre[:n]
    centre = centre * np.float32(1.5 * np.std(front) / max(np.std(centre), 1e-9))
    channels = np.zeros((n, 6), np.float32)
    channels[:, 0], channels[:, 1], channels[:, 2] = front, -front, centre
    sf.write(str(path), channels, sr, subtype="FLOAT" if path.suffix == ".wav" else "PCM_24")
    return path


def mono(path: Path) -> tuple[np.ndarray, int]:
    samples, sr = sf.read(str(path), dtype="float32")
    return (samples.mean(axis=1) if samples.ndim == 2 else samples), sr


@pytest.mark.parametrize("decoder", ["libsndfile", "ffmpeg"])
def test_an_inverted_front_pair_under_a_louder_centre_is_found(
    catalog: Catalog,
    work_ids: dict[str, int],
    manifest: dict,
    tmp_path: Path,
    decoder: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each channel of a surround file is compared with the louder channel it is most like,
    not only with the loudest: the copy in antiphase between the front pair is found, read by
    libsndfile (WAV) or by ffmpeg (Matroska), which hands back every channel to be mixed so."""
    entry = next(e for e in manifest["uploads"] if e["file"] == "uploads/stretch_1.25_work_02.ogg")
    copy, sr = mono(FIXTURES / entry["file"])
    centre = synthesize_work(9311, len(copy) / sr, sr)
    if decoder == "ffmpeg":
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            pytest.skip("ffmpeg is not installed: a Matroska file cannot be made or read")
        monkeypatch.setenv("AUDIODUP_FFMPEG", ffmpeg)
        wav = surround(copy, centre, sr, tmp_path / "surround.wav")
        path = tmp_path / "surround.mkv"
        subprocess.run(
            [ffmpeg, "-nostdin", "-v", "error", "-i", str(wav), "-c:a", "flac", str(path)],
            check=True,
        )
    else:
        path = surround(copy, centre, sr, tmp_path / "surround.wav")
    verdict = catalog.screen(path)
    assert verdict.verdict == "duplicate", verdict
    assert verdict.matches[0].work_id == work_ids[entry["work"]]
    assert verdict.matches[0].tempo_ratio == pytest.approx(entry["tempo_ratio"], rel=0.02)


def test_chance_music_in_an_inverted_front_pair_stays_below_duplicate(
    catalog: Catalog, tmp_path: Path
) -> None:
    """Unrelated music, a medley and a short excerpt in antiphase between the front pair,
    under louder unrelated music in the centre: none is a duplicate."""
    for index, front in enumerate(chance_music(tmp_path, (9321, 9322, 9323), 22050)):
        samples, sr = mono(front)
        centre = synthesize_work(9324 + index, len(samples) / sr, sr)
        verdict = catalog.screen(surround(samples, centre, sr, tmp_path / f"s{index}.wav"))
        assert verdict.error is None and verdict.verdict != "duplicate", (front.name, verdict)
