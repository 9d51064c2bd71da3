"""Numerical parity of dcrt against the original DynamiCrafter (or ToonCrafter) code, per component, on random weights.

    DCRT_REFERENCE_REPO=/path/to/DynamiCrafter python benchmarks/parity.py --preset 256 --preset 512 \
        [--out benchmarks/results/parity-cpu.json]
    DCRT_TOONCRAFTER_REPO=/path/to/ToonCrafter python benchmarks/parity.py --preset tooncrafter

Prints a Markdown table (preset, component, rel error, max abs) and writes JSON with versions and input sizes.
Memory: one preset at a time; the dcrt checkpoint is memory-mapped and reference parts are built, compared and
freed one by one, so the peak is the dcrt model (10.4 GB fp32 for a released preset) plus the largest
reference part (the 5.8 GB UNet). Fits in 24 GB.
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

from parity.dynamicrafter import components, original  # noqa: E402


def _memory() -> str:
    """Resident memory from /proc (Linux): anonymous (tensors) vs file-backed (the mmap'd checkpoint, reclaimable)."""
    from dcrt.bench import process_memory_kib

    try:
        kib = process_memory_kib()
    except OSError:
        return "n/a"
    return (
        f"anon {kib['RssAnon'] / 2**20:.1f} GiB, file {kib['RssFile'] / 2**20:.1f} GiB, "
        f"peak rss {kib['VmHWM'] / 2**20:.1f} GiB"
    )


def run_preset(name: str, sizes: components.ParitySizes, workdir: Path) -> list[dict]:
    import dcrt

    t0 = time.perf_counter()
    model = dcrt.random_model(name, seed=0)
    model.eval()
    path = workdir / f"{name}.ckpt"
    dcrt.save_checkpoint(model, path)
    state_dict = components.load_checkpoint_state_dict(path)
    print(f"[{name}] dcrt model built and saved in {time.perf_counter() - t0:.0f}s ({_memory()})", file=sys.stderr)

    def report(part, new):
        print(f"[{name}] reference {part} done ({_memory()})", file=sys.stderr)
        for comp, d in new.items():
            print(f"[{name}] {comp}: rel {d.rel:.3e} max_abs {d.max_abs:.3e}", file=sys.stderr)

    results = components.run_parity(model, state_dict, sizes, on_result=report)
    del model, state_dict
    gc.collect()
    path.unlink()
    return [
        {
            "preset": name,
            "component": comp,
            "rel_error": d.rel,
            "max_abs": d.max_abs,
            "shape": list(d.shape),
            "inputs": d.inputs,
        }
        for comp, d in results.items()
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", action="append", required=True, help="repeatable, e.g. --preset 256 --preset 512")
    ap.add_argument("--out", type=Path, help="JSON file to write")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--latent", type=int, nargs=2, default=(16, 16), metavar=("H", "W"), help="UNet latent size")
    ap.add_argument("--threads", type=int, help="torch intra-op threads")
    ap.add_argument("--workdir", type=Path, help="where the temporary checkpoint goes (needs ~11 GB per full preset)")
    args = ap.parse_args()

    from dcrt.presets import get_preset

    # Each preset's original: DynamiCrafter's checkout, or ToonCrafter's for a dual-ref decoder.
    repos = {name: original.reference_repo(get_preset(name)) for name in args.preset}
    missing = sorted({original.env_var_for(get_preset(n)) for n, repo in repos.items() if repo is None})
    if missing:
        sys.exit(f"set {', '.join('$' + var for var in missing)} (DynamiCrafter's or ToonCrafter's checkout)")
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = components.ParitySizes(batch=args.batch, latent_hw=tuple(args.latent))

    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for name in args.preset:
            rows += run_preset(name, sizes, Path(tmp))

    print("| preset | component | rel error | max abs |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['preset']} | {r['component']} | {r['rel_error']:.2e} | {r['max_abs']:.2e} |")

    if args.out:
        meta = {
            "references": {name: original.environment(repo) for name, repo in repos.items()},
            "sizes": dataclasses.asdict(sizes),
            "results": rows,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
