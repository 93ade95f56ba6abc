"""The Python API: a catalog of works you can add to and screen uploads against.

>>> from audiodup import Catalog
>>> with Catalog.open("my-catalog") as catalog:          # doctest: +SKIP
...     catalog.add_paths(["originals/"])
...     verdict = catalog.screen("upload.mp3")
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from . import index, ingest, owners, screening
from .audio import Audio, load_audio
from .errors import AudiodupError, CatalogError
from .fingerprint import Fingerprint, UploadFingerprints
from .index import LoadedIndexes
from .ingest import AUDIO_SUFFIXES, _os_problem, expand_paths, fingerprint_file  # noqa: F401
from .match import ChromaEvidence, HashEvidence
from .peakcheck import PeakCheck
from .results import (
    AddResult,
    CatalogStats,
    Match,
    ReviewDecision,
    ReviewLabel,
    UploadInfo,
    Verdict,
    WorkInfo,
    path_text,
)
from .screening import View
from .settings import DEFAULT_SETTINGS, Settings
from .store import OWN_DATABASE_FILE, CatalogCheck, CatalogStore, available_memory
from .verdict import decide
from .workers import map_with_timeout

DEFAULT_CATALOG = "audiodup-catalog"


def default_catalog_path() -> Path:
    """``$AUDIODUP_DB``, or ``./audiodup-catalog`` when it is unset. An empty (or blank) value
    counts as unset: ``AUDIODUP_DB=`` left behind in a shell must not make the current folder
    the catalog."""
    value = os.environ.get("AUDIODUP_DB", "")
    return Path(value) if value.strip() else Path(DEFAULT_CATALOG)


def _query_job(args) -> tuple[UploadFingerprints, float, bool, str, tuple[float, float]] | str:
    _, path, settings = args
    start = clock()
    try:
        audio = load_audio(path, settings)
        prints = UploadFingerprints(audio, settings)
    except AudiodupError as exc:
        return str(exc)
    except OSError as exc:
        return _os_problem(exc)
    # the further looks' views are made when screening asks for them, as Catalog.screen makes
    # them: a copy the first look decides needs none (0.19 CPU-s of a 4-min upload's two views;
    # sending the analysis back costs 0.02, issue #16)
    return prints, audio.duration_s, audio.truncated, audio.sha256, since(start)


def _view_from(views: dict[tuple, Fingerprint]) -> View:
    """The view of fingerprints made beforehand (``(time_scale, hop_phase)`` -> fingerprint)."""
    return lambda time_scale, hop_phase: views[time_scale, hop_phase]


def clock() -> tuple[float, float]:
    """Wall-clock and CPU seconds now."""
    return time.perf_counter(), time.process_time()


def since(
    start: tuple[float, float], end: tuple[float, float] | None = None
) -> tuple[float, float]:
    end = end or clock()
    return end[0] - start[0], end[1] - start[1]


def _rescan_clusters(catalog: Catalog):
    from .rescan import load_report

    return load_report(catalog).clusters


class Catalog:
    """A catalog of reference works (see :mod:`audiodup.store` for the on-disk layout)."""

    def __init__(self, store: CatalogStore, settings: Settings):
        self.store = store
        self.settings = settings
        index.set_threads(settings.faiss_threads)
        self._indexes: LoadedIndexes | None = None
        self._indexes_key = None
        self._matcher: screening.Search | None = None  # in place of this process's indexes
        self._statistics: Callable[[], screening.CatalogStatistics] | None = None
        self._copy_owners = owners.CopyOwners(
            store.root, lambda: _rescan_clusters(self), store.ledger_edits
        )

    @classmethod
    def open(
        cls,
        path: str | Path | None = None,
        create: bool = True,
        settings: Settings = DEFAULT_SETTINGS,
        *,
        write: bool = False,
        rekey: bool = False,
    ) -> Catalog:
        """Open the catalog at ``path`` (default: :func:`default_catalog_path`).

        Opening never waits for a writer: each write (``add_paths``, ``remove``, ``rebuild``)
        takes the single-writer lock itself. ``create`` makes a missing catalog, only in a new or
        empty folder. ``write`` refuses at once a catalog that cannot be written here (a
        read-only folder, a full disk) instead of failing at the first write; without it such a
        catalog opens read-only and screens as usual. ``rekey`` also opens a catalog that holds
        this recipe's fingerprints under an index of another (:meth:`rekey`), for that only."""
        root = Path(path) if path is not None else default_catalog_path()
        store = CatalogStore(root, settings, create=create, write=write, rekey=rekey)
        return cls(store, settings)

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()

    # -- adding --------------------------------------------------------------------------------
    def add_paths(self, paths: Iterable[str | Path], **options) -> list[AddResult]:
        """Record files (folders recursively) as uploads, storing content once. Options, as
        :func:`audiodup.ingest.add_paths` documents them: ``workers``, ``metadata``,
        ``on_result``, ``batch_size``, ``batch_seconds``, ``timeout_s``, ``role``, ``on_skip``."""
        return ingest.add_paths(self.store, self.settings, paths, **options)

    def uploads(self) -> list[UploadInfo]:
        """The upload ledger: every live upload, in order of its id."""
        return self.store.uploads()

    def update_uploads(self, changes: list[tuple[int, dict]]) -> None:
        """Change uploads' metadata and roles at once (all or nothing); see
        :func:`audiodup.metadata.read_metadata_update`."""
        self.store.update_uploads(changes)

    def record_decision(
        self, upload_id: int, work_id: int, decision: ReviewLabel, note: str, reviewer: str
    ) -> ReviewDecision:
        """Append a reviewer's decision; see :meth:`audiodup.store.CatalogStore.record_decision`."""
        return self.store.record_decision(upload_id, work_id, decision, note, reviewer)

    def decisions(self, upload_id: int | None = None) -> list[ReviewDecision]:
        """Review decisions (of one upload, or all), oldest first; ``latest_decisions``: the
        one in force per upload."""
        return self.store.decisions(upload_id)

    def latest_decisions(self) -> list[ReviewDecision]:
        return self.store.latest_decisions()

    # -- screening (the pipeline is audiodup.screening) ----------------------------------------
    def screen(self, path: str | Path, top_k: int = 5) -> Verdict:
        """Screen one upload. Problems reading it (decoding, a path the system refuses) come
        back as ``Verdict.error``, never raised: one bad path must not stop a batch."""
        start = clock()
        if self.store.is_own_database(path):
            return Verdict(path=path_text(path), verdict=None, error=OWN_DATABASE_FILE)
        try:
            audio = load_audio(path, self.settings)
        except AudiodupError as exc:
            return Verdict(path=path_text(path), verdict=None, error=str(exc))
        except OSError as exc:
            return Verdict(path=path_text(path), verdict=None, error=_os_problem(exc))
        prints = UploadFingerprints(audio, self.settings)
        return self.screen_audio(
            audio, path_text(path), top_k, prints=prints, fingerprint_time=since(start)
        )

    def screen_many(
        self,
        paths: Iterable[str | Path],
        top_k: int = 5,
        workers: int = 1,
        timeout_s: float | None = None,
    ) -> list[Verdict]:
        """Screen uploads in input order; with ``timeout_s`` (or ``workers > 1``) decoding and
        fingerprinting run in worker processes, killed when one file runs over ``timeout_s``.
        The further looks' views are then made here, from the worker's analysis, when the first
        look leaves no duplicate."""
        paths = [Path(p) for p in paths]
        if workers <= 1 and timeout_s is None:
            return [self.screen(p, top_k) for p in paths]
        verdicts: dict[int, Verdict] = {
            i: Verdict(path=path_text(p), verdict=None, error=OWN_DATABASE_FILE)
            for i, p in enumerate(paths)
            if self.store.is_own_database(p)
        }
        jobs = [(i, p, self.settings) for i, p in enumerate(paths) if i not in verdicts]
        for (i, path, _), status, value in map_with_timeout(_query_job, jobs, workers, timeout_s):
            if status != "ok" or isinstance(value, str):
                verdicts[i] = Verdict(path=path_text(path), verdict=None, error=str(value))
                continue
            prints, *facts = value
            verdicts[i] = self._verdict(
                path_text(path),
                prints.query,
                *facts,
                top_k,
                prints.view,
                screening.signal_queries(prints),
            )
        return [verdicts[i] for i in range(len(paths))]

    def screen_audio(
        self,
        audio: Audio,
        name: str = "<audio>",
        top_k: int = 5,
        prints: UploadFingerprints | None = None,
        fingerprint_time: tuple[float, float] | None = None,
    ) -> Verdict:
        """Screen decoded audio. ``prints``: the upload's fingerprints when the caller made them
        (to store the upload too: ``prints.stored()``), and ``fingerprint_time`` the wall-clock
        and CPU seconds decoding and making them took (:func:`since` a :func:`clock` before
        decoding), which ``fingerprint_s`` and ``fingerprint_cpu_s`` report; without it, the
        time of making them here."""
        started = clock()
        prints = prints or UploadFingerprints(audio, self.settings)
        facts = (audio.duration_s, audio.truncated, audio.sha256)
        spent = fingerprint_time or since(started)
        return self._verdict(
            name,
            prints.query,
            *facts,
            spent,
            top_k,
            prints.view,
            screening.signal_queries(prints),
        )

    def _verdict(
        self,
        name: str,
        query: Fingerprint,
        duration_s: float,
        truncated: bool,
        sha256: str,
        fingerprint_time: tuple[float, float],
        top_k: int,
        view: View | None = None,
        parts: Sequence[screening.SignalQuery] = (),
    ) -> Verdict:
        """Search, decide, name the owners and time one fingerprinted upload
        (``fingerprint_time``: wall-clock and CPU seconds of decoding and fingerprinting;
        ``view``: its fingerprints at other time scales, see :func:`screening.gather_looks`;
        ``parts``: what of its stereo parts to screen too)."""
        load_start = clock()
        if self._matcher is None:
            self.indexes()  # loaded (or reloaded) here, so that search_s is the search alone
        search_start = clock()
        matches = screening.match_signals(
            self.match_fingerprint, query, view, parts, self.settings
        )[:top_k]
        uploads = self.store.uploads([m.work_id for m in matches])
        identical = self.store.find_live_sha(sha256)
        named = owners.attribute(matches, uploads, self.settings, identical, self._copy_owners())
        search, load = since(search_start), since(load_start, search_start)
        return Verdict(
            path=name,
            verdict=decide(matches, self.settings),
            matches=tuple(named),
            duration_s=duration_s,
            truncated=truncated,
            fingerprint_s=fingerprint_time[0],
            search_s=search[0],
            fingerprint_cpu_s=fingerprint_time[1],
            search_cpu_s=search[1],
            index_load_s=load[0],
            index_load_cpu_s=load[1],
        )

    def match_fingerprint(
        self,
        query: Fingerprint,
        view: View | None = None,
        without: Sequence[int] = (),
        every_look: bool = False,
    ) -> list[Match]:
        """Every work that explains part of the query, most certain first (``view``,
        ``without``, ``every_look``: see :func:`audiodup.screening.match_fingerprint`)."""
        if self._matcher is not None:
            return self._matcher(query, view, without, every_look)
        return screening.match_fingerprint(
            query, self.indexes(), self.settings, self.store, view, without, every_look=every_look
        )

    def screen_with(
        self,
        matcher: screening.Search | None,
        statistics: Callable[[], screening.CatalogStatistics] | None = None,
    ) -> None:
        """Search with ``matcher(query, view, without, every_look)`` instead of the indexes
        loaded here: a split catalog's shard groups on Dask
        (:class:`audiodup.sharded.ShardedScreening`'s ``match_fingerprint``, and its
        ``totals`` as ``statistics``, so that pictures need no index here either); ``None``
        goes back to the indexes."""
        self._matcher = matcher
        self._statistics = statistics if matcher is not None else None

    def work_evidence(
        self, query: Fingerprint, work_id: int
    ) -> tuple[HashEvidence | None, ChromaEvidence | None]:
        """See :func:`audiodup.screening.work_evidence` (for pictures and reports)."""
        statistics = self.indexes() if self._statistics is None else self._statistics()
        return screening.work_evidence(query, work_id, statistics, self.settings, self.store)

    def peak_evidence(
        self,
        query: Fingerprint,
        work_id: int,
        hashed: HashEvidence | None,
        chroma: ChromaEvidence | None,
    ) -> PeakCheck | None:
        """See :func:`audiodup.screening.peak_evidence` (for pictures)."""
        return screening.peak_evidence(query, work_id, hashed, chroma, self.settings, self.store)

    def indexes(self) -> LoadedIndexes:
        """The searchable indexes, reloaded when another process changed the catalog."""
        key = self.store.index_key()
        if self._indexes is None or key != self._indexes_key:
            self._indexes = self.store.load_indexes()
            self._indexes_key = key
        return self._indexes

    # -- catalog management --------------------------------------------------------------------
    def warm_files(self, share_of_free_memory: float = 0.5) -> threading.Thread | None:
        """Start reading the catalog's index files into the page cache in a background thread,
        at most ``share_of_free_memory`` of the memory available now
        (:meth:`CatalogStore.files_to_warm`, :func:`audiodup.store.read_ahead`); for
        long-running processes (``serve``, ``rescan``). Returns the thread (None: nothing to
        read)."""
        budget = int(share_of_free_memory * available_memory())
        return self.store.read_ahead_in_background(budget)

    @property
    def root(self) -> Path:
        """The catalog folder."""
        return self.store.root

    def work(self, work_id: int) -> WorkInfo | None:
        """One live work (None: no such work, or it was removed)."""
        return self.store.work(work_id)

    def fingerprint(self, work_id: int) -> Fingerprint:
        """The stored fingerprint of one work."""
        return self.store.fingerprint(work_id)

    def works(self) -> list[WorkInfo]:
        return self.store.works()

    def remove(self, work_id: int) -> bool:
        return self.store.remove(work_id)

    def verify(self) -> list[str]:
        """The catalog's integrity problems (empty when it is sound); see :meth:`check`."""
        return self.store.verify()

    def check(self) -> CatalogCheck:
        """Problems and harmless notes, as ``index verify`` prints them; damage is a finding."""
        return self.store.check()

    def rebuild(self) -> None:
        self.store.rebuild()
        self._indexes = None

    def rekey(self) -> int:
        """Make the index of a catalog opened with ``rekey`` again under this recipe from its
        stored fingerprints (:meth:`CatalogStore.rekey`): the works re-keyed, 0 when the
        catalog was of this recipe already."""
        rekeyed = self.store.rekey()
        self._indexes = None
        return rekeyed

    def upgrade(self) -> tuple[int, int]:
        """Rewrite index files of an older layout in the current one, keeping what they find
        (:meth:`CatalogStore.pad_chroma_shards`), and write the four-peak files shards lack
        (:meth:`CatalogStore.write_missing_quads`): the number of chroma shards rewritten and
        of four-peak files written."""
        padded = self.store.pad_chroma_shards()
        quads = self.store.write_missing_quads()
        self._indexes = None
        return padded, quads

    def stats(self) -> CatalogStats:
        return self.store.stats()


__all__ = ["Catalog", "CatalogError", "default_catalog_path", "expand_paths", "fingerprint_file"]
