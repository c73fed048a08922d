#!/usr/bin/env python3
"""pytorch_step.py - one configuration of PyTorch training, measured the way bench/gpu.sh
measures lrcnn: step time (median) and peak memory of a torchvision model, printed as one JSON
object on stdout.

    model = torchvision.models.<net>(num_classes=1000).cuda().train()     fp32 weights
    x = randn(N, 3, H, H); y = randint(1000, (N,))                         synthetic batch
    opt = SGD(lr=0.05, momentum=0.9)                                       as lrcnn-validate
    step: loss = cross_entropy(model(x), y); loss.backward(); opt.step(); opt.zero_grad(set_to_none=False)

Settings chosen to compare like with like:
  - fp32 everywhere, TF32 off for cuDNN and cuBLAS (lrcnn runs cuDNN with CUDNN_FMA_MATH and
    cuBLAS with the default math, i.e. no TF32); --tf32 turns it on to show what it buys;
  - torch.backends.cudnn.benchmark = True (PyTorch at its fastest; lrcnn uses cuDNN's heuristics);
  - gradients kept between steps (zero_grad(set_to_none=False)), like lrcnn's resident gradients.
--warmup steps first (cuDNN autotuning, allocator growth), then torch.cuda.reset_peak_memory_stats()
and --steps timed steps, each between two CUDA events.

Output fields: status ("ok", "oom", "error"), net, input, batch, step_ms_median, step_ms (all),
start_allocated (weights, gradients, momentum after warm-up), max_allocated, max_reserved,
torch, cuda, cudnn, gpu, tf32, error.
Deliberately not here: checkpointing (bench/pytorch_measure.py covers PyTorch's memory model).
"""
import argparse
import json
import statistics
import sys


def measure(args):
    import torch
    import torch.nn.functional as F
    import torchvision

    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.manual_seed(1)
    dev = torch.device("cuda")
    model = getattr(torchvision.models, args.net)(num_classes=1000).to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = torch.randn(args.batch, 3, args.input, args.input, device=dev)
    y = torch.randint(1000, (args.batch,), device=dev)

    def step():
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    start_allocated = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        step()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return {
        "status": "ok",
        "step_ms_median": statistics.median(times),
        "step_ms": times,
        "start_allocated": start_allocated,
        "max_allocated": torch.cuda.max_memory_allocated(),
        "max_reserved": torch.cuda.max_memory_reserved(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "gpu": torch.cuda.get_device_name(0),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--net", required=True, help="torchvision model name (vgg16, resnet50, ...)")
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--input", type=int, default=224, help="input height = width (default 224)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--tf32", action="store_true", help="allow TF32 in cuDNN and cuBLAS")
    args = p.parse_args()
    if args.batch < 1 or args.input < 32 or args.steps < 1 or args.warmup < 1:
        p.error("--batch and --steps must be positive, --input at least 32, --warmup at least 1")
    out = {"net": args.net, "input": args.input, "batch": args.batch, "tf32": args.tf32}
    try:
        out.update(measure(args))
    except Exception as e:  # noqa: BLE001 - every failure becomes a JSON status
        oom = "out of memory" in str(e).lower() or type(e).__name__ == "OutOfMemoryError"
        out.update(status="oom" if oom else "error", error="%s: %s" % (type(e).__name__, str(e)[:300]))
    print(json.dumps(out))
    return 0 if out["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
