# lrcnn - build, set-up of missing packages, run and test.
#
#   make run      install what is missing, build, run `lrcnn-sim --net vgg16 --batch 256`
#   make test     install what is missing, build, run every test
#   make          build only (CUDA backend only when nvcc is found); says what is missing
#   make deps     install the missing Debian packages only (make print-deps lists them)
#   make test SANITIZE=1   the same suite under AddressSanitizer + UBSan (no CUDA backend)
#   make fuzz     libFuzzer targets in tests/fuzz/, FUZZ_SECONDS (default 60) each
#   make install  lrcnn-sim, lrcnn-validate and lrcnn-torch into $(PREFIX)/bin, the zoo into
#                 $(PREFIX)/share/lrcnn/networks, the PyTorch runner into
#                 $(PREFIX)/share/lrcnn/python (PREFIX=/usr/local, DESTDIR for staging)
#   make validate lrcnn-validate, time-fit and tests/test_cuda only: no graphviz, gnuplot or
#                 cmocka package needed (the GPU machine; bench/README.md), e.g.
#                 make validate JSONC_STATIC=1 CUDNN_DIR=DIR BUILD=build/gpu
#   JSONC_STATIC=1  json-c (and, when pkg-config has none, cmocka) from $(DEPS) = bench/deps,
#                 filled by bench/prepare_deps.sh; json-c linked statically
#   CUDNN_DIR=DIR cuDNN from DIR/include and DIR/lib or DIR/lib64 (a pip wheel's libcudnn.so.9
#                 has no unversioned link: then -l:libcudnn.so.9), found at run time by rpath
#   V=1           show full command lines
#
# Everything builds into build/ (build-san/ with SANITIZE=1).

SHELL := /bin/bash
.DEFAULT_GOAL := all

# ---------------------------------------------------------------- configuration
DEB_PACKAGES := libjson-c-dev libgraphviz-dev libcmocka-dev libopenblas-dev gnuplot-nox pkg-config \
    dataset-fashion-mnist python3-torch
RUN_ARGS ?= --net vgg16 --batch 256
VERSION := 0.1.0

ifeq ($(SANITIZE),1)
BUILD ?= build-san
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
else
BUILD ?= build
SAN_FLAGS :=
endif

CC ?= cc
OPT ?= -O2
# the planner's walks (closed form, searches): -O3 makes the default resnet101 table about 3%
# faster (not under SANITIZE=1, which keeps one level for all)
PLANNER_OPT ?= $(if $(filter 1,$(SANITIZE)),,-O3)
# openblas: the CPU backend's GEMM (cuda_validate/cpu_blas.c; only `make validate` builds
# without it, with plain loops instead)
PKGS := json-c libcgraph libgvc cmocka openblas
HAVE_OPENBLAS := $(shell pkg-config --exists openblas 2>/dev/null && echo 1)
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs json-c libcgraph libgvc openblas 2>/dev/null)
# JSONC_DIR=DIR: json-c from DIR/include and DIR/libjson-c.a, statically (bench/prepare_deps.sh
# fills bench/deps for the GPU machine, which has no libjson-c-dev); JSONC_STATIC=1 is DIR = $(DEPS)
DEPS ?= bench/deps
ifeq ($(JSONC_STATIC),1)
JSONC_DIR ?= $(DEPS)
endif
ifneq ($(strip $(JSONC_DIR)),)
PKG_CFLAGS = -I$(JSONC_DIR)/include $(shell pkg-config --cflags libcgraph libgvc cmocka openblas 2>/dev/null)
PKG_LIBS = $(JSONC_DIR)/libjson-c.a $(shell pkg-config --libs libcgraph libgvc openblas 2>/dev/null)
endif
CMOCKA_LIBS = $(shell pkg-config --libs cmocka 2>/dev/null)
# no cmocka package but bench/deps has one (the GPU machine): its header and library, by rpath
ifeq ($(JSONC_STATIC),1)
ifeq ($(shell pkg-config --exists cmocka 2>/dev/null && echo ok),)
ifneq ($(wildcard $(DEPS)/libcmocka.so.0),)
PKG_CFLAGS += -I$(DEPS)/include
CMOCKA_LIBS = $(abspath $(DEPS))/libcmocka.so.0 -Wl,-rpath,$(abspath $(DEPS))
endif
endif
endif

# -Wno-psabi: GCC notes that passing a 32-byte vector by value changed ABI in GCC 4.6; the CPU
# kernels pass them only to always_inline helpers (cpu_kernel.h), which cross no ABI boundary
WARN := -Wall -Wextra -Werror -Wno-unused-parameter -Wno-psabi
# Project headers are included with quotes: -iquote keeps sim/sched.h from hiding the system
# <sched.h> that <pthread.h> and OpenBLAS's <cblas.h> include.
PROJECT_INC := $(addprefix -iquote ,base networks sim planner reports cuda_validate cli tests)
# -fno-math-errno: sqrtf need not set errno, so loops calling it vectorise (same results)
CFLAGS_ALL := -std=c11 -D_GNU_SOURCE $(OPT) -g $(WARN) -fopenmp -fno-math-errno $(SAN_FLAGS) \
    $(PROJECT_INC) $(PKG_CFLAGS) \
    -DLRCNN_SRCDIR='"$(CURDIR)"' -DLRCNN_VERSION='"$(VERSION)"' -MMD -MP \
    $(if $(HAVE_OPENBLAS),-DLRCNN_HAVE_OPENBLAS) $(CFLAGS)
$(BUILD)/obj/planner/%.o: CFLAGS_ALL += $(PLANNER_OPT)
LDFLAGS_ALL := -fopenmp $(SAN_FLAGS) $(LDFLAGS)
LDLIBS_ALL := $(PKG_LIBS) -lm $(LDLIBS)

ifeq ($(V),1)
Q :=
else
Q := @
endif

# ---------------------------------------------------------------- sources
LIB_SRC := $(wildcard base/*.c networks/*.c sim/*.c planner/*.c reports/*.c) \
           $(filter-out cli/lrcnn_sim.c,$(wildcard cli/*.c)) \
           $(filter-out cuda_validate/validate_main.c,$(wildcard cuda_validate/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
LIB := $(BUILD)/liblrcnn.a
# what lrcnn-validate, time-fit and test_cuda need: no reports/ or cli/ (graphviz)
VAL_SRC := $(wildcard base/*.c networks/*.c sim/*.c planner/*.c) \
           $(filter-out cuda_validate/validate_main.c,$(wildcard cuda_validate/*.c))
VAL_OBJ := $(VAL_SRC:%.c=$(BUILD)/obj/%.o)
VAL_LIB := $(BUILD)/libvalidate.a

SIM_BIN := $(BUILD)/bin/lrcnn-sim
VAL_BIN := $(BUILD)/bin/lrcnn-validate
TIME_FIT := $(BUILD)/bin/time-fit
TORCH_BIN := $(BUILD)/bin/lrcnn-torch
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

# The CUDA backend is built only when nvcc is present; everything else never needs it.
NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA_SRC := $(wildcard cuda_validate/*.cu)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
ifneq ($(strip $(CUDNN_DIR)),)
CUDNN_INC := $(CUDNN_DIR)/include
CUDNN_LIB := $(patsubst %/,%,$(dir $(firstword $(wildcard $(CUDNN_DIR)/lib/libcudnn.so* $(CUDNN_DIR)/lib64/libcudnn.so*))))
CUDNN_LINK := $(if $(wildcard $(CUDNN_LIB)/libcudnn.so),-lcudnn,-l:libcudnn.so.9)
endif
CUDNN_INC ?= $(CUDA_HOME)/include
CUDNN_LIB ?= $(CUDA_HOME)/lib64
# the backend also needs cuDNN's headers (CUDNN_INC=... when they live elsewhere)
ifneq ($(strip $(NVCC)),)
ifneq ($(strip $(CUDA_SRC)),)
ifneq ($(wildcard $(CUDNN_INC)/cudnn.h),)
HAVE_CUDA := 1
endif
endif
endif
# SANITIZE=1: no CUDA backend. nvcc objects carry no ASan instrumentation, and the CUDA runtime
# under ASan needs protect_shadow_gap=0 and still reports its own allocations; the CPU backend
# runs every schedule the CUDA one would.
ifeq ($(SANITIZE),1)
ifeq ($(HAVE_CUDA),1)
CUDA_SKIPPED_FOR_SAN := 1
endif
HAVE_CUDA :=
endif

ifeq ($(HAVE_CUDA),1)
CUDA_ARCH ?= -gencode arch=compute_90,code=sm_90
# pip's nvidia-cudnn wheels ship libcudnn.so.9 without the unversioned link: CUDNN_LINK=-l:libcudnn.so.9
CUDNN_LINK ?= -lcudnn
NVCCFLAGS := -O2 -std=c++17 $(CUDA_ARCH) -Ibase -Inetworks -Isim -Iplanner -Icuda_validate -I$(CUDNN_INC) \
    -Xcompiler -Wall,-Wextra,-Werror,-Wno-unused-parameter -MMD -MP
CUDA_OBJ := $(CUDA_SRC:%.cu=$(BUILD)/obj/%.o)
# rpath: the binaries find cuDNN/cuBLAS where they were linked, without LD_LIBRARY_PATH
CUDA_LIBS := -L$(CUDNN_LIB) -L$(CUDA_HOME)/lib64 $(CUDNN_LINK) -lcublas -lcudart -lstdc++ \
    -Wl,-rpath,$(CUDNN_LIB) -Wl,-rpath,$(CUDA_HOME)/lib64
CFLAGS_ALL += -DLRCNN_HAVE_CUDA=1
# tests/test_cuda.c names the libraries' status codes
$(BUILD)/obj/tests/test_cuda.o: CFLAGS_ALL += -isystem $(CUDA_HOME)/include -isystem $(CUDNN_INC)
else
CUDA_OBJ :=
CUDA_LIBS :=
endif

# ---------------------------------------------------------------- missing packages
# The library flags above come from pkg-config when this Makefile is read, so `run`, `test` and
# `fuzz` install first and then build in a fresh $(MAKE), which reads them again. Goals that
# build directly check first and stop with one line instead of a compiler error.
BUILD_PKGS := json-c libcgraph libgvc cmocka openblas
INSTALLING_GOALS := run test fuzz deps print-deps clean
# make validate needs json-c only (JSONC_STATIC=1: from bench/deps)
ifneq ($(filter validate,$(MAKECMDGOALS)),)
ifneq ($(strip $(JSONC_DIR)),)
ifeq ($(wildcard $(JSONC_DIR)/libjson-c.a),)
$(error make validate: $(JSONC_DIR)/libjson-c.a is missing -- run bench/prepare_deps.sh where libjson-c-dev is installed and copy bench/deps here)
endif
else ifeq ($(shell pkg-config --exists json-c 2>/dev/null && echo ok),)
$(error make validate: pkg-config finds no json-c -- sudo apt-get install libjson-c-dev, or JSONC_STATIC=1 with bench/deps from bench/prepare_deps.sh)
endif
endif
ifneq ($(filter-out $(INSTALLING_GOALS) validate,$(or $(MAKECMDGOALS),$(.DEFAULT_GOAL))),)
ifeq ($(shell pkg-config --exists $(BUILD_PKGS) 2>/dev/null && echo ok),)
MISSING_DEBS := $(shell for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | \
    grep -q 'ok installed' || printf '%s ' $$p; done)
$(error missing packages: $(or $(strip $(MISSING_DEBS)),pkg-config finds no $(BUILD_PKGS)) -- `make deps` installs them (sudo apt-get install $(or $(strip $(MISSING_DEBS)),$(DEB_PACKAGES))); `make run` and `make test` install them first)
endif
endif

# ---------------------------------------------------------------- targets
.PHONY: all run test deps print-deps clean bench install run-main run-tests

all: $(SIM_BIN) $(VAL_BIN) $(TORCH_BIN) $(TEST_BIN) $(TIME_FIT) cuda-note

# Objects are build outputs in their own right: never removed as intermediates (no `rm` lines).
.SECONDARY:

.PHONY: cuda-note
cuda-note:
ifeq ($(HAVE_CUDA),1)
	@echo "  CUDA backend: on (nvcc: $(NVCC))"
else ifeq ($(CUDA_SKIPPED_FOR_SAN),1)
	@echo "  CUDA backend: off under SANITIZE=1 (nvcc objects and ASan do not mix; CPU backend only)"
else
	@echo "  CUDA backend: off (nvcc or cudnn.h not found; CPU backend only)"
endif
ifneq ($(HAVE_OPENBLAS),1)
	@echo "  CPU backend GEMM: plain loops (pkg-config finds no openblas; libopenblas-dev is faster)"
endif

run: deps
	@$(MAKE) --no-print-directory run-main

run-main: all
	@echo "$(SIM_BIN) $(RUN_ARGS)"
	@$(SIM_BIN) $(RUN_ARGS)

# The binaries find the zoo in ../share/lrcnn/networks beside them (networks/net.c).
PREFIX ?= /usr/local
ZOO := $(filter-out networks/network.schema.json,$(wildcard networks/*.json))
TORCH_PKG := $(wildcard python/lrcnn_torch/*.py)
install: $(SIM_BIN) $(VAL_BIN) $(TORCH_BIN)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/lrcnn/networks \
	    $(DESTDIR)$(PREFIX)/share/lrcnn/python/lrcnn_torch
	install -m 755 $(SIM_BIN) $(VAL_BIN) $(TORCH_BIN) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(ZOO) networks/network.schema.json $(DESTDIR)$(PREFIX)/share/lrcnn/networks/
	install -m 755 python/torch-python $(DESTDIR)$(PREFIX)/share/lrcnn/python/
	install -m 644 $(TORCH_PKG) $(DESTDIR)$(PREFIX)/share/lrcnn/python/lrcnn_torch/

# make bench: planner speed (bench/plan_speed.c), a table of medians, also in bench/results/plan_speed.txt
bench: $(BUILD)/bin/plan_speed
	$(BUILD)/bin/plan_speed bench/results/plan_speed.txt
$(BUILD)/bin/plan_speed: $(BUILD)/obj/bench/plan_speed.o $(LIB)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) $^ $(LDLIBS_ALL) $(CUDA_LIBS) -o $@

test: deps
	@$(MAKE) --no-print-directory run-tests

run-tests: all
	@set -e; fail=0; for t in $(TEST_BIN); do \
	    printf '== %s\n' "$$t"; \
	    if ! LRCNN_BIN=$(CURDIR)/$(BUILD)/bin LRCNN_NETWORKS=$(CURDIR)/networks $$t; then fail=1; fi; \
	done; \
	printf '== tests/cli.sh\n'; \
	LRCNN_BIN=$(CURDIR)/$(BUILD)/bin bash tests/cli.sh || fail=1; \
	printf '== tests/robust.sh\n'; \
	LRCNN_BIN=$(CURDIR)/$(BUILD)/bin bash tests/robust.sh || fail=1; \
	printf '== tests/gpu_dry.sh\n'; \
	LRCNN_BIN=$(CURDIR)/$(BUILD)/bin bash tests/gpu_dry.sh || fail=1; \
	printf '== tests/readme.py\n'; \
	LRCNN_BIN=$(CURDIR)/$(BUILD)/bin python3 tests/readme.py || fail=1; \
	printf '== tests/test_torch.py\n'; \
	if py=$$(python/torch-python); then \
	    LRCNN_BIN=$(CURDIR)/$(BUILD)/bin $$py tests/test_torch.py $(if $(filter 1,$(SANITIZE)),--quick) || fail=1; \
	else fail=1; fi; \
	printf '== tests/layering.sh\n'; \
	bash tests/layering.sh $(BUILD)/obj || fail=1; \
	printf '== clang-check\n'; \
	$(MAKE) --no-print-directory clang-check || fail=1; \
	if [ $$fail -ne 0 ]; then echo "SOME TESTS FAILED"; exit 1; fi; echo "ALL TESTS PASSED"

print-deps:
	@echo $(DEB_PACKAGES)

# Installs the Debian packages the build and tests need, when any is missing.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	echo "  installing:$$missing"; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then SUDO=""; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo"; \
	else echo "missing packages:$$missing -- install them with: sudo apt-get install$$missing" >&2; exit 1; fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	$$SUDO apt-get install -y -q $$missing >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q $$missing >/dev/null; } || \
	  { echo "apt-get could not install:$$missing" >&2; exit 1; }

$(LIB): $(LIB_OBJ) $(CUDA_OBJ)
	@mkdir -p $(dir $@)
	@echo "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(VAL_LIB): $(VAL_OBJ) $(CUDA_OBJ)
	@mkdir -p $(dir $@)
	@echo "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	@echo "  NVCC    $<"
	$(Q)$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(SIM_BIN): $(BUILD)/obj/cli/lrcnn_sim.o $(LIB)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) $^ $(LDLIBS_ALL) $(CUDA_LIBS) -o $@

# lrcnn-torch: the PyTorch runner's commands (python/lrcnn-torch finds the package and torch)
$(TORCH_BIN): python/lrcnn-torch
	@mkdir -p $(dir $@)
	@echo "  CP      $@"
	$(Q)cp $< $@

$(VAL_BIN): $(BUILD)/obj/cuda_validate/validate_main.o $(VAL_LIB)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) $^ $(LDLIBS_ALL) $(CUDA_LIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(BUILD)/obj/tests/golden.o $(BUILD)/obj/tests/support.o $(LIB)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) $^ $(LDLIBS_ALL) $(CMOCKA_LIBS) $(CUDA_LIBS) -o $@

# test_cuda needs nothing from reports/ or cli/, so make validate builds it on the GPU machine
$(BUILD)/tests/test_cuda: $(BUILD)/obj/tests/test_cuda.o $(BUILD)/obj/tests/golden.o $(BUILD)/obj/tests/support.o $(VAL_LIB)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) $^ $(LDLIBS_ALL) $(CMOCKA_LIBS) $(CUDA_LIBS) -o $@

# conv_direct times the CPU backend's direct convolutions against im2col + GEMM
# (bench/conv_direct.c; bench/results/conv_direct.md).
$(BUILD)/bin/conv_direct: $(BUILD)/obj/bench/conv_direct.o $(BUILD)/obj/bench/conv_bench.o $(VAL_LIB)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) $^ $(LDLIBS_ALL) $(CUDA_LIBS) -o $@

# conv_stripes times the CPU backend's convolutions over stripes against the whole map, on one
# thread and two (bench/conv_stripes.c; bench/results/conv_stripes.md).
$(BUILD)/bin/conv_stripes: $(BUILD)/obj/bench/conv_stripes.o $(BUILD)/obj/bench/conv_bench.o $(VAL_LIB)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) $^ $(LDLIBS_ALL) $(CUDA_LIBS) -o $@

# ---------------------------------------------------------------- the GPU machine's build
# time-fit refits the time model's constants from measured steps (bench/time_fit.c).
$(TIME_FIT): $(BUILD)/obj/bench/time_fit.o $(VAL_LIB)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) $^ $(LDLIBS_ALL) $(CUDA_LIBS) -o $@

HAVE_CMOCKA := $(if $(strip $(CMOCKA_LIBS)),1,)
.PHONY: validate
validate: $(VAL_BIN) $(TIME_FIT) $(if $(HAVE_CMOCKA),$(BUILD)/tests/test_cuda) cuda-note
ifeq ($(HAVE_CMOCKA),)
	@echo "  tests/test_cuda: skipped (no cmocka: pkg-config has none and $(DEPS) holds none)"
endif

clean:
	rm -rf build build-san build-fuzz

# ---------------------------------------------------------------- fuzzing
# make fuzz: builds tests/fuzz/fuzz_*.c with clang -fsanitize=fuzzer,address,undefined into
# build-fuzz/ and runs each target for FUZZ_SECONDS (default 60). The seed corpora in
# tests/fuzz/corpus_*/ are read, never written: new inputs go to build-fuzz/corpus/, crashes to
# build-fuzz/artifacts/ (keep a crash as a regression file under tests/regress/).
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_BUILD := build-fuzz
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
# -Wno-pass-failed: clang reports `omp simd` loops it leaves scalar under ASan
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -O1 -g $(WARN) -Wno-pass-failed -fopenmp $(FUZZ_SAN) \
    $(PROJECT_INC) $(PKG_CFLAGS) $(if $(HAVE_OPENBLAS),-DLRCNN_HAVE_OPENBLAS) \
    -DLRCNN_SRCDIR='"$(CURDIR)"' -DLRCNN_VERSION='"$(VERSION)"' -MMD -MP
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_BUILD)/obj/%.o)
FUZZ_BIN := $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_DEB := clang libclang-rt-dev libomp-dev

.PHONY: fuzz fuzz-build fuzz-deps
fuzz: deps fuzz-deps
	@$(MAKE) --no-print-directory fuzz-run

.PHONY: fuzz-run
fuzz-run: fuzz-build
	@fail=0; for t in $(FUZZ_BIN); do \
	    name=$${t##*/}; seeds=tests/fuzz/corpus_$${name#fuzz_}; dict=tests/fuzz/$${name#fuzz_}.dict; \
	    mkdir -p $(FUZZ_BUILD)/corpus/$$name $(FUZZ_BUILD)/artifacts; \
	    echo "== $$name for $(FUZZ_SECONDS) s (seeds: $$seeds)"; \
	    ASAN_OPTIONS=detect_leaks=1 $$t -max_total_time=$(FUZZ_SECONDS) -timeout=30 -rss_limit_mb=4096 \
	        -max_len=8192 -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$name- \
	        $$([ -f $$dict ] && echo -dict=$$dict) \
	        $(FUZZ_BUILD)/corpus/$$name $$seeds || fail=1; \
	done; \
	if [ $$fail -ne 0 ]; then echo "FUZZING FOUND CRASHES: see $(FUZZ_BUILD)/artifacts/"; exit 1; fi

fuzz-build: $(FUZZ_BIN)

# The fuzzing build compiles with clang, the everyday one with gcc: make test has clang check
# every source under the fuzzing build's flags (syntax and warnings only, a few seconds), so a
# GCC-only construct or a warning only clang gives cannot break `make fuzz` unseen.
CLANG_CHECK_FLAGS := $(filter-out -MMD -MP,$(FUZZ_CFLAGS))
.PHONY: clang-check
clang-check:
	@if ! command -v $(FUZZ_CC) >/dev/null 2>&1; then \
	    echo "  clang-check: skipped ($(FUZZ_CC) not installed: make fuzz installs it)"; exit 0; fi; \
	printf '%s\n' $(LIB_SRC) $(wildcard tests/fuzz/fuzz_*.c) | \
	    xargs -P "$$(nproc)" -n 8 $(FUZZ_CC) $(CLANG_CHECK_FLAGS) -fsyntax-only && \
	    echo "  clang-check: every source compiles under $(FUZZ_CC) with the fuzzing build's flags"

# libFuzzer ships with clang's runtime libraries (Debian: libclang-rt-dev); installed only when
# a trivial fuzzer does not link.
fuzz-deps:
	@printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' \
	    >/tmp/lrcnn-fuzz-probe.c; \
	if $(FUZZ_CC) -fsanitize=fuzzer,address,undefined -fopenmp /tmp/lrcnn-fuzz-probe.c \
	    -o /tmp/lrcnn-fuzz-probe >/dev/null 2>&1; then rm -f /tmp/lrcnn-fuzz-probe*; exit 0; fi; \
	rm -f /tmp/lrcnn-fuzz-probe*; \
	echo "  installing:$(FUZZ_DEB) (libFuzzer)"; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then SUDO=""; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo"; \
	else echo "libFuzzer not found -- install it with: sudo apt-get install$(FUZZ_DEB:%= %)" >&2; exit 1; fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	$$SUDO apt-get install -y -q $(FUZZ_DEB) >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q $(FUZZ_DEB) >/dev/null; } || \
	  { echo "apt-get could not install:$(FUZZ_DEB:%= %)" >&2; exit 1; }

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  FUZZCC  $<"
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/%: $(FUZZ_BUILD)/obj/tests/fuzz/%.o $(FUZZ_LIB_OBJ)
	@mkdir -p $(dir $@)
	@echo "  FUZZLD  $@"
	$(Q)$(FUZZ_CC) -fsanitize=fuzzer $(FUZZ_SAN) -fopenmp $^ $(PKG_LIBS) -lm -o $@

-include $(shell find $(BUILD) $(if $(filter fuzz%,$(MAKECMDGOALS)),$(FUZZ_BUILD)) -name '*.d' 2>/dev/null)
