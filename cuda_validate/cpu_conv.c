/* cpu_conv.c - convolution forward and backward on row ranges, direct (no im2col): every output
 * element is the bias, then its taps in (ci, ky, kx) order (see cpu_ops.h for the conventions).
 *
 * Legend: N batch, C channels, H/W full height/width of a map, R rows held by a view,
 * OH/OW output height/width of a window op.
 *
 * Deliberately not here: memory allocation (no kernel mallocs), scheduling.
 */
#include "cpu_kernel.h"

/* ------------------------------------------------------------------ convolution */

static void check_conv(const cpu_window *g, const cpu_view *x, const cpu_view *y)
{
    check_window_shapes(g, x, y);
    LR_ASSERT(g->groups >= 1 && x->c % g->groups == 0 && y->c % g->groups == 0);
}

/* One output row: bias, then every tap in (ci, ky, kx) order; rows and columns outside the map
 * are zero padding and contribute no term. */
static void conv_fwd_row(const cpu_window *g, const cpu_view *x, const float *w, float bias,
                         cpu_view *y, int n, int co, int r)
{
    int cig = x->c / g->groups;
    int ci0 = co / (y->c / g->groups) * cig;
    float *yr = cpu_at(y, n, co, r, 0);
    for (int o = 0; o < y->w; o++)
        yr[o] = bias;
    for (int ci = 0; ci < cig; ci++)
        for (int ky = 0; ky < g->kh; ky++) {
            int ir = r * g->sh - g->ph + ky * g->dh;
            if (ir < 0 || ir >= x->h)
                continue;
            const float *xr = cpu_at(x, n, ci0 + ci, ir, 0);
            const float *wk = w + (((int64_t)co * cig + ci) * g->kh + ky) * g->kw;
            for (int kx = 0; kx < g->kw; kx++)
                row_axpy_gather(yr, xr, wk[kx], g->sw, kx * g->dw - g->pw, y->w, x->w);
        }
}

void cpu_conv_fwd(const cpu_window *g, const cpu_view *x, const float *w, const float *b,
                  cpu_view *y, int r_lo, int r_hi)
{
    check_conv(g, x, y);
    check_range(r_lo, r_hi, y->h);
    check_rows(y, r_lo, r_hi);
    check_window_rows(g, r_lo, r_hi, x);
    int64_t work = row_work(y, r_lo, r_hi) * (x->c / g->groups) * g->kh * g->kw;
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
    for (int n = 0; n < y->n; n++)
        for (int co = 0; co < y->c; co++)
            for (int r = r_lo; r <= r_hi; r++)
                conv_fwd_row(g, x, w, b ? b[co] : 0.0f, y, n, co, r);
}

/* dw[co] += the correlation of dy row r with the input rows it read. dwc: (Cin/groups, kh, kw). */
static void conv_bwd_weight_row(const cpu_window *g, const cpu_view *x, const cpu_view *dy, int n,
                                int co, int r, float *dwc)
{
    int cig = x->c / g->groups;
    int ci0 = co / (dy->c / g->groups) * cig;
    const float *dyr = cpu_at(dy, n, co, r, 0);
    for (int ci = 0; ci < cig; ci++)
        for (int ky = 0; ky < g->kh; ky++) {
            int ir = r * g->sh - g->ph + ky * g->dh;
            if (ir < 0 || ir >= x->h)
                continue;
            const float *xr = cpu_at(x, n, ci0 + ci, ir, 0);
            float *dwk = dwc + ((int64_t)ci * g->kh + ky) * g->kw;
            for (int kx = 0; kx < g->kw; kx++)
                dwk[kx] += row_dot(dyr, xr, g->sw, kx * g->dw - g->pw, dy->w, x->w);
        }
}

/* dx rows of channel ci += what dy row r sends back through every output channel of its group. */
static void conv_bwd_input_row(const cpu_window *g, const float *w, const cpu_view *dy, int n,
                               int ci, int r, cpu_view *dx)
{
    int cig = dx->c / g->groups, cog = dy->c / g->groups;
    int co0 = ci / cig * cog;
    for (int co = co0; co < co0 + cog; co++) {
        const float *dyr = cpu_at(dy, n, co, r, 0);
        for (int ky = 0; ky < g->kh; ky++) {
            int ir = r * g->sh - g->ph + ky * g->dh;
            if (ir < 0 || ir >= dx->h)
                continue;
            float *dxr = cpu_at(dx, n, ci, ir, 0);
            const float *wk = w + (((int64_t)co * cig + ci % cig) * g->kh + ky) * g->kw;
            for (int kx = 0; kx < g->kw; kx++)
                row_axpy_scatter(dxr, dyr, wk[kx], g->sw, kx * g->dw - g->pw, dy->w, dx->w);
        }
    }
}

static void conv_bwd_bias(const cpu_view *dy, int r_lo, int r_hi, float *db)
{
    int64_t work = row_work(dy, r_lo, r_hi);
#pragma omp parallel for schedule(static) if (worth_threads(work))
    for (int co = 0; co < dy->c; co++) {
        double sum = 0.0;
        for (int n = 0; n < dy->n; n++)
            for (int r = r_lo; r <= r_hi; r++) {
                const float *dyr = cpu_at(dy, n, co, r, 0);
                for (int o = 0; o < dy->w; o++)
                    sum += dyr[o];
            }
        db[co] += (float)sum;
    }
}

void cpu_conv_bwd(const cpu_window *g, const cpu_view *x, const float *w, const cpu_view *dy,
                  int r_lo, int r_hi, cpu_view *dx, float *dw, float *db)
{
    check_conv(g, x, dy);
    check_range(r_lo, r_hi, dy->h);
    check_rows(dy, r_lo, r_hi);
    int64_t per_co = (int64_t)(x->c / g->groups) * g->kh * g->kw; /* weights per out channel */
    int64_t work = row_work(dy, r_lo, r_hi) * per_co;
    if (db)
        conv_bwd_bias(dy, r_lo, r_hi, db);
    if (dw) {
        check_window_rows(g, r_lo, r_hi, x);
        /* Parallel over output channels only, with n in a fixed order inside, so each weight
         * gradient element sums its terms in the same order whatever the thread count. */
#pragma omp parallel for schedule(static) if (worth_threads(work))
        for (int co = 0; co < dy->c; co++)
            for (int n = 0; n < dy->n; n++)
                for (int r = r_lo; r <= r_hi; r++)
                    conv_bwd_weight_row(g, x, dy, n, co, r, dw + co * per_co);
    }
    if (dx) {
        check_view(dx);
        LR_ASSERT(same_map(dx, x));
        check_window_rows(g, r_lo, r_hi, dx);
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads(work))
        for (int n = 0; n < dx->n; n++)
            for (int ci = 0; ci < dx->c; ci++)
                for (int r = r_lo; r <= r_hi; r++)
                    conv_bwd_input_row(g, w, dy, n, ci, r, dx);
    }
}
