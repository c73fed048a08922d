/* cpu_loss.c - the mean softmax cross-entropy loss and its gradient (see cpu_ops.h for the
 * conventions).
 *
 * Legend: N batch, C channels, H/W full height/width of a map, R rows held by a view,
 * OH/OW output height/width of a window op.
 *
 * Deliberately not here: other losses (softmax_xent is the only loss op).
 */
#include "cpu_kernel.h"

#include <math.h>

/* ------------------------------------------------------------------ loss */

/* The numerically stable log-sum-exp, in double: the maximum is subtracted before exp, so
 * nothing overflows. Returns log(sum exp(l - max)); *max receives the maximum. */
static double log_sum_exp(const float *l, int k, double *max)
{
    double m = l[0];
    for (int j = 1; j < k; j++)
        m = l[j] > m ? l[j] : m;
    double s = 0.0;
    for (int j = 0; j < k; j++)
        s += exp(l[j] - m);
    *max = m;
    return log(s);
}

float cpu_softmax_xent_fwd(const float *logits, const int32_t *labels, int n, int k)
{
    LR_ASSERT(n >= 1 && k >= 1);
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        const float *l = logits + (int64_t)i * k;
        LR_ASSERT(labels[i] >= 0 && labels[i] < k);
        double m, lse = log_sum_exp(l, k, &m);
        total += lse + m - l[labels[i]];
    }
    return (float)(total / n);
}

void cpu_softmax_xent_bwd(const float *logits, const int32_t *labels, int n, int k, float *dlogits)
{
    if (!dlogits)
        return; /* not wanted */
    LR_ASSERT(n >= 1 && k >= 1);
#pragma omp parallel for schedule(static) if (worth_threads((int64_t)n * k))
    for (int i = 0; i < n; i++) {
        const float *l = logits + (int64_t)i * k;
        float *d = dlogits + (int64_t)i * k;
        LR_ASSERT(labels[i] >= 0 && labels[i] < k);
        double m, lse = log_sum_exp(l, k, &m);
        for (int j = 0; j < k; j++) {
            double p = exp(l[j] - m - lse);
            d[j] += (float)((p - (j == labels[i] ? 1.0 : 0.0)) / n);
        }
    }
}
