/* rowdep.c - the row mapping of every op (see rowdep.h; the mappings of one row range, which
 * the planner calls for every node and partition of every stage it measures, are inline there). */
#include "rowdep.h"

rowrange rowdep_reach(const net_t *net, int node, rowrange in)
{
    const net_node *n = &net->nodes[node];
    int h_in = net->nodes[n->inputs[0]].h;
    LR_ASSERT(net_op_is_row_reduction(n->op));
    if (rr_empty(in))
        return rr_none();
    /* the first bin that ends at or after in.lo, the last that starts at or before in.hi */
    int lo = (int)((int64_t)in.lo * n->h / h_in), hi = (int)((int64_t)in.hi * n->h / h_in);
    while (lo > 0 && rowdep_bin(lo - 1, h_in, n->h).hi >= in.lo)
        lo--;
    while (hi + 1 < n->h && rowdep_bin(hi + 1, h_in, n->h).lo <= in.hi)
        hi++;
    return rr_make(lo, hi);
}

static void analyze_node(const net_t *net, int i, rowdep_info *info)
{
    const net_node *n = &net->nodes[i];
    const net_params *p = &n->prm;
    rowdep_info *o = &info[i];
    const rowdep_info *x = &info[n->inputs[0]];
    o->rf = x->rf;
    o->jump = x->jump;
    o->rowwise = x->rowwise;
    for (int k = 1; k < n->n_inputs; k++) {
        const rowdep_info *y = &info[n->inputs[k]];
        if (y->rf > o->rf)
            o->rf = y->rf;
        if (y->jump > o->jump)
            o->jump = y->jump;
        o->rowwise = o->rowwise && y->rowwise;
    }
    o->overlap = 0;
    switch (n->op) {
    case OP_CONV:
    case OP_MAXPOOL:
    case OP_AVGPOOL: {
        int64_t span = (int64_t)p->dh * (p->kh - 1) + 1;
        /* saturating: strided layers stacked on a 1-row map grow jump past any integer */
        double grow = span > 1 ? (double)(span - 1) * o->jump + 0.5 : 0.0;
        o->rf = grow < (double)(ROWDEP_RF_MAX - o->rf) ? o->rf + (int64_t)grow : ROWDEP_RF_MAX;
        o->jump *= p->sh;
        o->overlap = span - p->sh > 0 ? (int)(span - p->sh) : 0;
        break;
    }
    case OP_UPSAMPLE:
        o->jump /= p->scale;
        break;
    default:
        break;
    }
    if (!net_op_is_rowwise(n->op)) {
        o->rowwise = false;
        o->rf = net->nodes[0].h > o->rf ? net->nodes[0].h : o->rf;
    }
}

void rowdep_analyze(const net_t *net, rowdep_info *info)
{
    info[0].rf = 1;
    info[0].jump = 1.0;
    info[0].overlap = 0;
    info[0].rowwise = true;
    for (int i = 1; i < net->n_nodes; i++)
        analyze_node(net, i, info);
}

void rowdep_cuts(const net_t *net, bool *cut)
{
    /* reach = furthest consumer of any node before i */
    int reach = 0;
    int *last_use = malloc(sizeof(int) * (size_t)net->n_nodes);
    LR_ASSERT(last_use != NULL);
    for (int i = 0; i < net->n_nodes; i++)
        last_use[i] = i;
    for (int i = 1; i < net->n_nodes; i++)
        for (int k = 0; k < net->nodes[i].n_inputs; k++)
            if (i > last_use[net->nodes[i].inputs[k]])
                last_use[net->nodes[i].inputs[k]] = i;
    for (int i = 0; i < net->n_nodes; i++) {
        cut[i] = reach <= i;
        if (last_use[i] > reach)
            reach = last_use[i];
    }
    free(last_use);
}
