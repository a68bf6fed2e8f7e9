#!/usr/bin/env bash
# `kindbench sample --device cuda` against the CPU on the same checkpoint (the
# dit_ref-sized model of sample_mkckpt: 8x8 RGB, 5 classes) and seed, DDPM
# and DDIM with guidance:
#  - fp32: the same model in another summation order, 20 steps: every uint8
#    pixel within 2 of the CPU's (one level is 1/127.5 in model units; the
#    noise is the same Philox draws on both), at most 1% of pixels differ;
#  - a rerun on the GPU writes a byte-identical npz;
#  - bf16 (fused attention, bf16 GEMMs): runs, and its pixels are on average
#    near fp32's (mean |d| <= 16; set before the first GPU run): guided sampling from the
#    same noise, not a different picture.
# Exit 77 (skipped) without a CUDA build or GPU.
set -u
KB=${KINDBENCH:?}
PY=${KB_PYTHON:-/usr/bin/python3}
MK=${KB_MKCKPT:-./sample_mkckpt}
T=$(mktemp -d /tmp/kb_test_sample_cuda.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1${2:+: $2}"; fail=$((fail + 1)); }

"$MK" "$T/ck.safetensors" || { echo "FAIL cannot make a checkpoint"; exit 1; }
run() { # out-dir, options...
  local out=$1; shift
  "$KB" sample --ckpt "$T/ck.safetensors" --out "$T/$out" --quiet --no-png --classes 0,3 --per-class 4 --seed 5 "$@" \
    2> "$T/$out.err"
}
if ! run probe --device cuda --steps 2; then
  if grep -qiE "no CUDA GPU|built without CUDA" "$T/probe.err"; then echo "skipped: no GPU"; exit 77; fi
  bad "sample --device cuda runs" "$(cat "$T/probe.err")"
fi

# compare A B MAXDIFF MAXFRAC MEANDIFF: pixel statistics of two npz files
compare() {
  "$PY" - "$T/$1/samples.npz" "$T/$2/samples.npz" "$3" "$4" "$5" << 'EOF'
import sys
import numpy as np
a, b = (np.load(p)["arr_0"].astype(np.int32) for p in sys.argv[1:3])
lim, frac, mean = int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
d = np.abs(a - b)
msg = "max |d| %d, %.2f%% of pixels differ, mean |d| %.3f" % (d.max(), 100 * (d > 0).mean(), d.mean())
print(msg)
sys.exit(0 if d.max() <= lim and (d > 0).mean() <= frac and d.mean() <= mean else 1)
EOF
}

for sampler in ddpm ddim; do
  opts=(--sampler "$sampler" --steps 20 --cfg-scale 1.5)
  run "cpu_$sampler" --device cpu --threads 1 "${opts[@]}" || bad "cpu $sampler" "$(cat "$T/cpu_$sampler.err")"
  run "gpu_$sampler" --device cuda "${opts[@]}" || bad "cuda $sampler" "$(cat "$T/gpu_$sampler.err")"
  if m=$(compare "cpu_$sampler" "gpu_$sampler" 2 0.01 1); then ok "$sampler fp32: cuda within 2 levels of cpu ($m)"
  else bad "$sampler fp32: cuda vs cpu" "$m"; fi
  run "gpu2_$sampler" --device cuda "${opts[@]}" || bad "cuda $sampler rerun" "$(cat "$T/gpu2_$sampler.err")"
  if cmp -s "$T/gpu_$sampler/samples.npz" "$T/gpu2_$sampler/samples.npz"; then ok "$sampler: cuda rerun byte-identical"
  else bad "$sampler: cuda rerun byte-identical"; fi
  if ! run "bf16_$sampler" --device cuda --precision bf16 "${opts[@]}"; then
    bad "cuda bf16 $sampler" "$(cat "$T/bf16_$sampler.err")"
  elif m=$(compare "gpu_$sampler" "bf16_$sampler" 255 1.0 16); then ok "$sampler bf16 near fp32 ($m)"
  else bad "$sampler bf16 vs fp32" "$m"; fi
done
echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
