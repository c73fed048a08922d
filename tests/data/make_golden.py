#!/usr/bin/python3
"""make_golden.py - independent PyTorch reference for one column training step of the tiny nets.

Interprets the network JSON format (networks/*.json) generically with torch.nn.functional in
float64, runs one training step (forward, mean softmax cross-entropy, backward) on a fixed batch
and writes everything the C side can be checked against to tests/data/golden/<net>.bin.

    /usr/bin/python3 tests/data/make_golden.py            # regenerate every golden file
    /usr/bin/python3 tests/data/make_golden.py --check    # also run the self-checks
    /usr/bin/python3 tests/data/make_golden.py --check --no-write

tiny-resnet-frozen.bin is tiny-resnet's step with frozen BatchNorm (--bn frozen).

File format (little-endian, every value float32):
    "LRGOLD01", uint32 count, then per array:
    uint32 name length, name bytes (no NUL), uint32 ndim, int64 dims[ndim], float32 data (C order)

See tests/data/golden/README.md for the list of arrays and the conventions.
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)

# "<net>-frozen": the same step with the BatchNorm layers frozen (--bn frozen: eval-mode BN with
# fixed running statistics, which gamma and beta still learn through).
NETS = ["tiny-vgg", "tiny-resnet", "tiny-mix", "tiny-resnet-frozen", "tiny-flat"]
FROZEN_SUFFIX = "-frozen"
BATCH = 4
NUM_CLASSES = 10
DROPOUT_BASE = 1234
DROPOUT_STEP = 1
SGD_LR, SGD_MOMENTUM = 0.01, 0.9
ADAM_LR = 0.01
# Layers whose output is NOT stored as "<layer>.out": it is an exact function of a stored array
# (relu.out = max(input.out, 0); flatten.out = its input reshaped; the loss layer's output is
# "loss"). Storing them would double the files for no information.
DERIVED_OUTPUT_OPS = ("relu", "flatten", "softmax_xent")

MASK64 = (1 << 64) - 1


# ------------------------------------------------------------------ dropout mask (ours, not torch's)
def mix64(z):
    """splitmix64 finaliser on a Python int, mod 2^64."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def mix64_np(z):
    """Vectorised mix64 on a numpy uint64 array (numpy uint64 arithmetic wraps mod 2^64)."""
    z = z.astype(np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def dropout_seed(node, base=DROPOUT_BASE, step=DROPOUT_STEP):
    return mix64(base ^ (step << 32) ^ node)


def dropout_keep_scalar(seed, index, p):
    u = (mix64(seed + index * 0x9E3779B97F4A7C15) >> 11) * 2.0 ** -53
    return u >= p


def dropout_mask(seed, numel, p):
    """Boolean keep mask for flat indices 0..numel-1 (index = ((n*C + c)*H + h)*W + w)."""
    idx = np.arange(numel, dtype=np.uint64)
    with np.errstate(over="ignore"):
        arg = np.uint64(seed) + idx * np.uint64(0x9E3779B97F4A7C15)
    u = (mix64_np(arg) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    return u >= p


# ------------------------------------------------------------------ network description
def pair(v):
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            raise ValueError("expected an int or [h, w], got %r" % (v,))
        return (int(v[0]), int(v[1]))
    return (int(v), int(v))


def net_path(srcdir, base):
    """The zoo's networks/<base>.json, else the test-only tests/data/nets/<base>.json."""
    zoo = os.path.join(srcdir, "networks", base + ".json")
    return zoo if os.path.exists(zoo) else os.path.join(srcdir, "tests", "data", "nets", base + ".json")


def load_net(path, frozen_bn=False):
    with open(path) as f:
        net = json.load(f)
    net["frozen_bn"] = frozen_bn
    names = ["input"]
    for i, layer in enumerate(net["layers"]):
        if "inputs" not in layer:
            layer["inputs"] = [names[-1]]
        for src in layer["inputs"]:
            if src not in names:
                raise ValueError("%s: layer %s reads %s, not an earlier layer" % (path, layer["name"], src))
        layer["node"] = i + 1
        layer["frozen"] = frozen_bn and layer["op"] == "batchnorm"
        names.append(layer["name"])
    if net["layers"][-1]["op"] != "softmax_xent":
        raise ValueError("%s: the last layer must be softmax_xent" % path)
    return net


def infer_in_shapes(net):
    """Shape of every layer's first input (batch 1), by a dry forward pass on zeros with
    placeholder parameters of the right shapes."""
    inp = net["input"]
    x = torch.zeros(1, inp["channels"], inp["height"], inp["width"])
    shapes = {}
    params = {}
    vals = {"input": x}
    for layer in net["layers"]:
        ins = [vals[s] for s in layer["inputs"]]
        op = layer["op"]
        shapes[layer["name"]] = ins[0].shape
        if op == "conv":
            kh, kw = pair(layer["kernel"])
            g = int(layer.get("groups", 1))
            params[layer["name"] + ".weight"] = torch.zeros(layer["out_channels"], ins[0].shape[1] // g, kh, kw)
            if layer.get("bias", True):
                params[layer["name"] + ".bias"] = torch.zeros(layer["out_channels"])
        elif op == "fc":
            params[layer["name"] + ".weight"] = torch.zeros(layer["out_features"], ins[0][0].numel())
            if layer.get("bias", True):
                params[layer["name"] + ".bias"] = torch.zeros(layer["out_features"])
        elif op == "batchnorm":
            c = ins[0].shape[1]
            params[layer["name"] + ".weight"] = torch.ones(c)
            params[layer["name"] + ".bias"] = torch.zeros(c)
        if op == "softmax_xent":
            break
        if op in ("batchnorm", "dropout"):  # shape-preserving, and need state we do not have yet
            vals[layer["name"]] = ins[0]
        else:
            vals[layer["name"]] = apply_op(layer, ins, params, {}, training=False)
    return shapes


# ------------------------------------------------------------------ parameters
def init_params(net):
    """Deterministic init: torch.manual_seed(0), then layer by layer in `layers` order:
    conv/fc weight kaiming_uniform_(a=sqrt(5)) and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)) exactly
    like torch.nn.Conv2d/Linear.reset_parameters(); batchnorm gamma = 1 + 0.1*randn(C),
    beta = 0.1*randn(C). Returns an ordered dict name -> leaf tensor, and BN running buffers."""
    in_shapes = infer_in_shapes(net)
    torch.manual_seed(0)
    params = {}
    running = {}
    for layer in net["layers"]:
        name, op = layer["name"], layer["op"]
        s = in_shapes[name]
        if op == "conv":
            kh, kw = pair(layer["kernel"])
            g = int(layer.get("groups", 1))
            cin = s[1]
            if cin % g or layer["out_channels"] % g:
                raise ValueError("%s: channels not divisible by groups" % name)
            w = torch.empty(layer["out_channels"], cin // g, kh, kw)
            torch.nn.init.kaiming_uniform_(w, a=math.sqrt(5))
            params[name + ".weight"] = w
            if layer.get("bias", True):
                fan_in = (cin // g) * kh * kw
                bound = 1.0 / math.sqrt(fan_in)
                b = torch.empty(layer["out_channels"])
                torch.nn.init.uniform_(b, -bound, bound)
                params[name + ".bias"] = b
        elif op == "fc":
            fin = int(np.prod(s[1:]))
            w = torch.empty(layer["out_features"], fin)
            torch.nn.init.kaiming_uniform_(w, a=math.sqrt(5))
            params[name + ".weight"] = w
            if layer.get("bias", True):
                bound = 1.0 / math.sqrt(fin)
                b = torch.empty(layer["out_features"])
                torch.nn.init.uniform_(b, -bound, bound)
                params[name + ".bias"] = b
        elif op == "batchnorm":
            c = s[1]
            params[name + ".weight"] = 1.0 + 0.1 * torch.randn(c)
            params[name + ".bias"] = 0.1 * torch.randn(c)
            running[name + ".running_mean"] = torch.zeros(c)
            running[name + ".running_var"] = torch.ones(c)
    if net["frozen_bn"]:
        # statistics a pretrained model would bring: drawn after the parameters, so that those
        # are the same as in the unfrozen file; float32 values
        torch.manual_seed(3)
        for k in running:
            c = running[k].shape[0]
            v = 0.2 * torch.randn(c) if k.endswith(".running_mean") else 0.5 + torch.rand(c)
            running[k] = v.float().double()
    # Round to float32 values (kept in float64): the golden file stores float32, so the reference
    # is then computed from exactly the values the C side reads.
    for k in params:
        params[k] = params[k].float().double().requires_grad_(True)
    return params, running


# ------------------------------------------------------------------ the interpreter
def apply_op(layer, ins, params, running, training=True):
    op, name = layer["op"], layer["name"]
    x = ins[0]
    if op == "conv":
        return F.conv2d(x, params[name + ".weight"], params.get(name + ".bias"),
                        stride=pair(layer.get("stride", 1)), padding=pair(layer.get("pad", 0)),
                        dilation=pair(layer.get("dilation", 1)), groups=int(layer.get("groups", 1)))
    if op == "maxpool":
        k = pair(layer["kernel"])
        return F.max_pool2d(x, k, stride=pair(layer.get("stride", layer["kernel"])),
                            padding=pair(layer.get("pad", 0)), ceil_mode=False)
    if op == "avgpool":
        k = pair(layer["kernel"])
        return F.avg_pool2d(x, k, stride=pair(layer.get("stride", layer["kernel"])),
                            padding=pair(layer.get("pad", 0)), ceil_mode=False, count_include_pad=True)
    if op == "adaptive_avgpool":
        return F.adaptive_avg_pool2d(x, pair(layer["output"]))
    if op == "global_avgpool":
        return x.mean(dim=(2, 3), keepdim=True)
    if op == "relu":
        return F.relu(x)
    if op == "batchnorm":
        return F.batch_norm(x, running.get(name + ".running_mean"), running.get(name + ".running_var"),
                            params[name + ".weight"], params[name + ".bias"],
                            training=training and not layer.get("frozen", False),
                            momentum=float(layer.get("momentum", 0.1)), eps=float(layer.get("eps", 1e-5)))
    if op == "add":
        y = ins[0]
        for t in ins[1:]:
            y = y + t
        return y
    if op == "concat":
        return torch.cat(ins, dim=1)
    if op == "upsample":
        s = int(layer["scale"])
        return F.interpolate(x, scale_factor=s, mode="nearest")
    if op == "flatten":
        return x.reshape(x.shape[0], -1)
    if op == "fc":
        return F.linear(x.reshape(x.shape[0], -1), params[name + ".weight"], params.get(name + ".bias"))
    if op == "dropout":
        p = float(layer["p"])
        if not training or p == 0.0:
            return x
        seed = dropout_seed(layer["node"])
        keep = dropout_mask(seed, x.numel(), p).reshape(tuple(x.shape))
        return x * torch.from_numpy(keep.astype(np.float64)) * (1.0 / (1.0 - p))
    raise ValueError("unknown op %r in layer %s" % (op, name))


def forward(net, x, labels, params, running):
    """Returns (loss, logits, {layer name: output})."""
    vals = {"input": x}
    for layer in net["layers"]:
        ins = [vals[s] for s in layer["inputs"]]
        if layer["op"] == "softmax_xent":
            logits = ins[0]
            return F.cross_entropy(logits, labels, reduction="mean"), logits, vals
        vals[layer["name"]] = apply_op(layer, ins, params, running)
    raise AssertionError("unreachable")


def make_batch(net):
    inp = net["input"]
    torch.manual_seed(1)
    x = torch.randn(BATCH, inp["channels"], inp["height"], inp["width"])
    torch.manual_seed(2)
    labels = torch.randint(0, NUM_CLASSES, (BATCH,))
    return x.float().double(), labels


def optimizer_step(params0, grads, kind):
    ps = [p.detach().clone().requires_grad_(True) for p in params0.values()]
    for p, g in zip(ps, grads.values()):
        p.grad = g.clone()
    if kind == "momentum":
        opt = torch.optim.SGD(ps, lr=SGD_LR, momentum=SGD_MOMENTUM, weight_decay=0)
    else:
        opt = torch.optim.Adam(ps, lr=ADAM_LR, weight_decay=0)
    opt.step()
    return {k: p.detach() for k, p in zip(params0.keys(), ps)}


def run_net(net, with_outputs=True):
    x, labels = make_batch(net)
    params, running = init_params(net)
    init = {k: v.detach().clone() for k, v in params.items()}
    loss, logits, vals = forward(net, x, labels, params, running)
    logits.retain_grad()
    loss.backward()
    grads = {k: v.grad.detach().clone() for k, v in params.items()}
    arrays = [("input", x), ("labels", labels.to(torch.float64)), ("logits", logits.detach()),
              ("loss", loss.detach().reshape(1))]
    for k, v in init.items():
        arrays.append((k, v))
    for k, v in grads.items():
        arrays.append((k + ".grad", v))
    for k, v in running.items():
        arrays.append((k, v.detach()))
    for k, v in optimizer_step(init, grads, "momentum").items():
        arrays.append((k + ".momentum", v))
    for k, v in optimizer_step(init, grads, "adam").items():
        arrays.append((k + ".adam", v))
    for layer in net["layers"]:
        if not with_outputs or layer["op"] in DERIVED_OUTPUT_OPS:
            continue
        arrays.append((layer["name"] + ".out", vals[layer["name"]].detach()))
    return {"arrays": arrays, "loss": loss.item(), "x": x, "labels": labels, "params": params,
            "init": init, "grads": grads, "running": running, "logits": logits.detach(), "vals": vals}


# ------------------------------------------------------------------ file I/O
MAGIC = b"LRGOLD01"


def write_golden(path, arrays):
    names = [n for n, _ in arrays]
    assert len(set(names)) == len(names), "duplicate array names"
    with open(path, "wb") as f:
        f.write(MAGIC)
        f.write(struct.pack("<I", len(arrays)))
        for name, t in arrays:
            a = np.ascontiguousarray(t.detach().cpu().numpy().astype("<f4"))
            nb = name.encode("ascii")
            assert 0 < len(nb) < 96 and a.ndim <= 4
            f.write(struct.pack("<I", len(nb)))
            f.write(nb)
            f.write(struct.pack("<I", a.ndim))
            f.write(struct.pack("<%dq" % a.ndim, *a.shape))
            f.write(a.tobytes(order="C"))


def read_golden(path):
    with open(path, "rb") as f:
        buf = f.read()
    assert buf[:8] == MAGIC
    (n,) = struct.unpack_from("<I", buf, 8)
    off = 12
    out = {}
    for _ in range(n):
        (ln,) = struct.unpack_from("<I", buf, off)
        off += 4
        name = buf[off:off + ln].decode("ascii")
        off += ln
        (nd,) = struct.unpack_from("<I", buf, off)
        off += 4
        dims = struct.unpack_from("<%dq" % nd, buf, off)
        off += 8 * nd
        cnt = int(np.prod(dims)) if nd else 1
        out[name] = np.frombuffer(buf, dtype="<f4", count=cnt, offset=off).reshape(dims)
        off += 4 * cnt
    assert off == len(buf), "trailing bytes"
    return out


# ------------------------------------------------------------------ self-checks
def check_dropout():
    """The vectorised mask equals the scalar Python-int definition, and keeps about 1-p."""
    for node, p, numel in ((14, 0.25, 256), (3, 0.5, 1000), (99, 0.1, 77)):
        seed = dropout_seed(node)
        m = dropout_mask(seed, numel, p)
        ref = np.array([dropout_keep_scalar(seed, i, p) for i in range(numel)])
        assert (m == ref).all(), "numpy mask differs from the scalar definition"
    m = dropout_mask(dropout_seed(5), 200000, 0.3)
    assert abs(m.mean() - 0.7) < 0.005, m.mean()
    print("  dropout: numpy mask == scalar definition; keep rate %.4f for p=0.3" % m.mean())




def hand_resnet(params):
    """tiny-resnet built by hand from torch.nn modules, loaded with the interpreter's parameters."""
    nn = torch.nn

    def conv(cin, cout, k, s, p, name):
        m = nn.Conv2d(cin, cout, k, stride=s, padding=p, bias=False)
        m.weight.data.copy_(params[name + ".weight"].detach())
        return m

    def bn(c, name):
        m = nn.BatchNorm2d(c)
        m.weight.data.copy_(params[name + ".weight"].detach())
        m.bias.data.copy_(params[name + ".bias"].detach())
        return m

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(conv(1, 8, 3, 1, 1, "conv1"), bn(8, "bn1"), nn.ReLU())
            self.b1 = nn.Sequential(conv(8, 8, 3, 1, 1, "b1_conv1"), bn(8, "b1_bn1"), nn.ReLU(),
                                    conv(8, 8, 3, 1, 1, "b1_conv2"), bn(8, "b1_bn2"))
            self.b2 = nn.Sequential(conv(8, 16, 3, 2, 1, "b2_conv1"), bn(16, "b2_bn1"), nn.ReLU(),
                                    conv(16, 16, 3, 1, 1, "b2_conv2"), bn(16, "b2_bn2"))
            self.down = nn.Sequential(conv(8, 16, 1, 2, 0, "b2_down"), bn(16, "b2_down_bn"))
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
            self.head[2].weight.data.copy_(params["fc.weight"].detach())
            self.head[2].bias.data.copy_(params["fc.bias"].detach())

        def forward(self, x):
            x = self.stem(x)
            x = torch.relu(self.b1(x) + x)
            x = torch.relu(self.b2(x) + self.down(x))
            return self.head(x)

    m = Net()
    names = {"stem.0": "conv1", "stem.1": "bn1", "b1.0": "b1_conv1", "b1.1": "b1_bn1",
             "b1.3": "b1_conv2", "b1.4": "b1_bn2", "b2.0": "b2_conv1", "b2.1": "b2_bn1",
             "b2.3": "b2_conv2", "b2.4": "b2_bn2", "down.0": "b2_down", "down.1": "b2_down_bn",
             "head.2": "fc"}
    return m, names


def hand_mix(params):
    """tiny-mix built by hand from torch.nn modules."""
    nn = torch.nn
    conv1 = nn.Conv2d(1, 8, 3, padding=1)
    conv2 = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2)
    conv3 = nn.Conv2d(16, 16, (3, 5), stride=2, padding=(1, 2))
    bn3 = nn.BatchNorm2d(16)
    fc = nn.Linear(16 * 9, 10)
    for mod, name in ((conv1, "conv1"), (conv2, "conv2"), (conv3, "conv3"), (bn3, "bn3"), (fc, "fc")):
        mod.weight.data.copy_(params[name + ".weight"].detach())
        mod.bias.data.copy_(params[name + ".bias"].detach())

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2, self.conv3, self.bn3, self.fc = conv1, conv2, conv3, bn3, fc
            self.pool1 = nn.AvgPool2d(2, 2)
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.pool3 = nn.MaxPool2d(3, 2, padding=1)
            self.apool = nn.AdaptiveAvgPool2d(3)

        def forward(self, x):
            r1 = torch.relu(self.conv1(x))
            u = self.up(torch.relu(self.conv2(self.pool1(r1))))
            y = torch.relu(self.bn3(self.conv3(torch.cat([u, r1], 1))))
            return self.fc(torch.flatten(self.apool(self.pool3(y)), 1))

    m = Net()
    return m, {k: k for k in ("conv1", "conv2", "conv3", "bn3", "fc")}


def hand_vgg(params):
    """tiny-vgg built by hand, with nn.Dropout replaced by our fixed mask (node 14 = 'drop')."""
    nn = torch.nn
    convs = [("conv1_1", 1, 16), ("conv1_2", 16, 16), ("conv2_1", 16, 32), ("conv2_2", 32, 32)]
    mods = {}
    for name, cin, cout in convs:
        mods[name] = nn.Conv2d(cin, cout, 3, padding=1)
    mods["fc1"] = nn.Linear(32 * 7 * 7, 64)
    mods["fc2"] = nn.Linear(64, 10)
    for name, mod in mods.items():
        mod.weight.data.copy_(params[name + ".weight"].detach())
        mod.bias.data.copy_(params[name + ".bias"].detach())
    keep = torch.from_numpy(dropout_mask(dropout_seed(14), BATCH * 64, 0.25).reshape(BATCH, 64).astype(np.float64))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = nn.ModuleDict(mods)
            self.f1 = nn.Sequential(self.m["conv1_1"], nn.ReLU(), self.m["conv1_2"], nn.ReLU(), nn.MaxPool2d(2),
                                    self.m["conv2_1"], nn.ReLU(), self.m["conv2_2"], nn.ReLU(), nn.MaxPool2d(2),
                                    nn.Flatten(), self.m["fc1"], nn.ReLU())

        def forward(self, x):
            return self.m["fc2"](self.f1(x) * keep / 0.75)

    m = Net()
    return m, {"m." + k: k for k in mods}


# the zoo's tiny nets, also built by hand as torch.nn modules (test-only nets are not)
HAND_BUILT = {"tiny-resnet": hand_resnet, "tiny-mix": hand_mix, "tiny-vgg": hand_vgg}


def compare_with_modules(name, res, frozen_bn=False):
    model, names = HAND_BUILT[name](res["init"])
    model.train()
    mods = dict(model.named_modules())
    for mname, lname in names.items():
        if frozen_bn and isinstance(mods[mname], torch.nn.BatchNorm2d):
            mods[mname].running_mean.copy_(res["running"][lname + ".running_mean"])
            mods[mname].running_var.copy_(res["running"][lname + ".running_var"])
            mods[mname].eval()
    logits = model(res["x"])
    loss = F.cross_entropy(logits, res["labels"])
    loss.backward()
    worst = 0.0

    def cmp(a, b, what):
        nonlocal worst
        d = (a - b).abs().max().item() / max(1.0, b.abs().max().item())
        worst = max(worst, d)
        assert d < 1e-12, "%s: %s differs by %g" % (name, what, d)

    cmp(logits.detach(), res["logits"], "logits")
    cmp(loss.detach(), torch.tensor(res["loss"]), "loss")
    for mname, lname in names.items():
        mod = mods[mname]
        cmp(mod.weight.grad, res["grads"][lname + ".weight"], lname + ".weight.grad")
        if getattr(mod, "bias", None) is not None:
            cmp(mod.bias.grad, res["grads"][lname + ".bias"], lname + ".bias.grad")
        if isinstance(mod, torch.nn.BatchNorm2d):
            cmp(mod.running_mean, res["running"][lname + ".running_mean"], lname + ".running_mean")
            cmp(mod.running_var, res["running"][lname + ".running_var"], lname + ".running_var")
    print("  %s: hand-built torch.nn model agrees (max rel diff %.2e)" % (name, worst))


def check_gradcheck(net):
    """torch.autograd.gradcheck (fast mode) of the interpreter's loss w.r.t. every parameter and the
    input, on a reduced batch (N=2). Only used for nets with few ReLU/max-pool kinks: on tiny-vgg
    (25k ReLUs) the finite differences cross kinks, gradcheck fails and falls back to its very slow
    mode; check_directional() covers it instead."""
    params, running = init_params(net)
    x, labels = make_batch(net)
    x = x[:2].detach().clone().requires_grad_(True)
    labels = labels[:2]
    keys = list(params.keys())

    def f(xx, *ps):
        pd = dict(zip(keys, ps))
        run = {k: v.clone() for k, v in running.items()}
        return forward(net, xx, labels, pd, run)[0]

    ok = torch.autograd.gradcheck(f, (x, *[params[k].detach().clone().requires_grad_(True) for k in keys]),
                                  eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)
    assert ok
    print("  %s: torch.autograd.gradcheck (fast mode, N=2, all parameters and the input) passed" % net["name"])


def check_directional(net, directions=3):
    """Directional central differences of the loss (N=2) along random directions, for the input
    and every parameter tensor, against grad . u. A step crossing a ReLU/max-pool kink spoils one
    difference, so a direction passes when any of three step sizes agrees."""
    params, running = init_params(net)
    x, labels = make_batch(net)
    x = x[:2].detach().clone().requires_grad_(True)
    labels = labels[:2]
    forward(net, x, labels, params, {k: v.clone() for k, v in running.items()})[0].backward()
    gen = torch.Generator().manual_seed(5)

    def loss_at(name, t):
        pd = dict(params)
        xx = x
        if name == "input":
            xx = t
        else:
            pd[name] = t
        return forward(net, xx, labels, pd, {k: v.clone() for k, v in running.items()})[0].item()

    worst = 0.0
    with torch.no_grad():
        for name in ["input"] + list(params):
            t = x if name == "input" else params[name]
            for _ in range(directions):
                u = torch.randn(t.shape, generator=gen)
                an = (t.grad * u).sum().item()
                errs = []
                for h in (1e-6, 1e-7, 1e-8):
                    num = (loss_at(name, t + h * u) - loss_at(name, t - h * u)) / (2 * h)
                    errs.append(abs(num - an) / max(abs(an), 1e-3))
                err = min(errs)
                worst = max(worst, err)
                assert err < 1e-5, "%s: %s: d/du analytic %g, numeric error %g" % (net["name"], name, an, err)
    print("  %s: directional finite differences agree with autograd (worst rel err %.1e)" % (net["name"], worst))


def check_optimizers(res, sgd, adam):
    for k, p0 in res["init"].items():
        g = res["grads"][k]
        assert torch.allclose(sgd[k], p0 - SGD_LR * g, rtol=0, atol=1e-15)
        # first Adam step: m = 0.1 g, v = 0.001 g^2, bias-corrected: p - lr * g / (|g| + eps)
        ref = p0 - ADAM_LR * g / (g.abs() + 1e-8)
        assert torch.allclose(adam[k], ref, rtol=0, atol=1e-13), k
    print("  %s: optimizer steps match the closed-form first step" % res["name"])


def check_running(net, res):
    """running_mean/var against a direct numpy computation from the stored BN inputs; frozen:
    unchanged by the step."""
    before = init_params(net)[1]
    for layer in net["layers"]:
        if layer["op"] != "batchnorm":
            continue
        if net["frozen_bn"]:
            for k in (".running_mean", ".running_var"):
                assert torch.equal(res["running"][layer["name"] + k], before[layer["name"] + k])
            continue
        xin = res["vals"][layer["inputs"][0]].detach().numpy()
        c = xin.shape[1]
        xc = np.moveaxis(xin, 1, 0).reshape(c, -1)  # (N, C, H, W), or (N, C) after a flatten
        rm = 0.1 * xc.mean(1)
        rv = 0.9 + 0.1 * xc.var(1, ddof=1)
        assert np.allclose(res["running"][layer["name"] + ".running_mean"].numpy(), rm, rtol=0, atol=1e-14)
        assert np.allclose(res["running"][layer["name"] + ".running_var"].numpy(), rv, rtol=0, atol=1e-14)


# ------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="run the self-checks too")
    ap.add_argument("--no-write", action="store_true", help="do not write the golden files")
    ap.add_argument("--no-outputs", action="store_true",
                    help="leave out the per-layer '<layer>.out' arrays (about halves the files)")
    ap.add_argument("--srcdir", default=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                    help="repository root (default: two levels above this script)")
    ap.add_argument("nets", nargs="*", default=NETS)
    args = ap.parse_args()

    torch.use_deterministic_algorithms(True)
    outdir = os.path.join(args.srcdir, "tests", "data", "golden")
    os.makedirs(outdir, exist_ok=True)
    if args.check:
        check_dropout()
    for name in args.nets:
        frozen = name.endswith(FROZEN_SUFFIX)
        base = name[:-len(FROZEN_SUFFIX)] if frozen else name
        net = load_net(net_path(args.srcdir, base), frozen)
        res = run_net(net, with_outputs=not args.no_outputs)
        res["name"] = name
        arrays = res["arrays"]
        nfloat = sum(t.numel() for _, t in arrays)
        print("%s: loss %.9f, %d arrays, %d floats" % (name, res["loss"], len(arrays), nfloat))
        if args.check:
            d = dict(arrays)
            check_optimizers(res, {k: d[k + ".momentum"] for k in res["init"]},
                             {k: d[k + ".adam"] for k in res["init"]})
            check_running(net, res)
            if base in HAND_BUILT:
                compare_with_modules(base, res, frozen)
            check_directional(net)
            if base != "tiny-vgg":
                check_gradcheck(net)
            # Twice in a row gives identical bits (no hidden RNG use).
            again = run_net(net, with_outputs=not args.no_outputs)["arrays"]
            assert all(torch.equal(a[1], b[1]) for a, b in zip(arrays, again))
            gmin = min(g.abs()[g != 0].min().item() for g in res["grads"].values() if (g != 0).any())
            nzero = sum(int((g == 0).sum()) for g in res["grads"].values())
            print("  %s: reproducible; smallest nonzero |grad| %.3e, exactly-zero grads %d" % (name, gmin, nzero))
        if not args.no_write:
            path = os.path.join(outdir, name + ".bin")
            write_golden(path, arrays)
            back = read_golden(path)
            for k, t in arrays:
                assert back[k].shape == tuple(t.shape)
                assert np.array_equal(back[k], t.detach().numpy().astype(np.float32))
            print("  wrote %s (%d bytes)" % (os.path.relpath(path, args.srcdir), os.path.getsize(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
