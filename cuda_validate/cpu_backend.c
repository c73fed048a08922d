/* cpu_backend.c - the CPU reference backend: the glue from schedule steps to the kernels of
 * cpu_ops.h (see exec.h for what each RUN step means).
 *
 * Legend: N batch, C channels, H/W height/width.
 * Deliberately not here: kernels (cpu_ops.h and the cpu_*.c files), the interpreter (exec.c).
 */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "cpu_ops.h"
#include "exec.h"

/* ------------------------------------------------------------------ views */

static cpu_view view_of(const exec_op *op, int t)
{
    cpu_view v;
    memset(&v, 0, sizeof v);
    if (t < 0)
        return v;
    exec_view_shape sh = exec_view_shape_of(op, t);
    const net_node *n = &op->net->nodes[sh.node];
    v.data = op->ptr[t];
    LR_ASSERT(v.data != NULL);
    v.n = op->batch, v.c = n->c, v.h = n->h, v.w = n->w;
    v.row0 = sh.row0, v.rows = sh.rows;
    return v;
}

static float *fptr(const exec_op *op, int t)
{
    return t >= 0 ? (float *)op->ptr[t] : NULL;
}

static cpu_window window_of(const net_node *n)
{
    cpu_window g = {n->prm.kh, n->prm.kw, n->prm.sh, n->prm.sw, n->prm.ph,
                    n->prm.pw, n->prm.dh, n->prm.dw, n->prm.groups};
    return g;
}

static const net_node *node_of(const exec_op *op)
{
    return &op->net->nodes[op->step->node];
}

static bool backward(const exec_op *op)
{
    return op->step->pass == PASS_BWD || op->step->pass == PASS_GSTATS;
}

/* ------------------------------------------------------------------ workspace */

/* Scratch floats convolution node l needs for `threads` threads. */
static int64_t conv_scratch_floats(const net_t *net, int l, int batch, int threads)
{
    const net_node *n = &net->nodes[l], *x = &net->nodes[n->inputs[0]];
    cpu_window g = window_of(n);
    return cpu_conv_scratch_floats(&g, batch, x->c, x->h, x->w, n->c, threads);
}

/* The convolutions' scratch (im2col columns, or the direct kernels' padded rows), a slice per
 * OpenMP thread: the largest over the schedule's convolutions. */
static lr_status cpu_workspace_bytes(void *ctx, const net_t *net, const sched_t *s, int batch,
                                     int64_t *bytes)
{
    int64_t most = 0;
    for (int i = 0; i < s->n_steps; i++) {
        const sched_step *st = &s->steps[i];
        if (st->op != STEP_RUN || st->node < 0 || net->nodes[st->node].op != OP_CONV)
            continue;
        int64_t f = conv_scratch_floats(net, st->node, batch, omp_get_max_threads());
        most = f > most ? f : most;
    }
    *bytes = most * (int64_t)sizeof(float);
    return LR_OK;
}

/* The workspace tensor as scratch. Training steps must have room for one thread at least (the
 * kernels use as many threads as fit); evaluation, which runs outside the arena, gets scratch of
 * its own (*owned, freed by the caller). */
static lr_status conv_scratch(const exec_op *op, cpu_scratch *ws, float **owned)
{
    int t = op->run->workspace;
    ws->data = t >= 0 ? fptr(op, t) : NULL;
    ws->floats = t >= 0 ? op->s->tensors[t].bytes / (int64_t)sizeof(float) : 0;
    *owned = NULL;
    int64_t need = conv_scratch_floats(op->net, op->step->node, op->batch, 1);
    if (ws->floats >= need)
        return LR_OK;
    if (op->eval) {
        int64_t f = conv_scratch_floats(op->net, op->step->node, op->batch, omp_get_max_threads());
        *owned = malloc(sizeof(float) * (size_t)f);
        if (!*owned)
            return lr_fail(LR_ERR_NOMEM, "out of memory (%lld bytes of scratch)", (long long)f * 4);
        ws->data = *owned, ws->floats = f;
        return LR_OK;
    }
    int64_t plan = 0;
    cpu_workspace_bytes(NULL, op->net, op->s, op->batch, &plan);
    return lr_fail(LR_ERR_RUNTIME,
                   "cpu backend: %s needs %lld bytes of workspace for one thread, the schedule "
                   "has %lld; plan with --workspace %lld (exec_plan_workspace)",
                   node_of(op)->name, (long long)need * 4, (long long)ws->floats * 4,
                   (long long)plan);
}

/* ------------------------------------------------------------------ spatial ops */

static lr_status run_conv(const exec_op *op)
{
    const net_node *n = node_of(op);
    const sched_run *r = op->run;
    cpu_window g = window_of(n);
    float *w = fptr(op, r->param);
    int64_t wcount = n->params - (n->prm.bias ? n->c : 0);
    int lo = op->step->row_lo, hi = op->step->row_hi;
    if (r->in[0] < 0) { /* rows whose taps all fall in the padding: no input rows to read */
        if (!backward(op)) {
            cpu_view y = view_of(op, r->out);
            cpu_conv_fwd_padding(n->prm.bias ? w + wcount : NULL, &y, lo, hi);
        } else if (r->param_grad >= 0 && n->prm.bias) { /* no dx rows, and dw += 0 */
            cpu_view dy = view_of(op, r->dout);
            cpu_conv_bwd_padding(&dy, lo, hi, fptr(op, r->param_grad) + wcount);
        }
        return LR_OK;
    }
    cpu_view x = view_of(op, r->in[0]);
    cpu_scratch ws;
    float *owned;
    LR_TRY(conv_scratch(op, &ws, &owned));
    if (!backward(op)) {
        cpu_view y = view_of(op, r->out);
        cpu_conv_fwd(&g, &x, w, n->prm.bias ? w + wcount : NULL, &y, lo, hi, &ws);
    } else {
        cpu_view dy = view_of(op, r->dout), dx = view_of(op, r->din[0]);
        float *dw = fptr(op, r->param_grad);
        cpu_conv_bwd(&g, &x, w, &dy, lo, hi, r->din[0] >= 0 ? &dx : NULL, dw,
                     dw && n->prm.bias ? dw + wcount : NULL, &ws);
    }
    free(owned);
    return LR_OK;
}

static lr_status run_relu(const exec_op *op)
{
    const sched_run *r = op->run;
    int lo = op->step->row_lo, hi = op->step->row_hi;
    cpu_view y = view_of(op, r->out);
    if (!backward(op)) {
        cpu_view x = view_of(op, r->in[0]);
        cpu_relu_fwd(&x, &y, lo, hi);
    } else {
        cpu_view dy = view_of(op, r->dout), dx = view_of(op, r->din[0]);
        if (r->din[0] >= 0)
            cpu_relu_bwd(&y, &dy, lo, hi, &dx);
    }
    return LR_OK;
}

static lr_status run_pool(const exec_op *op)
{
    const net_node *n = node_of(op);
    const sched_run *r = op->run;
    cpu_window g = window_of(n);
    int lo = op->step->row_lo, hi = op->step->row_hi;
    bool max = n->op == OP_MAXPOOL;
    if (!backward(op)) {
        cpu_view x = view_of(op, r->in[0]), y = view_of(op, r->out);
        (max ? cpu_maxpool_fwd : cpu_avgpool_fwd)(&g, &x, &y, lo, hi);
        return LR_OK;
    }
    if (r->din[0] < 0)
        return LR_OK;
    cpu_view dy = view_of(op, r->dout), dx = view_of(op, r->din[0]);
    if (max) {
        cpu_view x = view_of(op, r->in[0]);
        cpu_maxpool_bwd(&g, &x, &dy, lo, hi, &dx);
    } else {
        cpu_avgpool_bwd(&g, &dy, lo, hi, &dx);
    }
    return LR_OK;
}

static lr_status run_add(const exec_op *op)
{
    const sched_run *r = op->run;
    int lo = op->step->row_lo, hi = op->step->row_hi;
    if (!backward(op)) {
        cpu_view a = view_of(op, r->in[0]), b = view_of(op, r->in[1]), y = view_of(op, r->out);
        cpu_add_fwd(&a, &b, &y, lo, hi);
        for (int k = 2; k < r->n_in; k++) {
            cpu_view c = view_of(op, r->in[k]);
            cpu_accumulate_rows(&c, lo, hi, &y);
        }
        return LR_OK;
    }
    cpu_view dy = view_of(op, r->dout);
    for (int k = 0; k < r->n_in; k++)
        if (r->din[k] >= 0) {
            cpu_view dx = view_of(op, r->din[k]);
            cpu_accumulate_rows(&dy, lo, hi, &dx);
        }
    return LR_OK;
}

static lr_status run_concat(const exec_op *op)
{
    const sched_run *r = op->run;
    int lo = op->step->row_lo, hi = op->step->row_hi;
    int off = 0;
    cpu_view y = backward(op) ? view_of(op, r->dout) : view_of(op, r->out);
    for (int k = 0; k < r->n_in; k++) {
        int ck = op->net->nodes[node_of(op)->inputs[k]].c;
        if (!backward(op)) {
            cpu_view x = view_of(op, r->in[k]);
            cpu_concat_fwd(&x, off, &y, lo, hi);
        } else if (r->din[k] >= 0) {
            cpu_view dx = view_of(op, r->din[k]);
            cpu_concat_bwd(&y, off, lo, hi, &dx);
        }
        off += ck;
    }
    return LR_OK;
}

static lr_status run_upsample(const exec_op *op)
{
    const sched_run *r = op->run;
    int f = node_of(op)->prm.scale, lo = op->step->row_lo, hi = op->step->row_hi;
    if (!backward(op)) {
        cpu_view x = view_of(op, r->in[0]), y = view_of(op, r->out);
        cpu_upsample_fwd(f, &x, &y, lo, hi);
    } else if (r->din[0] >= 0) {
        cpu_view dy = view_of(op, r->dout), dx = view_of(op, r->din[0]);
        cpu_upsample_bwd(f, &dy, lo, hi, &dx);
    }
    return LR_OK;
}

static lr_status run_dropout(const exec_op *op)
{
    const sched_run *r = op->run;
    double p = node_of(op)->prm.p;
    int lo = op->step->row_lo, hi = op->step->row_hi;
    uint64_t seed = exec_dropout_seed(op->hp->seed, op->train_step, op->step->node);
    if (!backward(op)) {
        cpu_view x = view_of(op, r->in[0]), y = view_of(op, r->out);
        if (op->eval)
            cpu_copy_rows(&x, &y, lo, hi, false);
        else
            cpu_dropout_fwd(seed, p, &x, &y, lo, hi);
    } else if (r->din[0] >= 0) {
        cpu_view dy = view_of(op, r->dout), dx = view_of(op, r->din[0]);
        cpu_dropout_bwd(seed, p, &dy, lo, hi, &dx);
    }
    return LR_OK;
}

/* ------------------------------------------------------------------ batch normalisation */

static int64_t stat_count(const exec_op *op, int rows)
{
    return (int64_t)op->batch * rows * node_of(op)->w;
}

static double *stats_sums(const exec_op *op, int t)
{
    return (double *)((float *)op->ptr[t] + 2 * node_of(op)->c);
}

/* Eval mode: mean/invstd from the running statistics (scratch outside the arena). */
static lr_status bn_eval(const exec_op *op)
{
    const net_node *n = node_of(op);
    const sched_run *r = op->run;
    float *stats = malloc(sizeof(float) * 2 * (size_t)n->c);
    if (!stats)
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    const float *run = fptr(op, r->running);
    for (int c = 0; c < n->c; c++) {
        stats[c] = run[c];
        stats[n->c + c] = (float)(1.0 / sqrt((double)run[n->c + c] + n->prm.eps));
    }
    cpu_view x = view_of(op, r->in[0]), y = view_of(op, r->out);
    cpu_bn_fwd(&x, stats, fptr(op, r->param), &y, 0, n->h - 1);
    free(stats);
    return LR_OK;
}

/* Running statistics: stripes move them by their share of the rows. */
static void bn_running(const exec_op *op, const double *sums, int64_t count, int own_rows)
{
    const net_node *n = node_of(op);
    double m = n->prm.momentum * (double)own_rows / n->h;
    cpu_bn_update_running(sums, n->c, count, m, fptr(op, op->run->running));
}

static lr_status bn_forward(const exec_op *op)
{
    const net_node *n = node_of(op);
    const sched_run *r = op->run;
    const sched_step *st = op->step;
    if (op->eval)
        return bn_eval(op);
    cpu_view x = view_of(op, r->in[0]);
    if (st->flags & RUN_BN_FROZEN) {
        cpu_view y = view_of(op, r->out);
        cpu_bn_frozen_fwd(&x, fptr(op, r->running), n->prm.eps, fptr(op, r->param), &y,
                          st->row_lo, st->row_hi);
        return LR_OK;
    }
    float *stats = fptr(op, r->aux);
    if (st->flags & RUN_STATS_ACC) {
        cpu_bn_accumulate(&x, r->own_lo, r->own_hi, stats_sums(op, r->aux));
        return LR_OK;
    }
    if (st->flags & RUN_FINALIZE) {
        int64_t count = stat_count(op, n->h);
        cpu_bn_finalize(stats_sums(op, r->aux), n->c, count, n->prm.eps, stats);
        bn_running(op, stats_sums(op, r->aux), count, n->h);
        return LR_OK;
    }
    int lo = st->row_lo, hi = st->row_hi;
    if (!(st->flags & RUN_BN_GLOBAL)) {
        /* statistics of these rows: a stripe, or the whole map in column order */
        int64_t count = stat_count(op, hi - lo + 1);
        cpu_bn_accumulate(&x, lo, hi, stats_sums(op, r->aux));
        cpu_bn_finalize(stats_sums(op, r->aux), n->c, count, n->prm.eps, stats);
        if (st->pass == PASS_FWD)
            bn_running(op, stats_sums(op, r->aux), count,
                       (st->flags & RUN_BN_STRIPE) ? r->own_hi - r->own_lo + 1 : n->h);
    }
    cpu_view y = view_of(op, r->out);
    cpu_bn_fwd(&x, stats, fptr(op, r->param), &y, lo, hi);
    return LR_OK;
}

static lr_status bn_backward(const exec_op *op)
{
    const net_node *n = node_of(op);
    const sched_run *r = op->run;
    const sched_step *st = op->step;
    int lo = st->row_lo, hi = st->row_hi;
    cpu_view x = view_of(op, r->in[0]), dy = view_of(op, r->dout);
    const float *stats = fptr(op, r->aux), *gb = fptr(op, r->param);
    if (st->flags & RUN_BN_FROZEN) {
        cpu_view dx = view_of(op, r->din[0]);
        cpu_bn_frozen_bwd(&x, fptr(op, r->running), n->prm.eps, gb, &dy, lo, hi,
                          r->din[0] >= 0 ? &dx : NULL, fptr(op, r->param_grad));
        return LR_OK;
    }
    double *gacc = (double *)op->ptr[r->gred];
    if (st->flags & RUN_GSTATS_ACC) {
        cpu_bn_grad_accumulate(&x, stats, &dy, lo, hi, gacc);
        return LR_OK;
    }
    int64_t count = stat_count(op, n->h);
    /* column and stripe BatchNorm: the call's own rows are the statistics; gred, zeroed here,
     * gets exactly their sums, which are also dgb's (not summed a second time) */
    bool own_sums = !(st->flags & RUN_BN_GLOBAL);
    if (own_sums) {
        count = stat_count(op, hi - lo + 1);
        memset(gacc, 0, sizeof(double) * 2 * (size_t)n->c);
        cpu_bn_grad_accumulate(&x, stats, &dy, lo, hi, gacc);
    }
    cpu_view dx = view_of(op, r->din[0]);
    cpu_view *dxp = r->din[0] >= 0 ? &dx : NULL;
    float *dgb = fptr(op, r->param_grad);
    if (!dxp && !dgb)
        return LR_OK;
    if (st->flags & RUN_BN_PARTIAL) {
        cpu_bn_bwd(&x, stats, gb, &dy, lo, hi, gacc, count, false, true, dxp, dgb);
        cpu_bn_bwd(&x, stats, gb, &dy, r->own_lo, r->own_hi, gacc, count, true, false, dxp, NULL);
    } else {
        cpu_bn_bwd(&x, stats, gb, &dy, lo, hi, gacc, count, true, true, dxp, own_sums ? NULL : dgb);
        if (own_sums && dgb)
            cpu_bn_params_from_sums(gacc, n->c, dgb);
    }
    return LR_OK;
}

static lr_status run_bn(const exec_op *op)
{
    return backward(op) ? bn_backward(op) : bn_forward(op);
}

/* ------------------------------------------------------------------ pooling to a fixed size */

/* RUN_ROW_SUM: the input rows own_lo..own_hi of a partition; otherwise the whole map. */
static lr_status run_gpool(const exec_op *op)
{
    const net_node *n = node_of(op);
    const sched_run *r = op->run;
    bool global = n->op == OP_GLOBAL_AVGPOOL;
    bool part = op->step->flags & RUN_ROW_SUM;
    int lo = part ? r->own_lo : 0, hi = part ? r->own_hi : op->net->nodes[n->inputs[0]].h - 1;
    if (!backward(op)) {
        cpu_view x = view_of(op, r->in[0]), y = view_of(op, r->out);
        (global ? cpu_global_avgpool_fwd : cpu_adaptive_avgpool_fwd)(&x, &y, lo, hi);
    } else if (r->din[0] >= 0) {
        cpu_view dy = view_of(op, r->dout), dx = view_of(op, r->din[0]);
        (global ? cpu_global_avgpool_bwd : cpu_adaptive_avgpool_bwd)(&dy, &dx, lo, hi);
    }
    return LR_OK;
}

static lr_status run_fc(const exec_op *op)
{
    const net_node *n = node_of(op);
    const sched_run *r = op->run;
    const net_node *x = &op->net->nodes[plan_root(op->net, n->inputs[0])];
    int in = x->c * x->h * x->w, out = n->c;
    float *w = fptr(op, r->param);
    float *b = n->prm.bias ? w + (int64_t)in * out : NULL;
    if (!backward(op)) {
        cpu_fc_fwd(fptr(op, r->in[0]), w, b, fptr(op, r->out), op->batch, in, out);
        return LR_OK;
    }
    float *dw = fptr(op, r->param_grad);
    cpu_fc_bwd(fptr(op, r->in[0]), w, fptr(op, r->dout), op->batch, in, out, fptr(op, r->din[0]),
               dw, dw && n->prm.bias ? dw + (int64_t)in * out : NULL);
    return LR_OK;
}

static lr_status run_loss(const exec_op *op)
{
    const sched_run *r = op->run;
    int k = op->net->nodes[plan_root(op->net, node_of(op)->inputs[0])].c;
    const int32_t *labels = (const int32_t *)op->ptr[r->labels];
    if (!backward(op)) {
        float loss = cpu_softmax_xent_fwd(fptr(op, r->in[0]), labels, op->batch, k);
        *fptr(op, r->loss) = loss;
        if (op->loss_out)
            *op->loss_out = loss;
    } else if (r->din[0] >= 0) {
        cpu_softmax_xent_bwd(fptr(op, r->in[0]), labels, op->batch, k, fptr(op, r->din[0]));
    }
    return LR_OK;
}

/* ------------------------------------------------------------------ update */

static lr_status run_update(const exec_op *op)
{
    const sched_run *r = op->run;
    const exec_hparams *hp = op->hp;
    int64_t n = node_of(op)->params;
    float *w = fptr(op, r->param), *g = fptr(op, r->param_grad), *state = fptr(op, r->opt_state);
    switch (op->optim) {
    case OPTIM_SGD:
        cpu_sgd_update(w, g, n, hp->lr, hp->weight_decay);
        break;
    case OPTIM_MOMENTUM:
        cpu_momentum_update(w, g, state, n, hp->lr, hp->momentum, hp->weight_decay);
        break;
    default:
        cpu_adam_update(w, g, state, n, hp->lr, hp->beta1, hp->beta2, hp->eps, hp->weight_decay,
                        op->train_step);
    }
    return LR_OK;
}

/* ------------------------------------------------------------------ dispatch */

typedef lr_status (*op_fn)(const exec_op *op);

static const op_fn op_table[OP_COUNT] = {
    [OP_CONV] = run_conv,         [OP_RELU] = run_relu,
    [OP_MAXPOOL] = run_pool,      [OP_AVGPOOL] = run_pool,
    [OP_ADAPTIVE_AVGPOOL] = run_gpool, [OP_GLOBAL_AVGPOOL] = run_gpool,
    [OP_BATCHNORM] = run_bn,      [OP_ADD] = run_add,
    [OP_CONCAT] = run_concat,     [OP_UPSAMPLE] = run_upsample,
    [OP_FC] = run_fc,             [OP_DROPOUT] = run_dropout,
    [OP_SOFTMAX_XENT] = run_loss,
};

static lr_status cpu_run(void *ctx, const exec_op *op)
{
    if (op->step->pass == PASS_UPDATE)
        return run_update(op);
    op_fn f = op_table[node_of(op)->op];
    if (!f)
        return lr_fail(LR_ERR_RUNTIME, "cpu backend: no kernel for %s", net_op_name(node_of(op)->op));
    return f(op);
}

static lr_status cpu_copy(void *ctx, const exec_op *op)
{
    cpu_view src = view_of(op, op->step->src), dst = view_of(op, op->step->t);
    cpu_copy_rows(&src, &dst, op->step->row_lo, op->step->row_hi, op->step->accumulate);
    return LR_OK;
}

static lr_status cpu_arena_alloc(void *ctx, int64_t bytes, void **base)
{
    *base = aligned_alloc(256, (size_t)(bytes > 0 ? (bytes + 255) / 256 * 256 : 256));
    if (!*base)
        return lr_fail(LR_ERR_NOMEM, "cannot allocate a %.1f MiB arena", bytes / 1048576.0);
    return LR_OK;
}

static void cpu_arena_release(void *ctx, void *base)
{
    free(base);
}

static lr_status cpu_zero(void *ctx, void *p, int64_t bytes)
{
    memset(p, 0, (size_t)bytes);
    return LR_OK;
}

static lr_status cpu_move(void *ctx, void *dst, const void *src, int64_t bytes)
{
    memcpy(dst, src, (size_t)bytes);
    return LR_OK;
}

static lr_status cpu_sync(void *ctx)
{
    return LR_OK;
}

static lr_status cpu_scratch_alloc(void *ctx, int64_t bytes, void **p)
{
    *p = malloc((size_t)(bytes > 0 ? bytes : 1));
    return *p ? LR_OK : lr_fail(LR_ERR_NOMEM, "out of memory (%lld bytes)", (long long)bytes);
}

static void cpu_scratch_free(void *ctx, void *p)
{
    free(p);
}

const exec_backend exec_cpu_backend = {
    .name = "cpu",
    .arena_alloc = cpu_arena_alloc,
    .arena_release = cpu_arena_release,
    .zero = cpu_zero,
    .run = cpu_run,
    .copy = cpu_copy,
    .upload = cpu_move,
    .download = cpu_move,
    .sync = cpu_sync,
    .scratch_alloc = cpu_scratch_alloc,
    .scratch_free = cpu_scratch_free,
    .host_alloc = cpu_arena_alloc, /* host memory is the CPU's only memory */
    .host_release = cpu_arena_release,
    .workspace_bytes = cpu_workspace_bytes,
};
