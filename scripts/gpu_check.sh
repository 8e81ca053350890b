#!/usr/bin/env bash
# GPU check (not part of CI; meant to take under 8 minutes on one GPU, not yet
# measured; --modes, --no_paddleseg, --no_tensorrt trim it): every model family
# trains 30 iterations in fp32, AMP O1 and O2 next to PaddleSeg's own classes,
# on two ranks with SyncBN when two GPUs are visible, exports, and runs in Paddle
# Inference (TensorRT where the build has it) and ONNX Runtime CUDA, compared with
# dygraph. One table on stdout, JSON in --out (default output/gpu_check/).
# Exit status 1 if any step failed.  See scripts/gpu_check.py for the steps.
#   bash scripts/gpu_check.sh                 # needs paddlepaddle-gpu and a GPU
#   bash scripts/gpu_check.sh --dry_run       # plan and build every command, no GPU
#   bash scripts/gpu_check.sh --families isnet --iters 30 --out /tmp/check
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec python "$ROOT/scripts/gpu_check.py" "$@"
