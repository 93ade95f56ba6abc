"""Tests for audiodup.explain and ``audiodup explain``: the matched-hash scatter with fitted
sections (slope = tempo ratio), the aligned chroma, PNG and SVG files."""

from __future__ import annotations

import io
import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from cli_runner import run_main
from conftest import reviewed_upload, weak_copy

from audiodup import Catalog
from audiodup.audio import load_audio
from audiodup.errors import AudiodupError, WorkNotFoundError
from audiodup.explain import _aligned_chroma, _mean_cosine, explain, explain_figure, render_explain
from audiodup.fingerprint import fingerprint_audio, fingerprint_hashes

UPLOADS = Path(__file__).resolve().parents[1] / "fixtures" / "audio" / "uploads"
CATALOG_DIR = UPLOADS.parent / "catalog"


def query_of(catalog: Catalog, name: str):
    return fingerprint_audio(
        load_audio(UPLOADS / name, catalog.settings), catalog.settings, query=True
    )


def figure_for(catalog: Catalog, name: str, work_id: int):
    query = query_of(catalog, name)
    hashed, chroma = catalog.work_evidence(query, work_id)
    return figure_of(catalog, query, work_id, hashed, chroma, upload_name=name), hashed


def figure_of(catalog: Catalog, query, work_id: int, hashed, chroma, **options):
    return explain_figure(
        query,
        catalog.fingerprint(work_id),
        hashed,
        chroma,
        frames_per_second=catalog.settings.frames_per_second,
        chroma_fps=catalog.settings.chroma_fps,
        **options,
    )


def test_scatter_lines_have_the_tempo_ratio_as_slope(
    catalog: Catalog, work_ids: dict[str, int]
) -> None:
    figure, hashed = figure_for(catalog, "stretch_0.80_work_01.ogg", work_ids["work_01"])
    ax_hash = figure.axes[0]
    points = ax_hash.collections[0].get_offsets()
    assert len(points) >= hashed.inliers >= 50  # every hit is drawn; repeats count once
    upload_s, reference_s = np.asarray(points).T
    assert np.polyfit(upload_s, reference_s, 1)[0] == pytest.approx(0.8, abs=0.01)
    section = ax_hash.lines[0]  # the first fitted section
    (x0, x1), (y0, y1) = section.get_xdata(), section.get_ydata()
    assert (y1 - y0) / (x1 - x0) == pytest.approx(0.8, abs=0.01)
    labels = [t.get_text() for t in ax_hash.texts]
    assert any("tempo x0.80" in t and "pitch +0.0 st" in t for t in labels), labels
    assert "tempo x0.80" in figure._suptitle.get_text()
    assert len(figure.axes[1].images) == len(figure.axes[2].images) == 1


def test_a_looped_upload_s_sections_are_numbered_and_their_tempos_listed(
    catalog: Catalog, work_ids: dict[str, int], tmp_path: Path
) -> None:
    """An upload playing 6 s of a work four times lines up on several parallel sections: each
    is numbered by its line, their tempos are in the legend, and no label overlaps another."""
    import soundfile as sf

    sr = catalog.settings.sample_rate_hz
    audio = load_audio(Path(catalog.work(work_ids["work_02"]).path), catalog.settings).samples
    upload = tmp_path / "looped.wav"
    sf.write(upload, np.tile(audio[5 * sr : 11 * sr], 4), sr)
    query = fingerprint_audio(load_audio(upload, catalog.settings), catalog.settings, query=True)
    hashed, chroma = catalog.work_evidence(query, work_ids["work_02"])
    assert hashed is not None and len(hashed.lines) >= 3
    figure = figure_of(catalog, query, work_ids["work_02"], hashed, chroma)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    ax_hash = figure.axes[0]
    numbers = [t for t in ax_hash.texts if t.get_text().isdigit()]
    assert sorted(int(t.get_text()) for t in numbers) == list(range(1, len(hashed.lines) + 1))
    boxes = [t.get_window_extent(renderer) for t in ax_hash.texts]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    legend = [t.get_text() for t in ax_hash.get_legend().get_texts()]
    assert any(t.startswith("fitted sections, tempo: 1 x1.0") for t in legend), legend


def test_pitch_shifted_chroma_lines_up_after_transposing_back(
    catalog: Catalog, work_ids: dict[str, int]
) -> None:
    query = query_of(catalog, "pitch_-3_work_03.ogg")
    reference = catalog.fingerprint(work_ids["work_03"])
    hashed, _ = catalog.work_evidence(query, work_ids["work_03"])
    assert hashed.pitch_shift_semitones == pytest.approx(-3.0, abs=0.25)
    fps = catalog.settings.chroma_fps
    main = hashed.lines[0]
    frames = catalog.settings.frames_per_second
    args = (
        hashed.tempo_ratio,
        main.query_start_frame / frames,
        main.ref_start_frame / frames,
        main.ref_end_frame / frames,
        fps,
    )
    upload, ref, times = _aligned_chroma(query, reference, args[0], -3.0, *args[1:])
    assert len(times) > 5 * fps and upload.shape == ref.shape
    assert _mean_cosine(upload, ref) > 0.7
    wrong, ref, _ = _aligned_chroma(query, reference, args[0], 0.0, *args[1:])
    assert _mean_cosine(wrong, ref) < _mean_cosine(upload, ref) - 0.3


def test_unrelated_upload_says_there_is_no_hash_evidence(
    catalog: Catalog, work_ids: dict[str, int]
) -> None:
    figure, hashed = figure_for(catalog, "unrelated_a.ogg", work_ids["work_02"])
    assert hashed is None
    assert "no verified hash matches" in figure._suptitle.get_text()


def test_explain_writes_png_and_svg(
    catalog: Catalog, work_ids: dict[str, int], tmp_path: Path
) -> None:
    png = explain(
        catalog, UPLOADS / "nightcore_work_03.ogg", work_ids["work_03"], tmp_path / "n.png"
    )
    image = matplotlib.image.imread(png)
    assert image.shape[0] > 300 and image.shape[1] > 800
    assert image[..., :3].std() > 0.05, "the picture is blank"
    svg = explain(
        catalog, UPLOADS / "nightcore_work_03.ogg", work_ids["work_03"], tmp_path / "n.svg"
    )
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert "http://www.w3.org" in text  # the SVG namespace; no other URL, no date
    assert "<dc:date>" not in text


def test_render_is_deterministic_png_bytes(catalog: Catalog, work_ids: dict[str, int]) -> None:
    query = query_of(catalog, "speed_1.15_work_05.ogg")
    first = render_explain(catalog, query, work_ids["work_05"], dpi=50)
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    assert render_explain(catalog, query, work_ids["work_05"], dpi=50) == first
    assert matplotlib.image.imread(io.BytesIO(first)).shape[1] == 600  # 12 in x 50 dpi


def test_explain_errors(catalog: Catalog, work_ids: dict[str, int], tmp_path: Path) -> None:
    upload = UPLOADS / "pitch_-3_work_03.ogg"
    with pytest.raises(WorkNotFoundError):
        explain(catalog, upload, 999, tmp_path / "x.png")
    with pytest.raises(AudiodupError, match=r"\.png or \.svg"):
        explain(catalog, upload, work_ids["work_03"], tmp_path / "x.jpg")


def test_explain_cli(
    catalog_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    with Catalog.open(catalog_copy, create=False) as opened:
        work_id = next(w.work_id for w in opened.works() if w.path.endswith("work_04.ogg"))
    upload = UPLOADS / "pitch_+2.5_work_04.ogg"
    out_file = tmp_path / "why.svg"
    code, out, err = run_main(
        ["explain", str(upload), str(work_id), "--db", str(catalog_copy), "--out", str(out_file)],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert out.strip() == str(out_file) and "<svg" in out_file.read_text()
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_main(
        ["explain", str(upload), str(work_id), "--db", str(catalog_copy)], monkeypatch, capsys
    )
    assert code == 0 and (tmp_path / f"explain-pitch_+2.5_work_04-{work_id}.png").exists()
    code, _, err = run_main(
        ["explain", str(upload), "999", "--db", str(catalog_copy)], monkeypatch, capsys
    )
    assert code == 2 and err.strip() == "error: no work 999 in the catalog"
    code, _, err = run_main(
        ["explain", "--db", str(catalog_copy), "--", str(upload), str(2**63)], monkeypatch, capsys
    )
    assert code == 2 and err.strip() == f"error: no work {2**63} in the catalog"
    code, _, err = run_main(
        ["explain", str(tmp_path / "nope.ogg"), str(work_id), "--db", str(catalog_copy)],
        monkeypatch,
        capsys,
    )
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: {tmp_path / 'nope.ogg'}: file not found")


def test_peak_coincidences_are_drawn_under_the_chroma_alignment(
    catalog: Catalog, work_ids: dict[str, int]
) -> None:
    """Without hash evidence, the picture still shows why the work was flagged: the upload peaks
    that land on the work's peaks under the alignment, far more than chance."""
    query = query_of(catalog, "speed_1.15_work_05.ogg")
    work_id = work_ids["work_05"]
    _, chroma = catalog.work_evidence(query, work_id)
    peaks = catalog.peak_evidence(query, work_id, None, chroma)
    assert peaks is not None and peaks.matched_peaks > 5 * peaks.chance_peaks
    figure = figure_of(catalog, query, work_id, None, chroma, peaks=peaks)
    dots = [c for c in figure.axes[0].collections if "coinciding peaks" in c.get_label()]
    assert len(dots) == 1
    assert f"from {peaks.matched_onsets} onsets" in dots[0].get_label()
    assert peaks.matched_onsets >= catalog.settings.peak_check_min_onsets
    upload_s, reference_s = np.asarray(dots[0].get_offsets()).T
    assert len(upload_s) == peaks.matched_peaks
    assert np.polyfit(upload_s, reference_s, 1)[0] == pytest.approx(1.15, abs=0.02)
    # with no hash line, the chroma panes follow the peak check's alignment
    assert f"{peaks.matched_peaks} coinciding peaks" in figure._suptitle.get_text()
    tempo = re.search(r"tempo x([0-9.]+)", figure._suptitle.get_text())
    assert tempo is not None and float(tempo.group(1)) == pytest.approx(1.15, abs=0.005)


def test_a_sampled_catalogs_picture_shows_every_hit_of_the_work(
    catalog: Catalog, work_ids: dict[str, int]
) -> None:
    """The picture's hash evidence is the one screening verified: in a catalog looked up whole,
    and in one whose look-ups are sampled (a hit budget that drops most keys), where screening
    verifies its candidates on all their hits and the picture did not (it drew the sample)."""
    import dataclasses

    from audiodup import screening
    from audiodup.settings import DEFAULT_SETTINGS

    sampled = dataclasses.replace(DEFAULT_SETTINGS, max_query_hits=300, whole_lookup_max_entries=0)
    work_id = work_ids["work_01"]
    query = query_of(catalog, "stretch_0.80_work_01.ogg")

    def screened(opened: Catalog, settings):
        found = screening.verified_candidates(query, opened.indexes(), settings, works=opened.store)
        return next(c.evidence for c in found.candidates if c.work_id == work_id)

    def counts(evidence):  # the tempo fitted from the hits in another order: the same to 1e-9
        tempo = round(evidence.tempo_ratio, 9)
        return evidence.votes, evidence.inliers, evidence.main_inliers, tempo

    whole, _ = catalog.work_evidence(query, work_id)
    assert counts(whole) == counts(screened(catalog, catalog.settings))
    with Catalog.open(catalog.root, create=False, settings=sampled) as budgeted:
        found = screening.hash_lookup(
            fingerprint_hashes(query, sampled, query=True), budgeted.indexes(), sampled
        )
        assert found.kept_share < 0.5
        sample = screening._verify(found.votes, work_id, sampled)
        shown, _ = budgeted.work_evidence(query, work_id)
        verified = screened(budgeted, sampled)
    assert sample is None or sample.votes < whole.votes  # what the picture drew before
    assert counts(shown) == counts(verified) == counts(whole)
    assert shown.tempo_ratio == pytest.approx(0.8, abs=0.01)


def test_a_copy_found_half_a_hop_in_is_drawn_from_there(
    catalog: Catalog, work_ids: dict[str, int], tmp_path: Path
) -> None:
    """20 s of work_05 under other music 1.4 times as loud: screening finds it on the look half
    a hop in (`tests/test_screening.py`), where 23 patterns line up against 10 as it is; the
    picture is drawn from that analysis, says so, and shows the hashes the verdict counted."""
    import soundfile as sf

    path = tmp_path / "weak.wav"
    sf.write(path, weak_copy(catalog.settings), catalog.settings.sample_rate_hz)
    verdict = catalog.screen(path)
    assert verdict.verdict == "duplicate" and verdict.matches[0].work_id == work_ids["work_05"]
    as_is, _ = catalog.work_evidence(query_of(catalog, path), work_ids["work_05"])
    assert as_is.main_inliers < verdict.matches[0].matched_hashes
    text = explain(catalog, path, work_ids["work_05"], tmp_path / "why.svg").read_text()
    assert "analysed from half a hop in" in text
    assert f"{verdict.matches[0].matched_hashes} matched hashes" in text


def test_a_short_excerpt_is_drawn_from_the_frame_phase_of_the_stored_frames(
    catalog: Catalog, work_ids: dict[str, int], tmp_path: Path
) -> None:
    """A 4-s excerpt that starts a quarter of a hop after a stored frame: of the frame phases
    screening looks at it in, the one three quarters of a hop in has the stored frames, and
    the picture is drawn from it, with more of the work's patterns than as it is."""
    import soundfile as sf

    s = catalog.settings
    rate = s.sample_rate_hz
    samples = load_audio(CATALOG_DIR / "work_02.ogg", s).samples
    start = int(20.0 * rate) // s.hop_length * s.hop_length + s.hop_length // 4
    path = tmp_path / "excerpt.wav"
    sf.write(path, samples[start : start + 4 * rate], rate)
    work = work_ids["work_02"]
    as_is, _ = catalog.work_evidence(fingerprint_audio(load_audio(path, s), s, query=True), work)
    text = explain(catalog, path, work, tmp_path / "why.svg").read_text()
    assert "excerpt.wav (analysed from three quarters of a hop in)" in text
    shown = int(re.search(r"(\d+) matched hashes", text).group(1))
    assert shown > as_is.main_inliers


def test_the_review_page_draws_a_copy_found_half_a_hop_in_from_there(
    pristine_catalog_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("fastapi")
    import soundfile as sf

    from audiodup.service import review
    from audiodup.settings import DEFAULT_SETTINGS

    drawn = []

    def recorded(catalog, query, work_id, **options):
        hashed, _ = catalog.work_evidence(query, work_id)
        drawn.append((options["upload_name"], hashed.main_inliers))
        return render_explain(catalog, query, work_id, **options)

    monkeypatch.setattr(review, "render_explain", recorded)
    path = tmp_path / "weak.wav"
    sf.write(path, weak_copy(DEFAULT_SETTINGS), DEFAULT_SETTINGS.sample_rate_hz)
    with reviewed_upload(pristine_catalog_dir, tmp_path, path, "weak.wav") as (client, upload):
        top = upload["screen"]["matches"][0]
        picture = client.get(
            f"/review/uploads/{upload['upload_id']}/explain.png",
            params={"work_id": top["work_id"]},
        )
        assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")
    assert drawn == [("weak.wav (analysed from half a hop in)", top["matched_hashes"])]
