#!/usr/bin/env bash
# Installs what kindbench needs from Debian, idempotently: a second run with
# everything present does nothing but check. Run as root or with sudo.
#   build:   gcc, cmake, pkg-config, OpenBLAS (OpenMP build)/LAPACKE, libpng, libjpeg, giflib, libcsv,
#            FFTW, cJSON, OpenSSL (SHA-256), zlib, libzip (.npz)
#   run:     gnuplot (plots), Fashion-MNIST (Debian dataset), npm (emoji/Pokemon packages)
#   tests:   /usr/bin/python3 with Debian's torch, torchvision, numpy, scipy, PIL
# The CUDA toolkit is not installed here: when /usr/local/cuda/bin/nvcc exists
# the build adds the CUDA backend, otherwise it builds CPU-only.
set -euo pipefail

PACKAGES=(
  gcc make cmake pkg-config
  libopenblas-dev libopenblas-openmp-dev liblapacke-dev libpng-dev libjpeg-dev libgif-dev libcsv-dev libfftw3-dev libcjson-dev libssl-dev zlib1g-dev libzip-dev
  gnuplot-nox dataset-fashion-mnist
  python3 python3-torch python3-torchvision python3-numpy python3-scipy python3-pil
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} Debian packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "setup: done"
