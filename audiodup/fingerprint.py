"""Fingerprint a decoded recording: spectral peaks (for hashes) and chroma, from one spectrogram."""

from __future__ import annotations

import io
import threading
import zipfile
from dataclasses import dataclass, replace

import numpy as np

from .audio import Audio
from .chroma import chroma_frames, estimate_tuning
from .errors import CatalogError
from .hashes import TripletHashes, concat_hashes, triplet_hashes
from .peaks import PEAK_DTYPE, PeakCandidates, peak_candidates, select_peaks, thin_peaks
from .settings import CHROMA_LEVELS, DEFAULT_SETTINGS, PEAK_BIN_STEPS, Settings
from .spectral import LogSpectrogram, log_spectrogram, magnitude_at_hop

# storage precisions: structural, so part of the recipe id (settings.RECIPE_STRUCTURE)
_BIN_STEPS = PEAK_BIN_STEPS  # stored peak frequencies are in 1/16 of a log bin
_CHROMA_LEVELS = CHROMA_LEVELS  # stored chroma is quantised to 5 bits; alignment needs no more

# np.load parses each array's header with ast.literal_eval, and CPython 3.11's AST state is
# shared by threads: two threads parsing at once (Dask workers' threads loading fingerprints)
# can fail with "SystemError: AST constructor recursion depth mismatch" (CPython gh-106905).
_NPZ_READ_LOCK = threading.Lock()


@dataclass(frozen=True)
class Fingerprint:
    """What audiodup keeps of a recording: enough to rebuild every index entry."""

    peaks: np.ndarray  # PEAK_DTYPE, sorted by time
    chroma: np.ndarray  # (n_frames, 12) float32 at settings.chroma_fps
    tuning_semitones: float
    duration_s: float
    recipe: str

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            frame_step=np.diff(self.peaks["frame"], prepend=np.uint32(0)).astype(np.uint32),
            qbin=np.round(self.peaks["bin"] * _BIN_STEPS).astype(np.uint16),
            strength=np.round(np.clip(self.peaks["strength"], 0, 25.5) * 10).astype(np.uint8),
            chroma=np.round(np.clip(self.chroma, -1, 1) * _CHROMA_LEVELS).astype(np.int8),
            meta=np.array([self.tuning_semitones, self.duration_s]),
            recipe=np.array(self.recipe),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> Fingerprint:
        """Inverse of :meth:`to_bytes`; raises ``CatalogError`` for a damaged blob."""
        try:
            return cls._from_bytes(blob)
        except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise CatalogError(f"stored fingerprint is damaged ({exc})") from None

    @classmethod
    def _from_bytes(cls, blob: bytes) -> Fingerprint:
        with _NPZ_READ_LOCK, np.load(io.BytesIO(blob), allow_pickle=False) as data:
            peaks = np.empty(len(data["frame_step"]), dtype=PEAK_DTYPE)
            peaks["frame"] = np.cumsum(data["frame_step"], dtype=np.uint64)
            peaks["bin"] = data["qbin"] / _BIN_STEPS
            peaks["strength"] = data["strength"] / 10.0
            tuning, duration = data["meta"]
            return cls(
                peaks=peaks,
                chroma=(data["chroma"] / _CHROMA_LEVELS).astype(np.float32),
                tuning_semitones=float(tuning),
                duration_s=float(duration),
                recipe=str(data["recipe"]),
            )


def fingerprint_audio(
    audio: Audio,
    settings: Settings = DEFAULT_SETTINGS,
    *,
    query: bool = False,
    time_scale: float = 1.0,
    hop_phase: float = 0.0,
) -> Fingerprint:
    """Fingerprint decoded audio. Queries keep denser peaks than catalog entries.

    With ``time_scale`` (queries only) the audio is analysed with a hop ``time_scale`` times
    shorter and its frames are counted as ordinary ones: the fingerprint of the upload played
    ``time_scale`` times slower, pitch unchanged (``duration_s`` grows with it). A 2x
    time-stretch seen at ``time_scale=2`` has the original's tempo, so its peaks are picked with
    the neighbourhoods and the time precision of the stored ones (see
    ``Settings.query_view_scales``). With ``hop_phase`` the analysis starts that fraction of a
    hop into the audio (:func:`view_start_samples`): a short upload's frames then fall nearer
    the stored frames of the excerpt it may be (see ``Settings.short_query_phases``).
    """
    if (time_scale, hop_phase) != (1.0, 0.0) and not query:
        raise ValueError("only queries are fingerprinted at another time scale or phase")
    hop = view_hop(settings, time_scale)
    skip = view_start_samples(settings, time_scale, hop_phase)
    samples = audio.samples[skip:] if skip else audio.samples
    if hop == settings.hop_length:
        spec = log_spectrogram(samples, settings)
    else:  # the frames of the slowed view count as frames of the ordinary hop
        spec = log_spectrogram(samples, replace(settings, hop_length=hop))
        spec = replace(spec, frames_per_second=settings.frames_per_second)
    candidates = peak_candidates(spec, settings.peak_time_radius, settings.peak_freq_radius)
    density = max(settings.query_peak_densities) if query else settings.peaks_per_second
    return _fingerprint(spec, candidates, density, audio, settings, time_scale, hop_phase)


class UploadFingerprints:
    """An upload's fingerprints from one analysis, made as they are asked for: ``query`` (its
    search fingerprint), :meth:`stored` (the one a catalog keeps of it) and :meth:`view` (the
    further looks' fingerprints, a :data:`audiodup.screening.View`).

    Each is bit for bit what :func:`fingerprint_audio` gives, and they share the work they have
    in common: ``stored`` selects its peaks from the query's candidates (the spectrogram, chroma
    and tuning are the same); the view 2x faster (hop 512) takes every other frame of the
    query's spectrogram, and the view 2x slower (hop 128) interleaves them with a hop-256 STFT
    started 128 samples in (:func:`audiodup.spectral.magnitude_at_hop`). Measured on a 4-min
    upload (issue #16): the two views 0.24-0.28 CPU-s made alone, 0.16-0.19 this way.
    """

    def __init__(self, audio: Audio, settings: Settings = DEFAULT_SETTINGS):
        self.audio, self.settings = audio, settings
        self._spec = log_spectrogram(audio.samples, settings)
        self._candidates = peak_candidates(
            self._spec, settings.peak_time_radius, settings.peak_freq_radius
        )
        self.query = self._fingerprint(self._spec, self._candidates, query=True)

    def stored(self) -> Fingerprint:
        """What :func:`fingerprint_audio` gives with ``query=False``: the catalog's density."""
        peaks = _selected_peaks(self._candidates, self.settings.peaks_per_second)
        return replace(self.query, peaks=peaks)  # chroma, tuning, duration: the same spectrogram

    def view(self, time_scale: float, hop_phase: float) -> Fingerprint:
        """``fingerprint_audio(audio, settings, query=True, time_scale=..., hop_phase=...)``."""
        settings = self.settings
        hop = view_hop(settings, time_scale)
        if hop_phase != 0.0 or hop == settings.hop_length:
            magnitude = None
        else:
            magnitude = magnitude_at_hop(self._spec.magnitude, self.audio.samples, settings, hop)
        if magnitude is None:
            return fingerprint_audio(
                self.audio, settings, query=True, time_scale=time_scale, hop_phase=hop_phase
            )
        spec = replace(self._spec, magnitude=magnitude)  # frames counted at the ordinary hop
        candidates = peak_candidates(spec, settings.peak_time_radius, settings.peak_freq_radius)
        return self._fingerprint(spec, candidates, query=True, time_scale=time_scale)

    def _fingerprint(
        self,
        spec: LogSpectrogram,
        candidates: PeakCandidates,
        *,
        query: bool,
        time_scale: float = 1.0,
    ) -> Fingerprint:
        settings = self.settings
        density = max(settings.query_peak_densities) if query else settings.peaks_per_second
        return _fingerprint(spec, candidates, density, self.audio, settings, time_scale, 0.0)


def _fingerprint(
    spec: LogSpectrogram,
    candidates: PeakCandidates,
    peaks_per_second: float,
    audio: Audio,
    settings: Settings,
    time_scale: float,
    hop_phase: float,
) -> Fingerprint:
    """The fingerprint of ``audio`` seen through ``spec`` (its view at ``time_scale`` and
    ``hop_phase``), peaks selected from ``candidates`` at ``peaks_per_second``."""
    peaks = _selected_peaks(candidates, peaks_per_second)
    tuning = estimate_tuning(spec)
    hop = view_hop(settings, time_scale)
    skip = view_start_samples(settings, time_scale, hop_phase)
    return Fingerprint(
        peaks=peaks,
        chroma=chroma_frames(spec, tuning, settings.chroma_fps),
        tuning_semitones=tuning,
        duration_s=(audio.duration_s - skip / settings.sample_rate_hz) * settings.hop_length / hop,
        recipe=settings.recipe,
    )


def _selected_peaks(candidates: PeakCandidates, peaks_per_second: float) -> np.ndarray:
    peaks = select_peaks(candidates, peaks_per_second)
    # store-precision bins now, so hashes made at add time equal those rebuilt from storage
    peaks["bin"] = np.round(peaks["bin"] * _BIN_STEPS) / _BIN_STEPS
    return peaks


def view_hop(settings: Settings, time_scale: float) -> int:
    """The analysis hop (samples) of the upload seen ``time_scale`` times slower."""
    return int(round(settings.hop_length / time_scale))


def view_start_samples(settings: Settings, time_scale: float, hop_phase: float) -> int:
    """Samples of the upload a view skips: ``hop_phase`` of its hop."""
    return int(round(hop_phase * view_hop(settings, time_scale)))


def fingerprint_hashes(
    fingerprint: Fingerprint, settings: Settings = DEFAULT_SETTINGS, *, query: bool = False
) -> TripletHashes:
    """Triplet hashes of a fingerprint: narrow fan-out for the catalog; for queries a wide
    fan-out, multi-probe keys and one set per peak density in ``query_peak_densities``."""
    common = dict(
        max_dt_frames=int(settings.hash_max_dt_s * settings.frames_per_second),
        max_df_bins=settings.hash_max_df_bins,
        ratio_levels=settings.ratio_levels,
        df_quant_bins=settings.df_quant_bins,
    )
    if not query:
        return triplet_hashes(fingerprint.peaks, fanout=settings.hash_fanout, **common)
    parts = [
        triplet_hashes(
            thin_peaks(fingerprint.peaks, density, settings.frames_per_second),
            fanout=settings.query_hash_fanout,
            multiprobe=True,
            **common,
        )
        for density in sorted(settings.query_peak_densities)
    ]
    return concat_hashes(parts)
