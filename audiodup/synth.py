"""Deterministic synthetic music for tests and fixtures.

Each seed yields a distinct, music-like piece: a key and mode, a chord progression, a bass
line, a chord part, a melody and a drum kit, all rendered with wavetable (additive) synthesis.
The output has what a spectral fingerprinter looks for -- harmonic partials, note onsets and
changing chords -- and is bit-identical across runs on one machine, because every random
choice comes from one ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

__all__ = ["synthesize_work"]

_PEAK = 0.7
_TABLE_SIZE = 4096
_STEPS_PER_BEAT = 4  # the rhythmic grid is sixteenth notes

# Scale intervals in semitones above the tonic.
_MODES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
}


@dataclass(frozen=True)
class _Instrument:
    """A wavetable voice: one period of its waveform plus an ADSR envelope (seconds)."""

    table: np.ndarray
    attack_s: float
    decay_s: float
    sustain_level: float
    release_s: float
    vibrato_depth: float  # relative frequency deviation, e.g. 0.006 is about 10 cents
    vibrato_rate_hz: float


@dataclass(frozen=True)
class _Plan:
    """The musical skeleton shared by all parts of one piece."""

    sr: int
    step_s: float  # duration of one sixteenth-note step, seconds
    steps_per_bar: int
    n_steps: int
    chords: list[tuple[int, int]]  # (start_step, root scale degree), in time order
    tonic_midi: int  # pitch class of the key, 0..11
    scale: tuple[int, ...]


def synthesize_work(seed: int, duration_s: float = 30.0, sr: int = 22050) -> np.ndarray:
    """Synthesize a distinct, music-like piece for ``seed``.

    Parameters
    ----------
    seed : int
        Seed of ``numpy.random.default_rng``; every musical choice (key, mode, tempo,
        progression, parts, timbres, drum pattern) derives from it.
    duration_s : float
        Length of the output in seconds (rounded to the nearest sample).
    sr : int
        Sample rate in Hz.

    Returns
    -------
    np.ndarray
        Mono float32 signal of ``round(duration_s * sr)`` samples, peak-normalised to 0.7,
        with 10 ms fades at both ends.

    Notes
    -----
    A longer rendering of a seed begins with the same music as a shorter one (up to the
    peak normalisation and the fades), so ``duration_s`` only decides where the piece stops.

    Examples
    --------
    >>> y = synthesize_work(3, duration_s=5.0, sr=22050)
    >>> y.shape, y.dtype
    ((110250,), dtype('float32'))
    """
    if duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    if sr <= 0:
        raise ValueError(f"sr must be positive, got {sr}")
    n_samples = round(duration_s * sr)
    rng = np.random.default_rng(seed)

    tonic_midi = int(rng.integers(0, 12))  # pitch class of the key
    scale = _MODES[str(rng.choice(list(_MODES)))]
    tempo_bpm = float(rng.uniform(70.0, 160.0))
    beats_per_bar = 3 if rng.random() < 0.2 else 4
    step_s = 60.0 / tempo_bpm / _STEPS_PER_BEAT
    steps_per_bar = beats_per_bar * _STEPS_PER_BEAT
    n_steps = int(np.ceil(n_samples / sr / step_s)) + 1

    plan = _Plan(
        sr=sr,
        step_s=step_s,
        steps_per_bar=steps_per_bar,
        n_steps=n_steps,
        chords=_chord_timeline(rng, n_steps, steps_per_bar),
        tonic_midi=tonic_midi,
        scale=scale,
    )
    bass = _make_instrument(rng, sr, f_max_hz=_midi_to_hz(52), brightness=1.6)
    pad = _make_instrument(rng, sr, f_max_hz=_midi_to_hz(76), brightness=1.2)
    lead = _make_instrument(rng, sr, f_max_hz=_midi_to_hz(88), brightness=1.0, vibrato=True)

    out = np.zeros(n_samples, dtype=np.float64)
    # Each part draws from its own child generator, in time order, so a longer rendering of a
    # seed starts with the same music as a shorter one.
    bass_rng, chord_rng, melody_rng, drum_rng = rng.spawn(4)
    _render_bass(bass_rng, out, plan, bass)
    _render_chords(chord_rng, out, plan, pad)
    _render_melody(melody_rng, out, plan, lead)
    _render_drums(drum_rng, out, plan)

    # Short fades so the excerpt edges do not click.
    n_fade = min(int(0.01 * sr), n_samples // 2)
    if n_fade > 0:
        ramp = np.linspace(0.0, 1.0, n_fade)
        out[:n_fade] *= ramp
        out[-n_fade:] *= ramp[::-1]
    peak = np.max(np.abs(out))
    if peak > 0:
        out *= _PEAK / peak
    return out.astype(np.float32)


def _midi_to_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def _scale_pitch(tonic_midi: int, scale: tuple[int, ...], degree: int) -> int:
    """MIDI pitch of a scale degree counted from ``tonic_midi`` (degree may exceed 6 or be < 0)."""
    octave, step = divmod(degree, len(scale))
    return tonic_midi + 12 * octave + scale[step]


def _chord_timeline(
    rng: np.random.Generator, n_steps: int, steps_per_bar: int
) -> list[tuple[int, int]]:
    """Chord changes as ``(start_step, root_degree)``: an A and a B progression, alternating."""

    def progression() -> list[tuple[int, int]]:
        n_chords = int(rng.integers(4, 9))
        degrees = [0]
        while len(degrees) < n_chords:
            d = int(rng.integers(0, 7))
            if d != degrees[-1]:
                degrees.append(d)
        bars = rng.integers(1, 3, size=n_chords)
        return list(zip(degrees, bars.tolist(), strict=True))

    sections = [progression(), progression()]
    timeline: list[tuple[int, int]] = []
    step = 0
    section = 0
    while step < n_steps:
        for degree, bars in sections[section % 2]:
            timeline.append((step, degree))
            step += bars * steps_per_bar
        section += 1
    return timeline


def _chord_at(chords: list[tuple[int, int]], step: int) -> int:
    """Root degree of the chord sounding at ``step``."""
    starts = [s for s, _ in chords]
    return chords[int(np.searchsorted(starts, step, side="right")) - 1][1]


def _make_instrument(
    rng: np.random.Generator,
    sr: int,
    f_max_hz: float,
    brightness: float,
    vibrato: bool = False,
) -> _Instrument:
    """A random timbre: per-seed harmonic amplitudes, band-limited below Nyquist for f_max_hz."""
    n_harmonics = int(rng.integers(6, 13))
    n_harmonics = max(1, min(n_harmonics, int(0.45 * sr / f_max_hz)))
    k = np.arange(1, n_harmonics + 1)
    amps = k ** -(brightness * rng.uniform(0.7, 1.5)) * rng.uniform(0.3, 1.0, n_harmonics)
    if rng.random() < 0.3:  # hollow, clarinet-like: weaken even partials
        amps[1::2] *= 0.25
    amps[0] = 1.0
    phases = rng.uniform(0, 2 * np.pi, n_harmonics)
    theta = 2 * np.pi * np.arange(_TABLE_SIZE) / _TABLE_SIZE
    table = (amps[:, None] * np.sin(k[:, None] * theta[None, :] + phases[:, None])).sum(axis=0)
    table /= np.max(np.abs(table))
    return _Instrument(
        table=table,
        attack_s=float(rng.uniform(0.005, 0.03)),
        decay_s=float(rng.uniform(0.05, 0.3)),
        sustain_level=float(rng.uniform(0.3, 0.8)),
        release_s=float(rng.uniform(0.05, 0.2)),
        vibrato_depth=float(rng.uniform(0.002, 0.006)) if vibrato else 0.0,
        vibrato_rate_hz=float(rng.uniform(4.5, 6.5)),
    )


def _add_note(
    out: np.ndarray,
    sr: int,
    inst: _Instrument,
    midi: float,
    start_s: float,
    duration_s: float,
    gain: float,
) -> None:
    """Mix one note (held ``duration_s`` seconds, then released) into ``out`` in place."""
    start = round(start_s * sr)
    if start >= len(out) or duration_s <= 0:
        return
    n = min(round((duration_s + inst.release_s) * sr), len(out) - start)
    if n <= 0:
        return
    t = np.arange(n) / sr
    f0 = _midi_to_hz(midi)
    phase = f0 * t
    if inst.vibrato_depth > 0:
        # Vibrato fades in after 0.15 s; closed-form integral of f0 * (1 + d * sin(2 pi r t)).
        w = 2 * np.pi * inst.vibrato_rate_hz
        depth = inst.vibrato_depth * np.clip((t - 0.15) / 0.2, 0.0, 1.0)
        phase = phase + f0 * depth * (1.0 - np.cos(w * t)) / w
    idx = ((phase % 1.0) * _TABLE_SIZE).astype(np.int64) % _TABLE_SIZE
    # ADSR: attack/decay knots that fall inside the held part, then a linear release.
    knots_s = [0.0, inst.attack_s, inst.attack_s + inst.decay_s]
    levels = [0.0, 1.0, inst.sustain_level]
    held_level = float(np.interp(duration_s, knots_s, levels))
    n_inside = sum(k < duration_s for k in knots_s)
    env = np.interp(
        t,
        knots_s[:n_inside] + [duration_s, duration_s + inst.release_s],
        levels[:n_inside] + [held_level, 0.0],
    )
    out[start : start + n] += gain * env * inst.table[idx]


def _render_bass(rng: np.random.Generator, out: np.ndarray, plan: _Plan, inst: _Instrument) -> None:
    """Chord roots (sometimes fifths) in octave 2 on a per-seed one-bar rhythm."""
    step_s, bar = plan.step_s, plan.steps_per_bar
    pattern = rng.random(bar) < rng.uniform(0.15, 0.35)
    pattern[0] = True
    onsets = [s for s in range(plan.n_steps) if pattern[s % bar]]
    base = 36 + (plan.tonic_midi - 36) % 12  # tonic in octave 2
    for i, step in enumerate(onsets):
        nxt = onsets[i + 1] if i + 1 < len(onsets) else step + bar
        degree = _chord_at(plan.chords, step)
        if step % bar and rng.random() < 0.3:
            degree += 4  # fifth of the chord
        midi = _scale_pitch(base, plan.scale, degree)
        if midi > 52:
            midi -= 12
        dur_s = (nxt - step) * step_s * rng.uniform(0.6, 0.95)
        gain = 0.32 * rng.uniform(0.85, 1.0)
        _add_note(out, plan.sr, inst, midi, step * step_s, dur_s, gain)


def _render_chords(
    rng: np.random.Generator, out: np.ndarray, plan: _Plan, inst: _Instrument
) -> None:
    """Triads (or sevenths) voiced around middle C: held, arpeggiated or stabbed per seed."""
    step_s, sr = plan.step_s, plan.sr
    style = str(rng.choice(["hold", "arpeggio", "stabs"]))
    offsets = (0, 2, 4, 6) if rng.random() < 0.4 else (0, 2, 4)
    base = 48 + (plan.tonic_midi - 48) % 12
    stab_pattern = rng.random(8) < 0.4  # on eighth notes
    stab_pattern[0] = True
    for i, (start, degree) in enumerate(plan.chords):
        end = plan.chords[i + 1][0] if i + 1 < len(plan.chords) else plan.n_steps
        end = min(end, plan.n_steps)
        notes = [_scale_pitch(base, plan.scale, degree + o) for o in offsets]
        notes = [m - 12 if m > 76 else m for m in notes]
        gain = 0.22 / len(notes)
        if style == "hold":
            for m in notes:
                _add_note(out, sr, inst, m, start * step_s, (end - start) * step_s * 0.95, gain)
        elif style == "arpeggio":
            order = notes + notes[-2:0:-1]  # up and down
            for j, step in enumerate(range(start, end, 2)):
                m = order[j % len(order)]
                _add_note(out, sr, inst, m, step * step_s, 2 * step_s, 1.8 * gain)
        else:
            for step in range(start, end, 2):
                if stab_pattern[(step - start) // 2 % 8]:
                    for m in notes:
                        _add_note(out, sr, inst, m, step * step_s, 1.5 * step_s, 1.3 * gain)


def _render_melody(
    rng: np.random.Generator, out: np.ndarray, plan: _Plan, inst: _Instrument
) -> None:
    """A non-repeating random walk over the scale, landing on chord tones on strong beats."""
    lengths = np.array([1, 2, 3, 4, 6, 8])  # in steps
    weights = rng.dirichlet(np.ones(len(lengths)) * 2.0)
    rest_prob = rng.uniform(0.08, 0.25)
    base = 60 + (plan.tonic_midi - 60) % 12
    degree = int(rng.integers(0, 7))
    step = 0
    while step < plan.n_steps:
        length = int(rng.choice(lengths, p=weights))
        if rng.random() < rest_prob:
            step += length
            continue
        degree += int(rng.choice([-3, -2, -1, -1, 0, 1, 1, 2, 3]))
        if step % _STEPS_PER_BEAT == 0:
            # Snap to the nearest chord tone so the melody follows the harmony.
            root = _chord_at(plan.chords, step)
            tones = [root + o + 7 * k for o in (0, 2, 4) for k in (-1, 0, 1, 2)]
            degree = min(tones, key=lambda x: abs(x - degree))
        degree = int(np.clip(degree, 0, 13))  # two octaves above the melody tonic
        midi = _scale_pitch(base, plan.scale, degree)
        accent = 1.1 if step % plan.steps_per_bar == 0 else 1.0
        gain = 0.3 * accent * rng.uniform(0.75, 1.0)
        dur_s = length * plan.step_s * 0.9
        _add_note(out, plan.sr, inst, midi, step * plan.step_s, dur_s, gain)
        step += length


def _render_drums(rng: np.random.Generator, out: np.ndarray, plan: _Plan) -> None:
    """Kick (swept sine), snare (noise + tone) and hi-hat (high-passed noise) on a per-seed grid."""
    sr, bar = plan.sr, plan.steps_per_bar
    kick_len, snare_len, hat_len = int(0.35 * sr), int(0.2 * sr), int(0.06 * sr)

    t = np.arange(kick_len) / sr
    f_start_hz, f_end_hz = rng.uniform(100, 160), rng.uniform(40, 60)
    freq_hz = f_end_hz + (f_start_hz - f_end_hz) * np.exp(-t / 0.04)
    kick = np.sin(2 * np.pi * np.cumsum(freq_hz) / sr) * np.exp(-t / rng.uniform(0.08, 0.15))

    t = np.arange(snare_len) / sr
    noise = lfilter([1.0, -0.9], [1.0], rng.standard_normal(snare_len))  # tilt towards highs
    tone = np.sin(2 * np.pi * rng.uniform(170, 230) * t)
    snare = (0.6 * noise / np.max(np.abs(noise)) + 0.5 * tone) * np.exp(
        -t / rng.uniform(0.04, 0.07)
    )

    t = np.arange(hat_len) / sr
    hat = lfilter([1.0, -1.0], [1.0], rng.standard_normal(hat_len))
    hat *= np.exp(-t / rng.uniform(0.01, 0.025)) / np.max(np.abs(hat))

    kick_pat = rng.random(bar) < 0.15
    kick_pat[0] = True
    snare_pat = np.zeros(bar, dtype=bool)
    if bar == 16:
        kick_pat[8] |= rng.random() < 0.7
        snare_pat[[4, 12]] = True  # backbeat
    else:
        snare_pat[bar // 2] = True
    snare_pat |= rng.random(bar) < 0.05
    snare_pat &= ~kick_pat
    hat_pat = np.arange(bar) % int(rng.choice([1, 2, 2])) == 0
    fill_every_bars = int(rng.choice([4, 8]))

    kit = ((kick, kick_pat, 0.55), (snare, snare_pat, 0.3), (hat, hat_pat, 0.08))
    for step in range(plan.n_steps):
        start = round(step * plan.step_s * sr)
        if start >= len(out):
            break
        pos = step % bar
        fill = (step // bar) % fill_every_bars == fill_every_bars - 1 and pos >= bar - 4
        for hit, pattern, gain in kit:
            if pattern[pos] or (hit is snare and fill and pos % 2 == 0):
                n = min(len(hit), len(out) - start)
                out[start : start + n] += gain * rng.uniform(0.8, 1.0) * hit[:n]
