"""The A/B player's audio: the aligned excerpts of a match, the upload's brought back to the
reference's tempo and key (pure: arrays in, arrays out; :func:`wav_bytes` encodes one).

A match says ``t_ref = tempo_ratio · t_upload + offset`` and ``pitch_shift_semitones`` = upload
pitch - reference pitch. The upload's excerpt ``[q0, q0 + L]`` lines up with the reference's
``[r0, r0 + L · tempo_ratio]``. Stretched to ``tempo_ratio`` times its length (played at
``1 / tempo_ratio`` of its speed) and shifted by ``-pitch_shift_semitones``, it lasts as long as
the reference's excerpt and is in its key, so a reviewer compares the two by ear.

>>> pair = listening_pair(upload, reference, 11025, tempo_ratio=1.25,   # doctest: +SKIP
...                       pitch_shift_semitones=3.0, query_start_s=4.0, query_end_s=20.0,
...                       ref_start_s=5.0)
>>> wav = wav_bytes(pair.upload, pair.sample_rate_hz)                  # doctest: +SKIP
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from .errors import AudiodupError

EXCERPT_S = 12.0  # what a reviewer compares: long enough for a phrase, short to serve
MAX_EXCERPT_S = 30.0
# the matcher's search range is narrower; beyond these a "bring back" is no longer listening
MIN_TEMPO_RATIO, MAX_TEMPO_RATIO = 0.25, 4.0
MAX_PITCH_SHIFT_SEMITONES = 24.0
_FADE_S = 0.02


@dataclass(frozen=True)
class AlignedRanges:
    """Where the two excerpts start and how long each is, in seconds of each recording."""

    upload_start_s: float
    upload_duration_s: float
    reference_start_s: float
    reference_duration_s: float


@dataclass(frozen=True)
class ListeningPair:
    """Mono float32 excerpts at one rate: the reference's, and the upload's brought back."""

    sample_rate_hz: int
    reference: np.ndarray
    upload: np.ndarray
    ranges: AlignedRanges


def aligned_ranges(
    tempo_ratio: float,
    query_start_s: float,
    query_end_s: float,
    ref_start_s: float,
    *,
    excerpt_s: float = EXCERPT_S,
) -> AlignedRanges:
    """The middle ``excerpt_s`` (at most) of the upload's matched range and the reference
    range it lines up with. Fitted lines can start a hair before 0: starts are clamped."""
    _check_tempo(tempo_ratio)
    excerpt_s = min(max(excerpt_s, 0.0), MAX_EXCERPT_S)
    span = max(0.0, query_end_s - query_start_s)
    length = min(excerpt_s, span)
    q0 = query_start_s + (span - length) / 2
    r0 = ref_start_s + (q0 - query_start_s) * tempo_ratio
    if q0 < 0 or r0 < 0:  # move both forward until each starts inside its recording
        shift = max(-q0, -r0 / tempo_ratio)
        q0, r0, length = q0 + shift, r0 + shift * tempo_ratio, max(0.0, length - shift)
    return AlignedRanges(q0, length, r0, length * tempo_ratio)


def bring_back(
    samples: np.ndarray, sample_rate_hz: int, tempo_ratio: float, pitch_shift_semitones: float
) -> np.ndarray:
    """``samples`` of the upload played at the reference's tempo and in its key: stretched to
    ``tempo_ratio`` times their length and shifted by ``-pitch_shift_semitones`` (Rubber Band,
    through pedalboard's ``time_stretch``; the two are independent of each other)."""
    _check_tempo(tempo_ratio)
    if not math.isfinite(pitch_shift_semitones) or abs(pitch_shift_semitones) > (
        MAX_PITCH_SHIFT_SEMITONES
    ):
        raise ValueError(
            f"pitch shift {pitch_shift_semitones} semitones is outside "
            f"±{MAX_PITCH_SHIFT_SEMITONES:g}"
        )
    try:
        from pedalboard import time_stretch
    except ImportError:
        raise AudiodupError(
            "bringing an excerpt back needs pedalboard: pip install 'audiodup[serve]'"
        ) from None
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if len(samples) == 0:
        return samples
    out = time_stretch(
        samples[np.newaxis, :],
        float(sample_rate_hz),
        stretch_factor=1.0 / tempo_ratio,  # pedalboard's factor is a speed: > 1 shortens
        pitch_shift_in_semitones=-float(pitch_shift_semitones),
        preserve_formants=False,
    )
    return np.asarray(out[0], dtype=np.float32)


def listening_pair(
    upload: np.ndarray,
    reference: np.ndarray,
    sample_rate_hz: int,
    *,
    tempo_ratio: float,
    pitch_shift_semitones: float,
    query_start_s: float,
    query_end_s: float,
    ref_start_s: float,
    excerpt_s: float = EXCERPT_S,
) -> ListeningPair:
    """The A/B pair of one match from the two decoded recordings (mono, ``sample_rate_hz``):
    the reference's aligned excerpt, and the upload's aligned excerpt brought back to it."""
    ranges = aligned_ranges(
        tempo_ratio, query_start_s, query_end_s, ref_start_s, excerpt_s=excerpt_s
    )
    upload_part = _cut(upload, sample_rate_hz, ranges.upload_start_s, ranges.upload_duration_s)
    reference_part = _cut(
        reference, sample_rate_hz, ranges.reference_start_s, ranges.reference_duration_s
    )
    brought = bring_back(upload_part, sample_rate_hz, tempo_ratio, pitch_shift_semitones)
    return ListeningPair(
        sample_rate_hz,
        _tidy(reference_part, sample_rate_hz),
        _tidy(brought, sample_rate_hz),
        ranges,
    )


def wav_bytes(samples: np.ndarray, sample_rate_hz: int) -> bytes:
    """16-bit PCM WAV of mono ``samples`` (every browser's ``<audio>`` plays it)."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(samples, -1.0, 1.0), sample_rate_hz, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _check_tempo(tempo_ratio: float) -> None:
    if not math.isfinite(tempo_ratio) or not MIN_TEMPO_RATIO <= tempo_ratio <= MAX_TEMPO_RATIO:
        raise ValueError(
            f"tempo ratio {tempo_ratio} is outside {MIN_TEMPO_RATIO:g}..{MAX_TEMPO_RATIO:g}"
        )


def _cut(samples: np.ndarray, sample_rate_hz: int, start_s: float, duration_s: float):
    start = int(round(max(start_s, 0.0) * sample_rate_hz))
    return np.asarray(samples[start : start + int(round(duration_s * sample_rate_hz))])


def _tidy(samples: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    """Short fades against clicks at the cut, and no clipping (levels otherwise kept)."""
    samples = np.array(samples, dtype=np.float32)
    fade = min(int(_FADE_S * sample_rate_hz), len(samples) // 2)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        samples[:fade] *= ramp
        samples[len(samples) - fade :] *= ramp[::-1]
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    if peak > 1.0:
        samples /= peak
    return samples
