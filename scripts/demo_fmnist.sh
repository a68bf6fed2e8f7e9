#!/usr/bin/env bash
# The CPU demo that the README shows: a small class-conditional DiT trained on
# Fashion-MNIST at 32 px for 2000 steps (about 12 minutes on 2 cores), then 8
# samples per class with 250 DDPM steps and classifier-free guidance 4 (DiT's
# sample.py setting for pictures), from the EMA weights. Deterministic for a
# given seed and thread count: rerunning gives the same grid.
#   bash scripts/demo_fmnist.sh            (after scripts/setup.sh and scripts/build.sh)
# Outputs: results/fmnist-demo/{loss.csv, last.safetensors, samples/grid.png}
set -euo pipefail
cd "$(dirname "$0")/.."
KB=${KINDBENCH:-build/kindbench}
OUT=results/fmnist-demo
# Passive OpenMP waiting keeps two thread pools from spinning against each
# other when the machine is shared; it does not change any result.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
mkdir -p cache/datasets
[ -f cache/datasets/fm32.kbd ] || "$KB" data prepare --source fashion-mnist --resolution 32 -o cache/datasets/fm32.kbd
# A rerun continues the run already in $OUT (train refuses a fresh run into it): resuming is bit-identical
# to an unbroken run, and a finished one has nothing to do.
if [ -f "$OUT/last.safetensors" ]; then
  "$KB" train --resume "$OUT/last.safetensors" --steps 2000 --threads 2
else
  "$KB" train --data cache/datasets/fm32.kbd --out "$OUT" --depth 4 --width 128 --heads 4 --patch 4 --batch 32 \
    --steps 2000 --lr 5e-4 --ema-decay 0.995 --ckpt-every 500 --log-every 10 --seed 0 --threads 2
fi
"$KB" sample --ckpt "$OUT/last.safetensors" --out "$OUT/samples" --per-class 8 --steps 250 --sampler ddpm \
  --cfg-scale 4 --seed 0 --threads 2
echo "demo: $OUT/samples/grid.png"
