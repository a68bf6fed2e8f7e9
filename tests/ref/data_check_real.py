"""Manual check of caches built from the real sources against the PIL
reference (not part of ctest: the sources are fetched, not shipped).

  /usr/bin/python3 tests/ref/data_check_real.py emoji CACHE PACKAGE_DIR STYLE
  /usr/bin/python3 tests/ref/data_check_real.py pokemon CACHE PACKAGE_DIR
  /usr/bin/python3 tests/ref/data_check_real.py fashion-mnist CACHE [IDX_DIR]

Lists the items independently of the C code, recomputes every image with
data_ref.prepare and reports mismatching pixels and the largest difference."""
import gzip
import json
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data_ref  # noqa: E402


def emoji_items(pkg, style):
    entries = json.load(open(os.path.join(pkg, "emoji.json")))
    keep = [e for e in entries if e["category"] != "Component" and e.get("has_img_" + style)]
    return [os.path.join(pkg, "img", style, "64", e["image"]) for e in keep]


def pokemon_items(pkg, variants=("",)):
    base = os.path.join(pkg, "sprites/pokemon/versions/generation-v/black-white/animated")
    out = []
    for v in variants:
        d = os.path.join(base, v)
        names = [n for n in os.listdir(d) if re.match(r"^[1-9].*\.gif$", n) and os.path.isfile(os.path.join(d, n))]
        names.sort(key=lambda n: (int(re.match(r"\d+", n).group()), n.encode()))
        out += [os.path.join(d, n) for n in names]
    return out


def compare(images, refs):
    assert len(images) == len(refs), (len(images), len(refs))
    bad = 0
    worst = 0
    for got, want in zip(images, refs):
        d = np.abs(got.astype(int) - want.astype(int))
        bad += int((d > 0).sum())
        worst = max(worst, int(d.max()))
    print(f"{len(images)} images compared: {bad} pixel values differ, max difference {worst}")
    return bad == 0


def main():
    kind, cache = sys.argv[1], sys.argv[2]
    meta, labels, split, images = data_ref.read_kbd(cache)
    res = meta["resolution"]
    bg = tuple(meta["background"])
    pad = meta["resize"]["pad_to_square"]
    if kind == "emoji":
        paths = emoji_items(sys.argv[3], sys.argv[4])
    elif kind == "pokemon":
        variants = ("", "back", "shiny", "back/shiny") if meta["source"]["label"] == "variant" else ("",)
        paths = pokemon_items(sys.argv[3], variants)
    else:
        d = sys.argv[3] if len(sys.argv) > 3 else "/usr/share/datasets/fashion-mnist"
        arrs = []
        for p in ("train", "t10k"):
            raw = gzip.open(os.path.join(d, p + "-images-idx3-ubyte.gz")).read()[16:]
            arrs.append(np.frombuffer(raw, np.uint8).reshape(-1, 28, 28, 1))
        allimgs = np.concatenate(arrs)
        idx = range(0, len(allimgs), 97)
        refs = [data_ref.prepare(allimgs[i], res, channels=1) for i in idx]
        return 0 if compare([images[i] for i in idx], refs) else 1
    refs = [data_ref.prepare(p, res, channels=3, bg=bg, pad=pad) for p in paths]
    return 0 if compare(list(images), refs) else 1


if __name__ == "__main__":
    sys.exit(main())
