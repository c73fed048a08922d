/* graph.c - the row-dependency graph of a plan with cgraph, rendered with gvc (see graph.h).
 *
 * Rows are the plan's own ranges (plan_stage own/comp/held): a stripe owns `own`, computes
 * `comp` (own plus the halo when partitions overlap) and its buffer holds `held` (own plus the
 * boundary rows copied in from the previous partition when partitions tile). The boundary
 * copy into (l, j) covers rows [held.lo, comp.lo - 1], the rule the emitter uses.
 */
#include "graph.h"

#include <ctype.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>

#include <graphviz/cgraph.h>
#include <graphviz/gvc.h>

#include "outfile.h"
#include "strategy.h"

#define COLOUR_READ "#8c8c8c"
#define COLOUR_BOUNDARY "#e66101"
#define COLOUR_HALO_FILL "#f9cfc7"
#define COLOUR_MAP_FILL "#e8eef7"

typedef struct {
    Agraph_t *g;
    const plan_t *plan;
    const net_t *net;
    graph_summary sum;
} graph_ctx;

graph_format graph_format_of(const char *path)
{
    static const struct {
        const char *ext;
        graph_format f;
    } table[] = {{".dot", GRAPH_DOT}, {".gv", GRAPH_DOT}, {".svg", GRAPH_SVG}, {".png", GRAPH_PNG}};
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof table / sizeof table[0]; i++)
        if (strcasecmp(dot, table[i].ext) == 0 && dot > path && dot[-1] != '/')
            return table[i].f;
    return GRAPH_FORMAT_COUNT;
}

/* ------------------------------------------------------------------ cgraph helpers */

static void set(void *obj, const char *key, const char *value)
{
    agsafeset(obj, (char *)key, (char *)value, (char *)"");
}

static void setf(void *obj, const char *key, const char *fmt, ...) LR_PRINTF(3, 4);
static void setf(void *obj, const char *key, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    set(obj, key, buf);
}

static Agnode_t *node_new(Agraph_t *in, const char *name)
{
    Agnode_t *n = agnode(in, (char *)name, 1);
    LR_ASSERT(n != NULL);
    return n;
}

typedef enum { EDGE_READ, EDGE_BOUNDARY, EDGE_ELIDED } edge_kind;

static void edge_new(graph_ctx *c, Agnode_t *from, Agnode_t *to, edge_kind kind,
                     const char *label)
{
    Agedge_t *e = agedge(c->g, from, to, NULL, 1);
    LR_ASSERT(e != NULL);
    if (label && *label)
        set(e, "label", label);
    if (kind == EDGE_READ)
        return;
    set(e, "color", COLOUR_BOUNDARY);
    set(e, "fontcolor", COLOUR_BOUNDARY);
    set(e, "penwidth", "2");
    set(e, "constraint", "false"); /* same layer, next partition: not a step to the right */
    if (kind == EDGE_ELIDED)
        set(e, "style", "dashed");
    else
        c->sum.boundary_edges++;
}

/* "5-9", "5", "none" */
static const char *rows_text(rowrange r, char *buf, size_t cap)
{
    if (rr_empty(r))
        snprintf(buf, cap, "none");
    else if (r.lo == r.hi)
        snprintf(buf, cap, "%d", r.lo);
    else
        snprintf(buf, cap, "%d-%d", r.lo, r.hi);
    return buf;
}

/* Rows computed beyond the own ones: up to two ranges, "3-6, 14-16". Empty string when none. */
static const char *halo_text(rowrange own, rowrange comp, char *buf, size_t cap)
{
    char a[32], b[32];
    rowrange lo = rr_empty(own) ? comp : rr_make(comp.lo, own.lo - 1);
    rowrange hi = rr_empty(own) ? rr_none() : rr_make(own.hi + 1, comp.hi);
    if (rr_empty(lo) && rr_empty(hi))
        snprintf(buf, cap, "%s", "");
    else if (rr_empty(lo) || rr_empty(hi))
        snprintf(buf, cap, "%s", rows_text(rr_empty(lo) ? hi : lo, a, sizeof a));
    else
        snprintf(buf, cap, "%s, %s", rows_text(lo, a, sizeof a), rows_text(hi, b, sizeof b));
    return buf;
}

/* Rows of l copied into partition j's buffer from partition j-1 (tiled plans). */
static rowrange boundary_in(const plan_stage *st, int l, int j)
{
    if (st->kind == PART_OVERLAP || j == 0 || l == st->out_node)
        return rr_none();
    int i = plan_idx(st, l, j);
    return rr_make(st->held[i].lo, st->comp[i].lo - 1);
}

static int halo_rows(const plan_stage *st, int l, int j)
{
    int i = plan_idx(st, l, j);
    return st->kind == PART_OVERLAP ? rr_count(st->comp[i]) - rr_count(st->own[i]) : 0;
}

/* Rows of the stage input that layer l of partition j reads (empty when it reads none). */
static rowrange input_rows(const net_t *net, const plan_stage *st, int l, int j)
{
    rowrange r = rr_none();
    const net_node *n = &net->nodes[l];
    for (int k = 0; k < n->n_inputs; k++)
        if (n->inputs[k] == st->in_node)
            r = rr_hull(r, rowdep_need(net, l, k, st->comp[plan_idx(st, l, j)]));
    return r;
}

/* ------------------------------------------------------------------ shared nodes */

/* A whole feature map: the input, a stage output. */
static Agnode_t *map_node(graph_ctx *c, int l)
{
    char name[NET_NAME_MAX + 8], r[32];
    snprintf(name, sizeof name, "map_%s", c->net->nodes[l].name);
    Agnode_t *n = agnode(c->g, name, 0);
    if (n)
        return n;
    n = node_new(c->g, name);
    const net_node *x = &c->net->nodes[l];
    setf(n, "label", "%s\\nwhole map, rows %s", x->name, rows_text(rr_make(0, x->h - 1), r, sizeof r));
    set(n, "fillcolor", COLOUR_MAP_FILL);
    return n;
}

/* The cluster of partition j of stage s (or of the elided partitions when j < 0). */
static Agraph_t *part_cluster(graph_ctx *c, int s, int j, int parts)
{
    char name[64];
    snprintf(name, sizeof name, j >= 0 ? "cluster_s%d_p%d" : "cluster_s%d_more", s, j);
    Agraph_t *sub = agsubg(c->g, name, 0);
    if (sub)
        return sub;
    sub = agsubg(c->g, name, 1);
    LR_ASSERT(sub != NULL);
    char prefix[32] = "";
    if (c->plan->n_stages > 1)
        snprintf(prefix, sizeof prefix, "stage %d, ", s);
    if (parts == 1)
        setf(sub, "label", "%swhole map (1 partition)", prefix);
    else if (j >= 0)
        setf(sub, "label", "%spartition %d", prefix, j);
    else
        setf(sub, "label", "%spartitions 3 to %d", prefix, parts - 3);
    set(sub, "style", "rounded");
    set(sub, "color", "#b0b0b0");
    set(sub, "fontcolor", "#505050");
    set(sub, "labeljust", "l");
    return sub;
}

static void mark_stripe(graph_ctx *c, Agnode_t *n, bool halo, bool boundary)
{
    c->sum.stripe_nodes++;
    if (halo) {
        set(n, "fillcolor", COLOUR_HALO_FILL);
        c->sum.halo_nodes++;
    }
    if (boundary) {
        set(n, "color", COLOUR_BOUNDARY);
        set(n, "penwidth", "2");
    }
}

/* ------------------------------------------------------------------ full view */

static Agnode_t *stripe_node(graph_ctx *c, int s, int l, int j)
{
    char name[NET_NAME_MAX + 24];
    snprintf(name, sizeof name, "stripe_%s_p%d", c->net->nodes[l].name, j);
    Agnode_t *n = agnode(c->g, name, 0);
    if (n)
        return n;
    const plan_stage *st = &c->plan->stages[s];
    n = node_new(part_cluster(c, s, j, st->parts), name);
    int i = plan_idx(st, l, j);
    char own[32], held[32], halo[80], label[320];
    rows_text(st->own[i], own, sizeof own);
    int at = rr_empty(st->own[i])
                 ? snprintf(label, sizeof label, "%s  p%d\\nno new rows", c->net->nodes[l].name, j)
                 : snprintf(label, sizeof label, "%s  p%d\\nrows %s", c->net->nodes[l].name, j, own);
    rowrange bnd = boundary_in(st, l, j);
    if (!rr_empty(bnd))
        at += snprintf(label + at, sizeof label - (size_t)at, "\\nholds %s", rows_text(st->held[i], held, sizeof held));
    halo_text(st->own[i], st->comp[i], halo, sizeof halo);
    if (st->kind == PART_OVERLAP && halo[0])
        snprintf(label + at, sizeof label - (size_t)at, "\\nhalo %s", halo);
    set(n, "label", label);
    mark_stripe(c, n, st->kind == PART_OVERLAP && halo[0], !rr_empty(bnd));
    return n;
}

static void full_reads(graph_ctx *c, int s, int l, int j)
{
    const plan_stage *st = &c->plan->stages[s];
    const net_node *n = &c->net->nodes[l];
    Agnode_t *to = stripe_node(c, s, l, j);
    char r[32];
    for (int k = 0; k < n->n_inputs; k++) {
        int u = n->inputs[k];
        bool seen = false;
        for (int q = 0; q < k; q++)
            seen |= n->inputs[q] == u;
        if (seen)
            continue;
        if (u == st->in_node)
            edge_new(c, map_node(c, u), to, EDGE_READ, rows_text(input_rows(c->net, st, l, j), r, sizeof r));
        else
            edge_new(c, stripe_node(c, s, u, j), to, EDGE_READ, NULL);
    }
    rowrange bnd = boundary_in(st, l, j);
    if (!rr_empty(bnd))
        edge_new(c, stripe_node(c, s, l, j - 1), to, EDGE_BOUNDARY, rows_text(bnd, r, sizeof r));
}

static void draw_stage_full(graph_ctx *c, int s)
{
    const plan_stage *st = &c->plan->stages[s];
    for (int j = 0; j < st->parts; j++)
        for (int l = st->in_node + 1; l <= st->out_node; l++)
            stripe_node(c, s, l, j); /* clusters and nodes in partition order: p0 on top */
    for (int j = 0; j < st->parts; j++) {
        for (int l = st->in_node + 1; l <= st->out_node; l++)
            full_reads(c, s, l, j);
        edge_new(c, stripe_node(c, s, st->out_node, j), map_node(c, st->out_node), EDGE_READ, NULL);
    }
}

/* ------------------------------------------------------------------ compact view */

typedef struct {
    int first, last; /* layers (first, last inclusive) */
} block;

/* Blocks of a stage: the layers between changes of resolution. */
static int stage_blocks(const net_t *net, const plan_stage *st, block *out, int cap)
{
    int cuts[PLAN_MAX_STAGES];
    int nc = strategy_resolution_cuts(net, st->out_node, cuts, PLAN_MAX_STAGES);
    int n = 0, start = st->in_node + 1;
    for (int k = 0; k < nc && n < cap - 1; k++)
        if (cuts[k] >= start && cuts[k] < st->out_node) {
            out[n++] = (block){start, cuts[k]};
            start = cuts[k] + 1;
        }
    out[n++] = (block){start, st->out_node};
    return n;
}

static int shown_partition(const plan_stage *st, int j)
{
    return st->parts <= GRAPH_SHOWN_PARTS || j < 3 || j >= st->parts - 2;
}

static void block_label(graph_ctx *c, const plan_stage *st, block b, int j, char *label,
                        size_t cap, bool *halo, bool *boundary)
{
    const net_t *net = c->net;
    char r0[32], r1[32];
    int at = snprintf(label, cap, "%s", net->nodes[b.first].name);
    if (b.last > b.first)
        at += snprintf(label + at, cap - (size_t)at, " .. %s (%d layers)", net->nodes[b.last].name,
                       b.last - b.first + 1);
    rowrange in = st->own[plan_idx(st, b.first, j)], out = st->own[plan_idx(st, b.last, j)];
    if (rr_empty(in) && rr_empty(out))
        at += snprintf(label + at, cap - (size_t)at, "  p%d\\nno new rows", j);
    else
        at += snprintf(label + at, cap - (size_t)at, "  p%d\\nrows %s -> %s", j,
                       rows_text(in, r0, sizeof r0), rows_text(out, r1, sizeof r1));
    int bnd_rows = 0, bnd_layers = 0, max_halo = 0;
    for (int l = b.first; l <= b.last; l++) {
        int n = rr_count(boundary_in(st, l, j));
        bnd_rows += n;
        bnd_layers += n > 0;
        max_halo = halo_rows(st, l, j) > max_halo ? halo_rows(st, l, j) : max_halo;
    }
    if (bnd_rows)
        snprintf(label + at, cap - (size_t)at, "\\nreceives %d boundary rows at %d layers", bnd_rows, bnd_layers);
    else if (max_halo)
        snprintf(label + at, cap - (size_t)at, "\\nhalo: up to %d extra rows per layer", max_halo);
    *halo = max_halo > 0;
    *boundary = bnd_rows > 0;
}

static Agnode_t *block_node(graph_ctx *c, int s, int g, block b, int j)
{
    const plan_stage *st = &c->plan->stages[s];
    char name[64];
    if (!shown_partition(st, j)) {
        snprintf(name, sizeof name, "more_s%d_b%d", s, g);
        Agnode_t *n = agnode(c->g, name, 0);
        if (!n) {
            n = node_new(part_cluster(c, s, -1, st->parts), name);
            setf(n, "label", "%s .. %s\\npartitions 3 to %d", c->net->nodes[b.first].name,
                 c->net->nodes[b.last].name, st->parts - 3);
            set(n, "style", "rounded,dashed");
        }
        return n;
    }
    snprintf(name, sizeof name, "block_s%d_b%d_p%d", s, g, j);
    Agnode_t *n = agnode(c->g, name, 0);
    if (n)
        return n;
    n = node_new(part_cluster(c, s, j, st->parts), name);
    char label[512];
    bool halo, boundary;
    block_label(c, st, b, j, label, sizeof label, &halo, &boundary);
    set(n, "label", label);
    mark_stripe(c, n, halo, boundary);
    return n;
}

/* Edges into partition j's blocks: reads along the partition, boundary rows from the partition
 * above (or from the node standing for the elided ones, which reads them from partition 2). */
static void compact_edges(graph_ctx *c, int s, const block *b, int nb, int j)
{
    const plan_stage *st = &c->plan->stages[s];
    bool mid = !shown_partition(st, j);
    if (mid && j != 3)
        return; /* the elided partitions are one node per block, drawn once */
    char r[32];
    for (int g = 0; g < nb; g++) {
        Agnode_t *to = block_node(c, s, g, b[g], j);
        if (g == 0)
            edge_new(c, map_node(c, st->in_node), to, EDGE_READ,
                     mid ? NULL : rows_text(input_rows(c->net, st, b[0].first, j), r, sizeof r));
        else
            edge_new(c, block_node(c, s, g - 1, b[g - 1], j), to, EDGE_READ, NULL);
        if (j == 0 || st->kind == PART_OVERLAP)
            continue;
        Agnode_t *from = block_node(c, s, g, b[g], j - 1);
        int rows = 0;
        for (int l = b[g].first; l <= b[g].last; l++)
            rows += rr_count(boundary_in(st, l, j));
        if (mid)
            edge_new(c, from, to, EDGE_ELIDED, NULL);
        else if (rows > 0)
            edge_new(c, from, to, EDGE_BOUNDARY, NULL); /* the node label counts the rows */
    }
    edge_new(c, block_node(c, s, nb - 1, b[nb - 1], j), map_node(c, st->out_node), EDGE_READ, NULL);
}

static void draw_stage_compact(graph_ctx *c, int s)
{
    const plan_stage *st = &c->plan->stages[s];
    block b[PLAN_MAX_STAGES];
    int nb = stage_blocks(c->net, st, b, PLAN_MAX_STAGES);
    for (int j = 0; j < st->parts; j++)
        for (int g = 0; g < nb && (shown_partition(st, j) || j == 3); g++)
            block_node(c, s, g, b[g], j); /* clusters and nodes in partition order: p0 on top */
    for (int j = 0; j < st->parts; j++)
        compact_edges(c, s, b, nb, j);
}

/* ------------------------------------------------------------------ frame */

static int stripes_total(const plan_t *plan)
{
    int n = 0;
    for (int s = 0; s < plan->n_stages; s++)
        n += (plan->stages[s].out_node - plan->stages[s].in_node) * plan->stages[s].parts;
    return n;
}

static void draw_tail(graph_ctx *c)
{
    const net_t *net = c->net;
    int first = c->plan->tail_first, last = net->n_nodes - 1;
    if (first > last)
        return;
    Agnode_t *n = node_new(c->g, "tail");
    if (first == last)
        setf(n, "label", "column tail\\n%s", net->nodes[first].name);
    else
        setf(n, "label", "column tail\\n%s .. %s (%d layers)", net->nodes[first].name,
             net->nodes[last].name, last - first + 1);
    set(n, "fillcolor", COLOUR_MAP_FILL);
    edge_new(c, map_node(c, first - 1), n, EDGE_READ, NULL);
}

static void draw_legend(graph_ctx *c)
{
    bool overlap = false;
    for (int s = 0; s < c->plan->n_stages; s++)
        overlap |= c->plan->stages[s].kind == PART_OVERLAP;
    const char *stripe = c->sum.compact
        ? "<TD>first .. last  pJ<BR/>rows a-b -&gt; c-d</TD><TD ALIGN=\"LEFT\">a block of layers in "
          "partition J: the rows its first and its last layer own</TD>"
        : overlap ? "<TD>layer  pJ<BR/>rows a-b</TD><TD ALIGN=\"LEFT\">the rows of a layer partition J owns</TD>"
                  : "<TD>layer  pJ<BR/>rows a-b<BR/>holds c-b</TD><TD ALIGN=\"LEFT\">the rows of a layer "
                    "partition J owns; holds: what its buffer holds, with the rows handed over</TD>";
    const char *special = overlap
        ? "<TR><TD BGCOLOR=\"" COLOUR_HALO_FILL "\">halo</TD>"
          "<TD ALIGN=\"LEFT\">halo: rows this partition computes again because a neighbour owns "
          "them (overlapping partitions)</TD></TR>"
        : "<TR><TD COLOR=\"" COLOUR_BOUNDARY "\"><FONT COLOR=\"" COLOUR_BOUNDARY
          "\"><B>&#8212;&#8212;&gt;</B></FONT></TD><TD ALIGN=\"LEFT\">boundary rows: copied from "
          "partition J-1's buffer into partition J's (orange outline: a stripe that receives some)</TD></TR>";
    char html[2048];
    snprintf(html, sizeof html,
             "<TABLE BORDER=\"0\" CELLBORDER=\"1\" CELLSPACING=\"0\" CELLPADDING=\"4\" COLOR=\"#b0b0b0\">"
             "<TR><TD COLSPAN=\"2\"><B>legend</B> (rows of a layer's output, 0 = top)</TD></TR>"
             "<TR>%s</TR><TR><TD><FONT COLOR=\"" COLOUR_READ "\">&#8212;&#8212;&gt;</FONT></TD>"
             "<TD ALIGN=\"LEFT\">rows read within the partition (labelled where read from a whole map)</TD></TR>"
             "%s</TABLE>",
             stripe, special);
    Agnode_t *n = node_new(c->g, "legend");
    char *label = agstrdup_html(c->g, html);
    set(n, "label", label);
    agstrfree(c->g, label);
    set(n, "shape", "plaintext");
    set(n, "style", "solid");
}

static void graph_title(graph_ctx *c)
{
    const plan_t *p = c->plan;
    char rows[128] = "";
    size_t at = 0;
    for (int s = 0; s < p->n_stages && at + 12 < sizeof rows; s++)
        at += (size_t)snprintf(rows + at, sizeof rows - at, "%s%d", s ? "," : "", p->stages[s].parts);
    setf(c->g, "label", "%s, batch %d: %s with %s row partitions%s - row dependencies%s",
         c->net->name, p->cfg.batch, plan_strategy_name(p->spec.strategy), rows,
         p->n_stages > 1 ? " (per stage)" : "",
         c->sum.compact ? " (compact: one node per block of layers)" : "");
}

/* Every attribute set later gets its default here, so objects that do not set it keep it. */
static void graph_defaults(Agraph_t *g)
{
    static const struct {
        int kind;
        const char *name, *value;
    } defaults[] = {
        {AGRAPH, "rankdir", "LR"},       {AGRAPH, "labelloc", "t"},
        {AGRAPH, "fontname", "sans"},    {AGRAPH, "fontsize", "16"},
        {AGRAPH, "nodesep", "0.18"},     {AGRAPH, "ranksep", "0.45"},
        {AGRAPH, "label", ""},           {AGRAPH, "style", ""},
        {AGRAPH, "color", "black"},      {AGRAPH, "fontcolor", "black"},
        {AGRAPH, "labeljust", "c"},      {AGNODE, "shape", "box"},
        {AGNODE, "style", "rounded,filled"}, {AGNODE, "fillcolor", "#ffffff"},
        {AGNODE, "color", "black"},      {AGNODE, "penwidth", "1"},
        {AGNODE, "fontname", "sans"},    {AGNODE, "fontsize", "10"},
        {AGEDGE, "color", COLOUR_READ},  {AGEDGE, "fontcolor", "#505050"},
        {AGEDGE, "fontname", "sans"},    {AGEDGE, "fontsize", "9"},
        {AGEDGE, "arrowsize", "0.6"},    {AGEDGE, "penwidth", "1"},
        {AGEDGE, "constraint", "true"},  {AGEDGE, "style", "solid"},
        {AGEDGE, "label", ""},
    };
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
        agattr(g, defaults[i].kind, (char *)defaults[i].name, (char *)defaults[i].value);
}

static Agraph_t *graph_build(const plan_t *plan, graph_summary *sum)
{
    graph_ctx c = {.plan = plan, .net = plan->net};
    c.g = agopen((char *)"rows", Agdirected, NULL);
    LR_ASSERT(c.g != NULL);
    graph_defaults(c.g);
    c.sum.compact = stripes_total(plan) > GRAPH_FULL_MAX;
    draw_legend(&c);
    for (int s = 0; s < plan->n_stages; s++)
        (c.sum.compact ? draw_stage_compact : draw_stage_full)(&c, s);
    draw_tail(&c);
    graph_title(&c);
    *sum = c.sum;
    return c.g;
}

/* ------------------------------------------------------------------ writing */

static _Thread_local char gv_message[512];

static int keep_message(char *msg)
{
    size_t n = strlen(msg);
    while (n > 0 && isspace((unsigned char)msg[n - 1]))
        n--;
    snprintf(gv_message, sizeof gv_message, "%.*s", (int)n, msg);
    return 0;
}

/* Graphviz 2.42 leaks inside its dot layout (virtual edges around clusters) and its font caches
 * (pango, fontconfig, glib); LeakSanitizer (make test SANITIZE=1) would fail every run that
 * renders a graph. Only those libraries are named, so a leak in lrcnn's own code still shows. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libgvc.so\nleak:libgvplugin_\nleak:libfontconfig.so\nleak:libpango\n"
           "leak:libglib-2.0.so\nleak:libcairo.so\n";
}

/* ...and without the table of suppressions used after every run. */
const char *__lsan_default_options(void);
const char *__lsan_default_options(void)
{
    return "print_suppressions=0";
}

/* One Graphviz context for the process: Graphviz 2.42 caches font data across contexts, so a
 * second context after gvFreeContext reads freed memory (found by ASan). Not thread safe. */
static GVC_t *graphviz(void)
{
    static GVC_t *gvc;
    if (!gvc)
        gvc = gvContext();
    return gvc;
}

static lr_status render(Agraph_t *g, graph_format fmt, FILE *f, const char *path)
{
    if (fmt == GRAPH_DOT)
        return agwrite(g, f) == 0 ? LR_OK : lr_fail(LR_ERR_IO, "%s: write failed", path);
    gv_message[0] = '\0';
    agusererrf prev = agseterrf(keep_message);
    GVC_t *gvc = graphviz();
    const char *format = fmt == GRAPH_SVG ? "svg" : "png";
    int bad = gvc ? gvLayout(gvc, g, "dot") : -1;
    if (!bad) {
        bad = gvRender(gvc, g, format, f);
        gvFreeLayout(gvc, g);
    }
    agseterrf(prev);
    if (bad)
        return lr_fail(LR_ERR_RUNTIME, "%s: Graphviz could not render %s: %s", path, format,
                       gv_message[0] ? gv_message : "no message (is its plugin installed?)");
    return LR_OK;
}

lr_status graph_write(const plan_t *plan, const char *path, graph_summary *sum)
{
    graph_format fmt = graph_format_of(path);
    if (fmt == GRAPH_FORMAT_COUNT)
        return lr_fail(LR_ERR_USAGE, "--graph %s: expected a file ending in .dot, .svg or .png", path);
    if (plan->n_stages == 0)
        return lr_fail(LR_ERR_USAGE, "--graph: the %s plan of %s has no row region to draw",
                       plan_strategy_name(plan->spec.strategy), plan->net->name);
    graph_summary local;
    Agraph_t *g = graph_build(plan, sum ? sum : &local);
    lr_outfile o;
    lr_status s = lr_outfile_open(&o, path);
    if (s == LR_OK) {
        s = render(g, fmt, o.f, path);
        if (s == LR_OK)
            s = lr_outfile_commit(&o);
        else
            lr_outfile_abort(&o);
    }
    agclose(g);
    return s;
}
