/* plan.c - building a plan from a spec: stage checks and the row ranges of every
 * (node, partition) for the three partitionings (see plan.h).
 * Deliberately not here: schedules (emit.c), peaks (closed.c), choosing specs (strategy.c).
 */
#include "plan.h"

#include <string.h>

static const char *const strategy_names[STRAT_COUNT] = {
    "column", "checkpoint", "row", "2ps", "overl", "2ps-h", "overl-h"};
static const char *const bn_names[BN_COUNT] = {"exact", "stripe", "frozen"};

const char *plan_strategy_name(plan_strategy s)
{
    return s < STRAT_COUNT ? strategy_names[s] : "?";
}

plan_strategy plan_strategy_from_name(const char *name)
{
    for (int s = 0; s < STRAT_COUNT; s++)
        if (strcmp(strategy_names[s], name) == 0)
            return (plan_strategy)s;
    return STRAT_COUNT;
}

const char *plan_bn_name(plan_bn b)
{
    return b < BN_COUNT ? bn_names[b] : "?";
}

int plan_default_region_end(const net_t *net)
{
    bool *cut = malloc((size_t)net->n_nodes);
    LR_ASSERT(cut != NULL);
    rowdep_cuts(net, cut);
    int end = 0, i = 1;
    for (; i < net->n_nodes && net_op_is_rowwise(net->nodes[i].op); i++)
        if (cut[i])
            end = i;
    /* the pooling to a fixed size sums its input's rows: the region runs through it, so the tail
     * starts at its small output instead of keeping its input whole */
    if (i > 1 && i < net->n_nodes && net_op_is_row_reduction(net->nodes[i].op) && cut[i])
        end = i;
    free(cut);
    return end;
}

int plan_split_node(const net_t *net, const plan_stage *st)
{
    return st->sum_in ? net->nodes[st->out_node].inputs[0] : st->out_node;
}

/* ------------------------------------------------------------------ ranges */

/* Per partition j, the highest row of node l that its consumers in the stage read when they
 * compute rows up to hi[c] (-1: none), into best[0 .. parts). (Node by node, every partition in
 * an inner loop: a stage's ranges are stored node by node, plan_idx.) */
static void need_hi_from_consumers(const net_t *net, const plan_stage *st, const int *hi, int l,
                                   int *best)
{
    for (int j = 0; j < st->parts; j++)
        best[j] = -1;
    for (int e = net->cons_off[l]; e < net->cons_off[l + 1]; e++) {
        int c = net->cons_node[e], k = net->cons_slot[e];
        if (c > st->out_node)
            continue;
        const int *hc = hi + plan_idx(st, c, 0);
        rowmap m = rowdep_map(net, c, k);
        if (m.kind == ROWMAP_SAME) { /* rows 0 .. hc[j] (none: -1) */
            for (int j = 0; j < st->parts; j++)
                best[j] = hc[j] > best[j] ? hc[j] : best[j];
            continue;
        }
        for (int j = 0; j < st->parts; j++) {
            rowrange r = rowmap_need(m, rr_make(0, hc[j]));
            if (!rr_empty(r) && r.hi > best[j])
                best[j] = r.hi;
        }
    }
}

/* The end of partition j's share of equal splits of `rows` rows. */
static int split_hi(int rows, int j, int parts)
{
    return (int)((int64_t)(j + 1) * rows / parts) - 1;
}

/* row: equal splits of the stage output (of the reduction's input in a summing stage, whose
 * output rows are those the split finishes), cones propagated backwards. */
static void tile_out(const net_t *net, const plan_stage *st, int *hi, void *scratch)
{
    int P = st->parts, b = st->out_node, split = plan_split_node(net, st), hs = net->nodes[split].h;
    int *need = scratch;
    for (int j = 0; j < P; j++) {
        int last = split_hi(hs, j, P);
        if (split > st->in_node)
            hi[plan_idx(st, split, j)] = last;
        if (split != b)
            hi[plan_idx(st, b, j)] = rowdep_avail(net, b, &last);
    }
    for (int l = split - 1; l > st->in_node; l--) {
        need_hi_from_consumers(net, st, hi, l, need);
        need[P - 1] = net->nodes[l].h - 1;
        int *hl = hi + plan_idx(st, l, 0);
        for (int j = 0; j < P; j++) {
            int prev = j ? hl[j - 1] : -1;
            hl[j] = need[j] > prev ? need[j] : prev;
        }
    }
}

/* 2ps: equal splits of the stage input, availability propagated forwards. */
static void tile_in(const net_t *net, const plan_stage *st, int *hi)
{
    int P = st->parts, ha = net->nodes[st->in_node].h;
    int avail[NET_MAX_INPUTS];
    for (int l = st->in_node + 1; l <= st->out_node; l++) {
        const net_node *n = &net->nodes[l];
        int x = n->inputs[0];
        if (n->n_inputs == 1 && x > st->in_node && rowdep_map(net, l, 0).kind == ROWMAP_SAME) {
            /* the input's rows, already non-decreasing */
            memcpy(hi + plan_idx(st, l, 0), hi + plan_idx(st, x, 0), sizeof(int) * (size_t)P);
            continue;
        }
        for (int j = 0; j < P; j++) {
            for (int k = 0; k < n->n_inputs; k++) {
                int u = n->inputs[k];
                avail[k] = u == st->in_node ? split_hi(ha, j, P) : hi[plan_idx(st, u, j)];
            }
            int prev = j ? hi[plan_idx(st, l, j - 1)] : -1;
            int h = rowdep_avail(net, l, avail);
            hi[plan_idx(st, l, j)] = h > prev ? h : prev;
        }
    }
}

static void own_from_hi(const plan_stage *st, const int *hi, rowrange *own)
{
    int P = st->parts;
    for (int l = st->in_node + 1; l <= st->out_node; l++) {
        const int *h = hi + plan_idx(st, l, 0);
        rowrange *o = own + plan_idx(st, l, 0);
        o[0] = rr_make(0, h[0]);
        for (int j = 1; j < P; j++)
            o[j] = rr_make(h[j - 1] + 1, h[j]);
    }
}

/* Per partition j, the hull of the rows of l that its consumers in the stage read while
 * computing `of[c]` (a summing stage's reduction reads just its partition's share, sum_in), into
 * r[0 .. parts). */
static void need_from_consumers(const net_t *net, const plan_stage *st, const rowrange *of, int l,
                                rowrange *r)
{
    for (int j = 0; j < st->parts; j++)
        r[j] = rr_none();
    for (int e = net->cons_off[l]; e < net->cons_off[l + 1]; e++) {
        int c = net->cons_node[e], k = net->cons_slot[e];
        if (plan_sums_at(st, c)) {
            for (int j = 0; j < st->parts; j++)
                r[j] = rr_hull(r[j], st->sum_in[j]);
        } else if (c <= st->out_node) {
            const rowrange *oc = of + plan_idx(st, c, 0);
            rowmap m = rowdep_map(net, c, k);
            if (m.kind == ROWMAP_SAME) /* (the most common: relu, BatchNorm, add) */
                for (int j = 0; j < st->parts; j++)
                    r[j] = rr_hull(r[j], oc[j]);
            else
                for (int j = 0; j < st->parts; j++)
                    r[j] = rr_hull(r[j], rowmap_need(m, oc[j]));
        }
    }
}

/* need_from_consumers' lowest rows alone (1 << 30: none), all a tiled stage's buffers take from
 * it: a loop of minima over ints, where the hulls of ranges are selects over pairs. */
static void need_lo_from_consumers(const net_t *net, const plan_stage *st, int l, int *lo)
{
    const int none = 1 << 30;
    for (int j = 0; j < st->parts; j++)
        lo[j] = none;
    for (int e = net->cons_off[l]; e < net->cons_off[l + 1]; e++) {
        int c = net->cons_node[e], k = net->cons_slot[e];
        bool sums = plan_sums_at(st, c);
        if (!sums && c > st->out_node)
            continue;
        const rowrange *oc = sums ? st->sum_in : st->own + plan_idx(st, c, 0);
        rowmap m = rowdep_map(net, c, k);
        if (sums || m.kind == ROWMAP_SAME) {
            for (int j = 0; j < st->parts; j++) {
                int v = oc[j].lo <= oc[j].hi ? oc[j].lo : none;
                lo[j] = v < lo[j] ? v : lo[j];
            }
            continue;
        }
        for (int j = 0; j < st->parts; j++) {
            rowrange r = rowmap_need(m, oc[j]);
            if (!rr_empty(r) && r.lo < lo[j])
                lo[j] = r.lo;
        }
    }
}

/* A summing stage: the rows of the reduction's input each partition adds, its own rows of that
 * node (equal splits of the stage input when the stage holds the reduction alone). */
static void sum_inputs(const net_t *net, plan_stage *st)
{
    int x = net->nodes[st->out_node].inputs[0];
    for (int j = 0; j < st->parts; j++)
        st->sum_in[j] = x > st->in_node ? st->own[plan_idx(st, x, j)]
                                        : rr_make(split_hi(net->nodes[x].h, j - 1, st->parts) + 1,
                                                  split_hi(net->nodes[x].h, j, st->parts));
}

/* ... and the output rows they touch. */
static void sum_outputs(const net_t *net, plan_stage *st)
{
    for (int j = 0; j < st->parts; j++) {
        int i = plan_idx(st, st->out_node, j);
        st->comp[i] = st->held[i] = rowdep_reach(net, st->out_node, st->sum_in[j]);
    }
}

/* overl: each partition's cone of its own output rows, plus its own rows at every layer. */
static void overlap_comp(const net_t *net, plan_stage *st, void *scratch)
{
    int P = st->parts, b = st->out_node;
    rowrange *need = scratch;
    if (st->sum_in)
        sum_outputs(net, st);
    else
        memcpy(st->comp + plan_idx(st, b, 0), st->own + plan_idx(st, b, 0), sizeof(rowrange) * P);
    for (int l = b - 1; l > st->in_node; l--) {
        need_from_consumers(net, st, st->comp, l, need);
        int i = plan_idx(st, l, 0);
        for (int j = 0; j < P; j++)
            st->comp[i + j] = rr_hull(st->own[i + j], need[j]);
    }
    memcpy(st->held, st->comp, sizeof(rowrange) * (size_t)(st->out_node - st->in_node) * st->parts);
}

/* Tiled: a buffer holds its own rows plus the earlier rows any later consumer still reads. */
static void tiled_held(const net_t *net, plan_stage *st, void *scratch)
{
    int P = st->parts;
    int *need_lo = scratch; /* (room for P ranges) */
    for (int l = st->in_node + 1; l <= st->out_node; l++) {
        if (l != st->out_node)
            need_lo_from_consumers(net, st, l, need_lo);
        int lo_next = 1 << 30;
        for (int j = P - 1; j >= 0; j--) {
            int i = plan_idx(st, l, j);
            st->comp[i] = st->own[i];
            int lo = rr_empty(st->own[i]) ? 1 << 30 : st->own[i].lo;
            if (l != st->out_node && need_lo[j] < lo)
                lo = need_lo[j];
            if (lo_next < lo)
                lo = lo_next;
            lo_next = lo;
            /* own.hi of an empty own range is the last row computed so far (own_from_hi): such
             * a buffer only carries earlier rows on to the next partition. */
            st->held[i] = rr_make(lo, st->own[i].hi);
        }
    }
    if (st->sum_in)
        sum_outputs(net, st);
}

static lr_status build_stage(const net_t *net, plan_stage *st)
{
    size_t n = (size_t)(st->out_node - st->in_node) * st->parts;
    st->own = malloc(n * sizeof(rowrange));
    st->comp = malloc(n * sizeof(rowrange));
    st->held = malloc(n * sizeof(rowrange));
    bool sums = net_op_is_row_reduction(net->nodes[st->out_node].op);
    st->sum_in = sums ? malloc((size_t)st->parts * sizeof(rowrange)) : NULL;
    int *hi = malloc(n * sizeof(int));
    void *scratch = malloc((size_t)st->parts * sizeof(rowrange)); /* a node's, by partition */
    if (!st->own || !st->comp || !st->held || !hi || !scratch || (sums && !st->sum_in)) {
        free(hi), free(scratch);
        return lr_fail(LR_ERR_NOMEM, "out of memory planning %d partitions", st->parts);
    }
    if (st->kind == PART_TILE_IN)
        tile_in(net, st, hi);
    else
        tile_out(net, st, hi, scratch);
    own_from_hi(st, hi, st->own);
    free(hi);
    if (st->sum_in)
        sum_inputs(net, st);
    if (st->kind == PART_OVERLAP)
        overlap_comp(net, st, scratch);
    else
        tiled_held(net, st, scratch);
    free(scratch);
    return LR_OK;
}

/* ------------------------------------------------------------------ build */

static lr_status check_spec(const net_t *net, const plan_spec *spec, const bool *cut)
{
    if (spec->n_stages < 0 || spec->n_stages > PLAN_MAX_STAGES)
        return lr_fail(LR_ERR_INPUT, "a plan has at most %d stages", PLAN_MAX_STAGES);
    int prev = 0;
    for (int s = 0; s < spec->n_stages; s++) {
        int c = spec->cut[s];
        if (c <= prev || c >= net->n_nodes)
            return lr_fail(LR_ERR_INPUT, "stage %d: cut after node %d is out of order", s, c);
        const net_node *n = &net->nodes[c];
        if (!cut[c])
            return lr_fail(LR_ERR_INPUT,
                           "--region/stage cut %s: a row region must end where only one tensor "
                           "crosses (an earlier layer's output is used after %s)",
                           n->name, n->name);
        for (int l = prev + 1; l <= c; l++)
            if (!net_op_is_rowwise(net->nodes[l].op) &&
                !(l == c && net_op_is_row_reduction(net->nodes[l].op)))
                return lr_fail(LR_ERR_INPUT,
                               "--region/stage cut %s: layer %s (%s) needs every row and cannot be "
                               "in a row region",
                               n->name, net->nodes[l].name, net_op_name(net->nodes[l].op));
        if (spec->parts[s] < 1)
            return lr_fail(LR_ERR_INPUT, "stage %d: partitions must be >= 1", s);
        prev = c;
    }
    return LR_OK;
}

int plan_split_rows(const net_t *net, plan_partitioning kind, int in_node, int out_node)
{
    const net_node *b = &net->nodes[out_node];
    if (kind == PART_TILE_IN)
        return net->nodes[in_node].h;
    return net_op_is_row_reduction(b->op) ? net->nodes[b->inputs[0]].h : b->h;
}

/* Partitions beyond the rows available would be empty everywhere: clamp. */
static int clamp_parts(const net_t *net, plan_partitioning kind, int in_node, int out_node,
                       int parts)
{
    int rows = plan_split_rows(net, kind, in_node, out_node);
    return parts > rows ? rows : parts;
}

/* What a recompute must rebuild: values backward reads, per-stripe BN statistics (not frozen
 * ones, nor those a STATS pass gathered), and whatever they are computed from. */
static lr_status mark_rerun(const net_t *net, plan_stage *st)
{
    st->rerun = calloc((size_t)net->n_nodes, sizeof(bool));
    if (!st->rerun)
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    for (int l = st->out_node - 1; l > st->in_node; l--) {
        const net_node *n = &net->nodes[l];
        bool own_stats = n->op == OP_BATCHNORM && !st->bn_passes && !st->bn_frozen;
        bool need = plan_bwd_reads_output(n->op) || own_stats;
        for (int e = net->cons_off[l]; e < net->cons_off[l + 1] && !need; e++) {
            int c = net->cons_node[e];
            need = c <= st->out_node && (plan_bwd_reads_input(net->nodes[c].op) || st->rerun[c]);
        }
        st->rerun[l] = need;
    }
    return LR_OK;
}

bool plan_has_bn(const net_t *net, int in_node, int out_node)
{
    for (int l = in_node + 1; l <= out_node; l++)
        if (net->nodes[l].op == OP_BATCHNORM)
            return true;
    return false;
}

static lr_status too_many_ranges(const net_t *net, int parts, int layers)
{
    return lr_fail(LR_ERR_INPUT,
                   "%s: %d partitions of a %d-layer stage make more (node, partition) row "
                   "ranges than the %lld lrcnn plans; use fewer --rows",
                   net->name, parts, layers, (long long)PLAN_MAX_RANGES);
}

/* Stage (in, out] of `parts` partitions (clamped already) of `kind`: its row ranges and what its
 * recompute rebuilds. */
/* st->in_rows: per partition, the rows of the input (node 0) its runs read: the windows of
 * the input's readers in the stage over the rows they compute (a backward run reads no more
 * than its forward: own rows within comp), or sum_in for a summing stage's reduction. */
static lr_status input_rows(const net_t *net, plan_stage *st)
{
    st->in_rows = malloc(sizeof *st->in_rows * (size_t)st->parts);
    if (!st->in_rows)
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    for (int j = 0; j < st->parts; j++) {
        rowrange r = rr_none();
        for (int l = st->in_node + 1; l <= st->out_node; l++) {
            const net_node *n = &net->nodes[l];
            for (int k = 0; k < n->n_inputs; k++) {
                if (n->inputs[k] != st->in_node)
                    continue;
                rowrange need = plan_sums_at(st, l)
                                    ? st->sum_in[j]
                                    : rowdep_need(net, l, k, st->comp[plan_idx(st, l, j)]);
                r = rr_hull(r, need);
            }
        }
        st->in_rows[j] = r;
    }
    return LR_OK;
}

lr_status plan_offload_parse(const char *flag, const char *v, unsigned *out)
{
    static const struct {
        const char *name;
        unsigned bits;
    } names[] = {{"none", 0}, {"input", OFFLOAD_INPUT}, {"boundary", OFFLOAD_BOUNDARY},
                 {"input,boundary", OFFLOAD_INPUT | OFFLOAD_BOUNDARY},
                 {"boundary,input", OFFLOAD_INPUT | OFFLOAD_BOUNDARY},
                 {"all", OFFLOAD_INPUT | OFFLOAD_BOUNDARY}};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        if (strcmp(v, names[k].name) == 0) {
            *out = names[k].bits;
            return LR_OK;
        }
    return lr_fail(LR_ERR_USAGE, "%s: expected none, input, boundary or input,boundary, got '%s'", flag, v);
}

lr_status plan_boundaries_parse(const char *flag, const char *v, plan_config *cfg)
{
    if (strcmp(v, "keep") && strcmp(v, "recompute") && strcmp(v, "auto"))
        return lr_fail(LR_ERR_USAGE, "%s: expected keep, recompute or auto, got '%s'", flag, v);
    cfg->recompute_boundaries = strcmp(v, "recompute") == 0;
    cfg->boundaries_auto = strcmp(v, "auto") == 0;
    return LR_OK;
}

const char *plan_boundaries_name(const plan_config *cfg)
{
    return cfg->boundaries_auto ? "auto" : cfg->recompute_boundaries ? "recompute" : "keep";
}

const char *plan_offload_name(unsigned offload)
{
    static const char *const names[] = {"none", "input", "boundary", "input,boundary"};
    return names[offload & 3u];
}

lr_status plan_offload_config(const char *flag, const char *v, plan_config *cfg)
{
    cfg->offload_auto = strcmp(v, "auto") == 0;
    cfg->offload = 0;
    if (cfg->offload_auto || plan_offload_parse(flag, v, &cfg->offload) == LR_OK)
        return LR_OK;
    return lr_fail(LR_ERR_USAGE, "%s: expected none, input, boundary, input,boundary or auto, got '%s'",
                   flag, v);
}

const char *plan_offload_config_name(const plan_config *cfg)
{
    return cfg->offload_auto ? "auto" : plan_offload_name(cfg->offload);
}

int64_t plan_input_rows_bytes(const net_t *net, const plan_config *cfg, rowrange r)
{
    return cost_rows_bytes(net, 0, cfg->batch, cost_dtype_bytes(cfg->dtype), rr_count(r));
}

static lr_status stage_init(const net_t *net, const plan_config *cfg, plan_partitioning kind,
                            int in, int out, int parts, bool last, plan_stage *st)
{
    st->in_node = in;
    st->out_node = out;
    st->parts = parts;
    st->kind = parts == 1 ? PART_TILE_OUT : kind;
    st->bn_passes = parts > 1 && cfg->bn == BN_EXACT && plan_has_bn(net, in, out);
    st->bn_frozen = cfg->bn == BN_FROZEN;
    /* (not under stripe BatchNorm: a stage output's stripe statistics come from the forward's
     * partitions, which are not the twin's) */
    bool twin = cfg->recompute_boundaries && parts > 1 && st->kind != PART_OVERLAP &&
                !(cfg->bn == BN_STRIPE && plan_has_bn(net, in, out));
    st->store_last = last && !st->bn_passes && !twin;
    LR_TRY(build_stage(net, st));
    if (in == 0 && (cfg->offload & OFFLOAD_INPUT))
        LR_TRY(input_rows(net, st));
    st->bnd_on_host = (cfg->offload & OFFLOAD_BOUNDARY) && parts > 1 && st->kind != PART_OVERLAP &&
                      !twin;
    LR_TRY(mark_rerun(net, st));
    if (!twin)
        return LR_OK;
    st->bwd = calloc(1, sizeof *st->bwd);
    if (!st->bwd)
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    /* N partitions of the rows overl splits (2ps splits the input's: at most N of them) */
    int twin_parts = clamp_parts(net, PART_OVERLAP, in, out, parts);
    return stage_init(net, cfg, PART_OVERLAP, in, out, twin_parts, false, st->bwd);
}

bool plan_stage_recomputes(const net_t *net, const plan_config *cfg, const plan_spec *sp, int s)
{
    int in = s > 0 ? sp->cut[s - 1] : 0;
    return (cfg->recompute_boundaries || plan_spec_recomputes(sp, s)) && sp->parts[s] > 1 &&
           sp->kind != PART_OVERLAP && !(cfg->bn == BN_STRIPE && plan_has_bn(net, in, sp->cut[s]));
}

lr_status plan_stage_build(const net_t *net, const plan_config *cfg, plan_partitioning kind,
                           int in, int out, int parts, bool last, plan_stage *st)
{
    memset(st, 0, sizeof *st);
    LR_ASSERT(in >= 0 && in < out && out < net->n_nodes && parts >= 1);
    parts = clamp_parts(net, kind, in, out, parts);
    if ((int64_t)(out - in) * parts > PLAN_MAX_RANGES)
        return too_many_ranges(net, parts, out - in);
    lr_status s = stage_init(net, cfg, kind, in, out, parts, last, st);
    if (s != LR_OK)
        plan_stage_free(st);
    return s;
}

void plan_stage_free(plan_stage *st)
{
    free(st->own), free(st->comp), free(st->held), free(st->sum_in), free(st->rerun);
    free(st->in_rows);
    if (st->bwd) {
        plan_stage_free(st->bwd);
        free(st->bwd);
    }
    memset(st, 0, sizeof *st);
}

lr_status plan_build(const net_t *net, const plan_config *cfg, const plan_spec *spec,
                     plan_t **out)
{
    *out = NULL;
    bool *cut = malloc((size_t)net->n_nodes);
    if (!cut)
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    rowdep_cuts(net, cut);
    lr_status s = check_spec(net, spec, cut);
    free(cut);
    LR_TRY(s);
    plan_t *p = calloc(1, sizeof *p);
    if (!p)
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    p->net = net;
    p->cfg = *cfg;
    p->cfg.offload |= spec->offload; /* the plan's own set under --offload auto */
    p->cfg.offload_auto = false;
    p->spec = *spec;
    p->n_stages = spec->n_stages;
    p->stages = calloc((size_t)(spec->n_stages ? spec->n_stages : 1), sizeof *p->stages);
    if (!p->stages) {
        free(p);
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    }
    int prev = 0;
    int64_t ranges = 0;
    for (int i = 0; i < spec->n_stages && s == LR_OK; i++) {
        int parts = clamp_parts(net, spec->kind, prev, spec->cut[i], spec->parts[i]);
        ranges += (int64_t)(spec->cut[i] - prev) * parts;
        if (ranges > PLAN_MAX_RANGES) {
            s = too_many_ranges(net, parts, spec->cut[i] - prev);
            break;
        }
        p->spec.parts[i] = parts;
        plan_config own = p->cfg; /* the stage's: plan-wide or its own choice */
        own.recompute_boundaries = cfg->recompute_boundaries || plan_spec_recomputes(spec, i);
        s = stage_init(net, &own, spec->kind, prev, spec->cut[i], parts, i == spec->n_stages - 1,
                       &p->stages[i]);
        p->spec.recompute &= ~((uint64_t)1 << i); /* what the stage does */
        p->spec.recompute |= (uint64_t)(p->stages[i].bwd != NULL) << i;
        prev = spec->cut[i];
    }
    p->tail_first = prev + 1;
    if (s != LR_OK) {
        plan_free(p);
        return s;
    }
    *out = p;
    return LR_OK;
}

/* ------------------------------------------------------------------ schedule size */

/* Partitions that compute rows of node l: the runs a pass over l makes at most. */
static int64_t busy_parts(const plan_stage *st, int l)
{
    int64_t n = 0;
    for (int j = 0; j < st->parts; j++)
        n += !rr_empty(st->comp[plan_idx(st, l, j)]);
    return n;
}

/* Runs of the STATS pass of BN `node`: its ancestors in the stage (itself included). */
static int64_t ancestor_runs(const net_t *net, const plan_stage *st, int node, bool *mark,
                             const int64_t *busy)
{
    int64_t n = 0;
    for (int l = st->in_node + 1; l <= node; l++)
        mark[l] = l == node;
    for (int l = node; l > st->in_node; l--) {
        if (!mark[l])
            continue;
        n += busy[l];
        for (int k = 0; k < net->nodes[l].n_inputs; k++)
            mark[net->nodes[l].inputs[k]] = true;
    }
    return n;
}

/* Upper bound on a stage's RUN steps: forward, recompute and backward of every (node,
 * partition) that has rows; with exact BN, per BatchNorm layer a STATS pass over its ancestors
 * and a GSTATS pass (recompute, then backward from the stage output down to the layer). */
static int64_t stage_run_bound(const net_t *net, const plan_stage *st, bool *mark, int64_t *busy)
{
    int64_t all = 0, rerun = 0;
    for (int l = st->in_node + 1; l <= st->out_node; l++) {
        busy[l] = busy_parts(st, l);
        all += busy[l];
        rerun += st->rerun[l] ? busy[l] : 0;
    }
    int64_t runs = 2 * all + rerun, below = all; /* below: runs of nodes b..out_node */
    /* the STATS passes' runs: per BatchNorm its ancestors' (the scripts: per node, its passes) */
    const int *stats_of = st->scripts ? plan_scripts_stats_of(st->scripts) : NULL;
    for (int b = st->in_node + 1; st->bn_passes && b <= st->out_node; b++) {
        if (stats_of)
            runs += stats_of[b] * busy[b];
        if (net->nodes[b].op == OP_BATCHNORM)
            runs += (stats_of ? 0 : ancestor_runs(net, st, b, mark, busy)) + rerun + below + 1;
        below -= busy[b];
    }
    return runs;
}

int64_t plan_stage_runs(const net_t *net, const plan_stage *st)
{
    bool *mark = malloc((size_t)net->n_nodes);
    int64_t *busy = malloc(sizeof(int64_t) * (size_t)net->n_nodes);
    LR_ASSERT(mark && busy);
    int64_t runs = stage_run_bound(net, st, mark, busy);
    if (st->bwd) /* its backward's runs are the twin's (counted in full: a bound) */
        runs += stage_run_bound(net, st->bwd, mark, busy);
    free(mark);
    free(busy);
    return runs;
}

int64_t plan_stage_run_bound(const plan_t *plan, int s)
{
    return plan_stage_runs(plan->net, &plan->stages[s]);
}

int64_t plan_run_bound(const plan_t *plan)
{
    int64_t runs = 2 * (int64_t)plan->net->n_nodes; /* tail forward and backward, updates */
    for (int i = 0; i < plan->n_stages; i++)
        runs += plan_stage_run_bound(plan, i);
    return runs;
}

lr_status plan_check_emit(const plan_t *plan)
{
    int64_t runs = plan_run_bound(plan);
    if (runs <= PLAN_MAX_RUNS)
        return LR_OK;
    int bn = 0;
    for (int i = 0; i < plan->n_stages; i++)
        for (int l = plan->stages[i].in_node + 1; plan->stages[i].bn_passes && l <= plan->stages[i].out_node; l++)
            bn += plan->net->nodes[l].op == OP_BATCHNORM;
    char why[160] = "";
    if (bn)
        snprintf(why, sizeof why, " (--bn exact runs a statistics pass per BatchNorm layer in a "
                                  "partitioned stage: %d here)", bn);
    int most = 1;
    for (int i = 0; i < plan->n_stages; i++)
        most = plan->stages[i].parts > most ? plan->stages[i].parts : most;
    const char *advice = bn ? (most > 2 ? "--bn stripe, a hybrid strategy, or fewer --rows"
                                        : "--bn stripe or a hybrid strategy")
                            : "fewer --rows";
    return lr_fail(LR_ERR_INPUT,
                   "%s: the %s schedule would hold up to %lld kernel runs, more than the %lld "
                   "lrcnn builds%s; use %s",
                   plan->net->name, plan_strategy_name(plan->spec.strategy), (long long)runs,
                   (long long)PLAN_MAX_RUNS, why, advice);
}

void plan_free(plan_t *plan)
{
    if (!plan)
        return;
    for (int i = 0; i < plan->n_stages; i++)
        plan_stage_free(&plan->stages[i]);
    free(plan->stages);
    free(plan);
}
