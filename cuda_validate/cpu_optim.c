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
 * alias checks (and IEEE square roots and divisions give the same bits in vectors). Each update
 * runs over blocks of OPTIM_BLOCK elements, the threads taking blocks, each block's loop compiled
 * for AVX2 too (LR_CLONES): elementwise, so the same bits whatever the split. */
enum { OPTIM_BLOCK = 1 << 14 };

typedef struct {
    float lr, momentum, beta1, beta2, eps, weight_decay, step_size, bc2_sqrt;
} optim_args;

LR_CLONES
static void sgd_block(float *w, float *g, int64_t lo, int64_t hi, const optim_args *a)
{
    float lr = a->lr, weight_decay = a->weight_decay;
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) {
        w[i] -= lr * (g[i] + weight_decay * w[i]);
        g[i] = 0.0f;
    }
}

LR_CLONES
static void momentum_block(float *w, float *g, float *state, int64_t lo, int64_t hi,
                           const optim_args *a)
{
    float lr = a->lr, momentum = a->momentum, weight_decay = a->weight_decay;
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) {
        float d = g[i] + weight_decay * w[i];
        state[i] = momentum * state[i] + d;
        w[i] -= lr * state[i];
        g[i] = 0.0f;
    }
}

LR_CLONES
static void adam_block(float *w, float *g, float *m, float *v, int64_t lo, int64_t hi,
                       const optim_args *a)
{
    float beta1 = a->beta1, beta2 = a->beta2, eps = a->eps, weight_decay = a->weight_decay;
    float step_size = a->step_size, bc2_sqrt = a->bc2_sqrt;
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) {
        float d = g[i] + weight_decay * w[i];
        m[i] = beta1 * m[i] + (1.0f - beta1) * d;
        v[i] = beta2 * v[i] + (1.0f - beta2) * d * d;
        w[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
        g[i] = 0.0f;
    }
}

static int64_t block_end(int64_t b, int64_t n)
{
    return (b + 1) * OPTIM_BLOCK < n ? (b + 1) * OPTIM_BLOCK : n;
}

void cpu_sgd_update(float *w, float *g, int64_t n, float lr, float weight_decay)
{
    optim_args a = {.lr = lr, .weight_decay = weight_decay};
    int64_t blocks = (n + OPTIM_BLOCK - 1) / OPTIM_BLOCK;
#pragma omp parallel for schedule(static) if (worth_threads(n))
    for (int64_t b = 0; b < blocks; b++)
        sgd_block(w, g, b * OPTIM_BLOCK, block_end(b, n), &a);
}

/* torch.optim.SGD, dampening 0, not Nesterov. torch starts the buffer as a copy of the first
 * gradient; a zeroed buffer gives the same: momentum * 0 + d = d. */
void cpu_momentum_update(float *w, float *g, float *state, int64_t n, float lr, float momentum,
                         float weight_decay)
{
    optim_args a = {.lr = lr, .momentum = momentum, .weight_decay = weight_decay};
    int64_t blocks = (n + OPTIM_BLOCK - 1) / OPTIM_BLOCK;
#pragma omp parallel for schedule(static) if (worth_threads(n))
    for (int64_t b = 0; b < blocks; b++)
        momentum_block(w, g, state, b * OPTIM_BLOCK, block_end(b, n), &a);
}

/* torch.optim.Adam (L2 weight decay added to the gradient, not AdamW), arranged as torch's
 * single-tensor code does: w -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps), where bc1 and bc2
 * are the bias corrections, in double. Equals lr * mhat / (sqrt(vhat) + eps). */
void cpu_adam_update(float *w, float *g, float *state, int64_t n, float lr, float beta1,
                     float beta2, float eps, float weight_decay, int step)
{
    LR_ASSERT(step >= 1);
    double bc1 = 1.0 - pow(beta1, step), bc2 = 1.0 - pow(beta2, step);
    optim_args a = {.lr = lr, .beta1 = beta1, .beta2 = beta2, .eps = eps,
                    .weight_decay = weight_decay, .step_size = (float)(lr / bc1),
                    .bc2_sqrt = (float)sqrt(bc2)};
    int64_t blocks = (n + OPTIM_BLOCK - 1) / OPTIM_BLOCK;
#pragma omp parallel for schedule(static) if (worth_threads(n))
    for (int64_t b = 0; b < blocks; b++)
        adam_block(w, g, state, state + n, b * OPTIM_BLOCK, block_end(b, n), &a);
}
