/* pytorch_fit.c - the PyTorch profile searched: checkpoint's segment choice, --fit's largest
 * batch and input, and auto's least recompute within a budget (see pytorch_fit.h).
 *
 * Legend: N batch, H input height (= width), x the searched value (a batch, or the index of an
 * accepted input size: H = min + (x - 1) * step), S segments, U checkpoint units.
 * Deliberately not here: the profile itself (pytorch*.c), lrcnn's own fit (fit.c).
 */
#include "pytorch_fit.h"

#include <stdlib.h>
#include <string.h>

#include "auto.h"

/* ------------------------------------------------------------------ one configuration */

/* FLOPs of the measured step's RUN steps, all of them and the recompute's. */
static void step_flops(const sched_t *s, pytorch_eval *out)
{
    for (int i = s->step_begin; i < s->step_end; i++) {
        const sched_step *st = &s->steps[i];
        if (st->op != STEP_RUN)
            continue;
        out->step_flops += st->flops;
        if (st->pass == PASS_RECOMPUTE)
            out->recompute_flops += st->flops;
    }
}

lr_status pytorch_evaluate(const net_t *net, const plan_config *cfg, const pytorch_profile *p,
                           pytorch_eval *out)
{
    memset(out, 0, sizeof *out);
    sched_t s;
    sched_init(&s);
    lr_status st = pytorch_emit(net, cfg, p, &s);
    if (st == LR_OK)
        st = pytorch_predict(&s, ALLOC_CACHING, &p->alloc, &out->pred);
    if (st == LR_OK)
        step_flops(&s, out);
    sched_free(&s);
    return st;
}

/* a is better than b: the lower reserved peak, then the lower allocated peak. */
static bool lower_peak(const pytorch_eval *a, const pytorch_eval *b)
{
    if (a->pred.max_reserved != b->pred.max_reserved)
        return a->pred.max_reserved < b->pred.max_reserved;
    return a->pred.max_allocated < b->pred.max_allocated;
}

static lr_status units_at_least_two(const net_t *net, pytorch_units form, int *units)
{
    *units = pytorch_checkpoint_units(net, form, NULL, 0);
    if (*units < 2)
        return lr_fail(LR_ERR_INPUT,
                       "%s has %d checkpoint unit(s) with --checkpoint-units %s; "
                       "checkpoint_sequential needs 2",
                       net->name, *units, pytorch_units_name(form));
    return LR_OK;
}

lr_status pytorch_choose_segments(const net_t *net, const plan_config *cfg,
                                  const pytorch_profile *p, int *segments, pytorch_eval *out)
{
    int units;
    LR_TRY(units_at_least_two(net, p->units, &units));
    pytorch_profile q = *p;
    for (int s = 2; s <= units; s++) {
        pytorch_eval ev;
        q.segments = s;
        LR_TRY(pytorch_evaluate(net, cfg, &q, &ev));
        if (s == 2 || lower_peak(&ev, out)) {
            *out = ev;
            *segments = s;
        }
    }
    return LR_OK;
}

/* ------------------------------------------------------------------ fits(N, H) */

typedef struct {
    const net_t *net; /* at the input being asked about */
    plan_config cfg;
    const pytorch_fit_target *t;
    int seg;          /* the segment count evaluated: 0 for column */
    int64_t budget;
    fit_result *out;
    bool strict;      /* the starting point: its errors are the caller's */
    net_t *copy;      /* the input question: the net reshaped */
    int min, step;
} pt_fitter;

typedef struct {
    int64_t reserved;
    bool uncountable; /* the profile cannot count this size: it does not fit, nor anything above */
} pt_point;

static bool fits(const pt_fitter *f, const pt_point *p)
{
    return !p->uncountable && p->reserved <= f->budget;
}

/* f->seg at batch N on f->net. An input error away from the starting point (counts the profile
 * cannot form) makes the point uncountable. */
static lr_status eval_batch(pt_fitter *f, int batch, pt_point *p)
{
    plan_config cfg = f->cfg;
    cfg.batch = batch;
    pytorch_profile q = f->t->profile;
    q.segments = f->seg;
    *p = (pt_point){.reserved = INT64_MAX, .uncountable = true};
    if (cost_check_limits(f->net, batch, 8, 16) != LR_OK)
        return LR_OK;
    pytorch_eval ev;
    f->out->n_evals++;
    lr_status st = pytorch_evaluate(f->net, &cfg, &q, &ev);
    if (st == LR_ERR_INPUT && !f->strict)
        return LR_OK;
    LR_TRY(st);
    *p = (pt_point){.reserved = ev.pred.max_reserved, .uncountable = false};
    return LR_OK;
}

typedef lr_status (*eval_fn)(pt_fitter *f, int64_t x, pt_point *p);

static lr_status batch_at(pt_fitter *f, int64_t x, pt_point *p)
{
    return eval_batch(f, (int)x, p);
}

static lr_status input_at(pt_fitter *f, int64_t x, pt_point *p)
{
    int64_t h = f->min + (x - 1) * f->step;
    *p = (pt_point){.reserved = INT64_MAX, .uncountable = true};
    if (h > FIT_MAX_INPUT || net_reshape(f->copy, (int)h, (int)h) != LR_OK)
        return LR_OK;
    f->net = f->copy;
    return eval_batch(f, 1, p);
}

/* The largest x in [1, limit] that fits with f->seg, lo fitting already (0: nothing known):
 * doubling up from `from` while it fits, halving down while it does not, then bisecting.
 * *at_limit: the answer is limit, or the next value cannot be counted. */
static lr_status boundary(pt_fitter *f, eval_fn fn, int64_t lo, int64_t from, int64_t limit,
                          int64_t *answer, bool *at_limit)
{
    int64_t hi = limit + 1, x = from <= lo ? lo + 1 : from > limit ? limit : from;
    bool hi_uncountable = false;
    pt_point p;
    while (hi - lo > 1) {
        LR_TRY(fn(f, x, &p));
        f->strict = false;
        bool ok = fits(f, &p);
        if (ok)
            lo = x;
        else
            hi = x, hi_uncountable = p.uncountable;
        if (ok && hi == limit + 1 && lo <= limit / 2)
            x = 2 * lo; /* still rising: double */
        else if (!ok && lo == 0 && hi > 1)
            x = hi / 2; /* still falling: halve */
        else
            x = lo + (hi - lo) / 2;
    }
    *answer = lo;
    *at_limit = lo > 0 && (lo == limit || hi_uncountable);
    return LR_OK;
}

/* checkpoint's own choice at x: the count with the lowest reserved peak. */
static lr_status choose_at(pt_fitter *f, eval_fn fn, int64_t x, int units)
{
    int64_t best = INT64_MAX;
    int chosen = 2;
    f->out->n_choices++;
    for (int s = 2; s <= units; s++) {
        pt_point p;
        f->seg = s;
        LR_TRY(fn(f, x, &p));
        if (p.reserved < best)
            best = p.reserved, chosen = s;
    }
    f->seg = chosen;
    return LR_OK;
}

/* The largest x that fits. Column, or a fixed count: one boundary search. Checkpoint's own
 * choice fits where some count does: rounds of a boundary search with one count (the lowest
 * reserved peak at the start), then every other count one past that boundary; a count that
 * fits there carries the search on above it, and when none does the boundary is the answer
 * (each count assumed monotone, as fits() is). */
static lr_status search(pt_fitter *f, eval_fn fn, int64_t from, int64_t limit, int64_t *answer,
                        bool *at_limit)
{
    const pytorch_profile *p = &f->t->profile;
    f->seg = !f->t->checkpoint ? 0 : p->segments >= 2 ? p->segments : -1;
    if (f->seg >= 0)
        return boundary(f, fn, 0, from, limit, answer, at_limit);
    int units;
    LR_TRY(units_at_least_two(f->net, p->units, &units));
    LR_TRY(choose_at(f, fn, from < limit ? from : limit, units));
    int64_t lo = 0;
    for (;;) {
        LR_TRY(boundary(f, fn, lo, from, limit, answer, at_limit));
        if (*answer >= limit)
            return LR_OK;
        int held = f->seg;
        bool moved = false;
        for (int s = 2; s <= units && !moved; s++) {
            pt_point q;
            f->seg = s;
            if (s != held)
                LR_TRY(fn(f, *answer + 1, &q));
            moved = s != held && fits(f, &q);
        }
        if (!moved) {
            f->seg = held;
            return LR_OK;
        }
        lo = from = *answer + 1;
    }
}

/* The smallest square input the net accepts, up to its own size, and the step to the next
 * accepted size (within 64): tiny-mix's concat takes even sizes only. */
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

static lr_status max_input(pt_fitter *f, fit_result *out)
{
    const net_t *own = f->net;
    LR_TRY(auto_subnet(own, 0, &f->copy));
    int h0 = own->nodes[0].h > own->nodes[0].w ? own->nodes[0].h : own->nodes[0].w;
    accepted_sizes(f->copy, h0, &f->min, &f->step);
    out->min_square_input = f->min;
    out->input_step = f->step;
    lr_status st = LR_OK;
    int64_t x = 0;
    if (f->min) {
        int64_t limit = (FIT_MAX_INPUT - f->min) / f->step + 1;
        st = search(f, input_at, (h0 - f->min) / f->step + 1, limit, &x, &out->input_at_limit);
    }
    out->max_square_input = x ? (int)(f->min + (x - 1) * f->step) : 0;
    f->net = own;
    net_free(f->copy);
    f->copy = NULL;
    return st;
}

lr_status pytorch_fit_run(const net_t *net, const plan_config *cfg, const pytorch_fit_target *t,
                          int64_t budget_bytes, fit_result *out)
{
    memset(out, 0, sizeof *out);
    if (budget_bytes <= 0 || budget_bytes >= FIT_MAX_BUDGET_BYTES)
        return lr_fail(LR_ERR_USAGE, "--fit: expected a budget above the reserve and below 1 PiB");
    out->budget_bytes = budget_bytes;
    pt_fitter f = {.net = net, .cfg = *cfg, .t = t, .budget = budget_bytes, .out = out,
                   .strict = true};
    int64_t b;
    LR_TRY(search(&f, batch_at, cfg->batch, FIT_MAX_BATCH, &b, &out->batch_at_limit));
    out->max_batch = (int)b;
    f.strict = true;
    return max_input(&f, out);
}

/* ------------------------------------------------------------------ auto */

static lr_status add_candidate(pytorch_auto_result *r, int cap, const net_t *net,
                               const plan_config *cfg, const pytorch_profile *q, int64_t budget)
{
    LR_ASSERT(r->n < cap);
    pytorch_auto_candidate *c = &r->c[r->n];
    c->segments = q->segments;
    c->units = q->units;
    LR_TRY(pytorch_evaluate(net, cfg, q, &c->ev));
    c->fits = c->ev.pred.max_reserved <= budget;
    c->alloc_retries = 0;
    if (!c->fits) { /* does the allocator get by when it flushes its cache? */
        pytorch_profile limited = *q;
        pytorch_eval ev;
        limited.alloc.limit_bytes = budget;
        LR_TRY(pytorch_evaluate(net, cfg, &limited, &ev));
        c->fits = ev.pred.oom_step < 0;
        c->alloc_retries = ev.pred.alloc_retries;
    }
    r->n++;
    return LR_OK;
}

/* How well a candidate fits: 2 its reserved peak does, 1 it gets by with cache flushes, 0 no. */
static int fit_tier(const pytorch_auto_candidate *c)
{
    return !c->fits ? 0 : c->alloc_retries == 0 ? 2 : 1;
}

/* c is a better answer than the best so far: the better tier, then the least recompute, then
 * fewer cache flushes, then the lower peak. */
static bool better(const pytorch_auto_candidate *c, const pytorch_auto_candidate *best)
{
    if (fit_tier(c) != fit_tier(best))
        return fit_tier(c) > fit_tier(best);
    if (c->fits && c->ev.recompute_flops != best->ev.recompute_flops)
        return c->ev.recompute_flops < best->ev.recompute_flops;
    if (c->fits && c->alloc_retries != best->alloc_retries)
        return c->alloc_retries < best->alloc_retries;
    return lower_peak(&c->ev, &best->ev);
}

lr_status pytorch_auto(const net_t *net, const plan_config *cfg, const pytorch_profile *base,
                       int64_t budget_bytes, pytorch_auto_result *out)
{
    memset(out, 0, sizeof *out);
    int units[PT_UNITS_COUNT], cap = 1;
    for (int u = 0; u < PT_UNITS_COUNT; u++) {
        units[u] = pytorch_checkpoint_units(net, (pytorch_units)u, NULL, 0);
        cap += units[u] > 1 ? units[u] - 1 : 0;
    }
    out->c = calloc((size_t)cap, sizeof *out->c);
    if (!out->c)
        return lr_fail(LR_ERR_NOMEM, "auto: out of memory for %d candidates", cap);
    pytorch_profile q = *base;
    q.segments = 0;
    LR_TRY(add_candidate(out, cap, net, cfg, &q, budget_bytes));
    for (int u = 0; u < PT_UNITS_COUNT; u++)
        for (int s = 2; s <= units[u]; s++) {
            q.units = (pytorch_units)u;
            q.segments = s;
            LR_TRY(add_candidate(out, cap, net, cfg, &q, budget_bytes));
        }
    for (int i = 1; i < out->n; i++)
        if (better(&out->c[i], &out->c[out->best]))
            out->best = i;
    return LR_OK;
}

void pytorch_auto_free(pytorch_auto_result *r)
{
    free(r->c);
    r->c = NULL;
    r->n = 0;
}
