"""names.py - state_dict names of a schedule's parameters: torchvision's for the zoo networks,
the layer names otherwise.

torchvision's models name parameters by module path. The zoo (networks/gen_zoo.py) builds VGG and
AlexNet as torchvision's `features` / `avgpool` / `classifier` Sequentials and ResNets as
`conv1 bn1 layerS.B.{conv,bn}K [.downsample.{0,1}] fc`, so the names follow from the layer order
and the layer names:

    vgg16   conv1_1 -> features.0        fc6 -> classifier.0      fc8 -> classifier.6
    resnet  layer2_0_conv1 -> layer2.0.conv1    layer2_0_downsample_bn -> layer2.0.downsample.1

A net whose name says vgg/alexnet/resnet but whose layers do not have that shape, and every other
net, uses its layer names (`conv1.weight`). BatchNorm layers carry weight, bias, running_mean,
running_var and num_batches_tracked, as torch.nn.BatchNorm2d does.

Deliberately not here: the tensors themselves (runner.py owns them).
"""

import re

_FEATURES = ("conv", "relu", "maxpool")
_CLASSIFIER = ("fc", "relu", "dropout")
_RESNET = re.compile(r"^layer(\d+)_(\d+)_(conv\d|bn\d|downsample_conv|downsample_bn)$")


def _sequential(nodes):
    """features.i / classifier.i for torchvision's VGG and AlexNet layout, else None."""
    ops = [n.op for n in nodes]
    if "adaptive_avgpool" not in ops:
        return None
    a = ops.index("adaptive_avgpool")
    body, head = nodes[1:a], nodes[a + 2:-1]
    if (ops[a + 1:a + 2] != ["flatten"] or ops[-1] != "softmax_xent"
            or any(n.op not in _FEATURES for n in body)
            or any(n.op not in _CLASSIFIER for n in head)):
        return None
    names = {n.index: "features.%d" % i for i, n in enumerate(body)}
    names.update({n.index: "classifier.%d" % i for i, n in enumerate(head)})
    return names


def _resnet(nodes):
    """torchvision's ResNet module paths, else None."""
    names = {}
    for n in nodes:
        if not n.params:
            continue
        m = _RESNET.match(n.name)
        if m:
            leaf = {"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}.get(
                m.group(3), m.group(3))
            names[n.index] = "layer%s.%s.%s" % (m.group(1), m.group(2), leaf)
        elif n.name in ("conv1", "bn1", "fc"):
            names[n.index] = n.name
        else:
            return None
    return names


def module_names(sched):
    """{node index: module path} for every node with parameters."""
    nodes = sched.nodes
    names = None
    if sched.net_name.startswith(("vgg", "alexnet")):
        names = _sequential(nodes)
    elif sched.net_name.startswith("resnet"):
        names = _resnet(nodes)
    if names is None:
        names = {n.index: n.name for n in nodes}
    return {n.index: names[n.index] for n in nodes if n.params}


def param_entries(sched):
    """[(key, node index, what, shape)] in module order; what is one of weight, bias,
    running_mean, running_var, num_batches_tracked."""
    nodes = sched.nodes
    out = []
    for idx, path in module_names(sched).items():
        n = nodes[idx]
        if n.op == "conv":
            cin = nodes[n.inputs[0]].c
            out.append((path + ".weight", idx, "weight", (n.c, cin // n.groups) + tuple(n.kernel)))
            if n.bias:
                out.append((path + ".bias", idx, "bias", (n.c,)))
        elif n.op == "fc":
            x = nodes[n.inputs[0]]
            out.append((path + ".weight", idx, "weight", (n.c, x.c * x.h * x.w)))
            if n.bias:
                out.append((path + ".bias", idx, "bias", (n.c,)))
        elif n.op == "batchnorm":
            for what in ("weight", "bias", "running_mean", "running_var"):
                out.append((path + "." + what, idx, what, (n.c,)))
            out.append((path + ".num_batches_tracked", idx, "num_batches_tracked", ()))
        else:
            raise ValueError("node %s: op %s has parameters this runner cannot name" % (n.name, n.op))
    return out
