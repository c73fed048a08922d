/* arena.c - where every tensor of a schedule lives in memory: offsets in one arena per tier, as
 * the executors allocate them (sim.h, sim_arena_plan). Two placements are tried and the smaller
 * arena is kept: online (ALLOC/FREE replayed through a best-fit heap with coalescing, what a
 * runtime allocator would do) and, for schedules of up to OFFLINE_MAX tensors, offline (every
 * lifetime known, largest tensors placed first).
 *
 * Deliberately not here: allocating the arena (the executors), timing (planner/timeline.c).
 */
#include <stdlib.h>
#include <string.h>

#include "sim.h"

typedef struct {
    int64_t off, size;
} block;

typedef struct {
    block *free;
    int n, cap;
    int64_t top;
} heap;

static void heap_insert(heap *h, int64_t off, int64_t size)
{
    /* keep blocks sorted by offset and merge neighbours */
    int i = 0;
    while (i < h->n && h->free[i].off < off)
        i++;
    if (i > 0 && h->free[i - 1].off + h->free[i - 1].size == off) {
        h->free[i - 1].size += size;
        if (i < h->n && h->free[i - 1].off + h->free[i - 1].size == h->free[i].off) {
            h->free[i - 1].size += h->free[i].size;
            memmove(&h->free[i], &h->free[i + 1], sizeof(block) * (size_t)(h->n - i - 1));
            h->n--;
        }
        return;
    }
    if (i < h->n && off + size == h->free[i].off) {
        h->free[i].off = off;
        h->free[i].size += size;
        return;
    }
    if (h->n == h->cap) {
        h->cap = h->cap ? 2 * h->cap : 64;
        h->free = realloc(h->free, sizeof(block) * (size_t)h->cap);
        LR_ASSERT(h->free != NULL);
    }
    memmove(&h->free[i + 1], &h->free[i], sizeof(block) * (size_t)(h->n - i));
    h->free[i].off = off;
    h->free[i].size = size;
    h->n++;
}

static int64_t heap_take(heap *h, int64_t size)
{
    int best = -1;
    for (int i = 0; i < h->n; i++)
        if (h->free[i].size >= size && (best < 0 || h->free[i].size < h->free[best].size))
            best = i;
    if (best < 0) {
        /* grow the top, absorbing a free block that ends at the top */
        if (h->n > 0 && h->free[h->n - 1].off + h->free[h->n - 1].size == h->top) {
            int64_t off = h->free[h->n - 1].off;
            h->n--;
            h->top = off + size;
            return off;
        }
        int64_t off = h->top;
        h->top += size;
        return off;
    }
    int64_t off = h->free[best].off;
    h->free[best].off += size;
    h->free[best].size -= size;
    if (h->free[best].size == 0) {
        memmove(&h->free[best], &h->free[best + 1], sizeof(block) * (size_t)(h->n - best - 1));
        h->n--;
    }
    return off;
}

static int64_t aligned(int64_t bytes, int64_t align)
{
    return (bytes + align - 1) / align * align;
}

/* Online: replay ALLOC/FREE through a best-fit heap (what a runtime allocator would do). */
static int64_t plan_online(const sched_t *s, sched_tier tier, int64_t align, int64_t *offsets)
{
    heap h = {0};
    for (int t = 0; t < s->n_tensors; t++)
        offsets[t] = -1;
    for (int i = 0; i < s->n_steps; i++) {
        const sched_step *p = &s->steps[i];
        if ((p->op != STEP_ALLOC && p->op != STEP_FREE) || s->tensors[p->t].tier != tier)
            continue;
        int64_t size = aligned(s->tensors[p->t].bytes > 0 ? s->tensors[p->t].bytes : 1, align);
        if (p->op == STEP_ALLOC)
            offsets[p->t] = heap_take(&h, size);
        else if (p->op == STEP_FREE)
            heap_insert(&h, offsets[p->t], size);
    }
    free(h.free);
    return h.top;
}

/* Offline: every lifetime is known, so place tensors largest first, each at the lowest offset
 * that no placed tensor with an overlapping lifetime occupies (greedy by size, as TFLite's arena
 * planner does). Quadratic in the number of tensors, so only used for schedules up to
 * OFFLINE_MAX tensors. */
#define OFFLINE_MAX 20000

typedef struct {
    int t;
    int64_t size;
    int birth, death; /* steps of ALLOC and FREE */
} life;

static int by_size_desc(const void *a, const void *b)
{
    const life *x = a, *y = b;
    if (x->size != y->size)
        return x->size < y->size ? 1 : -1;
    return x->birth - y->birth;
}

static int by_offset(const void *a, const void *b, void *offs)
{
    int64_t x = ((const int64_t *)offs)[((const life *)a)->t];
    int64_t y = ((const int64_t *)offs)[((const life *)b)->t];
    return (x > y) - (x < y);
}

static int64_t plan_offline(const sched_t *s, sched_tier tier, int64_t align, int64_t *offsets)
{
    life *lv = malloc(sizeof(life) * (size_t)(s->n_tensors + 1));
    life *near = malloc(sizeof(life) * (size_t)(s->n_tensors + 1));
    LR_ASSERT(lv && near);
    int n = 0;
    int *slot = malloc(sizeof(int) * (size_t)(s->n_tensors + 1));
    LR_ASSERT(slot != NULL);
    for (int i = 0; i < s->n_steps; i++) {
        const sched_step *p = &s->steps[i];
        if ((p->op == STEP_ALLOC || p->op == STEP_FREE) && s->tensors[p->t].tier != tier)
            continue;
        if (p->op == STEP_ALLOC) {
            int64_t bytes = s->tensors[p->t].bytes;
            lv[n] = (life){p->t, aligned(bytes > 0 ? bytes : 1, align), i, s->n_steps};
            slot[p->t] = n++;
        } else if (p->op == STEP_FREE) {
            lv[slot[p->t]].death = i;
        }
    }
    qsort(lv, (size_t)n, sizeof(life), by_size_desc);
    int64_t top = 0;
    for (int i = 0; i < n; i++) {
        int m = 0;
        for (int k = 0; k < i; k++)
            if (lv[k].birth < lv[i].death && lv[i].birth < lv[k].death)
                near[m++] = lv[k];
        qsort_r(near, (size_t)m, sizeof(life), by_offset, offsets);
        int64_t at = 0;
        for (int k = 0; k < m; k++) {
            int64_t o = offsets[near[k].t];
            if (o - at >= lv[i].size)
                break;
            if (o + near[k].size > at)
                at = o + near[k].size;
        }
        offsets[lv[i].t] = at;
        if (at + lv[i].size > top)
            top = at + lv[i].size;
    }
    free(lv);
    free(near);
    free(slot);
    return top;
}

int64_t sim_arena_plan(const sched_t *s, sched_tier tier, int64_t align, int64_t *offsets)
{
    int64_t arena = plan_online(s, tier, align, offsets);
    if (s->n_tensors > OFFLINE_MAX)
        return arena;
    int64_t *alt = malloc(sizeof(int64_t) * (size_t)(s->n_tensors + 1));
    LR_ASSERT(alt != NULL);
    for (int t = 0; t < s->n_tensors; t++)
        alt[t] = -1;
    int64_t packed = plan_offline(s, tier, align, alt);
    if (packed < arena) {
        memcpy(offsets, alt, sizeof(int64_t) * (size_t)s->n_tensors);
        arena = packed;
    }
    free(alt);
    return arena;
}


void sim_arena_plan_tiers(const sched_t *s, int64_t align, int64_t *offsets,
                          int64_t bytes[TIER_COUNT])
{
    int64_t *one = malloc(sizeof(int64_t) * (size_t)(s->n_tensors + 1));
    LR_ASSERT(one != NULL);
    for (int t = 0; t < s->n_tensors; t++)
        offsets[t] = -1;
    for (int tier = 0; tier < TIER_COUNT; tier++) {
        bytes[tier] = sim_arena_plan(s, (sched_tier)tier, align, one);
        for (int t = 0; t < s->n_tensors; t++)
            if (s->tensors[t].tier == tier)
                offsets[t] = one[t];
    }
    free(one);
}
