#!/usr/bin/env python3
"""pytorch_measure.py - what PyTorch itself uses for one training step, next to what
`lrcnn-sim --framework pytorch --allocator caching` predicts for it.

For each configuration (net x batch x optimizer x cudnn.benchmark x checkpoint segments) a fresh
Python process (so that the caching allocator, the cuBLAS workspaces and cuDNN start empty, as
the model assumes) does:

    model = torchvision.models.<net>().cuda().train()
    x = torch.randn(N, 3, 224, 224, device="cuda"); y = torch.randint(1000, (N,), device="cuda")
    opt = SGD(lr=0.01, momentum=0.9) | Adam(lr=1e-3) | SGD(lr=0.01)   (foreach: the CUDA default)
    def step():
        out = forward(x)            # model(x), or checkpoint_sequential(units, segments, x,
        loss = F.cross_entropy(out, y)                               use_reentrant=False)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    step() x --warmup; synchronize
    memory_allocated()/memory_reserved()        -> start_allocated, start_reserved
    reset_peak_memory_stats(); step(); synchronize
    max_memory_allocated()/max_memory_reserved() -> max_allocated, max_reserved

and prints one JSON object. A configuration that runs out of memory reports status "oom".
With --lrcnn-sim the parent also runs
    lrcnn-sim --net NET --batch N --optimizer O --framework pytorch --allocator caching --json
              [--segments S] [--workspace BYTES]
and adds pred_* fields and relative errors (prediction / measurement - 1).

The prediction models cudnn.benchmark=False (cuDNN's heuristic choice); its cuDNN workspace is
an estimate (--workspace). Runs with benchmark=True are measured to show how far that moves.

Checkpoint units (planner/pytorch.h, pytorch_checkpoint_units): the modules handed to
checkpoint_sequential are the model's layers at the points where one tensor crosses, with each
ReLU(inplace=True) joined to the module before it (a segment must not start by writing into its
checkpointed input):
    VGG/AlexNet: features (conv+relu, pool, ...), avgpool, Flatten, classifier (fc+relu, dropout..)
    ResNet:      conv1, bn1+relu, maxpool, every block of layer1..layer4, avgpool, Flatten, fc

Usage (on a machine with a GPU and torchvision; see bench/results/README-pytorch.md):
    python3 bench/pytorch_measure.py --lrcnn-sim build/bin/lrcnn-sim --out results.jsonl
    python3 bench/pytorch_measure.py --nets resnet50 --batches 64 --segments 0,2,4 --format csv
    python3 bench/pytorch_measure.py --dry-run --lrcnn-sim build/bin/lrcnn-sim   (no GPU needed)
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import time

FIELDS = ["net", "batch", "optimizer", "cudnn_benchmark", "segments", "warmup", "status",
          "start_allocated", "start_reserved", "max_allocated", "max_reserved",
          "num_alloc_retries", "step_seconds", "pred_start_allocated", "pred_max_allocated",
          "pred_max_reserved", "err_allocated", "err_reserved", "torch", "torchvision", "cuda",
          "cudnn", "gpu", "error"]


# ---------------------------------------------------------------------------- child: one run

def checkpoint_units(model, name):
    """The modules checkpoint_sequential gets; the same cut as pytorch_checkpoint_units."""
    import torch.nn as nn

    def fold(modules):
        units = []
        for m in modules:
            if isinstance(m, nn.ReLU) and m.inplace and units:
                units[-1] = nn.Sequential(units[-1], m)
            else:
                units.append(m)
        return units

    if name.startswith(("vgg", "alexnet")):
        return fold(model.features) + [model.avgpool, nn.Flatten(1)] + fold(model.classifier)
    if name.startswith("resnet"):
        units = [model.conv1, nn.Sequential(model.bn1, model.relu), model.maxpool]
        for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
            units += list(layer)
        return units + [model.avgpool, nn.Flatten(1), model.fc]
    raise SystemExit("no checkpoint units for %s" % name)


def checkpointed(seq, segments, inp):
    """torch.utils.checkpoint.checkpoint_sequential(seq, segments, inp, use_reentrant=False);
    before torch 2.0 it takes no use_reentrant, so its loop is replayed with checkpoint()."""
    from torch.utils.checkpoint import checkpoint, checkpoint_sequential
    try:
        return checkpoint_sequential(seq, segments, inp, use_reentrant=False)
    except (TypeError, ValueError) as e:
        if "use_reentrant" not in str(e):
            raise
    funcs = list(seq.children())
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
        inp = checkpoint(run(start, end), inp, use_reentrant=False)
    return run(end + 1, len(funcs) - 1)(inp)


def make_optimizer(torch, params, name):
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-3)
    if name == "momentum":
        return torch.optim.SGD(params, lr=0.01, momentum=0.9)
    return torch.optim.SGD(params, lr=0.01)


def versions(torch, torchvision):
    return {"torch": torch.__version__, "torchvision": torchvision.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "gpu": torch.cuda.get_device_name(0)}


def run_one(cfg):
    """Measures one configuration in this (fresh) process; returns the result dict."""
    import torch
    import torch.nn.functional as F
    import torchvision

    res = dict(cfg)
    res.update(versions(torch, torchvision))
    torch.backends.cudnn.benchmark = bool(cfg["cudnn_benchmark"])
    try:
        model = getattr(torchvision.models, cfg["net"])().cuda().train()
        n = cfg["batch"]
        x = torch.randn(n, 3, 224, 224, device="cuda")
        y = torch.randint(0, 1000, (n,), device="cuda")
        opt = make_optimizer(torch, model.parameters(), cfg["optimizer"])
        segments = cfg["segments"]
        if segments > 1:
            seq = torch.nn.Sequential(*checkpoint_units(model, cfg["net"]))

            def forward(inp):
                return checkpointed(seq, segments, inp)
        else:
            forward = model

        def step():
            out = forward(x)
            loss = F.cross_entropy(out, y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        for _ in range(cfg["warmup"]):
            step()
        torch.cuda.synchronize()
        res["start_allocated"] = torch.cuda.memory_allocated()
        res["start_reserved"] = torch.cuda.memory_reserved()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        res["step_seconds"] = round(time.perf_counter() - t0, 4)
        res["max_allocated"] = torch.cuda.max_memory_allocated()
        res["max_reserved"] = torch.cuda.max_memory_reserved()
        res["num_alloc_retries"] = torch.cuda.memory_stats().get("num_alloc_retries", 0)
        res["status"] = "ok"
    except torch.cuda.OutOfMemoryError as e:  # torch >= 1.13
        res["status"], res["error"] = "oom", str(e).splitlines()[0]
    return res


# ---------------------------------------------------------------------------- parent

def find_prediction(doc):
    """The first object in lrcnn-sim's JSON with max_allocated_bytes (else peak_bytes)."""
    stack = [doc]
    while stack:
        d = stack.pop(0)
        if isinstance(d, dict):
            if "max_allocated_bytes" in d:
                return (d.get("start_allocated_bytes"), d["max_allocated_bytes"],
                        d.get("max_reserved_bytes"))
            if "peak_bytes" in d and "peak_reserved_bytes" in d:
                return (None, d["peak_bytes"], d["peak_reserved_bytes"])
            stack.extend(d.values())
        elif isinstance(d, list):
            stack.extend(d)
    return None


def sim_command(args, cfg):
    cmd = [args.lrcnn_sim, "--net", cfg["net"], "--batch", str(cfg["batch"]), "--optimizer",
           cfg["optimizer"], "--framework", "pytorch", "--allocator", "caching", "--json"]
    if cfg["segments"] > 1:
        cmd += ["--segments", str(cfg["segments"])]
    if args.workspace:
        cmd += ["--workspace", str(args.workspace)]
    return cmd


def predict(args, cfg, res):
    if not args.lrcnn_sim:
        return
    cmd = sim_command(args, cfg)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        res["error"] = "lrcnn-sim: " + (p.stderr.strip() or "exit %d" % p.returncode)
        return
    pred = find_prediction(json.loads(p.stdout))
    if pred is None:
        res["error"] = "lrcnn-sim: no max_allocated_bytes/peak_bytes in its JSON"
        return
    res["pred_start_allocated"], res["pred_max_allocated"], res["pred_max_reserved"] = pred
    for key, meas in (("allocated", "max_allocated"), ("reserved", "max_reserved")):
        got, want = res.get("pred_max_" + key), res.get(meas)
        if got is not None and want:
            res["err_" + key] = round(got / want - 1, 4)


def measure(args, cfg):
    """Runs one configuration in a child process (fresh allocator); returns its dict."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(cfg)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return dict(cfg, status="timeout")
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1]
        return dict(cfg, status="error", error=tail)
    return json.loads(lines[-1])


def configurations(args):
    for net in args.nets:
        for seg in args.segments:
            for opt in args.optimizers:
                for bench in args.benchmark:
                    for batch in args.batches:
                        yield {"net": net, "batch": batch, "optimizer": opt,
                               "cudnn_benchmark": bench, "segments": seg,
                               "warmup": args.warmup}


def write_row(args, out, writer, res):
    if args.format == "csv":
        writer.writerow({k: res.get(k, "") for k in FIELDS})
    else:
        out.write(json.dumps(res, sort_keys=True) + "\n")
    out.flush()


def parse_args(argv):
    ints = lambda s: [int(v) for v in s.split(",")]
    words = lambda s: s.split(",")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", type=words, default=["vgg16", "resnet50", "resnet101"])
    ap.add_argument("--batches", type=ints, default=[32, 64, 128, 256])
    ap.add_argument("--optimizers", type=words, default=["momentum", "adam"],
                    help="any of sgd, momentum, adam")
    ap.add_argument("--benchmark", type=ints, default=[0, 1],
                    help="torch.backends.cudnn.benchmark values (0,1)")
    ap.add_argument("--segments", type=ints, default=[0],
                    help="checkpoint_sequential segments; 0 = no checkpointing")
    ap.add_argument("--warmup", type=int, default=1, help="steps before the measured one")
    ap.add_argument("--workspace", type=int, default=0,
                    help="cuDNN workspace estimate passed to lrcnn-sim (bytes)")
    ap.add_argument("--lrcnn-sim", default=None, help="path of lrcnn-sim for predictions")
    ap.add_argument("--out", default="-", help="output file (default stdout)")
    ap.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per configuration")
    ap.add_argument("--dry-run", action="store_true",
                    help="list configurations (and predictions) without measuring")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    if args.child:
        print(json.dumps(run_one(json.loads(args.child)), sort_keys=True), flush=True)
        return 0
    out = sys.stdout if args.out == "-" else open(args.out, "w", newline="")
    writer = None
    if args.format == "csv":
        writer = csv.DictWriter(out, fieldnames=FIELDS)
        writer.writeheader()
    oom_at = {}  # (net, optimizer, benchmark, segments) -> smallest batch that ran out
    for cfg in configurations(args):
        key = (cfg["net"], cfg["optimizer"], cfg["cudnn_benchmark"], cfg["segments"])
        if args.dry_run:
            res = dict(cfg, status="dry-run")
        elif key in oom_at and cfg["batch"] >= oom_at[key]:
            res = dict(cfg, status="skipped", error="batch %d ran out of memory" % oom_at[key])
        else:
            res = measure(args, cfg)
            if res.get("status") == "oom":
                oom_at[key] = cfg["batch"]
        predict(args, cfg, res)
        write_row(args, out, writer, res)
    if out is not sys.stdout:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
