#!/usr/bin/env python3
"""PyTorch's side of bench/bench_attn.sh: F.scaled_dot_product_attention
(bf16, as timm's Attention runs it in DiT; PyTorch picks its fastest
backend, FlashAttention-2 on an H100/H200) on random q, k, v of the same
shape, forward and backward timed separately after two warm-up rounds:
forward alone, then forward + backward, the difference being backward.
Prints fwd_ms=<x> and bwd_ms=<y> (mean over --reps)."""
import argparse
import time

import torch
import torch.nn.functional as F


def mean_ms(fn, reps):
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--reps", type=int, default=20)
    a = ap.parse_args()
    hd = a.width // a.heads
    g = torch.Generator(device="cuda").manual_seed(0)
    shape = (a.batch, a.heads, a.tokens, hd)
    q, k, v = (torch.empty(shape, device="cuda", dtype=torch.bfloat16).uniform_(-2, 2, generator=g).requires_grad_()
               for _ in range(3))
    dout = torch.empty(shape, device="cuda", dtype=torch.bfloat16).uniform_(-2, 2, generator=g)

    def fwd():
        with torch.no_grad():
            F.scaled_dot_product_attention(q, k, v)

    def fwd_bwd():
        out = F.scaled_dot_product_attention(q, k, v)
        q.grad = k.grad = v.grad = None
        out.backward(dout)

    f = mean_ms(fwd, a.reps)
    fb = mean_ms(fwd_bwd, a.reps)
    flop = 4.0 * a.batch * a.heads * a.tokens * a.tokens * hd
    b = fb - f
    print(f"pytorch {torch.__version__} scaled_dot_product_attention bf16: B={a.batch} T={a.tokens} d={a.width} "
          f"H={a.heads}, {a.reps} reps")
    print(f"  forward {f:.3f} ms ({flop / f * 1e-9:.1f} TFLOP/s), backward {b:.3f} ms ({2.5 * flop / b * 1e-9:.1f} "
          f"TFLOP/s)")
    print(f"fwd_ms={f:.4f}\nbwd_ms={b:.4f}")


if __name__ == "__main__":
    main()
