"""Regenerate the results index in benchmarks/README.md from the committed JSON under results/.

python benchmarks/index.py
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
START, END = "<!-- results:start -->", "<!-- results:end -->"


def _frames(data: dict) -> str:
    """ ", 64 frames" for a longer video (reports before `--frames` existed are 16-frame runs)."""
    frames = data.get("frames", 16)
    return "" if frames == 16 else f", {frames} frames"


def rows() -> list[str]:
    lines = [
        "| report | device | preset | size | steps | backends (end-to-end s, vs baseline) |",
        "|---|---|---|---|---|---|",
    ]
    for path in sorted((HERE / "results").glob("bench-*.json")):
        data = json.loads(path.read_text())
        cells = []
        for r in data["results"]:
            speed = r["speedup_vs_baseline"]["end_to_end"]
            cells.append(f"{r['backend']} {r['median_s']['end_to_end']:.2f}" + (f" ({speed:.2f}x)" if speed else ""))
        lines.append(
            f"| [{path.stem}](results/{path.stem}.md) | {data['environment']['device']} | {data['preset']} | "
            f"{data['height']}x{data['width']}{_frames(data)} | {data['steps']} | {', '.join(cells)} |"
        )
    described = {
        "parity": "parity vs the original",
        "export": "full-size ONNX export: time, RSS, sizes, parity",
        "onnx": "graph forward memory: PyTorch vs ONNX Runtime",
        "serve": "dcrt serve under load: requests/s, p50 / p95 latency",
        "gpu": "GPU report: the GPU tests, every sampling mode at 256 / 512 / 1024",
        "aoti": "AOTInductor packages: build time, size, speed vs eager",
        "memory": "estimated peak device memory per preset (per memory profile since issue 28; the older files: dcrt's "
        "norms vs fp32 copies)",
        "fp8": "fp8 vs fp16 weights: output error per component (seeded random weights)",
        "behaviour": "sha256 of latents and frames of every mode of every family (torch, ONNX Runtime, CLI)",
        "token": "token pieces: one transformer block whole vs each memory profile's token_chunk, time and peak",
    }
    for path in sorted((HERE / "results").glob("*.json")):
        kind = path.stem.split("-")[0]
        if kind in described:
            device = json.loads(path.read_text()).get("environment", {}).get("device", "CPU")
            lines.append(f"| [{path.stem}](results/{path.name}) | {device} | {described[kind]} | - | - | see JSON |")
    return lines


def main() -> None:
    readme = HERE / "README.md"
    text = readme.read_text()
    before, _, rest = text.partition(START)
    _, _, after = rest.partition(END)
    readme.write_text(before + START + "\n" + "\n".join(rows()) + "\n" + END + after)


if __name__ == "__main__":
    main()
