/* test_exec.c - the executor and the CPU backend: column training equals an independent float64
 * PyTorch run (tests/data/golden), every row strategy equals column training, and the executor's
 * counted peak equals the simulator's exact peak.
 *
 * Tolerances: against PyTorch float64, float32 arithmetic leaves ~1e-6 of each tensor's largest
 * value; row vs column differ only by summation order (1e-5 relative, the bound).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <omp.h>

#include "exec.h"
#include "golden.h"
#include "sim.h"
#include "choose.h"

#define GOLDEN(net) LRCNN_SRCDIR "/tests/data/golden/" net ".bin"
#define TINY_FLAT LRCNN_SRCDIR "/tests/data/nets/tiny-flat.json"
#define TINY_SKIP LRCNN_SRCDIR "/tests/data/nets/tiny-skip.json"
#define TINY_PAD LRCNN_SRCDIR "/tests/data/nets/tiny-pad.json"
#define TINY_TWIN LRCNN_SRCDIR "/tests/data/nets/tiny-twin.json"

typedef struct {
    net_t *net;
    plan_t *plan;
    sched_t s;
    exec_t *exec;
    plan_cost cost;
} run_t;

/* The stages that recompute their boundaries (plan_spec.recompute) in the plans run_open_cfg
 * chooses (the test that sets it puts it back). */
static uint64_t open_mask;

/* The plan of `spec` when given (evaluated under cfg), else the strategy's choice. */
static void run_open_cfg(run_t *r, const char *netname, plan_config cfg, plan_strategy st,
                         int rows, const plan_spec *spec, uint64_t seed, float lr)
{
    memset(r, 0, sizeof *r);
    assert_int_equal(net_open(netname, &r->net), LR_OK);
    plan_request req = {.strategy = st, .rows = rows};
    plan_choice c;
    if (spec) {
        c.spec = *spec;
        assert_int_equal(strategy_evaluate(r->net, &cfg, spec, &c.cost), LR_OK);
    } else {
        assert_int_equal(strategy_choose(r->net, &cfg, &req, &c), LR_OK);
        if (open_mask) {
            c.spec.recompute = open_mask;
            assert_int_equal(strategy_evaluate(r->net, &cfg, &c.spec, &c.cost), LR_OK);
        }
    }
    r->cost = c.cost;
    assert_int_equal(plan_build(r->net, &cfg, &c.spec, &r->plan), LR_OK);
    sched_init(&r->s);
    plan_emit(r->plan, &r->s);
    assert_int_equal(exec_plan_workspace(r->net, &cfg, &c.spec, &exec_cpu_backend, NULL, &r->plan,
                                         &r->s, &r->cost),
                     LR_OK);
    assert_int_equal(sched_validate(&r->s), LR_OK);
    exec_hparams hp;
    exec_hparams_default(&hp);
    hp.seed = seed;
    hp.lr = lr;
    assert_int_equal(exec_create(r->net, r->plan, &r->s, &exec_cpu_backend, NULL, &hp, &r->exec), LR_OK);
}

/* --boundaries recompute for the plans run_open makes (the test that sets it puts it back), and
 * the stages that recompute theirs (plan_spec.recompute) in the plans it chooses. */
static bool open_recompute;

static void run_open(run_t *r, const char *netname, int batch, plan_strategy st, int rows,
                     plan_bn bn, plan_optim optim, uint64_t seed, float lr)
{
    plan_config cfg = {.batch = batch, .dtype = DT_FP32, .optim = optim, .bn = bn,
                       .recompute_boundaries = open_recompute};
    run_open_cfg(r, netname, cfg, st, rows, NULL, seed, lr);
}

static void run_close(run_t *r)
{
    exec_free(r->exec);
    sched_free(&r->s);
    plan_free(r->plan);
    net_free(r->net);
}

/* max |a - b| / max |b| */
static double rel_err(const float *a, const float *b, int64_t n)
{
    double d = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return m > 0 ? d / m : d;
}

/* Weight then bias of a node, as the executor stores them. */
static float *golden_params(const golden_file *g, const net_node *n, const char *suffix)
{
    float *p = malloc(sizeof(float) * (size_t)n->params);
    char name[160];
    snprintf(name, sizeof name, "%s.weight%s", n->name, suffix);
    const golden_array *w = golden_find(g, name);
    assert_non_null(w);
    memcpy(p, w->data, sizeof(float) * (size_t)w->count);
    snprintf(name, sizeof name, "%s.bias%s", n->name, suffix);
    const golden_array *b = golden_find(g, name);
    if (w->count < n->params) {
        assert_non_null(b);
        assert_int_equal(w->count + b->count, n->params);
        memcpy(p + w->count, b->data, sizeof(float) * (size_t)b->count);
    }
    return p;
}

static void load_golden_inputs(run_t *r, const golden_file *g, float **images, int32_t **labels)
{
    const golden_array *in = golden_find(g, "input"), *lab = golden_find(g, "labels");
    assert_non_null(in);
    assert_non_null(lab);
    *images = in->data;
    *labels = malloc(sizeof(int32_t) * (size_t)lab->count);
    for (int64_t i = 0; i < lab->count; i++)
        (*labels)[i] = (int32_t)lab->data[i];
    for (int l = 1; l < r->net->n_nodes; l++)
        if (r->net->nodes[l].params) {
            float *p = golden_params(g, &r->net->nodes[l], "");
            assert_int_equal(exec_set_param(r->exec, l, p, r->net->nodes[l].params), LR_OK);
            free(p);
        }
}

/* Compares every parameter tensor of the executor (`get`) with the golden arrays `suffix`. */
static double worst_param_error(run_t *r, const golden_file *g, const char *suffix, bool grads,
                                const char *skip)
{
    double worst = 0;
    for (int l = 1; l < r->net->n_nodes; l++) {
        const net_node *n = &r->net->nodes[l];
        if (!n->params)
            continue;
        float *want = golden_params(g, n, suffix), *got = malloc(sizeof(float) * (size_t)n->params);
        assert_int_equal((grads ? exec_get_param_grad : exec_get_param)(r->exec, l, got, n->params), LR_OK);
        int64_t count = n->params;
        if (skip && strcmp(skip, n->name) == 0)
            count -= n->c; /* the bias: see the caller */
        double e = rel_err(got, want, count);
        if (e > worst)
            worst = e;
        if (e > 1e-4)
            print_message("%s%s: relative error %.3g\n", n->name, suffix, e);
        free(want);
        free(got);
    }
    return worst;
}

/* The golden running statistics of BatchNorm `n` (mean then var) into got[2 * n->c]. */
static void golden_running(const golden_file *g, const net_node *n, float *got)
{
    char name[160];
    snprintf(name, sizeof name, "%s.running_mean", n->name);
    memcpy(got, golden_find(g, name)->data, sizeof(float) * (size_t)n->c);
    snprintf(name, sizeof name, "%s.running_var", n->name);
    memcpy(got + n->c, golden_find(g, name)->data, sizeof(float) * (size_t)n->c);
}

/* Frozen BatchNorm starts from the golden running statistics, and the step must leave them. */
static void check_frozen_running(run_t *r, const golden_file *g, bool load)
{
    for (int l = 1; l < r->net->n_nodes; l++) {
        const net_node *n = &r->net->nodes[l];
        if (n->op != OP_BATCHNORM)
            continue;
        float want[2 * 128], got[2 * 128];
        assert_true(n->c <= 128);
        golden_running(g, n, want);
        if (load)
            assert_int_equal(exec_set_running(r->exec, l, want, 2 * n->c), LR_OK);
        assert_int_equal(exec_get_running(r->exec, l, got, 2 * n->c), LR_OK);
        assert_memory_equal(got, want, sizeof(float) * 2 * (size_t)n->c);
    }
}

static void check_golden_step(const char *netname, const char *file, plan_bn bn)
{
    golden_file *g;
    assert_int_equal(golden_load(file, &g), 0);
    run_t r;
    run_open(&r, netname, 4, STRAT_COLUMN, 0, bn, OPTIM_MOMENTUM, 1234, 0.01f);
    float *images;
    int32_t *labels;
    load_golden_inputs(&r, g, &images, &labels);
    if (bn == BN_FROZEN)
        check_frozen_running(&r, g, true);
    float loss;
    assert_int_equal(exec_step(r.exec, images, labels, false, &loss), LR_OK);
    const golden_array *want = golden_find(g, "loss");
    assert_true(fabs(loss - want->data[0]) <= 1e-5 * fabs(want->data[0]));
    assert_true(worst_param_error(&r, g, ".grad", true, NULL) < 1e-4);
    if (bn == BN_FROZEN)
        check_frozen_running(&r, g, false);
    for (int l = 1; l < r.net->n_nodes && bn != BN_FROZEN; l++) {
        const net_node *n = &r.net->nodes[l];
        if (n->op != OP_BATCHNORM)
            continue;
        char name[160];
        float got[2 * 128];
        assert_true(n->c <= 128);
        assert_int_equal(exec_get_running(r.exec, l, got, 2 * n->c), LR_OK);
        snprintf(name, sizeof name, "%s.running_mean", n->name);
        assert_true(rel_err(got, golden_find(g, name)->data, n->c) < 1e-4);
        snprintf(name, sizeof name, "%s.running_var", n->name);
        assert_true(rel_err(got + n->c, golden_find(g, name)->data, n->c) < 1e-4);
    }
    assert_int_equal(exec_update(r.exec), LR_OK);
    assert_true(worst_param_error(&r, g, ".momentum", false, NULL) < 1e-5);
    free(labels);
    run_close(&r);
    golden_free(g);
}

/* One column step of tiny-vgg (conv, relu, maxpool, dropout with our mask, fc, loss) equals
 * PyTorch float64: the loss, every weight gradient, and the weights after SGD with momentum. */
static void test_column_step_matches_pytorch_tiny_vgg(void **state)
{
    check_golden_step("tiny-vgg", GOLDEN("tiny-vgg"), BN_EXACT);
}

/* The same for tiny-resnet: BatchNorm (batch statistics, running statistics), residual adds,
 * a strided block with a 1x1 downsample, global average pooling. */
static void test_column_step_matches_pytorch_tiny_resnet(void **state)
{
    check_golden_step("tiny-resnet", GOLDEN("tiny-resnet"), BN_EXACT);
}

/* The same for tiny-mix: average pooling, dilated grouped conv, upsampling, concat, a
 * rectangular kernel, padded max pooling, adaptive pooling. */
static void test_column_step_matches_pytorch_tiny_mix(void **state)
{
    check_golden_step("tiny-mix", GOLDEN("tiny-mix"), BN_EXACT);
}

/* The same for tiny-flat (tests/data/nets): ops that read a flatten's output as a (C*H*W, 1, 1)
 * map of the tensor it views, a dropout right after the flatten (as in AlexNet, which aborted on
 * a shape check before), then BatchNorm over the features and relu. */
static void test_column_step_matches_pytorch_tiny_flat(void **state)
{
    check_golden_step(TINY_FLAT, GOLDEN("tiny-flat"), BN_EXACT);
}

/* --bn frozen: tiny-resnet with eval-mode BatchNorm from non-trivial running statistics equals
 * PyTorch's step (F.batch_norm(training=False)): loss, gamma/beta and every other gradient, the
 * SGD step; the running statistics come out of the step unchanged, bit for bit. */
static void test_column_step_matches_pytorch_tiny_resnet_frozen_bn(void **state)
{
    check_golden_step("tiny-resnet", GOLDEN("tiny-resnet-frozen"), BN_FROZEN);
}

/* One Adam step equals torch.optim.Adam's. Entries whose gradient is mere round-off (|g| of
 * the order of eps, e.g. tiny-mix conv3.bias which feeds a BatchNorm) are excluded: Adam turns
 * their noise into full-size steps in both implementations. */
static void test_adam_step_matches_pytorch(void **state)
{
    golden_file *g;
    assert_int_equal(golden_load(GOLDEN("tiny-mix"), &g), 0);
    run_t r;
    run_open(&r, "tiny-mix", 4, STRAT_COLUMN, 0, BN_EXACT, OPTIM_ADAM, 1234, 0.01f);
    float *images;
    int32_t *labels;
    load_golden_inputs(&r, g, &images, &labels);
    float loss;
    assert_int_equal(exec_step(r.exec, images, labels, true, &loss), LR_OK);
    assert_true(worst_param_error(&r, g, ".adam", false, "conv3") < 1e-4);
    free(labels);
    run_close(&r);
    golden_free(g);
}

/* ------------------------------------------------------------------ row vs column */

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

/* Frozen BatchNorm statistics of a fine-tuned model: per channel mean 0.1*(c%5) - 0.2,
 * var 0.5 + 0.25*(c%4). */
static void running_pattern(const net_node *n, float *r)
{
    for (int c = 0; c < n->c; c++)
        r[c] = 0.1f * (float)(c % 5) - 0.2f, r[n->c + c] = 0.5f + 0.25f * (float)(c % 4);
}

static void set_running_pattern(run_t *r)
{
    float v[2 * 256];
    for (int l = 1; l < r->net->n_nodes; l++)
        if (r->net->nodes[l].op == OP_BATCHNORM) {
            assert_true(r->net->nodes[l].c <= 256);
            running_pattern(&r->net->nodes[l], v);
            assert_int_equal(exec_set_running(r->exec, l, v, 2 * r->net->nodes[l].c), LR_OK);
        }
}

static bool running_is_pattern(run_t *r)
{
    float want[2 * 256], got[2 * 256];
    for (int l = 1; l < r->net->n_nodes; l++)
        if (r->net->nodes[l].op == OP_BATCHNORM) {
            running_pattern(&r->net->nodes[l], want);
            assert_int_equal(exec_get_running(r->exec, l, got, 2 * r->net->nodes[l].c), LR_OK);
            if (memcmp(want, got, sizeof(float) * 2 * (size_t)r->net->nodes[l].c) != 0)
                return false;
        }
    return true;
}

/* Runs `st` and column from the same weights and batch; returns the largest relative gradient
 * error and checks the loss and the counted peak. */
static double row_vs_column(const char *netname, plan_strategy st, int rows, plan_bn bn)
{
    const int batch = 3;
    run_t row, col;
    run_open(&row, netname, batch, st, rows, bn, OPTIM_MOMENTUM, 7, 0.05f);
    run_open(&col, netname, batch, STRAT_COLUMN, 0, bn, OPTIM_MOMENTUM, 7, 0.05f);
    if (bn == BN_FROZEN)
        set_running_pattern(&row);
    assert_int_equal(exec_copy_params(col.exec, row.exec), LR_OK);
    const net_node *in = &row.net->nodes[0];
    float *images = malloc(sizeof(float) * (size_t)batch * in->c * in->h * in->w);
    int32_t labels[batch];
    fill_batch(row.net, batch, images, labels);
    float lr_, lc;
    assert_int_equal(exec_step(row.exec, images, labels, false, &lr_), LR_OK);
    assert_int_equal(exec_step(col.exec, images, labels, false, &lc), LR_OK);
    if (bn == BN_EXACT)
        assert_true(memcmp(&lr_, &lc, sizeof lc) == 0); /* the loss bit for bit */
    if (bn == BN_FROZEN) { /* an affine map per row: the forward is the same bits */
        assert_true(lr_ == lc);
        assert_true(running_is_pattern(&row) && running_is_pattern(&col));
    }
    /* the allocator's counted peak is the prediction, byte for byte */
    sim_result sr;
    assert_int_equal(sim_replay(&row.s, ALLOC_EXACT, &sr), LR_OK);
    assert_int_equal(exec_memory_stats(row.exec)->counted_peak_bytes, sr.peak_bytes);
    assert_int_equal(exec_memory_stats(row.exec)->counted_peak_bytes, row.cost.peak_bytes);
    assert_true(exec_memory_stats(row.exec)->arena_bytes >= sr.peak_bytes);
    double worst = 0;
    for (int l = 1; l < row.net->n_nodes; l++) {
        int64_t n = row.net->nodes[l].params;
        if (!n)
            continue;
        float *a = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)n);
        assert_int_equal(exec_get_param_grad(row.exec, l, a, n), LR_OK);
        assert_int_equal(exec_get_param_grad(col.exec, l, b, n), LR_OK);
        worst = fmax(worst, rel_err(a, b, n));
        free(a);
        free(b);
    }
    free(images);
    run_close(&row);
    run_close(&col);
    return worst;
}

static void check_all_row_strategies(const char *netname, plan_bn bn, double tol)
{
    const plan_strategy strategies[] = {STRAT_CHECKPOINT, STRAT_ROW, STRAT_2PS, STRAT_OVERL,
                                        STRAT_2PS_H, STRAT_OVERL_H};
    const int rows[] = {2, 3, 7};
    for (size_t s = 0; s < sizeof strategies / sizeof strategies[0]; s++)
        for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
            double e = row_vs_column(netname, strategies[s], rows[k], bn);
            if (e > tol)
                print_message("%s %s rows %d bn %s: gradient error %.3g\n", netname,
                              plan_strategy_name(strategies[s]), rows[k], plan_bn_name(bn), e);
            assert_true(e <= tol);
        }
}

/* Every row strategy at N = 2, 3, 7 trains tiny-vgg exactly like column training: the same loss
 * bit for bit and every weight gradient within 1e-5 relative after one step; counted peak =
 * prediction. */
static void test_row_strategies_match_column_tiny_vgg(void **state)
{
    check_all_row_strategies("tiny-vgg", BN_EXACT, 1e-5);
}

/* The same for tiny-resnet with --bn exact: BatchNorm statistics and gradient reductions are
 * gathered over all partitions (STATS/GSTATS passes) before they are used. */
static void test_row_strategies_match_column_tiny_resnet_exact_bn(void **state)
{
    check_all_row_strategies("tiny-resnet", BN_EXACT, 1e-5);
}

/* The same for tiny-mix (upsample and concat inside the row region). */
static void test_row_strategies_match_column_tiny_mix(void **state)
{
    check_all_row_strategies("tiny-mix", BN_EXACT, 1e-5);
}

/* tiny-skip (tests/data/nets): a pooling of stride 3 reads one row in three of an exact
 * BatchNorm's output, so at N = 7 some 2ps partitions hold no row it reads. Their BatchNorm still
 * back-propagates (its dx holds the batch terms, which every row gets); the schedule skipped it,
 * and conv1's gradient was 0.125 off column's. */
static void test_row_strategies_match_column_tiny_skip(void **state)
{
    check_all_row_strategies(TINY_SKIP, BN_EXACT, 1e-5);
}

/* tiny-pad (tests/data/nets): conv1 pads its rows past the kernel's reach, so a partition of its
 * first or last output rows holds no rows of its input stripe: those rows are its bias (the CPU
 * backend aborted on the missing input before), exact and frozen BatchNorm. */
static void test_row_strategies_match_column_tiny_pad(void **state)
{
    check_all_row_strategies(TINY_PAD, BN_EXACT, 1e-5);
    check_all_row_strategies(TINY_PAD, BN_FROZEN, 1e-6);
}

/* Inference (dropout the identity, BatchNorm on running statistics) reads the flatten's output
 * the same way: tiny-flat's logits come out, finite. */
static void test_inference_reads_a_flattened_map(void **state)
{
    run_t r;
    run_open(&r, TINY_FLAT, 4, STRAT_COLUMN, 0, BN_EXACT, OPTIM_MOMENTUM, 3, 0.01f);
    const net_node *in = &r.net->nodes[0];
    float *images = malloc(sizeof(float) * 4 * (size_t)in->c * in->h * in->w), logits[4 * 10];
    int32_t labels[4];
    fill_batch(r.net, 4, images, labels);
    assert_int_equal(exec_predict_logits(r.exec, images, 4, logits), LR_OK);
    for (int k = 0; k < 4 * 10; k++)
        assert_true(isfinite(logits[k]));
    free(images);
    run_close(&r);
}

/* The same for tiny-flat, whose row region ends at the pooling before its flatten. */
static void test_row_strategies_match_column_tiny_flat(void **state)
{
    check_all_row_strategies(TINY_FLAT, BN_EXACT, 1e-5);
}

/* --bn frozen: every row strategy at N = 2, 3, 7 gives column's loss bit for bit (BatchNorm is
 * a per-row affine map of the running statistics) and every gradient, gamma and beta included,
 * within 1e-6 relative, on tiny-resnet and tiny-mix; the running statistics stay as they were. */
static void test_row_strategies_match_column_frozen_bn(void **state)
{
    check_all_row_strategies("tiny-resnet", BN_FROZEN, 1e-6);
    check_all_row_strategies("tiny-mix", BN_FROZEN, 1e-6);
}

/* --bn stripe is an approximation: statistics per stripe give different gradients, and the
 * deviation is measurable (not zero) while training still produces a finite loss. */
static void test_stripe_bn_is_approximate_and_measured(void **state)
{
    double e = row_vs_column("tiny-resnet", STRAT_2PS, 4, BN_STRIPE);
    print_message("tiny-resnet 2ps rows 4 --bn stripe: gradient deviation %.3g\n", e);
    assert_true(e > 1e-3);
    assert_true(isfinite(e));
}

/* With one partition the stripe is the whole map, so stripe BN is exact. */
static void test_stripe_bn_with_one_partition_is_exact(void **state)
{
    assert_true(row_vs_column("tiny-resnet", STRAT_CHECKPOINT, 0, BN_STRIPE) <= 1e-5);
}

/* --offload input, boundary and both: each row strategy's plan run with the input batch (and
 * the boundary rows kept for backward) in host memory computes the same loss and gradients, bit
 * for bit, as the same plan with everything on the device (the same rows are read, from a copy);
 * the counted device peak is the prediction and the replay, and so is the counted host memory. */
static void test_offloaded_input_runs_the_same_step(void **state)
{
    const char *nets[] = {"tiny-vgg", "tiny-resnet", "tiny-mix"};
    const plan_strategy strategies[] = {STRAT_CHECKPOINT, STRAT_ROW, STRAT_2PS, STRAT_OVERL,
                                        STRAT_2PS_H, STRAT_OVERL_H};
    for (unsigned mode = 1; mode <= (OFFLOAD_INPUT | OFFLOAD_BOUNDARY); mode++)
    for (size_t k = 0; k < sizeof nets / sizeof nets[0]; k++)
        for (size_t q = 0; q < sizeof strategies / sizeof strategies[0]; q++) {
            const int batch = 3;
            plan_config cfg = {.batch = batch, .dtype = DT_FP32, .optim = OPTIM_MOMENTUM,
                               .bn = BN_EXACT};
            run_t plain, off;
            run_open_cfg(&plain, nets[k], cfg, strategies[q], 3, NULL, 7, 0.05f);
            cfg.offload = mode;
            run_open_cfg(&off, nets[k], cfg, strategies[q], 3, &plain.plan->spec, 7, 0.05f);
            const net_node *in = &plain.net->nodes[0];
            float *images = malloc(sizeof(float) * (size_t)batch * in->c * in->h * in->w);
            int32_t labels[batch];
            fill_batch(plain.net, batch, images, labels);
            float lp, lo;
            assert_int_equal(exec_step(plain.exec, images, labels, false, &lp), LR_OK);
            assert_int_equal(exec_step(off.exec, images, labels, false, &lo), LR_OK);
            assert_true(memcmp(&lp, &lo, sizeof lp) == 0);
            sim_result sr;
            assert_int_equal(sim_replay(&off.s, ALLOC_EXACT, &sr), LR_OK);
            const exec_memory *m = exec_memory_stats(off.exec);
            assert_int_equal(m->counted_peak_bytes, sr.peak_bytes);
            assert_int_equal(m->counted_peak_bytes, off.cost.peak_bytes);
            assert_int_equal(m->host_counted_peak_bytes, sr.host_peak_bytes);
            assert_int_equal(m->host_counted_peak_bytes, off.cost.host_bytes);
            if (mode & OFFLOAD_INPUT)
                assert_true(off.cost.host_bytes >= cost_node_bytes(off.net, 0, batch, 4));
            assert_true(off.cost.peak_bytes <= plain.cost.peak_bytes);
            for (int l = 1; l < plain.net->n_nodes; l++) {
                int64_t n = plain.net->nodes[l].params;
                if (!n)
                    continue;
                float *a = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)n);
                assert_int_equal(exec_get_param_grad(plain.exec, l, a, n), LR_OK);
                assert_int_equal(exec_get_param_grad(off.exec, l, b, n), LR_OK);
                if (memcmp(a, b, sizeof(float) * (size_t)n) != 0)
                    fail_msg("%s %s: gradient of %s differs with the input offloaded", nets[k],
                             plan_strategy_name(strategies[q]), plain.net->nodes[l].name);
                free(a), free(b);
            }
            free(images);
            run_close(&plain);
            run_close(&off);
        }
}

/* ------------------------------------------------------------------ two streams, emulated */

/* The CPU backend with a lazy copy stream: kernels run at once; host-device copies (the copy
 * lane) wait in a queue, in order, until a kernel waits for an event recorded after them, or the
 * step ends (sync): the latest a copy stream may run them. A dependency the executor's events
 * miss lets a kernel overwrite a copy's source, or read its destination, too early. */
typedef struct {
    bool is_copy;
    int event;     /* a record marker when !is_copy */
    exec_op op;    /* the copy, its tensor addresses as they were when it was issued: */
    void **ptr;
} lazy_item;

typedef struct {
    lazy_item *q;
    int n, cap;
    bool *recorded;
    int n_events;
    int deferred, waits; /* copies that ran late, kernel waits on copies */
} lazy_ctx;

static lazy_ctx lazy;

static void lazy_push(lazy_item it)
{
    if (lazy.n == lazy.cap) {
        lazy.cap = lazy.cap ? 2 * lazy.cap : 64;
        lazy.q = realloc(lazy.q, sizeof(lazy_item) * (size_t)lazy.cap);
        assert_non_null(lazy.q);
    }
    lazy.q[lazy.n++] = it;
}

/* Runs the queue's first `upto` items. */
static lr_status lazy_flush(int upto)
{
    lr_status st = LR_OK;
    for (int i = 0; i < upto; i++) {
        lazy_item *it = &lazy.q[i];
        if (it->is_copy) {
            it->op.ptr = it->ptr;
            if (st == LR_OK)
                st = exec_cpu_backend.copy(NULL, &it->op);
            free(it->ptr);
            lazy.deferred++;
        } else {
            lazy.recorded[it->event] = true;
        }
    }
    memmove(lazy.q, lazy.q + upto, sizeof(lazy_item) * (size_t)(lazy.n - upto));
    lazy.n -= upto;
    return st;
}

static lr_status lazy_copy(void *ctx, const exec_op *op)
{
    if (op->lane != SIM_LANE_COPY)
        return exec_cpu_backend.copy(ctx, op);
    lazy_item it = {.is_copy = true, .op = *op};
    it.ptr = malloc(sizeof(void *) * (size_t)op->s->n_tensors);
    assert_non_null(it.ptr);
    memcpy(it.ptr, op->ptr, sizeof(void *) * (size_t)op->s->n_tensors);
    lazy_push(it);
    return LR_OK;
}

static lr_status lazy_lanes(void *ctx, int n_events)
{
    free(lazy.recorded);
    lazy.recorded = calloc((size_t)n_events + 1, sizeof(bool));
    lazy.n_events = n_events;
    return LR_OK;
}

/* A kernel waiting for an event the copy lane recorded runs the queue through the latest record
 * of it issued (what cudaStreamWaitEvent waits for). */
static lr_status lazy_wait(void *ctx, int lane, int event)
{
    assert_true(event >= 0 && event < lazy.n_events);
    int last = -1;
    for (int i = 0; i < lazy.n; i++)
        if (!lazy.q[i].is_copy && lazy.q[i].event == event)
            last = i;
    if (lane == SIM_LANE_COMPUTE)
        lazy.waits++;
    lr_status st = lane == SIM_LANE_COMPUTE && last >= 0 ? lazy_flush(last + 1) : LR_OK;
    assert_true(lazy.recorded[event]);
    return st;
}

static lr_status lazy_record(void *ctx, int lane, int event)
{
    assert_true(event >= 0 && event < lazy.n_events);
    if (lane == SIM_LANE_COPY)
        lazy_push((lazy_item){.is_copy = false, .event = event});
    else
        lazy.recorded[event] = true;
    return LR_OK;
}

static lr_status lazy_sync(void *ctx)
{
    return lazy_flush(lazy.n);
}

static exec_backend lazy_backend(void)
{
    exec_backend b = exec_cpu_backend;
    b.name = "cpu-lazy-copies";
    b.copy = lazy_copy;
    b.sync = lazy_sync;
    b.lanes = lazy_lanes;
    b.lane_wait = lazy_wait;
    b.lane_record = lazy_record;
    return b;
}

/* --offload input,boundary with the copies run as late as the executor's events allow computes
 * the same loss and gradients, bit for bit, as running every step in order: the events hold
 * every kernel that reads a copy's rows or overwrites its source's memory (row and 2ps keep and
 * reload boundaries, checkpoint and overl-h reload input rows). */
static void test_lazy_copy_stream_runs_the_same_step(void **state)
{
    const char *nets[] = {"tiny-vgg", "tiny-resnet", "tiny-mix"};
    const plan_strategy strategies[] = {STRAT_CHECKPOINT, STRAT_ROW, STRAT_2PS, STRAT_OVERL_H};
    exec_backend lb = lazy_backend();
    for (size_t k = 0; k < sizeof nets / sizeof nets[0]; k++)
        for (size_t q = 0; q < sizeof strategies / sizeof strategies[0]; q++) {
            const int batch = 2;
            plan_config cfg = {.batch = batch, .dtype = DT_FP32, .optim = OPTIM_MOMENTUM,
                               .bn = BN_EXACT, .offload = OFFLOAD_INPUT | OFFLOAD_BOUNDARY};
            run_t r;
            run_open_cfg(&r, nets[k], cfg, strategies[q], 3, NULL, 7, 0.05f);
            exec_hparams hp;
            exec_hparams_default(&hp);
            hp.seed = 7;
            exec_t *e;
            free(lazy.q); /* the previous plan's queue and events */
            free(lazy.recorded);
            memset(&lazy, 0, sizeof lazy);
            assert_int_equal(exec_create(r.net, r.plan, &r.s, &lb, NULL, &hp, &e), LR_OK);
            const net_node *in = &r.net->nodes[0];
            float *images = malloc(sizeof(float) * (size_t)batch * in->c * in->h * in->w);
            int32_t labels[batch];
            fill_batch(r.net, batch, images, labels);
            float lp, ll;
            for (int step = 0; step < 2; step++) { /* the second after an update */
                assert_int_equal(exec_step(r.exec, images, labels, true, &lp), LR_OK);
                assert_int_equal(exec_step(e, images, labels, true, &ll), LR_OK);
                if (memcmp(&lp, &ll, sizeof lp) != 0)
                    fail_msg("%s %s: loss %g with lazy copies, %g in order", nets[k],
                             plan_strategy_name(strategies[q]), ll, lp);
            }
            assert_true(lazy.deferred > 0 && lazy.waits > 0);
            for (int l = 1; l < r.net->n_nodes; l++) {
                int64_t n = r.net->nodes[l].params;
                if (!n)
                    continue;
                float *a = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)n);
                assert_int_equal(exec_get_param(r.exec, l, a, n), LR_OK);
                assert_int_equal(exec_get_param(e, l, b, n), LR_OK);
                if (memcmp(a, b, sizeof(float) * (size_t)n) != 0)
                    fail_msg("%s %s: weights of %s differ with lazy copies", nets[k],
                             plan_strategy_name(strategies[q]), r.net->nodes[l].name);
                free(a), free(b);
            }
            free(images);
            exec_free(e);
            run_close(&r);
        }
    free(lazy.q);
    free(lazy.recorded);
    memset(&lazy, 0, sizeof lazy);
}

/* Arena planning never overlaps two live tensors and never uses less than the peak. */
/* --boundaries recompute: every row strategy at N = 2, 3, 7 on the tiny nets still trains like
 * column training (the backward of row and 2ps stages recomputes each partition's cone, as
 * overl's does), with the counted peak equal to the prediction (row_vs_column checks both). */
static void test_recomputed_boundaries_match_column(void **state)
{
    open_recompute = true;
    check_all_row_strategies("tiny-vgg", BN_EXACT, 1e-5);
    check_all_row_strategies("tiny-resnet", BN_EXACT, 1e-5);
    check_all_row_strategies("tiny-mix", BN_EXACT, 1e-5);
    /* tiny-twin: 2ps-h's last stage ends at a global pooling, so its backward twin has one
     * partition and no statistics passes while its forward had them; the closed form kept the
     * forward's statistics past the stage (96 bytes over the replay at N = 3 and 7) */
    check_all_row_strategies(TINY_TWIN, BN_EXACT, 1e-5);
    open_recompute = false;
}

/* --boundaries auto chooses per stage: a plan whose stages alternate between recomputing their
 * boundaries and keeping them (2ps-h at N = 2, 3, 7 on the tiny nets, either alternation) trains
 * like column training, counted peak = prediction; some of these plans do mix the two. */
static void test_stages_recomputing_some_boundaries_match_column(void **state)
{
    const char *nets[] = {"tiny-vgg", "tiny-resnet", "tiny-mix"};
    const uint64_t masks[] = {0x5555555555555555ull, 0xaaaaaaaaaaaaaaaaull};
    const int rows[] = {2, 3, 7};
    int mixed = 0;
    for (size_t k = 0; k < sizeof nets / sizeof nets[0]; k++)
        for (size_t m = 0; m < 2; m++)
            for (size_t r = 0; r < 3; r++) {
                open_mask = masks[m];
                run_t probe;
                run_open(&probe, nets[k], 3, STRAT_2PS_H, rows[r], BN_EXACT, OPTIM_MOMENTUM, 7, 0.05f);
                int rec = 0, kept = 0;
                for (int s = 0; s < probe.plan->n_stages; s++) {
                    const plan_stage *st = &probe.plan->stages[s];
                    rec += st->bwd != NULL;
                    kept += !st->bwd && st->parts > 1;
                    assert_true(plan_spec_recomputes(&probe.plan->spec, s) == (st->bwd != NULL));
                }
                mixed += rec > 0 && kept > 0;
                run_close(&probe);
                double e = row_vs_column(nets[k], STRAT_2PS_H, rows[r], BN_EXACT);
                if (e > 1e-5)
                    print_message("%s 2ps-h rows %d stages %llx recompute: gradient error %.3g\n",
                                  nets[k], rows[r], (unsigned long long)masks[m], e);
                assert_true(e <= 1e-5);
                open_mask = 0;
            }
    assert_true(mixed > 0);
}

static void test_arena_offsets_never_overlap_live_tensors(void **state)
{
    run_t r;
    run_open(&r, "tiny-resnet", 2, STRAT_2PS_H, 3, BN_EXACT, OPTIM_ADAM, 1, 0.01f);
    int64_t *off = malloc(sizeof(int64_t) * (size_t)r.s.n_tensors);
    int64_t arena = exec_plan_arena(&r.s, 256, off);
    bool *live = calloc((size_t)r.s.n_tensors, 1);
    for (int i = 0; i < r.s.n_steps; i++) {
        const sched_step *p = &r.s.steps[i];
        if (p->op == STEP_FREE)
            live[p->t] = false;
        if (p->op != STEP_ALLOC)
            continue;
        int64_t a0 = off[p->t], a1 = a0 + r.s.tensors[p->t].bytes;
        assert_true(a0 >= 0 && a1 <= arena);
        for (int t = 0; t < r.s.n_tensors; t++)
            if (live[t] && r.s.tensors[t].bytes > 0 && a1 > a0)
                assert_true(a1 <= off[t] || off[t] + r.s.tensors[t].bytes <= a0);
        live[p->t] = true;
    }
    sim_result sr;
    assert_int_equal(sim_replay(&r.s, ALLOC_EXACT, &sr), LR_OK);
    assert_true(arena >= sr.peak_bytes);
    free(off);
    free(live);
    run_close(&r);
}

/* The convolutions' scratch is the planned workspace tensor: it grows with the thread count (a
 * slice per thread), the prediction includes it, and a schedule planned without it is refused at
 * its first convolution with the --workspace that would do; inference, outside the arena, runs
 * without it. */
static void test_cpu_workspace_is_planned_per_thread(void **state)
{
    net_t *net;
    assert_int_equal(net_open("tiny-vgg", &net), LR_OK);
    plan_config cfg = {.batch = 4, .dtype = DT_FP32, .optim = OPTIM_SGD, .bn = BN_EXACT};
    plan_request req = {.strategy = STRAT_2PS, .rows = 3};
    plan_choice c;
    assert_int_equal(strategy_choose(net, &cfg, &req, &c), LR_OK);
    plan_spec spec = c.spec;
    plan_t *plan;
    sched_t s;
    sched_init(&s);
    assert_int_equal(plan_build(net, &cfg, &spec, &plan), LR_OK);
    plan_emit(plan, &s);
    int saved = omp_get_max_threads();
    int64_t one, three;
    omp_set_num_threads(1);
    assert_int_equal(exec_cpu_backend.workspace_bytes(NULL, net, &s, 4, &one), LR_OK);
    omp_set_num_threads(3);
    assert_int_equal(exec_cpu_backend.workspace_bytes(NULL, net, &s, 4, &three), LR_OK);
    omp_set_num_threads(saved);
    assert_true(one > 0);
    assert_int_equal(three, 3 * one);
    exec_hparams hp;
    exec_hparams_default(&hp);
    exec_t *e;
    assert_int_equal(exec_create(net, plan, &s, &exec_cpu_backend, NULL, &hp, &e), LR_OK);
    const net_node *in = &net->nodes[0];
    float *images = malloc(sizeof(float) * 4 * (size_t)in->c * in->h * in->w);
    int32_t labels[4], classes[4];
    fill_batch(net, 4, images, labels);
    assert_int_equal(exec_predict(e, images, 4, classes), LR_OK);
    assert_int_equal(exec_step(e, images, labels, true, NULL), LR_ERR_RUNTIME);
    int64_t want;
    assert_int_equal(exec_cpu_backend.workspace_bytes(NULL, net, &s, 4, &want), LR_OK);
    char flag[64];
    snprintf(flag, sizeof flag, "--workspace %lld", (long long)want);
    print_message("%s\n", lr_last_error());
    assert_non_null(strstr(lr_last_error(), "conv1_1"));
    assert_non_null(strstr(lr_last_error(), flag));
    exec_free(e);
    plan_cost cost;
    assert_int_equal(exec_plan_workspace(net, &cfg, &spec, &exec_cpu_backend, NULL, &plan, &s,
                                         &cost),
                     LR_OK);
    assert_int_equal(plan->cfg.workspace_bytes, want);
    assert_int_equal(exec_create(net, plan, &s, &exec_cpu_backend, NULL, &hp, &e), LR_OK);
    assert_int_equal(exec_step(e, images, labels, true, NULL), LR_OK);
    assert_int_equal(exec_memory_stats(e)->counted_peak_bytes, cost.peak_bytes);
    exec_free(e);
    free(images);
    sched_free(&s);
    plan_free(plan);
    net_free(net);
}

/* Training steps change the weights and the loss on a fixed batch goes down (the update is
 * applied and gradients are zeroed between steps). */
static void test_training_lowers_the_loss_on_a_fixed_batch(void **state)
{
    run_t r;
    run_open(&r, "tiny-vgg", 8, STRAT_2PS, 3, BN_EXACT, OPTIM_MOMENTUM, 3, 0.05f);
    const net_node *in = &r.net->nodes[0];
    float *images = malloc(sizeof(float) * 8 * (size_t)in->c * in->h * in->w);
    int32_t labels[8];
    fill_batch(r.net, 8, images, labels);
    float first = 0, loss = 0;
    for (int k = 0; k < 60; k++) {
        assert_int_equal(exec_step(r.exec, images, labels, true, &loss), LR_OK);
        if (k == 0)
            first = loss;
    }
    print_message("tiny-vgg 2ps fixed batch: loss %.4f -> %.4f after 60 steps\n", first, loss);
    assert_true(loss < 0.5f * first);
    free(images);
    run_close(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_column_step_matches_pytorch_tiny_vgg),
        cmocka_unit_test(test_column_step_matches_pytorch_tiny_resnet),
        cmocka_unit_test(test_column_step_matches_pytorch_tiny_mix),
        cmocka_unit_test(test_column_step_matches_pytorch_tiny_flat),
        cmocka_unit_test(test_column_step_matches_pytorch_tiny_resnet_frozen_bn),
        cmocka_unit_test(test_adam_step_matches_pytorch),
        cmocka_unit_test(test_row_strategies_match_column_tiny_vgg),
        cmocka_unit_test(test_row_strategies_match_column_tiny_resnet_exact_bn),
        cmocka_unit_test(test_row_strategies_match_column_tiny_mix),
        cmocka_unit_test(test_row_strategies_match_column_tiny_flat),
        cmocka_unit_test(test_row_strategies_match_column_tiny_skip),
        cmocka_unit_test(test_row_strategies_match_column_tiny_pad),
        cmocka_unit_test(test_inference_reads_a_flattened_map),
        cmocka_unit_test(test_row_strategies_match_column_frozen_bn),
        cmocka_unit_test(test_stripe_bn_is_approximate_and_measured),
        cmocka_unit_test(test_stripe_bn_with_one_partition_is_exact),
        cmocka_unit_test(test_offloaded_input_runs_the_same_step),
        cmocka_unit_test(test_lazy_copy_stream_runs_the_same_step),
        cmocka_unit_test(test_recomputed_boundaries_match_column),
        cmocka_unit_test(test_stages_recomputing_some_boundaries_match_column),
        cmocka_unit_test(test_arena_offsets_never_overlap_live_tensors),
        cmocka_unit_test(test_cpu_workspace_is_planned_per_thread),
        cmocka_unit_test(test_training_lowers_the_loss_on_a_fixed_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
