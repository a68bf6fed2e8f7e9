#!/usr/bin/env bash
# Packs what the GPU checks need for a lent GPU machine (see docs/gpu.md):
# the CUDA-built kindbench, the GPU test and bench executables, and the
# shared libraries they use that such a machine lacks (OpenBLAS, LAPACK(E),
# libpng, libjpeg, libzip, cJSON, libcsv, FFTW and their own dependencies),
# into .devpkg/kb.tar.xz (git-ignored; it travels with the `device` tool's
# `carry`). The C runtime, libstdc++ and the CUDA libraries (cudart, cuBLAS,
# cuBLASLt, cuDNN) are the GPU machine's own, found there by
# bench/device_check.sh. Built here with this machine's CUDA 13.0 for sm_90.
#   bash bench/device_pack.sh            (sets up and builds build/ first, as README command 2 does)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${KB_BUILD:-build}
[ -x /usr/local/cuda/bin/nvcc ] || { echo "device_pack.sh: needs the CUDA toolkit (/usr/local/cuda) to build" >&2; exit 1; }
bash scripts/setup.sh >/dev/null && KB_BUILD_DIR="$B" bash scripts/build.sh >/dev/null
bins=(kindbench tests/test_ops_cuda tests/test_ops_dit_cuda tests/test_diffusion_cuda tests/test_dit_torch tests/test_dit_layout
      tests/test_inception_cuda tests/test_attn_fused tests/test_ops_x16 tests/sample_mkckpt tests/bench_inception
      tests/bench_attn)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/kb/bin" "$stage/kb/lib"
for b in "${bins[@]}"; do
  [ -x "$B/$b" ] || { echo "device_pack.sh: $B/$b not built" >&2; exit 1; }
  cp "$B/$b" "$stage/kb/bin/"
done
# every resolved library but the C runtime, libstdc++/libgcc and CUDA's
for b in "$stage"/kb/bin/*; do ldd "$b"; done | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u |
  grep -Ev '/(libc|libm|libpthread|libdl|librt|ld-linux-x86-64|libstdc\+\+|libgcc_s)\.so|/libcu|/libnv' |
  while read -r lib; do cp -L "$lib" "$stage/kb/lib/"; done
mkdir -p .devpkg
tar -C "$stage" -cJf .devpkg/kb.tar.xz kb
echo "device_pack.sh: .devpkg/kb.tar.xz ($(du -h .devpkg/kb.tar.xz | cut -f1)): $(ls "$stage/kb/bin" | wc -l) programs, $(ls "$stage/kb/lib" | wc -l) libraries"
