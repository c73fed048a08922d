/* fit.c - the largest batch and the largest square input within a budget (see fit.h).
 *
 * Legend: b a batch, H an input height (= width), k an index into the accepted sizes
 * H = min + k * step; "fits" as fit.h defines it.
 * Deliberately not here: plan choice itself (strategy.c, auto.c).
 */
#include "fit.h"

#include <math.h>
#include <string.h>
#include <strings.h>

#include "checked.h"
#include "clock.h"
#include "choose.h"

/* ------------------------------------------------------------------ one question */

/* fit_run_all's progress: the caller's function and the questions answered so far. */
typedef struct {
    fit_progress fn;
    void *ctx;
    int done, total;
} progress_state;

/* The choices a seed's input question made (fit_run_all: 2ps's or overl's, the hybrid asked
 * without --rows and --region), each with the stages its search measured, for the hybrid's
 * input question, which starts from the seed's answer and so asks at the sizes the seed asked
 * last: its choices there take the seed's instead of making the single-stage search again
 * (strategy_choose_hybrid_from; resnet101 --fit h100-80gb: 2ps's choice is about a third of
 * 2ps-h's at 31248x31248). */
typedef struct {
    struct kept_seed {
        int h;            /* the input height */
        unsigned offload; /* the offload set (--offload auto: choose_offload's, one at a time) */
        strategy_seed s;
    } *v;
    int n, cap;
} seed_cache;

static void seed_cache_free(seed_cache *c)
{
    for (int k = 0; k < c->n; k++)
        strategy_seed_free(&c->v[k].s);
    free(c->v);
}

static const strategy_seed *seed_find(const seed_cache *c, const net_t *net,
                                      const plan_config *cfg)
{
    for (int k = 0; c && cfg->batch == 1 && k < c->n; k++)
        if (c->v[k].h == net->nodes[0].h && c->v[k].offload == cfg->offload)
            return &c->v[k].s;
    return NULL;
}

/* strategy_choose's choice of `single` at cfg (batch 1, one offload set), kept in c. */
static lr_status seed_choose(seed_cache *c, const net_t *net, const plan_config *cfg,
                             plan_strategy single, plan_choice *out)
{
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 8;
        struct kept_seed *v = realloc(c->v, sizeof *v * (size_t)cap);
        if (!v)
            return lr_fail(LR_ERR_NOMEM, "out of memory");
        c->v = v, c->cap = cap;
    }
    struct kept_seed *e = &c->v[c->n];
    LR_TRY(strategy_choose_seed(net, cfg, single, &e->s));
    e->h = net->nodes[0].h, e->offload = cfg->offload;
    c->n++;
    *out = e->s.one;
    return LR_OK;
}

typedef struct {
    const net_t *net; /* at the input being asked about */
    plan_config cfg;
    const fit_target *t;
    int64_t budget;
    fit_result *out;
    /* the strategy chooses by the table's objective (strategy.h) over plans that do not depend on
     * the batch (resp. the input): its choice has a peak within the near-tie of any plan of that
     * set, so a plan of the set that fits with the near-tie to spare proves fits(); a set of one
     * plan (column, hybrids with --rows) needs no margin */
    bool lowest_of_fixed_set;
    bool one_plan;
    bool strict; /* the first choice: its errors are the caller's (bad region, ...) */
    progress_state *progress; /* NULL: none */
    int index;                /* the target's, for progress */
    bool shown;               /* one of the caller's targets (not a seed asked on the side) */
    bool batch;               /* the question asked */
    seed_cache *keep;         /* a seed's input question: where its choices go (NULL: none) */
    const seed_cache *from;   /* a seeded input question: its seed's choices (NULL: none) */
} fitter;

/* Tells the progress function (if any) event at x (the batch, or the input height; 0 with
 * FIT_ANSWERED), with the measurement in m (spec, bn, peak, fits, seconds; NULL: none). */
static void tell(const fitter *f, fit_event event, int64_t x, const fit_progress_info *m)
{
    progress_state *p = f->progress;
    if (!p)
        return;
#pragma omp critical(fit_progress)
    {
        p->done += event == FIT_ANSWERED && f->shown;
        fit_progress_info i = m ? *m : (fit_progress_info){.peak = INT64_MAX};
        i.done = p->done, i.total = p->total, i.target = f->index, i.shown = f->shown;
        i.strategy = f->t->strategy, i.batch = f->batch, i.at = x, i.event = event;
        p->fn(p->ctx, &i);
    }
}

typedef struct {
    int64_t peak; /* INT64_MAX: the net does not accept the input, or the planner cannot count */
    bool fits;
    int64_t host; /* host memory the plan keeps (--offload) */
    int64_t copy, flops; /* bytes it copies between host and device per step; its compute */
} point;

typedef struct {
    plan_spec spec;
    plan_bn bn;
    point at;
    int h; /* the input height it was chosen at (the input question; 0: the batch question) */
} choice;

/* False when the planner cannot count this batch at this input (a layer's bytes or FLOPs do not
 * fit in int64: cost_check_layers). */
static bool countable(const net_t *net, const plan_config *cfg)
{
    return cost_check_layers(net, cfg->batch, cost_dtype_bytes(cfg->dtype)) == LR_OK;
}

static bool host_fits(const fitter *f, int64_t host)
{
    return f->t->host_budget_bytes <= 0 || host <= f->t->host_budget_bytes;
}

/* The input batch's bytes at `batch`: a plan that keeps it on the device (not OFFLOAD_INPUT)
 * peaks at least at them, so past the budget it cannot fit. */
static int64_t input_bytes(const fitter *f, int batch)
{
    return cost_node_bytes(f->net, 0, batch, cost_dtype_bytes(f->cfg.dtype));
}

static double auto_cap(const fit_target *t)
{
    return t->areq.max_overhead > 0 ? t->areq.max_overhead : AUTO_DEFAULT_OVERHEAD;
}

/* A fixed plan at `batch`: its peak, and whether it fits (for auto also within its compute
 * cap). */
static lr_status plan_point(fitter *f, int batch, const plan_spec *spec, plan_bn bn, point *p)
{
    plan_config cfg = f->cfg;
    cfg.batch = batch;
    cfg.bn = bn;
    p->peak = INT64_MAX, p->fits = false;
    if (!countable(f->net, &cfg))
        return LR_OK;
    /* past the budget with the input batch alone: not planned (the boundary search's model
     * overshoots to such sizes, where overl's N scaled with the input runs to millions of
     * partitions: `--net tiny-mix --batch 4 --fit 17000000B --reserve 0` with overl, 2ps, row,
     * column, checkpoint and auto took 5.5 s before, 0.05 s after, the answers the same) */
    if (!(plan_offload_of(&cfg, spec) & OFFLOAD_INPUT) && input_bytes(f, batch) > f->budget)
        return LR_OK;
    plan_cost c;
    bool usable;
    f->out->n_evals++;
    double t0 = lr_now_ms();
    LR_TRY(strategy_evaluate_usable(f->net, &cfg, spec, &c, &usable));
    if (usable) {
        p->peak = c.peak_bytes;
        p->host = c.host_bytes;
        p->fits = c.peak_bytes <= f->budget && host_fits(f, c.host_bytes);
    }
    if (p->fits && f->t->strategy == STRAT_COUNT) {
        plan_spec column;
        memset(&column, 0, sizeof column);
        plan_cost col;
        LR_TRY(strategy_evaluate_usable(f->net, &cfg, &column, &col, &usable));
        p->fits = usable && c.flops <= lr_sat_scale(auto_cap(f->t), col.flops);
    }
    fit_progress_info m = {.spec = spec, .bn = bn, .peak = p->peak, .fits = p->fits,
                           .seconds = (lr_now_ms() - t0) / 1e3};
    tell(f, FIT_MEASURED, f->batch ? batch : f->net->nodes[0].h, &m);
    return LR_OK;
}

/* The target's own plan under cfg (one offload set). auto fits when some plan within its compute
 * cap (AUTO_DEFAULT_OVERHEAD unless the user set one) fits, that is when its lowest peak within
 * the cap does: asking for that plan (rather than the least compute under the budget, which
 * changes with every batch) keeps the plan the same from one batch to the next. */
static lr_status choose_in(fitter *f, const plan_config *cfg, choice *out)
{
    f->out->n_choices++;
    const plan_cost *c;
    plan_choice pc;
    auto_result res;
    lr_status st;
    if (f->t->strategy == STRAT_COUNT) {
        auto_request r = f->t->areq;
        r.max_overhead = auto_cap(f->t);
        r.budget_bytes = 0;
        st = auto_search(f->net, cfg, &r, &res);
        c = &res.best.cost;
    } else {
        plan_request r = f->t->req;
        r.strategy = f->t->strategy;
        if (r.strategy < STRAT_ROW)
            r.rows = 0;
        const strategy_seed *seed = seed_find(f->from, f->net, cfg);
        if (seed)
            st = strategy_choose_hybrid_from(f->net, cfg, seed, &pc);
        else if (f->keep && cfg->batch == 1)
            st = seed_choose(f->keep, f->net, cfg, r.strategy, &pc);
        else
            st = strategy_choose(f->net, cfg, &r, &pc);
        c = &pc.cost;
    }
    if (st == LR_ERR_INPUT && !f->strict) /* counts the planner cannot form: does not fit */
        return LR_OK;
    LR_TRY(st);
    bool auto_fits = f->t->strategy != STRAT_COUNT || res.best.fits;
    out->spec = f->t->strategy == STRAT_COUNT ? res.best.spec : pc.spec;
    if (f->t->strategy == STRAT_COUNT)
        out->bn = res.best.bn;
    out->at.peak = c->peak_bytes;
    out->at.host = c->host_bytes;
    out->at.copy = c->copy_bytes;
    out->at.flops = c->flops;
    out->at.fits = auto_fits && c->peak_bytes <= f->budget && host_fits(f, c->host_bytes);
    return LR_OK;
}

/* --offload auto: the choice under each set; fits when one of them fits, and then the one of
 * least copying (strategy_offload_fitting); when none fits, the one of the lowest peak (the
 * plan the next fixed-plan search starts from). The set goes into spec.offload.
 * A set that keeps the input batch on the device peaks at least at its bytes (input_bytes). Once
 * those are past the budget and past a peak another set has, the set can neither fit nor be the
 * lowest, and is not searched: the sets that offload the input are searched first. The input
 * question reaches such sizes whenever offloading the input pays (vgg16 --batch 64 --fit
 * h100-80gb --offload auto, when this rule came in at 0100c48: 71 s before, 39 s after, the
 * answers the same). */
static lr_status choose_offload(fitter *f, const plan_config *cfg, choice *out)
{
    static const unsigned order[STRATEGY_OFFLOAD_SETS] = {
        OFFLOAD_INPUT, OFFLOAD_INPUT | OFFLOAD_BOUNDARY, 0, OFFLOAD_BOUNDARY};
    choice by[STRATEGY_OFFLOAD_SETS];
    plan_cost c[STRATEGY_OFFLOAD_SETS];
    bool fits[STRATEGY_OFFLOAD_SETS];
    int64_t input = input_bytes(f, cfg->batch);
    int64_t lowest = INT64_MAX;
    for (int k = 0; k < STRATEGY_OFFLOAD_SETS; k++) {
        unsigned set = order[k];
        plan_config one = *cfg;
        one.offload_auto = false;
        one.offload = set;
        by[set] = *out;
        bool beyond = !(set & OFFLOAD_INPUT) && input > f->budget && input > lowest;
        if (strategy_offload_matters(f->t->strategy, set) && !beyond)
            LR_TRY(choose_in(f, &one, &by[set]));
        by[set].spec.offload = set;
        if (by[set].at.peak < lowest)
            lowest = by[set].at.peak;
    }
    int low = 0;
    for (unsigned set = 0; set < STRATEGY_OFFLOAD_SETS; set++) {
        memset(&c[set], 0, sizeof c[set]);
        c[set].peak_bytes = by[set].at.peak, c[set].host_bytes = by[set].at.host;
        c[set].copy_bytes = by[set].at.copy, c[set].flops = by[set].at.flops;
        fits[set] = by[set].at.fits;
        if (by[set].at.peak < by[low].at.peak)
            low = (int)set;
    }
    int best = strategy_offload_fitting(c, fits);
    *out = by[best >= 0 ? best : low];
    return LR_OK;
}

/* The target's own plan at `batch` (choose_in; under --offload auto, choose_offload). */
static lr_status choose(fitter *f, int batch, choice *out)
{
    int64_t x = f->batch ? batch : f->net->nodes[0].h;
    tell(f, FIT_CHOOSING, x, NULL);
    double t0 = lr_now_ms();
    plan_config cfg = f->cfg;
    cfg.batch = batch;
    memset(out, 0, sizeof *out);
    out->bn = cfg.bn;
    out->at.peak = INT64_MAX;
    bool formed = countable(f->net, &cfg);
    if (formed)
        LR_TRY(cfg.offload_auto ? choose_offload(f, &cfg, out) : choose_in(f, &cfg, out));
    formed = formed && out->at.peak < INT64_MAX;
    fit_progress_info m = {.spec = formed ? &out->spec : NULL, .bn = out->bn, .peak = out->at.peak,
                           .fits = out->at.fits, .seconds = (lr_now_ms() - t0) / 1e3};
    tell(f, FIT_CHOSE, x, &m);
    return LR_OK;
}

/* ------------------------------------------------------------------ boundary search */

/* One of the two questions, over x = 1, 2, ... (0: nothing fits). */
typedef struct question question;
struct question {
    fitter *f;
    lr_status (*plan_at)(question *q, int64_t x, const choice *plan, point *p);
    lr_status (*choose_at)(question *q, int64_t x, choice *c);
    int power;          /* the peak grows about as x^power (batch 1, input size 2) */
    int64_t guess;      /* where to look first */
    net_t *copy;        /* input: the copy that is reshaped */
    int min, step;      /* input: x = 1 is min x min, x = 2 is (min + step)^2, ... */
    const choice *plan; /* for plan_measure */
    choice last;        /* the latest choice of choice_measure */
    choice seen;        /* input: the latest choice at a size, of one stage with N >= 2 */
    bool scale;         /* input: its N grew with the size, as scaled_at scales it */
    choice top;         /* the choice that fits at the largest x asked (top_x; 0: none) */
    int64_t top_x;
};

typedef lr_status (*measure_fn)(question *q, int64_t x, point *p);

static lr_status plan_measure(question *q, int64_t x, point *p)
{
    return q->plan_at(q, x, q->plan, p);
}

static lr_status choice_measure(question *q, int64_t x, point *p)
{
    LR_TRY(q->choose_at(q, x, &q->last));
    *p = q->last.at;
    if (p->fits && x > q->top_x)
        q->top = q->last, q->top_x = x;
    return LR_OK;
}

/* The largest x whose model peak a + c * x^power (through two measured points) is within the
 * budget; -1 when the two points do not define a rising model. */
static int64_t predict(const int64_t *xs, const int64_t *vs, int power, int64_t budget)
{
    double u0 = pow((double)xs[0], power), u1 = pow((double)xs[1], power);
    if (u1 == u0 || vs[1] == vs[0])
        return -1;
    double slope = ((double)vs[1] - (double)vs[0]) / (u1 - u0);
    if (slope <= 0)
        return -1;
    double u = u0 + ((double)budget - (double)vs[0]) / slope;
    if (u < 1)
        return 0;
    double x = floor(pow(u, 1.0 / power));
    return x > 9e15 ? (int64_t)9e15 : (int64_t)x;
}

typedef struct {
    int64_t good, bad; /* good fits (or is the sentinel 0), bad does not (or is the limit + 1) */
    int64_t xs[2], vs[2];
    int n; /* measured points with a finite peak, the last two kept */
} bracket;

static void record(bracket *b, int64_t x, const point *p)
{
    *(p->fits ? &b->good : &b->bad) = x;
    if (p->peak == INT64_MAX)
        return;
    if (b->n == 2)
        b->xs[0] = b->xs[1], b->vs[0] = b->vs[1];
    b->xs[b->n == 2 ? 1 : b->n] = x, b->vs[b->n == 2 ? 1 : b->n] = p->peak;
    b->n += b->n < 2;
}

/* The next x to measure: the model's boundary (or the one past it, once that fits), else
 * exponential steps up from `from`; every third step a bisection if the bracket did not halve. */
static int64_t next_x(const bracket *b, int power, int64_t budget, int64_t from, bool bisect)
{
    int64_t x = -1;
    if (b->n == 2 && !bisect)
        x = predict(b->xs, b->vs, power, budget);
    if (x >= 0 && x <= b->good)
        x = b->good + 1;
    if (x < 0 || bisect)
        x = bisect || b->good >= from + 64 ? b->good + (b->bad - b->good) / 2
                                            : b->good + (b->good - from + 1);
    if (x >= b->bad)
        x = b->bad - 1;
    return x;
}

/* The largest x in (lo, hi) that fits, or lo when lo + 1 does not; lo is known to fit (0: the
 * sentinel) and hi known not to. Assumes a monotone answer; the result is measured either way. */
static lr_status last_fitting(question *q, measure_fn fn, int64_t lo, int64_t hi, int64_t guess,
                              int64_t *out)
{
    bracket b = {.good = lo, .bad = hi};
    int64_t x = guess > lo && guess < hi ? guess : lo + 1, width = hi - lo;
    for (int step = 1; b.bad - b.good > 1; step++) {
        point p;
        LR_TRY(fn(q, x, &p));
        record(&b, x, &p);
        bool bisect = step % 3 == 0 && b.bad - b.good > width / 2;
        if (step % 3 == 0)
            width = b.bad - b.good;
        if (b.bad - b.good > 1)
            x = next_x(&b, q->power, q->f->budget, lo, bisect);
    }
    *out = b.good;
    return LR_OK;
}

/* Whether two choices are the same plan. */
static bool same_plan(const choice *a, const choice *b)
{
    const plan_spec *x = &a->spec, *y = &b->spec;
    if (a->bn != b->bn || x->strategy != y->strategy || x->kind != y->kind ||
        x->n_stages != y->n_stages || x->recompute != y->recompute || x->offload != y->offload)
        return false;
    for (int s = 0; s < x->n_stages; s++)
        if (x->cut[s] != y->cut[s] || x->parts[s] != y->parts[s])
            return false;
    return true;
}

/* A choice made at an input size whose N the strategy chose for one stage (row, 2ps, overl, and
 * the hybrids when their choice is their single-stage strategy's plan, as at high resolution). */
static bool scalable(const question *q, const choice *c)
{
    const plan_spec *sp = &c->spec;
    return q->power == 2 && c->h > 0 && sp->n_stages == 1 && sp->parts[0] >= 2 &&
           q->f->t->req.rows == 0 && q->f->t->strategy >= STRAT_ROW &&
           q->f->t->strategy <= STRAT_OVERL_H;
}

/* After a choice at an input size: whether the strategy's N grows with the size, that is this
 * choice and the last one at least 5% smaller or larger have the same region end and N in
 * proportion to the size (within 10% of the growth, on a log scale), the way scaled_at scales
 * it. */
static void note_choice(question *q, const choice *c)
{
    if (!scalable(q, c))
        return;
    const choice *a = &q->seen;
    if (a->h == 0) {
        q->seen = *c;
        return;
    }
    double grow = log((double)c->h / a->h);
    if (fabs(grow) < 0.05) /* too close to tell (the end of a search) */
        return;
    q->scale = a->spec.kind == c->spec.kind && a->spec.cut[0] == c->spec.cut[0] &&
               fabs(log((double)c->spec.parts[0] / a->spec.parts[0]) - grow) <= 0.1 * fabs(grow);
    q->seen = *c;
}

/* The plan the input search measures at x (the size q->copy is at): once note_choice saw N grow
 * with the size, a scalable plan keeps its stripe height, N scaled with the input height from
 * where it was chosen (overl's choices do that at high resolution: one more partition for each
 * stripe of growth, so a fixed N found a boundary one stripe away each round); else the plan
 * itself. */
static choice scaled_at(const question *q, const choice *plan, int64_t x)
{
    choice c = *plan;
    const plan_spec *sp = &plan->spec;
    if (!q->scale || !scalable(q, plan))
        return c;
    int64_t h = q->min + (x - 1) * q->step;
    double n = floor((double)sp->parts[0] * (double)h / plan->h + 0.5);
    /* within the N the strategy's own search tries there (q->copy is at x) */
    int most = strategy_max_parts(q->copy, sp->kind, 0, sp->cut[0]);
    c.spec.parts[0] = n < 2 ? 2 : n > most ? most : (int)n;
    return c;
}

/* Narrows [lo, hi) around the fixed plan's answer g: fits(g) from the plan itself when the
 * strategy takes the lowest peak over a fixed set, else from its choice at g; then fits(lo + 1)
 * from its choice. The plan to search with next is the choice that moved a bound, or the choice
 * at g when it fits as another plan (then at once: its own boundary is at g or beyond). */
static lr_status round_of(question *q, choice *plan, int64_t guess, int64_t *lo, int64_t *hi)
{
    q->plan = plan;
    int64_t g;
    LR_TRY(last_fitting(q, plan_measure, *lo, *hi, guess, &g));
    point p;
    bool proven = false;
    if (g > *lo && q->f->lowest_of_fixed_set) {
        LR_TRY(plan_measure(q, g, &p));
        proven = q->f->one_plan || (p.peak < INT64_MAX && p.peak + p.peak / STRATEGY_NEAR_TIE_DIV <= q->f->budget);
    }
    if (proven) {
        *lo = g;
    } else if (g > *lo) {
        LR_TRY(choice_measure(q, g, &p));
        *(p.fits ? lo : hi) = g;
        choice searched = scaled_at(q, plan, g);
        bool moved = !same_plan(&q->last, &searched);
        /* another N of the same single-stage plan, fitting within the near-tie of the budget:
         * there the choice flips between near-tied N from one size to the next, and a round
         * with it would land within a few sizes of g; g + 1 is asked at once (a boundary when
         * it does not fit) */
        const plan_spec *a = &q->last.spec, *b = &searched.spec;
        bool flip = q->power == 2 && p.fits && p.peak + p.peak / STRATEGY_NEAR_TIE_DIV > q->f->budget &&
                    a->n_stages == 1 && b->n_stages == 1 && a->kind == b->kind && a->cut[0] == b->cut[0];
        if (!p.fits || (moved && !flip)) { /* the next round searches with it */
            *plan = q->last;
            return LR_OK;
        }
    }
    if (*lo + 1 < *hi) {
        LR_TRY(choice_measure(q, *lo + 1, &p));
        *(p.fits ? lo : hi) = *lo + 1;
        if (p.fits)
            *plan = q->last;
    }
    return LR_OK;
}

/* The largest x <= limit that fits (0: none). */
static lr_status boundary(question *q, const choice *start, int64_t limit, int64_t *answer)
{
    int64_t lo = 0, hi = limit + 1;
    choice plan = *start;
    for (int round = 0; round < 6 && hi - lo > 1; round++)
        LR_TRY(round_of(q, &plan, round ? lo + 1 : q->guess, &lo, &hi));
    if (hi - lo > 1) /* the plan kept changing: search on the strategy's own choice */
        LR_TRY(last_fitting(q, choice_measure, lo, hi, lo + 1, &lo));
    *answer = lo;
    return LR_OK;
}

/* The strategy's choice at x, the answer: the one the search made there, else made now (what
 * the plan chosen there keeps in host memory, --offload). */
static lr_status choice_at_answer(question *q, int64_t x, choice *c)
{
    if (q->top_x == x) {
        *c = q->top;
        return LR_OK;
    }
    return q->choose_at(q, x, c);
}

/* ------------------------------------------------------------------ the two questions */

static lr_status batch_plan_at(question *q, int64_t b, const choice *plan, point *p)
{
    return plan_point(q->f, (int)b, &plan->spec, plan->bn, p);
}

static lr_status batch_choose(question *q, int64_t b, choice *c)
{
    return choose(q->f, (int)b, c);
}

/* Reshapes the copy to the x-th accepted size; false when the net does not accept it. */
static bool input_at(question *q, int64_t x)
{
    int64_t h = q->min + (x - 1) * q->step;
    q->f->net = q->copy;
    return h <= FIT_MAX_INPUT && net_reshape(q->copy, (int)h, (int)h) == LR_OK;
}

static lr_status input_plan_at(question *q, int64_t x, const choice *plan, point *p)
{
    p->peak = INT64_MAX, p->fits = false;
    if (!input_at(q, x))
        return LR_OK;
    choice at = scaled_at(q, plan, x);
    return plan_point(q->f, 1, &at.spec, at.bn, p);
}

static lr_status input_choose(question *q, int64_t x, choice *c)
{
    memset(c, 0, sizeof *c);
    c->at.peak = INT64_MAX;
    if (!input_at(q, x))
        return LR_OK;
    LR_TRY(choose(q->f, 1, c));
    c->h = (int)(q->min + (x - 1) * q->step);
    note_choice(q, c);
    return LR_OK;
}

/* The smallest accepted size up to h0, and the step to the next accepted size (within 64). */
static void accepted_sizes(net_t *copy, int h0, int *min, int *step)
{
    *min = 0, *step = 1;
    for (int h = 1; h <= h0 && !*min; h++)
        if (net_reshape(copy, h, h) == LR_OK)
            *min = h;
    for (int s = 1; *min && s <= 64; s++)
        if (net_reshape(copy, *min + s, *min + s) == LR_OK) {
            *step = s;
            return;
        }
}

static lr_status max_batch(fitter *f, const choice *start, fit_result *out)
{
    question q = {.f = f, .plan_at = batch_plan_at, .choose_at = batch_choose, .power = 1,
                  .guess = f->cfg.batch};
    int64_t b;
    LR_TRY(boundary(&q, start, FIT_MAX_BATCH, &b));
    out->max_batch = (int)b;
    if (b > 0 && (f->cfg.offload || f->cfg.offload_auto)) {
        choice c;
        LR_TRY(choice_at_answer(&q, b, &c));
        out->host_bytes_at_max_batch = c.at.host;
        out->offload_at_max_batch = plan_offload_of(&f->cfg, &c.spec);
    }
    plan_config cfg = f->cfg;
    cfg.batch = (int)(b < FIT_MAX_BATCH ? b + 1 : b);
    out->batch_at_limit = b == FIT_MAX_BATCH || (b > 0 && !countable(f->net, &cfg));
    return LR_OK;
}

/* The input question from `start`; a start chosen at an input size (start->h > 0) is where the
 * search looks first. *answer: the choice at the answer when one was made there (else left as
 * it was: fit_one starts it at h = 0). */
static lr_status max_input(fitter *f, const choice *start, fit_result *out, choice *answer)
{
    net_t *copy;
    LR_TRY(auto_subnet(f->net, 0, &copy));
    const net_t *own = f->net;
    int h0 = own->nodes[0].h > own->nodes[0].w ? own->nodes[0].h : own->nodes[0].w;
    question q = {.f = f, .plan_at = input_plan_at, .choose_at = input_choose, .power = 2,
                  .copy = copy};
    accepted_sizes(copy, h0, &q.min, &q.step);
    out->min_square_input = q.min;
    out->input_step = q.step;
    lr_status st = LR_OK;
    int64_t x = 0, limit = q.min ? (FIT_MAX_INPUT - q.min) / q.step + 1 : 0;
    int from = start->h > 0 ? start->h : h0;
    q.guess = q.min && from >= q.min ? (from - q.min) / q.step + 1 : 1;
    if (q.min)
        st = boundary(&q, start, limit, &x);
    if (st == LR_OK && x > 0 && q.top_x == x)
        *answer = q.top;
    out->max_square_input = x ? (int)(q.min + (x - 1) * q.step) : 0;
    if (st == LR_OK && x > 0 && (f->cfg.offload || f->cfg.offload_auto)) {
        choice c;
        st = choice_at_answer(&q, x, &c);
        out->host_bytes_at_max_input = c.at.host;
        out->offload_at_max_input = plan_offload_of(&f->cfg, &c.spec);
    }
    plan_config cfg = f->cfg;
    cfg.batch = 1;
    out->input_at_limit = x == limit && x > 0;
    if (st == LR_OK && x > 0 && x < limit && input_at(&q, x + 1))
        out->input_at_limit = !countable(copy, &cfg);
    f->net = own;
    net_free(copy);
    return st;
}

/* ------------------------------------------------------------------ driver */

/* A set of one plan: the strategy's choice is that plan. */
static bool one_plan(const fit_target *t, bool batch)
{
    return t->strategy == STRAT_COLUMN ||
           ((t->strategy == STRAT_2PS_H || t->strategy == STRAT_OVERL_H) && batch && t->req.rows > 0);
}

static bool lowest_of_fixed_set(const fit_target *t, bool batch)
{
    switch (t->strategy) {
    case STRAT_COLUMN:
        return true;
    case STRAT_ROW:
    case STRAT_2PS:
    case STRAT_OVERL: /* with --rows one plan; else the N search, which past 32 is not exhaustive */
        return t->req.rows > 0;
    case STRAT_CHECKPOINT: /* its segments follow activation shares, which move with the input */
        return batch;
    case STRAT_2PS_H:
    case STRAT_OVERL_H: /* auto's search; with --rows, N scaled by heights only */
        return batch && t->req.rows > 0;
    default: /* auto: its own choice; which N it tries for a stage depends on the peaks found */
        return false;
    }
}

/* One question (batch or input) for one target; fills its half of *out. The input question
 * starts from `seed` when there is one (fit_run_all), else from the target's plan at cfg's size;
 * *answer is the choice at its answer (answer->h = 0: none). */
static lr_status fit_one(const net_t *net, const plan_config *cfg, const fit_target *t,
                         int64_t budget_bytes, bool batch, const choice *seed,
                         seed_cache *keep, const seed_cache *from, progress_state *progress,
                         int index, bool shown, fit_result *out, choice *answer)
{
    if (budget_bytes <= 0 || budget_bytes >= FIT_MAX_BUDGET_BYTES)
        return lr_fail(LR_ERR_USAGE, "--fit: expected a budget above the reserve and below 1 PiB");
    out->budget_bytes = budget_bytes;
    /* (a batch question asks the same stages at every batch: plan_config.reuse_phases) */
    fitter f = {.net = net, .cfg = *cfg, .t = t, .budget = budget_bytes, .out = out,
                .lowest_of_fixed_set = lowest_of_fixed_set(t, batch) && t->host_budget_bytes <= 0,
                .one_plan = one_plan(t, batch), .progress = progress, .index = index,
                .shown = shown, .batch = batch, .keep = keep, .from = from};
    f.cfg.reuse_phases = batch;
    /* (a host limit: the strategy's own choice, the lowest device peak, must keep within it too,
     * which a plan of the fixed set fitting with room to spare does not prove) */
    choice start = {.bn = cfg->bn, .at = {.peak = INT64_MAX, .fits = false}};
    f.strict = true;
    if (seed && !batch)
        start = *seed, start.spec.strategy = t->strategy;
    else if (t->has_hint)
        start.spec = t->hint, start.bn = t->hint_bn;
    else
        LR_TRY(choose(&f, cfg->batch, &start));
    f.strict = false;
    answer->h = 0;
    lr_status st = batch ? max_batch(&f, &start, out) : max_input(&f, &start, out, answer);
    tell(&f, FIT_ANSWERED, 0, NULL);
    return st;
}

static void merge(fit_result *out, const fit_result *batch, const fit_result *input)
{
    *out = *batch;
    out->max_square_input = input->max_square_input;
    out->host_bytes_at_max_input = input->host_bytes_at_max_input;
    out->offload_at_max_input = input->offload_at_max_input;
    out->min_square_input = input->min_square_input;
    out->input_step = input->input_step;
    out->input_at_limit = input->input_at_limit;
    out->n_evals += input->n_evals;
    out->n_choices += input->n_choices;
}

lr_status fit_run(const net_t *net, const plan_config *cfg, const fit_target *t,
                  int64_t budget_bytes, fit_result *out)
{
    return fit_run_all(net, cfg, t, 1, budget_bytes, out, NULL, NULL);
}

/* The single-stage strategy of a hybrid asked without --rows (STRAT_COUNT: none). Its plan at its
 * largest input is a plan of the hybrid (one stage) and at high resolution the hybrid's own
 * choice, so the hybrid's input question starts there (fit_one's seed) instead of at the net's
 * size, from where its rounds went through plans of several stages and then through N one step
 * at a time, two choices a round, each choice a hundred milliseconds or more (resnet101 --fit
 * h100-80gb: overl-h 8 choices for the input, 2 from overl's answer; the whole fit 2.1 s, 1.55 s
 * after). Near the boundary the hybrid's choice flips between near-tied plans, so "fits at x,
 * not at x + 1" can hold at more than one x, and the start decides which is found: of 21 fits
 * diffed, the answers moved in 12, by at most 0.5% either way (resnet101 2ps-h 31296 to 31248,
 * resnet50 43488 to 43520) but for vgg16 --batch 64 --offload auto's 2ps-h, 1410479 to 1436279. */
static plan_strategy single_of(const fit_target *t)
{
    return t->req.rows > 0 ? STRAT_COUNT : strategy_single_of(t->strategy);
}

/* The target among t[0, n) whose input question seeds t[k]'s (-1: none). */
static int seed_of(const fit_target *t, int n, int k)
{
    plan_strategy one = single_of(&t[k]);
    for (int j = 0; j < n && one != STRAT_COUNT; j++)
        if (t[j].strategy == one && t[j].req.rows == 0 && t[j].req.region_end == t[k].req.region_end &&
            t[j].host_budget_bytes == t[k].host_budget_bytes)
            return j;
    return -1;
}

lr_status fit_run_all(const net_t *net, const plan_config *cfg, const fit_target *t, int n,
                      int64_t budget_bytes, fit_result *out, fit_progress progress, void *ctx)
{
    /* t, then the single-stage strategies of hybrids whose own is not among t: asked only their
     * input question, whose answer seeds the hybrid's and is not reported (so a hybrid's answer
     * does not depend on what else is asked) */
    size_t most = (size_t)(2 * n > 0 ? 2 * n : 1);
    fit_target *all = malloc(sizeof *all * most);
    fit_result *half = calloc(2 * most, sizeof *half);
    lr_outcome *st = calloc(2 * most, sizeof *st);
    choice *answer = calloc(2 * most, sizeof *answer);
    int *order = malloc(sizeof *order * 2 * most), *seed = malloc(sizeof *seed * most);
    if (!all || !half || !st || !answer || !order || !seed) {
        free(all), free(half), free(st), free(answer), free(order), free(seed);
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    }
    int m = n;
    memcpy(all, t, sizeof *all * (size_t)n);
    for (int k = 0; k < n; k++)
        if (single_of(&t[k]) != STRAT_COUNT && seed_of(all, m, k) < 0) {
            all[m] = t[k];
            all[m].strategy = single_of(&t[k]);
            all[m].has_hint = false;
            m++;
        }
    for (int k = 0; k < m; k++)
        seed[k] = seed_of(all, m, k);
    /* the costliest first, so that the short ones fill the gaps at the end: the input questions
     * that seed a hybrid's, each with the hybrid's right after it on the same thread (it waited
     * for every unseeded question before: at resnet101 --batch 256 --fit h100-80gb one thread sat
     * idle about 60 ms), then the hybrids' batch questions, then the other input questions, then
     * the other batch questions, each group from the last target */
    bool *seeds = calloc((size_t)m, sizeof *seeds);
    LR_ASSERT(seeds != NULL);
    for (int k = 0; k < n; k++)
        if (seed[k] >= 0)
            seeds[seed[k]] = true;
    int tasks = 0;
    for (int group = 0; group < 4; group++)
        for (int k = 2 * m - 1; k >= 0; k--) {
            bool input = k % 2 == 1, hybrid = single_of(&all[k / 2]) != STRAT_COUNT;
            bool in_group = group == 0   ? input && seeds[k / 2]
                            : group == 1 ? !input && hybrid
                            : group == 2 ? input && !seeds[k / 2] && seed[k / 2] < 0
                                         : !input && !hybrid;
            if (in_group && (input || k / 2 < n))
                order[tasks++] = k;
        }
    progress_state p = {.fn = progress, .ctx = ctx, .total = 2 * n};
#pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < tasks; i++) {
        int k = order[i];
        /* a seed's choices, kept for the hybrid's input question (seed_cache) when both are
         * asked without --region */
        seed_cache kept = {0};
        bool keep = k % 2 == 1 && seeds[k / 2] && all[k / 2].req.region_end == 0;
        for (int q = -1; q < 2 * n; q += 2) { /* k (q = -1), then the input questions k seeds */
            if (q >= 0 && (k % 2 == 0 || seed[q / 2] != k / 2))
                continue;
            int x = q < 0 ? k : q;
            const choice *from = q >= 0 && answer[k].h > 0 ? &answer[k] : NULL;
            lr_outcome_set(&st[x], fit_one(net, cfg, &all[x / 2], budget_bytes, x % 2 == 0, from,
                                           keep && q < 0 ? &kept : NULL,
                                           keep && q >= 0 ? &kept : NULL, progress ? &p : NULL,
                                           x / 2, x / 2 < n, &half[x], &answer[x]));
        }
        seed_cache_free(&kept);
    }
    free(seeds);
    lr_status r = LR_OK;
    for (int k = 0; k < 2 * n && r == LR_OK; k++) /* (a seed that failed seeds nothing) */
        r = lr_outcome_report(&st[k]);
    for (int k = 0; k < n && r == LR_OK; k++)
        merge(&out[k], &half[2 * k], &half[2 * k + 1]);
    free(all), free(half), free(st), free(answer), free(order), free(seed);
    return r;
}
