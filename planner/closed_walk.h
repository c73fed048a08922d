/* closed_walk.h - the walk the closed form (closed.c) is made of: the meter that follows live
 * bytes and keeps the first highest point, the evaluator's state, and the events of one node or
 * one partition of a stage in forward, recompute and backward (closed_walk.c).
 *
 * An event is an allocation (closed_add: live bytes grow, and the meter notes a new high) or a
 * release (closed_shrink). Legend: l, u nodes, j a partition, i = plan_idx(st, l, j).
 * Deliberately not here: the order of the phases and passes (closed.c), how the statistics passes
 * share walks (closed_stats.c).
 */
#ifndef LR_CLOSED_WALK_H
#define LR_CLOSED_WALK_H

#include "plan.h"

/* A stretch of a walk between two changes of its constant bytes (closed_add_const): live bytes
 * there are the batch times some per-sample bytes plus `konst`, so its first highest point is
 * the same event at every batch (closed_phase_fn). */
typedef struct {
    int64_t konst; /* the constant bytes throughout the stretch */
    bool grew;
    int64_t high; /* the highest live bytes after a growth in it (at the walk's batch) */
    sched_pass pass;
    int node, part, stage;
} closed_stretch;

typedef struct {
    closed_stretch *v;
    int n, cap;
    int64_t konst; /* the walk's constant bytes now */
} closed_stretches;

typedef struct {
    int64_t live, peak;
    bool overflow; /* live bytes passed INT64_MAX: the peak is reported as INT64_MAX */
    closed_stretches *stretches; /* NULL, or where each stretch's highest point is noted */
    int node, part, stage;
    sched_pass pass;
    int64_t stage_peak[PLAN_MAX_STAGES];
    plan_phase *phase; /* the phase being recorded, or NULL */
} meter;

/* The highest live bytes right after a growth among some events, and where it is first reached. */
typedef struct {
    bool grew;
    int64_t high;
    sched_pass pass;
    int node, part;
} stretch;

/* Events recorded instead of metered (closed_stats.c measures a walk once and places it at many
 * start levels): live bytes relative to where the recording began, FLOPs, the first highest
 * point. */
typedef struct {
    int64_t live, flops, ns;
    stretch top;
    int64_t host; /* host memory it took (> 0, a forward) or gave back (a recompute) */
} recorder;

typedef struct {
    const plan_t *plan;
    const net_t *net;
    int batch, eb;
    meter m;
    recorder *rec; /* NULL: events go to the meter */
    /* NULL, or (while rec records) a second recorder of the same walk as another pass makes it:
     * the same events but for the boundary heads, which it frees as fwd_pass.alt_* says
     * (closed_forward_compute). closed_stats.c records a stage's FWD pass beside the STATS
     * passes' shared walk and BWD's recompute beside the GSTATS passes' one this way. */
    recorder *twin;
    const device_spec *device; /* the time model's (NULL: no step time) */
    uint64_t ns_tag;           /* closed_ns_tag(): whose kernel times it takes (closed_kernel_ns) */
    plan_optim optim;
    int64_t flops, ns;
    int64_t bn_flops; /* of v.flops, in statistics passes */
    int bn_passes;
    int64_t copy_bytes; /* copies between host and device (--offload) */
    int64_t host_live, host_peak; /* host memory (--offload): input batch, kept boundaries */
    int stage;
    /* per node of the current stage: last in-stage consumer, last backward reader */
    int *last_fwd, *first_bwd;
    bool *saved;
    /* per (node, partition) of the current stage */
    bool *has_grad; /* the gradient stripe exists in backward */
    bool *mark;
    int64_t *row_bytes; /* per node: bytes of one row of its output for the whole batch */
    int64_t *fwd_row_flops, *bwd_row_flops, *stats_row_flops; /* per node, per output row */
    plan_phases *phases; /* NULL: not recorded */
    int64_t phase_flops, phase_ns; /* v.flops and v.ns when the current phase began */
    int64_t phase_bn_flops;
    int phase_bn_passes;
    int64_t phase_copy_bytes, phase_host;
    struct closed_shapes_list *shapes; /* the stages' shapes sorted so far (closed_shapes_of) */
} evaluator;

typedef struct {
    const plan_stage *st;
    sched_pass pass;
    bool store, make_bnd, free_bnd;
    const bool *subset;
    int stats_node;
    sched_pass alt_pass; /* with evaluator.twin: the pass the twin records, and its free_bnd */
    bool alt_free_bnd;
} fwd_pass;

typedef struct {
    const plan_stage *st;
    sched_pass pass;
    const bool *subset;
    int target;
} bwd_pass;

/* ------------------------------------------------------------------ events (inline: a walk makes
 * millions) */

/* What closed_grow notes when live bytes reach `level` right after a growth at that place. */
static inline void closed_reach(meter *m, int64_t level, sched_pass pass, int node, int part,
                                int stage)
{
    if (stage >= 0 && level > m->stage_peak[stage])
        m->stage_peak[stage] = level;
    if (level > m->peak) {
        m->peak = level;
        m->pass = pass, m->node = node, m->part = part, m->stage = stage;
    }
    plan_phase *ph = m->phase;
    if (ph && (!ph->grew || level > ph->high)) {
        ph->grew = true;
        ph->high = level;
        ph->pass = pass, ph->node = node, ph->part = part, ph->stage = stage;
    }
    closed_stretch *st = m->stretches && m->stretches->n ? &m->stretches->v[m->stretches->n - 1] : NULL;
    if (st && (!st->grew || level > st->high)) {
        st->grew = true;
        st->high = level;
        st->pass = pass, st->node = node, st->part = part, st->stage = stage;
    }
}

/* live += bytes; a new high of the step, of the stage or of the phase is noted with its place. */
static inline void closed_grow(meter *m, int64_t bytes, sched_pass pass, int node, int part,
                               int stage)
{
    if (__builtin_add_overflow(m->live, bytes, &m->live))
        m->overflow = true;
    closed_reach(m, m->live, pass, node, part, stage);
}

/* The later of two stretches in time: b when it reaches higher than a, else a. */
static inline stretch closed_later(stretch a, stretch b)
{
    return b.grew && (!a.grew || b.high > a.high) ? b : a;
}

/* The stretch with its levels raised by `by`. */
static inline stretch closed_shifted(stretch s, int64_t by)
{
    s.high += by;
    return s;
}

static inline int64_t closed_rows_bytes(const evaluator *v, int node, rowrange r)
{
    return v->row_bytes[node] * rr_count(r);
}

static inline int64_t closed_full_bytes(const evaluator *v, int node)
{
    return cost_node_bytes(v->net, node, v->batch, v->eb);
}

static inline void closed_add(evaluator *v, int64_t bytes, sched_pass pass, int node, int part)
{
    recorder *r = v->rec;
    if (!r) {
        closed_grow(&v->m, bytes, pass, node, part, v->stage);
        return;
    }
    r->live += bytes;
    r->top = closed_later(r->top, (stretch){true, r->live, pass, node, part});
    recorder *t = v->twin;
    if (t) {
        t->live += bytes;
        t->top = closed_later(t->top, (stretch){true, t->live, pass, node, part});
    }
}

/* A new stretch (closed_stretches) from here on, its constant bytes changed by `by`. */
void closed_stretch_begin(meter *m, int64_t by);

/* Bytes that do not grow with the batch (exact BatchNorm's per-channel statistics and gradient
 * reductions, kept for the stage's backward): closed_add and closed_shrink, each starting a new
 * stretch. Never while a recorder records (its walk is placed at levels of another batch). */
static inline void closed_add_const(evaluator *v, int64_t bytes, sched_pass pass, int node,
                                    int part)
{
    LR_ASSERT(!v->rec);
    if (v->m.stretches)
        closed_stretch_begin(&v->m, bytes);
    closed_add(v, bytes, pass, node, part);
}

static inline void closed_shrink(evaluator *v, int64_t bytes)
{
    if (v->rec) {
        v->rec->live -= bytes;
        if (v->twin)
            v->twin->live -= bytes;
    } else {
        v->m.live -= bytes;
    }
}

static inline void closed_shrink_const(evaluator *v, int64_t bytes)
{
    LR_ASSERT(!v->rec);
    if (v->m.stretches)
        closed_stretch_begin(&v->m, -bytes);
    closed_shrink(v, bytes);
}

/* Each run's FLOPs fit (cost_check_layers), but their sum over a step may not (a huge input, or
 * exact BatchNorm repeating a deep stage's forward once per BN layer): it saturates at
 * INT64_MAX, which strategy_evaluate reports as an overflow. */
static inline void closed_flops(evaluator *v, int64_t flops)
{
    int64_t *sum = v->rec ? &v->rec->flops : &v->flops;
    if (__builtin_add_overflow(*sum, flops, sum))
        *sum = INT64_MAX;
}

static inline void closed_ns(evaluator *v, int64_t ns)
{
    int64_t *sum = v->rec ? &v->rec->ns : &v->ns;
    if (__builtin_add_overflow(*sum, ns, sum))
        *sum = INT64_MAX;
}

/* Rows of l that partition j hands to j+1 in forward (none for overlapping partitions). */
static inline rowrange closed_boundary(const plan_stage *st, int l, int j)
{
    if (st->kind == PART_OVERLAP || j + 1 >= st->parts || l == st->out_node)
        return rr_none();
    rowrange next = st->held[plan_idx(st, l, j + 1)];
    return rr_empty(next) ? rr_none() : rr_make(next.lo, st->held[plan_idx(st, l, j)].hi);
}

/* Rows of l's buffer in partition j that came from earlier partitions. */
static inline rowrange closed_head(const plan_stage *st, int l, int j)
{
    int i = plan_idx(st, l, j);
    return rr_make(st->held[i].lo, st->comp[i].lo - 1);
}

static inline bool closed_holds_stripe(const plan_stage *st, const fwd_pass *f, int l, int j)
{
    return l != st->out_node && !(f->pass == PASS_STATS && l == f->stats_node) &&
           !rr_empty(st->held[plan_idx(st, l, j)]);
}

static inline rowrange closed_bwd_rows(const plan_stage *st, int l, int j)
{
    int i = plan_idx(st, l, j);
    if (plan_sums_at(st, l)) /* a summing stage's reduction back-propagates its input rows */
        return st->sum_in[j];
    return st->kind == PART_OVERLAP ? st->comp[i] : st->own[i];
}

/* ------------------------------------------------------------------ meter and evaluator */

/* Events recorded elsewhere (a recorder's walk: live bytes relative to its start, its first
 * highest point `top`, FLOPs, time) onto the meter as walking them gives: the top, then the end. */
void closed_place(evaluator *v, stretch top, int64_t live, int64_t flops, int64_t ns);
/* Host memory grows (bytes > 0) or shrinks: kept boundaries under --offload boundary. A walk
 * only adds (a first forward) or only frees (a recompute), so a recorder keeps the sum, and its
 * highest point is where the walk ends or where it began. */
void closed_host(evaluator *v, int64_t bytes);
/* The time of a kernel on v->device (closed_kernel). */
void closed_kernel_ns(evaluator *v, int node, int rows, device_kernel_kind kind);
/* The tag of the kernel times of a net shape (net_t.shape_id) at a batch, element size, optimizer
 * and device (evaluator.ns_tag; 0 without a device): the thread's latest when the context is the
 * same, else a new one. */
uint64_t closed_ns_tag(const net_t *net, int batch, int eb, plan_optim optim,
                       const device_spec *device);
/* One kernel of the schedule (a RUN step that does arithmetic) on `rows` rows of node: its FLOPs,
 * and with a device its time. */
static inline void closed_kernel(evaluator *v, int node, int rows, device_kernel_kind kind,
                                 int64_t flops)
{
    closed_flops(v, flops);
    if (v->device && flops != 0)
        closed_kernel_ns(v, node, rows, kind);
}
/* A summing stage's reduction: partition j adds its rows sum_in[j] into the output rows `touched`
 * (forward) or takes their gradient (backward). */
void closed_sum_kernel(evaluator *v, const plan_stage *st, int l, int j, rowrange touched,
                       device_kernel_kind kind);
/* Whether inputs[k] of n is the first input with root u (an input read twice is freed once). */
bool closed_first_occurrence(const net_node *n, int k, int u, const net_t *net);

/* ------------------------------------------------------------------ stage walks */

/* Per node: which ops in the stage read it in backward, and its last consumer in a pass that
 * runs `subset` (NULL: all nodes): v->first_bwd, v->saved, v->last_fwd. */
void closed_positions(evaluator *v, const plan_stage *st, const bool *subset);
void closed_forward_release(evaluator *v, const fwd_pass *f, int u, int j);
/* Node l's own events in partition j (its stripe, the rows handed to it, stripe statistics),
 * then, in closed_forward_node, the releases its pass decides by v->last_fwd. */
void closed_forward_compute(evaluator *v, const fwd_pass *f, int l, int j);
void closed_forward_node(evaluator *v, const fwd_pass *f, int l, int j);
void closed_forward_partition(evaluator *v, const fwd_pass *f, int j);
/* v->mark: `node` and its ancestors inside the stage / its descendants inside the stage. */
void closed_mark_ancestors(evaluator *v, const plan_stage *st, int node);
void closed_mark_descendants(evaluator *v, const plan_stage *st, int node);
/* Node l's events in partition j's backward. g (by l - in_node): its gradient stripe exists;
 * gb_in: a boundary gradient from j+1 waits for l; gb_out: l hands one to j-1. */
void closed_backward_node(evaluator *v, const bwd_pass *b, int l, int j, bool *g, const bool *gb_in,
                          bool *gb_out);
void closed_backward_partition(evaluator *v, const bwd_pass *b, int j, bool *gb_in, bool *gb_out);
/* The recompute of a partition as a pass (closed_recompute_partition). */
static inline fwd_pass closed_recompute_pass(const plan_stage *st, bool free_bnd)
{
    return (fwd_pass){st, PASS_RECOMPUTE, true, false, free_bnd, st->rerun, -1, PASS_RECOMPUTE, true};
}
/* Callers set the positions for st->rerun once (closed_positions) before the partition loop.
 * With v->twin set, the twin records the recompute that frees each boundary head (free_bnd). */
void closed_recompute_partition(evaluator *v, const plan_stage *st, int j, bool free_bnd);
/* --offload input (st->in_rows): partition j's device stripe of the input, allocated when the
 * partition starts a pass and freed when it ends; no-ops for other stages. */
void closed_input_in(evaluator *v, const plan_stage *st, sched_pass pass, int j);
void closed_input_out(evaluator *v, const plan_stage *st, int j);

/* ------------------------------------------------------------------ partition shapes
 * (closed_shape.c)
 *
 * A partition's walks read the plan only as row counts: of its ranges held, comp and own, of the
 * head rows earlier partitions handed it, of the boundary it hands on, of the rows its backward
 * runs (and, in a summing stage or under --offload input, of sum_in and in_rows), plus whether it
 * is the first, the last or the one before the last. Partitions with equal counts make the same
 * events, but for the partition number in their labels: a walk summarised once stands for every
 * partition of its shape. Stripes of a few rows differ from their neighbours only by rounding, so
 * a stage of N partitions has a handful of shapes (resnet18 through layer1 in 32 partitions: row
 * 6, overl 7, 2ps 10; tests/test_plan.c).
 * A stage's partitions are sorted into shapes once per evaluation (closed_shapes_of), and each
 * walk's memo is keyed by the shape; walks that depend on more (the boundary gradients a backward
 * partition receives) append it to the key as `extra` ints. */
typedef struct {
    const plan_stage *st;
    bool off; /* too few partitions to pay: no shapes, and memos find and keep nothing */
    int n;    /* shapes */
    int *of;  /* by partition: its shape, numbered as first met */
    int len;  /* ints per key */
    int32_t *keys; /* by shape: its key (n x len; see closed_shape_node_at) */
} closed_shapes;

/* Where node l's counts begin in a key of st's shapes (after the four ints of the partition:
 * first, last, before the last, input rows); l = out_node + 1: the key's length. A walk that
 * reads only nodes a..b of a partition (and its four ints) depends on the key's ints
 * [closed_shape_node_at(a), closed_shape_node_at(b + 1)) and those four alone. */
int closed_shape_node_at(const plan_stage *st, int l);

/* st's shapes, sorted when first asked for during this evaluation (kept in v until
 * closed_shapes_release). */
const closed_shapes *closed_shapes_of(evaluator *v, const plan_stage *st);
void closed_shapes_release(evaluator *v);
void closed_shapes_init(closed_shapes *s, const plan_stage *st);
void closed_shapes_free(closed_shapes *s);

typedef struct {
    bool off;            /* the stage's shapes are off: nothing is found or kept */
    const int *of;       /* closed_shapes.of */
    int key_len, extra;  /* ints per key: the shape, then the caller's */
    size_t val_bytes;
    int n, cap;
    int32_t *keys;       /* n x key_len */
    unsigned char *vals; /* n x val_bytes */
    int32_t *key;        /* the key being built */
} closed_memo;

void closed_memo_init(closed_memo *m, const closed_shapes *s, int extra, size_t val_bytes);
void closed_memo_free(closed_memo *m);
/* Partition j's shape into m->key; returns its `extra` slots for the caller to fill (NULL when
 * the memo is off). */
int32_t *closed_memo_key(closed_memo *m, int j);
/* The value stored under m->key, or NULL. */
const void *closed_memo_find(closed_memo *m);
/* A slot for m->key's value (to fill now), or NULL when the memo is off or full. */
void *closed_memo_add(closed_memo *m);
/* m->key's value: the one stored (*fresh false), else a new slot or, when the memo is off or
 * full, `spare` (m->val_bytes; *fresh true: the caller walks into it now). */
void *closed_memo_take(closed_memo *m, void *spare, bool *fresh);

/* A stage's nodes cut into segments of CLOSED_SEGMENT_NODES, each walked once per distinct slice
 * of the shapes' keys it reads, its summary kept: a walk of a shape is then pieced together from
 * its segments'. A segment's walk reads the counts of its nodes and of their inputs (the stripes
 * it frees, the gradients it makes) and the partition's four ints: closed_shape_node_at(a) up to
 * closed_shape_node_at(b + 1), a the lowest of those nodes, b the segment's last. Shapes differ
 * at a few nodes (a stripe one row taller after some stride), so most of their segments agree:
 * resnet101 at 31248x31248 in 80 partitions has 36 shapes of 343 nodes; cut into 35 runs of ten
 * nodes, they have 190 distinct runs instead of 36 x 35. The caller may add `extra` ints to a key
 * (what the walk reads besides the counts: gradient flags). The width, by callgrind of resnet101
 * --fit h100-80gb on one thread: 5, 8, 12, 16 and 24 nodes, 11.33, 11.07, 11.00, 10.94 and
 * 10.92 G instructions (11.73 G without segments). */
enum { CLOSED_SEGMENT_NODES = 16 };

typedef struct {
    bool off; /* the stage's shapes are off, too few, or plan_stage.whole_walks: walk it whole */
    const closed_shapes *shapes;
    int n;                       /* segments */
    int *first;                  /* by segment: its first node; first[n] = out_node + 1 */
    int *low;                    /* by segment: the lowest node its walks read */
    int *lo, *hi;                /* by segment: the key's ints its walks read, [lo, hi) */
    int extra;
    size_t val_bytes;
    int *count, *cap;            /* by segment: entries kept, room for them */
    int32_t **keys;              /* by segment: each entry's shape, then its extra ints */
    unsigned char **vals;        /* by segment: each entry's value */
} closed_segments;

void closed_segments_init(closed_segments *s, const net_t *net, const closed_shapes *shapes);
/* What each entry holds (before the first closed_segments_take): `extra` ints of key besides the
 * shape's counts, a value of val_bytes. */
void closed_segments_values(closed_segments *s, int extra, size_t val_bytes);
/* The most nodes one segment's walks read (last - low + 1). */
int closed_segments_reach(const closed_segments *s);
void closed_segments_free(closed_segments *s);
/* Segment g's value for partition j (its shape and `extra`, s->extra ints): the one kept for an
 * equal slice (*fresh false), else a new slot that the caller walks into now. */
void *closed_segments_take(closed_segments *s, int g, int j, const int32_t *extra, bool *fresh);

/* A summary's labels moved to partition j (a shape's summary walked for another partition). */
static inline stretch closed_at_part(stretch s, int j)
{
    if (s.grew)
        s.part = j;
    return s;
}

/* ------------------------------------------------------------------ closed_stats.c */

/* A walk of one partition summarised (relative to its start): what it leaves live, its FLOPs
 * and time, its first highest point, the host memory it took or gave back (--offload boundary). */
typedef struct {
    int64_t live, flops, ns;
    stretch top;
    int64_t host;
} walk_summary;

/* A summary walked for another partition of j's shape, labelled as partition j's. */
static inline walk_summary closed_summary_at(const walk_summary *w, int j)
{
    walk_summary at = *w;
    at.top = closed_at_part(w->top, j);
    return at;
}

/* Whether a partitioned exact-BN stage's FWD pass and BWD recomputes can be read off the
 * statistics passes' shared walks (closed_stats_passes' fwd, closed_gstats_passes' rerun): every
 * partition reruns, and nothing goes to or comes from host memory (--offload). */
bool closed_passes_share_walks(const plan_stage *st);

/* Exact BatchNorm in a partitioned stage: every STATS pass (before the first forward), onto the
 * meter in schedule order. fwd (NULL: not kept; else closed_passes_share_walks(st)): parts
 * summaries of the stage's FWD pass, partition by partition, recorded beside the shared walk
 * (the same events but for the boundary heads the FWD pass keeps for the backward; its top
 * labelled FWD). */
void closed_stats_passes(evaluator *v, const plan_stage *st, walk_summary *fwd);
/* Every GSTATS pass (before the backward), onto the meter in schedule order.
 * by_part (NULL: not kept): what a GSTATS pass's shared backward walk of partition j made (its
 * top labelled GSTATS): the backward pass's walk of that partition makes the same events for
 * j > 0 (for j = 0 it also frees dO), so closed.c places it instead of walking it again.
 * rerun (NULL: not kept; else closed_passes_share_walks(st)): the backward's recompute of each
 * partition, recorded beside the GSTATS passes' one (which keeps the boundary heads the
 * backward's frees). gb_last: the boundary gradients partition 0 receives (n_local + 1 flags). */
void closed_gstats_passes(evaluator *v, const plan_stage *st, walk_summary *by_part,
                          walk_summary *rerun, bool *gb_last);

/* ------------------------------------------------------------------ a stage's phases at any batch
 * (closed_fn.c)
 *
 * A stage's walk makes the same events at every batch, and every byte and FLOP of it is the batch
 * times a count (cost_rows_bytes, cost_fwd_flops), but for exact BatchNorm's per-channel tensors
 * (closed_add_const). So each phase's entry and exit are affine in the batch, and so is every
 * level within a stretch of constant bytes, whose first highest point is then the same event at
 * every batch: a phase walked once at batch 1 gives it at any batch exactly (the first of its
 * stretches' highest points, as closed_reach takes it). A search asks the same stages at every
 * batch of a --fit question (resnet101 --fit h100-80gb: 45% of the time in stage walks repeated
 * a walk of the same stage at another batch), so plan_stage_phases keeps them, in one table that
 * every thread reads (the table's searches at batch 1 fill it for the fit's). Not
 * with a device (kernel times are not proportional to the batch) nor with stripe statistics
 * (constant bytes inside the partitions' walks). */
typedef struct {
    uint64_t shape_id; /* net_t.shape_id: the net and its shapes */
    int in, out, parts, kind, index, eb, optim, twin_parts;
    bool store_last, bn_passes, bn_frozen, bnd_on_host, in_rows;
} closed_phase_key;

typedef struct {
    int64_t entry, entry_k, exit, exit_k;            /* per-sample bytes, constant bytes */
    int64_t flops, bn_flops, copy_bytes, host_delta; /* per sample */
    int bn_passes;
    int n;
    closed_stretch *s; /* per stretch: high in per-sample bytes, konst */
} closed_phase_fn;

/* Whether cfg asks for the functions (plan_config.reuse_phases) and a stage's walk under it is
 * affine in the batch as above. */
bool closed_phase_fn_applies(const net_t *net, const plan_config *cfg, const plan_stage *st);
void closed_phase_key_of(const net_t *net, const plan_config *cfg, const plan_stage *st, int index,
                         closed_phase_key *k);
/* The stage's two phases (forward, backward) at `batch` off the functions kept for k; false when
 * none are kept or their bytes at `batch` do not fit in int64 (walk it then). */
bool closed_phase_fn_get(const closed_phase_key *k, int batch, plan_phase *fwd, plan_phase *bwd);
/* Keeps the phases walked at batch 1 (at1[2], with the walk's stretches, the backward's from
 * str->v[bwd_from], and the constant bytes as the forward begins, as it ends and the backward
 * begins, and as the backward ends, konst[0..2]) as functions for k (not when a count
 * saturated). */
void closed_phase_fn_put(const closed_phase_key *k, const plan_phase *at1,
                         const closed_stretches *str, int bwd_from, const int64_t *konst);

/* What plan_stage_build reads: the net's shape, the stage and its partitions as asked, and of cfg
 * what decides its statistics passes, twin and offloading. */
typedef struct {
    uint64_t shape_id;
    int in, out, parts, kind, bn;
    unsigned offload;
    bool last, recompute_boundaries;
} closed_build_key;

void closed_build_key_of(const net_t *net, const plan_config *cfg, plan_partitioning kind, int in,
                         int out, int parts, bool last, closed_build_key *b);
/* The phase key (index, eb and optim as the caller sets them) and runs kept for a stage built
 * as b asks; false when none are kept. */
bool closed_build_get(const closed_build_key *b, closed_phase_key *k, int64_t *runs);
void closed_build_put(const closed_build_key *b, const closed_phase_key *k, int64_t runs);

#endif
