"""Re-measure the chance-match prior of ``audiodup.verdict`` on the benchmark corpus.

Screens a seeded sample of the benchmark's rendered queries against the full benchmark catalog and
keeps every verified candidate that is *not* the query's source (nor a track of its group): those
lines are chance. Their excess over the 3-hash minimum is fitted, by maximum likelihood, as a
geometric law with mean ``base + per_vote * votes`` (the model ``verdict`` uses), and the tail of
the fitted model is compared with what was observed.

    python -m benchmarks.calibrate --queries 500

Needs a previous full run (``python -m benchmarks run``): its ``results.jsonl`` lists the queries
and its catalog is reused.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from scipy import optimize, stats

from audiodup.audio import load_audio
from audiodup.catalog import Catalog
from audiodup.fingerprint import fingerprint_audio
from audiodup.match import candidate_works, verify_hashes
from audiodup.verdict import MIN_LINE_HASHES

from .corpus import Corpus, cache_dir
from .engine import _key

app = typer.Typer(add_completion=False)
REPO = Path(__file__).resolve().parent.parent
KNOWN_SHARED = ("HellFortressTwo", "HellFortressEntrance")


def chance_lines(
    catalog: Catalog, query_path: str, exclude: set[int]
) -> list[tuple[int, int, int]]:
    """``(work_id, votes, main_inliers)`` of every verified candidate outside ``exclude``."""
    s = catalog.settings
    query = fingerprint_audio(load_audio(query_path, s), s, query=True)
    votes = catalog._votes(query, catalog.indexes())
    ranked = candidate_works(votes, s.candidate_works, s.frames_per_second, s.min_candidate_support)
    out = []
    for work_id, _ in ranked:
        if work_id in exclude:
            continue
        e = verify_hashes(votes, work_id, s.frames_per_second, s.bins_per_octave // 12)
        if e is not None:
            out.append((work_id, e.votes, e.main_inliers))
    return out


def peak_checks(
    catalog: Catalog, query_path: str, exclude: set[int]
) -> list[tuple[bool, int, int, float]]:
    """``(chance, matched, checked, chance_peaks)`` of the guided peak checks screening runs when
    hashes are not decisive; ``chance`` is False for the query's source (or its group)."""
    s = catalog.settings
    query = fingerprint_audio(load_audio(query_path, s), s, query=True)
    indexes = catalog.indexes()
    votes = catalog._votes(query, indexes)
    hashed = {}
    for work_id, _ in candidate_works(
        votes, s.candidate_works, s.frames_per_second, s.min_candidate_support
    ):
        e = verify_hashes(votes, work_id, s.frames_per_second, s.bins_per_octave // 12)
        if e is not None:
            hashed[work_id] = e
    chroma = catalog._chroma_evidence(query, indexes, max(int(indexes.live.sum()), 1))
    return [
        (work_id not in exclude, c.matched_peaks, c.checked_peaks, c.chance_peaks, work_id)
        for work_id, c, _ in catalog._peak_checks(query, hashed, chroma)
    ]


def fit_geometric(votes: np.ndarray, excess: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood ``(base, per_vote)`` of a geometric excess with a linear mean."""

    def nll(params: np.ndarray) -> float:
        mean = np.exp(params[0]) + np.exp(params[1]) * votes
        q = mean / (1.0 + mean)
        return -float(np.sum(excess * np.log(q) + np.log1p(-q)))

    res = optimize.minimize(nll, x0=np.log([0.1, 2e-4]), method="Nelder-Mead")
    return float(np.exp(res.x[0])), float(np.exp(res.x[1]))


def tail_table(votes, excess, base, per_vote, levels=(1e-2, 1e-3, 1e-4)) -> list[str]:
    mean = base + per_vote * votes
    p = (mean / (1.0 + mean)) ** excess
    return [
        f"  P <= {level:g}: observed {int(np.sum(p <= level))}, expected {level * len(p):.1f}"
        for level in levels
    ]


@app.command()
def main(
    queries: Annotated[int, typer.Option(help="Queries sampled from results.jsonl.")] = 500,
    seed: int = 0,
    results: Path = REPO / "benchmarks" / "results.jsonl",
    data: Path | None = None,
    peaks: Annotated[bool, typer.Option("--peaks", help="Calibrate the peak check.")] = False,
    base: Annotated[float | None, typer.Option(help="Also test this prior base.")] = None,
    per_vote: Annotated[float | None, typer.Option(help="Also test this prior slope.")] = None,
) -> None:
    cache = cache_dir(data)
    corpus = Corpus.from_json(json.loads((cache / "corpus.json").read_text()))
    group_of = {t.track_id: t.group for t in corpus.tracks}
    track_of_path = {_key(t.path): t.track_id for t in corpus.tracks}
    catalog = Catalog.open(cache / "catalog-full")
    work_group = {
        w.work_id: group_of.get(track_of_path.get(_key(w.path), ""), "")
        for w in catalog.store.works()
    }
    records = []
    with results.open() as fh:
        for line in fh:
            row = json.loads(line)
            if row.get("type") == "query":
                records.append(row["query"])
    sample = random.Random(seed).sample(records, min(queries, len(records)))
    if peaks:
        report_peak_checks(catalog, sample, group_of, work_group)
        return
    rows, origin = [], []
    for q in sample:
        group = group_of.get(q["track_id"])
        exclude = {w for w, g in work_group.items() if g == group}
        for work_id, n_votes, inliers in chance_lines(catalog, q["path"], exclude):
            rows.append((n_votes, inliers))
            origin.append(f"{q['query_id']} ~ {Path(catalog.store.work(work_id).path).name}")
    votes = np.array([r[0] for r in rows], dtype=np.float64)
    excess = np.maximum(np.array([r[1] for r in rows], dtype=np.float64) - MIN_LINE_HASHES, 0)
    fit_base, fit_per_vote = fit_geometric(votes, excess)
    s = catalog.settings
    print(f"{len(rows)} chance candidates from {len(sample)} queries")
    print(f"excess: mean {excess.mean():.3f}, max {excess.max():.0f}")
    print(f"fitted prior: base {fit_base:.4f}, per_vote {fit_per_vote:.6f}")
    print(*tail_table(votes, excess, fit_base, fit_per_vote), sep="\n")
    if base is not None and per_vote is not None:
        print(f"tested prior: base {base}, per_vote {per_vote}")
        print(*tail_table(votes, excess, base, per_vote), sep="\n")
    for i in np.argsort(-excess)[:5]:
        print(f"  largest: excess {excess[i]:.0f}, votes {votes[i]:.0f}: {origin[i]}")
    print(f"current prior: base {s.chance_excess_base}, per_vote {s.chance_excess_per_vote}")
    print(*tail_table(votes, excess, s.chance_excess_base, s.chance_excess_per_vote), sep="\n")


def report_peak_checks(catalog: Catalog, sample, group_of, work_group) -> None:
    rows, origin = [], []
    for q in sample:
        group = group_of.get(q["track_id"])
        exclude = {w for w, g in work_group.items() if g == group}
        for row in peak_checks(catalog, q["path"], exclude):
            rows.append(row)
            origin.append(f"{q['query_id']} ~ {Path(catalog.store.work(row[4]).path).name}")
    s = catalog.settings
    n_cells = (2 * round(s.peak_check_tempo_span / s.peak_check_tempo_step) + 1) * (
        2 * round(s.peak_check_offset_span_s * s.frames_per_second) + 1
    )
    # real shared audio the corpus split does not list (RESULTS.md, "unlisted shared audio")
    shared = [all(name in o for name in KNOWN_SHARED) for o in origin]
    chance = np.array([r[0] and not known for r, known in zip(rows, shared, strict=True)])
    matched = np.array([r[1] for r in rows], dtype=float)
    expected = np.array([r[3] for r in rows])
    print(f"{len(rows)} checks: {chance.sum()} of other works, {(~chance).sum()} of the source")
    ratio = matched / expected
    print(
        f"matched / chance, other works: max {ratio[chance].max():.2f}, "
        f"99th pct {np.percentile(ratio[chance], 99):.2f}"
    )
    for floor in (3.0, 4.0, 5.0, 6.0, 8.0):
        print(
            f"  ratio >= {floor}: other works {np.mean(ratio[chance] >= floor):.3f}, "
            f"source {np.mean(ratio[~chance] >= floor):.3f}"
        )
    rate = matched / np.array([r[2] for r in rows])
    for floor in (0.15, 0.2, 0.25, 0.3):
        print(
            f"  matched / checked >= {floor}: other works {np.mean(rate[chance] >= floor):.3f}, "
            f"source {np.mean(rate[~chance] >= floor):.3f}"
        )
    for i in np.argsort(-np.where(chance, ratio, 0))[:8]:
        print(f"  {matched[i]:.0f} / {expected[i]:.1f} ({rows[i][2]} checked): {origin[i]}")
    for inflation in (1.0, 2.0, 3.0, 4.0, 5.0):
        log_p = -np.log10(
            np.maximum(stats.poisson.sf(matched - 1, expected * inflation) * n_cells, 1e-300)
        )
        print(
            f"  chance x{inflation}: other works max -log10 p {log_p[chance].max():.1f}; "
            f"source checks with -log10 p >= 8: {np.mean(log_p[~chance] >= 8):.3f}"
        )


if __name__ == "__main__":
    app()
