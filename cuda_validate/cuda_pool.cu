/* cuda_pool.cu - max and average pooling on row ranges, adaptive and global average pooling.
 *
 * Own kernels, not cuDNN: cuDNN's max-pool backward needs the forward output, which the schedule
 * does not keep (the planner saves the input and recomputes the argmax), and its tie rule is
 * unspecified; these take row ranges with implicit padding (no staging) and reproduce PyTorch's
 * rules (first maximum wins, -inf padding never does, count_include_pad). Backward kernels gather
 * per input element in the CPU's scatter order, so they are atomic-free and bit-identical to the
 * CPU's summation order.
 *
 * Deliberately not here: convolutions (cuda_conv.cu).
 */
#include "cuda_private.h"

/* ------------------------------------------------------------------ kernels */

/* The first in-map maximum in scan order; a later element replaces it only when strictly
 * greater or NaN (cpu_pool.c max_tap). */
__host__ __device__ static bool max_tap(const dwin &g, const dview &x, int n, int c, int r, int o,
                                        int *iy, int *ix)
{
    bool found = false;
    float best = -INFINITY;
    for (int ky = 0; ky < g.kh; ky++) {
        int yy = r * g.sh - g.ph + ky * g.dh;
        if (yy < 0 || yy >= x.h)
            continue;
        for (int kx = 0; kx < g.kw; kx++) {
            int xx = o * g.sw - g.pw + kx * g.dw;
            if (xx < 0 || xx >= x.w)
                continue;
            float v = x.p[dv_idx(x, n, c, yy, xx)];
            if (!found || v > best || isnan(v)) {
                found = true;
                best = v;
                *iy = yy;
                *ix = xx;
            }
        }
    }
    return found;
}

/* Output rows (within [lo, hi]) and columns whose windows contain input element (yy, xx). */
__host__ __device__ static void windows_over(const dwin &g, int yy, int xx, int lo, int hi, int ow,
                                             int *r0, int *r1, int *o0, int *o1)
{
    *r0 = -floor_div(-(yy + g.ph - g.dh * (g.kh - 1)), g.sh);
    *r1 = floor_div(yy + g.ph, g.sh);
    *o0 = -floor_div(-(xx + g.pw - g.dw * (g.kw - 1)), g.sw);
    *o1 = floor_div(xx + g.pw, g.sw);
    *r0 = *r0 > lo ? *r0 : lo;
    *r1 = *r1 < hi ? *r1 : hi;
    *o0 = *o0 > 0 ? *o0 : 0;
    *o1 = *o1 < ow - 1 ? *o1 : ow - 1;
}

struct k_maxpool_fwd {
    dwin g;
    dview x, y;
    int lo, R;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, y.c, R, y.w, lo);
        int iy, ix;
        y.p[dv_idx(y, p.n, p.c, p.r, p.x)] = max_tap(g, x, p.n, p.c, p.r, p.x, &iy, &ix)
                                                 ? x.p[dv_idx(x, p.n, p.c, iy, ix)]
                                                 : -INFINITY;
    }
};

/* Per input element: the outputs of rows [lo, hi] whose argmax it is, in the CPU's order. */
struct k_maxpool_bwd {
    dwin g;
    dview x, dy, dx;
    int lo, hi, dlo, dR;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, dx.c, dR, dx.w, dlo);
        int r0, r1, o0, o1;
        windows_over(g, p.r, p.x, lo, hi, dy.w, &r0, &r1, &o0, &o1);
        float *d = &dx.p[dv_idx(dx, p.n, p.c, p.r, p.x)];
        float acc = *d;
        for (int r = r0; r <= r1; r++)
            for (int o = o0; o <= o1; o++) {
                int iy, ix;
                if (max_tap(g, x, p.n, p.c, r, o, &iy, &ix) && iy == p.r && ix == p.x)
                    acc += dy.p[dv_idx(dy, p.n, p.c, r, o)];
            }
        *d = acc;
    }
};

/* count_include_pad: the divisor is always kh * kw (cpu_pool.c check_pool). */
struct k_avgpool_fwd {
    dwin g;
    dview x, y;
    int lo, R;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, y.c, R, y.w, lo);
        float sum = 0.0f;
        for (int ky = 0; ky < g.kh; ky++) {
            int yy = p.r * g.sh - g.ph + ky;
            if (yy < 0 || yy >= x.h)
                continue;
            for (int kx = 0; kx < g.kw; kx++) {
                int xx = p.x * g.sw - g.pw + kx;
                if (xx >= 0 && xx < x.w)
                    sum += x.p[dv_idx(x, p.n, p.c, yy, xx)];
            }
        }
        y.p[dv_idx(y, p.n, p.c, p.r, p.x)] = sum / (float)(g.kh * g.kw);
    }
};

struct k_avgpool_bwd {
    dwin g;
    dview dy, dx;
    int lo, hi, dlo, dR;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, dx.c, dR, dx.w, dlo);
        int r0, r1, o0, o1;
        windows_over(g, p.r, p.x, lo, hi, dy.w, &r0, &r1, &o0, &o1);
        float divisor = (float)(g.kh * g.kw);
        float *d = &dx.p[dv_idx(dx, p.n, p.c, p.r, p.x)];
        float acc = *d;
        for (int r = r0; r <= r1; r++)
            for (int o = o0; o <= o1; o++)
                acc += dy.p[dv_idx(dy, p.n, p.c, r, o)] / divisor;
        *d = acc;
    }
};

/* PyTorch's adaptive bins: [floor(i * in / out), ceil((i + 1) * in / out)). */
__host__ __device__ static inline int bin_start(int i, int in, int out)
{
    return (int)((int64_t)i * in / out);
}

__host__ __device__ static inline int bin_end(int i, int in, int out)
{
    return (int)(((int64_t)(i + 1) * in + out - 1) / out);
}

/* One thread per output element of rows [lo, lo + R), the rows the input rows [in_lo, in_hi]
 * meet: adds those input rows (a bin starting there is started) and divides a bin ending there,
 * as cpu_adaptive_avgpool_fwd does. */
struct k_adaptive_fwd {
    dview x, y;
    int lo, R, in_lo, in_hi;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, y.c, R, y.w, lo);
        int y0 = bin_start(p.r, x.h, y.h), y1 = bin_end(p.r, x.h, y.h);
        int x0 = bin_start(p.x, x.w, y.w), x1 = bin_end(p.x, x.w, y.w);
        int r0 = y0 > in_lo ? y0 : in_lo, r1 = y1 - 1 < in_hi ? y1 - 1 : in_hi;
        float *out = &y.p[dv_idx(y, p.n, p.c, p.r, p.x)];
        float sum = r0 == y0 ? 0.0f : *out; /* a bin begun by an earlier stripe */
        for (int yy = r0; yy <= r1; yy++)
            for (int xx = x0; xx < x1; xx++)
                sum += x.p[dv_idx(x, p.n, p.c, yy, xx)];
        *out = r1 == y1 - 1 ? sum / (float)((y1 - y0) * (x1 - x0)) : sum;
    }
};

/* One thread per input element of rows [in_lo, in_lo + R): the shares of the bins it lies in,
 * in the order cpu_adaptive_avgpool_bwd adds them. */
struct k_adaptive_bwd {
    dview dy, dx;
    int in_lo, R;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, dx.c, R, dx.w, in_lo);
        float *d = &dx.p[dv_idx(dx, p.n, p.c, p.r, p.x)];
        float acc = *d;
        for (int a = 0; a < dy.h; a++) {
            int y0 = bin_start(a, dx.h, dy.h), y1 = bin_end(a, dx.h, dy.h);
            if (p.r < y0 || p.r >= y1)
                continue;
            for (int b = 0; b < dy.w; b++) {
                int x0 = bin_start(b, dx.w, dy.w), x1 = bin_end(b, dx.w, dy.w);
                if (p.x >= x0 && p.x < x1)
                    acc += dy.p[dv_idx(dy, p.n, p.c, a, b)] / (float)((y1 - y0) * (x1 - x0));
            }
        }
        *d = acc;
    }
};

/* ------------------------------------------------------------------ launchers */

/* Input rows the windows of output rows [lo, hi] read, clipped to the map. */
static void window_input_rows(const dwin &g, int h, int lo, int hi, int *a, int *b)
{
    *a = lo * g.sh - g.ph;
    *b = hi * g.sh - g.ph + g.dh * (g.kh - 1);
    *a = *a > 0 ? *a : 0;
    *b = *b < h - 1 ? *b : h - 1;
}

static lr_status launch_pool_fwd(cuda_ctx *c, bool max, dwin g, dview x, dview y, int lo, int hi)
{
    if (lo > hi)
        return LR_OK;
    LR_ASSERT(g.ph <= g.kh / 2 && g.pw <= g.kw / 2 && x.c == y.c);
    LR_ASSERT(max || (g.dh == 1 && g.dw == 1));
    int a, b;
    window_input_rows(g, x.h, lo, hi, &a, &b);
    check_rows(x, a, b);
    check_rows(y, lo, hi);
    int64_t total = rows_total(y, y.c, hi - lo + 1);
    if (max) {
        k_maxpool_fwd op = {g, x, y, lo, hi - lo + 1};
        return run_each(c, op, total);
    }
    k_avgpool_fwd op = {g, x, y, lo, hi - lo + 1};
    return run_each(c, op, total);
}

/* x is read only for max pooling (the argmax is recomputed from the input). */
static lr_status launch_pool_bwd(cuda_ctx *c, bool max, dwin g, dview x, dview dy, int lo, int hi,
                                 dview dx)
{
    if (lo > hi)
        return LR_OK;
    int a, b;
    window_input_rows(g, dx.h, lo, hi, &a, &b);
    check_rows(dy, lo, hi);
    check_rows(dx, a, b);
    if (max)
        check_rows(x, a, b);
    int64_t total = a <= b ? rows_total(dx, dx.c, b - a + 1) : 0;
    if (max) {
        k_maxpool_bwd op = {g, x, dy, dx, lo, hi, a, b - a + 1};
        return run_each(c, op, total);
    }
    k_avgpool_bwd op = {g, dy, dx, lo, hi, a, b - a + 1};
    return run_each(c, op, total);
}

static void check_full(const dview &v)
{
    LR_ASSERT(v.p != NULL && v.row0 == 0 && v.rows == v.h);
}

/* The output rows whose bins meet input rows [in_lo, in_hi]. */
static void touched_rows(int in_lo, int in_hi, int h_in, int h_out, int *i_lo, int *i_hi)
{
    *i_lo = (int)((int64_t)in_lo * h_out / h_in);
    *i_hi = (int)((int64_t)in_hi * h_out / h_in);
    while (*i_lo > 0 && bin_end(*i_lo - 1, h_in, h_out) > in_lo)
        (*i_lo)--;
    while (*i_hi + 1 < h_out && bin_start(*i_hi + 1, h_in, h_out) <= in_hi)
        (*i_hi)++;
}

/* x holds input rows [in_lo, in_hi] (at least); y is the whole output map. */
static lr_status launch_adaptive_fwd(cuda_ctx *c, dview x, dview y, int in_lo, int in_hi)
{
    check_full(y);
    check_rows(x, in_lo, in_hi);
    LR_ASSERT(x.n == y.n && x.c == y.c && in_lo <= in_hi);
    int i_lo, i_hi;
    touched_rows(in_lo, in_hi, x.h, y.h, &i_lo, &i_hi);
    k_adaptive_fwd op = {x, y, i_lo, i_hi - i_lo + 1, in_lo, in_hi};
    return run_each(c, op, rows_total(y, y.c, i_hi - i_lo + 1));
}

static lr_status launch_adaptive_bwd(cuda_ctx *c, dview dy, dview dx, int in_lo, int in_hi)
{
    check_full(dy);
    check_rows(dx, in_lo, in_hi);
    LR_ASSERT(dx.n == dy.n && dx.c == dy.c && in_lo <= in_hi);
    k_adaptive_bwd op = {dy, dx, in_lo, in_hi - in_lo + 1};
    return run_each(c, op, rows_total(dx, dx.c, in_hi - in_lo + 1));
}

/* ------------------------------------------------------------------ adapters */

static dwin window_of(const net_node *n)
{
    dwin g = {n->prm.kh, n->prm.kw, n->prm.sh, n->prm.sw, n->prm.ph, n->prm.pw, n->prm.dh, n->prm.dw};
    return g;
}

lr_status cuda_run_pool(cuda_ctx *c, const exec_op *op)
{
    const net_node *n = node_of(op);
    const sched_run *r = op->run;
    int lo = op->step->row_lo, hi = op->step->row_hi;
    bool max = n->op == OP_MAXPOOL;
    if (!backward(op))
        return launch_pool_fwd(c, max, window_of(n), view_of(op, r->in[0]),
                               view_of(op, r->out), lo, hi);
    if (r->din[0] < 0)
        return LR_OK;
    dview x = max ? view_of(op, r->in[0]) : view_of(op, -1);
    return launch_pool_bwd(c, max, window_of(n), x, view_of(op, r->dout), lo, hi,
                           view_of(op, r->din[0]));
}

/* RUN_ROW_SUM: the input rows own_lo..own_hi of a partition; otherwise the whole map. */
lr_status cuda_run_gpool(cuda_ctx *c, const exec_op *op)
{
    const sched_run *r = op->run;
    const net_node *n = node_of(op);
    bool part = op->step->flags & RUN_ROW_SUM;
    int lo = part ? r->own_lo : 0, hi = part ? r->own_hi : op->net->nodes[n->inputs[0]].h - 1;
    if (!backward(op))
        return launch_adaptive_fwd(c, view_of(op, r->in[0]), view_of(op, r->out), lo, hi);
    if (r->din[0] < 0)
        return LR_OK;
    return launch_adaptive_bwd(c, view_of(op, r->dout), view_of(op, r->din[0]), lo, hi);
}
