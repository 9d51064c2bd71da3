"""The chat-model path against a loopback OpenAI-compatible server: what the request carries, and every way an
answer can be unusable (one line, exit 2, or the offline ranking with --llm-fallback)."""

import base64
import io
import json

import numpy as np
import pytest
from _chat import GOOD
from PIL import Image

import dcrt
from dcrt.director.clip_space import TextMemo, load_clip_space
from dcrt.director.llm import SETTINGS_PROMPT, SYSTEM_PROMPT, LLMError, LLMRequest, propose_settings
from dcrt.weights import Weights

pytest.importorskip("openai", reason="the [director] extra (in [dev]) brings the openai client")

KEY = "sk-test-secret-0123456789"


@pytest.fixture(scope="module")
def space():
    # The bank's texts are embedded once for the module's many fallbacks.
    return TextMemo(load_clip_space(dcrt.get_preset("tiny"), Weights("tiny")))


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    path = tmp_path_factory.mktemp("llm") / "in.png"
    Image.fromarray((np.random.default_rng(1).random((60, 90, 3)) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def offline(picture, space):
    return dcrt.describe(str(picture), "tiny", embedder=space)


def _llm(chat, *more):
    return ["--res", "tiny", "--llm", chat.url, "--llm-model", "fake-vision", "--llm-key", KEY, *more]


def test_request_carries_the_image_and_the_system_prompt(chat, picture, run_cli):
    code, out, err = run_cli(["describe", str(picture), *_llm(chat, "--top", "2")])
    assert code == 0, err
    assert [line.split(None, 2)[2] for line in out.splitlines()] == GOOD["prompts"][:2]
    (request,) = chat.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == f"Bearer {KEY}"
    body = request["body"]
    assert body["model"] == "fake-vision"
    assert body["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    user = body["messages"][1]["content"]
    assert "Propose 2 motion prompts for this image" in user[0]["text"]
    url = user[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    sent = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
    assert sent.shape == (64, 64, 3)  # the image as the tiny preset animates it
    assert KEY not in out + err


def test_two_key_frames_are_both_sent_and_env_gives_model_and_key(chat, picture, run_cli, monkeypatch):
    monkeypatch.setenv("DCRT_LLM_MODEL", "env-model")
    monkeypatch.setenv("DCRT_LLM_API_KEY", KEY)
    chat.reply = (200, "```json\n" + json.dumps(GOOD["prompts"]) + "\n```", 0.0, None)  # fenced, a bare list
    code, out, err = run_cli(["describe", str(picture), str(picture), "--res", "tiny", "--llm", chat.url, "--json"])
    assert code == 0, err
    assert [p["prompt"] for p in json.loads(out)["prompts"]] == GOOD["prompts"]
    body = chat.requests[0]["body"]
    assert body["model"] == "env-model" and chat.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"
    assert "from the first of these frames to the last" in body["messages"][1]["content"][0]["text"]
    assert [part["type"] for part in body["messages"][1]["content"]] == ["text", "image_url", "image_url"]


BAD_ANSWERS = [
    ((500, "upstream exploded", 0.0, None), "answered HTTP 500: upstream exploded"),
    ((401, f"Incorrect API key provided: {KEY}", 0.0, None), "answered HTTP 401: Incorrect API key provided: ***"),
    ((200, json.dumps(GOOD), 3.0, None), "gave no answer within 0.5 s"),
    ((200, "The image shows a beach with waves.", 0.0, None), "not the JSON asked for"),
    ((200, "I'm sorry, I can't help with that.", 0.0, None), "refused"),
    ((200, "", 0.0, "I cannot assist with this image."), "refused: I cannot assist"),
    ((200, json.dumps({"prompts": ["Sorry, I cannot describe people"]}), 0.0, None), "refused"),
    ((200, json.dumps({"prompts": []}), 0.0, None), "has no list of prompts"),
    ((200, json.dumps({"prompts": ["  ", "waves"]}), 0.0, None), "empty or non-text prompt"),
    ((200, json.dumps({"prompts": ["word " * 60]}), 0.0, None), "over 40 words"),
]


@pytest.mark.parametrize("reply, message", BAD_ANSWERS, ids=[m.split(":")[0] for _, m in BAD_ANSWERS])
def test_bad_answers_are_one_line_exit_2_or_fall_back(chat, picture, run_cli, space, offline, reply, message):
    chat.reply = reply
    code, out, err = run_cli(["describe", str(picture), *_llm(chat, "--llm-timeout", "0.5")])
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and out == "" and len(lines) == 1, err
    assert lines[0].startswith("dcrt: error: ") and message in lines[0], err
    assert KEY not in err

    notices = []
    request = LLMRequest(chat.url, "fake-vision", KEY, timeout=0.5, fallback=True)
    ranked = dcrt.describe(str(picture), "tiny", llm=request, embedder=space, log=notices.append)
    assert ranked == offline
    assert len(notices) == 1 and message in notices[0] and "--llm-fallback" in notices[0] and KEY not in notices[0]


def test_fallback_from_the_command_line(chat, picture, run_cli):
    chat.reply = (500, "down for maintenance", 0.0, None)
    code, out, err = run_cli(["describe", str(picture), *_llm(chat, "--llm-fallback", "--top", "2")])
    assert code == 0, err
    assert "dcrt: the chat model at" in err and "answered HTTP 500: down for maintenance; using the offline" in err
    assert [line.split()[0] for line in out.splitlines()] == ["1", "2"] and KEY not in err


def test_unreachable_endpoint_is_one_line(picture, run_cli):
    code, _, err = run_cli(
        ["describe", str(picture), "--res", "tiny", "--llm", "http://127.0.0.1:9/v1", "--llm-model", "m"]
    )
    assert code == 2 and err.count("\n") == 1 and "cannot use the chat model at http://127.0.0.1:9/v1" in err


def test_api_key_stays_out_of_repr():
    assert KEY not in repr(LLMRequest("http://h/v1", "m", KEY))


SETTINGS = {"frame_stride": 10, "guidance_scale": 7.5, "eta": 1.0, "prompt": "waves at sunset"}
SCORES = {"motion": 0.8, "consistency": 0.97}
TARGETS = ["motion>=2"]
NOTES = ["a larger frame_stride gives less motion"]


def _settings(chat, content: str) -> dict:
    chat.reply = (200, content, 0.0, None)
    return propose_settings(LLMRequest(chat.url, "m", KEY).resolved({}), SETTINGS, SCORES, TARGETS, NOTES)


def test_propose_settings_merges_the_checked_answer(chat):
    got = _settings(chat, json.dumps({"frame_stride": 18.0, "prompt": "  strong waves crashing at sunset "}))
    assert got == SETTINGS | {"frame_stride": 18, "prompt": "strong waves crashing at sunset"}
    assert isinstance(got["frame_stride"], int)
    body = chat.requests[0]["body"]
    assert body["messages"][0]["content"] == SETTINGS_PROMPT
    asked = json.loads(body["messages"][1]["content"])
    assert asked == {"settings": SETTINGS, "scores": SCORES, "targets": TARGETS, "notes": NOTES}


@pytest.mark.parametrize(
    "content, message",
    [
        (json.dumps({"steps": 10}), "unknown settings: steps"),
        (json.dumps({"frame_stride": 7.5}), "frame_stride = 7.5, not a int"),
        (json.dumps({"guidance_scale": "high"}), 'guidance_scale = "high", not a float'),
        ('{"eta": NaN}', "eta = NaN, not a float"),
        (json.dumps({"prompt": ""}), "empty or non-text prompt"),
        (json.dumps([1, 2]), "not a JSON object of settings"),
        ("use more motion", "not the JSON asked for"),
    ],
)
def test_propose_settings_refuses_bad_answers(chat, content, message):
    with pytest.raises(LLMError, match=message.replace("(", r"\(")) as error:
        _settings(chat, content)
    assert "\n" not in str(error.value)


def test_a_prompt_may_say_sorry_after_its_start(chat, picture, space):
    chat.reply = (200, json.dumps({"prompts": ["a sorry-looking dog wagging its tail"]}), 0.0, None)
    ranked = dcrt.describe(str(picture), "tiny", llm=LLMRequest(chat.url, "m"), embedder=space)
    assert [r.prompt for r in ranked] == ["a sorry-looking dog wagging its tail"] and ranked[0].source == "llm m"


def _scores(motion: float):
    from dcrt.director.score import Scores

    return Scores(16, 64, 64, motion, motion / 256, 0.0, 0.0, 0, 0, 0, consistency=0.95)


def test_the_correction_loop_asks_the_chat_model_for_each_next_try(chat):
    """--until with --llm: the chat model sees the last try's settings, its measured scores, the conditions and which
    way frame_stride goes for the preset, and its checked answer is the next try."""
    from dcrt.director.correct import LLMProposer
    from dcrt.director.rules import Limits, Settings, parse_until

    conditions = parse_until("motion>=4")
    proposer = LLMProposer(LLMRequest(chat.url, "m", KEY).resolved({}), Limits((1, 30), frame_stride_is_fps=True))
    chat.reply = (200, json.dumps({"frame_stride": 5, "prompt": "strong waves crashing"}), 0.0, None)
    got = proposer(Settings("waves", 7.5, 1.0, 10, 123), _scores(1.0), conditions)
    assert got == Settings("strong waves crashing", 7.5, 1.0, 5, 123)
    asked = json.loads(chat.requests[-1]["body"]["messages"][1]["content"])
    assert asked["settings"] == {"prompt": "waves", "guidance_scale": 7.5, "eta": 1.0, "frame_stride": 10, "seed": 123}
    assert asked["targets"] == [str(c) for c in conditions] and asked["scores"]["motion"] == 1.0
    assert "less motion" in asked["notes"][0] and "version" not in asked["scores"]


def test_a_failing_chat_model_stops_the_loop_in_one_line_or_falls_back_to_the_rules(chat):
    from dcrt.director.correct import LLMProposer
    from dcrt.director.rules import Limits, RuleProposer, Settings, parse_until

    conditions, limits = parse_until("motion>=4"), Limits((1, 30), frame_stride_is_fps=True)
    start, scores = Settings("waves", 7.5, 1.0, 10, 123), _scores(1.0)
    chat.reply = (200, "more motion please", 0.0, None)
    with pytest.raises(LLMError, match="not the JSON asked for"):
        LLMProposer(LLMRequest(chat.url, "m", KEY).resolved({}), limits)(start, scores, conditions)
    notices: list[str] = []
    fallback = LLMProposer(LLMRequest(chat.url, "m", KEY, fallback=True).resolved({}), limits, notices.append)
    asked = len(chat.requests)
    assert fallback(start, scores, conditions) == RuleProposer(limits)(start, scores, conditions)
    assert fallback(start, scores, conditions) == RuleProposer(limits)(start, scores, conditions)
    assert len(chat.requests) == asked + 1 and len(notices) == 1 and "--llm-fallback" in notices[0]  # asked once
