#!/usr/bin/env python3
"""The PyTorch side of bench/bench_inception.sh: the FID Inception of
tests/ref/inception_ref.py (torchvision's Inception-v3 with pytorch-fid's
patches), eager mode, no_grad, float32, on N random uint8 images of S x S
(fixed seed): uint8 -> float, F.interpolate to 299 (pytorch-fid's resize),
2x - 1, forward to pool3, the Mixed_6d spatial features and the unbiased
logits, in batches of --batch, timed on a second pass over the images (the
first, untimed, has met the full and the tail batch shapes, as kindbench's
side warms up). Prints images_per_sec=<x>.

--device cuda runs it on the GPU as pytorch-fid does there, end to end from
the uint8 images in memory: each batch goes to the GPU, the features come
back to the host. --precision: torch-default (what pytorch-fid gets: cuDNN
convolutions may use TF32, matmuls not), fp32 (TF32 off) or tf32 (both on).

--write-weights PATH instead writes a random-weight state dict of that network
in torch.save's legacy format (as the real weights file) and exits."""
import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "ref"))
import inception_ref as ir  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=50)  # pytorch-fid's default
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--precision", default="torch-default", choices=["torch-default", "fp32", "tf32"])
    ap.add_argument("--write-weights")
    a = ap.parse_args()
    torch.manual_seed(0)
    net = ir.fid_inception().eval()
    if a.write_weights:
        torch.save(net.state_dict(), a.write_weights, _use_new_zipfile_serialization=False)
        return
    threads = a.threads or os.cpu_count()
    torch.set_num_threads(threads)
    dev = torch.device(a.device)
    net.to(dev)
    if a.precision != "torch-default":
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32"
    imgs = np.random.RandomState(0).randint(0, 256, size=(a.n, a.size, a.size, 3), dtype=np.uint8)

    def run(batch):
        x = torch.from_numpy(batch).to(dev).permute(0, 3, 1, 2).float() / 255
        x = 2 * F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) - 1
        return ir.features(net, x)

    def run_all():
        for i in range(0, a.n, a.batch):
            run(imgs[i:i + a.batch])

    run_all()  # warm-up
    t0 = time.perf_counter()
    run_all()
    dt = time.perf_counter() - t0
    where = torch.cuda.get_device_name() + ", " + a.precision if a.device == "cuda" else "%d threads" % threads
    print("pytorch %s: %d images %dx%d, batch %d, %s: %.2f s" % (torch.__version__, a.n, a.size, a.size, a.batch,
                                                                where, dt))
    print("images_per_sec=%.4f" % (a.n / dt))


if __name__ == "__main__":
    main()
