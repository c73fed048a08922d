/* sched.h - the schedule IR: a table of tensors and an ordered list of steps.
 *
 * One schedule, three readers: the planner writes it, the simulator replays it (memory over
 * time), the executors run it. Every byte an executor allocates is a tensor here and every
 * kernel is a RUN step, so predicted and measured memory can only differ by what the model
 * leaves out.
 *
 * Legend: N batch, C channels, H/W height/width, R rows in a stripe.
 * A feature-map tensor (kinds VALUE and GRAD) holds rows [row_lo, row_hi] of node `node`'s
 * output for the whole batch, stored as (N, C, R, W), R = row_hi - row_lo + 1.
 *
 * Steps [0, step_begin) allocate what persists across training steps (weights, gradients,
 * optimizer state, BN running statistics, the input batch and labels, the workspace);
 * [step_begin, step_end) is one training step, repeated by executors;
 * [step_end, n_steps) frees the persistent tensors.
 *
 * `lrcnn-sim --emit-schedule` writes every field of sched_tensor, sched_step and sched_run and
 * every enum value and RUN flag by name (reports/schedule.c holds the field tables,
 * docs/schedule-format.md the schema): a field or value added here goes there too, with a new
 * SCHEDULE_FORMAT_VERSION, and into the PyTorch runner (python/lrcnn_torch).
 *
 * A schedule can also be streamed (sched_stream): its steps and runs then go to a consumer in
 * chunks as they are built and are not kept (a replay needs each step once; a million-step
 * schedule would take hundreds of MB). Step indices are always those of the whole schedule:
 * steps[k] is step step_base + k, runs[k] run run_base + k (both 0 unless streamed); tensors are
 * always all kept. Walk steps with sched_step_at/sched_run_of, which work either way.
 *
 * Deliberately not here: how a schedule is chosen (planner), replay (sim.h).
 */
#ifndef LR_SCHED_H
#define LR_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    TC_WEIGHT,      /* parameters and BN running statistics */
    TC_WEIGHT_GRAD, /* parameter gradients */
    TC_OPT_STATE,   /* momentum buffer, Adam moments */
    TC_INPUT,       /* the input batch and labels */
    TC_ACTIVATION,  /* layer outputs (full maps or stripes), BN batch statistics, the loss */
    TC_ACT_GRAD,    /* gradients of layer outputs, BN gradient reductions */
    TC_BOUNDARY,    /* rows (or their gradients) handed from one partition to the next */
    TC_WORKSPACE,   /* scratch a backend may use inside one kernel */
    TC_COUNT
} sched_class;

typedef enum {
    TK_VALUE,     /* rows of a node's output */
    TK_GRAD,      /* rows of the gradient of a node's output */
    TK_PARAM,     /* a node's parameters: conv/fc weight then bias; BN gamma then beta */
    TK_PARAM_GRAD,
    TK_OPT_STATE, /* momentum: 1x params; Adam: 2x params (m then v) */
    TK_RUNNING,   /* BN running mean then running var, (2, C) */
    TK_BN_STATS,  /* BN batch statistics: (2, C) floats mean, invstd then (2, C) doubles sum, sum^2 */
    TK_BN_GRED,   /* BN gradient reductions: (2, C) doubles sum dy, sum dy*xhat */
    TK_LABELS,    /* (N) int32 */
    TK_LOSS,      /* one float */
    TK_WORKSPACE,
    TK_COUNT
} sched_kind;

typedef enum { STEP_ALLOC, STEP_FREE, STEP_RUN, STEP_COPY } sched_op;

typedef enum {
    PASS_FWD,       /* first forward */
    PASS_BWD,       /* backward, accumulating weight gradients */
    PASS_RECOMPUTE, /* forward again, to rebuild what backward reads */
    PASS_UPDATE,    /* optimizer step */
    PASS_STATS,     /* exact BatchNorm in a row region: gather batch statistics */
    PASS_GSTATS,    /* exact BatchNorm in a row region: gather gradient reductions */
    PASS_COUNT
} sched_pass;

/* Where a tensor lives. Host tensors (the input batch under --offload input) are not device
 * memory: the replay and the executors count them apart, and COPY steps move their rows to and
 * from device tensors. */
typedef enum { TIER_DEVICE, TIER_HOST, TIER_COUNT } sched_tier;

typedef struct {
    int32_t node;  /* the layer it belongs to, -1 for none */
    int32_t part;  /* partition that made it, -1 for full/whole tensors */
    int32_t row_lo, row_hi; /* rows held (VALUE, GRAD); -1 otherwise */
    uint8_t cls;   /* sched_class */
    uint8_t kind;  /* sched_kind */
    uint8_t tier;  /* sched_tier (TIER_DEVICE unless set) */
    int64_t bytes;
} sched_tensor;

/* RUN flags */
#define RUN_NO_WGRAD 0x01   /* backward without weight-gradient accumulation (GSTATS passes) */
#define RUN_BN_STRIPE 0x02  /* BN statistics of this stripe only (approximate mode) */
#define RUN_BN_GLOBAL 0x04  /* BN uses statistics gathered by a STATS pass */
#define RUN_BN_PARTIAL 0x08 /* overlapping partitions: BN reduction term only over own_lo..own_hi */
#define RUN_FINALIZE 0x10   /* STATS: turn accumulated sums into mean/invstd (part = -1) */
#define RUN_STATS_ACC 0x20  /* STATS: add the input rows own_lo..own_hi to the BN sums */
#define RUN_GSTATS_ACC 0x40 /* GSTATS: add (sum dy, sum dy*xhat) over the step's rows to gred */
#define RUN_BN_FROZEN 0x80  /* BN normalises with the running statistics and leaves them unchanged */
#define RUN_ROW_SUM 0x100   /* adaptive/global pooling in a partitioned stage: forward adds input rows
                               own_lo..own_hi into the output rows row_lo..row_hi their bins meet
                               (a bin starting there is started, one ending there is averaged);
                               backward takes those input rows' gradient from the output's */

/* A RUN step's tensors. For node inputs k < n_in: in[k] holds the input's value rows
 * (FWD/RECOMPUTE/STATS: read; BWD: read when the op's backward needs its input, else -1),
 * din[k] receives the input's gradient (BWD; -1 when not wanted). */
typedef struct {
    int32_t n_in;
    int32_t in[8];
    int32_t din[8];
    int32_t out;  /* the node's value tensor: written (forward), read (backward, when needed) */
    int32_t dout; /* gradient of the node's output (BWD, GSTATS) */
    int32_t param, param_grad, opt_state, running; /* -1 when none */
    int32_t aux;  /* BN: TK_BN_STATS tensor */
    int32_t gred; /* BN: TK_BN_GRED tensor (exact mode in a row region, or column BN backward) */
    int32_t own_lo, own_hi; /* RUN_BN_PARTIAL and STATS: rows whose statistics this step owns;
                               RUN_ROW_SUM: the input rows it adds (or back-propagates to) */
    int32_t labels, loss;
    int32_t workspace;
} sched_run;

typedef struct {
    uint8_t op;   /* sched_op */
    uint8_t pass; /* sched_pass */
    uint16_t flags;     /* RUN_* */
    uint8_t accumulate; /* COPY: dst += src instead of dst = src */
    int32_t node, part, stage;
    int32_t row_lo, row_hi; /* RUN: output rows computed or back-propagated; COPY: rows copied */
    int32_t t;              /* ALLOC/FREE: the tensor; COPY: destination */
    int32_t src;            /* COPY: source */
    int32_t run;            /* RUN: index into sched.runs */
    int64_t flops;
} sched_step;

typedef struct sched sched_t;

/* Takes the steps built since the last call: s->steps[0 .. s->n_steps), the first of which is
 * step s->step_base, with the runs they name. An error stops the stream (sched_finish returns
 * it). */
typedef lr_status (*sched_consumer)(void *ctx, const sched_t *s);

struct sched {
    int n_tensors, cap_tensors;
    sched_tensor *tensors;
    int n_steps, cap_steps;
    sched_step *steps;
    int n_runs, cap_runs;
    sched_run *runs;
    /* the training step's range, indices of the whole schedule; while a schedule is streamed,
     * step_end is INT32_MAX from step_begin until the step is complete */
    int step_begin, step_end;
    int elem_bytes; /* bytes per feature-map element (dtype) */
    /* streaming (sched_stream) */
    int step_base, run_base;
    sched_consumer consume;
    void *consumer;
    int chunk;
    lr_status stream_status;
};

void sched_init(sched_t *s);
void sched_free(sched_t *s); /* frees the arrays, not s itself */
void sched_reset(sched_t *s); /* empties it, keeping capacity (and its consumer) */

/* Streams s (reset first): every `chunk` steps built, the consumer takes them and they are
 * dropped. sched_finish hands over the rest and returns the consumer's first error. */
void sched_stream(sched_t *s, sched_consumer consume, void *consumer, int chunk);
lr_status sched_finish(sched_t *s);

/* The index the next step built gets (of the whole schedule, streamed or not). */
static inline int sched_position(const sched_t *s)
{
    return s->step_base + s->n_steps;
}

/* Step i of the whole schedule, among those kept (i - step_base in [0, n_steps)). */
static inline const sched_step *sched_step_at(const sched_t *s, int i)
{
    return &s->steps[i - s->step_base];
}

/* The operands of a RUN step. */
static inline const sched_run *sched_run_of(const sched_t *s, const sched_step *p)
{
    return &s->runs[p->run - s->run_base];
}

/* Builders; each aborts on allocation failure (planning memory is small and bounded). */
int sched_add_tensor(sched_t *s, sched_class cls, sched_kind kind, int node, int part,
                     int row_lo, int row_hi, int64_t bytes);
void sched_alloc(sched_t *s, int t, int pass, int node, int part, int stage);
void sched_release(sched_t *s, int t, int pass, int node, int part, int stage);
void sched_copy(sched_t *s, int dst, int src, int row_lo, int row_hi, bool accumulate, int pass,
                int node, int part, int stage);
/* Appends a RUN step and returns its sched_run (all tensor fields -1) for the caller to fill. */
sched_run *sched_run_step(sched_t *s, int pass, int node, int part, int stage, int row_lo,
                          int row_hi, int flags, int64_t flops);

/* Whether the executors zero a tensor when its ALLOC step runs (gradients and accumulators:
 * everything but values, parameters, labels, the workspace and boundary gradients, which are
 * written before they are read); only device tensors are zeroed. */
bool sched_zeroed_on_alloc(const sched_tensor *t);

/* The bytes a COPY step moves: its rows of the destination. */
int64_t sched_copy_bytes(const sched_t *s, const sched_step *p);

const char *sched_class_name(sched_class c);
const char *sched_tier_name(sched_tier t);
const char *sched_kind_name(sched_kind k);
const char *sched_pass_name(sched_pass p);
const char *sched_op_name(sched_op op);

/* Checks the schedule is well formed: every tensor allocated once before use and freed once,
 * nothing used while not live, persistent tensors allocated before step_begin. Returns LR_OK or
 * LR_ERR_RUNTIME with the first violation. Needs every step kept (not streamed). */
lr_status sched_validate(const sched_t *s);

#ifdef __cplusplus
}
#endif
#endif
