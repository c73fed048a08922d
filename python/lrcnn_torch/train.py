"""train.py - `python -m lrcnn_torch.train PLAN.json`: trains the plan's network on
Fashion-MNIST row by row with the runner, and the same network column-wise in plain PyTorch
(autograd and torch.optim) from the same initial weights on the same batches, then prints the
loss per epoch, the test accuracy of both, the runner's counted peak against the plan's
prediction, and the mean step time of each.

Both runs start from the runner's initial weights (torch.nn's default init, --seed), shuffle the
training set with the same generator each epoch and drop the last incomplete batch (the
schedule's batch is fixed). Test accuracy uses the plain module in eval mode (running BatchNorm
statistics, no dropout), for the row-trained weights too.
Deliberately not here: checkpoints (Runner.state_dict() is the way out), augmentation.
"""

import argparse
import json
import statistics
import sys
import time

import torch

from . import data
from .reference import ColumnNet, make_optimizer
from .runner import Runner, RunnerError
from .schedule import ScheduleError, load


def accuracy(sched, weights, test, device, batch=1000):
    net = ColumnNet(sched, init=False).to(device)
    net.load_runner_state_dict({k: v.to(device) for k, v in weights.items()})
    net.eval()
    images, labels = test
    right = 0
    with torch.no_grad():
        for i in range(0, len(labels), batch):
            logits = net.logits(images[i:i + batch].to(device))
            right += (logits.argmax(1).cpu() == labels[i:i + batch]).sum().item()
    return right / len(labels)


class ColumnRun:
    """The same network in plain PyTorch: autograd and torch.optim, dropout masks of the
    runner's generator (ColumnNet)."""

    def __init__(self, sched, weights, device, seed, hp):
        self.net = ColumnNet(sched, seed=seed, init=False).to(device).train()
        self.net.load_runner_state_dict({k: v.to(device) for k, v in weights.items()})
        self.opt = make_optimizer(sched, self.net.parameters(), **hp)
        self.step_no = 0

    def step(self, images, labels):
        self.step_no += 1
        self.net.step = self.step_no
        self.opt.zero_grad(set_to_none=False)
        loss = self.net(images, labels)
        loss.backward()
        self.opt.step()
        return float(loss)


def epochs(n_train, batch, n_epochs, seed):
    """Batches of indices, epoch by epoch: a seeded permutation, the last partial batch dropped."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n_epochs):
        perm = torch.randperm(n_train, generator=gen)
        yield [perm[i:i + batch] for i in range(0, n_train - batch + 1, batch)]


def train(run, train_set, sched, n_epochs, seed, device, progress, name):
    """Trains `run` (a Runner or ColumnRun); returns (mean loss per epoch, step seconds)."""
    images, labels = train_set
    losses, times = [], []
    for e, batches in enumerate(epochs(len(labels), sched.batch, n_epochs, seed), 1):
        total = 0.0
        for k, idx in enumerate(batches, 1):
            x, y = images[idx].to(device), labels[idx].to(device)
            t0 = time.perf_counter()
            total += run.step(x, y)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
            if progress and k % 200 == 0:
                print("  %s epoch %d: %d/%d steps, loss %.4f" % (name, e, k, len(batches), total / k),
                      file=sys.stderr, flush=True)
        losses.append(total / len(batches))
    return losses, times


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m lrcnn_torch.train",
                                description="Train a plan's network on Fashion-MNIST row by row "
                                            "in PyTorch, beside plain column training.")
    p.add_argument("schedule", help="a file written by lrcnn-sim --emit-schedule (1x28x28 input)")
    p.add_argument("--data-dir", default=data.DEFAULT_DIR)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--train-limit", type=int, help="use the first K training images")
    p.add_argument("--test-limit", type=int, help="use the first K test images")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3, Adam)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--no-column", action="store_true", help="train row-wise only")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        sched = load(a.schedule)
        device = torch.device(a.device)
        train_set = data.load("train", a.data_dir, a.train_limit)
        test_set = data.load("test", a.data_dir, a.test_limit)
        runner = Runner(sched, device=device, lr=a.lr, seed=a.seed)
    except (ScheduleError, RunnerError, OSError, ValueError) as e:
        print("lrcnn_torch.train: %s" % e, file=sys.stderr)
        return 2
    if tuple(train_set[0].shape[1:]) != (sched.nodes[0].c, sched.nodes[0].h, sched.nodes[0].w):
        print("lrcnn_torch.train: %s: the network takes %s images, Fashion-MNIST has 1x28x28"
              % (a.schedule, "x".join(map(str, (sched.nodes[0].c, sched.nodes[0].h, sched.nodes[0].w)))),
              file=sys.stderr)
        return 2
    weights = runner.state_dict()
    hp = {"lr": a.lr}
    out = {"plan": sched.describe(), "device": str(device), "torch": torch.__version__,
           "epochs": a.epochs, "train_images": len(train_set[1]), "test_images": len(test_set[1])}
    runs = [("row-wise", runner)]
    if not a.no_column:
        runs.append(("column", ColumnRun(sched, weights, device, a.seed, hp)))
    for name, run in runs:
        t0 = time.time()
        losses, times = train(run, train_set, sched, a.epochs, a.seed, device, not a.quiet, name)
        w = run.state_dict() if isinstance(run, Runner) else run.net.runner_state_dict()
        out[name] = {"loss_per_epoch": losses, "test_accuracy": accuracy(sched, w, test_set, device),
                     "seconds": time.time() - t0, "step_ms_mean": 1e3 * statistics.mean(times),
                     "step_ms_median": 1e3 * statistics.median(times)}
    out["counted_peak_bytes"] = runner.counted_peak_bytes
    out["predicted_peak_bytes"] = sched.predicted_peak_bytes
    out["device_peak_bytes"] = runner.device_peak_bytes
    if a.json:
        print(json.dumps(out, indent=1))
    else:
        print_report(out)
    return 0


def print_report(out):
    print("%s: %s, torch %s, %d epochs of %d images, test on %d" % (
        out["plan"], out["device"], out["torch"], out["epochs"], out["train_images"],
        out["test_images"]))
    for name in ("row-wise", "column"):
        r = out.get(name)
        if r:
            print("%-9s loss per epoch %s  test accuracy %.2f%%  step %.1f ms (mean)" % (
                name, " ".join("%.4f" % x for x in r["loss_per_epoch"]), 100 * r["test_accuracy"],
                r["step_ms_mean"]))
    print("memory    runner peak %d bytes, predicted %d: %s" % (
        out["counted_peak_bytes"], out["predicted_peak_bytes"],
        "equal" if out["counted_peak_bytes"] == out["predicted_peak_bytes"] else "DIFFERENT"))


if __name__ == "__main__":
    sys.exit(main())
