#!/usr/bin/env bash
# Fréchet distance speed at 2048-d: kindbench (bench_fid, each route, 1 and
# 2 OpenBLAS threads) beside pytorch-fid's scipy.linalg.sqrtm on the same
# machine. Goal: <= 0.5 s on 2 CPU cores.
#   bash bench/bench_fid.sh [dim] [reps]        (build dir: $KB_BUILD, default build)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${KB_BUILD:-build}
DIM=${1:-2048}
REPS=${2:-5}
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load: $(cut -d' ' -f1-3 /proc/loadavg)"
OURS=$("$B/tests/bench_fid" "$DIM" "$REPS") || { echo "$OURS"; exit 1; }
echo "$OURS"
PEER=$(OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 /usr/bin/python3 - "$DIM" <<'PY'
import sys, time
import numpy as np, scipy.linalg
d = int(sys.argv[1]); n = max(4000, 2 * d)
rng = np.random.default_rng(1)
m = (rng.standard_normal((d, d)) * 0.05).astype(np.float32)
x1 = np.maximum(rng.standard_normal((n, d)).astype(np.float32) @ m + 0.1, 0)
x2 = np.maximum(rng.standard_normal((n, d)).astype(np.float32) @ m + 0.12, 0)
s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
t = time.time(); covmean, _ = scipy.linalg.sqrtm(s1.dot(s2), disp=False); t = time.time() - t
print(f"pytorch-fid (scipy sqrtm) {d}-d, 2 threads: {t:.3f} s")
PY
) || { echo "$PEER"; exit 1; }
echo "$PEER"
# the ratio and the goal, from the full-rank auto route on 2 threads (best of REPS)
best=$(grep -m1 'FD auto .*2 threads' <<< "$OURS" | sed -E 's/.*best ([0-9.]+) s.*/\1/')
peer=$(sed -E 's/.*: ([0-9.]+) s$/\1/' <<< "$PEER")
awk -v k="$best" -v p="$peer" 'BEGIN { printf "ratio (scipy sqrtm / kindbench auto, 2 threads): %.1fx; goal <= 0.5 s: %s (best %.3f s)\n", p / k, k <= 0.5 ? "met" : "NOT met", k }'
