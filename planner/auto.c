/* auto.c - the auto planner: stage probes, a dynamic programme over cuts, exact evaluation of
 * the winners (see auto.h for the search space and why the stage model is exact).
 *
 * Legend: a, b, i index candidate cuts (cut[0] = node 0, the input; cut[m] = the region end);
 * stage (a, b] holds nodes cut[a]+1 .. cut[b]; N partitions; P persistent bytes (weights,
 * gradients, optimizer state, input batch, workspace). "extra" is compute above column.
 * Deliberately not here: building, emitting or evaluating plans (plan.c, emit.c, closed.c).
 */
#include "auto.h"

#include <math.h>
#include <string.h>

#include "analysis.h"

/* N tried for a stage (auto.h); the whole region also gets every N in 2..WHOLE_MAX_N, as the
 * single-stage strategies do. */
static const int stage_parts[] = {2, 3, 4, 6, 8, 12, 16, 24, 32};
#define N_STAGE_PARTS (int)(sizeof stage_parts / sizeof stage_parts[0])
#define WHOLE_MAX_N 32
/* A partitioned stage that is not a resolution stage or the whole region stops trying larger N
 * after this many in a row do not lower its own peak: past its best N a stage only gets worse
 * (more boundary rows, more halo compute, a higher peak). */
#define PARTS_PATIENCE 2
/* Other stages span at most this many candidate cuts (e.g. 8 ResNet blocks): longer ones never
 * won on the zoo and cost the most to measure (the checkpoint strategy's own segments, however
 * long, are a seed). */
#define SPAN_MAX 8
/* Candidate cuts kept at most (evenly thinned, resolution cuts and the region end always kept):
 * with SPAN_MAX it lets a plan cover the region in fewer than PLAN_MAX_STAGES stages and bounds
 * the search on very deep nets (ResNet-152 has 54; the zoo is below). */
#define CUTS_MAX 96
/* Pareto labels kept per cut; more are thinned evenly (never reached on the zoo). */
#define LABEL_CAP 512

/* ------------------------------------------------------------------ search state */

typedef struct {
    int a, b, parts;
    bool last;       /* the last stage: its last partition keeps its activations (store_last) */
    int64_t local;   /* peak while it runs, above P + what earlier stages carry */
    int64_t carried; /* bytes it leaves live until its backward (output, boundaries, BN stats) */
    int64_t tail;    /* last stage: the column tail's peak above P + what earlier stages carry */
    int64_t extra;   /* compute above column */
} stage_edge;

typedef struct {
    stage_edge *v;
    int n;
} edge_list;

typedef struct {
    const net_t *net;
    plan_config cfg;
    int m;
    int *cut;            /* m + 1 node ids */
    int64_t *out_bytes;  /* output bytes of cut[i]; 0 for the input, which is persistent */
    int64_t persistent, col_peak, col_flops;
    int64_t *lp1;        /* [i]: local of the LAST one-partition stage (cut[i], cut[i+1]] */
    int64_t *fck;        /* [i]: extra of the non-last one-partition stage (0, cut[i]] */
    bool *special;       /* (m+1) x (m+1): the whole region and resolution stages */
    /* exact BN lower bound (bn_bounds): per BatchNorm k, anc[k*n + x] = forward FLOPs of its
     * ancestors above node x, desc[k*n + y] = backward FLOPs of its descendants up to node y */
    int nbn;
    int *bn_node;
    int64_t *anc, *desc;
    int n_evals;
    int model_misses;
} search;

typedef struct {
    plan_partitioning kind;
    plan_bn bn;
    edge_list edges; /* sorted by a; from[a] .. from[a+1] */
    int *from;
    /* from cut i to the end, over every completion: the least live bytes above P + carried-in,
     * and the least extra compute (INT64_MAX: none) */
    int64_t *need, *least_extra;
} space;

/* The closed form of a spec on `net`, when lrcnn would build its schedule (plan_run_bound within
 * PLAN_MAX_RUNS) and can count its FLOPs; *usable is false otherwise: like the fixed strategies'
 * N searches, auto leaves such plans out. */
static lr_status evaluate_on(search *s, const net_t *net, plan_bn bn, const plan_spec *sp,
                             plan_cost *c, bool *usable)
{
    plan_config cfg = s->cfg;
    cfg.bn = bn;
#pragma omp atomic
    s->n_evals++;
    return strategy_evaluate_usable(net, &cfg, sp, c, usable);
}

static lr_status evaluate(search *s, plan_bn bn, const plan_spec *sp, plan_cost *c, bool *usable)
{
    return evaluate_on(s, s->net, bn, sp, c, usable);
}

/* For the measurements every plan builds on (column, one-partition stages). */
static lr_status evaluate_base(search *s, const plan_spec *sp, plan_cost *c)
{
    bool usable;
    LR_TRY(evaluate(s, BN_EXACT, sp, c, &usable));
    if (!usable)
        return lr_fail(LR_ERR_INPUT, "auto: %s at batch %d: a plan of one-partition stages cannot "
                                     "be counted: use a smaller batch or input", s->net->name, s->cfg.batch);
    return LR_OK;
}

/* ------------------------------------------------------------------ candidate cuts */

/* Cutting right before a relu or dropout that is the only reader keeps the same rows as cutting
 * right after it, and the cut after holds what relu's backward reads anyway. */
static bool worth_cutting(const net_t *net, int l, int region_end)
{
    if (l == region_end || net->nodes[l].n_consumers != 1)
        return true;
    net_op next = net->nodes[net->cons_node[net->cons_off[l]]].op;
    return next != OP_RELU && next != OP_DROPOUT;
}

static void find_cuts(search *s, int region_end)
{
    const net_t *net = s->net;
    bool *cut = calloc((size_t)net->n_nodes, 1);
    bool *keep = calloc((size_t)net->n_nodes, 1);
    int *res = malloc(sizeof(int) * PLAN_MAX_STAGES);
    LR_ASSERT(cut && keep && res);
    rowdep_cuts(net, cut);
    for (int l = 1; l <= region_end; l++)
        keep[l] = cut[l] && worth_cutting(net, l, region_end);
    int nres = strategy_resolution_cuts(net, region_end, res, PLAN_MAX_STAGES), count = 0;
    for (int l = 1; l <= region_end; l++)
        count += keep[l];
    for (int l = 1, seen = 0; l <= region_end && count > CUTS_MAX; l++)
        if (keep[l] && l != region_end) { /* the first cut of each CUTS_MAX-th share */
            int64_t k = seen++;
            keep[l] = k * CUTS_MAX / count != (k + 1) * CUTS_MAX / count;
        }
    for (int k = 0; k < nres; k++)
        keep[res[k]] = true;
    s->cut = malloc(sizeof(int) * (size_t)(region_end + 1));
    LR_ASSERT(s->cut != NULL);
    s->m = 0;
    s->cut[0] = 0;
    for (int l = 1; l <= region_end; l++)
        if (keep[l])
            s->cut[++s->m] = l;
    s->special = calloc((size_t)(s->m + 1) * (s->m + 1), 1);
    LR_ASSERT(s->special != NULL);
    s->special[s->m] = true; /* (0, m]: the whole region */
    for (int k = 0, prev = 0; k < nres; k++)
        for (int i = 1; i <= s->m; i++)
            if (s->cut[i] == res[k]) {
                s->special[prev * (s->m + 1) + i] = true;
                prev = i;
            }
    free(cut), free(keep), free(res);
}

/* ------------------------------------------------------------------ exact BN lower bound */

/* An exact-BN stage with N > 1 runs, per BatchNorm in it, a statistics pass over the
 * BatchNorm's ancestors in the stage and a gradient-statistics pass through its descendants
 * (plan.h), each over every row at least once: their forward and backward FLOPs bound the
 * stage's extra compute from below. */
static void bn_bounds(search *s)
{
    const net_t *net = s->net;
    int n = net->n_nodes, end = s->cut[s->m];
    s->nbn = 0;
    for (int l = 1; l <= end; l++)
        s->nbn += net->nodes[l].op == OP_BATCHNORM;
    s->bn_node = malloc(sizeof(int) * (size_t)(s->nbn + 1));
    s->anc = calloc((size_t)(s->nbn + 1) * n, sizeof(int64_t));
    s->desc = calloc((size_t)(s->nbn + 1) * n, sizeof(int64_t));
    bool *mark = malloc((size_t)n);
    LR_ASSERT(s->bn_node && s->anc && s->desc && mark);
    int batch = s->cfg.batch;
    for (int l = 1, k = 0; l <= end; l++) {
        if (net->nodes[l].op != OP_BATCHNORM)
            continue;
        s->bn_node[k] = l;
        int64_t *anc = s->anc + (size_t)k * n, *desc = s->desc + (size_t)k * n;
        memset(mark, 0, (size_t)n);
        mark[l] = true;
        for (int u = l; u > 0; u--) /* anc[x]: ancestors u > x */
            if (mark[u])
                for (int q = 0; q < net->nodes[u].n_inputs; q++)
                    mark[net->nodes[u].inputs[q]] = true;
        for (int x = l - 1; x >= 0; x--)
            anc[x] = anc[x + 1] + (mark[x + 1] && x + 1 < l
                                       ? cost_fwd_flops(net, x + 1, batch, net->nodes[x + 1].h)
                                       : 0);
        memset(mark, 0, (size_t)n);
        mark[l] = true;
        for (int y = l + 1; y < n; y++) { /* desc[y]: descendants l < d <= y */
            for (int q = 0; q < net->nodes[y].n_inputs; q++)
                mark[y] |= mark[net->nodes[y].inputs[q]];
            desc[y] = desc[y - 1] + (mark[y] ? cost_bwd_flops(net, y, batch, net->nodes[y].h) : 0);
        }
        k++;
    }
    free(mark);
}

static int64_t bn_extra_bound(const search *s, int a, int b)
{
    int n = s->net->n_nodes, lo = s->cut[a], hi = s->cut[b];
    int64_t sum = 0;
    for (int k = 0; k < s->nbn; k++)
        if (s->bn_node[k] > lo && s->bn_node[k] <= hi)
            sum += s->anc[(size_t)k * n + lo] + s->desc[(size_t)k * n + hi];
    return sum;
}

/* ------------------------------------------------------------------ probes */

/* What every stage measurement subtracts: P, column, and for each i the last one-partition
 * stage (cut[i], cut[i+1]] and the non-last one (0, cut[i]]. */
static lr_status measure_base(search *s)
{
    plan_spec sp;
    memset(&sp, 0, sizeof sp);
    plan_cost c;
    LR_TRY(evaluate_base(s, &sp, &c));
    s->col_peak = c.peak_bytes;
    s->col_flops = c.flops;
    s->persistent = c.static_bytes + c.input_bytes + c.workspace_bytes;
    for (int i = 0; i < s->m; i++) {
        int n = 0;
        if (i > 0)
            sp.cut[n] = s->cut[i], sp.parts[n++] = 1;
        sp.cut[n] = s->cut[i + 1], sp.parts[n++] = 1;
        sp.n_stages = n;
        LR_TRY(evaluate_base(s, &sp, &c));
        s->lp1[i] = c.stage_peak[n - 1] - s->persistent - s->out_bytes[i];
        s->fck[i] = c.flops - s->col_flops; /* a last one-partition stage recomputes nothing */
    }
    return LR_OK;
}

lr_status auto_subnet(const net_t *net, int from, net_t **out)
{
    *out = NULL;
    net_t *sub = malloc(sizeof *sub);
    if (!sub)
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    *sub = *net;
    sub->n_nodes = net->n_nodes - from;
    sub->nodes = malloc(sizeof(net_node) * (size_t)sub->n_nodes);
    sub->cons_off = sub->cons_node = sub->cons_slot = NULL;
    if (!sub->nodes) {
        free(sub);
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    }
    memcpy(sub->nodes, net->nodes + from, sizeof(net_node) * (size_t)sub->n_nodes);
    net_node *in = &sub->nodes[0];
    *in = net->nodes[0];
    in->c = net->nodes[from].c, in->h = net->nodes[from].h, in->w = net->nodes[from].w;
    for (int l = 1; l < sub->n_nodes; l++)
        for (int k = 0; k < sub->nodes[l].n_inputs; k++) {
            sub->nodes[l].inputs[k] -= from;
            LR_ASSERT(sub->nodes[l].inputs[k] >= 0); /* `from` is a cut */
        }
    lr_status st = net_infer(sub);
    if (st != LR_OK) {
        net_free(sub);
        return st;
    }
    *out = sub;
    return LR_OK;
}

/* The column tail's peak above P + carried-in, for a last stage: known when it set the probe's
 * peak; below the stage's own when the stage did (no constraint of its own). When the stage
 * before the probed one did, the same stage and tail are measured on the network cut at the
 * stage's input, which has no stage before it: there the stage's moments are those of the probe
 * less the input gradient, so a tail below them is below the probe's too. */
static lr_status tail_above(search *s, const space *sp_of, int a, int b, int parts,
                            const plan_cost *c, int me, int64_t base, int64_t local,
                            int64_t *tail, bool *usable)
{
    if (c->peak_stage < 0 || c->peak_stage == me) {
        *tail = c->peak_stage < 0 ? c->peak_bytes - base : local;
        return LR_OK;
    }
    net_t *sub;
    LR_TRY(auto_subnet(s->net, s->cut[a], &sub));
    plan_spec sp = {.kind = sp_of->kind, .n_stages = 1, .cut = {s->cut[b] - s->cut[a]},
                    .parts = {parts}};
    plan_cost sc;
    lr_status st = evaluate_on(s, sub, sp_of->bn, &sp, &sc, usable);
    net_free(sub);
    LR_TRY(st);
    *tail = sc.peak_stage < 0 ? sc.peak_bytes - sc.static_bytes - sc.input_bytes - sc.workspace_bytes
                              : local;
    return LR_OK;
}

/* Stage (a, b] with N partitions, between a one-partition stage (0, a] and, unless it is the
 * last, a one-partition stage (b, b+1]; *usable as for evaluate(). */
static lr_status probe(search *s, const space *sp_of, int a, int b, int parts, stage_edge *e,
                       bool *usable)
{
    bool last = b == s->m;
    plan_spec sp;
    memset(&sp, 0, sizeof sp);
    sp.kind = sp_of->kind;
    int n = 0;
    if (a > 0)
        sp.cut[n] = s->cut[a], sp.parts[n++] = 1;
    int me = n;
    sp.cut[n] = s->cut[b], sp.parts[n++] = parts;
    if (!last)
        sp.cut[n] = s->cut[b + 1], sp.parts[n++] = 1;
    sp.n_stages = n;
    plan_cost c;
    LR_TRY(evaluate(s, sp_of->bn, &sp, &c, usable));
    if (!*usable)
        return LR_OK;
    int64_t base = s->persistent + s->out_bytes[a];
    memset(e, 0, sizeof *e);
    e->a = a, e->b = b, e->parts = parts, e->last = last;
    e->local = c.stage_peak[me] - base;
    e->extra = c.flops - s->col_flops - (a > 0 ? s->fck[a] : 0);
    if (last)
        return tail_above(s, sp_of, a, b, parts, &c, me, base, e->local, &e->tail, usable);
    e->carried = c.stage_peak[me + 1] - base - s->lp1[b];
    return LR_OK;
}

/* One probe job: a stage (a, b] of one space, every N worth trying. */
typedef struct probe_job {
    space *sp;
    int a, b;
    bool done;           /* measured (or never worth measuring) */
    const struct probe_job *same; /* a stage without BatchNorm is the same plan in either BN
                                     mode: the stripe space reads the exact space's job */
    stage_edge *out; /* one per N tried */
    int n;
    lr_status status;
} probe_job;

static int rows_to_split(const search *s, const space *sp, int a, int b)
{
    return s->net->nodes[sp->kind == PART_TILE_IN ? s->cut[a] : s->cut[b]].h;
}

static bool stage_has_bn(const search *s, int a, int b)
{
    for (int l = s->cut[a] + 1; l <= s->cut[b]; l++)
        if (s->net->nodes[l].op == OP_BATCHNORM)
            return true;
    return false;
}

/* Measures the stage for every N worth trying, unless its compute cannot be within
 * extra_limit (then it stays to be done, should a later round allow more compute). */
static void run_job(search *s, probe_job *j, int64_t extra_limit)
{
    const space *sp = j->sp;
    int rows = rows_to_split(s, sp, j->a, j->b);
    bool special = s->special[j->a * (s->m + 1) + j->b];
    bool whole = j->a == 0 && j->b == s->m;
    if (j->same) {
        j->done = true;
        return;
    }
    if (sp->bn == BN_EXACT && stage_has_bn(s, j->a, j->b) &&
        bn_extra_bound(s, j->a, j->b) > extra_limit)
        return;
    j->done = true;
    int64_t best = INT64_MAX;
    int worse = 0;
    int count = whole ? WHOLE_MAX_N - 1 : N_STAGE_PARTS;
    for (int k = 0, last = 1; k < count && last < rows && j->status == LR_OK; k++) {
        /* plan_build clamps N to the rows there are: past them, N = rows is the one plan left */
        int parts = whole ? k + 2 : stage_parts[k];
        last = parts = parts < rows ? parts : rows;
        stage_edge *e = &j->out[j->n];
        bool usable;
        j->status = probe(s, sp, j->a, j->b, parts, e, &usable);
        if (j->status != LR_OK)
            break;
        j->n += usable;
        worse = usable && e->local < best ? 0 : worse + 1;
        if (usable && e->local < best)
            best = e->local;
        if (!special && worse >= PARTS_PATIENCE)
            break;
    }
}

/* ------------------------------------------------------------------ dynamic programme */

/* A partial plan ending at a cut: what its stages carry, their compute, the highest live bytes
 * so far; parent/edge lead back to the stages. */
typedef struct {
    int64_t carried, extra, peak;
    int parent, edge, depth, id;
} label;

typedef struct {
    label *pool;
    int n, cap;
    int **at; /* label ids per cut */
    int *n_at, *cap_at;
    label *tmp; /* for sorting one cut's labels */
    int cap_tmp;
} labels;

typedef struct {
    bool found;
    int64_t extra, peak; /* predicted by the stage model */
    int n_stages;
    const stage_edge *stage[PLAN_MAX_STAGES];
} dp_plan;

typedef struct {
    const search *s;
    const space *sp;
    int64_t bound;     /* every moment's live bytes <= bound */
    int64_t extra_cap; /* extra compute <= extra_cap */
} dp_query;

typedef struct {
    dp_plan plan;
    int label;              /* the partial plan the last stage extends */
    const stage_edge *last; /* NULL: column */
} dp_best;

static void labels_init(labels *L, int m)
{
    memset(L, 0, sizeof *L);
    L->at = calloc((size_t)m + 1, sizeof(int *));
    L->n_at = calloc((size_t)m + 1, sizeof(int));
    L->cap_at = calloc((size_t)m + 1, sizeof(int));
    LR_ASSERT(L->at && L->n_at && L->cap_at);
}

static void labels_free(labels *L, int m)
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
    return q->s->persistent + x->carried + sp->need[i] <= q->bound &&
           x->extra + sp->least_extra[i] <= q->extra_cap;
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
        int64_t level = P + x.carried + e->local, extra = x.extra + e->extra;
        if (level > q->bound || extra > q->extra_cap)
            continue;
        int64_t peak = level > x.peak ? level : x.peak;
        if (e->last) {
            int64_t tail = P + x.carried + e->tail;
            if (tail <= q->bound)
                offer(best, extra, tail > peak ? tail : peak, id, e);
        } else if (x.depth + 2 < PLAN_MAX_STAGES) {
            label y = {x.carried + e->carried, extra, peak, id, k, x.depth + 1, -1};
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
static dp_plan dp_run(const dp_query *q, labels *L)
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

/* The lowest peak within q->extra_cap: bisection on the bound, each feasible answer lowering it
 * to that plan's own peak. Column (extra 0) is always within a cap. */
static dp_plan dp_lowest_peak(dp_query q, labels *L)
{
    int64_t lo = q.s->persistent, hi = q.s->col_peak;
    dp_plan best = {.found = true, .extra = 0, .peak = hi};
    while (hi - lo > 1) {
        q.bound = lo + (hi - lo) / 2;
        dp_plan p = dp_run(&q, L);
        if (p.found) {
            best = p;
            hi = p.peak > lo ? p.peak : lo + 1;
        } else {
            lo = q.bound;
        }
    }
    return best;
}

/* ------------------------------------------------------------------ probing every space */

typedef struct {
    bool min_peak;       /* objective */
    int64_t budget;      /* 0: none */
    int64_t flops_cap;   /* absolute; INT64_MAX: none */
} goal;

static int64_t extra_cap_of(const search *s, const goal *g)
{
    return g->flops_cap == INT64_MAX ? INT64_MAX : g->flops_cap - s->col_flops;
}

/* Jobs: one per stage (a, b] for the shared one-partition edges (sp == NULL), and one per stage
 * and space for N > 1. */
static bool probed(const search *s, int a, int b)
{
    return b - a <= SPAN_MAX || s->special[a * (s->m + 1) + b];
}

/* Jobs for the stages worth measuring: per stage (a, b] one for the shared one-partition edges
 * (sp == NULL) and one per space for N > 1. */
static probe_job *make_jobs(search *s, space *spaces, int n_spaces, int *n_jobs)
{
    int pairs = 0;
    for (int a = 0; a < s->m; a++)
        for (int b = a + 1; b <= s->m; b++)
            pairs += probed(s, a, b);
    probe_job *jobs = calloc((size_t)pairs * (n_spaces + 1), sizeof *jobs);
    stage_edge *edges = calloc((size_t)pairs * (1 + n_spaces * WHOLE_MAX_N), sizeof *edges);
    LR_ASSERT(jobs != NULL && edges != NULL);
    int n = 0;
    for (int a = 0; a < s->m; a++)
        for (int b = a + 1; b <= s->m; b++) {
            if (!probed(s, a, b))
                continue;
            probe_job *first = &jobs[n];
            for (int k = -1; k < n_spaces; k++) {
                probe_job *j = &jobs[n++];
                j->sp = k < 0 ? NULL : &spaces[k];
                j->a = a, j->b = b;
                j->out = edges;
                edges += k < 0 ? 1 : WHOLE_MAX_N;
                if (k >= 0 && spaces[k].bn == BN_STRIPE && !stage_has_bn(s, a, b))
                    for (probe_job *q = first; q < j && !j->same; q++)
                        if (q->sp && q->sp->kind == j->sp->kind && q->sp->bn == BN_EXACT)
                            j->same = q;
            }
        }
    *n_jobs = n;
    return jobs;
}

static void free_jobs(probe_job *jobs)
{
    if (jobs)
        free(jobs[0].out); /* every job's edges are in one block */
    free(jobs);
}

static void run_one_part(search *s, probe_job *j)
{
    space plain = {.kind = PART_TILE_OUT, .bn = BN_EXACT};
    j->done = true;
    bool usable;
    j->status = probe(s, &plain, j->a, j->b, 1, &j->out[0], &usable);
    j->n = j->status == LR_OK && usable;
}

static lr_status run_jobs(search *s, probe_job *jobs, int n_jobs, int64_t extra_limit)
{
#pragma omp parallel for schedule(dynamic)
    for (int k = 0; k < n_jobs; k++) {
        if (jobs[k].done)
            continue;
        if (jobs[k].sp)
            run_job(s, &jobs[k], extra_limit);
        else
            run_one_part(s, &jobs[k]);
    }
    for (int k = 0; k < n_jobs; k++)
        if (jobs[k].status != LR_OK)
            return lr_fail(jobs[k].status, "auto: %s", lr_last_error());
    return LR_OK;
}

/* A space's edges: the shared one-partition stages and its own, grouped by first cut. */
static void collect_edges(const search *s, space *sp, const probe_job *jobs, int n_jobs)
{
    int total = 0;
    for (int k = 0; k < n_jobs; k++)
        if (!jobs[k].sp || jobs[k].sp == sp)
            total += jobs[k].same ? jobs[k].same->n : jobs[k].n;
    free(sp->edges.v), free(sp->from);
    sp->edges.v = malloc(sizeof(stage_edge) * (size_t)(total ? total : 1));
    sp->from = calloc((size_t)s->m + 2, sizeof(int));
    LR_ASSERT(sp->edges.v && sp->from);
    sp->edges.n = 0;
    for (int a = 0; a <= s->m; a++) { /* jobs are in order of a */
        sp->from[a] = sp->edges.n;
        for (int k = 0; k < n_jobs; k++)
            if (jobs[k].a == a && (!jobs[k].sp || jobs[k].sp == sp)) {
                const probe_job *j = jobs[k].same ? jobs[k].same : &jobs[k];
                for (int q = 0; q < j->n; q++)
                    sp->edges.v[sp->edges.n++] = j->out[q];
            }
    }
    sp->from[s->m + 1] = sp->edges.n;
}

static int64_t max64(int64_t x, int64_t y)
{
    return x > y ? x : y;
}

/* need and least_extra (space), backwards from the region end. */
static void completion_bounds(const search *s, space *sp)
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
                n = max64(e->local, e->carried + sp->need[e->b]);
                x = e->extra + sp->least_extra[e->b];
            }
            need = n < need ? n : need;
            extra = x < extra ? x : extra;
        }
        sp->need[i] = need;
        sp->least_extra[i] = extra;
    }
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

static bool meets(const auto_candidate *c, const goal *g)
{
    return c->cost.flops <= g->flops_cap && (g->budget == 0 || c->cost.peak_bytes <= g->budget);
}

/* Evaluates spec under bn (*usable as for evaluate()). A plan without BatchNorm in a
 * partitioned stage is the same plan under either mode: it is labelled exact. */
static lr_status make_candidate(search *s, plan_spec spec, plan_bn bn, const goal *g,
                                auto_candidate *c, bool *usable)
{
    memset(c, 0, sizeof *c);
    spec.strategy = strategy_of(&spec);
    plan_config cfg = s->cfg;
    cfg.bn = bn;
    c->approximate = analysis_is_approximate(s->net, &cfg, &spec);
    c->bn = c->approximate ? BN_STRIPE : BN_EXACT;
    c->spec = spec;
    LR_TRY(evaluate(s, bn, &spec, &c->cost, usable));
    c->flops_ratio = (double)c->cost.flops / (double)s->col_flops;
    c->fits = meets(c, g);
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
    *found = false;
    for (int attempt = 0; attempt < 4; attempt++) {
        dp_plan p = g->min_peak ? dp_lowest_peak(q, L) : dp_run(&q, L);
        if (!p.found)
            return LR_OK;
        bool usable;
        LR_TRY(make_candidate(s, spec_of(&p, sp->kind, s), sp->bn, g, out, &usable));
        if (!usable) /* its stages can be built one by one, not all together: rare enough */
            return LR_OK;
        if (out->cost.peak_bytes != p.peak || out->cost.flops - s->col_flops != p.extra)
            s->model_misses++;
        int64_t over_flops = out->cost.flops - s->col_flops - q.extra_cap;
        int64_t over_peak = g->min_peak ? 0 : out->cost.peak_bytes - q.bound;
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
    if (x->bn != y->bn || p->n_stages != q->n_stages ||
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
static bool ahead(const auto_candidate *x, const auto_candidate *y, const goal *g)
{
    if (x->fits != y->fits)
        return x->fits;
    bool x_cap = x->cost.flops <= g->flops_cap, y_cap = y->cost.flops <= g->flops_cap;
    if (!x->fits && x_cap != y_cap)
        return x_cap;
    bool by_peak = g->min_peak || !x->fits;
    int64_t x1 = by_peak ? x->cost.peak_bytes : x->cost.flops;
    int64_t y1 = by_peak ? y->cost.peak_bytes : y->cost.flops;
    int64_t x2 = by_peak ? x->cost.flops : x->cost.peak_bytes;
    int64_t y2 = by_peak ? y->cost.flops : y->cost.peak_bytes;
    if (x1 != y1)
        return x1 < y1;
    if (x2 != y2)
        return x2 < y2;
    return !x->approximate && y->approximate;
}

typedef struct {
    auto_candidate v[2 + 3 * BN_COUNT];
    int n;
} candidates;

static void rank(candidates *c, const goal *g, auto_result *out)
{
    for (int k = 1; k < c->n; k++) /* insertion sort, stable */
        for (int q = k; q > 0 && ahead(&c->v[q], &c->v[q - 1], g); q--) {
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
    if (cap == 0 && req->budget_bytes == 0)
        cap = AUTO_DEFAULT_OVERHEAD;
    g->min_peak = req->budget_bytes == 0;
    g->budget = req->budget_bytes;
    g->flops_cap = INT64_MAX; /* set once column's compute is known */
    *end = req->region_end > 0 ? req->region_end : plan_default_region_end(net);
    if (*end >= net->n_nodes)
        return lr_fail(LR_ERR_USAGE, "--region: no such layer");
    LR_TRY(cost_check_limits(net, cfg->batch, cost_dtype_bytes(cfg->dtype), 4096));
    if (req->region_end > 0) { /* plan_build names what is wrong with the cut */
        plan_spec sp = {.n_stages = 1, .cut = {*end}, .parts = {1}};
        plan_cost c;
        LR_TRY(strategy_evaluate(net, cfg, &sp, &c));
    }
    return LR_OK;
}

static void search_free(search *s)
{
    free(s->cut), free(s->out_bytes), free(s->lp1), free(s->fck), free(s->special);
    free(s->bn_node), free(s->anc), free(s->desc);
}

static lr_status search_init(search *s, const net_t *net, const plan_config *cfg, int end)
{
    memset(s, 0, sizeof *s);
    s->net = net;
    s->cfg = *cfg;
    find_cuts(s, end);
    s->out_bytes = calloc((size_t)s->m + 1, sizeof(int64_t));
    s->lp1 = calloc((size_t)s->m + 1, sizeof(int64_t));
    s->fck = calloc((size_t)s->m + 1, sizeof(int64_t));
    LR_ASSERT(s->out_bytes && s->lp1 && s->fck);
    int eb = cost_dtype_bytes(cfg->dtype);
    for (int i = 1; i <= s->m; i++)
        s->out_bytes[i] = cost_node_bytes(net, s->cut[i], cfg->batch, eb);
    bn_bounds(s);
    return measure_base(s);
}

/* Column, and the checkpoint strategy's own segments (greedy cuts at any layer). */
static lr_status seeds(search *s, const goal *g, int end, candidates *c)
{
    plan_spec column;
    memset(&column, 0, sizeof column);
    bool usable;
    LR_TRY(make_candidate(s, column, BN_EXACT, g, &c->v[c->n++], &usable));
    LR_ASSERT(usable); /* measure_base evaluated it */
    if (end == 0)
        return LR_OK;
    plan_request req = {.strategy = STRAT_CHECKPOINT, .region_end = end};
    plan_choice ck;
    LR_TRY(strategy_choose(s->net, &s->cfg, &req, &ck));
    LR_TRY(make_candidate(s, ck.spec, BN_EXACT, g, &c->v[c->n], &usable));
    c->n += usable;
    return LR_OK;
}

/* The least extra compute of a candidate that meets the request; INT64_MAX: none does. */
static int64_t least_fitting_extra(const search *s, const candidates *c)
{
    int64_t best = INT64_MAX;
    for (int k = 0; k < c->n; k++)
        if (c->v[k].fits && c->v[k].cost.flops - s->col_flops < best)
            best = c->v[k].cost.flops - s->col_flops;
    return best;
}

static lr_status solve_spaces(search *s, space *spaces, int n_spaces, const goal *g,
                              candidates *c)
{
    labels L;
    labels_init(&L, s->m);
    lr_status st = LR_OK;
    for (int k = 0; k < n_spaces && st == LR_OK; k++) {
        bool found;
        st = solve(s, &spaces[k], g, &L, &c->v[c->n], &found);
        c->n += st == LR_OK && found;
    }
    labels_free(&L, s->m);
    return st;
}

/* Measures what extra_limit allows, then solves every space from the measurements. */
static lr_status round_of(search *s, space *spaces, int n_spaces, probe_job *jobs, int n_jobs,
                          int64_t extra_limit, const goal *g, candidates *c, int n_seeds)
{
    LR_TRY(run_jobs(s, jobs, n_jobs, extra_limit));
    for (int k = 0; k < n_spaces; k++) {
        collect_edges(s, &spaces[k], jobs, n_jobs);
        completion_bounds(s, &spaces[k]);
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
        limit = s->col_flops / 8;
    for (;;) {
        limit = limit < cap ? limit : cap;
        LR_TRY(round_of(s, spaces, n_spaces, jobs, n_jobs, limit, g, c, n_seeds));
        int64_t found = least_fitting_extra(s, c);
        if (found <= limit || limit == cap)
            return LR_OK;
        limit = found != INT64_MAX ? found : limit > INT64_MAX / 4 ? INT64_MAX : limit * 4;
    }
}

static lr_status search_spaces(search *s, const plan_config *cfg, goal *g, candidates *c)
{
    space spaces[3 * BN_COUNT];
    int n_spaces = 0, n_seeds = c->n;
    const plan_partitioning kinds[] = {PART_TILE_IN, PART_OVERLAP, PART_TILE_OUT};
    for (int b = 0; b <= (cfg->bn == BN_STRIPE); b++)
        for (int k = 0; k < 3; k++)
            spaces[n_spaces++] = (space){.kind = kinds[k], .bn = b ? BN_STRIPE : BN_EXACT};
    int n_jobs;
    probe_job *jobs = make_jobs(s, spaces, n_spaces, &n_jobs);
    int64_t cap = extra_cap_of(s, g);
    lr_status st = g->min_peak ? round_of(s, spaces, n_spaces, jobs, n_jobs, cap, g, c, n_seeds)
                               : least_compute(s, spaces, n_spaces, jobs, n_jobs, g, c, n_seeds);
    if (st == LR_OK && least_fitting_extra(s, c) == INT64_MAX) {
        goal closest = *g; /* nothing fits: the lowest peak within the compute cap */
        closest.min_peak = true;
        st = round_of(s, spaces, n_spaces, jobs, n_jobs, cap, &closest, c, n_seeds);
    }
    free_jobs(jobs);
    for (int k = 0; k < n_spaces; k++)
        free(spaces[k].edges.v), free(spaces[k].from), free(spaces[k].need),
            free(spaces[k].least_extra);
    return st;
}

lr_status auto_search(const net_t *net, const plan_config *cfg, const auto_request *req,
                      auto_result *out)
{
    memset(out, 0, sizeof *out);
    goal g;
    int end = 0;
    LR_TRY(check_request(net, req, &g, &end, cfg));
    double cap = req->max_overhead == 0 && req->budget_bytes == 0 ? AUTO_DEFAULT_OVERHEAD
                                                                   : req->max_overhead;
    search s;
    lr_status st = search_init(&s, net, cfg, end);
    if (cap > 0)
        g.flops_cap = (int64_t)floor(cap * (double)s.col_flops);
    candidates c = {.n = 0};
    if (st == LR_OK)
        st = seeds(&s, &g, end, &c);
    bool column_fits = c.n > 0 && c.v[0].fits && !g.min_peak; /* least compute possible */
    if (st == LR_OK && end > 0 && !column_fits)
        st = search_spaces(&s, cfg, &g, &c);
    if (st == LR_OK) {
        rank(&c, &g, out);
        out->minimise_peak = g.min_peak;
        out->max_overhead = cap;
        out->budget_bytes = g.budget;
        out->column_peak = s.col_peak;
        out->column_flops = s.col_flops;
        out->over_bytes = out->best.fits || !g.budget ? 0 : out->best.cost.peak_bytes - g.budget;
        out->n_evals = s.n_evals;
        out->model_misses = s.model_misses;
    }
    search_free(&s);
    return st;
}
