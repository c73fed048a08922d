/* cpu_pool.c - max and average pooling on row ranges, and the adaptive and global average
 * pooling on stripes of input rows added into the whole output (see cpu_ops.h for the
 * conventions).
 *
 * Legend: N batch, C channels, H/W full height/width of a map, R rows held by a view,
 * OH/OW output height/width of a window op.
 *
 * Deliberately not here: memory allocation, scheduling.
 */
#include "cpu_kernel.h"

#include <math.h>
#include <string.h>

/* max_plane_sep copies and fills rows of a few dozen floats; GCC would turn those loops into
 * memcpy/memset calls, which cost more than the copies at that length (as in cpu_conv.c). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-tree-loop-distribute-patterns")
#endif

/* ------------------------------------------------------------------ pooling */

/* PyTorch rejects windows with more padding than half the kernel; with floor mode this also
 * means every window holds a map element, and avgpool's divisor is always kh * kw. */
static void check_pool(const cpu_window *g, const cpu_view *x, const cpu_view *y)
{
    check_window_shapes(g, x, y);
    LR_ASSERT(y->c == x->c);
    LR_ASSERT(g->ph <= g->kh / 2 && g->pw <= g->kw / 2);
}

/* The 2x2 window of stride 2 without padding or dilation (VGG's and the tiny nets' pooling), which
 * average and max pooling run on paths of their own: four taps, windows apart. */
static bool window_2x2_s2(const cpu_window *g)
{
    return g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->ph == 0 && g->pw == 0 &&
           g->dh == 1 && g->dw == 1;
}

/* Output columns processed together: the per-column state of a row scan lives on the stack. */
enum { POOL_CHUNK = 256 };
/* A max-pooling tap (a strided load, a compare and a select, positions too in backward) weighs
 * as several elements of PARALLEL_MIN_WORK: with it, a stripe's pooling of a few rows (tiny-vgg
 * at 28x28, batch 32) runs on both threads and 2ps's pooling takes 2.1 ms a step instead of 2.5
 * (weights of 4 and 16 measured the same). */
enum { MAX_TAP_COST = 4 };

/* max_take's test on eight lanes: v replaces b when strictly greater or NaN */
CPU_INLINE cpu_m8 v8_takes(cpu_v8 b, cpu_v8 v)
{
    return (v > b) | (v != v);
}

/* The maxima of output row r, columns [o0, o0 + len), as PyTorch scans each window: taps in
 * (ky, kx) order, the first in-map element starts as the maximum and a later one replaces it
 * only when strictly greater or NaN, so the first maximum wins, the last NaN wins and -inf
 * padding never does. Taps run in the outer loops and columns in the inner one, which
 * vectorises (32-bit state only). best receives the maxima (-inf where no tap is in the map);
 * at, when not NULL, where each came from (iy * W + ix, -1 for none). Without positions,
 * starting from -inf gives the same values with no per-column flag. */
/* One tap of max_row: src[o * s] for columns [lo, hi] (src may point before the row: only
 * those columns are read). */
static inline __attribute__((always_inline)) void max_tap(const float *src, int s, int lo,
                                                          int hi, int32_t base, float *best,
                                                          int32_t *found, int32_t *at,
                                                          const float *end)
{
    if (!at) {
#pragma omp simd
        for (int o = lo; o <= hi; o++) {
            float v = src[o * s], b = best[o];
            best[o] = v > b || v != v ? v : b;
        }
        return;
    }
    /* with positions: eight columns at a time. GCC kept the loop of ?: above scalar for short
     * rows, with a branch per column: one thread, --profile, three alternating runs, the
     * backward of tiny-mix's 3x3 pooling (7 outputs a row) took 0.60-0.62 ms a column step
     * before and 0.42 after, resnet18's at 64x64 (16 a row) 7.75 ms and 4.5-4.7. The lanes past
     * hi are left as they are; src is read past hi only inside x's data (end), else the last
     * columns come through the stack. */
    const cpu_m8 lane = {0, 1, 2, 3, 4, 5, 6, 7};
    int need = s == 1 ? 8 : s == 2 ? 16 : 0;
    for (int o = lo; o <= hi; o += 8) {
        const float *p = src + (int64_t)o * s;
        cpu_v8 v, odd;
        if (need > 0 && end - p >= need) {
            if (s == 1)
                v = v8_load(p);
            else
                v8_split(p, &v, &odd);
        } else {
            float buf[8] = {0};
            for (int q = 0; q < 8 && o + q <= hi; q++)
                buf[q] = p[(int64_t)q * s];
            v = v8_load(buf);
        }
        cpu_m8 live = lane + o <= hi, f, a; /* (found and at as eight int32 lanes) */
        memcpy(&f, found + o, sizeof f);
        memcpy(&a, at + o, sizeof a);
        cpu_v8 b = v8_load(best + o);
        cpu_m8 take = ((f == 0) | v8_takes(b, v)) & live;
        v8_store(best + o, v8_select(take, v, b));
        a = (take & (base + (lane + o) * s)) | (~take & a);
        f |= live;
        memcpy(at + o, &a, sizeof a);
        memcpy(found + o, &f, sizeof f);
    }
}

/* max_row's body for column stride s: called with s = 1 and 2 as constants, so that the taps'
 * column bounds (tap_columns) need no division and the loads vectorise. */
static inline __attribute__((always_inline)) void max_row_stride(const cpu_window *g,
                                                                 const cpu_view *x, int n, int c,
                                                                 int r, int o0, int len,
                                                                 float *best, int32_t *at,
                                                                 const int s)
{
    int32_t found[POOL_CHUNK + 8];
    const float *end = x->data + (int64_t)x->n * x->c * x->rows * x->w;
    for (int o = 0; o < len; o++)
        best[o] = -INFINITY;
    if (at) /* and the eight past len that max_tap's last lanes read (best holds them then) */
        for (int o = 0; o < len + 8; o++) {
            found[o] = 0;
            at[o] = -1;
            if (o >= len)
                best[o] = -INFINITY;
        }
    for (int ky = 0; ky < g->kh; ky++) {
        int iy = r * g->sh - g->ph + ky * g->dh;
        if (iy < 0 || iy >= x->h)
            continue;
        const float *xr = cpu_at(x, n, c, iy, 0);
        for (int kx = 0; kx < g->kw; kx++) {
            int off = kx * g->dw - g->pw, lo, hi;
            tap_columns(o0 + len, x->w, s, off, &lo, &hi);
            lo = lo > o0 ? lo - o0 : 0;
            hi -= o0;
            int first = o0 * s + off; /* input column of chunk column 0 */
            max_tap(xr + first, s, lo, hi, iy * x->w + first, best, found, at, end);
        }
    }
}

static inline __attribute__((always_inline)) void max_row(const cpu_window *g, const cpu_view *x,
                                                          int n, int c, int r, int o0, int len,
                                                          float *best, int32_t *at)
{
    if (g->sw == 1)
        max_row_stride(g, x, n, c, r, o0, len, best, at, 1);
    else if (g->sw == 2)
        max_row_stride(g, x, n, c, r, o0, len, best, at, 2);
    else
        max_row_stride(g, x, n, c, r, o0, len, best, at, g->sw);
}

/* The maximum as max_tap takes it: v replaces b when strictly greater or NaN. */
static inline float max_take(float b, float v)
{
    return v > b || v != v ? v : b;
}

/* Scratch floats of max_plane_sep (on the stack): the input rows of a block of output rows,
 * padded with -inf, and their row maxima. */
enum { SEP_FLOATS = 6144 };

/* max_plane_fwd by rows then columns, for column stride s (1 or 2, a constant) without dilation:
 * first each input row's maxima over the kw taps of every output column (hm), then each output
 * row's over the kh rows of its window. The taps are those of max_row in the same order: a fold
 * by rows of folds by columns has the scan's result, since the first maximum of the first row
 * holding the maximum is the first maximum in (ky, kx) order, the last NaN of the last row
 * holding one the last NaN, and a -inf pad (a tap outside the map) replaces nothing. Each
 * input row's maxima serve the kh / sh output rows that read it, and every loop runs over whole
 * padded rows, with no per-tap bounds. Returns false (nothing done) when a block of one output
 * row does not fit the scratch: rows of thousands of columns, which max_row does at full speed. */
static inline __attribute__((always_inline)) bool max_plane_sep(const cpu_window *g,
                                                                const cpu_view *x, int n, int c,
                                                                int r_lo, int r_hi, cpu_view *y,
                                                                const int s)
{
    int owp = (x->w + 2 * g->pw + s - 1) / s; /* columns of a padded row, stride s apart */
    int wp = owp * s, slack = g->kw;          /* the last column's taps may pass the row */
    int block = (SEP_FLOATS - slack) / (wp + owp) - g->kh; /* output rows a block: */
    block = block < 0 ? 0 : block / g->sh + 1;             /* (block - 1) * sh + kh input rows */
    if (block < 1 || ((block - 1) * g->sh + g->kh) * (wp + owp) + slack > SEP_FLOATS)
        return false;
    float pad[SEP_FLOATS];
    for (int ra = r_lo; ra <= r_hi; ra += block) {
        int rb = ra + block - 1 < r_hi ? ra + block - 1 : r_hi;
        int iy0 = ra * g->sh - g->ph, rows = (rb - ra) * g->sh + g->kh;
        float *hm = pad + (int64_t)rows * wp + slack;
        for (int i = 0; i < rows; i++) {
            float *dst = pad + (int64_t)i * wp;
            int iy = iy0 + i;
            bool in = iy >= 0 && iy < x->h;
            const float *src = in ? cpu_at(x, n, c, iy, 0) : NULL;
            for (int j = 0; j < g->pw; j++)
                dst[j] = -INFINITY;
            if (in) {
#pragma omp simd
                for (int j = 0; j < x->w; j++)
                    dst[g->pw + j] = src[j];
            } else {
                for (int j = 0; j < x->w; j++)
                    dst[g->pw + j] = -INFINITY;
            }
            for (int j = g->pw + x->w; j < wp; j++)
                dst[j] = -INFINITY;
        }
        for (int j = 0; j < slack; j++)
            pad[(int64_t)rows * wp + j] = -INFINITY;
        int64_t q_end = (int64_t)rows * owp; /* hm[i * owp + o]: row i's maximum at column o */
#pragma omp simd
        for (int64_t q = 0; q < q_end; q++)
            hm[q] = -INFINITY;
        for (int kx = 0; kx < g->kw; kx++) {
            const float *src = pad + kx;
#pragma omp simd
            for (int64_t q = 0; q < q_end; q++)
                hm[q] = max_take(hm[q], src[q * s]);
        }
        for (int r = ra; r <= rb; r++) {
            float *yr = cpu_at(y, n, c, r, 0);
            const float *h0 = hm + (int64_t)(r - ra) * g->sh * owp;
#pragma omp simd
            for (int o = 0; o < y->w; o++) /* (max_take(-inf, v) is v, bit for bit) */
                yr[o] = h0[o];
            for (int ky = 1; ky < g->kh; ky++) {
                const float *hk = h0 + (int64_t)ky * owp;
#pragma omp simd
                for (int o = 0; o < y->w; o++)
                    yr[o] = max_take(yr[o], hk[o]);
            }
        }
    }
    return true;
}

/* The 2x2, stride 2 window on eight outputs at a time, in the generic vectors above (the same
 * compares, selects and adds, so the same bits as a scan window by window). The windows' even and odd
 * columns come apart with shuffles; a row's last outputs (fewer than eight) go through a copy on
 * the stack (memcpy: loops there measured slower). Written as scalar loops of ?: and ||, GCC
 * kept a branch per tap and vectorised nothing: tiny-vgg's max pooling at 28x28, batch 32, one
 * thread, took 1.57 ms a column step backward and 0.46 ms forward, against 0.60 and 0.38 now
 * (--profile, three alternating runs). */
/* Eight outputs of 2x2 windows: rows x0 and x1 from column 0 (16 columns each) into y[0..8). */
CPU_INLINE void max_2x2_fwd8(const float *x0, const float *x1, float *y)
{
    cpu_v8 a0, a1, a2, a3;
    v8_split(x0, &a0, &a1);
    v8_split(x1, &a2, &a3);
    cpu_v8 b = v8_select(v8_takes(a0, a1), a1, a0);
    b = v8_select(v8_takes(b, a2), a2, b);
    v8_store(y, v8_select(v8_takes(b, a3), a3, b));
}

/* Their backward: the tap the scan picks (the first maximum, a later one only when strictly
 * greater or NaN) takes dy's gradient in d0 (row 0) or d1 (row 1). */
CPU_INLINE void max_2x2_bwd8(const float *x0, const float *x1, const float *dy, float *d0,
                              float *d1)
{
    cpu_v8 a0, a1, a2, a3;
    v8_split(x0, &a0, &a1);
    v8_split(x1, &a2, &a3);
    cpu_m8 t1 = v8_takes(a0, a1);
    cpu_v8 b = v8_select(t1, a1, a0);
    cpu_m8 t2 = v8_takes(b, a2);
    b = v8_select(t2, a2, b);
    cpu_m8 t3 = v8_takes(b, a3);
    cpu_m8 k3 = t3, k2 = t2 & ~t3, k1 = t1 & ~t2 & ~t3, k0 = ~(t1 | t2 | t3);
    cpu_v8 g = v8_load(dy), e0, e1, e2, e3;
    v8_split(d0, &e0, &e1);
    v8_split(d1, &e2, &e3);
    v8_merge(d0, v8_select(k0, e0 + g, e0), v8_select(k1, e1 + g, e1));
    v8_merge(d1, v8_select(k2, e2 + g, e2), v8_select(k3, e3 + g, e3));
}

/* One output row of 2x2 windows: w outputs, eight at a time, the rest through the stack. */
CPU_INLINE void max_2x2_row_fwd(const float *x0, const float *x1, int w, float *y)
{
    int o = 0;
    for (; o + 8 <= w; o += 8)
        max_2x2_fwd8(x0 + 2 * o, x1 + 2 * o, y + o);
    if (o < w) {
        int rest = w - o;
        float b0[16] = {0}, b1[16] = {0}, by[8];
        memcpy(b0, x0 + 2 * o, sizeof(float) * (size_t)(2 * rest));
        memcpy(b1, x1 + 2 * o, sizeof(float) * (size_t)(2 * rest));
        max_2x2_fwd8(b0, b1, by);
        memcpy(y + o, by, sizeof(float) * (size_t)rest);
    }
}

CPU_INLINE void max_2x2_row_bwd(const float *x0, const float *x1, const float *dy, int w,
                                 float *d0, float *d1)
{
    int o = 0;
    for (; o + 8 <= w; o += 8)
        max_2x2_bwd8(x0 + 2 * o, x1 + 2 * o, dy + o, d0 + 2 * o, d1 + 2 * o);
    if (o < w) {
        int rest = w - o;
        size_t pair = sizeof(float) * (size_t)(2 * rest);
        float b0[16] = {0}, b1[16] = {0}, bg[8] = {0}, e0[16] = {0}, e1[16] = {0};
        memcpy(b0, x0 + 2 * o, pair);
        memcpy(b1, x1 + 2 * o, pair);
        memcpy(bg, dy + o, sizeof(float) * (size_t)rest);
        memcpy(e0, d0 + 2 * o, pair);
        memcpy(e1, d1 + 2 * o, pair);
        max_2x2_bwd8(b0, b1, bg, e0, e1);
        memcpy(d0 + 2 * o, e0, pair);
        memcpy(d1 + 2 * o, e1, pair);
    }
}

/* Rows [r_lo, r_hi] of plane (n, c) of y: one call a plane, so that a row of a few outputs does
 * not pay for a call through the clones' dispatch. */
LR_CLONES
static void max_plane_fwd(const cpu_window *g, const cpu_view *x, int n, int c, int r_lo,
                          int r_hi, cpu_view *y)
{
    if (window_2x2_s2(g)) { /* the four taps in scan order */
        for (int r = r_lo; r <= r_hi; r++)
            max_2x2_row_fwd(cpu_at(x, n, c, 2 * r, 0), cpu_at(x, n, c, 2 * r + 1, 0), y->w,
                            cpu_at(y, n, c, r, 0));
        return;
    }
    if (g->dh == 1 && g->dw == 1 &&
        ((g->sw == 2 && max_plane_sep(g, x, n, c, r_lo, r_hi, y, 2)) ||
         (g->sw == 1 && max_plane_sep(g, x, n, c, r_lo, r_hi, y, 1))))
        return;
    for (int r = r_lo; r <= r_hi; r++)
        for (int o0 = 0; o0 < y->w; o0 += POOL_CHUNK)
            max_row(g, x, n, c, r, o0, y->w - o0 < POOL_CHUNK ? y->w - o0 : POOL_CHUNK,
                    cpu_at(y, n, c, r, o0), NULL);
}

void cpu_maxpool_fwd(const cpu_window *g, const cpu_view *x, cpu_view *y, int r_lo, int r_hi)
{
    check_pool(g, x, y);
    check_range(r_lo, r_hi, y->h);
    check_rows(y, r_lo, r_hi);
    check_window_rows(g, r_lo, r_hi, x);
    int64_t work = row_work(y, r_lo, r_hi) * g->kh * g->kw * MAX_TAP_COST;
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < y->n; n++)
        for (int c = 0; c < y->c; c++)
            max_plane_fwd(g, x, n, c, r_lo, r_hi, y);
}

/* dx of plane (n, c) += what dy's rows [r_lo, r_hi] send back, one call a plane; dx holds rows
 * from full-map position `held` on. */
LR_CLONES
static void max_plane_bwd(const cpu_window *g, const cpu_view *x, const cpu_view *dy, int n, int c,
                          int r_lo, int r_hi, cpu_view *dx, int32_t held)
{
    if (window_2x2_s2(g)) {
        /* windows apart: each input element takes at most one output's gradient, from the tap
         * the scan picks (the first, then one strictly greater or NaN) */
        for (int r = r_lo; r <= r_hi; r++)
            max_2x2_row_bwd(cpu_at(x, n, c, 2 * r, 0), cpu_at(x, n, c, 2 * r + 1, 0),
                            cpu_at(dy, n, c, r, 0), dy->w, cpu_at(dx, n, c, 2 * r, 0),
                            cpu_at(dx, n, c, 2 * r + 1, 0));
        return;
    }
    float *plane = cpu_at(dx, n, c, dx->row0, 0);
    for (int r = r_lo; r <= r_hi; r++)
        for (int o0 = 0; o0 < dy->w; o0 += POOL_CHUNK) {
            int len = dy->w - o0 < POOL_CHUNK ? dy->w - o0 : POOL_CHUNK;
            float best[POOL_CHUNK + 8]; /* (max_tap's eight lanes past the last column) */
            int32_t at[POOL_CHUNK + 8];
            max_row(g, x, n, c, r, o0, len, best, at);
            const float *dyr = cpu_at(dy, n, c, r, o0);
            for (int o = 0; o < len; o++)
                if (at[o] >= 0)
                    plane[at[o] - held] += dyr[o];
        }
}

/* Recomputes the argmax from x; outputs add their gradient in column order. */
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
    LR_ASSERT((int64_t)x->h * x->w <= INT32_MAX);
    int32_t held = dx->row0 * dx->w; /* positions are full-map; dx holds rows from row0 on */
    int64_t work = row_work(dy, r_lo, r_hi) * g->kh * g->kw * MAX_TAP_COST;
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < dy->n; n++)
        for (int c = 0; c < dy->c; c++)
            max_plane_bwd(g, x, dy, n, c, r_lo, r_hi, dx, held);
}

static void check_avgpool(const cpu_window *g, const cpu_view *x, const cpu_view *y)
{
    check_pool(g, x, y);
    LR_ASSERT(g->dh == 1 && g->dw == 1); /* torch's AvgPool2d has no dilation */
}

/* One output row of average pooling, columns [o0, o0 + len): each output sums its in-map taps in
 * (ky, kx) order from 0, then divides, as a scan window by window would; the taps run in the
 * outer loops and the columns in the inner one, which vectorises. Called with s = g->sw as a
 * constant 1 or 2 (see max_row_stride). */
static inline __attribute__((always_inline)) void avg_row_stride(const cpu_window *g,
                                                                 const cpu_view *x, int n, int c,
                                                                 int r, int o0, int len,
                                                                 float divisor, float *yr,
                                                                 const int s)
{
    float sum[POOL_CHUNK];
    for (int o = 0; o < len; o++)
        sum[o] = 0.0f;
    for (int ky = 0; ky < g->kh; ky++) {
        int iy = r * g->sh - g->ph + ky;
        if (iy < 0 || iy >= x->h)
            continue;
        const float *xr = cpu_at(x, n, c, iy, 0);
        for (int kx = 0; kx < g->kw; kx++) {
            int off = kx - g->pw, lo, hi;
            tap_columns(o0 + len, x->w, s, off, &lo, &hi);
            lo = lo > o0 ? lo - o0 : 0;
            hi -= o0;
            const float *src = xr + o0 * s + off; /* input column of chunk column 0 */
#pragma omp simd
            for (int o = lo; o <= hi; o++)
                sum[o] += src[o * s];
        }
    }
#pragma omp simd
    for (int o = 0; o < len; o++)
        yr[o] = sum[o] / divisor;
}

/* The 2x2 window of stride 2 without padding (every tiny net's and VGG's average pooling): the
 * same four taps in the same order from 0, without the per-row set-up of the general path. */
static inline __attribute__((always_inline)) void avg_row_2x2(const float *x0, const float *x1,
                                                              int len, float *yr)
{
#pragma omp simd
    for (int o = 0; o < len; o++)
        yr[o] = ((((0.0f + x0[2 * o]) + x0[2 * o + 1]) + x1[2 * o]) + x1[2 * o + 1]) / 4.0f;
}

/* Rows [r_lo, r_hi] of plane (n, c) of y: one call a plane (see max_plane_fwd). */
LR_CLONES
static void avg_plane_fwd(const cpu_window *g, const cpu_view *x, int n, int c, int r_lo,
                          int r_hi, float divisor, cpu_view *y)
{
    if (window_2x2_s2(g)) {
        for (int r = r_lo; r <= r_hi; r++)
            avg_row_2x2(cpu_at(x, n, c, 2 * r, 0), cpu_at(x, n, c, 2 * r + 1, 0), y->w,
                        cpu_at(y, n, c, r, 0));
        return;
    }
    for (int r = r_lo; r <= r_hi; r++)
        for (int o0 = 0; o0 < y->w; o0 += POOL_CHUNK) {
            int len = y->w - o0 < POOL_CHUNK ? y->w - o0 : POOL_CHUNK;
            float *yr = cpu_at(y, n, c, r, o0);
            if (g->sw == 1)
                avg_row_stride(g, x, n, c, r, o0, len, divisor, yr, 1);
            else if (g->sw == 2)
                avg_row_stride(g, x, n, c, r, o0, len, divisor, yr, 2);
            else
                avg_row_stride(g, x, n, c, r, o0, len, divisor, yr, g->sw);
        }
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
            avg_plane_fwd(g, x, n, c, r_lo, r_hi, divisor, y);
}

/* The shares of output row r, columns [o0, o0 + len), go to input rows r * sh - ph + ky. When
 * windows do not overlap across columns (sw >= kw) an input element takes at most one share per
 * (r, ky), so the taps may run in the outer loops (which vectorise) with the same sums, bit for
 * bit; otherwise the shares are added window by window, columns in order, as before. */
static inline __attribute__((always_inline)) void avg_row_bwd(const cpu_window *g,
                                                               const float *dyr, int r, int o0,
                                                               int len, float divisor,
                                                               cpu_view *dx, int n, int c)
{
    float share[POOL_CHUNK];
    for (int o = 0; o < len; o++)
        share[o] = dyr[o] / divisor;
    for (int ky = 0; ky < g->kh; ky++) {
        int iy = r * g->sh - g->ph + ky;
        if (iy < 0 || iy >= dx->h)
            continue;
        float *dxr = cpu_at(dx, n, c, iy, 0);
        if (g->sw < g->kw) {
            for (int o = 0; o < len; o++)
                for (int kx = 0; kx < g->kw; kx++) {
                    int xx = (o0 + o) * g->sw - g->pw + kx;
                    if (xx >= 0 && xx < dx->w)
                        dxr[xx] += share[o];
                }
            continue;
        }
        for (int kx = 0; kx < g->kw; kx++) {
            int off = kx - g->pw, lo, hi;
            tap_columns(o0 + len, dx->w, g->sw, off, &lo, &hi);
            lo = lo > o0 ? lo - o0 : 0;
            hi -= o0;
            float *dst = dxr + o0 * g->sw + off; /* input column of chunk column 0 */
            if (g->sw == 2) {
#pragma omp simd
                for (int o = lo; o <= hi; o++)
                    dst[2 * o] += share[o];
            } else {
                for (int o = lo; o <= hi; o++)
                    dst[o * g->sw] += share[o];
            }
        }
    }
}

/* avg_row_bwd's 2x2 window of stride 2 without padding: each input element takes the one share
 * of its window, as there. */
static inline __attribute__((always_inline)) void avg_row_bwd_2x2(const float *dyr, int len,
                                                                  float *dx0, float *dx1)
{
#pragma omp simd
    for (int o = 0; o < len; o++) {
        float share = dyr[o] / 4.0f;
        dx0[2 * o] += share;
        dx0[2 * o + 1] += share;
        dx1[2 * o] += share;
        dx1[2 * o + 1] += share;
    }
}

/* dx of plane (n, c) += the shares of dy's rows [r_lo, r_hi], one call a plane. */
LR_CLONES
static void avg_plane_bwd(const cpu_window *g, const cpu_view *dy, int n, int c, int r_lo,
                          int r_hi, float divisor, cpu_view *dx)
{
    if (window_2x2_s2(g)) {
        for (int r = r_lo; r <= r_hi; r++)
            avg_row_bwd_2x2(cpu_at(dy, n, c, r, 0), dy->w, cpu_at(dx, n, c, 2 * r, 0),
                            cpu_at(dx, n, c, 2 * r + 1, 0));
        return;
    }
    for (int r = r_lo; r <= r_hi; r++)
        for (int o0 = 0; o0 < dy->w; o0 += POOL_CHUNK)
            avg_row_bwd(g, cpu_at(dy, n, c, r, o0), r, o0,
                        dy->w - o0 < POOL_CHUNK ? dy->w - o0 : POOL_CHUNK, divisor, dx, n, c);
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
            avg_plane_bwd(g, dy, n, c, r_lo, r_hi, divisor, dx);
}

/* ------------------------------------------------------------------ pooling to a fixed size */

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

/* x holds input rows [in_lo, in_hi] (or more), y is the whole output map. */
static void check_adaptive(const cpu_view *x, const cpu_view *y, int in_lo, int in_hi)
{
    check_view(x);
    check_full_map(y);
    LR_ASSERT(y->n == x->n && y->c == x->c);
    LR_ASSERT(in_lo >= x->row0 && in_hi < x->row0 + x->rows && in_lo <= in_hi);
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

void cpu_adaptive_avgpool_fwd(const cpu_view *x, cpu_view *y, int in_lo, int in_hi)
{
    check_adaptive(x, y, in_lo, in_hi);
    int i_lo, i_hi;
    touched_rows(in_lo, in_hi, x->h, y->h, &i_lo, &i_hi);
    int64_t work = row_work(x, in_lo, in_hi);
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < y->n; n++)
        for (int c = 0; c < y->c; c++)
            for (int i = i_lo; i <= i_hi; i++)
                for (int j = 0; j < y->w; j++) {
                    int y0 = bin_start(i, x->h, y->h), y1 = bin_end(i, x->h, y->h);
                    int x0 = bin_start(j, x->w, y->w), x1 = bin_end(j, x->w, y->w);
                    int r0 = y0 > in_lo ? y0 : in_lo, r1 = y1 - 1 < in_hi ? y1 - 1 : in_hi;
                    float *out = cpu_at(y, n, c, i, j);
                    float sum = r0 == y0 ? 0.0f : *out; /* a bin begun by an earlier stripe */
                    for (int yy = r0; yy <= r1; yy++)
                        for (int xx = x0; xx < x1; xx++)
                            sum += *cpu_at(x, n, c, yy, xx);
                    *out = r1 == y1 - 1 ? sum / (float)((y1 - y0) * (x1 - x0)) : sum;
                }
}

void cpu_adaptive_avgpool_bwd(const cpu_view *dy, cpu_view *dx, int in_lo, int in_hi)
{
    if (!dx)
        return; /* not wanted */
    check_adaptive(dx, dy, in_lo, in_hi);
    int i_lo, i_hi;
    touched_rows(in_lo, in_hi, dx->h, dy->h, &i_lo, &i_hi);
    int64_t work = row_work(dx, in_lo, in_hi);
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < dy->n; n++)
        for (int c = 0; c < dy->c; c++)
            for (int i = i_lo; i <= i_hi; i++)
                for (int j = 0; j < dy->w; j++) {
                    int y0 = bin_start(i, dx->h, dy->h), y1 = bin_end(i, dx->h, dy->h);
                    int x0 = bin_start(j, dx->w, dy->w), x1 = bin_end(j, dx->w, dy->w);
                    int r0 = y0 > in_lo ? y0 : in_lo, r1 = y1 - 1 < in_hi ? y1 - 1 : in_hi;
                    float share = *cpu_at(dy, n, c, i, j) / (float)((y1 - y0) * (x1 - x0));
                    for (int yy = r0; yy <= r1; yy++)
                        for (int xx = x0; xx < x1; xx++)
                            *cpu_at(dx, n, c, yy, xx) += share;
                }
}

/* Global average pooling is the adaptive pooling with a single bin. */
void cpu_global_avgpool_fwd(const cpu_view *x, cpu_view *y, int in_lo, int in_hi)
{
    LR_ASSERT(y->h == 1 && y->w == 1);
    cpu_adaptive_avgpool_fwd(x, y, in_lo, in_hi);
}

void cpu_global_avgpool_bwd(const cpu_view *dy, cpu_view *dx, int in_lo, int in_hi)
{
    LR_ASSERT(dy->h == 1 && dy->w == 1);
    cpu_adaptive_avgpool_bwd(dy, dx, in_lo, in_hi);
}
