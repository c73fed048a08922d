/* cuda_algo.cu - choosing cuDNN convolution algorithms, and running one cuDNN call.
 *
 * Algorithms come from cuDNN's heuristics (cudnnGet*Algorithm_v7; no trial runs: they would
 * overwrite the gradients we accumulate into and need memory off the books), run with FMA math
 * (true fp32, no TF32 tensor cores), with a workspace of at most min(CUDA_BACKEND_ALGO_WS_CAP,
 * workspace - staging); the first in cuDNN's order wins. Deterministic mode tries PyTorch's
 * deterministic defaults first (implicit precomputed GEMM, backward data/filter ALGO_1) and
 * otherwise takes only algorithms cuDNN reports deterministic. The choice is cached per geometry
 * (dims, strides, window, direction, limit). The same rule sizes the workspace in
 * cuda_backend_workspace_bytes() (cuda_conv.cu), so a schedule planned with that size runs the
 * algorithms it was sized for.
 *
 * Deliberately not here: which rows a call covers (cuda_conv.cu, cuda_pieces.cu).
 */
#include <stdlib.h>

#include "cuda_private.h"

/* ------------------------------------------------------------------ the cache */

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

lr_status cuda_algo_cache_grow(cuda_ctx *c)
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

/* ------------------------------------------------------------------ descriptors and candidates */

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
lr_status cuda_conv_algo(cuda_ctx *c, const conv_key *k, algo_entry **out)
{
    LR_TRY(set_descs(c, k));
    if (c->cache_n * 2 >= c->cache_cap)
        LR_TRY(cuda_algo_cache_grow(c));
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

/* ------------------------------------------------------------------ running a call */

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
    return cuda_sample_memory(c);
}

/* True when p is not 16-byte aligned (NULL is aligned: an operand the call does not have). */
static bool unaligned(const void *p)
{
    return ((uintptr_t)p & 15u) != 0;
}

/* Every algorithm turned down: remembered in the entry, said in the message, not an error yet
 * (the caller may run the call packed). */
static lr_status all_refused(algo_entry *e, int dir, const char *last, bool *refused)
{
    e->refused = true;
    *refused = true;
    (void)lr_fail(LR_ERR_RUNTIME, "cuDNN turned down every %s algorithm (last: %s)",
                  dnn_call_name(dir), last);
    return LR_OK;
}

/* Runs a call (or its emulation). An algorithm cuDNN turns down at execution although the
 * workspace query accepted it (a view's alignment, say) is replaced in the cache by the next
 * usable one, so the step still runs and later calls skip the refusal. The emulation turns down
 * calls on unaligned operands when asked to (cuda_backend_emulate_refusals). */
lr_status cuda_dnn_run(cuda_ctx *c, const conv_key *k, algo_entry *e, const dnn_args *a,
                       bool *refused)
{
    *refused = false;
    if (e->refused)
        return all_refused(e, a->dir, "remembered for this geometry", refused);
    if (c->host) {
        if (c->refuse_unaligned && (unaligned(a->x) || unaligned(a->dy) || unaligned(a->out)))
            return all_refused(e, a->dir, "emulated refusal of an unaligned operand", refused);
        if (a->dir == DIR_FWD)
            cuda_emulated_conv_fwd(k, a->x, a->w, a->out, a->beta);
        else if (a->dir == DIR_BWD_DATA)
            cuda_emulated_conv_bwd_data(k, a->w, a->dy, a->out, a->beta);
        else
            cuda_emulated_conv_bwd_filter(k, a->x, a->dy, a->out, a->beta);
        return LR_OK;
    }
    cudnnStatus_t s;
    while ((s = dnn_call(c, e, a)) != CUDNN_STATUS_SUCCESS) {
        if (!turned_down(s))
            return cuda_call_failed(CUDA_LIB_CUDNN, (int)s, dnn_call_name(a->dir), __FILE__,
                                    __LINE__);
        e->tried |= 1u << e->algo;
        if (choose_algo(c, k, e) != LR_OK)
            return all_refused(e, a->dir, cudnnGetErrorString(s), refused);
    }
    return after_call(c, e);
}
