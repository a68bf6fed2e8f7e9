#!/usr/bin/env bash
# tests/lanes.sh, the runner that takes the CUDA checks a few at a time (the
# emulator's run_checks.sh and device_check.sh): never more than LANES at
# once, every check reported once with its own exit status and seconds,
# those that end together in the order they were started, each check's CPU
# threads a share of the cores unless the caller named them, a bad LANES
# refused.
set -uo pipefail
SRC=${KB_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
passed=0 failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
W=$(mktemp -d /tmp/kb_test_lanes.XXXXXX)
trap 'rm -rf "$W"' EXIT
source "$SRC/tests/lanes.sh"

done_lines=()
lane_done() { done_lines+=("$1 $2 $3"); }

# a check that notes how many checks run beside it: a file per running check
probe() { # name, seconds, exit status
  touch "$W/running.$1"
  ls "$W" | grep -c '^running\.' >> "$W/concurrency"
  sleep "$2"
  rm -f "$W/running.$1"
  return "$3"
}

LANES=2 LANES_DIR=$W
t0=$SECONDS
lanes_run slow probe slow 2 0
lanes_run fails probe fails 1 3
lanes_run quick probe quick 0 0
lanes_run skipped probe skipped 0 77
lanes_wait
wall=$((SECONDS - t0))
[[ ${#done_lines[@]} == 4 ]] && ok "four checks, four reports" || bad "reports" "${done_lines[*]}"
max=$(sort -n "$W/concurrency" | tail -n 1)
[[ $max -le 2 && $max -ge 2 ]] && ok "at most LANES=2 ran at once (and 2 did)" || bad "concurrency" "max $max"
rcs=$(printf '%s\n' "${done_lines[@]}" | awk '{print $1 "=" $2}' | sort | tr '\n' ' ')
[[ $rcs == "fails=3 quick=0 skipped=77 slow=0 " ]] && ok "exit statuses: $rcs" || bad "exit statuses" "$rcs"
slow_secs=$(printf '%s\n' "${done_lines[@]}" | awk '$1 == "slow" {print $3}')
[[ $slow_secs -ge 2 && $slow_secs -le 4 ]] && ok "seconds of the slow check: $slow_secs" || bad "seconds" "$slow_secs"
[[ $wall -le 4 ]] && ok "two lanes overlap: ${wall}s for 2 s + 1 s + 0 s + 0 s" || bad "overlap" "${wall}s"
[[ ${done_lines[-1]} == slow* ]] && ok "the slow check is reported last" || bad "order" "${done_lines[*]}"

# one lane: one after another, reported in the order started
done_lines=()
: > "$W/concurrency"
LANES=1
for n in a b c; do lanes_run "$n" probe "$n" 0 0; done
lanes_wait
[[ "${done_lines[*]}" == "a 0 0 b 0 0 c 0 0" ]] && ok "LANES=1: a, b, c in order" || bad "LANES=1" "${done_lines[*]}"
[[ $(sort -n "$W/concurrency" | tail -n 1) == 1 ]] && ok "LANES=1: one at a time" || bad "LANES=1" "concurrency"

# CPU threads: a share of the cores, unless the caller's environment names them
threads() { echo "$OMP_NUM_THREADS $OPENBLAS_NUM_THREADS $KINDBENCH_THREADS" > "$W/threads.$1"; }
LANES=$(($(lanes_cores) * 2))
(unset OMP_NUM_THREADS OPENBLAS_NUM_THREADS KINDBENCH_THREADS; lanes_run share threads share; lanes_wait)
[[ $(cat "$W/threads.share") == "1 1 1" ]] && ok "more lanes than cores: 1 thread each" ||
  bad "threads" "$(cat "$W/threads.share")"
LANES=1
(export OMP_NUM_THREADS=3; unset OPENBLAS_NUM_THREADS KINDBENCH_THREADS; lanes_run named threads named; lanes_wait)
[[ $(cat "$W/threads.named") == "3 $(lanes_cores) $(lanes_cores)" ]] && ok "the caller's OMP_NUM_THREADS kept, the others all cores" ||
  bad "threads" "$(cat "$W/threads.named")"

# a LANES that is not a count
LANES=0
msg=$(lanes_run x probe x 0 0 2>&1)
rc=$?
[[ $rc == 2 && $msg == *"LANES=0 is not a positive integer"* ]] && ok "LANES=0 refused" || bad "LANES=0" "rc $rc: $msg"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
