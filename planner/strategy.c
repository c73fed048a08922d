/* strategy.c - strategy name + options -> plan spec (see strategy.h for the defaults). */
#include "strategy.h"

#include "checked.h"
#include "par.h"

#include <math.h>
#include <string.h>

/* N tried for a single-stage plan: 2 ..SINGLE_STAGE_MAX_N. */
#define SINGLE_STAGE_MAX_N STRATEGY_SINGLE_MAX_N

/* Whether exact BatchNorm statistics passes are part of the plan (stages of N > 1 with BN). */
static bool exact_bn_passes(const net_t *net, const plan_config *cfg, const plan_spec *spec)
{
    for (int s = 0, prev = 0; cfg->bn == BN_EXACT && s < spec->n_stages; prev = spec->cut[s++])
        for (int l = prev + 1; l <= spec->cut[s] && spec->parts[s] > 1; l++)
            if (net->nodes[l].op == OP_BATCHNORM)
                return true;
    return false;
}

lr_status strategy_evaluate(const net_t *net, const plan_config *cfg, const plan_spec *spec,
                            plan_cost *out)
{
    plan_t *plan;
    LR_TRY(plan_build(net, cfg, spec, &plan));
    plan_closed_form(plan, out);
    plan_free(plan);
    if (out->flops == INT64_MAX || out->peak_bytes == INT64_MAX)
        return lr_fail(LR_ERR_INPUT, "%s: the %s plan's %s count overflows 64 bits at batch %d: "
                                     "use a smaller batch or input%s",
                       net->name, plan_strategy_name(spec->strategy),
                       out->flops == INT64_MAX ? "FLOP" : "byte", cfg->batch,
                       out->flops == INT64_MAX && exact_bn_passes(net, cfg, spec) ? ", or --bn stripe"
                                                                                   : "");
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
    /* a region ending in a row reduction: the reduction joins the stage of its input, which
     * then never has to be kept whole */
    int joined = net_op_is_row_reduction(net->nodes[region_end].op) ? net->nodes[region_end].inputs[0] : -1;
    for (int l = 1; l <= region_end && n < max_cuts - 1; l++) {
        const net_node *x = &net->nodes[net->nodes[l].inputs[0]];
        bool shrinks = net->nodes[l].h < x->h && l != joined;
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

bool strategy_is_approximate(const net_t *net, const plan_config *cfg, const plan_spec *spec)
{
    if (cfg->bn != BN_STRIPE)
        return false;
    int prev = 0;
    for (int s = 0; s < spec->n_stages; s++) {
        for (int l = prev + 1; l <= spec->cut[s] && spec->parts[s] > 1; l++)
            if (net->nodes[l].op == OP_BATCHNORM)
                return true;
        prev = spec->cut[s];
    }
    return false;
}

bool strategy_near_tie(int64_t peak, int64_t lowest)
{
    return peak <= lowest || (peak - lowest) <= lowest / STRATEGY_NEAR_TIE_DIV;
}

void strategy_pick_init(strategy_pick *p)
{
    memset(p, 0, sizeof *p);
}

void strategy_pick_free(strategy_pick *p)
{
    free(p->v);
    memset(p, 0, sizeof *p);
}

void strategy_pick_offer(strategy_pick *p, const plan_spec *spec, const plan_cost *cost)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 64;
        p->v = realloc(p->v, sizeof *p->v * (size_t)p->cap);
        LR_ASSERT(p->v != NULL);
    }
    p->v[p->n].spec = *spec;
    p->v[p->n].cost = *cost;
    p->n++;
}

/* The lowest peak; among its near-ties the least compute, then the lower peak, then the
 * earlier offer. */
int strategy_pick_best(const strategy_pick *p)
{
    int low = -1, best = -1;
    for (int k = 0; k < p->n; k++)
        if (low < 0 || p->v[k].cost.peak_bytes < p->v[low].cost.peak_bytes)
            low = k;
    for (int k = 0; k < p->n; k++) {
        const plan_cost *c = &p->v[k].cost;
        if (!strategy_near_tie(c->peak_bytes, p->v[low].cost.peak_bytes))
            continue;
        if (best < 0 || c->flops < p->v[best].cost.flops ||
            (c->flops == p->v[best].cost.flops && c->peak_bytes < p->v[best].cost.peak_bytes))
            best = k;
    }
    return best;
}

bool strategy_offload_matters(plan_strategy st, unsigned set)
{
    if (st == STRAT_COLUMN)
        return set == 0;
    bool tiled = st == STRAT_ROW || st == STRAT_2PS || st == STRAT_2PS_H || st == STRAT_COUNT;
    return tiled || !(set & OFFLOAD_BOUNDARY);
}

int strategy_offload_best(const plan_cost *c, const bool *usable)
{
    int low = -1, best = -1;
    for (int k = 0; k < STRATEGY_OFFLOAD_SETS; k++)
        if (usable[k] && (low < 0 || c[k].peak_bytes < c[low].peak_bytes))
            low = k;
    for (int k = 0; k < STRATEGY_OFFLOAD_SETS && low >= 0; k++) {
        if (!usable[k] || !strategy_near_tie(c[k].peak_bytes, c[low].peak_bytes))
            continue;
        const plan_cost *x = &c[k], *b = best >= 0 ? &c[best] : NULL;
        if (!b || x->copy_bytes < b->copy_bytes ||
            (x->copy_bytes == b->copy_bytes &&
             (x->flops < b->flops || (x->flops == b->flops && x->peak_bytes < b->peak_bytes))))
            best = k;
    }
    return best;
}

int strategy_offload_fitting(const plan_cost *c, const bool *fits)
{
    int best = -1;
    for (int k = 0; k < STRATEGY_OFFLOAD_SETS; k++) {
        if (!fits[k])
            continue;
        const plan_cost *x = &c[k], *b = best >= 0 ? &c[best] : NULL;
        if (!b || x->copy_bytes < b->copy_bytes ||
            (x->copy_bytes == b->copy_bytes &&
             (x->host_bytes < b->host_bytes ||
              (x->host_bytes == b->host_bytes && x->flops < b->flops))))
            best = k;
    }
    return best;
}

/* Checkpoint segments: with --segments K, K equal shares; without, Chen et al.'s greedy with
 * budget total/K for K = 1..64, the best by the table's objective. */
lr_status strategy_checkpoint(const net_t *net, const plan_config *cfg, int region_end,
                              int segments, plan_spec *sp, plan_cost *cost)
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
    trial.strategy = STRAT_CHECKPOINT;
    strategy_pick pick;
    strategy_pick_init(&pick);
    lr_status s = LR_OK;
    for (int k = lo; k <= hi && s == LR_OK; k++) {
        trial.n_stages = segments ? share_cuts(net, cut, region_end, total, k, trial.cut)
                                  : greedy_cuts(net, cut, region_end, total / k, trial.cut);
        for (int i = 0; i < trial.n_stages; i++)
            trial.parts[i] = 1;
        plan_cost c;
        s = strategy_evaluate(net, cfg, &trial, &c);
        if (s == LR_OK)
            strategy_pick_offer(&pick, &trial, &c);
    }
    if (s == LR_OK) {
        int best = strategy_pick_best(&pick);
        *sp = pick.v[best].spec;
        *cost = pick.v[best].cost;
    }
    strategy_pick_free(&pick);
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
    *usable = *usable && out->flops < INT64_MAX && out->peak_bytes < INT64_MAX; /* overflow: not a candidate */
    return LR_OK;
}

/* Where a single-stage plan's row region may end: at --region, or at one of the hybrids'
 * resolution cuts (where the map shrinks), the default end included. */
static int region_ends(const net_t *net, int region_end, bool fixed, int *ends)
{
    if (fixed) {
        ends[0] = region_end;
        return 1;
    }
    return strategy_resolution_cuts(net, region_end, ends, PLAN_MAX_STAGES);
}

/* The plan (0, end]:parts of `kind`, costed from its stage alone and `ends` (the persistent and
 * tail phases of a plan ending at `end`): what strategy_evaluate_usable says of it. */
static lr_status single_stage_cost(const net_t *net, const plan_config *cfg, plan_partitioning kind,
                                   int end, int parts, const plan_phases *ends,
                                   const plan_scripts *scripts, int64_t ref, plan_cost *c,
                                   bool *usable, strategy_kept_stage *keep)
{
    plan_stage st;
    LR_TRY(plan_stage_build(net, cfg, kind, 0, end, parts, true, &st));
    plan_stage_use_scripts(&st, scripts);
    /* past the near-tie of ref (a peak at this end) by its kept floor: not measured */
    if (ref < INT64_MAX &&
        !strategy_near_tie(strategy_kept_floor(net, cfg, end, ends, &st), ref)) {
        *usable = false;
        if (keep)
            keep->pruned = true;
        plan_stage_free(&st);
        return LR_OK;
    }
    int64_t runs = plan_stage_runs(net, &st);
    *usable = 2 * (int64_t)net->n_nodes + runs <= PLAN_MAX_RUNS;
    if (keep)
        keep->measured = true, keep->phased = *usable, keep->runs = runs;
    if (*usable) {
        plan_phase fwd, bwd;
        plan_stage_phases(net, cfg, &st, 0, &fwd, &bwd);
        if (keep)
            keep->fwd = fwd, keep->bwd = bwd;
        plan_phases rec;
        plan_phases_assemble(ends, 1, 1, &fwd, &bwd, &rec);
        const plan_phases *by = &rec;
        plan_compose(&by, 1, c);
        *usable = c->flops < INT64_MAX && c->peak_bytes < INT64_MAX; /* overflow: not a candidate */
    }
    plan_stage_free(&st);
    return LR_OK;
}

/* Each region end's persistent and tail phases (a one-stage plan ending there: plan_build
 * names what is wrong with a --region cut). */
static lr_status ends_phases(const net_t *net, const plan_config *cfg, const int *ends, int n_ends,
                             plan_phases *rec)
{
    for (int r = 0; r < n_ends; r++) {
        plan_spec one = {.n_stages = 1, .cut = {ends[r]}, .parts = {1}};
        plan_t *plan;
        LR_TRY(plan_build(net, cfg, &one, &plan));
        plan_cost c;
        plan_closed_phases(plan, &c, &rec[r]);
        plan_free(plan);
    }
    return LR_OK;
}

typedef struct {
    plan_cost cost;
    bool usable;
    lr_status status;
    bool done; /* measured (measure_ends: not again in a later round; its lowest so far) */
} trial;

/* ------------------------------------------------------------------ N past SINGLE_STAGE_MAX_N */

int strategy_parts_grid(int first, int max_parts, int *out, int cap)
{
    int n = 0;
    /* 1, 2, 3, 4, 6, 8, 12, 16, ...: every N up to 4, then a power of two times 3/2, the next
     * power of two, and so on (steps of about sqrt(2)) */
    for (int64_t v = 1; v < max_parts && n < cap - 1;) {
        if (v >= first)
            out[n++] = (int)v;
        v = v < 4 ? v + 1 : (v & (v - 1)) == 0 ? v / 2 * 3 : v / 3 * 4;
    }
    if (max_parts >= first && n < cap)
        out[n++] = max_parts;
    return n;
}

int strategy_max_parts(const net_t *net, plan_partitioning kind, int in_node, int out_node)
{
    int64_t rows = plan_split_rows(net, kind, in_node, out_node);
    /* 2ps splits the stage's input; past the output's rows (or 32) more partitions only add
     * boundary rows: at least one partition per output row leaves deeper layers idle */
    int64_t out_rows = plan_split_rows(net, PART_TILE_OUT, in_node, out_node);
    if (kind == PART_TILE_IN && rows > out_rows && rows > SINGLE_STAGE_MAX_N)
        rows = out_rows > SINGLE_STAGE_MAX_N ? out_rows : SINGLE_STAGE_MAX_N;
    int64_t by_ranges = PLAN_MAX_RANGES / (out_node - in_node);
    return (int)(rows < by_ranges ? rows : by_ranges);
}

#define SEARCH_SEEN_MAX 128 /* the N past 32 one search measures, at most */

/* One region end's search past SINGLE_STAGE_MAX_N: every N measured is offered to the pick. */
typedef struct {
    const net_t *net;
    const plan_config *cfg;
    plan_partitioning kind;
    int end;
    const plan_phases *rec;
    strategy_pick *pick;
    int best;      /* the N of the lowest peak so far (0: none usable) */
    int64_t value; /* its peak */
    int seen[SEARCH_SEEN_MAX], n_seen;
    int pre_n;        /* an N measured already (measure_ends: the first grid point; 0: none) */
    const trial *pre; /* its trial */
    const plan_scripts *scripts; /* the end's (NULL: none) */
} parts_search;

static lr_status try_parts(parts_search *p, int n)
{
    for (int k = 0; k < p->n_seen; k++)
        if (p->seen[k] == n)
            return LR_OK;
    if (p->n_seen < SEARCH_SEEN_MAX)
        p->seen[p->n_seen++] = n;
    plan_cost c;
    bool usable = false;
    if (n == p->pre_n && p->pre->done && p->pre->status == LR_OK)
        c = p->pre->cost, usable = p->pre->usable;
    else
        LR_TRY(single_stage_cost(p->net, p->cfg, p->kind, p->end, n, p->rec, p->scripts, INT64_MAX,
                                 &c, &usable, NULL));
    if (!usable)
        return LR_OK;
    plan_spec sp = {.kind = p->kind, .n_stages = 1, .cut = {p->end}, .parts = {n}};
    strategy_pick_offer(p->pick, &sp, &c);
    if (p->best == 0 || c.peak_bytes < p->value || (c.peak_bytes == p->value && n < p->best))
        p->best = n, p->value = c.peak_bytes;
    return LR_OK;
}

/* Pattern search inside (lo, hi) from the best N: try best -/+ step, move on improvement, halve
 * the step otherwise, down to the neighbours of the final N. */
static lr_status refine_parts(parts_search *p, int lo, int hi)
{
    int step = 1;
    while (2 * (int64_t)step <= (hi - lo) / 2)
        step *= 2;
    while (step >= 1) {
        int from = p->best;
        if (from - step > lo)
            LR_TRY(try_parts(p, from - step));
        if (from + step < hi)
            LR_TRY(try_parts(p, from + step));
        if (p->best == from)
            step /= 2;
    }
    return LR_OK;
}

/* The peak as a function of N falls while stripes shrink and rises once the boundary rows kept
 * for backward (linear in N) dominate; at high resolution the best N is in the hundreds. Past
 * the exhaustive 2..32: the grid of strategy_parts_grid up to max_parts until STRATEGY_PATIENCE
 * grid points in a row are not lower than the best, then a pattern search between the grid
 * neighbours of the best (no N next to the answer is lower). */
static lr_status search_past_exhaustive(parts_search *p, int max_parts)
{
    int grid[STRATEGY_GRID_MAX];
    int ng = strategy_parts_grid(SINGLE_STAGE_MAX_N + 1, max_parts, grid, STRATEGY_GRID_MAX);
    for (int k = 0, worse = 0; k < ng && worse < STRATEGY_PATIENCE; k++) {
        int before = p->best;
        LR_TRY(try_parts(p, grid[k]));
        worse = p->best != before ? 0 : worse + 1;
        if (worse == STRATEGY_PATIENCE)
            ng = k + 1; /* the grid points measured */
    }
    if (p->best > SINGLE_STAGE_MAX_N) {
        int k = 0;
        while (grid[k] != p->best)
            k++;
        int lo = k ? grid[k - 1] : SINGLE_STAGE_MAX_N, hi = k + 1 < ng ? grid[k + 1] : max_parts + 1;
        LR_TRY(refine_parts(p, lo, hi));
    }
    return LR_OK;
}

/* Trials of single_stage_as handed to par_for: trial k is N = lo + k % per at ends[k / per],
 * those of a skipped end and those outside [n_from, n_to] of their end left out; past the
 * n_ends * per of them, item n_ends * per + r is end r's N = pre_n[r] (0: none) into pre[r]. */
typedef struct {
    const net_t *net;
    const plan_config *cfg;
    plan_partitioning kind;
    const int *ends;
    int n_ends;
    const plan_phases *rec;
    int lo, per;
    trial *t;
    const bool *skip; /* by end (NULL: none) */
    int n_from[PLAN_MAX_STAGES], n_to[PLAN_MAX_STAGES]; /* by end: the N measured now */
    int pre_n[PLAN_MAX_STAGES];
    trial *pre;
    strategy_kept_stage *keep;
    int64_t ref[PLAN_MAX_STAGES]; /* by end: a peak found there (or at another end), for the
                                     kept floor (INT64_MAX: none) */
    int64_t other; /* the lowest peak found at another end (INT64_MAX: none) */
    bool early; /* only the N of early_parts */
    /* by end: the statistics passes' scripts of (0, end] (exact BatchNorm), lent as the end is
     * first measured (plan_scripts_lent); NULL: none yet */
    const plan_scripts *scripts[PLAN_MAX_STAGES];
    plan_scripts *own[PLAN_MAX_STAGES]; /* by end: those made here (the net's kept none) */
} trial_batch;

/* N measured early at the net's own size, where the lowest peak is at a few partitions: their
 * peaks make the kept floor's reference (measure_ends). */
static const int early_parts[] = {2, 4, 8, 16};

static bool is_early(int n)
{
    for (size_t e = 0; e < sizeof early_parts / sizeof early_parts[0]; e++)
        if (early_parts[e] == n)
            return true;
    return false;
}

static void trial_item(void *ctx, int item)
{
    const trial_batch *b = ctx;
    if (item >= b->n_ends * b->per) {
        int r = item - b->n_ends * b->per;
        if (b->pre_n[r] > 0 && !(b->skip && b->skip[r])) {
            b->pre[r].status = single_stage_cost(b->net, b->cfg, b->kind, b->ends[r], b->pre_n[r],
                                                 &b->rec[r], b->scripts[r], INT64_MAX,
                                                 &b->pre[r].cost, &b->pre[r].usable, NULL);
            b->pre[r].done = true;
        }
        return;
    }
    int k = item, end = k / b->per, parts = b->lo + k % b->per;
    if ((b->skip && b->skip[end]) || parts < b->n_from[end] || parts > b->n_to[end] ||
        b->t[k].done || (b->early && !is_early(parts)))
        return;
    /* plan_build clamps N to the rows there are: past the first N it clamps to, the same plan
     * again, which would lose every tie to it (an earlier offer) */
    if (parts > b->lo && parts > plan_split_rows(b->net, b->kind, 0, b->ends[end]))
        return;
    b->t[k].status = single_stage_cost(b->net, b->cfg, b->kind, b->ends[end], parts, &b->rec[end],
                                       b->scripts[end], b->ref[end], &b->t[k].cost,
                                       &b->t[k].usable, b->keep ? &b->keep[k] : NULL);
    b->t[k].done = true;
}

int64_t strategy_end_floor(const net_t *net, const plan_config *cfg, int end,
                           const plan_phases *ends)
{
    const plan_phase *ph = ends->ph, *tail = &ends->ph[2];
    int64_t rise = 0;
    for (int i = 2; i <= 3; i++)
        if (ph[i].grew && ph[i].high - tail->entry > rise)
            rise = ph[i].high - tail->entry;
    int64_t out = cost_node_bytes(net, end, cfg->batch, cost_dtype_bytes(cfg->dtype));
    return lr_sat_add(lr_sat_add(ph[0].exit - ph[0].entry, out), rise);
}

int64_t strategy_kept_floor(const net_t *net, const plan_config *cfg, int end,
                            const plan_phases *ends, const plan_stage *st)
{
    int64_t tail = lr_sat_add(strategy_end_floor(net, cfg, end, ends),
                              plan_stage_kept_bytes(net, cfg, st));
    int64_t bwd = lr_sat_add(strategy_parts_floor(net, cfg, end, 1, 0, ends),
                             plan_stage_backward_bytes(net, cfg, st));
    return tail > bwd ? tail : bwd;
}

int64_t strategy_saved_bytes(const net_t *net, const plan_config *cfg, int in, int end)
{
    int eb = cost_dtype_bytes(cfg->dtype);
    int64_t sum = 0;
    for (int l = in + 1; l < end; l++)
        if (plan_bwd_reads(net, l, end))
            sum = lr_sat_add(sum, cost_node_bytes(net, l, cfg->batch, eb));
    return sum;
}

int64_t strategy_stage_floor(const net_t *net, const plan_config *cfg, int in, int end, int parts,
                             int64_t saved, int64_t persistent)
{
    int eb = cost_dtype_bytes(cfg->dtype);
    int64_t carried = lr_sat_add(cost_node_bytes(net, end, cfg->batch, eb),
                                 in > 0 ? cost_node_bytes(net, in, cfg->batch, eb) : 0);
    return lr_sat_add(lr_sat_add(persistent, carried), saved / parts);
}

int64_t strategy_parts_floor(const net_t *net, const plan_config *cfg, int end, int parts,
                             int64_t saved, const plan_phases *ends)
{
    const plan_phase *ph = ends->ph;
    return strategy_stage_floor(net, cfg, 0, end, parts, saved, ph[0].exit - ph[0].entry);
}

/* The lowest usable peak of end r's trials measured so far (INT64_MAX: none). */
static int64_t lowest_measured(const trial_batch *b, int r)
{
    int64_t low = INT64_MAX;
    for (int k = r * b->per; k < (r + 1) * b->per; k++) {
        const trial *t = &b->t[k];
        if (t->done && t->status == LR_OK && t->usable && t->cost.peak_bytes < low)
            low = t->cost.peak_bytes;
    }
    const trial *p = &b->pre[r];
    if (p->done && p->status == LR_OK && p->usable && p->cost.peak_bytes < low)
        low = p->cost.peak_bytes;
    return low;
}

/* The trials lo..hi of the ends not in `skip`, in rounds. The first measures N = hi and, where
 * the search goes past hi, the first N it measures there (the first grid point, pre_n: kept for
 * it in pre). Then only the N below hi whose floor (strategy_parts_floor) is within the near-tie
 * of the lowest peak of the first round at their end are measured; the rest peak past it and are
 * left out (marked in the memo). The floor falls with N, so the N left out are those below the
 * first one within the near-tie; at high resolution, where N = hi and the grid point peak
 * lowest, they are most of lo..hi. Of those left, the early N are measured first and then the
 * others against the lowest peak found, leaving out (marked too) those whose kept floor
 * (strategy_kept_floor) is past its near-tie: at the net's own size, where the peak rises with N
 * past a few partitions, most of them.
 * At an end the search does not go past hi from, the lowest peak found at another end (b->other:
 * the first end's, measured alone before) counts in every round as one found there: at the net's
 * own size the deep ends' stages peak far above a shallow end's (resnet101 --batch 1278 2ps:
 * 84.4 GB ending at layer2_3_relu, 90.8 GB and more ending at layer3_22_relu or avgpool), and
 * most of their N are left out by the backward's floor.
 * None of the N left out can be chosen, and the search past hi goes the same way: it starts from
 * the lowest of lo..hi, which an N left out is not (it peaks above a peak measured at its end),
 * or, when it is lower than the first grid point's (left out by that), then so is the lowest of
 * the N measured, and the grid point takes over from either alike. */
static void measure_ends(trial_batch *b, const bool *skip, const int64_t *saved)
{
    int lo = b->lo, hi = lo + b->per - 1, n_ends = b->n_ends;
    b->skip = skip;
    for (int r = 0; r < n_ends && b->cfg->bn == BN_EXACT && lo < hi; r++) /* (--rows: one N) */
        if (!b->scripts[r] && !(skip && skip[r]))
            b->scripts[r] = plan_scripts_lent(b->net, 0, b->ends[r], &b->own[r]);
    bool past[PLAN_MAX_STAGES]; /* by end: the search goes past hi */
    for (int r = 0; r < n_ends; r++) {
        b->n_from[r] = b->n_to[r] = hi;
        b->pre_n[r] = 0;
        int max_parts = strategy_max_parts(b->net, b->kind, 0, b->ends[r]), grid[2];
        past[r] = lo < hi && max_parts > hi;
        b->ref[r] = past[r] ? INT64_MAX : b->other;
        if (past[r] && strategy_parts_grid(hi + 1, max_parts, grid, 2) > 0)
            b->pre_n[r] = grid[0];
    }
    par_for(n_ends * b->per + n_ends, trial_item, b);
    if (lo == hi)
        return;
    for (int r = 0; r < n_ends; r++) {
        const trial *t = &b->t[r * b->per + hi - lo], *p = &b->pre[r];
        int64_t low = t->status == LR_OK && t->usable ? t->cost.peak_bytes : INT64_MAX;
        if (low < INT64_MAX && p->done && p->status == LR_OK && p->usable &&
            p->cost.peak_bytes < low)
            low = p->cost.peak_bytes;
        if (b->ref[r] < low) /* (another end's) */
            low = b->ref[r];
        int first = lo;
        for (int n = hi - 1; n >= lo && low < INT64_MAX && first == lo; n--)
            if (!strategy_near_tie(strategy_parts_floor(b->net, b->cfg, b->ends[r], n, saved[r],
                                                        &b->rec[r]),
                                   low))
                first = n + 1;
        b->n_from[r] = first, b->n_to[r] = hi - 1;
        for (int n = lo; n < first && b->keep && !(skip && skip[r]); n++)
            b->keep[r * b->per + n - lo].pruned = true;
    }
    b->early = true;
    par_for(n_ends * b->per, trial_item, b);
    b->early = false;
    for (int r = 0; r < n_ends; r++) {
        int64_t own = lowest_measured(b, r);
        b->ref[r] = past[r] || own < b->other ? own : b->other;
    }
    par_for(n_ends * b->per, trial_item, b);
}

/* keep: NULL, or (rows 0) filled with the stages measured */
static lr_status single_stage_as(const net_t *net, const plan_config *cfg, plan_partitioning kind,
                                 int region_end, bool fixed_region, int rows, plan_choice *out,
                                 strategy_stage_memo *keep)
{
    plan_spec *sp = &out->spec;
    sp->kind = kind;
    sp->n_stages = 1;
    int ends[PLAN_MAX_STAGES], n_ends = region_ends(net, region_end, fixed_region, ends);
    int lo = rows ? rows : 2, hi = rows ? rows : SINGLE_STAGE_MAX_N, per = hi - lo + 1;
    plan_phases *rec = malloc(sizeof *rec * (size_t)n_ends);
    trial *t = calloc((size_t)(n_ends * per), sizeof *t);
    LR_ASSERT(rec && t);
    if (keep) {
        LR_ASSERT(rows == 0);
        keep->kind = kind, keep->bn = cfg->bn, keep->n_ends = n_ends;
        memcpy(keep->ends, ends, sizeof(int) * (size_t)n_ends);
        keep->v = calloc((size_t)(n_ends * per), sizeof *keep->v);
        LR_ASSERT(keep->v != NULL);
    }
    lr_status st = ends_phases(net, cfg, ends, n_ends, rec);
    /* The end of the lowest floor first; then an end whose floor is past the near-tie of the
     * lowest peak found there is skipped: none of its plans can be chosen (the final lowest is
     * no higher, its near-tie no wider), nor searched past 32 (at high resolution, where N runs
     * to the thousands, that search is most of the cost: resnet50 --bn stripe --fit h100-80gb
     * overl-h 4.9 s with it). A memo records such ends, and the hybrid search skips them too
     * (strategy_stage_memo_beyond). */
    int first = -1;
    bool skip[PLAN_MAX_STAGES] = {false}, beyond[PLAN_MAX_STAGES] = {false};
    int64_t floor_at[PLAN_MAX_STAGES], saved[PLAN_MAX_STAGES];
    for (int r = 0; r < n_ends; r++)
        saved[r] = strategy_saved_bytes(net, cfg, 0, ends[r]);
    trial pre[PLAN_MAX_STAGES];
    memset(pre, 0, sizeof pre);
    trial_batch batch = {.net = net, .cfg = cfg, .kind = kind, .ends = ends, .n_ends = n_ends,
                         .rec = rec, .lo = lo, .per = per, .t = t, .pre = pre,
                         .keep = keep ? keep->v : NULL, .other = INT64_MAX};
    if (st == LR_OK && n_ends > 1) {
        for (int r = 0; r < n_ends; r++) {
            floor_at[r] = strategy_end_floor(net, cfg, ends[r], &rec[r]);
            if (first < 0 || floor_at[r] < floor_at[first])
                first = r;
        }
        for (int r = 0; r < n_ends; r++)
            skip[r] = r != first;
        measure_ends(&batch, skip, saved);
        int64_t low = INT64_MAX;
        for (int k = first * per; k < (first + 1) * per; k++)
            if (t[k].status == LR_OK && t[k].usable && t[k].cost.peak_bytes < low)
                low = t[k].cost.peak_bytes;
        for (int r = 0; r < n_ends && low < INT64_MAX; r++)
            beyond[r] = r != first && !strategy_near_tie(floor_at[r], low);
        batch.other = low;
        memcpy(skip, beyond, sizeof skip);
        if (keep)
            memcpy(keep->beyond, beyond, sizeof keep->beyond);
    }
    if (st == LR_OK) {
        if (first >= 0)
            skip[first] = true; /* measured above */
        measure_ends(&batch, skip, saved);
    }
    strategy_pick pick;
    strategy_pick_init(&pick);
    for (int k = 0; k < n_ends * per && st == LR_OK; k++) {
        sp->cut[0] = ends[k / per];
        sp->parts[0] = lo + k % per;
        if (t[k].status != LR_OK) /* again here, for its message (errors are per thread) */
            st = single_stage_cost(net, cfg, kind, sp->cut[0], sp->parts[0], &rec[k / per],
                                   batch.scripts[k / per], INT64_MAX, &t[k].cost, &t[k].usable,
                                   NULL);
        else if (t[k].usable)
            strategy_pick_offer(&pick, sp, &t[k].cost);
    }
    /* past 32, from each end's best of 2..32 */
    for (int r = 0; r < n_ends && st == LR_OK && rows == 0; r++) {
        if (beyond[r])
            continue;
        parts_search p = {.net = net, .cfg = cfg, .kind = kind, .end = ends[r], .rec = &rec[r],
                          .pick = &pick, .pre_n = batch.pre_n[r], .pre = &pre[r],
                          .scripts = batch.scripts[r]};
        for (int k = r * per; k < (r + 1) * per; k++)
            if (t[k].usable && (p.best == 0 || t[k].cost.peak_bytes < p.value))
                p.best = lo + k % per, p.value = t[k].cost.peak_bytes;
        int max_parts = strategy_max_parts(net, kind, 0, ends[r]);
        if (p.best > 0 && max_parts > SINGLE_STAGE_MAX_N)
            st = search_past_exhaustive(&p, max_parts);
    }
    free(rec), free(t);
    for (int r = 0; r < n_ends; r++)
        plan_scripts_free(batch.own[r]);
    if (st == LR_OK && pick.n > 0) {
        int best = strategy_pick_best(&pick);
        *sp = pick.v[best].spec;
        out->cost = pick.v[best].cost;
    } else if (st == LR_OK) { /* nothing lrcnn would build: the default, whose emission says why */
        sp->cut[0] = region_end;
        sp->parts[0] = lo;
        st = strategy_evaluate(net, cfg, sp, &out->cost);
    }
    strategy_pick_free(&pick);
    out->rows_chosen = rows == 0;
    out->region_chosen = !fixed_region && n_ends > 1;
    return st;
}

/* Under --boundaries auto a tiled stage is searched keeping its boundaries and recomputing them,
 * and the objective picks between the two answers (the memo holds the stages that keep them). */
static lr_status single_stage(const net_t *net, const plan_config *cfg, plan_partitioning kind,
                              int region_end, bool fixed_region, int rows, plan_choice *out,
                              strategy_stage_memo *keep)
{
    if (!cfg->boundaries_auto || kind == PART_OVERLAP)
        return single_stage_as(net, cfg, kind, region_end, fixed_region, rows, out, keep);
    plan_config as = *cfg;
    as.boundaries_auto = false;
    as.recompute_boundaries = false;
    plan_choice kept = *out, rec = *out;
    LR_TRY(single_stage_as(net, &as, kind, region_end, fixed_region, rows, &kept, keep));
    as.recompute_boundaries = true;
    lr_status st = single_stage_as(net, &as, kind, region_end, fixed_region, rows, &rec, NULL);
    if (st != LR_OK) {
        if (keep)
            strategy_stage_memo_free(keep);
        return st;
    }
    rec.spec.recompute = 1;
    strategy_pick pick;
    strategy_pick_init(&pick);
    strategy_pick_offer(&pick, &kept.spec, &kept.cost);
    strategy_pick_offer(&pick, &rec.spec, &rec.cost);
    *out = strategy_pick_best(&pick) == 0 ? kept : rec;
    strategy_pick_free(&pick);
    /* the spec says what the plan does (a stage with stripe BatchNorm keeps its boundaries) */
    plan_t *plan;
    st = plan_build(net, cfg, &out->spec, &plan);
    if (st == LR_OK) {
        out->spec.recompute = plan->spec.recompute;
        plan_free(plan);
    } else if (keep) {
        strategy_stage_memo_free(keep);
    }
    return st;
}

lr_status strategy_single_stage(const net_t *net, const plan_config *cfg, plan_partitioning kind,
                                int region_end, bool fixed_region, int rows, plan_choice *out)
{
    return single_stage(net, cfg, kind, region_end, fixed_region, rows, out, NULL);
}

lr_status strategy_single_stage_kept(const net_t *net, const plan_config *cfg,
                                     plan_partitioning kind, int region_end, plan_choice *out,
                                     strategy_stage_memo *keep)
{
    memset(keep, 0, sizeof *keep);
    return single_stage(net, cfg, kind, region_end, false, 0, out, keep);
}

void strategy_stage_memo_free(strategy_stage_memo *m)
{
    free(m->v);
    m->v = NULL;
    m->n_ends = 0;
}

/* The index of `end` among the memo's region ends for kind and bn; -1 when it has none. */
static int memo_end(const strategy_stage_memo *m, plan_partitioning kind, plan_bn bn, int end)
{
    if (!m || !m->v || m->kind != kind || m->bn != bn)
        return -1;
    for (int r = 0; r < m->n_ends; r++)
        if (m->ends[r] == end)
            return r;
    return -1;
}

bool strategy_stage_memo_beyond(const strategy_stage_memo *m, plan_partitioning kind, plan_bn bn,
                                int end)
{
    int r = memo_end(m, kind, bn, end);
    return r >= 0 && m->beyond[r];
}

/* The memo's entry for (0, end]:parts of kind under bn, measured or not; NULL when it has none. */
static const strategy_kept_stage *memo_entry(const strategy_stage_memo *m, plan_partitioning kind,
                                             plan_bn bn, int end, int parts)
{
    int r = parts < 2 || parts > SINGLE_STAGE_MAX_N ? -1 : memo_end(m, kind, bn, end);
    return r < 0 ? NULL : &m->v[r * (SINGLE_STAGE_MAX_N - 1) + parts - 2];
}

bool strategy_stage_memo_pruned(const strategy_stage_memo *m, plan_partitioning kind, plan_bn bn,
                                int end, int parts)
{
    const strategy_kept_stage *k = memo_entry(m, kind, bn, end, parts);
    return k && k->pruned;
}

const strategy_kept_stage *strategy_stage_memo_find(const strategy_stage_memo *m,
                                                    plan_partitioning kind, plan_bn bn, int end,
                                                    int parts)
{
    const strategy_kept_stage *k = memo_entry(m, kind, bn, end, parts);
    return k && k->measured ? k : NULL;
}

void strategy_scaled_rows(const net_t *net, plan_spec *spec, int rows)
{
    int h0 = net->nodes[0].h;
    int in = 0;
    for (int s = 0; s < spec->n_stages; s++) {
        double n = (double)rows * net->nodes[in].h / h0;
        spec->parts[s] = n < 1 ? 1 : (int)lround(n);
        in = spec->cut[s];
    }
}

