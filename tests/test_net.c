/* test_net.c - the network model: loading the zoo, parameter counts against torchvision, shape
 * inference, --input reshapes, strict loading of bad files (tests/data/bad/, one case per file)
 * and the lookup of --net names.
 *
 * The zoo is found through $LRCNN_NETWORKS (set by `make test`) or the source tree.
 * Deliberately not here: row dependencies (test_rowdep.c), plans and peaks (test_plan.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "net.h"

#define BAD_DIR LRCNN_SRCDIR "/tests/data/bad/"

/* ------------------------------------------------------------------ helpers */

static net_t *open_ok(const char *name)
{
    net_t *net = NULL;
    lr_status s = net_open(name, &net);
    if (s != LR_OK)
        fail_msg("net_open(%s): %s", name, lr_last_error());
    assert_non_null(net);
    return net;
}

static net_t *parse_ok(const char *json)
{
    net_t *net = NULL;
    lr_status s = net_parse(json, strlen(json), "test.json", &net);
    if (s != LR_OK)
        fail_msg("net_parse: %s", lr_last_error());
    return net;
}

static const net_node *node(const net_t *net, const char *name)
{
    int i = net_find(net, name);
    if (i < 0)
        fail_msg("%s has no layer %s", net->name, name);
    return &net->nodes[i];
}

static void assert_shape(const net_t *net, const char *name, int c, int h, int w)
{
    const net_node *n = node(net, name);
    if (n->c != c || n->h != h || n->w != w)
        fail_msg("%s %s: %dx%dx%d, expected %dx%dx%d", net->name, name, n->c, n->h, n->w, c, h, w);
}

/* The recorded message is one line and contains every given substring. */
static void assert_message(const char *first, ...)
{
    const char *msg = lr_last_error();
    if (strchr(msg, '\n'))
        fail_msg("message is not one line: '%s'", msg);
    va_list ap;
    va_start(ap, first);
    for (const char *want = first; want; want = va_arg(ap, const char *))
        if (!strstr(msg, want))
            fail_msg("message '%s' does not mention '%s'", msg, want);
    va_end(ap);
}

/* ------------------------------------------------------------------ the zoo */

static const struct {
    const char *name;
    int64_t params; /* torchvision's sum(p.numel() for p in model.parameters()) */
} zoo[] = {
    {"vgg11", 132863336},   {"vgg13", 133047848},    {"vgg16", 138357544},
    {"vgg19", 143667240},   {"resnet18", 11689512},  {"resnet34", 21797672},
    {"resnet50", 25557032}, {"resnet101", 44549160}, {"alexnet", 61100840},
};

/* Every torchvision net in the zoo loads and has exactly torchvision's parameter count
 * (the sum over layers equals net->params). */
static void test_zoo_parameter_counts_equal_torchvision(void **state)
{
    for (size_t i = 0; i < sizeof zoo / sizeof zoo[0]; i++) {
        net_t *net = open_ok(zoo[i].name);
        int64_t sum = 0;
        for (int l = 0; l < net->n_nodes; l++)
            sum += net->nodes[l].params;
        if (net->params != zoo[i].params || sum != net->params)
            fail_msg("%s: %lld params (layers sum to %lld), torchvision has %lld", zoo[i].name,
                     (long long)net->params, (long long)sum, (long long)zoo[i].params);
        assert_string_equal(net->name, zoo[i].name);
        net_free(net);
    }
}

/* The small nets load, end with the loss, and every layer but the loss has a consumer;
 * node 0 is the input and inputs always point backwards (topological order). */
static void test_tiny_nets_load_as_dags_in_topological_order(void **state)
{
    const char *names[] = {"tiny-vgg", "tiny-resnet", "tiny-mix"};
    for (size_t i = 0; i < 3; i++) {
        net_t *net = open_ok(names[i]);
        assert_int_equal(net->nodes[0].op, OP_INPUT);
        assert_string_equal(net->nodes[0].name, "input");
        assert_int_equal(net->nodes[net->n_nodes - 1].op, OP_SOFTMAX_XENT);
        for (int l = 1; l < net->n_nodes; l++) {
            for (int k = 0; k < net->nodes[l].n_inputs; k++)
                assert_true(net->nodes[l].inputs[k] < l);
            if (l < net->n_nodes - 1)
                assert_true(net->nodes[l].n_consumers > 0);
            int listed = net->cons_off[l + 1] - net->cons_off[l];
            assert_int_equal(listed, net->nodes[l].n_consumers);
        }
        net_free(net);
    }
}

/* VGG16 at 224: five 2x2 pools take 224 to 7; pool5 is 512x7x7, conv5_3 512x14x14, and the
 * adaptive pool keeps 7x7 so fc6 sees 25088 features (25088*4096+4096 params). */
static void test_vgg16_shapes(void **state)
{
    net_t *net = open_ok("vgg16");
    assert_shape(net, "input", 3, 224, 224);
    assert_shape(net, "conv1_1", 64, 224, 224);
    assert_shape(net, "pool1", 64, 112, 112);
    assert_shape(net, "conv5_3", 512, 14, 14);
    assert_shape(net, "pool5", 512, 7, 7);
    assert_shape(net, "avgpool", 512, 7, 7);
    assert_shape(net, "flatten", 25088, 1, 1);
    assert_shape(net, "fc6", 4096, 1, 1);
    assert_int_equal(node(net, "fc6")->params, 25088LL * 4096 + 4096);
    assert_int_equal(node(net, "conv1_1")->params, 64 * 3 * 9 + 64);
    net_free(net);
}

/* ResNet-50 (v1.5): stem 7x7/2 -> 112, maxpool 3x3/2 p1 -> 56; layer2..4 halve it on the 3x3
 * conv: layer2_0_conv2 is 128x28x28 while layer2_0_conv1 stays 128x56x56; layer4 ends 2048x7x7. */
static void test_resnet50_shapes(void **state)
{
    net_t *net = open_ok("resnet50");
    assert_shape(net, "conv1", 64, 112, 112);
    assert_shape(net, "maxpool", 64, 56, 56);
    assert_shape(net, "layer1_0_relu", 256, 56, 56);
    assert_shape(net, "layer2_0_conv1", 128, 56, 56);
    assert_shape(net, "layer2_0_conv2", 128, 28, 28);
    assert_shape(net, "layer2_0_downsample_conv", 512, 28, 28);
    assert_shape(net, "layer4_2_relu", 2048, 7, 7);
    assert_shape(net, "avgpool", 2048, 1, 1);
    assert_shape(net, "fc", 1000, 1, 1);
    /* the v1.5 bottleneck puts the stride on the 3x3 conv */
    assert_int_equal(node(net, "layer2_0_conv2")->prm.sh, 2);
    assert_int_equal(node(net, "layer2_0_conv1")->prm.sh, 1);
    net_free(net);
}

/* AlexNet: conv1 11x11/4 p2 gives floor((224+4-11)/4)+1 = 55, pool 3/2 -> 27, conv2 5x5 p2 ->
 * 27, pool -> 13, conv3..5 3x3 p1 -> 13, pool after conv5 -> floor((13-3)/2)+1 = 6: 256x6x6. */
static void test_alexnet_shapes(void **state)
{
    net_t *net = open_ok("alexnet");
    assert_shape(net, "conv1", 64, 55, 55);
    assert_shape(net, "pool1", 64, 27, 27);
    assert_shape(net, "pool2", 192, 13, 13);
    assert_shape(net, "conv5", 256, 13, 13);
    assert_shape(net, "pool5", 256, 6, 6);
    assert_shape(net, "fc6", 4096, 1, 1);
    net_free(net);
}

/* The tiny nets: tiny-vgg 28 -> 14 -> 7 (32x7x7 = 1568 features); tiny-resnet's strided block
 * and its 1x1/2 downsample both give 16x14x14; tiny-mix covers dilation (k3 d2 p2 keeps 14),
 * groups, upsample (14 -> 28), concat (8+8 channels), a [3,5] kernel with stride 2 and
 * pad [1,2] (28 -> 14 both ways), maxpool 3/2 p1 (14 -> 7) and adaptive pooling to 3. */
static void test_tiny_net_shapes(void **state)
{
    net_t *v = open_ok("tiny-vgg");
    assert_shape(v, "pool1", 16, 14, 14);
    assert_shape(v, "pool2", 32, 7, 7);
    assert_shape(v, "flatten", 1568, 1, 1);
    assert_int_equal(node(v, "fc1")->params, 1568 * 64 + 64);
    net_free(v);

    net_t *r = open_ok("tiny-resnet");
    assert_shape(r, "b1_add", 8, 28, 28);
    assert_shape(r, "b2_conv1", 16, 14, 14);
    assert_shape(r, "b2_down", 16, 14, 14);
    assert_shape(r, "b2_relu2", 16, 14, 14);
    assert_shape(r, "gap", 16, 1, 1);
    assert_int_equal(node(r, "b1_bn1")->params, 16);
    assert_int_equal(node(r, "b2_down")->params, 16 * 8); /* 1x1, no bias */
    net_free(r);

    net_t *m = open_ok("tiny-mix");
    assert_shape(m, "pool1", 8, 14, 14);
    assert_shape(m, "conv2", 8, 14, 14);
    assert_int_equal(node(m, "conv2")->params, 8 * (8 / 2) * 9 + 8); /* groups 2 */
    assert_shape(m, "up", 8, 28, 28);
    assert_shape(m, "cat", 16, 28, 28);
    assert_shape(m, "conv3", 16, 14, 14);
    assert_int_equal(node(m, "conv3")->prm.kw, 5);
    assert_shape(m, "pool3", 16, 7, 7);
    assert_shape(m, "apool", 16, 3, 3);
    assert_shape(m, "fc", 10, 1, 1);
    net_free(m);
}

/* VGG16 at 448x448: every map doubles (pool5 512x14x14), but the adaptive pool brings it back
 * to 7x7, so the parameter count stays 138357544. */
static void test_reshape_vgg16_to_448_keeps_parameters(void **state)
{
    net_t *net = open_ok("vgg16");
    assert_int_equal(net_reshape(net, 448, 448), LR_OK);
    assert_shape(net, "input", 3, 448, 448);
    assert_shape(net, "pool5", 512, 14, 14);
    assert_shape(net, "avgpool", 512, 7, 7);
    assert_int_equal(net->params, 138357544);
    net_free(net);
}

/* A non-square reshape changes height and width independently (ResNet-50 at 320x160 ends
 * 2048x10x5), and the parameter count does not depend on the input size. */
static void test_reshape_resnet50_non_square(void **state)
{
    net_t *net = open_ok("resnet50");
    assert_int_equal(net_reshape(net, 320, 160), LR_OK);
    assert_shape(net, "layer4_2_relu", 2048, 10, 5);
    assert_int_equal(net->params, 25557032);
    net_free(net);
}

/* VGG16 at 8x8: pools take 8 -> 4 -> 2 -> 1, and pool4's 2x2 window no longer fits a 1-row
 * map: LR_ERR_INPUT naming pool4. */
static void test_impossible_reshape_names_the_layer(void **state)
{
    net_t *net = open_ok("vgg16");
    assert_int_equal(net_reshape(net, 8, 8), LR_ERR_INPUT);
    assert_message("pool4", "vgg16.json", NULL);
    net_free(net);
}

/* At 32x32 pool5 is 1x1 and the adaptive pool repeats it to 7x7, as torchvision's does: fc6
 * still sees 25088 features. */
static void test_adaptive_pool_may_enlarge_the_map(void **state)
{
    net_t *net = open_ok("vgg16");
    assert_int_equal(net_reshape(net, 32, 32), LR_OK);
    const net_node *ap = &net->nodes[net_find(net, "avgpool")];
    assert_int_equal(net->nodes[ap->inputs[0]].h, 1);
    assert_int_equal(ap->h, 7);
    assert_int_equal(ap->w, 7);
    assert_int_equal(net->nodes[net_find(net, "fc6")].params, 25088LL * 4096 + 4096);
    net_free(net);
}

/* Reshape sizes outside [1, 2^24] are refused before any inference. */
static void test_reshape_rejects_out_of_range_sizes(void **state)
{
    net_t *net = open_ok("tiny-vgg");
    assert_int_not_equal(net_reshape(net, 0, 28), LR_OK);
    assert_int_not_equal(net_reshape(net, 28, -5), LR_OK);
    assert_int_not_equal(net_reshape(net, (1 << 24) + 1, 28), LR_OK);
    assert_message("--input", NULL);
    net_free(net);
}

/* ------------------------------------------------------------------ parsing from a string */

static const char *small_net =
    "{\"name\": \"small\", \"input\": {\"channels\": 2, \"height\": 6, \"width\": 4},\n"
    " \"layers\": [\n"
    "  {\"name\": \"c1\", \"op\": \"conv\", \"out_channels\": 3, \"kernel\": [3, 1], \"pad\": [1, 0], \"bias\": false},\n"
    "  {\"name\": \"r1\", \"op\": \"relu\"},\n"
    "  {\"name\": \"c2\", \"op\": \"conv\", \"out_channels\": 3, \"kernel\": 1, \"inputs\": [\"input\"]},\n"
    "  {\"name\": \"sum\", \"op\": \"add\", \"inputs\": [\"r1\", \"c2\"]},\n"
    "  {\"name\": \"bn\", \"op\": \"batchnorm\", \"eps\": 0.001},\n"
    "  {\"name\": \"fc\", \"op\": \"fc\", \"out_features\": 5},\n"
    "  {\"name\": \"loss\", \"op\": \"softmax_xent\"}]}";

/* net_parse: defaults (stride 1, dilation 1, groups 1, bias true unless false, BN momentum
 * 0.1), explicit inputs including "input", the consumer lists, and the parameter sum. */
static void test_parse_from_string_fills_defaults_and_consumers(void **state)
{
    net_t *net = parse_ok(small_net);
    assert_string_equal(net->name, "small");
    assert_int_equal(net->n_nodes, 8);
    const net_node *c1 = node(net, "c1");
    assert_int_equal(c1->prm.sh, 1);
    assert_int_equal(c1->prm.dh, 1);
    assert_int_equal(c1->prm.groups, 1);
    assert_false(c1->prm.bias);
    assert_int_equal(c1->params, 3 * 2 * 3 * 1);
    assert_true(node(net, "c2")->prm.bias);
    assert_int_equal(node(net, "c2")->params, 3 * 2 + 3);
    assert_int_equal(node(net, "c2")->inputs[0], 0);
    assert_true(node(net, "bn")->prm.eps == 0.001);
    assert_true(node(net, "bn")->prm.momentum == 0.1);
    assert_shape(net, "sum", 3, 6, 4);
    assert_int_equal(node(net, "fc")->params, 3 * 6 * 4 * 5 + 5);
    assert_int_equal(net->params, 18 + 9 + 6 + 72 * 5 + 5);
    /* the input feeds c1 and c2 */
    assert_int_equal(net->nodes[0].n_consumers, 2);
    assert_int_equal(net->cons_node[net->cons_off[0]], net_find(net, "c1"));
    assert_int_equal(net->cons_node[net->cons_off[0] + 1], net_find(net, "c2"));
    /* c2 is read by `sum` through input slot 1 */
    int c2 = net_find(net, "c2");
    assert_int_equal(net->cons_node[net->cons_off[c2]], net_find(net, "sum"));
    assert_int_equal(net->cons_slot[net->cons_off[c2]], 1);
    assert_string_equal(net->path, "test.json");
    net_free(net);
}

/* net_find: the input is node 0, layers are found by exact name, unknown names give -1. */
static void test_find_by_name(void **state)
{
    net_t *net = parse_ok(small_net);
    assert_int_equal(net_find(net, "input"), 0);
    assert_int_equal(net_find(net, "c1"), 1);
    assert_int_equal(net_find(net, "loss"), 7);
    assert_int_equal(net_find(net, "C1"), -1);
    assert_int_equal(net_find(net, "c"), -1);
    assert_int_equal(net_find(net, ""), -1);
    net_free(net);
}

/* Op names round-trip through the table; "input" is not a layer op and unknown names give
 * OP_COUNT; flatten/fc/pooling to a fixed size end a row region. */
static void test_op_names_and_rowwise_table(void **state)
{
    for (int op = OP_CONV; op < OP_COUNT; op++)
        assert_int_equal(net_op_from_name(net_op_name((net_op)op)), op);
    assert_int_equal(net_op_from_name("input"), OP_COUNT);
    assert_int_equal(net_op_from_name("gelu"), OP_COUNT);
    assert_true(net_op_is_rowwise(OP_CONV));
    assert_true(net_op_is_rowwise(OP_UPSAMPLE));
    assert_true(net_op_is_rowwise(OP_CONCAT));
    assert_false(net_op_is_rowwise(OP_FLATTEN));
    assert_false(net_op_is_rowwise(OP_FC));
    assert_false(net_op_is_rowwise(OP_GLOBAL_AVGPOOL));
    assert_false(net_op_is_rowwise(OP_ADAPTIVE_AVGPOOL));
    assert_false(net_op_is_rowwise(OP_SOFTMAX_XENT));
    assert_true(net_op_has_params(OP_BATCHNORM));
    assert_false(net_op_has_params(OP_RELU));
}

/* A text with a NUL byte inside is not a network file (LR_ERR_PARSE naming the origin). */
static void test_parse_rejects_nul_bytes(void **state)
{
    const char text[] = "{\"name\": \"x\"}\0 ";
    net_t *net = (net_t *)1;
    assert_int_equal(net_parse(text, sizeof text - 1, "nul.json", &net), LR_ERR_PARSE);
    assert_null(net);
    assert_message("nul.json", NULL);
}

/* ------------------------------------------------------------------ lookup and missing files */

/* net_load of a file that does not exist is an I/O error naming the file and the reason. */
static void test_missing_file_is_an_io_error(void **state)
{
    net_t *net = (net_t *)1;
    assert_int_equal(net_load("/nonexistent/dir/net.json", &net), LR_ERR_IO);
    assert_null(net);
    assert_message("/nonexistent/dir/net.json", "No such file", NULL);
}

/* net_open: an unknown zoo name and a path that does not exist are bad input (exit 2), each
 * naming what was asked for; the zoo name message lists the zoo. */
static void test_open_unknown_name_or_path(void **state)
{
    net_t *net = (net_t *)1;
    assert_int_equal(net_open("does-not-exist", &net), LR_ERR_INPUT);
    assert_null(net);
    assert_message("does-not-exist", "vgg16", NULL);
    assert_int_equal(net_open("nets/does-not-exist.json", &net), LR_ERR_INPUT);
    assert_message("nets/does-not-exist.json", NULL);
}

/* net_open takes a path to a .json file as is; the net keeps the path for messages. */
static void test_open_by_path(void **state)
{
    net_t *net = open_ok(LRCNN_SRCDIR "/networks/tiny-vgg.json");
    assert_string_equal(net->name, "tiny-vgg");
    assert_string_equal(net->path, LRCNN_SRCDIR "/networks/tiny-vgg.json");
    net_free(net);
}

/* A directory named like a zoo net in the working directory is not "an existing file path"
 * (net.h): net_open("vgg16") still loads the zoo's vgg16. */
static void test_open_ignores_a_directory_named_like_the_net(void **state)
{
    char dir[] = "/tmp/test_net.XXXXXX", cwd[4096], sub[64];
    assert_non_null(mkdtemp(dir));
    assert_non_null(getcwd(cwd, sizeof cwd));
    snprintf(sub, sizeof sub, "%s/vgg16", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_int_equal(chdir(dir), 0);
    net_t *net = NULL;
    lr_status s = net_open("vgg16", &net);
    char msg[512];
    snprintf(msg, sizeof msg, "%s", lr_last_error());
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rmdir(sub), 0);
    assert_int_equal(rmdir(dir), 0);
    if (s != LR_OK)
        print_message("%s\n", msg);
    assert_int_equal(s, LR_OK);
    assert_int_equal(net->params, 138357544);
    net_free(net);
}

/* ------------------------------------------------------------------ strict loading */

typedef struct {
    const char *test;  /* the test's name: the behaviour it pins */
    const char *file;  /* under tests/data/bad/ */
    lr_status code;
    const char *where; /* JSON path or layer the message must name */
    const char *what;  /* a word of the reason */
} bad_case;

static const bad_case bad_cases[] = {
    {"test_malformed_json_names_line_and_column",
     "malformed.json", LR_ERR_PARSE, "line 5, column", "invalid JSON"},
    {"test_truncated_json_says_truncated",
     "truncated.json", LR_ERR_PARSE, "line 7", "truncated"},
    {"test_text_after_the_object_is_rejected",
     "trailing-text.json", LR_ERR_PARSE, "line 9", "after the JSON"},
    {"test_unknown_top_level_key_is_rejected",
     "unknown-top-key.json", LR_ERR_PARSE, "optimizer", "unknown key"},
    {"test_unknown_layer_key_is_rejected",
     "unknown-layer-key.json", LR_ERR_PARSE, "layers[1].inplace", "unknown key"},
    {"test_key_of_another_op_is_rejected",
     "key-of-other-op.json", LR_ERR_PARSE, "layers[1].dilation", "unknown key"},
    {"test_string_stride_is_a_type_error",
     "string-stride.json", LR_ERR_PARSE, "layers[2].stride", "integer"},
    {"test_conv_without_out_channels_is_rejected",
     "missing-out-channels.json", LR_ERR_PARSE, "layers[1].out_channels", "missing"},
    {"test_unknown_op_is_rejected",
     "unknown-op.json", LR_ERR_PARSE, "layers[1].op", "unknown op"},
    {"test_duplicate_layer_name_is_rejected",
     "duplicate-name.json", LR_ERR_PARSE, "layers[3].name", "duplicate"},
    {"test_dangling_input_is_rejected",
     "dangling-input.json", LR_ERR_PARSE, "layers[2].inputs[1]", "conv9"},
    {"test_input_from_a_later_layer_is_rejected",
     "forward-input.json", LR_ERR_PARSE, "layers[1].inputs[0]", "conv2"},
    {"test_self_referencing_input_is_rejected",
     "self-input.json", LR_ERR_PARSE, "layers[2].inputs[1]", "add"},
    {"test_two_inputs_to_a_unary_op_are_rejected",
     "two-inputs-to-relu.json", LR_ERR_PARSE, "layers[1].inputs", "1 input"},
    {"test_kernel_larger_than_padded_input_is_rejected",
     "kernel-too-large.json", LR_ERR_INPUT, "layers[1] (conv2)", "does not fit"},
    {"test_zero_stride_is_rejected",
     "zero-stride.json", LR_ERR_PARSE, "layers[0].stride", "[1, "},
    {"test_channel_mismatch_at_add_is_rejected",
     "add-channel-mismatch.json", LR_ERR_INPUT, "layers[2] (add)", "channel"},
    {"test_negative_pad_is_rejected",
     "negative-pad.json", LR_ERR_PARSE, "layers[0].pad", "[0, "},
    {"test_fractional_integer_is_rejected",
     "fractional-int.json", LR_ERR_PARSE, "layers[0].kernel", "integer"},
    {"test_loss_before_the_last_layer_is_rejected",
     "loss-not-last.json", LR_ERR_INPUT, "layers[2] (loss)", "last"},
    {"test_net_without_loss_is_rejected",
     "no-loss.json", LR_ERR_INPUT, "layers[1] (fc)", "softmax_xent"},
    {"test_unused_layer_output_is_rejected",
     "unused-output.json", LR_ERR_INPUT, "layers[1] (side)", "never used"},
    {"test_empty_layer_list_is_rejected",
     "empty-layers.json", LR_ERR_PARSE, "layers", "non-empty"},
    {"test_dropout_p_1_is_rejected",
     "dropout-p1.json", LR_ERR_PARSE, "layers[1].p", "[0, 1)"},
    {"test_huge_channel_count_does_not_wrap",
     "huge-channels.json", LR_ERR_PARSE, "layers[0].out_channels", "16777216"},
    {"test_input_height_string_is_a_type_error",
     "input-height-string.json", LR_ERR_PARSE, "input.height", "integer"},
    /* Names end up in one-line messages, tables and CSV: control characters are not names. */
    {"test_layer_name_with_a_newline_is_rejected", "name-with-newline.json", LR_ERR_PARSE,
     "layers[1].name", "control characters"},
    {"test_layer_name_with_a_nul_is_rejected", "name-with-nul.json", LR_ERR_PARSE,
     "layers[0].name", "control characters"},
};
#define N_BAD (sizeof bad_cases / sizeof bad_cases[0])

/* One test per bad file (state: its bad_case): the load fails with the expected status and no
 * net, and the message is one line naming the file, the JSON path (or layer) and the reason;
 * net_open, which --net uses, fails the same way. */
static void test_bad_file(void **state)
{
    const bad_case *c = *state;
    char path[512];
    snprintf(path, sizeof path, "%s%s", BAD_DIR, c->file);
    net_t *net = (net_t *)1;
    lr_status s = net_load(path, &net);

    if (s != c->code)
        fail_msg("%s: status %d, expected %d (%s)", c->file, s, c->code, lr_last_error());
    assert_null(net);
    assert_message(c->file, c->where, c->what, NULL);
    assert_int_equal(net_open(path, &net), c->code);
    assert_message(c->file, c->where, NULL);
}

/* Every file under tests/data/bad/ has a case in the table (a new file without one would never
 * be checked), and the table has no duplicates. */
static void test_every_bad_file_has_a_case(void **state)
{
    FILE *p = popen("ls " BAD_DIR, "r");
    assert_non_null(p);
    char line[256];
    int files = 0;
    while (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = '\0';
        if (strcmp(line, "param-overflow.json") == 0) { /* its own test below */
            files++;
            continue;
        }
        bool found = false;
        for (size_t i = 0; i < N_BAD; i++)
            found |= strcmp(bad_cases[i].file, line) == 0;
        if (!found)
            fail_msg("tests/data/bad/%s has no case in bad_cases[]", line);
        files++;
    }
    pclose(p);
    assert_int_equal(files, (int)N_BAD + 1);
}

/* A layer reading itself is a cycle; the message should say so rather than call the layer
 * "not an earlier layer" (net.c has a branch for it). */
static void test_self_input_is_reported_as_a_cycle(void **state)
{
    net_t *net;
    assert_int_equal(net_load(BAD_DIR "self-input.json", &net), LR_ERR_PARSE);
    assert_message("layers[2].inputs[1]", "cycle", NULL);
}

/* Parameter counts that do not fit in 64 bits are bad input: a 1 x 2^24 conv from 2^24 to
 * 2^24 channels has 2^72 weights. Loading must fail with LR_ERR_INPUT naming the layer, not
 * wrap around (signed overflow) into a small or negative count. */
static void test_parameter_count_overflow_is_rejected(void **state)
{
    net_t *net = NULL;
    lr_status s = net_load(BAD_DIR "param-overflow.json", &net);
    assert_int_equal(s, LR_ERR_INPUT);
    assert_message("param-overflow.json", "conv1", NULL);
}

int main(void)
{
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_zoo_parameter_counts_equal_torchvision),
        cmocka_unit_test(test_tiny_nets_load_as_dags_in_topological_order),
        cmocka_unit_test(test_vgg16_shapes),
        cmocka_unit_test(test_resnet50_shapes),
        cmocka_unit_test(test_alexnet_shapes),
        cmocka_unit_test(test_tiny_net_shapes),
        cmocka_unit_test(test_reshape_vgg16_to_448_keeps_parameters),
        cmocka_unit_test(test_reshape_resnet50_non_square),
        cmocka_unit_test(test_impossible_reshape_names_the_layer),
        cmocka_unit_test(test_adaptive_pool_may_enlarge_the_map),
        cmocka_unit_test(test_reshape_rejects_out_of_range_sizes),
        cmocka_unit_test(test_parse_from_string_fills_defaults_and_consumers),
        cmocka_unit_test(test_find_by_name),
        cmocka_unit_test(test_op_names_and_rowwise_table),
        cmocka_unit_test(test_parse_rejects_nul_bytes),
        cmocka_unit_test(test_missing_file_is_an_io_error),
        cmocka_unit_test(test_open_unknown_name_or_path),
        cmocka_unit_test(test_open_by_path),
        cmocka_unit_test(test_open_ignores_a_directory_named_like_the_net),
        cmocka_unit_test(test_every_bad_file_has_a_case),
        cmocka_unit_test(test_self_input_is_reported_as_a_cycle),
        cmocka_unit_test(test_parameter_count_overflow_is_rejected),
    };
    enum { N_FIXED = sizeof fixed / sizeof fixed[0] };
    struct CMUnitTest tests[N_FIXED + N_BAD];
    memcpy(tests, fixed, sizeof fixed);
    for (size_t i = 0; i < N_BAD; i++)
        tests[N_FIXED + i] = (struct CMUnitTest){bad_cases[i].test, test_bad_file, NULL, NULL,
                                                 (void *)&bad_cases[i]};
    return _cmocka_run_group_tests("test_net", tests, N_FIXED + N_BAD, NULL, NULL);
}
