/* rowdep.h - receptive-field row dependencies (DESIGN.md, "Row dependencies").
 *
 * For a spatial op with vertical kernel k, stride s, padding p and dilation d, output row r
 * reads input rows [r*s - p, r*s - p + d*(k-1)], clipped to the image (rows outside are padding).
 * Elementwise ops, add and concat map rows 1:1; upsample by f maps r to r/f; adaptive pooling to
 * o rows maps output row i to the input rows of its bin [floor(i*H/o), ceil((i+1)*H/o)) (PyTorch's
 * AdaptiveAvgPool2d; global pooling is the one bin of all rows). Ops that need every row
 * (flatten, fc, the loss) end a row region; the pooling to a fixed size may be its last layer.
 *
 * Deliberately not here: partitions and schedules (plan.h), costs (cost.h).
 */
#ifndef LR_ROWDEP_H
#define LR_ROWDEP_H

#include <stdbool.h>
#include <stdint.h>

#include "net.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Inclusive row range; empty when lo > hi. */
typedef struct {
    int lo, hi;
} rowrange;

static inline bool rr_empty(rowrange r)
{
    return r.lo > r.hi;
}

static inline int rr_count(rowrange r)
{
    return r.lo > r.hi ? 0 : r.hi - r.lo + 1;
}

static inline rowrange rr_make(int lo, int hi)
{
    rowrange r = {lo, hi};
    return r;
}

static inline rowrange rr_none(void)
{
    rowrange r = {1, 0};
    return r;
}

/* Smallest range containing both (the convex hull). */
static inline rowrange rr_hull(rowrange a, rowrange b)
{
    /* (selects, not branches: the planner hulls ranges in loops over partitions) */
    rowrange r = {a.lo < b.lo ? a.lo : b.lo, a.hi > b.hi ? a.hi : b.hi};
    r = rr_empty(b) ? a : r;
    return rr_empty(a) ? b : r;
}

static inline bool rr_contains(rowrange outer, rowrange inner)
{
    return rr_empty(inner) || (outer.lo <= inner.lo && inner.hi <= outer.hi);
}

/* (rowdep_need's and rowdep_avail's arithmetic, inline: the planner maps rows for every node and
 * partition of every stage it measures) */
static inline int rowdep_clamp_(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* Floor division for possibly negative numerators. */
static inline int rowdep_floor_div_(int64_t a, int b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0)))
        q--;
    return (int)q;
}

/* Adaptive pooling's bin of output row i: the input rows [floor(i*in/out), ceil((i+1)*in/out) - 1]
 * (for global pooling, out = 1: every row). */
static inline rowrange rowdep_bin(int i, int in, int out)
{
    return rr_make((int)((int64_t)i * in / out), (int)(((int64_t)(i + 1) * in + out - 1) / out) - 1);
}

/* How output rows of `node` map to the rows of its input k (rowdep_need), its parameters read
 * once: a loop over partitions maps with it from registers. */
typedef enum { ROWMAP_WINDOW, ROWMAP_UPSAMPLE, ROWMAP_BINS, ROWMAP_SAME, ROWMAP_ALL } rowmap_kind;

typedef struct {
    rowmap_kind kind;
    int sh, lo_off, hi_off; /* window: rows [r*sh - lo_off, r*sh + hi_off] */
    int scale;              /* upsample */
    int in_h, out_h;        /* the input's rows; bins: the output's */
} rowmap;

static inline rowmap rowdep_map(const net_t *net, int node, int k)
{
    const net_node *n = &net->nodes[node];
    const net_params *p = &n->prm;
    rowmap m = {ROWMAP_ALL, 0, 0, 0, 1, net->nodes[n->inputs[k]].h, n->h};
    switch (n->op) {
    case OP_CONV:
    case OP_MAXPOOL:
    case OP_AVGPOOL:
        m.kind = ROWMAP_WINDOW, m.sh = p->sh, m.lo_off = p->ph;
        m.hi_off = p->dh * (p->kh - 1) - p->ph;
        break;
    case OP_UPSAMPLE:
        m.kind = ROWMAP_UPSAMPLE, m.scale = p->scale;
        break;
    case OP_ADAPTIVE_AVGPOOL:
    case OP_GLOBAL_AVGPOOL:
        m.kind = ROWMAP_BINS;
        break;
    case OP_RELU:
    case OP_BATCHNORM:
    case OP_ADD:
    case OP_CONCAT:
    case OP_DROPOUT:
        m.kind = ROWMAP_SAME;
        break;
    default:
        break;
    }
    return m;
}

/* Input rows read to compute output rows `out` (rowdep_need with a rowdep_map). */
static inline rowrange rowmap_need(rowmap m, rowrange out)
{
    if (rr_empty(out))
        return rr_none();
    switch (m.kind) {
    case ROWMAP_WINDOW: {
        int64_t lo = (int64_t)out.lo * m.sh - m.lo_off;
        int64_t hi = (int64_t)out.hi * m.sh + m.hi_off;
        if (hi < 0 || lo > m.in_h - 1)
            return rr_none(); /* only padding */
        return rr_make(lo < 0 ? 0 : (int)lo, hi > m.in_h - 1 ? m.in_h - 1 : (int)hi);
    }
    case ROWMAP_UPSAMPLE:
        return rr_make(out.lo / m.scale, out.hi / m.scale);
    case ROWMAP_BINS:
        return rr_make(rowdep_bin(out.lo, m.in_h, m.out_h).lo, rowdep_bin(out.hi, m.in_h, m.out_h).hi);
    case ROWMAP_SAME:
        return out;
    default:
        return rr_make(0, m.in_h - 1);
    }
}

/* Rows of input `k` of `node` read to compute output rows `out`, clipped to the input's rows.
 * Empty for an empty `out`; all rows for ops that need every row. */
static inline rowrange rowdep_need(const net_t *net, int node, int k, rowrange out)
{
    return rowmap_need(rowdep_map(net, node, k), out);
}

/* The last output row of `node` computable when each input k has rows [0, avail[k]] available
 * (an input with avail[k] >= its height - 1 is complete). -1 when none is. */
static inline int rowdep_avail(const net_t *net, int node, const int *avail)
{
    const net_node *n = &net->nodes[node];
    const net_params *p = &n->prm;
    int best = n->h - 1;
    for (int k = 0; k < n->n_inputs; k++) {
        const net_node *x = &net->nodes[n->inputs[k]];
        int a = avail[k];
        int r;
        if (a >= x->h - 1)
            r = n->h - 1;
        else if (a < 0)
            r = -1;
        else {
            switch (n->op) {
            case OP_CONV:
            case OP_MAXPOOL:
            case OP_AVGPOOL:
                /* last r with r*s - p + d*(k-1) <= a */
                r = rowdep_floor_div_((int64_t)a + p->ph - (int64_t)p->dh * (p->kh - 1), p->sh);
                break;
            case OP_UPSAMPLE:
                r = (a + 1) * p->scale - 1;
                break;
            case OP_ADAPTIVE_AVGPOOL:
            case OP_GLOBAL_AVGPOOL: /* the last bin that ends by row a */
                r = (int)((int64_t)(a + 1) * n->h / x->h) - 1;
                break;
            case OP_RELU:
            case OP_BATCHNORM:
            case OP_ADD:
            case OP_CONCAT:
            case OP_DROPOUT:
                r = a;
                break;
            default:
                r = -1; /* needs every row */
            }
        }
        r = rowdep_clamp_(r, -1, n->h - 1);
        if (r < best)
            best = r;
    }
    return best;
}

/* For a row reduction (net_op_is_row_reduction): the output rows whose bins contain any of the
 * input rows `in` (consecutive bins may share a row when in % out != 0). Empty for empty `in`. */
rowrange rowdep_reach(const net_t *net, int node, rowrange in);

#define ROWDEP_RF_MAX ((int64_t)1 << 62) /* rf saturates here (deep strided stacks) */

typedef struct {
    int64_t rf;    /* vertical receptive field, in input-image rows (not clipped, at most
                      ROWDEP_RF_MAX) */
    double jump;   /* input-image rows between consecutive output rows */
    int overlap;   /* rows shared by consecutive stripes at this op: d*(k-1)+1-s when positive */
    bool rowwise;  /* false once any op on the path needs every row */
} rowdep_info;

/* Fills info[0..n_nodes) in one pass over the DAG (darknet-style). */
void rowdep_analyze(const net_t *net, rowdep_info *info);

/* cut[i] = true when the network can be cut after node i: no edge from a node < i reaches a
 * node > i, so node i's output is the only tensor that crosses. cut[0] (the input) is true. */
void rowdep_cuts(const net_t *net, bool *cut);

#ifdef __cplusplus
}
#endif
#endif
