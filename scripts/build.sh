#!/usr/bin/env bash
# Configures and builds kindbench into ./build (or $KB_BUILD_DIR). The CUDA
# backend is compiled when nvcc is found (/usr/local/cuda on our machines);
# pass -DKB_WITH_CUDA=OFF through KB_CMAKE_ARGS for a CPU-only build.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${KB_BUILD_DIR:-build}
JOBS=${KB_JOBS:-$(nproc)}
mkdir -p "$BUILD_DIR"
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release ${KB_CMAKE_ARGS:-} >"$BUILD_DIR/configure.log" 2>&1 ||
  { cat "$BUILD_DIR/configure.log"; exit 1; }
grep "kindbench:" "$BUILD_DIR/configure.log" || true
cmake --build "$BUILD_DIR" -j "$JOBS"
echo "build: $BUILD_DIR/kindbench"
