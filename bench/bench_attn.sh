#!/usr/bin/env bash
# Fused attention speed on a GPU: kindbench's kernels (bench/bench_attn.c,
# built as build/tests/bench_attn) against PyTorch's bf16
# scaled_dot_product_attention (bench/torch_attn_bench.py) on the same shape,
# in the same run. Prints both and the ratios (PyTorch's time over ours:
# above 1 is faster). Default shape: DiT-B/2's at batch 256 (T 256, d 768, 12 heads).
# --fp32-io: ours reads fp32 qkv and writes fp32 results (the DiT's default,
# without KINDBENCH_BF16_ACTS=1); PyTorch's side stays bf16.
#   bash bench/bench_attn.sh [--batch B] [--tokens T] [--width d] [--heads H] [--reps N] [--fp32-io]
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=${BENCH_ATTN:-build/tests/bench_attn}
args=() ours_only=()
while [ $# -gt 0 ]; do
  case "$1" in
    --batch|--tokens|--width|--heads|--reps) args+=("$1" "$2"); shift 2 ;;
    --fp32-io) ours_only+=("$1"); shift ;;
    *) echo "bench_attn.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
source bench/torch_python.sh # PYTHON: the interpreter with torch
[ -x "$BENCH" ] || { echo "bench_attn.sh: $BENCH not built (cmake --build build --target bench_attn)" >&2; exit 1; }
ours=$("$BENCH" --device cuda "${args[@]}" "${ours_only[@]}")
echo "$ours" | grep -v '_ms='
theirs=$("$PYTHON" bench/torch_attn_bench.py "${args[@]}")
echo "$theirs" | grep -v '_ms='
get() { echo "$1" | sed -n "s/^$2=//p"; }
awk -v of="$(get "$ours" fwd_ms)" -v ob="$(get "$ours" bwd_ms)" -v tf="$(get "$theirs" fwd_ms)" \
  -v tb="$(get "$theirs" bwd_ms)" 'BEGIN {
    printf "ratio pytorch/kindbench time: forward %.2fx, backward %.2fx, both %.2fx\n", tf / of, tb / ob, (tf + tb) / (of + ob) }'
