/* cpu_kernel.h - what the CPU kernel files (cpu_conv.c, cpu_conv_direct.c, cpu_pool.c, cpu_bn.c,
 * cpu_eltwise.c, cpu_combine.c, cpu_fc.c, cpu_loss.c, cpu_optim.c) share: when a kernel is worth
 * threads, the checks of views, row ranges and window geometry, and the GEMM the convolution and
 * the fully connected layer are built on (cpu_blas.c). Internal to those files; cpu_ops.h is the
 * interface.
 *
 * Legend: N batch, C channels, H/W full height/width of a map, R rows held by a view,
 * OH/OW output height/width of a window op.
 * Deliberately not here: any kernel, any allocation.
 */
#ifndef LR_CPU_KERNEL_H
#define LR_CPU_KERNEL_H

#include <limits.h>
#include <string.h>

#include "cpu_ops.h"
#include "status.h"

/* ------------------------------------------------------------------ threads */

/* A parallel region whose threads sleep between regions costs 55-100 us on the 2-core VM (a
 * wake of an idle vCPU), one whose threads spin about 1 us, and far more on a loaded machine,
 * where a descheduled thread stalls the barrier; row schedules make many small calls. Loops over
 * fewer elements than PARALLEL_MIN_WORK (tens of microseconds of memory traffic), and GEMM work
 * of fewer multiply-adds than PARALLEL_MIN_MACS, run on the calling thread; both are
 * SPINNING_SHIFT powers of two lower when the threads spin (cpu_set_spinning, which
 * lrcnn-validate calls when it chose spinning: waiting.h). tiny-vgg 2ps at 28x28, batch 32,
 * 2 threads spinning 3000 times, 3-7 runs each: 1.23-1.36x column's step with these thresholds,
 * 1.24-1.41x with them 32x lower (SPINNING_SHIFT 5; median 1.28x of 7), 1.22-1.31x 8x lower,
 * 1.24-1.31x 256x lower, 1.22-1.36x 4096x lower; threads sleeping: 1.41-1.45x with them as they
 * are, 1.66-1.70x 8x lower. tiny-mix overl-h: 2.22-2.48x at 32x to 4096x lower, 2.58-2.77x at 8x,
 * 2.39-3.12x as they are. Either way the bits are the same: work is split by output element or
 * into units of fixed shape. */
enum { PARALLEL_MIN_WORK = 1 << 17, PARALLEL_MIN_MACS = 1 << 21, SPINNING_SHIFT = 5 };

extern int cpu_parallel_shift; /* 0, or SPINNING_SHIFT when the threads spin */

static inline bool worth_threads(int64_t work)
{
    return work >= (PARALLEL_MIN_WORK >> cpu_parallel_shift);
}

static inline bool worth_threads_macs(int64_t macs)
{
    return macs >= (PARALLEL_MIN_MACS >> cpu_parallel_shift);
}

/* Elements in rows [r_lo, r_hi] of every (n, c) plane of v's map. */
static inline int64_t row_work(const cpu_view *v, int r_lo, int r_hi)
{
    return (int64_t)v->n * v->c * (r_hi - r_lo + 1) * v->w;
}

/* Floats of rows [r_lo, r_hi] of one (n, c) plane: contiguous in every view that holds them,
 * so elementwise kernels run one vectorised loop per plane. */
static inline int64_t plane_span(int r_lo, int r_hi, int w)
{
    return (int64_t)(r_hi - r_lo + 1) * w;
}

/* The sum of p[0, len) in double: eight lanes (so the loop vectorises without reassociation)
 * combined in a fixed order after the remainder; the bits depend on the data and len only. */
static inline double span_sum(const float *p, int64_t len)
{
    double lane[8] = {0}, sum = 0.0;
    int64_t i = 0;
    for (; i + 8 <= len; i += 8) {
#pragma omp simd
        for (int j = 0; j < 8; j++)
            lane[j] += p[i + j];
    }
    for (; i < len; i++)
        sum += p[i];
    for (int j = 0; j < 8; j++)
        sum += lane[j];
    return sum;
}

/* Hot copy and compare loops are compiled twice, for x86-64-v3 (AVX2) and for the baseline, and
 * the loader picks the one the CPU runs (GCC on x86-64; elsewhere one build). Both give the same
 * bits: the same operations in the same order, and ISO C mode keeps GCC from fusing a multiply
 * and an add. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define LR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define LR_CLONES
#endif

/* Eight floats at a time in GCC generic vectors (the AVX2 clone makes them single instructions,
 * the baseline pairs of SSE ones; the same operations either way): the strided paths of max
 * pooling and of convolution whose scalar loops GCC left scalar. */
typedef float cpu_v8 __attribute__((vector_size(8 * sizeof(float))));
typedef int32_t cpu_m8 __attribute__((vector_size(8 * sizeof(int32_t))));

/* The helpers pass vectors by value: GCC and clang warn that the baseline clone (or build) passes
 * them differently from an AVX build. They are static and inlined, so no call crosses that line. */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpsabi"
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
#define CPU_INLINE static inline __attribute__((always_inline))

/* The vector of a's and b's elements (0-7 a's, 8-15 b's) at eight constant indices: GCC's
 * __builtin_shuffle, which clang (the fuzzing build) spells __builtin_shufflevector. */
#if defined(__clang__)
#define V8_SHUFFLE(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define V8_SHUFFLE(a, b, ...) __builtin_shuffle(a, b, (cpu_m8){__VA_ARGS__})
#endif

CPU_INLINE cpu_v8 v8_load(const float *p)
{
    cpu_v8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

CPU_INLINE void v8_store(float *p, cpu_v8 v)
{
    memcpy(p, &v, sizeof v);
}

/* p[0..16) apart into its even and odd elements */
CPU_INLINE void v8_split(const float *p, cpu_v8 *even, cpu_v8 *odd)
{
    cpu_v8 lo = v8_load(p), hi = v8_load(p + 8);
    *even = V8_SHUFFLE(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14);
    *odd = V8_SHUFFLE(lo, hi, 1, 3, 5, 7, 9, 11, 13, 15);
}

CPU_INLINE void v8_merge(float *p, cpu_v8 even, cpu_v8 odd)
{
    v8_store(p, V8_SHUFFLE(even, odd, 0, 8, 1, 9, 2, 10, 3, 11));
    v8_store(p + 8, V8_SHUFFLE(even, odd, 4, 12, 5, 13, 6, 14, 7, 15));
}

CPU_INLINE cpu_v8 v8_select(cpu_m8 m, cpu_v8 a, cpu_v8 b)
{
    return (cpu_v8)((m & (cpu_m8)a) | (~m & (cpu_m8)b));
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

/* ------------------------------------------------------------------ GEMM (cpu_blas.c) */

/* C (m, n) = A (m, k) x B (k, n), or C += that with accumulate; row-major, op(A) = A^T with
 * trans_a (A stored (k, m)), likewise B. Runs on the calling thread only: the kernels split the
 * work into units of fixed shape themselves (cpu_blas.c says why). */
void cpu_gemm(bool trans_a, bool trans_b, int m, int n, int k, const float *a, int64_t lda,
              const float *b, int64_t ldb, bool accumulate, float *c, int64_t ldc);

#endif
