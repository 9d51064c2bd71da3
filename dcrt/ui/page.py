"""The original demo's two tabs: image to video, and interpolation / loop (two images); prompt, steps, guidance
scale, eta, frame stride and seed; progress per denoising step; the video; example inputs from a folder in the
original's `prompts/` layout (`--examples`). With a `Director`, the Magic Animator tab too (dcrt.ui.animator).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from dcrt.batch import Job
from dcrt.errors import DcrtError
from dcrt.families.dynamicrafter.config import Preset
from dcrt.families.dynamicrafter.options import SamplingRequest, resolve_options
from dcrt.serving.service import mp4_bytes
from dcrt.ui.generation import Generate, png

if TYPE_CHECKING:
    from dcrt.ui.animator import Director


def build_ui(generate: Generate, preset: Preset, examples: list[Job] = (), director: Director | None = None):
    """The page (a gr.Blocks); its two buttons are also API endpoints: /animate and /interpolate. `examples`
    (dcrt.batch.read_prompt_dir) fill the image tab, or the interpolation tab when they are pairs of images. With
    a `director` (an animate model), the Magic Animator tab too (its endpoints: /describe, /magic_animate)."""
    import gradio as gr

    modes = [m for m in ("interpolate", "loop") if m in preset.modes]
    defaults = resolve_options(preset, preset.modes[0])
    out_dir = Path(tempfile.mkdtemp(prefix="dcrt-ui-"))

    def run(images, prompt, mode, steps, guidance_scale, eta, frame_stride, seed, progress=gr.Progress()):
        if any(image is None for image in images):
            raise gr.Error("upload an image first" if len(images) == 1 else "upload both images first")
        sampling = SamplingRequest(
            steps=int(steps), guidance_scale=float(guidance_scale), eta=float(eta),
            frame_stride=int(frame_stride), seed=int(seed),
        )  # fmt: skip
        try:
            frames = generate([png(i) for i in images], prompt, mode, sampling, lambda s, t: progress((s, t)))
        except DcrtError as exc:
            raise gr.Error(str(exc)) from None
        path = Path(tempfile.mkstemp(suffix=".mp4", dir=out_dir)[1])
        path.write_bytes(mp4_bytes(frames))
        return str(path)

    def sampling_controls():
        lo, hi = preset.sampling.frame_stride_range
        return [
            gr.Slider(1, 1000 if defaults.steps > 60 else 60, value=defaults.steps, step=1, label="Sampling steps"),
            gr.Slider(1.0, 15.0, value=defaults.guidance_scale, step=0.5, label="CFG scale"),
            gr.Slider(0.0, 1.0, value=defaults.eta, step=0.1, label="ETA"),
            gr.Slider(lo, hi, value=defaults.frame_stride, step=1, label="Frame stride / FPS"),
            gr.Number(value=defaults.seed, precision=0, label="Seed"),
        ]

    with gr.Blocks(title=f"dcrt: DynamiCrafter {preset.name}", analytics_enabled=False) as page:
        gr.Markdown(f"# DynamiCrafter ({preset.name}) on dcrt")
        if "animate" in preset.modes:
            with gr.Tab("Image to video"):
                with gr.Row():
                    with gr.Column():
                        image = gr.Image(type="pil", label="Input image")
                        prompt = gr.Textbox(label="Prompt")
                        controls = sampling_controls()
                        button = gr.Button("Generate", variant="primary")
                    video = gr.Video(label="Generated video", autoplay=True)
                singles = [[str(job.images[0]), job.prompt] for job in examples if len(job.images) == 1]
                if singles:
                    gr.Examples(singles, [image, prompt], label="Examples")
                button.click(
                    lambda im, p, *s, progress=gr.Progress(): run([im], p, "animate", *s, progress=progress),
                    [image, prompt, *controls], video, api_name="animate",
                )  # fmt: skip
        if modes:
            with gr.Tab("Interpolation / loop"):
                with gr.Row():
                    with gr.Column():
                        first, last = (
                            gr.Image(type="pil", label="First frame"),
                            gr.Image(type="pil", label="Last frame"),
                        )
                        prompt2 = gr.Textbox(label="Prompt")
                        mode = gr.Radio(modes, value=modes[0], label="Mode (loop uses the first frame only)")
                        controls2 = sampling_controls()
                        button2 = gr.Button("Generate", variant="primary")
                    video2 = gr.Video(label="Generated video", autoplay=True)
                pairs = [[*map(str, job.images), job.prompt] for job in examples if len(job.images) == 2]
                if pairs:
                    gr.Examples(pairs, [first, last, prompt2], label="Examples")

                def run_pair(a, b, p, m, *s, progress=gr.Progress()):
                    return run([a, b] if m == "interpolate" else [a], p, m, *s, progress=progress)

                button2.click(run_pair, [first, last, prompt2, mode, *controls2], video2, api_name="interpolate")
        if director is not None and "animate" in preset.modes:
            from dcrt.ui.animator import add_tab

            add_tab(generate, director, out_dir)
    return page
