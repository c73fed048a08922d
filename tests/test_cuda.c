/* test_cuda.c - the CUDA backend. Without a device: edge-staging geometry, workspace sizing, the
 * no-device error, and the emulated backend (cuda_backend_create_emulated: this backend's glue,
 * kernels as host loops, reference loops for cuDNN/cuBLAS) against the CPU reference on every
 * strategy and tiny net. On a GPU: the same comparison on the device, row strategies against
 * column training on the device, and the counted peak against the prediction.
 *
 * Without a GPU (or without nvcc at build time) every device test skips with the reason;
 * LRCNN_TEST_DEVICE_ONLY=1 skips the emulated ones (bench/gpu.sh, to save GPU time).
 * Tolerances: emulated vs CPU 1e-5 and CUDA vs CPU 1e-4 relative (other summation orders than
 * the CPU's direct convolution; cuDNN's GEMMs more so); row vs column on the device 1e-5
 * (deterministic algorithms, fp32, FMA math).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "exec.h"
#include "sim.h"
#include "choose.h"
#include "validate.h"

#ifdef LRCNN_HAVE_CUDA
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "cuda_backend.h"
#endif

/* ------------------------------------------------------------------ no device */

/* Asking for the cuda backend where there is none (no GPU, or a build without nvcc) is
 * LR_ERR_NODEVICE with a message that says so; with a GPU the backend opens and closes. */
static void test_cuda_backend_without_device_is_nodevice(void **state)
{
    const exec_backend *be = NULL;
    void *ctx = NULL;
    lr_status s = validate_backend("cuda", false, &be, &ctx);
    if (s == LR_OK) {
        assert_non_null(be);
        assert_string_equal(be->name, "cuda");
        validate_backend_release("cuda", ctx);
        print_message("a CUDA device is present: the no-device path cannot be exercised here\n");
        skip();
    }
    assert_int_equal(s, LR_ERR_NODEVICE);
    const char *msg = lr_last_error();
    print_message("%s\n", msg);
    assert_non_null(strstr(msg, "--backend cuda"));
#ifdef LRCNN_HAVE_CUDA
    assert_non_null(strstr(msg, "no CUDA device"));
#else
    assert_non_null(strstr(msg, "built without CUDA"));
#endif
    assert_int_equal(lr_exit_code(s), 1);
}

#ifdef LRCNN_HAVE_CUDA

/* ------------------------------------------------------------------ geometry (host) */

static int out_rows(int in, int k, int s, int p, int d)
{
    int span = in + 2 * p - d * (k - 1) - 1;
    return span < 0 ? 0 : span / s + 1;
}

/* Every tap of every output row of a piece reads what the convolution of the whole map reads:
 * the same real row, or zero padding exactly where the map has none. */
static void check_piece(int h, int kh, int sh, int ph, int dh, const cuda_conv_piece *p)
{
    int rows = p->out_hi - p->out_lo + 1, in = p->in_hi - p->in_lo + 1;
    assert_true(rows >= 1);
    if (p->staged) {
        assert_int_equal(p->pad, 0);
        assert_int_equal(p->in_lo, p->out_lo * sh - ph);
        assert_int_equal(p->in_hi, p->out_hi * sh - ph + dh * (kh - 1));
    } else {
        assert_true(p->in_lo >= 0 && p->in_hi <= h - 1 && p->in_lo <= p->in_hi);
    }
    /* cuDNN's output count for the call equals the piece's rows */
    assert_int_equal(out_rows(in, kh, sh, p->pad, dh), rows);
    for (int r = p->out_lo; r <= p->out_hi; r++)
        for (int ky = 0; ky < kh; ky++) {
            int want = r * sh - ph + ky * dh;                          /* full-map row */
            int got = p->in_lo - p->pad + (r - p->out_lo) * sh + ky * dh; /* the call's row */
            assert_int_equal(got, want);
            bool in_call = got >= p->in_lo && got <= p->in_hi;
            bool in_map = want >= 0 && want < h;
            if (p->staged)
                assert_true(in_call); /* staged rows outside the map are zero-filled */
            else
                assert_int_equal(in_call, in_map);
        }
}

/* Output rows that read padding (a staged piece must hold only such rows when the range is
 * split: staging is kept to the edge windows). */
static bool reads_padding(int h, int kh, int sh, int ph, int dh, int r)
{
    return r * sh - ph < 0 || r * sh - ph + dh * (kh - 1) > h - 1;
}

/* For every small geometry and every output range, the pieces tile the range in order and each
 * reads exactly what the whole-map convolution reads; split ranges stage only edge rows. */
static void test_conv_pieces_tile_rows_and_pad_exactly(void **state)
{
    int checked = 0;
    for (int h = 1; h <= 12; h++)
        for (int kh = 1; kh <= 5; kh++)
            for (int sh = 1; sh <= 3; sh++)
                for (int dh = 1; dh <= 2; dh++)
                    for (int ph = 0; ph <= 4; ph++) {
                        int hout = out_rows(h, kh, sh, ph, dh);
                        for (int lo = 0; lo < hout; lo++)
                            for (int hi = lo; hi < hout; hi++) {
                                cuda_conv_piece pc[3];
                                int n = cuda_conv_pieces(h, kh, sh, ph, dh, lo, hi, pc);
                                assert_true(n >= 1 && n <= 3);
                                int next = lo;
                                for (int i = 0; i < n; i++) {
                                    assert_int_equal(pc[i].out_lo, next);
                                    next = pc[i].out_hi + 1;
                                    check_piece(h, kh, sh, ph, dh, &pc[i]);
                                    for (int r = pc[i].out_lo; n > 1 && pc[i].staged && r <= pc[i].out_hi; r++)
                                        assert_true(reads_padding(h, kh, sh, ph, dh, r));
                                }
                                assert_int_equal(next, hi + 1);
                                checked++;
                            }
                    }
    print_message("%d geometries and row ranges checked\n", checked);
}

/* The cases the file header names: a whole map is one call with the layer's pad; an interior
 * stripe one call with pad 0; VGG's top stripe stages one 3-row edge; a stride-2 top stripe with
 * pad 1 needs no staging; ResNet's 7x7/2 stem stages the first two output rows. */
static void test_conv_pieces_examples(void **state)
{
    cuda_conv_piece pc[3];
    assert_int_equal(cuda_conv_pieces(224, 3, 1, 1, 1, 0, 223, pc), 1);
    assert_false(pc[0].staged);
    assert_int_equal(pc[0].pad, 1);
    assert_int_equal(pc[0].in_lo, 0);
    assert_int_equal(pc[0].in_hi, 223);

    assert_int_equal(cuda_conv_pieces(224, 3, 1, 1, 1, 50, 99, pc), 1);
    assert_false(pc[0].staged);
    assert_int_equal(pc[0].pad, 0);
    assert_int_equal(pc[0].in_lo, 49);
    assert_int_equal(pc[0].in_hi, 100);

    assert_int_equal(cuda_conv_pieces(224, 3, 1, 1, 1, 0, 31, pc), 2);
    assert_true(pc[0].staged);
    assert_int_equal(pc[0].out_hi, 0);
    assert_int_equal(pc[0].in_lo, -1);
    assert_int_equal(pc[0].in_hi, 1);
    assert_false(pc[1].staged);
    assert_int_equal(pc[1].in_lo, 0);
    assert_int_equal(pc[1].in_hi, 32);

    assert_int_equal(cuda_conv_pieces(224, 3, 1, 1, 1, 192, 223, pc), 2);
    assert_false(pc[0].staged);
    assert_true(pc[1].staged);
    assert_int_equal(pc[1].out_lo, 223);
    assert_int_equal(pc[1].in_hi, 224);

    assert_int_equal(cuda_conv_pieces(56, 3, 2, 1, 1, 0, 13, pc), 1);
    assert_false(pc[0].staged);
    assert_int_equal(pc[0].pad, 1);

    assert_int_equal(cuda_conv_pieces(224, 7, 2, 3, 1, 0, 55, pc), 2);
    assert_true(pc[0].staged);
    assert_int_equal(pc[0].out_hi, 1);
    assert_int_equal(pc[0].in_hi - pc[0].in_lo + 1, 9);
}

/* A view of a tensor holding `rows` rows strides by the rows it holds, not by the map's H. */
static void test_view_strides_follow_the_rows_held(void **state)
{
    int64_t s[4];
    cuda_view_strides(3, 5, 7, s);
    assert_int_equal(s[0], 105);
    assert_int_equal(s[1], 35);
    assert_int_equal(s[2], 7);
    assert_int_equal(s[3], 1);
}

/* ------------------------------------------------------------------ workspace sizing (host) */

typedef struct {
    net_t *net;
    plan_t *plan;
    sched_t s;
    plan_cost cost;
} plan_run;

/* --offload for the plans plan_open makes (the offload tests set it and put it back). */
static unsigned plan_offload;

static void plan_open(plan_run *p, const char *netname, int h, int batch, plan_strategy st,
                      int rows, plan_optim optim, plan_bn bn, int64_t workspace)
{
    memset(p, 0, sizeof *p);
    assert_int_equal(net_open(netname, &p->net), LR_OK);
    if (h)
        assert_int_equal(net_reshape(p->net, h, h), LR_OK);
    plan_config cfg = {.batch = batch, .dtype = DT_FP32, .optim = optim, .bn = bn,
                       .workspace_bytes = workspace, .offload = plan_offload};
    plan_request req = {.strategy = st, .rows = rows};
    plan_choice c;
    assert_int_equal(strategy_choose(p->net, &cfg, &req, &c), LR_OK);
    p->cost = c.cost;
    assert_int_equal(plan_build(p->net, &cfg, &c.spec, &p->plan), LR_OK);
    sched_init(&p->s);
    plan_emit(p->plan, &p->s);
    assert_int_equal(sched_validate(&p->s), LR_OK);
}

static void plan_close(plan_run *p)
{
    sched_free(&p->s);
    plan_free(p->plan);
    net_free(p->net);
}

static int64_t largest_staging(const plan_run *p, int batch)
{
    int64_t most = 0;
    for (int i = 0; i < p->s.n_steps; i++) {
        int64_t b = cuda_conv_staging_bytes(p->net, &p->s, &p->s.steps[i], batch);
        most = b > most ? b : most;
    }
    return most;
}

static int64_t align256(int64_t b)
{
    return (b + 255) / 256 * 256;
}

/* tiny-vgg's convolutions are 3x3/1 pad 1: a row plan stages one 3-row edge per stripe, so the
 * largest staging is 3 rows of the widest conv input (B*Cin*3*W floats, 256-aligned); column
 * plans convolve whole maps with cuDNN's symmetric padding and stage nothing. */
static void test_workspace_staging_tiny_vgg(void **state)
{
    const int batch = 4;
    int64_t want = 0;
    plan_run col, row;
    plan_open(&col, "tiny-vgg", 0, batch, STRAT_COLUMN, 0, OPTIM_MOMENTUM, BN_EXACT, 0);
    for (int l = 1; l < col.net->n_nodes; l++) {
        const net_node *n = &col.net->nodes[l];
        if (n->op != OP_CONV)
            continue;
        const net_node *x = &col.net->nodes[n->inputs[0]];
        int64_t b = align256(4 * (int64_t)batch * x->c * 3 * x->w);
        want = b > want ? b : want;
    }
    assert_int_equal(largest_staging(&col, batch), 0);
    const plan_strategy strategies[] = {STRAT_ROW, STRAT_2PS, STRAT_OVERL};
    for (size_t k = 0; k < sizeof strategies / sizeof strategies[0]; k++) {
        plan_open(&row, "tiny-vgg", 0, batch, strategies[k], 3, OPTIM_MOMENTUM, BN_EXACT, 0);
        assert_int_equal(largest_staging(&row, batch), want);
        int64_t ws;
        assert_int_equal(cuda_backend_workspace_bytes(row.net, &row.s, batch, &ws), LR_OK);
        print_message("tiny-vgg %s rows 3: staging %lld bytes, workspace %lld bytes\n",
                      plan_strategy_name(strategies[k]), (long long)want, (long long)ws);
        assert_true(ws >= want);
        plan_close(&row);
    }
    int64_t ws;
    assert_int_equal(cuda_backend_workspace_bytes(col.net, &col.s, batch, &ws), LR_OK);
    assert_true(ws >= 0);
    plan_close(&col);
}

/* ResNet-50 at 224x224: column plans need no staging (every conv is one call on the whole map);
 * row plans do, and the stem's 7x7/2 conv stages at most 9 input rows of 3 channels. */
static void test_workspace_staging_resnet50(void **state)
{
    const int batch = 2;
    plan_run col, row;
    plan_open(&col, "resnet50", 0, batch, STRAT_COLUMN, 0, OPTIM_MOMENTUM, BN_EXACT, 0);
    assert_int_equal(largest_staging(&col, batch), 0);
    plan_close(&col);
    plan_open(&row, "resnet50", 0, batch, STRAT_2PS, 4, OPTIM_MOMENTUM, BN_EXACT, 0);
    int64_t staging = largest_staging(&row, batch);
    print_message("resnet50 2ps rows 4 batch 2: staging %lld bytes\n", (long long)staging);
    assert_true(staging > 0);
    /* an edge is a few rows, far below a stripe of the largest map (64 x 112 x 112 / 4) */
    assert_true(staging < 4 * (int64_t)batch * 64 * 28 * 112);
    for (int i = 0; i < row.s.n_steps; i++) {
        const sched_step *st = &row.s.steps[i];
        if (st->op == STEP_RUN && st->node == 1 && st->pass == PASS_FWD)
            assert_true(cuda_conv_staging_bytes(row.net, &row.s, st, batch) <=
                        align256(4 * (int64_t)batch * 3 * 9 * 224));
    }
    plan_close(&row);
}

/* ------------------------------------------------------------------ on the device */

typedef struct {
    plan_run p;
    exec_t *exec;
} dev_run;

typedef lr_status (*backend_open)(const exec_backend **be, void **ctx);

/* The device backend in deterministic mode (gradient checks), or the emulated one. */
static lr_status open_device(const exec_backend **be, void **ctx)
{
    return cuda_backend_create(true, be, ctx);
}

/* LRCNN_TEST_DEVICE_ONLY=1 (bench/gpu.sh) skips the emulated tests: they take CPU minutes that
 * a GPU run cannot spare, and any machine with nvcc runs them. */
static lr_status open_emulated(const exec_backend **be, void **ctx)
{
    const char *only = getenv("LRCNN_TEST_DEVICE_ONLY");
    if (only && strcmp(only, "1") == 0)
        return lr_fail(LR_ERR_NODEVICE, "LRCNN_TEST_DEVICE_ONLY=1: emulated backend not wanted");
    return cuda_backend_create_emulated(be, ctx);
}

/* A context, or a skip that says why there is none. */
static void backend_or_skip(backend_open open, const exec_backend **be, void **ctx)
{
    lr_status s = open(be, ctx);
    if (s == LR_ERR_NODEVICE) {
        print_message("skipped: %s\n", lr_last_error());
        skip();
    }
    assert_int_equal(s, LR_OK);
}

/* Plans, asks the backend how much workspace the schedule needs, plans again with it (the
 * driver's two-pass planning), and creates the executor. ctx NULL: the CPU backend. */
static void dev_open(dev_run *r, const char *netname, int h, int batch, plan_strategy st,
                     int rows, plan_optim optim, plan_bn bn, const exec_backend *be, void *ctx,
                     uint64_t seed)
{
    int64_t ws = 0;
    plan_open(&r->p, netname, h, batch, st, rows, optim, bn, 0);
    assert_int_equal(be->workspace_bytes(ctx, r->p.net, &r->p.s, batch, &ws), LR_OK);
    assert_true(ws >= 0);
    plan_close(&r->p);
    plan_open(&r->p, netname, h, batch, st, rows, optim, bn, ws);
    exec_hparams hp;
    exec_hparams_default(&hp);
    hp.seed = seed;
    /* Adam's first step moves a weight by lr * g / (|g| + eps): with the default eps 1e-8 a
     * gradient that is zero up to rounding moves by an arbitrary fraction of lr, so backends
     * that sum in different orders could not be compared */
    hp.eps = optim == OPTIM_ADAM ? 1e-3f : hp.eps;
    assert_int_equal(exec_create(r->p.net, r->p.plan, &r->p.s, be, ctx, &hp, &r->exec), LR_OK);
}

static void dev_close(dev_run *r)
{
    exec_free(r->exec);
    plan_close(&r->p);
}

static void fill_batch(const net_t *net, int batch, float *images, int32_t *labels)
{
    const net_node *in = &net->nodes[0];
    uint64_t s = 42;
    for (int64_t i = 0; i < (int64_t)batch * in->c * in->h * in->w; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        images[i] = (float)((double)(s >> 11) * 0x1.0p-53 * 2 - 1);
    }
    for (int i = 0; i < batch; i++)
        labels[i] = (i * 7 + 3) % 10;
}

static double rel_err(const float *a, const float *b, int64_t n)
{
    double d = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return m > 0 ? d / m : d;
}

enum { PARAMS, GRADS, RUNNING };

/* max |a - b| / max |b| over every parameter, gradient or BN running-statistics tensor. */
static double worst_error(exec_t *a, exec_t *b, const net_t *net, int what)
{
    double worst = 0;
    for (int l = 1; l < net->n_nodes; l++) {
        int64_t n = what == RUNNING ? 2 * (int64_t)net->nodes[l].c : net->nodes[l].params;
        if (!net->nodes[l].params || (what == RUNNING && net->nodes[l].op != OP_BATCHNORM))
            continue;
        float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n);
        lr_status (*get)(exec_t *, int, float *, int64_t) =
            what == PARAMS ? exec_get_param : what == GRADS ? exec_get_param_grad : exec_get_running;
        assert_int_equal(get(a, l, x, n), LR_OK);
        assert_int_equal(get(b, l, y, n), LR_OK);
        worst = fmax(worst, rel_err(x, y, n));
        free(x);
        free(y);
    }
    return worst;
}

static int argmax(const float *v, int k)
{
    int best = 0;
    for (int c = 1; c < k; c++)
        best = v[c] > v[best] ? c : best;
    return best;
}

/* The predicted classes agree, except where the reference's logits for the two classes are
 * within tol of each other (relative to the largest logit): a near-tie that another summation
 * order may flip (cuDNN's GEMMs, nvcc's fused multiply-adds). The logits agree within 10 tol. */
static void predictions_agree(exec_t *g, exec_t *c, const net_t *net, const float *images,
                              int batch, double tol)
{
    int k = net->nodes[plan_root(net, net->n_nodes - 2)].c;
    float *lg = malloc(sizeof(float) * (size_t)batch * k), *lc = malloc(sizeof(float) * (size_t)batch * k);
    assert_true(lg && lc);
    assert_int_equal(exec_predict_logits(g, images, batch, lg), LR_OK);
    assert_int_equal(exec_predict_logits(c, images, batch, lc), LR_OK);
    assert_true(rel_err(lg, lc, (int64_t)batch * k) <= 10 * tol);
    double scale = 0;
    for (int64_t i = 0; i < (int64_t)batch * k; i++)
        scale = fmax(scale, fabs((double)lc[i]));
    for (int i = 0; i < batch; i++) {
        const float *x = lg + (int64_t)i * k, *y = lc + (int64_t)i * k;
        int a = argmax(x, k), b = argmax(y, k);
        if (a != b && fabs((double)y[a] - y[b]) > tol * scale)
            fail_msg("image %d: class %d on %s, %d on the CPU (logits %.7g vs %.7g)", i, a,
                     "the backend", b, y[a], y[b]);
    }
    free(lg);
    free(lc);
}

/* One step of `st` on the backend and of the same plan kind on the CPU (`ref`: column, or the
 * same strategy for stripe BatchNorm, which is approximate by design) from the same weights and
 * batch: loss, gradients, updated weights, BN running statistics and predictions agree. */
/* Frozen BatchNorm statistics of a fine-tuned model: mean 0.1*(c%5) - 0.2, var 0.5 + 0.25*(c%4). */
static void set_frozen_running(exec_t *e, const net_t *net)
{
    for (int l = 1; l < net->n_nodes; l++) {
        const net_node *n = &net->nodes[l];
        if (n->op != OP_BATCHNORM)
            continue;
        float *r = malloc(sizeof(float) * 2 * (size_t)n->c);
        for (int c = 0; c < n->c; c++)
            r[c] = 0.1f * (float)(c % 5) - 0.2f, r[n->c + c] = 0.5f + 0.25f * (float)(c % 4);
        assert_int_equal(exec_set_running(e, l, r, 2 * n->c), LR_OK);
        free(r);
    }
}

static void backend_matches_cpu(const exec_backend *be, void *ctx, const char *netname, int h,
                                plan_strategy st, plan_strategy ref, int rows, plan_optim optim,
                                plan_bn bn, double tol)
{
    const int batch = 3;
    dev_run g, c;
    dev_open(&g, netname, h, batch, st, rows, optim, bn, be, ctx, 11);
    dev_open(&c, netname, h, batch, ref, rows, optim, bn, &exec_cpu_backend, NULL, 11);
    if (bn == BN_FROZEN)
        set_frozen_running(c.exec, c.p.net);
    assert_int_equal(exec_copy_params(g.exec, c.exec), LR_OK);
    const net_node *in = &c.p.net->nodes[0];
    float *images = malloc(sizeof(float) * (size_t)batch * in->c * in->h * in->w);
    int32_t labels[batch];
    fill_batch(c.p.net, batch, images, labels);
    float lg, lc;
    assert_int_equal(exec_step(g.exec, images, labels, false, &lg), LR_OK);
    assert_int_equal(exec_step(c.exec, images, labels, false, &lc), LR_OK);
    double eg = worst_error(g.exec, c.exec, c.p.net, GRADS);
    assert_int_equal(exec_update(g.exec), LR_OK);
    assert_int_equal(exec_update(c.exec), LR_OK);
    double ew = worst_error(g.exec, c.exec, c.p.net, PARAMS);
    double wtol = optim == OPTIM_ADAM ? 10 * tol : tol; /* Adam divides by |g|: see dev_open */
    double er = worst_error(g.exec, c.exec, c.p.net, RUNNING);
    if (eg > tol || ew > wtol || er > tol || fabs(lg - lc) > tol * fabs(lc))
        print_message("%s %s rows %d on %s: loss %.7f vs %.7f, grads %.3g, weights %.3g, "
                      "running %.3g\n",
                      netname, plan_strategy_name(st), rows, be->name, lg, lc, eg, ew, er);
    assert_true(fabs(lg - lc) <= tol * fabs(lc));
    assert_true(eg <= tol);
    assert_true(ew <= wtol);
    assert_true(er <= tol);
    predictions_agree(g.exec, c.exec, c.p.net, images, batch, tol);
    free(images);
    dev_close(&g);
    dev_close(&c);
}

/* One context for every configuration: creating one costs the device a good part of a second. */
static void all_strategies_match_cpu(backend_open open, double tol)
{
    const exec_backend *be;
    void *ctx;
    backend_or_skip(open, &be, &ctx);
    const char *nets[] = {"tiny-vgg", "tiny-resnet", "tiny-mix"};
    const plan_strategy strategies[] = {STRAT_COLUMN, STRAT_CHECKPOINT, STRAT_ROW, STRAT_2PS,
                                        STRAT_OVERL, STRAT_2PS_H, STRAT_OVERL_H};
    const plan_optim optims[] = {OPTIM_MOMENTUM, OPTIM_SGD, OPTIM_ADAM};
    const int rows[] = {2, 3, 7};
    for (size_t n = 0; n < 3; n++)
        for (size_t s = 0; s < sizeof strategies / sizeof strategies[0]; s++)
            for (size_t k = 0; k < 3; k++)
                backend_matches_cpu(be, ctx, nets[n], 0, strategies[s], STRAT_COLUMN, rows[k],
                                    optims[(s + k) % 3], BN_EXACT, tol);
    cuda_backend_destroy(ctx);
}

/* --bn frozen on every row strategy of tiny-resnet and tiny-mix (BatchNorm in row regions and
 * in the column tail) equals the CPU backend's column training from non-trivial running
 * statistics, which neither backend changes. */
static void frozen_bn_matches_cpu(backend_open open, double tol)
{
    const exec_backend *be;
    void *ctx;
    backend_or_skip(open, &be, &ctx);
    const char *nets[] = {"tiny-resnet", "tiny-mix"};
    const plan_strategy strategies[] = {STRAT_COLUMN, STRAT_CHECKPOINT, STRAT_ROW, STRAT_2PS,
                                        STRAT_OVERL, STRAT_2PS_H, STRAT_OVERL_H};
    for (size_t n = 0; n < 2; n++)
        for (size_t s = 0; s < sizeof strategies / sizeof strategies[0]; s++)
            backend_matches_cpu(be, ctx, nets[n], 0, strategies[s], STRAT_COLUMN, 3,
                                OPTIM_MOMENTUM, BN_FROZEN, tol);
    cuda_backend_destroy(ctx);
}

/* --offload input,boundary: the row strategies of tiny-vgg and tiny-resnet with the input batch
 * and the kept boundary rows in the backend's host memory (pinned on a GPU) equal column
 * training on the CPU, and the counted device and host memory are the predictions. */
static void offload_matches_cpu(backend_open open, double tol)
{
    const exec_backend *be;
    void *ctx;
    backend_or_skip(open, &be, &ctx);
    plan_offload = OFFLOAD_INPUT | OFFLOAD_BOUNDARY;
    const char *nets[] = {"tiny-vgg", "tiny-resnet"};
    const plan_strategy strategies[] = {STRAT_CHECKPOINT, STRAT_ROW, STRAT_2PS, STRAT_OVERL_H};
    for (size_t n = 0; n < 2; n++)
        for (size_t s = 0; s < sizeof strategies / sizeof strategies[0]; s++) {
            backend_matches_cpu(be, ctx, nets[n], 0, strategies[s], STRAT_COLUMN, 3,
                                OPTIM_MOMENTUM, BN_EXACT, tol);
            dev_run g;
            dev_open(&g, nets[n], 0, 3, strategies[s], 3, OPTIM_MOMENTUM, BN_EXACT, be, ctx, 11);
            const net_node *in = &g.p.net->nodes[0];
            float *images = malloc(sizeof(float) * 3 * (size_t)in->c * in->h * in->w);
            int32_t labels[3];
            fill_batch(g.p.net, 3, images, labels);
            assert_int_equal(exec_step(g.exec, images, labels, true, NULL), LR_OK);
            const exec_memory *m = exec_memory_stats(g.exec);
            assert_int_equal(m->counted_peak_bytes, g.p.cost.peak_bytes);
            assert_int_equal(m->host_counted_peak_bytes, g.p.cost.host_bytes);
            assert_true(g.p.cost.host_bytes > 0);
            free(images);
            dev_close(&g);
        }
    plan_offload = 0;
    cuda_backend_destroy(ctx);
}

/* ---- the emulated backend (host loops in place of kernels, cuDNN and cuBLAS) */

static void test_emulated_offload_matches_cpu_column(void **state)
{
    offload_matches_cpu(open_emulated, 1e-5);
}

/* Every strategy at N = 2, 3, 7 on every tiny net (every op of the zoo) through the CUDA
 * backend's glue equals column training on the CPU: pieces, staging, strided views, boundaries,
 * exact BatchNorm passes, the fc products' row/column-major reading, dropout masks, optimizers. */
static void test_emulated_strategies_match_cpu_column(void **state)
{
    all_strategies_match_cpu(open_emulated, 1e-5);
}

/* --bn stripe through the CUDA glue equals --bn stripe on the CPU (statistics per stripe,
 * running statistics moved by each stripe's share of the rows). */
static void test_emulated_stripe_bn_matches_cpu_stripe_bn(void **state)
{
    const exec_backend *be;
    void *ctx;
    backend_or_skip(open_emulated, &be, &ctx);
    backend_matches_cpu(be, ctx, "tiny-resnet", 0, STRAT_2PS, STRAT_2PS, 4, OPTIM_MOMENTUM,
                        BN_STRIPE, 1e-5);
    backend_matches_cpu(be, ctx, "tiny-resnet", 0, STRAT_OVERL_H, STRAT_OVERL_H, 3,
                        OPTIM_MOMENTUM, BN_STRIPE, 1e-5);
    cuda_backend_destroy(ctx);
}

/* --bn frozen through the CUDA glue (running-statistics map forward and backward, gamma and
 * beta gradients by channel reductions) equals column training on the CPU. */
static void test_emulated_frozen_bn_matches_cpu_column(void **state)
{
    frozen_bn_matches_cpu(open_emulated, 1e-5);
}

/* Maps large enough that channel reductions (BatchNorm statistics, bias gradients) split each
 * channel into several slices: tiny-resnet and tiny-mix at 72x72 through the CUDA glue equal the
 * CPU's column training. */
static void test_emulated_sliced_reductions_match_cpu(void **state)
{
    const exec_backend *be;
    void *ctx;
    backend_or_skip(open_emulated, &be, &ctx);
    backend_matches_cpu(be, ctx, "tiny-resnet", 72, STRAT_2PS_H, STRAT_COLUMN, 3, OPTIM_MOMENTUM,
                        BN_EXACT, 1e-5);
    backend_matches_cpu(be, ctx, "tiny-mix", 72, STRAT_COLUMN, STRAT_COLUMN, 0, OPTIM_SGD,
                        BN_EXACT, 1e-5);
    cuda_backend_destroy(ctx);
}

/* A schedule planned without the staging workspace fails at its first staged convolution with
 * a message that names the layer and the --workspace that would do. */
static void test_too_small_workspace_names_the_size_needed(void **state)
{
    const exec_backend *be;
    void *ctx;
    backend_or_skip(open_emulated, &be, &ctx);
    plan_run p;
    plan_open(&p, "tiny-vgg", 0, 2, STRAT_2PS, 3, OPTIM_SGD, BN_EXACT, 0);
    exec_hparams hp;
    exec_hparams_default(&hp);
    exec_t *e;
    assert_int_equal(exec_create(p.net, p.plan, &p.s, be, ctx, &hp, &e), LR_OK);
    const net_node *in = &p.net->nodes[0];
    float *images = malloc(sizeof(float) * 2 * (size_t)in->c * in->h * in->w);
    int32_t labels[2];
    fill_batch(p.net, 2, images, labels);
    assert_int_equal(exec_step(e, images, labels, true, NULL), LR_ERR_RUNTIME);
    char want[64];
    int64_t plan;
    assert_int_equal(cuda_backend_workspace_bytes_ctx(ctx, p.net, &p.s, 2, &plan), LR_OK);
    snprintf(want, sizeof want, "--workspace %lld", (long long)plan);
    print_message("%s\n", lr_last_error());
    assert_non_null(strstr(lr_last_error(), "conv1_1"));
    assert_non_null(strstr(lr_last_error(), want));
    free(images);
    exec_free(e);
    plan_close(&p);
    cuda_backend_destroy(ctx);
}

/* cuDNN may turn down every deterministic algorithm for a stripe view that is not 16-byte
 * aligned (W = 7 or 14 at odd row offsets): with the emulation turning such calls down, every
 * row strategy on the tiny nets (28, 14 and 7 wide maps) still equals column training on the
 * CPU, through calls run packed in the staging region that the deterministic workspace sizing
 * reserved (no call runs short of workspace). */
static void test_refused_unaligned_views_run_packed(void **state)
{
    const exec_backend *be;
    void *ctx;
    backend_or_skip(open_emulated, &be, &ctx);
    cuda_backend_emulate_refusals(ctx, true);
    const char *nets[] = {"tiny-vgg", "tiny-resnet", "tiny-mix"};
    const plan_strategy strategies[] = {STRAT_ROW, STRAT_2PS, STRAT_OVERL, STRAT_2PS_H};
    const int rows[] = {3, 7};
    for (size_t n = 0; n < 3; n++)
        for (size_t s = 0; s < sizeof strategies / sizeof strategies[0]; s++)
            for (size_t k = 0; k < 2; k++)
                backend_matches_cpu(be, ctx, nets[n], 0, strategies[s], STRAT_COLUMN, rows[k],
                                    OPTIM_MOMENTUM, BN_EXACT, 1e-5);
    print_message("%lld convolution calls ran packed\n", (long long)cuda_backend_packed_calls(ctx));
    assert_true(cuda_backend_packed_calls(ctx) > 0);
    cuda_backend_destroy(ctx);
}

/* Deterministic sizing reserves the packed form of calls on unaligned views: a row plan on
 * tiny-vgg (14 and 7 wide maps) needs more than its largest edge staging; a column plan, whose
 * calls all start at row 0, needs none. */
static void test_deterministic_workspace_reserves_packed_calls(void **state)
{
    const exec_backend *be;
    void *ctx;
    backend_or_skip(open_emulated, &be, &ctx);
    const int batch = 4;
    plan_run row, col;
    plan_open(&row, "tiny-vgg", 0, batch, STRAT_2PS, 3, OPTIM_MOMENTUM, BN_EXACT, 0);
    plan_open(&col, "tiny-vgg", 0, batch, STRAT_COLUMN, 0, OPTIM_MOMENTUM, BN_EXACT, 0);
    int64_t ws_row, ws_col;
    assert_int_equal(cuda_backend_workspace_bytes_ctx(ctx, row.net, &row.s, batch, &ws_row), LR_OK);
    assert_int_equal(cuda_backend_workspace_bytes_ctx(ctx, col.net, &col.s, batch, &ws_col), LR_OK);
    print_message("tiny-vgg 2ps rows 3: workspace %lld bytes (edge staging alone %lld)\n",
                  (long long)ws_row, (long long)largest_staging(&row, batch));
    assert_true(ws_row > largest_staging(&row, batch));
    assert_int_equal(ws_col, 0);
    plan_close(&row);
    plan_close(&col);
    cuda_backend_destroy(ctx);
}

/* A workspace query the backend cannot answer is its error, not "no workspace": cuDNN refuses a
 * tensor descriptor of more than 2^31 elements (vgg16's conv1_2 input at batch 700). */
static void test_failed_workspace_query_is_an_error(void **state)
{
    const exec_backend *be;
    void *ctx;
    backend_or_skip(open_emulated, &be, &ctx);
    plan_run p;
    plan_open(&p, "vgg16", 0, 700, STRAT_COLUMN, 0, OPTIM_SGD, BN_EXACT, 0);
    int64_t ws = -1;
    lr_status s = cuda_backend_workspace_bytes_ctx(ctx, p.net, &p.s, 700, &ws);
    print_message("%s\n", lr_last_error());
    assert_int_equal(s, LR_ERR_RUNTIME);
    assert_non_null(strstr(lr_last_error(), "cuDNN"));
    plan_close(&p);
    cuda_backend_destroy(ctx);
}

/* Out of memory in any library is "does not fit" (LR_ERR_NOMEM, exit 1) with what is free, or
 * why that is unknown; other failures stay runtime errors naming the statement. */
static void test_out_of_memory_codes_are_does_not_fit(void **state)
{
    assert_true(cuda_status_is_oom(CUDA_LIB_RUNTIME, cudaErrorMemoryAllocation));
    assert_true(cuda_status_is_oom(CUDA_LIB_CUDNN, CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED));
    assert_true(cuda_status_is_oom(CUDA_LIB_CUDNN, CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED));
    assert_true(cuda_status_is_oom(CUDA_LIB_CUBLAS, CUBLAS_STATUS_ALLOC_FAILED));
    assert_false(cuda_status_is_oom(CUDA_LIB_CUDNN, CUDNN_STATUS_NOT_SUPPORTED));
    assert_false(cuda_status_is_oom(CUDA_LIB_CUBLAS, CUBLAS_STATUS_EXECUTION_FAILED));
    lr_status s = cuda_call_failed(CUDA_LIB_CUBLAS, CUBLAS_STATUS_ALLOC_FAILED, "cublasSgemm(...)",
                                   "f.cu", 7);
    print_message("%s\n", lr_last_error());
    assert_int_equal(s, LR_ERR_NOMEM);
    assert_int_equal(lr_exit_code(s), 1);
    assert_non_null(strstr(lr_last_error(), "does not fit"));
    assert_non_null(strstr(lr_last_error(), "cublasSgemm"));
    assert_non_null(strstr(lr_last_error(), "free"));
    s = cuda_call_failed(CUDA_LIB_CUDNN, CUDNN_STATUS_BAD_PARAM, "cudnnConvolutionForward", "f.cu", 9);
    assert_int_equal(s, LR_ERR_RUNTIME);
    assert_non_null(strstr(lr_last_error(), "f.cu:9: cudnnConvolutionForward failed (cuDNN)"));
}

/* ---- the device */

/* On the device: every strategy on every tiny net equals column training on the CPU (1e-4:
 * cuDNN's GEMMs sum in another order than the CPU's direct convolution). */
static void test_cuda_strategies_match_cpu_column(void **state)
{
    all_strategies_match_cpu(open_device, 1e-4);
}

/* --offload input,boundary on the device (pinned host memory, copies on the stream) equals the
 * CPU's column training (1e-4, as above). */
static void test_cuda_offload_matches_cpu_column(void **state)
{
    offload_matches_cpu(open_device, 1e-4);
}

/* --bn frozen on the device equals the CPU's column training (1e-4, as above). */
static void test_cuda_frozen_bn_matches_cpu_column(void **state)
{
    frozen_bn_matches_cpu(open_device, 1e-4);
}

/* On the device, in deterministic mode, every row strategy at N = 2, 3, 7 gives column
 * training's loss and weight gradients within 1e-5; the counted peak equals the prediction and
 * the device held at least the arena. */
static void test_cuda_row_strategies_match_column_on_device(void **state)
{
    const exec_backend *be;
    void *ctx;
    backend_or_skip(open_device, &be, &ctx);
    const char *nets[] = {"tiny-vgg", "tiny-resnet", "tiny-mix"};
    const plan_strategy strategies[] = {STRAT_CHECKPOINT, STRAT_ROW, STRAT_2PS, STRAT_OVERL,
                                        STRAT_2PS_H, STRAT_OVERL_H};
    const int rows[] = {2, 3, 7};
    const int batch = 3;
    for (size_t n = 0; n < 3; n++)
        for (size_t s = 0; s < sizeof strategies / sizeof strategies[0]; s++)
            for (size_t k = 0; k < 3; k++) {
                dev_run r, c;
                dev_open(&r, nets[n], 0, batch, strategies[s], rows[k], OPTIM_MOMENTUM, BN_EXACT,
                         be, ctx, 7);
                dev_open(&c, nets[n], 0, batch, STRAT_COLUMN, 0, OPTIM_MOMENTUM, BN_EXACT, be, ctx,
                         7);
                assert_int_equal(exec_copy_params(c.exec, r.exec), LR_OK);
                const net_node *in = &r.p.net->nodes[0];
                float *images = malloc(sizeof(float) * (size_t)batch * in->c * in->h * in->w);
                int32_t labels[batch];
                fill_batch(r.p.net, batch, images, labels);
                float lr_, lc;
                assert_int_equal(exec_step(r.exec, images, labels, false, &lr_), LR_OK);
                assert_int_equal(exec_step(c.exec, images, labels, false, &lc), LR_OK);
                double e = worst_error(r.exec, c.exec, r.p.net, GRADS);
                if (e > 1e-5 || fabs(lr_ - lc) > 1e-5 * fabs(lc))
                    print_message("%s %s rows %d: loss %.7f vs %.7f, gradient error %.3g\n",
                                  nets[n], plan_strategy_name(strategies[s]), rows[k], lr_, lc, e);
                assert_true(fabs(lr_ - lc) <= 1e-5 * fabs(lc));
                assert_true(e <= 1e-5);
                sim_result sr;
                assert_int_equal(sim_replay(&r.p.s, ALLOC_EXACT, &sr), LR_OK);
                assert_int_equal(exec_memory_stats(r.exec)->counted_peak_bytes, sr.peak_bytes);
                assert_int_equal(exec_memory_stats(r.exec)->counted_peak_bytes, r.p.cost.peak_bytes);
                free(images);
                dev_close(&r);
                dev_close(&c);
            }
    cuda_backend_destroy(ctx);
}

/* A larger plan (vgg11 at 64x64, batch 8, 2ps): the counted peak equals the closed form and
 * the replay, and after a warm-up step the device holds at least the arena beyond the context
 * (cudaMalloc rounds up; lazily loaded kernels add what the model leaves out, printed, as does
 * what the step after the warm-up adds). */
static void test_cuda_measured_peak_equals_prediction(void **state)
{
    const exec_backend *be;
    void *ctx;
    lr_status opened = cuda_backend_create(false, &be, &ctx);
    if (opened == LR_ERR_NODEVICE) {
        print_message("skipped: %s\n", lr_last_error());
        skip();
    }
    assert_int_equal(opened, LR_OK);
    const int batch = 8;
    plan_run p;
    plan_open(&p, "vgg11", 64, batch, STRAT_2PS, 4, OPTIM_MOMENTUM, BN_EXACT, 0);
    int64_t ws;
    assert_int_equal(cuda_backend_workspace_bytes_ctx(ctx, p.net, &p.s, batch, &ws), LR_OK);
    plan_close(&p);
    plan_open(&p, "vgg11", 64, batch, STRAT_2PS, 4, OPTIM_MOMENTUM, BN_EXACT, ws);
    exec_hparams hp;
    exec_hparams_default(&hp);
    exec_t *e;
    assert_int_equal(exec_create(p.net, p.plan, &p.s, be, ctx, &hp, &e), LR_OK);
    const net_node *in = &p.net->nodes[0];
    float *images = malloc(sizeof(float) * (size_t)batch * in->c * in->h * in->w);
    int32_t labels[batch];
    fill_batch(p.net, batch, images, labels);
    float loss;
    assert_int_equal(exec_step(e, images, labels, true, &loss), LR_OK); /* the warm-up step */
    assert_int_equal(cuda_backend_memory_mark(ctx), LR_OK);
    assert_int_equal(exec_step(e, images, labels, true, &loss), LR_OK);
    assert_true(isfinite(loss));
    sim_result sr;
    assert_int_equal(sim_replay(&p.s, ALLOC_EXACT, &sr), LR_OK);
    const exec_memory *m = exec_memory_stats(e);
    assert_int_equal(m->counted_peak_bytes, sr.peak_bytes);
    assert_int_equal(m->counted_peak_bytes, p.cost.peak_bytes);
    cuda_memory mem;
    assert_int_equal(cuda_backend_memory(ctx, &mem), LR_OK);
    print_message("vgg11 64x64 2ps: predicted %.2f MiB (workspace %.2f MiB), arena %.2f MiB; "
                  "device: context %.1f MiB, loaded by the warm-up step %.2f MiB beyond the "
                  "arena, %.2f MiB more in the step after it\n",
                  p.cost.peak_bytes / 1048576.0, ws / 1048576.0, m->arena_bytes / 1048576.0,
                  mem.context_used / 1048576.0,
                  (mem.warm_used - mem.context_used - m->arena_bytes) / 1048576.0,
                  (mem.peak_used - mem.warm_used) / 1048576.0);
    assert_true(mem.warm_used - mem.context_used >= m->arena_bytes);
    assert_true(mem.peak_used >= mem.warm_used);
    free(images);
    exec_free(e);
    plan_close(&p);
    cuda_backend_destroy(ctx);
}

#else /* built without CUDA */

static void skip_without_cuda(void)
{
    print_message("skipped: built without CUDA (nvcc was not found at build time)\n");
    skip();
}

static void test_conv_pieces_tile_rows_and_pad_exactly(void **state) { skip_without_cuda(); }
static void test_conv_pieces_examples(void **state) { skip_without_cuda(); }
static void test_view_strides_follow_the_rows_held(void **state) { skip_without_cuda(); }
static void test_workspace_staging_tiny_vgg(void **state) { skip_without_cuda(); }
static void test_workspace_staging_resnet50(void **state) { skip_without_cuda(); }
static void test_emulated_strategies_match_cpu_column(void **state) { skip_without_cuda(); }
static void test_emulated_stripe_bn_matches_cpu_stripe_bn(void **state) { skip_without_cuda(); }
static void test_emulated_sliced_reductions_match_cpu(void **state) { skip_without_cuda(); }
static void test_emulated_frozen_bn_matches_cpu_column(void **state) { skip_without_cuda(); }
static void test_cuda_frozen_bn_matches_cpu_column(void **state) { skip_without_cuda(); }
static void test_emulated_offload_matches_cpu_column(void **state) { skip_without_cuda(); }
static void test_cuda_offload_matches_cpu_column(void **state) { skip_without_cuda(); }
static void test_too_small_workspace_names_the_size_needed(void **state) { skip_without_cuda(); }
static void test_refused_unaligned_views_run_packed(void **state) { skip_without_cuda(); }
static void test_deterministic_workspace_reserves_packed_calls(void **state) { skip_without_cuda(); }
static void test_failed_workspace_query_is_an_error(void **state) { skip_without_cuda(); }
static void test_out_of_memory_codes_are_does_not_fit(void **state) { skip_without_cuda(); }
static void test_cuda_strategies_match_cpu_column(void **state) { skip_without_cuda(); }
static void test_cuda_row_strategies_match_column_on_device(void **state) { skip_without_cuda(); }
static void test_cuda_measured_peak_equals_prediction(void **state) { skip_without_cuda(); }

#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cuda_backend_without_device_is_nodevice),
        cmocka_unit_test(test_conv_pieces_tile_rows_and_pad_exactly),
        cmocka_unit_test(test_conv_pieces_examples),
        cmocka_unit_test(test_view_strides_follow_the_rows_held),
        cmocka_unit_test(test_workspace_staging_tiny_vgg),
        cmocka_unit_test(test_workspace_staging_resnet50),
        cmocka_unit_test(test_emulated_strategies_match_cpu_column),
        cmocka_unit_test(test_emulated_stripe_bn_matches_cpu_stripe_bn),
        cmocka_unit_test(test_emulated_sliced_reductions_match_cpu),
        cmocka_unit_test(test_emulated_frozen_bn_matches_cpu_column),
        cmocka_unit_test(test_emulated_offload_matches_cpu_column),
        cmocka_unit_test(test_too_small_workspace_names_the_size_needed),
        cmocka_unit_test(test_refused_unaligned_views_run_packed),
        cmocka_unit_test(test_deterministic_workspace_reserves_packed_calls),
        cmocka_unit_test(test_failed_workspace_query_is_an_error),
        cmocka_unit_test(test_out_of_memory_codes_are_does_not_fit),
        cmocka_unit_test(test_cuda_strategies_match_cpu_column),
        cmocka_unit_test(test_cuda_frozen_bn_matches_cpu_column),
        cmocka_unit_test(test_cuda_offload_matches_cpu_column),
        cmocka_unit_test(test_cuda_row_strategies_match_column_on_device),
        cmocka_unit_test(test_cuda_measured_peak_equals_prediction),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
