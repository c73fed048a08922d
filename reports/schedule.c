/* schedule.c - the schedule as versioned JSON (see schedule.h and docs/schedule-format.md).
 *
 * The header (network, configuration, plan, prediction, names) is built with json-c; tensors,
 * steps and runs, which reach millions of rows for exact BatchNorm in deep stages, are streamed
 * one row per line from the field tables below. Every field of sched_tensor, sched_step and
 * sched_run is in those tables: a field added to sched.h goes into its table (and the schema
 * document) in the same change.
 *
 * Deliberately not here: anything an executor could derive (row windows, shapes of stripes):
 * the file holds what the planner decided, and the schema says how to read it.
 */
#include "schedule.h"

#include <inttypes.h>
#include <stddef.h>
#include <string.h>

#include <json-c/json.h>

#include "outfile.h"

/* ------------------------------------------------------------------ field tables */

typedef enum {
    F_I32,
    F_I64,
    F_U16,
    F_BOOL,
    F_CLASS, /* uint8_t sched_class, written by name */
    F_KIND,  /* uint8_t sched_kind */
    F_TIER,  /* uint8_t sched_tier */
    F_OP,    /* uint8_t sched_op */
    F_PASS,  /* uint8_t sched_pass */
    F_INPUTS /* int32_t[n_in] of a sched_run */
} field_type;

typedef struct {
    const char *name;
    size_t offset;
    field_type type;
} field;

#define FIELD(T, member, name, type) {name, offsetof(T, member), type}

static const field tensor_fields[] = {
    FIELD(sched_tensor, node, "node", F_I32),     FIELD(sched_tensor, part, "part", F_I32),
    FIELD(sched_tensor, row_lo, "row_lo", F_I32), FIELD(sched_tensor, row_hi, "row_hi", F_I32),
    FIELD(sched_tensor, cls, "class", F_CLASS),   FIELD(sched_tensor, kind, "kind", F_KIND),
    FIELD(sched_tensor, tier, "tier", F_TIER),    FIELD(sched_tensor, bytes, "bytes", F_I64),
};

static const field step_fields[] = {
    FIELD(sched_step, op, "op", F_OP),
    FIELD(sched_step, pass, "pass", F_PASS),
    FIELD(sched_step, flags, "flags", F_U16),
    FIELD(sched_step, accumulate, "accumulate", F_BOOL),
    FIELD(sched_step, node, "node", F_I32),
    FIELD(sched_step, part, "part", F_I32),
    FIELD(sched_step, stage, "stage", F_I32),
    FIELD(sched_step, row_lo, "row_lo", F_I32),
    FIELD(sched_step, row_hi, "row_hi", F_I32),
    FIELD(sched_step, t, "t", F_I32),
    FIELD(sched_step, src, "src", F_I32),
    FIELD(sched_step, run, "run", F_I32),
    FIELD(sched_step, flops, "flops", F_I64),
};

static const field run_fields[] = {
    FIELD(sched_run, in, "in", F_INPUTS),
    FIELD(sched_run, din, "din", F_INPUTS),
    FIELD(sched_run, out, "out", F_I32),
    FIELD(sched_run, dout, "dout", F_I32),
    FIELD(sched_run, param, "param", F_I32),
    FIELD(sched_run, param_grad, "param_grad", F_I32),
    FIELD(sched_run, opt_state, "opt_state", F_I32),
    FIELD(sched_run, running, "running", F_I32),
    FIELD(sched_run, aux, "aux", F_I32),
    FIELD(sched_run, gred, "gred", F_I32),
    FIELD(sched_run, own_lo, "own_lo", F_I32),
    FIELD(sched_run, own_hi, "own_hi", F_I32),
    FIELD(sched_run, labels, "labels", F_I32),
    FIELD(sched_run, loss, "loss", F_I32),
    FIELD(sched_run, workspace, "workspace", F_I32),
};

#define COUNT(a) ((int)(sizeof a / sizeof a[0]))

/* RUN flag bits by name; a step with a bit not listed here cannot be written. */
static const struct {
    const char *name;
    unsigned bit;
} flag_names[] = {
    {"NO_WGRAD", RUN_NO_WGRAD},   {"BN_STRIPE", RUN_BN_STRIPE}, {"BN_GLOBAL", RUN_BN_GLOBAL},
    {"BN_PARTIAL", RUN_BN_PARTIAL}, {"FINALIZE", RUN_FINALIZE}, {"STATS_ACC", RUN_STATS_ACC},
    {"GSTATS_ACC", RUN_GSTATS_ACC}, {"BN_FROZEN", RUN_BN_FROZEN}, {"ROW_SUM", RUN_ROW_SUM},
};

static const char *const partitioning_names[] = {"tile_out", "tile_in", "overlap"};

/* ------------------------------------------------------------------ rows */

/* The enum name of a field, NULL when it has none. */
static const char *enum_name(field_type type, unsigned v)
{
    const char *s = "?";
    switch (type) {
    case F_CLASS: s = sched_class_name((sched_class)v); break;
    case F_KIND: s = sched_kind_name((sched_kind)v); break;
    case F_TIER: s = sched_tier_name((sched_tier)v); break;
    case F_OP: s = sched_op_name((sched_op)v); break;
    case F_PASS: s = sched_pass_name((sched_pass)v); break;
    default: break;
    }
    return strcmp(s, "?") ? s : NULL;
}

/* One row: the fields of the struct at `p` as a JSON array. `n_in` bounds F_INPUTS lists. */
static lr_status write_row(FILE *f, const field *fields, int n_fields, const void *p, int n_in,
                           const char *what, int index)
{
    const char *base = p;
    fputc('[', f);
    for (int i = 0; i < n_fields; i++) {
        const char *at = base + fields[i].offset;
        if (i)
            fputc(',', f);
        switch (fields[i].type) {
        case F_I32: fprintf(f, "%" PRId32, *(const int32_t *)at); break;
        case F_I64: fprintf(f, "%" PRId64, *(const int64_t *)at); break;
        case F_U16: fprintf(f, "%u", *(const uint16_t *)at); break;
        case F_BOOL: fputs(*(const uint8_t *)at ? "true" : "false", f); break;
        case F_INPUTS:
            fputc('[', f);
            for (int k = 0; k < n_in; k++)
                fprintf(f, "%s%" PRId32, k ? "," : "", ((const int32_t *)at)[k]);
            fputc(']', f);
            break;
        default: {
            const char *name = enum_name(fields[i].type, *(const uint8_t *)at);
            if (!name)
                return lr_fail(LR_ERR_RUNTIME, "--emit-schedule: %s %d: %s value %u has no name in the schedule format",
                               what, index, fields[i].name, *(const uint8_t *)at);
            fprintf(f, "\"%s\"", name);
        }
        }
    }
    fputc(']', f);
    return LR_OK;
}

static void field_list(FILE *f, const char *key, const field *fields, int n)
{
    fprintf(f, "\"%s\": [", key);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s\"%s\"", i ? ", " : "", fields[i].name);
    fputs("],\n", f);
}

static unsigned known_flags(void)
{
    unsigned m = 0;
    for (int i = 0; i < COUNT(flag_names); i++)
        m |= flag_names[i].bit;
    return m;
}

static lr_status write_tables(FILE *f, const sched_t *s)
{
    field_list(f, "tensor_fields", tensor_fields, COUNT(tensor_fields));
    fputs("\"tensors\": [", f);
    for (int i = 0; i < s->n_tensors; i++) {
        fputs(i ? ",\n" : "\n", f);
        LR_TRY(write_row(f, tensor_fields, COUNT(tensor_fields), &s->tensors[i], 0, "tensor", i));
    }
    fputs("],\n", f);
    field_list(f, "step_fields", step_fields, COUNT(step_fields));
    fputs("\"steps\": [", f);
    unsigned known = known_flags();
    for (int i = 0; i < s->n_steps; i++) {
        if (s->steps[i].flags & ~known)
            return lr_fail(LR_ERR_RUNTIME, "--emit-schedule: step %d: RUN flag bits 0x%x have no name in the schedule format",
                           i, s->steps[i].flags & ~known);
        fputs(i ? ",\n" : "\n", f);
        LR_TRY(write_row(f, step_fields, COUNT(step_fields), &s->steps[i], 0, "step", i));
    }
    fputs("],\n", f);
    field_list(f, "run_fields", run_fields, COUNT(run_fields));
    fputs("\"runs\": [", f);
    for (int i = 0; i < s->n_runs; i++) {
        const sched_run *r = &s->runs[i];
        if (r->n_in < 0 || r->n_in > (int)(sizeof r->in / sizeof r->in[0]))
            return lr_fail(LR_ERR_RUNTIME, "--emit-schedule: run %d: %d inputs", i, r->n_in);
        fputs(i ? ",\n" : "\n", f);
        LR_TRY(write_row(f, run_fields, COUNT(run_fields), r, r->n_in, "run", i));
    }
    fputs("]\n", f);
    return LR_OK;
}

/* ------------------------------------------------------------------ header */

static json_object *ints_json(int n, const int *v)
{
    json_object *a = json_object_new_array();
    for (int i = 0; i < n; i++)
        json_object_array_add(a, json_object_new_int(v[i]));
    return a;
}

static json_object *pair_json(int a, int b)
{
    int v[2] = {a, b};
    return ints_json(2, v);
}

/* The op parameters an executor needs, by op (the keys of networks/FORMAT.md, both axes). */
static void node_attrs(json_object *o, const net_node *n)
{
    const net_params *p = &n->prm;
    bool window = n->op == OP_CONV || n->op == OP_MAXPOOL || n->op == OP_AVGPOOL;
    if (window) {
        json_object_object_add(o, "kernel", pair_json(p->kh, p->kw));
        json_object_object_add(o, "stride", pair_json(p->sh, p->sw));
        json_object_object_add(o, "pad", pair_json(p->ph, p->pw));
    }
    if (n->op == OP_CONV) {
        json_object_object_add(o, "dilation", pair_json(p->dh, p->dw));
        json_object_object_add(o, "groups", json_object_new_int(p->groups));
    }
    if (n->op == OP_CONV || n->op == OP_FC)
        json_object_object_add(o, "bias", json_object_new_boolean(p->bias));
    if (n->op == OP_ADAPTIVE_AVGPOOL)
        json_object_object_add(o, "output", pair_json(p->out_h, p->out_w));
    if (n->op == OP_UPSAMPLE)
        json_object_object_add(o, "scale", json_object_new_int(p->scale));
    if (n->op == OP_DROPOUT)
        json_object_object_add(o, "p", json_object_new_double(p->p));
    if (n->op == OP_BATCHNORM) {
        json_object_object_add(o, "eps", json_object_new_double(p->eps));
        json_object_object_add(o, "momentum", json_object_new_double(p->momentum));
    }
}

static json_object *net_json(const net_t *net)
{
    json_object *nodes = json_object_new_array();
    for (int i = 0; i < net->n_nodes; i++) {
        const net_node *n = &net->nodes[i];
        json_object *o = json_object_new_object();
        json_object_object_add(o, "name", json_object_new_string(n->name));
        json_object_object_add(o, "op", json_object_new_string(net_op_name(n->op)));
        json_object_object_add(o, "inputs", ints_json(n->n_inputs, n->inputs));
        int shape[3] = {n->c, n->h, n->w};
        json_object_object_add(o, "out", ints_json(3, shape));
        json_object_object_add(o, "params", json_object_new_int64(n->params));
        node_attrs(o, n);
        json_object_array_add(nodes, o);
    }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(net->name));
    json_object_object_add(o, "params", json_object_new_int64(net->params));
    json_object_object_add(o, "nodes", nodes);
    return o;
}

static json_object *config_json(const plan_config *cfg)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "batch", json_object_new_int(cfg->batch));
    json_object_object_add(o, "dtype", json_object_new_string(cost_dtype_name(cfg->dtype)));
    json_object_object_add(o, "elem_bytes", json_object_new_int(cost_dtype_bytes(cfg->dtype)));
    json_object_object_add(o, "optimizer", json_object_new_string(cost_optim_name(cfg->optim)));
    json_object_object_add(o, "bn", json_object_new_string(plan_bn_name(cfg->bn)));
    json_object_object_add(o, "workspace_bytes", json_object_new_int64(cfg->workspace_bytes));
    return o;
}

static json_object *plan_json(const plan_t *plan, const analysis_entry *e)
{
    const net_t *net = plan->net;
    json_object *stages = json_object_new_array();
    for (int i = 0; i < plan->n_stages; i++) {
        const plan_stage *st = &plan->stages[i];
        json_object *o = json_object_new_object();
        json_object_object_add(o, "in", json_object_new_int(st->in_node));
        json_object_object_add(o, "out", json_object_new_int(st->out_node));
        json_object_object_add(o, "end", json_object_new_string(net->nodes[st->out_node].name));
        json_object_object_add(o, "parts", json_object_new_int(st->parts));
        json_object_object_add(o, "partitioning", json_object_new_string(partitioning_names[st->kind]));
        json_object_object_add(o, "store_last", json_object_new_boolean(st->store_last));
        json_object_object_add(o, "bn_passes", json_object_new_boolean(st->bn_passes));
        json_object_object_add(o, "bn_frozen", json_object_new_boolean(st->bn_frozen));
        json_object_array_add(stages, o);
    }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "strategy", json_object_new_string(plan_strategy_name(plan->spec.strategy)));
    json_object_object_add(o, "approximate", json_object_new_boolean(e->approximate));
    json_object_object_add(o, "stages", stages);
    json_object_object_add(o, "tail_first", json_object_new_int(plan->tail_first));
    return o;
}

static json_object *prediction_json(const net_t *net, const analysis_entry *e)
{
    const plan_cost *c = &e->choice.cost;
    json_object *at = json_object_new_object();
    json_object_object_add(at, "layer", json_object_new_string(c->peak_node >= 0 ? net->nodes[c->peak_node].name : ""));
    json_object_object_add(at, "pass", json_object_new_string(sched_pass_name(c->peak_pass)));
    json_object_object_add(at, "partition", json_object_new_int(c->peak_part));
    json_object *o = json_object_new_object();
    json_object_object_add(o, "peak_bytes", json_object_new_int64(c->peak_bytes));
    json_object_object_add(o, "replay_peak_bytes", json_object_new_int64(e->exact.peak_bytes));
    json_object_object_add(o, "peak_step", json_object_new_int(e->exact.peak_step));
    json_object_object_add(o, "peak_at", at);
    json_object_object_add(o, "static_bytes", json_object_new_int64(c->static_bytes));
    json_object_object_add(o, "input_bytes", json_object_new_int64(c->input_bytes));
    json_object_object_add(o, "workspace_bytes", json_object_new_int64(c->workspace_bytes));
    json_object_object_add(o, "host_bytes", json_object_new_int64(c->host_bytes));
    json_object_object_add(o, "copy_bytes", json_object_new_int64(c->copy_bytes));
    json_object_object_add(o, "flops", json_object_new_int64(c->flops));
    return o;
}

static json_object *names_json(const char *(*name)(int), int n)
{
    json_object *a = json_object_new_array();
    for (int i = 0; i < n; i++)
        json_object_array_add(a, json_object_new_string(name(i)));
    return a;
}

static const char *class_name(int i) { return sched_class_name((sched_class)i); }
static const char *kind_name(int i) { return sched_kind_name((sched_kind)i); }
static const char *tier_name(int i) { return sched_tier_name((sched_tier)i); }
static const char *pass_name(int i) { return sched_pass_name((sched_pass)i); }
static const char *op_name(int i) { return sched_op_name((sched_op)i); }

static json_object *enums_json(void)
{
    json_object *flags = json_object_new_object();
    for (int i = 0; i < COUNT(flag_names); i++)
        json_object_object_add(flags, flag_names[i].name, json_object_new_int((int)flag_names[i].bit));
    json_object *o = json_object_new_object();
    json_object_object_add(o, "class", names_json(class_name, TC_COUNT));
    json_object_object_add(o, "kind", names_json(kind_name, TK_COUNT));
    json_object_object_add(o, "tier", names_json(tier_name, TIER_COUNT));
    json_object_object_add(o, "op", names_json(op_name, STEP_COPY + 1));
    json_object_object_add(o, "pass", names_json(pass_name, PASS_COUNT));
    json_object_object_add(o, "flags", flags);
    return o;
}

static void header_key(FILE *f, const char *key, json_object *v)
{
    fprintf(f, "\"%s\": %s,\n", key,
            json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(v);
}

/* ------------------------------------------------------------------ entry points */

lr_status schedule_print_json(FILE *f, const plan_t *plan, const sched_t *s,
                              const analysis_entry *e)
{
    fprintf(f, "{\"format\": \"lrcnn-schedule\",\n\"version\": %d,\n", SCHEDULE_FORMAT_VERSION);
    fprintf(f, "\"generator\": \"lrcnn-sim %s\",\n", LRCNN_VERSION);
    header_key(f, "net", net_json(plan->net));
    header_key(f, "config", config_json(&plan->cfg));
    header_key(f, "plan", plan_json(plan, e));
    header_key(f, "prediction", prediction_json(plan->net, e));
    header_key(f, "enums", enums_json());
    fprintf(f, "\"step_begin\": %d,\n\"step_end\": %d,\n", s->step_begin, s->step_end);
    LR_TRY(write_tables(f, s));
    fputs("}\n", f);
    return LR_OK;
}

lr_status schedule_write_json(const plan_t *plan, const sched_t *s, const analysis_entry *e,
                              const char *path)
{
    lr_outfile o;
    LR_TRY(lr_outfile_open(&o, path));
    lr_status st = schedule_print_json(o.f, plan, s, e);
    if (st == LR_OK)
        return lr_outfile_commit(&o);
    lr_outfile_abort(&o);
    return st;
}
