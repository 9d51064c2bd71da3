"""`dcrt ui`: the original demo's Gradio page with dcrt underneath (dcrt.ui.page), and the Magic Animator tab
(dcrt.ui.animator: describe a photo, animate it, score the video, lay a sound track under it). The videos are made
in this process or on a `dcrt serve` endpoint (dcrt.ui.generation).
"""

import os

# Gradio reads this when it is imported (each module here imports it later, lazily): the page reports nothing.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from dcrt.ui.animator import Director  # noqa: E402
from dcrt.ui.generation import Generate, in_process, remote  # noqa: E402
from dcrt.ui.page import build_ui  # noqa: E402

__all__ = ["Director", "Generate", "build_ui", "in_process", "remote"]
