#!/usr/bin/env bash
# Fréchet distance speed at 2048-d: kindbench (bench_fid, each route, 1 and
# 2 OpenBLAS threads) beside pytorch-fid's calculate_frechet_distance (its
# scipy.linalg.sqrtm route, whole: product, sqrtm, checks, traces) on the same
# machine and the same statistics (bench_fid writes them for the peer), both
# timed as the best of REPS calls; the FD values of both are printed. Goal:
# <= 0.5 s on 2 CPU cores.
#   bash bench/bench_fid.sh [dim] [reps]        (build dir: $KB_BUILD, default build)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${KB_BUILD:-build}
DIM=${1:-2048}
REPS=${2:-5}
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load: $(cut -d' ' -f1-3 /proc/loadavg)"
STATS=$(mktemp --suffix=.npz)
trap 'rm -f "$STATS"' EXIT
OURS=$(KB_BENCH_FID_STATS=$STATS "$B/tests/bench_fid" "$DIM" "$REPS") || { echo "$OURS"; exit 1; }
echo "$OURS"
PEER=$(OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 /usr/bin/python3 - "$STATS" "$REPS" <<'PY'
import sys, time
import numpy as np, scipy.linalg
f, reps = np.load(sys.argv[1]), int(sys.argv[2])  # bench_fid's own full-rank statistics: the same matrices
mu1, s1, mu2, s2 = f["mu1"], f["sigma1"], f["mu2"], f["sigma2"]
d = len(mu1)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """pytorch-fid's calculate_frechet_distance, the same steps."""
    diff = mu1 - mu2
    covmean, _ = scipy.linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError("imaginary component %g" % np.max(np.abs(covmean.imag)))
        covmean = covmean.real
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)


times = []
for _ in range(reps):
    t = time.perf_counter(); fd = frechet_distance(mu1, s1, mu2, s2); times.append(time.perf_counter() - t)
print(f"pytorch-fid (calculate_frechet_distance, scipy sqrtm) {d}-d, 2 threads: FD {fd:.6f}, best of {reps} "
      f"(median {sorted(times)[len(times) // 2]:.3f} s): {min(times):.3f} s")
PY
) || { echo "$PEER"; exit 1; }
echo "$PEER"
# the ratio and the goal, from the full-rank auto route on 2 threads (best of REPS)
best=$(grep -m1 'FD auto .*2 threads' <<< "$OURS" | sed -E 's/.*best ([0-9.]+) s.*/\1/')
peer=$(sed -E 's/.*: ([0-9.]+) s$/\1/' <<< "$PEER")
awk -v k="$best" -v p="$peer" 'BEGIN { printf "ratio (pytorch-fid / kindbench auto, 2 threads, best of each): %.1fx; goal <= 0.5 s: %s (best %.3f s)\n", p / k, k <= 0.5 ? "met" : "NOT met", k }'
