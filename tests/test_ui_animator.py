"""The Magic Animator tab of `dcrt ui` (dcrt.ui.animator): the whole flow driven in headless Chromium on the tiny
preset with random weights (loopback only), and the tab's refusals and choices without a browser."""

from __future__ import annotations

import re
import shutil
import urllib.parse
import urllib.request

import pytest
from PIL import Image

from dcrt.errors import UsageError
from dcrt.loading import BackendRequest
from dcrt.presets import get_preset
from dcrt.serving.server import free_port
from dcrt.serving.service import VideoService
from dcrt.ui import Director, build_ui, in_process
from dcrt.ui.animator import NO_TRACK, proposals

pytestmark = pytest.mark.ui
REQUEST = BackendRequest(preset="tiny", random_weights=True, backend="torch", device="cpu")
TIMEOUT_MS = 600_000  # a hang guard: a loaded 2-core machine may take minutes


@pytest.fixture(scope="module")
def page():
    app = build_ui(in_process(VideoService(REQUEST)), get_preset("tiny"), director=Director(REQUEST))
    app.queue().launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield app
    finally:
        app.close()


def test_a_browser_describes_animates_scores_and_downloads(page, tmp_path, frame_count):
    """Upload a photo, Describe (the prompt is filled, the alternatives listed with their scores), Generate with 2
    steps, then the video element's source, the score table and the downloaded file."""
    from playwright.sync_api import expect, sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "no chromium on PATH: `.ci/run` installs it (apt-get install chromium)"
    photo = tmp_path / "teal.png"
    Image.new("RGB", (80, 64), "teal").save(photo)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            window = browser.new_page()
            window.set_default_timeout(TIMEOUT_MS)
            window.goto(page.local_url)
            window.get_by_role("tab", name="Magic Animator").click()
            tab = window.locator("#magic-animator")
            tab.locator("input[type=file]").first.set_input_files(str(photo))
            tab.get_by_role("button", name="Describe").click()
            prompt = tab.get_by_label("Motion prompt")
            expect(prompt).to_have_value(re.compile(r"\S"), timeout=TIMEOUT_MS)
            described = prompt.input_value()
            choices = [label.inner_text() for label in tab.locator("label:has(input[type=radio])").all()]
            tab.get_by_label("Steps").first.fill("2")
            tab.get_by_role("button", name="Generate").click()
            video = tab.locator("video").first
            video.wait_for(state="attached", timeout=TIMEOUT_MS)
            source = video.get_attribute("src")
            scores = tab.get_by_label("Scores")
            expect(scores).to_have_value(re.compile("motion"), timeout=TIMEOUT_MS)
            table = scores.input_value()
            link = tab.locator("#magic-download a[download]").first.get_attribute("href")
            window.screenshot(path=str(tmp_path / "animator.png"), full_page=True)
        finally:
            browser.close()
    assert len(choices) == 5 and described in choices[0], choices  # the best is filled in, each shown with its score
    assert all(re.search(r"\(-?\d\.\d{4}\)$", choice) for choice in choices), choices
    assert source
    assert table.startswith("16 frames") and "prompt_score" in table and "missing" not in table, table
    downloaded = tmp_path / "downloaded.mp4"
    with urllib.request.urlopen(urllib.parse.urljoin(page.local_url, link), timeout=60) as response:
        downloaded.write_bytes(response.read())
    assert frame_count(str(downloaded)) == 16


def test_proposals_show_the_bank_score_or_the_chat_model():
    from dcrt.director.bank import RankedPrompt

    ranked = [RankedPrompt("waves rolling", 0.25, "bank v1"), RankedPrompt("a boat sailing", None, "llm llava")]
    assert proposals(ranked) == [
        ("waves rolling  (0.2500)", "waves rolling"),
        ("a boat sailing  (llm llava)", "a boat sailing"),
    ]


def test_no_track_without_an_upload_or_a_library_choice(tmp_path):
    director = Director(REQUEST)
    assert director.track(None, NO_TRACK, "a boat") is None
    assert director.track(None, "rain.wav", "a boat") is None  # no library: the choice is not offered
    assert director.tracks() == []


def test_without_a_checkpoint_here_describe_is_one_line_and_scores_lack_only_clip():
    """A page sending its work to `dcrt serve` may have no checkpoint of its own: the video is still scored."""
    import numpy as np

    director = Director(BackendRequest(preset="256", device="cpu"))  # released weights, none here
    photo = Image.new("RGB", (64, 64), "teal")
    with pytest.raises(UsageError, match="^describing no checkpoint of preset 256 here"):
        director.describe(photo)
    frames = np.zeros((4, 64, 64, 3), np.uint8) + np.arange(4, dtype=np.uint8)[:, None, None, None] * 40
    scores = director.score(frames, photo, "a boat")
    assert scores.frames == 4 and scores.image_psnr is not None
    assert scores.prompt_score is None and "no checkpoint" in scores.missing["prompt_score"]
