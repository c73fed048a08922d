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
 * The events of one node or partition are in closed_walk.c. A stage's partitions of one shape
 * (closed_shape.c) make the same events: each shape is walked once, recorded, and placed for
 * every partition of it.
 */
#include "closed_walk.h"

#include <string.h>

#include "checked.h"

static void phase_begin(evaluator *v)
{
    if (!v->phases)
        return;
    plan_phase *ph = &v->phases->ph[v->phases->n];
    *ph = (plan_phase){.entry = v->m.live, .node = -1, .part = -1, .stage = -1};
    v->phase_flops = v->flops;
    v->phase_ns = v->ns;
    v->phase_bn_flops = v->bn_flops;
    v->phase_bn_passes = v->bn_passes;
    v->phase_copy_bytes = v->copy_bytes;
    v->phase_host = v->host_live;
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
    ph->bn_flops = v->bn_flops == INT64_MAX ? INT64_MAX : v->bn_flops - v->phase_bn_flops;
    ph->bn_passes = v->bn_passes - v->phase_bn_passes;
    ph->copy_bytes = v->copy_bytes - v->phase_copy_bytes;
    ph->host_delta = v->host_live - v->phase_host;
    v->m.phase = NULL;
}

/* ------------------------------------------------------------------ persistent and tail */

static void persistent(evaluator *v, plan_cost *out)
{
    const net_t *net = v->net;
    int slots = cost_optim_slots(v->plan->cfg.optim);
    bool host = v->plan->n_stages > 0 && v->plan->stages[0].in_rows; /* --offload input */
    if (host)
        closed_host(v, closed_full_bytes(v, 0));
    out->input_bytes = (host ? 0 : closed_full_bytes(v, 0)) + 4 * (int64_t)v->batch;
    closed_add(v, out->input_bytes, PASS_FWD, 0, -1);
    out->static_bytes = 0;
    for (int l = 1; l < net->n_nodes; l++) {
        const net_node *n = &net->nodes[l];
        int64_t p = n->params * v->eb;
        int64_t running = n->op == OP_BATCHNORM ? 8 * (int64_t)n->c : 0;
        out->static_bytes += p * (2 + slots) + running;
    }
    closed_add(v, out->static_bytes, PASS_FWD, net->n_nodes - 1, -1);
    out->workspace_bytes = v->plan->cfg.workspace_bytes;
    closed_add(v, out->workspace_bytes, PASS_FWD, -1, -1);
}

/* For whole tensors read in the tail: the position (node) of the last forward consumer and the
 * last backward reader; backward positions are visited in decreasing node order. */
typedef struct {
    int *last_fwd;  /* -1: no tail consumer */
    int *first_bwd; /* smallest node whose backward reads it; INT_MAX-like when none */
} tail_readers;

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
        closed_add(v, n->op == OP_SOFTMAX_XENT ? 4 : closed_full_bytes(v, l), PASS_FWD, l, -1);
        if (n->op == OP_BATCHNORM && !frozen)
            closed_add(v, plan_bn_stats_bytes(net, l), PASS_FWD, l, -1);
        closed_kernel(v, l, n->h, KERNEL_FWD, cost_fwd_flops(net, l, v->batch, n->h));
        for (int k = 0; k < n->n_inputs; k++) {
            int u = plan_root(net, n->inputs[k]);
            if (closed_first_occurrence(n, k, u, net) && dies_in_forward(v, t, held, u, l))
                closed_shrink(v, closed_full_bytes(v, u));
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
                closed_add(v, closed_full_bytes(v, u), PASS_BWD, l, -1);
            }
        }
        if (n->op == OP_BATCHNORM && !frozen)
            closed_add(v, plan_bn_gred_bytes(net, l), PASS_BWD, l, -1);
        closed_kernel(v, l, n->h, KERNEL_BWD, cost_bwd_flops(net, l, v->batch, n->h));
        if (n->op == OP_BATCHNORM && !frozen)
            closed_shrink(v, plan_bn_gred_bytes(net, l) + plan_bn_stats_bytes(net, l));
        closed_shrink(v, n->op == OP_SOFTMAX_XENT ? 4 : closed_full_bytes(v, l)); /* loss value or dY */
        /* values whose last backward reader is l, and that no stage still holds */
        for (int k = 0; k < n->n_inputs; k++) {
            int u = plan_root(net, n->inputs[k]);
            if (plan_bwd_reads_input(n->op) && closed_first_occurrence(n, k, u, net) && u != 0 &&
                !held[u] && t->first_bwd[u] == l)
                closed_shrink(v, closed_full_bytes(v, u));
        }
        if (plan_bwd_reads_output(n->op) && !held[l] && t->first_bwd[l] == l)
            closed_shrink(v, closed_full_bytes(v, l));
    }
}

/* ------------------------------------------------------------------ stage forward */

/* The copies between host and device a stage's forward or backward makes (--offload):
 *  input     every partition's input rows, in each pass over the partitions: the first forward
 *            or the backward's recompute, and one STATS or GSTATS pass per BatchNorm;
 *  boundary  in the forward, each kept boundary out to the host and back into the next
 *            partition's stripe; in the backward, back in for the recompute and each GSTATS
 *            pass's recompute. */
static int64_t stage_copies(const evaluator *v, const plan_stage *st, bool forward)
{
    int64_t input = 0, out = 0, in = 0, passes = 1;
    for (int j = 0; st->in_rows && j < st->parts; j++)
        input += closed_rows_bytes(v, 0, st->in_rows[j]);
    for (int l = st->in_node + 1; st->bn_passes && l <= st->out_node; l++)
        passes += v->net->nodes[l].op == OP_BATCHNORM;
    for (int l = st->in_node + 1; st->bnd_on_host && l < st->out_node; l++)
        for (int j = 0; j + 1 < st->parts; j++) {
            if (!plan_bnd_on_host(st, l, j))
                continue;
            out += closed_rows_bytes(v, l, closed_boundary(st, l, j));
            if (!rr_empty(st->held[plan_idx(st, l, j + 1)]))
                in += closed_rows_bytes(v, l, closed_head(st, l, j + 1));
        }
    return forward ? input * passes + out + in : input * passes + in * passes;
}

/* A partition's walk recorded elsewhere, onto the meter as walking it gives. */
static void place_walk(evaluator *v, const walk_summary *w)
{
    closed_place(v, w->top, w->live, w->flops, w->ns);
    if (w->host)
        closed_host(v, w->host);
}

static void start_recording(evaluator *v, recorder *r)
{
    *r = (recorder){0};
    v->rec = r;
}

static walk_summary stop_recording(evaluator *v, const recorder *r)
{
    v->rec = NULL;
    return (walk_summary){r->live, r->flops, r->ns, r->top, r->host};
}

/* A summary walked for partition j's shape, onto the meter as partition j. */
static void place_at(evaluator *v, const walk_summary *w, int j)
{
    walk_summary at = closed_summary_at(w, j);
    place_walk(v, &at);
}

typedef void partition_walk(evaluator *v, const plan_stage *st, int j);

/* Partition j as `walk` makes it, walked once per shape, onto the meter. */
static void walk_by_shape(evaluator *v, closed_memo *m, const plan_stage *st, int j,
                          partition_walk *walk)
{
    if (!closed_memo_key(m, j)) {
        walk(v, st, j);
        return;
    }
    walk_summary spare;
    bool fresh;
    walk_summary *w = closed_memo_take(m, &spare, &fresh);
    if (fresh) {
        recorder r;
        start_recording(v, &r);
        walk(v, st, j);
        *w = stop_recording(v, &r);
    }
    place_at(v, w, j);
}

static void forward_partition(evaluator *v, const plan_stage *st, int j)
{
    bool store = st->store_last && j == st->parts - 1;
    fwd_pass f = {st, PASS_FWD, store, true, store, NULL, -1, PASS_FWD, false};
    closed_input_in(v, st, PASS_FWD, j);
    closed_forward_partition(v, &f, j);
    closed_input_out(v, st, j);
}

static void stage_forward(evaluator *v, const plan_stage *st)
{
    closed_add(v, closed_full_bytes(v, st->out_node), PASS_FWD, st->out_node, -1);
    walk_summary *walked = NULL;
    if (closed_passes_share_walks(st)) {
        walked = malloc(sizeof *walked * (size_t)st->parts);
        LR_ASSERT(walked != NULL);
    }
    if (st->bn_passes)
        closed_stats_passes(v, st, walked);
    closed_positions(v, st, NULL);
    closed_memo memo;
    closed_memo_init(&memo, closed_shapes_of(v, st), 0, sizeof(walk_summary));
    for (int j = 0; j < st->parts; j++) {
        if (walked) { /* recorded beside the STATS passes' shared walk */
            place_walk(v, &walked[j]);
            continue;
        }
        walk_by_shape(v, &memo, st, j, forward_partition);
    }
    closed_memo_free(&memo);
    free(walked);
    v->copy_bytes += stage_copies(v, st, true);
}

/* Partition j's backward before what the GSTATS passes walked for it: its input stripe and its
 * recompute (none for a last partition that stored). */
static void backward_opening(evaluator *v, const plan_stage *st, int j)
{
    bool rerun = !(st->store_last && j == st->parts - 1);
    closed_input_in(v, st, rerun ? PASS_RECOMPUTE : PASS_BWD, j);
    if (rerun)
        closed_recompute_partition(v, st, j, true);
}

/* The whole backward of partition j when no GSTATS pass walked it: gb_a received, gb_b handed
 * on. */
static void backward_whole(evaluator *v, const plan_stage *st, int j, bool *gb_a, bool *gb_b)
{
    bwd_pass bp = {st, PASS_BWD, NULL, -1};
    backward_opening(v, st, j);
    closed_backward_partition(v, &bp, j, gb_a, gb_b);
    closed_input_out(v, st, j);
}

/* A stage without statistics passes: partition by partition, one walk per shape and boundary
 * gradients received. A value is the summary, then the flags handed on. */
static void stage_backward_plain(evaluator *v, const plan_stage *st, bool *gb_a, bool *gb_b)
{
    int n_flags = st->out_node - st->in_node + 1;
    closed_memo memo;
    closed_memo_init(&memo, closed_shapes_of(v, st), n_flags, sizeof(walk_summary) + (size_t)n_flags);
    walk_summary *spare = malloc(memo.val_bytes);
    LR_ASSERT(spare != NULL);
    for (int j = st->parts - 1; j >= 0; j--) {
        int32_t *x = closed_memo_key(&memo, j);
        if (!x) {
            backward_whole(v, st, j, gb_a, gb_b);
            memcpy(gb_a, gb_b, (size_t)n_flags);
            continue;
        }
        for (int q = 0; q < n_flags; q++)
            x[q] = gb_a[q];
        bool fresh;
        walk_summary *w = closed_memo_take(&memo, spare, &fresh);
        unsigned char *handed = (unsigned char *)(w + 1);
        if (fresh) {
            recorder r;
            start_recording(v, &r);
            backward_whole(v, st, j, gb_a, gb_b);
            *w = stop_recording(v, &r);
            memcpy(handed, gb_b, (size_t)n_flags);
        }
        place_at(v, w, j);
        memcpy(gb_a, handed, (size_t)n_flags);
    }
    free(spare);
    closed_memo_free(&memo);
}

/* A stage whose GSTATS passes walked its partitions' backward (walked) and, when they share
 * walks, their recomputes (reruns): what is left is each partition's opening and partition 0's
 * backward, which the chain's last flags (gb_b) reach. */
static void stage_backward_gstats(evaluator *v, const plan_stage *st, const walk_summary *walked,
                                  const walk_summary *reruns, bool *gb_a, bool *gb_b)
{
    closed_memo memo; /* the openings, when the GSTATS passes did not record them */
    closed_memo_init(&memo, closed_shapes_of(v, st), 0, sizeof(walk_summary));
    for (int j = st->parts - 1; j >= 0; j--) {
        bool rerun = !(st->store_last && j == st->parts - 1);
        if (rerun && reruns) { /* recorded beside the GSTATS passes' recompute */
            closed_input_in(v, st, PASS_RECOMPUTE, j);
            place_walk(v, &reruns[j]);
        } else {
            walk_by_shape(v, &memo, st, j, backward_opening);
        }
        if (j > 0) { /* the GSTATS passes walked it: the same events, as BWD's */
            walk_summary as_bwd = walked[j];
            as_bwd.top.pass = PASS_BWD;
            place_walk(v, &as_bwd);
            continue;
        }
        bwd_pass bp = {st, PASS_BWD, NULL, -1};
        memcpy(gb_a, gb_b, (size_t)(st->out_node - st->in_node) + 1);
        closed_backward_partition(v, &bp, j, gb_a, gb_b);
        closed_input_out(v, st, j);
    }
    closed_memo_free(&memo);
}

static void stage_backward(evaluator *v, const plan_stage *fwd, bool *held, bool *gb_a, bool *gb_b)
{
    const plan_stage *st = plan_bwd_stage(fwd); /* --boundaries recompute: the overl twin */
    const net_t *net = v->net;
    int a = st->in_node, b = st->out_node, n_local = b - a;
    if (a != 0)
        closed_add(v, closed_full_bytes(v, a), PASS_BWD, b, -1);
    walk_summary *walked = NULL, *reruns = NULL;
    if (st->bn_passes) {
        walked = malloc(sizeof *walked * (size_t)st->parts * 2);
        LR_ASSERT(walked != NULL);
        if (closed_passes_share_walks(st))
            reruns = walked + st->parts;
        closed_gstats_passes(v, st, walked, reruns, gb_b);
    }
    closed_positions(v, st, st->rerun);
    memset(gb_a, 0, (size_t)n_local + 1);
    if (walked)
        stage_backward_gstats(v, st, walked, reruns, gb_a, gb_b);
    else
        stage_backward_plain(v, st, gb_a, gb_b);
    free(walked);
    v->copy_bytes += stage_copies(v, st, false);
    /* the statistics come from the forward stage's STATS passes, the gradient reductions from
     * this backward's GSTATS passes: under --boundaries recompute the twin may have one
     * partition (overl's split of a one-row output) and no passes, while the forward had them */
    for (int l = a + 1; (fwd->bn_passes || st->bn_passes) && l <= b; l++)
        if (net->nodes[l].op == OP_BATCHNORM)
            closed_shrink_const(v, (st->bn_passes ? plan_bn_gred_bytes(net, l) : 0) +
                                       (fwd->bn_passes ? plan_bn_stats_bytes(net, l) : 0));
    if (held[b]) {
        held[b] = false;
        closed_shrink(v, closed_full_bytes(v, b)); /* O, read by its own backward until now */
    }
}

/* Stage outputs not held by their own stage die when the next stage's backward ends (or in
 * the tail, by its readers). */
static void free_stage_input(evaluator *v, const plan_stage *st, const bool *held)
{
    if (st->in_node != 0 && !held[st->in_node])
        closed_shrink(v, closed_full_bytes(v, st->in_node));
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
    plan_compose_tail(by_stage, n_stages, out, NULL);
}

void plan_compose_tail(const plan_phases *const *by_stage, int n_stages, plan_cost *out,
                       int64_t *tail_high)
{
    const plan_phases *base = by_stage[0];
    memset(out, 0, sizeof *out);
    out->static_bytes = base->static_bytes;
    out->input_bytes = base->input_bytes;
    out->workspace_bytes = base->workspace_bytes;

    out->peak_node = out->peak_part = out->peak_stage = -1;
    if (tail_high)
        *tail_high = INT64_MIN;
    int64_t live = 0, flops = 0, ns = 0, host = 0;
    for (int i = 0; i < 2 * n_stages + 3; i++) {
        const plan_phases *from = base;
        if (i >= 1 && i <= n_stages)
            from = by_stage[i - 1];
        else if (i >= n_stages + 3)
            from = by_stage[2 + 2 * n_stages - i];
        const plan_phase *ph = &from->ph[i];
        if (ph->grew) {
            int64_t high = add_saturating(live, ph->high - ph->entry);
            bool in_tail = i == n_stages + 1 || i == n_stages + 2;
            if (tail_high && in_tail && high > *tail_high)
                *tail_high = high;
            if (ph->stage >= 0 && high > out->stage_peak[ph->stage])
                out->stage_peak[ph->stage] = high;
            if (high > out->peak_bytes) {
                out->peak_bytes = high;
                out->peak_node = ph->node, out->peak_part = ph->part, out->peak_stage = ph->stage;
                out->peak_pass = ph->pass;
            }
        }
        live = add_saturating(live, ph->exit - ph->entry);
        flops = add_saturating(flops, ph->flops);
        ns = add_saturating(ns, ph->ns);
        out->bn_pass_flops = add_saturating(out->bn_pass_flops, ph->bn_flops);
        out->bn_passes += ph->bn_passes;
        out->copy_bytes = add_saturating(out->copy_bytes, ph->copy_bytes);
        /* host memory grows only in forward phases and shrinks only in backward ones: its
         * peak is at a phase boundary */
        host = add_saturating(host, ph->host_delta);
        out->host_bytes = host > out->host_bytes ? host : out->host_bytes;
    }
    out->copy_ns = device_copy_ns(base->device, out->copy_bytes);
    out->flops = add_saturating(flops, base->update_flops);
    out->step_ns = add_saturating(ns, base->update_ns);
}

/* The evaluator's arrays, and per-row costs of nodes lo..hi (a stage alone needs its own). */
typedef struct {
    bool *held, *grad, *gb_a, *gb_b;
} walk_state;

static void evaluator_init(evaluator *v, const net_t *net, const plan_config *cfg,
                           const plan_t *plan, plan_phases *phases, int lo, int hi,
                           walk_state *w)
{
    int n = net->n_nodes;
    *v = (evaluator){.plan = plan, .net = net, .batch = cfg->batch,
                     .eb = cost_dtype_bytes(cfg->dtype), .stage = -1, .phases = phases,
                     .device = cfg->device, .optim = cfg->optim};
    v->ns_tag = closed_ns_tag(net, v->batch, v->eb, v->optim, v->device);
    if (phases)
        phases->n = 0;
    v->m.node = v->m.part = v->m.stage = -1;
    v->last_fwd = malloc(sizeof(int) * (size_t)n);
    v->first_bwd = malloc(sizeof(int) * (size_t)n);
    v->saved = calloc((size_t)n, 1);
    v->has_grad = calloc((size_t)n + 1, 1);
    v->mark = calloc((size_t)n, 1);
    v->row_bytes = malloc(sizeof(int64_t) * 4 * (size_t)n);
    w->held = calloc((size_t)n, 1), w->grad = calloc((size_t)n, 1);
    w->gb_a = calloc((size_t)n + 1, 1), w->gb_b = calloc((size_t)n + 1, 1);
    LR_ASSERT(v->last_fwd && v->first_bwd && v->saved && v->has_grad && v->mark &&
              v->row_bytes && w->held && w->grad && w->gb_a && w->gb_b);
    v->fwd_row_flops = v->row_bytes + n;
    v->bwd_row_flops = v->row_bytes + 2 * n;
    v->stats_row_flops = v->row_bytes + 3 * n;
    for (int i = lo; i <= hi; i++) {
        v->row_bytes[i] = cost_rows_bytes(net, i, v->batch, v->eb, 1);
        v->fwd_row_flops[i] = cost_fwd_flops(net, i, v->batch, 1);
        v->bwd_row_flops[i] = cost_bwd_flops(net, i, v->batch, 1);
        v->stats_row_flops[i] = cost_stats_flops(net, i, v->batch, 1);
    }
}

static void evaluator_free(evaluator *v, walk_state *w)
{
    free(v->last_fwd), free(v->first_bwd), free(v->saved), free(v->has_grad), free(v->mark);
    free(v->row_bytes);
    closed_shapes_release(v);
    free(w->held), free(w->grad), free(w->gb_a), free(w->gb_b);
}

static void closed_form(const plan_t *plan, plan_cost *out, plan_phases *phases)
{
    const net_t *net = plan->net;
    int n = net->n_nodes;
    evaluator v;
    walk_state w;
    evaluator_init(&v, net, &plan->cfg, plan, phases, 0, n - 1, &w);
    tail_readers t = {malloc(sizeof(int) * (size_t)n), malloc(sizeof(int) * (size_t)n)};
    LR_ASSERT(t.last_fwd && t.first_bwd);
    for (int i = 0; i < n; i++)
        t.last_fwd[i] = -1, t.first_bwd[i] = n;
    memset(out, 0, sizeof *out);
    phase_begin(&v);
    persistent(&v, out);
    phase_end(&v);
    tail_positions(&v, &t);
    stage_forward_flops_and_bytes(&v, w.held);
    phase_begin(&v);
    tail_forward(&v, &t, w.held);
    phase_end(&v);
    phase_begin(&v);
    tail_backward(&v, &t, w.held, w.grad);
    phase_end(&v);
    for (int s = plan->n_stages - 1; s >= 0; s--) {
        v.stage = s;
        phase_begin(&v);
        stage_backward(&v, &plan->stages[s], w.held, w.gb_a, w.gb_b);
        free_stage_input(&v, &plan->stages[s], w.held);
        phase_end(&v);
    }
    int64_t before_updates = v.flops, ns_before_updates = v.ns;
    for (int l = 1; l < n; l++)
        if (net->nodes[l].params)
            closed_kernel(&v, l, 0, KERNEL_UPDATE,
                          (int64_t)(2 + 3 * cost_optim_slots(plan->cfg.optim)) * net->nodes[l].params);
    if (phases) {
        phases->update_flops = v.flops == INT64_MAX ? INT64_MAX : v.flops - before_updates;
        phases->update_ns = v.ns == INT64_MAX ? INT64_MAX : v.ns - ns_before_updates;
        phases->static_bytes = out->static_bytes;
        phases->input_bytes = out->input_bytes;
        phases->workspace_bytes = out->workspace_bytes;
        phases->device = v.device;
    }
    out->peak_bytes = v.m.overflow ? INT64_MAX : v.m.peak;
    out->peak_node = v.m.node;
    out->peak_part = v.m.part;
    out->peak_stage = v.m.stage;
    out->peak_pass = v.m.pass;
    out->flops = v.flops;
    out->step_ns = v.ns;
    out->bn_pass_flops = v.bn_flops;
    out->bn_passes = v.bn_passes;
    out->copy_bytes = v.copy_bytes;
    out->copy_ns = device_copy_ns(v.device, v.copy_bytes);
    out->host_bytes = v.host_peak;
    memcpy(out->stage_peak, v.m.stage_peak, sizeof out->stage_peak);
    free(t.last_fwd), free(t.first_bwd);
    evaluator_free(&v, &w);
}

/* Rows of node l's boundary that partition j's first forward keeps on the device for the
 * stage's backward: none when the next partition reads them once, when they go to host memory,
 * or when the backward runs the twin (--boundaries recompute). */
static int kept_rows(const plan_stage *st, int l, int j)
{
    if (st->bwd || plan_bnd_read_once(st, l) || rr_empty(st->held[plan_idx(st, l, j)]) ||
        plan_bnd_on_host(st, l, j))
        return 0;
    return rr_count(closed_boundary(st, l, j));
}

int64_t plan_stage_kept_bytes(const net_t *net, const plan_config *cfg, const plan_stage *st)
{
    if (st->parts < 2)
        return 0;
    int eb = cost_dtype_bytes(cfg->dtype);
    /* (a last partition that stores frees the rows the one before handed it) */
    int last = st->store_last ? st->parts - 2 : st->parts - 1;
    int64_t sum = 0;
    for (int l = st->in_node + 1; l < st->out_node; l++) {
        int64_t row = cost_rows_bytes(net, l, cfg->batch, eb, 1);
        for (int j = 0; j < last; j++)
            sum = lr_sat_add(sum, row * kept_rows(st, l, j));
    }
    return sum;
}

int64_t plan_stage_backward_bytes(const net_t *net, const plan_config *cfg, const plan_stage *st)
{
    const plan_stage *b = plan_bwd_stage(st);
    int eb = cost_dtype_bytes(cfg->dtype);
    int n_local = st->out_node - st->in_node;
    /* by l - in - 1: a row of l, and the same when the backward reads l (else 0) */
    int64_t *row = malloc(sizeof(int64_t) * 2 * (size_t)n_local), *saved = row + n_local;
    LR_ASSERT(row != NULL);
    for (int l = st->in_node + 1; l < st->out_node; l++) {
        int i = l - st->in_node - 1;
        row[i] = cost_rows_bytes(net, l, cfg->batch, eb, 1);
        saved[i] = plan_bwd_reads(net, l, st->out_node) ? row[i] : 0;
    }
    int64_t most = 0, kept = 0; /* kept: the boundaries of partitions before j - 1 */
    for (int j = 0; j < b->parts; j++) {
        int64_t held = 0;
        for (int l = st->in_node + 1; l < st->out_node; l++)
            held = lr_sat_add(held,
                              saved[l - st->in_node - 1] * rr_count(b->held[plan_idx(b, l, j)]));
        if (lr_sat_add(held, kept) > most)
            most = lr_sat_add(held, kept);
        for (int l = st->in_node + 1; j >= 1 && l < st->out_node; l++)
            kept = lr_sat_add(kept, row[l - st->in_node - 1] * kept_rows(st, l, j - 1));
    }
    free(row);
    return most;
}

/* A stage's walk into its two phases (plan_stage_phases); with `str`, the stretches of each
 * phase too (the backward's from str->v[*bwd_from] on), and the constant bytes as the forward
 * begins, as it ends, and as the backward ends (konst[0..2]). False when live bytes overflowed. */
static bool stage_walk(const net_t *net, const plan_config *cfg, const plan_stage *st, int index,
                       plan_phase *fwd, plan_phase *bwd, closed_stretches *str, int *bwd_from,
                       int64_t *konst)
{
    evaluator v;
    walk_state w;
    plan_phases rec;
    evaluator_init(&v, net, cfg, NULL, &rec, st->in_node, st->out_node, &w);
    v.stage = index;
    v.m.stretches = str;
    /* what the plan's stage before it and its own forward mark: their outputs kept for their own
     * backward when that reads its output (stage_forward_flops_and_bytes) */
    if (st->in_node != 0)
        w.held[st->in_node] = plan_bwd_reads_output(net->nodes[st->in_node].op);
    w.held[st->out_node] = plan_bwd_reads_output(net->nodes[st->out_node].op);
    phase_begin(&v);
    if (str)
        closed_stretch_begin(&v.m, 0), konst[0] = str->konst;
    stage_forward(&v, st);
    phase_end(&v);
    phase_begin(&v);
    if (str)
        closed_stretch_begin(&v.m, 0), konst[1] = str->konst, *bwd_from = str->n - 1;
    stage_backward(&v, st, w.held, w.gb_a, w.gb_b);
    free_stage_input(&v, st, w.held);
    phase_end(&v);
    if (str)
        konst[2] = str->konst;
    *fwd = rec.ph[0];
    *bwd = rec.ph[1];
    bool fine = !v.m.overflow;
    evaluator_free(&v, &w);
    return fine;
}

void plan_stage_phases(const net_t *net, const plan_config *cfg, const plan_stage *st, int index,
                       plan_phase *fwd, plan_phase *bwd)
{
    if (closed_phase_fn_applies(net, cfg, st)) {
        closed_phase_key k;
        closed_phase_key_of(net, cfg, st, index, &k);
        if (closed_phase_fn_get(&k, cfg->batch, fwd, bwd))
            return;
        plan_config one = *cfg;
        one.batch = 1;
        closed_stretches str = {0};
        plan_phase at1[2];
        int from = 0;
        int64_t konst[3];
        bool walked = stage_walk(net, &one, st, index, &at1[0], &at1[1], &str, &from, konst);
        if (walked)
            closed_phase_fn_put(&k, at1, &str, from, konst);
        free(str.v);
        if (walked && closed_phase_fn_get(&k, cfg->batch, fwd, bwd))
            return;
    }
    stage_walk(net, cfg, st, index, fwd, bwd, NULL, NULL, NULL);
}

lr_status plan_stage_alone(const net_t *net, const plan_config *cfg, plan_partitioning kind,
                           int in, int out, int parts, bool last, int index,
                           const plan_scripts *scripts, plan_phase *fwd, plan_phase *bwd,
                           int64_t *runs)
{
    /* (the phases at another batch read off the functions: what the build would decide is all
     * their key needs, kept the first time; resnet101 --fit h100-80gb, one thread: of 16,141
     * stages asked 6,480 are not built again, 10.92 G instructions before, 10.62 G after) */
    bool reuse = cfg->reuse_phases && !cfg->device && net->shape_id != 0;
    closed_build_key b;
    closed_phase_key k;
    if (reuse) {
        closed_build_key_of(net, cfg, kind, in, out, parts, last, &b);
        if (closed_build_get(&b, &k, runs)) {
            k.index = index, k.eb = cost_dtype_bytes(cfg->dtype), k.optim = (int)cfg->optim;
            if (closed_phase_fn_get(&k, cfg->batch, fwd, bwd))
                return LR_OK;
        }
    }
    plan_stage st;
    LR_TRY(plan_stage_build(net, cfg, kind, in, out, parts, last, &st));
    plan_stage_use_scripts(&st, scripts);
    *runs = plan_stage_runs(net, &st);
    if (*runs <= PLAN_MAX_RUNS) {
        plan_stage_phases(net, cfg, &st, index, fwd, bwd);
        if (reuse && closed_phase_fn_applies(net, cfg, &st)) {
            closed_phase_key_of(net, cfg, &st, index, &k);
            closed_build_put(&b, &k, *runs);
        }
    }
    plan_stage_free(&st);
    return LR_OK;
}

void plan_stage_phases_walked(const net_t *net, const plan_config *cfg, const plan_stage *st,
                              int index, plan_phase *fwd, plan_phase *bwd)
{
    stage_walk(net, cfg, st, index, fwd, bwd, NULL, NULL, NULL);
}

void plan_phases_assemble(const plan_phases *ends, int ends_stages, int n_stages,
                          const plan_phase *fwd, const plan_phase *bwd, plan_phases *out)
{
    /* (field by field: the phases past the ones used are not copied, a third of a single-stage
     * trial's copying on resnet101's --fit) */
    out->n = 2 * n_stages + 3;
    out->update_flops = ends->update_flops, out->update_ns = ends->update_ns;
    out->static_bytes = ends->static_bytes, out->input_bytes = ends->input_bytes;
    out->workspace_bytes = ends->workspace_bytes;
    out->device = ends->device;
    out->ph[0] = ends->ph[0];
    out->ph[1 + n_stages] = ends->ph[1 + ends_stages];
    out->ph[2 + n_stages] = ends->ph[2 + ends_stages];
    for (int s = 0; s < n_stages; s++) {
        out->ph[1 + s] = fwd[s];
        out->ph[2 + 2 * n_stages - s] = bwd[s];
    }
}

void plan_closed_form(const plan_t *plan, plan_cost *out)
{
    closed_form(plan, out, NULL);
}

void plan_closed_phases(const plan_t *plan, plan_cost *out, plan_phases *phases)
{
    closed_form(plan, out, phases);
}

