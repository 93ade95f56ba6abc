"""API keys and scopes.

A key is ``adk_<id>_<secret>``: ``id`` (8 hex digits) names its record, ``secret`` is 32 random
bytes. The key file (JSON, mode 0600, ``<db>/service/keys.json`` by default) keeps for each key
its name, scopes and an scrypt hash of the whole key with a random salt, never the key: the key
is printed once, by ``audiodup keys create``. Scopes are ``screen`` (screen and record uploads,
read results), ``review`` (the review queue) and ``admin`` (everything).

Verifying a key costs one scrypt (~40 ms); a worker remembers the keys it verified (by their
SHA-256, not the key) until the key file changes, so a revocation takes effect at the next
request. Rate limits are a token bucket per key name shared by every worker process: the
buckets live in one SQLite file (``<db>/service/rate-limits.sqlite``), so a key gets the
configured rate whichever worker its requests reach.

Endpoints ask for a scope with the dependency ``require_scope("screen")``, which returns the
key's name.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ..durable import replace_file
from ..errors import AudiodupError
from ..results import path_text
from .errors import ApiError, forbidden, unauthorized

SCOPES = ("screen", "review", "admin")
KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_KEY = re.compile(r"adk_([0-9a-f]{8})_([A-Za-z0-9_-]{43})")
# scrypt at n=2^14, r=8: 16 MiB and tens of milliseconds per verification
_SCRYPT = {"n": 1 << 14, "r": 8, "p": 1, "maxmem": 64 * 1024 * 1024, "dklen": 32}


# wrong secrets checked for one key id in a second, per process, before the next waits: each
# costs a scrypt, and a key's holder knows its id (a red team: 16 threads of wrong secrets
# kept a core busy)
MAX_FAILED_CHECKS_PER_S = 8


class KeyFileError(AudiodupError):
    """A key name that is invalid, taken or unknown, or a key file that cannot be used."""


class KeyChecksThrottled(AudiodupError):
    """Too many wrong secrets for one key id in the last second: retry in a second."""


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    name: str
    scopes: tuple[str, ...]
    salt: str
    hash: str
    created_at: str
    revoked_at: str | None = None

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


def _hash(key: str, salt: bytes) -> str:
    return hashlib.scrypt(key.encode("ascii"), salt=salt, **_SCRYPT).hex()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class KeyFile:
    """The key file: read (and re-read when it changes), created and changed under a lock,
    replaced atomically."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._stamp: tuple | None = None
        self._loaded = False  # a file was read: its going missing is an error, not "no keys"
        self._records: dict[str, KeyRecord] = {}
        self._verified: dict[str, str] = {}  # sha256(key) -> key id
        self._failed: dict[str, list[float]] = {}  # key id -> when its wrong secrets came
        self._guard = threading.Lock()

    # -- reading -------------------------------------------------------------------------------
    def records(self) -> list[KeyRecord]:
        self._refresh()
        return list(self._records.values())

    def _refresh(self) -> None:
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp is None and self._loaded:
            # deleted or moved away under a running service: every good key would be a 401
            raise KeyFileError(
                f"key file {path_text(self.path)} is missing (it was read before); put it back, "
                "or restart the service to run without it"
            )
        with self._guard:
            if stamp == self._stamp and (stamp is not None or not self._records):
                return
            self._records = {r.key_id: r for r in self._read()} if stamp is not None else {}
            self._verified.clear()
            self._stamp = stamp
            self._loaded = stamp is not None

    def _read(self) -> list[KeyRecord]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return [
                KeyRecord(**{**entry, "scopes": tuple(entry["scopes"])}) for entry in data["keys"]
            ]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyFileError(f"key file {path_text(self.path)} is unreadable ({exc})") from None

    def verify(self, key: str) -> KeyRecord | None:
        """The live record of ``key``, or None (unknown, malformed or revoked)."""
        self._refresh()
        found = _KEY.fullmatch(key)
        if found is None:
            return None
        digest = hashlib.sha256(key.encode("ascii")).hexdigest()
        record = self._records.get(found.group(1))
        if record is None or record.revoked_at is not None:
            return None
        if self._verified.get(digest) == record.key_id:
            return record
        now = time.monotonic()
        with self._guard:
            recent = [t for t in self._failed.get(record.key_id, ()) if now - t < 1.0]
            self._failed[record.key_id] = recent
            if len(recent) >= MAX_FAILED_CHECKS_PER_S:
                raise KeyChecksThrottled(
                    f"too many wrong keys for key id {record.key_id} in the last second"
                )
        if not hmac.compare_digest(_hash(key, bytes.fromhex(record.salt)), record.hash):
            with self._guard:
                self._failed.setdefault(record.key_id, []).append(now)
            return None
        with self._guard:
            self._verified[digest] = record.key_id
        return record

    # -- changing ------------------------------------------------------------------------------
    def create(self, name: str, scopes: list[str]) -> str:
        """Add a key; returns the key itself (shown once, stored only hashed)."""
        if not KEY_NAME.fullmatch(name):
            raise KeyFileError(
                "a key name is 1-64 letters, digits, '.', '_' or '-', starting with a letter "
                "or digit"
            )
        unknown = [s for s in scopes if s not in SCOPES]
        if unknown or not scopes:
            raise KeyFileError(f"scopes are {', '.join(SCOPES)}")
        with self._changing() as records:
            if any(r.name == name and r.revoked_at is None for r in records):
                raise KeyFileError(f"a key named {name} exists (revoke it first)")
            taken = {r.key_id for r in records}
            key_id = secrets.token_hex(4)
            while key_id in taken:
                key_id = secrets.token_hex(4)
            key = f"adk_{key_id}_{secrets.token_urlsafe(32)}"
            salt = secrets.token_bytes(16)
            records.append(
                KeyRecord(
                    key_id=key_id,
                    name=name,
                    scopes=tuple(sorted(set(scopes), key=SCOPES.index)),
                    salt=salt.hex(),
                    hash=_hash(key, salt),
                    created_at=_now(),
                )
            )
        return key

    def revoke(self, name: str) -> int:
        """Revoke every live key of ``name``; returns how many."""
        with self._changing() as records:
            live = [i for i, r in enumerate(records) if r.name == name and r.revoked_at is None]
            if not live:
                raise KeyFileError(f"no live key named {name}")
            for i in live:
                records[i] = KeyRecord(**{**asdict(records[i]), "revoked_at": _now()})
        return len(live)

    @contextlib.contextmanager
    def _changing(self):
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise KeyFileError(f"cannot create {path_text(self.path.parent)}: {exc}") from None
        try:
            with FileLock(str(self.path) + ".lock", timeout=30):
                records = self._read()
                yield records
                text = json.dumps(
                    {
                        "version": 1,
                        "keys": [{**asdict(r), "scopes": list(r.scopes)} for r in records],
                    },
                    indent=2,
                )
                replace_file(
                    self.path,
                    lambda handle: handle.write(text.encode("utf-8")),
                    tmp=self.path.with_name(f".{self.path.name}.tmp"),  # under the lock
                    mode=0o600,
                )
        except OSError as exc:  # a full disk, a lock held too long: the file is as it was
            raise KeyFileError(
                f"cannot write {path_text(self.path)}: {exc.strerror or exc}; the keys are "
                "unchanged"
            ) from None
        self._stamp = None


def _refill(tokens: float, last: float, now: float, rate_per_s: float, burst: float):
    """``(tokens after this request, seconds to wait)`` of a token bucket that held ``tokens``
    at ``last``: one token taken when there is one, else a wait until there is."""
    tokens = min(burst, tokens + max(0.0, now - last) * rate_per_s)
    if tokens >= 1.0:
        return tokens - 1.0, 0.0
    return tokens, (1.0 - tokens) / rate_per_s


BUCKETS_TIMEOUT_S = 10.0


def _switch_to_wal(db, deadline: float) -> None:
    """``PRAGMA journal_mode=WAL`` on a new file. When two processes switch it at the same
    moment, SQLite answers one of them BUSY at once (a lock upgrade it will not wait for), so
    that one tries again until the other is done or ``deadline`` (a ``time.monotonic()``)."""
    import sqlite3

    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class RateLimiter:
    """The token buckets of every worker process, in one SQLite file: one short write
    transaction per request (WAL, no fsync: the buckets need no durability). If the file
    cannot be used the request goes ahead (a broken limiter must not stop the service) and
    the problem is logged once per process."""

    def __init__(self, path: Path, per_minute: float, burst: int):
        self.path = Path(path)
        self.rate_per_s = per_minute / 60.0
        self.burst = float(burst)
        self._local = threading.local()  # one connection per thread
        self._warned = False

    def _db(self):
        import sqlite3

        db = getattr(self._local, "db", None)
        if db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=BUCKETS_TIMEOUT_S, isolation_level=None)
            try:
                _switch_to_wal(db, time.monotonic() + BUCKETS_TIMEOUT_S)
                db.execute("PRAGMA synchronous=OFF")
                db.execute("BEGIN IMMEDIATE")  # the first processes create the table together
                db.execute(
                    "CREATE TABLE IF NOT EXISTS buckets "
                    "(name TEXT PRIMARY KEY, tokens REAL NOT NULL, last REAL NOT NULL)"
                )
                db.execute("COMMIT")
            except BaseException:
                db.close()
                raise
            self._local.db = db
        return db

    def take(self, name: str) -> float:
        """0 when a request may go ahead, else the seconds to wait before the next one."""
        import sqlite3

        try:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                now = time.time()  # one clock for every process (a step back refills nothing)
                row = db.execute(
                    "SELECT tokens, last FROM buckets WHERE name = ?", (name,)
                ).fetchone()
                tokens, last = row if row is not None else (self.burst, now)
                tokens, wait_s = _refill(tokens, last, now, self.rate_per_s, self.burst)
                db.execute(
                    "INSERT INTO buckets VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE "
                    "SET tokens = excluded.tokens, last = excluded.last",
                    (name, tokens, max(now, last)),
                )
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
            return wait_s
        except (sqlite3.Error, OSError) as exc:
            from . import metrics

            metrics.RATE_LIMITS_UNENFORCED.inc()
            if not self._warned:
                self._warned = True
                import logging

                from .logs import event

                event(
                    "rate limits not enforced",
                    logging.WARNING,
                    error=f"{type(exc).__name__}: {exc}",
                )
            return 0.0


def bearer_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return key.strip()


def _check_catalog_folder(request: Request) -> None:
    """A catalog folder that is gone is the catalog's 503: the default key file went with it."""
    config = getattr(request.app.state, "config", None)
    if config is not None and not config.db.is_dir():
        raise ApiError(503, "catalog_error", "the catalog folder cannot be found")


def throttled(exc: KeyChecksThrottled) -> ApiError:
    """429 for a key id whose wrong secrets came too fast (:data:`MAX_FAILED_CHECKS_PER_S`)."""
    return ApiError(429, "key_checks_throttled", f"{exc}; retry in 1 s", {"Retry-After": "1"})


def require_scope(*scopes: str) -> Callable:
    """A FastAPI dependency: the request's key must hold one of ``scopes`` (``admin`` holds
    them all). Returns the key's name; 401 without a valid key, 403 without the scope, 429
    over the key's rate."""
    for scope in scopes:
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}")

    async def dependency(request: Request) -> str:
        key = bearer_key(request)
        if key is None:
            raise unauthorized("send an API key: 'Authorization: Bearer KEY'")
        keys: KeyFile = request.app.state.keys
        try:
            record = await run_in_threadpool(keys.verify, key)
        except KeyFileError:
            _check_catalog_folder(request)
            raise
        except KeyChecksThrottled as exc:
            raise throttled(exc) from None
        if record is None:
            _check_catalog_folder(request)
            raise unauthorized("the API key is unknown or revoked")
        request.state.key_name = record.name
        # the key verified, not its name: a revoked admin key of that name grants nothing
        request.state.key_is_admin = "admin" in record.scopes
        if not any(record.allows(scope) for scope in scopes):
            raise forbidden(f"the key {record.name} lacks the {' or '.join(scopes)} scope")
        wait_s = await run_in_threadpool(request.app.state.rate_limiter.take, record.name)
        if wait_s > 0:
            raise ApiError(
                429,
                "rate_limited",
                f"too many requests for key {record.name}; retry in {wait_s:.1f} s",
                {"Retry-After": str(max(1, int(wait_s + 0.999)))},
            )
        return record.name

    return dependency
