/* sim_pytorch.c - `lrcnn-sim --framework pytorch`: what PyTorch itself would use for column
 * training and torch.utils.checkpoint (planner/pytorch.h), as torch.cuda.max_memory_allocated /
 * max_memory_reserved would report it (caching allocator model by default).
 * Deliberately not here: the profile itself (planner/pytorch*.c).
 */
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "outfile.h"
#include "pytorch.h"
#include "sim_cli.h"
#include "summary.h"

typedef struct {
    const char *name;
    int segments;
    pytorch_prediction pred;
    int64_t saved_bytes;
    sched_t s;
} pt_row;

static lr_status pt_run(const net_t *net, const sim_options *o, pt_row *r)
{
    pytorch_profile p;
    pytorch_profile_default(&p);
    p.segments = r->segments;
    p.cudnn_workspace_bytes = o->cfg.workspace_bytes;
    sched_init(&r->s);
    LR_TRY(pytorch_emit(net, &o->cfg, &p, &r->s));
    LR_TRY(pytorch_saved_bytes(net, &o->cfg, &p, &r->saved_bytes));
    return pytorch_predict(&r->s, o->allocator, &r->pred);
}

static const char *where(const net_t *net, const sched_t *s, int step, char *buf, size_t cap)
{
    if (step < 0 || step >= s->n_steps)
        return "-";
    const sched_step *p = &s->steps[step];
    return summary_where(net, (sched_pass)p->pass, p->node, -1, buf, cap);
}

static void pt_print(FILE *f, const net_t *net, const sim_options *o, pt_row *rows, int n)
{
    char b1[32], b2[32], b3[32], w[160];
    fprintf(f, "%s: PyTorch profile, batch %d, %s, %s, allocator %s (cudnn workspace %s per conv)\n\n",
            net->name, o->cfg.batch, cost_dtype_name(o->cfg.dtype), cost_optim_name(o->cfg.optim),
            sim_allocator_name(o->allocator), summary_bytes(o->cfg.workspace_bytes, b1, sizeof b1));
    fprintf(f, "%-11s %8s %15s %15s %15s  %s\n", "strategy", "segments", "max allocated",
            "max reserved", "step start", "peak at");
    for (int i = 0; i < n; i++)
        fprintf(f, "%-11s %8d %15s %15s %15s  %s\n", rows[i].name, rows[i].segments,
                summary_bytes(rows[i].pred.max_allocated, b1, sizeof b1),
                summary_bytes(rows[i].pred.max_reserved, b2, sizeof b2),
                summary_bytes(rows[i].pred.start_allocated, b3, sizeof b3),
                where(net, &rows[i].s, rows[i].pred.peak_step, w, sizeof w));
    fprintf(f, "\nmax allocated ~ torch.cuda.max_memory_allocated(), max reserved ~ max_memory_reserved(),\n"
               "for the step after a warm-up step; see bench/results/README-pytorch.md.\n");
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
        json_object_object_add(e, "segments", json_object_new_int(rows[i].segments));
        json_object_object_add(e, "start_allocated_bytes", json_object_new_int64(rows[i].pred.start_allocated));
        json_object_object_add(e, "start_reserved_bytes", json_object_new_int64(rows[i].pred.start_reserved));
        json_object_object_add(e, "max_allocated_bytes", json_object_new_int64(rows[i].pred.max_allocated));
        json_object_object_add(e, "max_reserved_bytes", json_object_new_int64(rows[i].pred.max_reserved));
        json_object_object_add(e, "saved_bytes", json_object_new_int64(rows[i].saved_bytes));
        json_object_object_add(e, "peak_at", json_object_new_string(where(net, &rows[i].s, rows[i].pred.peak_step, w, sizeof w)));
        json_object_array_add(arr, e);
    }
    json_object_object_add(root, "pytorch", arr);
    return root;
}

static lr_status pt_write_schedules(const net_t *net, const sim_options *o, pt_row *rows, int n)
{
    char path[1200];
    for (int i = 0; i < n; i++) {
        if (o->timeline) {
            lr_outfile_suffixed(o->timeline, rows[i].name, n > 1, path, sizeof path);
            LR_TRY(sim_write_timeline_csv(&rows[i].s, net, o->allocator, path));
        }
        if (o->trace) {
            lr_outfile_suffixed(o->trace, rows[i].name, n > 1, path, sizeof path);
            LR_TRY(sim_write_trace(&rows[i].s, net, o->allocator, path));
        }
    }
    return LR_OK;
}

lr_status sim_cli_pytorch(FILE *f, const sim_options *o, const net_t *net)
{
    unsigned allowed = (1u << STRAT_COLUMN) | (1u << STRAT_CHECKPOINT);
    if (o->strategies & ~allowed)
        return lr_fail(LR_ERR_USAGE, "--framework pytorch models column and checkpoint training only (--strategy column,checkpoint)");
    if (o->n_rows_sweep || o->n_batch_sweep || o->report || o->graph)
        return lr_fail(LR_ERR_USAGE, "--framework pytorch: --sweep, --report and --graph describe lrcnn plans; drop them");
    LR_TRY(cost_check_limits(net, o->cfg.batch, cost_dtype_bytes(o->cfg.dtype), 64));
    int units[4096];
    int n_units = pytorch_checkpoint_units(net, units, 4096);
    pt_row rows[2];
    memset(rows, 0, sizeof rows);
    int n = 0;
    if (o->strategies & (1u << STRAT_COLUMN))
        rows[n++] = (pt_row){.name = "column", .segments = 0};
    if (o->strategies & (1u << STRAT_CHECKPOINT)) {
        int seg = o->req.segments ? o->req.segments : (int)lround(sqrt((double)n_units));
        rows[n++] = (pt_row){.name = "checkpoint", .segments = seg < 2 ? 2 : seg};
    }
    lr_status s = LR_OK;
    for (int i = 0; i < n && s == LR_OK; i++)
        s = pt_run(net, o, &rows[i]);
    if (s == LR_OK && o->json) {
        json_object *root = pt_json(net, o, rows, n);
        fprintf(f, "%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(root);
    } else if (s == LR_OK) {
        pt_print(f, net, o, rows, n);
    }
    if (s == LR_OK)
        s = pt_write_schedules(net, o, rows, n);
    for (int i = 0; i < n; i++)
        sched_free(&rows[i].s);
    return s;
}
