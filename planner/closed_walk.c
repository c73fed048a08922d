/* closed_walk.c - the events the closed form walks (closed_walk.h): the meter, and one node's or
 * one partition's allocations and releases in a stage's forward, recompute and backward passes,
 * each derived from the plan's row ranges by formula.
 * Deliberately not here: the order of the passes (closed.c), the statistics passes of exact
 * BatchNorm (closed.c).
 */
#include "closed_walk.h"

#include <string.h>

/* ------------------------------------------------------------------ meter */

void closed_place(evaluator *v, stretch top, int64_t live, int64_t flops, int64_t ns)
{
    int64_t start = v->m.live, high;
    if (top.grew && __builtin_add_overflow(start, top.high, &high))
        v->m.overflow = true;
    else if (top.grew)
        closed_reach(&v->m, high, top.pass, top.node, top.part, v->stage);
    if (__builtin_add_overflow(start, live, &v->m.live))
        v->m.overflow = true;
    closed_flops(v, flops);
    closed_ns(v, ns);
}

void closed_stretch_begin(meter *m, int64_t by)
{
    closed_stretches *s = m->stretches;
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 16;
        closed_stretch *grown = realloc(s->v, sizeof *grown * (size_t)cap);
        LR_ASSERT(grown != NULL);
        s->v = grown, s->cap = cap;
    }
    s->konst += by;
    s->v[s->n++] = (closed_stretch){.konst = s->konst, .node = -1, .part = -1, .stage = -1};
}

void closed_host(evaluator *v, int64_t bytes)
{
    if (v->rec) {
        v->rec->host += bytes;
        return;
    }
    v->host_live += bytes;
    if (v->host_live > v->host_peak)
        v->host_peak = v->host_live;
}

/* Kernel times by (node, kind, rows) for one net shape, batch, element size, optimizer and
 * device (a context, closed_ns_tag): a stage's partitions repeat a few stripe heights, and a
 * search measures many stages of one net at one config; the time model (device_kernel_of and
 * device_kernel_ns, a division and a rounding) was a quarter of a hybrid's search (resnet101
 * --batch 4893 --strategy 2ps-h, callgrind). Per thread, direct-mapped; an entry serves only the
 * context whose tag it holds. */
enum { NS_MEMO_BITS = 11 };
typedef struct {
    uint64_t tag;
    int node, rows, kind;
    int64_t ns;
} ns_memo_entry;
static _Thread_local ns_memo_entry ns_memo[1 << NS_MEMO_BITS];

/* The context of the thread's latest tag; the device by value (a spec may be rebuilt in place). */
typedef struct {
    uint64_t shape_id;
    int batch, eb, optim;
    device_spec device;
} ns_context;
static _Thread_local ns_context ns_last;
static _Thread_local uint64_t ns_last_tag;
static uint64_t ns_tags;

uint64_t closed_ns_tag(const net_t *net, int batch, int eb, plan_optim optim,
                       const device_spec *device)
{
    if (!device)
        return 0;
    ns_context c;
    memset(&c, 0, sizeof c);
    c.shape_id = net->shape_id, c.batch = batch, c.eb = eb, c.optim = (int)optim;
    c.device = *device;
    if (ns_last_tag == 0 || net->shape_id == 0 || memcmp(&c, &ns_last, sizeof c) != 0) {
        ns_last = c;
        ns_last_tag = __atomic_add_fetch(&ns_tags, 1, __ATOMIC_RELAXED);
    }
    return ns_last_tag;
}

void closed_kernel_ns(evaluator *v, int node, int rows, device_kernel_kind kind)
{
    uint32_t h = (uint32_t)node * 0x9E3779B1u ^ (uint32_t)rows * 0x85EBCA77u ^
                 (uint32_t)kind * 0xC2B2AE3Du;
    ns_memo_entry *e = &ns_memo[h >> (32 - NS_MEMO_BITS)];
    if (e->tag != v->ns_tag || e->node != node || e->rows != rows || e->kind != (int)kind) {
        device_kernel k = device_kernel_of(v->net, node, v->batch, v->eb, rows, kind, v->optim);
        *e = (ns_memo_entry){v->ns_tag, node, rows, (int)kind, device_kernel_ns(v->device, &k)};
    }
    closed_ns(v, e->ns);
}

void closed_sum_kernel(evaluator *v, const plan_stage *st, int l, int j, rowrange touched,
                       device_kernel_kind kind)
{
    int in_rows = rr_count(st->sum_in[j]);
    closed_flops(v, cost_sum_flops(v->net, l, v->batch, in_rows));
    if (!v->device || in_rows == 0)
        return;
    device_kernel k = device_kernel_of_sum(v->net, l, v->batch, v->eb, in_rows, rr_count(touched), kind);
    closed_ns(v, device_kernel_ns(v->device, &k));
}

bool closed_first_occurrence(const net_node *n, int k, int u, const net_t *net)
{
    for (int q = 0; q < k; q++)
        if (plan_root(net, n->inputs[q]) == u)
            return false;
    return true;
}

/* ------------------------------------------------------------------ stage helpers */

/* Per node: which ops in the stage read it in backward, and its last consumer in a pass that
 * runs `subset` (NULL: all nodes). */
void closed_positions(evaluator *v, const plan_stage *st, const bool *subset)
{
    const net_t *net = v->net;
    for (int l = st->in_node + 1; l <= st->out_node; l++) {
        v->last_fwd[l] = -1;
        v->first_bwd[l] = st->out_node + 1;
    }
    for (int c = st->in_node + 1; c <= st->out_node; c++) {
        const net_node *n = &net->nodes[c];
        bool runs = !subset || subset[c];
        for (int k = 0; k < n->n_inputs; k++) {
            int u = n->inputs[k];
            if (u == st->in_node)
                continue;
            if (runs)
                v->last_fwd[u] = c;
            if (plan_bwd_reads_input(n->op) && c < v->first_bwd[u])
                v->first_bwd[u] = c;
        }
        if (plan_bwd_reads_output(n->op) && c < v->first_bwd[c])
            v->first_bwd[c] = c;
    }
    for (int l = st->in_node + 1; l <= st->out_node; l++)
        v->saved[l] = v->first_bwd[l] <= st->out_node;
}

/* The stripe of u made in partition j leaves: kept for backward, or handed on and freed. */
void closed_forward_release(evaluator *v, const fwd_pass *f, int u, int j)
{
    const plan_stage *st = f->st;
    if ((f->store && v->saved[u]) || !closed_holds_stripe(st, f, u, j))
        return;
    rowrange b = closed_boundary(st, u, j);
    if (f->make_bnd && !rr_empty(b) && f->pass == PASS_FWD && plan_bnd_on_host(st, u, j))
        closed_host(v, closed_rows_bytes(v, u, b)); /* written to host memory */
    else if (f->make_bnd && !rr_empty(b))
        closed_add(v, closed_rows_bytes(v, u, b), f->pass, u, j);
    closed_shrink(v, closed_rows_bytes(v, u, st->held[plan_idx(st, u, j)]));
}

void closed_forward_compute(evaluator *v, const fwd_pass *f, int l, int j)
{
    const net_t *net = v->net;
    const plan_stage *st = f->st;
    int i = plan_idx(st, l, j);
    bool stats_acc = f->pass == PASS_STATS && l == f->stats_node;
    if (closed_holds_stripe(st, f, l, j)) {
        closed_add(v, closed_rows_bytes(v, l, st->held[i]), f->pass, l, j);
        bool last_read = f->free_bnd || (f->pass == PASS_FWD && plan_bnd_read_once(st, l));
        rowrange head = closed_head(st, l, j);
        if (st->kind != PART_OVERLAP && j > 0 && !rr_empty(head)) {
            int64_t bytes = closed_rows_bytes(v, l, head);
            if (last_read && f->pass == PASS_RECOMPUTE && plan_bnd_on_host(st, l, j - 1))
                closed_host(v, -bytes);
            else if (last_read)
                closed_shrink(v, bytes);
            bool twin_reads_last =
                f->alt_free_bnd || (f->alt_pass == PASS_FWD && plan_bnd_read_once(st, l));
            if (v->twin && twin_reads_last != last_read) /* the twin frees it where this does not */
                v->twin->live += last_read ? bytes : -bytes;
        }
    }
    rowrange rows = stats_acc ? st->own[i] : st->comp[i];
    bool stripe_stats = net->nodes[l].op == OP_BATCHNORM && !stats_acc && !st->bn_passes &&
                        !st->bn_frozen && !rr_empty(rows);
    if (stripe_stats)
        closed_add(v, plan_bn_stats_bytes(net, l), f->pass, l, j);
    if (plan_sums_at(st, l))
        closed_sum_kernel(v, st, l, j, rows, KERNEL_FWD);
    else
        closed_kernel(v, l, rr_count(rows), stats_acc ? KERNEL_STATS : KERNEL_FWD,
                      (stats_acc ? v->stats_row_flops[l] : v->fwd_row_flops[l]) * rr_count(rows));
    if (stripe_stats && !f->store && l != st->out_node)
        closed_shrink(v, plan_bn_stats_bytes(net, l));
}

void closed_forward_node(evaluator *v, const fwd_pass *f, int l, int j)
{
    const net_t *net = v->net;
    const plan_stage *st = f->st;
    closed_forward_compute(v, f, l, j);
    if (l != st->out_node && v->last_fwd[l] < 0)
        closed_forward_release(v, f, l, j); /* no reader in this pass */
    const net_node *n = &net->nodes[l];
    for (int k = 0; k < n->n_inputs; k++) {
        int u = n->inputs[k];
        if (u != st->in_node && closed_first_occurrence(n, k, u, net) && v->last_fwd[u] == l)
            closed_forward_release(v, f, u, j);
    }
}

void closed_forward_partition(evaluator *v, const fwd_pass *f, int j)
{
    const plan_stage *st = f->st;
    for (int l = st->in_node + 1; l <= st->out_node; l++) {
        if (f->subset && !f->subset[l])
            continue;
        closed_forward_node(v, f, l, j);
    }
}

void closed_mark_ancestors(evaluator *v, const plan_stage *st, int node)
{
    memset(v->mark, 0, (size_t)v->net->n_nodes);
    v->mark[node] = true;
    for (int l = node; l > st->in_node; l--)
        if (v->mark[l])
            for (int k = 0; k < v->net->nodes[l].n_inputs; k++)
                v->mark[v->net->nodes[l].inputs[k]] = true;
    v->mark[st->in_node] = false;
}

void closed_mark_descendants(evaluator *v, const plan_stage *st, int node)
{
    memset(v->mark, 0, (size_t)v->net->n_nodes);
    v->mark[node] = true;
    for (int l = node + 1; l <= st->out_node; l++)
        for (int k = 0; k < v->net->nodes[l].n_inputs; k++)
            v->mark[l] |= v->mark[v->net->nodes[l].inputs[k]];
}

/* ------------------------------------------------------------------ stage backward */

void closed_backward_node(evaluator *v, const bwd_pass *b, int l, int j, bool *g, const bool *gb_in,
                          bool *gb_out)
{
    const net_t *net = v->net;
    const plan_stage *st = b->st;
    bool tiled = st->kind != PART_OVERLAP;
    const net_node *n = &net->nodes[l];
    int li = l - st->in_node;
    bool run = !b->subset || b->subset[l];
    int i = plan_idx(st, l, j);
    if (l == st->out_node)
        g[li] = true;
    if (run && tiled && l != st->out_node && gb_in[li]) {
        if (!g[li]) {
            g[li] = true;
            closed_add(v, closed_rows_bytes(v, l, st->held[i]), b->pass, l, j);
        }
        closed_shrink(v, closed_rows_bytes(v, l, closed_boundary(st, l, j)));
    }
    rowrange rows = closed_bwd_rows(st, l, j);
    bool acc = b->pass == PASS_GSTATS && l == b->target;
    if (run && !acc && !g[li] && n->op == OP_BATCHNORM && st->bn_passes && !rr_empty(rows)) {
        g[li] = true; /* exact BatchNorm runs with no gradient from below too (emit.c) */
        closed_add(v, closed_rows_bytes(v, l, st->held[i]), b->pass, l, j);
    }
    if (run && !rr_empty(rows) && g[li]) {
        for (int k = 0; k < n->n_inputs && !acc; k++) {
            int u = n->inputs[k];
            int ui = u - st->in_node;
            if (u != st->in_node && !g[ui]) {
                g[ui] = true;
                closed_add(v, closed_rows_bytes(v, u, st->held[plan_idx(st, u, j)]), b->pass, l, j);
            }
        }
        bool stripe_bn = n->op == OP_BATCHNORM && !st->bn_passes && !st->bn_frozen;
        if (stripe_bn && !acc)
            closed_add(v, plan_bn_gred_bytes(net, l), b->pass, l, j);
        if (plan_sums_at(st, l))
            closed_sum_kernel(v, st, l, j, st->comp[i], KERNEL_BWD);
        else
            closed_kernel(v, l, rr_count(rows), acc ? KERNEL_STATS : KERNEL_BWD,
                          (acc ? v->stats_row_flops[l] : v->bwd_row_flops[l]) * rr_count(rows));
        if (stripe_bn && !acc)
            closed_shrink(v, plan_bn_gred_bytes(net, l));
    }
    rowrange hd = rr_make(st->held[i].lo, st->own[i].lo - 1);
    if (run && tiled && l != st->out_node && j > 0 && !rr_empty(hd) && g[li]) {
        gb_out[li] = true;
        closed_add(v, closed_rows_bytes(v, l, hd), b->pass, l, j);
    }
    if (l != st->out_node && g[li])
        closed_shrink(v, closed_rows_bytes(v, l, st->held[i]));
    /* saved stripes whose last backward reader is l */
    if (plan_bwd_reads_output(n->op) && v->first_bwd[l] == l && l != st->out_node)
        closed_shrink(v, closed_rows_bytes(v, l, st->held[i]));
    if (plan_bwd_reads_input(n->op))
        for (int k = 0; k < n->n_inputs; k++) {
            int u = n->inputs[k];
            if (u != st->in_node && closed_first_occurrence(n, k, u, net) && v->first_bwd[u] == l)
                closed_shrink(v, closed_rows_bytes(v, u, st->held[plan_idx(st, u, j)]));
        }
    if (run && n->op == OP_BATCHNORM && b->pass == PASS_BWD && !st->bn_passes &&
        !st->bn_frozen && !rr_empty(st->comp[i]))
        closed_shrink(v, plan_bn_stats_bytes(net, l));
    if (l == st->out_node && b->pass == PASS_BWD && j == 0)
        closed_shrink(v, v->row_bytes[l] * v->net->nodes[l].h); /* dO: last read */
}

/* Bytes a partition's backward allocates on the way (gradient stripes), released at the end
 * of each node; boundary gradients travel from partition j+1 to j. `gb_in` marks, per node, a
 * boundary gradient received from j+1; `gb_out` what this partition hands to j-1. */
void closed_backward_partition(evaluator *v, const bwd_pass *b, int j, bool *gb_in, bool *gb_out)
{
    const plan_stage *st = b->st;
    int n_local = st->out_node - st->in_node;
    bool *g = v->has_grad; /* gradient stripe allocated for node l in this partition */
    memset(g, 0, (size_t)n_local + 1);
    memset(gb_out, 0, (size_t)n_local + 1);
    for (int l = st->out_node; l > st->in_node; l--) {
        closed_backward_node(v, b, l, j, g, gb_in, gb_out);
        if (b->pass == PASS_GSTATS && l == b->target) {
            /* what the partition still holds: stripes of nodes before the target */
            for (int u = l - 1; u > st->in_node; u--) {
                int ui = plan_idx(st, u, j);
                if (v->saved[u] && v->first_bwd[u] < l && !rr_empty(st->held[ui]))
                    closed_shrink(v, closed_rows_bytes(v, u, st->held[ui]));
                if (g[u - st->in_node])
                    closed_shrink(v, closed_rows_bytes(v, u, st->held[ui]));
            }
            break;
        }
    }
}

void closed_recompute_partition(evaluator *v, const plan_stage *st, int j, bool free_bnd)
{
    fwd_pass f = closed_recompute_pass(st, free_bnd);
    closed_forward_partition(v, &f, j);
}


void closed_input_in(evaluator *v, const plan_stage *st, sched_pass pass, int j)
{
    if (st->in_rows)
        closed_add(v, closed_rows_bytes(v, 0, st->in_rows[j]), pass, 0, j);
}

void closed_input_out(evaluator *v, const plan_stage *st, int j)
{
    if (st->in_rows)
        closed_shrink(v, closed_rows_bytes(v, 0, st->in_rows[j]));
}
