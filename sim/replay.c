/* replay.c - replaying a schedule under an allocator model (see sim.h).
 *
 * One replay engine (replay_t) walks the steps; the allocator models differ only in what an
 * ALLOC or FREE costs: the tensor's bytes (exact), its bytes rounded up to cudaMalloc's 2 MiB
 * (cuda), or a block of the caching-allocator model below (caching). sim_replay keeps the
 * peaks, sim_timeline keeps one point per step. Byte and FLOP sums are overflow-checked.
 *
 * Deliberately not here: checking a schedule beyond ALLOC/FREE pairing (sched_validate does
 * that), writing files (trace.c), releasing cached segments (the model has no memory limit, so
 * PyTorch's free-and-retry on OOM never happens).
 */
#include "sim.h"

#include <stdbool.h>
#include <string.h>

#include "checked.h"

#define MIB ((int64_t)1 << 20)

static const char *const allocator_names[ALLOC_COUNT] = {"exact", "cuda", "caching"};

const char *sim_allocator_name(sim_allocator a)
{
    return (unsigned)a < ALLOC_COUNT ? allocator_names[a] : "?";
}

sim_allocator sim_allocator_from_name(const char *name)
{
    for (int a = 0; name && a < ALLOC_COUNT; a++)
        if (strcmp(name, allocator_names[a]) == 0)
            return (sim_allocator)a;
    return ALLOC_COUNT;
}

/* n rounded up to a multiple of m (m > 0); false on overflow. */
static bool round_up(int64_t n, int64_t m, int64_t *out)
{
    if (n > INT64_MAX - (m - 1))
        return false;
    *out = (n + m - 1) / m * m;
    return true;
}

/* ------------------------------------------------------------------ caching allocator model
 *
 * PyTorch's CUDACachingAllocator with its default configuration (no max_split_size, no
 * expandable segments, one stream). The constants carry PyTorch's names in their comments.
 * Segments are laid out end to end in one address space, so "lowest address" is well defined
 * and ties between equal-sized free blocks break towards older segments, as with real pointers
 * most of the time.
 *
 * Free blocks of each pool sit in a treap ordered by (size, addr): best fit, insert and erase
 * are each one descent, O(log n) expected. The blocks of a segment form a doubly linked list by
 * address so that a freed block finds its neighbours in O(1). Blocks live in one array and are
 * named by index; slots of merged-away blocks are recycled.
 */

#define CA_MIN_BLOCK 512              /* kMinBlockSize: requests round up to a multiple */
#define CA_SMALL_SIZE MIB             /* kSmallSize: the largest request of the small pool */
#define CA_SMALL_BUFFER (2 * MIB)     /* kSmallBuffer: a small-pool segment */
#define CA_LARGE_BUFFER (20 * MIB)    /* kLargeBuffer: the segment for requests < 10 MiB */
#define CA_MIN_LARGE_ALLOC (10 * MIB) /* kMinLargeAlloc */
#define CA_ROUND_LARGE (2 * MIB)      /* kRoundLarge: larger segments round up to this */

enum { POOL_SMALL, POOL_LARGE, POOL_COUNT };

typedef struct {
    int64_t addr, size;
    int32_t prev, next;  /* neighbours in the segment by address, -1 at its ends; an unused
                            slot chains the next unused one through `next` */
    int32_t left, right; /* children in the pool's free tree while free */
    uint32_t prio;       /* treap priority: a max-heap on random priorities keeps depth O(log n) */
    uint8_t pool, allocated;
} ca_block;

typedef struct {
    ca_block *b;
    int32_t n, cap;
    int32_t unused;            /* first recycled slot, -1 when none */
    int32_t root[POOL_COUNT];  /* free tree per pool */
    int64_t top;               /* where the next segment starts */
    uint32_t rng;
} ca_heap;

static void ca_init(ca_heap *c)
{
    memset(c, 0, sizeof *c);
    c->unused = -1;
    c->root[POOL_SMALL] = c->root[POOL_LARGE] = -1;
    c->rng = 0x9e3779b9u;
}

static void ca_free_heap(ca_heap *c)
{
    free(c->b);
    c->b = NULL;
}

static uint32_t ca_random(ca_heap *c)
{
    c->rng ^= c->rng << 13; /* xorshift32: deterministic, so replays are reproducible */
    c->rng ^= c->rng >> 17;
    c->rng ^= c->rng << 5;
    return c->rng;
}

/* A fresh slot, or -1 when memory runs out. Invalidates pointers into c->b. */
static int32_t ca_new_block(ca_heap *c)
{
    if (c->unused >= 0) {
        int32_t x = c->unused;
        c->unused = c->b[x].next;
        return x;
    }
    if (c->n == c->cap) {
        if (c->cap > (1 << 29))
            return -1;
        int32_t cap = c->cap ? 2 * c->cap : 1024;
        ca_block *b = realloc(c->b, (size_t)cap * sizeof *b);
        if (!b)
            return -1;
        c->b = b;
        c->cap = cap;
    }
    return c->n++;
}

static void ca_drop_block(ca_heap *c, int32_t x)
{
    c->b[x].next = c->unused;
    c->unused = x;
}

static bool ca_less(const ca_heap *c, int32_t x, int32_t y)
{
    const ca_block *a = &c->b[x], *b = &c->b[y];
    return a->size < b->size || (a->size == b->size && a->addr < b->addr);
}

/* Joins two treaps where every key of x is below every key of y. */
static int32_t ca_merge(ca_heap *c, int32_t x, int32_t y)
{
    if (x < 0)
        return y;
    if (y < 0)
        return x;
    if (c->b[x].prio > c->b[y].prio) {
        c->b[x].right = ca_merge(c, c->b[x].right, y);
        return x;
    }
    c->b[y].left = ca_merge(c, x, c->b[y].left);
    return y;
}

/* Splits treap t into keys below block k (*lo) and the rest (*hi). */
static void ca_split(ca_heap *c, int32_t t, int32_t k, int32_t *lo, int32_t *hi)
{
    if (t < 0) {
        *lo = *hi = -1;
        return;
    }
    int32_t a, b;
    if (ca_less(c, t, k)) {
        ca_split(c, c->b[t].right, k, &a, &b);
        c->b[t].right = a;
        *lo = t;
        *hi = b;
    } else {
        ca_split(c, c->b[t].left, k, &a, &b);
        c->b[t].left = b;
        *lo = a;
        *hi = t;
    }
}

/* Inserts x into treap t in one descent: x goes where its priority puts it, and the subtree it
 * replaces is split around it. */
static int32_t ca_insert(ca_heap *c, int32_t t, int32_t x)
{
    if (t < 0)
        return x;
    if (c->b[x].prio > c->b[t].prio) {
        int32_t lo, hi;
        ca_split(c, t, x, &lo, &hi);
        c->b[x].left = lo;
        c->b[x].right = hi;
        return x;
    }
    int32_t child;
    if (ca_less(c, x, t)) {
        child = ca_insert(c, c->b[t].left, x);
        c->b[t].left = child;
    } else {
        child = ca_insert(c, c->b[t].right, x);
        c->b[t].right = child;
    }
    return t;
}

static void ca_tree_insert(ca_heap *c, int32_t x)
{
    c->b[x].left = c->b[x].right = -1;
    c->b[x].prio = ca_random(c);
    int pool = c->b[x].pool;
    c->root[pool] = ca_insert(c, c->root[pool], x);
}

static int32_t ca_erase(ca_heap *c, int32_t t, int32_t x)
{
    LR_ASSERT(t >= 0); /* x is in this tree */
    if (t == x)
        return ca_merge(c, c->b[t].left, c->b[t].right);
    int32_t child;
    if (ca_less(c, x, t)) {
        child = ca_erase(c, c->b[t].left, x);
        c->b[t].left = child;
    } else {
        child = ca_erase(c, c->b[t].right, x);
        c->b[t].right = child;
    }
    return t;
}

static void ca_tree_erase(ca_heap *c, int32_t x)
{
    int pool = c->b[x].pool;
    c->root[pool] = ca_erase(c, c->root[pool], x);
}

/* The smallest free block of `pool` with size >= size, lowest address among equals; -1 if none. */
static int32_t ca_best_fit(const ca_heap *c, int pool, int64_t size)
{
    int32_t best = -1;
    for (int32_t t = c->root[pool]; t >= 0;) {
        if (c->b[t].size >= size) {
            best = t;
            t = c->b[t].left;
        } else {
            t = c->b[t].right;
        }
    }
    return best;
}

/* round_size(): at least 512 bytes, a multiple of 512. */
static bool ca_round_size(int64_t bytes, int64_t *size)
{
    return round_up(bytes < CA_MIN_BLOCK ? CA_MIN_BLOCK : bytes, CA_MIN_BLOCK, size);
}

/* get_allocation_size(): the segment reserved when no cached block fits. */
static bool ca_segment_size(int64_t size, int64_t *seg)
{
    if (size <= CA_SMALL_SIZE) {
        *seg = CA_SMALL_BUFFER;
        return true;
    }
    if (size < CA_MIN_LARGE_ALLOC) {
        *seg = CA_LARGE_BUFFER;
        return true;
    }
    return round_up(size, CA_ROUND_LARGE, seg);
}

/* Reserves a new segment as one free block (not in the tree). -1 on overflow or no memory. */
static int32_t ca_reserve(ca_heap *c, int pool, int64_t seg)
{
    int64_t top;
    if (!lr_add(c->top, seg, &top))
        return -1;
    int32_t x = ca_new_block(c);
    if (x < 0)
        return -1;
    c->b[x] = (ca_block){.addr = c->top, .size = seg, .prev = -1, .next = -1,
                         .left = -1, .right = -1, .pool = (uint8_t)pool};
    c->top = top;
    return x;
}

/* Cuts block x down to `size`, caching the remainder as a free block above it when it is
 * large enough to be worth keeping apart (should_split()); else x keeps it, still allocated. */
static bool ca_split_block(ca_heap *c, int32_t x, int64_t size)
{
    int64_t rest = c->b[x].size - size;
    bool worth = c->b[x].pool == POOL_SMALL ? rest >= CA_MIN_BLOCK : rest > CA_SMALL_SIZE;
    if (!worth)
        return true;
    int32_t y = ca_new_block(c);
    if (y < 0)
        return false;
    ca_block *b = &c->b[x];
    c->b[y] = (ca_block){.addr = b->addr + size, .size = rest, .prev = x, .next = b->next,
                         .pool = b->pool};
    if (b->next >= 0)
        c->b[b->next].prev = y;
    b->next = y;
    b->size = size;
    ca_tree_insert(c, y);
    return true;
}

/* Serves a request of `bytes` (> 0): *block is the block taken, *reserved grows by any new
 * segment. LR_ERR_NOMEM (or LR_ERR_INPUT on size overflow) names step i. */
static lr_status ca_malloc(ca_heap *c, int i, int64_t bytes, int32_t *block, int64_t *reserved)
{
    int64_t size, seg;
    if (!ca_round_size(bytes, &size) || !ca_segment_size(size, &seg))
        return lr_fail(LR_ERR_INPUT, "schedule step %d: %lld bytes overflow the caching model",
                       i, (long long)bytes);
    int pool = size <= CA_SMALL_SIZE ? POOL_SMALL : POOL_LARGE;
    int32_t x = ca_best_fit(c, pool, size);
    if (x >= 0) {
        ca_tree_erase(c, x);
    } else {
        x = ca_reserve(c, pool, seg);
        if (x < 0 || !lr_add(*reserved, seg, reserved))
            return lr_fail(LR_ERR_NOMEM, "schedule step %d: caching model out of memory", i);
    }
    if (!ca_split_block(c, x, size))
        return lr_fail(LR_ERR_NOMEM, "schedule step %d: caching model out of memory", i);
    c->b[x].allocated = 1;
    *block = x;
    return LR_OK;
}

/* Absorbs block y, x's `next` neighbour, into x; neither is in a free tree. */
static void ca_join(ca_heap *c, int32_t x, int32_t y)
{
    c->b[x].size += c->b[y].size;
    c->b[x].next = c->b[y].next;
    if (c->b[y].next >= 0)
        c->b[c->b[y].next].prev = x;
    ca_drop_block(c, y);
}

/* Returns block x to its pool, merged with its free neighbours (free_block()). */
static void ca_release(ca_heap *c, int32_t x)
{
    c->b[x].allocated = 0;
    int32_t prev = c->b[x].prev, next = c->b[x].next;
    if (next >= 0 && !c->b[next].allocated) {
        ca_tree_erase(c, next);
        ca_join(c, x, next);
    }
    if (prev >= 0 && !c->b[prev].allocated) {
        ca_tree_erase(c, prev);
        ca_join(c, prev, x);
        x = prev;
    }
    ca_tree_insert(c, x);
}

/* ------------------------------------------------------------------ the replay engine */

typedef struct {
    const sched_t *s;
    sim_allocator a;
    uint8_t *is_live;  /* per tensor */
    int32_t *block;    /* caching: per tensor, its block (-1 for 0 bytes) */
    ca_heap heap;
    int64_t live;      /* by the allocator model (caching: allocated) */
    int64_t reserved;  /* caching: segments; otherwise = live */
    int64_t by_class[TC_COUNT]; /* exact bytes */
    int64_t flops, flops_by_pass[PASS_COUNT]; /* RUN steps in [step_begin, step_end) so far */
} replay_t;

static void replay_free(replay_t *r)
{
    free(r->is_live);
    free(r->block);
    ca_free_heap(&r->heap);
}

static lr_status replay_init(replay_t *r, const sched_t *s, sim_allocator a)
{
    memset(r, 0, sizeof *r);
    ca_init(&r->heap);
    if ((unsigned)a >= ALLOC_COUNT)
        return lr_fail(LR_ERR_INPUT, "unknown allocator model %d", (int)a);
    r->s = s;
    r->a = a;
    size_t n = (size_t)(s->n_tensors > 0 ? s->n_tensors : 1);
    r->is_live = calloc(n, 1);
    r->block = a == ALLOC_CACHING ? malloc(n * sizeof *r->block) : NULL;
    if (!r->is_live || (a == ALLOC_CACHING && !r->block)) {
        replay_free(r);
        return lr_fail(LR_ERR_NOMEM, "replay: out of memory for %d tensors", s->n_tensors);
    }
    return LR_OK;
}

static lr_status overflow(int i)
{
    return lr_fail(LR_ERR_INPUT, "schedule step %d: byte count overflows int64", i);
}

/* What a tensor of `bytes` costs under the exact and cuda models. */
static bool flat_cost(const replay_t *r, int64_t bytes, int64_t *cost)
{
    if (r->a == ALLOC_CUDA)
        return round_up(bytes, 2 * MIB, cost); /* cudaMalloc's granularity */
    *cost = bytes;
    return true;
}

static lr_status check_tensor(const replay_t *r, int i, int t, const char *op)
{
    if (t < 0 || t >= r->s->n_tensors)
        return lr_fail(LR_ERR_RUNTIME, "schedule step %d: %s of tensor %d, out of range", i, op, t);
    return LR_OK;
}

static lr_status replay_alloc(replay_t *r, int i, int t)
{
    LR_TRY(check_tensor(r, i, t, "ALLOC"));
    const sched_tensor *x = &r->s->tensors[t];
    if (r->is_live[t])
        return lr_fail(LR_ERR_RUNTIME,
                       "schedule step %d: ALLOC of tensor %d (%s of node %d), already live", i, t,
                       sched_kind_name(x->kind), x->node);
    if (x->cls >= TC_COUNT || x->bytes < 0)
        return lr_fail(LR_ERR_INPUT, "schedule step %d: tensor %d has class %d, %lld bytes", i,
                       t, x->cls, (long long)x->bytes);
    int64_t cost = 0;
    if (r->a != ALLOC_CACHING) {
        if (!flat_cost(r, x->bytes, &cost))
            return overflow(i);
    } else if (x->bytes == 0) {
        r->block[t] = -1;
    } else {
        LR_TRY(ca_malloc(&r->heap, i, x->bytes, &r->block[t], &r->reserved));
        cost = r->heap.b[r->block[t]].size;
    }
    int64_t *cls_bytes = &r->by_class[x->cls];
    if (!lr_add(r->live, cost, &r->live) || !lr_add(*cls_bytes, x->bytes, cls_bytes))
        return overflow(i);
    if (r->a != ALLOC_CACHING)
        r->reserved = r->live;
    r->is_live[t] = 1;
    return LR_OK;
}

static lr_status replay_release(replay_t *r, int i, int t)
{
    LR_TRY(check_tensor(r, i, t, "FREE"));
    const sched_tensor *x = &r->s->tensors[t];
    if (!r->is_live[t])
        return lr_fail(LR_ERR_RUNTIME,
                       "schedule step %d: FREE of tensor %d (%s of node %d), which is not live", i,
                       t, sched_kind_name(x->kind), x->node);
    int64_t cost = 0;
    if (r->a != ALLOC_CACHING) {
        flat_cost(r, x->bytes, &cost); /* succeeded at ALLOC */
    } else if (r->block[t] >= 0) {
        cost = r->heap.b[r->block[t]].size;
        ca_release(&r->heap, r->block[t]);
    }
    r->live -= cost;
    if (r->a != ALLOC_CACHING)
        r->reserved = r->live;
    r->by_class[x->cls] -= x->bytes;
    r->is_live[t] = 0;
    return LR_OK;
}

static lr_status replay_run(replay_t *r, int i, const sched_step *p)
{
    if (i < r->s->step_begin || i >= r->s->step_end)
        return LR_OK;
    if (p->pass >= PASS_COUNT || p->flops < 0)
        return lr_fail(LR_ERR_INPUT, "schedule step %d: RUN with pass %d, %lld FLOPs", i, p->pass,
                       (long long)p->flops);
    if (!lr_add(r->flops, p->flops, &r->flops) ||
        !lr_add(r->flops_by_pass[p->pass], p->flops, &r->flops_by_pass[p->pass]))
        return lr_fail(LR_ERR_INPUT, "schedule step %d: FLOP count overflows int64", i);
    return LR_OK;
}

static lr_status replay_step(replay_t *r, int i)
{
    const sched_step *p = &r->s->steps[i];
    switch (p->op) {
    case STEP_ALLOC:
        return replay_alloc(r, i, p->t);
    case STEP_FREE:
        return replay_release(r, i, p->t);
    case STEP_RUN:
        return replay_run(r, i, p);
    case STEP_COPY:
        return LR_OK;
    default:
        return lr_fail(LR_ERR_RUNTIME, "schedule step %d: unknown op %d", i, p->op);
    }
}

/* ------------------------------------------------------------------ public entry points */

lr_status sim_replay(const sched_t *s, sim_allocator a, sim_result *out)
{
    memset(out, 0, sizeof *out);
    out->peak_step = -1; /* stays so for an empty schedule */
    replay_t r;
    LR_TRY(replay_init(&r, s, a));
    lr_status st = LR_OK;
    for (int i = 0; i < s->n_steps && st == LR_OK; i++) {
        st = replay_step(&r, i);
        if (out->peak_step < 0 || r.live > out->peak_bytes) {
            out->peak_bytes = r.live;
            out->peak_step = i;
            memcpy(out->class_at_peak, r.by_class, sizeof r.by_class);
        }
        if (r.reserved > out->peak_reserved_bytes)
            out->peak_reserved_bytes = r.reserved;
    }
    out->flops = r.flops;
    memcpy(out->flops_by_pass, r.flops_by_pass, sizeof r.flops_by_pass);
    out->end_bytes = r.live;
    replay_free(&r);
    if (st != LR_OK) {
        memset(out, 0, sizeof *out);
        out->peak_step = -1;
    }
    return st;
}

lr_status sim_timeline(const sched_t *s, sim_allocator a, sim_point **points)
{
    *points = NULL;
    replay_t r;
    LR_TRY(replay_init(&r, s, a));
    sim_point *p = calloc((size_t)(s->n_steps > 0 ? s->n_steps : 1), sizeof *p);
    if (!p) {
        replay_free(&r);
        return lr_fail(LR_ERR_NOMEM, "timeline: out of memory for %d steps", s->n_steps);
    }
    lr_status st = LR_OK;
    for (int i = 0; i < s->n_steps && st == LR_OK; i++) {
        st = replay_step(&r, i);
        p[i].live = r.live;
        p[i].reserved = r.reserved;
        memcpy(p[i].by_class, r.by_class, sizeof r.by_class);
        p[i].flops_cum = r.flops;
    }
    replay_free(&r);
    if (st != LR_OK) {
        free(p);
        return st;
    }
    *points = p;
    return LR_OK;
}
