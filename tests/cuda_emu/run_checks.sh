#!/usr/bin/env bash
# The CUDA checks (tests/cuda_checks.sh, the list a GPU machine runs) on the
# CPU emulator (tests/cuda_emu/kb_cuda_emu.h): builds $KB_EMU_BUILD (default
# build-emu) with -DKB_CUDA_EMU=ON, makes the PyTorch fixtures with Debian's
# torch, runs every check, prints a summary; exit status 1 if any failed.
# What passing here shows: the CUDA code's logic (indexing, barriers, warp
# collectives, launch limits, library call arguments) against the CPU
# reference and PyTorch. What it cannot show: GPU speed, or bugs that only
# the hardware's memory model or tensor-core rounding would expose.
# With KB_EMU_ASAN=1 everything is built with AddressSanitizer and UBSan
# (build-emu-asan): a kernel that reads or writes past a device buffer, or
# loads a float4 from an address that is not 16-byte aligned, aborts.
# With KB_EMU_TSAN=1 everything is built with ThreadSanitizer
# (build-emu-tsan): two emulated GPU threads' accesses to one address, one a
# write, with no barrier, warp collective or launch between them, are a data
# race, which fails the check (exit status 66) with TSan's report in its log.
#   bash tests/cuda_emu/run_checks.sh [NAME_REGEX]     (only the checks whose names match)
set -uo pipefail
cd "$(dirname "$0")/../.."
ASAN=${KB_EMU_ASAN:-0} TSAN=${KB_EMU_TSAN:-0}
[[ $ASAN == 1 && $TSAN == 1 ]] && { echo "run_checks.sh: KB_EMU_ASAN=1 and KB_EMU_TSAN=1 do not combine" >&2; exit 2; }
B=${KB_EMU_BUILD:-build-emu$([[ $ASAN == 1 ]] && echo -asan)$([[ $TSAN == 1 ]] && echo -tsan)}
ONLY=${1:-.}
source tests/lanes.sh
JOBS=${KB_EMU_JOBS:-$(lanes_cores)}
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || { echo "run_checks.sh: KB_EMU_JOBS=$JOBS is not a positive integer" >&2; exit 2; }
export KB_PY=${KB_PYTHON:-/usr/bin/python3}
[[ $ASAN == 1 ]] && export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:allocator_may_return_null=1}
LIMIT=1200 # seconds per check
if [[ $TSAN == 1 ]]; then
  # a race ends the check with status 66; OpenMP and OpenBLAS (not instrumented: TSan
  # cannot see their synchronisation) get one thread, and kindbench's own CPU threads too
  export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:exitcode=66:allocator_may_return_null=1:suppressions=$PWD/tests/cuda_emu/tsan.supp}
  export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 KINDBENCH_THREADS=1
  LIMIT=3600
fi
cmake -S . -B "$B" -DKB_CUDA_EMU=ON -DKB_EMU_ASAN=$([[ $ASAN == 1 ]] && echo ON || echo OFF) \
  -DKB_EMU_TSAN=$([[ $TSAN == 1 ]] && echo ON || echo OFF) > "$B.configure.log" 2>&1 ||
  { cat "$B.configure.log"; exit 1; }
cmake --build "$B" -j "$(nproc)" > "$B.build.log" 2>&1 || { tail -n 40 "$B.build.log"; exit 1; }
BA=$(cd "$B" && pwd) # the build directory as an absolute path (KB_EMU_BUILD may be relative or absolute)
KB_BIN=$BA/emu-bin KB_WORK=$BA/emu-work
rm -rf "$KB_BIN" "$KB_WORK" && mkdir -p "$KB_BIN" "$KB_WORK"
ln -s "$BA/kindbench" "$KB_BIN/kindbench"
for t in "$BA"/tests/*; do [[ -f $t && -x $t ]] && ln -s "$t" "$KB_BIN/"; done
export KB_FIXTURES=$BA/tests/fixtures KB_SOURCE_DIR=$PWD
mkdir -p "$KB_FIXTURES"
{ "$KB_PY" tests/ref/dit_ref.py && "$KB_PY" tests/ref/inception_ref.py; } > "$KB_WORK/fixtures.log" 2>&1 ||
  { echo "run_checks.sh: fixtures failed:"; tail -n 5 "$KB_WORK/fixtures.log"; exit 1; }

# The checks are independent (each has its own log, scratch directory or
# mktemp), and the emulated GPU of each runs on one core, so they run
# KB_EMU_JOBS at a time (default: one per core; tests/lanes.sh); each line is
# printed as its check ends.
LANES=$JOBS LANES_DIR=$KB_WORK
failed=() ran=0
lane_done() { # name, rc, seconds: its result line, and the first failure lines of its log
  local name=$1 rc=$2 secs=$3
  printf '%-34s rc=%d %4ds  %s\n' "$name" "$rc" "$secs" "$(tail -n 1 "$KB_WORK/$name.log")"
  if [[ $rc != 0 ]]; then
    failed+=("$name")
    # with TSan: its warning, the two accesses and their innermost frames, its summary
    grep -E '^FAIL|emulator|^WARNING: ThreadSanitizer|^  (Write|Read|Previous|Atomic) .* (by|of size)|^    #0 |^SUMMARY: ThreadSanitizer' \
      "$KB_WORK/$name.log" | head -n $([[ $TSAN == 1 ]] && echo 8 || echo 5)
  fi
}
run_one() { # name, command...
  local name=$1; shift
  timeout -k 10 "$LIMIT" "$@" > "$KB_WORK/$name.log" 2>&1
}
run_test() { # name, command...
  [[ $1 =~ $ONLY ]] || return 0
  ran=$((ran + 1))
  lanes_run "$1" run_one "$@"
}
echo "== CUDA checks on the CPU emulator ($B; logs in $KB_WORK)"
# first the emulator itself: barriers, collectives, mma.sync, static shared memory, launch limits, aborts
run_test cuda_emu_self "$BA/test_cuda_emu"
run_test cuda_emu_self_reverse env KB_EMU_ORDER=reverse "$BA/test_cuda_emu"
if [[ $TSAN == 1 ]]; then
  # the race detector itself: each racy kernel of test_cuda_emu.cu reported (exit status 66, its name in
  # the report), among them a missing __syncthreads that neither order of the threads shows, and their
  # correct versions not
  for race in shared warp blocks blocks_far; do
    kernel=$(case $race in shared) echo overwrite;; warp) echo warp_sums;; blocks*) echo flag_across_barrier;; esac)
    run_test "tsan_catches_$race" bash -c 'out=$(KB_EMU_SELFTEST_RACE=$2 "$1" 2>&1); rc=$?
      grep -m 1 "^SUMMARY: ThreadSanitizer" <<< "$out"
      [[ $rc == 66 ]] && grep -q "^WARNING: ThreadSanitizer: data race" <<< "$out" &&
        grep -q "^SUMMARY: ThreadSanitizer: data race .* in $3(" <<< "$out" && echo "caught: $3"' \
      _ "$BA/test_cuda_emu" "$race" "$kernel"
  done
  run_test tsan_barriers_race_free env KB_EMU_SELFTEST_RACE=none "$BA/test_cuda_emu"
fi
source tests/cuda_checks.sh
kb_cuda_checks
# the emulator only: the fallbacks where cuBLASLt offers no algorithm, or refuses a bf16 D at run time
run_test emu_lt_none env KB_EMU_LT=0 KINDBENCH_LT_GELU=1 KINDBENCH_LT_BGRAD=1 "$KB_BIN/test_ops_x16" cuda
run_test emu_lt_refuse_bf16_d env KB_EMU_LT=refuse-bf16-d KINDBENCH_LT_GELU=1 "$KB_BIN/test_dit_torch" cuda bf16 fused \
  bf16acts
# cuDNN refusing its heuristic's first convolution algorithm at run time: the next candidate runs
run_test emu_cudnn_refuse_first env KB_EMU_CUDNN=refuse-first "$KB_BIN/test_inception_cuda"
# a GPU the build has no code for (an A100 under the default sm_90 build): a clear error at once
run_test emu_no_kernel_image bash -c 'out=$(KB_EMU_CC=8.0 "$1" bench train --device cuda --steps 1 --warmup 0 2>&1)
  rc=$?; echo "$out" | tail -n 2
  [[ $rc == 1 ]] && grep -q "compute capability 8.0) cannot run this build.s kernels.*built for CUDA architectures 90; rebuild with KB_CMAKE_ARGS=-DCMAKE_CUDA_ARCHITECTURES=80" <<< "$out" && grep -q "no kernel image" <<< "$out"' \
  _ "$KB_BIN/kindbench"
lanes_wait
echo "== $ran checks, ${#failed[@]} failed${failed:+: ${failed[*]}}"
[[ ${#failed[@]} == 0 && $ran -gt 0 ]]
