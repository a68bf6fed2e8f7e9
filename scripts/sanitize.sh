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
# (with KB_SAN_FIXTURES set, an -E of your own replaces the one that skips
# the fixture scripts).
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
# KB_SAN_FIXTURES=DIR reuses the PyTorch fixtures another build of this same
# checkout has made (CI: build/tests/fixtures, made by the suite just run)
# instead of running the Python reference scripts again (about 2 minutes);
# they run no C code, so the sanitizers lose nothing.
SKIP_SETUP=()
if [[ -n ${KB_SAN_FIXTURES:-} ]]; then
  [[ -d $KB_SAN_FIXTURES && -n "$(ls -A "$KB_SAN_FIXTURES")" ]] ||
    { echo "sanitize: KB_SAN_FIXTURES=$KB_SAN_FIXTURES is not a directory of fixtures" >&2; exit 1; }
  rm -rf "$BUILD_DIR/tests/fixtures" && ln -s "$(realpath "$KB_SAN_FIXTURES")" "$BUILD_DIR/tests/fixtures"
  SKIP_SETUP=(--exclude-regex '^fixture_' --fixture-exclude-setup '.*')
elif [[ -L $BUILD_DIR/tests/fixtures ]]; then
  # left by a run with KB_SAN_FIXTURES: the fixture scripts would rewrite the other build's fixtures through it
  rm "$BUILD_DIR/tests/fixtures"
fi
ctest --test-dir "$BUILD_DIR" -j "$JOBS" --output-on-failure "${SKIP_SETUP[@]}" "$@"
echo "sanitize: every test passed under ASan, LSan and UBSan ($BUILD_DIR)"
