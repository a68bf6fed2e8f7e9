#!/usr/bin/env python3
"""PyTorch reference samples for kindbench's sampler (tests/test_sample.c).

Samples small random DiTs (tests/ref/dit_torch.py, equal to
facebookresearch/DiT's model) the way DiT's sample.py / sample_ddp.py do:
  - z = cat([x_T, x_T]) and y = cat([y, null]) when the guidance scale is > 1,
    model = forward_with_cfg (guiding channels [:3] as upstream -- "dit" -- or
    [:in_channels] -- "all", the form DiT's comment offers);
  - the respaced process of create_diffusion(str(steps)), the model called
    with timestep_map[t] (_WrappedModel, no rescaling);
  - ADM's p_sample / ddim_sample (tests/ref/diffusion_ref.py) with noise
    drawn here and exported, so the C side can replay it;
  - samples = the first half of z.
Models: "m3" is the dit_ref fixture (3 channels; its weights are read from
$KB_FIXTURES/dit_ref.safetensors); "m1" (grey: DiT's [:3] also guides the
variance channel, which only DDPM uses) and "m4" (latent-like: [:3] leaves
eps channel 3 unguided, sampled with DDIM) are built here. Also DiT's
quantisation on edge values.

Output: $KB_FIXTURES/sample_ref.safetensors: "<model>.param.<name>",
"<case>.xT" [N,C,H,W], "<case>.noise" [steps,N,C,H,W], "<case>.y" (i32),
"<case>.x0"; "quant.x" (f32) and "quant.u8"; metadata "config.<model>"
(JSON) and "cases" (JSON list).
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

SMALL = dict(input_size=8, patch_size=2, hidden_size=32, depth=2, num_heads=4, mlp_ratio=4.0, class_dropout_prob=0.1,
             num_classes=5, learn_sigma=True, frequency_embedding_size=256)
LABELS = [0, 4, 2]  # 3 samples: the C side runs them in batches of 2 (a full and a partial batch)
STEPS = "10"


def forward_with_cfg(model, x, t, y, cfg_scale, guided):
    """DiT models.py forward_with_cfg, with the guided channel count a parameter (upstream: 3)."""
    half = x[: len(x) // 2]
    combined = torch.cat([half, half], dim=0)
    model_out = model(combined, t, y)
    eps, rest = model_out[:, :guided], model_out[:, guided:]
    cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)
    half_eps = uncond_eps + cfg_scale * (cond_eps - uncond_eps)
    eps = torch.cat([half_eps, half_eps], dim=0)
    return torch.cat([eps, rest], dim=1)


def sample(model, num_classes, case, xT, noises, y):
    s, tmap, _ = dr.spaced_schedule(1000, case["spec"])
    n = len(y)
    cfg = case["scale"] > 1
    z = torch.cat([xT, xT]) if cfg else xT
    yy = torch.cat([y, torch.full_like(y, num_classes)]) if cfg else y
    tmap_t = torch.from_numpy(tmap.astype(np.int64))
    for k, i in enumerate(reversed(range(s.T))):
        t = torch.tensor([i] * len(z), dtype=torch.int64)
        tm = tmap_t[t]
        out = forward_with_cfg(model, z, tm, yy, case["scale"], case["guided"]) if cfg else model(z, tm, yy)
        noise = torch.cat([noises[k], noises[k]]) if cfg else noises[k]
        if case["sampler"] == "ddpm":
            mean, logvar, _ = dr.p_mean_variance(s, out, z, t, case["clip"])
            mask = (t != 0).float().view(-1, 1, 1, 1)
            z = mean + mask * torch.exp(0.5 * logvar) * noise
        else:
            z = dr.ddim_step(s, out, z, t, case["eta"], noise, case["clip"])[3]
    return z[:n]


def load_m3():
    path = os.path.join(os.environ.get("KB_FIXTURES", "."), "dit_ref.safetensors")
    tensors, meta = st.load(path)
    config = json.loads(meta["config"])
    model = DiT(**config)
    state = {k[len("param."):]: torch.from_numpy(a.copy()) for k, (_, a) in tensors.items() if k.startswith("param.")}
    model.load_state_dict(state)
    return model, config


def make_model(in_channels, seed):
    config = dict(SMALL, in_channels=in_channels)
    torch.manual_seed(seed)
    model = DiT(**config)
    randomize(model, torch.Generator().manual_seed(seed), std=0.1)
    return model, config


def cases():
    # the two modes of a model share their noise (noise_seed), so that the C side can also check that they
    # agree for 3 channels and differ otherwise
    def c(tag, model, sampler, eta=0.0, scale=4.0, mode="dit", clip=False):
        return dict(tag=tag, model=model, spec=STEPS, sampler=sampler, eta=eta, scale=scale, mode=mode, clip=clip,
                    noise_seed=100 + sum(ord(ch) for ch in tag.replace("_all", "_dit")))
    return [c("m3_ddim0_dit", "m3", "ddim"), c("m3_ddim0_all", "m3", "ddim", mode="all"),
            c("m3_ddim05_dit", "m3", "ddim", eta=0.5), c("m3_ddpm_dit", "m3", "ddpm"),
            c("m3_ddpm_nocfg", "m3", "ddpm", scale=1.0), c("m3_ddpm_clip", "m3", "ddpm", clip=True),
            c("m4_ddim05_dit", "m4", "ddim", eta=0.5), c("m4_ddim05_all", "m4", "ddim", eta=0.5, mode="all"),
            c("m1_ddpm_dit", "m1", "ddpm"), c("m1_ddpm_all", "m1", "ddpm", mode="all")]


def quant_values():
    """Every truncation boundary x = (j - 128)/127.5 and its float neighbours,
    and the edges of the issue (+-1.0039, +-1, 0) and beyond."""
    xs = [-1.0039, -1.0, 0.0, 1.0, 1.0039, -1.0039216, 1.0039216, -1.004, 1.004, -2.0, 2.0, -1e30, 1e30,
          -np.inf, np.inf, 0.5, -0.5, 1e-8, -1e-8]
    for j in range(-1, 258):
        b = np.float32((j - 128) / 127.5)
        xs += [b, np.nextafter(b, np.float32(-10)), np.nextafter(b, np.float32(10)), np.float32((j - 127.5) / 127.5)]
    x = torch.tensor(np.array(xs, dtype=np.float32))
    return x, torch.clamp(127.5 * x + 128.0, 0, 255).to(torch.uint8)  # DiT sample_ddp.py


def main():
    models = {"m3": load_m3(), "m1": make_model(1, 11), "m4": make_model(4, 12)}
    tensors, meta = {}, {}
    for tag, (model, config) in models.items():
        model.eval()
        meta[f"config.{tag}"] = json.dumps(config)
        tensors.update({f"{tag}.param.{k}": v.detach().numpy().copy() for k, v in model.state_dict().items()})
    all_cases = cases()
    with torch.no_grad():
        for case in all_cases:
            model, config = models[case["model"]]
            C, H = config["in_channels"], config["input_size"]
            case["guided"] = 3 if case["mode"] == "dit" else C
            steps = int(case["spec"])
            gen = torch.Generator().manual_seed(case["noise_seed"])
            xT = torch.randn((len(LABELS), C, H, H), generator=gen)
            noises = torch.randn((steps, len(LABELS), C, H, H), generator=gen)
            y = torch.tensor(LABELS, dtype=torch.int64)
            x0 = sample(model, config["num_classes"], case, xT, noises, y)
            tag = case["tag"]
            tensors.update({f"{tag}.xT": xT.numpy(), f"{tag}.noise": noises.numpy(),
                            f"{tag}.y": y.int().numpy(), f"{tag}.x0": x0.numpy()})
            print(f"sample_ref: {tag}: max |x0| {x0.abs().max().item():.4g}")
    qx, qu = quant_values()
    tensors["quant.x"], tensors["quant.u8"] = qx.numpy(), qu.numpy()
    meta["cases"] = json.dumps(all_cases)
    path = os.path.join(os.environ.get("KB_FIXTURES", "."), "sample_ref.safetensors")
    st.save(path, tensors, meta)
    print(f"sample_ref: wrote {len(tensors)} tensors ({len(all_cases)} cases) to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
