#!/usr/bin/env bash
# robust.sh - both binaries against hostile input, at the command line: every bad flag or value
# exits 2 and every runtime failure exits 1, each with exactly one line on stderr that names the
# flag, file or device; output files on a full device, in missing or unwritable places, through
# links, and under a kill; lrcnn-validate's datasets (missing, truncated, bad magic, lying
# headers) and --backend cuda without a GPU; networks past the schedule-size limit; and the
# command lines the fuzzer found (tests/regress/args-*.txt, one argument per line) replay with
# no crash and no sanitizer report.
#
# Usage: LRCNN_BIN=build/bin bash tests/robust.sh   (make test sets LRCNN_BIN)
# Prints one line per check and exits non-zero if any failed. Needs python3 and gzip.
# Deliberately not here: lrcnn-sim's everyday flags and outputs (tests/cli.sh).
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${LRCNN_BIN:-$ROOT/build/bin}
[ -d "$BIN" ] && BIN=$(cd "$BIN" && pwd)
SIM=$BIN/lrcnn-sim
VAL=$BIN/lrcnn-validate
TMP=$(mktemp -d "${TMPDIR:-/tmp}/lrcnn-robust.XXXXXX")
# under ASan (make test SANITIZE=1) a refused huge malloc returns NULL, as it does without it
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}allocator_may_return_null=1
trap 'rm -rf "$TMP"' EXIT

passed=0 failed=0
ok() { printf 'ok    %s\n' "$1"; passed=$((passed + 1)); }
bad() { printf 'FAIL  %s: %s\n' "$1" "$2"; failed=$((failed + 1)); }

for b in "$SIM" "$VAL"; do
    [ -x "$b" ] || { echo "FAIL  $b not found (set LRCNN_BIN)"; exit 1; }
done

out=$TMP/stdout err=$TMP/stderr rc=0
# run BINARY ARGS...: from the repository root; sets rc and fills $out, $err.
run() {
    local b=$1
    shift
    (cd "$ROOT" && "$b" "$@") >"$out" 2>"$err"
    rc=$?
    # ASan's notice that it returned NULL for a huge malloc, as asked: not a finding
    sed -i '/WARNING: AddressSanitizer failed to allocate/d' "$err"
}

lines() { wc -l <"$1" | tr -d ' '; }

sanitizer_report() { grep -qE 'runtime error|AddressSanitizer|LeakSanitizer|internal error' "$err"; }

# expect NAME CODE MENTION BINARY ARGS...: exit CODE, one line on stderr that starts with the
# program's name and mentions MENTION, no sanitizer report.
expect() {
    local name=$1 code=$2 mention=$3 b=$4
    shift 4
    run "$b" "$@"
    local prog=${b##*/}
    if [ "$rc" -ne "$code" ]; then
        bad "$name" "exit $rc, expected $code ($(head -1 "$err"))"
    elif sanitizer_report; then
        bad "$name" "sanitizer: $(grep -m1 -E 'runtime error|Sanitizer|internal error' "$err")"
    elif [ "$(lines "$err")" -ne 1 ]; then
        bad "$name" "$(lines "$err") lines on stderr: $(head -3 "$err" | tr '\n' '|')"
    elif ! grep -q "^$prog: " "$err"; then
        bad "$name" "stderr does not start with '$prog: ': $(cat "$err")"
    elif ! grep -qF -- "$mention" "$err"; then
        bad "$name" "stderr does not mention '$mention': $(cat "$err")"
    else
        ok "$name"
    fi
}

is_char_device() { [ -c "$1" ]; }

# ------------------------------------------------------------------ lrcnn-sim: bad usage (2)

check_sim_usage() {
    expect "sim --rows 4097" 2 "--rows" "$SIM" --net tiny-vgg --rows 4097
    expect "sim --segments 65" 2 "--segments" "$SIM" --net tiny-vgg --segments 65
    expect "sim --segments more than the region has cuts" 2 "--segments" "$SIM" --net tiny-vgg --strategy checkpoint --segments 60
    expect "sim --input 16777217x1" 2 "--input" "$SIM" --net tiny-vgg --input 16777217x1
    expect "sim --input 10x10x10" 2 "--input" "$SIM" --net tiny-vgg --input 10x10x10
    expect "sim --batch=" 2 "--batch" "$SIM" --net tiny-vgg --batch=
    expect "sim --json=yes (a switch with a value)" 2 "--json" "$SIM" --net tiny-vgg --json=yes
    expect "sim --workspace -1" 2 "--workspace" "$SIM" --net tiny-vgg --workspace -1
    expect "sim --workspace 1e30" 2 "--workspace" "$SIM" --net tiny-vgg --workspace 1e30
    expect "sim --workspace nan" 2 "--workspace" "$SIM" --net tiny-vgg --workspace nan
    expect "sim --gpu-mem without --report" 2 "--gpu-mem" "$SIM" --net tiny-vgg --gpu-mem 8GiB
    expect "sim --gpu-mem 0" 2 "--gpu-mem" "$SIM" --net tiny-vgg --gpu-mem 0
    expect "sim --framework tensorflow" 2 "--framework" "$SIM" --net tiny-vgg --framework tensorflow
    expect "sim --graph x.txt" 2 "--graph" "$SIM" --net tiny-vgg --graph "$TMP/x.txt"
    expect "sim --graph with column only" 2 "--graph" "$SIM" --net tiny-vgg --strategy column --graph "$TMP/g.dot"
    expect "sim --sweep rows=1..5000" 2 "--sweep" "$SIM" --net tiny-vgg --sweep rows=1..5000
    expect "sim --sweep batch=" 2 "--sweep" "$SIM" --net tiny-vgg --sweep batch=
    expect "sim --sweep batch=1,x" 2 "--sweep" "$SIM" --net tiny-vgg --sweep batch=1,x
    expect "sim --sweep with --report" 2 "--sweep" "$SIM" --net tiny-vgg --sweep batch=1,2 --report "$TMP/r"
    expect "sim --sweep rows with column only" 2 "--sweep rows" "$SIM" --net tiny-vgg --strategy column --sweep rows=2..3
    expect "sim --strategy ," 2 "--strategy" "$SIM" --net tiny-vgg --strategy ,
    expect "sim --region input" 2 "--region" "$SIM" --net tiny-vgg --region input
    expect "sim --net a directory" 2 "networks" "$SIM" --net networks/
    expect "sim --net /dev/null (not a regular file)" 2 "/dev/null" "$SIM" --net /dev/null
    expect "sim --net a name too long" 2 "--net" "$SIM" --net "$(printf 'n%.0s' {1..80})"
    expect "sim --input x10" 2 "--input" "$SIM" --net tiny-vgg --input x10
    expect "sim --input with a 40-digit height" 2 "--input" "$SIM" --net tiny-vgg --input 1234567890123456789012345678901234567890x1
    expect "sim --strategy of 300 characters" 2 "value too long" "$SIM" --net tiny-vgg --strategy "$(printf 'row,%.0s' {1..75})"
    expect "sim --sweep rows=..5" 2 "--sweep" "$SIM" --net tiny-vgg --sweep rows=..5
    expect "sim --sweep batch=1..5000" 2 "at most 4096 points" "$SIM" --net tiny-vgg --sweep batch=1..5000
    expect "sim --sweep batch= a list of 5000 characters" 2 "list too long" "$SIM" --net tiny-vgg --sweep "batch=$(printf '1,%.0s' {1..2500})1"
    expect "sim --framework pytorch --strategy 2ps" 2 "--framework pytorch" "$SIM" --net tiny-vgg --framework pytorch --strategy 2ps
    expect "sim --framework pytorch --sweep" 2 "--framework pytorch" "$SIM" --net tiny-vgg --framework pytorch --sweep batch=1,2
    expect "sim --checkpoint-units without pytorch" 2 "--checkpoint-units" "$SIM" --net tiny-vgg --checkpoint-units top
    expect "sim --checkpoint-units rows" 2 "--checkpoint-units" "$SIM" --net tiny-vgg --framework pytorch --checkpoint-units rows
    expect "sim --alloc-conf without pytorch" 2 "--alloc-conf" "$SIM" --net tiny-vgg --alloc-conf max_split_size_mb:64
    expect "sim --alloc-conf expandable_segments:True" 2 "not modelled" "$SIM" --net tiny-vgg --framework pytorch --alloc-conf expandable_segments:True
    expect "sim --alloc-conf max_split_size_mb:1" 2 "--alloc-conf" "$SIM" --net tiny-vgg --framework pytorch --alloc-conf max_split_size_mb:1
    expect "sim --framework pytorch --strategy auto without --budget" 2 "--budget" "$SIM" --net tiny-vgg --framework pytorch --strategy auto
    expect "sim --framework pytorch --max-overhead" 2 "--max-overhead" "$SIM" --net tiny-vgg --framework pytorch --strategy auto --budget 1GiB --max-overhead 2
    expect "sim --framework pytorch --segments beyond the units" 2 "checkpoint units" "$SIM" --net tiny-vgg --framework pytorch --strategy checkpoint --checkpoint-units blocks --segments 7
    expect "sim --framework pytorch --device" 2 "--device" "$SIM" --net tiny-vgg --framework pytorch --device h100-80gb
    expect "sim --framework pytorch --fit with a reserve above it" 2 "--reserve" "$SIM" --net tiny-vgg --framework pytorch --fit 1GiB --reserve 2GiB
    expect "sim --fit-trace without --fit" 2 "--fit-trace" "$SIM" --net tiny-vgg --fit-trace "$TMP/ft.csv"
    expect "sim --fit-trace with --framework pytorch" 2 "--fit-trace" "$SIM" --net tiny-vgg --framework pytorch --fit 1GiB --fit-trace "$TMP/ft.csv"
    printf '{"name": "dense", "input": {"channels": 1, "height": 4, "width": 4}, "layers": [
        {"name": "f", "op": "flatten"}, {"name": "fc", "op": "fc", "out_features": 3},
        {"name": "l", "op": "softmax_xent"}]}' >"$TMP/dense.json"
    expect "sim --graph of a net without a row region" 2 "no row region" "$SIM" --net "$TMP/dense.json" --strategy 2ps --graph "$TMP/g.dot"
    printf '{"name": "x", "input": {"channels": 1, "height": 8, "width": 8}, "layers": [' >"$TMP/deep.json"
    printf '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[' >>"$TMP/deep.json"
    expect "sim --net with JSON nested too deep" 2 "deep.json" "$SIM" --net "$TMP/deep.json"
    head -c 70000000 /dev/zero | tr '\0' ' ' >"$TMP/huge.json"
    expect "sim --net larger than 64 MiB" 2 "64 MiB" "$SIM" --net "$TMP/huge.json"
    rm -f "$TMP/huge.json"
}

# ------------------------------------------------------------------ lrcnn-sim: output files (1)

check_sim_outputs() {
    if is_char_device /dev/full; then
        expect "sim --output /dev/full: exit 1 naming it" 1 "/dev/full" "$SIM" --net tiny-vgg --output /dev/full
        expect "sim --timeline /dev/full" 1 "/dev/full" "$SIM" --net tiny-vgg --strategy 2ps --output "$TMP/o.txt" --timeline /dev/full
        expect "sim --trace /dev/full" 1 "/dev/full" "$SIM" --net tiny-vgg --strategy 2ps --output "$TMP/o.txt" --trace /dev/full
        expect "sim --json --output /dev/full" 1 "/dev/full" "$SIM" --net tiny-vgg --json --output /dev/full
        is_char_device /dev/full && ok "/dev/full is still a device" || bad "/dev/full is still a device" "replaced"
    fi
    run "$SIM" --net tiny-vgg --strategy column --output /dev/stdout
    if [ "$rc" -eq 0 ] && grep -q '^column' "$out" && is_char_device /dev/null; then
        ok "sim --output /dev/stdout prints, devices untouched"
    else
        bad "sim --output /dev/stdout prints, devices untouched" "exit $rc: $(head -1 "$err")"
    fi
    expect "sim --output a directory" 1 "is a directory" "$SIM" --net tiny-vgg --output "$TMP"
    expect "sim --output in /proc (read-only)" 1 "/proc/lrcnn-out.txt" "$SIM" --net tiny-vgg --output /proc/lrcnn-out.txt
    echo file >"$TMP/plainfile"
    expect "sim --trace below a plain file" 1 "plainfile/dir/t.json" "$SIM" --net tiny-vgg --strategy 2ps --output "$TMP/o.txt" --trace "$TMP/plainfile/dir/t.json"
    expect "sim --graph below a plain file" 1 "plainfile/dir/g.dot" "$SIM" --net tiny-vgg --strategy 2ps --output "$TMP/o.txt" --graph "$TMP/plainfile/dir/g.dot"
    run "$SIM" --net tiny-vgg --strategy 2ps --output "$TMP/o.txt" --trace "$TMP/new/dir/t.json" --graph "$TMP/new/g/g.dot"
    if [ "$rc" -eq 0 ] && [ -s "$TMP/new/dir/t.json" ] && [ -s "$TMP/new/g/g.dot" ]; then
        ok "sim --trace and --graph into missing directories create them"
    else
        bad "sim --trace and --graph into missing directories create them" "exit $rc: $(head -1 "$err")"
    fi
    run "$SIM" --net tiny-vgg --report "$TMP/no/dir/r"
    if [ "$rc" -eq 0 ] && [ -s "$TMP/no/dir/r/report.md" ]; then
        ok "sim --report with missing parents creates them"
    else
        bad "sim --report with missing parents creates them" "exit $rc: $(head -1 "$err")"
    fi
    echo text >"$TMP/afile"
    expect "sim --report onto a file" 1 "not a directory" "$SIM" --net tiny-vgg --report "$TMP/afile"
    expect "sim --report under a file" 1 "not a directory" "$SIM" --net tiny-vgg --report "$TMP/afile/sub"
    expect "sim --report /" 2 "--report" "$SIM" --net tiny-vgg --report /
    expect "sim --report of 5000 characters" 2 "path too long" "$SIM" --net tiny-vgg --report "$TMP/$(printf 'd%.0s' {1..5000})"
    expect "sim --report in /proc (read-only)" 1 "cannot create a directory" "$SIM" --net tiny-vgg --report /proc/lrcnn-report
    mkdir -p "$TMP/mine" && echo keep >"$TMP/mine/notes.txt"
    expect "sim --report onto someone's directory" 1 "not an lrcnn-sim report" "$SIM" --net tiny-vgg --report "$TMP/mine"
    [ "$(cat "$TMP/mine/notes.txt")" = keep ] && ok "that directory is left alone" || bad "that directory is left alone" "changed"

    echo old >"$TMP/target.txt"
    ln -sf "$TMP/target.txt" "$TMP/link.txt"
    run "$SIM" --net tiny-vgg --strategy column --output "$TMP/link.txt"
    if [ "$rc" -eq 0 ] && [ -L "$TMP/link.txt" ] && grep -q '^column' "$TMP/target.txt"; then
        ok "sim --output through a link writes the target, keeps the link"
    else
        bad "sim --output through a link writes the target, keeps the link" "exit $rc"
    fi
    local left
    left=$(find "$TMP" -name '*.tmp.*' | head -1)
    [ -z "$left" ] && ok "no temporary files left by failed writes" || bad "no temporary files left by failed writes" "$left"
}

# A run killed while it writes leaves the old file or the complete new one, never a part.
check_sim_killed() {
    local name="sim killed mid-write: the old timeline or a complete one"
    printf 'old\n' >"$TMP/kill.csv"
    (cd "$ROOT" && exec "$SIM" --net resnet50 --batch 2 --strategy 2ps --rows 8 --timeline "$TMP/kill.csv") >/dev/null 2>&1 &
    local pid=$!
    sleep 0.4
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    local first last
    first=$(head -1 "$TMP/kill.csv")
    last=$(tail -1 "$TMP/kill.csv" | awk -F, '{print $9}')
    if [ "$first" = old ] || { [ "${first%%,*}" = step ] && [ "$last" = 0 ]; }; then
        ok "$name ($( [ "$first" = old ] && echo old || echo complete))"
    else
        bad "$name" "first line '$first', last live bytes '$last'"
    fi
    rm -f "$TMP"/kill.csv.tmp.*
}

# ------------------------------------------------------------------ lrcnn-sim: limits

# A network past the schedule-size limit is refused with the reason; the search stays within it.
check_sim_limits() {
    python3 - "$TMP" <<'EOF'
import json, sys
L = []
for i in range(400):
    L.append({"name": f"c{i}", "op": "conv", "out_channels": 16, "kernel": 3, "pad": 1, "bias": False})
    L.append({"name": f"b{i}", "op": "batchnorm"})
L += [{"name": "g", "op": "global_avgpool"}, {"name": "fc", "op": "fc", "out_features": 2},
      {"name": "loss", "op": "softmax_xent"}]
json.dump({"name": "bnchain", "input": {"channels": 16, "height": 32, "width": 32}, "layers": L},
          open(sys.argv[1] + "/bnchain.json", "w"))
EOF
    expect "sim exact BN past the schedule limit" 2 "--bn exact" "$SIM" --net "$TMP/bnchain.json" --strategy overl --rows 32 --bn exact
    expect "sim exact BN whose FLOPs overflow" 2 "FLOP count overflows" "$SIM" --net "$TMP/bnchain.json" --strategy overl --rows 32 --bn exact --batch 250000
    run "$SIM" --net "$TMP/bnchain.json" --strategy 2ps,2ps-h --bn exact
    [ "$rc" -eq 0 ] && [ ! -s "$err" ] && ok "sim exact BN searches N within the limit" ||
        bad "sim exact BN searches N within the limit" "exit $rc: $(head -1 "$err")"
    run "$SIM" --net "$TMP/bnchain.json" --strategy overl --rows 32 --bn stripe
    [ "$rc" -eq 0 ] && ok "sim the same plan with stripe BN" || bad "sim the same plan with stripe BN" "exit $rc: $(head -1 "$err")"
    run "$SIM" --net "$TMP/bnchain.json" --strategy overl --rows 32 --bn frozen
    [ "$rc" -eq 0 ] && ok "sim the same plan with frozen BN" || bad "sim the same plan with frozen BN" "exit $rc: $(head -1 "$err")"
    run "$SIM" --net tiny-vgg --workspace 9e18 --allocator caching
    [ "$rc" -eq 0 ] && ! sanitizer_report && ok "sim --workspace 9e18: planned, no overflow" ||
        bad "sim --workspace 9e18: planned, no overflow" "exit $rc: $(head -1 "$err")"
}

# ------------------------------------------------------------------ lrcnn-validate

check_validate_usage() {
    expect "validate unknown flag" 2 "--bogus" "$VAL" --net tiny-vgg --bogus
    expect "validate missing --net" 2 "--net" "$VAL" --steps 1
    expect "validate --offload disk" 2 "--offload" "$VAL" --net tiny-vgg --offload disk
    expect "sim --offload boundaries" 2 "--offload" "$SIM" --net tiny-vgg --offload boundaries
    expect "sim --boundaries sometimes" 2 "--boundaries" "$SIM" --net tiny-vgg --boundaries sometimes
    expect "validate --boundaries drop" 2 "--boundaries" "$VAL" --net tiny-vgg --boundaries drop
    expect "sim --offload Auto" 2 "--offload" "$SIM" --net tiny-vgg --offload Auto
    expect "sim --offload auto,input" 2 "--offload" "$SIM" --net tiny-vgg --offload auto,input
    expect "validate --offload autos" 2 "--offload" "$VAL" --net tiny-vgg --offload autos
    expect "sim --offload auto --host-memory without --fit" 2 "--host-memory" "$SIM" --net tiny-vgg \
        --offload auto --host-memory 1GiB
    expect "validate --batch 0" 2 "--batch" "$VAL" --net tiny-vgg --batch 0
    expect "validate --batch 2000000" 2 "--batch" "$VAL" --net tiny-vgg --batch 2000000
    expect "validate --steps abc" 2 "--steps" "$VAL" --net tiny-vgg --steps abc
    # training BatchNorm on one value per channel (PyTorch refuses it too): an error before any
    # step runs, not the running-variance assertion; --bn frozen trains it
    expect "validate batch 1 at a 1x1 BatchNorm" 2 "layer4_0_bn1" "$VAL" --net resnet18 \
        --input 32x32 --batch 1 --strategy overl --steps 1 --no-column
    expect "validate batch 1, BatchNorm after a flatten" 2 "--bn frozen" "$VAL" \
        --net "$ROOT/tests/data/nets/tiny-flat.json" --batch 1
    expect "validate --epochs 0" 2 "--epochs" "$VAL" --net tiny-vgg --epochs 0
    expect "validate --backend tpu" 2 "--backend" "$VAL" --net tiny-vgg --backend tpu
    expect "validate --bn approx" 2 "--bn" "$VAL" --net tiny-vgg --bn approx
    expect "validate --optimizer lion" 2 "--optimizer" "$VAL" --net tiny-vgg --optimizer lion
    # a ~10 TB arena: refused by malloc unless the kernel overcommits without limit (mode 1)
    if [ "$(cat /proc/sys/vm/overcommit_memory 2>/dev/null)" != 1 ]; then
        expect "validate an arena past the memory" 1 "arena" "$VAL" --net tiny-resnet --batch 8192 --input 2048x2048 --no-column
    fi
    expect "validate --data imagenet" 2 "--data" "$VAL" --net tiny-vgg --data imagenet
    expect "validate --lr -1" 2 "--lr" "$VAL" --net tiny-vgg --lr -1
    expect "validate --lr inf" 2 "--lr" "$VAL" --net tiny-vgg --lr inf
    expect "validate --seed -1" 2 "--seed" "$VAL" --net tiny-vgg --seed -1
    expect "validate --profile --dry-run" 2 "--profile" "$VAL" --net tiny-vgg --profile --dry-run
    expect "validate --profile --epochs" 2 "--profile" "$VAL" --net tiny-vgg --profile --data fashion-mnist --epochs 1
    expect "validate --profile --backend cuda" 2 "--profile" "$VAL" --net tiny-vgg --profile --backend cuda
    expect "validate --strategy bogus" 2 "bogus" "$VAL" --net tiny-vgg --strategy bogus
    expect "validate --input 0x5" 2 "--input" "$VAL" --net tiny-vgg --input 0x5
    expect "validate --input 65537x8" 2 "--input" "$VAL" --net tiny-vgg --input 65537x8
    expect "validate --input too small for the net" 2 "pool" "$VAL" --net tiny-vgg --input 2x2
    expect "validate --region nosuchlayer" 2 "nosuchlayer" "$VAL" --net tiny-vgg --region nosuchlayer
    expect "validate --net does-not-exist" 2 "does-not-exist" "$VAL" --net does-not-exist
    expect "validate --net a bad file" 2 "truncated.json" "$VAL" --net tests/data/bad/truncated.json
    expect "validate --batch 1048576 overflows the bytes" 2 "overflows" "$VAL" --net tiny-resnet --batch 1048576 --input 65536x65536
    expect "validate --input whose features overflow fc" 2 "features" "$VAL" --net tiny-vgg --input 65536x65536
}

# gzip a file made by python (idx header + bytes) into DIR/NAME.
make_idx() {
    python3 - "$@" <<'EOF'
import struct, sys, gzip
path, magic, *dims = sys.argv[1:]
magic, dims = int(magic, 16), [int(d) for d in dims]
count = 1
for d in dims:
    count *= d
count = min(count, 1 << 20)
short = int(__import__("os").environ.get("SHORT", "0"))  # bytes left out of the data
top = int(__import__("os").environ.get("CLASSES", "10"))  # values are i % CLASSES
with gzip.open(path, "wb") as f:
    f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims))
    f.write(bytes(i % top for i in range(count - short)))
EOF
}

check_validate_data() {
    local fm=$TMP/fm
    mkdir -p "$fm"
    expect "validate --data-dir /nonexistent: exit 1 naming the file" 1 "/nonexistent/train-images-idx3-ubyte.gz" \
        "$VAL" --net tiny-vgg --data fashion-mnist --data-dir /nonexistent --steps 1
    make_idx "$fm/train-images-idx3-ubyte.gz" 803 16 28 28
    make_idx "$fm/train-labels-idx1-ubyte.gz" 801 16
    run "$VAL" --net tiny-vgg --data fashion-mnist --data-dir "$fm" --steps 2 --batch 8 --quiet
    [ "$rc" -eq 0 ] && ok "validate a well-formed small dataset" || bad "validate a well-formed small dataset" "exit $rc: $(head -1 "$err")"
    cp "$fm/train-images-idx3-ubyte.gz" "$fm/t10k-images-idx3-ubyte.gz"
    cp "$fm/train-labels-idx1-ubyte.gz" "$fm/t10k-labels-idx1-ubyte.gz"
    # a net the data set does not fit, when training on it: the images (which overran the
    # batch buffer: heap corruption) and the labels (the loss's assertion)
    expect "validate --epochs, input not 1x28x28" 2 "expects 1x10x10" "$VAL" \
        --net "$ROOT/tests/data/nets/tiny-flat.json" --data fashion-mnist --data-dir "$fm" \
        --epochs 1 --train-limit 8 --test-limit 8 --batch 4
    printf '%s' '{"name": "three", "input": {"channels": 1, "height": 28, "width": 28}, "layers": [
        {"name": "gap", "op": "global_avgpool"}, {"name": "fc", "op": "fc", "out_features": 3},
        {"name": "loss", "op": "softmax_xent"}]}' >"$TMP/three.json"
    expect "validate --epochs, 3 classes for 10 labels" 2 "has 3 classes" "$VAL" \
        --net "$TMP/three.json" --data fashion-mnist --data-dir "$fm" --epochs 1 --train-limit 8 \
        --test-limit 8 --batch 4
    expect "validate --steps, 3 classes for 10 labels" 2 "has 3 classes" "$VAL" \
        --net "$TMP/three.json" --data fashion-mnist --data-dir "$fm" --steps 2 --batch 4
    expect "validate --train-limit below one batch" 2 "--train-limit" "$VAL" --net tiny-vgg --data fashion-mnist --data-dir "$fm" --epochs 1 --train-limit 4 --batch 8
    cp "$fm/train-images-idx3-ubyte.gz" "$TMP/good.gz"
    head -c $(($(stat -c %s "$TMP/good.gz") / 2)) "$TMP/good.gz" >"$fm/train-images-idx3-ubyte.gz"
    expect "validate a truncated .gz" 1 "truncated or corrupt" "$VAL" --net tiny-vgg --data fashion-mnist --data-dir "$fm" --steps 1
    printf 'not gzip at all' >"$fm/train-images-idx3-ubyte.gz"
    expect "validate a file that is not gzip" 1 "train-images-idx3-ubyte.gz" "$VAL" --net tiny-vgg --data fashion-mnist --data-dir "$fm" --steps 1
    make_idx "$fm/train-images-idx3-ubyte.gz" 999 16 28 28
    expect "validate bad magic" 2 "not an idx file" "$VAL" --net tiny-vgg --data fashion-mnist --data-dir "$fm" --steps 1
    make_idx "$fm/train-images-idx3-ubyte.gz" 803 16777216 16777216 65537
    expect "validate a header whose dimensions wrap 64 bits" 2 "claim more" "$VAL" --net tiny-vgg --data fashion-mnist --data-dir "$fm" --steps 1
    SHORT=-100 make_idx "$fm/train-images-idx3-ubyte.gz" 803 16 28 28
    expect "validate more pixels than the header says" 2 "header says 12544" "$VAL" --net tiny-vgg --data fashion-mnist --data-dir "$fm" --steps 1
    make_idx "$fm/train-images-idx3-ubyte.gz" 803 16 28 28
    CLASSES=12 make_idx "$fm/train-labels-idx1-ubyte.gz" 801 16
    expect "validate a label past 9" 2 "label 10 of image 10" "$VAL" --net tiny-vgg --data fashion-mnist --data-dir "$fm" --steps 2 --batch 8
    make_idx "$fm/train-labels-idx1-ubyte.gz" 801 15
    expect "validate labels not matching images" 2 "labels" "$VAL" --net tiny-vgg --data fashion-mnist --data-dir "$fm" --steps 1
    make_idx "$fm/train-labels-idx1-ubyte.gz" 801 16
    make_idx "$fm/train-images-idx3-ubyte.gz" 803 16 32 32
    expect "validate images of another size than the net's" 2 "--data" "$VAL" --net tiny-vgg --data fashion-mnist --data-dir "$fm" --steps 1
    mkdir -p "$TMP/it's"
    cp "$fm"/train-* "$TMP/it's/"
    expect "validate a data directory with a quote" 1 "unsupported character" "$VAL" --net tiny-vgg --data fashion-mnist --data-dir "$TMP/it's" --steps 1
    chmod 000 "$fm/train-labels-idx1-ubyte.gz"
    if [ "$(id -u)" != 0 ]; then
        expect "validate an unreadable file" 1 "train-labels-idx1-ubyte.gz" "$VAL" --net tiny-vgg --data fashion-mnist --data-dir "$fm" --steps 1
    fi
    chmod 644 "$fm/train-labels-idx1-ubyte.gz"
}

# The CUDA glue on the CPU (built with nvcc): out of memory is "does not fit" with the plan's
# prediction (a 624 GiB arena no test machine has), and a workspace query cuDNN cannot answer (a
# tensor of more than 2^31 elements) is an error, not an empty workspace.
check_validate_emulated() {
    run "$VAL" --net tiny-vgg --backend cuda-emulated --dry-run --quiet
    if [ "$rc" -ne 0 ] && grep -q "built without CUDA" "$err"; then
        ok "validate --backend cuda-emulated: skipped (built without CUDA)"
        return
    fi
    expect "validate an arena that does not fit: exit 1 with the prediction" 1 "predicted peak" \
        "$VAL" --net vgg16 --batch 2048 --input 512x512 --strategy column --backend cuda-emulated \
        --workspace 1 --quiet
    grep -q "does not fit" "$err" || bad "validate an arena that does not fit says so" "$(head -1 "$err")"
    expect "validate a workspace query cuDNN refuses: exit 1" 1 "sizing the CUDA workspace" \
        "$VAL" --net vgg16 --batch 700 --backend cuda-emulated --dry-run --quiet
}

check_validate_backend() {
    run "$VAL" --net tiny-vgg --backend cuda --steps 1 --quiet
    if [ "$rc" -eq 0 ]; then
        ok "validate --backend cuda (a GPU is present: ran)"
        return
    fi
    if [ "$rc" -eq 1 ] && [ "$(lines "$err")" -eq 1 ] && grep -qE 'GPU|CUDA|device' "$err" && ! sanitizer_report; then
        ok "validate --backend cuda without a GPU: exit 1 saying so"
    else
        bad "validate --backend cuda without a GPU: exit 1 saying so" "exit $rc: $(head -2 "$err" | tr '\n' '|')"
    fi
}

# ------------------------------------------------------------------ fuzzer regressions

# Each tests/regress/args-*.txt holds one argument per line (paths relative to a scratch
# directory). The run may fail, but with exit 0, 1 or 2, one line at most on stderr, and no
# sanitizer report.
check_regress_args() {
    local f name
    mkdir -p "$TMP/scratch"
    for f in "$ROOT"/tests/regress/args-*.txt; do
        [ -e "$f" ] || continue
        name="regress ${f##*/}"
        local args=()
        mapfile -t args <"$f"
        (cd "$TMP/scratch" && LRCNN_NETWORKS=$ROOT/networks "$SIM" "${args[@]}") >"$out" 2>"$err"
        rc=$?
        if [ "$rc" -gt 2 ] || sanitizer_report; then
            bad "$name" "exit $rc: $(grep -m1 -E 'runtime error|Sanitizer|internal error' "$err")"
        elif [ "$(lines "$err")" -gt 1 ]; then
            bad "$name" "$(lines "$err") lines on stderr"
        else
            ok "$name (exit $rc)"
        fi
    done
    is_char_device /dev/null && ok "/dev/null is still a device" || bad "/dev/null is still a device" "replaced"
}

check_sim_usage
check_sim_outputs
check_sim_killed
check_sim_limits
check_validate_usage
check_validate_data
check_validate_backend
check_validate_emulated
check_regress_args

printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
