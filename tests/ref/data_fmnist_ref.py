"""Fixture for test_data_fmnist: the PIL reference (data_ref.prepare, one
channel) of a few Fashion-MNIST images at 32 px, read straight from Debian's
idx files. Writes $KB_FIXTURES/data_fmnist/{indices.txt,expected_32.bin}, or
only absent.txt when the dataset-fashion-mnist files are not installed (the C
test then reports a skip)."""
import gzip
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data_ref  # noqa: E402

SRC = "/usr/share/datasets/fashion-mnist"
INDICES = (0, 1, 12345, 59999, 60000, 69999)  # cache order: train then t10k
RES = 32


def main():
    out = os.path.join(os.environ.get("KB_FIXTURES", "."), "data_fmnist")
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        os.remove(os.path.join(out, f))
    files = [os.path.join(SRC, p + "-images-idx3-ubyte.gz") for p in ("train", "t10k")]
    if not all(os.path.isfile(f) for f in files):
        open(os.path.join(out, "absent.txt"), "w").write(f"{SRC} not installed\n")
        print("data_fmnist fixture: dataset-fashion-mnist not installed")
        return
    imgs = np.concatenate([np.frombuffer(gzip.open(f).read()[16:], np.uint8).reshape(-1, 28, 28, 1) for f in files])
    with open(os.path.join(out, "indices.txt"), "w") as idx, open(os.path.join(out, f"expected_{RES}.bin"), "wb") as b:
        for i in INDICES:
            idx.write(f"{i}\n")
            b.write(data_ref.prepare(imgs[i], RES, channels=1).tobytes())
    print(f"data_fmnist fixture: {len(INDICES)} reference images at {RES}px")


if __name__ == "__main__":
    main()
