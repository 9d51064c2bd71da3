"""The Triton model repository `dcrt serve` writes: `<dir>/dcrt/config.pbtxt` and `<dir>/dcrt/1/model.py`.

Every tensor is UINT8 with a leading batch dimension of 1 per request: images are the encoded file's bytes,
text is UTF-8. (BYTES tensors would be more usual for text, but the Python backend's stub in the
nvidia-pytriton wheel reads them wrongly with numpy 2; UINT8 is read the same by every numpy.) Variable
lengths batch together because every input allows ragged batches; the Python backend hands each request over
on its own. Torch-free: `dcrt serve --write-repo` needs neither torch nor Triton.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from dcrt.errors import UsageError
from dcrt.loading import BackendRequest

MODEL_NAME = "dcrt"


@dataclass(frozen=True)
class Tensor:
    name: str
    dims: tuple[int, ...]  # without the batch dimension
    optional: bool
    help: str


INPUTS = (
    Tensor("IMAGE", (-1,), False, "the image file's bytes (PNG, JPEG, anything PIL reads); interpolate: the first"),
    Tensor("LAST_IMAGE", (-1,), True, "interpolate: the last image's bytes"),
    Tensor("PROMPT", (-1,), True, "UTF-8 prompt (default: empty)"),
    Tensor("MODE", (-1,), True, "UTF-8 animate, interpolate or loop (default: animate)"),
    Tensor("OPTIONS", (-1,), True, 'UTF-8 JSON object of SamplingRequest fields, e.g. {"steps": 25, "seed": 7}'),
)
OUTPUTS = (
    Tensor("FRAMES", (-1, -1, -1, 3), False, "uint8 [T, H, W, 3]"),
    Tensor("VIDEO", (-1,), False, "the video as mp4 (H.264) bytes, made only when asked for"),
)


@dataclass(frozen=True)
class ServeOptions:
    """How Triton runs the model: instances, batching and the bounded queue."""

    instances: int = 1  # per GPU on a GPU machine (KIND_GPU / KIND_AUTO), else on the CPU
    max_batch: int = 4
    max_queue: int = 16  # requests waiting beyond this are refused at once (overload, HTTP 503)
    queue_timeout_s: float = 600.0  # a request that waited this long is refused and its slot freed
    batch_delay_ms: float = 5.0  # how long the batcher waits to fill a batch

    def check(self) -> None:
        for name in ("instances", "max_batch", "max_queue"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not self.queue_timeout_s > 0 or self.batch_delay_ms < 0:
            raise UsageError("--queue-timeout must be > 0 seconds and the batch delay >= 0")


def instance_kind(device: str | None) -> str:
    """KIND_GPU for cuda, KIND_CPU for cpu, else Triton's choice (GPU if it has one: N per GPU)."""
    if device is None:
        return "KIND_AUTO"
    return "KIND_GPU" if device.startswith("cuda") else "KIND_CPU"


def _tensor(t: Tensor, is_input: bool) -> str:
    dims = ", ".join(str(d) for d in t.dims)
    # Every input may differ in length between requests: ragged batching lets them share a batch.
    extra = (" optional: true" if t.optional else "") + (" allow_ragged_batch: true" if is_input else "")
    return f'  {{ name: "{t.name}" data_type: TYPE_UINT8 dims: [ {dims} ]{extra} }}'


def config_text(request: BackendRequest, serve: ServeOptions) -> str:
    """config.pbtxt: the Python backend, dynamic batching with a bounded queue, the instances, and the backend
    request (as JSON) that the model opens."""
    backend = json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(request).items()})
    return "\n".join(
        [
            f'name: "{MODEL_NAME}"',
            'backend: "python"',
            f"max_batch_size: {serve.max_batch}",
            "input [",
            ",\n".join(_tensor(t, True) for t in INPUTS),
            "]",
            "output [",
            ",\n".join(_tensor(t, False) for t in OUTPUTS),
            "]",
            "dynamic_batching {",
            f"  max_queue_delay_microseconds: {round(serve.batch_delay_ms * 1000)}",
            "  default_queue_policy {",
            "    timeout_action: REJECT",
            f"    default_timeout_microseconds: {round(serve.queue_timeout_s * 1e6)}",
            "    allow_timeout_override: true",
            f"    max_queue_size: {serve.max_queue}",
            "  }",
            "}",
            f"instance_group [ {{ count: {serve.instances} kind: {instance_kind(request.device)} }} ]",
            f'parameters {{ key: "backend_request" value {{ string_value: {json.dumps(backend)} }} }}',
            "",
        ]
    )


def model_py_text(python_path: list[str]) -> str:
    """1/model.py: Triton's entry point, the class in dcrt.serving.triton_model. `python_path`: folders put
    first on sys.path (Triton's stub ignores PYTHONPATH): `dcrt serve` names the dcrt it runs from."""
    return (
        '"""Written by `dcrt serve`: Triton\'s Python backend runs dcrt (dcrt.serving.triton_model)."""\n\n'
        "import sys\n\n"
        f"sys.path[:0] = [p for p in {python_path!r} if p not in sys.path]\n\n"
        "from dcrt.serving.triton_model import TritonPythonModel  # noqa: E402, F401\n"
    )


def write_repository(
    root: Path, request: BackendRequest, serve: ServeOptions, python_path: list[str] | None = None
) -> Path:
    """Write the repository under `root` (created; an existing dcrt model in it is replaced) -> the model folder."""
    if root.exists() and not root.is_dir():
        raise UsageError(f"{root} is a file; --write-repo needs a folder")
    model = root / MODEL_NAME
    (model / "1").mkdir(parents=True, exist_ok=True)
    (model / "config.pbtxt").write_text(config_text(request, serve))
    (model / "1" / "model.py").write_text(model_py_text(python_path or []))
    return model


def backend_request_from_config(config: dict) -> BackendRequest:
    """The BackendRequest `config_text` stored, from Triton's model config (as JSON, what the stub passes)."""
    fields = json.loads(config["parameters"]["backend_request"]["string_value"])
    for name in ("checkpoint", "export_dir", "engines"):
        if fields.get(name) is not None:
            fields[name] = Path(fields[name])
    return BackendRequest(**fields)
