#!/usr/bin/env bash
# A featurisation stopped part way (Ctrl-C here) resumes: `eval stats` with
# the random-weight Inception of the inception_ref fixture (one thread, batch
# 4, 24 small images: slow enough to stop after two batches) is interrupted
# once DIR/<key>.partial holds two batches of rows; the rerun says where it
# resumes, and its statistics (mu, sigma, mu_s, sigma_s, spectrum) equal an
# unbroken run's bit for bit; the partial file is gone afterwards. Also: a
# partial file of another batch size is not used (the run starts over and
# still equals the unbroken one), one locked by another run is left to it,
# stopped runs' partial files are pointed out, and --no-cache keeps no
# partial file.
set -u
KB="$(realpath "${KINDBENCH:-./kindbench}")"
PY="${KB_PYTHON:-/usr/bin/python3}"
WEIGHTS="$(realpath "${KB_FIXTURES:-fixtures}")/inception_rand_legacy.pth"
W="$PWD/eval_resume.work"
rm -rf "$W" && mkdir -p "$W" && cd "$W" || exit 1
passed=0 failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
[[ -f $WEIGHTS ]] || { echo "FAIL fixture missing: $WEIGHTS"; echo "0 passed, 1 failed"; exit 1; }

"$PY" -c "
import os, numpy as np; from PIL import Image
r = np.random.default_rng(0); os.makedirs('imgs/a')
for i in range(24): Image.fromarray(r.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save('imgs/a/%03d.png' % i)"
export KINDBENCH_FEATURES_CACHE="$W/default_cache"
A=(eval stats imgs --featurizer inception --allow-unverified-weights --inception-weights "$WEIGHTS" --threads 1)
ROW=$(((2048 + 2023 + 1008) * 4)) # one image's pool, spatial and logits features
same_stats() { # a.npz b.npz: the statistics arrays are identical
  "$PY" - "$1" "$2" << 'EOF'
import sys, numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
diff = [k for k in ('mu', 'sigma', 'mu_s', 'sigma_s', 'spectrum') if not np.array_equal(a[k], b[k])]
sys.exit("differ: %s" % diff if diff else 0)
EOF
}

"$KB" "${A[@]}" --quiet --batch 4 --features-cache fc_full -o full.npz || bad "unbroken run" "exit $?"

# SIG_DFL first: a background job of a script starts with SIGINT ignored
"$PY" -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])' \
  "$KB" "${A[@]}" --quiet --batch 4 --features-cache fc -o resumed.npz 2> stop.err &
pid=$!
size=0
for _ in $(seq 1200); do
  size=$(stat -c %s fc/*.partial 2> /dev/null || echo 0)
  [[ $size -ge $((512 + 8 * ROW)) ]] && break
  sleep 0.05
done
kill -INT "$pid"; wait "$pid"; rc=$?
if [[ $rc -eq 130 ]] && compgen -G 'fc/*.partial' > /dev/null && [[ ! -e resumed.npz ]]; then
  ok "interrupted after $(((size - 512) / ROW)) images: exit 130, the partial features kept"
else bad "interrupt" "exit $rc, partial: $(ls fc 2>&1), stderr: $(cat stop.err)"; fi

"$KB" "${A[@]}" --batch 4 --features-cache fc -o resumed.npz > /dev/null 2> resume.err || bad "rerun" "exit $?"
at=$(sed -n 's/.*resuming at image \([0-9]*\) of 24.*/\1/p' resume.err)
if [[ -n $at && $at -ge 8 && $((at % 4)) -eq 0 ]] && r=$(same_stats full.npz resumed.npz) &&
   ! compgen -G 'fc/*.partial' > /dev/null; then
  ok "the rerun resumed at image $at; statistics equal the unbroken run's; no partial file left"
else bad "resumed run" "at '$at', ${r:-}, $(ls fc), stderr: $(grep -v '^features' resume.err)"; fi

# A partial file written with another batch size (rows in other batches) is
# not used: the run starts over, and still equals the unbroken run.
mkdir -p fc2
key=$(basename "$(ls fc/*.npz)" .npz)
"$PY" -c "
import sys; h = bytearray(512); h[:8] = b'KBFPART1'
line = b'n=24 batch=2 pool=2048 spatial=2023 logits=1008 tag=device=cpu cuda_device=0 threads=1\n'
h[8:8 + len(line)] = line; open(sys.argv[1], 'wb').write(bytes(h) + bytes(8 * $ROW))" "fc2/$key.partial"
"$KB" "${A[@]}" --batch 4 --features-cache fc2 -o other.npz > /dev/null 2> other.err || bad "run over a foreign partial" "exit $?"
if ! grep -q "resuming" other.err && r=$(same_stats full.npz other.npz) && ! compgen -G 'fc2/*.partial' > /dev/null; then
  ok "a partial file of batch 2 is not used by a batch-4 run; statistics equal the unbroken run's"
else bad "foreign partial" "${r:-} $(grep resuming other.err)"; fi

# Two runs on one set of images at once: the second finds the partial file
# locked (flock) by the first, says so, featurises without one, and leaves
# the first's file alone (with other settings it would have truncated it).
mkdir -p fc3 && : > "fc3/$key.partial"
# one process holds the lock (a killed `flock` command would leave its child holding it)
"$PY" -c 'import fcntl, sys, time; f = open(sys.argv[1], "a"); fcntl.flock(f, fcntl.LOCK_EX); time.sleep(600)' \
  "fc3/$key.partial" > /dev/null 2>&1 & holder=$!
sleep 0.5
"$KB" "${A[@]}" --quiet --batch 4 --features-cache fc3 -o locked.npz 2> locked.err || bad "run beside a locked partial" "exit $?"
if grep -q "is being written by another run" locked.err && r=$(same_stats full.npz locked.npz) &&
   [[ -e "fc3/$key.partial" ]]; then
  ok "a partial file locked by another run is left to it; statistics equal the unbroken run's"
else bad "locked partial" "${r:-} $(cat locked.err) $(ls fc3)"; fi
kill "$holder" 2> /dev/null; wait "$holder" 2> /dev/null

# Stopped runs' partial files stay until a rerun resumes them (possibly
# forever): a run says how many there are and what they take, counting
# neither its own (the resumed run above said nothing) nor one a live run
# holds; --quiet says nothing.
mkdir -p fc4 && head -c 1000000 /dev/zero > fc4/stopped.partial && : > fc4/live.partial
"$PY" -c 'import fcntl, sys, time; f = open(sys.argv[1], "a"); fcntl.flock(f, fcntl.LOCK_EX); time.sleep(600)' \
  fc4/live.partial > /dev/null 2>&1 & holder=$!
sleep 0.5
"$KB" "${A[@]}" --batch 4 --features-cache fc4 -o stale.npz > /dev/null 2> stale.err || bad "run beside stale partials" "exit $?"
mkdir -p fc5 && cp fc4/stopped.partial fc5/
"$KB" "${A[@]}" --batch 4 --quiet --features-cache fc5 -o quiet.npz > /dev/null 2> quiet.err
kill "$holder" 2> /dev/null; wait "$holder" 2> /dev/null
if grep -q "note: fc4 holds 1 partial featurisation of stopped runs (1.0 MB), kept to resume them" stale.err &&
   ! grep -q "note:" resume.err quiet.err; then
  ok "a run names the stopped runs' partial files (not its own, not a live run's; not with --quiet)"
else bad "stale partial note" "$(grep note: stale.err resume.err quiet.err)"; fi

# --no-cache writes nothing into the cache directory (the default one here),
# a partial file neither (looked for while the run featurises, and after it
# is stopped)
"$PY" -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])' \
  "$KB" "${A[@]}" --quiet --batch 4 --no-cache -o nocache.npz 2> /dev/null &
pid=$!
left=""
for _ in $(seq 160); do left+=$(find "$KINDBENCH_FEATURES_CACHE" -name '*.partial' 2> /dev/null); sleep 0.05; done
kill -INT "$pid"; wait "$pid"
left+=$(find "$KINDBENCH_FEATURES_CACHE" -name '*.partial' 2> /dev/null)
[[ -z $left ]] && ok "--no-cache keeps no partial file" || bad "--no-cache" "$left"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
