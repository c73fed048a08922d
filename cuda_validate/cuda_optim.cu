/* cuda_optim.cu - optimizer updates with torch.optim semantics (cpu_ops.h): SGD, SGD with
 * momentum, Adam; every update zeroes the gradient.
 */
#include "cuda_private.h"

/* ------------------------------------------------------------------ kernels */

struct k_sgd_step {
    float *w, *g;
    float lr, wd;
    __host__ __device__ void operator()(int64_t i) const
    {
        w[i] -= lr * (g[i] + wd * w[i]);
        g[i] = 0.0f;
    }
};

struct k_momentum_step {
    float *w, *g, *state;
    float lr, momentum, wd;
    __host__ __device__ void operator()(int64_t i) const
    {
        float d = g[i] + wd * w[i];
        state[i] = momentum * state[i] + d;
        w[i] -= lr * state[i];
        g[i] = 0.0f;
    }
};

struct k_adam_step {
    float *w, *g, *m, *v;
    float beta1, beta2, eps, wd, step_size, bc2_sqrt;
    __host__ __device__ void operator()(int64_t i) const
    {
        float d = g[i] + wd * w[i];
        m[i] = beta1 * m[i] + (1.0f - beta1) * d;
        v[i] = beta2 * v[i] + (1.0f - beta2) * d * d;
        w[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
        g[i] = 0.0f;
    }
};

/* ------------------------------------------------------------------ launchers */

/* torch.optim semantics (cpu_ops.h); every update zeroes the gradient. */
static lr_status launch_update(cuda_ctx *c, plan_optim optim, const exec_hparams *hp, int step,
                               float *w, float *g, float *state, int64_t n)
{
    LR_ASSERT(w && g && n >= 1);
    if (optim == OPTIM_SGD) {
        k_sgd_step op = {w, g, hp->lr, hp->weight_decay};
        return run_each(c, op, n);
    }
    LR_ASSERT(state != NULL);
    if (optim == OPTIM_MOMENTUM) {
        k_momentum_step op = {w, g, state, hp->lr, hp->momentum, hp->weight_decay};
        return run_each(c, op, n);
    }
    LR_ASSERT(step >= 1);
    double bc1 = 1.0 - pow(hp->beta1, step), bc2 = 1.0 - pow(hp->beta2, step);
    k_adam_step op = {w, g, state, state + n, hp->beta1, hp->beta2, hp->eps, hp->weight_decay,
                    (float)(hp->lr / bc1), (float)sqrt(bc2)};
    return run_each(c, op, n);
}

/* ------------------------------------------------------------------ adapters */

lr_status cuda_run_update(cuda_ctx *c, const exec_op *op)
{
    const sched_run *r = op->run;
    return launch_update(c, op->optim, op->hp, op->train_step, fptr(op, r->param),
                         fptr(op, r->param_grad), fptr(op, r->opt_state), node_of(op)->params);
}
