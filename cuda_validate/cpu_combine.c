/* cpu_combine.c - ops that combine or move maps on row ranges: add, concat, nearest upsampling,
 * and the row copies between views of one map that COPY steps and gradient sums use (see
 * cpu_ops.h for the conventions).
 *
 * Legend: N batch, C channels, H/W full height/width of a map, R rows held by a view,
 * OH/OW output height/width of a window op.
 *
 * Deliberately not here: memory allocation, scheduling.
 */
#include "cpu_kernel.h"

#include <string.h>

/* ------------------------------------------------------------------ combining */

/* y = a + b over a span, and y += a: the per-plane loops, compiled for AVX2 too (LR_CLONES: the
 * same operations, the same bits). */
LR_CLONES
static void add_span(const float *ap, const float *bp, float *yp, int64_t span)
{
#pragma omp simd
    for (int64_t i = 0; i < span; i++)
        yp[i] = ap[i] + bp[i];
}

LR_CLONES
static void accumulate_span(const float *ap, float *yp, int64_t span)
{
#pragma omp simd
    for (int64_t i = 0; i < span; i++)
        yp[i] += ap[i];
}

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
    int64_t work = row_work(y, r_lo, r_hi), span = plane_span(r_lo, r_hi, y->w);
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < y->n; n++)
        for (int c = 0; c < y->c; c++)
            add_span(cpu_at(a, n, c, r_lo, 0), cpu_at(b, n, c, r_lo, 0), cpu_at(y, n, c, r_lo, 0),
                     span);
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
    int64_t work = row_work(a, r_lo, r_hi) / a->c * nc, span = plane_span(r_lo, r_hi, a->w);
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < a->n; n++)
        for (int c = 0; c < nc; c++) {
            const float *ap = cpu_at(a, n, a_off + c, r_lo, 0);
            float *bp = cpu_at(b, n, b_off + c, r_lo, 0);
            if (accumulate) {
                accumulate_span(ap, bp, span);
            } else if (span > 0) {
                memcpy(bp, ap, sizeof(float) * (size_t)span);
            }
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

/* One row: yr[j * scale + k] = xr[j] (no division per element; scale 2 has a loop of its own,
 * which vectorises). */
static inline __attribute__((always_inline)) void upsample_row(int scale, const float *xr, int w,
                                                               float *yr)
{
    if (scale == 2) {
#pragma omp simd
        for (int j = 0; j < w; j++) {
            yr[2 * j] = xr[j];
            yr[2 * j + 1] = xr[j];
        }
        return;
    }
    for (int j = 0; j < w; j++)
        for (int k = 0; k < scale; k++)
            yr[j * scale + k] = xr[j];
}

/* dxr[j] += dyr[j * scale + k] for k in order: the same additions as a scan of dyr's columns. */
static inline __attribute__((always_inline)) void upsample_row_bwd(int scale, const float *dyr,
                                                                   int w, float *dxr)
{
    if (scale == 2) {
#pragma omp simd
        for (int j = 0; j < w; j++)
            dxr[j] = (dxr[j] + dyr[2 * j]) + dyr[2 * j + 1];
        return;
    }
    for (int j = 0; j < w; j++) {
        float v = dxr[j];
        for (int k = 0; k < scale; k++)
            v += dyr[j * scale + k];
        dxr[j] = v;
    }
}

/* Rows [r_lo, r_hi] of plane (n, c) of y, one call through the clones' dispatch a plane (a row
 * of a 14-column map is a few dozen stores). */
LR_CLONES
static void upsample_plane(int scale, const cpu_view *x, cpu_view *y, int n, int c, int r_lo,
                           int r_hi)
{
    for (int r = r_lo; r <= r_hi; r++)
        upsample_row(scale, cpu_at(x, n, c, r / scale, 0), x->w, cpu_at(y, n, c, r, 0));
}

/* dx of plane (n, c) += dy's rows [r_lo, r_hi], one call a plane. */
LR_CLONES
static void upsample_plane_bwd(int scale, const cpu_view *dy, cpu_view *dx, int n, int c,
                               int r_lo, int r_hi)
{
    for (int r = r_lo; r <= r_hi; r++)
        upsample_row_bwd(scale, cpu_at(dy, n, c, r, 0), dx->w, cpu_at(dx, n, c, r / scale, 0));
}

void cpu_upsample_fwd(int scale, const cpu_view *x, cpu_view *y, int r_lo, int r_hi)
{
    check_upsample(scale, x, y, r_lo, r_hi);
    int64_t work = row_work(y, r_lo, r_hi);
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < y->n; n++)
        for (int c = 0; c < y->c; c++)
            upsample_plane(scale, x, y, n, c, r_lo, r_hi);
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
            upsample_plane_bwd(scale, dy, dx, n, c, r_lo, r_hi);
}

/* ------------------------------------------------------------------ copies */

void cpu_copy_rows(const cpu_view *src, cpu_view *dst, int r_lo, int r_hi, bool accumulate)
{
    check_view(src);
    check_view(dst);
    LR_ASSERT(same_map(src, dst));
    move_channels(src, 0, dst, 0, src->c, r_lo, r_hi, accumulate);
}
