/* cuda_conv.cu - convolution steps: each piece of cuda_conv_pieces() (cuda_pieces.cu) becomes one
 * cuDNN call per direction on a view or on a staged buffer, plus the bias; and the workspace a
 * schedule needs.
 *
 * Workspace. run->workspace (cfg.workspace_bytes, one persistent TC_WORKSPACE tensor) holds
 * [staging region | algorithm workspace]; the staging region holds a piece's staged input, and
 * later in stream order its staged input gradient. Backward data of a staged piece computes into
 * the staged gradient buffer (beta = 0) and then adds its real rows into dx; backward filter
 * reads the staged input.
 *
 * Packed calls. A stripe view starts (lo - row0) * W * 4 bytes into its tensor: for W = 7 or 14
 * that is not 16-byte aligned, and cuDNN may turn down every (deterministic) algorithm for such a
 * view. A call cuDNN turned down entirely runs packed instead: its input staged (as a staged
 * piece, zero-filled where the map has padding), its output rows or their gradient in a packed
 * (N, Cout, R, OW) buffer after it, both in the staging region, copied back or in around the
 * call. In deterministic mode the workspace is sized for the packed form of every call that
 * touches an unaligned view, so a plan made with cuda_backend_workspace_bytes() still has room
 * and its predicted peak still equals the measured one.
 *
 * Deliberately not here: the algorithm choice (cuda_algo.cu), the geometry (cuda_pieces.cu).
 */
#include "cuda_private.h"

/* ------------------------------------------------------------------ layouts */

/* Where one call's operands are: in place (views into the arena; the input possibly staged) or
 * packed into the staging region. */
typedef struct {
    cuda_conv_piece p; /* as run: the staged form when packed */
    bool packed;
    int64_t staging;   /* bytes of the staging region it uses */
    int64_t out_at;    /* packed: where the output buffer starts in the staging region */
} call_layout;

static call_layout layout_of(const conv_info *ci, const cuda_conv_piece *p, bool packed)
{
    call_layout L;
    L.packed = packed;
    L.p = packed ? cuda_piece_as_staged(ci, p) : *p;
    L.out_at = cuda_piece_staging(ci, &L.p);
    L.staging = packed ? cuda_piece_packed_staging(ci, p) : L.out_at;
    return L;
}

/* The key of one call; limit filled by the caller (padding bytes take part in hashing). */
static void call_key(const cuda_ctx *c, const conv_info *ci, const call_layout *L, int dir,
                     conv_key *k)
{
    const cuda_conv_piece *p = &L->p;
    memset(k, 0, sizeof *k);
    k->dir = dir;
    k->det = c->deterministic;
    k->n = ci->n, k->cin = ci->cin, k->win = ci->w, k->hin = p->in_hi - p->in_lo + 1;
    int x_rows = dir == DIR_BWD_DATA ? ci->dx_rows : ci->x_rows;
    cuda_view_strides(ci->cin, p->staged ? k->hin : x_rows, ci->w, k->xs);
    k->cout = ci->cout, k->wout = ci->wout, k->hout = p->out_hi - p->out_lo + 1;
    cuda_view_strides(ci->cout, L->packed ? k->hout : ci->y_rows, ci->wout, k->ys);
    k->kh = ci->kh, k->kw = ci->kw, k->sh = ci->sh, k->sw = ci->sw;
    k->ph = p->staged ? 0 : p->pad, k->pw = ci->pw, k->dh = ci->dh, k->dw = ci->dw;
    k->groups = ci->groups;
}

static int64_t algo_limit(const cuda_ctx *c, int64_t ws_bytes, int64_t staging)
{
    int64_t left = ws_bytes - staging;
    return left < c->ws_cap ? left : c->ws_cap;
}

/* ------------------------------------------------------------------ workspace sizing */

/* Workspace of a layout: staging plus the largest algorithm workspace of its calls. */
static lr_status layout_need(cuda_ctx *c, const conv_info *ci, const call_layout *L,
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
        call_key(c, ci, L, dirs[i], &k);
        k.limit = c->ws_cap;
        algo_entry *e;
        LR_TRY(cuda_conv_algo(c, &k, &e));
        most = e->ws_bytes > most ? e->ws_bytes : most;
    }
    *need = L->staging + most;
    return LR_OK;
}

/* A piece in place, and in deterministic mode its packed form when it touches an unaligned view
 * (see the file header). */
static lr_status piece_need(cuda_ctx *c, const conv_info *ci, const cuda_conv_piece *p,
                            int64_t *need)
{
    call_layout in_place = layout_of(ci, p, false), packed = layout_of(ci, p, true);
    LR_TRY(layout_need(c, ci, &in_place, need));
    if (!c->deterministic || !cuda_piece_unaligned(ci, p))
        return LR_OK;
    int64_t more;
    LR_TRY(layout_need(c, ci, &packed, &more));
    *need = more > *need ? more : *need;
    return LR_OK;
}

lr_status cuda_backend_workspace_bytes_ctx(void *ctx, const net_t *net, const sched_t *s,
                                           int batch, int64_t *bytes)
{
    cuda_ctx *c = (cuda_ctx *)ctx;
    int64_t most = 0;
    for (int i = 0; i < s->n_steps; i++) {
        const sched_step *st = &s->steps[i];
        if (!cuda_is_conv_run(net, st))
            continue;
        conv_info ci;
        cuda_conv_info(net, s, st, batch, &ci);
        if (ci.backward && !ci.want_dx && !ci.want_dw)
            continue;
        cuda_conv_piece pc[3];
        int np = cuda_conv_pieces(ci.h, ci.kh, ci.sh, ci.ph, ci.dh, st->row_lo, st->row_hi, pc);
        for (int j = 0; j < np; j++) {
            int64_t need;
            LR_TRY(piece_need(c, &ci, &pc[j], &need));
            most = need > most ? need : most;
        }
    }
    *bytes = most;
    return LR_OK;
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

/* The staging did not fit: say how much this call needs and how much the schedule needs. */
static lr_status workspace_too_small(cuda_ctx *c, const exec_op *op, const call_layout *L,
                                     int64_t have)
{
    int64_t plan = 0;
    if (cuda_backend_workspace_bytes_ctx(c, op->net, op->s, op->batch, &plan) != LR_OK)
        plan = 0;
    /* packed calls outside deterministic mode are not in the plan: room for both */
    plan = L->packed ? plan + L->staging : plan > L->staging ? plan : L->staging;
    return lr_fail(LR_ERR_RUNTIME,
                   "cuda backend: %s %s rows %d-%d needs %lld bytes of %s workspace, the "
                   "schedule has %lld; plan with --workspace %lld (cuda_backend_workspace_bytes)",
                   node_of(op)->name, sched_pass_name((sched_pass)op->step->pass),
                   op->step->row_lo, op->step->row_hi, (long long)L->staging,
                   L->packed ? "packed-call (cuDNN turned down the views)" : "edge-staging",
                   (long long)have, (long long)plan);
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
    return cuda_mem_copy2d(c, c->stream, stage + (int64_t)(r0 - p->in_lo) * x.w, 4 * (size_t)V * x.w,
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

/* The packed output buffer of a call as a view of rows [out_lo, out_hi] of y's map. */
static dview packed_view(const call_layout *L, const dview &y, char *staging)
{
    dview v = y;
    v.p = (float *)(staging + L->out_at);
    v.row0 = L->p.out_lo;
    v.rows = L->p.out_hi - L->p.out_lo + 1;
    return v;
}

/* The input side of a call: x read in place or staged (forward, filter), dx written in place or
 * into the staging region (data). */
static lr_status call_input(cuda_ctx *c, const exec_op *op, int dir, const call_layout *L,
                            workspace ws, const float **x, float **dx)
{
    const cuda_conv_piece *p = &L->p;
    if (dir == DIR_BWD_DATA) {
        dview v = view_of(op, op->run->din[0]);
        if (!p->staged)
            check_rows(v, p->in_lo, p->in_hi);
        *dx = p->staged ? (float *)ws.base : rows_at(v, p->in_lo);
        return LR_OK;
    }
    dview v = view_of(op, op->run->in[0]);
    if (!p->staged) {
        check_rows(v, p->in_lo, p->in_hi);
        *x = rows_at(v, p->in_lo);
        return LR_OK;
    }
    *x = (const float *)ws.base;
    return stage_input(c, v, p, (float *)ws.base);
}

/* One cuDNN call of a piece in one direction, laid out as L; *refused when cuDNN turned down
 * every algorithm for it (then nothing was written). */
static lr_status conv_call(cuda_ctx *c, const exec_op *op, const conv_info *ci, int dir,
                           const call_layout *L, workspace ws, bool *refused)
{
    const sched_run *r = op->run;
    const cuda_conv_piece *p = &L->p;
    const float *x = NULL;
    float *dx = NULL;
    LR_TRY(call_input(c, op, dir, L, ws, &x, &dx));
    dview y = view_of(op, dir == DIR_FWD ? r->out : r->dout);
    check_rows(y, p->out_lo, p->out_hi);
    dview packed = L->packed ? packed_view(L, y, ws.base) : y;
    float *yp = L->packed ? packed.p : rows_at(y, p->out_lo);
    if (L->packed && dir != DIR_FWD)
        LR_TRY(cuda_launch_move(c, y, 0, packed, 0, y.c, p->out_lo, p->out_hi, false));
    conv_key k;
    call_key(c, ci, L, dir, &k);
    k.limit = algo_limit(c, ws.bytes, L->staging);
    algo_entry *e;
    LR_TRY(cuda_conv_algo(c, &k, &e));
    char *space = ws.base ? ws.base + L->staging : NULL;
    /* forward writes (beta 0); weight gradients accumulate over pieces and partitions (beta 1);
     * input gradients accumulate in place, or are written to the staging region and added */
    dnn_args fwd = {DIR_FWD, x, fptr(op, r->param), NULL, yp, 0.0f, space};
    dnn_args filter = {DIR_BWD_FILTER, x, NULL, yp, fptr(op, r->param_grad), 1.0f, space};
    dnn_args data = {DIR_BWD_DATA, NULL, fptr(op, r->param), yp, dx, p->staged ? 0.0f : 1.0f, space};
    const dnn_args *a = dir == DIR_FWD ? &fwd : dir == DIR_BWD_FILTER ? &filter : &data;
    LR_TRY(cuda_dnn_run(c, &k, e, a, refused));
    if (*refused)
        return LR_OK;
    if (L->packed && dir == DIR_FWD)
        LR_TRY(cuda_launch_move(c, packed, 0, y, 0, y.c, p->out_lo, p->out_hi, false));
    if (dir == DIR_BWD_DATA && p->staged)
        return unstage_grad(c, dx, p, view_of(op, r->din[0]));
    return LR_OK;
}

/* A call in place; when cuDNN turns down every algorithm for it, the same call packed. */
static lr_status conv_dir(cuda_ctx *c, const exec_op *op, const conv_info *ci,
                          const cuda_conv_piece *p, int dir, workspace ws)
{
    for (int packed = 0; packed < 2; packed++) {
        call_layout L = layout_of(ci, p, packed);
        if (L.staging > ws.bytes)
            return workspace_too_small(c, op, &L, ws.bytes);
        bool refused;
        LR_TRY(conv_call(c, op, ci, dir, &L, ws, &refused));
        if (!refused) {
            c->packed_calls += packed;
            return LR_OK;
        }
    }
    char why[256];
    snprintf(why, sizeof why, "%s", lr_last_error());
    return lr_fail(LR_ERR_RUNTIME, "cuda backend: %s %s rows %d-%d, on views and packed: %s",
                   node_of(op)->name, sched_pass_name((sched_pass)op->step->pass),
                   op->step->row_lo, op->step->row_hi, why);
}

/* Backward filter runs before backward data in stream order, so a staged gradient may reuse the
 * region the staged input occupied. */
static lr_status conv_piece(cuda_ctx *c, const exec_op *op, const conv_info *ci,
                            const cuda_conv_piece *p, workspace ws)
{
    if (!ci->backward)
        return conv_dir(c, op, ci, p, DIR_FWD, ws);
    if (ci->want_dw)
        LR_TRY(conv_dir(c, op, ci, p, DIR_BWD_FILTER, ws));
    if (ci->want_dx)
        LR_TRY(conv_dir(c, op, ci, p, DIR_BWD_DATA, ws));
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
    int64_t wcount = n->params - (n->prm.bias ? n->c : 0);
    if (r->in[0] < 0) { /* rows whose taps all fall in the padding: no input rows to read */
        if (!ci.backward)
            return cuda_launch_bias_fill(c, view_of(op, r->out),
                                         n->prm.bias ? fptr(op, r->param) + wcount : NULL, lo, hi);
        if (!ci.want_dw || !n->prm.bias) /* no dx rows, and dw += 0 */
            return LR_OK;
        dview dy = view_of(op, r->dout);
        red_out o = {NULL, NULL, fptr(op, r->param_grad) + wcount, NULL};
        return cuda_channel_reduce(c, RED_DY, dy, dy, bn_norm{}, lo, hi, o);
    }
    cuda_conv_piece pc[3];
    int np = cuda_conv_pieces(ci.h, ci.kh, ci.sh, ci.ph, ci.dh, lo, hi, pc);
    workspace ws = workspace_of(op);
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
