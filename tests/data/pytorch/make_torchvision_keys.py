#!/usr/bin/env python3
"""make_torchvision_keys.py - writes torchvision_keys.json: the state_dict keys and shapes of
torchvision's vgg11, vgg16, alexnet, resnet18 and resnet50 (1000 classes), the golden list
tests/test_torch.py holds python/lrcnn_torch/names.py to.

    python3 tests/data/pytorch/make_torchvision_keys.py    (needs torchvision; Debian:
                                                            python3-torchvision 0.14)
"""
import json
import os

import torchvision

NETS = ("vgg11", "vgg16", "alexnet", "resnet18", "resnet50")

out = {}
for net in NETS:
    sd = getattr(torchvision.models, net)(num_classes=1000).state_dict()
    out[net] = {k: list(v.shape) for k, v in sd.items()}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torchvision_keys.json")
lines = ['{"torchvision": %s' % json.dumps(torchvision.__version__)]
for net, keys in out.items():
    body = ",\n  ".join("%s: %s" % (json.dumps(k), json.dumps(v)) for k, v in keys.items())
    lines.append(',\n%s: {\n  %s}' % (json.dumps(net), body))
with open(path, "w") as f:
    f.write("".join(lines) + "}\n")
print("wrote", path)
