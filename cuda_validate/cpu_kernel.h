/* cpu_kernel.h - what the CPU kernel files (cpu_conv.c, cpu_pool.c, cpu_bn.c, cpu_eltwise.c,
 * cpu_combine.c, cpu_fc.c, cpu_loss.c, cpu_optim.c) share: when a kernel is worth threads, the
 * checks of views, row ranges and window geometry, and the row primitives the convolution and
 * the fully connected layer are built from. Internal to those files; cpu_ops.h is the interface.
 *
 * Legend: N batch, C channels, H/W full height/width of a map, R rows held by a view,
 * OH/OW output height/width of a window op.
 * Deliberately not here: any kernel, any allocation.
 */
#ifndef LR_CPU_KERNEL_H
#define LR_CPU_KERNEL_H

#include <limits.h>

#include "cpu_ops.h"
#include "status.h"

/* ------------------------------------------------------------------ threads */

/* A parallel region costs microseconds (far more on a loaded machine, where a descheduled
 * thread stalls the barrier); kernels with fewer inner-loop operations than this run on the
 * calling thread. Either way the bits are the same: work is split by output element. */
enum { PARALLEL_MIN_WORK = 1 << 15 };

static inline bool worth_threads(int64_t work)
{
    return work >= PARALLEL_MIN_WORK;
}

/* Elements in rows [r_lo, r_hi] of every (n, c) plane of v's map. */
static inline int64_t row_work(const cpu_view *v, int r_lo, int r_hi)
{
    return (int64_t)v->n * v->c * (r_hi - r_lo + 1) * v->w;
}

/* ------------------------------------------------------------------ views and geometry */

static inline void check_view(const cpu_view *v)
{
    LR_ASSERT(v != NULL && v->data != NULL);
    LR_ASSERT(v->n >= 1 && v->c >= 1 && v->h >= 1 && v->w >= 1);
    LR_ASSERT(v->row0 >= 0 && v->rows >= 0 && v->row0 + v->rows <= v->h);
}

static inline bool same_map(const cpu_view *a, const cpu_view *b)
{
    return a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w;
}

/* Rows [lo, hi] of the full map must be held by v; an empty range (lo > hi) always is. */
static inline void check_rows(const cpu_view *v, int lo, int hi)
{
    if (lo > hi)
        return;
    LR_ASSERT(lo >= 0 && hi < v->h);
    LR_ASSERT(lo >= v->row0 && hi < v->row0 + v->rows);
}

/* Output rows [r_lo, r_hi] inside [0, h); r_hi = r_lo - 1 is the empty range (a no-op call). */
static inline void check_range(int r_lo, int r_hi, int h)
{
    LR_ASSERT(r_lo >= 0 && r_hi < h && r_lo <= r_hi + 1);
}

static inline void check_window(const cpu_window *g)
{
    LR_ASSERT(g != NULL);
    LR_ASSERT(g->kh >= 1 && g->kw >= 1 && g->sh >= 1 && g->sw >= 1);
    LR_ASSERT(g->ph >= 0 && g->pw >= 0 && g->dh >= 1 && g->dw >= 1);
}

/* Output extent of a window op along one axis, floor mode (PyTorch's formula). */
static inline int window_out(int in, int k, int s, int p, int d)
{
    int span = in + 2 * p - d * (k - 1) - 1;
    LR_ASSERT(span >= 0);
    return span / s + 1;
}

static inline void check_window_shapes(const cpu_window *g, const cpu_view *x, const cpu_view *y)
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
static inline void check_window_rows(const cpu_window *g, int r_lo, int r_hi, const cpu_view *v)
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
static inline void tap_columns(int ow, int w, int s, int off, int *lo, int *hi)
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
static inline void row_axpy_gather(float *restrict y, const float *restrict x, float a, int s, int off,
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
static inline void row_axpy_scatter(float *restrict x, const float *restrict y, float a, int s, int off,
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
static inline float row_dot(const float *restrict y, const float *restrict x, int s, int off, int ow,
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

#endif
