"""The peer: Chromaprint (``fpcalc -raw``) with AcoustID-style best-offset matching.

For a query and every catalog work, the query fingerprint is slid over the reference at every
offset with at least ``min_overlap`` overlapping items; the bit error rate (BER) over the overlap
is counted exactly and ``score = 1 - BER`` at the best offset. All offsets are evaluated at once:
per bit, mismatches = ones(q) + ones(r) - 2 * (q AND r), and the AND counts for every offset are
a cross-correlation, summed over the 32 bits in the frequency domain (one inverse FFT per work).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ITEM_RATE_HZ = 11025 / 4096 * 3  # fpcalc: 4096-sample frames, 2/3 overlap, at 11025 Hz
MIN_OVERLAP_ITEMS = 10


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
    fp = fpcalc(path)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(".tmp.npy")
    np.save(tmp, fp)
    tmp.replace(f)
    return fp


def _bits(fp: np.ndarray) -> np.ndarray:
    """(32, n) float32 matrix of the fingerprint's bits."""
    shifts = np.arange(32, dtype=np.uint32)[:, None]
    return ((fp[None, :] >> shifts) & 1).astype(np.float32)


def _popcount(fp: np.ndarray) -> np.ndarray:
    return np.bitwise_count(fp).astype(np.float64)


@dataclass(frozen=True)
class PeerMatch:
    work: str
    score: float  # 1 - bit error rate at the best offset
    offset_items: int  # reference item aligned with query item 0
    overlap_items: int


def best_offset_scores(
    q: np.ndarray, r: np.ndarray, min_overlap: int = MIN_OVERLAP_ITEMS
) -> tuple[float, int, int]:
    """Exact best-offset score of query `q` against reference `r` (both uint32)."""
    index = ChromaprintIndex({"r": r}, min_overlap=min_overlap)
    m = index.search(q, top=1)
    return (m[0].score, m[0].offset_items, m[0].overlap_items) if m else (0.0, 0, 0)


class ChromaprintIndex:
    """Brute-force AcoustID-style matcher over a dict ``work -> fingerprint``."""

    def __init__(self, refs: dict[str, np.ndarray], min_overlap: int = MIN_OVERLAP_ITEMS):
        self.names = [k for k, v in refs.items() if v.size]
        self.refs = [refs[k] for k in self.names]
        self.min_overlap = min_overlap
        self._spectra: dict[int, list[np.ndarray]] = {}
        self._ones = [np.concatenate([[0.0], np.cumsum(_popcount(r))]) for r in self.refs]

    def _ref_spectra(self, nfft: int) -> list[np.ndarray]:
        if nfft not in self._spectra:
            self._spectra = {}  # keep only one size: memory grows as works x 32 x nfft
            self._spectra[nfft] = [
                np.fft.rfft(_bits(r), nfft, axis=1).astype(np.complex64) for r in self.refs
            ]
        return self._spectra[nfft]

    def search(self, q: np.ndarray, top: int = 3) -> list[PeerMatch]:
        """Best works for query fingerprint `q`, best first."""
        m = q.size
        if m < self.min_overlap or not self.refs:
            return []
        n_max = max(r.size for r in self.refs)
        nfft = 1 << int(np.ceil(np.log2(n_max + m)))
        qspec = np.conj(np.fft.rfft(_bits(q), nfft, axis=1)).astype(np.complex64)
        q_ones = np.concatenate([[0.0], np.cumsum(_popcount(q))])
        out: list[PeerMatch] = []
        for name, r, rspec, r_ones in zip(
            self.names, self.refs, self._ref_spectra(nfft), self._ones, strict=True
        ):
            n = r.size
            both = np.fft.irfft(np.einsum("bf,bf->f", qspec, rspec), nfft)
            # offset k: query item i aligned with reference item i + k, k in [-(m-1), n-1]
            ks = np.arange(-(m - 1), n)
            lo = np.maximum(0, -ks)  # first query item in the overlap
            hi = np.minimum(m, n - ks)  # one past the last
            overlap = hi - lo
            ok = overlap >= self.min_overlap
            if not ok.any():
                continue
            ks, lo, hi, overlap = ks[ok], lo[ok], hi[ok], overlap[ok]
            agree_ones = np.rint(both[ks % nfft])
            ones_q = q_ones[hi] - q_ones[lo]
            ones_r = r_ones[hi + ks] - r_ones[lo + ks]
            ber = (ones_q + ones_r - 2 * agree_ones) / (32.0 * overlap)
            i = int(np.argmin(ber))
            out.append(PeerMatch(name, float(1 - ber[i]), int(ks[i]), int(overlap[i])))
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
        pairs += [(a, p.work) for p in index.search(fingerprints[a], top=len(names)) if p.score >= min_score]
    return pairs
