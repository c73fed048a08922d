/* cost.h - bytes and FLOPs (DESIGN.md, "Cost model").
 *
 * Bytes: a feature-map tensor holding R rows of node l is N * C * R * W * dtype bytes.
 * FLOPs per output element, forward (backward costs twice that for conv and fc, once otherwise):
 *   conv 2 * (Cin/groups) * kh * kw (+1 with bias); fc 2 * in (+1 with bias);
 *   max/avg pooling kh * kw; batchnorm 4 (plus 3 per element for gathering statistics);
 *   relu, add (per extra input), dropout, upsample, concat 1; global/adaptive pooling 1 per
 *   input element (cost_sum_flops for a stripe of its input); the loss 4 per logit.
 *
 * The planner checks once per configuration (cost_check_layers) that every per-layer count fits
 * in int64: a layer's whole output bytes and its forward, backward and statistics FLOPs. Every
 * count formed for one tensor or one run is at most one of those (rows <= H), so the per-step
 * arithmetic below needs no overflow checks; sums of them (a peak, a step's FLOPs) are checked
 * where they are formed and saturate at INT64_MAX, which the planner reports as an overflow.
 * Deliberately not here: what is resident when (plan/emit/closed).
 */
#ifndef LR_COST_H
#define LR_COST_H

#include <stdint.h>

#include "net.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { DT_FP32, DT_FP16, DT_BF16, DT_COUNT } plan_dtype;
typedef enum { OPTIM_SGD, OPTIM_MOMENTUM, OPTIM_ADAM, OPTIM_COUNT } plan_optim;

const char *cost_dtype_name(plan_dtype d);
int cost_dtype_bytes(plan_dtype d);
const char *cost_optim_name(plan_optim o);
/* Optimizer state per parameter: SGD 0, momentum 1, Adam 2. */
int cost_optim_slots(plan_optim o);

/* Bytes of R rows of node's output for the whole batch. */
int64_t cost_rows_bytes(const net_t *net, int node, int batch, int elem_bytes, int rows);
/* Bytes of node's whole output. */
int64_t cost_node_bytes(const net_t *net, int node, int batch, int elem_bytes);

/* Forward FLOPs of computing `rows` output rows of node; backward FLOPs. */
int64_t cost_fwd_flops(const net_t *net, int node, int batch, int rows);
int64_t cost_bwd_flops(const net_t *net, int node, int batch, int rows);
/* FLOPs of a row reduction (adaptive or global pooling) adding in_rows rows of its input. */
int64_t cost_sum_flops(const net_t *net, int node, int batch, int in_rows);
/* FLOPs of gathering BN statistics over `rows` rows. */
int64_t cost_stats_flops(const net_t *net, int node, int batch, int rows);

/* The exact guard: LR_ERR_INPUT naming the batch and the first layer whose whole output bytes,
 * or forward, backward or statistics FLOPs over all its rows, do not fit in int64. Those are the
 * largest counts the planner forms per tensor or run; it refuses nothing it could count. */
lr_status cost_check_layers(const net_t *net, int batch, int elem_bytes);

/* A conservative bound for models that sum per-layer counts without checking each sum (the
 * PyTorch profile): LR_ERR_INPUT unless the sum over layers of max(bytes, FLOPs) times
 * `multiplier` stays below 2^62. */
lr_status cost_check_limits(const net_t *net, int batch, int elem_bytes, int64_t multiplier);

#ifdef __cplusplus
}
#endif
#endif
