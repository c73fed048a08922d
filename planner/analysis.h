/* analysis.h - what `lrcnn-sim` computes for one configuration: for every requested strategy,
 * the chosen plan, its closed-form cost, and the replay of its schedule (exact model, plus the
 * selected allocator model).
 *
 * Deliberately not here: printing (reports/summary.c), plots and graphs (reports/).
 */
#ifndef LR_ANALYSIS_H
#define LR_ANALYSIS_H

#include "sim.h"
#include "choose.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    plan_strategy strategy;
    plan_choice choice;   /* spec and closed-form cost */
    sim_result exact;     /* replay under the exact model: equals the closed form */
    sim_result modelled;  /* replay under the selected allocator model */
    int n_steps;
    bool approximate;     /* stripe BatchNorm inside a partitioned stage */
    bool overlapped;      /* with a device, when the plan copies between host and device: */
    device_overlap overlap; /* the step with its copies on a stream of their own */
} analysis_entry;

typedef struct {
    const net_t *net;
    plan_config cfg;
    plan_request req;     /* rows, region, segments as the user gave them */
    sim_allocator allocator;
    int n;
    analysis_entry e[STRAT_COUNT];
    int64_t column_peak, column_flops; /* the reference for ratios (always computed) */
    int64_t column_ns;                 /* column's step time on cfg.device (0 without one) */
} analysis_t;

/* Plans, emits and replays every strategy in `which` (a bit per plan_strategy). */
lr_status analysis_run(const net_t *net, const plan_config *cfg, const plan_request *req,
                       unsigned which, sim_allocator allocator, analysis_t *out);

/* Builds and emits the schedule of an entry (for timelines, traces, graphs). The caller frees
 * *plan with plan_free() and s with sched_free(). */
lr_status analysis_schedule(const analysis_t *a, const analysis_entry *e, plan_t **plan,
                            sched_t *s);

/* Emits the plan's schedule (plan_check_emit's errors) straight into its replays under the exact
 * model and under a->allocator (once when that is exact), without keeping its steps, into
 * e->exact and e->modelled, and sets e->n_steps. With a device, when the step copies between
 * host and device, emits it once more, kept, for its two-stream timeline (e->overlap). */
lr_status analysis_replay(const analysis_t *a, const plan_t *plan, analysis_entry *e);


#ifdef __cplusplus
}
#endif
#endif
