/* cpu_ops.c - the CPU reference backend: forward and backward of every op on row ranges, in
 * plain C11 + OpenMP (see cpu_ops.h for the view and row conventions).
 *
 * Legend: N batch, C channels, H/W full height/width of a map, R rows held by a view,
 * OH/OW output height/width of a window op.
 *
 * Two properties hold by construction and are pinned by tests/test_cpu_ops.c:
 *  - Thread-count independence: every output or gradient element is written by exactly one
 *    thread (work is split over (n, channel) planes, or over channels for reductions over the
 *    batch), and that thread adds its terms in a fixed order.
 *  - Row-split exactness of forward kernels: each output element is computed by an expression
 *    that depends only on its position (which taps fall inside the map), never on the row range
 *    of the call, so [a, b] then [b+1, c] gives the bits of [a, c].
 * Deliberately not here: memory allocation (no kernel mallocs; scratch lives in registers and
 * small fixed stack arrays), scheduling, the choice of BatchNorm statistics rows, and speed
 * beyond a direct convolution with vectorisable inner loops (this is the reference backend).
 */
#include "cpu_ops.h"

#include <limits.h>
#include <math.h>

#include "status.h"

/* ------------------------------------------------------------------ threads */

/* A parallel region costs microseconds (far more on a loaded machine, where a descheduled
 * thread stalls the barrier); kernels with fewer inner-loop operations than this run on the
 * calling thread. Either way the bits are the same: work is split by output element. */
enum { PARALLEL_MIN_WORK = 1 << 15 };

static bool worth_threads(int64_t work)
{
    return work >= PARALLEL_MIN_WORK;
}

/* Elements in rows [r_lo, r_hi] of every (n, c) plane of v's map. */
static int64_t row_work(const cpu_view *v, int r_lo, int r_hi)
{
    return (int64_t)v->n * v->c * (r_hi - r_lo + 1) * v->w;
}

/* ------------------------------------------------------------------ views and geometry */

static void check_view(const cpu_view *v)
{
    LR_ASSERT(v != NULL && v->data != NULL);
    LR_ASSERT(v->n >= 1 && v->c >= 1 && v->h >= 1 && v->w >= 1);
    LR_ASSERT(v->row0 >= 0 && v->rows >= 0 && v->row0 + v->rows <= v->h);
}

static bool same_map(const cpu_view *a, const cpu_view *b)
{
    return a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w;
}

/* Rows [lo, hi] of the full map must be held by v; an empty range (lo > hi) always is. */
static void check_rows(const cpu_view *v, int lo, int hi)
{
    if (lo > hi)
        return;
    LR_ASSERT(lo >= 0 && hi < v->h);
    LR_ASSERT(lo >= v->row0 && hi < v->row0 + v->rows);
}

/* Output rows [r_lo, r_hi] inside [0, h); r_hi = r_lo - 1 is the empty range (a no-op call). */
static void check_range(int r_lo, int r_hi, int h)
{
    LR_ASSERT(r_lo >= 0 && r_hi < h && r_lo <= r_hi + 1);
}

static void check_window(const cpu_window *g)
{
    LR_ASSERT(g != NULL);
    LR_ASSERT(g->kh >= 1 && g->kw >= 1 && g->sh >= 1 && g->sw >= 1);
    LR_ASSERT(g->ph >= 0 && g->pw >= 0 && g->dh >= 1 && g->dw >= 1);
}

/* Output extent of a window op along one axis, floor mode (PyTorch's formula). */
static int window_out(int in, int k, int s, int p, int d)
{
    int span = in + 2 * p - d * (k - 1) - 1;
    LR_ASSERT(span >= 0);
    return span / s + 1;
}

static void check_window_shapes(const cpu_window *g, const cpu_view *x, const cpu_view *y)
{
    check_window(g);
    check_view(x);
    check_view(y);
    LR_ASSERT(y->n == x->n);
    LR_ASSERT(y->h == window_out(x->h, g->kh, g->sh, g->ph, g->dh));
    LR_ASSERT(y->w == window_out(x->w, g->kw, g->sw, g->pw, g->dw));
}

/* Asserts that the input rows output rows [r_lo, r_hi] read through the window's vertical taps
 * lie in v. Only rows actually tapped count (with dilation a clipped range can skip some). */
static void check_window_rows(const cpu_window *g, int r_lo, int r_hi, const cpu_view *v)
{
    int lo = INT_MAX, hi = INT_MIN;
    for (int r = r_lo; r <= r_hi; r++)
        for (int ky = 0; ky < g->kh; ky++) {
            int ir = r * g->sh - g->ph + ky * g->dh;
            if (ir >= 0 && ir < v->h) {
                lo = ir < lo ? ir : lo;
                hi = ir > hi ? ir : hi;
            }
        }
    check_rows(v, lo, hi);
}

/* Output columns [*lo, *hi] whose input column o * s + off lies inside [0, w), within [0, ow).
 * Depends on the column tap only, so every output row uses the same columns. */
static void tap_columns(int ow, int w, int s, int off, int *lo, int *hi)
{
    if (s == 1) {
        *lo = off >= 0 ? 0 : -off;
        *hi = w - 1 - off;
    } else {
        *lo = off >= 0 ? 0 : (-off + s - 1) / s;
        *hi = off > w - 1 ? -1 : (w - 1 - off) / s;
    }
    if (*hi > ow - 1)
        *hi = ow - 1;
}

/* ------------------------------------------------------------------ row primitives */

/* y[o] += a * x[o * s + off] over the output columns whose input column is inside the map. */
static void row_axpy_gather(float *restrict y, const float *restrict x, float a, int s, int off,
                            int ow, int w)
{
    int lo, hi;
    tap_columns(ow, w, s, off, &lo, &hi);
    if (s == 1) {
#pragma omp simd
        for (int o = lo; o <= hi; o++)
            y[o] += a * x[o + off];
    } else {
        for (int o = lo; o <= hi; o++)
            y[o] += a * x[o * s + off];
    }
}

/* x[o * s + off] += a * y[o]: the transpose of row_axpy_gather (back-propagation to the input). */
static void row_axpy_scatter(float *restrict x, const float *restrict y, float a, int s, int off,
                             int ow, int w)
{
    int lo, hi;
    tap_columns(ow, w, s, off, &lo, &hi);
    if (s == 1) {
#pragma omp simd
        for (int o = lo; o <= hi; o++)
            x[o + off] += a * y[o];
    } else {
        for (int o = lo; o <= hi; o++)
            x[o * s + off] += a * y[o];
    }
}

/* Sum over o of y[o] * x[o * s + off]. Eight partial sums combined in a fixed order: the compiler
 * vectorises them without -ffast-math, and the bits depend only on the inputs. */
static float row_dot(const float *restrict y, const float *restrict x, int s, int off, int ow,
                     int w)
{
    int lo, hi;
    tap_columns(ow, w, s, off, &lo, &hi);
    float lane[8] = {0};
    int o = lo;
    if (s == 1) {
        for (; o + 8 <= hi + 1; o += 8) {
#pragma omp simd
            for (int j = 0; j < 8; j++)
                lane[j] += y[o + j] * x[o + j + off];
        }
    }
    float sum = 0.0f;
    for (; o <= hi; o++)
        sum += y[o] * x[o * s + off];
    for (int j = 0; j < 8; j++)
        sum += lane[j];
    return sum;
}

/* ------------------------------------------------------------------ convolution */

static void check_conv(const cpu_window *g, const cpu_view *x, const cpu_view *y)
{
    check_window_shapes(g, x, y);
    LR_ASSERT(g->groups >= 1 && x->c % g->groups == 0 && y->c % g->groups == 0);
}

/* One output row: bias, then every tap in (ci, ky, kx) order; rows and columns outside the map
 * are zero padding and contribute no term. */
static void conv_fwd_row(const cpu_window *g, const cpu_view *x, const float *w, float bias,
                         cpu_view *y, int n, int co, int r)
{
    int cig = x->c / g->groups;
    int ci0 = co / (y->c / g->groups) * cig;
    float *yr = cpu_at(y, n, co, r, 0);
    for (int o = 0; o < y->w; o++)
        yr[o] = bias;
    for (int ci = 0; ci < cig; ci++)
        for (int ky = 0; ky < g->kh; ky++) {
            int ir = r * g->sh - g->ph + ky * g->dh;
            if (ir < 0 || ir >= x->h)
                continue;
            const float *xr = cpu_at(x, n, ci0 + ci, ir, 0);
            const float *wk = w + (((int64_t)co * cig + ci) * g->kh + ky) * g->kw;
            for (int kx = 0; kx < g->kw; kx++)
                row_axpy_gather(yr, xr, wk[kx], g->sw, kx * g->dw - g->pw, y->w, x->w);
        }
}

void cpu_conv_fwd(const cpu_window *g, const cpu_view *x, const float *w, const float *b,
                  cpu_view *y, int r_lo, int r_hi)
{
    check_conv(g, x, y);
    check_range(r_lo, r_hi, y->h);
    check_rows(y, r_lo, r_hi);
    check_window_rows(g, r_lo, r_hi, x);
    int64_t work = row_work(y, r_lo, r_hi) * (x->c / g->groups) * g->kh * g->kw;
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < y->n; n++)
        for (int co = 0; co < y->c; co++)
            for (int r = r_lo; r <= r_hi; r++)
                conv_fwd_row(g, x, w, b ? b[co] : 0.0f, y, n, co, r);
}

/* dw[co] += the correlation of dy row r with the input rows it read. dwc: (Cin/groups, kh, kw). */
static void conv_bwd_weight_row(const cpu_window *g, const cpu_view *x, const cpu_view *dy, int n,
                                int co, int r, float *dwc)
{
    int cig = x->c / g->groups;
    int ci0 = co / (dy->c / g->groups) * cig;
    const float *dyr = cpu_at(dy, n, co, r, 0);
    for (int ci = 0; ci < cig; ci++)
        for (int ky = 0; ky < g->kh; ky++) {
            int ir = r * g->sh - g->ph + ky * g->dh;
            if (ir < 0 || ir >= x->h)
                continue;
            const float *xr = cpu_at(x, n, ci0 + ci, ir, 0);
            float *dwk = dwc + ((int64_t)ci * g->kh + ky) * g->kw;
            for (int kx = 0; kx < g->kw; kx++)
                dwk[kx] += row_dot(dyr, xr, g->sw, kx * g->dw - g->pw, dy->w, x->w);
        }
}

/* dx rows of channel ci += what dy row r sends back through every output channel of its group. */
static void conv_bwd_input_row(const cpu_window *g, const float *w, const cpu_view *dy, int n,
                               int ci, int r, cpu_view *dx)
{
    int cig = dx->c / g->groups, cog = dy->c / g->groups;
    int co0 = ci / cig * cog;
    for (int co = co0; co < co0 + cog; co++) {
        const float *dyr = cpu_at(dy, n, co, r, 0);
        for (int ky = 0; ky < g->kh; ky++) {
            int ir = r * g->sh - g->ph + ky * g->dh;
            if (ir < 0 || ir >= dx->h)
                continue;
            float *dxr = cpu_at(dx, n, ci, ir, 0);
            const float *wk = w + (((int64_t)co * cig + ci % cig) * g->kh + ky) * g->kw;
            for (int kx = 0; kx < g->kw; kx++)
                row_axpy_scatter(dxr, dyr, wk[kx], g->sw, kx * g->dw - g->pw, dy->w, dx->w);
        }
    }
}

static void conv_bwd_bias(const cpu_view *dy, int r_lo, int r_hi, float *db)
{
    int64_t work = row_work(dy, r_lo, r_hi);
#pragma omp parallel for schedule(static) if (worth_threads(work))
    for (int co = 0; co < dy->c; co++) {
        double sum = 0.0;
        for (int n = 0; n < dy->n; n++)
            for (int r = r_lo; r <= r_hi; r++) {
                const float *dyr = cpu_at(dy, n, co, r, 0);
                for (int o = 0; o < dy->w; o++)
                    sum += dyr[o];
            }
        db[co] += (float)sum;
    }
}

void cpu_conv_bwd(const cpu_window *g, const cpu_view *x, const float *w, const cpu_view *dy,
                  int r_lo, int r_hi, cpu_view *dx, float *dw, float *db)
{
    check_conv(g, x, dy);
    check_range(r_lo, r_hi, dy->h);
    check_rows(dy, r_lo, r_hi);
    int64_t per_co = (int64_t)(x->c / g->groups) * g->kh * g->kw; /* weights per out channel */
    int64_t work = row_work(dy, r_lo, r_hi) * per_co;
    if (db)
        conv_bwd_bias(dy, r_lo, r_hi, db);
    if (dw) {
        check_window_rows(g, r_lo, r_hi, x);
        /* Parallel over output channels only, with n in a fixed order inside, so each weight
         * gradient element sums its terms in the same order whatever the thread count. */
#pragma omp parallel for schedule(static) if (worth_threads(work))
        for (int co = 0; co < dy->c; co++)
            for (int n = 0; n < dy->n; n++)
                for (int r = r_lo; r <= r_hi; r++)
                    conv_bwd_weight_row(g, x, dy, n, co, r, dw + co * per_co);
    }
    if (dx) {
        check_view(dx);
        LR_ASSERT(same_map(dx, x));
        check_window_rows(g, r_lo, r_hi, dx);
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
        for (int n = 0; n < dx->n; n++)
            for (int ci = 0; ci < dx->c; ci++)
                for (int r = r_lo; r <= r_hi; r++)
                    conv_bwd_input_row(g, w, dy, n, ci, r, dx);
    }
}

/* ------------------------------------------------------------------ elementwise */

void cpu_relu_fwd(const cpu_view *x, cpu_view *y, int r_lo, int r_hi)
{
    check_view(x);
    check_view(y);
    LR_ASSERT(same_map(x, y));
    check_range(r_lo, r_hi, y->h);
    check_rows(x, r_lo, r_hi);
    check_rows(y, r_lo, r_hi);
    int64_t work = row_work(y, r_lo, r_hi);
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < y->n; n++)
        for (int c = 0; c < y->c; c++)
            for (int r = r_lo; r <= r_hi; r++) {
                const float *xr = cpu_at(x, n, c, r, 0);
                float *yr = cpu_at(y, n, c, r, 0);
                /* "v < 0 ? 0 : v" lets NaN through, as torch.relu does, so divergence shows. */
                for (int i = 0; i < y->w; i++)
                    yr[i] = xr[i] < 0.0f ? 0.0f : xr[i];
            }
}

void cpu_relu_bwd(const cpu_view *y, const cpu_view *dy, int r_lo, int r_hi, cpu_view *dx)
{
    if (!dx)
        return; /* not wanted */
    check_view(y);
    check_view(dy);
    check_view(dx);
    LR_ASSERT(same_map(y, dy) && same_map(y, dx));
    check_range(r_lo, r_hi, y->h);
    check_rows(y, r_lo, r_hi);
    check_rows(dy, r_lo, r_hi);
    check_rows(dx, r_lo, r_hi);
    /* In place (dx is dy), dx held no earlier contribution: the result is dy masked. */
    bool in_place = dx->data == dy->data;
    LR_ASSERT(!in_place || dx->row0 == dy->row0);
    int64_t work = row_work(y, r_lo, r_hi);
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < y->n; n++)
        for (int c = 0; c < y->c; c++)
            for (int r = r_lo; r <= r_hi; r++) {
                const float *yr = cpu_at(y, n, c, r, 0);
                const float *dyr = cpu_at(dy, n, c, r, 0);
                float *dxr = cpu_at(dx, n, c, r, 0);
                for (int i = 0; i < y->w; i++) {
                    float g = yr[i] > 0.0f ? dyr[i] : 0.0f;
                    dxr[i] = in_place ? g : dxr[i] + g;
                }
            }
}

/* ------------------------------------------------------------------ pooling */

/* PyTorch rejects windows with more padding than half the kernel; with floor mode this also
 * means every window holds a map element, and avgpool's divisor is always kh * kw. */
static void check_pool(const cpu_window *g, const cpu_view *x, const cpu_view *y)
{
    check_window_shapes(g, x, y);
    LR_ASSERT(y->c == x->c);
    LR_ASSERT(g->ph <= g->kh / 2 && g->pw <= g->kw / 2);
}

/* The argmax of the window of output (r, o) as PyTorch scans it: the first in-map element
 * starts as the maximum and a later one replaces it only when strictly greater (or NaN), so the
 * first maximum in scan order wins and -inf padding never does. False if no tap is in the map. */
static bool max_tap(const cpu_window *g, const cpu_view *x, int n, int c, int r, int o, int *iy,
                    int *ix)
{
    bool found = false;
    float best = -INFINITY;
    for (int ky = 0; ky < g->kh; ky++) {
        int yy = r * g->sh - g->ph + ky * g->dh;
        if (yy < 0 || yy >= x->h)
            continue;
        const float *xr = cpu_at(x, n, c, yy, 0);
        for (int kx = 0; kx < g->kw; kx++) {
            int xx = o * g->sw - g->pw + kx * g->dw;
            if (xx < 0 || xx >= x->w)
                continue;
            float v = xr[xx];
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

void cpu_maxpool_fwd(const cpu_window *g, const cpu_view *x, cpu_view *y, int r_lo, int r_hi)
{
    check_pool(g, x, y);
    check_range(r_lo, r_hi, y->h);
    check_rows(y, r_lo, r_hi);
    check_window_rows(g, r_lo, r_hi, x);
    int64_t work = row_work(y, r_lo, r_hi) * g->kh * g->kw;
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < y->n; n++)
        for (int c = 0; c < y->c; c++)
            for (int r = r_lo; r <= r_hi; r++) {
                float *yr = cpu_at(y, n, c, r, 0);
                for (int o = 0; o < y->w; o++) {
                    int iy, ix;
                    yr[o] =
                        max_tap(g, x, n, c, r, o, &iy, &ix) ? *cpu_at(x, n, c, iy, ix) : -INFINITY;
                }
            }
}

void cpu_maxpool_bwd(const cpu_window *g, const cpu_view *x, const cpu_view *dy, int r_lo, int r_hi,
                     cpu_view *dx)
{
    if (!dx)
        return; /* not wanted */
    check_pool(g, x, dy);
    check_view(dx);
    LR_ASSERT(same_map(dx, x));
    check_range(r_lo, r_hi, dy->h);
    check_rows(dy, r_lo, r_hi);
    check_window_rows(g, r_lo, r_hi, x);
    check_window_rows(g, r_lo, r_hi, dx);
    int64_t work = row_work(dy, r_lo, r_hi) * g->kh * g->kw;
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < dy->n; n++)
        for (int c = 0; c < dy->c; c++)
            for (int r = r_lo; r <= r_hi; r++) {
                const float *dyr = cpu_at(dy, n, c, r, 0);
                for (int o = 0; o < dy->w; o++) {
                    int iy, ix;
                    if (max_tap(g, x, n, c, r, o, &iy, &ix))
                        *cpu_at(dx, n, c, iy, ix) += dyr[o];
                }
            }
}

static void check_avgpool(const cpu_window *g, const cpu_view *x, const cpu_view *y)
{
    check_pool(g, x, y);
    LR_ASSERT(g->dh == 1 && g->dw == 1); /* torch's AvgPool2d has no dilation */
}

void cpu_avgpool_fwd(const cpu_window *g, const cpu_view *x, cpu_view *y, int r_lo, int r_hi)
{
    check_avgpool(g, x, y);
    check_range(r_lo, r_hi, y->h);
    check_rows(y, r_lo, r_hi);
    check_window_rows(g, r_lo, r_hi, x);
    float divisor = (float)(g->kh * g->kw); /* count_include_pad=True, see check_pool */
    int64_t work = row_work(y, r_lo, r_hi) * g->kh * g->kw;
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < y->n; n++)
        for (int c = 0; c < y->c; c++)
            for (int r = r_lo; r <= r_hi; r++) {
                float *yr = cpu_at(y, n, c, r, 0);
                for (int o = 0; o < y->w; o++) {
                    float sum = 0.0f;
                    for (int ky = 0; ky < g->kh; ky++) {
                        int yy = r * g->sh - g->ph + ky;
                        if (yy < 0 || yy >= x->h)
                            continue;
                        const float *xr = cpu_at(x, n, c, yy, 0);
                        for (int kx = 0; kx < g->kw; kx++) {
                            int xx = o * g->sw - g->pw + kx;
                            if (xx >= 0 && xx < x->w)
                                sum += xr[xx];
                        }
                    }
                    yr[o] = sum / divisor;
                }
            }
}

void cpu_avgpool_bwd(const cpu_window *g, const cpu_view *dy, int r_lo, int r_hi, cpu_view *dx)
{
    if (!dx)
        return; /* not wanted */
    check_avgpool(g, dx, dy);
    check_range(r_lo, r_hi, dy->h);
    check_rows(dy, r_lo, r_hi);
    check_window_rows(g, r_lo, r_hi, dx);
    float divisor = (float)(g->kh * g->kw);
    int64_t work = row_work(dy, r_lo, r_hi) * g->kh * g->kw;
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < dy->n; n++)
        for (int c = 0; c < dy->c; c++)
            for (int r = r_lo; r <= r_hi; r++) {
                const float *dyr = cpu_at(dy, n, c, r, 0);
                for (int o = 0; o < dy->w; o++) {
                    float share = dyr[o] / divisor;
                    for (int ky = 0; ky < g->kh; ky++) {
                        int yy = r * g->sh - g->ph + ky;
                        if (yy < 0 || yy >= dx->h)
                            continue;
                        float *dxr = cpu_at(dx, n, c, yy, 0);
                        for (int kx = 0; kx < g->kw; kx++) {
                            int xx = o * g->sw - g->pw + kx;
                            if (xx >= 0 && xx < dx->w)
                                dxr[xx] += share;
                        }
                    }
                }
            }
}

/* ------------------------------------------------------------------ whole-map pooling */

static void check_full_map(const cpu_view *v)
{
    check_view(v);
    LR_ASSERT(v->row0 == 0 && v->rows == v->h);
}

/* PyTorch's adaptive bins: [floor(i * in / out), ceil((i + 1) * in / out)). */
static int bin_start(int i, int in, int out)
{
    return (int)((int64_t)i * in / out);
}

static int bin_end(int i, int in, int out)
{
    return (int)(((int64_t)(i + 1) * in + out - 1) / out);
}

static void check_adaptive(const cpu_view *x, const cpu_view *y)
{
    check_full_map(x);
    check_full_map(y);
    LR_ASSERT(y->n == x->n && y->c == x->c);
}

void cpu_adaptive_avgpool_fwd(const cpu_view *x, cpu_view *y)
{
    check_adaptive(x, y);
    int64_t work = row_work(x, 0, x->h - 1);
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < y->n; n++)
        for (int c = 0; c < y->c; c++)
            for (int i = 0; i < y->h; i++)
                for (int j = 0; j < y->w; j++) {
                    int y0 = bin_start(i, x->h, y->h), y1 = bin_end(i, x->h, y->h);
                    int x0 = bin_start(j, x->w, y->w), x1 = bin_end(j, x->w, y->w);
                    float sum = 0.0f;
                    for (int yy = y0; yy < y1; yy++)
                        for (int xx = x0; xx < x1; xx++)
                            sum += *cpu_at(x, n, c, yy, xx);
                    *cpu_at(y, n, c, i, j) = sum / (float)((y1 - y0) * (x1 - x0));
                }
}

void cpu_adaptive_avgpool_bwd(const cpu_view *dy, cpu_view *dx)
{
    if (!dx)
        return; /* not wanted */
    check_adaptive(dx, dy);
    int64_t work = row_work(dx, 0, dx->h - 1);
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < dy->n; n++)
        for (int c = 0; c < dy->c; c++)
            for (int i = 0; i < dy->h; i++)
                for (int j = 0; j < dy->w; j++) {
                    int y0 = bin_start(i, dx->h, dy->h), y1 = bin_end(i, dx->h, dy->h);
                    int x0 = bin_start(j, dx->w, dy->w), x1 = bin_end(j, dx->w, dy->w);
                    float share = *cpu_at(dy, n, c, i, j) / (float)((y1 - y0) * (x1 - x0));
                    for (int yy = y0; yy < y1; yy++)
                        for (int xx = x0; xx < x1; xx++)
                            *cpu_at(dx, n, c, yy, xx) += share;
                }
}

/* Global average pooling is the adaptive pooling with a single bin. */
void cpu_global_avgpool_fwd(const cpu_view *x, cpu_view *y)
{
    LR_ASSERT(y->h == 1 && y->w == 1);
    cpu_adaptive_avgpool_fwd(x, y);
}

void cpu_global_avgpool_bwd(const cpu_view *dy, cpu_view *dx)
{
    LR_ASSERT(dy->h == 1 && dy->w == 1);
    cpu_adaptive_avgpool_bwd(dy, dx);
}

/* ------------------------------------------------------------------ batch normalisation */

static void check_bn(const cpu_view *x, int r_lo, int r_hi)
{
    check_view(x);
    check_range(r_lo, r_hi, x->h);
    check_rows(x, r_lo, r_hi);
}

void cpu_bn_accumulate(const cpu_view *x, int r_lo, int r_hi, double *acc)
{
    check_bn(x, r_lo, r_hi);
    int64_t work = row_work(x, r_lo, r_hi);
#pragma omp parallel for schedule(static) if (worth_threads(work))
    for (int c = 0; c < x->c; c++) {
        double sum = 0.0, sq = 0.0;
        for (int n = 0; n < x->n; n++)
            for (int r = r_lo; r <= r_hi; r++) {
                const float *xr = cpu_at(x, n, c, r, 0);
                for (int i = 0; i < x->w; i++) {
                    sum += xr[i];
                    sq += (double)xr[i] * xr[i];
                }
            }
        acc[c] += sum;
        acc[x->c + c] += sq;
    }
}

void cpu_bn_finalize(const double *acc, int c, int64_t count, double eps, float *stats)
{
    LR_ASSERT(c >= 1 && count >= 1 && eps >= 0.0);
    for (int i = 0; i < c; i++) {
        double mean = acc[i] / (double)count;
        double var = acc[c + i] / (double)count - mean * mean;
        var = var > 0.0 ? var : 0.0; /* E[x^2] - E[x]^2 can round below zero */
        stats[i] = (float)mean;
        stats[c + i] = (float)(1.0 / sqrt(var + eps));
    }
}

void cpu_bn_fwd(const cpu_view *x, const float *stats, const float *gb, cpu_view *y, int r_lo,
                int r_hi)
{
    check_bn(x, r_lo, r_hi);
    check_view(y);
    LR_ASSERT(same_map(x, y));
    check_rows(y, r_lo, r_hi);
    int C = x->c;
    int64_t work = row_work(x, r_lo, r_hi);
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < x->n; n++)
        for (int c = 0; c < C; c++) {
            float mean = stats[c], scale = gb[c] * stats[C + c], beta = gb[C + c];
            for (int r = r_lo; r <= r_hi; r++) {
                const float *xr = cpu_at(x, n, c, r, 0);
                float *yr = cpu_at(y, n, c, r, 0);
                for (int i = 0; i < x->w; i++)
                    yr[i] = (xr[i] - mean) * scale + beta;
            }
        }
}

void cpu_bn_grad_accumulate(const cpu_view *x, const float *stats, const cpu_view *dy, int r_lo,
                            int r_hi, double *gacc)
{
    check_bn(x, r_lo, r_hi);
    check_view(dy);
    LR_ASSERT(same_map(x, dy));
    check_rows(dy, r_lo, r_hi);
    int C = x->c;
    int64_t work = row_work(x, r_lo, r_hi);
#pragma omp parallel for schedule(static) if (worth_threads(work))
    for (int c = 0; c < C; c++) {
        float mean = stats[c], invstd = stats[C + c];
        double sdy = 0.0, sdyx = 0.0;
        for (int n = 0; n < x->n; n++)
            for (int r = r_lo; r <= r_hi; r++) {
                const float *xr = cpu_at(x, n, c, r, 0);
                const float *dyr = cpu_at(dy, n, c, r, 0);
                for (int i = 0; i < x->w; i++) {
                    sdy += dyr[i];
                    sdyx += (double)dyr[i] * ((xr[i] - mean) * invstd);
                }
            }
        gacc[c] += sdy;
        gacc[C + c] += sdyx;
    }
}

/* dgb of channel c += (sum dy * xhat, sum dy) over the rows, summed in double per call. */
static void bn_bwd_params(const cpu_view *x, float mean, float invstd, const cpu_view *dy,
                          int r_lo, int r_hi, int c, float *dgb)
{
    double sdy = 0.0, sdyx = 0.0;
    for (int n = 0; n < x->n; n++)
        for (int r = r_lo; r <= r_hi; r++) {
            const float *xr = cpu_at(x, n, c, r, 0);
            const float *dyr = cpu_at(dy, n, c, r, 0);
            for (int i = 0; i < x->w; i++) {
                sdy += dyr[i];
                sdyx += (double)dyr[i] * ((xr[i] - mean) * invstd);
            }
        }
    dgb[c] += (float)sdyx;
    dgb[x->c + c] += (float)sdy;
}

/* dy is read only with_direct (a reduction-only call may pass NULL); dx or dgb NULL is not
 * wanted. dx gets k * t per element, k = gamma * invstd, t = dy (direct) - mean(dy) -
 * xhat * mean(dy * xhat) (reduction), where the means are gacc / count. */
void cpu_bn_bwd(const cpu_view *x, const float *stats, const float *gb, const cpu_view *dy,
                int r_lo, int r_hi, const double *gacc, int64_t count, bool with_reduction,
                bool with_direct, cpu_view *dx, float *dgb)
{
    check_bn(x, r_lo, r_hi);
    if (with_direct) {
        check_view(dy);
        LR_ASSERT(same_map(x, dy));
        check_rows(dy, r_lo, r_hi);
    }
    LR_ASSERT(!with_reduction || count >= 1);
    int C = x->c;
    int64_t work = row_work(x, r_lo, r_hi);
    if (with_direct && dgb) {
#pragma omp parallel for schedule(static) if (worth_threads(work))
        for (int c = 0; c < C; c++)
            bn_bwd_params(x, stats[c], stats[C + c], dy, r_lo, r_hi, c, dgb);
    }
    if (!dx)
        return;
    check_view(dx);
    LR_ASSERT(same_map(x, dx));
    check_rows(dx, r_lo, r_hi);
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < x->n; n++)
        for (int c = 0; c < C; c++) {
            float mean = stats[c], invstd = stats[C + c], k = gb[c] * invstd;
            float mean_dy = with_reduction ? (float)(gacc[c] / (double)count) : 0.0f;
            float mean_dyx = with_reduction ? (float)(gacc[C + c] / (double)count) : 0.0f;
            for (int r = r_lo; r <= r_hi; r++) {
                const float *xr = cpu_at(x, n, c, r, 0);
                const float *dyr = with_direct ? cpu_at(dy, n, c, r, 0) : NULL;
                float *dxr = cpu_at(dx, n, c, r, 0);
                for (int i = 0; i < x->w; i++) {
                    float t = with_direct ? dyr[i] : 0.0f;
                    if (with_reduction)
                        t -= mean_dy + (xr[i] - mean) * invstd * mean_dyx;
                    dxr[i] += k * t;
                }
            }
        }
}

static float frozen_invstd(const float *running, int C, int c, double eps)
{
    return (float)(1.0 / sqrt((double)running[C + c] + eps));
}

void cpu_bn_frozen_fwd(const cpu_view *x, const float *running, double eps, const float *gb,
                       cpu_view *y, int r_lo, int r_hi)
{
    check_bn(x, r_lo, r_hi);
    check_view(y);
    LR_ASSERT(same_map(x, y) && eps >= 0.0);
    check_rows(y, r_lo, r_hi);
    int C = x->c;
    int64_t work = row_work(x, r_lo, r_hi);
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < x->n; n++)
        for (int c = 0; c < C; c++) {
            float mean = running[c], scale = gb[c] * frozen_invstd(running, C, c, eps);
            float beta = gb[C + c];
            for (int r = r_lo; r <= r_hi; r++) {
                const float *xr = cpu_at(x, n, c, r, 0);
                float *yr = cpu_at(y, n, c, r, 0);
                for (int i = 0; i < x->w; i++)
                    yr[i] = (xr[i] - mean) * scale + beta;
            }
        }
}

void cpu_bn_frozen_bwd(const cpu_view *x, const float *running, double eps, const float *gb,
                       const cpu_view *dy, int r_lo, int r_hi, cpu_view *dx, float *dgb)
{
    check_bn(x, r_lo, r_hi);
    check_view(dy);
    LR_ASSERT(same_map(x, dy) && eps >= 0.0);
    check_rows(dy, r_lo, r_hi);
    int C = x->c;
    int64_t work = row_work(x, r_lo, r_hi);
    if (dgb) {
#pragma omp parallel for schedule(static) if (worth_threads(work))
        for (int c = 0; c < C; c++)
            bn_bwd_params(x, running[c], frozen_invstd(running, C, c, eps), dy, r_lo, r_hi, c, dgb);
    }
    if (!dx)
        return;
    check_view(dx);
    LR_ASSERT(same_map(x, dx));
    check_rows(dx, r_lo, r_hi);
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < x->n; n++)
        for (int c = 0; c < C; c++) {
            float k = gb[c] * frozen_invstd(running, C, c, eps);
            for (int r = r_lo; r <= r_hi; r++) {
                const float *dyr = cpu_at(dy, n, c, r, 0);
                float *dxr = cpu_at(dx, n, c, r, 0);
                for (int i = 0; i < x->w; i++)
                    dxr[i] += k * dyr[i];
            }
        }
}

void cpu_bn_update_running(const double *acc, int c, int64_t count, double momentum,
                           float *running)
{
    LR_ASSERT(c >= 1 && count >= 2);
    for (int i = 0; i < c; i++) {
        double mean = acc[i] / (double)count;
        double var = acc[c + i] / (double)count - mean * mean;
        double unbiased = (var > 0.0 ? var : 0.0) * (double)count / (double)(count - 1);
        running[i] = (float)((1.0 - momentum) * running[i] + momentum * mean);
        running[c + i] = (float)((1.0 - momentum) * running[c + i] + momentum * unbiased);
    }
}

/* ------------------------------------------------------------------ combining */

void cpu_add_fwd(const cpu_view *a, const cpu_view *b, cpu_view *y, int r_lo, int r_hi)
{
    check_view(a);
    check_view(b);
    check_view(y);
    LR_ASSERT(same_map(a, y) && same_map(b, y));
    check_range(r_lo, r_hi, y->h);
    check_rows(a, r_lo, r_hi);
    check_rows(b, r_lo, r_hi);
    check_rows(y, r_lo, r_hi);
    int64_t work = row_work(y, r_lo, r_hi);
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < y->n; n++)
        for (int c = 0; c < y->c; c++)
            for (int r = r_lo; r <= r_hi; r++) {
                const float *ar = cpu_at(a, n, c, r, 0), *br = cpu_at(b, n, c, r, 0);
                float *yr = cpu_at(y, n, c, r, 0);
                for (int i = 0; i < y->w; i++)
                    yr[i] = ar[i] + br[i];
            }
}

void cpu_accumulate_rows(const cpu_view *dy, int r_lo, int r_hi, cpu_view *dx)
{
    if (!dx)
        return; /* not wanted */
    cpu_copy_rows(dy, dx, r_lo, r_hi, true);
}

/* Rows [r_lo, r_hi] of a's channels [a_off, a_off + nc) into (or onto) b's [b_off, b_off + nc). */
static void move_channels(const cpu_view *a, int a_off, cpu_view *b, int b_off, int nc, int r_lo,
                          int r_hi, bool accumulate)
{
    check_view(a);
    check_view(b);
    LR_ASSERT(a->n == b->n && a->h == b->h && a->w == b->w);
    LR_ASSERT(nc >= 0 && a_off >= 0 && a_off + nc <= a->c && b_off >= 0 && b_off + nc <= b->c);
    check_range(r_lo, r_hi, a->h);
    check_rows(a, r_lo, r_hi);
    check_rows(b, r_lo, r_hi);
    int64_t work = row_work(a, r_lo, r_hi) / a->c * nc;
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < a->n; n++)
        for (int c = 0; c < nc; c++)
            for (int r = r_lo; r <= r_hi; r++) {
                const float *ar = cpu_at(a, n, a_off + c, r, 0);
                float *br = cpu_at(b, n, b_off + c, r, 0);
                for (int i = 0; i < a->w; i++)
                    br[i] = accumulate ? br[i] + ar[i] : ar[i];
            }
}

void cpu_concat_fwd(const cpu_view *x, int c_off, cpu_view *y, int r_lo, int r_hi)
{
    move_channels(x, 0, y, c_off, x->c, r_lo, r_hi, false);
}

void cpu_concat_bwd(const cpu_view *dy, int c_off, int r_lo, int r_hi, cpu_view *dx)
{
    if (!dx)
        return; /* not wanted */
    move_channels(dy, c_off, dx, 0, dx->c, r_lo, r_hi, true);
}

static void check_upsample(int scale, const cpu_view *x, const cpu_view *y, int r_lo, int r_hi)
{
    check_view(x);
    check_view(y);
    LR_ASSERT(scale >= 1);
    LR_ASSERT(y->n == x->n && y->c == x->c);
    LR_ASSERT(y->h == x->h * scale && y->w == x->w * scale);
    check_range(r_lo, r_hi, y->h);
    check_rows(y, r_lo, r_hi);
    check_rows(x, r_lo / scale, r_hi / scale);
}

void cpu_upsample_fwd(int scale, const cpu_view *x, cpu_view *y, int r_lo, int r_hi)
{
    check_upsample(scale, x, y, r_lo, r_hi);
    int64_t work = row_work(y, r_lo, r_hi);
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < y->n; n++)
        for (int c = 0; c < y->c; c++)
            for (int r = r_lo; r <= r_hi; r++) {
                const float *xr = cpu_at(x, n, c, r / scale, 0);
                float *yr = cpu_at(y, n, c, r, 0);
                for (int i = 0; i < y->w; i++)
                    yr[i] = xr[i / scale];
            }
}

void cpu_upsample_bwd(int scale, const cpu_view *dy, int r_lo, int r_hi, cpu_view *dx)
{
    if (!dx)
        return; /* not wanted */
    check_upsample(scale, dx, dy, r_lo, r_hi);
    int64_t work = row_work(dy, r_lo, r_hi);
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < dy->n; n++)
        for (int c = 0; c < dy->c; c++)
            for (int r = r_lo; r <= r_hi; r++) {
                const float *dyr = cpu_at(dy, n, c, r, 0);
                float *dxr = cpu_at(dx, n, c, r / scale, 0);
                for (int i = 0; i < dy->w; i++)
                    dxr[i / scale] += dyr[i];
            }
}

/* ------------------------------------------------------------------ dropout */

/* splitmix64's finaliser; tests/data/make_golden.py reproduces it bit for bit. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

bool cpu_dropout_keep(uint64_t seed, int64_t index, double p)
{
    double u = (double)(mix64(seed + (uint64_t)index * 0x9E3779B97F4A7C15ull) >> 11) * 0x1.0p-53;
    return u >= p;
}

/* dst = src * mask * (1 / (1 - p)) over rows, or dst += that; the mask index is the element's
 * position in the full map, so a stripe gets the bits the full map would. */
static void dropout_rows(uint64_t seed, double p, const cpu_view *src, cpu_view *dst, int r_lo,
                         int r_hi, bool accumulate)
{
    check_view(src);
    check_view(dst);
    LR_ASSERT(same_map(src, dst));
    LR_ASSERT(p >= 0.0 && p <= 1.0);
    check_range(r_lo, r_hi, src->h);
    check_rows(src, r_lo, r_hi);
    check_rows(dst, r_lo, r_hi);
    float scale = p < 1.0 ? (float)(1.0 / (1.0 - p)) : 0.0f; /* p = 1 keeps nothing */
    int64_t work = row_work(src, r_lo, r_hi);
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < src->n; n++)
        for (int c = 0; c < src->c; c++)
            for (int r = r_lo; r <= r_hi; r++) {
                const float *sr = cpu_at(src, n, c, r, 0);
                float *dr = cpu_at(dst, n, c, r, 0);
                int64_t base = (((int64_t)n * src->c + c) * src->h + r) * src->w;
                for (int i = 0; i < src->w; i++) {
                    float v = cpu_dropout_keep(seed, base + i, p) ? sr[i] * scale : 0.0f;
                    dr[i] = accumulate ? dr[i] + v : v;
                }
            }
}

void cpu_dropout_fwd(uint64_t seed, double p, const cpu_view *x, cpu_view *y, int r_lo, int r_hi)
{
    dropout_rows(seed, p, x, y, r_lo, r_hi, false);
}

void cpu_dropout_bwd(uint64_t seed, double p, const cpu_view *dy, int r_lo, int r_hi, cpu_view *dx)
{
    if (!dx)
        return; /* not wanted */
    dropout_rows(seed, p, dy, dx, r_lo, r_hi, true);
}

/* ------------------------------------------------------------------ fully connected */

void cpu_fc_fwd(const float *x, const float *w, const float *b, float *y, int n, int in, int out)
{
    LR_ASSERT(n >= 1 && in >= 1 && out >= 1);
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads((int64_t)n * in * out))
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) {
            float dot = row_dot(x + (int64_t)i * in, w + (int64_t)o * in, 1, 0, in, in);
            y[(int64_t)i * out + o] = b ? dot + b[o] : dot;
        }
}

void cpu_fc_bwd(const float *x, const float *w, const float *dy, int n, int in, int out, float *dx,
                float *dw, float *db)
{
    LR_ASSERT(n >= 1 && in >= 1 && out >= 1);
    if (dx) {
#pragma omp parallel for schedule(static) if (worth_threads((int64_t)n * in * out))
        for (int i = 0; i < n; i++)
            for (int o = 0; o < out; o++)
                row_axpy_gather(dx + (int64_t)i * in, w + (int64_t)o * in, dy[(int64_t)i * out + o],
                                1, 0, in, in);
    }
    if (dw || db) {
#pragma omp parallel for schedule(static) if (worth_threads((int64_t)n * in * out))
        for (int o = 0; o < out; o++) {
            double sum = 0.0;
            for (int i = 0; i < n; i++) {
                float g = dy[(int64_t)i * out + o];
                sum += g;
                if (dw)
                    row_axpy_gather(dw + (int64_t)o * in, x + (int64_t)i * in, g, 1, 0, in, in);
            }
            if (db)
                db[o] += (float)sum;
        }
    }
}

/* ------------------------------------------------------------------ loss */

/* The numerically stable log-sum-exp, in double: the maximum is subtracted before exp, so
 * nothing overflows. Returns log(sum exp(l - max)); *max receives the maximum. */
static double log_sum_exp(const float *l, int k, double *max)
{
    double m = l[0];
    for (int j = 1; j < k; j++)
        m = l[j] > m ? l[j] : m;
    double s = 0.0;
    for (int j = 0; j < k; j++)
        s += exp(l[j] - m);
    *max = m;
    return log(s);
}

float cpu_softmax_xent_fwd(const float *logits, const int32_t *labels, int n, int k)
{
    LR_ASSERT(n >= 1 && k >= 1);
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        const float *l = logits + (int64_t)i * k;
        LR_ASSERT(labels[i] >= 0 && labels[i] < k);
        double m, lse = log_sum_exp(l, k, &m);
        total += lse + m - l[labels[i]];
    }
    return (float)(total / n);
}

void cpu_softmax_xent_bwd(const float *logits, const int32_t *labels, int n, int k, float *dlogits)
{
    if (!dlogits)
        return; /* not wanted */
    LR_ASSERT(n >= 1 && k >= 1);
#pragma omp parallel for schedule(static) if (worth_threads((int64_t)n * k))
    for (int i = 0; i < n; i++) {
        const float *l = logits + (int64_t)i * k;
        float *d = dlogits + (int64_t)i * k;
        LR_ASSERT(labels[i] >= 0 && labels[i] < k);
        double m, lse = log_sum_exp(l, k, &m);
        for (int j = 0; j < k; j++) {
            double p = exp(l[j] - m - lse);
            d[j] += (float)((p - (j == labels[i] ? 1.0 : 0.0)) / n);
        }
    }
}

/* ------------------------------------------------------------------ optimisers */

void cpu_sgd_update(float *w, float *g, int64_t n, float lr, float weight_decay)
{
#pragma omp parallel for schedule(static) if (worth_threads(n))
    for (int64_t i = 0; i < n; i++) {
        w[i] -= lr * (g[i] + weight_decay * w[i]);
        g[i] = 0.0f;
    }
}

/* torch.optim.SGD, dampening 0, not Nesterov. torch starts the buffer as a copy of the first
 * gradient; a zeroed buffer gives the same: momentum * 0 + d = d. */
void cpu_momentum_update(float *w, float *g, float *state, int64_t n, float lr, float momentum,
                         float weight_decay)
{
#pragma omp parallel for schedule(static) if (worth_threads(n))
    for (int64_t i = 0; i < n; i++) {
        float d = g[i] + weight_decay * w[i];
        state[i] = momentum * state[i] + d;
        w[i] -= lr * state[i];
        g[i] = 0.0f;
    }
}

/* torch.optim.Adam (L2 weight decay added to the gradient, not AdamW), arranged as torch's
 * single-tensor code does: w -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps), where bc1 and bc2
 * are the bias corrections, in double. Equals lr * mhat / (sqrt(vhat) + eps). */
void cpu_adam_update(float *w, float *g, float *state, int64_t n, float lr, float beta1,
                     float beta2, float eps, float weight_decay, int step)
{
    LR_ASSERT(step >= 1);
    float *m = state, *v = state + n;
    double bc1 = 1.0 - pow(beta1, step), bc2 = 1.0 - pow(beta2, step);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
#pragma omp parallel for schedule(static) if (worth_threads(n))
    for (int64_t i = 0; i < n; i++) {
        float d = g[i] + weight_decay * w[i];
        m[i] = beta1 * m[i] + (1.0f - beta1) * d;
        v[i] = beta2 * v[i] + (1.0f - beta2) * d * d;
        w[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
        g[i] = 0.0f;
    }
}

/* ------------------------------------------------------------------ copies */

void cpu_copy_rows(const cpu_view *src, cpu_view *dst, int r_lo, int r_hi, bool accumulate)
{
    check_view(src);
    check_view(dst);
    LR_ASSERT(same_map(src, dst));
    move_channels(src, 0, dst, 0, src->c, r_lo, r_hi, accumulate);
}
