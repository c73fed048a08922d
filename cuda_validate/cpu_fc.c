/* cpu_fc.c - the fully connected layer on flattened inputs, forward and backward (see
 * cpu_ops.h for the conventions).
 *
 * Legend: N batch, C channels, H/W full height/width of a map, R rows held by a view,
 * OH/OW output height/width of a window op.
 *
 * Deliberately not here: flattening (the input is already (N, in) in memory).
 */
#include "cpu_kernel.h"

/* ------------------------------------------------------------------ fully connected */

void cpu_fc_fwd(const float *x, const float *w, const float *b, float *y, int n, int in, int out)
{
    LR_ASSERT(n >= 1 && in >= 1 && out >= 1);
#pragma omp parallel for collapse(2) schedule(static) if (worth_threads((int64_t)n * in * out))
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) {
            float dot = row_dot(x + (int64_t)i * in, w + (int64_t)o * in, 1, 0, in, in);
            y[(int64_t)i * out + o] = b ? dot + b[o] : dot;
        }
}

void cpu_fc_bwd(const float *x, const float *w, const float *dy, int n, int in, int out, float *dx,
                float *dw, float *db)
{
    LR_ASSERT(n >= 1 && in >= 1 && out >= 1);
    if (dx) {
#pragma omp parallel for schedule(static) if (worth_threads((int64_t)n * in * out))
        for (int i = 0; i < n; i++)
            for (int o = 0; o < out; o++)
                row_axpy_gather(dx + (int64_t)i * in, w + (int64_t)o * in, dy[(int64_t)i * out + o],
                                1, 0, in, in);
    }
    if (dw || db) {
#pragma omp parallel for schedule(static) if (worth_threads((int64_t)n * in * out))
        for (int o = 0; o < out; o++) {
            double sum = 0.0;
            for (int i = 0; i < n; i++) {
                float g = dy[(int64_t)i * out + o];
                sum += g;
                if (dw)
                    row_axpy_gather(dw + (int64_t)o * in, x + (int64_t)i * in, g, 1, 0, in, in);
            }
            if (db)
                db[o] += (float)sum;
        }
    }
}
