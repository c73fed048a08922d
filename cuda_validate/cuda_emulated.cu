/* cuda_emulated.cu - the emulated backend's stand-ins for cuDNN and cuBLAS
 * (cuda_backend_create_emulated): reference loops that read the same geometry (dims, strides,
 * pads) the cuDNN descriptors get, so a wrong stride or base pointer in the glue shows up in the
 * CPU tests. alpha is 1; beta 0 overwrites without reading (as cuDNN and cuBLAS do).
 *
 * The rest of the emulation lives beside what it stands in for: every kernel is an element
 * functor that k_each runs on the device and run_each can run in a host loop (cuda_private.h),
 * and memory is host memory (cuda_device.cu).
 *
 * Deliberately not here: speed (these loops are direct convolutions), algorithms, workspace.
 */
#include "cuda_private.h"

/* The emulated backend's stand-ins, reading the same geometry (dims, strides, pads) the cuDNN
 * descriptors get: a wrong stride or base pointer in the glue shows up in the CPU tests. alpha is
 * 1; beta 0 overwrites without reading (as cuDNN and cuBLAS do). */
static float *at4(const float *p, const int64_t *s, int n, int c, int h, int w)
{
    return (float *)p + n * s[0] + c * s[1] + h * s[2] + w * s[3];
}

static void blend(float *dst, float sum, float beta)
{
    *dst = beta == 0.0f ? sum : sum + beta * *dst;
}

void cuda_emulated_conv_fwd(const conv_key *k, const float *x, const float *w, float *y, float beta)
{
    int cig = k->cin / k->groups, cog = k->cout / k->groups;
    for (int n = 0; n < k->n; n++)
        for (int co = 0; co < k->cout; co++)
            for (int r = 0; r < k->hout; r++)
                for (int o = 0; o < k->wout; o++) {
                    float sum = 0.0f;
                    for (int ci = 0; ci < cig; ci++)
                        for (int ky = 0; ky < k->kh; ky++)
                            for (int kx = 0; kx < k->kw; kx++) {
                                int iy = r * k->sh - k->ph + ky * k->dh;
                                int ix = o * k->sw - k->pw + kx * k->dw;
                                if (iy < 0 || iy >= k->hin || ix < 0 || ix >= k->win)
                                    continue;
                                sum += *at4(x, k->xs, n, co / cog * cig + ci, iy, ix) *
                                       w[(((int64_t)co * cig + ci) * k->kh + ky) * k->kw + kx];
                            }
                    blend(at4(y, k->ys, n, co, r, o), sum, beta);
                }
}

void cuda_emulated_conv_bwd_data(const conv_key *k, const float *w, const float *dy, float *dx,
                                 float beta)
{
    int cig = k->cin / k->groups, cog = k->cout / k->groups;
    for (int n = 0; n < k->n; n++)
        for (int ci = 0; ci < k->cin; ci++)
            for (int iy = 0; iy < k->hin; iy++)
                for (int ix = 0; ix < k->win; ix++) {
                    float sum = 0.0f;
                    for (int co = ci / cig * cog; co < (ci / cig + 1) * cog; co++)
                        for (int ky = 0; ky < k->kh; ky++)
                            for (int kx = 0; kx < k->kw; kx++) {
                                int ry = iy + k->ph - ky * k->dh, rx = ix + k->pw - kx * k->dw;
                                if (ry < 0 || rx < 0 || ry % k->sh || rx % k->sw ||
                                    ry / k->sh >= k->hout || rx / k->sw >= k->wout)
                                    continue;
                                sum += *at4(dy, k->ys, n, co, ry / k->sh, rx / k->sw) *
                                       w[(((int64_t)co * cig + ci % cig) * k->kh + ky) * k->kw + kx];
                            }
                    blend(at4(dx, k->xs, n, ci, iy, ix), sum, beta);
                }
}

void cuda_emulated_conv_bwd_filter(const conv_key *k, const float *x, const float *dy, float *dw,
                                   float beta)
{
    int cig = k->cin / k->groups, cog = k->cout / k->groups;
    for (int co = 0; co < k->cout; co++)
        for (int ci = 0; ci < cig; ci++)
            for (int ky = 0; ky < k->kh; ky++)
                for (int kx = 0; kx < k->kw; kx++) {
                    float sum = 0.0f;
                    for (int n = 0; n < k->n; n++)
                        for (int r = 0; r < k->hout; r++)
                            for (int o = 0; o < k->wout; o++) {
                                int iy = r * k->sh - k->ph + ky * k->dh;
                                int ix = o * k->sw - k->pw + kx * k->dw;
                                if (iy < 0 || iy >= k->hin || ix < 0 || ix >= k->win)
                                    continue;
                                sum += *at4(dy, k->ys, n, co, r, o) *
                                       *at4(x, k->xs, n, co / cog * cig + ci, iy, ix);
                            }
                    blend(&dw[(((int64_t)co * cig + ci) * k->kh + ky) * k->kw + kx], sum, beta);
                }
}

/* Column-major C (m x n) = op(A) op(B) + beta C, as cublasSgemm with alpha 1. */
void cuda_emulated_sgemm(bool ta, bool tb, int m, int n, int k, const float *A, int lda,
                         const float *B, int ldb, float beta, float *C, int ldc)
{
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float sum = 0.0f;
            for (int p = 0; p < k; p++)
                sum += (ta ? A[p + (int64_t)i * lda] : A[i + (int64_t)p * lda]) *
                       (tb ? B[j + (int64_t)p * ldb] : B[p + (int64_t)j * ldb]);
            blend(&C[i + (int64_t)j * ldc], sum, beta);
        }
}
