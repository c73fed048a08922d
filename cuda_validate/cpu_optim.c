/* cpu_optim.c - the optimiser updates (SGD, SGD with momentum, Adam) with PyTorch's semantics
 * (see cpu_ops.h for the conventions).
 *
 * Legend: N batch, C channels, H/W full height/width of a map, R rows held by a view,
 * OH/OW output height/width of a window op.
 *
 * Deliberately not here: learning-rate schedules.
 */
#include "cpu_kernel.h"

#include <math.h>

/* ------------------------------------------------------------------ optimisers */

/* w, g and the optimizer state are distinct tensors: `simd` vectorises the updates without
 * alias checks (and IEEE square roots and divisions give the same bits in vectors). */

void cpu_sgd_update(float *w, float *g, int64_t n, float lr, float weight_decay)
{
#pragma omp parallel for simd schedule(static) if (worth_threads(n))
    for (int64_t i = 0; i < n; i++) {
        w[i] -= lr * (g[i] + weight_decay * w[i]);
        g[i] = 0.0f;
    }
}

/* torch.optim.SGD, dampening 0, not Nesterov. torch starts the buffer as a copy of the first
 * gradient; a zeroed buffer gives the same: momentum * 0 + d = d. */
void cpu_momentum_update(float *w, float *g, float *state, int64_t n, float lr, float momentum,
                         float weight_decay)
{
#pragma omp parallel for simd schedule(static) if (worth_threads(n))
    for (int64_t i = 0; i < n; i++) {
        float d = g[i] + weight_decay * w[i];
        state[i] = momentum * state[i] + d;
        w[i] -= lr * state[i];
        g[i] = 0.0f;
    }
}

/* torch.optim.Adam (L2 weight decay added to the gradient, not AdamW), arranged as torch's
 * single-tensor code does: w -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps), where bc1 and bc2
 * are the bias corrections, in double. Equals lr * mhat / (sqrt(vhat) + eps). */
void cpu_adam_update(float *w, float *g, float *state, int64_t n, float lr, float beta1,
                     float beta2, float eps, float weight_decay, int step)
{
    LR_ASSERT(step >= 1);
    float *m = state, *v = state + n;
    double bc1 = 1.0 - pow(beta1, step), bc2 = 1.0 - pow(beta2, step);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
#pragma omp parallel for simd schedule(static) if (worth_threads(n))
    for (int64_t i = 0; i < n; i++) {
        float d = g[i] + weight_decay * w[i];
        m[i] = beta1 * m[i] + (1.0f - beta1) * d;
        v[i] = beta2 * v[i] + (1.0f - beta2) * d * d;
        w[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
        g[i] = 0.0f;
    }
}
