/* choose.c - a strategy name and the user's options become a plan (see choose.h).
 * Deliberately not here: the searches themselves (strategy.c, auto*.c).
 */
#include "choose.h"

#include <string.h>

#include "auto.h"

static lr_status check_request(const net_t *net, const plan_request *req, int *region_end)
{
    if (req->rows < 0 || req->rows > 1 << 20)
        return lr_fail(LR_ERR_USAGE, "--rows: expected a number of partitions in [1, 1048576]");
    if (req->segments < 0 || req->segments > PLAN_MAX_STAGES)
        return lr_fail(LR_ERR_USAGE, "--segments: expected 1 to %d", PLAN_MAX_STAGES);
    *region_end = req->region_end > 0 ? req->region_end : plan_default_region_end(net);
    if (*region_end >= net->n_nodes)
        return lr_fail(LR_ERR_USAGE, "--region: no such layer");
    return LR_OK;
}

static plan_partitioning kind_of(plan_strategy s)
{
    return s == STRAT_ROW                        ? PART_TILE_OUT
           : s == STRAT_2PS || s == STRAT_2PS_H ? PART_TILE_IN
                                                 : PART_OVERLAP;
}

/* The auto planner's search restricted to `kind`: its best plan (the hybrid's). */
static lr_status search_kind(const net_t *net, const plan_config *cfg, int region_end,
                             plan_partitioning kind, const strategy_stage_memo *kept,
                             const plan_spec *seed, auto_result *r)
{
    auto_request areq = {.region_end = region_end, .one_kind = true, .kind = kind, .kept = kept,
                         .seed = seed};
    return auto_search(net, cfg, &areq, r);
}

/* More than one place where the row region may end up to `end` (the search's choice then). */
static bool ends_to_choose(const net_t *net, int end)
{
    int ends[PLAN_MAX_STAGES];
    return strategy_resolution_cuts(net, end, ends, PLAN_MAX_STAGES) > 1;
}

static void take(const net_t *net, const auto_candidate *c, plan_strategy named, int end,
                 plan_choice *out)
{
    memset(out, 0, sizeof *out);
    out->spec = c->spec;
    out->spec.strategy = named;
    out->spec.kind = kind_of(named);
    out->cost = c->cost;
    out->rows_chosen = true;
    out->region_chosen = ends_to_choose(net, end);
}

/* A hybrid: with --rows, a stage per resolution and N scaled down with depth; without, the
 * auto planner's search over stage cuts and N restricted to the strategy's kind. */
/* --boundaries auto with the partitions fixed (--rows): the stage where the peak is recomputes
 * its boundaries while that wins by the table's objective, one stage at a time. */
static lr_status peak_stage_recomputes(const net_t *net, const plan_config *cfg, plan_spec *sp,
                                       plan_cost *cost)
{
    for (;;) {
        int at = cost->peak_stage;
        if (at < 0 || plan_spec_recomputes(sp, at) || sp->parts[at] < 2 || sp->kind == PART_OVERLAP)
            return LR_OK;
        plan_spec trial = *sp;
        trial.recompute |= (uint64_t)1 << at;
        plan_cost c;
        LR_TRY(strategy_evaluate(net, cfg, &trial, &c));
        strategy_pick pick;
        strategy_pick_init(&pick);
        strategy_pick_offer(&pick, sp, cost);
        strategy_pick_offer(&pick, &trial, &c);
        bool better = strategy_pick_best(&pick) == 1;
        strategy_pick_free(&pick);
        if (!better)
            return LR_OK;
        *sp = trial, *cost = c;
    }
}

plan_strategy strategy_single_of(plan_strategy s)
{
    return s == STRAT_2PS_H ? STRAT_2PS : s == STRAT_OVERL_H ? STRAT_OVERL : STRAT_COUNT;
}

/* The single-stage choice of `single` (2ps, overl) with its region up to `end` chosen, and the
 * stages its search measured (kept also on error: strategy_seed_free). */
static lr_status seed_at(const net_t *net, const plan_config *cfg, plan_strategy single, int end,
                         strategy_seed *out)
{
    memset(out, 0, sizeof *out);
    lr_status st = strategy_single_stage_kept(net, cfg, kind_of(single), end, &out->one,
                                              &out->kept);
    out->one.spec.strategy = single;
    return st;
}

/* The hybrid search of hybrid_pair from the single-stage choice `one` and the stages its search
 * measured. */
static lr_status hybrid_from(const net_t *net, const plan_config *cfg, plan_strategy h,
                             int region_end, int end, const plan_choice *one,
                             const strategy_stage_memo *kept, plan_choice *hybrid)
{
    plan_partitioning kind = kind_of(h);
    auto_result r;
    lr_status st = search_kind(net, cfg, region_end, kind, kept, &one->spec, &r);
    if (st != LR_OK)
        st = search_kind(net, cfg, region_end, kind, NULL, &one->spec, &r);
    if (st == LR_OK)
        take(net, &r.best, h, end, hybrid);
    return st;
}

/* A hybrid h without --rows, its region ending at `end` (region_end: --region, or 0): its
 * single-stage strategy's choice `one`, then the auto planner's search over stage cuts and N
 * restricted to h's kind, which takes the stages that search measured (when the search with them
 * fails or has no single-stage plan: what it gives on its own) and `one` as a candidate: a
 * hybrid's plans include it, and its search goes past N = 32 where the probes stop (resnet101 at
 * 28000x28000, batch 1: 2ps-h 66.4 GiB with it, 85.2 GiB without). */
static lr_status hybrid_pair(const net_t *net, const plan_config *cfg, plan_strategy h,
                             int region_end, int end, plan_choice *one, plan_choice *hybrid)
{
    strategy_seed seed;
    lr_status st = seed_at(net, cfg, strategy_single_of(h), end, &seed);
    *one = seed.one;
    if (st == LR_OK)
        st = hybrid_from(net, cfg, h, region_end, end, one, &seed.kept, hybrid);
    strategy_seed_free(&seed);
    return st;
}

static lr_status choose_hybrid(const net_t *net, const plan_config *cfg, const plan_request *req,
                               int end, plan_choice *out)
{
    plan_spec *sp = &out->spec;
    sp->kind = kind_of(req->strategy);
    if (req->rows) {
        sp->n_stages = strategy_resolution_cuts(net, end, sp->cut, PLAN_MAX_STAGES);
        strategy_scaled_rows(net, sp, req->rows);
        LR_TRY(strategy_evaluate(net, cfg, sp, &out->cost));
        return cfg->boundaries_auto ? peak_stage_recomputes(net, cfg, sp, &out->cost) : LR_OK;
    }
    plan_choice one;
    return hybrid_pair(net, cfg, req->strategy, req->region_end, end, &one, out);
}

static lr_status pair_fixed(const net_t *net, const plan_config *cfg, plan_strategy single,
                            plan_choice *one, plan_choice *hybrid)
{
    LR_ASSERT(single == STRAT_2PS || single == STRAT_OVERL);
    plan_strategy h = single == STRAT_2PS ? STRAT_2PS_H : STRAT_OVERL_H;
    plan_request req = {.strategy = single};
    int end = plan_default_region_end(net);
    if (end == 0) {
        LR_TRY(strategy_choose(net, cfg, &req, one)); /* column, as strategy_choose gives it */
        req.strategy = h;
        return strategy_choose(net, cfg, &req, hybrid);
    }
    return hybrid_pair(net, cfg, h, 0, end, one, hybrid);
}

/* plan_build clamps N to the rows available: the spec reports what was planned. */
static lr_status report_clamped(const net_t *net, const plan_config *cfg, plan_spec *sp)
{
    plan_t *plan;
    LR_TRY(plan_build(net, cfg, sp, &plan));
    memcpy(sp->parts, plan->spec.parts, sizeof sp->parts);
    sp->recompute = plan->spec.recompute;
    plan_free(plan);
    return LR_OK;
}

static lr_status choose_fixed(const net_t *net, const plan_config *cfg, const plan_request *req,
                             plan_choice *out)
{
    int end = 0;
    LR_TRY(check_request(net, req, &end));
    memset(out, 0, sizeof *out);
    plan_spec *sp = &out->spec;
    sp->strategy = req->strategy;
    if (req->strategy >= STRAT_COUNT)
        return lr_fail(LR_ERR_USAGE, "--strategy: unknown strategy");
    if (req->strategy == STRAT_COLUMN || end == 0) {
        /* column, or no op maps rows: every strategy degenerates to column training */
        sp->n_stages = 0;
        return strategy_evaluate(net, cfg, sp, &out->cost);
    }
    switch (req->strategy) {
    case STRAT_CHECKPOINT:
        return strategy_checkpoint(net, cfg, end, req->segments, sp, &out->cost);
    case STRAT_ROW:
    case STRAT_2PS:
    case STRAT_OVERL:
        LR_TRY(strategy_single_stage(net, cfg, kind_of(req->strategy), end, req->region_end > 0,
                                     req->rows, out));
        sp->strategy = req->strategy;
        return req->rows ? report_clamped(net, cfg, sp) : LR_OK;
    default:
        LR_TRY(choose_hybrid(net, cfg, req, end, out));
        return req->rows ? report_clamped(net, cfg, sp) : LR_OK;
    }
}

/* ------------------------------------------------------------------ --offload auto */

/* cfg under offload set `set` (the searches see one fixed set). */
static plan_config under_set(const plan_config *cfg, unsigned set)
{
    plan_config one = *cfg;
    one.offload_auto = false;
    one.offload = set;
    return one;
}

/* The best of by_set (a choice per set where `tried`) by strategy_offload_best, its set in the
 * spec. */
static void take_best_set(const plan_choice *by_set, const bool *tried, plan_choice *out)
{
    plan_cost c[STRATEGY_OFFLOAD_SETS];
    for (int k = 0; k < STRATEGY_OFFLOAD_SETS; k++)
        c[k] = by_set[k].cost;
    int best = strategy_offload_best(c, tried);
    *out = by_set[best];
    out->spec.offload = (unsigned)best;
}

lr_status strategy_choose(const net_t *net, const plan_config *cfg, const plan_request *req,
                          plan_choice *out)
{
    if (!cfg->offload_auto)
        return choose_fixed(net, cfg, req, out);
    plan_choice by_set[STRATEGY_OFFLOAD_SETS];
    bool tried[STRATEGY_OFFLOAD_SETS];
    memset(by_set, 0, sizeof by_set);
    for (unsigned set = 0; set < STRATEGY_OFFLOAD_SETS; set++) {
        plan_config one = under_set(cfg, set);
        tried[set] = strategy_offload_matters(req->strategy, set);
        if (tried[set])
            LR_TRY(choose_fixed(net, &one, req, &by_set[set]));
    }
    take_best_set(by_set, tried, out);
    return LR_OK;
}

lr_status strategy_choose_pair(const net_t *net, const plan_config *cfg, plan_strategy single,
                               plan_choice *one, plan_choice *hybrid)
{
    if (!cfg->offload_auto)
        return pair_fixed(net, cfg, single, one, hybrid);
    plan_choice ones[STRATEGY_OFFLOAD_SETS], hybrids[STRATEGY_OFFLOAD_SETS];
    bool tried[STRATEGY_OFFLOAD_SETS];
    memset(ones, 0, sizeof ones);
    memset(hybrids, 0, sizeof hybrids);
    for (unsigned set = 0; set < STRATEGY_OFFLOAD_SETS; set++) {
        plan_config c = under_set(cfg, set);
        tried[set] = strategy_offload_matters(single, set);
        if (tried[set])
            LR_TRY(pair_fixed(net, &c, single, &ones[set], &hybrids[set]));
    }
    take_best_set(ones, tried, one);
    take_best_set(hybrids, tried, hybrid);
    return LR_OK;
}

lr_status strategy_choose_seed(const net_t *net, const plan_config *cfg, plan_strategy single,
                               strategy_seed *out)
{
    LR_ASSERT(!cfg->offload_auto && (single == STRAT_2PS || single == STRAT_OVERL));
    memset(out, 0, sizeof *out);
    int end = plan_default_region_end(net);
    if (end == 0) { /* column, as strategy_choose gives it; nothing measured */
        plan_request req = {.strategy = single};
        return strategy_choose(net, cfg, &req, &out->one);
    }
    lr_status st = seed_at(net, cfg, single, end, out);
    if (st != LR_OK)
        strategy_seed_free(out);
    return st;
}

lr_status strategy_choose_hybrid_from(const net_t *net, const plan_config *cfg,
                                      const strategy_seed *seed, plan_choice *hybrid)
{
    LR_ASSERT(!cfg->offload_auto);
    plan_strategy h = seed->one.spec.strategy == STRAT_2PS ? STRAT_2PS_H : STRAT_OVERL_H;
    int end = plan_default_region_end(net);
    memset(hybrid, 0, sizeof *hybrid);
    if (end == 0) {
        plan_request req = {.strategy = h};
        return strategy_choose(net, cfg, &req, hybrid);
    }
    return hybrid_from(net, cfg, h, 0, end, &seed->one, &seed->kept, hybrid);
}

void strategy_seed_free(strategy_seed *s)
{
    strategy_stage_memo_free(&s->kept);
}
