/* test_pytorch.c - the PyTorch framework profile (planner/pytorch*.c): its schedules are well
 * formed for every zoo net, what it says autograd saves equals PyTorch's own count
 * (saved_tensors_hooks, tests/data/pytorch/saved_golden.json) and two hand derivations, and its
 * peaks move the way PyTorch's do with batch, checkpointing, optimizer, warm-up and workspaces.
 *
 * Legend: N batch, P parameters, U checkpoint units, B bytes.
 * Deliberately not here: the caching allocator model itself (test_sim.c), lrcnn's own
 * strategies (test_plan.c), GPU measurements (bench/pytorch_measure.py).
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
#include <json-c/json.h>

#include "pytorch.h"
#include "pytorch_fit.h"

#define MIB ((int64_t)1 << 20)
#define SAVED_GOLDEN LRCNN_SRCDIR "/tests/data/pytorch/saved_golden.json"

static const char *const zoo_nets[] = {"tiny-vgg", "tiny-resnet", "tiny-mix", "alexnet",
                                       "vgg11",    "vgg16",       "resnet18", "resnet50",
                                       "resnet101"};
#define N_ZOO (sizeof zoo_nets / sizeof zoo_nets[0])

/* ------------------------------------------------------------------ helpers */

static plan_config config(int batch, plan_optim optim)
{
    plan_config c = {.batch = batch, .dtype = DT_FP32, .optim = optim, .bn = BN_EXACT};
    return c;
}

/* The profile with no workspaces, so that byte counts are the tensors' alone. */
static pytorch_profile bare_profile(void)
{
    pytorch_profile p;
    pytorch_profile_default(&p);
    p.cublas_workspace_bytes = 0;
    return p;
}

static void emit_ok(const net_t *net, const plan_config *cfg, const pytorch_profile *p,
                    sched_t *s)
{
    if (pytorch_emit(net, cfg, p, s) != LR_OK)
        fail_msg("%s: pytorch_emit: %s", net->name, lr_last_error());
}

static pytorch_prediction predict(const net_t *net, const plan_config *cfg,
                                  const pytorch_profile *p, sim_allocator a)
{
    sched_t s;
    sched_init(&s);
    emit_ok(net, cfg, p, &s);
    pytorch_prediction out;
    if (pytorch_predict(&s, a, &p->alloc, &out) != LR_OK)
        fail_msg("%s: pytorch_predict: %s", net->name, lr_last_error());
    sched_free(&s);
    return out;
}

static int64_t saved(const net_t *net, const plan_config *cfg, const pytorch_profile *p)
{
    int64_t bytes = -1;
    if (pytorch_saved_bytes(net, cfg, p, &bytes) != LR_OK)
        fail_msg("%s: pytorch_saved_bytes: %s", net->name, lr_last_error());
    return bytes;
}

/* The highest exact live bytes of the measured step's forward pass (up to its first BWD step). */
static int64_t forward_high_water(const net_t *net, const plan_config *cfg,
                                  const pytorch_profile *p)
{
    sched_t s;
    sched_init(&s);
    emit_ok(net, cfg, p, &s);
    sim_point *pts;
    assert_int_equal(sim_timeline(&s, ALLOC_EXACT, &pts), LR_OK);
    int64_t top = 0;
    for (int i = s.step_begin; i < s.step_end && s.steps[i].pass == PASS_FWD; i++)
        top = pts[i].live > top ? pts[i].live : top;
    free(pts);
    sched_free(&s);
    return top;
}

static int units_of(const net_t *net, pytorch_units form)
{
    return pytorch_checkpoint_units(net, form, NULL, 0);
}

/* ------------------------------------------------------------------ well-formed schedules */

/* Every zoo net, batches 1/3/16, no checkpoint / 2 segments / one per unit of either form, each
 * optimizer, first and steady step: sched_validate accepts the schedule, every replay frees all
 * it made. */
static void test_schedules_validate_on_every_zoo_net(void **state)
{
    const int batches[] = {1, 3, 16};
    for (size_t z = 0; z < N_ZOO; z++) {
        net_t *net = test_zoo(zoo_nets[z]);
        int segs[] = {0, 2, units_of(net, PT_UNITS_TOP), 2, units_of(net, PT_UNITS_BLOCKS)};
        for (size_t b = 0; b < 3; b++)
            for (size_t g = 0; g < 5; g++)
                for (int o = 0; o < OPTIM_COUNT; o++)
                    for (int steady = 0; steady < 2; steady++) {
                        plan_config cfg = config(batches[b], (plan_optim)o);
                        pytorch_profile p;
                        pytorch_profile_default(&p);
                        p.segments = segs[g];
                        p.units = g < 3 ? PT_UNITS_TOP : PT_UNITS_BLOCKS;
                        p.steady_state = steady;
                        p.weight_decay = steady; /* both settings get covered */
                        p.cudnn_workspace_bytes = steady ? 0 : MIB;
                        sched_t s;
                        sched_init(&s);
                        emit_ok(net, &cfg, &p, &s);
                        if (sched_validate(&s) != LR_OK)
                            fail_msg("%s N=%d segments=%d units=%s optim=%d steady=%d: %s",
                                     net->name, batches[b], segs[g], pytorch_units_name(p.units),
                                     o, steady, lr_last_error());
                        for (int a = 0; a < ALLOC_COUNT; a++) {
                            sim_result r;
                            assert_int_equal(sim_replay(&s, (sim_allocator)a, &r), LR_OK);
                            assert_int_equal(r.end_bytes, 0);
                        }
                        sched_free(&s);
                    }
        net_free(net);
    }
}

/* ------------------------------------------------------------------ what autograd saves */

/* tiny-vgg at N = 4, by hand (fp32 4 B, int64 indices 8 B, bool mask 1 B):
 *   conv1_1 out 4*16*28*28*4 = 200704   (relu1_1 result, conv1_2 input: one storage)
 *   conv1_2 out                200704   (relu1_2 result, pool1 input)
 *   pool1 indices 4*16*14*14*8 = 100352, pool1 out 4*16*14*14*4 = 50176 (conv2_1 input)
 *   conv2_1 out 4*32*14*14*4 = 100352, conv2_2 out 100352
 *   pool2 indices 4*32*7*7*8 = 50176, pool2 out 4*1568*4 = 25088 (fc1 input, via flatten)
 *   fc1 out 4*64*4 = 1024 (relu3 result), dropout mask 4*64 = 256, dropout out 1024 (fc2 input)
 *   log_softmax 4*10*4 = 160, total_weight 4;  the logits are not saved.
 * 401408 + 100352 + 50176 + 200704 + 50176 + 25088 + 1024 + 256 + 1024 + 160 + 4 = 830372. */
static void test_tiny_vgg_saved_bytes_by_hand(void **state)
{
    net_t *net = test_zoo("tiny-vgg");
    plan_config cfg = config(4, OPTIM_SGD);
    pytorch_profile p = bare_profile();
    assert_int_equal(saved(net, &cfg, &p), 830372);
    net_free(net);
}

/* PyTorch's own count (saved_tensors_hooks on CPU torch, dropout as on CUDA) for the tiny nets
 * built from our JSON and for every torchvision net of the zoo, without checkpointing and with
 * checkpoint_sequential over both unit forms at 2 and 4 segments, and with the BatchNorm modules
 * in eval mode (--bn frozen: no save_mean/save_invstd): equal to the byte. */
static void test_saved_bytes_match_torch_saved_tensor_hooks(void **state)
{
    json_object *doc = json_object_from_file(SAVED_GOLDEN);
    if (!doc)
        fail_msg("cannot read %s", SAVED_GOLDEN);
    json_object *cases;
    assert_true(json_object_object_get_ex(doc, "cases", &cases));
    size_t n = json_object_array_length(cases);
    assert_true(n >= 60);
    for (size_t i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(cases, i), *v, *ck;
        assert_true(json_object_object_get_ex(c, "net", &v));
        net_t *net = test_zoo(json_object_get_string(v));
        assert_true(json_object_object_get_ex(c, "height", &v));
        int h = json_object_get_int(v);
        assert_true(json_object_object_get_ex(c, "width", &v));
        assert_int_equal(net_reshape(net, h, json_object_get_int(v)), LR_OK);
        assert_true(json_object_object_get_ex(c, "batch", &v));
        plan_config cfg = config(json_object_get_int(v), OPTIM_MOMENTUM);
        if (json_object_object_get_ex(c, "bn", &v)) /* BN modules in eval mode */
            assert_int_equal(strcmp(json_object_get_string(v), "frozen"), 0), cfg.bn = BN_FROZEN;
        pytorch_profile p = bare_profile();
        if (json_object_object_get_ex(c, "checkpoint", &ck)) {
            assert_true(json_object_object_get_ex(ck, "units", &v));
            p.units = pytorch_units_from_name(json_object_get_string(v));
            assert_true(p.units != PT_UNITS_COUNT);
            assert_true(json_object_object_get_ex(ck, "segments", &v));
            p.segments = json_object_get_int(v);
        }
        assert_true(json_object_object_get_ex(c, "saved_bytes", &v));
        int64_t want = json_object_get_int64(v), got = saved(net, &cfg, &p);
        if (got != want)
            fail_msg("%s N=%d bn %s units %s segments %d: model saves %lld B, torch %lld B",
                     net->name, cfg.batch, plan_bn_name(cfg.bn), pytorch_units_name(p.units),
                     p.segments, (long long)got, (long long)want);
        net_free(net);
    }
    json_object_put(doc);
}

/* Saved bytes are affine in N (BN statistics and total_weight do not grow with it):
 * s(N) - s(1) = (N - 1) * (s(2) - s(1)) for N = 3, 5, 8 on every zoo net. */
static void test_saved_bytes_scale_linearly_with_batch(void **state)
{
    pytorch_profile p = bare_profile();
    for (size_t z = 0; z < N_ZOO; z++) {
        net_t *net = test_zoo(zoo_nets[z]);
        plan_config c1 = config(1, OPTIM_SGD), c2 = config(2, OPTIM_SGD);
        int64_t s1 = saved(net, &c1, &p), per = saved(net, &c2, &p) - s1;
        assert_true(per > 0);
        const int batches[] = {3, 5, 8};
        for (int i = 0; i < 3; i++) {
            plan_config c = config(batches[i], OPTIM_SGD);
            assert_int_equal(saved(net, &c, &p) - s1, (int64_t)(batches[i] - 1) * per);
        }
        net_free(net);
    }
}

/* ------------------------------------------------------------------ hand-derived peaks */

static const char hand_net[] =
    "{\"name\": \"hand\", \"input\": {\"channels\": 1, \"height\": 4, \"width\": 4}, \"layers\": ["
    "{\"name\": \"conv\", \"op\": \"conv\", \"out_channels\": 2, \"kernel\": 3, \"pad\": 1},"
    "{\"name\": \"relu\", \"op\": \"relu\"},"
    "{\"name\": \"pool\", \"op\": \"maxpool\", \"kernel\": 2},"
    "{\"name\": \"fc\", \"op\": \"fc\", \"out_features\": 3},"
    "{\"name\": \"loss\", \"op\": \"softmax_xent\"}]}";

/* conv-relu-pool-fc at N = 2, no workspaces. Resident: x 128, y 2*8 = 16, conv W 72 + b 8,
 * fc W 96 + b 12: 332. Forward: conv out A 256 (relu writes into it), pool out M 64 + int64
 * indices I 128, logits 24 (kept by `out`), log-probs 24, loss 4, total_weight 4: 836; saved:
 * A, I, M, log-probs, total_weight = 476. Backward: ones 4 (840); nll grad 24 (864), total_weight
 * goes (860); log_softmax grad 24 (884), nll grad and log-probs go (836); fc: grad_input 64,
 * grad W 96, grad b 12 (1008), grad_output 24 and M go (920); pool: grad_input 256 (1176),
 * grad_output 64 and I go (984); relu: grad_input 256 (1240 = the peak), grad_output 256 and A
 * go (728); conv (no grad for x): W 72, b 8 (808), grad_output goes (552); ones (548).
 * Momentum adds its buffers (72+8+96+12 = 188) from the start: 1428; Adam twice that: 1616
 * (its step() temporaries, 188, come when the activations are gone: 924 + 188). The forward
 * pass tops out at its end, 836 (SGD): a relu that allocated would have reached 332+256+256. */
static void test_hand_net_peaks(void **state)
{
    net_t *net = test_parse(hand_net);
    pytorch_profile p = bare_profile();
    const int64_t want[OPTIM_COUNT] = {1240, 1428, 1616};
    const int64_t start[OPTIM_COUNT] = {332, 332 + 188, 332 + 376};
    for (int o = 0; o < OPTIM_COUNT; o++) {
        plan_config cfg = config(2, (plan_optim)o);
        pytorch_prediction r = predict(net, &cfg, &p, ALLOC_EXACT);
        assert_int_equal(r.start_allocated, start[o]);
        assert_int_equal(r.max_allocated, want[o]);
        assert_int_equal(saved(net, &cfg, &p), 476);
        assert_int_equal(forward_high_water(net, &cfg, &p), 836 + start[o] - start[0]);
    }
    net_free(net);
}

static const char residual_net[] =
    "{\"name\": \"residual\", \"input\": {\"channels\": 1, \"height\": 2, \"width\": 2}, "
    "\"layers\": ["
    "{\"name\": \"conv1\", \"op\": \"conv\", \"out_channels\": 1, \"kernel\": 1, \"bias\": false},"
    "{\"name\": \"relu1\", \"op\": \"relu\"},"
    "{\"name\": \"conv2\", \"op\": \"conv\", \"out_channels\": 1, \"kernel\": 1, \"bias\": false},"
    "{\"name\": \"add\", \"op\": \"add\", \"inputs\": [\"conv2\", \"relu1\"]},"
    "{\"name\": \"relu2\", \"op\": \"relu\"},"
    "{\"name\": \"fc\", \"op\": \"fc\", \"out_features\": 2, \"bias\": false},"
    "{\"name\": \"loss\", \"op\": \"softmax_xent\"}]}";

/* A residual block at N = 1, SGD: `out += identity` and both relus in place, and the two
 * gradients of relu1's output summed in place into the one already buffered. Resident: x 16,
 * y 8, W1 4, W2 4, fc W 32: 64. Forward: A 16 (conv1, relu1), B 16 (conv2, add, relu2), logits 8,
 * log-probs 8, loss 4, total_weight 4: 120; saved A, B, log-probs, total_weight = 44.
 * Backward: ones 4, loss grads (peak 136 there) -> 120; fc grad_input 16 + grad W 32 (168),
 * then its grad_output and fc's hold on B go (160); relu2 grad G 16 (176 = the peak), B goes
 * (144); add passes G to conv2 and relu1; conv2 grad_input H 16 + grad W2 4 (164), H is added
 * into G in place (148) - an out-of-place sum would have reached 180 here. Forward tops out
 * at its end, 120; an add or relu that allocated would have passed it. */
static void test_residual_gradients_accumulate_in_place(void **state)
{
    net_t *net = test_parse(residual_net);
    pytorch_profile p = bare_profile();
    plan_config cfg = config(1, OPTIM_SGD);
    pytorch_prediction r = predict(net, &cfg, &p, ALLOC_EXACT);
    assert_int_equal(r.start_allocated, 64);
    assert_int_equal(r.max_allocated, 176);
    assert_int_equal(saved(net, &cfg, &p), 44);
    assert_int_equal(forward_high_water(net, &cfg, &p), 120);
    net_free(net);
}

/* ------------------------------------------------------------------ checkpointing */

/* checkpoint_sequential's modules over the body (the head runs after it). top: VGG-16's 31
 * `features`, ResNet's conv1, bn1, relu, maxpool, layer1..layer4 (8, for ResNet-18 too, whose
 * layer1 has no downsample), AlexNet's 13 `features`; blocks: VGG-16 13 conv+relu and 5 pools,
 * ResNet-50 conv1, bn1+relu, maxpool and 16 blocks, ResNet-101 3 + 33, AlexNet 8. */
static void test_checkpoint_units_of_torchvision_nets(void **state)
{
    struct {
        const char *net;
        pytorch_units form;
        int units;
        const char *first_end, *last_end;
    } cases[] = {{"vgg16", PT_UNITS_TOP, 31, "conv1_1", "pool5"},
                 {"vgg16", PT_UNITS_BLOCKS, 18, "relu1_1", "pool5"},
                 {"resnet50", PT_UNITS_TOP, 8, "conv1", "layer4_2_relu"},
                 {"resnet50", PT_UNITS_BLOCKS, 19, "conv1", "layer4_2_relu"},
                 {"resnet18", PT_UNITS_TOP, 8, "conv1", "layer4_1_relu"},
                 {"resnet101", PT_UNITS_TOP, 8, "conv1", "layer4_2_relu"},
                 {"resnet101", PT_UNITS_BLOCKS, 36, "conv1", "layer4_2_relu"},
                 {"alexnet", PT_UNITS_TOP, 13, "conv1", "pool5"},
                 {"alexnet", PT_UNITS_BLOCKS, 8, "relu1", "pool5"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        net_t *net = test_zoo(cases[i].net);
        int ends[64];
        int u = pytorch_checkpoint_units(net, cases[i].form, ends, 64);
        assert_int_equal(u, cases[i].units);
        assert_string_equal(net->nodes[ends[0]].name, cases[i].first_end);
        assert_string_equal(net->nodes[ends[u - 1]].name, cases[i].last_end);
        net_free(net);
    }
    const char *resnet_top[] = {"conv1",          "bn1",           "relu",          "maxpool",
                                "layer1_2_relu", "layer2_3_relu", "layer3_5_relu", "layer4_2_relu"};
    net_t *net = test_zoo("resnet50");
    int ends[64];
    pytorch_checkpoint_units(net, PT_UNITS_TOP, ends, 64);
    for (int i = 0; i < 8; i++)
        assert_string_equal(net->nodes[ends[i]].name, resnet_top[i]);
    pytorch_checkpoint_units(net, PT_UNITS_BLOCKS, ends, 64);
    assert_string_equal(net->nodes[ends[1]].name, "relu");
    assert_string_equal(net->nodes[ends[3]].name, "layer1_0_relu");
    net_free(net);
    net = test_zoo("resnet18"); /* layer1's identity blocks stay one stage; layer2 opens one */
    pytorch_checkpoint_units(net, PT_UNITS_TOP, ends, 64);
    assert_string_equal(net->nodes[ends[4]].name, "layer1_1_relu");
    net_free(net);
}

/* Checkpointing residual blocks / conv+relu groups with 2 to 5 segments, and the top-level
 * modules with 4 (the usual idiom), lowers max_memory_allocated of VGG16 and ResNet-50 at
 * N = 64 below the plain step, under the exact and the caching model. */
static void test_checkpoint_reduces_peak_at_batch_64(void **state)
{
    const char *nets[] = {"vgg16", "resnet50"};
    for (int i = 0; i < 2; i++) {
        net_t *net = test_zoo(nets[i]);
        plan_config cfg = config(64, OPTIM_MOMENTUM);
        pytorch_profile p;
        pytorch_profile_default(&p);
        for (int a = 0; a < ALLOC_COUNT; a += 2) { /* exact, caching */
            p.segments = 0;
            int64_t column = predict(net, &cfg, &p, (sim_allocator)a).max_allocated;
            for (int seg = 2; seg <= 6; seg++) {
                p.units = seg <= 5 ? PT_UNITS_BLOCKS : PT_UNITS_TOP;
                p.segments = seg <= 5 ? seg : 4;
                int64_t ck = predict(net, &cfg, &p, (sim_allocator)a).max_allocated;
                if (ck >= column)
                    fail_msg("%s %s segments=%d: %lld B, not below column %lld B", net->name,
                             pytorch_units_name(p.units), p.segments, (long long)ck,
                             (long long)column);
            }
        }
        net_free(net);
    }
}

/* checkpoint_sequential cuts by module count: ResNet-50's 8 top-level modules in 5 segments
 * checkpoint only conv1, bn1, relu and maxpool and run layer1..layer4 normally, with every ReLU
 * out of place: the step needs more than without checkpointing. */
static void test_checkpointing_only_the_stem_costs_memory(void **state)
{
    net_t *net = test_zoo("resnet50");
    plan_config cfg = config(64, OPTIM_MOMENTUM);
    pytorch_profile p = bare_profile();
    int64_t column = predict(net, &cfg, &p, ALLOC_EXACT).max_allocated;
    p.segments = 5;
    assert_true(predict(net, &cfg, &p, ALLOC_EXACT).max_allocated > column);
    net_free(net);
}

/* Checkpointing trades memory for a recompute: the step runs RECOMPUTE steps (none without it)
 * and saves less once forward ends, the kept segment inputs included. */
static void test_checkpoint_recomputes_and_saves_less(void **state)
{
    net_t *net = test_zoo("resnet50");
    plan_config cfg = config(8, OPTIM_SGD);
    pytorch_profile p = bare_profile();
    int64_t column = saved(net, &cfg, &p);
    for (int seg = 0; seg <= 4; seg += 4) {
        p.segments = seg;
        sched_t s;
        sched_init(&s);
        emit_ok(net, &cfg, &p, &s);
        sim_result r;
        assert_int_equal(sim_replay(&s, ALLOC_EXACT, &r), LR_OK);
        if (seg == 0)
            assert_int_equal(r.flops_by_pass[PASS_RECOMPUTE], 0);
        else
            assert_true(r.flops_by_pass[PASS_RECOMPUTE] > 0);
        sched_free(&s);
    }
    assert_true(saved(net, &cfg, &p) < column);
    net_free(net);
}

static const char stem_net[] =
    "{\"name\": \"stem\", \"input\": {\"channels\": 1, \"height\": 4, \"width\": 4}, \"layers\": ["
    "{\"name\": \"conv\", \"op\": \"conv\", \"out_channels\": 2, \"kernel\": 3, \"pad\": 1,"
    " \"bias\": false},"
    "{\"name\": \"bn\", \"op\": \"batchnorm\"},"
    "{\"name\": \"relu\", \"op\": \"relu\"},"
    "{\"name\": \"pool\", \"op\": \"maxpool\", \"kernel\": 2},"
    "{\"name\": \"fc\", \"op\": \"fc\", \"out_features\": 3},"
    "{\"name\": \"loss\", \"op\": \"softmax_xent\"}]}";

/* The recompute stops at the pack of the segment's last saved tensor. top units [conv], [bn],
 * [relu], [pool] with 4 segments checkpoint the first three: [conv] saves only its input (the
 * batch, packed before the kernel), so nothing is allocated; [bn] remakes its output and its
 * two statistics; [relu] (not in place under checkpointing) remakes its output. blocks units
 * [conv], [bn relu], [pool] with 3 segments: [bn relu] remakes all four. */
static void test_checkpoint_recompute_stops_early(void **state)
{
    net_t *net = test_parse(stem_net);
    assert_int_equal(units_of(net, PT_UNITS_TOP), 4);
    assert_int_equal(units_of(net, PT_UNITS_BLOCKS), 3);
    plan_config cfg = config(2, OPTIM_SGD);
    const int want[2][3] = {{0, 3, 1}, {0, 4, -1}};
    for (int form = 0; form < PT_UNITS_COUNT; form++) {
        pytorch_profile p = bare_profile();
        p.units = (pytorch_units)form;
        p.segments = units_of(net, p.units);
        sched_t s;
        sched_init(&s);
        emit_ok(net, &cfg, &p, &s);
        int allocs[3] = {0, 0, 0};
        for (int i = s.step_begin; i < s.step_end; i++) {
            const sched_step *st = &s.steps[i];
            if (st->op == STEP_ALLOC && st->pass == PASS_RECOMPUTE) {
                assert_true(st->stage >= 0 && st->stage < p.segments - 1);
                allocs[st->stage]++;
            }
        }
        for (int k = 0; k < p.segments - 1; k++)
            assert_int_equal(allocs[k], want[form][k]);
        sched_free(&s);
    }
    net_free(net);
}

/* checkpoint_sequential cannot cut U units into more than U segments (segment_size would be 0):
 * bad input naming --segments. */
static void test_too_many_segments_is_bad_input(void **state)
{
    net_t *net = test_zoo("resnet50");
    plan_config cfg = config(2, OPTIM_SGD);
    pytorch_profile p;
    pytorch_profile_default(&p);
    p.units = PT_UNITS_BLOCKS;
    p.segments = 20;
    sched_t s;
    sched_init(&s);
    assert_int_equal(pytorch_emit(net, &cfg, &p, &s), LR_ERR_INPUT);
    assert_non_null(strstr(lr_last_error(), "--segments 20"));
    assert_int_equal(s.n_steps, 0);
    p.segments = 19;
    emit_ok(net, &cfg, &p, &s);
    sched_free(&s);
    net_free(net);
}

/* The profile models fp32 training only: fp16 is bad input rather than a wrong number. */
static void test_fp16_is_bad_input(void **state)
{
    net_t *net = test_zoo("tiny-vgg");
    plan_config cfg = config(2, OPTIM_SGD);
    cfg.dtype = DT_FP16;
    pytorch_profile p;
    pytorch_profile_default(&p);
    sched_t s;
    sched_init(&s);
    assert_int_equal(pytorch_emit(net, &cfg, &p, &s), LR_ERR_INPUT);
    assert_non_null(strstr(lr_last_error(), "fp32"));
    sched_free(&s);
    net_free(net);
}

/* ------------------------------------------------------------------ optimizer and warm-up */

/* Adam >= SGD with momentum >= plain SGD on every zoo net at N = 8 (strictly under the exact
 * model: momentum keeps P floats more all step, Adam 2P), and the same order under caching. */
static void test_optimizer_peaks_are_ordered(void **state)
{
    pytorch_profile p;
    pytorch_profile_default(&p);
    for (size_t z = 0; z < N_ZOO; z++) {
        net_t *net = test_zoo(zoo_nets[z]);
        for (int a = 0; a < ALLOC_COUNT; a += 2) {
            int64_t peak[OPTIM_COUNT];
            for (int o = 0; o < OPTIM_COUNT; o++) {
                plan_config cfg = config(8, (plan_optim)o);
                peak[o] = predict(net, &cfg, &p, (sim_allocator)a).max_allocated;
            }
            if (a == ALLOC_EXACT) {
                assert_true(peak[OPTIM_ADAM] >= peak[OPTIM_MOMENTUM] + 4 * net->params);
                assert_true(peak[OPTIM_MOMENTUM] >= peak[OPTIM_SGD] + 4 * net->params);
            }
            assert_true(peak[OPTIM_ADAM] >= peak[OPTIM_MOMENTUM]);
            assert_true(peak[OPTIM_MOMENTUM] >= peak[OPTIM_SGD]);
        }
        net_free(net);
    }
}

/* The measured step after a warm-up starts with the optimizer state resident (momentum P floats,
 * Adam 2P, class opt_state); the first step starts without it and makes it inside step(), after
 * the last backward kernel. */
static void test_steady_state_starts_with_optimizer_state(void **state)
{
    net_t *net = test_zoo("resnet18");
    pytorch_profile p = bare_profile();
    for (int o = OPTIM_MOMENTUM; o <= OPTIM_ADAM; o++) {
        int64_t state_bytes = 4 * net->params * (o == OPTIM_ADAM ? 2 : 1);
        plan_config cfg = config(4, (plan_optim)o);
        for (int steady = 0; steady < 2; steady++) {
            p.steady_state = steady;
            sched_t s;
            sched_init(&s);
            emit_ok(net, &cfg, &p, &s);
            sim_point *pts;
            assert_int_equal(sim_timeline(&s, ALLOC_EXACT, &pts), LR_OK);
            assert_int_equal(pts[s.step_begin - 1].by_class[TC_OPT_STATE], steady ? state_bytes : 0);
            int64_t made = 0;
            int last_bwd = -1;
            for (int i = s.step_begin; i < s.step_end; i++) {
                const sched_step *st = &s.steps[i];
                if (st->op == STEP_RUN && st->pass == PASS_BWD)
                    last_bwd = i;
                if (st->op == STEP_ALLOC && s.tensors[st->t].kind == TK_OPT_STATE &&
                    s.tensors[st->t].cls != TC_WORKSPACE) {
                    assert_true(i > last_bwd);
                    made += s.tensors[st->t].bytes;
                }
            }
            assert_int_equal(made, steady ? 0 : state_bytes);
            free(pts);
            sched_free(&s);
        }
    }
    net_free(net);
}

/* Weight decay makes the foreach optimizers copy every gradient inside step(): the highest
 * live bytes of the update grow by exactly P floats (plain SGD, and momentum). */
static void test_weight_decay_copies_the_gradients_in_step(void **state)
{
    net_t *net = test_zoo("tiny-resnet");
    for (int o = OPTIM_SGD; o <= OPTIM_MOMENTUM; o++) {
        plan_config cfg = config(4, (plan_optim)o);
        int64_t top[2];
        for (int wd = 0; wd < 2; wd++) {
            pytorch_profile p = bare_profile();
            p.weight_decay = wd;
            sched_t s;
            sched_init(&s);
            emit_ok(net, &cfg, &p, &s);
            sim_point *pts;
            assert_int_equal(sim_timeline(&s, ALLOC_EXACT, &pts), LR_OK);
            top[wd] = 0;
            for (int i = s.step_begin; i < s.step_end; i++)
                if (s.steps[i].pass == PASS_UPDATE && pts[i].live > top[wd])
                    top[wd] = pts[i].live;
            free(pts);
            sched_free(&s);
        }
        assert_int_equal(top[1] - top[0], 4 * net->params);
    }
    net_free(net);
}

/* ------------------------------------------------------------------ workspaces */

/* Two cuBLAS workspaces (the Python thread's and the autograd thread's) are resident when the
 * measured step starts; the first step starts without them. */
static void test_cublas_workspaces_persist_after_the_warm_up(void **state)
{
    net_t *net = test_zoo("vgg11");
    plan_config cfg = config(2, OPTIM_SGD);
    for (int steady = 0; steady < 2; steady++) {
        pytorch_profile none = bare_profile(), with;
        pytorch_profile_default(&with);
        none.steady_state = with.steady_state = steady;
        int64_t diff = predict(net, &cfg, &with, ALLOC_EXACT).start_allocated -
                       predict(net, &cfg, &none, ALLOC_EXACT).start_allocated;
        assert_int_equal(diff, steady ? 2 * PYTORCH_CUBLAS_WORKSPACE_SM90 : 0);
    }
    net_free(net);
}

/* A cuDNN workspace W around every convolution call raises the peak by at most W (it is
 * transient) and by more than nothing (convolutions run where the peak is). */
static void test_cudnn_workspace_raises_the_peak_by_at_most_its_size(void **state)
{
    net_t *net = test_zoo("resnet50");
    plan_config cfg = config(8, OPTIM_MOMENTUM);
    pytorch_profile p = bare_profile();
    int64_t base = predict(net, &cfg, &p, ALLOC_EXACT).max_allocated;
    p.cudnn_workspace_bytes = 16 * MIB;
    int64_t with = predict(net, &cfg, &p, ALLOC_EXACT).max_allocated;
    assert_true(with > base);
    assert_true(with <= base + 16 * MIB);
    net_free(net);
}

/* pytorch_predict reads the step the way torch does after reset_peak_memory_stats(): the start
 * is what the prologue left, the maximum never falls below it, reserved never below allocated. */
static void test_prediction_reads_the_measured_step(void **state)
{
    net_t *net = test_zoo("resnet18");
    plan_config cfg = config(16, OPTIM_ADAM);
    pytorch_profile p;
    pytorch_profile_default(&p);
    sched_t s;
    sched_init(&s);
    emit_ok(net, &cfg, &p, &s);
    pytorch_prediction r;
    assert_int_equal(pytorch_predict(&s, ALLOC_CACHING, NULL, &r), LR_OK);
    assert_true(r.peak_step >= s.step_begin && r.peak_step < s.step_end);
    assert_true(r.max_allocated > r.start_allocated);
    assert_true(r.max_reserved >= r.max_allocated);
    assert_true(r.start_reserved >= r.start_allocated);
    sim_result whole;
    assert_int_equal(sim_replay(&s, ALLOC_CACHING, &whole), LR_OK);
    assert_true(whole.peak_bytes >= r.max_allocated);
    assert_int_equal(whole.peak_reserved_bytes, r.max_reserved); /* nothing is ever released */
    sched_free(&s);
    net_free(net);
}

/* ------------------------------------------------------------------ will it fit */

static pytorch_eval evaluate(const net_t *net, int batch, const pytorch_profile *p)
{
    plan_config cfg = config(batch, OPTIM_MOMENTUM);
    pytorch_eval ev;
    if (pytorch_evaluate(net, &cfg, p, &ev) != LR_OK)
        fail_msg("%s: pytorch_evaluate: %s", net->name, lr_last_error());
    return ev;
}

/* checkpoint's own choice is the segment count with the lowest reserved peak: no count in
 * 2..U of either form reserves less (brute force, ResNet-50 and VGG-16 at N = 16). */
static void test_checkpoint_chooses_the_lowest_reserved_peak(void **state)
{
    const char *nets[] = {"resnet50", "vgg16"};
    for (int i = 0; i < 2; i++) {
        net_t *net = test_zoo(nets[i]);
        plan_config cfg = config(16, OPTIM_MOMENTUM);
        for (int form = 0; form < PT_UNITS_COUNT; form++) {
            pytorch_profile p;
            pytorch_profile_default(&p);
            p.units = (pytorch_units)form;
            int chosen;
            pytorch_eval best;
            assert_int_equal(pytorch_choose_segments(net, &cfg, &p, &chosen, &best), LR_OK);
            for (int s = 2; s <= units_of(net, p.units); s++) {
                p.segments = s;
                pytorch_eval ev = evaluate(net, 16, &p);
                assert_true(ev.pred.max_reserved >= best.pred.max_reserved);
                if (s == chosen)
                    assert_int_equal(ev.pred.max_reserved, best.pred.max_reserved);
            }
        }
        net_free(net);
    }
}

/* The target's reserved peak at `batch`: checkpoint's lowest over S = 2..U. */
static int64_t target_reserved(const net_t *net, int batch, const pytorch_fit_target *t)
{
    int64_t low = INT64_MAX;
    pytorch_profile p = t->profile;
    for (int s = t->checkpoint ? 2 : 0; s <= (t->checkpoint ? units_of(net, p.units) : 0); s++) {
        p.segments = s;
        int64_t v = evaluate(net, batch, &p).pred.max_reserved;
        low = v < low ? v : low;
    }
    return low;
}

/* --fit's answers are boundaries of the reserved peak: at max_batch (resp. max_square_input at
 * batch 1) the target's reserved peak fits the budget and one more does not, for column and for
 * checkpoint (some segment count fits there, none at the next size); checkpointing fits more. */
static void test_fit_answers_are_reserved_boundaries(void **state)
{
    net_t *net = test_zoo("resnet50"), *copy;
    assert_int_equal(auto_subnet(net, 0, &copy), LR_OK);
    plan_config cfg = config(8, OPTIM_MOMENTUM);
    const int64_t budget = (int64_t)6 << 30;
    fit_result r[2];
    for (int ck = 0; ck < 2; ck++) {
        pytorch_fit_target t = {.checkpoint = ck};
        pytorch_profile_default(&t.profile);
        assert_int_equal(pytorch_fit_run(net, &cfg, &t, budget, &r[ck]), LR_OK);
        assert_true(r[ck].max_batch > 1 && !r[ck].batch_at_limit);
        assert_true(target_reserved(net, r[ck].max_batch, &t) <= budget);
        assert_true(target_reserved(net, r[ck].max_batch + 1, &t) > budget);
        int h = r[ck].max_square_input;
        assert_int_equal(net_reshape(copy, h, h), LR_OK);
        assert_true(target_reserved(copy, 1, &t) <= budget);
        h += r[ck].input_step;
        assert_int_equal(net_reshape(copy, h, h), LR_OK);
        assert_true(target_reserved(copy, 1, &t) > budget);
    }
    assert_true(r[1].max_batch > r[0].max_batch);
    assert_true(r[1].max_square_input > r[0].max_square_input);
    net_free(copy);
    net_free(net);
}

/* auto takes the least recompute whose reserved peak fits: no checkpointing under a generous
 * budget; under a tight one a candidate whose recompute no other within the budget undercuts;
 * when no reserved peak fits, one that gets by with cache flushes (a candidate fits then when
 * its run completes with the budget as the device's memory); when nothing fits, the lowest
 * reserved peak, marked as not fitting. */
static void test_auto_takes_the_least_recompute_that_fits(void **state)
{
    net_t *net = test_zoo("resnet50");
    plan_config cfg = config(64, OPTIM_MOMENTUM);
    pytorch_profile base;
    pytorch_profile_default(&base);
    const int64_t budgets[] = {(int64_t)64 << 30, (int64_t)4 << 30, (int64_t)1 << 30,
                               (int64_t)2560 << 20};
    for (int b = 0; b < 4; b++) {
        pytorch_auto_result r;
        assert_int_equal(pytorch_auto(net, &cfg, &base, budgets[b], &r), LR_OK);
        assert_int_equal(r.n, 1 + (units_of(net, PT_UNITS_TOP) - 1) +
                                  (units_of(net, PT_UNITS_BLOCKS) - 1));
        const pytorch_auto_candidate *c = &r.c[r.best];
        bool any_within = false;
        for (int i = 0; i < r.n; i++)
            any_within |= r.c[i].ev.pred.max_reserved <= budgets[b];
        assert_int_equal(c->ev.pred.max_reserved <= budgets[b], any_within);
        for (int i = 0; i < r.n; i++) {
            const pytorch_auto_candidate *x = &r.c[i];
            pytorch_profile q = base;
            q.segments = x->segments, q.units = x->units, q.alloc.limit_bytes = budgets[b];
            bool gets_by = evaluate(net, 64, &q).pred.oom_step < 0;
            assert_int_equal(x->fits, x->ev.pred.max_reserved <= budgets[b] || gets_by);
            assert_true(x->alloc_retries == 0 || x->ev.pred.max_reserved > budgets[b]);
            if (any_within && x->ev.pred.max_reserved <= budgets[b])
                assert_true(x->ev.recompute_flops >= c->ev.recompute_flops);
            if (!any_within && c->fits && x->fits)
                assert_true(x->ev.recompute_flops >= c->ev.recompute_flops);
            if (!c->fits)
                assert_true(r.c[i].ev.pred.max_reserved >= c->ev.pred.max_reserved);
        }
        if (b == 0)
            assert_int_equal(c->segments, 0);
        if (b == 1)
            assert_true(c->fits && c->segments >= 2 && c->ev.recompute_flops > 0);
        if (b == 2)
            assert_false(c->fits);
        if (b == 3) /* 2.5 GiB: no reserved peak fits, some run gets by with flushes */
            assert_true(c->fits && c->alloc_retries > 0);
        pytorch_auto_free(&r);
    }
    net_free(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedules_validate_on_every_zoo_net),
        cmocka_unit_test(test_tiny_vgg_saved_bytes_by_hand),
        cmocka_unit_test(test_saved_bytes_match_torch_saved_tensor_hooks),
        cmocka_unit_test(test_saved_bytes_scale_linearly_with_batch),
        cmocka_unit_test(test_hand_net_peaks),
        cmocka_unit_test(test_residual_gradients_accumulate_in_place),
        cmocka_unit_test(test_checkpoint_units_of_torchvision_nets),
        cmocka_unit_test(test_checkpoint_reduces_peak_at_batch_64),
        cmocka_unit_test(test_checkpointing_only_the_stem_costs_memory),
        cmocka_unit_test(test_checkpoint_recomputes_and_saves_less),
        cmocka_unit_test(test_checkpoint_recompute_stops_early),
        cmocka_unit_test(test_too_many_segments_is_bad_input),
        cmocka_unit_test(test_fp16_is_bad_input),
        cmocka_unit_test(test_optimizer_peaks_are_ordered),
        cmocka_unit_test(test_steady_state_starts_with_optimizer_state),
        cmocka_unit_test(test_weight_decay_copies_the_gradients_in_step),
        cmocka_unit_test(test_cublas_workspaces_persist_after_the_warm_up),
        cmocka_unit_test(test_cudnn_workspace_raises_the_peak_by_at_most_its_size),
        cmocka_unit_test(test_prediction_reads_the_measured_step),
        cmocka_unit_test(test_checkpoint_chooses_the_lowest_reserved_peak),
        cmocka_unit_test(test_fit_answers_are_reserved_boundaries),
        cmocka_unit_test(test_auto_takes_the_least_recompute_that_fits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
