/* cuda_conv.cu - convolution steps: each piece of cuda_conv_pieces() (cuda_pieces.cu) becomes one
 * cuDNN call on a view or on a staged buffer, plus the bias; and the workspace a schedule needs.
 *
 * Workspace. run->workspace (cfg.workspace_bytes, one persistent TC_WORKSPACE tensor) holds
 * [staging region | algorithm workspace]; the staging region holds a piece's staged input, and
 * later in stream order its staged input gradient. Backward data of a staged piece computes into
 * the staged gradient buffer (beta = 0) and then adds its real rows into dx; backward filter
 * reads the staged input.
 *
 * Deliberately not here: the algorithm choice (cuda_algo.cu), the geometry (cuda_pieces.cu).
 */
#include "cuda_private.h"

/* ------------------------------------------------------------------ workspace sizing */

/* The key of one piece in one direction; limit filled by the caller. */
static void piece_key(const cuda_ctx *c, const conv_info *ci, const cuda_conv_piece *p, int dir,
                      conv_key *k)
{
    memset(k, 0, sizeof *k); /* padding bytes take part in hashing */
    k->dir = dir;
    k->det = c->deterministic;
    k->n = ci->n, k->cin = ci->cin, k->win = ci->w, k->hin = p->in_hi - p->in_lo + 1;
    int x_rows = dir == DIR_BWD_DATA ? ci->dx_rows : ci->x_rows;
    cuda_view_strides(ci->cin, p->staged ? k->hin : x_rows, ci->w, k->xs);
    k->cout = ci->cout, k->wout = ci->wout, k->hout = p->out_hi - p->out_lo + 1;
    cuda_view_strides(ci->cout, ci->y_rows, ci->wout, k->ys);
    k->kh = ci->kh, k->kw = ci->kw, k->sh = ci->sh, k->sw = ci->sw;
    k->ph = p->staged ? 0 : p->pad, k->pw = ci->pw, k->dh = ci->dh, k->dw = ci->dw;
    k->groups = ci->groups;
}

static int64_t algo_limit(const cuda_ctx *c, int64_t ws_bytes, int64_t staging)
{
    int64_t left = ws_bytes - staging;
    return left < c->ws_cap ? left : c->ws_cap;
}

/* Workspace one piece needs: staging plus the largest algorithm workspace of its calls. */
static lr_status piece_need(cuda_ctx *c, const conv_info *ci, const cuda_conv_piece *p,
                            int64_t *need)
{
    int dirs[2], nd = 0;
    if (!ci->backward)
        dirs[nd++] = DIR_FWD;
    if (ci->want_dw)
        dirs[nd++] = DIR_BWD_FILTER;
    if (ci->want_dx)
        dirs[nd++] = DIR_BWD_DATA;
    int64_t most = 0;
    for (int i = 0; i < nd; i++) {
        conv_key k;
        piece_key(c, ci, p, dirs[i], &k);
        k.limit = c->ws_cap;
        algo_entry *e;
        LR_TRY(cuda_conv_algo(c, &k, &e));
        most = e->ws_bytes > most ? e->ws_bytes : most;
    }
    *need = cuda_piece_staging(ci, p) + most;
    return LR_OK;
}

int64_t cuda_backend_workspace_bytes_ctx(void *ctx, const net_t *net, const sched_t *s, int batch)
{
    cuda_ctx *c = (cuda_ctx *)ctx;
    int64_t most = 0;
    for (int i = 0; i < s->n_steps; i++) {
        const sched_step *st = &s->steps[i];
        if (!cuda_is_conv_run(net, st))
            continue;
        conv_info ci;
        cuda_conv_info(net, s, st, batch, &ci);
        cuda_conv_piece pc[3];
        int np = cuda_conv_pieces(ci.h, ci.kh, ci.sh, ci.ph, ci.dh, st->row_lo, st->row_hi, pc);
        for (int j = 0; j < np; j++) {
            int64_t need;
            if (piece_need(c, &ci, &pc[j], &need) != LR_OK)
                return -1;
            most = need > most ? need : most;
        }
    }
    return most;
}

/* ------------------------------------------------------------------ running pieces */

typedef struct {
    char *base;
    int64_t bytes;
} workspace;

static workspace workspace_of(const exec_op *op)
{
    workspace w = {NULL, 0};
    int t = op->run->workspace;
    if (t >= 0 && op->ptr[t]) {
        w.base = (char *)op->ptr[t];
        w.bytes = op->s->tensors[t].bytes;
    }
    return w;
}

/* The staging did not fit: say how much this step needs and how much the schedule needs. */
static lr_status workspace_too_small(cuda_ctx *c, const exec_op *op, int64_t needed, int64_t have)
{
    int64_t plan = cuda_backend_workspace_bytes_ctx(c, op->net, op->s, op->batch);
    return lr_fail(LR_ERR_RUNTIME,
                   "cuda backend: %s %s rows %d-%d needs %lld bytes of edge-staging workspace, the "
                   "schedule has %lld; plan with --workspace %lld (cuda_backend_workspace_bytes)",
                   node_of(op)->name, sched_pass_name((sched_pass)op->step->pass),
                   op->step->row_lo, op->step->row_hi, (long long)needed, (long long)have,
                   (long long)plan);
}

/* Copies the real rows of a staged piece's virtual rows into a zero-filled (N, C, V, W) buffer. */
static lr_status stage_input(cuda_ctx *c, const dview &x, const cuda_conv_piece *p, float *stage)
{
    int V = p->in_hi - p->in_lo + 1;
    LR_TRY(cuda_mem_set(c, stage, 4 * (size_t)x.n * x.c * V * x.w));
    int r0 = p->in_lo > 0 ? p->in_lo : 0, r1 = p->in_hi < x.h - 1 ? p->in_hi : x.h - 1;
    if (r0 > r1)
        return LR_OK;
    check_rows(x, r0, r1);
    return cuda_mem_copy2d(c, stage + (int64_t)(r0 - p->in_lo) * x.w, 4 * (size_t)V * x.w,
                           rows_at(x, r0), 4 * (size_t)x.rows * x.w, 4 * (size_t)(r1 - r0 + 1) * x.w,
                           (size_t)x.n * x.c);
}

/* dx's real rows += the staged input gradient of a piece. */
static lr_status unstage_grad(cuda_ctx *c, const float *stage, const cuda_conv_piece *p, dview dx)
{
    dview s = dx;
    s.p = (float *)stage;
    s.row0 = p->in_lo;
    s.rows = p->in_hi - p->in_lo + 1;
    int r0 = p->in_lo > 0 ? p->in_lo : 0, r1 = p->in_hi < dx.h - 1 ? p->in_hi : dx.h - 1;
    return cuda_launch_move(c, s, 0, dx, 0, dx.c, r0, r1, true);
}

/* Where the algorithm workspace starts: after the staging region. */
static char *algo_space(workspace ws, int64_t staging)
{
    return ws.base ? ws.base + staging : NULL;
}

static lr_status conv_forward_piece(cuda_ctx *c, const exec_op *op, const conv_info *ci,
                                    const cuda_conv_piece *p, workspace ws)
{
    dview x = view_of(op, op->run->in[0]), y = view_of(op, op->run->out);
    int64_t staging = cuda_piece_staging(ci, p);
    const float *xp = rows_at(x, p->in_lo);
    if (p->staged) {
        LR_TRY(stage_input(c, x, p, (float *)ws.base));
        xp = (const float *)ws.base;
    } else {
        check_rows(x, p->in_lo, p->in_hi);
    }
    check_rows(y, p->out_lo, p->out_hi);
    conv_key k;
    piece_key(c, ci, p, DIR_FWD, &k);
    k.limit = algo_limit(c, ws.bytes, staging);
    algo_entry *e;
    LR_TRY(cuda_conv_algo(c, &k, &e));
    dnn_args a = {DIR_FWD, xp, fptr(op, op->run->param), NULL, rows_at(y, p->out_lo), 0.0f,
                  algo_space(ws, staging)};
    return cuda_dnn_run(c, &k, e, &a);
}

static lr_status conv_filter_piece(cuda_ctx *c, const exec_op *op, const conv_info *ci,
                                   const cuda_conv_piece *p, workspace ws)
{
    dview x = view_of(op, op->run->in[0]), dy = view_of(op, op->run->dout);
    int64_t staging = cuda_piece_staging(ci, p);
    const float *xp = rows_at(x, p->in_lo);
    if (p->staged) {
        LR_TRY(stage_input(c, x, p, (float *)ws.base));
        xp = (const float *)ws.base;
    } else {
        check_rows(x, p->in_lo, p->in_hi);
    }
    conv_key k;
    piece_key(c, ci, p, DIR_BWD_FILTER, &k);
    k.limit = algo_limit(c, ws.bytes, staging);
    algo_entry *e;
    LR_TRY(cuda_conv_algo(c, &k, &e));
    /* beta 1: weight gradients accumulate over pieces and partitions */
    dnn_args a = {DIR_BWD_FILTER, xp, NULL, rows_at(dy, p->out_lo), fptr(op, op->run->param_grad),
                  1.0f, algo_space(ws, staging)};
    return cuda_dnn_run(c, &k, e, &a);
}

/* Runs after conv_filter_piece in stream order, so a staged gradient may reuse the region the
 * staged input occupied. */
static lr_status conv_data_piece(cuda_ctx *c, const exec_op *op, const conv_info *ci,
                                 const cuda_conv_piece *p, workspace ws)
{
    dview dy = view_of(op, op->run->dout), dx = view_of(op, op->run->din[0]);
    int64_t staging = cuda_piece_staging(ci, p);
    float *dxp = p->staged ? (float *)ws.base : rows_at(dx, p->in_lo);
    if (!p->staged)
        check_rows(dx, p->in_lo, p->in_hi);
    conv_key k;
    piece_key(c, ci, p, DIR_BWD_DATA, &k);
    k.limit = algo_limit(c, ws.bytes, staging);
    algo_entry *e;
    LR_TRY(cuda_conv_algo(c, &k, &e));
    /* a view accumulates in place (beta 1); a staged buffer is written, then added to dx */
    dnn_args a = {DIR_BWD_DATA, NULL, fptr(op, op->run->param), rows_at(dy, p->out_lo), dxp,
                  p->staged ? 0.0f : 1.0f, algo_space(ws, staging)};
    LR_TRY(cuda_dnn_run(c, &k, e, &a));
    return p->staged ? unstage_grad(c, dxp, p, dx) : LR_OK;
}

static lr_status conv_piece(cuda_ctx *c, const exec_op *op, const conv_info *ci,
                            const cuda_conv_piece *p, workspace ws)
{
    int64_t staging = cuda_piece_staging(ci, p);
    if (staging > ws.bytes)
        return workspace_too_small(c, op, staging, ws.bytes);
    if (!ci->backward)
        return conv_forward_piece(c, op, ci, p, ws);
    check_rows(view_of(op, op->run->dout), p->out_lo, p->out_hi);
    if (ci->want_dw)
        LR_TRY(conv_filter_piece(c, op, ci, p, ws));
    if (ci->want_dx)
        LR_TRY(conv_data_piece(c, op, ci, p, ws));
    return LR_OK;
}

lr_status cuda_run_conv(cuda_ctx *c, const exec_op *op)
{
    const net_node *n = node_of(op);
    const sched_run *r = op->run;
    int lo = op->step->row_lo, hi = op->step->row_hi;
    conv_info ci;
    cuda_conv_info(op->net, op->s, op->step, op->batch, &ci);
    if (ci.backward && !ci.want_dx && !ci.want_dw)
        return LR_OK;
    cuda_conv_piece pc[3];
    int np = cuda_conv_pieces(ci.h, ci.kh, ci.sh, ci.ph, ci.dh, lo, hi, pc);
    workspace ws = workspace_of(op);
    int64_t wcount = n->params - (n->prm.bias ? n->c : 0);
    for (int i = 0; i < np; i++)
        LR_TRY(conv_piece(c, op, &ci, &pc[i], ws));
    if (!ci.backward && n->prm.bias)
        return cuda_launch_bias_add(c, view_of(op, r->out), fptr(op, r->param) + wcount, lo, hi);
    if (ci.want_dw && n->prm.bias) {
        dview dy = view_of(op, r->dout);
        red_out o = {NULL, NULL, fptr(op, r->param_grad) + wcount, NULL};
        return cuda_channel_reduce(c, RED_DY, dy, dy, bn_norm{}, lo, hi, o);
    }
    return LR_OK;
}
