"""The application in-process (Starlette's test client): the contract a router mounted in it
relies on. A stand-in for the review queue (``audiodup.service.review``) is mounted at
``/review`` and ``/v1/reviews``, asks for the review scope with ``require_scope`` and reads the
catalog through ``get_catalog`` from a ``def`` endpoint (another thread than the one that
opened it)."""

import contextlib
import importlib.machinery
import importlib.util
import os
import sys
import types
from pathlib import Path
from typing import Annotated

import pytest

pytest.importorskip("fastapi")

from fastapi import APIRouter, Depends  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from audiodup import Catalog  # noqa: E402
from audiodup.service.app import create_app  # noqa: E402
from audiodup.service.auth import KeyFile, require_scope  # noqa: E402
from audiodup.service.config import load_config  # noqa: E402
from audiodup.service.engine import get_catalog  # noqa: E402


@pytest.fixture
def review_module(monkeypatch):
    pages, api = APIRouter(), APIRouter()

    @pages.get("/")
    def queue(
        key_name: Annotated[str, Depends(require_scope("review"))],
        catalog: Annotated[Catalog, Depends(get_catalog)],
    ) -> dict:
        return {"page": "queue", "by": key_name, "works": len(catalog.works())}

    @api.get("/")
    def decisions(key_name: Annotated[str, Depends(require_scope("review"))]) -> dict:
        return {"decisions": [], "by": key_name}

    module = types.ModuleType("audiodup.service.review")
    module.__spec__ = importlib.machinery.ModuleSpec("audiodup.service.review", None)
    module.router, module.api_router = pages, api
    monkeypatch.setitem(sys.modules, "audiodup.service.review", module)
    # once the real review module was imported (by another test), ``from . import review``
    # finds it as the package's attribute, not in sys.modules: stand in there too
    monkeypatch.setattr(sys.modules["audiodup.service"], "review", module, raising=False)
    return module


def test_a_review_router_is_mounted_with_scopes_and_the_catalog(
    catalog_copy: Path, review_module
) -> None:
    keys = KeyFile(catalog_copy / "service" / "keys.json")
    reviewer, pipeline = keys.create("rev", ["review"]), keys.create("pipe", ["screen"])
    app = create_app(load_config(None, {"db": catalog_copy}, environ={}))
    with TestClient(app) as http:
        page = http.get("/review/", headers={"Authorization": f"Bearer {reviewer}"})
        assert page.status_code == 200
        assert page.json() == {"page": "queue", "by": "rev", "works": 6}
        api = http.get("/v1/reviews/", headers={"Authorization": f"Bearer {reviewer}"})
        assert api.json() == {"decisions": [], "by": "rev"}
        refused = http.get("/review/", headers={"Authorization": f"Bearer {pipeline}"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
        assert http.get("/v1/reviews/").status_code == 401
        assert "/review/" in http.get("/openapi.json").json()["paths"]


def test_without_a_review_module_nothing_is_mounted(catalog_copy: Path) -> None:
    if importlib.util.find_spec("audiodup.service.review") is not None:
        pytest.skip("the review queue is installed: it is mounted")
    app = create_app(load_config(None, {"db": catalog_copy}, environ={}))
    with TestClient(app) as http:
        assert http.get("/review/").status_code == 404
        assert http.get("/readyz").json() == {"status": "ready"}


def test_recording_an_upload_fingerprints_it_once(catalog_copy: Path, manifest, monkeypatch):
    """``POST /v1/uploads`` stores the fingerprint made from the screening's own STFT: the
    request runs the STFTs screening the same audio runs, and no more (issue #16)."""
    import audiodup.spectral as spectral

    upload = Path(__file__).parents[1] / "fixtures" / "audio" / manifest["uploads"][0]["file"]
    stfts = []
    blocks = spectral._magnitude_blocks

    def counted(*args):
        stfts.append(args[2])  # the hop
        return blocks(*args)

    monkeypatch.setattr(spectral, "_magnitude_blocks", counted)
    with Catalog.open(catalog_copy, create=False) as catalog:
        assert catalog.screen(upload).verdict is not None
    screened = list(stfts)
    stfts.clear()
    with _recording_service(catalog_copy) as (_, record):
        answer = record(upload)
    assert answer.status_code == 201, answer.text
    assert screened and stfts == screened


@contextlib.contextmanager
def _recording_service(catalog_dir: Path):
    """The application on ``catalog_dir`` and a function that records an upload through it
    (``POST /v1/uploads`` with a key of the screen scope)."""
    key = KeyFile(catalog_dir / "service" / "keys.json").create("pipe", ["screen"])
    app = create_app(load_config(None, {"db": catalog_dir}, environ={}))
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "audio/ogg"}
    with TestClient(app) as http:
        yield (
            app,
            lambda upload: http.post("/v1/uploads", content=upload.read_bytes(), headers=headers),
        )


def test_a_recorded_upload_s_merge_runs_in_a_child_process(
    catalog_copy: Path, tmp_path, monkeypatch
):
    """A catalog at ``max_shards`` shards: the shard an upload adds makes a merge due, and the
    merger makes it in a child process (neither the engine's own store, which does not merge
    after its commit, nor any thread of the worker): the catalog is back within ``max_shards``,
    sound, and the upload screens as its own work."""
    import soundfile as sf

    from audiodup.settings import DEFAULT_SETTINGS
    from audiodup.store import CatalogStore
    from audiodup.synth import synthesize_work

    with Catalog.open(catalog_copy, create=False) as catalog:
        catalog.store.merge_after_commit = False
        for seed in range(7):
            path = tmp_path / f"small-{seed}.wav"
            sf.write(path, synthesize_work(930 + seed, 8.0, 22050), 22050)
            assert [r.status for r in catalog.add_paths([path])] == ["added"]
        assert len(catalog.store.db.execute("SELECT 1 FROM shards").fetchall()) == 8
    merged_here = []

    def recorded_merge(self, plan):
        merged_here.append(plan)
        raise AssertionError("a merge made in the worker's process")

    monkeypatch.setattr(CatalogStore, "_merge", recorded_merge)
    upload = Path(__file__).parents[1] / "fixtures" / "audio" / "uploads" / "unrelated_a.ogg"
    with _recording_service(catalog_copy) as (app, record):
        answer = record(upload)
        assert answer.status_code == 201, answer.text
        assert answer.json()["status"] == "added"
        work_id = answer.json()["upload"]["work_id"]
        engine = app.state.engine
        assert engine.catalog.store.merge_after_commit is False
        assert engine.merger.wait_idle(600.0)  # a bound against a hang, not a timing
        assert engine.merger.merges >= 1
        assert engine.merger.children and os.getpid() not in engine.merger.children
    assert merged_here == []
    monkeypatch.undo()
    with Catalog.open(catalog_copy, create=False) as catalog:
        shards = catalog.store.db.execute("SELECT COUNT(*) FROM shards").fetchone()[0]
        assert shards <= DEFAULT_SETTINGS.max_shards and catalog.verify() == []
        verdict = catalog.screen(upload)
        assert verdict.verdict == "duplicate" and verdict.matches[0].work_id == work_id
        assert catalog.screen(Path(catalog.work(1).path)).matches[0].work_id == 1


def test_an_upload_the_full_disk_cannot_record_leaves_no_audio(
    catalog_copy: Path, manifest, monkeypatch
) -> None:
    """A 507 records nothing and keeps nothing in ``received/``; audio an earlier upload
    recorded under the same name stays."""
    from audiodup.errors import DiskFullError
    from audiodup.store import CatalogStore

    fixtures = Path(__file__).parents[1] / "fixtures" / "audio"
    first, second = (fixtures / manifest["uploads"][i]["file"] for i in (0, 1))
    received = catalog_copy / "received"
    with _recording_service(catalog_copy) as (_, record):
        assert record(first).status_code == 201
        kept = sorted(received.glob("*.*"))

        def full(self, *args, **kwargs):
            raise DiskFullError("cannot record the upload: the disk is full")

        monkeypatch.setattr(CatalogStore, "record_screened_upload", full)
        for upload in (second, first):
            answer = record(upload)
            assert answer.status_code == 507, answer.text
            assert sorted(received.glob("*.*")) == kept


def test_wrong_secrets_for_one_key_id_are_checked_at_a_bounded_rate(
    catalog_copy: Path, monkeypatch
) -> None:
    """Each wrong secret costs a scrypt, and a key's holder knows its id (a red team: 16
    threads of them kept a core busy). Past 8 in a second for one key id, the next is a 429
    with Retry-After, without a scrypt; a key verified before still passes, an unknown id is a
    401 as ever, and a second later the id is checked again."""
    from audiodup.service import auth

    clock = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    keys = KeyFile(catalog_copy / "service" / "keys.json")
    good = keys.create("pipe", ["screen"])
    wrong = good[:-8] + ("A" * 8 if not good.endswith("A" * 8) else "B" * 8)
    app = create_app(load_config(None, {"db": catalog_copy}, environ={}))
    with TestClient(app) as http:

        def status(key: str) -> tuple[int, str | None]:
            answer = http.get("/v1/jobs/nope", headers={"Authorization": f"Bearer {key}"})
            return answer.status_code, answer.json().get("error", {}).get("code")

        assert status(good)[0] == 404  # verified once: cached
        for _ in range(auth.MAX_FAILED_CHECKS_PER_S):
            assert status(wrong) == (401, "unauthorized")
        assert status(wrong) == (429, "key_checks_throttled")
        answer = http.get("/v1/jobs/nope", headers={"Authorization": f"Bearer {wrong}"})
        assert answer.headers["retry-after"] == "1"
        assert status(good)[0] == 404
        assert status("adk_00000000_" + "A" * 43) == (401, "unauthorized")
        login = http.post("/review/login", data={"key": wrong}, follow_redirects=False)
        assert login.status_code == 429
        clock[0] += 1.5
        assert status(wrong) == (401, "unauthorized")
