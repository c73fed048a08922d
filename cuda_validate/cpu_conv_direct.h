/* cpu_conv_direct.h - the direct kernels of small convolutions (cpu_conv_direct.c) as
 * cpu_conv.c calls them, and what both files share: the shape of one call's work (conv_shape,
 * worked out in cpu_conv.c) and the padded copy of an input row. Internal to them; cpu_ops.h is
 * the interface.
 *
 * Legend as in cpu_conv.c: N batch, C channels, H/W of a map, OH/OW of the output,
 * K = Cin/groups * kh * kw, P the pixels (GEMM columns) of a unit.
 * Deliberately not here: the choice of units and threads (cpu_conv.c).
 */
#ifndef LR_CPU_CONV_DIRECT_H
#define LR_CPU_CONV_DIRECT_H

#include "cpu_kernel.h"

typedef struct {
    const cpu_window *g;
    int n, cin, h, w, cout, oh, ow;
    int cig, cog, kk;       /* input and output channels per group; kh * kw */
    int64_t k;              /* GEMM depth of a group: cig * kk */
    int img_block, n_img_blocks;         /* forward */
    int bwd_block, n_bwd_blocks, bwd_rows; /* backward: images per block, rows per chunk */
    int64_t bwd_pixels;     /* GEMM columns of the largest backward chunk of the layer */
    int ci_block, n_ci_blocks;           /* backward data */
    int co_block, n_co_blocks, k_block, n_k_blocks; /* backward filter */
    int padded_w;           /* an input row with its padding: what the taps of one row read */
} conv_shape;

static inline int min_int(int a, int b)
{
    return a < b ? a : b;
}

static inline void zero_floats(float *dst, int64_t len)
{
#pragma omp simd
    for (int64_t j = 0; j < len; j++)
        dst[j] = 0.0f;
}

/* pad[j] = x[n, c, ir, j - pw] for j in [0, padded_w), 0 outside the map (all of it when row ir
 * is outside): every tap of the row then reads pad[o * sw + kx * dw], with no edge cases. */
static inline void pad_row(const conv_shape *s, const cpu_view *x, int n, int c, int ir,
                           float *pad)
{
    int pw = s->g->pw, w = s->w;
    if (ir < 0 || ir >= s->h) {
        zero_floats(pad, s->padded_w);
        return;
    }
    const float *src = cpu_at(x, n, c, ir, 0);
    for (int j = 0; j < pw; j++)
        pad[j] = 0.0f;
#pragma omp simd
    for (int j = 0; j < w; j++)
        pad[pw + j] = src[j];
    for (int j = pw + w; j < s->padded_w; j++)
        pad[j] = 0.0f;
}

/* ------------------------------------------------------------------ direct kernels */

/* Whether the layer's forward (resp. backward) runs direct (cpu_conv_direct.c) rather than as
 * im2col + GEMM: unit column stride, a shallow GEMM and few output channels a group, where a GEMM
 * spends more time packing its operands than multiplying them; and cpu_conv_set_direct allows it.
 * Each depends on the layer's shape only, never on the row range. */
bool conv_direct_fwd(const conv_shape *s);
bool conv_direct_bwd(const conv_shape *s);

/* Scratch floats one thread needs for the direct kernels the layer's shape suits (0: none),
 * whether or not they are allowed (cpu_conv_set_direct). */
int64_t conv_direct_floats(const conv_shape *s);

/* Output row r of the images of forward block `blk` (s->img_block images). */
void conv_direct_fwd_unit(const conv_shape *s, const cpu_view *x, const float *w, const float *b,
                          cpu_view *y, int r, int blk, float *slice);

/* dw's tiles: a group's block of DIRECT_CO output channels by all K columns. */
int64_t conv_direct_dw_tiles(const conv_shape *s);
void conv_direct_dw_tile(const conv_shape *s, const cpu_view *x, const cpu_view *dy, int r_lo,
                         int r_hi, float *dw, int64_t t, float *slice);

/* dx's units: (group, forward image block, input channel block). */
int64_t conv_direct_dx_units(const conv_shape *s);
void conv_direct_dx_unit(const conv_shape *s, const float *w, const cpu_view *dy, int r_lo,
                         int r_hi, cpu_view *dx, int64_t u, float *slice);

#endif
