"""Tests for audiodup.report_html and the report files of ``screen --out`` / ``rescan --out``:
a self-contained page (no external URL, inline pictures and audio) that loads in headless
Chromium without script errors, whose tables sort and pictures render, and whose screenshot is
not blank."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import soundfile as sf
from cli_runner import run_main
from conftest import weak_copy
from rescan_fixtures import EXPECTED_CLUSTERS, write_metadata, write_planted_audio
from scipy.signal import correlate

from audiodup import Catalog
from audiodup.errors import CatalogError
from audiodup.metadata import metadata_for_paths, read_metadata
from audiodup.report import write_rescan_report, write_screen_report
from audiodup.report_html import _as_seen_from, audio_snippet
from audiodup.rescan import rescan

ROOT = Path(__file__).resolve().parents[1]
CATALOG_DIR = ROOT / "fixtures" / "audio" / "catalog"
UPLOADS = sorted((ROOT / "fixtures" / "audio" / "uploads").iterdir())
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--mute-audio",
]
DATA_URI = re.compile(r'src="data:audio/ogg;base64,([A-Za-z0-9+/=]+)"')


# -- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def screen_report(catalog: Catalog, tmp_path_factory) -> tuple[Path, list]:
    verdicts = catalog.screen_many(UPLOADS)
    out = tmp_path_factory.mktemp("screen-html") / "report.html"
    write_screen_report(verdicts, out, catalog)
    return out, verdicts


@pytest.fixture(scope="module")
def rescan_report(tmp_path_factory) -> tuple[Path, object]:
    base = tmp_path_factory.mktemp("rescan-html")
    files = write_planted_audio(base / "audio")
    paths = [CATALOG_DIR, base / "audio"]
    matched, _ = metadata_for_paths(read_metadata(write_metadata(base / "m.csv", files)), paths)
    with Catalog.open(base / "catalog") as catalog:
        catalog.add_paths(paths, metadata=matched)
        report = rescan(catalog)
        out = write_rescan_report(report, base / "rescan.html", catalog)
    return out, report


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium (``.ci/run`` installs it); without a browser these tests are skipped."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("no chromium on PATH (apt-get install chromium to run the browser tests)")
    return found


def self_test_copy(report: Path, table_id: str, column: str) -> Path:
    """A copy of the report with a script that records script errors, clicks ``column`` of
    ``table_id`` twice and writes what it saw into ``<pre id="selftest">`` (so ``--dump-dom``
    shows it). The report itself ships no test code."""
    catch = (
        "<script>window.__errors=[];window.addEventListener('error',function(e)"
        "{window.__errors.push(String(e.message));});</script>"
    )
    probe = """<script>
window.addEventListener('load', function () {
  var out = {errors: window.__errors};
  var table = document.getElementById(TABLE_ID);
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var th = heads.filter(function (c) { return c.textContent.trim() === COLUMN; })[0];
  var col = heads.indexOf(th);
  function keys() {
    return Array.prototype.map.call(table.tBodies[0].rows, function (r) {
      var c = r.cells[col]; var k = c.getAttribute('data-sort');
      return k === null ? c.textContent.trim() : k; });
  }
  th.click(); out.ascending = keys(); out.ariaAscending = th.getAttribute('aria-sort');
  th.click(); out.descending = keys();
  out.images = Array.prototype.map.call(document.images, function (i) {
    return [i.complete, i.naturalWidth, i.naturalHeight]; });
  out.audio = Array.prototype.map.call(document.querySelectorAll('audio'), function (a) {
    return a.duration; });
  var pre = document.createElement('pre'); pre.id = 'selftest';
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
});
</script>"""
    probe = probe.replace("TABLE_ID", json.dumps(table_id)).replace("COLUMN", json.dumps(column))
    text = report.read_text(encoding="utf-8")
    text = text.replace("<head>", "<head>" + catch, 1).replace("</body>", probe + "</body>", 1)
    copy = report.with_name(f"selftest-{report.name}")
    copy.write_text(text, encoding="utf-8")
    return copy


def run_chromium(chromium: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    return subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=900,  # a hang guard only: a loaded machine may be slow
    )


def browse(chromium: str, page: Path, tmp_path: Path, table_id: str, column: str) -> dict:
    """Load ``page`` (and a self-test copy) in headless Chromium: the self-test's findings,
    the dumped DOM and the screenshot's pixels."""
    probe = self_test_copy(page, table_id, column)
    dom = run_chromium(
        chromium, tmp_path, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="selftest">(.*?)</pre>', dom.stdout, re.S)
    assert found, f"the page's scripts did not run: {dom.stdout[:500]}"
    shot = tmp_path / "screenshot.png"
    plain = run_chromium(
        chromium,
        tmp_path,
        f"--screenshot={shot}",
        "--window-size=1280,2000",
        "--virtual-time-budget=5000",
        page.as_uri(),
    )
    assert plain.returncode == 0 and shot.exists(), plain.stderr[-2000:]
    plain_dom = run_chromium(chromium, tmp_path, "--dump-dom", page.as_uri()).stdout
    return {
        "selftest": json.loads(_unescape(found.group(1))),
        "dom": plain_dom,
        "pixels": matplotlib.image.imread(shot),
    }


def _unescape(text: str) -> str:
    return (
        text.replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    )


def assert_self_contained(text: str) -> None:
    assert "http://" not in text and "https://" not in text
    for attribute in re.findall(r'\b(?:src|href)="([^"]*)"', text):
        assert attribute.startswith(("data:", "#")), attribute
    assert "<link" not in text and "@import" not in text


def flagged(verdicts) -> list:
    return [v for v in verdicts if v.verdict in ("duplicate", "suspect")]


# -- screening report ------------------------------------------------------------------------
def test_screen_report_is_self_contained_and_small(screen_report) -> None:
    page, verdicts = screen_report
    text = page.read_text(encoding="utf-8")
    assert_self_contained(text)
    n_flagged = len(flagged(verdicts))
    assert n_flagged == 9  # nine altered uploads, two unrelated
    assert text.count("<img ") == n_flagged
    assert text.count("<audio ") == 2 * n_flagged
    assert page.stat().st_size < 2_500_000
    table = text[text.index('<table id="uploads"') : text.index("</table>")]
    assert table.count("<tr>") == 1 + len(verdicts)
    for v in verdicts:
        assert Path(v.path).name in table


def test_audio_excerpts_are_short_and_aligned(screen_report) -> None:
    page, verdicts = screen_report
    clips = DATA_URI.findall(page.read_text(encoding="utf-8"))
    for clip in clips:
        samples, rate = sf.read(io.BytesIO(base64.b64decode(clip)))
        assert rate == 16000 and 1.0 < len(samples) / rate <= 15.0
        assert len(base64.b64decode(clip)) < 40_000
    # padded_work_01: tempo and pitch unchanged, so both excerpts are the same music
    padded = next(v for v in verdicts if Path(v.path).name == "padded_work_01.ogg")
    m = padded.matches[0]
    q0 = m.query_start_s + 5.0
    upload = sf.read(io.BytesIO(audio_snippet(padded.path, q0, 4.0)))[0]
    ref = sf.read(io.BytesIO(audio_snippet(m.path, m.ref_start_s + 5.0 * m.tempo_ratio, 4.0)))[0]
    n = min(len(upload), len(ref))
    lag = np.argmax(np.abs(correlate(upload[:n], ref[: n - 800], "valid", method="fft")))
    a, b = upload[lag : lag + n - 800], ref[: n - 800]
    assert lag < 400  # within 25 ms
    assert np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)) > 0.6


def test_screen_report_in_headless_chromium(screen_report, chromium: str, tmp_path) -> None:
    page, verdicts = screen_report
    seen = browse(chromium, page, tmp_path, "uploads", "score")
    test = seen["selftest"]
    assert test["errors"] == []
    scores = [float(k) for k in test["ascending"] if k != ""]
    assert scores == sorted(scores) and len(scores) == len(flagged(verdicts))
    assert test["ariaAscending"] == "ascending"
    assert [float(k) for k in test["descending"] if k != ""] == sorted(scores, reverse=True)
    assert len(test["images"]) == len(flagged(verdicts))
    assert all(done and width > 500 and height > 200 for done, width, height in test["images"])
    durations = test["audio"]  # the reference excerpt lasts 8 s x the tempo ratio
    assert len(durations) == 2 * len(flagged(verdicts))
    assert all(d is not None and 1.0 < d < 15.0 for d in durations), durations
    assert all(abs(d - 8.0) < 0.2 for d in durations[::2]), durations  # the uploads'
    dom = seen["dom"]
    assert 'data-sortable="' in dom  # the sorting script ran
    assert dom.count("<img ") == len(flagged(verdicts))
    body = dom[dom.index('<table id="uploads"') :]
    assert body[: body.index("</table>")].count("<tr>") == 1 + len(verdicts)
    pixels = seen["pixels"][..., :3]
    assert pixels.shape[:2] == (2000, 1280)
    assert pixels.std() > 0.1, "the screenshot is blank"
    assert (pixels.mean(axis=2) < 0.3).mean() > 0.01  # dark header, text and pictures


# -- rescan report ---------------------------------------------------------------------------
def test_rescan_report_content(rescan_report) -> None:
    page, report = rescan_report
    text = page.read_text(encoding="utf-8")
    assert_self_contained(text)
    assert len(report.clusters) == len(EXPECTED_CLUSTERS)
    n_alterations = sum(len(c.alterations) for c in report.clusters)
    assert text.count("<img ") == n_alterations == 4
    assert text.count("<audio ") == 2 * n_alterations
    for table_id in ("clusters", "uploaders", "pairs"):
        assert f'<table id="{table_id}" class="sortable">' in text
    for cluster in report.clusters:
        assert f'id="cluster-{cluster.cluster_id}"' in text
    assert "earliest uploaded_at (2020-01-01)" in text
    assert "ring" in text and "sped up x1.120 like a resampled copy" in text


def test_rescan_report_in_headless_chromium(rescan_report, chromium: str, tmp_path) -> None:
    page, report = rescan_report
    seen = browse(chromium, page, tmp_path, "uploaders", "copies")
    test = seen["selftest"]
    assert test["errors"] == []
    assert [int(k) for k in test["descending"]][:2] == [3, 1]  # ring, then solo
    assert all(done and width > 500 for done, width, _ in test["images"])
    dom = seen["dom"]
    clusters = dom[dom.index('<table id="clusters"') :]
    assert clusters[: clusters.index("</table>")].count("<tr>") == 1 + len(report.clusters)
    assert seen["pixels"][..., :3].std() > 0.1


# -- report files from the command line ------------------------------------------------------
def test_screen_out_json_csv_html(
    catalog_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    uploads = [str(p) for p in UPLOADS[:3]] + [str(tmp_path / "missing.ogg")]
    code, printed, _ = run_main(
        ["screen", "--db", str(catalog_copy), "--json", *uploads], monkeypatch, capsys
    )
    for suffix in ("json", "csv", "html"):
        out = tmp_path / f"report.{suffix}"
        code_out, _, err = run_main(
            ["screen", "--db", str(catalog_copy), "--out", str(out), *uploads], monkeypatch, capsys
        )
        assert code_out == code == 3  # a duplicate and a missing file
        assert f"report written to {out}" in err

    def untimed(document: dict) -> list[dict]:
        return [
            {k: v for k, v in d.items() if k == "duration_s" or not k.endswith("_s")}
            for d in document["results"]
        ]

    assert untimed(json.loads((tmp_path / "report.json").read_text())) == untimed(
        json.loads(printed)
    )
    rows = list(csv.DictReader(io.StringIO((tmp_path / "report.csv").read_text())))
    assert {r["path"] for r in rows} == set(uploads)
    missing = next(r for r in rows if r["path"] == uploads[-1])
    assert (missing["verdict"], missing["error"]) == ("error", "file not found")
    first = next(r for r in rows if r["path"] == uploads[0] and r["rank"] == "1")
    assert first["relation"] == "same_recording" and float(first["tempo_ratio"]) > 0
    assert_self_contained((tmp_path / "report.html").read_text())
    code, _, err = run_main(
        ["screen", "--db", str(catalog_copy), "--out", str(tmp_path / "r.txt"), *uploads],
        monkeypatch,
        capsys,
    )
    assert code == 2 and ".json, .csv or .html" in err and not (tmp_path / "r.txt").exists()


def test_pair_evidence_is_shown_from_the_altered_members_side(rescan_report) -> None:
    _, report = rescan_report
    pair = report.pairs[0]
    e = pair.evidence
    same = _as_seen_from(pair, pair.query_work_id, 40.0)
    assert same is e
    seen = _as_seen_from(pair, pair.reference_work_id, 80.0)
    assert seen.tempo_ratio == pytest.approx(1 / e.tempo_ratio)
    assert seen.pitch_shift_semitones == pytest.approx(-e.pitch_shift_semitones)
    assert (seen.query_start_s, seen.query_end_s) == (e.ref_start_s, e.ref_end_s)
    assert (seen.ref_start_s, seen.ref_end_s) == (e.query_start_s, e.query_end_s)
    assert seen.coverage_s == pytest.approx(e.ref_end_s - e.ref_start_s)
    assert seen.coverage == pytest.approx(seen.coverage_s / 80.0)
    # in the page, every alteration's evidence line repeats the alteration's tempo ratio
    text = rescan_report[0].read_text(encoding="utf-8")
    for cluster in report.clusters:
        for a in (a for a in cluster.alterations if len(a.via) == 2):  # direct, not composed
            heading = text.index(f"<h4>work {a.work_id} relative to work {a.relative_to}:")
            line = text[heading : text.index("</p>", heading)]
            assert f"tempo x{a.tempo_ratio:.3f}" in line


def test_a_copy_found_half_a_hop_in_is_pictured_from_there(catalog: Catalog, tmp_path) -> None:
    """The report's picture of a copy found on the look half a hop in is drawn from that
    analysis, and its caption says so."""
    path = tmp_path / "weak.wav"
    sf.write(path, weak_copy(catalog.settings), catalog.settings.sample_rate_hz)
    verdicts = catalog.screen_many([path])
    assert verdicts[0].verdict == "duplicate"
    out = tmp_path / "report.html"
    write_screen_report(verdicts, out, catalog)
    assert "matched hashes and aligned chroma of weak.wav (analysed from half a hop in)" in (
        out.read_text()
    )


def test_a_rescan_pair_found_half_a_hop_in_is_pictured_from_there(
    catalog_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A weak copy indexed beside its work: the rescan finds the pair on the look half a hop
    in, and the picture of the pair, from either side, is drawn from the analysis that lines
    up the most (half a hop in for the copy, with the pair's hash count) and says which."""
    from audiodup import report_html

    drawn, render = [], report_html.render_explain

    def recorded(catalog, query, work_id, **options):
        hashed, _ = catalog.work_evidence(query, work_id)
        drawn.append((options["upload_name"], work_id, hashed.main_inliers))
        return render(catalog, query, work_id, **options)

    monkeypatch.setattr(report_html, "render_explain", recorded)
    path = tmp_path / "weak.wav"
    with Catalog.open(catalog_copy, create=False) as catalog:
        sf.write(path, weak_copy(catalog.settings), catalog.settings.sample_rate_hz)
        (added,) = catalog.add_paths([path])
        (pair,) = rescan(catalog).pairs
        work_05 = pair.reference_work_id
        assert Path(catalog.work(work_05).path).name == "work_05.ogg"
        assert pair.label == "duplicate" and pair.query_work_id == added.work_id
        for member in pair.work_ids:
            picture = report_html._pair_picture(catalog, pair, member, {}, lambda w: f"work {w}")
            assert picture.startswith("<figure>")

        def unreadable(*_):
            raise CatalogError("cannot read catalog (disk I/O error)")

        monkeypatch.setattr(catalog, "work_evidence", unreadable)
        failed = report_html._pair_picture(catalog, pair, added.work_id, {}, str)
        assert failed == '<p class="muted">No picture: cannot read catalog (disk I/O error)</p>'
    copy_drawn, work_drawn = drawn if pair.work_ids[0] == added.work_id else drawn[::-1]
    half_hop = f"work {added.work_id} (analysed from half a hop in)"
    assert copy_drawn == (half_hop, work_05, pair.evidence.matched_hashes)
    assert work_drawn[1] == added.work_id and work_drawn[0].startswith(f"work {work_05}")
