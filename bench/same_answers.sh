#!/bin/sh
# same_answers.sh - do two lrcnn-sim binaries give the same answers? For a change meant to make
# the planner faster and nothing else: 67 --fit requests (9 zoo nets x 6 settings, 13 others)
# and 75 tables (12 nets x 6 settings, 3 others), each one's stdout compared byte for byte.
#
#   bench/same_answers.sh OLD_LRCNN_SIM NEW_LRCNN_SIM [DIR]
#
# Prints one line per request whose output differs and a summary; exit 0 when none differs, 1
# when some do, 2 on bad arguments. DIR (default: a temporary one, removed) keeps the outputs.
# Takes about 2 minutes on 2 cores (the fits are most of it).
set -u
[ $# -ge 2 ] && [ -x "$1" ] && [ -x "$2" ] || {
    echo "usage: bench/same_answers.sh OLD_LRCNN_SIM NEW_LRCNN_SIM [DIR]" >&2
    exit 2
}
old=$1 new=$2
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${3:-}
if [ -z "$dir" ]; then
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT
fi
mkdir -p "$dir/old" "$dir/new"
n=0 differ=0
ask() {
    n=$((n + 1))
    "$old" "$@" > "$dir/old/$n.out" 2>&1
    "$new" "$@" > "$dir/new/$n.out" 2>&1
    if ! cmp -s "$dir/old/$n.out" "$dir/new/$n.out"; then
        differ=$((differ + 1))
        echo "differs: lrcnn-sim $*"
    fi
}
for net in vgg11 vgg16 vgg19 resnet18 resnet34 resnet50 resnet101 alexnet tiny-mix; do
    ask --net $net --fit h100-80gb --json
    ask --net $net --fit h100-80gb --bn frozen --json
    ask --net $net --fit h100-80gb --bn stripe --json
    ask --net $net --fit h100-80gb --boundaries auto --json
    ask --net $net --fit h100-80gb --dtype fp16 --optimizer adam --json
    ask --net $net --fit h100-80gb --batch 8 --json
done
ask --net resnet50 --fit h100-80gb --strategy auto --json
ask --net vgg16 --fit h100-80gb --offload auto --json
ask --net vgg16 --fit h100-80gb --offload boundary --json
ask --net vgg16 --fit h100-80gb --offload input --json
ask --net resnet50 --fit h100-80gb --offload auto --host-memory 64GiB --json
ask --net vgg16 --fit h100-80gb --rows 8 --json
ask --net vgg16 --fit h100-80gb --region pool2 --json
ask --net resnet50 --fit h100-80gb --workspace 256MiB --json
ask --net resnet50 --fit h100-80gb --device h100-80gb --json
ask --net resnet101 --fit a100-40gb --json
ask --net tiny-mix --fit 17000000B --reserve 0 --json
ask --net resnet18 --fit a100-40gb --offload auto --json
ask --net vgg19 --fit a100-40gb --bn frozen --offload auto --json
nets=$root/tests/data/nets
for net in vgg11 vgg16 resnet18 resnet50 resnet101 alexnet tiny-vgg tiny-resnet tiny-mix \
    $nets/tiny-twin.json $nets/tiny-skip.json $nets/tiny-pad.json; do
    ask --net $net --batch 8 --json
    ask --net $net --batch 32 --bn stripe
    ask --net $net --batch 4 --bn frozen --strategy auto
    ask --net $net --batch 2 --strategy row,2ps,overl --rows 5 --json
    ask --net $net --batch 2 --boundaries auto --offload auto
    ask --net $net --batch 3 --strategy 2ps-h,overl-h --json
done
ask --net vgg16 --batch 256
ask --net resnet50 --input 512x512 --batch 2 --json
ask --net resnet101 --batch 256 --json
echo "$n requests, $differ with different output"
[ "$differ" -eq 0 ]
