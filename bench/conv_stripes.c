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
 * their FLOPs; whole / stripes on one thread against two is each one's gain from the second
 * thread. Medians of the rounds; a markdown table to stdout, and to OUT when given. The layers
 * are the tiny nets' whose backward runs through im2col + GEMM (cpu_conv.c): the direct kernels'
 * own bench is conv_direct.c.
 * Deliberately not here: other ops, a row schedule's recompute (the planner counts it as FLOPs).
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
} layer;

static const layer layers[] = {
    {"tiny-vgg conv1_2 (16->16, 28x28)", 16, 28, 28, 16, {3, 3, 1, 1, 1, 1, 1, 1, 1}},
    {"tiny-vgg conv2_1 (16->32, 14x14)", 16, 14, 14, 32, {3, 3, 1, 1, 1, 1, 1, 1, 1}},
    {"tiny-vgg conv2_2 (32->32, 14x14)", 32, 14, 14, 32, {3, 3, 1, 1, 1, 1, 1, 1, 1}},
    {"tiny-resnet b2_conv1 (8->16, stride 2, 28x28)", 8, 28, 28, 16, {3, 3, 2, 2, 1, 1, 1, 1, 1}},
    {"tiny-mix conv3 (16->16, 3x5, stride 2, 28x28)", 16, 28, 28, 16, {3, 5, 2, 2, 1, 2, 1, 1, 1}},
};
enum { BATCH = 32, THREADS = 2 };

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
        fprintf(stderr, "conv_stripes: out of memory\n");
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
    s.ws.floats = cpu_conv_scratch_floats(g, BATCH, l->cin, l->h, l->w, l->cout, THREADS);
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
            cpu_conv_bwd(&s->l->g, &s->x, s->w, &s->dy, lo, hi, &s->dx, s->dw, s->db, &s->ws);
    }
    return now_ms() - t0;
}

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
    char gemm[128];
    cpu_gemm_describe(gemm, sizeof gemm);
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    if (!f)
        return 1;
    const char *spin = getenv("GOMP_SPINCOUNT");
    fprintf(f, "# Convolutions over stripes against the whole map (`bench/conv_stripes.c`)\n\n");
    fprintf(f, "Batch %d, %d-row stripes (one call each), GEMM %s, GOMP_SPINCOUNT %s; medians of "
               "%d rounds, whole and stripes alternating, one thread then %d. stripes / whole: "
               "the stripes' cost beyond their FLOPs (the same FLOPs); 1t / %dt: the gain from "
               "the second thread.\n\n",
            BATCH, rows, gemm, spin ? spin : "unset", rounds, THREADS, THREADS);
    fprintf(f, "| layer | pass | 1t ms whole | stripes | stripes / whole | %dt ms whole | stripes "
               "| stripes / whole | 1t / %dt whole | stripes |\n"
               "|---|---|---|---|---|---|---|---|---|---|\n", THREADS, THREADS);
    double *v = malloc(sizeof(double) * 8 * (size_t)rounds);
    if (!v)
        return 1;
    for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) {
        setup s = setup_new(&layers[i]);
        for (int t = 1; t <= THREADS; t++) { /* warm both */
            omp_set_num_threads(t);
            for (int pass = 0; pass < 2; pass++)
                timed(&s, pass, s.oh), timed(&s, pass, rows);
        }
        /* v[((t - 1) * 2 + pass) * 2 + striped][round] */
        for (int r = 0; r < rounds; r++)
            for (int t = 1; t <= THREADS; t++) {
                omp_set_num_threads(t);
                for (int pass = 0; pass < 2; pass++)
                    for (int k = 0; k < 2; k++) {
                        int striped = (r + k) % 2;
                        v[(((t - 1) * 2 + pass) * 2 + striped) * rounds + r] =
                            timed(&s, pass, striped ? rows : s.oh);
                    }
            }
        for (int pass = 0; pass < 2; pass++) {
            double m[THREADS][2];
            for (int t = 0; t < THREADS; t++)
                for (int striped = 0; striped < 2; striped++)
                    m[t][striped] = median(v + ((t * 2 + pass) * 2 + striped) * rounds, rounds);
            fprintf(f, "| %s | %s | %.3f | %.3f | %.2f | %.3f | %.3f | %.2f | %.2f | %.2f |\n",
                    layers[i].name, pass ? "backward" : "forward", m[0][0], m[0][1],
                    m[0][1] / m[0][0], m[THREADS - 1][0], m[THREADS - 1][1],
                    m[THREADS - 1][1] / m[THREADS - 1][0], m[0][0] / m[THREADS - 1][0],
                    m[0][1] / m[THREADS - 1][1]);
        }
        setup_free(&s);
    }
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
        fprintf(stderr, "conv_stripes: %s\n", lr_last_error());
    return st == LR_OK ? 0 : 1;
}
