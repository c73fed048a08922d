/* conv_direct.c - the CPU backend's two convolution paths side by side on the layers that run
 * direct (cuda_validate/cpu_conv_direct.c) against im2col + GEMM (cpu_conv_set_direct(false)).
 *
 *   conv_direct [ROUNDS] [OUT]       (make build/bin/conv_direct; ROUNDS default 15)
 *
 * Per layer, batch 32, one thread: ROUNDS rounds, each timing through each path the forward and
 * the backward (dw, db and, but for a net's first layer, dx) over the whole map, the order
 * swapped every round; then the same over stripes of 2 output rows (one call per stripe, as a
 * row schedule makes them). Medians of the rounds, and GEMM / direct (above 1: direct is faster).
 * A markdown table to stdout, and to OUT when given. The layers are the tiny nets' whose forward
 * runs direct (unit column stride, K <= 144, at most 16 output channels a group; the backward
 * only with K <= 72 and at most 8, from this table); wider ones stay with the GEMM, where direct
 * lost in throw-away runs (cpu_conv_direct.c has the numbers).
 * Deliberately not here: threads (one, so that a shared machine slows both paths alike), other
 * ops.
 */
#define _POSIX_C_SOURCE 200809L
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "conv_bench.h"

static const conv_bench_layer layers[] = {
    {"tiny-mix conv1 (1->8, 28x28; no dx)", 1, 28, 28, 8, {3, 3, 1, 1, 1, 1, 1, 1, 1}, 1},
    {"tiny-mix conv2 (8->8, 2 groups, dilation 2, 14x14)", 8, 14, 14, 8,
     {3, 3, 1, 1, 2, 2, 2, 2, 2}, 0},
    {"tiny-vgg conv1 (1->16, 28x28; no dx)", 1, 28, 28, 16, {3, 3, 1, 1, 1, 1, 1, 1, 1}, 1},
    {"tiny-resnet block conv (8->8, 28x28)", 8, 28, 28, 8, {3, 3, 1, 1, 1, 1, 1, 1, 1}, 0},
    {"8->16, 28x28 (K 72, 16 channels)", 8, 28, 28, 16, {3, 3, 1, 1, 1, 1, 1, 1, 1}, 0},
    {"tiny-vgg conv2 (16->16, 28x28; K 144)", 16, 28, 28, 16, {3, 3, 1, 1, 1, 1, 1, 1, 1}, 0},
    {"tiny-resnet b2 conv (16->16, 14x14; K 144)", 16, 14, 14, 16, {3, 3, 1, 1, 1, 1, 1, 1, 1}, 0},
};
enum { STRIPE_ROWS = 2 };

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 15;
    const char *out = argc > 2 ? argv[2] : NULL;
    if (rounds < 1 || rounds > 10000) {
        fprintf(stderr, "conv_direct: ROUNDS must be 1-10000, got '%s'\n", argv[1]);
        return 2;
    }
    omp_set_num_threads(1);
    char gemm[128], *text;
    size_t size;
    FILE *f = conv_bench_open(&text, &size, gemm, sizeof gemm);
    if (!f)
        return 1;
    fprintf(f, "# Direct convolutions against im2col + GEMM (`bench/conv_direct.c`)\n\n");
    fprintf(f, "Batch %d, one thread, GEMM %s; medians of %d rounds, the paths alternating; "
               "ratio = GEMM / direct (above 1: direct is faster).\n\n",
            CONV_BENCH_BATCH, gemm, rounds);
    fprintf(f, "| layer | calls | forward ms direct | GEMM | ratio | backward ms direct | GEMM | "
               "ratio |\n|---|---|---|---|---|---|---|---|\n");
    double *v = malloc(sizeof(double) * 4 * (size_t)rounds);
    if (!v)
        return 1;
    for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) {
        conv_bench s = conv_bench_new(&layers[i], 1);
        for (int stripes = 0; stripes < 2; stripes++) {
            int rows = stripes ? STRIPE_ROWS : s.oh;
            for (int pass = 0; pass < 2; pass++) /* warm both paths */
                for (int direct = 0; direct < 2; direct++)
                    cpu_conv_set_direct(direct), conv_bench_timed(&s, pass, rows);
            for (int r = 0; r < rounds; r++)
                for (int k = 0; k < 2; k++) {
                    int direct = (r + k) % 2;
                    cpu_conv_set_direct(direct);
                    v[(2 * direct) * rounds + r] = conv_bench_timed(&s, 0, rows);
                    v[(2 * direct + 1) * rounds + r] = conv_bench_timed(&s, 1, rows);
                }
            double gf = conv_bench_median(v, rounds);
            double gb = conv_bench_median(v + rounds, rounds);
            double df = conv_bench_median(v + 2 * rounds, rounds);
            double db = conv_bench_median(v + 3 * rounds, rounds);
            char calls[32] = "whole map";
            if (stripes)
                snprintf(calls, sizeof calls, "%d-row stripes", STRIPE_ROWS);
            fprintf(f, "| %s | %s | %.3f | %.3f | %.2f | %.3f | %.3f | %.2f |\n", layers[i].name,
                    calls, df, gf, gf / df, db, gb, gb / db);
        }
        conv_bench_free(&s);
    }
    cpu_conv_set_direct(1);
    free(v);
    fclose(f);
    int rc = conv_bench_write("conv_direct", text, out);
    free(text);
    return rc;
}
