"""Stable Video Diffusion (docs/models.md §8): image-only conditioning, EDM Euler sampling with per-frame
guidance, animate only. Its parts, by role, for the registry (dcrt.families)."""

from dcrt.families.base import Family

FAMILY = Family(
    name="svd",
    package=__name__,
    roles={
        "presets": "presets:PRESETS",
        "load_model": "checkpoint:load_svd_model",
        "random_model": "checkpoint:random_svd_model",
        "torch_backend": "torch_backend:TorchSVDBackend",
        "static_backend": "static:StaticSVDBackend",
        "pipeline_for": "pipeline:svd_pipeline_for",
        "io_table": "io_spec:io_table",
        "graph_modules": "export:graph_modules",
        "sample_inputs": "io_spec:sample_inputs",
        "animate": "generate:animate",
        "stream": "generate:stream",
        "check_animate": "options:check_animate",
        "check_run": "options:check_run",
        "option_default": "options:option_default",
        "bench": "bench:bench_report",
    },
    custom_size=False,
    checkpoint_folder_marker="unet",
)
