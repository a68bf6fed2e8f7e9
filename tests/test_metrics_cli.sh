#!/usr/bin/env bash
# `kindbench eval` end to end with the test-only "pixels" featuriser (no
# Inception weights needed): folders (nested, grey/RGBA/LA/JPEG images),
# ADM-style npz, pytorch-fid statistics, .kbd caches, eval stats, the CSV,
# the features cache; numbers checked with numpy (tests/ref/metrics_ref.py);
# then bad input: each must fail with one clear error line, exit non-zero,
# and leave a pre-existing CSV untouched; inputs that cannot serve the run
# must be refused before any image is featurised, with exit 2 or 1.
set -u
KB="$(realpath "${KINDBENCH:-./kindbench}")"
PY="${KB_PYTHON:-/usr/bin/python3}"
REF="$(realpath "${KB_SOURCE_DIR:-$(dirname "$0")/..}")/tests/ref/metrics_ref.py" # absolute: the script cds below
W="$PWD/metrics_cli.work"
rm -rf "$W" && mkdir -p "$W" && cd "$W" || exit 1
export KINDBENCH_FEATURES_CACHE="$W/cache"
passed=0 failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
E=(--featurizer pixels --quiet)

"$PY" "$REF" cli-setup . || { echo "FAIL setup"; echo "0 passed, 1 failed"; exit 1; }

# run NAME ARGS...: expects exit 0, keeps stdout in out.txt
run() {
  local name="$1"; shift
  if "$KB" "$@" > out.txt 2> err.txt; then ok "$name"; else bad "$name" "exit $?: $(cat err.txt)"; fi
}

# expect_fail NAME PATTERN ARGS...: exit != 0, one error line matching PATTERN, res.csv unchanged
expect_fail() {
  local name="$1" pattern="$2"; shift 2
  printf precious > res.csv
  "$KB" "$@" --csv res.csv > stdout.txt 2> stderr.txt
  local rc=$?
  local msg; msg="$(grep -v -e '^Try ' -e ': ignored [0-9]* files\? that are not' stderr.txt | tr -d '\r')"
  if [[ $rc -eq 0 ]]; then bad "$name" "exit status 0"
  elif [[ $(printf '%s\n' "$msg" | wc -l) -ne 1 ]]; then bad "$name" "expected one error line, got: $msg"
  elif ! grep -Eq -- "$pattern" <<< "$msg"; then bad "$name" "message '$msg' does not match /$pattern/"
  elif [[ "$(cat res.csv)" != precious ]]; then bad "$name" "pre-existing res.csv was changed"
  elif compgen -G 'res.csv.tmp.*' > /dev/null; then bad "$name" "left a temp file"
  else ok "$name (exit $rc): $msg"; fi
}

# ---- eval stats: features and statistics vs numpy on PIL .convert('RGB') images
run "eval stats of a mixed folder (grey, RGBA, LA, JPEG, transparent GIF, nested)" eval stats mixed -o mixed.npz --with-features "${E[@]}"
if "$PY" "$REF" cli-check-features mixed.npz mixed; then ok "mixed folder features = numpy on PIL-converted images"
else bad "mixed folder features" "see above"; fi
grep -q "13 images" out.txt && grep -q "mixed: ignored 1 file that are not PNG/JPEG/GIF images" err.txt &&
  ok "readme.txt ignored and reported, 13 images" || bad "image count" "$(cat out.txt) / $(cat err.txt)"

# ---- eval: folder vs folder, CSV checked against numpy
run "eval folder vs folder, all metrics" eval samp ref --metrics all --csv res1.csv "${E[@]}"
if "$PY" "$REF" cli-check-csv res1.csv samp ref; then ok "FID, sFID, IS, KID from the CSV = numpy"
else bad "CSV values" "see above"; fi
missing=""
for m in FID sFID IS precision recall density coverage KID spectral; do
  grep -q "^$m .*\[mode adm\]" out.txt || missing="$missing $m"
done
[[ -z "$missing" ]] && ok "every result line names the mode" || bad "result lines" "missing or without the mode:$missing"
[[ -n "$(ls cache/*.npz 2> /dev/null)" ]] && ok "reference features cached" || bad "cache" "no cache file"

# the same reference again comes from the cache, with identical results
run "eval again (reference from the cache)" eval samp ref --metrics all --csv res2.csv --featurizer pixels
grep -q "features from the cache" err.txt && ok "cache hit reported" || bad "cache hit" "$(cat err.txt)"
cmp -s res1.csv res2.csv && ok "cached run gives a byte-identical CSV" || bad "cached CSV" "$(diff res1.csv res2.csv)"
# a damaged cache file (cut short, as a full disk or a bad copy leaves it) is
# not used: the features are computed again, the results are the same, and
# the file is rewritten whole
cfile=$(sed -n 's/.*features from the cache (\(.*\))$/\1/p' err.txt | head -1); csize=$(stat -c %s "$cfile")
head -c $((csize / 2)) "$cfile" > cut.npz && mv cut.npz "$cfile"
run "eval with a damaged cache file" eval samp ref --metrics all --csv res3.csv --featurizer pixels
if ! grep -q "features from the cache" err.txt && grep -q "cached the features" err.txt && cmp -s res1.csv res3.csv &&
   [[ $(stat -c %s "$cfile") -eq $csize ]]; then ok "damaged cache file recomputed and rewritten, same CSV"
else bad "damaged cache file" "$(cat err.txt) / size $(stat -c %s "$cfile") vs $csize"; fi
# an entry keyed as kindbench keyed them before the key held KB_DECODE_VERSION holds features of pixels the
# decoders no longer give (16-bit grey, short palettes): it is not used, and the entry is written anew
old_key_path() {
  "$PY" - "$1" << 'EOF'
import hashlib, json, os, sys
import numpy as np
m = json.loads(bytes(np.load(sys.argv[1])["kb_meta"]).decode())
key = "kindbench-features-v%d\n%s\n%s\n%s\n%s" % (m["version"], m["source_sha256"], m["mode"], m["featurizer"],
                                                 m["weights_sha256"])
print(os.path.join(os.path.dirname(sys.argv[1]), hashlib.sha256(key.encode()).hexdigest() + ".npz"))
EOF
}
oldfile=$(old_key_path "$cfile") && mv "$cfile" "$oldfile"
run "eval with a cache entry of an older decoder" eval samp ref --metrics all --csv res4.csv --featurizer pixels
if ! grep -q "features from the cache" err.txt && grep -q "cached the features" err.txt && cmp -s res1.csv res4.csv &&
   [[ -f $cfile ]]; then ok "cache entry keyed without the decoder version not used; recomputed, same CSV"
else bad "cache entry of an older decoder" "$(cat err.txt) / $oldfile -> $cfile"; fi

# the Frechet distance's routes: these sets have fewer images than dimensions
# (sigma1 singular), so auto takes the pivoted route; eigh must agree to 1e-6
grep -q "^FID .*pivoted route" out.txt && ok "FID names its route (pivoted: singular sigma1)" || bad "FID route" "$(grep '^FID' out.txt)"
run "eval --fd-method eigh" eval samp ref --metrics fid --fd-method eigh --csv res_eigh.csv "${E[@]}"
fe=$(grep '^"FID"' res_eigh.csv | cut -d, -f2 | tr -d '"'); fa=$(grep '^"FID"' res1.csv | cut -d, -f2 | tr -d '"')
if awk -v a="$fa" -v b="$fe" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a + 0 > 0 && d <= 1e-6 * b) }'; then
  ok "FID by the eigh route ($fe) = auto's ($fa) within 1e-6"
else bad "eigh route FID" "$fe vs $fa"; fi

# ADM sample npz (arr_0) = the same images as the folder
run "eval npz arr_0 vs folder" eval samp.npz ref --metrics fid,is --csv res3.csv "${E[@]}"
f1=$(grep '^"FID"' res1.csv | cut -d, -f2); f3=$(grep '^"FID"' res3.csv | cut -d, -f2)
[[ -n "$f1" && "$f1" == "$f3" ]] && ok "npz arr_0 gives the folder's FID ($f1)" || bad "npz FID" "$f1 vs $f3"

# statistics files: ours, pytorch-fid style (mu/sigma only), ADM style (stats + arr_0)
run "eval stats of the reference" eval stats ref -o ref_stats.npz "${E[@]}"
"$PY" -c "import numpy as np; f = np.load('ref_stats.npz'); np.savez('ptfid.npz', mu=f['mu'], sigma=f['sigma']); \
np.savez('adm_ref.npz', arr_0=np.zeros((5, 16, 16, 3), np.uint8) + 9, mu=f['mu'], sigma=f['sigma'], mu_s=f['mu_s'], sigma_s=f['sigma_s'])"
run "eval vs pytorch-fid statistics" eval samp ptfid.npz --csv res4.csv "${E[@]}"
f4=$(grep '^"FID"' res4.csv | cut -d, -f2)
[[ -n "$f1" && "$f1" == "$f4" ]] && ok "pytorch-fid stats give the same FID" || bad "ptfid FID" "$f1 vs $f4"
grep -q "^sfid .*skipped" out.txt && grep -q "^pr .*skipped" out.txt && ok "defaults the file cannot give are skipped" \
  || bad "skips" "$(cat out.txt)"
run "eval vs ADM reference batch (stats + arr_0)" eval samp adm_ref.npz --metrics fid,sfid,pr --csv res5.csv "${E[@]}"
f5=$(grep '^"FID"' res5.csv | cut -d, -f2)
[[ -n "$f1" && "$f1" == "$f5" ]] && grep -q '^"precision"' res5.csv && ok "ADM batch: FID from its stats, P/R from its arr_0" \
  || bad "ADM batch" "$f1 vs $f5"

# .kbd cache with a split filter
"$KB" data prepare --source folder --input samp --resolution 16 --test-fraction 0.5 -o samp.kbd --quiet > /dev/null 2>&1
run "eval .kbd reference, --ref-split test" eval samp samp.kbd --ref-split test --metrics fid "${E[@]}"
grep -q "reference: samp.kbd" out.txt && ok ".kbd reference accepted" || bad ".kbd" "$(cat out.txt)"
run "eval --is-splits fidelity" eval samp ref --metrics is --is-splits fidelity "${E[@]}"
grep -q "^IS .*+-.*fidelity splits" out.txt && ok "fidelity IS has mean +- std" || bad "fidelity IS" "$(cat out.txt)"

# ---- bad input
expect_fail "feature dimensions differ" "dimensions differ \(192 vs 2048\)" eval samp big_stats.npz --metrics fid "${E[@]}"
mkdir -p corrupt && cp ref/r0*.png corrupt/ && head -c 100 ref/r11.png > corrupt/zz.png
expect_fail "corrupt PNG" "corrupt/zz.png: corrupt or truncated PNG" eval samp corrupt "${E[@]}"
expect_fail "empty folder" "empty: no images" eval samp empty "${E[@]}"
expect_fail "webp in the folder" "pic.webp: image format not supported" eval samp webp "${E[@]}"
expect_fail "npz without images or statistics" "labels_only.npz: neither statistics" eval samp labels_only.npz "${E[@]}"
expect_fail "missing path" "nowhere: no such file or directory" eval samp nowhere "${E[@]}"
expect_fail "one image, FID asked for" "fid: one.*1 image: a covariance needs at least 2" eval one ref --metrics fid "${E[@]}"
expect_fail "one image, P/R asked for" "k=3 needs at least 4" eval one ref --metrics pr "${E[@]}"
run "default metrics against a 1-image reference" eval samp one "${E[@]}"
if grep -q "^pr .*skipped: one has 1 image(s): precision/recall with k=3 needs at least 4" out.txt &&
   grep -q "^fid .*skipped: one has 1 image" out.txt && grep -q "^IS " out.txt; then
  ok "default metrics the reference is too small for are skipped with a note (IS still computed)"
else bad "default metrics on a 1-image reference" "$(cat out.txt)"; fi
mkdir -p few && cp ref/r0[0-4].png few/
run "default metrics, fidelity IS on 5 samples" eval few ref --is-splits fidelity --csv res_few.csv "${E[@]}"
if grep -q "^is .*skipped: few has 5 image(s): Inception Score with --is-splits fidelity needs at least 10" out.txt &&
   grep -q '^"FID"' res_few.csv && grep -q '^"precision"' res_few.csv; then
  ok "fidelity IS on too few samples is skipped with a note, the rest computed"
else bad "fidelity IS on too few samples" "$(cat out.txt)"; fi
expect_fail "P/R against mu/sigma only" "pr: ptfid.npz holds statistics only" eval samp ptfid.npz --metrics pr "${E[@]}"
expect_fail "statistics of another mode" "computed in mode adm, but this evaluation uses --mode clean" \
  eval samp ref_stats.npz --mode clean "${E[@]}"
expect_fail "unknown metric" "--metrics: unknown metric 'fdi'" eval samp ref --metrics fdi "${E[@]}"
expect_fail "unknown short options in a cluster" "unknown option or missing value: '-z'" eval samp ref -zq "${E[@]}"
expect_fail "one positional argument" "expected SAMPLES and REFERENCE, got 1" eval samp "${E[@]}"
expect_fail "split filter on a folder" "filters apply to .kbd" eval samp ref --ref-split test "${E[@]}"
expect_fail "filter selecting nothing" "samp.kbd: no images match" eval samp samp.kbd --ref-classes novel "${E[@]}"
expect_fail "spectra of images of different sizes" "spectral: mixed: image 1 is 17x22, the first 17x21: the spectrum needs one size" eval samp mixed --metrics spectral "${E[@]}"
expect_fail "bad --mode names --mode" "--mode: unknown pre-processing mode 'tf'" eval samp ref --mode tf "${E[@]}"
expect_fail "bad --device names --device" "--device: unknown device 'gpu'" eval samp ref --device gpu "${E[@]}"
expect_fail "bad --pr-precision" "--pr-precision: unknown value 'fp8'" eval samp ref --pr-precision fp8 "${E[@]}"
"$PY" -c "import numpy as np; s = np.eye(192); s[0, 0] = np.nan; np.savez('nan.npz', mu=np.zeros(192), sigma=s)"
expect_fail "NaN in reference statistics" "sigma\[0, 0\] = nan" eval samp nan.npz "${E[@]}"
# npz members as numpy reads them: of a duplicated name (an archive appended
# to) the last; a member whose bytes fail its CRC-32 is refused; an npy
# shape whose byte size wraps past 2^64 to the payload's size is refused
"$PY" - << 'EOF'
import io, struct, warnings, zipfile
import numpy as np
warnings.simplefilter("ignore")  # zipfile warns about the duplicate names it writes
def npy(a):
    b = io.BytesIO(); np.save(b, a); return b.getvalue()
f = np.load("ptfid.npz")
np.savez("dup.npz", mu=np.zeros_like(f["mu"]), sigma=np.eye(len(f["mu"])))
with zipfile.ZipFile("dup.npz", "a") as z:
    z.writestr("mu.npy", npy(f["mu"])), z.writestr("sigma.npy", npy(f["sigma"]))
assert (np.load("dup.npz")["mu"] == f["mu"]).all()  # numpy reads the last of each name
b = bytearray(open("ptfid.npz", "rb").read())
info = zipfile.ZipFile("ptfid.npz").getinfo("mu.npy")
name_len, extra_len = struct.unpack("<HH", b[info.header_offset + 26:info.header_offset + 30])
b[info.header_offset + 30 + name_len + extra_len + info.file_size - 3] ^= 0x10  # a mantissa bit of mu[-1]
open("crc.npz", "wb").write(b)
d = "{'descr': '<f8', 'fortran_order': False, 'shape': (2305843009213693953,), }"
h = d + " " * ((64 - (10 + len(d) + 1) % 64) % 64) + "\n"
with zipfile.ZipFile("huge_spectrum.npz", "w") as z:
    z.writestr("arr_0.npy", npy(np.zeros((4, 16, 16, 3), np.uint8)))
    z.writestr("spectrum_hw.npy", npy(np.array([16, 16], np.int64)))
    z.writestr("spectrum.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + bytes(8))
EOF
run "eval vs an npz with duplicated members" eval samp dup.npz --metrics fid --csv res6.csv "${E[@]}"
f6=$(grep '^"FID"' res6.csv | cut -d, -f2)
[[ -n "$f1" && "$f1" == "$f6" ]] && ok "duplicated npz members: the last is read, as numpy does (FID $f6)" \
  || bad "duplicated npz members" "$f1 vs $f6"
expect_fail "npz member with a bad CRC-32" "crc.npz:mu.npy: CRC error" eval samp crc.npz --metrics fid "${E[@]}"
expect_fail "npy shape whose byte size wraps" "huge_spectrum.npz:spectrum.npy: .*array is too big" eval samp huge_spectrum.npz --metrics spectral "${E[@]}"
# statistics of other weights: refused against this evaluation's (pixels: "none"), and between two files
# when the weights are not known up front (--allow-unverified-weights; no image is featurised here)
"$PY" -c "
import json, numpy as np
f = dict(np.load('ref_stats.npz'))
for name, fz, w in (('w_other.npz', 'pixels', 'ab' * 32), ('w_a.npz', 'inception-2015-12-05', 'aa' * 32),
                    ('w_b.npz', 'inception-2015-12-05', 'bb' * 32)):
    m = json.loads(bytes(f['kb_meta']).decode()); m['featurizer'], m['weights_sha256'] = fz, w
    np.savez(name, **dict(f, kb_meta=np.frombuffer(json.dumps(m).encode(), np.uint8)))"
expect_fail "statistics of other weights" "w_other.npz: its features come from weights with sha256 abababab" eval samp w_other.npz "${E[@]}"
expect_fail "two statistics files of different weights" "w_a.npz and w_b.npz were featurised with different weights" \
  eval w_a.npz w_b.npz --metrics fid --featurizer inception --allow-unverified-weights --quiet
expect_fail "eval stats with a samples filter" "eval stats: INPUT's images are selected with --ref-split" eval stats samp.kbd -o s.npz --samples-split test "${E[@]}"
# options of the other form were dropped without a word (eval stats --csv wrote no CSV and exited 0)
expect_fail "eval stats with --csv" "eval stats: --csv applies to a comparison" eval stats samp -o s.npz "${E[@]}"
expect_fail "eval stats with --metrics" "eval stats: --metrics applies to a comparison" eval stats samp -o s.npz --metrics fid "${E[@]}"
expect_fail "a comparison with -o" "eval: -o applies to eval stats only" eval samp ref -o s.npz "${E[@]}"
expect_fail "a comparison with --with-features" "eval: --with-features applies to eval stats only" eval samp ref --with-features "${E[@]}"
[[ ! -e s.npz ]] && ok "... and no s.npz written" || bad "options of the other form" "s.npz written"
expect_fail "'stats' after an option" "'stats' must come right after 'eval'" eval --featurizer pixels stats samp -o s.npz --quiet
"$PY" -c "
import numpy as np
f = np.load('ref_stats.npz')
np.savez('spec0.npz', arr_0=np.zeros((4, 16, 16, 3), np.uint8), spectrum=np.zeros(0), spectrum_hw=np.array([16, 16]))
np.savez('pooldim0.npz', pool=np.zeros((10, 0), np.float32))"
expect_fail "reference spectrum with no bins" "spec0.npz: 'spectrum' has 0 bins" eval samp spec0.npz --metrics spectral "${E[@]}"
expect_fail "features of dimension 0" "pooldim0.npz: 'pool' must be float32 \[N, D\] features with D >= 1" eval samp pooldim0.npz --metrics kid "${E[@]}"
# ---- inputs that cannot serve the run are refused before any image is featurised (the samples were featurised
# first, up to an hour for 50k, and then the reference was read): exit 2 where the options or the two inputs do not
# fit together, 1 where a file is bad. Run without --quiet and with a fresh features cache each: featurising would
# print its "features of ..." progress and create the cache directory (for its resumable partial file).
expect_early() { # NAME STATUS PATTERN ARGS...
  local name="$1" want="$2" pattern="$3"; shift 3
  local cache="$W/early_cache" msg rc
  rm -rf "$cache"
  KINDBENCH_FEATURES_CACHE="$cache" "$KB" "$@" > stdout.txt 2> stderr.txt; rc=$?
  msg="$(grep -v -e '^Try ' -e ': ignored [0-9]* files\? that are not' stderr.txt)"
  if [[ $rc -ne $want ]]; then bad "$name" "exit $rc, expected $want: $(cat stderr.txt)"
  elif [[ $(printf '%s\n' "$msg" | wc -l) -ne 1 ]]; then bad "$name" "expected one error line, got: $msg"
  elif ! grep -Eq -- "$pattern" <<< "$msg"; then bad "$name" "message '$msg' does not match /$pattern/"
  elif [[ -s stdout.txt ]]; then bad "$name" "work started: $(head -3 stdout.txt)"
  elif [[ -e $cache ]]; then bad "$name" "images were featurised ($cache was created)"
  else ok "$name (exit $rc, nothing featurised): $msg"; fi
}
P=(--featurizer pixels)
"$PY" -c "
import numpy as np
f = dict(np.load('ref_stats.npz')); f['spectrum_hw'] = np.array([32, 32]); np.savez('spec32.npz', **f)"
printf 'not a zip' > notzip.npz
expect_early "reference statistics of another mode" 2 "ref_stats.npz: its statistics were computed in mode adm, but this evaluation uses --mode clean" \
  eval samp ref_stats.npz --mode clean "${P[@]}"
expect_early "P/R against mu/sigma only" 2 "^kindbench: error: pr: ptfid.npz holds statistics only" eval samp ptfid.npz --metrics pr "${P[@]}"
expect_early "sFID against a reference without mu_s/sigma_s" 2 "sfid: ptfid.npz has no spatial statistics \(mu_s, sigma_s\)" \
  eval samp ptfid.npz --metrics fid,sfid "${P[@]}"
expect_early "reference filter selecting nothing" 2 "samp.kbd: no images match the split/class filter" \
  eval samp samp.kbd --ref-classes novel "${P[@]}"
expect_early "filter on a reference statistics file" 2 "ptfid.npz: split and class filters apply to .kbd" \
  eval samp ptfid.npz --ref-split test "${P[@]}"
expect_early "corrupt reference npz (bad CRC-32)" 1 "crc.npz:mu.npy: CRC error" eval samp crc.npz --metrics fid "${P[@]}"
expect_early "reference npz that is no zip" 1 "notzip.npz: cannot open as npz" eval samp notzip.npz "${P[@]}"
expect_early "reference statistics of other dimensions" 2 "fid: samp gives 192-d pool statistics, big_stats.npz 2048-d: dimensions differ \(192 vs 2048\)" \
  eval samp big_stats.npz --metrics fid "${P[@]}"
expect_early "reference statistics of other weights" 2 "w_other.npz: its features come from weights with sha256 abababab" \
  eval samp w_other.npz "${P[@]}"
expect_early "two statistics files of different weights" 2 "w_a.npz and w_b.npz were featurised with different weights" \
  eval w_a.npz w_b.npz --metrics fid --featurizer inception --allow-unverified-weights
expect_early "FID against a 1-image reference" 2 "fid: one has 1 image: a covariance needs at least 2" eval samp one --metrics fid "${P[@]}"
expect_early "P/R with k beyond the reference's images" 2 "pr: samp has 24 image\(s\): precision/recall with k=24 needs at least 25" \
  eval ref samp --metrics pr --pr-k 24 "${P[@]}"
expect_early "spectra of two known sizes" 2 "spectral: samp.npz are 16x16 images but spec32.npz 32x32" \
  eval samp.npz spec32.npz --metrics spectral "${P[@]}"
# the symmetric case: SAMPLES a statistics file, REFERENCE a folder (the reference was featurised, then refused)
expect_early "samples statistics only, P/R asked for" 2 "pr: ptfid.npz holds statistics only" eval ptfid.npz ref --metrics pr "${P[@]}"
expect_early "samples statistics of other dimensions" 2 "fid: big_stats.npz gives 2048-d pool statistics, ref 192-d: dimensions differ" \
  eval big_stats.npz ref --metrics fid "${P[@]}"
expect_early "samples statistics of another mode" 2 "ref_stats.npz: its statistics were computed in mode adm" \
  eval ref_stats.npz ref --mode clean "${P[@]}"
# eval stats: its input checked, and --with-images' images packed, before the featurisation
expect_early "eval stats of one image" 1 "one: statistics need at least 2 images, it has 1" eval stats one -o st.npz "${P[@]}"
expect_early "eval stats --with-images of two image sizes" 1 "mixed: image 1 is 17x22, the first 17x21: arr_0 needs one size" \
  eval stats mixed -o st.npz --with-images "${P[@]}"
expect_early "eval stats, filter selecting nothing" 2 "samp.kbd: no images match the split/class filter" \
  eval stats samp.kbd --ref-classes novel -o st.npz "${P[@]}"
[[ ! -e st.npz ]] && ok "... and no st.npz written" || bad "eval stats refused" "st.npz written"
# a default metric the inputs cannot give is skipped, and images only it needed are not featurised: against
# pytorch-fid samples statistics, an ADM reference batch's arr_0 served only P/R (skipped: the samples have no
# features), and was featurised all the same
rm -rf "$W/early_cache"
KINDBENCH_FEATURES_CACHE="$W/early_cache" "$KB" eval ptfid.npz adm_ref.npz "${P[@]}" > out.txt 2> err.txt; rc=$?
if [[ $rc -eq 0 ]] && grep -q "^FID " out.txt && grep -q "^pr .*skipped: ptfid.npz holds statistics only" out.txt &&
   ! grep -q "features of" err.txt && [[ ! -e $W/early_cache ]]; then
  ok "default P/R skipped: the reference's images, needed by nothing else, are not featurised"
else bad "images needed only by a skipped metric" "exit $rc, $(cat out.txt err.txt), cache: $(ls "$W/early_cache" 2>&1)"; fi

# outputs written at the end are checked before any image is featurised (they failed after the whole evaluation)
mkdir -p adir
for c in "csv-dir:eval samp ref --csv adir:--csv: adir: is a directory" \
         "csv-missing-folder:eval samp ref --csv nowhere/r.csv:--csv: nowhere/r.csv: cannot write there" \
         "stats-o-dir:eval stats ref -o adir:-o: adir: is a directory"; do
  IFS=: read -r name args want <<< "$c"
  "$KB" $args "${E[@]}" > stdout.txt 2> stderr.txt; rc=$?
  if [[ $rc -eq 1 ]] && grep -q -- "error: $want" stderr.txt && [[ ! -s stdout.txt && -d adir ]]; then
    ok "$name: before any work ($(cat stderr.txt))"
  else bad "$name" "exit $rc, $(cat stderr.txt) / stdout: $(head -2 stdout.txt)"; fi
done
# an output naming an input: eval stats X.npz -o X.npz replaced the input, its images with it; arguments that
# cannot work together are a usage error (exit 2; it was 1)
cp samp.npz self.npz
"$KB" eval stats self.npz -o ./self.npz "${E[@]}" > /dev/null 2> stderr.txt; rc=$?
if [[ $rc -eq 2 ]] && grep -q -- "-o ./self.npz is an input of this evaluation" stderr.txt && cmp -s samp.npz self.npz; then
  ok "eval stats -o INPUT refused, input kept"
else bad "eval stats -o INPUT" "exit $rc, $(cat stderr.txt)"; fi
"$KB" eval samp self.npz --csv self.npz "${E[@]}" > /dev/null 2> stderr.txt; rc=$?
if [[ $rc -eq 2 ]] && grep -q -- "--csv self.npz is an input of this evaluation" stderr.txt && cmp -s samp.npz self.npz; then
  ok "eval --csv REFERENCE refused, reference kept"
else bad "eval --csv REFERENCE" "exit $rc, $(cat stderr.txt)"; fi
mkdir -p ro && chmod 555 ro
if [[ $(id -u) -ne 0 ]]; then
  "$KB" eval samp ref --csv ro/x.csv "${E[@]}" > /dev/null 2> stderr.txt && bad "unwritable CSV" "exit 0" \
    || ok "unwritable CSV directory: $(tail -1 stderr.txt)"
fi
chmod 755 ro

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
