/* conv_stripes.c - what a convolution loses when a row schedule cuts it into stripes: the CPU
 * backend's forward and backward over stripes of a few output rows against the same over the
 * whole map, on one thread and on two.
 *
 *   conv_stripes [ROUNDS] [ROWS] [OUT]     (make build/bin/conv_stripes; ROUNDS default 15,
 *                                          ROWS 3)
 *
 * Per layer, batch 32: ROUNDS rounds, each timing the forward, then the backward (dx, dw, db), as
 * one call over all output rows and as one call per stripe of ROWS rows (the whole map in calls
 * as a row schedule makes them), first on one thread, then on two, the order of whole and stripes
 * swapped every round. Both do the same FLOPs, so stripes / whole is what the stripes cost beyond
 * their FLOPs; the time on one thread over the time on two is each one's gain from the second
 * thread. Medians of the rounds; a markdown table to stdout, and to OUT when given. The layers
 * are the tiny nets' whose backward runs through im2col + GEMM (cpu_conv.c): the direct kernels'
 * own bench is conv_direct.c.
 * Deliberately not here: other ops, a row schedule's recompute (the planner counts it as FLOPs).
 */
#define _POSIX_C_SOURCE 200809L
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "conv_bench.h"

static const conv_bench_layer layers[] = {
    {"tiny-vgg conv1_2 (16->16, 28x28)", 16, 28, 28, 16, {3, 3, 1, 1, 1, 1, 1, 1, 1}, 0},
    {"tiny-vgg conv2_1 (16->32, 14x14)", 16, 14, 14, 32, {3, 3, 1, 1, 1, 1, 1, 1, 1}, 0},
    {"tiny-vgg conv2_2 (32->32, 14x14)", 32, 14, 14, 32, {3, 3, 1, 1, 1, 1, 1, 1, 1}, 0},
    {"tiny-resnet b2_conv1 (8->16, stride 2, 28x28)", 8, 28, 28, 16, {3, 3, 2, 2, 1, 1, 1, 1, 1},
     0},
    {"tiny-mix conv3 (16->16, 3x5, stride 2, 28x28)", 16, 28, 28, 16, {3, 5, 2, 2, 1, 2, 1, 1, 1},
     0},
};
enum { THREADS = 2 };

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 15, rows = argc > 2 ? atoi(argv[2]) : 3;
    const char *out = argc > 3 ? argv[3] : NULL;
    if (rounds < 1 || rounds > 10000) {
        fprintf(stderr, "conv_stripes: ROUNDS must be 1-10000, got '%s'\n", argv[1]);
        return 2;
    }
    if (rows < 1 || rows > 64) {
        fprintf(stderr, "conv_stripes: ROWS must be 1-64, got '%s'\n", argv[2]);
        return 2;
    }
    /* the threads spin between calls, as lrcnn-validate's do on a machine with a core free for
     * each (waiting.h; GOMP_SPINCOUNT from the environment, read as libgomp loads) */
    cpu_set_spinning(true);
    char gemm[128], *text;
    size_t size;
    FILE *f = conv_bench_open(&text, &size, gemm, sizeof gemm);
    if (!f)
        return 1;
    const char *spin = getenv("GOMP_SPINCOUNT");
    fprintf(f, "# Convolutions over stripes against the whole map (`bench/conv_stripes.c`)\n\n");
    fprintf(f, "Batch %d, %d-row stripes (one call each), GEMM %s, GOMP_SPINCOUNT %s; medians of "
               "%d rounds, whole and stripes alternating, one thread then %d. stripes / whole: "
               "the stripes' cost beyond their FLOPs (the same FLOPs); 1t / %dt: the gain from "
               "the second thread.\n\n",
            CONV_BENCH_BATCH, rows, gemm, spin ? spin : "unset", rounds, THREADS, THREADS);
    fprintf(f, "| layer | pass | 1t ms whole | stripes | stripes / whole | %dt ms whole | stripes "
               "| stripes / whole | 1t / %dt whole | stripes |\n"
               "|---|---|---|---|---|---|---|---|---|---|\n", THREADS, THREADS);
    double *v = malloc(sizeof(double) * THREADS * 2 * 2 * (size_t)rounds); /* below */
    if (!v)
        return 1;
    for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) {
        conv_bench s = conv_bench_new(&layers[i], THREADS);
        for (int t = 1; t <= THREADS; t++) { /* warm both */
            omp_set_num_threads(t);
            for (int pass = 0; pass < 2; pass++)
                conv_bench_timed(&s, pass, s.oh), conv_bench_timed(&s, pass, rows);
        }
        /* v[((t - 1) * 2 + pass) * 2 + striped][round]: threads x passes x whole/stripes */
        for (int r = 0; r < rounds; r++)
            for (int t = 1; t <= THREADS; t++) {
                omp_set_num_threads(t);
                for (int pass = 0; pass < 2; pass++)
                    for (int k = 0; k < 2; k++) {
                        int striped = (r + k) % 2;
                        v[(((t - 1) * 2 + pass) * 2 + striped) * rounds + r] =
                            conv_bench_timed(&s, pass, striped ? rows : s.oh);
                    }
            }
        for (int pass = 0; pass < 2; pass++) {
            double m[THREADS][2];
            for (int t = 0; t < THREADS; t++)
                for (int striped = 0; striped < 2; striped++)
                    m[t][striped] =
                        conv_bench_median(v + ((t * 2 + pass) * 2 + striped) * rounds, rounds);
            fprintf(f, "| %s | %s | %.3f | %.3f | %.2f | %.3f | %.3f | %.2f | %.2f | %.2f |\n",
                    layers[i].name, pass ? "backward" : "forward", m[0][0], m[0][1],
                    m[0][1] / m[0][0], m[THREADS - 1][0], m[THREADS - 1][1],
                    m[THREADS - 1][1] / m[THREADS - 1][0], m[0][0] / m[THREADS - 1][0],
                    m[0][1] / m[THREADS - 1][1]);
        }
        conv_bench_free(&s);
    }
    free(v);
    fclose(f);
    int rc = conv_bench_write("conv_stripes", text, out);
    free(text);
    return rc;
}
