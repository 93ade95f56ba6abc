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
