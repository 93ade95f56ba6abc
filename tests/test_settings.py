"""Tests for audiodup.settings: the recipe id derived from the recipe fields, the split between
recipe and run-time fields (checked by fingerprinting under each perturbed field), the JSON round
trip, and the catalog's refusal of another recipe with the differing fields named."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest

from audiodup import Catalog, RecipeMismatchError
from audiodup.audio import audio_from_samples
from audiodup.chroma import segment_vectors
from audiodup.errors import CatalogError
from audiodup.fingerprint import fingerprint_audio, fingerprint_hashes
from audiodup.settings import (
    DEFAULT_SETTINGS,
    INDEX_ONLY_FIELDS,
    LEGACY_RECIPES,
    RECIPE,
    RECIPE_FIELDS,
    RUN_TIME_FIELDS,
    Settings,
    recipe_matches,
    rekeyable,
)
from audiodup.synth import synthesize_work

S = DEFAULT_SETTINGS
SIGNAL_SR = 22050
SIGNAL_S = 14.0  # long enough for a few 10 s segments, short enough to stay fast

# Perturbations where "a little more" would be invalid (bins_per_octave must divide into
# semitones, n_octaves + 1 would pass Nyquist) or would not bite on a 14 s signal.
PERTURBED = {
    "sample_rate_hz": 8000,
    "max_duration_s": 8.0,
    "n_fft": 1024,
    "bins_per_octave": 24,
    "n_octaves": 5,
    "df_quant_bins": 2,
    "hash_max_dt_s": 0.3,  # catalog pairs are the next 2 peaks, mostly much closer than 4 s
    "hash_max_df_bins": 12,
    "chroma_coeffs": (6, 6),
    "chroma_index_factory": "IVF{nlist},Flat",
    "stereo_difference": "always",
    "stereo_channels": "always",
}

# Recipe fields that do not change the fingerprint of the test signal under their perturbation,
# with the reason. Empty: every recipe field shows in the output.
NO_EFFECT_ON_TEST_SIGNAL: dict[str, str] = {}


def perturbed(name: str):
    """Another valid value of the field ``name``."""
    if name in PERTURBED:
        return PERTURBED[name]
    value = getattr(S, name)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value - 1 if value > 1 else value + 1
    if isinstance(value, float):
        return value * 0.8
    if isinstance(value, tuple):
        return tuple(v * 0.8 for v in value)
    raise AssertionError(f"no perturbation for {name}={value!r}: add one to PERTURBED")


@pytest.fixture(scope="module")
def signal() -> np.ndarray:
    return synthesize_work(seed=3, duration_s=SIGNAL_S, sr=SIGNAL_SR)


def catalog_output(samples: np.ndarray, settings: Settings) -> str:
    """A digest of everything a catalog stores for ``samples``: the fingerprint, its catalog
    hashes and its segment vectors (not the recipe id it is labelled with)."""
    audio = audio_from_samples(samples, SIGNAL_SR, settings)
    fp = fingerprint_audio(audio, settings)
    hashes = fingerprint_hashes(fp, settings)
    segments, _ = segment_vectors(
        fp.chroma,
        settings.chroma_fps,
        settings.segment_s,
        settings.segment_hop_s,
        settings.segment_steps,
        coeffs=settings.chroma_coeffs,
    )
    digest = hashlib.sha256()
    for part in (
        fp.peaks,
        fp.chroma,
        np.array([fp.tuning_semitones, fp.duration_s]),
        hashes.keys,
        hashes.anchor_frame,
        hashes.anchor_bin,
        hashes.span_frames,
        segments,
    ):
        digest.update(np.ascontiguousarray(part).tobytes())
        digest.update(b"|")
    return digest.hexdigest()


# --- the split -------------------------------------------------------------------------------


def test_every_field_is_recipe_or_run_time() -> None:
    names = [f.name for f in fields(Settings)]
    assert len(set(RECIPE_FIELDS)) == len(RECIPE_FIELDS)
    assert set(RECIPE_FIELDS) <= set(names)
    assert sorted(RECIPE_FIELDS + RUN_TIME_FIELDS) == sorted(names)


def test_flat_attribute_access_and_recipe_property() -> None:
    assert S.n_fft == 2048 and S.duplicate_max_fmp == 1e-6 and S.chroma_coeffs == (7, 6)
    assert S.recipe == RECIPE
    assert RECIPE.startswith("audiodup-fp-") and len(RECIPE) == len("audiodup-fp-") + 12
    assert S.bins_per_semitone == 3


@pytest.mark.parametrize("name", RECIPE_FIELDS)
def test_changing_a_recipe_field_changes_the_id(name: str) -> None:
    assert replace(S, **{name: perturbed(name)}).recipe != RECIPE


@pytest.mark.parametrize("name", RUN_TIME_FIELDS)
def test_changing_a_run_time_field_keeps_the_id(name: str) -> None:
    assert replace(S, **{name: perturbed(name)}).recipe == RECIPE


def test_the_id_ignores_int_or_float_spelling() -> None:
    assert Settings(peaks_per_second=7).recipe == RECIPE
    assert Settings(fmin_hz=65.4, segment_s=10).recipe == RECIPE


@pytest.mark.parametrize("name", RECIPE_FIELDS)
def test_recipe_fields_change_the_fingerprint(signal: np.ndarray, name: str) -> None:
    if name in NO_EFFECT_ON_TEST_SIGNAL:
        pytest.skip(NO_EFFECT_ON_TEST_SIGNAL[name])
    changed = replace(S, **{name: perturbed(name)})
    assert catalog_output(signal, changed) != catalog_output(signal, S)


def stored_fingerprint(samples: np.ndarray, settings: Settings) -> tuple:
    fp = fingerprint_audio(audio_from_samples(samples, SIGNAL_SR, settings), settings)
    return fp.peaks.tobytes(), fp.chroma.tobytes(), fp.tuning_semitones, fp.duration_s


def test_index_only_fields_leave_the_stored_fingerprint_alone(signal: np.ndarray) -> None:
    """Each index-only field, perturbed, stores the same peaks and chroma (its catalog output
    changes: test_recipe_fields_change_the_fingerprint), and every other recipe field does not:
    a catalog that differs in index-only fields alone can be re-keyed from its fingerprints."""
    assert set(INDEX_ONLY_FIELDS) < set(RECIPE_FIELDS)
    reference = stored_fingerprint(signal, S)
    for name in RECIPE_FIELDS:
        same = stored_fingerprint(signal, replace(S, **{name: perturbed(name)})) == reference
        assert same == (name in INDEX_ONLY_FIELDS), name


def test_run_time_fields_leave_the_fingerprint_alone(signal: np.ndarray) -> None:
    """Every field outside the recipe, perturbed one by one, stores the same bytes: a new field
    that shapes fingerprints fails here until it joins RECIPE_FIELDS."""
    reference = catalog_output(signal, S)
    changed = [
        name
        for name in RUN_TIME_FIELDS
        if catalog_output(signal, replace(S, **{name: perturbed(name)})) != reference
    ]
    assert changed == []


def stored_form_digest(samples: np.ndarray) -> str:
    """A digest of the default fingerprint at its stored precision (so last-bit float
    differences between machines do not show) and of its catalog hash keys."""
    fp = fingerprint_audio(audio_from_samples(samples, SIGNAL_SR))
    digest = hashlib.sha256()
    for part in (
        fp.peaks["frame"],
        np.round(fp.peaks["bin"] * 16).astype(np.int64),
        np.round(np.clip(fp.chroma, -1, 1) * 15).astype(np.int8),
        fingerprint_hashes(fp).keys,
    ):
        digest.update(np.ascontiguousarray(part).tobytes())
        digest.update(b"|")
    return digest.hexdigest()[:16]


# What the default recipe makes of the test signal. A code change that alters it must change the
# id too: bump settings.RECIPE_FORMAT, then pin the new id with the new digest here.
PINNED_OUTPUT = {"audiodup-fp-82002baacc78": "5ade5773a26c2b84"}


def test_the_default_output_is_pinned_to_the_recipe_id(signal: np.ndarray) -> None:
    assert RECIPE in PINNED_OUTPUT, f"pin {RECIPE}: {stored_form_digest(signal)}"
    assert stored_form_digest(signal) == PINNED_OUTPUT[RECIPE], (
        "the default fingerprint changed under the same recipe id: bump settings.RECIPE_FORMAT"
    )


# --- JSON ------------------------------------------------------------------------------------


def test_json_round_trip() -> None:
    other = Settings(n_fft=1024, chroma_coeffs=(6, 5), query_peak_densities=(8.0, 12.0))
    back = Settings.from_json(other.to_json())
    assert back == other
    assert back.recipe == other.recipe
    assert json.loads(other.to_json())["recipe"] == other.recipe
    assert Settings.from_json(S.to_json()) == S


def test_from_json_ignores_unknown_keys_and_fills_missing_fields() -> None:
    text = json.dumps({"n_fft": 1024, "recipe": "whatever", "retired_field": 3})
    assert Settings.from_json(text) == Settings(n_fft=1024)


# --- catalogs --------------------------------------------------------------------------------


def _meta(root: Path) -> dict[str, str]:
    with sqlite3.connect(root / "catalog.sqlite") as db:
        return dict(db.execute("SELECT key, value FROM meta").fetchall())


def test_catalog_stores_recipe_and_settings_and_reads_them_back(tmp_path: Path) -> None:
    settings = Settings(peaks_per_second=6.0, duplicate_max_fmp=1e-7)
    with Catalog.open(tmp_path / "db", settings=settings) as catalog:
        stored = catalog.store.stored_settings_json()
    meta = _meta(tmp_path / "db")
    assert meta["recipe"] == settings.recipe
    assert stored == meta["settings"]
    assert Settings.from_json(stored) == settings


def test_catalog_of_another_recipe_is_refused_naming_the_fields(tmp_path: Path) -> None:
    built = Settings(peaks_per_second=6.0, chroma_coeffs=(6, 6))
    with Catalog.open(tmp_path / "db", settings=built):
        pass
    with pytest.raises(RecipeMismatchError) as info:
        Catalog.open(tmp_path / "db")
    message = str(info.value)
    assert built.recipe in message and RECIPE in message
    assert "peaks_per_second: 6.0 vs 7.0" in message
    assert "chroma_coeffs: [6, 6] vs [7, 6]" in message
    assert "n_fft" not in message
    # run-time settings may differ freely
    with Catalog.open(tmp_path / "db", settings=replace(built, duplicate_max_fmp=1e-9)):
        pass


OTHER_KEYS = replace(S, ratio_levels=16)  # time ratios keyed in 16 levels (SCALING.md, session 14)


def screened(root: Path, uploads: list[Path]) -> list[tuple]:
    with Catalog.open(root, create=False) as catalog:
        return [
            (r.verdict, [(m.path, m.false_match_probability) for m in r.matches])
            for r in (catalog.screen(path) for path in uploads)
        ]


def test_a_catalog_of_other_hash_keys_is_re_keyed_from_its_fingerprints(tmp_path: Path) -> None:
    """A catalog built with time ratios in 16 levels holds the fingerprints of today's recipe:
    it is refused with the way out named, and 'index upgrade' makes its index again from them.
    It then screens as a catalog built today from the same files does, and keeps its works."""
    from typer.testing import CliRunner

    from audiodup.cli import app

    fixtures = Path(__file__).resolve().parent.parent / "fixtures" / "audio"
    old, new = tmp_path / "old", tmp_path / "new"
    with Catalog.open(old, settings=OTHER_KEYS) as catalog:
        catalog.add_paths([fixtures / "catalog"])
        works = catalog.works()
    with Catalog.open(new) as catalog:
        catalog.add_paths([fixtures / "catalog"])
    assert rekeyable(OTHER_KEYS.recipe, OTHER_KEYS.to_json(), S)
    with pytest.raises(RecipeMismatchError) as info:
        Catalog.open(old)
    assert "ratio_levels: 16 vs 24" in str(info.value) and "index upgrade" in str(info.value)
    # opened for the upgrade, nothing but the upgrade writes or searches
    with Catalog.open(old, rekey=True) as catalog:
        assert catalog.store.rekey_from == OTHER_KEYS.recipe
        with pytest.raises(RecipeMismatchError, match="index upgrade"):
            catalog.indexes()
        with pytest.raises(RecipeMismatchError, match="index upgrade"):
            catalog.remove(works[0].work_id)
    result = CliRunner().invoke(app, ["index", "upgrade", "--db", str(old)])
    assert result.exit_code == 0, result.output
    assert "6 works re-keyed" in result.output
    again = CliRunner().invoke(app, ["index", "upgrade", "--db", str(old)])
    assert again.exit_code == 0 and "0 works re-keyed" in again.output
    with Catalog.open(old, create=False) as rekeyed, Catalog.open(new, create=False) as built:
        assert rekeyed.works() == works
        mine, theirs = rekeyed.indexes(), built.indexes()
        assert np.array_equal(mine.bucket_sizes, theirs.bucket_sizes)
        assert mine.n_quad_entries == theirs.n_quad_entries > 0
    uploads = sorted((fixtures / "uploads").iterdir())
    assert screened(old, uploads) == screened(new, uploads)


def test_a_re_key_that_stops_leaves_the_catalog_as_it_was(tmp_path: Path, monkeypatch) -> None:
    from audiodup.store import CatalogStore

    fixtures = Path(__file__).resolve().parent.parent / "fixtures" / "audio"
    with Catalog.open(tmp_path / "db", settings=OTHER_KEYS) as catalog:
        catalog.add_paths([fixtures / "catalog" / "work_00.ogg"])
    before = sorted(p.name for p in (tmp_path / "db" / "shards").iterdir())

    def fail(self) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(CatalogStore, "_record_recipe", fail)
    with Catalog.open(tmp_path / "db", rekey=True) as catalog, pytest.raises(CatalogError):
        catalog.rekey()
    assert sorted(p.name for p in (tmp_path / "db" / "shards").iterdir()) == before
    with Catalog.open(tmp_path / "db", settings=OTHER_KEYS, create=False) as catalog:
        assert len(catalog.works()) == 1 and catalog.indexes().n_hash_entries > 0


def test_a_catalog_of_other_fingerprints_is_not_re_keyed(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from audiodup.cli import app

    other = replace(OTHER_KEYS, peaks_per_second=6.0)
    with Catalog.open(tmp_path / "db", settings=other):
        pass
    assert not rekeyable(other.recipe, other.to_json(), S)
    with pytest.raises(RecipeMismatchError) as info:
        Catalog.open(tmp_path / "db", rekey=True)
    assert "index add" in str(info.value) and "index upgrade" not in str(info.value)
    result = CliRunner().invoke(app, ["index", "upgrade", "--db", str(tmp_path / "db")])
    assert isinstance(result.exception, RecipeMismatchError)  # one line from audiodup.cli.main
    assert "peaks_per_second: 6.0 vs 7.0" in str(result.exception)


def _as_legacy(root: Path, settings_json: str) -> None:
    """Make a catalog look like one made before the id was derived."""
    with sqlite3.connect(root / "catalog.sqlite") as db:
        db.execute("UPDATE meta SET value = 'audiodup-fp-2' WHERE key = 'recipe'")
        db.execute("UPDATE meta SET value = ? WHERE key = 'settings'", (settings_json,))


def _legacy_json(settings: Settings) -> str:
    """Settings JSON as the old code wrote it: no chroma_coeffs, a literal recipe field."""
    old = json.loads(settings.to_json())
    del old["chroma_coeffs"]
    old["recipe"] = "audiodup-fp-2"
    return json.dumps(old, sort_keys=True)


def test_legacy_catalog_of_todays_recipe_fields_opens(tmp_path: Path) -> None:
    with Catalog.open(tmp_path / "db"):
        pass
    _as_legacy(tmp_path / "db", _legacy_json(S))
    with Catalog.open(tmp_path / "db") as catalog:
        assert catalog.works() == []
    assert recipe_matches("audiodup-fp-2", _legacy_json(S), S)
    assert set(LEGACY_RECIPES) == {"audiodup-fp-2"}


def test_legacy_catalog_of_other_recipe_fields_is_refused(tmp_path: Path) -> None:
    with Catalog.open(tmp_path / "db"):
        pass
    _as_legacy(tmp_path / "db", _legacy_json(Settings(hop_length=128)))
    with pytest.raises(RecipeMismatchError, match="hop_length: 128 vs 256"):
        Catalog.open(tmp_path / "db")
    # the legacy fields fill what old catalogs did not record: (7, 6) was the constant then
    assert not recipe_matches("audiodup-fp-2", _legacy_json(S), Settings(chroma_coeffs=(6, 6)))


def test_unknown_recipe_without_settings_is_refused(tmp_path: Path) -> None:
    with Catalog.open(tmp_path / "db"):
        pass
    with sqlite3.connect(tmp_path / "db" / "catalog.sqlite") as db:
        db.execute("UPDATE meta SET value = 'audiodup-fp-1' WHERE key = 'recipe'")
        db.execute("DELETE FROM meta WHERE key = 'settings'")
    with pytest.raises(RecipeMismatchError, match="not recorded"):
        Catalog.open(tmp_path / "db")
