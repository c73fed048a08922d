/* strategy.c - strategy name + options -> plan spec (see strategy.h for the defaults). */
#include "strategy.h"

#include <math.h>
#include <string.h>

static const int hybrid_candidates[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32};
#define N_CANDIDATES (int)(sizeof hybrid_candidates / sizeof hybrid_candidates[0])

lr_status strategy_evaluate(const net_t *net, const plan_config *cfg, const plan_spec *spec,
                            plan_cost *out)
{
    plan_t *plan;
    LR_TRY(plan_build(net, cfg, spec, &plan));
    plan_closed_form(plan, out);
    plan_free(plan);
    if (out->flops == INT64_MAX)
        return lr_fail(LR_ERR_INPUT, "%s: the %s plan's FLOP count overflows 64 bits at batch %d: "
                                     "use a smaller batch or input, or --bn stripe",
                       net->name, plan_strategy_name(spec->strategy), cfg->batch);
    return LR_OK;
}

static bool *cut_table(const net_t *net)
{
    bool *cut = malloc((size_t)net->n_nodes);
    LR_ASSERT(cut != NULL);
    rowdep_cuts(net, cut);
    return cut;
}

int strategy_resolution_cuts(const net_t *net, int region_end, int *cuts, int max_cuts)
{
    bool *cut = cut_table(net);
    int n = 0, last_cut = 0;
    for (int l = 1; l <= region_end && n < max_cuts - 1; l++) {
        const net_node *x = &net->nodes[net->nodes[l].inputs[0]];
        bool shrinks = net->nodes[l].h < x->h;
        if (shrinks) {
            int at = cut[l] ? l : last_cut; /* keep the smaller map when the downsampler is a cut */
            if (at > 0 && (n == 0 || at > cuts[n - 1]))
                cuts[n++] = at;
        }
        if (cut[l])
            last_cut = l;
    }
    if (n == 0 || cuts[n - 1] != region_end)
        cuts[n++] = region_end;
    free(cut);
    return n;
}

/* Chen et al.'s greedy: a segment ends at the first cut after the activation bytes since the
 * last boundary pass `budget`. */
static int greedy_cuts(const net_t *net, const bool *cut, int region_end, double budget, int *cuts)
{
    int n = 0;
    double acc = 0;
    for (int l = 1; l < region_end && n < PLAN_MAX_STAGES - 1; l++) {
        acc += (double)net->nodes[l].c * net->nodes[l].h * net->nodes[l].w;
        if (cut[l] && acc > budget) {
            cuts[n++] = l;
            acc = 0;
        }
    }
    cuts[n++] = region_end;
    return n;
}

/* --segments K: K segments of about equal activation bytes (the first cut at or after each
 * K-th share), so that exactly K come out when the region has enough cuts. */
static int share_cuts(const net_t *net, const bool *cut, int region_end, double total, int k,
                      int *cuts)
{
    int n = 0;
    double acc = 0;
    for (int l = 1; l < region_end && n < k - 1; l++) {
        acc += (double)net->nodes[l].c * net->nodes[l].h * net->nodes[l].w;
        if (cut[l] && acc >= total * (n + 1) / k)
            cuts[n++] = l;
    }
    cuts[n++] = region_end;
    return n;
}

/* Checkpoint segments: with --segments K, K equal shares; without, Chen et al.'s greedy with
 * budget total/K for K = 1..64, keeping the cuts with the lowest closed-form peak. */
static lr_status checkpoint_spec(const net_t *net, const plan_config *cfg, int region_end,
                                 int segments, plan_spec *sp, plan_cost *best)
{
    bool *cut = cut_table(net);
    double total = 0;
    int available = 1;
    for (int l = 1; l <= region_end; l++) {
        total += (double)net->nodes[l].c * net->nodes[l].h * net->nodes[l].w;
        available += l < region_end && cut[l];
    }
    if (segments > available) {
        free(cut);
        return lr_fail(LR_ERR_USAGE, "--segments %d: %s has %d places to cut its row region, so at most %d segments",
                       segments, net->name, available - 1, available);
    }
    int lo = segments ? segments : 1, hi = segments ? segments : 64;
    plan_spec trial = *sp;
    bool found = false;
    lr_status s = LR_OK;
    for (int k = lo; k <= hi && s == LR_OK; k++) {
        trial.n_stages = segments ? share_cuts(net, cut, region_end, total, k, trial.cut)
                                  : greedy_cuts(net, cut, region_end, total / k, trial.cut);
        for (int i = 0; i < trial.n_stages; i++)
            trial.parts[i] = 1;
        plan_cost c;
        s = strategy_evaluate(net, cfg, &trial, &c);
        if (s == LR_OK && (!found || c.peak_bytes < best->peak_bytes)) {
            *best = c;
            *sp = trial;
            found = true;
        }
    }
    free(cut);
    return s;
}

lr_status strategy_evaluate_usable(const net_t *net, const plan_config *cfg, const plan_spec *spec,
                                   plan_cost *out, bool *usable)
{
    plan_t *plan;
    LR_TRY(plan_build(net, cfg, spec, &plan));
    *usable = plan_run_bound(plan) <= PLAN_MAX_RUNS;
    if (*usable)
        plan_closed_form(plan, out);
    plan_free(plan);
    *usable = *usable && out->flops < INT64_MAX; /* FLOP count overflow: not a candidate */
    return LR_OK;
}

/* The N in [2, 32] with the lowest peak for a single-stage spec, among those that fit (N = 2
 * when none does: emitting it then reports why). */
static lr_status search_rows(const net_t *net, const plan_config *cfg, plan_spec *spec,
                             plan_cost *best)
{
    int best_n = 0;
    for (int n = 2; n <= 32; n++) {
        spec->parts[0] = n;
        plan_cost c;
        bool fits;
        LR_TRY(strategy_evaluate_usable(net, cfg, spec, &c, &fits));
        if (fits && (best_n == 0 || c.peak_bytes < best->peak_bytes)) {
            *best = c;
            best_n = n;
        }
    }
    spec->parts[0] = best_n ? best_n : 2;
    return best_n ? LR_OK : strategy_evaluate(net, cfg, spec, best);
}

/* Every stage's phases at every candidate N (plan_compose): ph[k] is recorded from the plan
 * whose stages all take hybrid_candidates[k], runs[k][s] its stage s's share of the run bound. */
typedef struct {
    plan_phases ph[N_CANDIDATES];
    int64_t runs[N_CANDIDATES][PLAN_MAX_STAGES];
} stage_table;

/* NULL when some plan cannot be built or its FLOP count saturates: the search then evaluates
 * whole plans, whose errors it reports as before. */
static stage_table *stage_table_build(const net_t *net, const plan_config *cfg, const plan_spec *spec)
{
    stage_table *t = malloc(sizeof *t);
    if (!t)
        return NULL;
    plan_spec all = *spec;
    for (int k = 0; k < N_CANDIDATES; k++) {
        for (int s = 0; s < spec->n_stages; s++)
            all.parts[s] = hybrid_candidates[k];
        plan_t *plan;
        if (plan_build(net, cfg, &all, &plan) != LR_OK) {
            free(t);
            return NULL;
        }
        plan_cost c;
        plan_closed_phases(plan, &c, &t->ph[k]);
        for (int s = 0; s < spec->n_stages; s++)
            t->runs[k][s] = plan_stage_run_bound(plan, s);
        plan_free(plan);
        if (c.flops == INT64_MAX) {
            free(t);
            return NULL;
        }
    }
    return t;
}

typedef struct {
    const net_t *net;
    const plan_config *cfg;
    const stage_table *table; /* NULL: whole plans */
} stage_eval;

/* strategy_evaluate_usable, by composing the stages' phases when the table is there. */
static lr_status stage_evaluate(const stage_eval *e, const plan_spec *spec, plan_cost *c, bool *fits)
{
    if (!e->table)
        return strategy_evaluate_usable(e->net, e->cfg, spec, c, fits);
    const plan_phases *by[PLAN_MAX_STAGES];
    int64_t runs = 2 * (int64_t)e->net->n_nodes;
    for (int s = 0; s < spec->n_stages; s++) {
        int k = 0; /* the search only moves a stage between candidates */
        while (k < N_CANDIDATES && hybrid_candidates[k] != spec->parts[s])
            k++;
        LR_ASSERT(k < N_CANDIDATES);
        by[s] = &e->table->ph[k];
        runs += e->table->runs[k][s];
    }
    plan_compose(by, spec->n_stages, c);
    *fits = runs <= PLAN_MAX_RUNS && c->flops < INT64_MAX;
    return LR_OK;
}

/* Coordinate descent over each stage's N: each stage takes the N that lowers the highest live
 * bytes while it runs (its own part of the peak), smaller N on ties. Candidates are costed by
 * composing per-stage phases (one plan per candidate N instead of one per move); the result is
 * costed as a whole plan. */
static lr_status search_stage_rows(const net_t *net, const plan_config *cfg, plan_spec *spec,
                                   plan_cost *best)
{
    LR_TRY(strategy_evaluate(net, cfg, spec, best));
    stage_table *table = stage_table_build(net, cfg, spec);
    stage_eval e = {net, cfg, table};
    lr_status st = LR_OK;
    for (int round = 0; round < 2 && st == LR_OK; round++) {
        bool changed = false;
        for (int s = 0; s < spec->n_stages && st == LR_OK; s++) {
            int keep = spec->parts[s];
            plan_cost kept = *best;
            for (int k = 0; k < N_CANDIDATES && st == LR_OK; k++) {
                if (hybrid_candidates[k] == keep)
                    continue;
                spec->parts[s] = hybrid_candidates[k];
                plan_cost c;
                bool fits;
                st = stage_evaluate(&e, spec, &c, &fits);
                bool lower = st == LR_OK && fits &&
                             (c.stage_peak[s] < kept.stage_peak[s] ||
                              (c.stage_peak[s] == kept.stage_peak[s] && hybrid_candidates[k] < keep));
                if (lower && c.peak_bytes <= kept.peak_bytes) {
                    kept = c;
                    keep = hybrid_candidates[k];
                    changed = true;
                }
            }
            spec->parts[s] = keep;
            *best = kept;
        }
        if (!changed)
            break;
    }
    /* Stages that do not set the peak get the fewest partitions that keep it: less recompute
     * of halos, fewer and larger kernels. */
    for (int s = 0; s < spec->n_stages && st == LR_OK; s++) {
        int keep = spec->parts[s];
        for (int k = 0; k < N_CANDIDATES && hybrid_candidates[k] < keep && st == LR_OK; k++) {
            spec->parts[s] = hybrid_candidates[k];
            plan_cost c;
            bool fits;
            st = stage_evaluate(&e, spec, &c, &fits);
            if (st == LR_OK && fits && c.peak_bytes <= best->peak_bytes) {
                *best = c;
                keep = hybrid_candidates[k];
                break;
            }
        }
        spec->parts[s] = keep;
    }
    free(table);
    LR_TRY(st);
    return table ? strategy_evaluate(net, cfg, spec, best) : LR_OK;
}

static void scaled_rows(const net_t *net, plan_spec *spec, int rows)
{
    int h0 = net->nodes[0].h;
    int in = 0;
    for (int s = 0; s < spec->n_stages; s++) {
        double n = (double)rows * net->nodes[in].h / h0;
        spec->parts[s] = n < 1 ? 1 : (int)lround(n);
        in = spec->cut[s];
    }
}

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

lr_status strategy_choose(const net_t *net, const plan_config *cfg, const plan_request *req,
                          plan_choice *out)
{
    int end = 0;
    LR_TRY(check_request(net, req, &end));
    memset(out, 0, sizeof *out);
    plan_spec *sp = &out->spec;
    sp->strategy = req->strategy;
    bool row_strategy = req->strategy >= STRAT_ROW;
    if (end == 0 && req->strategy != STRAT_COLUMN) {
        /* no op maps rows: every strategy degenerates to column training */
        sp->n_stages = 0;
        return strategy_evaluate(net, cfg, sp, &out->cost);
    }
    switch (req->strategy) {
    case STRAT_COLUMN:
        sp->n_stages = 0;
        break;
    case STRAT_CHECKPOINT:
        return checkpoint_spec(net, cfg, end, req->segments, sp, &out->cost);
    case STRAT_ROW:
    case STRAT_2PS:
    case STRAT_OVERL:
        sp->kind = req->strategy == STRAT_ROW   ? PART_TILE_OUT
                   : req->strategy == STRAT_2PS ? PART_TILE_IN
                                                : PART_OVERLAP;
        sp->n_stages = 1;
        sp->cut[0] = end;
        sp->parts[0] = req->rows;
        break;
    case STRAT_2PS_H:
    case STRAT_OVERL_H:
        sp->kind = req->strategy == STRAT_2PS_H ? PART_TILE_IN : PART_OVERLAP;
        sp->n_stages = strategy_resolution_cuts(net, end, sp->cut, PLAN_MAX_STAGES);
        if (req->rows)
            scaled_rows(net, sp, req->rows);
        else
            for (int s = 0; s < sp->n_stages; s++)
                sp->parts[s] = 1;
        break;
    default:
        return lr_fail(LR_ERR_USAGE, "--strategy: unknown strategy");
    }
    bool hybrid = req->strategy == STRAT_2PS_H || req->strategy == STRAT_OVERL_H;
    if (row_strategy && req->rows == 0) {
        out->rows_chosen = true;
        return hybrid ? search_stage_rows(net, cfg, sp, &out->cost)
                      : search_rows(net, cfg, sp, &out->cost);
    }
    LR_TRY(strategy_evaluate(net, cfg, sp, &out->cost));
    /* plan_build clamps N to the rows available: report what was planned */
    plan_t *plan;
    LR_TRY(plan_build(net, cfg, sp, &plan));
    memcpy(sp->parts, plan->spec.parts, sizeof sp->parts);
    plan_free(plan);
    return LR_OK;
}
