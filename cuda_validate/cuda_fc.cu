/* cuda_fc.cu - fully connected layers: cuBLAS products (row-major (N, in) x (out, in)^T read as
 * column-major products, see cuda_run_fc), the bias and its gradient.
 *
 * Deliberately not here: the loss (cuda_loss.cu).
 */
#include "cuda_private.h"

/* ------------------------------------------------------------------ kernels */

struct k_fc_bias {
    float *y;
    const float *b;
    int out;
    __host__ __device__ void operator()(int64_t i) const { y[i] += b[i % out]; }
};

/* db[o] += sum over the batch of dy[., o], in double, samples in order (cpu_fc_bwd). */
struct k_col_sum {
    const float *dy;
    float *db;
    int n, out;
    __host__ __device__ void operator()(int64_t i) const
    {
        double sum = 0.0;
        for (int k = 0; k < n; k++)
            sum += dy[(int64_t)k * out + i];
        db[i] += (float)sum;
    }
};

/* ------------------------------------------------------------------ launchers */

static lr_status launch_fc_bias(cuda_ctx *c, float *y, const float *b, int n, int out)
{
    k_fc_bias op = {y, b, out};
    return run_each(c, op, (int64_t)n * out);
}

static lr_status launch_col_sum(cuda_ctx *c, const float *dy, int n, int out, float *db)
{
    LR_ASSERT(n >= 1 && out >= 1);
    k_col_sum op = {dy, db, n, out};
    return run_each(c, op, out);
}

/* cublasSgemm with alpha 1, or its stand-in. */
static lr_status gemm(cuda_ctx *c, bool ta, bool tb, int m, int n, int k, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc)
{
    if (c->host) {
        cuda_emulated_sgemm(ta, tb, m, n, k, A, lda, B, ldb, beta, C, ldc);
        return LR_OK;
    }
    const float one = 1.0f;
    CUBLAS_CHECK(cublasSgemm(c->blas, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                             m, n, k, &one, A, lda, B, ldb, &beta, C, ldc));
    return LR_OK;
}

/* ------------------------------------------------------------------ adapters */

/* Row-major y (N, out) = x (N, in) w (out, in)^T is, column-major, y^T (out x N) =
 * op_T(w as in x out) * x^T (in x N); the backward products follow the same reading. */
lr_status cuda_run_fc(cuda_ctx *c, const exec_op *op)
{
    const net_node *n = node_of(op);
    const sched_run *r = op->run;
    const net_node *x = &op->net->nodes[plan_root(op->net, n->inputs[0])];
    int in = x->c * x->h * x->w, out = n->c, N = op->batch;
    const float *w = fptr(op, r->param), *xp = fptr(op, r->in[0]);
    LR_TRY(cuda_sample_memory(c));
    if (!backward(op)) {
        float *y = fptr(op, r->out);
        LR_TRY(gemm(c, true, false, out, N, in, w, in, xp, in, 0.0f, y, out));
        if (n->prm.bias)
            LR_TRY(launch_fc_bias(c, y, w + (int64_t)in * out, N, out));
        return cuda_sample_memory(c);
    }
    const float *dy = fptr(op, r->dout);
    float *dx = fptr(op, r->din[0]), *dw = fptr(op, r->param_grad);
    if (dx) /* dx (N, in) += dy (N, out) w (out, in) */
        LR_TRY(gemm(c, false, false, in, N, out, w, in, dy, out, 1.0f, dx, in));
    if (dw) { /* dw (out, in) += dy^T (out, N) x (N, in) */
        LR_TRY(gemm(c, false, true, in, out, N, xp, in, dy, out, 1.0f, dw, in));
        if (n->prm.bias)
            LR_TRY(launch_col_sum(c, dy, N, out, dw + (int64_t)in * out));
    }
    return cuda_sample_memory(c);
}
