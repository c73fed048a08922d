/* analysis.c - choose, emit and replay each requested strategy (see analysis.h). */
#include "analysis.h"

#include <string.h>

lr_status analysis_schedule(const analysis_t *a, const analysis_entry *e, plan_t **plan,
                            sched_t *s)
{
    LR_TRY(plan_build(a->net, &a->cfg, &e->choice.spec, plan));
    sched_init(s);
    lr_status st = plan_check_emit(*plan);
    if (st != LR_OK) {
        plan_free(*plan);
        *plan = NULL;
        return st;
    }
    plan_emit(*plan, s);
    return LR_OK;
}

/* The strategy's plan into e (`chosen`: when it came from strategy_choose_pair already). */
static lr_status choose_one(analysis_t *a, plan_strategy st, const plan_choice *chosen,
                            analysis_entry *e)
{
    memset(e, 0, sizeof *e);
    e->strategy = st;
    plan_request req = a->req;
    req.strategy = st;
    if (st < STRAT_ROW)
        req.rows = 0; /* --rows is for row strategies */
    if (chosen)
        e->choice = *chosen;
    else
        LR_TRY(strategy_choose(a->net, &a->cfg, &req, &e->choice));
    e->approximate = strategy_is_approximate(a->net, &a->cfg, &e->choice.spec);
    return LR_OK;
}

static lr_status replay_one(const analysis_t *a, analysis_entry *e)
{
    plan_t *plan;
    LR_TRY(plan_build(a->net, &a->cfg, &e->choice.spec, &plan));
    lr_status r = analysis_replay(a, plan, e);
    plan_free(plan);
    return r;
}

/* The replays (exact, and the allocator model when it is another) as one consumer. */
typedef struct {
    int n;
    sim_stream *k[2];
} replays;

static lr_status take_steps(void *ctx, const sched_t *s)
{
    replays *r = ctx;
    for (int i = 0; i < r->n; i++)
        LR_TRY(sim_stream_take(r->k[i], s));
    return LR_OK;
}

/* Steps handed to the replays at a time: a few hundred KB, kept in cache. */
#define REPLAY_CHUNK 4096

/* The timeline needs the arena offsets, so every step: the schedule is kept this time. */
static lr_status overlap(const plan_t *plan, analysis_entry *e)
{
    sched_t s;
    sched_init(&s);
    plan_emit(plan, &s);
    lr_status st = device_overlap_of(plan->net, plan->cfg.batch, cost_dtype_bytes(plan->cfg.dtype),
                                     plan->cfg.optim, plan->cfg.device, &s, &e->overlap);
    e->overlapped = st == LR_OK;
    sched_free(&s);
    return st;
}

lr_status analysis_replay(const analysis_t *a, const plan_t *plan, analysis_entry *e)
{
    LR_TRY(plan_check_emit(plan));
    sched_t s;
    sched_init(&s);
    replays r = {.n = a->allocator == ALLOC_EXACT ? 1 : 2};
    lr_status st = sim_stream_new(&s, ALLOC_EXACT, &r.k[0]);
    if (st == LR_OK && r.n == 2)
        st = sim_stream_new(&s, a->allocator, &r.k[1]);
    if (st == LR_OK) {
        sched_stream(&s, take_steps, &r, REPLAY_CHUNK);
        plan_emit(plan, &s);
        st = sched_finish(&s);
        e->n_steps = sched_position(&s);
    }
    for (int i = 0; i < r.n && r.k[i]; i++) {
        lr_status done = sim_stream_result(r.k[i], i ? &e->modelled : &e->exact);
        st = st == LR_OK ? done : st;
    }
    if (r.n == 1)
        e->modelled = e->exact;
    sim_stream_free(r.k[0]);
    sim_stream_free(r.k[1]);
    sched_free(&s);
    if (st == LR_OK && a->cfg.device && e->exact.copy_bytes > 0)
        st = overlap(plan, e);
    return st;
}

lr_status analysis_run(const net_t *net, const plan_config *cfg, const plan_request *req,
                       unsigned which, sim_allocator allocator, analysis_t *out)
{
    memset(out, 0, sizeof *out);
    out->net = net;
    out->cfg = *cfg;
    out->req = *req;
    out->allocator = allocator;
    LR_TRY(cost_check_layers(net, cfg->batch, cost_dtype_bytes(cfg->dtype)));
    plan_choice column;
    plan_request creq = *req;
    creq.strategy = STRAT_COLUMN;
    LR_TRY(strategy_choose(net, cfg, &creq, &column));
    out->column_peak = column.cost.peak_bytes;
    out->column_flops = column.cost.flops;
    out->column_ns = column.cost.step_ns;
    /* 2ps with 2ps-h and overl with overl-h come from one search each when both are asked for
     * and nothing is fixed (strategy_choose_pair) */
    plan_choice pair[STRAT_COUNT];
    bool paired[STRAT_COUNT] = {false};
    for (int st = STRAT_2PS; st <= STRAT_OVERL && !req->rows && !req->region_end; st++) {
        plan_strategy h = st == STRAT_2PS ? STRAT_2PS_H : STRAT_OVERL_H;
        if ((which & (1u << st)) && (which & (1u << h)))
            paired[st] = paired[h] = true;
    }
    int n = 0, at[STRAT_COUNT];
    for (int st = 0; st < STRAT_COUNT; st++)
        if (which & (1u << st))
            at[st] = n++;
    /* Every search is a task, the pairs first (the longest), and their inner loops are tasks too
     * (par_for), so a thread whose search is done helps another. Each strategy's replay is a task
     * of its own as soon as its plan is chosen. Errors are reported in the order of a run one
     * after another: the pairs' searches, each strategy's search, then the replays. */
    lr_outcome paired_search[STRAT_COUNT], search[STRAT_COUNT], replay[STRAT_COUNT];
    memset(paired_search, 0, sizeof paired_search);
    memset(search, 0, sizeof search);
    memset(replay, 0, sizeof replay);
#pragma omp parallel
#pragma omp single
    {
        for (int st = STRAT_2PS; st <= STRAT_OVERL; st++) {
            if (!paired[st])
                continue;
            plan_strategy h = st == STRAT_2PS ? STRAT_2PS_H : STRAT_OVERL_H;
#pragma omp task firstprivate(st, h) shared(pair, paired_search, search, replay, at)
            {
                lr_outcome_set(&paired_search[st],
                               strategy_choose_pair(net, cfg, (plan_strategy)st, &pair[st], &pair[h]));
                for (int k = 0; k < 2 && paired_search[st].status == LR_OK; k++) {
                    int s = k ? (int)h : st;
                    lr_outcome_set(&search[s],
                                   choose_one(out, (plan_strategy)s, &pair[s], &out->e[at[s]]));
#pragma omp task firstprivate(s) shared(replay, at)
                    lr_outcome_set(&replay[s], replay_one(out, &out->e[at[s]]));
                }
            }
        }
        for (int st = 0; st < STRAT_COUNT; st++) {
            if (!(which & (1u << st)) || paired[st])
                continue;
#pragma omp task firstprivate(st) shared(search, replay, at)
            {
                lr_outcome_set(&search[st],
                               choose_one(out, (plan_strategy)st, NULL, &out->e[at[st]]));
                if (search[st].status == LR_OK)
                    lr_outcome_set(&replay[st], replay_one(out, &out->e[at[st]]));
            }
        }
    }
    for (int st = STRAT_2PS; st <= STRAT_OVERL; st++)
        if (paired[st])
            LR_TRY(lr_outcome_report(&paired_search[st]));
    for (int st = 0; st < STRAT_COUNT; st++)
        if (which & (1u << st))
            LR_TRY(lr_outcome_report(&search[st]));
    for (int st = 0; st < STRAT_COUNT; st++) {
        if (which & (1u << st)) {
            LR_TRY(lr_outcome_report(&replay[st]));
            out->n++;
        }
    }
    return LR_OK;
}
