#!/usr/bin/env python3
"""PyTorch reference fixtures for kindbench's DiT engine (tests/test_dit_torch.c).

Builds a small DiT (tests/ref/dit_torch.py, equal to facebookresearch/DiT)
with random non-zero weights, and the ADM training loss of
tests/ref/diffusion_ref.py, then exports to $KB_FIXTURES/dit_ref.safetensors:
  - the config (metadata "config", JSON) and every parameter ("param.<name>");
  - case "g": one batch (x0, noise, t, y with a null label): the model output,
    per-sample mse and vb, the loss, and every parameter gradient ("grad.<name>");
  - case "a": 10 AdamW steps (lr 1e-3, weight decay 0.01, torch defaults
    otherwise), one fresh batch per step ("a<k>.x0" ...), the loss of every
    step, and the parameters after the 10th step ("final.<name>").
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diffusion_ref as dr  # noqa: E402
import st  # noqa: E402
from dit_torch import DiT, randomize  # noqa: E402

CONFIG = dict(input_size=8, patch_size=2, in_channels=3, hidden_size=32, depth=2, num_heads=4, mlp_ratio=4.0,
              class_dropout_prob=0.1, num_classes=5, learn_sigma=True, frequency_embedding_size=256)
B = 4


def batch(gen, s_len):
    shape = (B, CONFIG["in_channels"], CONFIG["input_size"], CONFIG["input_size"])
    x0 = dr.make_x0(gen, shape)
    noise = torch.randn(shape, generator=gen)
    t = torch.randint(0, s_len, (B,), generator=gen)
    t[0] = 0  # the discretised-NLL branch
    y = torch.randint(0, CONFIG["num_classes"], (B,), generator=gen)
    y[1] = CONFIG["num_classes"]  # a dropped (null) label
    return x0, noise, t, y


def loss_of(model, sched, x0, noise, t, y):
    x_t = dr.ext(sched.sqrt_ac, t) * x0 + dr.ext(sched.sqrt_1m_ac, t) * noise
    out = model(x_t, t, y)
    _, mse, vb, total = dr.training_losses(sched, x0, noise, out, t)
    return out, mse, vb, total.mean()


def main():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)
    model = DiT(**CONFIG)
    randomize(model, gen, std=0.1)
    sched, _, _ = dr.spaced_schedule(1000, "")
    tensors = {f"param.{k}": v.detach().numpy().copy() for k, v in model.state_dict().items()}

    x0, noise, t, y = batch(gen, sched.T)
    out, mse, vb, loss = loss_of(model, sched, x0, noise, t, y)
    loss.backward()
    tensors.update({"g.x0": x0.numpy(), "g.noise": noise.numpy(), "g.t": t.int().numpy(), "g.y": y.int().numpy(),
                    "g.out": out.detach().numpy(), "g.mse": mse.detach().numpy(), "g.vb": vb.detach().numpy(),
                    "g.loss": np.array([loss.item()], dtype=np.float32)})
    for k, p in model.named_parameters():
        if p.requires_grad:
            tensors[f"grad.{k}"] = p.grad.numpy().copy()

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.01)
    losses = []
    for k in range(10):
        xb, nb, tb, yb = batch(gen, sched.T)
        opt.zero_grad()
        _, _, _, lk = loss_of(model, sched, xb, nb, tb, yb)
        lk.backward()
        opt.step()
        losses.append(lk.item())
        tensors.update({f"a{k}.x0": xb.numpy(), f"a{k}.noise": nb.numpy(), f"a{k}.t": tb.int().numpy(),
                        f"a{k}.y": yb.int().numpy()})
    tensors["a.losses"] = np.array(losses, dtype=np.float32)
    tensors.update({f"final.{k}": v.detach().numpy().copy() for k, v in model.state_dict().items()})

    out_dir = os.environ.get("KB_FIXTURES", ".")
    path = os.path.join(out_dir, "dit_ref.safetensors")
    st.save(path, tensors, {"config": json.dumps(CONFIG), "adamw": json.dumps(dict(lr=1e-3, weight_decay=0.01))})
    print(f"dit_ref: wrote {len(tensors)} tensors to {path}; loss {loss.item():.6f}, "
          f"AdamW losses {losses[0]:.5f} .. {losses[-1]:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
