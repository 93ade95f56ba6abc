"""Fingerprint-level distractors (benchmarks.distractor_prints) on the bundled fixtures: they are
deterministic, of realistic length and density, and a catalog padded with them keeps a true copy
a duplicate while unrelated music and a short excerpt of a never-indexed track stay below."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiodup import Catalog
from audiodup.settings import DEFAULT_SETTINGS as S
from benchmarks.distractor_prints import (
    distractor_print,
    distractor_works,
    load_sources,
    split_sources,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "audio"


@pytest.fixture(scope="module")
def fixture_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not sorted((FIXTURES / "catalog").glob("*.ogg")):
        pytest.skip("fixtures/audio/catalog/*.ogg not generated")
    root = tmp_path_factory.mktemp("prints") / "catalog"
    with Catalog.open(root) as catalog:
        results = catalog.add_paths([FIXTURES / "catalog"])
    assert [r.status for r in results] == ["added"] * 6
    return root


def test_distractors_are_deterministic_real_length_and_catalog_density(
    fixture_catalog: Path,
) -> None:
    sources = load_sources(fixture_catalog)
    a = distractor_print(sources, 7, seed=1)
    b = distractor_print(sources, 7, seed=1)
    assert np.array_equal(a.peaks, b.peaks) and np.array_equal(a.chroma, b.chroma)
    assert not np.array_equal(distractor_print(sources, 8, seed=1).peaks, a.peaks)
    prints = [distractor_print(sources, i) for i in range(60)]
    lengths_min = np.array([fp.duration_s for fp in prints]) / 60
    assert 3.0 <= lengths_min.mean() <= 4.0
    for fp in prints:
        assert np.all(np.diff(fp.peaks["frame"].astype(np.int64)) >= 0)
        assert len(fp.peaks) / fp.duration_s <= S.peaks_per_second + 0.5
        assert fp.peaks["bin"].max() <= S.bins_per_octave * S.n_octaves
        assert len(fp.chroma) == pytest.approx(fp.duration_s * S.chroma_fps, abs=2)
        assert np.allclose(np.linalg.norm(fp.chroma, axis=1)[np.any(fp.chroma, axis=1)], 1.0)


def test_a_padded_catalog_keeps_copies_and_keeps_chance_below_duplicate(
    fixture_catalog: Path, tmp_path: Path
) -> None:
    """The catalog grows from 6 to 406 works with distractors cut from the three works not
    screened; a time-stretched copy and an excerpt of the others stay duplicates of their work;
    two unrelated uploads and a 5-s excerpt of a never-indexed work stay below duplicate."""
    import shutil

    from audiodup.synth import synthesize_work

    manifest = json.loads((FIXTURES / "manifest.json").read_text())
    root = tmp_path / "catalog"
    shutil.copytree(fixture_catalog, root)
    sources = load_sources(root)
    positives, material = split_sources([s.name for s in sources], seed=0)
    copies = {
        FIXTURES / u["file"]: u["work"]
        for u in manifest["uploads"]
        if u["work"] is not None
        and u["kind"] in ("time_stretch", "excerpt", "speed")
        and any(Path(p).stem == u["work"] for p in positives)
    }
    assert copies, "the split leaves some copies to screen"
    never_indexed = synthesize_work(4242, 30.0, 22050)[22050 * 10 : 22050 * 15]
    sf.write(tmp_path / "excerpt_5s.wav", never_indexed, 22050)
    chance = [FIXTURES / "uploads" / "unrelated_a.ogg", FIXTURES / "uploads" / "unrelated_b.ogg"]
    chance.append(tmp_path / "excerpt_5s.wav")
    material_sources = [s for s in sources if s.name in material]
    done = 0
    for size in (6, 106, 406):
        with Catalog.open(root, create=False) as catalog:
            if size > 6:
                items = list(distractor_works(material_sources, range(done, size - 6)))
                catalog.store.commit_batch(items)
                done = size - 6
            assert len(catalog.works()) == size
            for path, work in copies.items():
                verdict = catalog.screen(path)
                assert verdict.verdict == "duplicate", (size, path.name)
                assert Path(verdict.matches[0].path).stem == work
            for path in chance:
                verdict = catalog.screen(path)
                assert verdict.verdict != "duplicate", (size, path.name)
