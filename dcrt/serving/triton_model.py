"""Triton's Python-backend model (`TritonPythonModel`), over dcrt.serving.service.VideoService. Imported only
inside Triton's stub process, where `triton_python_backend_utils` exists; the repository's 1/model.py
re-exports it."""

from __future__ import annotations

import json
from dataclasses import replace

import triton_python_backend_utils as pb_utils

from dcrt.serving.repository import INPUTS, OUTPUTS, backend_request_from_config
from dcrt.serving.service import VideoService


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        request = backend_request_from_config(json.loads(args["model_config"]))
        if args.get("model_instance_kind") == "GPU":  # one instance per GPU: the one Triton placed it on
            request = replace(request, device=f"cuda:{args['model_instance_device_id']}")
        elif request.device is None:
            request = replace(request, device="cpu")
        self.service = VideoService(request, log=lambda message: print(f"dcrt: {message}", flush=True))

    def execute(self, requests: list) -> list:
        """Each request on its own, in order; a failing one gets its error response, the others their videos."""
        responses = []
        for request in requests:
            inputs = {}
            for spec in INPUTS:
                tensor = pb_utils.get_input_tensor_by_name(request, spec.name)
                if tensor is not None:
                    inputs[spec.name] = tensor.as_numpy()
            wanted = tuple(n for n in request.requested_output_names() if n in {t.name for t in OUTPUTS})
            outcome = self.service.respond(inputs, wanted or ("FRAMES",), cancelled=request.is_cancelled)
            if outcome.error is not None:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(outcome.error)))
            else:
                tensors = [pb_utils.Tensor(name, array) for name, array in outcome.outputs.items()]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
