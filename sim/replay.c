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
 * PyTorch's CUDACachingAllocator (c10/cuda/CUDACachingAllocator.cpp, DeviceCachingAllocator),
 * one stream, no memory limit: malloc() = round_size, get_pool, get_free_block, else
 * get_allocation_size and a new segment (alloc_block), then should_split/alloc_found_block;
 * free() = free_block with try_merge_blocks. Each function below names the one it follows. The
 * settings of PYTORCH_ALLOC_CONF it reads (max_split_size_mb, max_non_split_rounding_mb,
 * roundup_power2_divisions; c10's AllocatorConfig) come in sim_caching, zero being PyTorch's
 * defaults; expandable segments are not modelled (alloc_conf.c refuses them). The constants
 * carry PyTorch's names in their comments.
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
    sim_caching conf;          /* PYTORCH_CUDA_ALLOC_CONF; zero: PyTorch's defaults */
    int64_t retries;           /* num_alloc_retries: cache flushes before a new segment */
    bool oom;                  /* the last request could not be served within the limit */
} ca_heap;

static void ca_init(ca_heap *c, const sim_caching *conf)
{
    memset(c, 0, sizeof *c);
    if (conf)
        c->conf = *conf;
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

/* max_split_size (CUDAAllocatorConfig::max_split_size): blocks of at least this size are never
 * split; 0 stands for PyTorch's default, SIZE_MAX. */
static bool ca_oversize(const ca_heap *c, int64_t size)
{
    return c->conf.max_split_size > 0 && size >= c->conf.max_split_size;
}

/* get_free_block(): the smallest free block of `pool` with size >= size, lowest address among
 * equals (BlockComparatorSize: size, then pointer; ca_best_fit_raw); -1 if none, or if the rules
 * on oversize blocks refuse it: an oversize block never serves a request below max_split_size,
 * and serves an oversize request only within max_non_split_rounding (default kLargeBuffer,
 * 20 MiB) of it. */
static int32_t ca_best_fit_raw(const ca_heap *c, int pool, int64_t size)
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

static int32_t ca_best_fit(const ca_heap *c, int pool, int64_t size)
{
    int32_t best = ca_best_fit_raw(c, pool, size);
    if (best < 0)
        return -1;
    int64_t rounding = c->conf.max_non_split_rounding > 0 ? c->conf.max_non_split_rounding
                                                           : CA_LARGE_BUFFER;
    if (!ca_oversize(c, size) && ca_oversize(c, c->b[best].size))
        return -1;
    if (ca_oversize(c, size) && c->b[best].size - size >= rounding)
        return -1;
    return best;
}

/* roundup_power2_next_division(): size rounded up to the next of `divisions` equal steps
 * between the powers of two around it (a power of two stays). */
static int64_t ca_round_power2(int64_t size, int64_t divisions)
{
    if ((size & (size - 1)) == 0)
        return size;
    int64_t floor2 = (int64_t)1 << (63 - __builtin_clzll((unsigned long long)size));
    int64_t step = floor2 >> (63 - __builtin_clzll((unsigned long long)divisions));
    if (step == 0)
        return floor2 << 1;
    int64_t low = size & ~(step - 1);
    return low == size ? size : low + step;
}

/* roundup_power2_divisions(size): the divisions of size's interval, [1 MiB, 2 MiB) ... the last
 * for 32 GiB and more (sizes below 1 MiB use the first). */
static int64_t ca_divisions(const ca_heap *c, int64_t size)
{
    int log2 = 63 - __builtin_clzll((unsigned long long)size), start = 20;
    int index = log2 > start ? log2 - start : 0;
    return c->conf.divisions[index < SIM_POW2_INTERVALS ? index : SIM_POW2_INTERVALS - 1];
}

/* round_size(): at least 512 bytes, a multiple of 512; with roundup_power2_divisions set for
 * the size's interval (and the size above 512 times it), the next power-of-two division. */
static bool ca_round_size(const ca_heap *c, int64_t bytes, int64_t *size)
{
    if (bytes < CA_MIN_BLOCK) {
        *size = CA_MIN_BLOCK;
        return true;
    }
    int64_t divisions = ca_divisions(c, bytes);
    if (divisions > 1 && bytes > CA_MIN_BLOCK * divisions && bytes <= INT64_MAX / 2) {
        *size = ca_round_power2(bytes, divisions);
        return true;
    }
    return round_up(bytes, CA_MIN_BLOCK, size);
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

/* alloc_block(): reserves a new segment as one free block (not in the tree); addresses grow.
 * -1 on overflow or no memory. */
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
 * large enough to be worth keeping apart (should_split(): small pool 512 bytes or more; large
 * pool more than 1 MiB, and never for an oversize request); else x keeps it, still allocated
 * (alloc_found_block() puts the request at the block's start). */
static bool ca_split_block(ca_heap *c, int32_t x, int64_t size)
{
    int64_t rest = c->b[x].size - size;
    bool worth = c->b[x].pool == POOL_SMALL ? rest >= CA_MIN_BLOCK
                                            : !ca_oversize(c, size) && rest > CA_SMALL_SIZE;
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

/* ------------------------------------------------------------------ a device memory limit
 *
 * With conf.limit_bytes, a new segment that would take reserved past the limit fails as
 * cudaMalloc would, and malloc() frees cached segments before it gives up:
 * release_available_cached_blocks() (only with max_split_size: the smallest free oversize
 * segment of the pool at least as large as the request, else oversize segments from the largest
 * down until as many bytes are freed), then release_cached_blocks() (every free block that is a
 * whole segment, both pools) and one more try counted as a retry (num_alloc_retries). Failing
 * that is PyTorch's out-of-memory error. */

/* A free block that is a whole segment: cudaFree'd, its bytes no longer reserved. */
static void ca_release_segment(ca_heap *c, int32_t x, int64_t *reserved)
{
    ca_tree_erase(c, x);
    *reserved -= c->b[x].size;
    ca_drop_block(c, x);
}

/* The free whole segments of a pool's tree (in-order: by size, then address), into list. */
static int ca_whole_segments(const ca_heap *c, int32_t t, int32_t *list, int n)
{
    if (t < 0)
        return n;
    n = ca_whole_segments(c, c->b[t].left, list, n);
    if (c->b[t].prev < 0 && c->b[t].next < 0)
        list[n++] = t;
    return ca_whole_segments(c, c->b[t].right, list, n);
}

/* Frees the whole free segments of `pool` (both pools when pool < 0) of at least min_size
 * bytes, largest first while fewer than `want` bytes are freed (want < 0: all of them).
 * Returns the bytes freed. */
static int64_t ca_release_pool(ca_heap *c, int pool, int64_t min_size, int64_t want,
                               int64_t *reserved)
{
    int32_t *list = malloc(sizeof *list * (size_t)(c->n > 0 ? c->n : 1));
    LR_ASSERT(list != NULL);
    int64_t freed = 0;
    for (int p = 0; p < POOL_COUNT; p++) {
        if (pool >= 0 && p != pool)
            continue;
        int n = ca_whole_segments(c, c->root[p], list, 0);
        for (int k = n - 1; k >= 0 && c->b[list[k]].size >= min_size; k--) {
            if (want >= 0 && freed >= want)
                break;
            freed += c->b[list[k]].size;
            ca_release_segment(c, list[k], reserved);
        }
    }
    free(list);
    return freed;
}

/* release_available_cached_blocks(), with max_split_size: the smallest free oversize segment
 * of at least max(size, max_split_size); when there is none, oversize segments from the
 * largest down until that many bytes are freed. False when they fall short (they stay freed),
 * and malloc() then goes on to release_cached_blocks(). */
static bool ca_release_available(ca_heap *c, int pool, int64_t size, int64_t *reserved)
{
    int64_t key = size > c->conf.max_split_size ? size : c->conf.max_split_size;
    int32_t x = ca_best_fit_raw(c, pool, key);
    if (x >= 0 && c->b[x].prev < 0 && c->b[x].next < 0) {
        ca_release_segment(c, x, reserved);
        return true;
    }
    return ca_release_pool(c, pool, c->conf.max_split_size, key, reserved) >= key;
}

/* A new segment of seg bytes within the limit, flushing the cache as PyTorch does first. */
static bool ca_within_limit(ca_heap *c, int pool, int64_t size, int64_t seg, int64_t *reserved)
{
    int64_t limit = c->conf.limit_bytes;
    if (limit <= 0 || *reserved <= limit - seg)
        return true;
    if (c->conf.max_split_size > 0 && ca_release_available(c, pool, size, reserved) &&
        *reserved <= limit - seg)
        return true;
    c->retries++;
    ca_release_pool(c, -1, 0, -1, reserved);
    return *reserved <= limit - seg;
}

/* DeviceCachingAllocator::malloc(): serves a request of `bytes` (> 0): *block is the block
 * taken, *reserved grows by any new segment. A request the limit cannot serve sets c->oom and
 * returns LR_OK with *block -1. LR_ERR_NOMEM (or LR_ERR_INPUT on size overflow) names step i. */
static lr_status ca_malloc(ca_heap *c, int i, int64_t bytes, int32_t *block, int64_t *reserved)
{
    int64_t size, seg;
    *block = -1;
    if (!ca_round_size(c, bytes, &size) || !ca_segment_size(size, &seg))
        return lr_fail(LR_ERR_INPUT, "schedule step %d: %lld bytes overflow the caching model",
                       i, (long long)bytes);
    int pool = size <= CA_SMALL_SIZE ? POOL_SMALL : POOL_LARGE;
    int32_t x = ca_best_fit(c, pool, size);
    if (x >= 0) {
        ca_tree_erase(c, x);
    } else {
        if (!ca_within_limit(c, pool, size, seg, reserved)) {
            c->oom = true;
            return LR_OK;
        }
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

/* Returns block x to its pool, merged with its free neighbours (free_block(), which tries the
 * block before it and the one after it: try_merge_blocks()). */
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
    int cap;           /* tensors the per-tensor arrays hold */
    uint8_t *is_live;  /* per tensor */
    int32_t *block;    /* caching: per tensor, its block (-1 for 0 bytes) */
    ca_heap heap;
    int64_t live;      /* by the allocator model (caching: allocated) */
    int64_t reserved;  /* caching: segments; otherwise = live */
    int64_t by_class[TC_COUNT]; /* exact bytes */
    int64_t flops, flops_by_pass[PASS_COUNT]; /* RUN steps in [step_begin, step_end) so far */
    int64_t host_live, host_peak, copy_bytes; /* TIER_HOST tensors, host-to-device COPY bytes */
} replay_t;

static void replay_free(replay_t *r)
{
    free(r->is_live);
    free(r->block);
    ca_free_heap(&r->heap);
}

/* Per-tensor arrays for every tensor of r->s so far (a streamed schedule keeps adding them). */
static lr_status replay_fit(replay_t *r)
{
    int n = r->s->n_tensors;
    if (n <= r->cap)
        return LR_OK;
    int cap = n > 2 * r->cap ? n : 2 * r->cap;
    uint8_t *live = realloc(r->is_live, (size_t)cap);
    if (!live)
        return lr_fail(LR_ERR_NOMEM, "replay: out of memory for %d tensors", n);
    r->is_live = live;
    memset(r->is_live + r->cap, 0, (size_t)(cap - r->cap));
    if (r->a == ALLOC_CACHING) {
        int32_t *block = realloc(r->block, (size_t)cap * sizeof *block);
        if (!block)
            return lr_fail(LR_ERR_NOMEM, "replay: out of memory for %d tensors", n);
        r->block = block;
    }
    r->cap = cap;
    return LR_OK;
}

static lr_status replay_init(replay_t *r, const sched_t *s, sim_allocator a,
                             const sim_caching *conf)
{
    memset(r, 0, sizeof *r);
    ca_init(&r->heap, conf);
    if ((unsigned)a >= ALLOC_COUNT)
        return lr_fail(LR_ERR_INPUT, "unknown allocator model %d", (int)a);
    r->s = s;
    r->a = a;
    lr_status st = replay_fit(r);
    if (st != LR_OK)
        replay_free(r);
    return st;
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
    if (x->cls >= TC_COUNT || x->bytes < 0 || x->tier >= TIER_COUNT)
        return lr_fail(LR_ERR_INPUT, "schedule step %d: tensor %d has class %d, tier %d, %lld bytes",
                       i, t, x->cls, x->tier, (long long)x->bytes);
    if (x->tier == TIER_HOST) { /* host memory: counted apart, no allocator model */
        if (!lr_add(r->host_live, x->bytes, &r->host_live))
            return overflow(i);
        if (r->host_live > r->host_peak)
            r->host_peak = r->host_live;
        r->is_live[t] = 1;
        return LR_OK;
    }
    int64_t cost = 0;
    if (r->a != ALLOC_CACHING) {
        if (!flat_cost(r, x->bytes, &cost))
            return overflow(i);
    } else if (x->bytes == 0) {
        r->block[t] = -1;
    } else {
        LR_TRY(ca_malloc(&r->heap, i, x->bytes, &r->block[t], &r->reserved));
        if (r->heap.oom)
            return LR_OK; /* the replay stops here: PyTorch raises OutOfMemoryError */
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
    if (x->tier == TIER_HOST) {
        r->host_live -= x->bytes;
        r->is_live[t] = 0;
        return LR_OK;
    }
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

/* A COPY between host and device in the training step (either way): its rows' bytes. */
static lr_status replay_copy(replay_t *r, int i, const sched_step *p)
{
    LR_TRY(check_tensor(r, i, p->t, "COPY"));
    LR_TRY(check_tensor(r, i, p->src, "COPY"));
    const sched_tensor *dst = &r->s->tensors[p->t], *src = &r->s->tensors[p->src];
    if (i < r->s->step_begin || i >= r->s->step_end || src->tier == dst->tier ||
        p->row_hi < p->row_lo || dst->row_hi < dst->row_lo)
        return LR_OK;
    int64_t per_row = dst->bytes / (dst->row_hi - dst->row_lo + 1);
    if (!lr_add(r->copy_bytes, per_row * (p->row_hi - p->row_lo + 1), &r->copy_bytes))
        return overflow(i);
    return LR_OK;
}

/* Step i of the whole schedule, p its record. */
static lr_status replay_step(replay_t *r, int i, const sched_step *p)
{
    switch (p->op) {
    case STEP_ALLOC:
        return replay_alloc(r, i, p->t);
    case STEP_FREE:
        return replay_release(r, i, p->t);
    case STEP_RUN:
        return replay_run(r, i, p);
    case STEP_COPY:
        return replay_copy(r, i, p);
    default:
        return lr_fail(LR_ERR_RUNTIME, "schedule step %d: unknown op %d", i, p->op);
    }
}

/* ------------------------------------------------------------------ public entry points */

lr_status sim_replay(const sched_t *s, sim_allocator a, sim_result *out)
{
    return sim_replay_conf(s, a, NULL, out);
}

/* A replay that keeps the peaks (sim_replay_conf, sim_stream). */
struct sim_stream {
    replay_t r;
    sim_result out;
    lr_status status;
};

static lr_status stream_begin(sim_stream *k, const sched_t *s, sim_allocator a,
                              const sim_caching *conf)
{
    memset(&k->out, 0, sizeof k->out);
    k->out.peak_step = -1; /* stays so for an empty schedule */
    k->out.oom_step = -1;
    k->status = replay_init(&k->r, s, a, conf);
    return k->status;
}

/* The steps s holds now (all of it, or the chunk a stream hands over). After an out-of-memory
 * error the state stays as it was. */
static lr_status stream_steps(sim_stream *k, const sched_t *s)
{
    replay_t *r = &k->r;
    sim_result *out = &k->out;
    r->s = s;
    if (k->status == LR_OK)
        k->status = replay_fit(r);
    for (int q = 0; q < s->n_steps && k->status == LR_OK && out->oom_step < 0; q++) {
        int i = s->step_base + q;
        k->status = replay_step(r, i, &s->steps[q]);
        out->oom_step = r->heap.oom ? i : -1;
        if (out->peak_step < 0 || r->live > out->peak_bytes) {
            out->peak_bytes = r->live;
            out->peak_step = i;
            memcpy(out->class_at_peak, r->by_class, sizeof r->by_class);
        }
        if (r->reserved > out->peak_reserved_bytes)
            out->peak_reserved_bytes = r->reserved;
    }
    return k->status;
}

static lr_status stream_end(sim_stream *k, sim_result *out)
{
    k->out.flops = k->r.flops;
    memcpy(k->out.flops_by_pass, k->r.flops_by_pass, sizeof k->r.flops_by_pass);
    k->out.end_bytes = k->r.live;
    k->out.host_peak_bytes = k->r.host_peak;
    k->out.copy_bytes = k->r.copy_bytes;
    k->out.alloc_retries = k->r.heap.retries;
    *out = k->out;
    if (k->status != LR_OK) {
        memset(out, 0, sizeof *out);
        out->peak_step = out->oom_step = -1;
    }
    return k->status;
}

lr_status sim_replay_conf(const sched_t *s, sim_allocator a, const sim_caching *conf,
                          sim_result *out)
{
    sim_stream k;
    lr_status st = stream_begin(&k, s, a, conf);
    if (st == LR_OK)
        stream_steps(&k, s);
    st = stream_end(&k, out);
    replay_free(&k.r);
    return st;
}

lr_status sim_stream_new(const sched_t *s, sim_allocator a, sim_stream **out)
{
    *out = malloc(sizeof **out);
    if (!*out)
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    lr_status st = stream_begin(*out, s, a, NULL);
    if (st != LR_OK) {
        free(*out);
        *out = NULL;
    }
    return st;
}

lr_status sim_stream_take(void *stream, const sched_t *s)
{
    return stream_steps(stream, s);
}

lr_status sim_stream_result(sim_stream *k, sim_result *out)
{
    return stream_end(k, out);
}

void sim_stream_free(sim_stream *k)
{
    if (!k)
        return;
    replay_free(&k->r);
    free(k);
}

lr_status sim_timeline(const sched_t *s, sim_allocator a, sim_point **points)
{
    return sim_timeline_conf(s, a, NULL, points, NULL);
}

lr_status sim_timeline_conf(const sched_t *s, sim_allocator a, const sim_caching *conf,
                            sim_point **points, sim_limit_outcome *outcome)
{
    *points = NULL;
    if (outcome)
        *outcome = (sim_limit_outcome){.alloc_retries = 0, .oom_step = -1};
    replay_t r;
    LR_TRY(replay_init(&r, s, a, conf));
    sim_point *p = calloc((size_t)(s->n_steps > 0 ? s->n_steps : 1), sizeof *p);
    if (!p) {
        replay_free(&r);
        return lr_fail(LR_ERR_NOMEM, "timeline: out of memory for %d steps", s->n_steps);
    }
    lr_status st = LR_OK;
    int oom = -1;
    for (int i = 0; i < s->n_steps && st == LR_OK; i++) {
        if (oom < 0) /* after an out-of-memory error the state stays as it was */
            st = replay_step(&r, i, &s->steps[i]);
        oom = oom < 0 && r.heap.oom ? i : oom;
        p[i].live = r.live;
        p[i].reserved = r.reserved;
        memcpy(p[i].by_class, r.by_class, sizeof r.by_class);
        p[i].flops_cum = r.flops;
    }
    if (outcome)
        *outcome = (sim_limit_outcome){.alloc_retries = r.heap.retries, .oom_step = oom};
    replay_free(&r);
    if (st != LR_OK) {
        free(p);
        return st;
    }
    *points = p;
    return LR_OK;
}
