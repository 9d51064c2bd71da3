"""`dcrt ui`: the Gradio page driven end to end by gradio_client (both tabs, 16-frame videos), in this process
and as the command (loopback only, stopped by PID)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from PIL import Image

from dcrt.loading import BackendRequest
from dcrt.presets import get_preset
from dcrt.serving.server import free_port
from dcrt.serving.service import VideoService
from dcrt.ui import build_ui, in_process

pytestmark = pytest.mark.ui
REQUEST = BackendRequest(preset="tiny", random_weights=True, backend="torch", device="cpu")


@pytest.fixture(scope="module")
def page():
    app = build_ui(in_process(VideoService(REQUEST)), get_preset("tiny"))
    app.queue().launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield app
    finally:
        app.close()


def test_both_tabs_make_16_frame_videos(page, tmp_path, frame_count):
    from gradio_client import Client, handle_file

    teal, orange = tmp_path / "teal.png", tmp_path / "orange.png"
    Image.new("RGB", (80, 64), "teal").save(teal)
    Image.new("RGB", (80, 64), "orange").save(orange)
    client = Client(page.local_url, verbose=False)
    # steps, guidance scale, eta, frame stride, seed
    video = client.predict(handle_file(str(teal)), "a boat", 2, 7.5, 1.0, 24, 123, api_name="/animate")
    assert frame_count(video) == 16
    pair = client.predict(
        handle_file(str(teal)), handle_file(str(orange)), "a boat", "interpolate", 2, 7.5, 1.0, 24, 7,
        api_name="/interpolate",
    )  # fmt: skip
    assert frame_count(pair) == 16
    with pytest.raises(Exception, match="seed must be an integer from 0"):
        client.predict(handle_file(str(teal)), "a boat", 2, 7.5, 1.0, 24, -1, api_name="/animate")


def examples_in(page) -> list[list]:
    """Every gr.Examples table on the page: its rows as the page's config lists them."""
    return [c["props"]["samples"] for c in page.config["components"] if c.get("type") == "dataset"]


def test_examples_from_a_prompt_folder_fill_the_tab_that_takes_them(tmp_path):
    from dcrt.batch import read_prompt_dir

    for name, colour in (("a.png", "teal"), ("b.png", "orange")):
        Image.new("RGB", (80, 64), colour).save(tmp_path / name)
    (tmp_path / "test_prompts.txt").write_text("a boat\nfireworks\n")
    singles = build_ui(lambda *a: None, get_preset("tiny"), read_prompt_dir(tmp_path, "animate"))
    (table,) = examples_in(singles)
    assert [row[1] for row in table] == ["a boat", "fireworks"] and len(table[0]) == 2
    (tmp_path / "test_prompts.txt").write_text("a boat sails\n")
    pairs = build_ui(lambda *a: None, get_preset("tiny"), read_prompt_dir(tmp_path, "interpolate"))
    (table,) = examples_in(pairs)
    assert len(table) == 1 and len(table[0]) == 3 and table[0][2] == "a boat sails"
    assert examples_in(build_ui(lambda *a: None, get_preset("tiny"))) == []


def test_dcrt_ui_serves_the_page_on_loopback(tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "dcrt", "ui", "--res", "tiny", "--random-weights", "--backend", "torch"]
    with open(tmp_path / "ui.log", "wb") as log:
        process = subprocess.Popen([*command, "--port", str(port)], stdout=log, stderr=log)
    try:
        deadline, page = time.monotonic() + 600, None  # a hang guard: a loaded machine may take minutes
        while page is None and time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    page = response.read().decode()
            except OSError:
                time.sleep(0.5)
        assert page is not None, (tmp_path / "ui.log").read_text()
        assert "DynamiCrafter" in page or "gradio" in page.lower()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def test_a_browser_uploads_an_image_and_finds_the_video(page, tmp_path):
    """Headless Chromium (the system's: `.ci/run` installs it) loads the page, uploads an image, clicks Generate and
    finds the video element. The screenshot stays in the test's temp dir as the run's artifact."""
    import shutil

    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "no chromium on PATH: `.ci/run` installs it (apt-get install chromium)"
    image = tmp_path / "teal.png"
    Image.new("RGB", (80, 64), "teal").save(image)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            tab = browser.new_page()
            tab.goto(page.local_url)
            tab.locator("input[type=file]").first.set_input_files(str(image))
            tab.get_by_label("Prompt").first.fill("a boat")
            tab.get_by_role("button", name="Generate").first.click()
            video = tab.locator("video").first
            video.wait_for(state="attached", timeout=600_000)  # ms; a hang guard
            source = video.get_attribute("src")
            tab.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        finally:
            browser.close()
    assert source and (tmp_path / "page.png").stat().st_size > 10_000
    print(f"screenshot: {tmp_path / 'page.png'}")
