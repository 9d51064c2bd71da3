"""The "Magic Animator" tab of `dcrt ui`: a photo in; a scored video, with an optional sound track, out.

"Describe" proposes motion prompts for the photo (dcrt.describe: the prompt bank ranked by the checkpoint's CLIP,
or the `--llm` chat model); "Generate" (with an empty prompt: the best described one, shown in the prompt box, as
`dcrt animate` without PROMPT) makes the video with the page's `Generate` (this process, or a `dcrt serve`
endpoint), scores it (dcrt.director.score) and lays the sound track under it (dcrt.director.sound). Describing,
scoring and the sound always run in the page's process: only the video generation goes to a server.
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dcrt.director.bank import RankedPrompt
from dcrt.errors import DcrtError, UsageError
from dcrt.families.dynamicrafter.options import SamplingRequest
from dcrt.loading import BackendRequest

if TYPE_CHECKING:
    from dcrt.director.clip_space import Embedder
    from dcrt.director.llm import LLMRequest
    from dcrt.director.score import Scores
    from dcrt.ui.generation import Generate

NO_TRACK, PICKED_TRACK = "none", "picked for the prompt"


def add_sound(video: Path, track: Path) -> Path:
    """`video` with `track` under it as AAC (cut or looped to its length, faded out); the picture is unchanged."""
    from dcrt.director.sound import add_audio

    return add_audio(video, track)


@dataclass
class Director:
    """What the tab runs in the page's process: the checkpoint's CLIP (loaded at its first use, once, for
    describing, scoring and picking tracks), the chat model (`llm`, resolved) and the sound library."""

    model: BackendRequest
    llm: LLMRequest | None = None
    audio_library: Path | None = None
    top: int = 5
    _clip: tuple[Embedder | None, str] | None = field(default=None, init=False, repr=False)
    # Describe and Generate are separate events: two may ask for the CLIP at once.
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def clip(self) -> tuple[Embedder | None, str]:
        """The CLIP space of the model's weights, or (None, why not): with --server the page may have none."""
        from dcrt.director.score import open_embedder

        with self._lock:
            if self._clip is None:
                weights = self.model.requested_weights()
                self._clip = open_embedder(self.model.preset_config(), weights, self.model.device)
            return self._clip

    def describe(self, image) -> list[RankedPrompt]:
        from dcrt.director.describe import describe

        embedder = None
        if self.llm is None or self.llm.fallback:
            embedder, why = self.clip()
            if embedder is None and self.llm is None:
                raise UsageError(f"describing {why}")
        return describe(image, self.model, top=self.top, llm=self.llm, embedder=embedder)

    def prompt_for(self, image, prompt: str | None) -> tuple[str, RankedPrompt | None]:
        """The prompt Generate animates with: `prompt`, or for an empty one the best described, as `dcrt animate`
        without PROMPT; with the proposal it came from (None: written)."""
        if prompt and prompt.strip():
            return prompt, None
        best = self.describe(image)[0]
        return best.prompt, best

    def tracks(self) -> list[str]:
        """The library's track names (empty without a library)."""
        if self.audio_library is None:
            return []
        from dcrt.director.sound import library_tracks

        return [track.name for track in library_tracks(self.audio_library)]

    def track(self, upload: str | None, choice: str | None, prompt: str) -> Path | None:
        """The sound track asked for, checked (one line for a file ffmpeg cannot read): an upload wins over the
        library; PICKED_TRACK matches the prompt against the library's tags (the chat model, or CLIP's text tower)."""
        if not upload and (choice in (None, NO_TRACK) or self.audio_library is None):
            return None
        from dcrt.director.sound import check_audio, pick_track

        if upload:
            path = Path(upload)
        elif choice == PICKED_TRACK:
            embedder = self.clip()[0] if self.llm is None else None  # the chat model picks without CLIP
            path = pick_track(self.audio_library, prompt, embedder, self.llm).path
        elif choice in self.tracks():
            path = self.audio_library / choice
        else:
            raise UsageError(f"no track {choice!r} in the audio library {self.audio_library}")
        check_audio(path, "mp4")
        return path

    def score(self, frames, image, prompt: str) -> Scores:
        from dcrt.director.score import fit_image, score_frames

        embedder, why = self.clip()
        return score_frames(frames, [fit_image(image, *frames.shape[1:3])], prompt or None, embedder, why)


def proposals(ranked: list[RankedPrompt]) -> list[tuple[str, str]]:
    """The proposed prompts as (label, value) choices: the score (bank) or the source (chat model) with the prompt."""
    return [(f"{r.prompt}  ({r.source if r.score is None else f'{r.score:.4f}'})", r.prompt) for r in ranked]


def add_tab(generate: Generate, director: Director, out_dir: Path) -> None:
    """The tab, inside the page's gr.Blocks; its buttons are the API endpoints /describe and /magic_animate."""
    import gradio as gr

    from dcrt.director.score import format_table
    from dcrt.director.sound import AUDIO_SUFFIXES
    from dcrt.families.dynamicrafter.options import resolve_options
    from dcrt.serving.service import mp4_bytes
    from dcrt.ui.generation import png

    preset = director.model.preset_config()
    defaults = resolve_options(preset, "animate")

    def describe(image):
        if image is None:
            raise gr.Error("upload a photo first")
        try:
            ranked = director.describe(image)
        except DcrtError as exc:
            raise gr.Error(str(exc)) from None
        return ranked[0].prompt, gr.Radio(choices=proposals(ranked), value=ranked[0].prompt)

    def animate(image, prompt, steps, seed, upload, choice, progress=gr.Progress()):
        if image is None:
            raise gr.Error("upload a photo first")
        try:
            if not (prompt or "").strip():
                progress(None, desc="describing")
            prompt, described = director.prompt_for(image, prompt)  # the library's pick matches this prompt
            track = director.track(upload, choice, prompt)  # a bad track is refused before the video is made
            sampling = SamplingRequest(steps=int(steps), seed=int(seed))
            step = lambda s, t: progress((s, t), desc="generating")  # noqa: E731
            frames = generate([png(image)], prompt, "animate", sampling, step)
            progress(None, desc="scoring")
            scores = director.score(frames, image, prompt)
            video = Path(tempfile.mkdtemp(dir=out_dir)) / "magic_animator.mp4"
            video.write_bytes(mp4_bytes(frames))
            if track is not None:
                progress(None, desc="adding the sound track")
                add_sound(video, track)
        except DcrtError as exc:
            raise gr.Error(str(exc)) from None
        sound = f"sound track: {track.name}\n" if track is not None else ""
        auto = f"auto prompt: {proposals([described])[0][0]}\n" if described is not None else ""
        return str(video), auto + sound + format_table(scores), str(video), prompt

    with gr.Tab("Magic Animator", elem_id="magic-animator"):
        with gr.Row():
            with gr.Column():
                photo = gr.Image(type="pil", label="Photo")
                describe_button = gr.Button("Describe")
                ideas = gr.Radio([], label="Proposed motions (best first)")
                prompt = gr.Textbox(label="Motion prompt")
                steps = gr.Slider(1, 1000 if defaults.steps > 60 else 60, value=defaults.steps, step=1, label="Steps")
                seed = gr.Number(value=defaults.seed, precision=0, label="Seed")
                upload = gr.File(
                    label=f"Sound track (optional: {', '.join(s[1:] for s in AUDIO_SUFFIXES)})",
                    file_types=list(AUDIO_SUFFIXES), type="filepath",
                )  # fmt: skip
                names = director.tracks()
                library = gr.Dropdown(
                    [NO_TRACK, PICKED_TRACK, *names], value=NO_TRACK, label="or one from the library",
                    visible=bool(names),
                )  # fmt: skip
                animate_button = gr.Button("Generate", variant="primary")
            with gr.Column():
                video = gr.Video(label="Magic video", autoplay=True)
                scores = gr.Textbox(label="Scores", lines=15, max_lines=20)
                download = gr.File(label="Download", elem_id="magic-download")
        describe_button.click(describe, [photo], [prompt, ideas], api_name="describe")
        ideas.change(lambda chosen: chosen or gr.skip(), [ideas], [prompt])
        animate_button.click(
            animate,
            [photo, prompt, steps, seed, upload, library],
            [video, scores, download, prompt],  # the prompt box shows the prompt animated, described where empty
            api_name="magic_animate",
        )
