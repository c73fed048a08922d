/* summary.c - tables and JSON for lrcnn-sim (see summary.h). */
#include "summary.h"

#include <inttypes.h>
#include <string.h>

const char *summary_bytes(int64_t bytes, char *buf, size_t cap)
{
    double b = (double)bytes;
    if (bytes < 1024)
        snprintf(buf, cap, "%" PRId64 " B", bytes);
    else if (b < 1024.0 * 1024)
        snprintf(buf, cap, "%.1f KiB", b / 1024);
    else if (b < 1024.0 * 1024 * 1024)
        snprintf(buf, cap, "%.1f MiB", b / (1024.0 * 1024));
    else
        snprintf(buf, cap, "%.2f GiB", b / (1024.0 * 1024 * 1024));
    return buf;
}

const char *summary_where(const net_t *net, sched_pass pass, int node, int part, char *buf,
                          size_t cap)
{
    const char *name = node >= 0 && node < net->n_nodes ? net->nodes[node].name : "-";
    if (part >= 0)
        snprintf(buf, cap, "%s %s p%d", sched_pass_name(pass), name, part);
    else
        snprintf(buf, cap, "%s %s", sched_pass_name(pass), name);
    return buf;
}

const char *summary_rows(const net_t *net, const plan_config *cfg, const plan_spec *spec, char *buf,
                         size_t cap)
{
    size_t at = 0;
    buf[0] = '\0';
    bool any = false;
    for (int s = 0; s < spec->n_stages && at + 12 < cap; s++) {
        if (spec->strategy == STRAT_CHECKPOINT)
            break;
        at += (size_t)snprintf(buf + at, cap - at, "%s%d%s", any ? "," : "", spec->parts[s],
                               plan_stage_recomputes(net, cfg, spec, s) ? "r" : "");
        any = true;
    }
    if (!any)
        snprintf(buf, cap, "-");
    return buf;
}

static void shape(char *buf, size_t cap, const net_node *n)
{
    snprintf(buf, cap, "%dx%dx%d", n->c, n->h, n->w);
}

void summary_print_layers(FILE *f, const net_t *net, const plan_config *cfg)
{
    rowdep_info *info = calloc((size_t)net->n_nodes, sizeof *info);
    LR_ASSERT(info != NULL);
    rowdep_analyze(net, info);
    int eb = cost_dtype_bytes(cfg->dtype);
    fprintf(f, "%-24s %-16s %-14s    %-14s %12s %6s %6s %7s %11s\n", "layer", "op", "input", "output",
            "params", "rf", "jump", "overlap", "act");
    for (int i = 1; i < net->n_nodes; i++) {
        const net_node *n = &net->nodes[i];
        char in[40], out[40], act[32], rf[24], jump[24];
        shape(in, sizeof in, &net->nodes[n->inputs[0]]);
        shape(out, sizeof out, n);
        if (info[i].rowwise) {
            snprintf(rf, sizeof rf, "%" PRId64, info[i].rf);
            snprintf(jump, sizeof jump, "%g", info[i].jump);
        } else {
            snprintf(rf, sizeof rf, "all");
            snprintf(jump, sizeof jump, "-");
        }
        fprintf(f, "%-24s %-16s %-14s -> %-14s %12" PRId64 " %6s %6s %7d %11s\n", n->name,
                net_op_name(n->op), in, out, n->params, rf, jump, info[i].overlap,
                summary_bytes(cost_node_bytes(net, i, cfg->batch, eb), act, sizeof act));
    }
    fprintf(f, "%-24s %-16s %-14s    %-14s %12" PRId64 "\n", "total", "", "", "", net->params);
    free(info);
}

static double ratio(int64_t a, int64_t b)
{
    return b > 0 ? (double)a / (double)b : 0.0;
}

/* With a device: the predicted step time and its ratio to column, after the compute column. */
static const char *time_columns(const analysis_t *a, int64_t step_ns, char *buf, size_t cap)
{
    if (!a->cfg.device)
        return "";
    snprintf(buf, cap, " %9.2f %6.2fx", step_ns / 1e6, ratio(step_ns, a->column_ns));
    return buf;
}

/* The compute above column that is neither statistics passes nor the optimizer: recomputed
 * forwards and, for overlapping partitions, halos. */
static int64_t recompute_flops(const analysis_t *a, const plan_cost *c)
{
    return c->flops - a->column_flops - c->bn_pass_flops;
}

void summary_extra_text(const analysis_t *a, const plan_cost *c, char *rec, size_t rec_cap,
                        char *bn, size_t bn_cap)
{
    int64_t r = recompute_flops(a, c);
    if (r > 0)
        snprintf(rec, rec_cap, "+%.2fx", ratio(r, a->column_flops));
    else
        snprintf(rec, rec_cap, "-");
    if (c->bn_passes > 0)
        snprintf(bn, bn_cap, "+%.2fx (%d)", ratio(c->bn_pass_flops, a->column_flops), c->bn_passes);
    else
        snprintf(bn, bn_cap, "-");
}

const char *summary_region(const net_t *net, const plan_choice *ch, char *buf, size_t cap)
{
    const plan_spec *sp = &ch->spec;
    if (sp->n_stages == 0)
        return "-";
    snprintf(buf, cap, "%s%s", net->nodes[sp->cut[sp->n_stages - 1]].name, ch->region_chosen ? "*" : "");
    return buf;
}

void summary_print_header(FILE *f, const analysis_t *a)
{
    fprintf(f, "%-11s %11s %11s %11s %8s %8s%s %9s %-13s %-14s %-16s %s\n", "strategy", "peak",
            "static", "act@peak", "vs col", "compute", a->cfg.device ? "   step ms    time" : "",
            "recompute", "BN passes", "rows", "region", "peak at");
}

void summary_print_row(FILE *f, const analysis_t *a, const char *name, const analysis_entry *e)
{
    char b1[32], b2[32], b3[32], rows[256], where[160], region[160], rec[32], bn[48], tc[48];
    const plan_cost *c = &e->choice.cost;
    int64_t peak = e->modelled.peak_bytes;
    int64_t act = peak - c->static_bytes - c->input_bytes - c->workspace_bytes;
    summary_rows(a->net, &a->cfg, &e->choice.spec, rows, sizeof rows);
    if (e->choice.rows_chosen && strcmp(rows, "-") != 0 && strlen(rows) + 2 < sizeof rows)
        strcat(rows, "*");
    summary_extra_text(a, c, rec, sizeof rec, bn, sizeof bn);
    fprintf(f, "%-11s %11s %11s %11s %7.1f%% %7.2fx%s %9s %-13s %-14s %-16s %s%s\n", name,
            summary_bytes(peak, b1, sizeof b1), summary_bytes(c->static_bytes, b2, sizeof b2),
            summary_bytes(act, b3, sizeof b3), 100.0 * ratio(peak, a->column_peak),
            ratio(c->flops, a->column_flops), time_columns(a, c->step_ns, tc, sizeof tc), rec, bn,
            rows,
            summary_region(a->net, &e->choice, region, sizeof region),
            summary_where(a->net, c->peak_pass, c->peak_node, c->peak_part, where, sizeof where),
            e->approximate ? "  (approximate: stripe BN)" : "");
}

void summary_print_strategies(FILE *f, const analysis_t *a)
{
    summary_print_header(f, a);
    for (int i = 0; i < a->n; i++)
        summary_print_row(f, a, plan_strategy_name(a->e[i].strategy), &a->e[i]);
    if (!a->cfg.offload && !a->cfg.offload_auto)
        return;
    char b1[32], b2[32], set[40] = "";
    if (a->cfg.offload_auto)
        fprintf(f, "\n--offload auto: the set each plan chose (none unless offloading lowers its device "
                   "peak by more than 1%%), host memory at its peak and what one step copies between "
                   "host and device\n");
    else
        fprintf(f, "\n--offload %s: host memory at its peak (%s) and what one step copies between host "
                   "and device\n", plan_offload_name(a->cfg.offload),
                a->cfg.offload == OFFLOAD_INPUT      ? "the input batch"
                : a->cfg.offload == OFFLOAD_BOUNDARY ? "boundary rows kept for backward"
                                                     : "the input batch and boundary rows kept for backward");
    bool timed = false;
    for (int i = 0; i < a->n; i++) {
        const analysis_entry *e = &a->e[i];
        const plan_cost *c = &e->choice.cost;
        const char *name = plan_strategy_name(e->strategy);
        if (a->cfg.offload_auto)
            snprintf(set, sizeof set, "%-14s ", plan_offload_name(plan_offload_of(&a->cfg, &e->choice.spec)));
        if ((c->host_bytes > 0 || c->copy_bytes > 0) && a->cfg.device)
            fprintf(f, "%-11s %shost %11s   copied %11s per step: %.1f ms over the host link (%.1f GB/s) "
                       "beside %.1f ms of kernels", name, set,
                    summary_bytes(c->host_bytes, b1, sizeof b1), summary_bytes(c->copy_bytes, b2, sizeof b2),
                    c->copy_ns / 1e6, a->cfg.device->host_link / 1e9, c->step_ns / 1e6);
        else if (c->host_bytes > 0 || c->copy_bytes > 0)
            fprintf(f, "%-11s %shost %11s   copied %11s per step", name, set,
                    summary_bytes(c->host_bytes, b1, sizeof b1), summary_bytes(c->copy_bytes, b2, sizeof b2));
        else
            fprintf(f, "%-11s %snothing in host memory (%s)", name, set,
                    e->choice.spec.n_stages == 0 ? "no stage: the input stays on the device"
                    : a->cfg.offload_auto        ? "offloading saves 1% or less of its device peak"
                                                 : "no boundary kept for backward");
        if (e->overlapped)
            fprintf(f, ": %.1f ms exposed, step %.1f ms", e->overlap.exposed_ns / 1e6,
                    e->overlap.step_ns / 1e6);
        fputc('\n', f);
        timed = timed || e->overlapped;
    }
    if (timed)
        fprintf(f, "(exposed: what the copies add to the step when they run on a stream of their own, "
                   "each as soon as its source is written and its destination's memory is free, "
                   "beside the kernels; the step starts with both streams idle)\n");
}

/* ------------------------------------------------------------------ JSON */

static json_object *shape_json(const net_node *n)
{
    json_object *a = json_object_new_array();
    json_object_array_add(a, json_object_new_int(n->c));
    json_object_array_add(a, json_object_new_int(n->h));
    json_object_array_add(a, json_object_new_int(n->w));
    return a;
}

static json_object *layers_json(const net_t *net, const plan_config *cfg)
{
    rowdep_info *info = calloc((size_t)net->n_nodes, sizeof *info);
    LR_ASSERT(info != NULL);
    rowdep_analyze(net, info);
    int eb = cost_dtype_bytes(cfg->dtype);
    json_object *arr = json_object_new_array();
    for (int i = 1; i < net->n_nodes; i++) {
        const net_node *n = &net->nodes[i];
        json_object *o = json_object_new_object();
        json_object_object_add(o, "name", json_object_new_string(n->name));
        json_object_object_add(o, "op", json_object_new_string(net_op_name(n->op)));
        json_object *ins = json_object_new_array();
        for (int k = 0; k < n->n_inputs; k++)
            json_object_array_add(ins, json_object_new_string(net->nodes[n->inputs[k]].name));
        json_object_object_add(o, "inputs", ins);
        json_object_object_add(o, "in", shape_json(&net->nodes[n->inputs[0]]));
        json_object_object_add(o, "out", shape_json(n));
        json_object_object_add(o, "params", json_object_new_int64(n->params));
        json_object_object_add(o, "rowwise", json_object_new_boolean(info[i].rowwise));
        json_object_object_add(o, "rf", json_object_new_int64(info[i].rf));
        json_object_object_add(o, "jump", json_object_new_double(info[i].jump));
        json_object_object_add(o, "overlap", json_object_new_int(info[i].overlap));
        json_object_object_add(o, "act_bytes", json_object_new_int64(cost_node_bytes(net, i, cfg->batch, eb)));
        json_object_array_add(arr, o);
    }
    free(info);
    return arr;
}

static json_object *net_json(const net_t *net, const plan_config *cfg)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(net->name));
    json_object_object_add(o, "params", json_object_new_int64(net->params));
    json_object_object_add(o, "input", shape_json(&net->nodes[0]));
    json_object_object_add(o, "layers", layers_json(net, cfg));
    return o;
}

static json_object *config_json(const analysis_t *a, const plan_config *cfg)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "batch", json_object_new_int(cfg->batch));
    json_object_object_add(o, "dtype", json_object_new_string(cost_dtype_name(cfg->dtype)));
    json_object_object_add(o, "optimizer", json_object_new_string(cost_optim_name(cfg->optim)));
    json_object_object_add(o, "bn", json_object_new_string(plan_bn_name(cfg->bn)));
    json_object_object_add(o, "workspace_bytes", json_object_new_int64(cfg->workspace_bytes));
    json_object_object_add(o, "offload", json_object_new_string(plan_offload_config_name(cfg)));
    json_object_object_add(o, "boundaries", json_object_new_string(plan_boundaries_name(cfg)));
    if (a) {
        json_object_object_add(o, "allocator", json_object_new_string(sim_allocator_name(a->allocator)));
        json_object_object_add(o, "column_peak_bytes", json_object_new_int64(a->column_peak));
        json_object_object_add(o, "column_flops", json_object_new_int64(a->column_flops));
        if (cfg->device) {
            json_object_object_add(o, "device", json_object_new_string(cfg->device->name));
            json_object_object_add(o, "column_step_ms", json_object_new_double(a->column_ns / 1e6));
        }
    }
    return o;
}

static json_object *where_json(const net_t *net, sched_pass pass, int node, int part)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "layer", json_object_new_string(node >= 0 ? net->nodes[node].name : ""));
    json_object_object_add(o, "pass", json_object_new_string(sched_pass_name(pass)));
    json_object_object_add(o, "partition", json_object_new_int(part));
    return o;
}

static json_object *stages_json(const net_t *net, const plan_config *cfg, const plan_spec *spec)
{
    json_object *arr = json_object_new_array();
    for (int s = 0; s < spec->n_stages; s++) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "end", json_object_new_string(net->nodes[spec->cut[s]].name));
        json_object_object_add(o, "rows", json_object_new_int(spec->parts[s]));
        json_object_object_add(o, "recompute_boundaries",
                               json_object_new_boolean(plan_stage_recomputes(net, cfg, spec, s)));
        json_object_array_add(arr, o);
    }
    return arr;
}

static json_object *classes_json(const sim_result *r)
{
    json_object *o = json_object_new_object();
    for (int c = 0; c < TC_COUNT; c++)
        json_object_object_add(o, sched_class_name((sched_class)c), json_object_new_int64(r->class_at_peak[c]));
    return o;
}

json_object *summary_strategy_json(const analysis_t *a, const analysis_entry *e)
{
    const plan_cost *c = &e->choice.cost;
    const plan_spec *sp = &e->choice.spec;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(plan_strategy_name(e->strategy)));
    json_object_object_add(o, "peak_bytes", json_object_new_int64(c->peak_bytes));
    json_object_object_add(o, "sim_peak_bytes", json_object_new_int64(e->exact.peak_bytes));
    json_object_object_add(o, "allocator_peak_bytes", json_object_new_int64(e->modelled.peak_bytes));
    json_object_object_add(o, "allocator_reserved_bytes", json_object_new_int64(e->modelled.peak_reserved_bytes));
    json_object_object_add(o, "static_bytes", json_object_new_int64(c->static_bytes));
    json_object_object_add(o, "input_bytes", json_object_new_int64(c->input_bytes));
    json_object_object_add(o, "host_bytes", json_object_new_int64(c->host_bytes));
    json_object_object_add(o, "sim_host_bytes", json_object_new_int64(e->exact.host_peak_bytes));
    json_object_object_add(o, "offload", json_object_new_string(plan_offload_name(plan_offload_of(&a->cfg, sp))));
    json_object_object_add(o, "copy_bytes", json_object_new_int64(c->copy_bytes));
    json_object_object_add(o, "sim_copy_bytes", json_object_new_int64(e->exact.copy_bytes));
    json_object_object_add(o, "activation_bytes_at_peak",
                           json_object_new_int64(c->peak_bytes - c->static_bytes - c->input_bytes - c->workspace_bytes));
    json_object_object_add(o, "peak_ratio", json_object_new_double(ratio(c->peak_bytes, a->column_peak)));
    json_object_object_add(o, "flops", json_object_new_int64(c->flops));
    json_object_object_add(o, "flops_ratio", json_object_new_double(ratio(c->flops, a->column_flops)));
    if (a->cfg.device) {
        json_object_object_add(o, "step_ms", json_object_new_double(c->step_ns / 1e6));
        json_object_object_add(o, "time_ratio", json_object_new_double(ratio(c->step_ns, a->column_ns)));
        json_object_object_add(o, "copy_ms", json_object_new_double(c->copy_ns / 1e6));
    }
    if (e->overlapped) {
        json_object_object_add(o, "copy_exposed_ms", json_object_new_double(e->overlap.exposed_ns / 1e6));
        json_object_object_add(o, "step_overlap_ms", json_object_new_double(e->overlap.step_ns / 1e6));
    }
    json_object_object_add(o, "recompute_flops", json_object_new_int64(recompute_flops(a, c)));
    json_object_object_add(o, "bn_pass_flops", json_object_new_int64(c->bn_pass_flops));
    json_object_object_add(o, "bn_passes", json_object_new_int(c->bn_passes));
    int rows = sp->strategy >= STRAT_ROW && sp->n_stages > 0 ? sp->parts[0] : 1;
    json_object_object_add(o, "rows", json_object_new_int(rows));
    json_object_object_add(o, "rows_chosen", json_object_new_boolean(e->choice.rows_chosen));
    json_object_object_add(o, "stages", stages_json(a->net, &a->cfg, sp));
    json_object_object_add(o, "region", sp->n_stages ? json_object_new_string(a->net->nodes[sp->cut[sp->n_stages - 1]].name) : NULL);
    json_object_object_add(o, "region_chosen", json_object_new_boolean(e->choice.region_chosen));
    json_object_object_add(o, "approximate", json_object_new_boolean(e->approximate));
    json_object_object_add(o, "peak_at", where_json(a->net, c->peak_pass, c->peak_node, c->peak_part));
    json_object_object_add(o, "bytes_by_class_at_peak", classes_json(&e->exact));
    json_object_object_add(o, "steps", json_object_new_int(e->n_steps));
    return o;
}

json_object *summary_json(const net_t *net, const plan_config *cfg, const analysis_t *a)
{
    json_object *root = json_object_new_object();
    json_object_object_add(root, "net", net_json(net, cfg));
    json_object_object_add(root, "config", config_json(a, cfg));
    if (a) {
        json_object *arr = json_object_new_array();
        for (int i = 0; i < a->n; i++)
            json_object_array_add(arr, summary_strategy_json(a, &a->e[i]));
        json_object_object_add(root, "strategies", arr);
    }
    return root;
}

/* ------------------------------------------------------------------ auto */

/* "layer/N" per stage, "r" after N when the stage recomputes its boundaries */
static void plan_stages_text(const net_t *net, const plan_config *cfg, const plan_spec *sp,
                             char *buf, size_t cap)
{
    size_t at = 0;
    buf[0] = '\0';
    for (int k = 0; k < sp->n_stages && at + 80 < cap; k++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%s/%d%s", k ? " " : "",
                               net->nodes[sp->cut[k]].name, sp->parts[k],
                               plan_stage_recomputes(net, cfg, sp, k) ? "r" : "");
    if (sp->n_stages == 0)
        snprintf(buf, cap, "(no stage: everything column-wise)");
}

static void constraint_text(const auto_result *r, char *buf, size_t cap)
{
    char b[32];
    const char *what = r->by_time ? "step time" : "compute";
    if (r->minimise_peak)
        snprintf(buf, cap, "lowest peak with %s <= %.2fx column", what, r->max_overhead);
    else if (r->max_overhead > 0)
        snprintf(buf, cap, "least %s with peak <= %s and %s <= %.2fx column", what,
                 summary_bytes(r->budget_bytes, b, sizeof b), what, r->max_overhead);
    else
        snprintf(buf, cap, "least %s with peak <= %s", what, summary_bytes(r->budget_bytes, b, sizeof b));
}

static void print_candidate(FILE *f, const analysis_t *a, const auto_result *r,
                            const auto_candidate *c)
{
    char b[32], stages[2048];
    plan_config cfg = a->cfg;
    cfg.bn = c->bn;
    plan_stages_text(a->net, &cfg, &c->spec, stages, sizeof stages);
    bool over_budget = r->budget_bytes > 0 && c->cost.peak_bytes > r->budget_bytes;
    double measure = r->by_time ? c->time_ratio : c->flops_ratio;
    /* a plan that misses the request but not the budget missed the cap (its ratio can round
     * to the cap itself) */
    bool over_cap = r->max_overhead > 0 && (measure > r->max_overhead || (!c->fits && !over_budget));
    char tr[24] = "";
    if (r->column_ns > 0)
        snprintf(tr, sizeof tr, " %6.2fx", c->time_ratio);
    fprintf(f, "    %-10s %-6s %11s %7.2fx%s  %s%s%s%s%s\n", auto_kind_name(&c->spec), plan_bn_name(c->bn),
            summary_bytes(c->cost.peak_bytes, b, sizeof b), c->flops_ratio, tr, stages,
            c->fits ? "" : "  (over the ", over_budget ? "budget" : "",
            over_budget && over_cap ? " and the " : "", c->fits ? "" : over_cap ? "compute cap)" : ")");
}

void summary_print_auto(FILE *f, const analysis_t *a, const analysis_entry *e, const auto_result *r)
{
    char b1[32], b2[32], b3[32], why[160], stages[2048];
    constraint_text(r, why, sizeof why);
    fprintf(f, "\nauto (%s):\n", why);
    summary_print_row(f, a, "auto", e);
    plan_config cfg = a->cfg;
    cfg.bn = r->best.bn;
    plan_stages_text(a->net, &cfg, &e->choice.spec, stages, sizeof stages);
    char set[48] = ""; /* under --offload, the set the plan runs */
    if (a->cfg.offload || a->cfg.offload_auto)
        snprintf(set, sizeof set, ", offload %s", plan_offload_name(plan_offload_of(&a->cfg, &e->choice.spec)));
    fprintf(f, "  plan: %s, bn %s%s, %d stage%s (last layer/rows): %s\n", auto_kind_name(&e->choice.spec),
            plan_bn_name(r->best.bn), set, e->choice.spec.n_stages,
            e->choice.spec.n_stages == 1 ? "" : "s", stages);
    if (!r->best.fits && r->budget_bytes > 0)
        fprintf(f, "  does not fit: the lowest peak%s is %s, %s over the budget of %s\n",
                r->max_overhead > 0 ? " within the compute cap" : "",
                summary_bytes(r->best.cost.peak_bytes, b1, sizeof b1), summary_bytes(r->over_bytes, b2, sizeof b2),
                summary_bytes(r->budget_bytes, b3, sizeof b3));
    if (r->n_alt > 0)
        fprintf(f, "  runners-up, best first (kind, bn, peak, compute,%s last layer/rows per stage):\n",
                r->column_ns > 0 ? " time," : "");
    for (int k = 0; k < r->n_alt; k++)
        print_candidate(f, a, r, &r->alt[k]);
}

static json_object *plan_json(const net_t *net, const plan_config *base, const auto_candidate *c)
{
    plan_config cfg = *base;
    cfg.bn = c->bn;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "kind", json_object_new_string(auto_kind_name(&c->spec)));
    json_object_object_add(o, "bn", json_object_new_string(plan_bn_name(c->bn)));
    json_object_object_add(o, "offload", json_object_new_string(plan_offload_name(plan_offload_of(base, &c->spec))));
    json_object_object_add(o, "stages", stages_json(net, &cfg, &c->spec));
    return o;
}

json_object *summary_auto_json(const analysis_t *a, const analysis_entry *e, const auto_result *r)
{
    json_object *o = summary_strategy_json(a, e);
    json_object_object_add(o, "name", json_object_new_string("auto"));
    json_object_object_add(o, "plan", plan_json(a->net, &a->cfg, &r->best));
    json_object_object_add(o, "fits", json_object_new_boolean(r->best.fits));
    json_object_object_add(o, "objective", json_object_new_string(r->minimise_peak ? "peak" : r->by_time ? "time" : "compute"));
    json_object_object_add(o, "overhead_by", json_object_new_string(r->by_time ? "time" : "flops"));
    json_object_object_add(o, "max_overhead", r->max_overhead > 0 ? json_object_new_double(r->max_overhead) : NULL);
    json_object_object_add(o, "budget_bytes", r->budget_bytes > 0 ? json_object_new_int64(r->budget_bytes) : NULL);
    json_object_object_add(o, "over_bytes", json_object_new_int64(r->over_bytes));
    json_object *alts = json_object_new_array();
    for (int k = 0; k < r->n_alt; k++) {
        json_object *x = json_object_new_object();
        json_object_object_add(x, "plan", plan_json(a->net, &a->cfg, &r->alt[k]));
        json_object_object_add(x, "peak_bytes", json_object_new_int64(r->alt[k].cost.peak_bytes));
        json_object_object_add(x, "flops_ratio", json_object_new_double(r->alt[k].flops_ratio));
        if (r->column_ns > 0)
            json_object_object_add(x, "time_ratio", json_object_new_double(r->alt[k].time_ratio));
        json_object_object_add(x, "fits", json_object_new_boolean(r->alt[k].fits));
        json_object_array_add(alts, x);
    }
    json_object_object_add(o, "alternatives", alts);
    return o;
}

/* ------------------------------------------------------------------ --fit */

void summary_print_fit(FILE *f, const device_spec *gpu, int64_t device_bytes, int64_t reserve_bytes,
                       const summary_fit_row *rows, int n)
{
    char b1[32], b2[32], b3[32], size[64];
    fprintf(f, "\nfit: %s%s%s%s - reserve %s = %s for the training step\n", gpu ? gpu->name : "",
            gpu ? " (" : "", gpu ? gpu->label : summary_bytes(device_bytes, b1, sizeof b1), gpu ? ")" : "",
            summary_bytes(reserve_bytes, b2, sizeof b2), summary_bytes(device_bytes - reserve_bytes, b3, sizeof b3));
    bool host = false, sets = false;
    for (int k = 0; k < n; k++) {
        host |= rows[k].r.host_bytes_at_max_batch > 0 || rows[k].r.host_bytes_at_max_input > 0;
        sets |= rows[k].offload_chosen;
    }
    host |= sets;
    if (host)
        fprintf(f, "%-11s %12s  %-26s %14s %14s%s\n", "strategy", "max batch", "max input at batch 1",
                "host at batch", "host at input", sets ? "  offload at batch / input" : "");
    else
        fprintf(f, "%-11s %12s   %s\n", "strategy", "max batch", "max input at batch 1");
    for (int k = 0; k < n; k++) {
        const fit_result *r = &rows[k].r;
        if (r->max_square_input > 0)
            snprintf(size, sizeof size, "%dx%d%s", r->max_square_input, r->max_square_input,
                     r->input_at_limit ? " (the planner's limit)" : "");
        else
            snprintf(size, sizeof size, "none (not even %dx%d)", r->min_square_input, r->min_square_input);
        if (host)
            fprintf(f, "%-11s %12d%s %-26s %14s %14s%s%s%s%s\n", rows[k].strategy, r->max_batch,
                    r->batch_at_limit ? "+" : " ", size,
                    summary_bytes(r->host_bytes_at_max_batch, b1, sizeof b1),
                    summary_bytes(r->host_bytes_at_max_input, b2, sizeof b2), sets ? "  " : "",
                    sets ? plan_offload_name(r->offload_at_max_batch) : "", sets ? " / " : "",
                    sets ? plan_offload_name(r->offload_at_max_input) : "");
        else
            fprintf(f, "%-11s %12d%s  %s\n", rows[k].strategy, r->max_batch, r->batch_at_limit ? "+" : " ", size);
    }
    if (host)
        fprintf(f, "(host: what the plan chosen there keeps in host memory under --offload)\n");
    fprintf(f, "(largest batch at the network's input and largest square input at batch 1 whose\n"
               " closed-form peak fits, with the plan each strategy chooses there; + = the planner's limit)\n");
}

json_object *summary_fit_json(const summary_fit_row *rows, int n)
{
    json_object *arr = json_object_new_array();
    for (int k = 0; k < n; k++) {
        const fit_result *r = &rows[k].r;
        json_object *o = json_object_new_object();
        json_object_object_add(o, "strategy", json_object_new_string(rows[k].strategy));
        json_object_object_add(o, "max_batch", json_object_new_int(r->max_batch));
        json_object_object_add(o, "max_square_input", json_object_new_int(r->max_square_input));
        json_object_object_add(o, "budget_bytes", json_object_new_int64(r->budget_bytes));
        json_object_object_add(o, "batch_at_limit", json_object_new_boolean(r->batch_at_limit));
        json_object_object_add(o, "input_at_limit", json_object_new_boolean(r->input_at_limit));
        json_object_object_add(o, "min_square_input", json_object_new_int(r->min_square_input));
        json_object_object_add(o, "input_step", json_object_new_int(r->input_step));
        json_object_object_add(o, "host_bytes_at_max_batch", json_object_new_int64(r->host_bytes_at_max_batch));
        json_object_object_add(o, "host_bytes_at_max_input", json_object_new_int64(r->host_bytes_at_max_input));
        json_object_object_add(o, "offload_at_max_batch", json_object_new_string(plan_offload_name(r->offload_at_max_batch)));
        json_object_object_add(o, "offload_at_max_input", json_object_new_string(plan_offload_name(r->offload_at_max_input)));
        json_object_array_add(arr, o);
    }
    return arr;
}

json_object *summary_fit_device_json(const device_spec *gpu, int64_t device_bytes, int64_t reserve_bytes)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "gpu", gpu ? json_object_new_string(gpu->name) : NULL);
    json_object_object_add(o, "device_bytes", json_object_new_int64(device_bytes));
    json_object_object_add(o, "reserve_bytes", json_object_new_int64(reserve_bytes));
    json_object_object_add(o, "budget_bytes", json_object_new_int64(device_bytes - reserve_bytes));
    return o;
}
