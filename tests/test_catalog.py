"""Tests for audiodup.catalog, the Python API: adding, de-duplicating, removing, recipes,
statistics, rebuilding and screening."""

from __future__ import annotations

import os
import shutil
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiodup import Catalog, CatalogError, RecipeMismatchError, Settings, Verdict
from audiodup.audio import load_audio
from audiodup.catalog import default_catalog_path, expand_paths
from audiodup.fingerprint import UploadFingerprints, fingerprint_hashes
from audiodup.index import reference_segments
from audiodup.results import TIMING_FIELDS, AddResult, verdict_to_dict
from audiodup.screening import planned_views
from audiodup.synth import synthesize_work

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "audio"
CATALOG_DIR = FIXTURES / "catalog"
UPLOADS_DIR = FIXTURES / "uploads"
SR = 22050


def new_work(path: Path, seed: int, duration_s: float = 12.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, synthesize_work(seed, duration_s=duration_s, sr=SR), SR)
    return path


# --- adding ---------------------------------------------------------------------------------


def test_adding_the_same_file_twice_is_a_no_op(catalog_copy: Path) -> None:
    with Catalog.open(catalog_copy) as catalog:
        before = catalog.works()
        results = catalog.add_paths([CATALOG_DIR / "work_03.ogg"])
        assert [r.status for r in results] == ["present"]
        assert results[0].work_id == next(
            w.work_id for w in before if Path(w.path).name == "work_03.ogg"
        )
        assert catalog.works() == before
        assert catalog.verify() == []


def test_identical_audio_under_another_name_is_a_new_upload(
    catalog_copy: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "renamed copy.ogg"
    shutil.copyfile(CATALOG_DIR / "work_01.ogg", copy)
    # the same samples in another container
    samples, sr = sf.read(CATALOG_DIR / "work_01.ogg", dtype="float32")
    as_wav = tmp_path / "work_01 as float.wav"
    sf.write(as_wav, samples, sr, subtype="FLOAT")
    with Catalog.open(catalog_copy) as catalog:
        work_id = next(w.work_id for w in catalog.works() if w.path.endswith("work_01.ogg"))
        hashes = catalog.stats().hash_entries
        results = catalog.add_paths([copy, as_wav])
        assert [(r.status, r.work_id) for r in results] == [("identical", work_id)] * 2
        assert len(catalog.works()) == 6 and catalog.stats().hash_entries == hashes
        recorded = [u for u in catalog.uploads() if u.work_id == work_id]
        assert [u.upload_id for u in recorded[1:]] == [r.upload_id for r in results]
        assert {u.source_path for u in recorded[1:]} == {str(copy), str(as_wav)}
        # the same files again: already recorded, nothing new
        again = catalog.add_paths([copy, as_wav])
        assert [(r.status, r.upload_id) for r in again] == [
            ("present", r.upload_id) for r in results
        ]


def test_other_audio_written_over_a_recorded_file_is_not_present(tmp_path: Path) -> None:
    """Files extracted with one fixed time (archives, reproducible builds) keep their size and
    modification time when another recording of the same length is written over them: the
    size and time alone said "already present" and the new recording was never recorded."""
    upload = new_work(tmp_path / "in" / "track01.wav", 41)
    fixed = (315_532_800, 315_532_800)  # 1980-01-01, as a zip file stores no earlier time
    os.utime(upload, fixed)
    other = new_work(tmp_path / "other.wav", 42)
    with Catalog.open(tmp_path / "db") as catalog:
        assert [r.status for r in catalog.add_paths([upload])] == ["added"]
        assert [r.status for r in catalog.add_paths([upload])] == ["present"]
        shutil.copyfile(other, upload)
        os.utime(upload, fixed)
        replaced = catalog.add_paths([upload])
        assert [r.status for r in replaced] == ["added"]
        assert [r.status for r in catalog.add_paths([upload])] == ["present"]
        assert len(catalog.works()) == 2
        assert catalog.screen(other).verdict == "duplicate"


def written_over(path: Path, source: Path, times: os.stat_result | None = None) -> None:
    """``source``'s audio written over ``path`` in place, ``path``'s access and modification
    times (or ``times``') put back to the nanosecond: only its ctime tells."""
    times = times or path.stat()
    shutil.copyfile(source, path)
    os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))


def _counted_decodes(monkeypatch: pytest.MonkeyPatch) -> list:
    """The files ``index add`` decodes from now on."""
    from audiodup import ingest

    decoded: list = []
    decode = ingest.load_audio

    def counted(path, settings):
        decoded.append(path)
        return decode(path, settings)

    monkeypatch.setattr(ingest, "load_audio", counted)
    return decoded


def test_a_recorded_file_read_again_unchanged_is_not_decoded_by_later_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chmod or a restore from backup gives a recorded file a newer ctime and the same audio:
    the next run reads it (``present``), and the runs after it do not, as before the chmod
    (every later run decoded it again)."""
    from audiodup import ingest

    upload = new_work(tmp_path / "in" / "a.wav", 45)
    decoded = _counted_decodes(monkeypatch)
    with Catalog.open(tmp_path / "db") as catalog:
        assert [r.status for r in catalog.add_paths([upload])] == ["added"]
        os.chmod(upload, 0o600)
        # the runs after the chmod happen later than it by more than the clock margin
        later = ingest._now() + 2 * ingest.CTIME_MARGIN
        monkeypatch.setattr(ingest, "_now", lambda: later)
        assert [r.status for r in catalog.add_paths([upload])] == ["present"]
        assert len(decoded) == 2
        assert [r.status for r in catalog.add_paths([upload])] == ["present"]
        assert len(decoded) == 2
        assert len(catalog.uploads()) == 1


def test_other_audio_written_over_a_file_read_again_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a file read again was kept as checked, other audio written over it with its size
    and times (ns) is read and recorded: the check is older than the new ctime."""
    upload = new_work(tmp_path / "in" / "a.wav", 46)
    other = new_work(tmp_path / "other.wav", 47)
    decoded = _counted_decodes(monkeypatch)
    with Catalog.open(tmp_path / "db") as catalog:
        assert [r.status for r in catalog.add_paths([upload])] == ["added"]
        os.chmod(upload, 0o600)
        assert [r.status for r in catalog.add_paths([upload])] == ["present"]
        before = upload.stat()
        written_over(upload, other)
        assert upload.stat().st_size == before.st_size
        assert [r.status for r in catalog.add_paths([upload])] == ["added"]
        assert len(decoded) == 3
        assert catalog.screen(other).verdict == "duplicate"


def test_other_audio_written_over_a_file_while_its_batch_waits_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Other audio written over a file, its size and times kept, after the last look at it and
    before its batch commits (waiting for another writer's lock) has an older ctime than the
    commit: the quick check then took it for the upload. It is read by the next run."""
    from audiodup import store as store_module

    upload = new_work(tmp_path / "in" / "a.wav", 48)
    other = new_work(tmp_path / "other.wav", 49)
    record = store_module._new_upload

    def written_over_first(item, work_id):
        if other.exists():
            written_over(upload, other)
            other.unlink()
        return record(item, work_id)

    monkeypatch.setattr(store_module, "_new_upload", written_over_first)
    with Catalog.open(tmp_path / "db") as catalog:
        assert [r.status for r in catalog.add_paths([upload])] == ["added"]
        assert not other.exists()
        again = catalog.add_paths([upload])
        assert [r.status for r in again] == ["added"]
        assert len(catalog.works()) == 2


def test_a_link_retargeted_during_the_quick_check_is_not_taken_for_the_other_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link stat'ed while it named one file and resolved after it named another paired the
    first file's size and times with the second's record: audio written over the second file
    (its size and times kept) was ``present``. The quick check stats the file it resolved."""
    from audiodup import ingest

    monkeypatch.setattr(ingest, "CTIME_MARGIN", timedelta(0))
    first = new_work(tmp_path / "f1.wav", 51)
    second = new_work(tmp_path / "f2.wav", 52)
    other = new_work(tmp_path / "c.wav", 53)
    times = first.stat()
    os.utime(second, ns=(times.st_atime_ns, times.st_mtime_ns))  # same size and times as f1
    with Catalog.open(tmp_path / "db") as catalog:
        assert [r.status for r in catalog.add_paths([second])] == ["added"]
        time.sleep(0.05)  # past the file system clock's tick: no margin here
        written_over(second, other, times)
        link = tmp_path / "link.wav"
        link.symlink_to(first)
        resolve = ingest.file_key

        def retargeted_first(path):
            if Path(path) == link and link.resolve() == first:
                retarget = tmp_path / "link.tmp"
                retarget.symlink_to(second)
                os.replace(retarget, link)
            return resolve(path)

        monkeypatch.setattr(ingest, "file_key", retargeted_first)
        assert [r.status for r in catalog.add_paths([link])] == ["added"]
        assert catalog.screen(other).verdict == "duplicate"


def test_a_file_check_holds_the_files_inode(tmp_path: Path) -> None:
    """Another volume mounted over the folder holds other files under the same names: one of
    the same size and times and an older ctime is not the recorded file."""
    upload = new_work(tmp_path / "a.wav", 54)

    def seen(stat: os.stat_result, ino: int = 0, dev: int = 0) -> os.stat_result:
        """``stat`` with an older ctime (and another inode or device)."""
        fields = list(stat[:10])
        fields[1] += ino
        fields[2] += dev
        floats = {"st_atime": stat.st_atime, "st_mtime": stat.st_mtime}
        return os.stat_result(fields, {**floats, "st_ctime": stat.st_mtime - 10})

    with Catalog.open(tmp_path / "db") as catalog:
        assert [r.status for r in catalog.add_paths([upload])] == ["added"]
        key, stat = str(upload.resolve()), upload.stat()
        store = catalog.store
        assert store.find_unchanged_file(key, seen(stat)).status == "present"
        assert store.find_unchanged_file(key, seen(stat, ino=1)) is None
        assert store.find_unchanged_file(key, seen(stat, dev=1)) is None


def test_a_file_replaced_while_it_is_decoded_is_not_recorded_as_either(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rename over the file (rsync, ``cp --remove-destination``) while it is decoded would
    record the old audio under the new file's size and time, which later runs trust unread."""
    from audiodup import ingest

    upload = new_work(tmp_path / "in" / "a.wav", 43)
    incoming = new_work(tmp_path / "incoming.wav", 44)
    decode = ingest.load_audio

    def replaced_meanwhile(path, settings):
        audio = decode(path, settings)
        if incoming.exists():
            os.replace(incoming, upload)
        return audio

    monkeypatch.setattr(ingest, "load_audio", replaced_meanwhile)
    with Catalog.open(tmp_path / "db") as catalog:
        first = catalog.add_paths([upload])
        assert [r.status for r in first] == ["failed"]
        assert "changed while it was read" in first[0].error
        again = catalog.add_paths([upload])
        assert [r.status for r in again] == ["added"] and len(catalog.uploads()) == 1
        assert catalog.screen(new_work(tmp_path / "b.wav", 44)).verdict == "duplicate"


def test_a_file_written_over_before_its_batch_commits_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Other audio written over a decoded file before its batch commits, its modification time
    set back: the upload keeps the audio it decoded, and the next run reads the file."""
    from audiodup import ingest

    upload = new_work(tmp_path / "in" / "a.wav", 45)
    other = new_work(tmp_path / "other.wav", 46)
    fingerprint = ingest.fingerprint_file

    def written_over_after(path, settings):
        item = fingerprint(path, settings)
        written_over(upload, other)
        return item

    with Catalog.open(tmp_path / "db") as catalog:
        monkeypatch.setattr(ingest, "fingerprint_file", written_over_after)
        assert [r.status for r in catalog.add_paths([upload])] == ["added"]
        monkeypatch.undo()
        assert [r.status for r in catalog.add_paths([upload])] == ["added"]
        assert len(catalog.works()) == 2
        assert catalog.screen(other).verdict == "duplicate"


def test_a_path_that_holds_earlier_audio_again_is_a_new_upload(tmp_path: Path) -> None:
    """One spool path reused: A, then B, then A again from another uploader. The third is an
    upload of its own (identical to the first), not the first "already present"."""
    spool = tmp_path / "spool" / "current.wav"
    a, b = new_work(tmp_path / "a.wav", 47), new_work(tmp_path / "b.wav", 48)
    spool.parent.mkdir()
    statuses = []
    with Catalog.open(tmp_path / "db") as catalog:
        for source in (a, b, a):
            shutil.copyfile(source, spool)
            statuses += [r.status for r in catalog.add_paths([spool])]
        assert statuses == ["added", "added", "identical"]
        assert [u.work_id for u in catalog.uploads()] == [1, 2, 1]
        # the same file again: its latest upload
        assert [r.status for r in catalog.add_paths([spool])] == ["present"]


def test_duplicates_within_one_batch_are_added_once(tmp_path: Path) -> None:
    first = new_work(tmp_path / "in" / "a.wav", 40)
    shutil.copyfile(first, tmp_path / "in" / "b.wav")
    with Catalog.open(tmp_path / "db") as catalog:
        results = catalog.add_paths([tmp_path / "in"])
        assert [r.status for r in results] == ["added", "identical"]
        assert len({r.work_id for r in results}) == 1
        assert len(catalog.works()) == 1
        assert catalog.verify() == []


def test_add_reports_every_file_and_keeps_going(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    new_work(folder / "good_1.wav", 41)
    new_work(folder / "nested" / "good_2.flac", 42)
    (folder / "broken.wav").write_bytes(b"not audio at all" * 100)
    (folder / "notes.txt").write_text("ignored: not an audio suffix")
    sf.write(folder / "short.wav", np.zeros(SR // 2), SR)
    seen: list[AddResult] = []
    with Catalog.open(tmp_path / "db") as catalog:
        results = catalog.add_paths([folder], on_result=seen.append)
        assert seen == results
        by_name = {Path(r.path).name: r for r in results}
        assert set(by_name) == {"good_1.wav", "good_2.flac", "broken.wav", "short.wav"}
        assert by_name["good_1.wav"].status == "added"
        assert by_name["good_2.flac"].status == "added"
        assert by_name["good_1.wav"].duration_s == pytest.approx(12.0, abs=0.01)
        for bad in ("broken.wav", "short.wav"):
            assert by_name[bad].status == "failed"
            assert by_name[bad].error and by_name[bad].work_id is None
        assert len(catalog.works()) == 2


def test_explicit_missing_file_is_reported(tmp_path: Path) -> None:
    with Catalog.open(tmp_path / "db") as catalog:
        results = catalog.add_paths([tmp_path / "missing.wav"])
    assert [r.status for r in results] == ["failed"]
    assert "not found" in results[0].error


def test_add_with_worker_processes(tmp_path: Path, fixture_sha256: dict[str, str]) -> None:
    with Catalog.open(tmp_path / "db") as catalog:
        results = catalog.add_paths([CATALOG_DIR], workers=2)
        assert [r.status for r in results] == ["added"] * 6
        expected = {sha for path, sha in fixture_sha256.items() if Path(path).parent == CATALOG_DIR}
        assert {w.sha256 for w in catalog.works()} == expected


def test_metadata_is_stored(tmp_path: Path) -> None:
    path = new_work(tmp_path / "song.wav", 43)
    with Catalog.open(tmp_path / "db") as catalog:
        # metadata is keyed by the resolved absolute path: a base name names nothing
        catalog.add_paths([path], metadata={"song.wav": {"title": "Song"}})
        catalog.remove(catalog.works()[0].work_id)
        catalog.add_paths(
            [path], metadata={str(path.resolve()): {"title": "Song", "isrc": "XX0000000001"}}
        )
        (work,) = catalog.works()
        (upload,) = catalog.uploads()
    assert work.title == "Song" and upload.title == "Song"
    assert work.metadata["isrc"] == "XX0000000001" and upload.isrc == "XX0000000001"
    assert work.duration_s == pytest.approx(12.0, abs=0.01)
    assert len(work.sha256) == 64


def test_works_describe_the_catalog(catalog: Catalog, fixture_sha256: dict[str, str]) -> None:
    works = catalog.works()
    assert sorted(Path(w.path).name for w in works) == [f"work_{i:02d}.ogg" for i in range(6)]
    for w in works:
        assert w.duration_s == pytest.approx(40.0, abs=0.01)
        assert w.sha256 == fixture_sha256[w.path]
        assert w.added_at
    assert len({w.work_id for w in works}) == 6


# --- recipes and opening --------------------------------------------------------------------


def test_other_recipe_is_refused(catalog_copy: Path) -> None:
    with pytest.raises(RecipeMismatchError) as info:
        Catalog.open(catalog_copy, settings=Settings(peaks_per_second=6.0))
    assert "peaks_per_second: 7.0 vs 6.0" in str(info.value)
    assert isinstance(info.value, CatalogError)
    # and the catalog is untouched
    with Catalog.open(catalog_copy) as catalog:
        assert len(catalog.works()) == 6
        assert catalog.verify() == []


def test_new_catalog_records_its_recipe(tmp_path: Path) -> None:
    settings = Settings(peaks_per_second=6.0)
    with Catalog.open(tmp_path / "db", settings=settings) as catalog:
        catalog.add_paths([new_work(tmp_path / "a.wav", 44)])
    with pytest.raises(RecipeMismatchError):
        Catalog.open(tmp_path / "db")
    with Catalog.open(tmp_path / "db", settings=settings) as catalog:
        assert len(catalog.works()) == 1


def test_missing_catalog_is_not_created_on_request(tmp_path: Path) -> None:
    with pytest.raises(CatalogError):
        Catalog.open(tmp_path / "nothing here", create=False)
    assert not (tmp_path / "nothing here").exists()


def test_catalog_path_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CatalogError):
        Catalog.open(blocker)


def test_damaged_database_is_a_catalog_error(catalog_copy: Path) -> None:
    for name in ("catalog.sqlite-wal", "catalog.sqlite-shm"):
        (catalog_copy / name).unlink(missing_ok=True)
    (catalog_copy / "catalog.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(CatalogError):
        Catalog.open(catalog_copy)


def test_default_path_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDIODUP_DB", str(tmp_path / "from-env"))
    assert default_catalog_path() == tmp_path / "from-env"
    with Catalog.open() as catalog:
        assert catalog.works() == []
    assert (tmp_path / "from-env" / "catalog.sqlite").exists()


def test_expand_paths_walks_folders_for_audio_only(tmp_path: Path) -> None:
    for name in ("b.wav", "a.FLAC", "sub/c.mp3", "readme.md", "cover.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    skipped: list[Path] = []
    found = [
        (p.relative_to(tmp_path).as_posix(), e) for p, e in expand_paths([tmp_path], skipped.append)
    ]
    assert found == [("a.FLAC", None), ("b.wav", None), ("sub/c.mp3", None)]
    assert [p.relative_to(tmp_path).as_posix() for p in skipped] == ["cover.jpg", "readme.md"]


def test_expand_paths_takes_the_containers_the_decoder_reads(tmp_path: Path) -> None:
    """The containers a copy was uploaded in that screen reads (review finding 3) are taken;
    a name without an audio extension goes to ``on_skip``, unless it is named explicitly."""
    taken = ["a.aifc", "b.rf64", "c.mov", "d.M4B", "e.mp2", "f.ac3", "g.wv", "h.tta", "i.avi"]
    left = ["copy", "copy.mp3 ", "copy.ts", "notes.txt"]
    for name in taken + left:
        (tmp_path / name).write_bytes(b"x")
    skipped: list[Path] = []
    found = [p.name for p, e in expand_paths([tmp_path], skipped.append) if e is None]
    assert found == sorted(taken)
    assert [p.name for p in skipped] == sorted(left)
    named = [tmp_path / name for name in left]
    assert list(expand_paths(named, skipped.append)) == [(p, None) for p in named]
    assert len(skipped) == len(left)  # nothing named is skipped


def test_add_names_the_files_a_folder_walk_skips(tmp_path: Path) -> None:
    """Files left out of a folder for their names reach ``on_skip`` (the catalog's own files,
    its folder inside the one added, do not); named explicitly, they are read as audio."""
    folder = tmp_path / "in"
    new_work(folder / "one.wav", 43)
    (folder / "sub").mkdir()
    # AIFF in a .aifc (read without ffmpeg), then WAV in names without an audio extension
    for name, seed, kind in (
        ("sub/copy.aifc", 44, "AIFF"),
        ("copy", 45, "WAV"),
        ("copy.mp3 ", 46, "WAV"),
    ):
        sf.write(folder / name, synthesize_work(seed, duration_s=12.0, sr=SR), SR, format=kind)
    (folder / "notes.txt").write_text("not audio")
    skipped: list[Path] = []
    with Catalog.open(folder / "db") as catalog:
        results = catalog.add_paths([folder], on_skip=skipped.append)
        assert [(Path(r.path).name, r.status) for r in results] == [
            ("one.wav", "added"),
            ("copy.aifc", "added"),
        ]
        assert [p.name for p in skipped] == ["copy", "copy.mp3 ", "notes.txt"]
        named = catalog.add_paths(skipped[:2], on_skip=skipped.append)
        assert [r.status for r in named] == ["added", "added"]
        assert len(skipped) == 3
        assert len(catalog.works()) == 4


# --- removing -------------------------------------------------------------------------------


def test_remove_then_list(catalog_copy: Path) -> None:
    with Catalog.open(catalog_copy) as catalog:
        victim = next(w for w in catalog.works() if w.path.endswith("work_00.ogg"))
        assert catalog.remove(victim.work_id)
        assert victim.work_id not in {w.work_id for w in catalog.works()}
        assert len(catalog.works()) == 5
        assert not catalog.remove(victim.work_id)  # already gone
        assert not catalog.remove(10_000)
        assert catalog.verify() == []
        # the removed work is no longer reported
        verdict = catalog.screen(UPLOADS_DIR / "excerpt_15s_work_00.ogg")
        assert victim.work_id not in {m.work_id for m in verdict.matches}
        assert verdict.verdict != "duplicate"


def test_removed_work_can_be_added_again(catalog_copy: Path) -> None:
    with Catalog.open(catalog_copy) as catalog:
        victim = next(w for w in catalog.works() if w.path.endswith("work_02.ogg"))
        catalog.remove(victim.work_id)
        (result,) = catalog.add_paths([CATALOG_DIR / "work_02.ogg"])
        assert result.status == "added"
        assert result.work_id != victim.work_id
        assert len(catalog.works()) == 6
        verdict = catalog.screen(UPLOADS_DIR / "mp3_work_02.mp3")
        assert verdict.verdict == "duplicate"
        assert verdict.matches[0].work_id == result.work_id


def test_removal_is_seen_by_another_open_catalog(catalog_copy: Path) -> None:
    with Catalog.open(catalog_copy) as reader, Catalog.open(catalog_copy) as writer:
        upload = UPLOADS_DIR / "stretch_0.80_work_01.ogg"
        first = reader.screen(upload)
        assert first.verdict == "duplicate"
        writer.remove(first.matches[0].work_id)
        second = reader.screen(upload)
        assert first.matches[0].work_id not in {m.work_id for m in second.matches}


# --- statistics -----------------------------------------------------------------------------


def test_stats_are_consistent(catalog: Catalog) -> None:
    stats = catalog.stats()
    works = catalog.works()
    assert stats.works == len(works) == 6
    assert stats.hours == pytest.approx(sum(w.duration_s for w in works) / 3600)
    fingerprints = [catalog.fingerprint(w.work_id) for w in works]
    assert stats.chroma_vectors == sum(
        len(reference_segments(fp, catalog.settings)) for fp in fingerprints
    )
    assert stats.hash_entries > 0
    # the shards hold exactly the hashes regenerated from the stored fingerprints
    assert stats.hash_entries == sum(
        len(fingerprint_hashes(fp, catalog.settings)) for fp in fingerprints
    )
    shard_files = list((catalog.store.root / "shards").glob("[hcq]-*"))
    assert stats.shards >= 1 and len(shard_files) == 3 * stats.shards
    assert stats.index_bytes == sum(p.stat().st_size for p in shard_files)
    assert stats.catalog_bytes > stats.index_bytes
    assert stats.bytes_per_work == pytest.approx(stats.catalog_bytes / stats.works)
    assert stats.bytes_per_hour == pytest.approx(stats.catalog_bytes / stats.hours)


def test_stats_of_an_empty_catalog(tmp_path: Path) -> None:
    with Catalog.open(tmp_path / "db") as catalog:
        stats = catalog.stats()
        assert (stats.works, stats.hours, stats.hash_entries, stats.shards) == (0, 0, 0, 0)
        assert stats.bytes_per_work == 0 and stats.bytes_per_hour == 0
        assert catalog.verify() == []


def test_stats_follow_additions_and_removals(catalog_copy: Path, tmp_path: Path) -> None:
    with Catalog.open(catalog_copy) as catalog:
        before = catalog.stats()
        catalog.add_paths([new_work(tmp_path / "extra.wav", 45, duration_s=30.0)])
        added = catalog.stats()
        assert added.works == before.works + 1
        assert added.hours == pytest.approx(before.hours + 30.0 / 3600)
        assert added.hash_entries > before.hash_entries
        extra = next(w for w in catalog.works() if w.path.endswith("extra.wav"))
        catalog.remove(extra.work_id)
        assert catalog.stats().works == before.works
        catalog.rebuild()
        rebuilt = catalog.stats()
        assert rebuilt.works == before.works
        assert rebuilt.shards == 1
        assert rebuilt.chroma_vectors == before.chroma_vectors


# --- rebuilding and compaction --------------------------------------------------------------


def test_rebuild_keeps_screening_working(catalog_copy: Path) -> None:
    with Catalog.open(catalog_copy) as catalog:
        catalog.rebuild()
        verdict = catalog.screen(UPLOADS_DIR / "speed_1.15_work_05.ogg")
        assert verdict.verdict == "duplicate"
        assert Path(verdict.matches[0].path).name == "work_05.ogg"


def test_rebuild_reproduces_the_index(catalog_copy: Path) -> None:
    """Rebuilding from the stored fingerprints gives the index the catalog had, so verify()
    stays clean and the statistics do not drift."""
    with Catalog.open(catalog_copy) as catalog:
        before = catalog.stats()
        catalog.rebuild()
        after = catalog.stats()
        assert catalog.verify() == []
        assert (after.works, after.hash_entries, after.chroma_vectors) == (
            before.works,
            before.hash_entries,
            before.chroma_vectors,
        )


def test_compaction_keeps_the_catalog_sound(tmp_path: Path) -> None:
    settings = Settings(max_shards=2)
    with Catalog.open(tmp_path / "db", settings=settings) as catalog:
        for path in sorted(CATALOG_DIR.iterdir()):
            assert [r.status for r in catalog.add_paths([path])] == ["added"]
            assert catalog.stats().shards <= 2
        assert catalog.verify() == []


def test_compaction_keeps_every_work_findable(tmp_path: Path) -> None:
    settings = Settings(max_shards=2)
    with Catalog.open(tmp_path / "db", settings=settings) as catalog:
        for path in sorted(CATALOG_DIR.iterdir()):
            catalog.add_paths([path])
        assert catalog.stats().shards <= 2
        expected = {
            "stretch_0.80_work_01.ogg": "work_01",
            "speed_1.15_work_05.ogg": "work_05",
            "mp3_work_02.mp3": "work_02",
            "excerpt_15s_work_00.ogg": "work_00",
        }
        for upload, work in expected.items():
            verdict = catalog.screen(UPLOADS_DIR / upload)
            assert verdict.verdict == "duplicate", upload
            assert Path(verdict.matches[0].path).stem == work


# --- screening API --------------------------------------------------------------------------


def test_screen_never_raises_for_bad_uploads(catalog: Catalog, tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"\x00" * 1000)
    for path in (bad, tmp_path / "missing.wav", tmp_path):
        verdict = catalog.screen(path)
        assert isinstance(verdict, Verdict)
        assert verdict.verdict is None
        assert verdict.error
        assert verdict.matches == ()
        assert not verdict.flagged


def test_screen_audio_in_memory(catalog: Catalog, work_ids: dict[str, int]) -> None:
    from audiodup.audio import load_audio

    audio = load_audio(UPLOADS_DIR / "stretch_1.25_work_02.ogg")
    verdict = catalog.screen_audio(audio, name="in-memory")
    assert verdict.path == "in-memory"
    assert verdict.flagged
    assert verdict.matches[0].work_id == work_ids["work_02"]
    assert verdict.fingerprint_s >= 0 and verdict.search_s >= 0
    assert verdict.fingerprint_cpu_s > 0 and verdict.search_cpu_s >= 0
    assert verdict.index_load_s >= 0 and verdict.index_load_cpu_s >= 0


def test_empty_catalog_screens_clean(tmp_path: Path) -> None:
    with Catalog.open(tmp_path / "db") as catalog:
        verdict = catalog.screen(UPLOADS_DIR / "mp3_work_02.mp3")
    assert verdict.error is None
    assert verdict.verdict == "clean"
    assert verdict.matches == ()


def _without_timings(verdict: Verdict) -> dict:
    entry = verdict_to_dict(verdict)
    return {k: v for k, v in entry.items() if k not in TIMING_FIELDS}


@pytest.mark.parametrize(
    ("upload", "further_looks"), [("mp3_work_02.mp3", False), ("unrelated_a.ogg", True)]
)
def test_screen_many_in_workers_makes_views_only_for_the_looks_taken(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch, upload: str, further_looks: bool
) -> None:
    """Decoded and analysed in a worker, the upload's further views are made here when screening
    asks for them, as ``Catalog.screen`` makes them: none for a copy its first look decides."""
    path = UPLOADS_DIR / upload
    alone = catalog.screen(path)
    made = []
    view = UploadFingerprints.view

    def counted(self: UploadFingerprints, time_scale: float, hop_phase: float):
        made.append((time_scale, hop_phase))
        return view(self, time_scale, hop_phase)

    monkeypatch.setattr(UploadFingerprints, "view", counted)
    (in_worker,) = catalog.screen_many([path], workers=1, timeout_s=120.0)
    assert _without_timings(in_worker) == _without_timings(alone)
    assert (alone.verdict == "duplicate") is not further_looks
    if further_looks:
        query = UploadFingerprints(load_audio(path, catalog.settings), catalog.settings).query
        assert made == planned_views(query, catalog.settings)
    else:
        assert made == []


def test_a_callers_fingerprint_time_is_the_verdicts(catalog: Catalog) -> None:
    """The service times decoding and fingerprinting itself, before it waits for the catalog:
    the verdict carries that time, not the wait."""
    audio = load_audio(UPLOADS_DIR / "mp3_work_02.mp3", catalog.settings)
    prints = UploadFingerprints(audio, catalog.settings)
    verdict = catalog.screen_audio(audio, prints=prints, fingerprint_time=(1.5, 0.25))
    assert verdict.verdict == "duplicate"
    assert (verdict.fingerprint_s, verdict.fingerprint_cpu_s) == (1.5, 0.25)
