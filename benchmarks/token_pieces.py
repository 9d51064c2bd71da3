"""Does running the transformer blocks in token pieces (dcrt.memory's `token_chunk`) cost speed?

    python benchmarks/token_pieces.py [--pixels 2304] [--repeats 5] [--threads N] [--out DIR]
    python benchmarks/token_pieces.py --device cuda --dtype fp16 --out DIR      # on a GPU, at the full size

One DynamiCrafter temporal transformer block (dcrt.models.attention.TransformerBlock: self-attention twice and the
GEGLU feed-forward) at the 1024 preset's first UNet level: 320 channels, 5 heads of 64, over x [N, 16, 320] with
N = 2 guidance branches x h x w sequences of 16 frames; h x w = 72 x 128 latent pixels at 576x1024 (9216).
`--pixels` takes fewer pixels (N = 2 x pixels), for a CPU: the whole block at full size needs ~7 GB of
temporaries in fp32 (the feed-forward's [tokens, 2560] projection alone is 3 GB).

Seeded random weights (torch's default init under `--seed`), seeded random input. The block runs whole
(`token_chunk=None`) and with each profile's `token_chunk` (fast, balanced, low), plus any `--extra-chunks`;
after one warm-up call each, the variants are timed in turn, `--repeats` rounds (interleaved: a slow moment of a
shared machine falls on all of them), and each variant's median is divided by the whole block's median of the
same run. Every variant's output is compared with the whole block's: bitwise (`torch.equal`), else the largest
absolute difference is printed and said so. Peak memory per variant: the device's peak allocation on CUDA, the
process's peak resident set on a CPU (everything the process holds, the input and weights included).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runs from a checkout, without installing dcrt

from dcrt.bench import environment, peak_memory_bytes, peak_memory_reset, synchronize  # noqa: E402
from dcrt.families.state_dicts import WEIGHT_DTYPES  # noqa: E402
from dcrt.memory import PROFILES  # noqa: E402
from dcrt.models.attention import TransformerBlock, set_token_chunk  # noqa: E402
from dcrt.presets import get_preset  # noqa: E402

PRESET = "1024"
FRAMES = 16  # the temporal transformer attends over the 16 frames at each pixel
BRANCHES = 2  # guidance branches, batched under fast and balanced


def block_shape(preset_name: str = PRESET) -> dict:
    """The first UNet level's temporal transformer block of the preset: its width, heads, and the full-size pixels."""
    preset = get_preset(preset_name)
    cfg = preset.unet
    channels = cfg.model_channels * cfg.channel_mult[0]
    latent = (preset.height // 8, preset.width // 8)
    return {
        "preset": preset.name,
        "channels": channels,
        "heads": channels // cfg.head_channels,
        "head_dim": cfg.head_channels,
        "latent_hw": latent,
        "full_pixels": latent[0] * latent[1],
    }


def variants(extra_chunks: list[int]) -> list[tuple[str, int | None]]:
    """(name, token_chunk): whole first, then each profile's, then the extra ones."""
    out: list[tuple[str, int | None]] = [("whole", None)]
    out += [(f"{p.name}", p.token_chunk) for p in PROFILES.values()]
    out += [(f"chunk {c}", c) for c in extra_chunks]
    return out


def pieces(sequences: int, token_chunk: int | None) -> int:
    """How many calls `in_token_pieces` makes for `sequences` sequences of FRAMES tokens."""
    if token_chunk is None:
        return 1
    per_piece = max(1, token_chunk // FRAMES)
    return -(-sequences // per_piece)


def run(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), WEIGHT_DTYPES[args.dtype]
    shape = block_shape()
    pixels = args.pixels or shape["full_pixels"]
    sequences = BRANCHES * pixels
    torch.manual_seed(args.seed)
    block = TransformerBlock(shape["channels"], shape["heads"], shape["head_dim"], cross=None)
    block = block.eval().requires_grad_(False).to(device, dtype)
    g = torch.Generator().manual_seed(args.seed + 1)
    x = torch.randn(sequences, FRAMES, shape["channels"], generator=g).to(device, dtype)

    chosen = variants(args.extra_chunks)
    versus: dict[str, dict] = {}
    peaks: dict[str, int] = {}
    times: dict[str, list[float]] = {name: [] for name, _ in chosen}

    def call(token_chunk: int | None) -> torch.Tensor:
        set_token_chunk(block, token_chunk)
        return block(x)

    with torch.inference_mode():
        whole = None
        for name, chunk in chosen:  # the warm-up call: output and peak memory, one variant at a time
            synchronize(device)
            peak_memory_reset(device)
            y = call(chunk)
            synchronize(device)
            peaks[name] = peak_memory_bytes(device)
            if whole is None:  # "whole" comes first
                whole = y
            versus[name] = _difference(whole, y)  # compared at once: only the whole output stays held
            del y
        del whole
        for _ in range(args.repeats):
            for name, chunk in chosen:
                synchronize(device)
                start = time.perf_counter()
                call(chunk)
                synchronize(device)
                times[name].append(time.perf_counter() - start)

    whole_ms = statistics.median(times["whole"]) * 1000
    results = []
    for name, chunk in chosen:
        median_ms = statistics.median(times[name]) * 1000
        results.append(
            {
                "variant": name,
                "token_chunk": chunk,
                "pieces": pieces(sequences, chunk),
                "median_ms": round(median_ms, 2),
                "min_ms": round(min(times[name]) * 1000, 2),
                "ratio_to_whole": round(median_ms / whole_ms, 3),
                "peak_mib": round(peaks[name] / 2**20, 1),
                "vs_whole": versus[name],
            }
        )
    env = environment(device)
    return {
        "command": " ".join(["token_pieces.py", *args.argv]),
        "device": env["device"],
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "environment": env,
        "settings": {
            **shape,
            "latent_hw": list(shape["latent_hw"]),
            "pixels": pixels,
            "branches": BRANCHES,
            "frames": FRAMES,
            "x_shape": [sequences, FRAMES, shape["channels"]],
            "tokens": sequences * FRAMES,
            "dtype": args.dtype,
            "repeats": args.repeats,
            "seed": args.seed,
            "peak_memory": "device peak allocated" if device.type == "cuda" else "process peak resident set",
        },
        "results": results,
    }


def _difference(whole: torch.Tensor, y: torch.Tensor) -> dict:
    equal = torch.equal(whole, y)
    return {"bitwise_equal": equal, "max_abs_diff": 0.0 if equal else float((whole.float() - y.float()).abs().max())}


def markdown(report: dict) -> str:
    s = report["settings"]
    h, w = s["latent_hw"]
    size = "full size" if s["pixels"] == s["full_pixels"] else f"{s['pixels'] / s['full_pixels']:.3g} of full size"
    env, cpu = report["environment"], report["threads"] is not None
    where = report["device"] + (f", {report['threads']} threads" if cpu else "")
    lines = [
        f"## Token pieces: one temporal transformer block, preset {s['preset']}'s first UNet level, {s['dtype']} on "
        f"{where}",
        "",
        f"x [{', '.join(map(str, s['x_shape']))}] = {s['branches']} branches x {s['pixels']} pixels ({size}; "
        f"{h}x{w} = {s['full_pixels']} at {s['preset']}) x {s['frames']} frames, {s['channels']} channels, "
        f"{s['heads']} heads of {s['head_dim']}; {s['tokens']} tokens. Median of {s['repeats']} interleaved "
        f"repeats after one warm-up; peak memory: {s['peak_memory']}."
        + (f" 1-minute load {env['load_average_1min']:.1f} on {env['cpu_cores']} cores before the run." if cpu else ""),
        "",
        "| variant | token_chunk | pieces | median ms | min ms | ratio to whole | peak MiB | output vs whole |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        d = r["vs_whole"]
        same = "bitwise equal" if d["bitwise_equal"] else f"NOT bitwise: max abs diff {d['max_abs_diff']:.3g}"
        lines.append(
            f"| {r['variant']} | {r['token_chunk']} | {r['pieces']} | {r['median_ms']} | {r['min_ms']} "
            f"| {r['ratio_to_whole']} | {r['peak_mib']} | {same} |"
        )
    lines += ["", f"`{report['command']}`"]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    full = block_shape()["full_pixels"]
    parser.add_argument("--pixels", type=int, default=None, help=f"latent pixels per branch (default {full}: full)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds over every variant (default 5)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--dtype", choices=sorted(WEIGHT_DTYPES), default="fp32", help="default fp32")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--extra-chunks", default="", help="comma-separated token_chunk values timed beside the profiles' (e.g. 4096)"
    )
    parser.add_argument("--out", type=Path, default=None, help="folder for the JSON and the Markdown table")
    args = parser.parse_args(argv)
    args.extra_chunks = [int(c) for c in args.extra_chunks.split(",") if c]
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.repeats < 1 or (args.pixels is not None and args.pixels < 1):
        parser.error("--repeats and --pixels must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    table = markdown(report)
    print(table)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        device = "cuda" if args.device.startswith("cuda") else "cpu"
        stem = f"token-pieces-{device}-{args.dtype}-{report['settings']['pixels']}px"
        (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / f"{stem}.md").write_text(table)
        print(f"wrote {args.out / stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
