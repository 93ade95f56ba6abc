"""The service's configuration (TOML < environment < flags, checked at start) and its API keys
(hashed in the key file, scopes, revocation, rate limits), without a server."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from cli_runner import run_main  # noqa: E402

from audiodup import Catalog  # noqa: E402
from audiodup.service.auth import KeyFile, KeyFileError, RateLimiter  # noqa: E402
from audiodup.service.config import ConfigError, ServiceConfig, load_config  # noqa: E402
from audiodup.settings import DEFAULT_SETTINGS  # noqa: E402


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "audiodup.toml"
    path.write_text(text)
    return path


def test_flags_beat_environment_beat_toml(tmp_path):
    toml = _toml(tmp_path, 'db = "cat"\nport = 8100\nworkers = 3\nhost = "0.0.0.0"\ntop_k = 7\n')
    env = {"AUDIODUP_PORT": "8200", "AUDIODUP_WORKERS": "2"}
    config = load_config(toml, {"port": 8300, "host": None}, environ=env)
    assert config.port == 8300  # flag
    assert config.workers == 2  # environment over TOML
    assert config.host == "0.0.0.0"  # TOML (the unset flag does not count)
    assert config.top_k == 7
    assert config.db == tmp_path / "cat"  # relative to the TOML file's folder
    assert config.keys_path == tmp_path / "cat" / "service" / "keys.json"


def test_defaults_and_round_trip(tmp_path):
    config = load_config(None, {"db": tmp_path}, environ={})
    assert (config.host, config.port, config.workers) == ("127.0.0.1", 8000, 1)
    assert ServiceConfig.from_json(config.to_json()) == config
    assert load_config(None, {}, environ={"AUDIODUP_DB": str(tmp_path)}).db == tmp_path
    assert load_config(None, {}, environ={}).db == Path("audiodup-catalog").resolve()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ({"flags": {"port": 0}}, "command line: port must be at least 1"),
        ({"flags": {"port": 70000}}, "port must be at most 65535"),
        ({"env": {"AUDIODUP_WORKERS": "two"}}, "environment: workers must be a whole number"),
        ({"toml": "max_upload_bytes = -5\n"}, "max_upload_bytes must be at least 1"),
        ({"toml": "request_timeout_s = 0\n"}, "request_timeout_s must be positive"),
        ({"toml": 'log_level = "loud"\n'}, "log_level must be one of"),
        ({"toml": "colour = 1\n"}, "unknown setting 'colour'"),
        ({"toml": "port = [\n"}, "is not valid TOML"),
        ({"toml": "workers = true\n"}, "workers must be a number"),
        ({"env": {"AUDIODUP_QUICK": "maybe"}}, "environment: quick must be true or false"),
        ({"toml": "quick = 1\n"}, "quick must be true or false"),
    ],
)
def test_bad_settings_are_one_clear_line(tmp_path, source, expected):
    toml = _toml(tmp_path, source["toml"]) if "toml" in source else None
    with pytest.raises(ConfigError) as info:
        load_config(toml, source.get("flags", {}), environ=source.get("env", {}))
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_serve_refuses_a_bad_config_in_one_line(tmp_path, monkeypatch, capsys):
    toml = _toml(tmp_path, "workers = 0\n")
    code, _, err = run_main(
        ["serve", "--db", str(tmp_path), "--config", str(toml)], monkeypatch, capsys
    )
    assert code == 2
    assert err.strip().startswith("error: ") and "workers must be at least 1" in err
    assert len(err.strip().splitlines()) == 1


def test_serve_refuses_a_missing_catalog(tmp_path, monkeypatch, capsys):
    code, _, err = run_main(["serve", "--db", str(tmp_path / "none")], monkeypatch, capsys)
    assert code == 2 and "no catalog at" in err


def test_keys_are_stored_hashed_and_checked(tmp_path):
    keys = KeyFile(tmp_path / "keys.json")
    key = keys.create("pipeline", ["screen"])
    text = (tmp_path / "keys.json").read_text()
    secret = key.split("_", 2)[2]  # adk_<id>_<secret>; the secret may itself hold "_"
    assert key not in text and secret not in text
    assert (tmp_path / "keys.json").stat().st_mode & 0o077 == 0
    record = keys.verify(key)
    assert record is not None and record.name == "pipeline"
    assert record.allows("screen") and not record.allows("review")
    assert keys.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert keys.verify("adk_00000000_" + "x" * 43) is None
    assert keys.verify("not a key") is None
    admin = keys.create("root", ["admin"])
    assert all(keys.verify(admin).allows(s) for s in ("screen", "review", "admin"))
    with pytest.raises(KeyFileError, match="exists"):
        keys.create("root", ["screen"])
    with pytest.raises(KeyFileError, match="key name"):
        keys.create("../etc", ["screen"])


def test_revocation_reaches_a_running_reader(tmp_path):
    writer, reader = KeyFile(tmp_path / "keys.json"), KeyFile(tmp_path / "keys.json")
    key = writer.create("ops", ["review"])
    assert reader.verify(key) is not None  # verified once, then remembered
    assert writer.revoke("ops") == 1
    assert reader.verify(key) is None  # the file changed: the memory is dropped
    data = json.loads((tmp_path / "keys.json").read_text())
    assert data["keys"][0]["revoked_at"]
    with pytest.raises(KeyFileError, match="no live key"):
        writer.revoke("ops")


def test_keys_cli_prints_the_key_once(tmp_path, monkeypatch, capsys):
    db = str(tmp_path / "db")
    Catalog.open(db).close()  # keys live in a catalog (test_cli: none is written elsewhere)
    code, out, err = run_main(
        ["keys", "create", "ci", "--scope", "screen", "--db", db], monkeypatch, capsys
    )
    assert code == 0
    key = out.strip()
    assert key.startswith("adk_") and key not in err
    code, out, _ = run_main(["keys", "list", "--db", db], monkeypatch, capsys)
    assert code == 0 and "ci" in out and "screen" in out and key not in out
    code, out, _ = run_main(["keys", "revoke", "ci", "--db", db], monkeypatch, capsys)
    assert code == 0 and "revoked 1 key" in out
    code, _, err = run_main(["keys", "revoke", "ci", "--db", db], monkeypatch, capsys)
    assert code == 2 and "no live key named ci" in err


def test_rate_limiter_token_bucket(tmp_path):
    limiter = RateLimiter(tmp_path / "limits.sqlite", per_minute=60, burst=3)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("a")
    assert 0 < wait <= 1.0
    assert limiter.take("b") == 0.0  # buckets are per key


def test_an_unreadable_rate_limit_file_lets_requests_through_and_counts_them(tmp_path):
    """A broken limiter must not stop the service; what it lets through is counted."""
    from audiodup.service import metrics

    damaged = tmp_path / "limits.sqlite"
    damaged.write_bytes(b"not a database" * 300)
    limiter = RateLimiter(damaged, per_minute=60, burst=1)
    before = metrics.RATE_LIMITS_UNENFORCED._value.get()
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert metrics.RATE_LIMITS_UNENFORCED._value.get() == before + 3


def test_rate_limits_are_shared_by_every_worker_process(tmp_path):
    """Two processes (the workers) draw from one bucket per key: the burst is the key's,
    not each worker's."""
    import multiprocessing

    path = tmp_path / "limits.sqlite"
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        waits = pool.starmap(_take_many, [(path, 5), (path, 5)])
    granted = sum(1 for w in waits[0] + waits[1] if w == 0.0)
    assert granted == 4  # a burst of 4 (at 1 a minute, nothing refills during the test)


def _take_many(path, count: int) -> list[float]:
    limiter = RateLimiter(path, per_minute=1, burst=4)
    return [limiter.take("shared") for _ in range(count)]


def test_limiters_that_open_a_new_bucket_file_together_all_enforce_the_limit(tmp_path):
    """Switching a new file to WAL from several connections at once: SQLite answers some of
    them BUSY at once, without waiting. Before it was retried, about 1 round in 10 left a
    limiter failing open ("rate limits not enforced")."""
    import threading

    for round_number in range(30):
        path = tmp_path / f"limits-{round_number}.sqlite"
        limiters = [RateLimiter(path, per_minute=1, burst=4) for _ in range(4)]
        start = threading.Barrier(len(limiters))
        errors: list[Exception] = []

        def open_buckets(limiter: RateLimiter, start=start, errors=errors) -> None:
            start.wait()
            try:
                limiter._db()
            except Exception as exc:  # the test reports any failure
                errors.append(exc)

        threads = [threading.Thread(target=open_buckets, args=(lim,)) for lim in limiters]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert sum(limiter.take("shared") == 0.0 for limiter in limiters * 2) == 4


def test_a_rate_limiter_that_cannot_store_lets_requests_through(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    limiter = RateLimiter(blocker / "limits.sqlite", per_minute=1, burst=1)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]


def test_the_readme_example_config_is_valid(tmp_path):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    config = load_config(_toml(tmp_path, block), {}, environ={})
    assert config.workers == 2 and config.db == tmp_path / "audiodup-catalog"
    # the keys where 'audiodup keys create --db DIR' writes them
    assert config.key_file is None and config.keys_path == config.db / "service" / "keys.json"


def test_quick_from_toml_environment_and_engine(tmp_path, pristine_catalog_dir):
    """``quick`` (TOML bool, environment true/false) makes the engine's catalog take only the
    look at each upload as it is, as ``audiodup screen --quick``."""
    from audiodup.service.engine import Engine

    assert load_config(None, {"db": tmp_path}, environ={}).quick is False
    assert load_config(_toml(tmp_path, "quick = true\n"), {"db": tmp_path}, environ={}).quick
    env = {"AUDIODUP_QUICK": "false"}
    assert not load_config(_toml(tmp_path, "quick = true\n"), {"db": tmp_path}, environ=env).quick
    config = load_config(None, {"db": pristine_catalog_dir, "quick": True}, environ={})
    assert ServiceConfig.from_json(config.to_json()) == config
    for quick in (False, True):
        engine = Engine(dataclasses.replace(config, quick=quick))
        engine.open()
        settings = engine.catalog.settings
        assert (settings.query_view_scales == ()) is quick
        assert (settings.short_query_phases == 1) is quick
        engine.close()


def test_an_opened_engine_reads_its_catalog_files_ahead(pristine_catalog_dir, monkeypatch):
    """A worker's first requests would page the index files in by random reads: opening the
    engine starts the read-ahead (``Catalog.warm_files``)."""
    from audiodup.catalog import Catalog
    from audiodup.service.engine import Engine

    warmed = []
    monkeypatch.setattr(Catalog, "warm_files", lambda self: warmed.append(self.root))
    engine = Engine(load_config(None, {"db": pristine_catalog_dir}, environ={}))
    engine.open()
    try:
        assert engine.ready and warmed == [engine.catalog.root]
    finally:
        engine.close()


def test_an_engine_whose_files_cannot_be_listed_opens_all_the_same(
    pristine_catalog_dir, monkeypatch
):
    from audiodup.errors import CatalogBusyError
    from audiodup.service.engine import Engine
    from audiodup.store import CatalogStore

    def busy(self, budget_bytes, shard_ids=None):
        raise CatalogBusyError("the catalog is busy")

    monkeypatch.setattr(CatalogStore, "files_to_warm", busy)
    engine = Engine(load_config(None, {"db": pristine_catalog_dir}, environ={}))
    engine.open()
    try:
        assert engine.ready and engine.problem is None
    finally:
        engine.close()


def test_the_route_label_keeps_the_prefix_of_an_included_router() -> None:
    """Logs and metrics name a route by its template: a review route, matched inside a router
    included under a prefix, is labelled with that prefix, never with the client's path."""
    from fastapi.routing import APIRoute

    from audiodup.service.app import route_template

    decisions = APIRoute("/{upload_id}/decisions", endpoint=lambda upload_id: None)
    export = APIRoute("/export", endpoint=lambda: None)
    screen = APIRoute("/v1/screen", endpoint=lambda: None)
    assert (
        route_template({"route": decisions, "path": "/v1/reviews/7/decisions"})
        == "/v1/reviews/{upload_id}/decisions"
    )
    assert route_template({"route": export, "path": "/review/export"}) == "/review/export"
    assert route_template({"route": export, "path": "/v1/reviews/export"}) == "/v1/reviews/export"
    assert route_template({"route": screen, "path": "/v1/screen"}) == "/v1/screen"
    assert route_template({"path": "/v1/reviews/%2e%2e/keys"}) == "<unmatched>"


def test_hit_budget_from_toml_environment_and_engine(tmp_path, pristine_catalog_dir):
    """``hit_budget`` sets the engine's look-up budget, as ``audiodup screen --hit-budget``;
    outside 10,000 to 100,000,000 it is refused with the source named."""
    from audiodup.service.engine import Engine

    assert load_config(None, {"db": tmp_path}, environ={}).hit_budget is None
    toml = _toml(tmp_path, "hit_budget = 1000000\n")
    assert load_config(toml, {"db": tmp_path}, environ={}).hit_budget == 1_000_000
    env = {"AUDIODUP_HIT_BUDGET": "2000000"}
    assert load_config(toml, {"db": tmp_path}, environ=env).hit_budget == 2_000_000
    for bad in ("hit_budget = 9999\n", "hit_budget = 100000001\n", 'hit_budget = "lots"\n'):
        with pytest.raises(ConfigError, match="hit_budget must be"):
            load_config(_toml(tmp_path, bad), {"db": tmp_path}, environ={})
    config = load_config(None, {"db": pristine_catalog_dir, "hit_budget": 50_000}, environ={})
    assert ServiceConfig.from_json(config.to_json()) == config
    for budget, expected in ((None, DEFAULT_SETTINGS.max_query_hits), (50_000, 50_000)):
        engine = Engine(dataclasses.replace(config, hit_budget=budget))
        engine.open()
        assert engine.catalog.settings.max_query_hits == expected
        engine.close()


def test_an_engine_connecting_to_its_cluster_leaves_the_lock_free(
    pristine_catalog_dir, monkeypatch
):
    """While ``Engine.open`` waits for its Dask scheduler (up to a quarter of the request
    time), the routers that take the engine's lock (the review pages) are not held up; the
    catalog is published only once connected."""
    import threading

    from audiodup.service import engine as engine_module

    connecting, connected = threading.Event(), threading.Event()

    def slow_connect(catalog, config):
        connecting.set()
        assert connected.wait(60), "the test never let the connection finish"
        return None

    monkeypatch.setattr(engine_module, "sharded_screening", slow_connect)
    config = load_config(
        None, {"db": pristine_catalog_dir, "dask": "tcp://127.0.0.1:1"}, environ={}
    )
    engine = engine_module.Engine(config)
    opening = threading.Thread(target=engine.open)
    opening.start()
    try:
        assert connecting.wait(60)
        took = engine.lock.acquire(timeout=30)
        assert took, "the engine's lock was held while connecting"
        engine.lock.release()
        assert engine._catalog is None and not engine.ready
    finally:
        connected.set()
        opening.join(60)
    try:
        assert engine.ready and engine.catalog.root == pristine_catalog_dir
    finally:
        engine.close()


def test_stereo_parts_from_toml_environment_and_engine(tmp_path, pristine_catalog_dir):
    """``stereo_difference`` and ``stereo_channels`` set what of a stereo upload the engine
    screens beside its mix, as ``audiodup screen --stereo-difference / --stereo-channels``;
    another value is refused with the key named."""
    from audiodup.service.engine import Engine

    for key in ("stereo_difference", "stereo_channels"):
        assert getattr(load_config(None, {"db": tmp_path}, environ={}), key) == "auto"
        toml = _toml(tmp_path, f'{key} = "never"\n')
        assert getattr(load_config(toml, {"db": tmp_path}, environ={}), key) == "never"
        env = {f"AUDIODUP_{key.upper()}": "Always"}
        assert getattr(load_config(toml, {"db": tmp_path}, environ=env), key) == "always"
        with pytest.raises(ConfigError, match=f"{key} must be one of auto, always, never"):
            load_config(_toml(tmp_path, f'{key} = "sometimes"\n'), {"db": tmp_path}, environ={})
    config = load_config(None, {"db": pristine_catalog_dir, "stereo_channels": "never"}, environ={})
    engine = Engine(config)
    engine.open()
    assert engine.catalog.settings.stereo_channels == "never"
    assert engine.catalog.settings.stereo_difference == "auto"
    engine.close()
