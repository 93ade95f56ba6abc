"""Cold start of one ``audiodup screen`` process, and catalog bytes on disk, per catalog.

    python -m benchmarks.coldstart [--db DIR ...] [--runs 5]

Without ``--db`` it measures the bundled fixtures' catalog (built in a temporary folder) and the
benchmark's catalogs when they exist (``catalog-full`` and ``catalog-scaling`` in the benchmark
cache). Each catalog is screened with one fixture upload in a fresh process, ``--runs`` times;
the medians of wall time, user CPU and peak RSS (``/usr/bin/time``) are reported, with
``audiodup index stats --json``. Writes ``benchmarks/COLDSTART.md``, which the benchmark report
includes.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from .corpus import cache_dir
from .runner import git_commit, machine_info

app = typer.Typer(add_completion=False)
REPO = Path(__file__).resolve().parent.parent
UPLOAD = REPO / "fixtures" / "audio" / "uploads" / "mp3_work_02.mp3"
DEFAULT_OUT = REPO / "benchmarks" / "COLDSTART.md"
AUDIODUP = [sys.executable, "-m", "audiodup"]


def time_screen(db: Path, runs: int) -> tuple[float, float, float]:
    """Median wall seconds, user CPU seconds and peak RSS (MB) of ``audiodup screen``."""
    wall, user, rss = [], [], []
    for _ in range(runs):
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%e %U %M", *AUDIODUP, "screen", "--db", str(db), str(UPLOAD)],
            capture_output=True,
            text=True,
        )
        if proc.returncode not in (0, 1, 3):
            raise RuntimeError(f"screen failed: {_last_line(proc.stderr)}")
        e, u, m = proc.stderr.strip().splitlines()[-1].split()
        wall.append(float(e))
        user.append(float(u))
        rss.append(float(m) / 1024)
    return statistics.median(wall), statistics.median(user), statistics.median(rss)


def stats(db: Path) -> dict:
    out = subprocess.run(
        [*AUDIODUP, "index", "stats", "--db", str(db), "--json"], capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(_last_line(out.stderr))
    return json.loads(out.stdout)


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1].removeprefix("error: ") if lines else "no output"


def fixture_catalog(folder: Path) -> Path:
    db = folder / "fixtures"
    subprocess.run(
        [*AUDIODUP, "index", "add", "--db", str(db), str(REPO / "fixtures/audio/catalog")],
        check=True,
        capture_output=True,
    )
    return db


@app.command()
def main(
    db: Annotated[list[Path] | None, typer.Option(help="Catalogs to measure.")] = None,
    runs: int = 5,
    data: Path | None = None,
    out: Path = DEFAULT_OUT,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if db:
            catalogs = [(p.name, p) for p in db]
        else:
            cache = cache_dir(data)
            catalogs = [("bundled fixtures", fixture_catalog(Path(tmp)))]
            catalogs += [
                (label, cache / name)
                for label, name in (
                    ("benchmark catalog (real tracks)", "catalog-full"),
                    ("scaling catalog (real + generated works)", "catalog-scaling"),
                )
                if (cache / name / "catalog.sqlite").exists()
            ]
        rows = []
        for label, path in catalogs:
            try:
                s = stats(path)
                wall, user, rss = time_screen(path, runs)
            except RuntimeError as exc:
                typer.echo(f"error: {path}: {exc}", err=True)
                continue
            rows.append((label, s, wall, user, rss))
            print(
                f"{label}: {s['works']} works, {wall:.2f} s wall, {user:.2f} s user, "
                f"{rss:.0f} MB, {s['bytes_per_hour'] / 1e6:.3f} MB/h"
            )
    if not rows:
        typer.echo("error: no catalog could be measured; nothing written", err=True)
        raise typer.Exit(2)
    load = os.getloadavg()
    m = machine_info()
    lines = [
        "## Cold start and catalog size on disk",
        "",
        f"`python -m benchmarks.coldstart` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"commit {git_commit()}, {m.get('cpu', '')}, {m.get('cores', '')} cores; 1-minute load "
        f"average {load[0]:.1f} at the end): `audiodup screen --db DB "
        f"fixtures/audio/uploads/{UPLOAD.name}` in a fresh process, median of {runs} runs; "
        "sizes from `audiodup index stats --json`.",
        "",
        "| catalog | works | hours | shards | wall s | user CPU s | peak RSS MB "
        "| catalog bytes | MB per hour |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, s, wall, user, rss in rows:
        lines.append(
            f"| {label} | {s['works']:,} | {s['hours']:.2f} | {s['shards']} | {wall:.2f} | "
            f"{user:.2f} | {rss:.0f} | {s['catalog_bytes']:,} | {s['bytes_per_hour'] / 1e6:.3f} |"
        )
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    app()
