# Runs independent checks a few at a time in the background and hands each
# one's exit status and seconds back to the caller, as the checks end (those
# that ended together in the order they were started). Sourced, not run, by
# tests/cuda_emu/run_checks.sh and bench/device_check.sh.
#
# The caller sets LANES (how many run at once; 1 runs them one after another)
# and LANES_DIR (a directory for the result files), and defines
#   lane_done NAME RC SECONDS     called in the calling shell for each check
# then calls
#   lanes_run NAME COMMAND...     starts COMMAND (a program or a function of the
#                                 caller) once fewer than LANES are running
#   lanes_wait                    waits for the rest and reports them
# Each check gets an even share of the cores for its CPU threads (OpenMP,
# OpenBLAS, kindbench's own), unless the caller's environment names them, so
# that LANES checks together do not oversubscribe the machine.
lanes_pending=()

lanes_cores() { # the cores this process may use (nproc itself would answer $OMP_NUM_THREADS when it is set)
  env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc
}

lanes_threads() { # the cores per lane, at least 1
  local per=$(($(lanes_cores) / LANES))
  echo $((per > 0 ? per : 1))
}

lanes_report() { # the checks whose result files exist, in the order they were started
  local name rc secs left=()
  for name in ${lanes_pending[@]+"${lanes_pending[@]}"}; do
    if [[ -f $LANES_DIR/$name.result ]]; then
      read -r rc secs < "$LANES_DIR/$name.result"
      lane_done "$name" "$rc" "$secs"
    else
      left+=("$name")
    fi
  done
  lanes_pending=(${left[@]+"${left[@]}"})
}

lanes_run() { # name, command...
  local name=$1; shift
  [[ $LANES =~ ^[1-9][0-9]*$ ]] || { echo "lanes.sh: LANES=$LANES is not a positive integer" >&2; return 2; }
  rm -f "$LANES_DIR/$name.result"
  local per
  per=$(lanes_threads)
  ( export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$per} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-$per}
    export KINDBENCH_THREADS=${KINDBENCH_THREADS:-$per}
    t0=$SECONDS
    "$@"
    echo "$? $((SECONDS - t0))" > "$LANES_DIR/$name.result.tmp" && mv "$LANES_DIR/$name.result.tmp" "$LANES_DIR/$name.result" ) &
  lanes_pending+=("$name")
  while (( $(jobs -rp | wc -l) >= LANES )); do
    wait -n || true
    lanes_report
  done
}

lanes_wait() {
  wait
  lanes_report
}
