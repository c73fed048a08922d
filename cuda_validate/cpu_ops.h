/* cpu_ops.h - forward and backward kernels of every op, in C (OpenMP, a BLAS), on ROW RANGES.
 *
 * Legend: N batch, C channels, H/W full height/width of a map, R rows held by a view.
 *
 * A feature map lives in memory as a stripe: rows [row0, row0 + rows) of a (N, C, H, W) map,
 * stored contiguously as (N, C, rows, W). A full map is the stripe row0 = 0, rows = H.
 * Kernels compute OUTPUT rows [r_lo, r_hi] (inclusive, full-map coordinates) and read whatever
 * input rows those need; rows outside [0, H) are zero padding. Every row a kernel touches must
 * lie inside the view it reads or writes (checked with LR_ASSERT).
 *
 * Backward kernels ACCUMULATE (+=) into input gradients and weight gradients; a NULL gradient
 * pointer means "not wanted". Computing rows [a, b] and then [b+1, c] gives the same bits as
 * computing [a, c] in one call for every forward kernel (each output element is computed by the
 * same expression in the same order), so a row schedule reproduces column training.
 *
 * Two properties hold by construction and are pinned by tests/test_cpu_ops.c:
 *  - Thread-count independence: every output or gradient element is written by exactly one
 *    thread (work is split over (n, channel) planes, over channels for reductions over the
 *    batch, or into GEMM units whose shapes depend on the layer only), and that thread adds its
 *    terms in a fixed order.
 *  - Row-split exactness of forward kernels: each output element is computed by an expression
 *    that depends only on its position (which taps fall inside the map; for the convolution, its
 *    place in a GEMM unit of fixed shape), never on the row range of the call, so [a, b] then
 *    [b+1, c] gives the bits of [a, c].
 *
 * One file per op family: cpu_conv.c, cpu_pool.c (window and whole-map pooling), cpu_bn.c,
 * cpu_eltwise.c (relu, dropout), cpu_combine.c (add, concat, upsample, row copies), cpu_fc.c,
 * cpu_loss.c, cpu_optim.c; cpu_kernel.h holds what they share (checks, geometry), cpu_blas.c
 * the GEMM.
 *
 * Deliberately not here: memory allocation (every buffer, scratch included, is given),
 * scheduling, BatchNorm statistics policy (the caller decides over which rows statistics are
 * gathered).
 */
#ifndef LR_CPU_OPS_H
#define LR_CPU_OPS_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    float *data; /* (N, C, rows, W) */
    int n, c, h, w;
    int row0, rows;
} cpu_view;

/* Pointer to element (n, c, r, x) of a view; r in full-map coordinates. */
static inline float *cpu_at(const cpu_view *v, int n, int c, int r, int x)
{
    return v->data + (((int64_t)n * v->c + c) * v->rows + (r - v->row0)) * v->w + x;
}

typedef struct {
    int kh, kw, sh, sw, ph, pw, dh, dw;
    int groups;
} cpu_window; /* conv and pooling geometry */

/* Whether the OpenMP threads spin while they wait (lrcnn-validate's choice, waiting.h): then a
 * parallel region is cheap and smaller kernels take threads (cpu_kernel.h). The results are the
 * same bits either way. Default: false. */
void cpu_set_spinning(bool spinning);

/* The GEMM the kernels call, e.g. "OpenBLAS 0.3.21, Zen kernels", or "plain loops" without a
 * BLAS. OpenBLAS picks its kernels by CPU model when it loads, and other kernels round their sums
 * differently: the same build can give other bits on a CPU that gets other kernels. */
void cpu_gemm_describe(char *buf, size_t size);

/* Scratch memory a kernel may use: `floats` floats at `data` (the schedule's workspace tensor). */
typedef struct {
    float *data;
    int64_t floats;
} cpu_scratch;

/* ---- convolution (im2col + GEMM; small layers direct). w: (Cout, Cin/groups, kh, kw), b: (Cout)
 * or NULL. Scratch floats the convolution of n images of (cin, h, w) into cout channels needs to
 * run on `threads` threads, forward or backward; with less, the kernels use as many threads as it
 * has room for (at least one thread's worth is required: asserted). */
int64_t cpu_conv_scratch_floats(const cpu_window *g, int n, int cin, int h, int w, int cout,
                                int threads);
/* Whether small convolutions may run direct (cpu_conv_direct.c; the default) or every one runs
 * through im2col + GEMM: for benchmarks and tests that compare the two. The scratch size above
 * covers both either way. Set it between calls, not during one. */
void cpu_conv_set_direct(bool allowed);
void cpu_conv_fwd(const cpu_window *g, const cpu_view *x, const float *w, const float *b,
                  cpu_view *y, int r_lo, int r_hi, const cpu_scratch *ws);
/* Back-propagates output rows [r_lo, r_hi] of dy: dx (rows they read) += ..., dw += ..., db += ... */
void cpu_conv_bwd(const cpu_window *g, const cpu_view *x, const float *w, const cpu_view *dy,
                  int r_lo, int r_hi, cpu_view *dx, float *dw, float *db, const cpu_scratch *ws);
/* Output rows [r_lo, r_hi] whose taps all fall in the padding (a row padding past the kernel's
 * reach, as PyTorch allows), so that a row schedule holds no input rows for them: y = b, or 0
 * without a bias, what im2col's zeros give; their backward adds to db alone (NULL: none). */
void cpu_conv_fwd_padding(const float *b, cpu_view *y, int r_lo, int r_hi);
void cpu_conv_bwd_padding(const cpu_view *dy, int r_lo, int r_hi, float *db);

/* ---- elementwise. y may alias x (in place). */
void cpu_relu_fwd(const cpu_view *x, cpu_view *y, int r_lo, int r_hi);
/* dx += dy * (y > 0); y is the relu OUTPUT. dx may alias dy only if it was zero before. */
void cpu_relu_bwd(const cpu_view *y, const cpu_view *dy, int r_lo, int r_hi, cpu_view *dx);

/* ---- pooling (PyTorch semantics: floor mode; avgpool counts padding, count_include_pad=True;
 * maxpool padding is -inf; the first maximum in scan order wins). */
void cpu_maxpool_fwd(const cpu_window *g, const cpu_view *x, cpu_view *y, int r_lo, int r_hi);
/* Recomputes the argmax from x, so nothing but the input is saved. */
void cpu_maxpool_bwd(const cpu_window *g, const cpu_view *x, const cpu_view *dy, int r_lo,
                     int r_hi, cpu_view *dx);
void cpu_avgpool_fwd(const cpu_window *g, const cpu_view *x, cpu_view *y, int r_lo, int r_hi);
void cpu_avgpool_bwd(const cpu_window *g, const cpu_view *dy, int r_lo, int r_hi, cpu_view *dx);

/* ---- pooling to a fixed size, on INPUT rows [in_lo, in_hi] (a whole map: 0, H - 1). Adaptive
 * pooling uses PyTorch's bins: start = floor(i * H / out), end = ceil((i + 1) * H / out); y is
 * the whole output (N, C, oh, ow). Forward adds the rows into the bins they meet: a bin whose
 * first row is among them is started, one whose last row is among them is divided by its size;
 * between stripes y holds partial sums. Stripes given in row order add each element in the same
 * order as one call over the whole map, so the result has the same bits. Backward accumulates
 * into dx's rows [in_lo, in_hi] the shares of every bin they lie in. */
void cpu_adaptive_avgpool_fwd(const cpu_view *x, cpu_view *y, int in_lo, int in_hi);
void cpu_adaptive_avgpool_bwd(const cpu_view *dy, cpu_view *dx, int in_lo, int in_hi);
/* y: (N, C, 1, 1) */
void cpu_global_avgpool_fwd(const cpu_view *x, cpu_view *y, int in_lo, int in_hi);
void cpu_global_avgpool_bwd(const cpu_view *dy, cpu_view *dx, int in_lo, int in_hi);

/* ---- batch normalisation, split so that the caller chooses the statistics rows.
 * acc: (2, C) doubles. stats: (2, C) floats = mean, invstd. */
void cpu_bn_accumulate(const cpu_view *x, int r_lo, int r_hi, double *acc /* sum, sum of squares */);
/* count = elements per channel gathered (N * rows * W). Biased variance, as training uses. */
void cpu_bn_finalize(const double *acc, int c, int64_t count, double eps, float *stats);
/* y = gamma * (x - mean) * invstd + beta; y may alias x. gb: (2, C) = gamma, beta. */
void cpu_bn_fwd(const cpu_view *x, const float *stats, const float *gb, cpu_view *y, int r_lo,
                int r_hi);
/* gacc: (2, C) doubles += (sum dy, sum dy * xhat) over rows [r_lo, r_hi]. */
void cpu_bn_grad_accumulate(const cpu_view *x, const float *stats, const cpu_view *dy, int r_lo,
                            int r_hi, double *gacc);
/* dgb += (sum dy * xhat, sum dy) from gacc = (sum dy, sum dy * xhat) that cpu_bn_grad_accumulate
 * took over the same rows starting from zero: the bits cpu_bn_bwd's own sums would give. */
void cpu_bn_params_from_sums(const double *gacc, int c, float *dgb);
/* Back-propagates rows [r_lo, r_hi] given the statistics reductions gacc = (sum dy, sum dy*xhat)
 * taken over all `count` elements the statistics were gathered from:
 *   dx += gamma*invstd*dy                                   when with_direct
 *   dx -= gamma*invstd*(gacc[0]/count + xhat*gacc[1]/count) when with_reduction
 *   dgb += (sum dy*xhat, sum dy) over the rows              when with_direct and dgb != NULL
 * Column and tiled row schedules pass both flags over the same rows. Overlapping partitions,
 * whose dy is only a partial sum, pass with_direct over the rows they back-propagate and
 * with_reduction over the rows they own, so that each row gets the reduction term once. */
void cpu_bn_bwd(const cpu_view *x, const float *stats, const float *gb, const cpu_view *dy,
                int r_lo, int r_hi, const double *gacc, int64_t count, bool with_reduction,
                bool with_direct, cpu_view *dx, float *dgb);
/* running = (1 - momentum) * running + momentum * batch, from the sums cpu_bn_accumulate()
 * gathered over `count` elements (unbiased variance: var * count / (count - 1)).
 * running: (2, C) = mean, var. */
void cpu_bn_update_running(const double *acc, int c, int64_t count, double momentum,
                           float *running);

/* Frozen BatchNorm (--bn frozen; eval-mode BN inside training): the running statistics
 * running = (2, C) mean, var are a fixed per-channel map with invstd = 1 / sqrt(var + eps)
 * (double, rounded to float); nothing is gathered, so any split of the rows gives the same bits.
 *   y = (x - mean) * gamma * invstd + beta over rows [r_lo, r_hi]; y may alias x. */
void cpu_bn_frozen_fwd(const cpu_view *x, const float *running, double eps, const float *gb,
                       cpu_view *y, int r_lo, int r_hi);
/* dx += gamma * invstd * dy, and dgb += (sum dy * xhat, sum dy) over the rows (summed in double
 * per call); dx or dgb NULL: not wanted. */
void cpu_bn_frozen_bwd(const cpu_view *x, const float *running, double eps, const float *gb,
                       const cpu_view *dy, int r_lo, int r_hi, cpu_view *dx, float *dgb);

/* ---- combining. */
void cpu_add_fwd(const cpu_view *a, const cpu_view *b, cpu_view *y, int r_lo, int r_hi);
/* dx += dy over rows; used once per input of the add. */
void cpu_accumulate_rows(const cpu_view *dy, int r_lo, int r_hi, cpu_view *dx);
/* Copies x's channels into y's channels [c_off, c_off + x->c). */
void cpu_concat_fwd(const cpu_view *x, int c_off, cpu_view *y, int r_lo, int r_hi);
/* dx += dy's channels [c_off, c_off + dx->c). */
void cpu_concat_bwd(const cpu_view *dy, int c_off, int r_lo, int r_hi, cpu_view *dx);
/* Nearest neighbour: output row r reads input row r / scale (same for columns). */
void cpu_upsample_fwd(int scale, const cpu_view *x, cpu_view *y, int r_lo, int r_hi);
void cpu_upsample_bwd(int scale, const cpu_view *dy, int r_lo, int r_hi, cpu_view *dx);

/* ---- dropout: the keep mask is a pure function of (seed, index of the element in the full
 * (N, C, H, W) map), so stripes, recomputation and backward regenerate it without storing it.
 * Kept elements are scaled by 1 / (1 - p). */
bool cpu_dropout_keep(uint64_t seed, int64_t index, double p);
void cpu_dropout_fwd(uint64_t seed, double p, const cpu_view *x, cpu_view *y, int r_lo, int r_hi);
void cpu_dropout_bwd(uint64_t seed, double p, const cpu_view *dy, int r_lo, int r_hi, cpu_view *dx);

/* ---- fully connected on flattened inputs: x (N, in), w (out, in), b (out) or NULL, y (N, out). */
void cpu_fc_fwd(const float *x, const float *w, const float *b, float *y, int n, int in, int out);
void cpu_fc_bwd(const float *x, const float *w, const float *dy, int n, int in, int out, float *dx,
                float *dw, float *db);

/* ---- loss: mean softmax cross-entropy over the batch. logits (N, K), labels (N) in [0, K). */
float cpu_softmax_xent_fwd(const float *logits, const int32_t *labels, int n, int k);
/* dlogits += (softmax - onehot) / N */
void cpu_softmax_xent_bwd(const float *logits, const int32_t *labels, int n, int k, float *dlogits);

/* ---- optimisers, PyTorch semantics (torch.optim.SGD with momentum and dampening 0,
 * torch.optim.Adam). state: momentum (n) or Adam (2n: m then v). step counts from 1.
 * Every update also zeroes the gradient for the next step. */
void cpu_sgd_update(float *w, float *g, int64_t n, float lr, float weight_decay);
void cpu_momentum_update(float *w, float *g, float *state, int64_t n, float lr, float momentum,
                         float weight_decay);
void cpu_adam_update(float *w, float *g, float *state, int64_t n, float lr, float beta1,
                     float beta2, float eps, float weight_decay, int step);

/* ---- row copies between views of the same map: dst rows [r_lo, r_hi] = (or +=) src rows. */
void cpu_copy_rows(const cpu_view *src, cpu_view *dst, int r_lo, int r_hi, bool accumulate);

#ifdef __cplusplus
}
#endif
#endif
