"""Whether a stereo upload's difference holds music of its own, apart from its mix.

A stereo file can carry a recording that its mix (the channel mean, what screening hears)
cancels: left = other music + the copy, right = other music - the copy. A stereo listener hears
the copy in either ear; the mix holds only the other music. Screening the difference of every
stereo upload would double the cost of most uploads, since music's difference is loud (over the
benchmark corpus's first minutes, a median 0.47 of the mix's RMS) but holds the same
instruments, rising and falling with the mix. A copy hidden there does not: its octave-band
energies move on their own. So the difference is screened where, over some stretch of the
upload, it is loud and its band energies do not follow the mix's (:func:`standing_apart`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .audio import Audio, channel_audio, difference_audio, numbered_part_audio
from .errors import AudioDecodeError
from .results import CHANNEL_SIDES, NUMBERED_PARTS, SIGNAL_WORDS, Signal, numbered_parts_of
from .settings import DEFAULT_SETTINGS, Settings

_FRAME_S = 0.1
_LOWEST_BAND_HZ = 60.0
_BANDS = 8  # octaves from 60 Hz: the top one reaches past the analysis rate's Nyquist
_FLOOR = 1e-10  # added to band energies before the log: silence is a finite value
_BLOCK_FRAMES = 1024  # frames transformed at once (~100 s)


@dataclass(frozen=True)
class StretchComparison:
    """The mix and the difference over one stretch of an upload."""

    start_s: float
    level_ratio: float  # RMS of the difference / RMS of the mix, from 60 Hz up
    envelope_correlation: float  # median over octave bands of their log energies' correlation


def band_log_energies(samples: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    """``(bands, frames)`` log energies of octave bands from 60 Hz, over 0.1-s frames (a Hann
    window, no overlap); a band with no FFT bin below Nyquist is left out."""
    return _analysed(samples, sample_rate_hz)[0]


def _analysed(samples: np.ndarray, sample_rate_hz: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`band_log_energies` and each frame's energy in those bands: what is heard of it
    (an inaudible 12-Hz tone or an offset in the mix must not make the difference look quiet)."""
    return _analyses({"signal": samples}, sample_rate_hz)["signal"]


def _analyses(
    signals: dict[str, np.ndarray],
    sample_rate_hz: int,
    sums: dict[str, list[tuple[str, float]]] | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """:func:`_analysed` of each of ``signals`` (of one length), and of each weighted sum in
    ``sums`` (name: ``[(signal, weight), ...]``, a signal or an earlier sum): its spectrum is
    that sum of theirs (the transform is linear), so a sum costs no transform of its own. Taken
    in blocks of frames (bounded memory)."""
    from scipy import fft  # on first use, as peaks.py does; 3x numpy's FFT for 1102 points

    sums = sums or {}
    n = _frame_samples(sample_rate_hz)
    frames = min(len(x) for x in signals.values()) // n
    names = list(signals) + list(sums)
    if frames == 0:
        return {name: (np.zeros((0, 0)), np.zeros(0)) for name in names}
    window = np.hanning(n).astype(np.float32)
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate_hz)
    edges = [
        (int(np.searchsorted(freqs, low)), int(np.searchsorted(freqs, 2 * low)))
        for low in _LOWEST_BAND_HZ * 2.0 ** np.arange(_BANDS)
    ]
    edges = [(lo, hi) for lo, hi in edges if hi > lo]
    blocks: dict[str, list[np.ndarray]] = {name: [] for name in names}
    reused = {source for terms in sums.values() for source, _ in terms} & set(sums)

    def add(name: str, spectrum: np.ndarray) -> None:
        power = np.square(spectrum.real) + np.square(spectrum.imag)
        blocks[name].append(np.array([power[:, lo:hi].sum(axis=1) for lo, hi in edges], np.float64))

    for start in range(0, frames, _BLOCK_FRAMES):
        stop = min(start + _BLOCK_FRAMES, frames)
        spectra = {
            name: fft.rfft(x[start * n : stop * n].reshape(-1, n) * window, axis=1, workers=1)
            for name, x in signals.items()
        }
        for name, spectrum in spectra.items():
            add(name, spectrum)
        for name, terms in sums.items():  # one at a time: 28 pairs of 7.1 are not all held
            spectrum = sum(weight * spectra[source] for source, weight in terms)
            add(name, spectrum)
            if name in reused:
                spectra[name] = spectrum
    bands = {name: np.concatenate(parts, axis=1) for name, parts in blocks.items()}
    return {name: (np.log(b + _FLOOR), b.sum(axis=0)) for name, b in bands.items()}


def _frame_samples(sample_rate_hz: int) -> int:
    """Samples of one 0.1-s frame (1102 at 11,025 Hz)."""
    return int(round(_FRAME_S * sample_rate_hz))


def envelope_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Median over bands of the correlation of two ``(bands, frames)`` arrays over frames; a
    band where either is constant is left out (1.0 when every band is)."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    scale = np.sqrt(np.square(a).sum(axis=1) * np.square(b).sum(axis=1))
    valid = scale > 0
    if not valid.any():
        return 1.0
    return float(np.median((a * b).sum(axis=1)[valid] / scale[valid]))


def compare_stretches(
    mix: np.ndarray, difference: np.ndarray, sample_rate_hz: int, window_s: float
) -> list[StretchComparison]:
    """The mix and the difference compared over windows of ``window_s`` seconds, each starting
    half a window after the last, the last one ending with the upload (one window for a
    shorter upload)."""
    analyses = _analyses({"mix": mix, "difference": difference}, sample_rate_hz)
    return _compared(analyses["mix"], analyses["difference"], sample_rate_hz, window_s)


def _compared(
    first: tuple[np.ndarray, np.ndarray],
    second: tuple[np.ndarray, np.ndarray],
    sample_rate_hz: int,
    window_s: float,
) -> list[StretchComparison]:
    """:func:`compare_stretches` of two signals' :func:`_analysed`."""
    (mix_bands, mix_energy), (difference_bands, difference_energy) = first, second
    frames = len(mix_energy)
    frame_s = _frame_samples(sample_rate_hz) / sample_rate_hz
    width = max(1, int(round(window_s / frame_s)))
    starts = list(range(0, max(frames - width, 0) + 1, max(width // 2, 1))) if frames else []
    if starts and starts[-1] + width < frames:  # the last window ends with the upload
        starts.append(frames - width)
    stretches = []
    for start in starts:
        stop = min(start + width, frames)
        mix_total = float(mix_energy[start:stop].sum())
        difference_total = float(difference_energy[start:stop].sum())
        stretches.append(
            StretchComparison(
                start_s=start * frame_s,
                level_ratio=np.sqrt(difference_total / mix_total) if mix_total > 0 else np.inf,
                envelope_correlation=envelope_correlation(
                    mix_bands[:, start:stop], difference_bands[:, start:stop]
                ),
            )
        )
    return stretches


def standing_apart(
    mix: np.ndarray, difference: np.ndarray, sample_rate_hz: int, settings: Settings
) -> tuple[float, float] | None:
    """Where the difference holds music of its own: from the start of the first window where it
    is at least ``settings.difference_min_level`` of the mix's RMS and its band energies
    correlate with the mix's below ``settings.difference_max_correlation``, to the end of the
    last (seconds); None when no window does. Only that stretch is screened: a long recording
    with one such window costs 30 s of screening, not its length."""
    return stereo_spans(mix, difference, sample_rate_hz, settings, with_channels=False)[0]


def channels_apart(
    mix: np.ndarray, difference: np.ndarray, sample_rate_hz: int, settings: Settings
) -> tuple[float, float] | None:
    """Where a stereo upload's two channels (``mix`` plus and minus ``difference``) do not
    follow each other: from the start of the first window of ``settings.difference_window_s``
    where their band energies correlate below ``settings.channels_max_correlation`` to the
    end of the last (seconds); None when no window does. A copy in one ear under loud noise
    or other music in the other is drowned in the mix and in the difference alike, but its
    channel's energies move on their own; the two channels of a recording rise and fall
    together (benchmarks/STEREO.md)."""
    return stereo_spans(mix, difference, sample_rate_hz, settings, with_difference=False)[1]


def stereo_spans(
    mix: np.ndarray,
    difference: np.ndarray,
    sample_rate_hz: int,
    settings: Settings,
    *,
    with_difference: bool = True,
    with_channels: bool = True,
) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
    """:func:`standing_apart` and :func:`channels_apart` from one analysis (the channels' from
    the mix's and the difference's spectra); None for the one not asked for."""
    signals = {"mix": mix, "difference": difference}
    sides = {
        "left": [("mix", 1.0), ("difference", 1.0)],
        "right": [("mix", 1.0), ("difference", -1.0)],
    }
    analyses = _analyses(signals, sample_rate_hz, sides if with_channels else None)
    window_s, duration_s = settings.difference_window_s, len(mix) / sample_rate_hz
    difference_span = None
    if with_difference:
        apart = [
            s.start_s
            for s in _compared(analyses["mix"], analyses["difference"], sample_rate_hz, window_s)
            if s.level_ratio >= settings.difference_min_level
            and s.envelope_correlation < settings.difference_max_correlation
        ]
        difference_span = _span(apart, window_s, duration_s)
    channels_span = None
    if with_channels:
        apart = [
            s.start_s
            for s in _compared(analyses["left"], analyses["right"], sample_rate_hz, window_s)
            if s.envelope_correlation < settings.channels_max_correlation
        ]
        channels_span = _span(apart, window_s, duration_s)
    return difference_span, channels_span


def numbered_parts_apart(
    channels: np.ndarray,
    sample_rate_hz: int,
    settings: Settings,
    *,
    with_channels: bool = True,
    with_differences: bool = True,
) -> dict[Signal, tuple[float, float] | None]:
    """For each part of a multichannel upload (``(samples, channels)``;
    :func:`audiodup.results.numbered_parts_of`), where it holds music of its own (seconds, from
    the start of the first window of ``settings.difference_window_s`` to the end of the last;
    None where no window does):

    - a channel (``with_channels``) where its band energies correlate with those of the other
      channels' sum below ``settings.channels_max_correlation``: a copy in one channel of a 5.1
      file under other music in the other five is drowned in the mix, but the channels of a
      recording rise and fall together, as stereo's do (:func:`channels_apart`);
    - half the difference of two channels (``with_differences``) where it stands apart from
      the channels' mean as a stereo difference does (:func:`standing_apart`): other music in
      both and a copy in antiphase between them cancels from the mix."""
    count = channels.shape[1]
    signals = {str(i): channels[:, i] for i in range(count)}
    parts = {
        signal: indexes
        for signal, indexes in numbered_parts_of(count).items()
        if (with_channels if len(indexes) == 1 else with_differences)
    }
    sums = {"mix": [(name, 1.0 / count) for name in signals]}
    for signal, indexes in parts.items():
        if len(indexes) == 1:  # the others' sum: all of them less the one
            sums[signal] = [("mix", float(count)), (str(indexes[0]), -1.0)]
        else:
            sums[signal] = [(str(indexes[0]), 0.5), (str(indexes[1]), -0.5)]
    analyses = _analyses(signals, sample_rate_hz, sums)
    window_s = settings.difference_window_s
    duration_s = len(channels) / sample_rate_hz
    spans: dict[Signal, tuple[float, float] | None] = {}
    for signal, indexes in parts.items():
        if len(indexes) == 1:  # the channel against the sum of the others
            compared = _compared(
                analyses[str(indexes[0])], analyses[signal], sample_rate_hz, window_s
            )
            apart = [
                s.start_s
                for s in compared
                if s.envelope_correlation < settings.channels_max_correlation
            ]
        else:  # the difference against the mix
            compared = _compared(analyses["mix"], analyses[signal], sample_rate_hz, window_s)
            apart = [
                s.start_s
                for s in compared
                if s.level_ratio >= settings.difference_min_level
                and s.envelope_correlation < settings.difference_max_correlation
            ]
        spans[signal] = _span(apart, window_s, duration_s)
    return spans


def _span(starts: list[float], window_s: float, duration_s: float) -> tuple[float, float] | None:
    """From the first of the windows starting at ``starts`` to the end of the last."""
    if not starts:
        return None
    return starts[0], min(starts[-1] + window_s, duration_s)


def difference_stands_apart(
    mix: np.ndarray, difference: np.ndarray, sample_rate_hz: int, settings: Settings
) -> bool:
    """Whether some window of the upload has a difference of its own (:func:`standing_apart`)."""
    return standing_apart(mix, difference, sample_rate_hz, settings) is not None


def signal_audio(audio: Audio, signal: Signal, settings: Settings = DEFAULT_SETTINGS) -> Audio:
    """What of ``audio`` a match's ``signal`` names: ``audio`` itself for the mix, its stereo
    difference (:func:`audiodup.audio.difference_audio`) or one of its channels
    (:func:`audiodup.audio.channel_audio`, :func:`audiodup.audio.numbered_part_audio`) as
    audio of its own."""
    part = part_audio(audio, signal, settings)
    if part is None:
        raise AudioDecodeError(
            f"the file has no {SIGNAL_WORDS[signal]} of its own (another channel layout, or silent)"
        )
    return part


def part_audio(
    audio: Audio,
    signal: Signal,
    settings: Settings = DEFAULT_SETTINGS,
    span: tuple[float, float] | None = None,
) -> Audio | None:
    """:func:`signal_audio`, None where ``audio`` has no such part or it is silent (``span``:
    only from ``span[0]`` to ``span[1]`` seconds of a part)."""
    if signal == "mix":
        return audio
    if signal == "stereo_difference":
        return difference_audio(audio, settings, span)
    if signal in NUMBERED_PARTS:
        return numbered_part_audio(audio, NUMBERED_PARTS[signal], settings, span)
    return channel_audio(audio, CHANNEL_SIDES[signal], settings, span)
