/* cpu_conv_direct.c - small convolutions computed directly, without im2col and GEMM (see
 * cpu_conv_direct.h for when; cpu_ops.h for the conventions).
 *
 * Legend: N batch, C channels, H/W of a map, OW output width, K = Cin/groups * kh * kw,
 * q = ci * kh + ky one (input channel, kernel row) of a group, pitch = the padded input row
 * (padded_w: W + 2 * pw when the column stride is 1).
 *
 * Why: a convolution of one to a few input channels (a net's first layer, a grouped layer) has
 * a GEMM a few dozen deep and a few channels tall; OpenBLAS then spends its time packing, and
 * im2col copies every input row kh * kw times. tiny-mix's conv1 (1 -> 8 channels, 3x3) ran its
 * forward at 8 GFLOP/s that way.
 *
 * The layout: a unit takes one output row r of a block of images. For each q, the input row that
 * r reads through kernel row ky is laid out once per image, padded, the images one after another
 * (pads[q][i * pitch + j] = x[n0 + i, ci, r * sh + ky * dh - ph, j - pw]). Output column o of
 * image i through tap kx then reads pads[q][i * pitch + o + kx * dw]: every tap is one shifted
 * run over all the images at once, vectorised along it. The pitch - OW positions past each
 * image's last output column compute something nobody reads (forward) or hold zeros (the
 * gradients laid out the same way), so the runs need no edge cases.
 *
 * Exactness: an output element is 0 + w[k] * x[k] summed over k in order, then + bias. The sum
 * does not depend on the row range, the image block or the thread (row-split exactness of
 * cpu_ops.h). The gradients sum in a fixed order per unit or tile (a dw tile: image blocks, then
 * rows, in order; a dx unit: its rows in order; vector lanes combined in order), so they depend
 * on the row range within rounding only, never on the thread count. Vectors are GCC's generic
 * vectors; ISO C mode keeps multiplies and adds apart, so the AVX2 clone and the baseline give the
 * same bits.
 *
 * Deliberately not here: the choice of path, units and threads (cpu_conv.c), memory allocation.
 */
#include "cpu_conv_direct.h"

#include <string.h>

/* The padding and zeroing loops are a few dozen floats long; GCC would turn them into memset and
 * memcpy calls, which cost more than the loops at that length. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-tree-loop-distribute-patterns")
#endif

/* Where the direct kernels beat im2col + GEMM: bench/conv_direct.c (AMD EPYC, Zen 3, OpenBLAS's
 * Zen kernels, one thread, batch 32, medians of 15 alternating rounds), GEMM time / direct time
 * over the whole map and over 2-row stripes:
 *  - forward: 1.1x-2.1x on every layer the bench has (1 -> 8, 1 -> 16, 8 -> 8 channels, 8 -> 8 in
 *    2 dilated groups, 8 -> 16, and 16 -> 16 at K 144: 1.07x-1.41x over four runs; bench/results/
 *    conv_direct.md);
 *  - backward: 1.2x-2.0x with K <= 72 and 8 output channels a group; with 16 (1 -> 16, 8 -> 16:
 *    the bench run while the backward's bound was 16) 0.75x-0.86x over the whole map and
 *    0.96x-1.07x over stripes, where the GEMM's 16 rows pay off.
 * Throw-away runs beyond: 16 -> 32 and 3 -> 64 a tie or a loss forward, and 0.5x backward. So:
 * unit column stride, and a GEMM depth and output channels a group of at most FWD_K_MAX and
 * FWD_COG_MAX forward, BWD_K_MAX and BWD_COG_MAX backward. */
enum { FWD_K_MAX = 144, BWD_K_MAX = 72, FWD_COG_MAX = 16, BWD_COG_MAX = 8 };
/* Output channels a forward run or a dw tile computes at once (registers: 2 vectors each). */
enum { DIRECT_CO = 4 };
/* Floats a run takes at a time: two vectors. Runs are padded to a multiple of it. */
enum { VEC = 8, RUN = 2 * VEC };

/* cpu_kernel.h's eight-float vectors */
typedef cpu_v8 v8;
_Static_assert(VEC == 8, "a run's vectors are cpu_v8");

/* The lanes of v summed in order. */
CPU_INLINE float lanes_sum(v8 v)
{
    float s = v[0];
    for (int j = 1; j < VEC; j++)
        s += v[j];
    return s;
}

static bool direct_allowed = true;

void cpu_conv_set_direct(bool allowed)
{
    direct_allowed = allowed;
}

/* Whether the layer's shape suits the direct forward (resp. backward): what its scratch is sized
 * for, allowed or not. */
static bool fwd_shape(const conv_shape *s)
{
    return s->g->sw == 1 && s->k <= FWD_K_MAX && s->cog <= FWD_COG_MAX;
}

static bool bwd_shape(const conv_shape *s)
{
    return s->g->sw == 1 && s->k <= BWD_K_MAX && s->cog <= BWD_COG_MAX;
}

bool conv_direct_fwd(const conv_shape *s)
{
    return direct_allowed && fwd_shape(s);
}

bool conv_direct_bwd(const conv_shape *s)
{
    return direct_allowed && bwd_shape(s);
}

/* One unit's run geometry: nb images of `pitch` floats, `lout` positions computed (nb * pitch
 * rounded up to RUN), `reach` floats the taps of one row span beyond a position. */
typedef struct {
    int n0, nb, pitch, reach;
    int64_t span, lout, lp; /* nb * pitch; the positions; a padded input run: lout + reach */
} run_shape;

static run_shape run_shape_of(const conv_shape *s, int blk)
{
    run_shape u;
    u.n0 = blk * s->img_block;
    u.nb = min_int(s->n - u.n0, s->img_block);
    u.pitch = s->padded_w;
    u.reach = (s->g->kw - 1) * s->g->dw;
    u.span = (int64_t)u.nb * u.pitch;
    u.lout = (u.span + RUN - 1) / RUN * RUN;
    u.lp = u.lout + u.reach;
    return u;
}

int64_t conv_direct_floats(const conv_shape *s)
{
    run_shape u = run_shape_of(s, 0); /* the first block is the largest */
    int64_t rows = (int64_t)s->cig * s->g->kh;
    int64_t fwd_dw = rows * u.lp + DIRECT_CO * u.lout; /* pads and four runs */
    int64_t dx = (int64_t)s->cog * (u.reach + u.lout) + DIRECT_CO * u.lout;
    int64_t most = fwd_shape(s) || bwd_shape(s) ? fwd_dw : 0;
    return bwd_shape(s) && dx > most ? dx : most;
}

/* pads[q] for output row r, images of u, input channels c0 + ci of the group (see the top). */
LR_CLONES
static void fill_pads(const conv_shape *s, const run_shape *u, const cpu_view *x, int c0, int r,
                      float *pads)
{
    const cpu_window *g = s->g;
    for (int ci = 0; ci < s->cig; ci++)
        for (int ky = 0; ky < g->kh; ky++) {
            float *row = pads + (int64_t)(ci * g->kh + ky) * u->lp;
            int ir = r * g->sh + ky * g->dh - g->ph;
            for (int i = 0; i < u->nb; i++)
                pad_row(s, x, u->n0 + i, c0 + ci, ir, row + (int64_t)i * u->pitch);
            zero_floats(row + u->span, u->lp - u->span);
        }
}

/* dst[i * pitch + o] = dy[n0 + i, c, r, o] for o < OW, 0 for the rest of each pitch and up to
 * lout. */
LR_CLONES
static void fill_grad_run(const conv_shape *s, const run_shape *u, const cpu_view *dy, int c, int r,
                          float *dst)
{
    for (int i = 0; i < u->nb; i++) {
        const float *src = cpu_at(dy, u->n0 + i, c, r, 0);
        float *d = dst + (int64_t)i * u->pitch;
#pragma omp simd
        for (int o = 0; o < s->ow; o++)
            d[o] = src[o];
        zero_floats(d + s->ow, u->pitch - s->ow);
    }
    zero_floats(dst + u->span, u->lout - u->span);
}

/* ------------------------------------------------------------------ forward */

/* out[c][j] = 0 + the sum over the terms t in order of wt[t * DIRECT_CO + c] * src[t][j], for
 * the DIRECT_CO channels c and j in [0, lout): the forward (a term a tap: input row and kernel
 * column) and the backward data (a term a kernel column and an output channel) alike. Each load
 * of a run serves the four channels. */
LR_CLONES
static void weighted_runs(const float *const *src, int terms, const float *wt, float *out,
                          int64_t lout)
{
    for (int64_t j0 = 0; j0 < lout; j0 += RUN) {
        v8 a0 = {0}, b0 = {0}, a1 = {0}, b1 = {0}, a2 = {0}, b2 = {0}, a3 = {0}, b3 = {0};
        const float *w = wt;
        for (int t = 0; t < terms; t++, w += DIRECT_CO) {
            v8 lo = v8_load(src[t] + j0), hi = v8_load(src[t] + j0 + VEC);
            a0 += w[0] * lo, b0 += w[0] * hi;
            a1 += w[1] * lo, b1 += w[1] * hi;
            a2 += w[2] * lo, b2 += w[2] * hi;
            a3 += w[3] * lo, b3 += w[3] * hi;
        }
        v8_store(out + j0, a0), v8_store(out + j0 + VEC, b0);
        v8_store(out + lout + j0, a1), v8_store(out + lout + j0 + VEC, b1);
        v8_store(out + 2 * lout + j0, a2), v8_store(out + 2 * lout + j0 + VEC, b2);
        v8_store(out + 3 * lout + j0, a3), v8_store(out + 3 * lout + j0 + VEC, b3);
    }
}

/* y[n0 + i, c, r, o] = run[i * pitch + o] + bias for the images of u, o < OW. */
LR_CLONES
static void store_run(const run_shape *u, const float *run, float bias, cpu_view *y, int c, int r,
                      int ow)
{
    for (int i = 0; i < u->nb; i++) {
        const float *src = run + (int64_t)i * u->pitch;
        float *dst = cpu_at(y, u->n0 + i, c, r, 0);
#pragma omp simd
        for (int o = 0; o < ow; o++)
            dst[o] = src[o] + bias;
    }
}

/* wt[k * DIRECT_CO + c] = w of output channel co0 + c at depth k, 0 past the group's channels. */
static void gather_weights(const conv_shape *s, const float *w, int co0, int nco, float *wt)
{
    for (int64_t k = 0; k < s->k; k++)
        for (int c = 0; c < DIRECT_CO; c++)
            wt[k * DIRECT_CO + c] = c < nco ? w[(co0 + c) * s->k + k] : 0.0f;
}

void conv_direct_fwd_unit(const conv_shape *s, const cpu_view *x, const float *w, const float *b,
                          cpu_view *y, int r, int blk, float *slice)
{
    run_shape u = run_shape_of(s, blk);
    int rows = s->cig * s->g->kh;
    float *pads = slice, *out = slice + rows * u.lp;
    float wt[FWD_K_MAX * DIRECT_CO];
    const float *taps[FWD_K_MAX]; /* tap k = q * kw + kx reads pads[q] from kx * dw on */
    for (int q = 0; q < rows; q++)
        for (int kx = 0; kx < s->g->kw; kx++)
            taps[q * s->g->kw + kx] = pads + q * u.lp + kx * s->g->dw;
    for (int grp = 0; grp < s->g->groups; grp++) {
        fill_pads(s, &u, x, grp * s->cig, r, pads);
        for (int co0 = 0; co0 < s->cog; co0 += DIRECT_CO) {
            int nco = min_int(DIRECT_CO, s->cog - co0), first = grp * s->cog + co0;
            gather_weights(s, w, first, nco, wt);
            weighted_runs(taps, (int)s->k, wt, out, u.lout);
            for (int c = 0; c < nco; c++)
                store_run(&u, out + c * u.lout, b ? b[first + c] : 0.0f, y, first + c, r, s->ow);
        }
    }
}

/* ------------------------------------------------------------------ backward filter */

int64_t conv_direct_dw_tiles(const conv_shape *s)
{
    return (int64_t)s->g->groups * ((s->cog + DIRECT_CO - 1) / DIRECT_CO);
}

/* sums[k * DIRECT_CO + c] = sum over j of grads[c][j] * pads[q][j + kx * dw] for each depth
 * k = q * kw + kx, j in [0, lout), lanes combined in order. */
LR_CLONES
static void dw_runs(const float *pads, int64_t lp, int rows, int kw, int dw, const float *grads,
                    int64_t lout, float *sums)
{
    for (int q = 0; q < rows; q++)
        for (int kx = 0; kx < kw; kx++) {
            const float *src = pads + q * lp + kx * dw;
            v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
            for (int64_t j = 0; j < lout; j += VEC) {
                v8 v = v8_load(src + j);
                a0 += v8_load(grads + j) * v;
                a1 += v8_load(grads + lout + j) * v;
                a2 += v8_load(grads + 2 * lout + j) * v;
                a3 += v8_load(grads + 3 * lout + j) * v;
            }
            float *d = sums + (q * kw + kx) * DIRECT_CO;
            d[0] = lanes_sum(a0), d[1] = lanes_sum(a1), d[2] = lanes_sum(a2), d[3] = lanes_sum(a3);
        }
}

void conv_direct_dw_tile(const conv_shape *s, const cpu_view *x, const cpu_view *dy, int r_lo,
                         int r_hi, float *dw, int64_t t, float *slice)
{
    int per_group = (s->cog + DIRECT_CO - 1) / DIRECT_CO;
    int grp = (int)(t / per_group), co0 = (int)(t % per_group) * DIRECT_CO;
    int nco = min_int(DIRECT_CO, s->cog - co0), first = grp * s->cog + co0;
    int rows = s->cig * s->g->kh;
    float sums[BWD_K_MAX * DIRECT_CO];
    for (int blk = 0; blk < s->n_img_blocks; blk++) {
        run_shape u = run_shape_of(s, blk);
        float *pads = slice, *grads = slice + rows * u.lp;
        for (int c = nco; c < DIRECT_CO; c++) /* past the group's channels: zeros all along */
            zero_floats(grads + c * u.lout, u.lout);
        for (int r = r_lo; r <= r_hi; r++) { /* a plane's rows one after another: prefetchable */
            fill_pads(s, &u, x, grp * s->cig, r, pads);
            for (int c = 0; c < nco; c++)
                fill_grad_run(s, &u, dy, first + c, r, grads + c * u.lout);
            dw_runs(pads, u.lp, rows, s->g->kw, s->g->dw, grads, u.lout, sums);
            for (int c = 0; c < nco; c++)
                for (int64_t k = 0; k < s->k; k++)
                    dw[(first + c) * s->k + k] += sums[k * DIRECT_CO + c];
        }
    }
}

/* ------------------------------------------------------------------ backward data */

int64_t conv_direct_dx_units(const conv_shape *s)
{
    return (int64_t)s->g->groups * s->n_img_blocks * s->n_ci_blocks;
}

/* dx[n0 + i, c, ir, ix] += run[i * pitch + ix] for the images of u, ix < W. */
LR_CLONES
static void add_run(const run_shape *u, const float *run, cpu_view *dx, int c, int ir, int w)
{
    for (int i = 0; i < u->nb; i++) {
        const float *src = run + (int64_t)i * u->pitch;
        float *dst = cpu_at(dx, u->n0 + i, c, ir, 0);
#pragma omp simd
        for (int ix = 0; ix < w; ix++)
            dst[ix] += src[ix];
    }
}

void conv_direct_dx_unit(const conv_shape *s, const float *w, const cpu_view *dy, int r_lo,
                         int r_hi, cpu_view *dx, int64_t u_index, float *slice)
{
    const cpu_window *g = s->g;
    int64_t per_group = (int64_t)s->n_img_blocks * s->n_ci_blocks;
    int grp = (int)(u_index / per_group), blk = (int)(u_index % per_group / s->n_ci_blocks);
    int ci0 = (int)(u_index % s->n_ci_blocks) * s->ci_block;
    int nci = min_int(s->cig - ci0, s->ci_block);
    run_shape u = run_shape_of(s, blk);
    int64_t ld = u.reach + u.lout;
    float *grads = slice, *gin = slice + s->cog * ld;
    /* the kw * cog weights of one kernel row for DIRECT_CO input channels (0 past the last),
     * and the gradient runs they weigh: term kx * cog + co reads grads[co] from -kx * dw on */
    float wk[BWD_K_MAX * BWD_COG_MAX * DIRECT_CO];
    const float *terms[BWD_K_MAX * BWD_COG_MAX];
    for (int kx = 0; kx < g->kw; kx++)
        for (int co = 0; co < s->cog; co++)
            terms[kx * s->cog + co] = grads + co * ld + u.reach - kx * g->dw;
    for (int co = 0; co < s->cog; co++)
        zero_floats(grads + co * ld, u.reach);
    for (int r = r_lo; r <= r_hi; r++) {
        for (int co = 0; co < s->cog; co++)
            fill_grad_run(s, &u, dy, grp * s->cog + co, r, grads + co * ld + u.reach);
        for (int ky = 0; ky < g->kh; ky++) {
            int ir = r * g->sh + ky * g->dh - g->ph;
            if (ir < 0 || ir >= s->h)
                continue;
            for (int c0 = ci0; c0 < ci0 + nci; c0 += DIRECT_CO) {
                int nc = min_int(DIRECT_CO, ci0 + nci - c0);
                for (int kx = 0; kx < g->kw; kx++)
                    for (int co = 0; co < s->cog; co++)
                        for (int c = 0; c < DIRECT_CO; c++)
                            wk[(kx * s->cog + co) * DIRECT_CO + c] =
                                c < nc ? w[(grp * s->cog + co) * s->k +
                                           ((c0 + c) * g->kh + ky) * g->kw + kx]
                                       : 0.0f;
                weighted_runs(terms, g->kw * s->cog, wk, gin, u.lout);
                for (int c = 0; c < nc; c++) /* each dx row gets its terms in the order of r */
                    add_run(&u, gin + c * u.lout + g->pw, dx, grp * s->cig + c0 + c, ir, s->w);
            }
        }
    }
}
