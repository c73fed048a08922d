/* pytorch_forward.c - `out = model(x); loss = cross_entropy(out, y)` as PyTorch runs it: each
 * node's output (new, or its input's storage when in place or a view), its second outputs, the
 * tensors it saves for backward, and the Python variable that lets go of its input once the last
 * reader ran. Inside a checkpointed segment nothing is saved; the segment keeps its input.
 *
 * Deliberately not here: the op rules (pytorch_rules.c), the units and the recompute
 * (pytorch_checkpoint.c).
 */
#include "pytorch_emitter.h"

void pt_save(pt *e, int l, int t)
{
    if (!e->saving || !e->needs_grad[l] || t < 0 || e->persistent[t])
        return;
    LR_ASSERT(e->n_sv[l] < PT_MAX_SAVED);
    e->sv[l * PT_MAX_SAVED + e->n_sv[l]++] = t;
    e->refs[t]++;
    e->saved[t]++;
}

void pt_release_saved(pt *e, int l, int pass)
{
    for (int i = 0; i < e->n_sv[l]; i++) {
        int t = e->sv[l * PT_MAX_SAVED + i];
        e->saved[t]--;
        pt_unref(e, t, pass, l);
    }
    e->n_sv[l] = 0;
}

/* The Python variable holding t lets go once its last forward reader ran. In a recompute only
 * the tensors it made are counted: the segment input belongs to the checkpoint. */
static void pt_read_done(pt *e, int t, int pass, int node)
{
    if (t < 0 || e->persistent[t] || (pass == PASS_RECOMPUTE && e->born[t] != e->generation))
        return;
    LR_ASSERT(e->pending[t] > 0);
    if (--e->pending[t] == 0 && e->pyref[t]) {
        e->pyref[t] = false;
        pt_unref(e, t, pass, node);
    }
}

/* A second output kept only for backward (indices, mask, BN statistics). */
static int pt_side_output(pt *e, sched_kind kind, int l, int64_t bytes, int pass)
{
    return pt_new(e, TC_ACTIVATION, kind, l, bytes, pass);
}

/* The output tensor of node l: a new one, or its input's storage for views and in-place ops. */
static int pt_output(pt *e, int l, int pass, const pt_rule *r)
{
    const net_node *n = &e->net->nodes[l];
    if (r->no_kernel || e->in_place[l])
        return e->val[n->inputs[0]];
    int t = pt_new(e, TC_ACTIVATION, TK_VALUE, l, pt_value_bytes(e, l), pass);
    e->pyref[t] = true;
    return t;
}

/* The kernel of node l: its second outputs, then any workspace, around one RUN step. */
static void pt_forward_kernel(pt *e, int l, int pass, const pt_rule *r, int side[2])
{
    const net_node *n = &e->net->nodes[l];
    if (r->no_kernel)
        return;
    if (r->extra_bytes)
        side[0] = pt_side_output(e, TK_VALUE, l, pt_elems(e, l) * r->extra_bytes, pass);
    for (int i = 0; r->bn_stats && e->cfg->bn != BN_FROZEN && i < 2; i++)
        side[i] = pt_side_output(e, TK_BN_STATS, l, (int64_t)n->c * 4, pass);
    if (r->cublas)
        pt_cublas(e, 0, l, pass);
    int ws = r->cudnn ? pt_cudnn_workspace(e, l, pass) : -1;
    sched_run *run = pt_run(e, pass, l, cost_fwd_flops(e->net, l, (int)e->batch, n->h));
    for (int k = 0; k < n->n_inputs; k++)
        run->in[k] = e->val[n->inputs[k]];
    run->out = e->val[l];
    run->aux = side[0];
    run->workspace = r->cublas ? e->cublas[0] : ws;
    pt_unref(e, ws, pass, l);
}

/* Forward (or recompute) of node l; readers counted up to node `limit`. */
void pt_forward_node(pt *e, int l, int pass, int limit)
{
    const net_node *n = &e->net->nodes[l];
    pt_rule r = pt_rule_of(n);
    int side[2] = {-1, -1};
    int out = pt_output(e, l, pass, &r);
    e->val[l] = out;
    e->pending[out] += pt_count_consumers(e->net, l, limit);
    pt_forward_kernel(e, l, pass, &r, side);
    if (r.saves_input)
        pt_save(e, l, e->val[n->inputs[0]]);
    if (r.saves_output)
        pt_save(e, l, out);
    for (int i = 0; i < 2; i++) {
        pt_save(e, l, side[i]);
        pt_unref(e, side[i], pass, l); /* only the saved copy remains */
    }
    for (int k = 0; k < n->n_inputs; k++)
        if (pt_distinct_input(n, k))
            pt_read_done(e, e->val[n->inputs[k]], pass, l);
}

/* cross_entropy: log_softmax (saves its N x K output), then nll_loss (saves the log-probs again,
 * the target and total_weight); `out = model(x)` keeps the logits until the step returns. */
static void pt_forward_loss(pt *e, int l)
{
    const net_t *net = e->net;
    int u = net->nodes[l].inputs[0];
    int64_t lsm_bytes = e->batch * net->nodes[u].c * e->eb;
    e->logits = e->val[u];
    pt_ref(e, e->logits);
    e->lsm = pt_new(e, TC_ACTIVATION, TK_VALUE, l, lsm_bytes, PASS_FWD);
    sched_run *r = pt_run(e, PASS_FWD, l, 0);
    r->in[0] = e->logits;
    r->out = e->lsm;
    pt_save(e, l, e->lsm);
    pt_read_done(e, e->logits, PASS_FWD, l);
    e->loss = pt_new(e, TC_ACTIVATION, TK_LOSS, l, e->eb, PASS_FWD);
    e->total_weight = pt_new(e, TC_ACTIVATION, TK_LOSS, l, e->eb, PASS_FWD);
    r = pt_run(e, PASS_FWD, l, cost_fwd_flops(net, l, (int)e->batch, 1));
    r->in[0] = e->lsm;
    r->labels = e->labels;
    r->loss = e->loss;
    pt_save(e, l, e->total_weight); /* sv[l]: lsm (log_softmax), total_weight, lsm (nll) */
    pt_save(e, l, e->lsm);
    pt_unref(e, e->total_weight, PASS_FWD, l);
    pt_unref(e, e->lsm, PASS_FWD, l); /* a temporary inside cross_entropy */
}

static int64_t pt_saved_now(const pt *e)
{
    int64_t sum = 0;
    for (int t = 0; t < e->s->n_tensors; t++)
        if (e->saved[t] > 0 && !e->persistent[t])
            sum += e->s->tensors[t].bytes;
    return sum;
}

/* ------------------------------------------------------------------ checkpointed segments */

/* checkpoint(): _NoopSaveInputs keeps the segment's input for the recompute; inside, the saved
 * tensor hooks keep nothing. The frame, and with it the input, goes with the last holder:
 * after the backward of the segment's first saving node (or at once when nothing was saved). */
static void pt_segment_begin(pt *e, int k)
{
    int t = e->val[e->seg_in[k]];
    e->ckpt_kept[k] = e->persistent[t] ? -1 : t;
    if (e->ckpt_kept[k] >= 0) {
        e->refs[t]++;
        e->saved[t]++;
    }
    e->saving = false;
}

void pt_segment_release(pt *e, int k, int pass)
{
    int t = e->ckpt_kept[k];
    if (t < 0)
        return;
    e->saved[t]--;
    pt_unref(e, t, pass, e->seg_in[k]);
    e->ckpt_kept[k] = -1;
}

void pt_forward(pt *e)
{
    const net_t *net = e->net;
    int last = net->n_nodes - 1;
    for (int l = 1; l < last; l++) {
        int k = e->seg_of[l];
        e->stage = k;
        if (k >= 0 && l == e->seg_in[k] + 1)
            pt_segment_begin(e, k);
        pt_forward_node(e, l, PASS_FWD, last);
        if (k >= 0 && l == e->seg_last[k]) {
            e->saving = true;
            if (e->first_saver[k] < 0)
                pt_segment_release(e, k, PASS_FWD);
        }
    }
    e->stage = -1;
    pt_forward_loss(e, last);
    e->saved_at_forward_end = pt_saved_now(e);
}
