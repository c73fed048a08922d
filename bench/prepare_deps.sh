#!/usr/bin/env bash
# bench/prepare_deps.sh - run HERE (Debian 12 with libjson-c-dev, libcmocka-dev and
# dataset-fashion-mnist) before a GPU run: copies into bench/deps/ what bench/gpu.sh needs and
# the GPU machine image (Ubuntu 24.04, CUDA 13.0, no json-c/cmocka/dataset) lacks:
#
#   bench/deps/libjson-c.a, include/json-c/   json-c, linked statically into lrcnn-validate
#   bench/deps/libcmocka.so.0, include/        cmocka, for build/gpu/bin/test_cuda (rpath)
#   bench/deps/fashion-mnist/*.gz              the Fashion-MNIST idx files (30 MB)
#   bench/deps/glibc.txt                       the glibc they were built against (gpu_env.sh)
#   bench/deps/schedules/*.json                vgg16 b64 schedules for the PyTorch runner
#
# glibc here (2.36) is older than there (2.39), so these libraries link and load there.
# bench/deps/ ignores itself (its own .gitignore): copy it to the GPU machine with the working
# tree.
set -euo pipefail
cd "$(dirname "$0")/.."
deps=bench/deps
lib=/usr/lib/x86_64-linux-gnu

need() {
    [ -e "$1" ] || { echo "prepare_deps: $1 is missing (apt-get install $2)" >&2; exit 1; }
}
need "$lib/libjson-c.a" libjson-c-dev
need /usr/include/json-c/json.h libjson-c-dev
need /usr/include/cmocka.h libcmocka-dev

rm -rf "$deps"
mkdir -p "$deps/include/json-c" "$deps/fashion-mnist"
printf '*\n' > "$deps/.gitignore"
cp "$lib/libjson-c.a" "$deps/"
cp /usr/include/json-c/*.h "$deps/include/json-c/"
cp -L "$lib/libcmocka.so.0" "$deps/libcmocka.so.0"
cp /usr/include/cmocka.h "$deps/include/"
getconf GNU_LIBC_VERSION | awk '{print $2}' > "$deps/glibc.txt"
if [ -d /usr/share/datasets/fashion-mnist ]; then
    cp /usr/share/datasets/fashion-mnist/*-ubyte.gz "$deps/fashion-mnist/"
else
    echo "prepare_deps: no /usr/share/datasets/fashion-mnist (dataset-fashion-mnist): the training check will be skipped" >&2
    rmdir "$deps/fashion-mnist"
fi
# the PyTorch runner's schedules (bench/gpu_torch.sh): lrcnn-sim needs graphviz, absent there
if [ -x build/bin/lrcnn-sim ]; then
    bench/gpu_torch.sh --prepare
else
    echo "prepare_deps: no build/bin/lrcnn-sim (make first): the PyTorch runner bench will be skipped" >&2
fi
du -sh "$deps"
echo "bench/deps ready: copy it to the GPU machine with the working tree"
