/* saved.c - what each op's backward reads, and the sizes of the small per-layer tensors: the
 * facts the emitter, the closed form, the plan builder and the executors must share.
 *
 *   conv, maxpool, batchnorm, fc, softmax_xent - backward reads their input (maxpool recomputes
 *   the argmax); relu - its output; everything else - nothing (dropout regenerates its mask
 *   from a seed). flatten is a view of its input.
 * Deliberately not here: when a value is freed (emit.c, closed.c).
 */
#include "plan.h"

bool plan_bwd_reads_input(net_op op)
{
    return op == OP_CONV || op == OP_MAXPOOL || op == OP_BATCHNORM || op == OP_FC ||
           op == OP_SOFTMAX_XENT;
}

bool plan_bwd_reads_output(net_op op)
{
    return op == OP_RELU;
}

/* BN statistics: (2, C) floats mean/invstd + (2, C) doubles sum/sum^2. */
int64_t plan_bn_stats_bytes(const net_t *net, int node)
{
    return 24 * (int64_t)net->nodes[node].c;
}

/* BN gradient reductions: (2, C) doubles. */
int64_t plan_bn_gred_bytes(const net_t *net, int node)
{
    return 16 * (int64_t)net->nodes[node].c;
}

/* The node whose tensors a node uses (flatten is a view of its input). */
int plan_root(const net_t *net, int node)
{
    while (net->nodes[node].op == OP_FLATTEN)
        node = net->nodes[node].inputs[0];
    return node;
}
