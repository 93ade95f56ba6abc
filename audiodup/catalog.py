"""The Python API: a catalog of works you can add to and screen uploads against.

>>> from audiodup import Catalog
>>> with Catalog.open("my-catalog") as catalog:          # doctest: +SKIP
...     catalog.add_paths(["originals/"])
...     verdict = catalog.screen("upload.mp3")
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np

from .audio import Audio, load_audio
from .errors import AudiodupError, CatalogError
from .fingerprint import Fingerprint, fingerprint_audio, fingerprint_hashes
from .hashes import KEY_BITS
from .match import (
    ChromaEvidence,
    HashEvidence,
    HashVotes,
    align_chroma,
    candidate_works,
    chroma_candidates,
    lookup_hashes,
    verify_hashes,
)
from .peakcheck import (
    Alignment,
    PeakCheck,
    ReferencePeaks,
    check_alignment,
    chroma_alignments,
    confirms_recording,
    hash_alignment,
    reference_peaks,
)
from .results import (
    AddResult,
    CatalogStats,
    Match,
    Relation,
    Section,
    Verdict,
    WorkInfo,
    path_text,
)
from .settings import DEFAULT_SETTINGS, Settings
from .store import CatalogCheck, CatalogStore, LoadedIndexes, NewWork
from .verdict import (
    chance_excess_scale,
    chroma_false_match_probability,
    decide,
    hash_false_match_probability,
    score_from_probability,
    transforms_agree,
)
from .workers import map_with_timeout

DEFAULT_CATALOG = "audiodup-catalog"
AUDIO_SUFFIXES = {
    ".wav",
    ".wave",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".mp3",
    ".aif",
    ".aiff",
    ".au",
    ".w64",
    ".m4a",
    ".aac",
    ".mp4",
    ".wma",
    ".webm",
    ".mka",
    ".mkv",
    ".caf",
}


def default_catalog_path() -> Path:
    """``$AUDIODUP_DB``, or ``./audiodup-catalog`` when it is unset. An empty (or blank) value
    counts as unset: ``AUDIODUP_DB=`` left behind in a shell must not make the current folder
    the catalog."""
    value = os.environ.get("AUDIODUP_DB", "")
    return Path(value) if value.strip() else Path(DEFAULT_CATALOG)


def expand_paths(paths: Iterable[str | Path]) -> Iterator[tuple[Path, str | None]]:
    """Files to add: explicit files as given, folders walked for audio files (no symlink
    following). Yields ``(path, error)``; ``error`` names what cannot be read, so one bad path
    (a name the system refuses as too long, a folder that cannot be entered or listed) fails
    alone and the batch goes on."""
    for raw in paths:
        path = Path(raw)
        try:
            is_dir = path.is_dir()
        except OSError as exc:
            yield path, _os_problem(exc)
            continue
        if is_dir:
            yield from _walk(path)
            continue
        try:
            odd = path.exists() and not path.is_file()
        except OSError as exc:
            yield path, _os_problem(exc)
            continue
        # a missing explicit file is left to the decoder, which says "file not found"
        yield path, "not a regular file" if odd else None


def _walk(folder: Path) -> Iterator[tuple[Path, str | None]]:
    """The audio files under ``folder``, and each folder that cannot be listed as an error."""
    unlisted: list[OSError] = []

    def failed() -> Iterator[tuple[Path, str]]:
        for exc in unlisted:
            yield (
                Path(exc.filename if exc.filename is not None else folder),
                (f"cannot read folder: {exc.strerror or exc}"),
            )
        unlisted.clear()

    for root, dirs, files in os.walk(folder, followlinks=False, onerror=unlisted.append):
        yield from failed()
        dirs.sort()
        for name in sorted(files):
            child = Path(root) / name
            if child.suffix.lower() in AUDIO_SUFFIXES:
                yield child, _file_problem(child)
    yield from failed()


def _file_problem(path: Path) -> str | None:
    """Why a walked entry cannot be decoded, or None when it is a regular file."""
    try:
        if path.is_symlink() and not path.exists():
            return "broken or looping symbolic link"
        return None if path.is_file() else "not a regular file"
    except OSError as exc:
        return _os_problem(exc)


def _os_problem(exc: OSError) -> str:
    """One line for an OSError on a path (the path itself is named by the caller)."""
    return f"cannot read: {exc.strerror or exc}"


def fingerprint_file(path: str | Path, settings: Settings = DEFAULT_SETTINGS) -> NewWork:
    """Decode and fingerprint one file for the catalog (runs in worker processes)."""
    path = Path(path)
    audio = load_audio(path, settings)
    stat = path.stat()
    return NewWork(
        path=path_text(path),
        sha256=audio.sha256,
        duration_s=audio.duration_s,
        fingerprint=fingerprint_audio(audio, settings),
        title=audio.title,
        artist=audio.artist,
        file_size=stat.st_size,
        file_mtime=stat.st_mtime,
    )


def _fingerprint_job(args) -> NewWork | str:
    path, settings = args
    try:
        return fingerprint_file(path, settings)
    except AudiodupError as exc:
        return str(exc)
    except OSError as exc:  # e.g. the file's folder became unreadable after the walk
        return _os_problem(exc)
    except MemoryError:
        return "out of memory while decoding"
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop a batch
        return f"unexpected error: {type(exc).__name__}: {str(exc)[:200]}"


def _query_job(args) -> tuple[Fingerprint, float, bool, float] | str:
    _, path, settings = args
    start = time.perf_counter()
    try:
        audio = load_audio(path, settings)
        fingerprint = fingerprint_audio(audio, settings, query=True)
    except AudiodupError as exc:
        return str(exc)
    except OSError as exc:
        return _os_problem(exc)
    return fingerprint, audio.duration_s, audio.truncated, time.perf_counter() - start


class Catalog:
    """A catalog of reference works (see :mod:`audiodup.store` for the on-disk layout)."""

    def __init__(self, store: CatalogStore, settings: Settings):
        self.store = store
        self.settings = settings
        faiss.omp_set_num_threads(settings.faiss_threads)
        self._indexes: LoadedIndexes | None = None
        self._indexes_key = None

    @classmethod
    def open(
        cls,
        path: str | Path | None = None,
        create: bool = True,
        settings: Settings = DEFAULT_SETTINGS,
        *,
        write: bool = False,
    ) -> Catalog:
        """Open the catalog at ``path`` (default: :func:`default_catalog_path`).

        Opening never waits for a writer: each write (``add_paths``, ``remove``, ``rebuild``)
        takes the single-writer lock itself. ``create`` makes a missing catalog, only in a new or
        empty folder. ``write`` refuses at once a catalog that cannot be written here (a
        read-only folder, a full disk) instead of failing at the first write; without it such a
        catalog opens read-only and screens as usual."""
        root = Path(path) if path is not None else default_catalog_path()
        return cls(CatalogStore(root, settings, create=create, write=write), settings)

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()

    # -- adding --------------------------------------------------------------------------------
    def add_paths(
        self,
        paths: Iterable[str | Path],
        workers: int = 1,
        metadata: dict[str, dict] | None = None,
        on_result: Callable[[AddResult], None] | None = None,
        batch_size: int = 32,
        batch_seconds: float = 30.0,
        timeout_s: float | None = None,
    ) -> list[AddResult]:
        """Fingerprint files (folders recursively) and add them; identical audio is skipped.

        Work is committed in batches, so an interrupted run keeps what it finished; re-running
        it skips files already in the catalog. With ``timeout_s`` (or ``workers > 1``) each file
        is decoded in a worker process that is killed when it runs over ``timeout_s``.
        """
        metadata = metadata or {}
        results: list[AddResult] = []
        pending: list[tuple[NewWork, str]] = []
        last_commit = time.monotonic()

        def emit(result: AddResult) -> None:
            results.append(result)
            if on_result is not None:
                on_result(result)

        def flush() -> None:
            nonlocal pending, last_commit
            if pending:
                outcome = self.store.commit_batch([item for item, _ in pending])
                for (item, shown), (work_id, added) in zip(pending, outcome, strict=True):
                    emit(
                        AddResult(
                            shown,
                            "added" if added else "present",
                            work_id,
                            duration_s=item.duration_s,
                        )
                    )
            pending, last_commit = [], time.monotonic()

        todo: list[Path] = []
        for path, error in expand_paths(paths):
            if error is not None:
                emit(AddResult(path_text(path), "failed", error=error))
                continue
            known = self._unchanged(path)
            if known is not None:
                emit(AddResult(path_text(path), "present", known))
            else:
                todo.append(path)

        jobs = [(p, self.settings) for p in todo]
        if workers > 1 or timeout_s is not None:
            outputs = (
                (item[0], value if status == "ok" else str(value))
                for item, status, value in map_with_timeout(
                    _fingerprint_job, jobs, workers, timeout_s
                )
            )
        else:
            outputs = ((job[0], _fingerprint_job(job)) for job in jobs)
        for path, output in outputs:
            if isinstance(output, str):
                emit(AddResult(path_text(path), "failed", error=output))
                continue
            extra = metadata.get(str(path)) or metadata.get(path.name) or {}
            if extra:
                output = _with_metadata(output, extra)
            pending.append((output, path_text(path)))
            if len(pending) >= batch_size or time.monotonic() - last_commit > batch_seconds:
                flush()
        flush()
        return results

    def _unchanged(self, path: Path) -> int | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        return self.store.find_unchanged_file(path_text(path), stat.st_size, stat.st_mtime)

    # -- screening -----------------------------------------------------------------------------
    def screen(self, path: str | Path, top_k: int = 5) -> Verdict:
        """Screen one upload. Decoding problems come back as ``Verdict.error``, never raised."""
        start = time.perf_counter()
        try:
            audio = load_audio(path, self.settings)
        except AudiodupError as exc:
            return Verdict(path=path_text(path), verdict=None, error=str(exc))
        return self.screen_audio(audio, name=path_text(path), top_k=top_k, started=start)

    def screen_many(
        self,
        paths: Iterable[str | Path],
        top_k: int = 5,
        workers: int = 1,
        timeout_s: float | None = None,
    ) -> list[Verdict]:
        """Screen uploads in input order; with ``timeout_s`` (or ``workers > 1``) decoding and
        fingerprinting run in worker processes, killed when one file runs over ``timeout_s``."""
        paths = [Path(p) for p in paths]
        if workers <= 1 and timeout_s is None:
            return [self._screen_one(p, top_k) for p in paths]
        verdicts: dict[int, Verdict] = {}
        jobs = [(i, p, self.settings) for i, p in enumerate(paths)]
        for (i, path, _), status, value in map_with_timeout(_query_job, jobs, workers, timeout_s):
            if status != "ok" or isinstance(value, str):
                verdicts[i] = Verdict(path=path_text(path), verdict=None, error=str(value))
                continue
            fingerprint, duration_s, truncated, fingerprint_s = value
            search_start = time.perf_counter()
            matches = self.match_fingerprint(fingerprint)[:top_k]
            verdicts[i] = Verdict(
                path=path_text(path),
                verdict=decide(matches, self.settings),
                matches=tuple(matches),
                duration_s=duration_s,
                truncated=truncated,
                fingerprint_s=fingerprint_s,
                search_s=time.perf_counter() - search_start,
            )
        return [verdicts[i] for i in range(len(paths))]

    def _screen_one(self, path: Path, top_k: int) -> Verdict:
        """:meth:`screen`, with an OSError on the path (a name too long, a folder that cannot
        be entered) as this upload's error: one bad path must not stop a batch."""
        try:
            return self.screen(path, top_k=top_k)
        except OSError as exc:
            return Verdict(path=path_text(path), verdict=None, error=_os_problem(exc))

    def screen_audio(
        self, audio: Audio, name: str = "<audio>", top_k: int = 5, started: float | None = None
    ) -> Verdict:
        started = time.perf_counter() if started is None else started
        fingerprint = fingerprint_audio(audio, self.settings, query=True)
        fingerprint_s = time.perf_counter() - started
        search_start = time.perf_counter()
        matches = self.match_fingerprint(fingerprint)[:top_k]
        label = decide(matches, self.settings)
        return Verdict(
            path=name,
            verdict=label,
            matches=tuple(matches),
            duration_s=audio.duration_s,
            truncated=audio.truncated,
            fingerprint_s=fingerprint_s,
            search_s=time.perf_counter() - search_start,
        )

    def match_fingerprint(self, query: Fingerprint) -> list[Match]:
        """Every work that explains part of the query, most certain first."""
        settings = self.settings
        indexes = self.indexes()
        n_works = max(int(indexes.live.sum()), 1)
        evidence = list(self.hash_evidence(query, indexes).values())
        top = {e.work_id for e in sorted(evidence, key=lambda e: -e.main_inliers)[:3]}
        scale = chance_excess_scale(evidence, top, settings)
        by_work = {
            e.work_id: (e, hash_false_match_probability(e, scale, n_works, settings))
            for e in evidence
        }
        matches = {
            work_id: self._hash_match(e, fmp, query)
            for work_id, (e, fmp) in by_work.items()
            if fmp <= settings.suspect_max_fmp
        }
        if not any(
            m.false_match_probability <= settings.duplicate_max_fmp for m in matches.values()
        ):
            references: dict[int, Fingerprint] = {}  # each decoded once per query
            chroma_evidence = self._chroma_evidence(query, indexes, n_works, references)
            hashed_by_work = {w: e for w, (e, _) in by_work.items()}
            checks = self._peak_checks(query, hashed_by_work, chroma_evidence, references)
            for chroma, chroma_fmp in chroma_evidence:
                hashed = by_work.get(chroma.work_id)
                check = checks.get(chroma.work_id)
                if (
                    hashed is not None
                    and transforms_agree(hashed[0], chroma, settings)
                    and check is not None
                    and confirms_recording(check[0], settings)
                ):
                    # two independent channels found the same transform: per-work probabilities
                    # multiply, and the search over works is paid once. A re-arrangement of the
                    # same music makes both agree too; its peaks say it is not this recording
                    fmp = min(1.0, hashed[1] * chroma_fmp / n_works)
                    combined = self._hash_match(
                        hashed[0], fmp, query, chroma_similarity=chroma.similarity
                    )
                    matches[chroma.work_id] = replace(
                        combined, matched_peaks=check[0].matched_peaks
                    )
                elif (
                    chroma.work_id not in matches
                    and chroma_fmp <= settings.suspect_max_fmp
                    and chroma.similarity >= settings.chroma_min_similarity
                ):
                    matches[chroma.work_id] = self._chroma_match(chroma, chroma_fmp, query)
            chroma_fmps = {chroma.work_id: fmp for chroma, fmp in chroma_evidence}
            for work_id, (check, chroma) in checks.items():
                fmp = min(1.0, check.probability * n_works)
                if chroma is not None and chroma_fmps[work_id] <= settings.suspect_max_fmp:
                    # the peaks coincide where a significant chroma alignment put them: the two
                    # per-work probabilities multiply (the chroma one is not capped at this level)
                    fmp = min(fmp, check.probability * chroma_fmps[work_id])
                current = matches.get(work_id)
                if fmp <= settings.suspect_max_fmp and (
                    current is None or fmp < current.false_match_probability
                ):
                    hashed = hashed_by_work.get(work_id)
                    matches[work_id] = self._peak_match(work_id, check, fmp, query, hashed, chroma)
        return sorted(matches.values(), key=lambda m: (m.false_match_probability, -m.coverage_s))

    def _hash_match(
        self,
        e: HashEvidence,
        fmp: float,
        query: Fingerprint,
        chroma_similarity: float | None = None,
    ) -> Match:
        fps = self.settings.frames_per_second
        sections = tuple(
            Section(
                line.query_start_frame / fps,
                line.query_end_frame / fps,
                line.ref_start_frame / fps,
                line.ref_end_frame / fps,
                line.inliers,
            )
            for line in e.lines
        )
        main = sections[0]
        return self._match(
            e.work_id,
            "same_recording",
            fmp,
            query,
            e.tempo_ratio,
            e.pitch_shift_semitones,
            main,
            e.coverage_s,
            e.inliers,
            chroma_similarity,
            sections,
        )

    def _reference(self, work_id: int, references: dict[int, Fingerprint] | None) -> Fingerprint:
        """A stored fingerprint, decoded once per ``references`` memo."""
        if references is None:
            return self.store.fingerprint(work_id)
        if work_id not in references:
            references[work_id] = self.store.fingerprint(work_id)
        return references[work_id]

    def _chroma_evidence(
        self,
        query: Fingerprint,
        indexes: LoadedIndexes,
        n_works: int,
        references: dict[int, Fingerprint] | None = None,
    ) -> list[tuple[ChromaEvidence, float]]:
        """Aligned chroma of the best chroma candidates with their false-match probability."""
        settings = self.settings
        aligned: list[ChromaEvidence] = []
        for work_id, _, scale in chroma_candidates(query, indexes, settings):
            fine = (1.0 / scale) * np.geomspace(
                1 / settings.chroma_scale_step, settings.chroma_scale_step, 7
            )
            reference = self._reference(work_id, references)
            ev = align_chroma(query, reference, work_id, settings, fine)
            if ev is not None:
                aligned.append(ev)
        aligned.sort(key=lambda ev: -ev.similarity)
        background = [ev.similarity for ev in aligned[3:]]
        return [
            (ev, chroma_false_match_probability(ev, background, settings, n_works))
            for ev in aligned[:3]
        ]

    def _peak_checks(
        self,
        query: Fingerprint,
        hashed: dict[int, HashEvidence],
        chroma: list[tuple[ChromaEvidence, float]],
        references: dict[int, Fingerprint] | None = None,
    ) -> dict[int, tuple[PeakCheck, ChromaEvidence | None]]:
        """The guided peak check of the strongest weak hash lines and chroma alignments: the best
        check per work, with the chroma evidence it came from."""
        settings = self.settings
        guesses: list[tuple[int, Alignment, ChromaEvidence | None]] = []
        strongest = sorted(hashed.values(), key=lambda e: -e.main_inliers)
        for e in strongest[: settings.peak_check_hash_candidates]:
            if e.main_inliers >= settings.peak_check_min_inliers:
                guesses.append((e.work_id, hash_alignment(e, settings), None))
        for ev, _ in chroma:
            if ev.similarity >= settings.peak_check_min_chroma:
                # chroma knows the pitch only modulo an octave
                guesses.extend(
                    (ev.work_id, alignment, ev) for alignment in chroma_alignments(ev, settings)
                )
        stored: dict[int, ReferencePeaks] = {}
        best: dict[int, tuple[PeakCheck, ChromaEvidence | None]] = {}
        n_bins = settings.bins_per_octave * settings.n_octaves
        for work_id, guess, source in guesses:
            if work_id not in stored:
                peaks = self._reference(work_id, references).peaks
                stored[work_id] = reference_peaks(peaks, n_bins)
            check = check_alignment(query.peaks, stored[work_id], guess, settings)
            if check is not None and (
                work_id not in best or check.probability < best[work_id][0].probability
            ):
                best[work_id] = (check, source)
        return best

    def _peak_match(
        self,
        work_id: int,
        check: PeakCheck,
        fmp: float,
        query: Fingerprint,
        hashed: HashEvidence | None,
        chroma: ChromaEvidence | None,
    ) -> Match:
        fps = self.settings.frames_per_second
        a = check.alignment
        q0, q1, r0, r1 = check.aligned_frames()
        section = Section(q0 / fps, q1 / fps, r0 / fps, r1 / fps, hashed.inliers if hashed else 0)
        match = self._match(
            work_id,
            "same_recording",
            fmp,
            query,
            a.tempo_ratio,
            a.pitch_bins / (self.settings.bins_per_octave // 12),
            section,
            (q1 - q0) / fps,
            hashed.inliers if hashed else 0,
            chroma.similarity if chroma else None,
            (section,),
        )
        return replace(match, matched_peaks=check.matched_peaks)

    def _chroma_match(self, ev: ChromaEvidence, fmp: float, query: Fingerprint) -> Match:
        aligned = Section(ev.query_start_s, ev.query_end_s, ev.ref_start_s, ev.ref_end_s, 0)
        coverage_s = ev.query_end_s - ev.query_start_s
        return self._match(
            ev.work_id,
            "same_composition",
            fmp,
            query,
            ev.tempo_ratio,
            ev.pitch_shift_semitones,
            aligned,
            coverage_s,
            0,
            ev.similarity,
            (),
        )

    def _match(
        self,
        work_id: int,
        relation: Relation,
        fmp: float,
        query: Fingerprint,
        tempo_ratio: float,
        pitch_shift_semitones: float,
        main: Section,
        coverage_s: float,
        matched_hashes: int,
        chroma_similarity: float | None,
        sections: tuple[Section, ...],
    ) -> Match:
        info = self.store.work(work_id)
        return Match(
            work_id=work_id,
            path=info.path if info else "",
            title=info.title if info else None,
            relation=relation,
            score=score_from_probability(fmp),
            false_match_probability=fmp,
            tempo_ratio=tempo_ratio,
            pitch_shift_semitones=pitch_shift_semitones,
            query_start_s=main.query_start_s,
            query_end_s=main.query_end_s,
            ref_start_s=main.ref_start_s,
            ref_end_s=main.ref_end_s,
            coverage=min(1.0, coverage_s / max(query.duration_s, 1e-9)),
            coverage_s=coverage_s,
            matched_hashes=matched_hashes,
            chroma_similarity=chroma_similarity,
            sections=sections,
        )

    def work_evidence(
        self, query: Fingerprint, work_id: int
    ) -> tuple[HashEvidence | None, ChromaEvidence | None]:
        """The raw evidence that ``query`` contains work ``work_id``: the verified hash matches
        (with every inlier's upload and reference frame) and the best chroma alignment.
        For pictures and reports; screening does not need it."""
        settings = self.settings
        votes = self._votes(query, self.indexes())
        hashed = verify_hashes(
            votes, work_id, settings.frames_per_second, settings.bins_per_octave // 12
        )
        reference = self.store.fingerprint(work_id)
        chroma = align_chroma(query, reference, work_id, settings)
        if chroma is not None:  # then a finer grid around the best scale, as screening does
            step = settings.chroma_scale_step
            fine = chroma.tempo_ratio * np.geomspace(1 / step, step, 7)
            chroma = align_chroma(query, reference, work_id, settings, fine) or chroma
        return hashed, chroma

    def peak_evidence(
        self,
        query: Fingerprint,
        work_id: int,
        hashed: HashEvidence | None,
        chroma: ChromaEvidence | None,
    ) -> PeakCheck | None:
        """The guided peak check of ``work_id`` from its hash and chroma evidence, as screening
        runs it (for pictures; ``None`` when neither gives an alignment)."""
        checks = self._peak_checks(
            query,
            {work_id: hashed} if hashed is not None else {},
            [(chroma, 1.0)] if chroma is not None else [],
        )
        return checks[work_id][0] if work_id in checks else None

    def hash_evidence(self, query: Fingerprint, indexes: LoadedIndexes) -> dict[int, HashEvidence]:
        """The verified hash evidence of every candidate work, best candidates first."""
        settings = self.settings
        votes = self._votes(query, indexes)
        ranked = candidate_works(
            votes,
            settings.candidate_works,
            settings.frames_per_second,
            settings.min_candidate_support,
        )
        evidence = {}
        for work_id, _ in ranked:
            e = verify_hashes(
                votes, work_id, settings.frames_per_second, settings.bins_per_octave // 12
            )
            if e is not None:
                evidence[work_id] = e
        return evidence

    def _votes(self, query: Fingerprint, indexes: LoadedIndexes) -> HashVotes:
        """Hash hits of ``query``; keys far more common than average are skipped (stop words)."""
        settings = self.settings
        hashes = fingerprint_hashes(query, settings, query=True)
        n_entries = sum(shard.ntotal for shard in indexes.hash_shards)
        max_hits = max(
            settings.min_bucket_cap, settings.bucket_cap_per_mean * n_entries / 2**KEY_BITS
        )
        return lookup_hashes(hashes, indexes, int(max_hits), settings.max_query_hits)

    def indexes(self) -> LoadedIndexes:
        """The searchable indexes, reloaded when another process changed the catalog."""
        key = self.store.index_key()
        if self._indexes is None or key != self._indexes_key:
            self._indexes = self.store.load_indexes()
            self._indexes_key = key
        return self._indexes

    # -- catalog management --------------------------------------------------------------------
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

    def stats(self) -> CatalogStats:
        raw = self.store.stats()
        works, hours = raw["works"], raw["seconds"] / 3600.0
        return CatalogStats(
            works=works,
            hours=hours,
            index_bytes=raw["index_bytes"],
            catalog_bytes=raw["catalog_bytes"],
            bytes_per_work=raw["catalog_bytes"] / works if works else 0.0,
            bytes_per_hour=raw["catalog_bytes"] / hours if hours else 0.0,
            hash_entries=raw["hash_entries"],
            chroma_vectors=raw["chroma_vectors"],
            shards=raw["shards"],
        )


def _with_metadata(item: NewWork, extra: dict) -> NewWork:
    from dataclasses import replace

    return replace(
        item,
        title=extra.get("title") or item.title,
        artist=extra.get("artist") or item.artist,
        metadata={**item.metadata, **extra},
    )


__all__ = ["Catalog", "CatalogError", "default_catalog_path", "expand_paths", "fingerprint_file"]
