/* cuda_loss.cu - softmax cross-entropy: the batch's mean loss (one block, double sums) and the
 * logits' gradient, with the CPU's log-sum-exp (cpu_loss.c).
 */
#include "cuda_private.h"

/* ------------------------------------------------------------------ kernels */

/* log(sum exp(l - max)) in double; *max receives the maximum (cpu_loss.c log_sum_exp). */
__host__ __device__ static double log_sum_exp(const float *l, int k, double *max)
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

/* Cross-entropy of sample i; NaN for a label outside [0, k). */
__host__ __device__ static double xent_term(const float *logits, const int32_t *labels, int k, int i)
{
    const float *l = logits + (int64_t)i * k;
    int y = labels[i];
    double m, lse = log_sum_exp(l, k, &m);
    return (y >= 0 && y < k) ? lse + m - l[y] : NAN;
}

/* dlogits += (softmax - onehot) / N, one element per sample. */
struct k_xent_bwd {
    const float *logits;
    const int32_t *labels;
    float *dlogits;
    int n, k;
    __host__ __device__ void operator()(int64_t i) const
    {
        const float *l = logits + i * k;
        float *d = dlogits + i * k;
        double m, lse = log_sum_exp(l, k, &m);
        for (int j = 0; j < k; j++) {
            double p = exp(l[j] - m - lse);
            d[j] += (float)((p - (j == labels[i] ? 1.0 : 0.0)) / n);
        }
    }
};

/* One block: the mean cross-entropy of the batch into *loss. */
__global__ void k_xent_fwd(const float *logits, const int32_t *labels, int n, int k, float *loss)
{
    __shared__ double part[BLOCK];
    double total = 0.0;
    for (int i = threadIdx.x; i < n; i += BLOCK)
        total += xent_term(logits, labels, k, i);
    part[threadIdx.x] = total;
    __syncthreads();
    for (int half = BLOCK / 2; half > 0; half /= 2) {
        if ((int)threadIdx.x < half)
            part[threadIdx.x] += part[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0)
        *loss = (float)(part[0] / n);
}

/* ------------------------------------------------------------------ launchers */

static lr_status launch_xent_fwd(cuda_ctx *c, const float *logits, const int32_t *labels, int n,
                                 int k, float *loss)
{
    LR_ASSERT(n >= 1 && k >= 1);
    if (c->host) {
        double total = 0.0;
        for (int i = 0; i < n; i++)
            total += xent_term(logits, labels, k, i);
        *loss = (float)(total / n);
        return LR_OK;
    }
    k_xent_fwd<<<1, BLOCK, 0, c->stream>>>(logits, labels, n, k, loss);
    LAUNCH_CHECK();
    return LR_OK;
}

static lr_status launch_xent_bwd(cuda_ctx *c, const float *logits, const int32_t *labels, int n,
                                 int k, float *dlogits)
{
    LR_ASSERT(n >= 1 && k >= 1);
    k_xent_bwd op = {logits, labels, dlogits, n, k};
    return run_each(c, op, n);
}

/* ------------------------------------------------------------------ adapters */

lr_status cuda_run_loss(cuda_ctx *c, const exec_op *op)
{
    const sched_run *r = op->run;
    int k = op->net->nodes[plan_root(op->net, node_of(op)->inputs[0])].c;
    const int32_t *labels = (const int32_t *)op->ptr[r->labels];
    const float *logits = fptr(op, r->in[0]);
    if (backward(op))
        return r->din[0] >= 0
                   ? launch_xent_bwd(c, logits, labels, op->batch, k, fptr(op, r->din[0]))
                   : LR_OK;
    float *loss = fptr(op, r->loss);
    LR_TRY(launch_xent_fwd(c, logits, labels, op->batch, k, loss));
    if (!op->loss_out)
        return LR_OK;
    return cuda_mem_transfer(c, op->loss_out, loss, sizeof(float));
}
