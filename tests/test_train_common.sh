# Shared by tests/test_train_*.sh (sourced, not run): a workspace, pass/fail
# counters, a tiny synthetic dataset cache, and checkpoint/CSV comparisons
# with /usr/bin/python3 (standard library only).
KB="${KINDBENCH:-./kindbench}"
[[ $KB != */* || $KB == /* ]] || KB="$PWD/$KB" # workspace cds away: a relative path made absolute first
PY="${KB_PYTHON:-/usr/bin/python3}"
passed=0 failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
finish() { echo "$passed passed, $failed failed"; [[ $failed -eq 0 ]]; }

# workspace NAME: a fresh directory under the test's working directory.
workspace() {
  W="$PWD/$1.work"
  rm -rf "$W" && mkdir -p "$W" && cd "$W" || exit 1
}

# make_cache OUT.kbd RES [prepare options...]: an ImageFolder of three classes
# of 16x16 RGB drawings (square, stripes, disk; 24 images each, random
# placement from a fixed seed) turned into a cache by `kindbench data prepare`.
make_cache() {
  local out="$1" res="$2"; shift 2
  local dir="${out%.kbd}.src"
  "$PY" - "$dir" << 'EOF' || return 1
import os, random, sys
from PIL import Image, ImageDraw
root, rnd = sys.argv[1], random.Random(7)
for cls, colour in (("disk", (240, 80, 40)), ("square", (40, 200, 90)), ("stripes", (60, 90, 230))):
    os.makedirs(os.path.join(root, cls), exist_ok=True)
    for i in range(24):
        im = Image.new("RGB", (16, 16), (20, 20, 20))
        d = ImageDraw.Draw(im)
        x, y = rnd.randint(0, 7), rnd.randint(0, 7)
        if cls == "disk":
            d.ellipse([x, y, x + 8, y + 8], fill=colour)
        elif cls == "square":
            d.rectangle([x, y, x + 7, y + 7], fill=colour)
        else:
            for r in range(rnd.randint(0, 3), 16, 4):
                d.line([0, r, 15, r], fill=colour, width=2)
        im.save(os.path.join(root, cls, "%02d.png" % i))
EOF
  "$KB" data prepare --source folder --input "$dir" --resolution "$res" -o "$out" --quiet "$@" > /dev/null
}

# same_tensors A B: 0 when two safetensors files hold the same tensors (names,
# dtypes, shapes, bytes) and the same "step"; prints the first difference.
same_tensors() {
  "$PY" - "$1" "$2" << 'EOF'
import json, struct, sys
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__", {})
    data = b[8 + n:]
    return meta, {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in h.items()}
(ma, a), (mb, b) = load(sys.argv[1]), load(sys.argv[2])
if sorted(a) != sorted(b):
    sys.exit("tensor names differ: %s" % sorted(set(a) ^ set(b))[:5])
for k in a:
    if a[k] != b[k]:
        sys.exit("tensor %s differs" % k)
if ma.get("step") != mb.get("step"):
    sys.exit("step %s vs %s" % (ma.get("step"), mb.get("step")))
print("%d tensors identical, step %s" % (len(a), ma.get("step")))
EOF
}

# same_csv A B: 0 when two loss logs have the same rows in every column but
# steps_per_sec (a wall-clock measurement).
same_csv() {
  "$PY" - "$1" "$2" << 'EOF'
import csv, sys
def rows(p):
    r = list(csv.reader(open(p, newline="")))
    i = r[0].index("steps_per_sec")
    return [x[:i] + x[i + 1:] for x in r]
a, b = rows(sys.argv[1]), rows(sys.argv[2])
if a != b:
    d = next(i for i in range(max(len(a), len(b))) if i >= len(a) or i >= len(b) or a[i] != b[i])
    sys.exit("row %d differs: %s vs %s (%d and %d rows)" % (d, a[d] if d < len(a) else None,
                                                           b[d] if d < len(b) else None, len(a), len(b)))
print("%d rows identical" % (len(a) - 1))
EOF
}

# expect_status WANT NAME PATTERN ARGS...: kindbench ARGS must exit with status
# WANT (1: a runtime failure, 2: bad options) and one error line (besides
# warnings and the --help hint) matching PATTERN.
expect_status() {
  local want="$1" name="$2" pattern="$3"; shift 3
  timeout 120 "$KB" "$@" > stdout.txt 2> stderr.txt
  local rc=$?
  local msg; msg="$(grep -v -e '^Try ' -e '^train: ' -e 'warning: ' stderr.txt | tr -d '\r')"
  if [[ $rc -ne $want ]]; then bad "$name" "exit $rc, wanted $want: $(head -c 300 stderr.txt)"
  elif [[ $(printf '%s\n' "$msg" | wc -l) -ne 1 ]]; then bad "$name" "expected one error line, got: $msg"
  elif ! grep -Eq -- "$pattern" <<< "$msg"; then bad "$name" "message '$msg' does not match /$pattern/"
  else ok "$name (exit $rc): $msg"; fi
}
# expect_fail NAME PATTERN ARGS...: a runtime failure (exit 1).
expect_fail() { expect_status 1 "$@"; }
# expect_usage NAME PATTERN ARGS...: bad options (exit 2).
expect_usage() { expect_status 2 "$@"; }
