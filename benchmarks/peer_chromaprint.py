"""The peer: Chromaprint (``fpcalc -raw``) with AcoustID-style best-offset matching.

For a query and every catalog work, the query fingerprint is slid over the reference at every
offset with at least ``min_overlap`` overlapping items; the bit error rate (BER) over the overlap
is counted exactly and ``score = 1 - BER`` at the best offset. All offsets are evaluated at once:
per bit, mismatches = ones(q) + ones(r) - 2 * (q AND r), and the AND counts for every offset are
a cross-correlation, summed over the 32 bits in the frequency domain. Items that encode digital
silence are left out of the comparison, as the AcoustID server leaves them out of its queries.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

ITEM_RATE_HZ = 11025 / 4096 * 3  # fpcalc: 4096-sample frames, 2/3 overlap, at 11025 Hz
MIN_OVERLAP_ITEMS = 10
SILENCE_ITEM = 627964279  # what Chromaprint emits for digital silence (AcoustID ignores it)


def available() -> bool:
    return shutil.which("fpcalc") is not None


def fpcalc(path: Path | str) -> np.ndarray:
    """Raw Chromaprint fingerprint of the whole file as uint32 (empty if none)."""
    proc = subprocess.run(
        ["fpcalc", "-raw", "-length", "0", str(path)], capture_output=True, text=True
    )
    # fpcalc reports "Error decoding audio frame (End of file)" at the end of some files and
    # exits non-zero although the fingerprint is complete: trust the FINGERPRINT line.
    for line in proc.stdout.splitlines():
        if line.startswith("FINGERPRINT="):
            body = line.split("=", 1)[1].strip()
            if not body:
                return np.zeros(0, np.uint32)
            return np.array([int(v) for v in body.split(",")], dtype=np.int64).astype(np.uint32)
    raise RuntimeError(f"fpcalc failed on {path}: {proc.stderr.strip()[:200]}")


def cached_fingerprint(path: Path | str, cache: Path) -> np.ndarray:
    """:func:`fpcalc` cached under `cache`, keyed by path, size and mtime."""
    st = Path(path).stat()
    key = hashlib.sha1(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:20]
    f = cache / f"{key}.npy"
    if f.exists():
        return np.load(f)
    try:
        fp = fpcalc(path)
    except RuntimeError:
        fp = _fpcalc_via_wav(path)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(".tmp.npy")
    np.save(tmp, fp)
    tmp.replace(f)
    return fp


def _fpcalc_via_wav(path: Path | str) -> np.ndarray:
    """Some Vorbis files open in libsndfile but not in fpcalc's FFmpeg: decode them first."""
    y, sr = sf.read(str(path), dtype="float32", always_2d=True)
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        sf.write(tmp.name, y, sr, subtype="PCM_16")
        return fpcalc(tmp.name)


def _signals(fp: np.ndarray) -> np.ndarray:
    """(34, n) float32: the 32 bits of every non-silent item, the validity mask, popcounts.

    Items equal to :data:`SILENCE_ITEM` get zero weight, as in the AcoustID server, which
    drops them from its queries: digital silence fingerprints to that constant and would
    otherwise "match" every other silence perfectly.
    """
    valid = (fp != SILENCE_ITEM).astype(np.float32)
    shifts = np.arange(32, dtype=np.uint32)[:, None]
    bits = ((fp[None, :] >> shifts) & 1).astype(np.float32) * valid
    ones = np.bitwise_count(fp).astype(np.float32) * valid
    return np.vstack([bits, valid[None, :], ones[None, :]])


@dataclass(frozen=True)
class PeerMatch:
    work: str
    score: float  # 1 - bit error rate at the best offset
    offset_items: int  # reference item aligned with query item 0
    overlap_items: int  # non-silent items compared


class ChromaprintIndex:
    """Brute-force AcoustID-style matcher over a dict ``work -> fingerprint``.

    For offset k (query item i against reference item i + k), with v the non-silence masks:
    overlap(k) = sum v_q v_r, ones_q(k) = sum popcount(q) v_q v_r, likewise ones_r(k), and
    agreeing one-bits both(k) = sum_b sum_i q_b r_b. Mismatched bits = ones_q + ones_r - 2 both.
    Every term is a cross-correlation, done with FFTs for all offsets at once.
    """

    def __init__(self, refs: dict[str, np.ndarray], min_overlap: int = MIN_OVERLAP_ITEMS):
        self.names = [k for k, v in refs.items() if v.size]
        self.refs = [refs[k] for k in self.names]
        self.min_overlap = min_overlap
        self._spectra: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _ref_spectra(self, nfft: int) -> tuple[np.ndarray, np.ndarray]:
        """Bit spectra (works, F, 32) and mask/popcount spectra (works, 2, F), F = nfft/2+1.

        Kept for one FFT size at a time (memory); bits last, contiguous, for a fast einsum.
        """
        if nfft not in self._spectra:
            specs = [np.fft.rfft(_signals(r), nfft, axis=1).astype(np.complex64) for r in self.refs]
            bits = np.ascontiguousarray(np.stack([sp[:32].T for sp in specs]))
            rest = np.stack([sp[32:] for sp in specs])
            self._spectra = {nfft: (bits, rest)}
        return self._spectra[nfft]

    def search(self, q: np.ndarray, top: int = 3) -> list[PeerMatch]:
        """Best works for query fingerprint `q`, best first."""
        m = q.size
        if m < self.min_overlap or not self.refs:
            return []
        n_max = max(r.size for r in self.refs)
        nfft = 1 << int(np.ceil(np.log2(n_max + m)))
        qs = np.conj(np.fft.rfft(_signals(q), nfft, axis=1)).astype(np.complex64)
        r_bits, r_rest = self._ref_spectra(nfft)
        q_bits = np.ascontiguousarray(qs[:32].T)
        spec = np.stack(
            [
                np.einsum("wfb,fb->wf", r_bits, q_bits, optimize=True),  # agreeing one-bits
                qs[32] * r_rest[:, 0],  # compared (non-silent) items
                qs[33] * r_rest[:, 0],  # one-bits of the query within them
                qs[32] * r_rest[:, 1],  # one-bits of the reference within them
            ]
        )
        ks = np.arange(-(m - 1), n_max)  # offsets past a shorter work have no overlap
        both, overlap, ones_q, ones_r = np.rint(np.fft.irfft(spec, nfft, axis=2)[:, :, ks % nfft])
        ok = overlap >= self.min_overlap
        ber = np.where(ok, (ones_q + ones_r - 2 * both) / (32.0 * np.maximum(overlap, 1)), np.inf)
        best = np.argmin(ber, axis=1)
        out = [
            PeerMatch(name, float(1 - ber[w, i]), int(ks[i]), int(overlap[w, i]))
            for w, (name, i) in enumerate(zip(self.names, best, strict=True))
            if ok[w, i]
        ]
        out.sort(key=lambda p: -p.score)
        return out[:top]


def overlapping_pairs(
    fingerprints: dict[str, np.ndarray], min_score: float = 0.80, min_overlap_s: float = 10.0
) -> list[tuple[str, str]]:
    """Pairs of recordings that share at least `min_overlap_s` of near-identical audio."""
    min_items = int(min_overlap_s * ITEM_RATE_HZ)
    names = [k for k, v in fingerprints.items() if v.size >= min_items]
    pairs = []
    for i, a in enumerate(names[:-1]):
        index = ChromaprintIndex({b: fingerprints[b] for b in names[i + 1 :]}, min_items)
        pairs += [
            (a, p.work)
            for p in index.search(fingerprints[a], top=len(names))
            if p.score >= min_score
        ]
    return pairs
