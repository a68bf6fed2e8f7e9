#!/usr/bin/env bash
# FID Inception feature-extraction speed: kindbench (bench/bench_inception.c,
# built as build/tests/bench_inception) against PyTorch running the same topology
# (bench/torch_inception_bench.py), on the same machine in the same run, on
# the same N random uint8 images. Prints both images/s and the ratio.
#   bash bench/bench_inception.sh [--n 64] [--size 256] [--threads T] [--batch B (PyTorch's, default 50)]
#                                 [--device cpu|cuda] [--precision fp32|tf32] [--torch-precision P]
# On CUDA, PyTorch runs as pytorch-fid does there (--torch-precision
# torch-default: cuDNN may use TF32) unless told otherwise; kindbench's
# default is strict fp32 (--precision tf32 lets cuDNN use TF32 too).
# Weights: the real file when kindbench finds it (KINDBENCH_INCEPTION, the
# cache directory), else a random-weight file of the same layout written by
# PyTorch (speed does not depend on the values). kindbench's batch size is
# $KINDBENCH_INCEPTION_BATCH (default 4 per CPU worker, 64 on CUDA). Both sides use
# the same thread count (default: all cores) and time a second pass over the
# images after an untimed first one (every batch shape warmed up). Timings include pre-processing; the
# two resizes differ (kindbench: adm's TF1 bilinear, PyTorch: F.interpolate).
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=${BENCH_INCEPTION:-build/tests/bench_inception}
N=64 SIZE=256 THREADS=$(nproc) BATCH=50 DEVICE=cpu PREC=fp32 TPREC=torch-default
while [ $# -gt 0 ]; do
  case "$1" in
    --n) N=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    --device) DEVICE=$2; shift 2 ;;
    --precision) PREC=$2; shift 2 ;;
    --torch-precision) TPREC=$2; shift 2 ;;
    *) echo "bench_inception.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
source bench/torch_python.sh # PYTHON: the interpreter with torch
[ -x "$BENCH" ] || { echo "bench_inception.sh: $BENCH not built (cmake --build build --target bench_inception)" >&2; exit 1; }
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
weights=() tmp=""
if ! "$BENCH" --n 1 --size 8 >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$PYTHON" bench/torch_inception_bench.py --write-weights "$tmp/inception_random.pth"
  weights=(--weights "$tmp/inception_random.pth" --unverified)
  echo "== real weights not found: random weights of the same layout"
fi
ours=$("$BENCH" "${weights[@]}" --n "$N" --size "$SIZE" --threads "$THREADS" --device "$DEVICE" --precision "$PREC")
echo "$ours" | grep -v '^images_per_sec='
theirs=$("$PYTHON" bench/torch_inception_bench.py --n "$N" --size "$SIZE" --threads "$THREADS" --batch "$BATCH" \
  --device "$DEVICE" --precision "$TPREC")
echo "$theirs" | grep -v '^images_per_sec='
a=$(echo "$ours" | sed -n 's/^images_per_sec=//p')
b=$(echo "$theirs" | sed -n 's/^images_per_sec=//p')
awk -v a="$a" -v b="$b" 'BEGIN { printf "ratio kindbench/pytorch: %.2fx (images/s %.3f vs %.3f)\n", a / b, a, b }'
