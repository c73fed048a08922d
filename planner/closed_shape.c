/* closed_shape.c - partition shapes (closed_walk.h): the row counts a partition's walks read, a
 * stage's partitions sorted by them, and a small memo of the summaries walked per shape.
 *
 * A shape's key holds four ints of the partition (first, last, before the last, its input rows
 * under --offload input), then per node of the stage the counts its walks read (node_counts).
 * The keys are made once per stage and evaluation (closed_shapes_of), not once per walk: a stage
 * with statistics passes has three or four memos, and making each its keys was 7.5% of resnet101's
 * --fit (perf). Equal keys are found by a hash of the key, then compared whole.
 * A memo's key is the shape's number and the caller's extra ints. Each shape's key is kept
 * (closed_shapes.keys) for walks that read a part of the stage (closed_stats.c's scripts).
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
/* Segments pay where a stage has many shapes: with a few, the whole shapes' walks are few, and
 * looking segments up and piecing walks together costs about what it saves (resnet101 --fit
 * h100-80gb, one thread, callgrind: from 4 shapes up 11.23 G instructions, from 8 10.94 G, from
 * 12 10.93 G, from 20 11.01 G, from 32 11.36 G; without segments 11.73 G). */
enum { SEGMENTS_MIN_SHAPES = 12 };

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

static int key_len_of(const plan_stage *st)
{
    int per_node = st->kind == PART_OVERLAP ? 2 : 4;
    int len = per_node * (st->out_node - st->in_node) + PER_PART;
    return st->sum_in ? len + 7 - per_node : len;
}

/* Every partition's key, partition j's at keys + j * len: node by node, the ranges of a node
 * being stored partition after partition (plan_idx), and read so. */
static void shape_keys(const plan_stage *st, int len, int32_t *keys)
{
    for (int j = 0; j < st->parts; j++) {
        int32_t *k = keys + (size_t)j * len;
        *k++ = j == 0;
        *k++ = j == st->parts - 1;
        *k++ = j + 1 == st->parts - 1;
        *k++ = st->in_rows ? rr_count(st->in_rows[j]) : -1;
    }
    int at = PER_PART;
    for (int l = st->in_node + 1; l <= st->out_node; l++) {
        int32_t *end = NULL;
        for (int j = 0; j < st->parts; j++)
            end = node_counts(st, l, j, keys + (size_t)j * len + at);
        at = (int)(end - keys - (size_t)(st->parts - 1) * len);
    }
    LR_ASSERT(at == len);
}

/* Four independent multiply-add lanes (a single FNV chain was two thirds of the sorting's time:
 * each step waits for the last multiply). */
static uint64_t key_hash(const int32_t *k, int len)
{
    const uint64_t m = 0x9E3779B97F4A7C15u;
    uint64_t h[4] = {1, 2, 3, 4};
    int q = 0;
    for (; q + 4 <= len; q += 4)
        for (int r = 0; r < 4; r++)
            h[r] = (h[r] + (uint32_t)k[q + r]) * m;
    for (; q < len; q++)
        h[0] = (h[0] + (uint32_t)k[q]) * m;
    uint64_t x = h[0] ^ (h[1] >> 17) ^ (h[2] << 13) ^ (h[3] >> 29);
    return x ^ (x >> 31);
}

void closed_shapes_init(closed_shapes *s, const plan_stage *st)
{
    memset(s, 0, sizeof *s);
    s->st = st;
    s->off = st->parts < MEMO_MIN_PARTS;
    if (s->off)
        return;
    int P = st->parts, len = key_len_of(st);
    /* the first partition of each shape: its key, and an open-addressed table of them by hash */
    int slots = 1;
    while (slots < 2 * P)
        slots *= 2;
    int32_t *keys = malloc(sizeof(int32_t) * (size_t)len * (size_t)P);
    int *table = malloc(sizeof(int) * (size_t)slots), *first = malloc(sizeof(int) * (size_t)P);
    s->len = len;
    uint64_t *hash = malloc(sizeof(uint64_t) * (size_t)P);
    s->of = malloc(sizeof(int) * (size_t)P);
    LR_ASSERT(keys && table && first && hash && s->of);
    shape_keys(st, len, keys);
    for (int q = 0; q < slots; q++)
        table[q] = -1;
    for (int j = 0; j < P; j++) {
        const int32_t *key = keys + (size_t)j * len;
        uint64_t h = key_hash(key, len);
        size_t q = (size_t)h & (size_t)(slots - 1);
        for (; table[q] >= 0; q = (q + 1) & (size_t)(slots - 1)) {
            int e = table[q];
            if (hash[e] == h &&
                memcmp(keys + (size_t)first[e] * len, key, sizeof(int32_t) * (size_t)len) == 0)
                break;
        }
        if (table[q] < 0) { /* a new shape, j its first partition */
            int e = s->n++;
            first[e] = j, hash[e] = h;
            table[q] = e;
        }
        s->of[j] = table[q];
    }
    /* each shape's key (its first partition's), for walks that read a part of it */
    s->keys = malloc(sizeof(int32_t) * (size_t)len * (size_t)s->n);
    LR_ASSERT(s->keys != NULL);
    for (int e = 0; e < s->n; e++)
        memcpy(s->keys + (size_t)e * len, keys + (size_t)first[e] * len, sizeof(int32_t) * (size_t)len);
    free(keys), free(table), free(first), free(hash);
}

int closed_shape_node_at(const plan_stage *st, int l)
{
    int per_node = st->kind == PART_OVERLAP ? 2 : 4;
    return l > st->out_node ? key_len_of(st) : PER_PART + per_node * (l - st->in_node - 1);
}

void closed_shapes_free(closed_shapes *s)
{
    free(s->of), free(s->keys);
    memset(s, 0, sizeof *s);
}

struct closed_shapes_list {
    closed_shapes s;
    struct closed_shapes_list *next;
};

const closed_shapes *closed_shapes_of(evaluator *v, const plan_stage *st)
{
    for (struct closed_shapes_list *e = v->shapes; e; e = e->next)
        if (e->s.st == st)
            return &e->s;
    struct closed_shapes_list *e = malloc(sizeof *e);
    LR_ASSERT(e != NULL);
    closed_shapes_init(&e->s, st);
    e->next = v->shapes;
    v->shapes = e;
    return &e->s;
}

void closed_shapes_release(evaluator *v)
{
    while (v->shapes) {
        struct closed_shapes_list *e = v->shapes;
        v->shapes = e->next;
        closed_shapes_free(&e->s);
        free(e);
    }
}

void closed_memo_init(closed_memo *m, const closed_shapes *s, int extra, size_t val_bytes)
{
    memset(m, 0, sizeof *m);
    m->off = s->off || s->n == s->st->parts; /* (every partition its own shape: nothing to find) */
    m->of = s->of;
    m->extra = extra;
    m->key_len = 1 + extra;
    m->val_bytes = (val_bytes + 15) / 16 * 16; /* each value aligned as malloc's */
    if (m->off)
        return;
    m->key = malloc(sizeof(int32_t) * (size_t)m->key_len);
    /* room for a value per shape up front, up to the cap (extra ints may make more keys) */
    m->cap = s->n < MEMO_CAP ? s->n : MEMO_CAP;
    m->keys = malloc(sizeof(int32_t) * (size_t)m->key_len * (size_t)m->cap);
    m->vals = malloc(m->val_bytes * (size_t)m->cap);
    LR_ASSERT(m->key && m->keys && m->vals);
}

void closed_memo_free(closed_memo *m)
{
    free(m->keys), free(m->vals), free(m->key);
    memset(m, 0, sizeof *m);
}

int32_t *closed_memo_key(closed_memo *m, int j)
{
    if (m->off)
        return NULL;
    m->key[0] = m->of[j];
    return m->key + 1;
}

const void *closed_memo_find(closed_memo *m)
{
    if (m->off)
        return NULL;
    size_t len = sizeof(int32_t) * (size_t)m->key_len;
    for (int e = 0; e < m->n; e++)
        if (m->keys[(size_t)e * m->key_len] == m->key[0] &&
            memcmp(m->keys + (size_t)e * m->key_len, m->key, len) == 0)
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
        m->cap = m->cap < MEMO_CAP ? m->cap : MEMO_CAP;
        m->keys = realloc(m->keys, sizeof(int32_t) * (size_t)m->key_len * (size_t)m->cap);
        m->vals = realloc(m->vals, m->val_bytes * (size_t)m->cap);
        LR_ASSERT(m->keys && m->vals);
    }
    int e = m->n++;
    memcpy(m->keys + (size_t)e * m->key_len, m->key, sizeof(int32_t) * (size_t)m->key_len);
    return m->vals + (size_t)e * m->val_bytes;
}

/* ------------------------------------------------------------------ segments */

void closed_segments_init(closed_segments *s, const net_t *net, const closed_shapes *shapes)
{
    memset(s, 0, sizeof *s);
    const plan_stage *st = shapes->st;
    s->off = shapes->off || shapes->n < SEGMENTS_MIN_SHAPES || shapes->st->whole_walks;
    if (s->off)
        return;
    s->shapes = shapes;
    int n_local = st->out_node - st->in_node;
    s->n = (n_local + CLOSED_SEGMENT_NODES - 1) / CLOSED_SEGMENT_NODES;
    s->first = malloc(sizeof(int) * 6 * (size_t)(s->n + 1));
    s->keys = calloc((size_t)s->n, sizeof *s->keys);
    s->vals = calloc((size_t)s->n, sizeof *s->vals);
    LR_ASSERT(s->first && s->keys && s->vals);
    s->lo = s->first + s->n + 1, s->hi = s->lo + s->n + 1;
    s->count = s->hi + s->n + 1, s->cap = s->count + s->n + 1, s->low = s->cap + s->n + 1;
    for (int g = 0; g < s->n; g++) {
        int a = st->in_node + 1 + g * CLOSED_SEGMENT_NODES;
        int b = a + CLOSED_SEGMENT_NODES - 1 < st->out_node ? a + CLOSED_SEGMENT_NODES - 1 : st->out_node;
        int low = a;
        for (int l = a; l <= b; l++)
            for (int k = 0; k < net->nodes[l].n_inputs; k++) {
                int u = net->nodes[l].inputs[k];
                if (u > st->in_node && u < low)
                    low = u;
            }
        s->first[g] = a, s->low[g] = low;
        s->lo[g] = closed_shape_node_at(st, low), s->hi[g] = closed_shape_node_at(st, b + 1);
        s->count[g] = s->cap[g] = 0;
    }
    s->first[s->n] = st->out_node + 1;
}

void closed_segments_values(closed_segments *s, int extra, size_t val_bytes)
{
    s->extra = extra;
    s->val_bytes = (val_bytes + 15) / 16 * 16;
}

int closed_segments_reach(const closed_segments *s)
{
    int most = 0;
    for (int g = 0; g < s->n; g++)
        most = s->first[g + 1] - s->low[g] > most ? s->first[g + 1] - s->low[g] : most;
    return most;
}

void closed_segments_free(closed_segments *s)
{
    for (int g = 0; g < s->n && !s->off; g++)
        free(s->keys[g]), free(s->vals[g]);
    if (!s->off)
        free(s->first), free(s->keys), free(s->vals);
    memset(s, 0, sizeof *s);
}

void *closed_segments_take(closed_segments *s, int g, int j, const int32_t *extra, bool *fresh)
{
    LR_ASSERT(!s->off);
    const closed_shapes *sh = s->shapes;
    int e = sh->of[j], key_len = 1 + s->extra, lo = s->lo[g], hi = s->hi[g];
    const int32_t *x = sh->keys + (size_t)e * sh->len;
    size_t extra_bytes = sizeof(int32_t) * (size_t)s->extra;
    for (int q = 0; q < s->count[g]; q++) {
        const int32_t *k = s->keys[g] + (size_t)q * key_len;
        if (s->extra && memcmp(k + 1, extra, extra_bytes) != 0)
            continue;
        const int32_t *y = sh->keys + (size_t)k[0] * sh->len;
        if (k[0] == e || (memcmp(x, y, sizeof(int32_t) * PER_PART) == 0 &&
                          memcmp(x + lo, y + lo, sizeof(int32_t) * (size_t)(hi - lo)) == 0)) {
            *fresh = false;
            return s->vals[g] + (size_t)q * s->val_bytes;
        }
    }
    if (s->count[g] == s->cap[g]) {
        int cap = s->cap[g] ? 2 * s->cap[g] : 4;
        s->keys[g] = realloc(s->keys[g], sizeof(int32_t) * (size_t)key_len * (size_t)cap);
        s->vals[g] = realloc(s->vals[g], s->val_bytes * (size_t)cap);
        LR_ASSERT(s->keys[g] && s->vals[g]);
        s->cap[g] = cap;
    }
    int q = s->count[g]++;
    int32_t *k = s->keys[g] + (size_t)q * key_len;
    k[0] = e;
    if (s->extra)
        memcpy(k + 1, extra, extra_bytes);
    *fresh = true;
    return s->vals[g] + (size_t)q * s->val_bytes;
}
