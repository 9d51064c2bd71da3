"""StaticShapeBackend's mapping of the Backend interface onto static graphs, over a runtime that records its calls."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import dcrt
from dcrt.artifacts.graphs import io_table
from dcrt.errors import UsageError
from dcrt.families.dynamicrafter.static import StaticShapeBackend


class RecordingGraphs:
    """A `GraphRuntime` whose graphs each return a buffer of their output shape filled with the call number, and
    record their input shapes."""

    capturable = False
    precision = "float32 graphs"
    device = torch.device("cpu")

    def __init__(self, directory: Path, preset="tiny"):
        self.preset = dcrt.get_preset(preset)
        self.specs = io_table(self.preset)
        self.directory = directory
        save_file({"alphas_cumprod": torch.ones(3)}, directory / "schedule.safetensors")
        self.manifest = type("Manifest", (), {"schedule": {"schedule.safetensors": "sha256"}})()
        self.calls = []

    def execute(self, name, inputs):
        self.calls.append((name, [tuple(x.shape) for x in inputs]))
        return tuple(torch.full(t.shape, float(len(self.calls))) for t in self.specs[name].outputs)


def recording_backend(directory, preset="tiny") -> StaticShapeBackend:
    return StaticShapeBackend(RecordingGraphs(directory, preset))


def _unet_inputs(backend, batch):
    spec = backend.specs["unet"]
    return [torch.zeros(batch, *t.shape[1:], dtype=t.torch_dtype) for t in spec.inputs]


def test_batches_map_onto_the_static_graphs(tmp_path):
    backend = recording_backend(tmp_path)
    assert backend.unet(*_unet_inputs(backend, 1)).shape[0] == 1  # on the batch-2 graph
    assert backend.unet(*_unet_inputs(backend, 3)).shape[0] == 3
    assert [(c, shapes[0][0]) for c, shapes in backend.graphs.calls] == [("unet", 2), ("unet_image_guidance", 3)]
    tokens = torch.zeros(3, 77, dtype=torch.int64)
    assert backend.encode_text(tokens)[:, 0, 0].tolist() == [3.0, 4.0, 5.0]  # a row per call, each kept
    z = torch.zeros(3, *backend.specs["vae_decoder"].inputs[0].shape[1:])
    assert backend.decode_latents(z).shape[0] == 3 and backend.graphs.calls[-1][1][0][0] == backend.decode_chunk
    frames = torch.zeros(1, *backend.specs["vae_encoder"].inputs[0].shape[1:])
    assert backend.encode_latents(frames).shape[0] == 1 and backend.graphs.calls[-1][1][0][0] == backend.encode_frames
    assert set(backend.schedule_tensors()) == {"alphas_cumprod"}


def test_another_shape_is_refused_before_the_graph_runs(tmp_path):
    backend = recording_backend(tmp_path)
    x, t, context, frame_stride = _unet_inputs(backend, 2)
    with pytest.raises(UsageError, match=r"unet: input context must be \[2, 333, 64\], got \[2, 77, 64\]"):
        backend.unet(x, t, context[:, :77], frame_stride)
    assert backend.graphs.calls == []


def test_dual_ref_clips_run_on_the_graph_of_their_length(tmp_path):
    # docs/models.md §6.3: the decoder graphs take a whole clip (16 frames) or the second pass's 14
    backend = recording_backend(tmp_path, "tiny-tooncrafter")
    frames = torch.zeros(1, *backend.specs["vae_encoder"].inputs[0].shape[1:])
    z, references = backend.encode_keyframes(frames)  # one key frame (loop), padded to the graph's two
    calls = backend.graphs.calls
    assert z.shape[0] == 1 and [r.shape[0] for r in references] == [1] * 5
    assert calls == [("vae_encoder", [(2, 3, 64, 64)])]
    references = tuple(r.expand(2, -1, -1, -1) for r in references)
    for frames, graph in ((16, "vae_decoder"), (14, "vae_decoder_second_pass")):
        assert backend.decode_latents(torch.zeros(frames, 4, 8, 8), references).shape == (frames, 3, 64, 64)
        assert calls[-1][0] == graph and calls[-1][1][1:] == [tuple(r.shape) for r in references]
    with pytest.raises(UsageError, match=r"clips of \[14, 16\] frames, not 4"):
        backend.decode_latents(torch.zeros(4, 4, 8, 8), references)
