"""The A/B player's audio (audiodup/listen.py): an upload sped up 1.25 times and raised three
semitones, brought back, lasts as long as the reference's excerpt and plays the same notes at
the same moments."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import soundfile as sf

from audiodup.listen import (
    aligned_ranges,
    bring_back,
    listening_pair,
    wav_bytes,
)

pytest.importorskip("pedalboard")

RATE_HZ = 11025
NOTES_HZ = (440.0, 523.25, 659.25, 880.0)  # A4 C5 E5 A5, one per second in the reference
TEMPO, SEMITONES = 1.25, 3.0


def melody(note_s: float, shift_semitones: float = 0.0) -> np.ndarray:
    """Each note as a root and a quieter fifth (a small chord), with 10 ms ramps."""
    parts = []
    for f in NOTES_HZ:
        t = np.arange(int(round(note_s * RATE_HZ))) / RATE_HZ
        f = f * 2 ** (shift_semitones / 12)
        chord = 0.4 * np.sin(2 * np.pi * f * t) + 0.2 * np.sin(2 * np.pi * 1.5 * f * t)
        parts.append(chord * np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01))
    return np.concatenate(parts).astype(np.float32)


def dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / RATE_HZ)[np.argmax(spectrum)])


def cents(a_hz: float, b_hz: float) -> float:
    return 1200 * abs(math.log2(a_hz / b_hz))


def note_pitches(samples: np.ndarray, note_s: float) -> list[float]:
    """The dominant pitch of the middle 60 % of each note slot."""
    return [
        dominant_hz(samples[int((i + 0.2) * note_s * RATE_HZ) : int((i + 0.8) * note_s * RATE_HZ)])
        for i in range(len(NOTES_HZ))
    ]


def test_an_upload_at_1_25_and_plus_3_semitones_is_brought_back_to_the_reference() -> None:
    reference = melody(1.0)
    upload = np.concatenate([np.zeros(RATE_HZ // 2, np.float32), melody(1 / TEMPO, SEMITONES)])
    # the upload's melody starts at 0.5 s and spans 3.2 s; t_ref = 1.25 t_upload - 0.625
    pair = listening_pair(
        upload,
        reference,
        RATE_HZ,
        tempo_ratio=TEMPO,
        pitch_shift_semitones=SEMITONES,
        query_start_s=0.5,
        query_end_s=0.5 + 4 / TEMPO,
        ref_start_s=0.0,
    )
    assert pair.ranges.upload_start_s == pytest.approx(0.5)
    assert pair.ranges.reference_duration_s == pytest.approx(4.0)
    assert len(pair.reference) / RATE_HZ == pytest.approx(4.0, abs=0.01)
    # the brought-back excerpt lasts as long as the reference's (not 3.2 s) ...
    assert len(pair.upload) / RATE_HZ == pytest.approx(4.0, rel=0.02)
    # ... and each reference note sounds in the same second, at the reference's pitch
    for got, want in zip(note_pitches(pair.upload, 1.0), NOTES_HZ, strict=True):
        assert cents(got, want) < 15, (got, want)
    for got, want in zip(note_pitches(pair.reference, 1.0), NOTES_HZ, strict=True):
        assert cents(got, want) < 15, (got, want)
    # the measurement tells them apart: the raw upload is 3 semitones (300 cents) off
    raw = upload[RATE_HZ // 2 :]
    assert all(
        cents(g, w) > 250 for g, w in zip(note_pitches(raw, 1 / TEMPO), NOTES_HZ, strict=True)
    )


def test_bringing_back_inverts_the_alteration_whichever_way_it_went() -> None:
    slow_low = melody(1 / 0.8, -2.0)  # an upload at 0.8 times the tempo, 2 semitones down
    back = bring_back(slow_low, RATE_HZ, 0.8, -2.0)
    assert len(back) / RATE_HZ == pytest.approx(4.0, rel=0.02)
    assert all(cents(g, w) < 15 for g, w in zip(note_pitches(back, 1.0), NOTES_HZ, strict=True))
    # no alteration: nothing changes but the rounding of Rubber Band
    same = bring_back(melody(1.0), RATE_HZ, 1.0, 0.0)
    assert len(same) == pytest.approx(4 * RATE_HZ, abs=RATE_HZ * 0.01)


def test_aligned_ranges_take_the_middle_and_start_inside_both_recordings() -> None:
    middle = aligned_ranges(1.25, 10.0, 40.0, 2.0, excerpt_s=12.0)
    assert (middle.upload_start_s, middle.upload_duration_s) == (19.0, 12.0)
    assert middle.reference_start_s == pytest.approx(2.0 + 9.0 * 1.25)
    assert middle.reference_duration_s == pytest.approx(15.0)
    early = aligned_ranges(0.8, -0.5, 3.0, -0.2, excerpt_s=12.0)  # a line fitted before 0
    assert early.upload_start_s >= 0 and early.reference_start_s >= 0
    assert early.upload_duration_s == pytest.approx(3.0)
    assert early.reference_start_s == pytest.approx(-0.2 + 0.5 * 0.8)


@pytest.mark.parametrize(
    ("tempo", "semitones"), [(0.0, 0.0), (math.nan, 0.0), (10.0, 0.0), (1.0, math.inf), (1, 40)]
)
def test_absurd_alterations_are_refused(tempo: float, semitones: float) -> None:
    with pytest.raises(ValueError):
        bring_back(melody(0.5), RATE_HZ, tempo, semitones)


def test_wav_bytes_decode_to_the_samples() -> None:
    samples = melody(0.25)
    decoded, rate = sf.read(io.BytesIO(wav_bytes(samples, RATE_HZ)), dtype="float32")
    assert rate == RATE_HZ and len(decoded) == len(samples)
    assert np.max(np.abs(decoded - samples)) < 1e-3
