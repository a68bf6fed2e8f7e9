#!/usr/bin/env bash
# `kindbench sample` end to end on the dit_ref fixture's model (8x8 RGB, 5
# classes): outputs and their layout (numpy reads the npz; PNGs equal arr_0),
# determinism (same seed -> byte-identical npz; --batch 1 vs 4 -> identical),
# EMA vs raw weights, and bad inputs: each a one-line error, a non-zero exit
# and no npz/PNG left behind.
set -u
KB=${KINDBENCH:?}
PY=${KB_PYTHON:-/usr/bin/python3}
T=$(mktemp -d /tmp/kb_test_sample.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1${2:+: $2}"; fail=$((fail + 1)); }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }

./sample_mkckpt "$T/ck.safetensors" || { echo "FAIL cannot make a checkpoint"; exit 1; }
./sample_mkckpt "$T/noema.safetensors" --no-ema || exit 1
./sample_mkckpt "$T/latent.safetensors" --channels 4 || exit 1
./sample_mkckpt "$T/nonull.safetensors" --channels 3 --no-dropout || exit 1

# one thread: these 8x8 models are far too small to gain from more, and a busy
# 2-core machine makes OpenMP teams wait on each other
run() { "$KB" sample --ckpt "$T/ck.safetensors" --quiet --threads 1 "$@"; }

# ---- a run and its outputs
if run --out "$T/a" --classes 0,3 --per-class 3 --steps 10 --seed 5 --batch 4 > "$T/a.log" 2> "$T/a.err"; then
  ok "sample runs"; else bad "sample runs" "$(cat "$T/a.err")"; fi
check "wrote npz, grid, json" test -f "$T/a/samples.npz" -a -f "$T/a/grid.png" -a -f "$T/a/sample.json"
check "6 PNGs named <index>_class<k>.png" test "$(ls "$T/a/png" | tr '\n' ' ')" = \
  "000000_class0.png 000001_class0.png 000002_class0.png 000003_class3.png 000004_class3.png 000005_class3.png "
check "no temp files" test -z "$(find "$T/a" -name '*.tmp*')"
if "$PY" - "$T/a" <<'EOF'
import json, sys
import numpy as np
from PIL import Image
d = sys.argv[1]
z = np.load(d + "/samples.npz")
assert z.files == ["arr_0", "arr_1"], z.files
x, y = z["arr_0"], z["arr_1"]
assert x.dtype == np.uint8 and x.shape == (6, 8, 8, 3), (x.dtype, x.shape)
assert y.dtype == np.int64 and y.tolist() == [0, 0, 0, 3, 3, 3], (y.dtype, y)
assert len(np.unique(x.reshape(6, -1), axis=0)) == 6, "samples repeat"
for i in range(6):
    png = np.asarray(Image.open(f"{d}/png/{i:06d}_class{y[i]}.png"))
    assert (png == x[i]).all(), f"png {i} differs from arr_0[{i}]"
g = Image.open(d + "/grid.png")
assert g.size == (2 + 3 * 10, 2 + 2 * 10), g.size  # 3 columns, 2 rows, 8px cells, 2px gaps
j = json.load(open(d + "/sample.json"))
assert j["sampler"] == "ddpm" and j["num_steps"] == 10 and j["cfg_scale"] == 1.5 and j["weights"] == "ema", j
assert j["classes"] == [0, 3] and j["count"] == 6 and j["seed"] == 5, j
print("numpy: arr_0 uint8 [6,8,8,3], arr_1 int64 labels; PNGs equal arr_0; grid 2x3; sample.json")
EOF
then ok "npz/PNG/grid/json contents (numpy, PIL)"; else bad "npz/PNG/grid/json contents (numpy, PIL)"; fi

check "--steps ' 10 ' (blanks around the count) = --steps 10" run --out "$T/blank" --classes 0,3 --per-class 3 --steps " 10 " \
  --seed 5 --batch 4 --no-png
check "... byte-identical npz" cmp -s "$T/a/samples.npz" "$T/blank/samples.npz"

# ---- a second run into the same --out replaces the first's PNGs
mkdir -p "$T/re" && cp -r "$T/a/png" "$T/re/" && touch "$T/re/png/notes.txt"
run --out "$T/re" --classes 4 --per-class 2 --steps 10 --seed 5 --batch 4 > "$T/re.log" 2>&1
check "rerun into the same --out: png/ holds its 2 samples only (other files kept)" test "$(ls "$T/re/png" | tr '\n' ' ')" = \
  "000000_class4.png 000001_class4.png notes.txt "
check "the removal is reported" grep -q "removed 6 sample PNGs of an earlier run" "$T/re.log"
# a run that fails after its PNGs were written (the npz hits a file size
# limit; SIGXFSZ ignored so write() fails) leaves png/ as it was
before=$(cd "$T/re/png" && sha256sum *)
(ulimit -f 1; trap '' XFSZ; exec "$KB" sample --ckpt "$T/ck.safetensors" --quiet --threads 1 --out "$T/re" --classes 1,2 \
  --per-class 4 --steps 5) > /dev/null 2> "$T/re.err"
rc=$?
check "a run failing at its npz exits non-zero ($(head -c 120 "$T/re.err"))" test $rc -ne 0
check "... and leaves png/ as it was, with no staging folder" test "$(cd "$T/re/png" && sha256sum *)" = "$before" -a \
  -z "$(find "$T/re" -name '.png.*')"
run --out "$T/re" --classes 4 --per-class 2 --steps 10 --seed 5 --no-png > /dev/null 2>&1
# A run that fails after its npz and grid are written (its sample.json, 1.2 KB,
# passes a 1 KB file size limit that the npz of 2 samples, 0.9 KB, does not)
# replaced the earlier npz, grid and PNGs and kept the earlier sample.json,
# which then described another run's npz. Now everything is written to temp
# files first and renamed together: the earlier run's outputs stay as they were.
run --out "$T/cm" --classes 1 --count 2 --steps 5 --seed 1 > /dev/null 2>&1 || bad "sample into cm" "exit $?"
digest() { (cd "$1" && sha256sum samples.npz grid.png sample.json png/*); }
before=$(digest "$T/cm")
check "(the setting: npz under 1 KB, sample.json over)" test "$(stat -c %s "$T/cm/samples.npz")" -lt 1024 -a \
  "$(stat -c %s "$T/cm/sample.json")" -gt 1024
(ulimit -f 1; trap '' XFSZ; exec "$KB" sample --ckpt "$T/ck.safetensors" --quiet --threads 1 --out "$T/cm" --classes 1 \
  --count 2 --steps 5 --seed 2) > /dev/null 2> "$T/cm.err"
rc=$?
check "a run failing at its sample.json exits non-zero, naming it ($(head -c 150 "$T/cm.err"))" test $rc -ne 0 -a \
  -n "$(grep -F "$T/cm/sample.json" "$T/cm.err")"
check "... and leaves the earlier npz, grid, json and PNGs as they were, no temp file" test "$(digest "$T/cm")" = \
  "$before" -a -z "$(find "$T/cm" -name '*.tmp.*' -o -name '.png.*')"
# An output path naming a directory (--grid DIR/png, a typo) failed only at
# its rename, after the sampling, with the earlier sample.json removed and the
# npz already replaced: it is refused before anything is written.
run --out "$T/cm" --classes 1 --count 2 --steps 5 --seed 3 --grid "$T/cm/png" > /dev/null 2> "$T/cmdir.err"
rc=$?
check "--grid naming a directory fails, naming it ($(head -c 150 "$T/cmdir.err"))" test $rc -ne 0 -a \
  -n "$(grep -F "$T/cm/png: is a directory" "$T/cmdir.err")"
check "... and leaves the earlier npz, grid, json and PNGs as they were, no temp file" test "$(digest "$T/cm")" = \
  "$before" -a -z "$(find "$T/cm" -name '*.tmp.*' -o -name '.png.*')"
# Two outputs on one path (--npz X --grid X, or --npz DIR/sample.json) made
# one replace the other silently: refused before sampling, outputs kept.
run --out "$T/cm" --count 2 --steps 5 --npz "$T/one.out" --grid "$T/./one.out" > /dev/null 2> "$T/same.err"
rc=$?
run --out "$T/cm" --count 2 --steps 5 --npz "$T/cm/sample.json" > /dev/null 2> "$T/same2.err"
rc2=$?
check "--npz and --grid on one file, and --npz DIR/sample.json, are refused ($(head -c 100 "$T/same.err"))" test \
  $rc -ne 0 -a $rc2 -ne 0 -a -n "$(grep "name one file" "$T/same.err")" -a -n "$(grep "is the run's sample.json" "$T/same2.err")" \
  -a ! -e "$T/one.out" -a "$(digest "$T/cm")" = "$before"
# Temp files of DIR's outputs that a killed run left (each as large as the
# npz) are removed; other files are not.
mkdir -p "$T/sw" && touch "$T/sw/samples.npz.tmp.AbC123" "$T/sw/samples.npz.tmp.AbC123.tmp.XyZ789.Qw1234" \
  "$T/sw/grid.png.tmp.k9k9k9" "$T/sw/sample.json.tmp.zzzzzz" "$T/sw/notes.tmp.AbC123" "$T/sw/samples.npz.tmp."
"$KB" sample --ckpt "$T/ck.safetensors" --threads 1 --out "$T/sw" --count 2 --steps 5 2> "$T/sw.err" > /dev/null ||
  bad "sample over stale temp files" "exit $?"
check "stale temp files of samples.npz, grid.png, sample.json are removed (said), others kept" test \
  "$(ls -A "$T/sw" | grep tmp | tr '\n' ' ')" = "notes.tmp.AbC123 samples.npz.tmp. " -a \
  "$(grep -c 'left by an interrupted run' "$T/sw.err")" = 4
check "rerun with --no-png removes the earlier PNGs" test "$(ls "$T/re/png" | tr '\n' ' ')" = "notes.txt "

# ---- determinism
run --out "$T/b" --classes 0,3 --per-class 3 --steps 10 --seed 5 --batch 4 --no-png > /dev/null 2>&1
run --out "$T/c" --classes 0,3 --per-class 3 --steps 10 --seed 5 --batch 1 --no-png > /dev/null 2>&1
run --out "$T/d" --classes 0,3 --per-class 3 --steps 10 --seed 6 --batch 4 --no-png > /dev/null 2>&1
check "same seed: byte-identical npz" cmp -s "$T/a/samples.npz" "$T/b/samples.npz"
check "--batch 1 vs --batch 4: identical npz" cmp -s "$T/a/samples.npz" "$T/c/samples.npz"
check "another seed: different npz" bash -c "! cmp -s '$T/a/samples.npz' '$T/d/samples.npz'"
check "--no-png: no png dir" test ! -e "$T/b/png"
run --out "$T/e" --classes 0,3 --per-class 3 --steps 10 --seed 5 --weights raw --no-png > /dev/null 2>&1
check "--weights raw differs from ema" bash -c "test -f '$T/e/samples.npz' && ! cmp -s '$T/a/samples.npz' '$T/e/samples.npz'"
run --out "$T/f" --count 7 --steps ddim5 --sampler ddim --eta 0.5 --cfg-mode all --cfg-scale 4 --clip-denoised \
  --npz "$T/f.npz" --grid "$T/f-grid.png" --no-png > /dev/null 2>&1
check "--count 7, ddim, --npz/--grid paths" "$PY" -c "
import numpy as np; z = np.load('$T/f.npz')
assert z['arr_0'].shape == (7, 8, 8, 3) and z['arr_1'].tolist() == [0, 1, 2, 3, 4, 0, 1]" 
check "--grid path written" test -f "$T/f-grid.png" -a ! -e "$T/f/samples.npz"

# ---- bad inputs: one line on stderr, exit status, nothing written
expect_fail() { # NAME WANT_STATUS NEEDLE ARGS...
  local name=$1 want=$2 needle=$3; shift 3
  rm -rf "$T/out"
  "$KB" sample --quiet "$@" > "$T/o.log" 2> "$T/e.log"
  local rc=$? first
  first=$(head -n 1 "$T/e.log")
  if [ "$rc" -ne "$want" ]; then bad "$name" "exit $rc, wanted $want: $first"; return; fi
  if ! grep -q -- "$needle" <<< "$first"; then bad "$name" "message '$first' lacks '$needle'"; return; fi
  if [ -n "$(find "$T/out" \( -name '*.npz' -o -name '*.png' -o -name '*.tmp*' \) 2>/dev/null)" ]; then
    bad "$name" "left files behind"; return; fi
  ok "$name -> $first"
}
head -c 300 "$T/ck.safetensors" > "$T/trunc.safetensors"
echo "not a checkpoint" > "$T/foreign.bin"
expect_fail "missing checkpoint" 1 "nope.safetensors" --ckpt "$T/nope.safetensors" --out "$T/out"
expect_fail "truncated checkpoint" 1 "trunc.safetensors" --ckpt "$T/trunc.safetensors" --out "$T/out"
expect_fail "foreign file" 1 "foreign.bin" --ckpt "$T/foreign.bin" --out "$T/out"
expect_fail "safetensors that is no checkpoint" 1 "not a kindbench checkpoint" \
  --ckpt "$KB_FIXTURES/dit_ref.safetensors" --out "$T/out"
# exit 2: options that do not fit the checkpoint are bad options, though found once it is read (exit 1 before)
expect_fail "class out of range" 2 "class 5 outside \[0, 5)" --ckpt "$T/ck.safetensors" --out "$T/out" --classes 0,5
expect_fail "class listed twice" 2 "--classes: class 3 listed twice" --ckpt "$T/ck.safetensors" --out "$T/out" --classes 3,1,3
expect_fail "class list syntax" 2 "--classes" --ckpt "$T/ck.safetensors" --out "$T/out" --classes 0,x
expect_fail "--steps 0" 2 "--steps" --ckpt "$T/ck.safetensors" --out "$T/out" --steps 0
expect_fail "--steps '' (an unset \$STEPS: ADM would take 1000 steps)" 2 "--steps: empty" --ckpt "$T/ck.safetensors" \
  --out "$T/out" --steps ""
expect_fail "--steps 1" 2 "--steps" --ckpt "$T/ck.safetensors" --out "$T/out" --steps 1
expect_fail "--steps 1001" 2 "--steps" --ckpt "$T/ck.safetensors" --out "$T/out" --steps 1001
expect_fail "--steps ddim999" 2 "ddim999" --ckpt "$T/ck.safetensors" --out "$T/out" --steps ddim999
expect_fail "--steps abc" 2 "abc" --ckpt "$T/ck.safetensors" --out "$T/out" --steps abc
expect_fail "bad --precision" 2 "expected fp32, tf32 or bf16" --ckpt "$T/ck.safetensors" --out "$T/out" --precision fp16
# options that cannot work together: exit 2 (it was 1, found only when the context was made)
expect_fail "--precision bf16 on the CPU" 2 "--precision bf16 needs --device cuda" --ckpt "$T/ck.safetensors" --out "$T/out" --precision bf16
expect_fail "--precision tf32 --device cpu" 2 "--precision tf32 needs --device cuda" --ckpt "$T/ck.safetensors" --out "$T/out" \
  --precision tf32 --device cpu
expect_fail "--count 0" 2 "--count" --ckpt "$T/ck.safetensors" --out "$T/out" --count 0
expect_fail "--per-class and --count" 2 "not both" --ckpt "$T/ck.safetensors" --out "$T/out" --count 3 --per-class 2
expect_fail "--cfg-scale 0.5" 2 "--cfg-scale" --ckpt "$T/ck.safetensors" --out "$T/out" --cfg-scale 0.5
expect_fail "--cfg-scale beyond float" 2 "--cfg-scale: expected a number in \[1, 3.40282e+38\]" --ckpt "$T/ck.safetensors" --out "$T/out" --cfg-scale 1e39
expect_fail "guidance so large the samples overflow" 1 "non-finite value" --ckpt "$T/ck.safetensors" --out "$T/out" --cfg-scale 1e38 --steps 5
expect_fail "--cfg-mode bad" 2 "--cfg-mode" --ckpt "$T/ck.safetensors" --out "$T/out" --cfg-mode some
expect_fail "--eta with ddpm" 2 "--eta" --ckpt "$T/ck.safetensors" --out "$T/out" --eta 0.5
expect_fail "no EMA in checkpoint (--weights ema, the default)" 2 "no EMA weights" --ckpt "$T/noema.safetensors" --out "$T/out"
expect_fail "guidance on a model without the null class" 2 "--cfg-scale 1.5: guidance needs the null class" \
  --ckpt "$T/nonull.safetensors" --out "$T/out"
check "... and without guidance it samples" "$KB" sample --quiet --threads 1 --ckpt "$T/nonull.safetensors" --cfg-scale 1 \
  --out "$T/nonull" --count 2 --steps 5 --no-png
expect_fail "4-channel (latent) model" 1 "4 channels" --ckpt "$T/latent.safetensors" --out "$T/out"
touch "$T/afile"
expect_fail "unwritable output dir" 1 "afile" --ckpt "$T/ck.safetensors" --out "$T/afile/out"
expect_fail "unwritable --npz" 1 "missing-dir" --ckpt "$T/ck.safetensors" --out "$T/out" --npz "$T/missing-dir/x.npz"
# --npz/--grid naming a directory: refused before sampling (the sampling ran, then the rename failed)
mkdir -p "$T/adir"
expect_fail "--npz names a directory" 1 "--npz: .*adir: is a directory" --ckpt "$T/ck.safetensors" --out "$T/out" --npz "$T/adir"
expect_fail "--grid names a directory" 1 "--grid: .*adir: is a directory" --ckpt "$T/ck.safetensors" --out "$T/out" --grid "$T/adir"
"$KB" sample --ckpt "$T/ck.safetensors" --threads 1 --out "$T/out" --count 2 --steps 5 --npz "$T/adir" > /dev/null 2> "$T/e.log"
check "... before any sample is drawn (no progress line)" bash -c "! grep -q '^sample: ' <(tr '\r' '\n' < '$T/e.log')"
# --npz or --grid naming the checkpoint itself: the samples replaced it
cp "$T/ck.safetensors" "$T/self.safetensors"
expect_fail "--npz names the checkpoint" 2 "--npz .*self.safetensors is the checkpoint itself" --ckpt "$T/self.safetensors" \
  --out "$T/out" --count 2 --steps 5 --npz "$T/../$(basename "$T")/self.safetensors"
expect_fail "--grid names the checkpoint" 2 "--grid .*self.safetensors is the checkpoint itself" --ckpt "$T/self.safetensors" \
  --out "$T/out" --count 2 --steps 5 --grid "$T/self.safetensors"
check "... the checkpoint is kept" cmp -s "$T/ck.safetensors" "$T/self.safetensors"
expect_fail "--npz and --grid name one file" 2 "--npz and --grid name one file" --ckpt "$T/ck.safetensors" --out "$T/out" \
  --npz "$T/same" --grid "$T/same"
expect_fail "missing --out" 2 "required" --ckpt "$T/ck.safetensors"
check "no EMA + --weights raw works" "$KB" sample --quiet --threads 1 --ckpt "$T/noema.safetensors" --weights raw --out "$T/g" --count 2 --steps 5 --no-png

# ---- ImageNet's 1000 classes at 64 px: 1000 grid rows of 66 px exceed a PNG's
# 65535; the grid failed after sampling, dropping the run's PNGs. It now shows
# the 992 rows that fit.
./sample_mkckpt "$T/in1k.safetensors" --channels 3 --classes 1000 --size 64 || exit 1
if "$KB" sample --quiet --threads 1 --ckpt "$T/in1k.safetensors" --out "$T/in1k" --count 3 --steps 2 \
  > "$T/in1k.log" 2> "$T/in1k.err"; then ok "1000 classes at 64 px"; else bad "1000 classes at 64 px" "$(cat "$T/in1k.err")"; fi
check "... its 3 PNGs and sample.json" test "$(ls "$T/in1k/png" 2>/dev/null | wc -l)" = 3 -a -f "$T/in1k/sample.json"
check "... grid of 992 rows (68x65474), said so" "$PY" -c "
import json, struct, sys
d = sys.argv[1]
w, h = struct.unpack('>II', open(d + '/grid.png', 'rb').read()[16:24])
assert (w, h) == (68, 2 + 992 * 66), (w, h)
assert json.load(open(d + '/sample.json'))['grid_classes'] == 992
assert 'first 992 of the 1000 classes' in open(sys.argv[2]).read()" "$T/in1k" "$T/in1k.log"

# Staging folders of killed runs (DIR/.png.new.<pid>, full of PNGs) piled up,
# one per kill: a run removes those whose pid is gone, not a live run's.
sh -c 'exit 0' & dead=$!; wait "$dead"
mkdir -p "$T/st/.png.new.$dead" "$T/st/.png.new.$$"
touch "$T/st/.png.new.$dead/000000_class0.png" "$T/st/.png.new.$$/000000_class0.png"
run --out "$T/st" --count 2 --steps 5 || bad "sample over stale staging folders" "exit $?"
if [[ ! -e "$T/st/.png.new.$dead" && -e "$T/st/.png.new.$$/000000_class0.png" ]]; then
  ok "a dead run's staging folder is removed, a live one's kept"
else bad "stale staging folders" "$(ls -A "$T/st")"; fi
# A run killed between its two renames left DIR/png missing and the earlier
# set in DIR/.png.old.<pid>: the next run takes it back (its non-sample files
# stay in png/ as a replaced set's do) and no .png.old.<pid> is left.
mkdir -p "$T/st2/.png.old.$dead" && touch "$T/st2/.png.old.$dead/000000_class0.png" "$T/st2/.png.old.$dead/keep.txt"
run --out "$T/st2" --count 2 --steps 5 || bad "sample over a dead run's earlier set" "exit $?"
if [[ ! -e "$T/st2/.png.old.$dead" && -e "$T/st2/png/keep.txt" && "$(ls "$T/st2/png" | grep -c '_class')" == 2 ]]; then
  ok "a dead run's .png.old folder is taken back, its other files kept"
else bad "a dead run's .png.old folder" "$(ls -A "$T/st2" "$T/st2/png" 2>&1)"; fi

# Two runs into one DIR: the second is refused while the first holds DIR/.sample.lock
"$KB" sample --ckpt "$T/ck.safetensors" --quiet --threads 1 --out "$T/two" --count 64 --steps 1000 > /dev/null 2>&1 &
first=$! # kindbench itself (a backgrounded `run` would be a subshell: killing it would leave kindbench running)
for _ in $(seq 400); do compgen -G "$T/two/.png.new.*/*.png" > /dev/null && break; sleep 0.05; done
out=$(run --out "$T/two" --count 2 --steps 5 2>&1); rc=$?
kill "$first" 2> /dev/null; wait "$first" 2> /dev/null
if [[ $rc == 1 && $out == *"$T/two is in use by another kindbench sample (pid $first)"* && ! -e "$T/two/samples.npz" ]]; then
  ok "a second sample into a DIR being written is refused, naming the first"
else bad "two samples into one DIR" "exit $rc: $out"; fi
out=$(run --out "$T/two" --count 2 --steps 5 2>&1) && ok "once the first run is gone, DIR is free" ||
  bad "a run after the first was killed" "exit $?: $out"

# A run whose --npz lies in another run's DIR: the other run's sweep of the
# temp files killed runs left took this live run's staged npz for one (it said
# "left by an interrupted run" and removed it; mid-write, the live run would
# then fail after sampling everything). Temp names carry their creator's pid,
# and the sweep leaves those of live processes alone; a dead one's still go.
mkdir -p "$T/shared"
"$KB" sample --ckpt "$T/ck.safetensors" --quiet --threads 1 --out "$T/own" --npz "$T/shared/samples.npz" --count 64 \
  --steps 1000 --no-png > /dev/null 2>&1 &
first=$!
for _ in $(seq 400); do compgen -G "$T/shared/samples.npz.tmp.*" > /dev/null && break; sleep 0.05; done
live=$(cd "$T/shared" && ls samples.npz.tmp.* 2> /dev/null)
touch "$T/shared/samples.npz.tmp.99999999.AbC123" "$T/shared/grid.png.tmp.$$.AbC123" # a dead pid's, a live one's
out=$(run --out "$T/shared" --count 2 --steps 5 --no-png 2>&1); rc=$?
still=$(cd "$T/shared" && ls "$live" 2> /dev/null)
kill "$first" 2> /dev/null; wait "$first" 2> /dev/null
if [[ $rc == 0 && -n $live && $still == "$live" && $out != *"$live"* && -e "$T/shared/grid.png.tmp.$$.AbC123" &&
      ! -e "$T/shared/samples.npz.tmp.99999999.AbC123" ]]; then
  ok "a run's sweep leaves a live run's temp file in its DIR alone ($live), removes a dead one's"
else bad "sweep beside a live run" "exit $rc, live '$live', after '$still': $out; $(ls -A "$T/shared" | tr '\n' ' ')"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
