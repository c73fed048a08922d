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
#include <string.h>
#include <time.h>

#include "cpu_ops.h"
#include "outfile.h"

typedef struct {
    const char *name;
    int cin, h, w, cout;
    cpu_window g; /* {kh, kw, sh, sw, ph, pw, dh, dw, groups} */
    int first;    /* a net's first layer: its backward computes no dx */
} layer;

static const layer layers[] = {
    {"tiny-mix conv1 (1->8, 28x28; no dx)", 1, 28, 28, 8, {3, 3, 1, 1, 1, 1, 1, 1, 1}, 1},
    {"tiny-mix conv2 (8->8, 2 groups, dilation 2, 14x14)", 8, 14, 14, 8,
     {3, 3, 1, 1, 2, 2, 2, 2, 2}, 0},
    {"tiny-vgg conv1 (1->16, 28x28; no dx)", 1, 28, 28, 16, {3, 3, 1, 1, 1, 1, 1, 1, 1}, 1},
    {"tiny-resnet block conv (8->8, 28x28)", 8, 28, 28, 8, {3, 3, 1, 1, 1, 1, 1, 1, 1}, 0},
    {"8->16, 28x28 (K 72, 16 channels)", 8, 28, 28, 16, {3, 3, 1, 1, 1, 1, 1, 1, 1}, 0},
    {"tiny-vgg conv2 (16->16, 28x28; K 144)", 16, 28, 28, 16, {3, 3, 1, 1, 1, 1, 1, 1, 1}, 0},
    {"tiny-resnet b2 conv (16->16, 14x14; K 144)", 16, 14, 14, 16, {3, 3, 1, 1, 1, 1, 1, 1, 1}, 0},
};
enum { BATCH = 32, STRIPE_ROWS = 2 };

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static float *uniform(int64_t n, unsigned *seed)
{
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    if (!p) {
        fprintf(stderr, "conv_direct: out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        p[i] = (float)(*seed >> 8) / (float)(1u << 24) - 0.5f;
    }
    return p;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

typedef struct {
    const layer *l;
    int oh, ow;
    cpu_view x, y, dy, dx;
    float *w, *b, *dw, *db;
    cpu_scratch ws;
} setup;

static int out_extent(int in, int k, int s, int p, int d)
{
    return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

static setup setup_new(const layer *l)
{
    unsigned seed = 12345;
    setup s = {.l = l};
    const cpu_window *g = &l->g;
    s.oh = out_extent(l->h, g->kh, g->sh, g->ph, g->dh);
    s.ow = out_extent(l->w, g->kw, g->sw, g->pw, g->dw);
    int64_t nx = (int64_t)BATCH * l->cin * l->h * l->w, ny = (int64_t)BATCH * l->cout * s.oh * s.ow;
    int64_t nw = (int64_t)l->cout * (l->cin / g->groups) * g->kh * g->kw;
    s.x = (cpu_view){uniform(nx, &seed), BATCH, l->cin, l->h, l->w, 0, l->h};
    s.y = (cpu_view){uniform(ny, &seed), BATCH, l->cout, s.oh, s.ow, 0, s.oh};
    s.dy = s.y, s.dy.data = uniform(ny, &seed);
    s.dx = s.x, s.dx.data = uniform(nx, &seed);
    s.w = uniform(nw, &seed), s.b = uniform(l->cout, &seed);
    s.dw = uniform(nw, &seed), s.db = uniform(l->cout, &seed);
    s.ws.floats = cpu_conv_scratch_floats(g, BATCH, l->cin, l->h, l->w, l->cout, 1);
    s.ws.data = uniform(s.ws.floats, &seed);
    return s;
}

static void setup_free(setup *s)
{
    free(s->x.data), free(s->y.data), free(s->dy.data), free(s->dx.data);
    free(s->w), free(s->b), free(s->dw), free(s->db), free(s->ws.data);
}

/* The forward (pass 0) or backward (1) over all output rows, `rows` a call; its ms. */
static double timed(setup *s, int pass, int rows)
{
    double t0 = now_ms();
    for (int lo = 0; lo < s->oh; lo += rows) {
        int hi = lo + rows - 1 < s->oh - 1 ? lo + rows - 1 : s->oh - 1;
        if (pass == 0)
            cpu_conv_fwd(&s->l->g, &s->x, s->w, s->b, &s->y, lo, hi, &s->ws);
        else
            cpu_conv_bwd(&s->l->g, &s->x, s->w, &s->dy, lo, hi, s->l->first ? NULL : &s->dx,
                         s->dw, s->db, &s->ws);
    }
    return now_ms() - t0;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 15;
    const char *out = argc > 2 ? argv[2] : NULL;
    if (rounds < 1 || rounds > 10000) {
        fprintf(stderr, "conv_direct: ROUNDS must be 1-10000, got '%s'\n", argv[1]);
        return 2;
    }
    omp_set_num_threads(1);
    char gemm[128];
    cpu_gemm_describe(gemm, sizeof gemm);
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    if (!f)
        return 1;
    fprintf(f, "# Direct convolutions against im2col + GEMM (`bench/conv_direct.c`)\n\n");
    fprintf(f, "Batch %d, one thread, GEMM %s; medians of %d rounds, the paths alternating; "
               "ratio = GEMM / direct (above 1: direct is faster).\n\n", BATCH, gemm, rounds);
    fprintf(f, "| layer | calls | forward ms direct | GEMM | ratio | backward ms direct | GEMM | "
               "ratio |\n|---|---|---|---|---|---|---|---|\n");
    double *v = malloc(sizeof(double) * 4 * (size_t)rounds);
    if (!v)
        return 1;
    for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) {
        setup s = setup_new(&layers[i]);
        for (int stripes = 0; stripes < 2; stripes++) {
            int rows = stripes ? STRIPE_ROWS : s.oh;
            for (int pass = 0; pass < 2; pass++) /* warm both paths */
                for (int direct = 0; direct < 2; direct++)
                    cpu_conv_set_direct(direct), timed(&s, pass, rows);
            for (int r = 0; r < rounds; r++)
                for (int k = 0; k < 2; k++) {
                    int direct = (r + k) % 2;
                    cpu_conv_set_direct(direct);
                    v[(2 * direct) * rounds + r] = timed(&s, 0, rows);
                    v[(2 * direct + 1) * rounds + r] = timed(&s, 1, rows);
                }
            double gf = median(v, rounds), gb = median(v + rounds, rounds);
            double df = median(v + 2 * rounds, rounds), db = median(v + 3 * rounds, rounds);
            char calls[32] = "whole map";
            if (stripes)
                snprintf(calls, sizeof calls, "%d-row stripes", STRIPE_ROWS);
            fprintf(f, "| %s | %s | %.3f | %.3f | %.2f | %.3f | %.3f | %.2f |\n", layers[i].name,
                    calls, df, gf, gf / df, db, gb, gb / db);
        }
        setup_free(&s);
    }
    cpu_conv_set_direct(1);
    free(v);
    fclose(f);
    fputs(text, stdout);
    lr_outfile o;
    lr_status st = LR_OK;
    if (out && (st = lr_outfile_open(&o, out)) == LR_OK) {
        fputs(text, o.f);
        st = lr_outfile_commit(&o);
    }
    free(text);
    if (st != LR_OK)
        fprintf(stderr, "conv_direct: %s\n", lr_last_error());
    return st == LR_OK ? 0 : 1;
}
