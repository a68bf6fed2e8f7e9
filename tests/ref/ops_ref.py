#!/usr/bin/env python3
"""PyTorch references for nn/ops_ref.c (tests/test_ops_torch.c).

Inputs come from a fixed torch seed; outputs and gradients are computed with
torch (float32, CPU, one thread, autograd for the backward passes) and written
with their inputs to $KB_FIXTURES/ops_torch.safetensors (tests/ref/st.py).

Naming: <op>.<tensor>; inputs are the tensors the C side feeds to the
reference, everything else is a torch result to compare against.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

torch.set_num_threads(1)
torch.manual_seed(20240611)
T = {}


def put(name, t):
    T[name] = t.detach().contiguous().numpy() if isinstance(t, torch.Tensor) else t


def activations():
    x = torch.cat([
        torch.linspace(-10.0, 10.0, 2001),
        torch.randn(2000) * 3.0,
        torch.tensor([0.0, -0.0, 1e-8, -1e-8, 1e-30, -1e-30, 3e-4, -3e-4, 0.5, -0.5, 20.0, -20.0, 50.0, -50.0,
                      87.0, -87.0, 88.5, -88.5, 100.0, -100.0]),
    ])
    dy = torch.randn(x.numel())
    put("act.x", x)
    put("act.dy", dy)
    for name, fn in [("gelu", lambda v: F.gelu(v, approximate="tanh")), ("silu", F.silu), ("relu", F.relu)]:
        xx = x.clone().requires_grad_(True)
        y = fn(xx)
        y.backward(dy)
        put(f"{name}.y", y)
        put(f"{name}.dx", xx.grad)


def layernorm(tag, rows, cols, shift, scale, eps, f64=False):
    """float32 torch results; with f64=True torch runs in float64 on the same
    float32 inputs and the results are rounded to float32: for inputs where
    torch's float32 kernel is itself inaccurate (one column, where it computes
    x*rstd - mean*rstd with rstd = 1/sqrt(eps); a large mean), which our
    double-accumulating reference is not."""
    x = torch.randn(rows, cols) * scale + shift
    w = torch.randn(cols) * 0.5 + 1.0
    b = torch.randn(cols) * 0.2
    dy = torch.randn(rows, cols)
    put(f"{tag}.x", x)
    put(f"{tag}.w", w)
    put(f"{tag}.b", b)
    put(f"{tag}.dy", dy)
    put(f"{tag}.eps", np.array([eps], dtype=np.float32))
    dt = torch.float64 if f64 else torch.float32
    x, w, b, dy = (t.to(dt) for t in (x, w, b, dy))
    _, mean, rstd = torch.native_layer_norm(x, [cols], w, b, eps)
    put(f"{tag}.mean", mean.reshape(rows).float())
    put(f"{tag}.rstd", rstd.reshape(rows).float())
    xx, ww, bb = (t.clone().requires_grad_(True) for t in (x, w, b))
    y = F.layer_norm(xx, [cols], ww, bb, eps)
    y.backward(dy)
    put(f"{tag}.y", y.float())
    put(f"{tag}.dx", xx.grad.float())
    put(f"{tag}.dw", ww.grad.float())
    put(f"{tag}.db", bb.grad.float())
    xx = x.clone().requires_grad_(True)
    y = F.layer_norm(xx, [cols], None, None, eps)
    y.backward(dy)
    put(f"{tag}.y_noaffine", y.float())
    put(f"{tag}.dx_noaffine", xx.grad.float())


def softmax():
    x = torch.randn(33, 257) * 5.0
    x[3] += 1e4       # large offset: needs the max subtraction
    x[4, ::2] = -1e30  # tiny probabilities
    x[5] = 0.0         # uniform row
    dy = torch.randn(33, 257)
    put("softmax.x", x)
    put("softmax.dy", dy)
    xx = x.clone().requires_grad_(True)
    y = torch.softmax(xx, dim=-1)
    y.backward(dy)
    put("softmax.y", y)
    put("softmax.dx", xx.grad)


def matmul():
    M, N, K = 37, 29, 53
    for ta in (0, 1):
        for tb in (0, 1):
            tag = f"mm{ta}{tb}"
            a = torch.randn(K, M) if ta else torch.randn(M, K)  # as stored
            b = torch.randn(N, K) if tb else torch.randn(K, N)
            c0 = torch.randn(M, N)
            aa, bb = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
            opa, opb = (aa.t() if ta else aa), (bb.t() if tb else bb)
            y = opa @ opb
            dy = torch.randn(M, N)
            y.backward(dy)
            put(f"{tag}.a", a)
            put(f"{tag}.b", b)
            put(f"{tag}.c0", c0)
            put(f"{tag}.dy", dy)
            put(f"{tag}.y", y)
            put(f"{tag}.da", aa.grad)
            put(f"{tag}.db", bb.grad)
            # alpha/beta: C = 0.7 op(A) op(B) - 1.3 C0
            put(f"{tag}.y_ab", torch.addmm(c0, opa.detach(), opb.detach(), beta=-1.3, alpha=0.7))
    # batched, with op(A) = A^T per matrix: [3, K, M]^T @ [3, K, N]
    Bt = 3
    a = torch.randn(Bt, K, M)
    b = torch.randn(Bt, K, N)
    put("bmm.a", a)
    put("bmm.b", b)
    put("bmm.y", torch.bmm(a.transpose(1, 2), b))
    a2 = torch.randn(Bt, M, K)
    b2 = torch.randn(Bt, N, K)
    put("bmm2.a", a2)
    put("bmm2.b", b2)
    put("bmm2.y", torch.bmm(a2, b2.transpose(1, 2)))


def sums():
    x = torch.randn(1000, 17) + 0.5
    put("sumrows.x", x)
    put("sumrows.y", x.sum(0))
    x2 = torch.randn(5, 3001)
    put("sumrows2.x", x2)
    put("sumrows2.y", x2.sum(0))
    x3 = torch.randn(100003) * 10.0 + 1.0
    put("sum.x", x3)
    put("sum.y", x3.double().sum().reshape(1))


def bf16():
    bits = [0x3F808000, 0x3F818000, 0x3F808001, 0x3F807FFF, 0x7F7FFFFF, 0x7F7F8000, 0x7F7F7FFF, 0x00000001,
            0x00008000, 0x00018000, 0x807FFFFF, 0x80000000, 0x7F800000, 0xFF800000, 0x3F800000, 0xBF7FFFFF]
    special = torch.from_numpy(np.array(bits, dtype=np.uint32).view(np.float32))
    x = torch.cat([special, torch.randn(5000) * 3.0, torch.randn(1000) * 1e-38, torch.randn(1000) * 1e37])
    put("bf16.x", x)
    h = x.to(torch.bfloat16)
    T["bf16.bits"] = ("BF16", h.view(torch.int16).numpy().view(np.uint16))
    put("bf16.back", h.float())


def main():
    activations()
    layernorm("ln", 37, 129, 5.0, 3.0, 1e-5)
    layernorm("ln_offset", 4, 1152, 30.0, 0.5, 1e-6, f64=True)  # mean 60 standard deviations from 0
    layernorm("ln_one", 3, 1, 0.0, 1.0, 1e-5, f64=True)          # one column: var = 0, y = bias
    softmax()
    matmul()
    sums()
    bf16()
    out = os.path.join(os.environ.get("KB_FIXTURES", "."), "ops_torch.safetensors")
    st.save(out, T, {"generator": "tests/ref/ops_ref.py", "torch": torch.__version__})
    print(f"wrote {len(T)} tensors to {out}")


if __name__ == "__main__":
    main()
