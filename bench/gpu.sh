#!/usr/bin/env bash
# bench/gpu.sh - the whole GPU check in one bounded script: build, correctness checks on the
# GPU, then predicted vs measured memory and step time of every strategy next to column training
# and PyTorch. See bench/README.md (what it needs, what it writes, how to read the table).
#
#   bench/prepare_deps.sh                      (on the build machine: fills bench/deps/)
#   bench/gpu.sh                               (on the GPU machine, repository root or anywhere)
#
# Environment: OUT (results folder, default bench/results/gpu), BUDGET_S (stop starting work after
# this many seconds, default 540: the run must end within 10 minutes), QUICK=1 (only
# the b64 table rows), CONFIGS ("net:input:batch ..." table rows), CHECKS=0 (no correctness
# checks), CUDNN_DIR (a folder with include/cudnn.h and lib/libcudnn.so.9).
# Writes: gpu.log, env.txt, checks.md, results.md, results.json, runs/*.json|*.err|*.smi.
# Deliberately not here: plots (reports/), long training runs.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUTDIR=${OUT:-$ROOT/bench/results/gpu}
mkdir -p "$OUTDIR/runs"
exec > >(tee -a "$OUTDIR/gpu.log") 2>&1
BUDGET_S=${BUDGET_S:-540}
DEPS=$ROOT/bench/deps
BUILD=$ROOT/build/gpu   # under the git-ignored build/
BIN=$BUILD/bin
export LRCNN_NETWORKS=$ROOT/networks
PY=$(command -v python3 || echo /opt/torch/.venv/bin/python)
TORCH_PY=/opt/torch/.venv/bin/python

say() { printf '[%4ds] %s\n' "$SECONDS" "$*"; }
left() { echo $((BUDGET_S - SECONDS)); }

# Runs "$@" with a timeout of min($1, time left - 5 s); 124 when out of time.
bounded() {
    local limit=$1
    shift
    local rest=$(($(left) - 5))
    [ "$rest" -lt "$limit" ] && limit=$rest
    if [ "$limit" -lt 5 ]; then
        say "out of time budget: skipped $*" >&2
        return 124
    fi
    timeout --kill-after=5 "$limit" "$@"
}

# ------------------------------------------------------------------ environment

find_cudnn() {
    local d
    for d in ${CUDNN_DIR:-} /opt/torch/.venv/lib/python3*/site-packages/nvidia/cudnn /usr/local/cuda; do
        if [ -f "$d/include/cudnn.h" ] && ls "$d"/lib*/libcudnn.so.9* >/dev/null 2>&1; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
NVCC=$CUDA_HOME/bin/nvcc
CUDNN=$(find_cudnn) || { say "FATAL: no cuDNN 9 (include/cudnn.h + lib/libcudnn.so.9) found; set CUDNN_DIR"; exit 1; }
CUDNN_LIB=$(dirname "$(ls "$CUDNN"/lib*/libcudnn.so.9* | head -1)")
# cuDNN dlopens its sub-libraries (and, from pip wheels, the wheels' cuBLASLt/NVRTC)
NV_LIBS=$(ls -d /opt/torch/.venv/lib/python3*/site-packages/nvidia/*/lib 2>/dev/null | tr '\n' ':')
export LD_LIBRARY_PATH=$CUDNN_LIB:$CUDA_HOME/lib64:${NV_LIBS}${LD_LIBRARY_PATH:-}

{
    echo "date: $(date -u +%FT%TZ)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
    "$NVCC" --version | tail -2
    echo "cuDNN: $CUDNN ($(grep -hE '#define CUDNN_(MAJOR|MINOR|PATCHLEVEL) ' "$CUDNN"/include/cudnn_version.h | awk '{printf "%s.", $3}'))"
    echo "cc: $(cc --version | head -1)"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null) $(git status --short 2>/dev/null | wc -l) changed files"
    [ -x "$TORCH_PY" ] && "$TORCH_PY" -c 'import torch, torchvision; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), "torchvision", torchvision.__version__)' 2>&1
} | tee "$OUTDIR/env.txt"

# ------------------------------------------------------------------ build

# Only what the GPU run needs: lrcnn-validate, cuda-workspace and (with cmocka from
# bench/deps) test_cuda. Not `make`: the library also holds reports/, which needs graphviz.
build() {
    set -e
    local o=$BUILD/obj f pids=()
    mkdir -p "$o" "$BIN"
    local cflags=(-std=c11 -D_GNU_SOURCE -O2 -fopenmp -Wall -Wno-unused-parameter -Ibase -Inetworks -Isim
                  -Iplanner -Ireports -Icuda_validate -Icli -Itests "-I$DEPS/include" -DLRCNN_HAVE_CUDA=1
                  "-DLRCNN_SRCDIR=\"$ROOT\"" "-DLRCNN_VERSION=\"gpu\"")
    for f in base/*.c networks/*.c sim/*.c planner/*.c cuda_validate/*.c bench/cuda_workspace.c tests/test_cuda.c; do
        cc "${cflags[@]}" -c "$f" -o "$o/$(echo "$f" | tr / _).o" &
        pids+=($!)
    done
    for f in cuda_validate/*.cu; do
        "$NVCC" -O2 -std=c++17 -gencode arch=compute_90,code=sm_90 -Ibase -Inetworks -Isim -Iplanner \
            -Icuda_validate -I"$CUDNN/include" -c "$f" -o "$o/$(echo "$f" | tr / _).o" &
        pids+=($!)
    done
    for f in "${pids[@]}"; do wait "$f"; done
    local objs=()
    for f in "$o"/base_*.o "$o"/networks_*.o "$o"/sim_*.o "$o"/planner_*.o "$o"/cuda_validate_*.o; do
        [[ $f == *validate_main* ]] || objs+=("$f")
    done
    local libs=("$DEPS/libjson-c.a" -lm "-L$CUDNN_LIB" -l:libcudnn.so.9 "-L$CUDA_HOME/lib64" -lcublas
                -lcudart -lstdc++ "-Wl,-rpath,$CUDNN_LIB" "-Wl,-rpath,$CUDA_HOME/lib64")
    cc -fopenmp "$o/cuda_validate_validate_main.c.o" "${objs[@]}" "${libs[@]}" -o "$BIN/lrcnn-validate"
    cc -fopenmp "$o/bench_cuda_workspace.c.o" "${objs[@]}" "${libs[@]}" -o "$BIN/cuda-workspace"
    if [ -f "$DEPS/libcmocka.so.0" ]; then
        cc -fopenmp "$o/tests_test_cuda.c.o" "${objs[@]}" "$DEPS/libcmocka.so.0" "-Wl,-rpath,$DEPS" \
            "${libs[@]}" -o "$BIN/test_cuda"
    fi
}
export -f build
export BUILD BIN DEPS ROOT CUDNN CUDNN_LIB CUDA_HOME NVCC

say "building with $NVCC and cuDNN from $CUDNN"
if [ ! -f "$DEPS/libjson-c.a" ]; then
    say "FATAL: bench/deps/libjson-c.a missing: run bench/prepare_deps.sh on the build machine and copy bench/deps here"
    exit 1
fi
if ! bounded 240 bash -c build > "$OUTDIR/build.log" 2>&1; then
    tail -40 "$OUTDIR/build.log"
    say "FATAL: build failed (build.log)"
    exit 1
fi
say "built: $(ls "$BIN" | tr '\n' ' ')"
if ! "$BIN/cuda-workspace" tiny-vgg 1 - column > /dev/null; then
    say "FATAL: the CUDA backend cannot open the device (see above)"
    exit 1
fi

# ------------------------------------------------------------------ correctness

RUN_CHECKS=${CHECKS:-1}
CHECKS=$OUTDIR/checks.md
echo "| check | result | detail |" > "$CHECKS"
echo "|---|---|---|" >> "$CHECKS"
check() { echo "| $1 | $2 | $3 |" >> "$CHECKS"; say "check $1: $2 $3"; }

# The workspace cuda-workspace computes for one strategy ("0" when it fails): plan_ws det|any NET BATCH STRATEGY
plan_ws() {
    local det=$1 net=$2 batch=$3 st=$4 out
    if [ "$det" = det ]; then
        out=$(bounded 60 "$BIN/cuda-workspace" --deterministic "$net" "$batch" - "$st")
    else
        out=$(bounded 60 "$BIN/cuda-workspace" "$net" "$batch" - "$st")
    fi
    echo "${out##* }" | grep -E '^[0-9]+$' || echo 0
}

# JSON field of a file (empty when missing).
field() { "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); v=d.get(sys.argv[2]); print("" if v is None else v)' "$1" "$2" 2>/dev/null; }

if [ "$RUN_CHECKS" = 0 ]; then
    say "CHECKS=0: correctness checks skipped"
elif [ -x "$BIN/test_cuda" ]; then
    say "test_cuda (device tests: CUDA vs CPU gradients 1e-4, row vs column on the device 1e-5, peak = prediction)"
    LRCNN_TEST_DEVICE_ONLY=1 bounded 150 "$BIN/test_cuda" > "$OUTDIR/test_cuda.log" 2>&1
    rc=$?
    result=$([ $rc = 0 ] && echo PASS || echo "FAIL rc=$rc")
    grep -q "skipped: --backend cuda" "$OUTDIR/test_cuda.log" && result="NO DEVICE"
    check "tests/test_cuda (device)" "$result" \
        "$(grep -E '^\[  (PASSED|FAILED|SKIPPED) +\] [0-9]+ test' "$OUTDIR/test_cuda.log" | tr '\n' ' ')"
else
    check "tests/test_cuda (device)" "SKIPPED" "no cmocka in bench/deps"
fi

# Row vs column on the device (deterministic, fp32) through lrcnn-validate, with the planned workspace.
[ "$RUN_CHECKS" = 0 ] && CHECK_CFGS="" || CHECK_CFGS="tiny-vgg:2ps tiny-resnet:overl-h tiny-mix:row tiny-resnet:2ps-h"
for cfg in $CHECK_CFGS; do
    set -- ${cfg/:/ }
    f=$OUTDIR/runs/check-$1-$2.json
    ws=$(plan_ws det "$1" 8 "$2")
    bounded 60 "$BIN/lrcnn-validate" --net "$1" --strategy "$2" --backend cuda --deterministic \
        --check-grads --steps 1 --workspace "$ws" --json --quiet > "$f" 2> "${f%.json}.err"
    e=$(field "$f" grad_max_rel_err)
    ok=$("$PY" -c "import sys; print('PASS' if sys.argv[1] and float(sys.argv[1]) <= 1e-5 else 'FAIL')" "$e")
    check "row vs column on CUDA: $1 $2 (1e-5)" "$ok" "grad_max_rel_err=$e $(head -c 200 "${f%.json}.err")"
done

# The same schedule on both backends: the same first loss (1e-4).
for net in $([ "$RUN_CHECKS" = 0 ] || echo tiny-vgg tiny-mix); do
    ws=$(plan_ws det "$net" 8 2ps)
    for be in cpu cuda; do
        bounded 60 "$BIN/lrcnn-validate" --net $net --strategy 2ps --backend $be --deterministic \
            --steps 2 --no-column --workspace "$ws" --json --quiet > "$OUTDIR/runs/loss-$net-$be.json" 2> "$OUTDIR/runs/loss-$net-$be.err"
    done
    lc=$(field "$OUTDIR/runs/loss-$net-cpu.json" loss)
    lg=$(field "$OUTDIR/runs/loss-$net-cuda.json" loss)
    ok=$("$PY" -c "import sys; a,b=sys.argv[1:3]; print('PASS' if a and b and abs(float(a)-float(b)) <= 1e-4*abs(float(a)) else 'FAIL')" "$lc" "$lg")
    check "loss CPU vs CUDA: $net 2ps (1e-4)" "$ok" "cpu=$lc cuda=$lg"
done

# Fashion-MNIST: tiny-vgg 2ps trained one short epoch on each backend from the same seed.
if [ "$RUN_CHECKS" = 0 ]; then
    :
elif [ -d "$DEPS/fashion-mnist" ]; then
    for be in cuda cpu; do
        bounded 120 "$BIN/lrcnn-validate" --net tiny-vgg --strategy 2ps --backend $be --batch 32 \
            --data fashion-mnist --data-dir "$DEPS/fashion-mnist" --epochs 1 --train-limit 3200 \
            --test-limit 2000 --no-column --workspace "$(plan_ws any tiny-vgg 32 2ps)" \
            --json --quiet > "$OUTDIR/runs/fmnist-$be.json" 2> "$OUTDIR/runs/fmnist-$be.err"
    done
    ag=$(field "$OUTDIR/runs/fmnist-cuda.json" test_accuracy)
    ac=$(field "$OUTDIR/runs/fmnist-cpu.json" test_accuracy)
    # training is chaotic (tests/test_validate.c): rounding-level differences grow, so the two runs
    # agree on how far they got, not step by step
    ok=$("$PY" -c "import sys; a,b=sys.argv[1:3]; print('PASS' if a and b and abs(float(a)-float(b)) <= 3.0 else 'FAIL')" "$ag" "$ac")
    check "Fashion-MNIST tiny-vgg 2ps, 1 epoch of 3200 images: test accuracy CUDA vs CPU (3 points)" "$ok" \
        "cuda=${ag}% ($(field "$OUTDIR/runs/fmnist-cuda.json" train_seconds) s) cpu=${ac}% ($(field "$OUTDIR/runs/fmnist-cpu.json" train_seconds) s)"
else
    check "Fashion-MNIST training" "SKIPPED" "bench/deps/fashion-mnist absent (prepare_deps.sh copies it)"
fi

# ------------------------------------------------------------------ the table

# Device memory in use, sampled every 50 ms while a run lasts (fallback for the device peak when
# lrcnn-validate's JSON has no device_peak_bytes; includes the CUDA context).
smi_start() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 50 > "$1" 2>/dev/null & SMI=$!; }
smi_stop() { kill "$SMI" 2>/dev/null; wait "$SMI" 2>/dev/null; }

run_lrcnn() { # net input batch strategy workspace
    local net=$1 in=$2 batch=$3 st=$4 ws=$5 tag=$1-$2-b$3-$4
    local f=$OUTDIR/runs/$tag.json
    smi_start "$OUTDIR/runs/$tag.smi"
    bounded 150 "$BIN/lrcnn-validate" --net "$net" --input "${in}x${in}" --batch "$batch" --strategy "$st" \
        --backend cuda --data synthetic --steps 5 --no-column --workspace "$ws" \
        --optimizer momentum --lr 0.05 --json --quiet \
        > "$f" 2> "$OUTDIR/runs/$tag.err"
    local rc=$?
    smi_stop
    say "lrcnn $tag: rc=$rc workspace=$ws $(head -c 160 "$OUTDIR/runs/$tag.err" | tr '\n' ' ')"
}

run_torch() { # net input batch
    local tag=$1-$2-b$3-pytorch
    [ -x "$TORCH_PY" ] || return 0
    bounded 180 "$TORCH_PY" "$ROOT/bench/pytorch_step.py" --net "$1" --input "$2" --batch "$3" \
        --warmup 3 --steps 10 > "$OUTDIR/runs/$tag.json" 2> "$OUTDIR/runs/$tag.err"
    say "pytorch $tag: rc=$? $(head -c 160 "$OUTDIR/runs/$tag.err" | tr '\n' ' ')"
}

STRATEGIES="column checkpoint 2ps overl 2ps-h overl-h"
CONFIGS=${CONFIGS:-vgg16:224:64 resnet50:224:64 vgg16:2048:2 vgg16:224:256 resnet50:224:256}
[ "${QUICK:-0}" = 1 ] && CONFIGS="vgg16:224:64 resnet50:224:64"
for cfg in $CONFIGS; do
    IFS=: read -r net in batch <<< "$cfg"
    # one context for the whole configuration's workspaces: "strategy bytes" lines
    # shellcheck disable=SC2086
    bounded 120 "$BIN/cuda-workspace" "$net" "$batch" "${in}x${in}" $STRATEGIES \
        > "$OUTDIR/runs/$net-$in-b$batch.ws" 2> "$OUTDIR/runs/$net-$in-b$batch.ws.err"
    for st in $STRATEGIES; do
        [ "$(left)" -gt 30 ] || break 2
        w=$(awk -v s="$st" '$1 == s { print $2 }' "$OUTDIR/runs/$net-$in-b$batch.ws")
        run_lrcnn "$net" "$in" "$batch" "$st" "${w:-0}"
    done
    [ "$(left)" -gt 60 ] && run_torch "$net" "$in" "$batch"
done

# ------------------------------------------------------------------ report

"$PY" - "$OUTDIR" "$CONFIGS" "$STRATEGIES" <<'EOF'
import glob, json, os, sys

out, configs, strategies = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
MiB = 1048576.0

def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def smi_peak(path):
    try:
        vals = [float(l) for l in open(path) if l.strip().replace('.', '', 1).isdigit()]
    except OSError:
        return None
    return (max(vals) - vals[0]) * MiB if len(vals) > 1 else None

def err_text(path):
    try:
        return open(path).read().strip().splitlines()[-1][:120]
    except (OSError, IndexError):
        return ""

rows, md = [], []
md.append("| net | input | batch | strategy | rows | predicted MiB | allocator MiB | arena MiB | device MiB | step ms | memory / column | time / column |")
md.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
for cfg in configs:
    net, size, batch = cfg.split(":")
    base = None
    for st in strategies + ["pytorch"]:
        tag = "%s-%s-b%s-%s" % (net, size, batch, st)
        d = load(os.path.join(out, "runs", tag + ".json"))
        r = {"net": net, "input": int(size), "batch": int(batch), "strategy": st}
        if st == "pytorch":
            if d is None and not os.path.exists(os.path.join(out, "runs", tag + ".json")):
                continue
            if d and d.get("status") == "ok":
                r.update(predicted=None, allocator=d["max_allocated"], arena=d["max_reserved"],
                         device=None, step_ms=d["step_ms_median"], rows=None)
            else:
                r["error"] = (d or {}).get("error") or err_text(os.path.join(out, "runs", tag + ".err")) or "no result"
        elif d:
            dev = d.get("device_peak_bytes")
            src = "validate"
            if dev is None:
                dev, src = smi_peak(os.path.join(out, "runs", tag + ".smi")), "nvidia-smi"
            r.update(predicted=d["predicted_peak_bytes"], allocator=d["measured_peak_bytes"],
                     arena=d["arena_bytes"], device=dev, device_source=src,
                     step_ms=d["step_ms"], rows=d.get("rows"), loss=d.get("loss"))
            if st == "column":
                base = r
        else:
            r["error"] = err_text(os.path.join(out, "runs", tag + ".err")) or "not run (time budget)"
        rows.append(r)
        f = lambda v: "" if v is None else "%.0f" % (v / MiB)
        if "error" in r:
            md.append("| %s | %s | %s | %s | | | | | | | | %s |" % (net, size, batch, st, r["error"].replace("|", "/")))
            continue
        mem = "%.2f" % (r["allocator"] / base["allocator"]) if base and base.get("allocator") else ""
        tim = "%.2f" % (r["step_ms"] / base["step_ms"]) if base and base.get("step_ms") else ""
        md.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %.1f | %s | %s |" % (
            net, size, batch, st, "" if r.get("rows") is None else r["rows"], f(r.get("predicted")),
            f(r["allocator"]), f(r["arena"]), f(r.get("device")), r["step_ms"], mem, tim))

env = open(os.path.join(out, "env.txt")).read() if os.path.exists(os.path.join(out, "env.txt")) else ""
checks = open(os.path.join(out, "checks.md")).read() if os.path.exists(os.path.join(out, "checks.md")) else ""
with open(os.path.join(out, "results.json"), "w") as f:
    json.dump({"env": env, "rows": rows}, f, indent=1)
with open(os.path.join(out, "results.md"), "w") as f:
    f.write("# lrcnn on the GPU\n\n```\n%s```\n\n## Checks\n\n%s\n## Memory and time\n\n" % (env, checks))
    f.write("lrcnn: predicted = closed-form peak; allocator = bytes of live tensors counted by the "
            "executor; arena = the one cudaMalloc; device = cudaMemGetInfo peak above the context "
            "baseline (or, marked in results.json, nvidia-smi's 50 ms samples above the idle reading). "
            "PyTorch: allocator = max_memory_allocated, arena column = max_memory_reserved. "
            "Ratios are to column training of the same net, input and batch; step ms is the median "
            "of steps 2-5 (lrcnn) or of 10 steps after 3 warm-up steps (PyTorch).\n\n")
    f.write("\n".join(md) + "\n")
print(open(os.path.join(out, "results.md")).read())
EOF
say "done: $OUTDIR/results.md"
