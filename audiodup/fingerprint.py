"""Fingerprint a decoded recording: spectral peaks (for hashes) and chroma, from one spectrogram."""

from __future__ import annotations

import io
import struct
import threading
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import overload

import numpy as np

from .audio import Audio
from .chroma import chroma_frames, estimate_tuning
from .errors import CatalogError
from .hashes import TripletHashes, concat_hashes, triplet_hashes
from .peaks import PEAK_DTYPE, PeakCandidates, peak_candidates, select_peaks, thin_peaks
from .results import CHANNEL_SIDES, Signal, numbered_parts_of
from .settings import CHROMA_LEVELS, DEFAULT_SETTINGS, PEAK_BIN_STEPS, Settings
from .spectral import LogSpectrogram, log_spectrogram, magnitude_at_hop
from .stereo import numbered_parts_apart, part_audio, stereo_spans

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
        """The stored form: a fixed header, the recipe id, then one zlib stream of the
        quantised arrays (:data:`_BLOB_HEADER`)."""
        if self.chroma.ndim != 2 or self.chroma.shape[1] != 12:
            raise ValueError(f"chroma must have 12 columns, not shape {self.chroma.shape}")
        arrays = (
            np.diff(self.peaks["frame"], prepend=np.uint32(0)).astype("<u4"),
            np.round(self.peaks["bin"] * _BIN_STEPS).astype("<u2"),
            np.round(np.clip(self.peaks["strength"], 0, 25.5) * 10).astype(np.uint8),
            np.round(np.clip(self.chroma, -1, 1) * _CHROMA_LEVELS).astype(np.int8),
        )
        recipe = self.recipe.encode()
        header = _BLOB_HEADER.pack(
            _BLOB_MAGIC,
            len(self.peaks),
            len(self.chroma),
            self.tuning_semitones,
            self.duration_s,
            len(recipe),
        )
        return header + recipe + zlib.compress(b"".join(a.tobytes() for a in arrays), 6)

    @classmethod
    def from_bytes(cls, blob: bytes) -> Fingerprint:
        """Inverse of :meth:`to_bytes` (and reader of the former .npz form); raises
        ``CatalogError`` for a damaged blob."""
        try:
            if blob[: len(_BLOB_MAGIC)] == _BLOB_MAGIC:
                return cls._from_fields(*_stored_fields(blob))
            with _NPZ_READ_LOCK:
                return cls._from_fields(*_npz_fields(blob))
        except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise CatalogError(f"stored fingerprint is damaged ({exc})") from None

    @classmethod
    def _from_fields(
        cls,
        frame_step: np.ndarray,
        qbin: np.ndarray,
        strength: np.ndarray,
        chroma: np.ndarray,
        tuning: float,
        duration: float,
        recipe: str,
    ) -> Fingerprint:
        peaks = np.empty(len(frame_step), dtype=PEAK_DTYPE)
        peaks["frame"] = np.cumsum(frame_step, dtype=np.uint64)
        peaks["bin"] = qbin / _BIN_STEPS
        peaks["strength"] = strength / 10.0
        return cls(
            peaks=peaks,
            chroma=(chroma / _CHROMA_LEVELS).astype(np.float32),
            tuning_semitones=float(tuning),
            duration_s=float(duration),
            recipe=recipe,
        )


# The stored form (Fingerprint.to_bytes): magic, peak count, chroma frames, tuning in
# semitones, duration in seconds, the recipe id's length; the recipe id (UTF-8); then one zlib
# stream of the peaks' frame steps (<u4), bins in 1/16 (<u2), strengths in 1/10 (u1) and the
# chroma rows (i1, 12 per frame). The former form, an .npz archive, took 0.46 ms per
# fingerprint to read (zip members, each array's header parsed by ast), this one 0.14
# (benchmarks/CPU.md).
_BLOB_MAGIC = b"ADFP2"
_BLOB_HEADER = struct.Struct("<5sIIddH")
_PEAK_FIELDS = ("<u4", "<u2", "u1")  # per peak; then the chroma, 12 x i1 per frame
_PEAK_BYTES = sum(np.dtype(field).itemsize for field in _PEAK_FIELDS)


def _stored_fields(blob: bytes) -> tuple:
    """The fields of a blob of the stored form, checked against the sizes its header gives."""
    if len(blob) < _BLOB_HEADER.size:
        raise ValueError("shorter than its header")
    _, n_peaks, n_frames, tuning, duration, recipe_length = _BLOB_HEADER.unpack_from(blob)
    start = _BLOB_HEADER.size + recipe_length
    recipe = blob[_BLOB_HEADER.size : start].decode()
    expected = n_peaks * _PEAK_BYTES + n_frames * 12
    inflater = zlib.decompressobj()
    raw = inflater.decompress(blob[start:], expected + 1)  # never more than the header says
    if len(raw) != expected or not inflater.eof or inflater.unused_data:
        raise ValueError("its data does not have the sizes its header gives")
    fields, offset = [], 0
    for field in _PEAK_FIELDS:
        array = np.frombuffer(raw, dtype=field, count=n_peaks, offset=offset)
        fields.append(array)
        offset += array.nbytes
    chroma = np.frombuffer(raw, dtype=np.int8, offset=offset).reshape(n_frames, 12)
    return (*fields, chroma, tuning, duration, recipe)


def _npz_fields(blob: bytes) -> tuple:
    """The fields of a blob of the former form, an .npz archive (catalogs made before
    2026-12-01 hold them)."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        tuning, duration = data["meta"]
        return (
            data["frame_step"],
            data["qbin"],
            data["strength"],
            data["chroma"],
            tuning,
            duration,
            str(data["recipe"]),
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
        # what else of a stereo upload is screened (its difference, its channels), each
        # fingerprinted alone where it holds music of its own
        self.parts = SignalParts(audio, settings)
        self.audio, self.settings = replace(audio, difference=None, channels=None), settings
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


@dataclass(frozen=True)
class SignalPrints:
    """A part of a stereo upload screened beside its mix (:data:`audiodup.results.Signal`), its
    fingerprints, and the second of the upload its stretch starts at."""

    signal: Signal
    prints: UploadFingerprints
    start_s: float = 0.0


_MODES = ("auto", "always", "never")


class SignalParts(Sequence[SignalPrints]):
    """The parts of ``audio`` to screen beside its mix (:func:`stereo_stretches`), a part silent
    over its stretch left out, each fingerprinted when it is taken and not kept: a 20-minute
    7.1 file can have 36 parts, which held 4 GB when all were analysed at once (a review)."""

    def __init__(self, audio: Audio, settings: Settings):
        self._audio, self._settings = audio, settings
        self._stretches = [
            (signal, span)
            for signal, span in stereo_stretches(audio, settings)
            if part_audio(audio, signal, settings, span or None) is not None
        ]

    @property
    def signals(self) -> tuple[Signal, ...]:
        """The parts' signals, in order, none of them fingerprinted."""
        return tuple(signal for signal, _ in self._stretches)

    def __len__(self) -> int:
        return len(self._stretches)

    @overload
    def __getitem__(self, index: int) -> SignalPrints: ...

    @overload
    def __getitem__(self, index: slice) -> list[SignalPrints]: ...

    def __getitem__(self, index: int | slice) -> SignalPrints | list[SignalPrints]:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        signal, span = self._stretches[index]
        part = part_audio(self._audio, signal, self._settings, span or None)
        assert part is not None  # a silent one was left out
        prints = UploadFingerprints(part, self._settings)
        return SignalPrints(signal, prints, span[0] if span else 0.0)


def stereo_stretches(audio: Audio, settings: Settings) -> list[tuple[Signal, tuple]]:
    """Which parts of ``audio`` screening looks at beside its mix, and over what: its stereo
    difference (``settings.stereo_difference``) and its two channels
    (``settings.stereo_channels``), each ``()`` (all of it) with "always", with "auto" the
    ``(start, end)`` stretch :func:`audiodup.stereo.standing_apart`
    (:func:`audiodup.stereo.channels_apart`) finds, left out with "never" or where none does;
    of a file of 3 or more channels, each channel (``settings.stereo_channels``) and the
    difference of each pair of its first 8 (``settings.stereo_difference``), with "auto" over the
    stretch :func:`audiodup.stereo.numbered_parts_apart` finds."""
    for name in ("stereo_difference", "stereo_channels"):
        if getattr(settings, name) not in _MODES:
            raise ValueError(
                f"{name} must be auto, always or never, not {getattr(settings, name)!r}"
            )
    # a chained file can hold stereo links and links of more channels: both kinds of parts
    numbered = [] if audio.channels is None else _numbered_part_stretches(audio, settings)
    if audio.difference is None:
        return numbered
    modes = {"stereo_difference": settings.stereo_difference}
    modes |= {signal: settings.stereo_channels for signal in CHANNEL_SIDES}
    spans = dict.fromkeys(modes)
    if "auto" in modes.values():
        found = stereo_spans(
            audio.samples,
            audio.difference,
            audio.sample_rate_hz,
            settings,
            with_difference=settings.stereo_difference == "auto",
            with_channels=settings.stereo_channels == "auto",
        )
        spans = {"stereo_difference": found[0]} | dict.fromkeys(CHANNEL_SIDES, found[1])
    stereo = [
        (signal, span)
        for signal, mode in modes.items()
        if (span := _stretch(mode, spans[signal], audio.duration_s)) is not None
    ]
    return stereo + numbered


def _numbered_part_stretches(audio: Audio, settings: Settings) -> list[tuple[Signal, tuple]]:
    """:func:`stereo_stretches` of a multichannel ``audio``: its channels
    (``settings.stereo_channels``) and the differences of its pairs of channels
    (``settings.stereo_difference``)."""
    assert audio.channels is not None
    count = audio.channels.shape[1]
    modes = {
        signal: settings.stereo_channels if len(indexes) == 1 else settings.stereo_difference
        for signal, indexes in numbered_parts_of(count).items()
    }
    spans: dict[Signal, tuple[float, float] | None] = dict.fromkeys(modes)
    if "auto" in modes.values():
        spans = numbered_parts_apart(
            audio.channels,
            audio.sample_rate_hz,
            settings,
            with_channels=settings.stereo_channels == "auto",
            with_differences=settings.stereo_difference == "auto",
        )
    return [
        (signal, span)
        for signal, mode in modes.items()
        if (span := _stretch(mode, spans.get(signal), audio.duration_s)) is not None
    ]


def _stretch(mode: str, apart: tuple[float, float] | None, duration_s: float) -> tuple | None:
    """What ``mode`` screens of a part whose stretch apart is ``apart``: ``()`` all of it, a
    ``(start, end)`` stretch, None nothing."""
    if mode == "never":
        return None
    span = () if mode == "always" else apart
    return () if span == (0.0, duration_s) else span


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
