#!/usr/bin/env python3
"""Reference fixtures for models/diffusion*.c (tests/test_diffusion.c).

An independent re-implementation, in numpy (float64 schedule) and torch
(float32 tensors), of the Gaussian diffusion used by DiT: ADM/IDDPM's
GaussianDiffusion with linear betas, epsilon prediction, LEARNED_RANGE
variance and the MSE(+vb) loss, plus SpacedDiffusion respacing, p_sample,
ddim_sample and DiT's forward_with_cfg combination. Written from the formulas
of openai/guided-diffusion and facebookresearch/DiT `diffusion/`, following
their dtype behaviour: schedule arrays are float64 numpy, and every per-step
coefficient is indexed in float64 and then cast with .float() before it
multiplies a float32 tensor (ADM's _extract_into_tensor).

Output: $KB_FIXTURES/diffusion/<name>.bin (raw little-endian) and
manifest.txt with one line per tensor: "<name> <f32|f64|i32> <ndim> <d0> ...".
"""
import math
import os
import sys

import numpy as np
import torch as th

th.set_num_threads(1)
th.use_deterministic_algorithms(True)

OUT = os.path.join(os.environ.get("KB_FIXTURES", "."), "diffusion")
os.makedirs(OUT, exist_ok=True)
_manifest = []


def save(name, arr):
    if isinstance(arr, th.Tensor):
        arr = arr.detach().cpu().numpy()
    arr = np.asarray(arr)
    if arr.dtype == np.float32:
        tag = "f32"
    elif arr.dtype == np.float64:
        tag = "f64"
    elif arr.dtype in (np.int32, np.int64):
        arr = arr.astype(np.int32)
        tag = "i32"
    else:
        raise TypeError(f"{name}: unsupported dtype {arr.dtype}")
    np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tofile(os.path.join(OUT, name + ".bin"))
    _manifest.append(f"{name} {tag} {arr.ndim} " + " ".join(str(d) for d in arr.shape))


# ---------------------------------------------------------------- schedule
def linear_betas(n):
    scale = 1000 / n
    return np.linspace(scale * 0.0001, scale * 0.02, n, dtype=np.float64)


def space_timesteps(num_timesteps, spec):
    """ADM's space_timesteps: sections of evenly rounded strides, or ddimN."""
    if spec is None or spec == "":
        counts = [num_timesteps]
    elif spec.startswith("ddim"):
        want = int(spec[4:])
        for stride in range(1, num_timesteps):
            if len(range(0, num_timesteps, stride)) == want:
                return set(range(0, num_timesteps, stride))
        raise ValueError(spec)
    else:
        counts = [int(x) for x in spec.split(",")]
    size_per, extra = divmod(num_timesteps, len(counts))
    start, steps = 0, []
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        assert size >= count
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        cur = 0.0
        for _ in range(count):
            steps.append(start + round(cur))  # Python round: half to even
            cur += stride
        start += size
    return set(steps)


class Schedule:
    """The float64 arrays of a GaussianDiffusion built from `betas`."""

    def __init__(self, betas):
        b = np.array(betas, dtype=np.float64)
        self.betas = b
        self.T = len(b)
        alphas = 1.0 - b
        self.ac = np.cumprod(alphas, axis=0)
        self.ac_prev = np.append(1.0, self.ac[:-1])
        self.ac_next = np.append(self.ac[1:], 0.0)
        self.sqrt_ac = np.sqrt(self.ac)
        self.sqrt_1m_ac = np.sqrt(1.0 - self.ac)
        self.log_1m_ac = np.log(1.0 - self.ac)
        self.sqrt_recip_ac = np.sqrt(1.0 / self.ac)
        self.sqrt_recipm1_ac = np.sqrt(1.0 / self.ac - 1)
        self.post_var = b * (1.0 - self.ac_prev) / (1.0 - self.ac)
        self.post_logvar_clipped = np.log(np.append(self.post_var[1], self.post_var[1:]))
        self.coef1 = b * np.sqrt(self.ac_prev) / (1.0 - self.ac)
        self.coef2 = (1.0 - self.ac_prev) * np.sqrt(alphas) / (1.0 - self.ac)
        self.log_betas = np.log(b)


def spaced_schedule(num_steps, spec):
    """DiT's create_diffusion(spec): always a SpacedDiffusion, even for '' (all
    steps), so the training betas are re-derived as 1 - a_t/a_{t-1}."""
    base = Schedule(linear_betas(num_steps))
    keep = space_timesteps(num_steps, spec)
    last, new_betas, tmap = 1.0, [], []
    for i, a in enumerate(base.ac):
        if i in keep:
            new_betas.append(1 - a / last)
            last = a
            tmap.append(i)
    return Schedule(np.array(new_betas)), np.array(tmap, dtype=np.int32), base


def ext(arr, t):
    """_extract_into_tensor: float64 gather, then .float(), shaped [B,1,1,1]."""
    return th.from_numpy(arr)[t].float().view(-1, 1, 1, 1)


# ---------------------------------------------------------------- losses (ADM losses.py)
def normal_kl(m1, lv1, m2, lv2):
    return 0.5 * (-1.0 + lv2 - lv1 + th.exp(lv1 - lv2) + ((m1 - m2) ** 2) * th.exp(-lv2))


def approx_cdf(x):
    return 0.5 * (1.0 + th.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * th.pow(x, 3))))


def discretized_loglik(x, means, log_scales):
    c = x - means
    inv = th.exp(-log_scales)
    cdf_plus = approx_cdf(inv * (c + 1.0 / 255.0))
    cdf_min = approx_cdf(inv * (c - 1.0 / 255.0))
    log_cdf_plus = th.log(cdf_plus.clamp(min=1e-12))
    log_1m_cdf_min = th.log((1.0 - cdf_min).clamp(min=1e-12))
    delta = cdf_plus - cdf_min
    return th.where(x < -0.999, log_cdf_plus,
                    th.where(x > 0.999, log_1m_cdf_min, th.log(delta.clamp(min=1e-12))))


def mean_flat(x):
    return x.mean(dim=list(range(1, x.ndim)))


def p_mean_variance(s, out, x, t, clip):
    C = x.shape[1]
    eps, v = th.split(out, C, dim=1)
    min_log = ext(s.post_logvar_clipped, t)
    max_log = ext(s.log_betas, t)
    frac = (v + 1) / 2
    logvar = frac * max_log + (1 - frac) * min_log
    pred = ext(s.sqrt_recip_ac, t) * x - ext(s.sqrt_recipm1_ac, t) * eps
    if clip:
        pred = pred.clamp(-1, 1)
    mean = ext(s.coef1, t) * pred + ext(s.coef2, t) * x
    return mean, logvar, pred


def training_losses(s, x0, noise, out, t):
    """Per-sample mse, vb (bits) for ModelMeanType.EPSILON, LEARNED_RANGE, LossType.MSE."""
    x_t = ext(s.sqrt_ac, t) * x0 + ext(s.sqrt_1m_ac, t) * noise
    C = x0.shape[1]
    eps, v = th.split(out, C, dim=1)
    frozen = th.cat([eps.detach(), v], dim=1)
    true_mean = ext(s.coef1, t) * x0 + ext(s.coef2, t) * x_t
    true_logvar = ext(s.post_logvar_clipped, t)
    mean, logvar, _ = p_mean_variance(s, frozen, x_t, t, clip=False)
    kl = mean_flat(normal_kl(true_mean, true_logvar, mean, logvar)) / np.log(2.0)
    nll = mean_flat(-discretized_loglik(x0, mean, 0.5 * logvar)) / np.log(2.0)
    vb = th.where(t == 0, nll, kl)
    mse = mean_flat((noise - eps) ** 2)
    return x_t, mse, vb, mse + vb


# ---------------------------------------------------------------- data helpers
def make_x0(g, shape):
    # 8-bit grid on [-1, 1] (as ADM's discretised decoder assumes), with both ends present.
    k = th.randint(0, 256, shape, generator=g)
    k.view(-1)[0] = 0
    k.view(-1)[1] = 255
    return (k.float() / 127.5 - 1.0).float()


def export_schedule():
    s, tmap, base = spaced_schedule(1000, "")
    save("base_betas", base.betas)
    assert (tmap == np.arange(1000)).all()
    for name in ["betas", "ac", "ac_prev", "ac_next", "sqrt_ac", "sqrt_1m_ac", "log_1m_ac", "sqrt_recip_ac",
                 "sqrt_recipm1_ac", "post_var", "post_logvar_clipped", "coef1", "coef2", "log_betas"]:
        save("sched_" + name, getattr(s, name))
    for spec, tag in [("250", "250"), ("25", "25"), ("ddim50", "ddim50"), ("ddim25", "ddim25"),
                      ("10,15,20", "multi"), ("100,1,7", "multi2")]:
        rs, rmap, _ = spaced_schedule(1000, spec)
        save(f"resp_{tag}_map", rmap)
        save(f"resp_{tag}_betas", rs.betas)
        save(f"resp_{tag}_ac", rs.ac)
        save(f"resp_{tag}_plvc", rs.post_logvar_clipped)
        save(f"resp_{tag}_coef1", rs.coef1)
    return s


def export_loss_case(s, tag, B, C, H, W, ts, seed):
    g = th.Generator().manual_seed(seed)
    x0 = make_x0(g, (B, C, H, W))
    noise = th.randn((B, C, H, W), generator=g)
    eps = noise + 0.5 * th.randn((B, C, H, W), generator=g)
    v = th.rand((B, C, H, W), generator=g) * 2.4 - 1.2  # unconstrained, a bit beyond [-1, 1]
    out = th.cat([eps, v], dim=1).float().requires_grad_(True)
    t = th.tensor(ts, dtype=th.int64)
    x_t, mse, vb, loss = training_losses(s, x0, noise, out, t)
    total = loss.mean()
    total.backward()
    save(f"{tag}_x0", x0)
    save(f"{tag}_noise", noise)
    save(f"{tag}_out", out)
    save(f"{tag}_t", t)
    save(f"{tag}_xt", x_t)
    save(f"{tag}_mse", mse)
    save(f"{tag}_vb", vb)
    save(f"{tag}_loss", total.reshape(1))
    save(f"{tag}_grad", out.grad)


def export_ddpm(tag, spec, ts, clip, seed):
    s, tmap, _ = spaced_schedule(1000, spec)
    g = th.Generator().manual_seed(seed)
    B, C, H, W = len(ts), 4, 4, 6
    x = th.randn((B, C, H, W), generator=g) * 1.3
    out = th.cat([th.randn((B, C, H, W), generator=g), th.rand((B, C, H, W), generator=g) * 2 - 1], 1)
    noise = th.randn((B, C, H, W), generator=g)
    t = th.tensor(ts, dtype=th.int64)
    mean, logvar, pred = p_mean_variance(s, out, x, t, clip)
    mask = (t != 0).float().view(-1, 1, 1, 1)
    x_prev = mean + mask * th.exp(0.5 * logvar) * noise
    for k, a in [("x", x), ("out", out), ("noise", noise), ("t", t), ("mean", mean), ("logvar", logvar),
                 ("pred", pred), ("xprev", x_prev)]:
        save(f"{tag}_{k}", a)


def ddim_step(s, out, x, t, eta, noise, clip):
    _, _, pred = p_mean_variance(s, out, x, t, clip)
    eps = (ext(s.sqrt_recip_ac, t) * x - pred) / ext(s.sqrt_recipm1_ac, t)
    ab = ext(s.ac, t)
    ab_prev = ext(s.ac_prev, t)
    sigma = eta * th.sqrt((1 - ab_prev) / (1 - ab)) * th.sqrt(1 - ab / ab_prev)
    mean = pred * th.sqrt(ab_prev) + th.sqrt(1 - ab_prev - sigma ** 2) * eps
    mask = (t != 0).float().view(-1, 1, 1, 1)
    return mean, sigma.view(-1), pred, mean + mask * sigma * noise


def export_ddim(tag, spec, ts, eta, clip, seed):
    s, _, _ = spaced_schedule(1000, spec)
    g = th.Generator().manual_seed(seed)
    B, C, H, W = len(ts), 4, 4, 6
    x = th.randn((B, C, H, W), generator=g) * 1.3
    out = th.cat([th.randn((B, C, H, W), generator=g), th.rand((B, C, H, W), generator=g) * 2 - 1], 1)
    noise = th.randn((B, C, H, W), generator=g)
    t = th.tensor(ts, dtype=th.int64)
    mean, sigma, pred, x_prev = ddim_step(s, out, x, t, eta, noise, clip)
    for k, a in [("x", x), ("out", out), ("noise", noise), ("t", t), ("mean", mean), ("sigma", sigma),
                 ("pred", pred), ("xprev", x_prev)]:
        save(f"{tag}_{k}", a)


def export_cfg():
    """DiT forward_with_cfg's combination of a [cond; uncond] model output."""
    g = th.Generator().manual_seed(7)
    B, C, H, W = 3, 4, 4, 4
    model_out = th.randn((2 * B, 2 * C, H, W), generator=g)
    save("cfg_model_out", model_out)
    for scale, stag in [(4.0, "s4"), (1.5, "s15"), (0.3, "s03")]:
        for guided, mtag in [(3, "dit"), (C, "all")]:
            eps, rest = model_out[:, :guided], model_out[:, guided:]
            cond_eps, uncond_eps = th.split(eps, len(eps) // 2, dim=0)
            half_eps = uncond_eps + scale * (cond_eps - uncond_eps)
            eps = th.cat([half_eps, half_eps], dim=0)
            combined = th.cat([eps, rest], dim=1)
            save(f"cfg_{mtag}_{stag}", combined[:B])


def export_loop(tag, spec, sampler, eta, seed):
    """A whole reverse loop with a toy model eps = 0.9 x_t, v = per-channel
    constant, and saved per-step noise: checks the C loop driver's order."""
    s, tmap, _ = spaced_schedule(1000, spec)
    g = th.Generator().manual_seed(seed)
    B, C, H, W = 2, 3, 4, 4
    x = th.randn((B, C, H, W), generator=g)
    save(f"{tag}_xT", x)
    vconst = th.tensor([-0.5, 0.0, 0.75]).view(1, C, 1, 1)
    noises, tcalls = [], []
    for i in reversed(range(s.T)):
        t = th.tensor([i] * B, dtype=th.int64)
        tcalls.append(int(tmap[i]))
        out = th.cat([x * 0.9, vconst.expand(B, C, H, W)], dim=1)
        noise = th.randn((B, C, H, W), generator=g)
        noises.append(noise)
        if sampler == "ddpm":
            mean, logvar, _ = p_mean_variance(s, out, x, t, clip=False)
            mask = (t != 0).float().view(-1, 1, 1, 1)
            x = mean + mask * th.exp(0.5 * logvar) * noise
        else:
            x = ddim_step(s, out, x, t, eta, noise, clip=False)[3]
    save(f"{tag}_noise", th.stack(noises))
    save(f"{tag}_tcalls", np.array(tcalls, dtype=np.int32))
    save(f"{tag}_x0", x)


def main():
    s = export_schedule()
    export_loss_case(s, "lossA", 8, 4, 8, 8, [0, 1, 2, 500, 998, 999, 0, 250], seed=1)
    export_loss_case(s, "lossB", 4, 3, 5, 7, [999, 0, 17, 640], seed=2)
    export_ddpm("ddpm", "250", [249, 1, 0, 120, 248, 60], clip=False, seed=3)
    export_ddpm("ddpmclip", "250", [249, 1, 0, 120, 248, 60], clip=True, seed=4)
    export_ddim("ddim0", "ddim50", [49, 1, 0, 25, 48], eta=0.0, clip=False, seed=5)
    export_ddim("ddim05", "ddim50", [49, 1, 0, 25, 48], eta=0.5, clip=False, seed=6)
    export_ddim("ddim05clip", "ddim50", [49, 1, 0, 25, 48], eta=0.5, clip=True, seed=8)
    export_cfg()
    export_loop("loopddpm", "25", "ddpm", 0.0, seed=9)
    export_loop("loopddim", "ddim10", "ddim", 0.5, seed=10)
    with open(os.path.join(OUT, "manifest.txt"), "w") as f:
        f.write("\n".join(_manifest) + "\n")
    print(f"diffusion_ref: wrote {len(_manifest)} tensors to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
