/* choose.h - the plan each strategy gets in lrcnn-sim's table and everywhere a strategy is named
 * (strategy_choose): column; checkpoint's segments; row, 2ps and overl's region end and N; the
 * hybrids' stage cuts and N, by the auto planner's search restricted to their kind, with their
 * single-stage strategy's choice as a candidate (2ps's for 2ps-h, overl's for overl-h). Each is the
 * best plan of its kind under the table's objective (strategy.h: the lowest peak, near-ties to
 * the least compute), unless the request fixes a choice (--region, --rows, --segments).
 * Under --offload auto (cfg->offload_auto) each offload set gets its own choice and the best by
 * strategy_offload_best (strategy.h) is the answer, its set in spec.offload.
 *
 * Deliberately not here: the pieces (strategy.h, auto.h), capacity questions (fit.h).
 */
#ifndef LR_CHOOSE_H
#define LR_CHOOSE_H

#include "strategy.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Builds the spec for a request and evaluates it in closed form. Errors name the flag
 * (--region, --rows, --segments). */
lr_status strategy_choose(const net_t *net, const plan_config *cfg, const plan_request *req,
                          plan_choice *out);

/* The single-stage strategy of a hybrid: 2ps for 2ps-h, overl for overl-h (STRAT_COUNT for any
 * other strategy). */
plan_strategy strategy_single_of(plan_strategy s);

/* 2ps and 2ps-h (single = STRAT_2PS), or overl and overl-h, as strategy_choose chooses them
 * without --rows and --region: the single-stage plan from its own search (which tries N past
 * 32, and the region through the pooling to a fixed size, where the hybrid's probes do not go),
 * the hybrid from its search, which takes that plan as a candidate and the stages it measured. */
lr_status strategy_choose_pair(const net_t *net, const plan_config *cfg, plan_strategy single,
                               plan_choice *one, plan_choice *hybrid);

/* A single-stage strategy's choice (2ps or overl) as strategy_choose makes it without --rows
 * and --region under one offload set (cfg->offload_auto false), with the stages its search
 * measured: what the search of its hybrid (2ps-h, overl-h) at the same net and config starts
 * from. A capacity search (fit.c) keeps those of the single-stage strategy's questions for the
 * hybrid's, which asks at the same sizes first. */
typedef struct {
    plan_choice one;
    strategy_stage_memo kept;
} strategy_seed;

/* strategy_choose's choice of `single` (STRAT_2PS or STRAT_OVERL) without --rows and --region,
 * into out->one, and the stages it measured (free with strategy_seed_free; nothing to free on
 * error). */
lr_status strategy_choose_seed(const net_t *net, const plan_config *cfg, plan_strategy single,
                               strategy_seed *out);

/* strategy_choose's choice of the hybrid of seed's strategy without --rows and --region, at the
 * net and config the seed was chosen at: the same plan, without the single-stage search again. */
lr_status strategy_choose_hybrid_from(const net_t *net, const plan_config *cfg,
                                      const strategy_seed *seed, plan_choice *hybrid);
void strategy_seed_free(strategy_seed *s);

#ifdef __cplusplus
}
#endif
#endif
