"""reference.py - the schedule's network as a plain PyTorch module, trained column-wise by
autograd: the reference a row-wise run is checked against, and the model a user evaluates or
exports after training row by row.

Built from the schedule's node list with torch.nn layers (Conv2d, BatchNorm2d, MaxPool2d,
AvgPool2d with count_include_pad, AdaptiveAvgPool2d, Linear, nearest upsampling, cross-entropy)
and PyTorch's own autograd; its state_dict() uses the runner's names (torchvision's for the zoo),
so weights move between the two with load_state_dict(). Dropout uses the runner's mask for the
same (seed, step, node), so a training step of both sees the same network.

Deliberately not here: anything row-wise; no code is shared with ops.py.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import names
from .runner import dropout_scale


def _module(sched, n, init):
    """The torch.nn layer of a node with parameters (None for the others); init=False leaves
    the weights uninitialised (they are about to be loaded)."""
    make = (lambda cls, *a, **k: cls(*a, **k)) if init else nn.utils.skip_init
    x = sched.nodes[n.inputs[0]] if n.inputs else None
    if n.op == "conv":
        return make(nn.Conv2d, x.c, n.c, tuple(n.kernel), tuple(n.stride), tuple(n.pad),
                    tuple(n.dilation), n.groups, n.bias)
    if n.op == "fc":
        return make(nn.Linear, x.c * x.h * x.w, n.c, n.bias)
    if n.op == "batchnorm":
        return nn.BatchNorm2d(n.c, eps=n.eps, momentum=n.momentum)
    return None


class ColumnNet(nn.Module):
    """forward(images, labels) -> mean cross-entropy loss; logits(images) -> (N, classes).
    `step` (the training step, counted from 1 like the runner's) selects the dropout masks;
    `seed` must equal the runner's. init=False skips torch.nn's weight initialisation (for
    weights loaded right after)."""

    def __init__(self, sched, seed=1, init=True):
        super().__init__()
        self.sched = sched
        self.seed = seed
        self.step = 0
        self.paths = names.module_names(sched)
        self.layers = nn.ModuleDict()
        self._key = {}
        for n in sched.nodes:
            m = _module(sched, n, init)
            if m is not None:
                key = "m%d" % n.index  # module keys may not hold dots
                self.layers[key] = m
                self._key[n.index] = key

    def train(self, mode=True):
        """--bn frozen schedules: BatchNorm stays in eval mode while training (the fixed affine
        map of its running statistics, as fine-tuning recipes do)."""
        super().train(mode)
        if self.sched.config["bn"] == "frozen":
            for m in self.layers.values():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def _layer(self, n):
        return self.layers[self._key[n.index]]

    def _node(self, n, xs):
        op = n.op
        x = xs[0] if xs else None
        if op in ("conv", "batchnorm"):
            return self._layer(n)(x)
        if op == "fc":
            return self._layer(n)(x.flatten(1)).view(x.shape[0], -1, 1, 1)  # maps stay 4-D
        if op == "relu":
            return F.relu(x)
        if op == "maxpool":
            return F.max_pool2d(x, tuple(n.kernel), tuple(n.stride), tuple(n.pad))
        if op == "avgpool":
            return F.avg_pool2d(x, tuple(n.kernel), tuple(n.stride), tuple(n.pad),
                                count_include_pad=True)
        if op == "adaptive_avgpool":
            return F.adaptive_avg_pool2d(x, tuple(n.output))
        if op == "global_avgpool":
            return x.mean(dim=(2, 3), keepdim=True)
        if op == "flatten":
            return x.flatten(1).view(x.shape[0], -1, 1, 1)
        if op == "add":
            return sum(xs[1:], xs[0])
        if op == "concat":
            return torch.cat(xs, dim=1)
        if op == "upsample":
            return F.interpolate(x, scale_factor=n.scale, mode="nearest")
        if op == "dropout":
            if not self.training:
                return x
            return x * dropout_scale(self.seed, self.step, n, x.shape[0]).to(x.device)
        raise ValueError("node %s: op %s has no reference" % (n.name, op))

    def logits(self, images):
        vals = [images]
        for n in self.sched.nodes[1:-1]:
            vals.append(self._node(n, [vals[u] for u in n.inputs]))
        return vals[-1].flatten(1)

    def forward(self, images, labels):
        return F.cross_entropy(self.logits(images), labels.long())

    # state_dict under the runner's names

    def named_entries(self):
        """[(key, tensor)] of parameters and BatchNorm buffers, keys as names.param_entries."""
        out = []
        for key, idx, what, _ in names.param_entries(self.sched):
            out.append((key, getattr(self.layers[self._key[idx]], what)))
        return out

    def runner_state_dict(self):
        return {k: v.detach().clone() for k, v in self.named_entries()}

    def load_runner_state_dict(self, sd):
        with torch.no_grad():
            for key, t in self.named_entries():
                t.copy_(sd[key])

    def gradients(self):
        return {k: v.grad for k, v in self.named_entries() if isinstance(v, nn.Parameter)}


def make_optimizer(sched, params, lr=0.05, momentum=0.9, betas=(0.9, 0.999), eps=1e-8,
                   weight_decay=0.0):
    """torch.optim for the schedule's optimizer with the runner's hyperparameters."""
    opt = sched.optimizer
    if opt == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if opt == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
