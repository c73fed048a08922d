/* exec.c - the schedule interpreter shared by all backends (see exec.h): the arena (its offsets
 * are sim_arena_plan's), counting, the events of two streams, parameter initialisation, running
 * steps, evaluation.
 * Deliberately not here: any kernel; the meaning of a RUN step is the backend's (exec.h).
 */
#include "exec.h"

#include <math.h>
#include <string.h>

#include "checked.h"
#include "clock.h"
#include "strategy.h"

struct exec {
    const net_t *net;
    const plan_t *plan;
    const sched_t *s;
    const exec_backend *be;
    void *bctx;
    exec_hparams hp;
    void *arena;
    void *host_arena; /* TIER_HOST tensors (backend->host_alloc), or NULL */
    int64_t *offset;
    void **ptr;        /* live tensor addresses */
    int *param_t, *grad_t, *running_t; /* persistent tensor ids by node, -1 none */
    int input_t, labels_t;
    int train_step;
    exec_memory mem;
    /* two streams (backend->lanes): per step, the event it waits for before it runs and the one
     * it records after, -1 none; NULL when the backend has no lanes or nothing to copy */
    int32_t *wait_event, *record_event;
    exec_profile *profile; /* NULL: not timed */
};

void exec_hparams_default(exec_hparams *hp)
{
    hp->lr = 0.05f;
    hp->momentum = 0.9f;
    hp->weight_decay = 0.0f;
    hp->beta1 = 0.9f;
    hp->beta2 = 0.999f;
    hp->eps = 1e-8f;
    hp->seed = 1;
}

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

uint64_t exec_dropout_seed(uint64_t base, int step, int node)
{
    return mix64(base ^ ((uint64_t)step << 32) ^ (uint64_t)node);
}

/* ------------------------------------------------------------------ arena planning */

int64_t exec_plan_arena(const sched_t *s, int64_t align, int64_t *offsets)
{
    return sim_arena_plan(s, TIER_DEVICE, align, offsets);
}

int64_t exec_plan_arena_tier(const sched_t *s, sched_tier tier, int64_t align, int64_t *offsets)
{
    return sim_arena_plan(s, tier, align, offsets);
}

/* ------------------------------------------------------------------ creation */

static lr_status find_persistent(exec_t *e)
{
    const sched_t *s = e->s;
    int n = e->net->n_nodes;
    e->param_t = malloc(sizeof(int) * (size_t)n);
    e->grad_t = malloc(sizeof(int) * (size_t)n);
    e->running_t = malloc(sizeof(int) * (size_t)n);
    if (!e->param_t || !e->grad_t || !e->running_t)
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++)
        e->param_t[i] = e->grad_t[i] = e->running_t[i] = -1;
    e->input_t = e->labels_t = -1;
    for (int i = 0; i < s->step_begin; i++) {
        int t = s->steps[i].t;
        const sched_tensor *x = &s->tensors[t];
        if (x->kind == TK_PARAM)
            e->param_t[x->node] = t;
        else if (x->kind == TK_PARAM_GRAD)
            e->grad_t[x->node] = t;
        else if (x->kind == TK_RUNNING)
            e->running_t[x->node] = t;
        else if (x->kind == TK_VALUE && x->node == 0)
            e->input_t = t;
        else if (x->kind == TK_LABELS)
            e->labels_t = t;
    }
    if (e->input_t < 0 || e->labels_t < 0)
        return lr_fail(LR_ERR_RUNTIME, "schedule has no input or labels tensor");
    return LR_OK;
}

static lr_status do_alloc(exec_t *e, int i, int t)
{
    const sched_tensor *x = &e->s->tensors[t];
    LR_ASSERT(e->ptr[t] == NULL);
    if (x->tier == TIER_HOST) { /* counted apart: not device memory */
        e->ptr[t] = (char *)e->host_arena + e->offset[t];
        e->mem.host_counted_live_bytes += x->bytes;
        if (e->mem.host_counted_live_bytes > e->mem.host_counted_peak_bytes)
            e->mem.host_counted_peak_bytes = e->mem.host_counted_live_bytes;
        return LR_OK;
    }
    e->ptr[t] = (char *)e->arena + e->offset[t];
    e->mem.counted_live_bytes += x->bytes;
    if (e->mem.counted_live_bytes > e->mem.counted_peak_bytes) {
        e->mem.counted_peak_bytes = e->mem.counted_live_bytes;
        e->mem.peak_step = i;
    }
    if (sched_zeroed_on_alloc(x) && x->bytes > 0)
        return e->be->zero(e->bctx, e->ptr[t], x->bytes);
    return LR_OK;
}

static void do_free(exec_t *e, int t)
{
    LR_ASSERT(e->ptr[t] != NULL);
    e->ptr[t] = NULL;
    if (e->s->tensors[t].tier == TIER_HOST)
        e->mem.host_counted_live_bytes -= e->s->tensors[t].bytes;
    else
        e->mem.counted_live_bytes -= e->s->tensors[t].bytes;
}

lr_status exec_plan_workspace(const net_t *net, const plan_config *cfg, const plan_spec *spec,
                              const exec_backend *backend, void *backend_ctx, plan_t **plan,
                              sched_t *s, plan_cost *cost)
{
    if (!backend->workspace_bytes || cfg->workspace_bytes != 0)
        return LR_OK;
    plan_config with = *cfg;
    LR_TRY(backend->workspace_bytes(backend_ctx, net, s, cfg->batch, &with.workspace_bytes));
    if (with.workspace_bytes <= 0)
        return LR_OK;
    plan_free(*plan);
    *plan = NULL;
    LR_TRY(strategy_evaluate(net, &with, spec, cost));
    LR_TRY(plan_build(net, &with, spec, plan));
    plan_emit(*plan, s);
    return LR_OK;
}

static lr_status run_steps(exec_t *e, int from, int to, float *loss, bool skip_update);
static lr_status exec_init_params(exec_t *e);

/* The host tier's tensors get offsets in an arena of their own, allocated by the backend's
 * host_alloc (into e->offset, whose device entries are planned already). */
static lr_status host_arena(exec_t *e)
{
    const sched_t *s = e->s;
    bool any = false;
    for (int t = 0; t < s->n_tensors && !any; t++)
        any = s->tensors[t].tier == TIER_HOST;
    if (!any)
        return LR_OK;
    if (!e->be->host_alloc)
        return lr_fail(LR_ERR_USAGE, "the %s backend does not run plans that keep tensors in host "
                       "memory (--offload): use --backend cpu", e->be->name);
    int64_t *off = malloc(sizeof(int64_t) * (size_t)(s->n_tensors + 1));
    if (!off)
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    e->mem.host_arena_bytes = exec_plan_arena_tier(s, TIER_HOST, SIM_ARENA_ALIGN, off);
    for (int t = 0; t < s->n_tensors; t++)
        if (s->tensors[t].tier == TIER_HOST)
            e->offset[t] = off[t];
    free(off);
    return e->be->host_alloc(e->bctx, e->mem.host_arena_bytes, &e->host_arena);
}

/* Each step's cross-lane wait (the step, of the other lane, it depends on last), walked over
 * the persistent prologue, the training step and the epilogue apart: the lanes join between them
 * (every training step ends with sync()). */
static lr_status lane_waits(exec_t *e, int32_t *waited, bool *any_copy)
{
    const sched_t *s = e->s;
    sim_lanes *k;
    LR_TRY(sim_lanes_new(s, e->offset, &k));
    *any_copy = false;
    for (int i = 0; i < s->n_steps; i++) {
        const sched_step *p = &s->steps[i];
        if (i == s->step_begin || i == s->step_end)
            sim_lanes_clear(k);
        waited[i] = (int32_t)(sim_lanes_wait(k, s, p) - 1);
        sim_lanes_done(k, s, p, i + 1);
        *any_copy = *any_copy || sim_step_lane(s, p) == SIM_LANE_COPY;
    }
    sim_lanes_free(k);
    return LR_OK;
}

/* Events from a pool: a step waited on records one, freed once its last waiter has been issued
 * (a wait captures the event's state when issued, so it may be recorded again after). */
static int assign_events(exec_t *e, const int32_t *waited, int32_t *last, int32_t *pool)
{
    const sched_t *s = e->s;
    int n_free = 0, n_events = 0;
    for (int i = 0; i < s->n_steps; i++)
        last[i] = -1;
    for (int i = 0; i < s->n_steps; i++)
        if (waited[i] >= 0)
            last[waited[i]] = i;
    for (int i = 0; i < s->n_steps; i++) {
        int w = waited[i];
        e->wait_event[i] = w >= 0 ? e->record_event[w] : -1;
        if (w >= 0 && last[w] == i)
            pool[n_free++] = e->record_event[w];
        e->record_event[i] = last[i] < 0 ? -1 : n_free > 0 ? pool[--n_free] : n_events++;
    }
    return n_events;
}

static lr_status plan_lanes(exec_t *e)
{
    const sched_t *s = e->s;
    if (!e->be->lanes)
        return LR_OK;
    size_t n = (size_t)s->n_steps + 1;
    int32_t *waited = malloc(n * sizeof(int32_t)), *last = malloc(n * sizeof(int32_t));
    int32_t *pool = malloc(n * sizeof(int32_t));
    e->wait_event = malloc(n * sizeof(int32_t));
    e->record_event = malloc(n * sizeof(int32_t));
    bool any_copy = false;
    lr_status st = waited && last && pool && e->wait_event && e->record_event
                       ? lane_waits(e, waited, &any_copy)
                       : lr_fail(LR_ERR_NOMEM, "out of memory");
    if (st == LR_OK && any_copy)
        st = e->be->lanes(e->bctx, assign_events(e, waited, last, pool));
    if (st != LR_OK || !any_copy) {
        free(e->wait_event);
        free(e->record_event);
        e->wait_event = e->record_event = NULL;
    }
    free(waited);
    free(last);
    free(pool);
    return st;
}

/* Training BatchNorm needs two values or more per channel for its (unbiased running) variance,
 * as in PyTorch, which refuses fewer: a batch of 1 at a 1x1 map (resnet18 at 32x32), or one
 * feature per channel after a flatten. Checked before anything runs, for every step that updates
 * the running statistics: a whole map's (FINALIZE, or column) or a stripe's (--bn stripe). */
static lr_status check_bn_counts(const net_t *net, const sched_t *s, int batch)
{
    for (int i = 0; i < s->n_steps; i++) {
        const sched_step *st = &s->steps[i];
        if (st->op != STEP_RUN || st->node < 0 || net->nodes[st->node].op != OP_BATCHNORM ||
            (st->flags & (RUN_BN_FROZEN | RUN_STATS_ACC)))
            continue;
        bool finalize = st->flags & RUN_FINALIZE;
        if (!finalize && ((st->flags & RUN_BN_GLOBAL) || st->pass != PASS_FWD))
            continue;
        const net_node *n = &net->nodes[st->node];
        int rows = finalize ? n->h : st->row_hi - st->row_lo + 1;
        int64_t count = (int64_t)batch * rows * n->w;
        if (count < 2)
            return lr_fail(LR_ERR_INPUT,
                           "BatchNorm %s: 1 value per channel to train on (batch %d, %s%dx%d): "
                           "its variance needs 2 or more, as in PyTorch; use a larger batch or "
                           "input, or --bn frozen",
                           n->name, batch, rows < n->h ? "a stripe of " : "", rows, n->w);
    }
    return LR_OK;
}

lr_status exec_create(const net_t *net, const plan_t *plan, const sched_t *s,
                      const exec_backend *backend, void *backend_ctx, const exec_hparams *hp,
                      exec_t **out)
{
    *out = NULL;
    LR_TRY(check_bn_counts(net, s, plan->cfg.batch));
    exec_t *e = calloc(1, sizeof *e);
    if (!e)
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    e->net = net, e->plan = plan, e->s = s, e->be = backend, e->bctx = backend_ctx, e->hp = *hp;
    e->offset = malloc(sizeof(int64_t) * (size_t)(s->n_tensors + 1));
    e->ptr = calloc((size_t)s->n_tensors + 1, sizeof(void *));
    lr_status st = e->offset && e->ptr ? find_persistent(e) : lr_fail(LR_ERR_NOMEM, "out of memory");
    if (st == LR_OK) {
        e->mem.arena_bytes = exec_plan_arena(s, SIM_ARENA_ALIGN, e->offset);
        st = backend->arena_alloc(backend_ctx, e->mem.arena_bytes, &e->arena);
    }
    if (st == LR_OK)
        st = host_arena(e);
    if (st == LR_OK)
        st = plan_lanes(e);
    if (st == LR_OK)
        st = run_steps(e, 0, s->step_begin, NULL, false);
    if (st == LR_OK)
        st = exec_init_params(e);
    if (st != LR_OK) {
        exec_free(e);
        return st;
    }
    *out = e;
    return LR_OK;
}

void exec_free(exec_t *e)
{
    if (!e)
        return;
    if (e->arena)
        e->be->arena_release(e->bctx, e->arena);
    if (e->host_arena)
        e->be->host_release(e->bctx, e->host_arena);
    free(e->offset);
    free(e->ptr);
    free(e->wait_event);
    free(e->record_event);
    free(e->param_t);
    free(e->grad_t);
    free(e->running_t);
    free(e);
}

const exec_memory *exec_memory_stats(const exec_t *e)
{
    return &e->mem;
}

/* ------------------------------------------------------------------ parameters */

/* A small seeded generator for weight init (splitmix64 -> uniform in [-1, 1)). */
static float uniform(uint64_t *state)
{
    *state += 0x9E3779B97F4A7C15ULL;
    return (float)((double)(mix64(*state) >> 11) * 0x1.0p-52 - 1.0);
}

/* fan-in of the node's weight, as torch.nn.init computes it */
static int64_t fan_in(const net_t *net, int node)
{
    const net_node *n = &net->nodes[node];
    const net_node *x = &net->nodes[n->inputs[0]];
    if (n->op == OP_CONV)
        return (int64_t)(x->c / n->prm.groups) * n->prm.kh * n->prm.kw;
    return (int64_t)x->c * x->h * x->w;
}

static lr_status init_node(exec_t *e, int node, uint64_t *rng)
{
    const net_node *n = &e->net->nodes[node];
    float *host = malloc(sizeof(float) * (size_t)n->params);
    if (!host)
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    if (n->op == OP_BATCHNORM) {
        for (int c = 0; c < n->c; c++)
            host[c] = 1.0f, host[n->c + c] = 0.0f;
    } else {
        /* PyTorch: kaiming_uniform(a=sqrt(5)) -> bound 1/sqrt(fan_in) for weight and bias */
        double bound = 1.0 / sqrt((double)fan_in(e->net, node));
        for (int64_t i = 0; i < n->params; i++)
            host[i] = (float)(bound * uniform(rng));
    }
    lr_status s = exec_set_param(e, node, host, n->params);
    free(host);
    if (s == LR_OK && e->running_t[node] >= 0) {
        float *r = calloc(2 * (size_t)n->c, sizeof(float));
        if (!r)
            return lr_fail(LR_ERR_NOMEM, "out of memory");
        for (int c = 0; c < n->c; c++)
            r[n->c + c] = 1.0f;
        s = e->be->upload(e->bctx, e->ptr[e->running_t[node]], r, 8 * (int64_t)n->c);
        free(r);
    }
    return s;
}

static lr_status exec_init_params(exec_t *e)
{
    uint64_t rng = e->hp.seed;
    for (int l = 1; l < e->net->n_nodes; l++)
        if (e->param_t[l] >= 0)
            LR_TRY(init_node(e, l, &rng));
    return LR_OK;
}

static lr_status check_param(exec_t *e, int node, int64_t n, const int *table)
{
    if (node <= 0 || node >= e->net->n_nodes || table[node] < 0)
        return lr_fail(LR_ERR_RUNTIME, "node %d has no parameters", node);
    int64_t want = table == e->running_t ? 2 * (int64_t)e->net->nodes[node].c
                                         : e->net->nodes[node].params;
    if (n != want)
        return lr_fail(LR_ERR_RUNTIME, "node %s: %lld values given, %lld expected",
                       e->net->nodes[node].name, (long long)n, (long long)want);
    return LR_OK;
}

/* Parameters are stored in the schedule's dtype; the executors support fp32 only. */
lr_status exec_get_param(exec_t *e, int node, float *dst, int64_t n)
{
    LR_TRY(check_param(e, node, n, e->param_t));
    return e->be->download(e->bctx, dst, e->ptr[e->param_t[node]], n * 4);
}

lr_status exec_set_param(exec_t *e, int node, const float *src, int64_t n)
{
    LR_TRY(check_param(e, node, n, e->param_t));
    return e->be->upload(e->bctx, e->ptr[e->param_t[node]], src, n * 4);
}

lr_status exec_get_param_grad(exec_t *e, int node, float *dst, int64_t n)
{
    LR_TRY(check_param(e, node, n, e->grad_t));
    return e->be->download(e->bctx, dst, e->ptr[e->grad_t[node]], n * 4);
}

lr_status exec_get_running(exec_t *e, int node, float *dst, int64_t n)
{
    LR_TRY(check_param(e, node, n, e->running_t));
    return e->be->download(e->bctx, dst, e->ptr[e->running_t[node]], n * 4);
}

lr_status exec_set_running(exec_t *e, int node, const float *src, int64_t n)
{
    LR_TRY(check_param(e, node, n, e->running_t));
    return e->be->upload(e->bctx, e->ptr[e->running_t[node]], src, n * 4);
}

static lr_status copy_tensor(exec_t *dst, exec_t *src, int td, int ts, int64_t bytes)
{
    float *tmp = malloc((size_t)bytes);
    if (!tmp)
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    lr_status s = src->be->download(src->bctx, tmp, src->ptr[ts], bytes);
    if (s == LR_OK)
        s = dst->be->upload(dst->bctx, dst->ptr[td], tmp, bytes);
    free(tmp);
    return s;
}

lr_status exec_copy_params(exec_t *dst, exec_t *src)
{
    for (int l = 1; l < dst->net->n_nodes; l++) {
        if (dst->param_t[l] >= 0)
            LR_TRY(copy_tensor(dst, src, dst->param_t[l], src->param_t[l], dst->net->nodes[l].params * 4));
        if (dst->running_t[l] >= 0)
            LR_TRY(copy_tensor(dst, src, dst->running_t[l], src->running_t[l], 8 * (int64_t)dst->net->nodes[l].c));
    }
    return LR_OK;
}

lr_status exec_zero_grads(exec_t *e)
{
    for (int l = 1; l < e->net->n_nodes; l++)
        if (e->grad_t[l] >= 0)
            LR_TRY(e->be->zero(e->bctx, e->ptr[e->grad_t[l]], e->s->tensors[e->grad_t[l]].bytes));
    return LR_OK;
}

/* ------------------------------------------------------------------ running */

static void fill_op(exec_t *e, exec_op *op, int i, float *loss)
{
    memset(op, 0, sizeof *op);
    op->net = e->net;
    op->s = e->s;
    op->step = &e->s->steps[i];
    op->run = op->step->op == STEP_RUN ? &e->s->runs[op->step->run] : NULL;
    op->ptr = e->ptr;
    op->batch = e->plan->cfg.batch;
    op->optim = e->plan->cfg.optim;
    op->hp = &e->hp;
    op->train_step = e->train_step;
    op->loss_out = loss;
    op->lane = (int)sim_step_lane(e->s, op->step);
}

/* ------------------------------------------------------------------ profile */

void exec_set_profile(exec_t *e, exec_profile *p)
{
    e->profile = p;
}

exec_profile *exec_profile_new(const net_t *net)
{
    exec_profile *p = calloc(1, sizeof *p + sizeof p->layer[0] * (size_t)net->n_nodes);
    if (!p)
        return NULL;
    p->n_layers = net->n_nodes;
    for (int l = 0; l < net->n_nodes; l++) {
        memcpy(p->layer[l].name, net->nodes[l].name, sizeof p->layer[l].name);
        p->layer[l].op = net->nodes[l].op;
    }
    return p;
}

double exec_profile_bucket_us(int b)
{
    LR_ASSERT(b >= 0 && b < EXEC_PROFILE_BUCKETS);
    return b == EXEC_PROFILE_BUCKETS - 1 ? 0 : 10.0 * (double)(1 << b);
}

static void profile_run(exec_profile *p, const net_t *net, const sched_step *step, double ms)
{
    net_op op = net->nodes[step->node].op;
    p->calls[op][step->pass]++;
    p->ms[op][step->pass] += ms;
    LR_ASSERT(step->node < p->n_layers); /* (a profile of this net: exec_profile_new) */
    exec_profile_layer *l = &p->layer[step->node];
    l->calls++, l->ms += ms;
    l->flops = lr_sat_add(l->flops, step->flops);
    int b = 0;
    while (b < EXEC_PROFILE_BUCKETS - 1 && ms * 1e3 > exec_profile_bucket_us(b))
        b++;
    p->bucket_calls[b]++;
    p->bucket_ms[b] += ms;
}

/* The backend's run (or copy) of op's step, timed into e->profile when there is one. */
static lr_status timed(exec_t *e, const exec_op *op, bool copy)
{
    if (!e->profile)
        return copy ? e->be->copy(e->bctx, op) : e->be->run(e->bctx, op);
    double t0 = lr_now_ms();
    lr_status st = copy ? e->be->copy(e->bctx, op) : e->be->run(e->bctx, op);
    double ms = lr_now_ms() - t0;
    if (copy)
        e->profile->copy_calls++, e->profile->copy_ms += ms;
    else
        profile_run(e->profile, e->net, op->step, ms);
    return st;
}

static lr_status run_step(exec_t *e, int i, float *loss, bool skip_update)
{
    const sched_step *p = &e->s->steps[i];
    exec_op op;
    switch (p->op) {
    case STEP_ALLOC:
        return do_alloc(e, i, p->t);
    case STEP_FREE:
        do_free(e, p->t);
        return LR_OK;
    case STEP_COPY:
        fill_op(e, &op, i, loss);
        return timed(e, &op, true);
    case STEP_RUN:
        if (skip_update && p->pass == PASS_UPDATE)
            return LR_OK;
        fill_op(e, &op, i, loss);
        return timed(e, &op, false);
    }
    return LR_OK;
}

/* Steps from..to-1, each after the event it waits for (two streams), recording its own after
 * (also when skipped: the event then marks the lane's position). */
static lr_status run_steps(exec_t *e, int from, int to, float *loss, bool skip_update)
{
    for (int i = from; i < to; i++) {
        int lane = e->wait_event ? (int)sim_step_lane(e->s, &e->s->steps[i]) : SIM_LANE_NONE;
        if (e->wait_event && e->wait_event[i] >= 0)
            LR_TRY(e->be->lane_wait(e->bctx, lane, e->wait_event[i]));
        LR_TRY(run_step(e, i, loss, skip_update));
        if (e->wait_event && e->record_event[i] >= 0)
            LR_TRY(e->be->lane_record(e->bctx, lane, e->record_event[i]));
    }
    return LR_OK;
}

lr_status exec_step(exec_t *e, const float *images, const int32_t *labels, bool update,
                    float *loss)
{
    const sched_t *s = e->s;
    e->train_step++;
    if (s->tensors[e->input_t].tier == TIER_HOST)
        memcpy(e->ptr[e->input_t], images, (size_t)s->tensors[e->input_t].bytes);
    else
        LR_TRY(e->be->upload(e->bctx, e->ptr[e->input_t], images, s->tensors[e->input_t].bytes));
    LR_TRY(e->be->upload(e->bctx, e->ptr[e->labels_t], labels, s->tensors[e->labels_t].bytes));
    float l = NAN;
    LR_TRY(run_steps(e, s->step_begin, s->step_end, &l, !update));
    LR_TRY(e->be->sync(e->bctx));
    if (loss)
        *loss = l;
    return LR_OK;
}

lr_status exec_update(exec_t *e)
{
    for (int i = e->s->step_begin; i < e->s->step_end; i++) {
        const sched_step *p = &e->s->steps[i];
        if (p->op != STEP_RUN || p->pass != PASS_UPDATE)
            continue;
        exec_op op;
        fill_op(e, &op, i, NULL);
        LR_TRY(timed(e, &op, false));
    }
    return e->be->sync(e->bctx);
}

/* ------------------------------------------------------------------ evaluation */

/* Inference runs column-wise on a private schedule of whole tensors (eval mode), in scratch
 * memory outside the arena: the training peak is not affected. Parameter tensors of the private
 * schedule point into the arena. */
typedef struct {
    sched_t s;
    void **ptr;
    bool *owned; /* scratch to free */
    int *val;
} eval_ctx;

static int eval_param_tensor(exec_t *e, eval_ctx *x, int arena_t, sched_kind kind, int node)
{
    if (arena_t < 0)
        return -1;
    int t = sched_add_tensor(&x->s, TC_WEIGHT, kind, node, -1, -1, -1, e->s->tensors[arena_t].bytes);
    x->ptr[t] = e->ptr[arena_t];
    return t;
}

static lr_status eval_node(exec_t *e, eval_ctx *x, int l, int n, const float *images)
{
    const net_t *net = e->net;
    const net_node *nd = &net->nodes[l];
    x->val[l] = sched_add_tensor(&x->s, TC_ACTIVATION, TK_VALUE, l, -1, 0, nd->h - 1,
                                 cost_node_bytes(net, l, n, 4));
    int t = x->val[l];
    LR_TRY(e->be->scratch_alloc(e->bctx, x->s.tensors[t].bytes, &x->ptr[t]));
    x->owned[t] = true;
    if (l == 0)
        return e->be->upload(e->bctx, x->ptr[t], images, x->s.tensors[t].bytes);
    int param = eval_param_tensor(e, x, e->param_t[l], TK_PARAM, l);
    int running = eval_param_tensor(e, x, e->running_t[l], TK_RUNNING, l);
    sched_run *r = sched_run_step(&x->s, PASS_FWD, l, -1, -1, 0, nd->h - 1, 0, 0);
    r->n_in = nd->n_inputs;
    for (int k = 0; k < nd->n_inputs; k++)
        r->in[k] = x->val[plan_root(net, nd->inputs[k])];
    r->out = t;
    r->param = param;
    r->running = running;
    exec_op op;
    memset(&op, 0, sizeof op);
    op.net = net, op.s = &x->s, op.step = &x->s.steps[x->s.n_steps - 1], op.run = r;
    op.ptr = x->ptr, op.batch = n, op.hp = &e->hp, op.train_step = e->train_step, op.eval = true;
    return e->be->run(e->bctx, &op);
}

lr_status exec_predict_logits(exec_t *e, const float *images, int n, float *logits)
{
    const net_t *net = e->net;
    int nodes = net->n_nodes, out = plan_root(net, nodes - 2);
    eval_ctx x;
    sched_init(&x.s);
    size_t cap = (size_t)nodes * 3 + 1;
    x.ptr = calloc(cap, sizeof(void *));
    x.owned = calloc(cap, sizeof(bool));
    x.val = malloc(sizeof(int) * (size_t)nodes);
    lr_status st = x.ptr && x.owned && x.val ? LR_OK : lr_fail(LR_ERR_NOMEM, "out of memory");
    for (int l = 0; l < nodes - 1 && st == LR_OK; l++) {
        if (plan_root(net, l) != l)
            x.val[l] = x.val[plan_root(net, l)];
        else
            st = eval_node(e, &x, l, n, images);
    }
    if (st == LR_OK)
        st = e->be->download(e->bctx, logits, x.ptr[x.val[out]],
                             (int64_t)n * net->nodes[out].c * 4);
    for (int t = 0; x.ptr && x.owned && t < x.s.n_tensors; t++)
        if (x.owned[t])
            e->be->scratch_free(e->bctx, x.ptr[t]);
    free(x.ptr);
    free(x.owned);
    free(x.val);
    sched_free(&x.s);
    return st;
}

lr_status exec_predict(exec_t *e, const float *images, int n, int32_t *classes)
{
    int k = e->net->nodes[plan_root(e->net, e->net->n_nodes - 2)].c;
    float *logits = malloc(sizeof(float) * (size_t)n * k);
    if (!logits)
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    lr_status st = exec_predict_logits(e, images, n, logits);
    for (int i = 0; i < n && st == LR_OK; i++) {
        int best = 0;
        for (int c = 1; c < k; c++)
            if (logits[(int64_t)i * k + c] > logits[(int64_t)i * k + best])
                best = c;
        classes[i] = best;
    }
    free(logits);
    return st;
}
