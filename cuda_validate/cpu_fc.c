/* cpu_fc.c - the fully connected layer on flattened inputs, forward and backward, as GEMMs
 * (cpu_blas.c) over fixed blocks of features (see cpu_ops.h for the conventions).
 *
 * Legend: N batch, in/out features.
 *
 * Each block is one GEMM on one thread, and the blocks depend on the layer's sizes only, so every
 * element is computed by a call of the same shape whatever the thread count (cpu_blas.c):
 *  - forward y[:, block] = x (N, in) x w[block]^T, blocks of output features;
 *  - dx[:, block] += dy (N, out) x w[:, block], blocks of input features;
 *  - dw[block] += dy[:, block]^T x x (N, in), blocks of output features; the sum over the batch
 *    is inside one GEMM.
 * Deliberately not here: flattening (the input is already (N, in) in memory).
 */
#include "cpu_kernel.h"

enum { FC_BLOCK = 64 }; /* features per GEMM */

typedef struct {
    int size, count;
} blocks;

static blocks blocks_of(int features)
{
    int count = (features + FC_BLOCK - 1) / FC_BLOCK;
    blocks b = {(features + count - 1) / count, 0};
    b.count = (features + b.size - 1) / b.size;
    return b;
}

static int block_len(blocks b, int i, int features)
{
    int rest = features - i * b.size;
    return rest < b.size ? rest : b.size;
}

void cpu_fc_fwd(const float *x, const float *w, const float *b, float *y, int n, int in, int out)
{
    LR_ASSERT(n >= 1 && in >= 1 && out >= 1);
    blocks ob = blocks_of(out);
#pragma omp parallel for schedule(dynamic, 1) if (worth_threads_macs((int64_t)n * in * out))
    for (int i = 0; i < ob.count; i++) {
        int o0 = i * ob.size, no = block_len(ob, i, out);
        cpu_gemm(false, true, n, no, in, x, in, w + (int64_t)o0 * in, in, false, y + o0, out);
        for (int r = 0; b && r < n; r++)
            for (int o = o0; o < o0 + no; o++)
                y[(int64_t)r * out + o] += b[o];
    }
}

void cpu_fc_bwd(const float *x, const float *w, const float *dy, int n, int in, int out, float *dx,
                float *dw, float *db)
{
    LR_ASSERT(n >= 1 && in >= 1 && out >= 1);
    bool threads = worth_threads_macs((int64_t)n * in * out);
    if (dx) {
        blocks ib = blocks_of(in);
#pragma omp parallel for schedule(dynamic, 1) if (threads)
        for (int i = 0; i < ib.count; i++) {
            int i0 = i * ib.size;
            cpu_gemm(false, false, n, block_len(ib, i, in), out, dy, out, w + i0, in, true,
                     dx + i0, in);
        }
    }
    if (dw) {
        blocks ob = blocks_of(out);
#pragma omp parallel for schedule(dynamic, 1) if (threads)
        for (int i = 0; i < ob.count; i++) {
            int o0 = i * ob.size;
            cpu_gemm(true, false, block_len(ob, i, out), in, n, dy + o0, out, x, in, true,
                     dw + (int64_t)o0 * in, in);
        }
    }
    if (db) {
#pragma omp parallel for schedule(static) if (threads)
        for (int o = 0; o < out; o++) {
            double sum = 0.0;
            for (int i = 0; i < n; i++)
                sum += dy[(int64_t)i * out + o];
            db[o] += (float)sum;
        }
    }
}
