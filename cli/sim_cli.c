/* sim_cli.c - lrcnn-sim's flags and driver (see sim_cli.h). */
#include "sim_cli.h"

#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "graph.h"
#include "outfile.h"
#include "report.h"
#include "schedule.h"
#include "summary.h"

/* ------------------------------------------------------------------ flag handlers */

static lr_status on_help(void *ctx, const char *flag, const char *v)
{
    ((sim_options *)ctx)->help = true;
    return LR_OK;
}

static lr_status on_version(void *ctx, const char *flag, const char *v)
{
    ((sim_options *)ctx)->version = true;
    return LR_OK;
}

static lr_status on_net(void *ctx, const char *flag, const char *v)
{
    ((sim_options *)ctx)->net = v;
    return LR_OK;
}

static lr_status on_batch(void *ctx, const char *flag, const char *v)
{
    int64_t b;
    LR_TRY(args_int(flag, v, 1, 1 << 30, &b));
    ((sim_options *)ctx)->cfg.batch = (int)b;
    return LR_OK;
}

static lr_status on_input(void *ctx, const char *flag, const char *v)
{
    sim_options *o = ctx;
    return args_hw(flag, v, 1 << 24, &o->in_h, &o->in_w);
}

static lr_status on_dtype(void *ctx, const char *flag, const char *v)
{
    for (int d = 0; d < DT_COUNT; d++)
        if (strcmp(v, cost_dtype_name((plan_dtype)d)) == 0) {
            ((sim_options *)ctx)->cfg.dtype = (plan_dtype)d;
            return LR_OK;
        }
    return lr_fail(LR_ERR_USAGE, "%s: expected fp32, fp16 or bf16, got '%s'", flag, v);
}

static lr_status on_optimizer(void *ctx, const char *flag, const char *v)
{
    for (int k = 0; k < OPTIM_COUNT; k++)
        if (strcmp(v, cost_optim_name((plan_optim)k)) == 0) {
            ((sim_options *)ctx)->cfg.optim = (plan_optim)k;
            return LR_OK;
        }
    return lr_fail(LR_ERR_USAGE, "%s: expected sgd, momentum or adam, got '%s'", flag, v);
}

static lr_status on_bn(void *ctx, const char *flag, const char *v)
{
    for (int k = 0; k < BN_COUNT; k++)
        if (strcmp(v, plan_bn_name((plan_bn)k)) == 0) {
            ((sim_options *)ctx)->cfg.bn = (plan_bn)k;
            return LR_OK;
        }
    return lr_fail(LR_ERR_USAGE, "%s: expected exact, stripe or frozen, got '%s'", flag, v);
}

static lr_status on_boundaries(void *ctx, const char *flag, const char *v)
{
    return plan_boundaries_parse(flag, v, &((sim_options *)ctx)->cfg);
}

static lr_status on_offload(void *ctx, const char *flag, const char *v)
{
    return plan_offload_config(flag, v, &((sim_options *)ctx)->cfg);
}

/* "all" is every fixed strategy; auto is asked for by name only (it searches, they do not). */
static lr_status on_strategy(void *ctx, const char *flag, const char *v)
{
    sim_options *o = ctx;
    char buf[256];
    if (strlen(v) >= sizeof buf)
        return lr_fail(LR_ERR_USAGE, "%s: value too long", flag);
    strcpy(buf, v);
    for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        plan_strategy st = plan_strategy_from_name(tok);
        if (strcmp(tok, "all") == 0)
            o->strategies = (1u << STRAT_COUNT) - 1;
        else if (strcmp(tok, "auto") == 0)
            o->auto_plan = true;
        else if (st == STRAT_COUNT)
            return lr_fail(LR_ERR_USAGE,
                           "%s: unknown strategy '%s' (column, checkpoint, row, 2ps, overl, 2ps-h, overl-h, all, auto)",
                           flag, tok);
        else
            o->strategies |= 1u << st;
    }
    if (!o->strategies && !o->auto_plan)
        return lr_fail(LR_ERR_USAGE, "%s: no strategy given", flag);
    return LR_OK;
}

static lr_status on_rows(void *ctx, const char *flag, const char *v)
{
    int64_t n;
    LR_TRY(args_int(flag, v, 1, 4096, &n));
    ((sim_options *)ctx)->req.rows = (int)n;
    return LR_OK;
}

static lr_status on_segments(void *ctx, const char *flag, const char *v)
{
    int64_t n;
    LR_TRY(args_int(flag, v, 1, PLAN_MAX_STAGES, &n));
    ((sim_options *)ctx)->req.segments = (int)n;
    return LR_OK;
}

static lr_status on_region(void *ctx, const char *flag, const char *v)
{
    ((sim_options *)ctx)->region_name = v;
    return LR_OK;
}

static lr_status on_allocator(void *ctx, const char *flag, const char *v)
{
    sim_allocator a = sim_allocator_from_name(v);
    if (a == ALLOC_COUNT)
        return lr_fail(LR_ERR_USAGE, "%s: expected exact, cuda or caching, got '%s'", flag, v);
    ((sim_options *)ctx)->allocator = a;
    ((sim_options *)ctx)->allocator_given = true;
    return LR_OK;
}

static lr_status on_framework(void *ctx, const char *flag, const char *v)
{
    if (strcmp(v, "lrcnn") && strcmp(v, "pytorch"))
        return lr_fail(LR_ERR_USAGE, "%s: expected lrcnn or pytorch, got '%s'", flag, v);
    ((sim_options *)ctx)->pytorch = strcmp(v, "pytorch") == 0;
    return LR_OK;
}

static lr_status on_checkpoint_units(void *ctx, const char *flag, const char *v)
{
    sim_options *o = ctx;
    o->pt_units = pytorch_units_from_name(v);
    if (o->pt_units == PT_UNITS_COUNT)
        return lr_fail(LR_ERR_USAGE, "%s: expected top or blocks, got '%s'", flag, v);
    o->pt_units_given = true;
    return LR_OK;
}

static lr_status on_alloc_conf(void *ctx, const char *flag, const char *v)
{
    sim_options *o = ctx;
    o->alloc_conf_given = true;
    return sim_caching_parse(v, flag, &o->alloc_conf);
}

static lr_status on_workspace(void *ctx, const char *flag, const char *v)
{
    return args_size(flag, v, &((sim_options *)ctx)->cfg.workspace_bytes);
}

static lr_status on_layers(void *ctx, const char *flag, const char *v)
{
    ((sim_options *)ctx)->layers = true;
    return LR_OK;
}

static lr_status on_json(void *ctx, const char *flag, const char *v)
{
    ((sim_options *)ctx)->json = true;
    return LR_OK;
}

static lr_status on_output(void *ctx, const char *flag, const char *v)
{
    ((sim_options *)ctx)->output = v;
    return LR_OK;
}

static lr_status on_timeline(void *ctx, const char *flag, const char *v)
{
    ((sim_options *)ctx)->timeline = v;
    return LR_OK;
}

static lr_status on_trace(void *ctx, const char *flag, const char *v)
{
    ((sim_options *)ctx)->trace = v;
    return LR_OK;
}

static lr_status on_emit_schedule(void *ctx, const char *flag, const char *v)
{
    ((sim_options *)ctx)->emit_schedule = v;
    return LR_OK;
}

static lr_status on_format(void *ctx, const char *flag, const char *v)
{
    if (strcmp(v, "table") && strcmp(v, "csv") && strcmp(v, "json"))
        return lr_fail(LR_ERR_USAGE, "%s: expected table, csv or json, got '%s'", flag, v);
    ((sim_options *)ctx)->format = v;
    return LR_OK;
}

/* "A..B" (every integer) or "A,B,C". */
static lr_status parse_list(const char *flag, const char *v, int lo, int hi, int *out, int *n)
{
    const char *dots = strstr(v, "..");
    char a[32], b[32];
    int64_t x, y;
    if (dots) {
        size_t la = (size_t)(dots - v);
        if (la == 0 || la >= sizeof a || strlen(dots + 2) >= sizeof b)
            return lr_fail(LR_ERR_USAGE, "%s: expected A..B or A,B,C, got '%s'", flag, v);
        memcpy(a, v, la);
        a[la] = '\0';
        strcpy(b, dots + 2);
        LR_TRY(args_int(flag, a, lo, hi, &x));
        LR_TRY(args_int(flag, b, x, hi, &y));
        if (y - x + 1 > SIM_MAX_SWEEP)
            return lr_fail(LR_ERR_USAGE, "%s: at most %d points", flag, SIM_MAX_SWEEP);
        *n = 0;
        for (int64_t i = x; i <= y; i++)
            out[(*n)++] = (int)i;
        return LR_OK;
    }
    char buf[4096];
    if (strlen(v) >= sizeof buf)
        return lr_fail(LR_ERR_USAGE, "%s: list too long", flag);
    strcpy(buf, v);
    *n = 0;
    for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (*n >= SIM_MAX_SWEEP)
            return lr_fail(LR_ERR_USAGE, "%s: at most %d points", flag, SIM_MAX_SWEEP);
        LR_TRY(args_int(flag, tok, lo, hi, &x));
        out[(*n)++] = (int)x;
    }
    if (*n == 0)
        return lr_fail(LR_ERR_USAGE, "%s: empty list", flag);
    return LR_OK;
}

static lr_status on_sweep(void *ctx, const char *flag, const char *v)
{
    sim_options *o = ctx;
    if (strncmp(v, "rows=", 5) == 0)
        return parse_list("--sweep rows", v + 5, 1, 4096, o->rows_sweep, &o->n_rows_sweep);
    if (strncmp(v, "batch=", 6) == 0)
        return parse_list("--sweep batch", v + 6, 1, 1 << 30, o->batch_sweep, &o->n_batch_sweep);
    return lr_fail(LR_ERR_USAGE, "%s: expected rows=A..B or batch=A,B,... got '%s'", flag, v);
}

static lr_status on_report(void *ctx, const char *flag, const char *v)
{
    ((sim_options *)ctx)->report = v;
    return LR_OK;
}

static lr_status on_graph(void *ctx, const char *flag, const char *v)
{
    if (graph_format_of(v) == GRAPH_FORMAT_COUNT)
        return lr_fail(LR_ERR_USAGE, "%s: expected a file ending in .dot, .svg or .png, got '%s'", flag, v);
    ((sim_options *)ctx)->graph = v;
    return LR_OK;
}

static lr_status on_gpu_mem(void *ctx, const char *flag, const char *v)
{
    sim_options *o = ctx;
    LR_TRY(args_size(flag, v, &o->gpu_mem_bytes));
    if (o->gpu_mem_bytes <= 0)
        return lr_fail(LR_ERR_USAGE, "%s: expected a positive size, got '%s'", flag, v);
    return LR_OK;
}

static lr_status on_max_overhead(void *ctx, const char *flag, const char *v)
{
    return args_double(flag, v, 1.0, 1e6, &((sim_options *)ctx)->areq.max_overhead);
}

static lr_status on_budget(void *ctx, const char *flag, const char *v)
{
    sim_options *o = ctx;
    LR_TRY(args_size(flag, v, &o->areq.budget_bytes));
    if (o->areq.budget_bytes <= 0)
        return lr_fail(LR_ERR_USAGE, "%s: expected a positive size, got '%s'", flag, v);
    return LR_OK;
}

/* A card from the table, or a size. */
static lr_status on_fit(void *ctx, const char *flag, const char *v)
{
    sim_options *o = ctx;
    o->fit_gpu = device_find(v);
    if (o->fit_gpu && o->fit_gpu->bytes > 0) {
        o->fit_bytes = o->fit_gpu->bytes;
        return LR_OK;
    }
    o->fit_gpu = NULL;
    if (args_size(flag, v, &o->fit_bytes) != LR_OK || o->fit_bytes <= 0) {
        char names[512] = "";
        for (const device_spec *g = device_table; g->name; g++)
            if (g->bytes > 0)
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s",
                         names[0] ? ", " : "", g->name);
        return lr_fail(LR_ERR_USAGE, "%s: expected a size (e.g. 24GiB) or a card (%s), got '%s'",
                       flag, names, v);
    }
    return LR_OK;
}

static lr_status on_device(void *ctx, const char *flag, const char *v)
{
    sim_options *o = ctx;
    o->cfg.device = device_find(v);
    if (o->cfg.device)
        return LR_OK;
    char names[512] = "";
    for (const device_spec *d = device_table; d->name; d++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s",
                 d == device_table ? "" : ", ", d->name);
    return lr_fail(LR_ERR_USAGE, "%s: expected a device (%s), got '%s'", flag, names, v);
}

static lr_status on_overhead_by(void *ctx, const char *flag, const char *v)
{
    sim_options *o = ctx;
    if (strcmp(v, "time") && strcmp(v, "flops"))
        return lr_fail(LR_ERR_USAGE, "%s: expected time or flops, got '%s'", flag, v);
    o->areq.by_time = strcmp(v, "time") == 0;
    o->overhead_by_given = true;
    return LR_OK;
}

static lr_status on_fit_trace(void *ctx, const char *flag, const char *v)
{
    ((sim_options *)ctx)->fit_trace = v;
    return LR_OK;
}

static lr_status on_reserve(void *ctx, const char *flag, const char *v)
{
    sim_options *o = ctx;
    o->reserve_given = true;
    return args_size(flag, v, &o->reserve_bytes);
}

static lr_status on_host_memory(void *ctx, const char *flag, const char *v)
{
    sim_options *o = ctx;
    LR_TRY(args_size(flag, v, &o->host_memory_bytes));
    if (o->host_memory_bytes <= 0)
        return lr_fail(LR_ERR_USAGE, "%s: expected a size above 0, e.g. 512GiB", flag);
    return LR_OK;
}

const args_flag sim_flags[] = {
    {"--net", "NAME|FILE", on_net, "network from the zoo or a .json file (required)"},
    {"--batch", "N", on_batch, "images per step (default 1)"},
    {"--input", "HxW", on_input, "input height x width (default: the network's)"},
    {"--dtype", "T", on_dtype, "fp32 | fp16 | bf16 (default fp32)"},
    {"--optimizer", "O", on_optimizer, "sgd | momentum | adam (default momentum)"},
    {"--strategy", "S[,S]", on_strategy, "strategies to plan (default all; auto only by name)"},
    {"--max-overhead", "X", on_max_overhead, "auto: lowest peak with compute <= X x column (default 1.5)"},
    {"--overhead-by", "M", on_overhead_by, "auto: compute is time | flops (default time with --device)"},
    {"--budget", "SIZE", on_budget, "auto: least compute with peak <= SIZE, e.g. 8GiB"},
    {"--rows", "N", on_rows, "row partitions (first stage for hybrids; default: lowest peak)"},
    {"--region", "LAYER", on_region, "last layer of the row region (default: through the pooling before the classifier)"},
    {"--bn", "MODE", on_bn, "exact (default) | stripe (approximate) | frozen (running stats)"},
    {"--boundaries", "B", on_boundaries, "row and 2ps: keep boundary rows for the backward (default), recompute them (overl's backward), or auto: the planner chooses per stage"},
    {"--offload", "WHAT", on_offload, "host memory for input (the batch; rows copied in per partition), boundary (rows kept for backward), input,boundary, or auto (each plan's own set, below; default none)"},
    {"--segments", "N", on_segments, "checkpoint segments (default: the lowest peak)"},
    {"--allocator", "A", on_allocator, "exact | cuda | caching model for the replay (default exact)"},
    {"--framework", "F", on_framework, "lrcnn (our executor, default) | pytorch (what PyTorch uses)"},
    {"--checkpoint-units", "U", on_checkpoint_units, "pytorch: checkpoint_sequential's modules, top (default) | blocks"},
    {"--alloc-conf", "CONF", on_alloc_conf, "pytorch: PYTORCH_ALLOC_CONF, e.g. max_split_size_mb:128"},
    {"--workspace", "SIZE", on_workspace, "kernel workspace (lrcnn: persistent; pytorch: per conv; default 0)"},
    {"--layers", NULL, on_layers, "print the per-layer table"},
    {"--json", NULL, on_json, "print one JSON object instead of tables"},
    {"--output", "FILE", on_output, "write what would go to stdout to FILE (all or nothing)"},
    {"--timeline", "FILE.csv", on_timeline, "live bytes by class after every schedule step"},
    {"--trace", "FILE.json", on_trace, "Chrome/Perfetto trace: op slices and memory counters"},
    {"--emit-schedule", "FILE.json", on_emit_schedule, "the schedule as versioned JSON for other executors (docs/schedule-format.md)"},
    {"--sweep", "rows=A..B|batch=L", on_sweep, "peaks over rows or batch sizes (both: a grid)"},
    {"--format", "F", on_format, "sweep output: table | csv | json (default table)"},
    {"--report", "DIR", on_report, "plots (PNG, SVG, gnuplot scripts, CSV) and report.md in DIR"},
    {"--graph", "FILE", on_graph, "row-dependency graph of the first row strategy (.dot, .svg, .png)"},
    {"--gpu-mem", "SIZE", on_gpu_mem, "GPU memory for the report's batch plot, e.g. 16GiB"},
    {"--device", "NAME", on_device, "predicted step time per strategy on a card (h100-80gb...) or cpu"},
    {"--fit", "SIZE|GPU", on_fit, "largest batch and square input within SIZE or a card (h100-80gb...); past a second, progress on stderr when it is a terminal"},
    {"--host-memory", "SIZE", on_host_memory, "--fit with --offload: host memory the plan may keep (default: no limit)"},
    {"--reserve", "SIZE", on_reserve, "--fit: kept for CUDA context and allocator (default 1GiB)"},
    {"--fit-trace", "FILE.csv", on_fit_trace, "--fit: every plan choice and fixed-plan evaluation of its searches, with its time"},
    {"--help", NULL, on_help, "this text"},
    {"--version", NULL, on_version, "print the version"},
    {NULL, NULL, NULL, NULL},
};

void sim_options_init(sim_options *o)
{
    memset(o, 0, sizeof *o);
    o->cfg.batch = 1;
    o->cfg.dtype = DT_FP32;
    o->cfg.optim = OPTIM_MOMENTUM;
    o->cfg.bn = BN_EXACT;
    o->allocator = ALLOC_EXACT;
    o->format = "table";
    o->reserve_bytes = FIT_DEFAULT_RESERVE_BYTES;
}

void sim_options_free(sim_options *o)
{
    (void)o;
}

/* ------------------------------------------------------------------ auto and --fit */

/* What auto and --fit add to a run (heap: the fit rows and auto's result are large). */
typedef struct {
    bool has_auto;
    auto_result ar;
    analysis_entry ae;   /* auto's plan emitted and replayed like the fixed strategies' */
    int n_fit;
    summary_fit_row fit[STRAT_COUNT + 1];
    struct fit_step *steps; /* --fit-trace: what the fit told, in order of arrival */
    int n_steps, cap_steps;
} sim_extras;

/* auto's plan under the BatchNorm mode it was chosen for (not necessarily --bn's). */
static lr_status auto_plan(const analysis_t *a, const auto_result *r, plan_t **plan)
{
    plan_config cfg = a->cfg;
    cfg.bn = r->best.bn;
    return plan_build(a->net, &cfg, &r->best.spec, plan);
}

static lr_status run_auto(const sim_options *o, const analysis_t *a, sim_extras *x)
{
    auto_request req = o->areq;
    req.region_end = o->req.region_end;
    LR_TRY(auto_search(a->net, &a->cfg, &req, &x->ar));
    analysis_entry *e = &x->ae;
    memset(e, 0, sizeof *e);
    e->strategy = x->ar.best.spec.strategy;
    e->choice.spec = x->ar.best.spec;
    e->choice.cost = x->ar.best.cost;
    e->choice.rows_chosen = true;
    e->choice.region_chosen = x->ar.best.spec.n_stages > 0; /* where the last stage ends, too */
    e->approximate = x->ar.best.approximate;
    plan_t *plan;
    LR_TRY(auto_plan(a, &x->ar, &plan));
    lr_status r = analysis_replay(a, plan, e);
    plan_free(plan);
    x->has_auto = r == LR_OK;
    return r;
}

/* One measurement of --fit (--fit-trace): a choice or a fixed plan's evaluation, as told (its
 * spec copied into spec when it had one: told.spec is cleared), and its order of arrival. */
typedef struct fit_step {
    fit_progress_info told;
    bool has_plan;
    plan_spec spec;
    int seq;
} fit_step;

/* --fit's progress on stderr, when that is a terminal and the fit has taken a second (under
 * --offload auto at high resolution a fit can take minutes): the questions answered and the
 * latest plan choice; the line is cleared at the end. With --fit-trace it also keeps every
 * measurement. */
typedef struct {
    double start; /* lr_now_ms() */
    sim_extras *x; /* the targets' names, the trace */
    bool line;     /* the progress line (stderr is a terminal) */
    bool trace;
    bool full;     /* out of memory for the trace */
    double last; /* seconds in when the line was last written (0: never) */
    int done;    /* the questions answered it showed */
} fit_meter;

static void keep_step(fit_meter *m, const fit_progress_info *p)
{
    sim_extras *x = m->x;
    if (x->n_steps == x->cap_steps) {
        int cap = x->cap_steps ? 2 * x->cap_steps : 256;
        fit_step *grown = realloc(x->steps, sizeof *grown * (size_t)cap);
        if (!grown) {
            m->full = true;
            return;
        }
        x->steps = grown, x->cap_steps = cap;
    }
    fit_step *s = &x->steps[x->n_steps];
    s->told = *p, s->told.spec = NULL, s->seq = x->n_steps++;
    s->has_plan = p->spec != NULL;
    if (p->spec)
        s->spec = *p->spec;
}

static void fit_progress_line(void *ctx, const fit_progress_info *p)
{
    fit_meter *m = ctx;
    if (m->trace && !m->full && (p->event == FIT_CHOSE || p->event == FIT_MEASURED))
        keep_step(m, p);
    if (!m->line || !p->shown || p->event == FIT_CHOSE || p->event == FIT_MEASURED)
        return;
    double s = (lr_now_ms() - m->start) / 1e3;
    if (s < 1.0 || p->done == p->total || (p->done == m->done && s - m->last < 0.1))
        return; /* (a tenth of a second apart unless a question was answered) */
    m->last = s, m->done = p->done;
    fprintf(stderr, "\r\033[Klrcnn-sim: --fit: %d of %d answered, %.0f s", p->done, p->total, s);
    if (p->at > 0 && p->batch)
        fprintf(stderr, "; %s at batch %" PRId64, m->x->fit[p->target].strategy, p->at);
    else if (p->at > 0)
        fprintf(stderr, "; %s at %" PRId64 "x%" PRId64, m->x->fit[p->target].strategy, p->at, p->at);
    fflush(stderr);
}

/* Steps by question (the targets in order, each batch then input; the seeds last), then in the
 * order measured (a question runs on one thread). */
static int by_question(const void *pa, const void *pb)
{
    const fit_progress_info *a = &((const fit_step *)pa)->told, *b = &((const fit_step *)pb)->told;
    if (a->target != b->target)
        return a->target < b->target ? -1 : 1;
    if (a->batch != b->batch)
        return a->batch ? -1 : 1;
    int x = ((const fit_step *)pa)->seq, y = ((const fit_step *)pb)->seq;
    return (x > y) - (x < y);
}

static const char *strategy_label(plan_strategy s)
{
    return s == STRAT_COUNT ? "auto" : plan_strategy_name(s);
}

/* --fit-trace FILE.csv, all or nothing. */
static lr_status write_fit_trace(const sim_options *o, const analysis_t *a, sim_extras *x)
{
    if (!o->fit_trace)
        return LR_OK;
    qsort(x->steps, (size_t)x->n_steps, sizeof *x->steps, by_question);
    lr_outfile out;
    LR_TRY(lr_outfile_open(&out, o->fit_trace));
    FILE *f = out.f;
    fputs("strategy,question,seed,step,size,kind,ms,peak_bytes,fits,plan,bn,stages,rows,region\n", f);
    for (int i = 0, step = 0; i < x->n_steps; i++) {
        const fit_progress_info *s = &x->steps[i].told, *prev = i ? &x->steps[i - 1].told : NULL;
        step = prev && prev->target == s->target && prev->batch == s->batch ? step + 1 : 1;
        fprintf(f, "%s,%s,%d,%d,%" PRId64 ",%s,%.3f,", strategy_label(s->strategy),
                s->batch ? "batch" : "input", !s->shown, step, s->at,
                s->event == FIT_CHOSE ? "choice" : "plan", s->seconds * 1e3);
        if (s->peak < INT64_MAX)
            fprintf(f, "%" PRId64, s->peak);
        fprintf(f, ",%d,", s->fits);
        if (x->steps[i].has_plan) {
            const plan_spec *sp = &x->steps[i].spec;
            fprintf(f, "%s,%s,%d,\"", sp->n_stages ? plan_strategy_name(sp->strategy) : "column",
                    plan_bn_name(s->bn), sp->n_stages);
            for (int k = 0; k < sp->n_stages; k++)
                fprintf(f, "%s%d", k ? "," : "", sp->parts[k]);
            fprintf(f, "\",%s", sp->n_stages ? a->net->nodes[sp->cut[sp->n_stages - 1]].name : "");
        } else {
            fputs(",,,,", f);
        }
        fputc('\n', f);
    }
    return lr_outfile_commit(&out);
}

/* Every selected strategy, starting from its plan at --batch. */
static lr_status run_fit(const sim_options *o, const analysis_t *a, sim_extras *x)
{
    fit_target t[STRAT_COUNT + 1];
    memset(t, 0, sizeof t);
    int n = 0;
    for (int i = 0; i < a->n; i++, n++) {
        t[n].host_budget_bytes = o->host_memory_bytes;
        t[n].strategy = a->e[i].strategy;
        t[n].req = o->req;
        t[n].hint = a->e[i].choice.spec, t[n].hint_bn = o->cfg.bn, t[n].has_hint = true;
        x->fit[n].strategy = plan_strategy_name(a->e[i].strategy);
    }
    if (x->has_auto) {
        t[n].strategy = STRAT_COUNT;
        t[n].host_budget_bytes = o->host_memory_bytes;
        t[n].areq = o->areq;
        t[n].areq.region_end = o->req.region_end;
        t[n].hint = x->ar.best.spec, t[n].hint_bn = x->ar.best.bn, t[n].has_hint = true;
        x->fit[n++].strategy = "auto";
    }
    fit_result r[STRAT_COUNT + 1];
    fit_meter m = {.start = lr_now_ms(), .x = x, .line = isatty(STDERR_FILENO),
                   .trace = o->fit_trace != NULL};
    lr_status st = fit_run_all(a->net, &o->cfg, t, n, o->fit_bytes - o->reserve_bytes, r,
                               m.line || m.trace ? fit_progress_line : NULL, &m);
    if (m.last > 0)
        fputs("\r\033[K", stderr);
    LR_TRY(st);
    if (m.full)
        return lr_fail(LR_ERR_NOMEM, "--fit-trace: out of memory");
    for (int k = 0; k < n; k++)
        x->fit[k].r = r[k], x->fit[k].offload_chosen = o->cfg.offload_auto;
    x->n_fit = n;
    return LR_OK;
}

static void print_extras(FILE *f, const sim_options *o, const analysis_t *a, const sim_extras *x)
{
    if (x->has_auto)
        summary_print_auto(f, a, &x->ae, &x->ar);
    if (o->fit_bytes)
        summary_print_fit(f, o->fit_gpu, o->fit_bytes, o->reserve_bytes, x->fit, x->n_fit);
}

static void json_extras(json_object *root, const sim_options *o, const analysis_t *a,
                        const sim_extras *x)
{
    json_object *arr;
    if (x->has_auto && json_object_object_get_ex(root, "strategies", &arr))
        json_object_array_add(arr, summary_auto_json(a, &x->ae, &x->ar));
    if (o->fit_bytes) {
        json_object_object_add(root, "fit", summary_fit_json(x->fit, x->n_fit));
        json_object_object_add(root, "fit_device",
                               summary_fit_device_json(o->fit_gpu, o->fit_bytes, o->reserve_bytes));
    }
}

/* The closed form matches the replay for auto's plan too. */
static void check_auto_agreement(FILE *err, const sim_extras *x)
{
    const analysis_entry *e = &x->ae;
    if (x->has_auto && e->exact.peak_bytes != e->choice.cost.peak_bytes)
        fprintf(err, "lrcnn-sim: warning: auto: closed-form peak %" PRId64 " differs from the replay %" PRId64 " by %" PRId64 " bytes\n",
                e->choice.cost.peak_bytes, e->exact.peak_bytes, e->exact.peak_bytes - e->choice.cost.peak_bytes);
}

/* auto's timeline and trace, next to the fixed strategies' (FILE-auto.csv when there are). */
static lr_status write_auto_schedule(const sim_options *o, const analysis_t *a, const sim_extras *x)
{
    if (!x->has_auto || (!o->timeline && !o->trace && !o->emit_schedule))
        return LR_OK;
    plan_t *plan;
    LR_TRY(auto_plan(a, &x->ar, &plan));
    lr_status built = plan_check_emit(plan);
    if (built != LR_OK) {
        plan_free(plan);
        return built;
    }
    sched_t s;
    sched_init(&s);
    plan_emit(plan, &s);
    char path[1200];
    lr_status r = LR_OK;
    if (o->timeline) {
        lr_outfile_suffixed(o->timeline, "auto", a->n > 0, path, sizeof path);
        r = sim_write_timeline_csv(&s, a->net, o->allocator, path);
    }
    if (r == LR_OK && o->trace) {
        lr_outfile_suffixed(o->trace, "auto", a->n > 0, path, sizeof path);
        r = sim_write_trace(&s, a->net, o->allocator, path);
    }
    if (r == LR_OK && o->emit_schedule) {
        lr_outfile_suffixed(o->emit_schedule, "auto", a->n > 0, path, sizeof path);
        r = schedule_write_json(plan, &s, &x->ae, path);
    }
    sched_free(&s);
    plan_free(plan);
    return r;
}

/* ------------------------------------------------------------------ outputs */

/* several: more than one schedule is written (auto's counts), so names get a suffix. */
static lr_status write_schedules(const sim_options *o, const analysis_t *a, bool several)
{
    for (int i = 0; i < a->n && (o->timeline || o->trace || o->emit_schedule); i++) {
        plan_t *plan;
        sched_t s;
        LR_TRY(analysis_schedule(a, &a->e[i], &plan, &s));
        char path[1200];
        const char *name = plan_strategy_name(a->e[i].strategy);
        lr_status r = LR_OK;
        if (o->timeline) {
            lr_outfile_suffixed(o->timeline, name, several, path, sizeof path);
            r = sim_write_timeline_csv(&s, a->net, o->allocator, path);
        }
        if (r == LR_OK && o->trace) {
            lr_outfile_suffixed(o->trace, name, several, path, sizeof path);
            r = sim_write_trace(&s, a->net, o->allocator, path);
        }
        if (r == LR_OK && o->emit_schedule) {
            lr_outfile_suffixed(o->emit_schedule, name, several, path, sizeof path);
            r = schedule_write_json(plan, &s, &a->e[i], path);
        }
        sched_free(&s);
        plan_free(plan);
        LR_TRY(r);
    }
    return LR_OK;
}

/* The closed form matches the replay to the byte; a mismatch is a planner bug worth reporting. */
static void check_agreement(FILE *err, const analysis_t *a)
{
    for (int i = 0; i < a->n; i++) {
        const analysis_entry *e = &a->e[i];
        if (e->exact.peak_bytes != e->choice.cost.peak_bytes)
            fprintf(err, "lrcnn-sim: warning: %s: closed-form peak %" PRId64 " differs from the replay %" PRId64 " by %" PRId64 " bytes\n",
                    plan_strategy_name(e->strategy), e->choice.cost.peak_bytes, e->exact.peak_bytes,
                    e->exact.peak_bytes - e->choice.cost.peak_bytes);
        if (e->exact.host_peak_bytes != e->choice.cost.host_bytes ||
            e->exact.copy_bytes != e->choice.cost.copy_bytes)
            fprintf(err, "lrcnn-sim: warning: %s: closed-form host memory %" PRId64 " and copies %" PRId64
                    " differ from the replay's %" PRId64 " and %" PRId64 "\n",
                    plan_strategy_name(e->strategy), e->choice.cost.host_bytes, e->choice.cost.copy_bytes,
                    e->exact.host_peak_bytes, e->exact.copy_bytes);
    }
}

/* Training BatchNorm on one value per channel fails (PyTorch refuses it, and so do our
 * executors: exec.c); the plans are still counted, so a warning, once per net and batch. */
static void check_batchnorm_counts(FILE *err, const net_t *net, const plan_config *cfg)
{
    if (cfg->bn == BN_FROZEN)
        return;
    for (int l = 1; l < net->n_nodes; l++) {
        const net_node *n = &net->nodes[l];
        if (n->op == OP_BATCHNORM && (int64_t)cfg->batch * n->h * n->w < 2) {
            fprintf(err, "lrcnn-sim: warning: BatchNorm %s sees 1 value per channel (batch %d, "
                         "%dx%d): training it fails, as in PyTorch; use a larger batch or input, "
                         "or --bn frozen\n", n->name, cfg->batch, n->h, n->w);
            return;
        }
    }
}

static void print_header(FILE *f, const sim_options *o, const net_t *net, const analysis_t *a)
{
    char b[32];
    fprintf(f, "%s: %.1fM params, input %dx%dx%d, batch %d, %s, %s, bn %s, allocator %s%s\n",
            net->name, net->params / 1e6, net->nodes[0].c, net->nodes[0].h, net->nodes[0].w,
            o->cfg.batch, cost_dtype_name(o->cfg.dtype), cost_optim_name(o->cfg.optim),
            plan_bn_name(o->cfg.bn), sim_allocator_name(o->allocator),
            o->cfg.offload & OFFLOAD_INPUT ? ", input in host memory" : "");
    if (o->cfg.offload & OFFLOAD_BOUNDARY)
        fprintf(f, "boundary rows kept for backward in host memory (--offload boundary)\n");
    if (o->cfg.offload_auto)
        fprintf(f, "host memory as each plan chooses (--offload auto: the set is listed below the table)\n");
    fprintf(f, "column peak %s; closed-form peaks equal the exact replay\n\n",
            summary_bytes(a->column_peak, b, sizeof b));
}

static lr_status print_json(FILE *f, const net_t *net, const sim_options *o, const analysis_t *a,
                            const sim_extras *x)
{
    json_object *root = summary_json(net, &o->cfg, a);
    json_extras(root, o, a, x);
    fprintf(f, "%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(root);
    return LR_OK;
}

/* ------------------------------------------------------------------ sweeps */

/* One sweep point: the strategy's choice; column's peak and FLOPs at its batch are the
 * reference for the ratios (column does not depend on --rows: planned once per batch). */
typedef struct {
    int batch, rows;
    plan_strategy st;
    plan_choice c;
    int64_t col_peak, col_flops;
    lr_status status;
    char err[256];
} sweep_cell;

static void sweep_point(const net_t *net, const sim_options *o, sweep_cell *x)
{
    plan_config cfg = o->cfg;
    cfg.batch = x->batch;
    plan_request req = o->req;
    req.strategy = x->st;
    req.rows = x->st >= STRAT_ROW ? x->rows : 0;
    lr_status s = cost_check_layers(net, x->batch, cost_dtype_bytes(cfg.dtype));
    if (s == LR_OK)
        s = strategy_choose(net, &cfg, &req, &x->c);
    x->status = s;
    if (s != LR_OK)
        snprintf(x->err, sizeof x->err, "%s", lr_last_error());
}

static void sweep_print(FILE *f, const net_t *net, const sim_options *o, json_object *arr, bool csv,
                        const sweep_cell *x)
{
    char sr[256];
    summary_rows(net, &o->cfg, &x->c.spec, sr, sizeof sr);
    const char *name = plan_strategy_name(x->st);
    int shown = x->st >= STRAT_ROW && x->c.spec.n_stages ? x->c.spec.parts[0] : 1;
    double pr = (double)x->c.cost.peak_bytes / (double)x->col_peak;
    double fr = (double)x->c.cost.flops / (double)x->col_flops;
    if (arr) {
        json_object *p = json_object_new_object();
        json_object_object_add(p, "batch", json_object_new_int(x->batch));
        json_object_object_add(p, "rows", json_object_new_int(shown));
        json_object_object_add(p, "strategy", json_object_new_string(name));
        json_object_object_add(p, "peak_bytes", json_object_new_int64(x->c.cost.peak_bytes));
        json_object_object_add(p, "peak_ratio", json_object_new_double(pr));
        json_object_object_add(p, "flops", json_object_new_int64(x->c.cost.flops));
        json_object_object_add(p, "flops_ratio", json_object_new_double(fr));
        json_object_object_add(p, "stage_rows", json_object_new_string(sr));
        json_object_object_add(p, "offload", json_object_new_string(plan_offload_name(plan_offload_of(&o->cfg, &x->c.spec))));
        json_object_array_add(arr, p);
    } else if (csv) {
        fprintf(f, "%d,%d,%s,%" PRId64 ",%.6f,%" PRId64 ",%.6f,\"%s\"\n", x->batch, shown, name,
                x->c.cost.peak_bytes, pr, x->c.cost.flops, fr, sr);
    } else {
        fprintf(f, "%8d %6d %-11s %14.1f %8.1f%% %8.2fx  %s\n", x->batch, shown, name,
                x->c.cost.peak_bytes / 1048576.0, 100 * pr, fr, sr);
    }
}

/* Points are planned in parallel, SWEEP_CHUNK at a time, and printed in order; the first
 * failing point (in that order) stops the sweep with its error. */
#define SWEEP_CHUNK 256

static lr_status run_sweep(FILE *f, const net_t *net, const sim_options *o)
{
    int nb = o->n_batch_sweep ? o->n_batch_sweep : 1;
    int nr = o->n_rows_sweep ? o->n_rows_sweep : 1;
    unsigned which = o->strategies;
    if (o->n_rows_sweep && !(o->strategies & ((1u << STRAT_COUNT) - (1u << STRAT_ROW))))
        return lr_fail(LR_ERR_USAGE, "--sweep rows: select at least one row strategy");
    if (o->n_rows_sweep)
        which &= (1u << STRAT_COUNT) - (1u << STRAT_ROW); /* rows only mean something there */
    int n_st = 0;
    plan_strategy sts[STRAT_COUNT];
    for (int st = 0; st < STRAT_COUNT; st++)
        if (which & (1u << st))
            sts[n_st++] = (plan_strategy)st;
    bool csv = strcmp(o->format, "csv") == 0, json = o->json || strcmp(o->format, "json") == 0;
    sweep_cell *cells = malloc(sizeof *cells * SWEEP_CHUNK);
    sweep_cell *col = malloc(sizeof *col * (size_t)nb); /* column at each batch */
    if (!cells || !col) {
        free(cells), free(col);
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    }
#pragma omp parallel for schedule(dynamic)
    for (int bi = 0; bi < nb; bi++) {
        col[bi] = (sweep_cell){.batch = o->n_batch_sweep ? o->batch_sweep[bi] : o->cfg.batch,
                               .st = STRAT_COLUMN};
        sweep_point(net, o, &col[bi]);
    }
    json_object *arr = json ? json_object_new_array() : NULL;
    if (csv)
        fprintf(f, "batch,rows,strategy,peak_bytes,peak_ratio,flops,flops_ratio,stage_rows\n");
    else if (!json)
        fprintf(f, "%8s %6s %-11s %14s %9s %9s  %s\n", "batch", "rows", "strategy", "peak MiB",
                "vs col", "compute", "stage rows");
    int64_t total = (int64_t)nb * nr * n_st;
    lr_status s = LR_OK;
    for (int64_t first = 0; first < total && s == LR_OK; first += SWEEP_CHUNK) {
        int n = total - first < SWEEP_CHUNK ? (int)(total - first) : SWEEP_CHUNK;
        for (int i = 0; i < n; i++) {
            int64_t k = first + i; /* batch-major, then rows, then strategy */
            int bi = (int)(k / ((int64_t)nr * n_st)), ri = (int)(k / n_st % nr);
            cells[i] = (sweep_cell){.batch = col[bi].batch,
                                    .rows = o->n_rows_sweep ? o->rows_sweep[ri] : o->req.rows,
                                    .st = sts[k % n_st],
                                    .col_peak = col[bi].c.cost.peak_bytes,
                                    .col_flops = col[bi].c.cost.flops,
                                    .status = col[bi].status};
            if (col[bi].status != LR_OK) /* the batch itself fails: its first point says why */
                memcpy(cells[i].err, col[bi].err, sizeof cells[i].err);
        }
#pragma omp parallel for schedule(dynamic)
        for (int i = 0; i < n; i++)
            if (cells[i].status == LR_OK)
                sweep_point(net, o, &cells[i]);
        for (int i = 0; i < n && s == LR_OK; i++) {
            if (cells[i].status != LR_OK)
                s = lr_fail(cells[i].status, "%s", cells[i].err);
            else
                sweep_print(f, net, o, arr, csv, &cells[i]);
        }
    }
    free(cells);
    free(col);
    if (json && s == LR_OK) {
        json_object *root = json_object_new_object();
        json_object_object_add(root, "net", json_object_new_string(net->name));
        json_object_object_add(root, "sweep", arr);
        fprintf(f, "%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(root);
    } else if (arr) {
        json_object_put(arr);
    }
    return s;
}

/* ------------------------------------------------------------------ driver */

static lr_status load_net(sim_options *o, net_t **net)
{
    if (!o->net)
        return lr_fail(LR_ERR_USAGE, "--net is required (e.g. --net vgg16; see --help)");
    LR_TRY(net_open(o->net, net));
    if (o->in_h && (o->in_h != (*net)->nodes[0].h || o->in_w != (*net)->nodes[0].w)) {
        lr_status s = net_reshape(*net, o->in_h, o->in_w);
        if (s != LR_OK) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", lr_last_error());
            return lr_fail(s, "--input %dx%d: %s", o->in_h, o->in_w, msg);
        }
    }
    if (o->region_name) {
        int node = net_find(*net, o->region_name);
        if (node <= 0)
            return lr_fail(LR_ERR_USAGE, "--region: no layer named '%s' in %s", o->region_name, (*net)->name);
        o->req.region_end = node;
    }
    return LR_OK;
}

/* --graph: the first selected row strategy's plan. */
static lr_status write_graph(const sim_options *o, const analysis_t *a)
{
    for (int i = 0; i < a->n; i++) {
        if (a->e[i].strategy < STRAT_ROW)
            continue;
        plan_t *plan;
        LR_TRY(plan_build(a->net, &a->cfg, &a->e[i].choice.spec, &plan));
        lr_status s = graph_write(plan, o->graph, NULL);
        plan_free(plan);
        return s;
    }
    return LR_OK; /* sim_cli_run made sure there is one */
}

static lr_status write_extras(const sim_options *o, const analysis_t *a)
{
    if (o->graph)
        LR_TRY(write_graph(o, a));
    if (o->report) {
        report_options ro = {.gpu_mem_bytes = o->gpu_mem_bytes};
        LR_TRY(report_write(a, &ro, o->report));
    }
    return LR_OK;
}

static lr_status run_main(FILE *f, sim_options *o, const net_t *net)
{
    if (o->pytorch) {
        if (o->emit_schedule)
            return lr_fail(LR_ERR_USAGE, "--emit-schedule: writes lrcnn's schedules, not --framework pytorch's profile");
        if (!o->allocator_given)
            o->allocator = ALLOC_CACHING;
        return sim_cli_pytorch(f, o, net);
    }
    if ((o->n_rows_sweep || o->n_batch_sweep) && (o->report || o->graph))
        return lr_fail(LR_ERR_USAGE, "--sweep cannot be combined with --report or --graph "
                                     "(the report has its own rows and batch sweeps)");
    if ((o->n_rows_sweep || o->n_batch_sweep) && (o->timeline || o->trace || o->emit_schedule))
        return lr_fail(LR_ERR_USAGE, "--timeline/--trace/--emit-schedule describe one schedule: drop --sweep, or run them separately");
    if (o->n_rows_sweep || o->n_batch_sweep)
        return run_sweep(f, net, o);
    analysis_t *a = malloc(sizeof *a);
    sim_extras *x = calloc(1, sizeof *x);
    if (!a || !x) {
        free(a), free(x);
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    }
    /* --fit: the table's searches at batch 1 keep their stages' phases for the fit's batch
     * questions (plan_config.reuse_phases) */
    o->cfg.reuse_phases = o->fit_bytes > 0;
    lr_status s = analysis_run(net, &o->cfg, &o->req, o->strategies, o->allocator, a);
    if (s == LR_OK && o->auto_plan)
        s = run_auto(o, a, x);
    if (s == LR_OK && o->fit_bytes)
        s = run_fit(o, a, x);
    if (s == LR_OK) {
        check_agreement(stderr, a);
        check_auto_agreement(stderr, x);
        if (!o->fit_bytes) /* (--fit's own table is at batch 1 whatever training would use) */
            check_batchnorm_counts(stderr, net, &o->cfg);
        if (o->json)
            s = print_json(f, net, o, a, x);
        else {
            print_header(f, o, net, a);
            if (o->layers) {
                summary_print_layers(f, net, &o->cfg);
                fputc('\n', f);
            }
            if (a->n > 0) /* none when only auto was asked for */
                summary_print_strategies(f, a);
            print_extras(f, o, a, x);
        }
    }
    if (s == LR_OK)
        s = write_schedules(o, a, a->n + x->has_auto > 1);
    if (s == LR_OK)
        s = write_auto_schedule(o, a, x);
    if (s == LR_OK)
        s = write_extras(o, a);
    if (s == LR_OK)
        s = write_fit_trace(o, a, x);
    free(x->steps);
    free(a), free(x);
    return s;
}

/* auto's and --fit's flags make sense only together with them. */
static lr_status check_auto_and_fit(const sim_options *o)
{
    if (o->overhead_by_given && !o->auto_plan)
        return lr_fail(LR_ERR_USAGE, "--overhead-by: only --strategy auto uses it");
    if (o->overhead_by_given && o->areq.by_time && !o->cfg.device)
        return lr_fail(LR_ERR_USAGE, "--overhead-by time: needs --device (the card whose time "
                                     "model measures compute)");
    if ((o->areq.max_overhead > 0 || o->areq.budget_bytes > 0) && !o->auto_plan)
        return lr_fail(LR_ERR_USAGE, "%s: only --strategy auto uses it (e.g. --strategy auto or column,auto)",
                       o->areq.budget_bytes > 0 ? "--budget" : "--max-overhead");
    if (o->reserve_given && !o->fit_bytes)
        return lr_fail(LR_ERR_USAGE, "--reserve: only --fit uses it");
    if (o->fit_trace && (!o->fit_bytes || o->pytorch))
        return lr_fail(LR_ERR_USAGE, "--fit-trace: only --fit uses it (and not with --framework pytorch)");
    if (o->host_memory_bytes && (!o->fit_bytes || (!o->cfg.offload && !o->cfg.offload_auto)))
        return lr_fail(LR_ERR_USAGE, "--host-memory: only --fit with --offload uses it");
    if (o->fit_bytes && o->fit_bytes - o->reserve_bytes <= 0)
        return lr_fail(LR_ERR_USAGE, "--reserve: %" PRId64 " bytes leave nothing of --fit's %" PRId64,
                       o->reserve_bytes, o->fit_bytes);
    if (o->fit_bytes && o->fit_bytes - o->reserve_bytes >= FIT_MAX_BUDGET_BYTES)
        return lr_fail(LR_ERR_USAGE, "--fit: at most 1 PiB");
    if ((o->pt_units_given || o->alloc_conf_given) && !o->pytorch)
        return lr_fail(LR_ERR_USAGE, "%s: only --framework pytorch uses it",
                       o->pt_units_given ? "--checkpoint-units" : "--alloc-conf");
    bool extra = o->auto_plan || o->fit_bytes;
    if (extra && (o->n_rows_sweep || o->n_batch_sweep))
        return lr_fail(LR_ERR_USAGE, "--sweep cannot be combined with %s", o->auto_plan ? "--strategy auto" : "--fit");
    return LR_OK;
}

lr_status sim_cli_run(sim_options *o)
{
    LR_TRY(check_auto_and_fit(o));
    if (!o->overhead_by_given)
        o->areq.by_time = o->cfg.device != NULL; /* users choose plans by time when they can */
    if (!o->strategies && !o->auto_plan)
        o->strategies = o->pytorch ? (1u << STRAT_COLUMN) | (1u << STRAT_CHECKPOINT)
                                   : (1u << STRAT_COUNT) - 1;
    if (o->graph && !(o->strategies & ((1u << STRAT_COUNT) - (1u << STRAT_ROW))))
        return lr_fail(LR_ERR_USAGE, "--graph: select a row strategy (row, 2ps, overl, 2ps-h, overl-h)");
    if (o->gpu_mem_bytes && !o->report)
        return lr_fail(LR_ERR_USAGE, "--gpu-mem: only the report uses it (add --report DIR)");
    if (o->report)
        LR_TRY(report_check(o->report)); /* before any output: the one-line error is all there is */
    net_t *net = NULL;
    lr_status s = load_net(o, &net);
    lr_outfile out = {0};
    if (s == LR_OK)
        s = lr_outfile_open(&out, o->output ? o->output : "-");
    if (s == LR_OK) {
        s = run_main(out.f, o, net);
        if (s == LR_OK)
            s = lr_outfile_commit(&out);
        else
            lr_outfile_abort(&out);
    }
    net_free(net);
    return s;
}
