/* test_rowdep.c - row dependencies (DESIGN.md, "Row dependencies"): which input rows an output
 * stripe needs (rowdep_need), how far an op can go with a prefix of its input (rowdep_avail,
 * the 2PS availability), receptive field / jump / overlap per node (rowdep_analyze) and where a
 * network can be cut (rowdep_cuts).
 *
 * Every expected range is derived by hand in the comment above it from
 *   output row r reads input rows [r*s - p, r*s - p + d*(k-1)], clipped to [0, H-1].
 * Deliberately not here: partitions and plans (test_plan.c).
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

#include "rowdep.h"

/* ------------------------------------------------------------------ helpers */

/* A net: input 2 x H x 4, the layer(s) under test (JSON objects, comma-separated, the last one
 * named "t"), then fc and the loss. */
static net_t *net_with(int h, const char *layers)
{
    char json[4096];
    snprintf(json, sizeof json,
             "{\"name\": \"t\", \"input\": {\"channels\": 2, \"height\": %d, \"width\": 4},"
             " \"layers\": [%s,"
             " {\"name\": \"fc\", \"op\": \"fc\", \"out_features\": 3, \"inputs\": [\"t\"]},"
             " {\"name\": \"loss\", \"op\": \"softmax_xent\"}]}",
             h, layers);
    net_t *net = NULL;
    if (net_parse(json, strlen(json), "test", &net) != LR_OK)
        fail_msg("net_parse: %s\n%s", lr_last_error(), json);
    return net;
}

static int find(const net_t *net, const char *name)
{
    int i = net_find(net, name);
    if (i < 0)
        fail_msg("no layer %s", name);
    return i;
}

/* rowdep_need of input k of layer "t" for output rows [lo, hi] equals [want_lo, want_hi]. */
static void need_is(const net_t *net, int k, int lo, int hi, int want_lo, int want_hi)
{
    rowrange r = rowdep_need(net, find(net, "t"), k, rr_make(lo, hi));
    if (r.lo != want_lo || r.hi != want_hi)
        fail_msg("need(out [%d, %d]) = [%d, %d], expected [%d, %d]", lo, hi, r.lo, r.hi, want_lo,
                 want_hi);
}

static void need_is_empty(const net_t *net, int k, int lo, int hi)
{
    rowrange r = rowdep_need(net, find(net, "t"), k, rr_make(lo, hi));
    if (!rr_empty(r))
        fail_msg("need(out [%d, %d]) = [%d, %d], expected no rows", lo, hi, r.lo, r.hi);
}

/* rowdep_avail of layer "t" with its single input available up to row a. */
static int avail1(const net_t *net, int a)
{
    int av[1] = {a};
    return rowdep_avail(net, find(net, "t"), av);
}

#define CONV(extra) "{\"name\": \"t\", \"op\": \"conv\", \"out_channels\": 2, " extra "}"

/* ------------------------------------------------------------------ rowdep_need */

/* conv k3 s1 p1 on 8 rows: r reads [r-1, r+1]. Out [2,4] -> [1,5]; out [0,0] -> [-1,1]
 * clipped to [0,1]; out [7,7] -> [6,8] clipped to [6,7]; the whole output needs the whole input. */
static void test_need_conv_k3_s1_p1(void **state)
{
    net_t *net = net_with(8, CONV("\"kernel\": 3, \"pad\": 1"));
    need_is(net, 0, 2, 4, 1, 5);
    need_is(net, 0, 0, 0, 0, 1);
    need_is(net, 0, 7, 7, 6, 7);
    need_is(net, 0, 0, 7, 0, 7);
    net_free(net);
}

/* conv k3 s2 p1 on 8 rows: 4 output rows, r reads [2r-1, 2r+1]. Out [1,2] -> [1,5];
 * out [0,0] -> [-1,1] -> [0,1]; out [3,3] -> [5,7]. */
static void test_need_conv_k3_s2_p1(void **state)
{
    net_t *net = net_with(8, CONV("\"kernel\": 3, \"stride\": 2, \"pad\": 1"));
    assert_int_equal(net->nodes[find(net, "t")].h, 4);
    need_is(net, 0, 1, 2, 1, 5);
    need_is(net, 0, 0, 0, 0, 1);
    need_is(net, 0, 3, 3, 5, 7);
    net_free(net);
}

/* conv k5 dilation 2 pad 4 on 16 rows: the window spans d*(k-1)+1 = 9 rows, output 16+8-9+1 = 16
 * rows, r reads [r-4, r+4]. Out [5,6] -> [1,10]; out [2,3] -> [-2,7] -> [0,7];
 * out [14,15] -> [10,19] -> [10,15]. */
static void test_need_conv_k5_dilation2_pad4(void **state)
{
    net_t *net = net_with(16, CONV("\"kernel\": 5, \"dilation\": 2, \"pad\": 4"));
    assert_int_equal(net->nodes[find(net, "t")].h, 16);
    need_is(net, 0, 5, 6, 1, 10);
    need_is(net, 0, 2, 3, 0, 7);
    need_is(net, 0, 14, 15, 10, 15);
    net_free(net);
}

/* conv k7 s2 p3 on 16 rows (the ResNet stem): floor((16+6-7)/2)+1 = 8 rows, r reads
 * [2r-3, 2r+3]. Top edge: out [0,0] -> [-3,3] -> [0,3]; bottom edge: out [7,7] -> [11,17] ->
 * [11,15]; inside: out [2,4] -> [1,11]. */
static void test_need_conv_k7_s2_p3_clips_at_both_edges(void **state)
{
    net_t *net = net_with(16, CONV("\"kernel\": 7, \"stride\": 2, \"pad\": 3"));
    assert_int_equal(net->nodes[find(net, "t")].h, 8);
    need_is(net, 0, 0, 0, 0, 3);
    need_is(net, 0, 7, 7, 11, 15);
    need_is(net, 0, 2, 4, 1, 11);
    net_free(net);
}

/* conv k1 p1 on 4 rows: 6 output rows, r reads [r-1, r-1]; out rows 0 and 5 read padding only:
 * out [0,0] needs nothing, out [0,1] -> [0,0], out [5,5] nothing, out [4,5] -> [3,3]. */
static void test_need_rows_of_padding_only_is_empty(void **state)
{
    net_t *net = net_with(4, CONV("\"kernel\": 1, \"pad\": 1"));
    assert_int_equal(net->nodes[find(net, "t")].h, 6);
    need_is_empty(net, 0, 0, 0);
    need_is(net, 0, 0, 1, 0, 0);
    need_is_empty(net, 0, 5, 5);
    need_is(net, 0, 4, 5, 3, 3);
    net_free(net);
}

/* maxpool k2 s2 on 8 rows: 4 rows, r reads [2r, 2r+1]: out [1,2] -> [2,5], out [3,3] -> [6,7]. */
static void test_need_maxpool_k2_s2(void **state)
{
    net_t *net = net_with(8, "{\"name\": \"t\", \"op\": \"maxpool\", \"kernel\": 2}");
    assert_int_equal(net->nodes[find(net, "t")].h, 4);
    need_is(net, 0, 1, 2, 2, 5);
    need_is(net, 0, 3, 3, 6, 7);
    need_is(net, 0, 0, 0, 0, 1);
    net_free(net);
}

/* maxpool k3 s2 p1 on 8 rows: floor((8+2-3)/2)+1 = 4 rows, r reads [2r-1, 2r+1]:
 * out [1,1] -> [1,3], out [0,0] -> [-1,1] -> [0,1], out [3,3] -> [5,7]. */
static void test_need_maxpool_k3_s2_p1(void **state)
{
    net_t *net = net_with(8, "{\"name\": \"t\", \"op\": \"maxpool\", \"kernel\": 3, \"stride\": 2, \"pad\": 1}");
    assert_int_equal(net->nodes[find(net, "t")].h, 4);
    need_is(net, 0, 1, 1, 1, 3);
    need_is(net, 0, 0, 0, 0, 1);
    need_is(net, 0, 3, 3, 5, 7);
    net_free(net);
}

/* upsample x2 on 4 rows: 8 rows, r reads r/2: out [3,6] -> [1,3], out [7,7] -> [3,3],
 * out [0,1] -> [0,0]. */
static void test_need_upsample_x2(void **state)
{
    net_t *net = net_with(4, "{\"name\": \"t\", \"op\": \"upsample\", \"scale\": 2}");
    assert_int_equal(net->nodes[find(net, "t")].h, 8);
    need_is(net, 0, 3, 6, 1, 3);
    need_is(net, 0, 7, 7, 3, 3);
    need_is(net, 0, 0, 1, 0, 0);
    net_free(net);
}

/* relu, batchnorm and dropout map rows 1:1: out [2,5] -> [2,5]. */
static void test_need_elementwise_is_one_to_one(void **state)
{
    const char *ops[] = {"{\"name\": \"t\", \"op\": \"relu\"}",
                         "{\"name\": \"t\", \"op\": \"batchnorm\"}",
                         "{\"name\": \"t\", \"op\": \"dropout\"}"};
    for (int i = 0; i < 3; i++) {
        net_t *net = net_with(8, ops[i]);
        need_is(net, 0, 2, 5, 2, 5);
        need_is(net, 0, 7, 7, 7, 7);
        net_free(net);
    }
}

/* add (and concat) take rows 1:1 from each input: out [1,6] -> [1,6] from input 0 and from
 * input 1, although input 1 is the network input and input 0 a conv. */
static void test_need_add_and_concat_take_rows_from_each_input(void **state)
{
    const char *ops[] = {"add", "concat"};
    for (int i = 0; i < 2; i++) {
        char layers[512];
        snprintf(layers, sizeof layers,
                 "{\"name\": \"c\", \"op\": \"conv\", \"out_channels\": 2, \"kernel\": 3, \"pad\": 1},"
                 " {\"name\": \"t\", \"op\": \"%s\", \"inputs\": [\"c\", \"input\"]}",
                 ops[i]);
        net_t *net = net_with(8, layers);
        need_is(net, 0, 1, 6, 1, 6);
        need_is(net, 1, 1, 6, 1, 6);
        need_is(net, 1, 0, 0, 0, 0);
        net_free(net);
    }
}

/* Ops that need every row (fc here) read all of their input for any output row; an empty
 * output range needs nothing, whatever the op. */
static void test_need_of_full_ops_and_empty_ranges(void **state)
{
    net_t *net = net_with(8, CONV("\"kernel\": 3, \"pad\": 1"));
    rowrange r = rowdep_need(net, find(net, "fc"), 0, rr_make(0, 0));
    assert_int_equal(r.lo, 0);
    assert_int_equal(r.hi, 7);
    assert_true(rr_empty(rowdep_need(net, find(net, "t"), 0, rr_none())));
    assert_true(rr_empty(rowdep_need(net, find(net, "fc"), 0, rr_none())));
    net_free(net);
}

/* ------------------------------------------------------------------ rowdep_avail */

/* conv k3 s1 p1 on 8 rows: row r is computable once row r+1 is there, so with rows [0,a]:
 * a=3 -> 2; a=0 -> -1 (row 0 needs row 1); nothing -> -1; input complete (a=7) -> all 8 rows,
 * because the last output row's window ends in padding. */
static void test_avail_conv_k3_s1_p1(void **state)
{
    net_t *net = net_with(8, CONV("\"kernel\": 3, \"pad\": 1"));
    assert_int_equal(avail1(net, 3), 2);
    assert_int_equal(avail1(net, 0), -1);
    assert_int_equal(avail1(net, -1), -1);
    assert_int_equal(avail1(net, 6), 5);
    assert_int_equal(avail1(net, 7), 7);
    net_free(net);
}

/* conv k3 s2 p1 on 8 rows (4 out): last r with 2r+1 <= a: a=4 -> 1 (1.5 floored), a=5 -> 2,
 * a=1 -> 0, a=0 -> floor(-1/2) = -1; a=7 (complete) -> 3. */
static void test_avail_conv_k3_s2_p1(void **state)
{
    net_t *net = net_with(8, CONV("\"kernel\": 3, \"stride\": 2, \"pad\": 1"));
    assert_int_equal(avail1(net, 4), 1);
    assert_int_equal(avail1(net, 5), 2);
    assert_int_equal(avail1(net, 1), 0);
    assert_int_equal(avail1(net, 0), -1);
    assert_int_equal(avail1(net, 7), 3);
    net_free(net);
}

/* conv k5 d2 p4 on 16 rows: r reads up to r+4, so r <= a-4: a=10 -> 6, a=3 -> -1, a=4 -> 0,
 * a=15 (complete) -> 15. */
static void test_avail_conv_k5_dilation2_pad4(void **state)
{
    net_t *net = net_with(16, CONV("\"kernel\": 5, \"dilation\": 2, \"pad\": 4"));
    assert_int_equal(avail1(net, 10), 6);
    assert_int_equal(avail1(net, 3), -1);
    assert_int_equal(avail1(net, 4), 0);
    assert_int_equal(avail1(net, 15), 15);
    net_free(net);
}

/* conv k7 s2 p3 on 16 rows (8 out): r reads up to 2r+3, so r <= (a-3)/2. Top edge: a=3 -> 0
 * (row 0's window is [-3,3]); a=2 -> -1. Bottom edge: a=14 -> 5 (row 6 reads [9,15] and row 15
 * is missing), a=15 complete -> 7 (row 7 reads [11,17], clipped to 15). */
static void test_avail_conv_k7_s2_p3_edges(void **state)
{
    net_t *net = net_with(16, CONV("\"kernel\": 7, \"stride\": 2, \"pad\": 3"));
    assert_int_equal(avail1(net, 3), 0);
    assert_int_equal(avail1(net, 2), -1);
    assert_int_equal(avail1(net, 14), 5);
    assert_int_equal(avail1(net, 15), 7);
    net_free(net);
}

/* maxpool k2 s2 on 8 rows: r <= (a-1)/2: a=4 -> 1, a=5 -> 2, a=0 -> -1, complete -> 3.
 * maxpool k3 s2 p1 on 8 rows: r reads up to 2r+1 as well: a=4 -> 1, a=5 -> 2, a=0 -> -1. */
static void test_avail_maxpools(void **state)
{
    net_t *a = net_with(8, "{\"name\": \"t\", \"op\": \"maxpool\", \"kernel\": 2}");
    assert_int_equal(avail1(a, 4), 1);
    assert_int_equal(avail1(a, 5), 2);
    assert_int_equal(avail1(a, 0), -1);
    assert_int_equal(avail1(a, 7), 3);
    net_free(a);
    net_t *b = net_with(8, "{\"name\": \"t\", \"op\": \"maxpool\", \"kernel\": 3, \"stride\": 2, \"pad\": 1}");
    assert_int_equal(avail1(b, 4), 1);
    assert_int_equal(avail1(b, 5), 2);
    assert_int_equal(avail1(b, 0), -1);
    assert_int_equal(avail1(b, 7), 3);
    net_free(b);
}

/* upsample x2 on 4 rows: input rows [0,a] give output rows [0, 2a+1]: a=1 -> 3, a=0 -> 1,
 * a=3 (complete) -> 7. relu is 1:1: a=3 -> 3. */
static void test_avail_upsample_and_relu(void **state)
{
    net_t *u = net_with(4, "{\"name\": \"t\", \"op\": \"upsample\", \"scale\": 2}");
    assert_int_equal(avail1(u, 1), 3);
    assert_int_equal(avail1(u, 0), 1);
    assert_int_equal(avail1(u, 3), 7);
    net_free(u);
    net_t *r = net_with(8, "{\"name\": \"t\", \"op\": \"relu\"}");
    assert_int_equal(avail1(r, 3), 3);
    assert_int_equal(avail1(r, -1), -1);
    assert_int_equal(avail1(r, 7), 7);
    net_free(r);
}

/* add: the minimum over its inputs. {5, 2} -> 2; {7 (complete), 3} -> 3; both complete -> 7;
 * {-1, 7} -> -1. */
static void test_avail_add_is_the_minimum_over_inputs(void **state)
{
    net_t *net = net_with(8, "{\"name\": \"c\", \"op\": \"conv\", \"out_channels\": 2, \"kernel\": 3, \"pad\": 1},"
                             " {\"name\": \"t\", \"op\": \"add\", \"inputs\": [\"c\", \"input\"]}");
    int t = find(net, "t");
    int a[2][2] = {{5, 2}, {7, 3}};
    assert_int_equal(rowdep_avail(net, t, a[0]), 2);
    assert_int_equal(rowdep_avail(net, t, a[1]), 3);
    int full[2] = {7, 7}, none[2] = {-1, 7};
    assert_int_equal(rowdep_avail(net, t, full), 7);
    assert_int_equal(rowdep_avail(net, t, none), -1);
    net_free(net);
}

/* An op that needs every row computes nothing from a partial input and everything once the
 * input is complete: fc after 8 rows, a=6 -> -1, a=7 -> 0 (its single output row). */
static void test_avail_full_op_waits_for_the_complete_input(void **state)
{
    net_t *net = net_with(8, "{\"name\": \"t\", \"op\": \"relu\"}");
    int fc = find(net, "fc");
    int a6[1] = {6}, a7[1] = {7};
    assert_int_equal(rowdep_avail(net, fc, a6), -1);
    assert_int_equal(rowdep_avail(net, fc, a7), 0);
    net_free(net);
}

/* Availability and need agree: for every partial input prefix [0,a] of a strided, padded,
 * dilated conv, the rows rowdep_avail allows need no row beyond a, and one more row would. */
static void test_avail_is_the_largest_row_whose_need_fits(void **state)
{
    net_t *net = net_with(23, CONV("\"kernel\": [5, 1], \"stride\": 3, \"pad\": [2, 0], \"dilation\": 2"));
    int t = find(net, "t");
    int h = net->nodes[t].h;
    for (int a = 0; a < 22; a++) {
        int r = avail1(net, a);
        if (r >= 0)
            assert_true(rowdep_need(net, t, 0, rr_make(0, r)).hi <= a);
        if (r + 1 < h)
            assert_true(rowdep_need(net, t, 0, rr_make(0, r + 1)).hi > a);
    }
    net_free(net);
}

/* ------------------------------------------------------------------ rowdep_analyze */

static rowdep_info *analyze(const net_t *net)
{
    rowdep_info *info = calloc((size_t)net->n_nodes, sizeof *info);
    assert_non_null(info);
    rowdep_analyze(net, info);
    return info;
}

static void rf_is(const net_t *net, const rowdep_info *info, const char *name, int64_t rf,
                  double jump)
{
    const rowdep_info *x = &info[find(net, name)];
    if (x->rf != rf || x->jump != jump)
        fail_msg("%s: rf %lld jump %g, expected rf %lld jump %g", name, (long long)x->rf, x->jump,
                 (long long)rf, jump);
}

/* VGG16, rf += (k-1)*jump, jump *= s. Block 1 (jump 1): conv 3, 5, pool (k2 s2) 6, jump 2.
 * Block 2: 6+4=10, 14, pool 16, jump 4. Block 3: 24, 32, 40, pool 44, jump 8.
 * Block 4: 60, 76, 92, pool 100, jump 16. Block 5: 132, 164, conv5_3 196, pool5 212, jump 32.
 * The adaptive pool needs every row: rf becomes the image height 224 and rows stop mapping. */
static void test_vgg16_receptive_fields(void **state)
{
    net_t *net = test_zoo("vgg16");
    rowdep_info *info = analyze(net);
    rf_is(net, info, "input", 1, 1);
    rf_is(net, info, "conv1_1", 3, 1);
    rf_is(net, info, "conv1_2", 5, 1);
    rf_is(net, info, "relu1_2", 5, 1);
    rf_is(net, info, "pool1", 6, 2);
    rf_is(net, info, "conv2_2", 14, 2);
    rf_is(net, info, "pool2", 16, 4);
    rf_is(net, info, "pool3", 44, 8);
    rf_is(net, info, "pool4", 100, 16);
    rf_is(net, info, "conv5_1", 132, 16);
    rf_is(net, info, "conv5_3", 196, 16);
    rf_is(net, info, "pool5", 212, 32);
    assert_true(info[find(net, "pool5")].rowwise);
    assert_false(info[find(net, "avgpool")].rowwise);
    assert_false(info[find(net, "fc8")].rowwise);
    assert_int_equal(info[find(net, "avgpool")].rf, 224);
    free(info);
    net_free(net);
}

/* ResNet-50. Stem: conv1 k7 s2 -> rf 7, jump 2; maxpool k3 s2 -> 7 + 2*2 = 11, jump 4.
 * layer1_0 (stride 1): conv1 1x1 keeps 11; conv2 3x3 -> 11 + 2*4 = 19; conv3 1x1 19; the
 * downsample (1x1 on maxpool) stays 11; the add takes the max, 19, and so does layer1_0_relu.
 * Each further layer1 block adds 2*4 = 8: layer1_1_relu 27, layer1_2_relu 35.
 * layer2_0: conv2 3x3 s2 -> 35 + 2*4 = 43, jump 8; downsample 1x1 s2 -> 35, jump 8; add 43. */
static void test_resnet50_receptive_fields(void **state)
{
    net_t *net = test_zoo("resnet50");
    rowdep_info *info = analyze(net);
    rf_is(net, info, "conv1", 7, 2);
    rf_is(net, info, "relu", 7, 2);
    rf_is(net, info, "maxpool", 11, 4);
    rf_is(net, info, "layer1_0_conv1", 11, 4);
    rf_is(net, info, "layer1_0_conv2", 19, 4);
    rf_is(net, info, "layer1_0_bn3", 19, 4);
    rf_is(net, info, "layer1_0_downsample_bn", 11, 4);
    rf_is(net, info, "layer1_0_add", 19, 4);
    rf_is(net, info, "layer1_0_relu", 19, 4);
    rf_is(net, info, "layer1_1_relu", 27, 4);
    rf_is(net, info, "layer1_2_relu", 35, 4);
    rf_is(net, info, "layer2_0_conv1", 35, 4);
    rf_is(net, info, "layer2_0_conv2", 43, 8);
    rf_is(net, info, "layer2_0_downsample_conv", 35, 8);
    rf_is(net, info, "layer2_0_add", 43, 8);
    assert_false(info[find(net, "avgpool")].rowwise);
    assert_true(info[find(net, "layer4_2_relu")].rowwise);
    free(info);
    net_free(net);
}

/* tiny-mix: conv1 3 (j1); pool1 k2 s2 -> 4, j2; conv2 k3 d2 (span 5) -> 4 + 4*2 = 12, j2;
 * upsample x2 halves the jump: 12, j1; concat with relu1 (3, j1) -> 12, j1; conv3 k3 s2 ->
 * 12 + 2*1 = 14, j2; pool3 k3 s2 p1 -> 14 + 2*2 = 18, j4. */
static void test_tiny_mix_receptive_fields_with_dilation_and_upsample(void **state)
{
    net_t *net = test_zoo("tiny-mix");
    rowdep_info *info = analyze(net);
    rf_is(net, info, "conv1", 3, 1);
    rf_is(net, info, "pool1", 4, 2);
    rf_is(net, info, "conv2", 12, 2);
    rf_is(net, info, "up", 12, 1);
    rf_is(net, info, "cat", 12, 1);
    rf_is(net, info, "conv3", 14, 2);
    rf_is(net, info, "pool3", 18, 4);
    assert_false(info[find(net, "apool")].rowwise);
    free(info);
    net_free(net);
}

/* overlap = d*(k-1) + 1 - s when positive, else 0: k3 s1 -> 2; k3 s2 -> 1; k2 s2 -> 0;
 * k7 s2 -> 5; k3 s2 p1 pool -> 1; 1x1 -> 0; k5 d2 (span 9) s1 -> 8; k3 d2 (span 5) -> 4;
 * elementwise ops -> 0. */
static void test_overlap_is_window_span_minus_stride(void **state)
{
    net_t *v = test_zoo("vgg16");
    rowdep_info *vi = analyze(v);
    assert_int_equal(vi[find(v, "conv1_1")].overlap, 2);
    assert_int_equal(vi[find(v, "pool1")].overlap, 0);
    assert_int_equal(vi[find(v, "relu1_1")].overlap, 0);
    free(vi);
    net_free(v);

    net_t *r = test_zoo("resnet50");
    rowdep_info *ri = analyze(r);
    assert_int_equal(ri[find(r, "conv1")].overlap, 5);
    assert_int_equal(ri[find(r, "maxpool")].overlap, 1);
    assert_int_equal(ri[find(r, "layer1_0_conv1")].overlap, 0);
    assert_int_equal(ri[find(r, "layer2_0_conv2")].overlap, 1);
    assert_int_equal(ri[find(r, "layer2_0_downsample_conv")].overlap, 0);
    free(ri);
    net_free(r);

    net_t *d = net_with(16, CONV("\"kernel\": 5, \"dilation\": 2, \"pad\": 4"));
    rowdep_info *di = analyze(d);
    assert_int_equal(di[find(d, "t")].overlap, 8);
    free(di);
    net_free(d);

    net_t *m = test_zoo("tiny-mix");
    rowdep_info *mi = analyze(m);
    assert_int_equal(mi[find(m, "conv2")].overlap, 4);
    free(mi);
    net_free(m);
}

/* ------------------------------------------------------------------ rowdep_cuts */

static bool *cuts(const net_t *net)
{
    bool *cut = calloc((size_t)net->n_nodes, 1);
    assert_non_null(cut);
    rowdep_cuts(net, cut);
    return cut;
}

/* VGG16 is a chain: every node is a cut. */
static void test_every_vgg16_node_is_a_cut(void **state)
{
    net_t *net = test_zoo("vgg16");
    bool *cut = cuts(net);
    for (int i = 0; i < net->n_nodes; i++)
        if (!cut[i])
            fail_msg("vgg16 %s is not a cut", net->nodes[i].name);
    free(cut);
    net_free(net);
}

/* ResNet-50 and ResNet-18: inside a block (layerX_Y_*) the shortcut carries the block input
 * past every node up to the add, so only the add (it consumes both branches) and the block
 * output (layerX_Y_relu) are cuts; the stem, the pooling, fc and the loss are cuts. */
static void test_resnet_cuts_are_block_outputs_and_nodes_outside_blocks(void **state)
{
    const char *names[] = {"resnet50", "resnet18"};
    for (int z = 0; z < 2; z++) {
        net_t *net = test_zoo(names[z]);
        bool *cut = cuts(net);
        int n_cuts = 0;
        for (int i = 0; i < net->n_nodes; i++) {
            const char *nm = net->nodes[i].name;
            size_t len = strlen(nm);
            bool in_block = strncmp(nm, "layer", 5) == 0;
            bool block_out = in_block && len > 5 && (strcmp(nm + len - 5, "_relu") == 0 ||
                                                     strcmp(nm + len - 4, "_add") == 0);
            bool want = !in_block || block_out;
            if (cut[i] != want)
                fail_msg("%s %s: cut %d, expected %d", names[z], nm, cut[i], want);
            n_cuts += cut[i];
        }
        /* input conv1 bn1 relu maxpool + 2 per block (16 resp. 8) + avgpool flatten fc loss */
        assert_int_equal(n_cuts, z == 0 ? 5 + 2 * 16 + 4 : 5 + 2 * 8 + 4);
        free(cut);
        net_free(net);
    }
}

/* tiny-mix: relu1 feeds pool1 and the concat, so pool1..up are not cuts; cat is. */
static void test_tiny_mix_cuts_skip_the_concat_branch(void **state)
{
    net_t *net = test_zoo("tiny-mix");
    bool *cut = cuts(net);
    assert_true(cut[0]);
    assert_true(cut[find(net, "relu1")]);
    assert_false(cut[find(net, "pool1")]);
    assert_false(cut[find(net, "conv2")]);
    assert_false(cut[find(net, "up")]);
    assert_true(cut[find(net, "cat")]);
    assert_true(cut[find(net, "conv3")]);
    free(cut);
    net_free(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_need_conv_k3_s1_p1),
        cmocka_unit_test(test_need_conv_k3_s2_p1),
        cmocka_unit_test(test_need_conv_k5_dilation2_pad4),
        cmocka_unit_test(test_need_conv_k7_s2_p3_clips_at_both_edges),
        cmocka_unit_test(test_need_rows_of_padding_only_is_empty),
        cmocka_unit_test(test_need_maxpool_k2_s2),
        cmocka_unit_test(test_need_maxpool_k3_s2_p1),
        cmocka_unit_test(test_need_upsample_x2),
        cmocka_unit_test(test_need_elementwise_is_one_to_one),
        cmocka_unit_test(test_need_add_and_concat_take_rows_from_each_input),
        cmocka_unit_test(test_need_of_full_ops_and_empty_ranges),
        cmocka_unit_test(test_avail_conv_k3_s1_p1),
        cmocka_unit_test(test_avail_conv_k3_s2_p1),
        cmocka_unit_test(test_avail_conv_k5_dilation2_pad4),
        cmocka_unit_test(test_avail_conv_k7_s2_p3_edges),
        cmocka_unit_test(test_avail_maxpools),
        cmocka_unit_test(test_avail_upsample_and_relu),
        cmocka_unit_test(test_avail_add_is_the_minimum_over_inputs),
        cmocka_unit_test(test_avail_full_op_waits_for_the_complete_input),
        cmocka_unit_test(test_avail_is_the_largest_row_whose_need_fits),
        cmocka_unit_test(test_vgg16_receptive_fields),
        cmocka_unit_test(test_resnet50_receptive_fields),
        cmocka_unit_test(test_tiny_mix_receptive_fields_with_dilation_and_upsample),
        cmocka_unit_test(test_overlap_is_window_span_minus_stride),
        cmocka_unit_test(test_every_vgg16_node_is_a_cut),
        cmocka_unit_test(test_resnet_cuts_are_block_outputs_and_nodes_outside_blocks),
        cmocka_unit_test(test_tiny_mix_cuts_skip_the_concat_branch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
