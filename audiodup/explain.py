"""Pictures of the evidence that an upload contains a catalog work.

Left: every verified hash match as a point (upload time against reference time). Copies line up
on straight lines ``t_ref = tempo_ratio * t_upload + offset``, one per aligned section, so the
slope shows the tempo ratio; each fitted section is drawn and annotated with its tempo ratio and
the pitch shift. Right: the chroma of the upload, mapped onto the reference's time axis and
rotated by the pitch shift, above the reference's chroma over the same stretch; a copy shows the
same pattern twice.

Rendered with matplotlib's Agg canvas (no display, no pyplot state), as PNG or SVG bytes, so the
same function draws ``audiodup explain`` files and the pictures inside HTML reports. File names
and titles are drawn literally: never as mathtext (``$\\frac{$`` would stop the drawing) or
TeX, with control characters escaped.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path

import numpy as np

from .audio import Audio, load_audio
from .catalog import Catalog
from .errors import AudioDecodeError, AudiodupError, WorkNotFoundError
from .fingerprint import Fingerprint, fingerprint_audio, stereo_stretches
from .match import ChromaEvidence, HashEvidence
from .peakcheck import PeakCheck
from .report import check_output_path, write_atomically
from .results import CHANNEL_SIDES, NUMBERED_PARTS, SIGNAL_WORDS, shown_text
from .screening import View, planned_views
from .settings import Settings
from .stereo import part_audio

FORMATS = ("png", "svg")
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# text that carries a file name or a title: literal, whatever the user's matplotlibrc says
_LITERAL = {"parse_math": False, "usetex": False}
_DEFAULT_STEM_BYTES = 200  # a default picture name stays below the 255-byte name limit


def explain(
    catalog: Catalog,
    upload: str | Path,
    work_id: int,
    out: str | Path | None = None,
) -> Path:
    """Draw the evidence that ``upload`` contains work ``work_id`` into ``out`` (PNG or SVG by
    suffix) [default: ``explain-<upload stem>-<work_id>.png``, the stem shortened and without
    control characters]. ``out`` is checked before the upload is decoded: never the upload
    itself nor a file of the catalog folder. Returns the path written."""
    upload = Path(upload)
    out = Path(out) if out is not None else default_picture_path(upload, work_id)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise AudiodupError(f"cannot write {out}: the picture must end in .png or .svg")
    check_output_path(out, [upload], catalog.root)
    try:
        audio = load_audio(upload, catalog.settings)
    except AudioDecodeError as exc:
        raise type(exc)(f"{upload}: {exc}") from None
    except OSError as exc:  # a name too long, a folder that cannot be entered
        raise AudioDecodeError(f"{upload}: cannot read: {exc.strerror or exc}") from None
    query, name, evidence = _query_for(catalog, audio, work_id)
    shown = titled(upload.name, name)
    data = render_explain(catalog, query, work_id, fmt=fmt, upload_name=shown, evidence=evidence)
    return write_atomically(out, data)


def _query_for(catalog: Catalog, audio: Audio, work_id: int) -> Drawn:
    """The upload's query fingerprint that shows the most of work ``work_id``: its mix's
    (:func:`drawn_queries`), or that of its whole stereo difference when it has one
    (:mod:`audiodup.stereo`; whether screening looked there or not), or of one whole channel
    where screening looks at the channels, or of a multichannel file's channel or difference
    of two where screening looks at it (:func:`most_patterns`): an ordinary recording's
    channels are its mix panned, which the picture need not name."""
    settings = catalog.settings
    drawn = drawn_queries(audio, settings)
    screened = {signal for signal, _ in stereo_stretches(audio, settings)}
    channels = [s for s in (*CHANNEL_SIDES, *NUMBERED_PARTS) if s in screened]
    for signal in ["stereo_difference", *channels]:
        part = part_audio(audio, signal, settings)
        if part is not None:
            whole = fingerprint_audio(part, settings, query=True)
            drawn.append((whole, f"its {SIGNAL_WORDS[signal]}"))
    return most_patterns(catalog, drawn, work_id)


def drawn_queries(audio: Audio, settings: Settings) -> list[tuple[Fingerprint, str | None]]:
    """:func:`drawn_views` of ``audio``'s query fingerprint."""

    def view(time_scale: float, hop_phase: float) -> Fingerprint:
        return fingerprint_audio(
            audio, settings, query=True, time_scale=time_scale, hop_phase=hop_phase
        )

    return drawn_views(fingerprint_audio(audio, settings, query=True), view, settings)


def drawn_views(
    query: Fingerprint, view: View | None, settings: Settings
) -> list[tuple[Fingerprint, str | None]]:
    """A query fingerprint as it is, and analysed from each other frame phase that screening
    looks at it in too (:func:`audiodup.screening.planned_views`: half a hop in under
    ``half_hop_max_s``, quarters of a hop under ``short_query_max_s``; a weak copy's patterns
    depend on where the frames fall; ``view`` makes those fingerprints, None: no audio to
    analyse again), each with the words that say which (None: as it is)."""
    drawn = [(query, None)]
    if view is not None:
        plan = planned_views(query, settings)
        phases = [phase for scale, phase in plan if scale == 1.0 and phase > 0.0]
        drawn += [(view(1.0, phase), _analysed_from(phase)) for phase in phases]
    return drawn


def titled(name: str, how: str | None) -> str:
    """A picture's name for the upload ``name`` drawn from the analysis ``how`` says (None:
    the upload's mix as it is)."""
    return f"{name} ({how})" if how else name


def _analysed_from(hop_phase: float) -> str:
    words = {0.25: "a quarter of a hop", 0.5: "half a hop", 0.75: "three quarters of a hop"}
    return f"analysed from {words.get(hop_phase, f'{hop_phase:g} of a hop')} in"


# a query fingerprint to draw, the words that say which (None: the upload's mix as it is) and
# its evidence of the work when it was compared (Catalog.work_evidence), for render_explain
Drawn = tuple[Fingerprint, str | None, tuple | None]


def most_patterns(
    catalog: Catalog, drawn: list[tuple[Fingerprint, str | None]], work_id: int
) -> Drawn:
    """The first of ``drawn`` on whose main hash line the most of work ``work_id``'s patterns
    lie, with its evidence (the only one, or the first when there is no such work:
    :func:`render_explain` says so, without a look at the work and without evidence)."""
    if len(drawn) == 1 or catalog.work(work_id) is None:
        return (*drawn[0], None)
    evidence = [catalog.work_evidence(query, work_id) for query, _ in drawn]
    counts = [hashed.main_inliers if hashed is not None else 0 for hashed, _ in evidence]
    best = counts.index(max(counts))
    return (*drawn[best], evidence[best])


def default_picture_path(upload: str | Path, work_id: int) -> Path:
    """``explain-<upload stem>-<work_id>.png`` in the current folder; control characters of the
    stem become ``_`` and a long stem is cut, so the name stays a valid file name."""
    stem = re.sub(r"[\x00-\x1f\x7f]", "_", Path(upload).stem)
    while len(os.fsencode(stem)) > _DEFAULT_STEM_BYTES:
        stem = stem[:-1]
    return Path(f"explain-{stem}-{work_id}.png")


def render_explain(
    catalog: Catalog,
    query: Fingerprint,
    work_id: int,
    *,
    fmt: str = "png",
    upload_name: str = "upload",
    dpi: int = 90,
    evidence: tuple | None = None,
) -> bytes:
    """The picture as PNG or SVG bytes for a query fingerprint (``query=True`` recipe);
    ``evidence``: ``catalog.work_evidence(query, work_id)`` when the caller has it."""
    work = catalog.work(work_id)
    if work is None:
        raise WorkNotFoundError(f"no work {work_id} in the catalog")
    hashed, chroma = evidence or catalog.work_evidence(query, work_id)
    reference = catalog.fingerprint(work_id)
    figure = explain_figure(
        query,
        reference,
        hashed,
        chroma,
        peaks=catalog.peak_evidence(query, work_id, hashed, chroma),
        bins_per_semitone=catalog.settings.bins_per_octave // 12,
        min_hashes=catalog.settings.duplicate_min_hashes,
        frames_per_second=catalog.settings.frames_per_second,
        chroma_fps=catalog.settings.chroma_fps,
        upload_name=upload_name,
        work_name=f"work {work_id}: {work.title or Path(work.path).name}",
    )
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # a name in a script the font lacks is drawn as boxes; a warning per glyph is noise
        warnings.filterwarnings("ignore", message="Glyph .* missing from")
        figure.savefig(buffer, format=fmt, dpi=dpi, metadata=_quiet_metadata(fmt))
    return buffer.getvalue()


def explain_figure(
    query: Fingerprint,
    reference: Fingerprint,
    hashed: HashEvidence | None,
    chroma: ChromaEvidence | None,
    *,
    frames_per_second: float,
    chroma_fps: float,
    upload_name: str = "upload",
    work_name: str = "reference",
    peaks: PeakCheck | None = None,
    bins_per_semitone: int = 3,
    min_hashes: int = 8,
):
    """A matplotlib ``Figure`` (Agg canvas) of the evidence; pure, nothing is written.

    ``peaks`` (the guided peak check) adds the upload peaks that land on the work's peaks; its
    alignment is the one shown when the hash line holds fewer than ``min_hashes`` patterns."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise AudiodupError("pictures need matplotlib: pip install matplotlib") from None
    figure = Figure(figsize=(12.0, 5.0))
    FigureCanvasAgg(figure)
    # fixed margins: a constrained layout would cost a third of the rendering time
    grid = figure.add_gridspec(
        2,
        2,
        width_ratios=(1.0, 1.25),
        left=0.065,
        right=0.985,
        bottom=0.1,
        top=0.86,
        wspace=0.16,
        hspace=0.28,
    )
    ax_hash = figure.add_subplot(grid[:, 0])
    ax_up = figure.add_subplot(grid[0, 1])
    ax_ref = figure.add_subplot(grid[1, 1], sharex=ax_up)

    by_peaks = peaks is not None and peaks.matched_peaks > 0
    by_peaks &= hashed is None or hashed.inliers < min_hashes
    transform = (
        _peak_transform(peaks, frames_per_second, bins_per_semitone)
        if by_peaks
        else _transform(hashed, chroma, frames_per_second)
    )
    _draw_hashes(ax_hash, hashed, chroma, frames_per_second, query.duration_s)
    if peaks is not None and peaks.matched_peaks:
        _draw_peaks(ax_hash, peaks, frames_per_second)
    # whole recordings on both axes: where the copy starts and what it leaves out show too
    ax_hash.set_xlim(0.0, max(query.duration_s, 1.0))
    ax_hash.set_ylim(0.0, max(reference.duration_s, 1.0))
    # user text of any length, shortened in its middle to the room it has: the labels, the
    # work's id and the title's numbers stay inside the picture
    upload_name, work_name = shown_text(upload_name), shown_text(work_name)
    renderer, width, height = figure.canvas.get_renderer(), figure.bbox.width, figure.bbox.height
    x_room, y_room = ax_hash.get_position().width * width, 0.9 * height
    x_label, y_label = ax_hash.xaxis.label, ax_hash.yaxis.label
    x_name = _fitted(renderer, x_label, "upload time (s): ", upload_name, x_room)
    y_name = _fitted(renderer, y_label, "reference time (s): ", work_name, y_room)
    ax_hash.set_xlabel(f"upload time (s): {x_name}", **_LITERAL)
    ax_hash.set_ylabel(f"reference time (s): {y_name}", **_LITERAL)
    title = figure.suptitle("", fontsize=11, **_LITERAL)
    names = " vs ".join(
        _fitted(renderer, title, "", n, 0.46 * width) for n in (upload_name, work_name)
    )
    if transform is None:
        for ax in (ax_up, ax_ref):
            ax.text(0.5, 0.5, "no alignment found", ha="center", va="center")
            ax.set_axis_off()
        title.set_text(f"{names}\nno evidence of a match")
        return figure
    tempo, pitch, query_start_s, ref_start_s, ref_end_s = transform
    upload_aligned, ref_part, times = _aligned_chroma(
        query, reference, tempo, pitch, query_start_s, ref_start_s, ref_end_s, chroma_fps
    )
    cosine = _mean_cosine(upload_aligned, ref_part)
    extent = (times[0], times[-1] + 1.0 / chroma_fps, -0.5, 11.5) if len(times) else None
    for ax, values, label in (
        (ax_up, upload_aligned, "upload, mapped onto reference time and transposed back"),
        (ax_ref, ref_part, "reference"),
    ):
        if len(values):
            ax.imshow(
                values.T,
                origin="lower",
                aspect="auto",
                extent=extent,
                cmap="magma",
                interpolation="nearest",
                vmin=-1.0,
                vmax=1.0,
            )
        ax.set_yticks(range(0, 12, 2), PITCH_CLASSES[::2])
        ax.set_ylabel("pitch class")
        ax.set_title(label, fontsize=10, loc="left")
    ax_ref.set_xlabel("reference time (s)")
    ax_up.tick_params(labelbottom=False)
    if by_peaks:
        text = (
            f"{names}\ntempo x{tempo:.3f}, pitch {pitch + 0.0:+.2f} st, "
            f"{peaks.matched_peaks} coinciding peaks, chroma cosine {cosine:.2f}"
        )
    elif hashed is not None:
        text = (
            f"{names}\ntempo x{tempo:.3f}, pitch {pitch + 0.0:+.2f} st, "
            f"{hashed.inliers} matched hashes, aligned chroma cosine {cosine:.2f}"
        )
    else:
        text = (
            f"{names}\nno verified hash matches; best chroma alignment "
            f"tempo x{tempo:.3f}, pitch {pitch + 0.0:+.1f} st, cosine {cosine:.2f}"
        )
    title.set_text(text)
    return figure


def _fitted(renderer, label, prefix: str, name: str, pixels: float) -> str:
    """``name`` shortened by an ellipsis in its middle (its start, a work's id, and its end, a
    file's extension, stay) until ``prefix + name`` in ``label``'s font is at most ``pixels``
    long."""
    font = label.get_fontproperties()

    def shortened(keep: int) -> str:
        if keep >= len(name):
            return name
        head = keep * 2 // 3
        return name[:head] + "\u2026" + name[len(name) - (keep - head) :]

    def fits(keep: int) -> bool:
        text = prefix + shortened(keep)
        return renderer.get_text_width_height_descent(text, font, ismath=False)[0] <= pixels

    keep, longest = 0, len(name)
    while keep < longest:  # the most characters that fit
        middle = (keep + longest + 1) // 2
        keep, longest = (middle, longest) if fits(middle) else (keep, middle - 1)
    return shortened(keep)


def _peak_transform(
    check: PeakCheck, fps: float, bins_per_semitone: int
) -> tuple[float, float, float, float, float]:
    """``(tempo, pitch, query_start_s, ref_start_s, ref_end_s)`` of the peak check's alignment,
    over the stretch of the upload where its peaks coincide."""
    q0, _, r0, r1 = check.aligned_frames()
    a = check.alignment
    return (a.tempo_ratio, a.pitch_bins / bins_per_semitone, q0 / fps, r0 / fps, r1 / fps)


def _transform(
    hashed: HashEvidence | None, chroma: ChromaEvidence | None, fps: float
) -> tuple[float, float, float, float, float] | None:
    """``(tempo, pitch, query_start_s, ref_start_s, ref_end_s)`` of the main aligned section."""
    if hashed is not None:
        main = hashed.lines[0]
        return (
            hashed.tempo_ratio,
            hashed.pitch_shift_semitones,
            main.query_start_frame / fps,
            main.ref_start_frame / fps,
            main.ref_end_frame / fps,
        )
    if chroma is not None:
        return (
            chroma.tempo_ratio,
            chroma.pitch_shift_semitones,
            chroma.query_start_s,
            chroma.ref_start_s,
            chroma.ref_end_s,
        )
    return None


def _draw_hashes(
    ax,
    hashed: HashEvidence | None,
    chroma: ChromaEvidence | None,
    fps: float,
    query_duration_s: float,
) -> None:
    if hashed is None:
        ax.text(
            0.5, 0.5, "no verified hash matches", ha="center", va="center", transform=ax.transAxes
        )
        if chroma is not None:
            ax.plot(
                [chroma.query_start_s, chroma.query_end_s],
                [chroma.ref_start_s, chroma.ref_end_s],
                "--",
                color="tab:orange",
                label=f"chroma alignment, tempo x{chroma.tempo_ratio:.3f}",
            )
            ax.legend(loc="upper left", fontsize=8)
        ax.set_title("matched hashes", fontsize=10, loc="left")
        return
    ax.scatter(
        hashed.match_query_frames / fps,
        hashed.match_ref_frames / fps,
        s=6,
        color="tab:blue",
        alpha=0.6,
        linewidths=0,
        label=f"{hashed.inliers} matched hashes",
    )
    for number, line in enumerate(hashed.lines, start=1):
        q0, q1 = line.query_start_frame / fps, line.query_end_frame / fps
        r0, r1 = line.ref_start_frame / fps, line.ref_end_frame / fps
        ax.plot(
            [q0, q1],
            [r0, r1],
            color="tab:red",
            linewidth=1.5,
            alpha=0.8,
            label=_sections_label(hashed) if number == 1 else None,
        )
        if number == 1:  # what an unaltered copy would look like, for comparison
            ax.plot(
                [q0, q1],
                [r0, r0 + (q1 - q0)],
                ":",
                color="grey",
                linewidth=1.0,
                label="tempo x1 (for comparison)",
            )
        if len(hashed.lines) > 1:  # a number by each, their tempos in the legend
            ax.annotate(
                str(number),
                xy=((q0 + q1) / 2, (r0 + r1) / 2),
                xytext=(0, 4),
                textcoords="offset points",
                ha="center",
                fontsize=8,
                color="tab:red",
            )
            continue
        right_half = (q0 + q1) / 2 > 0.5 * query_duration_s  # keep the label inside the axes
        slope, pitch = _slope(line, hashed.tempo_ratio), hashed.pitch_shift_semitones + 0.0
        ax.annotate(
            f"tempo x{slope:.3f}, pitch {pitch:+.1f} st",
            xy=((q0 + q1) / 2, (r0 + r1) / 2),
            xytext=(-8 if right_half else 8, -14),
            textcoords="offset points",
            ha="right" if right_half else "left",
            fontsize=8,
            color="tab:red",
        )
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title("matched hashes: slope = tempo ratio", fontsize=10, loc="left")


def _sections_label(hashed: HashEvidence) -> str:
    """The legend's entry for the fitted sections; with several, each one's tempo ratio."""
    if len(hashed.lines) == 1:
        return "fitted sections"
    tempos = (
        f"{n} x{_slope(line, hashed.tempo_ratio):.3f}" for n, line in enumerate(hashed.lines, 1)
    )
    return "fitted sections, tempo: " + ", ".join(tempos)


def _slope(line, tempo_ratio: float) -> float:
    """A section's own tempo ratio (``tempo_ratio`` for a section of no length)."""
    q = line.query_end_frame - line.query_start_frame
    return (line.ref_end_frame - line.ref_start_frame) / q if q > 0 else tempo_ratio


def _draw_peaks(ax, check: PeakCheck, fps: float) -> None:
    """Coinciding peaks of the guided peak check, under its alignment."""
    upload = check.matched_query_frames
    reference = check.alignment.ref_frames(upload)
    ax.scatter(
        upload / fps,
        reference / fps,
        s=4,
        color="tab:green",
        alpha=0.5,
        linewidths=0,
        label=(
            f"{check.matched_peaks} coinciding peaks from {check.matched_onsets} onsets "
            f"({check.chance_peaks:.0f} by chance)"
        ),
    )
    ax.legend(loc="best", fontsize=8)


def _aligned_chroma(
    query: Fingerprint,
    reference: Fingerprint,
    tempo: float,
    pitch: float,
    query_start_s: float,
    ref_start_s: float,
    ref_end_s: float,
    chroma_fps: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upload chroma resampled onto reference times and rotated back by the pitch shift, the
    reference chroma over those times, and the times (s)."""
    first = max(0, int(np.floor(ref_start_s * chroma_fps)))
    last = min(len(reference.chroma), int(np.ceil(ref_end_s * chroma_fps)))
    times = np.arange(first, last) / chroma_fps
    upload_times = query_start_s + (times - ref_start_s) / tempo
    index = np.round(upload_times * chroma_fps).astype(int)
    inside = (index >= 0) & (index < len(query.chroma))
    times, index = times[inside], index[inside]
    # chroma is tuning-compensated, so only the whole-semitone part of the shift rotates it
    rotation = int(round(pitch - (query.tuning_semitones - reference.tuning_semitones))) % 12
    upload = np.roll(query.chroma[index], -rotation, axis=1)
    ref = reference.chroma[np.round(times * chroma_fps).astype(int)]
    return upload, ref, times


def _mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) == 0:
        return float("nan")
    num = np.sum(a * b, axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(num / np.maximum(den, 1e-9)))


def _quiet_metadata(fmt: str) -> dict:
    """No creation dates or software versions: the same evidence gives the same bytes."""
    if fmt == "svg":
        return {"Date": None, "Creator": None}
    return {"Software": None}
