"""A stand-in with the audiodup Catalog interface, for testing the runner without the engine.

It cheats on purpose: it reads the query's JSON sidecar (written by ``benchmarks.queries``) and
answers correctly with probability ``FAKE_HIT_RATE`` (env ``AUDIODUP_FAKE_HIT_RATE``, default
0.8), otherwise returns a random verdict and work. Use with ``--engine
benchmarks.fake_catalog:FakeCatalog``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf


@dataclass(frozen=True)
class AddResult:
    path: Path
    work_id: int | None
    status: str
    error: str | None = None


@dataclass(frozen=True)
class Match:
    work_id: int
    path: str
    score: float
    false_match_probability: float
    tempo_ratio: float
    pitch_shift_semitones: float
    query_start_s: float
    query_end_s: float
    ref_start_s: float
    ref_end_s: float
    coverage: float
    matched_hashes: int
    relation: str = "same_recording"


@dataclass(frozen=True)
class Verdict:
    path: str
    verdict: str
    matches: list[Match] = field(default_factory=list)
    error: str | None = None
    fingerprint_s: float = 0.0
    search_s: float = 0.0


@dataclass(frozen=True)
class CatalogStats:
    works: int
    hours: float
    index_bytes: int
    bytes_per_work: float


class FakeCatalog:
    def __init__(self, directory: Path):
        self.directory = directory
        self.works: dict[int, tuple[str, float, str]] = {}  # id -> (path, duration, stem)
        self.rng = np.random.default_rng(0)
        self.hit_rate = float(os.environ.get("AUDIODUP_FAKE_HIT_RATE", "0.8"))

    @classmethod
    def open(cls, path: Path, create: bool = True) -> FakeCatalog:
        Path(path).mkdir(parents=True, exist_ok=create)
        return cls(Path(path))

    def add_paths(self, paths: list[Path], workers: int = 1) -> list[AddResult]:
        out = []
        for p in paths:
            try:
                info = sf.info(str(p))
            except Exception as e:  # noqa: BLE001
                out.append(AddResult(Path(p), None, "failed", str(e)))
                continue
            known = [w for w, (q, _, _) in self.works.items() if q == str(p)]
            if known:
                out.append(AddResult(Path(p), known[0], "present"))
                continue
            wid = len(self.works) + 1
            self.works[wid] = (str(p), info.duration, Path(p).stem)
            out.append(AddResult(Path(p), wid, "added"))
        return out

    def _truth(self, query: Path) -> dict | None:
        meta = query.with_suffix(".json")
        return json.loads(meta.read_text()) if meta.exists() else None

    def screen(self, query: Path) -> Verdict:
        t0 = time.perf_counter()
        truth = self._truth(Path(query))
        true_wid = None
        if truth is not None:
            stem = truth["track_id"].split("__", 1)[-1]
            for wid, (_, _, work_stem) in self.works.items():
                if work_stem == stem:
                    true_wid = wid
        fp_s = time.perf_counter() - t0
        if true_wid is not None and truth and self.rng.random() < self.hit_rate:
            t_ratio = truth["tempo_ratio"] * (1 + self.rng.normal(0, 0.003))
            pitch = truth["pitch_shift_semitones"] + self.rng.normal(0, 0.05)
            m = self._match(true_wid, 0.999, 1e-12, t_ratio, pitch, truth)
            return Verdict(str(query), "duplicate", [m], None, fp_s, 0.001)
        if not self.works:
            return Verdict(str(query), "clean", [], None, fp_s, 0.001)
        wid = int(self.rng.choice(list(self.works)))
        verdict = str(
            self.rng.choice(["clean", "clean", "suspect", "duplicate"], p=[0.5, 0.3, 0.15, 0.05])
        )
        m = self._match(wid, 0.3, 10 ** -self.rng.uniform(0, 4), 1.0, 0.0, truth)
        return Verdict(str(query), verdict, [m] if verdict != "clean" else [], None, fp_s, 0.001)

    def _match(self, wid, score, fmp, tempo, pitch, truth) -> Match:
        q0 = truth["query_offset_s"] if truth else 0.0
        r0 = truth["ref_start_s"] if truth else 0.0
        return Match(
            work_id=wid,
            path=self.works[wid][0],
            score=score,
            false_match_probability=fmp,
            tempo_ratio=tempo,
            pitch_shift_semitones=pitch,
            query_start_s=q0,
            query_end_s=q0 + 5,
            ref_start_s=r0,
            ref_end_s=r0 + 5 * tempo,
            coverage=0.5,
            matched_hashes=42,
        )

    def stats(self) -> CatalogStats:
        n = len(self.works)
        hours = sum(d for _, d, _ in self.works.values()) / 3600
        return CatalogStats(n, hours, 1000 * n, 1000.0 if n else 0.0)

    def close(self) -> None:
        pass
