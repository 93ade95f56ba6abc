"""``python -m benchmarks run [--quick | --smoke] [--corpus heldout] [--out FILE] [--data DIR]
[--scale]``."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from benchmarks.corpus import CORPORA
from benchmarks.engine import DEFAULT_ENGINE
from benchmarks.report import run_folder
from benchmarks.runner import REPO_ROOT, RunConfig, prepare, rerender, run

app = typer.Typer(add_completion=False, help="audiodup benchmark suite (issue #3).")
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "RESULTS.md"
DEFAULT_RESULTS = REPO_ROOT / "benchmarks" / "results.jsonl"
Opt = typer.Option
CorpusName = StrEnum("CorpusName", {name: name for name in CORPORA})
CORPUS_OPTION = Opt(
    help="tuning: the corpus the detector was built and tuned on; heldout: other packages' "
    "music, never used for either (its own cache folder, `heldout/`).",
)


def default_out(mode: str, corpus: str) -> Path:
    """``benchmarks/RESULTS.md``, or the run's folder beside it (:func:`run_folder`)."""
    return DEFAULT_OUT.parent / run_folder(mode, corpus) / DEFAULT_OUT.name


@app.command("run")
def run_cmd(
    quick: Annotated[bool, Opt("--quick", help="~12 works, ~6 negatives, 15 variants.")] = False,
    smoke: Annotated[bool, Opt("--smoke", help="CI smoke run on the bundled fixtures.")] = False,
    corpus: Annotated[CorpusName, CORPUS_OPTION] = CorpusName.tuning,
    out: Annotated[
        Path | None,
        Opt(
            help="Report; results.jsonl and plots/ go next to it. Default: benchmarks/RESULTS.md "
            "(--quick: benchmarks/quick/RESULTS.md, --smoke: benchmarks/smoke/RESULTS.md, "
            "--corpus heldout: benchmarks/heldout/RESULTS.md, with --quick heldout-quick/)."
        ),
    ] = None,
    data: Annotated[
        Path | None, Opt(help="Cache dir (default $AUDIODUP_BENCH_DATA, ~/.cache/audiodup-bench).")
    ] = None,
    seed: int = 0,
    engine: Annotated[str, Opt(help="module:Class with the Catalog interface.")] = DEFAULT_ENGINE,
    no_peer: Annotated[bool, Opt("--no-peer", help="Skip Chromaprint.")] = False,
    workers: Annotated[int, Opt(help="Processes for rendering and fpcalc (0: all cores).")] = 0,
    variants: Annotated[str | None, Opt(help="Comma-separated variant names.")] = None,
    max_catalog: int | None = None,
    max_negatives: int | None = None,
    scale: Annotated[
        bool, Opt("--scale", help="Also measure catalog-size scaling (slow).")
    ] = False,
    scale_sizes: str = "100,1000,10000",
    scale_duration: Annotated[float, Opt(help="Seconds per distractor work.")] = 30.0,
    scale_positives: int = 100,
    scale_negatives: int = 300,
) -> None:
    """Prepare data, build a catalog, screen every query, score and write the report."""
    if quick and smoke:
        raise typer.BadParameter("--quick and --smoke are exclusive")
    mode = "smoke" if smoke else "quick" if quick else "full"
    if out is None:
        out = default_out(mode, corpus.value)
    cfg = RunConfig(
        mode=mode,
        corpus=corpus.value,
        out=out.resolve(),
        data=data,
        seed=seed,
        engine=engine,
        peer=not no_peer,
        workers=workers or max(1, os.cpu_count() or 1),
        variants=tuple(v.strip() for v in variants.split(",")) if variants else None,
        max_catalog=max_catalog,
        max_negatives=max_negatives,
        scale=scale,
        scale_sizes=tuple(int(s) for s in scale_sizes.split(",") if s.strip()),
        scale_duration_s=scale_duration,
        scale_positives=scale_positives,
        scale_negatives=scale_negatives,
    )
    run(cfg)


@app.command("prepare")
def prepare_cmd(
    quick: Annotated[bool, Opt("--quick", help="Only what --quick needs.")] = False,
    corpus: Annotated[CorpusName, CORPUS_OPTION] = CorpusName.tuning,
    data: Annotated[Path | None, Opt(help="Cache dir.")] = None,
    seed: int = 0,
    workers: Annotated[int, Opt(help="Processes (0: all cores).")] = 0,
) -> None:
    """Fetch the corpus, render every query and fingerprint it with Chromaprint (no engine)."""
    cfg = RunConfig(
        mode="quick" if quick else "full",
        corpus=corpus.value,
        data=data,
        seed=seed,
        workers=workers or max(1, os.cpu_count() or 1),
    )
    typer.echo(f"{len(prepare(cfg))} queries ready")


@app.command("report")
def report_cmd(
    results: Path = DEFAULT_RESULTS,
    out: Path = DEFAULT_OUT,
) -> None:
    """Re-render the report (and plots) from results.jsonl without rerunning."""
    typer.echo(f"wrote {rerender(results, out.resolve())}")


@app.command("variants")
def variants_cmd() -> None:
    """List every variant with its family and the runs that use it."""
    from benchmarks.alterations import QUICK_VARIANTS, SMOKE_VARIANTS, VARIANTS

    for v in VARIANTS:
        tags = [
            t for t, ns in (("quick", QUICK_VARIANTS), ("smoke", SMOKE_VARIANTS)) if v.name in ns
        ]
        typer.echo(f"{v.family:12s} {v.name:50s} {' '.join(tags)}")


if __name__ == "__main__":
    app()
