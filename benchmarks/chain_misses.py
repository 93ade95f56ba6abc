"""Where a missed copy loses its evidence, stage by stage (issue #12 follow-up: the chain
``tempo 0.93 + pitch -1.5 + eq + noise 20 dB``).

Three commands:

    python -m benchmarks.chain_misses render OUT_DIR TRACK_ID...
    python -m benchmarks.chain_misses stages CATALOG QUERY.json... > stages.jsonl
    python -m benchmarks.chain_misses table stages.jsonl > table.md

``render`` makes the copies that take the chain apart (each ingredient alone and in pairs, and
the chain with the Rubber Band and SoX command-line stretchers), from the same 60-s excerpt as
the benchmark's queries and with the chain's noise generator, as JSON sidecars and FLACs like
``benchmarks.queries``. ``stages`` screens each query (its JSON sidecar) as
:meth:`audiodup.Catalog.screen_audio` does and prints one JSON line: the verdict, then the
source work's hash look-up (hits, best coarse cell, rank), its hash line, its chroma candidate
rank and alignment, its guided peak check (and which floor fails), a peak check at the true
alignment (where a perfect lead would put it), and its best match per look. ``table`` turns
those lines into a markdown table.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np

from benchmarks.alterations import Variant, step

CHAIN = "chain: tempo 0.93 + pitch -1.5 + eq + noise 20 dB"
_STRETCH = (step("time_stretch", tempo_ratio=0.93), step("pitch", semitones=-1.5))
_EQ = (step("eq", gain_db=12),)
_NOISE = (step("white_noise", snr_db=20),)


def _cli_chain(stretcher: str, extra: tuple = ()) -> tuple:
    return (step(f"stretch:{stretcher}", tempo_ratio=0.93, semitones=-1.5), *extra)


# the chain taken apart: each copy adds or removes one ingredient
ISOLATING = (
    Variant("tempo 0.93", "chain-parts", (_STRETCH[0],)),
    Variant("pitch -1.5", "chain-parts", (_STRETCH[1],)),
    Variant("tempo 0.93 + pitch -1.5", "chain-parts", _STRETCH),
    Variant("tempo 0.93 + pitch -1.5 + eq", "chain-parts", _STRETCH + _EQ),
    Variant("tempo 0.93 + pitch -1.5 + noise 20 dB", "chain-parts", _STRETCH + _NOISE),
    Variant("eq + noise 20 dB", "chain-parts", _EQ + _NOISE),
    Variant("chain [pedalboard, re-rendered]", "chain-parts", _STRETCH + _EQ + _NOISE),
    Variant("tempo 0.93 + pitch -1.5 [rb-r3]", "chain-parts", _cli_chain("rb-r3")),
    Variant("chain [rb-r3]", "chain-parts", _cli_chain("rb-r3", _EQ + _NOISE)),
    Variant("tempo 0.93 + pitch -1.5 [sox]", "chain-parts", _cli_chain("sox")),
    Variant("chain [sox]", "chain-parts", _cli_chain("sox", _EQ + _NOISE)),
)


# -- render ---------------------------------------------------------------------------------------
def render(out_dir: Path, track_ids: list[str]) -> list[Path]:
    """The :data:`ISOLATING` copies of each track; their JSON sidecars' paths."""
    from benchmarks.alterations import apply
    from benchmarks.corpus import cache_dir, load_mono
    from benchmarks.queries import SAMPLE_RATE_HZ, _crc, source_excerpt, write_flac

    cache = cache_dir(None)
    corpus = json.loads((cache / "corpus.json").read_text())
    source = {t["track_id"]: t["path"] for t in corpus["tracks"]}
    written = []
    for track_id in track_ids:
        y = load_mono(source[track_id], SAMPLE_RATE_HZ, cache / "sources")
        for variant in ISOLATING:
            base, truth = source_excerpt(y, SAMPLE_RATE_HZ, variant, track_id, 0)
            # the chain's noise generator: a copy with noise gets the chain's noise
            rng = np.random.default_rng([0, _crc(track_id), _crc(CHAIN)])
            out, truth, _ = apply(variant, base, SAMPLE_RATE_HZ, truth, rng)
            flac = out_dir / track_id / f"{variant.slug}.flac"
            write_flac(flac, out, SAMPLE_RATE_HZ)
            meta = flac.with_suffix(".json")
            record = {
                "track_id": track_id,
                "role": "positive",
                "variant": variant.name,
                "path": str(flac),
                "duration_s": out.size / SAMPLE_RATE_HZ,
                **dataclasses.asdict(truth),
            }
            meta.write_text(json.dumps(record))
            written.append(meta)
    return written


# -- a lead from the look-up's coarse cell -------------------------------------------------------
def cell_lead(votes, work_id: int, frames_per_second: float, bins_per_semitone: int):
    """The alignment of ``work_id``'s best coarse cell of the hash look-up (the cells of
    :func:`audiodup.match.candidate_works`, both tempo grids), centred on the median upload and
    reference frame of the cell's hits: tempo and pitch from the cell, position from its hits.
    ``None`` when the work has no hit. A diagnostic lead, not screening's: a copy whose hash
    line is too weak to verify may still rank first with a handful of hits in the right cell."""
    from audiodup.peakcheck import Alignment

    mine = votes.work == work_id
    if not mine.any():
        return None
    lt, pb = votes.log_tempo[mine], votes.pitch_bins[mine]
    tq, tr = votes.query_frame[mine], votes.ref_frame[mine]
    best = None
    for shift in (0.0, 0.5):  # cell widths as in match._best_cells: 0.05 log tempo, 1.5 bins, 1 s
        lt_bin = np.round(lt / 0.05 + shift).astype(np.int64)
        pb_bin = np.round(pb / 1.5).astype(np.int64)
        tempo = np.exp((lt_bin - shift) * 0.05)
        off_bin = np.floor((tr - tempo * tq) / frames_per_second).astype(np.int64)
        cells, inverse, counts = np.unique(
            np.stack([lt_bin, pb_bin, off_bin]), axis=1, return_inverse=True, return_counts=True
        )
        k = int(np.argmax(counts))
        if best is None or counts[k] > best[0]:
            in_cell = inverse.ravel() == k
            best = (
                int(counts[k]),
                float(np.exp((cells[0, k] - shift) * 0.05)),
                cells[1, k] * 1.5,
                in_cell,
            )
    _, tempo, pitch_bins, in_cell = best
    return Alignment(
        tempo, float(pitch_bins), float(np.median(tq[in_cell])), float(np.median(tr[in_cell]))
    )


# -- stages ---------------------------------------------------------------------------------------
def floors_failed(matched: int, checked: int, chance: float, settings) -> list[str]:
    """Which of the guided peak check's floors a count misses: ``ratio`` (times chance),
    ``rate`` (share of the peaks checked) and ``peaks`` (the duplicate's peak count)."""
    failed = []
    if matched < settings.peak_check_min_ratio * chance:
        failed.append("ratio")
    if matched < settings.peak_check_min_rate * checked:
        failed.append("rate")
    if matched < settings.duplicate_min_peaks:
        failed.append("peaks")
    return failed


def true_alignment(query: dict, duration_s: float, settings):
    """The alignment the copy was made with (query frames to the source's frames), centred on
    the query: ``t_ref = ref_start_s + tempo * (t_query - query_offset_s)``."""
    from audiodup.peakcheck import Alignment

    fps = settings.frames_per_second
    tempo = query["tempo_ratio"]
    centre_s = duration_s / 2
    ref_centre_s = query["ref_start_s"] + tempo * (centre_s - query["query_offset_s"])
    pitch_bins = query["pitch_shift_semitones"] * settings.bins_per_semitone
    return Alignment(tempo, pitch_bins, centre_s * fps, ref_centre_s * fps)


def _check_row(check, settings) -> dict:
    return {
        "matched": check.matched_peaks,
        "checked": check.checked_peaks,
        "chance": round(check.chance_peaks, 1),
        "tempo": round(check.alignment.tempo_ratio, 4),
        "pitch_st": round(check.alignment.pitch_bins / settings.bins_per_semitone, 2),
        "probability": check.probability,
        "refined": check.refined,  # False: given up after the coarse sweep
        "fails": floors_failed(
            check.matched_peaks, check.checked_peaks, check.chance_peaks, settings
        ),
    }


def _chroma_row(ev, fmp: float | None = None) -> dict:
    row = {
        "similarity": round(ev.similarity, 3),
        "tempo": round(ev.tempo_ratio, 4),
        "pitch_st": round(ev.pitch_shift_semitones, 2),
    }
    if fmp is not None:
        row["fmp"] = fmp
    return row


def stages(catalog, query: dict, work_id: int) -> dict:
    """The stage-by-stage evidence of work ``work_id`` in the upload ``query`` (a sidecar)."""
    from audiodup import screening
    from audiodup.audio import load_audio
    from audiodup.fingerprint import UploadFingerprints, fingerprint_hashes
    from audiodup.match import candidate_works, chroma_candidates
    from audiodup.verdict import combine_peaks_and_chroma, decide

    s = catalog.settings
    indexes = catalog.indexes()
    n_works = int(indexes.live.sum())
    audio = load_audio(query["path"], s)
    prints = UploadFingerprints(audio, s)
    fp = prints.query
    row: dict = {"track_id": query["track_id"], "variant": query["variant"]}

    looks = screening.gather_looks(fp, indexes, s, catalog.store, prints.view)
    matches = screening.matches_from_looks(looks, s, catalog.store)
    row["verdict"] = decide(matches, s)
    top = matches[0] if matches else None
    row["top"] = (
        None if top is None else {"work_id": top.work_id, "fmp": top.false_match_probability}
    )

    # hash look-up, as screening does it
    hashes = fingerprint_hashes(fp, s, query=True)
    found = screening.hash_lookup(hashes, indexes, s)
    votes = found.votes
    fps = s.frames_per_second
    lookup = {
        "query_hashes": len(hashes.keys),
        "kept_share": round(found.kept_share, 3),
        "hits": int((votes.work == work_id).sum()),
        "works_with_hits": len(np.unique(votes.work)),
    }
    for name, grids in (("one_grid", (0.0,)), ("two_grids", (0.0, 0.5))):
        ranked = candidate_works(votes, 10**6, fps, 1, None, grids)
        order = [w for w, _ in ranked]
        support = dict(ranked)
        lookup[name] = {
            "rank": order.index(work_id) if work_id in support else None,
            "support": support.get(work_id),
            "best_other": next((n for w, n in ranked if w != work_id), None),
        }
    row["lookup"] = lookup

    # hash verification: the work's line on all its hits, scored as screening scores its lines
    first = looks[0].evidence
    hashed, hits_per_work = screening.hash_candidates(fp, indexes, s, catalog.store)
    own = screening._verify(votes, work_id, s)
    row["verify"] = None
    if own is not None:
        scored = screening.score_hashes(
            {**hashed, work_id: own}.values(), n_works, s, hits_per_work
        )
        row["verify"] = {
            "in_candidates": work_id in hashed,
            "main_inliers": own.main_inliers,
            "inliers": own.inliers,
            "tempo": round(own.tempo_ratio, 4),
            "pitch_st": round(own.pitch_shift_semitones, 2),
            "fmp": scored[work_id].false_match_probability,
        }

    # chroma candidates and alignment (the look as it is)
    candidates = chroma_candidates(fp, indexes, s)
    order = [w for w, _, _ in candidates]
    chroma: dict = {"rank": order.index(work_id) if work_id in order else None}
    if work_id in order:
        _, support, scale = candidates[order.index(work_id)]
        chroma["support"], chroma["scale"] = round(support, 3), round(scale, 4)
    findings = {f.evidence.work_id: f for f in first.chroma}
    if work_id in findings:
        f = findings[work_id]
        chroma["finding"] = _chroma_row(f.evidence, f.false_match_probability)
    others = [f.evidence.similarity for w, f in findings.items() if w != work_id]
    chroma["best_other_similarity"] = round(max(others), 3) if others else None
    reference = catalog.store.fingerprint
    swept = screening.swept_chroma(fp, [(work_id, 1.0)], s, reference)
    chroma["swept"] = _chroma_row(swept[0]) if swept else None
    row["chroma"] = chroma

    # guided peak check of the look as it is, and one at the true alignment
    peaks = first.peaks.get(work_id)
    row["peaks"] = None
    if peaks is not None:
        chroma_fmp = peaks.chroma.false_match_probability if peaks.chroma else None
        confirmed = not set(
            floors_failed(
                peaks.check.matched_peaks, peaks.check.checked_peaks, peaks.check.chance_peaks, s
            )
        ) & {"ratio", "rate"}
        fmp = combine_peaks_and_chroma(
            peaks.probability, n_works, chroma_fmp, s, confirmed=confirmed
        )
        row["peaks"] = {
            **_check_row(peaks.check, s),
            "led_by": "chroma" if peaks.chroma else "hash or swept",
            "checks_tried": peaks.checks_tried,
            "fmp": fmp,
        }
    truth = true_alignment(query, fp.duration_s, s)
    oracle = screening.checked_guesses(fp, [(work_id, truth)], s, reference)[0]
    row["true_alignment_check"] = None if oracle is None else _check_row(oracle, s)
    row["cell_lead_check"] = _cell_lead_row(fp, votes, work_id, catalog, n_works)

    # the work's best match on each look taken
    row["looks"] = []
    n_looks = screening.looks_planned(fp, s)
    for look in looks:
        found_here = screening.matches_from_looks([look], s, catalog.store, n_looks)
        mine = [m for m in found_here if m.work_id == work_id]
        row["looks"].append(
            {
                "time_scale": look.time_scale,
                "start_s": round(look.start_s, 4),
                "fmp": mine[0].false_match_probability if mine else None,
                "relation": mine[0].relation if mine else None,
                "matched_hashes": mine[0].matched_hashes if mine else None,
                "matched_peaks": mine[0].matched_peaks if mine else None,
            }
        )
    return row


def _cell_lead_row(fp, votes, work_id: int, catalog, n_works: int) -> dict | None:
    """The guided peak check led by ``work_id``'s best coarse cell, with the false-match
    probability a lead that stands alone would get (times the works searched)."""
    from audiodup import screening
    from audiodup.verdict import peak_false_match_probability

    s = catalog.settings
    lead = cell_lead(votes, work_id, s.frames_per_second, s.bins_per_semitone)
    if lead is None:
        return None
    check = screening.checked_guesses(fp, [(work_id, lead)], s, catalog.store.fingerprint)[0]
    if check is None:
        return None
    return {
        **_check_row(check, s),
        "lead_tempo": round(lead.tempo_ratio, 4),
        "fmp": peak_false_match_probability(check.probability, n_works),
    }


def run_negatives(catalog_dir: Path, sidecars: list[Path], top: int = 2) -> int:
    """The chance side of a cell lead: for each query that holds no catalog work, the peak check
    led by the best coarse cell of each of its ``top`` candidate works, one JSON line each."""
    from audiodup import screening
    from audiodup.audio import load_audio
    from audiodup.catalog import Catalog
    from audiodup.fingerprint import UploadFingerprints
    from audiodup.match import candidate_works

    with Catalog.open(catalog_dir, create=False) as catalog:
        s = catalog.settings
        indexes = catalog.indexes()
        n_works = int(indexes.live.sum())
        for sidecar in sidecars:
            query = json.loads(sidecar.read_text())
            fp = UploadFingerprints(load_audio(query["path"], s), s).query
            votes = screening.hash_votes(fp, indexes, s)
            ranked = candidate_works(votes, top, s.frames_per_second, 1, None, (0.0, 0.5))
            for rank, (work_id, support) in enumerate(ranked):
                row = {
                    "track_id": query["track_id"],
                    "variant": query["variant"],
                    "rank": rank,
                    "work_id": work_id,
                    "support": support,
                    "check": _cell_lead_row(fp, votes, work_id, catalog, n_works),
                }
                print(json.dumps(row), flush=True)
    return 0


def run_stages(catalog_dir: Path, sidecars: list[Path]) -> int:
    from audiodup.catalog import Catalog
    from benchmarks.corpus import cache_dir

    corpus = json.loads((cache_dir(None) / "corpus.json").read_text())
    source = {t["track_id"]: os.path.realpath(t["path"]) for t in corpus["tracks"]}
    with Catalog.open(catalog_dir, create=False) as catalog:
        work_of = {os.path.realpath(w.path): w.work_id for w in catalog.works()}
        for sidecar in sidecars:
            query = json.loads(sidecar.read_text())
            work_id = work_of.get(source.get(query["track_id"], ""))
            if work_id is None:
                print(f"error: {query['track_id']!r} is not in the catalog", file=sys.stderr)
                continue
            print(json.dumps(stages(catalog, query, work_id)), flush=True)
    return 0


# -- table ----------------------------------------------------------------------------------------
def _fmp(x: float | None) -> str:
    if x is None:
        return "-"
    return "1" if x >= 1.0 else f"{x:.1e}"


def _peaks(p: dict | None) -> str:
    if p is None:
        return "-"
    fails = ",".join(p["fails"]) or "none"
    return (
        f"{p['matched']}/{p['checked']} (chance {p['chance']}) @{p['tempo']:.3f} "
        f"{p['pitch_st']:+.1f} st, fails {fails}"
    )


def _led(p: dict | None) -> str:
    if p is None:
        return "-"
    return f"{_peaks(p)} ({_fmp(p['fmp'])})"


def table_rows(rows: list[dict]) -> list[str]:
    """One markdown line per stages row."""
    head = (
        "| variant | verdict | hits | best cell (rank) 1 grid / 2 grids | line inliers @tempo "
        "(FMP) | chroma rank, sim @tempo pitch | swept sim @tempo | peak check | at true alignment "
        "| cell-led check (FMP) | further looks (FMP) |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        lk, v, c = r["lookup"], r["verify"], r["chroma"]
        cells = (
            f"{lk['one_grid']['support']} ({lk['one_grid']['rank']}) / "
            f"{lk['two_grids']['support']} ({lk['two_grids']['rank']})"
        )
        line = (
            "-"
            if v is None
            else (
                f"{v['main_inliers']} @{v['tempo']:.3f} {v['pitch_st']:+.1f} st ({_fmp(v['fmp'])})"
                + ("" if v["in_candidates"] else " not verified")
            )
        )
        finding = c.get("finding")
        chroma = f"{c['rank']}" + (
            f", {finding['similarity']} @{finding['tempo']:.3f} {finding['pitch_st']:+.1f}"
            if finding
            else ""
        )
        swept = "-" if not c["swept"] else f"{c['swept']['similarity']} @{c['swept']['tempo']:.3f}"
        further = (
            "; ".join(
                f"x{lo['time_scale']:g}+{lo['start_s']:g}s {_fmp(lo['fmp'])}"
                for lo in r["looks"][1:]
            )
            or "-"
        )
        lines.append(
            f"| {r['variant']} | {r['verdict']} | {lk['hits']} | {cells} | {line} | {chroma} | "
            f"{swept} | {_peaks(r['peaks'])} | {_peaks(r['true_alignment_check'])} | "
            f"{_led(r.get('cell_lead_check'))} | {further} |"
        )
    return lines


def main(argv: list[str]) -> int:
    usage = (
        "usage: python -m benchmarks.chain_misses "
        "{render OUT TRACK...|stages CATALOG JSON...|negatives CATALOG JSON...|table JSONL}"
    )
    if not argv or argv[0] not in ("render", "stages", "negatives", "table") or len(argv) < 2:
        print(f"error: {usage}", file=sys.stderr)
        return 2
    command, args = argv[0], argv[1:]
    if command == "render":
        for meta in render(Path(args[0]), args[1:]):
            print(meta)
        return 0
    if command == "stages":
        return run_stages(Path(args[0]), [Path(a) for a in args[1:]])
    if command == "negatives":
        return run_negatives(Path(args[0]), [Path(a) for a in args[1:]])
    rows = [json.loads(line) for line in Path(args[0]).read_text().splitlines() if line.strip()]
    by_track: dict[str, list[dict]] = {}
    for r in rows:
        by_track.setdefault(r["track_id"], []).append(r)
    for track_id, group in by_track.items():
        print(f"\n#### `{track_id}`\n")
        print("\n".join(table_rows(group)))
    return 0


def _main_in_one_line(argv: list[str]) -> int:
    """:func:`main`, with a missing or unreadable file, catalog or audio said in one line."""
    from audiodup.errors import AudiodupError

    try:
        return main(argv)
    except (OSError, ValueError, KeyError, AudiodupError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(_main_in_one_line(sys.argv[1:]))
