"""The chroma false-match probability on chance alignments of synthetic music: short queries of
chord-like chroma (eight frames per chord, so neighbouring frames are far from independent)
searched against a catalog of unrelated works over every work, rotation, offset and the fine
tempo grid. Whatever the query, the share of chance alignments with FMP <= p stays under p
(issue #12, item 2; the corpus-scale check is ``python -m benchmarks.calibration_check``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import stats

from audiodup.fingerprint import Fingerprint
from audiodup.match import align_chroma
from audiodup.peaks import PEAK_DTYPE
from audiodup.settings import DEFAULT_SETTINGS
from audiodup.verdict import chroma_false_match_probability

# one tempo window: the search below covers all of it, so the catalog's chance maximum is the
# maximum over what was aligned
S = dataclasses.replace(DEFAULT_SETTINGS, tempo_ratio_min=0.93, tempo_ratio_max=1.07)
FINE = np.geomspace(1 / S.chroma_scale_step, S.chroma_scale_step, 7)


def chords(rng: np.random.Generator, n_frames: int, frames_per_chord: int) -> np.ndarray:
    steps = rng.random((n_frames // frames_per_chord + 2, 12)) ** 4  # a few strong classes
    x = np.repeat(steps, frames_per_chord, axis=0)[:n_frames]
    x += 0.05 * rng.random(x.shape)
    x -= x.mean(axis=1, keepdims=True)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def fingerprint(chroma: np.ndarray) -> Fingerprint:
    return Fingerprint(
        peaks=np.zeros(0, PEAK_DTYPE),
        chroma=chroma.astype(np.float32),
        tuning_semitones=0.0,
        duration_s=len(chroma) / S.chroma_fps,
        recipe=S.recipe,
    )


@pytest.mark.parametrize(("query_s", "frames_per_chord"), [(8.0, 8), (15.0, 4)])
def test_chance_chroma_alignments_are_calibrated(query_s: float, frames_per_chord: int) -> None:
    rng = np.random.default_rng(int(query_s * 10 + frames_per_chord))
    catalog = [
        fingerprint(chords(rng, int(90 * S.chroma_fps), frames_per_chord)) for _ in range(10)
    ]
    n_queries = 300
    fmps = []
    for _ in range(n_queries):
        query = fingerprint(chords(rng, int(query_s * S.chroma_fps), frames_per_chord))
        aligned = [align_chroma(query, ref, w, S, FINE) for w, ref in enumerate(catalog)]
        aligned = [ev for ev in aligned if ev is not None]
        best = max(aligned, key=lambda ev: ev.similarity)
        fmps.append(chroma_false_match_probability(best, aligned, S, len(catalog)))
    fmps = np.array(fmps)
    for p in (0.1, 0.01):
        k = int(np.sum(fmps <= p))
        assert k <= stats.binom.ppf(0.999, n_queries, p), (p, k, np.sort(fmps)[:5])
    # and the model still tells a copy from chance: a 10-s excerpt, transposed
    work = catalog[3].chroma
    copy = fingerprint(np.roll(work[100 : 100 + int(query_s * S.chroma_fps)], 5, axis=1))
    aligned = [align_chroma(copy, ref, w, S, FINE) for w, ref in enumerate(catalog)]
    best = max(aligned, key=lambda ev: ev.similarity)
    assert best.work_id == 3 and best.similarity > 0.95
    assert chroma_false_match_probability(best, aligned, S, len(catalog)) < 1e-3
