#!/usr/bin/env bash
# bench/gpu_env.sh - whether the GPU machine's driver, toolkit, cuDNN and C library can work
# together, decided before anything is built, in one line.
#
#   bench/gpu_env.sh check DRIVER_CUDA NVCC_CUDA CUDNN_VERSION CUDNN_CUDA GLIBC DEPS_GLIBC
#
# DRIVER_CUDA   the CUDA version the driver supports (nvidia-smi's "CUDA Version"), e.g. 13.0
# NVCC_CUDA     the toolkit's release (nvcc --version), e.g. 13.0
# CUDNN_VERSION e.g. 9.10.2 (cudnn_version.h)
# CUDNN_CUDA    the CUDA major the cuDNN was built for (its pip wheel's -cuNN suffix, or
#               torch.version.cuda when it comes from PyTorch's environment), e.g. 13
# GLIBC         this machine's C library (getconf GNU_LIBC_VERSION), e.g. 2.39
# DEPS_GLIBC    the C library bench/deps was built against (bench/deps/glibc.txt), e.g. 2.36
# Any value may be "unknown": that rule is then not checked (and says so).
#
# Prints "ok: ..." (and "warning: ..." lines) and exits 0, or prints "FATAL: <why, what to do>"
# and exits 1. The rules:
#   - the driver must support the toolkit's major version (CUDA minor version compatibility
#     covers the minor): kernels built by nvcc 13 do not load on a CUDA 12 driver;
#   - cuDNN 9 (the backend calls its v7 heuristics and v9 status codes);
#   - a cuDNN built for another CUDA major than the toolkit's is a warning, not a failure: its
#     CUDA libraries and the toolkit's may or may not load into one process side by side, and
#     the device check after the build says which;
#   - glibc at least bench/deps' (libcmocka.so.0 and the static json-c were built against it).
# bench/gpu.sh runs it; tests/gpu_dry.sh holds it to these rules.
set -u

major() { echo "${1%%.*}"; }

# ge A B: version A >= version B (dotted, numeric)
ge() {
    [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -1)" = "$2" ]
}

check() {
    local driver=$1 nvcc=$2 cudnn=$3 cudnn_cuda=$4 glibc=$5 deps_glibc=$6 notes=""
    if [ "$driver" != unknown ] && [ "$nvcc" != unknown ] && [ "$(major "$driver")" -lt "$(major "$nvcc")" ]; then
        echo "FATAL: the driver supports CUDA $driver, the toolkit is CUDA $nvcc: kernels built by nvcc $(major "$nvcc") cannot load; use a driver for CUDA $(major "$nvcc") or set CUDA_HOME to a CUDA $(major "$driver") toolkit"
        return 1
    fi
    if [ "$cudnn" != unknown ] && [ "$(major "$cudnn")" != 9 ]; then
        echo "FATAL: cuDNN $cudnn found, the backend needs cuDNN 9; set CUDNN_DIR to a cuDNN 9 (include/cudnn.h, lib/libcudnn.so.9)"
        return 1
    fi
    if [ "$glibc" != unknown ] && [ "$deps_glibc" != unknown ] && ! ge "$glibc" "$deps_glibc"; then
        echo "FATAL: glibc $glibc here is older than the $deps_glibc bench/deps was built against; run bench/prepare_deps.sh on a machine with glibc <= $glibc"
        return 1
    fi
    for v in driver nvcc cudnn cudnn_cuda glibc deps_glibc; do
        [ "${!v}" = unknown ] && notes="$notes $v"
    done
    if [ "$cudnn_cuda" != unknown ] && [ "$nvcc" != unknown ] && [ "$cudnn_cuda" != "$(major "$nvcc")" ]; then
        echo "warning: cuDNN $cudnn was built for CUDA $cudnn_cuda, the toolkit is CUDA $nvcc: if opening the device fails, set CUDNN_DIR to a cuDNN for CUDA $(major "$nvcc") or CUDA_HOME to a CUDA $cudnn_cuda toolkit"
    fi
    echo "ok: driver CUDA $driver, toolkit CUDA $nvcc, cuDNN $cudnn for CUDA $cudnn_cuda, glibc $glibc (bench/deps: $deps_glibc)${notes:+; not known, not checked:$notes}"
}

if [ "${1:-}" = check ] && [ $# -eq 7 ]; then
    shift
    check "$@"
    exit $?
fi
echo "usage: bench/gpu_env.sh check DRIVER_CUDA NVCC_CUDA CUDNN_VERSION CUDNN_CUDA GLIBC DEPS_GLIBC" >&2
exit 2
