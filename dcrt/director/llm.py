"""The director's chat-model path: any OpenAI-compatible chat endpoint (a hosted model, a local Ollama or vLLM),
spoken to with the `openai` client (the `director` extra). Two calls: `propose_prompts` (the image in, ranked
motion prompts out) and `propose_settings` (a try's settings and scores in, the next try's settings out).

Every answer is parsed and checked before it is used: a timeout, an HTTP error, a refusal or an answer that is not
the JSON asked for is one `LLMError` line (exit 2). The API key is sent, never logged: it is kept out of `repr` and
masked in any server message quoted back.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from dcrt.director.bank import RankedPrompt
from dcrt.errors import DcrtError, UsageError

MODEL_ENV, KEY_ENV = "DCRT_LLM_MODEL", "DCRT_LLM_API_KEY"
DIRECTOR = "Director"
# DynamiCrafter's text encoder reads 77 tokens; prompts far shorter than that are what it was trained on.
MAX_PROMPT_WORDS = 40
_QUOTED = 120  # characters of a bad answer quoted in the error line

SYSTEM_PROMPT = """You write motion prompts for DynamiCrafter, an image-to-video diffusion model that animates a \
still image (or fills in the frames between two key frames) following a short English text.
Look at the image and propose how what is in it should move. Write each prompt the way DynamiCrafter's prompts \
are written: one short phrase of at most 20 words, the movement first, naming what moves and, briefly, where; \
e.g. "gentle swaying of waves at sunset", "wind blowing through the woman's hair", "a man walking forward on a \
city street", "time-lapse of clouds drifting over the mountains". Propose only motion that fits what is visible; \
no camera specifications, no quality or style tags, no negations, no sentences about the image itself.
Answer with JSON only, no other text: {"prompts": ["best prompt", "second best", ...]}, best first."""

SETTINGS_PROMPT = """You tune the sampling settings of DynamiCrafter, an image-to-video diffusion model, so that \
its next video meets the targets. You get the settings of the last try, the scores its video got (motion: how \
much moves, in pixels per frame, larger is more; consistency: how stable the frames stay, 0 to 1; \
image_similarity: likeness to the input image, 0 to 1; prompt_score: agreement with the prompt, 0 to 2.5), the \
targets the scores must meet (e.g. "motion>=4") and notes on this model. Known effects: frame_stride changes the \
amount of motion (the notes say which way); a larger guidance_scale follows the prompt more strongly; eta above 0 \
adds randomness per step; a prompt naming a stronger or gentler movement changes the amount of motion.
Answer with JSON only, no other text: an object with the settings to use next, only the keys you were given."""

_REFUSAL = re.compile(r"\b(i can(no|')t|i cannot|i am unable|i'm unable|i won't|sorry|as an ai)\b", re.IGNORECASE)


class LLMError(DcrtError):
    """The chat model could not be asked, or its answer cannot be used."""

    exit_code = 2


def _meta(text: str, flag: str) -> dict:
    return {"help": text, "panel": DIRECTOR, "flag": flag}


@dataclass(frozen=True)
class LLMRequest:
    """Which chat model to ask, as the command line's --llm options give it. `endpoint` None: no chat model."""

    endpoint: str | None = field(
        default=None,
        metadata=_meta(
            "an OpenAI-compatible chat endpoint's base URL, e.g. http://127.0.0.1:11434/v1 (Ollama) or a hosted "
            "one; the image is sent to it (default: the offline prompt bank)",
            "--llm",
        ),
    )
    chat_model: str | None = field(
        default=None, metadata=_meta(f"the chat model's name (default: ${MODEL_ENV})", "--llm-model")
    )
    api_key: str | None = field(
        default=None,
        repr=False,
        metadata=_meta(f"the endpoint's API key (default: ${KEY_ENV}; never logged)", "--llm-key"),
    )
    timeout: float = field(default=60.0, metadata=_meta("seconds to wait for the chat model's answer", "--llm-timeout"))
    fallback: bool = field(
        default=False,
        metadata=_meta("if the chat model fails, say so and use the offline prompt bank instead", "--llm-fallback"),
    )

    def resolved(self, environ: Mapping[str, str] = os.environ) -> LLMRequest | None:
        """This request with the model and key from the environment where the options left them out, checked (one
        UsageError line before anything is sent or loaded); None without --llm."""
        if self.endpoint is None:
            if self.chat_model or self.api_key or self.fallback:
                raise UsageError("--llm-model, --llm-key and --llm-fallback need --llm URL")
            return None
        if not re.match(r"^https?://[^\s/]+", self.endpoint):
            raise UsageError(f"--llm wants an http:// or https:// URL, got {self.endpoint!r}")
        model = self.chat_model or environ.get(MODEL_ENV)
        if not model:
            raise UsageError(f"--llm needs a model name: pass --llm-model or set ${MODEL_ENV}")
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise UsageError(f"--llm-timeout must be a positive number of seconds, got {self.timeout}")
        key = self.api_key or environ.get(KEY_ENV)
        return LLMRequest(self.endpoint, model, key, self.timeout, self.fallback)


def _client(request: LLMRequest):
    try:
        import openai
    except ImportError:
        raise UsageError("--llm needs the openai client: pip install 'dcrt[director]'") from None
    # Local servers (Ollama, vLLM) take no key, but the client insists on one: any placeholder does.
    return openai.OpenAI(
        base_url=request.endpoint, api_key=request.api_key or "none", timeout=request.timeout, max_retries=0
    )


def ask(request: LLMRequest, system: str, content: list[dict] | str) -> str:
    """The assistant's answer text, or one LLMError line naming what went wrong."""
    import openai

    messages = [{"role": "system", "content": system}, {"role": "user", "content": content}]
    try:
        answer = _client(request).chat.completions.create(model=request.chat_model, messages=messages)
    except openai.APITimeoutError:
        raise LLMError(f"the chat model at {request.endpoint} gave no answer within {request.timeout:g} s") from None
    except openai.APIStatusError as exc:
        # The client puts the error object of an OpenAI-style body in `body`; its message is the server's words.
        said = exc.body.get("message") if isinstance(exc.body, dict) else None
        raise LLMError(
            f"the chat model at {request.endpoint} answered HTTP {exc.status_code}: "
            + _masked(str(said or exc.message), request)
        ) from None
    except openai.APIError as exc:  # connection refused, a reply that is not a chat completion, ...
        raise LLMError(f"cannot use the chat model at {request.endpoint}: {_masked(str(exc), request)}") from None
    choice = answer.choices[0] if answer.choices else None
    message = choice.message if choice is not None else None
    if message is not None and getattr(message, "refusal", None):
        raise LLMError(f"the chat model refused: {quoted(message.refusal)}")
    if message is None or not message.content:
        raise LLMError(f"the chat model at {request.endpoint} sent an empty answer")
    return message.content


def _masked(text: str, request: LLMRequest) -> str:
    """A server's message, quoted short, with the API key masked (some servers echo it)."""
    if request.api_key:
        text = text.replace(request.api_key, "***")
    return quoted(text)


def quoted(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= _QUOTED else line[:_QUOTED] + "..."


def json_answer(text: str):
    """The JSON value of an answer, allowing the ```json fences chat models like to add."""
    stripped = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())
    try:
        return json.loads(stripped)
    except ValueError:
        if _REFUSAL.search(text):
            raise LLMError(f"the chat model refused: {quoted(text)}") from None
        raise LLMError(f"the chat model's answer is not the JSON asked for: {quoted(text)}") from None


def data_url(frame: np.ndarray) -> str:
    """uint8 [H, W, 3] -> a base64 PNG data URL (how OpenAI-compatible chat APIs take an image)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame, "RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def propose_prompts(request: LLMRequest, frames: np.ndarray, top: int) -> list[RankedPrompt]:
    """Up to `top` motion prompts for the image (or, with two frames, the clip between them), best first."""
    what = "this image" if len(frames) == 1 else "a clip going from the first of these frames to the last"
    content = [{"type": "text", "text": f"Propose {top} motion prompts for {what}."}]
    content += [{"type": "image_url", "image_url": {"url": data_url(frame)}} for frame in frames]
    answer = json_answer(ask(request, SYSTEM_PROMPT, content))
    prompts = answer.get("prompts") if isinstance(answer, dict) else answer
    if not isinstance(prompts, list) or not prompts:
        raise LLMError(f"the chat model's answer has no list of prompts: {quoted(json.dumps(answer))}")
    checked = [checked_prompt(p) for p in prompts[:top]]
    return [RankedPrompt(prompt=p, score=None, source=f"llm {request.chat_model}") for p in checked]


def checked_prompt(prompt) -> str:
    if isinstance(prompt, dict):  # {"prompt": "..."}: a common variation on the format asked for
        prompt = prompt.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise LLMError(f"the chat model sent an empty or non-text prompt: {quoted(json.dumps(prompt))}")
    prompt = " ".join(prompt.split())
    if _REFUSAL.match(prompt):  # at the start only: "a sorry-looking dog wagging its tail" is a prompt
        raise LLMError(f"the chat model refused: {quoted(prompt)}")
    if len(prompt.split()) > MAX_PROMPT_WORDS:
        raise LLMError(f"the chat model's prompt is over {MAX_PROMPT_WORDS} words: {quoted(prompt)}")
    return prompt


def propose_settings(
    request: LLMRequest,
    settings: Mapping[str, object],
    scores: Mapping[str, float],
    targets: Sequence[str] = (),
    notes: Sequence[str] = (),
) -> dict[str, object]:
    """The next try's settings, proposed by the chat model from the last try's `settings` (names -> int, float or
    str values, e.g. frame_stride, guidance_scale, eta, prompt) and `scores`, against `targets` (the loop's --until
    conditions, e.g. "motion>=4"); `notes`: what the model should know of this preset (which way frame_stride goes).
    Keys it leaves out keep their value; each value must have its setting's type (an int may come as 7.0); any other
    key, a value of another type, a non-finite number or an empty or over-long prompt is one LLMError line. The
    caller checks the ranges (the sampling options' own checks)."""
    question = json.dumps(
        {"settings": dict(settings), "scores": dict(scores), "targets": list(targets), "notes": list(notes)}
    )
    answer = json_answer(ask(request, SETTINGS_PROMPT, question))
    if not isinstance(answer, dict):
        raise LLMError(f"the chat model's answer is not a JSON object of settings: {quoted(json.dumps(answer))}")
    unknown = sorted(set(answer) - set(settings))
    if unknown:
        raise LLMError(f"the chat model proposed unknown settings: {', '.join(map(str, unknown[:5]))}")
    return dict(settings) | {name: _checked_setting(name, value, settings[name]) for name, value in answer.items()}


def _checked_setting(name: str, value, current):
    bad = LLMError(f"the chat model proposed {name} = {quoted(json.dumps(value))}, not a {type(current).__name__}")
    if isinstance(current, str):
        if name == "prompt":
            return checked_prompt(value)
        if not isinstance(value, str):
            raise bad
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad
    if isinstance(current, int) and not isinstance(current, bool):
        if value != int(value):
            raise bad
        return int(value)
    return float(value)
