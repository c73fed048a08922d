/* sim_pytorch.c - `lrcnn-sim --framework pytorch`: what PyTorch itself would use for column
 * training and torch.utils.checkpoint (planner/pytorch.h), as torch.cuda.max_memory_allocated /
 * max_memory_reserved would report it (caching allocator model by default); with --strategy auto
 * the checkpointing with the least recompute whose reserved peak fits --budget, and with --fit
 * the largest batch and input whose reserved peak fits a card (planner/pytorch_fit.h).
 * Deliberately not here: the profile itself (planner/pytorch*.c).
 */
#include <inttypes.h>
#include <string.h>

#include "outfile.h"
#include "pytorch_fit.h"
#include "sim_cli.h"
#include "summary.h"

typedef struct {
    const char *name;
    pytorch_profile p; /* segments 0: no checkpointing */
    pytorch_prediction pred;
    int64_t saved_bytes, recompute_flops;
    sched_t s;
} pt_row;

/* What the rows, auto and fit have in common: the user's profile settings. */
static pytorch_profile base_profile(const sim_options *o)
{
    pytorch_profile p;
    pytorch_profile_default(&p);
    p.units = o->pt_units;
    p.alloc = o->alloc_conf;
    p.cudnn_workspace_bytes = o->cfg.workspace_bytes;
    return p;
}

static lr_status pt_run(const net_t *net, const sim_options *o, pt_row *r)
{
    sched_init(&r->s);
    LR_TRY(pytorch_emit(net, &o->cfg, &r->p, &r->s));
    LR_TRY(pytorch_saved_bytes(net, &o->cfg, &r->p, &r->saved_bytes));
    for (int i = r->s.step_begin; i < r->s.step_end; i++)
        if (r->s.steps[i].op == STEP_RUN && r->s.steps[i].pass == PASS_RECOMPUTE)
            r->recompute_flops += r->s.steps[i].flops;
    return pytorch_predict(&r->s, o->allocator, &r->p.alloc, &r->pred);
}

/* The rows asked for: column, checkpoint (--segments, else the count with the lowest reserved
 * peak), auto's choice. */
static lr_status pt_rows(const net_t *net, const sim_options *o, const pytorch_auto_result *ar,
                         pt_row *rows, int *n)
{
    *n = 0;
    pytorch_profile base = base_profile(o);
    if (o->strategies & (1u << STRAT_COLUMN))
        rows[(*n)++] = (pt_row){.name = "column", .p = base};
    if (o->strategies & (1u << STRAT_CHECKPOINT)) {
        pt_row *r = &rows[(*n)++];
        *r = (pt_row){.name = "checkpoint", .p = base};
        if (o->req.segments) {
            r->p.segments = o->req.segments < 2 ? 2 : o->req.segments;
        } else {
            pytorch_eval ev;
            LR_TRY(pytorch_choose_segments(net, &o->cfg, &base, &r->p.segments, &ev));
        }
    }
    if (ar) {
        const pytorch_auto_candidate *c = &ar->c[ar->best];
        pt_row *r = &rows[(*n)++];
        *r = (pt_row){.name = "auto", .p = base};
        r->p.segments = c->segments;
        r->p.units = c->units;
    }
    lr_status s = LR_OK;
    for (int i = 0; i < *n && s == LR_OK; i++)
        s = pt_run(net, o, &rows[i]);
    return s;
}

/* ------------------------------------------------------------------ text */

static const char *where(const net_t *net, const sched_t *s, int step, char *buf, size_t cap)
{
    if (step < 0 || step >= s->n_steps)
        return "-";
    const sched_step *p = &s->steps[step];
    return summary_where(net, (sched_pass)p->pass, p->node, -1, buf, cap);
}

static const char *units_of(const pytorch_profile *p)
{
    return p->segments >= 2 ? pytorch_units_name(p->units) : "-";
}

/* Recompute as a share of the step's FLOPs without it. */
static double recompute_share(int64_t recompute, int64_t step)
{
    return step > recompute ? 100.0 * (double)recompute / (double)(step - recompute) : 0;
}

static void pt_print_rows(FILE *f, const net_t *net, const sim_options *o, pt_row *rows, int n)
{
    char b1[32], b2[32], b3[32], w[160];
    fprintf(f, "%s: PyTorch profile, batch %d, %s, %s, allocator %s (cudnn workspace %s per conv)\n\n",
            net->name, o->cfg.batch, cost_dtype_name(o->cfg.dtype), cost_optim_name(o->cfg.optim),
            sim_allocator_name(o->allocator), summary_bytes(o->cfg.workspace_bytes, b1, sizeof b1));
    fprintf(f, "%-11s %6s %8s %15s %15s %15s %10s  %s\n", "strategy", "units", "segments",
            "max allocated", "max reserved", "step start", "recompute", "peak at");
    for (int i = 0; i < n; i++) {
        int64_t step = 0;
        for (int k = rows[i].s.step_begin; k < rows[i].s.step_end; k++)
            step += rows[i].s.steps[k].op == STEP_RUN ? rows[i].s.steps[k].flops : 0;
        fprintf(f, "%-11s %6s %8d %15s %15s %15s %9.1f%%  %s\n", rows[i].name,
                units_of(&rows[i].p), rows[i].p.segments,
                summary_bytes(rows[i].pred.max_allocated, b1, sizeof b1),
                summary_bytes(rows[i].pred.max_reserved, b2, sizeof b2),
                summary_bytes(rows[i].pred.start_allocated, b3, sizeof b3),
                recompute_share(rows[i].recompute_flops, step),
                where(net, &rows[i].s, rows[i].pred.peak_step, w, sizeof w));
    }
    fprintf(f, "\nmax allocated ~ torch.cuda.max_memory_allocated(), max reserved ~ max_memory_reserved(),\n"
               "for the step after a warm-up step; checkpoint = checkpoint_sequential(body, segments, x,\n"
               "use_reentrant=False) over the units, ReLUs not in place (README); see\n"
               "bench/results/README-pytorch.md.\n");
}

/* Candidates no other candidate beats on both reserved peak and recompute. */
static bool on_front(const pytorch_auto_result *ar, int i)
{
    const pytorch_eval *a = &ar->c[i].ev;
    for (int j = 0; j < ar->n; j++) {
        const pytorch_eval *b = &ar->c[j].ev;
        bool no_worse = b->pred.max_reserved <= a->pred.max_reserved &&
                        b->recompute_flops <= a->recompute_flops;
        bool better = b->pred.max_reserved < a->pred.max_reserved ||
                      b->recompute_flops < a->recompute_flops;
        if (no_worse && (better || j < i))
            return false;
    }
    return true;
}

static void pt_print_auto(FILE *f, const sim_options *o, const pytorch_auto_result *ar)
{
    char b1[32], b2[32];
    const pytorch_auto_candidate *c = &ar->c[ar->best];
    int64_t budget = o->areq.budget_bytes;
    fprintf(f, "\nauto: least recompute whose max reserved fits %s: ",
            summary_bytes(budget, b1, sizeof b1));
    if (!c->fits)
        fprintf(f, "nothing fits; the lowest max reserved is %s (%s units, %d segments)\n",
                summary_bytes(c->ev.pred.max_reserved, b2, sizeof b2),
                pytorch_units_name(c->units), c->segments);
    else if (c->alloc_retries > 0)
        fprintf(f, "none; with cache flushes, %s units, %d segments get by (%" PRId64 " flushes, "
                   "max reserved %s without them, recompute %.1f%%)\n",
                pytorch_units_name(c->units), c->segments, c->alloc_retries,
                summary_bytes(c->ev.pred.max_reserved, b2, sizeof b2),
                recompute_share(c->ev.recompute_flops, c->ev.step_flops));
    else if (c->segments < 2)
        fprintf(f, "no checkpointing (%s)\n", summary_bytes(c->ev.pred.max_reserved, b2, sizeof b2));
    else
        fprintf(f, "%s units, %d segments (%s, recompute %.1f%%)\n", pytorch_units_name(c->units),
                c->segments, summary_bytes(c->ev.pred.max_reserved, b2, sizeof b2),
                recompute_share(c->ev.recompute_flops, c->ev.step_flops));
    fprintf(f, "%8s %8s %15s %10s  %s\n", "units", "segments", "max reserved", "recompute",
            "fits");
    for (int i = 0; i < ar->n; i++) {
        const pytorch_auto_candidate *x = &ar->c[i];
        char fits[32];
        if (x->fits && x->alloc_retries)
            snprintf(fits, sizeof fits, "%" PRId64 " cache flush%s", x->alloc_retries,
                     x->alloc_retries > 1 ? "es" : "");
        else
            snprintf(fits, sizeof fits, "%s", x->fits ? "yes" : "no");
        if (on_front(ar, i) || i == ar->best)
            fprintf(f, "%8s %8d %15s %9.1f%%  %s%s\n",
                    x->segments >= 2 ? pytorch_units_name(x->units) : "-", x->segments,
                    summary_bytes(x->ev.pred.max_reserved, b1, sizeof b1),
                    recompute_share(x->ev.recompute_flops, x->ev.step_flops), fits,
                    i == ar->best ? "  <- chosen" : "");
    }
    fprintf(f, "(the choice and the candidates no other beats on both reserved peak and recompute;\n"
               " a reserved peak above the budget may still get by when the allocator flushes its\n"
               " cache, counted over the warm-up and the step, and is taken only when none fits)\n");
}

static void pt_print_fit(FILE *f, const sim_options *o, const summary_fit_row *rows, int n)
{
    char b1[32], b2[32], b3[32], size[64];
    const device_spec *gpu = o->fit_gpu;
    fprintf(f, "\nfit: %s%s%s%s - reserve %s = %s for the training step\n", gpu ? gpu->name : "",
            gpu ? " (" : "", gpu ? gpu->label : summary_bytes(o->fit_bytes, b1, sizeof b1),
            gpu ? ")" : "", summary_bytes(o->reserve_bytes, b2, sizeof b2),
            summary_bytes(o->fit_bytes - o->reserve_bytes, b3, sizeof b3));
    fprintf(f, "%-11s %12s   %s\n", "strategy", "max batch", "max input at batch 1");
    for (int k = 0; k < n; k++) {
        const fit_result *r = &rows[k].r;
        if (r->max_square_input > 0)
            snprintf(size, sizeof size, "%dx%d%s", r->max_square_input, r->max_square_input,
                     r->input_at_limit ? " (the profile's limit)" : "");
        else
            snprintf(size, sizeof size, "none (not even %dx%d)", r->min_square_input,
                     r->min_square_input);
        fprintf(f, "%-11s %12d%s  %s\n", rows[k].strategy, r->max_batch,
                r->batch_at_limit ? "+" : " ", size);
    }
    fprintf(f, "(largest batch at the network's input and largest square input at batch 1 whose\n"
               " predicted max reserved fits, warm-up step included: no cache flush needed;\n"
               " checkpoint with any segment count; + = the profile's limit)\n");
}

/* ------------------------------------------------------------------ JSON */

static json_object *pt_auto_json(const pytorch_auto_result *ar, int64_t budget)
{
    json_object *o = json_object_new_object(), *arr = json_object_new_array();
    const pytorch_auto_candidate *c = &ar->c[ar->best];
    json_object_object_add(o, "budget_bytes", json_object_new_int64(budget));
    json_object_object_add(o, "fits", json_object_new_boolean(c->fits));
    json_object_object_add(o, "units", json_object_new_string(c->segments >= 2 ? pytorch_units_name(c->units) : "-"));
    json_object_object_add(o, "segments", json_object_new_int(c->segments));
    for (int i = 0; i < ar->n; i++) {
        json_object *e = json_object_new_object();
        const pytorch_auto_candidate *x = &ar->c[i];
        json_object_object_add(e, "units", json_object_new_string(x->segments >= 2 ? pytorch_units_name(x->units) : "-"));
        json_object_object_add(e, "segments", json_object_new_int(x->segments));
        json_object_object_add(e, "max_allocated_bytes", json_object_new_int64(x->ev.pred.max_allocated));
        json_object_object_add(e, "max_reserved_bytes", json_object_new_int64(x->ev.pred.max_reserved));
        json_object_object_add(e, "recompute_flops", json_object_new_int64(x->ev.recompute_flops));
        json_object_object_add(e, "fits", json_object_new_boolean(x->fits));
        json_object_object_add(e, "alloc_retries", json_object_new_int64(x->alloc_retries));
        json_object_array_add(arr, e);
    }
    json_object_object_add(o, "candidates", arr);
    return o;
}

static json_object *pt_json(const net_t *net, const sim_options *o, pt_row *rows, int n)
{
    json_object *root = json_object_new_object(), *arr = json_object_new_array();
    json_object_object_add(root, "framework", json_object_new_string("pytorch"));
    json_object_object_add(root, "net", json_object_new_string(net->name));
    json_object_object_add(root, "batch", json_object_new_int(o->cfg.batch));
    json_object_object_add(root, "optimizer", json_object_new_string(cost_optim_name(o->cfg.optim)));
    json_object_object_add(root, "allocator", json_object_new_string(sim_allocator_name(o->allocator)));
    for (int i = 0; i < n; i++) {
        json_object *e = json_object_new_object();
        char w[160];
        json_object_object_add(e, "strategy", json_object_new_string(rows[i].name));
        json_object_object_add(e, "units", json_object_new_string(units_of(&rows[i].p)));
        json_object_object_add(e, "segments", json_object_new_int(rows[i].p.segments));
        json_object_object_add(e, "start_allocated_bytes", json_object_new_int64(rows[i].pred.start_allocated));
        json_object_object_add(e, "start_reserved_bytes", json_object_new_int64(rows[i].pred.start_reserved));
        json_object_object_add(e, "max_allocated_bytes", json_object_new_int64(rows[i].pred.max_allocated));
        json_object_object_add(e, "max_reserved_bytes", json_object_new_int64(rows[i].pred.max_reserved));
        json_object_object_add(e, "saved_bytes", json_object_new_int64(rows[i].saved_bytes));
        json_object_object_add(e, "recompute_flops", json_object_new_int64(rows[i].recompute_flops));
        json_object_object_add(e, "peak_at", json_object_new_string(where(net, &rows[i].s, rows[i].pred.peak_step, w, sizeof w)));
        json_object_array_add(arr, e);
    }
    json_object_object_add(root, "pytorch", arr);
    return root;
}

/* ------------------------------------------------------------------ driver */

static lr_status pt_write_schedules(const net_t *net, const sim_options *o, pt_row *rows, int n)
{
    char path[1200];
    for (int i = 0; i < n; i++) {
        if (o->timeline) {
            lr_outfile_suffixed(o->timeline, rows[i].name, n > 1, path, sizeof path);
            LR_TRY(sim_write_timeline_csv_conf(&rows[i].s, net, o->allocator, &rows[i].p.alloc,
                                               path));
        }
        if (o->trace) {
            lr_outfile_suffixed(o->trace, rows[i].name, n > 1, path, sizeof path);
            LR_TRY(sim_write_trace_conf(&rows[i].s, net, o->allocator, &rows[i].p.alloc, path));
        }
    }
    return LR_OK;
}

/* --fit for the column and checkpoint rows asked for. */
static lr_status pt_fit(const net_t *net, const sim_options *o, summary_fit_row *fit, int *n)
{
    *n = 0;
    for (int st = STRAT_COLUMN; st <= STRAT_CHECKPOINT; st++) {
        if (!(o->strategies & (1u << st)))
            continue;
        pytorch_fit_target t = {.checkpoint = st == STRAT_CHECKPOINT, .profile = base_profile(o)};
        if (t.checkpoint && o->req.segments)
            t.profile.segments = o->req.segments < 2 ? 2 : o->req.segments;
        fit[*n].strategy = plan_strategy_name((plan_strategy)st);
        LR_TRY(pytorch_fit_run(net, &o->cfg, &t, o->fit_bytes - o->reserve_bytes, &fit[*n].r));
        (*n)++;
    }
    return LR_OK;
}

static lr_status pt_check(const sim_options *o, const net_t *net)
{
    unsigned allowed = (1u << STRAT_COLUMN) | (1u << STRAT_CHECKPOINT);
    if (o->strategies & ~allowed)
        return lr_fail(LR_ERR_USAGE, "--framework pytorch models column and checkpoint training only (--strategy column,checkpoint,auto)");
    if (o->n_rows_sweep || o->n_batch_sweep || o->report || o->graph)
        return lr_fail(LR_ERR_USAGE, "--framework pytorch: --sweep, --report and --graph describe lrcnn plans; drop them");
    if (o->auto_plan && o->areq.budget_bytes <= 0)
        return lr_fail(LR_ERR_USAGE, "--framework pytorch --strategy auto: give --budget SIZE (the least recompute whose max reserved fits it)");
    if (o->areq.max_overhead > 0)
        return lr_fail(LR_ERR_USAGE, "--max-overhead: --framework pytorch's auto takes --budget only");
    if (o->cfg.device || o->overhead_by_given)
        return lr_fail(LR_ERR_USAGE, "%s: the time model describes lrcnn's executor, not --framework pytorch",
                       o->cfg.device ? "--device" : "--overhead-by");
    return cost_check_limits(net, o->cfg.batch, cost_dtype_bytes(o->cfg.dtype), 64);
}

lr_status sim_cli_pytorch(FILE *f, const sim_options *o, const net_t *net)
{
    LR_TRY(pt_check(o, net));
    pytorch_auto_result ar = {0};
    summary_fit_row fit[2];
    int n_fit = 0, n = 0;
    pt_row rows[3];
    memset(rows, 0, sizeof rows);
    pytorch_profile base = base_profile(o);
    lr_status s = LR_OK;
    if (o->auto_plan)
        s = pytorch_auto(net, &o->cfg, &base, o->areq.budget_bytes, &ar);
    if (s == LR_OK)
        s = pt_rows(net, o, o->auto_plan ? &ar : NULL, rows, &n);
    if (s == LR_OK && o->fit_bytes)
        s = pt_fit(net, o, fit, &n_fit);
    if (s == LR_OK && o->json) {
        json_object *root = pt_json(net, o, rows, n);
        if (o->auto_plan)
            json_object_object_add(root, "auto", pt_auto_json(&ar, o->areq.budget_bytes));
        if (o->fit_bytes) {
            json_object_object_add(root, "fit", summary_fit_json(fit, n_fit));
            json_object_object_add(root, "fit_device",
                                   summary_fit_device_json(o->fit_gpu, o->fit_bytes, o->reserve_bytes));
        }
        fprintf(f, "%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(root);
    } else if (s == LR_OK) {
        pt_print_rows(f, net, o, rows, n);
        if (o->auto_plan)
            pt_print_auto(f, o, &ar);
        if (o->fit_bytes)
            pt_print_fit(f, o, fit, n_fit);
    }
    if (s == LR_OK)
        s = pt_write_schedules(net, o, rows, n);
    for (int i = 0; i < 3; i++)
        sched_free(&rows[i].s);
    pytorch_auto_free(&ar);
    return s;
}
