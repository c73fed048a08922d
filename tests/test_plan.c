/* test_plan.c - plans and schedules: the closed-form peak equals the replay of the emitted
 * schedule to the byte (every zoo net, every strategy, several batches, both BN modes, hybrid
 * specs), hand-computed peaks for two small cases, and the invariants a plan's row ranges and
 * costs must satisfy (tiling, cones, linearity in the batch, bounds against column).
 *
 * Legend: P partitions, l a node, j a partition, O a stage's output, H a node's height.
 * Deliberately not here: row dependencies of single ops (test_rowdep.c), the allocator models
 * (test_sim.c), running schedules (test_exec.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "support.h"

#include "sim.h"
#include "auto.h"
#include "choose.h"
#include "par.h"
#include "closed_walk.h"

/* ------------------------------------------------------------------ helpers */

static int find(const net_t *net, const char *name)
{
    int i = net_find(net, name);
    if (i < 0)
        fail_msg("%s has no layer %s", net->name, name);
    return i;
}

/* Every plan of these tests is timed on a card too, so the closed form's step time is held to
 * the schedule's kernels (check_agreement) and to composition like the bytes. */
static plan_config config(int batch, plan_bn bn)
{
    plan_config c = {.batch = batch, .dtype = DT_FP32, .optim = OPTIM_MOMENTUM, .bn = bn,
                     .device = device_find("h100-80gb")};
    return c;
}

static plan_t *build(const net_t *net, const plan_config *cfg, const plan_spec *spec)
{
    plan_t *plan = NULL;
    if (plan_build(net, cfg, spec, &plan) != LR_OK)
        fail_msg("%s: plan_build: %s", net->name, lr_last_error());
    return plan;
}

/* strategy_choose with --rows (0: chosen) and --region (0: chosen, or the default end). */
static plan_choice choose_at(const net_t *net, const plan_config *cfg, plan_strategy st, int rows,
                             int region_end)
{
    plan_request req = {.strategy = st, .rows = rows, .region_end = region_end};
    plan_choice c;
    if (strategy_choose(net, cfg, &req, &c) != LR_OK)
        fail_msg("%s %s rows %d: strategy_choose: %s", net->name, plan_strategy_name(st), rows,
                 lr_last_error());
    return c;
}

static plan_choice choose(const net_t *net, const plan_config *cfg, plan_strategy st, int rows)
{
    return choose_at(net, cfg, st, rows, 0);
}

static plan_cost closed(const plan_t *plan)
{
    plan_cost c;
    plan_closed_form(plan, &c);
    return c;
}

static int64_t column_peak(const net_t *net, const plan_config *cfg, int64_t *flops)
{
    plan_choice c = choose(net, cfg, STRAT_COLUMN, 0);
    if (flops)
        *flops = c.cost.flops;
    return c.cost.peak_bytes;
}

static int64_t rows_bytes(const plan_t *p, int node, rowrange r)
{
    return cost_rows_bytes(p->net, node, p->cfg.batch, cost_dtype_bytes(p->cfg.dtype),
                           rr_count(r));
}

/* The time model over the schedule's own kernels: device_kernel_ns of every RUN step. */
static int64_t schedule_ns(const plan_t *plan, const sched_t *s)
{
    int64_t ns = 0;
    for (int i = 0; i < s->n_steps; i++) {
        device_kernel k;
        if (device_kernel_of_step(plan->net, plan->cfg.batch, cost_dtype_bytes(plan->cfg.dtype),
                                  plan->cfg.optim, &s->steps[i], &k))
            ns += device_kernel_ns(plan->cfg.device, &k);
    }
    return ns;
}

/* The step with its copies on a stream of their own: its kernels are the closed form's step
 * time; without copies it is just that, with copies no shorter than either lane (the copies at
 * least the closed form's copy time) and no longer than both one after the other. */
static void check_overlap(const plan_t *plan, const sched_t *s, const plan_cost *c, const char *what)
{
    device_overlap o;
    if (device_overlap_of(plan->net, plan->cfg.batch, cost_dtype_bytes(plan->cfg.dtype),
                          plan->cfg.optim, plan->cfg.device, s, &o) != LR_OK)
        fail_msg("%s: device_overlap_of: %s", what, lr_last_error());
    int64_t longer = o.kernel_ns > o.copy_ns ? o.kernel_ns : o.copy_ns;
    bool ok = o.kernel_ns == c->step_ns && o.exposed_ns == o.step_ns - o.kernel_ns &&
              (c->copy_bytes == 0 ? o.copy_ns == 0 && o.step_ns == o.kernel_ns
                                  : o.copy_ns >= c->copy_ns && o.step_ns >= longer &&
                                        o.step_ns <= o.kernel_ns + o.copy_ns);
    if (!ok)
        fail_msg("%s: overlapped step %lld ns: kernels %lld (closed form %lld), copies %lld "
                 "(closed form %lld)", what, (long long)o.step_ns, (long long)o.kernel_ns,
                 (long long)c->step_ns, (long long)o.copy_ns, (long long)c->copy_ns);
}

/* Emits the plan's schedule, checks it is well formed and that its replay under the exact model
 * agrees with the closed form to the byte (peak, FLOPs, persistent bytes by class) and on where
 * the peak happens, that the closed form's step time is the time model summed over the
 * schedule's kernels (and bounds the step with its copies overlapped), and that it ends with
 * nothing live. Returns the closed form. */
static plan_cost check_agreement(const plan_t *plan, const char *what)
{
    plan_cost c = closed(plan);
    sched_t s;
    sched_init(&s);
    plan_emit(plan, &s);
    if (sched_validate(&s) != LR_OK)
        fail_msg("%s: sched_validate: %s", what, lr_last_error());
    sim_result r;
    if (sim_replay(&s, ALLOC_EXACT, &r) != LR_OK)
        fail_msg("%s: sim_replay: %s", what, lr_last_error());
    if (r.peak_bytes != c.peak_bytes || r.flops != c.flops)
        fail_msg("%s: replay peak %lld flops %lld, closed form peak %lld flops %lld", what,
                 (long long)r.peak_bytes, (long long)r.flops, (long long)c.peak_bytes,
                 (long long)c.flops);
    if (r.host_peak_bytes != c.host_bytes || r.copy_bytes != c.copy_bytes)
        fail_msg("%s: replay host peak %lld, copies %lld; closed form %lld, %lld", what,
                 (long long)r.host_peak_bytes, (long long)r.copy_bytes, (long long)c.host_bytes,
                 (long long)c.copy_bytes);
    if (plan->cfg.device && schedule_ns(plan, &s) != c.step_ns)
        fail_msg("%s: the schedule's kernels take %lld ns on %s, the closed form says %lld", what,
                 (long long)schedule_ns(plan, &s), plan->cfg.device->name, (long long)c.step_ns);
    if (plan->cfg.device && c.step_ns <= 0)
        fail_msg("%s: no step time on %s", what, plan->cfg.device->name);
    if (plan->cfg.device)
        check_overlap(plan, &s, &c, what);
    int64_t statics = r.class_at_peak[TC_WEIGHT] + r.class_at_peak[TC_WEIGHT_GRAD] +
                      r.class_at_peak[TC_OPT_STATE];
    if (statics != c.static_bytes || r.class_at_peak[TC_INPUT] != c.input_bytes ||
        r.class_at_peak[TC_WORKSPACE] != c.workspace_bytes || r.end_bytes != 0)
        fail_msg("%s: static %lld/%lld input %lld/%lld workspace %lld/%lld end %lld", what,
                 (long long)statics, (long long)c.static_bytes,
                 (long long)r.class_at_peak[TC_INPUT], (long long)c.input_bytes,
                 (long long)r.class_at_peak[TC_WORKSPACE], (long long)c.workspace_bytes,
                 (long long)r.end_bytes);
    /* "peak at" (printed from the closed form) is the step where the replay first peaks */
    const sched_step *at = &s.steps[r.peak_step];
    if (at->pass != c.peak_pass || at->node != c.peak_node || at->part != c.peak_part)
        fail_msg("%s: replay peaks at step %d (%s node %d part %d), closed form says %s node %d "
                 "part %d", what, r.peak_step, sched_pass_name((sched_pass)at->pass), at->node,
                 at->part, sched_pass_name(c.peak_pass), c.peak_node, c.peak_part);
    sched_free(&s);
    return c;
}

static void check_spec_agrees(const net_t *net, const plan_config *cfg, const plan_spec *spec,
                              const char *what)
{
    plan_t *plan = build(net, cfg, spec);
    check_agreement(plan, what);
    plan_free(plan);
}

/* ------------------------------------------------------------------ closed form = replay */

typedef struct {
    const char *net;
    plan_bn bn_at_64; /* exact BN over 64 images in the big ResNets takes seconds: stripe there */
    plan_bn bn_at_8;
} zoo_case;

static const zoo_case zoo_cases[] = {
    {"vgg11", BN_EXACT, BN_EXACT},      {"vgg13", BN_EXACT, BN_EXACT},
    {"vgg16", BN_EXACT, BN_EXACT},      {"vgg19", BN_EXACT, BN_EXACT},
    {"alexnet", BN_EXACT, BN_EXACT},    {"resnet18", BN_EXACT, BN_EXACT},
    {"resnet34", BN_STRIPE, BN_EXACT},  {"resnet50", BN_STRIPE, BN_EXACT},
    {"resnet101", BN_STRIPE, BN_STRIPE}, {"tiny-vgg", BN_EXACT, BN_EXACT},
    {"tiny-resnet", BN_EXACT, BN_EXACT}, {"tiny-mix", BN_EXACT, BN_EXACT},
};

/* The planner's promise (DESIGN.md): for every zoo net, every strategy as strategy_choose picks
 * it with default options, and batches 1, 8 and 64, the closed-form peak equals the exact
 * replay of the emitted schedule to the byte, FLOPs too, and the schedule is well formed. */
static void test_closed_form_equals_replay_for_every_zoo_strategy(void **state)
{
    const int batches[] = {1, 8, 64};
    for (size_t z = 0; z < sizeof zoo_cases / sizeof zoo_cases[0]; z++) {
        net_t *net = test_zoo(zoo_cases[z].net);
        for (int b = 0; b < 3; b++) {
            plan_bn bn = batches[b] == 64 ? zoo_cases[z].bn_at_64
                         : batches[b] == 8 ? zoo_cases[z].bn_at_8
                                           : BN_EXACT;
            plan_config cfg = config(batches[b], bn);
            for (int st = 0; st < STRAT_COUNT; st++) {
                plan_choice c = choose(net, &cfg, (plan_strategy)st, 0);
                char what[128];
                snprintf(what, sizeof what, "%s %s batch %d bn %s", net->name,
                         plan_strategy_name((plan_strategy)st), batches[b], plan_bn_name(bn));
                plan_t *plan = build(net, &cfg, &c.spec);
                plan_cost k = check_agreement(plan, what);
                /* strategy_choose reports the closed form of the spec it returns */
                if (k.peak_bytes != c.cost.peak_bytes || k.flops != c.cost.flops)
                    fail_msg("%s: chosen cost %lld differs from its plan's %lld", what,
                             (long long)c.cost.peak_bytes, (long long)k.peak_bytes);
                plan_free(plan);
            }
        }
        net_free(net);
    }
}

/* --offload input on every zoo net and strategy (batch 2, each strategy's plan without offload):
 * the closed form equals the replay (device and host peaks, copies); the input batch is in host
 * memory exactly when the plan has a stage; the device peak is never higher than the same plan's
 * without offload, and lower by up to the input's bytes; every partition of the first stage
 * copies its input rows at least once per pass over it. With boundaries offloaded too, the
 * device peak is no higher than with the input alone, and the host holds no less. */
static void test_offloaded_input_plans_agree_and_save_the_input(void **state)
{
    for (size_t z = 0; z < sizeof zoo_cases / sizeof zoo_cases[0]; z++) {
        net_t *net = test_zoo(zoo_cases[z].net);
        plan_config cfg = config(2, zoo_cases[z].bn_at_8), off = cfg, both = cfg;
        off.offload = OFFLOAD_INPUT;
        both.offload = OFFLOAD_INPUT | OFFLOAD_BOUNDARY;
        int64_t input = cost_node_bytes(net, 0, 2, 4);
        for (int st = 0; st < STRAT_COUNT; st++) {
            plan_choice c = choose(net, &cfg, (plan_strategy)st, 0);
            char what[128];
            snprintf(what, sizeof what, "%s %s offload input", net->name,
                     plan_strategy_name((plan_strategy)st));
            plan_t *plan = build(net, &off, &c.spec);
            plan_cost k = check_agreement(plan, what);
            bool staged = plan->n_stages > 0;
            if (k.host_bytes != (staged ? input : 0) || (staged && k.copy_bytes < input) ||
                (!staged && k.copy_bytes != 0))
                fail_msg("%s: host %lld, copies %lld, input %lld", what, (long long)k.host_bytes,
                         (long long)k.copy_bytes, (long long)input);
            if (k.peak_bytes > c.cost.peak_bytes || k.peak_bytes < c.cost.peak_bytes - input ||
                k.flops != c.cost.flops)
                fail_msg("%s: device peak %lld with offload, %lld without (input %lld)", what,
                         (long long)k.peak_bytes, (long long)c.cost.peak_bytes, (long long)input);
            plan_free(plan);
            snprintf(what, sizeof what, "%s %s offload input,boundary", net->name,
                     plan_strategy_name((plan_strategy)st));
            plan = build(net, &both, &c.spec);
            plan_cost kb = check_agreement(plan, what);
            if (kb.peak_bytes > k.peak_bytes || kb.host_bytes < k.host_bytes || kb.flops != k.flops)
                fail_msg("%s: device %lld host %lld, input alone: %lld, %lld", what,
                         (long long)kb.peak_bytes, (long long)kb.host_bytes, (long long)k.peak_bytes,
                         (long long)k.host_bytes);
            plan_free(plan);
        }
        net_free(net);
    }
}

/* --boundaries recompute on every zoo net and row strategy (batch 2): the closed form equals
 * the replay; a plan of the same spec keeps no boundary for the backward, so its peak is never
 * above the one that keeps them by more than the overl twin's cones, and it costs at least the
 * same compute (the backward recomputes each partition's cone). */
static void test_recomputed_boundaries_agree(void **state)
{
    for (size_t z = 0; z < sizeof zoo_cases / sizeof zoo_cases[0]; z++) {
        net_t *net = test_zoo(zoo_cases[z].net);
        plan_config cfg = config(2, zoo_cases[z].bn_at_8), rec = cfg;
        rec.recompute_boundaries = true;
        for (int st = STRAT_ROW; st < STRAT_COUNT; st++) {
            plan_choice c = choose(net, &cfg, (plan_strategy)st, 0);
            char what[128];
            snprintf(what, sizeof what, "%s %s boundaries recomputed", net->name,
                     plan_strategy_name((plan_strategy)st));
            plan_t *plan = build(net, &rec, &c.spec);
            plan_cost k = check_agreement(plan, what);
            bool tiled = c.spec.kind != PART_OVERLAP;
            if (tiled && k.flops < c.cost.flops)
                fail_msg("%s: %lld FLOPs, fewer than keeping them (%lld)", what, (long long)k.flops,
                         (long long)c.cost.flops);
            if (!tiled && (k.flops != c.cost.flops || k.peak_bytes != c.cost.peak_bytes))
                fail_msg("%s: overl's plan changed", what);
            plan_free(plan);
        }
        net_free(net);
    }
}

/* --bn frozen on every zoo net and strategy (batch 8, default N and --rows 3): the closed form
 * equals the replay, and the schedule holds no BatchNorm statistics, no gradient reductions, no
 * STATS or GSTATS pass, while every BatchNorm step reads the running statistics (frozen flag). */
static void test_frozen_bn_plans_agree_and_keep_no_statistics(void **state)
{
    for (size_t z = 0; z < sizeof zoo_cases / sizeof zoo_cases[0]; z++) {
        net_t *net = test_zoo(zoo_cases[z].net);
        plan_config cfg = config(8, BN_FROZEN);
        for (int st = 0; st < STRAT_COUNT; st++)
            for (int rows = 0; rows <= 3; rows += 3) {
                plan_choice c = choose(net, &cfg, (plan_strategy)st, st >= STRAT_ROW ? rows : 0);
                char what[128];
                snprintf(what, sizeof what, "%s %s rows %d bn frozen", net->name,
                         plan_strategy_name((plan_strategy)st), rows);
                plan_t *plan = build(net, &cfg, &c.spec);
                check_agreement(plan, what);
                sched_t s;
                sched_init(&s);
                plan_emit(plan, &s);
                for (int t = 0; t < s.n_tensors; t++)
                    if (s.tensors[t].kind == TK_BN_STATS || s.tensors[t].kind == TK_BN_GRED)
                        fail_msg("%s: tensor %d holds BatchNorm statistics", what, t);
                for (int i = s.step_begin; i < s.step_end; i++) {
                    const sched_step *p = &s.steps[i];
                    if (p->pass == PASS_STATS || p->pass == PASS_GSTATS)
                        fail_msg("%s: step %d is a statistics pass", what, i);
                    if (p->op == STEP_RUN && p->pass != PASS_UPDATE &&
                        net->nodes[p->node].op == OP_BATCHNORM &&
                        (!(p->flags & RUN_BN_FROZEN) || s.runs[p->run].running < 0))
                        fail_msg("%s: BatchNorm step %d does not read the running statistics",
                                 what, i);
                }
                sched_free(&s);
                plan_free(plan);
            }
        net_free(net);
    }
}

/* The same agreement with --rows fixed (1, 3, 8, and more partitions than some stages have
 * rows, which plan_build clamps), for every row strategy on every zoo net, batch 8, stripe BN
 * for the ResNets deeper than 18 (exact BN is covered above and in the small nets). */
static void test_closed_form_equals_replay_with_fixed_rows(void **state)
{
    const int rows[] = {1, 3, 8, 40};
    for (size_t z = 0; z < sizeof zoo_cases / sizeof zoo_cases[0]; z++) {
        net_t *net = test_zoo(zoo_cases[z].net);
        plan_config cfg = config(8, zoo_cases[z].bn_at_64);
        for (int st = STRAT_ROW; st < STRAT_COUNT; st++)
            for (int r = 0; r < 4; r++) {
                plan_choice c = choose(net, &cfg, (plan_strategy)st, rows[r]);
                char what[128];
                snprintf(what, sizeof what, "%s %s rows %d", net->name,
                         plan_strategy_name((plan_strategy)st), rows[r]);
                check_spec_agrees(net, &cfg, &c.spec, what);
            }
        net_free(net);
    }
}

/* Other configurations move every term of the closed form: fp16 and bf16 halve feature maps and
 * parameters, Adam doubles optimizer state, SGD has none, a workspace adds a persistent tensor;
 * checkpoint segments set by hand. Agreement holds for each. */
static void test_closed_form_equals_replay_across_dtypes_optimizers_workspace(void **state)
{
    const char *nets[] = {"tiny-resnet", "tiny-mix", "vgg11"};
    for (int n = 0; n < 3; n++) {
        net_t *net = test_zoo(nets[n]);
        for (int d = 0; d < DT_COUNT; d++)
            for (int o = 0; o < OPTIM_COUNT; o++) {
                plan_config cfg = config(4, (d + o) % 2 ? BN_STRIPE : BN_EXACT);
                cfg.dtype = (plan_dtype)d;
                cfg.optim = (plan_optim)o;
                cfg.workspace_bytes = o == OPTIM_ADAM ? 3 << 20 : 0;
                for (int st = 0; st < STRAT_COUNT; st++) {
                    plan_request req = {.strategy = (plan_strategy)st, .rows = st >= STRAT_ROW ? 4 : 0,
                                        .segments = st == STRAT_CHECKPOINT ? 3 : 0};
                    plan_choice c;
                    assert_int_equal(strategy_choose(net, &cfg, &req, &c), LR_OK);
                    char what[128];
                    snprintf(what, sizeof what, "%s %s %s %s", nets[n],
                             plan_strategy_name((plan_strategy)st), cost_dtype_name(cfg.dtype),
                             cost_optim_name(cfg.optim));
                    check_spec_agrees(net, &cfg, &c.spec, what);
                }
            }
        net_free(net);
    }
}

/* Hybrid specs with hand-chosen cuts, several stages with different N, each partitioning, both
 * BN modes and batches 1 and 3: tiny-resnet cut after relu1, b1_relu2 (a block output) and
 * b2_relu2; tiny-mix after relu1, cat (the concat joins the branch) and pool3. */
static void test_closed_form_equals_replay_for_hand_cut_hybrids(void **state)
{
    const struct {
        const char *net;
        const char *cuts[4];
        int parts[4];
    } cases[] = {
        {"tiny-resnet", {"relu1", "b1_relu2", "b2_relu2", NULL}, {3, 2, 4}},
        {"tiny-resnet", {"bn1", "b1_add", "b2_add", NULL}, {5, 1, 2}},
        {"tiny-resnet", {"b2_relu2", NULL}, {7}},
        {"tiny-mix", {"relu1", "cat", "pool3", NULL}, {4, 3, 2}},
        {"tiny-mix", {"conv1", "cat", "bn3", "pool3"}, {2, 6, 1, 3}},
        {"tiny-vgg", {"pool1", "relu2_1", "pool2", NULL}, {4, 2, 3}},
    };
    const plan_partitioning kinds[] = {PART_TILE_OUT, PART_TILE_IN, PART_OVERLAP};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        net_t *net = test_zoo(cases[i].net);
        plan_spec spec = {.strategy = STRAT_2PS_H};
        for (int s = 0; s < 4 && cases[i].cuts[s]; s++) {
            spec.cut[s] = find(net, cases[i].cuts[s]);
            spec.parts[s] = cases[i].parts[s];
            spec.n_stages = s + 1;
        }
        for (int k = 0; k < 3; k++)
            for (int bn = 0; bn < BN_COUNT; bn++)
                for (int batch = 1; batch <= 3; batch += 2) {
                    spec.kind = kinds[k];
                    plan_config cfg = config(batch, (plan_bn)bn);
                    cfg.offload = (unsigned)(k + bn + batch) % 4; /* none, input, boundary, both */
                    cfg.recompute_boundaries = (k + bn) % 2 == 1;
                    char what[160];
                    snprintf(what, sizeof what, "%s case %zu kind %d bn %s batch %d offload %u",
                             cases[i].net, i, k, plan_bn_name((plan_bn)bn), batch, cfg.offload);
                    check_spec_agrees(net, &cfg, &spec, what);
                }
        net_free(net);
    }
}

/* ------------------------------------------------------------------ hand-computed peaks */

/* Column training of tiny-vgg, batch 1, fp32, momentum.
 * Parameters: conv1_1 16*1*9+16 = 160, conv1_2 16*16*9+16 = 2320, conv2_1 32*16*9+32 = 4640,
 * conv2_2 32*32*9+32 = 9248, fc1 1568*64+64 = 100416, fc2 64*10+10 = 650: 117434 in all.
 * Persistent: 117434 * 4 bytes * (weights + gradients + 1 momentum slot) = 1409208 static,
 * plus the input 28*28*4 = 3136 and one int32 label: 3140.
 * Maps: A = 16x28x28 = 50176 B, P1 = 16x14x14 = 12544 B, G = 32x14x14 = 25088 B.
 * Forward keeps what backward reads: relu outputs (relu reads its output), pool inputs (= relu
 * outputs) and conv inputs; conv outputs die after their relu. Backward of relu2_2 is the peak:
 * live are relu1_1, relu1_2 (2A), pool1 (P1), relu2_1 and relu2_2 (2G) and the gradients of
 * relu2_2 and conv2_2 (2G); pool2, fc and loss values are gone by then:
 *   2*50176 + 12544 + 4*25088 = 213248 activation bytes; the peak is 1412348 + 213248. */
static void test_column_peak_of_tiny_vgg_by_hand(void **state)
{
    net_t *net = test_zoo("tiny-vgg");
    plan_config cfg = config(1, BN_EXACT);
    plan_spec spec = {.strategy = STRAT_COLUMN, .n_stages = 0};
    plan_t *plan = build(net, &cfg, &spec);
    plan_cost c = check_agreement(plan, "tiny-vgg column");
    assert_int_equal(net->params, 117434);
    assert_int_equal(c.static_bytes, 1409208);
    assert_int_equal(c.input_bytes, 3140);
    assert_int_equal(c.peak_bytes, 1409208 + 3140 + 213248);
    assert_int_equal(c.peak_pass, PASS_BWD);
    assert_int_equal(c.peak_node, find(net, "relu2_2"));
    plan_free(plan);
    net_free(net);
}

/* A 1x6x4 image through conv k3 p1 (2 ch), relu, conv k3 p1 (2 ch), relu, maxpool 2, fc, loss. */
static const char *small_row_net =
    "{\"name\": \"small-row\", \"input\": {\"channels\": 1, \"height\": 6, \"width\": 4},"
    " \"layers\": ["
    "  {\"name\": \"c1\", \"op\": \"conv\", \"out_channels\": 2, \"kernel\": 3, \"pad\": 1},"
    "  {\"name\": \"r1\", \"op\": \"relu\"},"
    "  {\"name\": \"c2\", \"op\": \"conv\", \"out_channels\": 2, \"kernel\": 3, \"pad\": 1},"
    "  {\"name\": \"r2\", \"op\": \"relu\"},"
    "  {\"name\": \"pool\", \"op\": \"maxpool\", \"kernel\": 2},"
    "  {\"name\": \"fc\", \"op\": \"fc\", \"out_features\": 10},"
    "  {\"name\": \"loss\", \"op\": \"softmax_xent\"}]}";

static void range_is(const plan_stage *st, const rowrange *r, int node, int j, int lo, int hi)
{
    rowrange x = r[plan_idx(st, node, j)];
    if (x.lo != lo || x.hi != hi)
        fail_msg("node %d partition %d: [%d, %d], expected [%d, %d]", node, j, x.lo, x.hi, lo, hi);
}

/* `row` with 2 partitions on small_row_net, batch 1 (a row of a 2x_x4 map is 32 bytes).
 * Region: c1..pool (fc needs every row). Output split: pool rows 3 -> p0 [0,0], p1 [1,2].
 * Cones backwards (p1 takes all that is left): r2 and c2 p0 [0,1] (pool k2 s2), p1 [2,5];
 * r1 and c1 p0 [0,2] (c2 k3 p1 reads rows [-1,2]), p1 [3,5].
 * Held: c2 in p1 reads r1 rows [1,5], so r1 p1 holds [1,5]; the boundary handed from p0 is r1
 * rows [1,2] (64 B); no other layer has one.
 * Persistent: params 20 + 38 + 130 = 188, * 4 * 3 = 2256; input 96 + label 4.
 * Peak: backward of p1 (stored in forward, not recomputed), at r2's backward: r1 p1 value
 * [1,5] 160 + r2 p1 value [2,5] 128 + dO (pool, 2x3x2 = 48) + dr2 [2,5] 128 + dc2 [2,5] 128
 * = 592; the forward never exceeds 464 and p0's backward 400. Peak 2356 + 592 = 2948.
 * FLOPs of column (cost.h; per output element, backward twice for conv and fc): c1 48 outputs
 * * (2*1*9+1) = 912 fwd, 1824 bwd; r1 48, 48; c2 48 * (2*2*9+1) = 1776, 3552; r2 48, 48;
 * pool 12 * 2*2 = 48, 48; fc 10 * (2*12+1) = 250, 500; loss 4*10 = 40, 40; momentum update
 * (2+3) * 188 = 940: 3122 + 6060 + 940 = 10122.
 * The row plan's forward and backward rows tile each layer as in column; p0 is recomputed once:
 * c1 3 rows * 8 outputs * 19 = 456, r1 24, c2 2 * 8 * 37 = 592, r2 16: 10122 + 1088. */
static void test_row_peak_of_a_small_net_by_hand(void **state)
{
    net_t *net = test_parse(small_row_net);
    int c1 = find(net, "c1"), r1 = find(net, "r1"), c2 = find(net, "c2"), r2 = find(net, "r2");
    int pool = find(net, "pool");
    plan_config cfg = config(1, BN_EXACT);
    plan_spec spec = {.strategy = STRAT_ROW, .kind = PART_TILE_OUT, .n_stages = 1,
                      .cut = {pool}, .parts = {2}};
    assert_int_equal(plan_default_region_end(net), pool);
    plan_t *plan = build(net, &cfg, &spec);
    const plan_stage *st = &plan->stages[0];
    range_is(st, st->own, pool, 0, 0, 0);
    range_is(st, st->own, pool, 1, 1, 2);
    range_is(st, st->own, r2, 0, 0, 1);
    range_is(st, st->own, c2, 1, 2, 5);
    range_is(st, st->own, r1, 0, 0, 2);
    range_is(st, st->own, c1, 1, 3, 5);
    range_is(st, st->held, r1, 1, 1, 5);
    range_is(st, st->held, c1, 1, 3, 5);
    range_is(st, st->held, c2, 1, 2, 5);
    range_is(st, st->held, r2, 1, 2, 5);
    assert_true(st->store_last);
    plan_cost c = check_agreement(plan, "small-row row 2");
    assert_int_equal(c.static_bytes, 2256);
    assert_int_equal(c.input_bytes, 100);
    assert_int_equal(c.peak_bytes, 2356 + 592);
    assert_int_equal(c.peak_pass, PASS_BWD);
    assert_int_equal(c.peak_node, r2);
    assert_int_equal(c.peak_part, 1);

    /* the boundary: exactly one tensor of class boundary in forward, r1 rows [1,2] */
    sched_t s;
    sched_init(&s);
    plan_emit(plan, &s);
    int n_bnd = 0;
    for (int t = 0; t < s.n_tensors; t++)
        if (s.tensors[t].cls == TC_BOUNDARY && s.tensors[t].kind == TK_VALUE) {
            n_bnd++;
            assert_int_equal(s.tensors[t].node, r1);
            assert_int_equal(s.tensors[t].row_lo, 1);
            assert_int_equal(s.tensors[t].row_hi, 2);
            assert_int_equal(s.tensors[t].bytes, 64);
        }
    assert_int_equal(n_bnd, 1);
    sched_free(&s);

    /* column on the same net: every map 6 rows (192 B); the peak is r2's backward: r1, r2,
     * dr2, dc2 = 4 * 192 = 768 activation bytes */
    int64_t col_flops;
    assert_int_equal(column_peak(net, &cfg, &col_flops), 2356 + 768);
    assert_int_equal(col_flops, 10122);
    assert_int_equal(c.flops, 10122 + 1088);
    plan_free(plan);
    net_free(net);
}

/* ------------------------------------------------------------------ invariants */

static const char *const all_nets[] = {"vgg11", "vgg16", "alexnet", "resnet18", "resnet50",
                                       "tiny-vgg", "tiny-resnet", "tiny-mix"};
#define N_ALL (int)(sizeof all_nets / sizeof all_nets[0])

/* With one partition (--rows 1) a single-stage row strategy runs the region column-wise, so it
 * differs from column only in when the stage output O and its gradient live: O is allocated
 * before the region runs (column: after), dO lives through the whole stage backward, and an O
 * that its own backward reads (relu: the ResNet block outputs) stays until then too. Hence
 *   column <= peak <= column + |O| * (1 + [O is a relu]),
 * and FLOPs equal column's: the only partition is the last, whose forward stores what backward
 * reads, so nothing is recomputed (one recompute of the region happens only for N > 1). */
static void test_one_partition_costs_column_plus_the_kept_output(void **state)
{
    for (int n = 0; n < N_ALL; n++) {
        net_t *net = test_zoo(all_nets[n]);
        plan_config cfg = config(8, BN_STRIPE);
        int64_t col_flops, col = column_peak(net, &cfg, &col_flops);
        int end = plan_default_region_end(net);
        int64_t o = cost_node_bytes(net, end, 8, 4);
        int64_t bound = col + o * (plan_bwd_reads_output(net->nodes[end].op) ? 2 : 1);
        for (int st = STRAT_ROW; st <= STRAT_OVERL; st++) {
            plan_choice c = choose(net, &cfg, (plan_strategy)st, 1);
            assert_int_equal(c.spec.n_stages, 1);
            assert_int_equal(c.spec.parts[0], 1);
            if (c.cost.peak_bytes < col || c.cost.peak_bytes > bound)
                fail_msg("%s %s rows 1: peak %lld outside [%lld, %lld]", all_nets[n],
                         plan_strategy_name((plan_strategy)st), (long long)c.cost.peak_bytes,
                         (long long)col, (long long)bound);
            assert_int_equal(c.cost.flops, col_flops);
        }
        net_free(net);
    }
}

/* FLOPs a plan must report, from its ranges alone: column's, plus for every stage node the
 * forward rows computed beyond the map (overlapping cones), the backward rows beyond it (overl
 * back-propagates its whole cone), and the recompute of every partition but a stored last one,
 * over the nodes marked rerun. Valid without exact-BN passes (stripe BN or no BN). */
static int64_t flops_from_ranges(const plan_t *p, int64_t col_flops)
{
    const net_t *net = p->net;
    int b = p->cfg.batch;
    int64_t f = col_flops;
    for (int s = 0; s < p->n_stages; s++) {
        const plan_stage *st = &p->stages[s];
        assert_false(st->bn_passes);
        for (int l = st->in_node + 1; l <= st->out_node; l++) {
            f -= cost_fwd_flops(net, l, b, net->nodes[l].h) + cost_bwd_flops(net, l, b, net->nodes[l].h);
            for (int j = 0; j < st->parts; j++) {
                int i = plan_idx(st, l, j);
                if (plan_sums_at(st, l)) { /* adds its input rows, once each way */
                    f += 2 * cost_sum_flops(net, l, b, rr_count(st->sum_in[j]));
                    continue;
                }
                rowrange bwd = st->kind == PART_OVERLAP ? st->comp[i] : st->own[i];
                f += cost_fwd_flops(net, l, b, rr_count(st->comp[i]));
                f += cost_bwd_flops(net, l, b, rr_count(bwd));
                bool stored = st->store_last && j == st->parts - 1;
                if (st->rerun[l] && !stored)
                    f += cost_fwd_flops(net, l, b, rr_count(st->comp[i]));
            }
        }
    }
    return f;
}

/* Tiled partitions compute every row once in forward and once in backward, so a row plan costs
 * column plus one recompute of the region for partitions 0..P-2; overlapping ones add their
 * halos, in forward, backward and recompute. The reported FLOPs equal that sum exactly, for the
 * chosen and fixed N of every row strategy (stripe BN: no statistics passes). Exact because in
 * the zoo every row of every map reaches the loss; rows no consumer reads get no gradient and
 * their backward is skipped (see check_stage_flops for the general inequality). */
static void test_flops_are_column_plus_recompute_and_halos(void **state)
{
    const int rows[] = {0, 2, 5};
    for (int n = 0; n < N_ALL; n++) {
        net_t *net = test_zoo(all_nets[n]);
        plan_config cfg = config(2, BN_STRIPE);
        int64_t col_flops;
        column_peak(net, &cfg, &col_flops);
        for (int st = STRAT_CHECKPOINT; st < STRAT_COUNT; st++)
            for (int r = 0; r < 3; r++) {
                plan_choice c = choose(net, &cfg, (plan_strategy)st, st == STRAT_CHECKPOINT ? 0 : rows[r]);
                plan_t *plan = build(net, &cfg, &c.spec);
                int64_t want = flops_from_ranges(plan, col_flops);
                if (c.cost.flops != want)
                    fail_msg("%s %s rows %d: flops %lld, ranges give %lld", all_nets[n],
                             plan_strategy_name((plan_strategy)st), rows[r],
                             (long long)c.cost.flops, (long long)want);
                assert_true(c.cost.flops >= col_flops);
                plan_free(plan);
            }
        net_free(net);
    }
}

/* Activation bytes at the peak (peak - static - input) are batch * per-image bytes for every
 * feature map; only BN statistics, BN gradient reductions and the 4-byte loss do not scale, and
 * the loss is freed before these peaks (all in backward). Nets without BN: doubling the batch
 * doubles them exactly, for column and for row plans with N fixed (their ranges do not depend
 * on the batch). With BN (stripe): 2*act(b) - act(2b) lies in [0, sum over BN layers of
 * (24 + 16) * C times the stripes of statistics alive at once, at most P + 1]. */
static void test_activation_bytes_scale_linearly_with_batch(void **state)
{
    for (int n = 0; n < N_ALL; n++) {
        net_t *net = test_zoo(all_nets[n]);
        int64_t bn_bytes = 0;
        for (int l = 1; l < net->n_nodes; l++)
            if (net->nodes[l].op == OP_BATCHNORM)
                bn_bytes += plan_bn_stats_bytes(net, l) + plan_bn_gred_bytes(net, l);
        const struct {
            plan_strategy st;
            int rows;
        } plans[] = {{STRAT_COLUMN, 0}, {STRAT_ROW, 3}, {STRAT_2PS, 4}, {STRAT_OVERL, 2}, {STRAT_2PS_H, 4}};
        for (size_t k = 0; k < sizeof plans / sizeof plans[0]; k++)
            for (int b = 1; b <= 16; b *= 4) {
                plan_config c1 = config(b, BN_STRIPE), c2 = config(2 * b, BN_STRIPE);
                int end = plan_default_region_end(net); /* the same region at both batches */
                plan_choice x = choose_at(net, &c1, plans[k].st, plans[k].rows, end);
                plan_choice y = choose_at(net, &c2, plans[k].st, plans[k].rows, end);
                assert_memory_equal(x.spec.parts, y.spec.parts, sizeof x.spec.parts);
                int64_t ax = x.cost.peak_bytes - x.cost.static_bytes - x.cost.input_bytes;
                int64_t ay = y.cost.peak_bytes - y.cost.static_bytes - y.cost.input_bytes;
                int64_t gap = 2 * ax - ay;
                int64_t most = bn_bytes * ((plans[k].rows ? plans[k].rows : 1) + 1);
                bool ok = bn_bytes == 0 ? gap == 0 : gap >= 0 && gap <= most;
                if (!ok)
                    fail_msg("%s %s rows %d batch %d -> %d: activations %lld -> %lld", all_nets[n],
                             plan_strategy_name(plans[k].st), plans[k].rows, b, 2 * b,
                             (long long)ax, (long long)ay);
                /* static bytes do not depend on the batch, input bytes are linear in it */
                assert_int_equal(x.cost.static_bytes, y.cost.static_bytes);
                assert_int_equal(2 * x.cost.input_bytes, y.cost.input_bytes);
            }
        net_free(net);
    }
}

/* A row plan holds more than column at the same point only through
 *   - each stage's output O, allocated before the stage runs, and its gradient dO, kept
 *     through the stage's backward (with O itself when a relu reads it back): |O| (1 + [relu]);
 *   - halos: a stripe holds held (tiled) or comp (overl) rows beyond its own rows;
 *   - boundaries kept from the first forward until the recompute that reads them.
 * So peak <= column peak + sum of those, computed from the plan's ranges (for N = 1, where
 * halos and boundaries are empty, the bound is reached on every zoo net). Checked for every row
 * strategy, chosen and fixed N. */
static void test_row_peak_is_bounded_by_column_plus_halos_and_boundaries(void **state)
{
    const int rows[] = {0, 1, 2, 4, 8, 16};
    for (int n = 0; n < N_ALL; n++) {
        net_t *net = test_zoo(all_nets[n]);
        plan_config cfg = config(8, BN_STRIPE);
        int64_t col = column_peak(net, &cfg, NULL);
        for (int st = STRAT_ROW; st < STRAT_COUNT; st++)
            for (int r = 0; r < 6; r++) {
                plan_choice c = choose(net, &cfg, (plan_strategy)st, rows[r]);
                plan_t *p = build(net, &cfg, &c.spec);
                int64_t extra = 0;
                for (int s = 0; s < p->n_stages; s++) {
                    const plan_stage *g = &p->stages[s];
                    bool relu = plan_bwd_reads_output(net->nodes[g->out_node].op);
                    extra += cost_node_bytes(net, g->out_node, 8, 4) * (relu ? 2 : 1);
                    for (int l = g->in_node + 1; l <= g->out_node; l++)
                        for (int j = 0; j < g->parts; j++) {
                            int i = plan_idx(g, l, j);
                            extra += rows_bytes(p, l, g->held[i]) - rows_bytes(p, l, g->own[i]);
                            if (g->kind == PART_OVERLAP || j + 1 == g->parts || l == g->out_node)
                                continue;
                            rowrange next = g->held[plan_idx(g, l, j + 1)];
                            if (!rr_empty(next))
                                extra += rows_bytes(p, l, rr_make(next.lo, g->held[i].hi));
                        }
                }
                if (c.cost.peak_bytes > col + extra)
                    fail_msg("%s %s rows %d: peak %lld, column %lld + extra %lld", all_nets[n],
                             plan_strategy_name((plan_strategy)st), rows[r],
                             (long long)c.cost.peak_bytes, (long long)col, (long long)extra);
                plan_free(p);
            }
        net_free(net);
    }
}

/* Checks the ranges of every stage of a plan:
 *  - own ranges tile each layer: partition 0 starts at row 0, each starts where the previous
 *    ended (empty ranges allowed), the last ends at H-1: disjoint, covering [0, H);
 *  - held contains comp contains own, all inside [0, H);
 *  - tiled: the rows a partition holds before its computed ones arrive as a boundary from the
 *    previous partition, which must hold them;
 *  - every row a consumer computes (own when tiled, comp when overlapping) reads only rows its
 *    producer's buffer holds in the same partition (rowdep_need); the stage input is whole;
 *  - a summing stage's reduction reads rows sum_in[j] of its input, which tile that map in order
 *    and lie in the partition's buffer; it touches the output rows whose bins they meet. */
static void check_ranges(const plan_t *p, const char *what)
{
    const net_t *net = p->net;
    for (int s = 0; s < p->n_stages; s++) {
        const plan_stage *st = &p->stages[s];
        for (int l = st->in_node + 1; l <= st->out_node; l++) {
            int h = net->nodes[l].h, next = 0;
            for (int j = 0; j < st->parts; j++) {
                int i = plan_idx(st, l, j);
                rowrange own = st->own[i], comp = st->comp[i], held = st->held[i];
                if (own.lo != next || own.hi < own.lo - 1)
                    fail_msg("%s: %s partition %d owns [%d, %d] after row %d", what,
                             net->nodes[l].name, j, own.lo, own.hi, next - 1);
                next = own.hi + 1;
                if (!rr_contains(comp, own) || !rr_contains(held, comp))
                    fail_msg("%s: %s partition %d: own [%d, %d] comp [%d, %d] held [%d, %d]",
                             what, net->nodes[l].name, j, own.lo, own.hi, comp.lo, comp.hi,
                             held.lo, held.hi);
                if (!rr_empty(held) && (held.lo < 0 || held.hi >= h))
                    fail_msg("%s: %s held [%d, %d] outside the map", what, net->nodes[l].name,
                             held.lo, held.hi);
                /* tiled: rows held before the computed ones come from the previous
                 * partition's boundary [held(j).lo, held(j-1).hi], rows it holds */
                if (st->kind != PART_OVERLAP && j > 0 && held.lo < comp.lo) {
                    rowrange prev = st->held[plan_idx(st, l, j - 1)];
                    rowrange bnd = rr_make(held.lo, prev.hi);
                    if (!rr_contains(prev, bnd) || bnd.hi < comp.lo - 1)
                        fail_msg("%s: %s partition %d holds [%d, %d] from a boundary, partition "
                                 "%d held [%d, %d]",
                                 what, net->nodes[l].name, j, held.lo, comp.lo - 1, j - 1,
                                 prev.lo, prev.hi);
                }
                const net_node *n = &net->nodes[l];
                rowrange rows = st->kind == PART_OVERLAP ? comp : own;
                if (plan_sums_at(st, l)) {
                    rowrange in = st->sum_in[j], prev = j ? st->sum_in[j - 1] : rr_make(-1, -1);
                    if (in.lo != prev.hi + 1 ||
                        (j == st->parts - 1 && in.hi != net->nodes[n->inputs[0]].h - 1))
                        fail_msg("%s: %s partition %d adds [%d, %d] after [%d, %d]", what, n->name,
                                 j, in.lo, in.hi, prev.lo, prev.hi);
                    if (!rr_empty(in) && (comp.lo != rowdep_reach(net, l, in).lo ||
                                          comp.hi != rowdep_reach(net, l, in).hi))
                        fail_msg("%s: %s partition %d touches [%d, %d]", what, n->name, j, comp.lo,
                                 comp.hi);
                }
                for (int k = 0; k < n->n_inputs; k++) {
                    int u = n->inputs[k];
                    if (u == st->in_node)
                        continue;
                    rowrange need = plan_sums_at(st, l) ? st->sum_in[j] : rowdep_need(net, l, k, rows);
                    rowrange have = st->held[plan_idx(st, u, j)];
                    if (!rr_contains(have, need))
                        fail_msg("%s: %s partition %d needs %s rows [%d, %d], holds [%d, %d]",
                                 what, n->name, j, net->nodes[u].name, need.lo, need.hi, have.lo,
                                 have.hi);
                }
            }
            if (next != h)
                fail_msg("%s: own ranges of %s end at row %d of %d", what, net->nodes[l].name,
                         next - 1, h);
        }
    }
}

/* The range invariants for every zoo net, every row strategy, chosen and fixed N (including
 * N larger than some stages' heights), and the hand-cut hybrids of tiny-resnet in all three
 * partitionings. */
static void test_partition_ranges_tile_and_cover_every_read(void **state)
{
    const int rows[] = {0, 2, 3, 7, 32, 300};
    for (int n = 0; n < N_ALL; n++) {
        net_t *net = test_zoo(all_nets[n]);
        plan_config cfg = config(1, BN_STRIPE);
        for (int st = STRAT_CHECKPOINT; st < STRAT_COUNT; st++)
            for (int r = 0; r < 6; r++) {
                plan_choice c = choose(net, &cfg, (plan_strategy)st, st == STRAT_CHECKPOINT ? 0 : rows[r]);
                plan_t *plan = build(net, &cfg, &c.spec);
                char what[128];
                snprintf(what, sizeof what, "%s %s rows %d", all_nets[n],
                         plan_strategy_name((plan_strategy)st), rows[r]);
                check_ranges(plan, what);
                plan_free(plan);
            }
        net_free(net);
    }
    net_t *net = test_zoo("tiny-resnet");
    plan_config cfg = config(1, BN_EXACT);
    for (int k = PART_TILE_OUT; k <= PART_OVERLAP; k++) {
        plan_spec spec = {.strategy = STRAT_2PS_H, .kind = (plan_partitioning)k, .n_stages = 3,
                          .cut = {find(net, "relu1"), find(net, "b1_relu2"), find(net, "b2_relu2")},
                          .parts = {5, 4, 3}};
        plan_t *plan = build(net, &cfg, &spec);
        check_ranges(plan, "tiny-resnet hybrid");
        plan_free(plan);
    }
    net_free(net);
}

/* 2ps splits the region INPUT equally: with 4 partitions of vgg16's 224 input rows, partition j
 * owns input-adjacent conv1_1 rows up to what rows [0, 56(j+1)-1] allow (k3 p1: one row less),
 * and row/overl split the region OUTPUT (pool5, 7 rows -> 1, 2, 2, 2 by floor((j+1)*7/4)). */
static void test_partitionings_split_input_or_output_equally(void **state)
{
    net_t *net = test_zoo("vgg16");
    plan_config cfg = config(1, BN_EXACT);
    int pool5 = find(net, "pool5"), c11 = find(net, "conv1_1");
    plan_spec spec = {.strategy = STRAT_2PS, .kind = PART_TILE_IN, .n_stages = 1,
                      .cut = {pool5}, .parts = {4}};
    plan_t *p = build(net, &cfg, &spec);
    const plan_stage *st = &p->stages[0];
    range_is(st, st->own, c11, 0, 0, 54);
    range_is(st, st->own, c11, 1, 55, 110);
    range_is(st, st->own, c11, 3, 167, 223);
    plan_free(p);
    spec.kind = PART_TILE_OUT;
    p = build(net, &cfg, &spec);
    st = &p->stages[0];
    range_is(st, st->own, pool5, 0, 0, 0);
    range_is(st, st->own, pool5, 1, 1, 2);
    range_is(st, st->own, pool5, 2, 3, 4);
    range_is(st, st->own, pool5, 3, 5, 6);
    plan_free(p);
    net_free(net);
}

/* plan_build clamps N to the rows there are to split (the region output for row and overl,
 * its input for 2ps), and strategy_choose reports the N planned: --rows 300 --region pool5 on
 * vgg16 gives 7 partitions (pool5 has 7 rows) for row and overl and 224 for 2ps. */
static void test_partitions_are_clamped_to_the_rows_available(void **state)
{
    net_t *net = test_zoo("vgg16");
    plan_config cfg = config(1, BN_EXACT);
    int pool5 = find(net, "pool5");
    assert_int_equal(choose_at(net, &cfg, STRAT_ROW, 300, pool5).spec.parts[0], 7);
    assert_int_equal(choose_at(net, &cfg, STRAT_OVERL, 300, pool5).spec.parts[0], 7);
    assert_int_equal(choose_at(net, &cfg, STRAT_2PS, 300, pool5).spec.parts[0], 224);
    assert_int_equal(choose_at(net, &cfg, STRAT_2PS, 100, pool5).spec.parts[0], 100);
    plan_spec spec = {.strategy = STRAT_ROW, .kind = PART_TILE_OUT, .n_stages = 1,
                      .cut = {find(net, "pool5")}, .parts = {50}};
    plan_t *p = build(net, &cfg, &spec);
    assert_int_equal(p->stages[0].parts, 7);
    assert_int_equal(p->spec.parts[0], 7);
    plan_free(p);
    net_free(net);
}

/* ------------------------------------------------------------------ strategy choices */

/* Without --rows and --region, row/2ps/overl take the region end (among the resolution cuts) and
 * N (2..32) by the table's objective (strategy.h): no (region, N) has a peak more than 1% below
 * the chosen plan's, and none within 1% of the lowest peak has less compute; they say so
 * (rows_chosen, region_chosen), and --rows or --region fix the one they name. Both BN modes that
 * differ in cost (exact: statistics passes make small N and short regions cheap). */
static void test_single_stage_search_is_the_best_by_the_objective(void **state)
{
    const char *nets[] = {"vgg16", "tiny-resnet", "tiny-mix"};
    for (int n = 0; n < 3; n++) {
        net_t *net = test_zoo(nets[n]);
        int ends[PLAN_MAX_STAGES];
        int n_ends = strategy_resolution_cuts(net, plan_default_region_end(net), ends, PLAN_MAX_STAGES);
        for (int bn = 0; bn < 2; bn++) {
            plan_config cfg = config(8, bn ? BN_EXACT : BN_STRIPE);
            for (int st = STRAT_ROW; st <= STRAT_OVERL; st++) {
                plan_choice best = choose(net, &cfg, (plan_strategy)st, 0);
                assert_true(best.rows_chosen && best.region_chosen == (n_ends > 1));
                int64_t lowest = INT64_MAX;
                plan_choice all[PLAN_MAX_STAGES][31];
                for (int r = 0; r < n_ends; r++)
                    for (int k = 2; k <= 32; k++) {
                        all[r][k - 2] = choose_at(net, &cfg, (plan_strategy)st, k, ends[r]);
                        if (all[r][k - 2].cost.peak_bytes < lowest)
                            lowest = all[r][k - 2].cost.peak_bytes;
                    }
                assert_true(strategy_near_tie(best.cost.peak_bytes, lowest));
                for (int r = 0; r < n_ends; r++)
                    for (int k = 0; k < 31; k++) {
                        const plan_cost *c = &all[r][k].cost;
                        if (strategy_near_tie(c->peak_bytes, lowest) && c->flops < best.cost.flops)
                            fail_msg("%s %s: chose %s N %d (%lld B, %lld FLOPs), %s N %d is a "
                                     "near-tie at %lld FLOPs", nets[n],
                                     plan_strategy_name((plan_strategy)st),
                                     net->nodes[best.spec.cut[0]].name, best.spec.parts[0],
                                     (long long)best.cost.peak_bytes, (long long)best.cost.flops,
                                     net->nodes[ends[r]].name, k + 2, (long long)c->peak_bytes);
                    }
                plan_choice fixed = choose_at(net, &cfg, (plan_strategy)st, 5, ends[0]);
                assert_false(fixed.rows_chosen || fixed.region_chosen);
                assert_int_equal(fixed.spec.cut[0], ends[0]);
            }
        }
        net_free(net);
    }
}

/* 2ps with 2ps-h (overl with overl-h) at cfg, both ways they are chosen together: paired (the
 * table's) and a hybrid from its seed (strategy_choose_hybrid_from, as the capacity search's
 * hybrid input question takes it), each against each strategy's own choice, cost for cost. */
static void assert_pair_and_seed_are_own(const net_t *net, const plan_config *cfg)
{
    for (int st = STRAT_2PS; st <= STRAT_OVERL; st++) {
        plan_strategy h = st == STRAT_2PS ? STRAT_2PS_H : STRAT_OVERL_H;
        plan_choice one, hyb;
        assert_int_equal(strategy_choose_pair(net, cfg, (plan_strategy)st, &one, &hyb), LR_OK);
        plan_choice own = choose(net, cfg, (plan_strategy)st, 0);
        plan_choice own_h = choose(net, cfg, h, 0);
        if (memcmp(&one.spec, &own.spec, sizeof own.spec) != 0 ||
            memcmp(&one.cost, &own.cost, sizeof own.cost) != 0 ||
            one.region_chosen != own.region_chosen || one.rows_chosen != own.rows_chosen)
            fail_msg("%s at %d bn %s %s: paired %s/%d (%lld B) vs own %s/%d (%lld B)", net->name,
                     net->nodes[0].h, plan_bn_name(cfg->bn), plan_strategy_name((plan_strategy)st),
                     net->nodes[one.spec.cut[0]].name, one.spec.parts[0],
                     (long long)one.cost.peak_bytes, net->nodes[own.spec.cut[0]].name,
                     own.spec.parts[0], (long long)own.cost.peak_bytes);
        assert_memory_equal(&hyb.spec, &own_h.spec, sizeof hyb.spec);
        assert_memory_equal(&hyb.cost, &own_h.cost, sizeof hyb.cost);
        strategy_seed seed;
        plan_choice from;
        assert_int_equal(strategy_choose_seed(net, cfg, (plan_strategy)st, &seed), LR_OK);
        assert_int_equal(strategy_choose_hybrid_from(net, cfg, &seed, &from), LR_OK);
        assert_memory_equal(&seed.one.spec, &own.spec, sizeof own.spec);
        assert_memory_equal(&seed.one.cost, &own.cost, sizeof own.cost);
        assert_memory_equal(&from.spec, &own_h.spec, sizeof from.spec);
        assert_memory_equal(&from.cost, &own_h.cost, sizeof from.cost);
        assert_true(from.rows_chosen == own_h.rows_chosen &&
                    from.region_chosen == own_h.region_chosen);
        strategy_seed_free(&seed);
    }
}

/* The table takes 2ps with 2ps-h (overl with overl-h) together, and the capacity search a hybrid
 * from its seed: the single-stage plan is the one 2ps's own search picks, cost for cost, and the
 * hybrid the one 2ps-h's picks; on the tiny nets, vgg16 and resnet18, every BN mode; at high
 * resolution (N past 32), with an offload set and with --boundaries auto. */
static void test_paired_choice_equals_each_strategys_own(void **state)
{
    const char *nets[] = {"tiny-vgg", "tiny-resnet", "tiny-mix", "vgg16", "resnet18"};
    for (size_t ni = 0; ni < sizeof nets / sizeof nets[0]; ni++) {
        net_t *net = test_zoo(nets[ni]);
        for (int bn = 0; bn < BN_COUNT; bn++) {
            plan_config cfg = config(ni < 3 ? 8 : 16, (plan_bn)bn);
            assert_pair_and_seed_are_own(net, &cfg);
        }
        net_free(net);
    }
    const struct {
        const char *net;
        int input;
        unsigned offload;
        bool boundaries_auto;
    } cases[] = {{"tiny-mix", 1024, 0, false},
                 {"resnet18", 2048, 0, false},
                 {"tiny-resnet", 512, OFFLOAD_INPUT, false},
                 {"tiny-resnet", 256, 0, true}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        net_t *net = test_zoo(cases[k].net);
        assert_int_equal(net_reshape(net, cases[k].input, cases[k].input), LR_OK);
        plan_config cfg = config(1, BN_EXACT);
        cfg.offload = cases[k].offload;
        cfg.boundaries_auto = cases[k].boundaries_auto;
        assert_pair_and_seed_are_own(net, &cfg);
        net_free(net);
    }
}

/* A hybrid's search skips the single-stage plans at region ends its single-stage search found
 * beyond the near-tie of the lowest peak (strategy_stage_memo_beyond), and those of an N it left
 * out by their floor (strategy_stage_memo_pruned): every plan there is past that near-tie (of
 * the lowest peak of all ends, of a larger N at the same end). Its own probes skip an N whose
 * floor is past the near-tie of the lowest peak (strategy_stage_floor). The answer is the one
 * the search gives probing every N (auto_request.every_n) with and without the memo, and the
 * cases include all three. Exact BatchNorm, whose statistics passes make the ends differ most. */
static void test_hybrid_search_skips_only_ends_that_cannot_win(void **state)
{
    const struct {
        const char *net;
        int batch, in_h;
    } cases[] = {{"resnet18", 64, 0}, {"resnet18", 1, 1024}, {"tiny-resnet", 8, 0},
                 {"resnet18", 1, 4096}};
    int beyond = 0, pruned = 0, rising = 0, floored = 0;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        net_t *net = test_zoo(cases[k].net);
        if (cases[k].in_h)
            assert_int_equal(net_reshape(net, cases[k].in_h, cases[k].in_h), LR_OK);
        for (int bn = BN_EXACT; bn <= BN_EXACT; bn++) {
            plan_config cfg = config(cases[k].batch, (plan_bn)bn);
            for (int kind = PART_TILE_IN; kind <= PART_OVERLAP; kind++) {
                plan_choice one;
                strategy_stage_memo kept;
                int end = plan_default_region_end(net);
                assert_int_equal(strategy_single_stage_kept(net, &cfg, (plan_partitioning)kind, end,
                                                            &one, &kept), LR_OK);
                /* an end reported beyond has no plan of N in 2..32 near-tied with the lowest
                 * peak of all ends' (which that search's lowest is no lower than) */
                int64_t lowest = INT64_MAX, at[PLAN_MAX_STAGES][STRATEGY_SINGLE_MAX_N + 1];
                for (int r = 0; r < kept.n_ends; r++)
                    for (int n = 2; n <= STRATEGY_SINGLE_MAX_N; n++) {
                        plan_spec sp = {.kind = (plan_partitioning)kind, .n_stages = 1,
                                        .cut = {kept.ends[r]}, .parts = {n}};
                        plan_cost c;
                        bool usable;
                        assert_int_equal(strategy_evaluate_usable(net, &cfg, &sp, &c, &usable), LR_OK);
                        at[r][n] = usable ? c.peak_bytes : INT64_MAX;
                        lowest = at[r][n] < lowest ? at[r][n] : lowest;
                    }
                for (int r = 0; r < kept.n_ends; r++) {
                    if (!strategy_stage_memo_beyond(&kept, (plan_partitioning)kind, cfg.bn, kept.ends[r]))
                        continue;
                    beyond++;
                    for (int n = 2; n <= STRATEGY_SINGLE_MAX_N; n++)
                        if (at[r][n] < INT64_MAX && strategy_near_tie(at[r][n], lowest))
                            fail_msg("%s kind %d: end %s beyond, but N=%d peaks at %lld B, lowest %lld B",
                                     cases[k].net, kind, net->nodes[kept.ends[r]].name, n,
                                     (long long)at[r][n], (long long)lowest);
                }
                /* an N the search left out by a floor peaks past the near-tie of the lowest
                 * peak of another N at its end, up to the first one past 32 the search measures
                 * (strategy_parts_floor: a larger N's; strategy_kept_floor: an N measured
                 * first), or where the search does not go past 32 from its end, of any N at
                 * another end */
                for (int r = 0; r < kept.n_ends; r++) {
                    int64_t past = INT64_MAX, other = INT64_MAX;
                    int grid[2], most = strategy_max_parts(net, (plan_partitioning)kind, 0,
                                                           kept.ends[r]);
                    for (int q = 0; q < kept.n_ends && most <= STRATEGY_SINGLE_MAX_N; q++)
                        for (int n = 2; n <= STRATEGY_SINGLE_MAX_N && q != r; n++)
                            other = at[q][n] < other ? at[q][n] : other;
                    if (most > STRATEGY_SINGLE_MAX_N &&
                        strategy_parts_grid(STRATEGY_SINGLE_MAX_N + 1, most, grid, 2) > 0) {
                        plan_spec sp = {.kind = (plan_partitioning)kind, .n_stages = 1,
                                        .cut = {kept.ends[r]}, .parts = {grid[0]}};
                        plan_cost c;
                        bool usable;
                        assert_int_equal(strategy_evaluate_usable(net, &cfg, &sp, &c, &usable), LR_OK);
                        past = usable ? c.peak_bytes : INT64_MAX;
                    }
                    for (int n = 2; n <= STRATEGY_SINGLE_MAX_N; n++) {
                        if (!strategy_stage_memo_pruned(&kept, (plan_partitioning)kind, cfg.bn,
                                                        kept.ends[r], n))
                            continue;
                        pruned++;
                        int64_t low = past < other ? past : other, low_above = past;
                        for (int m = 2; m <= STRATEGY_SINGLE_MAX_N; m++) {
                            low = m != n && at[r][m] < low ? at[r][m] : low;
                            low_above = m > n && at[r][m] < low_above ? at[r][m] : low_above;
                        }
                        rising += strategy_near_tie(at[r][n], low_above);
                        if (at[r][n] < INT64_MAX && strategy_near_tie(at[r][n], low))
                            fail_msg("%s kind %d: end %s N=%d left out, but it peaks at %lld B, "
                                     "another N at %lld B", cases[k].net, kind,
                                     net->nodes[kept.ends[r]].name, n, (long long)at[r][n],
                                     (long long)low);
                    }
                }
                auto_request with = {.one_kind = true, .kind = (plan_partitioning)kind,
                                     .kept = &kept, .seed = &one.spec};
                /* and with every N probed (no floor), with the memo and without it */
                auto_request every = with, without = with;
                every.every_n = true;
                without.kept = NULL, without.every_n = true;
                auto_result a, b, e;
                assert_int_equal(auto_search(net, &cfg, &with, &a), LR_OK);
                assert_int_equal(auto_search(net, &cfg, &every, &e), LR_OK);
                assert_int_equal(auto_search(net, &cfg, &without, &b), LR_OK);
                if (memcmp(&a.best.spec, &b.best.spec, sizeof a.best.spec) != 0 ||
                    memcmp(&a.best.cost, &b.best.cost, sizeof a.best.cost) != 0 ||
                    memcmp(&a.best.spec, &e.best.spec, sizeof a.best.spec) != 0 ||
                    memcmp(&a.best.cost, &e.best.cost, sizeof a.best.cost) != 0)
                    fail_msg("%s b%d bn %s kind %d: %lld B with the memo and floors, %lld B with "
                             "every N, %lld B without the memo",
                             cases[k].net, cases[k].batch, plan_bn_name((plan_bn)bn), kind,
                             (long long)a.best.cost.peak_bytes, (long long)e.best.cost.peak_bytes,
                             (long long)b.best.cost.peak_bytes);
                assert_true(a.n_evals <= e.n_evals && e.n_evals <= b.n_evals);
                floored += a.n_evals < e.n_evals;
                strategy_stage_memo_free(&kept);
            }
        }
        net_free(net);
    }
    print_message("  %d ends beyond, %d N left out by a floor (%d of them near-tied with a "
                  "larger N: by the kept floor), %d searches fewer probes by the floors\n",
                  beyond, pruned, rising, floored);
    assert_true(beyond > 0 && pruned > 0 && rising > 0 && floored > 0);
}

/* The objective's near-tie: within 1% above the lowest peak (integer bytes, no overflow). */
static void test_near_tie_is_one_percent(void **state)
{
    assert_true(strategy_near_tie(100, 100));
    assert_true(strategy_near_tie(101, 100));
    assert_false(strategy_near_tie(102, 100));
    assert_true(strategy_near_tie(99, 100));
    assert_true(strategy_near_tie(INT64_MAX, INT64_MAX - INT64_MAX / 200));
    assert_false(strategy_near_tie(INT64_MAX, INT64_MAX / 2));
}

/* At high resolution the best N is far above 32: past 2..32 the search follows a grid up to the
 * rows the region splits and a pattern search around its best. On vgg16 at 8192 x 8192 each
 * row strategy's choice is within the objective's tie (1%) of every N in 2..32, every grid N up
 * to the limit, and its neighbours N - 1 and N + 1, and row's choice lies past 32. */
static void test_row_search_reaches_past_32_at_high_resolution(void **state)
{
    net_t *net = test_zoo("vgg16");
    assert_int_equal(net_reshape(net, 8192, 8192), LR_OK);
    plan_config cfg = config(1, BN_EXACT);
    for (int st = STRAT_ROW; st <= STRAT_OVERL; st++) {
        plan_choice best = choose(net, &cfg, (plan_strategy)st, 0);
        int chosen = best.spec.parts[0];
        int limit = strategy_max_parts(net, best.spec.kind, 0, best.spec.cut[0]);
        int try[32 + STRATEGY_GRID_MAX + 2], n = 0;
        for (int k = 2; k <= 32; k++)
            try[n++] = k;
        n += strategy_parts_grid(33, limit, try + n, STRATEGY_GRID_MAX);
        try[n++] = chosen - 1;
        if (chosen < limit)
            try[n++] = chosen + 1;
        for (int i = 0; i < n; i++) {
            plan_choice c = choose(net, &cfg, (plan_strategy)st, try[i]);
            if (c.cost.peak_bytes < best.cost.peak_bytes &&
                !strategy_near_tie(best.cost.peak_bytes, c.cost.peak_bytes))
                fail_msg("%s: chose N %d (peak %lld), N %d has %lld", plan_strategy_name((plan_strategy)st),
                         chosen, (long long)best.cost.peak_bytes, try[i], (long long)c.cost.peak_bytes);
        }
        if (st == STRAT_ROW)
            assert_true(chosen > 32);
    }
    net_free(net);
}

static void stage_ends_are(const net_t *net, const plan_spec *sp, const char *const *names,
                           const int *parts, int n)
{
    if (sp->n_stages != n)
        fail_msg("%s: %d stages, expected %d", net->name, sp->n_stages, n);
    for (int s = 0; s < n; s++) {
        if (sp->cut[s] != find(net, names[s]) || (parts && sp->parts[s] != parts[s]))
            fail_msg("%s stage %d ends at %s with N %d, expected %s with N %d", net->name, s,
                     net->nodes[sp->cut[s]].name, sp->parts[s], names[s], parts ? parts[s] : 0);
    }
}

/* With --rows the hybrids get a stage per resolution: VGG16 ends them at its pools (cuts that
 * shrink the map), the last stage running through pool5 to the adaptive pooling that ends the
 * region; ResNet-50 at the stem conv and maxpool, then at the last cut before each
 * strided block (layer1_2_relu, layer2_3_relu, layer3_5_relu) and at the region end. With
 * --rows 8 the first stage gets 8 and the others 8 * (stage input height) / 224, rounded, at
 * least 1: VGG16 inputs 224, 112, 56, 28, 14 -> 8, 4, 2, 1, 1 (0.5 rounds to 1). Without
 * --rows they take auto's search restricted to their kind, whose space holds those stages with
 * every N: the chosen plan is within the near-tie of the best uniform N at those cuts. */
static void test_hybrid_stages_cut_at_each_resolution(void **state)
{
    plan_config cfg = config(1, BN_STRIPE);
    net_t *v = test_zoo("vgg16");
    const char *vgg[] = {"pool1", "pool2", "pool3", "pool4", "avgpool"};
    const int vgg_rows[] = {8, 4, 2, 1, 1};
    plan_choice c = choose(v, &cfg, STRAT_2PS_H, 8);
    stage_ends_are(v, &c.spec, vgg, vgg_rows, 5);
    for (int st = STRAT_2PS_H; st <= STRAT_OVERL_H; st++) {
        c = choose(v, &cfg, (plan_strategy)st, 0);
        assert_true(c.rows_chosen);
        assert_int_equal(c.spec.kind, st == STRAT_2PS_H ? PART_TILE_IN : PART_OVERLAP);
        bool at_a_resolution_cut = false; /* the region may end early, as row/2ps/overl's */
        for (int s = 0; s < 5; s++)
            at_a_resolution_cut |= c.spec.cut[c.spec.n_stages - 1] == find(v, vgg[s]);
        assert_true(at_a_resolution_cut);
        const int uniform[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32};
        for (int k = 0; k < 10; k++) {
            plan_spec sp = {.strategy = (plan_strategy)st, .kind = c.spec.kind, .n_stages = 5};
            for (int s = 0; s < 5; s++)
                sp.cut[s] = find(v, vgg[s]), sp.parts[s] = uniform[k];
            plan_cost u;
            assert_int_equal(strategy_evaluate(v, &cfg, &sp, &u), LR_OK);
            if (!strategy_near_tie(c.cost.peak_bytes, u.peak_bytes) && c.cost.peak_bytes > u.peak_bytes)
                fail_msg("%s: chosen peak %lld, resolution stages at N %d %lld",
                         plan_strategy_name((plan_strategy)st), (long long)c.cost.peak_bytes,
                         uniform[k], (long long)u.peak_bytes);
        }
    }
    net_free(v);
    net_t *r = test_zoo("resnet50");
    const char *res[] = {"conv1", "maxpool", "layer1_2_relu", "layer2_3_relu", "layer3_5_relu",
                         "avgpool"};
    /* inputs 224, 112 (conv1), 56 (maxpool), 56, 28, 14 */
    const int res_rows[] = {8, 4, 2, 2, 1, 1};
    c = choose(r, &cfg, STRAT_2PS_H, 8);
    stage_ends_are(r, &c.spec, res, res_rows, 6);
    net_free(r);
}

/* A hybrid's plans include its single-stage strategy's (a first stage of N, column after):
 * by the table's objective its choice is never worse, also at high resolution, where the
 * single-stage search goes past N = 32 and the hybrids' stage search does not (before: tiny-mix
 * at 1024x1024 overl-h 15.0 MiB against overl's 5.9 MiB; vgg16 at 8192x8192 2ps-h 6.01 GiB
 * against 2ps's 5.88 GiB). Both ways a hybrid is chosen: alone and paired (the table's). */
static void test_hybrid_is_never_worse_than_its_single_stage_strategy(void **state)
{
    const struct {
        const char *net;
        int input;
    } cases[] = {{"tiny-mix", 1024}, {"tiny-resnet", 1024}, {"vgg16", 8192}, {"resnet18", 4096}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        net_t *net = test_zoo(cases[k].net);
        assert_int_equal(net_reshape(net, cases[k].input, cases[k].input), LR_OK);
        plan_config cfg = config(1, BN_EXACT);
        for (int st = STRAT_2PS; st <= STRAT_OVERL; st++) {
            plan_strategy h = st == STRAT_2PS ? STRAT_2PS_H : STRAT_OVERL_H;
            plan_choice one, paired;
            assert_int_equal(strategy_choose_pair(net, &cfg, (plan_strategy)st, &one, &paired), LR_OK);
            plan_choice alone = choose(net, &cfg, h, 0);
            const plan_choice *hyb[2] = {&paired, &alone};
            for (int w = 0; w < 2; w++) {
                const plan_cost *c = &hyb[w]->cost, *o = &one.cost;
                bool as_good = c->peak_bytes <= o->peak_bytes ||
                               (strategy_near_tie(c->peak_bytes, o->peak_bytes) && c->flops <= o->flops);
                if (!as_good)
                    fail_msg("%s at %d: %s %s %lld B at %lld FLOPs, %s %lld B at %lld FLOPs",
                             cases[k].net, cases[k].input, w ? "alone" : "paired",
                             plan_strategy_name(h), (long long)c->peak_bytes, (long long)c->flops,
                             plan_strategy_name((plan_strategy)st), (long long)o->peak_bytes,
                             (long long)o->flops);
                assert_int_equal(hyb[w]->spec.strategy, h);
            }
        }
        net_free(net);
    }
}

/* --segments K asks for K checkpoint segments (sim_cli.c: "checkpoint segments"); tiny-vgg's
 * region (conv1_1..pool2) has 10 cuts, so every K up to 10 is possible. */
static void test_checkpoint_segments_flag_gives_that_many_segments(void **state)
{
    net_t *net = test_zoo("tiny-vgg");
    plan_config cfg = config(1, BN_EXACT);
    int wrong_k = 0, got = 0;
    for (int k = 1; k <= 10; k++) {
        plan_request req = {.strategy = STRAT_CHECKPOINT, .segments = k};
        plan_choice c;
        assert_int_equal(strategy_choose(net, &cfg, &req, &c), LR_OK);
        if (c.spec.n_stages != k && !wrong_k)
            wrong_k = k, got = c.spec.n_stages;
    }
    net_free(net);
    if (wrong_k)
        print_message("--segments %d gave %d segments\n", wrong_k, got);
    assert_int_equal(wrong_k, 0);
}

/* The point of the project: on the paper's nets, at batch 64, checkpointing and the row
 * strategies that share boundaries (2ps, 2ps-h) or keep only stage outputs (overl-h) need less
 * memory than column training. */
static void test_row_strategies_save_memory_on_vgg16_and_resnet50(void **state)
{
    const char *nets[] = {"vgg16", "resnet50"};
    const plan_strategy saving[] = {STRAT_CHECKPOINT, STRAT_2PS, STRAT_2PS_H, STRAT_OVERL_H};
    for (int n = 0; n < 2; n++) {
        net_t *net = test_zoo(nets[n]);
        plan_config cfg = config(64, BN_STRIPE);
        int64_t col = column_peak(net, &cfg, NULL);
        for (int k = 0; k < 4; k++) {
            plan_choice c = choose(net, &cfg, saving[k], 0);
            if (c.cost.peak_bytes >= col)
                fail_msg("%s %s: peak %lld, column %lld", nets[n], plan_strategy_name(saving[k]),
                         (long long)c.cost.peak_bytes, (long long)col);
        }
        net_free(net);
    }
}

/* The paper's OverL and 2PS partition only VGG16's first, high-resolution layers: at batch 256
 * the table's overl chooses where its region ends (not pool5, whose one output row needs 212 of
 * the 224 input rows: 88% of column's memory) and keeps well under half of column's memory;
 * every single-stage strategy says it chose (region_chosen, rows_chosen). */
static void test_vgg16_overl_ends_its_region_early(void **state)
{
    net_t *net = test_zoo("vgg16");
    plan_config cfg = config(256, BN_EXACT);
    int64_t col = column_peak(net, &cfg, NULL);
    plan_choice o = choose(net, &cfg, STRAT_OVERL, 0);
    assert_true(o.region_chosen && o.rows_chosen);
    assert_true(o.spec.n_stages == 1 && o.spec.cut[0] < find(net, "pool5"));
    if (2 * o.cost.peak_bytes >= col)
        fail_msg("overl at %s N %d: peak %lld, column %lld", net->nodes[o.spec.cut[0]].name,
                 o.spec.parts[0], (long long)o.cost.peak_bytes, (long long)col);
    plan_choice whole = choose_at(net, &cfg, STRAT_OVERL, 0, find(net, "pool5"));
    assert_false(whole.region_chosen);
    assert_true(o.cost.peak_bytes < whole.cost.peak_bytes);
    net_free(net);
}

static int bn_layers(const net_t *net, int from, int to)
{
    int n = 0;
    for (int l = from + 1; l <= to; l++)
        n += net->nodes[l].op == OP_BATCHNORM;
    return n;
}

/* Where exact BatchNorm's compute goes: a partitioned stage runs one STATS and one GSTATS pass
 * per BatchNorm in it (bn_passes counts the BatchNorm layers), and their FLOPs are part of the
 * plan's; resnet50's layer1 holds 11 BatchNorm layers (stem bn1 and 10 in its three blocks).
 * Frozen BN and stripe BN run no passes; a one-partition stage none either. */
static void test_exact_bn_passes_are_counted(void **state)
{
    net_t *net = test_zoo("resnet50");
    int end = find(net, "layer1_2_relu");
    for (int bn = 0; bn < BN_COUNT; bn++) {
        plan_config cfg = config(8, (plan_bn)bn);
        plan_choice c = choose_at(net, &cfg, STRAT_2PS, 4, end);
        if (bn == BN_EXACT) {
            assert_int_equal(c.cost.bn_passes, bn_layers(net, 0, end));
            assert_int_equal(c.cost.bn_passes, 11);
            assert_true(c.cost.bn_pass_flops > 0 && c.cost.bn_pass_flops < c.cost.flops);
        } else {
            assert_int_equal(c.cost.bn_passes, 0);
            assert_int_equal(c.cost.bn_pass_flops, 0);
        }
        plan_choice one = choose_at(net, &cfg, STRAT_2PS, 1, end);
        assert_int_equal(one.cost.bn_passes, 0);
    }
    net_free(net);
}

/* ------------------------------------------------------------------ random nets */

/* A deterministic generator (64-bit LCG) so a failure reproduces from its index. */
static uint64_t lcg_state;

static int rnd(int n)
{
    lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (int)((lcg_state >> 33) % (uint64_t)n);
}

#define APPEND(...) (o += snprintf(out + o, cap - o, __VA_ARGS__))

/* One random block after layer `prev`, named `nm`; extra layers are named from *id. */
static size_t random_block(char *out, size_t cap, size_t o, const char *nm, const char *prev,
                           int *c, int *id)
{
    int op = rnd(11);
    if (op <= 2) { /* conv: any kernel, stride, dilation, pad up to the window span */
        int k = 1 + rnd(5), st = 1 + rnd(3), d = 1 + rnd(3), p = rnd(d * (k - 1) + 1);
        APPEND("{\"name\": \"%s\", \"op\": \"conv\", \"out_channels\": %d, \"kernel\": [%d, 1], "
               "\"stride\": [%d, 1], \"pad\": [%d, 0], \"dilation\": [%d, 1], \"inputs\": [\"%s\"]}",
               nm, *c, k, st, p, d, prev);
    } else if (op <= 4) {
        const char *ops[] = {"relu", "batchnorm", "dropout"};
        APPEND("{\"name\": \"%s\", \"op\": \"%s\", \"inputs\": [\"%s\"]}", nm, ops[rnd(3)], prev);
    } else if (op == 5) {
        int k = 2 + rnd(2), st = 1 + rnd(2), p = rnd(k / 2 + 1);
        APPEND("{\"name\": \"%s\", \"op\": \"%s\", \"kernel\": [%d, 1], \"stride\": [%d, 1], "
               "\"pad\": [%d, 0], \"inputs\": [\"%s\"]}",
               nm, rnd(2) ? "maxpool" : "avgpool", k, st, p, prev);
    } else if (op == 6) {
        APPEND("{\"name\": \"%s\", \"op\": \"upsample\", \"scale\": %d, \"inputs\": [\"%s\"]}", nm,
               2 + rnd(2), prev);
    } else if (op == 7) { /* the same tensor twice: add [x, x] or concat [x, x, x] */
        bool cat = rnd(2);
        APPEND("{\"name\": \"%s\", \"op\": \"%s\", \"inputs\": [\"%s\", \"%s\"%s%s%s]}", nm,
               cat ? "concat" : "add", prev, prev, cat ? ", \"" : "", cat ? prev : "", cat ? "\"" : "");
        *c *= cat ? 3 : 1;
    } else { /* a residual or concat block: conv k (+ relu or BN) joined with a skip or 1x1 */
        char a[16], b[16], side[16];
        snprintf(a, sizeof a, "l%d", (*id)++);
        snprintf(b, sizeof b, "l%d", (*id)++);
        snprintf(side, sizeof side, "l%d", (*id)++);
        int k = 1 + 2 * rnd(3);
        APPEND("{\"name\": \"%s\", \"op\": \"conv\", \"out_channels\": %d, \"kernel\": [%d, 1], "
               "\"pad\": [%d, 0], \"inputs\": [\"%s\"]}, ",
               a, *c, k, k / 2, prev);
        APPEND("{\"name\": \"%s\", \"op\": \"%s\", \"inputs\": [\"%s\"]}, ", b,
               rnd(2) ? "relu" : "batchnorm", a);
        if (rnd(2))
            APPEND("{\"name\": \"%s\", \"op\": \"conv\", \"out_channels\": %d, \"kernel\": 1, "
                   "\"inputs\": [\"%s\"]}, ",
                   side, *c, prev);
        else
            snprintf(side, sizeof side, "%s", prev);
        bool cat = op == 10;
        APPEND("{\"name\": \"%s\", \"op\": \"%s\", \"inputs\": [\"%s\", \"%s\"]}", nm,
               cat ? "concat" : "add", b, side);
        *c *= cat ? 2 : 1;
    }
    return o;
}

/* A random net: input C x H x W (H 5..40), 2..11 blocks, one of three heads, the loss. */
static void random_net_json(char *out, size_t cap)
{
    int c = 1 + rnd(3), id = 0;
    size_t o = 0;
    APPEND("{\"name\": \"random\", \"input\": {\"channels\": %d, \"height\": %d, \"width\": %d}, "
           "\"layers\": [",
           c, 5 + rnd(36), 3 + rnd(4));
    char prev[16] = "input";
    for (int i = 0, n = 2 + rnd(10); i < n; i++) {
        char nm[16];
        snprintf(nm, sizeof nm, "l%d", id++);
        o = random_block(out, cap, o, nm, prev, &c, &id);
        APPEND(", ");
        snprintf(prev, sizeof prev, "%s", nm);
    }
    const char *heads[] = {"{\"name\": \"gap\", \"op\": \"global_avgpool\", \"inputs\": [\"%s\"]}, "
                           "{\"name\": \"flat\", \"op\": \"flatten\"}, ",
                           "{\"name\": \"ap\", \"op\": \"adaptive_avgpool\", \"output\": 1, \"inputs\": [\"%s\"]}, ",
                           "{\"name\": \"flat\", \"op\": \"flatten\", \"inputs\": [\"%s\"]}, "};
    APPEND(heads[rnd(3)], prev);
    APPEND("{\"name\": \"fc\", \"op\": \"fc\", \"out_features\": 3}, "
           "{\"name\": \"loss\", \"op\": \"softmax_xent\"}]}");
    assert_true(o < cap);
}

/* Stage FLOPs by pass, from the schedule and from the ranges: forward computes comp rows,
 * a recompute the rerun nodes' comp rows of every partition but a stored last one (both exact);
 * backward at most the own rows (tiled) or comp rows (overl): rows nothing reads get no
 * gradient and are skipped. Without exact-BN passes only. */
static void check_stage_flops(const plan_t *p, const char *what)
{
    int64_t want_fwd = 0, want_rec = 0, most_bwd = 0, fwd = 0, rec = 0, bwd = 0;
    int b = p->cfg.batch;
    for (int s = 0; s < p->n_stages; s++) {
        const plan_stage *st = &p->stages[s];
        if (st->bn_passes)
            return;
        for (int l = st->in_node + 1; l <= st->out_node; l++)
            for (int j = 0; j < st->parts; j++) {
                int i = plan_idx(st, l, j);
                want_fwd += plan_sums_at(st, l) ? cost_sum_flops(p->net, l, b, rr_count(st->sum_in[j]))
                                                : cost_fwd_flops(p->net, l, b, rr_count(st->comp[i]));
            }
        /* the recompute and the backward run the stage's backward twin when it has one */
        const plan_stage *bs = plan_bwd_stage(st);
        for (int l = bs->in_node + 1; l <= bs->out_node; l++)
            for (int j = 0; j < bs->parts; j++) {
                int i = plan_idx(bs, l, j);
                rowrange back = bs->kind == PART_OVERLAP ? bs->comp[i] : bs->own[i];
                if (plan_sums_at(bs, l)) {
                    most_bwd += cost_sum_flops(p->net, l, b, rr_count(bs->sum_in[j]));
                    continue;
                }
                most_bwd += cost_bwd_flops(p->net, l, b, rr_count(back));
                if (bs->rerun[l] && !(bs->store_last && j == bs->parts - 1))
                    want_rec += cost_fwd_flops(p->net, l, b, rr_count(bs->comp[i]));
            }
    }
    sched_t s;
    sched_init(&s);
    plan_emit(p, &s);
    for (int k = s.step_begin; k < s.step_end; k++) {
        const sched_step *x = &s.steps[k];
        if (x->op != STEP_RUN || x->stage < 0)
            continue;
        fwd += x->pass == PASS_FWD ? x->flops : 0;
        rec += x->pass == PASS_RECOMPUTE ? x->flops : 0;
        bwd += x->pass == PASS_BWD ? x->flops : 0;
    }
    sched_free(&s);
    if (fwd != want_fwd || rec != want_rec || bwd > most_bwd)
        fail_msg("%s: stage FLOPs fwd %lld (ranges %lld), recompute %lld (%lld), bwd %lld (<= %lld)",
                 what, (long long)fwd, (long long)want_fwd, (long long)rec, (long long)want_rec,
                 (long long)bwd, (long long)most_bwd);
}

/* Random stage cuts (any cut up to the region end, sometimes ending early), 1..40 partitions
 * per stage, a random partitioning. */
static plan_spec random_spec(const net_t *net, const bool *cut, int end)
{
    plan_spec sp = {.strategy = STRAT_2PS_H, .kind = (plan_partitioning)rnd(3)};
    for (int l = 1; l <= end && sp.n_stages < PLAN_MAX_STAGES; l++)
        if (cut[l] && (l == end || rnd(3) == 0)) {
            sp.cut[sp.n_stages] = l;
            sp.parts[sp.n_stages++] = 1 + rnd(rnd(2) ? 9 : 40);
        }
    if (sp.n_stages > 1 && rnd(3) == 0)
        sp.n_stages--;
    if (rnd(2)) /* stages that recompute their boundaries (--boundaries auto's choice) */
        sp.recompute = ((uint64_t)rnd(1 << 30) << 34) ^ (uint64_t)rnd(1 << 30);
    return sp;
}

/* 400 random nets (strided, padded, dilated convs and pools, upsampling, residual and concat
 * blocks, an input read twice, BN anywhere, odd heights), each with column, every strategy as
 * strategy_choose picks it (random --rows) and three random multi-stage specs, random batch,
 * dtype and BN mode: closed form = replay, ranges valid, stage FLOPs as the ranges say.
 * On failure, the message names the net index; the generator is seeded per index. */
static void test_closed_form_equals_replay_on_random_nets(void **state)
{
    char json[16384], what[96];
    int nets = 0;
    for (int it = 0; it < 400; it++) {
        lcg_state = 0x9e3779b97f4a7c15ULL * (uint64_t)(it + 1);
        random_net_json(json, sizeof json);
        net_t *net = NULL;
        if (net_parse(json, strlen(json), "random", &net) != LR_OK)
            continue; /* a shape that does not fit: the generator does not avoid them */
        nets++;
        plan_config cfg = config(1 + rnd(3), (plan_bn)rnd(BN_COUNT));
        cfg.dtype = (plan_dtype)rnd(DT_COUNT);
        cfg.offload = (unsigned)it % 4; /* none, input, boundary, both */
        cfg.recompute_boundaries = it % 8 >= 4;
        cfg.boundaries_auto = it % 8 == 1 || it % 8 == 2; /* the strategies choose per stage */
        bool *cut = calloc((size_t)net->n_nodes, 1);
        assert_non_null(cut);
        rowdep_cuts(net, cut);
        int end = plan_default_region_end(net);
        for (int t = 0; t < STRAT_COUNT + 3; t++) {
            plan_spec spec;
            if (t < STRAT_COUNT) {
                plan_request req = {.strategy = (plan_strategy)t, .rows = rnd(2) ? 0 : 1 + rnd(12)};
                plan_choice c;
                if (strategy_choose(net, &cfg, &req, &c) != LR_OK)
                    fail_msg("net %d %s: %s\n%s", it, plan_strategy_name(req.strategy),
                             lr_last_error(), json);
                spec = c.spec;
            } else if (end > 0) {
                spec = random_spec(net, cut, end);
            } else {
                continue;
            }
            snprintf(what, sizeof what, "random net %d, plan %d", it, t);
            plan_t *plan = NULL;
            if (plan_build(net, &cfg, &spec, &plan) != LR_OK)
                fail_msg("%s: %s\n%s", what, lr_last_error(), json);
            check_agreement(plan, what);
            check_ranges(plan, what);
            check_stage_flops(plan, what);
            plan_free(plan);
        }
        free(cut);
        net_free(net);
    }
    assert_true(nets >= 300); /* the generator mostly makes valid nets */
}

/* ------------------------------------------------------------------ plan_build errors */

/* A stage may only end where one tensor crosses: layer1_0_conv2 is inside a ResNet block (the
 * shortcut from maxpool crosses it), so plan_build and strategy_choose (--region) fail with
 * LR_ERR_INPUT naming the layer. */
static void test_cut_inside_a_resnet_block_is_rejected(void **state)
{
    net_t *net = test_zoo("resnet50");
    plan_config cfg = config(1, BN_EXACT);
    int bad = find(net, "layer1_0_conv2");
    plan_spec spec = {.strategy = STRAT_2PS, .kind = PART_TILE_IN, .n_stages = 1,
                      .cut = {bad}, .parts = {4}};
    plan_t *plan = (plan_t *)1;
    assert_int_equal(plan_build(net, &cfg, &spec, &plan), LR_ERR_INPUT);
    assert_null(plan);
    assert_non_null(strstr(lr_last_error(), "layer1_0_conv2"));
    assert_null(strchr(lr_last_error(), '\n'));
    plan_request req = {.strategy = STRAT_ROW, .rows = 2, .region_end = bad};
    plan_choice c;
    assert_int_equal(strategy_choose(net, &cfg, &req, &c), LR_ERR_INPUT);
    assert_non_null(strstr(lr_last_error(), "layer1_0_conv2"));
    /* the block output right after is fine */
    req.region_end = find(net, "layer1_0_relu");
    assert_int_equal(strategy_choose(net, &cfg, &req, &c), LR_OK);
    net_free(net);
}

/* A region holding an op that needs every row (fc) is rejected naming it; global pooling may end
 * a region (its partitions sum their rows into it) but not sit inside one: here a 1x1 conv
 * follows it. */
/* plan_stage_phases reads a stage's phases at any batch off one walk at batch 1 (closed_walk.h:
 * affine in the batch, stretch by stretch of constant bytes): every field equals the walk's at
 * that batch, for every partitioning, N, BatchNorm mode, recompute and offload setting, index
 * and batch, on nets with and without BatchNorm; the first batch asked fills the functions, the
 * later ones read them. With stripe BatchNorm (constant bytes inside the walks) or a device
 * (kernel times) it walks, and still agrees. */
static bool phase_equal(const plan_phase *a, const plan_phase *b)
{
    return a->entry == b->entry && a->exit == b->exit && a->grew == b->grew &&
           (!a->grew || (a->high == b->high && a->node == b->node && a->part == b->part &&
                         a->stage == b->stage && a->pass == b->pass)) &&
           a->flops == b->flops && a->ns == b->ns && a->bn_flops == b->bn_flops &&
           a->bn_passes == b->bn_passes && a->copy_bytes == b->copy_bytes &&
           a->host_delta == b->host_delta;
}

static void test_stage_phases_at_any_batch(void **state)
{
    (void)state;
    static const char *const nets[] = {"tiny-resnet", "tiny-mix", "tiny-vgg", "resnet18"};
    static const int batches[] = {3, 1, 64, 7, 100000, 3};
    static const plan_partitioning kinds[] = {PART_TILE_OUT, PART_TILE_IN, PART_OVERLAP};
    int checked = 0;
    for (size_t n = 0; n < sizeof nets / sizeof nets[0]; n++) {
        net_t *net = test_zoo(nets[n]);
        int ends[PLAN_MAX_STAGES];
        int n_ends = strategy_resolution_cuts(net, plan_default_region_end(net), ends, PLAN_MAX_STAGES);
        assert_true(n_ends >= 1);
        for (int e = 0; e < n_ends; e++)
            for (int in = 0; in <= (e > 0); in++)
                for (size_t k = 0; k < 3; k++)
                    for (int parts = 2; parts <= 5; parts += 3)
                        for (int bn = 0; bn < BN_COUNT; bn++)
                            for (int opt = 0; opt < 4; opt++)
                                for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
                                    plan_config cfg = {.batch = batches[b], .dtype = opt == 3 ? DT_FP16 : DT_FP32,
                                                       .optim = OPTIM_MOMENTUM, .bn = (plan_bn)bn,
                                                       .recompute_boundaries = opt == 1,
                                                       .offload = opt == 2 ? OFFLOAD_INPUT | OFFLOAD_BOUNDARY : 0,
                                                       .reuse_phases = true};
                                    if (opt == 3 && b == 0)
                                        cfg.device = device_find("h100-80gb");
                                    int from = in ? ends[e - 1] : 0;
                                    plan_stage st;
                                    if (plan_stage_build(net, &cfg, kinds[k], from, ends[e], parts, e == n_ends - 1, &st) != LR_OK)
                                        continue;
                                    int index = (int)(b % 3);
                                    plan_phase f1, b1, f2, b2;
                                    plan_stage_phases(net, &cfg, &st, index, &f1, &b1);
                                    plan_stage_phases_walked(net, &cfg, &st, index, &f2, &b2);
                                    if (!phase_equal(&f1, &f2) || !phase_equal(&b1, &b2))
                                        fail_msg("%s (%d, %d] %d partitions, kind %d, bn %s, setting %d, batch %d: "
                                                 "phases (%lld %lld, %lld %lld) walked (%lld %lld, %lld %lld)",
                                                 nets[n], from, ends[e], parts, (int)kinds[k], plan_bn_name((plan_bn)bn),
                                                 opt, batches[b], (long long)f1.high, (long long)f1.exit,
                                                 (long long)b1.high, (long long)b1.exit, (long long)f2.high,
                                                 (long long)f2.exit, (long long)b2.high, (long long)b2.exit);
                                    checked++;
                                    plan_stage_free(&st);
                                }
        net_free(net);
    }
    assert_true(checked > 1000);
}

static void test_region_with_a_full_op_is_rejected(void **state)
{
    net_t *net = test_zoo("tiny-resnet");
    plan_config cfg = config(1, BN_EXACT);
    plan_spec spec = {.strategy = STRAT_OVERL, .kind = PART_OVERLAP, .n_stages = 1,
                      .cut = {find(net, "fc")}, .parts = {2}};
    plan_t *plan = (plan_t *)1;
    assert_int_equal(plan_build(net, &cfg, &spec, &plan), LR_ERR_INPUT);
    assert_null(plan);
    assert_non_null(strstr(lr_last_error(), "fc"));
    plan_request req = {.strategy = STRAT_2PS, .rows = 2, .region_end = find(net, "fc")};
    plan_choice c;
    assert_int_equal(strategy_choose(net, &cfg, &req, &c), LR_ERR_INPUT);
    assert_non_null(strstr(lr_last_error(), "fc"));
    req.region_end = find(net, "gap");
    assert_int_equal(strategy_choose(net, &cfg, &req, &c), LR_OK);
    net_free(net);

    const char *json = "{\"name\": \"g\", \"input\": {\"channels\": 1, \"height\": 8, \"width\": 8}, "
                       "\"layers\": [{\"name\": \"c1\", \"op\": \"conv\", \"out_channels\": 2, \"kernel\": 3, \"pad\": 1}, "
                       "{\"name\": \"gap\", \"op\": \"global_avgpool\"}, "
                       "{\"name\": \"c2\", \"op\": \"conv\", \"out_channels\": 3, \"kernel\": 1}, "
                       "{\"name\": \"fc\", \"op\": \"fc\", \"out_features\": 2}, "
                       "{\"name\": \"loss\", \"op\": \"softmax_xent\"}]}";
    assert_int_equal(net_parse(json, strlen(json), "g", &net), LR_OK);
    spec.cut[0] = find(net, "c2");
    assert_int_equal(plan_build(net, &cfg, &spec, &plan), LR_ERR_INPUT);
    assert_non_null(strstr(lr_last_error(), "gap"));
    assert_int_equal(plan_default_region_end(net), find(net, "gap"));
    net_free(net);
}

/* The default row region runs through the pooling before the classifier: vgg16's adaptive pooling,
 * resnet50's global pooling, tiny-mix's adaptive pooling to 3x3 of a 7-row map (bins sharing a
 * row). Each partition of the summing stage adds its own rows of pool5 (RUN_ROW_SUM steps whose
 * input rows tile the map, in order), so pool5 is never whole: at 8192 x 8192 the peak is lower
 * than the region ending at pool5 by pool5's bytes less the 7x7 output's, for 2ps and overl. */
static void test_region_runs_through_the_pooling(void **state)
{
    const char *nets[] = {"vgg16", "resnet50", "tiny-mix"}, *ends[] = {"avgpool", "avgpool", "apool"};
    for (int n = 0; n < 3; n++) {
        net_t *net = test_zoo(nets[n]);
        assert_int_equal(plan_default_region_end(net), find(net, ends[n]));
        net_free(net);
    }
    net_t *net = test_zoo("tiny-mix");
    plan_config cfg = config(2, BN_EXACT);
    plan_choice c = choose(net, &cfg, STRAT_2PS, 3);
    plan_t *plan = build(net, &cfg, &c.spec);
    sched_t s;
    sched_init(&s);
    plan_emit(plan, &s);
    int next = 0, x = net->nodes[find(net, "apool")].inputs[0];
    for (int i = s.step_begin; i < s.step_end; i++)
        if (s.steps[i].op == STEP_RUN && (s.steps[i].flags & RUN_ROW_SUM) && s.steps[i].pass == PASS_FWD) {
            assert_int_equal(s.runs[s.steps[i].run].own_lo, next);
            next = s.runs[s.steps[i].run].own_hi + 1;
        }
    assert_int_equal(next, net->nodes[x].h);
    sched_free(&s);
    plan_free(plan);
    net_free(net);

    net = test_zoo("vgg16");
    assert_int_equal(net_reshape(net, 8192, 8192), LR_OK);
    cfg = config(1, BN_EXACT);
    int64_t pool5 = cost_node_bytes(net, find(net, "pool5"), 1, 4);
    int64_t pooled = cost_node_bytes(net, find(net, "avgpool"), 1, 4);
    for (int k = 0; k < 2; k++) {
        plan_spec sp = {.strategy = k ? STRAT_OVERL : STRAT_2PS, .kind = k ? PART_OVERLAP : PART_TILE_IN,
                        .n_stages = 1, .cut = {find(net, "pool5")}, .parts = {64}};
        plan_t *p5 = build(net, &cfg, &sp);
        sp.cut[0] = find(net, "avgpool");
        plan_t *pa = build(net, &cfg, &sp);
        assert_int_equal(closed(p5).peak_bytes - closed(pa).peak_bytes, pool5 - pooled);
        plan_free(p5);
        plan_free(pa);
    }
    net_free(net);
}

/* Malformed specs: cuts out of order, a cut past the last node, zero partitions. */
static void test_malformed_specs_are_rejected(void **state)
{
    net_t *net = test_zoo("tiny-vgg");
    plan_config cfg = config(1, BN_EXACT);
    plan_t *plan;
    plan_spec order = {.kind = PART_TILE_IN, .n_stages = 2, .cut = {5, 2}, .parts = {2, 2}};
    assert_int_equal(plan_build(net, &cfg, &order, &plan), LR_ERR_INPUT);
    plan_spec past = {.kind = PART_TILE_IN, .n_stages = 1, .cut = {net->n_nodes}, .parts = {2}};
    assert_int_equal(plan_build(net, &cfg, &past, &plan), LR_ERR_INPUT);
    plan_spec zero = {.kind = PART_TILE_IN, .n_stages = 1, .cut = {5}, .parts = {0}};
    assert_int_equal(plan_build(net, &cfg, &zero, &plan), LR_ERR_INPUT);
    net_free(net);
}

/* The per-stage N search costs a plan by composing stages recorded from other plans with the
 * same cuts (plan_compose). That is only sound if a stage's phases depend on the stage alone:
 * composing must give plan_closed_form of the mixed plan in every field. Checked on random
 * mixtures of N per stage, for both row kinds, both BN modes, on chains and residual nets, with
 * the resolution cuts and with a cut list that ends early (a column tail). */
static void test_composed_stages_equal_the_closed_form(void **state)
{
    static const int candidates[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32};
    const int n_cand = (int)(sizeof candidates / sizeof candidates[0]);
    const char *nets[] = {"tiny-vgg", "tiny-resnet", "tiny-mix", "vgg16", "resnet18"};
    unsigned seed = 12345;
    int checked = 0;
    for (size_t ni = 0; ni < sizeof nets / sizeof nets[0]; ni++) {
        net_t *net = test_zoo(nets[ni]);
        int end = plan_default_region_end(net);
        plan_spec base = {.n_stages = 0};
        base.n_stages = strategy_resolution_cuts(net, end, base.cut, PLAN_MAX_STAGES);
        for (int variant = 0; variant < 2; variant++) {
            plan_spec cuts = base;
            if (variant == 1 && cuts.n_stages > 1)
                cuts.n_stages--; /* the last stages run column-wise in the tail */
            for (int kind = 0; kind < 2; kind++)
                for (int bn = 0; bn < 2; bn++) {
                    plan_config cfg = config(2 + (int)ni, bn ? BN_EXACT : BN_STRIPE);
                    cfg.offload = (unsigned)(2 * variant + kind) % 4;
                    cfg.recompute_boundaries = variant == 1;
                    plan_phases *rec = malloc(sizeof(plan_phases) * (size_t)n_cand);
                    assert_non_null(rec);
                    plan_spec spec = cuts;
                    spec.kind = kind ? PART_OVERLAP : PART_TILE_IN;
                    for (int k = 0; k < n_cand; k++) {
                        for (int st = 0; st < spec.n_stages; st++)
                            spec.parts[st] = candidates[k];
                        plan_t *plan = build(net, &cfg, &spec);
                        plan_cost whole;
                        plan_closed_phases(plan, &whole, &rec[k]);
                        plan_cost again = closed(plan);
                        assert_memory_equal(&whole, &again, sizeof whole);
                        plan_free(plan);
                    }
                    for (int trial = 0; trial < 12; trial++) {
                        const plan_phases *by[PLAN_MAX_STAGES];
                        for (int st = 0; st < spec.n_stages; st++) {
                            seed = seed * 1103515245u + 12345u;
                            int k = (int)((seed >> 16) % (unsigned)n_cand);
                            spec.parts[st] = candidates[k];
                            by[st] = &rec[k];
                        }
                        plan_t *plan = build(net, &cfg, &spec);
                        plan_cost want = closed(plan), got;
                        plan_compose(by, spec.n_stages, &got);
                        if (memcmp(&want, &got, sizeof want) != 0)
                            fail_msg("%s kind %d bn %d trial %d: composed peak %lld at node %d part %d "
                                     "stage %d, flops %lld; closed form %lld at node %d part %d "
                                     "stage %d, flops %lld", net->name, kind, bn, trial,
                                     (long long)got.peak_bytes, got.peak_node, got.peak_part,
                                     got.peak_stage, (long long)got.flops, (long long)want.peak_bytes,
                                     want.peak_node, want.peak_part, want.peak_stage,
                                     (long long)want.flops);
                        plan_free(plan);
                        checked++;
                    }
                    free(rec);
                }
        }
        net_free(net);
    }
    print_message("  %d mixed plans composed = closed form\n", checked);
}

/* Searches cost stages alone (plan_stage_build, plan_stage_phases) and put plans together from
 * them with the persistent and tail phases of another plan that ends at the same cut
 * (plan_phases_assemble): that must be the closed form of the whole plan in every field, and
 * the stages' run bounds its run bound. Random specs (cuts, N per stage, kind) on the zoo's small
 * nets and resnet18, every BN mode, the tail taken from a one-stage plan. */
static void test_stages_costed_alone_compose_to_the_closed_form(void **state)
{
    const char *nets[] = {"tiny-vgg", "tiny-resnet", "tiny-mix", "resnet18"};
    unsigned seed = 777;
    int checked = 0;
    for (size_t ni = 0; ni < sizeof nets / sizeof nets[0]; ni++) {
        net_t *net = test_zoo(nets[ni]);
        bool *cut = calloc((size_t)net->n_nodes, 1);
        rowdep_cuts(net, cut);
        int end = plan_default_region_end(net);
        for (int trial = 0; trial < 60; trial++) {
            seed = seed * 1103515245u + 12345u;
            plan_config cfg = config(1 + (int)(seed >> 28) % 3, (plan_bn)((seed >> 16) % BN_COUNT));
            plan_spec spec = {.kind = (plan_partitioning)((seed >> 20) % 3)};
            for (int l = 1; l <= end && spec.n_stages < 6; l++) {
                seed = seed * 1103515245u + 12345u;
                if (cut[l] && (l == end || (seed >> 24) % 4 == 0)) {
                    spec.cut[spec.n_stages] = l;
                    spec.parts[spec.n_stages++] = 1 + (int)((seed >> 8) % 9);
                }
            }
            if (spec.n_stages == 0)
                continue;
            plan_t *plan = build(net, &cfg, &spec);
            plan_cost want = closed(plan);
            plan_spec one = {.n_stages = 1, .cut = {spec.cut[spec.n_stages - 1]}, .parts = {1}};
            plan_t *ends_plan = build(net, &cfg, &one);
            plan_phases ends, rec;
            plan_cost unused;
            plan_closed_phases(ends_plan, &unused, &ends);
            plan_phase fwd[PLAN_MAX_STAGES], bwd[PLAN_MAX_STAGES];
            int64_t runs = 2 * (int64_t)net->n_nodes;
            for (int s = 0, prev = 0; s < spec.n_stages; prev = spec.cut[s++]) {
                plan_stage st;
                assert_int_equal(plan_stage_build(net, &cfg, spec.kind, prev, spec.cut[s], spec.parts[s],
                                                  s == spec.n_stages - 1, &st), LR_OK);
                plan_stage_phases(net, &cfg, &st, s, &fwd[s], &bwd[s]);
                runs += plan_stage_runs(net, &st);
                plan_stage_free(&st);
            }
            plan_phases_assemble(&ends, 1, spec.n_stages, fwd, bwd, &rec);
            const plan_phases *by[PLAN_MAX_STAGES];
            for (int s = 0; s < spec.n_stages; s++)
                by[s] = &rec;
            plan_cost got;
            plan_compose(by, spec.n_stages, &got);
            if (memcmp(&want, &got, sizeof want) != 0)
                fail_msg("%s trial %d: assembled peak %lld at node %d stage %d flops %lld; closed "
                         "form %lld at node %d stage %d flops %lld", net->name, trial,
                         (long long)got.peak_bytes, got.peak_node, got.peak_stage,
                         (long long)got.flops, (long long)want.peak_bytes, want.peak_node,
                         want.peak_stage, (long long)want.flops);
            assert_int_equal(runs, plan_run_bound(plan));
            plan_free(ends_plan);
            plan_free(plan);
            checked++;
        }
        free(cut);
        net_free(net);
    }
    print_message("  %d plans assembled from stages costed alone = closed form\n", checked);
    assert_true(checked > 150);
}

/* The closed form walks each partition shape once (closed_shape.c): on resnet18 at 224x224 a
 * region through layer1 in 32 partitions has at most a third as many shapes for every kind (row
 * 6, overl 7, 2ps 10: its 7-row input stripes reach the stride-2 layers at alternating parities),
 * and the first and the last partitions have shapes of their own. */
static void test_partitions_of_a_stage_come_in_a_few_shapes(void **state)
{
    (void)state;
    net_t *net = test_zoo("resnet18");
    plan_config cfg = config(8, BN_EXACT);
    int end = find(net, "layer1_1_relu"), parts = 32;
    for (int kind = 0; kind < 3; kind++) {
        plan_stage st;
        assert_int_equal(plan_stage_build(net, &cfg, (plan_partitioning)kind, 0, end, parts, true, &st),
                         LR_OK);
        closed_shapes sh;
        closed_shapes_init(&sh, &st);
        assert_false(sh.off);
        int first = 0, last = 0, met = 0;
        for (int j = 0; j < st.parts; j++) {
            assert_true(sh.of[j] >= 0 && sh.of[j] <= met);
            if (sh.of[j] < met)
                continue;
            met++; /* a new shape: numbered as first met */
            first += j == 0, last += j == st.parts - 1;
        }
        assert_int_equal(met, sh.n);
        if (3 * sh.n > st.parts || first != 1 || last != 1)
            fail_msg("kind %d: %d shapes among %d partitions (first new: %d, last new: %d)", kind,
                     sh.n, st.parts, first, last);
        closed_shapes_free(&sh);
        plan_stage_free(&st);
    }
    net_free(net);
}

/* The auto planner measures a stage once for all its twins (auto_find_twins): stages whose
 * layers match one to one, as a ResNet's identical blocks do, are the same plan up to node ids.
 * Checked here on resnet50's layer3 blocks 1..5 (block 0 downsamples): spans of one to three
 * blocks one block apart, every kind, BN mode, N, both ways of keeping boundaries, as a middle
 * and as a last stage. */
static void test_twin_stages_are_the_same_plan_shifted(void **state)
{
    net_t *net = test_zoo("resnet50");
    char name[64];
    int out[6];
    for (int k = 0; k < 6; k++) {
        snprintf(name, sizeof name, "layer3_%d_relu", k);
        out[k] = find(net, name);
    }
    int checked = 0;
    for (int span = 1; span <= 3; span++)
        for (int k = 0; k + span + 1 <= 5; k++)
            for (int bn = 0; bn < BN_COUNT; bn++)
                for (int kind = 0; kind < 3; kind++)
                    for (int parts = 2; parts <= 7; parts += 5)
                        for (int way = 0; way < 4; way++) {
                            plan_config cfg = config(4, (plan_bn)bn);
                            cfg.recompute_boundaries = way & 1;
                            bool last = way & 2;
                            plan_phase ph[2][2];
                            int64_t runs[2];
                            for (int t = 0; t < 2; t++) {
                                plan_stage st;
                                assert_int_equal(plan_stage_build(net, &cfg, (plan_partitioning)kind,
                                                                  out[k + t], out[k + t + span],
                                                                  parts, last, &st),
                                                 LR_OK);
                                plan_stage_phases(net, &cfg, &st, 1, &ph[t][0], &ph[t][1]);
                                runs[t] = plan_stage_runs(net, &st);
                                plan_stage_free(&st);
                            }
                            int shift = out[k + 1] - out[k];
                            assert_int_equal(runs[0], runs[1]);
                            for (int p = 0; p < 2; p++) {
                                plan_phase want = ph[0][p];
                                if (want.grew)
                                    want.node += shift;
                                const plan_phase *got = &ph[1][p];
                                if (want.entry != got->entry || want.exit != got->exit ||
                                    want.high != got->high || want.grew != got->grew ||
                                    want.node != got->node || want.part != got->part ||
                                    want.stage != got->stage || want.pass != got->pass ||
                                    want.flops != got->flops || want.ns != got->ns ||
                                    want.bn_flops != got->bn_flops ||
                                    want.bn_passes != got->bn_passes ||
                                    want.copy_bytes != got->copy_bytes ||
                                    want.host_delta != got->host_delta)
                                    fail_msg("span %d block %d bn %d kind %d N %d way %d phase %d: "
                                             "high %lld at node %d, twin's %lld at node %d",
                                             span, k, bn, kind, parts, way, p, (long long)want.high,
                                             want.node, (long long)got->high, got->node);
                            }
                            checked++;
                        }
    print_message("  %d twin stages measured alike\n", checked);
    net_free(net);
    (void)state;
}

/* ------------------------------------------------------------------ par_for */

typedef struct {
    int n_inner;
    int *hits; /* per (outer, inner) item */
} par_probe;

static void inner_item(void *ctx, int k)
{
    int *hits = ctx;
    __atomic_fetch_add(&hits[k], 1, __ATOMIC_RELAXED);
}

static void outer_item(void *ctx, int k)
{
    par_probe *p = ctx;
    par_for(p->n_inner, inner_item, p->hits + (size_t)k * p->n_inner);
}

/* par_for runs every item exactly once: as a worksharing loop, from tasks inside a parallel
 * region (analysis_run's searches) and nested in its own items. */
static void test_par_for_runs_every_item_once(void **state)
{
    (void)state;
    enum { OUTER = 37, INNER = 101 };
    par_probe p = {INNER, calloc(OUTER * INNER, sizeof(int))};
    assert_non_null(p.hits);
    par_probe rest = {INNER, p.hits + (OUTER / 2) * INNER}; /* the second task's outer items */
    for (int round = 0; round < 3; round++) {
        memset(p.hits, 0, sizeof(int) * OUTER * INNER);
        if (round == 0) {
            par_for(OUTER, outer_item, &p);
        } else {
#pragma omp parallel num_threads(round + 1)
#pragma omp single
            {
#pragma omp task
                par_for(OUTER / 2, outer_item, &p);
#pragma omp task
                par_for(OUTER - OUTER / 2, outer_item, &rest);
            }
        }
        for (int k = 0; k < OUTER * INNER; k++)
            assert_int_equal(p.hits[k], 1);
    }
    par_for(0, inner_item, p.hits); /* no items: returns */
    free(p.hits);
}

/* A configuration the floors are checked on: a zoo net at a batch and input, its BatchNorm mode,
 * boundaries and offloading. */
typedef struct {
    const char *net;
    int batch, input;
    plan_bn bn;
    bool recompute;
    unsigned offload;
} floor_case;

/* The case's net (free it), config and resolution cuts up to its default region end. */
static net_t *floor_case_net(const floor_case *c, plan_config *cfg, int *ends, int *n)
{
    net_t *net = test_zoo(c->net);
    if (c->input)
        assert_int_equal(net_reshape(net, c->input, c->input), LR_OK);
    *cfg = config(c->batch, c->bn);
    cfg->recompute_boundaries = c->recompute;
    cfg->offload = c->offload;
    *n = strategy_resolution_cuts(net, plan_default_region_end(net), ends, PLAN_MAX_STAGES);
    return net;
}

/* Every stage's floor (strategy_stage_floor) under the peak of the plan sp (when lrcnn builds
 * it); counts the stages checked and those whose floor is within 10% of the peak. */
static void check_stage_floors(const net_t *net, const plan_config *cfg, const plan_spec *sp,
                               const floor_case *c, int *checked, int *tight)
{
    plan_t *plan;
    if (plan_build(net, cfg, sp, &plan) != LR_OK)
        return;
    plan_cost pc;
    plan_phases ph;
    plan_closed_phases(plan, &pc, &ph);
    for (int s = 0; s < sp->n_stages; s++) {
        int in = s ? sp->cut[s - 1] : 0, np = plan->spec.parts[s];
        int64_t saved = strategy_saved_bytes(net, cfg, in, sp->cut[s]);
        int64_t under = strategy_stage_floor(net, cfg, in, sp->cut[s], np, saved,
                                             ph.ph[0].exit - ph.ph[0].entry);
        if (pc.peak_bytes < under)
            fail_msg("%s b%d %s kind %d stage %d of %d ((%s, %s]:%d): peak %lld under the floor "
                     "%lld", c->net, c->batch, plan_bn_name(c->bn), sp->kind, s, sp->n_stages,
                     net->nodes[in].name, net->nodes[sp->cut[s]].name, np,
                     (long long)pc.peak_bytes, (long long)under);
        *tight += 100 * under > 90 * pc.peak_bytes;
        (*checked)++;
    }
    plan_free(plan);
}

/* A hybrid's search skips a stage (in, end]:N whose floor (strategy_stage_floor) is past the
 * near-tie of the lowest peak: the floor must be under the peak of every plan holding the stage.
 * Checked on plans of 1 to 4 stages cut where the hybrids cut by default and inside a resolution
 * (every kind, N from 1 to 32 per stage) over BN modes, high resolution, recomputed boundaries
 * and offloading, every stage of each; and the floor must come within 10% of some peak, or it
 * would never skip anything. */
static void test_stage_floor_is_under_every_plan_holding_it(void **state)
{
    static const floor_case cases[] = {{"resnet18", 8, 0, BN_EXACT, false, 0},
                 {"resnet18", 1, 2048, BN_EXACT, false, 0},
                 {"resnet18", 4, 0, BN_STRIPE, true, 0},
                 {"resnet50", 1, 1024, BN_FROZEN, false, 0},
                 {"vgg16", 2, 0, BN_EXACT, false, 0},
                 {"vgg16", 1, 2048, BN_EXACT, false, OFFLOAD_INPUT | OFFLOAD_BOUNDARY},
                 {"tiny-mix", 16, 0, BN_EXACT, false, 0},
                 {"tiny-resnet", 8, 0, BN_EXACT, true, OFFLOAD_BOUNDARY}};
    static const int parts[][4] = {{2, 2, 2, 2}, {5, 3, 2, 1}, {8, 4, 1, 2}, {3, 16, 2, 2},
                                   {32, 8, 4, 2}, {1, 6, 12, 3}};
    int checked = 0, tight = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        plan_config cfg;
        int sets[2][PLAN_MAX_STAGES], n_in[2];
        net_t *net = floor_case_net(&cases[c], &cfg, sets[0], &n_in[0]);
        /* also cut inside a resolution (between ResNet blocks): four of the places a row
         * region may be cut, spread over it */
        int end = plan_default_region_end(net), n_cuts = 0, *at = malloc(sizeof(int) * (size_t)end);
        bool *cut = malloc((size_t)net->n_nodes);
        assert_true(at && cut);
        rowdep_cuts(net, cut);
        for (int l = 1; l <= end; l++)
            if (cut[l])
                at[n_cuts++] = l;
        n_in[1] = 0;
        for (int q = 1; q <= 4; q++) {
            int x = at[q * n_cuts / 4 - (q == 4)];
            if (n_in[1] == 0 || x > sets[1][n_in[1] - 1])
                sets[1][n_in[1]++] = x;
        }
        free(at), free(cut);
        for (int set = 0; set < 2; set++)
            for (int kind = 0; kind < 3; kind++)
                for (int stages = 1; stages <= n_in[set] && stages <= 4; stages++)
                    for (size_t p = 0; p < sizeof parts / sizeof parts[0]; p++) {
                        plan_spec sp = {.kind = (plan_partitioning)kind, .n_stages = stages};
                        for (int s = 0; s < stages; s++)
                            sp.cut[s] = sets[set][s], sp.parts[s] = parts[p][s];
                        check_stage_floors(net, &cfg, &sp, &cases[c], &checked, &tight);
                    }
        net_free(net);
    }
    print_message("  %d stages of plans above their floor, %d within 10%%\n", checked, tight);
    assert_true(checked > 500 && tight > 0);
    (void)state;
}

/* The single-stage search skips a region end whose floor (strategy_end_floor) is past the
 * near-tie of a peak it found, and an N whose floor (strategy_parts_floor) is: both floors must be
 * under the peak of every plan (0, end]:N. Checked for every kind, some N up to 32 and every
 * region end, over BN modes, large inputs, recomputed boundaries, offloading and a mixed net; the
 * end floor must rule out some end somewhere, or the skip would never happen, and the N floor
 * must come within 10% of some peak. */
static void test_region_end_floor_is_under_every_peak(void **state)
{
    static const floor_case cases[] = {{"resnet50", 16, 0, BN_EXACT, false, 0},
                 {"resnet50", 16, 0, BN_STRIPE, false, 0},
                 {"resnet50", 16, 0, BN_FROZEN, false, 0},
                 {"resnet50", 1, 1024, BN_EXACT, false, 0},
                 {"vgg16", 8, 0, BN_EXACT, false, 0},
                 {"tiny-mix", 32, 0, BN_EXACT, false, 0},
                 {"tiny-resnet", 32, 0, BN_EXACT, false, 0},
                 {"resnet18", 1, 2048, BN_EXACT, false, 0},
                 {"resnet18", 4, 0, BN_EXACT, true, 0},
                 {"vgg16", 1, 2048, BN_EXACT, false, OFFLOAD_INPUT},
                 {"resnet18", 1, 2048, BN_STRIPE, false, OFFLOAD_INPUT | OFFLOAD_BOUNDARY}};
    static const int parts[] = {2, 3, 5, 8, 16, 32};
    int checked = 0, ruled_out = 0, tight = 0, kept_tight = 0, bwd_tight = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        plan_config cfg;
        int ends[PLAN_MAX_STAGES], n;
        net_t *net = floor_case_net(&cases[c], &cfg, ends, &n);
        int64_t floor_at[PLAN_MAX_STAGES], lowest_at[PLAN_MAX_STAGES];
        for (int r = 0; r < n; r++) {
            plan_spec one = {.n_stages = 1, .cut = {ends[r]}, .parts = {1}};
            plan_t *plan = build(net, &cfg, &one);
            plan_cost pc;
            plan_phases ph;
            plan_closed_phases(plan, &pc, &ph);
            plan_free(plan);
            floor_at[r] = strategy_end_floor(net, &cfg, ends[r], &ph);
            int64_t saved = strategy_saved_bytes(net, &cfg, 0, ends[r]);
            lowest_at[r] = INT64_MAX;
            for (int kind = 0; kind < 3; kind++)
                for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++) {
                    plan_spec sp = {.kind = (plan_partitioning)kind, .n_stages = 1,
                                    .cut = {ends[r]}, .parts = {parts[k]}};
                    plan_cost cost;
                    bool usable;
                    assert_int_equal(strategy_evaluate_usable(net, &cfg, &sp, &cost, &usable), LR_OK);
                    if (!usable)
                        continue;
                    if (cost.peak_bytes < floor_at[r])
                        fail_msg("%s b%d %s end %s kind %d N %d: peak %lld under the floor %lld",
                                 cases[c].net, cases[c].batch, plan_bn_name(cases[c].bn),
                                 net->nodes[ends[r]].name, kind, parts[k],
                                 (long long)cost.peak_bytes, (long long)floor_at[r]);
                    int64_t under = strategy_parts_floor(net, &cfg, ends[r], parts[k], saved, &ph);
                    if (cost.peak_bytes < under)
                        fail_msg("%s b%d %s end %s kind %d N %d: peak %lld under the N floor %lld",
                                 cases[c].net, cases[c].batch, plan_bn_name(cases[c].bn),
                                 net->nodes[ends[r]].name, kind, parts[k],
                                 (long long)cost.peak_bytes, (long long)under);
                    tight += 100 * under > 90 * cost.peak_bytes;
                    plan_stage st;
                    assert_int_equal(plan_stage_build(net, &cfg, (plan_partitioning)kind, 0,
                                                      ends[r], parts[k], true, &st),
                                     LR_OK);
                    int64_t kept = strategy_kept_floor(net, &cfg, ends[r], &ph, &st);
                    /* its backward moment, on its own */
                    int64_t bwd = strategy_parts_floor(net, &cfg, ends[r], 1, 0, &ph) +
                                  plan_stage_backward_bytes(net, &cfg, &st);
                    plan_stage_free(&st);
                    bwd_tight += 100 * bwd > 90 * cost.peak_bytes && bwd > under;
                    if (cost.peak_bytes < kept)
                        fail_msg("%s b%d %s end %s kind %d N %d: peak %lld under the kept floor "
                                 "%lld", cases[c].net, cases[c].batch, plan_bn_name(cases[c].bn),
                                 net->nodes[ends[r]].name, kind, parts[k],
                                 (long long)cost.peak_bytes, (long long)kept);
                    kept_tight += 1000 * kept > 995 * cost.peak_bytes && kept > floor_at[r];
                    if (cost.peak_bytes < lowest_at[r])
                        lowest_at[r] = cost.peak_bytes;
                    checked++;
                }
        }
        for (int r = 0; r < n; r++)
            for (int q = 0; q < n; q++)
                ruled_out += q != r && lowest_at[q] < INT64_MAX &&
                             !strategy_near_tie(floor_at[r], lowest_at[q]);
        net_free(net);
    }
    print_message("  %d plans above their end's floor, their N's and their kept floor; %d (end, "
                  "other end) pairs ruled out; %d N floors within 10%% of the peak; %d kept "
                  "floors above the end's and within 0.5%% of the peak; %d backward floors above "
                  "the N floor and within 10%% of the peak\n", checked, ruled_out, tight,
                  kept_tight, bwd_tight);
    assert_true(checked > 300);
    assert_true(ruled_out > 0 && tight > 0 && kept_tight > 0 && bwd_tight > 0);
    (void)state;
}

/* The two phases of a stage, field by field. */
static void assert_same_phase(const plan_phase *a, const plan_phase *b, const char *what)
{
    if (a->entry != b->entry || a->exit != b->exit || a->grew != b->grew ||
        (a->grew && (a->high != b->high || a->node != b->node || a->part != b->part ||
                     a->stage != b->stage || a->pass != b->pass)) ||
        a->flops != b->flops || a->ns != b->ns || a->bn_flops != b->bn_flops ||
        a->bn_passes != b->bn_passes || a->copy_bytes != b->copy_bytes ||
        a->host_delta != b->host_delta)
        fail_msg("%s: high %lld/%lld exit %lld/%lld flops %lld/%lld", what, (long long)a->high,
                 (long long)b->high, (long long)a->exit, (long long)b->exit, (long long)a->flops,
                 (long long)b->flops);
}

/* The searches make a cut's statistics-pass scripts once and lend them to every stage they build
 * there (plan_scripts_new, plan_stage_use_scripts), and a stage lent none takes those kept for
 * its net's graph (plan_scripts_kept): a stage's phases and its run bound must be the ones made
 * without any (a net without a graph id keeps none), for every kind and N, last or not, with a
 * device's time model, recomputed boundaries (the twin takes them too) and offloading. */
static void test_scripts_made_beforehand_change_no_phase(void **state)
{
    static const floor_case cases[] = {{"resnet18", 8, 0, BN_EXACT, false, 0},
                 {"resnet50", 1, 512, BN_EXACT, false, 0},
                 {"tiny-resnet", 8, 0, BN_EXACT, true, OFFLOAD_BOUNDARY},
                 {"tiny-mix", 16, 0, BN_EXACT, false, OFFLOAD_INPUT},
                 {"vgg16", 2, 0, BN_EXACT, false, 0}};
    static const int parts[] = {2, 3, 7, 16};
    int passes = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        plan_config cfg;
        int ends[PLAN_MAX_STAGES], n;
        net_t *net = floor_case_net(&cases[c], &cfg, ends, &n);
        cfg.device = device_find("h100");
        for (int a = 0; a < n; a++)
            for (int b = a + 1; b <= n && b <= a + 2; b++) {
                int in = a ? ends[a - 1] : 0, out = ends[b - 1];
                plan_scripts *scripts = plan_scripts_new(net, in, out);
                for (int kind = 0; kind < 3; kind++)
                    for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++)
                        for (int last = 0; last < 2; last++) {
                            plan_stage st;
                            if (plan_stage_build(net, &cfg, (plan_partitioning)kind, in, out,
                                                 parts[k], last, &st) != LR_OK)
                                continue;
                            plan_phase f[2], bw[2];
                            net_t bare = *net; /* (the same net, no scripts kept for it) */
                            bare.graph_id = 0;
                            plan_stage_phases(&bare, &cfg, &st, a, &f[0], &bw[0]);
                            int64_t runs = plan_stage_runs(&bare, &st);
                            plan_stage_use_scripts(&st, scripts);
                            plan_stage_phases(net, &cfg, &st, a, &f[1], &bw[1]);
                            assert_int_equal(plan_stage_runs(net, &st), runs);
                            char what[160];
                            snprintf(what, sizeof what, "%s (%s, %s] kind %d N %d last %d",
                                     cases[c].net, net->nodes[in].name, net->nodes[out].name, kind,
                                     parts[k], last);
                            assert_same_phase(&f[0], &f[1], what);
                            assert_same_phase(&bw[0], &bw[1], what);
                            passes += st.bn_passes;
                            plan_stage_free(&st);
                        }
                plan_scripts_free(scripts);
            }
        net_free(net);
    }
    print_message("  %d stages with statistics passes alike with and without scripts\n", passes);
    assert_true(passes > 100);
    (void)state;
}

/* plan_scripts_kept makes a cut's scripts once per graph: the same ones at any input size of the
 * net and for a whole copy of it, other ones for another cut, none for a net without a graph id;
 * a sub-net cut off past its input is a graph of its own. */
static void test_scripts_are_kept_per_graph(void **state)
{
    (void)state;
    net_t *net = test_zoo("resnet18");
    int end = find(net, "layer2_1_relu"), mid = find(net, "layer1_1_relu");
    const plan_scripts *s = plan_scripts_kept(net, 0, end);
    assert_non_null(s);
    assert_ptr_equal(plan_scripts_kept(net, 0, end), s);
    assert_true(plan_scripts_kept(net, 0, mid) != s);
    assert_int_equal(net_reshape(net, 517, 517), LR_OK);
    assert_ptr_equal(plan_scripts_kept(net, 0, end), s);
    net_t *copy, *past;
    assert_int_equal(auto_subnet(net, 0, &copy), LR_OK);
    assert_ptr_equal(plan_scripts_kept(copy, 0, end), s);
    assert_int_equal(auto_subnet(net, mid, &past), LR_OK);
    assert_true(past->graph_id != net->graph_id && past->graph_id != 0);
    net_t bare = *net;
    bare.graph_id = 0;
    assert_null(plan_scripts_kept(&bare, 0, end));
    net_free(copy), net_free(past), net_free(net);
}

/* plan_stage_alone under reuse_phases keeps what a stage's build decided beside its phase
 * functions, and a stage asked again at another batch is read off them without a build. Asked in
 * one process for every kind, N, last or not, BatchNorm mode, kept or recomputed boundaries and
 * offloading (keys that collided would hand one stage another's phases), each equals the stage
 * built and walked at that batch, its runs too. */
static void test_stages_asked_again_equal_their_walk(void **state)
{
    (void)state;
    static const floor_case cases[] = {{"resnet18", 8, 0, BN_EXACT, false, 0},
                                       {"tiny-resnet", 8, 0, BN_EXACT, true, OFFLOAD_BOUNDARY},
                                       {"tiny-mix", 16, 0, BN_EXACT, false, OFFLOAD_INPUT}};
    static const int parts[] = {1, 2, 5, 16};
    static const plan_bn modes[] = {BN_EXACT, BN_FROZEN, BN_STRIPE};
    int read_off = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        plan_config cfg;
        int ends[PLAN_MAX_STAGES], n;
        net_t *net = floor_case_net(&cases[c], &cfg, ends, &n);
        cfg.device = NULL;
        cfg.reuse_phases = true;
        for (int a = 0; a < n; a++)
            for (int b = a + 1; b <= n && b <= a + 2; b++)
                for (size_t m = 0; m < 3; m++)
                    for (int kind = 0; kind < 3; kind++)
                        for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++)
                            for (int last = 0; last < 2; last++) {
                                int in = a ? ends[a - 1] : 0, out = ends[b - 1];
                                plan_config one = cfg, at = cfg;
                                one.bn = at.bn = modes[m];
                                one.batch = 1, at.batch = 7;
                                plan_phase f[2], bw[2];
                                int64_t runs[2];
                                assert_int_equal(plan_stage_alone(net, &one, (plan_partitioning)kind,
                                                                  in, out, parts[k], last, a, NULL,
                                                                  &f[0], &bw[0], &runs[0]), LR_OK);
                                closed_build_key bk;
                                closed_phase_key pk;
                                closed_build_key_of(net, &at, (plan_partitioning)kind, in, out,
                                                    parts[k], last, &bk);
                                read_off += closed_build_get(&bk, &pk, &runs[1]);
                                assert_int_equal(plan_stage_alone(net, &at, (plan_partitioning)kind,
                                                                  in, out, parts[k], last, a, NULL,
                                                                  &f[0], &bw[0], &runs[0]), LR_OK);
                                plan_stage st;
                                assert_int_equal(plan_stage_build(net, &at, (plan_partitioning)kind,
                                                                  in, out, parts[k], last, &st),
                                                 LR_OK);
                                runs[1] = plan_stage_runs(net, &st);
                                char what[160];
                                snprintf(what, sizeof what, "%s (%s, %s] bn %s kind %d N %d last %d",
                                         cases[c].net, net->nodes[in].name, net->nodes[out].name,
                                         plan_bn_name(modes[m]), kind, parts[k], last);
                                if (runs[0] != runs[1])
                                    fail_msg("%s: runs %lld, built %lld", what, (long long)runs[0],
                                             (long long)runs[1]);
                                if (runs[1] <= PLAN_MAX_RUNS) {
                                    plan_stage_phases_walked(net, &at, &st, a, &f[1], &bw[1]);
                                    assert_same_phase(&f[0], &f[1], what);
                                    assert_same_phase(&bw[0], &bw[1], what);
                                }
                                plan_stage_free(&st);
                            }
        net_free(net);
    }
    print_message("  %d stages asked again found their build kept\n", read_off);
    assert_true(read_off > 100);
}

/* A stage with many partition shapes has its exact-BatchNorm passes' shared walks pieced together
 * from segments walked once per slice of the shapes' keys (closed_segments). resnet18 at
 * 1000x1000 through layer3 has such stages: 2ps in 40 and 57 partitions (23 and 25 shapes), overl
 * in 57 (14); row's stripes split the output and keep to a few shapes (7 and 9). Each case has
 * the shapes that turn segments on, and its closed form equals the replay to the byte (step time,
 * where the peak is), and the stage's phases equal those of its shapes walked whole, field by
 * field: a one-stage plan, with recomputed boundaries, as the second stage of two, and with the
 * input and the boundaries in host memory. */
static void test_segmented_walks_equal_the_replay(void **state)
{
    (void)state;
    net_t *net = test_zoo("resnet18");
    assert_int_equal(net_reshape(net, 1000, 1000), LR_OK);
    int end = find(net, "layer3_1_relu"), mid = find(net, "layer1_1_relu");
    enum { ONE, RECOMPUTE, SECOND, OFFLOAD };
    static const struct {
        plan_partitioning kind;
        int parts, form;
    } cases[] = {{PART_TILE_IN, 40, ONE},       {PART_TILE_IN, 57, ONE},
                 {PART_TILE_IN, 40, RECOMPUTE}, {PART_TILE_IN, 57, SECOND},
                 {PART_TILE_IN, 40, OFFLOAD},   {PART_OVERLAP, 57, ONE},
                 {PART_OVERLAP, 57, OFFLOAD}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        plan_config cfg = config(2, BN_EXACT);
        if (cases[k].form == OFFLOAD)
            cfg.offload = OFFLOAD_INPUT | OFFLOAD_BOUNDARY;
        cfg.recompute_boundaries = cases[k].form == RECOMPUTE;
        plan_spec sp = {.kind = cases[k].kind, .n_stages = 1, .cut = {end},
                        .parts = {cases[k].parts}, .recompute = cases[k].form == RECOMPUTE};
        if (cases[k].form == SECOND)
            sp.n_stages = 2, sp.cut[0] = mid, sp.cut[1] = end, sp.parts[0] = 1,
            sp.parts[1] = cases[k].parts;
        plan_t *plan = build(net, &cfg, &sp);
        const plan_stage *st = &plan->stages[plan->n_stages - 1];
        closed_shapes sh;
        closed_shapes_init(&sh, st);
        closed_segments seg;
        closed_segments_init(&seg, net, &sh);
        char what[96];
        snprintf(what, sizeof what, "resnet18 1000x1000 kind %d N %d form %d", cases[k].kind,
                 cases[k].parts, cases[k].form);
        if (seg.off)
            fail_msg("%s: %d shapes among %d partitions: no segments", what, sh.n, st->parts);
        closed_segments_free(&seg);
        closed_shapes_free(&sh);
        check_agreement(plan, what);
        /* every field of the stage's two phases as the whole walks make them (where a phase
         * peaks matters once stages are composed, even when the plan's peak is elsewhere) */
        plan_stage alone;
        int in = sp.n_stages == 2 ? mid : 0;
        assert_int_equal(plan_stage_build(net, &cfg, cases[k].kind, in, end, cases[k].parts, true,
                                          &alone), LR_OK);
        plan_phase f[2], bw[2];
        plan_stage_phases(net, &cfg, &alone, sp.n_stages - 1, &f[0], &bw[0]);
        alone.whole_walks = true;
        plan_stage_phases(net, &cfg, &alone, sp.n_stages - 1, &f[1], &bw[1]);
        assert_same_phase(&f[0], &f[1], what);
        assert_same_phase(&bw[0], &bw[1], what);
        plan_stage_free(&alone);
        plan_free(plan);
    }
    net_free(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_closed_form_equals_replay_for_every_zoo_strategy),
        cmocka_unit_test(test_offloaded_input_plans_agree_and_save_the_input),
        cmocka_unit_test(test_recomputed_boundaries_agree),
        cmocka_unit_test(test_closed_form_equals_replay_with_fixed_rows),
        cmocka_unit_test(test_frozen_bn_plans_agree_and_keep_no_statistics),
        cmocka_unit_test(test_closed_form_equals_replay_across_dtypes_optimizers_workspace),
        cmocka_unit_test(test_closed_form_equals_replay_for_hand_cut_hybrids),
        cmocka_unit_test(test_composed_stages_equal_the_closed_form),
        cmocka_unit_test(test_stages_costed_alone_compose_to_the_closed_form),
        cmocka_unit_test(test_partitions_of_a_stage_come_in_a_few_shapes),
        cmocka_unit_test(test_scripts_made_beforehand_change_no_phase),
        cmocka_unit_test(test_segmented_walks_equal_the_replay),
        cmocka_unit_test(test_stages_asked_again_equal_their_walk),
        cmocka_unit_test(test_scripts_are_kept_per_graph),
        cmocka_unit_test(test_twin_stages_are_the_same_plan_shifted),
        cmocka_unit_test(test_region_end_floor_is_under_every_peak),
        cmocka_unit_test(test_stage_floor_is_under_every_plan_holding_it),
        cmocka_unit_test(test_par_for_runs_every_item_once),
        cmocka_unit_test(test_column_peak_of_tiny_vgg_by_hand),
        cmocka_unit_test(test_row_peak_of_a_small_net_by_hand),
        cmocka_unit_test(test_one_partition_costs_column_plus_the_kept_output),
        cmocka_unit_test(test_flops_are_column_plus_recompute_and_halos),
        cmocka_unit_test(test_activation_bytes_scale_linearly_with_batch),
        cmocka_unit_test(test_row_peak_is_bounded_by_column_plus_halos_and_boundaries),
        cmocka_unit_test(test_partition_ranges_tile_and_cover_every_read),
        cmocka_unit_test(test_partitionings_split_input_or_output_equally),
        cmocka_unit_test(test_partitions_are_clamped_to_the_rows_available),
        cmocka_unit_test(test_single_stage_search_is_the_best_by_the_objective),
        cmocka_unit_test(test_row_search_reaches_past_32_at_high_resolution),
        cmocka_unit_test(test_near_tie_is_one_percent),
        cmocka_unit_test(test_paired_choice_equals_each_strategys_own),
        cmocka_unit_test(test_hybrid_search_skips_only_ends_that_cannot_win),
        cmocka_unit_test(test_hybrid_stages_cut_at_each_resolution),
        cmocka_unit_test(test_hybrid_is_never_worse_than_its_single_stage_strategy),
        cmocka_unit_test(test_checkpoint_segments_flag_gives_that_many_segments),
        cmocka_unit_test(test_row_strategies_save_memory_on_vgg16_and_resnet50),
        cmocka_unit_test(test_vgg16_overl_ends_its_region_early),
        cmocka_unit_test(test_exact_bn_passes_are_counted),
        cmocka_unit_test(test_closed_form_equals_replay_on_random_nets),
        cmocka_unit_test(test_cut_inside_a_resnet_block_is_rejected),
        cmocka_unit_test(test_stage_phases_at_any_batch),
        cmocka_unit_test(test_region_with_a_full_op_is_rejected),
        cmocka_unit_test(test_region_runs_through_the_pooling),
        cmocka_unit_test(test_malformed_specs_are_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
