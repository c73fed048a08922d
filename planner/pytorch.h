/* pytorch.h - a framework profile: the schedule PyTorch (2.x, CUDA, fp32) itself runs for one
 * training step of a torchvision-style model, so that sim_replay(..., ALLOC_CACHING, ...) predicts
 * what torch.cuda reports for that step:
 *
 *   torch.cuda.max_memory_allocated()  ->  sim_result.peak_bytes
 *   torch.cuda.max_memory_reserved()   ->  sim_result.peak_reserved_bytes
 *
 * plan_emit (emit.c) writes what lrcnn's own executor runs; pytorch_emit writes what autograd and
 * the caching allocator do instead: every tensor PyTorch allocates is a schedule tensor of its
 * exact size (the `caching` replay model rounds and packs them), and it lives as long as PyTorch
 * holds a reference to its storage: a Python variable, a tensor saved for backward, a gradient
 * waiting in the autograd engine's input buffer, a parameter's .grad, optimizer state.
 * pytorch_emitter.h lists the files that write each part; each names the PyTorch code it follows.
 *
 * The step modelled is the one bench/pytorch_measure.py measures:
 *     out = model(x); loss = cross_entropy(out, y); loss.backward(); opt.step();
 *     opt.zero_grad(set_to_none=True)            # then out and loss go out of scope
 * with the model's parameters and buffers, the input batch x (fp32) and the labels y (int64)
 * on the GPU before the step. With `steady_state` the steps before step_begin also hold one
 * whole warm-up step (the one that creates the optimizer state and the cuBLAS workspaces), so
 * the replay's allocator enters the measured step with the segments the warm-up left cached,
 * as torch.cuda.reset_peak_memory_stats() after a warm-up sees them.
 *
 * Schedule layout (sched.h): [0, step_begin) parameters, buffers, x, y, and the warm-up step when
 * steady; [step_begin, step_end) the step; then the frees of what persists. Tensors created
 * inside a step that outlive part of it - parameter gradients (set_to_none: born in backward,
 * gone at zero_grad) and the first step's optimizer state - carry class TC_ACT_GRAD with their
 * own kind (TK_PARAM_GRAD, TK_OPT_STATE), because sched_validate keeps the persistent classes
 * for the prologue; class_at_peak therefore counts them under act_grad.
 *
 * Legend: N batch, K classes, P parameters, U checkpoint units.
 * Deliberately not here: AMP/fp16, channels_last, DDP, fused optimizers, cudnn.benchmark's
 * algorithm search (its workspaces are what cudnn_workspace_bytes stands for), CUDA graphs.
 */
#ifndef LR_PYTORCH_H
#define LR_PYTORCH_H

#include <stdbool.h>
#include <stdint.h>

#include "plan.h"
#include "sim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What checkpoint_sequential gets as its modules (pytorch_checkpoint_units). */
typedef enum {
    PT_UNITS_TOP,    /* the body's top-level modules: VGG's 31 `features`, ResNet's conv1, bn1,
                        relu, maxpool, layer1..layer4 */
    PT_UNITS_BLOCKS, /* residual blocks, and each layer with the relu after it */
    PT_UNITS_COUNT
} pytorch_units;

/* "top", "blocks"; pytorch_units_from_name returns PT_UNITS_COUNT for any other name. */
const char *pytorch_units_name(pytorch_units u);
pytorch_units pytorch_units_from_name(const char *name);

typedef struct {
    /* checkpoint_sequential(body, segments, x, use_reentrant=False) over the body's checkpoint
     * units, the head run after it, every ReLU with inplace=False; 0 or 1: no checkpointing
     * (ReLUs in place, as torchvision builds them) */
    int segments;
    pytorch_units units;
    /* an estimate, not a measurement: bytes cuDNN asks the caching allocator for around every
     * convolution call (forward, backward-data, backward-filter), freed when the call returns.
     * The real size depends on the algorithm cuDNN picks for each layer, GPU and version. */
    int64_t cudnn_workspace_bytes;
    /* the workspace PyTorch gives each cuBLAS handle, allocated through the caching allocator at
     * the handle's first GEMM and kept for the life of the process: one for the Python thread
     * (forward), one for the autograd engine's device thread (backward). torch 2.x default:
     * 32 MiB on sm_90 (H100/H200), 8 MiB + 128 KiB elsewhere (CUBLAS_WORKSPACE_CONFIG). */
    int64_t cublas_workspace_bytes;
    /* model the step after one warm-up step (optimizer state exists, .grad is None); false:
     * the very first step, which creates the optimizer state inside optimizer.step() */
    bool steady_state;
    /* weight_decay != 0: the foreach optimizers add params to a fresh copy of the grads */
    bool weight_decay;
    /* PYTORCH_ALLOC_CONF as the caching model follows it (sim_caching_parse); zero: defaults.
     * pytorch_emit does not read it; the replays of pytorch_fit.h do. */
    sim_caching alloc;
} pytorch_profile;

#define PYTORCH_CUBLAS_WORKSPACE_SM90 ((int64_t)32 << 20)

/* Defaults: no checkpointing (units top), cuDNN workspace 0 (unknown: pass an estimate), cuBLAS workspace
 * PYTORCH_CUBLAS_WORKSPACE_SM90 (the GPUs of this project), steady state, no weight decay. */
void pytorch_profile_default(pytorch_profile *p);

/* Writes the schedule into s (reset first); tensors and steps follow the IR of plan_emit, so
 * sched_validate, sim_replay, the timeline and the trace work unchanged. cfg supplies batch,
 * optimizer and dtype, and cfg->bn == BN_FROZEN puts the BN modules in eval mode (other modes train
 * them as PyTorch does); cfg->workspace_bytes is not used (see the profile).
 * Errors: LR_ERR_INPUT when cfg->dtype is not fp32 (the profile models fp32 training only), or
 * when p->segments exceeds the number of checkpoint units (the message names --segments),
 * or when a byte count would overflow. s is left empty on error. */
lr_status pytorch_emit(const net_t *net, const plan_config *cfg, const pytorch_profile *p,
                       sched_t *s);

/* What torch.cuda reports for the step, read off the replay of a pytorch_emit schedule the way
 * bench/pytorch_measure.py reads it: memory_allocated()/memory_reserved() just before the step,
 * then, after reset_peak_memory_stats(), max_memory_allocated()/max_memory_reserved() over the
 * step (never below the start values). Under ALLOC_CACHING these are the allocator's block and
 * segment bytes; other models give their own sums (reserved = allocated). Unlike
 * sim_replay's peak_bytes, which also covers the warm-up step kept before step_begin. conf: the
 * caching model's settings (NULL: PyTorch's defaults). */
typedef struct {
    int64_t start_allocated, start_reserved;
    int64_t max_allocated, max_reserved;
    int peak_step; /* first step of the step range where max_allocated is reached; step_begin - 1
                      when the step never exceeds its start */
    /* under a device memory limit (conf->limit_bytes): cache flushes over the whole run
     * (torch.cuda.memory_stats()["num_alloc_retries"]), and the step where PyTorch would raise
     * OutOfMemoryError (-1: none; the figures above then cover the run up to it) */
    int64_t alloc_retries;
    int oom_step;
} pytorch_prediction;

lr_status pytorch_predict(const sched_t *s, sim_allocator a, const sim_caching *conf,
                          pytorch_prediction *out);

/* Checkpoint units: the modules the idiom hands to checkpoint_sequential, as indices of their
 * last node in unit_end[0..U). They cover the body, nodes 1 up to the head (the first global or
 * adaptive pooling, flatten or fc), which runs normally after them. A unit ends after a node
 * when only its output crosses to later nodes (a cut).
 *   top     every cut ends a unit, except inside a stage: consecutive residual blocks are one
 *           unit, a block with a layer on its shortcut starting the next (VGG-16: 31 units,
 *           ResNet-50 and -101: 8, AlexNet 13)
 *   blocks  a relu that is the only reader of the node before it joins that node's unit
 *           (VGG-16 13 conv+relu and 5 pools: 18; ResNet-50: conv1, bn1+relu, maxpool and 16
 *           blocks: 19)
 * bench/pytorch_measure.py builds the same lists from torchvision's modules. Returns U (at most
 * cap entries are written). */
int pytorch_checkpoint_units(const net_t *net, pytorch_units form, int *unit_end, int cap);

/* What autograd holds for backward once the forward pass and the loss have run: the bytes of the
 * distinct storages that saved tensors point into (checkpoint: plus the segment inputs the
 * checkpoints keep), leaving out parameters, buffers, the input batch and the labels. Exact
 * bytes, no allocator rounding; tests/data/pytorch/saved_golden.json has PyTorch's own count. */
lr_status pytorch_saved_bytes(const net_t *net, const plan_config *cfg, const pytorch_profile *p,
                              int64_t *saved_bytes);

#ifdef __cplusplus
}
#endif
#endif
