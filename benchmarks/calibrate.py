"""Re-measure the chance models of ``audiodup.verdict`` and ``audiodup.peakcheck`` on the corpus.

Screens a seeded sample of the benchmark's rendered queries against the full benchmark catalog.
Evidence about a work that is *not* the query's source (nor a track of its group, nor known shared
audio) is chance.

* Default: the excess of every chance hash line over the 3-hash minimum is fitted, by maximum
  likelihood, as a geometric law with mean ``base + per_vote * votes`` (the model ``verdict``
  uses), and the tail of the fitted, the current and an optional tested prior is compared with
  what was observed.
* ``--peaks``: the guided peak checks that screening runs when hashes are not decisive: how far
  chance checks and real ones (the source) exceed the shifted-offset chance rate, and the share of
  upload peaks that coincide.

    python -m benchmarks.calibrate --queries 400 [--seed 1] [--base B --per-vote V]
    python -m benchmarks.calibrate --peaks --queries 300

Needs a previous full run (``python -m benchmarks run``): its ``results.jsonl`` lists the queries
and its catalog is reused.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn

import numpy as np
import typer
from scipy import optimize, stats

from audiodup import screening
from audiodup.audio import load_audio
from audiodup.catalog import Catalog
from audiodup.errors import AudiodupError
from audiodup.fingerprint import Fingerprint, fingerprint_audio
from audiodup.settings import Settings
from audiodup.verdict import MIN_LINE_HASHES

from .corpus import Corpus, cache_dir
from .engine import _key

app = typer.Typer(add_completion=False)
REPO = Path(__file__).resolve().parent.parent
# real shared audio that the corpus split does not list (RESULTS.md, "unlisted shared audio")
KNOWN_SHARED = ("HellFortressTwo", "HellFortressEntrance")

Measure = Callable[[Catalog, Fingerprint], list[tuple[int, tuple]]]


def hash_lines(catalog: Catalog, query: Fingerprint) -> list[tuple[int, tuple]]:
    """``(work_id, (votes, main_inliers))`` of every verified candidate."""
    evidence = screening.hash_evidence(query, catalog.indexes(), catalog.settings)
    return [(w, (e.votes, e.main_inliers)) for w, e in evidence.items()]


def peak_checks(catalog: Catalog, query: Fingerprint) -> list[tuple[int, tuple]]:
    """``(work_id, (matched, checked, chance_peaks))`` of the guided peak checks, each made in
    full (none given up after its coarse sweep): the floors are those of whole checks."""
    s = dataclasses.replace(catalog.settings, peak_check_coarse_min_rate=0.0)
    indexes, reference = catalog.indexes(), catalog.fingerprint
    n_works = max(int(indexes.live.sum()), 1)
    chroma = screening.chroma_evidence(query, indexes, n_works, s, reference)
    hashed = screening.hash_evidence(query, indexes, s)
    checks = screening.peak_checks(query, hashed, chroma, s, reference)
    return [
        (w, (f.check.matched_peaks, f.check.checked_peaks, f.check.chance_peaks))
        for w, f in checks.items()
    ]


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def open_run(
    data: Path | None, results: Path, catalog_name: str, needs: str
) -> tuple[Corpus, Catalog, list[dict]]:
    """The corpus, a benchmark catalog and the query records of a previous run (or one error
    line saying what is missing, exit 2)."""
    cache = cache_dir(data)
    try:
        corpus = Corpus.from_json(json.loads((cache / "corpus.json").read_text()))
        catalog = Catalog.open(cache / catalog_name, create=False)
        return corpus, catalog, read_queries(results)
    except (OSError, ValueError, KeyError, AudiodupError) as exc:
        fail(f"{exc} ({needs})")


def read_queries(results: Path) -> list[dict]:
    """The query records of a benchmark ``results.jsonl``."""
    records = []
    with results.open() as fh:
        for number, line in enumerate(fh, start=1):
            try:
                row = json.loads(line)
            except ValueError:
                raise ValueError(f"{results}:{number}: not a JSON record") from None
            if row.get("type") == "query":
                records.append(row["query"])
    if not records:
        raise ValueError(f"{results}: no query records")
    return records


def collect(
    catalog: Catalog, sample: list[dict], group_of: dict, work_group: dict, measure: Measure
) -> tuple[list[tuple], np.ndarray, list[str]]:
    """``measure`` rows over the sample, whether each is chance, and a readable origin."""
    s = catalog.settings
    rows, chance, origin = [], [], []
    for q in sample:
        try:
            query = fingerprint_audio(load_audio(q["path"], s), s, query=True)
        except AudiodupError as exc:  # a rendered query deleted from the cache, say
            typer.echo(f"error: {q['path']}: {exc}; skipped", err=True)
            continue
        for work_id, row in measure(catalog, query):
            rows.append(row)
            origin.append(f"{q['query_id']} ~ {Path(catalog.work(work_id).path).name}")
            related = work_group.get(work_id) == group_of.get(q["track_id"])
            shared = all(name in origin[-1] for name in KNOWN_SHARED)
            chance.append(not related and not shared)
    return rows, np.array(chance, dtype=bool), origin


def fit_geometric(votes: np.ndarray, excess: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood ``(base, per_vote)`` of a geometric excess with a linear mean."""

    def nll(params: np.ndarray) -> float:
        mean = np.exp(params[0]) + np.exp(params[1]) * votes
        q = mean / (1.0 + mean)
        with np.errstate(divide="ignore", invalid="ignore"):  # q -> 0 when no excess at all
            return -float(np.sum(np.where(excess > 0, excess * np.log(q), 0.0) + np.log1p(-q)))

    res = optimize.minimize(nll, x0=np.log([0.1, 2e-4]), method="Nelder-Mead")
    return float(np.exp(res.x[0])), float(np.exp(res.x[1]))


def tail_table(votes, excess, base, per_vote, levels=(1e-2, 1e-3, 1e-4)) -> list[str]:
    mean = base + per_vote * votes
    p = (mean / (1.0 + mean)) ** excess
    return [
        f"  P <= {level:g}: observed {int(np.sum(p <= level))}, expected {level * len(p):.1f}"
        for level in levels
    ]


def report_hash_lines(s: Settings, rows, chance, origin, tested: tuple | None) -> None:
    votes = np.array([r[0] for r in rows], dtype=np.float64)[chance]
    inliers = np.array([r[1] for r in rows], dtype=np.float64)[chance]
    origin = [o for o, c in zip(origin, chance, strict=True) if c]
    excess = np.maximum(inliers - MIN_LINE_HASHES, 0)
    print(f"{len(excess)} chance candidates")
    print(f"excess: mean {excess.mean():.3f}, max {excess.max():.0f}")
    for i in np.argsort(-excess)[:5]:
        print(f"  largest: excess {excess[i]:.0f}, votes {votes[i]:.0f}: {origin[i]}")
    priors = {"fitted": fit_geometric(votes, excess)}
    priors["current"] = (s.chance_excess_base, s.chance_excess_per_vote)
    if tested is not None:
        priors["tested"] = tested
    for name, (base, per_vote) in priors.items():
        print(f"{name} prior: base {base:.4f}, per_vote {per_vote:.6f}")
        print(*tail_table(votes, excess, base, per_vote), sep="\n")


def report_peak_checks(s: Settings, rows, chance, origin) -> None:
    n_cells = (2 * round(s.peak_check_tempo_span / s.peak_check_tempo_step) + 1) * (
        2 * round(s.peak_check_offset_span_s * s.frames_per_second) + 1
    )
    matched = np.array([r[0] for r in rows], dtype=float)
    checked = np.array([r[1] for r in rows], dtype=float)
    expected = np.array([r[2] for r in rows])
    print(f"{len(rows)} checks: {chance.sum()} of other works, {(~chance).sum()} of the source")
    ratio, rate = matched / expected, matched / checked
    print(
        f"matched / chance, other works: max {ratio[chance].max():.2f}, "
        f"99th pct {np.percentile(ratio[chance], 99):.2f}"
    )
    for name, values, floors in (
        ("matched / chance", ratio, (3.0, 4.0, 5.0, 6.0, 8.0)),
        ("matched / checked", rate, (0.15, 0.2, 0.25, 0.3)),
    ):
        for floor in floors:
            print(
                f"  {name} >= {floor}: other works {np.mean(values[chance] >= floor):.3f}, "
                f"source {np.mean(values[~chance] >= floor):.3f}"
            )
    print(f"matched / checked, other works: max {rate[chance].max():.3f}")
    both = (ratio >= s.peak_check_min_ratio) & (rate >= s.peak_check_min_rate)
    print(
        f"  both floors in use ({s.peak_check_min_ratio:g}x chance, "
        f"{s.peak_check_min_rate:.0%} of the peaks): other works {np.mean(both[chance]):.3f}, "
        f"source {np.mean(both[~chance]):.3f}"
    )
    for i in np.argsort(-np.where(chance, ratio, 0))[:8]:
        print(f"  {matched[i]:.0f} / {expected[i]:.1f} ({checked[i]:.0f} checked): {origin[i]}")
    for inflation in (1.0, 2.0, 3.0):
        log_p = -np.log10(
            np.maximum(stats.poisson.sf(matched - 1, expected * inflation) * n_cells, 1e-300)
        )
        print(
            f"  chance x{inflation}: other works max -log10 p {log_p[chance].max():.1f}; "
            f"source checks with -log10 p >= 8: {np.mean(log_p[~chance] >= 8):.3f}"
        )


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
    corpus, catalog, records = open_run(
        data, results, "catalog-full", "needs a full benchmark run first: python -m benchmarks run"
    )
    group_of = {t.track_id: t.group for t in corpus.tracks}
    track_of_path = {_key(t.path): t.track_id for t in corpus.tracks}
    work_group = {
        w.work_id: group_of.get(track_of_path.get(_key(w.path), ""), "") for w in catalog.works()
    }
    sample = random.Random(seed).sample(records, min(queries, len(records)))
    measure = peak_checks if peaks else hash_lines
    rows, chance, origin = collect(catalog, sample, group_of, work_group, measure)
    print(f"{len(sample)} queries")
    if chance.sum() == 0 or (peaks and chance.all()):
        fail("too few checks to calibrate on; sample more queries (--queries)")
    if peaks:
        report_peak_checks(catalog.settings, rows, chance, origin)
    else:
        tested = (base, per_vote) if base is not None and per_vote is not None else None
        report_hash_lines(catalog.settings, rows, chance, origin, tested)


if __name__ == "__main__":
    app()
