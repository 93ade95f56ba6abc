"""Render ``RESULTS.md`` (and the plots) from a run's meta data and per-query results."""

from __future__ import annotations

import math
import os
from pathlib import Path

from benchmarks.alterations import BY_NAME, FAMILIES
from benchmarks.metrics import (
    family_summary,
    latency_summary,
    negative_rows,
    peer_threshold,
    positive_rows,
)
from benchmarks.plots import write_plots, write_scaling_plot
from benchmarks.records import QueryResult, RunMeta
from benchmarks.stretchers import STRETCHERS

TARGETS = """\
Targets from issue #3: recall >= 0.99 for time-stretch 0.70-1.40, pitch within +/-6 st, speed
0.80-1.35, excerpts >= 15 s, MP3 64k, white noise 10 dB, EQ, reverb, padding, cuts and loops;
>= 0.95 for time-stretch 0.50-0.60 and 1.60-2.00, pitch -9 and +9..+12, speed 0.50-0.70 and
1.50, 8-s excerpts, pink noise 5 dB and every chain; >= 0.80 for 5-s excerpts; zero false
positives; tempo error median <= 0.5 %, pitch error median <= 0.1 st; fingerprinting >= 150x
real time per core; screening <= 100 ms at 10,000 works; <= 1 MB per hour of indexed audio."""


def target_recall(variant: str) -> float | None:
    """The recall the issue asks for on `variant` (None: no target)."""
    v = BY_NAME.get(variant)
    if v is None or v.extra:
        return None
    x = v.x
    if " drift " in f" {variant} ":  # issue #12 item 4: a ramp within the usual tempo range
        return 0.99
    if v.family == "time-stretch":
        return 0.99 if 0.70 <= x <= 1.40 else 0.95
    if v.family == "pitch":
        return 0.99 if abs(x) <= 6 else 0.95
    if v.family == "speed":
        return 0.99 if 0.80 <= x <= 1.35 else 0.95
    if v.sweep == "excerpt":
        return 0.99 if x >= 15 else 0.95 if x >= 8 else 0.80
    if v.family == "chain" or variant.startswith("pink"):
        return 0.95
    if v.family in ("length", "signal"):
        return None if variant == "compression" else 0.99
    return None


def _f(x: float | None, digits: int = 2, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x * 100:.{max(0, digits - 2)}f} %" if pct else f"{x:.{digits}f}"


def _load(x) -> str:
    return " / ".join(f"{v:.1f}" for v in x) if x else "n/a"


def _i(x: float | None) -> str:
    return "n/a" if x is None else f"{int(x):,}"


def _mark(recall: float, target: float | None) -> str:
    if target is None or math.isnan(recall):
        return ""
    return " ✓" if recall >= target else " ✗"


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _head(*cells: str) -> list[str]:
    return [_row(*cells), "|---" + "|---:" * (len(cells) - 1) + "|"]


def _variant_table(rows, peer_on: bool) -> list[str]:
    lines = _head(
        "variant",
        "n",
        "audiodup recall@1",
        "target",
        "suspect",
        "wrong-work dup",
        "tempo err med / p95 (%)",
        "pitch err med / p95 (st)",
        "Chromaprint recall@1",
    )
    for fam in FAMILIES:
        fam_rows = [r for r in rows if r.family == fam]
        if not fam_rows:
            continue
        lines.append(f"| **{fam}** | | | | | | | | |")
        for r in fam_rows:
            t = target_recall(r.variant)
            extra = " (sweep)" if BY_NAME.get(r.variant) and BY_NAME[r.variant].extra else ""
            err = f" ({r.errors} errors)" if r.errors else ""
            lines.append(
                f"| {r.variant}{extra} | {r.n} | {_f(r.recall, 3)}{_mark(r.recall, t)}{err} "
                f"| {_f(t, 2) if t else ''} | {_f(r.suspect, 3)} | {_f(r.wrong_duplicate, 3)} "
                f"| {_f(r.tempo_err_med_pct)} / {_f(r.tempo_err_p95_pct)} "
                f"| {_f(r.pitch_err_med_st)} / {_f(r.pitch_err_p95_st)} "
                f"| {_f(r.peer_recall, 3) if peer_on else 'n/a'} |"
            )
    return lines


def _stretcher_table(rows) -> list[str]:
    """Recall of the same tempo and pitch changes made by each implementation (issue #12)."""
    made_by: dict[str, dict[str, float]] = {}
    for r in rows:
        v = BY_NAME.get(r.variant)
        if v is None or v.stretcher is None:
            continue
        change = r.variant.split(" [")[0]
        made_by.setdefault(change, {})[v.stretcher] = r.recall
    shared = {c: by for c, by in made_by.items() if len(by) > 1}
    if not shared:
        return []
    names = sorted({name for by in shared.values() for name in by})
    L = [
        "Per stretcher (the same change made by each implementation; worst = the figure a target",
        "must hold for):",
        "",
    ]
    L += _head("change", *names, "worst")
    for change, by in shared.items():
        cells = [_f(by[n], 3) if n in by else "" for n in names]
        L.append(_row(change, *cells, _f(min(by.values()), 3)))
    return [*L, ""]


# what was measured since a run, written by hand into its report's header: a re-render keeps it
NOTES_START = "<!-- notes since this run, by hand: `python -m benchmarks report` keeps them -->"
NOTES_END = "<!-- end of the notes since this run -->"


def kept_notes(out: Path) -> list[str]:
    """The hand-written notes of the report at ``out``, their markers included (none when it
    has no complete pair of markers)."""
    if not out.is_file():
        return []
    lines = out.read_text().splitlines()
    if NOTES_START not in lines or NOTES_END not in lines:
        return []
    start, end = lines.index(NOTES_START), lines.index(NOTES_END)
    return lines[start : end + 1] if start < end else []


def run_folder(mode: str, corpus: str) -> str:
    """Where under ``benchmarks/`` a run writes by default: ``""`` for the full run on the tuning
    corpus, else the mode's and the corpus's folder (``quick``, ``heldout``, ``heldout-quick``)."""
    folder = "" if mode == "full" else mode
    if corpus != "tuning":
        folder = f"{corpus}-{folder}" if folder else corpus
    return folder


def _header(meta: RunMeta, notes: list[str]) -> list[str]:
    m = meta.machine
    flag = "" if meta.mode == "full" else f" --{meta.mode}"
    name = meta.corpus.get("name", "tuning")
    corpus = "" if name == "tuning" else f" --corpus {name}"
    folder = f"benchmarks/{run_folder(meta.mode, name)}"
    again = f" --results {folder}/results.jsonl --out {folder}/RESULTS.md" if corpus else ""
    L = [
        f"# audiodup benchmark results ({meta.mode})",
        "",
        f"- date: {meta.date}",
        f"- commit: {meta.commit}",
        *notes,
        f"- engine: `{meta.engine}`",
        f"- machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, "
        f"{m.get('ram_gb', '?')} GB RAM, Python {m.get('python', '?')}",
        f"- load average (1/5/15 min) at start: {_load(m.get('loadavg_start'))}, after "
        f"screening: {_load(m.get('loadavg_after_screening'))} (other work on the machine "
        "inflates the timings)",
        f"- seed: {meta.seed}",
        f"- regenerate: `python -m benchmarks run{flag}{corpus}`; "
        f"re-render from raw results: `python -m benchmarks report{again}`",
    ]
    if meta.timings_s:
        L.append("- run time: " + ", ".join(f"{k} {v:.0f} s" for k, v in meta.timings_s.items()))
    return [*L, ""]


def _corpus(meta: RunMeta, results: list[QueryResult]) -> list[str]:
    c = meta.corpus
    L = ["## Corpus", "", c.get("description", ""), ""]
    if c.get("packages"):
        L += _head("package", "tracks >= 20 s", "catalog", "negatives", "hours")
        for pkg, d in c["packages"].items():
            L.append(_row(pkg, d["tracks"], d["catalog"], d["negative"], f"{d['hours']:.2f}"))
        L.append("")
    n_pos = sum(1 for r in results if r.query.role == "positive")
    n_neg = sum(1 for r in results if r.query.role == "negative")
    L.append(
        f"Used in this run: {c.get('catalog_used', '?')} catalog works, "
        f"{c.get('negatives_used', '?')} never-indexed negatives, "
        f"{len({r.query.variant for r in results})} variants, {n_pos} positive and {n_neg} "
        f"negative queries."
    )
    for note in c.get("notes", []):
        L += ["", f"Note: {note}"]
    return [*L, ""]


def _recall(rows, thr: float | None, peer_on: bool) -> list[str]:
    L = ["## Recall per variant (positives: altered copies of catalog works)", ""]
    peer = (
        f"Chromaprint threshold (1 - BER) = {thr:.4f}, the smallest with no false positive on "
        "the negative queries (chosen on the test negatives, which flatters the peer)."
        if thr is not None
        else ""
    )
    L += [
        "recall@1 = verdict `duplicate` with the right work on top. Suspect = verdict `suspect`. "
        "Wrong-work dup = `duplicate` naming another work. Tempo/pitch errors are over correct "
        "top matches (tempo relative, in %). ✓/✗ = issue target met or not. " + peer,
        "",
    ]
    L += _variant_table(rows, peer_on)
    L.append("")
    fams = family_summary(rows)
    if fams:
        L += ["Per family (query-weighted):", ""]
        L += _head("family", "n", "audiodup recall@1", "suspect", "Chromaprint recall@1")
        for fam, d in fams.items():
            peer_cell = _f(d["peer_recall"], 3) if peer_on else "n/a"
            L.append(_row(fam, d["n"], _f(d["recall"], 3), _f(d["suspect"], 3), peer_cell))
        L.append("")
    L += _stretcher_table(rows)
    align = sorted(r.align_err_med_s for r in rows if not math.isnan(r.align_err_med_s))
    if align:
        L += [
            "Alignment (reported ref_start_s against the truth, contiguous variants): median of "
            f"per-variant medians {align[len(align) // 2]:.2f} s, worst {align[-1]:.2f} s.",
            "",
        ]
    return L


def _negatives(results: list[QueryResult], neg, peer_on: bool) -> list[str]:
    L = ["## False positives (negatives: altered copies of never-indexed tracks)", ""]
    tot_n = sum(r.n for r in neg)
    if not tot_n:
        return [*L, "No negative queries in this run.", ""]
    tot_fp = round(sum(r.false_positive * r.n for r in neg))
    suspect = sum(r.suspect * r.n for r in neg) / tot_n
    L += [
        f"audiodup: {tot_fp} `duplicate` verdicts on {tot_n} negative queries (target: zero); "
        f"suspect rate {suspect:.3f}.",
        "",
    ]
    L += _head("variant", "n", "audiodup false-positive rate", "suspect", "Chromaprint FP")
    for r in neg:
        peer_cell = _f(r.peer_false_positive, 3) if peer_on else "n/a"
        L.append(_row(r.variant, r.n, _f(r.false_positive, 3), _f(r.suspect, 3), peer_cell))
    fps = [
        r
        for r in results
        if r.query.role == "negative" and r.engine and r.engine.verdict == "duplicate"
    ]
    if fps:
        L += ["", "Negative queries flagged `duplicate` (query -> top match):", ""]
        for r in fps[:30]:
            m = r.engine.matches[0] if r.engine.matches else None
            L.append(
                f"- `{r.query.track_id}` / {r.query.variant} -> `{m.track_id if m else '?'}` "
                f"(fmp {m.false_match_probability if m else '?'})"
            )
    return [*L, ""]


def _performance(meta: RunMeta, results: list[QueryResult]) -> list[str]:
    p = dict(meta.performance)
    lat = latency_summary(results)
    bph = p.get("bytes_per_hour")
    rows = [
        (
            "fingerprinting speed (s of audio per CPU-second, decode included)",
            f"{_f(p.get('fingerprint_x_realtime'), 1)} x",
            ">= 150 x",
        ),
        (
            "catalog build wall time",
            f"{_f(p.get('add_wall_s'), 1)} s for {_f(p.get('audio_hours'), 2)} h of audio",
            "",
        ),
        (
            "screening: Verdict.search_s p50 / p95",
            f"{_f(lat['search_p50_ms'], 1)} / {_f(lat['search_p95_ms'], 1)} ms",
            "<= 100 ms at 10k works",
        ),
        (
            "screening: screen() wall time p50 / p95",
            f"{_f(lat['total_p50_ms'], 1)} / {_f(lat['total_p95_ms'], 1)} ms",
            "",
        ),
        ("screening: Verdict.fingerprint_s p50", f"{_f(lat['fingerprint_p50_ms'], 1)} ms", ""),
        ("peak RSS of the benchmark process", f"{_f(p.get('peak_rss_mb'), 0)} MB", ""),
        ("catalog bytes per work", _i(p.get("bytes_per_work")), ""),
        ("catalog MB per hour of audio", _f(bph / 1e6 if bph else None, 3), "<= 1 MB"),
        (
            "catalog works / hours / index bytes / catalog bytes",
            f"{_i(p.get('works'))} / {_f(p.get('hours'), 2)} / {_i(p.get('index_bytes'))} / "
            f"{_i(p.get('catalog_bytes'))}",
            "",
        ),
    ]
    if meta.peer:
        rows.append(
            (
                "Chromaprint search p50 (numpy brute force over all works)",
                f"{_f(meta.peer.get('search_p50_ms'), 1)} ms",
                "",
            )
        )
    L = ["## Performance", "", *_head("measure", "value", "target")]
    L += [_row(*r) for r in rows]
    L += [
        "",
        "Peak RSS includes the benchmark's own decoding and alteration work done before "
        "screening; it is an upper bound for the engine.",
        "",
    ]
    return L


def _scaling(meta: RunMeta, plot: Path | None, out: Path) -> list[str]:
    L = ["## Catalog-size scaling", ""]
    if not meta.scaling:
        return [*L, "Not run (use `--scale`, slow).", ""]
    L += _head(
        "works",
        "hours",
        "MB/hour",
        "search p50 / p95 (ms)",
        "total p50 / p95 (ms)",
        "negatives",
        "false positives",
        "suspect",
        "positives",
        "recall@1",
    )
    for s in meta.scaling:
        mbh = s.get("bytes_per_hour")
        L.append(
            _row(
                s.get("works"),
                _f(s.get("hours"), 1),
                _f(mbh / 1e6 if mbh else None, 3),
                f"{_f(s.get('search_p50_ms'), 1)} / {_f(s.get('search_p95_ms'), 1)}",
                f"{_f(s.get('total_p50_ms'), 1)} / {_f(s.get('total_p95_ms'), 1)}",
                s.get("negatives"),
                s.get("false_positives"),
                _f(s.get("suspect_rate"), 3),
                s.get("positives"),
                _f(s.get("recall"), 3),
            )
        )
    L.append("")
    if plot:
        L += [f"![latency vs catalog size]({os.path.relpath(plot, out.parent)})", ""]
    for note in meta.scaling_notes:
        L += [f"Note: {note}", ""]
    return L


def _method(meta: RunMeta) -> list[str]:
    conv = meta.conventions
    overlap = meta.peer.get("min_overlap_items", 10) if meta.peer else 10
    L = [
        "## Method",
        "",
        "- Alterations are made with pedalboard (Rubber Band time-stretch/pitch-shift, LAME MP3, "
        "filters, reverb, compressor) and soxr (speed changes), never with audiodup code"
        + (
            "; the variants marked [rb-r2], [rb-r3], [sox] and [ffmpeg] are made with those "
            "command-line stretchers (Rubber Band's R2 and R3 engines, SoX tempo/pitch, ffmpeg "
            "atempo; `benchmarks/stretchers.py`). "
            if any(key.startswith(STRETCHERS) for key in conv)
            else ". "
        )
        + "Queries are 22050 Hz mono FLAC; most start from a 60-s excerpt at a seeded offset, the "
        "length variants from the whole track capped at 3 minutes.",
        "- `tempo_ratio` = upload tempo / original tempo; speed change s gives tempo_ratio = s and "
        "pitch = 12 log2(s) semitones. Pitch shifts do not preserve formants. MP3 is encoded at "
        "44.1 kHz mono and the codec delay is removed by cross-correlation.",
    ]
    if conv:
        L.append(
            "- stretcher conventions measured at run time: "
            + ", ".join(
                f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in conv.items()
            )
        )
    L.append(
        f"- Chromaprint peer: `fpcalc -raw -length 0`, exact bit error rate at every offset with "
        f">= {overlap} overlapping items against every catalog work (FFT correlation per bit), "
        "score = 1 - BER of the best offset."
    )
    L += [f"- {note}" for note in meta.notes]
    return [*L, "", TARGETS, ""]


APPENDICES = ("COLDSTART.md", "RESCAN.md")  # written by benchmarks.coldstart, .rescan_scaling


# reports of separate runs, kept in sub-folders with their own date and commit: linked, with their
# headline picture where they have one
LINKED_REPORTS = (
    (
        "calibration/CALIBRATION.md",
        "calibration/calibration.png",
        "Calibration of `false_match_probability` on short negative queries "
        "(`python -m benchmarks.calibration_check`)",
    ),
    (
        "stretchers/RESULTS.md",
        None,
        "Recall per time-stretch and pitch-shift implementation (an earlier, smaller run; the "
        "full run above has the same variants)",
    ),
    (
        "STOCK_SAMPLES.md",
        None,
        "Stock samples: uploads holding a sample that several works hold "
        "(`python -m benchmarks.stock_samples`)",
    ),
    (
        "RECORDED_COPIES.md",
        None,
        "Copies already in the catalog: a recording the catalog holds several times "
        "(`python -m benchmarks.recorded_copies`)",
    ),
)


def _linked_reports(folder: Path) -> list[str]:
    L: list[str] = []
    for report, picture, title in LINKED_REPORTS:
        if (folder / report).exists():
            L += [f"- [{title}]({report})"]
            if picture and (folder / picture).exists():
                L += ["", f"  ![{title}]({picture})"]
    return ["## Separate runs", "", *L, ""] if L else []


def _appendices(folder: Path) -> list[str]:
    """Sections measured by separate commands, kept next to the report and included verbatim."""
    return [
        (folder / name).read_text().rstrip() + "\n"
        for name in APPENDICES
        if (folder / name).exists()
    ]


def render(meta: RunMeta, results: list[QueryResult], out: Path, keep_notes: bool = False) -> str:
    """Write the report to `out` and plots to ``out.parent/plots``; return the markdown. With
    ``keep_notes`` (the same run rendered again) the hand-written notes of the report already
    at ``out`` (:func:`kept_notes`) are kept; a new run starts without them."""
    thr = peer_threshold(results)
    peer_on = any(r.peer is not None for r in results)
    rows = positive_rows(results, thr)
    plot_dir = out.parent / "plots"
    plots = write_plots(rows, results, thr, plot_dir)
    scaling_plot = write_scaling_plot(meta.scaling, plot_dir)
    notes = kept_notes(out) if keep_notes else []
    L = _header(meta, notes) + _corpus(meta, results) + _recall(rows, thr, peer_on)
    L += _negatives(results, negative_rows(results, thr), peer_on)
    L += _performance(meta, results) + _scaling(meta, scaling_plot, out)
    L += ["## Plots", ""]
    for path in plots:
        L += [f"![{path.stem}]({os.path.relpath(path, out.parent)})", ""]
    L += _method(meta)
    L += _appendices(out.parent)
    L += _linked_reports(out.parent)
    text = "\n".join(L) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text
