/* cuda_device.cu - the device layer the rest of the backend goes through: the check that turns a
 * failed CUDA/cuDNN/cuBLAS call into a status, device memory sampling, allocation, memset and
 * copies, each with a host path for the emulated backend (cuda_ctx.host).
 *
 * Memory: the arena is one cudaMalloc (exec.c plans it); out of memory there is an error that
 * says what was needed and what was free. Device memory in use is sampled (cudaMemGetInfo) at
 * every allocation, at the first call of every convolution geometry (when cuDNN builds plans and
 * loads modules), around fully connected steps, at uploads (a training step's start) and at sync
 * (its end): the device-level peak minus the baseline after context creation is what the
 * allocator model leaves out.
 *
 * Deliberately not here: what is allocated when (exec.c), the context itself (cuda_backend.cu).
 */
#include <stdio.h>
#include <stdlib.h>

#include "cuda_private.h"

/* ------------------------------------------------------------------ checks */

bool cuda_status_is_oom(cuda_lib lib, int code)
{
    switch (lib) {
    case CUDA_LIB_RUNTIME:
        return code == cudaErrorMemoryAllocation;
    case CUDA_LIB_CUDNN:
        return code == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ||
               code == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED;
    case CUDA_LIB_CUBLAS:
        return code == CUBLAS_STATUS_ALLOC_FAILED;
    }
    return false;
}

static const char *lib_name(cuda_lib lib)
{
    return lib == CUDA_LIB_RUNTIME ? "CUDA" : lib == CUDA_LIB_CUDNN ? "cuDNN" : "cuBLAS";
}

static const char *status_text(cuda_lib lib, int code)
{
    if (lib == CUDA_LIB_RUNTIME)
        return cudaGetErrorString((cudaError_t)code);
    if (lib == CUDA_LIB_CUDNN)
        return cudnnGetErrorString((cudnnStatus_t)code);
    return cublasGetStatusString((cublasStatus_t)code);
}

/* "free X MiB of Y MiB", or why that is unknown. Clears a pending allocation error first, so
 * that later calls do not report it. */
static void free_text(char *buf, size_t cap)
{
    (void)cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaError_t e = cudaMemGetInfo(&free_b, &total_b);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        snprintf(buf, cap, "free memory unknown (cudaMemGetInfo: %s)", cudaGetErrorString(e));
        return;
    }
    snprintf(buf, cap, "free %.1f MiB of %.1f MiB", free_b / 1048576.0, total_b / 1048576.0);
}

lr_status cuda_call_failed(cuda_lib lib, int code, const char *stmt, const char *file, int line)
{
    if (!cuda_status_is_oom(lib, code))
        return lr_fail(LR_ERR_RUNTIME, "%s:%d: %s failed (%s): %s", file, line, stmt,
                       lib_name(lib), status_text(lib, code));
    char free_b[128];
    free_text(free_b, sizeof free_b);
    return lr_fail(LR_ERR_NOMEM, "cuda backend: does not fit: %s ran out of memory (%s: %s, %s:%d); %s",
                   stmt, lib_name(lib), status_text(lib, code), file, line, free_b);
}

/* ------------------------------------------------------------------ memory */

lr_status cuda_sample_memory(cuda_ctx *c)
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
lr_status cuda_device_alloc(cuda_ctx *c, int64_t bytes, void **p, const char *what)
{
    size_t size = (size_t)(bytes > 0 ? align256(bytes) : 256);
    if (c->host) {
        *p = aligned_alloc(256, size);
        return *p ? LR_OK : lr_fail(LR_ERR_NOMEM, "cuda backend (emulated): %s does not fit: "
                                                  "needed %.1f MiB of host memory", what,
                                    bytes / 1048576.0);
    }
    *p = NULL;
    cudaError_t e = cudaMalloc(p, size);
    if (e == cudaErrorMemoryAllocation) {
        char free_b[128];
        free_text(free_b, sizeof free_b);
        return lr_fail(LR_ERR_NOMEM, "cuda backend: %s does not fit: needed %.1f MiB, %s", what,
                       bytes / 1048576.0, free_b);
    }
    CUDA_CHECK(e);
    return cuda_sample_memory(c);
}

/* Host memory for the schedule's host tensors (--offload): page-locked, so copies to and from
 * the device run asynchronously on the stream and kernels may read it through unified addressing
 * (cudaMallocHost maps it); plain memory under emulation. */
lr_status cuda_host_alloc(cuda_ctx *c, int64_t bytes, void **p)
{
    size_t size = (size_t)(bytes > 0 ? align256(bytes) : 256);
    if (c->host) {
        *p = aligned_alloc(256, size);
        return *p ? LR_OK : lr_fail(LR_ERR_NOMEM, "cuda backend (emulated): cannot allocate %.1f MiB "
                                                  "of host memory for offloaded tensors", bytes / 1048576.0);
    }
    *p = NULL;
    cudaError_t e = cudaMallocHost(p, size);
    if (e == cudaErrorMemoryAllocation)
        return lr_fail(LR_ERR_NOMEM, "cuda backend: cannot pin %.1f MiB of host memory for "
                                     "offloaded tensors (--offload)", bytes / 1048576.0);
    CUDA_CHECK(e);
    return LR_OK;
}

void cuda_host_free(cuda_ctx *c, void *p)
{
    if (c->host)
        free(p);
    else
        (void)cudaFreeHost(p);
}

void cuda_device_free(cuda_ctx *c, void *p)
{
    if (c->host)
        free(p);
    else
        (void)cudaFree(p); /* teardown: exec_free() has no status to return */
}

lr_status cuda_mem_set(cuda_ctx *c, void *p, size_t bytes)
{
    if (c->host) {
        memset(p, 0, bytes);
        return LR_OK;
    }
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, c->stream));
    return LR_OK;
}

/* `height` rows of `width` bytes (cudaMemcpy2DAsync). */
lr_status cuda_mem_copy2d(cuda_ctx *c, cudaStream_t stream, void *dst, size_t dpitch,
                          const void *src, size_t spitch, size_t width, size_t height)
{
    if (c->host) {
        for (size_t i = 0; i < height; i++)
            memcpy((char *)dst + i * dpitch, (const char *)src + i * spitch, width);
        return LR_OK;
    }
    /* cudaMemcpyDefault: either side may be pinned host memory (host tensors under --offload);
     * unified addressing tells the direction */
    CUDA_CHECK(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, cudaMemcpyDefault,
                                 stream));
    return LR_OK;
}

/* A synchronous copy between host and device (either direction). */
lr_status cuda_mem_transfer(cuda_ctx *c, void *dst, const void *src, size_t bytes)
{
    if (c->host) {
        memcpy(dst, src, bytes);
        return LR_OK;
    }
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    return LR_OK;
}

/* ------------------------------------------------------------------ streams */

/* Grows the event pool; the copy stream is made once. Emulated: steps run in schedule order, so
 * only the protocol is checked (an event waited for must have been recorded). */
lr_status cuda_lanes_prepare(cuda_ctx *c, int n_events)
{
    if (!c->host && !c->copy_stream)
        CUDA_CHECK(cudaStreamCreateWithFlags(&c->copy_stream, cudaStreamNonBlocking));
    if (n_events <= c->n_events)
        return LR_OK;
    cudaEvent_t *ev = (cudaEvent_t *)realloc(c->events, sizeof(cudaEvent_t) * (size_t)n_events);
    if (ev)
        c->events = ev;
    bool *rec = (bool *)realloc(c->recorded, sizeof(bool) * (size_t)n_events);
    if (rec)
        c->recorded = rec;
    if (!ev || !rec)
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    for (; c->n_events < n_events; c->n_events++) {
        c->recorded[c->n_events] = false;
        if (!c->host)
            CUDA_CHECK(cudaEventCreateWithFlags(&c->events[c->n_events], cudaEventDisableTiming));
    }
    return LR_OK;
}

cudaStream_t cuda_lane_stream(cuda_ctx *c, int lane)
{
    return lane == SIM_LANE_COPY && c->copy_stream ? c->copy_stream : c->stream;
}

lr_status cuda_lane_wait(cuda_ctx *c, int lane, int event)
{
    LR_ASSERT(event >= 0 && event < c->n_events);
    if (!c->recorded[event])
        return lr_fail(LR_ERR_RUNTIME, "cuda backend: a step waits for event %d, never recorded",
                       event);
    if (c->host)
        return LR_OK;
    CUDA_CHECK(cudaStreamWaitEvent(cuda_lane_stream(c, lane), c->events[event], 0));
    return LR_OK;
}

lr_status cuda_lane_record(cuda_ctx *c, int lane, int event)
{
    LR_ASSERT(event >= 0 && event < c->n_events);
    c->recorded[event] = true;
    if (c->host)
        return LR_OK;
    CUDA_CHECK(cudaEventRecord(c->events[event], cuda_lane_stream(c, lane)));
    return LR_OK;
}

/* teardown: failures have no caller to go to */
void cuda_lanes_free(cuda_ctx *c)
{
    for (int i = 0; i < c->n_events && !c->host; i++)
        (void)cudaEventDestroy(c->events[i]);
    free(c->events);
    free(c->recorded);
    if (c->copy_stream)
        (void)cudaStreamDestroy(c->copy_stream);
}
