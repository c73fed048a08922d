/* exec.h - executing a schedule for real: one interpreter of the IR, backends behind an
 * interface (CPU reference in plain C; CUDA with cuDNN/cuBLAS), and a counting arena.
 *
 * Memory (STYLE.md "measure, then allocate"): before running, every tensor of the schedule gets
 * an offset in ONE arena by replaying ALLOC/FREE with a best-fit, coalescing allocator
 * (sim_arena_plan, one arena per tier); the backend allocates the arena once. While running, the
 * executor counts the bytes of live tensors as it allocates them: that counted peak is the
 * "measured allocator peak" compared with the simulator's exact peak; the arena size minus the
 * peak is the fragmentation residual.
 *
 * Streams: a backend with lanes() runs host-device copies on a stream of their own; at creation
 * the executor walks the schedule once (sim_lanes, on the arena offsets above) and gives each
 * step the event it waits for (recorded after the other lane's last step it depends on) and the
 * event it records, from a small pool of events reused once their last waiter is issued. Both
 * streams join at the end of every training step (sync).
 *
 * Semantics the backends implement per RUN step are documented at exec_backend.run.
 * Deliberately not here: kernels (cpu_ops.h, cuda_validate/cuda_*.cu), datasets (data.c), the CLI.
 */
#ifndef LR_EXEC_H
#define LR_EXEC_H

#include <stdint.h>

#include "plan.h"
#include "sched.h"
#include "sim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    float lr, momentum, weight_decay, beta1, beta2, eps;
    uint64_t seed; /* weight init and dropout masks */
} exec_hparams;

void exec_hparams_default(exec_hparams *hp); /* lr 0.05, momentum 0.9, Adam betas 0.9/0.999, eps 1e-8 */

/* Everything a backend needs to run one step. Tensor pointers are backend addresses
 * (host for CPU, device for CUDA), NULL for tensors not live. */
typedef struct {
    const net_t *net;
    const sched_t *s;
    const sched_step *step;
    const sched_run *run; /* NULL for COPY */
    void *const *ptr;     /* by tensor id */
    int batch;
    plan_optim optim;
    const exec_hparams *hp;
    int train_step;       /* 1, 2, ... (Adam bias correction, dropout masks) */
    float *loss_out;      /* where a loss RUN stores the batch loss (host) */
    bool eval;            /* inference: BN uses running statistics, dropout is the identity */
    int lane;             /* sim_lane of the step: copy() runs SIM_LANE_COPY steps on the copy
                             stream when the backend has one (lanes()) */
} exec_op;

/* The node whose shape tensor t has in op's step: a flatten when t is what the step reads as (or
 * back-propagates to) a flattened input, else the tensor's own node. A flatten is a view, so the
 * tensor is its input's, of that node's (C, H, W); the step (a dropout, relu or BatchNorm after
 * the flatten) reads it as (C*H*W, 1, 1), which the backends' views must then say. The flatten
 * ends any row region, so such a tensor holds every row of its map. */
static inline int exec_shape_node(const exec_op *op, int t)
{
    const sched_run *r = op->run;
    const net_node *n = r ? &op->net->nodes[op->step->node] : NULL;
    for (int k = 0; n && k < r->n_in && k < n->n_inputs; k++)
        if ((r->in[k] == t || r->din[k] == t) && op->net->nodes[n->inputs[k]].op == OP_FLATTEN)
            return n->inputs[k];
    return op->s->tensors[t].node;
}

/* What a backend's view of tensor t (>= 0) says in op's step: the node whose (C, H, W) it has
 * (exec_shape_node) and the full-map rows [row0, row0 + rows) it holds. */
typedef struct {
    int node, row0, rows;
} exec_view_shape;

static inline exec_view_shape exec_view_shape_of(const exec_op *op, int t)
{
    const sched_tensor *x = &op->s->tensors[t];
    exec_view_shape v = {exec_shape_node(op, t), x->row_lo, x->row_hi - x->row_lo + 1};
    if (v.node != x->node) { /* a flatten's view of a whole map */
        LR_ASSERT(x->row_lo == 0 && x->row_hi == op->net->nodes[x->node].h - 1);
        v.row0 = 0, v.rows = op->net->nodes[v.node].h;
    }
    return v;
}

/* A backend. Contract of run(), by pass and flags (rows = step->row_lo..row_hi, full-map rows):
 *  forward (FWD, RECOMPUTE, STATS without RUN_STATS_ACC): compute output rows into run->out from
 *   run->in[k] (tensors hold the rows they need). BatchNorm: RUN_BN_GLOBAL normalises with the
 *   statistics in run->aux; RUN_BN_STRIPE gathers statistics over these rows into run->aux first;
 *   neither: statistics over the whole map. Running statistics are updated only in pass FWD
 *   (stripe: momentum scaled by own rows / H) and at RUN_FINALIZE.
 *  RUN_STATS_ACC: add sums of run->in[0] over own_lo..own_hi into run->aux. RUN_FINALIZE: aux sums
 *   -> mean/invstd over N*H*W elements, update run->running.
 *  backward (BWD, GSTATS): accumulate into run->din[k] (when >= 0) and run->param_grad (when >= 0)
 *   from run->dout; BatchNorm reductions come from run->gred (RUN_BN_GLOBAL, gathered over all
 *   rows; with RUN_BN_PARTIAL the reduction term only over own_lo..own_hi) or are computed over
 *   these rows into run->gred first (stripe or whole map). RUN_GSTATS_ACC: add the reductions over
 *   these rows into run->gred.
 *  RUN_BN_FROZEN (--bn frozen), forward and backward: BatchNorm is the affine map of the running
 *   statistics run->running, which stay unchanged; backward adds gamma*invstd*dy to run->din[0]
 *   and (sum dy*xhat, sum dy) over these rows to run->param_grad; no aux or gred tensor.
 *  UPDATE: optimizer step on run->param with run->param_grad (then zeroed) and run->opt_state.
 * copy(): step->t rows [row_lo, row_hi] = (or += when accumulate) step->src rows. */
typedef struct {
    const char *name;
    /* One allocation for the whole run; *base receives the address. */
    lr_status (*arena_alloc)(void *ctx, int64_t bytes, void **base);
    void (*arena_release)(void *ctx, void *base);
    lr_status (*zero)(void *ctx, void *p, int64_t bytes);
    lr_status (*run)(void *ctx, const exec_op *op);
    lr_status (*copy)(void *ctx, const exec_op *op);
    lr_status (*upload)(void *ctx, void *dst, const void *src, int64_t bytes);
    lr_status (*download)(void *ctx, void *dst, const void *src, int64_t bytes);
    lr_status (*sync)(void *ctx);
    /* scratch outside the training arena (evaluation only), may be NULL for the CPU */
    lr_status (*scratch_alloc)(void *ctx, int64_t bytes, void **p);
    void (*scratch_free)(void *ctx, void *p);
    /* Host memory for the schedule's TIER_HOST tensors (--offload input): pinned on CUDA, so
     * copies to the device are asynchronous; NULL when the backend runs no offloading plan. */
    lr_status (*host_alloc)(void *ctx, int64_t bytes, void **base);
    void (*host_release)(void *ctx, void *base);
    /* *bytes = the size of the schedule's workspace tensor (plan_config.workspace_bytes) the
     * backend's kernels need to run schedule `s` of `batch` images; a status naming what failed
     * when it cannot say. Drivers plan, ask, and plan again with it: exec_plan_workspace(). */
    lr_status (*workspace_bytes)(void *ctx, const net_t *net, const sched_t *s, int batch,
                                 int64_t *bytes);
    /* Two streams (sim.h, sim_lanes): copies between host and device run on a stream of their
     * own, beside the kernels. lanes() prepares events 0 .. n_events-1 (called once per executor
     * whose schedule has such copies); lane_wait() makes `lane`'s stream wait for what `event`
     * recorded; lane_record() records `event` on `lane`'s stream after what was issued there.
     * sync() then waits for both streams. NULL: the backend runs every step in schedule order on
     * one stream (the CPU), which meets every dependency. */
    lr_status (*lanes)(void *ctx, int n_events);
    lr_status (*lane_wait)(void *ctx, int lane, int event);
    lr_status (*lane_record)(void *ctx, int lane, int event);
} exec_backend;

/* The CPU backend (cpu_backend.c): its convolutions take their scratch from the
 * workspace tensor, one slice per OpenMP thread, so workspace_bytes() depends on
 * omp_get_max_threads() when it is asked. */
extern const exec_backend exec_cpu_backend;

/* The second pass of planning for a backend: when cfg->workspace_bytes is 0 and the backend
 * needs workspace for schedule *s (built from *plan for cfg and spec), plans again with it,
 * replacing *plan, *s and *cost (the closed form of the new plan). Otherwise leaves them.
 * Errors: the backend's, when it cannot size the workspace; the planner's. */
lr_status exec_plan_workspace(const net_t *net, const plan_config *cfg, const plan_spec *spec,
                              const exec_backend *backend, void *backend_ctx, plan_t **plan,
                              sched_t *s, plan_cost *cost);

typedef struct exec exec_t;

typedef struct {
    int64_t counted_peak_bytes; /* most bytes of live tensors the executor held at once */
    int64_t counted_live_bytes; /* now */
    int64_t arena_bytes;        /* the arena it allocated (peak + fragmentation + alignment) */
    int peak_step;              /* step index where counted_peak_bytes was first reached */
    /* host tier (TIER_HOST tensors: not in the figures above, which are the device's) */
    int64_t host_counted_peak_bytes, host_counted_live_bytes, host_arena_bytes;
} exec_memory;

/* Plans the arena for schedule `s` (of `plan`) and allocates it through the backend, then runs
 * the persistent allocations and initialises parameters (Kaiming-uniform like PyTorch's
 * defaults, seeded by hp->seed; BN gamma 1, beta 0, running mean 0, var 1).
 * The executor keeps pointers to net, plan and s: they must outlive it. */
lr_status exec_create(const net_t *net, const plan_t *plan, const sched_t *s,
                      const exec_backend *backend, void *backend_ctx, const exec_hparams *hp,
                      exec_t **out);
void exec_free(exec_t *e);

/* One training step on a batch (images: N*C*H*W floats, labels: N int32 in host memory).
 * With update=false the optimizer steps are skipped and the gradients stay in place (for
 * gradient checks; call exec_update() or exec_zero_grads() afterwards). */
lr_status exec_step(exec_t *e, const float *images, const int32_t *labels, bool update,
                    float *loss);
lr_status exec_update(exec_t *e);
lr_status exec_zero_grads(exec_t *e);

/* Inference of a batch with running BN statistics; writes N predicted classes. Uses scratch
 * memory outside the arena, not counted in the training peak. */
lr_status exec_predict(exec_t *e, const float *images, int n, int32_t *classes);
/* The same inference's logits: n x classes floats (host), before the argmax. */
lr_status exec_predict_logits(exec_t *e, const float *images, int n, float *logits);

/* Parameters (weight then bias; BN gamma then beta) and their gradients, by node, host copies.
 * n must equal the node's parameter count. */
lr_status exec_get_param(exec_t *e, int node, float *dst, int64_t n);
lr_status exec_set_param(exec_t *e, int node, const float *src, int64_t n);
lr_status exec_get_param_grad(exec_t *e, int node, float *dst, int64_t n);
/* BN running mean then var (2*C floats). */
lr_status exec_get_running(exec_t *e, int node, float *dst, int64_t n);
lr_status exec_set_running(exec_t *e, int node, const float *src, int64_t n);
/* Copies all parameters (and BN running statistics) from another executor of the same net. */
lr_status exec_copy_params(exec_t *dst, exec_t *src);

const exec_memory *exec_memory_stats(const exec_t *e);

/* Wall time of the kernel calls (RUN steps, exec_update's too) and copies (COPY steps) of
 * training steps, summed by the run's operator and pass, and RUN calls by duration: at most
 * 10 us, 20, 40, ... (EXEC_PROFILE_BUCKETS, the last open). Host clock around each backend call, so it times a
 * backend that finishes its work in the call (the CPU backend), not one that only enqueues it. */
enum { EXEC_PROFILE_BUCKETS = 10 };
/* A layer's RUN calls, their time and the FLOPs the planner counts for them (sched_step.flops). */
typedef struct {
    char name[NET_NAME_MAX];
    net_op op;
    int64_t calls, flops;
    double ms;
} exec_profile_layer;

typedef struct {
    int64_t calls[OP_COUNT][PASS_COUNT];
    double ms[OP_COUNT][PASS_COUNT];
    int64_t copy_calls;
    double copy_ms;
    int64_t bucket_calls[EXEC_PROFILE_BUCKETS];
    double bucket_ms[EXEC_PROFILE_BUCKETS];
    int n_layers;                /* the net's nodes */
    exec_profile_layer layer[];  /* by node */
} exec_profile;

/* An empty profile of net's layers (free() it); NULL when out of memory. */
exec_profile *exec_profile_new(const net_t *net);
/* Upper end of bucket b in microseconds (the last bucket: no upper end, returns 0). */
double exec_profile_bucket_us(int b);
/* Training steps from now on add to *p (NULL: stop); the caller zeroes it when it wants. */
void exec_set_profile(exec_t *e, exec_profile *p);

/* Offsets of every device tensor in one arena (best fit with coalescing, `align`-byte aligned);
 * returns the arena size. offsets has s->n_tensors entries (-1 for tensors never allocated and
 * for host tensors). exec_plan_arena_tier: the same for the tensors of one tier. Both are
 * sim_arena_plan (sim.h), which the timeline of copies beside kernels reads too. */
int64_t exec_plan_arena(const sched_t *s, int64_t align, int64_t *offsets);
int64_t exec_plan_arena_tier(const sched_t *s, sched_tier tier, int64_t align, int64_t *offsets);

/* The dropout seed of a node at a training step (shared by backends and reference scripts):
 * mix64(base ^ (step << 32) ^ node). */
uint64_t exec_dropout_seed(uint64_t base, int step, int node);

#ifdef __cplusplus
}
#endif
#endif
