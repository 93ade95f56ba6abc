"""The store's side of the service: an upload recorded with its screening in one transaction
(never one without the other), idempotency keys per client, the filtered ledger, and shard
files read once per store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import audiodup.store as store_module
from audiodup import Catalog
from audiodup.ingest import fingerprint_file
from audiodup.store import Screening

UPLOADS = Path(__file__).resolve().parents[1] / "fixtures" / "audio" / "uploads"


def _screening(client="c", key=None, verdict="clean", request_hash="h") -> Screening:
    return Screening(
        upload_id=0,
        verdict=verdict,
        result=json.dumps({"verdict": verdict}),
        screened_at="2026-01-01T00:00:00.000000+00:00",
        client=client,
        idempotency_key=key,
        request_hash=request_hash,
    )


def _item(name: str, **metadata):
    item = fingerprint_file(UPLOADS / name)
    return store_module.NewWork(**{**item.__dict__, "metadata": metadata})


def test_recorded_with_its_screening_and_idempotent(catalog_copy: Path) -> None:
    with Catalog.open(catalog_copy, create=False) as catalog:
        store = catalog.store
        works_before = len(catalog.works())
        item = _item("unrelated_a.ogg", uploader="u1")
        done, recorded = store.record_screened_upload(item, _screening(key="k1"))
        assert done.status == "added" and recorded.upload_id == done.upload_id
        again, earlier = store.record_screened_upload(item, _screening(key="k1"))
        assert again.status == "present" and earlier == recorded  # nothing new written
        other, _ = store.record_screened_upload(item, _screening(client="d", key="k1"))
        assert other.status == "identical" and other.work_id == done.work_id
        assert len(catalog.works()) == works_before + 1
        found = dict((u.upload_id, s) for u, s in store.find_uploads(uploader="u1"))
        assert set(found) == {done.upload_id, other.upload_id}
        assert found[done.upload_id].idempotency_key == "k1"
        assert store.screening_by_key("c", "k1") == recorded
        assert store.screening_by_key("c", "nope") is None
        assert [u.upload_id for u, _ in store.find_uploads(verdict="duplicate")] == []
        assert store.find_uploads(upload_id=done.upload_id)[0][1] == recorded
        # the fixture works (recorded by index add) have no screening
        first, screening = store.find_uploads(limit=1)[0]
        assert first.upload_id == 1 and screening is None
        assert store.find_uploads(since="2999-01-01") == []
        assert store.screenings([done.upload_id, 1]) == {done.upload_id: recorded}
        assert catalog.check().problems == ()


def test_a_failed_commit_records_nothing(catalog_copy: Path, monkeypatch) -> None:
    with Catalog.open(catalog_copy, create=False) as catalog:
        uploads_before = len(catalog.uploads())
        item = _item("unrelated_b.ogg", uploader="crash")

        def fail(*args, **kwargs):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(catalog.store, "_write_shard", fail)
        with pytest.raises(Exception, match="disk is full"):
            catalog.store.record_screened_upload(item, _screening(key="k2"))
        monkeypatch.undo()
        assert len(catalog.uploads()) == uploads_before  # neither the upload ...
        assert catalog.store.screening_by_key("c", "k2") is None  # ... nor its screening
        assert catalog.check().problems == ()
        done, _ = catalog.store.record_screened_upload(item, _screening(key="k2"))
        assert done.status == "added"


def test_shard_files_are_read_once_per_store(catalog_copy: Path, monkeypatch) -> None:
    reads: list[str] = []
    real = store_module.read_hash_shard

    def counting(path):
        reads.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(store_module, "read_hash_shard", counting)
    with Catalog.open(catalog_copy, create=False) as catalog:
        catalog.indexes()
        first = list(reads)
        assert first
        catalog.store.record_screened_upload(_item("unrelated_a.ogg"), _screening())
        reads.clear()
        indexes = catalog.indexes()  # reloaded: the commit added a shard
        assert len(reads) == 1 and reads[0] not in first
        assert indexes.is_live(max(w.work_id for w in catalog.works()))
