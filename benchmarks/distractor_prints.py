"""Distractor works made at the fingerprint level, for catalogs of 10^4-10^5 works (issue #14).

Synthesising audio for 10^5 works of real length costs about 10 CPU-hours; a distractor is
instead a :class:`~audiodup.fingerprint.Fingerprint` assembled from the stored fingerprints of
real works (the benchmark catalog), so the store hashes and indexes it like any other work:

* **a mosaic of sections**: 4-12 s sections of randomly chosen source works, at random source
  offsets, one after another until the drawn length (mean ``mean_duration_s``, 3.5 min);
* **each section moved**: time-scaled by a tempo factor (0.85-1.18), pitch-shifted by whole
  semitones (-5..+6; chroma rotated to match);
* **two tracks mixed**: a share of the sections overlays a second source's section (the union of
  both peak sets, thinned back to the catalog density; chroma rows summed);
* **notes moved, peaks jittered**: every peak moves by a little time (``jitter_frames``) and a
  share of the notes of a section by a semitone up or down (``note_move_share``), so the
  triplets are new ones: the hash keys of a distractor are not its
  sources' keys replayed (hash keys are tempo- and pitch-invariant, so moving a whole section
  alone would keep them).

Deterministic: distractor ``i`` of seed ``s`` depends only on ``(s, i)`` and the sources.
Sources should exclude the works whose copies are screened as positives (``split_sources``):
a distractor then holds no stretch of a positive's source, however short.

    python -m benchmarks.distractor_prints stats [--n 113] [--out benchmarks/DISTRACTORS.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiodup.fingerprint import Fingerprint, fingerprint_hashes
from audiodup.peaks import PEAK_DTYPE, thin_peaks
from audiodup.settings import DEFAULT_SETTINGS, PEAK_BIN_STEPS, Settings
from audiodup.store import NewWork

REPO = Path(__file__).resolve().parents[1]
DISTRACTOR_PREFIX = "distractor:"


@dataclass(frozen=True)
class SourcePrint:
    """A real work's stored fingerprint, the material distractors are cut from."""

    name: str
    fingerprint: Fingerprint


@dataclass(frozen=True)
class DistractorRecipe:
    """How distractors are drawn (lengths in seconds of the distractor)."""

    mean_duration_s: float = 210.0
    min_duration_s: float = 90.0
    max_duration_s: float = 480.0
    section_s: tuple[float, float] = (4.0, 12.0)
    tempo_range: tuple[float, float] = (0.85, 1.18)  # source seconds per distractor second
    semitone_range: tuple[int, int] = (-5, 6)
    mix_share: float = 0.3
    jitter_frames: float = 1.5  # std of each peak's time move, analysis frames (23 ms)
    # share of pitch classes a section moves to a neighbouring semitone: new melodies on the same
    # lattice; a repeated note stays one note (moving peaks one by one, or by a Gaussian, blurs
    # the frequency differences that real music concentrates on 0 and on its intervals)
    note_move_share: float = 0.1
    note_map: str = "class"  # "class": one move per pitch class; "note": per semitone


DEFAULT_RECIPE = DistractorRecipe()


# -- sources -------------------------------------------------------------------------------------
def load_sources(catalog_dir: Path) -> list[SourcePrint]:
    """The stored fingerprint of every live work but the distractors, by work id (the catalog
    is only read)."""
    from audiodup.catalog import Catalog

    with Catalog.open(catalog_dir) as catalog:
        return [
            SourcePrint(w.path, catalog.fingerprint(w.work_id))
            for w in sorted(catalog.works(), key=lambda w: w.work_id)
            if not is_distractor(w.path)
        ]


def split_sources(names: Sequence[str], seed: int = 0) -> tuple[frozenset[str], frozenset[str]]:
    """``(positives, material)``: a seeded half of the works whose copies are screened, and the
    other half, which distractors are cut from."""
    order = np.random.default_rng([seed, 0x5917]).permutation(len(names))
    half = len(names) // 2
    ordered = [sorted(names)[i] for i in order]
    return frozenset(ordered[:half]), frozenset(ordered[half:])


# -- one distractor ------------------------------------------------------------------------------
def material_sources(catalog_dir: Path, seed: int = 0) -> tuple[frozenset[str], list[SourcePrint]]:
    """``(positives, material)`` of the catalog's real works (:func:`split_sources`): the names
    of the works whose copies are screened, and the fingerprints distractors are cut from."""
    sources = load_sources(catalog_dir)
    positives, material = split_sources([s.name for s in sources], seed)
    return positives, [s for s in sources if s.name in material]


def distractor_print(
    sources: Sequence[SourcePrint],
    index: int,
    seed: int = 0,
    recipe: DistractorRecipe = DEFAULT_RECIPE,
    settings: Settings = DEFAULT_SETTINGS,
) -> Fingerprint:
    """Distractor ``index`` of ``seed``: a fingerprint cut, moved, mixed and jittered from
    ``sources`` (see the module docstring)."""
    rng = np.random.default_rng([seed, index, 0xD157])
    fps = settings.frames_per_second
    n_bins = settings.bins_per_octave * settings.n_octaves
    sigma = np.sqrt(np.log(1.0 + 0.35**2))  # lognormal lengths with a 35 % spread
    duration_s = float(
        np.clip(
            recipe.mean_duration_s * rng.lognormal(-(sigma**2) / 2, sigma),
            recipe.min_duration_s,
            recipe.max_duration_s,
        )
    )
    peak_parts: list[np.ndarray] = []
    chroma_parts: list[np.ndarray] = []
    start_s = 0.0
    while start_s < duration_s:
        length_s = min(float(rng.uniform(*recipe.section_s)), duration_s - start_s)
        n_chroma = int(round((start_s + length_s) * settings.chroma_fps)) - int(
            round(start_s * settings.chroma_fps)
        )
        layers = 2 if rng.random() < recipe.mix_share else 1
        chroma = np.zeros((max(n_chroma, 0), 12), np.float32)
        for _ in range(layers):
            source = sources[int(rng.integers(len(sources)))].fingerprint
            tempo = float(np.exp(rng.uniform(*np.log(recipe.tempo_range))))
            semitones = int(rng.integers(recipe.semitone_range[0], recipe.semitone_range[1] + 1))
            peaks, rows = _moved_section(
                source, start_s, length_s, tempo, semitones, n_chroma, rng, settings
            )
            peaks["bin"] += _note_moves(peaks["bin"], recipe, rng, settings)
            peak_parts.append(peaks)
            chroma += rows
        chroma_parts.append(chroma)
        start_s += length_s
    peaks = np.concatenate(peak_parts) if peak_parts else np.zeros(0, PEAK_DTYPE)
    frame = peaks["frame"].astype(np.float64) + rng.normal(0, recipe.jitter_frames, len(peaks))
    bins = peaks["bin"].astype(np.float64)
    keep = (frame >= 0) & (frame < duration_s * fps) & (bins >= 0) & (bins <= n_bins - 1)
    out = np.zeros(int(keep.sum()), PEAK_DTYPE)
    out["frame"] = np.round(frame[keep])
    out["bin"] = np.round(bins[keep] * PEAK_BIN_STEPS) / PEAK_BIN_STEPS
    out["strength"] = peaks["strength"][keep]
    out = out[np.argsort(out["frame"], kind="stable")]
    # mixed and sped-up sections hold too many peaks: back to the catalog density
    out = thin_peaks(out, settings.peaks_per_second, fps)
    chroma = np.concatenate(chroma_parts) if chroma_parts else np.zeros((0, 12), np.float32)
    return Fingerprint(
        peaks=out,
        chroma=_normalised_chroma(chroma),
        tuning_semitones=0.0,
        duration_s=duration_s,
        recipe=settings.recipe,
    )


def _moved_section(
    source: Fingerprint,
    start_s: float,
    length_s: float,
    tempo: float,
    semitones: int,
    n_chroma: int,
    rng: np.random.Generator,
    settings: Settings,
) -> tuple[np.ndarray, np.ndarray]:
    """``length_s`` seconds of ``source`` from a random offset, time-scaled by ``tempo`` (source
    seconds per output second), shifted by ``semitones`` and placed at ``start_s``: its peaks
    and its ``n_chroma`` chroma rows."""
    fps = settings.frames_per_second
    span_s = length_s * tempo
    source_s = max(source.duration_s - span_s, 0.0)
    offset_s = float(rng.uniform(0.0, source_s)) if source_s > 0 else 0.0
    frames = source.peaks["frame"].astype(np.float64)
    inside = (frames >= offset_s * fps) & (frames < (offset_s + span_s) * fps)
    peaks = source.peaks[inside].copy()
    moved = start_s * fps + (frames[inside] - offset_s * fps) / tempo
    peaks["frame"] = np.round(moved).astype(np.uint32)
    peaks["bin"] = peaks["bin"] + semitones * settings.bins_per_semitone
    rows = np.zeros((n_chroma, 12), np.float32)
    if len(source.chroma) and n_chroma > 0:
        at = offset_s * settings.chroma_fps + np.arange(n_chroma) * tempo
        picked = np.clip(np.round(at).astype(np.int64), 0, len(source.chroma) - 1)
        rows = np.roll(source.chroma[picked], semitones, axis=1)
    return peaks, rows


def _note_moves(
    bins: np.ndarray, recipe: DistractorRecipe, rng: np.random.Generator, settings: Settings
) -> np.ndarray:
    """Log-frequency moves (bins) that shift a random share of the notes by a semitone up or
    down, the same move for every peak of one note (or, with ``note_map="class"``, of one pitch
    class)."""
    per = settings.bins_per_semitone
    note = np.floor(bins / per + 0.5).astype(np.int64)
    n_notes = 12 if recipe.note_map == "class" else settings.n_octaves * 12 + 2
    moved = rng.random(n_notes) < recipe.note_move_share
    move = np.where(moved, rng.choice([-1, 1], n_notes), 0)
    return (move[np.mod(note, n_notes)] * per).astype(np.float32)


def _normalised_chroma(chroma: np.ndarray) -> np.ndarray:
    """Rows centred and of unit norm, as :func:`audiodup.chroma.chroma_frames` makes them."""
    centred = chroma - chroma.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(centred, axis=1, keepdims=True)
    return (centred / np.maximum(norm, 1e-9)).astype(np.float32)


# -- many distractors, into a catalog ------------------------------------------------------------
def distractor_works(
    sources: Sequence[SourcePrint],
    indexes: Iterator[int] | range,
    seed: int = 0,
    recipe: DistractorRecipe = DEFAULT_RECIPE,
    settings: Settings = DEFAULT_SETTINGS,
) -> Iterator[NewWork]:
    """Distractors as :class:`NewWork` items ready for ``CatalogStore.commit_batch``; the path
    ``distractor:<seed>:<index>`` names no file."""
    for i in indexes:
        fp = distractor_print(sources, i, seed, recipe, settings)
        name = f"{DISTRACTOR_PREFIX}{seed}:{i}"
        yield NewWork(
            path=name,
            sha256=hashlib.sha256(name.encode()).hexdigest(),
            duration_s=fp.duration_s,
            fingerprint=fp,
            title=name,
        )


def is_distractor(path: str | None) -> bool:
    return bool(path) and str(path).startswith(DISTRACTOR_PREFIX)


# -- do distractors look like real music to the index? -------------------------------------------
def catalog_keys(
    prints: Sequence[Fingerprint], settings: Settings = DEFAULT_SETTINGS
) -> np.ndarray:
    """The catalog-side hash keys of ``prints``, concatenated."""
    parts = [fingerprint_hashes(fp, settings).keys for fp in prints]
    return np.concatenate(parts) if parts else np.zeros(0, np.uint32)


def key_marginals(keys: np.ndarray) -> dict[str, np.ndarray]:
    """Histograms of the key's three descriptor fields (time-ratio level, first and second
    log-frequency difference), each normalised to sum 1."""
    from audiodup.hashes import _DF_BITS

    df_mask = (1 << _DF_BITS) - 1
    fields = {
        "df2": keys & df_mask,
        "df1": (keys >> _DF_BITS) & df_mask,
        "ratio": keys >> (2 * _DF_BITS),
    }
    out = {}
    for name, values in fields.items():
        counts = np.bincount(values.astype(np.int64), minlength=int(values.max(initial=0)) + 1)
        out[name] = counts / max(counts.sum(), 1)
    return out


def kl_divergence(p: np.ndarray, q: np.ndarray, floor: float = 1e-6) -> float:
    """KL(p || q) in bits, both histograms padded to one length and floored (no log 0)."""
    n = max(len(p), len(q))
    p = np.pad(p, (0, n - len(p))) + floor
    q = np.pad(q, (0, n - len(q))) + floor
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log2(p / q)))


def bucket_sizes(keys: np.ndarray) -> np.ndarray:
    """Entries per occupied key."""
    return np.unique(keys, return_counts=True)[1]


def key_share_top(keys: np.ndarray, share: float) -> float:
    """The share of all entries held by the most crowded ``share`` of the occupied keys."""
    sizes = np.sort(bucket_sizes(keys))[::-1]
    top = max(1, int(round(share * len(sizes))))
    return float(sizes[:top].sum() / max(sizes.sum(), 1))


# -- the stats command ---------------------------------------------------------------------------
def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_stats(catalog_dir: Path, n: int, seed: int, out: Path) -> Path:
    """Compare the hash keys of real works and of distractors made from the material half:
    descriptor-field KL divergences (against the divergence between the two real halves),
    bucket-size quantiles at equal hours, and a plot; plus the generation speed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources = load_sources(catalog_dir)
    positives, material = split_sources([s.name for s in sources], seed)
    pos_prints = [s.fingerprint for s in sources if s.name in positives]
    mat_sources = [s for s in sources if s.name in material]
    real = [s.fingerprint for s in sources]
    real_hours = sum(fp.duration_s for fp in real) / 3600

    c0 = time.process_time()
    made = [distractor_print(mat_sources, i, seed) for i in range(n)]
    make_cpu = time.process_time() - c0
    c0 = time.process_time()
    dist_keys = catalog_keys(made)
    hash_cpu = time.process_time() - c0
    dist_hours = sum(fp.duration_s for fp in made) / 3600
    # equal hours for bucket sizes: as many distractors as real hours
    equal, acc = [], 0.0
    for fp in made:
        if acc >= real_hours * 3600:
            break
        equal.append(fp)
        acc += fp.duration_s
    real_keys = catalog_keys(real)
    equal_keys = catalog_keys(equal)
    half_a = catalog_keys(pos_prints)
    half_b = catalog_keys([s.fingerprint for s in mat_sources])

    # novelty: a distractor replaying its material would find its keys there more often than
    # one real half finds its keys in the other
    material_keys = np.unique(half_b)
    novelty = (
        f"* Entries whose key also occurs in the material half: positives half "
        f"{np.isin(half_a, material_keys).mean():.3f}, distractors "
        f"{np.isin(dist_keys, material_keys).mean():.3f} (a distractor replaying its material "
        "would be near 1)."
    )
    rows = []
    real_m, dist_m = key_marginals(real_keys), key_marginals(dist_keys)
    a_m, b_m = key_marginals(half_a), key_marginals(half_b)
    for field in ("ratio", "df1", "df2"):
        rows.append(
            f"| {field} | {kl_divergence(dist_m[field], real_m[field]):.4f} | "
            f"{kl_divergence(a_m[field], b_m[field]):.4f} |"
        )
    real_sizes, dist_sizes = bucket_sizes(real_keys), bucket_sizes(equal_keys)
    qs = (50, 90, 99, 99.9)
    per_hour = {
        "real": len(real_keys) / real_hours,
        "distractors": len(dist_keys) / dist_hours,
    }
    peaks_per_s = {
        "real": sum(len(fp.peaks) for fp in real) / (real_hours * 3600),
        "distractors": sum(len(fp.peaks) for fp in made) / (dist_hours * 3600),
    }
    size_rows = []
    for label, sizes, keys in (
        ("real works", real_sizes, real_keys),
        ("distractors (equal hours)", dist_sizes, equal_keys),
    ):
        qv = " | ".join(f"{np.percentile(sizes, q):.0f}" for q in qs)
        size_rows.append(
            f"| {label} | {len(keys):,} | {len(sizes):,} | {qv} | {sizes.max()} | "
            f"{key_share_top(keys, 0.01):.3f} |"
        )

    plot_dir = out.parent / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    plot = plot_dir / "distractor_keys.png"
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for ax, field in zip(axes[:3], ("ratio", "df1", "df2"), strict=True):
        ax.plot(real_m[field], label="real works", lw=1.2)
        ax.plot(dist_m[field], label="distractors", lw=1.2, ls="--")
        ax.set_title(f"hash key field: {field}")
        ax.set_xlabel("quantised value")
    axes[0].set_ylabel("share of entries")
    axes[0].legend()
    ax = axes[3]
    for label, sizes in (("real works", real_sizes), ("distractors", dist_sizes)):
        s = np.sort(sizes)
        ax.loglog(s, 1.0 - np.arange(len(s)) / len(s), label=label)
    ax.set_title(f"bucket sizes at {real_hours:.1f} h (CCDF)")
    ax.set_xlabel("entries per key")
    ax.set_ylabel("share of keys >= x")
    ax.legend()
    fig.tight_layout()
    fig.savefig(plot, dpi=110)
    plt.close(fig)

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join(
        [
            "# Distractor fingerprints vs real music (issue #14, item 1)",
            "",
            f"* Date: {now}; commit `{_git_commit()}`; machine: 2 cores, 24 GB RAM, shared "
            f"(load average {load})",
            f"* Command: `python -m benchmarks.distractor_prints stats --n {n} --seed {seed}`",
            f"* Real works: the {len(real)} works of `{catalog_dir}` ({real_hours:.2f} h). "
            f"Distractors: {n} made from the material half ({len(mat_sources)} works; the other "
            f"{len(pos_prints)} are the positives of the scaling benchmark), "
            f"{dist_hours:.2f} h, mean length {dist_hours * 3600 / n / 60:.2f} min.",
            f"* Speed: {n / make_cpu:.0f} distractor fingerprints per CPU-second; their "
            f"catalog hashes {n / hash_cpu:.0f} works per CPU-second "
            f"(10^5 works: {1e5 / (n / make_cpu) / 60:.1f} + {1e5 / (n / hash_cpu) / 60:.1f} "
            "CPU-min for fingerprints + hashes; the store's index build comes on top, "
            "see SCALING.md).",
            f"* Peaks per second: real {peaks_per_s['real']:.2f}, distractors "
            f"{peaks_per_s['distractors']:.2f}. Hash entries per hour: real "
            f"{per_hour['real']:,.0f}, distractors {per_hour['distractors']:,.0f}.",
            novelty,
            "",
            "## Hash-key descriptor fields: KL divergence (bits)",
            "",
            "A key packs a time-ratio level and two log-frequency differences. Baseline: the "
            "divergence between the two halves of the real works (positives vs material).",
            "",
            "| field | KL(distractors ‖ real) | KL(real half A ‖ real half B) |",
            "|---|---:|---:|",
            *rows,
            "",
            "## Bucket sizes (entries per occupied key), equal hours of audio",
            "",
            "| set | entries | occupied keys | p50 | p90 | p99 | p99.9 | max | share of entries "
            "in top 1 % keys |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            *size_rows,
            "",
            f"![distractor vs real hash keys](plots/{plot.name})",
            "",
        ]
    )
    out.write_text(text)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.corpus import cache_dir

    parser = argparse.ArgumentParser(prog="python -m benchmarks.distractor_prints")
    sub = parser.add_subparsers(dest="command", required=True)
    stats = sub.add_parser("stats", help="distractor vs real hash-key statistics")
    stats.add_argument("--n", type=int, default=200)
    stats.add_argument("--seed", type=int, default=0)
    stats.add_argument("--catalog-dir", type=Path, default=None)
    stats.add_argument("--out", type=Path, default=REPO / "benchmarks" / "DISTRACTORS.md")
    args = parser.parse_args(argv)
    catalog_dir = args.catalog_dir or cache_dir(None) / "catalog-full"
    print(write_stats(catalog_dir, args.n, args.seed, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
