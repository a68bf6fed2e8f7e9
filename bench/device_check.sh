#!/usr/bin/env bash
# The GPU checks of kindbench in one run, for a lent GPU machine (see
# docs/gpu.md): unpacks .devpkg/kb.tar.xz (made here by bench/device_pack.sh),
# finds the machine's CUDA libraries, builds the PyTorch fixtures with the
# machine's python3, then
#   1. the CUDA tests (each under a timeout): ops, DiT ops, diffusion loss, the DiT against PyTorch
#      (fp32 and bf16 GEMMs), the cuDNN Inception against the CPU;
#   2. the speed comparisons: DiT-B/2 training at 32x32x4 (bf16: kindbench
#      against torch.autocast bf16 and against a pure-bf16 PyTorch; fp32 too)
#      and FID Inception features against the pytorch-fid pipeline.
# Logs go to $OUT (or ./device-out); a summary is printed last and kept in
# $OUT/summary.txt. Items run most important first while the call's time
# budget lasts (KB_DEVICE_BUDGET seconds, default 330; see have_time).
# Exit status 1 when any item failed (a check's rc other than 0 or 77, the
# fixtures, a benchmark's non-zero exit), else 0.
#   bash bench/device_check.sh [tests|bench|all]     (default all; run tests and bench as two calls)
set -uo pipefail
cd "$(dirname "$0")/.."
WHAT=${1:-all}
OUT=${OUT:-$PWD/device-out}
mkdir -p "$OUT"
rm -f "$OUT/summary.txt"
KB=/tmp/kb
summary=()
# every line of the summary is also appended to $OUT/summary.txt as it comes, so that a call cut
# short by the device tool's limit still brings back what it measured
note() { summary+=("$1"); echo "== $1"; echo "$1" >> "$OUT/summary.txt"; }

[ -f .devpkg/kb.tar.xz ] || { echo "device_check.sh: .devpkg/kb.tar.xz missing (bash bench/device_pack.sh, then carry .devpkg)" >&2; exit 1; }
rm -rf "$KB" && tar -C /tmp -xJf .devpkg/kb.tar.xz
# the machine's CUDA runtime, cuBLAS(Lt) and cuDNN: the toolkit's, else the pip wheels beside torch
cuda_dirs=$(for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do [ -d "$d" ] && echo "$d"; done)
wheel_dirs=$(python3 - <<'PY' 2>/dev/null
import glob, os
try:
    import nvidia
    for p in nvidia.__path__:
        for d in sorted(glob.glob(os.path.join(p, "*", "lib"))):
            print(d)
except Exception:
    pass
PY
)
export LD_LIBRARY_PATH="$KB/lib:$(echo $cuda_dirs $wheel_dirs | tr ' ' ':')${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"
missing=$(for b in "$KB"/bin/*; do ldd "$b" | grep 'not found'; done | sort -u)
[ -z "$missing" ] || { echo "device_check.sh: unresolved libraries:"; echo "$missing"; echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; exit 1; }
"$KB/bin/kindbench" device 2>&1 | tee "$OUT/device.txt"

# The device tool runs one command for at most 600 s and lends about 15 minutes in all: items (most
# important first) start only while this call's budget lasts; each has its own timeout (200-300 s),
# so the default leaves room for the last one to finish inside 600 s.
T_START=$SECONDS
BUDGET=${KB_DEVICE_BUDGET:-330}
have_time() { # what
  (( SECONDS - T_START < BUDGET )) && return 0
  note "not run, this call's ${BUDGET} s are spent (KB_DEVICE_BUDGET): $1"
  return 1
}

# The checks run KB_DEVICE_LANES at a time (tests/lanes.sh; default 4 when the GPU's compute mode
# lets several processes share it, else 1), so that their CPU references and start-ups overlap.
LANES_DIR=$(mktemp -d /tmp/kb_lanes.XXXXXX)
trap 'rm -rf "$LANES_DIR"' EXIT
source tests/lanes.sh
# the check; on an asynchronous fault once more with every launch synchronous (while the budget
# lasts), so that the first error names the kernel that faulted: an asynchronous fault is reported
# by whichever call checks next
device_one() { # name, command...
  local name=$1; shift
  rm -f "$OUT/$name.blocking.log" "$OUT/$name.blocking.rc"
  timeout -k 10 240 "$@" > "$OUT/$name.log" 2>&1 # a hang costs minutes, not the whole lease
  local rc=$?
  if [[ $rc != 0 && $rc != 77 ]] && grep -qiE 'illegal|misaligned|launch failure|cudaError|unspecified|trap' \
    "$OUT/$name.log" && (( SECONDS - T_START < BUDGET )); then
    CUDA_LAUNCH_BLOCKING=1 timeout -k 10 240 "$@" > "$OUT/$name.blocking.log" 2>&1
    echo $? > "$OUT/$name.blocking.rc"
  fi
  return $rc
}
lane_done() { # name, rc, seconds
  local name=$1 rc=$2 secs=$3
  note "$(printf '%-26s rc=%d %3ds  %s' "$name" "$rc" "$secs" "$(tail -n 1 "$OUT/$name.log")")"
  grep -E '^FAIL' "$OUT/$name.log" | head -n 5
  [[ -f $OUT/$name.blocking.rc ]] &&
    note "  $name with CUDA_LAUNCH_BLOCKING=1: rc=$(cat "$OUT/$name.blocking.rc"), first error: $(grep -m1 -iE 'illegal|misaligned|failure|error|FAIL' "$OUT/$name.blocking.log")"
  return 0
}
run_test() { # name, command...
  have_time "$1" || return 0
  lanes_run "$1" device_one "$@"
}

if [ "$WHAT" = tests ] || [ "$WHAT" = all ]; then
  export KB_FIXTURES=$KB/fixtures
  mkdir -p "$KB_FIXTURES"
  export KB_SOURCE_DIR=$PWD
  { python3 tests/ref/dit_ref.py && python3 tests/ref/inception_ref.py; } > "$OUT/fixtures.log" 2>&1 ||
    note "fixtures FAILED (see fixtures.log): $(tail -n 2 "$OUT/fixtures.log" | tr '\n' ' ')"
  KB_BIN=$KB/bin KB_WORK=/tmp/kbwork KB_PY=python3
  LANES=${KB_DEVICE_LANES:-$([[ $(nvidia-smi --query-gpu=compute_mode --format=csv,noheader 2>/dev/null | head -n 1) == Default ]] && echo 4 || echo 1)}
  note "checks $LANES at a time ($(lanes_threads) CPU threads each)"
  source tests/cuda_checks.sh
  kb_cuda_checks
  lanes_wait
fi

if [ "$WHAT" = bench ] || [ "$WHAT" = all ]; then
  export KINDBENCH=$KB/bin/kindbench BENCH_INCEPTION=$KB/bin/bench_inception BENCH_ATTN=$KB/bin/bench_attn PYTHON=python3
  dit=(--model B/2 --image 32 --channels 4 --classes 1000 --batch 256 --steps 20 --warmup 5 --device cuda)
  inc=(--n 2000 --size 256 --device cuda)
  bench() { # log name, script, args... (prints the ratio lines; the caller notes them)
    local log=$1; shift
    have_time "$log" > /dev/null || { echo "(not run: time budget)"; return 0; }
    local t0=$SECONDS
    timeout -k 10 300 bash "$@" > "$OUT/$log.log" 2>&1 || echo "(exit $?)" >> "$OUT/$log.log"
    echo "$(grep -E '^ratio|^MFU|^\(exit|rror' "$OUT/$log.log" | tr '\n' ' ') [$((SECONDS - t0)) s]"
  }
  # our bf16 step under switches (log name, label, VAR=value...): where each fusion pays
  ours_with() {
    local log=$1 label=$2; shift 2
    have_time "$log" || return 0
    env "$@" timeout -k 10 200 "$KINDBENCH" bench train "${dit[@]}" --precision bf16 > "$OUT/$log.log" 2>&1 ||
      echo "(exit $?)" >> "$OUT/$log.log"
    note "  ours bf16, $label $(grep -E 'steps/s|rror|^\(exit' "$OUT/$log.log" | head -2 | tr '\n' ' ')"
  }
  profiled() { # log name, VAR=value...: per-op CUDA event times after the timed steps
    local log=$1; shift
    have_time "$log" || return 0
    env "$@" timeout -k 10 200 "$KINDBENCH" bench train "${dit[@]}" --precision bf16 --profile > "$OUT/$log.log" 2>&1 ||
      echo "(exit $?)" >> "$OUT/$log.log"
    note "  $log: $(grep -E '^profile: [0-9]+ step|rror|^\(exit' "$OUT/$log.log" | head -2 | tr '\n' ' ')"
    grep -E '^profile: ' "$OUT/$log.log" | sed -n '3,10p'
  }
  # 1. the issues' two ratios: DiT-B/2 bf16 against PyTorch eager autocast (defaults, then bf16 activations),
  #    FID Inception features against pytorch-fid
  note "DiT-B/2 bf16 vs autocast+sdpa:  $(bench bench_train_bf16 bench/bench_train.sh "${dit[@]}" --precision bf16)"
  note "  same, bf16 activations:       $(KINDBENCH_BF16_ACTS=1 bench bench_train_bf16_acts bench/bench_train.sh "${dit[@]}" --precision bf16)"
  note "Inception tf32 vs pytorch-fid:  $(bench bench_inception_tf32 bench/bench_inception.sh "${inc[@]}" --precision tf32)"
  # 2. where the time goes, and what each switch buys; first the fused attention alone against PyTorch's SDPA
  note "fused attention vs SDPA (B/2):  $(bench bench_attn bench/bench_attn.sh)"
  note "  same, fp32 qkv in, fp32 out:  $(bench bench_attn_fp32io bench/bench_attn.sh --fp32-io)"
  ours_with bench_train_bf16_acts_ltgelu "bf16 acts + GELU epil.:" KINDBENCH_BF16_ACTS=1 KINDBENCH_LT_GELU=1
  ours_with bench_train_bf16_acts_epis "bf16 acts + GELU + bias-grad:" KINDBENCH_BF16_ACTS=1 KINDBENCH_LT_GELU=1 \
    KINDBENCH_LT_BGRAD=1
  profiled bench_train_bf16_profile
  profiled bench_train_bf16_acts_profile KINDBENCH_BF16_ACTS=1
  # the bias and weight-gradient epilogues, the GELU epilogues (off by default until measured; test_ops_cuda checks them)
  ours_with bench_train_bf16_epis "GELU + bias-grad:   " KINDBENCH_LT_GELU=1 KINDBENCH_LT_BGRAD=1
  # GEMMs on staged bf16 operands (native bf16 x bf16 products) instead of cuBLAS's fp32-input _FAST_16BF
  ours_with bench_train_bf16_staged "staged operands:    " KINDBENCH_BF16_OPERANDS=1
  # the unfused attention (batched GEMMs + softmax over [B,H,T,T] fp32 scores)
  ours_with bench_train_bf16_unfused "unfused attention:  " KINDBENCH_FUSED_ATTENTION=0
  ours_with bench_train_bf16_ltgelu "GELU epilogues:     " KINDBENCH_LT_GELU=1
  ours_with bench_train_bf16_bgrad "bias-grad epilogue: " KINDBENCH_LT_BGRAD=1
  ours_with bench_train_bf16_both "staged + GELU epil.:" KINDBENCH_BF16_OPERANDS=1 KINDBENCH_LT_GELU=1
  # no cuBLASLt bias epilogue (GEMM, then a bias kernel)
  ours_with bench_train_bf16_nolt "no bias epilogue:   " KINDBENCH_CUBLASLT=0
  # 3. the other comparisons
  note "DiT-B/2 bf16 vs pure bf16+sdpa: $(bench bench_train_bf16pure bench/bench_train.sh "${dit[@]}" --precision bf16 --torch-precision bf16-pure)"
  note "DiT-B/2 fp32 vs fp32+sdpa:      $(bench bench_train_fp32 bench/bench_train.sh "${dit[@]}" --precision fp32 --steps 10)"
  note "Inception fp32 vs pytorch-fid:  $(bench bench_inception_fp32 bench/bench_inception.sh "${inc[@]}")"
  note "  tf32, batch 256 (ours):       $(KINDBENCH_INCEPTION_BATCH=256 bench bench_inception_tf32_b256 bench/bench_inception.sh "${inc[@]}" --precision tf32)"
fi

echo
echo "==== summary ($(cut -d, -f1 "$OUT/gpu.txt" 2>/dev/null))"
printf '%s\n' "${summary[@]}"
# a failed item: a check's rc other than 0 (passed) or 77 (skipped), the fixtures, a benchmark's "(exit N)"
awk '/^fixtures FAILED|\(exit [0-9]+\)/ { bad++; next }
     match($0, / rc=[0-9]+/) { rc = substr($0, RSTART + 4, RLENGTH - 4) + 0; if (rc != 0 && rc != 77) bad++ }
     END { if (bad) { print "device_check.sh: " bad " item(s) failed"; exit 1 } }' "$OUT/summary.txt"
