"""Chroma shards store their vectors padded with zero columns to a multiple of FAISS's SIMD
width: every inner product is unchanged, shards of the older layout still search and
``audiodup index upgrade`` rewrites them keeping their lists, so the same segments are found."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np
import pytest
from typer.testing import CliRunner

from audiodup import Catalog, CatalogError
from audiodup import index as index_module
from audiodup.audio import load_audio
from audiodup.cli import app
from audiodup.fingerprint import fingerprint_audio
from audiodup.index import (
    LoadedIndexes,
    chroma_dim,
    chroma_index_dim,
    new_chroma_index,
    pack_segment_ids,
    padded_chroma_index,
    padded_columns,
    reference_segments,
    set_nprobe,
    write_index,
)
from audiodup.match import chroma_candidates
from audiodup.settings import DEFAULT_SETTINGS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "audio"
UPLOADS = [
    FIXTURES / "uploads" / name
    for name in ("pitch_-3_work_03.ogg", "stretch_1.25_work_02.ogg", "unrelated_a.ogg")
]
DIM = chroma_dim(DEFAULT_SETTINGS)
# small enough that the six fixture works' 72 vectors train an inverted-list index
IVF_SETTINGS = replace(DEFAULT_SETTINGS, chroma_min_lists=1)


def unit_rows(seed: int, n: int) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def old_layout_index(vectors: np.ndarray, settings=DEFAULT_SETTINGS):
    """A chroma shard as catalogs stored it before the padding: the recipe's columns."""
    index = new_chroma_index(vectors, settings, pad=False)
    index.add_with_ids(vectors, pack_segment_ids(1, len(vectors)))
    set_nprobe(index, settings.chroma_nprobe)
    return index


def test_the_padded_width_is_a_multiple_of_the_simd_width_and_no_narrower() -> None:
    assert chroma_index_dim(DIM) == 48
    assert [chroma_index_dim(d) for d in (1, 16, 17, 32)] == [16, 16, 32, 32]
    rows = unit_rows(0, 5)
    padded = padded_columns(rows, 48)
    assert padded.shape == (5, 48)
    assert np.array_equal(padded[:, :DIM], rows) and not padded[:, DIM:].any()
    assert padded_columns(padded, 48) is padded


@pytest.mark.parametrize("n_vectors", [300, 6000])  # exhaustive SQ8 in an id map, IVF lists
def test_a_padded_shard_finds_the_same_segments_as_the_older_one(n_vectors: int) -> None:
    old = old_layout_index(unit_rows(1, n_vectors))
    assert old.d == DIM
    padded = padded_chroma_index(old)
    assert padded is not None
    assert (padded.d, padded.ntotal) == (48, old.ntotal)
    queries = unit_rows(2, 200)
    sims_old, ids_old = old.search(queries, 8)
    sims_new, ids_new = padded.search(padded_columns(queries, 48), 8)
    np.testing.assert_allclose(sims_old, sims_new, atol=1e-5)
    # the same segments, but where two similarities tie to float rounding (the SIMD sum's order
    # differs between machines): their ranks may swap
    assert (ids_old != ids_new).mean() < 0.01
    # it is an index of its own: written and read back, it answers the same
    written = []
    write_index(padded, binary=False)(written.append)
    read_back = faiss.deserialize_index(np.frombuffer(b"".join(written), dtype=np.uint8))
    set_nprobe(read_back, DEFAULT_SETTINGS.chroma_nprobe)
    assert np.array_equal(read_back.search(padded_columns(queries, 48), 8)[1], ids_new)
    assert padded_chroma_index(padded) is None  # nothing left to pad


def test_an_index_of_another_kind_is_left_as_it_is() -> None:
    flat = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
    flat.add_with_ids(unit_rows(4, 10), np.arange(10, dtype=np.int64))
    assert padded_chroma_index(flat) is None


def test_new_shards_are_padded_and_search_as_the_recipe_s_columns(catalog: Catalog) -> None:
    """The same stored vectors in a padded and an unpadded shard: every look's chroma
    candidates are the same works, their similarities equal to float32 rounding (the SIMD
    scan sums the products in another order)."""
    assert {shard.d for shard in catalog.indexes().chroma_shards} == {48}
    entries = [(w.work_id, catalog.fingerprint(w.work_id)) for w in catalog.works()]
    vectors = np.concatenate([reference_segments(f, DEFAULT_SETTINGS) for _, f in entries])
    ids = np.concatenate(
        [pack_segment_ids(w, len(reference_segments(f, DEFAULT_SETTINGS))) for w, f in entries]
    )
    old = new_chroma_index(vectors, DEFAULT_SETTINGS, pad=False)
    old.add_with_ids(vectors.astype(np.float32), ids)
    new = new_chroma_index(vectors, DEFAULT_SETTINGS)
    new.add_with_ids(padded_columns(vectors, new.d), ids)
    live = catalog.indexes().live
    loaded = {
        index.d: LoadedIndexes([], [index], live, np.zeros(0, dtype=np.int64))
        for index in (old, new)
    }
    found = 0
    for path in UPLOADS:
        query = fingerprint_audio(load_audio(path))
        by_width = [chroma_candidates(query, loaded[d], DEFAULT_SETTINGS) for d in (DIM, 48)]
        old_found, new_found = ({c[0]: c[1:] for c in listed} for listed in by_width)
        assert old_found.keys() == new_found.keys()
        for work, values in old_found.items():
            np.testing.assert_allclose(values, new_found[work], rtol=1e-5)
        found += len(old_found)
    assert found > 0


def test_upgrade_rewrites_older_shards_and_keeps_every_verdict(
    pristine_catalog_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "catalog"
    with monkeypatch.context() as patch:  # build the catalog as before the padding
        patch.setattr(index_module, "chroma_index_dim", lambda dim: dim)
        with Catalog.open(root, settings=IVF_SETTINGS) as opened:
            opened.add_paths([FIXTURES / "catalog"])
    with Catalog.open(root, create=False, settings=IVF_SETTINGS) as opened:
        (shard,) = opened.indexes().chroma_shards
        assert shard.d == DIM and faiss.extract_index_ivf(shard) is not None
        before = [opened.screen(path) for path in UPLOADS]
    assert [v.verdict for v in before] == ["duplicate", "duplicate", "clean"]
    old_files = sorted(p.name for p in (root / "shards").glob("c-*"))

    runner = CliRunner()
    result = runner.invoke(app, ["index", "upgrade", "--db", str(root)])
    assert result.exit_code == 0, result.output
    assert "upgraded: 1 chroma shards" in result.output
    new_files = sorted(p.name for p in (root / "shards").glob("c-*"))
    assert len(new_files) == 1 and new_files != old_files  # the old file is gone
    again = runner.invoke(app, ["index", "upgrade", "--db", str(root)])
    assert again.exit_code == 0 and "upgraded: 0 chroma shards" in again.output

    with Catalog.open(root, create=False, settings=IVF_SETTINGS) as opened:
        assert opened.verify() == []
        (shard,) = opened.indexes().chroma_shards
        assert shard.d == 48
        after = [opened.screen(path) for path in UPLOADS]
    for old, new in zip(before, after, strict=True):
        assert old.verdict == new.verdict
        assert [m.work_id for m in old.matches] == [m.work_id for m in new.matches]
        assert [m.false_match_probability for m in old.matches] == [
            m.false_match_probability for m in new.matches
        ]
        assert [
            (m.tempo_ratio, m.pitch_shift_semitones, m.chroma_similarity) for m in old.matches
        ] == [(m.tempo_ratio, m.pitch_shift_semitones, m.chroma_similarity) for m in new.matches]


def test_upgrade_reports_an_unreadable_shard_in_one_line(catalog_copy: Path) -> None:
    (chroma,) = (catalog_copy / "shards").glob("c-*")
    chroma.write_bytes(b"not a faiss index")
    result = CliRunner().invoke(app, ["index", "upgrade", "--db", str(catalog_copy)])
    assert isinstance(result.exception, CatalogError)  # main() prints it as one line
    message = str(result.exception)
    assert "unreadable" in message and "index rebuild" in message and "\n" not in message
    assert chroma.read_bytes() == b"not a faiss index"  # nothing rewritten or removed


def test_a_catalog_mixing_both_layouts_screens_as_either(
    catalog_copy: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mixed = tmp_path / "mixed"
    shutil.copytree(catalog_copy, mixed)
    with Catalog.open(catalog_copy, create=False) as opened:
        opened.add_paths([UPLOADS[2]])
        reference = opened.screen(UPLOADS[0])
    with monkeypatch.context() as patch:
        patch.setattr(index_module, "chroma_index_dim", lambda dim: dim)
        with Catalog.open(mixed, create=False) as opened:
            opened.add_paths([UPLOADS[2]])  # a second shard, in the older layout
    with Catalog.open(mixed, create=False) as opened:
        assert sorted(s.d for s in opened.indexes().chroma_shards) == [DIM, 48]
        assert opened.verify() == []
        assert opened.screen(UPLOADS[2]).verdict == "duplicate"
        screened = opened.screen(UPLOADS[0])
    assert screened.verdict == reference.verdict == "duplicate"
    assert [m.work_id for m in screened.matches] == [m.work_id for m in reference.matches]


def test_verify_flags_a_chroma_shard_of_another_width(catalog_copy: Path) -> None:
    (chroma,) = (catalog_copy / "shards").glob("c-*")
    with Catalog.open(catalog_copy, create=False) as opened:
        vectors = opened.indexes().chroma_shards[0].ntotal
    other = faiss.IndexIDMap2(faiss.IndexFlatIP(40))
    other.add_with_ids(np.zeros((vectors, 40), np.float32), np.arange(vectors, dtype=np.int64))
    written = []
    write_index(other, binary=False)(written.append)
    chroma.write_bytes(b"".join(written))
    with Catalog.open(catalog_copy, create=False) as opened:
        problems = opened.verify()
    assert any("chroma vectors of 40 columns, the recipe's have 42" in p for p in problems)
