/* plot.c - gnuplot scripts and their data for a report (see plot.h).
 *
 * Every script has the same frame (gp_begin/gp_end): the unit, a PNG terminal (pngcairo when
 * the gnuplot that runs it has one, else png), the plot, then the SVG terminal and `replot`.
 * A strategy keeps its colour in every plot. The sweeps (rows, batch) evaluate the closed form
 * of many plans; they run in parallel since the planner keeps no shared state.
 *
 * Deliberately not here: where the files go and report.md (report.c).
 */
#include "plot.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "outfile.h"
#include "summary.h"

#define KIB ((int64_t)1 << 10)
#define MIB ((int64_t)1 << 20)
#define GIB ((int64_t)1 << 30)

/* the two baselines in greys, the row strategies in distinct hues */
static const char *const strategy_colour[STRAT_COUNT] = {
    "#303030", "#9a9a9a", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"};

/* ------------------------------------------------------------------ shared frame */

typedef struct {
    double bytes;
    const char *name;
} plot_unit;

static plot_unit unit_for(int64_t max_bytes)
{
    if (max_bytes >= GIB)
        return (plot_unit){(double)GIB, "GiB"};
    if (max_bytes >= MIB)
        return (plot_unit){(double)MIB, "MiB"};
    return (plot_unit){(double)KIB, "KiB"};
}

static void note_add(plot_made *m, const char *fmt, ...) LR_PRINTF(2, 3);
static void note_add(plot_made *m, const char *fmt, ...)
{
    size_t at = strlen(m->note);
    if (at + 1 >= sizeof m->note)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->note + at, sizeof m->note - at, fmt, ap);
    va_end(ap);
}

/* "vgg16, batch 64, fp32, momentum" */
static void config_text(const analysis_t *a, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s, batch %d, %s, %s", a->net->name, a->cfg.batch,
             cost_dtype_name(a->cfg.dtype), cost_optim_name(a->cfg.optim));
}

/* A double-quoted gnuplot string. */
static void gp_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void gp_begin(FILE *f, const char *name, plot_unit u, int width, int height)
{
    fprintf(f,
            "# %s.gp - written by lrcnn-sim; remakes %s.png and %s.svg.\n"
            "# Run it in this directory (the data are read by relative path): gnuplot %s.gp\n"
            "# Sizes in the data files are bytes; `unit` converts them for the axes.\n\n",
            name, name, name, name);
    fprintf(f, "unit = %.1f\nunit_name = \"%s\"\n\n", u.bytes, u.name);
    fprintf(f,
            "if (strstrt(GPVAL_TERMINALS, \"pngcairo\") > 0) {\n"
            "    set terminal pngcairo size %d,%d font \"sans,11\" noenhanced\n"
            "} else {\n"
            "    set terminal png size %d,%d font \"sans,11\" noenhanced\n"
            "}\n"
            "set output \"%s.png\"\n"
            "set datafile separator comma\n"
            "set border 3\nset tics nomirror\nset grid ytics lc rgb \"#e4e4e4\"\n",
            width, height, width, height, name);
}

static void gp_end(FILE *f, const char *name, int width, int height)
{
    fprintf(f,
            "\nset terminal svg size %d,%d dynamic font \"sans,11\" noenhanced background \"#ffffff\"\n"
            "set output \"%s.svg\"\nreplot\nunset output\n",
            width, height, name);
}

static void gp_title(FILE *f, const analysis_t *a, const char *what)
{
    char cfg[256], title[512];
    config_text(a, cfg, sizeof cfg);
    snprintf(title, sizeof title, "%s: %s", cfg, what);
    fputs("set title ", f);
    gp_string(f, title);
    fputc('\n', f);
}

static lr_status open_in(lr_outfile *o, const char *dir, const char *file)
{
    char path[sizeof o->path];
    int n = snprintf(path, sizeof path, "%s/%s", dir, file);
    if (n < 0 || (size_t)n >= sizeof path)
        return lr_fail(LR_ERR_IO, "%s/%s: path too long", dir, file);
    return lr_outfile_open(o, path);
}

/* Layer names go into CSV cells unquoted. */
static void csv_name(FILE *f, const char *s)
{
    for (; *s; s++)
        fputc(*s == ',' || *s == '"' || *s == '\n' ? '_' : *s, f);
}

/* ------------------------------------------------------------------ sweeps */

/* One closed-form evaluation of a sweep. */
typedef struct {
    plan_strategy st;
    int batch, rows;  /* rows 0: the request's (chosen when the user gave none) */
    int64_t peak;     /* -1: not plannable at this point (batch or N out of range) */
    lr_status status; /* any other failure, reported once the sweep is done */
    char err[256];
} sweep_pt;

static void sweep_one(const analysis_t *a, sweep_pt *p)
{
    plan_config cfg = a->cfg;
    cfg.batch = p->batch;
    plan_request req = a->req;
    req.strategy = p->st;
    req.rows = p->st >= STRAT_ROW ? p->rows : 0;
    plan_choice c;
    lr_status s = cost_check_limits(a->net, cfg.batch, cost_dtype_bytes(cfg.dtype), 4096);
    if (s == LR_OK)
        s = strategy_choose(a->net, &cfg, &req, &c);
    p->peak = s == LR_OK ? c.cost.peak_bytes : -1;
    p->status = s == LR_ERR_INPUT ? LR_OK : s;
    if (p->status != LR_OK)
        snprintf(p->err, sizeof p->err, "%s", lr_last_error());
}

static lr_status sweep_run(const analysis_t *a, sweep_pt *pts, int n)
{
#pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < n; i++)
        sweep_one(a, &pts[i]);
    for (int i = 0; i < n; i++)
        if (pts[i].status != LR_OK)
            return lr_fail(pts[i].status, "%s", pts[i].err);
    return LR_OK;
}

/* ------------------------------------------------------------------ timeline */

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
        r = open_in(&o, dir, file);
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
    LR_TRY(open_in(&o, dir, "timeline-peaks.csv"));
    fprintf(o.f, "strategy,progress,peak_bytes,colour,label_bytes,label\n");
    for (int i = 0; i < n; i++) {
        char b[32];
        summary_bytes(s[i].peak, b, sizeof b); /* as in the strategy table */
        fprintf(o.f, "%s,%.6f,%" PRId64 ",%ld,%.0f,%s\n", plan_strategy_name(s[i].st), s[i].x_peak,
                s[i].peak, strtol(strategy_colour[s[i].st] + 1, NULL, 16),
                s[i].label_y * (double)top, b);
    }
    return lr_outfile_commit(&o);
}

static void tl_script(FILE *f, const analysis_t *a, const tl_series *s, int n, int64_t top,
                      plot_unit u)
{
    int order[STRAT_COUNT]; /* highest peak first, so the lower curves are drawn on top */
    tl_by_peak(s, n, order);
    gp_begin(f, "timeline", u, 1200, 720);
    gp_title(f, a, "live memory over one training step (exact model)");
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
                    s[i].x_bwd, s[i].x_bwd, strategy_colour[s[i].st]);
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
                name, strategy_colour[s[i].st], name, summary_bytes(s[i].peak, b, sizeof b),
                (double)e->choice.cost.flops / (double)(a->column_flops > 0 ? a->column_flops : 1));
    }
    fprintf(f, "  \"timeline-peaks.csv\" skip 1 using 2:($3/unit):4 with points pt 7 ps 1.2 lc rgb variable notitle, \\\n"
               "  \"\" skip 1 using 2:($5/unit):6:4 with labels boxed tc rgb variable notitle\n");
    gp_end(f, "timeline", 1200, 720);
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
    plot_unit u = unit_for(top);
    LR_TRY(tl_peaks_csv(dir, s, a->n, top));
    lr_outfile o;
    LR_TRY(open_in(&o, dir, "timeline.gp"));
    tl_script(o.f, a, s, a->n, top, u);
    LR_TRY(lr_outfile_commit(&o));
    note_add(made, "Live bytes after every schedule step (exact model). The x axis is progress "
                   "through the step, as the share of the strategy's own FLOPs done, so the "
                   "curves line up although recomputing strategies take longer (the key gives "
                   "each one's compute relative to column). Dots mark the peaks; dashed lines "
                   "mark where the backward pass starts.");
    return LR_OK;
}

/* ------------------------------------------------------------------ peak vs rows */

#define ROWS_LO 2
#define ROWS_HI 32
#define ROWS_N (ROWS_HI - ROWS_LO + 1)

/* The selected row strategies; all five when none is selected. */
static int row_strategies(const analysis_t *a, plan_strategy *out)
{
    int n = 0;
    for (int i = 0; i < a->n; i++)
        if (a->e[i].strategy >= STRAT_ROW)
            out[n++] = a->e[i].strategy;
    if (n == 0)
        for (int st = STRAT_ROW; st < STRAT_COUNT; st++)
            out[n++] = (plan_strategy)st;
    return n;
}

/* Index of the lowest peak in pts[0..n) (the first on ties), -1 when none was plannable. */
static int lowest(const sweep_pt *pts, int n)
{
    int best = -1;
    for (int i = 0; i < n; i++)
        if (pts[i].peak >= 0 && (best < 0 || pts[i].peak < pts[best].peak))
            best = i;
    return best;
}

static lr_status rows_csv(const char *dir, const plan_strategy *st, int ns, const sweep_pt *pts)
{
    lr_outfile o;
    LR_TRY(open_in(&o, dir, "rows.csv"));
    fprintf(o.f, "rows");
    for (int k = 0; k < ns; k++)
        fprintf(o.f, ",%s", plan_strategy_name(st[k]));
    fputc('\n', o.f);
    for (int r = 0; r < ROWS_N; r++) {
        fprintf(o.f, "%d", ROWS_LO + r);
        for (int k = 0; k < ns; k++) {
            int64_t v = pts[k * ROWS_N + r].peak;
            if (v >= 0)
                fprintf(o.f, ",%" PRId64, v);
            else
                fputc(',', o.f);
        }
        fputc('\n', o.f);
    }
    return lr_outfile_commit(&o);
}

static void rows_script(FILE *f, const analysis_t *a, const plan_strategy *st, int ns,
                        const sweep_pt *pts, plot_unit u)
{
    gp_begin(f, "rows", u, 1200, 720);
    gp_title(f, a, "peak memory vs number of row partitions (closed form)");
    fprintf(f, "set xlabel \"row partitions N   (hybrids: N of the first stage, deeper stages scaled down)\"\n"
               "set ylabel sprintf(\"peak memory (%%s)\", unit_name)\n"
               "set xrange [%d:%d]\nset xtics 2,2,%d\nset yrange [0:*]\n"
               "set key below center horizontal maxcols 3 Left reverse samplen 2 width 2 spacing 1.3\n"
               "column = %" PRId64 ".0\n",
            ROWS_LO - 1, ROWS_HI + 1, ROWS_HI, a->column_peak);
    char b[32];
    fprintf(f, "plot \\\n");
    for (int k = 0; k < ns; k++) {
        int lo = lowest(&pts[k * ROWS_N], ROWS_N);
        char title[128];
        if (lo >= 0)
            snprintf(title, sizeof title, "%s  (lowest %s at N = %d)", plan_strategy_name(st[k]),
                     summary_bytes(pts[k * ROWS_N + lo].peak, b, sizeof b), ROWS_LO + lo);
        else
            snprintf(title, sizeof title, "%s", plan_strategy_name(st[k]));
        fprintf(f, "  \"rows.csv\" skip 1 using 1:($%d/unit) with linespoints lw 2 pt 7 ps 0.7 lc rgb \"%s\" title ",
                k + 2, strategy_colour[st[k]]);
        gp_string(f, title);
        fprintf(f, ", \\\n");
    }
    fprintf(f, "  column/unit with lines dt 2 lw 2 lc rgb \"%s\" title \"column  %s\"\n",
            strategy_colour[STRAT_COLUMN], summary_bytes(a->column_peak, b, sizeof b));
    gp_end(f, "rows", 1200, 720);
}

lr_status plot_rows(const analysis_t *a, const char *dir, plot_made *made)
{
    memset(made, 0, sizeof *made);
    snprintf(made->name, sizeof made->name, "rows");
    snprintf(made->heading, sizeof made->heading, "Peak memory vs number of rows");
    plan_strategy st[STRAT_COUNT];
    int ns = row_strategies(a, st);
    sweep_pt *pts = calloc((size_t)ns * ROWS_N, sizeof *pts);
    if (!pts)
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    for (int k = 0; k < ns; k++)
        for (int r = 0; r < ROWS_N; r++)
            pts[k * ROWS_N + r] = (sweep_pt){.st = st[k], .batch = a->cfg.batch, .rows = ROWS_LO + r};
    lr_status s = sweep_run(a, pts, ns * ROWS_N);
    if (s == LR_OK)
        s = rows_csv(dir, st, ns, pts);
    lr_outfile o = {0};
    if (s == LR_OK)
        s = open_in(&o, dir, "rows.gp");
    if (s == LR_OK) {
        plot_unit u = unit_for(a->column_peak);
        rows_script(o.f, a, st, ns, pts, u);
        s = lr_outfile_commit(&o);
    }
    char b[32];
    note_add(made, "Closed-form peak for N = %d..%d row partitions; the dashed line is column "
                   "training (%s). Lowest peak per strategy:", ROWS_LO, ROWS_HI,
             summary_bytes(a->column_peak, b, sizeof b));
    for (int k = 0; k < ns && s == LR_OK; k++) {
        int lo = lowest(&pts[k * ROWS_N], ROWS_N);
        if (lo >= 0)
            note_add(made, "%s %s %s at N = %d (%.1f%% of column)", k ? ";" : "",
                     plan_strategy_name(st[k]), summary_bytes(pts[k * ROWS_N + lo].peak, b, sizeof b),
                     ROWS_LO + lo, 100.0 * (double)pts[k * ROWS_N + lo].peak / (double)a->column_peak);
    }
    note_add(made, ".");
    free(pts);
    return s;
}

/* ------------------------------------------------------------------ peak vs batch */

#define BATCH_MAX_POINTS 40

/* Powers of two up to max(2 x batch, 256), and the configured batch. */
static int batch_list(int batch, int *out)
{
    int64_t top = 2 * (int64_t)batch > 256 ? 2 * (int64_t)batch : 256;
    int n = 0;
    for (int64_t b = 1; b <= top && b <= (1 << 30); b *= 2) {
        if (batch < b && (n == 0 || out[n - 1] < batch))
            out[n++] = batch;
        if (b != batch)
            out[n++] = (int)b;
    }
    if (out[n - 1] < batch)
        out[n++] = batch;
    return n;
}

typedef struct {
    int64_t gpu_bytes;
    int fits;    /* largest batch that fits, 0 when none */
    bool beyond; /* every batch tried fits */
    lr_status status;
    char err[256];
} batch_fit;

/* Does batch b fit? -1 on a failure other than "not plannable" (recorded in fit). */
static int batch_fits_at(const analysis_t *a, plan_strategy st, int b, batch_fit *fit)
{
    sweep_pt p = {.st = st, .batch = b, .rows = a->req.rows};
    sweep_one(a, &p);
    if (p.status != LR_OK) {
        fit->status = p.status;
        snprintf(fit->err, sizeof fit->err, "%s", p.err);
        return -1;
    }
    return p.peak >= 0 && p.peak <= fit->gpu_bytes;
}

/* Largest batch whose peak fits: the last sampled batch that fits; past the samples, doubling
 * up to BATCH_FIT_MAX; then bisection up to the first that does not (the peak grows with the
 * batch). */
#define BATCH_FIT_MAX (1 << 24)

static void batch_fit_one(const analysis_t *a, plan_strategy st, const int *batches,
                          const sweep_pt *pts, int nb, batch_fit *fit)
{
    int lo = -1;
    while (lo + 1 < nb && pts[lo + 1].peak >= 0 && pts[lo + 1].peak <= fit->gpu_bytes)
        lo++;
    fit->fits = 0;
    if (lo < 0)
        return;
    int good = batches[lo], bad = lo + 1 < nb ? batches[lo + 1] : 0;
    while (bad == 0 && good <= BATCH_FIT_MAX / 2) {
        int r = batch_fits_at(a, st, 2 * good, fit);
        if (r < 0)
            return;
        if (r)
            good *= 2;
        else
            bad = 2 * good;
    }
    fit->beyond = bad == 0;
    while (bad - good > 1) {
        int mid = good + (bad - good) / 2;
        int r = batch_fits_at(a, st, mid, fit);
        if (r < 0)
            return;
        *(r ? &good : &bad) = mid;
    }
    fit->fits = good;
}

static lr_status batch_fits(const analysis_t *a, const int *batches, int nb, const sweep_pt *pts,
                            batch_fit *fits)
{
#pragma omp parallel for schedule(dynamic)
    for (int k = 0; k < a->n; k++)
        batch_fit_one(a, a->e[k].strategy, batches, &pts[k * nb], nb, &fits[k]);
    for (int k = 0; k < a->n; k++)
        if (fits[k].status != LR_OK)
            return lr_fail(fits[k].status, "%s", fits[k].err);
    return LR_OK;
}

static lr_status batch_csv(const analysis_t *a, const char *dir, const int *batches, int nb,
                           const sweep_pt *pts)
{
    lr_outfile o;
    LR_TRY(open_in(&o, dir, "batch.csv"));
    fprintf(o.f, "batch");
    for (int k = 0; k < a->n; k++)
        fprintf(o.f, ",%s", plan_strategy_name(a->e[k].strategy));
    fputc('\n', o.f);
    for (int i = 0; i < nb; i++) {
        fprintf(o.f, "%d", batches[i]);
        for (int k = 0; k < a->n; k++) {
            if (pts[k * nb + i].peak >= 0)
                fprintf(o.f, ",%" PRId64, pts[k * nb + i].peak);
            else
                fputc(',', o.f);
        }
        fputc('\n', o.f);
    }
    return lr_outfile_commit(&o);
}

static void batch_xtics(FILE *f, const int *batches, int nb)
{
    fprintf(f, "set xtics (");
    for (int i = 0, first = 1; i < nb; i++) {
        if (batches[i] & (batches[i] - 1))
            continue; /* the configured batch has its own line */
        fprintf(f, "%s\"%d\" %d", first ? "" : ", ", batches[i], batches[i]);
        first = 0;
    }
    fprintf(f, ")\n");
}

static void batch_script(FILE *f, const analysis_t *a, const int *batches, int nb,
                         const batch_fit *fits, int64_t gpu, plot_unit u)
{
    gp_begin(f, "batch", u, 1200, 720);
    gp_title(f, a, "peak memory vs batch size (closed form)");
    fprintf(f, "set xlabel \"batch size (images per step, log scale)\"\n"
               "set ylabel sprintf(\"peak memory (%%s)\", unit_name)\n"
               "set logscale x 2\nset xrange [%g:%g]\nset yrange [0:*]\n",
            batches[0] / 1.2, batches[nb - 1] * 1.2);
    batch_xtics(f, batches, nb);
    fprintf(f, "set key below center horizontal maxcols 3 Left reverse samplen 2 width 2 spacing 1.3\n"
               "set arrow from %d, graph 0 to %d, graph 1 back nohead dt 3 lc rgb \"#808080\"\n"
               "set label \"batch %d (this run)\" at %d, graph 0.97 offset 0.6,0 tc rgb \"#606060\"\n",
            a->cfg.batch, a->cfg.batch, a->cfg.batch, a->cfg.batch);
    char b[32];
    fprintf(f, "plot \\\n");
    for (int k = 0; k < a->n; k++) {
        plan_strategy st = a->e[k].strategy;
        char title[128];
        if (gpu > 0 && fits[k].fits == 0)
            snprintf(title, sizeof title, "%s  (no batch fits)", plan_strategy_name(st));
        else if (gpu > 0)
            snprintf(title, sizeof title, "%s  (largest batch that fits: %s%d)", plan_strategy_name(st),
                     fits[k].beyond ? ">= " : "", fits[k].fits);
        else
            snprintf(title, sizeof title, "%s", plan_strategy_name(st));
        fprintf(f, "  \"batch.csv\" skip 1 using 1:($%d/unit) with linespoints lw 2 pt 7 ps 0.7 lc rgb \"%s\" title ",
                k + 2, strategy_colour[st]);
        gp_string(f, title);
        fprintf(f, "%s\n", gpu > 0 || k + 1 < a->n ? ", \\" : "");
    }
    if (gpu > 0)
        fprintf(f, "  %" PRId64 ".0/unit with lines dt 4 lw 2 lc rgb \"#b00000\" title \"GPU memory  %s\"\n",
                gpu, summary_bytes(gpu, b, sizeof b));
    gp_end(f, "batch", 1200, 720);
}

static void batch_note(plot_made *made, const analysis_t *a, const batch_fit *fits, int64_t gpu)
{
    char b[32];
    note_add(made, "Closed-form peak per strategy for batch sizes up to the larger of twice this "
                   "run's batch and 256; rows as planned for each batch (--rows when given, else "
                   "the lowest peak).");
    if (gpu <= 0) {
        note_add(made, " Give --gpu-mem SIZE to draw a device's memory and list the largest batch that fits.");
        return;
    }
    note_add(made, " Largest batch within %s (peak <= GPU memory; no allowance for the CUDA "
                   "context or fragmentation):", summary_bytes(gpu, b, sizeof b));
    for (int k = 0; k < a->n; k++)
        note_add(made, "%s %s %s%d", k ? "," : "", plan_strategy_name(a->e[k].strategy),
                 fits[k].beyond ? ">= " : "", fits[k].fits);
    note_add(made, ".");
}

lr_status plot_batch(const analysis_t *a, int64_t gpu_mem_bytes, const char *dir,
                     plot_made *made)
{
    memset(made, 0, sizeof *made);
    snprintf(made->name, sizeof made->name, "batch");
    snprintf(made->heading, sizeof made->heading, "Peak memory vs batch size");
    int batches[BATCH_MAX_POINTS];
    int nb = batch_list(a->cfg.batch, batches);
    sweep_pt *pts = calloc((size_t)a->n * nb, sizeof *pts);
    batch_fit fits[STRAT_COUNT];
    if (!pts)
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    for (int k = 0; k < a->n; k++) {
        fits[k] = (batch_fit){.gpu_bytes = gpu_mem_bytes};
        for (int i = 0; i < nb; i++)
            pts[k * nb + i] = (sweep_pt){.st = a->e[k].strategy, .batch = batches[i], .rows = a->req.rows};
    }
    lr_status s = sweep_run(a, pts, a->n * nb);
    if (s == LR_OK && gpu_mem_bytes > 0)
        s = batch_fits(a, batches, nb, pts, fits);
    if (s == LR_OK)
        s = batch_csv(a, dir, batches, nb, pts);
    lr_outfile o = {0};
    if (s == LR_OK)
        s = open_in(&o, dir, "batch.gp");
    if (s == LR_OK) {
        int64_t top = gpu_mem_bytes;
        for (int i = 0; i < a->n * nb; i++)
            top = pts[i].peak > top ? pts[i].peak : top;
        batch_script(o.f, a, batches, nb, fits, gpu_mem_bytes, unit_for(top));
        s = lr_outfile_commit(&o);
    }
    if (s == LR_OK)
        batch_note(made, a, fits, gpu_mem_bytes);
    free(pts);
    return s;
}

/* ------------------------------------------------------------------ resident at the column peak */

int64_t plot_resident_at(const sched_t *s, int at, int n_nodes, plot_resident *by_node)
{
    memset(by_node, 0, (size_t)(n_nodes + 1) * sizeof *by_node);
    bool *live = calloc((size_t)(s->n_tensors > 0 ? s->n_tensors : 1), sizeof *live);
    LR_ASSERT(live != NULL);
    for (int i = 0; i <= at && i < s->n_steps; i++) {
        const sched_step *st = &s->steps[i];
        if (st->op == STEP_ALLOC || st->op == STEP_FREE)
            live[st->t] = st->op == STEP_ALLOC;
    }
    int64_t total = 0;
    for (int t = 0; t < s->n_tensors; t++) {
        if (!live[t])
            continue;
        const sched_tensor *x = &s->tensors[t];
        int slot = x->node >= 0 && x->node < n_nodes ? x->node : x->cls == TC_INPUT ? 0 : n_nodes;
        plot_resident *r = &by_node[slot];
        if (x->cls == TC_WEIGHT || x->cls == TC_WEIGHT_GRAD || x->cls == TC_OPT_STATE)
            r->weights += x->bytes;
        else if (x->cls == TC_ACT_GRAD)
            r->gradients += x->bytes;
        else
            r->activations += x->bytes;
        total += x->bytes;
    }
    free(live);
    return total;
}

#define LAYER_MAX_BARS 48

typedef struct {
    char name[2 * NET_NAME_MAX + 4];
    plot_resident r;
} layer_bar;

static int64_t resident_sum(const plot_resident *r)
{
    return r->weights + r->activations + r->gradients;
}

static void bar_add(layer_bar *b, const plot_resident *r)
{
    b->r.weights += r->weights;
    b->r.activations += r->activations;
    b->r.gradients += r->gradients;
}

/* A group's name: the common prefix of its first and last layer names, cut at a separator
 * ("layer1_0_conv1".."layer1_0_relu" -> "layer1_0"), else "first..last". */
static void group_name(const char *first, const char *last, char *out, size_t cap)
{
    if (strcmp(first, last) == 0) {
        snprintf(out, cap, "%s", first);
        return;
    }
    size_t n = 0;
    while (first[n] && first[n] == last[n])
        n++;
    while (n > 0 && !strchr("_.-/", first[n]))
        n--;
    if (n >= 2)
        snprintf(out, cap, "%.*s", (int)n, first);
    else
        snprintf(out, cap, "%s..%s", first, last);
}

/* A block named like the previous one plus a suffix ("layer1_0_relu" after "layer1_0"): the
 * end of the same residual block, behind a cut of its own. */
static bool continues(const layer_bar *prev, const layer_bar *b)
{
    size_t n = strlen(prev->name);
    return strncmp(b->name, prev->name, n) == 0 && b->name[n] && strchr("_.-/", b->name[n]);
}

/* One bar per layer with resident bytes; when that is more than LAYER_MAX_BARS, one bar per
 * block between cuts (a ResNet block, a VGG layer). The workspace gets its own bar. */
static int layer_bars(const net_t *net, const plot_resident *by, layer_bar *bars)
{
    int n_nodes = net->n_nodes, nonzero = 0, n = 0;
    for (int l = 0; l < n_nodes; l++)
        nonzero += resident_sum(&by[l]) > 0;
    bool grouped = nonzero > LAYER_MAX_BARS;
    bool *cut = malloc(n_nodes > 0 ? (size_t)n_nodes : 1);
    LR_ASSERT(cut != NULL);
    rowdep_cuts(net, cut);
    for (int l = 0, start = 0; l < n_nodes; l++) {
        if (grouped && !cut[l] && l + 1 < n_nodes)
            continue;
        layer_bar b = {{0}, {0, 0, 0}};
        for (int k = start; k <= l; k++)
            bar_add(&b, &by[k]);
        group_name(net->nodes[start].name, net->nodes[l].name, b.name, sizeof b.name);
        start = l + 1;
        if (grouped && n > 0 && continues(&bars[n - 1], &b))
            bar_add(&bars[n - 1], &b.r);
        else
            bars[n++] = b;
    }
    free(cut);
    int kept = 0;
    for (int i = 0; i < n; i++)
        if (resident_sum(&bars[i].r) > 0)
            bars[kept++] = bars[i];
    if (resident_sum(&by[n_nodes]) > 0)
        bars[kept++] = (layer_bar){"workspace", by[n_nodes]};
    return kept;
}

static lr_status layers_csv(const char *dir, const layer_bar *bars, int n)
{
    lr_outfile o;
    LR_TRY(open_in(&o, dir, "layers.csv"));
    fprintf(o.f, "layer,weights_bytes,activations_bytes,gradients_bytes\n");
    for (int i = 0; i < n; i++) {
        csv_name(o.f, bars[i].name);
        fprintf(o.f, ",%" PRId64 ",%" PRId64 ",%" PRId64 "\n", bars[i].r.weights,
                bars[i].r.activations, bars[i].r.gradients);
    }
    return lr_outfile_commit(&o);
}

static void layers_script(FILE *f, const analysis_t *a, int n_bars, bool grouped,
                          const char *where, int64_t peak)
{
    plot_unit u = unit_for(peak);
    int width = n_bars * 26 + 260 > 1200 ? n_bars * 26 + 260 : 1200;
    gp_begin(f, "layers", u, width, 700);
    char what[256], b[32];
    snprintf(what, sizeof what, "resident per %s at the column peak (%s, %s)",
             grouped ? "block" : "layer", summary_bytes(peak, b, sizeof b), where);
    gp_title(f, a, what);
    fprintf(f, "set ylabel sprintf(\"resident memory (%%s)\", unit_name)\n"
               "set style data histograms\nset style histogram rowstacked\n"
               "set style fill solid 0.9 border rgb \"#ffffff\"\nset boxwidth 0.75\n"
               "set xtics rotate by 60 right scale 0\nset yrange [0:*]\nset xrange [-0.75:%d.75]\n"
               "set key below center horizontal Left reverse samplen 2 width 2\n"
               "plot \"layers.csv\" skip 1 using ($2/unit):xtic(1) lc rgb \"#4c72b0\" "
               "title \"weights, their gradients and optimizer state\", \\\n"
               "  \"\" skip 1 using ($3/unit) lc rgb \"#dd8452\" title \"activations (saved for backward, input batch)\", \\\n"
               "  \"\" skip 1 using ($4/unit) lc rgb \"#55a868\" title \"gradients of activations\"\n",
            n_bars - 1);
    gp_end(f, "layers", width, 700);
}

static void layers_note(plot_made *made, const layer_bar *bars, int n, const char *where,
                        int64_t peak)
{
    plot_resident sum = {0, 0, 0};
    for (int i = 0; i < n; i++) {
        sum.weights += bars[i].r.weights;
        sum.activations += bars[i].r.activations;
        sum.gradients += bars[i].r.gradients;
    }
    char b0[32], b1[32], b2[32], b3[32];
    note_add(made, "What is resident at the column peak (%s, %s): weights with their gradients and "
                   "optimizer state %s, activations %s, gradients %s. Largest:",
             where, summary_bytes(peak, b0, sizeof b0), summary_bytes(sum.weights, b1, sizeof b1),
             summary_bytes(sum.activations, b2, sizeof b2), summary_bytes(sum.gradients, b3, sizeof b3));
    int picked[3];
    for (int k = 0; k < 3 && k < n; k++) {
        int best = -1;
        for (int i = 0; i < n; i++) {
            bool seen = false;
            for (int q = 0; q < k; q++)
                seen |= picked[q] == i;
            if (!seen && (best < 0 || resident_sum(&bars[i].r) > resident_sum(&bars[best].r)))
                best = i;
        }
        picked[k] = best;
        note_add(made, "%s %s %s", k ? "," : "", bars[best].name,
                 summary_bytes(resident_sum(&bars[best].r), b0, sizeof b0));
    }
    note_add(made, ".");
}

/* The column plan's schedule, its exact replay and where its peak is. */
static lr_status column_peak(const analysis_t *a, sched_t *s, sim_result *r, char *where,
                             size_t cap)
{
    analysis_entry col;
    memset(&col, 0, sizeof col);
    col.strategy = STRAT_COLUMN;
    plan_request req = a->req;
    req.strategy = STRAT_COLUMN;
    req.rows = 0;
    LR_TRY(strategy_choose(a->net, &a->cfg, &req, &col.choice));
    plan_t *plan;
    LR_TRY(analysis_schedule(a, &col, &plan, s));
    plan_free(plan);
    const plan_cost *c = &col.choice.cost;
    summary_where(a->net, c->peak_pass, c->peak_node, c->peak_part, where, cap);
    return sim_replay(s, ALLOC_EXACT, r);
}

static lr_status layers_write(const analysis_t *a, const char *dir, const sched_t *s,
                              const sim_result *r, const char *where, plot_made *made)
{
    int n_nodes = a->net->n_nodes;
    plot_resident *by = calloc((size_t)n_nodes + 1, sizeof *by);
    layer_bar *bars = calloc((size_t)n_nodes + 1, sizeof *bars);
    if (!by || !bars) {
        free(by);
        free(bars);
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    }
    int64_t total = plot_resident_at(s, r->peak_step, n_nodes, by);
    LR_ASSERT(total == r->peak_bytes);
    int n = layer_bars(a->net, by, bars);
    int nonzero = 0;
    for (int l = 0; l < n_nodes; l++)
        nonzero += resident_sum(&by[l]) > 0;
    lr_status st = layers_csv(dir, bars, n);
    lr_outfile o = {0};
    if (st == LR_OK)
        st = open_in(&o, dir, "layers.gp");
    if (st == LR_OK) {
        layers_script(o.f, a, n, nonzero > LAYER_MAX_BARS, where, r->peak_bytes);
        st = lr_outfile_commit(&o);
    }
    if (st == LR_OK)
        layers_note(made, bars, n, where, r->peak_bytes);
    free(by);
    free(bars);
    return st;
}

lr_status plot_layers(const analysis_t *a, const char *dir, plot_made *made)
{
    memset(made, 0, sizeof *made);
    snprintf(made->name, sizeof made->name, "layers");
    snprintf(made->heading, sizeof made->heading, "What is resident at the column peak");
    sched_t s;
    sim_result r;
    char where[160];
    sched_init(&s);
    lr_status st = column_peak(a, &s, &r, where, sizeof where);
    if (st == LR_OK)
        st = layers_write(a, dir, &s, &r, where, made);
    sched_free(&s);
    return st;
}

/* ------------------------------------------------------------------ running gnuplot */

lr_status plot_find_gnuplot(char *path, size_t cap)
{
    const char *p = getenv("PATH");
    while (p && *p) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        int n = len ? snprintf(path, cap, "%.*s/gnuplot", (int)len, p) : snprintf(path, cap, "./gnuplot");
        struct stat st;
        if (n > 0 && (size_t)n < cap && stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
            access(path, X_OK) == 0)
            return LR_OK;
        p = colon ? colon + 1 : NULL;
    }
    return lr_fail(LR_ERR_RUNTIME, "gnuplot not found on PATH: install gnuplot-nox "
                                   "(apt-get install gnuplot-nox) or omit --report");
}

/* The child: in `dir`, stdout to /dev/null, stderr to the pipe, then gnuplot. */
static void gnuplot_child(const char *gnuplot, const char *dir, const char *script, int err_fd)
{
    int null_fd = open("/dev/null", O_RDWR);
    if (null_fd >= 0) {
        dup2(null_fd, 0);
        dup2(null_fd, 1);
    }
    dup2(err_fd, 2);
    if (chdir(dir) != 0) {
        dprintf(2, "cannot enter %s: %s\n", dir, strerror(errno));
        _exit(127);
    }
    execl(gnuplot, "gnuplot", script, (char *)NULL);
    dprintf(2, "cannot run %s: %s\n", gnuplot, strerror(errno));
    _exit(127);
}

/* Reads fd to its end, keeping the last line that has text. */
static void last_line(int fd, char *line, size_t cap)
{
    char buf[4096];
    size_t have = 0;
    line[0] = '\0';
    for (;;) {
        ssize_t got = read(fd, buf + have, sizeof buf - 1 - have);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        have += (size_t)got;
        buf[have] = '\0';
        for (char *nl; (nl = strchr(buf, '\n')) && nl < buf + have;) {
            *nl = '\0';
            if (strspn(buf, " \t^") < strlen(buf))
                snprintf(line, cap, "%s", buf + strspn(buf, " \t"));
            have -= (size_t)(nl + 1 - buf);
            memmove(buf, nl + 1, have);
            buf[have] = '\0';
        }
        if (have == sizeof buf - 1)
            have = 0; /* a line this long is noise */
    }
    if (have && strspn(buf, " \t^") < have)
        snprintf(line, cap, "%s", buf);
}

lr_status plot_run_gnuplot(const char *gnuplot, const char *dir, const char *name)
{
    char script[64];
    snprintf(script, sizeof script, "%s.gp", name);
    int fds[2];
    if (pipe(fds) != 0)
        return lr_fail(LR_ERR_RUNTIME, "gnuplot: cannot make a pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return lr_fail(LR_ERR_RUNTIME, "gnuplot: cannot start: %s", strerror(errno));
    }
    if (pid == 0)
        gnuplot_child(gnuplot, dir, script, fds[1]);
    close(fds[1]);
    char line[512];
    last_line(fds[0], line, sizeof line);
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return LR_OK;
    return lr_fail(LR_ERR_RUNTIME, "gnuplot failed on %s/%s: %s", dir, script,
                   line[0] ? line : "no message");
}
