#!/usr/bin/env python3
"""The PyTorch side of bench/bench_train.sh: DiT training steps as
facebookresearch/DiT's train.py runs them (forward, ADM loss with the VLB
term, backward, AdamW, EMA update), eager mode, on synthetic data, for the
same config as `kindbench bench train`. Prints steps_per_sec=<x>.

--device cuda runs on the GPU with the batches drawn there; --precision:
fp32 (TF32 off), tf32 (TF32 matmuls), bf16 (torch.autocast to bfloat16: the
usual mixed-precision recipe, fp32 weights and optimiser) or bf16-pure (the
model, its gradients and AdamW all in bfloat16). Like kindbench, a pool of
--pool batches is drawn on the host before the clock starts and cycled, each
timed step copying its batch to the device. --attention sdpa
(the default on CUDA) runs attention through F.scaled_dot_product_attention,
as timm's Attention does today in DiT (fused_attn); plain is the explicit
softmax(q k^T) v of the reference (the default on the CPU)."""
import argparse
import contextlib
import os
import sys
import time
from collections import OrderedDict

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "ref"))
import diffusion_ref as dr  # noqa: E402
from dit_torch import DiT  # noqa: E402


@torch.no_grad()
def update_ema(ema, model, decay=0.9999):
    ema_params, params = OrderedDict(ema.named_parameters()), OrderedDict(model.named_parameters())
    for name, p in params.items():
        ema_params[name].mul_(decay).add_(p.data, alpha=1 - decay)


def main():
    ap = argparse.ArgumentParser()
    for k, v in dict(depth=None, width=None, heads=None, patch=None, image=32, channels=1, classes=10, batch=32,
                     steps=20, warmup=3, threads=0, pool=4).items():
        ap.add_argument(f"--{k}", type=int, default=v)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16", "bf16-pure"])
    ap.add_argument("--attention", default=None, choices=["plain", "sdpa"])
    ap.add_argument("--model", default=None, help="a DiT preset, e.g. S/4 (sets depth, width, heads, patch)")
    a = ap.parse_args()
    # as `kindbench bench train`: the preset (else depth 4, width 128, heads 4, patch 4), then the shape options given
    shape = (4, 128, 4, 4)
    if a.model:
        presets = {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}
        size, patch = a.model.replace("DiT-", "").split("/")
        shape = presets[size] + (int(patch),)
    a.depth, a.width, a.heads, a.patch = (g if g is not None else s
                                          for g, s in zip((a.depth, a.width, a.heads, a.patch), shape))
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    attention = a.attention or ("sdpa" if a.device == "cuda" else "plain")
    if attention == "sdpa":
        import torch.nn.functional as F
        import dit_torch

        def sdpa_forward(self, x):
            B, N, C = x.shape
            qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)
            x = F.scaled_dot_product_attention(q, k, v)
            return self.proj(x.transpose(1, 2).reshape(B, N, C))

        dit_torch.Attention.forward = sdpa_forward
    if a.device == "cpu" and a.precision != "fp32":
        sys.exit("torch_train_bench.py: --precision other than fp32 needs --device cuda")
    torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32"
    torch.backends.cudnn.allow_tf32 = a.precision == "tf32"
    model = DiT(input_size=a.image, patch_size=a.patch, in_channels=a.channels, hidden_size=a.width, depth=a.depth,
                num_heads=a.heads, num_classes=a.classes)
    ema = DiT(input_size=a.image, patch_size=a.patch, in_channels=a.channels, hidden_size=a.width, depth=a.depth,
              num_heads=a.heads, num_classes=a.classes)
    ema.load_state_dict(model.state_dict())
    for p in ema.parameters():
        p.requires_grad_(False)
    pure = a.precision == "bf16-pure"
    model.to(dev, torch.bfloat16 if pure else torch.float32)
    ema.to(dev, torch.bfloat16 if pure else torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0)
    sched, _, _ = dr.spaced_schedule(1000, "")
    gen = torch.Generator().manual_seed(0)
    shape = (a.batch, a.channels, a.image, a.image)
    pool = []  # on the host: each timed step copies its batch to the device, as kindbench's does
    for _ in range(a.pool):
        x0 = (torch.randint(0, 256, shape, generator=gen).float() / 127.5) - 1
        noise = torch.randn(shape, generator=gen)
        t = torch.randint(0, 1000, (a.batch,), generator=gen)
        y = torch.randint(0, a.classes, (a.batch,), generator=gen)
        pool.append((x0, noise, t, y))
    # DiT's _extract_into_tensor moves the float64 schedule to the timesteps' device on every call
    dr.ext = lambda arr, t: torch.from_numpy(arr).to(t.device)[t].float().view(-1, 1, 1, 1)
    # bf16-pure runs under autocast too: DiT's timestep frequencies are built in float32
    bf16 = a.precision.startswith("bf16")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def sync():
        if a.device == "cuda":
            torch.cuda.synchronize()

    t0 = None
    for k in range(a.warmup + a.steps):
        if k == a.warmup:
            sync()
            t0 = time.perf_counter()
        x0, noise, t, y = (v.to(dev) for v in pool[k % a.pool])
        x_t = dr.ext(sched.sqrt_ac, t) * x0 + dr.ext(sched.sqrt_1m_ac, t) * noise
        with autocast:
            out = model(x_t.to(torch.bfloat16) if pure else x_t, t, y)
        _, _, _, total = dr.training_losses(sched, x0, noise, out.float(), t)
        loss = total.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        update_ema(ema, model)
    sync()
    dt = time.perf_counter() - t0
    sps = a.steps / dt
    where = torch.cuda.get_device_name() if a.device == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"pytorch train: depth {a.depth} width {a.width} heads {a.heads} patch {a.patch}, {a.image}x{a.image}x"
          f"{a.channels}, {a.classes} classes, batch {a.batch}: {sps:.3f} steps/s, {sps * a.batch:.1f} images/s, "
          f"{1000 / sps:.1f} ms/step, torch {torch.__version__}, {where}, {a.precision}, {attention} attention, "
          f"last loss {loss.item():.5f}")
    print(f"steps_per_sec={sps:.6f}")


if __name__ == "__main__":
    main()
