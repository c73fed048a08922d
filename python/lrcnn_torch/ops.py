"""ops.py - every op's forward and backward on a ROW RANGE, with torch's functional ops and their
explicit backward kernels (aten.convolution_backward, max_pool2d_with_indices_backward,
avg_pool2d_backward, threshold_backward, ...), reading and writing the schedule's tensors.

Legend: N batch, C channels, H/W full height/width of a map, R rows a tensor holds.
A feature-map tensor of the schedule holds rows [lo, hi] of a node's (N, C, H, W) output as an
(N, C, R, W) tensor (class Rows). A RUN step computes (or back-propagates) OUTPUT rows
[row_lo, row_hi] in full-map coordinates and reads the input rows they need; rows outside
[0, H) are padding (zeros; -inf for max pooling). Backward kernels ACCUMULATE into input and
weight gradients, as the C executor does (cuda_validate/exec.h states the contract per pass and
flag; this file follows it line for line).

Deliberately not here: allocation and the step loop (runner.py), choosing rows (the planner did).
"""

import torch
import torch.nn.functional as F

aten = torch.ops.aten


class Rows:
    """Rows [lo, lo + R) of an (N, C, H, W) map, stored as data (N, C, R, W)."""

    __slots__ = ("data", "lo", "h")

    def __init__(self, data, lo, h):
        self.data = data
        self.lo = lo
        self.h = h

    def get(self, a, b):
        """Rows [a, b] (full-map coordinates) as a view; they must be held."""
        hi = self.lo + self.data.shape[2] - 1
        if a < self.lo or b > hi:
            raise RuntimeError("rows [%d, %d] read from a tensor holding [%d, %d]"
                               % (a, b, self.lo, hi))
        return self.data[:, :, a - self.lo:b - self.lo + 1]


def window(x, a, b, fill):
    """Rows [a, b] of x's map; rows outside [0, H) are `fill` (a copy only at the image edges)."""
    ca, cb = max(a, 0), min(b, x.h - 1)
    core = x.get(ca, cb)
    if ca == a and cb == b:
        return core
    return F.pad(core, (0, 0, ca - a, b - cb), value=fill)


def add_window(dx, a, b, g):
    """dx rows [a, b] += g (rows of a window starting at row a), padding rows dropped."""
    ca, cb = max(a, 0), min(b, dx.h - 1)
    dx.get(ca, cb).add_(g[:, :, ca - a:cb - a + 1])


def input_window(node, lo, hi):
    """Input rows that output rows [lo, hi] of a window op read (DESIGN.md, row dependencies)."""
    kh, sh, ph = node.kernel[0], node.stride[0], node.pad[0]
    dh = node.attrs.get("dilation", [1, 1])[0]
    return lo * sh - ph, hi * sh - ph + dh * (kh - 1)


def window_input(x, node, lo, hi, fill):
    """(input, vertical padding, row of input[:, :, 0]) for output rows [lo, hi] of a window op:
    the whole map with the op's own padding when the rows are the whole output and x holds the
    whole map (the call PyTorch itself makes, so its bits); otherwise exactly the rows read,
    padded at the image edges."""
    if lo == 0 and hi == node.h - 1 and x.lo == 0 and x.data.shape[2] == x.h:
        return x.data, node.pad[0], 0
    a, b = input_window(node, lo, hi)
    return window(x, a, b, fill), 0, a


# ------------------------------------------------------------------ spatial ops

def conv(rt, st, r, n, bwd):
    lo, hi = st.row_lo, st.row_hi
    w, bias = rt.param_views(n, r.param)
    if r.in_[0] < 0:
        # rows whose taps all fall in the padding (a row padding past the kernel's reach): the
        # schedule holds no input rows for them; y = bias (or 0), and only the bias learns
        if not bwd:
            y = rt.fmap(r.out).get(lo, hi)
            y.copy_(bias.view(1, -1, 1, 1).expand_as(y) if bias is not None else torch.zeros_like(y))
        elif r.param_grad >= 0 and n.bias:
            rt.param_views(n, r.param_grad)[1].add_(rt.fmap(r.dout).get(lo, hi).sum((0, 2, 3)))
        return
    xin, ph, a = window_input(rt.fmap(r.in_[0]), n, lo, hi, 0.0)
    args = (n.stride, [ph, n.pad[1]], n.dilation, False, [0, 0], n.groups)
    if not bwd:
        rt.fmap(r.out).get(lo, hi).copy_(aten.convolution(xin, w, bias, *args))
        return
    dy = rt.fmap(r.dout).get(lo, hi)
    dx = rt.fmap(r.din[0])
    dw, db = rt.param_views(n, r.param_grad)
    gi, gw, gb = aten.convolution_backward(dy, xin, w, [n.c] if n.bias else None, *args,
                                           [dx is not None, dw is not None, db is not None])
    if dx is not None:
        add_window(dx, a, a + gi.shape[2] - 1, gi)
    if dw is not None:
        dw.add_(gw)
    if db is not None:
        db.add_(gb)


def relu(rt, st, r, n, bwd):
    lo, hi = st.row_lo, st.row_hi
    y = rt.fmap(r.out).get(lo, hi)
    if not bwd:
        torch.clamp(rt.fmap(r.in_[0]).get(lo, hi), min=0, out=y)
    elif r.din[0] >= 0:
        dy = rt.fmap(r.dout).get(lo, hi)
        rt.fmap(r.din[0]).get(lo, hi).add_(aten.threshold_backward(dy, y, 0))


def maxpool(rt, st, r, n, bwd):
    lo, hi = st.row_lo, st.row_hi
    xin, ph, a = window_input(rt.fmap(r.in_[0]), n, lo, hi, float("-inf"))
    args = (n.kernel, n.stride, [ph, n.pad[1]], [1, 1], False)
    if not bwd:
        y, _ = aten.max_pool2d_with_indices(xin, *args)
        rt.fmap(r.out).get(lo, hi).copy_(y)
    elif r.din[0] >= 0:
        _, idx = aten.max_pool2d_with_indices(xin, *args)  # the argmax again, from the input
        dy = rt.fmap(r.dout).get(lo, hi)
        gi = aten.max_pool2d_with_indices_backward(dy, xin, *args, idx)
        add_window(rt.fmap(r.din[0]), a, a + gi.shape[2] - 1, gi)


def avgpool(rt, st, r, n, bwd):
    lo, hi = st.row_lo, st.row_hi
    if not bwd:
        xin, ph, _ = window_input(rt.fmap(r.in_[0]), n, lo, hi, 0.0)
        args = (n.kernel, n.stride, [ph, n.pad[1]], False, True, None)  # count_include_pad
        rt.fmap(r.out).get(lo, hi).copy_(aten.avg_pool2d(xin, *args))
    elif r.din[0] >= 0:
        dx = rt.fmap(r.din[0])
        dy = rt.fmap(r.dout).get(lo, hi)
        # backward reads no input: the window's shape is all the kernel needs
        if lo == 0 and hi == n.h - 1 and dx.lo == 0 and dx.data.shape[2] == dx.h:
            ph, a, b = n.pad[0], 0, dx.h - 1
        else:
            ph, (a, b) = 0, input_window(n, lo, hi)
        shape = dy.new_zeros(()).expand(dy.shape[0], dy.shape[1], b - a + 1, dx.data.shape[3])
        args = (n.kernel, n.stride, [ph, n.pad[1]], False, True, None)
        add_window(dx, a, b, aten.avg_pool2d_backward(dy, shape, *args))


def add(rt, st, r, n, bwd):
    lo, hi = st.row_lo, st.row_hi
    if not bwd:
        y = rt.fmap(r.out).get(lo, hi)
        torch.add(rt.fmap(r.in_[0]).get(lo, hi), rt.fmap(r.in_[1]).get(lo, hi), out=y)
        for t in r.in_[2:]:
            y.add_(rt.fmap(t).get(lo, hi))
        return
    dy = rt.fmap(r.dout).get(lo, hi)
    for t in r.din:
        if t >= 0:
            rt.fmap(t).get(lo, hi).add_(dy)


def concat(rt, st, r, n, bwd):
    lo, hi = st.row_lo, st.row_hi
    y = rt.fmap(r.dout if bwd else r.out).get(lo, hi)
    off = 0
    for k, u in enumerate(n.inputs):
        ck = rt.sched.nodes[u].c
        if not bwd:
            y[:, off:off + ck].copy_(rt.fmap(r.in_[k]).get(lo, hi))
        elif r.din[k] >= 0:
            rt.fmap(r.din[k]).get(lo, hi).add_(y[:, off:off + ck])
        off += ck


def upsample(rt, st, r, n, bwd):
    lo, hi, f = st.row_lo, st.row_hi, n.scale
    if not bwd:
        x = rt.fmap(r.in_[0])
        src = x.get(lo // f, hi // f)
        rows = torch.arange(lo, hi + 1, device=src.device) // f - lo // f
        y = src.index_select(2, rows).repeat_interleave(f, dim=3)
        rt.fmap(r.out).get(lo, hi).copy_(y)
    elif r.din[0] >= 0:
        dx = rt.fmap(r.din[0])
        dy = rt.fmap(r.dout).get(lo, hi)
        g = dy.reshape(dy.shape[0], dy.shape[1], dy.shape[2], dy.shape[3] // f, f).sum(4)
        rows = torch.arange(lo, hi + 1, device=g.device) // f - dx.lo
        dx.data.index_add_(2, rows, g)


def dropout(rt, st, r, n, bwd):
    lo, hi = st.row_lo, st.row_hi
    keep = rt.dropout_scale(n)[:, :, lo:hi + 1]
    if not bwd:
        torch.mul(rt.fmap(r.in_[0]).get(lo, hi), keep, out=rt.fmap(r.out).get(lo, hi))
    elif r.din[0] >= 0:
        rt.fmap(r.din[0]).get(lo, hi).addcmul_(rt.fmap(r.dout).get(lo, hi), keep)


# ------------------------------------------------------------------ batch normalisation

def _channel(v):
    return v.view(1, -1, 1, 1)


# Statistics are PyTorch's, to the bit: mean = sum(x) / count (a float64 sum rounded to float32),
# the variance from the squared deviations from that float32 mean: var_sum = sum((x - mean)^2)
# rounded to float32, var = var_sum / count in float32, invstd = 1 / sqrt(var + eps) in float64
# rounded to float32. The (2, C) float64 sums of a statistics tensor hold sum(x) and
# sum((x - mean)^2). Over a whole stripe both come from one step; an exact STATS pass gathers
# sum(x) over the partitions and the runner replays the pass for the deviations
# (Runner._centered_pass) before FINALIZE. With PyTorch's statistics and its arithmetic for
# y (fused multiply-adds), a row plan's forward equals column training's to the bit, so no ReLU
# or max-pooling decision differs between them.

def _bn_sum(x):
    return x.sum(dim=(0, 2, 3), dtype=torch.float64)


def _bn_deviations(x, mean):
    """sum((x - mean)^2) per channel, float32 terms summed in float64; mean (C) float32."""
    d = x - _channel(mean)
    return (d * d).sum(dim=(0, 2, 3), dtype=torch.float64)


def _bn_mean(sums, count):
    return (sums[0] / count).float()


def _bn_finalize(sums, count, eps, stats):
    """stats (2, C) float32 = mean, invstd from the sums of `count` elements per channel."""
    stats[0].copy_(_bn_mean(sums, count))
    var = sums[1].float() / count
    stats[1].copy_(1.0 / torch.sqrt(var.double() + eps))


def _bn_running(running, sums, count, momentum):
    """running (2, C) = (1 - m) running + m (mean, unbiased var) from the sums."""
    mean = _bn_mean(sums, count).double()
    var = sums[1].float().double() / (count - 1)
    running[0].copy_(momentum * mean + (1.0 - momentum) * running[0].double())
    running[1].copy_(momentum * var + (1.0 - momentum) * running[1].double())


def _bn_reductions(x, stats, dy):
    """(sum dy, sum dy * xhat) per channel over the rows, in float64; xhat = (x - mean) * invstd.
    sum dy * xhat is taken as invstd * sum (x - mean) dy, as PyTorch's CPU kernel does."""
    mean, invstd = stats[0], stats[1]
    sdy = dy.sum(dim=(0, 2, 3), dtype=torch.float64)
    dotp = ((x - _channel(mean)) * dy).sum(dim=(0, 2, 3), dtype=torch.float64)
    return sdy, dotp * invstd.double()


def _bn_count(rt, n, rows):
    return rt.sched.batch * rows * n.w


def _whole_map(rt, st, n):
    """A BatchNorm step over the whole map with its own statistics (column order, the tail, a
    checkpoint segment): PyTorch's own kernels apply, and give PyTorch's bits."""
    return (not st.flags & rt.sched.flag["BN_GLOBAL"]) and st.row_lo == 0 and st.row_hi == n.h - 1


def _bn_frozen(rt, st, r, n, bwd):
    """--bn frozen: the affine map of the running statistics, which stay as they are:
    PyTorch's eval-mode kernels, elementwise, so a stripe gets the whole map's bits."""
    lo, hi = st.row_lo, st.row_hi
    running = rt.floats(r.running).view(2, n.c)
    gamma, beta = rt.param_views(n, r.param)
    xr = rt.fmap(r.in_[0]).get(lo, hi)
    if not bwd:
        out, _, _ = aten.native_batch_norm(xr, gamma, beta, running[0], running[1], False,
                                           n.momentum, n.eps)
        rt.fmap(r.out).get(lo, hi).copy_(out)
        return
    dx = rt.fmap(r.din[0])
    dgamma, dbeta = rt.param_views(n, r.param_grad)
    gi, gw, gb = aten.native_batch_norm_backward(
        rt.fmap(r.dout).get(lo, hi), xr, gamma, running[0], running[1], None, None, False,
        n.eps, [dx is not None, dgamma is not None, dgamma is not None])
    if dx is not None:
        dx.get(lo, hi).add_(gi)
    if dgamma is not None:
        dgamma.add_(gw)
        dbeta.add_(gb)


def _bn_forward(rt, st, r, n):
    flag = rt.sched.flag
    stats, sums = rt.bn_stats(r.aux, n.c)
    x = rt.fmap(r.in_[0]) if r.in_[0] >= 0 else None
    running = rt.floats(r.running).view(2, n.c) if r.running >= 0 else None
    if st.flags & flag["STATS_ACC"]:
        xo = x.get(r.own_lo, r.own_hi)
        mean = rt.centering.get(n.index)
        if mean is None:
            sums[0] += _bn_sum(xo)
        else:
            sums[1] += _bn_deviations(xo, mean)
        return
    if st.flags & flag["FINALIZE"]:
        count = _bn_count(rt, n, n.h)
        _bn_finalize(sums, count, n.eps, stats)
        _bn_running(running, sums, count, n.momentum)
        return
    lo, hi = st.row_lo, st.row_hi
    xr = x.get(lo, hi)
    gamma, beta = rt.param_views(n, r.param)
    y = rt.fmap(r.out).get(lo, hi)
    if _whole_map(rt, st, n):
        # running statistics move in the first forward only (not when recomputed)
        fwd = st.pass_ == "FWD"
        out, mean, invstd = aten.native_batch_norm(
            xr, gamma, beta, running[0] if fwd else None, running[1] if fwd else None, True,
            n.momentum, n.eps)
        y.copy_(out)
        stats[0].copy_(mean)
        stats[1].copy_(invstd)
        return
    if not st.flags & flag["BN_GLOBAL"]:  # statistics of this stripe (approximate)
        count = _bn_count(rt, n, hi - lo + 1)
        sums[0] += _bn_sum(xr)
        sums[1] += _bn_deviations(xr, _bn_mean(sums, count))
        _bn_finalize(sums, count, n.eps, stats)
        if st.pass_ == "FWD":
            own = r.own_hi - r.own_lo + 1
            _bn_running(running, sums, count, n.momentum * own / n.h)
    # y = x * alpha + shift, alpha = gamma * invstd, shift = beta - mean * alpha, each rounded
    # once (fused multiply-adds), as PyTorch's CPU kernel computes it: the same bits as a
    # whole-map step for the same statistics
    alpha = (gamma * stats[1]).double()
    shift = (beta.double() - stats[0].double() * alpha).float().double()
    y.copy_(torch.addcmul(_channel(shift), xr.double(), _channel(alpha)))


def _bn_backward(rt, st, r, n):
    flag = rt.sched.flag
    lo, hi = st.row_lo, st.row_hi
    stats, _ = rt.bn_stats(r.aux, n.c)
    gred = rt.bn_gred(r.gred, n.c)
    x = rt.fmap(r.in_[0])
    xr, dy = x.get(lo, hi), rt.fmap(r.dout).get(lo, hi)
    dx = rt.fmap(r.din[0])
    gamma, _ = rt.param_views(n, r.param)
    dgamma, dbeta = rt.param_views(n, r.param_grad)
    if _whole_map(rt, st, n) and not st.flags & flag["GSTATS_ACC"]:
        gi, gw, gb = aten.native_batch_norm_backward(
            dy, xr, gamma, None, None, stats[0], stats[1], True, n.eps,
            [dx is not None, dgamma is not None, dgamma is not None])
        if dx is not None:
            dx.get(lo, hi).add_(gi)
        if dgamma is not None:
            dgamma.add_(gw)
            dbeta.add_(gb)
        return
    if st.flags & flag["GSTATS_ACC"]:
        sdy, sdyx = _bn_reductions(xr, stats, dy)
        gred[0] += sdy
        gred[1] += sdyx
        return
    count = _bn_count(rt, n, n.h)
    if not st.flags & flag["BN_GLOBAL"]:  # reductions over this stripe (approximate)
        count = _bn_count(rt, n, hi - lo + 1)
        sdy, sdyx = _bn_reductions(xr, stats, dy)
        gred[0] += sdy
        gred[1] += sdyx
    if dgamma is not None:  # the direct term's parameter gradients over these rows
        sdy, sdyx = _bn_reductions(xr, stats, dy)
        dgamma.add_(sdyx.float())
        dbeta.add_(sdy.float())
    if dx is None:
        return
    # dx = (dy - mean(dy) - (x - mean) * k) * invstd * gamma, k = sum((x - mean) dy) invstd^2 / count,
    # the means over all `count` elements the statistics cover
    mean, invstd = stats[0], stats[1]
    grad_mean = _channel((gred[0] / count).float())
    dotp = (gred[1] / invstd.double()).float()
    k = _channel(dotp * invstd * invstd / count)
    mean, invstd, gamma = _channel(mean), _channel(invstd), _channel(gamma)
    if not st.flags & flag["BN_PARTIAL"]:
        dx.get(lo, hi).add_((dy - grad_mean - (xr - mean) * k) * invstd * gamma)
        return
    # overlapping partitions: dy is a partial sum over the rows back-propagated, the reduction
    # term goes to the rows this partition owns, once
    dx.get(lo, hi).add_(dy * invstd * gamma)
    xo = x.get(r.own_lo, r.own_hi)
    dx.get(r.own_lo, r.own_hi).sub_((grad_mean + (xo - mean) * k) * invstd * gamma)


def batchnorm(rt, st, r, n, bwd):
    if st.flags & rt.sched.flag.get("BN_FROZEN", 0):
        _bn_frozen(rt, st, r, n, bwd)
    else:
        (_bn_backward if bwd else _bn_forward)(rt, st, r, n)


# ------------------------------------------------------------------ whole-map ops

def _bins(size, out):
    """PyTorch's adaptive bins: [floor(i * size / out), ceil((i + 1) * size / out))."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def _row_sum(rt, st, r, n, bwd):
    """ROW_SUM: input rows own_lo..own_hi of a partition go into the whole output's bins (a bin
    begun by an earlier step continues its sum, one ending here is averaged); backward gives
    those rows their bins' share of dout."""
    a, b = r.own_lo, r.own_hi
    x = rt.fmap(r.din[0] if bwd else r.in_[0])
    if bwd and r.din[0] < 0:
        return
    y = rt.fmap(r.dout if bwd else r.out).data
    cols = _bins(x.data.shape[3], n.w)
    for i, (y0, y1) in enumerate(_bins(x.h, n.h)):
        r0, r1 = max(y0, a), min(y1 - 1, b)
        if r0 > r1:
            continue
        rows = x.get(r0, r1)
        for j, (x0, x1) in enumerate(cols):
            count = (y1 - y0) * (x1 - x0)
            if bwd:
                rows[:, :, :, x0:x1].add_((y[:, :, i, j] / count)[:, :, None, None])
                continue
            part = rows[:, :, :, x0:x1].sum(dim=(2, 3))
            acc = part if r0 == y0 else y[:, :, i, j] + part
            y[:, :, i, j] = acc / count if r1 == y1 - 1 else acc


def global_avgpool(rt, st, r, n, bwd):
    if st.flags & rt.sched.flag.get("ROW_SUM", 0):
        _row_sum(rt, st, r, n, bwd)
    elif not bwd:
        x = rt.fmap(r.in_[0]).data
        torch.mean(x, dim=(2, 3), keepdim=True, out=rt.fmap(r.out).data)
    elif r.din[0] >= 0:
        dx = rt.fmap(r.din[0]).data
        dx.add_(rt.fmap(r.dout).data / (dx.shape[2] * dx.shape[3]))


def adaptive_avgpool(rt, st, r, n, bwd):
    if st.flags & rt.sched.flag.get("ROW_SUM", 0):
        _row_sum(rt, st, r, n, bwd)
    elif not bwd:
        x = rt.fmap(r.in_[0]).data
        rt.fmap(r.out).data.copy_(aten._adaptive_avg_pool2d(x, n.output))
    elif r.din[0] >= 0:
        dx = rt.fmap(r.din[0]).data
        dy = rt.fmap(r.dout).data
        dx.add_(aten._adaptive_avg_pool2d_backward(dy, dy.new_zeros(()).expand(dx.shape)))


def fc(rt, st, r, n, bwd):
    batch = rt.sched.batch
    w, b = rt.param_views(n, r.param)
    x = rt.floats(r.in_[0]).view(batch, -1)
    if not bwd:
        y = rt.floats(r.out).view(batch, n.c)
        if b is None:
            torch.mm(x, w.t(), out=y)
        else:
            torch.addmm(b, x, w.t(), out=y)
        return
    dy = rt.floats(r.dout).view(batch, n.c)
    if r.din[0] >= 0:
        rt.floats(r.din[0]).view(batch, -1).addmm_(dy, w)
    dw, db = rt.param_views(n, r.param_grad)
    if dw is not None:
        dw.addmm_(dy.t(), x)
    if db is not None:
        db.add_(dy.sum(0))


def softmax_xent(rt, st, r, n, bwd):
    batch = rt.sched.batch
    logits = rt.floats(r.in_[0]).view(batch, -1)
    labels = rt.labels(r.labels)
    if not bwd:
        loss = F.cross_entropy(logits, labels)
        rt.floats(r.loss).copy_(loss.view(1))
        rt.loss = loss
    elif r.din[0] >= 0:
        g = torch.softmax(logits, dim=1)
        g[torch.arange(batch, device=g.device), labels] -= 1.0
        rt.floats(r.din[0]).view(batch, -1).add_(g, alpha=1.0 / batch)


# ------------------------------------------------------------------ optimizer

def update(rt, st, r, n):
    """torch.optim semantics (SGD, SGD with momentum and dampening 0, Adam with L2 decay), then
    the gradient is zeroed for the next step."""
    w, g = rt.floats(r.param), rt.floats(r.param_grad)
    hp = rt.hp
    d = g if hp["weight_decay"] == 0 else g.add(w, alpha=hp["weight_decay"])
    opt = rt.sched.optimizer
    if opt == "sgd":
        w.add_(d, alpha=-hp["lr"])
    elif opt == "momentum":
        buf = rt.floats(r.opt_state)
        buf.mul_(hp["momentum"]).add_(d)
        w.add_(buf, alpha=-hp["lr"])
    else:
        state = rt.floats(r.opt_state)
        m, v = state[:w.numel()], state[w.numel():]
        b1, b2 = hp["betas"]
        step = rt.train_step
        m.mul_(b1).add_(d, alpha=1.0 - b1)
        v.mul_(b2).addcmul_(d, d, value=1.0 - b2)
        bc1, bc2 = 1.0 - b1 ** step, 1.0 - b2 ** step
        denom = (v.sqrt() / (bc2 ** 0.5)).add_(hp["eps"])
        w.addcdiv_(m, denom, value=-hp["lr"] / bc1)
    g.zero_()


KERNELS = {
    "conv": conv, "relu": relu, "maxpool": maxpool, "avgpool": avgpool, "add": add,
    "concat": concat, "upsample": upsample, "dropout": dropout, "batchnorm": batchnorm,
    "global_avgpool": global_avgpool, "adaptive_avgpool": adaptive_avgpool, "fc": fc,
    "softmax_xent": softmax_xent,
}
