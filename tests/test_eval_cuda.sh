#!/usr/bin/env bash
# `kindbench eval --device cuda` end to end against `--device cpu`: two
# folders of 12 PNGs (32x32 colour waves of two frequency ranges, one grey
# image among the samples), every metric, the FID Inception with the
# fixture's random weights (tests/ref/inception_ref.py; the real file is not
# needed to compare the two devices), batches of 5 so that the last is
# partial:
#  - FID, sFID, IS, KID: |cuda - cpu| <= 1e-4 |cpu| (the issue's bound on
#    FID, taken as relative; the others follow the same features);
#  - precision, recall, density, coverage: within one image's share (1/12):
#    k-NN radii compared with `<=` may flip for a pair that is a tie within
#    the features' rounding;
#  - spectral: the same value (it is computed from the pixels, on the CPU);
#  - a second CUDA run writes a byte-identical CSV.
# Exit 77 (skipped) without a CUDA build or GPU.
set -u
KB=$(realpath "${KINDBENCH:?}")
PY=${KB_PYTHON:-/usr/bin/python3}
WEIGHTS=${KB_FIXTURES:?}/inception_rand_legacy.pth
[[ -f $WEIGHTS ]] || { echo "FAIL $WEIGHTS missing (tests/ref/inception_ref.py makes it)"; exit 1; }
T=$(mktemp -d /tmp/kb_test_eval_cuda.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1${2:+: $2}"; fail=$((fail + 1)); }

"$PY" - "$T" << 'EOF' || { echo "FAIL cannot make the image folders"; exit 1; }
import os, sys
import numpy as np
from PIL import Image
rng = np.random.default_rng(7)
yy, xx = np.mgrid[0:32, 0:32] / 32.0
for name, freq in (("samples", 2.0), ("reference", 6.0)):
    os.makedirs(os.path.join(sys.argv[1], name))
    for i in range(12):
        img = np.stack([128 + 90 * np.sin(2 * np.pi * (freq * rng.uniform(0.4, 1.0) * yy +
                                                       freq * rng.uniform(0.4, 1.0) * xx) + rng.uniform(0, 6.3))
                        for _ in range(3)], -1) + rng.normal(0, 12, (32, 32, 3))
        img = Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8))
        if name == "samples" and i == 0:
            img = img.convert("L")  # converted back to RGB as pytorch-fid does
        img.save(os.path.join(sys.argv[1], name, f"{i:02d}.png"))
EOF

run() { # device, csv name
  "$KB" eval "$T/samples" "$T/reference" --metrics all --device "$1" --batch 5 --no-cache --quiet \
    --inception-weights "$WEIGHTS" --allow-unverified-weights --csv "$T/$2.csv" > "$T/$2.out" 2> "$T/$2.err"
}
if ! run cuda cuda; then
  if grep -qiE "no CUDA GPU|built without CUDA" "$T/cuda.err"; then echo "skipped: no GPU"; exit 77; fi
  bad "eval --device cuda runs" "$(cat "$T/cuda.err")"
fi
run cpu cpu || bad "eval --device cpu runs" "$(cat "$T/cpu.err")"

if [[ -f $T/cpu.csv && -f $T/cuda.csv ]]; then
  checks=$("$PY" - "$T/cpu.csv" "$T/cuda.csv" << 'EOF'
import csv, sys
cpu, gpu = ({r["metric"]: float(r["value"]) for r in csv.DictReader(open(p))} for p in sys.argv[1:3])
bounds = {"FID": ("rel", 1e-4), "sFID": ("rel", 1e-4), "IS": ("rel", 1e-4), "KID": ("rel", 1e-4),
          "precision": ("abs", 1 / 12), "recall": ("abs", 1 / 12), "density": ("abs", 1 / 12),
          "coverage": ("abs", 1 / 12), "spectral": ("abs", 0.0)}
for m, (kind, b) in bounds.items():
    if m not in cpu or m not in gpu:
        print(f"FAIL {m}: missing from a CSV")
        continue
    d = abs(gpu[m] - cpu[m])
    tol = b * abs(cpu[m]) if kind == "rel" else b
    verdict = "ok  " if d <= tol else "FAIL"
    print(f"{verdict} {m} cuda vs cpu: cuda {gpu[m]:.9g}, cpu {cpu[m]:.9g}, |d| = {d:.3g} "
          f"(bound {tol:.3g}{', relative 1e-4' if kind == 'rel' else ''})")
EOF
  )
  echo "$checks"
  pass=$((pass + $(grep -c '^ok' <<< "$checks"))) fail=$((fail + $(grep -c '^FAIL' <<< "$checks")))
fi

if run cuda cuda2; then
  cmp -s "$T/cuda.csv" "$T/cuda2.csv" && ok "a second CUDA run writes a byte-identical CSV" ||
    bad "CUDA rerun" "$(diff "$T/cuda.csv" "$T/cuda2.csv" | head -n 6)"
else
  bad "second eval --device cuda runs" "$(cat "$T/cuda2.err")"
fi
echo "$pass passed, $fail failed"
[[ $fail == 0 ]]
