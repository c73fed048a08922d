/* plot_timeline.c - the timeline plot: live bytes over one training step per strategy, x the
 * share of the strategy's FLOPs done, peaks and the start of backward marked (see plot.h).
 * Deliberately not here: the replay itself (sim/replay.c).
 */
#include "plot_frame.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "outfile.h"
#include "summary.h"

#define TL_BINS 1500

typedef struct {
    plan_strategy st;
    int64_t peak;
    double x_peak, x_bwd; /* x_bwd < 0: no backward */
    double label_y;       /* peak label height, in units of the highest peak */
} tl_series;

/* The first, lowest, highest and last point of each of TL_BINS bins of x: the curve keeps its
 * shape and its exact peak with at most 4 x TL_BINS points however long the schedule. */
typedef struct {
    long bin;
    int pick[4];
} tl_bin;

static double tl_x(const sim_point *p, int i, double per_flop)
{
    return (double)p[i].flops_cum * per_flop;
}

static void tl_flush(FILE *f, const tl_bin *b, const sim_point *p, double per_flop)
{
    int idx[4];
    memcpy(idx, b->pick, sizeof idx);
    for (int i = 1; i < 4; i++)
        for (int k = i; k > 0 && idx[k] < idx[k - 1]; k--) {
            int t = idx[k];
            idx[k] = idx[k - 1];
            idx[k - 1] = t;
        }
    for (int k = 0; k < 4; k++)
        if (k == 0 || idx[k] != idx[k - 1])
            fprintf(f, "%d,%.6f,%" PRId64 "\n", idx[k], tl_x(p, idx[k], per_flop), p[idx[k]].live);
}

static int tl_first(const sched_t *s)
{
    return s->step_begin > 0 ? s->step_begin - 1 : 0;
}

static void tl_write_points(FILE *f, const sched_t *s, const sim_point *p, double per_flop)
{
    fprintf(f, "step,progress,live_bytes\n");
    tl_bin b = {-1, {0, 0, 0, 0}};
    for (int i = tl_first(s); i < s->step_end; i++) {
        long bin = (long)(tl_x(p, i, per_flop) * TL_BINS);
        if (bin != b.bin) {
            if (b.bin >= 0)
                tl_flush(f, &b, p, per_flop);
            b.bin = bin;
            b.pick[0] = b.pick[1] = b.pick[2] = b.pick[3] = i;
            continue;
        }
        if (p[i].live < p[b.pick[1]].live)
            b.pick[1] = i;
        if (p[i].live > p[b.pick[2]].live)
            b.pick[2] = i;
        b.pick[3] = i;
    }
    if (b.bin >= 0)
        tl_flush(f, &b, p, per_flop);
}

static void tl_measure(const sched_t *s, const sim_point *p, double per_flop, tl_series *out)
{
    int first = tl_first(s), top = first, bwd = -1;
    for (int i = first; i < s->step_end; i++) {
        if (p[i].live > p[top].live)
            top = i;
        if (bwd < 0 && i >= s->step_begin && s->steps[i].pass == PASS_BWD)
            bwd = i;
    }
    out->peak = p[top].live;
    out->x_peak = tl_x(p, top, per_flop);
    out->x_bwd = bwd > 0 ? tl_x(p, bwd - 1, per_flop) : -1;
}

static lr_status tl_one(const analysis_t *a, const analysis_entry *e, const char *dir,
                        tl_series *out)
{
    plan_t *plan;
    sched_t s;
    LR_TRY(analysis_schedule(a, e, &plan, &s));
    double per_flop = 1.0 / (double)(e->exact.flops > 0 ? e->exact.flops : 1);
    char file[64];
    snprintf(file, sizeof file, "timeline-%s.csv", plan_strategy_name(e->strategy));
    sim_point *p = NULL;
    lr_outfile o = {0};
    lr_status r = sim_timeline(&s, ALLOC_EXACT, &p);
    if (r == LR_OK)
        r = plot_open_in(&o, dir, file);
    if (r == LR_OK) {
        out->st = e->strategy;
        tl_measure(&s, p, per_flop, out);
        LR_ASSERT(out->peak == e->exact.peak_bytes);
        tl_write_points(o.f, &s, p, per_flop);
        r = lr_outfile_commit(&o);
    }
    free(p);
    sched_free(&s);
    plan_free(plan);
    return r;
}

/* order[] = series indices by descending peak (stable). */
static void tl_by_peak(const tl_series *s, int n, int *order)
{
    for (int i = 0; i < n; i++)
        order[i] = i;
    for (int i = 1; i < n; i++)
        for (int k = i; k > 0 && s[order[k]].peak > s[order[k - 1]].peak; k--) {
            int t = order[k];
            order[k] = order[k - 1];
            order[k - 1] = t;
        }
}

/* Peak labels sit just above their marker; one that would overlap a label already placed
 * moves up. x in units of the x range, y in units of the highest peak. */
static void tl_place_labels(tl_series *s, int n, int64_t top)
{
    int order[STRAT_COUNT];
    tl_by_peak(s, n, order);
    for (int i = 0; i < n; i++) {
        tl_series *c = &s[order[i]];
        c->label_y = (double)c->peak / (double)top + 0.035;
        for (bool moved = true; moved;) {
            moved = false;
            for (int k = 0; k < i; k++) {
                const tl_series *q = &s[order[k]];
                /* moving only ever raises c, so this ends */
                if (fabs(q->x_peak - c->x_peak) < 0.1 && fabs(q->label_y - c->label_y) < 0.045 - 1e-9) {
                    c->label_y = q->label_y + 0.045;
                    moved = true;
                }
            }
        }
    }
}

static lr_status tl_peaks_csv(const char *dir, const tl_series *s, int n, int64_t top)
{
    lr_outfile o;
    LR_TRY(plot_open_in(&o, dir, "timeline-peaks.csv"));
    fprintf(o.f, "strategy,progress,peak_bytes,colour,label_bytes,label\n");
    for (int i = 0; i < n; i++) {
        char b[32];
        summary_bytes(s[i].peak, b, sizeof b); /* as in the strategy table */
        fprintf(o.f, "%s,%.6f,%" PRId64 ",%ld,%.0f,%s\n", plan_strategy_name(s[i].st), s[i].x_peak,
                s[i].peak, strtol(plot_strategy_colour[s[i].st] + 1, NULL, 16),
                s[i].label_y * (double)top, b);
    }
    return lr_outfile_commit(&o);
}

static void tl_script(FILE *f, const analysis_t *a, const tl_series *s, int n, int64_t top,
                      plot_unit u)
{
    int order[STRAT_COUNT]; /* highest peak first, so the lower curves are drawn on top */
    tl_by_peak(s, n, order);
    plot_gp_begin(f, "timeline", u, 1200, 720);
    plot_gp_title(f, a, "live memory over one training step (exact model)");
    fprintf(f, "set xlabel \"progress through the training step (share of the strategy's FLOPs done);"
               "  dashed lines: the backward pass starts\"\n"
               "set ylabel sprintf(\"live memory (%%s)\", unit_name)\n");
    double y_top = 0;
    for (int i = 0; i < n; i++)
        y_top = fmax(y_top, s[i].label_y);
    fprintf(f, "set xrange [0:1]\nset xtics (\"0\" 0, \"25%%%%\" 0.25, \"50%%%%\" 0.5, \"75%%%%\" 0.75, \"100%%%%\" 1)\n"
               "set yrange [0:%.6g/unit]\n", (y_top + 0.05) * (double)top);
    fprintf(f, "set key below center horizontal maxcols 3 Left reverse samplen 2 width 2 spacing 1.3\n"
               "set style textbox opaque noborder margins 1,1\n");
    for (int i = 0; i < n; i++)
        if (s[i].x_bwd >= 0)
            fprintf(f, "set arrow from %.6f, graph 0 to %.6f, graph 1 back nohead dt 2 lw 1 lc rgb \"%s\"\n",
                    s[i].x_bwd, s[i].x_bwd, plot_strategy_colour[s[i].st]);
    const plan_cost *c = &a->e[0].choice.cost;
    int64_t base = c->static_bytes + c->input_bytes + c->workspace_bytes;
    char b[32];
    fprintf(f, "base = %" PRId64 ".0\n"
               "set arrow from graph 0, first base/unit to graph 1, first base/unit back nohead dt 3 lc rgb \"#808080\"\n"
               "set label \"weights, gradients, optimizer state, input: %s\" at graph 0.01, first base/unit "
               "offset 0,-0.9 tc rgb \"#606060\" boxed front\n",
            base, summary_bytes(base, b, sizeof b));
    fprintf(f, "plot \\\n");
    for (int k = 0; k < n; k++) {
        int i = order[k];
        const analysis_entry *e = &a->e[i];
        const char *name = plan_strategy_name(s[i].st);
        fprintf(f, "  \"timeline-%s.csv\" skip 1 using 2:($3/unit) with lines lw 2 lc rgb \"%s\" "
                   "title \"%s  peak %s, %.2fx compute\", \\\n",
                name, plot_strategy_colour[s[i].st], name, summary_bytes(s[i].peak, b, sizeof b),
                (double)e->choice.cost.flops / (double)(a->column_flops > 0 ? a->column_flops : 1));
    }
    fprintf(f, "  \"timeline-peaks.csv\" skip 1 using 2:($3/unit):4 with points pt 7 ps 1.2 lc rgb variable notitle, \\\n"
               "  \"\" skip 1 using 2:($5/unit):6:4 with labels boxed tc rgb variable notitle\n");
    plot_gp_end(f, "timeline", 1200, 720);
}

lr_status plot_timeline(const analysis_t *a, const char *dir, plot_made *made)
{
    memset(made, 0, sizeof *made);
    snprintf(made->name, sizeof made->name, "timeline");
    snprintf(made->heading, sizeof made->heading, "Memory over one training step");
    LR_ASSERT(a->n > 0);
    tl_series s[STRAT_COUNT] = {{0}};
    int64_t top = 1;
    for (int i = 0; i < a->n; i++) {
        LR_TRY(tl_one(a, &a->e[i], dir, &s[i]));
        top = s[i].peak > top ? s[i].peak : top;
    }
    tl_place_labels(s, a->n, top);
    plot_unit u = plot_unit_for(top);
    LR_TRY(tl_peaks_csv(dir, s, a->n, top));
    lr_outfile o;
    LR_TRY(plot_open_in(&o, dir, "timeline.gp"));
    tl_script(o.f, a, s, a->n, top, u);
    LR_TRY(lr_outfile_commit(&o));
    plot_note(made, "Live bytes after every schedule step (exact model). The x axis is progress "
                   "through the step, as the share of the strategy's own FLOPs done, so the "
                   "curves line up although recomputing strategies take longer (the key gives "
                   "each one's compute relative to column). Dots mark the peaks; dashed lines "
                   "mark where the backward pass starts.");
    return LR_OK;
}
