#!/usr/bin/env bash
# DiT training speed: kindbench against the PyTorch reference of the same
# config (bench/torch_train_bench.py: DiT's train.py step in eager mode), on
# the same machine in the same run. Prints both and the ratio.
#   bash bench/bench_train.sh [--model NAME | --depth N --width N --heads N --patch N] [--image N --channels N
#                              --classes N --batch N --steps N --warmup N --pool N --threads N]
#                             [--device cpu|cuda] [--precision fp32|tf32|bf16] [--torch-precision P]
# Defaults: the small Fashion-MNIST config (depth 4, width 128, heads 4,
# patch 4, 32x32x1, 10 classes), batch 32, 20 timed steps after 3 warm-up,
# on the CPU. Both sides use the same thread count (default: all cores) and
# cycle a pool of batches drawn before the clock starts.
#
# GPU: --device cuda --precision bf16 compares kindbench's bf16 GEMMs with
# PyTorch's torch.autocast(bfloat16) (the usual mixed-precision recipe);
# --torch-precision bf16-pure gives PyTorch a fully bf16 model and optimiser
# instead. The MFU of both is printed against the GPU's datasheet peak.
# PyTorch comes from $PYTHON, else /usr/bin/python3 when it has torch, else python3.
set -euo pipefail
cd "$(dirname "$0")/.."
KB=${KINDBENCH:-build/kindbench}
THREADS=$(nproc)
ours=() theirs=() torch_prec=""
while [ $# -gt 0 ]; do
  case "$1" in
    --torch-precision) torch_prec=$2; shift 2; continue ;;
    --peak-tflops) ours+=("$1" "$2"); shift 2; continue ;; # kindbench's MFU line; PyTorch's is scaled from it
    --profile) ours+=("$1"); shift; continue ;;
    --threads) THREADS=$2 ;;
    --precision) [ -n "$torch_prec" ] || torch_prec=$2 ;;
  esac
  if [ "$1" = "--precision" ]; then ours+=("$1" "$2"); shift 2; continue; fi
  ours+=("$1"); theirs+=("$1"); shift
done
[ -n "$torch_prec" ] && theirs+=(--precision "$torch_prec")
source bench/torch_python.sh # PYTHON: the interpreter with torch
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
out_kb=$("$KB" bench train --threads "$THREADS" "${ours[@]}")
echo "$out_kb" | grep -v '^steps_per_sec='
out_pt=$("$PYTHON" bench/torch_train_bench.py --threads "$THREADS" "${theirs[@]}")
echo "$out_pt" | grep -v '^steps_per_sec='
a=$(echo "$out_kb" | sed -n 's/^steps_per_sec=//p')
b=$(echo "$out_pt" | sed -n 's/^steps_per_sec=//p')
awk -v a="$a" -v b="$b" 'BEGIN { printf "ratio kindbench/pytorch: %.2fx (steps/s %.3f vs %.3f)\n", a / b, a, b }'
# PyTorch's MFU from the same model FLOP count: kindbench's MFU scaled by the step rates
mfu=$(echo "$out_kb" | sed -n 's/.*MFU \([0-9.]*\)%.*/\1/p')
[ -z "$mfu" ] || awk -v m="$mfu" -v a="$a" -v b="$b" 'BEGIN { printf "MFU: kindbench %.1f%%, pytorch %.1f%% (same model FLOPs, same peak)\n", m, m * b / a }'
