/* auto.h - `--strategy auto`: the plan (partitioning kind, stage cuts, partitions per stage and,
 * when the user allows it, the BatchNorm mode) with
 *   - the lowest closed-form peak whose compute stays within max_overhead x column, or
 *   - the least compute whose peak fits budget_bytes (and, if also given, the compute cap);
 *     when no plan fits, the lowest peak within the cap, flagged as not fitting.
 * Neither given: max_overhead = AUTO_DEFAULT_OVERHEAD (1.5: room for about one recomputed
 * forward pass and some halo or statistics work on top of column training).
 *
 * The search space: plans whose stages end at candidate cuts of the row region (the rowdep cuts
 * up to --region or plan_default_region_end, except a cut whose only reader is a relu or dropout,
 * since cutting one op later keeps the same rows; plus the hybrids' resolution cuts; at most
 * CUTS_MAX, auto_cuts.c), a stage spanning at most SPAN_MAX of them, each stage with N in
 * {1, 2, 3, 4, 6, 8, 12, 16, 24, 32} (capped at the rows it splits), one partitioning kind (row,
 * 2ps, overl) for the partitioned stages, BatchNorm exact (or exact and stripe under --bn stripe;
 * under --bn frozen every plan trains frozen, which costs no statistics passes).
 * Column (no stage) and checkpointing (every stage N = 1) are plans of the space; so are row, 2ps
 * and overl (the whole region, every N in 2..32) and 2ps-h and overl-h (resolution stages, every
 * N of their list), and the checkpoint strategy's own segments are evaluated as well. So auto is
 * never worse than a fixed strategy under the same constraint (tests/test_auto.c holds it to it).
 *
 * How (auto.c and the files auto_search.h lists): the closed-form peak is additive over stages.
 * While stage s runs, live bytes are
 *   persistent + carried(stages before s) + local(s)
 * and the column tail sees persistent + carried(stages before the last) + tail(last stage);
 * compute is column + extra(s) summed over stages. local, carried, tail and extra of a stage
 * depend only on its cuts, N, kind, BN mode and whether it is the last one, so each is measured
 * once with the closed form on a probe plan (the stage between one-partition stages; the tail
 * from the probe's tail phases even where the stage before sets its peak). A dynamic programme
 * over the cuts with Pareto labels (carried, extra) then finds the least compute under a peak
 * bound; bisection on the bound gives the lowest peak under a compute cap. The model is exact:
 * the chosen plans are evaluated with the closed form again and auto_result counts any
 * disagreement (model_misses, 0 on the zoo), and the answer is always the closed form's.
 *
 * Exact BN costs a statistics pass per BatchNorm per partitioned stage (compute quadratic in the
 * BatchNorms of a stage): a lower bound on that compute skips stages that cannot meet the cap (or,
 * under a budget, beat the cheapest plan found so far, raising the bound in rounds), which keeps
 * the search fast on ResNets and is why it settles on stages of one or two blocks there.
 * Larger N for a stage stop once two in a row do not lower its own peak (not for the whole
 * region and resolution stages, whose N lists are complete). Probes run in parallel (OpenMP).
 *
 * --offload auto (cfg->offload_auto): the search runs once per offload set (strategy.h); under a
 * budget the answer is the least compute among the sets' plans that fit (within 1%: tied, and
 * the least host-device copying of those wins, so a plan offloads only to fit or to save
 * compute), when none fits the lowest peak; without one the
 * table's objective over the sets' answers that meet the compute cap (the lowest peak, near-ties
 * to the least copying). The set is in best.spec.offload (and the runners-up's, from its search).
 *
 * Deliberately not here: the largest batch or input that fits (fit.h), printing (reports/).
 */
#ifndef LR_AUTO_H
#define LR_AUTO_H

#include "strategy.h"

#ifdef __cplusplus
extern "C" {
#endif

#define AUTO_DEFAULT_OVERHEAD 1.5
#define AUTO_MAX_ALT 6

typedef struct {
    double max_overhead;  /* flops <= max_overhead x column flops (>= 1); 0: no compute cap,
                             or AUTO_DEFAULT_OVERHEAD when budget_bytes is 0 too */
    int64_t budget_bytes; /* closed-form peak <= budget_bytes; 0: no memory budget */
    int region_end;       /* last node of the row region; 0: plan_default_region_end */
    bool by_time;         /* compute = predicted step time on cfg->device (--overhead-by time),
                             else FLOPs; the cap and the least-compute objective both use it */
    /* a hybrid strategy's own plan (choose.c): partitioned stages of `kind` only, BatchNorm as
     * cfg->bn says, no column or checkpoint seed, no compute cap or budget, and the table's
     * objective (strategy.h: the lowest peak, near-ties to the least compute) */
    bool one_kind;
    plan_partitioning kind;
    /* one_kind: the stages (0, end]:N its single-stage strategy's search measured on the same net
     * and config (strategy_single_stage_kept), taken instead of measuring them again; or NULL */
    const strategy_stage_memo *kept;
    /* one_kind: its single-stage strategy's choice on the same net and config
     * (strategy_single_stage), a candidate too: that search's N goes past 32, where the probes
     * stop, so at high resolution a hybrid is never worse than its single-stage strategy; or
     * NULL */
    const plan_spec *seed;
    /* one_kind: probe every N of the stages that try them all, also those whose floor
     * (strategy_stage_floor) is past the near-tie of the lowest peak found, which the search
     * otherwise leaves out (the answer is the same: tests/test_plan.c compares) */
    bool every_n;
} auto_request;

typedef struct {
    plan_spec spec;
    plan_bn bn;         /* BatchNorm mode the plan runs (and is evaluated) under */
    plan_cost cost;     /* closed form */
    double flops_ratio; /* FLOPs relative to column */
    double time_ratio;  /* step time relative to column (0 without cfg->device) */
    bool approximate;   /* stripe BatchNorm inside a partitioned stage */
    bool fits;          /* meets every constraint of the request */
} auto_candidate;

typedef struct {
    auto_candidate best;
    /* runners-up, in the order of the objective: the best plan of each other partitioning kind
     * and BN mode, column and checkpointing (distinct plans only) */
    int n_alt;
    auto_candidate alt[AUTO_MAX_ALT];
    bool minimise_peak;   /* objective: true = peak under a compute cap, false = compute */
    double max_overhead;  /* the compute cap applied (0: none) */
    int64_t budget_bytes; /* the memory budget applied (0: none) */
    int64_t column_peak, column_flops, column_ns;
    bool by_time;         /* compute measured as step time (auto_request.by_time) */
    /* !best.fits (no plan meets the budget): best is the lowest peak within the compute cap,
     * over_bytes = its peak - budget_bytes */
    int64_t over_bytes;
    int n_evals;          /* closed-form evaluations made by the search */
    /* plans whose closed-form peak or compute differed from the stage model's prediction:
     * 0 unless stages interact in a way the model misses (the answer is the closed form's
     * either way; tests/test_auto.c holds the zoo to 0) */
    int model_misses;
} auto_result;

/* Runs the search for cfg (batch, dtype, optimizer, workspace; cfg->bn == BN_STRIPE allows
 * stripe BatchNorm, BN_EXACT does not). Errors: LR_ERR_USAGE naming --max-overhead, --budget or
 * --region; LR_ERR_INPUT for byte counts that overflow. A request nothing meets is not an error:
 * out->best.fits is false. */
lr_status auto_search(const net_t *net, const plan_config *cfg, const auto_request *req,
                      auto_result *out);

/* A copy of net from node `from` on, node `from`'s output becoming the input (`from` must be a
 * cut, rowdep_cuts; 0 copies the whole net, e.g. to reshape it). The caller frees *out with
 * net_free(). */
lr_status auto_subnet(const net_t *net, int from, net_t **out);

/* "column" (no stage), "checkpoint" (every stage one partition), else "row", "2ps" or "overl". */
const char *auto_kind_name(const plan_spec *spec);

#ifdef __cplusplus
}
#endif
#endif
