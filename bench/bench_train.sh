#!/usr/bin/env bash
# DiT training speed: kindbench against the PyTorch reference of the same
# config (bench/torch_train_bench.py: DiT's train.py step in eager mode), on
# the same machine in the same run. Prints both and the ratio.
#   bash bench/bench_train.sh [--depth N --width N --heads N --patch N --image N --channels N
#                              --classes N --batch N --steps N --warmup N --threads N]
# Defaults: the small Fashion-MNIST config (depth 4, width 128, heads 4,
# patch 4, 32x32x1, 10 classes), batch 32, 20 timed steps after 3 warm-up.
# Both sides use the same thread count (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."
KB=${KINDBENCH:-build/kindbench}
THREADS=$(nproc)
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  [ "${args[$i]}" = "--threads" ] && THREADS=${args[$((i + 1))]}
done
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
ours=$("$KB" bench train --threads "$THREADS" "$@")
echo "$ours" | grep -v '^steps_per_sec='
theirs=$(/usr/bin/python3 bench/torch_train_bench.py --threads "$THREADS" "$@")
echo "$theirs" | grep -v '^steps_per_sec='
a=$(echo "$ours" | sed -n 's/^steps_per_sec=//p')
b=$(echo "$theirs" | sed -n 's/^steps_per_sec=//p')
awk -v a="$a" -v b="$b" 'BEGIN { printf "ratio kindbench/pytorch: %.2fx (steps/s %.3f vs %.3f)\n", a / b, a, b }'
