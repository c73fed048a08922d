/* test_robust.c - hostile and huge input at library level: networks of thousands of layers
 * (a 2000-conv plain CNN, ResNet-1001) plan every strategy with the closed form equal to the
 * replay and no recursion that grows with depth; parsing stays linear in the layer count; absurd
 * sizes are clear errors, never wrapped counts; output files are all or nothing even on a full
 * device; the crashing inputs the fuzzers found (tests/regress/) replay clean.
 *
 * Times of the large networks are printed (measured, not asserted: they depend on the machine
 * and on sanitizers). Legend: K blocks, P partitions.
 * Deliberately not here: the command lines (tests/robust.sh), the zoo's numbers (test_plan.c).
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include <cmocka.h>

#include "analysis.h"
#include "data.h"
#include "exec.h"
#include "outfile.h"
#include "pytorch.h"
#include "rowdep.h"
#include "sim.h"

#define REGRESS_DIR LRCNN_SRCDIR "/tests/regress"

static char tmp_dir[] = "/tmp/lrcnn-robust-XXXXXX";

static int make_tmp_dir(void **state)
{
    return mkdtemp(tmp_dir) ? 0 : -1;
}

static int remove_tmp_dir(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *tmp_path(const char *name)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    return path;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------ networks built in memory */

typedef struct {
    char *p;
    size_t len, cap;
} text_buf;

static void put(text_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(text_buf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        assert_true(n >= 0);
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap = 2 * b->cap + (size_t)n + 1;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
}

static net_t *parse_text(text_buf *b)
{
    net_t *net = NULL;
    if (net_parse(b->p, b->len, "generated", &net) != LR_OK)
        fail_msg("net_parse: %s", lr_last_error());
    free(b->p);
    return net;
}

static void head(text_buf *b, const char *name, int c, int h, int w)
{
    *b = (text_buf){malloc(1 << 16), 0, 1 << 16};
    assert_non_null(b->p);
    put(b, "{\"name\": \"%s\", \"input\": {\"channels\": %d, \"height\": %d, \"width\": %d},\n"
           "\"layers\": [\n", name, c, h, w);
}

static void tail_classifier(text_buf *b, const char *after)
{
    put(b, "{\"name\": \"gap\", \"op\": \"global_avgpool\"%s%s%s},\n", *after ? ", \"inputs\": [\"" : "",
        after, *after ? "\"]" : "");
    put(b, "{\"name\": \"flat\", \"op\": \"flatten\"},\n"
           "{\"name\": \"fc\", \"op\": \"fc\", \"out_features\": 10},\n"
           "{\"name\": \"loss\", \"op\": \"softmax_xent\"}\n]}\n");
}

/* A plain CNN: `convs` x (3x3 conv, relu) at 32x32, then the classifier. */
static net_t *plain_cnn(int convs, int channels)
{
    text_buf b;
    head(&b, "plain", 3, 32, 32);
    for (int i = 0; i < convs; i++)
        put(&b, "{\"name\": \"conv%d\", \"op\": \"conv\", \"out_channels\": %d, \"kernel\": 3, \"pad\": 1},\n"
                "{\"name\": \"relu%d\", \"op\": \"relu\"},\n", i, channels, i);
    tail_classifier(&b, "");
    return parse_text(&b);
}

/* One pre-activation bottleneck (He et al. 2016): bn-relu-conv1x1, bn-relu-conv3x3 (stride),
 * bn-relu-conv1x1 (4x width), added to the input, or to a strided 1x1 projection of the first
 * relu in a group's first block. */
static void preact_block(text_buf *b, const char *p, const char *in, int width, int stride,
                         bool project)
{
    put(b, "{\"name\": \"%s_bn1\", \"op\": \"batchnorm\", \"inputs\": [\"%s\"]},\n", p, in);
    put(b, "{\"name\": \"%s_relu1\", \"op\": \"relu\"},\n", p);
    put(b, "{\"name\": \"%s_conv1\", \"op\": \"conv\", \"out_channels\": %d, \"kernel\": 1, \"bias\": false},\n",
        p, width);
    put(b, "{\"name\": \"%s_bn2\", \"op\": \"batchnorm\"},\n{\"name\": \"%s_relu2\", \"op\": \"relu\"},\n", p, p);
    put(b, "{\"name\": \"%s_conv2\", \"op\": \"conv\", \"out_channels\": %d, \"kernel\": 3, \"stride\": %d, "
           "\"pad\": 1, \"bias\": false},\n", p, width, stride);
    put(b, "{\"name\": \"%s_bn3\", \"op\": \"batchnorm\"},\n{\"name\": \"%s_relu3\", \"op\": \"relu\"},\n", p, p);
    put(b, "{\"name\": \"%s_conv3\", \"op\": \"conv\", \"out_channels\": %d, \"kernel\": 1, \"bias\": false},\n",
        p, 4 * width);
    if (project)
        put(b, "{\"name\": \"%s_proj\", \"op\": \"conv\", \"inputs\": [\"%s_relu1\"], \"out_channels\": %d, "
               "\"kernel\": 1, \"stride\": %d, \"bias\": false},\n", p, p, 4 * width, stride);
    put(b, "{\"name\": \"%s_add\", \"op\": \"add\", \"inputs\": [\"%s_conv3\", \"%s%s\"]},\n", p, p,
        project ? p : in, project ? "_proj" : "");
}

/* ResNet-1001 for CIFAR (pre-activation, 3 groups of 111 bottlenecks: 333 blocks, 10.3M
 * parameters, 1000 BatchNorm layers, 3340 layers). */
static net_t *resnet1001(void)
{
    text_buf b;
    head(&b, "resnet1001", 3, 32, 32);
    put(&b, "{\"name\": \"conv0\", \"op\": \"conv\", \"out_channels\": 16, \"kernel\": 3, \"pad\": 1, \"bias\": false},\n");
    char prev[48] = "conv0", p[32];
    const int width[3] = {16, 32, 64}, stride[3] = {1, 2, 2};
    for (int g = 0; g < 3; g++)
        for (int k = 0; k < 111; k++) {
            snprintf(p, sizeof p, "g%db%d", g, k);
            preact_block(&b, p, prev, width[g], k ? 1 : stride[g], k == 0);
            snprintf(prev, sizeof prev, "%s_add", p);
        }
    put(&b, "{\"name\": \"bn_final\", \"op\": \"batchnorm\", \"inputs\": [\"%s\"]},\n"
            "{\"name\": \"relu_final\", \"op\": \"relu\"},\n", prev);
    tail_classifier(&b, "");
    return parse_text(&b);
}

/* `convs` x (3x3 conv, batchnorm): exact BatchNorm repeats the stage once per BN layer. */
static net_t *bn_chain(int convs)
{
    text_buf b;
    head(&b, "bnchain", 16, 32, 32);
    for (int i = 0; i < convs; i++)
        put(&b, "{\"name\": \"c%d\", \"op\": \"conv\", \"out_channels\": 16, \"kernel\": 3, \"pad\": 1, \"bias\": false},\n"
                "{\"name\": \"b%d\", \"op\": \"batchnorm\"},\n", i, i);
    tail_classifier(&b, "");
    return parse_text(&b);
}

/* ------------------------------------------------------------------ planning checks */

static plan_config config(int batch, plan_bn bn)
{
    plan_config c = {.batch = batch, .dtype = DT_FP32, .optim = OPTIM_MOMENTUM, .bn = bn};
    return c;
}

/* Plans, emits, validates and replays one strategy; the closed form must equal the replay.
 * Returns the seconds it took. */
static double plan_and_check(const net_t *net, const plan_config *cfg, plan_strategy st, int rows)
{
    double t0 = now_s();
    plan_request req = {.strategy = st, .rows = st >= STRAT_ROW ? rows : 0};
    plan_choice c;
    if (strategy_choose(net, cfg, &req, &c) != LR_OK)
        fail_msg("%s %s: %s", net->name, plan_strategy_name(st), lr_last_error());
    plan_t *plan;
    assert_int_equal(plan_build(net, cfg, &c.spec, &plan), LR_OK);
    if (plan_check_emit(plan) != LR_OK)
        fail_msg("%s %s: %s", net->name, plan_strategy_name(st), lr_last_error());
    sched_t s;
    sched_init(&s);
    plan_emit(plan, &s);
    assert_int_equal(sched_validate(&s), LR_OK);
    sim_result r;
    assert_int_equal(sim_replay(&s, ALLOC_EXACT, &r), LR_OK);
    if (r.peak_bytes != c.cost.peak_bytes)
        fail_msg("%s %s: closed form %lld, replay %lld", net->name, plan_strategy_name(st),
                 (long long)c.cost.peak_bytes, (long long)r.peak_bytes);
    assert_int_equal(r.end_bytes, 0);
    assert_true(r.flops == c.cost.flops);
    sched_free(&s);
    plan_free(plan);
    return now_s() - t0;
}

static void plan_every_strategy(const net_t *net, plan_bn bn, int rows)
{
    plan_config cfg = config(2, bn);
    for (int st = 0; st < STRAT_COUNT; st++) {
        double t = plan_and_check(net, &cfg, (plan_strategy)st, rows);
        print_message("  %s (%d layers) %-10s --rows %d --bn %s: %.2f s\n", net->name,
                      net->n_nodes - 1, plan_strategy_name((plan_strategy)st), rows,
                      plan_bn_name(bn), t);
    }
}

/* ------------------------------------------------------------------ large networks */

/* 2000 conv layers (4004 layers): every strategy with --rows 4 plans, emits a well-formed
 * schedule, and its closed-form peak equals the replay to the byte. */
static void test_plain_cnn_of_2000_convs_plans_every_strategy(void **state)
{
    net_t *net = plain_cnn(2000, 4);
    assert_int_equal(net->n_nodes, 4005);
    plan_every_strategy(net, BN_STRIPE, 4);
    net_free(net);
}

/* ResNet-1001 (3340 layers, 1000 BatchNorm layers) with stripe BatchNorm: every strategy
 * plans and agrees with the replay. */
static void test_resnet1001_plans_every_strategy(void **state)
{
    net_t *net = resnet1001();
    assert_int_equal(net->n_nodes, 3341);
    assert_true(net->params > 10200000 && net->params < 10400000);
    plan_every_strategy(net, BN_STRIPE, 4);
    net_free(net);
}

/* Exact BatchNorm in one partitioned stage runs a statistics pass per BN layer over the stage:
 * ResNet-1001 in one 2ps stage of 4 partitions is ~7.6M kernel runs, near PLAN_MAX_RUNS. The
 * N search keeps to plans lrcnn builds; overl, whose partitions each recompute the whole cone,
 * ends its region early where it can build one, and with --region at the whole region exceeds
 * the limit at any N and says why instead of building a 7 GB schedule; the hybrid (three
 * stages) plans and agrees with the replay. */
static void test_resnet1001_exact_bn_in_one_stage_is_bounded(void **state)
{
    net_t *net = resnet1001();
    plan_config cfg = config(2, BN_EXACT);
    double t0 = now_s();
    plan_request req = {.strategy = STRAT_2PS};
    plan_choice c;
    assert_int_equal(strategy_choose(net, &cfg, &req, &c), LR_OK);
    plan_t *plan;
    assert_int_equal(plan_build(net, &cfg, &c.spec, &plan), LR_OK);
    assert_true(plan_run_bound(plan) <= PLAN_MAX_RUNS);
    assert_true(c.spec.parts[0] >= 2);
    plan_free(plan);
    print_message("  resnet1001 2ps --bn exact: N search (closed form only) picks %d partitions, %.2f s\n",
                  c.spec.parts[0], now_s() - t0);

    req.strategy = STRAT_OVERL; /* chooses a region it can build: an early end */
    assert_int_equal(strategy_choose(net, &cfg, &req, &c), LR_OK);
    assert_true(c.region_chosen && c.spec.cut[0] < plan_default_region_end(net));
    assert_int_equal(plan_build(net, &cfg, &c.spec, &plan), LR_OK);
    assert_int_equal(plan_check_emit(plan), LR_OK);
    plan_free(plan);
    req.region_end = plan_default_region_end(net); /* --region: the whole region */
    assert_int_equal(strategy_choose(net, &cfg, &req, &c), LR_OK);
    assert_int_equal(plan_build(net, &cfg, &c.spec, &plan), LR_OK);
    assert_int_equal(plan_check_emit(plan), LR_ERR_INPUT);
    assert_non_null(strstr(lr_last_error(), "--bn exact"));
    assert_non_null(strstr(lr_last_error(), "1000 here"));
    assert_non_null(strstr(lr_last_error(), "overl"));
    plan_free(plan);

    double t = plan_and_check(net, &cfg, STRAT_2PS_H, 4);
    print_message("  resnet1001 2ps-h --rows 4 --bn exact: %.2f s\n", t);
    net_free(net);
}

/* Every strategy with --rows 3 planned, emitted and replayed (caching model); the number of
 * failures. */
static int plan_everything(const net_t *net)
{
    plan_config cfg = config(2, BN_STRIPE);
    int failures = 0;
    for (int st = 0; st < STRAT_COUNT; st++) {
        plan_request req = {.strategy = (plan_strategy)st, .rows = st >= STRAT_ROW ? 3 : 0};
        plan_choice c;
        plan_t *plan;
        sched_t s;
        sim_result r;
        if (strategy_choose(net, &cfg, &req, &c) != LR_OK ||
            plan_build(net, &cfg, &c.spec, &plan) != LR_OK) {
            failures++;
            continue;
        }
        sched_init(&s);
        plan_emit(plan, &s);
        failures += sim_replay(&s, ALLOC_CACHING, &r) != LR_OK;
        sched_free(&s);
        plan_free(plan);
    }
    return failures;
}

/* Nothing recurses with the network's depth: the whole pipeline for a 4004-layer network runs
 * in a child process whose stack may not grow past 1 MiB (ample for sanitizer frames, far too
 * small for one frame per layer). (A thread with a small stack would do, but tests see sim/'s
 * sched.h in place of the system's, which pthread.h needs.) */
static void test_planning_does_not_recurse_with_depth(void **state)
{
    net_t *net = plain_cnn(2000, 2);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit lim = {1 << 20, 1 << 20};
        if (setrlimit(RLIMIT_STACK, &lim) != 0)
            _exit(3);
#ifdef _OPENMP
        /* the parent's OpenMP threads do not exist here: a team of more would wait for them */
        omp_set_num_threads(1);
#endif
        _exit(plan_everything(net) ? 1 : 0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status))
        fail_msg("the planner died on a 1 MiB stack (signal %d)", WTERMSIG(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    net_free(net);
}

/* The loader resolves names through a hash index: 99999 layers (the most a file may have) parse
 * in about a second, where a linear lookup per layer took a minute. Measured, not asserted. */
static void test_parsing_99999_layers_is_linear(void **state)
{
    text_buf b;
    head(&b, "wide", 1, 4, 4);
    for (int i = 0; i < 99995; i++)
        put(&b, "{\"name\": \"r%d\", \"op\": \"relu\"%s},\n", i,
            i % 1000 == 999 ? ", \"inputs\": [\"input\"]" : "");
    tail_classifier(&b, "r99994");
    double t0 = now_s();
    net_t *net = NULL;
    lr_status s = net_parse(b.p, b.len, "wide", &net);
    double t = now_s() - t0;
    free(b.p);
    /* every 1000th relu reads the input, so the relu before it has no reader: an error that
     * names that layer, found after resolving every input */
    assert_int_equal(s, LR_ERR_INPUT);
    assert_non_null(strstr(lr_last_error(), "r998"));
    assert_non_null(strstr(lr_last_error(), "never used"));
    print_message("  parsing 99999 layers: %.2f s\n", t);
    head(&b, "deep", 1, 4, 4);
    for (int i = 0; i < 99995; i++)
        put(&b, "{\"name\": \"r%d\", \"op\": \"relu\"},\n", i);
    tail_classifier(&b, "");
    t0 = now_s();
    net = parse_text(&b);
    print_message("  parsing and inferring 99999 layers: %.2f s\n", now_s() - t0);
    assert_int_equal(net->n_nodes, 100000);
    assert_int_equal(net_find(net, "r99994"), 99995);
    net_free(net);
}

/* --rows 4096 on a 99991-layer region would mean 4e8 row ranges (11 GB) and minutes of closed
 * form: plan_build refuses it at once (PLAN_MAX_RANGES), and a plan under that limit whose
 * schedule would still be too large is refused before it is emitted (PLAN_MAX_RUNS). Before,
 * the run took 10 GB and over two minutes. */
static void test_huge_partition_counts_are_refused(void **state)
{
    text_buf b;
    head(&b, "relu100k", 1, 4096, 1);
    for (int i = 0; i < 99990; i++)
        put(&b, "{\"name\": \"r%d\", \"op\": \"relu\"},\n", i);
    tail_classifier(&b, "");
    net_t *net = parse_text(&b);
    plan_config cfg = config(1, BN_STRIPE);
    plan_request req = {.strategy = STRAT_2PS, .rows = 4096};
    plan_choice c;
    double t0 = now_s();
    assert_int_equal(strategy_choose(net, &cfg, &req, &c), LR_ERR_INPUT);
    assert_non_null(strstr(lr_last_error(), "4096 partitions of a 99991-layer stage")); /* relus and gap */
    assert_non_null(strstr(lr_last_error(), "fewer --rows"));
    print_message("  --rows 4096 on 99990 layers refused in %.2f s\n", now_s() - t0);
    req.rows = 300;
    assert_int_equal(strategy_choose(net, &cfg, &req, &c), LR_OK);
    plan_t *plan;
    assert_int_equal(plan_build(net, &cfg, &c.spec, &plan), LR_OK);
    assert_int_equal(plan_check_emit(plan), LR_ERR_INPUT);
    assert_non_null(strstr(lr_last_error(), "kernel runs"));
    assert_null(strstr(lr_last_error(), "--bn"));
    plan_free(plan);
    net_free(net);
}

/* ------------------------------------------------------------------ sizes and overflow */

/* Absurd batch or input sizes are LR_ERR_INPUT naming the batch and the layer, never a wrapped
 * count: a batch of 2^30 on vgg16 (each layer's counts fit, a step's FLOPs do not); a
 * 10^7 x 10^7 input (conv1_2's FLOPs do not fit); resnet50 at the largest input accepted, and
 * one above. */
static void test_absurd_sizes_are_clear_errors(void **state)
{
    net_t *net;
    analysis_t *a = malloc(sizeof *a);
    assert_non_null(a);
    plan_request req = {0};
    assert_int_equal(net_open("vgg16", &net), LR_OK);
    plan_config cfg = config(1 << 30, BN_EXACT);
    assert_int_equal(cost_check_layers(net, cfg.batch, 4), LR_OK);
    assert_int_equal(analysis_run(net, &cfg, &req, 1u << STRAT_2PS, ALLOC_EXACT, a), LR_ERR_INPUT);
    assert_non_null(strstr(lr_last_error(), "batch 1073741824"));
    assert_non_null(strstr(lr_last_error(), "FLOP count overflows"));
    assert_null(strstr(lr_last_error(), "--bn")); /* vgg16 has no BatchNorm */
    assert_int_equal(net_reshape(net, 10000000, 10000000), LR_OK); /* adaptive pooling before fc6 */
    assert_int_equal(cost_check_layers(net, 1, 4), LR_ERR_INPUT);
    assert_non_null(strstr(lr_last_error(), "conv1_2 (64 x 10000000 x 10000000 per image)"));
    assert_non_null(strstr(lr_last_error(), "overflows 64-bit"));
    net_free(net);

    assert_int_equal(net_open("resnet50", &net), LR_OK);
    assert_int_equal(net_reshape(net, 1 << 24, 1 << 24), LR_OK);
    cfg = config(1, BN_STRIPE);
    assert_int_equal(analysis_run(net, &cfg, &req, 1u << STRAT_2PS, ALLOC_EXACT, a), LR_ERR_INPUT);
    assert_non_null(strstr(lr_last_error(), "overflows 64 bits at batch 1"));
    assert_int_equal(net_reshape(net, (1 << 24) + 1, 224), LR_ERR_USAGE);
    free(a);
    net_free(net);
}

/* The largest count of each layer, exactly, in 128 bits: its whole output's bytes, and its
 * forward, backward or statistics FLOPs (cost.h), for `batch` images. */
static __int128 layer_count(const net_t *net, int l, int batch, int eb)
{
    const net_node *n = &net->nodes[l];
    __int128 elems = (__int128)batch * n->c * n->h * n->w, bytes = elems * eb;
    __int128 fwd = l ? (__int128)cost_fwd_flops(net, l, 1, n->h) * batch : 0;
    __int128 bwd = l ? (__int128)cost_bwd_flops(net, l, 1, n->h) * batch : 0;
    __int128 most = bytes > fwd ? bytes : fwd;
    most = bwd > most ? bwd : most;
    return 3 * elems > most ? 3 * elems : most;
}

/* The guard is exact: it accepts every batch whose counts fit in int64 and refuses the first
 * that does not (computed here in 128-bit arithmetic), and at the accepted edge the planner's
 * counts are the true ones, not wrapped. vgg16 at 32768 x 32768 (8.6e9 elements in conv4_3,
 * 2.6e15 FLOPs a step for row) plans and emits: the old bound refused it. */
static void test_overflow_guard_refuses_only_what_overflows(void **state)
{
    net_t *net;
    assert_int_equal(net_open("vgg16", &net), LR_OK);
    assert_int_equal(net_reshape(net, 4096, 4096), LR_OK);
    int64_t edge = INT64_MAX; /* the largest batch whose every count fits */
    int worst = 0;
    for (int l = 0; l < net->n_nodes; l++) {
        __int128 one = layer_count(net, l, 1, 4);
        if ((int64_t)((__int128)INT64_MAX / one) < edge)
            edge = (int64_t)((__int128)INT64_MAX / one), worst = l;
    }
    assert_true(edge < (1 << 30));
    assert_true(layer_count(net, worst, (int)edge, 4) <= INT64_MAX);
    assert_true(layer_count(net, worst, (int)edge + 1, 4) > INT64_MAX);
    assert_int_equal(cost_check_layers(net, (int)edge, 4), LR_OK);
    assert_true((__int128)cost_bwd_flops(net, worst, (int)edge, net->nodes[worst].h) ==
                    (__int128)cost_bwd_flops(net, worst, 1, net->nodes[worst].h) * edge ||
                (__int128)cost_stats_flops(net, worst, (int)edge, net->nodes[worst].h) ==
                    (__int128)cost_stats_flops(net, worst, 1, net->nodes[worst].h) * edge);
    assert_int_equal(cost_check_layers(net, (int)edge + 1, 4), LR_ERR_INPUT);
    assert_non_null(strstr(lr_last_error(), net->nodes[worst].name));

    assert_int_equal(net_reshape(net, 32768, 32768), LR_OK);
    plan_config cfg = config(1, BN_EXACT);
    assert_int_equal(cost_check_layers(net, 1, 4), LR_OK);
    analysis_t *a = malloc(sizeof *a);
    assert_non_null(a);
    plan_request req = {.strategy = STRAT_ROW, .rows = 128};
    assert_int_equal(analysis_run(net, &cfg, &req, 1u << STRAT_ROW, ALLOC_EXACT, a), LR_OK);
    assert_int_equal(a->e[0].choice.cost.peak_bytes, a->e[0].exact.peak_bytes);
    /* column: about 3 x 31 GFLOP x (32768 / 224)^2 = 2.0e15; row recomputes a third more */
    assert_true(a->e[0].exact.flops > (int64_t)2e15 && a->e[0].exact.flops < (int64_t)3e15);
    free(a);
    net_free(net);
}

/* Found by UBSan on a 400-block conv/BN chain: exact BatchNorm repeats a deep stage's forward
 * once per BN layer (here 32 overlapping partitions x 400 passes), so a step's FLOPs overflow
 * int64 although every run's fit (cost_check_layers), and the closed form's FLOP sum overflowed
 * (undefined behaviour). It now saturates and planning fails naming the batch; at a batch whose FLOPs fit,
 * the schedule-size limit names --bn exact instead. */
static void test_closed_form_flop_overflow_is_an_error(void **state)
{
    net_t *net = bn_chain(400);
    plan_config cfg = config(250000, BN_EXACT);
    assert_int_equal(cost_check_layers(net, cfg.batch, 4), LR_OK);
    plan_request req = {.strategy = STRAT_OVERL, .rows = 32};
    plan_choice c;
    assert_int_equal(strategy_choose(net, &cfg, &req, &c), LR_ERR_INPUT);
    assert_non_null(strstr(lr_last_error(), "FLOP count overflows"));
    assert_non_null(strstr(lr_last_error(), "batch 250000"));

    cfg.batch = 100000;
    assert_int_equal(strategy_choose(net, &cfg, &req, &c), LR_OK);
    plan_t *plan;
    assert_int_equal(plan_build(net, &cfg, &c.spec, &plan), LR_OK);
    assert_int_equal(plan_check_emit(plan), LR_ERR_INPUT);
    assert_non_null(strstr(lr_last_error(), "400 here"));
    plan_free(plan);
    /* what analysis_run reports for the same request (the CLI's path) */
    analysis_t *a = malloc(sizeof *a);
    assert_non_null(a);
    assert_int_equal(analysis_run(net, &cfg, &req, 1u << STRAT_OVERL, ALLOC_EXACT, a), LR_ERR_INPUT);
    assert_non_null(strstr(lr_last_error(), "kernel runs"));
    free(a);
    net_free(net);
}

/* Found by fuzz_net (UBSan): 70 stride-2 convs on a 1x1 input make the receptive-field jump
 * 2^70, and converting the grown field to int64 was undefined. It saturates at ROWDEP_RF_MAX. */
static void test_receptive_field_saturates_on_deep_strided_stacks(void **state)
{
    net_t *net;
    assert_int_equal(net_load(REGRESS_DIR "/net-rf-overflow.json", &net), LR_OK);
    rowdep_info *info = malloc(sizeof *info * (size_t)net->n_nodes);
    assert_non_null(info);
    rowdep_analyze(net, info);
    int last_conv = net_find(net, "c69");
    assert_true(last_conv > 0);
    assert_true(info[last_conv].rf == ROWDEP_RF_MAX);
    assert_true(info[10].rf > 1 && info[10].rf < ROWDEP_RF_MAX);
    free(info);
    net_free(net);
}

/* An idx header whose dimensions multiply past 2^64 used to wrap to a small count that could
 * match the file; it is now "inconsistent" before any data is read. */
static void test_idx_header_that_claims_too_much_is_rejected(void **state)
{
    uint8_t img[16 + 64] = {0, 0, 8, 3, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 1};
    uint8_t lab[8 + 1] = {0, 0, 8, 1, 0, 0, 0, 1};
    /* 2^24 x 2^24 x (2^16 + 1) images: the product wraps to 2^48 in 64 bits */
    char dir[300], raw[400], cmd[1000];
    snprintf(dir, sizeof dir, "%s/idx", tmp_dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    const struct {
        const char *name;
        const uint8_t *data;
        size_t n;
    } files[] = {{"train-images-idx3-ubyte", img, sizeof img}, {"train-labels-idx1-ubyte", lab, sizeof lab}};
    for (int i = 0; i < 2; i++) {
        snprintf(raw, sizeof raw, "%s/%s", dir, files[i].name);
        FILE *f = fopen(raw, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(files[i].data, 1, files[i].n, f), files[i].n);
        fclose(f);
        snprintf(cmd, sizeof cmd, "gzip -f '%s'", raw);
        assert_int_equal(system(cmd), 0);
    }
    data_set d;
    assert_int_equal(data_load_fashion(dir, "train", 0, &d), LR_ERR_INPUT);
    assert_non_null(strstr(lr_last_error(), "train-images-idx3-ubyte.gz"));
    assert_non_null(strstr(lr_last_error(), "claim more"));
}

/* ------------------------------------------------------------------ output files */

static bool is_char_device(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISCHR(st.st_mode);
}

static int tmp_files_left(void)
{
    DIR *d = opendir(tmp_dir);
    int n = 0;
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* A device is written in place, never renamed over (as root that would replace /dev/full with
 * a regular file), and a failing write is LR_ERR_IO naming it: /dev/full fails at commit. */
static void test_outfile_on_a_full_device_fails_and_keeps_the_device(void **state)
{
    if (!is_char_device("/dev/full"))
        skip();
    lr_outfile o;
    assert_int_equal(lr_outfile_open(&o, "/dev/full"), LR_OK);
    for (int i = 0; i < 10000; i++)
        fprintf(o.f, "line %d of a report that does not fit\n", i);
    assert_int_equal(lr_outfile_commit(&o), LR_ERR_IO);
    assert_non_null(strstr(lr_last_error(), "/dev/full"));
    assert_non_null(strstr(lr_last_error(), "write failed"));
    assert_true(is_char_device("/dev/full"));
    /* /dev/null takes anything and stays a device */
    assert_int_equal(lr_outfile_open(&o, "/dev/null"), LR_OK);
    fputs("nothing\n", o.f);
    assert_int_equal(lr_outfile_commit(&o), LR_OK);
    assert_true(is_char_device("/dev/null"));
}

/* Places that cannot hold the file fail at open with LR_ERR_IO naming the path: below a file
 * (no directory can be made there), a read-only file system (/proc), a directory in the file's
 * place. */
static void test_outfile_unwritable_places_fail_at_open(void **state)
{
    lr_outfile o;
    assert_int_equal(lr_outfile_open(&o, "/dev/null/dir/out.txt"), LR_ERR_IO);
    assert_non_null(strstr(lr_last_error(), "/dev/null/dir/out.txt"));
    assert_non_null(strstr(lr_last_error(), "/dev/null is not a directory"));
    assert_int_equal(lr_outfile_open(&o, "/proc/lrcnn-robust-out.txt"), LR_ERR_IO);
    assert_non_null(strstr(lr_last_error(), "/proc/lrcnn-robust-out.txt"));
    assert_int_equal(lr_outfile_open(&o, tmp_dir), LR_ERR_IO);
    assert_non_null(strstr(lr_last_error(), "is a directory"));
    lr_outfile_abort(&o); /* safe on a never-opened outfile */
}

/* Missing directories on the way to an output file are made as `mkdir -p` would, existing
 * ones are left alone, and nothing is made when the file is not written (abort keeps them). */
static void test_outfile_makes_missing_directories(void **state)
{
    const char *path = tmp_path("a/b/c/out.txt");
    lr_outfile o;
    assert_int_equal(lr_outfile_open(&o, path), LR_OK);
    fputs("made\n", o.f);
    assert_int_equal(lr_outfile_commit(&o), LR_OK);
    assert_string_equal(read_all(path), "made\n");
    assert_int_equal(lr_outfile_open(&o, tmp_path("a/b/other.txt")), LR_OK);
    assert_int_equal(lr_outfile_commit(&o), LR_OK);
    assert_int_equal(lr_make_parents(tmp_path("a/b/c/out.txt/x"), "--output"), LR_ERR_IO);
    assert_non_null(strstr(lr_last_error(), "out.txt is not a directory"));
    assert_non_null(strstr(lr_last_error(), "--output"));
    assert_int_equal(tmp_files_left(), 0);
}

/* An aborted write leaves the old file as it was and no temporary file; a committed one
 * replaces it whole. */
static void test_outfile_is_all_or_nothing(void **state)
{
    const char *path = tmp_path("keep.txt");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("old\n", f);
    fclose(f);
    lr_outfile o;
    assert_int_equal(lr_outfile_open(&o, path), LR_OK);
    fputs("half of the new", o.f);
    lr_outfile_abort(&o);
    assert_string_equal(read_all(path), "old\n");
    assert_int_equal(tmp_files_left(), 0);
    assert_int_equal(lr_outfile_open(&o, path), LR_OK);
    fputs("new\n", o.f);
    assert_int_equal(lr_outfile_commit(&o), LR_OK);
    assert_string_equal(read_all(path), "new\n");
    assert_int_equal(tmp_files_left(), 0);
}

/* Writing through a symbolic link replaces the file it points to and keeps the link. */
static void test_outfile_through_a_link_replaces_the_target(void **state)
{
    char target[256], link[256];
    snprintf(target, sizeof target, "%s", tmp_path("target.txt"));
    snprintf(link, sizeof link, "%s", tmp_path("link.txt"));
    FILE *f = fopen(target, "w");
    assert_non_null(f);
    fputs("old\n", f);
    fclose(f);
    assert_int_equal(symlink(target, link), 0);
    lr_outfile o;
    assert_int_equal(lr_outfile_open(&o, link), LR_OK);
    fputs("new\n", o.f);
    assert_int_equal(lr_outfile_commit(&o), LR_OK);
    struct stat st;
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_string_equal(read_all(target), "new\n");
    assert_int_equal(tmp_files_left(), 0);
}

/* The timeline and trace writers report a full device as LR_ERR_IO naming it. */
static void test_schedule_writers_report_a_full_device(void **state)
{
    if (!is_char_device("/dev/full"))
        skip();
    net_t *net;
    assert_int_equal(net_open("tiny-resnet", &net), LR_OK);
    plan_config cfg = config(2, BN_EXACT);
    plan_request req = {.strategy = STRAT_2PS, .rows = 3};
    plan_choice c;
    assert_int_equal(strategy_choose(net, &cfg, &req, &c), LR_OK);
    plan_t *plan;
    assert_int_equal(plan_build(net, &cfg, &c.spec, &plan), LR_OK);
    sched_t s;
    sched_init(&s);
    plan_emit(plan, &s);
    assert_int_equal(sim_write_timeline_csv(&s, net, ALLOC_CACHING, "/dev/full"), LR_ERR_IO);
    assert_non_null(strstr(lr_last_error(), "/dev/full"));
    assert_int_equal(sim_write_trace(&s, net, ALLOC_EXACT, "/dev/full"), LR_ERR_IO);
    assert_non_null(strstr(lr_last_error(), "/dev/full"));
    assert_int_equal(sim_write_trace(&s, net, ALLOC_EXACT, "/dev/null/t.json"), LR_ERR_IO);
    assert_true(is_char_device("/dev/full"));
    sched_free(&s);
    plan_free(plan);
    net_free(net);
}

/* ------------------------------------------------------------------ loader errors */

typedef struct {
    const char *what, *layers; /* the "layers" value, or a whole document when it starts with '!' */
    lr_status status;
    const char *mention;
} bad_net;

#define INPUT_8 "\"input\": {\"channels\": 1, \"height\": 8, \"width\": 8}"
#define HEAD_8 "{\"name\": \"b\", " INPUT_8 ", \"layers\": "
#define LOSS ", {\"name\": \"f\", \"op\": \"fc\", \"out_features\": 2}, {\"name\": \"l\", \"op\": \"softmax_xent\"}]}"

/* Every loader error names the file and the JSON path (or the layer) of the problem, and is a
 * parse error (malformed) or an input error (well formed but impossible): exit 2 either way. */
static void test_every_loader_error_names_its_place(void **state)
{
    const bad_net cases[] = {
        {"root not an object", "![1, 2]", LR_ERR_PARSE, "(top level): expected a JSON object"},
        {"name empty", "!{\"name\": \"\", " INPUT_8 ", \"layers\": []}", LR_ERR_PARSE, "name: expected 1 to 63"},
        {"description a number", "!{\"name\": \"b\", \"description\": 3, " INPUT_8 ", \"layers\": []}", LR_ERR_PARSE, "description: expected a string"},
        {"layers missing", "!{\"name\": \"b\", " INPUT_8 "}", LR_ERR_PARSE, "layers: missing"},
        {"input missing", "!{\"name\": \"b\", \"layers\": [{}]}", LR_ERR_PARSE, "input: missing"},
        {"input not an object", "!{\"name\": \"b\", \"input\": 3, \"layers\": [{}]}", LR_ERR_PARSE, "input: expected an object"},
        {"input height missing", "!{\"name\": \"b\", \"input\": {\"channels\": 1, \"width\": 8}, \"layers\": [{}]}", LR_ERR_PARSE, "input.height: missing"},
        {"layer not an object", "[3]}", LR_ERR_PARSE, "layers[0]: expected an object"},
        {"layer name missing", "[{\"op\": \"relu\"}]}", LR_ERR_PARSE, "layers[0].name: missing"},
        {"op not a string", "[{\"name\": \"a\", \"op\": 5}]}", LR_ERR_PARSE, "layers[0].op: expected a string"},
        {"name of 64 characters", "[{\"name\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\", \"op\": \"relu\"}]}", LR_ERR_PARSE, "layers[0].name: expected 1 to 63"},
        {"kernel of three", "[{\"name\": \"c\", \"op\": \"conv\", \"out_channels\": 1, \"kernel\": [1, 2, 3]}]}", LR_ERR_PARSE, "layers[0].kernel: expected an integer or a [height, width] pair"},
        {"bias a number", "[{\"name\": \"c\", \"op\": \"conv\", \"out_channels\": 1, \"kernel\": 1, \"bias\": 1}]}", LR_ERR_PARSE, "layers[0].bias: expected true or false"},
        {"eps a string", "[{\"name\": \"n\", \"op\": \"batchnorm\", \"eps\": \"small\"}]}", LR_ERR_PARSE, "layers[0].eps: expected a number"},
        {"pool pad over half the kernel", "[{\"name\": \"p\", \"op\": \"maxpool\", \"kernel\": 2, \"pad\": 2}]}", LR_ERR_PARSE, "layers[0].pad: pooling padding"},
        {"inputs not a list", "[{\"name\": \"r\", \"op\": \"relu\", \"inputs\": \"input\"}]}", LR_ERR_PARSE, "layers[0].inputs: expected a list"},
        {"nine inputs", "[{\"name\": \"a\", \"op\": \"add\", \"inputs\": [\"input\", \"input\", \"input\", \"input\", \"input\", \"input\", \"input\", \"input\", \"input\"]}]}", LR_ERR_PARSE, "expected 1 to 8 layer names"},
        {"add of one input", "[{\"name\": \"a\", \"op\": \"add\", \"inputs\": [\"input\"]}]}", LR_ERR_PARSE, "add and concat need at least 2 inputs"},
        {"kernel wider than the map", "[{\"name\": \"c\", \"op\": \"conv\", \"out_channels\": 1, \"kernel\": [1, 9]}" LOSS, LR_ERR_INPUT, "layers[0] (c): kernel width 9"},
        {"groups not dividing", "[{\"name\": \"c\", \"op\": \"conv\", \"out_channels\": 3, \"kernel\": 1, \"groups\": 2}" LOSS, LR_ERR_INPUT, "layers[0] (c): groups 2"},
        {"add of two sizes", "[{\"name\": \"p\", \"op\": \"maxpool\", \"kernel\": 2}, {\"name\": \"a\", \"op\": \"add\", \"inputs\": [\"p\", \"input\"]}" LOSS, LR_ERR_INPUT, "layers[1] (a): inputs differ in height"},
        {"concat past 2^24 channels", "[{\"name\": \"c\", \"op\": \"conv\", \"out_channels\": 16777216, \"kernel\": 1}, {\"name\": \"k\", \"op\": \"concat\", \"inputs\": [\"c\", \"c\"]}" LOSS, LR_ERR_INPUT, "layers[1] (k): concat gives more than"},
        {"upsample past 2^24 rows", "[{\"name\": \"u\", \"op\": \"upsample\", \"scale\": 1024}, {\"name\": \"v\", \"op\": \"upsample\", \"scale\": 1024}, {\"name\": \"w\", \"op\": \"upsample\", \"scale\": 4}" LOSS, LR_ERR_INPUT, "layers[2] (w): upsampled size"},
        {"fc parameter overflow", "[{\"name\": \"c\", \"op\": \"conv\", \"out_channels\": 16777216, \"kernel\": 1}, {\"name\": \"g\", \"op\": \"flatten\"}, {\"name\": \"f\", \"op\": \"fc\", \"out_features\": 16777216}, {\"name\": \"l\", \"op\": \"softmax_xent\"}]}", LR_ERR_INPUT, "(f): parameter count overflows (1073741824 inputs x 16777216 outputs)"},
        {"flatten past 2^31 features", "[{\"name\": \"u\", \"op\": \"upsample\", \"scale\": 2}, {\"name\": \"c\", \"op\": \"conv\", \"out_channels\": 16777216, \"kernel\": 1}, {\"name\": \"g\", \"op\": \"flatten\"}" LOSS, LR_ERR_INPUT, "layers[2] (g): input has more than 2147483647 features"},
        {"loss on a map", "[{\"name\": \"l\", \"op\": \"softmax_xent\"}]}", LR_ERR_INPUT, "layers[0] (l): softmax_xent needs logits of shape"},
        {"loss of one class", "[{\"name\": \"f\", \"op\": \"fc\", \"out_features\": 1}, {\"name\": \"l\", \"op\": \"softmax_xent\"}]}", LR_ERR_INPUT, "softmax_xent needs at least 2 classes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[2048];
        if (cases[i].layers[0] == '!')
            snprintf(text, sizeof text, "%s", cases[i].layers + 1);
        else
            snprintf(text, sizeof text, HEAD_8 "%s", cases[i].layers);
        net_t *net = (net_t *)1;
        lr_status st = net_parse(text, strlen(text), "bad.json", &net);
        if (st != cases[i].status || !strstr(lr_last_error(), cases[i].mention) ||
            strncmp(lr_last_error(), "bad.json: ", 10) != 0)
            fail_msg("%s: status %d, message '%s' (expected %d mentioning '%s')", cases[i].what, st,
                     lr_last_error(), cases[i].status, cases[i].mention);
        assert_null(net);
    }
}

/* Loader errors that need more than a line: 100000 layers (one past the limit), a total
 * parameter count past 2^63 (32769 fc layers of 2^48 parameters each), a directory read as a
 * file. */
static void test_loader_limits(void **state)
{
    text_buf b;
    head(&b, "many", 1, 1, 1);
    for (int i = 0; i < 99996; i++)
        put(&b, "{\"name\": \"r%d\", \"op\": \"relu\"},\n", i);
    tail_classifier(&b, "");
    net_t *net;
    assert_int_equal(net_parse(b.p, b.len, "many.json", &net), LR_ERR_PARSE);
    assert_non_null(strstr(lr_last_error(), "many.json: (top level).layers: too many layers"));
    free(b.p);

    head(&b, "heavy", 16777216, 1, 1);
    for (int i = 0; i < 32769; i++)
        put(&b, "{\"name\": \"f%d\", \"op\": \"fc\", \"out_features\": 16777216, \"bias\": false},\n", i);
    put(&b, "{\"name\": \"f\", \"op\": \"fc\", \"out_features\": 2}, {\"name\": \"l\", \"op\": \"softmax_xent\"}]}");
    assert_int_equal(net_parse(b.p, b.len, "heavy.json", &net), LR_ERR_INPUT);
    assert_non_null(strstr(lr_last_error(), "heavy.json: total parameter count overflows"));
    free(b.p);

    assert_int_equal(net_load(tmp_dir, &net), LR_ERR_IO);
    assert_non_null(strstr(lr_last_error(), tmp_dir));
}

/* ------------------------------------------------------------------ planner and schedule errors */

/* Requests the CLI cannot make but the library accepts are checked too: --rows past 2^20,
 * --segments past 64, a region past the last layer, an unknown strategy, 65 stages. */
static void test_planner_rejects_impossible_requests(void **state)
{
    net_t *net;
    assert_int_equal(net_open("tiny-vgg", &net), LR_OK);
    plan_config cfg = config(1, BN_EXACT);
    plan_choice c;
    plan_request req = {.strategy = STRAT_2PS, .rows = (1 << 20) + 1};
    assert_int_equal(strategy_choose(net, &cfg, &req, &c), LR_ERR_USAGE);
    assert_non_null(strstr(lr_last_error(), "--rows"));
    req = (plan_request){.strategy = STRAT_CHECKPOINT, .segments = 65};
    assert_int_equal(strategy_choose(net, &cfg, &req, &c), LR_ERR_USAGE);
    assert_non_null(strstr(lr_last_error(), "--segments"));
    req = (plan_request){.strategy = STRAT_ROW, .region_end = net->n_nodes};
    assert_int_equal(strategy_choose(net, &cfg, &req, &c), LR_ERR_USAGE);
    assert_non_null(strstr(lr_last_error(), "--region"));
    req = (plan_request){.strategy = STRAT_COUNT};
    assert_int_equal(strategy_choose(net, &cfg, &req, &c), LR_ERR_USAGE);
    assert_non_null(strstr(lr_last_error(), "--strategy"));
    plan_spec spec = {.strategy = STRAT_CHECKPOINT, .n_stages = PLAN_MAX_STAGES + 1};
    plan_t *plan;
    assert_int_equal(plan_build(net, &cfg, &spec, &plan), LR_ERR_INPUT);
    assert_non_null(strstr(lr_last_error(), "at most 64 stages"));
    net_free(net);
}

static sched_t two_tensor_schedule(int64_t a_bytes, int64_t b_bytes)
{
    sched_t s;
    sched_init(&s);
    int a = sched_add_tensor(&s, TC_ACTIVATION, TK_VALUE, 1, -1, -1, -1, a_bytes);
    int b = sched_add_tensor(&s, TC_ACTIVATION, TK_VALUE, 1, -1, -1, -1, b_bytes);
    s.step_begin = 0;
    sched_alloc(&s, a, PASS_FWD, 1, -1, -1);
    sched_alloc(&s, b, PASS_FWD, 1, -1, -1);
    sched_run_step(&s, PASS_FWD, 1, -1, -1, 0, 0, 0, 10);
    sched_release(&s, b, PASS_FWD, 1, -1, -1);
    sched_release(&s, a, PASS_FWD, 1, -1, -1);
    s.step_end = s.n_steps;
    return s;
}

static void expect_replay_error(const sched_t *s, sim_allocator a, lr_status st, const char *mention)
{
    sim_result r;
    if (sim_replay(s, a, &r) != st || !strstr(lr_last_error(), mention))
        fail_msg("replay: '%s' (expected status %d mentioning '%s')", lr_last_error(), st, mention);
    assert_int_equal(r.peak_step, -1);
}

/* A corrupted or absurd schedule is an error naming the step, never a crash or a wrapped sum:
 * the replay (sizes past int64, unknown allocator, tensor ids, classes, passes and ops out of
 * range, FLOP sums past int64) and sched_validate (uses of dead tensors, double allocation,
 * persistent tensors allocated in the step, leaks). Schedules may one day come from files. */
static void test_corrupted_schedules_are_errors(void **state)
{
    sched_t s = two_tensor_schedule(INT64_MAX - 10, 100);
    expect_replay_error(&s, ALLOC_EXACT, LR_ERR_INPUT, "step 1: byte count overflows int64");
    expect_replay_error(&s, ALLOC_CACHING, LR_ERR_INPUT, "step 0: 9223372036854775797 bytes overflow the caching model");
    expect_replay_error(&s, (sim_allocator)7, LR_ERR_INPUT, "unknown allocator model 7");
    sched_free(&s);

    s = two_tensor_schedule(100, 100);
    assert_int_equal(sched_validate(&s), LR_OK);
    s.steps[0].t = 5;
    expect_replay_error(&s, ALLOC_EXACT, LR_ERR_RUNTIME, "step 0: ALLOC of tensor 5, out of range");
    /* found by ASan: sched_validate indexed its state table with the id */
    assert_int_equal(sched_validate(&s), LR_ERR_RUNTIME);
    assert_non_null(strstr(lr_last_error(), "step 0: ALLOC of tensor 5, out of range"));
    s.steps[0].t = 0;
    s.steps[2].run = 3;
    assert_int_equal(sched_validate(&s), LR_ERR_RUNTIME);
    assert_non_null(strstr(lr_last_error(), "step 2: RUN 3 out of range"));
    s.steps[2].run = 0;
    s.tensors[1].cls = TC_COUNT;
    expect_replay_error(&s, ALLOC_EXACT, LR_ERR_INPUT, "step 1: tensor 1 has class 8");
    s.tensors[1].cls = TC_ACTIVATION;
    s.steps[2].pass = PASS_COUNT;
    expect_replay_error(&s, ALLOC_EXACT, LR_ERR_INPUT, "step 2: RUN with pass 6");
    s.steps[2].pass = PASS_FWD;
    s.steps[2].flops = INT64_MAX;
    sched_run_step(&s, PASS_FWD, 1, -1, -1, 0, 0, 0, 10);
    s.step_end = s.n_steps;
    expect_replay_error(&s, ALLOC_EXACT, LR_ERR_INPUT, "FLOP count overflows int64");
    s.steps[2].flops = 10;
    s.steps[3].op = 9;
    expect_replay_error(&s, ALLOC_EXACT, LR_ERR_RUNTIME, "step 3: unknown op 9");
    assert_int_equal(sched_validate(&s), LR_ERR_RUNTIME);
    assert_non_null(strstr(lr_last_error(), "step 3: unknown op 9"));
    sched_free(&s);

    s = two_tensor_schedule(100, 100);
    sched_run *r = &s.runs[0];
    r->n_in = 1;
    r->in[0] = 7;
    assert_int_equal(sched_validate(&s), LR_ERR_RUNTIME);
    assert_non_null(strstr(lr_last_error(), "input tensor 7 out of range"));
    r->in[0] = 0;
    r->out = 1;
    s.steps[1].op = STEP_COPY; /* b is never allocated: the run reads a tensor that is not live */
    s.steps[1].t = 1, s.steps[1].src = 0;
    assert_int_equal(sched_validate(&s), LR_ERR_RUNTIME);
    assert_non_null(strstr(lr_last_error(), "is not live"));
    s.steps[1].op = STEP_ALLOC;
    s.steps[3].t = 0; /* frees a twice, b never */
    assert_int_equal(sched_validate(&s), LR_ERR_RUNTIME);
    assert_non_null(strstr(lr_last_error(), "freed while not live"));
    s.steps[3].t = 1;
    s.steps[1].t = 0; /* allocates a twice */
    assert_int_equal(sched_validate(&s), LR_ERR_RUNTIME);
    assert_non_null(strstr(lr_last_error(), "allocated twice"));
    s.steps[1].t = 1;
    s.n_steps = 4; /* a never freed */
    assert_int_equal(sched_validate(&s), LR_ERR_RUNTIME);
    assert_non_null(strstr(lr_last_error(), "never freed"));
    s.n_steps = 5;
    s.tensors[0].cls = TC_WEIGHT; /* a persistent tensor allocated inside the step */
    assert_int_equal(sched_validate(&s), LR_ERR_RUNTIME);
    assert_non_null(strstr(lr_last_error(), "persistent tensor 0 allocated inside the step"));
    sched_free(&s);
}

/* The executor's accessors check what they are asked for: a layer without parameters, a count
 * that does not match. */
static void test_executor_accessors_check_their_arguments(void **state)
{
    net_t *net;
    assert_int_equal(net_open("tiny-vgg", &net), LR_OK);
    plan_config cfg = config(2, BN_EXACT);
    plan_spec spec = {.strategy = STRAT_COLUMN};
    plan_t *plan;
    assert_int_equal(plan_build(net, &cfg, &spec, &plan), LR_OK);
    sched_t s;
    sched_init(&s);
    plan_emit(plan, &s);
    exec_hparams hp;
    exec_hparams_default(&hp);
    exec_t *e;
    assert_int_equal(exec_create(net, plan, &s, &exec_cpu_backend, NULL, &hp, &e), LR_OK);
    float buf[16];
    int relu = net_find(net, "relu1_1"), conv = net_find(net, "conv1_1");
    assert_true(relu > 0 && conv > 0);
    assert_int_equal(exec_get_param(e, relu, buf, 16), LR_ERR_RUNTIME);
    assert_non_null(strstr(lr_last_error(), "has no parameters"));
    assert_int_equal(exec_get_param(e, conv, buf, 16), LR_ERR_RUNTIME);
    assert_non_null(strstr(lr_last_error(), "conv1_1"));
    exec_free(e);
    sched_free(&s);
    plan_free(plan);
    net_free(net);
}

/* ------------------------------------------------------------------ more output-file errors */

/* A path too long for the temporary name, a commit of a file that was never opened, and a
 * rename that fails because a directory took the file's place: LR_ERR_USAGE or LR_ERR_IO naming
 * the path, and no temporary file left. */
static void test_outfile_rare_failures(void **state)
{
    char longp[1100];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = '\0';
    lr_outfile o;
    assert_int_equal(lr_outfile_open(&o, longp), LR_ERR_USAGE);
    assert_non_null(strstr(lr_last_error(), "...: path too long (1099 characters, at most 1023)"));
    memset(&o, 0, sizeof o);
    assert_int_equal(lr_outfile_commit(&o), LR_ERR_IO);
    assert_non_null(strstr(lr_last_error(), "not open"));
    char path[300];
    snprintf(path, sizeof path, "%s", tmp_path("taken"));
    assert_int_equal(lr_outfile_open(&o, path), LR_OK);
    fputs("data\n", o.f);
    assert_int_equal(mkdir(path, 0755), 0);
    assert_int_equal(lr_outfile_commit(&o), LR_ERR_IO);
    assert_non_null(strstr(lr_last_error(), "taken: write failed"));
    assert_int_equal(tmp_files_left(), 0);
    assert_int_equal(rmdir(path), 0);
}

/* The PyTorch profile refuses a batch of 0 and predicts nothing from an empty schedule. */
static void test_pytorch_profile_rejects_empty_input(void **state)
{
    net_t *net;
    assert_int_equal(net_open("tiny-vgg", &net), LR_OK);
    plan_config cfg = config(0, BN_EXACT);
    pytorch_profile p;
    pytorch_profile_default(&p);
    sched_t s;
    sched_init(&s);
    assert_int_equal(pytorch_emit(net, &cfg, &p, &s), LR_ERR_INPUT);
    assert_non_null(strstr(lr_last_error(), "batch must be positive"));
    pytorch_prediction pr;
    assert_int_equal(pytorch_predict(&s, ALLOC_CACHING, NULL, &pr), LR_ERR_INPUT);
    assert_non_null(strstr(lr_last_error(), "no prologue or no step"));
    sched_free(&s);
    net_free(net);
}

/* ------------------------------------------------------------------ fuzzer regressions */

/* What fuzz_net checks, for one network file: row dependencies; every strategy planned (fixed
 * and searched N, both BN modes); each either fails with an input error and a message, or
 * emits a well-formed schedule whose replay equals the closed form and fits its arena. */
static void replay_net(const char *path)
{
    net_t *net;
    lr_status s = net_load(path, &net);
    if (s != LR_OK) {
        assert_true(s == LR_ERR_PARSE || s == LR_ERR_INPUT);
        assert_true(lr_last_error()[0] != '\0');
        return;
    }
    rowdep_info *info = malloc(sizeof *info * (size_t)net->n_nodes);
    assert_non_null(info);
    rowdep_analyze(net, info);
    free(info);
    analysis_t *a = malloc(sizeof *a);
    assert_non_null(a);
    for (int variant = 0; variant < 4; variant++) {
        plan_config cfg = config(1 + variant, variant % 2 ? BN_STRIPE : BN_EXACT);
        plan_request req = {.rows = variant < 2 ? 4 : 0};
        s = analysis_run(net, &cfg, &req, (1u << STRAT_COUNT) - 1, ALLOC_CACHING, a);
        if (s != LR_OK) {
            if (s != LR_ERR_INPUT && s != LR_ERR_USAGE)
                fail_msg("%s: status %d: %s", path, s, lr_last_error());
            continue;
        }
        for (int i = 0; i < a->n; i++) {
            const analysis_entry *e = &a->e[i];
            if (e->exact.peak_bytes != e->choice.cost.peak_bytes)
                fail_msg("%s %s: closed form %lld, replay %lld", path,
                         plan_strategy_name(e->strategy), (long long)e->choice.cost.peak_bytes,
                         (long long)e->exact.peak_bytes);
            plan_t *plan;
            sched_t sc;
            assert_int_equal(analysis_schedule(a, e, &plan, &sc), LR_OK);
            assert_int_equal(sched_validate(&sc), LR_OK);
            int64_t *off = malloc(sizeof(int64_t) * (size_t)(sc.n_tensors + 1));
            assert_non_null(off);
            assert_true(exec_plan_arena(&sc, 256, off) >= e->exact.peak_bytes);
            free(off);
            sched_free(&sc);
            plan_free(plan);
        }
    }
    free(a);
    net_free(net);
}

/* Every network kept under tests/regress/ (inputs that crashed fuzz_net, reduced) replays
 * clean: no sanitizer report, the closed form equal to the replay. */
static void test_fuzzer_regressions_replay_clean(void **state)
{
    DIR *d = opendir(REGRESS_DIR);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (strncmp(e->d_name, "net-", 4) != 0)
            continue;
        char path[600];
        snprintf(path, sizeof path, "%s/%s", REGRESS_DIR, e->d_name);
        print_message("  %s\n", e->d_name);
        replay_net(path);
        n++;
    }
    closedir(d);
    assert_true(n > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_cnn_of_2000_convs_plans_every_strategy),
        cmocka_unit_test(test_resnet1001_plans_every_strategy),
        cmocka_unit_test(test_resnet1001_exact_bn_in_one_stage_is_bounded),
        cmocka_unit_test(test_planning_does_not_recurse_with_depth),
        cmocka_unit_test(test_parsing_99999_layers_is_linear),
        cmocka_unit_test(test_huge_partition_counts_are_refused),
        cmocka_unit_test(test_absurd_sizes_are_clear_errors),
        cmocka_unit_test(test_overflow_guard_refuses_only_what_overflows),
        cmocka_unit_test(test_closed_form_flop_overflow_is_an_error),
        cmocka_unit_test(test_receptive_field_saturates_on_deep_strided_stacks),
        cmocka_unit_test(test_idx_header_that_claims_too_much_is_rejected),
        cmocka_unit_test(test_outfile_on_a_full_device_fails_and_keeps_the_device),
        cmocka_unit_test(test_outfile_unwritable_places_fail_at_open),
        cmocka_unit_test(test_outfile_makes_missing_directories),
        cmocka_unit_test(test_outfile_is_all_or_nothing),
        cmocka_unit_test(test_outfile_through_a_link_replaces_the_target),
        cmocka_unit_test(test_schedule_writers_report_a_full_device),
        cmocka_unit_test(test_every_loader_error_names_its_place),
        cmocka_unit_test(test_loader_limits),
        cmocka_unit_test(test_planner_rejects_impossible_requests),
        cmocka_unit_test(test_corrupted_schedules_are_errors),
        cmocka_unit_test(test_executor_accessors_check_their_arguments),
        cmocka_unit_test(test_outfile_rare_failures),
        cmocka_unit_test(test_pytorch_profile_rejects_empty_input),
        cmocka_unit_test(test_fuzzer_regressions_replay_clean),
    };
    return cmocka_run_group_tests(tests, make_tmp_dir, remove_tmp_dir);
}
