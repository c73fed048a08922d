#!/usr/bin/env python3
"""pytorch_measure.py - what PyTorch itself uses for one training step, next to what
`lrcnn-sim --framework pytorch --allocator caching` predicts for it.

For each configuration (net x input x batch x optimizer x cudnn.benchmark x checkpoint units x
segments) a fresh Python process (so that the caching allocator, the cuBLAS workspaces and cuDNN
start empty, as the model assumes) does:

    model = torchvision.models.<net>().cuda().train()
    x = torch.randn(N, 3, H, H, device="cuda"); y = torch.randint(1000, (N,), device="cuda")
    opt = SGD(lr=0.01, momentum=0.9) | Adam(lr=1e-3) | SGD(lr=0.01)   (foreach: the CUDA default)
    def step():
        out = forward(x)            # model(x), or the checkpoint idiom below
        loss = F.cross_entropy(out, y)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    step() x --warmup; synchronize
    memory_allocated()/memory_reserved()        -> start_allocated, start_reserved
    reset_peak_memory_stats(); step(); synchronize
    max_memory_allocated()/max_memory_reserved() -> max_allocated, max_reserved

and prints one JSON object. A configuration that runs out of memory reports status "oom".
With --lrcnn-sim the parent also runs
    lrcnn-sim --net NET --batch N --input HxH --optimizer O --framework pytorch --allocator caching
              --json [--strategy checkpoint --segments S --checkpoint-units U] [--workspace B]
              [--alloc-conf CONF]
and adds pred_* fields and relative errors (prediction / measurement - 1). --markdown FILE turns
a results file into the rows of the comparison table in bench/results/README-pytorch.md.

The checkpoint idiom (README, "What PyTorch would use"): every nn.ReLU gets inplace=False, then
    x = checkpoint_sequential(body, S, x, use_reentrant=False); out = head(x)
with body an nn.Sequential of the units and head the rest (avgpool, flatten, fc / classifier):
    top     VGG/AlexNet: the modules of `features`; ResNet: conv1, bn1, relu, maxpool,
            layer1..layer4
    blocks  VGG/AlexNet: each conv with its ReLU, each pool; ResNet: conv1, bn1+relu, maxpool,
            every residual block
planner/pytorch_checkpoint.c finds the same units from the graph (tests/test_pytorch.c and
tests/data/pytorch/saved_golden.json hold the two to each other on every zoo net).

The prediction models cudnn.benchmark=False (cuDNN's heuristic choice); its cuDNN workspace is
an estimate (--workspace). Runs with benchmark=True are measured to show how far that moves.
--alloc-conf sets PYTORCH_ALLOC_CONF (and PYTORCH_CUDA_ALLOC_CONF, for older torch) in the child.

Usage (on a machine with a GPU and torchvision; see bench/results/README-pytorch.md):
    python3 bench/pytorch_measure.py --lrcnn-sim build/bin/lrcnn-sim --out results.jsonl
    python3 bench/pytorch_measure.py --nets resnet50 --batches 64 --segments 4 --units top,blocks
    python3 bench/pytorch_measure.py --nets resnet50,vgg16 --inputs 2048,5120 --batches 1
    python3 bench/pytorch_measure.py --dry-run --lrcnn-sim build/bin/lrcnn-sim   (no GPU needed)
    python3 bench/pytorch_measure.py --markdown results.jsonl                    (table rows)
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import time

FIELDS = ["net", "input", "batch", "optimizer", "cudnn_benchmark", "units", "segments",
          "alloc_conf", "warmup", "status", "start_allocated", "start_reserved", "max_allocated",
          "max_reserved", "num_alloc_retries", "step_seconds", "pred_start_allocated",
          "pred_start_reserved", "pred_max_allocated", "pred_max_reserved", "err_allocated",
          "err_reserved", "torch", "torchvision", "cuda", "cudnn", "gpu", "error"]


# ---------------------------------------------------------------------------- child: one run

def checkpoint_units(model, name, form):
    """checkpoint_sequential's modules and the head run after them (planner/pytorch.h)."""
    import torch
    import torch.nn as nn

    def fold(modules):  # blocks: each ReLU joins the module before it
        units = []
        for m in modules:
            if isinstance(m, nn.ReLU) and units:
                units[-1] = nn.Sequential(units[-1], m)
            else:
                units.append(m)
        return units

    if name.startswith(("vgg", "alexnet")):
        body = list(model.features)
        head = lambda t: model.classifier(torch.flatten(model.avgpool(t), 1))
        return (body if form == "top" else fold(body)), head
    if name.startswith("resnet"):
        layers = [model.layer1, model.layer2, model.layer3, model.layer4]
        head = lambda t: model.fc(torch.flatten(model.avgpool(t), 1))
        if form == "top":
            return [model.conv1, model.bn1, model.relu, model.maxpool] + layers, head
        blocks = [b for layer in layers for b in layer]
        return [model.conv1, nn.Sequential(model.bn1, model.relu), model.maxpool] + blocks, head
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
        n, h = cfg["batch"], cfg["input"]
        x = torch.randn(n, 3, h, h, device="cuda")
        y = torch.randint(0, 1000, (n,), device="cuda")
        opt = make_optimizer(torch, model.parameters(), cfg["optimizer"])
        segments = cfg["segments"]
        if segments > 1:
            for m in model.modules():
                if isinstance(m, torch.nn.ReLU):
                    m.inplace = False
            units, head = checkpoint_units(model, cfg["net"], cfg["units"])
            seq = torch.nn.Sequential(*units)

            def forward(inp):
                return head(checkpointed(seq, segments, inp))
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
                return (d.get("start_allocated_bytes"), d.get("start_reserved_bytes"),
                        d["max_allocated_bytes"], d.get("max_reserved_bytes"))
            if "peak_bytes" in d and "peak_reserved_bytes" in d:
                return (None, None, d["peak_bytes"], d["peak_reserved_bytes"])
            stack.extend(d.values())
        elif isinstance(d, list):
            stack.extend(d)
    return None


def sim_command(args, cfg):
    cmd = [args.lrcnn_sim, "--net", cfg["net"], "--batch", str(cfg["batch"]), "--input",
           "%dx%d" % (cfg["input"], cfg["input"]), "--optimizer", cfg["optimizer"],
           "--framework", "pytorch", "--allocator", "caching", "--json"]
    if cfg["segments"] > 1:
        cmd += ["--strategy", "checkpoint", "--segments", str(cfg["segments"]),
                "--checkpoint-units", cfg["units"]]
    else:
        cmd += ["--strategy", "column"]
    if args.workspace:
        cmd += ["--workspace", str(args.workspace)]
    if cfg["alloc_conf"]:
        cmd += ["--alloc-conf", cfg["alloc_conf"]]
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
    (res["pred_start_allocated"], res["pred_start_reserved"], res["pred_max_allocated"],
     res["pred_max_reserved"]) = pred
    for key, meas in (("allocated", "max_allocated"), ("reserved", "max_reserved")):
        got, want = res.get("pred_max_" + key), res.get(meas)
        if got is not None and want:
            res["err_" + key] = round(got / want - 1, 4)


def measure(args, cfg):
    """Runs one configuration in a child process (fresh allocator); returns its dict."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(cfg)]
    env = dict(os.environ)
    if cfg["alloc_conf"]:
        env["PYTORCH_ALLOC_CONF"] = env["PYTORCH_CUDA_ALLOC_CONF"] = cfg["alloc_conf"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
    except subprocess.TimeoutExpired:
        return dict(cfg, status="timeout")
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1]
        return dict(cfg, status="error", error=tail)
    return json.loads(lines[-1])


def configurations(args):
    for net in args.nets:
        for h in args.inputs:
            for seg in args.segments:
                for units in (args.units if seg > 1 else ["-"]):
                    for opt in args.optimizers:
                        for bench in args.benchmark:
                            for batch in args.batches:
                                yield {"net": net, "input": h, "batch": batch, "optimizer": opt,
                                       "cudnn_benchmark": bench, "units": units,
                                       "segments": seg, "alloc_conf": args.alloc_conf,
                                       "warmup": args.warmup}


def mib(v):
    return "%.0f" % (v / 2**20) if isinstance(v, (int, float)) else ""


def pct(v):
    return "%+.1f%%" % (100 * v) if isinstance(v, (int, float)) else ""


def markdown(path):
    """The comparison table's rows (MiB) from a jsonl results file (--dry-run files give the
    predictions with the measured columns empty)."""
    print("| net | input | N | optimizer | benchmark | units | S | measured max allocated | "
          "predicted | error | measured max reserved | predicted | error | retries |")
    print("|-----|------:|--:|-----------|----------:|-------|--:|---:|---:|---:|---:|---:|---:|---:|")
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r.get("status") not in ("ok", "dry-run"):
                continue
            print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                r["net"], r.get("input", 224), r["batch"], r["optimizer"],
                r["cudnn_benchmark"], r.get("units", "-"), r["segments"],
                mib(r.get("max_allocated")), mib(r.get("pred_max_allocated")),
                pct(r.get("err_allocated")), mib(r.get("max_reserved")),
                mib(r.get("pred_max_reserved")), pct(r.get("err_reserved")),
                r.get("num_alloc_retries", "")))


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
    ap.add_argument("--inputs", type=ints, default=[224], help="square input sizes H (H x H)")
    ap.add_argument("--batches", type=ints, default=[32, 64, 128, 256])
    ap.add_argument("--optimizers", type=words, default=["momentum", "adam"],
                    help="any of sgd, momentum, adam")
    ap.add_argument("--benchmark", type=ints, default=[0, 1],
                    help="torch.backends.cudnn.benchmark values (0,1)")
    ap.add_argument("--segments", type=ints, default=[0],
                    help="checkpoint_sequential segments; 0 = no checkpointing")
    ap.add_argument("--units", type=words, default=["top"],
                    help="checkpoint units for segments > 1: top, blocks or both")
    ap.add_argument("--alloc-conf", default="",
                    help="PYTORCH_ALLOC_CONF for the run and --alloc-conf for lrcnn-sim")
    ap.add_argument("--warmup", type=int, default=1, help="steps before the measured one")
    ap.add_argument("--workspace", type=int, default=0,
                    help="cuDNN workspace estimate passed to lrcnn-sim (bytes)")
    ap.add_argument("--lrcnn-sim", default=None, help="path of lrcnn-sim for predictions")
    ap.add_argument("--out", default="-", help="output file (default stdout)")
    ap.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per configuration")
    ap.add_argument("--dry-run", action="store_true",
                    help="list configurations (and predictions) without measuring")
    ap.add_argument("--markdown", metavar="RESULTS",
                    help="print the comparison table's rows from a jsonl results file")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    if args.child:
        print(json.dumps(run_one(json.loads(args.child)), sort_keys=True), flush=True)
        return 0
    if args.markdown:
        markdown(args.markdown)
        return 0
    bad = [u for u in args.units if u not in ("top", "blocks")]
    if bad:
        raise SystemExit("--units: expected top or blocks, got %s" % ",".join(bad))
    out = sys.stdout if args.out == "-" else open(args.out, "w", newline="")
    writer = None
    if args.format == "csv":
        writer = csv.DictWriter(out, fieldnames=FIELDS)
        writer.writeheader()
    oom_at = {}  # (net, optimizer, benchmark, segments) -> smallest batch that ran out
    for cfg in configurations(args):
        key = (cfg["net"], cfg["input"], cfg["optimizer"], cfg["cudnn_benchmark"],
               cfg["units"], cfg["segments"])
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
