/* conv_bench.h - what the CPU convolution benches (conv_direct.c, conv_stripes.c) share: a layer
 * of batch CONV_BENCH_BATCH with random operands, one pass of it timed in calls of a few rows,
 * the median of the rounds, and the table written to stdout and to a file.
 * Deliberately not here: what a bench compares, its rounds and columns.
 */
#ifndef LR_CONV_BENCH_H
#define LR_CONV_BENCH_H

#include <stdio.h>

#include "cpu_ops.h"

enum { CONV_BENCH_BATCH = 32 };

typedef struct {
    const char *name;
    int cin, h, w, cout;
    cpu_window g; /* {kh, kw, sh, sw, ph, pw, dh, dw, groups} */
    int first;    /* a net's first layer: its backward computes no dx */
} conv_bench_layer;

typedef struct {
    const conv_bench_layer *l;
    int oh, ow;
    cpu_view x, y, dy, dx;
    float *w, *b, *dw, *db;
    cpu_scratch ws;
} conv_bench;

/* The layer at batch CONV_BENCH_BATCH, uniform operands in [-0.5, 0.5), scratch for `threads`
 * threads. Exits on allocation failure. */
conv_bench conv_bench_new(const conv_bench_layer *l, int threads);
void conv_bench_free(conv_bench *s);

/* The forward (pass 0) or backward (1: dw, db and, but for a first layer, dx) over all output
 * rows, `rows` a call; its milliseconds. */
double conv_bench_timed(conv_bench *s, int pass, int rows);

/* The median of v[0, n), which it sorts. */
double conv_bench_median(double *v, int n);

/* A memory stream for the bench's table (*text, *size: open_memstream's) and the GEMM's
 * description in gemm[0, gemm_size); NULL when the stream cannot be opened. */
FILE *conv_bench_open(char **text, size_t *size, char *gemm, size_t gemm_size);

/* text to stdout, and to `out` (when not NULL) all or nothing; 0, or 1 with a line on stderr
 * naming `prog`. */
int conv_bench_write(const char *prog, const char *text, const char *out);

#endif
