/* cuda_backend.cu - the CUDA backend: the glue from schedule steps to cuDNN (convolutions),
 * cuBLAS (fully connected layers) and own kernels (everything else), with the CPU reference
 * backend's semantics op by op, flag by flag (exec.h, cpu_backend.c, cpu_ops.h).
 *
 * Legend: N batch, C channels, H/W full height/width of a map, R rows in a stripe, V rows of a
 * staging buffer, OH/OW output height/width of a window op.
 *
 * Stripes are views. A tensor holding rows [row0, row0 + rows) of a (N, C, H, W) map is stored
 * as (N, C, rows, W); rows [a, b] of it are the 4-d tensor (N, C, b - a + 1, W) with strides
 * (C*rows*W, rows*W, W, 1) at base + (a - row0)*W (cudnnSetTensor4dDescriptorEx), so interior
 * stripes reach cuDNN without a copy.
 *
 * Edge staging. cuDNN pads symmetrically, while a stripe touching the top or bottom of the image
 * needs padding on one side only. cuda_conv_pieces() splits a convolution's output rows into at
 * most three cuDNN calls:
 *   - one call on a view when its symmetric padding is exact: interior stripes (pad 0), whole maps
 *     (the layer's pad), and top stripes whose pad is below the stride (the bottom padding is
 *     then never read: the output count comes out right and the last window ends on real rows);
 *   - otherwise a staged top edge, an interior view with pad 0, and a staged bottom edge, where
 *     "staged" copies the few input rows the edge windows read into a zero-filled buffer
 *     (N, C, V, W) carved from the schedule's workspace tensor and runs cuDNN with pad 0 on it.
 *     Backward data of a staged piece computes into a staged gradient buffer (beta = 0) and then
 *     adds its real rows into dx; backward filter reads the staged input.
 * Only output rows whose windows read padding are staged, so staging costs a few rows per edge
 * (N*C*((e-1)*s + d*(k-1) + 1)*W floats for e edge rows), not the stripe.
 *
 * Workspace. run->workspace (cfg.workspace_bytes, one persistent TC_WORKSPACE tensor) holds
 * [staging region | algorithm workspace]; the staging region holds a piece's staged input, and
 * later in stream order its staged input gradient. Algorithms come from cuDNN's heuristics
 * (cudnnGet*Algorithm_v7; no trial runs: they would overwrite the gradients we accumulate into
 * and need memory off the books), run with FMA math (true fp32, no TF32 tensor cores), with a
 * workspace of at most min(CUDA_BACKEND_ALGO_WS_CAP, workspace - staging); the first in cuDNN's
 * order wins. Deterministic mode tries PyTorch's deterministic defaults first (implicit
 * precomputed GEMM, backward data/filter ALGO_1) and otherwise takes only algorithms cuDNN
 * reports deterministic. The choice is cached per geometry (dims, strides, window, direction,
 * limit). The same rule sizes the workspace in cuda_backend_workspace_bytes(), so a schedule
 * planned with that size runs the algorithms it was sized for.
 *
 * Own kernels, and why not cuDNN for them:
 *   - pooling (max, avg, adaptive, global): cuDNN's max-pool backward needs the forward output,
 *     which the schedule does not keep (the planner saves the input and recomputes the argmax),
 *     and its tie rule is unspecified; own kernels take row ranges with implicit padding (no
 *     staging) and reproduce PyTorch's rules (first maximum wins, -inf padding never does,
 *     count_include_pad). Backward kernels gather per input element in the CPU's scatter order,
 *     so they are atomic-free and bit-identical to the CPU's summation order.
 *   - BatchNorm: the split statistics of exec.h (stripe/global statistics, STATS_ACC sums in
 *     double, FINALIZE, PARTIAL reduction terms, GSTATS_ACC) have no cuDNN equivalent. Channel
 *     reductions sum fixed slices of a channel with a fixed tree in double, then the slices in
 *     order: deterministic.
 *   - relu, add, concat, upsample, dropout (the CPU's mask function), softmax cross-entropy,
 *     optimizers, bias terms: all accumulate (+=) into gradients as the CPU does.
 * cuBLAS computes fully connected layers (row-major (N, in) x (out, in)^T as column-major
 * products, see run_fc).
 *
 * Memory: the arena is one cudaMalloc (exec.c plans it); out of memory there is an error that
 * says what was needed and what was free. Off the books, made with the context and so part of
 * the baseline: 2 MiB of channel-reduction partial sums, and cuBLAS's own workspace. Device memory in use is sampled (cudaMemGetInfo) at
 * every allocation, at the first call of every convolution geometry (when cuDNN builds plans and
 * loads modules), around fully connected steps, at uploads (a training step's start) and at sync
 * (its end): the device-level peak minus the baseline after context creation is what the
 * allocator model leaves out.
 *
 * Emulation (cuda_backend_create_emulated): every kernel is an element functor that k_each runs on
 * the device and run_each can run in a host loop; with host memory and reference loops in place
 * of cuDNN and cuBLAS (reading the same geometry the descriptors get), the CPU tests drive all of
 * this file's glue without a device.
 *
 * Deliberately not here: mixed precision (the executors run fp32), multi-GPU, overlap of copies
 * and compute (one stream: the order of the schedule is the order on the device).
 */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"

/* ------------------------------------------------------------------ checks */

static lr_status check_failed(const char *lib, const char *stmt, const char *file, int line,
                              const char *why)
{
    return lr_fail(LR_ERR_RUNTIME, "%s:%d: %s failed (%s): %s", file, line, stmt, lib, why);
}

#define CUDA_CHECK(stmt)                                                                   \
    do {                                                                                   \
        cudaError_t cuda_e_ = (stmt);                                                      \
        if (cuda_e_ != cudaSuccess)                                                        \
            return check_failed("CUDA", #stmt, __FILE__, __LINE__, cudaGetErrorString(cuda_e_)); \
    } while (0)

#define CUDNN_CHECK(stmt)                                                                  \
    do {                                                                                   \
        cudnnStatus_t dnn_e_ = (stmt);                                                     \
        if (dnn_e_ != CUDNN_STATUS_SUCCESS)                                                \
            return check_failed("cuDNN", #stmt, __FILE__, __LINE__, cudnnGetErrorString(dnn_e_)); \
    } while (0)

#define CUBLAS_CHECK(stmt)                                                                 \
    do {                                                                                   \
        cublasStatus_t blas_e_ = (stmt);                                                   \
        if (blas_e_ != CUBLAS_STATUS_SUCCESS)                                              \
            return check_failed("cuBLAS", #stmt, __FILE__, __LINE__,                       \
                                cublasGetStatusString(blas_e_));                           \
    } while (0)

/* after every launch */
#define LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())

#define BLOCK 256
#define CEIL_DIV(a, b) (((a) + (b) - 1) / (b))

static int64_t align256(int64_t bytes)
{
    return CEIL_DIV(bytes, 256) * 256;
}

/* ------------------------------------------------------------------ geometry (host, testable) */

__host__ __device__ static inline int floor_div(int a, int b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

static int ceil_div_int(int a, int b)
{
    return -floor_div(-a, b);
}

/* Output rows of a window op of height `in` with pad p on both sides (floor mode); < 1 if none. */
static int window_rows(int in, int k, int s, int p, int d)
{
    int span = in + 2 * p - d * (k - 1) - 1;
    return span < 0 ? 0 : span / s + 1;
}

/* [lo, hi] as one call on a view with symmetric padding, when that padding is exact. */
static bool piece_as_view(int h, int kh, int sh, int ph, int dh, int lo, int hi,
                          cuda_conv_piece *p)
{
    int a = lo * sh - ph, b = hi * sh - ph + dh * (kh - 1);
    if (a >= 0 && b <= h - 1) {
        *p = {lo, hi, a, b, 0, false};
        return true;
    }
    if (a >= 0)
        return false; /* bottom padding only: symmetric padding would pad the top too */
    int pad = -a, last = b < h - 1 ? b : h - 1;
    if (last < 0 || b - (h - 1) > pad)
        return false;
    /* the view [0, last] padded by `pad` must give exactly hi - lo + 1 rows: then the windows end
     * at row b, and padding below `last` is read only when it lies below the image */
    if (window_rows(last + 1, kh, sh, pad, dh) != hi - lo + 1)
        return false;
    *p = {lo, hi, 0, last, pad, false};
    return true;
}

static cuda_conv_piece staged_piece(int kh, int sh, int ph, int dh, int lo, int hi)
{
    cuda_conv_piece p = {lo, hi, lo * sh - ph, hi * sh - ph + dh * (kh - 1), 0, true};
    return p;
}

int cuda_conv_pieces(int h, int kh, int sh, int ph, int dh, int lo, int hi, cuda_conv_piece out[3])
{
    if (lo > hi)
        return 0;
    if (piece_as_view(h, kh, sh, ph, dh, lo, hi, &out[0]))
        return 1;
    /* rows t..u read no padding */
    int t = ceil_div_int(ph, sh), u = floor_div(h - 1 + ph - dh * (kh - 1), sh);
    t = t > lo ? t : lo;
    u = u < hi ? u : hi;
    if (t > u) {
        out[0] = staged_piece(kh, sh, ph, dh, lo, hi);
        return 1;
    }
    int n = 0;
    if (lo <= t - 1) {
        if (!piece_as_view(h, kh, sh, ph, dh, lo, t - 1, &out[n]))
            out[n] = staged_piece(kh, sh, ph, dh, lo, t - 1);
        n++;
    }
    out[n++] = {t, u, t * sh - ph, u * sh - ph + dh * (kh - 1), 0, false};
    if (u + 1 <= hi)
        out[n++] = staged_piece(kh, sh, ph, dh, u + 1, hi);
    return n;
}

void cuda_view_strides(int c, int rows, int w, int64_t strides[4])
{
    strides[0] = (int64_t)c * rows * w;
    strides[1] = (int64_t)rows * w;
    strides[2] = w;
    strides[3] = 1;
}

/* Everything a convolution RUN step needs, from the schedule alone (no pointers). */
typedef struct {
    int n, cin, h, w, cout, hout, wout, groups;
    int kh, kw, sh, sw, ph, pw, dh, dw;
    bool bias, backward, want_dx, want_dw;
    int x_row0, x_rows;   /* in[0] */
    int y_row0, y_rows;   /* out (forward) or dout (backward) */
    int dx_row0, dx_rows; /* din[0] */
} conv_info;

static void tensor_rows(const sched_t *s, int t, int *row0, int *rows)
{
    *row0 = t >= 0 ? s->tensors[t].row_lo : 0;
    *rows = t >= 0 ? s->tensors[t].row_hi - s->tensors[t].row_lo + 1 : 0;
}

static void conv_info_of(const net_t *net, const sched_t *s, const sched_step *st, int batch,
                         conv_info *ci)
{
    const sched_run *r = &s->runs[st->run];
    const net_node *n = &net->nodes[st->node];
    const net_node *x = &net->nodes[plan_root(net, n->inputs[0])];
    memset(ci, 0, sizeof *ci);
    ci->n = batch, ci->cin = x->c, ci->h = x->h, ci->w = x->w;
    ci->cout = n->c, ci->hout = n->h, ci->wout = n->w, ci->groups = n->prm.groups;
    ci->kh = n->prm.kh, ci->kw = n->prm.kw, ci->sh = n->prm.sh, ci->sw = n->prm.sw;
    ci->ph = n->prm.ph, ci->pw = n->prm.pw, ci->dh = n->prm.dh, ci->dw = n->prm.dw;
    ci->bias = n->prm.bias;
    ci->backward = st->pass == PASS_BWD || st->pass == PASS_GSTATS;
    ci->want_dx = ci->backward && r->din[0] >= 0;
    ci->want_dw = ci->backward && r->param_grad >= 0;
    tensor_rows(s, r->in[0], &ci->x_row0, &ci->x_rows);
    tensor_rows(s, ci->backward ? r->dout : r->out, &ci->y_row0, &ci->y_rows);
    tensor_rows(s, ci->want_dx ? r->din[0] : -1, &ci->dx_row0, &ci->dx_rows);
}

static int64_t stage_bytes(const conv_info *ci, const cuda_conv_piece *p)
{
    return 4 * (int64_t)ci->n * ci->cin * (p->in_hi - p->in_lo + 1) * ci->w;
}

/* The staging region of a piece, 256-byte aligned: its input rows (forward, backward filter) and
 * later, in stream order, its input-gradient rows (backward data) share it. */
static int64_t piece_staging(const conv_info *ci, const cuda_conv_piece *p)
{
    return p->staged ? align256(stage_bytes(ci, p)) : 0;
}

static bool is_conv_run(const net_t *net, const sched_step *st)
{
    return st->op == STEP_RUN && st->pass != PASS_UPDATE && st->node > 0 &&
           net->nodes[st->node].op == OP_CONV;
}

int64_t cuda_conv_staging_bytes(const net_t *net, const sched_t *s, const sched_step *step,
                                int batch)
{
    if (!is_conv_run(net, step))
        return 0;
    conv_info ci;
    conv_info_of(net, s, step, batch, &ci);
    cuda_conv_piece pc[3];
    int np = cuda_conv_pieces(ci.h, ci.kh, ci.sh, ci.ph, ci.dh, step->row_lo, step->row_hi, pc);
    if (ci.backward && !ci.want_dx && !ci.want_dw)
        return 0;
    int64_t most = 0;
    for (int i = 0; i < np; i++)
        most = piece_staging(&ci, &pc[i]) > most ? piece_staging(&ci, &pc[i]) : most;
    return most;
}

/* ------------------------------------------------------------------ kernels */

/* A view of rows [row0, row0 + rows) of a (N, C, H, W) map, stored (N, C, rows, W). row0 may be
 * negative for staging buffers (their rows reach above the image). */
typedef struct {
    float *p;
    int n, c, h, w, row0, rows;
} dview;

typedef struct {
    int kh, kw, sh, sw, ph, pw, dh, dw;
} dwin;

__host__ __device__ static inline int64_t dv_idx(const dview &v, int n, int c, int r, int x)
{
    return (((int64_t)n * v.c + c) * v.rows + (r - v.row0)) * v.w + x;
}

typedef struct {
    int n, c, r, x;
} dpos;

/* Element i of rows [lo, lo + R) of every (n, c) plane of a C-channel, W-wide map. 32-bit
 * divisions when the index fits (64-bit ones cost several times more, and elementwise kernels are
 * otherwise bound by memory). */
__host__ __device__ static inline dpos pos_of(int64_t i, int C, int R, int W, int lo)
{
    dpos p;
    if (i <= (int64_t)UINT32_MAX) {
        uint32_t u = (uint32_t)i;
        p.x = (int)(u % (uint32_t)W);
        u /= (uint32_t)W;
        p.r = lo + (int)(u % (uint32_t)R);
        u /= (uint32_t)R;
        p.c = (int)(u % (uint32_t)C);
        p.n = (int)(u / (uint32_t)C);
        return p;
    }
    p.x = (int)(i % W);
    int64_t t = i / W;
    p.r = lo + (int)(t % R);
    t /= R;
    p.c = (int)(t % C);
    p.n = (int)(t / C);
    return p;
}

/* Element functors: operator()(i) computes element i of a launch. The same code runs on the
 * device (k_each) and, in the emulated backend, in a host loop, so the CPU tests check the
 * kernels' indexing. Backward functors that sum into an input gradient gather per input element
 * in the order the CPU scatters, which makes them atomic-free and deterministic. */

struct k_relu_fwd {
    dview x, y;
    int lo, R;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, y.c, R, y.w, lo);
        float v = x.p[dv_idx(x, p.n, p.c, p.r, p.x)];
        y.p[dv_idx(y, p.n, p.c, p.r, p.x)] = v < 0.0f ? 0.0f : v; /* NaN passes, as in torch */
    }
};

struct k_relu_bwd {
    dview y, dy, dx;
    bool in_place;
    int lo, R;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, y.c, R, y.w, lo);
        float g = y.p[dv_idx(y, p.n, p.c, p.r, p.x)] > 0.0f ? dy.p[dv_idx(dy, p.n, p.c, p.r, p.x)]
                                                            : 0.0f;
        float *d = &dx.p[dv_idx(dx, p.n, p.c, p.r, p.x)];
        *d = in_place ? g : *d + g;
    }
};

struct k_add_rows {
    dview a, b, y;
    int lo, R;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, y.c, R, y.w, lo);
        y.p[dv_idx(y, p.n, p.c, p.r, p.x)] =
            a.p[dv_idx(a, p.n, p.c, p.r, p.x)] + b.p[dv_idx(b, p.n, p.c, p.r, p.x)];
    }
};

/* b's channels [b_off, b_off + nc) = (or +=) a's channels [a_off, a_off + nc), rows lo.. */
struct k_move_rows {
    dview a, b;
    int a_off, b_off, nc;
    bool accumulate;
    int lo, R;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, nc, R, a.w, lo);
        float v = a.p[dv_idx(a, p.n, a_off + p.c, p.r, p.x)];
        float *d = &b.p[dv_idx(b, p.n, b_off + p.c, p.r, p.x)];
        *d = accumulate ? *d + v : v;
    }
};

struct k_bias_rows {
    dview y;
    const float *b;
    int lo, R;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, y.c, R, y.w, lo);
        y.p[dv_idx(y, p.n, p.c, p.r, p.x)] += b[p.c];
    }
};

struct k_upsample_fwd {
    dview x, y;
    int f, lo, R;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, y.c, R, y.w, lo);
        y.p[dv_idx(y, p.n, p.c, p.r, p.x)] = x.p[dv_idx(x, p.n, p.c, p.r / f, p.x / f)];
    }
};

/* Per input element of rows [dlo, dlo + dR): the output rows in [lo, hi] it was copied to. */
struct k_upsample_bwd {
    dview dy, dx;
    int f, lo, hi, dlo, dR;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, dx.c, dR, dx.w, dlo);
        float *d = &dx.p[dv_idx(dx, p.n, p.c, p.r, p.x)];
        float acc = *d;
        int r0 = p.r * f > lo ? p.r * f : lo, r1 = p.r * f + f - 1 < hi ? p.r * f + f - 1 : hi;
        for (int r = r0; r <= r1; r++)
            for (int x = p.x * f; x < p.x * f + f; x++)
                acc += dy.p[dv_idx(dy, p.n, p.c, r, x)];
        *d = acc;
    }
};

__host__ __device__ static inline uint64_t hd_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* cpu_dropout_keep() on the element's index in the full (N, C, H, W) map. */
struct k_dropout_rows {
    dview src, dst;
    uint64_t seed;
    double prob;
    float scale;
    bool accumulate;
    int lo, R;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, src.c, R, src.w, lo);
        int64_t index = (((int64_t)p.n * src.c + p.c) * src.h + p.r) * src.w + p.x;
        double u = (double)(hd_mix64(seed + (uint64_t)index * 0x9E3779B97F4A7C15ull) >> 11) *
                   (1.0 / 9007199254740992.0); /* 2^-53 */
        float v = u >= prob ? src.p[dv_idx(src, p.n, p.c, p.r, p.x)] * scale : 0.0f;
        float *d = &dst.p[dv_idx(dst, p.n, p.c, p.r, p.x)];
        *d = accumulate ? *d + v : v;
    }
};

/* The first in-map maximum in scan order; a later element replaces it only when strictly
 * greater or NaN (cpu_ops.c max_tap). */
__host__ __device__ static bool max_tap(const dwin &g, const dview &x, int n, int c, int r, int o,
                                        int *iy, int *ix)
{
    bool found = false;
    float best = -INFINITY;
    for (int ky = 0; ky < g.kh; ky++) {
        int yy = r * g.sh - g.ph + ky * g.dh;
        if (yy < 0 || yy >= x.h)
            continue;
        for (int kx = 0; kx < g.kw; kx++) {
            int xx = o * g.sw - g.pw + kx * g.dw;
            if (xx < 0 || xx >= x.w)
                continue;
            float v = x.p[dv_idx(x, n, c, yy, xx)];
            if (!found || v > best || isnan(v)) {
                found = true;
                best = v;
                *iy = yy;
                *ix = xx;
            }
        }
    }
    return found;
}

/* Output rows (within [lo, hi]) and columns whose windows contain input element (yy, xx). */
__host__ __device__ static void windows_over(const dwin &g, int yy, int xx, int lo, int hi, int ow,
                                             int *r0, int *r1, int *o0, int *o1)
{
    *r0 = -floor_div(-(yy + g.ph - g.dh * (g.kh - 1)), g.sh);
    *r1 = floor_div(yy + g.ph, g.sh);
    *o0 = -floor_div(-(xx + g.pw - g.dw * (g.kw - 1)), g.sw);
    *o1 = floor_div(xx + g.pw, g.sw);
    *r0 = *r0 > lo ? *r0 : lo;
    *r1 = *r1 < hi ? *r1 : hi;
    *o0 = *o0 > 0 ? *o0 : 0;
    *o1 = *o1 < ow - 1 ? *o1 : ow - 1;
}

struct k_maxpool_fwd {
    dwin g;
    dview x, y;
    int lo, R;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, y.c, R, y.w, lo);
        int iy, ix;
        y.p[dv_idx(y, p.n, p.c, p.r, p.x)] = max_tap(g, x, p.n, p.c, p.r, p.x, &iy, &ix)
                                                 ? x.p[dv_idx(x, p.n, p.c, iy, ix)]
                                                 : -INFINITY;
    }
};

/* Per input element: the outputs of rows [lo, hi] whose argmax it is, in the CPU's order. */
struct k_maxpool_bwd {
    dwin g;
    dview x, dy, dx;
    int lo, hi, dlo, dR;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, dx.c, dR, dx.w, dlo);
        int r0, r1, o0, o1;
        windows_over(g, p.r, p.x, lo, hi, dy.w, &r0, &r1, &o0, &o1);
        float *d = &dx.p[dv_idx(dx, p.n, p.c, p.r, p.x)];
        float acc = *d;
        for (int r = r0; r <= r1; r++)
            for (int o = o0; o <= o1; o++) {
                int iy, ix;
                if (max_tap(g, x, p.n, p.c, r, o, &iy, &ix) && iy == p.r && ix == p.x)
                    acc += dy.p[dv_idx(dy, p.n, p.c, r, o)];
            }
        *d = acc;
    }
};

/* count_include_pad: the divisor is always kh * kw (cpu_ops.c check_pool). */
struct k_avgpool_fwd {
    dwin g;
    dview x, y;
    int lo, R;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, y.c, R, y.w, lo);
        float sum = 0.0f;
        for (int ky = 0; ky < g.kh; ky++) {
            int yy = p.r * g.sh - g.ph + ky;
            if (yy < 0 || yy >= x.h)
                continue;
            for (int kx = 0; kx < g.kw; kx++) {
                int xx = p.x * g.sw - g.pw + kx;
                if (xx >= 0 && xx < x.w)
                    sum += x.p[dv_idx(x, p.n, p.c, yy, xx)];
            }
        }
        y.p[dv_idx(y, p.n, p.c, p.r, p.x)] = sum / (float)(g.kh * g.kw);
    }
};

struct k_avgpool_bwd {
    dwin g;
    dview dy, dx;
    int lo, hi, dlo, dR;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, dx.c, dR, dx.w, dlo);
        int r0, r1, o0, o1;
        windows_over(g, p.r, p.x, lo, hi, dy.w, &r0, &r1, &o0, &o1);
        float divisor = (float)(g.kh * g.kw);
        float *d = &dx.p[dv_idx(dx, p.n, p.c, p.r, p.x)];
        float acc = *d;
        for (int r = r0; r <= r1; r++)
            for (int o = o0; o <= o1; o++)
                acc += dy.p[dv_idx(dy, p.n, p.c, r, o)] / divisor;
        *d = acc;
    }
};

/* PyTorch's adaptive bins: [floor(i * in / out), ceil((i + 1) * in / out)). */
__host__ __device__ static inline int bin_start(int i, int in, int out)
{
    return (int)((int64_t)i * in / out);
}

__host__ __device__ static inline int bin_end(int i, int in, int out)
{
    return (int)(((int64_t)(i + 1) * in + out - 1) / out);
}

struct k_adaptive_fwd {
    dview x, y;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, y.c, y.h, y.w, 0);
        int y0 = bin_start(p.r, x.h, y.h), y1 = bin_end(p.r, x.h, y.h);
        int x0 = bin_start(p.x, x.w, y.w), x1 = bin_end(p.x, x.w, y.w);
        float sum = 0.0f;
        for (int yy = y0; yy < y1; yy++)
            for (int xx = x0; xx < x1; xx++)
                sum += x.p[dv_idx(x, p.n, p.c, yy, xx)];
        y.p[dv_idx(y, p.n, p.c, p.r, p.x)] = sum / (float)((y1 - y0) * (x1 - x0));
    }
};

struct k_adaptive_bwd {
    dview dy, dx;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, dx.c, dx.h, dx.w, 0);
        float *d = &dx.p[dv_idx(dx, p.n, p.c, p.r, p.x)];
        float acc = *d;
        for (int a = 0; a < dy.h; a++) {
            int y0 = bin_start(a, dx.h, dy.h), y1 = bin_end(a, dx.h, dy.h);
            if (p.r < y0 || p.r >= y1)
                continue;
            for (int b = 0; b < dy.w; b++) {
                int x0 = bin_start(b, dx.w, dy.w), x1 = bin_end(b, dx.w, dy.w);
                if (p.x >= x0 && p.x < x1)
                    acc += dy.p[dv_idx(dy, p.n, p.c, a, b)] / (float)((y1 - y0) * (x1 - x0));
            }
        }
        *d = acc;
    }
};

/* cpu_bn_finalize, one element per channel: mean, invstd from sums (biased variance). */
struct k_bn_finalize {
    const double *acc;
    float *stats;
    int C;
    double count, eps;
    __host__ __device__ void operator()(int64_t i) const
    {
        int c = (int)i;
        double mean = acc[c] / count;
        double var = acc[C + c] / count - mean * mean;
        var = var > 0.0 ? var : 0.0;
        stats[c] = (float)mean;
        stats[C + c] = (float)(1.0 / sqrt(var + eps));
    }
};

/* cpu_bn_update_running: unbiased variance, momentum m. */
struct k_bn_running {
    const double *acc;
    float *running;
    int C;
    double count, m;
    __host__ __device__ void operator()(int64_t i) const
    {
        int c = (int)i;
        double mean = acc[c] / count;
        double var = acc[C + c] / count - mean * mean;
        double unbiased = (var > 0.0 ? var : 0.0) * count / (count - 1.0);
        running[c] = (float)((1.0 - m) * running[c] + m * mean);
        running[C + c] = (float)((1.0 - m) * running[C + c] + m * unbiased);
    }
};

/* y = (x - mean) * (gamma * invstd) + beta; statistics from `stats`, or (eval) from the running
 * statistics with invstd = 1 / sqrt(var + eps) in double, as cpu_backend.c bn_eval does. */
struct k_bn_fwd {
    dview x, y;
    const float *stats, *running, *gb;
    double eps;
    int lo, R;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, x.c, R, x.w, lo);
        int C = x.c;
        float mean = stats ? stats[p.c] : running[p.c];
        float invstd = stats ? stats[C + p.c] : (float)(1.0 / sqrt((double)running[C + p.c] + eps));
        float scale = gb[p.c] * invstd;
        y.p[dv_idx(y, p.n, p.c, p.r, p.x)] =
            (x.p[dv_idx(x, p.n, p.c, p.r, p.x)] - mean) * scale + gb[C + p.c];
    }
};

/* cpu_bn_bwd's dx part: dx += gamma*invstd*(dy [direct] - mean(dy) - xhat*mean(dy*xhat) [reduction]). */
struct k_bn_bwd_dx {
    dview x, dy, dx;
    const float *stats, *gb;
    const double *gacc;
    double count;
    bool with_reduction, with_direct;
    int lo, R;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, x.c, R, x.w, lo);
        int C = x.c;
        float mean = stats[p.c], invstd = stats[C + p.c], k = gb[p.c] * invstd;
        float t = with_direct ? dy.p[dv_idx(dy, p.n, p.c, p.r, p.x)] : 0.0f;
        if (with_reduction) {
            float mean_dy = (float)(gacc[p.c] / count), mean_dyx = (float)(gacc[C + p.c] / count);
            t -= mean_dy + (x.p[dv_idx(x, p.n, p.c, p.r, p.x)] - mean) * invstd * mean_dyx;
        }
        dx.p[dv_idx(dx, p.n, p.c, p.r, p.x)] += k * t;
    }
};

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

/* log(sum exp(l - max)) in double; *max receives the maximum (cpu_ops.c log_sum_exp). */
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

/* The one elementwise kernel: element i of `op` per thread. */
template <typename Op>
__global__ void k_each(Op op, int64_t total)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total)
        op(i);
}

enum { RED_X_XX, RED_DY_DYXHAT, RED_DY };

/* Per-channel sums over rows [lo, lo + R) of every image:
 *   RED_X_XX: sum x, sum x^2;  RED_DY_DYXHAT: sum dy, sum dy * xhat;  RED_DY: sum dy. */
struct red_terms {
    int kind;
    dview x, dy;
    const float *stats;
    int lo, R;
    __host__ __device__ int64_t per_channel() const
    {
        const dview &v = kind == RED_X_XX ? x : dy;
        return (int64_t)v.n * R * v.w;
    }
    __host__ __device__ void add(int c, int64_t e, double *s0, double *s1) const
    {
        const dview &v = kind == RED_X_XX ? x : dy;
        dpos p = pos_of(e, 1, R, v.w, lo); /* channel fixed: a one-channel map */
        int xx = p.x, r = p.r, n = p.n;
        if (kind == RED_X_XX) {
            float a = x.p[dv_idx(x, n, c, r, xx)];
            *s0 += a;
            *s1 += (double)a * a;
            return;
        }
        float g = dy.p[dv_idx(dy, n, c, r, xx)];
        *s0 += g;
        if (kind == RED_DY_DYXHAT)
            *s1 += (double)g * ((x.p[dv_idx(x, n, c, r, xx)] - stats[c]) * stats[v.c + c]);
    }
};

/* Where channel sums go: d0[c] += s0, d1[c] += s1 (double); f0[c] += (float)s0, f1[c] += (float)s1. */
struct red_out {
    double *d0, *d1;
    float *f0, *f1;
    __host__ __device__ void store(int c, double s0, double s1) const
    {
        if (d0)
            d0[c] += s0;
        if (d1)
            d1[c] += s1;
        if (f0)
            f0[c] += (float)s0;
        if (f1)
            f1[c] += (float)s1;
    }
};

/* Channel reductions in two deterministic passes: block (s, c) sums slice s of channel c0 + c
 * (a fixed range of its elements, a fixed tree over the block) into part[(c * slices + s) * 2];
 * then k_channel_combine adds a channel's slices in order. Splitting channels into slices keeps
 * every SM busy when a map is large and the channels few (ResNet's first BatchNorm: 64 channels
 * of 3.2 M elements at batch 256); the result depends only on the geometry, never on timing. */
__global__ void k_channel_partial(red_terms t, int c0, int slices, double *part)
{
    __shared__ double sh0[BLOCK], sh1[BLOCK];
    int c = blockIdx.y, s = blockIdx.x;
    int64_t per = t.per_channel(), chunk = CEIL_DIV(per, slices);
    int64_t end = (s + 1) * chunk < per ? (s + 1) * chunk : per;
    double s0 = 0.0, s1 = 0.0;
    for (int64_t e = s * chunk + threadIdx.x; e < end; e += BLOCK)
        t.add(c0 + c, e, &s0, &s1);
    sh0[threadIdx.x] = s0;
    sh1[threadIdx.x] = s1;
    __syncthreads();
    for (int half = BLOCK / 2; half > 0; half /= 2) {
        if ((int)threadIdx.x < half) {
            sh0[threadIdx.x] += sh0[threadIdx.x + half];
            sh1[threadIdx.x] += sh1[threadIdx.x + half];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        part[((int64_t)c * slices + s) * 2] = sh0[0];
        part[((int64_t)c * slices + s) * 2 + 1] = sh1[0];
    }
}

struct k_channel_combine {
    const double *part;
    red_out o;
    int c0, slices;
    __host__ __device__ void operator()(int64_t i) const
    {
        double s0 = 0.0, s1 = 0.0;
        for (int s = 0; s < slices; s++) {
            s0 += part[(i * slices + s) * 2];
            s1 += part[(i * slices + s) * 2 + 1];
        }
        o.store(c0 + (int)i, s0, s1);
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

/* ------------------------------------------------------------------ context */

enum { DIR_FWD, DIR_BWD_DATA, DIR_BWD_FILTER };

/* One cuDNN call's geometry: the algorithm cache key. x is the input (or its gradient for
 * DIR_BWD_DATA) and y the output (or its gradient), both with element strides. */
typedef struct {
    int64_t xs[4], ys[4];
    int64_t limit; /* workspace bytes the algorithm may use */
    int dir, det;
    int n, cin, hin, win, cout, hout, wout, groups;
    int kh, kw, sh, sw, ph, pw, dh, dw;
} conv_key;

typedef struct {
    conv_key key;
    bool used, ran;  /* ran: cuDNN has executed it once (plans built, modules loaded) */
    uint32_t tried;  /* algorithms cuDNN turned down at execution (bit per algorithm enum) */
    int algo;
    int64_t ws_bytes;
} algo_entry;

/* Channel reductions' scratch: a fixed allocation made with the context (so part of the baseline,
 * like cuBLAS's workspace), 2 MiB. */
enum { RED_MAX_CHANNELS = 4096, RED_MAX_SLICES = 32 };

/* host: the emulated backend (cuda_backend_create_emulated): host memory, functors in host loops,
 * reference loops for cuDNN and cuBLAS; no stream, no handles. */
typedef struct {
    bool deterministic, host;
    cudaStream_t stream;
    cudnnHandle_t dnn;
    cublasHandle_t blas;
    cudnnTensorDescriptor_t xd, yd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd;
    algo_entry *cache;
    int cache_n, cache_cap;
    double *red_part; /* RED_MAX_CHANNELS x RED_MAX_SLICES x 2 partial sums (k_channel_partial) */
    int64_t ws_cap;
    int64_t baseline_used, peak_used; /* device memory in use (total - free), cudaMemGetInfo */
} cuda_ctx;

static lr_status sample_memory(cuda_ctx *c)
{
    if (c->host)
        return LR_OK;
    size_t free_b, total_b;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    int64_t used = (int64_t)total_b - (int64_t)free_b;
    if (used > c->peak_used)
        c->peak_used = used;
    return LR_OK;
}

/* cudaMalloc with an out-of-memory error that says what did not fit. */
static lr_status device_alloc(cuda_ctx *c, int64_t bytes, void **p, const char *what)
{
    size_t size = (size_t)(bytes > 0 ? align256(bytes) : 256);
    if (c->host) {
        *p = aligned_alloc(256, size);
        return *p ? LR_OK : lr_fail(LR_ERR_NOMEM, "cannot allocate %s (%.1f MiB)", what, bytes / 1048576.0);
    }
    *p = NULL;
    cudaError_t e = cudaMalloc(p, size);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError(); /* clear the error so later calls do not report it */
        size_t free_b = 0, total_b = 0;
        CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
        return lr_fail(LR_ERR_RUNTIME,
                       "cuda backend: %s does not fit: needed %.1f MiB, free %.1f MiB of %.1f MiB",
                       what, bytes / 1048576.0, free_b / 1048576.0, total_b / 1048576.0);
    }
    CUDA_CHECK(e);
    return sample_memory(c);
}

static void device_free(cuda_ctx *c, void *p)
{
    if (c->host)
        free(p);
    else
        (void)cudaFree(p); /* teardown: exec_free() has no status to return */
}

/* ------------------------------------------------------------------ launchers */

static unsigned grid_for(int64_t total)
{
    LR_ASSERT(total > 0 && CEIL_DIV(total, BLOCK) <= INT_MAX);
    return (unsigned)CEIL_DIV(total, BLOCK);
}

/* Elements 0..total-1 of op: one thread each on the stream, or a host loop when emulated. */
template <typename Op>
static lr_status run_each(cuda_ctx *c, const Op &op, int64_t total)
{
    if (total <= 0)
        return LR_OK;
    if (c->host) {
        for (int64_t i = 0; i < total; i++)
            op(i);
        return LR_OK;
    }
    k_each<Op><<<grid_for(total), BLOCK, 0, c->stream>>>(op, total);
    LAUNCH_CHECK();
    return LR_OK;
}

static lr_status mem_set(cuda_ctx *c, void *p, size_t bytes)
{
    if (c->host) {
        memset(p, 0, bytes);
        return LR_OK;
    }
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, c->stream));
    return LR_OK;
}

/* `height` rows of `width` bytes (cudaMemcpy2DAsync). */
static lr_status mem_copy2d(cuda_ctx *c, void *dst, size_t dpitch, const void *src, size_t spitch,
                            size_t width, size_t height)
{
    if (c->host) {
        for (size_t i = 0; i < height; i++)
            memcpy((char *)dst + i * dpitch, (const char *)src + i * spitch, width);
        return LR_OK;
    }
    CUDA_CHECK(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, cudaMemcpyDeviceToDevice,
                                 c->stream));
    return LR_OK;
}

/* A synchronous copy between host and device (either direction). */
static lr_status mem_transfer(cuda_ctx *c, void *dst, const void *src, size_t bytes)
{
    if (c->host) {
        memcpy(dst, src, bytes);
        return LR_OK;
    }
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    return LR_OK;
}

static int64_t rows_total(const dview &v, int c, int R)
{
    return (int64_t)v.n * c * R * v.w;
}

/* Rows [lo, hi] must lie in v (the device does not check). */
static void check_rows(const dview &v, int lo, int hi)
{
    if (lo > hi)
        return;
    LR_ASSERT(v.p != NULL);
    LR_ASSERT(lo >= v.row0 && hi < v.row0 + v.rows);
}

static bool same_map(const dview &a, const dview &b)
{
    return a.n == b.n && a.c == b.c && a.h == b.h && a.w == b.w;
}

static lr_status launch_relu_fwd(cuda_ctx *c, dview x, dview y, int lo, int hi)
{
    if (lo > hi)
        return LR_OK;
    LR_ASSERT(same_map(x, y));
    check_rows(x, lo, hi);
    check_rows(y, lo, hi);
    k_relu_fwd op = {x, y, lo, hi - lo + 1};
    return run_each(c, op, rows_total(y, y.c, hi - lo + 1));
}

static lr_status launch_relu_bwd(cuda_ctx *c, dview y, dview dy, dview dx, int lo, int hi)
{
    if (lo > hi)
        return LR_OK;
    LR_ASSERT(same_map(y, dy) && same_map(y, dx));
    check_rows(y, lo, hi);
    check_rows(dy, lo, hi);
    check_rows(dx, lo, hi);
    bool in_place = dx.p == dy.p;
    LR_ASSERT(!in_place || dx.row0 == dy.row0);
    k_relu_bwd op = {y, dy, dx, in_place, lo, hi - lo + 1};
    return run_each(c, op, rows_total(y, y.c, hi - lo + 1));
}

static lr_status launch_add(cuda_ctx *c, dview a, dview b, dview y, int lo, int hi)
{
    if (lo > hi)
        return LR_OK;
    LR_ASSERT(same_map(a, y) && same_map(b, y));
    check_rows(a, lo, hi);
    check_rows(b, lo, hi);
    check_rows(y, lo, hi);
    k_add_rows op = {a, b, y, lo, hi - lo + 1};
    return run_each(c, op, rows_total(y, y.c, hi - lo + 1));
}

static lr_status launch_move(cuda_ctx *c, dview a, int a_off, dview b, int b_off, int nc, int lo,
                             int hi, bool accumulate)
{
    if (lo > hi || nc == 0)
        return LR_OK;
    LR_ASSERT(a.n == b.n && a.w == b.w);
    LR_ASSERT(a_off >= 0 && a_off + nc <= a.c && b_off >= 0 && b_off + nc <= b.c);
    check_rows(a, lo, hi);
    check_rows(b, lo, hi);
    k_move_rows op = {a, b, a_off, b_off, nc, accumulate, lo, hi - lo + 1};
    return run_each(c, op, rows_total(a, nc, hi - lo + 1));
}

static lr_status launch_bias_add(cuda_ctx *c, dview y, const float *b, int lo, int hi)
{
    if (lo > hi)
        return LR_OK;
    check_rows(y, lo, hi);
    k_bias_rows op = {y, b, lo, hi - lo + 1};
    return run_each(c, op, rows_total(y, y.c, hi - lo + 1));
}

static lr_status launch_upsample_fwd(cuda_ctx *c, int f, dview x, dview y, int lo, int hi)
{
    if (lo > hi)
        return LR_OK;
    LR_ASSERT(f >= 1 && y.h == x.h * f && y.w == x.w * f && y.c == x.c);
    check_rows(y, lo, hi);
    check_rows(x, lo / f, hi / f);
    k_upsample_fwd op = {x, y, f, lo, hi - lo + 1};
    return run_each(c, op, rows_total(y, y.c, hi - lo + 1));
}

static lr_status launch_upsample_bwd(cuda_ctx *c, int f, dview dy, int lo, int hi, dview dx)
{
    if (lo > hi)
        return LR_OK;
    LR_ASSERT(f >= 1 && dy.h == dx.h * f && dy.w == dx.w * f && dy.c == dx.c);
    check_rows(dy, lo, hi);
    int dlo = lo / f, dhi = hi / f;
    check_rows(dx, dlo, dhi);
    k_upsample_bwd op = {dy, dx, f, lo, hi, dlo, dhi - dlo + 1};
    return run_each(c, op, rows_total(dx, dx.c, dhi - dlo + 1));
}

static lr_status launch_dropout(cuda_ctx *c, uint64_t seed, double p, dview src, dview dst,
                                int lo, int hi, bool accumulate)
{
    if (lo > hi)
        return LR_OK;
    LR_ASSERT(same_map(src, dst) && p >= 0.0 && p <= 1.0);
    check_rows(src, lo, hi);
    check_rows(dst, lo, hi);
    float scale = p < 1.0 ? (float)(1.0 / (1.0 - p)) : 0.0f; /* p = 1 keeps nothing */
    k_dropout_rows op = {src, dst, seed, p, scale, accumulate, lo, hi - lo + 1};
    return run_each(c, op, rows_total(src, src.c, hi - lo + 1));
}

/* Input rows the windows of output rows [lo, hi] read, clipped to the map. */
static void window_input_rows(const dwin &g, int h, int lo, int hi, int *a, int *b)
{
    *a = lo * g.sh - g.ph;
    *b = hi * g.sh - g.ph + g.dh * (g.kh - 1);
    *a = *a > 0 ? *a : 0;
    *b = *b < h - 1 ? *b : h - 1;
}

static lr_status launch_pool_fwd(cuda_ctx *c, bool max, dwin g, dview x, dview y, int lo, int hi)
{
    if (lo > hi)
        return LR_OK;
    LR_ASSERT(g.ph <= g.kh / 2 && g.pw <= g.kw / 2 && x.c == y.c);
    LR_ASSERT(max || (g.dh == 1 && g.dw == 1));
    int a, b;
    window_input_rows(g, x.h, lo, hi, &a, &b);
    check_rows(x, a, b);
    check_rows(y, lo, hi);
    int64_t total = rows_total(y, y.c, hi - lo + 1);
    if (max) {
        k_maxpool_fwd op = {g, x, y, lo, hi - lo + 1};
        return run_each(c, op, total);
    }
    k_avgpool_fwd op = {g, x, y, lo, hi - lo + 1};
    return run_each(c, op, total);
}

/* x is read only for max pooling (the argmax is recomputed from the input). */
static lr_status launch_pool_bwd(cuda_ctx *c, bool max, dwin g, dview x, dview dy, int lo, int hi,
                                 dview dx)
{
    if (lo > hi)
        return LR_OK;
    int a, b;
    window_input_rows(g, dx.h, lo, hi, &a, &b);
    check_rows(dy, lo, hi);
    check_rows(dx, a, b);
    if (max)
        check_rows(x, a, b);
    int64_t total = a <= b ? rows_total(dx, dx.c, b - a + 1) : 0;
    if (max) {
        k_maxpool_bwd op = {g, x, dy, dx, lo, hi, a, b - a + 1};
        return run_each(c, op, total);
    }
    k_avgpool_bwd op = {g, dy, dx, lo, hi, a, b - a + 1};
    return run_each(c, op, total);
}

static void check_full(const dview &v)
{
    LR_ASSERT(v.p != NULL && v.row0 == 0 && v.rows == v.h);
}

static lr_status launch_adaptive_fwd(cuda_ctx *c, dview x, dview y)
{
    check_full(x);
    check_full(y);
    LR_ASSERT(x.n == y.n && x.c == y.c);
    k_adaptive_fwd op = {x, y};
    return run_each(c, op, rows_total(y, y.c, y.h));
}

static lr_status launch_adaptive_bwd(cuda_ctx *c, dview dy, dview dx)
{
    check_full(dy);
    check_full(dx);
    LR_ASSERT(dx.n == dy.n && dx.c == dy.c);
    k_adaptive_bwd op = {dy, dx};
    return run_each(c, op, rows_total(dx, dx.c, dx.h));
}

/* k_channel_partial's slices, each summed in order (the emulated backend). */
static void host_channel_partial(const red_terms &t, int c0, int nc, int slices, double *part)
{
    int64_t per = t.per_channel(), chunk = CEIL_DIV(per, slices);
    for (int c = 0; c < nc; c++)
        for (int s = 0; s < slices; s++) {
            double s0 = 0.0, s1 = 0.0;
            for (int64_t e = s * chunk; e < (s + 1) * chunk && e < per; e++)
                t.add(c0 + c, e, &s0, &s1);
            part[((int64_t)c * slices + s) * 2] = s0;
            part[((int64_t)c * slices + s) * 2 + 1] = s1;
        }
}

static lr_status launch_channel_reduce(cuda_ctx *c, int kind, dview x, dview dy,
                                       const float *stats, int lo, int hi, red_out o)
{
    if (lo > hi)
        return LR_OK;
    const dview &v = kind == RED_X_XX ? x : dy;
    check_rows(v, lo, hi);
    if (kind == RED_DY_DYXHAT) {
        LR_ASSERT(same_map(x, dy) && stats != NULL);
        check_rows(x, lo, hi);
    }
    red_terms t = {kind, x, dy, stats, lo, hi - lo + 1};
    /* about 16 elements per thread and slice, at most RED_MAX_SLICES slices */
    int64_t want = t.per_channel() / (16 * BLOCK);
    int slices = want < 1 ? 1 : want > RED_MAX_SLICES ? RED_MAX_SLICES : (int)want;
    for (int c0 = 0; c0 < v.c; c0 += RED_MAX_CHANNELS) {
        int nc = v.c - c0 < RED_MAX_CHANNELS ? v.c - c0 : RED_MAX_CHANNELS;
        if (c->host) {
            host_channel_partial(t, c0, nc, slices, c->red_part);
        } else {
            k_channel_partial<<<dim3(slices, nc), BLOCK, 0, c->stream>>>(t, c0, slices, c->red_part);
            LAUNCH_CHECK();
        }
        k_channel_combine op = {c->red_part, o, c0, slices};
        LR_TRY(run_each(c, op, nc));
    }
    return LR_OK;
}

static lr_status launch_bn_finalize(cuda_ctx *c, const double *acc, int ch, int64_t count,
                                    double eps, float *stats)
{
    LR_ASSERT(ch >= 1 && count >= 1 && eps >= 0.0);
    k_bn_finalize op = {acc, stats, ch, (double)count, eps};
    return run_each(c, op, ch);
}

static lr_status launch_bn_running(cuda_ctx *c, const double *acc, int ch, int64_t count, double m,
                                   float *running)
{
    LR_ASSERT(ch >= 1 && count >= 2 && running != NULL);
    k_bn_running op = {acc, running, ch, (double)count, m};
    return run_each(c, op, ch);
}

static lr_status launch_bn_fwd(cuda_ctx *c, dview x, const float *stats, const float *running,
                               double eps, const float *gb, dview y, int lo, int hi)
{
    if (lo > hi)
        return LR_OK;
    LR_ASSERT(same_map(x, y) && (stats || running) && gb);
    check_rows(x, lo, hi);
    check_rows(y, lo, hi);
    k_bn_fwd op = {x, y, stats, running, gb, eps, lo, hi - lo + 1};
    return run_each(c, op, rows_total(x, x.c, hi - lo + 1));
}

static lr_status launch_bn_bwd_dx(cuda_ctx *c, dview x, const float *stats, const float *gb,
                                  dview dy, const double *gacc, int64_t count, bool with_reduction,
                                  bool with_direct, dview dx, int lo, int hi)
{
    if (lo > hi)
        return LR_OK;
    LR_ASSERT(same_map(x, dx) && (!with_reduction || count >= 1));
    check_rows(x, lo, hi);
    check_rows(dx, lo, hi);
    if (with_direct) {
        LR_ASSERT(same_map(x, dy));
        check_rows(dy, lo, hi);
    }
    k_bn_bwd_dx op = {x, dy, dx, stats, gb, gacc, (double)count, with_reduction, with_direct,
                    lo, hi - lo + 1};
    return run_each(c, op, rows_total(x, x.c, hi - lo + 1));
}

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

/* ------------------------------------------------------------------ emulated cuDNN and cuBLAS */

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

static void host_conv_fwd(const conv_key *k, const float *x, const float *w, float *y, float beta)
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

static void host_conv_bwd_data(const conv_key *k, const float *w, const float *dy, float *dx,
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

static void host_conv_bwd_filter(const conv_key *k, const float *x, const float *dy, float *dw,
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
static void host_sgemm(bool ta, bool tb, int m, int n, int k, const float *A, int lda,
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

/* cublasSgemm with alpha 1, or its stand-in. */
static lr_status gemm(cuda_ctx *c, bool ta, bool tb, int m, int n, int k, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc)
{
    if (c->host) {
        host_sgemm(ta, tb, m, n, k, A, lda, B, ldb, beta, C, ldc);
        return LR_OK;
    }
    const float one = 1.0f;
    CUBLAS_CHECK(cublasSgemm(c->blas, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                             m, n, k, &one, A, lda, B, ldb, &beta, C, ldc));
    return LR_OK;
}

/* ------------------------------------------------------------------ cuDNN algorithms */

static uint64_t key_hash(const conv_key *k)
{
    const unsigned char *b = (const unsigned char *)k;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof *k; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static algo_entry *cache_slot(cuda_ctx *c, const conv_key *k)
{
    size_t mask = (size_t)c->cache_cap - 1;
    for (size_t i = key_hash(k) & mask;; i = (i + 1) & mask)
        if (!c->cache[i].used || memcmp(&c->cache[i].key, k, sizeof *k) == 0)
            return &c->cache[i];
}

static lr_status cache_grow(cuda_ctx *c)
{
    algo_entry *old = c->cache;
    int old_cap = c->cache_cap;
    c->cache_cap = old_cap ? 2 * old_cap : 256;
    c->cache = (algo_entry *)calloc((size_t)c->cache_cap, sizeof(algo_entry));
    if (!c->cache)
        return lr_fail(LR_ERR_NOMEM, "out of memory (algorithm cache)");
    for (int i = 0; i < old_cap; i++)
        if (old[i].used)
            *cache_slot(c, &old[i].key) = old[i];
    free(old);
    return LR_OK;
}

static lr_status set_tensor(cudnnTensorDescriptor_t d, int n, int c, int h, int w, const int64_t *s)
{
    LR_ASSERT(s[0] <= INT_MAX); /* cuDNN takes int strides */
    CUDNN_CHECK(cudnnSetTensor4dDescriptorEx(d, CUDNN_DATA_FLOAT, n, c, h, w, (int)s[0], (int)s[1],
                                             (int)s[2], (int)s[3]));
    return LR_OK;
}

/* Points the context's descriptors at a geometry; FMA math: true fp32, no TF32 tensor cores. */
static lr_status set_descs(cuda_ctx *c, const conv_key *k)
{
    LR_TRY(set_tensor(c->xd, k->n, k->cin, k->hin, k->win, k->xs));
    LR_TRY(set_tensor(c->yd, k->n, k->cout, k->hout, k->wout, k->ys));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(c->wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, k->cout,
                                           k->cin / k->groups, k->kh, k->kw));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(c->cd, k->ph, k->pw, k->sh, k->sw, k->dh, k->dw,
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CUDNN_CHECK(cudnnSetConvolutionGroupCount(c->cd, k->groups));
    CUDNN_CHECK(cudnnSetConvolutionMathType(c->cd, CUDNN_FMA_MATH));
    int n, ch, h, w;
    CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(c->cd, c->xd, c->wd, &n, &ch, &h, &w));
    if (n != k->n || ch != k->cout || h != k->hout || w != k->wout)
        return lr_fail(LR_ERR_RUNTIME,
                       "cuda backend: convolution geometry mismatch: cuDNN computes %dx%dx%dx%d "
                       "output rows, the schedule %dx%dx%dx%d",
                       n, ch, h, w, k->n, k->cout, k->hout, k->wout);
    return LR_OK;
}

/* Workspace of an algorithm for the current descriptors; false when it does not apply. */
static bool algo_workspace(cuda_ctx *c, int dir, int algo, int64_t *bytes)
{
    size_t ws = 0;
    cudnnStatus_t s;
    if (dir == DIR_FWD)
        s = cudnnGetConvolutionForwardWorkspaceSize(c->dnn, c->xd, c->wd, c->cd, c->yd,
                                                    (cudnnConvolutionFwdAlgo_t)algo, &ws);
    else if (dir == DIR_BWD_DATA)
        s = cudnnGetConvolutionBackwardDataWorkspaceSize(c->dnn, c->wd, c->yd, c->cd, c->xd,
                                                         (cudnnConvolutionBwdDataAlgo_t)algo, &ws);
    else
        s = cudnnGetConvolutionBackwardFilterWorkspaceSize(c->dnn, c->xd, c->yd, c->cd, c->wd,
                                                           (cudnnConvolutionBwdFilterAlgo_t)algo, &ws);
    *bytes = (int64_t)ws;
    return s == CUDNN_STATUS_SUCCESS;
}

typedef struct {
    int algo;
    cudnnStatus_t status;
    cudnnDeterminism_t determinism;
} algo_candidate;

template <typename Perf>
static int to_candidates(const Perf *perf, int n, algo_candidate *out)
{
    for (int i = 0; i < n; i++)
        out[i] = {(int)perf[i].algo, perf[i].status, perf[i].determinism};
    return n;
}

/* cuDNN's heuristic ranking for the current descriptors, fastest first. */
static lr_status heuristic_candidates(cuda_ctx *c, int dir, algo_candidate *out, int *n)
{
    enum { MAX_ALGOS = 16 };
    if (dir == DIR_FWD) {
        cudnnConvolutionFwdAlgoPerf_t perf[MAX_ALGOS];
        CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(c->dnn, c->xd, c->wd, c->cd, c->yd,
                                                           CUDNN_CONVOLUTION_FWD_ALGO_COUNT, n, perf));
        *n = to_candidates(perf, *n, out);
    } else if (dir == DIR_BWD_DATA) {
        cudnnConvolutionBwdDataAlgoPerf_t perf[MAX_ALGOS];
        CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(
            c->dnn, c->wd, c->yd, c->cd, c->xd, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, n, perf));
        *n = to_candidates(perf, *n, out);
    } else {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[MAX_ALGOS];
        CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
            c->dnn, c->xd, c->yd, c->cd, c->wd, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, n, perf));
        *n = to_candidates(perf, *n, out);
    }
    return LR_OK;
}

/* PyTorch's defaults for when the heuristics offer nothing usable: deterministic, small workspace. */
static int default_algo(int dir)
{
    if (dir == DIR_FWD)
        return CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM;
    if (dir == DIR_BWD_DATA)
        return CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
    return CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;
}

static const char *dir_name(int dir)
{
    return dir == DIR_FWD ? "forward" : dir == DIR_BWD_DATA ? "backward-data" : "backward-filter";
}

/* Candidates in order of preference. Deterministic mode puts PyTorch's deterministic defaults
 * first (implicit precomputed GEMM, backward ALGO_1): they are exact-order GEMMs, while the
 * deterministic FFT and Winograd algorithms trade accuracy for speed, which a gradient check
 * against the CPU would measure. Otherwise cuDNN's ranking comes first, the default last. */
static lr_status candidates(cuda_ctx *c, const conv_key *k, algo_candidate *cand, int *n)
{
    algo_candidate def = {default_algo(k->dir), CUDNN_STATUS_SUCCESS, CUDNN_DETERMINISTIC};
    int m = 0;
    if (k->det)
        cand[m++] = def;
    int got = 0;
    LR_TRY(heuristic_candidates(c, k->dir, cand + m, &got));
    m += got;
    if (!k->det)
        cand[m++] = def;
    *n = m;
    return LR_OK;
}

/* The first candidate that cuDNN supports for these descriptors, deterministic if asked, whose
 * workspace fits k->limit. The descriptor's math type (FMA, set_descs) decides the kernels an
 * algorithm runs, whatever math type the heuristics listed it with; the workspace query under
 * that descriptor rejects an algorithm that has no FMA kernel for the geometry. */
static lr_status choose_algo(cuda_ctx *c, const conv_key *k, algo_entry *e)
{
    if (c->host) { /* emulated: the reference loops need no workspace */
        e->algo = default_algo(k->dir);
        e->ws_bytes = 0;
        return LR_OK;
    }
    algo_candidate cand[24];
    int n = 0;
    LR_TRY(candidates(c, k, cand, &n));
    for (int i = 0; i < n; i++) {
        int64_t ws;
        if (cand[i].status != CUDNN_STATUS_SUCCESS || (e->tried >> cand[i].algo & 1u))
            continue;
        if (k->det && cand[i].determinism != CUDNN_DETERMINISTIC)
            continue;
        if (!algo_workspace(c, k->dir, cand[i].algo, &ws) || ws > k->limit)
            continue;
        e->algo = cand[i].algo;
        e->ws_bytes = ws;
        return LR_OK;
    }
    return lr_fail(LR_ERR_RUNTIME,
                   "cuda backend: no %sfp32 cuDNN %s algorithm fits %lld bytes of workspace for a "
                   "%dx%dx%dx%d input, %d filters %dx%d (plan with a larger --workspace)",
                   k->det ? "deterministic " : "", dir_name(k->dir), (long long)k->limit, k->n,
                   k->cin, k->hin, k->win, k->cout, k->kh, k->kw);
}

/* Sets the descriptors for k and returns its cached (or newly chosen) algorithm. */
static lr_status conv_algo(cuda_ctx *c, const conv_key *k, algo_entry **out)
{
    LR_TRY(set_descs(c, k));
    if (c->cache_n * 2 >= c->cache_cap)
        LR_TRY(cache_grow(c));
    algo_entry *e = cache_slot(c, k);
    if (!e->used) {
        LR_TRY(choose_algo(c, k, e));
        e->key = *k;
        e->used = true;
        c->cache_n++;
    }
    *out = e;
    return LR_OK;
}

/* One convolution call with alpha 1 on the descriptors conv_algo() set: forward (x, w -> out),
 * backward data (w, dy -> out) or backward filter (x, dy -> out); out = result + beta * out. */
typedef struct {
    int dir;
    const float *x, *w, *dy;
    float *out;
    float beta;
    void *ws; /* the algorithm's workspace (e->ws_bytes bytes) */
} dnn_args;

static const char *dnn_call_name(int dir)
{
    return dir == DIR_FWD        ? "cudnnConvolutionForward"
           : dir == DIR_BWD_DATA ? "cudnnConvolutionBackwardData"
                                 : "cudnnConvolutionBackwardFilter";
}

static cudnnStatus_t dnn_call(cuda_ctx *c, const algo_entry *e, const dnn_args *a)
{
    const float one = 1.0f;
    void *ws = e->ws_bytes ? a->ws : NULL;
    size_t n = (size_t)e->ws_bytes;
    if (a->dir == DIR_FWD)
        return cudnnConvolutionForward(c->dnn, &one, c->xd, a->x, c->wd, a->w, c->cd,
                                       (cudnnConvolutionFwdAlgo_t)e->algo, ws, n, &a->beta, c->yd,
                                       a->out);
    if (a->dir == DIR_BWD_DATA)
        return cudnnConvolutionBackwardData(c->dnn, &one, c->wd, a->w, c->yd, a->dy, c->cd,
                                            (cudnnConvolutionBwdDataAlgo_t)e->algo, ws, n, &a->beta,
                                            c->xd, a->out);
    return cudnnConvolutionBackwardFilter(c->dnn, &one, c->xd, a->x, c->yd, a->dy, c->cd,
                                          (cudnnConvolutionBwdFilterAlgo_t)e->algo, ws, n, &a->beta,
                                          c->wd, a->out);
}

/* Parameters cuDNN rejects before running anything (bad or unsupported for this algorithm). */
static bool turned_down(cudnnStatus_t s)
{
    return CUDNN_STATUS_CATEGORY(s) == CUDNN_STATUS_BAD_PARAM ||
           CUDNN_STATUS_CATEGORY(s) == CUDNN_STATUS_NOT_SUPPORTED;
}

/* The first execution of a geometry is where cuDNN builds plans and loads kernels: sample. */
static lr_status after_call(cuda_ctx *c, algo_entry *e)
{
    if (e->ran)
        return LR_OK;
    e->ran = true;
    return sample_memory(c);
}

/* Runs a call (or its emulation). An algorithm cuDNN turns down at execution although the
 * workspace query accepted it (a view's alignment, say) is replaced in the cache by the next
 * usable one, so the step still runs and later calls skip the refusal. */
static lr_status dnn_run(cuda_ctx *c, const conv_key *k, algo_entry *e, const dnn_args *a)
{
    if (c->host) {
        if (a->dir == DIR_FWD)
            host_conv_fwd(k, a->x, a->w, a->out, a->beta);
        else if (a->dir == DIR_BWD_DATA)
            host_conv_bwd_data(k, a->w, a->dy, a->out, a->beta);
        else
            host_conv_bwd_filter(k, a->x, a->dy, a->out, a->beta);
        return LR_OK;
    }
    cudnnStatus_t s;
    while ((s = dnn_call(c, e, a)) != CUDNN_STATUS_SUCCESS) {
        if (!turned_down(s))
            return check_failed("cuDNN", dnn_call_name(a->dir), __FILE__, __LINE__,
                                cudnnGetErrorString(s));
        e->tried |= 1u << e->algo;
        if (choose_algo(c, k, e) != LR_OK)
            return lr_fail(LR_ERR_RUNTIME, "%s:%d: %s turned down every algorithm (last: %s): %s",
                           __FILE__, __LINE__, dnn_call_name(a->dir), cudnnGetErrorString(s),
                           lr_last_error());
    }
    return after_call(c, e);
}

/* ------------------------------------------------------------------ adapters: convolution */

/* The key of one piece in one direction; limit filled by the caller. */
static void piece_key(const cuda_ctx *c, const conv_info *ci, const cuda_conv_piece *p, int dir,
                      conv_key *k)
{
    memset(k, 0, sizeof *k); /* padding bytes take part in hashing */
    k->dir = dir;
    k->det = c->deterministic;
    k->n = ci->n, k->cin = ci->cin, k->win = ci->w, k->hin = p->in_hi - p->in_lo + 1;
    int x_rows = dir == DIR_BWD_DATA ? ci->dx_rows : ci->x_rows;
    cuda_view_strides(ci->cin, p->staged ? k->hin : x_rows, ci->w, k->xs);
    k->cout = ci->cout, k->wout = ci->wout, k->hout = p->out_hi - p->out_lo + 1;
    cuda_view_strides(ci->cout, ci->y_rows, ci->wout, k->ys);
    k->kh = ci->kh, k->kw = ci->kw, k->sh = ci->sh, k->sw = ci->sw;
    k->ph = p->staged ? 0 : p->pad, k->pw = ci->pw, k->dh = ci->dh, k->dw = ci->dw;
    k->groups = ci->groups;
}

static int64_t algo_limit(const cuda_ctx *c, int64_t ws_bytes, int64_t staging)
{
    int64_t left = ws_bytes - staging;
    return left < c->ws_cap ? left : c->ws_cap;
}

/* Workspace one piece needs: staging plus the largest algorithm workspace of its calls. */
static lr_status piece_need(cuda_ctx *c, const conv_info *ci, const cuda_conv_piece *p,
                            int64_t *need)
{
    int dirs[2], nd = 0;
    if (!ci->backward)
        dirs[nd++] = DIR_FWD;
    if (ci->want_dw)
        dirs[nd++] = DIR_BWD_FILTER;
    if (ci->want_dx)
        dirs[nd++] = DIR_BWD_DATA;
    int64_t most = 0;
    for (int i = 0; i < nd; i++) {
        conv_key k;
        piece_key(c, ci, p, dirs[i], &k);
        k.limit = c->ws_cap;
        algo_entry *e;
        LR_TRY(conv_algo(c, &k, &e));
        most = e->ws_bytes > most ? e->ws_bytes : most;
    }
    *need = piece_staging(ci, p) + most;
    return LR_OK;
}

int64_t cuda_backend_workspace_bytes_ctx(void *ctx, const net_t *net, const sched_t *s, int batch)
{
    cuda_ctx *c = (cuda_ctx *)ctx;
    int64_t most = 0;
    for (int i = 0; i < s->n_steps; i++) {
        const sched_step *st = &s->steps[i];
        if (!is_conv_run(net, st))
            continue;
        conv_info ci;
        conv_info_of(net, s, st, batch, &ci);
        cuda_conv_piece pc[3];
        int np = cuda_conv_pieces(ci.h, ci.kh, ci.sh, ci.ph, ci.dh, st->row_lo, st->row_hi, pc);
        for (int j = 0; j < np; j++) {
            int64_t need;
            if (piece_need(c, &ci, &pc[j], &need) != LR_OK)
                return -1;
            most = need > most ? need : most;
        }
    }
    return most;
}

typedef struct {
    char *base;
    int64_t bytes;
} workspace;

static workspace workspace_of(const exec_op *op)
{
    workspace w = {NULL, 0};
    int t = op->run->workspace;
    if (t >= 0 && op->ptr[t]) {
        w.base = (char *)op->ptr[t];
        w.bytes = op->s->tensors[t].bytes;
    }
    return w;
}

static const net_node *node_of(const exec_op *op)
{
    return &op->net->nodes[op->step->node];
}

/* The staging did not fit: say how much this step needs and how much the schedule needs. */
static lr_status workspace_too_small(cuda_ctx *c, const exec_op *op, int64_t needed, int64_t have)
{
    int64_t plan = cuda_backend_workspace_bytes_ctx(c, op->net, op->s, op->batch);
    return lr_fail(LR_ERR_RUNTIME,
                   "cuda backend: %s %s rows %d-%d needs %lld bytes of edge-staging workspace, the "
                   "schedule has %lld; plan with --workspace %lld (cuda_backend_workspace_bytes)",
                   node_of(op)->name, sched_pass_name((sched_pass)op->step->pass),
                   op->step->row_lo, op->step->row_hi, (long long)needed, (long long)have,
                   (long long)plan);
}

static dview view_of(const exec_op *op, int t)
{
    dview v;
    memset(&v, 0, sizeof v);
    if (t < 0)
        return v;
    const sched_tensor *x = &op->s->tensors[t];
    const net_node *n = &op->net->nodes[x->node];
    v.p = (float *)op->ptr[t];
    LR_ASSERT(v.p != NULL);
    v.n = op->batch, v.c = n->c, v.h = n->h, v.w = n->w;
    v.row0 = x->row_lo;
    v.rows = x->row_hi - x->row_lo + 1;
    return v;
}

static float *fptr(const exec_op *op, int t)
{
    return t >= 0 ? (float *)op->ptr[t] : NULL;
}

/* Rows [lo, hi] of a view as a cuDNN base pointer. */
static float *rows_at(const dview &v, int lo)
{
    return v.p + (int64_t)(lo - v.row0) * v.w;
}

/* Copies the real rows of a staged piece's virtual rows into a zero-filled (N, C, V, W) buffer. */
static lr_status stage_input(cuda_ctx *c, const dview &x, const cuda_conv_piece *p, float *stage)
{
    int V = p->in_hi - p->in_lo + 1;
    LR_TRY(mem_set(c, stage, 4 * (size_t)x.n * x.c * V * x.w));
    int r0 = p->in_lo > 0 ? p->in_lo : 0, r1 = p->in_hi < x.h - 1 ? p->in_hi : x.h - 1;
    if (r0 > r1)
        return LR_OK;
    check_rows(x, r0, r1);
    return mem_copy2d(c, stage + (int64_t)(r0 - p->in_lo) * x.w, 4 * (size_t)V * x.w,
                      rows_at(x, r0), 4 * (size_t)x.rows * x.w, 4 * (size_t)(r1 - r0 + 1) * x.w,
                      (size_t)x.n * x.c);
}

/* dx's real rows += the staged input gradient of a piece. */
static lr_status unstage_grad(cuda_ctx *c, const float *stage, const cuda_conv_piece *p, dview dx)
{
    dview s = dx;
    s.p = (float *)stage;
    s.row0 = p->in_lo;
    s.rows = p->in_hi - p->in_lo + 1;
    int r0 = p->in_lo > 0 ? p->in_lo : 0, r1 = p->in_hi < dx.h - 1 ? p->in_hi : dx.h - 1;
    return launch_move(c, s, 0, dx, 0, dx.c, r0, r1, true);
}

/* Where the algorithm workspace starts: after the staging region. */
static char *algo_space(workspace ws, int64_t staging)
{
    return ws.base ? ws.base + staging : NULL;
}

static lr_status conv_forward_piece(cuda_ctx *c, const exec_op *op, const conv_info *ci,
                                    const cuda_conv_piece *p, workspace ws)
{
    dview x = view_of(op, op->run->in[0]), y = view_of(op, op->run->out);
    int64_t staging = piece_staging(ci, p);
    const float *xp = rows_at(x, p->in_lo);
    if (p->staged) {
        LR_TRY(stage_input(c, x, p, (float *)ws.base));
        xp = (const float *)ws.base;
    } else {
        check_rows(x, p->in_lo, p->in_hi);
    }
    check_rows(y, p->out_lo, p->out_hi);
    conv_key k;
    piece_key(c, ci, p, DIR_FWD, &k);
    k.limit = algo_limit(c, ws.bytes, staging);
    algo_entry *e;
    LR_TRY(conv_algo(c, &k, &e));
    dnn_args a = {DIR_FWD, xp, fptr(op, op->run->param), NULL, rows_at(y, p->out_lo), 0.0f,
                  algo_space(ws, staging)};
    return dnn_run(c, &k, e, &a);
}

static lr_status conv_filter_piece(cuda_ctx *c, const exec_op *op, const conv_info *ci,
                                   const cuda_conv_piece *p, workspace ws)
{
    dview x = view_of(op, op->run->in[0]), dy = view_of(op, op->run->dout);
    int64_t staging = piece_staging(ci, p);
    const float *xp = rows_at(x, p->in_lo);
    if (p->staged) {
        LR_TRY(stage_input(c, x, p, (float *)ws.base));
        xp = (const float *)ws.base;
    } else {
        check_rows(x, p->in_lo, p->in_hi);
    }
    conv_key k;
    piece_key(c, ci, p, DIR_BWD_FILTER, &k);
    k.limit = algo_limit(c, ws.bytes, staging);
    algo_entry *e;
    LR_TRY(conv_algo(c, &k, &e));
    /* beta 1: weight gradients accumulate over pieces and partitions */
    dnn_args a = {DIR_BWD_FILTER, xp, NULL, rows_at(dy, p->out_lo), fptr(op, op->run->param_grad),
                  1.0f, algo_space(ws, staging)};
    return dnn_run(c, &k, e, &a);
}

/* Runs after conv_filter_piece in stream order, so a staged gradient may reuse the region the
 * staged input occupied. */
static lr_status conv_data_piece(cuda_ctx *c, const exec_op *op, const conv_info *ci,
                                 const cuda_conv_piece *p, workspace ws)
{
    dview dy = view_of(op, op->run->dout), dx = view_of(op, op->run->din[0]);
    int64_t staging = piece_staging(ci, p);
    float *dxp = p->staged ? (float *)ws.base : rows_at(dx, p->in_lo);
    if (!p->staged)
        check_rows(dx, p->in_lo, p->in_hi);
    conv_key k;
    piece_key(c, ci, p, DIR_BWD_DATA, &k);
    k.limit = algo_limit(c, ws.bytes, staging);
    algo_entry *e;
    LR_TRY(conv_algo(c, &k, &e));
    /* a view accumulates in place (beta 1); a staged buffer is written, then added to dx */
    dnn_args a = {DIR_BWD_DATA, NULL, fptr(op, op->run->param), rows_at(dy, p->out_lo), dxp,
                  p->staged ? 0.0f : 1.0f, algo_space(ws, staging)};
    LR_TRY(dnn_run(c, &k, e, &a));
    return p->staged ? unstage_grad(c, dxp, p, dx) : LR_OK;
}

static lr_status conv_piece(cuda_ctx *c, const exec_op *op, const conv_info *ci,
                            const cuda_conv_piece *p, workspace ws)
{
    int64_t staging = piece_staging(ci, p);
    if (staging > ws.bytes)
        return workspace_too_small(c, op, staging, ws.bytes);
    if (!ci->backward)
        return conv_forward_piece(c, op, ci, p, ws);
    check_rows(view_of(op, op->run->dout), p->out_lo, p->out_hi);
    if (ci->want_dw)
        LR_TRY(conv_filter_piece(c, op, ci, p, ws));
    if (ci->want_dx)
        LR_TRY(conv_data_piece(c, op, ci, p, ws));
    return LR_OK;
}

static lr_status run_conv(cuda_ctx *c, const exec_op *op)
{
    const net_node *n = node_of(op);
    const sched_run *r = op->run;
    int lo = op->step->row_lo, hi = op->step->row_hi;
    conv_info ci;
    conv_info_of(op->net, op->s, op->step, op->batch, &ci);
    if (ci.backward && !ci.want_dx && !ci.want_dw)
        return LR_OK;
    cuda_conv_piece pc[3];
    int np = cuda_conv_pieces(ci.h, ci.kh, ci.sh, ci.ph, ci.dh, lo, hi, pc);
    workspace ws = workspace_of(op);
    int64_t wcount = n->params - (n->prm.bias ? n->c : 0);
    for (int i = 0; i < np; i++)
        LR_TRY(conv_piece(c, op, &ci, &pc[i], ws));
    if (!ci.backward && n->prm.bias)
        return launch_bias_add(c, view_of(op, r->out), fptr(op, r->param) + wcount, lo, hi);
    if (ci.want_dw && n->prm.bias) {
        dview dy = view_of(op, r->dout);
        red_out o = {NULL, NULL, fptr(op, r->param_grad) + wcount, NULL};
        return launch_channel_reduce(c, RED_DY, dy, dy, NULL, lo, hi, o);
    }
    return LR_OK;
}

/* ------------------------------------------------------------------ adapters: other ops */

static bool backward(const exec_op *op)
{
    return op->step->pass == PASS_BWD || op->step->pass == PASS_GSTATS;
}

static dwin window_of(const net_node *n)
{
    dwin g = {n->prm.kh, n->prm.kw, n->prm.sh, n->prm.sw, n->prm.ph, n->prm.pw, n->prm.dh, n->prm.dw};
    return g;
}

static lr_status run_relu(cuda_ctx *c, const exec_op *op)
{
    const sched_run *r = op->run;
    int lo = op->step->row_lo, hi = op->step->row_hi;
    if (!backward(op))
        return launch_relu_fwd(c, view_of(op, r->in[0]), view_of(op, r->out), lo, hi);
    if (r->din[0] < 0)
        return LR_OK;
    return launch_relu_bwd(c, view_of(op, r->out), view_of(op, r->dout),
                           view_of(op, r->din[0]), lo, hi);
}

static lr_status run_pool(cuda_ctx *c, const exec_op *op)
{
    const net_node *n = node_of(op);
    const sched_run *r = op->run;
    int lo = op->step->row_lo, hi = op->step->row_hi;
    bool max = n->op == OP_MAXPOOL;
    if (!backward(op))
        return launch_pool_fwd(c, max, window_of(n), view_of(op, r->in[0]),
                               view_of(op, r->out), lo, hi);
    if (r->din[0] < 0)
        return LR_OK;
    dview x = max ? view_of(op, r->in[0]) : view_of(op, -1);
    return launch_pool_bwd(c, max, window_of(n), x, view_of(op, r->dout), lo, hi,
                           view_of(op, r->din[0]));
}

static lr_status run_add(cuda_ctx *c, const exec_op *op)
{
    const sched_run *r = op->run;
    int lo = op->step->row_lo, hi = op->step->row_hi;
    if (!backward(op)) {
        dview y = view_of(op, r->out);
        LR_TRY(launch_add(c, view_of(op, r->in[0]), view_of(op, r->in[1]), y, lo, hi));
        for (int k = 2; k < r->n_in; k++)
            LR_TRY(launch_move(c, view_of(op, r->in[k]), 0, y, 0, y.c, lo, hi, true));
        return LR_OK;
    }
    dview dy = view_of(op, r->dout);
    for (int k = 0; k < r->n_in; k++)
        if (r->din[k] >= 0)
            LR_TRY(launch_move(c, dy, 0, view_of(op, r->din[k]), 0, dy.c, lo, hi, true));
    return LR_OK;
}

static lr_status run_concat(cuda_ctx *c, const exec_op *op)
{
    const sched_run *r = op->run;
    int lo = op->step->row_lo, hi = op->step->row_hi;
    dview y = backward(op) ? view_of(op, r->dout) : view_of(op, r->out);
    int off = 0;
    for (int k = 0; k < r->n_in; k++) {
        int ck = op->net->nodes[node_of(op)->inputs[k]].c;
        if (!backward(op)) {
            LR_TRY(launch_move(c, view_of(op, r->in[k]), 0, y, off, ck, lo, hi, false));
        } else if (r->din[k] >= 0) {
            LR_TRY(launch_move(c, y, off, view_of(op, r->din[k]), 0, ck, lo, hi, true));
        }
        off += ck;
    }
    return LR_OK;
}

static lr_status run_upsample(cuda_ctx *c, const exec_op *op)
{
    const sched_run *r = op->run;
    int f = node_of(op)->prm.scale, lo = op->step->row_lo, hi = op->step->row_hi;
    if (!backward(op))
        return launch_upsample_fwd(c, f, view_of(op, r->in[0]), view_of(op, r->out), lo, hi);
    if (r->din[0] < 0)
        return LR_OK;
    return launch_upsample_bwd(c, f, view_of(op, r->dout), lo, hi, view_of(op, r->din[0]));
}

static lr_status run_dropout(cuda_ctx *c, const exec_op *op)
{
    const sched_run *r = op->run;
    double p = node_of(op)->prm.p;
    int lo = op->step->row_lo, hi = op->step->row_hi;
    uint64_t seed = exec_dropout_seed(op->hp->seed, op->train_step, op->step->node);
    if (!backward(op)) {
        dview x = view_of(op, r->in[0]), y = view_of(op, r->out);
        if (op->eval)
            return launch_move(c, x, 0, y, 0, x.c, lo, hi, false);
        return launch_dropout(c, seed, p, x, y, lo, hi, false);
    }
    if (r->din[0] < 0)
        return LR_OK;
    return launch_dropout(c, seed, p, view_of(op, r->dout), view_of(op, r->din[0]), lo, hi,
                          true);
}

/* ---- batch normalisation (cpu_backend.c, function for function) */

static int64_t stat_count(const exec_op *op, int rows)
{
    return (int64_t)op->batch * rows * node_of(op)->w;
}

static double *stats_sums(const exec_op *op, int t)
{
    return (double *)((float *)op->ptr[t] + 2 * node_of(op)->c);
}

static lr_status bn_accumulate(cuda_ctx *c, const exec_op *op, dview x, int lo, int hi)
{
    double *sums = stats_sums(op, op->run->aux);
    red_out o = {sums, sums + node_of(op)->c, NULL, NULL};
    return launch_channel_reduce(c, RED_X_XX, x, x, NULL, lo, hi, o);
}

/* Running statistics: stripes move them by their share of the rows. */
static lr_status bn_running(cuda_ctx *c, const exec_op *op, int64_t count, int own_rows)
{
    const net_node *n = node_of(op);
    double m = n->prm.momentum * (double)own_rows / n->h;
    return launch_bn_running(c, stats_sums(op, op->run->aux), n->c, count, m,
                             fptr(op, op->run->running));
}

static lr_status bn_finalize(cuda_ctx *c, const exec_op *op, int64_t count)
{
    const net_node *n = node_of(op);
    return launch_bn_finalize(c, stats_sums(op, op->run->aux), n->c, count, n->prm.eps,
                              fptr(op, op->run->aux));
}

static lr_status bn_forward(cuda_ctx *c, const exec_op *op)
{
    const net_node *n = node_of(op);
    const sched_run *r = op->run;
    const sched_step *st = op->step;
    dview x = view_of(op, r->in[0]);
    if (op->eval)
        return launch_bn_fwd(c, x, NULL, fptr(op, r->running), n->prm.eps,
                             fptr(op, r->param), view_of(op, r->out), 0, n->h - 1);
    if (st->flags & RUN_STATS_ACC)
        return bn_accumulate(c, op, x, r->own_lo, r->own_hi);
    if (st->flags & RUN_FINALIZE) {
        LR_TRY(bn_finalize(c, op, stat_count(op, n->h)));
        return bn_running(c, op, stat_count(op, n->h), n->h);
    }
    int lo = st->row_lo, hi = st->row_hi;
    if (!(st->flags & RUN_BN_GLOBAL)) {
        /* statistics of these rows: a stripe, or the whole map in column order */
        int64_t count = stat_count(op, hi - lo + 1);
        LR_TRY(bn_accumulate(c, op, x, lo, hi));
        LR_TRY(bn_finalize(c, op, count));
        if (st->pass == PASS_FWD)
            LR_TRY(bn_running(c, op, count,
                              (st->flags & RUN_BN_STRIPE) ? r->own_hi - r->own_lo + 1 : n->h));
    }
    return launch_bn_fwd(c, x, fptr(op, r->aux), NULL, 0.0, fptr(op, r->param),
                         view_of(op, r->out), lo, hi);
}

/* cpu_bn_bwd over rows [lo, hi]: dgb (with_direct) then dx. */
static lr_status bn_bwd(cuda_ctx *c, const exec_op *op, int lo, int hi, int64_t count,
                        bool with_reduction, bool with_direct, float *dgb)
{
    const sched_run *r = op->run;
    int C = node_of(op)->c;
    dview x = view_of(op, r->in[0]), dy = view_of(op, r->dout);
    const float *stats = fptr(op, r->aux);
    if (with_direct && dgb) {
        red_out o = {NULL, NULL, dgb + C, dgb}; /* (sum dy*xhat, sum dy) -> (dgamma, dbeta) */
        LR_TRY(launch_channel_reduce(c, RED_DY_DYXHAT, x, dy, stats, lo, hi, o));
    }
    if (r->din[0] < 0)
        return LR_OK;
    return launch_bn_bwd_dx(c, x, stats, fptr(op, r->param), dy,
                            (const double *)op->ptr[r->gred], count, with_reduction, with_direct,
                            view_of(op, r->din[0]), lo, hi);
}

static lr_status bn_backward(cuda_ctx *c, const exec_op *op)
{
    const net_node *n = node_of(op);
    const sched_run *r = op->run;
    const sched_step *st = op->step;
    int lo = st->row_lo, hi = st->row_hi;
    dview x = view_of(op, r->in[0]), dy = view_of(op, r->dout);
    double *gacc = (double *)op->ptr[r->gred];
    red_out acc = {gacc, gacc + n->c, NULL, NULL};
    if (st->flags & RUN_GSTATS_ACC)
        return launch_channel_reduce(c, RED_DY_DYXHAT, x, dy, fptr(op, r->aux), lo, hi, acc);
    int64_t count = stat_count(op, n->h);
    if (!(st->flags & RUN_BN_GLOBAL)) {
        count = stat_count(op, hi - lo + 1);
        LR_TRY(launch_channel_reduce(c, RED_DY_DYXHAT, x, dy, fptr(op, r->aux), lo, hi, acc));
    }
    float *dgb = fptr(op, r->param_grad);
    if (r->din[0] < 0 && !dgb)
        return LR_OK;
    if (st->flags & RUN_BN_PARTIAL) {
        LR_TRY(bn_bwd(c, op, lo, hi, count, false, true, dgb));
        return bn_bwd(c, op, r->own_lo, r->own_hi, count, true, false, NULL);
    }
    return bn_bwd(c, op, lo, hi, count, true, true, dgb);
}

static lr_status run_bn(cuda_ctx *c, const exec_op *op)
{
    return backward(op) ? bn_backward(c, op) : bn_forward(c, op);
}

/* ---- whole-map ops */

static lr_status run_gpool(cuda_ctx *c, const exec_op *op)
{
    const sched_run *r = op->run;
    if (!backward(op))
        return launch_adaptive_fwd(c, view_of(op, r->in[0]), view_of(op, r->out));
    if (r->din[0] < 0)
        return LR_OK;
    return launch_adaptive_bwd(c, view_of(op, r->dout), view_of(op, r->din[0]));
}

/* Row-major y (N, out) = x (N, in) w (out, in)^T is, column-major, y^T (out x N) =
 * op_T(w as in x out) * x^T (in x N); the backward products follow the same reading. */
static lr_status run_fc(cuda_ctx *c, const exec_op *op)
{
    const net_node *n = node_of(op);
    const sched_run *r = op->run;
    const net_node *x = &op->net->nodes[plan_root(op->net, n->inputs[0])];
    int in = x->c * x->h * x->w, out = n->c, N = op->batch;
    const float *w = fptr(op, r->param), *xp = fptr(op, r->in[0]);
    LR_TRY(sample_memory(c));
    if (!backward(op)) {
        float *y = fptr(op, r->out);
        LR_TRY(gemm(c, true, false, out, N, in, w, in, xp, in, 0.0f, y, out));
        if (n->prm.bias)
            LR_TRY(launch_fc_bias(c, y, w + (int64_t)in * out, N, out));
        return sample_memory(c);
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
    return sample_memory(c);
}

static lr_status run_loss(cuda_ctx *c, const exec_op *op)
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
    return mem_transfer(c, op->loss_out, loss, sizeof(float));
}

static lr_status run_update(cuda_ctx *c, const exec_op *op)
{
    const sched_run *r = op->run;
    return launch_update(c, op->optim, op->hp, op->train_step, fptr(op, r->param),
                         fptr(op, r->param_grad), fptr(op, r->opt_state), node_of(op)->params);
}

/* ------------------------------------------------------------------ adapters: the backend */

typedef lr_status (*op_fn)(cuda_ctx *c, const exec_op *op);

static op_fn op_kernel(net_op op)
{
    switch (op) {
    case OP_CONV: return run_conv;
    case OP_RELU: return run_relu;
    case OP_MAXPOOL:
    case OP_AVGPOOL: return run_pool;
    case OP_ADAPTIVE_AVGPOOL:
    case OP_GLOBAL_AVGPOOL: return run_gpool;
    case OP_BATCHNORM: return run_bn;
    case OP_ADD: return run_add;
    case OP_CONCAT: return run_concat;
    case OP_UPSAMPLE: return run_upsample;
    case OP_FC: return run_fc;
    case OP_DROPOUT: return run_dropout;
    case OP_SOFTMAX_XENT: return run_loss;
    default: return NULL;
    }
}

static lr_status cuda_run(void *ctx, const exec_op *op)
{
    cuda_ctx *c = (cuda_ctx *)ctx;
    if (op->step->pass == PASS_UPDATE)
        return run_update(c, op);
    op_fn f = op_kernel(node_of(op)->op);
    if (!f)
        return lr_fail(LR_ERR_RUNTIME, "cuda backend: no kernel for %s", net_op_name(node_of(op)->op));
    return f(c, op);
}

static lr_status cuda_copy(void *ctx, const exec_op *op)
{
    cuda_ctx *c = (cuda_ctx *)ctx;
    dview src = view_of(op, op->step->src), dst = view_of(op, op->step->t);
    int lo = op->step->row_lo, hi = op->step->row_hi;
    LR_ASSERT(same_map(src, dst));
    if (lo > hi)
        return LR_OK;
    if (op->step->accumulate)
        return launch_move(c, src, 0, dst, 0, src.c, lo, hi, true);
    check_rows(src, lo, hi);
    check_rows(dst, lo, hi);
    /* one (rows x W) block per (n, c) plane */
    return mem_copy2d(c, rows_at(dst, lo), 4 * (size_t)dst.rows * dst.w, rows_at(src, lo),
                      4 * (size_t)src.rows * src.w, 4 * (size_t)(hi - lo + 1) * src.w,
                      (size_t)src.n * src.c);
}

static lr_status cuda_arena_alloc(void *ctx, int64_t bytes, void **base)
{
    return device_alloc((cuda_ctx *)ctx, bytes, base, "the training arena");
}

static void cuda_arena_release(void *ctx, void *base)
{
    device_free((cuda_ctx *)ctx, base);
}

static lr_status cuda_zero(void *ctx, void *p, int64_t bytes)
{
    return mem_set((cuda_ctx *)ctx, p, (size_t)bytes);
}

/* Synchronous: the caller may reuse its host buffer at once. A training step starts with an
 * upload, so this is where its memory sample is taken. */
static lr_status cuda_upload(void *ctx, void *dst, const void *src, int64_t bytes)
{
    cuda_ctx *c = (cuda_ctx *)ctx;
    LR_TRY(mem_transfer(c, dst, src, (size_t)bytes));
    return sample_memory(c);
}

static lr_status cuda_download(void *ctx, void *dst, const void *src, int64_t bytes)
{
    return mem_transfer((cuda_ctx *)ctx, dst, src, (size_t)bytes);
}

static lr_status cuda_sync(void *ctx)
{
    cuda_ctx *c = (cuda_ctx *)ctx;
    if (c->host)
        return LR_OK;
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    CUDA_CHECK(cudaGetLastError()); /* errors of earlier asynchronous work */
    return sample_memory(c);
}

static lr_status cuda_scratch_alloc(void *ctx, int64_t bytes, void **p)
{
    return device_alloc((cuda_ctx *)ctx, bytes, p, "evaluation scratch");
}

static void cuda_scratch_free(void *ctx, void *p)
{
    device_free((cuda_ctx *)ctx, p);
}

/* Positional: C++17 has no designated initializers (order of exec_backend in exec.h). */
static const exec_backend cuda_backend = {
    "cuda",            cuda_arena_alloc, cuda_arena_release, cuda_zero,
    cuda_run,          cuda_copy,        cuda_upload,        cuda_download,
    cuda_sync,         cuda_scratch_alloc, cuda_scratch_free,
};

static const exec_backend cuda_emulated_backend = {
    "cuda-emulated",   cuda_arena_alloc, cuda_arena_release, cuda_zero,
    cuda_run,          cuda_copy,        cuda_upload,        cuda_download,
    cuda_sync,         cuda_scratch_alloc, cuda_scratch_free,
};

/* ------------------------------------------------------------------ public */

static int64_t ws_cap_from_env(void)
{
    const char *v = getenv("LRCNN_CUDA_WS_CAP_MIB");
    char *end;
    long long mib = v ? strtoll(v, &end, 10) : -1;
    if (!v || *v == '\0' || *end != '\0' || mib < 0 || mib > (1LL << 30))
        return CUDA_BACKEND_ALGO_WS_CAP;
    return (int64_t)mib << 20;
}

static lr_status create_descriptors(cuda_ctx *c)
{
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&c->xd));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&c->yd));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&c->wd));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&c->cd));
    return cache_grow(c);
}

static lr_status ctx_init(cuda_ctx *c)
{
    CUDA_CHECK(cudaSetDevice(0));
    CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    CUDNN_CHECK(cudnnCreate(&c->dnn));
    CUDNN_CHECK(cudnnSetStream(c->dnn, c->stream));
    CUBLAS_CHECK(cublasCreate(&c->blas));
    CUBLAS_CHECK(cublasSetStream(c->blas, c->stream));
    /* CUBLAS_DEFAULT_MATH never uses TF32 for sgemm: fp32 like the CPU */
    CUBLAS_CHECK(cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH));
    CUDA_CHECK(cudaMalloc((void **)&c->red_part,
                          sizeof(double) * 2 * RED_MAX_CHANNELS * RED_MAX_SLICES));
    LR_TRY(create_descriptors(c));
    CUDA_CHECK(cudaDeviceSynchronize());
    c->peak_used = 0;
    LR_TRY(sample_memory(c));
    c->baseline_used = c->peak_used;
    return LR_OK;
}

lr_status cuda_backend_create(bool deterministic, const exec_backend **be, void **ctx)
{
    *ctx = NULL;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        (void)cudaGetLastError();
        return lr_fail(LR_ERR_NODEVICE, "--backend cuda: no CUDA device (%s); use --backend cpu",
                       e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount found none");
    }
    cuda_ctx *c = (cuda_ctx *)calloc(1, sizeof *c);
    if (!c)
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    c->deterministic = deterministic;
    c->ws_cap = ws_cap_from_env();
    lr_status s = ctx_init(c);
    if (s != LR_OK) {
        cuda_backend_destroy(c);
        return s;
    }
    *be = &cuda_backend;
    *ctx = c;
    return LR_OK;
}

lr_status cuda_backend_create_emulated(const exec_backend **be, void **ctx)
{
    *ctx = NULL;
    cuda_ctx *c = (cuda_ctx *)calloc(1, sizeof *c);
    if (!c)
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    c->deterministic = true;
    c->host = true;
    c->ws_cap = CUDA_BACKEND_ALGO_WS_CAP;
    c->red_part = (double *)malloc(sizeof(double) * 2 * RED_MAX_CHANNELS * RED_MAX_SLICES);
    lr_status s = c->red_part ? create_descriptors(c) : lr_fail(LR_ERR_NOMEM, "out of memory");
    if (s != LR_OK) {
        cuda_backend_destroy(c);
        return s;
    }
    *be = &cuda_emulated_backend;
    *ctx = c;
    return LR_OK;
}

void cuda_backend_destroy(void *ctx)
{
    cuda_ctx *c = (cuda_ctx *)ctx;
    if (!c)
        return;
    /* teardown: failures have no caller to go to */
    if (c->cd)
        (void)cudnnDestroyConvolutionDescriptor(c->cd);
    if (c->wd)
        (void)cudnnDestroyFilterDescriptor(c->wd);
    if (c->yd)
        (void)cudnnDestroyTensorDescriptor(c->yd);
    if (c->xd)
        (void)cudnnDestroyTensorDescriptor(c->xd);
    if (c->blas)
        (void)cublasDestroy(c->blas);
    if (c->dnn)
        (void)cudnnDestroy(c->dnn);
    if (c->red_part)
        device_free(c, c->red_part);
    if (c->stream)
        (void)cudaStreamDestroy(c->stream);
    free(c->cache);
    free(c);
}

lr_status cuda_backend_memory(void *ctx, int64_t *baseline_used, int64_t *peak_used)
{
    cuda_ctx *c = (cuda_ctx *)ctx;
    LR_TRY(sample_memory(c));
    *baseline_used = c->baseline_used;
    *peak_used = c->peak_used;
    return LR_OK;
}

static int64_t staging_only(const net_t *net, const sched_t *s, int batch)
{
    int64_t most = 0;
    for (int i = 0; i < s->n_steps; i++) {
        int64_t b = cuda_conv_staging_bytes(net, s, &s->steps[i], batch);
        most = b > most ? b : most;
    }
    return most;
}

int64_t cuda_backend_workspace_bytes(const net_t *net, const sched_t *s, int batch)
{
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
        (void)cudaGetLastError();
        return staging_only(net, s, batch);
    }
    int64_t most = -1;
    for (int det = 0; det < 2; det++) {
        const exec_backend *be;
        void *ctx;
        if (cuda_backend_create(det == 1, &be, &ctx) != LR_OK)
            return -1;
        int64_t b = cuda_backend_workspace_bytes_ctx(ctx, net, s, batch);
        cuda_backend_destroy(ctx);
        if (b < 0)
            return -1;
        most = b > most ? b : most;
    }
    return most;
}
