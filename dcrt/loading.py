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

from dcrt.backends.select import BackendChoice, check_backend_name, check_torch_only, torch_only_flags
from dcrt.errors import DcrtError, UsageError
from dcrt.families import family_of
from dcrt.families.base import PresetBase
from dcrt.memory import AUTO, FAST, PROFILES, MemoryProfile, ProfileChoice, check_memory_name
from dcrt.presets import DEFAULT_PRESET, PRESETS, get_preset
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
WEIGHT_STORAGE = ("fp8",)  # --weights: dcrt.models.fp8
_MEMORY_HELP = (
    "how much of the run sits on the device at once, traded against speed (torch backend only): "
    + "; ".join(f"{p.name}: {p.summary}" for p in PROFILES.values())
    + f"; {AUTO}: the fastest whose estimated peak fits the GPU's free memory (fast on the CPU; a static backend "
    "runs as built)"
)


@dataclass(frozen=True)
class BackendRequest:
    """Which weights, run by which backend on which device. `preset` None: the command's default."""

    preset: str | None = field(
        default=None,
        metadata=_meta(
            "model preset: "
            + ", ".join(name for name, p in PRESETS.items() if p.hf_repo is not None)
            + "; with random weights only (tests, trying the commands): "
            + ", ".join(name for name, p in PRESETS.items() if p.hf_repo is None),
            MODEL,
            "--res",
        ),
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
            "ONNX Runtime / AOTInductor / PyTorch on the CPU; `dcrt info` says which; an export or engines made from "
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
    memory: str = field(default=AUTO, metadata=_meta(_MEMORY_HELP, BACKEND))
    weight_storage: str | None = field(
        default=None,
        metadata=_meta(
            "fp8: the torch backend keeps its Linear and Conv weights as float8 e4m3 with a scale per output channel, "
            "upcast per layer at call time: half the weight memory, and a different picture (docs/memory.md)",
            BACKEND,
            "--weights",
        ),
    )

    def torch_only(self) -> list[str]:
        """This request's flags that only the torch backend honours (dcrt.backends.select.torch_only_flags)."""
        return torch_only_flags(self.memory, self.weight_storage)

    def preset_config(self) -> PresetBase:
        return get_preset(self.preset or DEFAULT_PRESET)

    def export_location(self) -> Path:
        return self.export_dir or Path("export") / self.preset_config().name

    def check_names(self) -> None:
        """Backend, device and dtype names and the weights flags: checked before torch is imported."""
        check_backend_name(self.backend)
        check_memory_name(self.memory)
        if self.weight_storage not in (None, *WEIGHT_STORAGE):
            raise UsageError(f"unknown --weights {self.weight_storage!r}; choose {', '.join(WEIGHT_STORAGE)}")
        check_torch_only(self.torch_only(), self.backend)
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


def default_dtype(device: str) -> str:
    """The weights' dtype when none is asked for: fp16 on CUDA, else fp32."""
    return "fp16" if device.startswith("cuda") else "fp32"


def load_torch_model(preset: PresetBase, weights: Weights, device: str | None = None, dtype: str | None = None):
    """The torch model of `preset`'s family (a `DynamiCrafter`, a `StableVideoDiffusion`, ...) holding `weights`, on
    `device` (default cpu) in `dtype` (default fp16 on CUDA, else fp32)."""
    from dcrt.families.state_dicts import WEIGHT_DTYPES as TORCH_DTYPES

    family = family_of(preset)
    device = usable_device(device)
    torch_dtype = TORCH_DTYPES[dtype or default_dtype(device)]
    if weights.checkpoint is None:
        return family.part("random_model")(preset, seed=RANDOM_SEED, device=device, dtype=torch_dtype)
    return family.part("load_model")(weights.checkpoint, preset=preset, device=device, dtype=torch_dtype)


def torch_backend(model, memory: str | MemoryProfile = FAST, device: str | None = None, log: Log | None = None):
    """The PyTorch backend of a loaded model, of its family, running on `device` (default: where the model is) as
    memory profile `memory` says (a `dcrt.memory.MemoryProfile` or its name; `auto` is resolved against `device`'s
    free memory at the preset's size, and `log` hears which profile and why). This is how a profile reaches a
    model from `dcrt.load_model`, which `dcrt.animate(model, ...)` would run as `fast`:

        model = dcrt.load_model("model.ckpt", device="cpu", dtype=torch.float16)  # offloading: on the CPU
        video = dcrt.animate(dcrt.torch_backend(model, memory="low", device="cuda"), "boat.png", "a boat")
    """
    import torch

    from dcrt.families.state_dicts import WEIGHT_DTYPES as TORCH_DTYPES

    device = str(device or model.device)
    if isinstance(memory, str):
        dtype = next(name for name, torch_dtype in TORCH_DTYPES.items() if torch_dtype == model.dtype)
        preset = model.preset
        size = (preset.height, preset.width, preset.frames)
        memory = resolve_memory(memory, preset.name, dtype, device, size, log or _logger.info).profile
    return family_of(model.preset).part("torch_backend")(model, memory=memory, device=torch.device(device))


def free_device_memory(device: str) -> int | None:
    """Free bytes on a CUDA `device`; None on the CPU, whose memory no profile budgets."""
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.cuda.mem_get_info(torch.device(device))[0]


def resolve_memory(
    name: str, preset: str, dtype: str, device: str, size: tuple[int, int, int], log: Log
) -> ProfileChoice:
    """Profile `name`, or for `auto` the one `dcrt.memory.choose_profile` picks for this run (preset, dtype name,
    height x width x frames) from `device`'s free memory; `log` hears one line naming it and why. No estimates
    file (benchmarks/memory.py writes it): `fast`, and the line says so."""
    from dcrt.memory import choose_profile, load_estimates

    free = free_device_memory(device) if name == AUTO else None
    try:
        estimates = load_estimates() if free is not None else {}
    except FileNotFoundError:
        choice = ProfileChoice(FAST, "auto: no estimates file (benchmarks/memory.py --write-estimates)")
    else:
        choice = choose_profile(name, preset, dtype, free, size, estimates)
    log(f"memory: {choice.profile.name} ({choice.reason}): {choice.profile.summary}")
    return choice


def open_torch_backend(
    preset: PresetBase,
    weights: Weights,
    device: str,
    dtype: str | None,
    memory: MemoryProfile,
    weight_storage: str | None = None,
):
    """The family's torch backend of `weights` on `device` as `memory` says. The weights are loaded on the CPU in
    the run's dtype (and stored as fp8 there, with `weight_storage` "fp8") when the profile offloads a network or
    fp8 is asked for, and the backend places them: the whole model never sits on the device first."""
    from dcrt.models.fp8 import store_weights_fp8

    dtype = dtype or default_dtype(device)
    on_host = memory.offload or memory.offload_unet or weight_storage is not None
    model = load_torch_model(preset, weights, "cpu" if on_host else device, dtype)
    if weight_storage == "fp8":
        store_weights_fp8(model)
    return torch_backend(model, memory=memory, device=device)


def with_backend(request: BackendRequest, name: str) -> BackendRequest:
    """`request` run by backend `name`, as `dcrt bench` opens each of several: a static backend runs as built, so
    it takes `auto` memory whatever profile the torch backend was asked to run."""
    return replace(request, backend=name, memory=request.memory if name in ("auto", "torch") else AUTO)


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


def _request_of(request: BackendRequest | str | None, changes: dict) -> BackendRequest:
    """`open_backend`'s request: a preset name (or None) and keywords, or a request with some fields changed."""
    if request is None or isinstance(request, str):
        return BackendRequest(preset=request, **changes)
    return replace(request, **changes) if changes else request


def _choose_and_open(request: BackendRequest, height: int | None, width: int | None, weights, log: Log):
    """(the choice, its opened static backend) or (torch's choice, None: opened by the caller). An export or bundle
    that fails to load (corrupt, truncated) is passed over by auto, which then chooses again; a named backend
    raises its one line."""
    from dcrt.backends.machine_facts import probe
    from dcrt.backends.select import choose_backend
    from dcrt.backends.static import family_backend

    facts, unusable = probe(), {}  # unusable: location -> why it failed to load
    while True:
        chosen = choose_backend(
            request.preset_config(),
            request.backend,
            request.engines,
            request.export_location(),
            facts,
            request.device,
            height,
            width,
            weights,
            lambda message: log(f"notice: {message}"),
            request.torch_only(),
            unusable,
        )
        if chosen.name == "torch":
            return chosen, None
        try:  # a runtime of static graphs, behind the adapter of the family its artifact holds
            return chosen, family_backend(open_graphs(chosen, request))
        except DcrtError as exc:
            if request.backend != "auto":
                raise
            unusable[chosen.location] = str(exc)


def open_backend(
    request: BackendRequest | str | None = None,
    height: int | None = None,
    width: int | None = None,
    log: Log | None = None,
    frames: int | None = None,
    **changes,
):
    """The backend `request.backend` names, or for `auto` the fastest this machine has whose export or engines
    hold the requested weights and size (dcrt.backends.select). `request` may be a preset name, with the other
    `BackendRequest` fields as keywords: `open_backend("512", backend="torch", device="cuda")`.

    `log` hears which backend and weights the run uses, which memory profile (`request.memory`, dcrt.memory) and
    why, and each export or bundle passed over (default: the "dcrt" logger). `frames`: the run's length (default:
    the preset's), for `--memory auto`'s estimate."""
    request = _request_of(request, changes)
    request.check_names()
    log = log or _logger.info
    preset = request.preset_config()
    if request.device is not None:
        usable_device(request.device)
    weights = request.requested_weights()
    chosen, backend = _choose_and_open(request, height, width, weights, log)
    lines: list[str] = []  # said once the backend is open: a run that fails to load ends with its one error line
    if chosen.name == "torch":
        weights = weights or request.required_weights()  # none at hand: says where to get them
        chosen = replace(chosen, weights=str(weights))
        dtype = request.dtype or default_dtype(chosen.device)
        size = (height or preset.height, width or preset.width, frames or preset.frames)
        memory = resolve_memory(request.memory, preset.name, dtype, chosen.device, size, lines.append).profile
        backend = open_torch_backend(preset, weights, chosen.device, dtype, memory, request.weight_storage)
    else:
        lines.append(f"memory: {chosen.name} runs as built, everything on the device (--memory {request.memory})")
    for line in [f"notice: {notice}" for notice in chosen.notices] + lines:
        log(line)
    log(chosen.summary())
    return backend
