# lrcnn - build, set-up of missing packages, run and test.
#
#   make run      install what is missing, build, run `lrcnn-sim --net vgg16 --batch 256`
#   make test     install what is missing, build, run every test
#   make          build only (CUDA backend only when nvcc is found)
#   make test SANITIZE=1   the same suite under AddressSanitizer + UBSan
#   V=1           show full command lines
#
# Everything builds into build/ (build-san/ with SANITIZE=1).

SHELL := /bin/bash
.DEFAULT_GOAL := all

# ---------------------------------------------------------------- configuration
DEB_PACKAGES := libjson-c-dev libgraphviz-dev libcmocka-dev gnuplot-nox pkg-config dataset-fashion-mnist
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
PKGS := json-c libcgraph libgvc cmocka
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs json-c libcgraph libgvc 2>/dev/null)
# JSONC_DIR=DIR: json-c from DIR/include and DIR/libjson-c.a, statically (bench/prepare_deps.sh
# fills bench/deps for the GPU machine, which has no libjson-c-dev)
ifneq ($(strip $(JSONC_DIR)),)
PKG_CFLAGS = -I$(JSONC_DIR)/include $(shell pkg-config --cflags libcgraph libgvc cmocka 2>/dev/null)
PKG_LIBS = $(JSONC_DIR)/libjson-c.a $(shell pkg-config --libs libcgraph libgvc 2>/dev/null)
endif
CMOCKA_LIBS = $(shell pkg-config --libs cmocka 2>/dev/null)

WARN := -Wall -Wextra -Werror -Wno-unused-parameter
CFLAGS_ALL := -std=c11 -D_GNU_SOURCE $(OPT) -g $(WARN) -fopenmp $(SAN_FLAGS) \
    -Iplanner -Isim -Ireports -Icuda_validate -Icli -Itests $(PKG_CFLAGS) \
    -DLRCNN_SRCDIR='"$(CURDIR)"' -DLRCNN_VERSION='"$(VERSION)"' -MMD -MP $(CFLAGS)
LDFLAGS_ALL := -fopenmp $(SAN_FLAGS) $(LDFLAGS)
LDLIBS_ALL := $(PKG_LIBS) -lm $(LDLIBS)

ifeq ($(V),1)
Q :=
else
Q := @
endif

# ---------------------------------------------------------------- sources
LIB_SRC := $(wildcard planner/*.c sim/*.c reports/*.c) \
           $(filter-out cli/lrcnn_sim.c,$(wildcard cli/*.c)) \
           $(filter-out cuda_validate/validate_main.c,$(wildcard cuda_validate/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
LIB := $(BUILD)/liblrcnn.a

SIM_BIN := $(BUILD)/bin/lrcnn-sim
VAL_BIN := $(BUILD)/bin/lrcnn-validate
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

# The CUDA backend is built only when nvcc is present; everything else never needs it.
NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA_SRC := $(wildcard cuda_validate/*.cu)
ifneq ($(strip $(NVCC)),)
ifneq ($(strip $(CUDA_SRC)),)
HAVE_CUDA := 1
endif
endif

ifeq ($(HAVE_CUDA),1)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_ARCH ?= -gencode arch=compute_90,code=sm_90
CUDNN_INC ?= $(CUDA_HOME)/include
CUDNN_LIB ?= $(CUDA_HOME)/lib64
# pip's nvidia-cudnn wheels ship libcudnn.so.9 without the unversioned link: CUDNN_LINK=-l:libcudnn.so.9
CUDNN_LINK ?= -lcudnn
NVCCFLAGS := -O2 -std=c++17 $(CUDA_ARCH) -Iplanner -Isim -Icuda_validate -I$(CUDNN_INC) \
    -Xcompiler -Wall,-Wextra,-Werror,-Wno-unused-parameter -MMD -MP
CUDA_OBJ := $(CUDA_SRC:%.cu=$(BUILD)/obj/%.o)
# rpath: the binaries find cuDNN/cuBLAS where they were linked, without LD_LIBRARY_PATH
CUDA_LIBS := -L$(CUDNN_LIB) -L$(CUDA_HOME)/lib64 $(CUDNN_LINK) -lcublas -lcudart -lstdc++ \
    -Wl,-rpath,$(CUDNN_LIB) -Wl,-rpath,$(CUDA_HOME)/lib64
CFLAGS_ALL += -DLRCNN_HAVE_CUDA=1
else
CUDA_OBJ :=
CUDA_LIBS :=
endif

# ---------------------------------------------------------------- targets
.PHONY: all run test deps check-deps clean bench fuzz

all: $(SIM_BIN) $(VAL_BIN) $(TEST_BIN) cuda-note

.PHONY: cuda-note
cuda-note:
ifeq ($(HAVE_CUDA),1)
	@echo "  CUDA backend built with $(NVCC)"
else
	@echo "  nvcc not found: skipped the CUDA backend (CPU backend only)"
endif

run: deps all
	$(SIM_BIN) $(RUN_ARGS)

test: deps all
	@set -e; fail=0; for t in $(TEST_BIN); do \
	    printf '== %s\n' "$$t"; \
	    if ! LRCNN_BIN=$(CURDIR)/$(BUILD)/bin LRCNN_NETWORKS=$(CURDIR)/networks $$t; then fail=1; fi; \
	done; \
	printf '== tests/cli.sh\n'; \
	LRCNN_BIN=$(CURDIR)/$(BUILD)/bin bash tests/cli.sh || fail=1; \
	if [ $$fail -ne 0 ]; then echo "SOME TESTS FAILED"; exit 1; fi; echo "ALL TESTS PASSED"

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

$(VAL_BIN): $(BUILD)/obj/cuda_validate/validate_main.o $(LIB)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) $^ $(LDLIBS_ALL) $(CUDA_LIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(BUILD)/obj/tests/golden.o $(LIB)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) $^ $(LDLIBS_ALL) $(CMOCKA_LIBS) $(CUDA_LIBS) -o $@

clean:
	rm -rf build build-san

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
