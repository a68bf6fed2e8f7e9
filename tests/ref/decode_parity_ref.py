"""Corpus for test_decode_parity: image files of every kind the decoders meet, and what
pytorch-fid / torch-fidelity / clean-fid make of each: numpy.asarray(Image.open(p).convert('RGB')).

Usage: decode_parity_ref.py OUT_DIR. Writes
  OUT_DIR/images/<name>          the files (one folder: `kindbench eval`'s folder reader lists them)
  OUT_DIR/expected/<name>.rgb    PIL's convert('RGB') pixels, H x W x 3 bytes
  OUT_DIR/manifest.txt           one line per file: name width height pil_mode
Exits 77 (ctest's skip) when this Python lacks PIL or numpy.

PNGs are written by hand (png_write below) because PIL cannot write 2/4-bit grey, 16-bit colour,
Adam7 interlacing, gAMA or sBIT; JPEGs by PIL (libjpeg-turbo), with markers edited where PIL
offers no option (an Adobe-less CMYK, a YCCK transform flag).
"""
import io
import os
import struct
import sys
import warnings
import zlib

try:
    import numpy as np
    from PIL import Image
except ImportError as e:
    print(f"skipped: {sys.executable} lacks PIL/numpy ({e})")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import resize_ref  # noqa: E402  (its GIF writer: a frame placed on a larger or smaller screen)

rng = np.random.default_rng(20261202)

GREY, RGB, PALETTE, GREY_ALPHA, RGBA = 0, 2, 3, 4, 6
CHANNELS = {GREY: 1, RGB: 3, PALETTE: 1, GREY_ALPHA: 2, RGBA: 4}
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def samples(h, w, c, depth):
    """Gradients, edges and noise over the whole range of the depth; for 16 bits half the pixels are
    below 256, so that both 'clip at 255' and 'keep the high byte' show in the result."""
    top = (1 << depth) - 1
    y, x = np.mgrid[0:h, 0:w]
    chans = []
    for k in range(c):
        g = (x * 7 + y * 3 + 41 * k) % (top + 1) if top < 255 else rng.integers(0, top + 1, size=(h, w))
        g = np.where((x + 2 * y + k) % 5 == 0, top, g)
        if depth == 16:
            g = np.where((x + y) % 2 == 0, g % 256, g)
        chans.append(g)
    return np.stack(chans, axis=2).astype(np.int64)


def pack_row(row, depth):
    """One row of samples (w x c) as PNG bytes: big-endian 16-bit, or bits packed MSB first."""
    flat = row.reshape(-1)
    if depth == 16:
        return flat.astype(">u2").tobytes()
    if depth == 8:
        return flat.astype(np.uint8).tobytes()
    per = 8 // depth
    flat = np.concatenate([flat, np.zeros((-len(flat)) % per, np.int64)])
    groups = flat.reshape(-1, per)
    shifts = np.array([8 - depth * (i + 1) for i in range(per)])
    return (groups << shifts).sum(axis=1).astype(np.uint8).tobytes()


def scanlines(arr, depth, interlace):
    if not interlace:
        return b"".join(b"\0" + pack_row(arr[y], depth) for y in range(arr.shape[0]))
    out = b""
    for x0, y0, dx, dy in ADAM7:
        sub = arr[y0::dy, x0::dx]
        if sub.shape[0] and sub.shape[1]:
            out += b"".join(b"\0" + pack_row(sub[y], depth) for y in range(sub.shape[0]))
    return out


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_write(path, arr, depth, color_type, interlace=False, extra=()):
    """arr: h x w x channels samples. extra: (kind, data) chunks placed before IDAT."""
    h, w = arr.shape[:2]
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 1 if interlace else 0)
    body = chunk(b"IHDR", ihdr) + b"".join(chunk(k, d) for k, d in extra)
    body += chunk(b"IDAT", zlib.compress(scanlines(arr, depth, interlace))) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + body)


def palette_size(depth):
    """2**depth colours, one fewer at 8 bits (a short palette is legal)."""
    return (1 << depth) - (1 if depth == 8 else 0)


def palette_chunks(depth, alphas):
    """A random palette and, when alphas > 0, a tRNS of that many entries (when fewer than the
    palette's, the rest are opaque)."""
    n = palette_size(depth)
    out = [(b"PLTE", rng.integers(0, 256, size=(n, 3)).astype(np.uint8).tobytes())]
    if alphas:
        out.append((b"tRNS", rng.integers(0, 256, size=alphas).astype(np.uint8).tobytes()))
    return out, n


def png_corpus(out):
    H, W = 13, 11  # odd sizes: partial bytes at 1/2/4 bits, partial Adam7 blocks
    for depth in (1, 2, 4, 8, 16):
        png_write(f"{out}/grey{depth}.png", samples(H, W, 1, depth), depth, GREY)
    for ct, name in ((GREY_ALPHA, "ga"), (RGB, "rgb"), (RGBA, "rgba")):
        for depth in (8, 16):
            png_write(f"{out}/{name}{depth}.png", samples(H, W, CHANNELS[ct], depth), depth, ct)
    for depth in (1, 2, 4, 8):
        for alphas in (0, (palette_size(depth) + 1) // 2, palette_size(depth)):
            chunks, n = palette_chunks(depth, alphas)
            idx = samples(H, W, 1, depth) % n
            png_write(f"{out}/pal{depth}_trns{alphas}.png", idx, depth, PALETTE, extra=chunks)
    # tRNS colour keys, each equal to some pixels (at 16 bits Pillow keeps the key apart from its 8-bit pixels)
    for depth in (2, 8, 16):
        arr = samples(H, W, 1, depth)
        png_write(f"{out}/grey{depth}_trns.png", arr, depth, GREY, extra=[(b"tRNS", struct.pack(">H", arr[0, 1, 0]))])
    for depth in (8, 16):
        arr = samples(H, W, 3, depth)
        key = struct.pack(">HHH", *(int(v) for v in arr[2, 3]))
        png_write(f"{out}/rgb{depth}_trns.png", arr, depth, RGB, extra=[(b"tRNS", key)])
    # Adam7
    png_write(f"{out}/adam7_rgb8.png", samples(H, W, 3, 8), 8, RGB, interlace=True)
    png_write(f"{out}/adam7_grey4.png", samples(H, W, 1, 4), 4, GREY, interlace=True)
    png_write(f"{out}/adam7_grey16.png", samples(H, W, 1, 16), 16, GREY, interlace=True)
    png_write(f"{out}/adam7_rgba16.png", samples(H, W, 4, 16), 16, RGBA, interlace=True)
    chunks, n = palette_chunks(2, 2)
    png_write(f"{out}/adam7_pal2_trns.png", samples(H, W, 1, 2) % n, 2, PALETTE, interlace=True, extra=chunks)
    # gAMA (0.2: far from sRGB's 0.45455) and sBIT: libpng would apply neither unless asked, Pillow ignores both
    png_write(f"{out}/gama_rgb8.png", samples(H, W, 3, 8), 8, RGB, extra=[(b"gAMA", struct.pack(">I", 20000))])
    png_write(f"{out}/sbit_rgb8.png", samples(H, W, 3, 8), 8, RGB, extra=[(b"sBIT", bytes([5, 6, 5]))])
    png_write(f"{out}/sbit_grey16.png", samples(H, W, 1, 16), 16, GREY, extra=[(b"sBIT", bytes([12]))])
    # indices past a short palette (against the spec, but such files exist): Pillow shows them as grey
    for depth, colours in ((8, 4), (2, 2)):
        chunks = [(b"PLTE", rng.integers(0, 256, size=3 * colours).astype(np.uint8).tobytes())]
        png_write(f"{out}/pal{depth}_short.png", samples(H, W, 1, depth), depth, PALETTE, extra=chunks)
    # 1x1
    png_write(f"{out}/one_rgb8.png", samples(1, 1, 3, 8), 8, RGB)
    png_write(f"{out}/one_grey16.png", np.full((1, 1, 1), 300), 16, GREY)
    chunks, _ = palette_chunks(1, 2)
    png_write(f"{out}/one_pal1.png", np.ones((1, 1, 1), np.int64), 1, PALETTE, extra=chunks)


def photo(h, w, c=3):
    """Smooth colour with edges and noise: chroma subsampling and the IDCT both show."""
    y, x = np.mgrid[0:h, 0:w]
    chans = [127 + 100 * np.sin(x / (3.0 + k) + y / (5.0 + 2 * k)) + rng.integers(-25, 26, size=(h, w))
             for k in range(c)]
    arr = np.clip(np.stack(chans, axis=2), 0, 255).astype(np.uint8)
    return arr[:, :, 0] if c == 1 else arr


def without_adobe_marker(data):
    """The JPEG with its APP14 'Adobe' segment removed (libjpeg then takes 4 components for plain CMYK)."""
    i = data.find(b"\xff\xee")
    assert i > 0 and data[i + 4:i + 9] == b"Adobe", "PIL wrote no Adobe marker for CMYK"
    n = struct.unpack(">H", data[i + 2:i + 4])[0]
    return data[:i] + data[i + 2 + n:]


def with_adobe_transform(data, transform):
    """The JPEG with its Adobe marker's colour transform flag set (2: YCCK, 0: none)."""
    i = data.find(b"\xff\xee")  # FF EE, length (2), "Adobe", version (2), flags0 (2), flags1 (2), transform
    assert i > 0 and data[i + 4:i + 9] == b"Adobe", "PIL wrote no Adobe marker for CMYK"
    return data[:i + 15] + bytes([transform]) + data[i + 16:]


def with_damaged_scan(data):
    """The JPEG with 5 bytes in the middle of its scan changed (never into 0xFF: no marker is made)."""
    b = bytearray(data)
    mid = (data.find(b"\xff\xda") + len(b)) // 2
    for k in range(mid, mid + 5):
        if b[k] != 0xFF and b[k] ^ 0x5A != 0xFF:
            b[k] ^= 0x5A
    return bytes(b)


def jpeg_corpus(out):
    H, W = 37, 29  # not multiples of 8 or 16: edge blocks, odd chroma columns
    rgb = photo(H, W)
    Image.fromarray(rgb).save(f"{out}/q75.jpg", quality=75)
    Image.fromarray(rgb).save(f"{out}/q95.jpg", quality=95)
    for ss, name in ((0, "444"), (1, "422"), (2, "420")):
        Image.fromarray(rgb).save(f"{out}/sub{name}.jpg", quality=90, subsampling=ss)
    Image.fromarray(rgb).save(f"{out}/progressive.jpg", quality=85, progressive=True)
    Image.fromarray(photo(H, W, 1)).save(f"{out}/grey.jpg", quality=85)
    Image.fromarray(photo(1, 1)).save(f"{out}/one_rgb.jpg", quality=90)
    Image.fromarray(photo(1, 1, 1)).save(f"{out}/one_grey.jpg", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display; Image.open does not apply it
    Image.fromarray(photo(H, W)).save(f"{out}/exif_rot6.jpg", quality=90, exif=exif.tobytes())
    cmyk = io.BytesIO()
    Image.fromarray(photo(H, W, 4), "CMYK").save(cmyk, "JPEG", quality=90)  # Adobe marker, inverted values
    data = cmyk.getvalue()
    open(f"{out}/cmyk_adobe.jpg", "wb").write(data)
    open(f"{out}/cmyk_plain.jpg", "wb").write(without_adobe_marker(data))
    open(f"{out}/cmyk_ycck_flag.jpg", "wb").write(with_adobe_transform(data, 2))
    # larger, for libjpeg-turbo's SIMD paths: 4:2:0 progressive, and one whose entropy-coded data is damaged
    # mid-scan (libjpeg decodes on, half the pixels changed; Pillow reads it, so kindbench must too, the same)
    big = io.BytesIO()
    Image.fromarray(photo(120, 160)).save(big, "JPEG", quality=90, progressive=True)
    open(f"{out}/big_progressive.jpg", "wb").write(big.getvalue())
    big = io.BytesIO()
    Image.fromarray(photo(120, 160)).save(big, "JPEG", quality=90)
    open(f"{out}/corrupt_entropy.jpg", "wb").write(with_damaged_scan(big.getvalue()))
    # lying extensions: the content decides, in Pillow and in kindbench
    Image.fromarray(photo(H, W)).save(f"{out}/png_named.jpg", format="PNG")
    Image.fromarray(photo(H, W)).save(f"{out}/jpeg_named.png", format="JPEG", quality=80)
    Image.fromarray(photo(H, W)).save(f"{out}/upper.JPEG", quality=80)


def gif_corpus(out):
    idx = (samples(13, 11, 1, 4)[:, :, 0] % 16).astype(np.uint8)
    im = Image.fromarray(idx, "P")
    im.putpalette(rng.integers(0, 256, size=48).astype(np.uint8).tobytes())
    im.save(f"{out}/trns.gif", transparency=3)
    # frames that leave part of the logical screen uncovered (filled with index 0, or the transparent index,
    # whose palette colour is what convert('RGB') shows) or reach past it (the canvas widens)
    resize_ref.gif_placed(f"{out}/gif_partial.gif", 15, 20, (40, 30), (5, 7))
    resize_ref.gif_placed(f"{out}/gif_partial_trns.gif", 15, 20, (30, 24), (3, 4), transparency=5)
    resize_ref.gif_placed(f"{out}/gif_overflow.gif", 20, 20, (20, 20), (5, 5))
    # animations: Image.open gives the first frame, and so does kindbench (a PNG's later APNG frames are
    # chunks libpng skips)
    frames = [Image.fromarray(photo(13, 11)) for _ in range(3)]
    frames[0].save(f"{out}/anim.png", save_all=True, append_images=frames[1:], duration=40)
    frames[0].save(f"{out}/anim.gif", save_all=True, append_images=frames[1:], duration=40)


def main():
    out = sys.argv[1]
    warnings.simplefilter("ignore")  # Pillow's advice to convert palette images with tRNS to RGBA
    images, expected = f"{out}/images", f"{out}/expected"
    os.makedirs(images, exist_ok=True)
    os.makedirs(expected, exist_ok=True)
    png_corpus(images)
    jpeg_corpus(images)
    gif_corpus(images)
    with open(f"{out}/manifest.txt", "w") as manifest:
        for name in sorted(os.listdir(images)):
            im = Image.open(f"{images}/{name}")
            mode = im.mode
            rgb = np.asarray(im.convert("RGB"))
            assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
            open(f"{expected}/{name}.rgb", "wb").write(rgb.tobytes())
            manifest.write(f"{name} {rgb.shape[1]} {rgb.shape[0]} {mode}\n")


if __name__ == "__main__":
    main()
