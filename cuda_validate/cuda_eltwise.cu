/* cuda_eltwise.cu - row-wise elementwise ops: relu, add, concat, upsample, dropout (the CPU's mask
 * function), row moves (concat, boundary accumulation, staged gradients) and bias rows. Kernels,
 * launchers, then the adapters from schedule steps. All backward kernels accumulate (+=) into
 * gradients as the CPU does.
 *
 * Deliberately not here: window ops (cuda_pool.cu), per-channel reductions (cuda_bn.cu).
 */
#include "cuda_private.h"

/* ------------------------------------------------------------------ kernels */

struct k_relu_fwd {
    dview x, y;
    int lo, R;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, y.c, R, y.w, lo);
        float v = x.p[dv_idx(x, p.n, p.c, p.r, p.x)];
        y.p[dv_idx(y, p.n, p.c, p.r, p.x)] = v < 0.0f ? 0.0f : v; /* NaN passes, as in torch */
    }
};

struct k_relu_bwd {
    dview y, dy, dx;
    bool in_place;
    int lo, R;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, y.c, R, y.w, lo);
        float g = y.p[dv_idx(y, p.n, p.c, p.r, p.x)] > 0.0f ? dy.p[dv_idx(dy, p.n, p.c, p.r, p.x)]
                                                            : 0.0f;
        float *d = &dx.p[dv_idx(dx, p.n, p.c, p.r, p.x)];
        *d = in_place ? g : *d + g;
    }
};

struct k_add_rows {
    dview a, b, y;
    int lo, R;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, y.c, R, y.w, lo);
        y.p[dv_idx(y, p.n, p.c, p.r, p.x)] =
            a.p[dv_idx(a, p.n, p.c, p.r, p.x)] + b.p[dv_idx(b, p.n, p.c, p.r, p.x)];
    }
};

/* b's channels [b_off, b_off + nc) = (or +=) a's channels [a_off, a_off + nc), rows lo.. */
struct k_move_rows {
    dview a, b;
    int a_off, b_off, nc;
    bool accumulate;
    int lo, R;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, nc, R, a.w, lo);
        float v = a.p[dv_idx(a, p.n, a_off + p.c, p.r, p.x)];
        float *d = &b.p[dv_idx(b, p.n, b_off + p.c, p.r, p.x)];
        *d = accumulate ? *d + v : v;
    }
};

/* y += b over rows [lo, lo + R), or with `set` y = b (0 where b is NULL: a convolution's rows
 * that read only padding) */
struct k_bias_rows {
    dview y;
    const float *b;
    int lo, R;
    bool set;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, y.c, R, y.w, lo);
        float *v = &y.p[dv_idx(y, p.n, p.c, p.r, p.x)], bias = b ? b[p.c] : 0.0f;
        *v = set ? bias : *v + bias;
    }
};

struct k_upsample_fwd {
    dview x, y;
    int f, lo, R;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, y.c, R, y.w, lo);
        y.p[dv_idx(y, p.n, p.c, p.r, p.x)] = x.p[dv_idx(x, p.n, p.c, p.r / f, p.x / f)];
    }
};

/* Per input element of rows [dlo, dlo + dR): the output rows in [lo, hi] it was copied to. */
struct k_upsample_bwd {
    dview dy, dx;
    int f, lo, hi, dlo, dR;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, dx.c, dR, dx.w, dlo);
        float *d = &dx.p[dv_idx(dx, p.n, p.c, p.r, p.x)];
        float acc = *d;
        int r0 = p.r * f > lo ? p.r * f : lo, r1 = p.r * f + f - 1 < hi ? p.r * f + f - 1 : hi;
        for (int r = r0; r <= r1; r++)
            for (int x = p.x * f; x < p.x * f + f; x++)
                acc += dy.p[dv_idx(dy, p.n, p.c, r, x)];
        *d = acc;
    }
};

__host__ __device__ static inline uint64_t hd_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* cpu_dropout_keep() on the element's index in the full (N, C, H, W) map. */
struct k_dropout_rows {
    dview src, dst;
    uint64_t seed;
    double prob;
    float scale;
    bool accumulate;
    int lo, R;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, src.c, R, src.w, lo);
        int64_t index = (((int64_t)p.n * src.c + p.c) * src.h + p.r) * src.w + p.x;
        double u = (double)(hd_mix64(seed + (uint64_t)index * 0x9E3779B97F4A7C15ull) >> 11) *
                   (1.0 / 9007199254740992.0); /* 2^-53 */
        float v = u >= prob ? src.p[dv_idx(src, p.n, p.c, p.r, p.x)] * scale : 0.0f;
        float *d = &dst.p[dv_idx(dst, p.n, p.c, p.r, p.x)];
        *d = accumulate ? *d + v : v;
    }
};

/* ------------------------------------------------------------------ launchers */

static lr_status launch_relu_fwd(cuda_ctx *c, dview x, dview y, int lo, int hi)
{
    if (lo > hi)
        return LR_OK;
    LR_ASSERT(same_map(x, y));
    check_rows(x, lo, hi);
    check_rows(y, lo, hi);
    k_relu_fwd op = {x, y, lo, hi - lo + 1};
    return run_each(c, op, rows_total(y, y.c, hi - lo + 1));
}

static lr_status launch_relu_bwd(cuda_ctx *c, dview y, dview dy, dview dx, int lo, int hi)
{
    if (lo > hi)
        return LR_OK;
    LR_ASSERT(same_map(y, dy) && same_map(y, dx));
    check_rows(y, lo, hi);
    check_rows(dy, lo, hi);
    check_rows(dx, lo, hi);
    bool in_place = dx.p == dy.p;
    LR_ASSERT(!in_place || dx.row0 == dy.row0);
    k_relu_bwd op = {y, dy, dx, in_place, lo, hi - lo + 1};
    return run_each(c, op, rows_total(y, y.c, hi - lo + 1));
}

static lr_status launch_add(cuda_ctx *c, dview a, dview b, dview y, int lo, int hi)
{
    if (lo > hi)
        return LR_OK;
    LR_ASSERT(same_map(a, y) && same_map(b, y));
    check_rows(a, lo, hi);
    check_rows(b, lo, hi);
    check_rows(y, lo, hi);
    k_add_rows op = {a, b, y, lo, hi - lo + 1};
    return run_each(c, op, rows_total(y, y.c, hi - lo + 1));
}

lr_status cuda_launch_move(cuda_ctx *c, dview a, int a_off, dview b, int b_off, int nc, int lo,
                           int hi, bool accumulate)
{
    if (lo > hi || nc == 0)
        return LR_OK;
    LR_ASSERT(a.n == b.n && a.w == b.w);
    LR_ASSERT(a_off >= 0 && a_off + nc <= a.c && b_off >= 0 && b_off + nc <= b.c);
    check_rows(a, lo, hi);
    check_rows(b, lo, hi);
    k_move_rows op = {a, b, a_off, b_off, nc, accumulate, lo, hi - lo + 1};
    return run_each(c, op, rows_total(a, nc, hi - lo + 1));
}

static lr_status launch_bias_rows(cuda_ctx *c, dview y, const float *b, int lo, int hi, bool set)
{
    if (lo > hi)
        return LR_OK;
    check_rows(y, lo, hi);
    k_bias_rows op = {y, b, lo, hi - lo + 1, set};
    return run_each(c, op, rows_total(y, y.c, hi - lo + 1));
}

lr_status cuda_launch_bias_add(cuda_ctx *c, dview y, const float *b, int lo, int hi)
{
    return launch_bias_rows(c, y, b, lo, hi, false);
}

lr_status cuda_launch_bias_fill(cuda_ctx *c, dview y, const float *b, int lo, int hi)
{
    return launch_bias_rows(c, y, b, lo, hi, true);
}

static lr_status launch_upsample_fwd(cuda_ctx *c, int f, dview x, dview y, int lo, int hi)
{
    if (lo > hi)
        return LR_OK;
    LR_ASSERT(f >= 1 && y.h == x.h * f && y.w == x.w * f && y.c == x.c);
    check_rows(y, lo, hi);
    check_rows(x, lo / f, hi / f);
    k_upsample_fwd op = {x, y, f, lo, hi - lo + 1};
    return run_each(c, op, rows_total(y, y.c, hi - lo + 1));
}

static lr_status launch_upsample_bwd(cuda_ctx *c, int f, dview dy, int lo, int hi, dview dx)
{
    if (lo > hi)
        return LR_OK;
    LR_ASSERT(f >= 1 && dy.h == dx.h * f && dy.w == dx.w * f && dy.c == dx.c);
    check_rows(dy, lo, hi);
    int dlo = lo / f, dhi = hi / f;
    check_rows(dx, dlo, dhi);
    k_upsample_bwd op = {dy, dx, f, lo, hi, dlo, dhi - dlo + 1};
    return run_each(c, op, rows_total(dx, dx.c, dhi - dlo + 1));
}

static lr_status launch_dropout(cuda_ctx *c, uint64_t seed, double p, dview src, dview dst,
                                int lo, int hi, bool accumulate)
{
    if (lo > hi)
        return LR_OK;
    LR_ASSERT(same_map(src, dst) && p >= 0.0 && p <= 1.0);
    check_rows(src, lo, hi);
    check_rows(dst, lo, hi);
    float scale = p < 1.0 ? (float)(1.0 / (1.0 - p)) : 0.0f; /* p = 1 keeps nothing */
    k_dropout_rows op = {src, dst, seed, p, scale, accumulate, lo, hi - lo + 1};
    return run_each(c, op, rows_total(src, src.c, hi - lo + 1));
}

/* ------------------------------------------------------------------ adapters */

lr_status cuda_run_relu(cuda_ctx *c, const exec_op *op)
{
    const sched_run *r = op->run;
    int lo = op->step->row_lo, hi = op->step->row_hi;
    if (!backward(op))
        return launch_relu_fwd(c, view_of(op, r->in[0]), view_of(op, r->out), lo, hi);
    if (r->din[0] < 0)
        return LR_OK;
    return launch_relu_bwd(c, view_of(op, r->out), view_of(op, r->dout),
                           view_of(op, r->din[0]), lo, hi);
}

lr_status cuda_run_add(cuda_ctx *c, const exec_op *op)
{
    const sched_run *r = op->run;
    int lo = op->step->row_lo, hi = op->step->row_hi;
    if (!backward(op)) {
        dview y = view_of(op, r->out);
        LR_TRY(launch_add(c, view_of(op, r->in[0]), view_of(op, r->in[1]), y, lo, hi));
        for (int k = 2; k < r->n_in; k++)
            LR_TRY(cuda_launch_move(c, view_of(op, r->in[k]), 0, y, 0, y.c, lo, hi, true));
        return LR_OK;
    }
    dview dy = view_of(op, r->dout);
    for (int k = 0; k < r->n_in; k++)
        if (r->din[k] >= 0)
            LR_TRY(cuda_launch_move(c, dy, 0, view_of(op, r->din[k]), 0, dy.c, lo, hi, true));
    return LR_OK;
}

lr_status cuda_run_concat(cuda_ctx *c, const exec_op *op)
{
    const sched_run *r = op->run;
    int lo = op->step->row_lo, hi = op->step->row_hi;
    dview y = backward(op) ? view_of(op, r->dout) : view_of(op, r->out);
    int off = 0;
    for (int k = 0; k < r->n_in; k++) {
        int ck = op->net->nodes[node_of(op)->inputs[k]].c;
        if (!backward(op)) {
            LR_TRY(cuda_launch_move(c, view_of(op, r->in[k]), 0, y, off, ck, lo, hi, false));
        } else if (r->din[k] >= 0) {
            LR_TRY(cuda_launch_move(c, y, off, view_of(op, r->din[k]), 0, ck, lo, hi, true));
        }
        off += ck;
    }
    return LR_OK;
}

lr_status cuda_run_upsample(cuda_ctx *c, const exec_op *op)
{
    const sched_run *r = op->run;
    int f = node_of(op)->prm.scale, lo = op->step->row_lo, hi = op->step->row_hi;
    if (!backward(op))
        return launch_upsample_fwd(c, f, view_of(op, r->in[0]), view_of(op, r->out), lo, hi);
    if (r->din[0] < 0)
        return LR_OK;
    return launch_upsample_bwd(c, f, view_of(op, r->dout), lo, hi, view_of(op, r->din[0]));
}

lr_status cuda_run_dropout(cuda_ctx *c, const exec_op *op)
{
    const sched_run *r = op->run;
    double p = node_of(op)->prm.p;
    int lo = op->step->row_lo, hi = op->step->row_hi;
    uint64_t seed = exec_dropout_seed(op->hp->seed, op->train_step, op->step->node);
    if (!backward(op)) {
        dview x = view_of(op, r->in[0]), y = view_of(op, r->out);
        if (op->eval)
            return cuda_launch_move(c, x, 0, y, 0, x.c, lo, hi, false);
        return launch_dropout(c, seed, p, x, y, lo, hi, false);
    }
    if (r->din[0] < 0)
        return LR_OK;
    return launch_dropout(c, seed, p, view_of(op, r->dout), view_of(op, r->din[0]), lo, hi,
                          true);
}
