/* plot_layers.c - what is resident at the column peak, per layer (per block on deep nets),
 * stacked by weights, activations and gradients (see plot.h).
 * Deliberately not here: the column plan and its replay (planner/, sim/).
 */
#include "plot_frame.h"

#include <inttypes.h>
#include <string.h>

#include "outfile.h"
#include "summary.h"

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
    LR_TRY(plot_open_in(&o, dir, "layers.csv"));
    fprintf(o.f, "layer,weights_bytes,activations_bytes,gradients_bytes\n");
    for (int i = 0; i < n; i++) {
        plot_csv_name(o.f, bars[i].name);
        fprintf(o.f, ",%" PRId64 ",%" PRId64 ",%" PRId64 "\n", bars[i].r.weights,
                bars[i].r.activations, bars[i].r.gradients);
    }
    return lr_outfile_commit(&o);
}

static void layers_script(FILE *f, const analysis_t *a, int n_bars, bool grouped,
                          const char *where, int64_t peak)
{
    plot_unit u = plot_unit_for(peak);
    int width = n_bars * 26 + 260 > 1200 ? n_bars * 26 + 260 : 1200;
    plot_gp_begin(f, "layers", u, width, 700);
    char what[256], b[32];
    snprintf(what, sizeof what, "resident per %s at the column peak (%s, %s)",
             grouped ? "block" : "layer", summary_bytes(peak, b, sizeof b), where);
    plot_gp_title(f, a, what);
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
    plot_gp_end(f, "layers", width, 700);
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
    plot_note(made, "What is resident at the column peak (%s, %s): weights with their gradients and "
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
        plot_note(made, "%s %s %s", k ? "," : "", bars[best].name,
                 summary_bytes(resident_sum(&bars[best].r), b0, sizeof b0));
    }
    plot_note(made, ".");
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
        st = plot_open_in(&o, dir, "layers.gp");
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
