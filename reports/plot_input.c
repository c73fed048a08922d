/* plot_input.c - peak device memory vs input size: square inputs from the network's own up to
 * 256 times its side (doubling, at most INPUT_MAX_SIDE), batch 1, each selected strategy with
 * everything on the device and with host memory as a tier (the run's --offload, auto included,
 * or input,boundary when it gave none), the GPU memory drawn when given and, per strategy and mode,
 * the largest plotted size that fits marked. Each point is the strategy's own choice there
 * (strategy_choose), in parallel like the other sweeps.
 * Deliberately not here: the exact largest input (--fit, fit.c), the batch and rows sweeps
 * (plot_sweeps.c).
 */
#include "plot_frame.h"

#include <inttypes.h>
#include <string.h>

#include "auto.h"
#include "outfile.h"
#include "summary.h"

#define INPUT_MAX_SIDE 65536
#define INPUT_MAX_POINTS 10 /* the net's side and 2, 4, ..., 256 times it */

typedef struct {
    int size;          /* index into the sizes */
    plan_strategy st;
    bool offload;
    int64_t peak, host; /* -1: not plannable there */
    lr_status status;
    char err[256];
} input_pt;

static void input_one(const analysis_t *a, net_t *const *nets, unsigned offload, input_pt *p)
{
    plan_config cfg = a->cfg;
    cfg.batch = 1;
    cfg.offload = p->offload && !a->cfg.offload_auto ? offload : 0;
    cfg.offload_auto = p->offload && a->cfg.offload_auto; /* each plan's own set */
    plan_request req = a->req;
    req.strategy = p->st;
    req.rows = p->st >= STRAT_ROW ? req.rows : 0;
    plan_choice c;
    const net_t *net = nets[p->size];
    lr_status s = cost_check_layers(net, 1, cost_dtype_bytes(cfg.dtype));
    if (s == LR_OK)
        s = strategy_choose(net, &cfg, &req, &c);
    p->peak = s == LR_OK ? c.cost.peak_bytes : -1;
    p->host = s == LR_OK ? c.cost.host_bytes : -1;
    p->status = s == LR_ERR_INPUT ? LR_OK : s;
    if (p->status != LR_OK)
        snprintf(p->err, sizeof p->err, "%s", lr_last_error());
}

/* The square sides: the net's (its height) doubled while the net accepts them. */
static int input_sides(const net_t *net, net_t **nets, int *sides)
{
    int n = 0;
    for (int64_t h = net->nodes[0].h; h <= INPUT_MAX_SIDE && n < INPUT_MAX_POINTS; h *= 2) {
        net_t *copy;
        if (auto_subnet(net, 0, &copy) != LR_OK)
            break;
        if (net_reshape(copy, (int)h, (int)h) != LR_OK) {
            net_free(copy);
            continue;
        }
        nets[n] = copy;
        sides[n++] = (int)h;
    }
    return n;
}

/* The largest plotted side whose peak fits `gpu` for strategy k and mode m, 0 when none. */
static int largest_fitting(const input_pt *pts, int k, int m, int n_sizes, const int *sides,
                           int64_t gpu)
{
    int best = 0;
    for (int i = 0; i < n_sizes; i++) {
        const input_pt *p = &pts[(k * 2 + m) * n_sizes + i];
        if (p->peak >= 0 && p->peak <= gpu)
            best = sides[i];
    }
    return best;
}

static lr_status input_csv(const analysis_t *a, const char *dir, const int *sides, int n_sizes,
                           const input_pt *pts)
{
    lr_outfile o;
    LR_TRY(plot_open_in(&o, dir, "input.csv"));
    fprintf(o.f, "side");
    for (int k = 0; k < a->n; k++)
        fprintf(o.f, ",%s,%s-offload,%s-offload-host", plan_strategy_name(a->e[k].strategy),
                plan_strategy_name(a->e[k].strategy), plan_strategy_name(a->e[k].strategy));
    fputc('\n', o.f);
    for (int i = 0; i < n_sizes; i++) {
        fprintf(o.f, "%d", sides[i]);
        for (int k = 0; k < a->n; k++) {
            const input_pt *on = &pts[(k * 2) * n_sizes + i], *off = &pts[(k * 2 + 1) * n_sizes + i];
            const input_pt *v[3] = {on, off, off};
            for (int q = 0; q < 3; q++) {
                int64_t x = q == 2 ? v[q]->host : v[q]->peak;
                if (v[q]->peak >= 0)
                    fprintf(o.f, ",%" PRId64, x);
                else
                    fputc(',', o.f);
            }
        }
        fputc('\n', o.f);
    }
    return lr_outfile_commit(&o);
}

static void input_script(FILE *f, const analysis_t *a, const int *sides, int n_sizes,
                         const input_pt *pts, int64_t gpu, const char *offload, plot_unit u)
{
    plot_gp_begin(f, "input", u, 1200, 720);
    plot_gp_title(f, a, "peak device memory vs input size at batch 1 (closed form)");
    fprintf(f, "set xlabel \"input side (square, pixels, log scale)\"\n"
               "set ylabel sprintf(\"peak device memory (%%s, log scale)\", unit_name)\n"
               "set logscale xy 2\nset format y \"%%.4g\"\nset xrange [%g:%g]\n",
            sides[0] / 1.2, sides[n_sizes - 1] * 1.2);
    fprintf(f, "set xtics (");
    for (int i = 0; i < n_sizes; i++)
        fprintf(f, "%s\"%d\" %d", i ? ", " : "", sides[i], sides[i]);
    fprintf(f, ")\n");
    fprintf(f, "set key below center horizontal maxcols 2 Left reverse samplen 3 width 2 spacing 1.3\n");
    char b[32];
    for (int k = 0; k < a->n && gpu > 0; k++)
        for (int m = 0; m < 2; m++) {
            int side = largest_fitting(pts, k, m, n_sizes, sides, gpu);
            int64_t peak = 0;
            for (int i = 0; i < n_sizes; i++)
                if (sides[i] == side)
                    peak = pts[(k * 2 + m) * n_sizes + i].peak;
            if (side > 0)
                fprintf(f, "set label \"%d\" at %d, %" PRId64 ".0/unit point pt %d ps 1.6 lc rgb \"%s\" "
                           "offset 0.8,%s tc rgb \"%s\"\n", side, side, peak, m ? 6 : 4,
                        plot_strategy_colour[a->e[k].strategy], m ? "-0.8" : "0.8",
                        plot_strategy_colour[a->e[k].strategy]);
        }
    fprintf(f, "plot \\\n");
    for (int k = 0; k < a->n; k++)
        for (int m = 0; m < 2; m++) {
            plan_strategy st = a->e[k].strategy;
            char title[160];
            snprintf(title, sizeof title, "%s%s%s", plan_strategy_name(st),
                     m ? ", --offload " : "", m ? offload : "");
            fprintf(f, "  \"input.csv\" skip 1 using 1:($%d/unit) with linespoints lw 2 dt %d pt 7 "
                       "ps 0.6 lc rgb \"%s\" title ", 2 + 3 * k + m, m ? 2 : 1, plot_strategy_colour[st]);
            plot_gp_string(f, title);
            fprintf(f, "%s\n", gpu > 0 || k + 1 < a->n || m == 0 ? ", \\" : "");
        }
    if (gpu > 0)
        fprintf(f, "  %" PRId64 ".0/unit with lines dt 4 lw 2 lc rgb \"#b00000\" title \"GPU memory  %s\"\n",
                gpu, summary_bytes(gpu, b, sizeof b));
    plot_gp_end(f, "input", 1200, 720);
}

static void input_note(plot_made *made, const analysis_t *a, const int *sides, int n_sizes,
                       const input_pt *pts, int64_t gpu, const char *offload)
{
    char b[32];
    plot_note(made, "Closed-form peak device memory at batch 1 for square inputs of side %d to %d "
                   "(doubling), each strategy as it plans at each size: solid with everything on "
                   "the device, dashed with --offload %s (host memory as a tier; the host memory "
                   "those plans keep is in input.csv).", sides[0], sides[n_sizes - 1], offload);
    if (gpu <= 0) {
        plot_note(made, " Give --gpu-mem SIZE to draw a device's memory and mark the largest size that fits.");
        return;
    }
    plot_note(made, " Largest plotted side within %s (marked; `lrcnn-sim --fit` finds the exact "
                   "one), without / with offload:", summary_bytes(gpu, b, sizeof b));
    for (int k = 0; k < a->n; k++)
        plot_note(made, "%s %s %d / %d", k ? "," : "", plan_strategy_name(a->e[k].strategy),
                  largest_fitting(pts, k, 0, n_sizes, sides, gpu),
                  largest_fitting(pts, k, 1, n_sizes, sides, gpu));
    plot_note(made, ".");
}

lr_status plot_input(const analysis_t *a, int64_t gpu_mem_bytes, const char *dir, plot_made *made)
{
    memset(made, 0, sizeof *made);
    snprintf(made->name, sizeof made->name, "input");
    snprintf(made->heading, sizeof made->heading, "Peak device memory vs input size");
    unsigned offload = a->cfg.offload ? a->cfg.offload : OFFLOAD_INPUT | OFFLOAD_BOUNDARY;
    const char *mode = a->cfg.offload_auto ? "auto" : plan_offload_name(offload);
    net_t *nets[INPUT_MAX_POINTS];
    int sides[INPUT_MAX_POINTS];
    int n_sizes = input_sides(a->net, nets, sides);
    if (n_sizes == 0)
        return lr_fail(LR_ERR_INPUT, "--report: %s accepts no square input from %d up to %d", a->net->name,
                       a->net->nodes[0].h, INPUT_MAX_SIDE);
    int n = a->n * 2 * n_sizes;
    input_pt *pts = calloc((size_t)n, sizeof *pts);
    if (!pts) {
        for (int i = 0; i < n_sizes; i++)
            net_free(nets[i]);
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    }
    for (int k = 0; k < a->n; k++)
        for (int m = 0; m < 2; m++)
            for (int i = 0; i < n_sizes; i++)
                pts[(k * 2 + m) * n_sizes + i] = (input_pt){.size = i, .st = a->e[k].strategy,
                                                            .offload = m == 1};
#pragma omp parallel for schedule(dynamic)
    for (int q = 0; q < n; q++)
        input_one(a, nets, offload, &pts[q]);
    lr_status s = LR_OK;
    for (int q = 0; q < n && s == LR_OK; q++)
        if (pts[q].status != LR_OK)
            s = lr_fail(pts[q].status, "%s", pts[q].err);
    if (s == LR_OK)
        s = input_csv(a, dir, sides, n_sizes, pts);
    lr_outfile o = {0};
    if (s == LR_OK)
        s = plot_open_in(&o, dir, "input.gp");
    if (s == LR_OK) {
        int64_t top = gpu_mem_bytes;
        for (int q = 0; q < n; q++)
            top = pts[q].peak > top ? pts[q].peak : top;
        input_script(o.f, a, sides, n_sizes, pts, gpu_mem_bytes, mode, plot_unit_for(top));
        s = lr_outfile_commit(&o);
    }
    if (s == LR_OK)
        input_note(made, a, sides, n_sizes, pts, gpu_mem_bytes, mode);
    free(pts);
    for (int i = 0; i < n_sizes; i++)
        net_free(nets[i]);
    return s;
}
