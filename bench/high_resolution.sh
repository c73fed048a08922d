#!/bin/bash
# bench/high_resolution.sh - the largest square input whose plan fits 16 GiB at batch 1 (fp32,
# SGD with momentum, the exact planner, --reserve 0): vgg16, and resnet50 with frozen BatchNorm
# (--fit, every strategy), without offload and with host memory as a tier (--offload input, and
# input,boundary within 1 TiB of host memory); and vgg16's plans at 16384x16384 and 65536x65536. Each run's output goes to bench/results/high-resolution/NAME.txt with
# the command, the load (uptime) and the wall time; bench/results/high-resolution.md quotes them.
# Rerunnable: BIN=build/bin by default.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
OUT=bench/results/high-resolution
mkdir -p "$OUT"
run() {
    local name=$1; shift
    local tmp t0
    tmp=$(mktemp)
    {
        echo "\$ lrcnn-sim $*"
        echo "# load: $(uptime | sed 's/.*load average: //')"
        t0=$SECONDS
        "$BIN/lrcnn-sim" "$@"
        echo "# wall: $((SECONDS - t0)) s"
    } >"$tmp" 2>&1
    mv "$tmp" "$OUT/$name.txt"
    echo "wrote $OUT/$name.txt"
}
run vgg16-fit --net vgg16 --batch 1 --fit 16GiB --reserve 0
run resnet50-frozen-fit --net resnet50 --batch 1 --bn frozen --fit 16GiB --reserve 0
run vgg16-16384 --net vgg16 --input 16384x16384 --strategy row,2ps,overl
run vgg16-offload-input-fit --net vgg16 --batch 1 --fit 16GiB --reserve 0 --offload input
run vgg16-offload-fit --net vgg16 --batch 1 --fit 16GiB --reserve 0 --offload input,boundary --host-memory 1TiB
run resnet50-frozen-offload-fit --net resnet50 --batch 1 --bn frozen --fit 16GiB --reserve 0 --offload input,boundary --host-memory 1TiB
run vgg16-65536-offload --net vgg16 --input 65536x65536 --strategy row,2ps,overl --offload input,boundary
