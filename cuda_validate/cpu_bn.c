/* cpu_bn.c - batch normalisation split into statistics, finalisation, normalisation, gradient
 * reductions and backward, so that the caller chooses the rows statistics are gathered over
 * (see cpu_ops.h for the conventions).
 *
 * Legend: N batch, C channels, H/W full height/width of a map, R rows held by a view,
 * OH/OW output height/width of a window op.
 *
 * Deliberately not here: the choice of statistics rows (cpu_backend.c reads it from the step).
 */
#include "cpu_kernel.h"

#include <math.h>

/* ------------------------------------------------------------------ batch normalisation */

static void check_bn(const cpu_view *x, int r_lo, int r_hi)
{
    check_view(x);
    check_range(r_lo, r_hi, x->h);
    check_rows(x, r_lo, r_hi);
}

/* Sums in double over a contiguous span: eight lanes (so the loop vectorises without
 * reassociation) combined in a fixed order after the remainder, so the bits depend on the data
 * and the span's length only. */
enum { LANES = 8 };

/* *sum += sum of p, *sq += sum of p^2. */
static inline __attribute__((always_inline)) void span_sums(const float *p, int64_t len,
                                                            double *sum, double *sq)
{
    double s[LANES] = {0}, q[LANES] = {0}, ts = 0.0, tq = 0.0;
    int64_t i = 0;
    for (; i + LANES <= len; i += LANES) {
#pragma omp simd
        for (int j = 0; j < LANES; j++) {
            double v = p[i + j];
            s[j] += v;
            q[j] += v * v;
        }
    }
    for (; i < len; i++) {
        double v = p[i];
        ts += v;
        tq += v * v;
    }
    for (int j = 0; j < LANES; j++) {
        ts += s[j];
        tq += q[j];
    }
    *sum += ts;
    *sq += tq;
}

/* *sdy += sum of dy, *sdyx += sum of dy * xhat with xhat = (x - mean) * invstd in float. */
static inline __attribute__((always_inline)) void span_grad_sums(const float *x, const float *dy,
                                                                 int64_t len, float mean,
                                                                 float invstd, double *sdy,
                                                                 double *sdyx)
{
    double s[LANES] = {0}, q[LANES] = {0}, ts = 0.0, tq = 0.0;
    int64_t i = 0;
    for (; i + LANES <= len; i += LANES) {
#pragma omp simd
        for (int j = 0; j < LANES; j++) {
            s[j] += dy[i + j];
            q[j] += (double)dy[i + j] * ((x[i + j] - mean) * invstd);
        }
    }
    for (; i < len; i++) {
        ts += dy[i];
        tq += (double)dy[i] * ((x[i] - mean) * invstd);
    }
    for (int j = 0; j < LANES; j++) {
        ts += s[j];
        tq += q[j];
    }
    *sdy += ts;
    *sdyx += tq;
}

/* The gradient sums of channel c over rows [r_lo, r_hi] of every image, in image order. The
 * per-channel and per-plane loops of this file are compiled for AVX2 too (LR_CLONES): the same
 * operations in the same order, the same bits. */
LR_CLONES
static void channel_grad_sums(const cpu_view *x, float mean, float invstd, const cpu_view *dy,
                              int r_lo, int r_hi, int c, double *sdy, double *sdyx)
{
    int64_t span = plane_span(r_lo, r_hi, x->w);
    *sdy = *sdyx = 0.0;
    for (int n = 0; n < x->n; n++)
        span_grad_sums(cpu_at(x, n, c, r_lo, 0), cpu_at(dy, n, c, r_lo, 0), span, mean, invstd,
                       sdy, sdyx);
}

/* The sums of channel c over `span` floats from row r_lo of every image, in image order. */
LR_CLONES
static void channel_sums(const cpu_view *x, int c, int r_lo, int64_t span, double *sum, double *sq)
{
    for (int n = 0; n < x->n; n++)
        span_sums(cpu_at(x, n, c, r_lo, 0), span, sum, sq);
}

/* y = (x - mean) * scale + beta over a span. */
LR_CLONES
static void affine_span(const float *xp, float *yp, int64_t span, float mean, float scale,
                        float beta)
{
#pragma omp simd
    for (int64_t i = 0; i < span; i++)
        yp[i] = (xp[i] - mean) * scale + beta;
}

void cpu_bn_accumulate(const cpu_view *x, int r_lo, int r_hi, double *acc)
{
    check_bn(x, r_lo, r_hi);
    int64_t work = row_work(x, r_lo, r_hi), span = plane_span(r_lo, r_hi, x->w);
#pragma omp parallel for schedule(static) if (worth_threads(work))
    for (int c = 0; c < x->c; c++) {
        double sum = 0.0, sq = 0.0;
        channel_sums(x, c, r_lo, span, &sum, &sq);
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
    int64_t span = plane_span(r_lo, r_hi, x->w);
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < x->n; n++)
        for (int c = 0; c < C; c++) {
            float mean = stats[c], scale = gb[c] * stats[C + c], beta = gb[C + c];
            affine_span(cpu_at(x, n, c, r_lo, 0), cpu_at(y, n, c, r_lo, 0), span, mean, scale,
                        beta);
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
        double sdy, sdyx;
        channel_grad_sums(x, stats[c], stats[C + c], dy, r_lo, r_hi, c, &sdy, &sdyx);
        gacc[c] += sdy;
        gacc[C + c] += sdyx;
    }
}

void cpu_bn_params_from_sums(const double *gacc, int c, float *dgb)
{
    for (int i = 0; i < c; i++) {
        dgb[i] += (float)gacc[c + i];
        dgb[c + i] += (float)gacc[i];
    }
}

/* dgb of channel c += (sum dy * xhat, sum dy) over the rows, summed in double per call. */
static void bn_bwd_params(const cpu_view *x, float mean, float invstd, const cpu_view *dy,
                          int r_lo, int r_hi, int c, float *dgb)
{
    double sdy, sdyx;
    channel_grad_sums(x, mean, invstd, dy, r_lo, r_hi, c, &sdy, &sdyx);
    dgb[c] += (float)sdyx;
    dgb[x->c + c] += (float)sdy;
}

/* One plane's span of cpu_bn_bwd's dx. */
typedef struct {
    const float *x, *dy;
    float *dx;
    int64_t span;
    float mean, invstd, k, mean_dy, mean_dyx;
} bn_dx_span;

/* dx += k * t over the span. Inlined with constant flags, so each case is a loop without
 * branches, which vectorises (with the flags tested inside, GCC kept it scalar). */
static inline __attribute__((always_inline)) void bn_dx_add(const bn_dx_span *d, bool direct,
                                                            bool reduction)
{
    const float *xp = d->x, *dyp = d->dy;
    float *dxp = d->dx;
    float mean = d->mean, invstd = d->invstd, k = d->k, mean_dy = d->mean_dy;
    float mean_dyx = d->mean_dyx;
#pragma omp simd
    for (int64_t i = 0; i < d->span; i++) {
        float t = direct ? dyp[i] : 0.0f;
        if (reduction)
            t -= mean_dy + (xp[i] - mean) * invstd * mean_dyx;
        dxp[i] += k * t;
    }
}

/* One plane's dx, with the loop of its case. */
LR_CLONES
static void bn_dx_plane(const bn_dx_span *d, bool direct, bool reduction)
{
    if (direct && reduction)
        bn_dx_add(d, true, true);
    else if (direct)
        bn_dx_add(d, true, false);
    else if (reduction)
        bn_dx_add(d, false, true);
    else
        bn_dx_add(d, false, false);
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
        /* dgb of channel c += (sum dy * xhat, sum dy) over the rows, summed in double per call */
#pragma omp parallel for schedule(static) if (worth_threads(work))
        for (int c = 0; c < C; c++)
            bn_bwd_params(x, stats[c], stats[C + c], dy, r_lo, r_hi, c, dgb);
    }
    if (!dx)
        return;
    check_view(dx);
    LR_ASSERT(same_map(x, dx));
    check_rows(dx, r_lo, r_hi);
    int64_t span = plane_span(r_lo, r_hi, x->w);
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < x->n; n++)
        for (int c = 0; c < C; c++) {
            float mean = stats[c], invstd = stats[C + c], k = gb[c] * invstd;
            float mean_dy = with_reduction ? (float)(gacc[c] / (double)count) : 0.0f;
            float mean_dyx = with_reduction ? (float)(gacc[C + c] / (double)count) : 0.0f;
            const float *xp = cpu_at(x, n, c, r_lo, 0);
            const float *dyp = with_direct ? cpu_at(dy, n, c, r_lo, 0) : xp; /* read if direct */
            float *dxp = cpu_at(dx, n, c, r_lo, 0);
            bn_dx_span d = {xp, dyp, dxp, span, mean, invstd, k, mean_dy, mean_dyx};
            bn_dx_plane(&d, with_direct, with_reduction);
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
    int64_t work = row_work(x, r_lo, r_hi), span = plane_span(r_lo, r_hi, x->w);
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < x->n; n++)
        for (int c = 0; c < C; c++) {
            float mean = running[c], scale = gb[c] * frozen_invstd(running, C, c, eps);
            float beta = gb[C + c];
            affine_span(cpu_at(x, n, c, r_lo, 0), cpu_at(y, n, c, r_lo, 0), span, mean, scale,
                        beta);
        }
}

/* dx += k * dy over a span. */
LR_CLONES
static void scaled_add_span(float *dxp, const float *dyp, int64_t span, float k)
{
#pragma omp simd
    for (int64_t i = 0; i < span; i++)
        dxp[i] += k * dyp[i];
}

void cpu_bn_frozen_bwd(const cpu_view *x, const float *running, double eps, const float *gb,
                       const cpu_view *dy, int r_lo, int r_hi, cpu_view *dx, float *dgb)
{
    check_bn(x, r_lo, r_hi);
    check_view(dy);
    LR_ASSERT(same_map(x, dy) && eps >= 0.0);
    check_rows(dy, r_lo, r_hi);
    int C = x->c;
    int64_t work = row_work(x, r_lo, r_hi), span = plane_span(r_lo, r_hi, x->w);
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
            scaled_add_span(cpu_at(dx, n, c, r_lo, 0), cpu_at(dy, n, c, r_lo, 0), span, k);
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
