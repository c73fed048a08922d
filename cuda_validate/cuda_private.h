/* cuda_private.h - what the CUDA backend's .cu files share (never included by C files): the
 * checks, the context, device views of stripes, the elementwise launcher, and the functions one
 * file of the backend offers another.
 *
 * Legend: N batch, C channels, H/W full height/width of a map, R rows in a stripe, V rows of a
 * staging buffer, OH/OW output height/width of a window op.
 *
 * The files, each a kernels section, launchers and adapters (STYLE.md 6), called downward only:
 *   cuda_backend.cu   the exec_backend: context, op table, copies, uploads, public functions
 *   cuda_conv.cu      convolution steps: pieces run on views or staged edges, workspace sizing
 *   cuda_algo.cu      cuDNN algorithm choice, its cache, and running a cuDNN call
 *   cuda_pieces.cu    host geometry of convolution pieces (cuda_conv_pieces), staging bytes
 *   cuda_eltwise.cu   relu, add, concat, upsample, dropout, row moves and bias rows
 *   cuda_pool.cu      max/avg pooling, adaptive and global average pooling
 *   cuda_bn.cu        BatchNorm and the deterministic channel reductions
 *   cuda_fc.cu        fully connected layers (cuBLAS)
 *   cuda_loss.cu      softmax cross-entropy
 *   cuda_optim.cu     SGD, momentum and Adam updates
 *   cuda_emulated.cu  the reference loops that stand in for cuDNN and cuBLAS when emulated
 *   cuda_device.cu    checks, memory sampling, allocation, memset and copies
 *
 * Deliberately not here: anything a C file needs (cuda_backend.h).
 */
#ifndef LR_CUDA_PRIVATE_H
#define LR_CUDA_PRIVATE_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cuda_backend.h"

/* ------------------------------------------------------------------ checks */

/* Every CUDA, cuDNN and cuBLAS call is checked: a failure returns cuda_call_failed()'s status
 * (cuda_backend.h: out of memory is LR_ERR_NOMEM, anything else LR_ERR_RUNTIME, naming the
 * statement, file and line). */
#define CUDA_CHECK(stmt)                                                                   \
    do {                                                                                   \
        cudaError_t cuda_e_ = (stmt);                                                      \
        if (cuda_e_ != cudaSuccess)                                                        \
            return cuda_call_failed(CUDA_LIB_RUNTIME, (int)cuda_e_, #stmt, __FILE__, __LINE__);\
    } while (0)

#define CUDNN_CHECK(stmt)                                                                  \
    do {                                                                                   \
        cudnnStatus_t dnn_e_ = (stmt);                                                     \
        if (dnn_e_ != CUDNN_STATUS_SUCCESS)                                                \
            return cuda_call_failed(CUDA_LIB_CUDNN, (int)dnn_e_, #stmt, __FILE__, __LINE__);\
    } while (0)

#define CUBLAS_CHECK(stmt)                                                                 \
    do {                                                                                   \
        cublasStatus_t blas_e_ = (stmt);                                                   \
        if (blas_e_ != CUBLAS_STATUS_SUCCESS)                                              \
            return cuda_call_failed(CUDA_LIB_CUBLAS, (int)blas_e_, #stmt, __FILE__, __LINE__);\
    } while (0)

/* after every launch */
#define LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())

#define BLOCK 256

#define CEIL_DIV(a, b) (((a) + (b) - 1) / (b))

static inline int64_t align256(int64_t bytes)
{
    return CEIL_DIV(bytes, 256) * 256;
}

/* ------------------------------------------------------------------ device views */

__host__ __device__ static inline int floor_div(int a, int b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

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
 * in the order the CPU scatters, which makes them atomic-free and deterministic. k_each is the one
 * elementwise kernel: element i of `op` per thread. */
template <typename Op>
__global__ void k_each(Op op, int64_t total)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total)
        op(i);
}

/* ------------------------------------------------------------------ convolutions, the context */

/* Everything a convolution RUN step needs, from the schedule alone (no pointers). */
typedef struct {
    int n, cin, h, w, cout, hout, wout, groups;
    int kh, kw, sh, sw, ph, pw, dh, dw;
    bool bias, backward, want_dx, want_dw;
    int x_row0, x_rows;   /* in[0] */
    int y_row0, y_rows;   /* out (forward) or dout (backward) */
    int dx_row0, dx_rows; /* din[0] */
} conv_info;

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
    bool refused;    /* cuDNN turned down every algorithm: the call runs packed (cuda_conv.cu) */
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
    int64_t warm_used;                /* in use at cuda_backend_memory_mark (0: not marked) */
    int64_t packed_calls;             /* convolution calls run packed after a refusal */
    bool refuse_unaligned;            /* emulated: turn down calls on unaligned operands */
    /* two streams (exec_backend.lanes): host-device copies on copy_stream, ordered against the
     * kernels by events; emulated: no stream, `recorded` checks the executor's event protocol */
    cudaStream_t copy_stream;
    cudaEvent_t *events;
    bool *recorded;
    int n_events;
} cuda_ctx;

/* ------------------------------------------------------------------ launchers */

static inline unsigned grid_for(int64_t total)
{
    LR_ASSERT(total > 0 && CEIL_DIV(total, BLOCK) <= INT_MAX);
    return (unsigned)CEIL_DIV(total, BLOCK);
}

/* Elements 0..total-1 of op: one thread each on the stream, or a host loop when emulated. */
template <typename Op>
static inline lr_status run_each(cuda_ctx *c, const Op &op, int64_t total)
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

static inline int64_t rows_total(const dview &v, int c, int R)
{
    return (int64_t)v.n * c * R * v.w;
}

/* Rows [lo, hi] must lie in v (the device does not check). */
static inline void check_rows(const dview &v, int lo, int hi)
{
    if (lo > hi)
        return;
    LR_ASSERT(v.p != NULL);
    LR_ASSERT(lo >= v.row0 && hi < v.row0 + v.rows);
}

static inline bool same_map(const dview &a, const dview &b)
{
    return a.n == b.n && a.c == b.c && a.h == b.h && a.w == b.w;
}

/* ------------------------------------------------------------------ adapters */

static inline bool backward(const exec_op *op)
{
    return op->step->pass == PASS_BWD || op->step->pass == PASS_GSTATS;
}

static inline const net_node *node_of(const exec_op *op)
{
    return &op->net->nodes[op->step->node];
}

static inline dview view_of(const exec_op *op, int t)
{
    dview v;
    memset(&v, 0, sizeof v);
    if (t < 0)
        return v;
    exec_view_shape sh = exec_view_shape_of(op, t);
    const net_node *n = &op->net->nodes[sh.node];
    v.p = (float *)op->ptr[t];
    LR_ASSERT(v.p != NULL);
    v.n = op->batch, v.c = n->c, v.h = n->h, v.w = n->w;
    v.row0 = sh.row0, v.rows = sh.rows;
    return v;
}

static inline float *fptr(const exec_op *op, int t)
{
    return t >= 0 ? (float *)op->ptr[t] : NULL;
}

/* Rows [lo, hi] of a view as a cuDNN base pointer. */
static inline float *rows_at(const dview &v, int lo)
{
    return v.p + (int64_t)(lo - v.row0) * v.w;
}

/* ------------------------------------------------------------------ cuda_device.cu */

/* Samples device memory in use into c->peak_used (no-op when emulated). */
lr_status cuda_sample_memory(cuda_ctx *c);
/* cudaMalloc (host memory when emulated) of at least `bytes`, 256-byte aligned; out of memory is
 * an error that names `what`, the bytes needed and the bytes free. */
lr_status cuda_device_alloc(cuda_ctx *c, int64_t bytes, void **p, const char *what);
void cuda_device_free(cuda_ctx *c, void *p);
lr_status cuda_host_alloc(cuda_ctx *c, int64_t bytes, void **p);
void cuda_host_free(cuda_ctx *c, void *p);
lr_status cuda_mem_set(cuda_ctx *c, void *p, size_t bytes);
/* `height` rows of `width` bytes (cudaMemcpy2DAsync on `stream`: c->stream, or c->copy_stream
 * for host-device copies). */
lr_status cuda_mem_copy2d(cuda_ctx *c, cudaStream_t stream, void *dst, size_t dpitch,
                          const void *src, size_t spitch, size_t width, size_t height);
/* The copy stream and at least n events (exec_backend.lanes); the stream of a sim_lane; waiting
 * for and recording an event there. */
lr_status cuda_lanes_prepare(cuda_ctx *c, int n_events);
cudaStream_t cuda_lane_stream(cuda_ctx *c, int lane);
lr_status cuda_lane_wait(cuda_ctx *c, int lane, int event);
lr_status cuda_lane_record(cuda_ctx *c, int lane, int event);
void cuda_lanes_free(cuda_ctx *c);
/* A synchronous copy between host and device (either direction). */
lr_status cuda_mem_transfer(cuda_ctx *c, void *dst, const void *src, size_t bytes);

/* ------------------------------------------------------------------ cuda_pieces.cu */

void cuda_conv_info(const net_t *net, const sched_t *s, const sched_step *st, int batch,
                    conv_info *ci);
/* Staging bytes of a piece (0 for views), 256-byte aligned. */
int64_t cuda_piece_staging(const conv_info *ci, const cuda_conv_piece *p);
/* The piece's output rows as a staged piece (itself when it is one). */
cuda_conv_piece cuda_piece_as_staged(const conv_info *ci, const cuda_conv_piece *p);
/* Staging bytes of the piece run packed: its input staged, then its output rows (or their
 * gradient) as a packed (N, Cout, R, OW) buffer, each 256-byte aligned. */
int64_t cuda_piece_packed_staging(const conv_info *ci, const cuda_conv_piece *p);
/* Whether a call on the piece in place reads or writes a view whose base is not 16-byte aligned
 * (a stripe offset by (lo - row0) * W * 4 bytes, e.g. W = 7 or 14 at odd offsets): cuDNN may turn
 * down every deterministic algorithm for it. */
bool cuda_piece_unaligned(const conv_info *ci, const cuda_conv_piece *p);
bool cuda_is_conv_run(const net_t *net, const sched_step *st);

/* ------------------------------------------------------------------ cuda_emulated.cu */

/* cuDNN's three convolution calls and cublasSgemm with alpha 1, as host loops over the same
 * geometry the descriptors get; out = result + beta * out (beta 0 does not read out). */
void cuda_emulated_conv_fwd(const conv_key *k, const float *x, const float *w, float *y, float beta);
void cuda_emulated_conv_bwd_data(const conv_key *k, const float *w, const float *dy, float *dx,
                                 float beta);
void cuda_emulated_conv_bwd_filter(const conv_key *k, const float *x, const float *dy, float *dw,
                                   float beta);
void cuda_emulated_sgemm(bool ta, bool tb, int m, int n, int k, const float *A, int lda,
                         const float *B, int ldb, float beta, float *C, int ldc);

/* ------------------------------------------------------------------ cuda_algo.cu */

/* One convolution call with alpha 1 on the descriptors cuda_conv_algo() set: forward (x, w -> out),
 * backward data (w, dy -> out) or backward filter (x, dy -> out); out = result + beta * out. */
typedef struct {
    int dir;
    const float *x, *w, *dy;
    float *out;
    float beta;
    void *ws; /* the algorithm's workspace (e->ws_bytes bytes) */
} dnn_args;

/* Doubles the algorithm cache (256 entries the first time). */
lr_status cuda_algo_cache_grow(cuda_ctx *c);
/* Sets the context's descriptors for k and returns its cached (or newly chosen) algorithm. */
lr_status cuda_conv_algo(cuda_ctx *c, const conv_key *k, algo_entry **out);
/* Runs one call (or its emulation); an algorithm cuDNN turns down is replaced by the next. When
 * cuDNN turns down every algorithm, *refused is set (nothing ran, the message says why) and the
 * entry remembers it. */
lr_status cuda_dnn_run(cuda_ctx *c, const conv_key *k, algo_entry *e, const dnn_args *a,
                       bool *refused);

/* ------------------------------------------------------------------ cuda_eltwise.cu */

/* b's channels [b_off, b_off + nc) of rows [lo, hi] = (accumulate: +=) a's [a_off, a_off + nc). */
lr_status cuda_launch_move(cuda_ctx *c, dview a, int a_off, dview b, int b_off, int nc, int lo,
                           int hi, bool accumulate);
/* y[., c, lo..hi, .] += b[c] */
lr_status cuda_launch_bias_add(cuda_ctx *c, dview y, const float *b, int lo, int hi);
/* y = b per channel (b NULL: 0) over rows [lo, hi] */
lr_status cuda_launch_bias_fill(cuda_ctx *c, dview y, const float *b, int lo, int hi);
lr_status cuda_run_relu(cuda_ctx *c, const exec_op *op);
lr_status cuda_run_add(cuda_ctx *c, const exec_op *op);
lr_status cuda_run_concat(cuda_ctx *c, const exec_op *op);
lr_status cuda_run_upsample(cuda_ctx *c, const exec_op *op);
lr_status cuda_run_dropout(cuda_ctx *c, const exec_op *op);

/* ------------------------------------------------------------------ cuda_bn.cu */

enum { RED_X_XX, RED_DY_DYXHAT, RED_DY };

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

/* The per-channel map BatchNorm applies: batch statistics `stats` (2, C) = mean, invstd; or, frozen
 * (--bn frozen) and in eval, the running statistics (2, C) = mean, var with invstd =
 * 1 / sqrt(var + eps) in double, as cpu_ops.c cpu_bn_frozen_fwd and cpu_backend.c bn_eval. */
struct bn_norm {
    const float *stats, *running;
    double eps;
    __host__ __device__ float mean(int C, int c) const { return stats ? stats[c] : running[c]; }
    __host__ __device__ float invstd(int C, int c) const
    {
        return stats ? stats[C + c] : (float)(1.0 / sqrt((double)running[C + c] + eps));
    }
};

/* Per-channel sums of `kind` over rows [lo, hi] into o (deterministic, two passes); norm is
 * read by RED_DY_DYXHAT only. */
lr_status cuda_channel_reduce(cuda_ctx *c, int kind, dview x, dview dy, bn_norm norm,
                              int lo, int hi, red_out o);
lr_status cuda_run_bn(cuda_ctx *c, const exec_op *op);

/* ------------------------------------------------------------------ op adapters */

lr_status cuda_run_conv(cuda_ctx *c, const exec_op *op);   /* cuda_conv.cu */
lr_status cuda_run_pool(cuda_ctx *c, const exec_op *op);   /* cuda_pool.cu: max, avg */
lr_status cuda_run_gpool(cuda_ctx *c, const exec_op *op);  /* cuda_pool.cu: adaptive, global */
lr_status cuda_run_fc(cuda_ctx *c, const exec_op *op);     /* cuda_fc.cu */
lr_status cuda_run_loss(cuda_ctx *c, const exec_op *op);   /* cuda_loss.cu */
lr_status cuda_run_update(cuda_ctx *c, const exec_op *op); /* cuda_optim.cu */

#endif
