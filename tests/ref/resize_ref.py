"""Fixture for test_data_resize_pil: PIL's own outputs that kindbench's C
resampler and `data prepare --source folder` must reproduce.

Writes into $KB_FIXTURES/data_resize/:
  resample_cases.txt / .bin   direct Image.resize() cases (L and RGB, BOX and
                              BICUBIC, up, down, one axis only, identity):
                              one line "in_w in_h ch out_w out_h filter" per
                              case; the .bin holds each input then PIL's output
  folder/<class>/<file>       an ImageFolder with varied files: sizes that
                              trigger the BOX halving loop, upsampling, odd and
                              non-square sizes, grey, 16-bit grey, 1-bit,
                              RGBA, LA, palette with and without tRNS, a
                              palette shorter than its indices, 16-bit
                              RGB with a tRNS key, GIFs whose frame does not
                              cover or overflows the screen, JPEG
                              (RGB, grey, CMYK), an upper-case extension, and
                              a text file that must be ignored
  manifest.txt                one line per image in cache order: key, allowed
                              difference (0 for lossless files, 1 for JPEG)
  expected_<res>.bin          data_ref.prepare() of every image, in cache order
"""
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data_ref  # noqa: E402

RESOLUTIONS = (32, 20, 7)
rng = np.random.default_rng(20240611)


def pattern(h, w, c):
    """Smooth gradients, hard edges (bicubic overshoot and clipping) and noise."""
    y, x = np.mgrid[0:h, 0:w]
    chans = []
    for k in range(c):
        g = 127 + 100 * np.sin(x / (3.0 + k) + y / (5.0 + 2 * k))
        g = np.where((x // 7 + y // 5 + k) % 3 == 0, 255, g)
        g = np.where((x * 3 + y * 2 + 11 * k) % 17 == 0, 0, g)
        g = g + rng.integers(-20, 21, size=(h, w))
        chans.append(np.clip(g, 0, 255))
    return np.stack(chans, axis=2).astype(np.uint8)


def resample_cases(out_dir):
    cases = [  # in_w, in_h, ch, out_w, out_h, filter
        (37, 23, 3, 64, 11, "bicubic"), (100, 100, 1, 13, 17, "box"), (5, 5, 3, 40, 3, "bicubic"),
        (200, 3, 1, 7, 3, "bicubic"), (3, 200, 3, 3, 9, "box"), (64, 64, 3, 64, 64, "bicubic"),
        (301, 157, 3, 150, 78, "box"), (150, 78, 3, 61, 32, "bicubic"), (9, 640, 1, 33, 31, "bicubic"),
        (1, 1, 3, 5, 4, "bicubic"), (48, 48, 1, 17, 17, "bicubic"),
    ]
    filters = {"box": Image.BOX, "bicubic": Image.BICUBIC}
    with open(os.path.join(out_dir, "resample_cases.txt"), "w") as txt, \
            open(os.path.join(out_dir, "resample_cases.bin"), "wb") as blob:
        for iw, ih, ch, ow, oh, f in cases:
            arr = pattern(ih, iw, ch)
            im = Image.fromarray(arr[:, :, 0] if ch == 1 else arr)
            out = np.array(im.resize((ow, oh), resample=filters[f])).reshape(oh, ow, ch)
            txt.write(f"{iw} {ih} {ch} {ow} {oh} {f}\n")
            blob.write(arr.tobytes())
            blob.write(out.tobytes())


def save_png16_grey(path, h, w):
    arr = (pattern(h, w, 1)[:, :, 0].astype(np.uint16) * 257 + rng.integers(0, 256, size=(h, w))).astype(np.uint16)
    Image.fromarray(arr, mode="I;16").save(path)


def chunk(kind, data):
    """A PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png16_rgb_key(path, h, w, key):
    """A 16-bit RGB PNG with a tRNS colour key (PIL cannot write one): Pillow keeps the key in 16 bits beside
    8-bit pixels, so it never applies (key values > 255 here); every third pixel of the pattern equals it."""
    arr = (pattern(h, w, 3).astype(np.uint16) * 257).astype(">u2")
    arr[::3, ::3] = key
    raw = b"".join(b"\0" + arr[y].tobytes() for y in range(h))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)) +
                chunk(b"tRNS", struct.pack(">HHH", *key)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def png_short_palette(path, h, w, colours):
    """An 8-bit palette PNG whose indices (the grey pattern) reach past its PLTE of `colours` entries: against
    the spec, but such files exist; Pillow shows index i past the palette as grey (i, i, i)."""
    raw = b"".join(b"\0" + pattern(h, w, 1)[y, :, 0].tobytes() for y in range(h))
    plte = rng.integers(0, 256, size=3 * colours).astype(np.uint8).tobytes()
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0)) +
                chunk(b"PLTE", plte) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def gif_placed(path, h, w, screen, at, transparency=None):
    """A one-frame GIF of h x w whose frame sits at `at` on a logical screen `screen` (w, h): PIL writes the
    frame at (0, 0) on a screen of its own size, then both are patched in the file."""
    im = Image.fromarray((pattern(h, w, 1)[:, :, 0] // 8).astype(np.uint8), "P")
    im.putpalette([int(v) for v in rng.integers(0, 256, size=96)])
    im.save(path, format="GIF", **({} if transparency is None else {"transparency": transparency}))
    b = bytearray(open(path, "rb").read())
    b[6:10] = struct.pack("<HH", *screen)
    i = 13 + ((3 << ((b[10] & 7) + 1)) if b[10] & 0x80 else 0)
    while b[i] == 0x21:  # extensions: introducer, label, data sub-blocks, terminator
        i += 2
        while b[i]:
            i += b[i] + 1
        i += 1
    assert b[i] == 0x2C, "image descriptor not found"
    b[i + 1:i + 5] = struct.pack("<HH", *at)
    open(path, "wb").write(b)


def alpha_pattern(h, w):
    y, x = np.mgrid[0:h, 0:w]
    a = np.clip((x * 255) // max(w - 1, 1) + np.where((y // 6) % 2 == 0, 0, -120), 0, 255)
    a[:, : w // 5] = 0  # fully transparent strip (colour underneath must not leak)
    return a.astype(np.uint8)


def make_folder(root):
    """Each entry: relative path -> writer. Returns the keys with their tolerance."""
    def rgb(name, w, h, **kw):
        Image.fromarray(pattern(h, w, 3)).save(os.path.join(root, name), **kw)

    os.makedirs(os.path.join(root, "a_rgb"))
    os.makedirs(os.path.join(root, "b_grey"))
    os.makedirs(os.path.join(root, "c_alpha"))
    os.makedirs(os.path.join(root, "d_jpeg"))
    rgb("a_rgb/big.png", 300, 200)        # BOX halving twice at 32
    rgb("a_rgb/wide.png", 640, 97)        # very non-square
    rgb("a_rgb/tiny.png", 17, 23)         # upsampling
    rgb("a_rgb/odd.png", 33, 33)          # odd square
    rgb("a_rgb/exact.png", 64, 64)        # halving lands exactly on 32
    rgb("a_rgb/tall.PNG", 41, 130)        # upper-case extension
    rgb("a_rgb/thin.png", 1, 2100)        # at 32 px the bicubic intermediate is 32x67200: a side past 65535
    open(os.path.join(root, "a_rgb", "notes.txt"), "w").write("not an image\n")
    Image.fromarray(pattern(70, 50, 1)[:, :, 0]).save(os.path.join(root, "b_grey/grey.png"))
    save_png16_grey(os.path.join(root, "b_grey/grey16.png"), 61, 45)
    Image.fromarray(pattern(30, 40, 1)[:, :, 0] > 128).save(os.path.join(root, "b_grey/mono.png"))
    rgba = np.concatenate([pattern(40, 45, 3), alpha_pattern(40, 45)[:, :, None]], axis=2)
    Image.fromarray(rgba, "RGBA").save(os.path.join(root, "c_alpha/rgba.png"))
    la = np.concatenate([pattern(52, 37, 1), alpha_pattern(52, 37)[:, :, None]], axis=2)
    Image.fromarray(la, "LA").save(os.path.join(root, "c_alpha/la.png"))
    pal = Image.fromarray(pattern(60, 80, 3)).quantize(colors=50)
    pal.save(os.path.join(root, "c_alpha/palette_trns.png"), transparency=bytes([0, 128, 255] + [255] * 47))
    small = Image.fromarray(pattern(29, 31, 3)).quantize(colors=12)  # 4-bit palette, no tRNS
    small.save(os.path.join(root, "c_alpha/palette4.png"))
    png16_rgb_key(os.path.join(root, "c_alpha/rgb16_key.png"), 33, 27, (0x1234, 0x5678, 0x9ABC))
    png_short_palette(os.path.join(root, "c_alpha/palette_short.png"), 37, 43, 6)
    # GIF first frames as Pillow paints them: uncovered pixels are palette colour 0 (opaque) without a
    # transparent index and transparent with one; a frame reaching past the screen widens the canvas. The
    # folder source takes .png/.jpg/.jpeg names (as torchvision's ImageFolder takes no .gif) and decodes by
    # content, as Pillow does, so these GIFs carry .png names
    gif_placed(os.path.join(root, "c_alpha/gif_partial.png"), 15, 20, (40, 30), (5, 7))
    gif_placed(os.path.join(root, "c_alpha/gif_overflow.png"), 20, 20, (20, 20), (5, 5))
    gif_placed(os.path.join(root, "c_alpha/gif_trns.png"), 15, 20, (30, 24), (3, 4), transparency=5)
    rgb("d_jpeg/photo.jpg", 129, 101, quality=90)
    Image.fromarray(pattern(65, 77, 1)[:, :, 0]).save(os.path.join(root, "d_jpeg/grey.jpg"), quality=85)
    Image.fromarray(pattern(40, 50, 3)).convert("CMYK").save(os.path.join(root, "d_jpeg/cmyk.jpg"), quality=92)
    rgb("d_jpeg/upper.JPEG", 70, 90, quality=75, subsampling=2)


def main():
    out_dir = os.path.join(os.environ.get("KB_FIXTURES", "."), "data_resize")
    if os.path.isdir(out_dir):
        import shutil
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    resample_cases(out_dir)
    root = os.path.join(out_dir, "folder")
    make_folder(root)
    keys = []
    for cls in sorted(os.listdir(root)):
        for name in sorted(os.listdir(os.path.join(root, cls))):
            if os.path.splitext(name)[1].lower() in (".png", ".jpg", ".jpeg"):
                keys.append(f"{cls}/{name}")
    with open(os.path.join(out_dir, "manifest.txt"), "w") as m:
        for k in keys:
            m.write(f"{k} {1 if k.lower().endswith(('.jpg', '.jpeg')) else 0}\n")
    for res in RESOLUTIONS:
        with open(os.path.join(out_dir, f"expected_{res}.bin"), "wb") as f:
            for k in keys:
                f.write(data_ref.prepare(os.path.join(root, k), res).tobytes())
    print(f"data_resize fixture: {len(keys)} images, resolutions {RESOLUTIONS}")


if __name__ == "__main__":
    main()
