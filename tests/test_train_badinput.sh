#!/usr/bin/env bash
# Bad input to `kindbench train`: each case exits non-zero with one clear
# error line (checked against a pattern). Also: a diverging run (--lr 1e30
# truly produces a NaN loss) stops naming the step and writes no non-finite
# checkpoint; a full disk while checkpointing (ulimit -f, SIGXFSZ ignored so
# write() returns EFBIG) keeps the previous checkpoint intact and says so; a
# second run into a --out that a run is writing is refused; temp files left
# by killed runs are removed by the next run.
set -u
source "$(dirname "$0")/test_train_common.sh"
workspace train_badinput
make_cache data.kbd 16 || { bad "make the synthetic cache" "data prepare failed"; finish; exit 1; }
make_cache data8.kbd 8 || bad "make the 8px cache" "data prepare failed"
make_cache split.kbd 16 --test-fraction 0.25 || bad "make the split cache" "data prepare failed"
printf 'disk\n' > novel.txt
make_cache roles.kbd 16 --novel-classes novel.txt || bad "make the cache with a novel class" "data prepare failed"
S=(--depth 2 --width 32 --heads 2 --patch 4)
T=(train --data data.kbd --batch 4 --steps 2 --threads 1 --quiet)
"$KB" "${T[@]}" "${S[@]}" --out good || bad "a good 2-step run" "exit $?"

# ---- configs that do not fit: bad options (exit 2), also when found only once the data are open (the image
# size comes from the cache): they were exit 1 there, while `bench train` made the same shape exit 2
expect_usage "heads do not divide width" "3 heads do not divide width 64" "${T[@]}" --out b --depth 1 --width 64 --heads 3 --patch 4
expect_usage "image not divisible by patch" "image side 16 is not divisible by patch size 5" "${T[@]}" --out b --depth 1 --width 64 --heads 2 --patch 5
expect_usage "width not a multiple of 4" "width 66 must be a multiple of 4" "${T[@]}" --out b --depth 1 --width 66 --heads 2 --patch 4
expect_usage "width beyond the limits" "width 16384 is above the supported 8192" "${T[@]}" --out b --depth 1 --width 16384 --heads 2 --patch 4
# The model's own shape is checked before the cache is opened (a large cache's first open hashes it for
# minutes): with a missing or corrupt --data the shape's fault is reported, exit 2, not the cache's (exit 1).
head -c 4000 data.kbd > corrupt.kbd && printf 'garbage' >> corrupt.kbd
expect_usage "heads checked before a missing cache is opened" "3 heads do not divide width 64" train --data nothere.kbd --out b --steps 2 --depth 1 --width 64 --heads 3 --patch 4
expect_usage "heads checked before a corrupt cache is opened" "3 heads do not divide width 64" train --data corrupt.kbd --out b --steps 2 --depth 1 --width 64 --heads 3 --patch 4
expect_usage "width limit checked before the cache is opened" "width 16384 is above the supported 8192" train --data nothere.kbd --out b --steps 2 --depth 1 --width 16384 --heads 2 --patch 4
expect_usage "depth limit checked before the cache is opened" "depth 2000 is above the supported 1024" train --data corrupt.kbd --out b --steps 2 --model S/4 --depth 2000
expect_usage "width x mlp ratio checked before the cache is opened" "width 36 x mlp ratio 2.33 is not an integer" train --data nothere.kbd --out b --steps 2 --depth 1 --width 36 --heads 2 --patch 4 --mlp-ratio 2.33
[[ ! -e b ]] && ok "a shape refused before the data were opened made no --out" || bad "--out after a refused shape" "b exists"
expect_usage "no model shape" "give --model NAME .* or all of --depth, --width, --heads, --patch" "${T[@]}" --out b --depth 2
expect_usage "unknown preset" "unknown --model 'Q/4': not a DiT preset" "${T[@]}" --out b --model Q/4
expect_usage "--mlp-ratio finer than hundredths" "--mlp-ratio: at most two decimals \(e.g. 4 or 2.5\), got '2.999'" "${T[@]}" "${S[@]}" --out b --mlp-ratio 2.999
expect_usage "preset with trailing text" "unknown --model 'S/4garbage': not a DiT preset" "${T[@]}" --out b --model S/4garbage
expect_usage "--eps that float32 holds as 0" "--eps: expected a number in \[1.17549e-38, 1\], got '1e-50'" "${T[@]}" "${S[@]}" --out b --eps 1e-50
expect_usage "bad --classes" "--classes: expected pretrain, novel or all, got 'some'" "${T[@]}" --out b --model S/4 --classes some
expect_usage "no novel classes in the cache" "data.kbd: no classes with role 'novel'" "${T[@]}" --out b --model S/4 --classes novel
expect_usage "missing --steps" "--steps N is required" train --data data.kbd --out b --model S/4
expect_usage "non-numeric --lr" "--lr: expected a number, got 'fast'" "${T[@]}" --out b --model S/4 --lr fast
expect_usage "unknown option" "unknown option or missing value: '--bogus'" "${T[@]}" --out b --model S/4 --bogus
expect_usage "unknown short option in a cluster" "unknown option or missing value: '-x'" "${T[@]}" --out b --model S/4 -xy
expect_usage "bad --device names --device" "--device: unknown device 'gpu'" "${T[@]}" --out b --model S/4 --device gpu
expect_usage "bad --precision" "--precision: expected fp32, tf32 or bf16, got 'fp8'" "${T[@]}" --out b --model S/4 --precision fp8
expect_usage "--precision bf16 on the CPU" "--precision bf16 needs --device cuda: the CPU path computes in fp32 only" "${T[@]}" "${S[@]}" --out b --precision bf16
expect_usage "--precision tf32 --device cpu" "--precision tf32 needs --device cuda" "${T[@]}" "${S[@]}" --out b --precision tf32 --device cpu
expect_usage "no image of the classes in the split" "data.kbd: 0 images of 'pretrain' classes in split 'test'" "${T[@]}" "${S[@]}" --out b --split test
expect_fail "missing dataset" "nothere.kbd: cannot open" train --data nothere.kbd --out b --model S/4 --steps 2
expect_fail "fresh run into a used --out" "good already holds a training run .*--resume good/last.safetensors" "${T[@]}" "${S[@]}" --out good

# ---- the data do not match a given config: the options do not fit the data they name (exit 2)
expect_usage "--image-size differs from the data" "data.kbd: images are 16x16 with 3 channel\(s\), but the options state 32x32" "${T[@]}" "${S[@]}" --out b --image-size 32
expect_usage "--channels differs from the data" "images are 16x16 with 3 channel\(s\), but the options state 16x16 with 1 channel" "${T[@]}" "${S[@]}" --out b --channels 1
expect_usage "resume on data of another resolution" "data8.kbd: images are 8x8 .* but the checkpoint's model takes 16x16" train --resume good/last.safetensors --data data8.kbd --out r1 --steps 4 --quiet
expect_usage "resume on another dataset" "split.kbd .* is not the one the checkpoint was trained on" train --resume good/last.safetensors --data split.kbd --out r2 --steps 4 --quiet
expect_usage "resume with other classes" "model has 3 classes, .*roles.kbd selects 2 'pretrain' classes" train --resume good/last.safetensors --data roles.kbd --out r3 --steps 4 --quiet

# ---- checkpoints that are not (this run's) checkpoints
size=$(stat -c %s good/last.safetensors)
head -c $((size - 100)) good/last.safetensors > cut_data.safetensors
head -c 5000 good/last.safetensors > cut_header.safetensors
expect_fail "truncated checkpoint (data cut)" "cut_data.safetensors: not a usable kindbench checkpoint: .*beyond the .*-byte data section" train --resume cut_data.safetensors --steps 4
expect_fail "truncated checkpoint (header cut)" "cut_header.safetensors: not a usable kindbench checkpoint: .*header length .* is impossible" train --resume cut_header.safetensors --steps 4
expect_fail "dataset cache as checkpoint" "data.kbd: not a usable kindbench checkpoint" train --resume data.kbd --steps 4
"$PY" -c "
import json, struct
h = json.dumps({'w': {'dtype': 'F32', 'shape': [2], 'data_offsets': [0, 8]}, '__metadata__': {'format': 'pt'}}).encode()
open('foreign.safetensors', 'wb').write(struct.pack('<Q', len(h)) + h + bytes(8))"
expect_fail "foreign safetensors as checkpoint" "foreign.safetensors: not a kindbench checkpoint \(format 'pt'" train --resume foreign.safetensors --steps 4
# The checkpoint's config metadata edited to a size no int holds (a cast that
# was undefined before it was checked) and to one past the limits; its
# training record to a batch no int holds, its optimiser record to a beta1
# of 5 and its step to -3.
"$PY" -c "
import json, struct, sys
b = open('good/last.safetensors', 'rb').read(); n = struct.unpack('<Q', b[:8])[0]
def edit(out, key, fn):
    h = json.loads(b[8:8 + n]); h['__metadata__'][key] = fn(h['__metadata__'][key]); hb = json.dumps(h).encode()
    open(out, 'wb').write(struct.pack('<Q', len(hb)) + hb + b[8 + n:])
edit('huge.safetensors', 'config', lambda t: json.dumps(dict(json.loads(t), input_size=1e12)))
edit('wide.safetensors', 'config', lambda t: json.dumps(dict(json.loads(t), hidden_size=16384)))
edit('batch.safetensors', 'train', lambda t: json.dumps(dict(json.loads(t), batch=1e30)))
edit('beta.safetensors', 'optim', lambda t: json.dumps(dict(json.loads(t), beta1=5)))
edit('step.safetensors', 'step', lambda t: '-3')
edit('gpu.safetensors', 'train', lambda t: json.dumps(dict(json.loads(t), device='cuda', precision='bf16')))
def drop_map(t):
    j = json.loads(t); del j['data']['class_map']; return json.dumps(j)
edit('nomap.safetensors', 'train', drop_map)
def text_class(t):
    j = json.loads(t); j['data']['class_map'][0]['dataset_class'] = 'zero'; return json.dumps(j)
edit('textclass.safetensors', 'train', text_class)"
# a training record without data.class_map is a damaged checkpoint (exit 1), not classes that do not fit (2)
expect_fail "training record without data.class_map" "--resume nomap.safetensors: training metadata lacks data.class_map" \
  train --resume nomap.safetensors --steps 4
# and so is an entry whose dataset_class is not a number (the old code compared it as -1: exit 2, blaming --classes)
expect_fail "class_map entry without a numeric dataset_class" \
  "--resume textclass.safetensors: training metadata: data.class_map\[0\] lacks a numeric dataset_class" \
  train --resume textclass.safetensors --steps 4
expect_fail "checkpoint config size beyond int" "huge.safetensors: .*'input_size' is 1e\+12: expected an integer in int range" train --resume huge.safetensors --steps 4
expect_fail "training record with an absurd batch" "batch.safetensors: training metadata: batch is 1e\+30, not an integer in \[1, 1048576\]" train --resume batch.safetensors --steps 4
expect_fail "optimiser record out of range" "beta.safetensors: optimiser metadata: 'beta1' is 5, outside \[0, 0.999999999\]" train --resume beta.safetensors --steps 4
expect_fail "negative checkpoint step" "step.safetensors: checkpoint step '-3' is not a non-negative integer" train --resume step.safetensors --steps 4
expect_fail "checkpoint config beyond the limits" "wide.safetensors: .*width 16384 is above the supported 8192" train --resume wide.safetensors --steps 4
# a GPU run's bf16 taken from its record, on --device cpu: the options do not fit the checkpoint (exit 2)
expect_usage "resume a bf16 GPU run with --device cpu" "--resume gpu.safetensors: --precision bf16 needs --device cuda" \
  train --resume gpu.safetensors --device cpu --out gpu --steps 4
expect_usage "checkpoint of another config" "checkpoint of another config: it has depth 2, width 32.*ask for depth 3, width 32" train --resume good/last.safetensors --depth 3 --steps 4
expect_usage "resume without the null class" "checkpoint of another config: .*null class 1; .*null class 0" train --resume good/last.safetensors --class-dropout 0 --steps 4
expect_usage "resume with --image-size other than the data" "data.kbd: images are 16x16 .* but the options state 32x32" train --resume good/last.safetensors --image-size 32 --steps 4
expect_usage "resume with --channels other than the data" "data.kbd: images are 16x16 with 3 channel\(s\), but the options state 16x16 with 1 channel" train --resume good/last.safetensors --channels 1 --steps 4
"$KB" "${T[@]}" "${S[@]}" --data split.kbd --out onsplit || bad "a 2-step run on split.kbd" "exit $?"
expect_usage "resume on another split" "--split test is not the checkpoint's split 'train'" train --resume onsplit/last.safetensors --split test --steps 4

# ---- resuming into the --out of another run: refused, that run untouched
"$KB" "${T[@]}" "${S[@]}" --seed 5 --out other || bad "a second 2-step run" "exit $?"
before=$(sha256sum other/last.safetensors other/checkpoints/* other/train.json other/loss.csv)
expect_fail "resume into another run's --out" "--out other already holds another training run \(other/last.safetensors\)" train --resume good/last.safetensors --out other --steps 4
if [[ "$(sha256sum other/last.safetensors other/checkpoints/* other/train.json other/loss.csv)" == "$before" ]]; then
  ok "the other run's checkpoint, train.json and loss.csv are unchanged"
else bad "the other run after a refused resume" "$(ls other other/checkpoints)"; fi

# ---- divergence: the NaN step is named, nothing non-finite is saved
expect_fail "NaN loss stops the run" "step [0-9]+: the loss is (NaN|inf|-inf): training diverged .*last good checkpoint is nan/checkpoints/step-1.safetensors" "${T[@]}" "${S[@]}" --out nan --steps 6 --ckpt-every 1 --lr 1e30
if "$PY" -c "
import json, math, struct, sys, array, glob
for p in glob.glob('nan/checkpoints/*') + ['nan/last.safetensors']:
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]
    a = array.array('f', b[8 + n:])
    sys.exit(1) if not all(math.isfinite(x) for x in a) else None
"; then ok "no checkpoint with non-finite values after divergence ($(ls nan/checkpoints | tr '\n' ' '))"
else bad "checkpoints after divergence" "a checkpoint holds NaN/Inf"; fi

# ---- disk full while checkpointing: step-2 must survive, unchanged
before=$(sha256sum < good/checkpoints/step-2.safetensors)
(ulimit -f 400; trap '' XFSZ; exec "$KB" train --resume good/last.safetensors --steps 4 --ckpt-every 1 --quiet) \
  > stdout.txt 2> stderr.txt
rc=$?
msg="$(cat stderr.txt)"
if [[ $rc -ne 0 ]] && grep -Eq "step 3: could not save a checkpoint \(the previous checkpoint .*good/checkpoints/step-2.safetensors is intact\).*File too large" <<< "$msg" &&
   [[ "$(sha256sum < good/checkpoints/step-2.safetensors)" == "$before" && "$(sha256sum < good/last.safetensors)" == "$before" ]] &&
   ! compgen -G 'good/checkpoints/*.tmp.*' > /dev/null && [[ "$(ls good/checkpoints)" == "step-2.safetensors" ]]; then
  ok "disk full while checkpointing (exit $rc): step-2 and last.safetensors intact, no temp file: $msg"
else bad "disk full while checkpointing" "exit $rc, $msg, files: $(ls good/checkpoints)"; fi

# ---- two runs into one --out: the check for last.safetensors alone lets a
# second run in until the first has checkpointed, and the two then mixed their
# loss.csv rows and checkpoints; the run's lock (DIR/.train.lock) refuses it.
"$KB" "${T[@]}" "${S[@]}" --out busy --steps 1000000 --ckpt-every 0 > /dev/null 2>&1 & busy=$!
for _ in $(seq 200); do [[ -s busy/loss.csv ]] && break; sleep 0.05; done
expect_fail "a second run into a --out being written, naming the first" \
  "busy is in use by another kindbench train \(pid $busy\); wait for it to finish .*busy/.train.lock" \
  "${T[@]}" "${S[@]}" --out busy --seed 1
[[ ! -e busy/last.safetensors ]] && ok "the refused run wrote no checkpoint into busy" ||
  bad "the refused run" "busy/last.safetensors exists"
kill -KILL "$busy" && wait "$busy" 2> /dev/null # (SIGTERM would leave a checkpoint: the run stops gracefully)
"$KB" "${T[@]}" "${S[@]}" --out busy > /dev/null 2>&1 && ok "once the first run is gone, busy is free (its lock died with it)" ||
  bad "a run after the first was killed" "exit $?"
# A resume from DIR/last.safetensors while a run (itself resumed there) writes
# DIR is refused the same way, and leaves that run's files alone.
"$KB" train --resume busy/last.safetensors --steps 1000000 --ckpt-every 0 --quiet > /dev/null 2>&1 & busy=$!
for _ in $(seq 200); do [[ $(wc -l < busy/loss.csv) -gt 1 ]] && break; sleep 0.05; done
before=$(sha256sum < busy/last.safetensors)
expect_fail "a resume from busy/last.safetensors while a run writes busy" \
  "busy is in use by another kindbench train \(pid $busy\)" train --resume busy/last.safetensors --steps 4 --quiet
[[ $(sha256sum < busy/last.safetensors) == "$before" ]] && kill -0 "$busy" && ok "the running run kept busy" ||
  bad "the resume beside a running run" "last.safetensors changed or the run died"
kill -KILL "$busy" && wait "$busy" 2> /dev/null

# ---- temp files of killed runs: a SIGKILL mid-checkpoint leaves
# step-N.safetensors.tmp.XXXXXX (a whole checkpoint's size), and every kill
# added one; the next run into DIR removes them (not other files).
# (pid 99999999 is beyond any pid_max: a dead run's)
touch good/checkpoints/step-3.safetensors.tmp.AbC123 good/checkpoints/step-4.safetensors.tmp.99999999.Qw12Er \
  good/last.safetensors.tmp.99999999 good/loss.csv.tmp.Xy12Zq good/checkpoints/notes.tmp.keep
"$KB" train --resume good/last.safetensors --steps 3 --quiet 2> stderr.txt || bad "resume over stale temp files" "exit $?"
left="$(cd good && ls checkpoints/*.tmp.* *.tmp.* 2> /dev/null | tr '\n' ' ')"
if [[ $left == "checkpoints/notes.tmp.keep " ]]; then ok "the next run removed the stale temp files, kept other files"
else bad "stale temp files" "left: $left"; fi

if "$KB" train --help | grep -q "^Usage: kindbench train"; then ok "train --help"; else bad "train --help" "no usage"; fi
finish
