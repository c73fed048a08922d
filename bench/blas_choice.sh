#!/usr/bin/env bash
# bench/blas_choice.sh - which BLAS the CPU backend's GEMMs should call, by measurement: the
# GEMMs of one convolution work unit (bench/gemm_blas.c: tiny-mix's and tiny-vgg's small layers,
# resnet18's four stages) on one thread, through OpenBLAS under each kernel set this CPU runs
# and through BLIS under its own configuration choice and the ones it may be told to take.
# Writes bench/results/blas.md (or $OUT).
#
#   bench/blas_choice.sh           (needs gcc and libopenblas-dev, which `make deps` installs)
#
# BLIS comes from an installed libblis4-serial if there is one; else its Debian package is
# fetched (apt-get download, no install) into a temporary folder for this run only.
# Rounds alternate the configurations; per layer, the median of the rounds' best times.
# Environment: ROUNDS (3), REPEATS (7: timings per round, the best kept), OUT.
# Deliberately not here: whole training steps (bench/cpu_vs_pytorch.sh), threads.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
ROUNDS=${ROUNDS:-3}
REPEATS=${REPEATS:-7}
OUT=${OUT:-$ROOT/bench/results/blas.md}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

inc=$(pkg-config --cflags openblas 2>/dev/null) || { echo "blas_choice: no openblas (make deps)" >&2; exit 1; }
gcc -O2 -std=c11 $inc bench/gemm_blas.c $(pkg-config --libs openblas) -o "$tmp/gemm_openblas"

blis=$(ls /usr/lib/x86_64-linux-gnu/blis-serial/libblis.so.4 2>/dev/null | head -1 || true)
blis_from="installed"
if [ -z "$blis" ]; then
    (cd "$tmp" && apt-get download libblis4-serial >/dev/null 2>&1 && dpkg -x libblis4-serial_*.deb blis) || true
    blis=$(ls "$tmp"/blis/usr/lib/x86_64-linux-gnu/blis-serial/libblis.so.4 2>/dev/null | head -1 || true)
    blis_from="fetched for this run ($(ls "$tmp"/libblis4-serial_*.deb 2>/dev/null | xargs -r -n1 basename))"
fi
if [ -n "$blis" ]; then
    # the CBLAS interface is the same in both (OpenBLAS's header declares it)
    gcc -O2 -std=c11 $inc bench/gemm_blas.c "$blis" -Wl,-rpath,"$(dirname "$blis")" -o "$tmp/gemm_blis"
fi

flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
has() { [[ " $flags " == *" $1 "* ]]; }
configs=("openblas-own")
for set in Prescott Sandybridge Haswell SkylakeX; do
    case $set in
    Sandybridge) has avx || continue ;;
    Haswell) has avx2 && has fma || continue ;;
    SkylakeX) has avx512f && has avx512bw && has avx512dq && has avx512vl && has avx512cd || continue ;;
    esac
    configs+=("openblas-$set")
done
if [ -n "$blis" ]; then
    configs+=("blis-own")
    has avx2 && has fma && configs+=("blis-haswell")
    has avx512f && has avx512bw && has avx512dq && has avx512vl && configs+=("blis-skx")
fi

run() { # config -> lines on stdout
    case $1 in
    openblas-own) env -u OPENBLAS_CORETYPE OPENBLAS_NUM_THREADS=1 "$tmp/gemm_openblas" "$1" "$REPEATS" ;;
    openblas-*) OPENBLAS_CORETYPE=${1#openblas-} OPENBLAS_NUM_THREADS=1 "$tmp/gemm_openblas" "$1" "$REPEATS" ;;
    blis-own) env -u BLIS_ARCH_TYPE "$tmp/gemm_blis" "$1" "$REPEATS" ;;
    blis-*) BLIS_ARCH_TYPE=${1#blis-} "$tmp/gemm_blis" "$1" "$REPEATS" ;;
    esac
}

echo "blas_choice: ${configs[*]}, $ROUNDS rounds" >&2
load_before=$(uptime | sed 's/.*load average: //')
for r in $(seq 1 "$ROUNDS"); do
    for c in "${configs[@]}"; do run "$c"; done >> "$tmp/all.tsv"
    echo "  round $r done" >&2
done
load_after=$(uptime | sed 's/.*load average: //')
ob_own=$(OPENBLAS_NUM_THREADS=1 env -u OPENBLAS_CORETYPE python3 - <<'PY' 2>/dev/null || true
import ctypes
lib = ctypes.CDLL("libopenblas.so.0")
lib.openblas_get_corename.restype = ctypes.c_char_p
print(lib.openblas_get_corename().decode())
PY
)
blis_own=""
if [ -n "$blis" ]; then
    blis_own=$(env -u BLIS_ARCH_TYPE BLIS_ARCH_DEBUG=1 "$tmp/gemm_blis" x 1 2>&1 >/dev/null | sed -n "s/.*selecting sub-configuration '\(.*\)'.*/\1/p" | head -1)
fi

python3 - "$tmp/all.tsv" "${configs[@]}" > "$tmp/table.md" <<'PY'
import sys, statistics
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
configs = sys.argv[2:]
layers = []
t = {}
for c, layer, f, bd, bf in rows:
    if layer not in layers:
        layers.append(layer)
    t.setdefault((c, layer), []).append(float(f) + float(bd) + float(bf))
med = {k: statistics.median(v) for k, v in t.items()}
total = {c: sum(med[(c, l)] for l in layers) for c in configs}
best = min(configs, key=lambda c: total[c])
print("| layer (forward + backward data + backward filter, us) | " + " | ".join(configs) + " |")
print("|---|" + "---|" * len(configs))
for l in layers:
    print("| " + l + " | " + " | ".join("%.1f" % med[(c, l)] for c in configs) + " |")
print("| **sum** | " + " | ".join("**%.1f**" % total[c] for c in configs) + " |")
print("| sum / " + best + " | " + " | ".join("%.2f" % (total[c] / total[best]) for c in configs) + " |")
PY

{
    echo "# The CPU backend's GEMMs under each BLAS"
    echo
    echo "\`bench/blas_choice.sh\`, $(date -u '+%Y-%m-%d %H:%M UTC'), $(git rev-parse --short HEAD 2>/dev/null || echo '?')."
    echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //') (family $(grep -m1 'cpu family' /proc/cpuinfo | sed 's/.*: //'), model $(grep -m1 '^model[[:space:]]' /proc/cpuinfo | sed 's/.*: //')), one thread."
    echo "OpenBLAS: $(pkg-config --modversion openblas) (Debian's pthread build; its own kernel choice on this CPU: ${ob_own:-unknown}; openblas-SET: OPENBLAS_CORETYPE=SET)."
    if [ -n "$blis" ]; then
        echo "BLIS: libblis4-serial, $blis_from (its own configuration on this CPU: ${blis_own:-unknown}; blis-CONFIG: BLIS_ARCH_TYPE=CONFIG)."
    else
        echo "BLIS: not measured (no libblis4-serial installed and none could be fetched)."
    fi
    echo "Load average (1, 5, 15 min): $load_before before, $load_after after."
    echo
    echo "Per layer, the three GEMMs of one work unit (\`cuda_validate/cpu_conv.c\`: Cout x K x P"
    echo "with K = Cin x 9, P pixels), each the best of $REPEATS timings of a loop of calls; the median"
    echo "of $ROUNDS rounds that alternate the configurations."
    echo
    cat "$tmp/table.md"
} > "$OUT"
echo "blas_choice: wrote $OUT" >&2
