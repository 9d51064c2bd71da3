"""The director: a layer over the engine that describes an image as a motion prompt (describe), measures what a
generated video did (score: motion, consistency, fidelity to the conditioning images, prompt adherence, flicker,
broken frames) and corrects a run until its scores meet a target (correct), offline with the checkpoint's own
OpenCLIP, or with an OpenAI-compatible chat model where one is given."""
