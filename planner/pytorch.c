/* pytorch.c - the PyTorch framework profile (see pytorch.h): one training step as PyTorch 2.x
 * runs it on CUDA in fp32, written as a schedule whose every tensor is one allocation of the
 * caching allocator and is freed when PyTorch drops its last reference to it.
 *
 * Lifetimes are decided by counting references (refs[t]), as PyTorch does with its storages:
 *   - a Python variable holds a layer's output until the next layer has consumed it (nn.Sequential
 *     rebinds `input`; torchvision's forwards rebind `x`/`out`): pending[t] counts the forward
 *     readers still to come, and the variable's reference goes with the last one;
 *   - each tensor saved for backward holds a reference until its node's backward ran
 *     (Engine::evaluate_function calls release_variables() right after the node);
 *   - a gradient holds one while it waits in the next node's input buffer; the node's own
 *     grad_output goes when call_function returns, before release_variables;
 *   - a parameter's .grad holds one from the backward that produced it (AccumulateGrad steals
 *     the fresh tensor when .grad is None) to zero_grad(set_to_none=True).
 *
 * What each op allocates and saves (tools/autograd/derivatives.yaml; sizes in pt_rules below):
 *   conv     output; saves input (weight is a parameter). cudnn_convolution_backward allocates
 *            grad_input (unless the input is the batch), grad_weight, then grad_bias.
 *   relu     ReLU(inplace=True) writes into its input (no allocation) and saves the result: the
 *            same storage. threshold_backward allocates a new gradient.
 *   maxpool  max_pool2d_with_indices: output and int64 indices (8 B per output element); saves
 *            input and indices.
 *   avgpool  output; saves input. adaptive_avgpool: _adaptive_avg_pool2d saves input, except
 *            for a 1x1 output, which torch computes as mean() and saves only sizes (2.x);
 *            global_avgpool is AdaptiveAvgPool2d(1), a mean. A new tensor even when the output
 *            size equals the input's.
 *   batchnorm cudnn_batch_norm: output, save_mean, save_var (C floats each), an empty reserve
 *            (0 bytes for NCHW spatial BN, so no allocation); saves input, the two stats and
 *            the reserve; backward allocates grad_input, grad_weight, grad_bias.
 *   add      `out += identity` (torchvision's blocks): in place into its first input, saves
 *            nothing; AddBackward0 hands the same gradient tensor to every input.
 *   concat   output; saves sizes; backward hands out slices (views) of grad_output.
 *   upsample output; saves sizes; backward allocates.
 *   flatten  a view: no allocation, ViewBackward passes the gradient's storage on.
 *   fc       addmm: output; saves input (weight.t() is a view of the parameter); backward
 *            allocates grad_input, grad_weight, then grad_bias (sum_to in validate_outputs).
 *   dropout  native_dropout (the CUDA path): output and a bool mask (1 B per element); saves
 *            the mask.
 *   loss     cross_entropy = log_softmax (saves its output, N x K) + nll_loss (saves target,
 *            total_weight: a 0-dim float); the loss is a 0-dim float held by `loss`.
 * An in-place relu or add applies only when its first input has no other reader and its producer
 * does not save its own output (torchvision's case); otherwise the op allocates a new output.
 *
 * Gradient accumulation (InputBuffer::accumulate, grad mode off): a second gradient for the same
 * tensor is added in place into the buffered one when the buffer holds the only reference to a
 * dense tensor, else into the incoming one under the same condition, else into a new tensor.
 *
 * Deliberately not here: cuDNN's own choice of algorithm and workspace (a parameter), the
 * caching allocator's rounding and segments (sim/replay.c), reduction scratch buffers of sum/
 * mean kernels (a few KiB), cuBLASLt's 1 MiB workspace, CUDA context memory (outside the
 * allocator's statistics).
 */
#include "pytorch.h"

#include <string.h>

/* ------------------------------------------------------------------ op rules */

typedef enum {
    GRAD_NEW,    /* backward allocates the input gradient */
    GRAD_SHARED, /* add: every input gets grad_output itself */
    GRAD_VIEW,   /* concat: every input gets a slice (a non-dense view) of grad_output */
    GRAD_PASS,   /* flatten: the gradient's storage passes through */
} pt_grad_mode;

typedef struct {
    bool saves_input;  /* inputs[0] is saved for backward */
    bool saves_output; /* the output is saved (relu's result) */
    int extra_bytes;   /* bytes per output element of a second output kept for backward:
                          maxpool's int64 indices (8), dropout's bool mask (1) */
    bool bn_stats;     /* save_mean and save_var, C floats each */
    bool in_place;     /* writes into inputs[0] when pt_writes_in_place allows it */
    bool cudnn;        /* a cuDNN convolution: workspace around each call */
    bool cublas;       /* a GEMM: first use on a thread creates its cuBLAS workspace */
    bool no_kernel;    /* a view: no RUN step */
    pt_grad_mode grad;
} pt_rule;

static const pt_rule pt_rules[OP_COUNT] = {
    /* ConvolutionBackward0 saves input and weight (a parameter) */
    [OP_CONV] = {.saves_input = true, .cudnn = true},
    /* ReLU(inplace=True): ReluBackward0 keeps the result for threshold_backward(grad, result) */
    [OP_RELU] = {.saves_output = true, .in_place = true},
    /* max_pool2d_with_indices saves self and its int64 indices */
    [OP_MAXPOOL] = {.saves_input = true, .extra_bytes = 8},
    /* avg_pool2d_backward(grad, self) */
    [OP_AVGPOOL] = {.saves_input = true},
    /* _adaptive_avg_pool2d_backward(grad, self); a 1x1 output is a mean: see pt_rule_of */
    [OP_ADAPTIVE_AVGPOOL] = {.saves_input = true},
    /* AdaptiveAvgPool2d(1) = mean(): mean_backward needs only sizes (torch 2.x) */
    [OP_GLOBAL_AVGPOOL] = {0},
    /* cudnn_batch_norm: input, weight, running stats, save_mean, save_var, an empty reserve */
    [OP_BATCHNORM] = {.saves_input = true, .bn_stats = true},
    /* `out += identity`: AddBackward0 keeps only alpha and returns grad for every input */
    [OP_ADD] = {.in_place = true, .grad = GRAD_SHARED},
    /* CatBackward0 keeps sizes and slices grad */
    [OP_CONCAT] = {.grad = GRAD_VIEW},
    /* upsample_nearest2d keeps sizes */
    [OP_UPSAMPLE] = {0},
    /* torch.flatten: a view */
    [OP_FLATTEN] = {.no_kernel = true, .grad = GRAD_PASS},
    /* addmm(bias, input, weight.t()) saves input; weight.t() is a view of the parameter */
    [OP_FC] = {.saves_input = true, .cublas = true},
    /* native_dropout returns (output, bool mask) and saves the mask */
    [OP_DROPOUT] = {.extra_bytes = 1},
};

/* The rule of one node, with the two cases that depend on its parameters. */
static pt_rule pt_rule_of(const net_node *n)
{
    pt_rule r = pt_rules[n->op];
    if (n->op == OP_ADAPTIVE_AVGPOOL && n->prm.out_h == 1 && n->prm.out_w == 1)
        r.saves_input = false; /* adaptive_avg_pool2d(x, 1) is x.mean((-1, -2), keepdim=True) */
    if (n->op == OP_DROPOUT && n->prm.p == 0) /* F.dropout(x, 0) returns x itself */
        r = pt_rules[OP_FLATTEN];
    return r;
}

/* Saves something of its own making, packed after its kernel ran (checkpoint's early stop). */
static bool pt_saves_output_side(const net_node *n)
{
    pt_rule r = pt_rule_of(n);
    return r.saves_output || r.extra_bytes > 0 || r.bn_stats;
}

static bool pt_saves_any(const net_node *n)
{
    return pt_rule_of(n).saves_input || pt_saves_output_side(n);
}

/* ------------------------------------------------------------------ emitter state */

enum { PT_MAX_SAVED = 3 };

typedef struct {
    int node;
    int64_t elems;
    int t;        /* the parameter */
    int grad;     /* its .grad; -1 while None */
    int state[2]; /* momentum buffer, or Adam's exp_avg and exp_avg_sq; -1 before step() */
    int tmp;      /* a foreach temporary of step(); -1 when none */
} pt_param;

typedef struct {
    const net_t *net;
    const plan_config *cfg;
    const pytorch_profile *p;
    sched_t *s;
    int64_t batch;
    int eb;
    /* per schedule tensor */
    int cap;
    int *refs, *saved, *pending, *born;
    bool *persistent, *pyref;
    /* per node */
    int *val;   /* storage of the output; in-place ops and flatten share their input's */
    int *sv, *n_sv; /* saved tensors, PT_MAX_SAVED per node */
    int *gbuf;  /* gradient waiting in the node's input buffer, -1 when none */
    bool *gview, *in_place, *needs_grad;
    int *param_of;  /* first index into par[] of the node's parameters, -1 when none */
    int *seg_of;    /* checkpointed segment of the node, -1 outside one */
    /* checkpoint segments: nodes (seg_in, seg_last]; the savers bound recomputation */
    int *seg_in, *seg_last, *first_saver, *last_saver, *ckpt_kept;
    /* parameters in module order, then persistent buffers */
    int n_par;
    pt_param *par;
    int n_keep, *keep; /* persistent tensors freed after the step, in allocation order */
    int labels, cublas[2], logits, loss, lsm, total_weight;
    bool saving, first_step, in_step;
    int stage, generation;
    int64_t saved_at_forward_end;
} pt;

static void *pt_calloc(size_t n, size_t size)
{
    void *q = calloc(n ? n : 1, size);
    LR_ASSERT(q != NULL);
    return q;
}

static int *pt_ints(int n, int value)
{
    int *a = pt_calloc((size_t)n, sizeof(int));
    for (int i = 0; i < n; i++)
        a[i] = value;
    return a;
}

/* a grown from old to cap elements of elem bytes, the new ones zero. */
static void *pt_grown(void *a, size_t elem, int old, int cap)
{
    void *q = realloc(a, elem * (size_t)cap);
    LR_ASSERT(q != NULL);
    memset((char *)q + elem * (size_t)old, 0, elem * (size_t)(cap - old));
    return q;
}

/* A new tensor, allocated now; the caller holds its one reference. */
static int pt_new(pt *e, sched_class cls, sched_kind kind, int node, int64_t bytes, int pass)
{
    bool rows = kind == TK_VALUE || kind == TK_GRAD;
    int hi = rows ? e->net->nodes[node].h - 1 : -1;
    int t = sched_add_tensor(e->s, cls, kind, node, -1, rows ? 0 : -1, hi, bytes);
    if (t >= e->cap) {
        int cap = e->cap ? 2 * e->cap : 1024;
        e->refs = pt_grown(e->refs, sizeof(int), e->cap, cap);
        e->saved = pt_grown(e->saved, sizeof(int), e->cap, cap);
        e->pending = pt_grown(e->pending, sizeof(int), e->cap, cap);
        e->born = pt_grown(e->born, sizeof(int), e->cap, cap);
        e->persistent = pt_grown(e->persistent, sizeof(bool), e->cap, cap);
        e->pyref = pt_grown(e->pyref, sizeof(bool), e->cap, cap);
        e->cap = cap;
    }
    e->refs[t] = 1;
    e->born[t] = e->generation;
    sched_alloc(e->s, t, pass, node, -1, e->stage);
    return t;
}

/* A tensor that lives until pt_free_persistent (parameters, buffers, x, y, optimizer state,
 * cuBLAS workspaces). */
static int pt_new_persistent(pt *e, sched_class cls, sched_kind kind, int node, int64_t bytes,
                             int pass)
{
    int t = pt_new(e, cls, kind, node, bytes, pass);
    e->persistent[t] = true;
    e->keep[e->n_keep++] = t;
    return t;
}

static void pt_ref(pt *e, int t)
{
    if (t >= 0 && !e->persistent[t])
        e->refs[t]++;
}

static void pt_unref(pt *e, int t, int pass, int node)
{
    if (t < 0 || e->persistent[t])
        return;
    LR_ASSERT(e->refs[t] > 0);
    if (--e->refs[t] == 0)
        sched_release(e->s, t, pass, node, -1, e->stage);
}

static int64_t pt_value_bytes(const pt *e, int node)
{
    return cost_node_bytes(e->net, node, (int)e->batch, e->eb);
}

static int64_t pt_elems(const pt *e, int node)
{
    const net_node *n = &e->net->nodes[node];
    return e->batch * n->c * n->h * n->w;
}

static sched_run *pt_run(pt *e, int pass, int node, int64_t flops)
{
    const net_node *n = &e->net->nodes[node];
    sched_run *r = sched_run_step(e->s, pass, node, -1, e->stage, 0, n->h - 1, 0, flops);
    r->n_in = n->n_inputs;
    if (e->param_of[node] >= 0)
        r->param = e->par[e->param_of[node]].t;
    return r;
}

/* ------------------------------------------------------------------ structure */

static bool pt_distinct_input(const net_node *n, int k)
{
    for (int q = 0; q < k; q++)
        if (n->inputs[q] == n->inputs[k])
            return false;
    return true;
}

/* Distinct readers of node u among nodes <= limit (consumer lists are in increasing order). */
static int pt_count_consumers(const net_t *net, int u, int limit)
{
    int count = 0, last = -1;
    for (int q = net->cons_off[u]; q < net->cons_off[u + 1]; q++) {
        int c = net->cons_node[q];
        if (c != last && c <= limit)
            count++;
        last = c;
    }
    return count;
}

/* ReLU(inplace=True) and `out += identity` write into inputs[0] only when nothing else reads it
 * and its producer does not keep it as its own saved output or view (a relu's result, a
 * flatten): torchvision's layers always meet this; autograd would reject the write otherwise. */
static bool pt_writes_in_place(const net_t *net, int l)
{
    const net_node *n = &net->nodes[l];
    int u = n->inputs[0];
    if (!pt_rule_of(n).in_place || u == 0 || pt_count_consumers(net, u, net->n_nodes - 1) != 1)
        return false;
    for (int k = 1; k < n->n_inputs; k++)
        if (n->inputs[k] == u)
            return false;
    net_op producer = net->nodes[u].op;
    return producer != OP_RELU && producer != OP_FLATTEN;
}

static void pt_structure(pt *e)
{
    const net_t *net = e->net;
    for (int l = 1; l < net->n_nodes; l++) {
        const net_node *x = &net->nodes[l];
        e->in_place[l] = pt_writes_in_place(net, l);
        e->needs_grad[l] = x->params > 0;
        for (int k = 0; k < x->n_inputs; k++)
            e->needs_grad[l] |= e->needs_grad[x->inputs[k]];
    }
}

/* The furthest reader of node u. */
static int pt_last_reader(const net_t *net, int u)
{
    int q = net->cons_off[u + 1] - 1;
    return q >= net->cons_off[u] ? net->cons_node[q] : u;
}

int pytorch_checkpoint_units(const net_t *net, int *unit_end, int cap)
{
    int units = 0, reach = pt_last_reader(net, 0); /* the furthest reader of any node before l */
    for (int l = 1; l < net->n_nodes - 1; l++) {
        bool cut = reach <= l;
        int r = pt_last_reader(net, l);
        reach = r > reach ? r : reach;
        bool relu_joins = net->nodes[l + 1].op == OP_RELU && net->nodes[l + 1].inputs[0] == l &&
                          pt_writes_in_place(net, l + 1);
        if (cut && !relu_joins) {
            if (units < cap)
                unit_end[units] = l;
            units++;
        }
    }
    return units;
}

/* checkpoint_sequential: segment_size = U // segments; segments 0 .. segments-2 are
 * checkpointed, each segment_size units; the last one (the rest) runs normally. */
static lr_status pt_segments(pt *e)
{
    const net_t *net = e->net;
    if (e->p->segments <= 1)
        return LR_OK;
    int *unit_end = pt_ints(net->n_nodes, -1);
    int units = pytorch_checkpoint_units(net, unit_end, net->n_nodes);
    if (e->p->segments > units) {
        free(unit_end);
        return lr_fail(LR_ERR_INPUT,
                       "--segments %d: %s has only %d checkpoint units (modules of "
                       "checkpoint_sequential)", e->p->segments, net->name, units);
    }
    int size = units / e->p->segments;
    for (int k = 0; k < e->p->segments - 1; k++) {
        e->seg_in[k] = k == 0 ? 0 : unit_end[k * size - 1];
        e->seg_last[k] = unit_end[(k + 1) * size - 1];
        for (int l = e->seg_in[k] + 1; l <= e->seg_last[k]; l++) {
            e->seg_of[l] = k;
            if (e->needs_grad[l] && pt_saves_any(&net->nodes[l])) {
                e->first_saver[k] = e->first_saver[k] < 0 ? l : e->first_saver[k];
                e->last_saver[k] = l;
            }
        }
    }
    free(unit_end);
    return LR_OK;
}

/* ------------------------------------------------------------------ persistent tensors */

static void pt_add_param(pt *e, int node, int64_t elems)
{
    pt_param *q = &e->par[e->n_par++];
    q->node = node;
    q->elems = elems;
    q->t = pt_new_persistent(e, TC_WEIGHT, TK_PARAM, node, elems * e->eb, PASS_FWD);
    q->grad = q->state[0] = q->state[1] = q->tmp = -1;
}

/* model.cuda(): Module._apply moves each leaf module's parameters (weight, bias), then its
 * buffers (BatchNorm: running_mean, running_var, num_batches_tracked int64), in module order. */
static void pt_model_to_gpu(pt *e)
{
    const net_t *net = e->net;
    for (int l = 1; l < net->n_nodes; l++) {
        const net_node *n = &net->nodes[l];
        if (n->params == 0)
            continue;
        e->param_of[l] = e->n_par;
        int64_t bias = n->op == OP_BATCHNORM ? n->c
                       : n->op == OP_CONV    ? (n->prm.bias ? n->prm.out_channels : 0)
                                             : (n->prm.bias ? n->prm.out_features : 0);
        pt_add_param(e, l, n->params - bias);
        if (bias > 0)
            pt_add_param(e, l, bias);
        if (n->op == OP_BATCHNORM) {
            for (int i = 0; i < 2; i++)
                pt_new_persistent(e, TC_WEIGHT, TK_RUNNING, l, (int64_t)n->c * 4, PASS_FWD);
            pt_new_persistent(e, TC_WEIGHT, TK_RUNNING, l, 8, PASS_FWD);
        }
    }
}

/* x = torch.randn(N, C, H, W, device='cuda'); y = torch.randint(K, (N,), device='cuda'): int64. */
static void pt_batch_to_gpu(pt *e)
{
    e->val[0] = pt_new_persistent(e, TC_INPUT, TK_VALUE, 0, pt_value_bytes(e, 0), PASS_FWD);
    e->labels = pt_new_persistent(e, TC_INPUT, TK_LABELS, -1, 8 * e->batch, PASS_FWD);
}

static void pt_free_persistent(pt *e)
{
    for (int i = e->n_keep - 1; i >= 0; i--)
        sched_release(e->s, e->keep[i], PASS_UPDATE, e->s->tensors[e->keep[i]].node, -1, -1);
}

/* The first GEMM on a thread gives its cuBLAS handle a workspace for good (CublasHandlePool.cpp,
 * setWorkspaceForHandle): thread 0 runs forward, thread 1 (the autograd device thread) backward. */
static void pt_cublas(pt *e, int thread, int node, int pass)
{
    if (e->cublas[thread] >= 0 || e->p->cublas_workspace_bytes <= 0)
        return;
    e->cublas[thread] = pt_new_persistent(e, TC_WORKSPACE, TK_WORKSPACE, node,
                                          e->p->cublas_workspace_bytes, pass);
}

/* ------------------------------------------------------------------ forward */

static void pt_save(pt *e, int l, int t)
{
    if (!e->saving || !e->needs_grad[l] || t < 0 || e->persistent[t])
        return;
    LR_ASSERT(e->n_sv[l] < PT_MAX_SAVED);
    e->sv[l * PT_MAX_SAVED + e->n_sv[l]++] = t;
    e->refs[t]++;
    e->saved[t]++;
}

static void pt_release_saved(pt *e, int l, int pass)
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

/* Workspace cuDNN asks for around one convolution call (an estimate: pytorch.h). */
static int pt_cudnn_workspace(pt *e, int node, int pass)
{
    if (e->p->cudnn_workspace_bytes <= 0)
        return -1;
    return pt_new(e, TC_WORKSPACE, TK_WORKSPACE, node, e->p->cudnn_workspace_bytes, pass);
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
    for (int i = 0; r->bn_stats && i < 2; i++)
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
static void pt_forward_node(pt *e, int l, int pass, int limit)
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

static void pt_segment_release(pt *e, int k, int pass)
{
    int t = e->ckpt_kept[k];
    if (t < 0)
        return;
    e->saved[t]--;
    pt_unref(e, t, pass, e->seg_in[k]);
    e->ckpt_kept[k] = -1;
}

static void pt_forward(pt *e)
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

/* ------------------------------------------------------------------ recompute */

/* The unpack hook of the segment's last saving node reruns the segment under recording hooks.
 * Early stop (torch >= 2.1): it stops at the pack of the last saved tensor, so a last node that
 * saves only its inputs (packed before its kernel) does not run, while one that saves what it
 * made (relu, BN, maxpool, dropout) runs; whatever the rerun made and did not save is dropped. */
static void pt_recompute(pt *e, int k)
{
    int last = e->last_saver[k];
    e->generation++;
    e->stage = k;
    for (int l = e->seg_in[k] + 1; l <= last; l++) {
        const net_node *n = &e->net->nodes[l];
        if (l == last && !pt_saves_output_side(n)) {
            pt_save(e, l, e->val[n->inputs[0]]); /* packed before the kernel: stop here */
            break;
        }
        pt_forward_node(e, l, PASS_RECOMPUTE, last);
    }
    for (int t = 0; t < e->s->n_tensors; t++)
        if (e->born[t] == e->generation && e->pyref[t]) {
            e->pyref[t] = false;
            e->pending[t] = 0;
            pt_unref(e, t, PASS_RECOMPUTE, e->s->tensors[t].node);
        }
}

/* ------------------------------------------------------------------ backward */

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

static void pt_backward(pt *e)
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

/* ------------------------------------------------------------------ optimizer */

/* Optimizer state made by the first step(): persistent, but born inside the step when the step
 * is the first one (class: see pytorch.h). */
static int pt_new_state(pt *e, const pt_param *q)
{
    sched_class cls = e->in_step ? TC_ACT_GRAD : TC_OPT_STATE;
    return pt_new_persistent(e, cls, TK_OPT_STATE, q->node, q->elems * e->eb, PASS_UPDATE);
}

/* torch._foreach_X(list) makes one new tensor per parameter, in parameter order; the Python
 * list drops them last to first (list_dealloc) when it goes. */
static void pt_foreach_temporaries(pt *e, sched_kind kind)
{
    for (int i = 0; i < e->n_par; i++)
        e->par[i].tmp = pt_new(e, TC_WORKSPACE, kind, e->par[i].node,
                               e->par[i].elems * e->eb, PASS_UPDATE);
}

static void pt_drop_temporaries(pt *e)
{
    for (int i = e->n_par - 1; i >= 0; i--) {
        pt_unref(e, e->par[i].tmp, PASS_UPDATE, e->par[i].node);
        e->par[i].tmp = -1;
    }
}

static void pt_update_runs(pt *e, int slots)
{
    for (int i = 0; i < e->n_par; i++) {
        pt_param *q = &e->par[i];
        sched_run *r = sched_run_step(e->s, PASS_UPDATE, q->node, -1, -1, -1, -1, 0,
                                      (int64_t)(2 + 3 * slots) * q->elems);
        r->param = q->t;
        r->param_grad = q->grad;
        r->opt_state = q->state[0];
        r->workspace = q->tmp;
    }
}

/* _multi_tensor_sgd (the default foreach path on CUDA): with weight decay, grads become
 * _foreach_add(grads, params) (a copy of every gradient); momentum's first step clones each
 * (decayed) gradient into its buffer, later ones update buffers in place; with momentum the
 * copy goes when `device_grads = bufs` rebinds it, before the parameter update. */
static void pt_step_sgd(pt *e, bool momentum)
{
    if (e->p->weight_decay)
        pt_foreach_temporaries(e, TK_PARAM_GRAD);
    for (int i = 0; momentum && e->first_step && i < e->n_par; i++)
        e->par[i].state[0] = pt_new_state(e, &e->par[i]);
    if (momentum)
        pt_drop_temporaries(e);
    pt_update_runs(e, momentum ? 1 : 0);
    pt_drop_temporaries(e);
}

/* Adam: the first step's _init_group makes exp_avg then exp_avg_sq (zeros_like) per parameter.
 * _multi_tensor_adam (torch >= 2.1): the weight-decay copy of the grads goes at
 * `del device_grads`; then exp_avg_sq_sqrt = _foreach_sqrt(exp_avg_sqs), a copy of every
 * parameter's size, lives until step() returns (torch 2.0 also made `denom`, a second copy). */
static void pt_step_adam(pt *e)
{
    for (int i = 0; e->first_step && i < e->n_par; i++)
        for (int j = 0; j < 2; j++)
            e->par[i].state[j] = pt_new_state(e, &e->par[i]);
    if (e->p->weight_decay) {
        pt_foreach_temporaries(e, TK_PARAM_GRAD);
        pt_drop_temporaries(e);
    }
    pt_foreach_temporaries(e, TK_OPT_STATE);
    pt_update_runs(e, 2);
    pt_drop_temporaries(e);
}

/* opt.step(); opt.zero_grad(set_to_none=True) drops every .grad in parameter order; then the
 * step function returns and `out` (the logits) and `loss` go. */
static void pt_optimizer(pt *e)
{
    switch (e->cfg->optim) {
    case OPTIM_ADAM:
        pt_step_adam(e);
        break;
    default:
        pt_step_sgd(e, e->cfg->optim == OPTIM_MOMENTUM);
        break;
    }
    for (int i = 0; i < e->n_par; i++) {
        pt_unref(e, e->par[i].grad, PASS_UPDATE, e->par[i].node);
        e->par[i].grad = -1;
    }
    int last = e->net->n_nodes - 1;
    pt_unref(e, e->logits, PASS_UPDATE, last);
    pt_unref(e, e->loss, PASS_UPDATE, last);
}

/* ------------------------------------------------------------------ driver */

static void pt_train_step(pt *e)
{
    e->saving = true;
    pt_forward(e);
    pt_backward(e);
    pt_optimizer(e);
    e->first_step = false;
}

static lr_status pt_init(pt *e, const net_t *net, const plan_config *cfg,
                         const pytorch_profile *p, sched_t *s)
{
    memset(e, 0, sizeof *e);
    if (cfg->dtype != DT_FP32)
        return lr_fail(LR_ERR_INPUT, "--framework pytorch models fp32 training only (got %s)",
                       cost_dtype_name(cfg->dtype));
    if (cfg->batch < 1)
        return lr_fail(LR_ERR_INPUT, "--framework pytorch: batch must be positive, got %d",
                       cfg->batch);
    LR_TRY(cost_check_limits(net, cfg->batch, 8, 16));
    int n = net->n_nodes;
    e->net = net, e->cfg = cfg, e->p = p, e->s = s;
    e->batch = cfg->batch;
    e->eb = cost_dtype_bytes(cfg->dtype);
    e->val = pt_ints(n, -1), e->gbuf = pt_ints(n, -1), e->param_of = pt_ints(n, -1);
    e->seg_of = pt_ints(n, -1), e->n_sv = pt_ints(n, 0);
    e->sv = pt_ints(n * PT_MAX_SAVED, -1);
    e->seg_in = pt_ints(n, -1), e->seg_last = pt_ints(n, -1), e->ckpt_kept = pt_ints(n, -1);
    e->first_saver = pt_ints(n, -1), e->last_saver = pt_ints(n, -1);
    e->gview = pt_calloc((size_t)n, sizeof(bool));
    e->in_place = pt_calloc((size_t)n, sizeof(bool));
    e->needs_grad = pt_calloc((size_t)n, sizeof(bool));
    e->par = pt_calloc((size_t)(2 * n), sizeof(pt_param));
    e->keep = pt_ints(10 * n + 8, -1); /* per node <= 2 params, 3 buffers, 4 states */
    e->labels = e->logits = e->loss = e->lsm = e->total_weight = -1;
    e->cublas[0] = e->cublas[1] = -1;
    e->stage = -1;
    e->first_step = true;
    pt_structure(e);
    return pt_segments(e);
}

static void pt_free(pt *e)
{
    void *arrays[] = {e->refs, e->saved, e->pending, e->born, e->persistent, e->pyref,
                      e->val, e->sv, e->n_sv, e->gbuf, e->gview, e->in_place, e->needs_grad,
                      e->param_of, e->seg_of, e->seg_in, e->seg_last,
                      e->first_saver, e->last_saver, e->ckpt_kept, e->par, e->keep};
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++)
        free(arrays[i]);
}

void pytorch_profile_default(pytorch_profile *p)
{
    memset(p, 0, sizeof *p);
    p->cublas_workspace_bytes = PYTORCH_CUBLAS_WORKSPACE_SM90;
    p->steady_state = true;
}

static lr_status pt_emit(const net_t *net, const plan_config *cfg, const pytorch_profile *p,
                         sched_t *s, int64_t *saved_bytes)
{
    pt e;
    sched_reset(s);
    lr_status st = pt_init(&e, net, cfg, p, s);
    if (st == LR_OK) {
        s->elem_bytes = e.eb;
        pt_model_to_gpu(&e);
        pt_batch_to_gpu(&e);
        if (p->steady_state)
            pt_train_step(&e); /* the warm-up, before the measured step */
        s->step_begin = s->n_steps;
        e.in_step = true;
        pt_train_step(&e);
        s->step_end = s->n_steps;
        pt_free_persistent(&e);
        if (saved_bytes)
            *saved_bytes = e.saved_at_forward_end;
    }
    pt_free(&e);
    if (st != LR_OK)
        sched_reset(s);
    return st;
}

lr_status pytorch_emit(const net_t *net, const plan_config *cfg, const pytorch_profile *p,
                       sched_t *s)
{
    return pt_emit(net, cfg, p, s, NULL);
}

lr_status pytorch_saved_bytes(const net_t *net, const plan_config *cfg, const pytorch_profile *p,
                              int64_t *saved_bytes)
{
    sched_t s;
    sched_init(&s);
    *saved_bytes = 0;
    lr_status st = pt_emit(net, cfg, p, &s, saved_bytes);
    sched_free(&s);
    return st;
}

lr_status pytorch_predict(const sched_t *s, sim_allocator a, pytorch_prediction *out)
{
    memset(out, 0, sizeof *out);
    out->peak_step = -1;
    if (s->step_begin < 1 || s->step_end <= s->step_begin)
        return lr_fail(LR_ERR_INPUT, "pytorch_predict: the schedule has no prologue or no step");
    sim_point *pts = NULL;
    LR_TRY(sim_timeline(s, a, &pts));
    const sim_point *start = &pts[s->step_begin - 1];
    out->start_allocated = out->max_allocated = start->live;
    out->start_reserved = out->max_reserved = start->reserved;
    out->peak_step = s->step_begin - 1;
    for (int i = s->step_begin; i < s->step_end; i++) {
        if (pts[i].live > out->max_allocated) {
            out->max_allocated = pts[i].live;
            out->peak_step = i;
        }
        if (pts[i].reserved > out->max_reserved)
            out->max_reserved = pts[i].reserved;
    }
    free(pts);
    return LR_OK;
}
