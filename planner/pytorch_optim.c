/* pytorch_optim.c - optimizer.step() (torch.optim's foreach path, the CUDA default) and
 * zero_grad(set_to_none=True): the state the first step creates, the temporaries each step
 * makes and drops, and the end of the step function.
 *
 * Deliberately not here: fused optimizers, weight decay other than the foreach copy.
 */
#include "pytorch_emitter.h"

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
void pt_optimizer(pt *e)
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
