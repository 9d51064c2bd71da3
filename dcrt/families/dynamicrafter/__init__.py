"""DynamiCrafter, 512-interp and ToonCrafter (docs/models.md §1-7): text and image conditioning, DDIM sampling
with classifier-free guidance, animate / interpolate / loop. Its parts, by role, for the registry
(dcrt.families)."""

from dcrt.families.base import Family

FAMILY = Family(
    name="dynamicrafter",
    package=__name__,
    roles={
        "presets": "presets:PRESETS",
        "load_model": "checkpoint:load_model",
        "random_model": "checkpoint:random_model",
        "torch_backend": "torch_backend:TorchBackend",
        "static_backend": "static:StaticShapeBackend",
        "pipeline_for": "pipeline:pipeline_for",
        "io_table": "io_spec:io_table",
        "graph_modules": "export:graph_modules",
        "sample_inputs": "io_spec:sample_inputs",
        "host_fields": "host:host_fields",
        "animate": "generate:animate",
        "stream": "generate:stream",
        "check_animate": "options:check_animate",
        "check_run": "options:check_run",
        "option_default": "options:option_default",
        "bench": "bench:bench_report",
    },
)
