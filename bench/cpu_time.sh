#!/usr/bin/env bash
# bench/cpu_time.sh - the time model (planner/device.h) against the CPU reference backend: the
# check of the model's structure that runs without a GPU.
#
#   bench/cpu_time.sh            (after make; OUT=<folder>, default bench/results/cpu_time)
#
# 1. lrcnn-validate --backend cpu on the tiny nets, every strategy, at batch FIT_BATCH and
#    CHECK_BATCH: column runs beside each strategy, step for step in the same process, so the
#    measured time / column ratio is one run's medians (load on the machine hits both alike).
# 2. time-fit fits the CPU constants on the FIT_BATCH runs (fit.txt, fit.json), by layer: the runs
#    are made with --profile, and each layer's kernel time per step is a measurement (time-fit
#    --by-layer), so the fit gets the split between convolutions and memory-bound layers right,
#    not only the steps' totals.
# 3. With those constants, the predicted time / column ratio of every CHECK_BATCH run against the
#    measured one (check.txt): the model's structure holds if they agree within 20% without
#    having seen that batch. The same with the table's "cpu" entry (table.txt).
# Writes runs/*.json, fit.*, check.txt, table.txt, summary.txt (with `uptime` and the command).
# Rerunnable: every file is rewritten (REUSE=1 keeps runs/ and redoes 2-3, e.g. after the table's
# cpu entry changed). Knobs: NETS, STRATEGIES, FIT_BATCH (8), CHECK_BATCH (16),
# STEPS (5: the first warms up), OMP_NUM_THREADS (1: one thread per kernel, so that a machine
# shared with other work slows every kernel alike instead of stalling OpenMP barriers; the "cpu"
# entry of planner/device.c describes that).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BIN=${LRCNN_BIN:-$ROOT/build/bin}
OUTDIR=${OUT:-$ROOT/bench/results/cpu_time}
NETS=${NETS:-tiny-vgg tiny-resnet tiny-mix}
STRATEGIES=${STRATEGIES:-checkpoint row 2ps overl 2ps-h overl-h}
FIT_BATCH=${FIT_BATCH:-8}
CHECK_BATCH=${CHECK_BATCH:-16}
STEPS=${STEPS:-5}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUTDIR/runs"
[ "${REUSE:-0}" = 1 ] || rm -f "$OUTDIR"/runs/*.json

for batch in $([ "${REUSE:-0}" = 1 ] || echo "$FIT_BATCH" "$CHECK_BATCH"); do
    for net in $NETS; do
        for st in $STRATEGIES; do
            f=$OUTDIR/runs/$net-b$batch-$st.json
            "$BIN/lrcnn-validate" --net "$net" --strategy "$st" --batch "$batch" --backend cpu \
                --data synthetic --steps "$STEPS" --optimizer momentum --lr 0.01 --profile --json --quiet > "$f"
            echo "$net b$batch $st: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.1f ms, column %.1f ms" % (d["step_ms"], d["column_step_ms"]))' "$f")"
        done
    done
done

fit_runs=("$OUTDIR"/runs/*-b"$FIT_BATCH"-*.json)
check_runs=("$OUTDIR"/runs/*-b"$CHECK_BATCH"-*.json)
"$BIN/time-fit" --device cpu --by-layer --out "$OUTDIR/fit.json" "${fit_runs[@]}" > "$OUTDIR/fit.txt"
"$BIN/time-fit" --device cpu --by-layer --constants "$OUTDIR/fit.json" --no-fit "${check_runs[@]}" > "$OUTDIR/check.txt"
"$BIN/time-fit" --device cpu --by-layer --no-fit "${check_runs[@]}" > "$OUTDIR/table.txt"

# who measured the runs (REUSE=1: the earlier summary's first line)
measured_by="bench/cpu_time.sh on $(hostname), $(date -u +%FT%TZ), OMP_NUM_THREADS=$OMP_NUM_THREADS, steps $STEPS; load: $(uptime | sed 's/.*load average: //')"
if [ "${REUSE:-0}" = 1 ]; then
    measured_by=$(head -1 "$OUTDIR/summary.txt" 2>/dev/null || echo "runs of an earlier bench/cpu_time.sh")
fi

# ratio errors of the check: how many within 20%, the largest
summarise() {
    awk '/^time \/ column/ { on = 1; next } on && NF && $NF ~ /%$/ {
            e = $NF; sub(/%/, "", e); e = e + 0; e = e < 0 ? -e : e
            n++; if (e <= 20) k++; if (e > m) { m = e; worst = $1 " " $4 } }
         END { printf "%d of %d within 20%%, largest error %.1f%% (%s)\n", k, n, m, worst }' "$1"
}
{
    echo "$measured_by"
    echo "fit on batch $FIT_BATCH, by layer ($(grep '^RMS log error by layer' "$OUTDIR/fit.txt" | sed 's/^RMS log error by layer (weighted[^)]*)/RMS log error of the layers/')); steps: $(grep '^RMS log error: ' "$OUTDIR/fit.txt" | sed 's/^RMS log error: //')"
    echo "time / column at batch $CHECK_BATCH with the fitted constants: $(summarise "$OUTDIR/check.txt")"
    echo "time / column at batch $CHECK_BATCH with the table's cpu entry: $(summarise "$OUTDIR/table.txt")"
    grep '^device.c' "$OUTDIR/fit.txt"
} | tee "$OUTDIR/summary.txt"
