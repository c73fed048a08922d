#!/usr/bin/env bash
# Regenerates bench/results/planner.md: every strategy (and auto) for vgg16, resnet50 and
# resnet101 at 224x224, batch 256, fp32, SGD with momentum, both BatchNorm modes.
set -euo pipefail
cd "$(dirname "$0")/.."
sim=build/bin/lrcnn-sim
out=bench/results/planner.md
tmp=$(mktemp)
{
    echo '# Planner results (closed form = exact replay)'
    echo
    echo 'Produced by `bench/planner_tables.sh` (lrcnn-sim, 224x224, batch 256, fp32, SGD with momentum).'
    echo 'Peaks are predictions for our executor; compute is FLOPs relative to column.'
    echo
    for net in vgg16 resnet50 resnet101; do
        for bn in exact stripe; do
            echo "## $net, --bn $bn"
            echo
            echo '```'
            "$sim" --net "$net" --batch 256 --bn "$bn" --strategy all,auto | tail -n +4
            echo '```'
            echo
        done
    done
} > "$tmp"
mv "$tmp" "$out"
echo "wrote $out"
