#!/usr/bin/env bash
# bench/gpu.sh - the whole GPU check in one bounded script: environment check, build (make
# validate), correctness checks on the GPU, then predicted vs measured memory and step time of
# every strategy next to column training and PyTorch, and the time model refitted from those
# steps. See bench/README.md (what it needs, what it writes, how to read the table).
#
#   bench/prepare_deps.sh                      (on the build machine: fills bench/deps/)
#   BUDGET_S=<device seconds left> bench/gpu.sh   (on the GPU machine; results under $OUT)
#
# Environment: OUT (results folder, default bench/results/gpu), BUDGET_S (seconds this run may
# take, build included, default 540: no new work starts when too little is left, and every
# command has its own timeout within what is left), QUICK=1 (only the b64 table rows), CONFIGS
# ("net:input:batch ..." table rows), CHECKS=0 (no correctness checks), CUDNN_DIR (a folder with
# include/cudnn.h and lib/libcudnn.so.9), CUDA_HOME (default /usr/local/cuda), JOBS (make -j),
# CHECK_BATCH (the batch of the lrcnn-validate checks, default 32).
# DRY_RUN=1: the same script without a GPU (tests/gpu_dry.sh): binaries from LRCNN_BIN, the
# build only printed and checked with make -n, --backend cuda-emulated for the checks (the CUDA
# glue on the CPU), the table planned with --dry-run, no PyTorch, no nvidia-smi.
# Writes: gpu.log, env.txt, build.log, checks.md, runs/*, time_model.{txt,json}, results.md,
# results.json.
# Deliberately not here: plots (reports/), long training runs.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUTDIR=${OUT:-$ROOT/bench/results/gpu}
mkdir -p "$OUTDIR/runs"
exec > >(tee -a "$OUTDIR/gpu.log") 2>&1
BUDGET_S=${BUDGET_S:-540}
DRY=${DRY_RUN:-0}
DEPS=$ROOT/bench/deps
BUILD=$ROOT/build/gpu # under the git-ignored build/
BIN=$BUILD/bin
[ "$DRY" = 1 ] && BIN=${LRCNN_BIN:-$ROOT/build/bin} && BIN=$(cd "$BIN" && pwd)
BACKEND=cuda
[ "$DRY" = 1 ] && BACKEND=cuda-emulated
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

say "bench/gpu.sh: budget ${BUDGET_S}s$([ "$DRY" = 1 ] && echo ', DRY_RUN: no GPU, --backend cuda-emulated')"

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

# The facts gpu_env.sh decides on ("unknown" when not found).
driver_cuda=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -1)
nvcc_cuda=$("$NVCC" --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\),.*/\1/p')
cudnn_version=$(grep -hE '#define CUDNN_(MAJOR|MINOR|PATCHLEVEL) ' "$CUDNN"/include/cudnn_version.h 2>/dev/null |
    awk '{printf "%s%s", sep, $3; sep="."}')
# the wheel's name says which CUDA it was built for (nvidia_cudnn_cu13-9...dist-info); else PyTorch's
cudnn_cuda=$(ls -d "$CUDNN"/../../nvidia_cudnn_cu*.dist-info 2>/dev/null | sed -n 's/.*nvidia_cudnn_cu\([0-9]*\)-.*/\1/p' | head -1)
if [ -z "$cudnn_cuda" ] && [ -x "$TORCH_PY" ] && [[ $CUDNN == /opt/torch/* ]]; then
    cudnn_cuda=$("$TORCH_PY" -c 'import torch; print((torch.version.cuda or "").split(".")[0])' 2>/dev/null)
fi
[[ $CUDNN == "$CUDA_HOME" ]] && cudnn_cuda=${nvcc_cuda%%.*}
glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')
deps_glibc=$(cat "$DEPS/glibc.txt" 2>/dev/null)

{
    echo "date: $(date -u +%FT%TZ)"
    nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader 2>&1
    echo "driver CUDA: ${driver_cuda:-unknown}"
    echo "nvcc: $("$NVCC" --version 2>&1 | tail -1)"
    echo "cuDNN: ${cudnn_version:-unknown} for CUDA ${cudnn_cuda:-unknown} at $CUDNN"
    echo "glibc: ${glibc:-unknown} (bench/deps built against ${deps_glibc:-unknown})"
    echo "cc: $(cc --version | head -1)"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null) $(git status --short 2>/dev/null | wc -l) changed files"
    echo "other processes on the GPU: $(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader 2>&1 | tr '\n' ';')"
    [ -x "$TORCH_PY" ] && "$TORCH_PY" -c 'import torch, torchvision; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), "torchvision", torchvision.__version__)' 2>&1
} > "$OUTDIR/env.txt"
cat "$OUTDIR/env.txt"
verdict=$(bash "$ROOT/bench/gpu_env.sh" check "${driver_cuda:-unknown}" "${nvcc_cuda:-unknown}" \
    "${cudnn_version:-unknown}" "${cudnn_cuda:-unknown}" "${glibc:-unknown}" "${deps_glibc:-unknown}")
rc=$?
echo "$verdict" | tee -a "$OUTDIR/env.txt"
if [ $rc -ne 0 ] && [ "$DRY" != 1 ]; then
    say "$verdict"
    exit 1
fi

# ------------------------------------------------------------------ build

# The GPU's architecture, e.g. compute_cap 9.0 -> sm_90 (H100, H200)
cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
ARCH="-gencode arch=compute_${cap:-90},code=sm_${cap:-90}"
MAKE_ARGS=(validate BUILD="$BUILD" JSONC_STATIC=1 CUDNN_DIR="$CUDNN" CUDA_HOME="$CUDA_HOME"
           NVCC="$NVCC" CUDA_ARCH="$ARCH")
say "build: make -j${JOBS:-$(nproc)} ${MAKE_ARGS[*]}"
if [ "$DRY" = 1 ]; then
    # the command as the GPU machine runs it, read by make without building anything
    if [ -f "$DEPS/libjson-c.a" ]; then
        if make -n "${MAKE_ARGS[@]}" BUILD="$OUTDIR/build-dry" > "$OUTDIR/build.log" 2>&1; then
            say "DRY_RUN: make -n accepts the build ($(grep -c 'nvcc\|NVCC' "$OUTDIR/build.log") nvcc lines)"
        else
            tail -3 "$OUTDIR/build.log"
            say "FATAL: make -n refuses the build (build.log)"
            exit 1
        fi
    else
        say "DRY_RUN: bench/deps absent: the build is not checked"
    fi
else
    [ -f "$DEPS/libjson-c.a" ] || {
        say "FATAL: bench/deps/libjson-c.a missing: run bench/prepare_deps.sh on the build machine and copy bench/deps here"
        exit 1
    }
    if ! bounded 300 make -j"${JOBS:-$(nproc)}" "${MAKE_ARGS[@]}" > "$OUTDIR/build.log" 2>&1; then
        tail -40 "$OUTDIR/build.log"
        say "FATAL: build failed (build.log)"
        exit 1
    fi
fi
say "binaries: $(ls "$BIN" | tr '\n' ' ')"
if ! bounded 120 "$BIN/lrcnn-validate" --net tiny-vgg --batch 4 --backend "$BACKEND" --steps 1 --no-column --quiet > /dev/null; then
    say "FATAL: the CUDA backend cannot run a tiny-vgg step (see above)"
    exit 1
fi

# ------------------------------------------------------------------ correctness

RUN_CHECKS=${CHECKS:-1}
CB=${CHECK_BATCH:-32}
CHECKS_MD=$OUTDIR/checks.md
echo "| check | result | detail |" > "$CHECKS_MD"
echo "|---|---|---|" >> "$CHECKS_MD"
check() { echo "| $1 | $2 | $3 |" >> "$CHECKS_MD"; say "check $1: $2 $3"; }

# JSON field of a file (empty when missing).
field() { "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); v=d.get(sys.argv[2]); print("" if v is None else v)' "$1" "$2" 2>/dev/null; }

# lrcnn-validate with its outputs in runs/TAG.json and runs/TAG.err: validate TIMEOUT TAG ARGS...
# It plans twice itself (the schedule, then again with the workspace this backend needs for it),
# so what runs is what was planned: no workspace is passed.
validate() {
    local limit=$1 tag=$2
    shift 2
    bounded "$limit" "$BIN/lrcnn-validate" "$@" --json --quiet \
        > "$OUTDIR/runs/$tag.json" 2> "$OUTDIR/runs/$tag.err"
}

if [ "$RUN_CHECKS" = 0 ]; then
    say "CHECKS=0: correctness checks skipped"
elif [ "$DRY" = 1 ]; then
    check "tests/test_cuda (device)" "SKIPPED" "DRY_RUN (make test runs its emulated tests)"
elif [ -x "$BUILD/tests/test_cuda" ]; then
    say "test_cuda (device tests: CUDA vs CPU gradients 1e-4, row vs column on the device 1e-5, peak = prediction)"
    LRCNN_TEST_DEVICE_ONLY=1 bounded 150 "$BUILD/tests/test_cuda" > "$OUTDIR/test_cuda.log" 2>&1
    rc=$?
    result=$([ $rc = 0 ] && echo PASS || echo "FAIL rc=$rc")
    grep -q "skipped: --backend cuda" "$OUTDIR/test_cuda.log" && result="NO DEVICE"
    check "tests/test_cuda (device)" "$result" \
        "$(grep -E '^\[  (PASSED|FAILED|SKIPPED) +\] [0-9]+ test' "$OUTDIR/test_cuda.log" | tr '\n' ' ')"
else
    check "tests/test_cuda (device)" "SKIPPED" "no cmocka in bench/deps"
fi

# Row vs column on the device (deterministic, fp32) through lrcnn-validate.
[ "$RUN_CHECKS" = 0 ] && CHECK_CFGS="" || CHECK_CFGS="tiny-vgg:2ps tiny-resnet:overl-h tiny-mix:row tiny-resnet:2ps-h"
for cfg in $CHECK_CFGS; do
    set -- ${cfg/:/ }
    validate 90 "check-$1-$2" --net "$1" --strategy "$2" --batch "$CB" --backend "$BACKEND" \
        --deterministic --check-grads --steps 1
    f=$OUTDIR/runs/check-$1-$2.json
    e=$(field "$f" grad_max_rel_err)
    ok=$("$PY" -c "import sys; print('PASS' if sys.argv[1] and float(sys.argv[1]) <= 1e-5 else 'FAIL')" "$e")
    check "row vs column on $BACKEND: $1 $2 (1e-5)" "$ok" "grad_max_rel_err=$e packed_calls=$(field "$f" packed_calls) $(head -c 200 "${f%.json}.err")"
done

# The same schedule on both backends: the same first loss (1e-4).
for net in $([ "$RUN_CHECKS" = 0 ] || echo tiny-vgg tiny-mix); do
    for be in cpu "$BACKEND"; do
        validate 90 "loss-$net-$be" --net "$net" --strategy 2ps --batch "$CB" --backend "$be" \
            --deterministic --steps 2 --no-column
    done
    lc=$(field "$OUTDIR/runs/loss-$net-cpu.json" loss)
    lg=$(field "$OUTDIR/runs/loss-$net-$BACKEND.json" loss)
    ok=$("$PY" -c "import sys; a,b=sys.argv[1:3]; print('PASS' if a and b and abs(float(a)-float(b)) <= 1e-4*abs(float(a)) else 'FAIL')" "$lc" "$lg")
    check "loss CPU vs $BACKEND: $net 2ps (1e-4)" "$ok" "cpu=$lc $BACKEND=$lg"
done

# Fashion-MNIST: tiny-vgg 2ps trained one short epoch on each backend from the same seed.
FM=(--net tiny-vgg --strategy 2ps --batch 32 --data fashion-mnist --data-dir "$DEPS/fashion-mnist"
    --epochs 1 --train-limit 3200 --test-limit 2000 --no-column)
if [ "$RUN_CHECKS" = 0 ]; then
    :
elif [ "$DRY" = 1 ] && [ -d "$DEPS/fashion-mnist" ]; then
    validate 60 fmnist-dry "${FM[@]}" --backend "$BACKEND" --dry-run
    check "Fashion-MNIST training" "$([ -s "$OUTDIR/runs/fmnist-dry.json" ] && echo PLANNED || echo FAIL)" "DRY_RUN: planned only"
elif [ -d "$DEPS/fashion-mnist" ]; then
    for be in cuda cpu; do
        validate 120 "fmnist-$be" "${FM[@]}" --backend "$be"
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

# One table cell: 5 steps (the first warms up; device memory is measured after it), SGD with
# momentum as pytorch_step.py, column not in the process (--no-column: the device numbers are
# this strategy's alone). DRY_RUN plans it only.
run_lrcnn() { # net input batch strategy
    local tag=$1-$2-b$3-$4 dry=()
    [ "$DRY" = 1 ] && dry=(--dry-run)
    validate 150 "$tag" --net "$1" --input "${2}x${2}" --batch "$3" --strategy "$4" \
        --backend "$BACKEND" --data synthetic --steps 5 --no-column --optimizer momentum --lr 0.05 \
        "${dry[@]}"
    local rc=$?
    say "lrcnn $tag: rc=$rc $(head -c 160 "$OUTDIR/runs/$tag.err" | tr '\n' ' ')"
}

run_torch() { # net input batch
    local tag=$1-$2-b$3-pytorch
    [ -x "$TORCH_PY" ] && [ "$DRY" != 1 ] || return 0
    bounded 180 "$TORCH_PY" "$ROOT/bench/pytorch_step.py" --net "$1" --input "$2" --batch "$3" \
        --warmup 3 --steps 10 > "$OUTDIR/runs/$tag.json" 2> "$OUTDIR/runs/$tag.err"
    say "pytorch $tag: rc=$? $(head -c 160 "$OUTDIR/runs/$tag.err" | tr '\n' ' ')"
}

STRATEGIES="column checkpoint 2ps overl 2ps-h overl-h"
CONFIGS=${CONFIGS:-vgg16:224:64 resnet50:224:64 vgg16:2048:2 vgg16:224:256 resnet50:224:256}
[ "${QUICK:-0}" = 1 ] && CONFIGS="vgg16:224:64 resnet50:224:64"
for cfg in $CONFIGS; do
    IFS=: read -r net in batch <<< "$cfg"
    for st in $STRATEGIES; do
        [ "$(left)" -gt 30 ] || break 2
        run_lrcnn "$net" "$in" "$batch" "$st"
    done
    [ "$(left)" -gt 60 ] && run_torch "$net" "$in" "$batch"
done

# ------------------------------------------------------------------ the PyTorch runner

# lrcnn's schedules run by python/lrcnn_torch (bench/gpu_torch.sh): vgg16 b64 row-wise steps,
# torch.cuda.max_memory_allocated() against the prediction and step time against plain PyTorch.
if [ "$DRY" != 1 ] && [ -x "$TORCH_PY" ] && [ "$(left)" -gt 90 ] &&
    "$TORCH_PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
    OUT="$OUTDIR/torch" TORCH_PY="$TORCH_PY" LRCNN_SIM="$BIN/lrcnn-sim" \
        bounded 240 "$ROOT/bench/gpu_torch.sh" > "$OUTDIR/runs/torch-runner.log" 2>&1
    say "PyTorch runner: rc=$? $(tail -n 1 "$OUTDIR/runs/torch-runner.log")"
fi

# ------------------------------------------------------------------ the time model

# The card's name in the device table (planner/device.c), from nvidia-smi's.
gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
case "$gpu_name" in
*H200*) DEVICE=h200 ;;
*H100*) DEVICE=h100-80gb ;;
*A100*80GB*) DEVICE=a100-80gb ;;
*A100*) DEVICE=a100-40gb ;;
*4090*) DEVICE=rtx4090 ;;
*) DEVICE=${DEVICE:-h100-80gb} ;;
esac
# DRY_RUN: the emulated check runs stand in for measured steps (the fit's code path, no figure)
fit_runs=$(ls "$OUTDIR"/runs/*-b*-*.json 2>/dev/null | grep -v pytorch)
[ "$DRY" = 1 ] && fit_runs=$(ls "$OUTDIR"/runs/check-*.json 2>/dev/null)
if [ -n "$fit_runs" ] && [ "$(left)" -gt 10 ]; then
    # shellcheck disable=SC2086
    bounded 60 "$BIN/time-fit" --device "$DEVICE" --out "$OUTDIR/time_model.json" $fit_runs \
        > "$OUTDIR/time_model.txt" 2> "$OUTDIR/time_model.err"
    say "time model on $DEVICE ($gpu_name): rc=$? $(grep RMS "$OUTDIR/time_model.txt")"
fi

# ------------------------------------------------------------------ report

"$PY" - "$OUTDIR" "$CONFIGS" "$STRATEGIES" "$DRY" <<'EOF'
import json, os, sys

out, configs, strategies, dry = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4] == "1"
MiB = 1048576.0

def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def err_text(path):
    try:
        return open(path).read().strip().splitlines()[-1][:120]
    except (OSError, IndexError):
        return ""

model = load(os.path.join(out, "time_model.json")) or {}
modelled = {r["step"]: r for r in model.get("steps", [])}

rows, md = [], []
md.append("| net | input | batch | strategy | rows | predicted MiB | workspace MiB | allocator MiB | arena MiB | device MiB | device extra MiB | step ms | model ms (table / fitted) | memory / column | time / column |")
md.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
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
                         step_ms=d["step_ms_median"])
            else:
                r["error"] = (d or {}).get("error") or err_text(os.path.join(out, "runs", tag + ".err")) or "no result"
        elif d:
            r.update(predicted=d["predicted_peak_bytes"], workspace=d.get("workspace_bytes"),
                     allocator=d["measured_peak_bytes"], arena=d["arena_bytes"],
                     device=d.get("device_peak_bytes"), device_extra=d.get("device_extra_bytes"),
                     device_lazy=d.get("device_lazy_bytes"), step_ms=d["step_ms"],
                     rows=d.get("rows"), stages=d.get("stages"), loss=d.get("loss"),
                     packed_calls=d.get("packed_calls"), dry_run=d.get("dry_run"))
            m = modelled.get("%s %sx%s b%s %s" % (net, size, size, batch, st))
            if m:
                r.update(model_table_ms=m["given_ms"], model_fitted_ms=m.get("fitted_ms"))
            if st == "column":
                base = r
        else:
            r["error"] = err_text(os.path.join(out, "runs", tag + ".err")) or "not run (time budget)"
        rows.append(r)
        f = lambda v: "" if v is None else "%.0f" % (v / MiB)
        if "error" in r:
            md.append("| %s | %s | %s | %s |%s %s |" % (net, size, batch, st, " |" * 10, r["error"].replace("|", "/")))
            continue
        ok = lambda k: base and base.get(k) and r.get(k) is not None
        mem = "%.2f" % (r["allocator"] / base["allocator"]) if ok("allocator") else ""
        tim = "%.2f" % (r["step_ms"] / base["step_ms"]) if ok("step_ms") else ""
        model_ms = "" if r.get("model_table_ms") is None else "%.1f / %.1f" % (r["model_table_ms"], r.get("model_fitted_ms") or 0)
        md.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            net, size, batch, st, r.get("rows") or "", f(r.get("predicted")), f(r.get("workspace")),
            f(r.get("allocator")), f(r.get("arena")), f(r.get("device")), f(r.get("device_extra")),
            "" if not r.get("step_ms") else "%.1f" % r["step_ms"], model_ms, mem, tim))

env = open(os.path.join(out, "env.txt")).read() if os.path.exists(os.path.join(out, "env.txt")) else ""
checks = open(os.path.join(out, "checks.md")).read() if os.path.exists(os.path.join(out, "checks.md")) else ""
fit = open(os.path.join(out, "time_model.txt")).read() if os.path.exists(os.path.join(out, "time_model.txt")) else "(not fitted)\n"
with open(os.path.join(out, "results.json"), "w") as f:
    json.dump({"env": env, "dry_run": dry, "rows": rows, "time_model": model}, f, indent=1)
with open(os.path.join(out, "results.md"), "w") as f:
    f.write("# lrcnn on the GPU%s\n\n```\n%s```\n\n## Checks\n\n%s\n## Memory and time\n\n" % (
        " (DRY_RUN: no GPU, nothing below was measured on a device)" if dry else "", env, checks))
    f.write("lrcnn: predicted = closed-form peak (workspace included); allocator = bytes of live "
            "tensors counted by the executor; arena = the one cudaMalloc; device = the arena plus "
            "device extra, the most device memory in use beyond what was in use after the warm-up "
            "step (cudaMemGetInfo, steps 2-5; what loaded lazily is in device_lazy_bytes in the "
            "run's JSON). PyTorch: allocator = max_memory_allocated, arena column = "
            "max_memory_reserved. Ratios are to column training of the same net, input and batch; "
            "step ms is the median of steps 2-5 (lrcnn) or of 10 steps after 3 warm-up steps "
            "(PyTorch); model ms is the time model with the table's and the fitted constants.\n\n")
    f.write("\n".join(md) + "\n\n## Time model\n\n```\n" + fit + "```\n")
print(open(os.path.join(out, "results.md")).read())
EOF
# ------------------------------------------------------------------ the PyTorch runner

# bench/gpu_torch.sh, when torch with CUDA is importable: lrcnn's schedules run by
# python/lrcnn_torch next to plain PyTorch (its own results under $OUTDIR/torch/).
if [ -x "$TORCH_PY" ] && "$TORCH_PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
    say "PyTorch runner (bench/gpu_torch.sh)"
    OUT=$OUTDIR/torch TORCH_PY=$TORCH_PY LRCNN_SIM=$BIN/lrcnn-sim bounded 300 bash "$ROOT/bench/gpu_torch.sh" ||
        say "bench/gpu_torch.sh did not finish (see $OUTDIR/torch/bench.log)"
fi

say "done: $OUTDIR/results.md"
