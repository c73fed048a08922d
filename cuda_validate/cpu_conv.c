/* cpu_conv.c - convolution forward and backward on row ranges, as im2col + GEMM (cpu_blas.c)
 * in work units of fixed shape (see cpu_ops.h for the conventions); small layers run their units
 * through the direct kernels of cpu_conv_direct.c instead (conv_direct_fwd, conv_direct_bwd).
 *
 * Legend: N batch, C channels, H/W full height/width of a map, R rows held by a view,
 * OH/OW output height/width, K = Cin/groups * kh * kw the depth of a group's GEMM,
 * P the pixels (GEMM columns) of a unit: its images x its rows x OW, in that order.
 *
 * The units, and why the bits do not depend on the thread count or the row range:
 *  - forward: one output row of a block of images: (Cout/g, P) = (Cout/g, K) x (K, P) per group.
 *    The image blocks depend on N and OW only, so an output element is computed by a GEMM of
 *    the same shape, at the same place in it, from the same im2col column in a column run and
 *    in any stripe: the row-split exactness of cpu_ops.h;
 *  - backward data: a block of images and a block of input channels, the rows of the call in
 *    chunks taken in order: (K rows of the channels, P) = W^T x (Cout/g, P), then col2im adds
 *    into dx. Units write disjoint parts of dx, and inside one the chunks and taps come in a
 *    fixed order;
 *  - backward filter: tiles (Cout block, K block) of dw; each takes the image blocks and row
 *    chunks in order: tile += (Cout block, P) x (K block, P)^T. A thread takes a set of a
 *    block's K tiles and gathers each chunk's gradient rows once for all of them; the sets
 *    follow the thread count, the tiles and their sums do not;
 *  - bias: blocks of output channels, each channel's dy rows summed in double, images in order.
 * One call's bias blocks, dw tiles and dx units share one parallel loop (they write apart).
 * The backward's image blocks and row chunks follow the call's row count (a stripe of a few rows
 * takes several images per chunk, conv_shape_fit_rows), never the thread count. Backward results
 * depend on the row range (a sum split differently), within rounding; forward results do not.
 * Scratch (im2col columns, gathered gradients, GEMM output) comes from the caller's cpu_scratch,
 * one slice per thread; a kernel uses as many threads as it has slices for.
 *
 * Deliberately not here: memory allocation (no kernel mallocs), scheduling, the BLAS call itself.
 */
#include "cpu_conv_direct.h"

#include <omp.h>

/* im2col copies rows of a few dozen floats; GCC would turn those loops into memcpy/memset calls,
 * which cost more than the copies at that length. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-tree-loop-distribute-patterns")
#endif

/* GEMM columns a unit aims at: enough to amortise packing the weights (a unit's GEMM packs its
 * block of W again), few enough that small maps still give every thread units. */
enum { FWD_PIXELS = 256, BWD_PIXELS = 256, FWD_MIN_PIXELS = 128 };
/* Input channels of a backward-data unit; output channels of a dw tile, and the fewest K columns
 * of one. Each unit or tile gathers its own gradient rows, so wide layers get at most MAX_SPLIT
 * of them. Every tile's GEMM packs the chunk's gradient rows again: OpenBLAS on one thread, the
 * (32, 168) x (168, 288) of tiny-vgg's conv2_2 in a stripe's chunk took 54 us as 8 tiles of 36
 * columns, 45 us as 4 of 72, 42-43 us as 1 or 2 (tiny-mix's conv3, (16, 196) x (196, 240): 35,
 * 28, 25 us); with DW_K_MIN 64 instead of 16 tiny-vgg's column step took 0.90x on one thread. */
enum { BWD_CI_BLOCK = 32, DW_CO_BLOCK = 512, DW_K_MIN = 64, MAX_SPLIT = 8 };
/* Output channels of a bias gradient unit. */
enum { BIAS_BLOCK = 16 };

static int ceil_div(int64_t a, int64_t b)
{
    return (int)((a + b - 1) / b);
}

/* Blocks of at most `target` (at least 1) that split `total` as evenly as ceil allows. */
static void even_blocks(int64_t total, int64_t target, int *block, int *count)
{
    int n = ceil_div(total, target > 0 ? target : 1);
    *block = ceil_div(total, n);
    *count = ceil_div(total, *block);
}

static conv_shape conv_shape_of(const cpu_window *g, int n, int cin, int h, int w, int cout)
{
    conv_shape s = {.g = g, .n = n, .cin = cin, .h = h, .w = w, .cout = cout};
    s.oh = window_out(h, g->kh, g->sh, g->ph, g->dh);
    s.ow = window_out(w, g->kw, g->sw, g->pw, g->dw);
    s.cig = cin / g->groups;
    s.cog = cout / g->groups;
    s.kk = g->kh * g->kw;
    s.k = (int64_t)s.cig * s.kk;
    /* two image blocks at least where a block keeps FWD_MIN_PIXELS columns: a stripe of a few
     * output rows of a narrow map (8 columns) then has units for two threads, not one per row */
    int fwd_target = ceil_div(FWD_PIXELS, s.ow), half = ceil_div(n, 2);
    if (half < fwd_target && (int64_t)half * s.ow >= FWD_MIN_PIXELS)
        fwd_target = half;
    even_blocks(n, fwd_target, &s.img_block, &s.n_img_blocks);
    /* backward: whole maps of several images when they are small, else row chunks of one */
    even_blocks(n, BWD_PIXELS / ((int64_t)s.oh * s.ow), &s.bwd_block, &s.n_bwd_blocks);
    s.bwd_rows = min_int(s.oh, ceil_div(BWD_PIXELS, (int64_t)s.bwd_block * s.ow));
    s.bwd_pixels = (int64_t)s.bwd_block * s.bwd_rows * s.ow;
    int ci_target = ceil_div(s.cig, MAX_SPLIT);
    even_blocks(s.cig, ci_target > BWD_CI_BLOCK ? ci_target : BWD_CI_BLOCK, &s.ci_block,
                &s.n_ci_blocks);
    even_blocks(s.cog, DW_CO_BLOCK, &s.co_block, &s.n_co_blocks);
    /* dw's K columns in a power of two of tiles (at most MAX_SPLIT, each at least DW_K_MIN
     * wide), so that 2, 4 or 8 threads share them evenly: a layer of a few dozen channels has a
     * handful of tiles, and 3 tiles on 2 threads left one idle a third of the time. */
    int k_tiles = 1;
    while (k_tiles < MAX_SPLIT && s.k >= 2 * k_tiles * (int64_t)DW_K_MIN)
        k_tiles *= 2;
    even_blocks(s.k, ceil_div(s.k, k_tiles), &s.k_block, &s.n_k_blocks);
    int reach = (s.ow - 1) * g->sw + (g->kw - 1) * g->dw + 1; /* columns the taps span */
    s.padded_w = reach > g->pw + w ? reach : g->pw + w;
    return s;
}

/* The backward chunks of a call over `rows` output rows: as many images of those rows as the
 * layer's largest chunk holds (what the scratch is sized for), else row chunks of one image. A
 * stripe of a few rows thus still gives GEMMs of about BWD_PIXELS columns, not a few dozen. Over
 * all OH rows this is conv_shape_of's choice (even_blocks of its own block is that block), but
 * for an odd count of blocks, made even below (chunks then smaller than the scratch holds). */
static void conv_shape_fit_rows(conv_shape *s, int rows)
{
    even_blocks(s->n, s->bwd_pixels / ((int64_t)rows * s->ow), &s->bwd_block, &s->n_bwd_blocks);
    /* an even count of image blocks where the batch allows, so that the dx units (one a block)
     * share out over two or four threads: 1-row stripes of tiny-mix's conv3 made 3 (11, 11 and
     * 10 images) and the last one ran alone. With 4, its backward on two threads takes
     * 1.20-1.40x (median 1.28x) the whole map's time instead of 1.29-1.51x (median 1.39x), on
     * one thread the same (bench/conv_stripes.c at 1-row stripes, five alternating pairs of
     * runs against the build before). The count depends on the batch and the rows only, never
     * the threads. */
    if (s->n_bwd_blocks > 1 && s->n_bwd_blocks % 2 == 1) {
        s->bwd_block = ceil_div(s->n, s->n_bwd_blocks + 1);
        s->n_bwd_blocks = ceil_div(s->n, s->bwd_block);
    }
    int64_t fit = s->bwd_pixels / ((int64_t)s->bwd_block * s->ow);
    s->bwd_rows = fit < rows ? (int)fit : rows;
}

/* Scratch floats one thread needs: the largest of the three passes. */
static int64_t slice_floats(const conv_shape *s)
{
    int64_t fwd_p = (int64_t)s->img_block * s->ow;
    int64_t bwd_p = s->bwd_pixels;
    int64_t fwd = (s->k + s->cout) * fwd_p;
    int64_t data = ((int64_t)s->cog + (int64_t)s->ci_block * s->kk) * bwd_p;
    int64_t filter = ((int64_t)s->co_block + s->k_block) * bwd_p;
    int64_t most = fwd > data ? fwd : data;
    most = (most > filter ? most : filter) + s->padded_w;
    int64_t direct = conv_direct_floats(s);
    return most > direct ? most : direct;
}

int64_t cpu_conv_scratch_floats(const cpu_window *g, int n, int cin, int h, int w, int cout,
                                int threads)
{
    check_window(g);
    LR_ASSERT(n >= 1 && cin >= 1 && h >= 1 && w >= 1 && cout >= 1 && threads >= 1);
    LR_ASSERT(cin % g->groups == 0 && cout % g->groups == 0);
    conv_shape s = conv_shape_of(g, n, cin, h, w, cout);
    return slice_floats(&s) * threads;
}

/* Threads the scratch has slices for, at most `units` and the OpenMP limit; 1 when the call is
 * too small for threads to pay. */
static int conv_threads(const conv_shape *s, const cpu_scratch *ws, int64_t units, int64_t work)
{
    int64_t slice = slice_floats(s);
    LR_ASSERT(ws != NULL && ws->data != NULL && ws->floats >= slice);
    if (!worth_threads_macs(work))
        return 1;
    int64_t t = ws->floats / slice;
    t = t < omp_get_max_threads() ? t : omp_get_max_threads();
    return (int)(t < units ? t : units);
}

static float *thread_slice(const conv_shape *s, const cpu_scratch *ws)
{
    return ws->data + slice_floats(s) * omp_get_thread_num();
}

/* The padded row of a thread's slice: its last padded_w floats. */
static float *padded_row(const conv_shape *s, float *slice)
{
    return slice + slice_floats(s) - s->padded_w;
}

/* ------------------------------------------------------------------ im2col and col2im */

/* row[o] = 0 for o in [0, w) outside [lo, hi]: an im2col row's columns whose tap lies outside the
 * map. */
static inline void zero_outside(float *row, int lo, int hi, int w)
{
    for (int o = 0; o < lo; o++)
        row[o] = 0.0f;
    for (int o = hi + 1; o < w; o++)
        row[o] = 0.0f;
}

/* One k row of im2col for images [n0, n0 + nb) when output row r reads input row r + dr at
 * column o + off (unit strides, OW = W): per image, the in-map rows are one contiguous copy from
 * the first in-map column of the first of them to the last of the last; then every column
 * outside [lo, hi] and every row outside the map is zeroed. The images share the bounds, worked
 * out once: a stripe's chunk holds several images of a few rows each. */
LR_CLONES
static void im2col_shifted(const conv_shape *s, const cpu_view *x, int n0, int nb, int c, int dr,
                           int off, int lo, int hi, int ra, int rb, float *dst, int64_t per_image)
{
    int w = s->w;
    int r0 = ra + dr < 0 ? -dr : ra, r1 = rb + dr >= s->h ? s->h - 1 - dr : rb; /* in-map rows */
    if (lo > hi || r0 > r1) {
        for (int i = 0; i < nb; i++)
            zero_floats(dst + i * per_image, plane_span(ra, rb, w));
        return;
    }
    int64_t j0 = plane_span(ra, r0 - 1, w) + lo, j1 = plane_span(ra, r1 - 1, w) + hi;
    for (int i = 0; i < nb; i++, dst += per_image) {
        const float *src = cpu_at(x, n0 + i, c, r0 + dr, lo + off); /* holds dst[j0] */
#pragma omp simd
        for (int64_t j = j0; j <= j1; j++)
            dst[j] = src[j - j0];
        for (int r = ra; r <= rb; r++) {
            float *row = dst + plane_span(ra, r - 1, w);
            if (r < r0 || r > r1)
                zero_floats(row, w);
            else
                zero_outside(row, lo, hi, w);
        }
    }
}

/* A k row's tap: k = (ci * kh + ky) * kw + kx, the input row offset dr = ky*dh - ph (input row
 * r * sh + dr), the column offset off = kx*dw - pw and the output columns [lo, hi] whose input
 * column is in the map. Walked in k order by tap_next, without divisions. */
typedef struct {
    int ci, ky, kx, dr, off, lo, hi;
} tap;

static void tap_set(const conv_shape *s, int64_t k, tap *t)
{
    const cpu_window *g = s->g;
    t->ci = (int)(k / s->kk);
    t->ky = (int)(k % s->kk) / g->kw;
    t->kx = (int)(k % g->kw);
    t->dr = t->ky * g->dh - g->ph;
    t->off = t->kx * g->dw - g->pw;
    tap_columns(s->ow, s->w, g->sw, t->off, &t->lo, &t->hi);
}

static void tap_next(const conv_shape *s, tap *t)
{
    const cpu_window *g = s->g;
    if (++t->kx == g->kw) {
        t->kx = 0;
        if (++t->ky == g->kh) {
            t->ky = 0;
            t->ci++;
        }
        t->dr = t->ky * g->dh - g->ph;
    }
    t->off = t->kx * g->dw - g->pw;
    tap_columns(s->ow, s->w, g->sw, t->off, &t->lo, &t->hi);
}

/* im2col over output rows [ra, rb] with unit strides and OW = W: each k row of each image is
 * one shifted copy of the input rows (im2col_shifted), also for a single row, where it saves
 * the generic path's padded copy of every input row. */
static void im2col_rows(const conv_shape *s, const cpu_view *x, int n0, int nb, int c0,
                        int64_t k0, int64_t k1, int ra, int rb, float *col, int64_t ld)
{
    int64_t per_image = plane_span(ra, rb, s->ow);
    tap t;
    tap_set(s, k0, &t);
    for (int64_t k = k0; k < k1; k++, tap_next(s, &t))
        im2col_shifted(s, x, n0, nb, c0 + t.ci, t.dr, t.off, t.lo, t.hi, ra, rb,
                       col + (k - k0) * ld, per_image);
}

/* Asks for the cache lines of p[0, len). The rows one im2col reads lie a plane apart (the next
 * image's), too far for the hardware prefetcher, and a stripe of one or a few rows finds few of
 * them in cache: fetching the next image's row while copying this one hides that wait. */
static inline void prefetch_floats(const float *p, int len)
{
    for (int j = 0; j < len; j += 16)
        __builtin_prefetch(p + j);
    __builtin_prefetch(p + len - 1);
}

/* d[o] = src[2 * o] for o in [0, n), n >= 8: eight at a time, the last eight overlapping the
 * ones before (the same values again). Reads src[0, 2n - 1) only, as the scalar loop does. */
CPU_INLINE void gather_even(const float *src, float *d, int n)
{
    for (int o = 0;; o += 8) {
        o = o < n - 8 ? o : n - 8;
        cpu_v8 a = v8_load(src + 2 * o), b = v8_load(src + 2 * o + 7);
        v8_store(d + o, V8_SHUFFLE(a, b, 0, 2, 4, 6, 9, 11, 13, 15));
        if (o == n - 8)
            return;
    }
}

/* dst[2 * o] += src[o] for o in [0, n): eight at a time (each a load of the 15 floats they
 * touch, even lanes added, odd ones stored back as they were), the rest one by one. The same
 * adds as the scalar loop; nothing outside dst[0, 2n - 1) is read or written. */
CPU_INLINE void add_even(float *dst, const float *src, int n)
{
    int o = 0;
    for (; o + 8 <= n; o += 8) {
        float *p = dst + 2 * o;
        cpu_v8 a = v8_load(p), b = v8_load(p + 7);
        cpu_v8 e = V8_SHUFFLE(a, b, 0, 2, 4, 6, 9, 11, 13, 15) + v8_load(src + o);
        v8_store(p, V8_SHUFFLE(e, a, 0, 9, 1, 11, 2, 13, 3, 15));
        v8_store(p + 7, V8_SHUFFLE(e, b, 8, 4, 10, 5, 12, 6, 14, 7));
    }
    for (; o < n; o++)
        dst[2 * o] += src[o];
}

/* Kernel widths whose taps' column bounds im2col keeps on the stack for a column stride of 2. */
enum { EVEN_MAX_KW = 16 };

/* Taps [kx0, kx1) of input row ir (of image n, channel c) for a column stride of 2: dst[kx * ld
 * + o] = x[n, c, ir, 2 * o + kx * dw - pw] for the taps' in-map columns [lo[kx], hi[kx]] straight
 * from x's row (gather_even), 0 elsewhere (all of it when row ir is outside the map). */
CPU_INLINE void even_taps(const conv_shape *s, const cpu_view *x, int n, int c, int ir, int kx0,
                          int kx1, const int *lo, const int *hi, float *dst, int64_t ld)
{
    const cpu_window *g = s->g;
    int ow = s->ow;
    bool in_map = ir >= 0 && ir < s->h;
    const float *row = in_map ? cpu_at(x, n, c, ir, 0) : NULL;
    for (int kx = kx0; kx < kx1; kx++) {
        float *d = dst + kx * ld;
        int a = lo[kx], b = hi[kx];
        if (!in_map || a > b) {
            zero_floats(d, ow);
            continue;
        }
        zero_outside(d, a, b, ow);
        const float *src = row + 2 * a + kx * g->dw - g->pw;
        if (b - a + 1 >= 8) {
            gather_even(src, d + a, b - a + 1);
        } else {
            for (int o = 0; o <= b - a; o++)
                d[a + o] = src[2 * o];
        }
    }
}

/* Columns of im2col for images [n0, n0 + nb), output rows [ra, rb], rows k in [k0, k1) of the
 * group whose first input channel is c0: col[k - k0][i * R * OW + (r - ra) * OW + ox] =
 * x[n0 + i, c0 + ci, r*sh + ky*dh - ph, ox*sw + kx*dw - pw] with k = (ci * kh + ky) * kw + kx,
 * R = rb - ra + 1, 0 outside the map. The kw taps of one input row are copied from its padded
 * copy `pad` (padded_w floats of scratch). */
LR_CLONES
static void im2col(const conv_shape *s, const cpu_view *x, int n0, int nb, int c0, int64_t k0,
                   int64_t k1, int ra, int rb, float *col, int64_t ld, float *pad)
{
    const cpu_window *g = s->g;
    int ow = s->ow, kw = g->kw, sw = g->sw;
    int64_t per_image = plane_span(ra, rb, ow);
    if (g->sh == 1 && sw == 1 && ow == s->w) {
        im2col_rows(s, x, n0, nb, c0, k0, k1, ra, rb, col, ld);
        return;
    }
    /* a column stride of 2 with 8 output columns or more takes the taps straight from x's rows
     * (even_taps): at 14 output columns the padded copy of each row and the strided loop's
     * scalar tail were most of tiny-mix's conv3 im2col */
    bool even = sw == 2 && ow >= 8 && kw <= EVEN_MAX_KW;
    int lo[EVEN_MAX_KW], hi[EVEN_MAX_KW];
    for (int kx = 0; even && kx < kw; kx++)
        tap_columns(ow, s->w, 2, kx * g->dw - g->pw, &lo[kx], &hi[kx]);
    for (int64_t row0 = k0 - k0 % kw; row0 < k1; row0 += kw) { /* the k of (ci, ky, 0) */
        int ci = (int)(row0 / s->kk), ky = (int)(row0 % s->kk) / kw;
        int kx0 = row0 < k0 ? (int)(k0 - row0) : 0, kx1 = row0 + kw > k1 ? (int)(k1 - row0) : kw;
        for (int i = 0; i < nb; i++)
            for (int r = ra; r <= rb; r++) {
                int ir = r * g->sh + ky * g->dh - g->ph;
                if (i + 1 < nb && ir >= 0 && ir < s->h)
                    prefetch_floats(cpu_at(x, n0 + i + 1, c0 + ci, ir, 0), s->w);
                float *dst = col + (row0 - k0) * ld + i * per_image + (int64_t)(r - ra) * ow;
                if (even) {
                    even_taps(s, x, n0 + i, c0 + ci, ir, kx0, kx1, lo, hi, dst, ld);
                    continue;
                }
                pad_row(s, x, n0 + i, c0 + ci, ir, pad);
                for (int kx = kx0; kx < kx1; kx++) {
                    const float *src = pad + kx * g->dw;
                    float *d = dst + kx * ld;
                    if (sw == 1) {
#pragma omp simd
                        for (int o = 0; o < ow; o++)
                            d[o] = src[o];
                    } else if (sw == 2) { /* a constant stride, so the loads vectorise */
#pragma omp simd
                        for (int o = 0; o < ow; o++)
                            d[o] = src[2 * o];
                    } else {
                        for (int o = 0; o < ow; o++)
                            d[o] = src[o * sw];
                    }
                }
            }
    }
}

/* col2im of one k row of images [n0, n0 + nb) over several output rows when output row r reads
 * input row r + dr at column o + off (unit strides, OW = W), channel c of dx: per image, the
 * entries of columns outside [lo, hi] are zeroed in `src` (scratch, per_image floats an image),
 * then the in-map rows are one contiguous add into the image's plane, adding +0 where a row wraps
 * into the next. */
static inline void col2im_shifted(const conv_shape *s, float *src, int64_t per_image, int ra,
                                  int rb, const tap *t, int n0, int nb, int c, cpu_view *dx)
{
    int w = s->w;
    int r0 = ra + t->dr < 0 ? -t->dr : ra, r1 = rb + t->dr >= s->h ? s->h - 1 - t->dr : rb;
    if (r0 > r1)
        return;
    int64_t j0 = plane_span(ra, r0 - 1, w) + t->lo, j1 = plane_span(ra, r1 - 1, w) + t->hi;
    for (int i = 0; i < nb; i++, src += per_image) {
        for (int r = r0; r <= r1; r++)
            zero_outside(src + plane_span(ra, r - 1, w), t->lo, t->hi, w);
        float *dst = cpu_at(dx, n0 + i, c, r0 + t->dr, t->lo + t->off); /* takes src[j0] */
#pragma omp simd
        for (int64_t j = j0; j <= j1; j++)
            dst[j - j0] += src[j];
    }
}

/* The transpose of im2col for images [n0, n0 + nb) over channels [c0, c0 + nc): dx[n0 + i,
 * c0 + ci, ir, ix] += col[ci * kh * kw + (ky * kw + kx)][i * R * OW + (r - ra) * OW + ox] for
 * the taps inside the map, k in order. */
LR_CLONES
static void col2im(const conv_shape *s, float *col, int64_t ld, int n0, int nb, int ra, int rb,
                   int c0, int nc, cpu_view *dx)
{
    const cpu_window *g = s->g;
    int ow = s->ow;
    int64_t per_image = plane_span(ra, rb, ow);
    bool shifted = g->sh == 1 && g->sw == 1 && ow == s->w && rb > ra;
    tap t;
    tap_set(s, 0, &t);
    for (int64_t k = 0; k < (int64_t)nc * s->kk; k++, tap_next(s, &t)) {
        if (t.lo > t.hi)
            continue;
        if (shifted) {
            col2im_shifted(s, col + k * ld, per_image, ra, rb, &t, n0, nb, c0 + t.ci, dx);
            continue;
        }
        for (int i = 0; i < nb; i++) {
            float *src = col + k * ld + i * per_image;
            for (int r = ra; r <= rb; r++, src += ow) {
                int ir = r * g->sh + t.dr;
                if (ir < 0 || ir >= s->h)
                    continue;
                float *dst = cpu_at(dx, n0 + i, c0 + t.ci, ir, 0);
                if (g->sw == 1) {
#pragma omp simd
                    for (int o = t.lo; o <= t.hi; o++)
                        dst[o + t.off] += src[o];
                } else if (g->sw == 2) {
                    add_even(dst + 2 * t.lo + t.off, src + t.lo, t.hi - t.lo + 1);
                } else {
                    for (int o = t.lo; o <= t.hi; o++)
                        dst[o * g->sw + t.off] += src[o];
                }
            }
        }
    }
}

/* buf[co][i * rows * OW + (r - ra) * OW + ox] = dy[n0 + i, c0 + co, r, ox] (see dy_matrix). */
LR_CLONES
static void gather_dy(const cpu_view *dy, int n0, int nb, int c0, int nc, int ra, int rb,
                      float *buf)
{
    int64_t span = plane_span(ra, rb, dy->w), p = span * nb;
    for (int co = 0; co < nc; co++)
        for (int i = 0; i < nb; i++) {
            const float *src = cpu_at(dy, n0 + i, c0 + co, ra, 0);
            float *dst = buf + co * p + i * span;
#pragma omp simd
            for (int64_t j = 0; j < span; j++)
                dst[j] = src[j];
        }
}

/* The backward GEMMs' (channels, P) operand: dy[n0 + i, c0 + co, r, ox] at
 * [co][i * rows * OW + (r - ra) * OW + ox] for nc channels, nb images, rows [ra, rb]. One image's
 * rows are already such a matrix (leading dimension: the view's plane); several are gathered into
 * buf. Returns the matrix and its leading dimension. */
static const float *dy_matrix(const cpu_view *dy, int n0, int nb, int c0, int nc, int ra, int rb,
                              float *buf, int64_t *ld)
{
    if (nb == 1) {
        *ld = (int64_t)dy->rows * dy->w;
        return cpu_at(dy, n0, c0, ra, 0);
    }
    gather_dy(dy, n0, nb, c0, nc, ra, rb, buf);
    *ld = plane_span(ra, rb, dy->w) * nb;
    return buf;
}

/* ------------------------------------------------------------------ forward */

static void check_conv(const cpu_window *g, const cpu_view *x, const cpu_view *y)
{
    check_window_shapes(g, x, y);
    LR_ASSERT(g->groups >= 1 && x->c % g->groups == 0 && y->c % g->groups == 0);
}

/* Output row r of the images of block `blk`: per group, im2col then one GEMM into `out`
 * (Cout, P); then y = out + bias. */
static void conv_fwd_unit(const conv_shape *s, const cpu_view *x, const float *w, const float *b,
                          cpu_view *y, int r, int blk, float *slice)
{
    int n0 = blk * s->img_block, nb = min_int(s->n - n0, s->img_block), ow = s->ow;
    int64_t p = (int64_t)nb * ow;
    float *col = slice, *out = slice + s->k * p;
    for (int grp = 0; grp < s->g->groups; grp++) {
        im2col(s, x, n0, nb, grp * s->cig, 0, s->k, r, r, col, p, padded_row(s, slice));
        cpu_gemm(false, false, s->cog, (int)p, (int)s->k, w + grp * s->cog * s->k, s->k, col, p,
                 false, out + (int64_t)grp * s->cog * p, p);
    }
    for (int co = 0; co < s->cout; co++) {
        float bias = b ? b[co] : 0.0f;
        for (int i = 0; i < nb; i++) {
            const float *src = out + co * p + (int64_t)i * ow;
            float *dst = cpu_at(y, n0 + i, co, r, 0);
#pragma omp simd
            for (int o = 0; o < ow; o++)
                dst[o] = src[o] + bias;
        }
    }
}

void cpu_conv_fwd(const cpu_window *g, const cpu_view *x, const float *w, const float *b,
                  cpu_view *y, int r_lo, int r_hi, const cpu_scratch *ws)
{
    check_conv(g, x, y);
    check_range(r_lo, r_hi, y->h);
    check_rows(y, r_lo, r_hi);
    check_window_rows(g, r_lo, r_hi, x);
    if (r_lo > r_hi)
        return;
    conv_shape s = conv_shape_of(g, x->n, x->c, x->h, x->w, y->c);
    int rows = r_hi - r_lo + 1;
    int64_t units = (int64_t)rows * s.n_img_blocks;
    int threads = conv_threads(&s, ws, units, row_work(y, r_lo, r_hi) * s.k);
    if (conv_direct_fwd(&s)) {
        /* a block's rows in order, each thread a run of them: its planes are read one row after
         * another, and two threads do not write neighbouring output rows, whose cache lines they
         * would share (a row of 28 floats is 1.75 lines) */
#pragma omp parallel for schedule(static) num_threads(threads)
        for (int64_t u = 0; u < units; u++)
            conv_direct_fwd_unit(&s, x, w, b, y, r_lo + (int)(u % rows), (int)(u / rows),
                                 thread_slice(&s, ws));
        return;
    }
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t u = 0; u < units; u++)
        conv_fwd_unit(&s, x, w, b, y, r_lo + (int)(u / s.n_img_blocks), (int)(u % s.n_img_blocks),
                      thread_slice(&s, ws));
}

/* ------------------------------------------------------------------ backward */

/* The backward passes walk the pixels of the call in chunks: the images of block `blk`, rows
 * [ra, rb] of each (every chunk of the call in order: call chunk_next until it returns false). */
typedef struct {
    int n0, nb, ra, rb;
    int64_t p; /* GEMM columns: nb * (rb - ra + 1) * OW */
} chunk;

static bool chunk_next(const conv_shape *s, int blk, int r_lo, int r_hi, chunk *c)
{
    int ra = c->p ? c->rb + 1 : r_lo;
    if (ra > r_hi)
        return false;
    c->n0 = blk * s->bwd_block;
    c->nb = min_int(s->n - c->n0, s->bwd_block);
    c->ra = ra;
    c->rb = min_int(ra + s->bwd_rows - 1, r_hi);
    c->p = (int64_t)c->nb * (c->rb - c->ra + 1) * s->ow;
    return true;
}

/* dx of the images of block `blk`, input channels [ci0, ci0 + nci) of group grp, += the
 * back-propagation of dy rows [r_lo, r_hi]. */
static void conv_bwd_data_unit(const conv_shape *s, const float *w, const cpu_view *dy, int r_lo,
                               int r_hi, int grp, int blk, int ci0, int nci, cpu_view *dx,
                               float *slice)
{
    int64_t k0 = (int64_t)ci0 * s->kk, nk = (int64_t)nci * s->kk;
    chunk c = {0};
    while (chunk_next(s, blk, r_lo, r_hi, &c)) {
        float *dcol = slice + (int64_t)s->cog * c.p;
        int64_t ld;
        const float *dym = dy_matrix(dy, c.n0, c.nb, grp * s->cog, s->cog, c.ra, c.rb, slice, &ld);
        cpu_gemm(true, false, (int)nk, (int)c.p, s->cog, w + grp * s->cog * s->k + k0, s->k, dym,
                 ld, false, dcol, c.p);
        col2im(s, dcol, c.p, c.n0, c.nb, c.ra, c.rb, grp * s->cig + ci0, nci, dx);
    }
}

/* dx unit u of conv_bwd_data_units (group, image block, input channel block). */
static void conv_bwd_data_item(const conv_shape *s, const float *w, const cpu_view *dy, int r_lo,
                               int r_hi, cpu_view *dx, int64_t u, float *slice)
{
    int64_t per_group = (int64_t)s->n_bwd_blocks * s->n_ci_blocks;
    int grp = (int)(u / per_group), blk = (int)(u % per_group / s->n_ci_blocks);
    int ci0 = (int)(u % s->n_ci_blocks) * s->ci_block;
    conv_bwd_data_unit(s, w, dy, r_lo, r_hi, grp, blk, ci0, min_int(s->cig - ci0, s->ci_block), dx,
                       slice);
}

static int64_t conv_bwd_data_units(const conv_shape *s)
{
    return (int64_t)s->n_bwd_blocks * s->n_ci_blocks * s->g->groups;
}

/* Tiles [kb0, kb1) of dw's K blocks for group grp, output channels [co0, co0 + nco): each
 * chunk's gradient rows are gathered once (dy_matrix) and serve every tile of the set, which adds
 * that chunk's GEMM into its block; a tile sums the image blocks and row chunks in order, as alone.
 * A stripe's chunks hold several images, whose rows the whole map's one-image chunks need not
 * gather; gathering them once per tile was about half of what a stripe's backward lost to the
 * whole map's (bench/conv_stripes.c, 3-row stripes, one thread, three alternating pairs of runs:
 * tiny-vgg's 16 -> 32 at 14x14 1.20-1.24x the whole map's time when each tile gathered, 1.10-1.13x
 * once a set, both with tiles of at least DW_K_MIN 16 columns; its 16 -> 16 at 28x28 1.15-1.16x
 * and 1.08-1.09x). */
static void conv_bwd_filter_set(const conv_shape *s, const cpu_view *x, const cpu_view *dy,
                                int r_lo, int r_hi, int grp, int co0, int nco, int kb0, int kb1,
                                float *dw, float *slice)
{
    float *pad = padded_row(s, slice);
    for (int blk = 0; blk < s->n_bwd_blocks; blk++) {
        chunk c = {0};
        while (chunk_next(s, blk, r_lo, r_hi, &c)) {
            float *col = slice + (int64_t)nco * c.p;
            int64_t ld;
            const float *dym =
                dy_matrix(dy, c.n0, c.nb, grp * s->cog + co0, nco, c.ra, c.rb, slice, &ld);
            for (int kb = kb0; kb < kb1; kb++) {
                int64_t k0 = (int64_t)kb * s->k_block;
                int nk = (int)(s->k - k0 < s->k_block ? s->k - k0 : s->k_block);
                im2col(s, x, c.n0, c.nb, grp * s->cig, k0, k0 + nk, c.ra, c.rb, col, c.p, pad);
                cpu_gemm(false, true, nco, nk, (int)c.p, dym, ld, col, c.p, true,
                         dw + (int64_t)(grp * s->cog + co0) * s->k + k0, s->k);
            }
        }
    }
}

/* dw item t of conv_bwd_filter_items: (group, output channel block, set q of `sets` sets of
 * consecutive K blocks). */
static void conv_bwd_filter_item(const conv_shape *s, const cpu_view *x, const cpu_view *dy,
                                 int r_lo, int r_hi, float *dw, int64_t t, int sets, float *slice)
{
    int64_t per_group = (int64_t)s->n_co_blocks * sets;
    int grp = (int)(t / per_group), cb = (int)(t % per_group / sets), q = (int)(t % sets);
    int co0 = cb * s->co_block, nco = min_int(s->cog - co0, s->co_block);
    int kb0 = (int)((int64_t)q * s->n_k_blocks / sets);
    int kb1 = (int)((int64_t)(q + 1) * s->n_k_blocks / sets);
    conv_bwd_filter_set(s, x, dy, r_lo, r_hi, grp, co0, nco, kb0, kb1, dw, slice);
}

/* dw's tiles (group, output channel block, K block), and its items when their K blocks go in
 * `sets` sets: one set a thread, so a thread gathers a chunk's gradients once. The tiles' sums
 * do not depend on the sets (conv_bwd_filter_set), so the bits do not depend on the threads. */
static int64_t conv_bwd_filter_tiles(const conv_shape *s)
{
    return (int64_t)s->n_co_blocks * s->n_k_blocks * s->g->groups;
}

static int64_t conv_bwd_filter_items(const conv_shape *s, int sets)
{
    return (int64_t)s->n_co_blocks * sets * s->g->groups;
}

/* db of output channels [co0, co0 + BIAS_BLOCK) += the sums of their dy rows, in double per
 * channel, images in order. */
LR_CLONES
static void conv_bwd_bias_item(const cpu_view *dy, int r_lo, int r_hi, float *db, int co0)
{
    int64_t span = plane_span(r_lo, r_hi, dy->w);
    for (int co = co0; co < dy->c && co < co0 + BIAS_BLOCK; co++) {
        double sum = 0.0;
        for (int n = 0; n < dy->n; n++)
            sum += span_sum(cpu_at(dy, n, co, r_lo, 0), span);
        db[co] += (float)sum;
    }
}

void cpu_conv_fwd_padding(const float *b, cpu_view *y, int r_lo, int r_hi)
{
    check_view(y);
    check_range(r_lo, r_hi, y->h);
    check_rows(y, r_lo, r_hi);
    int64_t span = plane_span(r_lo, r_hi, y->w);
    for (int n = 0; n < y->n; n++)
        for (int c = 0; c < y->c; c++) {
            float v = b ? b[c] : 0.0f, *p = cpu_at(y, n, c, r_lo, 0);
            for (int64_t i = 0; i < span; i++)
                p[i] = v;
        }
}

void cpu_conv_bwd_padding(const cpu_view *dy, int r_lo, int r_hi, float *db)
{
    check_view(dy);
    check_range(r_lo, r_hi, dy->h);
    check_rows(dy, r_lo, r_hi);
    for (int co0 = 0; db && co0 < dy->c; co0 += BIAS_BLOCK)
        conv_bwd_bias_item(dy, r_lo, r_hi, db, co0);
}

void cpu_conv_bwd(const cpu_window *g, const cpu_view *x, const float *w, const cpu_view *dy,
                  int r_lo, int r_hi, cpu_view *dx, float *dw, float *db, const cpu_scratch *ws)
{
    check_conv(g, x, dy);
    check_range(r_lo, r_hi, dy->h);
    check_rows(dy, r_lo, r_hi);
    if (r_lo > r_hi)
        return;
    conv_shape s = conv_shape_of(g, x->n, x->c, x->h, x->w, dy->c);
    conv_shape_fit_rows(&s, r_hi - r_lo + 1);
    int64_t work = row_work(dy, r_lo, r_hi) * s.k;
    if (dw)
        check_window_rows(g, r_lo, r_hi, x);
    if (dx) {
        check_view(dx);
        LR_ASSERT(same_map(dx, x));
        check_window_rows(g, r_lo, r_hi, dx);
    }
    /* db's channel blocks, dw's tiles and dx's units in one parallel loop: they write apart,
     * and a stripe's call then wakes the threads once, not three times */
    int64_t biases = db ? ceil_div(dy->c, BIAS_BLOCK) : 0;
    bool direct = conv_direct_bwd(&s);
    int64_t tiles = !dw ? 0 : direct ? conv_direct_dw_tiles(&s) : conv_bwd_filter_tiles(&s);
    int64_t units = !dx ? 0 : direct ? conv_direct_dx_units(&s) : conv_bwd_data_units(&s);
    int64_t items = biases + tiles + units;
    if (items == 0)
        return;
    int threads = conv_threads(&s, ws, items, work * ((dw != NULL) + (dx != NULL)));
    int sets = min_int(s.n_k_blocks, threads);
    if (dw && !direct)
        tiles = conv_bwd_filter_items(&s, sets), items = biases + tiles + units;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t u = 0; u < items; u++) {
        if (u < biases)
            conv_bwd_bias_item(dy, r_lo, r_hi, db, (int)u * BIAS_BLOCK);
        else if (u < biases + tiles && direct)
            conv_direct_dw_tile(&s, x, dy, r_lo, r_hi, dw, u - biases, thread_slice(&s, ws));
        else if (u < biases + tiles)
            conv_bwd_filter_item(&s, x, dy, r_lo, r_hi, dw, u - biases, sets,
                                 thread_slice(&s, ws));
        else if (direct)
            conv_direct_dx_unit(&s, w, dy, r_lo, r_hi, dx, u - biases - tiles,
                                thread_slice(&s, ws));
        else
            conv_bwd_data_item(&s, w, dy, r_lo, r_hi, dx, u - biases - tiles,
                               thread_slice(&s, ws));
    }
}
