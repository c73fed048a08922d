/* auto_search.h - what the auto planner's files share: the search state, the stage edges the
 * probes measure, the spaces (one partitioning kind and BatchNorm mode each), probe jobs and the
 * dynamic programme's labels. Not a public interface: auto.h is.
 *
 * The files, in the order the search runs (auto.h says what it searches and why it is exact):
 *   auto_cuts.c   candidate cuts of the row region; the exact-BN lower bound on a stage's compute
 *   auto_probe.c  closed-form evaluations: the base measurements and one probe per stage and N
 *   auto_dp.c     the dynamic programme over cuts with Pareto labels
 *   auto.c        the driver: request, seeds, rounds, exact evaluation and ranking of the winners
 *
 * Legend: a, b, i index candidate cuts (cut[0] = node 0, the input; cut[m] = the region end);
 * stage (a, b] holds nodes cut[a]+1 .. cut[b]; N partitions; P persistent bytes (weights,
 * gradients, optimizer state, input batch, workspace). "extra" is compute above column, in
 * auto_work's unit (FLOPs, or nanoseconds on cfg.device with --overhead-by time).
 */
#ifndef LR_AUTO_SEARCH_H
#define LR_AUTO_SEARCH_H

#include "auto.h"
#include "checked.h"

/* ------------------------------------------------------------------ search state */

typedef struct {
    int a, b, parts;
    bool last;       /* the last stage: its last partition keeps its activations (store_last) */
    bool recompute;  /* --boundaries auto: the stage recomputes its boundaries (plan_spec.recompute) */
    int64_t local;   /* peak while it runs, above P + what earlier stages carry */
    int64_t carried; /* bytes it leaves live until its backward (output, boundaries, BN stats) */
    int64_t tail;    /* last stage: the column tail's peak above P + what earlier stages carry */
    int64_t extra;   /* compute above column */
} stage_edge;

typedef struct {
    stage_edge *v;
    int n;
} edge_list;

typedef struct {
    const net_t *net;
    plan_config cfg;
    plan_bn base_bn;     /* column's and one-partition stages' BatchNorm: frozen or exact */
    int m;
    int *cut;            /* m + 1 node ids */
    int64_t *out_bytes;  /* output bytes of cut[i]; 0 for the input, which is persistent */
    int64_t persistent, col_peak, col_work, col_flops, col_ns;
    bool by_time;        /* compute is measured as step time (cfg.device), else FLOPs */
    int64_t *lp1;        /* [i]: local of the LAST one-partition stage (cut[i], cut[i+1]] */
    int64_t *fck;        /* [i]: extra of the non-last one-partition stage (0, cut[i]] */
    /* what a probe plan is put together from (probes cost their own stage alone): per cut i,
     * the phases of the one-partition stage (0, cut[i]] before the probed one, of the last
     * one-partition stage (cut[i], cut[i+1]] after it, and of the plan (0, cut[i]]:1 whose
     * persistent and tail phases a plan ending at cut[i] shares; the stages' run bounds */
    plan_phase *head_fwd, *head_bwd, *next_fwd, *next_bwd;
    plan_phases *ends_at;
    int64_t *head_runs, *next_runs;
    bool *special;       /* (m+1) x (m+1): the whole region and resolution stages */
    int *twin;           /* (m+1) x (m+1): the first stage (a0, b0] with a0 > 0 whose nodes are
                            those of (a, b], a > 0, shifted by cut[a] - cut[a0] (auto_find_twins);
                            a0 * (m+1) + b0, the stage itself when it has no earlier twin */
    bool *ends;          /* [i]: a plan's row region may end at cut i (a resolution cut or m),
                            the rest running column-wise, as the single-stage strategies' may */
    /* exact BN lower bound (bn_bounds): per BatchNorm k, anc[k*n + x] = forward work of its
     * ancestors above node x, desc[k*n + y] = backward work of its descendants up to node y */
    int nbn;
    int *bn_node;
    int64_t *anc, *desc;
    const strategy_stage_memo *kept; /* auto_request.kept */
    /* the near-tie objective (one_kind): the lowest peak of the seed and of every plan the
     * spaces hold, as far as solved (INT64_MAX: none yet); the answer is the least compute
     * within its near-tie */
    int64_t lowest;
    bool every_n; /* auto_request.every_n */
    int n_evals;
    int model_misses;
} search;

typedef struct {
    plan_partitioning kind;
    plan_bn bn;
    edge_list edges; /* sorted by a; from[a] .. from[a+1] */
    int *from;
    /* from cut i to the end, over every completion: the least live bytes above P + carried-in,
     * and the least extra compute (INT64_MAX: none) */
    int64_t *need, *least_extra;
} space;

/* A stage measured alone (auto_probe.c's stage_alone) for one N and way, kept for its twins. */
typedef struct {
    int ready; /* set last, with release order: the rest is written */
    plan_phase fwd, bwd;
    int64_t runs;
} stage_memo;

/* One probe job: a stage (a, b] of one space, every N worth trying. */
typedef struct probe_job {
    space *sp;
    int a, b;
    bool last;           /* the plan's last stage: the region ends at b */
    bool done;           /* measured (or never worth measuring) */
    const struct probe_job *same; /* a stage without BatchNorm is the same plan in either BN
                                     mode: the stripe space reads the exact space's job */
    /* the job of the first twin stage (search.twin) of the same space and kind, whose stage
       measurements this one takes, shifted by `shift` node ids; or NULL, and then `memo` (per N
       and way, NULL when no later job is a twin) keeps its own for them */
    const struct probe_job *twin;
    int shift;
    stage_memo *memo;
    /* while its N are measured: the statistics passes' scripts of the stage (exact BatchNorm),
     * lent (plan_scripts_lent; own: those made for it) when it first measures a stage itself,
     * and lent on to each N's; else NULL */
    const plan_scripts *scripts;
    plan_scripts *own;
    stage_edge *out; /* one per N tried */
    int n;
    lr_status status;
} probe_job;

/* A partial plan ending at a cut: what its stages carry, their compute, the highest live bytes
 * so far; parent/edge lead back to the stages. */
typedef struct {
    int64_t carried, extra, peak;
    int parent, edge, depth, id;
} label;

typedef struct {
    label *pool;
    int n, cap;
    int **at; /* label ids per cut */
    int *n_at, *cap_at;
    label *tmp; /* for sorting one cut's labels */
    int cap_tmp;
} labels;

typedef struct {
    bool found;
    int64_t extra, peak; /* predicted by the stage model */
    int n_stages;
    const stage_edge *stage[PLAN_MAX_STAGES];
} dp_plan;

typedef struct {
    const search *s;
    const space *sp;
    int64_t bound;     /* every moment's live bytes <= bound */
    int64_t extra_cap; /* extra compute <= extra_cap */
} dp_query;

/* The compute measure of a plan: its step time on cfg.device (--overhead-by time) or its FLOPs.
 * Both add up over a plan's phases, which is what the stage model relies on. */
static inline int64_t auto_work(const search *s, const plan_cost *c)
{
    return s->by_time ? c->step_ns : c->flops;
}

/* ------------------------------------------------------------------ auto_cuts.c */

/* Fills s->m, s->cut and s->special for the row region ending at node region_end. */
void auto_find_cuts(search *s, int region_end);
/* Fills s->twin (after auto_find_cuts). Twins are the same plan up to node ids: a ResNet's
 * identical blocks make most of its stages twins of earlier ones. */
void auto_find_twins(search *s);
/* Fills s->nbn, s->bn_node, s->anc and s->desc (after auto_find_cuts). */
void auto_bn_bounds(search *s);
/* A lower bound on the extra compute of stage (a, b] under exact BatchNorm with N > 1. */
int64_t auto_bn_extra_bound(const search *s, int a, int b);

/* ------------------------------------------------------------------ auto_probe.c */

/* The closed form of a spec under bn, when lrcnn would build its schedule (plan_run_bound within
 * PLAN_MAX_RUNS) and can count its FLOPs; *usable is false otherwise: like the fixed strategies'
 * N searches, auto leaves such plans out. Counts s->n_evals (safe in parallel). */
lr_status auto_evaluate(search *s, plan_bn bn, const plan_spec *sp, plan_cost *c, bool *usable);
/* Fills P, column's peak and compute, lp1, fck and the pieces probe plans are put together from
 * (after auto_find_cuts and out_bytes; auto_free_pieces frees them). Errors: LR_ERR_INPUT when a
 * plan of one-partition stages cannot be counted. */
lr_status auto_measure_base(search *s);
void auto_free_pieces(search *s);
/* The jobs for the stages worth measuring, none run yet; free with auto_free_jobs. */
probe_job *auto_make_jobs(search *s, space *spaces, int n_spaces, int *n_jobs);
void auto_free_jobs(probe_job *jobs, int n_jobs);
/* Runs the jobs not done yet, in parallel; exact-BN stages whose compute bound exceeds
 * extra_limit stay undone. Errors: the first job's failure. */
lr_status auto_run_jobs(search *s, probe_job *jobs, int n_jobs, int64_t extra_limit);
/* (Re)builds sp->edges and sp->from from the jobs done so far. */
void auto_collect_edges(const search *s, space *sp, const probe_job *jobs, int n_jobs);

/* ------------------------------------------------------------------ auto_dp.c */

/* (Re)computes sp->need and sp->least_extra from sp's edges. */
void auto_completion_bounds(const search *s, space *sp);
void auto_labels_init(labels *L, int m);
void auto_labels_free(labels *L, int m);
/* The least compute with every moment at most q->bound (column included), then the lowest
 * peak among those; .found false when no plan of the space meets both bounds. */
dp_plan auto_dp_least_extra(const dp_query *q, labels *L);
/* The lowest peak within q.extra_cap (column, extra 0, is always within it) when it is below
 * `under` (INT64_MAX: none); otherwise a plan of no stages at the lower of column's peak and
 * `under`. */
dp_plan auto_dp_lowest_peak(dp_query q, labels *L, int64_t under);

#endif
