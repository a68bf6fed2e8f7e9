#!/usr/bin/env python3
"""A tiny safetensors reader/writer in plain Python + numpy (Debian has no
python3-safetensors), written from the format description: 8-byte
little-endian header length, JSON header {name: {dtype, shape, data_offsets}},
optional "__metadata__" string map, then the raw little-endian data.

bfloat16 has no numpy dtype: pass ("BF16", uint16_bits_array) to save().

Command line (used by the ctest fixtures and tests/test_safetensors.c):
  st.py write-sample PATH   writes a file with every supported dtype
  st.py check-sample PATH   reads such a file (e.g. written by the C side)
                            and exits non-zero on any difference
"""
import json
import os
import struct
import sys

import numpy as np

_NP = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I32": "<i4", "I64": "<i8", "U8": "u1", "BF16": "<u2"}
_FROM_NP = {np.dtype("float32"): "F32", np.dtype("float64"): "F64", np.dtype("float16"): "F16",
            np.dtype("int32"): "I32", np.dtype("int64"): "I64", np.dtype("uint8"): "U8"}


def save(path, tensors, metadata=None):
    """tensors: dict name -> numpy array, or (dtype_name, array) for BF16 bits."""
    header, blobs, at = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, val in tensors.items():
        if isinstance(val, tuple):
            dt, arr = val
        else:
            arr = np.asarray(val)
            dt = _FROM_NP[arr.dtype]
        arr = np.asarray(arr, dtype=_NP[dt])  # (not ascontiguousarray: it turns scalars into shape [1])
        b = arr.tobytes(order="C")
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load(path):
    """Returns (dict name -> (dtype_name, numpy array), metadata dict)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    assert 8 + n <= len(data), f"{path}: header length {n} beyond the file"
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    body = data[8 + n:]
    out, spans = {}, []
    for name, e in header.items():
        b, end = e["data_offsets"]
        spans.append((b, end, name))
        arr = np.frombuffer(body[b:end], dtype=_NP[e["dtype"]]).reshape(e["shape"])
        out[name] = (e["dtype"], arr)
    at = 0
    for b, end, name in sorted(spans):
        assert b == at, f"{path}: tensor {name} starts at {b}, expected {at}"
        at = end
    assert at == len(body), f"{path}: tensors cover {at} of {len(body)} data bytes"
    return out, meta


def sample():
    """The sample tensors both sides write and check (deterministic)."""
    f32 = (np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 7.5) / 3.0
    return {
        "f32": f32,
        "f64": np.array([[1.0 / 3.0, -2.5e300], [5e-324, np.pi]], dtype=np.float64),
        "f16": np.array([0.0, -1.5, 65504.0, 6e-8, np.inf, 1.0 / 3.0], dtype=np.float16),
        "bf16": ("BF16", np.array([0x3F80, 0xC040, 0x7F80, 0x0001, 0x8000], dtype=np.uint16)),
        "i32": np.array([-2147483648, -1, 0, 2147483647], dtype=np.int32),
        "i64": np.array([[-(2 ** 63), 2 ** 62 + 12345]], dtype=np.int64),
        "u8": np.arange(0, 256, 37, dtype=np.uint8),
        "scalar": np.array(2.75, dtype=np.float32),
        "empty": np.zeros((3, 0), dtype=np.float32),
    }, {"format": "kindbench-sample", "config": json.dumps({"depth": 12, "name": "DiT-S/2"})}


def check_sample(path):
    got, meta = load(path)
    want, want_meta = sample()
    ok = True
    for name, val in want.items():
        dt, arr = val if isinstance(val, tuple) else (_FROM_NP[np.asarray(val).dtype], np.asarray(val))
        if name not in got:
            print(f"missing tensor {name}")
            ok = False
            continue
        gdt, garr = got[name]
        if gdt != dt or garr.shape != arr.shape or garr.tobytes() != np.asarray(arr, _NP[dt]).tobytes():
            print(f"tensor {name} differs: {gdt} {garr.shape} vs {dt} {arr.shape}")
            ok = False
    for k, v in want_meta.items():
        if meta.get(k) != v:
            print(f"metadata {k} differs: {meta.get(k)!r} vs {v!r}")
            ok = False
    return ok


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "write-sample":
        tensors, meta = sample()
        save(sys.argv[2], tensors, meta)
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "check-sample":
        return 0 if check_sample(sys.argv[2]) else 1
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
