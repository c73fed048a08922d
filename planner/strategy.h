/* strategy.h - turning a strategy name and the user's options into a concrete plan spec:
 * the row region, checkpoint segments, hybrid stage cuts and the number of partitions.
 *
 * Defaults (each a visible choice with its reason):
 *   region      every op up to the first one that needs every row (plan_default_region_end)
 *   checkpoint  Chen et al.'s greedy (a segment ends at the first cut after its activation bytes
 *               pass a budget total/K), K = 1..64 tried, the lowest closed-form peak kept (it
 *               lands near sqrt(L) segments); --segments K: K segments of equal activation bytes
 *   row/2ps/overl  N in 2..32 with the lowest closed-form peak (ties: the smaller N, less work)
 *               among the N whose schedule lrcnn builds (PLAN_MAX_RUNS; both searches skip the rest)
 *   hybrids     a stage per resolution: cut where the feature map shrinks (at the downsampling
 *               op when it is a cut, e.g. VGG's pools, else at the last cut before it, e.g. the
 *               end of a ResNet layer group); each stage's N chosen by coordinate descent on the
 *               closed-form peak over {1, 2, 3, 4, 6, 8, 12, 16, 24, 32}. With --rows N the first
 *               stage gets N and deeper ones N scaled by their input height (fewer rows deeper).
 * Deliberately not here: auto planning under a budget (auto.c), the schedule itself (emit.c).
 */
#ifndef LR_STRATEGY_H
#define LR_STRATEGY_H

#include "plan.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    plan_strategy strategy;
    int rows;       /* partitions (first stage for hybrids); 0: choose */
    int region_end; /* last node of the row region; 0: default */
    int segments;   /* checkpoint segments; 0: the lowest-peak count */
} plan_request;

typedef struct {
    plan_spec spec;
    bool rows_chosen; /* N came from the search, not from --rows */
    plan_cost cost;   /* closed form of the chosen spec */
} plan_choice;

/* Builds the spec for a request and evaluates it in closed form. Errors name the flag
 * (--region, --rows, --segments). */
lr_status strategy_choose(const net_t *net, const plan_config *cfg, const plan_request *req,
                          plan_choice *out);

/* Closed-form cost of a spec (builds and frees the plan). */
lr_status strategy_evaluate(const net_t *net, const plan_config *cfg, const plan_spec *spec,
                            plan_cost *out);

/* The closed form of a spec when lrcnn would emit its schedule (plan_run_bound within
 * PLAN_MAX_RUNS) and can count its FLOPs; *usable is false otherwise, and the searches (N, auto,
 * fit) leave such plans out without paying for their closed form. Errors are plan_build's. */
lr_status strategy_evaluate_usable(const net_t *net, const plan_config *cfg, const plan_spec *spec,
                                   plan_cost *out, bool *usable);

/* The hybrid strategies' default stage cuts up to region_end; returns the number of stages. */
int strategy_resolution_cuts(const net_t *net, int region_end, int *cuts, int max_cuts);

#ifdef __cplusplus
}
#endif
#endif
