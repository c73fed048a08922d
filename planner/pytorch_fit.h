/* pytorch_fit.h - "will it fit?" for PyTorch users: the PyTorch profile (pytorch.h) evaluated,
 * searched and chosen from, with the reserved peak (what the caching allocator holds, what
 * nvidia-smi shows, what decides an out-of-memory error) as the measure of memory.
 *
 *   pytorch_evaluate        one configuration: the measured step's figures, the run's reserved
 *                           peak and the recompute it costs
 *   pytorch_choose_segments checkpoint's own choice: the segment count with the lowest reserved
 *                           peak
 *   pytorch_fit_run         --fit: the largest batch and the largest square input at batch 1
 *                           that fit a budget, for column or checkpoint
 *   pytorch_auto            --strategy auto --budget: the checkpointing (none, or units and
 *                           segments) with the least recompute that fits
 *
 * The reserved peak is that of the whole run the profile models (the warm-up step included):
 * without a memory limit the caching model never gives a segment back, so it is the reserved
 * bytes at the end, and equals pytorch_prediction.max_reserved. A configuration fits a budget
 * when its reserved peak is at most the budget: then the allocator never has to free its cache.
 * Past that, PyTorch frees its cached segments and retries before it raises OutOfMemoryError;
 * the caching model does the same under a device limit (sim_caching.limit_bytes), and auto
 * falls back on it when no candidate's reserved peak fits.
 *
 * Legend: N batch, H input height (= width), S segments, U checkpoint units.
 * Deliberately not here: lrcnn's own plans (fit.h, auto.h), printing (cli/sim_pytorch.c).
 */
#ifndef LR_PYTORCH_FIT_H
#define LR_PYTORCH_FIT_H

#include "fit.h"
#include "pytorch.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    pytorch_prediction pred;  /* the measured step, caching model */
    int64_t recompute_flops;  /* FLOPs of the step's RECOMPUTE runs (0 without checkpointing) */
    int64_t step_flops;       /* FLOPs of the whole measured step */
} pytorch_eval;

/* Emits and replays one configuration under the caching model. Errors as pytorch_emit. */
lr_status pytorch_evaluate(const net_t *net, const plan_config *cfg, const pytorch_profile *p,
                           pytorch_eval *out);

/* Checkpointing with p->units: the segment count in 2..U with the lowest reserved peak (ties:
 * the lower max_allocated, then fewer segments), written to *segments with its evaluation.
 * Errors: LR_ERR_INPUT when the net has fewer than 2 units of that form, or as pytorch_emit. */
lr_status pytorch_choose_segments(const net_t *net, const plan_config *cfg,
                                  const pytorch_profile *p, int *segments, pytorch_eval *out);

/* What --fit asks about: column (checkpoint false), or checkpoint with p's units and either
 * p->segments (>= 2) or, when p->segments is 0, any count in 2..U (checkpoint fits where one
 * does). */
typedef struct {
    bool checkpoint;
    pytorch_profile profile;
} pytorch_fit_target;

/* fits(N, H): the target's reserved peak at batch N and input H x H is <= budget_bytes. Fills
 * out as fit_run does (fit.h: max_batch at the net's input, max_square_input at batch 1 over
 * the sizes the net accepts, the at_limit flags where the profile cannot count further; n_evals
 * counts emitted configurations). The search doubles from cfg->batch (resp. the net's input)
 * and bisects: it assumes fits() is monotone, and the answer is measured either way (fits at
 * the answer, not at the next value). Errors: LR_ERR_USAGE for a budget outside (0, 1 PiB),
 * or the target's own errors at the starting point (too many segments, fp16). */
lr_status pytorch_fit_run(const net_t *net, const plan_config *cfg, const pytorch_fit_target *t,
                          int64_t budget_bytes, fit_result *out);

/* One checkpointing auto weighed: none (segments 0), or checkpoint_sequential over `units`. */
typedef struct {
    int segments;
    pytorch_units units;
    pytorch_eval ev;       /* without a memory limit */
    bool fits;             /* ev's reserved peak fits, or the run gets by with cache flushes
                              within the budget as the device's memory */
    int64_t alloc_retries; /* the flushes it needs then (0 when ev's reserved peak fits) */
} pytorch_auto_candidate;

typedef struct {
    int n;
    pytorch_auto_candidate *c; /* no checkpointing first, then top S = 2..U, then blocks */
    int best; /* index into c: the least recompute whose reserved peak fits (ties: the lower
                 peak); when none does, the least recompute that gets by with cache flushes
                 (ties: fewer flushes); when none fits, the lowest reserved peak (fits false) */
} pytorch_auto_result;

/* Weighs no checkpointing and each units form with S = 2..U (base's other settings kept)
 * against budget_bytes (> 0). The caller frees out with pytorch_auto_free (also after an
 * error). Errors as pytorch_emit. */
lr_status pytorch_auto(const net_t *net, const plan_config *cfg, const pytorch_profile *base,
                       int64_t budget_bytes, pytorch_auto_result *out);

void pytorch_auto_free(pytorch_auto_result *r);

#ifdef __cplusplus
}
#endif
#endif
