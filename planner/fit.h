/* fit.h - capacity answers: for a strategy (or auto), the largest batch whose closed-form peak
 * fits a memory budget, and the largest square input H x H that fits at batch 1.
 *
 * Definitions (exact with respect to the planner, tests/test_auto.c):
 *   fits(b, H)   the plan the strategy itself chooses at batch b and input H x H (its N search,
 *                checkpoint segments, hybrid coordinate descent; auto: a plan within its compute
 *                cap, i.e. its lowest peak within the cap) has a closed-form peak <= budget
 *   max_batch    fits(max_batch, H0) and not fits(max_batch + 1, H0), H0 the net's input;
 *                0 when batch 1 does not fit; FIT_MAX_BATCH at most
 *   max_square_input  fits(1, H) and not fits(1, H + step), where H runs over the sizes the
 *                net accepts: min_square_input + k * step (step 1 for the zoo but tiny-mix, whose
 *                concat needs even sizes); 0 when the smallest does not fit
 * A batch or input whose byte or FLOP counts the planner cannot form (a layer's count beyond
 * int64, cost_check_layers; a plan's peak or FLOP sum overflowing) does not fit: the answer stops
 * there, flagged batch_at_limit / input_at_limit (a lower bound on what fits). Budgets are
 * below 1 PiB, where the byte counts alone would reach it.
 *
 * Search: for x the batch (or the index of an input size), rounds of
 *   1. a search with one fixed plan, closed-form evaluations only: the plan's peak is close to
 *      a + c * x (batch) or a + c * x^2 (input), so interpolation through the last two points
 *      finds its boundary g in a few steps (doubling and bisection as fallbacks);
 *   2. the strategy's own choice confirms it: fits(g) (for strategies that take the lowest peak
 *      over a set of plans that does not depend on x, the fixed plan fitting already proves it:
 *      column, row/2ps/overl with --rows, and checkpoint for the batch), then fits(g + 1); a
 *      choice that moves a bound becomes the next round's plan. When the choice at g fits but
 *      is another plan than the one searched with, the next round searches with it at once
 *      (its boundary is at g or past it) instead of asking at g + 1 first; except, for the
 *      input, when it is another N of the same single-stage plan and fits within the near-tie
 *      of the budget (there the choice flips between near-tied N from size to size: resnet101
 *      2ps on an 80 GB card asked 14 times, 10 with g + 1 first).
 * In the input question a single-stage row, 2ps or overl plan whose N the strategy chose is
 * searched with N scaled with the input size once two choices at least 5% apart showed N in
 * proportion to the size (overl at high resolution keeps its stripe height: with N fixed each
 * round found the next boundary one stripe further, 17 choices for resnet18 on an 80 GB card,
 * 7 scaled). The first plan is the strategy's at the user's batch. The answer assumes fits() is
 * monotone (the search's bounds are all measured, so the boundary property holds either way);
 * after six rounds without convergence a bisection on the strategy's own choice finishes it.
 * Where fits() is not monotone (a row strategy's peak moves up and down with the rows each
 * partition gets), the answer is one measured boundary, which the path of the search decides. The choices
 * dominate the time: 1 to 8 per question on resnet101, each a full N search for row, 2ps and
 * overl.
 *
 * --offload auto: fits(b, H) when the strategy's choice under some offload set fits (the device
 * budget and --host-memory); the plan there is the one of least host-device copying among those
 * that fit (strategy_offload_fitting), so none whenever it fits; its set is reported.
 *
 * Deliberately not here: choosing plans (strategy.c, auto.c), printing (reports/summary.c).
 */
#ifndef LR_FIT_H
#define LR_FIT_H

#include "auto.h"
#include "device.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FIT_MAX_BATCH (1 << 30)
#define FIT_MAX_INPUT (1 << 24)
#define FIT_MAX_BUDGET_BYTES ((int64_t)1 << 50)
/* --reserve default: what a training process holds outside the planned tensors. The CUDA
 * context with cuDNN and cuBLAS loaded takes 0.5-0.9 GiB on recent drivers (lazy module
 * loading; more with eager loading), and a caching allocator keeps freed blocks it cannot
 * reuse for the next size; 1 GiB covers the context on every card of device_table (device.h). */
#define FIT_DEFAULT_RESERVE_BYTES ((int64_t)1 << 30)

typedef struct {
    plan_strategy strategy; /* STRAT_COUNT: auto */
    plan_request req;       /* fixed strategies: rows, region, segments as the user gave them */
    auto_request areq;      /* auto: its compute cap and region (its budget is the fit's) */
    plan_spec hint;         /* a plan to start from (e.g. the strategy's at the user's batch) */
    plan_bn hint_bn;
    bool has_hint;
    int64_t host_budget_bytes; /* --offload: host memory a plan may keep to fit (0: no limit) */
} fit_target;

typedef struct {
    int64_t budget_bytes;
    int max_batch;        /* 0: batch 1 does not fit */
    bool batch_at_limit;  /* FIT_MAX_BATCH, or the largest batch the planner can count, fits */
    int max_square_input; /* 0: the smallest input does not fit at batch 1 */
    int min_square_input; /* the smallest H x H the net accepts (0: none up to its own size) */
    int input_step;
    bool input_at_limit;  /* FIT_MAX_INPUT, or the largest input the planner can count, fits */
    /* --offload: host memory the chosen plan keeps at max_batch and at max_square_input (the
     * input batch, boundary rows kept for backward; 0 without offload) */
    int64_t host_bytes_at_max_batch, host_bytes_at_max_input;
    /* --offload: the set of the plan chosen there (under --offload auto the least copying set
     * whose plan fits) */
    unsigned offload_at_max_batch, offload_at_max_input;
    int n_evals;          /* closed-form evaluations of a fixed plan */
    int n_choices;        /* times the strategy chose its plan */
} fit_result;

/* Answers both questions for one target within budget_bytes (> 0, < FIT_MAX_BUDGET_BYTES). cfg's
 * batch is the starting point; the net is not modified. fit_run_all with n = 1. */
lr_status fit_run(const net_t *net, const plan_config *cfg, const fit_target *t,
                  int64_t budget_bytes, fit_result *out);

/* What fit_run_all tells its progress function. */
typedef enum {
    FIT_CHOOSING, /* the strategy is about to choose its plan at `at` */
    FIT_CHOSE,    /* it chose: spec, peak, fits, seconds */
    FIT_MEASURED, /* a fixed plan's closed form at `at` (the boundary search's rounds) */
    FIT_ANSWERED  /* the question is answered (at = 0) */
} fit_event;

/* What fit_run_all is doing, for a progress line or a trace: the questions (a target's largest
 * batch, its largest input) answered so far of all 2n, and the one that just measured (or was
 * just answered, at = 0): target t[target], at batch `at` or at input `at` x `at`. A hybrid's seed
 * asked on the side (fit_run_all) is told too, with shown false, target past n and `strategy`
 * naming it; its answer does not count in done. */
typedef struct {
    int done, total;
    int target;
    bool shown;
    plan_strategy strategy; /* STRAT_COUNT: auto */
    bool batch;
    int64_t at;
    fit_event event;
    /* FIT_CHOSE and FIT_MEASURED: the plan (NULL: none was formed, peak INT64_MAX), its
     * closed-form peak, whether it fits, and the seconds the choice or the evaluation took */
    const plan_spec *spec;
    plan_bn bn;
    int64_t peak;
    bool fits;
    double seconds;
} fit_progress_info;

/* Told at each plan choice (before and after), each fixed-plan evaluation and each answer, one
 * call at a time, from the thread working. */
typedef void (*fit_progress)(void *ctx, const fit_progress_info *p);

/* fit_run for n targets, in parallel (OpenMP) when available; out[k] answers t[k]. progress
 * (NULL: none) is told as the questions go. A hybrid without --rows (2ps-h, overl-h) starts its
 * input question from its single-stage strategy's answer (2ps, overl), asking that question on
 * the side when t does not, so its answers do not depend on what else is asked. */
lr_status fit_run_all(const net_t *net, const plan_config *cfg, const fit_target *t, int n,
                      int64_t budget_bytes, fit_result *out, fit_progress progress, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
