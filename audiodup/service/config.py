"""The service's settings: one frozen :class:`ServiceConfig`, read from a TOML file, then
environment variables, then command-line flags (each later source wins), and validated once at
start: a bad value stops ``audiodup serve`` with one line naming the source and the setting.

TOML (every key optional; ``db`` may be relative to the TOML file's folder)::

    db = "audiodup-catalog"
    host = "127.0.0.1"
    port = 8000
    workers = 2
    max_upload_bytes = 104857600
    dask = "tcp://scheduler:8786"   # screen over a split catalog's shard groups on Dask

Environment variables are ``AUDIODUP_`` + the upper-case key (``AUDIODUP_PORT=9000``); the
catalog folder is ``AUDIODUP_DB`` as for every other command.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..catalog import DEFAULT_CATALOG
from ..errors import AudiodupError
from ..results import path_text, shown_text
from ..settings import MAX_HIT_BUDGET, MIN_HIT_BUDGET

ENV_PREFIX = "AUDIODUP_"
# the config handed to uvicorn's worker processes (they import the app by name)
CONFIG_ENV = "AUDIODUP_SERVICE_CONFIG_JSON"


class ConfigError(AudiodupError):
    """A service setting is missing, of the wrong type or out of range (one line)."""


@dataclass(frozen=True)
class ServiceConfig:
    """Everything ``audiodup serve`` needs. Sizes in bytes, times in seconds.

    ``key_file`` (default ``<db>/service/keys.json``) holds the API keys, hashed. Received audio
    is kept under ``<db>/received/``; async jobs under ``<db>/service/jobs/``."""

    db: Path
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    key_file: Path | None = None
    # limits
    max_upload_bytes: int = 200 * 1024 * 1024  # 413 above this (a 20-min WAV is ~210 MB)
    max_duration_s: float = 20 * 60.0  # 413 above this much audio
    request_timeout_s: float = 300.0  # 504 when a synchronous request takes longer
    rate_limit_per_minute: float = 600.0  # per API key (a token bucket)
    rate_limit_burst: int = 60
    # a body larger than this is screened as an async job (202) unless the client asks for a
    # synchronous answer; asking with ?mode=async works for any size
    async_above_bytes: int = 64 * 1024 * 1024
    job_timeout_s: float = 1800.0
    # a write (an upload recorded, a review decision) waits this long for another process's
    # writer lock (an index add, a rebuild), then is refused with 503 busy: the worker's one
    # engine thread, and the requests queued behind it, never wait longer
    lock_wait_s: float = 10.0
    top_k: int = 5  # matches reported per upload
    log_level: str = "info"
    # a request queued behind more than this many in its worker is refused with 503
    max_queue: int = 64
    # only the look at each upload as it is, as `audiodup screen --quick` (less CPU per clean
    # upload, fewer 2x stretches and 4-5 s excerpts found)
    quick: bool = False
    # hash hits one look-up keeps (None: the default, 300,000), as `audiodup screen --hit-budget`
    hit_budget: int | None = None
    # what of a stereo upload's difference (a multichannel one's differences of two channels)
    # is screened too, as `audiodup screen --stereo-difference`: auto, always or never
    stereo_difference: str = "auto"
    # whether each channel of a stereo (or multichannel) upload is screened alone too, as
    # `audiodup screen --stereo-channels`: auto, always or never
    stereo_channels: str = "auto"
    # a Dask scheduler whose workers hold the catalog's shard groups (a catalog split by
    # `audiodup index shard`), as `audiodup screen --dask`: the workers screen, this service
    # loads no index; None: each service worker screens against the whole catalog itself
    dask: str | None = None

    @property
    def keys_path(self) -> Path:
        return self.key_file if self.key_file is not None else self.db / "service" / "keys.json"

    @property
    def received_dir(self) -> Path:
        return self.db / "received"

    @property
    def incoming_dir(self) -> Path:
        """Where request bodies are spooled while they are received."""
        return self.received_dir / ".incoming"

    @property
    def read_only_incoming_dir(self) -> Path:
        """Where they are spooled for a catalog that cannot be written (a read-only replica
        still screens): a folder of this user's and this catalog's in the temporary folder."""
        import hashlib
        import tempfile

        token = hashlib.sha256(str(self.db).encode("utf-8", "surrogateescape")).hexdigest()[:12]
        # a runtime folder of this user's when there is one (systemd's RuntimeDirectory=, then
        # the login's): in the shared temporary folder another user can make a folder of this
        # name first, and the replica then refuses to spool
        runtime = next(
            (
                os.environ[name]
                for name in ("RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR")
                if is_private_folder(os.environ.get(name, "").split(":")[0])
            ),
            tempfile.gettempdir(),
        )
        return Path(runtime.split(":")[0]) / f"audiodup-{os.getuid()}-incoming-{token}"

    @property
    def read_only_jobs_dir(self) -> Path:
        """The asynchronous jobs' folder for a catalog that cannot be written (beside
        :attr:`read_only_incoming_dir`)."""
        incoming = self.read_only_incoming_dir
        return incoming.with_name(incoming.name.replace("-incoming-", "-jobs-"))

    @property
    def jobs_dir(self) -> Path:
        return self.db / "service" / "jobs"

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in data.items()})

    @classmethod
    def from_json(cls, text: str) -> ServiceConfig:
        return build_config([("the service environment", json.loads(text))])


_LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
STEREO_PART_MODES = ("auto", "always", "never")
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_KEYS = tuple(f.name for f in fields(ServiceConfig))
_INTEGERS = (
    "port",
    "workers",
    "max_upload_bytes",
    "rate_limit_burst",
    "top_k",
    "async_above_bytes",
    "max_queue",
    "hit_budget",
)


def _check(name: str, value: Any) -> Any:
    """``value`` for setting ``name`` converted to its type; ValueError says why not."""
    if name in ("db", "key_file"):
        if not isinstance(value, str | Path) or not str(value).strip():
            raise ValueError("must be a folder or file path")
        # absolute from the start: the ledger records received files under it, and a worker
        # or a later service started elsewhere must find them (symlinks are kept: a rotated
        # key file's link must still be followed)
        return Path(os.path.abspath(value))
    if name == "host":
        if not isinstance(value, str) or not value.strip():
            raise ValueError("must be a host name or address")
        return value.strip()
    if name == "dask":
        if not isinstance(value, str) or not value.strip():
            raise ValueError("must be a scheduler address (tcp://host:8786)")
        return value.strip()
    if name == "quick":
        text = str(value).strip().lower() if isinstance(value, str) else None
        if isinstance(value, bool) or text in _BOOLEANS:
            return value if isinstance(value, bool) else _BOOLEANS[text]
        raise ValueError("must be true or false")
    if name in ("stereo_difference", "stereo_channels"):
        if not isinstance(value, str) or value.strip().lower() not in STEREO_PART_MODES:
            raise ValueError(f"must be one of {', '.join(STEREO_PART_MODES)}")
        return value.strip().lower()
    if name == "log_level":
        if not isinstance(value, str) or value.lower() not in _LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
        return value.lower()
    integer = name in _INTEGERS
    if isinstance(value, bool):
        raise ValueError("must be a number")
    if isinstance(value, str):
        value = value.strip()
        try:
            value = int(value) if integer else float(value)
        except ValueError:
            raise ValueError(f"must be {'a whole' if integer else 'a'} number") from None
    if integer:
        if not isinstance(value, int):
            raise ValueError("must be a whole number")
    elif not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError("must be a number")
    if name == "async_above_bytes":
        if value < 0:
            raise ValueError("must be 0 or more")
    elif name == "hit_budget":
        if not MIN_HIT_BUDGET <= value <= MAX_HIT_BUDGET:
            raise ValueError(f"must be {MIN_HIT_BUDGET} to {MAX_HIT_BUDGET}")
    elif integer and value < 1:
        raise ValueError("must be at least 1")
    elif value <= 0:
        raise ValueError("must be positive")
    if name == "port" and value > 65535:
        raise ValueError("must be at most 65535")
    return float(value) if not integer else value


def build_config(sources: list[tuple[str, Mapping[str, Any]]]) -> ServiceConfig:
    """Merge ``(source name, {setting: value})`` in order (later wins), check every value and
    return the config; :class:`ConfigError` names the source and setting of the first problem."""
    merged: dict[str, Any] = {}
    for source, values in sources:
        for name, value in values.items():
            if value is None:
                continue
            if name not in _KEYS:
                raise ConfigError(f"{source}: unknown setting {shown_text(name)!r}")
            try:
                merged[name] = _check(name, value)
            except ValueError as exc:
                raise ConfigError(f"{source}: {name} {exc} (got {shown_text(value)!r})") from None
    if "db" not in merged:
        raise ConfigError("no catalog folder: give --db, AUDIODUP_DB or db in the config file")
    return ServiceConfig(**merged)


def read_toml(path: Path) -> dict[str, Any]:
    """The settings of a TOML file; ``db`` and ``key_file`` relative to the file's folder."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read {path_text(path)}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path_text(path)} is not valid TOML: {exc}") from None
    for name in ("db", "key_file"):
        if isinstance(data.get(name), str):
            data[name] = str(path.parent / data[name])
    return data


def is_private_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder of this user's that no one else can enter (mode 0700)."""
    if not str(path):
        return False
    try:
        found = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(found.st_mode) and found.st_uid == os.getuid() and not found.st_mode & 0o077


def from_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Settings given as ``AUDIODUP_<NAME>`` environment variables (empty ones are unset)."""
    environ = os.environ if environ is None else environ
    found = {}
    for name in _KEYS:
        value = environ.get(ENV_PREFIX + name.upper(), "")
        if value.strip():
            found[name] = value
    return found


# other AUDIODUP_ variables: the catalog and ffmpeg of every command, the config handed to
# the workers, and the benchmarks' own
_OTHER_VARIABLES = frozenset(
    {"AUDIODUP_DB", "AUDIODUP_FFMPEG", CONFIG_ENV}
    | {f"AUDIODUP_{n}" for n in ("BENCH_DATA", "QUICK", "WORKERS", "FAKE_HIT_RATE")}
)


def unknown_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """The ``AUDIODUP_`` variables that are no setting (a misspelt ``AUDIODUP_PORTT`` would
    otherwise be ignored unseen, where the same name in the TOML file is refused)."""
    environ = os.environ if environ is None else environ
    known = {ENV_PREFIX + name.upper() for name in _KEYS} | _OTHER_VARIABLES
    return sorted(n for n in environ if n.startswith(ENV_PREFIX) and n not in known)


def load_config(
    config_file: Path | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServiceConfig:
    """TOML file < environment < flags; see the module docstring."""
    # the catalog folder defaults as for every command (AUDIODUP_DB is the environment's)
    sources: list[tuple[str, Mapping[str, Any]]] = [("default", {"db": DEFAULT_CATALOG})]
    if config_file is not None:
        sources.append((path_text(config_file), read_toml(config_file)))
    sources.append(("environment", from_environment(environ)))
    sources.append(("command line", dict(flags or {})))
    return build_config(sources)
