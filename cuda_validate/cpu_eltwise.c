/* cpu_eltwise.c - the elementwise ops on row ranges: relu, and dropout with its mask a pure
 * function of the element's position in the full map (see cpu_ops.h for the conventions).
 *
 * Legend: N batch, C channels, H/W full height/width of a map, R rows held by a view,
 * OH/OW output height/width of a window op.
 *
 * Deliberately not here: memory allocation, scheduling.
 */
#include "cpu_kernel.h"

/* ------------------------------------------------------------------ elementwise */

/* The loops over one plane's span, compiled for AVX2 too (LR_CLONES: the same operations, the
 * same bits). "v < 0 ? 0 : v" lets NaN through, as torch.relu does, so divergence shows. */
LR_CLONES
static void relu_span(const float *xp, float *yp, int64_t span)
{
#pragma omp simd
    for (int64_t i = 0; i < span; i++)
        yp[i] = xp[i] < 0.0f ? 0.0f : xp[i];
}

/* dx = dy masked (in place: dx is dy and held no earlier contribution), else dx += it; both
 * operands loaded unconditionally, so the select vectorises. */
LR_CLONES
static void relu_bwd_span(const float *yp, const float *dyp, float *dxp, int64_t span,
                          bool in_place)
{
    if (in_place) {
#pragma omp simd
        for (int64_t i = 0; i < span; i++) {
            float g = dyp[i];
            dxp[i] = yp[i] > 0.0f ? g : 0.0f;
        }
    } else {
#pragma omp simd
        for (int64_t i = 0; i < span; i++) {
            float g = dyp[i];
            dxp[i] += yp[i] > 0.0f ? g : 0.0f;
        }
    }
}

void cpu_relu_fwd(const cpu_view *x, cpu_view *y, int r_lo, int r_hi)
{
    check_view(x);
    check_view(y);
    LR_ASSERT(same_map(x, y));
    check_range(r_lo, r_hi, y->h);
    check_rows(x, r_lo, r_hi);
    check_rows(y, r_lo, r_hi);
    int64_t work = row_work(y, r_lo, r_hi), span = plane_span(r_lo, r_hi, y->w);
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < y->n; n++)
        for (int c = 0; c < y->c; c++)
            relu_span(cpu_at(x, n, c, r_lo, 0), cpu_at(y, n, c, r_lo, 0), span);
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
    int64_t work = row_work(y, r_lo, r_hi), span = plane_span(r_lo, r_hi, y->w);
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < y->n; n++)
        for (int c = 0; c < y->c; c++)
            relu_bwd_span(cpu_at(y, n, c, r_lo, 0), cpu_at(dy, n, c, r_lo, 0),
                          cpu_at(dx, n, c, r_lo, 0), span, in_place);
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
    int64_t work = row_work(src, r_lo, r_hi), span = plane_span(r_lo, r_hi, src->w);
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < src->n; n++)
        for (int c = 0; c < src->c; c++) {
            const float *sp = cpu_at(src, n, c, r_lo, 0);
            float *dp = cpu_at(dst, n, c, r_lo, 0);
            int64_t base = (((int64_t)n * src->c + c) * src->h + r_lo) * src->w;
#pragma omp simd
            for (int64_t i = 0; i < span; i++) {
                float v = cpu_dropout_keep(seed, base + i, p) ? sp[i] * scale : 0.0f;
                dp[i] = accumulate ? dp[i] + v : v;
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
