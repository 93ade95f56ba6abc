"""Tempo drift (issue #12 item 4): a copy whose tempo ramps along the upload (a DJ's gradual
ramp) is found, and the match reports the drift; steady copies report none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from audiodup import Catalog
from audiodup.results import Section
from audiodup.screening import tempo_drift

SR = 22050


def section(q0: float, q1: float, tempo: float, ref0: float, hashes: int = 20) -> Section:
    return Section(q0, q1, ref0, ref0 + (q1 - q0) * tempo, hashes)


# -- the rule (pure) -----------------------------------------------------------------------------
def ramp_sections(end_over_start: float, cuts: tuple[float, ...]) -> tuple[Section, ...]:
    """Sections of a linear ramp in log tempo over 60 s, each with its mean tempo."""
    rate = np.log(end_over_start) / 60.0
    out, ref = [], 0.0
    for q0, q1 in zip(cuts, cuts[1:], strict=False):
        tempo = float(np.exp(rate * (q0 + q1) / 2))
        out.append(section(q0, q1, tempo, ref))
        ref += (q1 - q0) * tempo
    return tuple(out)


@pytest.mark.parametrize("end_over_start", [1.08, 0.93, 1.2])
@pytest.mark.parametrize("cuts", [(0, 20, 40, 60), (0, 25, 60), (0, 12, 30, 45, 60)])
def test_sections_of_a_ramp_give_its_end_over_start(end_over_start: float, cuts) -> None:
    assert tempo_drift(ramp_sections(end_over_start, cuts)) == pytest.approx(
        end_over_start, rel=0.003
    )


@pytest.mark.parametrize(
    "sections",
    [
        (section(0, 60, 1.05, 0),),  # one line: a steady tempo
        (section(0, 20, 1.05, 0), section(20, 40, 1.052, 21)),  # the same tempo twice
        (section(0, 20, 1.0, 30), section(20, 40, 1.06, 0)),  # a loop back: not a drift
        (section(0, 20, 1.0, 0), section(20, 40, 1.06, 20), section(40, 60, 1.0, 41)),  # up, down
        (section(0, 20, 1.0, 0, hashes=5), section(20, 40, 1.06, 20)),  # too little evidence
        (section(0, 3, 1.0, 0), section(3, 40, 1.06, 3)),  # a section too short
        # one stretch of the upload matched twice, at a repeat of the work (a distorted 60 s cut
        # of freedroidrpg's NewTutorialStage): no progression, and no fit through one time
        (section(10.12, 16.14, 1.0, 10.12, 11), section(10.12, 16.14, 0.98, 127.1, 10)),
        (section(10, 20, 1.0, 0), section(12, 25, 1.04, 30)),  # the second starts inside the first
    ],
)
def test_no_drift_without_a_one_way_tempo_change(sections: tuple[Section, ...]) -> None:
    assert tempo_drift(sections) is None


# -- end to end ------------------------------------------------------------------------------------
def speed_ramp(y: np.ndarray, start: float, end: float) -> np.ndarray:
    """Playback speed ramping linearly from ``start`` to ``end`` along the source (a turntable's
    pitch fader), by variable-rate reading at twice the rate."""
    up = soxr.resample(y, SR, 2 * SR, quality="VHQ")
    slope = (end - start) / up.size
    grid = np.arange(0, up.size + 1, 64, dtype=np.float64)
    landing = np.log1p(slope * grid / start) / slope
    out = np.interp(np.arange(int(landing[-1])), landing, grid)
    warped = np.interp(out, np.arange(up.size), up).astype(np.float32)
    return soxr.resample(warped, 2 * SR, SR, quality="VHQ").astype(np.float32)


@pytest.fixture(scope="module")
def ramp_catalog(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from audiodup.synth import synthesize_work

    root = tmp_path_factory.mktemp("drift")
    original = synthesize_work(71, duration_s=60.0, sr=SR)
    sf.write(root / "original.wav", original, SR)
    sf.write(root / "ramp.wav", speed_ramp(original, 1.0, 1.08), SR)
    with Catalog.open(root / "db") as catalog:
        catalog.add_paths([root / "original.wav"])
    return root / "db", root


def test_a_ramped_copy_is_found_with_its_drift(ramp_catalog: tuple[Path, Path]) -> None:
    db, root = ramp_catalog
    with Catalog.open(db, create=False) as catalog:
        verdict = catalog.screen(root / "ramp.wav")
        steady = catalog.screen(root / "original.wav")
    assert verdict.verdict == "duplicate"
    top = verdict.matches[0]
    assert top.tempo_drift is not None and top.tempo_drift == pytest.approx(1.08, abs=0.03)
    mean = 0.08 / np.log(1.08)  # the ramp's mean tempo ratio
    assert top.tempo_ratio == pytest.approx(mean, abs=0.05)
    assert steady.matches[0].tempo_drift is None


def test_steady_fixture_copies_report_no_drift(catalog: Catalog) -> None:
    uploads = Path(__file__).resolve().parents[1] / "fixtures" / "audio" / "uploads"
    for path in sorted(uploads.glob("*")):
        for match in catalog.screen(path).matches:
            assert match.tempo_drift is None, (path.name, match)


def one_line_evidence(tq_s: np.ndarray, tr_s: np.ndarray, fps: float = 100.0):
    from audiodup.match import AlignedLine, HashEvidence

    line = AlignedLine(tq_s[0] * fps, tq_s[-1] * fps, tr_s[0] * fps, tr_s[-1] * fps, len(tq_s))
    return HashEvidence(
        1, len(tq_s), len(tq_s), len(tq_s), 1.04, 0.0, (line,), 60.0, tq_s * fps, tr_s * fps
    )


def test_one_bending_line_is_a_drift_and_a_straight_one_is_not() -> None:
    from audiodup.screening import _bending_drift

    rng = np.random.default_rng(0)
    tq = np.sort(rng.uniform(0, 60, 200))
    rate = np.log(1.08) / 60  # log tempo grows linearly with upload time
    bent = (np.exp(rate * tq) - 1) / rate + rng.normal(0, 0.01, tq.size)
    assert _bending_drift(one_line_evidence(tq, bent), 100.0) == pytest.approx(1.08, rel=0.01)
    straight = 1.04 * tq + rng.normal(0, 0.01, tq.size)
    assert _bending_drift(one_line_evidence(tq, straight), 100.0) is None
    assert _bending_drift(one_line_evidence(tq[:30], bent[:30]), 100.0) is None  # too few hits


def sections_evidence(pieces: list[tuple[np.ndarray, np.ndarray]], fps: float = 100.0):
    """Hash evidence whose hits lie on several sections, one straight line fitted to each (as
    the verifier cuts a ramp, or finds a loop's repeat)."""
    from audiodup.match import AlignedLine, HashEvidence

    lines = []
    for tq_s, tr_s in pieces:
        slope, intercept = np.polyfit(tq_s, tr_s, 1)
        q0, q1 = tq_s.min(), tq_s.max()
        lines.append(
            AlignedLine(
                q0 * fps,
                q1 * fps,
                (slope * q0 + intercept) * fps,
                (slope * q1 + intercept) * fps,
                len(tq_s),
            )
        )
    tq = np.concatenate([p[0] for p in pieces])
    tr = np.concatenate([p[1] for p in pieces])
    n = len(tq)
    return HashEvidence(
        1, n, n, len(pieces[0][0]), 1.04, 0.0, tuple(lines), 60.0, tq * fps, tr * fps
    )


def test_a_ramp_cut_into_sections_and_repeats_is_a_drift() -> None:
    """A ramp 1.00 -> 1.08 over 60 s whose hits the verifier put on two sections, with a
    repeat of the first half's music on a parallel line: the shared curve finds the ramp where
    the sections' one-way rule does not (the repeat goes back in reference time)."""
    from audiodup.screening import curve_drift

    rng = np.random.default_rng(1)
    rate = np.log(1.08) / 60

    def ref_s(tq: np.ndarray) -> np.ndarray:
        return (np.exp(rate * tq) - 1) / rate + rng.normal(0, 0.015, tq.size)

    first, second = np.sort(rng.uniform(0, 30, 80)), np.sort(rng.uniform(30, 60, 80))
    repeat = np.sort(rng.uniform(5, 25, 30))
    pieces = [(first, ref_s(first)), (second, ref_s(second)), (repeat, ref_s(repeat) + 40.0)]
    evidence = sections_evidence(pieces)
    assert curve_drift(evidence, 100.0) == pytest.approx(1.08, rel=0.01)
    fps = 100.0
    sections = tuple(
        Section(
            line.query_start_frame / fps,
            line.query_end_frame / fps,
            line.ref_start_frame / fps,
            line.ref_end_frame / fps,
            40,
        )
        for line in evidence.lines
    )
    assert tempo_drift(sections) is None


@pytest.mark.parametrize("layout", ["loop", "cut", "one line"])
def test_steady_hits_on_sections_are_no_drift(layout: str) -> None:
    """A steady copy (tempo 1.04) whose hits jitter by a frame or two: looped (the same music
    twice on parallel lines), cut (a jump forward in the reference), or on one line."""
    from audiodup.screening import curve_drift

    rng = np.random.default_rng(2)

    def ref_s(tq: np.ndarray, offset: float) -> np.ndarray:
        return 1.04 * tq + offset + rng.normal(0, 0.015, tq.size)

    a, b = np.sort(rng.uniform(0, 30, 90)), np.sort(rng.uniform(30, 60, 90))
    pieces = {
        "loop": [(a, ref_s(a, 0.0)), (b, ref_s(b, -25.0))],
        "cut": [(a, ref_s(a, 0.0)), (b, ref_s(b, 12.0))],
        "one line": [(np.concatenate([a, b]), ref_s(np.concatenate([a, b]), 3.0))],
    }[layout]
    assert curve_drift(sections_evidence(pieces), 100.0) is None


def test_too_few_hits_or_too_short_a_span_is_no_drift() -> None:
    from audiodup.screening import curve_drift

    rng = np.random.default_rng(3)
    rate = np.log(1.08) / 60
    few = np.sort(rng.uniform(0, 60, 30))
    short = np.sort(rng.uniform(0, 15, 200))
    for tq in (few, short):
        tr = (np.exp(rate * tq) - 1) / rate
        assert curve_drift(sections_evidence([(tq, tr)]), 100.0) is None
