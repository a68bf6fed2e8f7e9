#!/usr/bin/env bash
# The whole CPU test suite under AddressSanitizer (with LeakSanitizer) and
# UndefinedBehaviorSanitizer (with float-cast-overflow: a NaN or out-of-range
# double cast to an integer, e.g. from a hostile file's JSON, is undefined in
# C): a CPU-only build in ./build-san (or $KB_SAN_BUILD_DIR), then ctest.
# Any invalid access, leak or undefined operation fails the test that hit
# it. CI runs it after the normal suite;
# the CUDA kernels get the same treatment on the CPU emulator
# (KB_EMU_ASAN=1 bash tests/cuda_emu/run_checks.sh).
# Extra ctest arguments pass through: bash scripts/sanitize.sh -R fuzz
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${KB_SAN_BUILD_DIR:-build-san}
JOBS=${KB_JOBS:-$(nproc)}
CHECKS=address,undefined,float-cast-overflow
SAN="-fsanitize=$CHECKS -fno-omit-frame-pointer -fno-sanitize-recover=undefined,float-cast-overflow"
mkdir -p "$BUILD_DIR"
cmake -S . -B "$BUILD_DIR" -DKB_WITH_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_C_FLAGS=$SAN" \
  "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=$CHECKS" >"$BUILD_DIR/configure.log" 2>&1 ||
  { cat "$BUILD_DIR/configure.log"; exit 1; }
cmake --build "$BUILD_DIR" -j "$JOBS"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
ctest --test-dir "$BUILD_DIR" -j "$JOBS" --output-on-failure "$@"
echo "sanitize: every test passed under ASan, LSan and UBSan ($BUILD_DIR)"
