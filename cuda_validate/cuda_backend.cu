/* cuda_backend.cu - the CUDA backend: the glue from schedule steps to cuDNN (convolutions),
 * cuBLAS (fully connected layers) and own kernels (everything else), with the CPU reference
 * backend's semantics op by op, flag by flag (exec.h, cpu_backend.c, cpu_ops.h). This file holds
 * the exec_backend (op table, copies, uploads, sync), the context and the public functions;
 * cuda_private.h lists the files that hold the ops.
 *
 * Memory: everything a step touches is in the executor's arena; off the books, made with the
 * context and so part of the baseline: 2 MiB of channel-reduction partial sums, and cuBLAS's own
 * workspace (cuda_device.cu says where memory is sampled).
 *
 * Emulation (cuda_backend_create_emulated): host memory, the kernels' element functors in host
 * loops, reference loops in place of cuDNN and cuBLAS (cuda_emulated.cu): the CPU tests drive all
 * of the backend's glue without a device.
 *
 * Streams: kernels, device-to-device copies, memsets, uploads and downloads run on c->stream in
 * schedule order; copies between pinned host memory (--offload's host tensors, cudaMallocHost)
 * and the device run asynchronously on c->copy_stream, ordered against the kernels by the events
 * the executor places (exec.h; the dependencies are sim_lanes', the ones the timeline models).
 *
 * Deliberately not here: mixed precision (the executors run fp32), multi-GPU.
 */
#include <stdlib.h>

#include "cuda_private.h"

/* ------------------------------------------------------------------ adapters: the backend */

typedef lr_status (*op_fn)(cuda_ctx *c, const exec_op *op);

static op_fn op_kernel(net_op op)
{
    switch (op) {
    case OP_CONV: return cuda_run_conv;
    case OP_RELU: return cuda_run_relu;
    case OP_MAXPOOL:
    case OP_AVGPOOL: return cuda_run_pool;
    case OP_ADAPTIVE_AVGPOOL:
    case OP_GLOBAL_AVGPOOL: return cuda_run_gpool;
    case OP_BATCHNORM: return cuda_run_bn;
    case OP_ADD: return cuda_run_add;
    case OP_CONCAT: return cuda_run_concat;
    case OP_UPSAMPLE: return cuda_run_upsample;
    case OP_FC: return cuda_run_fc;
    case OP_DROPOUT: return cuda_run_dropout;
    case OP_SOFTMAX_XENT: return cuda_run_loss;
    default: return NULL;
    }
}

static lr_status cuda_run(void *ctx, const exec_op *op)
{
    cuda_ctx *c = (cuda_ctx *)ctx;
    if (op->step->pass == PASS_UPDATE)
        return cuda_run_update(c, op);
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
        return cuda_launch_move(c, src, 0, dst, 0, src.c, lo, hi, true);
    check_rows(src, lo, hi);
    check_rows(dst, lo, hi);
    /* one (rows x W) block per (n, c) plane */
    return cuda_mem_copy2d(c, cuda_lane_stream(c, op->lane), rows_at(dst, lo),
                           4 * (size_t)dst.rows * dst.w, rows_at(src, lo),
                           4 * (size_t)src.rows * src.w, 4 * (size_t)(hi - lo + 1) * src.w,
                           (size_t)src.n * src.c);
}

static lr_status cuda_arena_alloc(void *ctx, int64_t bytes, void **base)
{
    return cuda_device_alloc((cuda_ctx *)ctx, bytes, base, "the training arena");
}

static void cuda_arena_release(void *ctx, void *base)
{
    cuda_device_free((cuda_ctx *)ctx, base);
}

static lr_status cuda_host_arena_alloc(void *ctx, int64_t bytes, void **base)
{
    return cuda_host_alloc((cuda_ctx *)ctx, bytes, base);
}

static void cuda_host_arena_release(void *ctx, void *base)
{
    cuda_host_free((cuda_ctx *)ctx, base);
}

static lr_status cuda_zero(void *ctx, void *p, int64_t bytes)
{
    return cuda_mem_set((cuda_ctx *)ctx, p, (size_t)bytes);
}

/* Synchronous: the caller may reuse its host buffer at once. A training step starts with an
 * upload, so this is where its memory sample is taken. */
static lr_status cuda_upload(void *ctx, void *dst, const void *src, int64_t bytes)
{
    cuda_ctx *c = (cuda_ctx *)ctx;
    LR_TRY(cuda_mem_transfer(c, dst, src, (size_t)bytes));
    return cuda_sample_memory(c);
}

static lr_status cuda_download(void *ctx, void *dst, const void *src, int64_t bytes)
{
    return cuda_mem_transfer((cuda_ctx *)ctx, dst, src, (size_t)bytes);
}

static lr_status cuda_sync(void *ctx)
{
    cuda_ctx *c = (cuda_ctx *)ctx;
    if (c->host)
        return LR_OK;
    if (c->copy_stream)
        CUDA_CHECK(cudaStreamSynchronize(c->copy_stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    CUDA_CHECK(cudaGetLastError()); /* errors of earlier asynchronous work */
    return cuda_sample_memory(c);
}

static lr_status cuda_lanes(void *ctx, int n_events)
{
    return cuda_lanes_prepare((cuda_ctx *)ctx, n_events);
}

static lr_status cuda_wait(void *ctx, int lane, int event)
{
    return cuda_lane_wait((cuda_ctx *)ctx, lane, event);
}

static lr_status cuda_record(void *ctx, int lane, int event)
{
    return cuda_lane_record((cuda_ctx *)ctx, lane, event);
}

static lr_status cuda_scratch_alloc(void *ctx, int64_t bytes, void **p)
{
    return cuda_device_alloc((cuda_ctx *)ctx, bytes, p, "evaluation scratch");
}

static void cuda_scratch_free(void *ctx, void *p)
{
    cuda_device_free((cuda_ctx *)ctx, p);
}

/* Positional: C++17 has no designated initializers (order of exec_backend in exec.h). */
static const exec_backend cuda_backend = {
    "cuda",            cuda_arena_alloc, cuda_arena_release, cuda_zero,
    cuda_run,          cuda_copy,        cuda_upload,        cuda_download,
    cuda_sync,         cuda_scratch_alloc, cuda_scratch_free,
    cuda_host_arena_alloc, cuda_host_arena_release,
    cuda_backend_workspace_bytes_ctx,
    cuda_lanes,        cuda_wait,        cuda_record,
};

static const exec_backend cuda_emulated_backend = {
    "cuda-emulated",   cuda_arena_alloc, cuda_arena_release, cuda_zero,
    cuda_run,          cuda_copy,        cuda_upload,        cuda_download,
    cuda_sync,         cuda_scratch_alloc, cuda_scratch_free,
    cuda_host_arena_alloc, cuda_host_arena_release,
    cuda_backend_workspace_bytes_ctx,
    cuda_lanes,        cuda_wait,        cuda_record,
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
    return cuda_algo_cache_grow(c);
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
    LR_TRY(cuda_sample_memory(c));
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
        cuda_device_free(c, c->red_part);
    cuda_lanes_free(c);
    if (c->stream)
        (void)cudaStreamDestroy(c->stream);
    free(c->cache);
    free(c);
}

lr_status cuda_backend_memory(void *ctx, cuda_memory *m)
{
    cuda_ctx *c = (cuda_ctx *)ctx;
    LR_TRY(cuda_sample_memory(c));
    m->context_used = c->baseline_used;
    m->warm_used = c->warm_used;
    m->peak_used = c->peak_used;
    return LR_OK;
}

lr_status cuda_backend_memory_mark(void *ctx)
{
    cuda_ctx *c = (cuda_ctx *)ctx;
    if (c->host)
        return LR_OK;
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    size_t free_b, total_b;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    c->warm_used = c->peak_used = (int64_t)total_b - (int64_t)free_b;
    return LR_OK;
}

int64_t cuda_backend_packed_calls(void *ctx)
{
    return ((cuda_ctx *)ctx)->packed_calls;
}

void cuda_backend_emulate_refusals(void *ctx, bool on)
{
    cuda_ctx *c = (cuda_ctx *)ctx;
    LR_ASSERT(c->host);
    c->refuse_unaligned = on;
}

lr_status cuda_backend_bus_id(void *ctx, char *buf, int cap)
{
    cuda_ctx *c = (cuda_ctx *)ctx;
    if (c->host)
        return lr_fail(LR_ERR_NODEVICE, "the emulated backend has no device");
    CUDA_CHECK(cudaDeviceGetPCIBusId(buf, cap, 0));
    return LR_OK;
}

/* Sizing with a context made for it: the device's, or without a device the emulated one
 * (deterministic, no algorithm workspace: staging and packed forms alone). */
static lr_status size_with(bool emulated, bool deterministic, const net_t *net, const sched_t *s,
                           int batch, int64_t *bytes)
{
    const exec_backend *be;
    void *ctx;
    LR_TRY(emulated ? cuda_backend_create_emulated(&be, &ctx)
                    : cuda_backend_create(deterministic, &be, &ctx));
    lr_status st = cuda_backend_workspace_bytes_ctx(ctx, net, s, batch, bytes);
    cuda_backend_destroy(ctx);
    return st;
}

lr_status cuda_backend_workspace_bytes(const net_t *net, const sched_t *s, int batch,
                                       int64_t *bytes)
{
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
        (void)cudaGetLastError();
        return size_with(true, true, net, s, batch, bytes);
    }
    int64_t most = 0;
    for (int det = 0; det < 2; det++) {
        int64_t b;
        LR_TRY(size_with(false, det == 1, net, s, batch, &b));
        most = b > most ? b : most;
    }
    *bytes = most;
    return LR_OK;
}
