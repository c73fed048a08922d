/* closed.c - the closed-form peak: live bytes of one training step derived from the plan's row
 * ranges by formula, without building or replaying a schedule.
 *
 * Live bytes at any moment = persistent + carried + local, where
 *   persistent = weights + BN running stats + weight gradients + optimizer state + input + labels
 *                + workspace;
 *   carried    = whole tensors that outlive a partition: stage outputs O_s, their gradients,
 *                boundaries B[l][j] kept from the first forward until the recompute of j+1,
 *                exact-BN statistics;
 *   local      = one partition's stripes S[l][j] (rows held[l][j]), their gradients, boundary
 *                gradients in flight, stripe BN statistics.
 * A stripe dies after the last consumer that reads it (its position, not a count), or, when kept
 * for backward, after its last backward reader. The evaluation walks the phases in schedule order
 * and takes the maximum; it agrees with the replay of plan_emit() under the exact allocator to
 * the byte (tests/test_plan.c holds both to it), and it is what the N search evaluates.
 */
#include "plan.h"

#include <string.h>

typedef struct {
    int64_t live, peak;
    int node, part, stage;
    sched_pass pass;
    int64_t stage_peak[PLAN_MAX_STAGES];
    plan_phase *phase; /* the phase being recorded, or NULL */
} meter;

static void grow(meter *m, int64_t bytes, sched_pass pass, int node, int part, int stage)
{
    m->live += bytes;
    if (stage >= 0 && m->live > m->stage_peak[stage])
        m->stage_peak[stage] = m->live;
    if (m->live > m->peak) {
        m->peak = m->live;
        m->pass = pass, m->node = node, m->part = part, m->stage = stage;
    }
    plan_phase *ph = m->phase;
    if (ph && (!ph->grew || m->live > ph->high)) {
        ph->grew = true;
        ph->high = m->live;
        ph->pass = pass, ph->node = node, ph->part = part, ph->stage = stage;
    }
}

static void shrink(meter *m, int64_t bytes)
{
    m->live -= bytes;
}

typedef struct {
    const plan_t *plan;
    const net_t *net;
    int batch, eb;
    meter m;
    int64_t flops, ns;
    int stage;
    /* per node of the current stage: last in-stage consumer, last backward reader */
    int *last_fwd, *first_bwd;
    bool *saved;
    /* per (node, partition) of the current stage */
    bool *has_grad; /* the gradient stripe exists in backward */
    bool *mark;
    int64_t *row_bytes; /* per node: bytes of one row of its output for the whole batch */
    int64_t *fwd_row_flops, *bwd_row_flops, *stats_row_flops; /* per node, per output row */
    plan_phases *phases; /* NULL: not recorded */
    int64_t phase_flops, phase_ns; /* v.flops and v.ns when the current phase began */
} evaluator;

static int64_t rows_bytes(const evaluator *v, int node, rowrange r)
{
    return v->row_bytes[node] * rr_count(r);
}

static int64_t full_bytes(const evaluator *v, int node)
{
    return cost_node_bytes(v->net, node, v->batch, v->eb);
}

static void add(evaluator *v, int64_t bytes, sched_pass pass, int node, int part)
{
    grow(&v->m, bytes, pass, node, part, v->stage);
}

/* Each run's FLOPs fit (cost_check_limits), but exact BatchNorm repeats a deep stage's forward
 * once per BN layer, more often than the check allows for: the sum saturates at INT64_MAX, which
 * strategy_evaluate reports as an overflow. */
static void add_flops(evaluator *v, int64_t flops)
{
    if (__builtin_add_overflow(v->flops, flops, &v->flops))
        v->flops = INT64_MAX;
}

/* One kernel of the schedule (a RUN step that does arithmetic): its FLOPs, and with a device
 * its time. */
static void add_kernel(evaluator *v, int node, int rows, device_kernel_kind kind, int64_t flops)
{
    add_flops(v, flops);
    const device_spec *d = v->plan->cfg.device;
    if (!d || flops == 0)
        return;
    device_kernel k = device_kernel_of(v->net, node, v->batch, v->eb, rows, kind,
                                       v->plan->cfg.optim);
    if (__builtin_add_overflow(v->ns, device_kernel_ns(d, &k), &v->ns))
        v->ns = INT64_MAX;
}

static void phase_begin(evaluator *v)
{
    if (!v->phases)
        return;
    plan_phase *ph = &v->phases->ph[v->phases->n];
    *ph = (plan_phase){.entry = v->m.live, .node = -1, .part = -1, .stage = -1};
    v->phase_flops = v->flops;
    v->phase_ns = v->ns;
    v->m.phase = ph;
}

static void phase_end(evaluator *v)
{
    if (!v->phases)
        return;
    plan_phase *ph = &v->phases->ph[v->phases->n++];
    ph->exit = v->m.live;
    ph->flops = v->flops == INT64_MAX ? INT64_MAX : v->flops - v->phase_flops;
    ph->ns = v->ns == INT64_MAX ? INT64_MAX : v->ns - v->phase_ns;
    v->m.phase = NULL;
}

/* ------------------------------------------------------------------ persistent and tail */

static void persistent(evaluator *v, plan_cost *out)
{
    const net_t *net = v->net;
    int slots = cost_optim_slots(v->plan->cfg.optim);
    out->input_bytes = full_bytes(v, 0) + 4 * (int64_t)v->batch;
    add(v, out->input_bytes, PASS_FWD, 0, -1);
    out->static_bytes = 0;
    for (int l = 1; l < net->n_nodes; l++) {
        const net_node *n = &net->nodes[l];
        int64_t p = n->params * v->eb;
        int64_t running = n->op == OP_BATCHNORM ? 8 * (int64_t)n->c : 0;
        out->static_bytes += p * (2 + slots) + running;
    }
    add(v, out->static_bytes, PASS_FWD, net->n_nodes - 1, -1);
    out->workspace_bytes = v->plan->cfg.workspace_bytes;
    add(v, out->workspace_bytes, PASS_FWD, -1, -1);
}

/* For whole tensors read in the tail: the position (node) of the last forward consumer and the
 * last backward reader; backward positions are visited in decreasing node order. */
typedef struct {
    int *last_fwd;  /* -1: no tail consumer */
    int *first_bwd; /* smallest node whose backward reads it; INT_MAX-like when none */
} tail_readers;

static bool first_occurrence(const net_node *n, int k, int u, const net_t *net)
{
    for (int q = 0; q < k; q++)
        if (plan_root(net, n->inputs[q]) == u)
            return false;
    return true;
}

static void tail_positions(const evaluator *v, tail_readers *t)
{
    const net_t *net = v->net;
    for (int l = v->plan->tail_first; l < net->n_nodes; l++) {
        const net_node *n = &net->nodes[l];
        if (n->op == OP_FLATTEN)
            continue;
        for (int k = 0; k < n->n_inputs; k++) {
            int u = plan_root(net, n->inputs[k]);
            t->last_fwd[u] = l;
            if (plan_bwd_reads_input(n->op) && l < t->first_bwd[u])
                t->first_bwd[u] = l;
        }
        if (plan_bwd_reads_output(n->op) && l < t->first_bwd[l])
            t->first_bwd[l] = l;
    }
}

/* Whether a whole value dies in the tail forward right after node l (it is not read later). */
static bool dies_in_forward(const evaluator *v, const tail_readers *t, const bool *held, int u,
                            int l)
{
    return u != 0 && !held[u] && t->last_fwd[u] == l && t->first_bwd[u] == v->net->n_nodes;
}

static void tail_forward(evaluator *v, const tail_readers *t, const bool *held)
{
    const net_t *net = v->net;
    bool frozen = v->plan->cfg.bn == BN_FROZEN; /* no batch statistics */
    for (int l = v->plan->tail_first; l < net->n_nodes; l++) {
        const net_node *n = &net->nodes[l];
        if (n->op == OP_FLATTEN)
            continue;
        add(v, n->op == OP_SOFTMAX_XENT ? 4 : full_bytes(v, l), PASS_FWD, l, -1);
        if (n->op == OP_BATCHNORM && !frozen)
            add(v, plan_bn_stats_bytes(net, l), PASS_FWD, l, -1);
        add_kernel(v, l, n->h, KERNEL_FWD, cost_fwd_flops(net, l, v->batch, n->h));
        for (int k = 0; k < n->n_inputs; k++) {
            int u = plan_root(net, n->inputs[k]);
            if (first_occurrence(n, k, u, net) && dies_in_forward(v, t, held, u, l))
                shrink(&v->m, full_bytes(v, u));
        }
    }
}

static void tail_backward(evaluator *v, const tail_readers *t, const bool *held, bool *has_grad)
{
    const net_t *net = v->net;
    bool frozen = v->plan->cfg.bn == BN_FROZEN; /* no statistics, no gradient reductions */
    for (int l = net->n_nodes - 1; l >= v->plan->tail_first; l--) {
        const net_node *n = &net->nodes[l];
        if (n->op == OP_FLATTEN)
            continue;
        for (int k = 0; k < n->n_inputs; k++) {
            int u = plan_root(net, n->inputs[k]);
            if (u != 0 && !has_grad[u]) {
                has_grad[u] = true;
                add(v, full_bytes(v, u), PASS_BWD, l, -1);
            }
        }
        if (n->op == OP_BATCHNORM && !frozen)
            add(v, plan_bn_gred_bytes(net, l), PASS_BWD, l, -1);
        add_kernel(v, l, n->h, KERNEL_BWD, cost_bwd_flops(net, l, v->batch, n->h));
        if (n->op == OP_BATCHNORM && !frozen)
            shrink(&v->m, plan_bn_gred_bytes(net, l) + plan_bn_stats_bytes(net, l));
        shrink(&v->m, n->op == OP_SOFTMAX_XENT ? 4 : full_bytes(v, l)); /* loss value or dY */
        /* values whose last backward reader is l, and that no stage still holds */
        for (int k = 0; k < n->n_inputs; k++) {
            int u = plan_root(net, n->inputs[k]);
            if (plan_bwd_reads_input(n->op) && first_occurrence(n, k, u, net) && u != 0 &&
                !held[u] && t->first_bwd[u] == l)
                shrink(&v->m, full_bytes(v, u));
        }
        if (plan_bwd_reads_output(n->op) && !held[l] && t->first_bwd[l] == l)
            shrink(&v->m, full_bytes(v, l));
    }
}

/* ------------------------------------------------------------------ stage helpers */

static rowrange boundary(const plan_stage *st, int l, int j)
{
    if (st->kind == PART_OVERLAP || j + 1 >= st->parts || l == st->out_node)
        return rr_none();
    rowrange next = st->held[plan_idx(st, l, j + 1)];
    return rr_empty(next) ? rr_none() : rr_make(next.lo, st->held[plan_idx(st, l, j)].hi);
}

static rowrange head(const plan_stage *st, int l, int j)
{
    int i = plan_idx(st, l, j);
    return rr_make(st->held[i].lo, st->comp[i].lo - 1);
}

/* Per node: which ops in the stage read it in backward, and its last consumer in a pass that
 * runs `subset` (NULL: all nodes). */
static void stage_positions(evaluator *v, const plan_stage *st, const bool *subset)
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

typedef struct {
    const plan_stage *st;
    sched_pass pass;
    bool store, make_bnd, free_bnd;
    const bool *subset;
    int stats_node;
} fwd_pass;

static inline bool holds_stripe(const plan_stage *st, const fwd_pass *f, int l, int j)
{
    return l != st->out_node && !(f->pass == PASS_STATS && l == f->stats_node) &&
           !rr_empty(st->held[plan_idx(st, l, j)]);
}

/* The stripe of u made in partition j leaves: kept for backward, or handed on and freed. */
static void forward_release(evaluator *v, const fwd_pass *f, int u, int j)
{
    const plan_stage *st = f->st;
    if ((f->store && v->saved[u]) || !holds_stripe(st, f, u, j))
        return;
    rowrange b = boundary(st, u, j);
    if (f->make_bnd && !rr_empty(b))
        add(v, rows_bytes(v, u, b), f->pass, u, j);
    shrink(&v->m, rows_bytes(v, u, st->held[plan_idx(st, u, j)]));
}

static void forward_node(evaluator *v, const fwd_pass *f, int l, int j)
{
    const net_t *net = v->net;
    const plan_stage *st = f->st;
    int i = plan_idx(st, l, j);
    bool stats_acc = f->pass == PASS_STATS && l == f->stats_node;
    if (holds_stripe(st, f, l, j)) {
        add(v, rows_bytes(v, l, st->held[i]), f->pass, l, j);
        bool last_read = f->free_bnd || (f->pass == PASS_FWD && !st->rerun[l]);
        if (st->kind != PART_OVERLAP && j > 0 && !rr_empty(head(st, l, j)) && last_read)
            shrink(&v->m, rows_bytes(v, l, head(st, l, j)));
    }
    rowrange rows = stats_acc ? st->own[i] : st->comp[i];
    bool stripe_stats = net->nodes[l].op == OP_BATCHNORM && !stats_acc && !st->bn_passes &&
                        !st->bn_frozen && !rr_empty(rows);
    if (stripe_stats)
        add(v, plan_bn_stats_bytes(net, l), f->pass, l, j);
    add_kernel(v, l, rr_count(rows), stats_acc ? KERNEL_STATS : KERNEL_FWD,
               (stats_acc ? v->stats_row_flops[l] : v->fwd_row_flops[l]) * rr_count(rows));
    if (stripe_stats && !f->store && l != st->out_node)
        shrink(&v->m, plan_bn_stats_bytes(net, l));
    if (l != st->out_node && v->last_fwd[l] < 0)
        forward_release(v, f, l, j); /* no reader in this pass */
    const net_node *n = &net->nodes[l];
    for (int k = 0; k < n->n_inputs; k++) {
        int u = n->inputs[k];
        if (u != st->in_node && first_occurrence(n, k, u, net) && v->last_fwd[u] == l)
            forward_release(v, f, u, j);
    }
}

static void forward_partition(evaluator *v, const fwd_pass *f, int j)
{
    const plan_stage *st = f->st;
    for (int l = st->in_node + 1; l <= st->out_node; l++) {
        if (f->subset && !f->subset[l])
            continue;
        forward_node(v, f, l, j);
    }
}

static void mark_ancestors(evaluator *v, const plan_stage *st, int node)
{
    memset(v->mark, 0, (size_t)v->net->n_nodes);
    v->mark[node] = true;
    for (int l = node; l > st->in_node; l--)
        if (v->mark[l])
            for (int k = 0; k < v->net->nodes[l].n_inputs; k++)
                v->mark[v->net->nodes[l].inputs[k]] = true;
    v->mark[st->in_node] = false;
}

static void mark_descendants(evaluator *v, const plan_stage *st, int node)
{
    memset(v->mark, 0, (size_t)v->net->n_nodes);
    v->mark[node] = true;
    for (int l = node + 1; l <= st->out_node; l++)
        for (int k = 0; k < v->net->nodes[l].n_inputs; k++)
            v->mark[l] |= v->mark[v->net->nodes[l].inputs[k]];
}

/* ------------------------------------------------------------------ stage forward */

static void stage_forward(evaluator *v, const plan_stage *st)
{
    const net_t *net = v->net;
    add(v, full_bytes(v, st->out_node), PASS_FWD, st->out_node, -1);
    for (int bn = st->in_node + 1; st->bn_passes && bn <= st->out_node; bn++) {
        if (net->nodes[bn].op != OP_BATCHNORM)
            continue;
        mark_ancestors(v, st, bn);
        stage_positions(v, st, v->mark);
        add(v, plan_bn_stats_bytes(net, bn), PASS_STATS, bn, -1);
        fwd_pass f = {st, PASS_STATS, false, true, true, v->mark, bn};
        for (int j = 0; j < st->parts; j++)
            forward_partition(v, &f, j);
    }
    stage_positions(v, st, NULL);
    for (int j = 0; j < st->parts; j++) {
        bool store = st->store_last && j == st->parts - 1;
        fwd_pass f = {st, PASS_FWD, store, true, store, NULL, -1};
        forward_partition(v, &f, j);
    }
}

/* ------------------------------------------------------------------ stage backward */

typedef struct {
    const plan_stage *st;
    sched_pass pass;
    const bool *subset;
    int target;
} bwd_pass;

static rowrange bwd_rows(const plan_stage *st, int l, int j)
{
    int i = plan_idx(st, l, j);
    return st->kind == PART_OVERLAP ? st->comp[i] : st->own[i];
}

/* Bytes a partition's backward allocates on the way (gradient stripes), released at the end
 * of each node; boundary gradients travel from partition j+1 to j. `gb_in` marks, per node, a
 * boundary gradient received from j+1; `gb_out` what this partition hands to j-1. */
static void backward_partition(evaluator *v, const bwd_pass *b, int j, bool *gb_in, bool *gb_out)
{
    const net_t *net = v->net;
    const plan_stage *st = b->st;
    bool tiled = st->kind != PART_OVERLAP;
    int n_local = st->out_node - st->in_node;
    bool *g = v->has_grad; /* gradient stripe allocated for node l in this partition */
    memset(g, 0, (size_t)n_local + 1);
    memset(gb_out, 0, (size_t)n_local + 1);
    for (int l = st->out_node; l > st->in_node; l--) {
        const net_node *n = &net->nodes[l];
        int li = l - st->in_node;
        bool run = !b->subset || b->subset[l];
        int i = plan_idx(st, l, j);
        if (l == st->out_node)
            g[li] = true;
        if (run && tiled && l != st->out_node && gb_in[li]) {
            if (!g[li]) {
                g[li] = true;
                add(v, rows_bytes(v, l, st->held[i]), b->pass, l, j);
            }
            shrink(&v->m, rows_bytes(v, l, boundary(st, l, j)));
        }
        rowrange rows = bwd_rows(st, l, j);
        bool acc = b->pass == PASS_GSTATS && l == b->target;
        if (run && !rr_empty(rows) && g[li]) {
            for (int k = 0; k < n->n_inputs && !acc; k++) {
                int u = n->inputs[k];
                int ui = u - st->in_node;
                if (u != st->in_node && !g[ui]) {
                    g[ui] = true;
                    add(v, rows_bytes(v, u, st->held[plan_idx(st, u, j)]), b->pass, l, j);
                }
            }
            bool stripe_bn = n->op == OP_BATCHNORM && !st->bn_passes && !st->bn_frozen;
            if (stripe_bn && !acc)
                add(v, plan_bn_gred_bytes(net, l), b->pass, l, j);
            add_kernel(v, l, rr_count(rows), acc ? KERNEL_STATS : KERNEL_BWD,
                       (acc ? v->stats_row_flops[l] : v->bwd_row_flops[l]) * rr_count(rows));
            if (stripe_bn && !acc)
                shrink(&v->m, plan_bn_gred_bytes(net, l));
        }
        rowrange hd = rr_make(st->held[i].lo, st->own[i].lo - 1);
        if (run && tiled && l != st->out_node && j > 0 && !rr_empty(hd) && g[li]) {
            gb_out[li] = true;
            add(v, rows_bytes(v, l, hd), b->pass, l, j);
        }
        if (l != st->out_node && g[li])
            shrink(&v->m, rows_bytes(v, l, st->held[i]));
        /* saved stripes whose last backward reader is l */
        if (plan_bwd_reads_output(n->op) && v->first_bwd[l] == l && l != st->out_node)
            shrink(&v->m, rows_bytes(v, l, st->held[i]));
        if (plan_bwd_reads_input(n->op))
            for (int k = 0; k < n->n_inputs; k++) {
                int u = n->inputs[k];
                if (u != st->in_node && first_occurrence(n, k, u, net) && v->first_bwd[u] == l)
                    shrink(&v->m, rows_bytes(v, u, st->held[plan_idx(st, u, j)]));
            }
        if (run && n->op == OP_BATCHNORM && b->pass == PASS_BWD && !st->bn_passes &&
            !st->bn_frozen && !rr_empty(st->comp[i]))
            shrink(&v->m, plan_bn_stats_bytes(net, l));
        if (l == st->out_node && b->pass == PASS_BWD && j == 0)
            shrink(&v->m, v->row_bytes[l] * v->net->nodes[l].h); /* dO: last read */
        if (b->pass == PASS_GSTATS && l == b->target) {
            /* what the partition still holds: stripes of nodes before the target */
            for (int u = l - 1; u > st->in_node; u--) {
                int ui = plan_idx(st, u, j);
                if (v->saved[u] && v->first_bwd[u] < l && !rr_empty(st->held[ui]))
                    shrink(&v->m, rows_bytes(v, u, st->held[ui]));
                if (g[u - st->in_node])
                    shrink(&v->m, rows_bytes(v, u, st->held[ui]));
            }
            break;
        }
    }
}

/* Callers set the positions for st->rerun once (stage_positions) before the partition loop. */
static void recompute_partition(evaluator *v, const plan_stage *st, int j, bool free_bnd)
{
    fwd_pass f = {st, PASS_RECOMPUTE, true, false, free_bnd, st->rerun, -1};
    forward_partition(v, &f, j);
}

static void stage_backward(evaluator *v, const plan_stage *st, bool *held, bool *gb_a, bool *gb_b)
{
    const net_t *net = v->net;
    int a = st->in_node, b = st->out_node, n_local = b - a;
    if (a != 0)
        add(v, full_bytes(v, a), PASS_BWD, b, -1);
    for (int bn = b; st->bn_passes && bn > a; bn--) {
        if (net->nodes[bn].op != OP_BATCHNORM)
            continue;
        mark_descendants(v, st, bn);
        add(v, plan_bn_gred_bytes(net, bn), PASS_GSTATS, bn, -1);
        bwd_pass bp = {st, PASS_GSTATS, v->mark, bn};
        stage_positions(v, st, st->rerun);
        memset(gb_a, 0, (size_t)n_local + 1);
        for (int j = st->parts - 1; j >= 0; j--) {
            recompute_partition(v, st, j, false);
            backward_partition(v, &bp, j, gb_a, gb_b);
            memcpy(gb_a, gb_b, (size_t)n_local + 1);
        }
    }
    bwd_pass bp = {st, PASS_BWD, NULL, -1};
    stage_positions(v, st, st->rerun);
    memset(gb_a, 0, (size_t)n_local + 1);
    for (int j = st->parts - 1; j >= 0; j--) {
        if (!(st->store_last && j == st->parts - 1))
            recompute_partition(v, st, j, true);
        backward_partition(v, &bp, j, gb_a, gb_b);
        memcpy(gb_a, gb_b, (size_t)n_local + 1);
    }
    for (int l = a + 1; st->bn_passes && l <= b; l++)
        if (net->nodes[l].op == OP_BATCHNORM)
            shrink(&v->m, plan_bn_gred_bytes(net, l) + plan_bn_stats_bytes(net, l));
    if (held[b]) {
        held[b] = false;
        shrink(&v->m, full_bytes(v, b)); /* O, read by its own backward until now */
    }
}

/* Stage outputs not held by their own stage die when the next stage's backward ends (or in
 * the tail, by its readers). */
static void free_stage_input(evaluator *v, const plan_stage *st, const bool *held)
{
    if (st->in_node != 0 && !held[st->in_node])
        shrink(&v->m, full_bytes(v, st->in_node));
}

/* ------------------------------------------------------------------ driver */

static void stage_forward_flops_and_bytes(evaluator *v, bool *held)
{
    for (int s = 0; s < v->plan->n_stages; s++) {
        const plan_stage *st = &v->plan->stages[s];
        v->stage = s;
        held[st->out_node] = plan_bwd_reads_output(v->net->nodes[st->out_node].op);
        phase_begin(v);
        stage_forward(v, st);
        phase_end(v);
    }
    v->stage = -1;
}

static int64_t add_saturating(int64_t a, int64_t b)
{
    int64_t r;
    return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

void plan_compose(const plan_phases *const *by_stage, int n_stages, plan_cost *out)
{
    const plan_phases *base = by_stage[0];
    memset(out, 0, sizeof *out);
    out->static_bytes = base->static_bytes;
    out->input_bytes = base->input_bytes;
    out->workspace_bytes = base->workspace_bytes;
    out->peak_node = out->peak_part = out->peak_stage = -1;
    int64_t live = 0, flops = 0, ns = 0;
    for (int i = 0; i < 2 * n_stages + 3; i++) {
        const plan_phases *from = base;
        if (i >= 1 && i <= n_stages)
            from = by_stage[i - 1];
        else if (i >= n_stages + 3)
            from = by_stage[2 + 2 * n_stages - i];
        const plan_phase *ph = &from->ph[i];
        if (ph->grew) {
            int64_t high = live + (ph->high - ph->entry);
            if (ph->stage >= 0 && high > out->stage_peak[ph->stage])
                out->stage_peak[ph->stage] = high;
            if (high > out->peak_bytes) {
                out->peak_bytes = high;
                out->peak_node = ph->node, out->peak_part = ph->part, out->peak_stage = ph->stage;
                out->peak_pass = ph->pass;
            }
        }
        live += ph->exit - ph->entry;
        flops = add_saturating(flops, ph->flops);
        ns = add_saturating(ns, ph->ns);
    }
    out->flops = add_saturating(flops, base->update_flops);
    out->step_ns = add_saturating(ns, base->update_ns);
}

static void closed_form(const plan_t *plan, plan_cost *out, plan_phases *phases)
{
    const net_t *net = plan->net;
    int n = net->n_nodes;
    evaluator v = {.plan = plan, .net = net, .batch = plan->cfg.batch,
                   .eb = cost_dtype_bytes(plan->cfg.dtype), .stage = -1, .phases = phases};
    if (phases)
        phases->n = 0;
    v.m.node = v.m.part = v.m.stage = -1;
    v.last_fwd = malloc(sizeof(int) * (size_t)n);
    v.first_bwd = malloc(sizeof(int) * (size_t)n);
    v.saved = calloc((size_t)n, 1);
    v.has_grad = calloc((size_t)n + 1, 1);
    v.mark = calloc((size_t)n, 1);
    bool *held = calloc((size_t)n, 1), *grad = calloc((size_t)n, 1);
    bool *gb_a = calloc((size_t)n + 1, 1), *gb_b = calloc((size_t)n + 1, 1);
    tail_readers t = {malloc(sizeof(int) * (size_t)n), malloc(sizeof(int) * (size_t)n)};
    v.row_bytes = malloc(sizeof(int64_t) * 4 * (size_t)n);
    LR_ASSERT(v.row_bytes != NULL);
    v.fwd_row_flops = v.row_bytes + n;
    v.bwd_row_flops = v.row_bytes + 2 * n;
    v.stats_row_flops = v.row_bytes + 3 * n;
    for (int i = 0; i < n; i++) {
        v.row_bytes[i] = cost_rows_bytes(net, i, v.batch, v.eb, 1);
        v.fwd_row_flops[i] = cost_fwd_flops(net, i, v.batch, 1);
        v.bwd_row_flops[i] = cost_bwd_flops(net, i, v.batch, 1);
        v.stats_row_flops[i] = cost_stats_flops(net, i, v.batch, 1);
    }
    LR_ASSERT(v.last_fwd && v.first_bwd && v.saved && v.has_grad && v.mark &&
              held && grad && gb_a && gb_b && t.last_fwd && t.first_bwd);
    for (int i = 0; i < n; i++)
        t.last_fwd[i] = -1, t.first_bwd[i] = n;
    memset(out, 0, sizeof *out);
    phase_begin(&v);
    persistent(&v, out);
    phase_end(&v);
    tail_positions(&v, &t);
    stage_forward_flops_and_bytes(&v, held);
    phase_begin(&v);
    tail_forward(&v, &t, held);
    phase_end(&v);
    phase_begin(&v);
    tail_backward(&v, &t, held, grad);
    phase_end(&v);
    for (int s = plan->n_stages - 1; s >= 0; s--) {
        v.stage = s;
        phase_begin(&v);
        stage_backward(&v, &plan->stages[s], held, gb_a, gb_b);
        free_stage_input(&v, &plan->stages[s], held);
        phase_end(&v);
    }
    int64_t before_updates = v.flops, ns_before_updates = v.ns;
    for (int l = 1; l < n; l++)
        if (net->nodes[l].params)
            add_kernel(&v, l, 0, KERNEL_UPDATE,
                       (int64_t)(2 + 3 * cost_optim_slots(plan->cfg.optim)) * net->nodes[l].params);
    if (phases) {
        phases->update_flops = v.flops == INT64_MAX ? INT64_MAX : v.flops - before_updates;
        phases->update_ns = v.ns == INT64_MAX ? INT64_MAX : v.ns - ns_before_updates;
        phases->static_bytes = out->static_bytes;
        phases->input_bytes = out->input_bytes;
        phases->workspace_bytes = out->workspace_bytes;
    }
    out->peak_bytes = v.m.peak;
    out->peak_node = v.m.node;
    out->peak_part = v.m.part;
    out->peak_stage = v.m.stage;
    out->peak_pass = v.m.pass;
    out->flops = v.flops;
    out->step_ns = v.ns;
    memcpy(out->stage_peak, v.m.stage_peak, sizeof out->stage_peak);
    free(v.last_fwd), free(v.first_bwd), free(v.saved), free(v.has_grad);
    free(v.mark), free(held), free(grad), free(gb_a), free(gb_b), free(t.last_fwd);
    free(t.first_bwd);
    free(v.row_bytes);
}

void plan_closed_form(const plan_t *plan, plan_cost *out)
{
    closed_form(plan, out, NULL);
}

void plan_closed_phases(const plan_t *plan, plan_cost *out, plan_phases *phases)
{
    closed_form(plan, out, phases);
}
