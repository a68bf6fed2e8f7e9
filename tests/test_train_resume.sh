#!/usr/bin/env bash
# Determinism of `kindbench train`: two runs with the same seed are
# bit-identical; 5 steps + --resume to 10 equals an unbroken 10-step run bit
# for bit (every checkpoint tensor: weights, EMA, AdamW moments; and every
# loss.csv column but steps_per_sec), also when the log interval (3) does not
# divide the checkpoint step (the log accumulators travel in the checkpoint)
# and when the killed run left rows past its checkpoint and a half-written row;
# the same with two threads; a run stopped by SIGINT/SIGTERM checkpoints its
# step and resumes bit for bit. Also: checkpoint retention, last.safetensors,
# resuming into another directory, warnings, train.json contents.
# With KB_TRAIN_DEVICE_ARGS (e.g. "--device cuda --precision bf16", as
# bench/device_check.sh runs it on a GPU) only the determinism checks run,
# with those options added to every run.
set -u
source "$(dirname "$0")/test_train_common.sh"
workspace train_resume
make_cache data.kbd 16 || { bad "make the synthetic cache" "data prepare failed"; finish; exit 1; }

read -r -a DEV <<< "${KB_TRAIN_DEVICE_ARGS:-}"
T=(train --data data.kbd --depth 2 --width 32 --heads 2 --patch 4 --batch 8 --lr 1e-3 --log-every 3 --ckpt-every 5
   --threads 1 --quiet "${DEV[@]}")
"$KB" "${T[@]}" --out full --steps 10 || bad "unbroken 10-step run" "exit $?"
"$KB" "${T[@]}" --out again --steps 10 || bad "second 10-step run" "exit $?"
r="" c="" # the csv check does not run when the tensors differ: no stale or unset c (set -u)
if r=$(same_tensors full/last.safetensors again/last.safetensors) && c=$(same_csv full/loss.csv again/loss.csv); then
  ok "same seed twice is bit-identical: $r; $c"
else bad "same seed twice" "$r $c"; fi

"$KB" "${T[@]}" --out split --steps 5 || bad "5-step run" "exit $?"
# What a kill after step 7 leaves behind: a row past the checkpoint, half a row.
printf '"6","9","9","9","9","0.001","1.0","48"\n"7","0.9' >> split/loss.csv
"$KB" train --resume split/last.safetensors --steps 10 --quiet "${DEV[@]}" || bad "resume to 10 steps" "exit $?"
if r=$(same_tensors full/last.safetensors split/last.safetensors); then ok "5 + resumed 5 steps = 10 steps: $r"
else bad "resumed checkpoint" "$r"; fi
if c=$(same_csv full/loss.csv split/loss.csv); then ok "resumed loss.csv rows = unbroken rows: $c"
else bad "resumed loss.csv" "$c"; fi
if [[ ${#DEV[@]} -gt 0 ]]; then echo "(with ${DEV[*]}: the determinism checks only)"; finish; exit $?; fi

# The same with two threads (the fast CPU path is deterministic for a fixed count).
"$KB" "${T[@]}" --threads 2 --out full2 --steps 6 || bad "unbroken 6-step run, 2 threads" "exit $?"
"$KB" "${T[@]}" --threads 2 --out split2 --steps 3 || bad "3-step run, 2 threads" "exit $?"
"$KB" train --resume split2/last.safetensors --steps 6 --quiet || bad "resume to 6 steps, 2 threads" "exit $?"
r="" c=""
if r=$(same_tensors full2/last.safetensors split2/last.safetensors) && c=$(same_csv full2/loss.csv split2/loss.csv); then
  ok "2 threads: 3 + resumed 3 steps = 6 steps: $r; $c"
else bad "2 threads: resumed run" "$r $c"; fi

# Ctrl-C or SIGTERM (a cluster's preemption) while training: the run finishes
# its step, checkpoints it (here with --ckpt-every 0, which saved nothing
# before the end), says so and dies of the signal; --resume from there to two
# steps further equals an unbroken run of that length bit for bit.
for sig in INT TERM; do
  # SIG_DFL first: a background job of a script starts with SIGINT ignored
  "$PY" -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])' \
    "$KB" "${T[@]}" --out "stop$sig" --steps 1000000 --ckpt-every 0 2> "stop$sig.err" &
  pid=$!
  for _ in $(seq 400); do [[ $(wc -l < "stop$sig/loss.csv" 2> /dev/null) -ge 2 ]] && break; sleep 0.05; done
  kill -"$sig" "$pid"; wait "$pid"; rc=$?
  k=$(sed -n 's/^stopped at step \([0-9]*\): checkpoint .*/\1/p' "stop$sig.err")
  if [[ $rc -eq $((128 + $(kill -l "$sig"))) && -n $k && -f "stop$sig/checkpoints/step-$k.safetensors" ]] &&
     grep -q "stopping after this step with a checkpoint" "stop$sig.err" &&
     cmp -s "stop$sig/last.safetensors" "stop$sig/checkpoints/step-$k.safetensors" &&
     ! compgen -G "stop$sig/checkpoints/*.tmp.*" > /dev/null; then
    ok "SIG$sig while training: step $k checkpointed, said, exit $rc"
    "$KB" train --resume "stop$sig/last.safetensors" --steps $((k + 2)) --quiet || bad "resume after SIG$sig" "exit $?"
    "$KB" "${T[@]}" --out "unbroken$sig" --steps $((k + 2)) --ckpt-every 0 || bad "unbroken $((k + 2))-step run" "exit $?"
    r="" c=""
    if r=$(same_tensors "unbroken$sig/last.safetensors" "stop$sig/last.safetensors") &&
       c=$(same_csv "unbroken$sig/loss.csv" "stop$sig/loss.csv"); then
      ok "... resumed to step $((k + 2)) = unbroken run: $r; $c"
    else bad "resume after SIG$sig" "$r $c"; fi
  else bad "SIG$sig while training" "exit $rc, step '$k', stderr: $(cat "stop$sig.err"), files: $(ls "stop$sig" "stop$sig/checkpoints" 2>&1)"; fi
done

"$KB" "${T[@]}" --out seed1 --steps 10 --seed 1 || bad "seed-1 run" "exit $?"
if ! same_tensors full/last.safetensors seed1/last.safetensors > /dev/null 2>&1; then ok "another seed gives other weights"
else bad "another seed" "identical weights"; fi

# Checkpoint files: only the newest by default, all with --keep-checkpoints;
# last.safetensors is the newest one.
if [[ "$(ls full/checkpoints)" == "step-10.safetensors" ]] && cmp -s full/last.safetensors full/checkpoints/step-10.safetensors
then ok "default keeps only the newest checkpoint; last.safetensors is it"
else bad "checkpoint files" "$(ls full/checkpoints)"; fi
"$KB" "${T[@]}" --out keep --steps 10 --keep-checkpoints || bad "--keep-checkpoints run" "exit $?"
if [[ "$(ls keep/checkpoints | tr '\n' ' ')" == "step-10.safetensors step-5.safetensors " ]]; then
  ok "--keep-checkpoints keeps step-5 and step-10"
else bad "--keep-checkpoints" "$(ls keep/checkpoints)"; fi

# Resuming into another --out branches the run and leaves the source alone.
before=$(sha256sum < full/last.safetensors)
"$KB" train --resume full/last.safetensors --out branch --steps 12 --quiet || bad "resume into another --out" "exit $?"
if [[ "$(sha256sum < full/last.safetensors)" == "$before" && -f full/checkpoints/step-10.safetensors &&
      -f branch/checkpoints/step-12.safetensors ]]; then
  ok "resume into another --out: source checkpoints untouched, branch/step-12 written"
else bad "resume into another --out" "$(ls full full/checkpoints branch/checkpoints)"; fi

# Resuming a finished run does nothing and changes no file, also from an
# earlier checkpoint of the run; another thread count is warned about.
before=$(cd keep && sha256sum last.safetensors checkpoints/* train.json loss.csv)
if "$KB" train --resume full/last.safetensors --steps 10 | grep -q "nothing to do" &&
   "$KB" train --resume keep/checkpoints/step-5.safetensors --steps 5 | grep -q "nothing to do" &&
   [[ "$(cd keep && sha256sum last.safetensors checkpoints/* train.json loss.csv)" == "$before" ]]; then
  ok "resume at the target step: nothing to do, no file changed (loss.csv keeps its rows past step 5)"
else bad "resume at the target step" "no 'nothing to do', or keep/ changed"; fi
cp -r split threads && "$KB" train --resume threads/last.safetensors --out threads --steps 11 --threads 2 --quiet 2> warn.txt
if grep -q "warning: .*--threads 2 differs from the checkpoint's 1" warn.txt; then ok "another --threads on resume warns"
else bad "--threads warning" "$(cat warn.txt)"; fi

if "$PY" -c "import json,sys; j=json.load(open('full/train.json')); sys.exit(not (j['seed']==0 and j['batch']==8 and
   j['threads']==1 and j['data']['payload_sha256'] and [c['name'] for c in j['data']['class_map']]==['disk','square','stripes']))"
then ok "train.json records seed, batch, threads, dataset checksum and class map"
else bad "train.json" "$(head -c 600 full/train.json)"; fi
finish
