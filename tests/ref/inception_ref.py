#!/usr/bin/env python3
"""PyTorch/PIL/numpy references for kindbench's native FID Inception
(tests/test_inception*.c, tests/test_torch_pickle*.c). Writes to $KB_FIXTURES:

  inception_rand_legacy.pth   a pytorch-fid-topology Inception-v3 state dict with
                              random weights (non-trivial BatchNorm statistics),
                              in torch.save's legacy format (as the real
                              pt_inception-2015-12-05-6726825d.pth)
  inception_rand_zip.pth      the same state dict in the zip format
  inception_ref.safetensors   test images (uint8, odd sizes, grey, RGBA, a downscale), the
                              network inputs of each pre-processing mode, and the
                              features of the network on them (pool3, spatial,
                              unbiased logits) in pytorch-fid and adm modes
  tp_small_legacy.pth,        small state dicts for the pickle reader: strided
  tp_small_zip.pth            and offset views, an nn.Parameter, int64 and float64
  tp_small.safetensors        tensors, an OrderedDict with _metadata; and their values
  real_head_listing.txt       (when ../shared/weights holds the header file) the real
                              file's entries as Python's pickle reads them
  inception_real_ref.safetensors  (when ../shared/weights holds the full real file)
                              features of the real network

The network is torchvision's inception_v3(num_classes=1008, aux_logits=False)
with pytorch-fid's patches, written here from its description: the pool
branches of Mixed_5b-5d, 6b-6e and 7b use avg_pool2d(3, 1, 1,
count_include_pad=False); Mixed_7c's pool branch is max_pool2d(3, 1, 1).
The adm-mode resize is computed independently here in numpy (TF1 legacy
bilinear, torch-fidelity's "slow" algorithm); clean mode uses PIL's float
('F') bicubic resize per channel, as clean-fid does.
"""
import collections
import os
import pickle
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.models.inception as tvi
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

OUT = os.environ.get("KB_FIXTURES", ".")
SRC = os.environ.get("KB_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
WEIGHTS_DIR = os.path.join(SRC, "..", "shared", "weights")
REAL = os.path.join(WEIGHTS_DIR, "pt_inception-2015-12-05-6726825d.pth")
REAL_HEAD = os.path.join(WEIGHTS_DIR, "pt_inception-2015-12-05-6726825d.head-818371.pth")
S = 299
NET_IMAGES = 5  # images run through the network (the 6th is a resize-only downscale)


# ---------------------------------------------------------------- the network

class FIDInceptionA(tvi.InceptionA):
    def forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False))
        return torch.cat([b1, b5, b3, bp], 1)


class FIDInceptionC(tvi.InceptionC):
    def forward(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for m in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = m(d)
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False))
        return torch.cat([b1, b7, d, bp], 1)


class FIDInceptionE(tvi.InceptionE):
    use_max = False

    def forward(self, x):
        b1 = self.branch1x1(x)
        a = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(a), self.branch3x3_2b(a)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        if self.use_max:  # FIDInceptionE_2 (Mixed_7c)
            p = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:  # FIDInceptionE_1 (Mixed_7b)
            p = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        return torch.cat([b1, b3, bd, self.branch_pool(p)], 1)


class FIDInceptionE2(FIDInceptionE):
    use_max = True


def fid_inception():
    net = tvi.inception_v3(weights=None, num_classes=1008, aux_logits=False, init_weights=False)
    net.Mixed_5b = FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = FIDInceptionE(1280)
    net.Mixed_7c = FIDInceptionE2(2048)
    return net


def features(net, x):
    """x: NCHW float32 network inputs. Returns pool3, spatial (HWC, 7 channels), unbiased logits."""
    grab = {}
    h = net.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, o: grab.__setitem__("s", o))
    with torch.no_grad():
        y = x
        for name in ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                     "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool"]:
            y = getattr(net, name)(y)
        pool = y.flatten(1)
        logits = pool @ net.fc.weight.T
    h.remove()
    spatial = grab["s"].permute(0, 2, 3, 1)[..., :7].reshape(x.shape[0], -1)
    return pool.cpu().numpy(), spatial.cpu().numpy(), logits.cpu().numpy()


def randomize(net, gen, calib):
    """Random convolutions, BatchNorm affine parameters, running statistics
    from one training-mode pass (so activations stay well scaled), then
    perturbed so that they are not batch statistics."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
                m.reset_running_stats()
                m.momentum = 1.0
        net.fc.weight.copy_(0.02 * torch.randn(net.fc.weight.shape, generator=gen))
        net.fc.bias.copy_(torch.randn(net.fc.bias.shape, generator=gen))  # must be ignored (unbiased logits)
        net.train()
        net(calib)
        net.eval()
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                std = m.running_var.sqrt()
                m.running_mean.add_(0.1 * std * torch.randn(std.shape, generator=gen))
                m.running_var.mul_(0.7 + 0.6 * torch.rand(std.shape, generator=gen))


# ---------------------------------------------------------------- pre-processing

def rgb_of(img):
    """PIL .convert('RGB'): grey replicated, alpha dropped. float32 [H, W, 3] in 0..255."""
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return img[:, :, :3].astype(np.float32)


def tf1_axis(n_in):
    scale = np.float32(n_in / S)
    g = np.arange(S, dtype=np.float32) * scale
    lo = g.astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (g - lo.astype(np.float32)).astype(np.float32)


def pre_adm(img):
    x = rgb_of(img)
    ylo, yhi, dy = tf1_axis(x.shape[0])
    xlo, xhi, dx = tf1_axis(x.shape[1])
    a, b = x[ylo][:, xlo], x[ylo][:, xhi]
    c, d = x[yhi][:, xlo], x[yhi][:, xhi]
    top = a + (b - a) * dx[None, :, None]
    bot = c + (d - c) * dx[None, :, None]
    out = top + (bot - top) * dy[:, None, None]
    return ((out - np.float32(128)) / np.float32(128)).astype(np.float32)


def pre_pytorch_fid(img):
    t = torch.from_numpy(rgb_of(img).transpose(2, 0, 1).copy())[None] / 255
    t = F.interpolate(t, size=(S, S), mode="bilinear", align_corners=False)
    return (2 * t - 1)[0].permute(1, 2, 0).numpy().astype(np.float32)


def pre_clean(img):
    x = rgb_of(img)
    chans = []
    for ch in range(3):
        im = Image.fromarray(x[:, :, ch], mode="F").resize((S, S), resample=Image.BICUBIC)
        chans.append(np.asarray(im).clip(0, 255))
    out = np.stack(chans, axis=2).astype(np.float32)
    return ((out - np.float32(128)) / np.float32(128)).astype(np.float32)


def make_images(rs):
    """Odd sizes, a 299 square (no resize), grey, RGBA. Smooth patterns plus noise."""
    def pattern(h, w, c):
        yy, xx = np.mgrid[0:h, 0:w]
        base = 127 + 100 * np.sin(xx[..., None] / (3 + np.arange(c)) + yy[..., None] / 5.0)
        return np.clip(base + rs.randint(-40, 41, size=(h, w, c)), 0, 255).astype(np.uint8)
    return [pattern(64, 64, 3), pattern(37, 50, 3), pattern(299, 299, 3), pattern(45, 40, 1), pattern(30, 30, 4),
            pattern(333, 400, 3)]  # the last one (a downscale) only for the resize checks


def nchw(batch):
    return torch.from_numpy(np.stack(batch).transpose(0, 3, 1, 2).copy())


# ---------------------------------------------------------------- pickle reader fixtures

def small_state_dict(gen):
    base = torch.randn(4, 5, generator=gen)
    sd = collections.OrderedDict()
    sd["a.weight"] = torch.randn(3, 4, generator=gen)
    sd["b.num_batches_tracked"] = torch.tensor(7, dtype=torch.int64)
    sd["c.transposed"] = base.t()             # strided view [5, 4] of a [4, 5] storage
    sd["d.offset"] = base[1:3]                # storage offset 5
    sd["e.double"] = torch.randn(3, generator=gen, dtype=torch.float64)
    sd["f.param"] = torch.nn.Parameter(torch.randn(2, 3, generator=gen))  # _rebuild_parameter
    sd["g.scalar"] = torch.tensor(1.5)
    sd._metadata = collections.OrderedDict([("", {"version": 1}), ("a", {"version": 2})])
    return sd


def write_small(gen):
    sd = small_state_dict(gen)
    torch.save(sd, os.path.join(OUT, "tp_small_legacy.pth"), _use_new_zipfile_serialization=False)
    torch.save(sd, os.path.join(OUT, "tp_small_zip.pth"))
    st.save(os.path.join(OUT, "tp_small.safetensors"),
            {k: v.detach().contiguous().numpy() for k, v in sd.items()})


class HeaderLister(pickle.Unpickler):
    """Reads a legacy checkpoint's pickles with nothing but descriptions built."""

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return lambda storage, offset, size, stride, *rest: ("T", storage, offset, tuple(size), tuple(stride))
        if module == "torch" and name.endswith("Storage"):
            return name
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"unexpected global {module}.{name}")

    def persistent_load(self, pid):
        return ("S", pid[1], pid[2], pid[4])


DTYPES = {"FloatStorage": ("f32", 4), "LongStorage": ("i64", 8), "DoubleStorage": ("f64", 8)}


def write_real_listing():
    with open(REAL_HEAD, "rb") as f:
        pickle.load(f)  # magic
        pickle.load(f)  # protocol version
        pickle.load(f)  # sys_info
        sd = HeaderLister(f).load()
        keys = pickle.load(f)
        start = f.tell()
    numel = {}
    lines = []
    for name, (_, (_, stype, key, n), offset, size, stride) in sd.items():
        numel[key] = (n, DTYPES[stype][1])
        lines.append("%s %s %s %s %d %s" % (name, DTYPES[stype][0], ",".join(map(str, size)) or "-", key, offset,
                                            ",".join(map(str, stride)) or "-"))
    expected = start + sum(8 + n * es for n, es in (numel[k] for k in keys))
    with open(os.path.join(OUT, "real_head_listing.txt"), "w") as f:
        f.write("entries %d\nstorages %d\ndata_start %d\nexpected_size %d\n" % (len(sd), len(keys), start, expected))
        f.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------- main

def main():
    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    gen = torch.Generator().manual_seed(1234)
    rs = np.random.RandomState(5)
    images = make_images(rs)

    net = fid_inception()
    calib = nchw([pre_pytorch_fid(im) for im in images[:3]])  # (before any random draw of randomize)
    randomize(net, gen, calib)
    sd = net.state_dict()
    torch.save(sd, os.path.join(OUT, "inception_rand_legacy.pth"), _use_new_zipfile_serialization=False)
    torch.save(sd, os.path.join(OUT, "inception_rand_zip.pth"))

    out = {}
    modes = {"adm": pre_adm, "pytorch-fid": pre_pytorch_fid, "clean": pre_clean}
    inputs = {m: [fn(im) for im in images] for m, fn in modes.items()}
    for i, im in enumerate(images):
        out["img.%d" % i] = im
        for m in modes:
            out["in.%s.%d" % (m, i)] = inputs[m][i]
    pool, spatial, logits = features(net, nchw(inputs["pytorch-fid"][:NET_IMAGES]))
    out.update({"pytorch-fid.pool": pool, "pytorch-fid.spatial": spatial, "pytorch-fid.logits": logits})
    pool, spatial, logits = features(net, nchw(inputs["adm"][:2]))
    out.update({"adm.pool": pool, "adm.spatial": spatial, "adm.logits": logits})
    st.save(os.path.join(OUT, "inception_ref.safetensors"), out,
            {"images": str(NET_IMAGES), "resize_images": str(len(images))})

    write_small(gen)
    if os.path.exists(REAL_HEAD):
        write_real_listing()
    if os.path.exists(REAL):
        real = fid_inception()
        real.load_state_dict(torch.load(REAL))
        real.eval()
        pool, spatial, logits = features(real, nchw(inputs["adm"][:2]))
        st.save(os.path.join(OUT, "inception_real_ref.safetensors"),
                {"adm.pool": pool, "adm.spatial": spatial, "adm.logits": logits})


if __name__ == "__main__":
    main()
