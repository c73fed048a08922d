/* validate.c - the lrcnn-validate driver (see validate.h). */
#include "validate.h"

#include <json-c/json.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "analysis.h"
#include "clock.h"
#include "cpu_ops.h"
#include "sim.h"
#include "waiting.h"

#ifdef LRCNN_HAVE_CUDA
#include "cuda_backend.h"
#endif

void validate_options_init(validate_options *o)
{
    memset(o, 0, sizeof *o);
    o->backend = "cpu";
    /* the default recipe: Adam, lr 1e-3, batch 32 (tiny-vgg reaches 90% on Fashion-MNIST in
     * 3-4 epochs; SGD with momentum is offered with --optimizer momentum --lr 0.02) */
    o->cfg.batch = 32;
    o->cfg.dtype = DT_FP32;
    o->cfg.optim = OPTIM_ADAM;
    o->cfg.bn = BN_EXACT;
    o->req.strategy = STRAT_2PS;
    o->steps = 1;
    o->column = true;
    exec_hparams_default(&o->hp);
    o->hp.lr = 1e-3f;
}

lr_status validate_backend(const char *name, bool deterministic, const exec_backend **be,
                           void **ctx)
{
    *ctx = NULL;
    if (strcmp(name, "cpu") == 0) {
        *be = &exec_cpu_backend;
        return LR_OK;
    }
    if (strcmp(name, "cuda") == 0 || strcmp(name, "cuda-emulated") == 0) {
#ifdef LRCNN_HAVE_CUDA
        if (strcmp(name, "cuda-emulated") == 0)
            return cuda_backend_create_emulated(be, ctx);
        return cuda_backend_create(deterministic, be, ctx);
#else
        return lr_fail(LR_ERR_NODEVICE,
                       "--backend %s: this lrcnn-validate was built without CUDA (nvcc was not "
                       "found at build time); use --backend cpu", name);
#endif
    }
    return lr_fail(LR_ERR_USAGE, "--backend: expected cpu, cuda or cuda-emulated, got '%s'", name);
}

void validate_backend_release(const char *name, void *ctx)
{
#ifdef LRCNN_HAVE_CUDA
    if (strncmp(name, "cuda", 4) == 0)
        cuda_backend_destroy(ctx);
#endif
    (void)name, (void)ctx;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    if (n <= 0)
        return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ------------------------------------------------------------------ one runner */

typedef struct {
    plan_t *plan;
    sched_t s;
    exec_t *exec;
    plan_cost cost;
    sim_result sim;
} runner;

/* Out of memory also says what the plan predicted. */
static lr_status with_prediction(lr_status s, const char *who, int64_t predicted)
{
    if (s != LR_ERR_NOMEM)
        return s;
    char msg[768];
    snprintf(msg, sizeof msg, "%s", lr_last_error());
    return lr_fail(LR_ERR_NOMEM, "%s; %s plan's predicted peak: %.1f MiB", msg, who,
                   predicted / 1048576.0);
}

/* Plans, and unless dry_run creates the executor (arena allocated, parameters set). */
static lr_status runner_init(runner *r, const net_t *net, const plan_config *cfg,
                             const plan_request *req, const exec_backend *be, void *bctx,
                             const exec_hparams *hp, bool dry_run)
{
    memset(r, 0, sizeof *r);
    sched_init(&r->s);
    plan_choice c;
    LR_TRY(strategy_choose(net, cfg, req, &c));
    r->cost = c.cost;
    LR_TRY(plan_build(net, cfg, &c.spec, &r->plan));
    LR_TRY(plan_check_emit(r->plan));
    plan_emit(r->plan, &r->s);
    /* The backends' kernels take their scratch from the planned workspace tensor (CUDA: edge
     * staging and cuDNN algorithm workspace; CPU: im2col columns, a slice per thread): size it
     * from this schedule, then plan again with it, so the prediction includes it. */
    lr_status st = exec_plan_workspace(net, cfg, &c.spec, be, bctx, &r->plan, &r->s, &r->cost);
    if (st != LR_OK) {
        char why[768];
        snprintf(why, sizeof why, "%s", lr_last_error());
        return lr_fail(st, "sizing the %s workspace of the %s plan: %s",
                       be == &exec_cpu_backend ? "CPU" : "CUDA", plan_strategy_name(req->strategy),
                       why);
    }
    LR_TRY(sim_replay(&r->s, ALLOC_EXACT, &r->sim));
    if (dry_run)
        return LR_OK;
    char who[64];
    snprintf(who, sizeof who, "the %s", plan_strategy_name(req->strategy));
    return with_prediction(exec_create(net, r->plan, &r->s, be, bctx, hp, &r->exec), who,
                           r->cost.peak_bytes);
}

static void runner_free(runner *r)
{
    exec_free(r->exec);
    sched_free(&r->s);
    plan_free(r->plan);
}

/* ------------------------------------------------------------------ comparisons */

/* max |a - b| / max |b| per tensor, the largest over all parameter tensors, and max |a - b| over
 * the net's largest |b|. */
static lr_status compare_grads(const net_t *net, exec_t *a, exec_t *b, validate_result *r)
{
    r->grad_max_rel_err = 0;
    r->grad_worst_share = 0;
    r->grad_max_net_err = 0;
    r->running_max_rel_err = 0;
    double most = 0, worst_scale = 0, worst_diff = 0;
    for (int l = 1; l < net->n_nodes; l++) {
        int64_t n = net->nodes[l].params;
        if (n == 0)
            continue;
        float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n);
        lr_status s = x && y ? exec_get_param_grad(a, l, x, n) : lr_fail(LR_ERR_NOMEM, "out of memory");
        if (s == LR_OK)
            s = exec_get_param_grad(b, l, y, n);
        double diff = 0, scale = 0;
        for (int64_t i = 0; s == LR_OK && i < n; i++) {
            diff = fmax(diff, fabs((double)x[i] - y[i]));
            scale = fmax(scale, fabs((double)y[i]));
        }
        double rel = scale > 0 ? diff / scale : diff;
        if (s == LR_OK && rel >= r->grad_max_rel_err) {
            r->grad_max_rel_err = rel;
            worst_scale = scale;
            snprintf(r->grad_worst, sizeof r->grad_worst, "%s", net->nodes[l].name);
        }
        most = fmax(most, scale);
        worst_diff = fmax(worst_diff, diff);
        free(x);
        free(y);
        LR_TRY(s);
    }
    r->grad_worst_share = most > 0 ? worst_scale / most : 0;
    r->grad_max_net_err = most > 0 ? worst_diff / most : worst_diff;
    return LR_OK;
}

static double accuracy(exec_t *e, const data_set *test, int batch, int limit)
{
    int n = limit > 0 && limit < test->n ? limit : test->n;
    size_t per = (size_t)test->c * test->h * test->w;
    int32_t *pred = malloc(sizeof(int32_t) * (size_t)batch);
    int correct = 0, done = 0;
    for (int i = 0; pred && i < n; i += batch) {
        int m = n - i < batch ? n - i : batch;
        if (exec_predict(e, test->images + per * (size_t)i, m, pred) != LR_OK)
            break;
        for (int k = 0; k < m; k++)
            correct += pred[k] == test->labels[i + k];
        done += m;
    }
    free(pred);
    return done ? 100.0 * correct / done : -1;
}

/* ------------------------------------------------------------------ modes */

typedef struct {
    const validate_options *o;
    const net_t *net;
    runner row, col;
    bool has_col;
    void *bctx;
    bool on_device; /* --backend cuda: device memory is measured */
    float *images;
    int32_t *labels;
} session;

/* After the first of several steps: what loaded lazily is in use now; the steps after it are
 * measured from here (validate.h, device_extra_bytes). */
static lr_status warm_up_done(session *ss)
{
#ifdef LRCNN_HAVE_CUDA
    if (ss->on_device)
        return cuda_backend_memory_mark(ss->bctx);
#endif
    (void)ss;
    return LR_OK;
}

static lr_status step_mode(session *ss, const data_set *d, validate_result *r)
{
    const validate_options *o = ss->o;
    int batch = o->cfg.batch, steps = o->steps;
    double *t_row = calloc((size_t)steps, sizeof(double)), *t_col = calloc((size_t)steps, sizeof(double));
    r->loss_curve = calloc((size_t)steps, sizeof(double));
    r->column_loss_curve = calloc((size_t)steps, sizeof(double));
    if (!t_row || !t_col || !r->loss_curve || !r->column_loss_curve) {
        free(t_row), free(t_col);
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    }
    /* the first step warms caches and allocators: the median skips it when there are others */
    int skip = steps > 2 ? 1 : 0;
    lr_status s = LR_OK;
    if (o->profile) {
        r->profile = exec_profile_new(ss->net);
        r->column_profile = ss->has_col ? exec_profile_new(ss->net) : NULL;
        if (!r->profile || (ss->has_col && !r->column_profile))
            s = lr_fail(LR_ERR_NOMEM, "out of memory");
    }
    for (int k = 0; k < steps && s == LR_OK; k++) {
        if (o->profile && k == skip) { /* the steps the median takes */
            exec_set_profile(ss->row.exec, r->profile);
            if (ss->has_col)
                exec_set_profile(ss->col.exec, r->column_profile);
        }
        data_gather(d, NULL, (int)((int64_t)k * batch % d->n), batch, ss->images, ss->labels);
        bool check = o->check_grads && k == 0 && ss->has_col;
        float lr_ = 0, lc = 0;
        double t0 = lr_now_ms();
        s = exec_step(ss->row.exec, ss->images, ss->labels, !check, &lr_);
        t_row[k] = lr_now_ms() - t0;
        if (s == LR_OK && ss->has_col) {
            t0 = lr_now_ms();
            s = exec_step(ss->col.exec, ss->images, ss->labels, !check, &lc);
            t_col[k] = lr_now_ms() - t0;
        }
        if (s == LR_OK && check) {
            s = compare_grads(ss->net, ss->row.exec, ss->col.exec, r);
            if (s == LR_OK)
                s = exec_update(ss->row.exec);
            if (s == LR_OK)
                s = exec_update(ss->col.exec);
        }
        if (k == 0)
            r->loss = lr_, r->column_loss = lc;
        r->loss_curve[k] = lr_;
        r->column_loss_curve[k] = lc;
        r->n_curve = k + 1;
        if (s == LR_OK && k == 0 && steps > 1)
            s = warm_up_done(ss);
        if (!o->quiet && steps > 1)
            fprintf(stderr, "\rstep %d/%d loss %.4f", k + 1, steps, lr_);
    }
    if (!o->quiet && steps > 1)
        fputc('\n', stderr);
    if (o->profile) {
        exec_set_profile(ss->row.exec, NULL);
        if (ss->has_col)
            exec_set_profile(ss->col.exec, NULL);
        r->profile_steps = steps - skip;
    }
    r->step_ms = median(t_row + skip, steps - skip);
    r->column_step_ms = ss->has_col ? median(t_col + skip, steps - skip) : 0;
    free(t_row);
    free(t_col);
    return s;
}

static lr_status train_epochs(session *ss, exec_t *e, const data_set *train, double *curve,
                              double *seconds, const char *who)
{
    const validate_options *o = ss->o;
    int batch = o->cfg.batch, per_epoch = train->n / batch;
    int *perm = malloc(sizeof(int) * (size_t)train->n);
    if (!perm)
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    double t0 = lr_now_ms();
    lr_status s = LR_OK;
    for (int ep = 0; ep < o->epochs && s == LR_OK; ep++) {
        data_permutation(train->n, o->hp.seed * 1000003u + (uint64_t)ep, perm);
        double sum = 0;
        for (int b = 0; b < per_epoch && s == LR_OK; b++) {
            data_gather(train, perm, b * batch, batch, ss->images, ss->labels);
            float loss;
            s = exec_step(e, ss->images, ss->labels, true, &loss);
            sum += loss;
            if (!o->quiet && (b % 50 == 0 || b == per_epoch - 1))
                fprintf(stderr, "\r%s epoch %d/%d batch %d/%d loss %.4f   ", who, ep + 1,
                        o->epochs, b + 1, per_epoch, sum / (b + 1));
        }
        curve[ep] = per_epoch ? sum / per_epoch : 0;
    }
    if (!o->quiet)
        fputc('\n', stderr);
    *seconds = (lr_now_ms() - t0) / 1e3;
    free(perm);
    return s;
}

/* The node whose channels are the net's classes: what the loss layer reads. */
static int classes_node(const net_t *net)
{
    return plan_root(net, net->n_nodes - 2);
}

/* Whether data set d (named `what`) fits the net: its images are the net's input, and its
 * labels index the net's classes (the channels the loss layer reads). Batches are copied into
 * buffers of the net's input size, and the loss takes labels below its classes. */
static lr_status check_data(const session *ss, const data_set *d, const char *what)
{
    const net_node *in = &ss->net->nodes[0];
    int root = classes_node(ss->net), classes = ss->net->nodes[root].c;
    if (d->c != in->c || d->h != in->h || d->w != in->w)
        return lr_fail(LR_ERR_USAGE, "--data: %s images are %dx%dx%d, %s expects %dx%dx%d", what,
                       d->c, d->h, d->w, ss->net->name, in->c, in->h, in->w);
    for (int i = 0; i < d->n; i++)
        if (d->labels[i] < 0 || d->labels[i] >= classes)
            return lr_fail(LR_ERR_USAGE, "--data: %s label %d of image %d; %s has %d classes "
                           "(the outputs of %s)", what, d->labels[i], i, ss->net->name, classes,
                           ss->net->nodes[root].name);
    return LR_OK;
}

static lr_status train_mode(session *ss, validate_result *r)
{
    const validate_options *o = ss->o;
    data_set train, test;
    LR_TRY(data_load_fashion(o->data_dir, "train", o->train_limit, &train));
    lr_status s = data_load_fashion(o->data_dir, "t10k", o->test_limit, &test);
    if (s != LR_OK) {
        data_free(&train);
        return s;
    }
    s = check_data(ss, &train, "training");
    if (s == LR_OK)
        s = check_data(ss, &test, "test");
    if (s == LR_OK && train.n < o->cfg.batch)
        s = lr_fail(LR_ERR_USAGE, "--train-limit: %d images is less than one batch of %d", train.n, o->cfg.batch);
    r->loss_curve = calloc((size_t)o->epochs, sizeof(double));
    r->column_loss_curve = calloc((size_t)o->epochs, sizeof(double));
    if (s == LR_OK && (!r->loss_curve || !r->column_loss_curve))
        s = lr_fail(LR_ERR_NOMEM, "out of memory");
    r->n_curve = o->epochs;
    if (s == LR_OK)
        s = train_epochs(ss, ss->row.exec, &train, r->loss_curve, &r->train_seconds,
                         plan_strategy_name(o->req.strategy));
    if (s == LR_OK)
        r->test_accuracy = accuracy(ss->row.exec, &test, o->cfg.batch, 0);
    if (s == LR_OK && ss->has_col) {
        s = train_epochs(ss, ss->col.exec, &train, r->column_loss_curve, &r->column_train_seconds, "column");
        if (s == LR_OK)
            r->column_test_accuracy = accuracy(ss->col.exec, &test, o->cfg.batch, 0);
    }
    r->loss = (float)r->loss_curve[0];
    r->column_loss = (float)r->column_loss_curve[0];
    /* training: step times are means over every step of every epoch */
    double steps = (double)o->epochs * (train.n / o->cfg.batch);
    if (s == LR_OK && steps > 0) {
        r->step_ms = 1e3 * r->train_seconds / steps;
        r->column_step_ms = 1e3 * r->column_train_seconds / steps;
    }
    data_free(&train);
    data_free(&test);
    return s;
}

/* ------------------------------------------------------------------ driver */

static lr_status open_net(const validate_options *o, net_t **net)
{
    if (!o->net)
        return lr_fail(LR_ERR_USAGE, "--net is required (e.g. --net tiny-vgg; see --help)");
    LR_TRY(net_open(o->net, net));
    if (o->in_h && (o->in_h != (*net)->nodes[0].h || o->in_w != (*net)->nodes[0].w))
        LR_TRY(net_reshape(*net, o->in_h, o->in_w));
    if (o->cfg.dtype != DT_FP32)
        return lr_fail(LR_ERR_USAGE, "--dtype: the executors run fp32 only");
    return LR_OK;
}

/* The step time of a plan as the time model of `device` predicts it (its closed form with the
 * device's kernel times). */
static int64_t predicted_ns(const plan_t *plan, const device_spec *device)
{
    plan_t timed = *plan;
    timed.cfg.device = device;
    plan_cost c;
    plan_closed_form(&timed, &c);
    return c.step_ns;
}

/* What the planner predicts of the strategy's step against column's: its FLOPs, and on the cpu
 * backend the cpu time model's step time (planner/device.c, fitted by bench/cpu_time.sh). */
static void predicted_ratios(const session *ss, validate_result *r)
{
    const plan_cost *row = &ss->row.cost, *col = &ss->col.cost;
    r->predicted_flops_ratio = col->flops > 0 ? (double)row->flops / (double)col->flops : 0;
    const device_spec *cpu = device_find("cpu");
    r->time_model = NULL;
    r->predicted_time_ratio = 0;
    if (strcmp(ss->o->backend, "cpu") != 0 || !cpu)
        return;
    int64_t row_ns = predicted_ns(ss->row.plan, cpu), col_ns = predicted_ns(ss->col.plan, cpu);
    if (col_ns > 0 && row_ns < INT64_MAX && col_ns < INT64_MAX) {
        r->time_model = cpu->name;
        r->predicted_time_ratio = (double)row_ns / (double)col_ns;
    }
}

static lr_status setup(session *ss, const exec_backend *be, void *bctx, validate_result *r)
{
    const validate_options *o = ss->o;
    LR_TRY(cost_check_layers(ss->net, o->cfg.batch, 4));
    LR_TRY(runner_init(&ss->row, ss->net, &o->cfg, &o->req, be, bctx, &o->hp, o->dry_run));
    r->predicted_peak_bytes = ss->row.cost.peak_bytes;
    r->sim_peak_bytes = ss->row.sim.peak_bytes;
    r->predicted_host_bytes = ss->row.cost.host_bytes;
    r->sim_host_bytes = ss->row.sim.host_peak_bytes;
    r->predicted_copy_bytes = ss->row.cost.copy_bytes;
    r->sim_copy_bytes = ss->row.sim.copy_bytes;
    r->offload = ss->row.plan->cfg.offload;
    r->workspace_bytes = ss->row.cost.workspace_bytes;
    r->rows = ss->row.plan->n_stages ? ss->row.plan->spec.parts[0] : 1;
    const plan_spec *sp = &ss->row.plan->spec;
    for (int k = 0, at = 0; k < sp->n_stages && at + 80 < (int)sizeof r->stages; k++)
        at += snprintf(r->stages + at, sizeof r->stages - (size_t)at, "%s%s/%d%s", k ? " " : "",
                       ss->net->nodes[sp->cut[k]].name, sp->parts[k],
                       plan_spec_recomputes(sp, k) ? "r" : ""); /* r: recomputes its boundaries */
    r->in_h = ss->net->nodes[0].h, r->in_w = ss->net->nodes[0].w;
    r->approximate = strategy_is_approximate(ss->net, &o->cfg, &ss->row.plan->spec);
    if (ss->has_col) {
        plan_request creq = o->req;
        creq.strategy = STRAT_COLUMN;
        LR_TRY(runner_init(&ss->col, ss->net, &o->cfg, &creq, be, bctx, &o->hp, o->dry_run));
        if (!o->dry_run)
            LR_TRY(exec_copy_params(ss->col.exec, ss->row.exec));
        r->column_predicted_peak_bytes = ss->col.cost.peak_bytes;
        predicted_ratios(ss, r);
    }
    if (o->dry_run)
        return LR_OK;
    const net_node *in = &ss->net->nodes[0];
    ss->images = malloc(sizeof(float) * (size_t)o->cfg.batch * in->c * in->h * in->w);
    ss->labels = malloc(sizeof(int32_t) * (size_t)o->cfg.batch);
    if (!ss->images || !ss->labels)
        return lr_fail(LR_ERR_NOMEM, "out of memory for a batch");
    return LR_OK;
}

static lr_status run_session(session *ss, validate_result *r)
{
    const validate_options *o = ss->o;
    if (o->data && strcmp(o->data, "fashion-mnist") == 0 && o->epochs > 0)
        return train_mode(ss, r);
    data_set d;
    const net_node *in = &ss->net->nodes[0];
    int classes = ss->net->nodes[classes_node(ss->net)].c;
    lr_status s;
    int64_t images = (int64_t)o->cfg.batch * o->steps; /* both up to 2^20 */
    if (o->data && strcmp(o->data, "fashion-mnist") == 0)
        s = data_load_fashion(o->data_dir, "train", images < INT_MAX ? (int)images : 0, &d);
    else
        s = data_synthetic(o->cfg.batch * (o->steps < 64 ? o->steps : 64), in->c, in->h, in->w,
                           classes, o->hp.seed + 7, &d);
    if (s == LR_OK)
        s = check_data(ss, &d, "training");
    if (s == LR_OK)
        s = step_mode(ss, &d, r);
    data_free(&d);
    return s;
}

/* Out of memory while running: both plans' predictions. */
static lr_status steps_with_prediction(lr_status s, const session *ss)
{
    char who[64];
    snprintf(who, sizeof who, "the %s", plan_strategy_name(ss->o->req.strategy));
    s = with_prediction(s, who, ss->row.cost.peak_bytes);
    return ss->has_col ? with_prediction(s, "the column", ss->col.cost.peak_bytes) : s;
}

/* ------------------------------------------------------------------ device memory */

/* "pid 123 (512 MiB), pid 456 (80 MiB)" for the processes other than `self` on the device with
 * bus id `bus`, from nvidia-smi --query-compute-apps=gpu_bus_id,pid,used_memory CSV lines;
 * "none" when there are none. Bus ids compare without their PCI domain and case. */
void validate_other_processes(const char *csv, const char *bus, long self, char *out, size_t cap)
{
    const char *want = strchr(bus, ':') ? strchr(bus, ':') + 1 : bus;
    size_t at = 0;
    out[0] = '\0';
    for (const char *line = csv; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        char id[64];
        long pid;
        double mib;
        if (sscanf(line, " %63[^,], %ld, %lf", id, &pid, &mib) != 3 || pid == self)
            continue;
        const char *got = strchr(id, ':') ? strchr(id, ':') + 1 : id;
        if (strcasecmp(got, want) != 0 || at + 40 >= cap)
            continue;
        at += (size_t)snprintf(out + at, cap - at, "%spid %ld (%.0f MiB)", at ? ", " : "", pid, mib);
    }
    if (at == 0)
        snprintf(out, cap, "none");
}

#ifdef LRCNN_HAVE_CUDA
/* Who else uses the device, from nvidia-smi (cudaMemGetInfo counts them all). */
static void other_processes(void *bctx, char *out, size_t cap)
{
    char bus[32], csv[4096];
    if (cuda_backend_bus_id(bctx, bus, sizeof bus) != LR_OK) {
        snprintf(out, cap, "unknown (%s)", lr_last_error());
        return;
    }
    FILE *p = popen("nvidia-smi --query-compute-apps=gpu_bus_id,pid,used_memory "
                    "--format=csv,noheader,nounits 2>&1", "r");
    size_t n = p ? fread(csv, 1, sizeof csv - 1, p) : 0;
    csv[n] = '\0';
    int rc = p ? pclose(p) : -1;
    if (rc != 0) {
        csv[strcspn(csv, "\n")] = '\0';
        snprintf(out, cap, "unknown (nvidia-smi: %s)", rc == -1 ? "cannot run" : csv);
        return;
    }
    validate_other_processes(csv, bus, (long)getpid(), out, cap);
}
#endif

/* The device-level numbers of validate.h for the strategy being validated. */
static lr_status device_memory(session *ss, validate_result *r)
{
    r->packed_calls = 0;
#ifdef LRCNN_HAVE_CUDA
    if (strncmp(ss->o->backend, "cuda", 4) == 0)
        r->packed_calls = cuda_backend_packed_calls(ss->bctx);
    if (!ss->on_device)
        return LR_OK;
    cuda_memory m;
    LR_TRY(cuda_backend_memory(ss->bctx, &m));
    int64_t own = r->arena_bytes;
    int64_t others = ss->has_col ? exec_memory_stats(ss->col.exec)->arena_bytes : 0;
    r->device_baseline_bytes = m.context_used;
    r->device_warm = m.warm_used > 0;
    r->device_lazy_bytes = r->device_warm ? m.warm_used - m.context_used - own - others : -1;
    r->device_extra_bytes = r->device_warm ? m.peak_used - m.warm_used
                                           : m.peak_used - m.context_used - own - others;
    r->device_peak_bytes = own + r->device_extra_bytes;
    r->device_shared_with_column = ss->has_col;
    other_processes(ss->bctx, r->device_processes, sizeof r->device_processes);
#endif
    (void)ss, (void)r;
    return LR_OK;
}

/* The value of field `key` on a /proc/cpuinfo line ("model name\t: AMD EPYC\n"), or NULL. */
static const char *cpuinfo_value(const char *line, const char *key)
{
    size_t len = strlen(key);
    if (strncmp(line, key, len) != 0)
        return NULL;
    line += len;
    line += strspn(line, " \t");
    return *line == ':' ? line + 1 + strspn(line + 1, " \t") : NULL;
}

/* "AMD EPYC (family 25, model 1, stepping 1)" from /proc/cpuinfo's first processor: the model
 * name, then the x86 family, model and stepping that tell its generations apart; what of it is
 * there, else "unknown". */
static void host_cpu(char *buf, size_t size)
{
    static const char *const keys[] = {"model name", "cpu family", "model", "stepping"};
    char val[4][64] = {{0}}, line[256];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f) && line[0] != '\n') /* a blank line ends the first */
        for (int k = 0; k < 4; k++) {
            const char *v = cpuinfo_value(line, keys[k]);
            if (v)
                snprintf(val[k], sizeof val[k], "%.*s", (int)strcspn(v, "\n"), v);
        }
    if (f)
        fclose(f);
    if (!val[1][0])
        snprintf(buf, size, "%s", val[0][0] ? val[0] : "unknown");
    else
        snprintf(buf, size, "%s%s(family %s, model %s, stepping %s)", val[0], val[0][0] ? " " : "",
                 val[1], val[2][0] ? val[2] : "?", val[3][0] ? val[3] : "?");
}

lr_status validate_run(const validate_options *o, validate_result *r)
{
    memset(r, 0, sizeof *r);
    r->test_accuracy = r->column_test_accuracy = -1;
    r->device_peak_bytes = r->device_extra_bytes = r->device_lazy_bytes = -1;
    if (o->profile && strcmp(o->backend, "cuda") == 0)
        return lr_fail(LR_ERR_USAGE, "--profile: times kernel calls on the host clock, so on the cpu "
                                     "or cuda-emulated backend only (CUDA kernels run asynchronously)");
    if (o->profile && (o->dry_run || o->epochs > 0))
        return lr_fail(LR_ERR_USAGE, "--profile: times training steps in step mode (drop %s)",
                       o->dry_run ? "--dry-run" : "--epochs");
    net_t *net = NULL;
    lr_status s = open_net(o, &net);
    if (s != LR_OK) {
        net_free(net); /* loaded, then --input or --dtype refused */
        return s;
    }
    /* before planning: the CPU backend's workspace is a slice per thread */
    omp_set_num_threads(o->threads > 0 ? o->threads : omp_get_num_procs());
    r->threads = omp_get_max_threads();
    r->threads_wait = wait_env_mode();
    bool spinning = strcmp(r->threads_wait, "spin") == 0;
    r->threads_spins = spinning ? wait_env_spins() : -1;
    cpu_set_spinning(spinning);
    host_cpu(r->host_cpu, sizeof r->host_cpu);
    cpu_gemm_describe(r->cpu_gemm, sizeof r->cpu_gemm);
    const exec_backend *be;
    void *bctx;
    s = validate_backend(o->backend, o->deterministic, &be, &bctx);
    if (s != LR_OK) {
        net_free(net);
        return s;
    }
    session ss = {.o = o, .net = net, .has_col = o->column && o->req.strategy != STRAT_COLUMN,
                  .bctx = bctx, .on_device = strcmp(o->backend, "cuda") == 0};
    s = setup(&ss, be, bctx, r);
    if (s == LR_OK && !o->dry_run)
        s = steps_with_prediction(run_session(&ss, r), &ss);
    if (s == LR_OK && !o->dry_run) {
        r->measured_peak_bytes = exec_memory_stats(ss.row.exec)->counted_peak_bytes;
        r->arena_bytes = exec_memory_stats(ss.row.exec)->arena_bytes;
        r->measured_host_bytes = exec_memory_stats(ss.row.exec)->host_counted_peak_bytes;
        if (ss.has_col)
            r->column_measured_peak_bytes = exec_memory_stats(ss.col.exec)->counted_peak_bytes;
        s = device_memory(&ss, r);
    }
    if (!ss.has_col) {
        r->column_loss = r->loss;
        r->column_step_ms = r->step_ms;
    }
    runner_free(&ss.row);
    if (ss.has_col)
        runner_free(&ss.col);
    free(ss.images);
    free(ss.labels);
    validate_backend_release(o->backend, bctx);
    net_free(net);
    return s;
}

void validate_result_free(validate_result *r)
{
    free(r->loss_curve);
    free(r->column_loss_curve);
    free(r->profile);
    free(r->column_profile);
    r->loss_curve = r->column_loss_curve = NULL;
    r->profile = r->column_profile = NULL;
}

/* ------------------------------------------------------------------ output */

static double rel(int64_t measured, int64_t predicted)
{
    return predicted ? (double)(measured - predicted) / (double)predicted : 0;
}

static void print_device(FILE *f, const validate_result *r)
{
    fprintf(f, "device   peak %.3f MiB = arena %.3f MiB + %.3f MiB beyond it%s (%+.2f%% vs predicted); "
               "context %.1f MiB",
            r->device_peak_bytes / 1048576.0, r->arena_bytes / 1048576.0,
            r->device_extra_bytes / 1048576.0, r->device_warm ? " after the warm-up step" : "",
            100 * rel(r->device_peak_bytes, r->predicted_peak_bytes),
            r->device_baseline_bytes / 1048576.0);
    if (r->device_lazy_bytes >= 0)
        fprintf(f, ", loaded by the warm-up step %.1f MiB", r->device_lazy_bytes / 1048576.0);
    fputc('\n', f);
    if (!r->device_warm)
        fprintf(f, "device   (one step: what loads lazily is in the extra; --steps 2 or more "
                   "measures after a warm-up step)\n");
    if (r->device_shared_with_column)
        fprintf(f, "device   (the column run shares this process: its transients are in the extra; "
                   "--no-column for the device check)\n");
    fprintf(f, "device   other processes on the device: %s\n", r->device_processes);
}

/* Whether operator op in pass ps ran in the strategy's profile or column's (c: NULL, none). */
static bool profiled(const exec_profile *p, const exec_profile *c, int op, int ps)
{
    return p->calls[op][ps] || (c && c->calls[op][ps]);
}

/* One line of the --profile table: calls and ms per step, the strategy's then column's. */
static void profile_row(FILE *f, const char *what, const char *pass, double per, int64_t calls,
                        double ms, const exec_profile *c, int64_t col_calls, double col_ms)
{
    fprintf(f, "         %-16s %-9s %8.1f %9.3f", what, pass, calls * per, ms * per);
    if (c)
        fprintf(f, "  %8.1f %9.3f", col_calls * per, col_ms * per);
    fputc('\n', f);
}

/* What layer l's kernel time of the strategy would be at column's rate: column's time scaled by
 * the FLOP ratio (a layer with no FLOPs in column keeps the strategy's measured time). */
static double at_column_rate_ms(const exec_profile_layer *l, const exec_profile_layer *c)
{
    return c->flops > 0 ? c->ms * ((double)l->flops / (double)c->flops) : l->ms;
}

/* Whether layer l ran in the strategy's steps or in column's (c: NULL without a column run). */
static bool layer_ran(const exec_profile_layer *l, const exec_profile_layer *c)
{
    return l->calls || (c && c->calls);
}

/* The strategy's kernel time, summed over the layers, if every layer ran at its rate in column. */
static double at_column_rate_total_ms(const exec_profile *p, const exec_profile *c)
{
    double ms = 0;
    for (int l = 0; l < p->n_layers; l++)
        if (layer_ran(&p->layer[l], &c->layer[l]))
            ms += at_column_rate_ms(&p->layer[l], &c->layer[l]);
    return ms;
}

static double gflops(int64_t flops, double ms)
{
    return ms > 0 ? (double)flops / (ms * 1e6) : 0;
}

/* --profile, by layer: the strategy's calls, time and rate (GFLOP/s of the planner's FLOPs)
 * beside column's, the time and FLOP ratios, and the step in kernels if every layer ran at
 * column's rate: what separates extra FLOPs landing in slow layers (the FLOP ratio under-weights
 * them) from stripes running slower than the same layer in column. */
static void print_profile_layers(FILE *f, const char *name, const validate_result *r)
{
    const exec_profile *p = r->profile, *c = r->column_profile;
    double per = r->profile_steps > 0 ? 1.0 / r->profile_steps : 0;
    fprintf(f, "profile  %s by layer, per step: calls, ms and GFLOP/s (the planner's FLOPs)%s\n",
            name, c ? ", column's beside them, and the ratios" : "");
    fprintf(f, "         %-16s %-16s %8s %9s %8s", "layer", "op", "calls", "ms", "GFLOP/s");
    if (c)
        fprintf(f, "  %8s %9s %8s %7s %7s", "column", "ms", "GFLOP/s", "time x", "FLOPs x");
    fputc('\n', f);
    double total = 0, ctotal = 0;
    for (int l = 0; l < p->n_layers; l++) {
        const exec_profile_layer *a = &p->layer[l], *b = c ? &c->layer[l] : NULL;
        if (!layer_ran(a, b))
            continue;
        fprintf(f, "         %-16s %-16s %8.1f %9.3f %8.2f", a->name, net_op_name(a->op),
                a->calls * per, a->ms * per, gflops(a->flops, a->ms));
        total += a->ms;
        if (b) {
            fprintf(f, "  %8.1f %9.3f %8.2f", b->calls * per, b->ms * per, gflops(b->flops, b->ms));
            if (b->ms > 0)
                fprintf(f, " %7.2f", a->ms / b->ms);
            else
                fprintf(f, " %7s", "-");
            if (b->flops > 0)
                fprintf(f, " %7.2f", (double)a->flops / (double)b->flops);
            ctotal += b->ms;
        }
        fputc('\n', f);
    }
    if (c && ctotal > 0) {
        double at_rate = at_column_rate_total_ms(p, c);
        fprintf(f, "         in kernels %.3f ms (%.2fx column's %.3f); at column's rate in every "
                   "layer %.3f ms (%.2fx)\n",
                total * per, total / ctotal, ctotal * per, at_rate * per, at_rate / ctotal);
    }
}

/* --profile: per step, the calls and milliseconds of each operator and pass, the strategy's
 * beside column's, then the strategy's calls by duration, then the same by layer. */
static void print_profile(FILE *f, const char *name, const validate_result *r)
{
    const exec_profile *p = r->profile, *c = r->column_profile;
    double per = r->profile_steps > 0 ? 1.0 / r->profile_steps : 0;
    fprintf(f, "profile  kernel calls and ms per step (host clock around each call, %d step%s)\n",
            r->profile_steps, r->profile_steps == 1 ? "" : "s");
    fprintf(f, "         %-16s %-9s %8s %9s", "op", "pass", "calls", "ms");
    if (c)
        fprintf(f, "  %8s %9s", "column", "ms");
    fputc('\n', f);
    double total = p->copy_ms, ctotal = c ? c->copy_ms : 0;
    for (int op = 0; op < OP_COUNT; op++)
        for (int ps = 0; ps < PASS_COUNT; ps++) {
            if (!profiled(p, c, op, ps))
                continue;
            profile_row(f, net_op_name((net_op)op), sched_pass_name((sched_pass)ps), per,
                        p->calls[op][ps], p->ms[op][ps], c, c ? c->calls[op][ps] : 0,
                        c ? c->ms[op][ps] : 0);
            total += p->ms[op][ps], ctotal += c ? c->ms[op][ps] : 0;
        }
    if (p->copy_calls || (c && c->copy_calls))
        profile_row(f, "copy", "-", per, p->copy_calls, p->copy_ms, c, c ? c->copy_calls : 0,
                    c ? c->copy_ms : 0);
    fprintf(f, "         %-26s %8s %9.3f", "in kernels and copies", "", total * per);
    if (c)
        fprintf(f, "  %8s %9.3f", "", ctotal * per);
    fprintf(f, "\nprofile  %s calls by duration, per step:", name);
    for (int b = 0; b < EXEC_PROFILE_BUCKETS; b++) {
        if (!p->bucket_calls[b])
            continue;
        if (b < EXEC_PROFILE_BUCKETS - 1)
            fprintf(f, " <=%gus", exec_profile_bucket_us(b));
        else
            fprintf(f, " >%gus", exec_profile_bucket_us(b - 1));
        fprintf(f, " %.1f (%.3f ms)", p->bucket_calls[b] * per, p->bucket_ms[b] * per);
    }
    fputc('\n', f);
    print_profile_layers(f, name, r);
}

/* --dry-run: the plan only. */
static void print_plan(FILE *f, const validate_result *r)
{
    fprintf(f, "plan     predicted %.3f MiB (closed form), replay %.3f MiB, workspace %.3f MiB; "
               "stages %s (dry run: nothing ran)\n",
            r->predicted_peak_bytes / 1048576.0, r->sim_peak_bytes / 1048576.0,
            r->workspace_bytes / 1048576.0, r->stages[0] ? r->stages : "-");
}

void validate_print(FILE *f, const validate_options *o, const validate_result *r)
{
    const char *name = plan_strategy_name(o->req.strategy);
    char wait[64] = ""; /* one thread never waits */
    if (r->threads > 1 && r->threads_spins >= 0)
        snprintf(wait, sizeof wait, "s (waiting: %s, %d spins)", r->threads_wait, r->threads_spins);
    else if (r->threads > 1)
        snprintf(wait, sizeof wait, "s (waiting: %s)", r->threads_wait);
    fprintf(f, "%s, strategy %s (rows %d), batch %d, bn %s, %s backend, %d thread%s\n", o->net,
            name, r->rows, o->cfg.batch, plan_bn_name(o->cfg.bn), o->backend, r->threads, wait);
    if (o->dry_run) {
        print_plan(f, r);
        return;
    }
    if (strcmp(o->backend, "cpu") == 0)
        fprintf(f, "host     %s; GEMM %s\n", r->host_cpu, r->cpu_gemm);
    char ws[64] = "";
    if (r->workspace_bytes > 0)
        snprintf(ws, sizeof ws, ", %.3f MiB of it workspace", r->workspace_bytes / 1048576.0);
    fprintf(f, "memory   predicted %.3f MiB (closed form%s), replay %.3f MiB; measured %.3f MiB "
               "(allocator, %+.2f%%), arena %.3f MiB (%+.2f%% fragmentation and alignment)\n",
            r->predicted_peak_bytes / 1048576.0, ws, r->sim_peak_bytes / 1048576.0,
            r->measured_peak_bytes / 1048576.0, 100 * rel(r->measured_peak_bytes, r->predicted_peak_bytes),
            r->arena_bytes / 1048576.0, 100 * rel(r->arena_bytes, r->predicted_peak_bytes));
    if (o->cfg.offload_auto && r->predicted_host_bytes == 0)
        fprintf(f, "host     nothing (--offload auto chose none: offloading saves 1%% or less of the "
                   "device peak)\n");
    if (r->predicted_host_bytes > 0)
        fprintf(f, "host     predicted %.3f MiB (--offload %s%s), replay %.3f MiB; measured %.3f MiB; "
                   "copied between host and device per step: %.3f MiB predicted, %.3f MiB replayed\n",
                r->predicted_host_bytes / 1048576.0, o->cfg.offload_auto ? "auto: " : "",
                plan_offload_name(r->offload),
                r->sim_host_bytes / 1048576.0,
                r->measured_host_bytes / 1048576.0, r->predicted_copy_bytes / 1048576.0,
                r->sim_copy_bytes / 1048576.0);
    if (r->device_peak_bytes >= 0)
        print_device(f, r);
    if (r->packed_calls > 0)
        fprintf(f, "cuda     %lld convolution calls ran packed (cuDNN turned down every algorithm for "
                   "their views)\n", (long long)r->packed_calls);
    if (o->column && o->req.strategy != STRAT_COLUMN) {
        fprintf(f, "loss     %s %.7f  column %.7f  |diff| %.3g\n", name, r->loss, r->column_loss,
                fabs((double)r->loss - r->column_loss));
        if (o->check_grads) {
            fprintf(f, "grads    largest relative error %.3g (worst: %s", r->grad_max_rel_err,
                    r->grad_worst);
            if (r->grad_worst_share < 0.01) /* its error is rounding's of larger terms */
                fprintf(f, ", whose gradients peak at %.3g of the net's largest", r->grad_worst_share);
            fprintf(f, "); %.3g of the net's largest gradient%s\n", r->grad_max_net_err,
                    r->approximate ? "  (approximate: stripe BatchNorm)" : "");
        }
        if (r->step_ms > 0) {
            fprintf(f, "time     %s %.2f ms/step  column %.2f ms/step (%.2fx; predicted %.2fx in FLOPs",
                    name, r->step_ms, r->column_step_ms,
                    r->column_step_ms > 0 ? r->step_ms / r->column_step_ms : 0,
                    r->predicted_flops_ratio);
            if (r->time_model)
                fprintf(f, ", %.2fx by the %s time model", r->predicted_time_ratio, r->time_model);
            fprintf(f, ")\n");
        }
    } else {
        fprintf(f, "loss     %.7f\ntime     %.2f ms/step\n", r->loss, r->step_ms);
    }
    if (r->profile)
        print_profile(f, name, r);
    if (r->test_accuracy >= 0) {
        fprintf(f, "train    loss per epoch:");
        for (int i = 0; i < r->n_curve; i++)
            fprintf(f, " %.4f", r->loss_curve[i]);
        fprintf(f, "  (%.1f s)\n", r->train_seconds);
        fprintf(f, "accuracy %s %.2f%%", name, r->test_accuracy);
        if (r->column_test_accuracy >= 0)
            fprintf(f, "  column %.2f%% (%.1f s)", r->column_test_accuracy, r->column_train_seconds);
        fputc('\n', f);
    }
}

static json_object *curve_json(const double *v, int n)
{
    json_object *a = json_object_new_array();
    for (int i = 0; v && i < n; i++)
        json_object_array_add(a, json_object_new_double(v[i]));
    return a;
}

/* --profile: {"steps", "ops": [{op, pass, calls, ms, column_calls, column_ms}], "copy",
 * "durations": [{max_us (null: the open bucket), calls, ms}], "layers": [{layer, op, calls, ms,
 * flops, column_calls, column_ms, column_flops}], "at_column_rate_ms"}, per step (column's null
 * without a column run). */
static json_object *profile_json(const validate_result *r)
{
    const exec_profile *p = r->profile, *c = r->column_profile;
    double per = r->profile_steps > 0 ? 1.0 / r->profile_steps : 0;
    json_object *j = json_object_new_object(), *ops = json_object_new_array();
    json_object_object_add(j, "steps", json_object_new_int(r->profile_steps));
    for (int op = 0; op < OP_COUNT; op++)
        for (int ps = 0; ps < PASS_COUNT; ps++) {
            if (!profiled(p, c, op, ps))
                continue;
            json_object *e = json_object_new_object();
            json_object_object_add(e, "op", json_object_new_string(net_op_name((net_op)op)));
            json_object_object_add(e, "pass", json_object_new_string(sched_pass_name((sched_pass)ps)));
            json_object_object_add(e, "calls", json_object_new_double(p->calls[op][ps] * per));
            json_object_object_add(e, "ms", json_object_new_double(p->ms[op][ps] * per));
            json_object_object_add(e, "column_calls", c ? json_object_new_double(c->calls[op][ps] * per) : NULL);
            json_object_object_add(e, "column_ms", c ? json_object_new_double(c->ms[op][ps] * per) : NULL);
            json_object_array_add(ops, e);
        }
    json_object_object_add(j, "ops", ops);
    json_object *copy = json_object_new_object();
    json_object_object_add(copy, "calls", json_object_new_double(p->copy_calls * per));
    json_object_object_add(copy, "ms", json_object_new_double(p->copy_ms * per));
    json_object_object_add(j, "copy", copy);
    json_object *d = json_object_new_array();
    for (int b = 0; b < EXEC_PROFILE_BUCKETS; b++) {
        json_object *e = json_object_new_object();
        json_object_object_add(e, "max_us", b < EXEC_PROFILE_BUCKETS - 1
                                                ? json_object_new_double(exec_profile_bucket_us(b))
                                                : NULL);
        json_object_object_add(e, "calls", json_object_new_double(p->bucket_calls[b] * per));
        json_object_object_add(e, "ms", json_object_new_double(p->bucket_ms[b] * per));
        json_object_array_add(d, e);
    }
    json_object_object_add(j, "durations", d);
    json_object *layers = json_object_new_array();
    for (int l = 0; l < p->n_layers; l++) {
        const exec_profile_layer *a = &p->layer[l], *b = c ? &c->layer[l] : NULL;
        if (!layer_ran(a, b))
            continue;
        json_object *e = json_object_new_object();
        json_object_object_add(e, "layer", json_object_new_string(a->name));
        json_object_object_add(e, "op", json_object_new_string(net_op_name(a->op)));
        json_object_object_add(e, "calls", json_object_new_double(a->calls * per));
        json_object_object_add(e, "ms", json_object_new_double(a->ms * per));
        json_object_object_add(e, "flops", json_object_new_double((double)a->flops * per));
        json_object_object_add(e, "column_calls", b ? json_object_new_double(b->calls * per) : NULL);
        json_object_object_add(e, "column_ms", b ? json_object_new_double(b->ms * per) : NULL);
        json_object_object_add(e, "column_flops", b ? json_object_new_double((double)b->flops * per) : NULL);
        json_object_array_add(layers, e);
    }
    json_object_object_add(j, "layers", layers);
    json_object_object_add(j, "at_column_rate_ms",
                           c ? json_object_new_double(at_column_rate_total_ms(p, c) * per) : NULL);
    return j;
}

void validate_print_json(FILE *f, const validate_options *o, const validate_result *r)
{
    json_object *j = json_object_new_object();
    json_object_object_add(j, "net", json_object_new_string(o->net));
    json_object_object_add(j, "strategy", json_object_new_string(plan_strategy_name(o->req.strategy)));
    json_object_object_add(j, "rows", json_object_new_int(r->rows));
    json_object_object_add(j, "backend", json_object_new_string(o->backend));
    json_object_object_add(j, "threads", json_object_new_int(r->threads));
    json_object_object_add(j, "threads_wait", json_object_new_string(r->threads_wait));
    json_object_object_add(j, "threads_spins",
                           r->threads_spins >= 0 ? json_object_new_int(r->threads_spins) : NULL);
    json_object_object_add(j, "host_cpu", json_object_new_string(r->host_cpu));
    json_object_object_add(j, "cpu_gemm", json_object_new_string(r->cpu_gemm));
    json_object_object_add(j, "batch", json_object_new_int(o->cfg.batch));
    json_object_object_add(j, "bn", json_object_new_string(plan_bn_name(o->cfg.bn)));
    json_object_object_add(j, "approximate", json_object_new_boolean(r->approximate));
    json_object_object_add(j, "predicted_peak_bytes", json_object_new_int64(r->predicted_peak_bytes));
    json_object_object_add(j, "sim_peak_bytes", json_object_new_int64(r->sim_peak_bytes));
    json_object_object_add(j, "offload", json_object_new_string(plan_offload_name(r->offload)));
    json_object_object_add(j, "offload_auto", json_object_new_boolean(o->cfg.offload_auto));
    json_object_object_add(j, "boundaries", json_object_new_string(plan_boundaries_name(&o->cfg)));
    json_object_object_add(j, "predicted_host_bytes", json_object_new_int64(r->predicted_host_bytes));
    json_object_object_add(j, "sim_host_bytes", json_object_new_int64(r->sim_host_bytes));
    json_object_object_add(j, "measured_host_bytes", json_object_new_int64(r->measured_host_bytes));
    json_object_object_add(j, "predicted_copy_bytes", json_object_new_int64(r->predicted_copy_bytes));
    json_object_object_add(j, "sim_copy_bytes", json_object_new_int64(r->sim_copy_bytes));
    json_object_object_add(j, "measured_peak_bytes", json_object_new_int64(r->measured_peak_bytes));
    json_object_object_add(j, "arena_bytes", json_object_new_int64(r->arena_bytes));
    json_object_object_add(j, "workspace_bytes", json_object_new_int64(r->workspace_bytes));
    json_object *in = json_object_new_array();
    json_object_array_add(in, json_object_new_int(r->in_h));
    json_object_array_add(in, json_object_new_int(r->in_w));
    json_object_object_add(j, "input", in);
    json_object_object_add(j, "optimizer", json_object_new_string(cost_optim_name(o->cfg.optim)));
    json_object_object_add(j, "stages", json_object_new_string(r->stages));
    json_object_object_add(j, "dry_run", json_object_new_boolean(o->dry_run));
    if (strncmp(o->backend, "cuda", 4) == 0)
        json_object_object_add(j, "packed_calls", json_object_new_int64(r->packed_calls));
    if (r->device_peak_bytes >= 0) {
        json_object_object_add(j, "device_peak_bytes", json_object_new_int64(r->device_peak_bytes));
        json_object_object_add(j, "device_extra_bytes", json_object_new_int64(r->device_extra_bytes));
        json_object_object_add(j, "device_baseline_bytes", json_object_new_int64(r->device_baseline_bytes));
        json_object_object_add(j, "device_lazy_bytes", r->device_lazy_bytes >= 0
                                                           ? json_object_new_int64(r->device_lazy_bytes)
                                                           : NULL);
        json_object_object_add(j, "device_warm", json_object_new_boolean(r->device_warm));
        json_object_object_add(j, "device_shared_with_column",
                               json_object_new_boolean(r->device_shared_with_column));
        json_object_object_add(j, "device_processes", json_object_new_string(r->device_processes));
    }
    json_object_object_add(j, "column_predicted_peak_bytes", json_object_new_int64(r->column_predicted_peak_bytes));
    json_object_object_add(j, "column_measured_peak_bytes", json_object_new_int64(r->column_measured_peak_bytes));
    json_object_object_add(j, "loss", json_object_new_double(r->loss));
    json_object_object_add(j, "column_loss", json_object_new_double(r->column_loss));
    json_object_object_add(j, "grad_max_rel_err", o->check_grads ? json_object_new_double(r->grad_max_rel_err) : NULL);
    json_object_object_add(j, "grad_max_net_err", o->check_grads ? json_object_new_double(r->grad_max_net_err) : NULL);
    json_object_object_add(j, "grad_worst", o->check_grads ? json_object_new_string(r->grad_worst) : NULL);
    json_object_object_add(j, "grad_worst_share", o->check_grads ? json_object_new_double(r->grad_worst_share) : NULL);
    json_object_object_add(j, "step_ms", json_object_new_double(r->step_ms));
    json_object_object_add(j, "column_step_ms", json_object_new_double(r->column_step_ms));
    json_object_object_add(j, "predicted_flops_ratio", json_object_new_double(r->predicted_flops_ratio));
    json_object_object_add(j, "predicted_time_ratio", json_object_new_double(r->predicted_time_ratio));
    json_object_object_add(j, "time_model", r->time_model ? json_object_new_string(r->time_model) : NULL);
    json_object_object_add(j, "loss_curve", curve_json(r->loss_curve, r->n_curve));
    json_object_object_add(j, "column_loss_curve", curve_json(r->column_loss_curve, r->n_curve));
    if (r->profile)
        json_object_object_add(j, "profile", profile_json(r));
    if (r->test_accuracy >= 0) {
        json_object_object_add(j, "test_accuracy", json_object_new_double(r->test_accuracy));
        json_object_object_add(j, "column_test_accuracy", json_object_new_double(r->column_test_accuracy));
        json_object_object_add(j, "train_seconds", json_object_new_double(r->train_seconds));
        json_object_object_add(j, "column_train_seconds", json_object_new_double(r->column_train_seconds));
    }
    fprintf(f, "%s\n", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(j);
}
