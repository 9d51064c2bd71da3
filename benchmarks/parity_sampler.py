"""Sampler parity of dcrt against the original DynamiCrafter inference code, on random weights.

    DCRT_REFERENCE_REPO=/path/to/DynamiCrafter python benchmarks/parity_sampler.py --preset 512 --preset 256 \
        [--size 128 128] [--out benchmarks/results/parity-sampler-cpu.json]

For each preset, runs the original `image_guided_synthesis` and `dcrt.animate` / `interpolate` / `loop` with the
same weights, x_T and per-step noise (see parity/dynamicrafter/sampling.py) and reports the relative error of the
final latents, ||dcrt - ref|| / ||ref||. Cases: i2v (all presets) and, where the preset family has an interp
model, interpolate and loop (512 weights viewed as `512-interp`; tiny presets support every mode), each with and
without multi-condition CFG (cfg_img), at eta 0 and 1; 5 DDIM steps, guidance 7.5, the preset's fs / spacing /
guidance rescale. Memory: one preset at a time; dcrt and the original share the checkpoint's memory map.
Prints a Markdown table and writes JSON (with per-step and per-branch errors for diagnosis).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the parity harness (parity/) is not installed: it is imported from the checkout

import torch  # noqa: E402

from parity.dynamicrafter import original, sampling  # noqa: E402

# preset -> [(weights, dcrt preset for those runs, modes)]
GROUPS = {
    "512": [("512", "512", ("animate",)), ("512", "512-interp", ("interpolate", "loop"))],
    "256": [("256", "256", ("animate",))],
    "1024": [("1024", "1024", ("animate",))],
    "tiny": [("tiny", "tiny", ("animate", "interpolate", "loop"))],
    "tiny-256": [("tiny-256", "tiny-256", ("animate", "interpolate", "loop"))],
}


def _memory() -> str:
    try:
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    except OSError:
        return "n/a"
    gb = lambda key: int(status[key].split()[0]) / 2**20  # noqa: E731
    return f"anon {gb('RssAnon'):.1f} GiB, file {gb('RssFile'):.1f} GiB, peak rss {gb('VmHWM'):.1f} GiB"


def run_preset(
    name: str,
    size: tuple[int, int],
    steps: int,
    workdir: Path,
    modes_filter=None,
    on_row=None,
    done: list | None = None,
) -> list[dict]:
    rows = done if done is not None else []
    for weights, preset, modes in GROUPS[name]:
        modes = tuple(m for m in modes if modes_filter is None or m in modes_filter)
        if not modes:
            continue
        t0 = time.perf_counter()
        model, state_dict = sampling.prepare(weights, preset, workdir)
        print(f"[{preset}] model ready in {time.perf_counter() - t0:.0f}s ({_memory()})", file=sys.stderr)

        def report(case, d, preset=preset):
            row = {
                "preset": preset,
                "weights": weights,
                "mode": case.mode,
                "multi_cond": case.multi_cond,
                "eta": case.eta,
                "rel_error": d.rel,
                "max_abs": d.max_abs,
                "shape": list(d.shape),
                "per_step_rel": d.per_step,
                "conditioning_rel": d.conditioning,
                "unet_output_rel": d.model_outputs,
                "inputs": d.inputs,
                "seconds": round(time.perf_counter() - report.t, 1),
            }
            rows.append(row)
            print(
                f"[{preset}] {case.label}: rel {d.rel:.3e} max_abs {d.max_abs:.3e} "
                f"steps {' '.join(f'{x:.1e}' for x in d.per_step)} ({row['seconds']}s, {_memory()})",
                file=sys.stderr,
            )
            report.t = time.perf_counter()
            if on_row is not None:
                on_row(rows)

        report.t = time.perf_counter()
        sampling.compare_sampling(model, state_dict, sampling.all_cases(modes, steps), *size, on_result=report)
        del model, state_dict
        gc.collect()
    for weights in {w for w, _, _ in GROUPS[name]}:
        (workdir / f"{weights}.ckpt").unlink(missing_ok=True)
    return rows


def _write_json(args, repo, rows: list[dict], complete: bool) -> None:
    """Rewritten after every case, so a long run that is stopped keeps what it measured (`complete` says)."""
    meta = {
        "complete": complete,
        **original.environment(repo),
        "reference_entry": "scripts/evaluation/inference.py::image_guided_synthesis",
        "size": list(args.size),
        "steps": args.steps,
        "case_defaults": dataclasses.asdict(sampling.SamplerCase()),
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(meta, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", action="append", required=True, choices=sorted(GROUPS), help="repeatable")
    ap.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"), help="pixels (x64)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--mode", action="append", choices=("animate", "interpolate", "loop"), help="restrict modes")
    ap.add_argument("--out", type=Path, help="JSON file to write")
    ap.add_argument("--threads", type=int, help="torch intra-op threads")
    ap.add_argument("--workdir", type=Path, help="where the temporary checkpoint goes (~11 GB per full preset)")
    args = ap.parse_args()

    repo = original.reference_repo()
    if repo is None:
        sys.exit(f"set ${original.ENV_VAR} to a checkout of github.com/Doubiiu/DynamiCrafter")
    if args.threads:
        torch.set_num_threads(args.threads)

    rows: list[dict] = []
    write = (lambda rows, complete=False: _write_json(args, repo, rows, complete)) if args.out else None
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for name in args.preset:
            run_preset(name, tuple(args.size), args.steps, Path(tmp), args.mode, on_row=write, done=rows)

    print("| preset | mode | multi-cond | eta | rel error | max abs |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        mc = f"cfg_img={r['inputs']['cfg_img']:g}" if r["multi_cond"] else "no"
        print(f"| {r['preset']} | {r['mode']} | {mc} | {r['eta']:g} | {r['rel_error']:.2e} | {r['max_abs']:.2e} |")

    if write is not None:
        write(rows, complete=True)


if __name__ == "__main__":
    main()
