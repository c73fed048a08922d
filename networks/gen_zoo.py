#!/usr/bin/env python3
"""Generates the network zoo (networks/*.json) for lrcnn.

    python3 networks/gen_zoo.py

Writes vgg11/13/16/19, resnet18/34/50/101 and alexnet next to this script, matching
torchvision's models (1000 classes, 3x224x224 input). Standard library only; the
output is deterministic. Every written net is re-read, shape-inferred with the same
rules as the planner's loader (see FORMAT.md), and its parameter count is asserted to
equal torchvision's. The hand-written tiny-*.json nets are checked the same way (their
counts are printed, not asserted). If the optional `jsonschema` package is importable,
all nets are also validated against network.schema.json; otherwise that step is skipped.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# torchvision 0.14: sum(p.numel() for p in model.parameters())
EXPECTED_PARAMS = {
    "vgg11": 132863336,
    "vgg13": 133047848,
    "vgg16": 138357544,
    "vgg19": 143667240,
    "resnet18": 11689512,
    "resnet34": 21797672,
    "resnet50": 25557032,
    "resnet101": 44549160,
    "alexnet": 61100840,
}

IMAGENET_INPUT = {"channels": 3, "height": 224, "width": 224}
NUM_CLASSES = 1000


# ---------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------

KEY_ORDER = ["out_channels", "out_features", "kernel", "stride", "pad", "dilation", "groups",
             "bias", "output", "scale", "eps", "momentum", "p", "inputs"]


def layer(name, op, **kw):
    """A layer dict with keys in a fixed order: name, op, op parameters, inputs.
    A conv stride of 1 (the default) is left out."""
    if op == "conv" and kw.get("stride") == 1:
        del kw["stride"]
    d = {"name": name, "op": op}
    for key in KEY_ORDER:
        if key in kw:
            d[key] = kw.pop(key)
    assert not kw, "unknown layer keys %s" % sorted(kw)
    return d


VGG_CFGS = {
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "vgg16": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "vgg19": [[64, 64], [128, 128], [256, 256, 256, 256], [512, 512, 512, 512],
              [512, 512, 512, 512]],
}
VGG_LETTER = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}


def vgg(name):
    cfg = VGG_CFGS[name]
    n_conv = sum(len(b) for b in cfg)
    layers = []
    for b, block in enumerate(cfg, 1):
        for i, ch in enumerate(block, 1):
            layers.append(layer("conv%d_%d" % (b, i), "conv", out_channels=ch, kernel=3, pad=1))
            layers.append(layer("relu%d_%d" % (b, i), "relu"))
        layers.append(layer("pool%d" % b, "maxpool", kernel=2, stride=2))
    layers += [
        layer("avgpool", "adaptive_avgpool", output=7),
        layer("flatten", "flatten"),
        layer("fc6", "fc", out_features=4096),
        layer("relu6", "relu"),
        layer("drop6", "dropout", p=0.5),
        layer("fc7", "fc", out_features=4096),
        layer("relu7", "relu"),
        layer("drop7", "dropout", p=0.5),
        layer("fc8", "fc", out_features=NUM_CLASSES),
        layer("loss", "softmax_xent"),
    ]
    desc = ("torchvision %s (VGG configuration %s, no batch norm): %d 3x3 convs in 5 blocks with "
            "2x2 max pooling, adaptive average pooling to 7x7, three fc layers with dropout; "
            "1000 classes." % (name, VGG_LETTER[name], n_conv))
    return {"name": name, "description": desc, "input": IMAGENET_INPUT, "layers": layers}


RESNET_CFGS = {
    # name: (block type, blocks per stage)
    "resnet18": ("basic", [2, 2, 2, 2]),
    "resnet34": ("basic", [3, 4, 6, 3]),
    "resnet50": ("bottleneck", [3, 4, 6, 3]),
    "resnet101": ("bottleneck", [3, 4, 23, 3]),
}


def resnet(name):
    kind, counts = RESNET_CFGS[name]
    expansion = 1 if kind == "basic" else 4
    layers = [
        layer("conv1", "conv", out_channels=64, kernel=7, stride=2, pad=3, bias=False),
        layer("bn1", "batchnorm"),
        layer("relu", "relu"),
        layer("maxpool", "maxpool", kernel=3, stride=2, pad=1),
    ]
    prev = "maxpool"
    in_ch = 64
    for stage, (planes, n_blocks) in enumerate(zip([64, 128, 256, 512], counts), 1):
        for blk in range(n_blocks):
            stride = 2 if (stage > 1 and blk == 0) else 1
            p = "layer%d_%d_" % (stage, blk)
            block_in = prev
            if kind == "basic":
                layers += [
                    layer(p + "conv1", "conv", out_channels=planes, kernel=3, stride=stride,
                          pad=1, bias=False),
                    layer(p + "bn1", "batchnorm"),
                    layer(p + "relu1", "relu"),
                    layer(p + "conv2", "conv", out_channels=planes, kernel=3, pad=1, bias=False),
                    layer(p + "bn2", "batchnorm"),
                ]
                last_bn = p + "bn2"
            else:
                # torchvision v1.5: the stride sits on the 3x3 conv (conv2).
                layers += [
                    layer(p + "conv1", "conv", out_channels=planes, kernel=1, bias=False),
                    layer(p + "bn1", "batchnorm"),
                    layer(p + "relu1", "relu"),
                    layer(p + "conv2", "conv", out_channels=planes, kernel=3, stride=stride,
                          pad=1, bias=False),
                    layer(p + "bn2", "batchnorm"),
                    layer(p + "relu2", "relu"),
                    layer(p + "conv3", "conv", out_channels=planes * expansion, kernel=1,
                          bias=False),
                    layer(p + "bn3", "batchnorm"),
                ]
                last_bn = p + "bn3"
            out_ch = planes * expansion
            if stride != 1 or in_ch != out_ch:
                layers += [
                    layer(p + "downsample_conv", "conv", out_channels=out_ch, kernel=1,
                          stride=stride, bias=False, inputs=[block_in]),
                    layer(p + "downsample_bn", "batchnorm"),
                ]
                shortcut = p + "downsample_bn"
            else:
                shortcut = block_in
            layers += [
                layer(p + "add", "add", inputs=[last_bn, shortcut]),
                layer(p + "relu", "relu"),
            ]
            prev = p + "relu"
            in_ch = out_ch
    layers += [
        layer("avgpool", "global_avgpool"),
        layer("flatten", "flatten"),
        layer("fc", "fc", out_features=NUM_CLASSES),
        layer("loss", "softmax_xent"),
    ]
    block_desc = ("BasicBlock" if kind == "basic"
                  else "Bottleneck v1.5, stride on the 3x3 conv")
    desc = ("torchvision %s (%s, %s blocks per stage): 7x7/2 stem with 3x3/2 max pooling, "
            "batch norm after every conv, 1x1 downsample shortcuts, global average pooling, "
            "one fc layer; 1000 classes." % (name, block_desc, "-".join(map(str, counts))))
    return {"name": name, "description": desc, "input": IMAGENET_INPUT, "layers": layers}


def alexnet():
    layers = [
        layer("conv1", "conv", out_channels=64, kernel=11, stride=4, pad=2),
        layer("relu1", "relu"),
        layer("pool1", "maxpool", kernel=3, stride=2),
        layer("conv2", "conv", out_channels=192, kernel=5, pad=2),
        layer("relu2", "relu"),
        layer("pool2", "maxpool", kernel=3, stride=2),
        layer("conv3", "conv", out_channels=384, kernel=3, pad=1),
        layer("relu3", "relu"),
        layer("conv4", "conv", out_channels=256, kernel=3, pad=1),
        layer("relu4", "relu"),
        layer("conv5", "conv", out_channels=256, kernel=3, pad=1),
        layer("relu5", "relu"),
        layer("pool5", "maxpool", kernel=3, stride=2),
        layer("avgpool", "adaptive_avgpool", output=6),
        layer("flatten", "flatten"),
        layer("drop6", "dropout", p=0.5),
        layer("fc6", "fc", out_features=4096),
        layer("relu6", "relu"),
        layer("drop7", "dropout", p=0.5),
        layer("fc7", "fc", out_features=4096),
        layer("relu7", "relu"),
        layer("fc8", "fc", out_features=NUM_CLASSES),
        layer("loss", "softmax_xent"),
    ]
    desc = ("torchvision alexnet (the single-GPU variant from 'One weird trick'): five convs, "
            "three 3x3/2 max pools, adaptive average pooling to 6x6, three fc layers with "
            "dropout; 1000 classes.")
    return {"name": "alexnet", "description": desc, "input": IMAGENET_INPUT, "layers": layers}


def build_zoo():
    nets = [vgg(n) for n in ("vgg11", "vgg13", "vgg16", "vgg19")]
    nets += [resnet(n) for n in ("resnet18", "resnet34", "resnet50", "resnet101")]
    nets.append(alexnet())
    return nets


# ---------------------------------------------------------------------------
# Serialisation: 2-space indent, one layer per line (like the tiny-*.json nets)
# ---------------------------------------------------------------------------

def dumps(net):
    out = ["{"]
    out.append('  "name": %s,' % json.dumps(net["name"]))
    if "description" in net:
        out.append('  "description": %s,' % json.dumps(net["description"]))
    out.append('  "input": %s,' % json.dumps(net["input"]))
    out.append('  "layers": [')
    rows = ["    " + json.dumps(l) for l in net["layers"]]
    out.append(",\n".join(rows))
    out.append("  ]")
    out.append("}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------
# Checker: structure, shape inference and parameter count (mirrors the loader)
# ---------------------------------------------------------------------------

OP_KEYS = {
    "conv": ({"out_channels", "kernel"}, {"stride", "pad", "dilation", "groups", "bias"}),
    "maxpool": ({"kernel"}, {"stride", "pad"}),
    "avgpool": ({"kernel"}, {"stride", "pad"}),
    "adaptive_avgpool": ({"output"}, set()),
    "global_avgpool": (set(), set()),
    "relu": (set(), set()),
    "flatten": (set(), set()),
    "softmax_xent": (set(), set()),
    "batchnorm": (set(), {"eps", "momentum"}),
    "add": ({"inputs"}, set()),
    "concat": ({"inputs"}, set()),
    "upsample": ({"scale"}, set()),
    "fc": ({"out_features"}, {"bias"}),
    "dropout": (set(), {"p"}),
}


class NetError(Exception):
    pass


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _pair(l, key, default, minimum):
    v = l.get(key, default)
    if _is_int(v):
        v = [v, v]
    if not (isinstance(v, list) and len(v) == 2 and all(_is_int(x) for x in v)):
        raise NetError("%s.%s: expected an int or [h, w]" % (l["name"], key))
    if min(v) < minimum:
        raise NetError("%s.%s: must be >= %d" % (l["name"], key, minimum))
    return v


def infer(net):
    """Returns (total params, [(name, (c, h, w), params)]); raises NetError."""
    for key in net:
        if key not in ("name", "description", "input", "layers"):
            raise NetError("unknown top-level key %r" % key)
    inp = net["input"]
    if set(inp) != {"channels", "height", "width"} or not all(
            _is_int(v) and v > 0 for v in inp.values()):
        raise NetError("input: expected positive channels, height, width")
    shapes = {"input": (inp["channels"], inp["height"], inp["width"])}
    layers = net["layers"]
    if not layers:
        raise NetError("layers: empty")
    prev = "input"
    total = 0
    table = []
    for idx, l in enumerate(layers):
        name, op = l.get("name"), l.get("op")
        if not isinstance(name, str) or not name or name == "input" or name in shapes:
            raise NetError("layers[%d].name: missing, 'input' or duplicate: %r" % (idx, name))
        if op not in OP_KEYS:
            raise NetError("%s.op: unknown op %r" % (name, op))
        required, optional = OP_KEYS[op]
        keys = set(l) - {"name", "op"}
        allowed = required | optional | {"inputs"}
        if keys - allowed:
            raise NetError("%s: unknown keys %s" % (name, sorted(keys - allowed)))
        if required - set(l):
            raise NetError("%s: missing keys %s" % (name, sorted(required - set(l))))
        ins = l.get("inputs", [prev])
        if not isinstance(ins, list) or not ins or any(i not in shapes for i in ins):
            raise NetError("%s.inputs: must name earlier layers or 'input'" % name)
        if op in ("add", "concat"):
            if len(ins) < 2:
                raise NetError("%s.inputs: %s needs at least 2 inputs" % (name, op))
        elif len(ins) != 1:
            raise NetError("%s.inputs: %s takes exactly 1 input" % (name, op))
        if op == "softmax_xent" and idx != len(layers) - 1:
            raise NetError("%s: softmax_xent must be the last layer" % name)
        c, h, w = shapes[ins[0]]
        params = 0
        if op == "conv":
            k = _pair(l, "kernel", None, 1)
            s = _pair(l, "stride", 1, 1)
            p = _pair(l, "pad", 0, 0)
            d = _pair(l, "dilation", 1, 1)
            g = l.get("groups", 1)
            oc = l["out_channels"]
            if not (_is_int(oc) and oc > 0 and _is_int(g) and g > 0 and c % g == 0
                    and oc % g == 0):
                raise NetError("%s: bad out_channels/groups" % name)
            oh = (h + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
            ow = (w + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
            params = oc * (c // g) * k[0] * k[1] + (oc if l.get("bias", True) else 0)
            c, h, w = oc, oh, ow
        elif op in ("maxpool", "avgpool"):
            k = _pair(l, "kernel", None, 1)
            s = _pair(l, "stride", k, 1)
            p = _pair(l, "pad", 0, 0)
            if p[0] * 2 > k[0] or p[1] * 2 > k[1]:
                raise NetError("%s.pad: must be at most half the kernel" % name)
            h = (h + 2 * p[0] - k[0]) // s[0] + 1
            w = (w + 2 * p[1] - k[1]) // s[1] + 1
        elif op == "adaptive_avgpool":
            h, w = _pair(l, "output", None, 1)
        elif op == "global_avgpool":
            h, w = 1, 1
        elif op == "flatten":
            c, h, w = c * h * w, 1, 1
        elif op == "fc":
            of = l["out_features"]
            params = c * h * w * of + (of if l.get("bias", True) else 0)
            c, h, w = of, 1, 1
        elif op == "batchnorm":
            params = 2 * c
        elif op == "add":
            if any(shapes[i] != (c, h, w) for i in ins):
                raise NetError("%s: add inputs differ in shape" % name)
        elif op == "concat":
            if any(shapes[i][1:] != (h, w) for i in ins):
                raise NetError("%s: concat inputs differ in height/width" % name)
            c = sum(shapes[i][0] for i in ins)
        elif op == "upsample":
            sc = l["scale"]
            if not (_is_int(sc) and sc >= 1):
                raise NetError("%s.scale: must be an int >= 1" % name)
            h, w = h * sc, w * sc
        elif op == "softmax_xent":
            c, h, w = 1, 1, 1
        # relu, dropout: shape unchanged
        if h < 1 or w < 1:
            raise NetError("%s: output shape %dx%d is empty" % (name, h, w))
        shapes[name] = (c, h, w)
        table.append((name, (c, h, w), params))
        total += params
        prev = name
    if layers[-1].get("op") != "softmax_xent":
        raise NetError("the last layer must be softmax_xent")
    return total, table


def validate_with_schema(paths):
    """Validates with jsonschema if available; returns True/False, or None if skipped."""
    try:
        import jsonschema
    except ImportError:
        return None
    with open(os.path.join(HERE, "network.schema.json")) as f:
        schema = json.load(f)
    cls = jsonschema.Draft202012Validator
    cls.check_schema(schema)
    validator = cls(schema)
    ok = True
    for path in paths:
        with open(path) as f:
            doc = json.load(f)
        for err in validator.iter_errors(doc):
            ok = False
            print("%s: schema: %s: %s" % (os.path.basename(path),
                                          "/".join(map(str, err.absolute_path)), err.message))
    return ok


def main():
    written = []
    for net in build_zoo():
        path = os.path.join(HERE, net["name"] + ".json")
        with open(path, "w", newline="\n") as f:
            f.write(dumps(net))
        written.append(path)

    failed = False
    paths = written + sorted(
        os.path.join(HERE, n) for n in os.listdir(HERE)
        if n.endswith(".json") and n != "network.schema.json"
        and os.path.join(HERE, n) not in written)
    for path in paths:
        base = os.path.splitext(os.path.basename(path))[0]
        with open(path) as f:
            net = json.load(f)
        try:
            total, table = infer(net)
        except NetError as e:
            print("%s: %s" % (base, e))
            failed = True
            continue
        if net.get("name") != base:
            print("%s: name %r differs from the file name" % (base, net.get("name")))
            failed = True
        expected = EXPECTED_PARAMS.get(base)
        mark = ""
        if expected is not None:
            mark = "ok" if total == expected else "MISMATCH (torchvision: %d)" % expected
            failed |= total != expected
        print("%-12s %4d layers %12d params %s" % (base, len(table), total, mark))

    schema_ok = validate_with_schema(paths)
    if schema_ok is None:
        print("schema validation skipped (python module jsonschema not installed)")
    elif schema_ok:
        print("schema validation: %d files ok" % len(paths))
    else:
        failed = True
    assert not failed, "zoo check failed"


if __name__ == "__main__":
    sys.exit(main())
