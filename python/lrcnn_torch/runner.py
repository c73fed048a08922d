"""runner.py - executes an lrcnn schedule with PyTorch tensors: one training step at a time,
every tensor allocated at its ALLOC step and released at its FREE step, every kernel a RUN step
on its row range (ops.py), boundary rows moved by COPY steps, the optimizer as UPDATE steps.

Memory: each schedule tensor is one torch allocation of exactly its planned bytes (a uint8
buffer viewed as float32 maps, float64 sums, int32 labels), so the bytes the runner holds are
counted at ALLOC and FREE; their peak is compared with the plan's prediction. Kernels also make
short-lived temporaries (a convolution's output rows before they are copied into place, a padded
window at the image edge): those are not schedule tensors and are not counted; on CUDA,
torch.cuda.max_memory_allocated() shows them (`Runner.device_peak_bytes`).

Deliberately not here: planning (the schedule is executed as written), the column reference
(reference.py), parameter names (names.py).
"""

import hashlib

import torch

from . import names, ops
from .schedule import Schedule, ScheduleError


class RunnerError(RuntimeError):
    """A schedule the runner cannot execute, or a state_dict it cannot load."""


def _kaiming_bound(sched, n):
    """1/sqrt(fan_in): torch.nn's default init for conv and linear weights and biases."""
    x = sched.nodes[n.inputs[0]]
    if n.op == "conv":
        return (x.c // n.groups * n.kernel[0] * n.kernel[1]) ** -0.5
    return (x.c * x.h * x.w) ** -0.5


class Runner:
    """Runs `sched` (a Schedule) on `device`. Hyperparameters: lr, momentum (SGD with
    momentum), betas and eps (Adam), weight_decay; the optimizer is the schedule's. seed sets
    the initial weights (torch.nn's default init) and the dropout masks; `weights` (a
    state_dict, see load_state_dict) replaces the initial weights."""

    def __init__(self, sched, device="cpu", lr=0.05, momentum=0.9, betas=(0.9, 0.999),
                 eps=1e-8, weight_decay=0.0, seed=1, weights=None):
        if not isinstance(sched, Schedule):
            raise TypeError("Runner needs a Schedule (lrcnn_torch.load)")
        if sched.config["dtype"] != "fp32":
            raise RunnerError("%s: config.dtype: %s; the runner executes fp32 schedules only"
                              % (sched.origin, sched.config["dtype"]))
        self._check_bn_counts(sched)
        self.sched = sched
        self.device = torch.device(device)
        self.hp = {"lr": lr, "momentum": momentum, "betas": betas, "eps": eps,
                   "weight_decay": weight_decay}
        self.seed = seed
        self.train_step = 0
        self.loss = None
        self.live = {}     # tensor id -> uint8 buffer of the tensor's bytes
        self._views = {}   # tensor id -> typed view, built on first use
        self._flat = {}    # while a step runs: tensor id -> the flatten it is read through
        self.counted_live_bytes = 0
        self.counted_peak_bytes = 0
        self.peak_step = -1
        self.host_live_bytes = 0   # host-tier tensors (--offload input), counted apart
        self.host_peak_bytes = 0
        self.device_peak_bytes = None
        self._masks = {}
        self.centering = {}  # BN node -> float32 mean, while a STATS pass is replayed
        self._stats_pass = self._find_stats_passes()
        self._find_persistent()
        self._run(0, sched.step_begin, skip_update=False)
        self.batches_tracked = {i: 0 for i in self.running}
        if weights is None:
            self.init_parameters(seed)
        else:
            self.load_state_dict(weights)

    # -------------------------------------------------------------- tensors

    def _find_persistent(self):
        s = self.sched
        self.param, self.param_grad, self.opt_state, self.running = {}, {}, {}, {}
        self.input_t = self.labels_t = None
        by_kind = {"param": self.param, "param_grad": self.param_grad,
                   "opt_state": self.opt_state, "running": self.running}
        for st in s.steps[:s.step_begin]:
            t = s.tensors[st.t]
            if t.kind in by_kind:
                by_kind[t.kind][t.node] = st.t
            elif t.kind == "value" and t.node == 0:
                self.input_t = st.t
            elif t.kind == "labels":
                self.labels_t = st.t
        if self.input_t is None or self.labels_t is None:
            raise RunnerError("%s: the schedule allocates no input or labels tensor before "
                              "step_begin" % s.origin)

    def _find_stats_passes(self):
        """{step of a FINALIZE run: step that allocated its statistics tensor}: the steps in
        between are the exact-BatchNorm STATS pass that gathers them."""
        s, born, out = self.sched, {}, {}
        fin = s.flag["FINALIZE"]
        for i, st in enumerate(s.steps):
            if st.op == "ALLOC":
                born[st.t] = i
            elif st.op == "RUN" and st.flags & fin:
                out[i] = born[s.runs[st.run].aux]
        return out

    def _centered_pass(self, i):
        """Replays the STATS pass that ends at FINALIZE step i, gathering sum((x - mean)^2)
        around the mean the first sweep gave (ops.py: PyTorch's two-pass statistics). The
        replay allocates and frees what the pass did, so the counted bytes do not change."""
        s = self.sched
        st = s.steps[i]
        r, n = s.runs[st.run], s.nodes[st.node]
        _, sums = self.bn_stats(r.aux, n.c)
        count = s.batch * n.h * n.w
        self.centering[n.index] = (sums[0] / count).float()
        try:
            self._run(self._stats_pass[i] + 1, i, skip_update=True)
        finally:
            del self.centering[n.index]

    @staticmethod
    def _check_bn_counts(sched):
        """Training BatchNorm needs two values or more per channel (PyTorch refuses fewer): every
        step that updates the running statistics, as the C executor checks (exec.c). A
        ScheduleError (bad input, exit 2), like the C side's."""
        f = sched.flag
        for i, st in enumerate(sched.steps):
            if st.op != "RUN" or st.node < 0 or sched.nodes[st.node].op != "batchnorm":
                continue
            if st.flags & (f["BN_FROZEN"] | f["STATS_ACC"]):
                continue
            finalize = bool(st.flags & f["FINALIZE"])
            if not finalize and (st.flags & f["BN_GLOBAL"] or st.pass_ != "FWD"):
                continue
            n = sched.nodes[st.node]
            rows = n.h if finalize else st.row_hi - st.row_lo + 1
            if sched.batch * rows * n.w < 2:  # an input this runner refuses, as lrcnn-validate
                raise ScheduleError("%s: steps[%d]: BatchNorm %s: 1 value per channel to train on "
                                    "(batch %d, %s%dx%d): its variance needs 2 or more, as in "
                                    "PyTorch" % (sched.origin, i, n.name, sched.batch,
                                                 "a stripe of " if rows < n.h else "", rows, n.w))

    @staticmethod
    def _zeroed(t):
        """What the C executor zeroes at ALLOC: every tensor that is accumulated into (not
        values, parameters, labels, workspace, or boundary gradients, which a COPY fills)."""
        if t.kind in ("value", "param", "labels", "workspace"):
            return False
        return not (t.kind == "grad" and t.class_ == "boundary")

    def _alloc(self, i, tid):
        if tid in self.live:
            raise RunnerError("schedule step %d: tensor %d allocated twice" % (i, tid))
        t = self.sched.tensors[tid]
        make = torch.zeros if self._zeroed(t) else torch.empty
        if t.tier == "host":  # host memory, pinned when the device is a GPU
            pin = torch.device(self.device).type == "cuda"
            buf = make(t.bytes, dtype=torch.uint8, device="cpu", pin_memory=pin)
            self.live[tid] = buf
            self.host_live_bytes += buf.numel()
            self.host_peak_bytes = max(self.host_peak_bytes, self.host_live_bytes)
            return
        buf = make(t.bytes, dtype=torch.uint8, device=self.device)
        self.live[tid] = buf
        self.counted_live_bytes += buf.numel() * buf.element_size()
        if self.counted_live_bytes > self.counted_peak_bytes:
            self.counted_peak_bytes = self.counted_live_bytes
            self.peak_step = i

    def _free(self, i, tid):
        buf = self.live.pop(tid, None)
        if buf is None:
            raise RunnerError("schedule step %d: tensor %d freed while not live" % (i, tid))
        self._views.pop(tid, None)
        if self.sched.tensors[tid].tier == "host":
            self.host_live_bytes -= buf.numel()
            return
        self.counted_live_bytes -= buf.numel() * buf.element_size()

    def _buf(self, tid):
        buf = self.live.get(tid)
        if buf is None:
            raise RunnerError("tensor %d (%s of node %d) is not live" % (
                tid, self.sched.tensors[tid].kind, self.sched.tensors[tid].node))
        return buf

    def fmap(self, tid):
        """A feature-map tensor (value or gradient rows) as ops.Rows, None for -1. A tensor the
        running step reads through a flatten (its input's, of shape (C, H, W)) is the flatten's
        (C*H*W, 1, 1) map, as the C executor views it (exec_shape_node): a dropout, relu or
        BatchNorm after the flatten reads it so."""
        if tid < 0:
            return None
        flat = self._flat.get(tid)
        if flat is not None:
            t = self.sched.tensors[tid]
            if t.row_lo != 0 or t.row_hi != self.sched.nodes[t.node].h - 1:
                raise RunnerError("tensor %d: a flatten reads rows [%d, %d] of %s, not all of them"
                                  % (tid, t.row_lo, t.row_hi, self.sched.nodes[t.node].name))
            shape = (self.sched.batch, flat.c, flat.h, flat.w)
            return ops.Rows(self._buf(tid).view(torch.float32).view(shape), 0, flat.h)
        v = self._views.get(tid)
        if v is None:
            t = self.sched.tensors[tid]
            n = self.sched.nodes[t.node]
            rows = t.row_hi - t.row_lo + 1
            shape = (self.sched.batch, n.c, rows, n.w)
            if t.bytes != 4 * shape[0] * shape[1] * shape[2] * shape[3]:
                raise RunnerError("tensor %d: %d bytes do not hold rows [%d, %d] of %s" % (
                    tid, t.bytes, t.row_lo, t.row_hi, n.name))
            v = ops.Rows(self._buf(tid).view(torch.float32).view(shape), t.row_lo, n.h)
            self._views[tid] = v
        return v

    def floats(self, tid):
        """A tensor as a flat float32 view."""
        return self._buf(tid).view(torch.float32)

    def labels(self, tid):
        return self._buf(tid).view(torch.int32).long()

    def bn_stats(self, tid, c):
        """(stats, sums): (2, C) float32 mean, invstd and (2, C) float64 sum, sum of squares."""
        buf = self._buf(tid)
        return buf[:8 * c].view(torch.float32).view(2, c), buf[8 * c:24 * c].view(torch.float64).view(2, c)

    def bn_gred(self, tid, c):
        """(2, C) float64: sum dy, sum dy * xhat; None for -1."""
        return None if tid < 0 else self._buf(tid)[:16 * c].view(torch.float64).view(2, c)

    def param_views(self, n, tid):
        """A node's parameters (or their gradients) in tensor `tid`: conv (weight, bias),
        fc (weight, bias), batchnorm (gamma, beta); bias None when the layer has none,
        (None, None) for tid -1."""
        if tid < 0:
            return None, None
        flat = self.floats(tid)
        if n.op == "batchnorm":
            return flat[:n.c], flat[n.c:2 * n.c]
        x = self.sched.nodes[n.inputs[0]]
        if n.op == "conv":
            shape = (n.c, x.c // n.groups, n.kernel[0], n.kernel[1])
        else:
            shape = (n.c, x.c * x.h * x.w)
        count = shape[0] * shape[1] * (shape[2] * shape[3] if len(shape) == 4 else 1)
        w = flat[:count].view(shape)
        return w, (flat[count:count + n.c] if n.bias else None)

    def dropout_scale(self, n):
        """The keep mask of node n at this training step, scaled by 1/(1-p), (N, C, H, W):
        a function of (seed, step, node), the same for every row range and for the reference."""
        key = (self.train_step, n.index)
        m = self._masks.get(key)
        if m is None:
            m = dropout_scale(self.seed, self.train_step, n, self.sched.batch).to(self.device)
            self._masks = {key: m} if len(self._masks) > 8 else {**self._masks, key: m}
        return m

    # -------------------------------------------------------------- running

    def _run(self, first, last, skip_update):
        s = self.sched
        kernels = ops.KERNELS
        for i in range(first, last):
            st = s.steps[i]
            op = st.op
            if op == "ALLOC":
                self._alloc(i, st.t)
            elif op == "FREE":
                self._free(i, st.t)
            elif op == "COPY":
                src = self.fmap(st.src).get(st.row_lo, st.row_hi)
                dst = self.fmap(st.t).get(st.row_lo, st.row_hi)
                dst.add_(src) if st.accumulate else dst.copy_(src)
            elif op == "RUN":
                if st.pass_ == "UPDATE":
                    if not skip_update:
                        ops.update(self, st, s.runs[st.run], s.nodes[st.node])
                    continue
                n = s.nodes[st.node]
                if i in self._stats_pass:
                    self._centered_pass(i)
                kernel = kernels.get(n.op)
                if kernel is None:
                    raise RunnerError("schedule step %d: no kernel for op %s" % (i, n.op))
                r = s.runs[st.run]
                self._flat = {}
                for k, u in enumerate(n.inputs[:len(r.in_)]):
                    if s.nodes[u].op == "flatten":
                        for tid in (r.in_[k], r.din[k]):
                            if tid >= 0:
                                self._flat[tid] = s.nodes[u]
                try:
                    kernel(self, st, r, n, st.pass_ in ("BWD", "GSTATS"))
                finally:
                    self._flat = {}
            else:
                raise RunnerError("schedule step %d: op %s is not supported by this runner"
                                  % (i, op))

    def step(self, images, labels, update=True):
        """One training step on a batch: images (N, C, H, W) float32, labels (N) integers.
        With update=False the optimizer steps are skipped and the gradients stay in place
        (gradient checks; call update() or zero_grad() afterwards). Returns the loss."""
        s = self.sched
        inp = self.fmap(self.input_t).data
        if tuple(images.shape) != tuple(inp.shape):
            raise RunnerError("images of shape %s, the schedule takes %s"
                              % (tuple(images.shape), tuple(inp.shape)))
        self.train_step += 1
        inp.copy_(images)
        self._buf(self.labels_t).view(torch.int32).copy_(labels)
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        self._run(s.step_begin, s.step_end, skip_update=not update)
        for idx in self.batches_tracked:
            self.batches_tracked[idx] += 1
        if cuda:
            torch.cuda.synchronize(self.device)
            self.device_peak_bytes = torch.cuda.max_memory_allocated(self.device)
        return float(self.loss)

    def update(self):
        """The optimizer steps of the schedule (after step(update=False))."""
        s = self.sched
        for st in s.steps[s.step_begin:s.step_end]:
            if st.op == "RUN" and st.pass_ == "UPDATE":
                ops.update(self, st, s.runs[st.run], s.nodes[st.node])

    def zero_grad(self):
        for tid in self.param_grad.values():
            self.floats(tid).zero_()

    # -------------------------------------------------------------- parameters

    def init_parameters(self, seed):
        """torch.nn's default init (uniform in +-1/sqrt(fan_in) for conv and linear weights and
        biases; BatchNorm gamma 1, beta 0, running mean 0, var 1), drawn from `seed`."""
        gen = torch.Generator().manual_seed(seed)
        for idx, tid in sorted(self.param.items()):
            n = self.sched.nodes[idx]
            w, b = self.param_views(n, tid)
            if n.op == "batchnorm":
                w.fill_(1.0), b.fill_(0.0)
                run = self.floats(self.running[idx]).view(2, n.c)
                run[0].fill_(0.0), run[1].fill_(1.0)
                continue
            bound = _kaiming_bound(self.sched, n)
            for t in (w, b) if b is not None else (w,):
                t.copy_(torch.empty(t.shape).uniform_(-bound, bound, generator=gen))

    def _entry(self, idx, what, grads=False):
        n = self.sched.nodes[idx]
        if what in ("running_mean", "running_var"):
            run = self.floats(self.running[idx]).view(2, n.c)
            return run[0] if what == "running_mean" else run[1]
        table = self.param_grad if grads else self.param
        w, b = self.param_views(n, table[idx])
        return w if what == "weight" else b

    def state_dict(self, copy=True):
        """Parameters and BatchNorm buffers under torchvision's names for the zoo networks
        (names.py), as copies on the CPU; copy=False gives views of the runner's own tensors
        (valid until they change)."""
        out = {}
        for key, idx, what, _ in names.param_entries(self.sched):
            if what == "num_batches_tracked":
                out[key] = torch.tensor(self.batches_tracked[idx], dtype=torch.int64)
            else:
                t = self._entry(idx, what)
                out[key] = t.detach().cpu().clone() if copy else t
        return out

    def load_state_dict(self, sd):
        """Loads what state_dict() writes (e.g. a torchvision model's state_dict()): every key
        must be present with its shape, and no other key."""
        entries = names.param_entries(self.sched)
        wanted = {key for key, _, _, _ in entries}
        extra = sorted(set(sd) - wanted)
        if extra:
            raise RunnerError("state_dict: unexpected key %s" % extra[0])
        for key, idx, what, shape in entries:
            if key not in sd:
                raise RunnerError("state_dict: missing key %s" % key)
            v = sd[key]
            if tuple(v.shape) != tuple(shape):
                raise RunnerError("state_dict: %s has shape %s, the network needs %s"
                                  % (key, tuple(v.shape), tuple(shape)))
            if what == "num_batches_tracked":
                self.batches_tracked[idx] = int(v)
            else:
                self._entry(idx, what).copy_(v)

    def gradients(self, copy=True):
        """{state_dict key: gradient} for the learnable parameters (CPU copies; views with
        copy=False)."""
        out = {}
        for key, idx, what, _ in names.param_entries(self.sched):
            if what in ("weight", "bias"):
                t = self._entry(idx, what, grads=True)
                out[key] = t.detach().cpu().clone() if copy else t
        return out


def dropout_scale(seed, step, node, batch):
    """The dropout keep mask of `node` at training `step`, scaled by 1/(1-p), (N, C, H, W) on
    the CPU: Bernoulli(1-p) from a generator seeded by (seed, step, node index)."""
    digest = hashlib.sha256(("%d/%d/%d" % (seed, step, node.index)).encode()).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    keep = torch.rand((batch, node.c, node.h, node.w), generator=gen) >= node.p
    return keep.float() / (1.0 - node.p)
