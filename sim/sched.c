/* sched.c - building and checking schedules (see sched.h).
 * Deliberately not here: replay and allocator models (replay.c), choosing steps (planner/).
 */
#include "sched.h"

#include <string.h>

static void *grow(void *p, int *cap, int need, size_t elem)
{
    if (need <= *cap)
        return p;
    int n = *cap ? *cap : 256;
    while (n < need) {
        LR_ASSERT(n < (1 << 29));
        n *= 2;
    }
    void *q = realloc(p, (size_t)n * elem);
    LR_ASSERT(q != NULL);
    *cap = n;
    return q;
}

void sched_init(sched_t *s)
{
    memset(s, 0, sizeof *s);
    s->elem_bytes = 4;
}

void sched_free(sched_t *s)
{
    if (!s)
        return;
    free(s->tensors);
    free(s->steps);
    free(s->runs);
    memset(s, 0, sizeof *s);
}

void sched_reset(sched_t *s)
{
    s->n_tensors = s->n_steps = s->n_runs = 0;
    s->step_begin = s->step_end = 0;
    s->step_base = s->run_base = 0;
    s->stream_status = LR_OK;
}

void sched_stream(sched_t *s, sched_consumer consume, void *consumer, int chunk)
{
    LR_ASSERT(consume && chunk > 0);
    sched_reset(s);
    s->consume = consume;
    s->consumer = consumer;
    s->chunk = chunk;
}

/* Hands the steps built so far to the consumer and drops them. */
static void hand_over(sched_t *s)
{
    if (s->stream_status == LR_OK && s->n_steps > 0)
        s->stream_status = s->consume(s->consumer, s);
    s->step_base += s->n_steps;
    s->run_base += s->n_runs;
    s->n_steps = s->n_runs = 0;
}

lr_status sched_finish(sched_t *s)
{
    if (s->consume)
        hand_over(s);
    return s->stream_status;
}

int sched_add_tensor(sched_t *s, sched_class cls, sched_kind kind, int node, int part,
                     int row_lo, int row_hi, int64_t bytes)
{
    LR_ASSERT(bytes >= 0);
    s->tensors = grow(s->tensors, &s->cap_tensors, s->n_tensors + 1, sizeof *s->tensors);
    sched_tensor *t = &s->tensors[s->n_tensors];
    t->node = node;
    t->part = part;
    t->row_lo = row_lo;
    t->row_hi = row_hi;
    t->cls = (uint8_t)cls;
    t->kind = (uint8_t)kind;
    t->tier = TIER_DEVICE;
    t->bytes = bytes;
    return s->n_tensors++;
}

static sched_step *push(sched_t *s, sched_op op, int pass, int node, int part, int stage)
{
    if (s->consume && s->n_steps == s->chunk)
        hand_over(s);
    s->steps = grow(s->steps, &s->cap_steps, s->n_steps + 1, sizeof *s->steps);
    sched_step *st = &s->steps[s->n_steps++];
    memset(st, 0, sizeof *st);
    st->op = (uint8_t)op;
    st->pass = (uint8_t)pass;
    st->node = node;
    st->part = part;
    st->stage = stage;
    st->row_lo = st->row_hi = -1;
    st->t = st->src = st->run = -1;
    return st;
}

void sched_alloc(sched_t *s, int t, int pass, int node, int part, int stage)
{
    LR_ASSERT(t >= 0 && t < s->n_tensors);
    push(s, STEP_ALLOC, pass, node, part, stage)->t = t;
}

void sched_release(sched_t *s, int t, int pass, int node, int part, int stage)
{
    LR_ASSERT(t >= 0 && t < s->n_tensors);
    push(s, STEP_FREE, pass, node, part, stage)->t = t;
}

void sched_copy(sched_t *s, int dst, int src, int row_lo, int row_hi, bool accumulate, int pass,
                int node, int part, int stage)
{
    sched_step *st = push(s, STEP_COPY, pass, node, part, stage);
    st->t = dst;
    st->src = src;
    st->row_lo = row_lo;
    st->row_hi = row_hi;
    st->accumulate = accumulate;
}

sched_run *sched_run_step(sched_t *s, int pass, int node, int part, int stage, int row_lo,
                          int row_hi, int flags, int64_t flops)
{
    sched_step *st = push(s, STEP_RUN, pass, node, part, stage); /* may hand over earlier runs */
    st->row_lo = row_lo;
    st->row_hi = row_hi;
    st->flags = (uint16_t)flags;
    st->flops = flops;
    s->runs = grow(s->runs, &s->cap_runs, s->n_runs + 1, sizeof *s->runs);
    sched_run *r = &s->runs[s->n_runs];
    memset(r, 0xff, sizeof *r); /* every tensor field -1 */
    r->n_in = 0;
    st->run = s->run_base + s->n_runs++;
    return r;
}

static const char *const class_names[TC_COUNT] = {
    "weight", "weight_grad", "opt_state", "input", "activation", "act_grad", "boundary", "workspace"};
static const char *const kind_names[TK_COUNT] = {
    "value", "grad", "param", "param_grad", "opt_state", "running",
    "bn_stats", "bn_gred", "labels", "loss", "workspace"};
static const char *const pass_names[PASS_COUNT] = {"FWD", "BWD", "RECOMPUTE", "UPDATE", "STATS",
                                                   "GSTATS"};
static const char *const op_names[] = {"ALLOC", "FREE", "RUN", "COPY"};

bool sched_zeroed_on_alloc(const sched_tensor *t)
{
    return t->tier == TIER_DEVICE && t->kind != TK_VALUE && t->kind != TK_PARAM &&
           t->kind != TK_LABELS && t->kind != TK_WORKSPACE &&
           !(t->kind == TK_GRAD && t->cls == TC_BOUNDARY);
}

int64_t sched_copy_bytes(const sched_t *s, const sched_step *p)
{
    const sched_tensor *dst = &s->tensors[p->t];
    if (p->row_hi < p->row_lo || dst->row_hi < dst->row_lo)
        return 0;
    return dst->bytes / (dst->row_hi - dst->row_lo + 1) * (p->row_hi - p->row_lo + 1);
}

const char *sched_class_name(sched_class c)
{
    return c < TC_COUNT ? class_names[c] : "?";
}

const char *sched_tier_name(sched_tier t)
{
    static const char *const names[TIER_COUNT] = {"device", "host"};
    return t < TIER_COUNT ? names[t] : "?";
}

const char *sched_kind_name(sched_kind k)
{
    return k < TK_COUNT ? kind_names[k] : "?";
}

const char *sched_pass_name(sched_pass p)
{
    return p < PASS_COUNT ? pass_names[p] : "?";
}

const char *sched_op_name(sched_op op)
{
    return op <= STEP_COPY ? op_names[op] : "?";
}

/* ------------------------------------------------------------------ validation */

enum { T_NEW, T_LIVE, T_DEAD };

static lr_status need_live(const sched_t *s, const uint8_t *state, int i, int t, const char *role)
{
    if (t < 0)
        return LR_OK;
    if (t >= s->n_tensors)
        return lr_fail(LR_ERR_RUNTIME, "schedule step %d: %s tensor %d out of range", i, role, t);
    if (state[t] != T_LIVE)
        return lr_fail(LR_ERR_RUNTIME, "schedule step %d: %s tensor %d (%s of node %d) is not live",
                       i, role, t, sched_kind_name(s->tensors[t].kind), s->tensors[t].node);
    return LR_OK;
}

static lr_status check_run(const sched_t *s, const uint8_t *state, int i, const sched_run *r)
{
    for (int k = 0; k < r->n_in; k++) {
        LR_TRY(need_live(s, state, i, r->in[k], "input"));
        LR_TRY(need_live(s, state, i, r->din[k], "input-gradient"));
    }
    const int32_t others[] = {r->out,     r->dout, r->param, r->param_grad, r->opt_state,
                              r->running, r->aux,  r->gred,  r->labels,     r->loss,
                              r->workspace};
    for (size_t k = 0; k < sizeof others / sizeof others[0]; k++)
        LR_TRY(need_live(s, state, i, others[k], "operand"));
    return LR_OK;
}

lr_status sched_validate(const sched_t *s)
{
    LR_ASSERT(s->step_base == 0 && s->run_base == 0); /* every step kept */
    uint8_t *state = calloc((size_t)s->n_tensors + 1, 1);
    LR_ASSERT(state != NULL);
    lr_status st = LR_OK;
    for (int i = 0; i < s->n_steps && st == LR_OK; i++) {
        const sched_step *p = &s->steps[i];
        if ((p->op == STEP_ALLOC || p->op == STEP_FREE) && (p->t < 0 || p->t >= s->n_tensors)) {
            st = lr_fail(LR_ERR_RUNTIME, "schedule step %d: %s of tensor %d, out of range", i,
                         sched_op_name((sched_op)p->op), p->t);
            break;
        }
        if (p->op == STEP_RUN && (p->run < 0 || p->run >= s->n_runs)) {
            st = lr_fail(LR_ERR_RUNTIME, "schedule step %d: RUN %d out of range", i, p->run);
            break;
        }
        switch (p->op) {
        case STEP_ALLOC:
            if (state[p->t] != T_NEW)
                st = lr_fail(LR_ERR_RUNTIME, "schedule step %d: tensor %d allocated twice", i, p->t);
            else if (i >= s->step_begin && s->tensors[p->t].cls <= TC_INPUT &&
                     s->tensors[p->t].kind != TK_LOSS)
                st = lr_fail(LR_ERR_RUNTIME, "schedule step %d: persistent tensor %d allocated inside the step", i, p->t);
            state[p->t] = T_LIVE;
            break;
        case STEP_FREE:
            if (state[p->t] != T_LIVE)
                st = lr_fail(LR_ERR_RUNTIME, "schedule step %d: tensor %d freed while not live", i, p->t);
            state[p->t] = T_DEAD;
            break;
        case STEP_COPY:
            st = need_live(s, state, i, p->t, "copy destination");
            if (st == LR_OK)
                st = need_live(s, state, i, p->src, "copy source");
            break;
        case STEP_RUN:
            st = check_run(s, state, i, &s->runs[p->run]);
            break;
        default:
            st = lr_fail(LR_ERR_RUNTIME, "schedule step %d: unknown op %d", i, p->op);
        }
    }
    for (int t = 0; t < s->n_tensors && st == LR_OK; t++)
        if (state[t] == T_LIVE)
            st = lr_fail(LR_ERR_RUNTIME, "schedule: tensor %d (%s of node %d) never freed", t,
                         sched_kind_name(s->tensors[t].kind), s->tensors[t].node);
    free(state);
    return st;
}
