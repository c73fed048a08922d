/* pytorch.c - the PyTorch framework profile (see pytorch.h): one training step as PyTorch 2.x
 * runs it on CUDA in fp32, written as a schedule whose every tensor is one allocation of the
 * caching allocator and is freed when PyTorch drops its last reference to it. This file is the
 * driver: the model and the batch on the GPU, the warm-up and the measured step, and what
 * torch.cuda reports for it. pytorch_emitter.h lists the files that write each part.
 *
 * Deliberately not here: cuDNN's own choice of algorithm and workspace (a parameter), the
 * caching allocator's rounding and segments (sim/replay.c), reduction scratch buffers of sum/
 * mean kernels (a few KiB), cuBLASLt's 1 MiB workspace, CUDA context memory (outside the
 * allocator's statistics).
 */
#include "pytorch_emitter.h"

#include <string.h>

/* Which nodes write in place, and which need a gradient (a parameter at or before them). The
 * checkpoint idiom switches every ReLU's inplace off (a checkpointed segment must not start by
 * writing into the input it keeps), so with checkpointing no ReLU writes in place. */
static void pt_structure(pt *e)
{
    const net_t *net = e->net;
    bool relu_inplace = e->p->segments < 2;
    for (int l = 1; l < net->n_nodes; l++) {
        const net_node *x = &net->nodes[l];
        e->in_place[l] = pt_writes_in_place(net, l, relu_inplace);
        e->needs_grad[l] = x->params > 0;
        for (int k = 0; k < x->n_inputs; k++)
            e->needs_grad[l] |= e->needs_grad[x->inputs[k]];
    }
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

lr_status pytorch_predict(const sched_t *s, sim_allocator a, const sim_caching *conf,
                          pytorch_prediction *out)
{
    memset(out, 0, sizeof *out);
    out->peak_step = out->oom_step = -1;
    if (s->step_begin < 1 || s->step_end <= s->step_begin)
        return lr_fail(LR_ERR_INPUT, "pytorch_predict: the schedule has no prologue or no step");
    sim_point *pts = NULL;
    sim_limit_outcome limit;
    LR_TRY(sim_timeline_conf(s, a, conf, &pts, &limit));
    out->alloc_retries = limit.alloc_retries;
    out->oom_step = limit.oom_step;
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
