/* auto_dp.c - the auto planner's dynamic programme: over the candidate cuts, partial plans are
 * Pareto labels (carried bytes, extra compute) extended by measured stage edges within a peak
 * bound and a compute cap (auto_search.h has the legend).
 *
 * Deliberately not here: measuring the edges (auto_probe.c) or checking the winner against the
 * closed form (auto.c).
 */
#include "auto_search.h"

#include <stdlib.h>
#include <string.h>

/* Pareto labels kept per cut; more are thinned evenly (never reached on the zoo). */
#define LABEL_CAP 512

/* ------------------------------------------------------------------ labels */

typedef struct {
    dp_plan plan;
    int label;              /* the partial plan the last stage extends */
    const stage_edge *last; /* NULL: column */
} dp_best;

void auto_labels_init(labels *L, int m)
{
    memset(L, 0, sizeof *L);
    L->at = calloc((size_t)m + 1, sizeof(int *));
    L->n_at = calloc((size_t)m + 1, sizeof(int));
    L->cap_at = calloc((size_t)m + 1, sizeof(int));
    LR_ASSERT(L->at && L->n_at && L->cap_at);
}

void auto_labels_free(labels *L, int m)
{
    for (int i = 0; i <= m; i++)
        free(L->at[i]);
    free(L->at), free(L->n_at), free(L->cap_at), free(L->pool), free(L->tmp);
}

static void push_label(labels *L, int cut, label x)
{
    if (L->n == L->cap) {
        L->cap = L->cap ? 2 * L->cap : 1024;
        L->pool = realloc(L->pool, sizeof(label) * (size_t)L->cap);
        LR_ASSERT(L->pool != NULL);
    }
    if (L->n_at[cut] == L->cap_at[cut]) {
        L->cap_at[cut] = L->cap_at[cut] ? 2 * L->cap_at[cut] : 16;
        L->at[cut] = realloc(L->at[cut], sizeof(int) * (size_t)L->cap_at[cut]);
        LR_ASSERT(L->at[cut] != NULL);
    }
    x.id = L->n;
    L->pool[L->n] = x;
    L->at[cut][L->n_at[cut]++] = L->n++;
}

/* Whether some way to finish from cut i fits: the least live bytes and the least compute any
 * completion needs (completion_bounds) are both within the query's bounds. */
static bool can_finish(const dp_query *q, int i, const label *x)
{
    const space *sp = q->sp;
    if (sp->need[i] == INT64_MAX || sp->least_extra[i] == INT64_MAX)
        return false;
    return lr_sat_add(q->s->persistent, lr_sat_add(x->carried, sp->need[i])) <= q->bound &&
           lr_sat_add(x->extra, sp->least_extra[i]) <= q->extra_cap;
}

static int by_carried(const void *x, const void *y)
{
    const label *p = x, *q = y;
    if (p->carried != q->carried)
        return p->carried < q->carried ? -1 : 1;
    if (p->extra != q->extra)
        return p->extra < q->extra ? -1 : 1;
    if (p->peak != q->peak)
        return p->peak < q->peak ? -1 : 1;
    return (p->id > q->id) - (p->id < q->id); /* never equal: the order is deterministic */
}

/* Keeps the labels that can still finish within the bounds (need, least_extra) and that no
 * other beats in both carried bytes and compute (the lower peak on ties). */
static void prune(labels *L, const dp_query *q, int cut)
{
    int *ids = L->at[cut], n = L->n_at[cut], kept = 0;
    if (n > L->cap_tmp) {
        L->cap_tmp = 2 * n;
        L->tmp = realloc(L->tmp, sizeof(label) * (size_t)L->cap_tmp);
        LR_ASSERT(L->tmp != NULL);
    }
    for (int k = 0; k < n; k++)
        if (can_finish(q, cut, &L->pool[ids[k]]))
            L->tmp[kept++] = L->pool[ids[k]];
    qsort(L->tmp, (size_t)kept, sizeof(label), by_carried);
    n = kept, kept = 0;
    int64_t best_extra = INT64_MAX;
    for (int k = 0; k < n; k++)
        if (L->tmp[k].extra < best_extra) {
            best_extra = L->tmp[k].extra;
            ids[kept++] = L->tmp[k].id;
        }
    if (kept > LABEL_CAP) {
        for (int k = 0; k < LABEL_CAP; k++)
            ids[k] = ids[(int64_t)k * (kept - 1) / (LABEL_CAP - 1)];
        kept = LABEL_CAP;
    }
    L->n_at[cut] = kept;
}

static void offer(dp_best *best, int64_t extra, int64_t peak, int id, const stage_edge *e)
{
    dp_plan *p = &best->plan;
    if (p->found && (extra > p->extra || (extra == p->extra && peak >= p->peak)))
        return;
    p->found = true, p->extra = extra, p->peak = peak;
    best->label = id, best->last = e;
}

/* Every stage that can follow label `id` at cut i within the bounds. */
static void extend(const dp_query *q, labels *L, int i, int id, dp_best *best)
{
    const space *sp = q->sp;
    int64_t P = q->s->persistent;
    label x = L->pool[id];
    for (int k = sp->from[i]; k < sp->from[i + 1]; k++) {
        const stage_edge *e = &sp->edges.v[k];
        int64_t level = lr_sat_add(P, lr_sat_add(x.carried, e->local));
        int64_t extra = lr_sat_add(x.extra, e->extra);
        if (level > q->bound || extra > q->extra_cap)
            continue;
        int64_t peak = level > x.peak ? level : x.peak;
        if (e->last) {
            int64_t tail = lr_sat_add(P, lr_sat_add(x.carried, e->tail));
            if (tail <= q->bound)
                offer(best, extra, tail > peak ? tail : peak, id, e);
        } else if (x.depth + 2 < PLAN_MAX_STAGES) {
            label y = {lr_sat_add(x.carried, e->carried), extra, peak, id, k, x.depth + 1, -1};
            if (can_finish(q, e->b, &y))
                push_label(L, e->b, y);
        }
    }
}

static void trace_back(const labels *L, const space *sp, dp_best *best)
{
    dp_plan *p = &best->plan;
    if (!best->last) {
        p->n_stages = 0;
        return;
    }
    const stage_edge *rev[PLAN_MAX_STAGES];
    int n = 0;
    rev[n++] = best->last;
    for (int id = best->label; L->pool[id].edge >= 0; id = L->pool[id].parent)
        rev[n++] = &sp->edges.v[L->pool[id].edge];
    p->n_stages = n;
    for (int k = 0; k < n; k++)
        p->stage[k] = rev[n - 1 - k];
}

/* The least compute with every moment at most q->bound (column included), then the lowest
 * peak among those. */
dp_plan auto_dp_least_extra(const dp_query *q, labels *L)
{
    const search *s = q->s;
    dp_best best;
    memset(&best, 0, sizeof best);
    if (s->col_peak <= q->bound && q->extra_cap >= 0)
        offer(&best, 0, s->col_peak, -1, NULL);
    L->n = 0;
    for (int i = 0; i <= s->m; i++)
        L->n_at[i] = 0;
    label start = {0, 0, 0, -1, -1, 0, -1};
    push_label(L, 0, start);
    for (int i = 0; i < s->m; i++) {
        prune(L, q, i);
        for (int k = 0; k < L->n_at[i]; k++)
            extend(q, L, i, L->at[i][k], &best);
    }
    trace_back(L, q->sp, &best);
    return best.plan;
}

/* The lowest peak within q.extra_cap: bisection on the bound, each feasible answer lowering it
 * to that plan's own peak. Column (extra 0) is always within a cap; a bisection under a lower
 * peak known already starts from it (a loose bound is where the labels are many: at resnet101's
 * 31249x31249 input, 2ps-h's first bound, half column's 2.4 TB, kept 362,401 labels, 75% of
 * the bisection's, for an answer far above the 84.6 GB of its single-stage seed). */
dp_plan auto_dp_lowest_peak(dp_query q, labels *L, int64_t under)
{
    int64_t lo = q.s->persistent, hi = q.s->col_peak < under ? q.s->col_peak : under;
    dp_plan best = {.found = true, .extra = 0, .peak = hi};
    while (hi - lo > 1) {
        q.bound = lo + (hi - lo) / 2;
        dp_plan p = auto_dp_least_extra(&q, L);
        if (p.found) {
            best = p;
            hi = p.peak > lo ? p.peak : lo + 1;
        } else {
            lo = q.bound;
        }
    }
    return best;
}

/* ------------------------------------------------------------------ completion bounds */

static int64_t max64(int64_t x, int64_t y)
{
    return x > y ? x : y;
}

/* need and least_extra (space), backwards from the region end. */
void auto_completion_bounds(const search *s, space *sp)
{
    int m = s->m;
    free(sp->need), free(sp->least_extra);
    sp->need = malloc(sizeof(int64_t) * (size_t)(m + 1));
    sp->least_extra = malloc(sizeof(int64_t) * (size_t)(m + 1));
    LR_ASSERT(sp->need && sp->least_extra);
    sp->need[m] = sp->least_extra[m] = INT64_MAX; /* no stage starts at the region end */
    for (int i = m - 1; i >= 0; i--) {
        int64_t need = INT64_MAX, extra = INT64_MAX;
        for (int k = sp->from[i]; k < sp->from[i + 1]; k++) {
            const stage_edge *e = &sp->edges.v[k];
            int64_t n = max64(e->local, e->tail), x = e->extra;
            if (!e->last) {
                if (sp->need[e->b] == INT64_MAX)
                    continue;
                n = max64(e->local, lr_sat_add(e->carried, sp->need[e->b]));
                x = lr_sat_add(e->extra, sp->least_extra[e->b]);
            }
            need = n < need ? n : need;
            extra = x < extra ? x : extra;
        }
        sp->need[i] = need;
        sp->least_extra[i] = extra;
    }
}

