"""Reference implementation of kindbench's dataset image recipe with PIL and
numpy: what `kindbench data prepare` must produce, pixel for pixel.

The resize is ADM's center_crop_arr verbatim (guided-diffusion
image_datasets.py, also used by DiT). Before it, the steps kindbench adds are
defined here explicitly rather than left to PIL defaults:
  - alpha is composited onto the background with the integer formula
    out = (c*a + bg*(255-a) + 127) // 255 (ADM's .convert("RGB") would just
    drop alpha, exposing whatever colour transparent pixels happen to hold);
  - grey is replicated to RGB (what .convert("RGB") does) unless the cache
    keeps one channel (Fashion-MNIST);
  - 16-bit grey PNGs keep the high byte (PIL's convert() would clip them);
  - optional padding to a square, image centred, odd pixel right/bottom.
"""
import numpy as np
from PIL import Image


def center_crop_arr(pil_image, image_size):
    # ADM / DiT, verbatim.
    while min(*pil_image.size) >= 2 * image_size:
        pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
    scale = image_size / min(*pil_image.size)
    pil_image = pil_image.resize(tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC)
    arr = np.array(pil_image)
    crop_y = (arr.shape[0] - image_size) // 2
    crop_x = (arr.shape[1] - image_size) // 2
    return arr[crop_y:crop_y + image_size, crop_x:crop_x + image_size]


def decode(path):
    """The file as an HxWxC uint8 array, C in 1 (L), 2 (LA), 3 (RGB), 4 (RGBA)."""
    im = Image.open(path)
    im.seek(0)  # first frame of a GIF
    mode = im.mode
    if mode in ("I", "I;16", "I;16B", "I;16L"):
        return (np.array(im).astype(np.uint32) >> 8).astype(np.uint8)[:, :, None]
    if mode == "1":
        im = im.convert("L")
    elif mode in ("P", "PA") or "transparency" in im.info:
        im = im.convert("RGBA")
    elif mode == "CMYK":
        im = im.convert("RGB")
    arr = np.array(im)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr


def flatten(arr, channels, bg):
    """Alpha composited onto bg (RGB tuple), grey replicated unless channels == 1."""
    c = arr.shape[2]
    if c == channels:
        return arr
    assert channels == 3, "only colourless images can stay grey"
    a = arr.astype(np.int32)
    if c in (2, 4):
        col, alpha = a[:, :, :c - 1], a[:, :, c - 1:]
        if c == 2:
            col = np.repeat(col, 3, axis=2)
        bgv = np.array(bg, np.int32)[None, None, :]
        return ((col * alpha + bgv * (255 - alpha) + 127) // 255).astype(np.uint8)
    return np.repeat(arr, 3, axis=2)


def pad_square(arr, bg):
    h, w, c = arr.shape
    side = max(h, w)
    out = np.empty((side, side, c), np.uint8)
    out[:, :] = np.array(bg[:c], np.uint8)
    y0, x0 = (side - h) // 2, (side - w) // 2
    out[y0:y0 + h, x0:x0 + w] = arr
    return out


def prepare(path_or_array, resolution, channels=3, bg=(255, 255, 255), pad=False):
    arr = decode(path_or_array) if isinstance(path_or_array, str) else path_or_array
    arr = flatten(arr, channels, bg)
    if pad:
        arr = pad_square(arr, bg)
    img = Image.fromarray(arr[:, :, 0] if channels == 1 else arr)
    out = center_crop_arr(img, resolution)
    return out.reshape(resolution, resolution, channels)


def read_kbd(path):
    """(meta, labels, split, images) of a kindbench cache, without checks."""
    import json
    import struct
    data = open(path, "rb").read()
    assert data[:8] == b"KBDSET01"
    (n,) = struct.unpack("<Q", data[8:16])
    meta = json.loads(data[16:16 + n])
    start = (16 + n + 63) // 64 * 64
    count, res, ch = meta["count"], meta["resolution"], meta["channels"]
    labels = np.frombuffer(data, "<i4", count, start)
    split = np.frombuffer(data, np.uint8, count, start + 4 * count)
    img_off = start + (5 * count + 63) // 64 * 64
    images = np.frombuffer(data, np.uint8, count * res * res * ch, img_off).reshape(count, res, res, ch)
    return meta, labels, split, images
