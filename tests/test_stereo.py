"""A copy hidden in the stereo difference (left = other music + the copy, right = other music -
the copy), or in one channel under loud noise or other music in the other: decoded, singled out
by audiodup.stereo, screened, explained and shown."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import CATALOG_DIR, UPLOADS_DIR, reviewed_upload
from typer.testing import CliRunner

from audiodup import Catalog
from audiodup.audio import audio_from_samples, channel_audio, difference_audio, load_audio
from audiodup.cli import app
from audiodup.errors import AudioDecodeError
from audiodup.explain import explain
from audiodup.fingerprint import SignalPrints, UploadFingerprints
from audiodup.report_html import audio_snippet, rescan_html
from audiodup.rescan import load_report, run_rescan
from audiodup.rescan.screen import screen_work
from audiodup.results import Match, numbered_parts_of
from audiodup.schema import problems
from audiodup.screening import signal_multipliers, with_signals
from audiodup.settings import DEFAULT_SETTINGS
from audiodup.stereo import (
    band_log_energies,
    channels_apart,
    compare_stretches,
    difference_stands_apart,
    envelope_correlation,
    numbered_parts_apart,
    signal_audio,
)
from audiodup.synth import synthesize_work
from audiodup.verdict import decide

SR = 22050  # the fixtures' rate
PAIRS_OF_SIX = [(i, j) for i in range(1, 7) for j in range(i + 1, 7)]
ANALYSIS_HZ = DEFAULT_SETTINGS.sample_rate_hz


def _mono(path: Path) -> np.ndarray:
    samples, sr = sf.read(path, dtype="float32", always_2d=True)
    assert sr == SR
    return samples.mean(axis=1)


def _at_level_of(x: np.ndarray, reference: np.ndarray, gain: float = 1.0) -> np.ndarray:
    return gain * x * np.sqrt(np.mean(reference**2)) / np.sqrt(np.mean(x**2))


def _hidden(mix: np.ndarray, difference: np.ndarray) -> np.ndarray:
    """Stereo ``(frames, 2)`` whose mean is ``mix`` and half-difference ``difference``."""
    n = min(len(mix), len(difference))
    stereo = np.stack([mix[:n] + difference[:n], mix[:n] - difference[:n]], axis=1)
    return (0.9 * stereo / np.abs(stereo).max()).astype(np.float32)


def _part(prints: UploadFingerprints, signal: str) -> SignalPrints | None:
    """The part of ``prints`` screened as ``signal`` beside the mix, None when none is."""
    return next((part for part in prints.parts if part.signal == signal), None)


def _write(folder: Path, name: str, stereo: np.ndarray) -> Path:
    path = folder / name
    sf.write(path, stereo, SR)
    return path


@pytest.fixture(scope="module")
def music() -> dict[str, np.ndarray]:
    """The fixture works and never-indexed music (the unrelated uploads, a synthetic piece)."""
    tracks = {p.stem: _mono(p) for p in sorted(CATALOG_DIR.iterdir())}
    tracks["unrelated_a"] = _mono(UPLOADS_DIR / "unrelated_a.ogg")
    tracks["unrelated_b"] = _mono(UPLOADS_DIR / "unrelated_b.ogg")
    tracks["synthetic"] = synthesize_work(4242, 45.0, SR).astype(np.float32)
    return tracks


def _quote(music: dict[str, np.ndarray], n: int) -> np.ndarray:
    """``n`` samples of silence but for 2 s of a work from 10 s in: a quote below any
    duplicate."""
    quote = np.zeros(n, dtype=np.float32)
    quote[10 * SR : 12 * SR] = music["work_04"][10 * SR : 12 * SR]
    return quote


@pytest.fixture(scope="module")
def uploads(music, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("stereo")
    other, copy = music["unrelated_a"], music["work_02"]
    excerpt = _quote(music, len(other))
    return {
        # the copy is only in the difference: the mix is the unrelated upload
        "hidden": _write(folder, "hidden.wav", _hidden(other, _at_level_of(copy, other))),
        # the copy in the mix, unrelated music in the difference
        "copy_in_mix": _write(
            folder, "copy_in_mix.wav", _hidden(copy, _at_level_of(music["unrelated_b"], copy))
        ),
        # unrelated music in both: the chance case
        "unrelated": _write(
            folder, "unrelated.wav", _hidden(other, _at_level_of(music["synthetic"], other))
        ),
        # 2 s of a work in the difference: a quote below any duplicate
        "short_quote": _write(
            folder, "short_quote.wav", _hidden(other, _at_level_of(excerpt, other, 8.0))
        ),
        # an ordinary stereo mix: the same music in both channels, one of them brighter
        "ordinary": _write(
            folder, "ordinary.wav", np.stack([copy, 0.7 * copy], axis=1).astype(np.float32) * 0.8
        ),
    }


# -- decoding ------------------------------------------------------------------------------------


def test_decoding_keeps_the_difference_beside_the_mix(music, tmp_path) -> None:
    a, b = music["work_00"], _at_level_of(music["unrelated_a"], music["work_00"], 0.5)
    n = min(len(a), len(b))
    path = _write(tmp_path, "st.wav", np.stack([a[:n] + b[:n], a[:n] - b[:n]], 1) * 0.5)
    audio = load_audio(path)
    assert audio.difference is not None and len(audio.difference) == len(audio.samples)
    expected = load_audio(_write(tmp_path, "b.wav", b[:n] * 0.5)).samples
    assert np.corrcoef(audio.difference, expected)[0, 1] > 0.999
    mono = load_audio(_write(tmp_path, "mono.wav", a[:n] * 0.5))
    assert mono.difference is None
    # the mix is what it always was: the channel mean
    left, right = sf.read(path, dtype="float32")[0].T
    mean = load_audio(_write(tmp_path, "mean.wav", (left + right) / 2), DEFAULT_SETTINGS).samples
    np.testing.assert_allclose(audio.samples, mean, atol=1e-4)


def test_a_block_in_antiphase_hides_nothing_in_its_sum(music, tmp_path) -> None:
    """The mix of channels in antiphase is their difference (audio.antiphase_signs): what it
    leaves out is then their sum, and a copy there is the difference screened."""
    loud, copy = music["unrelated_a"], _at_level_of(music["work_02"], music["unrelated_a"], 0.4)
    n = min(len(loud), len(copy))
    stereo = np.stack([loud[:n] + copy[:n], -loud[:n] + copy[:n]], 1).astype(np.float32) * 0.4
    audio = load_audio(_write(tmp_path, "antiphase.wav", stereo))
    kept = load_audio(_write(tmp_path, "copy.wav", copy[:n] * 0.4)).samples
    assert np.corrcoef(audio.difference, kept)[0, 1] > 0.999


def test_more_than_two_channels_have_no_difference(music) -> None:
    x = music["work_00"][: 10 * SR]
    audio = audio_from_samples(np.stack([x, 0.5 * x, 0.2 * x], 1).astype(np.float32), SR)
    assert audio.difference is None
    with pytest.raises(AudioDecodeError, match="no stereo difference"):
        signal_audio(audio, "stereo_difference")


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_ffmpeg_s_streams_keep_their_difference_too(uploads, tmp_path) -> None:
    encoded = tmp_path / "hidden.mka"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(uploads["hidden"]), "-c:a", "pcm_f32le", str(encoded)],
        check=True,
    )
    direct, through_ffmpeg = load_audio(uploads["hidden"]), load_audio(encoded)
    assert through_ffmpeg.difference is not None
    n = min(len(direct.difference), len(through_ffmpeg.difference))
    assert np.corrcoef(direct.difference[:n], through_ffmpeg.difference[:n])[0, 1] > 0.99


# -- the gate ------------------------------------------------------------------------------------


def test_envelope_correlation_is_one_for_the_same_energies_and_low_for_others() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(8, 300))
    assert envelope_correlation(a, 2 * a + 1) == pytest.approx(1.0)
    assert abs(envelope_correlation(a, rng.normal(size=(8, 300)))) < 0.2
    assert envelope_correlation(np.ones((8, 300)), a) == 1.0  # nothing to compare


def test_a_difference_of_its_own_music_stands_apart_and_an_ordinary_one_does_not(uploads):
    def stands_apart(name: str) -> bool:
        audio = load_audio(uploads[name])
        return difference_stands_apart(
            audio.samples, audio.difference, ANALYSIS_HZ, DEFAULT_SETTINGS
        )

    assert stands_apart("hidden") and stands_apart("unrelated")
    assert not stands_apart("ordinary")


def test_a_quiet_difference_is_not_screened(music) -> None:
    mix, other = music["unrelated_a"], music["work_02"]
    quiet = audio_from_samples(_hidden(mix, _at_level_of(other, mix, 0.05)), SR)
    assert not difference_stands_apart(
        quiet.samples, quiet.difference, ANALYSIS_HZ, DEFAULT_SETTINGS
    )
    stretches = compare_stretches(quiet.samples, quiet.difference, ANALYSIS_HZ, 10.0)
    assert [s.start_s for s in stretches[:3]] == pytest.approx([0.0, 5.0, 10.0], abs=0.01)
    assert stretches[-1].start_s == pytest.approx(quiet.duration_s - 10.0, abs=0.1)
    assert all(s.level_ratio < 0.1 for s in stretches)


def test_the_modes_decide_what_is_fingerprinted(uploads) -> None:
    audio = load_audio(uploads["ordinary"])
    for mode, screened in (("auto", False), ("always", True), ("never", False)):
        prints = UploadFingerprints(audio, replace(DEFAULT_SETTINGS, stereo_difference=mode))
        assert (_part(prints, "stereo_difference") is not None) is screened, mode
        assert prints.audio.difference is None  # not carried on, to a worker's caller say
    hidden = load_audio(uploads["hidden"])
    never = replace(DEFAULT_SETTINGS, stereo_difference="never")
    assert _part(UploadFingerprints(hidden), "stereo_difference") is not None
    assert _part(UploadFingerprints(hidden, never), "stereo_difference") is None


# -- screening -----------------------------------------------------------------------------------


def _assert_a_whole_copy_of(verdict, work_id: str, signal: str) -> None:
    """A ``duplicate`` of ``work_id`` heard in ``signal``, unaltered and longer than 30 s."""
    assert verdict.verdict == "duplicate"
    top = verdict.matches[0]
    assert top.work_id == work_id and top.signal == signal
    assert top.tempo_ratio == pytest.approx(1.0, abs=0.01)
    assert abs(top.pitch_shift_semitones) < 0.1
    assert top.query_end_s - top.query_start_s > 30


def test_a_copy_in_the_difference_is_a_duplicate_of_its_work(catalog, work_ids, uploads) -> None:
    verdict = catalog.screen(uploads["hidden"])
    _assert_a_whole_copy_of(verdict, work_ids["work_02"], "stereo_difference")


def test_only_the_stretch_that_stands_apart_is_screened_in_upload_time(
    catalog, work_ids, music, tmp_path
) -> None:
    """A copy hidden in 30 s of a 2-minute upload: only the windows around it are screened
    (not the whole difference), and the match says where in the upload it is."""
    other = np.concatenate([music["unrelated_a"], music["unrelated_b"], music["synthetic"]])
    copy = np.zeros_like(other)
    region = slice(60 * SR, 90 * SR)
    copy[region] = _at_level_of(music["work_02"][5 * SR : 35 * SR], other[region])
    path = _write(tmp_path, "long.wav", _hidden(other, copy))
    prints = UploadFingerprints(load_audio(path))
    difference = _part(prints, "stereo_difference")
    assert difference is not None
    assert 30.0 <= difference.start_s <= 60.0
    assert difference.prints.audio.duration_s <= prints.audio.duration_s - 30.0
    verdict = catalog.screen(path)
    top = verdict.matches[0]
    assert verdict.verdict == "duplicate" and top.work_id == work_ids["work_02"]
    assert top.signal == "stereo_difference"
    assert top.query_start_s == pytest.approx(60.0, abs=1.5)
    assert top.ref_start_s == pytest.approx(5.0, abs=1.5)
    assert top.query_end_s == pytest.approx(90.0, abs=1.5)


def test_screening_the_difference_doubles_the_chance_of_the_mix(catalog, work_ids, uploads):
    both = catalog.screen(uploads["copy_in_mix"])
    never = replace(catalog.settings, stereo_difference="never")
    mix_only = Catalog(catalog.store, never).screen(uploads["copy_in_mix"])
    assert both.verdict == mix_only.verdict == "duplicate"
    assert both.matches[0].work_id == mix_only.matches[0].work_id == work_ids["work_02"]
    assert both.matches[0].signal == "mix"
    assert both.matches[0].false_match_probability == pytest.approx(
        2 * mix_only.matches[0].false_match_probability
    )


@pytest.mark.parametrize("name", ["unrelated", "short_quote", "ordinary"])
def test_chance_and_quotes_in_the_difference_stay_below_duplicate(catalog, uploads, name):
    verdict = replace(catalog.settings, stereo_difference="always")
    screened = Catalog(catalog.store, verdict).screen(uploads[name])
    if name == "ordinary":  # the copy itself, in the mix
        assert screened.verdict == "duplicate" and screened.matches[0].signal == "mix"
    else:
        assert screened.verdict != "duplicate", screened.matches


def test_never_screening_the_difference_misses_the_copy(catalog, uploads) -> None:
    never = replace(catalog.settings, stereo_difference="never")
    assert Catalog(catalog.store, never).screen(uploads["hidden"]).verdict == "clean"


def test_cli_json_names_the_signal_and_validates(pristine_catalog_dir, uploads) -> None:
    runner = CliRunner()
    db = str(pristine_catalog_dir)
    found = runner.invoke(app, ["screen", "--db", db, "--json", str(uploads["hidden"])])
    assert found.exit_code == 1, found.output
    document = json.loads(found.stdout)
    assert problems(document, "screen") == []
    assert document["results"][0]["matches"][0]["signal"] == "stereo_difference"
    table = runner.invoke(app, ["screen", "--db", db, str(uploads["hidden"])])
    assert "stereo difference" in table.stdout
    never = ["screen", "--db", db, "--stereo-difference", "never", str(uploads["hidden"])]
    assert runner.invoke(app, never).exit_code == 0


def test_rescan_finds_a_catalog_work_hiding_another_in_its_difference(
    catalog_copy, uploads, tmp_path
):
    with Catalog.open(catalog_copy, create=False) as catalog:
        (added,) = catalog.add_paths([uploads["hidden"]])
        original = {Path(w.path).stem: w.work_id for w in catalog.works()}["work_02"]
        scan = screen_work(catalog, added.work_id)
        assert scan.query_source == "file"
        found = {m.work_id: m for m in scan.matches}
        assert found[original].signal == "stereo_difference"
        assert found[original].false_match_probability < 1e-6
        run_rescan(catalog, workers=1)
        report = load_report(catalog)
        page = rescan_html(report, catalog)
    (pair,) = [p for p in report.pairs if set(p.work_ids) == {added.work_id, original}]
    assert pair.query_work_id == added.work_id and pair.evidence.signal == "stereo_difference"
    said = [a.description for c in report.clusters for a in c.alterations]
    said += [caveat for k in report.links for caveat in k.caveats]
    assert any(f"stereo difference of work {added.work_id}" in text for text in said), said
    assert f"Found in the stereo difference of work {added.work_id}." in page
    assert "<img" in page  # the picture drawn from the difference, whichever way shown


def test_a_copy_with_opposite_dc_offsets_is_heard_not_silent(catalog, work_ids, music, tmp_path):
    """left = copy + 0.3, right = copy - 0.3 sounds like the copy (DC is inaudible): the
    offsets must not pass for channels in antiphase, which would leave the mix only the
    offset, refused as silent."""
    copy = 0.5 * music["work_02"] / np.abs(music["work_02"]).max()
    for name, (left, right) in {
        "in_the_mix": (copy + 0.3, copy - 0.3),
        "in_the_difference": (copy + 0.3, -copy + 0.3),
    }.items():
        path = tmp_path / f"{name}.wav"
        sf.write(path, np.stack([left, right], 1).astype(np.float32), SR, subtype="FLOAT")
        verdict = catalog.screen(path)
        assert verdict.error is None, verdict.error
        assert verdict.verdict == "duplicate" and verdict.matches[0].work_id == work_ids["work_02"]


def test_an_inaudible_tone_in_the_mix_does_not_quiet_the_difference(music) -> None:
    """A 12-Hz tone ten times louder than the music in both channels would make the
    difference look quiet by its RMS (0.07 of the mix's); the level is measured from 60 Hz up."""
    other, copy = music["unrelated_a"], _at_level_of(music["work_02"], music["unrelated_a"], 0.5)
    n = min(len(other), len(copy))
    tone = 10 * np.sqrt(np.mean(other**2)) * np.sin(2 * np.pi * 12 * np.arange(n) / SR)
    audio = audio_from_samples(_hidden(other[:n] + tone, copy[:n]), SR)
    assert difference_stands_apart(audio.samples, audio.difference, ANALYSIS_HZ, DEFAULT_SETTINGS)


def test_a_match_in_a_stretch_covers_its_share_of_the_whole_upload(music, catalog, tmp_path):
    other = np.concatenate([music["unrelated_a"], music["unrelated_b"], music["synthetic"]])
    copy = np.zeros_like(other)
    region = slice(60 * SR, 90 * SR)
    copy[region] = _at_level_of(music["work_02"][5 * SR : 35 * SR], other[region])
    path = _write(tmp_path, "long.wav", _hidden(other, copy))
    top = catalog.screen(path).matches[0]
    assert top.signal == "stereo_difference"
    assert top.coverage == pytest.approx(top.coverage_s / (len(other) / SR), abs=0.01)


def test_a_duplicate_from_the_mix_is_kept_over_a_surer_match_that_decides_less() -> None:
    """As the looks keep their first duplicate, the merge of the two signals keeps a mix
    duplicate over a more certain difference match too short to be one."""
    base = dict(work_id=1, path="w.ogg", title=None, relation="same_recording",
                tempo_ratio=1.0, pitch_shift_semitones=0.0, ref_start_s=0.0, ref_end_s=30.0,
                matched_hashes=40, chroma_similarity=None)  # fmt: skip
    mix = Match(score=20.0, false_match_probability=1e-20, query_start_s=0.0,
                query_end_s=30.0, coverage=1.0, coverage_s=30.0, **base)  # fmt: skip
    short = replace(mix, false_match_probability=1e-40, score=40.0, query_end_s=2.0,
                    coverage=0.07, coverage_s=2.0)  # fmt: skip
    (kept,) = with_signals(
        {"mix": [mix], "stereo_difference": [short]},
        {"mix": 2.0, "stereo_difference": 2.0},
        DEFAULT_SETTINGS,
    )
    assert kept.signal == "mix" and kept.false_match_probability == pytest.approx(2e-20)
    assert decide([kept], DEFAULT_SETTINGS) == "duplicate"


def test_explain_looks_at_the_difference_the_gate_passes_over(catalog, work_ids, music, tmp_path):
    """A copy too quiet for the gate, found by ``--stereo-difference always``: explain still
    draws it from the difference."""
    other = music["unrelated_a"]
    path = _write(
        tmp_path, "quiet.wav", _hidden(other, _at_level_of(music["work_02"], other, 0.05))
    )
    always = replace(catalog.settings, stereo_difference="always")
    # the gate stays shut
    assert _part(UploadFingerprints(load_audio(path)), "stereo_difference") is None
    verdict = Catalog(catalog.store, always).screen(path)
    assert verdict.verdict == "duplicate" and verdict.matches[0].signal == "stereo_difference"
    picture = explain(catalog, path, work_ids["work_02"], tmp_path / "why.svg")
    assert "its stereo difference" in picture.read_text()


# -- explaining ----------------------------------------------------------------------------------


def test_explain_and_the_report_take_the_difference(catalog, work_ids, uploads, tmp_path):
    picture = explain(catalog, uploads["hidden"], work_ids["work_02"], tmp_path / "why.svg")
    assert "its stereo difference" in picture.read_text()
    audio = load_audio(uploads["hidden"])
    assert signal_audio(audio, "mix") is audio
    difference = difference_audio(audio)
    assert difference is not None and signal_audio(audio, "stereo_difference").sha256 == (
        difference.sha256
    )
    mix_clip = audio_snippet(uploads["hidden"], 5.0, 4.0)
    difference_clip = audio_snippet(uploads["hidden"], 5.0, 4.0, signal="stereo_difference")
    assert mix_clip is not None and difference_clip is not None and mix_clip != difference_clip
    report = tmp_path / "report.html"
    runner = CliRunner()
    db = str(catalog.root)
    result = runner.invoke(
        app, ["screen", "--db", db, "--out", str(report), str(uploads["hidden"])]
    )
    assert result.exit_code == 1, result.output
    page = report.read_text()
    assert "recording in the stereo difference" in page
    assert "upload (stereo difference)" in page


def test_the_review_page_plays_and_draws_the_difference(pristine_catalog_dir, uploads, tmp_path):
    pytest.importorskip("fastapi")
    hidden = uploads["hidden"]
    with reviewed_upload(pristine_catalog_dir, tmp_path, hidden, "hidden.wav") as (client, upload):
        top = upload["screen"]["matches"][0]
        assert top["signal"] == "stereo_difference"
        upload_id, work_id = upload["upload_id"], top["work_id"]
        page = client.get(f"/review/uploads/{upload_id}").text
        assert "same recording in the stereo difference" in page
        picture = client.get(
            f"/review/uploads/{upload_id}/explain.png", params={"work_id": work_id}
        )
        assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")
        heard = {}
        for side in ("reference", "upload"):
            wav = client.get(
                f"/review/uploads/{upload_id}/listen/{side}.wav", params={"work_id": work_id}
            )
            assert wav.status_code == 200
            heard[side], rate = sf.read(io.BytesIO(wav.content), dtype="float32")
    n = min(len(heard["upload"]), len(heard["reference"]))
    # the upload's excerpt is the copy the difference holds, not the mix's unrelated music:
    # their band energies rise and fall together
    upload, reference = (band_log_energies(heard[k][:n], rate) for k in ("upload", "reference"))
    assert envelope_correlation(upload, reference) > 0.8


# -- one channel ---------------------------------------------------------------------------------


def _one_channel(copy: np.ndarray, other: np.ndarray, louder: float, left: bool = True):
    """Stereo with ``copy`` in one channel and ``other`` (looped to its length) ``louder``
    times its RMS in the other; peak 0.9."""
    other = _at_level_of(np.resize(other, len(copy)), copy, louder)
    stereo = np.stack([copy, other] if left else [other, copy], axis=1)
    return (0.9 * stereo / np.abs(stereo).max()).astype(np.float32)


def _noise(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


@pytest.fixture(scope="module")
def one_channel(music, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("channels")
    copy, other = music["work_02"], music["unrelated_a"]
    quote = _quote(music, len(other))
    made = {
        # the copy in the left ear, white noise 5x (14 dB) louder in the right: the mix and the
        # difference both hear mostly noise
        "left_copy": _one_channel(copy, _noise(len(copy)), 5.0),
        # the copy in the right ear, other music 3x louder in the left
        "right_copy": _one_channel(copy, music["unrelated_b"], 3.0, left=False),
        # chance cases: never-indexed music under noise, two never-indexed recordings apart,
        # 2 s of a work in an otherwise silent channel under noise
        "unrelated_under_noise": _one_channel(other, _noise(len(other), 1), 5.0),
        "two_unrelated": _one_channel(other, music["synthetic"], 1.0),
        "short_quote": _one_channel(quote, _noise(len(quote), 2), 5.0),
    }
    return {name: _write(folder, f"{name}.wav", stereo) for name, stereo in made.items()}


def _apart(path: Path) -> tuple[float, float] | None:
    audio = load_audio(path)
    return channels_apart(audio.samples, audio.difference, ANALYSIS_HZ, DEFAULT_SETTINGS)


def test_channels_that_do_not_follow_each_other_are_screened_alone(uploads, one_channel):
    for name in ("ordinary", "hidden", "copy_in_mix", "unrelated"):
        assert _apart(uploads[name]) is None, name
    for name in ("left_copy", "right_copy", "two_unrelated"):
        assert _apart(one_channel[name]) == pytest.approx((0.0, 40.0), abs=0.1), name
    prints = UploadFingerprints(load_audio(one_channel["left_copy"]))
    assert list(prints.parts.signals) == ["left_channel", "right_channel"]
    never = replace(DEFAULT_SETTINGS, stereo_channels="never")
    assert len(UploadFingerprints(load_audio(one_channel["left_copy"]), never).parts) == 0
    always = replace(DEFAULT_SETTINGS, stereo_channels="always")
    ordinary = UploadFingerprints(load_audio(uploads["ordinary"]), always)
    assert list(ordinary.parts.signals) == ["left_channel", "right_channel"]


def test_each_channel_is_heard_alone_and_a_silent_one_is_not(music, tmp_path) -> None:
    a, b = music["work_00"], music["unrelated_a"]
    path = _write(tmp_path, "two.wav", np.stack([a, 0.5 * b], axis=1).astype(np.float32) * 0.8)
    audio = load_audio(path)
    for side, alone in (("left", a * 0.8), ("right", 0.4 * b)):
        expected = load_audio(_write(tmp_path, f"{side}.wav", alone.astype(np.float32))).samples
        heard = channel_audio(audio, side)
        assert np.corrcoef(heard.samples, expected)[0, 1] > 0.999, side
        assert signal_audio(audio, f"{side}_channel").sha256 == heard.sha256
    silent = np.stack([a, np.zeros_like(a)], axis=1).astype(np.float32) * 0.8
    half = load_audio(_write(tmp_path, "half.wav", silent))
    assert channel_audio(half, "right") is None and channel_audio(half, "left") is not None
    with pytest.raises(AudioDecodeError, match="no right channel of its own"):
        signal_audio(half, "right_channel")


@pytest.mark.parametrize(
    "name, signal", [("left_copy", "left_channel"), ("right_copy", "right_channel")]
)
def test_a_copy_in_one_channel_is_a_duplicate_of_its_work(
    catalog, work_ids, one_channel, name, signal
):
    _assert_a_whole_copy_of(catalog.screen(one_channel[name]), work_ids["work_02"], signal)
    never = replace(catalog.settings, stereo_channels="never")
    assert Catalog(catalog.store, never).screen(one_channel[name]).verdict != "duplicate"


@pytest.mark.parametrize("name", ["unrelated_under_noise", "two_unrelated", "short_quote"])
def test_chance_and_quotes_in_one_channel_stay_below_duplicate(catalog, one_channel, name):
    always = replace(catalog.settings, stereo_channels="always", stereo_difference="always")
    screened = Catalog(catalog.store, always).screen(one_channel[name])
    assert screened.error is None and screened.verdict != "duplicate", screened.matches


def _assert_the_mix_pays(catalog, settings, upload: Path, work_id: str, factor: int) -> None:
    """``upload`` screened with ``settings`` is the ``duplicate`` of ``work_id`` that the mix
    alone finds, in the mix, at ``factor`` times the mix alone's probability."""
    found = Catalog(catalog.store, settings).screen(upload)
    mix_only = Catalog(catalog.store, catalog.settings.mix_only()).screen(upload)
    assert found.verdict == mix_only.verdict == "duplicate"
    assert found.matches[0].work_id == mix_only.matches[0].work_id == work_id
    assert found.matches[0].signal == "mix"
    assert found.matches[0].false_match_probability == pytest.approx(
        factor * mix_only.matches[0].false_match_probability
    )


def test_screening_both_channels_triples_the_chance_of_the_mix(catalog, work_ids, uploads):
    channels = replace(catalog.settings, stereo_difference="never", stereo_channels="always")
    _assert_the_mix_pays(catalog, channels, uploads["ordinary"], work_ids["work_02"], 3)


def test_cli_names_the_channel_and_can_leave_the_channels_out(pristine_catalog_dir, one_channel):
    runner = CliRunner()
    db, path = str(pristine_catalog_dir), str(one_channel["left_copy"])
    found = runner.invoke(app, ["screen", "--db", db, "--json", path])
    assert found.exit_code == 1, found.output
    document = json.loads(found.stdout)
    assert problems(document, "screen") == []
    assert document["results"][0]["matches"][0]["signal"] == "left_channel"
    assert (
        "recording in the left channel" in runner.invoke(app, ["screen", "--db", db, path]).stdout
    )
    never = runner.invoke(app, ["screen", "--db", db, "--stereo-channels", "never", path])
    assert never.exit_code != 1, never.output


def test_explain_and_the_report_take_the_channel(catalog, work_ids, one_channel, uploads, tmp_path):
    path = one_channel["left_copy"]
    picture = explain(catalog, path, work_ids["work_02"], tmp_path / "why.svg")
    assert "its left channel" in picture.read_text()
    # an ordinary recording's channels are its mix panned: the picture is of the mix
    ordinary = explain(catalog, uploads["ordinary"], work_ids["work_02"], tmp_path / "o.svg")
    assert "channel" not in ordinary.read_text()
    left_clip = audio_snippet(path, 5.0, 4.0, signal="left_channel")
    right_clip = audio_snippet(path, 5.0, 4.0, signal="right_channel")
    assert left_clip is not None and right_clip is not None and left_clip != right_clip
    report = tmp_path / "report.html"
    result = CliRunner().invoke(
        app, ["screen", "--db", str(catalog.root), "--out", str(report), str(path)]
    )
    assert result.exit_code == 1, result.output
    page = report.read_text()
    assert "recording in the left channel" in page and "upload (left channel)" in page


def _rescan_finds_the_copy_in(catalog_copy: Path, copy: Path, signal: str, where: str) -> None:
    """Rescan after ``copy`` (of work_02, heard in ``signal``) joins the catalog: the pair names
    it, and the report says the copy is ``where`` of the added work."""
    with Catalog.open(catalog_copy, create=False) as catalog:
        (added,) = catalog.add_paths([copy])
        original = {Path(w.path).stem: w.work_id for w in catalog.works()}["work_02"]
        run_rescan(catalog, workers=1)
        report = load_report(catalog)
    (pair,) = [p for p in report.pairs if set(p.work_ids) == {added.work_id, original}]
    assert pair.query_work_id == added.work_id and pair.evidence.signal == signal
    said = [a.description for c in report.clusters for a in c.alterations]
    said += [caveat for k in report.links for caveat in k.caveats]
    assert any(f"{where} of work {added.work_id}" in text for text in said), said


def test_rescan_finds_a_catalog_work_holding_another_in_one_channel(catalog_copy, one_channel):
    copy = one_channel["right_copy"]
    _rescan_finds_the_copy_in(catalog_copy, copy, "right_channel", "in the right channel")


# -- more than two channels ----------------------------------------------------------------------


def _layout(tracks: list[np.ndarray]) -> np.ndarray:
    """``(frames, channels)`` of ``tracks`` (cut to the shortest), peak 0.9."""
    n = min(len(t) for t in tracks)
    stacked = np.stack([t[:n] for t in tracks], axis=1)
    return (0.9 * stacked / np.abs(stacked).max()).astype(np.float32)


@pytest.fixture(scope="module")
def multichannel(music, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("multichannel")
    copy, n = music["work_02"], len(music["work_02"])

    def other(name: str, gain: float = 1.0) -> np.ndarray:
        return _at_level_of(np.resize(music[name], n), copy, gain)

    noise = [_at_level_of(_noise(n, seed), copy, 3.0) for seed in range(3)]
    quote = _quote(music, n)
    made = {
        # 5.1: the copy in the centre (channel 3), never-indexed music and noise in the other
        # five, which drown it in the mix
        "centre_copy": _layout(
            [
                other("unrelated_a"),
                other("unrelated_b"),
                copy,
                noise[0],
                other("synthetic"),
                noise[1],
            ]
        ),
        # quad: the copy in channel 4 under white noise 3x louder in the other three
        "quad_copy": _layout([*noise, copy]),
        # ten channels, the copy in the last under white noise in the other nine
        "tenth_copy": _layout([*noise, *noise, *noise, copy]),
        # chance cases: never-indexed music in every channel; 2 s of a work in channel 3
        "unrelated": _layout(
            [other("unrelated_a"), other("unrelated_b"), other("synthetic"), noise[0], noise[1]]
        ),
        "short_quote": _layout([other("unrelated_a"), noise[0], 8 * quote, noise[1], noise[2]]),
        # the copy in antiphase between channels 1 and 2 of a 5.1 file, never-indexed music in
        # phase in both and in the others: the mix cancels it
        "pair_copy": _layout(
            [
                other("unrelated_a") + copy,
                other("unrelated_a") - copy,
                other("unrelated_a"),
                other("unrelated_b", 0.3),
                other("unrelated_a"),
                other("unrelated_a"),
            ]
        ),
        # the copy in phase in channels 1 and 2, never-indexed music 6 dB louder in antiphase
        # between them: the mix inverts channel 2 (they anticorrelate) and the copy cancels
        "pair_sum_copy": _layout(
            [
                copy + other("unrelated_a", 2.0),
                copy - other("unrelated_a", 2.0),
                other("synthetic", 0.3),
            ]
        ),
        # an ordinary upmix: the work in every channel, at other levels
        "upmix": _layout([copy, 0.8 * copy, 0.6 * copy, 0.3 * copy, 0.4 * copy, 0.5 * copy]),
    }
    return {name: _write(folder, f"{name}.wav", samples) for name, samples in made.items()}


def test_decoding_keeps_each_channel_of_a_multichannel_file(music, multichannel, tmp_path):
    audio = load_audio(multichannel["centre_copy"])
    assert audio.difference is None and audio.channels is not None
    assert audio.channels.shape == (len(audio.samples), 6)
    channels = sf.read(multichannel["centre_copy"], dtype="float32")[0]
    for index in (2, 5):
        alone = load_audio(_write(tmp_path, f"{index}.wav", channels[:, index])).samples
        heard = signal_audio(audio, f"channel_{index + 1}")
        assert np.corrcoef(heard.samples, alone)[0, 1] > 0.999, index
    # the mix is what it always was: the channel mean
    mean = load_audio(_write(tmp_path, "mean.wav", channels.mean(axis=1))).samples
    np.testing.assert_allclose(audio.samples, mean, atol=1e-4)
    with pytest.raises(AudioDecodeError, match="no channel 7 of its own"):
        signal_audio(audio, "channel_7")
    difference = signal_audio(audio, "difference_3_6").samples
    alone = load_audio(_write(tmp_path, "d.wav", (channels[:, 2] - channels[:, 5]) / 2)).samples
    assert np.corrcoef(difference, alone)[0, 1] > 0.999
    # a file of more than 8 channels keeps them too, but has its channels alone screened
    nine = load_audio(_write(tmp_path, "nine.wav", np.repeat(channels[:, :1], 9, axis=1)))
    assert nine.channels is not None and nine.channels.shape[1] == 9
    assert len(numbered_parts_of(8)) == 8 + 28 and len(numbered_parts_of(9)) == 9 + 28


def test_channels_beyond_7_1_s_budget_are_kept_as_far_as_it_goes(music, tmp_path) -> None:
    """A file's kept channels hold at most what 7.1 holds over the duration cap: a file of more
    channels keeps them as far as that, and its mix is decoded on."""
    short = replace(DEFAULT_SETTINGS, max_duration_s=30.0)  # channels of 8 x 30 s
    x = music["work_00"][: 12 * SR : 2]  # 12 s at the analysis rate
    paths = {}
    for count in (8, 24):
        paths[count] = tmp_path / f"{count}.wav"
        sf.write(paths[count], np.tile(x[:, None], (1, count)) * 0.5, ANALYSIS_HZ)
    many = load_audio(paths[24], short)
    assert not many.truncated and many.duration_s == pytest.approx(12.0, abs=0.01)
    assert many.channels.shape == (10 * ANALYSIS_HZ, 24)
    eight = load_audio(paths[8], short)
    assert eight.channels.shape == (len(eight.samples), 8)
    mix_only = load_audio(paths[24], short.mix_only())
    assert mix_only.channels is None
    np.testing.assert_array_equal(mix_only.samples, many.samples)


def _chain(tmp_path: Path, name: str, *links: np.ndarray) -> Path:
    """A chained Ogg Vorbis file of ``links`` (``(frames, channels)`` at :data:`SR`)."""
    encoded = []
    for samples in links:
        link = io.BytesIO()
        sf.write(link, samples, SR, format="OGG", subtype="VORBIS")
        encoded.append(link.getvalue())
    path = tmp_path / name
    path.write_bytes(b"".join(encoded))
    return path


def test_a_stereo_link_keeps_its_parts_beside_a_link_of_more_channels(
    catalog, work_ids, music, tmp_path
):
    """A chain of a stereo link (the copy in its difference) and a 3-channel link of noise:
    the stereo difference is screened as in a stereo file (a review: it was left out)."""
    other, copy = music["unrelated_a"], _at_level_of(music["work_02"], music["unrelated_a"])
    noise = _layout([_noise(2 * SR, seed) for seed in range(3)])
    for order, links in (
        ("after", (noise, _hidden(other, copy))),
        ("before", (_hidden(other, copy), noise)),
    ):
        verdict = catalog.screen(_chain(tmp_path, f"{order}.ogg", *links))
        assert verdict.verdict == "duplicate", order
        top = verdict.matches[0]
        assert top.work_id == work_ids["work_02"] and top.signal == "stereo_difference", order


def test_a_chain_of_layouts_keeps_each_part_in_its_place(music, tmp_path) -> None:
    """A chained Ogg file of a stereo link and a 5.1 link: the channels are zeros under the
    stereo link, the difference zeros under the 5.1 one."""
    stereo = _layout([music["unrelated_a"][: 10 * SR], music["unrelated_b"][: 10 * SR]])
    six = _layout([music["unrelated_a"]] * 2 + [music["work_02"]] + [music["unrelated_b"]] * 3)
    audio = load_audio(_chain(tmp_path, "chain.ogg", stereo, six))
    split = 10 * ANALYSIS_HZ
    assert audio.channels is not None and audio.difference is not None
    assert audio.channels.shape[1] == 6 and len(audio.channels) == len(audio.samples)
    # constant there (less their mean over the file)
    assert np.ptp(audio.channels[: split - 100], axis=0).max() < 1e-6
    assert np.ptp(audio.difference[split + 100 :]) < 1e-6
    assert np.abs(audio.channels[split + 100 :, 2]).max() > 0.1


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_ffmpeg_s_streams_keep_their_channels_too(multichannel, tmp_path) -> None:
    encoded = tmp_path / "centre_copy.mka"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(multichannel["centre_copy"])]
        + ["-c:a", "pcm_f32le", str(encoded)],
        check=True,
    )
    direct, through_ffmpeg = load_audio(multichannel["centre_copy"]), load_audio(encoded)
    assert through_ffmpeg.channels is not None and through_ffmpeg.channels.shape[1] == 6
    n = min(len(direct.channels), len(through_ffmpeg.channels))
    for index in range(6):
        a, b = direct.channels[:n, index], through_ffmpeg.channels[:n, index]
        assert np.corrcoef(a, b)[0, 1] > 0.99, index
    # the kept channels' budget holds through ffmpeg too: 24 channels of 12 s keep 10 s each
    many = tmp_path / "24.wav"
    sf.write(many, np.tile(_noise(12 * ANALYSIS_HZ)[:, None], (1, 24)) * 0.1, ANALYSIS_HZ)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(many), "-c:a", "pcm_f32le", str(tmp_path / "24.mka")],
        check=True,
    )
    short = replace(DEFAULT_SETTINGS, max_duration_s=30.0)
    cut = load_audio(tmp_path / "24.mka", short)
    assert not cut.truncated and cut.duration_s == pytest.approx(12.0, abs=0.01)
    assert cut.channels.shape == (10 * ANALYSIS_HZ, 24)


def _numbered_apart(path: Path) -> dict[str, tuple[float, float] | None]:
    audio = load_audio(path)
    return numbered_parts_apart(audio.channels, ANALYSIS_HZ, DEFAULT_SETTINGS)


def test_a_part_that_does_not_follow_the_others_is_screened_alone(multichannel) -> None:
    """A channel apart from the others' sum, a difference of two apart from their mean."""
    upmix = _numbered_apart(multichannel["upmix"])
    assert len(upmix) == 6 + 15 and set(upmix.values()) == {None}
    assert _numbered_apart(multichannel["centre_copy"])["channel_3"] == pytest.approx(
        (0.0, 40.0), abs=0.1
    )
    assert _numbered_apart(multichannel["quad_copy"])["channel_4"] == pytest.approx(
        (0.0, 40.0), abs=0.1
    )
    pair = _numbered_apart(multichannel["pair_copy"])
    assert pair["difference_1_2"] == pytest.approx((0.0, 40.0), abs=0.1)
    prints = UploadFingerprints(load_audio(multichannel["centre_copy"]))
    assert "channel_3" in list(prints.parts.signals)
    channels = replace(DEFAULT_SETTINGS, stereo_channels="always")
    every = UploadFingerprints(load_audio(multichannel["upmix"]), channels)
    assert list(every.parts.signals) == [f"channel_{i}" for i in range(1, 7)]
    differences = replace(DEFAULT_SETTINGS, stereo_channels="never", stereo_difference="always")
    every = UploadFingerprints(load_audio(multichannel["upmix"]), differences)
    assert list(every.parts.signals) == [f"difference_{i}_{j}" for i, j in PAIRS_OF_SIX]
    assert len(UploadFingerprints(load_audio(multichannel["upmix"])).parts) == 0
    never = replace(DEFAULT_SETTINGS, stereo_channels="never", stereo_difference="never")
    assert load_audio(multichannel["pair_copy"], never).channels is None


@pytest.mark.parametrize(
    "name, signal",
    [
        ("centre_copy", "channel_3"),
        ("quad_copy", "channel_4"),
        ("pair_copy", "difference_1_2"),
        ("pair_sum_copy", "difference_1_2"),
        ("tenth_copy", "channel_10"),
    ],
)
def test_a_copy_in_one_of_many_channels_is_a_duplicate_of_its_work(
    catalog, work_ids, multichannel, name, signal
):
    _assert_a_whole_copy_of(catalog.screen(multichannel[name]), work_ids["work_02"], signal)
    never = catalog.settings.mix_only()
    assert Catalog(catalog.store, never).screen(multichannel[name]).verdict != "duplicate"


@pytest.mark.parametrize("name", ["unrelated", "short_quote"])
def test_chance_and_quotes_in_many_channels_stay_below_duplicate(catalog, multichannel, name):
    always = replace(catalog.settings, stereo_channels="always", stereo_difference="always")
    screened = Catalog(catalog.store, always).screen(multichannel[name])
    assert screened.error is None and screened.verdict != "duplicate", screened.matches


def test_a_multichannel_file_s_parts_share_half_the_chance_and_the_mix_keeps_half(
    catalog, work_ids, multichannel
):
    """Bonferroni's bound, weighted: the mix x2, each of the 6 channels x12; a stereo file's
    parts keep the plain count (x3 for its channels and mix)."""
    always = replace(catalog.settings, stereo_channels="always")
    _assert_the_mix_pays(catalog, always, multichannel["upmix"], work_ids["work_02"], 2)
    assert signal_multipliers(["channel_1", "channel_2", "stereo_difference"]) == {
        "mix": 2.0,
        "channel_1": 6.0,
        "channel_2": 6.0,
        "stereo_difference": 6.0,
    }
    assert signal_multipliers(["left_channel", "right_channel"]) == dict.fromkeys(
        ["mix", "left_channel", "right_channel"], 3.0
    )


def test_cli_report_and_explain_name_the_numbered_channel(
    catalog, work_ids, multichannel, tmp_path
):
    path = multichannel["centre_copy"]
    runner = CliRunner()
    found = runner.invoke(app, ["screen", "--db", str(catalog.root), "--json", str(path)])
    assert found.exit_code == 1, found.output
    document = json.loads(found.stdout)
    assert problems(document, "screen") == []
    assert document["results"][0]["matches"][0]["signal"] == "channel_3"
    report = tmp_path / "report.html"
    result = runner.invoke(
        app, ["screen", "--db", str(catalog.root), "--out", str(report), str(path)]
    )
    assert result.exit_code == 1, result.output
    page = report.read_text()
    assert "recording in channel 3" in page and "upload (channel 3)" in page
    picture = explain(catalog, path, work_ids["work_02"], tmp_path / "why.svg")
    assert "its channel 3" in picture.read_text()
    clip = audio_snippet(path, 5.0, 4.0, signal="channel_3")
    assert clip is not None and clip != audio_snippet(path, 5.0, 4.0, signal="channel_1")


def test_rescan_finds_a_catalog_work_holding_another_in_a_numbered_channel(
    catalog_copy, multichannel
):
    _rescan_finds_the_copy_in(catalog_copy, multichannel["quad_copy"], "channel_4", "in channel 4")
