/* fuzz_exec.c - libFuzzer target: bytes -> a small generated network (fuzz_gen.h) -> one
 * training step of a row strategy and one of column training on the CPU backend, from the same
 * weights and batch, which must agree: the loss bit for bit (exact or frozen BatchNorm), every
 * weight gradient within 1e-4 relative (max |a - b| over the layer's largest, or over the net's
 * largest when the layer's are smaller), and each executor's counted peak equal to its
 * plan's closed-form prediction.
 *
 * The planner's invariants are fuzz_net.c's; this target holds the executor to the planner on
 * odd DAGs the tests do not spell out (AlexNet's dropout after a flatten aborted the CPU
 * backend before: tests/data/nets/tiny-flat.json). A hash of the input picks the variations:
 * batch 2-3, optimizer, exact or frozen BatchNorm, the strategy, --rows, --offload (a quarter of
 * the inputs: host memory counted = predicted too), --boundaries. Plans the planner
 * refuses (LR_ERR_INPUT, LR_ERR_USAGE) and steps the executor refuses as input (BatchNorm on one
 * value per channel) are skipped, not findings.
 * Deliberately not here: --bn stripe (approximate by design), the CUDA backend, timing.
 *
 * Build and run: make fuzz (see tests/fuzz/README.md).
 */
#include <math.h>
#include <omp.h>

#include "checked.h"
#include "exec.h"
#include "fuzz_gen.h"
#include "choose.h"
#include "cost.h"

/* Small enough that a step of every strategy takes milliseconds under the sanitizers. */
static const gen_limits LIMITS = {.max_hw = 14, .max_nodes = 40, .max_c = 12};

typedef struct {
    plan_t *plan;
    sched_t s;
    plan_cost cost;
    exec_t *exec;
} run_t;

static void broken(const char *what, const net_t *net, plan_strategy st)
{
    fprintf(stderr, "fuzz_exec: %s (net %s, strategy %s): %s\n", what, net->name,
            plan_strategy_name(st), lr_last_error());
    abort();
}

/* Plans, emits and creates an executor; false when the planner or the executor refuses the
 * input (then nothing is left open). */
static bool run_open(const net_t *net, const plan_config *cfg, const plan_request *req, run_t *r)
{
    memset(r, 0, sizeof *r);
    sched_init(&r->s);
    plan_choice c;
    lr_status st = strategy_choose(net, cfg, req, &c);
    if (st == LR_OK) {
        r->cost = c.cost; /* exec_plan_workspace replaces it when it plans again */
        st = plan_build(net, cfg, &c.spec, &r->plan);
    }
    if (st == LR_OK) {
        plan_emit(r->plan, &r->s);
        st = exec_plan_workspace(net, cfg, &c.spec, &exec_cpu_backend, NULL, &r->plan, &r->s,
                                 &r->cost);
    }
    if (st == LR_OK && sched_validate(&r->s) != LR_OK)
        broken("emitted schedule is not well formed", net, req->strategy);
    exec_hparams hp;
    exec_hparams_default(&hp);
    if (st == LR_OK)
        st = exec_create(net, r->plan, &r->s, &exec_cpu_backend, NULL, &hp, &r->exec);
    if (st == LR_OK)
        return true;
    if (st != LR_ERR_INPUT && st != LR_ERR_USAGE)
        broken("a runtime failure while opening a run", net, req->strategy);
    sched_free(&r->s);
    plan_free(r->plan);
    return false;
}

static void run_close(run_t *r)
{
    exec_free(r->exec);
    sched_free(&r->s);
    plan_free(r->plan);
}

/* max |a - b| and max |b| of one layer's gradients */
static void diff_of(const float *a, const float *b, int64_t n, double *d, double *m)
{
    *d = 0, *m = 0;
    for (int64_t i = 0; i < n; i++) {
        *d = fmax(*d, fabs((double)a[i] - b[i]));
        *m = fmax(*m, fabs((double)b[i]));
    }
}

/* One step of each (row's, then column's), compared. */
static void compare(const net_t *net, const plan_config *cfg, run_t *row, run_t *col,
                    plan_strategy st, uint64_t h)
{
    if (exec_copy_params(col->exec, row->exec) != LR_OK)
        broken("exec_copy_params", net, st);
    const net_node *in = &net->nodes[0];
    int64_t n_in = (int64_t)cfg->batch * in->c * in->h * in->w;
    float *images = malloc(sizeof(float) * (size_t)n_in);
    int32_t labels[4];
    if (!images)
        abort();
    uint64_t s = h | 1;
    for (int64_t i = 0; i < n_in; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        images[i] = (float)((double)(s >> 11) * 0x1.0p-53 * 2 - 1);
    }
    for (int i = 0; i < cfg->batch; i++)
        labels[i] = (int32_t)((h >> (8 * i)) % 3); /* the generator's fc has 3 outputs */
    float lr_ = 0, lc = 0;
    if (exec_step(row->exec, images, labels, false, &lr_) != LR_OK)
        broken("the row step failed", net, st);
    if (exec_step(col->exec, images, labels, false, &lc) != LR_OK)
        broken("the column step failed", net, STRAT_COLUMN);
    free(images);
    if (memcmp(&lr_, &lc, sizeof lc) != 0 && !(isnan(lr_) && isnan(lc))) {
        fprintf(stderr, "loss %.9g, column %.9g\n", lr_, lc);
        broken("the loss differs from column's", net, st);
    }
    int64_t counted = exec_memory_stats(row->exec)->counted_peak_bytes;
    if (counted != row->cost.peak_bytes) {
        fprintf(stderr, "counted %lld, predicted %lld\n", (long long)counted,
                (long long)row->cost.peak_bytes);
        broken("the counted peak differs from the prediction", net, st);
    }
    int64_t host = exec_memory_stats(row->exec)->host_counted_peak_bytes;
    if (host != row->cost.host_bytes) {
        fprintf(stderr, "host memory counted %lld, predicted %lld\n", (long long)host,
                (long long)row->cost.host_bytes);
        broken("the counted host peak differs from the prediction", net, st);
    }
    counted = exec_memory_stats(col->exec)->counted_peak_bytes;
    if (counted != col->cost.peak_bytes) {
        fprintf(stderr, "counted %lld, predicted %lld\n", (long long)counted,
                (long long)col->cost.peak_bytes);
        broken("column's counted peak differs from its prediction", net, STRAT_COLUMN);
    }
    /* each layer's error relative to its largest gradient, or to the net's largest when its
     * own are smaller: a layer whose gradients cancel to rounding has only rounding to compare (a
     * BatchNorm feeding another, whose input's gradient sums to zero against 1 and against its
     * xhat; a one-channel 1x1 conv before a BatchNorm, which makes its bias gradients zero and
     * its weight gradients eps's alone). Input af220cb6 (overl, 5 rows): L1's bias gradients
     * are zero in float64 (PyTorch, the same weights and batch: 1e-15), but sums of 108 terms
     * that cancel in float32 (3 images x 12 x 3 positions), column's 1.49e-6 and the row run's
     * 1.22e-6 from zero, 2.71e-6 apart: 3.07e-5 of the net's largest gradient (two BatchNorms in
     * a row: 1.05e-5, input 7602158c) */
    double *d = calloc((size_t)net->n_nodes, sizeof *d), *m = calloc((size_t)net->n_nodes, sizeof *m);
    double most = 0;
    if (!d || !m)
        abort();
    for (int l = 1; l < net->n_nodes && isfinite(lc); l++) {
        int64_t n = net->nodes[l].params;
        if (!n)
            continue;
        float *a = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)n);
        if (!a || !b)
            abort();
        if (exec_get_param_grad(row->exec, l, a, n) != LR_OK ||
            exec_get_param_grad(col->exec, l, b, n) != LR_OK)
            broken("exec_get_param_grad", net, st);
        diff_of(a, b, n, &d[l], &m[l]);
        most = fmax(most, m[l]);
        free(a);
        free(b);
    }
    for (int l = 1; l < net->n_nodes; l++) {
        double scale = fmax(m[l], most), e = scale > 0 ? d[l] / scale : d[l];
        if (!(e <= 1e-4)) {
            fprintf(stderr, "layer %s: gradient error %.3g (largest %.3g, the net's %.3g)\n",
                    net->nodes[l].name, d[l], m[l], most);
            broken("a gradient differs from column's", net, st);
        }
    }
    free(d);
    free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    omp_set_num_threads(1 + (int)(data[0] % 2)); /* the kernels' split must not change the bits */
    size_t len;
    char *text = generate(data + 1, size - 1, &LIMITS, &len);
    if (getenv("FUZZ_NET_PRINT")) /* the JSON of a finding, for tests/regress/ */
        fputs(text, stderr);
    net_t *net = NULL;
    if (net_parse(text, len, "fuzz.json", &net) != LR_OK) {
        fprintf(stderr, "fuzz_exec: a generated network does not load: %s\n%s\n", lr_last_error(),
                text);
        abort();
    }
    free(text);
    uint64_t h = hash(data, size);
    plan_config cfg = {.batch = 2 + (int)(h % 2), .dtype = DT_FP32,
                       .optim = (plan_optim)((h >> 2) % OPTIM_COUNT),
                       .bn = (h >> 4) % 2 ? BN_FROZEN : BN_EXACT,
                       .offload = (unsigned)((h >> 16) % 4 == 0 ? (h >> 18) % 4 : 0),
                       .recompute_boundaries = (h >> 20) % 4 == 0,
                       .boundaries_auto = (h >> 20) % 4 == 1};
    plan_strategy st = (plan_strategy)(STRAT_CHECKPOINT + (int)((h >> 5) % (STRAT_COUNT - 1)));
    plan_request req = {.strategy = st, .rows = (h >> 8) % 3 ? 2 + (int)((h >> 10) % 6) : 0};
    plan_request col_req = {.strategy = STRAT_COLUMN};
    if (getenv("FUZZ_NET_PRINT"))
        fprintf(stderr, "batch %d, %s, bn %s, %s, rows %d, offload %s, boundaries %s, %d threads\n",
                cfg.batch, cost_optim_name(cfg.optim), plan_bn_name(cfg.bn), plan_strategy_name(st),
                req.rows, plan_offload_name(cfg.offload), plan_boundaries_name(&cfg),
                omp_get_max_threads());
    run_t row, col;
    if (cost_check_layers(net, cfg.batch, 4) == LR_OK && run_open(net, &cfg, &req, &row)) {
        if (run_open(net, &cfg, &col_req, &col)) {
            compare(net, &cfg, &row, &col, st, h);
            run_close(&col);
        }
        run_close(&row);
    }
    net_free(net);
    return 0;
}
