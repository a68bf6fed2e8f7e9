#!/usr/bin/env bash
# Bad input to `kindbench data`: each case must fail with a clear one-line
# error naming the file and what was wrong, exit non-zero, leave neither OUT
# nor OUT.tmp.* behind, and keep a pre-existing OUT untouched. Also: corrupt
# caches given to `data info`, determinism (byte-identical caches), --help.
# Uses the PNG/JPEG files of the data_resize fixture as valid inputs.
set -u
KB="${KINDBENCH:-./kindbench}"
FX="${KB_FIXTURES:-fixtures}/data_resize/folder"
# the script cds into its work directory: relative paths made absolute first
[[ $KB != */* || $KB == /* ]] || KB="$PWD/$KB"
[[ $FX == /* ]] || FX="$PWD/$FX"
W="$PWD/data_badinput.work"
rm -rf "$W" && mkdir -p "$W" && cd "$W" || exit 1
# verification stamps of the caches opened here: this test's own, never ~/.cache
export KINDBENCH_VERIFIED_DIR="$W/verified"
passed=0 failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1: $2"; failed=$((failed + 1)); }

# expect_fail NAME PATTERN ARGS...: runs kindbench ARGS with -o out.kbd where
# out.kbd already holds "precious"; checks exit != 0, one stderr line matching
# PATTERN, out.kbd unchanged and no out.kbd.tmp.* left.
expect_fail() {
  local name="$1" pattern="$2"; shift 2
  printf precious > out.kbd
  "$KB" "$@" > stdout.txt 2> stderr.txt
  local rc=$?
  local msg; msg="$(grep -v '^Try ' stderr.txt | grep -v '^decode+resize' | tr -d '\r')"
  if [[ $rc -eq 0 ]]; then bad "$name" "exit status 0"
  elif [[ $(printf '%s\n' "$msg" | wc -l) -ne 1 ]]; then bad "$name" "expected one error line, got: $msg"
  elif ! grep -Eq -- "$pattern" <<< "$msg"; then bad "$name" "message '$msg' does not match /$pattern/"
  elif [[ "$(cat out.kbd)" != precious ]]; then bad "$name" "pre-existing out.kbd was changed"
  elif compgen -G 'out.kbd.tmp.*' > /dev/null; then bad "$name" "left a temp file: $(ls out.kbd.tmp.*)"
  else ok "$name (exit $rc): $msg"; fi
}

[[ -d "$FX" ]] || { echo "FAIL fixture missing: $FX"; echo "0 passed, 1 failed"; exit 1; }

# ---- a good ImageFolder, then broken copies of it
mkdir -p good/cats good/dogs
cp "$FX"/a_rgb/big.png "$FX"/a_rgb/tiny.png good/cats/
cp "$FX"/d_jpeg/photo.jpg "$FX"/c_alpha/rgba.png good/dogs/
P=(data prepare --source folder --resolution 16 -o out.kbd --quiet)

expect_fail "unknown source name" "unknown --source 'imagenet'" data prepare --source imagenet --resolution 16 -o out.kbd
expect_fail "resolution 0" "--resolution: .*got '0'" "${P[@]}" --input good --resolution 0
expect_fail "negative resolution" "--resolution: .*got '-3'" "${P[@]}" --input good --resolution -3
expect_fail "non-numeric resolution" "--resolution: .*got 'abc'" "${P[@]}" --input good --resolution abc
expect_fail "missing input directory" "missing_dir: no such directory" "${P[@]}" --input missing_dir
printf 'x' > a_file
expect_fail "input is a file, not a directory" "a_file: not a directory" "${P[@]}" --input a_file

mkdir -p unreadable/cats && cp "$FX"/a_rgb/odd.png unreadable/cats/
if [[ $(id -u) -eq 0 ]]; then
  echo "skipped sub-case: chmod 000 does not stop root from reading; the file-as-directory case above covers it"
else
  chmod 000 unreadable/cats
  expect_fail "unreadable class directory" "cats.*(cannot read directory|Permission denied)" "${P[@]}" --input unreadable
  chmod 755 unreadable/cats
fi

mkdir -p empty_class/cats empty_class/dogs && cp "$FX"/a_rgb/odd.png empty_class/cats/ && touch empty_class/dogs/readme.txt
expect_fail "empty class folder" "dogs.*holds no PNG or JPEG images" "${P[@]}" --input empty_class
mkdir -p no_classes && cp "$FX"/a_rgb/odd.png no_classes/
expect_fail "no class folders" "no_classes: no class sub-folders" "${P[@]}" --input no_classes

# Broken images go last, so the cache's temp file is already being written.
mk_broken() { rm -rf "$1" && cp -r good "$1" && mkdir -p "$1/zz"; }
mk_broken corrupt_png && { head -c 8 "$FX"/a_rgb/big.png; head -c 3000 /dev/urandom; } > corrupt_png/zz/bad.png
expect_fail "corrupt PNG" "zz/bad.png: corrupt or truncated PNG" "${P[@]}" --input corrupt_png
expect_fail "corrupt PNG, progress output on" "zz/bad.png: corrupt or truncated PNG" \
  data prepare --source folder --resolution 16 -o out.kbd --input corrupt_png
mk_broken truncated_png && head -c 2000 "$FX"/a_rgb/big.png > truncated_png/zz/cut.png
expect_fail "truncated PNG" "zz/cut.png: corrupt or truncated PNG" "${P[@]}" --input truncated_png
mk_broken truncated_jpeg && head -c 1500 "$FX"/d_jpeg/photo.jpg > truncated_jpeg/zz/cut.jpg
expect_fail "truncated JPEG" "zz/cut.jpg: corrupt or truncated JPEG" "${P[@]}" --input truncated_jpeg
mk_broken not_image && echo "hello" > not_image/zz/text.png
expect_fail "text file named .png" "zz/text.png: not a PNG, JPEG or GIF image" "${P[@]}" --input not_image
mk_broken empty_file && : > empty_file/zz/empty.jpg
expect_fail "empty image file" "zz/empty.jpg: empty file" "${P[@]}" --input empty_file
# PNG headers written here (the pixel data after them cut short): WxH RGBA
png_header() {
  "${KB_PYTHON:-/usr/bin/python3}" -c "
import struct, sys, zlib
def chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))
w, h = int(sys.argv[2]), int(sys.argv[3])
open(sys.argv[1], 'wb').write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 6, 0, 0, 0)) +
                             chunk(b'IDAT', zlib.compress(bytes(1 + 4 * w))))" "$@"
}
mk_broken huge_png && png_header huge_png/zz/huge.png 40000 40000
expect_fail "PNG of 40000x40000 (past 2^30 pixels)" "zz/huge.png: unsupported image size 40000x40000" "${P[@]}" --input huge_png

# ---- --skip-unreadable: the broken files above are left out and named (one
# run instead of a rerun per bad file of an ImageNet-sized folder). The cache
# must equal, payload bit for bit, one prepared from the folder without them,
# splits included (so the split is drawn over what is left).
rm -rf skip && cp -r good skip && mkdir -p skip/zz && cp corrupt_png/zz/bad.png truncated_jpeg/zz/cut.jpg skip/zz/ &&
  cp not_image/zz/text.png huge_png/zz/huge.png "$FX"/a_rgb/odd.png skip/zz/ && cp empty_file/zz/empty.jpg skip/cats/
rm -rf skip_clean && cp -r skip skip_clean &&
  rm skip_clean/zz/{bad.png,cut.jpg,text.png,huge.png} skip_clean/cats/empty.jpg
S=(data prepare --source folder --resolution 16 --test-fraction 0.5)
"$KB" "${S[@]}" --input skip -o skip.kbd --skip-unreadable > skip.out 2> skip.err; rc=$?
"$KB" "${S[@]}" --input skip_clean -o skip_clean.kbd --quiet > /dev/null 2>&1
if [[ $rc -eq 0 ]] && "${KB_PYTHON:-/usr/bin/python3}" - skip.kbd skip_clean.kbd <<'PY'
import json, struct, sys
def meta(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[8:16])[0]
    return json.loads(b[16:16 + n])
a, b = meta(sys.argv[1]), meta(sys.argv[2])
assert a['payload_sha256'] == b['payload_sha256'] and a['count'] == b['count'] == 5, (a['count'], b['count'])
u = a['unreadable_skipped']
assert u['count'] == 5 and u['listed'] == 5, u
assert [f.split(':')[0] for f in u['files']] == ['skip/cats/empty.jpg', 'skip/zz/bad.png', 'skip/zz/cut.jpg',
                                                 'skip/zz/huge.png', 'skip/zz/text.png'], u
assert 'unreadable_skipped' not in b
PY
then
  if [[ $(grep -c '^skipped (unreadable): skip/' skip.err) == 5 ]] && grep -q "skipped 5 unreadable images" skip.out &&
     "$KB" data info skip.kbd | grep -q "skipped:     5 unreadable"; then
    ok "--skip-unreadable: 5 bad files (corrupt, truncated, empty, not an image, 40000x40000) named and listed; payload = the folder without them"
  else bad "--skip-unreadable messages" "$(cat skip.out skip.err)"; fi
else bad "--skip-unreadable" "exit $rc: $(cat skip.err)"; fi
expect_fail "without --skip-unreadable the error says it exists" "cats/empty.jpg: empty file.*--skip-unreadable" \
  "${P[@]}" --input skip
mkdir -p skip/bad_only && cp corrupt_png/zz/bad.png skip/bad_only/
expect_fail "--skip-unreadable: a class left without images" "class 'bad_only' has no readable image \(6 unreadable" \
  "${P[@]}" --input skip --skip-unreadable
rm -r skip/bad_only

# ---- --skip-unreadable skips only what an image's own bytes get wrong; a
# failure of the machine stops the run, naming the file, as it does without
# the option (it was skipped: a machine problem became a smaller dataset).
# An I/O error: a read of /proc/self/mem at offset 0 (never mapped) fails
# with EIO in every process, and a link to it is listed as a regular file.
rm -rf skip_eio && cp -r skip skip_eio && ln -s /proc/self/mem skip_eio/cats/eio.png
expect_fail "--skip-unreadable: a read failing with EIO stops the run" \
  "cats/eio.png: read failed: Input/output error \(not the image's content: --skip-unreadable leaves out only" \
  "${P[@]}" --input skip_eio --skip-unreadable
expect_fail "a read failing with EIO, without --skip-unreadable: no hint to skip it" "cats/eio.png: read failed: Input/output error$" \
  "${P[@]}" --input skip_eio
# Out of memory: a PNG of 32000x32000 RGBA (4 GiB of pixels) under a 2 GB
# address-space cap, which the same folder without it prepares within (not
# under AddressSanitizer, whose shadow memory alone needs terabytes of it).
rm -rf skip_mem && cp -r skip skip_mem && png_header skip_mem/cats/mem.png 32000 32000
if ldd "$KB" 2> /dev/null | grep -q libasan; then
  echo "skip out of memory under --skip-unreadable (AddressSanitizer build)"
else
  (ulimit -v 2000000; exec "$KB" "${P[@]/out.kbd/mem_ok.kbd}" --input skip --skip-unreadable) > /dev/null 2> ok.err
  rc_ok=$?
  (ulimit -v 2000000; exec "$KB" "${P[@]/out.kbd/mem.kbd}" --input skip_mem --skip-unreadable) > /dev/null 2> mem.err
  rc=$?
  if [[ $rc_ok -ne 0 ]]; then bad "--skip-unreadable within a 2 GB cap" "exit $rc_ok: $(cat ok.err)"
  elif [[ $rc -eq 1 ]] && ! compgen -G 'mem.kbd*' > /dev/null &&
       grep -q "^kindbench: error: skip_mem/cats/mem.png: out of memory for a 32000x32000 image (not the image's content" mem.err
  then ok "--skip-unreadable: out of memory for one image stops the run: $(cat mem.err)"
  else bad "--skip-unreadable, out of memory for one image" "exit $rc: $(cat mem.err)"; fi
fi

# ---- a full disk at the very end (the checksum's seek flushes the buffered
# tail): the error said "cannot seek back to fill in the checksum"; it names
# the write failure now. The limit is the cache's size less its last bytes.
"$KB" data prepare --source folder --input good --resolution 40 -o sized.kbd --quiet > /dev/null 2>&1
limit=$((($(stat -c %s sized.kbd) - 1) / 1024))
printf precious > out.kbd
(ulimit -f "$limit"; trap '' XFSZ; exec "$KB" data prepare --source folder --input good --resolution 40 -o out.kbd --quiet) \
  > /dev/null 2> full.err
rc=$?
if [[ $rc -ne 0 ]] && grep -q "out.kbd: write failed: File too large" full.err && [[ "$(cat out.kbd)" == precious ]] &&
   ! compgen -G 'out.kbd.tmp.*' > /dev/null; then ok "disk full at the end of a prepare: $(cat full.err)"
else bad "disk full at the end of a prepare" "exit $rc: $(cat full.err)"; fi

# ---- Fashion-MNIST idx files: built here, tiny (3 images of 2x2)
be32() { printf "\\x$(printf %02x $(($1 >> 24 & 255)))\\x$(printf %02x $(($1 >> 16 & 255)))\\x$(printf %02x $(($1 >> 8 & 255)))\\x$(printf %02x $(($1 & 255)))"; }
mk_idx() { # dir prefix n_images n_pixel_bytes_written n_labels
  { be32 2051; be32 "$3"; be32 2; be32 2; head -c "$4" /dev/zero; } | gzip -n > "$1/$2-images-idx3-ubyte.gz"
  { be32 2049; be32 "$5"; head -c "$5" /dev/zero; } | gzip -n > "$1/$2-labels-idx1-ubyte.gz"
}
mkdir -p fm_ok && mk_idx fm_ok train 3 12 3 && mk_idx fm_ok t10k 2 8 2
if "$KB" data prepare --source fashion-mnist --input fm_ok --resolution 4 -o fm_ok.kbd --quiet > /dev/null 2>&1; then
  ok "synthetic idx files prepare"; else bad "synthetic idx files prepare" "failed"; fi
F=(data prepare --source fashion-mnist --resolution 8 -o out.kbd --quiet)
# options that the rest of the command line makes pointless were dropped silently: now said
"$KB" data prepare --source fashion-mnist --input fm_ok --resolution 4 -o fm_w.kbd --quiet --background 0,0,0 2> w1.err &&
  "$KB" data prepare --source folder --input good --resolution 8 -o w2.kbd --quiet --split-seed 5 --seed 2 2> w2.err
rc=$?
if [[ $rc -eq 0 ]] && grep -q "warning: --background and --pad-square have no effect on fashion-mnist" w1.err &&
   grep -q "warning: --split-seed has no effect without --novel-fraction" w2.err &&
   grep -q "warning: --seed has no effect without --test-fraction or --novel-fraction" w2.err; then
  ok "ineffective --background (fashion-mnist), --split-seed and --seed are warned about; the runs succeed"
else bad "ineffective options" "exit $rc: $(cat w1.err w2.err)"; fi

mkdir -p fm_trunc && mk_idx fm_trunc train 3 7 3 && mk_idx fm_trunc t10k 2 8 2
expect_fail "truncated idx file" "train-images-idx3-ubyte.gz: truncated idx file: header says 3 images of 2x2, file holds 23 bytes" "${F[@]}" --input fm_trunc
mkdir -p fm_corrupt && cp fm_ok/* fm_corrupt/ && { head -c 20 fm_ok/t10k-images-idx3-ubyte.gz; head -c 40 /dev/urandom; } > fm_corrupt/t10k-images-idx3-ubyte.gz
expect_fail "corrupt gzip idx file" "t10k-images-idx3-ubyte.gz: (corrupt gzip|truncated idx|not an idx)" "${F[@]}" --input fm_corrupt
mkdir -p fm_magic && cp fm_ok/* fm_magic/ && { be32 2049; be32 3; be32 2; be32 2; head -c 12 /dev/zero; } | gzip -n > fm_magic/train-images-idx3-ubyte.gz
expect_fail "wrong idx magic" "train-images-idx3-ubyte.gz: not an idx image file: magic 0x00000801" "${F[@]}" --input fm_magic
mkdir -p fm_missing && cp fm_ok/train-* fm_missing/
expect_fail "missing idx file" "t10k-images-idx3-ubyte.gz: missing idx file" "${F[@]}" --input fm_missing
mkdir -p fm_count && mk_idx fm_count train 3 12 2 && mk_idx fm_count t10k 2 8 2
expect_fail "image/label count mismatch" "holds 3 images but .* holds 2 labels" "${F[@]}" --input fm_count
expect_fail "--test-fraction on fashion-mnist" "own train/test split" "${F[@]}" --input fm_ok --test-fraction 0.1

# ---- emoji / pokemon without their package
expect_fail "emoji package missing" "nowhere: not a directory" data prepare --source emoji --input nowhere --resolution 8 -o out.kbd
expect_fail "unknown emoji style" "unknown --style 'windows'" data prepare --source emoji --style windows --resolution 8 -o out.kbd
expect_fail "pokemon package missing" "nowhere: not a directory" data prepare --source pokemon --input nowhere --resolution 8 -o out.kbd

# ---- class split options
printf 'cats\nwolves\n' > novel.txt
expect_fail "unknown class in --novel-classes" "novel.txt:2: unknown class 'wolves'" "${P[@]}" --input good --novel-classes novel.txt
# -o naming a class list (arguments swapped) replaced the list with the cache, exit 0
printf 'cats\n' > list.txt
"$KB" data prepare --source folder --input good --resolution 16 --quiet --novel-classes list.txt -o list.txt 2> list.err
rc=$?
if [[ $rc -eq 2 && "$(cat list.txt)" == cats ]] && grep -q -- "-o list.txt is the --novel-classes file" list.err; then
  ok "-o naming the --novel-classes file is refused, the list kept: $(cat list.err)"
else bad "-o naming a class list" "exit $rc, list now $(head -c 20 list.txt | od -c | head -1), $(cat list.err)"; fi
# with --skip-unreadable too, before the decoding pass (an hour for an
# ImageNet-sized folder): no image is decoded, none named as skipped
expect_fail "unknown class in --novel-classes, --skip-unreadable: before decoding" "novel.txt:2: unknown class 'wolves'" \
  data prepare --source folder --resolution 16 -o out.kbd --input skip --skip-unreadable --novel-classes novel.txt
# a comment line longer than any buffer is one line: the next lines keep their numbers
{ printf '#%.0s' {1..3000}; printf '\ncats\nwolves\n'; } > novel_long.txt
expect_fail "long comment line in a class list" "novel_long.txt:3: unknown class 'wolves'" "${P[@]}" --input good --novel-classes novel_long.txt
{ printf 'z%.0s' {1..3000}; printf '\n'; } > novel_longname.txt
# a class whose name starts with '#': its comment-looking line is an error, "\#tag" lists it
mkdir -p hashcls/'#tag' hashcls/plain && cp good/cats/tiny.png hashcls/'#tag'/ && cp good/cats/big.png hashcls/plain/
printf '#tag\n' > novel_hash.txt
expect_fail "class list line that is both a comment and a class" "novel_hash.txt:1: '#tag' is a comment here, but a class has that name: write .#tag" "${P[@]}" --input hashcls --novel-classes novel_hash.txt
printf '# the hash class\n\\#tag\n' > novel_hash2.txt
if "$KB" "${P[@]/out.kbd/hash.kbd}" --input hashcls --novel-classes novel_hash2.txt > /dev/null 2>&1 &&
   "$KB" data info hash.kbd | grep -q "classes:     2 (1 pretrain, 1 novel, 0 unused)"; then ok "'\\#tag' lists the class '#tag'"
else bad "escaped '#' class name" "$("$KB" data info hash.kbd 2>&1 | head -8)"; fi
# a folder name with surrounding blanks is listed by the exact line; other lines are trimmed
mkdir -p blankcls/' cat ' blankcls/dog && cp good/cats/tiny.png blankcls/' cat '/ && cp good/cats/big.png blankcls/dog/
printf ' cat \r\n' > novel_blank.txt
printf '  dog\t\n' > novel_blank2.txt
if "$KB" "${P[@]/out.kbd/blank.kbd}" --input blankcls --novel-classes novel_blank.txt > /dev/null 2>&1 &&
   "$KB" data info blank.kbd | grep -q "classes:     2 (1 pretrain, 1 novel, 0 unused)" &&
   "$KB" "${P[@]/out.kbd/blank2.kbd}" --input blankcls --novel-classes novel_blank2.txt > /dev/null 2>&1 &&
   "$KB" data info blank2.kbd | grep -q "classes:     2 (1 pretrain, 1 novel, 0 unused)"; then
  ok "' cat ' is listed by its exact line, '  dog<TAB>' trimmed"
else bad "class names with surrounding blanks" "$("$KB" "${P[@]/out.kbd/blank.kbd}" --input blankcls --novel-classes novel_blank.txt 2>&1 | tail -3)"; fi
expect_fail "3000-byte class name" "novel_longname.txt:1: unknown class 'z{200}'\\.\\.\\. \\(a name of over 200 bytes\\)" "${P[@]}" --input good --novel-classes novel_longname.txt
expect_fail "--novel-fraction out of range" "--novel-fraction: expected a fraction in \[0, 1\]" "${P[@]}" --input good --novel-fraction 1.5
expect_fail "bad --background" "--background: expected R,G,B" "${P[@]}" --input good --background 1,2
expect_fail "empty --name" "--name: empty" "${P[@]}" --input good --name ""
expect_fail "--name longer than 255 bytes" "--name: 260 bytes, at most 255" "${P[@]}" --input good --name "$(printf 'é%.0s' $(seq 130))"
mkdir -p latin1/$'caf\xe9' && cp good/cats/tiny.png latin1/$'caf\xe9'/
expect_fail "class folder name not UTF-8" "latin1: class 0's name is not valid UTF-8 \(byte 3\)" "${P[@]}" --input latin1
expect_fail "--background past int" "--background: expected R,G,B with each 0..255, got '4294967551,0,0'" "${P[@]}" --input good --background 4294967551,0,0
# -o naming a directory: refused before any image is decoded (every image was decoded, then the rename failed)
mkdir -p out_dir && touch out_dir/keep
expect_fail "-o names a directory" "out_dir: is a directory" "${P[@]}" --input good -o out_dir
"$KB" data prepare --source folder --input good --resolution 16 -o out_dir > /dev/null 2> err.txt
if ! grep -q "decode+resize" err.txt && [[ -e out_dir/keep ]]; then ok "-o DIR fails before decoding, DIR kept"
else bad "-o DIR before decoding" "$(tr '\r' '\n' < err.txt | tail -2)"; fi
# -o in a missing folder: the message names OUT (it named the random temp file OUT.tmp.XXXXXX)
expect_fail "-o in a missing folder" "^kindbench: error: no_folder/out.kbd: cannot write there: No such file or directory$" "${P[@]}" --input good -o no_folder/out.kbd

# ---- determinism, then corrupt caches for `data info`
"$KB" "${P[@]/out.kbd/d1.kbd}" --input good --test-fraction 0.5 --seed 3 --novel-fraction 0.5 > /dev/null 2>&1
"$KB" "${P[@]/out.kbd/d2.kbd}" --input good --test-fraction 0.5 --seed 3 --novel-fraction 0.5 > /dev/null 2>&1
if [[ -s d1.kbd ]] && cmp -s d1.kbd d2.kbd; then ok "same source twice gives byte-identical caches"
else bad "determinism" "d1.kbd and d2.kbd differ or are missing"; fi
if "$KB" data info d1.kbd > info.txt && grep -q "images:      4 (train 2, test 2)" info.txt &&
   grep -q "classes:     2 (1 pretrain, 1 novel, 0 unused)" info.txt; then ok "data info summary"
else bad "data info summary" "$(cat info.txt)"; fi
if "$KB" data grid d1.kbd -o grid.png --per-class 3 > /dev/null && [[ "$(head -c 4 grid.png | tail -c 3)" == PNG ]]; then
  ok "data grid writes a PNG"; else bad "data grid" "no PNG"; fi
# "all" as eval's --ref-split/--ref-classes say it (only "any" was taken), "any" still
if "$KB" data grid d1.kbd -o g_all.png --split all --role all > /dev/null && "$KB" data grid d1.kbd -o g_any.png --split any \
   --role any > /dev/null && cmp -s g_all.png g_any.png; then ok "data grid --split/--role all = any"
else bad "data grid --split all" "failed or differs"; fi
size=$(stat -c %s d1.kbd)
head -c $((size - 100)) d1.kbd > trunc.kbd
cp d1.kbd flipped.kbd && printf '\x00\x01\x02' | dd of=flipped.kbd bs=1 seek=$((size - 40)) conv=notrunc 2> /dev/null
printf 'not a cache at all, just text' > text.kbd
# The metadata edited (length and padding rewritten, payload kept): a count no
# int64 holds, and a resolution that an int cast would have wrapped to 4. These
# drop metadata_sha256, as a cache written before it existed lacks it, so that
# the checks of the values themselves are reached; a class renamed with the
# header's digest kept is caught by that digest.
"${KB_PYTHON:-/usr/bin/python3}" -c "
import json, struct
b = open('d1.kbd', 'rb').read(); n = struct.unpack('<Q', b[8:16])[0]; p = (16 + n + 63) // 64 * 64
def classes_renamed(m): m['classes'][0]['name'] += 'x'; return m
for out, edit in (('count.kbd', lambda m: dict(m, count=1e300)), ('wrapres.kbd', lambda m: dict(m, resolution=2**32 + 4)),
                  ('renamed.kbd', classes_renamed)):
    m = edit(json.loads(b[16:16 + n]))
    if out != 'renamed.kbd': del m['metadata_sha256']
    j = json.dumps(m).encode(); q = (16 + len(j) + 63) // 64 * 64
    open(out, 'wb').write(b[:8] + struct.pack('<Q', len(j)) + j + bytes(q - 16 - len(j)) + b[p:])"
for c in "trunc.kbd:truncated cache" "flipped.kbd:payload SHA-256" "text.kbd:bad magic" "absent.kbd:cannot open" \
         "count.kbd:garbles resolution/channels/count" "wrapres.kbd:garbles resolution/channels/count" \
         "renamed.kbd:header (metadata) SHA-256"; do
  f="${c%%:*}" want="${c#*:}"
  "$KB" data info "$f" > /dev/null 2> err.txt; rc=$?
  if [[ $rc -ne 0 ]] && grep -q "$f: .*$want" err.txt; then ok "data info $f fails: $(cat err.txt)"
  else bad "data info $f" "exit $rc, $(cat err.txt)"; fi
done

# ---- verification stamps: `data grid` (any open but `data info`) trusts a
# stamp for this very file version; `data info` and $KINDBENCH_VERIFY=always
# hash anyway. Proved with a stamp forged for a corrupted file, which also
# pins the stamp format docs/datasets.md documents.
cp d1.kbd forged.kbd && printf '\x00\x01\x02' | dd of=forged.kbd bs=1 seek=$((size - 40)) conv=notrunc 2> /dev/null
sha=$("${KB_PYTHON:-/usr/bin/python3}" -c "
import json, struct, sys
b = open(sys.argv[1], 'rb').read(); print(json.loads(b[16:16 + struct.unpack('<Q', b[8:16])[0]])['payload_sha256'])" forged.kbd)
real=$(realpath forged.kbd)
read -r dev ino bytes mtime ctime <<< "$(stat -c '%d %i %s %.9Y %.9Z' forged.kbd)"
mkdir -p "$KINDBENCH_VERIFIED_DIR"
printf 'kindbench verification stamp v1\npath %s\ndevice %s\ninode %s\nsize %s\nmtime %s\nctime %s\npayload_sha256 %s\n' \
  "$real" "$dev" "$ino" "$bytes" "$mtime" "$ctime" "$sha" \
  > "$KINDBENCH_VERIFIED_DIR/$(printf 'kindbench-verified-v1\n%s' "$real" | sha256sum | cut -c1-64).stamp"
if "$KB" data grid forged.kbd -o forged.png > /dev/null 2> err.txt; then ok "data grid trusts a stamp of this file version"
else bad "data grid with a stamp" "$(cat err.txt)"; fi
"$KB" data info forged.kbd > /dev/null 2> err.txt; rc=$?
if [[ $rc -eq 1 ]] && grep -q "forged.kbd: corrupt cache: payload SHA-256" err.txt; then ok "data info hashes despite a stamp"
else bad "data info with a stamp" "exit $rc, $(cat err.txt)"; fi
KINDBENCH_VERIFY=always "$KB" data grid forged.kbd -o forged.png > /dev/null 2> err.txt; rc=$?
if [[ $rc -eq 1 ]] && grep -q "payload SHA-256" err.txt; then ok "KINDBENCH_VERIFY=always: data grid hashes despite a stamp"
else bad "KINDBENCH_VERIFY=always" "exit $rc, $(cat err.txt)"; fi
KINDBENCH_VERIFY=never "$KB" data grid d1.kbd -o forged.png > /dev/null 2> err.txt; rc=$?
if [[ $rc -eq 1 ]] && grep -q "^kindbench: error: \$KINDBENCH_VERIFY=never: expected 'always'" err.txt; then
  ok "KINDBENCH_VERIFY=never refused: $(cat err.txt)"
else bad "KINDBENCH_VERIFY=never" "exit $rc, $(cat err.txt)"; fi
# a stamp directory that cannot be made: the cache still opens, with nothing said
KINDBENCH_VERIFIED_DIR="$W/d1.kbd/verified" "$KB" data grid d1.kbd -o unstamped.png > out.txt 2> err.txt; rc=$?
if [[ $rc -eq 0 && ! -s err.txt ]]; then ok "unwritable stamp directory: data grid works, stderr clean"
else bad "unwritable stamp directory" "exit $rc, $(cat err.txt)"; fi

# every cache named is checked: a bad one first does not hide the good one after it
"$KB" data info trunc.kbd d1.kbd > info2.txt 2> err.txt; rc=$?
if [[ $rc -ne 0 ]] && grep -q "trunc.kbd: .*truncated cache" err.txt && grep -q "1 of 2 caches failed" err.txt &&
   grep -q "images:      4 (train 2, test 2)" info2.txt; then ok "data info goes on past a bad cache, exit $rc"
else bad "data info past a bad cache" "exit $rc, $(cat err.txt) / $(head -3 info2.txt)"; fi
# -o naming the cache itself (another spelling of it, too): the PNG replaced the cache
cp d1.kbd self.kbd
"$KB" data grid self.kbd -o ./self.kbd > /dev/null 2> err.txt; rc=$?
if [[ $rc -eq 1 ]] && grep -q "grid: -o ./self.kbd is the cache itself" err.txt && cmp -s d1.kbd self.kbd; then
  ok "data grid -o CACHE refused, cache kept: $(cat err.txt)"
else bad "data grid -o CACHE" "exit $rc, $(cat err.txt); cache $(cmp -s d1.kbd self.kbd && echo kept || echo replaced)"; fi
"$KB" data grid d1.kbd -o out_dir > /dev/null 2> err.txt; rc=$?
if [[ $rc -eq 1 ]] && grep -q "out_dir: is a directory" err.txt && [[ -e out_dir/keep ]]; then ok "data grid -o DIR: $(cat err.txt)"
else bad "data grid -o DIR" "exit $rc, $(cat err.txt)"; fi
"$KB" "${P[@]/out.kbd/train_only.kbd}" --input good > /dev/null 2>&1
"$KB" data grid train_only.kbd -o empty_grid.png --split test > /dev/null 2> err.txt; rc=$?
if [[ $rc -ne 0 ]] && grep -q "no images of split 'test'" err.txt && [[ ! -e empty_grid.png ]]; then
  ok "data grid of no images fails, writes nothing: $(cat err.txt)"
else bad "data grid of no images" "exit $rc, $(cat err.txt)"; fi
# one image at 2048 px needs 12 MiB, not a 256-image chunk (3.2 GB); the address space is capped at 1.5 GB
# (not under AddressSanitizer, whose shadow memory alone needs terabytes of address space)
mkdir -p one_img/c && cp "$FX"/a_rgb/tiny.png one_img/c/
if ldd "$KB" 2> /dev/null | grep -q libasan; then
  echo "skip one image at 2048 px within 1.5 GB of address space (AddressSanitizer build)"
elif (ulimit -v 1500000; "$KB" "${P[@]/out.kbd/big_res.kbd}" --input one_img --resolution 2048) > /dev/null 2> err.txt; then
  ok "one image at 2048 px within 1.5 GB of address space"
else bad "one image at 2048 px within 1.5 GB" "$(cat err.txt)"; fi

# what the command line alone gets wrong exits 2 (usage), before anything is read
for args in "--source bogus" "--source emoji --style foo" "--source folder" \
            "--source folder --input good --novel-classes novel.txt --novel-fraction 0.5"; do
  "$KB" data prepare $args --resolution 8 -o usage.kbd > /dev/null 2>&1; rc=$?
  if [[ $rc -eq 2 && ! -e usage.kbd ]]; then ok "data prepare $args: exit 2"; else bad "data prepare $args" "exit $rc"; fi
done
# the more specific fault first: an unknown --source is named even while --resolution and -o are missing too
"$KB" data prepare --source bogus > /dev/null 2> err.txt; rc=$?
if [[ $rc -eq 2 ]] && [[ $(grep -vc '^Try ' err.txt) -eq 1 ]] &&
   grep -q "^kindbench: error: unknown --source 'bogus' (known: fashion-mnist, emoji, pokemon, folder)$" err.txt; then
  ok "data prepare --source bogus without --resolution and -o: exit 2, $(head -1 err.txt)"
else bad "data prepare --source bogus without --resolution and -o" "exit $rc, $(cat err.txt)"; fi
"$KB" data prepare --resolution 8 > /dev/null 2> err.txt; rc=$?
if [[ $rc -eq 2 ]] && grep -q "prepare: --source, --resolution and -o are required" err.txt; then
  ok "data prepare without --source: exit 2, the required options named"
else bad "data prepare without --source" "exit $rc, $(cat err.txt)"; fi

# outputs get the umask's mode (atomic writes forced 0644), and a failed write to stdout is an error
(umask 077; "$KB" "${P[@]/out.kbd/private.kbd}" --input good) > /dev/null 2>&1
if [[ "$(stat -c %a private.kbd 2> /dev/null)" == 600 ]]; then ok "a cache written under umask 077 is mode 600"
else bad "cache mode under umask 077" "$(stat -c %a private.kbd 2>&1)"; fi
if [[ -w /dev/full ]]; then
  "$KB" data info d1.kbd > /dev/full 2> err.txt; rc=$?
  if [[ $rc -eq 1 ]] && grep -q "cannot write to standard output" err.txt; then ok "stdout on a full device: exit 1, said"
  else bad "stdout on a full device" "exit $rc, $(cat err.txt)"; fi
fi

for sub in prepare info grid; do
  if "$KB" data $sub --help | grep -q "^Usage: kindbench data $sub"; then ok "data $sub --help"; else bad "data $sub --help" "no usage"; fi
done

# ---- a prepare ended by SIGINT (Ctrl-C), SIGTERM or SIGHUP leaves no temp
# file (for ImageNet it held tens of GB) and dies of the signal. The input is
# 24 links to one 2400x2400 JPEG, so decoding outlasts the wait for the temp.
PY="${KB_PYTHON:-/usr/bin/python3}"
mkdir -p slow/a && "$PY" -c "
import numpy as np; from PIL import Image
Image.fromarray((np.random.default_rng(0).random((2400, 2400, 3)) * 255).astype(np.uint8)).save('slow/a/0.jpg')"
for i in $(seq 1 23); do ln -f slow/a/0.jpg "slow/a/$i.jpg"; done
for sig in INT TERM HUP; do
  rm -f sig.kbd sig.kbd.tmp.*
  # SIG_DFL first: a background job of a script starts with SIGINT ignored
  "$PY" -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])' \
    "$KB" data prepare --source folder --input slow --resolution 8 -o sig.kbd --quiet 2> sig.err &
  pid=$!
  for _ in $(seq 100); do compgen -G 'sig.kbd.tmp.*' > /dev/null && break; sleep 0.05; done
  kill -$sig $pid; wait $pid; rc=$?
  left=$(compgen -G 'sig.kbd*')
  if [[ $rc -eq $((128 + $(kill -l $sig))) && -z $left ]] && grep -q "kindbench: interrupted; files being written were removed" sig.err
  then ok "prepare killed by SIG$sig: no temp file left, said so"
  else bad "prepare killed by SIG$sig" "exit $rc, left: $left, stderr: $(cat sig.err)"; fi
done

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
