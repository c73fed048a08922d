/* test_sim.c - the simulator: replay under the exact, cuda and caching allocator models, the
 * timeline, and the CSV and trace writers, on small schedules built by hand.
 *
 * Sizes in the caching tests are chosen so that a wrong rounding, pool, split or merge rule
 * changes the reserved or allocated bytes the test pins.
 */
#include <dirent.h>
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

#include "sim.h"

#define KIB ((int64_t)1 << 10)
#define MIB ((int64_t)1 << 20)

/* ------------------------------------------------------------------ helpers */

static char tmp_dir[64];

static int make_tmp_dir(void **state)
{
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/test_sim.XXXXXX");
    return mkdtemp(tmp_dir) ? 0 : -1;
}

static int remove_tmp_dir(void **state)
{
    return rmdir(tmp_dir); /* fails, and so flags the run, if a test left a file behind */
}

static const char *tmp_path(const char *name)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    return path;
}

/* Files in the temporary directory whose names start with `prefix`. */
static int files_named(const char *prefix)
{
    DIR *d = opendir(tmp_dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *text = malloc((size_t)n + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
    text[n] = '\0';
    fclose(f);
    return text;
}

/* A tensor of `bytes` in class c; node 1, whole map. */
static int tensor(sched_t *s, sched_class c, int64_t bytes)
{
    return sched_add_tensor(s, c, TK_VALUE, 1, -1, -1, -1, bytes);
}

static void alloc(sched_t *s, int t)
{
    sched_alloc(s, t, PASS_FWD, 1, -1, 0);
}

static void release(sched_t *s, int t)
{
    sched_release(s, t, PASS_FWD, 1, -1, 0);
}

/* Allocates a fresh tensor of `bytes` (activation) and returns it. */
static int alloc_new(sched_t *s, int64_t bytes)
{
    int t = tensor(s, TC_ACTIVATION, bytes);
    alloc(s, t);
    return t;
}

static sim_result replay_ok(const sched_t *s, sim_allocator a)
{
    sim_result r;
    lr_status st = sim_replay(s, a, &r);
    if (st != LR_OK)
        fail_msg("sim_replay: %s", lr_last_error());
    return r;
}

/* Live bytes of the caching model after every step so far (allocated, reserved). */
static void caching_now(const sched_t *s, int64_t *allocated, int64_t *reserved)
{
    sim_point *p;
    assert_int_equal(sim_timeline(s, ALLOC_CACHING, &p), LR_OK);
    assert_true(s->n_steps > 0);
    *allocated = p[s->n_steps - 1].live;
    *reserved = p[s->n_steps - 1].reserved;
    free(p);
}

/* A net with nodes 0..n-1 named by `names`, as net_load would leave it for the writers. */
static net_t *tiny_net(int n, const char *const names[])
{
    net_t *net = calloc(1, sizeof *net);
    assert_non_null(net);
    snprintf(net->name, sizeof net->name, "tiny \"net\"");
    net->n_nodes = n;
    net->nodes = calloc((size_t)n, sizeof *net->nodes);
    assert_non_null(net->nodes);
    for (int i = 0; i < n; i++)
        snprintf(net->nodes[i].name, sizeof net->nodes[i].name, "%s", names[i]);
    return net;
}

static void tiny_net_free(net_t *net)
{
    free(net->nodes);
    free(net);
}

/* Layer names that need CSV quoting and JSON escaping. */
static const char *const odd_names[] = {"input", "conv \"a\"\\b", "relu,1", "fc\tx\n\x01"};

/* A one-iteration training schedule over odd_names: 2 persistent tensors, 3 RUN steps
 * (5 MFLOP, 10 FLOP, 2 MFLOP), 1 COPY, 12 ALLOC/FREE steps in all. */
static void small_training_schedule(sched_t *s)
{
    int w = sched_add_tensor(s, TC_WEIGHT, TK_PARAM, 1, -1, -1, -1, 4096);
    int in = sched_add_tensor(s, TC_INPUT, TK_VALUE, 0, -1, 0, 7, 1000);
    int a1 = sched_add_tensor(s, TC_ACTIVATION, TK_VALUE, 1, 0, 0, 3, 3000);
    int a2 = sched_add_tensor(s, TC_ACTIVATION, TK_VALUE, 2, -1, 0, 7, 6000);
    int g = sched_add_tensor(s, TC_ACT_GRAD, TK_GRAD, 2, -1, 0, 7, 6000);
    sched_alloc(s, w, PASS_FWD, -1, -1, 0);
    sched_alloc(s, in, PASS_FWD, -1, -1, 0);
    s->step_begin = s->n_steps;
    sched_alloc(s, a1, PASS_FWD, 1, 0, 0);
    sched_run_step(s, PASS_FWD, 1, 0, 0, 0, 3, 0, 5000000)->out = a1;
    sched_alloc(s, a2, PASS_FWD, 2, -1, 0);
    sched_run_step(s, PASS_FWD, 2, -1, 0, 0, 7, 0, 10)->out = a2;
    sched_copy(s, a2, a1, 0, 1, false, PASS_FWD, 2, -1, 0);
    sched_alloc(s, g, PASS_BWD, 3, -1, 0);
    sched_run_step(s, PASS_BWD, 3, -1, 0, -1, -1, 0, 2000000)->dout = g;
    sched_release(s, a2, PASS_BWD, 2, -1, 0);
    sched_release(s, g, PASS_BWD, 2, -1, 0);
    sched_release(s, a1, PASS_BWD, 1, 0, 0);
    s->step_end = s->n_steps;
    sched_release(s, in, PASS_UPDATE, -1, -1, 0);
    sched_release(s, w, PASS_UPDATE, -1, -1, 0);
    assert_int_equal(sched_validate(s), LR_OK);
}

/* ------------------------------------------------------------------ exact model */

/* The exact peak is the largest sum of live bytes, and peak_step the first step reaching it
 * (step 3 reaches the same 300 bytes again and must not win). */
static void test_exact_peak_is_first_step_of_largest_live_sum(void **state)
{
    sched_t s;
    sched_init(&s);
    int a = alloc_new(&s, 100);
    int b = alloc_new(&s, 200);
    release(&s, a);
    int c = alloc_new(&s, 100);
    release(&s, b);
    release(&s, c);
    sim_result r = replay_ok(&s, ALLOC_EXACT);
    assert_int_equal(r.peak_bytes, 300);
    assert_int_equal(r.peak_step, 1);
    assert_int_equal(r.peak_reserved_bytes, 300);
    assert_int_equal(r.end_bytes, 0);
    sched_free(&s);
}

/* class_at_peak holds the exact bytes of each class at peak_step, also under a rounding
 * model (the caching peak here is where both activations are live). */
static void test_class_at_peak_holds_exact_bytes_by_class(void **state)
{
    sched_t s;
    sched_init(&s);
    int w = tensor(&s, TC_WEIGHT, 1000);
    int a = tensor(&s, TC_ACTIVATION, 700);
    int g = tensor(&s, TC_ACT_GRAD, 500);
    int b = tensor(&s, TC_BOUNDARY, 100);
    alloc(&s, w);
    alloc(&s, a);
    alloc(&s, g); /* peak: 2200 */
    release(&s, a);
    alloc(&s, b);
    release(&s, b);
    release(&s, g);
    release(&s, w);
    for (int m = 0; m < ALLOC_COUNT; m++) {
        sim_result r = replay_ok(&s, (sim_allocator)m);
        assert_int_equal(r.peak_step, 2);
        int64_t want[TC_COUNT] = {[TC_WEIGHT] = 1000, [TC_ACTIVATION] = 700, [TC_ACT_GRAD] = 500};
        assert_memory_equal(r.class_at_peak, want, sizeof want);
    }
    sched_free(&s);
}

/* FLOPs count RUN steps inside [step_begin, step_end) only, in total and per pass; RUN steps
 * outside the training step (setup, teardown) are left out. */
static void test_flops_counted_only_inside_the_training_step(void **state)
{
    sched_t s;
    sched_init(&s);
    sched_run_step(&s, PASS_FWD, 1, -1, 0, 0, 3, 0, 1000); /* setup */
    s.step_begin = s.n_steps;
    sched_run_step(&s, PASS_FWD, 1, -1, 0, 0, 3, 0, 10);
    sched_run_step(&s, PASS_RECOMPUTE, 1, -1, 0, 0, 3, 0, 20);
    sched_run_step(&s, PASS_BWD, 1, -1, 0, 0, 3, 0, 40);
    sched_run_step(&s, PASS_FWD, 2, -1, 0, 0, 3, 0, 5);
    s.step_end = s.n_steps;
    sched_run_step(&s, PASS_UPDATE, 1, -1, 0, 0, 3, 0, 100000); /* teardown */
    sim_result r = replay_ok(&s, ALLOC_EXACT);
    assert_int_equal(r.flops, 75);
    assert_int_equal(r.flops_by_pass[PASS_FWD], 15);
    assert_int_equal(r.flops_by_pass[PASS_RECOMPUTE], 20);
    assert_int_equal(r.flops_by_pass[PASS_BWD], 40);
    assert_int_equal(r.flops_by_pass[PASS_UPDATE], 0);
    sched_free(&s);
}

/* An empty schedule has no peak step and no bytes; nothing is read out of bounds. */
static void test_empty_schedule_has_no_peak_step(void **state)
{
    sched_t s;
    sched_init(&s);
    sim_result r = replay_ok(&s, ALLOC_CACHING);
    assert_int_equal(r.peak_step, -1);
    assert_int_equal(r.peak_bytes, 0);
    assert_int_equal(r.peak_reserved_bytes, 0);
    sched_free(&s);
}

/* ------------------------------------------------------------------ cuda model */

/* The cuda model charges every tensor its bytes rounded up to 2 MiB, a 0-byte tensor nothing:
 * 1 B -> 2 MiB, 2 MiB -> 2 MiB, 2 MiB + 1 -> 4 MiB. */
static void test_cuda_rounds_each_tensor_up_to_2mib(void **state)
{
    sched_t s;
    sched_init(&s);
    int t[4];
    t[0] = alloc_new(&s, 1);
    t[1] = alloc_new(&s, 2 * MIB);
    t[2] = alloc_new(&s, 2 * MIB + 1);
    t[3] = alloc_new(&s, 0);
    for (int i = 0; i < 4; i++)
        release(&s, t[i]);
    sim_result r = replay_ok(&s, ALLOC_CUDA);
    assert_int_equal(r.peak_bytes, 8 * MIB);
    assert_int_equal(r.peak_reserved_bytes, 8 * MIB);
    assert_int_equal(r.end_bytes, 0);
    sched_free(&s);
}

/* ------------------------------------------------------------------ caching model */

/* Requests of at most 1 MiB share one 2 MiB small-pool segment, each rounded up to 512 B
 * (1000 -> 1024, 100000 -> 100352, 500000 -> 500224). */
static void test_caching_small_requests_share_one_2mib_segment(void **state)
{
    sched_t s;
    sched_init(&s);
    alloc_new(&s, 1000);
    alloc_new(&s, 100000);
    alloc_new(&s, 500000);
    int64_t allocated, reserved;
    caching_now(&s, &allocated, &reserved);
    assert_int_equal(reserved, 2 * MIB);
    assert_int_equal(allocated, 1024 + 100352 + 500224);
    sched_free(&s);
}

/* A request below 512 bytes still takes a 512-byte block. */
static void test_caching_tiny_request_takes_512_bytes(void **state)
{
    sched_t s;
    sched_init(&s);
    alloc_new(&s, 1);
    int64_t allocated, reserved;
    caching_now(&s, &allocated, &reserved);
    assert_int_equal(allocated, 512);
    assert_int_equal(reserved, 2 * MIB);
    sched_free(&s);
}

/* A large request under 10 MiB reserves a 20 MiB segment and is split off it (the 15 MiB
 * remainder is > 1 MiB), so only 5 MiB count as allocated. */
static void test_caching_5mib_request_reserves_20mib(void **state)
{
    sched_t s;
    sched_init(&s);
    alloc_new(&s, 5 * MIB);
    int64_t allocated, reserved;
    caching_now(&s, &allocated, &reserved);
    assert_int_equal(reserved, 20 * MIB);
    assert_int_equal(allocated, 5 * MIB);
    sched_free(&s);
}

/* A request of 10 MiB or more reserves its size rounded to 512 B and then to 2 MiB:
 * 50 MiB + 1 B -> 52 MiB reserved, 50 MiB + 512 B allocated (the ~2 MiB rest is split off). */
static void test_caching_50mib_request_reserves_size_rounded_to_2mib(void **state)
{
    sched_t s;
    sched_init(&s);
    alloc_new(&s, 50 * MIB + 1);
    int64_t allocated, reserved;
    caching_now(&s, &allocated, &reserved);
    assert_int_equal(reserved, 52 * MIB);
    assert_int_equal(allocated, 50 * MIB + 512);
    sched_free(&s);
}

/* A large-pool remainder of exactly 1 MiB is not split off: 49 MiB reserves 50 MiB and the
 * whole block counts as allocated, as torch.cuda.memory_allocated() would report. */
static void test_caching_unsplit_remainder_counts_as_allocated(void **state)
{
    sched_t s;
    sched_init(&s);
    int t = alloc_new(&s, 49 * MIB);
    int64_t allocated, reserved;
    caching_now(&s, &allocated, &reserved);
    assert_int_equal(reserved, 50 * MIB);
    assert_int_equal(allocated, 50 * MIB);
    release(&s, t);
    caching_now(&s, &allocated, &reserved);
    assert_int_equal(allocated, 0);
    sched_free(&s);
}

/* A freed block is cached and reused: 200 rounds of allocate-then-free of 3 MiB tensors keep
 * one 20 MiB segment reserved. */
static void test_caching_reuses_freed_blocks_in_a_loop(void **state)
{
    sched_t s;
    sched_init(&s);
    int keep = alloc_new(&s, 1 * MIB + 4096);
    for (int i = 0; i < 200; i++)
        release(&s, alloc_new(&s, 3 * MIB));
    release(&s, keep);
    sim_result r = replay_ok(&s, ALLOC_CACHING);
    assert_int_equal(r.peak_reserved_bytes, 20 * MIB);
    assert_int_equal(r.peak_bytes, 3 * MIB + 1 * MIB + 4096);
    assert_int_equal(r.end_bytes, 0);
    sched_free(&s);
}

/* Reuse is best fit, not first fit: with free holes of 8 MiB (lowest address), 3 MiB and a
 * 5 MiB tail, a 3 MiB request takes the 3 MiB hole, so a following 8 MiB request still fits
 * in the first hole. First fit would split the 8 MiB hole and reserve a second segment. */
static void test_caching_reuse_is_best_fit(void **state)
{
    sched_t s;
    sched_init(&s);
    int x1 = alloc_new(&s, 8 * MIB);
    alloc_new(&s, 2 * MIB); /* spacers keep the holes apart */
    int x2 = alloc_new(&s, 3 * MIB);
    alloc_new(&s, 2 * MIB);
    release(&s, x1);
    release(&s, x2);
    alloc_new(&s, 3 * MIB);
    alloc_new(&s, 8 * MIB);
    alloc_new(&s, 5 * MIB);
    int64_t allocated, reserved;
    caching_now(&s, &allocated, &reserved);
    assert_int_equal(reserved, 20 * MIB);
    assert_int_equal(allocated, 20 * MIB);
    sched_free(&s);
}

/* Among equally good fits the lowest address wins: with 4 MiB holes in an older and a newer
 * segment, a 4 MiB request takes the older one, so the newer hole can merge with its freed
 * neighbour into the 8 MiB a later request needs (else a third segment is reserved). */
static void test_caching_equal_fits_go_to_the_lowest_address(void **state)
{
    sched_t s;
    sched_init(&s);
    int a = alloc_new(&s, 4 * MIB);
    alloc_new(&s, 16 * MIB); /* fills the first segment */
    int b = alloc_new(&s, 4 * MIB);
    int n = alloc_new(&s, 4 * MIB);
    alloc_new(&s, 12 * MIB); /* fills the second segment */
    release(&s, a);
    release(&s, b);
    alloc_new(&s, 4 * MIB);
    release(&s, n);
    alloc_new(&s, 8 * MIB);
    int64_t allocated, reserved;
    caching_now(&s, &allocated, &reserved);
    assert_int_equal(reserved, 40 * MIB);
    assert_int_equal(allocated, 40 * MIB);
    sched_free(&s);
}

/* Freed neighbours merge: four 512 KiB blocks fill a small segment; freeing the middle two
 * leaves a 1 MiB hole that serves a 1 MiB request without a new segment. */
static void test_caching_merges_freed_neighbours(void **state)
{
    sched_t s;
    sched_init(&s);
    int t[4];
    for (int i = 0; i < 4; i++)
        t[i] = alloc_new(&s, 512 * KIB);
    release(&s, t[1]);
    release(&s, t[2]);
    alloc_new(&s, 1 * MIB);
    int64_t allocated, reserved;
    caching_now(&s, &allocated, &reserved);
    assert_int_equal(reserved, 2 * MIB);
    assert_int_equal(allocated, 2 * MIB);
    sched_free(&s);
}

/* Merging reaches both sides and the segment tail: after freeing all of a split large
 * segment, one 20 MiB request fits without reserving more. */
static void test_caching_whole_segment_merges_back(void **state)
{
    sched_t s;
    sched_init(&s);
    int a = alloc_new(&s, 4 * MIB);
    int b = alloc_new(&s, 6 * MIB);
    int c = alloc_new(&s, 3 * MIB);
    release(&s, a);
    release(&s, c);
    release(&s, b); /* merges with a below and with c and the tail above */
    alloc_new(&s, 19 * MIB + 1);
    int64_t allocated, reserved;
    caching_now(&s, &allocated, &reserved);
    assert_int_equal(reserved, 20 * MIB);
    assert_int_equal(allocated, 20 * MIB); /* the 1 MiB - 512 B rest stays in the block */
    sched_free(&s);
}

/* Small requests never take large-pool blocks: a 512 KiB request after a freed 5 MiB block
 * (a free 20 MiB block) reserves a 2 MiB small segment. */
static void test_caching_pools_are_separate(void **state)
{
    sched_t s;
    sched_init(&s);
    release(&s, alloc_new(&s, 5 * MIB));
    alloc_new(&s, 512 * KIB);
    int64_t allocated, reserved;
    caching_now(&s, &allocated, &reserved);
    assert_int_equal(reserved, 22 * MIB);
    sched_free(&s);
}

/* ------------------------------------------------------------------ PYTORCH_ALLOC_CONF */

/* Allocated and reserved after the last step under `conf` (a PYTORCH_ALLOC_CONF string). */
static void caching_conf_now(const sched_t *s, const char *conf, int64_t *allocated,
                             int64_t *reserved)
{
    sim_caching c;
    assert_int_equal(sim_caching_parse(conf, "--alloc-conf", &c), LR_OK);
    sim_point *p;
    assert_int_equal(sim_timeline_conf(s, ALLOC_CACHING, &c, &p, NULL), LR_OK);
    *allocated = p[s->n_steps - 1].live;
    *reserved = p[s->n_steps - 1].reserved;
    free(p);
}

/* max_split_size_mb:40: a 50 MiB request is oversize, so its 52 MiB segment is not split (all
 * 52 MiB count as allocated), and once freed it serves an oversize request within 20 MiB of
 * it (45 MiB) but not a smaller one (30 MiB reserves its own 30 MiB segment). By default the
 * 30 MiB request splits the cached block and nothing new is reserved. */
static void test_caching_max_split_size_keeps_oversize_blocks_whole(void **state)
{
    sched_t s;
    sched_init(&s);
    alloc_new(&s, 50 * MIB + 1);
    int64_t allocated, reserved;
    caching_conf_now(&s, "max_split_size_mb:40", &allocated, &reserved);
    assert_int_equal(allocated, 52 * MIB);
    sched_reset(&s);
    release(&s, alloc_new(&s, 50 * MIB));
    int big = alloc_new(&s, 45 * MIB);
    caching_conf_now(&s, "max_split_size_mb:40", &allocated, &reserved);
    assert_int_equal(reserved, 50 * MIB);
    assert_int_equal(allocated, 50 * MIB); /* the oversize block is not split */
    release(&s, big);
    alloc_new(&s, 30 * MIB);
    caching_conf_now(&s, "max_split_size_mb:40", &allocated, &reserved);
    assert_int_equal(reserved, 80 * MIB);
    caching_conf_now(&s, "", &allocated, &reserved);
    assert_int_equal(reserved, 50 * MIB);
    sched_free(&s);
}

/* An oversize request takes a cached oversize block only within max_non_split_rounding_mb
 * (default 20 MiB) of its size: 40 MiB after a freed 64 MiB block reserves a new segment by
 * default, and reuses the block with max_non_split_rounding_mb:32. */
static void test_caching_oversize_reuse_is_bounded(void **state)
{
    sched_t s;
    sched_init(&s);
    release(&s, alloc_new(&s, 64 * MIB));
    alloc_new(&s, 40 * MIB);
    int64_t allocated, reserved;
    caching_conf_now(&s, "max_split_size_mb:32", &allocated, &reserved);
    assert_int_equal(reserved, 104 * MIB);
    caching_conf_now(&s, "max_split_size_mb:32,max_non_split_rounding_mb:32", &allocated,
                     &reserved);
    assert_int_equal(reserved, 64 * MIB);
    assert_int_equal(allocated, 64 * MIB);
    sched_free(&s);
}

/* roundup_power2_divisions:4 rounds 1200 KiB up to the next quarter between 1 MiB and 2 MiB
 * (1280 KiB), and 5 MiB + 1 B to 6 MiB; a power of two stays. The list form sets intervals:
 * [1:1,4:4,>:2] leaves the [1 MiB, 4 MiB) intervals at 512 B rounding, rounds [4 MiB, 8 MiB)
 * to quarters and larger sizes to halves (36 MiB + 1 B -> 48 MiB). */
static void test_caching_roundup_power2_divisions(void **state)
{
    const struct {
        const char *conf;
        int64_t bytes, allocated;
    } cases[] = {
        {"roundup_power2_divisions:4", 1200 * KIB, 1280 * KIB},
        {"roundup_power2_divisions:4", 5 * MIB + 1, 6 * MIB},
        {"roundup_power2_divisions:4", 8 * MIB, 8 * MIB},
        {"roundup_power2_divisions:[1:1,4:4,>:2]", 1200 * KIB, 1200 * KIB},
        {"roundup_power2_divisions:[1:1,4:4,>:2]", 5 * MIB + 1, 6 * MIB},
        {"roundup_power2_divisions:[1:1,4:4,>:2]", 36 * MIB + 1, 48 * MIB},
        {"", 1200 * KIB, 1200 * KIB},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sched_t s;
        sched_init(&s);
        alloc_new(&s, cases[i].bytes);
        int64_t allocated, reserved;
        caching_conf_now(&s, cases[i].conf, &allocated, &reserved);
        if (allocated != cases[i].allocated)
            fail_msg("%s: %lld B -> %lld B, expected %lld", cases[i].conf,
                     (long long)cases[i].bytes, (long long)allocated,
                     (long long)cases[i].allocated);
        sched_free(&s);
    }
}

/* Under a device limit the allocator flushes its cache before it gives up, as PyTorch's malloc
 * does: a freed 30 MiB segment is released so that 40 MiB fit a 60 MiB limit (one retry,
 * reserved 40 MiB, not 70); with the 30 MiB still live nothing can be released and the request
 * is the out-of-memory step, where the replay stops. */
static void test_caching_limit_flushes_the_cache_then_fails(void **state)
{
    sim_caching c;
    memset(&c, 0, sizeof c);
    c.limit_bytes = 60 * MIB;
    for (int live = 0; live < 2; live++) {
        sched_t s;
        sched_init(&s);
        int a = alloc_new(&s, 30 * MIB);
        if (!live)
            release(&s, a);
        int b = alloc_new(&s, 40 * MIB);
        release(&s, b);
        sim_result r;
        assert_int_equal(sim_replay_conf(&s, ALLOC_CACHING, &c, &r), LR_OK);
        assert_int_equal(r.alloc_retries, 1);
        assert_int_equal(r.oom_step, live ? 1 : -1);
        assert_int_equal(r.peak_reserved_bytes, live ? 30 * MIB : 40 * MIB);
        sim_point *p;
        sim_limit_outcome o;
        assert_int_equal(sim_timeline_conf(&s, ALLOC_CACHING, &c, &p, &o), LR_OK);
        assert_int_equal(o.oom_step, r.oom_step);
        assert_int_equal(p[s.n_steps - 1].reserved, live ? 30 * MIB : 40 * MIB);
        free(p);
        assert_int_equal(sim_replay_conf(&s, ALLOC_CACHING, NULL, &r), LR_OK);
        assert_int_equal(r.peak_reserved_bytes, 70 * MIB);
        assert_int_equal(r.alloc_retries, 0);
        assert_int_equal(r.oom_step, -1);
        sched_free(&s);
    }
}

/* With max_split_size, release_available_cached_blocks comes first: a free oversize segment at
 * least as large as the request (70 MiB for 44 MiB: too large to serve it within 20 MiB) is
 * released without a retry. When only smaller oversize segments are free (40 MiB), they are
 * released and fall short, so the cache flush follows and counts a retry; the split 20 MiB
 * segment stays either way. */
static void test_caching_limit_releases_oversize_blocks_first(void **state)
{
    const int64_t freed[2] = {70 * MIB, 40 * MIB}, limit[2] = {100 * MIB, 70 * MIB};
    for (int k = 0; k < 2; k++) {
        sim_caching c;
        assert_int_equal(sim_caching_parse("max_split_size_mb:20", "--alloc-conf", &c), LR_OK);
        c.limit_bytes = limit[k];
        sched_t s;
        sched_init(&s);
        release(&s, alloc_new(&s, freed[k])); /* oversize: a whole free segment */
        alloc_new(&s, 2 * MIB);               /* a 20 MiB segment, split */
        alloc_new(&s, 44 * MIB);              /* a new segment would pass the limit */
        sim_result r;
        assert_int_equal(sim_replay_conf(&s, ALLOC_CACHING, &c, &r), LR_OK);
        assert_int_equal(r.alloc_retries, k);
        assert_int_equal(r.oom_step, -1);
        sim_point *p;
        assert_int_equal(sim_timeline_conf(&s, ALLOC_CACHING, &c, &p, NULL), LR_OK);
        assert_int_equal(p[s.n_steps - 1].reserved, 64 * MIB);
        free(p);
        sched_free(&s);
    }
}

/* Settings the model does not follow, malformed values and unknown keys are usage errors that
 * name the flag; the defaults spelled out parse to zero. */
static void test_alloc_conf_refuses_what_it_does_not_model(void **state)
{
    const char *bad[] = {"expandable_segments:True", "garbage_collection_threshold:0.6",
                         "backend:cudaMallocAsync", "max_split_size_mb:10",
                         "roundup_power2_divisions:3", "roundup_power2_divisions:[3:2]",
                         "roundup_power2_divisions:[1:2", "foo:1", "max_split_size_mb",
                         "max_split_size_mb:64,,"};
    sim_caching c;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (sim_caching_parse(bad[i], "--alloc-conf", &c) != LR_ERR_USAGE)
            fail_msg("'%s' accepted", bad[i]);
        assert_non_null(strstr(lr_last_error(), "--alloc-conf"));
    }
    assert_int_equal(sim_caching_parse("expandable_segments:False,backend:native", "--alloc-conf",
                                       &c), LR_OK);
    sim_caching zero;
    memset(&zero, 0, sizeof zero);
    assert_memory_equal(&c, &zero, sizeof c);
}

/* peak_bytes follows allocated blocks and peak_reserved_bytes the segments, which are never
 * released: freeing 5 MiB and then asking for 1 KiB keeps both segments reserved. */
static void test_caching_reports_allocated_and_reserved_peaks(void **state)
{
    sched_t s;
    sched_init(&s);
    int big = alloc_new(&s, 5 * MIB);
    release(&s, big);
    release(&s, alloc_new(&s, 1 * KIB));
    sim_result r = replay_ok(&s, ALLOC_CACHING);
    assert_int_equal(r.peak_bytes, 5 * MIB);
    assert_int_equal(r.peak_step, 0);
    assert_int_equal(r.peak_reserved_bytes, 22 * MIB);
    assert_int_equal(r.end_bytes, 0);
    sched_free(&s);
}

/* A 0-byte tensor takes no block and reserves nothing, and can still be freed. */
static void test_caching_zero_byte_tensor_takes_no_block(void **state)
{
    sched_t s;
    sched_init(&s);
    release(&s, alloc_new(&s, 0));
    sim_result r = replay_ok(&s, ALLOC_CACHING);
    assert_int_equal(r.peak_bytes, 0);
    assert_int_equal(r.peak_reserved_bytes, 0);
    sched_free(&s);
}

/* A reference caching allocator written for clarity, not speed: all blocks in one array sorted
 * by address, best fit by linear scan. Same rules as sim.h; sizes here are already rounded. */
typedef struct {
    int64_t addr, size, seg;
    int pool, allocated;
} ref_block;

typedef struct {
    ref_block b[4096];
    int n, n_segs;
    int64_t top, allocated, reserved;
} ref_heap;

static int ref_malloc(ref_heap *h, int64_t bytes)
{
    int64_t size = bytes < 512 ? 512 : (bytes + 511) / 512 * 512;
    int pool = size <= MIB;
    int best = -1;
    for (int i = 0; i < h->n; i++)
        if (!h->b[i].allocated && h->b[i].pool == pool && h->b[i].size >= size &&
            (best < 0 || h->b[i].size < h->b[best].size))
            best = i; /* ascending addresses: the first of equal sizes is the lowest */
    if (best < 0) {
        int64_t seg = pool              ? 2 * MIB
                      : size < 10 * MIB ? 20 * MIB
                                        : (size + 2 * MIB - 1) / (2 * MIB) * (2 * MIB);
        best = h->n++;
        h->b[best] = (ref_block){h->top, seg, h->n_segs++, pool, 0};
        h->top += seg;
        h->reserved += seg;
    }
    int64_t rest = h->b[best].size - size;
    if (pool ? rest >= 512 : rest > MIB) {
        memmove(&h->b[best + 2], &h->b[best + 1], (size_t)(h->n - best - 1) * sizeof h->b[0]);
        h->n++;
        h->b[best + 1] = h->b[best];
        h->b[best + 1].addr += size;
        h->b[best + 1].size = rest;
        h->b[best].size = size;
    }
    h->b[best].allocated = 1;
    h->allocated += h->b[best].size;
    return best;
}

static void ref_free(ref_heap *h, int64_t addr)
{
    int i = 0;
    while (h->b[i].addr != addr)
        i++;
    h->allocated -= h->b[i].size;
    h->b[i].allocated = 0;
    for (int j = i > 0 ? i - 1 : i; j + 1 < h->n && j <= i;) {
        ref_block *x = &h->b[j], *y = &h->b[j + 1];
        if (!x->allocated && !y->allocated && x->seg == y->seg) {
            x->size += y->size;
            memmove(y, y + 1, (size_t)(h->n - j - 2) * sizeof *y);
            h->n--;
            i--;
        } else {
            j++;
        }
    }
}

/* The caching model agrees with the reference above at every step of a random schedule of
 * 3000 ALLOC/FREE steps over both pools: it drives the free trees far past the cases above. */
static void test_caching_matches_a_reference_allocator(void **state)
{
    sched_t s;
    sched_init(&s);
    static ref_heap h;
    memset(&h, 0, sizeof h);
    enum { SLOTS = 64 };
    int tensor_of[SLOTS];
    int64_t addr_of[SLOTS], want_alloc[3000], want_res[3000];
    for (int k = 0; k < SLOTS; k++)
        tensor_of[k] = -1;
    uint32_t rng = 12345;
    for (int i = 0; i < 3000; i++) {
        rng = rng * 1664525u + 1013904223u;
        int k = (int)(rng >> 8) % SLOTS;
        if (tensor_of[k] >= 0) {
            release(&s, tensor_of[k]);
            ref_free(&h, addr_of[k]);
            tensor_of[k] = -1;
        } else {
            const int64_t sizes[] = {1,       700,     4096,    300 * KIB,   MIB,
                                     MIB + 1, 3 * MIB, 9 * MIB, 12 * MIB + 5};
            int64_t bytes = sizes[(rng >> 20) % 9] + (rng & 0xfff) * ((rng >> 28) & 1);
            tensor_of[k] = alloc_new(&s, bytes);
            addr_of[k] = h.b[ref_malloc(&h, bytes)].addr;
        }
        want_alloc[i] = h.allocated;
        want_res[i] = h.reserved;
    }
    sim_point *p;
    assert_int_equal(sim_timeline(&s, ALLOC_CACHING, &p), LR_OK);
    for (int i = 0; i < 3000; i++) {
        if (p[i].live != want_alloc[i] || p[i].reserved != want_res[i])
            fail_msg("step %d: allocated %lld reserved %lld, reference %lld %lld", i,
                     (long long)p[i].live, (long long)p[i].reserved, (long long)want_alloc[i],
                     (long long)want_res[i]);
    }
    free(p);
    sched_free(&s);
}

/* ------------------------------------------------------------------ streaming */

/* A random training schedule of 5000 steps (ALLOC, FREE, RUN with FLOPs, COPY) over both
 * caching pools and several classes, from seed; `double_free_at` >= 0 frees a dead tensor there.
 * Written for a streamed schedule: step indices come from sched_position. */
static void random_schedule(sched_t *s, uint32_t rng, int double_free_at)
{
    enum { SLOTS = 48 };
    int live[SLOTS], dead = -1;
    for (int k = 0; k < SLOTS; k++)
        live[k] = -1;
    s->step_begin = sched_position(s);
    s->step_end = INT32_MAX;
    for (int i = 0; i < 5000; i++) {
        rng = rng * 1664525u + 1013904223u;
        int k = (int)(rng >> 8) % SLOTS;
        if (i == double_free_at && dead >= 0) {
            release(s, dead);
        } else if (rng % 7 == 0) {
            sched_run_step(s, PASS_FWD + (rng >> 4) % 3, 1, -1, 0, 0, 1, 0, (int64_t)(rng >> 10))->out =
                live[k];
        } else if (rng % 11 == 0 && live[k] >= 0) {
            sched_copy(s, live[k], live[k], 0, 0, false, PASS_FWD, 1, -1, 0);
        } else if (live[k] >= 0) {
            release(s, live[k]);
            dead = live[k];
            live[k] = -1;
        } else {
            const int64_t sizes[] = {0, 700, 300 * KIB, MIB + 1, 3 * MIB, 12 * MIB + 5};
            live[k] = tensor(s, (sched_class)((rng >> 12) % TC_COUNT), sizes[(rng >> 20) % 6]);
            alloc(s, live[k]);
        }
    }
    s->step_end = sched_position(s);
    for (int k = 0; k < SLOTS; k++)
        if (live[k] >= 0)
            release(s, live[k]);
}

static void assert_same_result(const sim_result *a, const sim_result *b)
{
    assert_int_equal(a->peak_bytes, b->peak_bytes);
    assert_int_equal(a->peak_reserved_bytes, b->peak_reserved_bytes);
    assert_int_equal(a->peak_step, b->peak_step);
    assert_memory_equal(a->class_at_peak, b->class_at_peak, sizeof a->class_at_peak);
    assert_int_equal(a->flops, b->flops);
    assert_memory_equal(a->flops_by_pass, b->flops_by_pass, sizeof a->flops_by_pass);
    assert_int_equal(a->end_bytes, b->end_bytes);
}

/* A schedule replayed while it is built, in chunks of 1, 7 and 4096 steps (chunks split RUN
 * steps from their runs' neighbours, and tensors keep arriving), gives sim_replay's result of
 * the whole schedule under every allocator model: peaks, peak step, bytes by class, FLOPs. */
static void test_streamed_replay_equals_replay(void **state)
{
    sched_t whole;
    sched_init(&whole);
    random_schedule(&whole, 99, -1);
    const int chunks[] = {1, 7, 4096};
    for (int a = 0; a < ALLOC_COUNT; a++) {
        sim_result want = replay_ok(&whole, (sim_allocator)a);
        for (int c = 0; c < 3; c++) {
            sched_t s;
            sched_init(&s);
            sim_stream *k;
            assert_int_equal(sim_stream_new(&s, (sim_allocator)a, &k), LR_OK);
            sched_stream(&s, sim_stream_take, k, chunks[c]);
            random_schedule(&s, 99, -1);
            assert_int_equal(sched_finish(&s), LR_OK);
            assert_int_equal(sched_position(&s), whole.n_steps);
            assert_true(s.n_steps <= chunks[c]); /* steps were not kept */
            sim_result got;
            assert_int_equal(sim_stream_result(k, &got), LR_OK);
            assert_same_result(&got, &want);
            sim_stream_free(k);
            sched_free(&s);
        }
    }
    sched_free(&whole);
}

/* A replay error in a streamed schedule (a FREE of a dead tensor at step 3000) stops the stream:
 * sched_finish returns it, naming the step of the whole schedule. */
static void test_streamed_replay_reports_the_first_error(void **state)
{
    sched_t s;
    sched_init(&s);
    sim_stream *k;
    assert_int_equal(sim_stream_new(&s, ALLOC_EXACT, &k), LR_OK);
    sched_stream(&s, sim_stream_take, k, 64);
    random_schedule(&s, 5, 3000);
    assert_int_equal(sched_finish(&s), LR_ERR_RUNTIME);
    assert_non_null(strstr(lr_last_error(), "schedule step 3000"));
    sim_result r;
    assert_int_equal(sim_stream_result(k, &r), LR_ERR_RUNTIME);
    sim_stream_free(k);
    sched_free(&s);
}

/* ------------------------------------------------------------------ errors */

/* Freeing a tensor that is not live fails with LR_ERR_RUNTIME naming the step, under every
 * model. */
static void test_double_free_fails_naming_the_step(void **state)
{
    sched_t s;
    sched_init(&s);
    int a = alloc_new(&s, 100);
    alloc_new(&s, 5000);
    release(&s, a);
    release(&s, a);
    for (int m = 0; m < ALLOC_COUNT; m++) {
        sim_result r;
        assert_int_equal(sim_replay(&s, (sim_allocator)m, &r), LR_ERR_RUNTIME);
        assert_non_null(strstr(lr_last_error(), "step 3"));
        assert_non_null(strstr(lr_last_error(), "FREE"));
    }
    sched_free(&s);
}

/* Allocating a tensor that is already live fails with LR_ERR_RUNTIME naming the step. */
static void test_alloc_of_live_tensor_fails(void **state)
{
    sched_t s;
    sched_init(&s);
    int a = alloc_new(&s, 100);
    alloc(&s, a);
    sim_point dummy, *p = &dummy; /* must be reset to NULL on failure */
    assert_int_equal(sim_timeline(&s, ALLOC_CACHING, &p), LR_ERR_RUNTIME);
    assert_null(p);
    assert_non_null(strstr(lr_last_error(), "step 1"));
    sched_free(&s);
}

/* Allocator names round-trip, and an unknown name is ALLOC_COUNT. */
static void test_allocator_names_round_trip(void **state)
{
    for (int m = 0; m < ALLOC_COUNT; m++)
        assert_int_equal(sim_allocator_from_name(sim_allocator_name((sim_allocator)m)), m);
    assert_string_equal(sim_allocator_name(ALLOC_CACHING), "caching");
    assert_int_equal(sim_allocator_from_name("pytorch"), ALLOC_COUNT);
}

/* ------------------------------------------------------------------ timeline */

/* sim_timeline gives one point per step, after the step: model bytes, reserved bytes, exact
 * bytes by class and cumulative FLOPs of the training step. */
static void test_timeline_points_follow_each_step(void **state)
{
    sched_t s;
    sched_init(&s);
    small_training_schedule(&s);
    sim_point *p;
    assert_int_equal(sim_timeline(&s, ALLOC_EXACT, &p), LR_OK);
    const int64_t live[] = {4096, 5096, 8096, 8096, 14096, 14096, 14096, 20096,
                            20096, 14096, 8096, 5096, 4096, 0};
    assert_int_equal(s.n_steps, sizeof live / sizeof live[0]);
    for (int i = 0; i < s.n_steps; i++) {
        assert_int_equal(p[i].live, live[i]);
        assert_int_equal(p[i].reserved, live[i]);
    }
    assert_int_equal(p[7].by_class[TC_ACT_GRAD], 6000);
    assert_int_equal(p[7].by_class[TC_ACTIVATION], 9000);
    assert_int_equal(p[3].flops_cum, 5000000);
    assert_int_equal(p[s.n_steps - 1].flops_cum, 7000010);
    free(p);
    sched_free(&s);
}

/* The CSV has the documented header, one line per step, the last step ends at 0 live bytes,
 * and flops_cum ends at the training step's FLOPs. Without a net, layers print as indices. */
static void test_timeline_csv_has_a_line_per_step_ending_at_zero(void **state)
{
    sched_t s;
    sched_init(&s);
    small_training_schedule(&s);
    const char *path = tmp_path("timeline.csv");
    assert_int_equal(sim_write_timeline_csv(&s, NULL, ALLOC_CACHING, path), LR_OK);
    char *text = read_text(path);
    int lines = 0;
    for (char *c = text; *c; c++)
        lines += *c == '\n';
    assert_int_equal(lines, s.n_steps + 1);
    const char *header = "step,op,pass,layer,part,stage,row_lo,row_hi,live_bytes,reserved_bytes,"
                         "weight_bytes,weight_grad_bytes,opt_state_bytes,input_bytes,"
                         "activation_bytes,act_grad_bytes,boundary_bytes,workspace_bytes,"
                         "flops_cum\n";
    assert_memory_equal(text, header, strlen(header));
    text[strlen(text) - 1] = '\0';
    const char *last = strrchr(text, '\n') + 1;
    assert_string_equal(last, "13,FREE,UPDATE,,-1,0,-1,-1,0,2097152,0,0,0,0,0,0,0,0,7000010");
    assert_non_null(strstr(text, "\n8,RUN,BWD,3,-1,0,-1,-1,"));
    free(text);
    unlink(path);
    sched_free(&s);
}

/* A layer name with a comma or quote is one quoted CSV field (RFC 4180). */
static void test_timeline_csv_quotes_layer_names(void **state)
{
    sched_t s;
    sched_init(&s);
    small_training_schedule(&s);
    net_t *net = tiny_net(4, odd_names);
    const char *path = tmp_path("quoted.csv");
    assert_int_equal(sim_write_timeline_csv(&s, net, ALLOC_EXACT, path), LR_OK);
    char *text = read_text(path);
    assert_non_null(strstr(text, "\n3,RUN,FWD,\"conv \"\"a\"\"\\b\",0,0,0,3,"));
    assert_non_null(strstr(text, "\n4,ALLOC,FWD,\"relu,1\",-1,0,-1,-1,"));
    free(text);
    tiny_net_free(net);
    unlink(path);
    sched_free(&s);
}

/* A failed replay writes nothing: no file and no temporary file is left behind. */
static void test_writers_leave_no_file_on_failure(void **state)
{
    sched_t s;
    sched_init(&s);
    int a = alloc_new(&s, 100);
    release(&s, a);
    release(&s, a);
    assert_int_equal(sim_write_timeline_csv(&s, NULL, ALLOC_EXACT, tmp_path("bad.csv")),
                     LR_ERR_RUNTIME);
    assert_int_equal(sim_write_trace(&s, NULL, ALLOC_EXACT, tmp_path("bad.json")),
                     LR_ERR_RUNTIME);
    assert_int_equal(files_named("bad."), 0); /* bad.csv.tmp.XXXXXX included */
    sched_free(&s);
}

/* ------------------------------------------------------------------ trace */

/* Writes the trace, parses it back (failing the test if it is not one JSON object) and returns
 * the object; *text (when not NULL) receives the file's text for the caller to free. */
static json_object *load_trace(const sched_t *s, const net_t *net, sim_allocator a,
                               const char *name, char **text_out)
{
    const char *path = tmp_path(name);
    assert_int_equal(sim_write_trace(s, net, a, path), LR_OK);
    char *text = read_text(path);
    json_tokener *tok = json_tokener_new();
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *root = json_tokener_parse_ex(tok, text, (int)strlen(text));
    if (json_tokener_get_error(tok) != json_tokener_success)
        fail_msg("trace is not JSON: %s", json_tokener_error_desc(json_tokener_get_error(tok)));
    assert_int_equal(json_tokener_get_parse_end(tok), strlen(text)); /* nothing after the object */
    json_tokener_free(tok);
    if (text_out)
        *text_out = text;
    else
        free(text);
    unlink(path);
    return root;
}

static const char *event_str(json_object *ev, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(ev, key, &v) ? json_object_get_string(v) : "";
}

static json_object *events_of(json_object *root)
{
    json_object *events;
    assert_true(json_object_object_get_ex(root, "traceEvents", &events));
    assert_true(json_object_is_type(events, json_type_array));
    return events;
}

/* The trace parses back as JSON with one X event per RUN and COPY step, one counter per
 * ALLOC/FREE step, and named tracks for the two passes used. */
static void test_trace_parses_with_a_slice_per_run_and_copy(void **state)
{
    sched_t s;
    sched_init(&s);
    small_training_schedule(&s);
    net_t *net = tiny_net(4, odd_names);
    json_object *root = load_trace(&s, net, ALLOC_CACHING, "trace.json", NULL);
    json_object *events = events_of(root);
    int slices = 0, counters = 0, threads = 0;
    for (size_t i = 0; i < json_object_array_length(events); i++) {
        json_object *ev = json_object_array_get_idx(events, i);
        const char *ph = event_str(ev, "ph");
        slices += strcmp(ph, "X") == 0;
        counters += strcmp(ph, "C") == 0;
        threads += strcmp(event_str(ev, "name"), "thread_name") == 0;
    }
    assert_int_equal(slices, 4);
    assert_int_equal(counters, 10);
    assert_int_equal(threads, 2);
    json_object *other;
    assert_true(json_object_object_get_ex(root, "otherData", &other));
    assert_string_equal(event_str(other, "network"), "tiny \"net\"");
    assert_string_equal(event_str(root, "displayTimeUnit"), "ms");
    json_object_put(root);
    tiny_net_free(net);
    sched_free(&s);
}

/* Layer names with quotes, backslashes and control characters are escaped and survive the
 * round trip; a RUN slice lasts 1 us per MFLOP but at least 1 us, from where the last ended. */
static void test_trace_slices_are_named_and_timed_by_flops(void **state)
{
    sched_t s;
    sched_init(&s);
    small_training_schedule(&s);
    net_t *net = tiny_net(4, odd_names);
    char *text;
    json_object *root = load_trace(&s, net, ALLOC_EXACT, "timed.json", &text);
    /* json-c accepts raw control characters in strings, so check the escapes themselves */
    assert_non_null(strstr(text, "\"fc\\tx\\n\\u0001 BWD\""));
    free(text);
    json_object *events = events_of(root);
    const char *want_name[] = {"conv \"a\"\\b FWD p0", "relu,1 FWD", "copy relu,1 FWD",
                               "fc\tx\n\x01 BWD"};
    const double want_ts[] = {0, 5, 6, 7}, want_dur[] = {5, 1, 1, 2};
    int k = 0;
    for (size_t i = 0; i < json_object_array_length(events); i++) {
        json_object *ev = json_object_array_get_idx(events, i), *v;
        if (strcmp(event_str(ev, "ph"), "X") != 0)
            continue;
        assert_true(k < 4);
        assert_string_equal(event_str(ev, "name"), want_name[k]);
        assert_true(json_object_object_get_ex(ev, "ts", &v));
        assert_float_equal(json_object_get_double(v), want_ts[k], 1e-9);
        assert_true(json_object_object_get_ex(ev, "dur", &v));
        assert_float_equal(json_object_get_double(v), want_dur[k], 1e-9);
        k++;
    }
    assert_int_equal(k, 4);
    json_object_put(root);
    tiny_net_free(net);
    sched_free(&s);
}

/* Counter samples carry MiB per class and the model's total: under cuda, after the first
 * ALLOC the 4096-byte weight shows 4096/2^20 MiB exact and 2 MiB total. */
static void test_trace_counters_report_mib_by_class_and_total(void **state)
{
    sched_t s;
    sched_init(&s);
    small_training_schedule(&s);
    json_object *root = load_trace(&s, NULL, ALLOC_CUDA, "counters.json", NULL);
    json_object *events = events_of(root), *first = NULL;
    for (size_t i = 0; i < json_object_array_length(events) && !first; i++)
        if (strcmp(event_str(json_object_array_get_idx(events, i), "ph"), "C") == 0)
            first = json_object_array_get_idx(events, i);
    assert_non_null(first);
    assert_string_equal(event_str(first, "name"), "memory (MiB)");
    json_object *args, *v;
    assert_true(json_object_object_get_ex(first, "args", &args));
    assert_true(json_object_object_get_ex(args, "weight", &v));
    assert_float_equal(json_object_get_double(v), 4096.0 / MIB, 1e-4);
    assert_true(json_object_object_get_ex(args, "total", &v));
    assert_float_equal(json_object_get_double(v), 2.0, 1e-9);
    json_object_put(root);
    sched_free(&s);
}

/* ------------------------------------------------------------------ arenas and lanes */

/* Each tier gets an arena of its own: a host tensor and a device tensor live at once may both sit
 * at offset 0; a device tensor allocated after one was freed takes its place. */
static void test_arena_tiers_are_planned_apart(void **state)
{
    sched_t s;
    sched_init(&s);
    int h = tensor(&s, TC_INPUT, 1000), a = tensor(&s, TC_ACTIVATION, 1000);
    int b = tensor(&s, TC_ACTIVATION, 1000);
    s.tensors[h].tier = TIER_HOST;
    alloc(&s, h), alloc(&s, a), release(&s, a), alloc(&s, b), release(&s, b), release(&s, h);
    int64_t off[3], bytes[TIER_COUNT];
    sim_arena_plan_tiers(&s, SIM_ARENA_ALIGN, off, bytes);
    assert_int_equal(off[h], 0);
    assert_int_equal(off[a], 0);
    assert_int_equal(off[b], 0);
    assert_int_equal(bytes[TIER_DEVICE], 1024);
    assert_int_equal(bytes[TIER_HOST], 1024);
    int64_t dev[3];
    assert_int_equal(sim_arena_plan(&s, TIER_DEVICE, SIM_ARENA_ALIGN, dev), 1024);
    assert_int_equal(dev[h], -1);
    sched_free(&s);
}

/* Host-device copies take the copy lane, kernels and device-to-device copies the compute lane,
 * an ALLOC the compute lane only when executors zero it (a gradient, not a value); a kernel
 * reading a copy's destination waits for it, one reading another tensor does not. */
static void test_lanes_sort_steps_and_copies_wait_for_readers(void **state)
{
    sched_t s;
    sched_init(&s);
    int h = tensor(&s, TC_INPUT, 1000), d = tensor(&s, TC_ACTIVATION, 1000);
    int e = tensor(&s, TC_ACTIVATION, 1000);
    int g = sched_add_tensor(&s, TC_ACT_GRAD, TK_GRAD, 1, -1, -1, -1, 1000);
    s.tensors[h].tier = TIER_HOST;
    alloc(&s, h), alloc(&s, d), alloc(&s, e), alloc(&s, g);
    sched_copy(&s, d, h, -1, -1, false, PASS_FWD, 1, -1, 0);
    sched_copy(&s, e, d, -1, -1, false, PASS_FWD, 1, -1, 0);
    sched_run_step(&s, PASS_FWD, 1, -1, 0, 0, 0, 0, 10)->out = e;
    s.step_end = s.n_steps;
    const sched_step *st = s.steps;
    assert_int_equal(sim_step_lane(&s, &st[0]), SIM_LANE_NONE);    /* ALLOC host */
    assert_int_equal(sim_step_lane(&s, &st[1]), SIM_LANE_NONE);    /* ALLOC value */
    assert_int_equal(sim_step_lane(&s, &st[3]), SIM_LANE_COMPUTE); /* ALLOC gradient: zeroed */
    assert_int_equal(sim_step_lane(&s, &st[4]), SIM_LANE_COPY);
    assert_int_equal(sim_step_lane(&s, &st[5]), SIM_LANE_COMPUTE);
    assert_int_equal(sim_step_lane(&s, &st[6]), SIM_LANE_COMPUTE);
    int64_t off[4], bytes[TIER_COUNT];
    sim_arena_plan_tiers(&s, SIM_ARENA_ALIGN, off, bytes);
    sim_lanes *k;
    assert_int_equal(sim_lanes_new(&s, off, &k), LR_OK);
    for (int i = 0; i < 4; i++)
        sim_lanes_done(k, &s, &st[i], i + 1);
    assert_int_equal(sim_lanes_wait(k, &s, &st[4]), 0); /* nothing used d's memory */
    sim_lanes_done(k, &s, &st[4], 5);
    assert_int_equal(sim_lanes_wait(k, &s, &st[5]), 5); /* reads d, which the copy wrote */
    sim_lanes_done(k, &s, &st[5], 6);
    assert_int_equal(sim_lanes_wait(k, &s, &st[6]), 0); /* writes e: no copy touched it */
    sim_lanes_clear(k);
    assert_int_equal(sim_lanes_wait(k, &s, &st[5]), 0);
    sim_lanes_free(k);
    sched_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_peak_is_first_step_of_largest_live_sum),
        cmocka_unit_test(test_class_at_peak_holds_exact_bytes_by_class),
        cmocka_unit_test(test_flops_counted_only_inside_the_training_step),
        cmocka_unit_test(test_empty_schedule_has_no_peak_step),
        cmocka_unit_test(test_cuda_rounds_each_tensor_up_to_2mib),
        cmocka_unit_test(test_caching_small_requests_share_one_2mib_segment),
        cmocka_unit_test(test_caching_tiny_request_takes_512_bytes),
        cmocka_unit_test(test_caching_5mib_request_reserves_20mib),
        cmocka_unit_test(test_caching_50mib_request_reserves_size_rounded_to_2mib),
        cmocka_unit_test(test_caching_unsplit_remainder_counts_as_allocated),
        cmocka_unit_test(test_caching_reuses_freed_blocks_in_a_loop),
        cmocka_unit_test(test_caching_reuse_is_best_fit),
        cmocka_unit_test(test_caching_equal_fits_go_to_the_lowest_address),
        cmocka_unit_test(test_caching_merges_freed_neighbours),
        cmocka_unit_test(test_caching_whole_segment_merges_back),
        cmocka_unit_test(test_caching_pools_are_separate),
        cmocka_unit_test(test_caching_reports_allocated_and_reserved_peaks),
        cmocka_unit_test(test_caching_max_split_size_keeps_oversize_blocks_whole),
        cmocka_unit_test(test_caching_oversize_reuse_is_bounded),
        cmocka_unit_test(test_caching_roundup_power2_divisions),
        cmocka_unit_test(test_alloc_conf_refuses_what_it_does_not_model),
        cmocka_unit_test(test_caching_limit_flushes_the_cache_then_fails),
        cmocka_unit_test(test_caching_limit_releases_oversize_blocks_first),
        cmocka_unit_test(test_caching_zero_byte_tensor_takes_no_block),
        cmocka_unit_test(test_caching_matches_a_reference_allocator),
        cmocka_unit_test(test_streamed_replay_equals_replay),
        cmocka_unit_test(test_streamed_replay_reports_the_first_error),
        cmocka_unit_test(test_double_free_fails_naming_the_step),
        cmocka_unit_test(test_alloc_of_live_tensor_fails),
        cmocka_unit_test(test_allocator_names_round_trip),
        cmocka_unit_test(test_timeline_points_follow_each_step),
        cmocka_unit_test(test_timeline_csv_has_a_line_per_step_ending_at_zero),
        cmocka_unit_test(test_timeline_csv_quotes_layer_names),
        cmocka_unit_test(test_writers_leave_no_file_on_failure),
        cmocka_unit_test(test_trace_parses_with_a_slice_per_run_and_copy),
        cmocka_unit_test(test_trace_slices_are_named_and_timed_by_flops),
        cmocka_unit_test(test_trace_counters_report_mib_by_class_and_total),
        cmocka_unit_test(test_arena_tiers_are_planned_apart),
        cmocka_unit_test(test_lanes_sort_steps_and_copies_wait_for_readers),
    };
    return cmocka_run_group_tests(tests, make_tmp_dir, remove_tmp_dir);
}
