"""Where a model's networks live: on the compute device for good, or in host memory and on the device only while
they run (`dcrt.memory`'s offload switches).

    placement = Placement(model, torch.device("cuda"), offloaded=("text_encoder", "vae"))
    with placement.running("text_encoder"):
        context = model.text_encoder(tokens)   # its weights are on the device here, and only here

An offloaded network keeps one host copy of each tensor (page-locked on CUDA, so that the copy to the device is
asynchronous and runs at full bus speed); entering `running` points each parameter and buffer at a fresh device
copy, leaving it points them back at the host copy, and the device copy is freed (the caching allocator reuses
it once the stream has passed the work that reads it). Nested `running` of a network already on the device
copies nothing: a pipeline holds the UNet for the whole loop while each step's call asks for it again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class Placement:
    def __init__(self, model: nn.Module, device: torch.device, offloaded: tuple[str, ...] = ()):
        """`model`'s networks (`model.networks`) go to `device`, but those in `offloaded` stay in host memory (the
        model's tensors must be on the CPU for those)."""
        self.device = device
        self.model = model
        self.offloaded = offloaded
        self._users: Counter[str] = Counter()
        pin = device.type == "cuda" and torch.cuda.is_available()
        self._host: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for name in model.networks:
            network = getattr(model, name)
            if name not in offloaded:
                network.to(device)
                continue
            tensors = [*network.parameters(), *network.buffers()]
            if any(t.device.type != "cpu" for t in tensors):
                raise ValueError(f"offloaded network {name!r} must be loaded on the CPU")
            self._host[name] = [(t, t.data.pin_memory() if pin else t.data) for t in tensors]
            for tensor, host in self._host[name]:
                tensor.data = host

    @contextmanager
    def running(self, *names: str) -> Iterator[None]:
        """The named networks on the device inside the block (those not offloaded are there anyway)."""
        arriving = [name for name in names if name in self._host and self._users[name] == 0]
        for name in names:
            self._users[name] += 1
        for name in arriving:
            for tensor, host in self._host[name]:
                tensor.data = host.to(self.device, non_blocking=True)
        try:
            yield
        finally:
            for name in names:
                self._users[name] -= 1
            for name in names:
                if name in self._host and self._users[name] == 0:
                    for tensor, host in self._host[name]:
                        tensor.data = host
