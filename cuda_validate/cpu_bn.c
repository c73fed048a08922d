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
