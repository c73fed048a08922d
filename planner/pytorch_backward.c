/* pytorch_backward.c - loss.backward() as the autograd engine runs it: node by node in reverse,
 * each allocating its input gradients in its backward function's order, then letting go of
 * grad_output and its saved tensors (engine.cpp, evaluate_function); gradients wait in input
 * buffers; a checkpointed segment is recomputed at its last saving node.
 *
 * Gradient accumulation (InputBuffer::accumulate, grad mode off): a second gradient for the same
 * tensor is added in place into the buffered one when the buffer holds the only reference to a
 * dense tensor, else into the incoming one under the same condition, else into a new tensor.
 *
 * Deliberately not here: what each op's backward makes (pytorch_rules.c), the recompute itself
 * (pytorch_checkpoint.c).
 */
#include "pytorch_emitter.h"

static bool pt_accumulable(const pt *e, int t, bool view)
{
    return !view && e->refs[t] == 1;
}

/* InputBuffer::add: the gradient g (one reference, owned by the caller) for node u's output. */
static void pt_deliver(pt *e, int u, int g, bool view, int by)
{
    int old = e->gbuf[u];
    if (old < 0) {
        e->gbuf[u] = g;
        e->gview[u] = view;
        return;
    }
    int all_hi = e->net->nodes[u].h - 1;
    if (pt_accumulable(e, old, e->gview[u])) { /* old_var.add_(var) */
        sched_copy(e->s, old, g, 0, all_hi, true, PASS_BWD, by, -1, e->stage);
        pt_unref(e, g, PASS_BWD, by);
        return;
    }
    int sum = g;
    if (!pt_accumulable(e, g, view)) { /* old_var + var */
        sum = pt_new(e, TC_ACT_GRAD, TK_GRAD, u, pt_value_bytes(e, u), PASS_BWD);
        sched_copy(e->s, sum, g, 0, all_hi, false, PASS_BWD, by, -1, e->stage);
        pt_unref(e, g, PASS_BWD, by);
    }
    sched_copy(e->s, sum, old, 0, all_hi, true, PASS_BWD, by, -1, e->stage); /* var.add_(old) */
    pt_unref(e, old, PASS_BWD, by);
    e->gbuf[u] = sum;
    e->gview[u] = false;
}

/* A parameter gradient: AccumulateGrad steals the fresh tensor as .grad (it was None). */
static int pt_param_grad(pt *e, int i, int l)
{
    pt_param *q = &e->par[i];
    LR_ASSERT(q->grad < 0);
    q->grad = pt_new(e, TC_ACT_GRAD, TK_PARAM_GRAD, l, q->elems * e->eb, PASS_BWD);
    return q->grad;
}

/* The gradients of node l's parameters after its weight (bias, beta). */
static void pt_other_param_grads(pt *e, int l)
{
    int first = e->param_of[l];
    for (int i = first + 1; first >= 0 && i < e->n_par && e->par[i].node == l; i++)
        pt_param_grad(e, i, l);
}

static void pt_backward_run(pt *e, int l, const pt_rule *r, int dout, int din, int pgrad,
                            int ws)
{
    const net_node *n = &e->net->nodes[l];
    if (r->no_kernel)
        return;
    sched_run *run = pt_run(e, PASS_BWD, l, cost_bwd_flops(e->net, l, (int)e->batch, n->h));
    run->in[0] = r->saves_input && e->n_sv[l] > 0 ? e->val[n->inputs[0]] : -1;
    run->out = r->saves_output ? e->val[l] : -1;
    run->dout = dout;
    run->din[0] = din;
    run->param_grad = pgrad;
    run->workspace = r->cublas ? e->cublas[1] : ws;
}

/* Node l's backward, allocating in the order its backward function does: grad_input (cuDNN:
 * with the backward-data workspace), the cuBLAS workspace on the autograd thread's first GEMM,
 * grad_weight (cuDNN: with the backward-filter workspace), grad_bias. Then grad_output and the
 * saved tensors are let go, and each input's gradient goes to its input buffer. */
static void pt_backward_node(pt *e, int l)
{
    const net_node *n = &e->net->nodes[l];
    pt_rule r = pt_rule_of(n);
    int dout = e->gbuf[l];
    LR_ASSERT(dout >= 0);
    int din[NET_MAX_INPUTS];
    for (int k = 0; k < NET_MAX_INPUTS; k++)
        din[k] = -1;
    int u = n->inputs[0];
    if (r.grad == GRAD_NEW && e->needs_grad[u]) {
        din[0] = pt_new(e, TC_ACT_GRAD, TK_GRAD, u, pt_value_bytes(e, u), PASS_BWD);
        if (r.cudnn)
            pt_unref(e, pt_cudnn_workspace(e, l, PASS_BWD), PASS_BWD, l);
    }
    if (r.cublas)
        pt_cublas(e, 1, l, PASS_BWD);
    int pgrad = e->param_of[l] >= 0 ? pt_param_grad(e, e->param_of[l], l) : -1;
    int ws = r.cudnn ? pt_cudnn_workspace(e, l, PASS_BWD) : -1;
    pt_backward_run(e, l, &r, dout, din[0], pgrad, ws);
    pt_unref(e, ws, PASS_BWD, l);
    pt_other_param_grads(e, l);
    if (r.grad != GRAD_NEW) /* each input's slot is one more reference to grad_output */
        for (int k = 0; k < n->n_inputs; k++)
            if (e->needs_grad[n->inputs[k]]) {
                pt_ref(e, dout);
                din[k] = dout;
            }
    e->gbuf[l] = -1;
    pt_unref(e, dout, PASS_BWD, l);
    pt_release_saved(e, l, PASS_BWD);
    for (int k = 0; k < n->n_inputs; k++)
        if (din[k] >= 0)
            pt_deliver(e, n->inputs[k], din[k], r.grad == GRAD_VIEW, l);
}

/* One saved tensor of node l let go (its slot i). */
static void pt_release_slot(pt *e, int l, int i, int pass)
{
    int *slot = &e->sv[l * PT_MAX_SAVED + i];
    e->saved[*slot]--;
    pt_unref(e, *slot, pass, l);
    *slot = -1;
}

/* loss.backward(): a 0-dim ones_like(loss) lives through backward; NllLossBackward makes the
 * N x K gradient and lets total_weight go, LogSoftmaxBackward makes a second one and lets the
 * first and the log-probabilities go. */
static int pt_backward_loss(pt *e, int l)
{
    int u = e->net->nodes[l].inputs[0];
    int64_t bytes = pt_value_bytes(e, u);
    int ones = pt_new(e, TC_ACT_GRAD, TK_GRAD, l, e->eb, PASS_BWD);
    int g1 = pt_new(e, TC_ACT_GRAD, TK_GRAD, u, bytes, PASS_BWD);
    sched_run *r = pt_run(e, PASS_BWD, l, 0);
    r->in[0] = e->lsm;
    r->labels = e->labels;
    r->dout = ones;
    r->din[0] = g1;
    pt_release_slot(e, l, 1, PASS_BWD); /* total_weight */
    pt_release_slot(e, l, 2, PASS_BWD); /* nll's log-probabilities */
    int g2 = pt_new(e, TC_ACT_GRAD, TK_GRAD, u, bytes, PASS_BWD);
    r = pt_run(e, PASS_BWD, l, cost_bwd_flops(e->net, l, (int)e->batch, 1));
    r->out = e->lsm;
    r->dout = g1;
    r->din[0] = g2;
    pt_unref(e, g1, PASS_BWD, l);
    pt_release_slot(e, l, 0, PASS_BWD);
    e->n_sv[l] = 0;
    pt_deliver(e, u, g2, false, l);
    return ones;
}

void pt_backward(pt *e)
{
    int last = e->net->n_nodes - 1;
    int ones = pt_backward_loss(e, last);
    for (int l = last - 1; l >= 1; l--) {
        if (!e->needs_grad[l])
            continue;
        int k = e->seg_of[l];
        e->stage = k;
        if (k >= 0 && l == e->last_saver[k])
            pt_recompute(e, k);
        pt_backward_node(e, l);
        if (k >= 0 && l == e->first_saver[k])
            pt_segment_release(e, k, PASS_BWD);
    }
    e->stage = -1;
    pt_unref(e, ones, PASS_BWD, last);
}
