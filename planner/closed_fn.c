/* closed_fn.c - a stage's phases as functions of the batch, kept in one table every thread reads
 * (closed_walk.h says why they are exact).
 *
 * Legend: b the batch; a phase's bytes b * x + k (x per sample, k constant).
 * Deliberately not here: the walk itself (closed.c, closed_walk.c).
 */
#include "closed_walk.h"

#include <string.h>

enum { FN_SLOTS = 8192, FN_MAX = FN_SLOTS / 2 }; /* open addressing, at most half full */

typedef struct {
    bool used;
    closed_phase_key key;
    closed_phase_fn fn[2];
} fn_entry;

/* The one table (threads share it: a stage one thread walked, another reads), allocated on
 * first use and kept until the process ends; full, it drops everything. */
static fn_entry *table;
static int n_kept;

/* No stripe statistics: each BatchNorm's statistics come from STATS passes or are frozen. */
static bool no_stripe_stats(const net_t *net, const plan_stage *st)
{
    return st->bn_passes || st->bn_frozen || !plan_has_bn(net, st->in_node, st->out_node);
}

bool closed_phase_fn_applies(const net_t *net, const plan_config *cfg, const plan_stage *st)
{
    return cfg->reuse_phases && !cfg->device && net->shape_id != 0 && no_stripe_stats(net, st) &&
           (!st->bwd || no_stripe_stats(net, st->bwd));
}

void closed_phase_key_of(const net_t *net, const plan_config *cfg, const plan_stage *st, int index,
                         closed_phase_key *k)
{
    memset(k, 0, sizeof *k); /* (compared whole: no stray padding) */
    k->shape_id = net->shape_id;
    k->in = st->in_node, k->out = st->out_node, k->parts = st->parts, k->kind = (int)st->kind;
    k->index = index, k->eb = cost_dtype_bytes(cfg->dtype), k->optim = (int)cfg->optim;
    k->twin_parts = st->bwd ? st->bwd->parts : 0;
    k->store_last = st->store_last, k->bn_passes = st->bn_passes, k->bn_frozen = st->bn_frozen;
    k->bnd_on_host = st->bnd_on_host, k->in_rows = st->in_rows != NULL;
}

/* A key's bytes hashed (FNV-1a), for a slot of FN_SLOTS. */
static uint32_t hash_of(const void *key, size_t n)
{
    const unsigned char *p = key;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return (uint32_t)(h ^ (h >> 32)) & (FN_SLOTS - 1);
}

/* (under the lock) */
static fn_entry *slot_of(const closed_phase_key *k)
{
    for (uint32_t i = hash_of(k, sizeof *k);; i = (i + 1) & (FN_SLOTS - 1))
        if (!table[i].used || memcmp(&table[i].key, k, sizeof *k) == 0)
            return &table[i];
}

static void drop_all(void)
{
    for (int i = 0; i < FN_SLOTS; i++)
        if (table[i].used) {
            free(table[i].fn[0].s), free(table[i].fn[1].s);
            table[i].used = false;
        }
    n_kept = 0;
}

/* One phase walked at batch 1 (ph; its stretches s[0, n); constant bytes k0 as it began and k1
 * as it ended) as a function. */
static bool fn_of(const plan_phase *ph, const closed_stretch *s, int n, int64_t k0, int64_t k1,
                  closed_phase_fn *f)
{
    if (ph->flops == INT64_MAX || ph->bn_flops == INT64_MAX || ph->ns != 0)
        return false;
    *f = (closed_phase_fn){.entry = ph->entry - k0, .entry_k = k0, .exit = ph->exit - k1,
                           .exit_k = k1, .flops = ph->flops, .bn_flops = ph->bn_flops,
                           .copy_bytes = ph->copy_bytes, .host_delta = ph->host_delta,
                           .bn_passes = ph->bn_passes, .n = n};
    f->s = malloc(sizeof *f->s * (size_t)(n ? n : 1));
    if (!f->s)
        return false;
    for (int i = 0; i < n; i++) {
        f->s[i] = s[i];
        f->s[i].high = s[i].high - s[i].konst;
    }
    return true;
}

void closed_phase_fn_put(const closed_phase_key *k, const plan_phase *at1,
                         const closed_stretches *str, int bwd_from, const int64_t *konst)
{
    closed_phase_fn fn[2];
    if (!fn_of(&at1[0], str->v, bwd_from, konst[0], konst[1], &fn[0]))
        return;
    if (!fn_of(&at1[1], str->v + bwd_from, str->n - bwd_from, konst[1], konst[2], &fn[1])) {
        free(fn[0].s);
        return;
    }
    bool kept = false;
#pragma omp critical(closed_phase_fns)
    {
        if (!table)
            table = calloc(FN_SLOTS, sizeof *table);
        if (table && n_kept >= FN_MAX)
            drop_all();
        fn_entry *e = table ? slot_of(k) : NULL;
        if (e && !e->used) { /* (another thread may have kept it meanwhile) */
            e->used = true, e->key = *k, e->fn[0] = fn[0], e->fn[1] = fn[1];
            n_kept++;
            kept = true;
        }
    }
    if (!kept)
        free(fn[0].s), free(fn[1].s);
}

/* b * x + k; false when it does not fit in int64. */
static bool affine(int64_t b, int64_t x, int64_t k, int64_t *out)
{
    int64_t bx;
    return !__builtin_mul_overflow(b, x, &bx) && !__builtin_add_overflow(bx, k, out);
}

/* b * x, saturated at INT64_MAX as the walk's sums of FLOPs are (x >= 0). */
static int64_t saturated(int64_t b, int64_t x)
{
    int64_t r;
    return __builtin_mul_overflow(b, x, &r) ? INT64_MAX : r;
}

static bool fn_at(const closed_phase_fn *f, int batch, plan_phase *out)
{
    plan_phase ph = {.node = -1, .part = -1, .stage = -1};
    if (!affine(batch, f->entry, f->entry_k, &ph.entry) ||
        !affine(batch, f->exit, f->exit_k, &ph.exit) ||
        !affine(batch, f->copy_bytes, 0, &ph.copy_bytes) ||
        !affine(batch, f->host_delta, 0, &ph.host_delta))
        return false;
    for (int i = 0; i < f->n; i++) {
        const closed_stretch *s = &f->s[i];
        int64_t high;
        if (!s->grew)
            continue;
        if (!affine(batch, s->high, s->konst, &high))
            return false;
        if (!ph.grew || high > ph.high) { /* the first highest point, as closed_reach */
            ph.grew = true;
            ph.high = high;
            ph.pass = s->pass, ph.node = s->node, ph.part = s->part, ph.stage = s->stage;
        }
    }
    ph.flops = saturated(batch, f->flops);
    ph.bn_flops = saturated(batch, f->bn_flops);
    ph.bn_passes = f->bn_passes;
    *out = ph;
    return true;
}

bool closed_phase_fn_get(const closed_phase_key *k, int batch, plan_phase *fwd, plan_phase *bwd)
{
    bool found = false;
#pragma omp critical(closed_phase_fns)
    {
        fn_entry *e = table ? slot_of(k) : NULL;
        found = e && e->used && fn_at(&e->fn[0], batch, fwd) && fn_at(&e->fn[1], batch, bwd);
    }
    return found;
}

/* ------------------------------------------------------------------ builds */

/* What a stage built as asked turned out to be (plan_stage_alone): its phase key and its runs,
 * in a table beside the functions (the same lock; full, it drops everything). */
typedef struct {
    bool used;
    closed_build_key key;
    closed_phase_key phase;
    int64_t runs;
} build_entry;

static build_entry *builds;
static int n_builds;

void closed_build_key_of(const net_t *net, const plan_config *cfg, plan_partitioning kind, int in,
                         int out, int parts, bool last, closed_build_key *b)
{
    memset(b, 0, sizeof *b); /* (compared whole) */
    b->shape_id = net->shape_id;
    b->in = in, b->out = out, b->parts = parts, b->kind = (int)kind, b->bn = (int)cfg->bn;
    b->offload = cfg->offload & (OFFLOAD_INPUT | OFFLOAD_BOUNDARY);
    b->last = last, b->recompute_boundaries = cfg->recompute_boundaries;
}

static build_entry *build_slot(const closed_build_key *b)
{
    for (uint32_t i = hash_of(b, sizeof *b);; i = (i + 1) & (FN_SLOTS - 1))
        if (!builds[i].used || memcmp(&builds[i].key, b, sizeof *b) == 0)
            return &builds[i];
}

bool closed_build_get(const closed_build_key *b, closed_phase_key *k, int64_t *runs)
{
    bool found = false;
#pragma omp critical(closed_phase_fns)
    {
        build_entry *e = builds ? build_slot(b) : NULL;
        if (e && e->used) {
            *k = e->phase, *runs = e->runs;
            found = true;
        }
    }
    return found;
}

void closed_build_put(const closed_build_key *b, const closed_phase_key *k, int64_t runs)
{
#pragma omp critical(closed_phase_fns)
    {
        if (!builds)
            builds = calloc(FN_SLOTS, sizeof *builds);
        if (builds && n_builds >= FN_MAX) {
            memset(builds, 0, sizeof *builds * FN_SLOTS);
            n_builds = 0;
        }
        build_entry *e = builds ? build_slot(b) : NULL;
        if (e && !e->used) {
            *e = (build_entry){.used = true, .key = *b, .phase = *k, .runs = runs};
            n_builds++;
        }
    }
}
