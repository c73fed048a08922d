/* auto_cuts.c - where the auto planner may end a stage, and what exact BatchNorm must cost at least
 * inside one (auto_search.h has the legend).
 *
 * Candidate cuts are the rowdep cuts of the row region, less those a relu or dropout follows
 * alone, thinned to CUTS_MAX, with the hybrids' resolution cuts and the region end always kept.
 * Deliberately not here: measuring stages (auto_probe.c) or choosing among them (auto_dp.c).
 */
#include "auto_search.h"

#include <string.h>

/* Candidate cuts kept at most (evenly thinned, resolution cuts and the region end always kept):
 * with SPAN_MAX (auto_probe.c) it lets a plan cover the region in fewer than PLAN_MAX_STAGES stages and bounds
 * the search on very deep nets (ResNet-152 has 54; the zoo is below). */
#define CUTS_MAX 96

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

void auto_find_cuts(search *s, int region_end)
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
    s->ends = calloc((size_t)s->m + 1, 1);
    LR_ASSERT(s->ends != NULL);
    s->ends[s->m] = true;
    for (int k = 0, prev = 0; k < nres; k++)
        for (int i = 1; i <= s->m; i++)
            if (s->cut[i] == res[k]) {
                s->special[prev * (s->m + 1) + i] = true;
                s->ends[i] = true;
                prev = i;
            }
    free(cut), free(keep), free(res);
}

/* ------------------------------------------------------------------ exact BN lower bound */

/* The work of one whole-map kernel of node: a lower bound on the work of the same kernel over
 * stripes that cover the map (every stripe pays at least its share of FLOPs, bytes and the
 * efficiency loss, plus a launch). */
static int64_t map_work(const search *s, int node, device_kernel_kind kind)
{
    const net_t *net = s->net;
    int h = net->nodes[node].h, batch = s->cfg.batch;
    if (!s->by_time)
        return kind == KERNEL_FWD ? cost_fwd_flops(net, node, batch, h)
                                  : cost_bwd_flops(net, node, batch, h);
    device_kernel k = device_kernel_of(net, node, batch, cost_dtype_bytes(s->cfg.dtype), h, kind,
                                       s->cfg.optim);
    return device_kernel_ns(s->cfg.device, &k);
}

/* An exact-BN stage with N > 1 runs, per BatchNorm in it, a statistics pass over the
 * BatchNorm's ancestors in the stage and a gradient-statistics pass through its descendants
 * (plan.h), each over every row at least once: their forward and backward work (auto_work)
 * bounds the stage's extra compute from below. */
void auto_bn_bounds(search *s)
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
            anc[x] = lr_sat_add(anc[x + 1], mark[x + 1] && x + 1 < l ? map_work(s, x + 1, KERNEL_FWD) : 0);
        memset(mark, 0, (size_t)n);
        mark[l] = true;
        for (int y = l + 1; y < n; y++) { /* desc[y]: descendants l < d <= y */
            for (int q = 0; q < net->nodes[y].n_inputs; q++)
                mark[y] |= mark[net->nodes[y].inputs[q]];
            desc[y] = lr_sat_add(desc[y - 1], mark[y] ? map_work(s, y, KERNEL_BWD) : 0);
        }
        k++;
    }
    free(mark);
}

int64_t auto_bn_extra_bound(const search *s, int a, int b)
{
    int n = s->net->n_nodes, lo = s->cut[a], hi = s->cut[b];
    int64_t sum = 0;
    for (int k = 0; k < s->nbn; k++)
        if (s->bn_node[k] > lo && s->bn_node[k] <= hi)
            sum = lr_sat_add(sum, lr_sat_add(s->anc[(size_t)k * n + lo], s->desc[(size_t)k * n + hi]));
    return sum;
}

/* ------------------------------------------------------------------ twin stages */

/* Whether nodes l and u are the same layer up to their ids: op, parameters, shape, readers, and
 * inputs at the same distances. A stage's events, row ranges and costs depend on nothing else of
 * its nodes (its input's readers are all inside it; plan_stage_build reads no node past its
 * output), so stages whose nodes match one to one are the same plan with node ids shifted. */
static bool same_layer(const net_t *net, int l, int u)
{
    const net_node *x = &net->nodes[l], *y = &net->nodes[u];
    const net_params *p = &x->prm, *q = &y->prm;
    if (x->op != y->op || x->n_inputs != y->n_inputs || x->c != y->c || x->h != y->h ||
        x->w != y->w || x->params != y->params || x->n_consumers != y->n_consumers)
        return false;
    for (int k = 0; k < x->n_inputs; k++)
        if (l - x->inputs[k] != u - y->inputs[k])
            return false;
    return p->kh == q->kh && p->kw == q->kw && p->sh == q->sh && p->sw == q->sw && p->ph == q->ph &&
           p->pw == q->pw && p->dh == q->dh && p->dw == q->dw && p->groups == q->groups &&
           p->bias == q->bias && p->out_channels == q->out_channels &&
           p->out_features == q->out_features && p->out_h == q->out_h && p->out_w == q->out_w &&
           p->scale == q->scale && p->p == q->p && p->eps == q->eps && p->momentum == q->momentum;
}

static uint64_t mix(uint64_t h, uint64_t x)
{
    h ^= x + 0x9e3779b97f4a7c15u + (h << 6) + (h >> 2);
    return h;
}

/* A hash of what same_layer compares (doubles by their bits). */
static uint64_t layer_hash(const net_t *net, int l)
{
    const net_node *x = &net->nodes[l];
    const net_params *p = &x->prm;
    uint64_t h = mix(0, (uint64_t)x->op);
    int64_t ints[] = {x->n_inputs, x->c, x->h, x->w, x->params, x->n_consumers, p->kh, p->kw,
                      p->sh, p->sw, p->ph, p->pw, p->dh, p->dw, p->groups, p->bias,
                      p->out_channels, p->out_features, p->out_h, p->out_w, p->scale};
    for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++)
        h = mix(h, (uint64_t)ints[k]);
    for (int k = 0; k < x->n_inputs; k++)
        h = mix(h, (uint64_t)(l - x->inputs[k]));
    double d[] = {p->p, p->eps, p->momentum};
    for (size_t k = 0; k < 3; k++) {
        uint64_t bits;
        memcpy(&bits, &d[k], sizeof bits);
        h = mix(h, bits);
    }
    return h;
}

typedef struct {
    int len, pair;
    uint64_t hash;
} stage_key;

static int by_key(const void *x, const void *y)
{
    const stage_key *a = x, *b = y;
    if (a->len != b->len)
        return a->len < b->len ? -1 : 1;
    if (a->hash != b->hash)
        return a->hash < b->hash ? -1 : 1;
    return a->pair < b->pair ? -1 : a->pair > b->pair; /* the first stage leads its group */
}

void auto_find_twins(search *s)
{
    const net_t *net = s->net;
    int m = s->m, w = m + 1;
    s->twin = malloc(sizeof(int) * (size_t)w * w);
    /* prefix hashes of the layers cut[1] .. cut[m]: node l's at pre[l - cut[1] + 1] */
    int first = m > 0 ? s->cut[1] : 0, n = m > 0 ? s->cut[m] - first + 1 : 0;
    uint64_t *pre = malloc(sizeof(uint64_t) * (size_t)(n + 1));
    uint64_t *pow = malloc(sizeof(uint64_t) * (size_t)(n + 1));
    stage_key *keys = malloc(sizeof *keys * (size_t)w * w);
    LR_ASSERT(s->twin && pre && pow && keys);
    const uint64_t base = 0x100000001b3u;
    pre[0] = 0, pow[0] = 1;
    for (int i = 1; i <= n; i++) {
        pre[i] = pre[i - 1] * base + layer_hash(net, first + i - 1);
        pow[i] = pow[i - 1] * base;
    }
    int nk = 0;
    for (int a = 0; a <= m; a++)
        for (int b = 0; b <= m; b++) {
            s->twin[a * w + b] = a * w + b;
            if (a == 0 || b <= a)
                continue;
            int lo = s->cut[a] - first, hi = s->cut[b] - first + 1; /* layers [lo, hi) */
            keys[nk++] = (stage_key){hi - lo, a * w + b, pre[hi] - pre[lo] * pow[hi - lo]};
        }
    qsort(keys, (size_t)nk, sizeof *keys, by_key);
    for (int k = 1, lead = 0; k < nk; k++) {
        if (keys[k].len != keys[lead].len || keys[k].hash != keys[lead].hash) {
            lead = k;
            continue;
        }
        int u = s->cut[keys[lead].pair / w], l = s->cut[keys[k].pair / w];
        bool same = true;
        for (int q = 0; q < keys[k].len && same; q++)
            same = same_layer(net, l + q, u + q);
        if (same)
            s->twin[keys[k].pair] = keys[lead].pair;
    }
    free(pre), free(pow), free(keys);
}
