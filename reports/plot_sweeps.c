/* plot_sweeps.c - the two sweep plots: closed-form peak vs row partitions (rows) and vs batch
 * size (batch), with the largest batch that fits a GPU's memory. Each point is one
 * strategy_choose; the points run in parallel since the planner keeps no shared state.
 * Deliberately not here: the sweep table of --sweep (cli/sim_cli.c).
 */
#include "plot_frame.h"

#include <inttypes.h>
#include <string.h>

#include "outfile.h"
#include "summary.h"

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
    lr_status s = cost_check_layers(a->net, cfg.batch, cost_dtype_bytes(cfg.dtype));
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
    LR_TRY(plot_open_in(&o, dir, "rows.csv"));
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
    plot_gp_begin(f, "rows", u, 1200, 720);
    plot_gp_title(f, a, "peak memory vs number of row partitions (closed form)");
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
                k + 2, plot_strategy_colour[st[k]]);
        plot_gp_string(f, title);
        fprintf(f, ", \\\n");
    }
    fprintf(f, "  column/unit with lines dt 2 lw 2 lc rgb \"%s\" title \"column  %s\"\n",
            plot_strategy_colour[STRAT_COLUMN], summary_bytes(a->column_peak, b, sizeof b));
    plot_gp_end(f, "rows", 1200, 720);
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
        s = plot_open_in(&o, dir, "rows.gp");
    if (s == LR_OK) {
        plot_unit u = plot_unit_for(a->column_peak);
        rows_script(o.f, a, st, ns, pts, u);
        s = lr_outfile_commit(&o);
    }
    char b[32];
    plot_note(made, "Closed-form peak for N = %d..%d row partitions; the dashed line is column "
                   "training (%s). Lowest peak per strategy:", ROWS_LO, ROWS_HI,
             summary_bytes(a->column_peak, b, sizeof b));
    for (int k = 0; k < ns && s == LR_OK; k++) {
        int lo = lowest(&pts[k * ROWS_N], ROWS_N);
        if (lo >= 0)
            plot_note(made, "%s %s %s at N = %d (%.1f%% of column)", k ? ";" : "",
                     plan_strategy_name(st[k]), summary_bytes(pts[k * ROWS_N + lo].peak, b, sizeof b),
                     ROWS_LO + lo, 100.0 * (double)pts[k * ROWS_N + lo].peak / (double)a->column_peak);
    }
    plot_note(made, ".");
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
    LR_TRY(plot_open_in(&o, dir, "batch.csv"));
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
    plot_gp_begin(f, "batch", u, 1200, 720);
    plot_gp_title(f, a, "peak memory vs batch size (closed form)");
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
                k + 2, plot_strategy_colour[st]);
        plot_gp_string(f, title);
        fprintf(f, "%s\n", gpu > 0 || k + 1 < a->n ? ", \\" : "");
    }
    if (gpu > 0)
        fprintf(f, "  %" PRId64 ".0/unit with lines dt 4 lw 2 lc rgb \"#b00000\" title \"GPU memory  %s\"\n",
                gpu, summary_bytes(gpu, b, sizeof b));
    plot_gp_end(f, "batch", 1200, 720);
}

static void batch_note(plot_made *made, const analysis_t *a, const batch_fit *fits, int64_t gpu)
{
    char b[32];
    plot_note(made, "Closed-form peak per strategy for batch sizes up to the larger of twice this "
                   "run's batch and 256; rows as planned for each batch (--rows when given, else "
                   "the lowest peak).");
    if (gpu <= 0) {
        plot_note(made, " Give --gpu-mem SIZE to draw a device's memory and list the largest batch that fits.");
        return;
    }
    plot_note(made, " Largest batch within %s (peak <= GPU memory; no allowance for the CUDA "
                   "context or fragmentation):", summary_bytes(gpu, b, sizeof b));
    for (int k = 0; k < a->n; k++)
        plot_note(made, "%s %s %s%d", k ? "," : "", plan_strategy_name(a->e[k].strategy),
                 fits[k].beyond ? ">= " : "", fits[k].fits);
    plot_note(made, ".");
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
        s = plot_open_in(&o, dir, "batch.gp");
    if (s == LR_OK) {
        int64_t top = gpu_mem_bytes;
        for (int i = 0; i < a->n * nb; i++)
            top = pts[i].peak > top ? pts[i].peak : top;
        batch_script(o.f, a, batches, nb, fits, gpu_mem_bytes, plot_unit_for(top));
        s = lr_outfile_commit(&o);
    }
    if (s == LR_OK)
        batch_note(made, a, fits, gpu_mem_bytes);
    free(pts);
    return s;
}
