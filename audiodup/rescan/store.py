"""Per-work rescan results and run bookkeeping in ``<catalog>/rescan.sqlite``.

Each result is written in its own transaction the moment its work is done, so a killed run
resumes where it stopped; results of another recipe or result format are dropped on open.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from ..results import WorkInfo
from ..settings import Settings
from ..store import reports_errors, use_write_ahead_log
from .results import Mode, WorkScan
from .serialise import ids_from_json, ids_to_json, scan_from_json, scan_to_json, store_identity

RESULTS_FILE = "rescan.sqlite"
# 2: each work screened against the rest of the catalog, with an upload's further looks; the
# results of 1 (against the whole catalog, one look) missed hard copies, so they are screened again
# 3: every further look taken, a duplicate found or not (2 stopped at the first duplicate and
# missed the original of two 2x copies that found each other first); 4: a work read from its
# file is screened in its stereo difference too (3 missed a copy hidden there); 5: a work
# shorter than half_hop_max_s also takes the looks half a hop in (4 missed weak copies they find);
# 6: a work read from its file is screened in each channel where they do not follow each other
# (5 missed a copy in one channel under loud noise in the other)
RESULT_FORMAT = "6"

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


class RescanStore:
    """Per-work results and run bookkeeping in ``<catalog>/rescan.sqlite``."""

    @reports_errors("store rescan results in")
    def __init__(self, root: Path, settings: Settings):
        self.root = Path(root)
        self.db = sqlite3.connect(str(self.root / RESULTS_FILE), timeout=60.0, isolation_level=None)
        use_write_ahead_log(self.db)
        self.db.executescript(_SCHEMA)
        identity = store_identity(settings.recipe, RESULT_FORMAT)
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
        is empty. A resumed run also takes the targets added since it started (works added to
        the catalog meanwhile), so resuming never leaves them out."""
        row = self.db.execute(
            "SELECT run_id, targets FROM runs WHERE status = 'running' AND mode = ? "
            "AND since IS ? ORDER BY run_id DESC LIMIT 1",
            (mode, since),
        ).fetchone()
        if row is not None:
            run_id, ids = int(row[0]), ids_from_json(row[1])
            known = set(ids)
            added = [w for w in targets() if w not in known]
            if added:
                ids = ids + added
                self.db.execute(
                    "UPDATE runs SET targets = ? WHERE run_id = ?", (ids_to_json(ids), run_id)
                )
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
            (mode, since, ids_to_json(ids), _now()),
        )
        self.db.execute("COMMIT")
        return int(cursor.lastrowid), ids, set(), False

    @reports_errors("store rescan results in")
    def save(self, run_id: int, sha256: str, scan: WorkScan) -> None:
        """Store one work's result at once (its own transaction), replacing older ones."""
        self.db.execute(
            "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?)",
            (scan.work_id, sha256, run_id, _now(), scan_to_json(scan)),
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
                out[work_id] = scan_from_json(text)
            except (KeyError, TypeError, ValueError):
                continue  # written by another version: the work counts as not screened
        return out


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
