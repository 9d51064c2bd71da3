"""Full-size ONNX export from a random checkpoint, measured: wall time, peak RSS, file sizes, parity.

    python benchmarks/export_full.py --preset 256 --preset 512 [--workdir /tmp/dcrt-export] \
        [--reuse-checkpoint] [--out benchmarks/results/export-full-cpu.json]

Per preset: writes a seeded random `model.ckpt` at the real architecture (or reuses the one a
previous run left with `--reuse-checkpoint`), then runs `dcrt export --res P --ckpt ...` in a child
process and reads the manifest it wrote. While it runs, the child's /proc status is sampled: peak
anonymous RSS is what the OOM killer counts; file-backed RSS is the memory-mapped checkpoint and
`.data` files, which the kernel can drop under pressure. Needs ~27 GB of disk per preset.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from dcrt.bench import PeakMemory

REPO = Path(__file__).resolve().parents[1]


def make_checkpoint(preset: str, path: Path) -> None:
    code = f"import dcrt; dcrt.save_checkpoint(dcrt.random_model({preset!r}, seed=0), r'{path}')"
    subprocess.run([sys.executable, "-c", code], check=True)


# Runs the CLI and reports the child's own peak resident set on its last stderr line.
_MEASURED_CLI = (
    "import resource, sys\n"
    "from dcrt.cli import main\n"
    "try:\n    main()\n"
    "finally:\n    print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
)


def export(preset: str, ckpt: Path, out: Path) -> dict:
    args = ["export", "--res", preset, "--ckpt", str(ckpt), "--out", str(out), "--force"]
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _MEASURED_CLI, *args], stderr=subprocess.PIPE, text=True)
    log = []
    with PeakMemory(proc.pid, period=0.5) as sampler:
        for line in proc.stderr:  # streamed, so progress shows while it runs
            sys.stderr.write(line)
            log.append(f"{time.perf_counter() - start:7.0f} s  {line.rstrip()}")
        proc.wait()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        peaks = ", ".join(f"{k} {v / 2**20:.1f} GiB" for k, v in sampler.peak_kib.items())
        raise SystemExit(f"export of {preset} failed (exit {proc.returncode}; peak {peaks})")
    peak_kib = int(log[-1].split()[-1])
    manifest = json.loads((out / "manifest.json").read_text())
    return {
        "command": " ".join(["dcrt", *args]),
        "wall_s": wall,
        "peak_rss_gib": peak_kib / 2**20,
        "peak_anon_rss_gib": sampler.peak_kib["RssAnon"] / 2**20,
        "peak_file_rss_gib": sampler.peak_kib["RssFile"] / 2**20,
        "checkpoint_gib": ckpt.stat().st_size / 2**30,
        "log": log[:-1],
        "components": {
            name: {
                "bytes": c["bytes"],
                "rel_error": c["parity"]["rel_error"],
                "max_abs": c["parity"]["max_abs"],
                "files": sorted(c["files"]),
            }
            for name, c in manifest["components"].items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", required=True)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dcrt-export"))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "export-full-cpu.json")
    parser.add_argument("--reuse-checkpoint", action="store_true", help="keep and reuse <workdir>/<preset>/model.ckpt")
    args = parser.parse_args()
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for preset in args.preset:
        work = args.workdir / preset
        ckpt = work / "model.ckpt"
        if not (args.reuse_checkpoint and ckpt.is_file()):
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            make_checkpoint(preset, ckpt)
        results[preset] = export(preset, ckpt, work / "export")
        shutil.rmtree(work / "export", ignore_errors=True)
        if not args.reuse_checkpoint:
            shutil.rmtree(work, ignore_errors=True)
        r = results[preset]
        print(
            f"\n{preset}: {r['wall_s']:.0f} s, peak RSS {r['peak_rss_gib']:.1f} GiB "
            f"(anonymous {r['peak_anon_rss_gib']:.1f} GiB, file-backed {r['peak_file_rss_gib']:.1f} GiB)"
        )
        print("| component | size (MiB) | rel error | max abs |\n|---|---|---|---|")
        for name, c in r["components"].items():
            print(f"| {name} | {c['bytes'] / 2**20:.0f} | {c['rel_error']:.2e} | {c['max_abs']:.2e} |")
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(args.out)


if __name__ == "__main__":
    main()
