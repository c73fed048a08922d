#!/usr/bin/env bash
# bench/cpu_vs_pytorch.sh - the CPU backend's training step against PyTorch's on the same CPU, in
# one run: the same networks built from the same JSON files (bench/pytorch_cpu.py), batch 32, Adam,
# fp32, the same number of threads. Writes bench/results/cpu.md (or $OUT).
#
#   bench/cpu_vs_pytorch.sh                       (after make; PyTorch from /usr/bin/python3)
#
# Two tables:
#  1. column step time, lrcnn-validate --strategy column vs PyTorch: ROUNDS rounds, each running
#     both programs once (STEPS steps each, the first one skipped by both), the order swapped
#     every round; medians of the per-round medians and their ratio;
#  2. row strategies against our own column step: lrcnn-validate --strategy S alternates S and
#     column steps inside one run; the measured ratio next to the planner's predicted compute
#     ratio (lrcnn-sim's flops_ratio for the same plan) and its time model's (time_ratio with
#     --device cpu); and the same run again on one thread (ROW_ONE_THREAD=0 skips it), which
#     separates the schedule's extra compute from how well a stripe's small kernels use threads;
#     ROW_ROUNDS runs of each, alternating, and the medians of their ratios (one run's ratio moves
#     by 5-10% on a shared VM).
# The machine's load (uptime) is recorded before and after: on a shared machine the figures move,
# the ratios much less. Rerun on a quiet machine to refresh them.
#
# Environment: OMP_WAIT_POLICY (default: unset, each program waits its own way: lrcnn-validate
# spins for 100 us when the machine has a free CPU for each thread as it starts, else sleeps, and
# says which in the tables, with its spin count; PyTorch's libgomp spins 300000 times; set, it holds for both), THREADS (default: every core), ROUNDS (3), STEPS (6), NETS ("net:HxW ..."),
# ROW_NETS ("" skips table 2), ROW_STRATEGIES, ROW_ROUNDS (3) and ROW_ONE_THREAD (1), OUT, PY (an interpreter with torch, /usr/bin/python3),
# OPENBLAS_CORETYPE (default: the set lrcnn-validate runs with; set, it holds for both).
# Deliberately not here: GPUs (bench/gpu.sh), memory (lrcnn-validate reports it on every run).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BIN=${LRCNN_BIN:-$ROOT/build/bin}
PY=${PY:-/usr/bin/python3}
THREADS=${THREADS:-$(nproc)}
ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-6}
NETS=${NETS:-"tiny-vgg:28x28 tiny-resnet:28x28 tiny-mix:28x28 vgg11:64x64 resnet18:64x64"}
ROW_NETS=${ROW_NETS-"tiny-vgg:28x28 tiny-resnet:28x28 tiny-mix:28x28 vgg11:64x64 resnet18:64x64"}
ROW_STRATEGIES=${ROW_STRATEGIES:-"2ps overl-h"}
ROW_ONE_THREAD=${ROW_ONE_THREAD:-1}
ROW_ROUNDS=${ROW_ROUNDS:-3}
OUT=${OUT:-$ROOT/bench/results/cpu.md}
BATCH=32
# How the OpenMP threads wait: each program's default unless OMP_WAIT_POLICY is set (then for
# both). PyTorch's libgomp, left spinning, stalled for up to 0.6 s a step on this 2-core machine
# under others' load (tiny-vgg 644 ms against 30 ms quiet, load 4.9): run this on a quiet machine.
if [ -n "${OMP_WAIT_POLICY:-}" ]; then export OMP_WAIT_POLICY; fi

[ -x "$BIN/lrcnn-validate" ] || { echo "cpu_vs_pytorch: $BIN/lrcnn-validate missing (make first)" >&2; exit 1; }
"$PY" -c 'import torch' 2>/dev/null || { echo "cpu_vs_pytorch: $PY has no torch" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
load() { uptime | sed 's/.*load average: //'; }
field() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
# how lrcnn-validate's threads waited: spin (with its spin count) or sleep
waited() { "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); n=d.get("threads_spins"); print(d["threads_wait"] + ("" if n is None else " %d" % n))' "$1"; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
med2() { printf '%.2f' "$(median "$@")"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
# --profile's step in kernels if every layer ran at column's rate (each layer's column time scaled
# by its FLOP ratio), relative to column's time in kernels
at_rate() { "$PY" -c 'import json,sys; p=json.load(open(sys.argv[1]))["profile"]; print("%.2f" % (p["at_column_rate_ms"] / sum(l["column_ms"] for l in p["layers"])))' "$1"; }

ours() { # net hw json-out [strategy [threads]]
    "$BIN/lrcnn-validate" --net "$1" --input "$2" --batch $BATCH --threads "${5:-$THREADS}" --steps "$STEPS" \
        --strategy "${4:-column}" $([ "${4:-column}" = column ] && echo --no-column || echo --profile) \
        --quiet --json > "$3"
}
theirs() { # net hw json-out
    "$PY" bench/pytorch_cpu.py --net "networks/$1.json" --input "$2" --batch $BATCH \
        --threads "$THREADS" --steps "$STEPS" > "$3"
}

# OpenBLAS's kernels: on a CPU newer than the library, OpenBLAS takes its generic set and
# lrcnn-validate runs itself again with a better one named in OPENBLAS_CORETYPE (cpu_blas.c).
# PyTorch's fc layers call the same OpenBLAS (Debian's torch: the system BLAS), so the set is
# exported here for both programs (one the user set holds for both already).
"$BIN/lrcnn-validate" --net tiny-vgg --dry-run --quiet --json > "$tmp/gemm.json"
gemm=$(field "$tmp/gemm.json" cpu_gemm)
blas_note=""
if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
    export OPENBLAS_CORETYPE
    blas_note="OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE (set by the caller) for both programs."
elif [[ $gemm == *"(OPENBLAS_CORETYPE;"* ]]; then
    OPENBLAS_CORETYPE=$(sed 's/ kernels (.*//; s/.* //' <<< "$gemm")
    export OPENBLAS_CORETYPE
    blas_note="OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE for both programs: ${gemm#*OPENBLAS_CORETYPE; }"
    blas_note=${blas_note%)}"; PyTorch's fc layers call the same OpenBLAS."
fi

load_before=$(load)
echo "cpu_vs_pytorch: $THREADS threads, $ROUNDS rounds of $STEPS steps, load $load_before" >&2
rows1=()
for cfg in $NETS; do
    net=${cfg%%:*} hw=${cfg#*:}
    o=() t=() w=()
    for r in $(seq 1 "$ROUNDS"); do
        if [ $((r % 2)) = 1 ]; then
            ours "$net" "$hw" "$tmp/o.json"; theirs "$net" "$hw" "$tmp/t.json"
        else
            theirs "$net" "$hw" "$tmp/t.json"; ours "$net" "$hw" "$tmp/o.json"
        fi
        o+=("$(field "$tmp/o.json" step_ms)") t+=("$(field "$tmp/t.json" step_ms_median)")
        w+=("$(waited "$tmp/o.json")")
    done
    mo=$(median "${o[@]}") mt=$(median "${t[@]}")
    rows1+=("| $net | $hw | $(printf '%.1f' "$mo") | $(printf '%.1f' "$mt") | $(ratio "$mo" "$mt") | $(printf '%.0f ' "${o[@]}")/ $(printf '%.0f ' "${t[@]}")| ${w[*]} |")
    echo "  $net $hw: ours $mo ms, PyTorch $mt ms" >&2
done

rows2=()
for cfg in $ROW_NETS; do
    net=${cfg%%:*} hw=${cfg#*:}
    for st in $ROW_STRATEGIES; do
        # ROW_ROUNDS runs on THREADS threads (and as many on one), alternating: the medians of the
        # runs' own ratios (each run times the strategy's steps against column's in between)
        q=() a=() sm=() cm=() q1=() a1=()
        for r in $(seq 1 "$ROW_ROUNDS"); do
            if [ "$ROW_ONE_THREAD" = 1 ] && [ $((r % 2)) = 0 ]; then
                ours "$net" "$hw" "$tmp/r1.json" "$st" 1; ours "$net" "$hw" "$tmp/r.json" "$st"
            else
                ours "$net" "$hw" "$tmp/r.json" "$st"
                [ "$ROW_ONE_THREAD" = 1 ] && ours "$net" "$hw" "$tmp/r1.json" "$st" 1
            fi
            sm+=("$(field "$tmp/r.json" step_ms)") cm+=("$(field "$tmp/r.json" column_step_ms)")
            q+=("$(ratio "${sm[-1]}" "${cm[-1]}")") a+=("$(at_rate "$tmp/r.json")")
            if [ "$ROW_ONE_THREAD" = 1 ]; then
                q1+=("$(ratio "$(field "$tmp/r1.json" step_ms)" "$(field "$tmp/r1.json" column_step_ms)")")
                a1+=("$(at_rate "$tmp/r1.json")")
            fi
        done
        n=$(field "$tmp/r.json" rows)
        s=$(median "${sm[@]}") c=$(median "${cm[@]}")
        # the planner's own choice for the same request is the plan lrcnn-validate ran (its rows
        # are checked); its compute relative to column is the prediction
        # (--device cpu adds the time model's ratio; a fixed strategy's choice does not use it)
        "$BIN/lrcnn-sim" --net "$net" --input "$hw" --batch $BATCH --optimizer adam --strategy "$st" \
            --device cpu --json > "$tmp/s.json"
        read -r pred tpred sim_rows < <("$PY" -c 'import json,sys; s=json.load(open(sys.argv[1]))["strategies"][0]; print("%.2f" % s["flops_ratio"], "%.2f" % s["time_ratio"], s["rows"])' "$tmp/s.json")
        [ "$sim_rows" = "$n" ] || { echo "cpu_vs_pytorch: $net $st: lrcnn-sim chose rows $sim_rows, lrcnn-validate ran $n" >&2; exit 1; }
        stages=$(field "$tmp/r.json" stages)
        one="-"
        if [ "$ROW_ONE_THREAD" = 1 ]; then
            one="$(med2 "${q1[@]}") ($(med2 "${a1[@]}"))"
        fi
        rows2+=("| $net | $hw | $st | ${stages:-$n} | $(printf '%.1f' "$s") | $(printf '%.1f' "$c") | $(med2 "${q[@]}") | ${q[*]} | $(med2 "${a[@]}") | $one | $pred | $tpred | $(waited "$tmp/r.json") |")
        echo "  $net $hw $st rows $n: ratios ${q[*]} (at column's layer rates ${a[*]}), on one thread ${q1[*]:--} (predicted compute ${pred}x, time ${tpred}x)" >&2
    done
done
load_after=$(load)

{
    echo "# CPU backend vs PyTorch on the same CPU"
    echo
    echo "\`bench/cpu_vs_pytorch.sh\`, $(date -u '+%Y-%m-%d %H:%M UTC'), $(git rev-parse --short HEAD 2>/dev/null || echo '?')."
    echo "CPU: $(field "$tmp/o.json" host_cpu), $(nproc) cores, $THREADS threads each;"
    echo "PyTorch $("$PY" -c 'import torch; print(torch.__version__)') ($PY, oneDNN: $("$PY" -c 'import torch; print(torch.backends.mkldnn.is_available())'));"
    echo "our GEMM: $(field "$tmp/o.json" cpu_gemm) (OpenBLAS picks its kernels by CPU model; other kernels round"
    echo "differently, so another CPU can give other bits from the same build)."
    if [ -n "$blas_note" ]; then echo "$blas_note"; fi
    if [ -n "${OMP_WAIT_POLICY:-}" ]; then
        echo "OMP_WAIT_POLICY=$OMP_WAIT_POLICY for both programs."
    else
        echo "OpenMP waits: each program's own (PyTorch's libgomp spins 300000 times; lrcnn-validate spins"
        echo "for 100 us, the count measured as it starts, when each thread has a free CPU then, else sleeps:"
        echo "the wait columns, with the count)."
    fi
    echo "Load average (1, 5, 15 min): $load_before before, $load_after after."
    echo
    echo "## Column training step, batch $BATCH, Adam, fp32"
    echo
    echo "Median over $ROUNDS rounds of each round's median step ($STEPS steps, the first skipped); the"
    echo "programs alternate, the order swapped every round. Ratio = ours / PyTorch (below 1: faster)."
    echo
    echo "| net | input | lrcnn ms | PyTorch ms | ratio | per round (lrcnn / PyTorch) | lrcnn wait |"
    echo "|---|---|---|---|---|---|---|"
    printf '%s\n' "${rows1[@]}"
    if [ "${#rows2[@]}" -gt 0 ]; then # ROW_NETS="" skips the second table
        echo
        echo "## Row strategies against our column step"
        echo
        echo "$ROW_ROUNDS lrcnn-validate runs per line, each with its steps alternating with column steps from"
        echo "the same weights (medians, first step skipped); the measured ratio is the median of the runs'"
        echo "ratios (each run's beside it), the step and column times the medians of theirs; predicted compute = the planner's FLOPs relative to"
        echo "column; predicted time = its time model's step time relative to column on the \`cpu\` device"
        echo "(planner/device.c, fitted by bench/cpu_time.sh on one thread). One thread = the measured"
        echo "ratio of the same run with \`--threads 1\` (both steps on one thread). At column's layer"
        echo "rates = the same run's \`--profile\`: its time in kernels if each layer ran at the rate"
        echo "(GFLOP/s) it runs at in column, relative to column's time in kernels; above the predicted"
        echo "compute, the extra FLOPs land in layers slower per FLOP than the step's average; the measured"
        echo "ratio above it, the stripes run slower than the same layers in column (one thread: in brackets)."
        echo
        echo "| net | input | strategy | stages (last layer/rows) | step ms | column ms | measured ratio | per run | at column's layer rates | one thread | predicted compute | predicted time | wait |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        printf '%s\n' "${rows2[@]}"
    fi
} > "$tmp/cpu.md"
mkdir -p "$(dirname "$OUT")"
mv "$tmp/cpu.md" "$OUT"
echo "cpu_vs_pytorch: wrote $OUT" >&2
