#!/usr/bin/python3
"""make_saved_golden.py - what PyTorch autograd keeps for backward after one forward pass and
the loss, measured with torch.autograd.graph.saved_tensors_hooks, written as saved_golden.json.

The C test tests/test_pytorch.c holds the saved-tensor model of planner/pytorch*.c to these
numbers: the bytes of the distinct storages that the saved tensors of the graph point into,
leaving out the parameters, the BatchNorm buffers, the input batch and the labels (they are
resident anyway).
Sizes are exact (numel * element size of each storage), no allocator rounding.

Models:
  vgg16, resnet18, resnet50, alexnet - torchvision's own classes (their forward code is what
      the profile claims to follow: ReLU(inplace=True), `out += identity`, torch.flatten);
  tiny-vgg, tiny-resnet, tiny-mix - built from networks/*.json with the same conventions as
      planner/pytorch_rules.c (a relu or the first input of an add is updated in place when that
      input has no other reader and its producer does not keep it as its own output).

CPU stands in for CUDA here; three differences are handled explicitly:
  * dropout: on CUDA nn.Dropout runs native_dropout and saves a bool mask (1 byte/element); on
    CPU it saves a float mask. Dropout modules are replaced by torch.native_dropout, the CUDA path.
  * BatchNorm: CPU native_batch_norm saves input, weight, running stats, save_mean, save_invstd;
    cuDNN saves the same plus a reserve tensor that is empty for NCHW spatial BN: same bytes.
  * mean (global average pooling): torch 1.13 saves its input, 2.x only the sizes; the input is
    also saved by the relu before it, so the distinct storages are the same.

Cases with "bn": "frozen" train with the BatchNorm modules in eval mode (lrcnn's --bn frozen):
batch_norm then returns empty save_mean/save_invstd on CPU and on cuDNN alike.

Run: /usr/bin/python3 tests/data/pytorch/make_saved_golden.py  (Debian's CPU torch 1.13 is enough)
"""
import gc
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))


def pair(v):
    return tuple(v) if isinstance(v, list) else (v, v)


class NativeDropout(nn.Module):
    """nn.Dropout as it runs on CUDA: native_dropout, which saves a bool mask."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        return torch.native_dropout(x, self.p, True)[0]


def cuda_dropout(model):
    for name, child in model.named_children():
        if isinstance(child, nn.Dropout):
            setattr(model, name, NativeDropout(child.p))
        else:
            cuda_dropout(child)
    return model


class JsonNet(nn.Module):
    """A network of networks/*.json run node by node, torchvision style."""

    def __init__(self, spec):
        super().__init__()
        self.nodes = []  # (name, op, inputs, module or params)
        names = ["input"]
        shapes = {"input": spec["input"]["channels"]}
        consumers = {}
        layers = spec["layers"]
        for i, l in enumerate(layers):
            ins = l.get("inputs", [names[-1]])
            for u in dict.fromkeys(ins):
                consumers[u] = consumers.get(u, 0) + 1
            names.append(l["name"])
        self.consumers = consumers
        self.ops = {}
        chan = {"input": spec["input"]["channels"]}
        hw = {"input": (spec["input"]["height"], spec["input"]["width"])}
        prev = "input"
        for l in layers:
            ins = l.get("inputs", [prev])
            op, name = l["op"], l["name"]
            c, (h, w) = chan[ins[0]], hw[ins[0]]
            mod = None
            if op == "conv":
                k, s, p = pair(l["kernel"]), pair(l.get("stride", 1)), pair(l.get("pad", 0))
                d = pair(l.get("dilation", 1))
                mod = nn.Conv2d(c, l["out_channels"], k, s, p, d, l.get("groups", 1),
                                bias=l.get("bias", True))
                c = l["out_channels"]
                h, w = [(x + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1
                        for i, x in enumerate((h, w))]
            elif op == "batchnorm":
                mod = nn.BatchNorm2d(c)
            elif op in ("maxpool", "avgpool"):
                k = pair(l["kernel"])
                s, p = pair(l.get("stride", l["kernel"])), pair(l.get("pad", 0))
                mod = (nn.MaxPool2d if op == "maxpool" else nn.AvgPool2d)(k, s, p)
                h, w = [(x + 2 * p[i] - k[i]) // s[i] + 1 for i, x in enumerate((h, w))]
            elif op == "global_avgpool":
                mod = nn.AdaptiveAvgPool2d(1)
                h = w = 1
            elif op == "adaptive_avgpool":
                h, w = pair(l["output"])
                mod = nn.AdaptiveAvgPool2d((h, w))
            elif op == "fc":  # flattens its input implicitly
                mod = nn.Linear(c * h * w, l["out_features"], bias=l.get("bias", True))
                c, h, w = l["out_features"], 1, 1
            elif op == "dropout":
                mod = NativeDropout(l.get("p", 0.5))
            elif op == "upsample":
                h, w = h * l["scale"], w * l["scale"]
            elif op == "concat":
                c = sum(chan[u] for u in ins)
            elif op == "flatten":
                c, h, w = c * h * w, 1, 1
            if mod is not None:
                self.add_module(name, mod)
            self.nodes.append((name, op, ins, l))
            chan[name], hw[name] = c, (h, w)
            prev = name
        self.inplace_ok = {}
        producer_op = {n[0]: n[1] for n in self.nodes}
        producer_op["input"] = "input"
        for name, op, ins, _ in self.nodes:
            u = ins[0]
            self.inplace_ok[name] = (op in ("relu", "add") and self.consumers.get(u, 0) == 1
                                     and producer_op[u] not in ("input", "relu", "flatten"))
        self.relu_inplace = True

    def forward(self, x, y):
        return self.run_nodes(0, len(self.nodes) - 1, x, y)

    def run_nodes(self, first, last, x, y=None):
        """Layers first..last (0-based) on x, the output of the layer before first."""
        vals = {self.nodes[first - 1][0] if first > 0 else "input": x}
        out = x
        for name, op, ins, l in self.nodes[first:last + 1]:
            a = vals[ins[0]]
            if op == "relu":
                out = F.relu(a, inplace=self.inplace_ok[name] and self.relu_inplace)
            elif op == "add":
                if self.inplace_ok[name]:
                    out = a
                    for u in ins[1:]:
                        out += vals[u]
                else:
                    out = a + sum(vals[u] for u in ins[1:])
            elif op == "concat":
                out = torch.cat([vals[u] for u in ins], 1)
            elif op == "upsample":
                out = F.interpolate(a, scale_factor=l["scale"], mode="nearest")
            elif op == "flatten":
                out = torch.flatten(a, 1)
            elif op == "softmax_xent":
                out = F.cross_entropy(a, y)
            elif op == "fc":
                out = getattr(self, name)(torch.flatten(a, 1))
            else:
                out = getattr(self, name)(a)
            vals[name] = out
        return out

    def units(self, form):
        """The checkpoint units as (first, last) layer ranges, by the rules of
        planner/pytorch_checkpoint.c: cuts of the body (only one tensor crosses), then `top`
        (blocks grouped into stages, a block with a layer on its shortcut opening one) or
        `blocks` (a relu that is the only reader of the layer before it joins its unit)."""
        names = [n[0] for n in self.nodes]
        index = {n: i for i, n in enumerate(names)}
        index["input"] = -1
        readers = {}
        for i, (name, op, ins, _) in enumerate(self.nodes):
            for u in ins:
                readers.setdefault(u, set()).add(i)
        head = next(i for i, n in enumerate(self.nodes)
                    if n[1] in ("adaptive_avgpool", "global_avgpool", "flatten", "fc",
                                "softmax_xent"))
        reach, cuts = max(readers["input"]), []
        for i in range(head):
            if reach <= i:
                cuts.append(i)
            reach = max(reach, max(readers.get(names[i], {i})))

        def joins(k):
            i = cuts[k]
            return (k + 1 < len(cuts) and cuts[k + 1] == i + 1 and self.nodes[i + 1][1] == "relu"
                    and self.nodes[i + 1][2][0] == names[i] and len(readers[names[i]]) == 1)

        if form == "blocks":
            ends = [c for k, c in enumerate(cuts) if not joins(k)]
        else:
            ends, a, k, in_stage = [], -1, 0, False
            while k < len(cuts):
                b = cuts[k]
                block = b - a > 1
                if block and joins(k):
                    k += 1
                    b = cuts[k]
                inp = names[a] if a >= 0 else "input"
                identity = any(len(self.nodes[j][2]) > 1 and inp in self.nodes[j][2]
                               for j in range(a + 1, b + 1))
                if block and in_stage and identity:
                    ends[-1] = b
                else:
                    ends.append(b)
                in_stage, a, k = block, b, k + 1
        return [(e0 + 1, e1) for e0, e1 in zip([-1] + ends[:-1], ends)], head


def checkpoint_sequential(funcs, segments, inp, kept):
    """torch.utils.checkpoint.checkpoint_sequential(funcs, segments, inp, use_reentrant=False)
    as torch 2.x runs it: segments - 1 checkpointed chunks of len(funcs) // segments functions,
    the rest run normally. torch 2.x keeps each chunk's input for the recompute by saving it
    (_NoopSaveInputs); torch 1.13 keeps it in a closure, so it is recorded in `kept`."""
    size = len(funcs) // segments

    def run(start, end):
        def forward(x):
            for j in range(start, end + 1):
                x = funcs[j](x)
            return x
        return forward

    end = -1
    for start in range(0, size * (segments - 1), size):
        end = start + size - 1
        kept.append(inp)
        inp = torch.utils.checkpoint.checkpoint(run(start, end), inp, use_reentrant=False)
    return run(end + 1, len(funcs) - 1)(inp)


def relu_not_in_place(model):
    """The checkpoint idiom: every nn.ReLU with inplace=False."""
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False


def torchvision_units(model, name, form):
    """checkpoint_sequential's modules for a torchvision model, and its head."""
    def fold(modules):
        units = []
        for m in modules:
            if isinstance(m, nn.ReLU) and units:
                units[-1] = nn.Sequential(units[-1], m)
            else:
                units.append(m)
        return units

    if name.startswith(("vgg", "alexnet")):
        body = list(model.features)
        head = lambda t: model.classifier(torch.flatten(model.avgpool(t), 1))
        return (body if form == "top" else fold(body)), head
    layers = [model.layer1, model.layer2, model.layer3, model.layer4]
    head = lambda t: model.fc(torch.flatten(model.avgpool(t), 1))
    if form == "top":
        return [model.conv1, model.bn1, model.relu, model.maxpool] + layers, head
    blocks = [b for layer in layers for b in layer]
    return [model.conv1, nn.Sequential(model.bn1, model.relu), model.maxpool] + blocks, head


def saved_bytes(model, x, y, forward):
    """Bytes and count of the distinct storages saved for backward, less params/buffers/x/y."""
    resident = {t.data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    resident |= {x.data_ptr(), y.data_ptr()}
    storages = {}

    def pack(t):
        st = t.storage()
        if st.data_ptr() not in resident:
            storages[st.data_ptr()] = (st.size() * t.element_size(), str(t.dtype))
        return t.detach()  # a saved output packed with its grad_fn would keep the graph alive

    kept = []
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = forward(x, y, kept)
    for t in kept:
        pack(t)
    assert loss.requires_grad
    del loss, kept
    gc.collect()  # checkpoint frames hold Python cycles: free each graph before the next case
    by_dtype = {}
    for nbytes, dtype in storages.values():
        by_dtype[dtype] = by_dtype.get(dtype, 0) + nbytes
    return sum(b for b, _ in storages.values()), len(storages), by_dtype


def freeze_bn(model, bn):
    """--bn frozen: the BatchNorm modules in eval mode (running statistics, an affine map)."""
    if bn == "frozen":
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
    return model


def tagged(case, bn, ckpt):
    if bn != "exact":
        case["bn"] = bn
    if ckpt:
        case["checkpoint"] = {"units": ckpt[0], "segments": ckpt[1]}
    return case


def torchvision_case(name, batch, ckpt=None, classes=1000, bn="exact"):
    torch.manual_seed(0)
    model = freeze_bn(cuda_dropout(getattr(torchvision.models, name)(num_classes=classes)).train(), bn)
    x = torch.randn(batch, 3, 224, 224)
    y = torch.randint(0, classes, (batch,))
    if ckpt:
        relu_not_in_place(model)
        units, head = torchvision_units(model, name, ckpt[0])
        forward = lambda a, b, kept: F.cross_entropy(
            head(checkpoint_sequential(units, ckpt[1], a, kept)), b)
    else:
        forward = lambda a, b, kept: F.cross_entropy(model(a), b)
    total, count, by_dtype = saved_bytes(model, x, y, forward)
    return tagged({"net": name, "source": "torchvision." + name, "batch": batch, "height": 224,
                   "width": 224, "saved_bytes": total, "saved_storages": count,
                   "by_dtype": by_dtype}, bn, ckpt)


def json_case(name, batch, ckpt=None, bn="exact"):
    torch.manual_seed(0)
    with open(os.path.join(ROOT, "networks", name + ".json")) as f:
        spec = json.load(f)
    model = freeze_bn(JsonNet(spec).train(), bn)
    inp = spec["input"]
    x = torch.randn(batch, inp["channels"], inp["height"], inp["width"])
    classes = [l for l in spec["layers"] if l["op"] == "fc"][-1]["out_features"]
    y = torch.randint(0, classes, (batch,))
    if ckpt:
        model.relu_inplace = False
        ranges, head = model.units(ckpt[0])
        funcs = [lambda t, r=r: model.run_nodes(r[0], r[1], t) for r in ranges]
        last = len(model.nodes) - 1
        forward = lambda a, b, kept: model.run_nodes(
            head, last, checkpoint_sequential(funcs, ckpt[1], a, kept), b)
    else:
        forward = lambda a, b, kept: model.forward(a, b)
    total, count, by_dtype = saved_bytes(model, x, y, forward)
    return tagged({"net": name, "source": "networks/%s.json" % name, "batch": batch,
                   "height": inp["height"], "width": inp["width"], "saved_bytes": total,
                   "saved_storages": count, "by_dtype": by_dtype}, bn, ckpt)


def main():
    torch.set_grad_enabled(True)
    forms = [None] + [(units, segments) for units in ("top", "blocks") for segments in (2, 4)]
    cases = [json_case("tiny-vgg", 7)]
    for name, batch in (("tiny-vgg", 4), ("tiny-resnet", 4), ("tiny-mix", 3)):
        cases += [json_case(name, batch, ckpt) for ckpt in forms]
    for name in ("vgg11", "vgg13", "vgg16", "vgg19", "resnet18", "resnet34", "resnet50",
                 "resnet101", "alexnet"):
        cases += [torchvision_case(name, 2, ckpt) for ckpt in forms]
    cases += [json_case("tiny-resnet", 4, bn="frozen"), json_case("tiny-mix", 3, bn="frozen"),
              torchvision_case("resnet18", 2, bn="frozen"),
              torchvision_case("resnet50", 2, bn="frozen")]
    doc = {"generator": "tests/data/pytorch/make_saved_golden.py",
           "torch": torch.__version__, "torchvision": torchvision.__version__,
           "what": "bytes of distinct storages saved for backward after forward + cross-entropy "
                   "loss, less parameters, buffers, input and labels; dropout as on CUDA; "
                   "checkpoint: checkpoint_sequential(units, segments, x, use_reentrant=False) "
                   "over the body, the head after it, ReLUs not in place, each checkpointed "
                   "chunk's input counted as saved (torch 2.x's _NoopSaveInputs); bn frozen: "
                   "the BatchNorm modules in eval mode",
           "cases": cases}
    out = os.path.join(HERE, "saved_golden.json")
    with open(out, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
    for c in cases:
        ck = c.get("checkpoint")
        form = "%s/%d" % (ck["units"], ck["segments"]) if ck else "bn " + c.get("bn", "exact")
        print("%-12s batch %d %-10s: %d bytes in %d storages %s" % (
            c["net"], c["batch"], form, c["saved_bytes"], c["saved_storages"], c["by_dtype"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
