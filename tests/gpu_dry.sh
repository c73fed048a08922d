#!/usr/bin/env bash
# gpu_dry.sh - bench/gpu.sh as far as a machine without a GPU can run it (DRY_RUN=1): every
# lrcnn-validate invocation of the script parses and plans (its checks run on --backend
# cuda-emulated, the CUDA backend's glue on the CPU; its table is planned with --dry-run), so the
# script's arguments and the binaries cannot drift apart; the build command passes `make -n` when
# bench/deps is there; time-fit reads the runs; and bench/gpu_env.sh decides an environment by its
# rules (driver vs toolkit, cuDNN 9, glibc; a cuDNN for another CUDA is a warning).
#
# Usage: LRCNN_BIN=build/bin bash tests/gpu_dry.sh   (make test sets LRCNN_BIN)
# Skips (exit 0, saying so) when lrcnn-validate was built without CUDA.
# Deliberately not here: anything measured on a device (bench/gpu.sh on the GPU machine).
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${LRCNN_BIN:-$ROOT/build/bin}
[ -d "$BIN" ] && BIN=$(cd "$BIN" && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/lrcnn-gpu-dry.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

passed=0 failed=0
ok() { printf 'ok    %s\n' "$1"; passed=$((passed + 1)); }
bad() { printf 'FAIL  %s: %s\n' "$1" "$2"; failed=$((failed + 1)); }

# ------------------------------------------------------------------ the environment rules

env_case() { # NAME WANT(ok|warning|FATAL) ARGS...
    local name=$1 want=$2
    shift 2
    local got
    got=$(bash "$ROOT/bench/gpu_env.sh" check "$@")
    local rc=$?
    case $want in
    ok) [ $rc -eq 0 ] && [[ $got == ok:* ]] ;;
    warning) [ $rc -eq 0 ] && [[ $got == warning:* ]] ;;
    FATAL) [ $rc -eq 1 ] && [ "$(echo "$got" | wc -l)" -eq 1 ] && [[ $got == FATAL:* ]] ;;
    esac && ok "gpu_env: $name" || bad "gpu_env: $name" "rc $rc: $got"
}
env_case "CUDA 13 driver, toolkit and cuDNN" ok 13.0 13.0 9.10.2 13 2.39 2.36
env_case "a CUDA 12 driver under a CUDA 13 toolkit" FATAL 12.8 13.0 9.10.2 13 2.39 2.36
env_case "cuDNN 8" FATAL 13.0 13.0 8.9.7 13 2.39 2.36
env_case "glibc older than bench/deps'" FATAL 13.0 13.0 9.10.2 13 2.35 2.36
env_case "cuDNN built for CUDA 12" warning 13.0 13.0 9.10.2 12 2.39 2.36
env_case "nothing known but the toolkit" ok unknown 13.0 unknown unknown unknown unknown

# ------------------------------------------------------------------ the script, dry

if ! "$BIN/lrcnn-validate" --net tiny-vgg --backend cuda-emulated --dry-run --quiet >/dev/null 2>&1; then
    ok "bench/gpu.sh DRY_RUN: skipped ($("$BIN/lrcnn-validate" --net tiny-vgg --backend cuda-emulated --dry-run 2>&1 | head -1))"
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
fi

OUT=$TMP/out
export OMP_NUM_THREADS=1 # the CPU runs: one thread each, quicker than two on a busy machine
DRY_RUN=1 QUICK=1 CHECK_BATCH=4 BUDGET_S=900 OUT=$OUT LRCNN_BIN=$BIN bash "$ROOT/bench/gpu.sh" \
    > "$TMP/log" 2>&1
rc=$?
[ $rc -eq 0 ] && ok "bench/gpu.sh DRY_RUN=1 QUICK=1 exits 0" || bad "bench/gpu.sh DRY_RUN=1 QUICK=1 exits 0" "exit $rc: $(tail -3 "$TMP/log" | tr '\n' '|')"

# every lrcnn-validate the script ran said nothing on stderr (no flag refused, no plan failed)
errs=$(find "$OUT/runs" -name '*.err' -size +0 | head -3)
[ -z "$errs" ] && ok "every invocation ran without a word on stderr" ||
    bad "every invocation ran without a word on stderr" "$(for f in $errs; do echo "${f##*/}: $(head -1 "$f")"; done | tr '\n' '|')"

# the checks ran on the emulated device and passed: 4 row-vs-column, 2 losses
n_pass=$(grep -cE '^\| (row vs column|loss CPU vs) .*\| PASS \|' "$OUT/checks.md" 2>/dev/null)
[ "$n_pass" = 6 ] && ok "4 gradient and 2 loss checks pass on cuda-emulated" ||
    bad "4 gradient and 2 loss checks pass on cuda-emulated" "$n_pass PASS: $(grep -v PASS "$OUT/checks.md" | tail -n +3 | head -3 | tr '\n' '|')"

# the table: every b64 row planned, with its workspace, as dry runs
why=$(python3 - "$OUT/results.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
rows = [r for r in d["rows"] if r["strategy"] != "pytorch"]
bad = [r for r in rows if "error" in r or not r.get("predicted") or not r.get("dry_run")
       or r.get("workspace") is None]
if not d["dry_run"] or len(rows) != 12 or bad:
    print("%d rows, dry_run %s, wrong: %s" % (len(rows), d["dry_run"], bad[:2]))
EOF
)
[ -z "$why" ] && ok "results.json: 12 planned rows (vgg16 and resnet50 at batch 64, 6 strategies)" ||
    bad "results.json: 12 planned rows" "$why"

grep -q '^RMS log error' "$OUT/time_model.txt" 2>/dev/null && ok "time-fit read the runs" ||
    bad "time-fit read the runs" "$(head -2 "$OUT/time_model.err" 2>/dev/null | tr '\n' '|')"

if [ -f "$ROOT/bench/deps/libjson-c.a" ]; then
    grep -q 'make -n accepts the build' "$TMP/log" && ok "make -n accepts the GPU build command" ||
        bad "make -n accepts the GPU build command" "$(grep -m1 'make -n\|FATAL' "$TMP/log")"
else
    ok "make -n of the GPU build: skipped (no bench/deps: bench/prepare_deps.sh)"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
