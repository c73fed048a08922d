/* cuda_backend.h - the CUDA backend of the schedule executor (cuDNN convolutions, cuBLAS fully
 * connected layers, own kernels for everything else), with the same semantics as the CPU
 * reference backend op by op (exec.h, exec_backend.run).
 *
 * Legend: N batch, C channels, H/W height/width, R rows in a stripe.
 *
 * Memory: every byte of a training step lives in the executor's arena (one cudaMalloc); edge
 * staging and cuDNN algorithm workspace are carved from the schedule's TC_WORKSPACE tensor, whose
 * size the planner takes from cfg.workspace_bytes. cuda_backend_workspace_bytes() says how large
 * it must be for a schedule, so a driver plans once, asks, and plans again with that size.
 *
 * Deliberately not here: the kernels and the edge-staging design (cuda_private.h lists the
 * backend's files; cuda_pieces.cu describes staging), the interpreter (exec.h).
 */
#ifndef LR_CUDA_BACKEND_H
#define LR_CUDA_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "exec.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Creates a context on device 0: a stream, cuDNN and cuBLAS handles, then records the device
 * memory in use as the baseline. deterministic: only algorithms cuDNN reports as deterministic
 * (backward data/filter), for gradient checks; own kernels never use atomics either way.
 * Returns LR_ERR_NODEVICE with the reason when there is no usable device (cudaGetDeviceCount
 * fails or finds none), LR_ERR_RUNTIME when a library call fails. The caller owns *ctx and
 * releases it with cuda_backend_destroy(). */
lr_status cuda_backend_create(bool deterministic, const exec_backend **be, void **ctx);
void cuda_backend_destroy(void *ctx); /* NULL is a no-op */

/* For tests without a device: the same backend (every adapter, piece split, staging, view,
 * stride and flag) with host memory, the kernels' element functors run in host loops, and
 * reference loops in place of cuDNN and cuBLAS that read the same descriptor geometry (cuDNN's
 * descriptor calls still run: they need no device). Deterministic; no workspace beyond staging.
 * What it cannot check: launches, cuDNN's algorithms, cuBLAS itself, device memory. Release with
 * cuda_backend_destroy(). */
lr_status cuda_backend_create_emulated(const exec_backend **be, void **ctx);

/* Device memory in use (total - free, cudaMemGetInfo: device-wide, so other processes on the
 * device count too):
 *   context_used  right after cuda_backend_create() (context, handles, 2 MiB of reduction sums);
 *   warm_used     at the last cuda_backend_memory_mark() (0: never marked): after a warm-up step
 *                 it holds the arenas and what loads lazily (our kernel modules, cuDNN's engines,
 *                 cuBLAS's workspace, the driver's local memory);
 *   peak_used     the highest value sampled since the mark (since creation without one): at every
 *                 arena/scratch allocation, at the first call of every convolution geometry,
 *                 around fully connected steps, at uploads and at every sync(). */
typedef struct {
    int64_t context_used, warm_used, peak_used;
} cuda_memory;

lr_status cuda_backend_memory(void *ctx, cuda_memory *m);

/* Waits for the device, then takes what is in use now as warm_used and restarts peak_used from
 * it (a no-op when emulated). */
lr_status cuda_backend_memory_mark(void *ctx);

/* Convolution calls that ran packed because cuDNN turned down every algorithm for their views
 * (cuda_conv.cu). */
int64_t cuda_backend_packed_calls(void *ctx);

/* Emulated context only: from now on, turn down every algorithm for a convolution call whose
 * input, output or gradient pointer is not 16-byte aligned, as cuDNN may do in deterministic
 * mode, so that the packed fallback runs on the CPU too. */
void cuda_backend_emulate_refusals(void *ctx, bool on);

/* The device's PCI bus id (e.g. "0000:3B:00.0", what nvidia-smi -i takes); LR_ERR_NODEVICE when
 * emulated. */
lr_status cuda_backend_bus_id(void *ctx, char *buf, int cap);

/* Workspace bytes schedule `s` needs on this backend, into *bytes: the largest, over all
 * convolution RUN steps, of edge-staging buffers plus the workspace of the cuDNN algorithms chosen
 * for them (each at most CUDA_BACKEND_ALGO_WS_CAP), and in deterministic mode the packed form of
 * calls on unaligned views (cuda_conv.cu). Choosing algorithms needs a cuDNN handle: this
 * function creates a temporary context when a device exists (and takes the larger of the
 * deterministic and the default choice), and sizes staging alone (packed forms included) when
 * none does. 0 for schedules whose convolutions need no staging and no algorithm workspace.
 * Errors: the backend's (a descriptor cuDNN refuses, e.g. a tensor of more than 2^31 elements;
 * no algorithm within the cap; no usable device for the temporary context). */
lr_status cuda_backend_workspace_bytes(const net_t *net, const sched_t *s, int batch,
                                       int64_t *bytes);

/* The same with an existing context (its deterministic mode). */
lr_status cuda_backend_workspace_bytes_ctx(void *ctx, const net_t *net, const sched_t *s,
                                           int batch, int64_t *bytes);

/* Largest cuDNN algorithm workspace a single call may use (override: $LRCNN_CUDA_WS_CAP_MIB).
 * A cap keeps FFT-style algorithms that want gigabytes from dominating the planned peak. */
#define CUDA_BACKEND_ALGO_WS_CAP ((int64_t)64 << 20)

/* The libraries whose calls the backend checks. */
typedef enum { CUDA_LIB_RUNTIME, CUDA_LIB_CUDNN, CUDA_LIB_CUBLAS } cuda_lib;

/* Whether a failed call's status means out of memory: cudaErrorMemoryAllocation, cuDNN's host or
 * device allocation failures, CUBLAS_STATUS_ALLOC_FAILED. */
bool cuda_status_is_oom(cuda_lib lib, int code);

/* The status of a failed call `stmt` at file:line: out of memory is LR_ERR_NOMEM ("does not fit",
 * with the memory free on the device, or why that is unknown), anything else LR_ERR_RUNTIME with
 * the library's text. */
lr_status cuda_call_failed(cuda_lib lib, int code, const char *stmt, const char *file, int line);

/* ---- host helpers, exposed for tests (no device needed) */

/* One cuDNN call of a convolution over output rows [out_lo, out_hi]:
 *  staged = false: run on a view of input rows [in_lo, in_hi] with symmetric pad_h = pad; every
 *    padded row the call reads lies outside the image, so the view needs no copy;
 *  staged = true: virtual input rows [in_lo, in_hi] (reaching outside [0, H)) are copied into a
 *    zero-filled buffer of in_hi - in_lo + 1 rows and the call runs with pad_h = 0. */
typedef struct {
    int out_lo, out_hi;
    int in_lo, in_hi;
    int pad;
    bool staged;
} cuda_conv_piece;

/* Splits output rows [lo, hi] of a window op (vertical kernel kh, stride sh, padding ph,
 * dilation dh, input height h) into at most 3 pieces: one call on a view when its symmetric
 * padding is exact (interior stripes: pad 0; whole maps: the layer's pad; top stripes whose pad
 * is below the stride), else a staged top edge, an interior view and a staged bottom edge, each
 * staged piece covering only the output rows that read padding. Returns the number of pieces. */
int cuda_conv_pieces(int h, int kh, int sh, int ph, int dh, int lo, int hi, cuda_conv_piece out[3]);

/* Element strides (N, C, H, W) of a view of a tensor that holds `rows` rows of a (N, C, H, W) map:
 * C*rows*W, rows*W, W, 1 (cudnnSetTensor4dDescriptorEx). */
void cuda_view_strides(int c, int rows, int w, int64_t strides[4]);

/* Staging bytes a convolution RUN step needs (the largest over its pieces), without algorithm
 * workspace; 0 for steps that are not convolutions. */
int64_t cuda_conv_staging_bytes(const net_t *net, const sched_t *s, const sched_step *step,
                                int batch);

#ifdef __cplusplus
}
#endif
#endif
