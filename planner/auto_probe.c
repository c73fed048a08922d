/* auto_probe.c - the auto planner's measurements: column, the one-partition stages every plan
 * builds on, and one probe per (stage, N, space), each a closed-form evaluation of a small plan
 * (auto.h says why the stage model they feed is exact; auto_search.h has the legend).
 *
 * Probes run as jobs, in parallel (OpenMP); an exact-BN stage whose compute bound exceeds a
 * round's limit waits for a later round. A stage with an earlier twin (search.twin: the same
 * layers, shifted) takes the twin job's measurement of each N with its node ids shifted, and
 * measures it itself only when that job has not yet (on resnet101, most of the hybrids' stages
 * are twins of the first ones in layer3). Deliberately not here: choosing the cuts
 * (auto_cuts.c) or combining stages into plans (auto_dp.c).
 */
#include "auto_search.h"
#include "par.h"

#include <string.h>

/* N tried for a stage (auto.h); the whole region also gets every N in 2..WHOLE_MAX_N, as the
 * single-stage strategies do. */
static const int stage_parts[] = {2, 3, 4, 6, 8, 12, 16, 24, 32};
#define N_STAGE_PARTS (int)(sizeof stage_parts / sizeof stage_parts[0])
#define WHOLE_MAX_N 32
/* A partitioned stage that is not a resolution stage or the whole region stops trying larger N
 * after this many in a row do not lower its own peak: past its best N a stage only gets worse
 * (more boundary rows, more halo compute, a higher peak). */
#define PARTS_PATIENCE 2
/* Other stages span at most this many candidate cuts (e.g. 8 ResNet blocks): longer ones never
 * won on the zoo and cost the most to measure (the checkpoint strategy's own segments, however
 * long, are a seed). */
#define SPAN_MAX 8

lr_status auto_evaluate(search *s, plan_bn bn, const plan_spec *sp, plan_cost *c, bool *usable)
{
    plan_config cfg = s->cfg;
    cfg.bn = bn;
#pragma omp atomic
    s->n_evals++;
    return strategy_evaluate_usable(s->net, &cfg, sp, c, usable);
}

/* For the measurements every plan builds on (column, one-partition stages). */
static lr_status evaluate_base(search *s, const plan_spec *sp, plan_cost *c)
{
    bool usable;
    LR_TRY(auto_evaluate(s, s->base_bn, sp, c, &usable));
    if (!usable)
        return lr_fail(LR_ERR_INPUT, "auto: %s at batch %d: a plan of one-partition stages cannot "
                                     "be counted: use a smaller batch or input", s->net->name, s->cfg.batch);
    return LR_OK;
}

/* ------------------------------------------------------------------ probes */

/* Stage (cut[a], cut[b]] alone under bn, with its phases as stage `index` and its run bound. */
static lr_status stage_alone(const search *s, plan_bn bn, plan_partitioning kind, int a, int b,
                             int parts, bool last, bool recompute, int index,
                             const plan_scripts *scripts, plan_phase *fwd, plan_phase *bwd,
                             int64_t *runs)
{
    plan_config cfg = s->cfg;
    cfg.bn = bn;
    cfg.recompute_boundaries = cfg.recompute_boundaries || recompute;
    return plan_stage_alone(s->net, &cfg, kind, s->cut[a], s->cut[b], parts, last, index, scripts,
                            fwd, bwd, runs);
}

/* The pieces every probe plan is put together from (search.head_fwd ...). */
static lr_status measure_pieces(search *s)
{
    int m = s->m;
    s->head_fwd = calloc((size_t)m + 1, sizeof *s->head_fwd);
    s->head_bwd = calloc((size_t)m + 1, sizeof *s->head_bwd);
    s->next_fwd = calloc((size_t)m + 1, sizeof *s->next_fwd);
    s->next_bwd = calloc((size_t)m + 1, sizeof *s->next_bwd);
    s->ends_at = calloc((size_t)m + 1, sizeof *s->ends_at);
    s->head_runs = calloc((size_t)m + 1, sizeof(int64_t));
    s->next_runs = calloc((size_t)m + 1, sizeof(int64_t));
    LR_ASSERT(s->head_fwd && s->head_bwd && s->next_fwd && s->next_bwd && s->ends_at &&
              s->head_runs && s->next_runs);
    plan_config cfg = s->cfg;
    cfg.bn = s->base_bn;
    for (int i = 1; i <= m; i++) {
        LR_TRY(stage_alone(s, s->base_bn, PART_TILE_OUT, 0, i, 1, false, false, 0, NULL, &s->head_fwd[i],
                           &s->head_bwd[i], &s->head_runs[i]));
        if (i < m)
            LR_TRY(stage_alone(s, s->base_bn, PART_TILE_OUT, i, i + 1, 1, true, false, 0, NULL,
                               &s->next_fwd[i], &s->next_bwd[i], &s->next_runs[i]));
        plan_spec one = {.n_stages = 1, .cut = {s->cut[i]}, .parts = {1}};
        plan_t *plan;
        LR_TRY(plan_build(s->net, &cfg, &one, &plan));
        plan_cost c;
        plan_closed_phases(plan, &c, &s->ends_at[i]);
        plan_free(plan);
    }
    return LR_OK;
}

void auto_free_pieces(search *s)
{
    free(s->head_fwd), free(s->head_bwd), free(s->next_fwd), free(s->next_bwd);
    free(s->ends_at), free(s->head_runs), free(s->next_runs);
}

/* A phase recorded as another stage index than the one it plays in a plan. */
static plan_phase as_stage(plan_phase ph, int index)
{
    if (ph.grew)
        ph.stage = index;
    return ph;
}

/* ------------------------------------------------------------------ twins */

static plan_phase shifted(plan_phase ph, int by)
{
    if (ph.grew && ph.node >= 0)
        ph.node += by;
    return ph;
}

/* Where job j's measurement of N = parts (each way) is kept for its twins, or read from its
 * twin's: NULL when neither. */
static stage_memo *memo_of(const probe_job *j, int parts, bool recompute)
{
    const probe_job *owner = j && j->twin ? j->twin : j;
    if (!owner || !owner->memo)
        return NULL;
    LR_ASSERT(parts >= 1 && parts <= WHOLE_MAX_N);
    return &owner->memo[2 * (parts - 1) + recompute];
}

static bool stage_has_bn(const search *s, int a, int b)
{
    return plan_has_bn(s->net, s->cut[a], s->cut[b]);
}

/* Stage (cut[a], cut[b]] alone as stage_alone measures it, or its twin's measurement. */
static lr_status stage_alone_shared(search *s, const space *sp_of, probe_job *j, int a,
                                    int b, int parts, bool last, bool recompute, int index,
                                    plan_phase *fwd, plan_phase *bwd, int64_t *runs)
{
    stage_memo *memo = memo_of(j, parts, recompute);
    if (memo && j->twin && __atomic_load_n(&memo->ready, __ATOMIC_ACQUIRE)) {
        *fwd = shifted(memo->fwd, j->shift), *bwd = shifted(memo->bwd, j->shift);
        *runs = memo->runs;
        return LR_OK;
    }
#pragma omp atomic
    s->n_evals++;
    if (j && !j->scripts && sp_of->bn == BN_EXACT && parts > 1 && stage_has_bn(s, a, b))
        j->scripts = plan_scripts_lent(s->net, s->cut[a], s->cut[b], &j->own);
    LR_TRY(stage_alone(s, sp_of->bn, sp_of->kind, a, b, parts, last, recompute, index,
                       j ? j->scripts : NULL, fwd, bwd, runs));
    if (memo && !j->twin) {
        memo->fwd = *fwd, memo->bwd = *bwd, memo->runs = *runs;
        __atomic_store_n(&memo->ready, 1, __ATOMIC_RELEASE);
    }
    return LR_OK;
}

/* The probe plan [(0, a]:1] (a, b]:parts [(b, b+1]:1], costed from its probed stage alone and
 * the pieces: what strategy_evaluate_usable says of it. */
static lr_status probe_cost(search *s, const space *sp_of, probe_job *j, int a, int b,
                            int parts, bool last, bool recompute, plan_cost *c, int64_t *tail_high,
                            bool *usable)
{
    /* a whole-region stage its single-stage search measured already (keeping its boundaries) */
    const strategy_kept_stage *kept =
        a == 0 && last && !recompute
            ? strategy_stage_memo_find(s->kept, sp_of->kind, sp_of->bn, s->cut[b], parts)
            : NULL;
    plan_phase fwd[3], bwd[3];
    int n = 0;
    int64_t runs = 2 * (int64_t)s->net->n_nodes;
    if (a > 0) {
        fwd[n] = s->head_fwd[a], bwd[n] = s->head_bwd[a];
        runs += s->head_runs[a];
        n++;
    }
    int64_t own;
    if (kept) {
        own = kept->runs;
        if (kept->phased)
            fwd[n] = kept->fwd, bwd[n] = kept->bwd;
    } else {
        LR_TRY(stage_alone_shared(s, sp_of, j, a, b, parts, last, recompute, n, &fwd[n], &bwd[n],
                                  &own));
    }
    runs += own;
    n++;
    if (!last) {
        fwd[n] = as_stage(s->next_fwd[b], n), bwd[n] = as_stage(s->next_bwd[b], n);
        runs += s->next_runs[b];
        n++;
    }
    *usable = runs <= PLAN_MAX_RUNS;
    if (!*usable)
        return LR_OK;
    plan_phases rec;
    plan_phases_assemble(&s->ends_at[last ? b : b + 1], 1, n, fwd, bwd, &rec);
    const plan_phases *by[3] = {&rec, &rec, &rec};
    plan_compose_tail(by, n, c, tail_high);
    /* a count overflow (FLOPs, or live bytes): not a candidate */
    *usable = c->flops < INT64_MAX && c->step_ns < INT64_MAX && c->peak_bytes < INT64_MAX;
    return LR_OK;
}

/* What every stage measurement subtracts: P, column, and for each i the last one-partition
 * stage (cut[i], cut[i+1]] and the non-last one (0, cut[i]]. */
static lr_status measure_pieces(search *s);

lr_status auto_measure_base(search *s)
{
    plan_spec sp;
    memset(&sp, 0, sizeof sp);
    plan_cost c;
    LR_TRY(evaluate_base(s, &sp, &c));
    s->col_peak = c.peak_bytes;
    s->col_work = auto_work(s, &c);
    s->col_flops = c.flops;
    s->col_ns = c.step_ns;
    s->persistent = c.static_bytes + c.input_bytes + c.workspace_bytes;
    if (s->cfg.offload & OFFLOAD_INPUT) /* every plan with a stage keeps the input in host memory */
        s->persistent -= cost_node_bytes(s->net, 0, s->cfg.batch, cost_dtype_bytes(s->cfg.dtype));
    for (int i = 0; i < s->m; i++) {
        int n = 0;
        if (i > 0)
            sp.cut[n] = s->cut[i], sp.parts[n++] = 1;
        sp.cut[n] = s->cut[i + 1], sp.parts[n++] = 1;
        sp.n_stages = n;
        LR_TRY(evaluate_base(s, &sp, &c));
        s->lp1[i] = c.stage_peak[n - 1] - s->persistent - s->out_bytes[i];
        s->fck[i] = auto_work(s, &c) - s->col_work; /* a last one-partition stage recomputes nothing */
    }
    return measure_pieces(s);
}

lr_status auto_subnet(const net_t *net, int from, net_t **out)
{
    *out = NULL;
    net_t *sub = malloc(sizeof *sub);
    if (!sub)
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    *sub = *net;
    sub->n_nodes = net->n_nodes - from;
    sub->nodes = malloc(sizeof(net_node) * (size_t)sub->n_nodes);
    sub->cons_off = sub->cons_node = sub->cons_slot = NULL;
    if (!sub->nodes) {
        free(sub);
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    }
    memcpy(sub->nodes, net->nodes + from, sizeof(net_node) * (size_t)sub->n_nodes);
    net_node *in = &sub->nodes[0];
    *in = net->nodes[0];
    in->c = net->nodes[from].c, in->h = net->nodes[from].h, in->w = net->nodes[from].w;
    for (int l = 1; l < sub->n_nodes; l++)
        for (int k = 0; k < sub->nodes[l].n_inputs; k++) {
            sub->nodes[l].inputs[k] -= from;
            LR_ASSERT(sub->nodes[l].inputs[k] >= 0); /* `from` is a cut */
        }
    sub->graph_id = from == 0 ? net->graph_id : 0; /* (past `from`: a graph of its own) */
    lr_status st = net_infer(sub);
    if (st != LR_OK) {
        net_free(sub);
        return st;
    }
    *out = sub;
    return LR_OK;
}

/* The column tail's peak above P + carried-in, for a last stage: known when it set the probe's
 * peak; below the stage's own when the stage did (no constraint of its own). When the stage
 * before the probed one did, the highest point of the probe's tail phases (tail_high) gives it:
 * the stage before, (0, a]:1, carries only its output into the tail, which base counts. A tail
 * below the stage's own peak is reported as `local`: every user of the edge takes the larger of
 * the two (the stage's moments include the input gradient, which a net cut at the stage's input,
 * measured here before, has not, so it reported lower tails there; the larger is the same). */
static int64_t tail_above(const plan_cost *c, int me, int64_t base, int64_t local,
                          int64_t tail_high)
{
    if (c->peak_stage < 0)
        return c->peak_bytes - base;
    if (c->peak_stage == me || tail_high == INT64_MIN || tail_high - base < local)
        return local;
    return tail_high - base;
}

/* Stage (a, b] with N partitions, between a one-partition stage (0, a] and, unless it is the
 * last (the region ends at b), a one-partition stage (b, b+1]; *usable as for auto_evaluate(). */
static lr_status probe(search *s, const space *sp_of, probe_job *j, int a, int b, int parts,
                       bool last, bool recompute, stage_edge *e, bool *usable)
{
    int me = a > 0; /* the probed stage's index in the probe plan */
    plan_cost c;
    int64_t tail_high;
    LR_TRY(probe_cost(s, sp_of, j, a, b, parts, last, recompute, &c, &tail_high, usable));
    if (!*usable)
        return LR_OK;
    int64_t base = s->persistent + s->out_bytes[a];
    memset(e, 0, sizeof *e);
    e->a = a, e->b = b, e->parts = parts, e->last = last, e->recompute = recompute;
    e->local = c.stage_peak[me] - base;
    e->extra = auto_work(s, &c) - s->col_work - (a > 0 ? s->fck[a] : 0);
    if (last) {
        e->tail = tail_above(&c, me, base, e->local, tail_high);
        return LR_OK;
    }
    e->carried = c.stage_peak[me + 1] - base - s->lp1[b];
    return LR_OK;
}

static int rows_to_split(const search *s, const space *sp, int a, int b)
{
    return s->net->nodes[sp->kind == PART_TILE_IN ? s->cut[a] : s->cut[b]].h;
}

static bool choose_boundaries(const search *s, const space *sp, int a, int b)
{
    return s->cfg.boundaries_auto && sp->kind != PART_OVERLAP &&
           !(sp->bn == BN_STRIPE && stage_has_bn(s, a, b));
}

/* Measures the stage for every N worth trying, unless its compute cannot be within
 * extra_limit (then it stays to be done, should a later round allow more compute). */
static void run_job(search *s, probe_job *j, int64_t extra_limit)
{
    const space *sp = j->sp;
    int rows = rows_to_split(s, sp, j->a, j->b);
    bool whole = j->a == 0 && j->last; /* a single-stage plan: every N, as its strategy's */
    bool special = whole || s->special[j->a * (s->m + 1) + j->b];
    if (j->same) {
        j->done = true;
        return;
    }
    /* a single-stage plan ending where the kept single-stage search found the floor past its
     * lowest peak's near-tie: it cannot be chosen (strategy_stage_memo_beyond) */
    if (whole && strategy_stage_memo_beyond(s->kept, sp->kind, sp->bn, s->cut[j->b])) {
        j->done = true;
        return;
    }
    if (sp->bn == BN_EXACT && stage_has_bn(s, j->a, j->b) &&
        auto_bn_extra_bound(s, j->a, j->b) > extra_limit)
        return;
    j->done = true;
    int64_t best = INT64_MAX;
    int worse = 0;
    /* the near-tie objective (a hybrid's search, from its seed's peak): no plan holding a stage
     * whose floor is past the near-tie of the lowest peak so far can be chosen. A special stage,
     * which tries every N, skips such an N; another, which stops after PARTS_PATIENCE N that do
     * not lower its own peak (an N left out would change where), is skipped only whole: when
     * the floor of the most partitions it tries, its lowest, is past it */
    int64_t saved = -1, persistent = s->ends_at[j->b].ph[0].exit - s->ends_at[j->b].ph[0].entry;
    if (s->lowest < INT64_MAX && !s->every_n)
        saved = strategy_saved_bytes(s->net, &s->cfg, s->cut[j->a], s->cut[j->b]);
    int most = stage_parts[N_STAGE_PARTS - 1] < rows ? stage_parts[N_STAGE_PARTS - 1] : rows;
    if (saved >= 0 && !special &&
        !strategy_near_tie(strategy_stage_floor(s->net, &s->cfg, s->cut[j->a], s->cut[j->b], most,
                                                saved, persistent),
                           s->lowest))
        return;
    int count = whole ? WHOLE_MAX_N - 1 : N_STAGE_PARTS;
    /* --boundaries auto: each N also recomputing its boundaries (a tiled stage whose
     * BatchNorm is not per stripe: plan_stage.bwd) */
    int ways = choose_boundaries(s, sp, j->a, j->b) ? 2 : 1;
    for (int k = 0, last = 1; k < count && last < rows && j->status == LR_OK; k++) {
        /* plan_build clamps N to the rows there are: past them, N = rows is the one plan left */
        int parts = whole ? k + 2 : stage_parts[k];
        last = parts = parts < rows ? parts : rows;
        /* a single-stage plan the kept search left out by its floor: it cannot be chosen */
        if (whole && !s->every_n &&
            strategy_stage_memo_pruned(s->kept, sp->kind, sp->bn, s->cut[j->b], parts))
            continue;
        if (saved >= 0 && special &&
            !strategy_near_tie(strategy_stage_floor(s->net, &s->cfg, s->cut[j->a], s->cut[j->b],
                                                    parts, saved, persistent),
                               s->lowest))
            continue;
        bool lower = false;
        for (int w = 0; w < ways && j->status == LR_OK; w++) {
            stage_edge *e = &j->out[j->n];
            bool usable;
            j->status = probe(s, sp, j, j->a, j->b, parts, j->last, w == 1, e, &usable);
            j->n += j->status == LR_OK && usable;
            if (j->status == LR_OK && usable && e->local < best)
                best = e->local, lower = true;
        }
        worse = lower ? 0 : worse + 1;
        if (!special && worse >= PARTS_PATIENCE)
            break;
    }
    plan_scripts_free(j->own);
    j->scripts = NULL, j->own = NULL;
}

/* ------------------------------------------------------------------ jobs */

/* Stages spanning more than SPAN_MAX cuts are measured only when special, or when they are the
 * whole region up to where it may end (`last`). */
static bool probed(const search *s, int a, int b, bool last)
{
    return b - a <= SPAN_MAX || s->special[a * (s->m + 1) + b] || (last && a == 0);
}

/* The kinds of stage (a, b] to measure: as a middle stage (b < m) and as the last (b = m, or a
 * region end before it); returns how many, `last` for each. */
static int variants(const search *s, int a, int b, bool last[2])
{
    int n = 0;
    if (b < s->m && probed(s, a, b, false))
        last[n++] = false;
    if (s->ends[b] && probed(s, a, b, true))
        last[n++] = true;
    return n;
}

/* Jobs for the stages worth measuring: per stage (a, b] and variant one for the shared
 * one-partition edges (sp == NULL) and one per space for N > 1. */
probe_job *auto_make_jobs(search *s, space *spaces, int n_spaces, int *n_jobs)
{
    int pairs = 0;
    bool last[2];
    for (int a = 0; a < s->m; a++)
        for (int b = a + 1; b <= s->m; b++)
            pairs += variants(s, a, b, last);
    probe_job *jobs = calloc((size_t)pairs * (n_spaces + 1), sizeof *jobs);
    int per_job = (s->cfg.boundaries_auto ? 2 : 1) * WHOLE_MAX_N; /* N, each both ways */
    stage_edge *edges = calloc((size_t)pairs * (1 + n_spaces * per_job), sizeof *edges);
    LR_ASSERT(jobs != NULL && edges != NULL);
    /* per (twin stage, last, space): the first job made of it, which its twins read */
    int w = s->m + 1;
    int *lead = malloc(sizeof(int) * (size_t)w * w * 2 * (n_spaces + 1));
    LR_ASSERT(lead != NULL);
    for (int k = 0; k < w * w * 2 * (n_spaces + 1); k++)
        lead[k] = -1;
    int n = 0;
    for (int a = 0; a < s->m; a++)
        for (int b = a + 1; b <= s->m; b++)
            for (int v = 0, nv = variants(s, a, b, last); v < nv; v++) {
                probe_job *first = &jobs[n];
                for (int k = -1; k < n_spaces; k++) {
                    probe_job *j = &jobs[n++];
                    j->sp = k < 0 ? NULL : &spaces[k];
                    j->a = a, j->b = b, j->last = last[v];
                    j->out = edges;
                    edges += k < 0 ? 1 : per_job;
                    if (k >= 0) {
                        int *at = &lead[(s->twin[a * w + b] * 2 + last[v]) * (n_spaces + 1) + k + 1];
                        if (*at < 0)
                            *at = n - 1;
                        else
                            j->twin = &jobs[*at], j->shift = s->cut[a] - s->cut[jobs[*at].a];
                    }
                    if (k < 0 || spaces[k].bn != BN_STRIPE || stage_has_bn(s, a, b))
                        continue;
                    for (probe_job *q = first; q < j && !j->same; q++)
                        if (q->sp && q->sp->kind == j->sp->kind && q->sp->bn == BN_EXACT)
                            j->same = q;
                }
            }
    for (int k = 0; k < n; k++) /* a job some twin reads keeps its measurements */
        if (jobs[k].twin && !jobs[k].twin->memo) {
            probe_job *owner = &jobs[jobs[k].twin - jobs];
            owner->memo = calloc(2 * WHOLE_MAX_N, sizeof(stage_memo));
            LR_ASSERT(owner->memo != NULL);
        }
    free(lead);
    *n_jobs = n;
    return jobs;
}

void auto_free_jobs(probe_job *jobs, int n_jobs)
{
    if (!jobs)
        return;
    for (int k = 0; k < n_jobs; k++)
        free(jobs[k].memo);
    free(jobs[0].out); /* every job's edges are in one block */
    free(jobs);
}

static void run_one_part(search *s, probe_job *j)
{
    space plain = {.kind = PART_TILE_OUT, .bn = s->base_bn};
    j->done = true;
    bool usable;
    j->status = probe(s, &plain, NULL, j->a, j->b, 1, j->last, false, &j->out[0], &usable);
    j->n = j->status == LR_OK && usable;
}

typedef struct {
    search *s;
    probe_job *jobs;
    int64_t extra_limit;
    /* the failed job of the lowest index and its message, kept on the thread that ran it
     * (messages are per thread) */
    int failed;
    lr_outcome failure;
} job_batch;

static void job_item(void *ctx, int k)
{
    job_batch *b = ctx;
    probe_job *j = &b->jobs[k];
    if (j->done)
        return;
    if (j->sp)
        run_job(b->s, j, b->extra_limit);
    else
        run_one_part(b->s, j);
    if (j->status != LR_OK) {
#pragma omp critical(auto_job_failure)
        if (k < b->failed) {
            b->failed = k;
            lr_outcome_set(&b->failure, j->status);
        }
    }
}

lr_status auto_run_jobs(search *s, probe_job *jobs, int n_jobs, int64_t extra_limit)
{
    job_batch b = {s, jobs, extra_limit, n_jobs, {LR_OK, ""}};
    par_for(n_jobs, job_item, &b);
    if (b.failed == n_jobs)
        return LR_OK;
    lr_outcome_report(&b.failure);
    return lr_fail(b.failure.status, "auto: %s", lr_last_error());
}

/* A space's edges: the shared one-partition stages and its own, grouped by first cut. */
void auto_collect_edges(const search *s, space *sp, const probe_job *jobs, int n_jobs)
{
    int total = 0;
    for (int k = 0; k < n_jobs; k++)
        if (!jobs[k].sp || jobs[k].sp == sp)
            total += jobs[k].same ? jobs[k].same->n : jobs[k].n;
    free(sp->edges.v), free(sp->from);
    sp->edges.v = malloc(sizeof(stage_edge) * (size_t)(total ? total : 1));
    sp->from = calloc((size_t)s->m + 2, sizeof(int));
    LR_ASSERT(sp->edges.v && sp->from);
    sp->edges.n = 0;
    for (int a = 0; a <= s->m; a++) { /* jobs are in order of a */
        sp->from[a] = sp->edges.n;
        for (int k = 0; k < n_jobs; k++)
            if (jobs[k].a == a && (!jobs[k].sp || jobs[k].sp == sp)) {
                const probe_job *j = jobs[k].same ? jobs[k].same : &jobs[k];
                for (int q = 0; q < j->n; q++)
                    sp->edges.v[sp->edges.n++] = j->out[q];
            }
    }
    sp->from[s->m + 1] = sp->edges.n;
}

