/* test_auto.c - `--strategy auto` and `--fit`: auto meets its budget or compute cap and is never
 * worse than a fixed strategy under the same constraint; its stage model predicts the closed form
 * to the byte; exact BN never gets an approximate plan; a budget nothing meets reports the
 * shortfall; the closed form equals the replay for auto's plan; --fit's answers sit exactly on the
 * boundary (fits at the answer, not one past it, with the plan the strategy chooses there); named
 * cards and the flags parse; the JSON has the documented keys.
 *
 * Legend: B the largest batch, H the largest square input, X a compute cap (x column).
 * Deliberately not here: timings (bench/plan_speed.c), the fixed strategies' own numbers
 * (test_plan.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "support.h"
#include <json-c/json.h>

#include "fit.h"
#include "sim.h"
#include "sim_cli.h"

#define GiB ((int64_t)1 << 30)
#define MiB ((int64_t)1 << 20)

/* ------------------------------------------------------------------ helpers */

static plan_config config(int batch, plan_bn bn)
{
    plan_config c = {.batch = batch, .dtype = DT_FP32, .optim = OPTIM_MOMENTUM, .bn = bn};
    return c;
}

static auto_result run_auto(const net_t *net, const plan_config *cfg, double cap, int64_t budget)
{
    auto_request req = {.max_overhead = cap, .budget_bytes = budget};
    auto_result r;
    if (auto_search(net, cfg, &req, &r) != LR_OK)
        fail_msg("%s: auto_search: %s", net->name, lr_last_error());
    return r;
}

static plan_choice choose(const net_t *net, const plan_config *cfg, plan_strategy st)
{
    plan_request req = {.strategy = st};
    plan_choice c;
    if (strategy_choose(net, cfg, &req, &c) != LR_OK)
        fail_msg("%s %s: strategy_choose: %s", net->name, plan_strategy_name(st), lr_last_error());
    return c;
}

static bool within_cap(int64_t flops, int64_t col_flops, double cap)
{
    return flops <= (int64_t)(cap * (double)col_flops);
}

static int bn_layers(const net_t *net, int from, int to)
{
    int n = 0;
    for (int l = from + 1; l <= to; l++)
        n += net->nodes[l].op == OP_BATCHNORM;
    return n;
}

typedef struct {
    const char *net;
    int batch;
} net_case;

static const net_case zoo_cases[] = {
    {"tiny-vgg", 32}, {"tiny-resnet", 32}, {"tiny-mix", 32}, {"alexnet", 64},
    {"vgg16", 256},   {"resnet18", 64},    {"resnet50", 256},
};
#define N_ZOO (int)(sizeof zoo_cases / sizeof zoo_cases[0])

/* ------------------------------------------------------------------ auto */

/* Budgets from generous to impossible: every answer that fits is within the budget (and the cap
 * when both are given), and its recorded cost is the closed form of its plan. (The largest nets
 * skip the two tightest budgets, the slowest searches: ResNet-18 covers them.) */
static void test_auto_never_exceeds_the_budget(void **state)
{
    const double shares[] = {0.9, 0.5, 0.3, 0.15, 0.02};
    for (int k = 0; k < N_ZOO; k++) {
        net_t *net = test_zoo(zoo_cases[k].net);
        bool large = strcmp(net->name, "resnet50") == 0 || strcmp(net->name, "vgg16") == 0;
        for (int bn = 0; bn < BN_COUNT; bn++) {
            plan_config cfg = config(zoo_cases[k].batch, (plan_bn)bn);
            int64_t col = choose(net, &cfg, STRAT_COLUMN).cost.peak_bytes;
            for (size_t q = 0; q < (large ? 3 : sizeof shares / sizeof shares[0]); q++) {
                int64_t budget = (int64_t)(shares[q] * (double)col);
                auto_result r = run_auto(net, &cfg, q == 1 ? 2.0 : 0, budget);
                if (r.best.fits)
                    assert_true(r.best.cost.peak_bytes <= budget);
                if (r.best.fits && q == 1)
                    assert_true(within_cap(r.best.cost.flops, r.column_flops, 2.0));
                plan_config own = cfg;
                own.bn = r.best.bn;
                plan_cost again;
                assert_int_equal(strategy_evaluate(net, &own, &r.best.spec, &again), LR_OK);
                assert_int_equal(again.peak_bytes, r.best.cost.peak_bytes);
                assert_int_equal(again.flops, r.best.cost.flops);
            }
        }
        net_free(net);
    }
}

/* Under a compute cap the answer's compute is within it (column always is, so it fits). */
static void test_auto_respects_the_overhead_cap(void **state)
{
    const double caps[] = {1.0, 1.05, 1.3, 1.5, 4.0};
    for (int k = 0; k < N_ZOO; k++) {
        net_t *net = test_zoo(zoo_cases[k].net);
        plan_config cfg = config(zoo_cases[k].batch, BN_STRIPE);
        for (size_t q = 0; q < sizeof caps / sizeof caps[0]; q++) {
            auto_result r = run_auto(net, &cfg, caps[q], 0);
            assert_true(r.best.fits);
            assert_true(r.minimise_peak);
            assert_true(within_cap(r.best.cost.flops, r.column_flops, caps[q]));
            assert_true(r.best.cost.peak_bytes <= r.column_peak);
        }
        net_free(net);
    }
}

/* Neither flag: the default cap of 1.5 applies. */
static void test_auto_default_is_a_cap_of_one_and_a_half(void **state)
{
    net_t *net = test_zoo("resnet18");
    plan_config cfg = config(64, BN_EXACT);
    auto_result r = run_auto(net, &cfg, 0, 0);
    assert_true(r.minimise_peak);
    assert_true(r.max_overhead == AUTO_DEFAULT_OVERHEAD);
    assert_true(within_cap(r.best.cost.flops, r.column_flops, 1.5));
    net_free(net);
}

/* auto searches a space holding every fixed strategy's plan, so under the same cap its peak is
 * at most the best fixed peak within the cap, and under a budget its compute at most that of any
 * fixed strategy that fits. */
static void test_auto_is_never_worse_than_a_fixed_strategy(void **state)
{
    const double caps[] = {1.1, 1.3, 1.5, 3.0, 12.0};
    for (int k = 0; k < N_ZOO; k++) {
        net_t *net = test_zoo(zoo_cases[k].net);
        for (int bn = 0; bn < BN_COUNT; bn++) {
            plan_config cfg = config(zoo_cases[k].batch, (plan_bn)bn);
            plan_choice fixed[STRAT_COUNT];
            for (int st = 0; st < STRAT_COUNT; st++)
                fixed[st] = choose(net, &cfg, (plan_strategy)st);
            int64_t col = fixed[STRAT_COLUMN].cost.flops;
            for (size_t q = 0; q < sizeof caps / sizeof caps[0]; q++) {
                auto_result r = run_auto(net, &cfg, caps[q], 0);
                for (int st = 0; st < STRAT_COUNT; st++)
                    if (within_cap(fixed[st].cost.flops, col, caps[q]) &&
                        r.best.cost.peak_bytes > fixed[st].cost.peak_bytes)
                        fail_msg("%s bn %s cap %.2f: auto %lld > %s %lld", net->name,
                                 plan_bn_name((plan_bn)bn), caps[q], (long long)r.best.cost.peak_bytes,
                                 plan_strategy_name((plan_strategy)st), (long long)fixed[st].cost.peak_bytes);
            }
            for (int st = 0; st < STRAT_COUNT; st++) { /* budget = that strategy's own peak */
                auto_result r = run_auto(net, &cfg, 0, fixed[st].cost.peak_bytes);
                assert_true(r.best.fits);
                if (r.best.cost.flops > fixed[st].cost.flops)
                    fail_msg("%s bn %s budget of %s: auto %lld flops > %lld", net->name,
                             plan_bn_name((plan_bn)bn), plan_strategy_name((plan_strategy)st),
                             (long long)r.best.cost.flops, (long long)fixed[st].cost.flops);
            }
        }
        net_free(net);
    }
}

/* --overhead-by time: compute is the predicted step time on a card. The answer's time is within
 * the cap, no fixed strategy within the cap has a lower peak, under a budget no fixed strategy
 * that fits is faster, and the stage model predicts the closed form's time exactly (time adds
 * up over a plan's phases like FLOPs). */
static void test_auto_by_time_meets_the_cap_and_beats_fixed_strategies(void **state)
{
    const double caps[] = {1.1, 1.5, 3.0};
    const char *nets[] = {"tiny-vgg", "tiny-resnet", "tiny-mix", "vgg16", "resnet18"};
    const int batches[] = {32, 32, 32, 64, 64};
    for (int k = 0; k < 5; k++) {
        net_t *net = test_zoo(nets[k]);
        for (int bn = 0; bn < BN_COUNT; bn++) {
            plan_config cfg = config(batches[k], (plan_bn)bn);
            cfg.device = device_find("h100-80gb");
            plan_choice fixed[STRAT_COUNT];
            for (int st = 0; st < STRAT_COUNT; st++)
                fixed[st] = choose(net, &cfg, (plan_strategy)st);
            int64_t col = fixed[STRAT_COLUMN].cost.step_ns;
            for (size_t q = 0; q < sizeof caps / sizeof caps[0]; q++) {
                auto_request req = {.max_overhead = caps[q], .by_time = true};
                auto_result r;
                assert_int_equal(auto_search(net, &cfg, &req, &r), LR_OK);
                assert_true(r.by_time && r.best.fits);
                assert_int_equal(r.model_misses, 0);
                assert_int_equal(r.column_ns, col);
                assert_true(within_cap(r.best.cost.step_ns, col, caps[q]));
                for (int st = 0; st < STRAT_COUNT; st++)
                    if (within_cap(fixed[st].cost.step_ns, col, caps[q]) &&
                        r.best.cost.peak_bytes > fixed[st].cost.peak_bytes)
                        fail_msg("%s bn %s time cap %.2f: auto %lld > %s %lld", net->name,
                                 plan_bn_name((plan_bn)bn), caps[q], (long long)r.best.cost.peak_bytes,
                                 plan_strategy_name((plan_strategy)st), (long long)fixed[st].cost.peak_bytes);
            }
            for (int st = 0; st < STRAT_COUNT; st++) {
                auto_request req = {.budget_bytes = fixed[st].cost.peak_bytes, .by_time = true};
                auto_result r;
                assert_int_equal(auto_search(net, &cfg, &req, &r), LR_OK);
                assert_true(r.best.fits);
                assert_int_equal(r.model_misses, 0);
                if (r.best.cost.step_ns > fixed[st].cost.step_ns)
                    fail_msg("%s bn %s budget of %s: auto %lld ns > %lld", net->name,
                             plan_bn_name((plan_bn)bn), plan_strategy_name((plan_strategy)st),
                             (long long)r.best.cost.step_ns, (long long)fixed[st].cost.step_ns);
            }
        }
        net_free(net);
    }
}

/* Time as the measure needs a device to time on. */
static void test_auto_by_time_needs_a_device(void **state)
{
    net_t *net = test_zoo("tiny-vgg");
    plan_config cfg = config(8, BN_EXACT);
    auto_request req = {.max_overhead = 1.5, .by_time = true};
    auto_result r;
    assert_int_equal(auto_search(net, &cfg, &req, &r), LR_ERR_USAGE);
    assert_non_null(strstr(lr_last_error(), "--device"));
    net_free(net);
}

/* The same at high resolution, where the single-stage strategies choose N in the hundreds:
 * auto's whole-region stage is searched as they search it (strategy_search_parts). */
static void test_auto_is_never_worse_at_high_resolution(void **state)
{
    net_t *net = test_zoo("vgg16");
    assert_int_equal(net_reshape(net, 4096, 4096), LR_OK);
    plan_config cfg = config(1, BN_EXACT);
    plan_choice fixed[STRAT_COUNT];
    for (int st = 0; st < STRAT_COUNT; st++)
        fixed[st] = choose(net, &cfg, (plan_strategy)st);
    assert_true(fixed[STRAT_OVERL].spec.parts[0] > 32);
    const double caps[] = {1.5, 12.0};
    for (int q = 0; q < 2; q++) {
        auto_result r = run_auto(net, &cfg, caps[q], 0);
        for (int st = 0; st < STRAT_COUNT; st++)
            if (within_cap(fixed[st].cost.flops, fixed[STRAT_COLUMN].cost.flops, caps[q]) &&
                r.best.cost.peak_bytes > fixed[st].cost.peak_bytes)
                fail_msg("cap %.1f: auto %lld > %s %lld", caps[q], (long long)r.best.cost.peak_bytes,
                         plan_strategy_name((plan_strategy)st), (long long)fixed[st].cost.peak_bytes);
        assert_int_equal(r.model_misses, 0);
    }
    net_free(net);
}

/* The search is exact because the stage model is: every plan it evaluated had the closed-form
 * peak and compute the model predicted. */
static void test_stage_model_predicts_the_closed_form(void **state)
{
    for (int k = 0; k < N_ZOO; k++) {
        net_t *net = test_zoo(zoo_cases[k].net);
        for (int bn = 0; bn < BN_COUNT; bn++) {
            plan_config cfg = config(zoo_cases[k].batch, (plan_bn)bn);
            assert_int_equal(run_auto(net, &cfg, 1.3, 0).model_misses, 0);
            assert_int_equal(run_auto(net, &cfg, 0, run_auto(net, &cfg, 2, 0).best.cost.peak_bytes).model_misses, 0);
        }
        net_free(net);
    }
}

/* With --bn exact nothing approximate is chosen, alternatives included. */
static void test_exact_bn_never_gets_an_approximate_plan(void **state)
{
    const char *nets[] = {"tiny-resnet", "tiny-mix", "resnet18", "resnet50"};
    for (size_t k = 0; k < sizeof nets / sizeof nets[0]; k++) {
        net_t *net = test_zoo(nets[k]);
        plan_config cfg = config(64, BN_EXACT);
        const double caps[] = {1.2, 2, 8};
        for (size_t q = 0; q < 3; q++) {
            auto_result r = run_auto(net, &cfg, caps[q], 0);
            assert_int_equal(r.best.bn, BN_EXACT);
            assert_false(r.best.approximate);
            for (int a = 0; a < r.n_alt; a++)
                assert_int_equal(r.alt[a].bn, BN_EXACT);
        }
        net_free(net);
    }
}

/* Frozen BatchNorm is the user's choice, never auto's: under --bn exact and --bn stripe no plan
 * (alternatives included) is frozen, and under --bn frozen every plan is, with a lower peak at
 * 1.5x than exact BN allows on ResNet-50 (no statistics passes to pay for). */
static void test_frozen_bn_only_when_asked_for(void **state)
{
    net_t *net = test_zoo("resnet50");
    plan_config exact = config(256, BN_EXACT), stripe = config(256, BN_STRIPE);
    plan_config frozen = config(256, BN_FROZEN);
    auto_result e = run_auto(net, &exact, 1.5, 0), s = run_auto(net, &stripe, 1.5, 0);
    auto_result f = run_auto(net, &frozen, 1.5, 0);
    for (int a = -1; a < e.n_alt; a++)
        assert_int_not_equal((a < 0 ? e.best : e.alt[a]).bn, BN_FROZEN);
    for (int a = -1; a < s.n_alt; a++)
        assert_int_not_equal((a < 0 ? s.best : s.alt[a]).bn, BN_FROZEN);
    for (int a = -1; a < f.n_alt; a++) {
        assert_int_equal((a < 0 ? f.best : f.alt[a]).bn, BN_FROZEN);
        assert_false((a < 0 ? f.best : f.alt[a]).approximate);
    }
    assert_true(f.best.fits);
    assert_true(f.best.cost.peak_bytes < e.best.cost.peak_bytes);
    net_free(net);
}

/* With --bn stripe allowed, ResNet-50 at 1.5x takes stripe statistics, which skip the exact
 * statistics passes, and gets a lower peak than exact allows at that cap. */
static void test_stripe_bn_allowed_may_be_chosen(void **state)
{
    net_t *net = test_zoo("resnet50");
    plan_config stripe = config(256, BN_STRIPE), exact = config(256, BN_EXACT);
    auto_result s = run_auto(net, &stripe, 1.5, 0), e = run_auto(net, &exact, 1.5, 0);
    assert_int_equal(s.best.bn, BN_STRIPE);
    assert_true(s.best.approximate);
    assert_true(strategy_is_approximate(net, &stripe, &s.best.spec));
    assert_true(s.best.cost.peak_bytes < e.best.cost.peak_bytes);
    net_free(net);
}

/* Exact BN costs a statistics pass per BatchNorm per stage: the search finds that small stages
 * are what a compute cap affords. At 5x, ResNet-50's partitioned stages hold at most two blocks
 * (8 BatchNorms) where the resolution stages of 2ps-h --rows 8 hold a layer group, and auto's
 * peak is below theirs within the cap they exceed. */
static void test_exact_bn_makes_auto_partition_small_stages(void **state)
{
    net_t *net = test_zoo("resnet50");
    plan_config cfg = config(256, BN_EXACT);
    auto_result r = run_auto(net, &cfg, 5.0, 0);
    plan_request req = {.strategy = STRAT_2PS_H, .rows = 8};
    plan_choice h;
    assert_int_equal(strategy_choose(net, &cfg, &req, &h), LR_OK);
    int partitioned = 0;
    for (int s = 0, prev = 0; s < r.best.spec.n_stages; prev = r.best.spec.cut[s++])
        if (r.best.spec.parts[s] > 1) {
            partitioned++;
            assert_true(bn_layers(net, prev, r.best.spec.cut[s]) <= 8);
        }
    assert_true(partitioned > 0);
    int biggest = 0;
    for (int s = 0, prev = 0; s < h.spec.n_stages; prev = h.spec.cut[s++])
        if (h.spec.parts[s] > 1 && bn_layers(net, prev, h.spec.cut[s]) > biggest)
            biggest = bn_layers(net, prev, h.spec.cut[s]);
    assert_true(biggest > 8);
    assert_true(r.best.cost.peak_bytes < h.cost.peak_bytes);
    assert_true(within_cap(r.best.cost.flops, r.column_flops, 5.0));
    assert_false(within_cap(h.cost.flops, r.column_flops, 5.0));
    net_free(net);
}

/* A budget below anything possible: not an error; the answer is the lowest peak within the
 * compute cap (here none: the lowest overall), and the shortfall is its distance to the budget. */
static void test_a_budget_nothing_meets_reports_the_shortfall(void **state)
{
    net_t *net = test_zoo("resnet18");
    plan_config cfg = config(64, BN_STRIPE);
    int64_t budget = 64 * MiB;
    auto_result r = run_auto(net, &cfg, 0, budget);
    assert_false(r.best.fits);
    assert_true(r.over_bytes > 0);
    assert_int_equal(r.over_bytes, r.best.cost.peak_bytes - budget);
    auto_result lowest = run_auto(net, &cfg, 1e6, 0);
    assert_int_equal(r.best.cost.peak_bytes, lowest.best.cost.peak_bytes);
    net_free(net);
    /* with a cap: the lowest peak within it, even where the checkpoint strategy's plan is lower
     * but over the cap (ResNet-50, exact BN: 7.32 GiB at 1.25x) */
    const struct {
        const char *net;
        int batch;
        double cap;
    } capped_cases[] = {{"resnet18", 64, 1.3}, {"resnet50", 256, 1.2}};
    for (int k = 0; k < 2; k++) {
        net = test_zoo(capped_cases[k].net);
        cfg = config(capped_cases[k].batch, BN_EXACT);
        double cap = capped_cases[k].cap;
        auto_result capped = run_auto(net, &cfg, cap, budget);
        assert_false(capped.best.fits);
        assert_true(within_cap(capped.best.cost.flops, capped.column_flops, cap));
        assert_int_equal(capped.best.cost.peak_bytes, run_auto(net, &cfg, cap, 0).best.cost.peak_bytes);
        assert_int_equal(capped.over_bytes, capped.best.cost.peak_bytes - budget);
        net_free(net);
    }
}

/* The schedule lrcnn emits for auto's plan replays to the closed-form peak and FLOPs. */
static void test_auto_plan_closed_form_equals_replay(void **state)
{
    for (int k = 0; k < N_ZOO; k++) {
        net_t *net = test_zoo(zoo_cases[k].net);
        for (int bn = 0; bn < BN_COUNT; bn++) {
            plan_config cfg = config(zoo_cases[k].batch, (plan_bn)bn);
            const double caps[] = {1.3, 4};
            for (int q = 0; q < 2; q++) {
                auto_result r = run_auto(net, &cfg, caps[q], 0);
                plan_config own = cfg;
                own.bn = r.best.bn;
                plan_t *plan;
                assert_int_equal(plan_build(net, &own, &r.best.spec, &plan), LR_OK);
                sched_t s;
                sched_init(&s);
                plan_emit(plan, &s);
                sim_result sr;
                assert_int_equal(sim_replay(&s, ALLOC_EXACT, &sr), LR_OK);
                assert_int_equal(sr.peak_bytes, r.best.cost.peak_bytes);
                assert_int_equal(sr.flops, r.best.cost.flops);
                sched_free(&s);
                plan_free(plan);
            }
        }
        net_free(net);
    }
}

/* ------------------------------------------------------------------ --fit */

/* fits(b) as fit.h defines it, from the strategy's (or auto's) own choice at b. */
static bool fits_at(const net_t *net, plan_config cfg, plan_strategy st, int batch, int64_t budget)
{
    cfg.batch = batch;
    if (cost_check_layers(net, batch, cost_dtype_bytes(cfg.dtype)) != LR_OK)
        return false;
    if (st == STRAT_COUNT) {
        auto_result r = run_auto(net, &cfg, AUTO_DEFAULT_OVERHEAD, 0);
        return r.best.cost.peak_bytes <= budget;
    }
    return choose(net, &cfg, st).cost.peak_bytes <= budget;
}

static fit_result fit(const net_t *net, const plan_config *cfg, plan_strategy st, int64_t budget)
{
    fit_target t;
    memset(&t, 0, sizeof t);
    t.strategy = st;
    fit_result r;
    if (fit_run(net, cfg, &t, budget, &r) != LR_OK)
        fail_msg("%s: fit_run: %s", net->name, lr_last_error());
    return r;
}

/* Auto and the hybrids refuse only what they cannot count: vgg16 at batch 1 and 40000x40000
 * (2.9e15 FLOPs a column step, past a former guard of 4096x the summed layer counts, which
 * stopped at 30279x30279) plans,
 * and at the largest input whose layers fit in 64 bits the refusal names the plan it cannot
 * count (exit 2), without overflowing on the way (the sanitizer build runs this too). */
static void test_auto_and_hybrids_refuse_only_what_they_cannot_count(void **state)
{
    (void)state;
    net_t *net = test_zoo("vgg16");
    plan_config cfg = config(1, BN_EXACT);
    const plan_strategy hybrids[] = {STRAT_2PS_H, STRAT_OVERL_H};
    const int sizes[] = {40000, 2240899};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(net_reshape(net, sizes[k], sizes[k]), LR_OK);
        assert_int_equal(cost_check_layers(net, 1, 4), LR_OK);
        auto_request req = {.max_overhead = AUTO_DEFAULT_OVERHEAD};
        auto_result r;
        lr_status st = auto_search(net, &cfg, &req, &r);
        if (k == 0) {
            assert_int_equal(st, LR_OK);
            assert_true(r.best.cost.peak_bytes < r.column_peak);
        } else {
            assert_int_equal(st, LR_ERR_INPUT);
            assert_non_null(strstr(lr_last_error(), "cannot be counted"));
        }
        for (int h = 0; h < 2; h++) {
            plan_request pr = {.strategy = hybrids[h]};
            plan_choice c;
            st = strategy_choose(net, &cfg, &pr, &c);
            assert_int_equal(st, k == 0 ? LR_OK : LR_ERR_INPUT);
            if (k == 0)
                assert_true(c.spec.n_stages >= 1 && c.cost.peak_bytes < r.column_peak);
        }
    }
    net_free(net);
}

/* A compute cap whose product with column's compute passes 2^63 (--max-overhead takes up to
 * 1e6; vgg16 at 3000x3000 computes 1.6e13 FLOPs a step) is no cap: every candidate meets it,
 * in auto and in --fit's auto. */
static void test_a_cap_past_int64_caps_nothing(void **state)
{
    (void)state;
    net_t *net = test_zoo("vgg16");
    assert_int_equal(net_reshape(net, 3000, 3000), LR_OK);
    plan_config cfg = config(1, BN_EXACT);
    auto_result r = run_auto(net, &cfg, 1e6, 0);
    assert_true((double)r.column_flops * 1e6 > 0x1p63);
    assert_true(r.best.fits);
    assert_true(r.n_alt > 0);
    for (int k = 0; k < r.n_alt; k++)
        assert_true(r.alt[k].fits);
    fit_target t;
    memset(&t, 0, sizeof t);
    t.strategy = STRAT_COUNT;
    t.areq.max_overhead = 1e6;
    fit_result f;
    int64_t budget = 4 * r.best.cost.peak_bytes;
    assert_int_equal(fit_run(net, &cfg, &t, budget, &f), LR_OK);
    assert_true(f.max_batch >= 1);
    net_free(net);
}

/* For several nets, every strategy and auto, and budgets from tight to loose: fits at B, not at
 * B + 1 (B = 0: not even at 1). */
static void test_fit_batch_is_on_the_boundary(void **state)
{
    const net_case cases[] = {{"tiny-vgg", 1}, {"tiny-mix", 1}, {"tiny-resnet", 1}, {"resnet18", 1}};
    const double multiples[] = {0.9, 3, 40};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        net_t *net = test_zoo(cases[k].net);
        for (int bn = 0; bn < BN_COUNT; bn++) {
            plan_config cfg = config(4, (plan_bn)bn);
            plan_config one = config(1, (plan_bn)bn);
            int64_t col1 = choose(net, &one, STRAT_COLUMN).cost.peak_bytes;
            for (size_t q = 0; q < sizeof multiples / sizeof multiples[0]; q++) {
                int64_t budget = (int64_t)(multiples[q] * (double)col1);
                for (int st = 0; st <= STRAT_COUNT; st++) {
                    fit_result r = fit(net, &cfg, (plan_strategy)st, budget);
                    const char *name = st < STRAT_COUNT ? plan_strategy_name((plan_strategy)st) : "auto";
                    if (r.max_batch > 0 && !fits_at(net, cfg, (plan_strategy)st, r.max_batch, budget))
                        fail_msg("%s %s: does not fit at max_batch %d", net->name, name, r.max_batch);
                    if (!r.batch_at_limit && fits_at(net, cfg, (plan_strategy)st, r.max_batch + 1, budget))
                        fail_msg("%s %s: fits at max_batch + 1 = %d", net->name, name, r.max_batch + 1);
                    if (q == 2)
                        assert_true(r.max_batch > 1);
                }
            }
        }
        net_free(net);
    }
}

/* The same at a larger scale, where the row strategies' N changes with the batch. */
static void test_fit_batch_is_on_the_boundary_for_vgg16_on_a_card(void **state)
{
    net_t *net = test_zoo("vgg16");
    plan_config cfg = config(64, BN_EXACT);
    int64_t budget = device_find("rtx4090")->bytes - FIT_DEFAULT_RESERVE_BYTES;
    for (int st = 0; st <= STRAT_COUNT; st++) {
        fit_result r = fit(net, &cfg, (plan_strategy)st, budget);
        assert_true(r.max_batch > 0);
        assert_true(fits_at(net, cfg, (plan_strategy)st, r.max_batch, budget));
        assert_false(fits_at(net, cfg, (plan_strategy)st, r.max_batch + 1, budget));
    }
    net_free(net);
}

/* overl's choices keep their stripe height at high resolution (N grows with the input), which
 * --fit's input search follows by scaling N (fit.h): on an 80 GB card resnet18's largest input
 * for overl is still on the boundary, and found in at most 10 choices (19 with N held fixed). */
static void test_fit_input_follows_an_n_that_grows_with_the_size(void **state)
{
    (void)state;
    net_t *net = test_zoo("resnet18");
    plan_config cfg = config(64, BN_EXACT);
    int64_t budget = device_find("h100-80gb")->bytes - FIT_DEFAULT_RESERVE_BYTES;
    fit_result r = fit(net, &cfg, STRAT_OVERL, budget);
    net_t *copy;
    assert_int_equal(auto_subnet(net, 0, &copy), LR_OK);
    int h = r.max_square_input;
    assert_true(h > 64);
    assert_int_equal(net_reshape(copy, h, h), LR_OK);
    assert_true(fits_at(copy, cfg, STRAT_OVERL, 1, budget));
    assert_int_equal(net_reshape(copy, h + r.input_step, h + r.input_step), LR_OK);
    assert_false(fits_at(copy, cfg, STRAT_OVERL, 1, budget));
    if (r.n_choices > 10) /* both questions, each from its own first choice */
        fail_msg("%d choices", r.n_choices);
    net_free(copy);
    net_free(net);
}

/* Square inputs at batch 1: fits at H, not at the next accepted size; tiny-mix accepts even
 * sizes only (its concat), so its step is 2. */
static void test_fit_input_is_on_the_boundary(void **state)
{
    const char *nets[] = {"tiny-vgg", "tiny-mix", "resnet18"};
    for (size_t k = 0; k < sizeof nets / sizeof nets[0]; k++) {
        net_t *net = test_zoo(nets[k]);
        plan_config cfg = config(8, BN_EXACT);
        int64_t budget = 20 * choose(net, &cfg, STRAT_COLUMN).cost.peak_bytes;
        for (int st = 0; st <= STRAT_COUNT; st++) {
            fit_result r = fit(net, &cfg, (plan_strategy)st, budget);
            assert_true(r.max_square_input >= r.min_square_input);
            if (strcmp(nets[k], "tiny-mix") == 0)
                assert_int_equal(r.input_step, 2);
            net_t *copy;
            assert_int_equal(auto_subnet(net, 0, &copy), LR_OK);
            int h = r.max_square_input;
            assert_int_equal(net_reshape(copy, h, h), LR_OK);
            if (!fits_at(copy, cfg, (plan_strategy)st, 1, budget))
                fail_msg("%s %s: max input %d does not fit", nets[k],
                         st < STRAT_COUNT ? plan_strategy_name((plan_strategy)st) : "auto", h);
            if (!r.input_at_limit && net_reshape(copy, h + r.input_step, h + r.input_step) == LR_OK &&
                fits_at(copy, cfg, (plan_strategy)st, 1, budget))
                fail_msg("%s %s: max input %d, but %d fits too", nets[k],
                         st < STRAT_COUNT ? plan_strategy_name((plan_strategy)st) : "auto", h,
                         h + r.input_step);
            net_free(copy);
        }
        net_free(net);
    }
}

/* A hybrid's input question starts from its single-stage strategy's answer (fit.c, seed_of), asked
 * beside it (before or after it) or, when it is not, on the side: the same answer either way, on
 * the boundary, and in fewer choices than from the net's own size (resnet18 at batch 32 in 7 GiB,
 * both questions: 2ps-h 6 and overl-h 6 choices, against 15 and 9 when the input question started
 * at 224x224). */
static void test_fit_hybrid_input_starts_from_its_single_stage_answer(void **state)
{
    (void)state;
    net_t *net = test_zoo("resnet18");
    plan_config cfg = config(32, BN_EXACT);
    int64_t budget = (int64_t)7 << 30;
    const plan_strategy hybrid[] = {STRAT_2PS_H, STRAT_OVERL_H}, single[] = {STRAT_2PS, STRAT_OVERL};
    for (int k = 0; k < 2; k++) {
        fit_result alone = fit(net, &cfg, hybrid[k], budget), both[2];
        fit_target t[2];
        memset(t, 0, sizeof t);
        t[0].strategy = single[k], t[1].strategy = hybrid[k];
        assert_int_equal(fit_run_all(net, &cfg, t, 2, budget, both, NULL, NULL), LR_OK);
        assert_int_equal(alone.max_square_input, both[1].max_square_input);
        assert_int_equal(alone.max_batch, both[1].max_batch);
        /* the hybrid asked before its seed's target: the same */
        fit_target back[2] = {t[1], t[0]};
        fit_result rev[2];
        assert_int_equal(fit_run_all(net, &cfg, back, 2, budget, rev, NULL, NULL), LR_OK);
        assert_int_equal(rev[0].max_square_input, both[1].max_square_input);
        assert_int_equal(rev[0].max_batch, both[1].max_batch);
        assert_int_equal(rev[1].max_square_input, both[0].max_square_input);
        if (alone.n_choices > 7) /* both questions; the seed's own choices are its target's */
            fail_msg("%s: %d choices", plan_strategy_name(hybrid[k]), alone.n_choices);
        net_t *copy;
        assert_int_equal(auto_subnet(net, 0, &copy), LR_OK);
        int h = alone.max_square_input;
        assert_true(h > 64);
        assert_int_equal(net_reshape(copy, h, h), LR_OK);
        assert_true(fits_at(copy, cfg, hybrid[k], 1, budget));
        assert_int_equal(net_reshape(copy, h + 1, h + 1), LR_OK);
        assert_false(fits_at(copy, cfg, hybrid[k], 1, budget));
        net_free(copy);
    }
    net_free(net);
}

/* --offload input: auto's stage model stays exact (its persistent bytes leave the input out for
 * plans with a stage, column keeps it), auto's answer is the closed form of its plan, and --fit's
 * largest input sits on the boundary with the input in host memory. */
static void test_offloaded_input_in_auto_and_fit(void **state)
{
    const char *nets[] = {"tiny-vgg", "tiny-resnet", "tiny-mix", "resnet18"};
    for (size_t k = 0; k < sizeof nets / sizeof nets[0]; k++) {
        net_t *net = test_zoo(nets[k]);
        for (int bn = 0; bn < 2; bn++) {
            plan_config cfg = config(16, (plan_bn)bn);
            cfg.offload = bn ? OFFLOAD_INPUT : OFFLOAD_INPUT | OFFLOAD_BOUNDARY;
            auto_result capped = run_auto(net, &cfg, 1.3, 0);
            auto_result budget = run_auto(net, &cfg, 0, capped.best.cost.peak_bytes);
            assert_int_equal(capped.model_misses, 0);
            assert_int_equal(budget.model_misses, 0);
            plan_cost c;
            plan_config at = cfg;
            at.bn = budget.best.bn;
            assert_int_equal(strategy_evaluate(net, &at, &budget.best.spec, &c), LR_OK);
            assert_int_equal(c.peak_bytes, budget.best.cost.peak_bytes);
            assert_true(budget.best.fits);
        }
        plan_config cfg = config(1, BN_EXACT);
        cfg.offload = OFFLOAD_INPUT | OFFLOAD_BOUNDARY;
        int64_t budget = 4 * choose(net, &cfg, STRAT_COLUMN).cost.peak_bytes;
        const plan_strategy sts[] = {STRAT_ROW, STRAT_OVERL};
        for (int i = 0; i < 2; i++) {
            fit_result r = fit(net, &cfg, sts[i], budget);
            net_t *copy;
            assert_int_equal(auto_subnet(net, 0, &copy), LR_OK);
            int h = r.max_square_input;
            assert_int_equal(net_reshape(copy, h, h), LR_OK);
            if (!fits_at(copy, cfg, sts[i], 1, budget))
                fail_msg("%s %s offload: max input %d does not fit", nets[k],
                         plan_strategy_name(sts[i]), h);
            if (!r.input_at_limit && net_reshape(copy, h + r.input_step, h + r.input_step) == LR_OK &&
                fits_at(copy, cfg, sts[i], 1, budget))
                fail_msg("%s %s offload: max input %d, but %d fits too", nets[k],
                         plan_strategy_name(sts[i]), h, h + r.input_step);
            net_free(copy);
        }
        net_free(net);
    }
}

/* --boundaries auto: the searches choose per stage, over a space that holds both plain settings'
 * plans. vgg16 at 4096x4096, batch 1: each row strategy's answer is at least as good by the
 * table's objective as the better of keeping every boundary and recomputing every one; auto's
 * least compute within a budget only keeping can meet is no more than keeping's and the stage
 * model stays exact (model_misses 0), its answer the closed form of its plan, whose recompute
 * bits are what the plan's stages do. */
static void test_boundaries_chosen_per_stage(void **state)
{
    net_t *net = test_zoo("vgg16");
    assert_int_equal(net_reshape(net, 4096, 4096), LR_OK);
    plan_config keep = config(1, BN_EXACT), rec = keep, choose_cfg = keep;
    rec.recompute_boundaries = true;
    choose_cfg.boundaries_auto = true;
    const plan_strategy sts[] = {STRAT_ROW, STRAT_2PS, STRAT_2PS_H};
    bool recomputed = false;
    for (int i = 0; i < 3; i++) {
        plan_choice k = choose(net, &keep, sts[i]), r = choose(net, &rec, sts[i]),
                    a = choose(net, &choose_cfg, sts[i]);
        strategy_pick pick;
        strategy_pick_init(&pick);
        strategy_pick_offer(&pick, &k.spec, &k.cost);
        strategy_pick_offer(&pick, &r.spec, &r.cost);
        strategy_pick_offer(&pick, &a.spec, &a.cost);
        int best = strategy_pick_best(&pick);
        const plan_cost *w = &pick.v[best].cost;
        if (best != 2 && (w->peak_bytes != a.cost.peak_bytes || w->flops != a.cost.flops))
            fail_msg("%s: auto %lld bytes %lld FLOPs, but %s gives %lld bytes %lld FLOPs",
                     plan_strategy_name(sts[i]), (long long)a.cost.peak_bytes,
                     (long long)a.cost.flops, best ? "recompute" : "keep",
                     (long long)w->peak_bytes, (long long)w->flops);
        strategy_pick_free(&pick);
        plan_t *plan;
        assert_int_equal(plan_build(net, &choose_cfg, &a.spec, &plan), LR_OK);
        assert_true(plan->spec.recompute == a.spec.recompute);
        recomputed |= a.spec.recompute != 0;
        plan_free(plan);
    }
    assert_true(recomputed); /* at this size the lowest peak recomputes */
    auto_result kept = run_auto(net, &keep, 0, choose(net, &keep, STRAT_2PS_H).cost.peak_bytes);
    auto_result chosen = run_auto(net, &choose_cfg, 0, kept.best.cost.peak_bytes);
    assert_true(kept.best.fits && chosen.best.fits);
    assert_true(chosen.best.cost.flops <= kept.best.cost.flops);
    assert_int_equal(chosen.model_misses, 0);
    plan_cost c;
    assert_int_equal(strategy_evaluate(net, &choose_cfg, &chosen.best.spec, &c), LR_OK);
    assert_int_equal(c.peak_bytes, chosen.best.cost.peak_bytes);
    assert_int_equal(c.flops, chosen.best.cost.flops);
    auto_result tight = run_auto(net, &choose_cfg, 0, choose(net, &rec, STRAT_ROW).cost.peak_bytes);
    assert_int_equal(tight.model_misses, 0);
    assert_true(tight.best.fits);
    net_free(net);
}

/* ------------------------------------------------------------------ --offload auto */

static plan_config auto_offload(plan_config cfg)
{
    cfg.offload = 0;
    cfg.offload_auto = true;
    return cfg;
}

/* strategy_choose under --offload auto, every strategy: the plan is the one the set it names
 * gets (spec and cost), its device peak is within 1% of the lowest of the four sets' plans, no
 * set within that 1% copies fewer bytes between host and device, and it keeps something in host
 * memory only when everything on the device is more than 1% above the lowest. vgg16 at batch 8
 * and 448x448 is the case where overl keeps its input on the device though offloading it would
 * lower the peak by 0.95%; at 4096x4096 row and 2ps offload. */
static void test_offload_auto_offloads_only_past_one_percent(void **state)
{
    const struct {
        const char *net;
        int batch, side;
    } cases[] = {{"vgg16", 8, 448}, {"vgg16", 1, 4096}, {"tiny-vgg", 4, 0}, {"resnet18", 16, 0}};
    int kept_though_lower = 0, offloaded = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        net_t *net = test_zoo(cases[i].net);
        if (cases[i].side)
            assert_int_equal(net_reshape(net, cases[i].side, cases[i].side), LR_OK);
        for (int st = 0; st < STRAT_COUNT; st++) {
            plan_config cfg = config(cases[i].batch, BN_EXACT);
            plan_choice by[STRATEGY_OFFLOAD_SETS];
            int64_t low = INT64_MAX;
            for (unsigned set = 0; set < STRATEGY_OFFLOAD_SETS; set++) {
                cfg.offload = set;
                by[set] = choose(net, &cfg, (plan_strategy)st);
                low = by[set].cost.peak_bytes < low ? by[set].cost.peak_bytes : low;
            }
            plan_config au = auto_offload(cfg);
            plan_choice a = choose(net, &au, (plan_strategy)st);
            unsigned set = a.spec.offload;
            char what[128];
            snprintf(what, sizeof what, "%s batch %d side %d %s: set %s", cases[i].net,
                     cases[i].batch, cases[i].side, plan_strategy_name((plan_strategy)st),
                     plan_offload_name(set));
            assert_true(set < STRATEGY_OFFLOAD_SETS);
            const plan_spec *f = &by[set].spec;
            bool same = a.spec.offload == set && f->n_stages == a.spec.n_stages &&
                        f->kind == a.spec.kind && f->recompute == a.spec.recompute;
            for (int s = 0; s < f->n_stages && same; s++)
                same = f->cut[s] == a.spec.cut[s] && f->parts[s] == a.spec.parts[s];
            if (!same || by[set].cost.peak_bytes != a.cost.peak_bytes ||
                by[set].cost.copy_bytes != a.cost.copy_bytes || by[set].cost.flops != a.cost.flops)
                fail_msg("%s: not the plan that set chooses", what);
            if (!strategy_near_tie(a.cost.peak_bytes, low))
                fail_msg("%s: peak %lld, lowest %lld", what, (long long)a.cost.peak_bytes, (long long)low);
            for (unsigned k = 0; k < STRATEGY_OFFLOAD_SETS; k++)
                if (strategy_near_tie(by[k].cost.peak_bytes, low) && by[k].cost.copy_bytes < a.cost.copy_bytes)
                    fail_msg("%s: %s copies less within 1%%", what, plan_offload_name(k));
            if (set != 0 && strategy_near_tie(by[0].cost.peak_bytes, low))
                fail_msg("%s: offloads though none is within 1%% of the lowest peak", what);
            offloaded += set != 0;
            kept_though_lower += set == 0 && by[0].cost.peak_bytes > low;
        }
        net_free(net);
    }
    assert_true(offloaded > 0);
    assert_true(kept_though_lower > 0);
}

/* auto_search under --offload auto with a budget: the answer is the search of the set it names;
 * it fits when some set's answer does, and then has the least compute of the sets' answers that
 * fit, copying no more than any of those within 1% of that compute (vgg16 at 2048x2048: 1.9 GiB
 * fits with everything on the device only at 4.89x compute, with boundaries in host memory at
 * 1.29x, so they are offloaded; 1.75 GiB needs input and boundaries offloaded); when no set fits
 * it is the lowest peak of them (1.6 GiB). */
static void test_offload_auto_under_a_budget_copies_least(void **state)
{
    net_t *net = test_zoo("vgg16");
    assert_int_equal(net_reshape(net, 2048, 2048), LR_OK);
    const int64_t budgets[] = {1946 * MiB, 1792 * MiB, 1638 * MiB};
    const bool want_offload[] = {true, true, true}, want_fits[] = {true, true, false};
    for (int q = 0; q < 3; q++) {
        plan_config cfg = config(1, BN_EXACT);
        auto_result by[STRATEGY_OFFLOAD_SETS];
        for (unsigned set = 0; set < STRATEGY_OFFLOAD_SETS; set++) {
            cfg.offload = set;
            by[set] = run_auto(net, &cfg, 0, budgets[q]);
        }
        plan_config au = auto_offload(cfg);
        auto_result a = run_auto(net, &au, 0, budgets[q]);
        unsigned set = a.best.spec.offload;
        assert_true(set < STRATEGY_OFFLOAD_SETS);
        assert_int_equal(a.best.cost.peak_bytes, by[set].best.cost.peak_bytes);
        assert_int_equal(a.best.cost.copy_bytes, by[set].best.cost.copy_bytes);
        assert_int_equal(a.best.fits, want_fits[q]);
        assert_int_equal(set != 0, want_offload[q]);
        if (q == 0) /* on the device it fits too, at more compute */
            assert_true(by[0].best.fits && by[0].best.cost.flops > a.best.cost.flops);
        for (unsigned k = 0; k < STRATEGY_OFFLOAD_SETS; k++) {
            if (a.best.fits && by[k].best.fits) /* the least compute, or within 1% of it */
                assert_true(strategy_near_tie(a.best.cost.flops, by[k].best.cost.flops));
            if (a.best.fits && by[k].best.fits &&
                strategy_near_tie(by[k].best.cost.flops, a.best.cost.flops))
                assert_true(a.best.cost.copy_bytes <= by[k].best.cost.copy_bytes);
            if (!a.best.fits) {
                assert_false(by[k].best.fits);
                assert_true(a.best.cost.peak_bytes <= by[k].best.cost.peak_bytes);
            }
        }
        plan_cost again; /* the plan the answer names, evaluated with its set */
        assert_int_equal(strategy_evaluate(net, &au, &a.best.spec, &again), LR_OK);
        assert_int_equal(again.peak_bytes, a.best.cost.peak_bytes);
        assert_int_equal(again.copy_bytes, a.best.cost.copy_bytes);
    }
    net_free(net);
}

static fit_result fit_host(const net_t *net, const plan_config *cfg, plan_strategy st,
                           int64_t budget, int64_t host)
{
    fit_target t;
    memset(&t, 0, sizeof t);
    t.strategy = st;
    t.host_budget_bytes = host;
    fit_result r;
    if (fit_run(net, cfg, &t, budget, &r) != LR_OK)
        fail_msg("%s: fit_run: %s", net->name, lr_last_error());
    return r;
}

/* --fit under --offload auto answers the best of the four sets: the largest batch (and for row
 * on vgg16 the largest input) is the largest any set reaches, and the set it names there fits
 * with the least copying of those that do. */
static void test_fit_offload_auto_is_the_best_fixed_set(void **state)
{
    const struct {
        const char *net;
        plan_strategy st;
        int64_t budget;
        bool input;
    } cases[] = {{"vgg16", STRAT_ROW, 2 * GiB, true}, {"vgg16", STRAT_COLUMN, 2 * GiB, false},
                 {"tiny-resnet", STRAT_2PS, 24 * MiB, false},
                 {"tiny-resnet", STRAT_CHECKPOINT, 24 * MiB, false}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        net_t *net = test_zoo(cases[i].net);
        plan_config cfg = config(1, BN_EXACT);
        int best_batch = 0, best_input = 0;
        for (unsigned set = 0; set < STRATEGY_OFFLOAD_SETS; set++) {
            cfg.offload = set;
            fit_result r = fit(net, &cfg, cases[i].st, cases[i].budget);
            best_batch = r.max_batch > best_batch ? r.max_batch : best_batch;
            best_input = r.max_square_input > best_input ? r.max_square_input : best_input;
        }
        plan_config au = auto_offload(cfg);
        fit_result a = fit(net, &au, cases[i].st, cases[i].budget);
        const char *name = plan_strategy_name(cases[i].st);
        if (a.max_batch != best_batch)
            fail_msg("%s %s: max batch %d, the best set %d", cases[i].net, name, a.max_batch, best_batch);
        if (cases[i].input && a.max_square_input != best_input)
            fail_msg("%s %s: max input %d, the best set %d", cases[i].net, name, a.max_square_input,
                     best_input);
        /* the set named at the largest batch fits there, and copies least of those that fit */
        plan_choice at[STRATEGY_OFFLOAD_SETS];
        for (unsigned set = 0; set < STRATEGY_OFFLOAD_SETS; set++) {
            cfg.offload = set;
            cfg.batch = a.max_batch;
            at[set] = choose(net, &cfg, cases[i].st);
        }
        unsigned set = a.offload_at_max_batch;
        assert_true(at[set].cost.peak_bytes <= cases[i].budget);
        for (unsigned k = 0; k < STRATEGY_OFFLOAD_SETS; k++)
            if (at[k].cost.peak_bytes <= cases[i].budget)
                assert_true(at[set].cost.copy_bytes <= at[k].cost.copy_bytes);
        net_free(net);
    }
}

/* --fit under --offload auto past an input batch larger than the budget: only the sets that
 * offload the input can fit there, and the others are not searched (choose_offload); the answer
 * is still the best set's, resnet18 row in 1 GiB at 11232x11232, whose input alone is 1.4 GiB.
 * Skipping the sets that offload the input there as well stops at 9459, where the input reaches
 * the budget. */
static void test_fit_offload_auto_past_an_input_larger_than_the_budget(void **state)
{
    (void)state;
    net_t *net = test_zoo("resnet18");
    plan_config cfg = config(1, BN_EXACT);
    int best = 0;
    unsigned best_set = 0;
    for (unsigned set = 0; set < STRATEGY_OFFLOAD_SETS; set++) {
        cfg.offload = set;
        fit_result r = fit(net, &cfg, STRAT_ROW, GiB);
        if (r.max_square_input > best)
            best = r.max_square_input, best_set = set;
    }
    plan_config au = auto_offload(cfg);
    fit_result a = fit(net, &au, STRAT_ROW, GiB);
    assert_int_equal(a.max_square_input, best);
    assert_int_equal(a.offload_at_max_input, best_set);
    assert_true(best_set & OFFLOAD_INPUT);
    assert_true(3 * (int64_t)best * best * 4 > GiB); /* the case the skip is for */
    net_free(net);
}

/* --host-memory below what any offloading plan keeps: --offload auto falls back to keeping
 * everything on the device, the answers of --offload none, with no host memory. */
static void test_fit_offload_auto_falls_back_without_host_memory(void **state)
{
    net_t *net = test_zoo("vgg16");
    plan_config cfg = config(1, BN_EXACT);
    fit_result none = fit(net, &cfg, STRAT_ROW, 2 * GiB);
    plan_config au = auto_offload(cfg);
    fit_result roomy = fit_host(net, &au, STRAT_ROW, 2 * GiB, 0);
    fit_result tight = fit_host(net, &au, STRAT_ROW, 2 * GiB, 1024);
    assert_true(roomy.max_batch > none.max_batch); /* offloading pays here */
    assert_int_equal(tight.max_batch, none.max_batch);
    assert_int_equal(tight.max_square_input, none.max_square_input);
    assert_int_equal(tight.offload_at_max_batch, 0);
    assert_int_equal(tight.offload_at_max_input, 0);
    assert_int_equal(tight.host_bytes_at_max_batch, 0);
    assert_int_equal(tight.host_bytes_at_max_input, 0);
    net_free(net);
}

/* fit_run_all tells its progress: every question answered once (done counting up to the 2n
 * questions), each plan choice with the target and the batch or input it chose at; its answers
 * are fit_run's. */
typedef struct {
    int answers, choices, last;
    bool in_order, named;
} progress_seen;

static void see_progress(void *ctx, const fit_progress_info *p)
{
    progress_seen *s = ctx;
    s->in_order = s->in_order && p->total == 6 && p->done == s->last + (p->at == 0);
    s->named = s->named && p->target >= 0 && p->target < 3;
    s->last = p->done;
    if (p->at == 0)
        s->answers++;
    else
        s->choices++;
}

static void test_fit_run_all_tells_its_progress(void **state)
{
    (void)state;
    net_t *net = test_zoo("tiny-vgg");
    plan_config cfg = config(8, BN_EXACT);
    fit_target t[3];
    memset(t, 0, sizeof t);
    t[0].strategy = STRAT_COLUMN, t[1].strategy = STRAT_CHECKPOINT, t[2].strategy = STRAT_2PS;
    fit_result all[3];
    progress_seen p = {.in_order = true, .named = true};
    assert_int_equal(fit_run_all(net, &cfg, t, 3, 64 * MiB, all, see_progress, &p), LR_OK);
    assert_int_equal(p.answers, 6);
    assert_int_equal(p.last, 6);
    assert_true(p.choices >= 6); /* at least the first choice of each question */
    assert_true(p.in_order && p.named);
    for (int k = 0; k < 3; k++) {
        fit_result one = fit(net, &cfg, t[k].strategy, 64 * MiB);
        assert_int_equal(all[k].max_batch, one.max_batch);
        assert_int_equal(all[k].max_square_input, one.max_square_input);
    }
    net_free(net);
}

/* What fit_run_all tells a trace (lrcnn-sim --fit-trace): every choice after its FIT_CHOOSING
 * with the plan, its peak and whether it fits; every fixed-plan evaluation; a hybrid's seed
 * asked on the side (2ps for 2ps-h) as not shown, its answer not counted in done. The counts
 * equal the result's n_choices and n_evals, and each batch choice's peak is the closed form of
 * the plan it names. */
typedef struct {
    fit_progress_info ev[4096];
    plan_spec spec[4096];
    int n;
} events_seen;

static void see_events(void *ctx, const fit_progress_info *p)
{
    events_seen *s = ctx;
    if (s->n == 4096)
        fail_msg("more than 4096 events");
    s->ev[s->n] = *p;
    if (p->spec)
        s->spec[s->n] = *p->spec;
    s->n++;
}

static void test_fit_tells_every_choice_and_evaluation(void **state)
{
    (void)state;
    net_t *net = test_zoo("tiny-resnet");
    plan_config cfg = config(8, BN_EXACT);
    fit_target t;
    memset(&t, 0, sizeof t);
    t.strategy = STRAT_2PS_H;
    int64_t budget = 24 * MiB;
    fit_result r;
    events_seen *s = calloc(1, sizeof *s);
    assert_non_null(s);
    assert_int_equal(fit_run_all(net, &cfg, &t, 1, budget, &r, see_events, s), LR_OK);
    int chose = 0, measured = 0, seed = 0, answered = 0, checked = 0;
    for (int i = 0; i < s->n; i++) {
        const fit_progress_info *e = &s->ev[i];
        assert_int_equal(e->total, 2);
        if (!e->shown) { /* the seed: 2ps's input question */
            assert_int_equal(e->strategy, STRAT_2PS);
            assert_true(e->target >= 1 && !e->batch);
            seed++;
            continue;
        }
        assert_int_equal(e->strategy, STRAT_2PS_H);
        assert_int_equal(e->target, 0);
        if (e->event == FIT_ANSWERED) {
            answered++;
            assert_int_equal(e->done, answered);
            continue;
        }
        if (e->event == FIT_MEASURED) {
            measured++;
            assert_non_null(e->spec);
            continue;
        }
        if (e->event != FIT_CHOSE)
            continue;
        chose++;
        /* the question's previous event: its FIT_CHOOSING at the same size */
        int k = i - 1;
        while (k >= 0 && (!s->ev[k].shown || s->ev[k].batch != e->batch))
            k--;
        assert_true(k >= 0 && s->ev[k].event == FIT_CHOOSING && s->ev[k].at == e->at);
        assert_true(e->seconds >= 0);
        if (!e->batch || !e->spec)
            continue;
        plan_config at = cfg;
        at.batch = (int)e->at;
        plan_cost c;
        assert_int_equal(strategy_evaluate(net, &at, &s->spec[i], &c), LR_OK);
        assert_int_equal(c.peak_bytes, e->peak);
        assert_int_equal(e->fits, c.peak_bytes <= budget);
        checked++;
    }
    assert_int_equal(answered, 2);
    assert_int_equal(chose, r.n_choices);
    assert_int_equal(measured, r.n_evals);
    assert_true(seed > 0 && checked >= 2);
    free(s);
    net_free(net);
}

/* A budget below the weights: nothing fits, batch or input. */
static void test_fit_reports_zero_when_nothing_fits(void **state)
{
    net_t *net = test_zoo("vgg16");
    plan_config cfg = config(8, BN_EXACT);
    for (int st = 0; st <= STRAT_COUNT; st++) {
        fit_result r = fit(net, &cfg, (plan_strategy)st, 100 * MiB);
        assert_int_equal(r.max_batch, 0);
        assert_int_equal(r.max_square_input, 0);
    }
    net_free(net);
}

/* The cards in the table and their documented sizes; names are case-insensitive; only cards
 * with a memory figure are --fit targets. */
static void test_named_gpus_parse(void **state)
{
    assert_int_equal(device_find("h100-80gb")->bytes, 81559 * MiB);
    assert_int_equal(device_find("H200")->bytes, 143771 * MiB);
    assert_int_equal(device_find("rtx3090")->bytes, 24 * GiB);
    assert_int_equal(device_find("a100-80gb")->bytes, 80 * GiB);
    assert_null(device_find("h100"));
    assert_null(device_find(""));
    for (const device_spec *g = device_table; g->name; g++) {
        assert_true(g->bytes == 0 || (g->bytes > 8 * GiB && g->bytes < 256 * GiB));
        assert_ptr_equal(device_find(g->name), g);
    }
    sim_options o;
    sim_options_init(&o);
    char *argv[] = {"lrcnn-sim", "--fit", "a100-40gb", "--reserve", "2GiB"};
    assert_int_equal(args_parse(sim_flags, 5, argv, &o), LR_OK);
    assert_int_equal(o.fit_bytes, 40 * GiB);
    assert_int_equal(o.reserve_bytes, 2 * GiB);
    char *size[] = {"lrcnn-sim", "--fit", "24GiB"};
    sim_options_init(&o);
    assert_int_equal(args_parse(sim_flags, 3, size, &o), LR_OK);
    assert_int_equal(o.fit_bytes, 24 * GiB);
    assert_null(o.fit_gpu);
    assert_int_equal(o.reserve_bytes, FIT_DEFAULT_RESERVE_BYTES);
    char *bad[] = {"lrcnn-sim", "--fit", "h100"};
    sim_options_init(&o);
    assert_int_equal(args_parse(sim_flags, 3, bad, &o), LR_ERR_USAGE);
    assert_non_null(strstr(lr_last_error(), "h100-80gb"));
    /* the CPU reference has time constants but no memory figure: not a --fit card */
    char *cpu[] = {"lrcnn-sim", "--fit", "cpu"};
    sim_options_init(&o);
    assert_int_equal(args_parse(sim_flags, 3, cpu, &o), LR_ERR_USAGE);
    assert_null(strstr(lr_last_error(), "cpu,"));
}

/* ------------------------------------------------------------------ the command line */

static lr_status parse(sim_options *o, int argc, char **argv)
{
    sim_options_init(o);
    return args_parse(sim_flags, argc, argv, o);
}

/* "all" is the fixed strategies; auto is asked for by name and may be combined. */
static void test_all_does_not_include_auto(void **state)
{
    sim_options o;
    char *all[] = {"x", "--strategy", "all"};
    assert_int_equal(parse(&o, 3, all), LR_OK);
    assert_false(o.auto_plan);
    assert_int_equal(o.strategies, (1u << STRAT_COUNT) - 1);
    char *both[] = {"x", "--strategy", "column,auto"};
    assert_int_equal(parse(&o, 3, both), LR_OK);
    assert_true(o.auto_plan);
    assert_int_equal(o.strategies, 1u << STRAT_COLUMN);
    char *only[] = {"x", "--strategy", "auto"};
    assert_int_equal(parse(&o, 3, only), LR_OK);
    assert_true(o.auto_plan);
    assert_int_equal(o.strategies, 0u);
}

/* auto's and --fit's flags alone are usage errors naming the flag. */
static void test_auto_and_fit_flags_need_their_feature(void **state)
{
    struct {
        int argc;
        char *argv[8];
        const char *mention;
    } cases[] = {
        {5, {"x", "--net", "vgg16", "--budget", "8GiB"}, "--budget"},
        {5, {"x", "--net", "vgg16", "--max-overhead", "1.3"}, "--max-overhead"},
        {5, {"x", "--net", "vgg16", "--reserve", "1GiB"}, "--reserve"},
        {7, {"x", "--net", "vgg16", "--fit", "1GiB", "--reserve", "2GiB"}, "--reserve"},
        {7, {"x", "--net", "vgg16", "--strategy", "auto", "--sweep", "rows=2..4"}, "--sweep"},
        {7, {"x", "--net", "vgg16", "--strategy", "auto", "--framework", "pytorch"}, "pytorch"},
        {5, {"x", "--net", "vgg16", "--overhead-by", "flops"}, "--overhead-by"},
        {7, {"x", "--net", "vgg16", "--strategy", "auto", "--overhead-by", "time"}, "--device"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        sim_options o;
        assert_int_equal(parse(&o, cases[k].argc, cases[k].argv), LR_OK);
        assert_int_equal(sim_cli_run(&o), LR_ERR_USAGE);
        assert_non_null(strstr(lr_last_error(), cases[k].mention));
    }
    sim_options o;
    char *low[] = {"x", "--max-overhead", "0.9"};
    assert_int_equal(parse(&o, 3, low), LR_ERR_USAGE);
    char *by[] = {"x", "--overhead-by", "seconds"};
    assert_int_equal(parse(&o, 3, by), LR_ERR_USAGE);
}

static json_object *run_json(char **argv, int argc)
{
    char dir[] = "/tmp/lrcnn-auto.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/out.json", dir);
    char *full[32];
    memcpy(full, argv, sizeof(char *) * (size_t)argc);
    full[argc] = "--json", full[argc + 1] = "--output", full[argc + 2] = path;
    sim_options o;
    assert_int_equal(parse(&o, argc + 3, full), LR_OK);
    if (sim_cli_run(&o) != LR_OK)
        fail_msg("sim_cli_run: %s", lr_last_error());
    json_object *root = json_object_from_file(path);
    assert_non_null(root);
    unlink(path);
    rmdir(dir);
    return root;
}

static json_object *key(json_object *o, const char *k)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, k, &v))
        fail_msg("JSON: no key \"%s\"", k);
    return v;
}

/* auto is an entry of "strategies" named "auto" with the plan object; closed form equals the
 * replay; --fit adds "fit" with an entry per strategy, and "fit_device". */
static void test_json_has_the_documented_keys(void **state)
{
    char *argv[] = {"x", "--net", "vgg16", "--batch", "64", "--strategy", "column,auto",
                    "--max-overhead", "1.3", "--fit", "rtx4090"};
    json_object *root = run_json(argv, 11);
    json_object *st = key(root, "strategies");
    assert_int_equal(json_object_array_length(st), 2);
    json_object *a = json_object_array_get_idx(st, 1);
    assert_string_equal(json_object_get_string(key(a, "name")), "auto");
    assert_int_equal(json_object_get_int64(key(a, "peak_bytes")), json_object_get_int64(key(a, "sim_peak_bytes")));
    assert_true(json_object_get_double(key(a, "flops_ratio")) <= 1.3 + 1e-12);
    assert_true(json_object_get_boolean(key(a, "fits")));
    assert_string_equal(json_object_get_string(key(a, "objective")), "peak");
    assert_int_equal(json_object_get_int64(key(a, "over_bytes")), 0);
    json_object *plan = key(a, "plan");
    const char *kind = json_object_get_string(key(plan, "kind"));
    assert_true(strstr(" 2ps row overl column checkpoint ", kind) != NULL);
    assert_string_equal(json_object_get_string(key(plan, "bn")), "exact");
    json_object *stages = key(plan, "stages");
    assert_true(json_object_array_length(stages) > 0);
    json_object *s0 = json_object_array_get_idx(stages, 0);
    assert_true(json_object_is_type(key(s0, "end"), json_type_string));
    assert_true(json_object_get_int(key(s0, "rows")) >= 1);
    assert_true(json_object_is_type(key(a, "alternatives"), json_type_array));
    json_object *fits = key(root, "fit");
    assert_int_equal(json_object_array_length(fits), 2);
    const char *names[] = {"column", "auto"};
    for (int k = 0; k < 2; k++) {
        json_object *f = json_object_array_get_idx(fits, k);
        assert_string_equal(json_object_get_string(key(f, "strategy")), names[k]);
        assert_true(json_object_get_int(key(f, "max_batch")) > 0);
        assert_true(json_object_get_int(key(f, "max_square_input")) > 0);
        assert_int_equal(json_object_get_int64(key(f, "budget_bytes")), 24564 * MiB - GiB);
    }
    assert_string_equal(json_object_get_string(key(key(root, "fit_device"), "gpu")), "rtx4090");
    json_object_put(root);
}

/* A budget nothing meets is an answer, not a failure: "fits": false and the shortfall. */
static void test_json_reports_a_budget_nothing_meets(void **state)
{
    char *argv[] = {"x", "--net", "resnet18", "--batch", "64", "--strategy", "auto", "--budget",
                    "64MiB"};
    json_object *root = run_json(argv, 9);
    json_object *a = json_object_array_get_idx(key(root, "strategies"), 0);
    assert_false(json_object_get_boolean(key(a, "fits")));
    assert_string_equal(json_object_get_string(key(a, "objective")), "compute");
    assert_int_equal(json_object_get_int64(key(a, "budget_bytes")), 64 * MiB);
    assert_int_equal(json_object_get_int64(key(a, "over_bytes")),
                     json_object_get_int64(key(a, "peak_bytes")) - 64 * MiB);
    json_object_put(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auto_never_exceeds_the_budget),
        cmocka_unit_test(test_auto_respects_the_overhead_cap),
        cmocka_unit_test(test_auto_default_is_a_cap_of_one_and_a_half),
        cmocka_unit_test(test_auto_is_never_worse_than_a_fixed_strategy),
        cmocka_unit_test(test_auto_by_time_meets_the_cap_and_beats_fixed_strategies),
        cmocka_unit_test(test_auto_by_time_needs_a_device),
        cmocka_unit_test(test_auto_is_never_worse_at_high_resolution),
        cmocka_unit_test(test_stage_model_predicts_the_closed_form),
        cmocka_unit_test(test_exact_bn_never_gets_an_approximate_plan),
        cmocka_unit_test(test_stripe_bn_allowed_may_be_chosen),
        cmocka_unit_test(test_frozen_bn_only_when_asked_for),
        cmocka_unit_test(test_exact_bn_makes_auto_partition_small_stages),
        cmocka_unit_test(test_a_budget_nothing_meets_reports_the_shortfall),
        cmocka_unit_test(test_auto_plan_closed_form_equals_replay),
        cmocka_unit_test(test_auto_and_hybrids_refuse_only_what_they_cannot_count),
        cmocka_unit_test(test_a_cap_past_int64_caps_nothing),
        cmocka_unit_test(test_fit_batch_is_on_the_boundary),
        cmocka_unit_test(test_fit_batch_is_on_the_boundary_for_vgg16_on_a_card),
        cmocka_unit_test(test_fit_input_is_on_the_boundary),
        cmocka_unit_test(test_fit_hybrid_input_starts_from_its_single_stage_answer),
        cmocka_unit_test(test_fit_input_follows_an_n_that_grows_with_the_size),
        cmocka_unit_test(test_offloaded_input_in_auto_and_fit),
        cmocka_unit_test(test_boundaries_chosen_per_stage),
        cmocka_unit_test(test_offload_auto_offloads_only_past_one_percent),
        cmocka_unit_test(test_offload_auto_under_a_budget_copies_least),
        cmocka_unit_test(test_fit_offload_auto_is_the_best_fixed_set),
        cmocka_unit_test(test_fit_offload_auto_past_an_input_larger_than_the_budget),
        cmocka_unit_test(test_fit_offload_auto_falls_back_without_host_memory),
        cmocka_unit_test(test_fit_run_all_tells_its_progress),
        cmocka_unit_test(test_fit_tells_every_choice_and_evaluation),
        cmocka_unit_test(test_fit_reports_zero_when_nothing_fits),
        cmocka_unit_test(test_named_gpus_parse),
        cmocka_unit_test(test_all_does_not_include_auto),
        cmocka_unit_test(test_auto_and_fit_flags_need_their_feature),
        cmocka_unit_test(test_json_has_the_documented_keys),
        cmocka_unit_test(test_json_reports_a_budget_nothing_meets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
