"""check.py - `python -m lrcnn_torch.check PLAN.json`: one training step of the plan row by row
in the runner and one column step of the same network in plain PyTorch autograd, from the same
weights and batch; prints the loss difference, the largest relative gradient error, the updated
parameters' error and the bytes the runner held at its peak against the plan's prediction.

Exit status: 0 when everything agrees (loss within --loss-tol relative, every gradient and
updated parameter within --grad-tol, counted peak equal to the prediction to the byte), 1 when
something disagrees, 2 when the file or a flag is bad. A plan with stripe BatchNorm in a row
region is approximate by design: its numbers are printed but only memory is held to them.

Relative errors are per layer (weight and bias together; BatchNorm gamma and beta, and for the
updated state its running statistics), max |a - b| / max |b|, the largest over all layers (as
lrcnn-validate --check-grads reports). A layer whose gradients cancel to rounding (a conv with a
bias right before a BatchNorm, whose bias gradients are zero in exact arithmetic, its weights'
nearly so) has a large relative error that float32 alone makes: such a layer passes when its
error is within ROUNDING_SLACK times column's own float32 error there, measured against the
same column step in float64 (run only when a layer is past the limit).
Deliberately not here: training over many steps (train.py), timing (bench/).
"""

import argparse
import json
import sys

import torch

from .reference import ColumnNet, make_optimizer
from .runner import Runner, RunnerError
from .schedule import ScheduleError, load


def _maxabs(t):
    """max |t| (aminmax: one pass and no temporary, ten times faster than abs().max())."""
    if not t.numel():
        return 0.0
    lo, hi = torch.aminmax(t)
    return max(hi.item(), -lo.item())


# a layer's error may be this many times column's own float32 error against float64 (the row
# run's own error and column's, added, with room for the row run's other summation order)
ROUNDING_SLACK = 4.0


def layer_errors(a, b):
    """{layer: (max |a - b|, max |b|)} comparing state_dict-like {key: tensor} a with b, a
    layer's tensors together (a layer's weight and bias form one tensor, as lrcnn-validate
    compares them: a bias followed by BatchNorm has a gradient that is zero up to rounding on its
    own)."""
    layers = {}
    for key in b:
        if key.endswith("num_batches_tracked"):
            continue
        layer = key.rsplit(".", 1)[0]
        d, m = layers.get(layer, (0.0, 0.0))
        layers[layer] = (max(d, _maxabs(a[key].to(b[key].device) - b[key])), max(m, _maxabs(b[key])))
    return layers


def _relative(d, m):
    return d / m if m > 0 else d


def _past(d, m, tol):
    return not _relative(d, m) <= tol


def _worst_of(layers):
    """(largest relative error, layer) of layer_errors' {layer: (d, m)}."""
    best = (0.0, "-")
    for layer, (d, m) in layers.items():
        e = _relative(d, m)
        if e > best[0] or best[1] == "-":
            best = (e, layer)
    return best


def worst(a, b):
    """(largest relative error, layer) comparing a with b: max |a - b| / max |b| per layer."""
    return _worst_of(layer_errors(a, b))


def make_batch(sched, seed):
    """A seeded batch: images N(0, 1) of the schedule's input shape, labels in [0, classes)."""
    gen = torch.Generator().manual_seed(seed)
    inp = sched.nodes[0]
    classes = sched.nodes[sched.nodes[-1].inputs[0]].c
    images = torch.randn((sched.batch, inp.c, inp.h, inp.w), generator=gen)
    labels = torch.randint(classes, (sched.batch,), generator=gen)
    return images, labels


class Reference:
    """One column step of the network in plain PyTorch autograd from `weights` (a runner
    state_dict) on `batch`: loss, gradients, and the state after torch.optim's update. A
    reference serves every schedule of the same network, configuration and batch."""

    def __init__(self, sched, weights, batch, device="cpu", seed=1, lr=0.05):
        ref = ColumnNet(sched, seed=seed, init=False).to(device).train()
        ref.load_runner_state_dict({k: v.to(device) for k, v in weights.items()})
        ref.step = 1  # the runner's first training step: the same dropout masks
        images, labels = batch
        loss = ref(images.to(device), labels.to(device))
        loss.backward()
        self.loss = float(loss)
        self.grads = ref.gradients()
        make_optimizer(sched, ref.parameters(), lr=lr).step()
        self.after = ref.runner_state_dict()
        self._args = (sched, weights, batch, device, seed)
        self._rounding = None

    def rounding(self):
        """{layer: max |float32 gradient - float64 gradient|}: column's own float32 error, from
        the same column step in float64 (made on the first call)."""
        if self._rounding is None:
            sched, weights, batch, device, seed = self._args
            ref = ColumnNet(sched, seed=seed, init=False).to(device).double().train()
            ref.load_runner_state_dict({k: v.to(device) for k, v in weights.items()})
            ref.step = 1
            images, labels = batch
            ref(images.to(device).double(), labels.to(device)).backward()
            errs = layer_errors({k: v.double() for k, v in self.grads.items()}, ref.gradients())
            self._rounding = {layer: d for layer, (d, _) in errs.items()}
        return self._rounding


def compare(sched, ref, weights, batch, device="cpu", seed=1, lr=0.05, grad_tol=1e-5):
    """Runs the schedule's first training step from `weights` on `batch` and compares it with
    `ref`; returns a dict of the figures (see print_report for their meaning). Column's float32
    error is measured when a layer's gradients are past grad_tol (verdict's limit)."""
    runner = Runner(sched, device=device, lr=lr, seed=seed, weights=weights)
    images, labels = batch
    loss = runner.step(images.to(device), labels.to(device), update=False)
    layers = layer_errors(runner.gradients(copy=False), ref.grads)
    grad_err, grad_key = _worst_of(layers)
    past = any(_past(d, m, grad_tol) for d, m in layers.values())
    rounding = ref.rounding() if past and not sched.approximate else {}
    runner.update()
    upd_err, upd_key = worst(runner.state_dict(copy=False), ref.after)
    return {
        "schedule": sched.origin, "plan": sched.describe(), "device": str(runner.device),
        "torch": torch.__version__, "approximate": sched.approximate,
        "loss": loss, "column_loss": ref.loss,
        "loss_rel_diff": abs(loss - ref.loss) / max(abs(ref.loss), 1e-30),
        "grad_max_rel_err": grad_err, "grad_worst": grad_key,
        # by layer: max |a - b|, max |b| and column's float32 error against float64 (None: not
        # measured, every layer within grad_tol)
        "grad_layers": {k: [d, m, rounding.get(k)] for k, (d, m) in layers.items()},
        "update_max_rel_err": upd_err, "update_worst": upd_key,
        "counted_peak_bytes": runner.counted_peak_bytes,
        "predicted_peak_bytes": sched.prediction["peak_bytes"],
        "replay_peak_bytes": sched.prediction["replay_peak_bytes"],
        "device_peak_bytes": runner.device_peak_bytes,
        "host_peak_bytes": runner.host_peak_bytes,
        "predicted_host_bytes": sched.prediction.get("host_bytes", 0),
    }


def initial_weights(sched, seed=1):
    """The weights a runner starts from with `seed` (torch.nn's default init), on the CPU."""
    return Runner(sched, seed=seed).state_dict()


def run_check(sched, device="cpu", seed=1, lr=0.05, grad_tol=1e-5):
    """The whole check of one schedule: its reference, then compare()."""
    weights = initial_weights(sched, seed)
    batch = make_batch(sched, seed)
    ref = Reference(sched, weights, batch, device, seed, lr)
    return compare(sched, ref, weights, batch, device, seed, lr, grad_tol)


def rounding_level(d, m, rounding, grad_tol):
    """Whether a layer's gradient error d (its largest gradient m) is past grad_tol only by
    float32 rounding: within ROUNDING_SLACK times column's own error there."""
    return _past(d, m, grad_tol) and rounding is not None and d <= ROUNDING_SLACK * rounding


def beyond(r, grad_tol):
    """[(layer, relative error)] of the layers past grad_tol by more than rounding."""
    return [(k, _relative(d, m)) for k, (d, m, rnd) in r["grad_layers"].items()
            if _past(d, m, grad_tol) and not rounding_level(d, m, rnd, grad_tol)]


def verdict(r, loss_tol, grad_tol):
    """The list of disagreements (empty when the check passes)."""
    bad = []
    if r["counted_peak_bytes"] != r["predicted_peak_bytes"]:
        bad.append("memory: counted peak %d bytes, predicted %d"
                   % (r["counted_peak_bytes"], r["predicted_peak_bytes"]))
    if r["host_peak_bytes"] != r["predicted_host_bytes"]:
        bad.append("host memory: counted %d bytes, predicted %d"
                   % (r["host_peak_bytes"], r["predicted_host_bytes"]))
    if r["approximate"]:
        return bad
    if not r["loss_rel_diff"] <= loss_tol:
        bad.append("loss: relative difference %.3g > %g" % (r["loss_rel_diff"], loss_tol))
    for layer, e in beyond(r, grad_tol):
        bad.append("gradients: %.3g > %g (%s)" % (e, grad_tol, layer))
    if not r["update_max_rel_err"] <= grad_tol:
        bad.append("updated parameters: %.3g > %g (%s)"
                   % (r["update_max_rel_err"], grad_tol, r["update_worst"]))
    return bad


def print_report(r, loss_tol, grad_tol, out):
    note = "  (approximate plan: stripe BatchNorm; not held to the limit)" if r["approximate"] else ""
    print("%s: %s, torch %s" % (r["plan"], r["device"], r["torch"]), file=out)
    print("loss     row-wise %.7f  column %.7f  relative difference %.2g (limit %g)%s"
          % (r["loss"], r["column_loss"], r["loss_rel_diff"], loss_tol, note), file=out)
    print("grads    largest relative error %.2g (%s; limit %g)"
          % (r["grad_max_rel_err"], r["grad_worst"], grad_tol), file=out)
    for k, (d, m, rnd) in r["grad_layers"].items():
        if rounding_level(d, m, rnd, grad_tol):
            print("         %s: %.3g from column, within %gx column's own float32 error (%.3g from "
                  "float64); its largest gradient %.3g" % (k, d, ROUNDING_SLACK, rnd, m), file=out)
    print("update   largest relative error of the updated parameters %.2g (%s)"
          % (r["update_max_rel_err"], r["update_worst"]), file=out)
    same = "equal" if r["counted_peak_bytes"] == r["predicted_peak_bytes"] else "DIFFERENT"
    print("memory   runner peak %d bytes, predicted %d (closed form), replay %d: %s"
          % (r["counted_peak_bytes"], r["predicted_peak_bytes"], r["replay_peak_bytes"], same),
          file=out)
    if r["predicted_host_bytes"]:
        print("host     runner %d bytes in host memory (--offload input), predicted %d"
              % (r["host_peak_bytes"], r["predicted_host_bytes"]), file=out)
    if r["device_peak_bytes"] is not None:
        print("device   torch.cuda.max_memory_allocated() %d bytes (%+.1f%% of the prediction: "
              "kernel temporaries)" % (r["device_peak_bytes"],
                                       100.0 * (r["device_peak_bytes"] / r["predicted_peak_bytes"] - 1)),
              file=out)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m lrcnn_torch.check",
                                description="Run one step of an lrcnn schedule row-wise in "
                                            "PyTorch and compare it with plain autograd.")
    p.add_argument("schedule", help="a file written by lrcnn-sim --emit-schedule")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    p.add_argument("--seed", type=int, default=1, help="weights, batch and dropout (default 1)")
    p.add_argument("--lr", type=float, default=0.05, help="learning rate of the update (0.05)")
    p.add_argument("--loss-tol", type=float, default=1e-6, help="relative loss limit (1e-6)")
    p.add_argument("--grad-tol", type=float, default=1e-5, help="relative gradient limit (1e-5)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    a = p.parse_args(argv)
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("lrcnn_torch.check: --device %s: torch sees no CUDA device" % a.device, file=sys.stderr)
        return 1
    try:
        sched = load(a.schedule)
        r = run_check(sched, a.device, a.seed, a.lr, a.grad_tol)
    except (ScheduleError, RunnerError) as e:
        print("lrcnn_torch.check: %s" % e, file=sys.stderr)
        return 2 if isinstance(e, ScheduleError) else 1
    bad = verdict(r, a.loss_tol, a.grad_tol)
    r["ok"] = not bad
    r["disagreements"] = bad
    if a.json:
        print(json.dumps(r, indent=1))
    else:
        print_report(r, a.loss_tol, a.grad_tol, sys.stdout)
        print("ok" if not bad else "DISAGREE: " + "; ".join(bad))
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
