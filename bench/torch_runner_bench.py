#!/usr/bin/env python3
"""torch_runner_bench.py - lrcnn's schedules run by the PyTorch runner (python/lrcnn_torch) on a
GPU: memory and step time of each plan next to plain PyTorch training of the same network.

    torch_runner_bench.py OUT SCHEDULE.json... [--device cuda] [--steps 5] [--warmup 2]

For each schedule: Runner on the device from torch.nn's default init, a synthetic batch
(N(0, 1) images, uniform labels), --warmup steps, then --steps timed steps (CUDA events around
each; the median is reported), with torch.cuda.reset_peak_memory_stats() before them. Reported:
the plan's predicted peak, the bytes the runner counted (schedule tensors), and
torch.cuda.max_memory_allocated() (schedule tensors plus the kernels' temporaries and the
allocator's 512-byte rounding). The baseline is the same network in plain PyTorch (autograd,
torch.optim with the schedule's optimizer, lr 0.05/momentum 0.9 as the runner) on the same batch.
Both run with TF32 off (fp32 as the planner assumes) and cudnn.benchmark on.

Writes OUT/torch-runner.json and OUT/torch-runner.md; prints the table. --device cpu runs the
same code on the CPU (counted bytes only), which is how it is tested without a GPU.
Deliberately not here: correctness (lrcnn_torch.check), planning (lrcnn-sim emits the files).
"""

import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))

import torch  # noqa: E402

from lrcnn_torch import Runner, load  # noqa: E402
from lrcnn_torch.check import make_batch  # noqa: E402
from lrcnn_torch.reference import ColumnNet, make_optimizer  # noqa: E402

MiB = 1048576.0


def timed(step, device, warmup, steps):
    """(median ms, max_memory_allocated over the timed steps or None) of calling step()."""
    cuda = device.type == "cuda"
    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    ms = []
    for _ in range(steps):
        if cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            step()
            b.record()
            b.synchronize()
            ms.append(a.elapsed_time(b))
        else:
            t0 = time.perf_counter()
            step()
            ms.append(1e3 * (time.perf_counter() - t0))
    peak = torch.cuda.max_memory_allocated(device) if cuda else None
    return statistics.median(ms), peak


def bench_runner(sched, batch, device, warmup, steps):
    runner = Runner(sched, device=device)
    images, labels = batch[0].to(device), batch[1].to(device)
    holder = {}

    def step():
        holder["loss"] = runner.step(images, labels)

    ms, peak = timed(step, device, warmup, steps)
    return {"plan": sched.describe(), "strategy": sched.plan["strategy"],
            "rows": [s["parts"] for s in sched.plan["stages"]],
            "predicted_peak_bytes": sched.predicted_peak_bytes,
            "counted_peak_bytes": runner.counted_peak_bytes,
            "device_peak_bytes": peak, "step_ms": ms, "loss": holder["loss"]}


def bench_plain(sched, batch, device, warmup, steps):
    net = ColumnNet(sched).to(device).train()
    opt = make_optimizer(sched, net.parameters())
    images, labels = batch[0].to(device), batch[1].to(device)

    def step():
        net.step += 1
        opt.zero_grad(set_to_none=False)
        net(images, labels).backward()
        opt.step()

    ms, peak = timed(step, device, warmup, steps)
    return {"plan": "plain PyTorch (autograd, column)", "strategy": "pytorch",
            "device_peak_bytes": peak, "step_ms": ms}


def table(rows, base):
    f = lambda v: "" if v is None else "%.0f" % (v / MiB)
    md = ["| plan | rows | predicted MiB | counted MiB | max_memory_allocated MiB | "
          "allocated / predicted | memory / PyTorch | step ms | time / PyTorch |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            md.append("| %s | | | | | | | | %s |" % (r["plan"], r["error"].replace("|", "/")))
            continue
        dev, pred = r.get("device_peak_bytes"), r.get("predicted_peak_bytes")
        mem = "%.2f" % (dev / base["device_peak_bytes"]) if dev and base and base.get("device_peak_bytes") else ""
        tim = "%.2f" % (r["step_ms"] / base["step_ms"]) if base and base.get("step_ms") else ""
        md.append("| %s | %s | %s | %s | %s | %s | %s | %.1f | %s |" % (
            r["plan"], ",".join(map(str, r.get("rows") or [])) or "-", f(pred),
            f(r.get("counted_peak_bytes")), f(dev),
            "%.3f" % (dev / pred) if dev and pred else "", mem, r["step_ms"], tim))
    return "\n".join(md) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out")
    p.add_argument("schedules", nargs="+")
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    a = p.parse_args()
    device = torch.device(a.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            print("torch_runner_bench: torch sees no CUDA device", file=sys.stderr)
            return 1
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    os.makedirs(a.out, exist_ok=True)
    scheds = [load(s) for s in a.schedules]
    batch = make_batch(scheds[0], 1)
    rows, base = [], None
    try:
        base = bench_plain(scheds[0], batch, device, a.warmup, a.steps)
        rows.append(base)
    except RuntimeError as e:  # out of memory, most likely: the plans still run
        rows.append({"plan": "plain PyTorch (autograd, column)", "error": str(e).splitlines()[0]})
    if device.type == "cuda":
        torch.cuda.empty_cache()
    for s in scheds:
        try:
            rows.append(bench_runner(s, batch, device, a.warmup, a.steps))
        except RuntimeError as e:
            rows.append({"plan": s.describe(), "error": str(e).splitlines()[0]})
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print("  %s done" % s.describe(), file=sys.stderr, flush=True)
    env = {"torch": torch.__version__, "device": str(device),
           "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
           "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
    with open(os.path.join(a.out, "torch-runner.json"), "w") as f:
        json.dump({"env": env, "steps": a.steps, "warmup": a.warmup, "rows": rows}, f, indent=1)
    md = ("# lrcnn schedules in PyTorch (python/lrcnn_torch)\n\n%s\n\n" % json.dumps(env)
          + "predicted = the plan's closed-form peak; counted = bytes of the schedule's tensors the "
            "runner held at its peak; max_memory_allocated adds the kernels' temporaries and the "
            "caching allocator's rounding. Ratios are to plain PyTorch training of the same network "
            "and batch; step ms is the median of %d steps after %d warm-up steps.\n\n"
            % (a.steps, a.warmup) + table(rows, base))
    with open(os.path.join(a.out, "torch-runner.md"), "w") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
