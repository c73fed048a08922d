/* lanes.c - the two lanes of a schedule (compute, host-device copies) and what each step must
 * wait for of the other lane (sim.h, sim_lanes): the dependencies an executor with two streams
 * and events enforces, and a timeline models.
 *
 * Per tier, the arena's byte ranges where tensors start and end are the leaves of two max-trees:
 * one holds the last compute mark that touched each range, the other the last copy mark. Marks
 * grow along each lane, so "the last user of this range" is the largest mark painted over it, and
 * painting is a max: O(log tensors) per tensor a step touches.
 *
 * Deliberately not here: durations (planner/timeline.c), streams and events (the CUDA backend).
 */
#include <stdlib.h>
#include <string.h>

#include "sim.h"

typedef struct {
    int n;             /* leaves */
    int64_t *mx, *lz;  /* per tree node: max painted under it; painted over all of it */
} maxtree;

struct sim_lanes {
    int n_tensors;
    int32_t *leaf_lo, *leaf_hi; /* per tensor: its leaves [lo, hi) in its tier's trees */
    int64_t *kernel_wrote, *copy_wrote; /* per tensor: last mark of each lane that wrote it */
    maxtree used_by[TIER_COUNT][2];     /* [tier][0]: compute marks, [1]: copy marks */
};

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

static void tree_paint(maxtree *t, int node, int l, int r, int a, int b, int64_t v)
{
    if (b <= l || r <= a)
        return;
    t->mx[node] = max64(t->mx[node], v);
    if (a <= l && r <= b) {
        t->lz[node] = max64(t->lz[node], v);
        return;
    }
    int m = l + (r - l) / 2;
    tree_paint(t, 2 * node + 1, l, m, a, b, v);
    tree_paint(t, 2 * node + 2, m, r, a, b, v);
}

static int64_t tree_max(const maxtree *t, int node, int l, int r, int a, int b)
{
    if (b <= l || r <= a)
        return 0;
    if (a <= l && r <= b)
        return t->mx[node];
    int m = l + (r - l) / 2;
    return max64(t->lz[node], max64(tree_max(t, 2 * node + 1, l, m, a, b),
                                    tree_max(t, 2 * node + 2, m, r, a, b)));
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The index of v in sorted c[0..n) (v is there). */
static int32_t find(const int64_t *c, int n, int64_t v)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int m = lo + (hi - lo) / 2;
        if (c[m] < v)
            lo = m + 1;
        else
            hi = m;
    }
    return lo;
}

static bool placed(const sched_t *s, const int64_t *offsets, int t, sched_tier tier)
{
    return offsets[t] >= 0 && s->tensors[t].bytes > 0 && s->tensors[t].tier == tier;
}

/* The leaves of one tier: the distinct start and end offsets of its tensors, sorted. */
static lr_status tier_leaves(sim_lanes *k, const sched_t *s, const int64_t *offsets, sched_tier tier)
{
    int64_t *c = malloc(sizeof(int64_t) * (2 * (size_t)s->n_tensors + 1));
    if (!c)
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    int n = 0;
    for (int t = 0; t < s->n_tensors; t++)
        if (placed(s, offsets, t, tier)) {
            c[n++] = offsets[t];
            c[n++] = offsets[t] + s->tensors[t].bytes;
        }
    qsort(c, (size_t)n, sizeof(int64_t), cmp64);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (m == 0 || c[i] != c[m - 1])
            c[m++] = c[i];
    for (int t = 0; t < s->n_tensors; t++)
        if (placed(s, offsets, t, tier)) {
            k->leaf_lo[t] = find(c, m, offsets[t]);
            k->leaf_hi[t] = find(c, m, offsets[t] + s->tensors[t].bytes);
        }
    free(c);
    int leaves = m > 1 ? m - 1 : 1;
    for (int lane = 0; lane < 2; lane++) {
        maxtree *tr = &k->used_by[tier][lane];
        tr->n = leaves;
        tr->mx = calloc(4 * (size_t)leaves, sizeof(int64_t));
        tr->lz = calloc(4 * (size_t)leaves, sizeof(int64_t));
        if (!tr->mx || !tr->lz)
            return lr_fail(LR_ERR_NOMEM, "out of memory");
    }
    return LR_OK;
}

lr_status sim_lanes_new(const sched_t *s, const int64_t *offsets, sim_lanes **out)
{
    *out = NULL;
    sim_lanes *k = calloc(1, sizeof *k);
    if (!k)
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    size_t n = (size_t)s->n_tensors + 1;
    k->n_tensors = s->n_tensors;
    k->leaf_lo = calloc(n, sizeof(int32_t));
    k->leaf_hi = calloc(n, sizeof(int32_t));
    k->kernel_wrote = calloc(n, sizeof(int64_t));
    k->copy_wrote = calloc(n, sizeof(int64_t));
    lr_status st = k->leaf_lo && k->leaf_hi && k->kernel_wrote && k->copy_wrote
                       ? LR_OK
                       : lr_fail(LR_ERR_NOMEM, "out of memory");
    for (int tier = 0; tier < TIER_COUNT && st == LR_OK; tier++)
        st = tier_leaves(k, s, offsets, (sched_tier)tier);
    if (st != LR_OK) {
        sim_lanes_free(k);
        return st;
    }
    *out = k;
    return LR_OK;
}

void sim_lanes_clear(sim_lanes *k)
{
    size_t n = (size_t)k->n_tensors + 1;
    memset(k->kernel_wrote, 0, n * sizeof(int64_t));
    memset(k->copy_wrote, 0, n * sizeof(int64_t));
    for (int tier = 0; tier < TIER_COUNT; tier++)
        for (int lane = 0; lane < 2; lane++) {
            maxtree *tr = &k->used_by[tier][lane];
            memset(tr->mx, 0, 4 * (size_t)tr->n * sizeof(int64_t));
            memset(tr->lz, 0, 4 * (size_t)tr->n * sizeof(int64_t));
        }
}

void sim_lanes_free(sim_lanes *k)
{
    if (!k)
        return;
    free(k->leaf_lo);
    free(k->leaf_hi);
    free(k->kernel_wrote);
    free(k->copy_wrote);
    for (int tier = 0; tier < TIER_COUNT; tier++)
        for (int lane = 0; lane < 2; lane++) {
            free(k->used_by[tier][lane].mx);
            free(k->used_by[tier][lane].lz);
        }
    free(k);
}

/* ------------------------------------------------------------------ what a step touches */

sim_lane sim_step_lane(const sched_t *s, const sched_step *p)
{
    switch (p->op) {
    case STEP_RUN:
        return SIM_LANE_COMPUTE;
    case STEP_COPY:
        return s->tensors[p->t].tier != s->tensors[p->src].tier && !p->accumulate ? SIM_LANE_COPY
                                                                                   : SIM_LANE_COMPUTE;
    case STEP_ALLOC:
        return sched_zeroed_on_alloc(&s->tensors[p->t]) ? SIM_LANE_COMPUTE : SIM_LANE_NONE;
    default:
        return SIM_LANE_NONE;
    }
}

#define MAX_TOUCHED 32

typedef struct {
    int n_read, n_written;
    int32_t read[MAX_TOUCHED], written[MAX_TOUCHED];
} touched;

static void add(int32_t *list, int *n, int32_t t)
{
    if (t >= 0) {
        LR_ASSERT(*n < MAX_TOUCHED);
        list[(*n)++] = t;
    }
}

/* A RUN step's tensors by what it does to them (exec.h, exec_backend.run). Values, their
 * gradients and parameters are sorted exactly (they are what copies and memory reuse meet);
 * statistics, reductions, optimizer state, the loss and the workspace count as written. */
static void run_touches(const sched_t *s, const sched_step *p, touched *x)
{
    const sched_run *r = sched_run_of(s, p);
    bool backward = p->pass == PASS_BWD || p->pass == PASS_GSTATS;
    bool update = p->pass == PASS_UPDATE;
    for (int k = 0; k < r->n_in && k < 8; k++) {
        add(x->read, &x->n_read, r->in[k]);
        if (backward)
            add(x->written, &x->n_written, r->din[k]);
    }
    add(backward ? x->read : x->written, backward ? &x->n_read : &x->n_written, r->out);
    add(x->read, &x->n_read, r->dout);
    add(x->read, &x->n_read, r->labels);
    add(update ? x->written : x->read, update ? &x->n_written : &x->n_read, r->param);
    const int32_t others[] = {r->param_grad, r->opt_state, r->running, r->aux, r->gred, r->loss,
                              r->workspace};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        add(x->written, &x->n_written, others[i]);
}

static void step_touches(const sched_t *s, const sched_step *p, touched *x)
{
    x->n_read = x->n_written = 0;
    if (p->op == STEP_RUN) {
        run_touches(s, p, x);
    } else if (p->op == STEP_COPY) {
        add(x->read, &x->n_read, p->src);
        add(x->written, &x->n_written, p->t); /* accumulating: read too, the same memory */
    } else if (p->op == STEP_ALLOC) {
        add(x->written, &x->n_written, p->t);
    }
}

/* ------------------------------------------------------------------ marks */

static maxtree *tree_of(sim_lanes *k, const sched_t *s, int t, int lane)
{
    return &k->used_by[s->tensors[t].tier][lane];
}

static int64_t range_max(const sim_lanes *k, const sched_t *s, int t, int lane)
{
    if (s->tensors[t].bytes <= 0 || k->leaf_hi[t] <= k->leaf_lo[t])
        return 0;
    const maxtree *tr = &k->used_by[s->tensors[t].tier][lane];
    return tree_max(tr, 0, 0, tr->n, k->leaf_lo[t], k->leaf_hi[t]);
}

static void range_paint(sim_lanes *k, const sched_t *s, int t, int lane, int64_t mark)
{
    if (s->tensors[t].bytes <= 0 || k->leaf_hi[t] <= k->leaf_lo[t])
        return;
    maxtree *tr = tree_of(k, s, t, lane);
    tree_paint(tr, 0, 0, tr->n, k->leaf_lo[t], k->leaf_hi[t], mark);
}

int64_t sim_lanes_wait(const sim_lanes *k, const sched_t *s, const sched_step *p)
{
    sim_lane lane = sim_step_lane(s, p);
    if (lane == SIM_LANE_NONE)
        return 0;
    touched x;
    step_touches(s, p, &x);
    int64_t w = 0;
    if (lane == SIM_LANE_COPY) {
        w = max64(k->kernel_wrote[p->src], range_max(k, s, p->t, 0));
        return w;
    }
    for (int i = 0; i < x.n_read; i++)
        w = max64(w, k->copy_wrote[x.read[i]]);
    for (int i = 0; i < x.n_written; i++)
        w = max64(w, range_max(k, s, x.written[i], 1));
    return w;
}

void sim_lanes_done(sim_lanes *k, const sched_t *s, const sched_step *p, int64_t mark)
{
    sim_lane lane = sim_step_lane(s, p);
    if (lane == SIM_LANE_NONE)
        return;
    touched x;
    step_touches(s, p, &x);
    int tree = lane == SIM_LANE_COPY ? 1 : 0;
    int64_t *wrote = lane == SIM_LANE_COPY ? k->copy_wrote : k->kernel_wrote;
    for (int i = 0; i < x.n_read; i++)
        range_paint(k, s, x.read[i], tree, mark);
    for (int i = 0; i < x.n_written; i++) {
        range_paint(k, s, x.written[i], tree, mark);
        wrote[x.written[i]] = max64(wrote[x.written[i]], mark);
    }
}
