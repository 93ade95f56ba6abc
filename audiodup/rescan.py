"""Rescan a catalog against itself: duplicate pairs, clusters, likely originals, uploaders.

Every work is re-decoded from its file and screened as a query against the whole catalog (the
self-match is ignored). When the file is gone or changed, the stored catalog fingerprint is the
query instead, and the evidence says so. Per-work results are written to
``<catalog>/rescan.sqlite`` as they complete, so a killed run resumes where it stopped, and
incremental runs (``new_only``, ``since``) merge with earlier results. The report is always
built from the stored results, so it does not depend on how, where or in how many pieces the
screening ran:

1. pairs: one per pair of works, from whichever direction gave the stronger evidence;
   ``duplicate`` pairs and ``suspect`` pairs are listed apart;
2. clusters: connected components of the duplicate pairs (union-find);
3. per cluster the likely original (the single earliest ``uploaded_at``; without dates it is
   unknown, never guessed) and every other member's tempo ratio and pitch shift relative to it,
   composed along duplicate pairs when the two were not matched directly;
4. uploaders ranked by how many of their works are copies of another uploader's original.

>>> from audiodup import Catalog
>>> from audiodup.rescan import rescan
>>> with Catalog.open("my-catalog") as catalog:                  # doctest: +SKIP
...     report = rescan(catalog, workers=4)
...     print(len(report.clusters), report.uploaders[:3])
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from filelock import FileLock, Timeout

from .audio import load_audio
from .catalog import Catalog
from .errors import AudiodupError, CatalogError, WorkNotFoundError
from .fingerprint import Fingerprint, fingerprint_audio
from .metadata import parse_timestamp
from .results import Match, Section, WorkInfo, to_jsonable
from .settings import Settings
from .store import catalog_error, reports_errors, use_write_ahead_log
from .verdict import decide
from .workers import map_with_timeout

RESULTS_FILE = "rescan.sqlite"
LOCK_FILE = "rescan.lock"
RESULT_FORMAT = "1"

Mode = Literal["all", "new", "since"]
PairLabel = Literal["duplicate", "suspect"]
QuerySource = Literal["file", "stored_fingerprint"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT, mode TEXT NOT NULL, since TEXT,
    targets TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT,
    status TEXT NOT NULL DEFAULT 'running');
CREATE TABLE IF NOT EXISTS results (
    work_id INTEGER PRIMARY KEY, sha256 TEXT NOT NULL, run_id INTEGER NOT NULL,
    scanned_at TEXT NOT NULL, result TEXT NOT NULL);
"""


# -- typed results ---------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkScan:
    """One work screened against the catalog: its matches other than itself."""

    work_id: int
    query_source: QuerySource
    matches: tuple[Match, ...] = ()
    note: str | None = None  # why the stored fingerprint was the query
    error: str | None = None


@dataclass(frozen=True)
class Pair:
    """Two works that match. ``evidence`` is the match found when ``query_work_id`` was
    screened against the catalog (``evidence.work_id`` is ``reference_work_id``): its tempo
    ratio is query tempo / reference tempo, its pitch shift query minus reference."""

    work_ids: tuple[int, int]  # ascending
    label: PairLabel
    query_work_id: int
    query_path: str
    query_title: str | None
    reference_work_id: int  # evidence.path and evidence.title name it
    query_source: QuerySource
    found_both_ways: bool  # each work's screening found the other
    evidence: Match
    note: str | None = None


@dataclass(frozen=True)
class Member:
    work_id: int
    path: str
    title: str | None
    artist: str | None
    uploader: str | None
    uploaded_at: str | None
    duration_s: float
    metadata: dict


@dataclass(frozen=True)
class Alteration:
    """How ``work_id`` differs from ``relative_to`` (the original, or the lowest work id when the
    original is unknown). ``via`` is the chain of duplicate pairs used, from ``relative_to`` to
    ``work_id``; longer than two when the transform was composed."""

    work_id: int
    relative_to: int
    tempo_ratio: float  # tempo of work_id / tempo of relative_to
    pitch_shift_semitones: float  # pitch of work_id minus pitch of relative_to
    via: tuple[int, ...]
    description: str


@dataclass(frozen=True)
class Cluster:
    cluster_id: int
    members: tuple[Member, ...]
    original: int | None
    original_reason: str
    alterations: tuple[Alteration, ...]

    @property
    def work_ids(self) -> tuple[int, ...]:
        return tuple(m.work_id for m in self.members)


@dataclass(frozen=True)
class UploaderRank:
    """An uploader's part in the clusters. ``copies`` counts their works that are copies of
    another uploader's original (or of an original without uploader)."""

    uploader: str
    works: int  # works of this uploader in the catalog
    copies: int
    share: float  # copies / works
    copies_duration_s: float
    catalog_duration_s: float
    originals_copied: int  # their works that others copied
    self_copies: int  # copies of their own originals
    unattributed: int  # in clusters whose original is unknown
    copy_work_ids: tuple[int, ...]


@dataclass(frozen=True)
class WorkNote:
    work_id: int
    path: str
    note: str


@dataclass(frozen=True)
class RescanReport:
    catalog: str
    works: int  # live works in the catalog
    scanned: int  # of those, screened (by this or earlier runs)
    unscanned: tuple[int, ...]
    clusters: tuple[Cluster, ...]
    pairs: tuple[Pair, ...]  # duplicate pairs
    suspect_pairs: tuple[Pair, ...]
    uploaders: tuple[UploaderRank, ...]
    fallbacks: tuple[WorkNote, ...]  # works screened with their stored fingerprint
    errors: tuple[WorkNote, ...]


@dataclass(frozen=True)
class RunSummary:
    run_id: int | None  # None when there was nothing to screen
    mode: Mode
    resumed: bool
    targets: int  # works this run screens in total
    already_done: int  # of those, done before this invocation (resumed runs)
    screened: int  # screened by this invocation


def report_to_dict(report: RescanReport) -> dict:
    """The JSON form of a report (``to_jsonable`` of the dataclasses)."""
    return to_jsonable(report)


# -- per-work screening (runs in worker processes, threads or Dask workers) -----------------
def screen_work(
    catalog: Catalog,
    work_id: int,
    path: str | Path | None = None,
    *,
    file_problem: str | None = None,
) -> WorkScan:
    """Screen one catalog work against the catalog, without its self-match.

    ``path`` is where to read the work's file [default: its stored path]. The file's decoded
    audio must still be the audio that was indexed; otherwise the stored fingerprint is used.
    ``file_problem`` skips the file (it could not be decoded elsewhere) and says why.
    """
    try:
        query, source, note = work_query(catalog, work_id, path, file_problem=file_problem)
    except CatalogError as exc:
        return WorkScan(work_id, "stored_fingerprint", error=str(exc))
    matches = tuple(m for m in catalog.match_fingerprint(query) if m.work_id != work_id)
    return WorkScan(work_id, source, matches, note=note)


def work_query(
    catalog: Catalog,
    work_id: int,
    path: str | Path | None = None,
    *,
    file_problem: str | None = None,
) -> tuple[Fingerprint, QuerySource, str | None]:
    """A catalog work as a query: ``(fingerprint, source, note)``. The file is re-decoded and
    fingerprinted with the query recipe; when it is gone or its audio changed (or
    ``file_problem`` names a problem found elsewhere), the stored catalog fingerprint stands
    in and ``note`` says why.

    Raises ``CatalogError`` when the work is not in the catalog or has no usable fingerprint.
    """
    work = catalog.store.work(work_id)
    if work is None:
        raise WorkNotFoundError(f"work {work_id} is no longer in the catalog")
    if file_problem is None:
        try:
            audio = load_audio(Path(work.path if path is None else path), catalog.settings)
            if audio.sha256 != work.sha256:
                raise AudiodupError("the file's audio changed since it was indexed")
            return fingerprint_audio(audio, catalog.settings, query=True), "file", None
        except AudiodupError as exc:
            file_problem = str(exc)
        except OSError as exc:  # its folder cannot be entered now, say
            file_problem = f"cannot read: {exc.strerror or exc}"
    note = f"file unavailable at {work.path} ({file_problem}); screened with the stored fingerprint"
    return catalog.store.fingerprint(work_id), "stored_fingerprint", note


_LOCAL = threading.local()


def _worker_catalog(root: str, settings: Settings) -> Catalog:
    """One open catalog per thread (SQLite connections stay in their thread) and root."""
    cache = getattr(_LOCAL, "catalogs", None)
    if cache is None:
        cache = _LOCAL.catalogs = {}
    key = (root, settings)
    if key not in cache:
        cache[key] = Catalog.open(root, create=False, settings=settings)
    return cache[key]


def screen_work_task(root: str, settings: Settings, work_id: int, path: str) -> WorkScan:
    """Picklable task for worker processes and Dask: never raises, errors come back in the
    scan."""
    try:
        return screen_work(_worker_catalog(root, settings), work_id, path)
    except AudiodupError as exc:
        return WorkScan(work_id, "file", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - one bad work must not stop a rescan
        return WorkScan(work_id, "file", error=f"{type(exc).__name__}: {str(exc)[:200]}")


def _screen_job(job: tuple[str, Settings, int, str]) -> WorkScan:
    return screen_work_task(*job)


# -- persisted results -------------------------------------------------------------------------
class RescanStore:
    """Per-work results and run bookkeeping in ``<catalog>/rescan.sqlite``."""

    @reports_errors("store rescan results in")
    def __init__(self, root: Path, settings: Settings):
        self.root = Path(root)
        self.db = sqlite3.connect(str(self.root / RESULTS_FILE), timeout=60.0, isolation_level=None)
        use_write_ahead_log(self.db)
        self.db.executescript(_SCHEMA)
        identity = json.dumps({"recipe": settings.recipe, "format": RESULT_FORMAT})
        row = self.db.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()
        if row is None or row[0] != identity:
            # results of another recipe or format say nothing about this catalog
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("DELETE FROM results")
            self.db.execute("DELETE FROM runs")
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('identity', ?)", (identity,))
            self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

    @reports_errors("store rescan results in")
    def open_run(self, mode: Mode, since: str | None, targets: Callable[[], list[int]]):
        """Resume the unfinished run with these parameters, or start one with ``targets()``.
        Returns ``(run_id, targets, done_ids, resumed)``; ``run_id`` is None when ``targets()``
        is empty."""
        row = self.db.execute(
            "SELECT run_id, targets FROM runs WHERE status = 'running' AND mode = ? "
            "AND since IS ? ORDER BY run_id DESC LIMIT 1",
            (mode, since),
        ).fetchone()
        if row is not None:
            run_id, ids = int(row[0]), json.loads(row[1])
            done = {
                r[0]
                for r in self.db.execute("SELECT work_id FROM results WHERE run_id = ?", (run_id,))
            }
            return run_id, ids, done, True
        ids = targets()
        if not ids:
            return None, [], set(), False  # nothing to do: no run to record
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("UPDATE runs SET status = 'abandoned' WHERE status = 'running'")
        cursor = self.db.execute(
            "INSERT INTO runs (mode, since, targets, started_at) VALUES (?, ?, ?, ?)",
            (mode, since, json.dumps(ids), _now()),
        )
        self.db.execute("COMMIT")
        return int(cursor.lastrowid), ids, set(), False

    @reports_errors("store rescan results in")
    def save(self, run_id: int, sha256: str, scan: WorkScan) -> None:
        """Store one work's result at once (its own transaction), replacing older ones."""
        self.db.execute(
            "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?)",
            (scan.work_id, sha256, run_id, _now(), json.dumps(to_jsonable(scan))),
        )

    @reports_errors("store rescan results in")
    def finish(self, run_id: int) -> None:
        self.db.execute(
            "UPDATE runs SET status = 'finished', finished_at = ? WHERE run_id = ?",
            (_now(), run_id),
        )

    def scanned_ids(self) -> set[int]:
        return {r[0] for r in self.db.execute("SELECT work_id FROM results")}

    def results(self, works: Iterable[WorkInfo]) -> dict[int, WorkScan]:
        """Stored results of ``works`` whose audio is still the audio that was screened."""
        sha = {w.work_id: w.sha256 for w in works}
        out = {}
        for work_id, stored_sha, text in self.db.execute(
            "SELECT work_id, sha256, result FROM results ORDER BY work_id"
        ):
            if sha.get(work_id) != stored_sha:
                continue  # the work was removed, or its id now names other audio
            try:
                out[work_id] = _scan_from_dict(json.loads(text))
            except (KeyError, TypeError, ValueError):
                continue  # written by another version: the work counts as not screened
        return out


def _scan_from_dict(data: dict) -> WorkScan:
    return WorkScan(
        work_id=data["work_id"],
        query_source=data["query_source"],
        matches=tuple(_match_from_dict(m) for m in data["matches"]),
        note=data.get("note"),
        error=data.get("error"),
    )


def _match_from_dict(data: dict) -> Match:
    known = {f.name for f in fields(Match)}
    values = {k: v for k, v in data.items() if k in known}
    values["sections"] = tuple(Section(**s) for s in data.get("sections", ()))
    for key, value in values.items():
        if value is None and key not in ("title", "chroma_similarity", "matched_peaks"):
            values[key] = math.nan  # non-finite floats are stored as null
    return Match(**values)


# -- running -------------------------------------------------------------------------------
ProgressCallback = Callable[[int, int, WorkScan | None], None]


def run_rescan(
    catalog: Catalog,
    *,
    workers: int = 1,
    new_only: bool = False,
    since: datetime | str | None = None,
    dask: str | object | None = None,
    timeout_s: float | None = None,
    on_progress: ProgressCallback | None = None,
) -> RunSummary:
    """Screen the works this run is about and store each result as it completes.

    Parameters
    ----------
    catalog
        An open catalog.
    workers
        Local processes (ignored with ``dask``).
    timeout_s
        Seconds allowed to decode and screen one work in a local worker process; a work that
        runs over, or whose worker crashes, is screened with its stored fingerprint instead.
    new_only
        Only works that have no rescan result yet (added since the last rescan).
    since
        Only works added to the catalog at or after this date (ISO 8601 text or datetime).
    dask
        A Dask scheduler address (``tcp://host:8786``) or a ``distributed.Client``; every worker
        must see the catalog directory and the audio files at the same absolute paths.
    on_progress
        ``on_progress(done, total, scan)``: once with ``scan=None`` before the first work, then
        after every work.

    An unfinished run with the same ``new_only``/``since`` is resumed: only its remaining works
    are screened.
    """
    if new_only and since is not None:
        raise AudiodupError("choose either new_only or since, not both")
    mode: Mode = "new" if new_only else ("since" if since is not None else "all")
    since_dt = parse_timestamp(since) if isinstance(since, str) else since
    if since_dt is not None and since_dt.tzinfo is None:
        since_dt = since_dt.replace(tzinfo=UTC)
    since_text = since_dt.isoformat() if since_dt is not None else None
    root = catalog.store.root
    lock = FileLock(str(root / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise CatalogError(f"another rescan of {root} is running") from None
    except OSError as exc:  # a read-only or full catalog folder
        raise catalog_error(exc, root, "rescan") from None
    store = RescanStore(root, catalog.settings)
    try:
        live = {w.work_id: w for w in catalog.works()}

        def targets() -> list[int]:
            if mode == "new":
                scanned = store.scanned_ids()
                return [w for w in live if w not in scanned]
            if mode == "since":
                return [w for w, info in live.items() if parse_timestamp(info.added_at) >= since_dt]
            return list(live)

        run_id, ids, done, resumed = store.open_run(mode, since_text, targets)
        todo = [w for w in ids if w in live and w not in done]
        total, finished = len(ids), len(ids) - len(todo)
        if on_progress is not None:
            on_progress(finished, total, None)
        jobs = [(w, _absolute(live[w].path)) for w in todo]
        if dask is not None:
            scans = _run_dask(dask, root, catalog.settings, jobs)
        elif (workers > 1 and len(jobs) > 1) or timeout_s is not None:
            scans = _run_local(catalog, workers, timeout_s, jobs)
        else:
            scans = (screen_work(catalog, w, path) for w, path in jobs)
        screened = 0
        try:
            for scan in scans:
                store.save(run_id, live[scan.work_id].sha256, scan)
                screened += 1
                if on_progress is not None:
                    on_progress(finished + screened, total, scan)
        finally:
            close = getattr(scans, "close", None)
            if close is not None:
                close()  # stops worker pools at once on errors and Ctrl-C
        if run_id is not None:
            store.finish(run_id)
        return RunSummary(run_id, mode, resumed, total, finished, screened)
    finally:
        store.close()
        lock.release()


def _absolute(path: str) -> str:
    """Stored paths are as given at ``index add``; workers elsewhere need absolute ones."""
    return str(Path(path).absolute())


def _run_local(
    catalog: Catalog, workers: int, timeout_s: float | None, jobs: list[tuple[int, str]]
) -> Iterator[WorkScan]:
    """Worker processes that are killed and replaced when a work hangs or crashes them (a
    hostile file); such a work is screened here with its stored fingerprint instead."""
    root = str(catalog.store.root)
    tasks = [(root, catalog.settings, work_id, path) for work_id, path in jobs]
    for task, status, value in map_with_timeout(_screen_job, tasks, workers, timeout_s):
        if status == "ok":
            yield value
        else:
            yield screen_work(catalog, task[2], file_problem=f"decoding failed: {value}")


def _run_dask(
    dask, root: Path, settings: Settings, jobs: list[tuple[int, str]]
) -> Iterator[WorkScan]:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise AudiodupError("--dask needs Dask distributed: pip install 'audiodup[dask]'") from None
    own = not isinstance(dask, Client)
    client = Client(dask, set_as_default=False) if own else dask
    try:
        window = 4 * max(1, sum(client.nthreads().values()))
        queue = deque(jobs)

        def submit():
            work_id, path = queue.popleft()
            return client.submit(
                screen_work_task, str(root.absolute()), settings, work_id, path, pure=False
            )

        # a bounded window of tasks in flight: the scheduler never holds millions of them
        running = as_completed([submit() for _ in range(min(window, len(queue)))], loop=client.loop)
        for future in running:
            scan = future.result()
            future.release()
            if queue:
                running.add(submit())
            yield scan
    finally:
        if own:
            client.close()


# -- the report ------------------------------------------------------------------------------
def load_report(catalog: Catalog) -> RescanReport:
    """The report of every stored result (earlier runs included) on the catalog as it is."""
    works = catalog.works()
    path = catalog.store.root / RESULTS_FILE
    if path.exists():
        store = RescanStore(catalog.store.root, catalog.settings)
        try:
            scans = store.results(works)
        finally:
            store.close()
    else:
        scans = {}
    return build_report(works, scans, catalog.settings, catalog=str(catalog.store.root))


def rescan(catalog: Catalog, **options) -> RescanReport:
    """:func:`run_rescan` then :func:`load_report`."""
    run_rescan(catalog, **options)
    return load_report(catalog)


def build_report(
    works: list[WorkInfo], scans: dict[int, WorkScan], settings: Settings, catalog: str = ""
) -> RescanReport:
    """Pairs, clusters, originals and uploaders from per-work results (pure)."""
    info = {w.work_id: w for w in works}
    scans = {w: s for w, s in scans.items() if w in info}
    duplicates, suspects = _pairs(scans, info, settings)
    clusters = _clusters(duplicates, info)
    return RescanReport(
        catalog=catalog,
        works=len(info),
        scanned=len(scans),
        unscanned=tuple(sorted(set(info) - set(scans))),
        clusters=clusters,
        pairs=duplicates,
        suspect_pairs=suspects,
        uploaders=_rank_uploaders(clusters, info),
        fallbacks=tuple(
            WorkNote(w, info[w].path, s.note)
            for w, s in sorted(scans.items())
            if s.query_source == "stored_fingerprint" and s.note and not s.error
        ),
        errors=tuple(
            WorkNote(w, info[w].path, s.error) for w, s in sorted(scans.items()) if s.error
        ),
    )


_LABEL_RANK = {"duplicate": 1, "suspect": 0}


def _pairs(
    scans: dict[int, WorkScan], info: dict[int, WorkInfo], settings: Settings
) -> tuple[tuple[Pair, ...], tuple[Pair, ...]]:
    """One pair per two works, the stronger direction's evidence kept."""
    found: dict[tuple[int, int], list[tuple[PairLabel, Match, WorkScan]]] = {}
    for query_id, scan in scans.items():
        if scan.error:
            continue
        for match in scan.matches:
            if match.work_id == query_id or match.work_id not in info:
                continue
            label = decide([match], settings)
            if label == "clean":
                continue
            key = (min(query_id, match.work_id), max(query_id, match.work_id))
            found.setdefault(key, []).append((label, match, scan))
    duplicates, suspects = [], []
    for key in sorted(found):
        label, match, scan = max(
            found[key],
            key=lambda c: (
                _LABEL_RANK[c[0]],
                c[1].score,
                c[1].matched_hashes,
                c[1].coverage_s,
                -c[2].work_id,
            ),
        )
        pair = Pair(
            work_ids=key,
            label=label,
            query_work_id=scan.work_id,
            query_path=info[scan.work_id].path,
            query_title=info[scan.work_id].title,
            reference_work_id=match.work_id,
            query_source=scan.query_source,
            found_both_ways=len({c[2].work_id for c in found[key]}) == 2,
            evidence=replace(match, path=info[match.work_id].path),
            note=scan.note,
        )
        (duplicates if label == "duplicate" else suspects).append(pair)
    return tuple(duplicates), tuple(suspects)


def _clusters(pairs: tuple[Pair, ...], info: dict[int, WorkInfo]) -> tuple[Cluster, ...]:
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for pair in pairs:
        a, b = (find(w) for w in pair.work_ids)
        if a != b:
            parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for work_id in parent:
        groups.setdefault(find(work_id), []).append(work_id)
    edges: dict[int, list[tuple[int, Pair]]] = {}
    for pair in pairs:
        a, b = pair.work_ids
        edges.setdefault(a, []).append((b, pair))
        edges.setdefault(b, []).append((a, pair))
    clusters = []
    for number, root in enumerate(sorted(groups), start=1):
        ids = sorted(groups[root])
        members = tuple(_member(info[w]) for w in ids)
        original, reason = _original(members)
        reference = original if original is not None else ids[0]
        alterations = tuple(_alteration(reference, w, edges) for w in ids if w != reference)
        clusters.append(Cluster(number, members, original, reason, alterations))
    return tuple(clusters)


def _member(work: WorkInfo) -> Member:
    meta = work.metadata or {}
    return Member(
        work_id=work.work_id,
        path=work.path,
        title=work.title,
        artist=work.artist,
        uploader=meta.get("uploader") or None,
        uploaded_at=meta.get("uploaded_at") or None,
        duration_s=work.duration_s,
        metadata=meta,
    )


def _original(members: tuple[Member, ...]) -> tuple[int | None, str]:
    """The member uploaded first, only when every member has a date and one is earliest."""
    dated, undated = {}, []
    for m in members:
        try:
            dated[m.work_id] = parse_timestamp(m.uploaded_at) if m.uploaded_at else None
        except ValueError:
            dated[m.work_id] = None
        if dated[m.work_id] is None:
            undated.append(m.work_id)
    if len(undated) == len(members):
        return None, "unknown: no upload dates"
    if undated:
        return None, f"unknown: no upload date for work {_ids(undated)}"
    earliest = min(dated.values())
    first = [w for w, d in dated.items() if d == earliest]
    if len(first) > 1:
        return None, f"unknown: works {_ids(first)} share the earliest upload date"
    text = next(m.uploaded_at for m in members if m.work_id == first[0])
    return first[0], f"earliest uploaded_at ({text})"


def _ids(ids: list[int]) -> str:
    return ", ".join(str(i) for i in ids)


def _alteration(
    reference: int, work_id: int, edges: dict[int, list[tuple[int, Pair]]]
) -> Alteration:
    """Tempo and pitch of ``work_id`` relative to ``reference`` along the fewest duplicate
    pairs (breadth-first, ties to the stronger pair)."""
    previous: dict[int, tuple[int, Pair] | None] = {reference: None}
    frontier = [reference]
    while frontier and work_id not in previous:
        nxt = []
        for node in frontier:
            for other, pair in sorted(
                edges.get(node, ()), key=lambda e: (-e[1].evidence.score, e[0])
            ):
                if other not in previous:
                    previous[other] = (node, pair)
                    nxt.append(other)
        frontier = nxt
    chain, node = [work_id], work_id
    log_tempo, pitch = 0.0, 0.0
    while previous[node] is not None:
        prev, pair = previous[node]
        tempo, shift = _transform(pair, target=node, source=prev)
        log_tempo += math.log(tempo)
        pitch += shift
        chain.append(prev)
        node = prev
    tempo_ratio = math.exp(log_tempo)
    return Alteration(
        work_id=work_id,
        relative_to=reference,
        tempo_ratio=tempo_ratio,
        pitch_shift_semitones=pitch,
        via=tuple(reversed(chain)),
        description=describe_alteration(tempo_ratio, pitch),
    )


def _transform(pair: Pair, target: int, source: int) -> tuple[float, float]:
    """(tempo ratio, pitch shift) of ``target`` relative to ``source`` from one pair."""
    e = pair.evidence
    if pair.query_work_id == target:
        return e.tempo_ratio, e.pitch_shift_semitones
    return 1.0 / e.tempo_ratio, -e.pitch_shift_semitones


def describe_alteration(tempo_ratio: float, pitch_shift_semitones: float) -> str:
    """A reviewer's phrase for a transform: ``speed x1.12 (resampled, +2.0 st)`` and so on."""
    same_tempo = abs(math.log(tempo_ratio)) < 0.01
    same_pitch = abs(pitch_shift_semitones) < 0.3
    if same_tempo and same_pitch:
        return "same tempo and pitch (re-encoded, trimmed or identical)"
    speed_pitch = 12.0 * math.log2(tempo_ratio)
    if not same_tempo and abs(pitch_shift_semitones - speed_pitch) < 0.3:
        way = "sped up" if tempo_ratio > 1 else "slowed down"
        return (
            f"{way} x{tempo_ratio:.3f} like a resampled copy "
            f"(pitch {pitch_shift_semitones:+.1f} st)"
        )
    parts = []
    if not same_tempo:
        parts.append(f"tempo x{tempo_ratio:.3f} ({'faster' if tempo_ratio > 1 else 'slower'})")
    else:
        parts.append("tempo kept")
    parts.append(f"pitch {pitch_shift_semitones:+.1f} st" if not same_pitch else "pitch kept")
    return ", ".join(parts)


def _rank_uploaders(
    clusters: tuple[Cluster, ...], info: dict[int, WorkInfo]
) -> tuple[UploaderRank, ...]:
    catalog_works: dict[str, list[WorkInfo]] = {}
    for work in info.values():
        uploader = (work.metadata or {}).get("uploader")
        if uploader:
            catalog_works.setdefault(uploader, []).append(work)
    copies: dict[str, list[int]] = {}
    counts: dict[str, dict[str, int]] = {}

    def bump(uploader: str, what: str) -> None:
        counts.setdefault(uploader, {}).setdefault(what, 0)
        counts[uploader][what] += 1

    for cluster in clusters:
        by_id = {m.work_id: m for m in cluster.members}
        if cluster.original is None:
            for m in cluster.members:
                if m.uploader:
                    bump(m.uploader, "unattributed")
            continue
        owner = by_id[cluster.original].uploader
        for m in cluster.members:
            if m.work_id == cluster.original or not m.uploader:
                continue
            if m.uploader == owner:
                bump(m.uploader, "self_copies")
            else:
                copies.setdefault(m.uploader, []).append(m.work_id)
                if owner:
                    bump(owner, "originals_copied")
    ranks = []
    for uploader in sorted(set(copies) | set(counts)):
        own = catalog_works.get(uploader, [])
        copied = sorted(copies.get(uploader, []))
        c = counts.get(uploader, {})
        ranks.append(
            UploaderRank(
                uploader=uploader,
                works=len(own),
                copies=len(copied),
                share=len(copied) / len(own) if own else 0.0,
                copies_duration_s=sum(info[w].duration_s for w in copied),
                catalog_duration_s=sum(w.duration_s for w in own),
                originals_copied=c.get("originals_copied", 0),
                self_copies=c.get("self_copies", 0),
                unattributed=c.get("unattributed", 0),
                copy_work_ids=tuple(copied),
            )
        )
    ranks.sort(key=lambda r: (-r.copies, -r.share, -r.copies_duration_s, r.uploader))
    return tuple(ranks)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
