/* test_device.c - the device table and the time model (planner/device.c): a kernel takes the
 * slower of its compute and its memory traffic plus its launches, thin stripes take longer than
 * the whole map they cover, the named devices carry usable constants, and lrcnn-sim shows the
 * predicted step time per strategy when a device is named.
 *
 * Copies beside kernels: the two-stream timeline (device_overlap_of) on hand-made steps whose
 * answer is known.
 *
 * Deliberately not here: the closed form's step time against the schedule's kernels
 * (test_plan.c check_agreement), auto under a time cap (test_auto.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "sim_cli.h"
#include "support.h"

/* A device with round numbers: 1 TFLOP/s at full efficiency, 1 GB/s, 1 us per launch. */
static const device_spec round_device = {"round", 0, "test", 1e12, 1.0, 1e9, 1e-6, 1000.0, "test", 1e9};

/* With E outputs the compute runs at E / (E + half) of peak * efficiency; the slower of compute
 * and memory counts, plus one launch time per kernel started. */
static void test_kernel_time_is_the_slower_of_compute_and_memory_plus_launches(void **state)
{
    device_kernel compute_bound = {.flops = 2000000000, .bytes = 1000, .elems = 1000, .launches = 2};
    /* u = 1000 / 2000: 2e9 FLOPs at 0.5e12 = 4 ms, memory 1 us, two launches 2 us */
    assert_int_equal(device_kernel_ns(&round_device, &compute_bound), 4000000 + 2000);
    device_kernel memory_bound = {.flops = 1000, .bytes = 5000000, .elems = 1000000, .launches = 1};
    assert_int_equal(device_kernel_ns(&round_device, &memory_bound), 5000000 + 1000);
}

/* The same convolution over a whole map and over 7 stripes that tile it: same FLOPs, more time,
 * from the launches and from the stripes' lower efficiency on a GPU. */
static void test_stripes_take_longer_than_the_map_they_tile(void **state)
{
    net_t *net = test_zoo("vgg16");
    int conv = net_find(net, "conv1_2");
    const device_spec *h100 = device_find("h100-80gb");
    assert_non_null(h100);
    const int h = net->nodes[conv].h, batch = 8;
    for (int kind = KERNEL_FWD; kind <= KERNEL_BWD; kind++) {
        device_kernel whole = device_kernel_of(net, conv, batch, 4, h, kind, OPTIM_SGD);
        int64_t stripes_ns = 0, stripes_flops = 0;
        for (int j = 0, lo = 0; j < 7; j++) {
            int hi = (j + 1) * h / 7;
            device_kernel k = device_kernel_of(net, conv, batch, 4, hi - lo, kind, OPTIM_SGD);
            stripes_ns += device_kernel_ns(h100, &k);
            stripes_flops += k.flops;
            lo = hi;
        }
        assert_int_equal(stripes_flops, whole.flops);
        print_message("conv1_2 %s batch %d: whole map %.3f ms, 7 stripes %.3f ms\n",
                      kind == KERNEL_FWD ? "forward" : "backward", batch,
                      device_kernel_ns(h100, &whole) / 1e6, stripes_ns / 1e6);
        assert_true(stripes_ns > device_kernel_ns(h100, &whole) + 6 * h100->launch_s * 1e9);
    }
    net_free(net);
}

/* Every device has positive constants and a unique name; GPUs have memory, the CPU reference
 * does not (it is a --device, not a --fit card). */
static void test_every_device_has_time_constants(void **state)
{
    int n = 0;
    for (const device_spec *d = device_table; d->name; d++, n++) {
        assert_true(d->peak_flops > 0 && d->efficiency > 0 && d->efficiency <= 1);
        assert_true(d->bandwidth > 0 && d->launch_s > 0 && d->half_elems > 0 && d->host_link > 0);
        assert_non_null(d->label);
        assert_non_null(d->source);
        assert_ptr_equal(device_find(d->name), d);
        assert_true((strcmp(d->name, "cpu") == 0) == (d->bytes == 0));
    }
    assert_true(n >= 12);
    assert_null(device_find("h100"));
}

/* --offload's copies take their bytes over the host link (1 GB/s: a byte a nanosecond), and a
 * plan's copy time is that of its copy bytes (on vgg16 at 2048x2048 with input and boundaries
 * offloaded, over an H100's PCIe 5.0 link). */
static void test_copies_take_their_bytes_over_the_host_link(void **state)
{
    assert_int_equal(device_copy_ns(&round_device, 1000000), 1000000);
    assert_int_equal(device_copy_ns(&round_device, 0), 0);
    assert_int_equal(device_copy_ns(NULL, 1000), 0);
    net_t *net = test_zoo("vgg16");
    assert_int_equal(net_reshape(net, 2048, 2048), LR_OK);
    plan_config cfg = {.batch = 1, .dtype = DT_FP32, .optim = OPTIM_MOMENTUM, .bn = BN_EXACT,
                       .device = device_find("h100-80gb"),
                       .offload = OFFLOAD_INPUT | OFFLOAD_BOUNDARY};
    plan_request req = {.strategy = STRAT_2PS};
    plan_choice c;
    assert_int_equal(strategy_choose(net, &cfg, &req, &c), LR_OK);
    assert_true(c.cost.copy_bytes > 0);
    assert_int_equal(c.cost.copy_ns, device_copy_ns(cfg.device, c.cost.copy_bytes));
    assert_true(c.cost.copy_ns >= (int64_t)(c.cost.copy_bytes / 63.0));
    net_free(net);
}

/* ------------------------------------------------------------------ copies beside kernels */

/* Hand-made steps for the two-stream timeline: one-row tensors of node 1 of tiny-vgg (so RUN
 * steps have a kernel time), copies of 1000 bytes (1 us over round_device's link). */
static int one_row(sched_t *s, int64_t bytes, sched_tier tier)
{
    int t = sched_add_tensor(s, TC_ACTIVATION, TK_VALUE, 1, -1, 0, 0, bytes);
    s->tensors[t].tier = (uint8_t)tier;
    return t;
}

static void kernel(sched_t *s, int in, int out)
{
    sched_run *r = sched_run_step(s, PASS_FWD, 1, -1, 0, 0, 0, 0, 1000);
    r->n_in = 1;
    r->in[0] = in;
    r->out = out;
}

static void alloc_at(sched_t *s, int t)
{
    sched_alloc(s, t, PASS_FWD, 1, -1, 0);
}

static void free_at(sched_t *s, int t)
{
    sched_release(s, t, PASS_FWD, 1, -1, 0);
}

/* The time of a RUN step of the hand-made schedules (all alike). */
static int64_t kernel_ns(const net_t *net)
{
    sched_step st = {.op = STEP_RUN, .pass = PASS_FWD, .node = 1, .row_lo = 0, .row_hi = 0,
                     .flops = 1000};
    device_kernel k;
    assert_true(device_kernel_of_step(net, 1, 4, OPTIM_SGD, &st, &k));
    return device_kernel_ns(&round_device, &k);
}

static device_overlap timeline(const net_t *net, sched_t *s)
{
    s->step_end = s->n_steps;
    assert_int_equal(sched_validate(s), LR_OK);
    device_overlap o;
    assert_int_equal(device_overlap_of(net, 1, 4, OPTIM_SGD, &round_device, s, &o), LR_OK);
    return o;
}

/* A copy-in whose destination memory nothing used runs at once, beside the kernel before it:
 * the step is the two kernels, nothing exposed. */
static void test_copy_in_to_free_memory_hides_behind_the_kernel_before(void **state)
{
    net_t *net = test_zoo("tiny-vgg");
    int64_t k = kernel_ns(net);
    assert_true(k > 1000);
    sched_t s;
    sched_init(&s);
    int x = one_row(&s, 4000, TIER_DEVICE), y = one_row(&s, 1000, TIER_DEVICE);
    int d = one_row(&s, 1000, TIER_DEVICE), h = one_row(&s, 1000, TIER_HOST);
    alloc_at(&s, x), alloc_at(&s, y), alloc_at(&s, h);
    kernel(&s, -1, x);
    alloc_at(&s, d);
    sched_copy(&s, d, h, 0, 0, false, PASS_FWD, 1, -1, 0);
    kernel(&s, d, y);
    free_at(&s, d), free_at(&s, h), free_at(&s, x), free_at(&s, y);
    device_overlap o = timeline(net, &s);
    assert_int_equal(o.kernel_ns, 2 * k);
    assert_int_equal(o.copy_ns, 1000);
    assert_int_equal(o.step_ns, 2 * k);
    assert_int_equal(o.exposed_ns, 0);
    sched_free(&s);
    net_free(net);
}

/* A copy-in into the memory the kernel just before it used must wait for that kernel, and the
 * kernel reading it for the copy: the whole copy is exposed. */
static void test_copy_in_to_memory_just_freed_is_exposed(void **state)
{
    net_t *net = test_zoo("tiny-vgg");
    int64_t k = kernel_ns(net);
    sched_t s;
    sched_init(&s);
    int y = one_row(&s, 1000, TIER_DEVICE), x = one_row(&s, 1000, TIER_DEVICE);
    int d = one_row(&s, 1000, TIER_DEVICE), h = one_row(&s, 1000, TIER_HOST);
    alloc_at(&s, y), alloc_at(&s, h), alloc_at(&s, x);
    kernel(&s, -1, x);
    free_at(&s, x);
    alloc_at(&s, d); /* where x was */
    sched_copy(&s, d, h, 0, 0, false, PASS_FWD, 1, -1, 0);
    kernel(&s, d, y);
    free_at(&s, d), free_at(&s, h), free_at(&s, y);
    device_overlap o = timeline(net, &s);
    assert_int_equal(o.step_ns, 2 * k + 1000);
    assert_int_equal(o.exposed_ns, 1000);
    sched_free(&s);
    net_free(net);
}

/* A copy-out whose source memory the next kernel overwrites holds that kernel back (exposed);
 * one whose source the next kernel only reads runs beside it (hidden). */
static void test_copy_out_is_exposed_only_when_its_memory_is_overwritten(void **state)
{
    net_t *net = test_zoo("tiny-vgg");
    int64_t k = kernel_ns(net);
    for (int overwrite = 0; overwrite < 2; overwrite++) {
        sched_t s;
        sched_init(&s);
        int b = one_row(&s, 1000, TIER_DEVICE), z = one_row(&s, 1000, TIER_DEVICE);
        int hb = one_row(&s, 1000, TIER_HOST);
        alloc_at(&s, hb), alloc_at(&s, b);
        if (!overwrite)
            alloc_at(&s, z);
        kernel(&s, -1, b);
        sched_copy(&s, hb, b, 0, 0, false, PASS_FWD, 1, -1, 0);
        if (overwrite) {
            free_at(&s, b);
            alloc_at(&s, z); /* where b was */
            kernel(&s, -1, z);
        } else {
            kernel(&s, b, z);
            free_at(&s, b);
        }
        free_at(&s, z), free_at(&s, hb);
        device_overlap o = timeline(net, &s);
        assert_int_equal(o.copy_ns, 1000);
        assert_int_equal(o.step_ns, overwrite ? 2 * k + 1000 : 2 * k);
        assert_int_equal(o.exposed_ns, overwrite ? 1000 : 0);
        sched_free(&s);
    }
    net_free(net);
}

static lr_status run_sim(const char *out, int argc, char **argv)
{
    sim_options o;
    sim_options_init(&o);
    LR_TRY(args_parse(sim_flags, argc, argv, &o));
    o.output = out;
    lr_status s = sim_cli_run(&o);
    sim_options_free(&o);
    return s;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* --device adds "step ms" and "time" columns and, in JSON, step_ms and time_ratio per strategy
 * and the device in the config; without it neither appears. A row plan's time ratio on a GPU is
 * above its FLOP ratio (more, smaller kernels). */
static void test_sim_shows_step_time_with_a_device(void **state)
{
    char path[] = "/tmp/lrcnn-test-device-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    char *with[] = {"lrcnn-sim", "--net", "vgg16", "--batch", "64", "--device", "h200"};
    assert_int_equal(run_sim(path, 7, with), LR_OK);
    assert_non_null(strstr(slurp(path), "step ms"));
    char *without[] = {"lrcnn-sim", "--net", "vgg16", "--batch", "64"};
    assert_int_equal(run_sim(path, 5, without), LR_OK);
    assert_null(strstr(slurp(path), "step ms"));
    char *json[] = {"lrcnn-sim", "--net", "vgg16", "--batch", "64", "--device", "h200", "--json",
                    "--strategy", "column,2ps"};
    assert_int_equal(run_sim(path, 10, json), LR_OK);
    json_object *root = json_tokener_parse(slurp(path)), *cfg, *arr, *v;
    assert_non_null(root);
    assert_true(json_object_object_get_ex(root, "config", &cfg));
    assert_true(json_object_object_get_ex(cfg, "device", &v));
    assert_string_equal(json_object_get_string(v), "h200");
    assert_true(json_object_object_get_ex(root, "strategies", &arr));
    json_object *row = json_object_array_get_idx(arr, 1), *flops_ratio, *time_ratio, *ms;
    assert_true(json_object_object_get_ex(row, "step_ms", &ms));
    assert_true(json_object_get_double(ms) > 0);
    assert_true(json_object_object_get_ex(row, "flops_ratio", &flops_ratio));
    assert_true(json_object_object_get_ex(row, "time_ratio", &time_ratio));
    print_message("vgg16 batch 64 2ps on h200: %.1f ms, time %.3fx column, FLOPs %.3fx\n",
                  json_object_get_double(ms), json_object_get_double(time_ratio),
                  json_object_get_double(flops_ratio));
    assert_true(json_object_get_double(time_ratio) > json_object_get_double(flops_ratio));
    json_object_put(root);
    char *bad[] = {"lrcnn-sim", "--net", "vgg16", "--device", "h100"};
    assert_int_equal(run_sim(path, 5, bad), LR_ERR_USAGE);
    assert_non_null(strstr(lr_last_error(), "--device"));
    assert_non_null(strstr(lr_last_error(), "h100-80gb"));
    unlink(path);
}

/* With --offload and a device, a plan that copies reports its step with the copies on their
 * own stream: JSON step_overlap_ms = step_ms + copy_exposed_ms, the exposed part at most the
 * copy time; a plan that copies nothing (column) has neither key, nor does any without a device. */
static void test_sim_reports_exposed_copy_time_with_offload(void **state)
{
    char path[] = "/tmp/lrcnn-test-device-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    char *json[] = {"lrcnn-sim", "--net", "vgg16", "--batch", "1", "--input", "2048x2048",
                    "--device", "h100-80gb", "--offload", "input,boundary", "--json",
                    "--strategy", "column,row"};
    assert_int_equal(run_sim(path, 14, json), LR_OK);
    json_object *root = json_tokener_parse(slurp(path)), *arr, *v;
    assert_non_null(root);
    assert_true(json_object_object_get_ex(root, "strategies", &arr));
    json_object *col = json_object_array_get_idx(arr, 0), *row = json_object_array_get_idx(arr, 1);
    assert_false(json_object_object_get_ex(col, "copy_exposed_ms", &v));
    double ms[4];
    const char *keys[] = {"step_ms", "copy_ms", "copy_exposed_ms", "step_overlap_ms"};
    for (int i = 0; i < 4; i++) {
        assert_true(json_object_object_get_ex(row, keys[i], &v));
        ms[i] = json_object_get_double(v);
    }
    print_message("vgg16 2048x2048 row, input and boundaries offloaded, h100-80gb: kernels %.3f ms, "
                  "copies %.3f ms, exposed %.3f ms\n", ms[0], ms[1], ms[2]);
    assert_true(ms[1] > 0 && ms[2] >= 0 && ms[2] <= ms[1] + 1e-3);
    assert_float_equal(ms[3], ms[0] + ms[2], 1e-5);
    json_object_put(root);
    char *text[] = {"lrcnn-sim", "--net", "vgg16", "--batch", "1", "--input", "2048x2048",
                    "--offload", "input,boundary", "--strategy", "row", "--device", "h100-80gb"};
    assert_int_equal(run_sim(path, 13, text), LR_OK);
    assert_non_null(strstr(slurp(path), "ms exposed, step "));
    assert_int_equal(run_sim(path, 11, text), LR_OK); /* without the device */
    assert_null(strstr(slurp(path), "exposed"));
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernel_time_is_the_slower_of_compute_and_memory_plus_launches),
        cmocka_unit_test(test_stripes_take_longer_than_the_map_they_tile),
        cmocka_unit_test(test_every_device_has_time_constants),
        cmocka_unit_test(test_copies_take_their_bytes_over_the_host_link),
        cmocka_unit_test(test_copy_in_to_free_memory_hides_behind_the_kernel_before),
        cmocka_unit_test(test_copy_in_to_memory_just_freed_is_exposed),
        cmocka_unit_test(test_copy_out_is_exposed_only_when_its_memory_is_overwritten),
        cmocka_unit_test(test_sim_shows_step_time_with_a_device),
        cmocka_unit_test(test_sim_reports_exposed_copy_time_with_offload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
