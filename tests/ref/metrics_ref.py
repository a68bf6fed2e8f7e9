"""Reference values for kindbench's metric maths (tests/test_metrics.c), computed
with numpy/scipy/torch on synthetic features: no Inception weights needed.

Writes $KB_FIXTURES/metrics/*.npz. Each reference re-implements the peer's
code path as published (read from the sources named in
shared/reference/anchors.md), not kindbench's:

  fid_*.npz       pytorch-fid calculate_frechet_distance (scipy sqrtm, eps
                  fallback, imaginary-part check), with the float32 np.mean
                  pytorch-fid takes and with float64 means; plus an
                  independent float64 eigh route.
  is_*.npz        ADM evaluator compute_inception_score (contiguous 5000
                  chunks; softmax here in float64 and in float32 as TF) and
                  torch-fidelity isc_features_to_metric (torch, double).
  pr_*.npz        ADM ManifoldEstimator (k=3, <=, row/col batches) in numpy,
                  float64 and fp32, and prdc's density/coverage (k=5, <);
                  the fp16 emulation kindbench defines (tests only).
  kid_*.npz       torch-fidelity kid_features_to_metric (RandomState(2020)
                  choice, polynomial kernel, unbiased MMD^2), in float64 and
                  in float32 as torch-fidelity runs it.
  spectral.npz    kindbench's spectral distance (metrics/spectral.h) in numpy.
  rng.npz         RandomState(2020).permutation / choice sequences.
"""
import json
import os
import sys

import numpy as np
import scipy.linalg
import torch

OUT = os.path.join(os.environ.get("KB_FIXTURES", "fixtures"), "metrics")


def save(name, **arrays):
    np.savez(os.path.join(OUT, name), **arrays)


# ------------------------------------------------------------------ FID
def pytorch_fid_fd(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """pytorch-fid src/pytorch_fid/fid_score.py calculate_frechet_distance."""
    mu1 = np.atleast_1d(mu1)
    mu2 = np.atleast_1d(mu2)
    sigma1 = np.atleast_2d(sigma1)
    sigma2 = np.atleast_2d(sigma2)
    diff = mu1 - mu2
    covmean, _ = scipy.linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    eps_used = 0
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
        eps_used = 1
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError("Imaginary component {}".format(np.max(np.abs(covmean.imag))))
        covmean = covmean.real
    tr_covmean = np.trace(covmean)
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean, eps_used


def eigh_fd(mu1, s1, mu2, s2):
    """tr sqrt(S1 S2) = sum sqrt(eig(S1^1/2 S2 S1^1/2)), float64, independent of scipy."""
    w, v = np.linalg.eigh(s1)
    y = v * np.sqrt(np.maximum(w, 0))
    ev = np.linalg.eigvalsh(y.T @ s2 @ y)
    d = mu1 - mu2
    return d @ d + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.maximum(ev, 0)).sum()


def fid_case(name, x1, x2):
    x1, x2 = x1.astype(np.float32), x2.astype(np.float32)
    s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
    m1_32, m2_32 = np.mean(x1, axis=0), np.mean(x2, axis=0)  # pytorch-fid / ADM: float32 means
    m1, m2 = x1.astype(np.float64).mean(0), x2.astype(np.float64).mean(0)
    fd32, eps32 = pytorch_fid_fd(m1_32, s1, m2_32, s2)
    fd64, eps64 = pytorch_fid_fd(m1, s1, m2, s2)
    save("fid_" + name, x1=x1, x2=x2, mu1=m1, mu2=m2, sigma1=s1, sigma2=s2,
         fd_pytorch_fid=np.float64(fd32), fd_pytorch_fid_mu64=np.float64(fd64), eps_used=np.int64(eps64),
         fd_eigh=np.float64(eigh_fd(m1, s1, m2, s2)))
    print(f"fid_{name}: d={x1.shape[1]} n={len(x1)},{len(x2)} pytorch-fid {fd32:.12g} "
          f"(mu64 {fd64:.12g}, eps {eps64}) eigh {eigh_fd(m1, s1, m2, s2):.12g}")


def relu_features(rng, n, d, mix, shift):
    z = rng.standard_normal((n, d)).astype(np.float32)
    return np.maximum(z @ mix + shift, 0)


def fid_cases(rng):
    a = rng.standard_normal((64, 64)) * 0.3
    fid_case("small", rng.standard_normal((500, 64)) @ a + 1.0, rng.standard_normal((400, 64)) @ (a * 1.1) + 1.2)
    # ill-conditioned: covariance eigenvalues from 1 down to 1e-7
    q, _ = np.linalg.qr(rng.standard_normal((256, 256)))
    scale = np.sqrt(np.logspace(0, -7, 256))
    fid_case("illcond", (rng.standard_normal((3000, 256)) * scale) @ q.T,
             (rng.standard_normal((3000, 256)) * scale * 1.05) @ q.T + 0.01)
    mix = (rng.standard_normal((2048, 2048)) * 0.03).astype(np.float32)
    # rank-deficient (n < d), Inception-like non-negative features
    fid_case("rankdef", relu_features(rng, 1000, 2048, mix, 0.1), relu_features(rng, 1200, 2048, mix, 0.12))
    # full rank, two samples of nearly the same distribution (FID << trace)
    fid_case("close2048", relu_features(rng, 3000, 2048, mix, 0.1), relu_features(rng, 3000, 2048, mix * 1.02, 0.1))


# ------------------------------------------------------------------- IS
def adm_is(logits, split_size=5000, dtype=np.float64):
    """ADM evaluator compute_inception_score on softmax(logits)."""
    x = logits.astype(dtype)
    e = np.exp(x - x.max(1, keepdims=True))
    preds = e / e.sum(1, keepdims=True)
    scores = []
    for i in range(0, len(preds), split_size):
        part = preds[i:i + split_size]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        kl = np.mean(np.sum(kl, 1))
        scores.append(np.exp(kl))
    return float(np.mean(scores))


def fidelity_is(logits, splits=10, seed=2020):
    """torch-fidelity metric_isc.isc_features_to_metric."""
    feature = torch.from_numpy(logits)
    n = feature.shape[0]
    rng = np.random.RandomState(seed)
    feature = feature[rng.permutation(n), :]
    feature = feature.double()
    p = feature.softmax(dim=1)
    log_p = feature.log_softmax(dim=1)
    scores = []
    for i in range(splits):
        p_chunk = p[(i * n // splits):((i + 1) * n // splits), :]
        log_p_chunk = log_p[(i * n // splits):((i + 1) * n // splits), :]
        q_chunk = p_chunk.mean(dim=0, keepdim=True)
        kl = p_chunk * (log_p_chunk - q_chunk.log())
        kl = kl.sum(dim=1).mean().exp().item()
        scores.append(kl)
    return float(np.mean(scores)), float(np.std(scores))


def is_cases(rng):
    for name, n, temp in (("a", 12345, 4.0), ("b", 777, 1.5)):
        # class-peaked logits: a favourite class per image plus noise
        logits = rng.standard_normal((n, 1008)).astype(np.float32)
        logits[np.arange(n), rng.integers(0, 1008, n)] += temp * 3
        logits *= temp
        m, s = fidelity_is(logits)
        save("is_" + name, logits=logits, adm=np.float64(adm_is(logits)), adm_f32=np.float64(adm_is(logits, dtype=np.float32)),
             adm_one_split=np.float64(adm_is(logits[:3000])), fid_mean=np.float64(m), fid_std=np.float64(s))
        print(f"is_{name}: n={n} adm {adm_is(logits):.12g} (float32 softmax {adm_is(logits, dtype=np.float32):.12g}) "
              f"fidelity {m:.12g} +- {s:.6g}")


# ------------------------------------------------- precision / recall / D&C
def sqdist(u, v, dtype):
    """ADM _batch_pairwise_distances: max(|u|^2 - 2 u.v + |v|^2, 0) in dtype."""
    u, v = u.astype(dtype), v.astype(dtype)
    nu = (u * u).sum(1, dtype=dtype)[:, None]
    nv = (v * v).sum(1, dtype=dtype)[None, :]
    return np.maximum(nu - dtype(2) * (u @ v.T) + nv, dtype(0))


def sqdist_fp16(u, v):
    """kindbench's fp16 emulation (metrics/prdc.h): inputs, norms, products and each sum rounded to fp16."""
    u16, v16 = u.astype(np.float16), v.astype(np.float16)
    nu = np.array([np.sum((r.astype(np.float32) ** 2).astype(np.float16).astype(np.float32), dtype=np.float32)
                   for r in u16]).astype(np.float16)
    nv = np.array([np.sum((r.astype(np.float32) ** 2).astype(np.float16).astype(np.float32), dtype=np.float32)
                   for r in v16]).astype(np.float16)
    g = (u16.astype(np.float32) @ v16.astype(np.float32).T).astype(np.float16)
    t = (nu[:, None].astype(np.float32) - (np.float16(2) * g).astype(np.float32)).astype(np.float16)
    d = (t.astype(np.float32) + nv[None, :].astype(np.float32)).astype(np.float16)
    return np.maximum(d.astype(np.float32), 0)


def manifold_radii(x, k, dist, batch):
    """ManifoldEstimator.manifold_radii: (k+1)-th smallest distance incl. self, row batches."""
    radii = np.zeros(len(x))
    for b in range(0, len(x), batch):
        d = np.concatenate([dist(x[b:b + batch], x[c:c + batch]) for c in range(0, len(x), batch)], axis=1)
        radii[b:b + batch] = np.partition(d, k, axis=1)[:, k]
    return radii


def evaluate_pr(ref, r_ref, samp, r_samp, dist, batch):
    """ManifoldEstimator.evaluate_pr with features_1 = ref, features_2 = samples."""
    ref_in = np.zeros(len(ref), bool)
    samp_in = np.zeros(len(samp), bool)
    for b in range(0, len(ref), batch):
        for c in range(0, len(samp), batch):
            d = dist(ref[b:b + batch], samp[c:c + batch])
            ref_in[b:b + batch] |= (d <= r_samp[None, c:c + batch]).any(1)
            samp_in[c:c + batch] |= (d <= r_ref[b:b + batch, None]).any(0)
    return samp_in.mean(), ref_in.mean()


def prdc_dc(ref, samp, k, dist):
    """prdc compute_prdc density and coverage (real = ref, fake = samples)."""
    r_real = np.partition(dist(ref, ref), k, axis=1)[:, k]
    d = dist(ref, samp)
    density = (1.0 / k) * (d < r_real[:, None]).sum(axis=0).mean()
    coverage = (d.min(axis=1) < r_real).mean()
    return density, coverage


def pr_all(ref, samp, dist, batch=700):
    rr = manifold_radii(ref, 3, dist, batch)
    rs = manifold_radii(samp, 3, dist, batch)
    p, r = evaluate_pr(ref, rr, samp, rs, dist, batch)
    d, c = prdc_dc(ref, samp, 5, dist)
    return np.array([p, r, d, c]), rr, rs


def adm_fp16_batch(u, v):
    """ADM DistanceBlock on one batch pair: fp16 (kindbench's emulation), the whole pair in fp32 if any value overflows."""
    with np.errstate(over="ignore", invalid="ignore"):
        d = sqdist_fp16(u, v)
    return d if np.isfinite(d).all() else sqdist(u, v, np.float32)


def pr_overflow_case():
    """fp16 overflow in one ref row: ADM recomputes every 10000 x 10000 batch pair holding it in fp32, not one block."""
    r2 = np.random.default_rng(11)
    ref = (np.abs(r2.standard_normal((2600, 64))) * 2).astype(np.float32)
    samp = (np.abs(r2.standard_normal((2600, 64))) * 2.05 + 0.02).astype(np.float32)
    ref[2500] *= 40  # |u|^2 ~ 1e6 > 65504
    v16, _, _ = pr_all(ref, samp, adm_fp16_batch, batch=10000)
    save("pr_overflow", ref=ref, samp=samp, fp16=v16)
    print(f"pr_overflow: P R D C = {v16} (ADM fp16 with per-batch fp32 fallback)")


def robust_pr(ref, samp, rr, rs, margin=1e-5):
    """True when every precision/recall decision is at least `margin` (relative) from its radius in float64."""
    d = sqdist(ref, samp, np.float64)
    gap_s = (d - rr[:, None]) / np.maximum(rr[:, None], 1e-30)  # precision: rows = ref radii
    gap_r = (d - rs[None, :]) / np.maximum(rs[None, :], 1e-30)
    for g, axis in ((gap_s, 0), (gap_r, 1)):
        inside = (g <= -margin).any(axis)
        outside = (g > margin).all(axis)
        if not (inside | outside).all():
            return False
    return True


def pr_cases(rng):
    # exact arithmetic: multiples of 1/8 in [-4, 4] (every distance exact in fp32 and fp16 inputs), with ties
    for name, nr, ns, d in (("quant", 900, 1100, 64), ("quant_small", 7, 9, 5)):
        ref = np.clip(np.round(rng.standard_normal((nr, d)) * 8) / 8, -4, 4).astype(np.float32)
        samp = np.clip(np.round((rng.standard_normal((ns, d)) * 1.1 + 0.2) * 8) / 8, -4, 4).astype(np.float32)
        samp[:5] = ref[:5]  # duplicates: distance exactly 0 across the sets
        v64, rr, rs = pr_all(ref, samp, lambda u, v: sqdist(u, v, np.float64))
        v32, _, _ = pr_all(ref, samp, lambda u, v: sqdist(u, v, np.float32))
        v16, _, _ = pr_all(ref, samp, sqdist_fp16)
        save("pr_" + name, ref=ref, samp=samp, exact=v64, fp32=v32, fp16=v16, radii_ref=rr, radii_samp=rs)
        print(f"pr_{name}: P R D C = {v64} (fp32 {v32}, fp16 emulation {v16})")
    # continuous data, drawn until every P/R decision is float64-separated
    for seed in range(100):
        r2 = np.random.default_rng(1000 + seed)
        ref = r2.standard_normal((1500, 128)).astype(np.float32)
        samp = (r2.standard_normal((1700, 128)) * 1.05 + 0.05).astype(np.float32)
        v64, rr, rs = pr_all(ref, samp, lambda u, v: sqdist(u, v, np.float64))
        if robust_pr(ref, samp, rr, rs):
            v32, _, _ = pr_all(ref, samp, lambda u, v: sqdist(u, v, np.float32))
            save("pr_cont", ref=ref, samp=samp, exact=v64, fp32=v32, radii_ref=rr, radii_samp=rs)
            print(f"pr_cont (seed {1000 + seed}): P R D C = {v64} (fp32 {v32})")
            return
    sys.exit("no float64-separated continuous P/R case found")


# ------------------------------------------------------------------ KID
def polynomial_mmd(f1, f2, degree=3, gamma=None, coef0=1):
    """torch-fidelity metric_kid.polynomial_mmd / mmd2 (unbiased)."""
    gamma = 1.0 / f1.shape[1] if gamma is None else gamma
    k11 = (f1 @ f1.T * gamma + coef0) ** degree
    k22 = (f2 @ f2.T * gamma + coef0) ** degree
    k12 = (f1 @ f2.T * gamma + coef0) ** degree
    m = k11.shape[0]
    kt11 = k11.sum(axis=1) - np.diagonal(k11)
    kt22 = k22.sum(axis=1) - np.diagonal(k22)
    mmd2 = (kt11.sum() + kt22.sum()) / (m * (m - 1))
    return mmd2 - 2 * k12.sum(axis=0).sum() / (m * m)


def kid(f1, f2, subsets, size, dtype, seed=2020):
    """torch-fidelity kid_features_to_metric (subset size clamped to min n: kindbench's adaptation)."""
    size = min(size, len(f1), len(f2))
    rng = np.random.RandomState(seed)
    mmds = np.zeros(subsets)
    for i in range(subsets):
        a = f1[rng.choice(len(f1), size, replace=False)].astype(dtype)
        b = f2[rng.choice(len(f2), size, replace=False)].astype(dtype)
        mmds[i] = polynomial_mmd(a, b)
    return np.mean(mmds), np.std(mmds)


def kid_cases(rng):
    for name, ns, nr, d, subsets in (("a", 1500, 1200, 256, 8), ("small", 300, 200, 32, 5)):
        samp = np.maximum(rng.standard_normal((ns, d)) + 0.3, 0).astype(np.float32)
        ref = np.maximum(rng.standard_normal((nr, d)) * 1.1 + 0.2, 0).astype(np.float32)
        m64, s64 = kid(samp, ref, subsets, 1000, np.float64)
        m32, s32 = kid(samp, ref, subsets, 1000, np.float32)
        save("kid_" + name, samp=samp, ref=ref, subsets=np.int64(subsets), mean=np.float64(m64), std=np.float64(s64),
             mean_f32=np.float64(m32), std_f32=np.float64(s32))
        print(f"kid_{name}: {m64:.12g} +- {s64:.6g} (torch-fidelity float32: {m32:.12g})")


# ------------------------------------------------------------- spectral
def spectrum(images):
    """kindbench spectral curve (metrics/spectral.h), numpy."""
    n, h, w, c = images.shape
    x = images.astype(np.float64)
    y = x[..., 0] / 255.0 if c < 3 else (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]) / 255.0
    p = np.abs(np.fft.fft2(y)) ** 2 / (h * w)
    nn = min(h, w)
    fu = np.fft.fftfreq(h) * h
    fv = np.fft.fftfreq(w) * w
    a = (fu * nn / h)[:, None]
    b = (fv * nn / w)[None, :]
    k = np.floor(np.sqrt(a * a + b * b) + 0.5).astype(np.int64)
    kk = nn // 2
    return np.array([np.log10(p[:, k == j].mean()) for j in range(1, kk + 1)])


def spectral_cases(rng):
    out = {}
    for name, (h, w, c) in (("sq", (32, 32, 3)), ("rect", (24, 41, 3)), ("grey", (17, 16, 1)), ("rgba", (20, 20, 4))):
        base = rng.integers(0, 256, (12, h, w, c)).astype(np.float64)
        smooth = (base + np.roll(base, 1, 1) + np.roll(base, 1, 2) + np.roll(base, (1, 1), (1, 2))) / 4
        a = np.clip(smooth, 0, 255).astype(np.uint8)
        b = rng.integers(0, 256, (9, h, w, c)).astype(np.uint8)
        sa, sb = spectrum(a), spectrum(b)
        out.update({f"{name}_a": a, f"{name}_b": b, f"{name}_sa": sa, f"{name}_sb": sb,
                    f"{name}_dist": np.float64(np.mean(np.abs(sa - sb)))})
        print(f"spectral {name}: {h}x{w}x{c} distance {np.mean(np.abs(sa - sb)):.12g}")
    save("spectral", **out)


def rng_cases():
    r = np.random.RandomState(2020)
    p1 = r.permutation(12345)
    p2 = r.permutation(7)
    c1 = r.choice(5000, 1000, replace=False)
    c2 = r.choice(3, 3, replace=False)
    # randint over the full uint32 range returns raw MT19937 outputs
    save("rng", perm12345=p1, perm7=p2, choice5000=c1, choice3=c2,
         u32=np.random.RandomState(2020).randint(0, 2**32, size=5, dtype=np.uint32).astype(np.int64))


# ------------------------------------------------- CLI (tests/test_metrics_cli.sh)
def pixels_features(img):
    """kindbench's test-only 'pixels' featuriser (harness/cmd_eval.c): 8x8 and 4x4 cell means / 255."""
    h, w, _ = img.shape

    def cells(g):
        out = np.zeros((g * g, 3))
        cy = (np.arange(h)[:, None] * g // h) * g + (np.arange(w)[None, :] * g // w)
        for c in range(g * g):
            m = cy == c
            out[c] = img[m].mean(0) if m.any() else img[(c // g) * h // g, (c % g) * w // g]
        return (out / 255.0).astype(np.float32).reshape(-1)

    pool = cells(8)
    return pool, cells(4), (8.0 * pool[:16]).astype(np.float32)


def image_files(root):
    """kindbench's folder order: depth first, each directory's entries in byte order, hidden skipped."""
    out = []
    for name in sorted(os.listdir(root), key=lambda s: s.encode()):
        p = os.path.join(root, name)
        if name.startswith("."):
            continue
        if os.path.isdir(p):
            out += image_files(p)
        elif name.lower().rsplit(".", 1)[-1] in ("png", "jpg", "jpeg", "gif"):
            out.append(p)
    return out


def load_rgb(path):
    from PIL import Image
    return np.array(Image.open(path).convert("RGB"))  # pytorch-fid's conversion


def cli_setup(d):
    """Image folders for the CLI test: RGB/grey/RGBA/LA PNGs, JPEGs and a transparent GIF, nested, plus npz inputs."""
    from PIL import Image
    rng = np.random.default_rng(7)
    for sub in ("samp/a", "samp/b", "ref", "mixed/x", "one", "empty", "webp"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    for i in range(24):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(f"{d}/samp/{'ab'[i % 2]}/s{i:02d}.png")
    for i in range(30):
        a = np.clip(rng.normal(120, 50, (16, 16, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(a).save(f"{d}/ref/r{i:02d}.png")
    modes = [("L", 1), ("RGBA", 4), ("LA", 2), ("RGB", 3)]
    for i in range(12):
        mode, c = modes[i % 4]
        a = rng.integers(0, 256, (20 + i, 17, c), dtype=np.uint8)
        im = Image.fromarray(a[:, :, 0] if c == 1 else a, mode)
        if i % 5 == 4:
            im.convert("RGB").save(f"{d}/mixed/x/j{i:02d}.jpg", quality=90)
        else:
            im.save(f"{d}/mixed/{'x/' if i % 3 == 0 else ''}m{i:02d}.png")
    # a GIF with a transparent index of a non-black colour: convert("RGB") keeps the palette colour there
    gif = Image.fromarray(rng.integers(0, 16, (18, 17), dtype=np.uint8), "P")
    gif.putpalette([int(v) for v in rng.integers(0, 256, 48)])
    gif.save(f"{d}/mixed/x/z_trns.gif", transparency=5)
    open(f"{d}/mixed/readme.txt", "w").write("not an image\n")
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(f"{d}/one/only.png")
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(f"{d}/webp/ok.png")
    open(f"{d}/webp/pic.webp", "wb").write(b"RIFF0000WEBP")
    np.savez(f"{d}/samp.npz", arr_0=np.stack([load_rgb(p) for p in image_files(f"{d}/samp")]))
    np.savez(f"{d}/big_stats.npz", mu=np.zeros(2048), sigma=np.eye(2048))
    np.savez(f"{d}/labels_only.npz", arr_1=np.arange(5))


def cli_check_features(npz, folder):
    """The 'pool'/'logits' and statistics of `eval stats --with-features` against numpy on PIL-converted images."""
    f = np.load(npz)
    feats = [pixels_features(load_rgb(p)) for p in image_files(folder)]
    pool = np.stack([x[0] for x in feats])
    spatial = np.stack([x[1] for x in feats]).astype(np.float64)
    err = [abs(f["pool"] - pool).max(), abs(f["logits"] - np.stack([x[2] for x in feats])).max(),
           abs(f["mu"] - pool.astype(np.float64).mean(0)).max(), abs(f["sigma"] - np.cov(pool, rowvar=False)).max(),
           abs(f["mu_s"] - spatial.mean(0)).max(), abs(f["sigma_s"] - np.cov(spatial, rowvar=False)).max()]
    print("max errors pool, logits, mu, sigma, mu_s, sigma_s:", err)
    assert err[0] <= 1e-6 and err[1] <= 1e-5 and max(err[2:]) <= 1e-9, err
    meta = json.loads(bytes(f["kb_meta"]).decode())
    assert meta["count"] == len(feats) and meta["featurizer"] == "pixels" and len(meta["source_sha256"]) == 64, meta


def cli_check_csv(csv_path, samp_dir, ref_dir):
    """FID/sFID (pytorch-fid formula), IS (ADM splits), KID (torch-fidelity style) from pixel features vs the CSV."""
    import csv
    rows = {r["metric"]: r for r in csv.DictReader(open(csv_path))}
    fs = [pixels_features(load_rgb(p)) for p in image_files(samp_dir)]
    fr = [pixels_features(load_rgb(p)) for p in image_files(ref_dir)]
    want = {}
    for key, k in (("FID", 0), ("sFID", 1)):
        a = np.stack([x[k] for x in fs]).astype(np.float64)
        b = np.stack([x[k] for x in fr]).astype(np.float64)
        want[key] = pytorch_fid_fd(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))[0]
    want["IS"] = adm_is(np.stack([x[2] for x in fs]))
    want["KID"] = kid(np.stack([x[0] for x in fs]), np.stack([x[0] for x in fr]), 100, 1000, np.float64)[0]
    for key, v in want.items():
        got = float(rows[key]["value"])
        print(f"{key}: kindbench {got:.12g} numpy {v:.12g} rel {abs(got - v) / abs(v):.3g}")
        assert abs(got - v) <= 1e-6 * abs(v), key
    assert rows["FID"]["mode"] == "adm" and rows["FID"]["featurizer"] == "pixels", rows["FID"]


def main():
    if len(sys.argv) > 1 and sys.argv[1].startswith("cli-"):
        {"cli-setup": cli_setup, "cli-check-features": cli_check_features, "cli-check-csv": cli_check_csv}[
            sys.argv[1]](*sys.argv[2:])
        return
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(2)
    rng = np.random.default_rng(20240601)
    rng_cases()
    is_cases(rng)
    pr_cases(rng)
    pr_overflow_case()
    kid_cases(rng)
    spectral_cases(rng)
    fid_cases(rng)
    print("metrics fixtures written to", OUT)


if __name__ == "__main__":
    main()
