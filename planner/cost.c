/* cost.c - bytes and FLOPs per node (see cost.h for the table). */
#include "cost.h"

#include "checked.h"

static const char *const dtype_names[DT_COUNT] = {"fp32", "fp16", "bf16"};
static const int dtype_bytes[DT_COUNT] = {4, 2, 2};
static const char *const optim_names[OPTIM_COUNT] = {"sgd", "momentum", "adam"};
static const int optim_slots[OPTIM_COUNT] = {0, 1, 2};

const char *cost_dtype_name(plan_dtype d)
{
    return d < DT_COUNT ? dtype_names[d] : "?";
}

int cost_dtype_bytes(plan_dtype d)
{
    return d < DT_COUNT ? dtype_bytes[d] : 4;
}

const char *cost_optim_name(plan_optim o)
{
    return o < OPTIM_COUNT ? optim_names[o] : "?";
}

int cost_optim_slots(plan_optim o)
{
    return o < OPTIM_COUNT ? optim_slots[o] : 0;
}

int64_t cost_rows_bytes(const net_t *net, int node, int batch, int elem_bytes, int rows)
{
    const net_node *n = &net->nodes[node];
    if (rows <= 0)
        return 0;
    return (int64_t)batch * n->c * rows * n->w * elem_bytes;
}

int64_t cost_node_bytes(const net_t *net, int node, int batch, int elem_bytes)
{
    return cost_rows_bytes(net, node, batch, elem_bytes, net->nodes[node].h);
}

/* FLOPs per output element of the forward pass; INT64_MAX when it does not fit (absurd
 * channel counts or kernels, refused by cost_check_layers). */
static int64_t fwd_per_element(const net_t *net, const net_node *n)
{
    const net_node *x = &net->nodes[n->inputs[0]];
    const net_params *p = &n->prm;
    int64_t v = 0;
    switch (n->op) {
    case OP_CONV:
        return lr_mul6(2, x->c / p->groups, p->kh, p->kw, 1, 1, &v) && lr_add(v, p->bias, &v) ? v
                                                                                            : INT64_MAX;
    case OP_FC:
        return lr_mul6(2, x->c, x->h, x->w, 1, 1, &v) && lr_add(v, p->bias, &v) ? v : INT64_MAX;
    case OP_MAXPOOL:
    case OP_AVGPOOL:
        return (int64_t)p->kh * p->kw;
    case OP_BATCHNORM:
        return 4;
    case OP_ADD:
        return n->n_inputs - 1;
    case OP_GLOBAL_AVGPOOL:
    case OP_ADAPTIVE_AVGPOOL:
        return ((int64_t)x->h * x->w + (int64_t)n->h * n->w - 1) / ((int64_t)n->h * n->w);
    case OP_SOFTMAX_XENT:
        return 4 * (int64_t)x->c;
    case OP_FLATTEN:
        return 0;
    default:
        return 1;
    }
}

int64_t cost_sum_flops(const net_t *net, int node, int batch, int in_rows)
{
    const net_node *x = &net->nodes[net->nodes[node].inputs[0]];
    return in_rows <= 0 ? 0 : (int64_t)batch * x->c * in_rows * x->w;
}

int64_t cost_fwd_flops(const net_t *net, int node, int batch, int rows)
{
    const net_node *n = &net->nodes[node];
    if (rows <= 0 || node == 0)
        return 0;
    if (net_op_is_row_reduction(n->op)) /* one add per input element (all of them for every row) */
        return cost_sum_flops(net, node, batch,
                              (int)((int64_t)rows * net->nodes[n->inputs[0]].h / n->h));
    return fwd_per_element(net, n) * batch * n->c * rows * n->w;
}

int64_t cost_bwd_flops(const net_t *net, int node, int batch, int rows)
{
    const net_node *n = &net->nodes[node];
    int64_t f = cost_fwd_flops(net, node, batch, rows);
    return n->op == OP_CONV || n->op == OP_FC ? 2 * f : f;
}

int64_t cost_stats_flops(const net_t *net, int node, int batch, int rows)
{
    const net_node *n = &net->nodes[node];
    if (rows <= 0)
        return 0;
    return 3 * (int64_t)batch * n->c * rows * n->w;
}

static lr_status too_large(const net_t *net, int batch, const net_node *n)
{
    return lr_fail(LR_ERR_INPUT,
                   "batch %d with layer %s (%d x %d x %d per image) overflows 64-bit byte or FLOP "
                   "counts: use a smaller batch or input",
                   batch, n->name, n->c, n->h, n->w);
}

/* Bytes of the layer's whole output and its largest FLOP count (forward, backward = twice
 * forward for conv and fc, statistics = 3 per element), false when either overflows. */
static bool layer_counts(const net_t *net, int i, int batch, int elem_bytes, int64_t *bytes,
                         int64_t *flops)
{
    const net_node *n = &net->nodes[i];
    int64_t per = i ? fwd_per_element(net, n) : 0, elems;
    bool twice = n->op == OP_CONV || n->op == OP_FC;
    if (per == INT64_MAX || !lr_mul6(batch, n->c, n->h, n->w, 1, 1, &elems) ||
        !lr_mul(elems, elem_bytes, bytes) || !lr_mul(per, twice ? 2 : 1, &per))
        return false;
    return lr_mul(elems, per > 3 ? per : 3, flops);
}

lr_status cost_check_layers(const net_t *net, int batch, int elem_bytes)
{
    for (int i = 0; i < net->n_nodes; i++) {
        int64_t bytes, flops;
        if (!layer_counts(net, i, batch, elem_bytes, &bytes, &flops))
            return too_large(net, batch, &net->nodes[i]);
    }
    return LR_OK;
}

lr_status cost_check_limits(const net_t *net, int batch, int elem_bytes, int64_t multiplier)
{
    const int64_t limit = (int64_t)1 << 62;
    int64_t total = 0;
    for (int i = 0; i < net->n_nodes; i++) {
        const net_node *n = &net->nodes[i];
        int64_t bytes, flops, per = i ? fwd_per_element(net, n) : 0;
        bool ok = per < INT64_MAX - 3 &&
                  lr_mul6(batch, n->c, n->h, n->w, elem_bytes, multiplier, &bytes) &&
                  lr_mul6(batch, n->c, n->h, n->w, per + 3, 2 * multiplier, &flops) &&
                  lr_add(total, bytes > flops ? bytes : flops, &total) && total < limit;
        if (!ok)
            return too_large(net, batch, n);
    }
    return LR_OK;
}
