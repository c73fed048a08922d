/* closed_stats.c - exact BatchNorm's statistics passes in closed form, all of a stage's in shared
 * walks.
 *
 * A stage with exact BatchNorm and N > 1 partitions runs, for each BatchNorm b in it, a STATS pass
 * (every partition's forward through b's ancestors) before its first forward, and a GSTATS pass
 * (every partition recomputed, then back-propagated from the stage output down to b) before its
 * backward (plan.h). Walked pass by pass that costs N x (stage) per BatchNorm: quadratic in the
 * BatchNorms of a stage, most of the planner's time on a ResNet.
 *
 * But partition j of b's STATS pass makes the same events as partition j of a forward through
 * every node of the stage (the shared walk), node by node, up to the node where b's pass departs
 * from it: the first node that is not b's ancestor, or that frees a stripe the shared walk does
 * not free there (its last reader among b's ancestors comes earlier), or b itself. Up to there
 * b's live bytes are the shared walk's plus what b's pass carried into the partition; from there
 * to b it is walked on its own (a script made once per pass). Likewise partition j of b's GSTATS
 * pass is the recompute of the partition (the same for every b) and then the backward of every
 * node (the shared backward walk) from the stage output down to the first node that is not b's
 * descendant (or b), from where it is walked on its own. A pass leaves the partition holding only
 * the boundary gradients it hands on, so its end follows from what it received and made.
 * For a ResNet a pass departs from the shared walk inside b's block only: a stage costs
 * N x (stage + BatchNorms x block) instead of N x stage x BatchNorms.
 *
 * The shared backward walk of partition j makes the events the stage's backward pass makes in
 * partition j after its recompute (for j > 0; partition 0's also frees dO), so closed.c places
 * it there too rather than walking it a second time.
 * Each pass then goes onto the meter in schedule order as its first highest point and its end,
 * which is what walking its events one by one gives (tests/test_plan.c holds the closed form to
 * the replay of the emitted schedule, byte for byte, on the zoo, random nets and hand-cut stages).
 * Where each pass departs and what its own walk runs and frees (its script) depend on the graph
 * and the cut alone: a search that builds one cut at many N makes them once (plan_scripts_new,
 * at the end of this file) and lends them to each stage (plan_stage.scripts). A script's walk in
 * a partition reads only the counts of its own nodes and the partition's four ints: it is walked
 * once per distinct slice of the shapes' keys (script_memo), not once per shape. Likewise, in a
 * stage of many shapes, the shared walks and the recompute are pieced together from segments of
 * a few nodes, each walked once per distinct slice of the keys it reads (closed_segments; the
 * backward's keys also hold the gradient flags a segment starts from).
 *
 * Legend: b a BatchNorm, l, u nodes, j a partition, li = l - in_node; levels are live bytes
 * relative to the start of the pass (after its statistics tensor). No walk here moves host memory
 * (a statistics pass keeps no boundary; the shared walks are for stages without --offload), so
 * their summaries' host is 0.
 * Deliberately not here: the first forward and the backward pass of the stage (closed.c).
 */
#include "closed_walk.h"

#include <string.h>

/* A position of the shared walk of one partition: what came before node l's events. */
typedef struct {
    int64_t level, flops, ns; /* live bytes, FLOPs and time before l's events (from the partition's
                                 start) */
    stretch top;          /* the first highest point before l's events */
    int64_t taken, made;  /* backward: boundary gradients received and handed on before l */
    bool ran;             /* backward: l back-propagated (rows and a gradient) */
} position;

/* One BatchNorm's pass: where it departs from the shared walk and how far it has come. */
typedef struct {
    int node;            /* the BatchNorm b */
    int from;            /* STATS: first node of its own walk; GSTATS: the highest one */
    int first, count;    /* STATS: its script steps */
    bool *in_pass;       /* GSTATS, by node: b's descendants and b (its nodes that run) */
    bool *gb_in, *gb_out; /* GSTATS, by li: boundary gradients between its partitions */
    int64_t level, flops, ns;
    stretch top;
} bn_pass;

/* A node of a STATS pass's own walk and the stripes it frees. */
typedef struct {
    int node;
    bool self;                /* no reader of it runs in the pass */
    int n_release, release;   /* inputs it reads last in the pass: releases[release ..] */
} script_step;

typedef struct {
    evaluator *v;
    const plan_stage *st;
    int n_local;
    int n;                /* BatchNorms in the stage */
    bn_pass *pass;        /* in schedule order */
    position *at;         /* by li, 1 .. n_local + 1 */
    script_step *steps;
    int n_steps, cap_steps;
    int *releases;
    int n_releases, cap_releases;
    bool borrowed; /* steps, releases and the passes' in_pass are the stage's scripts' */
    int *stats_of; /* NULL, or by node id: the STATS passes its scripts run it in (counted) */
    /* the shared walks' segments (off: walked node by node): forward, backward (with its key's
     * extra ints), the recompute before it */
    closed_segments fwd_segs, bwd_segs, rec_segs;
    int32_t *bwd_key;
} shared;

/* plan_scripts (plan.h): a stage's passes as made here, kept for other evaluations. */
struct plan_scripts {
    int in, out, n, n_nodes;
    int *from, *first, *count; /* STATS, by BatchNorm in schedule (ascending) order */
    script_step *steps;
    int *releases;
    int *g_from;   /* GSTATS, by BatchNorm in its schedule (descending) order */
    bool *in_pass; /* n x n_nodes, in that order */
    int *stats_of; /* by node id: the STATS passes it is in (plan_scripts_stats_of) */
    size_t bytes;  /* what it holds, all told */
};

static void *grown(void *p, int *cap, int need, size_t size)
{
    if (need <= *cap)
        return p;
    *cap = need > 2 * *cap ? need : 2 * *cap;
    p = realloc(p, size * (size_t)*cap);
    LR_ASSERT(p != NULL);
    return p;
}

static void shared_init(shared *sh, evaluator *v, const plan_stage *st, bool descending)
{
    memset(sh, 0, sizeof *sh);
    sh->v = v, sh->st = st;
    sh->n_local = st->out_node - st->in_node;
    for (int l = st->in_node + 1; l <= st->out_node; l++)
        sh->n += v->net->nodes[l].op == OP_BATCHNORM;
    sh->pass = calloc((size_t)sh->n + 1, sizeof *sh->pass);
    sh->at = calloc((size_t)sh->n_local + 2, sizeof *sh->at);
    LR_ASSERT(sh->pass && sh->at);
    int k = 0;
    for (int q = 0; q < sh->n_local; q++) {
        int l = descending ? st->out_node - q : st->in_node + 1 + q;
        if (v->net->nodes[l].op == OP_BATCHNORM)
            sh->pass[k++].node = l;
    }
    sh->fwd_segs.off = sh->bwd_segs.off = sh->rec_segs.off = true;
}

static void shared_free(shared *sh)
{
    for (int k = 0; k < sh->n; k++) {
        if (!sh->borrowed)
            free(sh->pass[k].in_pass);
        free(sh->pass[k].gb_in), free(sh->pass[k].gb_out);
    }
    if (!sh->borrowed)
        free(sh->steps), free(sh->releases);
    free(sh->pass), free(sh->at);
    closed_segments_free(&sh->fwd_segs);
    closed_segments_free(&sh->bwd_segs);
    closed_segments_free(&sh->rec_segs);
    free(sh->bwd_key);
}

static int64_t saturated(int64_t a, int64_t b)
{
    int64_t r;
    return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

/* Pass by pass onto the meter, in schedule order: the pass's tensor (statistics or gradient
 * reductions), its first highest point, its end. */
static void place_passes(evaluator *v, const shared *sh, sched_pass pass, bool stats_tensor)
{
    for (int k = 0; k < sh->n; k++) {
        const bn_pass *p = &sh->pass[k];
        int b = p->node;
        closed_add_const(v, stats_tensor ? plan_bn_stats_bytes(v->net, b) : plan_bn_gred_bytes(v->net, b),
                         pass, b, -1);
        closed_place(v, p->top, p->level, p->flops, p->ns);
        v->bn_flops = saturated(v->bn_flops, p->flops);
    }
}


/* ------------------------------------------------------------------ STATS passes */

/* Whether node l makes the same events in b's pass (last readers lf_b) as in the shared walk
 * (lf): the same stripes freed after it. */
static bool same_releases(const net_t *net, const plan_stage *st, int l, const int *lf_b,
                          const int *lf)
{
    if (l != st->out_node && (lf_b[l] < 0) != (lf[l] < 0))
        return false;
    const net_node *n = &net->nodes[l];
    for (int k = 0; k < n->n_inputs; k++) {
        int u = n->inputs[k];
        if (u != st->in_node && (lf_b[u] == l) != (lf[u] == l))
            return false;
    }
    return true;
}

/* v->last_fwd as closed_positions(v, st, v->mark) sets it for the nodes up to b (b's ancestors:
 * no node after b runs in its pass), all a script reads; the rest of the stage is left as is. */
static void ancestor_positions(evaluator *v, const plan_stage *st, int b)
{
    const net_t *net = v->net;
    for (int l = st->in_node + 1; l <= b; l++)
        v->last_fwd[l] = -1;
    for (int c = st->in_node + 1; c <= b; c++) {
        if (!v->mark[c])
            continue;
        const net_node *n = &net->nodes[c];
        for (int k = 0; k < n->n_inputs; k++)
            if (n->inputs[k] != st->in_node)
                v->last_fwd[n->inputs[k]] = c;
    }
}

/* Where b's STATS pass departs from the shared walk, and its script from there to b. */
static void stats_script(shared *sh, bn_pass *p, const int *lf)
{
    evaluator *v = sh->v;
    const net_t *net = v->net;
    const plan_stage *st = sh->st;
    int b = p->node;
    closed_mark_ancestors(v, st, b);
    for (int l = st->in_node + 1; sh->stats_of && l <= b; l++)
        sh->stats_of[l] += v->mark[l];
    ancestor_positions(v, st, b);
    const int *lf_b = v->last_fwd;
    p->from = b;
    for (int l = st->in_node + 1; l < b; l++)
        if (!v->mark[l] || !same_releases(net, st, l, lf_b, lf)) {
            p->from = l;
            break;
        }
    p->first = sh->n_steps;
    for (int l = p->from; l <= b; l++) {
        if (!v->mark[l])
            continue;
        sh->steps = grown(sh->steps, &sh->cap_steps, sh->n_steps + 1, sizeof *sh->steps);
        script_step *s = &sh->steps[sh->n_steps++];
        s->node = l;
        s->self = l != st->out_node && lf_b[l] < 0;
        s->release = sh->n_releases, s->n_release = 0;
        const net_node *n = &net->nodes[l];
        for (int k = 0; k < n->n_inputs; k++) {
            int u = n->inputs[k];
            if (u == st->in_node || !closed_first_occurrence(n, k, u, net) || lf_b[u] != l)
                continue;
            sh->releases = grown(sh->releases, &sh->cap_releases, sh->n_releases + 1, sizeof(int));
            sh->releases[sh->n_releases++] = u;
            s->n_release++;
        }
    }
    p->count = sh->n_steps - p->first;
}

/* Every pass's script (v->last_fwd is left as closed_positions sets it for the whole stage). */
static void stats_scripts(shared *sh)
{
    evaluator *v = sh->v;
    int *lf = malloc(sizeof(int) * (size_t)v->net->n_nodes);
    LR_ASSERT(lf != NULL);
    closed_positions(v, sh->st, NULL);
    memcpy(lf, v->last_fwd, sizeof(int) * (size_t)v->net->n_nodes);
    for (int k = 0; k < sh->n; k++)
        stats_script(sh, &sh->pass[k], lf);
    memcpy(v->last_fwd, lf, sizeof(int) * (size_t)v->net->n_nodes);
    free(lf);
}

/* The stage's scripts: those lent to it, else those kept for its cut (NULL: none, made here). */
static const plan_scripts *stage_scripts(const evaluator *v, const plan_stage *st)
{
    return st->scripts ? st->scripts : plan_scripts_kept(v->net, st->in_node, st->out_node);
}

static void take_stats_scripts(shared *sh, const plan_scripts *s)
{
    LR_ASSERT(s->in == sh->st->in_node && s->out == sh->st->out_node && s->n == sh->n);
    sh->borrowed = true;
    sh->steps = s->steps, sh->releases = s->releases;
    for (int k = 0; k < sh->n; k++)
        sh->pass[k].from = s->from[k], sh->pass[k].first = s->first[k],
        sh->pass[k].count = s->count[k];
}

/* A run of a walk's nodes, relative to where it starts: what it makes (its twin's, evaluator.twin,
 * too), and the boundary gradients it receives and hands on (bytes; backward). */
typedef struct {
    walk_summary sum;  /* live, FLOPs, time, first highest point */
    int64_t twin_live; /* the twin's live bytes and first highest point */
    stretch twin_top;
    int64_t taken, made;
} piece;

/* A segment's piece kept (closed_segments) with the position before each of its nodes; a
 * backward segment's flags follow it. */
typedef struct {
    piece p;
    position at[CLOSED_SEGMENT_NODES];
} segment_walk;

/* A walk going on through piece w of nodes first .. first + count - 1: with positions `rel` (w's,
 * relative to its start), their places in the walk into dst (NULL: none; dst may be rel); the
 * recorder r, its first highest point *top, the twin and the gradient bytes (NULL: not kept)
 * advanced past it. */
static void piece_place(position *dst, const position *rel, int count, const piece *w, recorder *r,
                        stretch *top, recorder *twin, int64_t *taken, int64_t *made)
{
    for (int q = 0; q < count && dst; q++) {
        position p = rel[q];
        dst[q] = (position){.level = r->live + p.level, .flops = saturated(r->flops, p.flops),
                            .ns = saturated(r->ns, p.ns),
                            .top = closed_later(*top, closed_shifted(p.top, r->live)),
                            .taken = (taken ? *taken : 0) + p.taken,
                            .made = (made ? *made : 0) + p.made, .ran = p.ran};
    }
    *top = closed_later(*top, closed_shifted(w->sum.top, r->live));
    r->live += w->sum.live;
    r->flops = saturated(r->flops, w->sum.flops);
    r->ns = saturated(r->ns, w->sum.ns);
    if (twin) {
        twin->top = closed_later(twin->top, closed_shifted(w->twin_top, twin->live));
        twin->live += w->twin_live;
    }
    if (taken)
        *taken += w->taken, *made += w->made;
}

/* The nodes first .. last of a forward pass in partition j into w (v->twin set or not as the
 * whole walk's), with the position before each into at[l - first] (NULL: none). */
static void forward_piece(evaluator *v, const fwd_pass *f, int first, int last, int j,
                          position *at, piece *w)
{
    recorder *outer = v->rec, *outer_twin = v->twin;
    recorder r = {0}, t = {0};
    v->rec = &r;
    v->twin = outer_twin ? &t : NULL;
    stretch top = {0};
    for (int l = first; l <= last; l++) {
        if (at)
            at[l - first] = (position){.level = r.live, .flops = r.flops, .ns = r.ns, .top = top};
        if (f->subset && !f->subset[l])
            continue;
        r.top = (stretch){0};
        closed_forward_node(v, f, l, j);
        top = closed_later(top, r.top);
    }
    *w = (piece){.sum = {r.live, r.flops, r.ns, top, 0}, .twin_live = t.live, .twin_top = t.top};
    v->rec = outer, v->twin = outer_twin;
}

/* Partition j's forward pass f from its first node on into the recorder v->rec (and v->twin),
 * segment by segment (segs; off: in one piece); with `at`, the position before each node into
 * sh->at. */
static void forward_by_pieces(shared *sh, closed_segments *segs, const fwd_pass *f, int j, bool at)
{
    evaluator *v = sh->v;
    const plan_stage *st = sh->st;
    recorder *r = v->rec;
    stretch top = r->top;
    for (int g = 0; g < (segs->off ? 1 : segs->n); g++) {
        int first = segs->off ? st->in_node + 1 : segs->first[g];
        int last = segs->off ? st->out_node : segs->first[g + 1] - 1;
        position *dst = at ? &sh->at[first - st->in_node] : NULL, *rel = dst;
        piece whole, *w = &whole;
        if (segs->off) {
            forward_piece(v, f, first, last, j, rel, w);
        } else {
            bool fresh;
            segment_walk *s = closed_segments_take(segs, g, j, NULL, &fresh);
            if (fresh)
                forward_piece(v, f, first, last, j, at ? s->at : NULL, &s->p);
            w = &s->p, rel = s->at;
        }
        piece_place(dst, rel, last - first + 1, w, r, &top, v->twin, NULL, NULL);
    }
    r->top = top;
}

/* The shared walk of partition j: a STATS-style forward (nothing stored, boundaries handed on and
 * freed when read) through every node, recorded position by position (segment by segment when
 * the stage has the shapes for it). */
static void record_forward(shared *sh, int j, walk_summary *fwd)
{
    evaluator *v = sh->v;
    const plan_stage *st = sh->st;
    fwd_pass f = {st, PASS_STATS, false, true, true, NULL, -1, PASS_FWD, false};
    recorder r = {0}, as_fwd = {0};
    v->rec = &r;
    v->twin = fwd ? &as_fwd : NULL;
    closed_input_in(v, st, PASS_STATS, j); /* the pass's own copy of it, freed at its end */
    forward_by_pieces(sh, &sh->fwd_segs, &f, j, true);
    v->rec = v->twin = NULL;
    if (fwd) { /* the same kernels: FWD's FLOPs and time are the shared walk's */
        as_fwd.top.pass = PASS_FWD;
        *fwd = (walk_summary){as_fwd.live, r.flops, r.ns, as_fwd.top, 0};
    }
}

/* b's script in partition j, relative to where it starts (at the shared walk's position
 * p->from). */
static walk_summary stats_script_walk(shared *sh, const bn_pass *p, int j)
{
    evaluator *v = sh->v;
    recorder r = {0};
    v->rec = &r;
    fwd_pass f = {sh->st, PASS_STATS, false, true, true, NULL, p->node, PASS_STATS, false};
    for (int k = p->first; k < p->first + p->count; k++) {
        const script_step *s = &sh->steps[k];
        closed_forward_compute(v, &f, s->node, j);
        if (s->self)
            closed_forward_release(v, &f, s->node, j);
        for (int q = 0; q < s->n_release; q++)
            closed_forward_release(v, &f, sh->releases[s->release + q], j);
    }
    closed_input_out(v, sh->st, j);
    v->rec = NULL;
    return (walk_summary){r.live, r.flops, r.ns, r.top, 0};
}

/* The scripts' walks by what they read. A script reads the counts of its nodes and of the
 * stripes it frees, a..b (b the BatchNorm), and the partition's four ints: of a stage's shapes,
 * those that agree there make the same script walk. At high resolution a stage has dozens of
 * shapes (stripe heights round differently at each stride: resnet101 at 31248x31248 in 80
 * partitions, 36), but a BatchNorm's block sees a few of them. The entries of a pass are few,
 * compared key slice by key slice (hashed, the hashing alone took 0.30 G of the 17.08 G
 * instructions of resnet101 --batch 256 --fit h100-80gb; compared, the fit takes 16.78 G). */
typedef struct {
    const closed_shapes *shapes; /* NULL: no keys (the stage's shapes are off) */
    int part;                    /* the key's first ints, the partition's (all scripts read them) */
    int *lo, *hi;                /* by pass: the key's ints its script reads, [lo, hi) */
    int cap;                     /* entries per pass (the stage's shapes) */
    int *n;                      /* by pass: entries */
    int *shape;                  /* by pass and entry: the shape walked (its key is compared) */
    walk_summary *val;           /* by pass and entry: the script's walk */
} script_memo;

static void script_memo_init(script_memo *m, const shared *sh, const closed_shapes *s)
{
    memset(m, 0, sizeof *m);
    if (s->off || !s->keys || sh->n == 0)
        return;
    m->shapes = s;
    m->part = closed_shape_node_at(sh->st, sh->st->in_node + 1);
    m->cap = s->n;
    size_t cells = (size_t)sh->n * (size_t)m->cap;
    m->lo = malloc(sizeof(int) * 3 * (size_t)sh->n);
    m->shape = malloc(sizeof(int) * cells);
    m->val = malloc(sizeof(walk_summary) * cells);
    LR_ASSERT(m->lo && m->shape && m->val);
    m->hi = m->lo + sh->n, m->n = m->hi + sh->n;
    for (int k = 0; k < sh->n; k++) {
        const bn_pass *p = &sh->pass[k];
        int a = p->node;
        for (int q = p->first; q < p->first + p->count; q++) {
            const script_step *t = &sh->steps[q];
            a = t->node < a ? t->node : a;
            for (int r = 0; r < t->n_release; r++)
                a = sh->releases[t->release + r] < a ? sh->releases[t->release + r] : a;
        }
        m->lo[k] = closed_shape_node_at(sh->st, a);
        m->hi[k] = closed_shape_node_at(sh->st, p->node + 1);
        m->n[k] = 0;
    }
}

static void script_memo_free(script_memo *m)
{
    free(m->lo), free(m->shape), free(m->val);
}

static bool same_script_key(const script_memo *m, int k, int e, int f)
{
    const closed_shapes *s = m->shapes;
    const int32_t *x = s->keys + (size_t)e * s->len, *y = s->keys + (size_t)f * s->len;
    return memcmp(x, y, sizeof(int32_t) * (size_t)m->part) == 0 &&
           memcmp(x + m->lo[k], y + m->lo[k], sizeof(int32_t) * (size_t)(m->hi[k] - m->lo[k])) == 0;
}

/* Partition j of b's (the k-th pass's) STATS pass, relative to where the pass stood when j
 * began: the shared walk up to where b departs, then b's script (walked, or found by what it
 * reads). */
static walk_summary stats_partition(shared *sh, script_memo *m, int k, int j)
{
    const bn_pass *p = &sh->pass[k];
    const position *at = &sh->at[p->from - sh->st->in_node];
    walk_summary d;
    if (!m->shapes) {
        d = stats_script_walk(sh, p, j);
    } else {
        const closed_shapes *s = m->shapes;
        int e = s->of[j];
        size_t base = (size_t)k * (size_t)m->cap;
        int q = 0;
        while (q < m->n[k] && !same_script_key(m, k, m->shape[base + q], e))
            q++;
        if (q == m->n[k]) {
            LR_ASSERT(q < m->cap);
            m->shape[base + q] = e;
            m->val[base + q] = stats_script_walk(sh, p, j);
            m->n[k]++;
        }
        d = m->val[base + q];
    }
    return (walk_summary){at->level + d.live, saturated(at->flops, d.flops),
                          saturated(at->ns, d.ns),
                          closed_later(at->top, closed_shifted(d.top, at->level)), 0};
}

/* A pass goes on through partition j, whose summary d is relative to the pass at j's start. */
static void pass_advance(bn_pass *p, const walk_summary *d, int j)
{
    p->top = closed_later(p->top, closed_shifted(closed_at_part(d->top, j), p->level));
    p->level += d->live;
    p->flops = saturated(p->flops, d->flops);
    p->ns = saturated(p->ns, d->ns);
}

bool closed_passes_share_walks(const plan_stage *st)
{
    return st->bn_passes && !st->store_last && !st->in_rows && !st->bnd_on_host;
}

void closed_stats_passes(evaluator *v, const plan_stage *st, walk_summary *fwd)
{
    LR_ASSERT(!fwd || closed_passes_share_walks(st));
    shared sh;
    shared_init(&sh, v, st, false);
    const plan_scripts *lent = stage_scripts(v, st);
    if (lent) {
        take_stats_scripts(&sh, lent);
        closed_positions(v, st, NULL);
    } else {
        stats_scripts(&sh);
    }
    /* by shape: the FWD pass's summary, then each STATS pass's */
    const closed_shapes *shapes = closed_shapes_of(v, st);
    closed_memo memo;
    closed_memo_init(&memo, shapes, 0, sizeof(walk_summary) * (size_t)(sh.n + 1));
    script_memo scripts;
    script_memo_init(&scripts, &sh, shapes);
    closed_segments_init(&sh.fwd_segs, v->net, shapes);
    closed_segments_values(&sh.fwd_segs, 0, sizeof(segment_walk));
    walk_summary *spare = malloc(memo.val_bytes);
    LR_ASSERT(spare != NULL);
    for (int j = 0; j < st->parts; j++) {
        closed_memo_key(&memo, j);
        bool fresh;
        walk_summary *w = closed_memo_take(&memo, spare, &fresh);
        if (fresh) {
            record_forward(&sh, j, fwd ? &w[0] : NULL);
            for (int k = 0; k < sh.n; k++)
                w[1 + k] = stats_partition(&sh, &scripts, k, j);
        }
        if (fwd)
            fwd[j] = closed_summary_at(&w[0], j);
        for (int k = 0; k < sh.n; k++)
            pass_advance(&sh.pass[k], &w[1 + k], j);
    }
    free(spare);
    script_memo_free(&scripts);
    closed_memo_free(&memo);
    place_passes(v, &sh, PASS_STATS, true);
    v->bn_passes += sh.n;
    shared_free(&sh);
}

/* ------------------------------------------------------------------ GSTATS passes */

static int64_t taken_bytes(const evaluator *v, const plan_stage *st, int l, int j)
{
    return closed_rows_bytes(v, l, closed_boundary(st, l, j));
}

static int64_t made_bytes(const evaluator *v, const plan_stage *st, int l, int j)
{
    int i = plan_idx(st, l, j);
    return closed_rows_bytes(v, l, rr_make(st->held[i].lo, st->own[i].lo - 1));
}

/* b's nodes that run (descendants and b) and the highest node above b that does not run. */
static void gstats_pass_of(shared *sh, bn_pass *p)
{
    evaluator *v = sh->v;
    const plan_stage *st = sh->st;
    closed_mark_descendants(v, st, p->node);
    p->in_pass = malloc((size_t)v->net->n_nodes);
    LR_ASSERT(p->in_pass != NULL);
    memcpy(p->in_pass, v->mark, (size_t)v->net->n_nodes);
    p->from = p->node;
    for (int l = st->out_node; l > p->node; l--)
        if (!p->in_pass[l]) {
            p->from = l;
            break;
        }
}

/* The passes' nodes (made here, or the stage's scripts'), and their boundary gradient flags. */
static void gstats_passes_of(shared *sh)
{
    const plan_scripts *s = stage_scripts(sh->v, sh->st);
    if (s) {
        LR_ASSERT(s->in == sh->st->in_node && s->out == sh->st->out_node && s->n == sh->n);
        sh->borrowed = true;
    }
    for (int k = 0; k < sh->n; k++) {
        bn_pass *p = &sh->pass[k];
        if (s)
            p->from = s->g_from[k], p->in_pass = s->in_pass + (size_t)k * s->n_nodes;
        else
            gstats_pass_of(sh, p);
        p->gb_in = calloc((size_t)sh->n_local + 1, 1);
        p->gb_out = calloc((size_t)sh->n_local + 1, 1);
        LR_ASSERT(p->gb_in && p->gb_out);
    }
}

/* Node l of the shared backward walk in partition j, the bytes received (*taken) and handed on
 * (*made) counted after it; whether it ran (rows and a gradient). */
static bool backward_step(shared *sh, const bwd_pass *b, int l, int j, bool *g, const bool *gb_in,
                          bool *gb_out, int64_t *taken, int64_t *made)
{
    evaluator *v = sh->v;
    const plan_stage *st = sh->st;
    int li = l - st->in_node;
    closed_backward_node(v, b, l, j, g, gb_in, gb_out);
    if (l != st->out_node && gb_in[li])
        *taken += taken_bytes(v, st, l, j);
    if (gb_out[li])
        *made += made_bytes(v, st, l, j);
    return !rr_empty(closed_bwd_rows(st, l, j)) && g[li];
}

/* The nodes last down to first of the shared backward walk in partition j into w, with the
 * position before each into at[l - first]. */
static void backward_piece(shared *sh, const bwd_pass *b, int first, int last, int j, bool *g,
                           const bool *gb_in, bool *gb_out, position *at, piece *w)
{
    evaluator *v = sh->v;
    recorder *outer = v->rec, r = {0};
    v->rec = &r;
    stretch top = {0};
    int64_t taken = 0, made = 0;
    for (int l = last; l >= first; l--) {
        at[l - first] = (position){.level = r.live, .flops = r.flops, .ns = r.ns, .top = top,
                                   .taken = taken, .made = made};
        r.top = (stretch){0};
        at[l - first].ran = backward_step(sh, b, l, j, g, gb_in, gb_out, &taken, &made);
        top = closed_later(top, r.top);
    }
    v->rec = outer;
    *w = (piece){.sum = {r.live, r.flops, r.ns, top, 0}, .taken = taken, .made = made};
}

/* Partition j's shared backward walk into the recorder v->rec, segment by segment (off: in one
 * piece): a segment whose counts and entry flags were walked before takes that walk's piece and
 * the flags it left. A segment's key holds the gradient stripes present on entry (low .. last)
 * and the boundary gradients received (first .. last); its value after the segment_walk the
 * flags it leaves, the same spans. */
static void backward_by_pieces(shared *sh, const bwd_pass *b, int j, bool *g, const bool *gb_in,
                               bool *gb_out, int64_t *taken, int64_t *made)
{
    evaluator *v = sh->v;
    const plan_stage *st = sh->st;
    closed_segments *segs = &sh->bwd_segs;
    int in = st->in_node;
    recorder *r = v->rec;
    stretch top = {0};
    for (int s = (segs->off ? 1 : segs->n) - 1; s >= 0; s--) {
        int first = segs->off ? in + 1 : segs->first[s];
        int last = segs->off ? st->out_node : segs->first[s + 1] - 1;
        position *dst = &sh->at[first - in], *rel = dst;
        piece whole, *w = &whole;
        if (segs->off) {
            backward_piece(sh, b, first, last, j, g, gb_in, gb_out, rel, w);
        } else {
            int low = segs->low[s];
            int32_t *x = sh->bwd_key;
            for (int l = low; l <= last; l++)
                *x++ = g[l - in];
            for (int l = first; l <= last; l++)
                *x++ = gb_in[l - in];
            while (x < sh->bwd_key + segs->extra)
                *x++ = -1;
            bool fresh;
            segment_walk *k = closed_segments_take(segs, s, j, sh->bwd_key, &fresh);
            unsigned char *flags = (unsigned char *)(k + 1);
            if (fresh) {
                backward_piece(sh, b, first, last, j, g, gb_in, gb_out, k->at, &k->p);
                for (int l = low; l <= last; l++)
                    *flags++ = g[l - in];
                for (int l = first; l <= last; l++)
                    *flags++ = gb_out[l - in];
            } else {
                for (int l = low; l <= last; l++)
                    g[l - in] = *flags++;
                for (int l = first; l <= last; l++)
                    gb_out[l - in] = *flags++;
            }
            w = &k->p, rel = k->at;
        }
        piece_place(dst, rel, last - first + 1, w, r, &top, NULL, taken, made);
    }
    r->top = top;
}

/* The shared backward walk of partition j (every node runs, no target), recorded position by
 * position from the stage output down (segment by segment when the stage has the shapes for
 * it); gb_in/gb_out chain it from partition to partition. */
static void record_backward(shared *sh, int j, const recorder *re, bool *gb_in, bool *gb_out,
                            walk_summary *sum)
{
    evaluator *v = sh->v;
    const plan_stage *st = sh->st;
    bwd_pass b = {st, PASS_GSTATS, NULL, -1};
    bool *g = v->has_grad;
    memset(g, 0, (size_t)sh->n_local + 1);
    memset(gb_out, 0, (size_t)sh->n_local + 1);
    recorder r = {0};
    v->rec = &r;
    int64_t taken = 0, made = 0;
    backward_by_pieces(sh, &b, j, g, gb_in, gb_out, &taken, &made);
    closed_input_out(v, st, j); /* what the recompute brought in (re) leaves with the pass */
    v->rec = NULL;
    if (sum)
        *sum = (walk_summary){r.live, r.flops, r.ns, r.top, 0};
    memset(g, 0, (size_t)sh->n_local + 1);
    /* everything the partition made is freed but what it hands on */
    LR_ASSERT(re->live + r.live == made - taken);
}

/* Whether node u has its gradient stripe when b's own walk starts below `from`: some reader of u
 * above `from` back-propagated in the shared walk. */
static bool grad_above(const shared *sh, int u, int from)
{
    const net_t *net = sh->v->net;
    for (int e = net->cons_off[u]; e < net->cons_off[u + 1]; e++) {
        int c = net->cons_node[e];
        if (c > from && c <= sh->st->out_node && sh->at[c - sh->st->in_node].ran)
            return true;
    }
    return false;
}

/* The gradient stripes b's own walk may touch, as the shared walk left them above `from`. */
static void set_grads(shared *sh, const bn_pass *p, bool value)
{
    const plan_stage *st = sh->st;
    bool *g = sh->v->has_grad;
    for (int l = p->node; l <= p->from; l++) {
        g[l - st->in_node] = value && grad_above(sh, l, p->from);
        const net_node *n = &sh->v->net->nodes[l];
        for (int k = 0; k < n->n_inputs; k++)
            if (n->inputs[k] != st->in_node)
                g[n->inputs[k] - st->in_node] = value && grad_above(sh, n->inputs[k], p->from);
    }
}

/* Partition j of b's GSTATS pass, relative to where the pass stood when j began: the recompute
 * (recorded once per partition as `re`), the shared backward walk down to b's highest own node,
 * then b's own walk down to b. It hands p->gb_in on to partition j-1. */
static walk_summary gstats_partition(shared *sh, bn_pass *p, int j, const walk_summary *re)
{
    evaluator *v = sh->v;
    const plan_stage *st = sh->st;
    int in = st->in_node;
    const position *at = &sh->at[p->from - in];
    stretch top = closed_later(re->top, closed_shifted(at->top, re->live));
    set_grads(sh, p, true);
    size_t span = (size_t)(p->from - p->node + 1), lo = (size_t)(p->node - in);
    memset(p->gb_out + lo, 0, span);
    recorder r = {.live = re->live + at->level};
    v->rec = &r;
    bwd_pass b = {st, PASS_GSTATS, p->in_pass, p->node};
    int64_t taken = at->taken, made = at->made;
    for (int l = p->from; l >= p->node; l--) {
        closed_backward_node(v, &b, l, j, v->has_grad, p->gb_in, p->gb_out);
        if (p->in_pass[l] && l != st->out_node && p->gb_in[l - in])
            taken += taken_bytes(v, st, l, j);
        if (p->gb_out[l - in])
            made += made_bytes(v, st, l, j);
    }
    v->rec = NULL;
    set_grads(sh, p, false);
    memcpy(p->gb_in + lo, p->gb_out + lo, span);
    return (walk_summary){made - taken, saturated(re->flops, saturated(at->flops, r.flops)),
                          saturated(re->ns, saturated(at->ns, r.ns)), closed_later(top, r.top), 0};
}

/* What partition j of the GSTATS passes makes, by shape and the boundary gradients it receives
 * (the shared chain's, then each pass's over its own nodes): the recompute, beside it the
 * backward's, the shared backward walk, each pass's summary; then the flags handed to j-1. */
typedef struct {
    closed_memo memo;
    int n_local;
    size_t *span, *lo; /* by pass: its own nodes (li lo .. lo + span - 1) */
    size_t flags;      /* offset of the flags in a value */
    unsigned char *spare;
} gstats_memo;

static void gstats_memo_init(gstats_memo *g, const shared *sh)
{
    g->n_local = sh->n_local;
    g->span = malloc(sizeof(size_t) * 2 * (size_t)(sh->n + 1));
    LR_ASSERT(g->span != NULL);
    g->lo = g->span + sh->n + 1;
    int extra = sh->n_local + 1;
    for (int k = 0; k < sh->n; k++) {
        g->span[k] = (size_t)(sh->pass[k].from - sh->pass[k].node + 1);
        g->lo[k] = (size_t)(sh->pass[k].node - sh->st->in_node);
        extra += (int)g->span[k];
    }
    g->flags = sizeof(walk_summary) * (size_t)(3 + sh->n);
    closed_memo_init(&g->memo, closed_shapes_of(sh->v, sh->st), extra, g->flags + (size_t)extra);
    g->spare = malloc(g->memo.val_bytes);
    LR_ASSERT(g->spare != NULL);
}

static void gstats_memo_free(gstats_memo *g)
{
    free(g->span), free(g->spare);
    closed_memo_free(&g->memo);
}

/* Partition j's key: its shape, the chain's flags, each pass's flags. */
static void gstats_key(gstats_memo *g, const shared *sh, int j, const bool *gb_in)
{
    int32_t *x = closed_memo_key(&g->memo, j);
    if (!x)
        return;
    for (int q = 0; q <= g->n_local; q++)
        *x++ = gb_in[q];
    for (int k = 0; k < sh->n; k++)
        for (size_t q = 0; q < g->span[k]; q++)
            *x++ = sh->pass[k].gb_in[g->lo[k] + q];
}

/* Partition j walked: into a value (w: recompute, backward's recompute, shared backward walk,
 * then the passes; after them the flags it hands on). */
static void gstats_walk(shared *sh, gstats_memo *g, int j, bool *gb_in, bool *gb_out,
                        bool rerun, walk_summary *w)
{
    evaluator *v = sh->v;
    const plan_stage *st = sh->st;
    recorder re = {0}, as_bwd = {0};
    v->rec = &re;
    v->twin = rerun ? &as_bwd : NULL;
    closed_input_in(v, st, PASS_RECOMPUTE, j);
    fwd_pass f = closed_recompute_pass(st, false);
    if (sh->rec_segs.off)
        closed_forward_partition(v, &f, j);
    else
        forward_by_pieces(sh, &sh->rec_segs, &f, j, false);
    v->rec = v->twin = NULL;
    w[0] = (walk_summary){re.live, re.flops, re.ns, re.top, 0};
    w[1] = (walk_summary){as_bwd.live, re.flops, re.ns, as_bwd.top, 0};
    record_backward(sh, j, &re, gb_in, gb_out, &w[2]);
    unsigned char *flags = (unsigned char *)w + g->flags;
    memcpy(flags, gb_out, (size_t)g->n_local + 1);
    flags += g->n_local + 1;
    for (int k = 0; k < sh->n; k++) {
        w[3 + k] = gstats_partition(sh, &sh->pass[k], j, &w[0]);
        memcpy(flags, sh->pass[k].gb_in + g->lo[k], g->span[k]);
        flags += g->span[k];
    }
}

/* The segments of the recompute and of the shared backward walk (backward_by_pieces says what a
 * backward segment's key and value hold). */
static void gstats_segments_init(shared *sh)
{
    const closed_shapes *shapes = closed_shapes_of(sh->v, sh->st);
    closed_segments_init(&sh->rec_segs, sh->v->net, shapes);
    closed_segments_values(&sh->rec_segs, 0, sizeof(segment_walk));
    closed_segments_init(&sh->bwd_segs, sh->v->net, shapes);
    if (sh->bwd_segs.off)
        return;
    int extra = closed_segments_reach(&sh->bwd_segs) + CLOSED_SEGMENT_NODES;
    closed_segments_values(&sh->bwd_segs, extra, sizeof(segment_walk) + (size_t)extra);
    sh->bwd_key = malloc(sizeof(int32_t) * (size_t)extra);
    LR_ASSERT(sh->bwd_key != NULL);
}

void closed_gstats_passes(evaluator *v, const plan_stage *st, walk_summary *by_part,
                          walk_summary *rerun, bool *gb_last)
{
    LR_ASSERT(!rerun || closed_passes_share_walks(st));
    shared sh;
    shared_init(&sh, v, st, true);
    gstats_passes_of(&sh);
    closed_positions(v, st, st->rerun);
    bool *gb_in = calloc((size_t)sh.n_local + 1, 1), *gb_out = calloc((size_t)sh.n_local + 1, 1);
    LR_ASSERT(gb_in && gb_out);
    gstats_memo g;
    gstats_memo_init(&g, &sh);
    gstats_segments_init(&sh);
    for (int j = st->parts - 1; j >= 0; j--) {
        if (j == 0 && gb_last)
            memcpy(gb_last, gb_in, (size_t)sh.n_local + 1);
        gstats_key(&g, &sh, j, gb_in);
        bool fresh;
        walk_summary *w = closed_memo_take(&g.memo, g.spare, &fresh);
        if (fresh)
            gstats_walk(&sh, &g, j, gb_in, gb_out, rerun != NULL, w);
        if (rerun)
            rerun[j] = closed_summary_at(&w[1], j);
        if (by_part)
            by_part[j] = closed_summary_at(&w[2], j);
        const unsigned char *flags = (const unsigned char *)w + g.flags;
        memcpy(gb_in, flags, (size_t)sh.n_local + 1);
        flags += sh.n_local + 1;
        for (int k = 0; k < sh.n; k++) {
            pass_advance(&sh.pass[k], &w[3 + k], j);
            memcpy(sh.pass[k].gb_in + g.lo[k], flags, g.span[k]);
            flags += g.span[k];
        }
    }
    gstats_memo_free(&g);
    place_passes(v, &sh, PASS_GSTATS, false);
    free(gb_in), free(gb_out);
    shared_free(&sh);
}

/* ------------------------------------------------------------------ scripts made beforehand */

plan_scripts *plan_scripts_new(const net_t *net, int in, int out)
{
    int n = net->n_nodes;
    plan_stage st;
    memset(&st, 0, sizeof st);
    st.in_node = in, st.out_node = out; /* (all the scripts read of a stage) */
    evaluator v;
    memset(&v, 0, sizeof v);
    v.net = net;
    v.mark = calloc((size_t)n, 1), v.saved = calloc((size_t)n, 1);
    v.last_fwd = malloc(sizeof(int) * (size_t)n), v.first_bwd = malloc(sizeof(int) * (size_t)n);
    plan_scripts *s = calloc(1, sizeof *s);
    LR_ASSERT(v.mark && v.saved && v.last_fwd && v.first_bwd && s);
    s->in = in, s->out = out, s->n_nodes = n;
    s->stats_of = calloc((size_t)n, sizeof(int));
    LR_ASSERT(s->stats_of != NULL);
    shared up, down;
    shared_init(&up, &v, &st, false);
    up.stats_of = s->stats_of;
    stats_scripts(&up);
    s->n = up.n;
    s->from = malloc(sizeof(int) * 4 * (size_t)(s->n + 1));
    s->in_pass = malloc((size_t)s->n * (size_t)n + 1);
    LR_ASSERT(s->from && s->in_pass);
    s->first = s->from + s->n + 1, s->count = s->first + s->n + 1, s->g_from = s->count + s->n + 1;
    for (int k = 0; k < s->n; k++)
        s->from[k] = up.pass[k].from, s->first[k] = up.pass[k].first, s->count[k] = up.pass[k].count;
    s->steps = up.steps, s->releases = up.releases; /* (taken from up) */
    s->bytes = sizeof *s + sizeof(int) * (4 * (size_t)(s->n + 1) + (size_t)n) +
               (size_t)s->n * (size_t)n + sizeof(script_step) * (size_t)up.cap_steps +
               sizeof(int) * (size_t)up.cap_releases;
    up.steps = NULL, up.releases = NULL;
    shared_init(&down, &v, &st, true);
    for (int k = 0; k < down.n; k++) {
        gstats_pass_of(&down, &down.pass[k]);
        s->g_from[k] = down.pass[k].from;
        memcpy(s->in_pass + (size_t)k * n, down.pass[k].in_pass, (size_t)n);
    }
    shared_free(&up), shared_free(&down);
    free(v.mark), free(v.saved), free(v.last_fwd), free(v.first_bwd);
    return s;
}

const int *plan_scripts_stats_of(const plan_scripts *s)
{
    return s->stats_of;
}

/* plan_scripts_kept's table: open addressing by (graph, in, out), at most half full and
 * KEPT_BYTES in all (resnet101 --fit h100-80gb keeps 146 cuts' in 1.3 MB, the largest 49 KB);
 * entries are never removed (a stage may hold one while another thread asks). */
enum { KEPT_SLOTS = 4096, KEPT_MAX = KEPT_SLOTS / 2 };
#define KEPT_BYTES ((size_t)64 << 20)
typedef struct {
    uint64_t graph;
    int in, out;
    plan_scripts *s;
} kept_entry;
static kept_entry *kept;
static int n_kept_scripts;
static size_t kept_bytes;

/* (under the lock) */
static kept_entry *kept_slot(uint64_t graph, int in, int out)
{
    uint64_t h = (graph * 0x9E3779B97F4A7C15u) ^ ((uint64_t)(uint32_t)in << 20) ^ (uint32_t)out;
    h ^= h >> 29;
    for (uint32_t i = (uint32_t)h & (KEPT_SLOTS - 1);; i = (i + 1) & (KEPT_SLOTS - 1))
        if (!kept[i].s || (kept[i].graph == graph && kept[i].in == in && kept[i].out == out))
            return &kept[i];
}

const plan_scripts *plan_scripts_kept(const net_t *net, int in, int out)
{
    if (net->graph_id == 0)
        return NULL;
    const plan_scripts *found = NULL;
    bool room = false;
#pragma omp critical(plan_scripts_kept)
    {
        if (!kept)
            kept = calloc(KEPT_SLOTS, sizeof *kept);
        kept_entry *e = kept ? kept_slot(net->graph_id, in, out) : NULL;
        found = e ? e->s : NULL;
        room = kept && n_kept_scripts < KEPT_MAX && kept_bytes < KEPT_BYTES;
    }
    if (found || !room)
        return found;
    plan_scripts *made = plan_scripts_new(net, in, out); /* (outside the lock: it walks the graph) */
#pragma omp critical(plan_scripts_kept)
    {
        kept_entry *e = kept_slot(net->graph_id, in, out);
        if (!e->s && n_kept_scripts < KEPT_MAX && kept_bytes + made->bytes <= KEPT_BYTES) {
            /* (another thread may have kept them meanwhile) */
            *e = (kept_entry){net->graph_id, in, out, made};
            n_kept_scripts++;
            kept_bytes += made->bytes;
            made = NULL;
        }
        found = e->s;
    }
    plan_scripts_free(made);
    return found;
}

const plan_scripts *plan_scripts_lent(const net_t *net, int in, int out, plan_scripts **own)
{
    const plan_scripts *s = plan_scripts_kept(net, in, out);
    *own = s ? NULL : plan_scripts_new(net, in, out);
    return s ? s : *own;
}

void plan_scripts_free(plan_scripts *s)
{
    if (!s)
        return;
    free(s->from), free(s->in_pass), free(s->steps), free(s->releases), free(s->stats_of);
    free(s);
}
