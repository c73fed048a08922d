#!/usr/bin/python3
"""pytorch_cpu.py - PyTorch's CPU training step for a network of our JSON format, timed the way
lrcnn-validate times its own: one JSON object on stdout.

    /usr/bin/python3 bench/pytorch_cpu.py --net networks/tiny-vgg.json --batch 32 --threads 2

The network is built from the same JSON file lrcnn reads (networks/FORMAT.md): nn.Conv2d,
nn.BatchNorm2d, nn.Linear, nn.Dropout, ReLU in place where the input has no other reader (as
torchvision does), and the functional pooling, add, concat, nearest upsampling and flatten.
The recipe is lrcnn-validate's default: Adam (lr 1e-3), fp32, a synthetic batch of `--batch`
images with random labels, mean cross-entropy; a step is zero_grad, forward, backward,
optimizer step. `--steps` steps are timed one by one; the median skips the first (warm-up), as
lrcnn-validate does.

Output fields: net, input ([C, H, W]), batch, threads, steps, step_ms (every step),
step_ms_median, torch (version), mkldnn (whether oneDNN is available).
Deliberately not here: lrcnn itself (bench/cpu_vs_pytorch.sh runs both), GPUs (pytorch_step.py).
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def pair(v):
    return (int(v[0]), int(v[1])) if isinstance(v, (list, tuple)) else (int(v), int(v))


class JsonNet(nn.Module):
    """The layers of a network file in order; modules are created from the shapes a dry forward
    pass on a zero batch finds."""

    def __init__(self, net, in_hw=None):
        super().__init__()
        inp = net["input"]
        h, w = in_hw or (inp["height"], inp["width"])
        self.layers = net["layers"]
        names = ["input"]
        readers = {}
        for layer in self.layers:
            layer.setdefault("inputs", [names[-1]])
            for s in layer["inputs"]:
                readers[s] = readers.get(s, 0) + 1
            names.append(layer["name"])
        self.readers = readers
        self.mods = nn.ModuleDict()
        vals = {"input": torch.zeros(2, inp["channels"], h, w)}
        with torch.no_grad():
            for layer in self.layers[:-1]:
                ins = [vals[s] for s in layer["inputs"]]
                mod = self.make(layer, ins[0])
                if mod is not None:
                    self.mods[layer["name"]] = mod
                vals[layer["name"]] = self.apply_layer(layer, ins)

    def make(self, layer, x):
        op = layer["op"]
        if op == "conv":
            return nn.Conv2d(x.shape[1], layer["out_channels"], pair(layer["kernel"]),
                             stride=pair(layer.get("stride", 1)), padding=pair(layer.get("pad", 0)),
                             dilation=pair(layer.get("dilation", 1)),
                             groups=int(layer.get("groups", 1)), bias=layer.get("bias", True))
        if op == "batchnorm":
            return nn.BatchNorm2d(x.shape[1], eps=float(layer.get("eps", 1e-5)),
                                  momentum=float(layer.get("momentum", 0.1)))
        if op == "fc":
            return nn.Linear(x[0].numel(), layer["out_features"], bias=layer.get("bias", True))
        if op == "dropout":
            return nn.Dropout(float(layer.get("p", 0.5)))
        if op == "relu":
            only_reader = self.readers.get(layer["inputs"][0], 0) == 1 and layer["inputs"][0] != "input"
            return nn.ReLU(inplace=only_reader)
        return None

    def apply_layer(self, layer, ins):
        op, x = layer["op"], ins[0]
        if op in ("conv", "batchnorm", "dropout", "relu"):
            return self.mods[layer["name"]](x)
        if op == "fc":
            return self.mods[layer["name"]](x.reshape(x.shape[0], -1))
        if op == "maxpool":
            return F.max_pool2d(x, pair(layer["kernel"]), stride=pair(layer.get("stride", layer["kernel"])),
                                padding=pair(layer.get("pad", 0)))
        if op == "avgpool":
            return F.avg_pool2d(x, pair(layer["kernel"]), stride=pair(layer.get("stride", layer["kernel"])),
                                padding=pair(layer.get("pad", 0)), count_include_pad=True)
        if op == "adaptive_avgpool":
            return F.adaptive_avg_pool2d(x, pair(layer["output"]))
        if op == "global_avgpool":
            return F.adaptive_avg_pool2d(x, 1)
        if op == "add":
            y = ins[0] + ins[1]
            for t in ins[2:]:
                y = y + t
            return y
        if op == "concat":
            return torch.cat(ins, dim=1)
        if op == "upsample":
            return F.interpolate(x, scale_factor=int(layer["scale"]), mode="nearest")
        if op == "flatten":
            return x.reshape(x.shape[0], -1)
        raise ValueError("unknown op %r in layer %s" % (op, layer["name"]))

    def forward(self, x):
        vals = {"input": x}
        for layer in self.layers[:-1]:
            vals[layer["name"]] = self.apply_layer(layer, [vals[s] for s in layer["inputs"]])
        return vals[self.layers[-1]["inputs"][0]]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--net", required=True, help="network JSON file")
    p.add_argument("--input", help="HxW (default: the file's input size)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (default: every core)")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    with open(a.net) as f:
        net = json.load(f)
    if net["layers"][-1]["op"] != "softmax_xent":
        sys.exit("%s: the last layer must be softmax_xent" % a.net)
    hw = tuple(int(v) for v in a.input.split("x")) if a.input else None
    torch.manual_seed(a.seed)
    model = JsonNet(net, hw).train()
    inp = net["input"]
    h, w = hw or (inp["height"], inp["width"])
    x = torch.randn(a.batch, inp["channels"], h, w)
    with torch.no_grad():
        classes = model(x[:2]).shape[1]
    y = torch.randint(classes, (a.batch,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        times.append((time.perf_counter() - t0) * 1e3)
    skip = 1 if a.steps > 2 else 0
    print(json.dumps({
        "net": net["name"], "input": [inp["channels"], h, w], "batch": a.batch,
        "threads": torch.get_num_threads(), "steps": a.steps, "step_ms": times,
        "step_ms_median": statistics.median(times[skip:]), "loss": loss.item(),
        "torch": torch.__version__, "mkldnn": torch.backends.mkldnn.is_available(),
    }))


if __name__ == "__main__":
    main()
