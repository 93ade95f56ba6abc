"""Named alterations of a source recording, made with pedalboard, soxr and the command-line
stretchers of :mod:`benchmarks.stretchers` (Rubber Band R2/R3, SoX, ffmpeg).

Never uses audiodup code: the alterations must be independent of the detector.

Conventions (checked at run time by :func:`verify_pedalboard_conventions`):

- ``tempo_ratio`` = upload tempo / original tempo. A time-stretch variant "tempo 0.80" plays at
  0.8x tempo and is 1.25x longer. pedalboard's ``time_stretch(stretch_factor=r)`` produces
  ``len / r`` samples, so ``stretch_factor == tempo_ratio``.
- ``pitch_shift_semitones`` > 0 means higher pitch.
- A speed change by ``s`` resamples so tempo and pitch change together:
  ``tempo_ratio = s`` and ``pitch_shift_semitones = 12 * log2(s)``.

Every step updates a :class:`Truth` that maps the rendered query back to the source recording.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pedalboard
import soxr
from pedalboard.io import AudioFile

from . import stretchers

SOURCE_EXCERPT_S = 60.0
"""Most queries start from a 60-s excerpt of the source (seeded offset)."""
FULL_SOURCE_CAP_S = 180.0
"""Length variants start from the whole track, capped at 3 minutes (from t=0)."""


@dataclass(frozen=True)
class Truth:
    """Where the query's content comes from and how it was transformed.

    ``ref_start_s``/``ref_end_s`` are positions in the source recording (its own time axis);
    ``query_offset_s`` is where that content starts inside the query. ``contiguous`` is False
    when the query is not one continuous time-scaled piece of the source (cuts, loops).
    """

    tempo_ratio: float = 1.0
    pitch_shift_semitones: float = 0.0
    ref_start_s: float = 0.0
    ref_end_s: float = 0.0
    query_offset_s: float = 0.0
    contiguous: bool = True


@dataclass(frozen=True)
class Step:
    """One operation: ``op`` names a function in :data:`OPS`, ``params`` its keyword args."""

    op: str
    params: tuple[tuple[str, float], ...] = ()

    def kwargs(self) -> dict[str, float]:
        return dict(self.params)


def step(op: str, **params: float) -> Step:
    return Step(op, tuple(sorted(params.items())))


@dataclass(frozen=True)
class Variant:
    """A named alteration with the parameters it is meant to have.

    ``source`` is ``"excerpt"`` (60-s excerpt at a seeded offset) or ``"full"`` (whole track,
    capped at :data:`FULL_SOURCE_CAP_S`). ``sweep`` names the plot the variant belongs to and
    ``x`` its abscissa there.
    """

    name: str
    family: str
    steps: tuple[Step, ...]
    source: str = "excerpt"
    sweep: str | None = None
    x: float | None = None
    extra: bool = False  # sweep points added beyond the list
    stretcher: str | None = None  # which implementation made a tempo or pitch change

    @property
    def slug(self) -> str:
        keep = [c if c.isalnum() or c in ".-" else "_" for c in self.name.replace("+", "p")]
        return "".join(keep).strip("_").replace("__", "_")


@dataclass
class Rendered:
    """Audio plus truth while a variant is being rendered."""

    y: np.ndarray
    sr: int
    truth: Truth
    rng: np.random.Generator
    other: np.ndarray | None = None  # audio of another track, for "prepend"
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- operations


def _normalize_peak(y: np.ndarray, peak: float = 0.98) -> np.ndarray:
    m = float(np.max(np.abs(y))) if y.size else 0.0
    return (y * (peak / m)).astype(np.float32) if m > peak else y.astype(np.float32)


def _as_2d(y: np.ndarray) -> np.ndarray:
    return y[None, :].astype(np.float32, copy=False)


def _stretched_truth(t: Truth, tempo_ratio: float, semitones: float) -> Truth:
    return dataclasses.replace(
        t,
        tempo_ratio=t.tempo_ratio * tempo_ratio,
        pitch_shift_semitones=t.pitch_shift_semitones + semitones,
        query_offset_s=t.query_offset_s / tempo_ratio,
    )


def op_time_stretch(r: Rendered, tempo_ratio: float) -> None:
    y = pedalboard.time_stretch(_as_2d(r.y), r.sr, stretch_factor=tempo_ratio)[0]
    r.y = _normalize_peak(y)
    r.truth = _stretched_truth(r.truth, tempo_ratio, 0.0)


def op_pitch(r: Rendered, semitones: float) -> None:
    # Formants are shifted with the pitch (a plain key change, as most re-uploads do it).
    y = pedalboard.time_stretch(
        _as_2d(r.y),
        r.sr,
        stretch_factor=1.0,
        pitch_shift_in_semitones=semitones,
        preserve_formants=False,
    )[0]
    r.y = _normalize_peak(y)
    r.truth = _stretched_truth(r.truth, 1.0, semitones)


def _op_external_stretch(stretcher: str) -> Callable[..., None]:
    def op(r: Rendered, tempo_ratio: float = 1.0, semitones: float = 0.0) -> None:
        r.y = _normalize_peak(stretchers.render(stretcher, r.y, r.sr, tempo_ratio, semitones))
        r.truth = _stretched_truth(r.truth, tempo_ratio, semitones)

    return op


def op_speed(r: Rendered, factor: float) -> None:
    # Playing `factor` times faster == resampling to sr/factor and playing at sr.
    r.y = soxr.resample(r.y, r.sr, r.sr / factor, quality="HQ").astype(np.float32)
    t = r.truth
    r.truth = dataclasses.replace(
        t,
        tempo_ratio=t.tempo_ratio * factor,
        pitch_shift_semitones=t.pitch_shift_semitones + 12.0 * math.log2(factor),
        query_offset_s=t.query_offset_s / factor,
    )


def _ramp_truth(r: Rendered, start: float, end: float, n_out: int, pitch_follows: bool) -> None:
    """A ramp's truth: its mean tempo ratio (source length / query length), the pitch at the
    mean when the pitch follows the speed; the ramp itself goes into the notes."""
    mean = (r.y.size / r.sr) / (n_out / r.sr)
    t = r.truth
    r.truth = dataclasses.replace(
        t,
        tempo_ratio=t.tempo_ratio * mean,
        pitch_shift_semitones=t.pitch_shift_semitones
        + (12.0 * math.log2(mean) if pitch_follows else 0.0),
        query_offset_s=t.query_offset_s / mean,
        contiguous=False,  # one piece, but not one line: no single alignment is the truth
    )
    r.notes.append(f"tempo ramp {start:.2f} -> {end:.2f} (mean {mean:.4f})")


def op_tempo_ramp(r: Rendered, start: float, end: float) -> None:
    """A DJ's key-locked tempo ramp (Rubber Band R3 time map): tempo from ``start`` to ``end``
    along the excerpt, pitch kept."""
    y = stretchers.render_tempo_ramp("rb-r3", r.y, r.sr, start, end)
    _ramp_truth(r, start, end, y.size, pitch_follows=False)
    r.y = _normalize_peak(y)


def op_speed_ramp(r: Rendered, start: float, end: float) -> None:
    """A turntable's pitch-fader ramp: playback speed from ``start`` to ``end`` along the
    excerpt, pitch following (variable-rate resampling, done at twice the rate)."""
    up = soxr.resample(r.y, r.sr, 2 * r.sr, quality="VHQ")
    n_source = up.size
    n_out = int(stretchers.ramp_target_frames(np.array([n_source]), n_source, start, end)[0])
    grid = np.arange(0, n_source + 1, 64)
    landing = stretchers.ramp_target_frames(grid, n_source, start, end)
    positions = np.interp(np.arange(n_out), landing, grid)
    warped = np.interp(positions, np.arange(n_source), up).astype(np.float32)
    y = soxr.resample(warped, 2 * r.sr, r.sr, quality="VHQ").astype(np.float32)
    _ramp_truth(r, start, end, y.size, pitch_follows=True)
    r.y = _normalize_peak(y)


def op_excerpt(r: Rendered, length_s: float) -> None:
    """Cut a seeded random excerpt from the (contiguous, offset-free) current audio."""
    n = int(round(length_s * r.sr))
    if n >= r.y.size:
        r.notes.append(f"excerpt {length_s:g} s longer than audio; kept {r.y.size / r.sr:.1f} s")
        return
    start = int(r.rng.integers(0, r.y.size - n + 1))
    t = r.truth
    if t.query_offset_s > 0 or not t.contiguous:
        raise ValueError("excerpt must come before prepend/pad/cut/loop steps")
    ref_start = t.ref_start_s + start / r.sr * t.tempo_ratio
    r.y = r.y[start : start + n].copy()
    r.truth = dataclasses.replace(
        t, ref_start_s=ref_start, ref_end_s=ref_start + n / r.sr * t.tempo_ratio
    )


def _fade(y: np.ndarray, sr: int, ms: float = 10.0) -> np.ndarray:
    n = min(int(sr * ms / 1000), y.size // 2)
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        y = y.copy()
        y[:n] *= ramp
        y[-n:] *= ramp[::-1]
    return y


def op_prepend(r: Rendered, seconds: float) -> None:
    """Prepend `seconds` of another track (a never-indexed negative) at a seeded offset."""
    if r.other is None:
        raise ValueError("prepend needs another track")
    n = int(round(seconds * r.sr))
    start = int(r.rng.integers(0, max(1, r.other.size - n + 1)))
    head = _fade(r.other[start : start + n], r.sr)
    r.y = np.concatenate([head, r.y]).astype(np.float32)
    t = r.truth
    r.truth = dataclasses.replace(t, query_offset_s=t.query_offset_s + head.size / r.sr)


def op_cut_middle(r: Rendered, fraction: float) -> None:
    n = r.y.size
    a, b = int(n * (0.5 - fraction / 2)), int(n * (0.5 + fraction / 2))
    r.y = np.concatenate([_fade(r.y[:a], r.sr), _fade(r.y[b:], r.sr)]).astype(np.float32)
    r.truth = dataclasses.replace(r.truth, contiguous=False)


def op_loop(r: Rendered, extend: float) -> None:
    """Repeat a seeded section once so the audio becomes (1 + extend) times longer."""
    n = r.y.size
    sec = int(n * extend)
    a = int(r.rng.integers(0, n - sec + 1))
    section = r.y[a : a + sec]
    r.y = np.concatenate([r.y[: a + sec], section, r.y[a + sec :]]).astype(np.float32)
    r.truth = dataclasses.replace(r.truth, contiguous=False)


def op_pad(r: Rendered, before_s: float, after_s: float) -> None:
    z0 = np.zeros(int(before_s * r.sr), np.float32)
    z1 = np.zeros(int(after_s * r.sr), np.float32)
    r.y = np.concatenate([z0, r.y, z1])
    t = r.truth
    r.truth = dataclasses.replace(t, query_offset_s=t.query_offset_s + before_s)


def mp3_roundtrip(y: np.ndarray, sr: int, kbps: float, encode_sr: int = 44100) -> np.ndarray:
    """Encode to MP3 (LAME via pedalboard) at `encode_sr` and decode back to `sr`.

    The encoder/decoder delay is measured by cross-correlation and removed, so the query's
    timeline (and ``ref_start_s``) stays exact to a few samples.
    """
    up = soxr.resample(y, sr, encode_sr).astype(np.float32)
    buf = io.BytesIO()
    with AudioFile(
        buf, "w", samplerate=encode_sr, num_channels=1, quality=int(kbps), format="mp3"
    ) as f:
        f.write(up[None, :])
    buf.seek(0)
    with AudioFile(buf) as f:
        dec = f.read(f.frames)[0]
        dec_sr = int(f.samplerate)
    out = soxr.resample(dec, dec_sr, sr).astype(np.float32)
    lag = _delay_samples(y, out, max_lag=int(0.2 * sr))
    out = out[lag : lag + y.size]
    if out.size < y.size:
        out = np.pad(out, (0, y.size - out.size))
    return out


def _delay_samples(x: np.ndarray, delayed: np.ndarray, max_lag: int) -> int:
    """Lag (>= 0) at which `delayed` best matches `x`, searched on the loudest 5 s."""
    win = min(x.size, 5 * 22050)
    if win < 1024:
        return 0
    energy = np.convolve(x.astype(np.float64) ** 2, np.ones(1024), mode="valid")[::512]
    start = int(np.argmax(energy[: max(1, (x.size - win) // 512 + 1)]) * 512)
    a = x[start : start + win].astype(np.float64)
    b = delayed[start : start + win + max_lag].astype(np.float64)
    if b.size < a.size + max_lag:
        return 0
    nfft = 1 << int(np.ceil(np.log2(a.size + b.size)))
    corr = np.fft.irfft(np.conj(np.fft.rfft(a, nfft)) * np.fft.rfft(b, nfft), nfft)
    return int(np.argmax(corr[: max_lag + 1]))


def op_mp3(r: Rendered, kbps: float) -> None:
    r.y = mp3_roundtrip(r.y, r.sr, kbps)


def _add_noise(r: Rendered, noise: np.ndarray, snr_db: float) -> None:
    p_sig = float(np.mean(r.y.astype(np.float64) ** 2))
    p_noise = float(np.mean(noise.astype(np.float64) ** 2)) or 1.0
    gain = math.sqrt(p_sig / (p_noise * 10 ** (snr_db / 10)))
    r.y = _normalize_peak(r.y + gain * noise)


def op_white_noise(r: Rendered, snr_db: float) -> None:
    _add_noise(r, r.rng.standard_normal(r.y.size), snr_db)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f (pink) noise by spectral shaping of white noise."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spec / np.sqrt(f), n)


def op_pink_noise(r: Rendered, snr_db: float) -> None:
    _add_noise(r, pink_noise(r.y.size, r.rng), snr_db)


def op_eq(r: Rendered, gain_db: float) -> None:
    board = pedalboard.Pedalboard(
        [
            pedalboard.LowShelfFilter(cutoff_frequency_hz=150, gain_db=gain_db),
            pedalboard.PeakFilter(cutoff_frequency_hz=1000, gain_db=-gain_db, q=0.7),
            pedalboard.HighShelfFilter(cutoff_frequency_hz=4000, gain_db=gain_db),
        ]
    )
    r.y = _normalize_peak(board(r.y, r.sr))


def op_reverb(r: Rendered, room_size: float) -> None:
    board = pedalboard.Pedalboard(
        [pedalboard.Reverb(room_size=room_size, damping=0.4, wet_level=0.45, dry_level=0.6)]
    )
    r.y = _normalize_peak(board(r.y, r.sr))


def op_compress(r: Rendered, threshold_db: float) -> None:
    board = pedalboard.Pedalboard(
        [
            pedalboard.Compressor(threshold_db=threshold_db, ratio=8, attack_ms=5, release_ms=80),
            pedalboard.Gain(gain_db=-threshold_db / 2),
            pedalboard.Limiter(threshold_db=-1.0),
        ]
    )
    r.y = _normalize_peak(board(r.y, r.sr))


OPS: dict[str, Callable[..., None]] = {
    "time_stretch": op_time_stretch,
    "pitch": op_pitch,
    "speed": op_speed,
    "excerpt": op_excerpt,
    "prepend": op_prepend,
    "cut_middle": op_cut_middle,
    "loop": op_loop,
    "pad": op_pad,
    "mp3": op_mp3,
    "white_noise": op_white_noise,
    "pink_noise": op_pink_noise,
    "eq": op_eq,
    "reverb": op_reverb,
    "compress": op_compress,
    "tempo_ramp": op_tempo_ramp,
    "speed_ramp": op_speed_ramp,
    **{f"stretch:{name}": _op_external_stretch(name) for name in stretchers.STRETCHERS},
}


def apply(
    variant: Variant,
    y: np.ndarray,
    sr: int,
    truth: Truth,
    rng: np.random.Generator,
    other: np.ndarray | None = None,
) -> tuple[np.ndarray, Truth, list[str]]:
    """Render `variant` on `y` (mono float32 at `sr`). Returns audio, truth and notes."""
    r = Rendered(y=y.astype(np.float32), sr=sr, truth=truth, rng=rng, other=other)
    for s in variant.steps:
        OPS[s.op](r, **s.kwargs())
    return r.y, r.truth, r.notes


# --------------------------------------------------------------------------- variants


def _fmt_signed(x: float) -> str:
    return f"{x:+g}"


def _build_variants() -> list[Variant]:
    v: list[Variant] = []
    for t in (0.50, 0.60, 0.70, 0.80, 0.90, 0.95, 1.05, 1.10, 1.20, 1.30, 1.40, 1.60, 2.00):
        v.append(
            Variant(
                f"tempo {t:.2f}",
                "time-stretch",
                (step("time_stretch", tempo_ratio=t),),
                sweep="tempo",
                x=t,
                stretcher="pedalboard",
            )
        )
    for p in (-12, -9, -6, -4, -2, -1, -0.5, 0.5, 1, 2, 4, 6, 9, 12):
        v.append(
            Variant(
                f"pitch {_fmt_signed(p)}",
                "pitch",
                (step("pitch", semitones=p),),
                sweep="pitch",
                x=float(p),
                extra=p == -12,
                stretcher="pedalboard",
            )
        )
    v += _external_stretcher_variants()
    for s in (0.50, 0.70, 0.80, 0.90, 1.10, 1.25, 1.35, 1.50):
        v.append(Variant(f"speed {s:.2f}", "speed", (step("speed", factor=s),), sweep="speed", x=s))
    for length in (60, 30, 20, 15, 10, 8, 5, 4):
        v.append(
            Variant(
                f"excerpt {length} s",
                "length",
                (step("excerpt", length_s=length),),
                source="full",
                sweep="excerpt",
                x=float(length),
                extra=length in (60, 20, 10, 4),
            )
        )
    v += [
        Variant("prepend 20 s other", "length", (step("prepend", seconds=20),), source="full"),
        Variant("cut middle 25 %", "length", (step("cut_middle", fraction=0.25),), source="full"),
        Variant("loop +50 %", "length", (step("loop", extend=0.5),), source="full"),
        Variant(
            "silence pad 5+10 s", "length", (step("pad", before_s=5, after_s=10),), source="full"
        ),
        Variant("mp3 64k", "signal", (step("mp3", kbps=64),)),
    ]
    for snr in (0, 5, 10, 20):
        v.append(
            Variant(
                f"white noise {snr} dB",
                "signal",
                (step("white_noise", snr_db=snr),),
                sweep="snr",
                x=float(snr),
                extra=snr != 10,
            )
        )
    v += [
        Variant("pink noise 5 dB", "signal", (step("pink_noise", snr_db=5),)),
        Variant("eq ±12 dB", "signal", (step("eq", gain_db=12),)),
        Variant("reverb", "signal", (step("reverb", room_size=0.7),)),
        Variant("compression", "signal", (step("compress", threshold_db=-30),)),
        Variant(
            "chain: tempo 1.07 + pitch +1 + mp3 128k + 45 s",
            "chain",
            (
                step("time_stretch", tempo_ratio=1.07),
                step("pitch", semitones=1),
                step("mp3", kbps=128),
                step("excerpt", length_s=45),
            ),
        ),
        Variant(
            "chain: slowed + reverb (speed 0.85)",
            "chain",
            (step("speed", factor=0.85), step("reverb", room_size=0.85)),
        ),
        Variant(
            "chain: tempo 0.93 + pitch -1.5 + eq + noise 20 dB",
            "chain",
            (
                step("time_stretch", tempo_ratio=0.93),
                step("pitch", semitones=-1.5),
                step("eq", gain_db=12),
                step("white_noise", snr_db=20),
            ),
        ),
        # issue #12 item 4: a tempo that drifts within the excerpt, key-locked or not
        Variant(
            "tempo drift 1.00-1.08 [rb-r3]",
            "time-stretch",
            (step("tempo_ramp", start=1.0, end=1.08),),
            stretcher="rb-r3",
        ),
        Variant("speed drift 1.00-1.08", "speed", (step("speed_ramp", start=1.0, end=1.08),)),
        Variant("speed drift 1.00-0.92", "speed", (step("speed_ramp", start=1.0, end=0.92),)),
        Variant(
            "chain: speed 1.25 + mp3 64k + 30 s",
            "chain",
            (step("speed", factor=1.25), step("mp3", kbps=64), step("excerpt", length_s=30)),
        ),
    ]
    return v


def _external_stretcher_variants() -> list[Variant]:
    """The tempo range's ends and middle, and a pitch shift each way, per command-line stretcher
    (issue #12: a tempo target holds only when every implementation meets it)."""
    v: list[Variant] = []
    for name in stretchers.STRETCHERS:
        op = f"stretch:{name}"
        for t in (0.50, 0.70, 0.80, 1.25, 1.60, 2.00):
            v.append(
                Variant(
                    f"tempo {t:.2f} [{name}]",
                    "time-stretch",
                    (step(op, tempo_ratio=t),),
                    x=t,
                    stretcher=name,
                )
            )
        for p in (-4, 3):
            v.append(
                Variant(
                    f"pitch {_fmt_signed(p)} [{name}]",
                    "pitch",
                    (step(op, semitones=p),),
                    x=float(p),
                    stretcher=name,
                )
            )
    return v


VARIANTS: list[Variant] = _build_variants()
BY_NAME: dict[str, Variant] = {v.name: v for v in VARIANTS}
FAMILIES = ("time-stretch", "pitch", "speed", "length", "signal", "chain")

QUICK_VARIANTS = [
    "tempo 0.80",
    "tempo 1.20",
    "tempo 0.60",
    "pitch -2",
    "pitch +4",
    "speed 0.80",
    "speed 1.25",
    "excerpt 60 s",
    "excerpt 15 s",
    "excerpt 5 s",
    "prepend 20 s other",
    "mp3 64k",
    "white noise 10 dB",
    "reverb",
    "chain: slowed + reverb (speed 0.85)",
]
SMOKE_VARIANTS = ["tempo 0.80", "tempo 1.20", "pitch +2", "speed 1.25", "excerpt 15 s", "mp3 64k"]


def select(names: list[str] | None) -> list[Variant]:
    """Variants by exact name, in the canonical order; all of them for None."""
    if names is None:
        return list(VARIANTS)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise KeyError(f"unknown variants: {unknown}")
    wanted = set(names)
    return [v for v in VARIANTS if v.name in wanted]


# --------------------------------------------------------------------------- conventions


def verify_pedalboard_conventions(sr: int = 22050) -> dict[str, float]:
    """Measure what pedalboard does, so ``tempo_ratio``/``pitch`` truths are right.

    Returns the measured output/input length ratio for ``stretch_factor`` 0.8 and 1.25 and the
    measured frequency of a 440 Hz tone shifted by +12 semitones. Raises if the conventions
    assumed by this module do not hold.
    """
    t = np.arange(4 * sr) / sr
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out: dict[str, float] = {}
    for sf in (0.8, 1.25):
        y = pedalboard.time_stretch(_as_2d(tone), sr, stretch_factor=sf)[0]
        out[f"length_ratio_at_stretch_factor_{sf}"] = y.size / tone.size
        if abs(y.size / tone.size - 1 / sf) > 0.02:
            raise AssertionError(f"time_stretch({sf}) gave length ratio {y.size / tone.size}")
    y = pedalboard.time_stretch(
        _as_2d(tone),
        sr,
        stretch_factor=1.0,
        pitch_shift_in_semitones=12.0,
        preserve_formants=False,
    )[0]
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    f_hz = float(np.argmax(spec) * sr / y.size)
    out["tone_440hz_plus12_semitones_hz"] = f_hz
    out["length_ratio_pitch_only"] = y.size / tone.size
    if abs(f_hz - 880) > 5 or abs(y.size / tone.size - 1) > 0.01:
        raise AssertionError(f"pitch shift +12 gave {f_hz} Hz, length ratio {y.size / tone.size}")
    sped = soxr.resample(tone, sr, sr / 1.25)
    spec = np.abs(np.fft.rfft(sped * np.hanning(sped.size)))
    out["speed_1.25_tone_hz"] = float(np.argmax(spec) * sr / sped.size)
    out["speed_1.25_length_ratio"] = sped.size / tone.size
    return out
