#!/usr/bin/env bash
# Downloads the wheels that the lent GPU machine lacks into .whl/ (git-ignored), for its Python 3.12 on
# x86-64. That machine has torch, numpy, onnx, onnxruntime, cuda-bindings and NVRTC but no network, and
# dcrt's tokenizer needs open_clip (which needs ftfy, which needs wcwidth). README.md, "On a GPU machine",
# shows how the wheels are installed there.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4)
mkdir -p .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
ls -l .whl
