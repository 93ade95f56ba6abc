"""Shared fixtures: the bundled audio fixtures, their manifest, and a catalog of the six fixture
works built once per session (plus private copies for tests that change or damage it)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from audiodup import Catalog
from audiodup.audio import load_audio

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "audio"
CATALOG_DIR = FIXTURES / "catalog"
UPLOADS_DIR = FIXTURES / "uploads"

# Property tests run a few dozen examples each: enough to find edge cases, cheap enough for CI.
# No deadline: fingerprinting speed depends on the machine, and timing is not what we test.
hypothesis_settings.register_profile(
    "audiodup",
    deadline=None,
    max_examples=30,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
hypothesis_settings.register_profile(
    "thorough", parent=hypothesis_settings.get_profile("audiodup"), max_examples=500
)
# HYPOTHESIS_PROFILE=thorough python -m pytest ... for a deeper search before a release
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "audiodup"))


@pytest.fixture(scope="session")
def manifest() -> dict:
    return json.loads((FIXTURES / "manifest.json").read_text())


@pytest.fixture(scope="session")
def catalog_files(manifest: dict) -> dict[str, Path]:
    """Work name (``work_00``) -> path of the catalog file."""
    return {e["work"]: FIXTURES / e["file"] for e in manifest["catalog"]}


@pytest.fixture(scope="session")
def pristine_catalog_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A catalog of the six fixture works, closed (so its directory can be copied). One batch
    whatever the machine's load: a slow machine would otherwise commit them in two (every
    ``batch_seconds``), and a catalog of two shards ranks some candidates otherwise."""
    root = tmp_path_factory.mktemp("pristine") / "catalog"
    with Catalog.open(root) as catalog:
        results = catalog.add_paths([CATALOG_DIR], batch_seconds=float("inf"))
    assert [r.status for r in results] == ["added"] * 6, results
    return root


@pytest.fixture(scope="session")
def catalog(
    pristine_catalog_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Catalog]:
    """The shared, read-only fixture catalog. Tests that change a catalog use ``catalog_copy``."""
    root = tmp_path_factory.mktemp("shared") / "catalog"
    shutil.copytree(pristine_catalog_dir, root)
    with Catalog.open(root, create=False) as opened:
        yield opened


@pytest.fixture(scope="session")
def work_ids(catalog: Catalog) -> dict[str, int]:
    """Work name (``work_00``) -> work id in the shared catalog."""
    return {Path(w.path).stem: w.work_id for w in catalog.works()}


@pytest.fixture
def catalog_copy(pristine_catalog_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the fixture catalog that a test may change or damage."""
    root = tmp_path / "catalog"
    shutil.copytree(pristine_catalog_dir, root)
    return root


@pytest.fixture(scope="session")
def fixture_sha256() -> dict[str, str]:
    """Decoded-audio sha256 of every fixture file (catalog and uploads), by path."""
    files = sorted(CATALOG_DIR.iterdir()) + sorted(UPLOADS_DIR.iterdir())
    return {str(p): load_audio(p).sha256 for p in files}


def chance_music(folder: Path, seeds: tuple[int, int, int], sr: int) -> list[Path]:
    """Music in no catalog work: the two unrelated fixture uploads, a medley of 12 s of two
    synthetic pieces (``seeds[0]``, ``seeds[1]``) and an 8-s excerpt of a third."""
    import numpy as np
    import soundfile as sf

    from audiodup.synth import synthesize_work

    made = {
        "medley.wav": np.concatenate(
            [synthesize_work(seeds[0], 12.0, sr), synthesize_work(seeds[1], 12.0, sr)]
        ),
        "short_excerpt.wav": synthesize_work(seeds[2], 30.0, sr)[5 * sr : 13 * sr],
    }
    for name, audio in made.items():
        sf.write(folder / name, audio.astype(np.float32), sr)
    uploads = FIXTURES / "uploads"
    return [uploads / "unrelated_a.ogg", uploads / "unrelated_b.ogg"] + [
        folder / name for name in made
    ]


def stereo_mix(samples, sr: int, seed: int = 12):
    """``samples`` as a stereo mix: the left channel, and a right one with another piece in it
    (``seed``), their blocks correlating at about 0.8 as a centred mix's do; float32
    ``(frames, 2)``."""
    import numpy as np

    from audiodup.synth import synthesize_work

    other = synthesize_work(seed, duration_s=len(samples) / sr + 1, sr=sr)[: len(samples)]
    return np.stack([samples, 0.8 * samples + 0.3 * other], axis=1).astype(np.float32)


def chord_cover(audio, sr: int):
    """A re-arrangement: the work's chords on its own beats, played by twelve sine tones whose
    loudness follows its chroma, one octave, no drums: same harmony, another recording."""
    import librosa
    import numpy as np

    hop = 512
    chroma = librosa.feature.chroma_stft(y=audio, sr=sr, hop_length=hop)
    t = np.arange(len(audio)) / sr
    frames = np.arange(chroma.shape[1]) * hop / sr
    out = np.zeros(len(audio))
    for k in range(12):
        loud = np.interp(t, frames, chroma[k]) ** 2
        out += loud * np.sin(2 * np.pi * 261.63 * 2 ** (k / 12) * t)
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def weak_copy(settings):
    """20 s of work_05 (from 5 s in) under other music 1.4 times as loud, at the analysis rate:
    a copy few of whose peaks survive, `suspect` as it is and 2x slower and faster and a
    duplicate on the look half a hop in (``tests/test_screening.py``)."""
    import numpy as np

    rate = settings.sample_rate_hz
    work = load_audio(CATALOG_DIR / "work_05.ogg", settings).samples[5 * rate : 25 * rate]
    other = load_audio(UPLOADS_DIR / "unrelated_b.ogg", settings).samples[: len(work)]
    mix = work / np.sqrt(np.mean(work**2)) + 1.4 * other / np.sqrt(np.mean(other**2))
    return (0.5 * mix / np.abs(mix).max()).astype(np.float32)


@contextlib.contextmanager
def reviewed_upload(catalog_dir: Path, folder: Path, upload: Path, name: str):
    """A service on a copy of ``catalog_dir`` (in ``folder``) that has recorded ``upload`` as
    ``name``, a reviewer signed in: ``(client, the upload's JSON)``."""
    from fastapi.testclient import TestClient

    from audiodup.service.app import create_app
    from audiodup.service.auth import KeyFile
    from audiodup.service.config import ServiceConfig

    root = folder / "catalog"
    shutil.copytree(catalog_dir, root)
    config = ServiceConfig(db=root)
    keys = KeyFile(config.keys_path)
    screen_key, review_key = keys.create("ingest", ["screen"]), keys.create("rita", ["review"])
    with TestClient(create_app(config)) as client:
        with open(upload, "rb") as handle:
            answer = client.post(
                "/v1/uploads",
                files={"file": (name, handle, "audio/wav")},
                headers={"Authorization": f"Bearer {screen_key}"},
            )
        assert answer.status_code == 201, answer.text
        client.post("/review/login", data={"key": review_key}, follow_redirects=False)
        yield client, answer.json()["upload"]
