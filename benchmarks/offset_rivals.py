"""Does a match's alignment pin where the upload sits in the work? Measured as a way to tell
other beats of one drum kit (:mod:`benchmarks.kit_beats`, a known limit) from copies.

For an upload's top match, the alignment of its hash line or guided peak check is refined by a
guided peak check; then the upload's peaks that land on the work's are counted at that
alignment and at every offset from a quarter second to 8 s away (the rival: a beat, a bar or a
loop later). A copy lines up best at one offset; sounds shared on one rhythmic grid line up as
well a beat or a bar away. One JSON line per upload: its verdict, top work, the count at the
alignment (``at``), the rival's count and shift, and ``ratio`` = rival / at.

    python -m benchmarks.offset_rivals CATALOG UPLOAD... > rivals.jsonl
    python -m benchmarks.offset_rivals --summary rivals.jsonl [more.jsonl ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from audiodup import Catalog
from audiodup.audio import load_audio
from audiodup.errors import AudiodupError
from audiodup.peakcheck import (
    Alignment,
    ReferencePeaks,
    check_alignment,
    checked_peaks,
    coincidences,
    hash_alignment,
    reference_peaks,
)
from audiodup.screening import UploadFingerprints, gather_looks, matches_from_looks
from audiodup.settings import DEFAULT_SETTINGS, Settings
from audiodup.verdict import decide

SPAN_S = 8.0
MIN_SHIFT_S = 0.25
NEAR_FRAMES = 3


def offset_counts(
    query_peaks: np.ndarray, reference: ReferencePeaks, alignment: Alignment, settings: Settings
) -> tuple[int, int, float] | None:
    """``(at, rival, rival_shift_s)``: the upload peaks landing on the work's at ``alignment``
    (within :data:`NEAR_FRAMES`), and the most at one offset :data:`MIN_SHIFT_S` to
    :data:`SPAN_S` away; None when fewer than 8 peaks map inside the work. The peaks are those a
    guided peak check looks at (:func:`audiodup.peakcheck.checked_peaks`)."""
    fps = settings.frames_per_second
    frames, bins = checked_peaks(query_peaks, alignment, reference.n_bins, settings)
    if len(frames) < 8:
        return None
    reach = int(SPAN_S * fps)
    offsets = np.arange(-reach, reach + 1)
    base = np.round(alignment.ref_frames(frames)).astype(np.int64)
    counts, _, _ = coincidences(reference, base, bins, offsets, settings)
    far = np.abs(offsets) >= int(MIN_SHIFT_S * fps)
    rival = int(np.argmax(np.where(far, counts, -1)))
    return (
        int(counts[np.abs(offsets) <= NEAR_FRAMES].max()),
        int(counts[rival]),
        offsets[rival] / fps,
    )


def top_match_rival(catalog: Catalog, indexes, path: Path, settings: Settings) -> dict:
    """The upload's verdict and top match, with the offset counts of the best-refined
    alignment of that work over every look."""
    prints = UploadFingerprints(load_audio(path, settings), settings)
    looks = gather_looks(prints.query, indexes, settings, catalog.store, prints.view)
    matches = matches_from_looks(looks, settings, catalog.store)
    row: dict = {"upload": str(path), "verdict": decide(matches, settings)}
    if not matches:
        return row
    top = matches[0]
    row.update(work_id=top.work_id, fmp=top.false_match_probability)
    n_bins = settings.bins_per_octave * settings.n_octaves
    reference = reference_peaks(catalog.store.fingerprint(top.work_id).peaks, n_bins)
    best = None
    for look in looks:
        found = look.evidence
        leads = []
        if top.work_id in found.hashes:
            leads.append(hash_alignment(found.hashes[top.work_id].evidence, settings))
        if top.work_id in found.peaks:
            leads.append(found.peaks[top.work_id].check.alignment)
        for lead in leads:
            check = check_alignment(look.query.peaks, reference, lead, settings)
            counts = check and offset_counts(look.query.peaks, reference, check.alignment, settings)
            if counts and (best is None or counts[0] > best[0]):
                best = counts
    if best is not None:
        at, rival, shift = best
        row.update(at=at, rival=rival, rival_shift_s=round(shift, 3), ratio=rival / max(at, 1))
    return row


def summary(rows: list[dict]) -> dict:
    """Per verdict: how many uploads, and the ratio's percentiles and tail."""
    out = {}
    for verdict in ("duplicate", "suspect", "clean"):
        ratios = np.array(
            [r["ratio"] for r in rows if r.get("verdict") == verdict and "ratio" in r]
        )
        if len(ratios) == 0:
            continue
        p10, p50, p90, p99 = np.percentile(ratios, [10, 50, 90, 99]).round(2).tolist()
        out[verdict] = {
            "uploads": len(ratios),
            "ratio_p10_p50_p90_p99": [p10, p50, p90, p99],
            "ratio_min_max": [round(float(ratios.min()), 2), round(float(ratios.max()), 2)],
            "at_least_0.9": int((ratios >= 0.9).sum()),
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="CATALOG UPLOAD..., or --summary FILES")
    parser.add_argument("--summary", action="store_true", help="summarise JSON-lines files")
    args = parser.parse_args(argv)
    if args.summary:
        try:
            rows = [json.loads(line) for p in args.paths for line in p.read_text().splitlines()]
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(summary(rows), indent=1))
        return 0
    catalog_dir, uploads = args.paths[0], args.paths[1:]
    try:
        catalog = Catalog.open(catalog_dir, create=False)
    except AudiodupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with catalog:
        indexes = catalog.indexes()
        for path in uploads:
            try:
                row = top_match_rival(catalog, indexes, path, DEFAULT_SETTINGS)
            except (AudiodupError, OSError) as exc:
                row = {"upload": str(path), "error": str(exc)}
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
