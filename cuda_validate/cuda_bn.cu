/* cuda_bn.cu - BatchNorm and the deterministic per-channel reductions (BN statistics and
 * gradient terms, convolution bias gradients).
 *
 * Own kernels, not cuDNN: the split statistics of exec.h (stripe/global statistics, STATS_ACC
 * sums in double, FINALIZE, PARTIAL reduction terms, GSTATS_ACC; frozen running statistics) have
 * no cuDNN equivalent. Channel
 * reductions sum fixed slices of a channel with a fixed tree in double, then the slices in order:
 * deterministic. The reductions' scratch (2 MiB of partial sums) is made with the context.
 *
 * Deliberately not here: which rows a step gathers statistics over (the planner decides).
 */
#include "cuda_private.h"

/* ------------------------------------------------------------------ kernels */

/* Per-channel sums over rows [lo, lo + R) of every image:
 *   RED_X_XX: sum x, sum x^2;  RED_DY_DYXHAT: sum dy, sum dy * xhat;  RED_DY: sum dy. */
struct red_terms {
    int kind;
    dview x, dy;
    bn_norm norm; /* RED_DY_DYXHAT */
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
            *s1 += (double)g * ((x.p[dv_idx(x, n, c, r, xx)] - norm.mean(v.c, c)) * norm.invstd(v.c, c));
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

/* y = (x - mean) * (gamma * invstd) + beta */
struct k_bn_fwd {
    dview x, y;
    bn_norm norm;
    const float *gb;
    int lo, R;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, x.c, R, x.w, lo);
        int C = x.c;
        float mean = norm.mean(C, p.c), invstd = norm.invstd(C, p.c);
        float scale = gb[p.c] * invstd;
        y.p[dv_idx(y, p.n, p.c, p.r, p.x)] =
            (x.p[dv_idx(x, p.n, p.c, p.r, p.x)] - mean) * scale + gb[C + p.c];
    }
};

/* cpu_bn_bwd's dx part: dx += gamma*invstd*(dy [direct] - mean(dy) - xhat*mean(dy*xhat) [reduction]). */
struct k_bn_bwd_dx {
    dview x, dy, dx;
    bn_norm norm;
    const float *gb;
    const double *gacc;
    double count;
    bool with_reduction, with_direct;
    int lo, R;
    __host__ __device__ void operator()(int64_t i) const
    {
        dpos p = pos_of(i, x.c, R, x.w, lo);
        int C = x.c;
        float mean = norm.mean(C, p.c), invstd = norm.invstd(C, p.c), k = gb[p.c] * invstd;
        float t = with_direct ? dy.p[dv_idx(dy, p.n, p.c, p.r, p.x)] : 0.0f;
        if (with_reduction) {
            float mean_dy = (float)(gacc[p.c] / count), mean_dyx = (float)(gacc[C + p.c] / count);
            t -= mean_dy + (x.p[dv_idx(x, p.n, p.c, p.r, p.x)] - mean) * invstd * mean_dyx;
        }
        dx.p[dv_idx(dx, p.n, p.c, p.r, p.x)] += k * t;
    }
};

/* ------------------------------------------------------------------ launchers */

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

lr_status cuda_channel_reduce(cuda_ctx *c, int kind, dview x, dview dy, bn_norm norm,
                              int lo, int hi, red_out o)
{
    if (lo > hi)
        return LR_OK;
    const dview &v = kind == RED_X_XX ? x : dy;
    check_rows(v, lo, hi);
    if (kind == RED_DY_DYXHAT) {
        LR_ASSERT(same_map(x, dy) && (norm.stats || norm.running));
        check_rows(x, lo, hi);
    }
    red_terms t = {kind, x, dy, norm, lo, hi - lo + 1};
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

static bn_norm batch_norm_of(const float *stats)
{
    return bn_norm{stats, NULL, 0.0};
}

static bn_norm running_norm_of(const float *running, double eps)
{
    return bn_norm{NULL, running, eps};
}

static lr_status launch_bn_fwd(cuda_ctx *c, dview x, bn_norm norm, const float *gb, dview y,
                               int lo, int hi)
{
    if (lo > hi)
        return LR_OK;
    LR_ASSERT(same_map(x, y) && (norm.stats || norm.running) && gb);
    check_rows(x, lo, hi);
    check_rows(y, lo, hi);
    k_bn_fwd op = {x, y, norm, gb, lo, hi - lo + 1};
    return run_each(c, op, rows_total(x, x.c, hi - lo + 1));
}

static lr_status launch_bn_bwd_dx(cuda_ctx *c, dview x, bn_norm norm, const float *gb,
                                  dview dy, const double *gacc, int64_t count, bool with_reduction,
                                  bool with_direct, dview dx, int lo, int hi)
{
    if (lo > hi)
        return LR_OK;
    LR_ASSERT(same_map(x, dx) && (!with_reduction || (count >= 1 && gacc)));
    check_rows(x, lo, hi);
    check_rows(dx, lo, hi);
    if (with_direct) {
        LR_ASSERT(same_map(x, dy));
        check_rows(dy, lo, hi);
    }
    k_bn_bwd_dx op = {x, dy, dx, norm, gb, gacc, (double)count, with_reduction, with_direct,
                    lo, hi - lo + 1};
    return run_each(c, op, rows_total(x, x.c, hi - lo + 1));
}

/* ------------------------------------------------------------------ adapters */

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
    return cuda_channel_reduce(c, RED_X_XX, x, x, bn_norm{}, lo, hi, o);
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
        return launch_bn_fwd(c, x, running_norm_of(fptr(op, r->running), n->prm.eps),
                             fptr(op, r->param), view_of(op, r->out), 0, n->h - 1);
    if (st->flags & RUN_BN_FROZEN)
        return launch_bn_fwd(c, x, running_norm_of(fptr(op, r->running), n->prm.eps),
                             fptr(op, r->param), view_of(op, r->out), st->row_lo, st->row_hi);
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
    return launch_bn_fwd(c, x, batch_norm_of(fptr(op, r->aux)), fptr(op, r->param),
                         view_of(op, r->out), lo, hi);
}

/* The map a BN step normalises with: the running statistics when frozen, else its aux. */
static bn_norm norm_of(const exec_op *op)
{
    if (op->step->flags & RUN_BN_FROZEN)
        return running_norm_of(fptr(op, op->run->running), node_of(op)->prm.eps);
    return batch_norm_of(fptr(op, op->run->aux));
}

/* cpu_bn_bwd over rows [lo, hi]: dgb (with_direct) then dx; frozen: cpu_bn_frozen_bwd (direct
 * only, no reduction terms). */
static lr_status bn_bwd(cuda_ctx *c, const exec_op *op, int lo, int hi, int64_t count,
                        bool with_reduction, bool with_direct, float *dgb)
{
    const sched_run *r = op->run;
    int C = node_of(op)->c;
    dview x = view_of(op, r->in[0]), dy = view_of(op, r->dout);
    if (with_direct && dgb) {
        red_out o = {NULL, NULL, dgb + C, dgb}; /* (sum dy*xhat, sum dy) -> (dgamma, dbeta) */
        LR_TRY(cuda_channel_reduce(c, RED_DY_DYXHAT, x, dy, norm_of(op), lo, hi, o));
    }
    if (r->din[0] < 0)
        return LR_OK;
    const double *gacc = r->gred >= 0 ? (const double *)op->ptr[r->gred] : NULL;
    return launch_bn_bwd_dx(c, x, norm_of(op), fptr(op, r->param), dy, gacc, count,
                            with_reduction, with_direct, view_of(op, r->din[0]), lo, hi);
}

static lr_status bn_backward(cuda_ctx *c, const exec_op *op)
{
    const net_node *n = node_of(op);
    const sched_run *r = op->run;
    const sched_step *st = op->step;
    int lo = st->row_lo, hi = st->row_hi;
    dview x = view_of(op, r->in[0]), dy = view_of(op, r->dout);
    if (st->flags & RUN_BN_FROZEN)
        return bn_bwd(c, op, lo, hi, 0, false, true, fptr(op, r->param_grad));
    double *gacc = (double *)op->ptr[r->gred];
    red_out acc = {gacc, gacc + n->c, NULL, NULL};
    bn_norm norm = norm_of(op);
    if (st->flags & RUN_GSTATS_ACC)
        return cuda_channel_reduce(c, RED_DY_DYXHAT, x, dy, norm, lo, hi, acc);
    int64_t count = stat_count(op, n->h);
    if (!(st->flags & RUN_BN_GLOBAL)) {
        count = stat_count(op, hi - lo + 1);
        LR_TRY(cuda_channel_reduce(c, RED_DY_DYXHAT, x, dy, norm, lo, hi, acc));
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

lr_status cuda_run_bn(cuda_ctx *c, const exec_op *op)
{
    return backward(op) ? bn_backward(c, op) : bn_forward(c, op);
}
