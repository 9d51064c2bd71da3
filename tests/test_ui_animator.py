"""The Magic Animator tab of `dcrt ui` (dcrt.ui.animator): the whole flow driven in headless Chromium on the tiny
preset with random weights (loopback only), and the tab's sound-track choices and refusals without a browser."""

from __future__ import annotations

import re
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from _audio import sine_wav, streams
from PIL import Image

from dcrt.errors import UsageError
from dcrt.loading import BackendRequest
from dcrt.presets import get_preset
from dcrt.serving.server import free_port
from dcrt.serving.service import VideoService
from dcrt.ui import Director, build_ui, in_process
from dcrt.ui.animator import NO_TRACK, PICKED_TRACK, proposals
from dcrt.video import DEFAULT_FPS

pytestmark = pytest.mark.ui
REQUEST = BackendRequest(preset="tiny", random_weights=True, backend="torch", device="cpu")
REPO = Path(__file__).resolve().parents[1]
TIMEOUT_MS = 600_000  # a hang guard: a loaded 2-core machine may take minutes
# The video's duration once Chromium has read its metadata; a source it cannot play rejects with the media error.
PLAYABLE = """v => new Promise((done, fail) => {
    if (v.readyState >= 1) return done(v.duration);
    v.addEventListener("loadedmetadata", () => done(v.duration));
    v.addEventListener("error", () => fail(new Error("the video cannot play: " + (v.error && v.error.message))));
})"""


@pytest.fixture(scope="module")
def page():
    app = build_ui(in_process(VideoService(REQUEST)), get_preset("tiny"), director=Director(REQUEST))
    app.queue().launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield app
    finally:
        app.close()


def test_a_browser_describes_animates_scores_and_downloads(page, tmp_path, frame_count):
    """Upload a photo, Describe (the prompt is filled, the alternatives listed with their scores), upload a sound
    track, Generate with 2 steps; then the video element's source, the score table and the downloaded file: the
    16 frames with an AAC sound track."""
    from playwright.sync_api import expect, sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "no chromium on PATH: `.ci/run` installs it (apt-get install chromium)"
    photo = tmp_path / "teal.png"
    Image.new("RGB", (80, 64), "teal").save(photo)
    tone = sine_wav(tmp_path / "tone.wav", 3.0)  # longer than the 2 s video: the tab must cut it
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
            tab.locator("input[type=file]").nth(1).set_input_files(str(tone))  # the sound track's
            expect(tab.get_by_text("tone.wav")).to_be_visible(timeout=TIMEOUT_MS)  # uploaded
            tab.get_by_role("button", name="Generate").click()
            video = tab.locator("video").first
            video.wait_for(state="attached", timeout=TIMEOUT_MS)
            source = video.get_attribute("src")
            seconds = video.evaluate(PLAYABLE)
            scores = tab.get_by_label("Scores")
            expect(scores).to_have_value(re.compile("motion"), timeout=TIMEOUT_MS)
            table = scores.input_value()
            link = tab.locator("#magic-download a[download]").first.get_attribute("href")
            window.screenshot(path=str(tmp_path / "animator.png"), full_page=True)
        finally:
            browser.close()
    assert len(choices) == 5 and described in choices[0], choices  # the best is filled in, each shown with its score
    assert all(re.search(r"\(-?\d\.\d{4}\)$", choice) for choice in choices), choices
    assert source and seconds == pytest.approx(16 / DEFAULT_FPS, abs=0.1), seconds
    assert table.startswith("sound track: tone.wav\n16 frames"), table
    assert "prompt_score" in table and "missing" not in table, table
    downloaded = tmp_path / "downloaded.mp4"
    with urllib.request.urlopen(urllib.parse.urljoin(page.local_url, link), timeout=60) as response:
        downloaded.write_bytes(response.read())
    assert frame_count(str(downloaded)) == 16
    assert sorted(streams(downloaded)) == [("Audio", "aac"), ("Video", "h264")]


def test_generate_with_an_empty_prompt_describes_the_photo_first(page, tmp_path, frame_count):
    """The Generate button's endpoint (gradio_client, loopback): an empty prompt is described as `dcrt animate`
    without PROMPT does, the video made with that prompt, which comes back for the prompt box and heads the scores."""
    from gradio_client import Client, handle_file

    import dcrt

    photo = tmp_path / "teal.png"
    Image.new("RGB", (80, 64), "teal").save(photo)
    best = dcrt.describe(str(photo), REQUEST, top=1)[0]
    client = Client(page.local_url, verbose=False)
    video, table, download, prompt = client.predict(
        handle_file(str(photo)), "  ", 2, 7, None, NO_TRACK, api_name="/magic_animate"
    )
    assert prompt == best.prompt
    assert table.startswith(f"auto prompt: {proposals([best])[0][0]}\n16 frames"), table
    assert "prompt_score" in table and frame_count(download) == 16
    _, table, _, kept = client.predict(
        handle_file(str(photo)), "a boat", 2, 7, None, NO_TRACK, api_name="/magic_animate"
    )
    assert kept == "a boat" and not table.startswith("auto prompt")  # a written prompt is animated as written


def test_prompt_for_keeps_a_written_prompt_and_describes_an_empty_one():
    director = Director(REQUEST)
    photo = Image.new("RGB", (64, 64), "orange")
    assert director.prompt_for(photo, "a boat") == ("a boat", None)
    best = director.describe(photo)[0]
    for empty in ("", " \t", None):
        assert director.prompt_for(photo, empty) == (best.prompt, best)


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


def test_tracks_from_the_library_by_name_or_picked_and_bad_ones_refused(tmp_path):
    library = tmp_path / "library"
    library.mkdir()
    calm, storm = sine_wav(library / "calm_piano.wav", 3.0, hz=220), sine_wav(library / "rain_storm.wav", 3.0, hz=880)
    (library / "rain_storm.txt").write_text("thunder and heavy rain")
    director = Director(REQUEST, audio_library=library)
    assert director.tracks() == ["calm_piano.wav", "rain_storm.wav"]
    assert director.track(None, "rain_storm.wav", "a boat") == storm
    assert director.track(None, PICKED_TRACK, "rain falling on the sea") in (calm, storm)  # by the tiny random CLIP
    assert director.track(str(calm), "rain_storm.wav", "a boat") == calm  # an upload wins over the library
    with pytest.raises(UsageError, match="^no track 'missing.wav' in the audio library"):
        director.track(None, "missing.wav", "a boat")
    (tmp_path / "notes.wav").write_text("not audio")
    with pytest.raises(UsageError, match="is not audio ffmpeg can read"):
        director.track(str(tmp_path / "notes.wav"), NO_TRACK, "a boat")
    page = build_ui(lambda *a: None, get_preset("tiny"), director=director)
    (menu,) = [c["props"] for c in page.config["components"] if c.get("type") == "dropdown"]
    assert [choice[1] for choice in menu["choices"]] == [NO_TRACK, PICKED_TRACK, "calm_piano.wav", "rain_storm.wav"]
    assert menu["visible"] is True


def test_without_a_checkpoint_here_describe_is_one_line_and_scores_lack_only_clip():
    """A page sending its work to `dcrt serve` may have no checkpoint of its own: the video is still scored."""

    director = Director(BackendRequest(preset="256", device="cpu"))  # released weights, none here
    photo = Image.new("RGB", (64, 64), "teal")
    with pytest.raises(UsageError, match="^describing no checkpoint of preset 256 here"):
        director.describe(photo)
    frames = np.zeros((4, 64, 64, 3), np.uint8) + np.arange(4, dtype=np.uint8)[:, None, None, None] * 40
    scores = director.score(frames, photo, "a boat")
    assert scores.frames == 4 and scores.image_psnr is not None
    assert scores.prompt_score is None and "no checkpoint" in scores.missing["prompt_score"]


@pytest.mark.parametrize(
    ("library", "said"),
    [
        ("missing", r"^dcrt: error: audio library \S+missing is not a folder$"),
        ("empty", r"^dcrt: error: audio library \S+empty holds no wav, mp3, m4a, flac files$"),
        ("bad", r"^dcrt: error: \S+notes.wav is not audio ffmpeg can read: .+$"),
    ],
)
def test_dcrt_ui_refuses_a_bad_audio_library_in_one_line(run_cli, tmp_path, monkeypatch, library, said):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "notes.wav").write_text("not audio")

    def no_page(*args, **kwargs):  # the refusal must come first: reaching the page fails instead of serving it
        raise AssertionError("the page was built")

    monkeypatch.setattr("dcrt.ui.build_ui", no_page)
    code, _, err = run_cli(["ui", "--res", "tiny", "--random-weights", "--audio-library", str(tmp_path / library)])
    assert code == 2 and re.match(said, err.strip()) and len(err.strip().splitlines()) == 1, err


@pytest.mark.serve
def test_against_dcrt_serve_only_the_video_is_made_by_the_server(tmp_path, frame_count):
    """`dcrt ui --server URL`: describe and score run in the page's process (its own CLIP), the video on a real
    tritonserver (the [serve] extra's); the buttons' API endpoints driven by gradio_client."""
    from gradio_client import Client, handle_file

    from dcrt.serving.repository import ServeOptions, write_repository
    from dcrt.serving.server import start_server
    from dcrt.ui import remote

    photo = tmp_path / "teal.png"
    Image.new("RGB", (80, 64), "teal").save(photo)
    tone = sine_wav(tmp_path / "tone.wav", seconds=1.0)  # shorter than the video: the tab loops it
    write_repository(tmp_path / "repo", REQUEST, ServeOptions(), python_path=[str(REPO)])
    with open(tmp_path / "server.log", "wb") as log:
        server = start_server(tmp_path / "repo", port=free_port(), log=log)
        try:
            server.wait_ready(timeout_s=600)  # a hang guard: loading may take minutes on a loaded machine
            app = build_ui(remote(server.url), get_preset("tiny"), director=Director(REQUEST))
            app.queue().launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
            try:
                client = Client(app.local_url, verbose=False)
                prompt, ideas = client.predict(handle_file(str(photo)), api_name="/describe")
                video, table, download, animated = client.predict(
                    handle_file(str(photo)), prompt, 2, 7, handle_file(str(tone)), NO_TRACK, api_name="/magic_animate"
                )
            finally:
                app.close()
        finally:
            server.stop()
    assert prompt and ideas["value"] == prompt and len(ideas["choices"]) == 5 and animated == prompt
    assert table.startswith("sound track: tone.wav\n16 frames") and "missing" not in table, table
    assert frame_count(download) == 16 and sorted(streams(download)) == [("Audio", "aac"), ("Video", "h264")]


PROPOSED = ["gentle swaying of waves at sunset", "a boat rocking gently"]


@pytest.fixture
def chat_model():
    """A loopback OpenAI-compatible chat endpoint: it proposes PROPOSED to a describe request and picks
    rain_storm.wav when asked for a sound track (told apart by the system prompt)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            system = body["messages"][0]["content"]
            asked.append(system)
            answer = {"track": "rain_storm.wav"} if "sound track" in system else {"prompts": PROPOSED}
            message = {"role": "assistant", "content": json.dumps(answer)}
            data = json.dumps(
                {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                 "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
            ).encode()  # fmt: skip
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", asked
    finally:
        server.shutdown()
        server.server_close()


def test_the_llm_options_describe_and_pick_the_track(chat_model, tmp_path):
    pytest.importorskip("openai", reason="the [director] extra (in [dev]) brings the openai client")
    from dcrt.director.llm import LLMRequest

    url, asked = chat_model
    library = tmp_path / "library"
    library.mkdir()
    sine_wav(library / "calm_piano.wav", 3.0)
    storm = sine_wav(library / "rain_storm.wav", 3.0)
    director = Director(REQUEST, LLMRequest(url, "fake-vision", timeout=60).resolved(), library)
    ranked = director.describe(Image.new("RGB", (64, 64), "teal"))
    assert [r.prompt for r in ranked] == PROPOSED
    assert proposals(ranked)[0] == (f"{PROPOSED[0]}  (llm fake-vision)", PROPOSED[0])
    assert director.track(None, PICKED_TRACK, PROPOSED[0]) == storm
    assert len(asked) == 2 and "sound track" in asked[1]
