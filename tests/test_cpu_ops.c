/* test_cpu_ops.c - the CPU reference kernels (cuda_validate/cpu_*.c) against naive
 * double-precision references, finite differences, hand-computed optimiser steps, and the two
 * properties row schedules rely on: forward row splits are bitwise exact, and results do not
 * depend on the OpenMP thread count.
 *
 * Legend: N batch, C channels, H/W full height/width, R rows held by a view.
 */
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <omp.h>

#include "cpu_ops.h"

/* ------------------------------------------------------------------ helpers */

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static void rng_seed(uint64_t s)
{
    rng_state = s * 0x9E3779B97F4A7C15ull + 1;
}

/* Uniform in [-1, 1): xorshift64*, so every run sees the same data. */
static float rng_uniform(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint64_t r = rng_state * 0x2545F4914F6CDD1Dull;
    return (float)((double)(r >> 11) * 0x1.0p-52 - 1.0);
}

static void fill_uniform(float *p, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        p[i] = rng_uniform();
}

static int64_t view_numel(const cpu_view *v)
{
    return (int64_t)v->n * v->c * v->rows * v->w;
}

/* A zeroed stripe holding rows [row0, row0 + rows) of an (n, c, h, w) map. */
static cpu_view view_new(int n, int c, int h, int w, int row0, int rows)
{
    cpu_view v = {NULL, n, c, h, w, row0, rows};
    v.data = calloc((size_t)n * c * rows * w, sizeof(float));
    assert_non_null(v.data);
    return v;
}

static cpu_view view_full(int n, int c, int h, int w)
{
    return view_new(n, c, h, w, 0, h);
}

static cpu_view view_random(int n, int c, int h, int w)
{
    cpu_view v = view_full(n, c, h, w);
    fill_uniform(v.data, view_numel(&v));
    return v;
}

static void view_free(cpu_view *v)
{
    free(v->data);
    v->data = NULL;
}

/* A new stripe with rows [lo, hi] of `full` (clipped to the map). */
static cpu_view stripe_copy(const cpu_view *full, int lo, int hi)
{
    lo = lo < 0 ? 0 : lo;
    hi = hi >= full->h ? full->h - 1 : hi;
    cpu_view s = view_new(full->n, full->c, full->h, full->w, lo, hi - lo + 1);
    for (int n = 0; n < full->n; n++)
        for (int c = 0; c < full->c; c++)
            for (int r = lo; r <= hi; r++)
                memcpy(cpu_at(&s, n, c, r, 0), cpu_at(full, n, c, r, 0), sizeof(float) * full->w);
    return s;
}

/* full += every row the stripe holds. */
static void stripe_add_into(const cpu_view *s, cpu_view *full)
{
    for (int n = 0; n < s->n; n++)
        for (int c = 0; c < s->c; c++)
            for (int r = s->row0; r < s->row0 + s->rows; r++)
                for (int x = 0; x < s->w; x++)
                    *cpu_at(full, n, c, r, x) += *cpu_at(s, n, c, r, x);
}

/* Bitwise equality of rows [lo, hi] of two views of the same map. */
static void assert_rows_identical(const cpu_view *a, const cpu_view *b, int lo, int hi)
{
    for (int n = 0; n < a->n; n++)
        for (int c = 0; c < a->c; c++)
            for (int r = lo; r <= hi; r++)
                if (memcmp(cpu_at(a, n, c, r, 0), cpu_at(b, n, c, r, 0), sizeof(float) * a->w)) {
                    print_error("rows differ at n=%d c=%d r=%d\n", n, c, r);
                    fail();
                }
}

/* |got - want| <= atol + rtol * |want| for every element, with the first offender reported. */
static void assert_close_f(const float *got, const double *want, int64_t count, double atol,
                           double rtol, const char *what)
{
    for (int64_t i = 0; i < count; i++)
        if (!(fabs(got[i] - want[i]) <= atol + rtol * fabs(want[i]))) {
            print_error("%s[%lld]: got %.9g want %.9g\n", what, (long long)i, got[i], want[i]);
            fail();
        }
}

static void assert_close_ff(const float *got, const float *want, int64_t count, double atol,
                            double rtol, const char *what)
{
    for (int64_t i = 0; i < count; i++)
        if (!(fabs(got[i] - want[i]) <= atol + rtol * fabs(want[i]))) {
            print_error("%s[%lld]: got %.9g want %.9g\n", what, (long long)i, got[i], want[i]);
            fail();
        }
}

static double max_abs(const float *p, int64_t count)
{
    double m = 0.0;
    for (int64_t i = 0; i < count; i++)
        m = fabs(p[i]) > m ? fabs(p[i]) : m;
    return m;
}

static double dot_d(const float *a, const float *b, int64_t count)
{
    double s = 0.0;
    for (int64_t i = 0; i < count; i++)
        s += (double)a[i] * b[i];
    return s;
}

/* ------------------------------------------------------------------ convolution fixtures */

typedef struct {
    int n, cin, h, w, cout;
    cpu_window g;
    bool bias;
} conv_case;

/* {kh, kw, sh, sw, ph, pw, dh, dw, groups} */
static const conv_case CONV_CASES[] = {
    {2, 4, 9, 11, 6, {3, 3, 1, 1, 1, 1, 1, 1, 1}, true},  /* 3x3 "same" */
    {2, 4, 10, 9, 6, {3, 5, 2, 1, 1, 2, 1, 2, 2}, false}, /* rectangular, dilated cols, groups 2 */
    {1, 6, 11, 13, 3, {2, 3, 1, 3, 0, 1, 2, 1, 3}, true}, /* dilated rows, stride 3 cols */
    {2, 4, 8, 8, 4, {3, 3, 2, 2, 1, 1, 1, 1, 4}, true},   /* depthwise, stride 2 */
    {2, 3, 7, 6, 5, {1, 1, 2, 2, 0, 0, 1, 1, 1}, true},   /* 1x1, stride 2 */
    {1, 2, 12, 10, 3, {5, 3, 3, 2, 2, 1, 2, 1, 1}, true}, /* tall dilated kernel, stride 3 */
    {3, 4, 9, 8, 5, {3, 3, 1, 1, 2, 2, 2, 2, 1}, false},  /* dilated "same", direct (K 36) */
    {7, 3, 5, 130, 4, {3, 3, 1, 1, 1, 1, 1, 1, 1}, true}, /* wide rows: several image blocks */
    /* at unit column stride, too many output channels a group for the direct kernels (both
     * passes, or the backward only) */
    {3, 8, 9, 8, 20, {3, 3, 1, 1, 2, 2, 2, 2, 1}, false},  /* dilated "same": shifted im2col */
    {5, 8, 5, 130, 20, {3, 3, 1, 1, 1, 1, 1, 1, 1}, true}, /* wide rows: several image blocks */
    {2, 4, 6, 7, 12, {3, 3, 1, 1, 1, 1, 1, 1, 1}, true},   /* 12 channels: direct forward only */
    {2, 12, 6, 7, 5, {3, 3, 1, 1, 1, 1, 1, 1, 1}, true},   /* K 108: direct forward only */
    /* column stride 2 with 8 output columns or more: even_taps and add_even (cpu_conv.c) */
    {2, 3, 9, 30, 5, {3, 5, 2, 2, 1, 2, 1, 1, 1}, true},  /* tiny-mix's conv3, 15 columns */
    {2, 2, 6, 16, 4, {3, 3, 2, 2, 1, 1, 1, 1, 1}, false}, /* 8 columns */
    {1, 2, 7, 37, 3, {3, 3, 1, 2, 1, 3, 1, 2, 1}, true},  /* dilated cols, taps cut at both ends */
    {1, 2, 5, 10, 3, {3, 3, 2, 2, 2, 5, 1, 1, 1}, true},  /* wide padding: under 8 in the map */
    /* K 288: dw in 4 tiles of 72 (DW_K_MIN), shared out in sets by the threads */
    {2, 32, 6, 7, 12, {3, 3, 1, 1, 1, 1, 1, 1, 1}, true},
};
#define N_CONV_CASES ((int)(sizeof CONV_CASES / sizeof CONV_CASES[0]))

typedef struct {
    conv_case k;
    int oh, ow, cig;
    cpu_view x, y, dy;
    float *w, *b; /* w: (Cout, Cin/groups, kh, kw) */
    int64_t w_count;
    cpu_scratch ws; /* room for SCRATCH_THREADS threads */
} conv_data;

/* More threads than any test asks for: a kernel with fewer slices uses fewer threads. */
enum { SCRATCH_THREADS = 4 };

static int out_extent(int in, int k, int s, int p, int d)
{
    return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

static conv_data conv_data_new(const conv_case *k, uint64_t seed)
{
    conv_data d = {.k = *k};
    rng_seed(seed);
    d.oh = out_extent(k->h, k->g.kh, k->g.sh, k->g.ph, k->g.dh);
    d.ow = out_extent(k->w, k->g.kw, k->g.sw, k->g.pw, k->g.dw);
    d.cig = k->cin / k->g.groups;
    d.x = view_random(k->n, k->cin, k->h, k->w);
    d.y = view_full(k->n, k->cout, d.oh, d.ow);
    d.dy = view_random(k->n, k->cout, d.oh, d.ow);
    d.w_count = (int64_t)k->cout * d.cig * k->g.kh * k->g.kw;
    d.w = malloc(sizeof(float) * d.w_count);
    d.b = k->bias ? malloc(sizeof(float) * k->cout) : NULL;
    fill_uniform(d.w, d.w_count);
    if (d.b)
        fill_uniform(d.b, k->cout);
    d.ws.floats = cpu_conv_scratch_floats(&k->g, k->n, k->cin, k->h, k->w, k->cout, SCRATCH_THREADS);
    d.ws.data = malloc(sizeof(float) * (size_t)d.ws.floats);
    /* NaN in the scratch: a kernel that reads what it did not write (an im2col column it left
     * unzeroed) turns its results into NaN */
    for (int64_t i = 0; i < d.ws.floats; i++)
        d.ws.data[i] = NAN;
    return d;
}

static void conv_data_free(conv_data *d)
{
    view_free(&d->x);
    view_free(&d->y);
    view_free(&d->dy);
    free(d->w);
    free(d->b);
    free(d->ws.data);
}

static float conv_weight(const conv_data *d, int co, int ci, int ky, int kx)
{
    return d->w[(((int64_t)co * d->cig + ci) * d->k.g.kh + ky) * d->k.g.kw + kx];
}

/* Calls fn(d, n, co, ci_abs, ky, kx, oy, ox, iy, ix) for every multiply of the convolution whose
 * input element lies inside the map: the definition, written as plainly as possible. */
typedef void (*conv_term_fn)(const conv_data *d, int n, int co, int ci, int ky, int kx, int oy,
                             int ox, int iy, int ix, void *ctx);

static void conv_for_each_term(const conv_data *d, conv_term_fn fn, void *ctx)
{
    const cpu_window *g = &d->k.g;
    int cog = d->k.cout / g->groups;
    for (int n = 0; n < d->k.n; n++)
        for (int co = 0; co < d->k.cout; co++)
            for (int oy = 0; oy < d->oh; oy++)
                for (int ox = 0; ox < d->ow; ox++)
                    for (int ci = 0; ci < d->cig; ci++)
                        for (int ky = 0; ky < g->kh; ky++)
                            for (int kx = 0; kx < g->kw; kx++) {
                                int iy = oy * g->sh - g->ph + ky * g->dh;
                                int ix = ox * g->sw - g->pw + kx * g->dw;
                                if (iy >= 0 && iy < d->k.h && ix >= 0 && ix < d->k.w)
                                    fn(d, n, co, co / cog * d->cig + ci, ky, kx, oy, ox, iy, ix,
                                       ctx);
                            }
}

typedef struct {
    double *y, *dx, *dw, *db;
} conv_ref;

static int64_t y_index(const conv_data *d, int n, int co, int oy, int ox)
{
    return (((int64_t)n * d->k.cout + co) * d->oh + oy) * d->ow + ox;
}

static void ref_fwd_term(const conv_data *d, int n, int co, int ci, int ky, int kx, int oy, int ox,
                         int iy, int ix, void *ctx)
{
    conv_ref *ref = ctx;
    ref->y[y_index(d, n, co, oy, ox)] +=
        (double)conv_weight(d, co, ci % d->cig, ky, kx) * *cpu_at(&d->x, n, ci, iy, ix);
}

static void ref_bwd_term(const conv_data *d, int n, int co, int ci, int ky, int kx, int oy, int ox,
                         int iy, int ix, void *ctx)
{
    conv_ref *ref = ctx;
    double g = *cpu_at(&d->dy, n, co, oy, ox);
    ref->dx[(((int64_t)n * d->k.cin + ci) * d->k.h + iy) * d->k.w + ix] +=
        g * conv_weight(d, co, ci % d->cig, ky, kx);
    ref->dw[(((int64_t)co * d->cig + ci % d->cig) * d->k.g.kh + ky) * d->k.g.kw + kx] +=
        g * *cpu_at(&d->x, n, ci, iy, ix);
}

/* y = conv(x) in double, bias included. */
static double *conv_ref_fwd(const conv_data *d)
{
    int64_t count = view_numel(&d->y);
    conv_ref ref = {.y = calloc(count, sizeof(double))};
    for (int64_t i = 0; i < count; i++)
        ref.y[i] = d->b ? d->b[i / ((int64_t)d->oh * d->ow) % d->k.cout] : 0.0;
    conv_for_each_term(d, ref_fwd_term, &ref);
    return ref.y;
}

/* dx, dw, db of sum(y * dy) in double. */
static conv_ref conv_ref_bwd(const conv_data *d)
{
    conv_ref ref = {NULL, calloc(view_numel(&d->x), sizeof(double)),
                    calloc(d->w_count, sizeof(double)), calloc(d->k.cout, sizeof(double))};
    conv_for_each_term(d, ref_bwd_term, &ref);
    for (int64_t i = 0; i < view_numel(&d->dy); i++)
        ref.db[i / ((int64_t)d->oh * d->ow) % d->k.cout] += d->dy.data[i];
    return ref;
}

static void conv_ref_free(conv_ref *r)
{
    free(r->y);
    free(r->dx);
    free(r->dw);
    free(r->db);
}

/* The input rows output rows [lo, hi] read, as the planner computes them (clipped). */
static void conv_input_rows(const conv_data *d, int lo, int hi, int *in_lo, int *in_hi)
{
    const cpu_window *g = &d->k.g;
    *in_lo = lo * g->sh - g->ph;
    *in_hi = hi * g->sh - g->ph + g->dh * (g->kh - 1);
}

/* ------------------------------------------------------------------ convolution tests */

/* Every conv geometry (stride, padding, dilation, groups, rectangular kernels, no bias) gives
 * the naive double-precision definition up to float rounding. */
static void test_conv_fwd_matches_double_reference(void **state)
{
    for (int i = 0; i < N_CONV_CASES; i++) {
        conv_data d = conv_data_new(&CONV_CASES[i], 100 + i);
        cpu_conv_fwd(&d.k.g, &d.x, d.w, d.b, &d.y, 0, d.oh - 1, &d.ws);
        double *ref = conv_ref_fwd(&d);
        assert_close_f(d.y.data, ref, view_numel(&d.y), 1e-5, 1e-5, "conv y");
        free(ref);
        conv_data_free(&d);
    }
}

/* Computing output rows piecewise from stripes that start mid-map (row0 > 0), at every split
 * point and one row at a time, reproduces the single full call bit for bit. */
static void test_conv_fwd_row_split_is_bitwise_exact(void **state)
{
    for (int i = 0; i < N_CONV_CASES; i++) {
        conv_data d = conv_data_new(&CONV_CASES[i], 200 + i);
        cpu_conv_fwd(&d.k.g, &d.x, d.w, d.b, &d.y, 0, d.oh - 1, &d.ws);
        for (int split = 0; split <= d.oh; split++) {
            int pieces[3][2] = {{0, split - 1}, {split, d.oh - 1}, {split, split}};
            for (int p = 0; p < 3; p++) {
                int lo = pieces[p][0], hi = pieces[p][1] < d.oh ? pieces[p][1] : d.oh - 1;
                if (lo > hi)
                    continue;
                int in_lo, in_hi;
                conv_input_rows(&d, lo, hi, &in_lo, &in_hi);
                cpu_view xs = stripe_copy(&d.x, in_lo, in_hi);
                cpu_view ys = view_new(d.y.n, d.y.c, d.y.h, d.y.w, lo, hi - lo + 1);
                cpu_conv_fwd(&d.k.g, &xs, d.w, d.b, &ys, lo, hi, &d.ws);
                assert_rows_identical(&ys, &d.y, lo, hi);
                view_free(&xs);
                view_free(&ys);
            }
        }
        conv_data_free(&d);
    }
}

/* Backward accumulates into dx, dw and db (they start non-zero) exactly the double-precision
 * gradients of sum(y * dy), for every geometry. */
static void test_conv_bwd_matches_double_reference(void **state)
{
    for (int i = 0; i < N_CONV_CASES; i++) {
        conv_data d = conv_data_new(&CONV_CASES[i], 300 + i);
        cpu_view dx = view_random(d.k.n, d.k.cin, d.k.h, d.k.w);
        float *dw = malloc(sizeof(float) * d.w_count), *db = malloc(sizeof(float) * d.k.cout);
        fill_uniform(dw, d.w_count);
        fill_uniform(db, d.k.cout);
        conv_ref ref = conv_ref_bwd(&d);
        for (int64_t j = 0; j < view_numel(&dx); j++)
            ref.dx[j] += dx.data[j];
        for (int64_t j = 0; j < d.w_count; j++)
            ref.dw[j] += dw[j];
        for (int j = 0; j < d.k.cout; j++)
            ref.db[j] += db[j];
        cpu_conv_bwd(&d.k.g, &d.x, d.w, &d.dy, 0, d.oh - 1, &dx, dw, db, &d.ws);
        assert_close_f(dx.data, ref.dx, view_numel(&dx), 1e-5, 1e-5, "conv dx");
        assert_close_f(dw, ref.dw, d.w_count, 1e-4, 1e-5, "conv dw");
        assert_close_f(db, ref.db, d.k.cout, 1e-4, 1e-5, "conv db");
        conv_ref_free(&ref);
        view_free(&dx);
        free(dw);
        free(db);
        conv_data_free(&d);
    }
}

/* L = sum(conv(x) * dy) in double from the float forward. */
static double conv_loss(conv_data *d)
{
    cpu_conv_fwd(&d->k.g, &d->x, d->w, d->b, &d->y, 0, d->oh - 1, &d->ws);
    return dot_d(d->y.data, d->dy.data, view_numel(&d->y));
}

/* Central difference of conv_loss in *p. The loss is linear in every input, so the difference
 * is exact up to the rounding of the forward pass. */
static double conv_fd(conv_data *d, float *p)
{
    const float h = 0.25f;
    float saved = *p;
    *p = saved + h;
    double up = conv_loss(d);
    *p = saved - h;
    double down = conv_loss(d);
    *p = saved;
    return (up - down) / (2.0 * h);
}

/* The analytic gradients agree with finite differences of the forward kernel itself, for
 * sampled input and weight elements and every bias. */
static void test_conv_bwd_matches_finite_differences(void **state)
{
    for (int i = 0; i < N_CONV_CASES; i++) {
        conv_data d = conv_data_new(&CONV_CASES[i], 400 + i);
        cpu_view dx = view_full(d.k.n, d.k.cin, d.k.h, d.k.w);
        float *dw = calloc(d.w_count, sizeof(float)), *db = calloc(d.k.cout, sizeof(float));
        cpu_conv_bwd(&d.k.g, &d.x, d.w, &d.dy, 0, d.oh - 1, &dx, dw, d.b ? db : NULL, &d.ws);
        for (int s = 0; s < 12; s++) {
            int64_t xi = (int64_t)(fabsf(rng_uniform()) * view_numel(&d.x));
            int64_t wi = (int64_t)(fabsf(rng_uniform()) * d.w_count);
            assert_float_equal(conv_fd(&d, &d.x.data[xi]), dx.data[xi], 2e-3);
            assert_float_equal(conv_fd(&d, &d.w[wi]), dw[wi], 2e-3);
        }
        for (int co = 0; d.b && co < d.k.cout; co++)
            assert_float_equal(conv_fd(&d, &d.b[co]), db[co], 2e-3);
        view_free(&dx);
        free(dw);
        free(db);
        conv_data_free(&d);
    }
}

/* Back-propagating dy in row pieces, each from stripes of x, dy and dx, sums (dx stripes added,
 * dw and db accumulated) to the full backward within 1e-5 of each tensor's largest value. */
static void test_conv_bwd_row_splits_sum_to_full(void **state)
{
    for (int i = 0; i < N_CONV_CASES; i++) {
        conv_data d = conv_data_new(&CONV_CASES[i], 500 + i);
        cpu_view dx_full = view_full(d.k.n, d.k.cin, d.k.h, d.k.w);
        cpu_view dx_sum = view_full(d.k.n, d.k.cin, d.k.h, d.k.w);
        float *dw_full = calloc(d.w_count, sizeof(float)),
              *dw_sum = calloc(d.w_count, sizeof(float));
        float *db_full = calloc(d.k.cout, sizeof(float)), *db_sum = calloc(d.k.cout, sizeof(float));
        cpu_conv_bwd(&d.k.g, &d.x, d.w, &d.dy, 0, d.oh - 1, &dx_full, dw_full, db_full, &d.ws);
        int cuts[4] = {0, d.oh / 3, (2 * d.oh) / 3 + 1, d.oh};
        for (int p = 0; p < 3; p++) {
            int lo = cuts[p], hi = cuts[p + 1] - 1, in_lo, in_hi;
            if (lo > hi)
                continue;
            conv_input_rows(&d, lo, hi, &in_lo, &in_hi);
            cpu_view xs = stripe_copy(&d.x, in_lo, in_hi);
            cpu_view dys = stripe_copy(&d.dy, lo, hi);
            cpu_view dxs = view_new(xs.n, xs.c, xs.h, xs.w, xs.row0, xs.rows);
            cpu_conv_bwd(&d.k.g, &xs, d.w, &dys, lo, hi, &dxs, dw_sum, db_sum, &d.ws);
            stripe_add_into(&dxs, &dx_sum);
            view_free(&xs);
            view_free(&dys);
            view_free(&dxs);
        }
        assert_close_ff(dx_sum.data, dx_full.data, view_numel(&dx_full),
                        1e-5 * max_abs(dx_full.data, view_numel(&dx_full)), 0.0, "split dx");
        assert_close_ff(dw_sum, dw_full, d.w_count, 1e-5 * max_abs(dw_full, d.w_count), 0.0,
                        "split dw");
        assert_close_ff(db_sum, db_full, d.k.cout, 1e-5 * max_abs(db_full, d.k.cout), 0.0,
                        "split db");
        view_free(&dx_full);
        view_free(&dx_sum);
        free(dw_full);
        free(dw_sum);
        free(db_full);
        free(db_sum);
        conv_data_free(&d);
    }
}

/* A NULL gradient is not computed and the others are unaffected: dx alone, and dw alone,
 * equal the same gradients from a call that asks for everything. */
static void test_conv_bwd_skips_null_gradients(void **state)
{
    conv_data d = conv_data_new(&CONV_CASES[1], 600);
    cpu_view dx_all = view_full(d.k.n, d.k.cin, d.k.h, d.k.w);
    cpu_view dx_only = view_full(d.k.n, d.k.cin, d.k.h, d.k.w);
    float *dw_all = calloc(d.w_count, sizeof(float)), *dw_only = calloc(d.w_count, sizeof(float));
    float *db = calloc(d.k.cout, sizeof(float)), *db_only = calloc(d.k.cout, sizeof(float));
    cpu_conv_bwd(&d.k.g, &d.x, d.w, &d.dy, 0, d.oh - 1, &dx_all, dw_all, db, &d.ws);
    cpu_conv_bwd(&d.k.g, &d.x, d.w, &d.dy, 0, d.oh - 1, &dx_only, NULL, NULL, &d.ws);
    cpu_conv_bwd(&d.k.g, &d.x, d.w, &d.dy, 0, d.oh - 1, NULL, dw_only, NULL, &d.ws);
    cpu_conv_bwd(&d.k.g, &d.x, d.w, &d.dy, 0, d.oh - 1, NULL, NULL, db_only, &d.ws);
    assert_memory_equal(dx_only.data, dx_all.data, sizeof(float) * view_numel(&dx_all));
    assert_memory_equal(dw_only, dw_all, sizeof(float) * d.w_count);
    assert_memory_equal(db_only, db, sizeof(float) * d.k.cout);
    assert_true(max_abs(dw_all, d.w_count) > 0.0);
    assert_true(max_abs(db, d.k.cout) > 0.0);
    view_free(&dx_all);
    view_free(&dx_only);
    free(dw_all);
    free(dw_only);
    free(db);
    free(db_only);
    conv_data_free(&d);
}

/* Every other backward kernel takes a NULL input gradient as "not wanted" and returns; BN
 * backward with dx NULL still accumulates dgamma/dbeta, equal to those of a call with dx. */
static void test_backward_kernels_skip_null_input_gradient(void **state)
{
    rng_seed(650);
    const cpu_window pool = {2, 2, 2, 2, 0, 0, 1, 1, 1};
    cpu_view x = view_random(1, 3, 6, 4), dy = view_random(1, 3, 6, 4);
    cpu_view dy_pool = view_random(1, 3, 3, 2), dy_up = view_random(1, 3, 12, 8);
    float stats[6] = {0.1f, 0.2f, 0.3f, 1.0f, 2.0f, 3.0f}, gb[6] = {1, 1, 1, 0, 0, 0};
    double gacc[6] = {0.5, -0.5, 1.0, 0.25, 0.5, -1.0};
    float dgb_null[6] = {0}, dgb_dx[6] = {0}, logits[6] = {1, 2, 3, 4, 5, 6};
    int32_t labels[2] = {0, 2};
    cpu_relu_bwd(&x, &dy, 0, 5, NULL);
    cpu_maxpool_bwd(&pool, &x, &dy_pool, 0, 2, NULL);
    cpu_avgpool_bwd(&pool, &dy_pool, 0, 2, NULL);
    cpu_adaptive_avgpool_bwd(&dy_pool, NULL, 0, 5);
    cpu_accumulate_rows(&dy, 0, 5, NULL);
    cpu_concat_bwd(&dy, 0, 0, 5, NULL);
    cpu_upsample_bwd(2, &dy_up, 0, 11, NULL);
    cpu_dropout_bwd(3, 0.5, &dy, 0, 5, NULL);
    cpu_softmax_xent_bwd(logits, labels, 2, 3, NULL);
    cpu_bn_bwd(&x, stats, gb, &dy, 0, 5, gacc, 24, true, true, NULL, dgb_null);
    cpu_view dx = view_full(1, 3, 6, 4);
    cpu_bn_bwd(&x, stats, gb, &dy, 0, 5, gacc, 24, true, true, &dx, dgb_dx);
    assert_memory_equal(dgb_null, dgb_dx, sizeof dgb_dx);
    assert_true(dgb_dx[3] != 0.0f);
    cpu_view *all[] = {&x, &dy, &dy_pool, &dy_up, &dx};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        view_free(all[i]);
}

/* Each call below gives a view that misses one row the call touches, unless rows_ok is set,
 * in which case the same call with a view that holds every row must run to completion. */
static conv_data abort_case;
static bool rows_ok;

static void conv_fwd_input_stripe(void)
{
    /* output rows [3, 5] of a 3x3 pad-1 conv read input rows [2, 6] */
    cpu_view xs = stripe_copy(&abort_case.x, rows_ok ? 2 : 3, 6);
    cpu_view ys = view_new(abort_case.y.n, abort_case.y.c, abort_case.y.h, abort_case.y.w, 3, 3);
    cpu_conv_fwd(&abort_case.k.g, &xs, abort_case.w, abort_case.b, &ys, 3, 5, &abort_case.ws);
    view_free(&xs);
    view_free(&ys);
}

static void conv_fwd_output_stripe(void)
{
    cpu_view ys = view_new(abort_case.y.n, abort_case.y.c, abort_case.y.h, abort_case.y.w, 3,
                           rows_ok ? 3 : 2);
    cpu_conv_fwd(&abort_case.k.g, &abort_case.x, abort_case.w, abort_case.b, &ys, 3, 5, &abort_case.ws);
    view_free(&ys);
}

static void conv_bwd_dx_stripe(void)
{
    cpu_view dxs = view_new(abort_case.x.n, abort_case.x.c, abort_case.x.h, abort_case.x.w, 2,
                            rows_ok ? 5 : 4);
    cpu_conv_bwd(&abort_case.k.g, &abort_case.x, abort_case.w, &abort_case.dy, 3, 5, &dxs, NULL,
                 NULL, &abort_case.ws);
    view_free(&dxs);
}

static void maxpool_input_stripe(void)
{
    cpu_window g = {2, 2, 2, 2, 0, 0, 1, 1, 1};
    cpu_view xs = stripe_copy(&abort_case.x, 0, rows_ok ? 3 : 2);
    cpu_view y = view_full(abort_case.x.n, abort_case.x.c, 4, 5);
    cpu_maxpool_fwd(&g, &xs, &y, 0, 1); /* row 1 reads input rows 2 and 3 */
    view_free(&xs);
    view_free(&y);
}

static void copy_rows_destination_stripe(void)
{
    cpu_view dst = view_new(abort_case.x.n, abort_case.x.c, abort_case.x.h, abort_case.x.w,
                            rows_ok ? 3 : 4, 3);
    cpu_copy_rows(&abort_case.x, &dst, 3, 5, false);
    view_free(&dst);
}

typedef struct {
    const char *name;
    void (*fn)(void);
} rows_case;

static const rows_case ROWS_CASES[] = {
    {"conv_fwd_input_stripe", conv_fwd_input_stripe},
    {"conv_fwd_output_stripe", conv_fwd_output_stripe},
    {"conv_bwd_dx_stripe", conv_bwd_dx_stripe},
    {"maxpool_input_stripe", maxpool_input_stripe},
    {"copy_rows_destination_stripe", copy_rows_destination_stripe},
};
#define N_ROWS_CASES ((int)(sizeof ROWS_CASES / sizeof ROWS_CASES[0]))

/* The child side: `test_cpu_ops --rows-case NAME 0|1` runs one case and exits 0. */
static int run_rows_case(const char *name, const char *ok)
{
    int rc = 2;
    abort_case = conv_data_new(&CONV_CASES[0], 700);
    rows_ok = strcmp(ok, "1") == 0;
    for (int i = 0; i < N_ROWS_CASES; i++)
        if (strcmp(ROWS_CASES[i].name, name) == 0) {
            ROWS_CASES[i].fn();
            rc = 0;
        }
    conv_data_free(&abort_case);
    return rc;
}

/* Runs a case in a fresh process (fork + exec of this binary: libgomp's threads do not survive
 * a bare fork). It must abort (SIGABRT from LR_ASSERT) with a view missing a row, and exit 0
 * with one holding them all, so the abort is due to the missing row and nothing else. */
static void assert_aborts_only_on_missing_row(const char *name)
{
    for (int ok = 0; ok <= 1; ok++) {
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            if (!freopen("/dev/null", "w", stderr))
                _exit(3);
            execl("/proc/self/exe", "test_cpu_ops", "--rows-case", name, ok ? "1" : "0",
                  (char *)NULL);
            _exit(4);
        }
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (ok)
            assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        else
            assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    }
}

/* Conv forward (input and output stripes), conv backward (dx stripe), maxpool and row copies
 * abort when a view lacks a row they touch, and run when it holds them all. */
static void test_kernels_abort_on_rows_outside_view(void **state)
{
    for (int i = 0; i < N_ROWS_CASES; i++)
        assert_aborts_only_on_missing_row(ROWS_CASES[i].name);
}

/* ------------------------------------------------------------------ pooling references */

/* PyTorch's max pooling for one output element: the first in-map maximum in scan order. */
static void ref_max_window(const cpu_window *g, const cpu_view *x, int n, int c, int oy, int ox,
                           int *by, int *bx)
{
    double best = -INFINITY;
    *by = -1;
    for (int ky = 0; ky < g->kh; ky++)
        for (int kx = 0; kx < g->kw; kx++) {
            int iy = oy * g->sh - g->ph + ky * g->dh, ix = ox * g->sw - g->pw + kx * g->dw;
            if (iy < 0 || iy >= x->h || ix < 0 || ix >= x->w)
                continue;
            double v = *cpu_at(x, n, c, iy, ix);
            if (*by < 0 || v > best || v != v) { /* strictly greater or NaN (PyTorch's CPU rule) */
                best = v;
                *by = iy;
                *bx = ix;
            }
        }
}

/* Inputs drawn from {-3, ..., 2}, about half the zeros negative: windows are full of ties, so
 * the tie rule is exercised, down to which zero a window of +0 and -0 gives. */
static cpu_view view_with_ties(int n, int c, int h, int w)
{
    cpu_view v = view_full(n, c, h, w);
    for (int64_t i = 0; i < view_numel(&v); i++) {
        v.data[i] = floorf(rng_uniform() * 2.5f);
        if (v.data[i] == 0.0f && rng_uniform() < 0.0f)
            v.data[i] = -0.0f;
    }
    return v;
}

static const cpu_window MAXPOOL_CASES[] = {
    {3, 3, 2, 2, 1, 1, 1, 1, 1}, /* torchvision ResNet stem (rows then columns, stride 2) */
    {2, 2, 2, 2, 0, 0, 1, 1, 1}, /* VGG (its own path) */
    {2, 3, 1, 2, 1, 1, 2, 1, 1}, /* dilated rows, rectangular (per tap) */
    {3, 2, 1, 1, 1, 0, 1, 1, 1}, /* overlapping rows, unit strides (rows then columns, stride 1) */
};
enum { N_MAXPOOL_CASES = sizeof MAXPOOL_CASES / sizeof MAXPOOL_CASES[0] };

/* Max pooling forward gives the window's first maximum in scan order, bit for bit, with -inf
 * padding (the rows-then-columns path of the unit-dilation cases as the per-tap one of the dilated
 * case), and backward sends each dy to that maximum (recomputed from x), accumulating into dx.
 * Maps 10, 34 and 35 columns wide: rows of 5 outputs (fewer than the vector paths' eight), of 17
 * (two blocks of eight and one more) and of 17 again where a tap's last column stops short of
 * the row's (odd widths); then the same with NaN (the last one wins) and -inf among the ties. */
static void test_maxpool_matches_reference_with_ties(void **state)
{
    rng_seed(800);
    const int H = 9, widths[] = {10, 34, 35};
    for (int i = 0; i < N_MAXPOOL_CASES; i++)
        for (int wi = 0; wi < 6; wi++) {
            const cpu_window *g = &MAXPOOL_CASES[i];
            int W = widths[wi % 3];
            cpu_view x = view_with_ties(2, 3, H, W);
            for (int64_t j = 0; j < view_numel(&x) && wi >= 3; j++) {
                float u = rng_uniform();
                x.data[j] = u > 0.94f ? NAN : u < -0.9f ? -INFINITY : x.data[j];
            }
            int oh = out_extent(H, g->kh, g->sh, g->ph, g->dh);
            int ow = out_extent(W, g->kw, g->sw, g->pw, g->dw);
            cpu_view y = view_full(2, 3, oh, ow), dy = view_random(2, 3, oh, ow);
            cpu_view dx = view_random(2, 3, H, W);
            double *ref_dx = malloc(sizeof(double) * view_numel(&dx));
            for (int64_t j = 0; j < view_numel(&dx); j++)
                ref_dx[j] = dx.data[j];
            cpu_maxpool_fwd(g, &x, &y, 0, oh - 1);
            cpu_maxpool_bwd(g, &x, &dy, 0, oh - 1, &dx);
            for (int n = 0; n < 2; n++)
                for (int c = 0; c < 3; c++)
                    for (int oy = 0; oy < oh; oy++)
                        for (int ox = 0; ox < ow; ox++) {
                            int by, bx = -1;
                            ref_max_window(g, &x, n, c, oy, ox, &by, &bx);
                            assert_true(by >= 0);
                            /* the bits of the first maximum: +0 and -0 tie, the first wins */
                            assert_memory_equal(cpu_at(&y, n, c, oy, ox),
                                                cpu_at(&x, n, c, by, bx), sizeof(float));
                            ref_dx[((n * 3 + c) * H + by) * W + bx] +=
                                *cpu_at(&dy, n, c, oy, ox);
                        }
            assert_close_f(dx.data, ref_dx, view_numel(&dx), 1e-6, 1e-6, "maxpool dx");
            free(ref_dx);
            view_free(&x);
            view_free(&y);
            view_free(&dy);
            view_free(&dx);
        }
}

/* NaN and -inf as PyTorch's CPU kernel treats them (take when strictly greater or NaN): a
 * window with NaNs gives NaN and its gradient goes to the last NaN; an all -inf window gives
 * -inf and its gradient goes to the first element; a tie goes to the first maximum. The three
 * windows repeat across 1 and 4 copies: rows of 3 outputs and of 12 (a block of eight, then 4). */
static void test_maxpool_nan_and_infinite_windows(void **state)
{
    const cpu_window g = {2, 2, 2, 2, 0, 0, 1, 1, 1};
    /* windows (row 0 | row 1): {1, NaN | 3, NaN}, {-inf, -inf | -inf, -inf}, {2, 2 | 1, 2} */
    const float row0[6] = {1, NAN, -INFINITY, -INFINITY, 2, 2};
    const float row1[6] = {3, NAN, -INFINITY, -INFINITY, 1, 2};
    const float want0[6] = {0, 0, 2, 0, 3, 0}, want1[6] = {0, 1, 0, 0, 0, 0};
    for (int copies = 1; copies <= 4; copies += 3) {
        int w = 6 * copies, ow = 3 * copies;
        cpu_view x = view_full(1, 1, 2, w), y = view_full(1, 1, 1, ow), dy = view_full(1, 1, 1, ow);
        cpu_view dx = view_full(1, 1, 2, w);
        for (int k = 0; k < copies; k++) {
            memcpy(x.data + 6 * k, row0, sizeof row0);
            memcpy(x.data + w + 6 * k, row1, sizeof row1);
        }
        for (int o = 0; o < ow; o++)
            dy.data[o] = (float)(o % 3 + 1);
        cpu_maxpool_fwd(&g, &x, &y, 0, 0);
        cpu_maxpool_bwd(&g, &x, &dy, 0, 0, &dx);
        for (int k = 0; k < copies; k++) {
            assert_true(isnan(y.data[3 * k]));
            assert_true(isinf(y.data[3 * k + 1]) && y.data[3 * k + 1] < 0);
            assert_float_equal(y.data[3 * k + 2], 2.0f, 0);
            assert_memory_equal(dx.data + 6 * k, want0, sizeof want0);
            assert_memory_equal(dx.data + w + 6 * k, want1, sizeof want1);
        }
        cpu_view *all[] = {&x, &y, &dy, &dx};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            view_free(all[i]);
    }
}

static const cpu_window AVGPOOL_CASES[] = {
    {3, 3, 2, 2, 1, 1, 1, 1, 1},
    {2, 2, 2, 2, 0, 0, 1, 1, 1},
    {3, 2, 1, 2, 1, 1, 1, 1, 1},
};

/* Average pooling divides by kh*kw even where the window covers padding
 * (count_include_pad=True), and backward spreads dy / (kh*kw) over the in-map taps. */
static void test_avgpool_counts_padding(void **state)
{
    rng_seed(900);
    for (int i = 0; i < 3; i++) {
        const cpu_window *g = &AVGPOOL_CASES[i];
        int oh = out_extent(7, g->kh, g->sh, g->ph, 1), ow = out_extent(8, g->kw, g->sw, g->pw, 1);
        cpu_view x = view_random(2, 3, 7, 8), y = view_full(2, 3, oh, ow);
        cpu_view dy = view_random(2, 3, oh, ow), dx = view_full(2, 3, 7, 8);
        double *ref_y = calloc(view_numel(&y), sizeof(double));
        double *ref_dx = calloc(view_numel(&dx), sizeof(double));
        double area = g->kh * g->kw;
        for (int n = 0; n < 2; n++)
            for (int c = 0; c < 3; c++)
                for (int oy = 0; oy < oh; oy++)
                    for (int ox = 0; ox < ow; ox++)
                        for (int ky = 0; ky < g->kh; ky++)
                            for (int kx = 0; kx < g->kw; kx++) {
                                int iy = oy * g->sh - g->ph + ky, ix = ox * g->sw - g->pw + kx;
                                if (iy < 0 || iy >= 7 || ix < 0 || ix >= 8)
                                    continue;
                                ref_y[((n * 3 + c) * oh + oy) * ow + ox] +=
                                    *cpu_at(&x, n, c, iy, ix) / area;
                                ref_dx[((n * 3 + c) * 7 + iy) * 8 + ix] +=
                                    *cpu_at(&dy, n, c, oy, ox) / area;
                            }
        cpu_avgpool_fwd(g, &x, &y, 0, oh - 1);
        cpu_avgpool_bwd(g, &dy, 0, oh - 1, &dx);
        assert_close_f(y.data, ref_y, view_numel(&y), 1e-6, 1e-6, "avgpool y");
        assert_close_f(dx.data, ref_dx, view_numel(&dx), 1e-6, 1e-6, "avgpool dx");
        free(ref_y);
        free(ref_dx);
        view_free(&x);
        view_free(&y);
        view_free(&dy);
        view_free(&dx);
    }
}

/* Adaptive pooling uses PyTorch's overlapping bins [floor(i*H/out), ceil((i+1)*H/out)), also
 * when the output is larger than the input (bins repeat elements), and global pooling is the
 * mean of the whole map; both backward passes spread dy evenly. */
static void test_adaptive_and_global_avgpool_match_reference(void **state)
{
    rng_seed(1000);
    const int outs[3][2] = {{3, 2}, {1, 1}, {9, 7}};
    for (int t = 0; t < 3; t++) {
        int oh = outs[t][0], ow = outs[t][1];
        cpu_view x = view_random(2, 3, 7, 5), y = view_full(2, 3, oh, ow);
        cpu_view dy = view_random(2, 3, oh, ow), dx = view_full(2, 3, 7, 5);
        double *ref_y = calloc(view_numel(&y), sizeof(double));
        double *ref_dx = calloc(view_numel(&dx), sizeof(double));
        for (int n = 0; n < 2; n++)
            for (int c = 0; c < 3; c++)
                for (int i = 0; i < oh; i++)
                    for (int j = 0; j < ow; j++) {
                        int y0 = i * 7 / oh, y1 = ((i + 1) * 7 + oh - 1) / oh;
                        int x0 = j * 5 / ow, x1 = ((j + 1) * 5 + ow - 1) / ow;
                        double area = (y1 - y0) * (x1 - x0);
                        for (int yy = y0; yy < y1; yy++)
                            for (int xx = x0; xx < x1; xx++) {
                                ref_y[((n * 3 + c) * oh + i) * ow + j] +=
                                    *cpu_at(&x, n, c, yy, xx) / area;
                                ref_dx[((n * 3 + c) * 7 + yy) * 5 + xx] +=
                                    *cpu_at(&dy, n, c, i, j) / area;
                            }
                    }
        if (t != 1) {
            cpu_adaptive_avgpool_fwd(&x, &y, 0, 6);
            cpu_adaptive_avgpool_bwd(&dy, &dx, 0, 6);
        } else {
            cpu_global_avgpool_fwd(&x, &y, 0, 6);
            cpu_global_avgpool_bwd(&dy, &dx, 0, 6);
        }
        assert_close_f(y.data, ref_y, view_numel(&y), 1e-6, 1e-6, "adaptive y");
        assert_close_f(dx.data, ref_dx, view_numel(&dx), 1e-6, 1e-6, "adaptive dx");
        free(ref_y);
        free(ref_dx);
        view_free(&x);
        view_free(&y);
        view_free(&dy);
        view_free(&dx);
    }
}

/* A row region runs through the pooling to a fixed size: each partition adds its stripe of the
 * input, in row order, into the small output. Cut into stripes anywhere (inside a bin, at a bin
 * edge, bins sharing a row: 11 rows into 4 bins), forward gives the bits of one call over the
 * whole map and backward gives each stripe the rows of the whole map's gradient. */
static void test_adaptive_avgpool_on_stripes_equals_the_whole_map(void **state)
{
    rng_seed(1010);
    const int outs[3][2] = {{4, 3}, {1, 1}, {11, 2}};
    /* stripe ends (last rows), ending with 10 */
    const int ends[][12] = {{10}, {1, 10}, {4, 5, 10}, {0, 9, 10}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}};
    for (int t = 0; t < 3; t++) {
        int oh = outs[t][0], ow = outs[t][1];
        cpu_view x = view_random(2, 3, 11, 5), y = view_full(2, 3, oh, ow);
        cpu_view dy = view_random(2, 3, oh, ow), dx = view_full(2, 3, 11, 5);
        cpu_adaptive_avgpool_fwd(&x, &y, 0, 10);
        cpu_adaptive_avgpool_bwd(&dy, &dx, 0, 10);
        for (size_t k = 0; k < sizeof ends / sizeof ends[0]; k++) {
            cpu_view ys = view_full(2, 3, oh, ow);
            fill_uniform(ys.data, view_numel(&ys)); /* stale values must not leak in */
            for (int p = 0, lo = 0; lo <= 10; lo = ends[k][p++] + 1) {
                int hi = ends[k][p];
                cpu_view xs = stripe_copy(&x, lo, hi), dxs = view_new(2, 3, 11, 5, lo, hi - lo + 1);
                cpu_adaptive_avgpool_fwd(&xs, &ys, lo, hi);
                cpu_adaptive_avgpool_bwd(&dy, &dxs, lo, hi);
                for (int n = 0; n < 2; n++)
                    for (int c = 0; c < 3; c++)
                        for (int r = lo; r <= hi; r++)
                            assert_memory_equal(cpu_at(&dxs, n, c, r, 0), cpu_at(&dx, n, c, r, 0),
                                                5 * sizeof(float));
                view_free(&xs);
                view_free(&dxs);
            }
            assert_memory_equal(ys.data, y.data, (size_t)view_numel(&y) * sizeof(float));
            view_free(&ys);
        }
        view_free(&x);
        view_free(&y);
        view_free(&dy);
        view_free(&dx);
    }
}

/* ------------------------------------------------------------------ combining and elementwise */

/* Nearest-neighbour upsampling copies x[r / s][c / s], and backward sums each s x s block
 * of dy into one dx element, accumulating. */
static void test_upsample_matches_reference(void **state)
{
    rng_seed(1100);
    for (int s = 2; s <= 3; s++) {
        cpu_view x = view_random(2, 2, 4, 5), y = view_full(2, 2, 4 * s, 5 * s);
        cpu_view dy = view_random(2, 2, 4 * s, 5 * s), dx = view_random(2, 2, 4, 5);
        double *ref_dx = malloc(sizeof(double) * view_numel(&dx));
        for (int64_t i = 0; i < view_numel(&dx); i++)
            ref_dx[i] = dx.data[i];
        cpu_upsample_fwd(s, &x, &y, 0, 4 * s - 1);
        cpu_upsample_bwd(s, &dy, 0, 4 * s - 1, &dx);
        for (int n = 0; n < 2; n++)
            for (int c = 0; c < 2; c++)
                for (int r = 0; r < 4 * s; r++)
                    for (int q = 0; q < 5 * s; q++) {
                        assert_float_equal(*cpu_at(&y, n, c, r, q), *cpu_at(&x, n, c, r / s, q / s),
                                           0);
                        ref_dx[((n * 2 + c) * 4 + r / s) * 5 + q / s] += *cpu_at(&dy, n, c, r, q);
                    }
        assert_close_f(dx.data, ref_dx, view_numel(&dx), 1e-6, 1e-6, "upsample dx");
        free(ref_dx);
        view_free(&x);
        view_free(&y);
        view_free(&dy);
        view_free(&dx);
    }
}

/* Concat places each input at its channel offset and backward hands each input its channels
 * of dy; add sums two maps and accumulate_rows adds dy into an input gradient. */
static void test_concat_and_add_match_reference(void **state)
{
    rng_seed(1200);
    cpu_view a = view_random(2, 2, 5, 4), b = view_random(2, 3, 5, 4), y = view_full(2, 5, 5, 4);
    cpu_view da = view_random(2, 2, 5, 4), db = view_random(2, 3, 5, 4);
    cpu_view da0 = stripe_copy(&da, 0, 4), db0 = stripe_copy(&db, 0, 4);
    cpu_concat_fwd(&a, 0, &y, 0, 4);
    cpu_concat_fwd(&b, 2, &y, 0, 4);
    cpu_concat_bwd(&y, 0, 0, 4, &da); /* y plays dy */
    cpu_concat_bwd(&y, 2, 0, 4, &db);
    for (int n = 0; n < 2; n++)
        for (int r = 0; r < 5; r++)
            for (int q = 0; q < 4; q++)
                for (int c = 0; c < 5; c++) {
                    const cpu_view *src = c < 2 ? &a : &b, *g0 = c < 2 ? &da0 : &db0;
                    const cpu_view *g = c < 2 ? &da : &db;
                    int cc = c < 2 ? c : c - 2;
                    float v = *cpu_at(src, n, cc, r, q);
                    assert_float_equal(*cpu_at(&y, n, c, r, q), v, 0);
                    assert_float_equal(*cpu_at(g, n, cc, r, q), *cpu_at(g0, n, cc, r, q) + v, 0);
                }
    cpu_view a2 = view_random(2, 2, 5, 4), sum = view_full(2, 2, 5, 4),
             acc = stripe_copy(&a2, 0, 4);
    cpu_add_fwd(&a, &a2, &sum, 0, 4);
    cpu_accumulate_rows(&a, 1, 3, &acc);
    for (int64_t i = 0; i < view_numel(&a); i++) {
        int r = (int)(i / 4 % 5);
        assert_float_equal(sum.data[i], a.data[i] + a2.data[i], 0);
        assert_float_equal(acc.data[i], r >= 1 && r <= 3 ? a2.data[i] + a.data[i] : a2.data[i], 0);
    }
    cpu_view *all[] = {&a, &b, &y, &da, &db, &da0, &db0, &a2, &sum, &acc};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        view_free(all[i]);
}

/* ReLU zeroes negatives; backward adds dy where the output is positive, and in place (dx is dy)
 * leaves dy masked rather than doubled. */
static void test_relu_fwd_bwd_and_in_place(void **state)
{
    rng_seed(1300);
    cpu_view x = view_random(1, 2, 4, 6), y = view_full(1, 2, 4, 6);
    cpu_view dy = view_random(1, 2, 4, 6), dx = view_random(1, 2, 4, 6);
    cpu_view dx0 = stripe_copy(&dx, 0, 3), dy0 = stripe_copy(&dy, 0, 3);
    cpu_relu_fwd(&x, &y, 0, 3);
    cpu_relu_bwd(&y, &dy, 0, 3, &dx);
    cpu_relu_bwd(&y, &dy, 0, 3, &dy);
    for (int64_t i = 0; i < view_numel(&x); i++) {
        bool on = x.data[i] > 0.0f;
        assert_float_equal(y.data[i], on ? x.data[i] : 0.0f, 0);
        assert_float_equal(dx.data[i], dx0.data[i] + (on ? dy0.data[i] : 0.0f), 0);
        assert_float_equal(dy.data[i], on ? dy0.data[i] : 0.0f, 0);
    }
    cpu_relu_fwd(&x, &x, 0, 3); /* in place */
    assert_memory_equal(x.data, y.data, sizeof(float) * view_numel(&x));
    cpu_view *all[] = {&x, &y, &dy, &dx, &dx0, &dy0};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        view_free(all[i]);
}

/* ------------------------------------------------------------------ row splits of the other
 * forward kernels */

typedef void (*rowwise_fwd)(const cpu_view *x, cpu_view *y, int r_lo, int r_hi);

static const cpu_window SPLIT_MAXPOOL = {3, 3, 2, 2, 1, 1, 1, 1, 1};
static const cpu_window SPLIT_AVGPOOL = {3, 3, 2, 1, 1, 1, 1, 1, 1};
static const float SPLIT_STATS[2 * 3] = {0.1f, -0.2f, 0.3f, 1.5f, 0.7f, 2.0f};
static const float SPLIT_GB[2 * 3] = {1.1f, 0.9f, -1.3f, 0.05f, -0.4f, 0.2f};

static void split_maxpool(const cpu_view *x, cpu_view *y, int lo, int hi)
{
    cpu_maxpool_fwd(&SPLIT_MAXPOOL, x, y, lo, hi);
}

static void split_avgpool(const cpu_view *x, cpu_view *y, int lo, int hi)
{
    cpu_avgpool_fwd(&SPLIT_AVGPOOL, x, y, lo, hi);
}

static void split_upsample(const cpu_view *x, cpu_view *y, int lo, int hi)
{
    cpu_upsample_fwd(2, x, y, lo, hi);
}

static void split_dropout(const cpu_view *x, cpu_view *y, int lo, int hi)
{
    cpu_dropout_fwd(77, 0.4, x, y, lo, hi);
}

static void split_bn(const cpu_view *x, cpu_view *y, int lo, int hi)
{
    cpu_bn_fwd(x, SPLIT_STATS, SPLIT_GB, y, lo, hi);
}

typedef struct {
    rowwise_fwd fn;
    int oh, ow;  /* output shape for a (2, 3, 10, 9) input */
    int k, s, p; /* output row r reads input rows [r*s - p, r*s - p + k - 1]... */
    bool halves; /* ...or, for upsampling by 2, row r / 2 */
} split_op;

/* Maxpool, avgpool, upsample, dropout and BatchNorm forward, computed in row pieces (every cut
 * point) from stripes that start mid-map, reproduce the full-map call bit for bit. */
static void test_rowwise_forward_kernels_split_bitwise(void **state)
{
    const split_op ops[] = {
        {split_maxpool, 5, 5, 3, 2, 1, false},   {split_avgpool, 5, 9, 3, 2, 1, false},
        {split_upsample, 20, 18, 1, 1, 0, true}, {split_dropout, 10, 9, 1, 1, 0, false},
        {split_bn, 10, 9, 1, 1, 0, false},
    };
    rng_seed(1400);
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        const split_op *op = &ops[i];
        cpu_view x = view_random(2, 3, 10, 9), y = view_full(2, 3, op->oh, op->ow);
        op->fn(&x, &y, 0, op->oh - 1);
        for (int cut = 1; cut < op->oh; cut++) {
            int piece[2][2] = {{0, cut - 1}, {cut, op->oh - 1}};
            for (int p = 0; p < 2; p++) {
                int lo = piece[p][0], hi = piece[p][1];
                int in_lo = op->halves ? lo / 2 : lo * op->s - op->p;
                int in_hi = op->halves ? hi / 2 : hi * op->s - op->p + op->k - 1;
                cpu_view xs = stripe_copy(&x, in_lo, in_hi);
                cpu_view ys = view_new(y.n, y.c, y.h, y.w, lo, hi - lo + 1);
                op->fn(&xs, &ys, lo, hi);
                assert_rows_identical(&ys, &y, lo, hi);
                view_free(&xs);
                view_free(&ys);
            }
        }
        view_free(&x);
        view_free(&y);
    }
}

/* ------------------------------------------------------------------ batch normalisation */

typedef struct {
    double mean, invstd;
} bn_stat;

/* Per-channel mean and invstd of a full map in double, biased variance. */
static bn_stat bn_ref_stats(const cpu_view *x, int c, double eps)
{
    double s = 0.0, sq = 0.0, count = (double)x->n * x->h * x->w;
    for (int n = 0; n < x->n; n++)
        for (int r = 0; r < x->h; r++)
            for (int q = 0; q < x->w; q++)
                s += *cpu_at(x, n, c, r, q);
    double mean = s / count;
    for (int n = 0; n < x->n; n++)
        for (int r = 0; r < x->h; r++)
            for (int q = 0; q < x->w; q++) {
                double dv = *cpu_at(x, n, c, r, q) - mean;
                sq += dv * dv;
            }
    return (bn_stat){mean, 1.0 / sqrt(sq / count + eps)};
}

/* Statistics gathered over two row ranges and finalised equal the double mean and invstd,
 * and y = gamma * xhat + beta matches the double reference. */
static void test_bn_forward_matches_double_reference(void **state)
{
    rng_seed(1500);
    const int C = 3, H = 6, W = 5;
    cpu_view x = view_random(2, C, H, W), y = view_full(2, C, H, W);
    for (int64_t i = 0; i < view_numel(&x); i++)
        x.data[i] = 3.0f + 2.0f * x.data[i]; /* a mean far from zero tests the variance formula */
    double acc[6] = {0};
    float stats[6], gb[6] = {1.5f, -0.5f, 0.8f, 0.1f, 0.2f, -0.3f};
    cpu_bn_accumulate(&x, 0, 2, acc);
    cpu_bn_accumulate(&x, 3, H - 1, acc);
    cpu_bn_finalize(acc, C, 2 * H * W, 1e-5, stats);
    cpu_bn_fwd(&x, stats, gb, &y, 0, H - 1);
    for (int c = 0; c < C; c++) {
        bn_stat ref = bn_ref_stats(&x, c, 1e-5);
        assert_float_equal(stats[c], ref.mean, 1e-6 * fabs(ref.mean));
        assert_float_equal(stats[C + c], ref.invstd, 1e-5 * ref.invstd);
        for (int n = 0; n < 2; n++)
            for (int r = 0; r < H; r++)
                for (int q = 0; q < W; q++) {
                    double want =
                        gb[c] * (*cpu_at(&x, n, c, r, q) - ref.mean) * ref.invstd + gb[C + c];
                    assert_float_equal(*cpu_at(&y, n, c, r, q), want, 1e-5);
                }
    }
    view_free(&x);
    view_free(&y);
}

/* The BN fixture for backward tests: x, dy, gamma/beta, and statistics taken over all rows. */
typedef struct {
    cpu_view x, dy;
    float stats[6], gb[6];
    double gacc[6];
    int64_t count;
} bn_data;

static bn_data bn_data_new(uint64_t seed)
{
    bn_data d = {.gb = {1.5f, -0.5f, 0.8f, 0.1f, 0.2f, -0.3f}};
    rng_seed(seed);
    d.x = view_random(2, 3, 6, 5);
    d.dy = view_random(2, 3, 6, 5);
    d.count = 2 * 6 * 5;
    double acc[6] = {0};
    cpu_bn_accumulate(&d.x, 0, 5, acc);
    cpu_bn_finalize(acc, 3, d.count, 1e-5, d.stats);
    cpu_bn_grad_accumulate(&d.x, d.stats, &d.dy, 0, 5, d.gacc);
    return d;
}

static void bn_data_free(bn_data *d)
{
    view_free(&d->x);
    view_free(&d->dy);
}

/* L = sum(bn(x) * dy) in double, statistics recomputed from x: what backward differentiates. */
static double bn_ref_loss(const bn_data *d)
{
    double loss = 0.0;
    for (int c = 0; c < 3; c++) {
        bn_stat s = bn_ref_stats(&d->x, c, 1e-5);
        for (int n = 0; n < 2; n++)
            for (int r = 0; r < 6; r++)
                for (int q = 0; q < 5; q++)
                    loss += (d->gb[c] * (*cpu_at(&d->x, n, c, r, q) - s.mean) * s.invstd +
                             d->gb[3 + c]) *
                            *cpu_at(&d->dy, n, c, r, q);
    }
    return loss;
}

/* Backward with both flags gives dx, dgamma and dbeta equal to central differences of the
 * double-precision BN loss (statistics depend on x), accumulating into dx. */
static void test_bn_backward_matches_finite_differences(void **state)
{
    bn_data d = bn_data_new(1600);
    cpu_view dx = view_random(2, 3, 6, 5), dx0 = stripe_copy(&dx, 0, 5);
    float dgb[6] = {0};
    cpu_bn_bwd(&d.x, d.stats, d.gb, &d.dy, 0, 5, d.gacc, d.count, true, true, &dx, dgb);
    for (int64_t i = 0; i < view_numel(&dx); i += 7) {
        float saved = d.x.data[i];
        d.x.data[i] = saved + 1e-2f;
        double up = bn_ref_loss(&d);
        d.x.data[i] = saved - 1e-2f;
        double down = bn_ref_loss(&d);
        d.x.data[i] = saved;
        double fd = (up - down) / (double)((saved + 1e-2f) - (saved - 1e-2f));
        assert_float_equal(dx.data[i] - dx0.data[i], fd, 2e-3);
    }
    for (int j = 0; j < 6; j++) {
        float saved = d.gb[j];
        d.gb[j] = saved + 0.5f;
        double up = bn_ref_loss(&d);
        d.gb[j] = saved - 0.5f;
        double down = bn_ref_loss(&d);
        d.gb[j] = saved;
        assert_float_equal(dgb[j], (up - down) / 1.0, 1e-4); /* linear in gamma and beta */
    }
    view_free(&dx);
    view_free(&dx0);
    bn_data_free(&d);
}

/* dgb read off the gradient sums (cpu_bn_params_from_sums, what the backend does after gathering
 * them for a column or stripe call) is the same bits as cpu_bn_bwd summing them itself, over the
 * whole map and over a stripe, added to what dgb held. */
static void test_bn_params_from_sums_equal_bwd_sums(void **state)
{
    bn_data d = bn_data_new(1650);
    const int rows[2][2] = {{0, 5}, {2, 3}};
    for (int k = 0; k < 2; k++) {
        double gacc[6] = {0};
        cpu_bn_grad_accumulate(&d.x, d.stats, &d.dy, rows[k][0], rows[k][1], gacc);
        float summed[6] = {0.25f, -1, 2, 0, 3, -0.5f}, read[6];
        memcpy(read, summed, sizeof read);
        cpu_bn_bwd(&d.x, d.stats, d.gb, &d.dy, rows[k][0], rows[k][1], gacc, d.count, true, true,
                   NULL, summed);
        cpu_bn_params_from_sums(gacc, 3, read);
        assert_memory_equal(read, summed, sizeof read);
    }
    bn_data_free(&d);
}

/* An overlapping cover: partition 1 back-propagates rows [0, 3] with its partial dy and owns
 * [0, 2]; partition 2 rows [2, 5], owns [3, 5]. Direct and reduction calls summed equal one call.
 */
static void test_bn_split_direct_and_reduction_equal_single_call(void **state)
{
    bn_data d = bn_data_new(1700);
    cpu_view dx_one = view_full(2, 3, 6, 5), dx_sum = view_full(2, 3, 6, 5);
    float dgb_one[6] = {0}, dgb_sum[6] = {0};
    cpu_bn_bwd(&d.x, d.stats, d.gb, &d.dy, 0, 5, d.gacc, d.count, true, true, &dx_one, dgb_one);

    const int part[2][4] = {{0, 3, 0, 2}, {2, 5, 3, 5}}; /* back-propagated rows, owned rows */
    for (int p = 0; p < 2; p++) {
        /* The overlap row 2..3 of dy is split between the partitions: 30% and 70%. */
        cpu_view dys = stripe_copy(&d.dy, part[p][0], part[p][1]);
        for (int n = 0; n < 2; n++)
            for (int c = 0; c < 3; c++)
                for (int r = 2; r <= 3; r++)
                    for (int q = 0; q < 5; q++)
                        *cpu_at(&dys, n, c, r, q) *= p == 0 ? 0.3f : 0.7f;
        cpu_view xs = stripe_copy(&d.x, part[p][0], part[p][1]);
        cpu_view dxs = view_new(2, 3, 6, 5, part[p][0], part[p][1] - part[p][0] + 1);
        cpu_bn_bwd(&xs, d.stats, d.gb, &dys, part[p][0], part[p][1], d.gacc, d.count, false, true,
                   &dxs, dgb_sum);
        cpu_bn_bwd(&xs, d.stats, d.gb, &dys, part[p][2], part[p][3], d.gacc, d.count, true, false,
                   &dxs, NULL);
        stripe_add_into(&dxs, &dx_sum);
        view_free(&dys);
        view_free(&xs);
        view_free(&dxs);
    }
    assert_close_ff(dx_sum.data, dx_one.data, view_numel(&dx_one), 1e-5, 1e-5, "bn split dx");
    assert_close_ff(dgb_sum, dgb_one, 6, 1e-5, 1e-5, "bn split dgb");
    view_free(&dx_one);
    view_free(&dx_sum);
    bn_data_free(&d);
}

/* Frozen BatchNorm (running statistics as a fixed map): the forward equals the double reference
 * gamma * (x - mean) / sqrt(var + eps) + beta, backward accumulates dx = gamma * dy / sqrt(var +
 * eps) and dgb = (sum dy * xhat, sum dy); computed as two row ranges, the forward and dx are the
 * same bits as one call (nothing is gathered across rows) and dgb agrees to float rounding. */
static void test_bn_frozen_matches_double_reference_and_splits_by_rows(void **state)
{
    rng_seed(1750);
    const int C = 3, H = 6, W = 5;
    cpu_view x = view_random(2, C, H, W), dy = view_random(2, C, H, W);
    cpu_view y_one = view_full(2, C, H, W), y_two = view_full(2, C, H, W);
    cpu_view dx_one = view_random(2, C, H, W), dx_two = stripe_copy(&dx_one, 0, H - 1);
    cpu_view dx0 = stripe_copy(&dx_one, 0, H - 1);
    const float running[6] = {0.3f, -1.2f, 2.0f, 0.5f, 1.7f, 0.04f}, gb[6] = {1.5f, -0.5f, 0.8f,
                                                                            0.1f, 0.2f, -0.3f};
    float dgb_one[6] = {0}, dgb_two[6] = {0};
    cpu_bn_frozen_fwd(&x, running, 1e-5, gb, &y_one, 0, H - 1);
    cpu_bn_frozen_fwd(&x, running, 1e-5, gb, &y_two, 0, 2);
    cpu_bn_frozen_fwd(&x, running, 1e-5, gb, &y_two, 3, H - 1);
    cpu_bn_frozen_bwd(&x, running, 1e-5, gb, &dy, 0, H - 1, &dx_one, dgb_one);
    cpu_bn_frozen_bwd(&x, running, 1e-5, gb, &dy, 0, 3, &dx_two, dgb_two);
    cpu_bn_frozen_bwd(&x, running, 1e-5, gb, &dy, 4, H - 1, &dx_two, dgb_two);
    assert_memory_equal(y_one.data, y_two.data, sizeof(float) * (size_t)view_numel(&x));
    assert_memory_equal(dx_one.data, dx_two.data, sizeof(float) * (size_t)view_numel(&x));
    for (int c = 0; c < C; c++) {
        double invstd = 1.0 / sqrt((double)running[C + c] + 1e-5), sdy = 0, sdyx = 0;
        for (int n = 0; n < 2; n++)
            for (int r = 0; r < H; r++)
                for (int q = 0; q < W; q++) {
                    double xhat = (*cpu_at(&x, n, c, r, q) - running[c]) * invstd;
                    double g = *cpu_at(&dy, n, c, r, q);
                    assert_float_equal(*cpu_at(&y_one, n, c, r, q), gb[c] * xhat + gb[C + c], 1e-5);
                    assert_float_equal(*cpu_at(&dx_one, n, c, r, q) - *cpu_at(&dx0, n, c, r, q),
                                       gb[c] * invstd * g, 1e-5);
                    sdy += g, sdyx += g * xhat;
                }
        assert_float_equal(dgb_one[c], sdyx, 1e-4);
        assert_float_equal(dgb_one[C + c], sdy, 1e-4);
    }
    assert_close_ff(dgb_two, dgb_one, 6, 1e-5, 1e-5, "frozen bn split dgb");
    cpu_view *views[] = {&x, &dy, &y_one, &y_two, &dx_one, &dx_two, &dx0};
    for (size_t i = 0; i < sizeof views / sizeof views[0]; i++)
        view_free(views[i]);
}

/* Running statistics follow PyTorch: (1 - m) * running + m * batch, with the unbiased variance
 * var * count / (count - 1); two updates checked against hand-computed values. */
static void test_bn_running_update_matches_pytorch(void **state)
{
    /* sums over 10 elements: means 0.5 and -1, biased variances 0.25 and 4 */
    double acc[4] = {5.0, -10.0, 10 * (0.25 + 0.25), 10 * (4.0 + 1.0)};
    float running[4] = {0.0f, 0.0f, 1.0f, 1.0f};
    cpu_bn_update_running(acc, 2, 10, 0.1, running);
    assert_float_equal(running[0], 0.05, 1e-7);
    assert_float_equal(running[1], -0.1, 1e-7);
    assert_float_equal(running[2], 0.9 + 0.1 * 0.25 * 10.0 / 9.0, 1e-6);
    assert_float_equal(running[3], 0.9 + 0.1 * 4.0 * 10.0 / 9.0, 1e-6);
    cpu_bn_update_running(acc, 2, 10, 0.1, running);
    assert_float_equal(running[0], 0.9 * 0.05 + 0.05, 1e-7);
    assert_float_equal(running[2], 0.9 * (0.9 + 0.25 / 9.0) + 0.25 / 9.0, 1e-6);
}

/* ------------------------------------------------------------------ dropout */

/* The keep mask is the documented function of (seed, index) that make_golden.py reproduces:
 * golden bits from the Python definition, and the same answer on every call. */
static void test_dropout_mask_is_the_documented_pure_function(void **state)
{
    const struct {
        uint64_t seed;
        int64_t first;
        double p;
        uint64_t bits;
    } golden[] = {
        {42, 0, 0.5, 0xcf06328ff9b0e543ull},
        {0xDEADBEEFCAFEF00Dull, (int64_t)1 << 40, 0.25, 0xf35fc757f6ff7e9bull},
    };
    for (int g = 0; g < 2; g++) {
        uint64_t bits = 0;
        for (int i = 0; i < 64; i++)
            if (cpu_dropout_keep(golden[g].seed, golden[g].first + i, golden[g].p))
                bits |= 1ull << i;
        assert_int_equal(bits, golden[g].bits);
    }
    for (int64_t i = 0; i < 1000; i++)
        assert_int_equal(cpu_dropout_keep(9, i, 0.5), cpu_dropout_keep(9, i, 0.5));
}

/* Over 200000 indices the kept fraction is within 0.005 of 1 - p; p = 0 keeps everything and
 * p = 1 nothing. */
static void test_dropout_keeps_about_one_minus_p(void **state)
{
    const double ps[] = {0.1, 0.3, 0.5, 0.9};
    for (int k = 0; k < 4; k++) {
        int kept = 0;
        for (int64_t i = 0; i < 200000; i++)
            kept += cpu_dropout_keep(1234 + k, i, ps[k]);
        assert_float_equal(kept / 200000.0, 1.0 - ps[k], 0.005);
    }
    for (int64_t i = 0; i < 1000; i++) {
        assert_true(cpu_dropout_keep(5, i, 0.0));
        assert_false(cpu_dropout_keep(5, i, 1.0));
    }
}

/* Forward and backward apply mask * (float)(1 / (1 - p)) with the full-map index
 * ((n*C + c)*H + r)*W + x, also from a stripe with row0 > 0; backward accumulates. */
static void test_dropout_fwd_bwd_use_full_map_indices(void **state)
{
    rng_seed(1800);
    const double p = 0.3;
    const float scale = (float)(1.0 / (1.0 - p));
    cpu_view x = view_random(2, 3, 7, 5), dx = view_random(2, 3, 7, 5);
    cpu_view xs = stripe_copy(&x, 3, 6), ys = view_new(2, 3, 7, 5, 3, 4);
    cpu_view dxs = stripe_copy(&dx, 3, 6);
    cpu_dropout_fwd(99, p, &xs, &ys, 3, 6);
    cpu_dropout_bwd(99, p, &xs, 3, 6, &dxs); /* x plays dy */
    int kept = 0;
    for (int n = 0; n < 2; n++)
        for (int c = 0; c < 3; c++)
            for (int r = 3; r < 7; r++)
                for (int q = 0; q < 5; q++) {
                    bool keep = cpu_dropout_keep(99, ((n * 3 + c) * 7 + r) * 5 + q, p);
                    float v = *cpu_at(&x, n, c, r, q), want = keep ? v * scale : 0.0f;
                    kept += keep;
                    assert_float_equal(*cpu_at(&ys, n, c, r, q), want, 0);
                    assert_float_equal(*cpu_at(&dxs, n, c, r, q), *cpu_at(&dx, n, c, r, q) + want,
                                       0);
                }
    assert_true(kept > 0 && kept < 2 * 3 * 4 * 5);
    cpu_view *all[] = {&x, &dx, &xs, &ys, &dxs};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        view_free(all[i]);
}

/* ------------------------------------------------------------------ fc and loss */

enum { FC_N = 3, FC_IN = 19, FC_OUT = 5 };

/* y = x W^T + b matches double; backward accumulates dx = dy W, dw = dy^T x, db = sum dy,
 * and dx, dw agree with finite differences of sum(y * dy). */
static void test_fc_matches_reference_and_finite_differences(void **state)
{
    rng_seed(1900);
    float x[FC_N * FC_IN], w[FC_OUT * FC_IN], b[FC_OUT], y[FC_N * FC_OUT], dy[FC_N * FC_OUT];
    float dx[FC_N * FC_IN] = {0}, dw[FC_OUT * FC_IN] = {0}, db[FC_OUT];
    fill_uniform(x, FC_N * FC_IN);
    fill_uniform(w, FC_OUT * FC_IN);
    fill_uniform(b, FC_OUT);
    fill_uniform(dy, FC_N * FC_OUT);
    fill_uniform(db, FC_OUT);
    float db0[FC_OUT];
    memcpy(db0, db, sizeof db);
    cpu_fc_fwd(x, w, b, y, FC_N, FC_IN, FC_OUT);
    cpu_fc_bwd(x, w, dy, FC_N, FC_IN, FC_OUT, dx, dw, db);
    for (int n = 0; n < FC_N; n++)
        for (int o = 0; o < FC_OUT; o++)
            assert_float_equal(y[n * FC_OUT + o], b[o] + dot_d(x + n * FC_IN, w + o * FC_IN, FC_IN),
                               1e-5);
    for (int o = 0; o < FC_OUT; o++) {
        double s = db0[o];
        for (int n = 0; n < FC_N; n++)
            s += dy[n * FC_OUT + o];
        assert_float_equal(db[o], s, 1e-6);
    }
    float ys[FC_N * FC_OUT];
    float *params[2] = {x, w}, *grads[2] = {dx, dw};
    const int counts[2] = {FC_N * FC_IN, FC_OUT * FC_IN};
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < counts[t]; i += 3) {
            float saved = params[t][i];
            params[t][i] = saved + 0.25f;
            cpu_fc_fwd(x, w, b, ys, FC_N, FC_IN, FC_OUT);
            double up = dot_d(ys, dy, FC_N * FC_OUT);
            params[t][i] = saved - 0.25f;
            cpu_fc_fwd(x, w, b, ys, FC_N, FC_IN, FC_OUT);
            double down = dot_d(ys, dy, FC_N * FC_OUT);
            params[t][i] = saved;
            assert_float_equal(grads[t][i], (up - down) / 0.5, 1e-4);
        }
}

/* Mean cross-entropy matches a double log-softmax, stays finite for logits near 1000, and
 * dlogits (accumulated) equals (softmax - onehot) / N and finite differences of the loss. */
static void test_softmax_xent_matches_reference_and_finite_differences(void **state)
{
    rng_seed(2000);
    enum { N = 4, K = 7 };
    float logits[N * K], d[N * K];
    int32_t labels[N] = {0, 6, 3, 3};
    fill_uniform(logits, N * K);
    for (int i = 0; i < N * K; i++)
        logits[i] *= 4.0f;
    fill_uniform(d, N * K);
    float d0[N * K];
    memcpy(d0, d, sizeof d);
    double want = 0.0;
    for (int n = 0; n < N; n++) {
        double s = 0.0;
        for (int j = 0; j < K; j++)
            s += exp(logits[n * K + j]);
        want += (log(s) - logits[n * K + labels[n]]) / N;
        for (int j = 0; j < K; j++)
            d0[n * K + j] += (float)((exp(logits[n * K + j]) / s - (j == labels[n])) / N);
    }
    assert_float_equal(cpu_softmax_xent_fwd(logits, labels, N, K), want, 1e-6);
    cpu_softmax_xent_bwd(logits, labels, N, K, d);
    assert_close_ff(d, d0, N * K, 1e-6, 1e-6, "dlogits");

    float g[N * K] = {0};
    cpu_softmax_xent_bwd(logits, labels, N, K, g);
    for (int i = 0; i < N * K; i++) {
        float saved = logits[i];
        logits[i] = saved + 1e-2f;
        double up = cpu_softmax_xent_fwd(logits, labels, N, K);
        logits[i] = saved - 1e-2f;
        double down = cpu_softmax_xent_fwd(logits, labels, N, K);
        logits[i] = saved;
        assert_float_equal(g[i], (up - down) / 2e-2, 2e-4);
    }

    const float big[3] = {1000.0f, 1001.0f, 1002.0f};
    const int32_t zero = 0;
    assert_float_equal(cpu_softmax_xent_fwd(big, &zero, 1, 3), 2.4076059644443806, 1e-6);
}

/* ------------------------------------------------------------------ optimisers */

/* Two steps from w = (1, -2) with gradients (0.5, 0.25) then (-1, 0.5), lr 0.1, weight decay
 * 0.01; expected values worked out by hand (and in Python) from torch's update rules. */
static const float OPT_W0[2] = {1.0f, -2.0f};
static const float OPT_G[2][2] = {{0.5f, 0.25f}, {-1.0f, 0.5f}};

/* SGD: w -= lr * (g + wd * w), and the gradient is zeroed after each step. */
static void test_sgd_two_steps_match_hand_computed(void **state)
{
    float w[2] = {OPT_W0[0], OPT_W0[1]}, g[2];
    const double want[2][2] = {{0.949, -2.023}, {1.048051, -2.070977}};
    for (int step = 0; step < 2; step++) {
        memcpy(g, OPT_G[step], sizeof g);
        cpu_sgd_update(w, g, 2, 0.1f, 0.01f);
        assert_float_equal(w[0], want[step][0], 1e-6);
        assert_float_equal(w[1], want[step][1], 1e-6);
        assert_true(g[0] == 0.0f && g[1] == 0.0f);
    }
}

/* Momentum 0.9: buf = 0.9 buf + (g + wd w) starting from a zero buffer, w -= lr * buf. */
static void test_momentum_two_steps_match_hand_computed(void **state)
{
    float w[2] = {OPT_W0[0], OPT_W0[1]}, g[2], buf[2] = {0};
    const double want_w[2][2] = {{0.949, -2.023}, {1.002151, -2.091677}};
    const double want_buf[2][2] = {{0.51, 0.23}, {-0.53151, 0.68677}};
    for (int step = 0; step < 2; step++) {
        memcpy(g, OPT_G[step], sizeof g);
        cpu_momentum_update(w, g, buf, 2, 0.1f, 0.9f, 0.01f);
        for (int i = 0; i < 2; i++) {
            assert_float_equal(w[i], want_w[step][i], 1e-6);
            assert_float_equal(buf[i], want_buf[step][i], 1e-6);
            assert_true(g[i] == 0.0f);
        }
    }
}

/* Adam (betas 0.9/0.999, eps 1e-8, L2 decay added to g): bias-corrected moments; the first
 * step moves each weight by about lr, the second by less. */
static void test_adam_two_steps_match_hand_computed(void **state)
{
    float w[2] = {OPT_W0[0], OPT_W0[1]}, g[2], st[4] = {0};
    const double want_w[2][2] = {{0.9000000019607842, -2.099999995652174},
                                 {0.9355236415321512, -2.196079469240874}};
    const double want_m[2][2] = {{0.051, 0.023}, {-0.0532, 0.0686}};
    const double want_v[2][2] = {{0.0002601, 5.29e-05},
                                 {0.0012419208999611372, 0.0002822881000416522}};
    for (int step = 0; step < 2; step++) {
        memcpy(g, OPT_G[step], sizeof g);
        cpu_adam_update(w, g, st, 2, 0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, step + 1);
        for (int i = 0; i < 2; i++) {
            assert_float_equal(w[i], want_w[step][i], 2e-6);
            assert_float_equal(st[i], want_m[step][i], 1e-6);
            /* 0.999f is 0.999 + 1.3e-8, so (1 - beta2) and v are off by 1.3e-5 relative */
            assert_float_equal(st[2 + i], want_v[step][i], 1e-4 * want_v[step][i]);
            assert_true(g[i] == 0.0f);
        }
    }
}

/* ------------------------------------------------------------------ copies */

/* Rows move between two stripes of one map with different row0: assignment overwrites,
 * accumulation adds, and rows outside [r_lo, r_hi] are untouched. */
static void test_copy_rows_between_stripes(void **state)
{
    rng_seed(2100);
    cpu_view full = view_random(2, 3, 8, 4);
    cpu_view src = stripe_copy(&full, 2, 6), dst = stripe_copy(&full, 4, 7);
    cpu_view before = stripe_copy(&dst, 4, 7);
    for (int64_t i = 0; i < view_numel(&src); i++)
        src.data[i] += 1.0f;
    cpu_copy_rows(&src, &dst, 4, 5, false);
    cpu_copy_rows(&src, &dst, 5, 6, true);
    for (int n = 0; n < 2; n++)
        for (int c = 0; c < 3; c++)
            for (int r = 4; r < 8; r++)
                for (int q = 0; q < 4; q++) {
                    float s = r <= 6 ? *cpu_at(&src, n, c, r, q) : 0.0f,
                          b = *cpu_at(&before, n, c, r, q);
                    float want = r == 4 ? s : r == 5 ? s + s : r == 6 ? b + s : b;
                    assert_float_equal(*cpu_at(&dst, n, c, r, q), want, 0);
                }
    cpu_view *all[] = {&full, &src, &dst, &before};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        view_free(all[i]);
}

/* ------------------------------------------------------------------ thread-count independence */

/* Sizes for the thread test: every kernel below does at least PARALLEL_MIN_WORK (2^17) element
 * operations, or PARALLEL_MIN_MACS (2^21) multiply-adds for the convolution and the fully
 * connected layer, in several work units, so it really runs in parallel (smaller calls stay on
 * one thread), but the stripe's convolution (2 rows: 276,480 multiply-adds forward), which
 * takes threads only under the spinning thresholds (cpu_set_spinning). */
enum { TH_N = 4, TH_C = 8, TH_H = 64, TH_W = 80, TH_FC_N = 8, TH_FC_IN = 2048, TH_FC_OUT = 128 };

typedef struct {
    cpu_view y, dx, mp_dx, bn_dx;
    cpu_view sy, sdx; /* a stripe's: two output rows, in one parallel unit each */
    float *dw, *db, *fc_dx, *fc_dw, *fc_db, *sdw, *sdb, bn_dgb[2 * TH_C];
    double bn_acc[2 * TH_C], bn_gacc[2 * TH_C];
} thread_run;

static void run_conv_and_pool(conv_data *d, thread_run *t)
{
    const cpu_window pool = {3, 3, 2, 2, 1, 1, 1, 1, 1};
    t->y = view_full(d->y.n, d->y.c, d->y.h, d->y.w);
    t->dx = view_full(TH_N, TH_C, TH_H, TH_W);
    t->dw = calloc(d->w_count, sizeof(float));
    t->db = calloc(d->k.cout, sizeof(float));
    cpu_conv_fwd(&d->k.g, &d->x, d->w, d->b, &t->y, 0, d->oh - 1, &d->ws);
    cpu_conv_bwd(&d->k.g, &d->x, d->w, &d->dy, 0, d->oh - 1, &t->dx, t->dw, t->db, &d->ws);
    /* the stripe: below PARALLEL_MIN_MACS, above it lowered (one thread unless spinning) */
    t->sy = view_full(d->y.n, d->y.c, d->y.h, d->y.w);
    t->sdx = view_full(TH_N, TH_C, TH_H, TH_W);
    t->sdw = calloc(d->w_count, sizeof(float));
    t->sdb = calloc(d->k.cout, sizeof(float));
    cpu_conv_fwd(&d->k.g, &d->x, d->w, d->b, &t->sy, 0, 1, &d->ws);
    cpu_conv_bwd(&d->k.g, &d->x, d->w, &d->dy, 0, 1, &t->sdx, t->sdw, t->sdb, &d->ws);
    cpu_view mp_y = view_full(TH_N, TH_C, TH_H / 2, TH_W / 2);
    t->mp_dx = view_full(TH_N, TH_C, TH_H, TH_W);
    cpu_maxpool_fwd(&pool, &d->x, &mp_y, 0, TH_H / 2 - 1);
    cpu_maxpool_bwd(&pool, &d->x, &mp_y, 0, TH_H / 2 - 1, &t->mp_dx);
    view_free(&mp_y);
}

/* BN statistics, gradient reductions and backward, with x playing dy. */
static void run_bn(conv_data *d, thread_run *t)
{
    float stats[2 * TH_C], gb[2 * TH_C];
    int64_t count = (int64_t)TH_N * TH_H * TH_W;
    for (int c = 0; c < 2 * TH_C; c++)
        gb[c] = 0.5f + 0.25f * c;
    memset(t->bn_acc, 0, sizeof t->bn_acc);
    memset(t->bn_gacc, 0, sizeof t->bn_gacc);
    memset(t->bn_dgb, 0, sizeof t->bn_dgb);
    t->bn_dx = view_full(TH_N, TH_C, TH_H, TH_W);
    cpu_bn_accumulate(&d->x, 0, TH_H - 1, t->bn_acc);
    cpu_bn_finalize(t->bn_acc, TH_C, count, 1e-5, stats);
    cpu_bn_grad_accumulate(&d->x, stats, &d->x, 0, TH_H - 1, t->bn_gacc);
    cpu_bn_bwd(&d->x, stats, gb, &d->x, 0, TH_H - 1, t->bn_gacc, count, true, true, &t->bn_dx,
               t->bn_dgb);
}

static void run_fc(const float *fx, const float *fw, const float *fdy, thread_run *t)
{
    t->fc_dx = calloc(TH_FC_N * TH_FC_IN, sizeof(float));
    t->fc_dw = calloc(TH_FC_OUT * TH_FC_IN, sizeof(float));
    t->fc_db = calloc(TH_FC_OUT, sizeof(float));
    cpu_fc_bwd(fx, fw, fdy, TH_FC_N, TH_FC_IN, TH_FC_OUT, t->fc_dx, t->fc_dw, t->fc_db);
}

static void thread_run_free(thread_run *t)
{
    cpu_view *views[] = {&t->y, &t->dx, &t->mp_dx, &t->bn_dx, &t->sy, &t->sdx};
    for (size_t i = 0; i < sizeof views / sizeof views[0]; i++)
        view_free(views[i]);
    free(t->dw);
    free(t->db);
    free(t->fc_dx);
    free(t->fc_dw);
    free(t->fc_db);
    free(t->sdw);
    free(t->sdb);
}

static void assert_same_bits(const thread_run *a, const thread_run *b, const conv_data *d)
{
    assert_memory_equal(a->y.data, b->y.data, sizeof(float) * view_numel(&a->y));
    assert_memory_equal(a->dx.data, b->dx.data, sizeof(float) * view_numel(&a->dx));
    assert_memory_equal(a->dw, b->dw, sizeof(float) * d->w_count);
    assert_memory_equal(a->db, b->db, sizeof(float) * d->k.cout);
    assert_memory_equal(a->mp_dx.data, b->mp_dx.data, sizeof(float) * view_numel(&a->mp_dx));
    assert_memory_equal(a->bn_dx.data, b->bn_dx.data, sizeof(float) * view_numel(&a->bn_dx));
    assert_memory_equal(a->bn_acc, b->bn_acc, sizeof a->bn_acc);
    assert_memory_equal(a->bn_gacc, b->bn_gacc, sizeof a->bn_gacc);
    assert_memory_equal(a->bn_dgb, b->bn_dgb, sizeof a->bn_dgb);
    assert_memory_equal(a->fc_dx, b->fc_dx, sizeof(float) * TH_FC_N * TH_FC_IN);
    assert_memory_equal(a->fc_dw, b->fc_dw, sizeof(float) * TH_FC_OUT * TH_FC_IN);
    assert_memory_equal(a->fc_db, b->fc_db, sizeof(float) * TH_FC_OUT);
    assert_memory_equal(a->sy.data, b->sy.data, sizeof(float) * view_numel(&a->sy));
    assert_memory_equal(a->sdx.data, b->sdx.data, sizeof(float) * view_numel(&a->sdx));
    assert_memory_equal(a->sdw, b->sdw, sizeof(float) * d->w_count);
    assert_memory_equal(a->sdb, b->sdb, sizeof(float) * d->k.cout);
}

/* Conv forward/backward, maxpool backward, BN reductions and fc backward, each big enough to
 * run in parallel, give identical bits with 1, 2 and 3 OpenMP threads, and with 2 threads under
 * the spinning thresholds (cpu_set_spinning: more of the calls take threads). Run again with the
 * convolution through im2col + GEMM, whose dw tiles go in one set of K blocks per thread (two
 * tiles here: one set on one thread, two on two or three). */
static void test_results_do_not_depend_on_thread_count(void **state)
{
    conv_case big = {TH_N, TH_C, TH_H, TH_W, 12, {3, 3, 1, 1, 1, 1, 1, 1, 2}, true};
    conv_data d = conv_data_new(&big, 2200);
    float *fx = malloc(sizeof(float) * TH_FC_N * TH_FC_IN);
    float *fw = malloc(sizeof(float) * TH_FC_OUT * TH_FC_IN);
    float *fdy = malloc(sizeof(float) * TH_FC_N * TH_FC_OUT);
    fill_uniform(fx, TH_FC_N * TH_FC_IN);
    fill_uniform(fw, TH_FC_OUT * TH_FC_IN);
    fill_uniform(fdy, TH_FC_N * TH_FC_OUT);
    int saved = omp_get_max_threads();
    thread_run runs[4];
    for (int i = 0; i < 4; i++) {
        omp_set_num_threads(i < 3 ? i + 1 : 2);
        cpu_set_spinning(i == 3);
        run_conv_and_pool(&d, &runs[i]);
        run_bn(&d, &runs[i]);
        run_fc(fx, fw, fdy, &runs[i]);
    }
    cpu_set_spinning(false);
    omp_set_num_threads(saved);
    for (int i = 1; i < 4; i++)
        assert_same_bits(&runs[i], &runs[0], &d);
    for (int i = 0; i < 4; i++)
        thread_run_free(&runs[i]);
    free(fx);
    free(fw);
    free(fdy);
    conv_data_free(&d);
}

/* The convolution tests again with every layer through im2col + GEMM (cpu_conv_set_direct):
 * the cases small enough to run direct then test the GEMM path too. */
static int gemm_only(void **state)
{
    (void)state;
    cpu_conv_set_direct(false);
    return 0;
}

static int direct_allowed_again(void **state)
{
    (void)state;
    cpu_conv_set_direct(true);
    return 0;
}

#define GEMM_ONLY(f) {#f " (im2col + GEMM only)", f, gemm_only, direct_allowed_again, NULL}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--rows-case") == 0)
        return run_rows_case(argv[2], argv[3]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_fwd_matches_double_reference),
        cmocka_unit_test(test_conv_fwd_row_split_is_bitwise_exact),
        cmocka_unit_test(test_conv_bwd_matches_double_reference),
        cmocka_unit_test(test_conv_bwd_matches_finite_differences),
        cmocka_unit_test(test_conv_bwd_row_splits_sum_to_full),
        cmocka_unit_test(test_conv_bwd_skips_null_gradients),
        GEMM_ONLY(test_conv_fwd_matches_double_reference),
        GEMM_ONLY(test_conv_fwd_row_split_is_bitwise_exact),
        GEMM_ONLY(test_conv_bwd_matches_double_reference),
        GEMM_ONLY(test_conv_bwd_matches_finite_differences),
        GEMM_ONLY(test_conv_bwd_row_splits_sum_to_full),
        GEMM_ONLY(test_conv_bwd_skips_null_gradients),
        cmocka_unit_test(test_backward_kernels_skip_null_input_gradient),
        cmocka_unit_test(test_kernels_abort_on_rows_outside_view),
        cmocka_unit_test(test_maxpool_matches_reference_with_ties),
        cmocka_unit_test(test_maxpool_nan_and_infinite_windows),
        cmocka_unit_test(test_avgpool_counts_padding),
        cmocka_unit_test(test_adaptive_and_global_avgpool_match_reference),
        cmocka_unit_test(test_adaptive_avgpool_on_stripes_equals_the_whole_map),
        cmocka_unit_test(test_upsample_matches_reference),
        cmocka_unit_test(test_concat_and_add_match_reference),
        cmocka_unit_test(test_relu_fwd_bwd_and_in_place),
        cmocka_unit_test(test_rowwise_forward_kernels_split_bitwise),
        cmocka_unit_test(test_bn_forward_matches_double_reference),
        cmocka_unit_test(test_bn_backward_matches_finite_differences),
        cmocka_unit_test(test_bn_params_from_sums_equal_bwd_sums),
        cmocka_unit_test(test_bn_split_direct_and_reduction_equal_single_call),
        cmocka_unit_test(test_bn_running_update_matches_pytorch),
        cmocka_unit_test(test_bn_frozen_matches_double_reference_and_splits_by_rows),
        cmocka_unit_test(test_dropout_mask_is_the_documented_pure_function),
        cmocka_unit_test(test_dropout_keeps_about_one_minus_p),
        cmocka_unit_test(test_dropout_fwd_bwd_use_full_map_indices),
        cmocka_unit_test(test_fc_matches_reference_and_finite_differences),
        cmocka_unit_test(test_softmax_xent_matches_reference_and_finite_differences),
        cmocka_unit_test(test_sgd_two_steps_match_hand_computed),
        cmocka_unit_test(test_momentum_two_steps_match_hand_computed),
        cmocka_unit_test(test_adam_two_steps_match_hand_computed),
        cmocka_unit_test(test_copy_rows_between_stripes),
        cmocka_unit_test(test_results_do_not_depend_on_thread_count),
        GEMM_ONLY(test_results_do_not_depend_on_thread_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
