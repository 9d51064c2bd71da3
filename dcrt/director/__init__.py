"""The director: the layer over the Python API that chooses what to generate and judges what came out. It scores
images and videos in the checkpoint's own CLIP image-text space (`clip_space`), proposes motion prompts for an
image from a curated prompt bank or an OpenAI-compatible chat model (`describe`, `llm`), and measures generated
videos (`score`); it renders storyboards into films (`storyboard`, `story`, `story_goal`) and lays sound tracks
under them (`sound`). Nothing here runs the diffusion model itself: it calls `dcrt.api` like any user."""
