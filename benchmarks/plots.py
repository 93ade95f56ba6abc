"""PNG plots for the report (matplotlib, Agg backend)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.metrics import VariantRow, score_samples, sweep_points  # noqa: E402
from benchmarks.records import QueryResult  # noqa: E402

SWEEPS = {
    "tempo": ("recall_vs_tempo.png", "tempo ratio (upload / original)", True),
    "pitch": ("recall_vs_pitch.png", "pitch shift (semitones)", False),
    "speed": ("recall_vs_speed.png", "speed factor (tempo and pitch together)", True),
    "excerpt": ("recall_vs_excerpt.png", "excerpt length (s)", True),
    "snr": ("recall_vs_snr.png", "white-noise SNR (dB)", False),
}


def _sweep(rows: list[VariantRow], sweep: str, out: Path) -> Path | None:
    pts = sweep_points(rows, sweep)
    if len(pts) < 2:
        return None
    name, xlabel, logx = SWEEPS[sweep]
    x = [p[0] for p in pts]
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    ax.plot(x, [p[1] for p in pts], "o-", label="audiodup (duplicate, right work)")
    peer = [(p[0], p[2]) for p in pts if p[2] is not None and not math.isnan(p[2])]
    if peer:
        ax.plot(
            [p[0] for p in peer], [p[1] for p in peer], "s--", label="Chromaprint (AcoustID-style)"
        )
    if logx:
        ax.set_xscale("log")
        ax.set_xticks(x)
        ax.set_xticklabels([f"{v:g}" for v in x], rotation=45, fontsize=7)
        ax.minorticks_off()
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("recall@1")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower center")
    fig.tight_layout()
    path = out / name
    fig.savefig(path)
    plt.close(fig)
    return path


def _scores(results: list[QueryResult], threshold: float | None, out: Path) -> Path | None:
    s = score_samples(results)
    if not (s["true"] or s["false"] or s["peer_true"] or s["peer_false"]):
        return None
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=110)
    ax = axes[0]
    bins = np.linspace(0, max([1.0, *s["true"], *s["false"]]), 40)
    ax.hist(s["true"], bins=bins, alpha=0.6, label=f"true matches (n={len(s['true'])})")
    ax.hist(s["false"], bins=bins, alpha=0.6, label=f"false top matches (n={len(s['false'])})")
    ax.set_xlabel("audiodup -log10(false_match_probability) of top match")
    ax.set_ylabel("queries")
    if s["true"] or s["false"]:
        ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax = axes[1]
    bins = np.linspace(0.4, 1.0, 40)
    ax.hist(s["peer_true"], bins=bins, alpha=0.6, label="right work on top")
    ax.hist(s["peer_false"], bins=bins, alpha=0.6, label="wrong work / negative")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls=":", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("Chromaprint best score (1 - BER)")
    if s["peer_true"] or s["peer_false"]:
        ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax = axes[2]
    _roc(ax, results)
    fig.tight_layout()
    path = out / "score_distributions.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def _roc(ax, results: list[QueryResult]) -> None:
    """Recall@1 against false-positive rate on negatives, sweeping a score threshold."""
    pos = [r for r in results if r.query.role == "positive"]
    neg = [r for r in results if r.query.role == "negative"]
    if not pos or not neg:
        ax.set_axis_off()
        return

    def curve(score_of, right_of):
        ps = np.array([score_of(r) if right_of(r) else -np.inf for r in pos])
        ns = np.array([score_of(r) for r in neg])
        ts = np.unique(np.concatenate([ps[np.isfinite(ps)], ns[np.isfinite(ns)]]))
        if ts.size == 0:
            return None
        tpr = [(ps >= t).mean() for t in ts]
        fpr = [(ns >= t).mean() for t in ts]
        return np.array(fpr), np.array(tpr)

    def eng_score(r):
        e = r.engine
        if not e or not e.matches or e.matches[0].false_match_probability is None:
            return -np.inf
        return -math.log10(max(e.matches[0].false_match_probability, 1e-300))

    def eng_right(r):
        e = r.engine
        return bool(e and e.matches and e.matches[0].track_id == r.query.track_id)

    def peer_score(r):
        return r.peer.score if r.peer and r.peer.score is not None else -np.inf

    def peer_right(r):
        return bool(r.peer and r.peer.top_track_id == r.query.track_id)

    for name, sc, rt, style in (
        ("audiodup (-log10 fmp)", eng_score, eng_right, "-"),
        ("Chromaprint (1-BER)", peer_score, peer_right, "--"),
    ):
        c = curve(sc, rt)
        if c is not None:
            ax.plot(c[0], c[1], style, label=name, drawstyle="steps-post")
    ax.set_xscale("symlog", linthresh=1e-3)  # keeps FPR = 0 (the target) visible
    ax.set_xlim(-1e-4, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false-positive rate on negative queries (symlog)")
    ax.set_ylabel("recall@1 (right work on top, above threshold)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def write_plots(
    rows: list[VariantRow], results: list[QueryResult], threshold: float | None, out: Path
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [_sweep(rows, s, out) for s in SWEEPS]
    paths.append(_scores(results, threshold, out))
    return [p for p in paths if p is not None]


def write_scaling_plot(scaling: list[dict], out: Path) -> Path | None:
    pts = [s for s in scaling if s.get("works")]
    if len(pts) < 2:
        return None
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    w = [s["works"] for s in pts]
    for key, label in (
        ("search_p50_ms", "search p50"),
        ("search_p95_ms", "search p95"),
        ("total_p50_ms", "screen() total p50"),
    ):
        ax.plot(w, [s.get(key) or np.nan for s in pts], "o-", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("catalog works")
    ax.set_ylabel("latency (ms)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "scaling_latency.png"
    fig.savefig(path)
    plt.close(fig)
    return path
