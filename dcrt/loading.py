"""From "which model, run how" to a ready backend: the weights (checkpoint or random), the torch model, an
ONNX export, and `open_backend`, which is `--backend auto` for the command line and Python alike.

    backend = dcrt.open_backend("512")                 # the fastest backend this machine has for preset 512
    video = dcrt.animate(backend, "boat.png", "a boat sailing")

`BackendRequest` is the one description of that choice: the command line renders its fields as options
(dcrt.cli.options). Which backend `auto` picks is decided in `dcrt.backends.select`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from dcrt.backends.select import BackendChoice, check_backend_name
from dcrt.errors import UsageError
from dcrt.families import family_of
from dcrt.families.base import PresetBase
from dcrt.presets import DEFAULT_PRESET, get_preset
from dcrt.weights import RANDOM_SEED, Weights, requested_weights, required_weights

DEVICES = ("cpu", "cuda")  # and cuda:N
WEIGHT_DTYPES = (
    "fp32",
    "fp16",
    "bf16",
)  # the keys of dcrt.families.state_dicts.WEIGHT_DTYPES, named without torch
Log = Callable[[str], None]
_logger = logging.getLogger("dcrt")


def _meta(text: str, panel: str, flag: str | None = None) -> dict:
    return {"help": text, "panel": panel} | ({"flag": flag} if flag else {})


MODEL, BACKEND = "Model", "Backend"


@dataclass(frozen=True)
class BackendRequest:
    """Which weights, run by which backend on which device. `preset` None: the command's default."""

    preset: str | None = field(
        default=None,
        metadata=_meta("model preset: 256, 512, 1024, 512-interp, or tiny / tiny-256 (random weights)", MODEL, "--res"),
    )
    checkpoint: Path | None = field(
        default=None,
        metadata=_meta(
            "model.ckpt or .safetensors (default: $DCRT_CHECKPOINT_DIR, then the HF cache)", MODEL, "--ckpt"
        ),
    )
    random_weights: bool = field(default=False, metadata=_meta("seeded random weights instead of a checkpoint", MODEL))
    backend: str = field(
        default="auto",
        metadata=_meta(
            "auto (TensorRT engines, else AOTInductor packages, else onnxruntime-gpu, else PyTorch on CUDA, else "
            "AOTInductor / ONNX Runtime / PyTorch on the CPU; `dcrt info` says which; an export or engines made from "
            "other weights or for another size are passed over with a notice), trt, aoti, ort or torch",
            BACKEND,
        ),
    )
    device: str | None = field(
        default=None,
        metadata=_meta("cpu or cuda (default: cuda when a GPU is visible and the backend uses one)", BACKEND),
    )
    dtype: str | None = field(
        default=None, metadata=_meta("torch backend weights: fp32, fp16 or bf16 (default: fp16 on cuda)", BACKEND)
    )
    export_dir: Path | None = field(
        default=None, metadata=_meta("export directory for --backend ort (default: export/<res>)", BACKEND)
    )
    engines: Path = field(
        default=Path("engines"),
        metadata=_meta("root of the TensorRT and AOTInductor bundles (`dcrt build`)", BACKEND),
    )
    verify: bool = field(
        default=False,
        metadata=_meta("re-hash every file of the export or engine bundle (default: check names and sizes)", BACKEND),
    )

    def preset_config(self) -> PresetBase:
        return get_preset(self.preset or DEFAULT_PRESET)

    def export_location(self) -> Path:
        return self.export_dir or Path("export") / self.preset_config().name

    def check_names(self) -> None:
        """Backend, device and dtype names and the weights flags: checked before torch is imported."""
        check_backend_name(self.backend)
        check_device_name(self.device)
        if self.dtype is not None and self.dtype not in WEIGHT_DTYPES:
            raise UsageError(f"unknown dtype {self.dtype!r}; choose {', '.join(WEIGHT_DTYPES)}")
        if self.random_weights and self.checkpoint is not None:
            raise UsageError("--ckpt and --random-weights exclude each other: choose one")

    def requested_weights(self) -> Weights | None:
        return requested_weights(self.preset_config(), self.checkpoint, self.random_weights)

    def required_weights(self) -> Weights:
        return required_weights(self.preset_config(), self.checkpoint, self.random_weights)


def check_device_name(device: str | None) -> None:
    if device is not None and device not in DEVICES and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise UsageError(f"unknown device {device!r}; choose cpu or cuda")


def usable_device(device: str | None) -> str:
    """`device` (default cpu), checked to exist on this machine. Imports torch."""
    check_device_name(device)
    import torch

    device = device or "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but no CUDA GPU is visible (see `dcrt info`)")
    return device


def load_torch_model(preset: PresetBase, weights: Weights, device: str | None = None, dtype: str | None = None):
    """The torch model of `preset`'s family (a `DynamiCrafter`, a `StableVideoDiffusion`, ...) holding `weights`, on
    `device` (default cpu) in `dtype` (default fp16 on CUDA, else fp32)."""
    from dcrt.families.state_dicts import WEIGHT_DTYPES as TORCH_DTYPES

    family = family_of(preset)
    device = usable_device(device)
    torch_dtype = TORCH_DTYPES[dtype or ("fp16" if device.startswith("cuda") else "fp32")]
    if weights.checkpoint is None:
        return family.part("random_model")(preset, seed=RANDOM_SEED, device=device, dtype=torch_dtype)
    return family.part("load_model")(weights.checkpoint, preset=preset, device=device, dtype=torch_dtype)


def torch_backend(model):
    """The PyTorch backend of a loaded model, of its family."""
    return family_of(model.preset).part("torch_backend")(model)


def ensure_export(
    preset: PresetBase,
    weights: Weights,
    out: Path,
    precision: str = "fp32",
    height: int | None = None,
    width: int | None = None,
    force: bool = False,
    log: Log = lambda message: None,
):
    """The export of `weights` in `out` (`dcrt export`): kept when it is up to date, else made (fp32 on the CPU).
    Returns its manifest."""
    from dcrt.artifacts.export import ExportRequest, export_model, is_up_to_date, kept_export

    request = ExportRequest.for_weights(weights, preset, precision, height, width)
    if not force and is_up_to_date(out, request):  # before loading the model: that is the slow part
        log(f"{out} is up to date (use --force to export again)")
        return kept_export(out, request)
    return export_model(load_torch_model(preset, weights, "cpu", "fp32"), out, request, force=True, log=log)


def open_graphs(chosen: BackendChoice, request: BackendRequest):
    """The chosen runtime's graphs of the chosen export or bundle (a dcrt.backends.static.GraphRuntime), on the
    device each runtime has always been given: its manifest is read here, once."""
    if chosen.name == "trt":
        from dcrt.backends.tensorrt_backend import TensorRTGraphs

        return TensorRTGraphs(chosen.location, "cuda", verify=request.verify)
    if chosen.name == "aoti":
        from dcrt.backends.aoti_backend import AotiGraphs

        return AotiGraphs(chosen.location, request.device or chosen.device, verify=request.verify)
    from dcrt.backends.onnxruntime_backend import OnnxRuntimeGraphs

    return OnnxRuntimeGraphs(chosen.location, chosen.device, verify=request.verify)


def open_backend(
    request: BackendRequest | str | None = None,
    height: int | None = None,
    width: int | None = None,
    log: Log | None = None,
    **changes,
):
    """The backend `request.backend` names, or for `auto` the fastest this machine has whose export or engines
    hold the requested weights and size (dcrt.backends.select). `request` may be a preset name, with the other
    `BackendRequest` fields as keywords: `open_backend("512", backend="torch", device="cuda")`.

    `log` hears which backend and weights the run uses, and each export or bundle passed over (default: the
    "dcrt" logger)."""
    from dcrt.backends.machine_facts import probe
    from dcrt.backends.select import choose_backend

    if request is None or isinstance(request, str):
        request = BackendRequest(preset=request, **changes)
    elif changes:
        request = replace(request, **changes)
    request.check_names()
    log = log or _logger.info
    preset = request.preset_config()
    if request.device is not None:
        usable_device(request.device)
    weights = request.requested_weights()
    chosen = choose_backend(
        preset,
        request.backend,
        request.engines,
        request.export_location(),
        probe(),
        request.device,
        height,
        width,
        weights,
        lambda message: log(f"notice: {message}"),
    )
    if chosen.name == "torch":
        weights = weights or request.required_weights()  # none at hand: says where to get them
        chosen = replace(chosen, weights=str(weights))
        backend = torch_backend(load_torch_model(preset, weights, chosen.device, request.dtype))
    else:  # a runtime of static graphs, behind the adapter of the family its artifact holds
        from dcrt.backends.static import family_backend

        backend = family_backend(open_graphs(chosen, request))
    # Said once the backend is open: a run that fails to load ends with its one error line alone.
    for notice in chosen.notices:
        log(f"notice: {notice}")
    log(chosen.summary())
    return backend
