#!/usr/bin/env bash
# `kindbench bench train` and `kindbench device` option handling: every bad
# option value or stray argument is a usage error (exit 2) with one line
# naming what was wrong, never a crash and never a run that ignores it.
set -u
source "$(dirname "$0")/test_train_common.sh"
workspace bench_cli
TINY=(--depth 1 --width 16 --heads 1 --patch 4 --image 8 --batch 2 --steps 1 --warmup 0)

# OpenBLAS was handed any count up to 2^20: 100000 threads crashed (SIGSEGV), 20000 hung
expect_usage "--threads past the context's limit" "--threads: expected an integer in \[1, 4096\], got '100000'" \
  bench train "${TINY[@]}" --threads 100000
expect_usage "--threads 0" "--threads: .*got '0'" bench train "${TINY[@]}" --threads 0
expect_usage "--device gpu names --device" "--device: unknown device 'gpu'" bench train "${TINY[@]}" --device gpu
# options that cannot work together, or a shape that cannot work: exit 2 (bf16 on the CPU was 1, found only
# when the context was made), as `train` does with the same options
expect_usage "--precision bf16 on the CPU" "--precision bf16 needs --device cuda: the CPU path computes in fp32 only" \
  bench train "${TINY[@]}" --precision bf16
expect_usage "--precision tf32 --device cpu" "--precision tf32 needs --device cuda" bench train "${TINY[@]}" --precision tf32 --device cpu
expect_usage "heads do not divide width" "3 heads do not divide width 64" bench train "${TINY[@]}" --width 64 --heads 3
expect_usage "image not divisible by patch" "image side 10 is not divisible by patch size 4" bench train "${TINY[@]}" --image 10

# an infinite peak made every MFU 0.0%
expect_usage "--peak-tflops inf" "--peak-tflops: expected a positive number, got 'inf'" bench train "${TINY[@]}" --peak-tflops inf
expect_usage "--peak-tflops overflowing to inf" "--peak-tflops: expected a positive number, got '1e999'" \
  bench train "${TINY[@]}" --peak-tflops 1e999
expect_usage "--peak-tflops 0" "--peak-tflops: expected a positive number, got '0'" bench train "${TINY[@]}" --peak-tflops 0

# words that are no option were ignored: the run went ahead, exit 0
expect_usage "bench train: a stray argument" "bench train: unexpected argument 'B/4'" bench train "${TINY[@]}" B/4
expect_usage "device: a stray argument" "device: unexpected argument 'cuda'" device cuda
if "$KB" device > stdout.txt 2> stderr.txt && grep -q '^cpu: ' stdout.txt; then ok "device runs"
else bad "device runs" "$(cat stderr.txt)"; fi

# a usage error points at the help of the command it belongs to (it said "Try 'kindbench --help'" for all)
hints=""
for cmd in "data prepare" "data info" "eval stats" "eval" "bench train" "train" "sample" ""; do
  read -r -a words <<< "$cmd"
  "$KB" "${words[@]}" --no-such-option > /dev/null 2> stderr.txt
  want="Try 'kindbench${cmd:+ $cmd} --help'."
  [[ "$(tail -n 1 stderr.txt)" == "$want" ]] || hints+="[$cmd: $(tail -n 1 stderr.txt)] "
done
[[ -z $hints ]] && ok "usage errors name their command's --help" || bad "--help hints" "$hints"

finish
