/* time_fit.c - refits the time model's constants (planner/device.h) from measured step times:
 *
 *   time-fit --device NAME [--constants FIT.json] [--no-fit] [--by-layer] [--out FILE.json] RUN.json...
 *
 * Each RUN.json is what `lrcnn-validate --json` printed: the net, input, batch, optimizer, BN mode,
 * strategy and stages of the plan that ran, its median step time (step_ms) and, when column ran
 * beside it, column's (column_step_ms). Every such step becomes a measurement; dry runs and files
 * that are not runs are skipped (one line on stderr says which). For each measurement the plan is
 * rebuilt from its stages and its schedule emitted, so the kernels are the ones that ran.
 *
 * The fit keeps the device's peak rate and moves efficiency, bandwidth, launch time and
 * half_elems to minimise the sum of squared log errors of the predicted step times (a pattern
 * search in log space from the table's values, each within 1000x of them, and from 16 points
 * around them). --by-layer fits the layers too: each layer of a run made with --profile
 * (profile.layers: its kernel time per step, the strategy's and column's) is a measurement of
 * that layer's kernels, its squared log error weighted by its share of the step, so a step's
 * layers weigh as much as the step. Steps alone cannot tell a slow convolution from slow
 * memory-bound layers (the same step time comes out of both), so a step fit can get every step
 * right and the split wrong, and with it the ratio of a plan whose extra work is mostly of one
 * kind; layers pin the split. It prints one line per
 * measurement (measured; predicted with the given constants, the table's or --constants'; and
 * predicted with the fitted ones),
 * the RMS log error of both, the predicted against the measured ratio to column for the runs that
 * have both, and the fitted constants as a device.c table line. --no-fit predicts with the
 * table's constants only. --constants starts from (or, with --no-fit, predicts with) the "fitted"
 * constants of an earlier --out file instead of the table's. --out writes the same as JSON, all
 * or nothing.
 *
 * Deliberately not here: running anything (bench/gpu.sh, bench/cpu_time.sh run lrcnn-validate).
 */
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heap.h"
#include "outfile.h"
#include "plan.h"

/* One measured step, or one layer's kernels in it (--by-layer): its kernels and its median
 * time. */
typedef struct {
    char tag[160];
    double measured_s;
    int n;
    device_kernel *k;
    int pair;      /* a step: the measurement of column from the same run, or -1 */
    double weight; /* in the fit's error: 1 for a step, a layer's share of its step's time */
    net_op op;     /* a layer's */
} measurement;

typedef struct {
    measurement *v;
    int n, cap;
} measurements;

/* ------------------------------------------------------------------ reading runs */

static const char *get_str(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : NULL;
}

static double get_num(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) ? json_object_get_double(v) : 0.0;
}

static lr_status spec_of(const net_t *net, const char *strategy, const char *stages,
                         plan_spec *sp)
{
    memset(sp, 0, sizeof *sp);
    sp->strategy = plan_strategy_from_name(strategy);
    if (sp->strategy == STRAT_COUNT)
        return lr_fail(LR_ERR_INPUT, "strategy: unknown '%s'", strategy);
    sp->kind = strstr(strategy, "2ps") ? PART_TILE_IN
               : strstr(strategy, "overl") ? PART_OVERLAP
                                           : PART_TILE_OUT;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", stages);
    for (char *save, *tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        char *slash = strrchr(tok, '/');
        if (!slash || sp->n_stages >= PLAN_MAX_STAGES)
            return lr_fail(LR_ERR_INPUT, "stages: expected LAYER/ROWS, got '%s'", tok);
        *slash = '\0';
        int cut = net_find(net, tok);
        if (cut <= 0)
            return lr_fail(LR_ERR_INPUT, "stages: %s has no layer '%s'", net->name, tok);
        sp->cut[sp->n_stages] = cut;
        sp->parts[sp->n_stages++] = atoi(slash + 1);
    }
    return LR_OK;
}

/* The kernels of the plan's schedule (node >= 0: of that layer only), as the time model sees
 * them. */
static lr_status kernels_of(const net_t *net, const plan_config *cfg, const plan_spec *sp,
                            int node, measurement *m)
{
    plan_t *plan;
    LR_TRY(plan_build(net, cfg, sp, &plan));
    lr_status st = plan_check_emit(plan);
    sched_t s;
    sched_init(&s);
    if (st == LR_OK)
        plan_emit(plan, &s);
    m->k = st == LR_OK ? malloc(sizeof(device_kernel) * (size_t)(s.n_steps ? s.n_steps : 1)) : NULL;
    if (st == LR_OK && !m->k)
        st = lr_fail(LR_ERR_NOMEM, "out of memory");
    for (int i = 0; st == LR_OK && i < s.n_steps; i++)
        if (node < 0 || s.steps[i].node == node)
            m->n += device_kernel_of_step(net, cfg->batch, 4, cfg->optim, &s.steps[i], &m->k[m->n]);
    sched_free(&s);
    plan_free(plan);
    return st;
}

static measurement *add_measurement(measurements *ms)
{
    if (ms->n == ms->cap) {
        ms->cap = ms->cap ? 2 * ms->cap : 64;
        ms->v = realloc(ms->v, sizeof(measurement) * (size_t)ms->cap);
        LR_ASSERT(ms->v != NULL);
    }
    measurement *m = &ms->v[ms->n++];
    memset(m, 0, sizeof *m);
    m->pair = -1;
    m->weight = 1;
    return m;
}

/* --by-layer: the layers of a run's profile (lrcnn-validate --profile --json), the strategy's
 * (prefix "") or column's ("column_"), each a measurement of its own kernels weighted by its
 * share of the step (layers without kernels or time are left out). */
static lr_status read_layers(json_object *profile, const net_t *net, const plan_config *cfg,
                             const plan_spec *sp, const char *tag, const char *prefix,
                             double step_ms, measurements *layers)
{
    json_object *arr;
    if (!profile || !json_object_object_get_ex(profile, "layers", &arr) ||
        !json_object_is_type(arr, json_type_array))
        return lr_fail(LR_ERR_INPUT, "--by-layer: no profile.layers (run lrcnn-validate with --profile)");
    char key[32];
    snprintf(key, sizeof key, "%sms", prefix);
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        json_object *e = json_object_array_get_idx(arr, i);
        const char *name = get_str(e, "layer");
        double ms = get_num(e, key);
        int node = name ? net_find(net, name) : -1;
        if (node < 0)
            return lr_fail(LR_ERR_INPUT, "profile.layers[%zu]: %s has no layer '%s'", i, net->name,
                           name ? name : "(none)");
        if (!(ms > 0) || !isfinite(ms))
            continue;
        measurement *m = add_measurement(layers);
        snprintf(m->tag, sizeof m->tag, "%s %s", tag, name);
        m->measured_s = ms / 1e3;
        m->weight = ms / step_ms;
        m->op = net->nodes[node].op;
        LR_TRY(kernels_of(net, cfg, sp, node, m));
        if (m->n == 0) {
            free(m->k);
            layers->n--;
        }
    }
    return LR_OK;
}

/* A run's measurements: its strategy's step, and column's when column ran beside it; with
 * layers (--by-layer), the same by layer. */
static lr_status read_run(const char *path, const device_spec *dev, measurements *ms,
                          measurements *layers)
{
    json_object *j = json_object_from_file(path), *in, *v;
    if (!j || !get_str(j, "strategy") || !json_object_object_get_ex(j, "input", &in) ||
        !(get_num(j, "step_ms") > 0) || !isfinite(get_num(j, "step_ms")) ||
        (json_object_object_get_ex(j, "dry_run", &v) && json_object_get_boolean(v))) {
        fprintf(stderr, "time-fit: %s: not a measured lrcnn-validate run, skipped\n", path);
        json_object_put(j);
        return LR_OK;
    }
    net_t *net = NULL;
    plan_config cfg = {.batch = (int)get_num(j, "batch"), .dtype = DT_FP32, .device = dev};
    const char *strategy = get_str(j, "strategy"), *bn = get_str(j, "bn");
    const char *optim = get_str(j, "optimizer");
    cfg.bn = BN_EXACT;
    for (int k = 0; bn && k < BN_COUNT; k++)
        if (strcmp(bn, plan_bn_name((plan_bn)k)) == 0)
            cfg.bn = (plan_bn)k;
    cfg.optim = !optim ? OPTIM_ADAM : strcmp(optim, "sgd") == 0 ? OPTIM_SGD
                                    : strcmp(optim, "momentum") == 0 ? OPTIM_MOMENTUM : OPTIM_ADAM;
    int h = json_object_get_int(json_object_array_get_idx(in, 0));
    int w = json_object_get_int(json_object_array_get_idx(in, 1));
    lr_status st = net_open(get_str(j, "net"), &net);
    if (st == LR_OK && (net->nodes[0].h != h || net->nodes[0].w != w))
        st = net_reshape(net, h, w);
    plan_spec sp, column = {.strategy = STRAT_COLUMN};
    if (st == LR_OK)
        st = spec_of(net, strategy, get_str(j, "stages") ? get_str(j, "stages") : "", &sp);
    int first = ms->n;
    json_object *profile = json_object_object_get_ex(j, "profile", &v) ? v : NULL;
    if (st == LR_OK) {
        measurement *m = add_measurement(ms);
        snprintf(m->tag, sizeof m->tag, "%s %dx%d b%d %s", net->name, h, w, cfg.batch, strategy);
        m->measured_s = get_num(j, "step_ms") / 1e3;
        st = kernels_of(net, &cfg, &sp, -1, m);
        if (st == LR_OK && layers)
            st = read_layers(profile, net, &cfg, &sp, m->tag, "", get_num(j, "step_ms"), layers);
    }
    if (st == LR_OK && strcmp(strategy, "column") != 0 && get_num(j, "column_step_ms") > 0 &&
        get_num(j, "column_step_ms") != get_num(j, "step_ms")) {
        measurement *m = add_measurement(ms);
        snprintf(m->tag, sizeof m->tag, "%s %dx%d b%d column", net->name, h, w, cfg.batch);
        m->measured_s = get_num(j, "column_step_ms") / 1e3;
        ms->v[first].pair = ms->n - 1;
        st = kernels_of(net, &cfg, &column, -1, m);
        if (st == LR_OK && layers)
            st = read_layers(profile, net, &cfg, &column, m->tag, "column_",
                             get_num(j, "column_step_ms"), layers);
    }
    net_free(net);
    json_object_put(j);
    if (st != LR_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", lr_last_error());
        return lr_fail(st, "%s: %s", path, why);
    }
    return LR_OK;
}

/* ------------------------------------------------------------------ the fit */

static double predict(const device_spec *d, const measurement *m)
{
    double t = 0;
    for (int i = 0; i < m->n; i++)
        t += device_kernel_seconds(d, &m->k[i]);
    return t;
}

/* Adds the weighted squared log errors of ms (NULL: none) and their weights to *sum, *weights. */
static void add_log_errors(const device_spec *d, const measurements *ms, double *sum,
                           double *weights)
{
    for (int i = 0; ms && i < ms->n; i++) {
        double e = log(predict(d, &ms->v[i]) / ms->v[i].measured_s);
        *sum += ms->v[i].weight * e * e;
        *weights += ms->v[i].weight;
    }
}

/* The weighted RMS of the log errors of a and b (b NULL: a's alone; steps weigh 1 each, so over
 * steps alone it is the plain RMS). */
static double rms_log_error2(const device_spec *d, const measurements *a, const measurements *b)
{
    double sum = 0, weights = 0;
    add_log_errors(d, a, &sum, &weights);
    add_log_errors(d, b, &sum, &weights);
    return weights > 0 ? sqrt(sum / weights) : 0;
}

static double rms_log_error(const device_spec *d, const measurements *ms)
{
    return rms_log_error2(d, ms, NULL);
}

/* The device with parameter k of the fit scaled by exp(x[k]). */
static device_spec moved(const device_spec *prior, const double *x)
{
    device_spec d = *prior;
    d.efficiency *= exp(x[0]);
    d.bandwidth *= exp(x[1]);
    d.launch_s *= exp(x[2]);
    d.half_elems *= exp(x[3]);
    return d;
}

/* Pattern search from x0 on the error over steps and layers (layers NULL: the steps'): each
 * coordinate tried up and down by the step, kept when better; the step halves when none is.
 * Efficiency stays at most 1. */
static device_spec search(const device_spec *prior, const double *x0, const measurements *steps,
                          const measurements *layers)
{
    double x[4] = {x0[0], x0[1], x0[2], x0[3]}, step = 1.0;
    device_spec d = moved(prior, x);
    double best = d.efficiency > 1.0 ? INFINITY : rms_log_error2(&d, steps, layers);
    for (int iter = 0; iter < 4000 && step > 1e-4; iter++) {
        bool better = false;
        for (int k = 0; k < 4; k++)
            for (int sgn = -1; sgn <= 1; sgn += 2) {
                double y[4] = {x[0], x[1], x[2], x[3]};
                y[k] += sgn * step;
                device_spec e = moved(prior, y);
                if (fabs(y[k]) > log(1000.0) || e.efficiency > 1.0)
                    continue;
                double err = rms_log_error2(&e, steps, layers);
                if (err < best) {
                    best = err, d = e, better = true;
                    memcpy(x, y, sizeof x);
                }
            }
        if (!better)
            step /= 2;
    }
    return d;
}

/* The best of pattern searches from the prior and from the 16 corners 10x away from it in each
 * constant: the error has shallow valleys (a faster convolution traded for slower memory fits
 * the steps almost as well), where one search stops wherever it entered. */
static device_spec fit(const device_spec *prior, const measurements *steps,
                       const measurements *layers)
{
    double x0[4] = {0, 0, 0, 0};
    device_spec best = search(prior, x0, steps, layers);
    double best_err = rms_log_error2(&best, steps, layers);
    for (int corner = 0; corner < 16; corner++) {
        for (int k = 0; k < 4; k++)
            x0[k] = (corner >> k & 1 ? 1 : -1) * log(10.0);
        device_spec d = search(prior, x0, steps, layers);
        double err = rms_log_error2(&d, steps, layers);
        if (err < best_err)
            best = d, best_err = err;
    }
    return best;
}

/* The "fitted" constants of an earlier --out file, over the table's. */
static lr_status load_constants(const char *path, device_spec *d)
{
    json_object *j = json_object_from_file(path), *f;
    if (!j || !json_object_object_get_ex(j, "fitted", &f)) {
        json_object_put(j);
        return lr_fail(LR_ERR_INPUT, "--constants: %s has no \"fitted\" object", path);
    }
    d->efficiency = get_num(f, "efficiency");
    d->bandwidth = get_num(f, "bandwidth");
    d->launch_s = get_num(f, "launch_s");
    d->half_elems = get_num(f, "half_elems");
    json_object_put(j);
    if (!(d->efficiency > 0 && d->bandwidth > 0 && d->launch_s > 0 && d->half_elems > 0))
        return lr_fail(LR_ERR_INPUT, "--constants: %s: every fitted constant must be positive", path);
    return LR_OK;
}

/* ------------------------------------------------------------------ output */

static json_object *device_json(const device_spec *d)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "peak_flops", json_object_new_double(d->peak_flops));
    json_object_object_add(o, "efficiency", json_object_new_double(d->efficiency));
    json_object_object_add(o, "bandwidth", json_object_new_double(d->bandwidth));
    json_object_object_add(o, "launch_s", json_object_new_double(d->launch_s));
    json_object_object_add(o, "half_elems", json_object_new_double(d->half_elems));
    return o;
}

/* --by-layer: measured and predicted time summed over the layers of each operator. */
static void report_layers(FILE *f, const device_spec *prior, const device_spec *fitted,
                          const measurements *layers)
{
    fprintf(f, "\nRMS log error by layer (weighted by the layer's share of its step): given %.3f",
            rms_log_error(prior, layers));
    fitted ? fprintf(f, ", fitted %.3f\n", rms_log_error(fitted, layers)) : fputc('\n', f);
    fprintf(f, "%-44s %11s %11s %11s\n", "layers by operator (all runs)", "measured ms", "given ms",
            fitted ? "fitted ms" : "");
    for (int op = 0; op < OP_COUNT; op++) {
        double meas = 0, given = 0, fit = 0;
        int n = 0;
        for (int i = 0; i < layers->n; i++)
            if (layers->v[i].op == (net_op)op) {
                meas += layers->v[i].measured_s, given += predict(prior, &layers->v[i]);
                fit += fitted ? predict(fitted, &layers->v[i]) : 0, n++;
            }
        if (!n)
            continue;
        fprintf(f, "%-44s %11.2f %11.2f", net_op_name((net_op)op), 1e3 * meas, 1e3 * given);
        fitted ? fprintf(f, " %11.2f\n", 1e3 * fit) : fputc('\n', f);
    }
}

static void report(FILE *f, const device_spec *prior, const device_spec *fitted,
                   const measurements *ms, const measurements *layers, json_object *rows)
{
    fprintf(f, "%-44s %11s %11s %11s\n", "step", "measured ms", "given ms",
            fitted ? "fitted ms" : "");
    for (int i = 0; i < ms->n; i++) {
        const measurement *m = &ms->v[i];
        double p = predict(prior, m), q = fitted ? predict(fitted, m) : 0;
        fprintf(f, "%-44s %11.2f %11.2f", m->tag, 1e3 * m->measured_s, 1e3 * p);
        fitted ? fprintf(f, " %11.2f\n", 1e3 * q) : fputc('\n', f);
        json_object *r = json_object_new_object();
        json_object_object_add(r, "step", json_object_new_string(m->tag));
        json_object_object_add(r, "measured_ms", json_object_new_double(1e3 * m->measured_s));
        json_object_object_add(r, "given_ms", json_object_new_double(1e3 * p));
        if (fitted)
            json_object_object_add(r, "fitted_ms", json_object_new_double(1e3 * q));
        json_object_array_add(rows, r);
    }
    fprintf(f, "RMS log error: given constants %.3f", rms_log_error(prior, ms));
    fitted ? fprintf(f, ", fitted %.3f\n", rms_log_error(fitted, ms)) : fputc('\n', f);
    const device_spec *use = fitted ? fitted : prior;
    fprintf(f, "\n%-44s %9s %9s %7s\n", "time / column", "measured", "predicted", "error");
    for (int i = 0; i < ms->n; i++) {
        const measurement *m = &ms->v[i];
        if (m->pair < 0)
            continue;
        double meas = m->measured_s / ms->v[m->pair].measured_s;
        double pred = predict(use, m) / predict(use, &ms->v[m->pair]);
        fprintf(f, "%-44s %8.3fx %8.3fx %+6.1f%%\n", m->tag, meas, pred, 100 * (pred / meas - 1));
    }
    if (layers)
        report_layers(f, prior, fitted, layers);
    if (fitted)
        fprintf(f, "\ndevice.c: {\"%s\", ..., %.4g, %.3g, %.4g, %.3g, %.4g, \"fitted\"}\n",
                fitted->name, fitted->peak_flops, fitted->efficiency, fitted->bandwidth,
                fitted->launch_s, fitted->half_elems);
}

static lr_status write_json(const char *path, const device_spec *prior, const device_spec *fitted,
                            const measurements *ms, const measurements *layers, json_object *rows)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "device", json_object_new_string(prior->name));
    json_object_object_add(o, "measurements", json_object_new_int(ms->n));
    json_object_object_add(o, "given", device_json(prior));
    json_object_object_add(o, "rms_log_error_given", json_object_new_double(rms_log_error(prior, ms)));
    if (fitted) {
        json_object_object_add(o, "fitted", device_json(fitted));
        json_object_object_add(o, "rms_log_error_fitted",
                               json_object_new_double(rms_log_error(fitted, ms)));
    }
    if (layers) {
        json_object_object_add(o, "layer_measurements", json_object_new_int(layers->n));
        /* what --by-layer's fit minimises: steps and layers together */
        json_object_object_add(o, "rms_log_error_steps_and_layers_given",
                               json_object_new_double(rms_log_error2(prior, ms, layers)));
        if (fitted)
            json_object_object_add(o, "rms_log_error_steps_and_layers_fitted",
                                   json_object_new_double(rms_log_error2(fitted, ms, layers)));
        json_object_object_add(o, "rms_log_error_layers_given",
                               json_object_new_double(rms_log_error(prior, layers)));
        if (fitted)
            json_object_object_add(o, "rms_log_error_layers_fitted",
                                   json_object_new_double(rms_log_error(fitted, layers)));
    }
    json_object_object_add(o, "steps", json_object_get(rows));
    lr_outfile out;
    lr_status st = lr_outfile_open(&out, path);
    if (st == LR_OK) {
        fprintf(out.f, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
        st = lr_outfile_commit(&out);
    }
    json_object_put(o);
    return st;
}

int main(int argc, char **argv)
{
    heap_keep_freed(); /* as lrcnn-sim and lrcnn-validate do */
    const char *device = NULL, *out = NULL, *constants = NULL;
    bool no_fit = false, by_layer = false;
    int first = 1;
    for (; first < argc && strncmp(argv[first], "--", 2) == 0; first++) {
        if (strcmp(argv[first], "--no-fit") == 0)
            no_fit = true;
        else if (strcmp(argv[first], "--by-layer") == 0)
            by_layer = true;
        else if (strcmp(argv[first], "--device") == 0 && first + 1 < argc)
            device = argv[++first];
        else if (strcmp(argv[first], "--out") == 0 && first + 1 < argc)
            out = argv[++first];
        else if (strcmp(argv[first], "--constants") == 0 && first + 1 < argc)
            constants = argv[++first];
        else
            break;
    }
    const device_spec *dev = device ? device_find(device) : NULL;
    if (!dev || first >= argc) {
        fprintf(stderr, "usage: time-fit --device NAME [--constants FIT.json] [--no-fit] "
                        "[--by-layer] [--out FILE.json] RUN.json...%s\n",
                device && !dev ? " (unknown device; lrcnn-sim --help lists them)" : "");
        return 2;
    }
    device_spec start = *dev;
    measurements ms = {0}, layers = {0}, *by = by_layer ? &layers : NULL;
    lr_status st = constants ? load_constants(constants, &start) : LR_OK;
    for (int i = first; i < argc && st == LR_OK; i++)
        st = read_run(argv[i], dev, &ms, by);
    if (st == LR_OK && ms.n == 0)
        st = lr_fail(LR_ERR_INPUT, "no measured runs among %d files", argc - first);
    if (st == LR_OK && by && layers.n == 0)
        st = lr_fail(LR_ERR_INPUT, "--by-layer: no timed layers among the runs");
    /* --by-layer fits the steps and their layers together (each step's layers weigh as much as
     * the step): the steps are what a prediction is read as, the layers pin the split */
    device_spec fitted = no_fit || st != LR_OK ? start : fit(&start, &ms, by);
    json_object *rows = json_object_new_array();
    if (st == LR_OK)
        report(stdout, &start, no_fit ? NULL : &fitted, &ms, by, rows);
    if (st == LR_OK && out)
        st = write_json(out, &start, no_fit ? NULL : &fitted, &ms, by, rows);
    json_object_put(rows);
    for (measurements *set = &ms; set; set = set == &ms ? &layers : NULL) {
        for (int i = 0; i < set->n; i++)
            free(set->v[i].k);
        free(set->v);
    }
    if (st != LR_OK) {
        fprintf(stderr, "time-fit: %s\n", lr_last_error());
        return lr_exit_code(st);
    }
    return 0;
}
