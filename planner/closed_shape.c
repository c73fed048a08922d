/* closed_shape.c - partition shapes (closed_walk.h): the row counts a partition's walks read,
 * as a key, and a small memo of the summaries walked under each key.
 *
 * A key holds four ints of the partition (first, last, before the last, its input rows under
 * --offload input), then per node of the stage the counts its walks read (node_counts), then the
 * caller's extra ints. Lookups compare the keys themselves: keys of different shapes differ within
 * their first layers (their rounding), so a miss costs a few ints per entry; a serial hash of the
 * whole key left 2ps's resnet101 --fit no faster than walking every partition (0.65 s against
 * 0.60 s), comparing keys made it 0.48 s.
 * Deliberately not here: what a walk makes (closed_walk.c), which walks are summarised
 * (closed.c, closed_stats.c).
 */
#include "closed_walk.h"

#include <string.h>

enum { PER_PART = 4, MEMO_CAP = 64 };
/* Fewer partitions are nearly all of their own shape (the first and the last differ from the
 * rest). 3, 4 and 6 measured alike on resnet101's and resnet50's --fit (1.34-1.38 s, 1.78-1.85 s):
 * 6 keeps the hybrids' many small stages on the plain walk. */
enum { MEMO_MIN_PARTS = 6 };

void closed_memo_init(closed_memo *m, const plan_stage *st, int extra, size_t val_bytes)
{
    memset(m, 0, sizeof *m);
    m->off = st->parts < MEMO_MIN_PARTS;
    m->extra = extra;
    int per_node = st->kind == PART_OVERLAP ? 2 : 4;
    m->key_len = per_node * (st->out_node - st->in_node) + PER_PART + extra;
    if (st->sum_in)
        m->key_len += 7 - per_node;
    m->val_bytes = (val_bytes + 15) / 16 * 16; /* each value aligned as malloc's */
    m->key = malloc(sizeof(int32_t) * (size_t)m->key_len);
    LR_ASSERT(m->key != NULL);
    /* room for a shape per partition up front (growing by doubling copied the keys: 1.3% of
     * resnet101's --fit) */
    if (!m->off) {
        m->cap = st->parts < MEMO_CAP ? st->parts : MEMO_CAP;
        m->keys = malloc(sizeof(int32_t) * (size_t)m->key_len * (size_t)m->cap);
        m->vals = malloc(m->val_bytes * (size_t)m->cap);
        LR_ASSERT(m->keys && m->vals);
    }
}

void closed_memo_free(closed_memo *m)
{
    free(m->keys), free(m->vals), free(m->key);
    memset(m, 0, sizeof *m);
}

/* The counts of node l in partition j that its walks read. Overlapping: held = comp, and the
 * backward runs comp (no heads, no boundaries): comp and own. Tiled: comp = own, the backward runs
 * own, and both heads are the rows before own: held, own, the head and the boundary. A summing
 * stage's output breaks those rules (comp is the bins its rows touch, the backward runs sum_in):
 * all seven. */
static int32_t *node_counts(const plan_stage *st, int l, int j, int32_t *k)
{
    int i = plan_idx(st, l, j);
    rowrange held = st->held[i], own = st->own[i];
    if (plan_sums_at(st, l)) {
        *k++ = rr_count(held);
        *k++ = rr_count(st->comp[i]);
        *k++ = rr_count(own);
        *k++ = rr_count(closed_head(st, l, j));
        *k++ = rr_count(rr_make(held.lo, own.lo - 1));
        *k++ = rr_count(closed_boundary(st, l, j));
        *k++ = rr_count(closed_bwd_rows(st, l, j));
    } else if (st->kind == PART_OVERLAP) {
        *k++ = rr_count(held);
        *k++ = rr_count(own);
    } else {
        *k++ = rr_count(held);
        *k++ = rr_count(own);
        *k++ = rr_count(rr_make(held.lo, own.lo - 1));
        *k++ = rr_count(closed_boundary(st, l, j));
    }
    return k;
}

int32_t *closed_memo_key(closed_memo *m, const plan_stage *st, int j)
{
    if (m->off)
        return NULL;
    int32_t *k = m->key;
    *k++ = j == 0;
    *k++ = j == st->parts - 1;
    *k++ = j + 1 == st->parts - 1;
    *k++ = st->in_rows ? rr_count(st->in_rows[j]) : -1;
    for (int l = st->in_node + 1; l <= st->out_node; l++)
        k = node_counts(st, l, j, k);
    LR_ASSERT(k - m->key == m->key_len - m->extra);
    return k;
}

const void *closed_memo_find(closed_memo *m)
{
    if (m->off)
        return NULL;
    size_t len = sizeof(int32_t) * (size_t)m->key_len;
    for (int e = 0; e < m->n; e++)
        if (memcmp(m->keys + (size_t)e * m->key_len, m->key, len) == 0)
            return m->vals + (size_t)e * m->val_bytes;
    return NULL;
}

void *closed_memo_take(closed_memo *m, void *spare, bool *fresh)
{
    void *w = (void *)closed_memo_find(m);
    *fresh = w == NULL;
    if (!w)
        w = closed_memo_add(m);
    return w ? w : spare;
}

void *closed_memo_add(closed_memo *m)
{
    if (m->off || m->n == MEMO_CAP)
        return NULL;
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 8;
        m->keys = realloc(m->keys, sizeof(int32_t) * (size_t)m->key_len * (size_t)m->cap);
        m->vals = realloc(m->vals, m->val_bytes * (size_t)m->cap);
        LR_ASSERT(m->keys && m->vals);
    }
    int e = m->n++;
    memcpy(m->keys + (size_t)e * m->key_len, m->key, sizeof(int32_t) * (size_t)m->key_len);
    return m->vals + (size_t)e * m->val_bytes;
}
