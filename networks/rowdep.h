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
    if (rr_empty(a))
        return b;
    if (rr_empty(b))
        return a;
    rowrange r = {a.lo < b.lo ? a.lo : b.lo, a.hi > b.hi ? a.hi : b.hi};
    return r;
}

static inline bool rr_contains(rowrange outer, rowrange inner)
{
    return rr_empty(inner) || (outer.lo <= inner.lo && inner.hi <= outer.hi);
}

/* Rows of input `k` of `node` read to compute output rows `out`, clipped to the input's rows.
 * Empty for an empty `out`; all rows for ops that need every row. */
rowrange rowdep_need(const net_t *net, int node, int k, rowrange out);

/* The last output row of `node` computable when each input k has rows [0, avail[k]] available
 * (an input with avail[k] >= its height - 1 is complete). -1 when none is. */
int rowdep_avail(const net_t *net, int node, const int *avail);

/* Adaptive pooling's bin of output row i: the input rows [floor(i*in/out), ceil((i+1)*in/out) - 1]
 * (for global pooling, out = 1: every row). */
rowrange rowdep_bin(int i, int in, int out);

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
