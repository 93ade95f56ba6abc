"""The corpora: the tuning corpus and the held-out one, each built in its own cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from benchmarks.__main__ import default_out
from benchmarks.corpus import CORPORA, HELDOUT_PACKAGES, PACKAGES, prepare_corpus, scan
from benchmarks.runner import REPO_ROOT, RunConfig

SR = 8000


def _write(path: Path, seconds: float, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(seed).uniform(-0.1, 0.1, int(seconds * SR))
    sf.write(path, noise.astype(np.float32), SR)


def _package(root: Path, package: str, seed: int) -> Path:
    """An unpacked package: a piece in ``music``, an ambience loop in ``ambience``, an effect
    in ``sounds`` (20 s or more each) and a 5-s jingle in ``music``."""
    base = root / package / "usr" / "share" / "games" / package
    _write(base / "music" / "theme.ogg", 21.0, seed)
    _write(base / "ambience" / "wind.ogg", 22.0, seed + 1)
    _write(base / "sounds" / "boom.ogg", 23.0, seed + 2)
    _write(base / "music" / "jingle.ogg", 5.0, seed + 3)
    return root / package


def test_held_out_music_comes_from_music_folders_only(tmp_path: Path) -> None:
    unpacked = {"pkg": _package(tmp_path, "pkg", 1)}
    tuning = {Path(t.path).name for t in scan(unpacked)}
    held_out = {Path(t.path).name for t in scan(unpacked, music_dirs_only=True)}
    assert tuning == {"theme.ogg", "wind.ogg"}
    assert held_out == {"theme.ogg"}


def test_each_corpus_is_built_from_its_own_packages(tmp_path: Path) -> None:
    """A cache holding the tuning corpus's manifest builds the held-out corpus from the held-out
    packages (found already fetched and unpacked: no download) instead of reusing it."""
    assert not set(PACKAGES) & set(HELDOUT_PACKAGES)
    for i, package in enumerate(CORPORA["heldout"]):
        (tmp_path / "debs").mkdir(exist_ok=True)
        deb = f"{package}_1.0_all.deb"
        (tmp_path / "debs" / deb).write_bytes(b"")
        _package(tmp_path / "unpacked", package, 10 * i)
        (tmp_path / "unpacked" / package / ".unpacked-from").write_text(deb)
    theme = next((tmp_path / "unpacked").rglob("theme.ogg"))
    manifest = {"seed": 0, "tracks": [], "notes": []}  # a tuning manifest, before names
    manifest["tracks"].append(
        dict(
            track_id="old__theme",
            package="old",
            path=str(theme),
            duration_s=21.0,
            samplerate=SR,
            channels=1,
            sha1="0",
            group="old:theme",
        )
    )
    (tmp_path / "corpus.json").write_text(json.dumps(manifest))
    assert prepare_corpus(tmp_path, log=lambda _: None).name == "tuning"
    corpus = prepare_corpus(tmp_path, name="heldout", log=lambda _: None)
    assert corpus.name == "heldout"
    assert {t.package for t in corpus.tracks} == set(HELDOUT_PACKAGES)
    assert all(Path(t.path).name == "theme.ogg" for t in corpus.tracks)
    assert json.loads((tmp_path / "corpus.json").read_text())["name"] == "heldout"


def test_a_held_out_run_keeps_its_own_cache_and_report(tmp_path: Path) -> None:
    assert RunConfig(data=tmp_path).cache == tmp_path
    assert RunConfig(data=tmp_path, corpus="heldout").cache == tmp_path / "heldout"
    bench = REPO_ROOT / "benchmarks"
    assert default_out("full", "tuning") == bench / "RESULTS.md"
    assert default_out("quick", "tuning") == bench / "quick" / "RESULTS.md"
    assert default_out("full", "heldout") == bench / "heldout" / "RESULTS.md"
    assert default_out("quick", "heldout") == bench / "heldout-quick" / "RESULTS.md"


def test_a_remaster_stays_with_its_original() -> None:
    """A remaster can mix the original recording in (warzone2100's `track3_enhanced` holds
    `track3` from 70 s on): the split must keep the two on one side."""
    from benchmarks.corpus import _group_stem

    assert _group_stem("track3_enhanced") == _group_stem("track3")
    assert _group_stem("menu_enhanced") == _group_stem("menu") == "menu"
    assert _group_stem("frantic-old") == _group_stem("frantic")
