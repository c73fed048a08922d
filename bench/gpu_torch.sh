#!/usr/bin/env bash
# bench/gpu_torch.sh - the PyTorch runner on a GPU: lrcnn's plans for vgg16 at batch 64 (224x224,
# SGD with momentum) executed by python/lrcnn_torch, torch.cuda.max_memory_allocated() of a
# row-wise step against the prediction, and step time against plain PyTorch training of the
# same network (bench/torch_runner_bench.py). bench/gpu.sh runs it when torch with CUDA is
# importable; it also runs alone:
#
#   bench/gpu_torch.sh --prepare     on the build machine (needs build/bin/lrcnn-sim): writes the
#                                    schedules into bench/deps/schedules/ (the GPU machine cannot
#                                    build lrcnn-sim: no graphviz there)
#   bench/gpu_torch.sh               on the GPU machine: emits the schedules itself when
#                                    build/bin/lrcnn-sim runs, else uses bench/deps/schedules/
#
# Environment: OUT (results folder, default bench/results/gpu/torch), TORCH_PY (the interpreter
# with CUDA torch; default: python/torch-python's choice), CONFIG ("net:input:batch", default
# vgg16:224:64), STRATEGIES (default "column 2ps overl-h 2ps-h checkpoint"), STEPS (5), WARMUP (2),
# DEVICE (cuda; cpu runs the same code without a GPU, counted bytes only).
# Writes: OUT/torch-runner.md, OUT/torch-runner.json, OUT/schedules/*.json, OUT/bench.log.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CONFIG=${CONFIG:-vgg16:224:64}
STRATEGIES=${STRATEGIES:-column 2ps overl-h 2ps-h checkpoint}
IFS=: read -r NET INPUT BATCH <<<"$CONFIG"
SIM=${LRCNN_SIM:-$ROOT/build/bin/lrcnn-sim}
export LRCNN_NETWORKS=${LRCNN_NETWORKS:-$ROOT/networks}

# emit DIR: one schedule per strategy, plan-<strategy>.json
emit() {
    mkdir -p "$1"
    local st
    for st in $STRATEGIES; do
        "$SIM" --net "$NET" --input "${INPUT}x${INPUT}" --batch "$BATCH" --optimizer momentum \
            --strategy "$st" --emit-schedule "$1/$NET-$INPUT-b$BATCH-$st.json" >/dev/null || return 1
    done
}

if [ "${1:-}" = "--prepare" ]; then
    emit "$ROOT/bench/deps/schedules" && echo "schedules in bench/deps/schedules/" && exit 0
    echo "gpu_torch.sh: $SIM could not emit the schedules (make first)" >&2
    exit 1
fi

OUTDIR=${OUT:-$ROOT/bench/results/gpu/torch}
mkdir -p "$OUTDIR"
exec > >(tee -a "$OUTDIR/bench.log") 2>&1
PY=${TORCH_PY:-$("$ROOT/python/torch-python")} || exit 1
if [ "${DEVICE:-cuda}" = cuda ] && ! "$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
    echo "gpu_torch.sh: $PY has no CUDA device: nothing measured"
    exit 1
fi

SCHED=$OUTDIR/schedules
if "$SIM" --version >/dev/null 2>&1; then
    emit "$SCHED" || { echo "gpu_torch.sh: lrcnn-sim failed"; exit 1; }
elif ls "$ROOT"/bench/deps/schedules/"$NET-$INPUT-b$BATCH"-*.json >/dev/null 2>&1; then
    mkdir -p "$SCHED" && cp "$ROOT"/bench/deps/schedules/"$NET-$INPUT-b$BATCH"-*.json "$SCHED"/
else
    echo "gpu_torch.sh: no lrcnn-sim and no bench/deps/schedules: run bench/gpu_torch.sh --prepare on the build machine"
    exit 1
fi

files=()
for st in $STRATEGIES; do
    files+=("$SCHED/$NET-$INPUT-b$BATCH-$st.json")
done
echo "[torch] $("$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)') on ${DEVICE:-cuda}, $CONFIG: $STRATEGIES"
"$PY" "$ROOT/bench/torch_runner_bench.py" "$OUTDIR" "${files[@]}" --device "${DEVICE:-cuda}" \
    --steps "${STEPS:-5}" --warmup "${WARMUP:-2}"
