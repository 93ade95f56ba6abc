"""The review queue in a real headless browser (Debian's chromium driven by Playwright, no
browser download) against a real ``audiodup serve`` started on 127.0.0.1: sign in, open the
queue, open an upload, play both players, record a decision, see it in the export.

Skipped when Playwright or chromium is missing. The page runs under its own
Content-Security-Policy (no ``bypass_csp``): the players and the picture load as a reviewer's
browser loads them; predicates are passed as functions, which the policy's ban on string
evaluation does not reach."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("pedalboard")
sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine")

UPLOADS = Path(__file__).resolve().parents[1] / "fixtures" / "audio" / "uploads"
SCREENSHOT = Path(os.environ.get("AUDIODUP_REVIEW_SCREENSHOT", "/tmp/review-page.png"))


def cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "audiodup", *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(pristine_catalog_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """``audiodup serve`` on the fixture catalog with a tempo-and-pitch copy recorded."""
    root = tmp_path_factory.mktemp("browser") / "catalog"
    shutil.copytree(pristine_catalog_dir, root)
    ingest = cli("keys", "create", "ingest", "--scope", "screen", "--db", str(root))
    reviewer = cli("keys", "create", "rita", "--scope", "review", "--db", str(root))
    port = free_port()
    log = open(root.parent / "server.log", "w")  # noqa: SIM115 - open while the server runs
    process = subprocess.Popen(
        [sys.executable, "-m", "audiodup", "serve", "--db", str(root), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # up to about a minute on a busy machine
            if process.poll() is not None:
                break
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        log.flush()
        assert process.poll() is None, (root.parent / "server.log").read_text()[-3000:]
        assert httpx.get(f"{base}/readyz").status_code == 200
        name = "stretch_1.25_work_02.ogg"
        with open(UPLOADS / name, "rb") as handle:
            answer = httpx.post(
                f"{base}/v1/uploads",
                files={"file": (name, handle, "audio/ogg")},
                data={"uploader": "label-a", "title": "Sped-up copy"},
                headers={"Authorization": f"Bearer {ingest}"},
                timeout=300,
            )
        assert answer.status_code == 201, answer.text
        record = answer.json()["upload"]
        assert record["verdict"] == "duplicate"
        yield base, reviewer, record["upload_id"]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def test_review_a_flagged_upload_in_a_real_browser(server) -> None:
    base, key, upload_id = server
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--autoplay-policy=no-user-gesture-required", "--no-sandbox"],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(120_000)
            # the queue sends a visitor without a session to the login form
            page.goto(f"{base}/review")
            assert page.url == f"{base}/review/login"
            page.fill("#key", key)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/review")
            assert page.text_content("#reviewer") == "rita"
            link = page.locator(f'a[href="/review/uploads/{upload_id}"]')
            assert link.count() == 1
            assert "Sped-up copy" in link.text_content()
            link.click()
            page.wait_for_url(f"{base}/review/uploads/{upload_id}")
            assert "label-a" in page.content()
            # both players load and play
            for player in ("#player-reference", "#player-upload"):
                page.wait_for_function(f"() => document.querySelector('{player}').readyState >= 1")
                duration = page.eval_on_selector(player, "a => a.duration")
                assert duration > 1.0, (player, duration)
                played = page.eval_on_selector(
                    player, "a => a.play().then(() => 'playing', e => String(e))"
                )
                assert played == "playing", played
                page.wait_for_function(
                    f"() => document.querySelector('{player}').currentTime > 0.3"
                )
                page.eval_on_selector(player, "a => a.pause()")
            reference_s = page.eval_on_selector("#player-reference", "a => a.duration")
            upload_s = page.eval_on_selector("#player-upload", "a => a.duration")
            assert upload_s == pytest.approx(reference_s, rel=0.03)  # brought back
            page.wait_for_function(
                "() => document.querySelector('#explain').complete && "
                "document.querySelector('#explain').naturalWidth > 0"
            )
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            # record a decision
            page.check("#decision-copy")
            page.fill("#note", "same master, sped up and raised")
            page.click("#decision-submit")
            page.wait_for_selector("#notice")
            assert "same master, sped up and raised" in page.text_content("#history")
            # and find it in the export, fetched by the same signed-in browser
            page.goto(f"{base}/v1/reviews/export?format=json")
            document = json.loads(page.inner_text("body"))
            decided = [d for d in document["decisions"] if d["upload_id"] == upload_id]
            assert [(d["decision"], d["reviewer"]) for d in decided] == [("copy", "rita")]
            assert decided[0]["note"] == "same master, sped up and raised"
        finally:
            browser.close()
