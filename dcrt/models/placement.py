"""Where a model's networks live: on the compute device for good, or in host memory and on the device only while
they run (`dcrt.memory`'s offload switches).

    placement = Placement(model, torch.device("cuda"), offloaded=("text_encoder", "vae"))
    with placement.running("text_encoder"):
        context = model.text_encoder(tokens)   # its weights are on the device here, and only here

An offloaded network keeps one host copy of each tensor (page-locked on CUDA, so that the copy to the device is
asynchronous and runs at full bus speed); entering `running` puts a fresh device copy of each parameter and buffer
in its module, leaving it puts the host copy back, and the device copy is freed (the caching allocator reuses it
once the stream has passed the work that reads it). Nested `running` of a network already on the device copies
nothing: a pipeline holds the UNet for the whole loop while each step's call asks for it again.

Tensors are replaced in their modules' tables rather than moved with `Module.to` or `tensor.data = ...`: the same
code then runs on fake tensors (benchmarks/memory.py counts a run's device bytes on a simulated device).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

Slot = tuple[dict, str, bool]  # a module's `_parameters` or `_buffers` table, the name in it, is a parameter


def _slots(network: nn.Module) -> list[Slot]:
    return [
        (table, name, is_parameter)
        for module in network.modules()
        for table, is_parameter in ((module._parameters, True), (module._buffers, False))
        for name, tensor in table.items()
        if tensor is not None
    ]


def _put(slot: Slot, tensor: torch.Tensor) -> None:
    table, name, is_parameter = slot
    table[name] = nn.Parameter(tensor, requires_grad=False) if is_parameter else tensor


class Placement:
    def __init__(self, model: nn.Module, device: torch.device, offloaded: tuple[str, ...] = ()):
        """`model`'s networks (`model.networks`) go to `device`, but those in `offloaded` stay in host memory (the
        model's tensors must be on the CPU for those)."""
        self.device = device
        self.offloaded = offloaded
        self._users: Counter[str] = Counter()
        pin = device.type == "cuda" and torch.cuda.is_available()
        self._host: dict[str, list[tuple[Slot, torch.Tensor]]] = {}
        for name in model.networks:
            slots = _slots(getattr(model, name))
            if name not in offloaded:
                for slot in slots:
                    _put(slot, slot[0][slot[1]].detach().to(device))
                continue
            host = [(slot, slot[0][slot[1]].detach()) for slot in slots]
            if any(tensor.device.type != "cpu" for _, tensor in host):
                raise ValueError(f"offloaded network {name!r} must be loaded on the CPU")
            self._host[name] = [(slot, tensor.pin_memory() if pin else tensor) for slot, tensor in host]
            for slot, tensor in self._host[name]:
                _put(slot, tensor)

    @contextmanager
    def running(self, *names: str) -> Iterator[None]:
        """The named networks on the device inside the block (those not offloaded are there anyway)."""
        arriving = [name for name in names if name in self._host and self._users[name] == 0]
        self._users.update(names)
        for name in arriving:
            for slot, host in self._host[name]:
                _put(slot, host.to(self.device, non_blocking=True))
        try:
            yield
        finally:
            self._users.subtract(names)
            for name in dict.fromkeys(names):
                if name in self._host and self._users[name] == 0:
                    for slot, host in self._host[name]:
                        _put(slot, host)
