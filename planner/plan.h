/* plan.h - training strategies as plans, and plans as schedules.
 *
 * A plan cuts the network into a row region made of STAGES followed by a column TAIL:
 *
 *   input -> [stage 0] -> [stage 1] -> ... -> [stage K-1] -> tail (column-wise) -> loss
 *
 * Stage s holds the nodes (in_node, out_node] of the topological order, where in_node and
 * out_node are cuts (only one tensor crosses). Its output is kept whole; everything inside it
 * runs in `parts` row partitions and is recomputed for backward (DESIGN.md, "Strategies"):
 *
 *   column       no stages: everything in the tail
 *   checkpoint   stages of 1 partition (segments, Chen et al. 2016), the last one not recomputed
 *   row          1 stage, partitions tile each layer; equal splits of the stage OUTPUT rows,
 *                each partition computes its cone minus rows earlier partitions computed
 *   2ps          1 stage, partitions tile each layer; equal splits of the stage INPUT rows,
 *                each partition computes every row its inputs allow (two-phase sharing)
 *   overl        1 stage, equal splits of the output rows, each partition computes its whole
 *                cone (overlapping partitions, halo recomputed)
 *   2ps-h/overl-h  several stages, each with its own number of partitions
 *
 * Tiled partitions (row, 2ps) hand the rows the next partition reads ("boundary" rows) forward,
 * and in backward hand the gradients of those rows back. All boundaries made in forward are
 * kept until the recompute that reads them. Overlapping partitions share nothing.
 *
 * Legend: P partitions, l a node, j a partition.
 * Deliberately not here: replay (sim/), execution (cuda_validate/).
 */
#ifndef LR_PLAN_H
#define LR_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "cost.h"
#include "device.h"
#include "net.h"
#include "rowdep.h"
#include "sched.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    STRAT_COLUMN,
    STRAT_CHECKPOINT,
    STRAT_ROW,
    STRAT_2PS,
    STRAT_OVERL,
    STRAT_2PS_H,
    STRAT_OVERL_H,
    STRAT_COUNT
} plan_strategy;

/* BatchNorm in training (--bn):
 *   exact   batch statistics; in a partitioned stage gathered over every partition by a STATS
 *           pass (and gradient reductions by a GSTATS pass) per BatchNorm layer before use
 *   stripe  statistics of each partition's rows alone (approximate, as the LR-CNN authors' code)
 *   frozen  the running statistics as a fixed per-channel affine map (model.eval() on the BN
 *           modules, as fine-tuning does): row by row exact with no statistics at all; gamma
 *           and beta still learn, the running statistics do not change */
typedef enum { BN_EXACT, BN_STRIPE, BN_FROZEN, BN_COUNT } plan_bn;

typedef enum {
    PART_TILE_OUT, /* row */
    PART_TILE_IN,  /* 2ps */
    PART_OVERLAP,  /* overl */
} plan_partitioning;

const char *plan_strategy_name(plan_strategy s);
/* STRAT_COUNT for an unknown name. */
plan_strategy plan_strategy_from_name(const char *name);
const char *plan_bn_name(plan_bn b);

typedef struct {
    int batch;
    plan_dtype dtype;
    plan_optim optim;
    plan_bn bn;
    int64_t workspace_bytes; /* one persistent workspace tensor (0: none) */
    const device_spec *device; /* the time model's device (NULL: no step time) */
    unsigned offload; /* OFFLOAD_* bits: what lives in host memory (--offload) */
    /* --offload auto: each plan's offload set is the planner's choice among the four (offload is
     * then 0): strategy_choose, auto_search and fit_run choose it and record it in
     * plan_spec.offload, which plan_build adds to `offload` */
    bool offload_auto;
    /* --boundaries recompute: a tiled stage (row, 2ps) of N > 1 keeps no boundary rows for the
     * backward; its backward recomputes each partition from the stage input over the partition's
     * whole cone, as overl does (plan_stage.bwd): less memory, more compute. Not for a stage
     * with stripe BatchNorm (approximate anyway), which keeps them. */
    bool recompute_boundaries;
    /* --boundaries auto: the searches choose per stage whether it keeps or recomputes its
     * boundaries (plan_spec.recompute), by the objective they use for N */
    bool boundaries_auto;
    /* the caller asks the same stages again at other batches (--fit's batch questions):
     * plan_stage_phases keeps each stage's phases as functions of the batch (closed_walk.h),
     * which cost a little more to make and nothing to read again */
    bool reuse_phases;
} plan_config;

/* --offload input: the input batch stays in host memory (sched_tier TIER_HOST); each partition of
 * the first stage copies the input rows it reads into a device stripe when it starts (forward,
 * statistics passes, recompute) and frees it when it ends (after its backward, which reads them
 * too). A plan without stages (column) reads the whole input in its tail and keeps it on the
 * device. */
#define OFFLOAD_INPUT 0x1u
/* --offload boundary: in a tiled stage (row, 2ps) the boundary rows partition j hands to j+1 in
 * the first forward and keeps for the recompute of j+1 (what grows linearly with N) are written
 * to host memory, copied into j+1's stripe from there in the forward and again in the recompute
 * (and each GSTATS pass's recompute), and freed by the backward's recompute. The boundary
 * gradients of the backward pass from one partition to the next at once: they stay. */
#define OFFLOAD_BOUNDARY 0x2u

/* "none", "input", "boundary", "input,boundary" (also "all"): LR_ERR_USAGE naming `flag` else. */
lr_status plan_offload_parse(const char *flag, const char *v, unsigned *out);
const char *plan_offload_name(unsigned offload);
/* --offload's value into cfg: a set (plan_offload_parse), or "auto" (cfg->offload_auto). */
lr_status plan_offload_config(const char *flag, const char *v, plan_config *cfg);
/* "auto" under --offload auto, else the set's name: what a configuration asks for. */
const char *plan_offload_config_name(const plan_config *cfg);
/* --boundaries keep|recompute|auto (plan_config.recompute_boundaries, .boundaries_auto):
 * LR_ERR_USAGE naming `flag`. */
lr_status plan_boundaries_parse(const char *flag, const char *v, plan_config *cfg);
const char *plan_boundaries_name(const plan_config *cfg);

#define PLAN_MAX_STAGES 64

/* What a plan is made of: stage cuts and partitions per stage, and under --offload auto the
 * offload set chosen for it. */
typedef struct plan_spec {
    plan_strategy strategy;
    plan_partitioning kind;
    int n_stages;
    int cut[PLAN_MAX_STAGES];   /* out_node of stage s; stage s covers (cut[s-1], cut[s]], cut[-1] = 0 */
    int parts[PLAN_MAX_STAGES]; /* partitions of stage s (1 = a checkpoint segment) */
    /* bit s: stage s recomputes its boundaries in the backward as --boundaries recompute does
     * (the searches set it under --boundaries auto; plan_build clears it where it does not
     * apply: overl, one partition, stripe BatchNorm) */
    uint64_t recompute;
    unsigned offload; /* OFFLOAD_* bits kept in host memory on top of plan_config.offload: the
                         set --offload auto chose for this plan (0 otherwise) */
} plan_spec;

static inline bool plan_spec_recomputes(const plan_spec *sp, int s)
{
    return (sp->recompute >> s) & 1u;
}

/* Whether stage s of the spec recomputes its boundaries under cfg (--boundaries recompute, or
 * its plan_spec.recompute bit): a tiled stage of N > 1 without stripe BatchNorm. */
bool plan_stage_recomputes(const net_t *net, const plan_config *cfg, const plan_spec *sp, int s);

/* The OFFLOAD_* bits a plan of spec runs under cfg: the configuration's set and the one chosen
 * for the plan. */
static inline unsigned plan_offload_of(const plan_config *cfg, const plan_spec *spec)
{
    return cfg->offload | spec->offload;
}

typedef struct plan_stage {
    int in_node, out_node;
    int parts;
    plan_partitioning kind;
    /* Row ranges per (node, partition), index (l - in_node - 1) * parts + j:
     *   own  - rows partition j is responsible for (a tiling of each layer's rows)
     *   comp - rows it computes in forward (= own when tiled; own plus the cone when overlapping)
     *   held - rows its buffer holds (comp plus boundary rows from earlier partitions)  */
    rowrange *own, *comp, *held;
    /* A stage whose last layer is a row reduction (adaptive or global average pooling) sums:
     * partition j adds rows sum_in[j] of the reduction's input (a tiling of them, in order)
     * into the whole output; own[out_node][j] are the output rows it finishes (their bins end
     * there), comp[out_node][j] those it touches. NULL for other stages. */
    rowrange *sum_in;
    bool *rerun;     /* by node id: recomputed for backward (its value or BN statistics are read
                        in backward, or it feeds a node that is); never the stage output */
    bool store_last; /* the last partition's forward keeps what backward reads (no recompute) */
    bool bn_passes;  /* exact BatchNorm in a partitioned stage: STATS and GSTATS passes */
    bool bn_frozen;  /* --bn frozen: BatchNorm reads the running statistics, keeps none of its own */
    /* the first stage under --offload input: in_rows[j] are the input rows partition j reads
     * (copied from host memory into a device stripe while it runs); NULL otherwise */
    rowrange *in_rows;
    bool bnd_on_host; /* --offload boundary in a tiled stage of N > 1 (plan_bnd_on_host) */
    /* --boundaries recompute in a tiled stage of N > 1: the stage its backward runs, the same cut
     * partitioned as overl in N (or as many rows as overl splits, if fewer) partitions, each
     * recomputed over its cone from the stage input;
     * the forward then frees every boundary once the next partition has read it. NULL: the
     * backward runs this stage, reading the boundaries the forward kept */
    struct plan_stage *bwd;
    /* NULL, or the statistics passes' scripts of (in_node, out_node] made beforehand
     * (plan_scripts_new; plan_stage_use_scripts), which the closed form then takes */
    const struct plan_scripts *scripts;
    /* the closed form walks each partition shape whole, never in segments (closed_segments): for
     * the tests that hold the segments to the whole walks (false: as closed_segments decides) */
    bool whole_walks;
} plan_stage;

typedef struct {
    const net_t *net;
    plan_config cfg;
    plan_spec spec;
    int n_stages;
    plan_stage *stages;
    int tail_first; /* first node of the column tail */
} plan_t;

static inline int plan_idx(const plan_stage *st, int node, int j)
{
    return (node - st->in_node - 1) * st->parts + j;
}

/* (node, partition) row ranges a plan may hold, over all stages: 28 bytes each, and every
 * closed-form pass walks them. The N searches stay within it (strategy_max_parts); a large
 * --rows on a very deep region reaches it. */
#define PLAN_MAX_RANGES ((int64_t)1 << 25)

/* The rows a stage (in_node, out_node] of this partitioning splits into partitions: its input's
 * for 2ps (PART_TILE_IN), its output's otherwise (for a stage ending in a row reduction, the
 * reduction's input's). plan_build clamps N to them. */
int plan_split_rows(const net_t *net, plan_partitioning kind, int in_node, int out_node);

/* Builds the plan for a spec: checks the cuts (LR_ERR_INPUT naming the layer when a cut is not
 * a valid stage boundary or a stage holds an op that needs every row, or when the stages hold
 * more than PLAN_MAX_RANGES row ranges) and computes the row ranges. The caller frees *out with
 * plan_free(). */
lr_status plan_build(const net_t *net, const plan_config *cfg, const plan_spec *spec,
                     plan_t **out);
void plan_free(plan_t *plan);

/* One stage on its own: stage (in, out] as plan_build builds it for a spec of `kind` with
 * `parts` partitions (clamped to the rows there are), `last` when it is the plan's last stage. A
 * stage depends on nothing else, so searches cost it alone (plan_stage_phases). The caller frees
 * it with plan_stage_free(). Errors: LR_ERR_INPUT past PLAN_MAX_RANGES, LR_ERR_NOMEM. */
lr_status plan_stage_build(const net_t *net, const plan_config *cfg, plan_partitioning kind,
                           int in, int out, int parts, bool last, plan_stage *st);
void plan_stage_free(plan_stage *st);
/* Whether nodes (in_node, out_node] hold a BatchNorm. */
bool plan_has_bn(const net_t *net, int in_node, int out_node);

/* Writes the plan's schedule for one training step into s (reset first). */
void plan_emit(const plan_t *plan, sched_t *s);

/* The most kernel runs (RUN steps) lrcnn builds into one schedule: with its allocations, frees
 * and copies a run takes about 300 bytes, so the limit keeps a schedule under ~3 GB. Exact
 * BatchNorm in a deep partitioned stage is what gets near it: one STATS and one GSTATS pass per
 * BatchNorm layer, each over the stage (ResNet-1001 in one stage of 4 partitions: ~6M runs). */
#define PLAN_MAX_RUNS ((int64_t)1 << 23)

/* An upper bound on the RUN steps plan_emit() writes for the plan (linear in the plan's size
 * times its exact-BN layers, no schedule built). */
int64_t plan_run_bound(const plan_t *plan);

/* LR_ERR_INPUT, naming the net, strategy, bound and what to change, when plan_run_bound()
 * exceeds PLAN_MAX_RUNS. Callers run it before plan_emit(). */
lr_status plan_check_emit(const plan_t *plan);

/* The closed form: peak bytes (exact model) and where it happens, computed from the plan's
 * ranges by formula, independently of the emitted schedule; plus the FLOPs of one step and, with
 * cfg.device, its time (the sum of device_kernel_ns over the kernels the schedule runs). */
typedef struct {
    int64_t peak_bytes;
    int peak_node, peak_part, peak_stage;
    sched_pass peak_pass;
    int64_t static_bytes; /* weights, BN running stats, weight gradients, optimizer state */
    int64_t input_bytes;  /* input batch and labels on the device (the labels alone when the
                             input is offloaded) */
    int64_t workspace_bytes;
    int64_t host_bytes;   /* host memory the plan keeps at its peak (--offload: the input batch,
                             boundary rows kept for the backward) */
    int64_t copy_bytes;   /* bytes copied between host and device (both ways) in one step */
    int64_t copy_ns;      /* their time over cfg.device's host link (device_copy_ns); 0 without */
    int64_t flops;
    int64_t step_ns; /* predicted step time on cfg.device (device.h); 0 without a device */
    /* where exact BatchNorm's compute goes: its STATS and GSTATS passes (the recomputes inside
     * GSTATS passes included), one of each per BatchNorm in a partitioned stage */
    int64_t bn_pass_flops;
    int bn_passes;
    /* highest live bytes while each stage runs (forward or backward): what the per-stage N
     * search minimises, since the step's peak is the largest of them and the tail's */
    int64_t stage_peak[PLAN_MAX_STAGES];
} plan_cost;

void plan_closed_form(const plan_t *plan, plan_cost *out);

/* The closed form phase by phase. The walk is a sequence of phases: [0] persistent bytes,
 * [1 + s] the forward of stage s, [1 + S] and [2 + S] the tail's forward and backward,
 * [2 + 2S - s] the backward of stage s (S stages). A stage's two phases depend on that stage
 * alone (its cut, N, kind and the config), so the cost of a plan whose stages take their N from
 * different plans with the same cuts is the composition of their phases: the per-stage N search
 * evaluates each (stage, N) once instead of the whole plan per candidate. */
typedef struct {
    int64_t entry, exit; /* live bytes when it starts and ends */
    int64_t high;        /* the highest live bytes after a growth inside it (valid when grew) */
    bool grew;
    int node, part, stage; /* where `high` is first reached */
    sched_pass pass;
    int64_t flops;    /* INT64_MAX when the sum saturated */
    int64_t ns;       /* time of its kernels (cfg.device; INT64_MAX when the sum saturated) */
    int64_t bn_flops; /* of its FLOPs, in statistics passes */
    int bn_passes;
    int64_t copy_bytes; /* copies between host and device in it */
    int64_t host_delta; /* host memory it leaves allocated (boundaries: + in forward, - in backward) */
} plan_phase;

typedef struct {
    int n; /* phases recorded: 2 * stages + 3 */
    plan_phase ph[2 * PLAN_MAX_STAGES + 3];
    int64_t update_flops, update_ns; /* optimizer updates, after the last phase */
    int64_t static_bytes, input_bytes, workspace_bytes;
    const device_spec *device; /* the config's (copy time) */
} plan_phases;

/* plan_closed_form, also recording the phases. */
void plan_closed_phases(const plan_t *plan, plan_cost *out, plan_phases *ph);

/* The cost of the plan whose stage s is the stage s of the plan by_stage[s] was recorded from
 * (all with the same cuts; persistent bytes and the tail come from by_stage[0]); equal to
 * plan_closed_form of that plan in every field. */
void plan_compose(const plan_phases *const *by_stage, int n_stages, plan_cost *out);
/* plan_compose, also giving the highest live bytes after a growth in the tail's forward and
 * backward phases (INT64_MIN: the tail does not grow). */
void plan_compose_tail(const plan_phases *const *by_stage, int n_stages, plan_cost *out,
                       int64_t *tail_high);

/* What exact BatchNorm's statistics passes of a stage (in, out] read of the net's graph alone:
 * per BatchNorm, where its STATS pass leaves the shared walk of the stage and the nodes it then
 * runs and frees, and the nodes its GSTATS pass runs. The same for every N, partitioning, batch
 * and input size, so a search that evaluates one cut at many N makes them once and lends them to
 * each stage it builds there (plan_stage_use_scripts): made per evaluation, they were a fifth of
 * a ResNet's --fit (the net's BatchNorms times its nodes each time). */
typedef struct plan_scripts plan_scripts;
plan_scripts *plan_scripts_new(const net_t *net, int in, int out);
void plan_scripts_free(plan_scripts *s);
/* By node id: how many BatchNorms of the stage it is an ancestor of (or is), that is how many
 * STATS passes run it (plan_stage_runs counts them so). */
const int *plan_scripts_stats_of(const plan_scripts *s);
/* The scripts of (in, out] kept for the net's graph (net_t.graph_id) until the process ends, made
 * when first asked for; NULL when the net has no graph id or the table is full (the caller makes
 * its own then). The caller does not free them. Searches at every size and batch of one net, and
 * the closed form of every plan of it, share them. */
const plan_scripts *plan_scripts_kept(const net_t *net, int in, int out);
/* The scripts of (in, out] to lend to stages: the kept ones, else made now and also put in *own
 * for the caller to free (*own is NULL when they are the kept ones). */
const plan_scripts *plan_scripts_lent(const net_t *net, int in, int out, plan_scripts **own);

/* st (and its twin) take the scripts made for its cut (NULL: none). */
static inline void plan_stage_use_scripts(plan_stage *st, const plan_scripts *s)
{
    st->scripts = s;
    if (st->bwd)
        st->bwd->scripts = s;
}

/* A stage on its own (plan_stage_build): the forward and backward phases plan_closed_phases
 * records for it in any plan that holds it as stage `index` (a stage's phases depend on it
 * alone). */
void plan_stage_phases(const net_t *net, const plan_config *cfg, const plan_stage *st, int index,
                       plan_phase *fwd, plan_phase *bwd);
/* The same walked at cfg's batch, never read off the phase functions plan_stage_phases keeps
 * (closed_walk.h): what tests hold those to. */
void plan_stage_phases_walked(const net_t *net, const plan_config *cfg, const plan_stage *st,
                              int index, plan_phase *fwd, plan_phase *bwd);

/* Stage (in, out] alone, as plan_stage_build builds it under cfg, lent `scripts` (NULL: none):
 * its runs (plan_stage_runs) and, when they are within PLAN_MAX_RUNS, its phases as stage
 * `index` (plan_stage_phases). Under plan_config.reuse_phases a stage asked again (another batch
 * of a --fit question) is not built again when its phases are kept: what the build decided is
 * kept beside them. Errors: plan_stage_build's. */
lr_status plan_stage_alone(const net_t *net, const plan_config *cfg, plan_partitioning kind,
                           int in, int out, int parts, bool last, int index,
                           const plan_scripts *scripts, plan_phase *fwd, plan_phase *bwd,
                           int64_t *runs);

/* The phases of a plan put together from its stages' (fwd[s], bwd[s], s < n_stages) and the
 * persistent and tail phases of `ends`, recorded from a plan of ends_stages stages whose last
 * stage ends where this one's does (the tail depends only on that): plan_compose(out) then
 * gives its cost. */
void plan_phases_assemble(const plan_phases *ends, int ends_stages, int n_stages,
                          const plan_phase *fwd, const plan_phase *bwd, plan_phases *out);

/* plan_run_bound's share of stage s (plan_run_bound = 2 * nodes + the sum over stages), and of
 * a stage on its own. */
int64_t plan_stage_run_bound(const plan_t *plan, int s);
int64_t plan_stage_runs(const net_t *net, const plan_stage *st);
/* Bytes of the boundary rows st's first forward keeps on the device for the stage's backward
 * (tiled, boundaries kept): partition j hands node l's rows [held(j+1).lo, held(j).hi] on, and
 * when l's backward reads them again (plan_bnd_read_once false) they stay until the backward,
 * unless written to host memory or freed by a last partition that stores. */
int64_t plan_stage_kept_bytes(const net_t *net, const plan_config *cfg, const plan_stage *st);
/* Bytes live on the device, beyond the persistent ones and the stage output's gradient, when the
 * partition that holds the most starts its backward (recompute done, or forward stored): its
 * stripes of every value the stage's backward reads (in the partitioning plan_bwd_stage runs),
 * and the boundary rows kept for the recomputes of partitions below it (all but the one it reads
 * itself). */
int64_t plan_stage_backward_bytes(const net_t *net, const plan_config *cfg, const plan_stage *st);

/* Whether the boundary rows of node u that partition j makes in the first forward live in host
 * memory: kept for the recompute of j+1 (u is recomputed, and j+1 is not the last partition that
 * stores instead of recomputing) under --offload boundary. */
static inline bool plan_bnd_on_host(const plan_stage *st, int u, int j)
{
    return st->bnd_on_host && st->rerun[u] && !(st->store_last && j + 1 == st->parts - 1);
}

/* The stage a stage's backward runs (--boundaries recompute: its overl twin). */
static inline const plan_stage *plan_bwd_stage(const plan_stage *st)
{
    return st->bwd ? st->bwd : st;
}

/* Whether the first forward frees node l's boundary from partition j-1 once partition j read
 * it: always when the backward recomputes boundaries, else when no recompute reads it again. */
static inline bool plan_bnd_read_once(const plan_stage *st, int l)
{
    return st->bwd || !st->rerun[l];
}

/* Bytes of rows r of the input batch (node 0) on the device: what partition j of an offloading
 * stage copies in (st->in_rows[j]). */
int64_t plan_input_rows_bytes(const net_t *net, const plan_config *cfg, rowrange r);

/* What each op's backward reads, and the sizes of the small per-layer tensors: the facts the
 * emitter, the closed form, the plan builder and the executors share (inline: the closed form
 * asks them millions of times).
 *   conv, maxpool, batchnorm, fc, softmax_xent - backward reads their input (maxpool recomputes
 *   the argmax); relu - its output; everything else - nothing (dropout regenerates its mask
 *   from a seed). flatten is a view of its input. */
static inline bool plan_bwd_reads_input(net_op op)
{
    return op == OP_CONV || op == OP_MAXPOOL || op == OP_BATCHNORM || op == OP_FC ||
           op == OP_SOFTMAX_XENT;
}

static inline bool plan_bwd_reads_output(net_op op)
{
    return op == OP_RELU;
}

/* Whether a backward through nodes up to `end` reads node l's output (its own, or a consumer's
 * up to end that reads its input). */
static inline bool plan_bwd_reads(const net_t *net, int l, int end)
{
    if (plan_bwd_reads_output(net->nodes[l].op))
        return true;
    for (int e = net->cons_off[l]; e < net->cons_off[l + 1]; e++)
        if (net->cons_node[e] <= end && plan_bwd_reads_input(net->nodes[net->cons_node[e]].op))
            return true;
    return false;
}

/* BN statistics: (2, C) floats mean/invstd + (2, C) doubles sum/sum^2. */
static inline int64_t plan_bn_stats_bytes(const net_t *net, int node)
{
    return 24 * (int64_t)net->nodes[node].c;
}

/* BN gradient reductions: (2, C) doubles. */
static inline int64_t plan_bn_gred_bytes(const net_t *net, int node)
{
    return 16 * (int64_t)net->nodes[node].c;
}

/* The node whose tensors a node uses (flatten is a view of its input). */
static inline int plan_root(const net_t *net, int node)
{
    while (net->nodes[node].op == OP_FLATTEN)
        node = net->nodes[node].inputs[0];
    return node;
}

/* Nodes that may end a row region: cuts whose op and every op before them map rows, and a row
 * reduction (adaptive or global average pooling) right after such ops. The default region end is
 * the last such node before the first op that needs every row, or that op itself when it is a
 * row reduction at a cut (0 if none). */
int plan_default_region_end(const net_t *net);

/* The node whose rows a stage's partitions split for tile_out and overlap: the stage output, or
 * the reduction's input in a summing stage. */
int plan_split_node(const net_t *net, const plan_stage *st);

/* True for the runs of a summing stage's last layer: they add rows sum_in[j] of its input. */
static inline bool plan_sums_at(const plan_stage *st, int node)
{
    return st->sum_in && node == st->out_node;
}

#ifdef __cplusplus
}
#endif
#endif
