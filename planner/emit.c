/* emit.c - a plan becomes a schedule: every allocation, kernel, row copy and free of one
 * training step, decided by counting consumers (ggml's n_children): a tensor is freed right
 * after the last step that reads it.
 *
 * What each op's backward reads is decided in plan.h; flatten is a view: it shares its input's
 * tensors and emits no step.
 *
 * Order inside one step: persistent tensors; forward of each stage, then of the tail; backward
 * of the tail, then of each stage from last to first; the optimizer update.
 * Deliberately not here: the closed-form peak (closed.c), which re-derives the same lifetimes by
 * formula and must agree with the replay of what is emitted here to the byte.
 */
#include "plan.h"

#include <string.h>

typedef struct {
    const plan_t *plan;
    const net_t *net;
    sched_t *s;
    int batch, eb;
    /* persistent */
    int *param, *pgrad, *opt, *running;
    int labels, workspace;
    /* whole tensors per node (tail, stage outputs, network input) */
    int *val, *grad, *stats;
    int *fwd_left, *bwd_left; /* tail readers still to come */
    bool *held;               /* a stage output kept until its own stage's backward */
    /* exact-BN statistics per node */
    int *gstats, *gred;
    /* per stage, per (node, partition): value, boundary, gradient, boundary gradient, stripe stats */
    int *sv, *bnd, *sg, *gbnd, *sst;
    int *left, *bleft; /* per node: in-stage forward consumers / backward readers still to come */
    int *off;          /* per stage: offset of its (node, partition) entries in sv, bnd, ... */
    int stage;
    int in_dev; /* --offload input: the device stripe of the input the partition reads, or -1 */
} emitter;

static int *ints(int n)
{
    int *p = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    LR_ASSERT(p != NULL);
    for (int i = 0; i < n; i++)
        p[i] = -1;
    return p;
}

static int add_value(emitter *e, sched_class cls, sched_kind kind, int node, int part,
                     rowrange rows)
{
    int64_t bytes = cost_rows_bytes(e->net, node, e->batch, e->eb, rr_count(rows));
    return sched_add_tensor(e->s, cls, kind, node, part, rows.lo, rows.hi, bytes);
}

static void alloc_t(emitter *e, int t, int pass, int node, int part)
{
    sched_alloc(e->s, t, pass, node, part, e->stage);
}

static void free_t(emitter *e, int *slot, int pass, int node, int part)
{
    if (*slot >= 0)
        sched_release(e->s, *slot, pass, node, part, e->stage);
    *slot = -1;
}

/* ------------------------------------------------------------------ persistent tensors */

static void emit_persistent(emitter *e)
{
    const net_t *net = e->net;
    int slots = cost_optim_slots(e->plan->cfg.optim);
    int64_t eb = e->eb;
    e->val[0] = add_value(e, TC_INPUT, TK_VALUE, 0, -1, rr_make(0, net->nodes[0].h - 1));
    if (e->plan->n_stages > 0 && e->plan->stages[0].in_rows)
        e->s->tensors[e->val[0]].tier = TIER_HOST;
    alloc_t(e, e->val[0], PASS_FWD, 0, -1);
    e->labels = sched_add_tensor(e->s, TC_INPUT, TK_LABELS, -1, -1, -1, -1, 4 * (int64_t)e->batch);
    alloc_t(e, e->labels, PASS_FWD, -1, -1);
    for (int l = 1; l < net->n_nodes; l++) {
        const net_node *n = &net->nodes[l];
        if (n->params == 0)
            continue;
        e->param[l] = sched_add_tensor(e->s, TC_WEIGHT, TK_PARAM, l, -1, -1, -1, n->params * eb);
        alloc_t(e, e->param[l], PASS_FWD, l, -1);
        if (n->op == OP_BATCHNORM) {
            e->running[l] = sched_add_tensor(e->s, TC_WEIGHT, TK_RUNNING, l, -1, -1, -1, 2 * (int64_t)n->c * 4);
            alloc_t(e, e->running[l], PASS_FWD, l, -1);
        }
        e->pgrad[l] = sched_add_tensor(e->s, TC_WEIGHT_GRAD, TK_PARAM_GRAD, l, -1, -1, -1, n->params * eb);
        alloc_t(e, e->pgrad[l], PASS_FWD, l, -1);
        if (slots) {
            e->opt[l] = sched_add_tensor(e->s, TC_OPT_STATE, TK_OPT_STATE, l, -1, -1, -1, n->params * eb * slots);
            alloc_t(e, e->opt[l], PASS_FWD, l, -1);
        }
    }
    if (e->plan->cfg.workspace_bytes > 0) {
        e->workspace = sched_add_tensor(e->s, TC_WORKSPACE, TK_WORKSPACE, -1, -1, -1, -1,
                                        e->plan->cfg.workspace_bytes);
        alloc_t(e, e->workspace, PASS_FWD, -1, -1);
    }
}

static void free_persistent(emitter *e)
{
    for (int l = e->net->n_nodes - 1; l >= 1; l--) {
        free_t(e, &e->opt[l], PASS_UPDATE, l, -1);
        free_t(e, &e->pgrad[l], PASS_UPDATE, l, -1);
        free_t(e, &e->running[l], PASS_UPDATE, l, -1);
        free_t(e, &e->param[l], PASS_UPDATE, l, -1);
    }
    free_t(e, &e->workspace, PASS_UPDATE, -1, -1);
    free_t(e, &e->labels, PASS_UPDATE, -1, -1);
    free_t(e, &e->val[0], PASS_UPDATE, 0, -1);
}

static sched_run *run_step(emitter *e, int pass, int node, int part, rowrange rows, int flags,
                           int64_t flops)
{
    sched_run *r = sched_run_step(e->s, pass, node, part, e->stage, rows.lo, rows.hi, flags, flops);
    const net_node *n = &e->net->nodes[node];
    r->n_in = n->n_inputs;
    r->param = e->param[node];
    r->workspace = e->workspace;
    return r;
}

/* ------------------------------------------------------------------ tail (column-wise) */

static rowrange all_rows(const emitter *e, int node)
{
    return rr_make(0, e->net->nodes[node].h - 1);
}

/* Frees a whole value tensor once no forward consumer and no backward reader is left. */
static void maybe_free_value(emitter *e, int u, int pass)
{
    if (u == 0 || e->fwd_left[u] > 0 || e->bwd_left[u] > 0 || e->held[u])
        return;
    free_t(e, &e->val[u], pass, u, -1);
}

/* --bn frozen: a BatchNorm step reads the running statistics instead of batch statistics. */
static bool frozen_bn(const emitter *e, int node)
{
    return e->net->nodes[node].op == OP_BATCHNORM && e->plan->cfg.bn == BN_FROZEN;
}

static void tail_forward_node(emitter *e, int l)
{
    const net_t *net = e->net;
    const net_node *n = &net->nodes[l];
    sched_kind kind = n->op == OP_SOFTMAX_XENT ? TK_LOSS : TK_VALUE;
    e->val[l] = kind == TK_LOSS ? sched_add_tensor(e->s, TC_ACTIVATION, TK_LOSS, l, -1, -1, -1, 4)
                                : add_value(e, TC_ACTIVATION, TK_VALUE, l, -1, all_rows(e, l));
    alloc_t(e, e->val[l], PASS_FWD, l, -1);
    if (n->op == OP_BATCHNORM && !frozen_bn(e, l)) {
        e->stats[l] = sched_add_tensor(e->s, TC_ACTIVATION, TK_BN_STATS, l, -1, -1, -1,
                                       plan_bn_stats_bytes(net, l));
        alloc_t(e, e->stats[l], PASS_FWD, l, -1);
    }
    sched_run *r = run_step(e, PASS_FWD, l, -1, all_rows(e, l), frozen_bn(e, l) ? RUN_BN_FROZEN : 0,
                            cost_fwd_flops(net, l, e->batch, n->h));
    for (int k = 0; k < n->n_inputs; k++)
        r->in[k] = e->val[plan_root(net, n->inputs[k])];
    r->out = e->val[l];
    r->aux = e->stats[l];
    r->running = e->running[l];
    if (n->op == OP_SOFTMAX_XENT) {
        r->labels = e->labels;
        r->loss = e->val[l];
        r->out = -1;
    }
    for (int k = 0; k < n->n_inputs; k++) {
        int u = plan_root(net, n->inputs[k]);
        bool seen = false;
        for (int q = 0; q < k; q++)
            seen |= plan_root(net, n->inputs[q]) == u;
        if (!seen) {
            e->fwd_left[u]--;
            maybe_free_value(e, u, PASS_FWD);
        }
    }
}

static int ensure_grad(emitter *e, int u, int pass, int by_node)
{
    if (e->grad[u] < 0) {
        e->grad[u] = add_value(e, TC_ACT_GRAD, TK_GRAD, u, -1, all_rows(e, u));
        alloc_t(e, e->grad[u], pass, by_node, -1);
    }
    return e->grad[u];
}

static void tail_backward_node(emitter *e, int l)
{
    const net_t *net = e->net;
    const net_node *n = &net->nodes[l];
    int din[NET_MAX_INPUTS];
    for (int k = 0; k < n->n_inputs; k++) {
        int u = plan_root(net, n->inputs[k]);
        din[k] = u == 0 ? -1 : ensure_grad(e, u, PASS_BWD, l);
    }
    int gred = -1;
    if (n->op == OP_BATCHNORM && !frozen_bn(e, l)) {
        gred = sched_add_tensor(e->s, TC_ACT_GRAD, TK_BN_GRED, l, -1, -1, -1, plan_bn_gred_bytes(net, l));
        alloc_t(e, gred, PASS_BWD, l, -1);
    }
    sched_run *r = run_step(e, PASS_BWD, l, -1, all_rows(e, l), frozen_bn(e, l) ? RUN_BN_FROZEN : 0,
                            cost_bwd_flops(net, l, e->batch, n->h));
    bool reads_in = plan_bwd_reads_input(n->op);
    for (int k = 0; k < n->n_inputs; k++) {
        r->in[k] = reads_in ? e->val[plan_root(net, n->inputs[k])] : -1;
        r->din[k] = din[k];
    }
    r->out = plan_bwd_reads_output(n->op) ? e->val[l] : -1;
    r->dout = n->op == OP_SOFTMAX_XENT ? -1 : e->grad[l];
    r->param_grad = e->pgrad[l];
    r->aux = e->stats[l];
    r->gred = gred;
    r->running = frozen_bn(e, l) ? e->running[l] : -1;
    r->labels = n->op == OP_SOFTMAX_XENT ? e->labels : -1;
    free_t(e, &gred, PASS_BWD, l, -1);
    free_t(e, &e->stats[l], PASS_BWD, l, -1);
    if (n->op == OP_SOFTMAX_XENT)
        free_t(e, &e->val[l], PASS_BWD, l, -1);
    else
        free_t(e, &e->grad[l], PASS_BWD, l, -1);
    if (reads_in)
        for (int k = 0; k < n->n_inputs; k++) {
            int u = plan_root(net, n->inputs[k]);
            bool seen = false;
            for (int q = 0; q < k; q++)
                seen |= plan_root(net, n->inputs[q]) == u;
            if (!seen) {
                e->bwd_left[u]--;
                maybe_free_value(e, u, PASS_BWD);
            }
        }
    if (plan_bwd_reads_output(n->op)) {
        e->bwd_left[l]--;
        maybe_free_value(e, l, PASS_BWD);
    }
}

/* Readers of each whole tensor in the tail: forward consumers and backward readers. */
static void count_tail_readers(emitter *e)
{
    const net_t *net = e->net;
    for (int l = e->plan->tail_first; l < net->n_nodes; l++) {
        const net_node *n = &net->nodes[l];
        if (n->op == OP_FLATTEN)
            continue;
        for (int k = 0; k < n->n_inputs; k++) {
            int u = plan_root(net, n->inputs[k]);
            bool seen = false;
            for (int q = 0; q < k; q++)
                seen |= plan_root(net, n->inputs[q]) == u;
            if (seen)
                continue;
            e->fwd_left[u]++;
            if (plan_bwd_reads_input(n->op))
                e->bwd_left[u]++;
        }
        if (plan_bwd_reads_output(n->op))
            e->bwd_left[l]++;
    }
}

/* ------------------------------------------------------------------ stages */

typedef struct {
    const plan_stage *st;
    int pass;         /* FWD, RECOMPUTE, STATS */
    bool store;       /* keep what backward reads */
    bool make_bnd;    /* hand boundary rows to the next partition */
    bool free_bnd;    /* the boundary from the previous partition is read for the last time */
    const bool *subset; /* nodes to run (NULL: all) */
    int stats_node;   /* STATS pass: the BN node whose input statistics are gathered */
    int *bnd;         /* boundary tensors to use (main or transient) */
    bool keep_input;  /* an offloaded input's stripe stays for the partition's backward */
} fwd_ctx;

static int *slot(emitter *e, int *arr, const plan_stage *st, int node, int j)
{
    return &arr[e->off[e->stage] + plan_idx(st, node, j)];
}

/* --offload input: partition j of the first stage copies the input rows it reads into a device
 * stripe when it starts (input_in), and frees it when it ends (input_out). */
static void input_in(emitter *e, const plan_stage *st, int pass, int j)
{
    if (!st->in_rows || e->in_dev >= 0)
        return;
    rowrange r = st->in_rows[j];
    e->in_dev = add_value(e, TC_ACTIVATION, TK_VALUE, 0, j, r); /* a stripe: not persistent */
    alloc_t(e, e->in_dev, pass, 0, j);
    if (!rr_empty(r))
        sched_copy(e->s, e->in_dev, e->val[0], r.lo, r.hi, false, pass, 0, j, e->stage);
}

static void input_out(emitter *e, int pass, int j)
{
    free_t(e, &e->in_dev, pass, 0, j);
}

/* The tensor holding node u's rows for partition j. */
static int value_of(emitter *e, const plan_stage *st, int u, int j)
{
    if (u == st->in_node && st->in_rows)
        return e->in_dev;
    if (u == st->in_node || u == st->out_node)
        return e->val[u];
    return *slot(e, e->sv, st, u, j);
}

static bool bwd_saved(const emitter *e, const plan_stage *st, int u)
{
    if (plan_bwd_reads_output(e->net->nodes[u].op))
        return true;
    for (int q = e->net->cons_off[u]; q < e->net->cons_off[u + 1]; q++) {
        int c = e->net->cons_node[q];
        if (c <= st->out_node && plan_bwd_reads_input(e->net->nodes[c].op))
            return true;
    }
    return false;
}

static bool in_subset(const fwd_ctx *f, int l)
{
    return f->subset ? f->subset[l] : true;
}

/* Consumers of u in the stage that this pass runs (each consumer counted once). */
static int count_consumers(const emitter *e, const fwd_ctx *f, int u)
{
    int n = 0, last = -1;
    for (int q = e->net->cons_off[u]; q < e->net->cons_off[u + 1]; q++) {
        int c = e->net->cons_node[q];
        if (c <= f->st->out_node && c != last && in_subset(f, c))
            n++;
        last = c;
    }
    return n;
}

/* Rows [lo, hi] of node l that partition j+1 reads from partition j. */
static rowrange boundary_rows(const plan_stage *st, int l, int j)
{
    if (st->kind == PART_OVERLAP || j + 1 >= st->parts || l == st->out_node)
        return rr_none();
    rowrange next = st->held[plan_idx(st, l, j + 1)];
    rowrange mine = st->held[plan_idx(st, l, j)];
    if (rr_empty(next))
        return rr_none();
    return rr_make(next.lo, mine.hi);
}

static void release_forward_value(emitter *e, const fwd_ctx *f, int u, int j)
{
    const plan_stage *st = f->st;
    if (f->store && bwd_saved(e, st, u))
        return;
    int *v = slot(e, e->sv, st, u, j);
    rowrange b = boundary_rows(st, u, j);
    if (f->make_bnd && !rr_empty(b) && *v >= 0) {
        int *bt = slot(e, f->bnd, st, u, j);
        *bt = add_value(e, TC_BOUNDARY, TK_VALUE, u, j, b);
        if (f->pass == PASS_FWD && plan_bnd_on_host(st, u, j)) /* --offload boundary */
            e->s->tensors[*bt].tier = TIER_HOST;
        alloc_t(e, *bt, f->pass, u, j);
        sched_copy(e->s, *bt, *v, b.lo, b.hi, false, f->pass, u, j, e->stage);
    }
    free_t(e, v, f->pass, u, j);
}

static int grad_of(emitter *e, const plan_stage *st, int u, int j, int pass, int by);
static void sum_run(emitter *e, int pass, const plan_stage *st, int j, rowrange rows);

static void forward_run(emitter *e, const fwd_ctx *f, int l, int j, rowrange comp)
{
    const net_t *net = e->net;
    const plan_stage *st = f->st;
    const net_node *n = &net->nodes[l];
    bool stats_acc = f->pass == PASS_STATS && l == f->stats_node;
    int flags = stats_acc ? RUN_STATS_ACC : 0;
    rowrange rows = stats_acc ? st->own[plan_idx(st, l, j)] : comp;
    if (plan_sums_at(st, l)) {
        sum_run(e, f->pass, st, j, rows);
        return;
    }
    if (rr_empty(rows))
        return;
    if (n->op == OP_BATCHNORM && !stats_acc) {
        if (st->bn_frozen)
            flags |= RUN_BN_FROZEN;
        else if (st->bn_passes)
            flags |= RUN_BN_GLOBAL;
        else {
            flags |= RUN_BN_STRIPE;
            int *ss = slot(e, e->sst, st, l, j);
            *ss = sched_add_tensor(e->s, TC_ACTIVATION, TK_BN_STATS, l, j, -1, -1, plan_bn_stats_bytes(net, l));
            alloc_t(e, *ss, f->pass, l, j);
        }
    }
    int64_t flops = stats_acc ? cost_stats_flops(net, l, e->batch, rr_count(rows))
                              : cost_fwd_flops(net, l, e->batch, rr_count(rows));
    sched_run *r = run_step(e, f->pass, l, j, rows, flags, flops);
    for (int k = 0; k < n->n_inputs; k++)
        r->in[k] = value_of(e, st, n->inputs[k], j);
    if (n->op == OP_BATCHNORM) {
        r->aux = st->bn_passes ? e->gstats[l] : *slot(e, e->sst, st, l, j);
        r->running = e->running[l];
        r->own_lo = st->own[plan_idx(st, l, j)].lo;
        r->own_hi = st->own[plan_idx(st, l, j)].hi;
    }
    r->out = stats_acc ? -1 : value_of(e, st, l, j);
}

/* A summing stage's reduction (forward or backward): partition j adds its rows sum_in[j] of the
 * input into the output rows `rows` they touch, or takes their gradient from them. */
static void sum_run(emitter *e, int pass, const plan_stage *st, int j, rowrange rows)
{
    const net_t *net = e->net;
    int l = st->out_node, x = net->nodes[l].inputs[0];
    rowrange in = st->sum_in[j];
    if (rr_empty(in))
        return;
    bool bwd = pass == PASS_BWD || pass == PASS_GSTATS;
    int din = !bwd || x == 0 || (x == st->in_node && pass == PASS_GSTATS) ? -1
              : x == st->in_node                                         ? e->grad[x]
                                                                         : grad_of(e, st, x, j, pass, l);
    sched_run *r = run_step(e, pass, l, j, rows, RUN_ROW_SUM,
                            cost_sum_flops(net, l, e->batch, rr_count(in)));
    r->own_lo = in.lo;
    r->own_hi = in.hi;
    r->in[0] = bwd ? -1 : value_of(e, st, x, j);
    r->out = bwd ? -1 : e->val[l];
    r->dout = bwd ? e->grad[l] : -1;
    r->din[0] = din;
}

/* One partition's forward through the stage (first forward, recompute or a STATS pass). */
static void partition_forward(emitter *e, const fwd_ctx *f, int j)
{
    const net_t *net = e->net;
    const plan_stage *st = f->st;
    for (int l = st->in_node + 1; l <= st->out_node; l++)
        e->left[l] = count_consumers(e, f, l);
    input_in(e, st, f->pass, j);
    for (int l = st->in_node + 1; l <= st->out_node; l++) {
        if (!in_subset(f, l))
            continue;
        int i = plan_idx(st, l, j);
        bool stats_acc = f->pass == PASS_STATS && l == f->stats_node;
        if (l != st->out_node && !stats_acc && !rr_empty(st->held[i])) {
            int *v = slot(e, e->sv, st, l, j);
            *v = add_value(e, TC_ACTIVATION, TK_VALUE, l, j, st->held[i]);
            alloc_t(e, *v, f->pass, l, j);
            rowrange head = rr_make(st->held[i].lo, st->comp[i].lo - 1);
            if (st->kind != PART_OVERLAP && j > 0 && !rr_empty(head)) {
                int *b = slot(e, f->bnd, st, l, j - 1);
                LR_ASSERT(*b >= 0);
                sched_copy(e->s, *v, *b, head.lo, head.hi, false, f->pass, l, j, e->stage);
                /* in the first forward a boundary is kept only for a recompute that reads it */
                if (f->free_bnd || (f->pass == PASS_FWD && plan_bnd_read_once(st, l)))
                    free_t(e, b, f->pass, l, j);
            }
        }
        forward_run(e, f, l, j, st->comp[i]);
        /* stripe statistics live until backward when stored; the stage output's always do,
         * because recomputation never reruns the stage output */
        if (!f->store && l != st->out_node)
            free_t(e, slot(e, e->sst, st, l, j), f->pass, l, j);
        if (l != st->out_node && e->left[l] == 0)
            release_forward_value(e, f, l, j); /* no reader in this pass */
        const net_node *n = &net->nodes[l];
        for (int k = 0; k < n->n_inputs; k++) {
            int u = n->inputs[k];
            bool seen = false;
            for (int q = 0; q < k; q++)
                seen |= n->inputs[q] == u;
            if (seen || u == st->in_node)
                continue;
            if (--e->left[u] == 0)
                release_forward_value(e, f, u, j);
        }
    }
    if (!f->keep_input)
        input_out(e, f->pass, j);
}

/* Ancestors of `node` inside the stage, and `node` itself. */
static void mark_ancestors(const emitter *e, const plan_stage *st, int node, bool *mark)
{
    memset(mark, 0, (size_t)e->net->n_nodes);
    mark[node] = true;
    for (int l = node; l > st->in_node; l--) {
        if (!mark[l])
            continue;
        for (int k = 0; k < e->net->nodes[l].n_inputs; k++)
            mark[e->net->nodes[l].inputs[k]] = true;
    }
    mark[st->in_node] = false;
}

/* Descendants of `node` inside the stage, and `node` itself. */
static void mark_descendants(const emitter *e, const plan_stage *st, int node, bool *mark)
{
    memset(mark, 0, (size_t)e->net->n_nodes);
    mark[node] = true;
    for (int l = node + 1; l <= st->out_node; l++)
        for (int k = 0; k < e->net->nodes[l].n_inputs; k++)
            mark[l] |= mark[e->net->nodes[l].inputs[k]];
}

/* Exact BatchNorm: one pass over all partitions per BN node to gather its input statistics. */
static void stats_pass(emitter *e, const plan_stage *st, int bn, bool *mark, int *tmp_bnd)
{
    const net_t *net = e->net;
    mark_ancestors(e, st, bn, mark);
    e->gstats[bn] = sched_add_tensor(e->s, TC_ACTIVATION, TK_BN_STATS, bn, -1, -1, -1,
                                     plan_bn_stats_bytes(net, bn));
    alloc_t(e, e->gstats[bn], PASS_STATS, bn, -1);
    fwd_ctx f = {.st = st, .pass = PASS_STATS, .store = false, .make_bnd = true,
                 .free_bnd = true, .subset = mark, .stats_node = bn, .bnd = tmp_bnd};
    for (int j = 0; j < st->parts; j++)
        partition_forward(e, &f, j);
    sched_run *r = run_step(e, PASS_STATS, bn, -1, rr_none(), RUN_FINALIZE, 0);
    r->aux = e->gstats[bn];
    r->running = e->running[bn];
    r->in[0] = -1;
}

static void stage_forward(emitter *e, const plan_stage *st, bool *mark)
{
    const net_t *net = e->net;
    int b = st->out_node;
    e->val[b] = add_value(e, TC_ACTIVATION, TK_VALUE, b, -1, all_rows(e, b));
    alloc_t(e, e->val[b], PASS_FWD, b, -1);
    if (st->bn_passes) {
        int *tmp = ints(e->off[e->plan->n_stages]); /* transient boundaries, same indexing */
        for (int l = st->in_node + 1; l <= b; l++)
            if (net->nodes[l].op == OP_BATCHNORM)
                stats_pass(e, st, l, mark, tmp);
        free(tmp);
    }
    for (int j = 0; j < st->parts; j++) {
        bool store = st->store_last && j == st->parts - 1;
        fwd_ctx f = {.st = st, .pass = PASS_FWD, .store = store, .make_bnd = true,
                     .free_bnd = store, .subset = NULL, .stats_node = -1, .bnd = e->bnd};
        partition_forward(e, &f, j);
    }
}

/* ------------------------------------------------------------------ stage backward */

typedef struct {
    const plan_stage *st;
    int pass;          /* BWD or GSTATS */
    const bool *subset; /* GSTATS: descendants of the target */
    int target;        /* GSTATS: the BN node whose gradient reductions are gathered */
} bwd_ctx;

static int grad_of(emitter *e, const plan_stage *st, int u, int j, int pass, int by)
{
    if (u == st->out_node)
        return e->grad[u];
    int *g = slot(e, e->sg, st, u, j);
    if (*g < 0) {
        *g = add_value(e, TC_ACT_GRAD, TK_GRAD, u, j, st->held[plan_idx(st, u, j)]);
        alloc_t(e, *g, pass, by, j);
    }
    return *g;
}

/* Backward of node l in partition j: the run itself. */
static void backward_run(emitter *e, const bwd_ctx *b, int l, int j)
{
    const net_t *net = e->net;
    const plan_stage *st = b->st;
    const net_node *n = &net->nodes[l];
    int i = plan_idx(st, l, j);
    bool tiled = st->kind != PART_OVERLAP;
    if (plan_sums_at(st, l)) {
        sum_run(e, b->pass, st, j, st->comp[i]);
        return;
    }
    rowrange rows = tiled ? st->own[i] : st->comp[i];
    int dout = l == st->out_node ? e->grad[l] : *slot(e, e->sg, st, l, j);
    bool acc = b->pass == PASS_GSTATS && l == b->target;
    /* Exact BatchNorm back-propagates its rows also when nothing below sent them a gradient (a
     * 2ps partition whose rows a strided op after it skips): its dx holds the batch terms,
     * mean(dy) and mean(dy * xhat), which every row gets. Its gradient is then a zeroed stripe. */
    if (dout < 0 && !acc && n->op == OP_BATCHNORM && st->bn_passes && !rr_empty(rows))
        dout = grad_of(e, st, l, j, b->pass, l);
    if (rr_empty(rows) || dout < 0)
        return;
    int flags = b->pass == PASS_GSTATS ? RUN_NO_WGRAD : 0;
    int din[NET_MAX_INPUTS];
    for (int k = 0; k < n->n_inputs && !acc; k++) {
        int u = n->inputs[k];
        if (u == st->in_node)
            din[k] = (u == 0 || b->pass == PASS_GSTATS) ? -1 : e->grad[u];
        else
            din[k] = grad_of(e, st, u, j, b->pass, l);
    }
    int gred = -1;
    if (n->op == OP_BATCHNORM) {
        if (st->bn_frozen) {
            flags |= RUN_BN_FROZEN;
        } else if (st->bn_passes) {
            gred = e->gred[l];
            flags |= RUN_BN_GLOBAL | (tiled ? 0 : RUN_BN_PARTIAL);
        } else {
            flags |= RUN_BN_STRIPE;
            gred = sched_add_tensor(e->s, TC_ACT_GRAD, TK_BN_GRED, l, j, -1, -1, plan_bn_gred_bytes(net, l));
            alloc_t(e, gred, b->pass, l, j);
        }
    }
    if (acc)
        flags = RUN_GSTATS_ACC;
    int64_t flops = acc ? cost_stats_flops(net, l, e->batch, rr_count(rows))
                        : cost_bwd_flops(net, l, e->batch, rr_count(rows));
    sched_run *r = run_step(e, b->pass, l, j, rows, flags, flops);
    bool reads_in = plan_bwd_reads_input(n->op);
    for (int k = 0; k < n->n_inputs; k++) {
        r->in[k] = reads_in ? value_of(e, st, n->inputs[k], j) : -1;
        r->din[k] = acc ? -1 : din[k];
    }
    r->out = plan_bwd_reads_output(n->op) ? value_of(e, st, l, j) : -1;
    r->dout = dout;
    r->param_grad = b->pass == PASS_BWD ? e->pgrad[l] : -1;
    if (n->op == OP_BATCHNORM) {
        r->aux = st->bn_passes ? e->gstats[l] : *slot(e, e->sst, st, l, j);
        r->gred = gred;
        r->running = st->bn_frozen ? e->running[l] : -1;
        r->own_lo = st->own[i].lo;
        r->own_hi = st->own[i].hi;
        if (!st->bn_passes)
            free_t(e, &gred, b->pass, l, j);
    }
}

/* Frees partition j's saved value of u once its last backward reader ran. */
static void release_saved(emitter *e, const plan_stage *st, int u, int j, int pass)
{
    if (u == st->in_node || u == st->out_node)
        return;
    if (--e->bleft[u] == 0)
        free_t(e, slot(e, e->sv, st, u, j), pass, u, j);
}

static void count_backward_readers(emitter *e, const plan_stage *st)
{
    const net_t *net = e->net;
    for (int l = st->in_node + 1; l <= st->out_node; l++)
        e->bleft[l] = 0;
    for (int l = st->in_node + 1; l <= st->out_node; l++) {
        const net_node *n = &net->nodes[l];
        if (plan_bwd_reads_output(n->op))
            e->bleft[l]++;
        if (!plan_bwd_reads_input(n->op))
            continue;
        for (int k = 0; k < n->n_inputs; k++) {
            bool seen = false;
            for (int q = 0; q < k; q++)
                seen |= n->inputs[q] == n->inputs[k];
            if (!seen && n->inputs[k] != st->in_node)
                e->bleft[n->inputs[k]]++;
        }
    }
}

static void partition_backward(emitter *e, const bwd_ctx *b, int j)
{
    const net_t *net = e->net;
    const plan_stage *st = b->st;
    bool tiled = st->kind != PART_OVERLAP;
    count_backward_readers(e, st);
    for (int l = st->out_node; l > st->in_node; l--) {
        const net_node *n = &net->nodes[l];
        bool run = !b->subset || b->subset[l];
        int i = plan_idx(st, l, j);
        if (run && tiled && l != st->out_node && j + 1 < st->parts) {
            int *gb = slot(e, e->gbnd, st, l, j + 1);
            if (*gb >= 0) {
                rowrange rows = boundary_rows(st, l, j);
                int g = grad_of(e, st, l, j, b->pass, l);
                sched_copy(e->s, g, *gb, rows.lo, rows.hi, true, b->pass, l, j, e->stage);
                free_t(e, gb, b->pass, l, j);
            }
        }
        if (run)
            backward_run(e, b, l, j);
        int *g = slot(e, e->sg, st, l, j);
        rowrange head = rr_make(st->held[i].lo, st->own[i].lo - 1);
        if (run && tiled && l != st->out_node && j > 0 && !rr_empty(head) && *g >= 0) {
            int *gb = slot(e, e->gbnd, st, l, j);
            *gb = add_value(e, TC_BOUNDARY, TK_GRAD, l, j, head);
            alloc_t(e, *gb, b->pass, l, j);
            sched_copy(e->s, *gb, *g, head.lo, head.hi, false, b->pass, l, j, e->stage);
        }
        if (l != st->out_node)
            free_t(e, g, b->pass, l, j);
        if (plan_bwd_reads_output(n->op))
            release_saved(e, st, l, j, b->pass);
        if (plan_bwd_reads_input(n->op))
            for (int k = 0; k < n->n_inputs; k++) {
                bool seen = false;
                for (int q = 0; q < k; q++)
                    seen |= n->inputs[q] == n->inputs[k];
                if (!seen)
                    release_saved(e, st, n->inputs[k], j, b->pass);
            }
        if (run && n->op == OP_BATCHNORM && b->pass == PASS_BWD)
            free_t(e, slot(e, e->sst, st, l, j), b->pass, l, j);
        /* the stage output's gradient is read for the last time by partition 0's backward */
        if (l == st->out_node && b->pass == PASS_BWD && j == 0)
            free_t(e, &e->grad[l], b->pass, l, j);
        if (b->pass == PASS_GSTATS && l == b->target)
            break;
    }
    /* A GSTATS pass stops at its target: drop whatever the partition still holds. */
    for (int l = st->out_node - 1; l > st->in_node; l--) {
        free_t(e, slot(e, e->sv, st, l, j), b->pass, l, j);
        free_t(e, slot(e, e->sst, st, l, j), b->pass, l, j);
        free_t(e, slot(e, e->sg, st, l, j), b->pass, l, j);
    }
    input_out(e, b->pass, j);
}

static void recompute(emitter *e, const plan_stage *st, int j, bool last_use_of_bnd)
{
    fwd_ctx f = {.st = st, .pass = PASS_RECOMPUTE, .store = true, .make_bnd = false,
                 .free_bnd = last_use_of_bnd, .subset = st->rerun, .stats_node = -1,
                 .bnd = e->bnd, .keep_input = true};
    partition_forward(e, &f, j);
}

static void gstats_pass(emitter *e, const plan_stage *st, int bn, bool *mark)
{
    mark_descendants(e, st, bn, mark);
    e->gred[bn] = sched_add_tensor(e->s, TC_ACT_GRAD, TK_BN_GRED, bn, -1, -1, -1,
                                   plan_bn_gred_bytes(e->net, bn));
    alloc_t(e, e->gred[bn], PASS_GSTATS, bn, -1);
    bwd_ctx b = {.st = st, .pass = PASS_GSTATS, .subset = mark, .target = bn};
    for (int j = st->parts - 1; j >= 0; j--) {
        recompute(e, st, j, false);
        partition_backward(e, &b, j);
    }
}

static void stage_backward(emitter *e, const plan_stage *fwd, bool *mark)
{
    const plan_stage *st = plan_bwd_stage(fwd); /* --boundaries recompute: the overl twin */
    const net_t *net = e->net;
    int a = st->in_node, b = st->out_node;
    if (a != 0)
        ensure_grad(e, a, PASS_BWD, b);
    if (st->bn_passes)
        for (int l = b; l > a; l--)
            if (net->nodes[l].op == OP_BATCHNORM)
                gstats_pass(e, st, l, mark);
    bwd_ctx bc = {.st = st, .pass = PASS_BWD, .subset = NULL, .target = -1};
    for (int j = st->parts - 1; j >= 0; j--) {
        if (!(st->store_last && j == st->parts - 1))
            recompute(e, st, j, true);
        else
            input_in(e, st, PASS_BWD, j);
        partition_backward(e, &bc, j);
    }
    for (int l = a + 1; l <= b; l++) {
        free_t(e, &e->gred[l], PASS_BWD, l, -1);
        free_t(e, &e->gstats[l], PASS_BWD, l, -1);
    }
    if (e->held[b]) {
        e->held[b] = false;
        maybe_free_value(e, b, PASS_BWD);
    }
    if (a != 0 && !e->held[a]) {
        e->fwd_left[a] = e->bwd_left[a] = 0;
        maybe_free_value(e, a, PASS_BWD);
    }
}

/* ------------------------------------------------------------------ driver */


static void emitter_init(emitter *e, const plan_t *plan, sched_t *s)
{
    memset(e, 0, sizeof *e);
    int n = plan->net->n_nodes;
    e->plan = plan;
    e->net = plan->net;
    e->s = s;
    e->batch = plan->cfg.batch;
    e->eb = cost_dtype_bytes(plan->cfg.dtype);
    e->param = ints(n), e->pgrad = ints(n), e->opt = ints(n), e->running = ints(n);
    e->val = ints(n), e->grad = ints(n), e->stats = ints(n);
    e->gstats = ints(n), e->gred = ints(n);
    e->fwd_left = calloc((size_t)n, sizeof(int));
    e->bwd_left = calloc((size_t)n, sizeof(int));
    e->left = calloc((size_t)n, sizeof(int));
    e->bleft = calloc((size_t)n, sizeof(int));
    e->held = calloc((size_t)n, sizeof(bool));
    LR_ASSERT(e->fwd_left && e->bwd_left && e->left && e->bleft && e->held);
    e->labels = e->workspace = -1;
    e->in_dev = -1;
}

static void emitter_stage_arrays(emitter *e)
{
    const plan_t *plan = e->plan;
    e->off = malloc(sizeof(int) * (size_t)(plan->n_stages + 1));
    LR_ASSERT(e->off != NULL);
    int n = 0;
    for (int i = 0; i < plan->n_stages; i++) {
        e->off[i] = n;
        n += (plan->stages[i].out_node - plan->stages[i].in_node) * plan->stages[i].parts;
    }
    e->off[plan->n_stages] = n;
    e->sv = ints(n), e->bnd = ints(n), e->sg = ints(n), e->gbnd = ints(n), e->sst = ints(n);
}

static void emitter_free(emitter *e)
{
    int *arrays[] = {e->param, e->pgrad,  e->opt,  e->running, e->val, e->grad, e->stats,
                     e->gstats, e->gred, e->fwd_left, e->bwd_left, e->left, e->bleft,
                     e->sv,    e->bnd,    e->sg,   e->gbnd,  e->sst, e->off};
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++)
        free(arrays[i]);
    free(e->held);
}

static void emit_update(emitter *e)
{
    const net_t *net = e->net;
    int slots = cost_optim_slots(e->plan->cfg.optim);
    for (int l = 1; l < net->n_nodes; l++) {
        if (net->nodes[l].params == 0)
            continue;
        sched_run *r = run_step(e, PASS_UPDATE, l, -1, rr_none(), 0,
                                (int64_t)(2 + 3 * slots) * net->nodes[l].params);
        r->param_grad = e->pgrad[l];
        r->opt_state = e->opt[l];
    }
}

void plan_emit(const plan_t *plan, sched_t *s)
{
    const net_t *net = plan->net;
    emitter e;
    emitter_init(&e, plan, s);
    emitter_stage_arrays(&e);
    sched_reset(s);
    s->elem_bytes = e.eb;
    bool *mark = calloc((size_t)net->n_nodes, 1);
    LR_ASSERT(mark != NULL);
    e.stage = -1;
    emit_persistent(&e);
    s->step_begin = sched_position(s);
    s->step_end = INT32_MAX; /* open while the step is built (sched.h: streaming) */
    count_tail_readers(&e);
    for (int i = 0; i < plan->n_stages; i++) {
        const plan_stage *st = &plan->stages[i];
        e.held[st->out_node] = plan_bwd_reads_output(net->nodes[st->out_node].op);
        e.stage = i;
        stage_forward(&e, st, mark);
    }
    e.stage = -1;
    for (int l = plan->tail_first; l < net->n_nodes; l++)
        if (net->nodes[l].op != OP_FLATTEN)
            tail_forward_node(&e, l);
    for (int l = net->n_nodes - 1; l >= plan->tail_first; l--)
        if (net->nodes[l].op != OP_FLATTEN)
            tail_backward_node(&e, l);
    for (int i = plan->n_stages - 1; i >= 0; i--) {
        e.stage = i;
        stage_backward(&e, &plan->stages[i], mark);
    }
    e.stage = -1;
    emit_update(&e);
    s->step_end = sched_position(s);
    free_persistent(&e);
    free(mark);
    emitter_free(&e);
}
