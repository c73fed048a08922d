/* conv_bench.c - the CPU convolution benches' shared pieces (see conv_bench.h). */
#define _POSIX_C_SOURCE 200809L
#include "conv_bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "outfile.h"

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
        fprintf(stderr, "conv bench: out of memory\n");
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

double conv_bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int out_extent(int in, int k, int s, int p, int d)
{
    return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

conv_bench conv_bench_new(const conv_bench_layer *l, int threads)
{
    unsigned seed = 12345;
    conv_bench s = {.l = l};
    const cpu_window *g = &l->g;
    int n = CONV_BENCH_BATCH;
    s.oh = out_extent(l->h, g->kh, g->sh, g->ph, g->dh);
    s.ow = out_extent(l->w, g->kw, g->sw, g->pw, g->dw);
    int64_t nx = (int64_t)n * l->cin * l->h * l->w, ny = (int64_t)n * l->cout * s.oh * s.ow;
    int64_t nw = (int64_t)l->cout * (l->cin / g->groups) * g->kh * g->kw;
    s.x = (cpu_view){uniform(nx, &seed), n, l->cin, l->h, l->w, 0, l->h};
    s.y = (cpu_view){uniform(ny, &seed), n, l->cout, s.oh, s.ow, 0, s.oh};
    s.dy = s.y, s.dy.data = uniform(ny, &seed);
    s.dx = s.x, s.dx.data = uniform(nx, &seed);
    s.w = uniform(nw, &seed), s.b = uniform(l->cout, &seed);
    s.dw = uniform(nw, &seed), s.db = uniform(l->cout, &seed);
    s.ws.floats = cpu_conv_scratch_floats(g, n, l->cin, l->h, l->w, l->cout, threads);
    s.ws.data = uniform(s.ws.floats, &seed);
    return s;
}

void conv_bench_free(conv_bench *s)
{
    free(s->x.data), free(s->y.data), free(s->dy.data), free(s->dx.data);
    free(s->w), free(s->b), free(s->dw), free(s->db), free(s->ws.data);
}

double conv_bench_timed(conv_bench *s, int pass, int rows)
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

FILE *conv_bench_open(char **text, size_t *size, char *gemm, size_t gemm_size)
{
    cpu_gemm_describe(gemm, gemm_size);
    *text = NULL;
    *size = 0;
    return open_memstream(text, size);
}

int conv_bench_write(const char *prog, const char *text, const char *out)
{
    fputs(text, stdout);
    lr_outfile o;
    lr_status st = LR_OK;
    if (out && (st = lr_outfile_open(&o, out)) == LR_OK) {
        fputs(text, o.f);
        st = lr_outfile_commit(&o);
    }
    if (st != LR_OK)
        fprintf(stderr, "%s: %s\n", prog, lr_last_error());
    return st == LR_OK ? 0 : 1;
}
