/* auto.c - the auto planner's driver: checks the request, measures the base, seeds column and
 * the checkpoint strategy, solves every space (partitioning kind x BatchNorm mode) in rounds,
 * evaluates the winners exactly and ranks them (auto.h: what it searches; auto_search.h: the
 * files that do each part).
 *
 * Deliberately not here: building, emitting or evaluating plans (plan.c, emit.c, closed.c).
 */
#include "auto_search.h"

#include <math.h>
#include <string.h>

typedef struct {
    bool min_peak;       /* objective */
    bool near_tie;       /* min_peak, then the least compute within the near-tie of that peak */
    int64_t budget;      /* 0: none */
    int64_t work_cap;    /* absolute (auto_work); INT64_MAX: none */
} goal;

static int64_t extra_cap_of(const search *s, const goal *g)
{
    return g->work_cap == INT64_MAX ? INT64_MAX : g->work_cap - s->col_work;
}

/* ------------------------------------------------------------------ candidates */

const char *auto_kind_name(const plan_spec *spec)
{
    bool parted = false;
    for (int k = 0; k < spec->n_stages; k++)
        parted |= spec->parts[k] > 1;
    if (spec->n_stages == 0)
        return "column";
    if (!parted)
        return "checkpoint";
    return spec->kind == PART_TILE_IN ? "2ps" : spec->kind == PART_OVERLAP ? "overl" : "row";
}

/* The strategy a spec reads as in tables (only checkpoint changes how its rows print). */
static plan_strategy strategy_of(const plan_spec *spec)
{
    const char *kind = auto_kind_name(spec);
    bool hybrid = spec->n_stages > 1;
    if (strcmp(kind, "column") == 0)
        return STRAT_COLUMN;
    if (strcmp(kind, "checkpoint") == 0)
        return STRAT_CHECKPOINT;
    if (spec->kind == PART_TILE_IN)
        return hybrid ? STRAT_2PS_H : STRAT_2PS;
    if (spec->kind == PART_OVERLAP)
        return hybrid ? STRAT_OVERL_H : STRAT_OVERL;
    return STRAT_ROW;
}

static bool meets(const search *s, const auto_candidate *c, const goal *g)
{
    return auto_work(s, &c->cost) <= g->work_cap &&
           (g->budget == 0 || c->cost.peak_bytes <= g->budget);
}

/* Evaluates spec under bn (*usable as for auto_evaluate()). A plan without BatchNorm in a
 * partitioned stage is the same plan under exact and stripe: it is labelled exact. */
static lr_status make_candidate(search *s, plan_spec spec, plan_bn bn, const goal *g,
                                auto_candidate *c, bool *usable)
{
    memset(c, 0, sizeof *c);
    spec.strategy = strategy_of(&spec);
    plan_config cfg = s->cfg;
    cfg.bn = bn;
    c->approximate = strategy_is_approximate(s->net, &cfg, &spec);
    c->bn = c->approximate ? BN_STRIPE : s->base_bn;
    c->spec = spec;
    LR_TRY(auto_evaluate(s, bn, &spec, &c->cost, usable));
    c->flops_ratio = (double)c->cost.flops / (double)s->col_flops;
    c->time_ratio = s->col_ns > 0 ? (double)c->cost.step_ns / (double)s->col_ns : 0.0;
    c->fits = meets(s, c, g);
    return LR_OK;
}

static plan_spec spec_of(const dp_plan *p, plan_partitioning kind, const search *s)
{
    plan_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.kind = kind;
    spec.n_stages = p->n_stages;
    for (int k = 0; k < p->n_stages; k++) {
        spec.cut[k] = s->cut[p->stage[k]->b];
        spec.parts[k] = p->stage[k]->parts;
        spec.recompute |= (uint64_t)p->stage[k]->recompute << k;
    }
    return spec;
}

/* The space's best plan, evaluated exactly. Should the closed form disagree with the stage model
 * (it does not on the zoo: tests/test_auto.c), the bound is tightened by the difference and the
 * programme rerun. */
static lr_status solve(search *s, const space *sp, const goal *g, labels *L, auto_candidate *out,
                       bool *found)
{
    dp_query q = {s, sp, g->budget ? g->budget : INT64_MAX, extra_cap_of(s, g)};
    bool by_peak = g->min_peak;
    if (g->near_tie) { /* the lowest peak first (the seed's too), then the least compute
                        * within its near-tie */
        dp_plan low = auto_dp_lowest_peak(q, L, s->lowest); /* (no lower: s->lowest stands) */
        if (!low.found)
            return LR_OK;
        s->lowest = low.peak < s->lowest ? low.peak : s->lowest;
        q.bound = s->lowest + s->lowest / STRATEGY_NEAR_TIE_DIV;
        by_peak = false;
    }
    *found = false;
    for (int attempt = 0; attempt < 4; attempt++) {
        dp_plan p = by_peak ? auto_dp_lowest_peak(q, L, INT64_MAX) : auto_dp_least_extra(&q, L);
        if (!p.found)
            return LR_OK;
        bool usable;
        LR_TRY(make_candidate(s, spec_of(&p, sp->kind, s), sp->bn, g, out, &usable));
        if (!usable) /* its stages can be built one by one, not all together: rare enough */
            return LR_OK;
        if (out->cost.peak_bytes != p.peak || auto_work(s, &out->cost) - s->col_work != p.extra)
            s->model_misses++;
        /* how far past the cap and the bound, never subtracting from INT64_MAX ("no cap") */
        int64_t extra = auto_work(s, &out->cost) - s->col_work;
        int64_t over_flops = extra > q.extra_cap ? extra - q.extra_cap : 0;
        /* the near-tie's bound is no constraint of the request: the plan stands as evaluated */
        int64_t peak = out->cost.peak_bytes;
        int64_t over_peak = by_peak || g->near_tie || peak <= q.bound ? 0 : peak - q.bound;
        if (over_flops <= 0 && over_peak <= 0) {
            *found = true;
            return LR_OK;
        }
        if (over_flops > 0)
            q.extra_cap -= over_flops;
        if (over_peak > 0)
            q.bound -= over_peak;
    }
    return LR_OK;
}

static bool same_plan(const auto_candidate *x, const auto_candidate *y)
{
    const plan_spec *p = &x->spec, *q = &y->spec;
    if (x->bn != y->bn || p->n_stages != q->n_stages || p->recompute != q->recompute ||
        strcmp(auto_kind_name(p), auto_kind_name(q)) != 0)
        return false;
    for (int k = 0; k < p->n_stages; k++)
        if (p->cut[k] != q->cut[k] || p->parts[k] != q->parts[k])
            return false;
    return true;
}

/* Plans that meet the request first; among those the objective, then the other measure, then
 * exact BatchNorm. Among those that do not (nothing met the budget): within the compute cap
 * first, then the lowest peak (the closest to the budget). */
static bool ahead(const search *s, const auto_candidate *x, const auto_candidate *y,
                  const goal *g)
{
    if (x->fits != y->fits)
        return x->fits;
    int64_t xw = auto_work(s, &x->cost), yw = auto_work(s, &y->cost);
    if (g->near_tie && x->fits) { /* within the near-tie of the lowest peak first, by compute */
        bool x_tie = strategy_near_tie(x->cost.peak_bytes, s->lowest);
        bool y_tie = strategy_near_tie(y->cost.peak_bytes, s->lowest);
        if (x_tie != y_tie)
            return x_tie;
        if (x_tie && xw != yw)
            return xw < yw;
    }
    bool x_cap = xw <= g->work_cap, y_cap = yw <= g->work_cap;
    if (!x->fits && x_cap != y_cap)
        return x_cap;
    bool by_peak = g->min_peak || !x->fits;
    int64_t x1 = by_peak ? x->cost.peak_bytes : xw;
    int64_t y1 = by_peak ? y->cost.peak_bytes : yw;
    int64_t x2 = by_peak ? xw : x->cost.peak_bytes;
    int64_t y2 = by_peak ? yw : y->cost.peak_bytes;
    if (x1 != y1)
        return x1 < y1;
    if (x2 != y2)
        return x2 < y2;
    return !x->approximate && y->approximate;
}

typedef struct {
    auto_candidate v[8 + 3 * BN_COUNT]; /* seeds, then a solution per space */
    int n;
} candidates;

static void rank(const search *s, candidates *c, const goal *g, auto_result *out)
{
    for (int k = 1; k < c->n; k++) /* insertion sort, stable */
        for (int q = k; q > 0 && ahead(s, &c->v[q], &c->v[q - 1], g); q--) {
            auto_candidate t = c->v[q];
            c->v[q] = c->v[q - 1];
            c->v[q - 1] = t;
        }
    out->best = c->v[0];
    out->n_alt = 0;
    for (int k = 1; k < c->n && out->n_alt < AUTO_MAX_ALT; k++) {
        bool seen = same_plan(&c->v[k], &out->best);
        for (int q = 0; q < out->n_alt && !seen; q++)
            seen = same_plan(&c->v[k], &out->alt[q]);
        if (!seen)
            out->alt[out->n_alt++] = c->v[k];
    }
}

/* ------------------------------------------------------------------ driver */

static lr_status check_request(const net_t *net, const auto_request *req, goal *g, int *end,
                               const plan_config *cfg)
{
    double cap = req->max_overhead;
    if (!(cap == 0 || (cap >= 1 && isfinite(cap))))
        return lr_fail(LR_ERR_USAGE, "--max-overhead: expected a compute ratio >= 1, got %g", cap);
    if (req->budget_bytes < 0)
        return lr_fail(LR_ERR_USAGE, "--budget: expected a positive size");
    if (req->by_time && !cfg->device)
        return lr_fail(LR_ERR_USAGE, "--overhead-by time: needs --device (the card whose time "
                                     "model measures compute)");
    if (cap == 0 && req->budget_bytes == 0 && !req->one_kind)
        cap = AUTO_DEFAULT_OVERHEAD;
    g->min_peak = req->budget_bytes == 0;
    g->near_tie = req->one_kind;
    g->budget = req->budget_bytes;
    g->work_cap = INT64_MAX; /* set once column's compute is known */
    *end = req->region_end > 0 ? req->region_end : plan_default_region_end(net);
    if (*end >= net->n_nodes)
        return lr_fail(LR_ERR_USAGE, "--region: no such layer");
    LR_TRY(cost_check_layers(net, cfg->batch, cost_dtype_bytes(cfg->dtype)));
    if (req->region_end > 0) { /* plan_build names what is wrong with the cut */
        plan_spec sp = {.n_stages = 1, .cut = {*end}, .parts = {1}};
        plan_cost c;
        LR_TRY(strategy_evaluate(net, cfg, &sp, &c));
    }
    return LR_OK;
}

static void search_free(search *s)
{
    free(s->cut), free(s->out_bytes), free(s->lp1), free(s->fck), free(s->special), free(s->ends);
    free(s->twin);
    free(s->bn_node), free(s->anc), free(s->desc);
    auto_free_pieces(s);
}

static lr_status search_init(search *s, const net_t *net, const plan_config *cfg, int end,
                             bool by_time)
{
    memset(s, 0, sizeof *s);
    s->net = net;
    s->cfg = *cfg;
    s->base_bn = cfg->bn == BN_FROZEN ? BN_FROZEN : BN_EXACT;
    s->by_time = by_time;
    s->lowest = INT64_MAX;
    auto_find_cuts(s, end);
    auto_find_twins(s);
    s->out_bytes = calloc((size_t)s->m + 1, sizeof(int64_t));
    s->lp1 = calloc((size_t)s->m + 1, sizeof(int64_t));
    s->fck = calloc((size_t)s->m + 1, sizeof(int64_t));
    LR_ASSERT(s->out_bytes && s->lp1 && s->fck);
    int eb = cost_dtype_bytes(cfg->dtype);
    for (int i = 1; i <= s->m; i++)
        s->out_bytes[i] = cost_node_bytes(net, s->cut[i], cfg->batch, eb);
    auto_bn_bounds(s);
    return auto_measure_base(s);
}

/* Column, and the checkpoint strategy's own segments (greedy cuts at any layer). */
/* Column, checkpoint, and the single-stage strategies' own choices (their N search goes past 32
 * and their region may end at the pooling, where the probes do not go): auto is never worse
 * than a fixed strategy. */
static lr_status seeds(search *s, const goal *g, int end, bool fixed_region, candidates *c)
{
    plan_spec column;
    memset(&column, 0, sizeof column);
    bool usable;
    LR_TRY(make_candidate(s, column, s->base_bn, g, &c->v[c->n++], &usable));
    LR_ASSERT(usable); /* measure_base evaluated it */
    if (end == 0)
        return LR_OK;
    plan_spec ck = {.strategy = STRAT_CHECKPOINT};
    plan_cost cost;
    LR_TRY(strategy_checkpoint(s->net, &s->cfg, end, 0, &ck, &cost));
    LR_TRY(make_candidate(s, ck, s->base_bn, g, &c->v[c->n], &usable));
    c->n += usable;
    const plan_bn modes[2] = {s->base_bn, BN_STRIPE}; /* stripe when --bn stripe allows it */
    const plan_partitioning kinds[] = {PART_TILE_OUT, PART_TILE_IN, PART_OVERLAP};
    for (int b = 0; b <= (s->cfg.bn == BN_STRIPE); b++)
        for (int k = 0; k < 3; k++) {
            plan_config cfg = s->cfg;
            cfg.bn = modes[b];
            plan_choice one;
            memset(&one, 0, sizeof one);
            LR_TRY(strategy_single_stage(s->net, &cfg, kinds[k], end, fixed_region, 0, &one));
            LR_TRY(make_candidate(s, one.spec, modes[b], g, &c->v[c->n], &usable));
            c->n += usable;
        }
    return LR_OK;
}

/* The least extra compute of a candidate that meets the request; INT64_MAX: none does. */
static int64_t least_fitting_extra(const search *s, const candidates *c)
{
    int64_t best = INT64_MAX;
    for (int k = 0; k < c->n; k++)
        if (c->v[k].fits && auto_work(s, &c->v[k].cost) - s->col_work < best)
            best = auto_work(s, &c->v[k].cost) - s->col_work;
    return best;
}

static lr_status solve_spaces(search *s, space *spaces, int n_spaces, const goal *g,
                              candidates *c)
{
    labels L;
    auto_labels_init(&L, s->m);
    lr_status st = LR_OK;
    for (int k = 0; k < n_spaces && st == LR_OK; k++) {
        bool found;
        st = solve(s, &spaces[k], g, &L, &c->v[c->n], &found);
        c->n += st == LR_OK && found;
    }
    auto_labels_free(&L, s->m);
    return st;
}

/* Measures what extra_limit allows, then solves every space from the measurements. */
static lr_status round_of(search *s, space *spaces, int n_spaces, probe_job *jobs, int n_jobs,
                          int64_t extra_limit, const goal *g, candidates *c, int n_seeds)
{
    LR_TRY(auto_run_jobs(s, jobs, n_jobs, extra_limit));
    for (int k = 0; k < n_spaces; k++) {
        auto_collect_edges(s, &spaces[k], jobs, n_jobs);
        auto_completion_bounds(s, &spaces[k]);
    }
    c->n = n_seeds;
    return solve_spaces(s, spaces, n_spaces, g, c);
}

/* Least compute under a budget, by rounds: a round measures only the exact-BN stages whose
 * compute bound is within a limit, so its answer is the optimum once that answer's compute is
 * within the limit (any plan using an unmeasured stage costs more). The limit starts at the
 * cheapest seed that fits (or 1/8 of column) and rises to the best answer so far, or 4x. */
static lr_status least_compute(search *s, space *spaces, int n_spaces, probe_job *jobs,
                               int n_jobs, const goal *g, candidates *c, int n_seeds)
{
    int64_t cap = extra_cap_of(s, g), limit = least_fitting_extra(s, c);
    if (limit == INT64_MAX)
        limit = s->col_work / 8;
    for (;;) {
        limit = limit < cap ? limit : cap;
        LR_TRY(round_of(s, spaces, n_spaces, jobs, n_jobs, limit, g, c, n_seeds));
        int64_t found = least_fitting_extra(s, c);
        if (found <= limit || limit == cap)
            return LR_OK;
        limit = found != INT64_MAX ? found : limit > INT64_MAX / 4 ? INT64_MAX : limit * 4;
    }
}

static lr_status search_spaces(search *s, const auto_request *req, goal *g, candidates *c,
                               auto_result *out)
{
    space spaces[3 * BN_COUNT];
    int n_spaces = 0, n_seeds = c->n;
    const plan_partitioning kinds[] = {PART_TILE_IN, PART_OVERLAP, PART_TILE_OUT};
    /* exact BN always, stripe when --bn stripe allows it; --bn frozen trains every plan frozen */
    plan_bn modes[2] = {s->base_bn, BN_STRIPE};
    if (req->one_kind)
        spaces[n_spaces++] = (space){.kind = req->kind, .bn = s->cfg.bn};
    for (int b = 0; b <= (s->cfg.bn == BN_STRIPE) && !req->one_kind; b++)
        for (int k = 0; k < 3; k++)
            spaces[n_spaces++] = (space){.kind = kinds[k], .bn = modes[b]};
    int n_jobs;
    probe_job *jobs = auto_make_jobs(s, spaces, n_spaces, &n_jobs);
    int64_t cap = extra_cap_of(s, g);
    lr_status st = g->min_peak ? round_of(s, spaces, n_spaces, jobs, n_jobs, cap, g, c, n_seeds)
                               : least_compute(s, spaces, n_spaces, jobs, n_jobs, g, c, n_seeds);
    if (st == LR_OK && least_fitting_extra(s, c) == INT64_MAX) {
        goal closest = *g; /* nothing fits: the lowest peak within the compute cap */
        closest.min_peak = true;
        st = round_of(s, spaces, n_spaces, jobs, n_jobs, cap, &closest, c, n_seeds);
    }
    auto_free_jobs(jobs, n_jobs);
    for (int k = 0; k < n_spaces; k++)
        free(spaces[k].edges.v), free(spaces[k].from), free(spaces[k].need),
            free(spaces[k].least_extra);
    return st;
}

static lr_status search_fixed(const net_t *net, const plan_config *cfg, const auto_request *req,
                              auto_result *out)
{
    memset(out, 0, sizeof *out);
    goal g;
    int end = 0;
    LR_TRY(check_request(net, req, &g, &end, cfg));
    double cap = req->one_kind ? 0
                 : req->max_overhead == 0 && req->budget_bytes == 0 ? AUTO_DEFAULT_OVERHEAD
                                                                    : req->max_overhead;
    search s;
    lr_status st = search_init(&s, net, cfg, end, req->by_time);
    s.kept = req->one_kind ? req->kept : NULL;
    s.every_n = req->every_n;
    if (cap > 0)
        g.work_cap = lr_sat_scale(cap, s.col_work);
    candidates c = {.n = 0};
    if (st == LR_OK && !req->one_kind)
        st = seeds(&s, &g, end, req->region_end > 0, &c);
    bool column_fits = c.n > 0 && c.v[0].fits && !g.min_peak; /* least compute possible */
    if (st == LR_OK && end > 0 && req->one_kind && req->seed) {
        bool usable;
        st = make_candidate(&s, *req->seed, s.cfg.bn, &g, &c.v[c.n], &usable);
        if (st == LR_OK && usable)
            s.lowest = c.v[c.n++].cost.peak_bytes;
    }
    if (st == LR_OK && end > 0 && !column_fits)
        st = search_spaces(&s, req, &g, &c, out);
    if (st == LR_OK && c.n == 0)
        st = lr_fail(LR_ERR_INPUT, "%s at batch %d: no plan of this kind lrcnn would build; use "
                     "a smaller batch or input", net->name, cfg->batch);
    if (st == LR_OK) {
        rank(&s, &c, &g, out);
        out->minimise_peak = g.min_peak;
        out->max_overhead = cap;
        out->budget_bytes = g.budget;
        out->column_peak = s.col_peak;
        out->column_flops = s.col_flops;
        out->column_ns = s.col_ns;
        out->by_time = s.by_time;
        out->over_bytes = out->best.fits || !g.budget ? 0 : out->best.cost.peak_bytes - g.budget;
        out->n_evals = s.n_evals;
        out->model_misses = s.model_misses;
    }
    search_free(&s);
    return st;
}


/* ------------------------------------------------------------------ --offload auto */

/* The compute auto minimises under a budget: step time (--overhead-by time) or FLOPs. */
static int64_t work_of(const auto_result *r)
{
    return r->by_time ? r->best.cost.step_ns : r->best.cost.flops;
}

/* The set whose search answers: under a budget auto's own objective, the least compute, among
 * the sets whose plan meets the request (compute within 1% counts as tied, and the least copying
 * among those wins: strategy_offload_fitting), or when none does the lowest peak (the closest to
 * the budget); else the table's objective over the plans that meet the compute cap
 * (strategy_offload_best). */
static int pick_set(const auto_result *by, int64_t budget)
{
    plan_cost c[STRATEGY_OFFLOAD_SETS];
    bool fits[STRATEGY_OFFLOAD_SETS], any = false;
    int least = -1;
    for (int k = 0; k < STRATEGY_OFFLOAD_SETS; k++) {
        c[k] = by[k].best.cost, fits[k] = by[k].best.fits;
        any |= fits[k];
        if (fits[k] && (least < 0 || work_of(&by[k]) < work_of(&by[least])))
            least = k;
    }
    if (budget > 0 && any) {
        for (int k = 0; k < STRATEGY_OFFLOAD_SETS; k++)
            fits[k] = fits[k] && strategy_near_tie(work_of(&by[k]), work_of(&by[least]));
        return strategy_offload_fitting(c, fits);
    }
    int best = 0;
    if (budget > 0) {
        for (int k = 1; k < STRATEGY_OFFLOAD_SETS; k++)
            if (c[k].peak_bytes < c[best].peak_bytes)
                best = k;
        return best;
    }
    for (int k = 0; k < STRATEGY_OFFLOAD_SETS && !any; k++)
        fits[k] = true; /* nothing within the cap: the lowest peak of all */
    return strategy_offload_best(c, fits);
}

static void mark_set(auto_result *r, unsigned set)
{
    r->best.spec.offload = set;
    for (int k = 0; k < r->n_alt; k++)
        r->alt[k].spec.offload = set;
}

lr_status auto_search(const net_t *net, const plan_config *cfg, const auto_request *req,
                      auto_result *out)
{
    if (!cfg->offload_auto)
        return search_fixed(net, cfg, req, out);
    auto_result *by = malloc(sizeof *by * STRATEGY_OFFLOAD_SETS);
    if (!by)
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    lr_status st = LR_OK;
    int evals = 0, misses = 0;
    for (unsigned set = 0; set < STRATEGY_OFFLOAD_SETS && st == LR_OK; set++) {
        plan_config one = *cfg;
        one.offload_auto = false;
        one.offload = set;
        st = search_fixed(net, &one, req, &by[set]);
        mark_set(&by[set], set);
        evals += by[set].n_evals, misses += by[set].model_misses;
    }
    if (st == LR_OK) {
        *out = by[pick_set(by, req->budget_bytes)];
        out->n_evals = evals;
        out->model_misses = misses;
    }
    free(by);
    return st;
}
