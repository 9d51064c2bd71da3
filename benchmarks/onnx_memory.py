"""Memory of one graph's forward: PyTorch vs ONNX Runtime (CPU), peak anonymous RSS above the start.

    python benchmarks/onnx_memory.py --preset 512 --component unet_image_guidance --size 64x128 --size 128x256 \
        [--ckpt model.ckpt] [--out benchmarks/results/onnx-memory-cpu.json]

Per size: traces the component (as `dcrt export` does), then runs the same inputs through the
PyTorch module and through ONNX Runtime three ways: as the export's parity check configures it, the
same with ONNX Runtime's planned buffer reuse switched back on, and with default session options.
Each run samples /proc/self/status (RssAnon, what the OOM killer counts) every 20 ms. Weights come
memory-mapped from `--ckpt`, so they are not anonymous memory.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from pathlib import Path

import onnxruntime as ort
import torch

import dcrt
from dcrt.artifacts.export import export_graph, graph_modules, parity_session_options, relative_error
from dcrt.artifacts.graphs import io_table, sample_inputs
from dcrt.bench import PeakMemory

REPO = Path(__file__).resolve().parents[1]


def session_options() -> dict[str, ort.SessionOptions]:
    with_reuse = parity_session_options()
    with_reuse.enable_mem_reuse = True
    return {
        "onnxruntime_parity_session": parity_session_options(),
        "onnxruntime_parity_session_with_reuse": with_reuse,
        "onnxruntime_default_session": ort.SessionOptions(),
    }


def measure(model, component: str, height: int, width: int) -> dict:
    spec = io_table(model.preset, height, width)[component]
    inputs = sample_inputs(spec, model.preset)
    module = graph_modules(model, torch.float32)[component]
    with tempfile.TemporaryDirectory() as tmp:
        files = export_graph(module, spec, inputs, Path(tmp) / spec.filename)
        gc.collect()
        with torch.no_grad(), PeakMemory(period=0.02) as torch_peak:
            reference = module(*inputs)
        feeds = {t.name: x.numpy() for t, x in zip(spec.inputs, inputs)}
        runs = {"pytorch": {"peak_anon_rise_gib": torch_peak.anon_rise_gib()}}
        for name, options in session_options().items():
            gc.collect()
            with PeakMemory(period=0.02) as peak:
                session = ort.InferenceSession(str(files[0]), options, providers=["CPUExecutionProvider"])
                start = time.perf_counter()
                out = torch.from_numpy(session.run([spec.outputs[0].name], feeds)[0])
                seconds = time.perf_counter() - start
                del session
            runs[name] = {
                "peak_anon_rise_gib": peak.anon_rise_gib(),
                "run_s": seconds,
                "rel_error": relative_error(out, reference),
            }
    return {"component": component, "height": height, "width": width, "input_shapes": spec.as_dict(), **runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="512")
    parser.add_argument("--component", default="unet_image_guidance")
    parser.add_argument("--size", action="append", required=True, help="HxW of the video, e.g. 128x256")
    parser.add_argument("--ckpt", type=Path, help="checkpoint (memory-mapped); default: seeded random weights")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "onnx-memory-cpu.json")
    args = parser.parse_args()
    model = dcrt.load_model(args.ckpt, preset=args.preset) if args.ckpt else dcrt.random_model(args.preset, seed=0)
    results = []
    columns = ["pytorch", *session_options()]
    print(
        "| size | PyTorch | ORT (parity session) | ORT (parity + planned reuse) | ORT (defaults) | ORT error |\n"
        "|---|---|---|---|---|---|"
    )
    for size in args.size:
        height, width = (int(v) for v in size.split("x"))
        r = measure(model, args.component, height, width)
        results.append(r)
        peaks = " | ".join(f"{r[c]['peak_anon_rise_gib']:.2f} GiB" for c in columns)
        print(f"| {size} | {peaks} | {r['onnxruntime_parity_session']['rel_error']:.1e} |", flush=True)
    report = {"preset": args.preset, "weights": str(args.ckpt or "random"), "results": results}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(args.out)


if __name__ == "__main__":
    main()
