/* net.c - loading a network from JSON (strict: every unknown key, wrong type, missing field,
 * dangling input and impossible shape is an error naming the file and JSON path), shape
 * inference and parameter counting.
 *
 * Deliberately not here: row dependencies, costs, batch size.
 */
#include "net.h"

#include "checked.h"

#include <json-c/json.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NET_DIM_MAX (1 << 24)     /* largest height, width or channel count accepted */
#define NET_MAX_NODES 100000

/* ------------------------------------------------------------------ op table */

typedef struct {
    const char *name;
    bool rowwise;
    bool has_params;
    const char *const *keys; /* keys allowed besides name, op, inputs */
} op_info;

static const char *const keys_none[] = {NULL};
static const char *const keys_conv[] = {"out_channels", "kernel", "stride", "pad",
                                        "dilation",     "groups", "bias",   NULL};
static const char *const keys_pool[] = {"kernel", "stride", "pad", NULL};
static const char *const keys_adaptive[] = {"output", NULL};
static const char *const keys_bn[] = {"eps", "momentum", NULL};
static const char *const keys_up[] = {"scale", NULL};
static const char *const keys_fc[] = {"out_features", "bias", NULL};
static const char *const keys_drop[] = {"p", NULL};

static const op_info op_table[OP_COUNT] = {
    [OP_INPUT] = {"input", true, false, keys_none},
    [OP_CONV] = {"conv", true, true, keys_conv},
    [OP_RELU] = {"relu", true, false, keys_none},
    [OP_MAXPOOL] = {"maxpool", true, false, keys_pool},
    [OP_AVGPOOL] = {"avgpool", true, false, keys_pool},
    [OP_ADAPTIVE_AVGPOOL] = {"adaptive_avgpool", false, false, keys_adaptive},
    [OP_GLOBAL_AVGPOOL] = {"global_avgpool", false, false, keys_none},
    [OP_BATCHNORM] = {"batchnorm", true, true, keys_bn},
    [OP_ADD] = {"add", true, false, keys_none},
    [OP_CONCAT] = {"concat", true, false, keys_none},
    [OP_UPSAMPLE] = {"upsample", true, false, keys_up},
    [OP_FLATTEN] = {"flatten", false, false, keys_none},
    [OP_FC] = {"fc", false, true, keys_fc},
    [OP_DROPOUT] = {"dropout", true, false, keys_drop},
    [OP_SOFTMAX_XENT] = {"softmax_xent", false, false, keys_none},
};

const char *net_op_name(net_op op)
{
    return op < OP_COUNT ? op_table[op].name : "?";
}

net_op net_op_from_name(const char *name)
{
    for (int op = OP_CONV; op < OP_COUNT; op++)
        if (strcmp(op_table[op].name, name) == 0)
            return (net_op)op;
    return OP_COUNT;
}

bool net_op_is_rowwise(net_op op)
{
    return op < OP_COUNT && op_table[op].rowwise;
}

bool net_op_is_row_reduction(net_op op)
{
    return op == OP_ADAPTIVE_AVGPOOL || op == OP_GLOBAL_AVGPOOL;
}

bool net_op_has_params(net_op op)
{
    return op < OP_COUNT && op_table[op].has_params;
}

/* ------------------------------------------------------------------ JSON helpers */

/* Layer names parsed so far, by hash (open addressing, node ids, -1 empty): resolving inputs
 * and rejecting duplicates stays linear in the number of layers (a linear net_find per layer
 * made a 100000-layer file take a minute). */
typedef struct {
    int *slot;
    size_t mask; /* capacity - 1, capacity a power of two above twice the node count */
} name_index;

typedef struct {
    const char *origin; /* file name for messages */
    char path[128];     /* JSON path of the layer being parsed, e.g. "layers[3]" */
    name_index names;
} parse_ctx;

static size_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (size_t)h;
}

static bool names_init(name_index *ix, size_t nodes)
{
    size_t cap = 16;
    while (cap < 2 * nodes)
        cap *= 2;
    ix->slot = malloc(cap * sizeof *ix->slot);
    ix->mask = cap - 1;
    for (size_t i = 0; ix->slot && i < cap; i++)
        ix->slot[i] = -1;
    return ix->slot != NULL;
}

/* The slot holding `name`, or the empty slot where it would go. */
static size_t names_probe(const name_index *ix, const net_t *net, const char *name)
{
    size_t h = name_hash(name) & ix->mask;
    while (ix->slot[h] >= 0 && strcmp(net->nodes[ix->slot[h]].name, name) != 0)
        h = (h + 1) & ix->mask;
    return h;
}

/* Node id of the layer called `name` parsed so far, or -1. */
static int names_find(const name_index *ix, const net_t *net, const char *name)
{
    return ix->slot[names_probe(ix, net, name)];
}

static void names_add(name_index *ix, const net_t *net, int id)
{
    ix->slot[names_probe(ix, net, net->nodes[id].name)] = id;
}

static lr_status bad(const parse_ctx *px, const char *key, const char *what)
{
    if (key)
        return lr_fail(LR_ERR_PARSE, "%s: %s.%s: %s", px->origin, px->path, key, what);
    return lr_fail(LR_ERR_PARSE, "%s: %s: %s", px->origin, px->path, what);
}

/* Reads an integer in [lo, hi]; a JSON double with a fractional part is not an integer. */
static lr_status get_int_value(const parse_ctx *px, const char *key, json_object *v, int lo,
                               int hi, int *out)
{
    if (!json_object_is_type(v, json_type_int))
        return bad(px, key, "expected an integer");
    errno = 0;
    int64_t x = json_object_get_int64(v);
    if (errno != 0 || x < lo || x > hi) {
        char msg[96];
        snprintf(msg, sizeof msg, "expected an integer in [%d, %d]", lo, hi);
        return bad(px, key, msg);
    }
    *out = (int)x;
    return LR_OK;
}

static lr_status get_int(const parse_ctx *px, json_object *obj, const char *key, bool required,
                         int dflt, int lo, int hi, int *out)
{
    json_object *v;
    if (!json_object_object_get_ex(obj, key, &v)) {
        if (required)
            return bad(px, key, "missing");
        *out = dflt;
        return LR_OK;
    }
    return get_int_value(px, key, v, lo, hi, out);
}

/* An int, or a [h, w] pair of ints. */
static lr_status get_pair(const parse_ctx *px, json_object *obj, const char *key, bool required,
                          int dflt, int lo, int hi, int *h, int *w)
{
    json_object *v;
    if (!json_object_object_get_ex(obj, key, &v)) {
        if (required)
            return bad(px, key, "missing");
        *h = *w = dflt;
        return LR_OK;
    }
    if (json_object_is_type(v, json_type_array)) {
        if (json_object_array_length(v) != 2)
            return bad(px, key, "expected an integer or a [height, width] pair");
        LR_TRY(get_int_value(px, key, json_object_array_get_idx(v, 0), lo, hi, h));
        return get_int_value(px, key, json_object_array_get_idx(v, 1), lo, hi, w);
    }
    LR_TRY(get_int_value(px, key, v, lo, hi, h));
    *w = *h;
    return LR_OK;
}

static lr_status get_bool(const parse_ctx *px, json_object *obj, const char *key, bool dflt,
                          bool *out)
{
    json_object *v;
    if (!json_object_object_get_ex(obj, key, &v)) {
        *out = dflt;
        return LR_OK;
    }
    if (!json_object_is_type(v, json_type_boolean))
        return bad(px, key, "expected true or false");
    *out = json_object_get_boolean(v);
    return LR_OK;
}

/* A number in [lo, hi) (hi_open) or [lo, hi]. */
static lr_status get_real(const parse_ctx *px, json_object *obj, const char *key, double dflt,
                          double lo, double hi, bool hi_open, double *out)
{
    json_object *v;
    if (!json_object_object_get_ex(obj, key, &v)) {
        *out = dflt;
        return LR_OK;
    }
    if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
        return bad(px, key, "expected a number");
    double x = json_object_get_double(v);
    if (!(x >= lo) || (hi_open ? !(x < hi) : !(x <= hi))) {
        char msg[96];
        snprintf(msg, sizeof msg, "expected a number in [%g, %g%c", lo, hi, hi_open ? ')' : ']');
        return bad(px, key, msg);
    }
    *out = x;
    return LR_OK;
}

/* A string without control characters or embedded NULs (names end up in one-line messages
 * and tables). */
static lr_status get_string(const parse_ctx *px, json_object *obj, const char *key,
                            const char **out)
{
    json_object *v;
    if (!json_object_object_get_ex(obj, key, &v))
        return bad(px, key, "missing");
    if (!json_object_is_type(v, json_type_string))
        return bad(px, key, "expected a string");
    const char *str = json_object_get_string(v);
    int len = json_object_get_string_len(v);
    for (int i = 0; i < len; i++)
        if ((unsigned char)str[i] < 0x20 || str[i] == 0x7f)
            return bad(px, key, "control characters are not allowed");
    *out = str;
    return LR_OK;
}

static bool key_in(const char *key, const char *const *keys)
{
    for (; *keys; keys++)
        if (strcmp(key, *keys) == 0)
            return true;
    return false;
}

static const char *const top_keys[] = {"name", "description", "input", "layers", NULL};
static const char *const input_keys[] = {"channels", "height", "width", NULL};
static const char *const layer_common_keys[] = {"name", "op", "inputs", NULL};

static lr_status check_keys(const parse_ctx *px, json_object *obj, const char *const *a,
                            const char *const *b)
{
    json_object_object_foreach(obj, key, val)
    {
        (void)val;
        if (!key_in(key, a) && !(b && key_in(key, b)))
            return bad(px, key, "unknown key");
    }
    return LR_OK;
}

/* ------------------------------------------------------------------ layer parsing */

typedef lr_status (*parse_fn)(const parse_ctx *px, json_object *obj, net_params *p);

static lr_status parse_conv(const parse_ctx *px, json_object *obj, net_params *p)
{
    LR_TRY(get_int(px, obj, "out_channels", true, 0, 1, NET_DIM_MAX, &p->out_channels));
    LR_TRY(get_pair(px, obj, "kernel", true, 0, 1, NET_DIM_MAX, &p->kh, &p->kw));
    LR_TRY(get_pair(px, obj, "stride", false, 1, 1, NET_DIM_MAX, &p->sh, &p->sw));
    LR_TRY(get_pair(px, obj, "pad", false, 0, 0, NET_DIM_MAX, &p->ph, &p->pw));
    LR_TRY(get_pair(px, obj, "dilation", false, 1, 1, NET_DIM_MAX, &p->dh, &p->dw));
    LR_TRY(get_int(px, obj, "groups", false, 1, 1, NET_DIM_MAX, &p->groups));
    return get_bool(px, obj, "bias", true, &p->bias);
}

static lr_status parse_pool(const parse_ctx *px, json_object *obj, net_params *p)
{
    LR_TRY(get_pair(px, obj, "kernel", true, 0, 1, NET_DIM_MAX, &p->kh, &p->kw));
    json_object *v;
    if (json_object_object_get_ex(obj, "stride", &v))
        LR_TRY(get_pair(px, obj, "stride", false, 1, 1, NET_DIM_MAX, &p->sh, &p->sw));
    else
        p->sh = p->kh, p->sw = p->kw;
    LR_TRY(get_pair(px, obj, "pad", false, 0, 0, NET_DIM_MAX, &p->ph, &p->pw));
    if (2 * p->ph > p->kh || 2 * p->pw > p->kw)
        return bad(px, "pad", "pooling padding must be at most half the kernel");
    return LR_OK;
}

static lr_status parse_adaptive(const parse_ctx *px, json_object *obj, net_params *p)
{
    return get_pair(px, obj, "output", true, 0, 1, NET_DIM_MAX, &p->out_h, &p->out_w);
}

static lr_status parse_bn(const parse_ctx *px, json_object *obj, net_params *p)
{
    LR_TRY(get_real(px, obj, "eps", 1e-5, 1e-30, 1.0, false, &p->eps));
    LR_TRY(get_real(px, obj, "momentum", 0.1, 0.0, 1.0, false, &p->momentum));
    if (p->eps <= 0)
        return bad(px, "eps", "expected a positive number");
    return LR_OK;
}

static lr_status parse_up(const parse_ctx *px, json_object *obj, net_params *p)
{
    return get_int(px, obj, "scale", true, 0, 1, 1024, &p->scale);
}

static lr_status parse_fc(const parse_ctx *px, json_object *obj, net_params *p)
{
    LR_TRY(get_int(px, obj, "out_features", true, 0, 1, NET_DIM_MAX, &p->out_features));
    return get_bool(px, obj, "bias", true, &p->bias);
}

static lr_status parse_drop(const parse_ctx *px, json_object *obj, net_params *p)
{
    return get_real(px, obj, "p", 0.5, 0.0, 1.0, true, &p->p);
}

static lr_status parse_nothing(const parse_ctx *px, json_object *obj, net_params *p)
{
    return LR_OK;
}

static const parse_fn parse_table[OP_COUNT] = {
    [OP_INPUT] = parse_nothing,       [OP_CONV] = parse_conv,
    [OP_RELU] = parse_nothing,        [OP_MAXPOOL] = parse_pool,
    [OP_AVGPOOL] = parse_pool,        [OP_ADAPTIVE_AVGPOOL] = parse_adaptive,
    [OP_GLOBAL_AVGPOOL] = parse_nothing, [OP_BATCHNORM] = parse_bn,
    [OP_ADD] = parse_nothing,         [OP_CONCAT] = parse_nothing,
    [OP_UPSAMPLE] = parse_up,         [OP_FLATTEN] = parse_nothing,
    [OP_FC] = parse_fc,               [OP_DROPOUT] = parse_drop,
    [OP_SOFTMAX_XENT] = parse_nothing,
};

static void set_defaults(net_params *p)
{
    memset(p, 0, sizeof *p);
    p->kh = p->kw = p->sh = p->sw = p->dh = p->dw = p->groups = p->scale = 1;
}

static lr_status parse_inputs(const parse_ctx *px, json_object *obj, net_t *net, net_node *node,
                              const char *self_name)
{
    json_object *v;
    int self = (int)(node - net->nodes);
    if (!json_object_object_get_ex(obj, "inputs", &v)) {
        node->n_inputs = 1;
        node->inputs[0] = self - 1;
        return LR_OK;
    }
    if (!json_object_is_type(v, json_type_array))
        return bad(px, "inputs", "expected a list of layer names");
    size_t n = json_object_array_length(v);
    if (n < 1 || n > NET_MAX_INPUTS) {
        char msg[64];
        snprintf(msg, sizeof msg, "expected 1 to %d layer names", NET_MAX_INPUTS);
        return bad(px, "inputs", msg);
    }
    node->n_inputs = (int)n;
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(v, i);
        char key[32];
        snprintf(key, sizeof key, "inputs[%zu]", i);
        if (!json_object_is_type(e, json_type_string))
            return bad(px, key, "expected a layer name");
        const char *name = json_object_get_string(e);
        if (strcmp(name, self_name) == 0) {
            char msg[NET_NAME_MAX + 64];
            snprintf(msg, sizeof msg, "'%.*s' reads its own output (cycle)", NET_NAME_MAX, name);
            return bad(px, key, msg);
        }
        int idx = names_find(&px->names, net, name);
        if (idx < 0 || idx >= self) {
            char msg[NET_NAME_MAX + 160];
            snprintf(msg, sizeof msg, "'%.*s' is not an earlier layer (inputs must name layers above, or \"input\"; a later layer would make a cycle)",
                     NET_NAME_MAX, name);
            return bad(px, key, msg);
        }
        node->inputs[i] = idx;
    }
    return LR_OK;
}

static lr_status parse_layer(parse_ctx *px, json_object *obj, net_t *net, int index)
{
    net_node *node = &net->nodes[index];
    if (!json_object_is_type(obj, json_type_object))
        return bad(px, NULL, "expected an object");
    const char *name, *opname;
    LR_TRY(get_string(px, obj, "name", &name));
    LR_TRY(get_string(px, obj, "op", &opname));
    if (name[0] == '\0' || strlen(name) >= NET_NAME_MAX)
        return bad(px, "name", "expected 1 to 63 characters");
    if (names_find(&px->names, net, name) >= 0) /* node 0, "input", is in the index */
        return bad(px, "name", "duplicate layer name");
    net_op op = net_op_from_name(opname);
    if (op == OP_COUNT)
        return bad(px, "op", "unknown op (expected conv, relu, maxpool, avgpool, adaptive_avgpool, "
                             "global_avgpool, batchnorm, add, concat, upsample, flatten, fc, "
                             "dropout or softmax_xent)");
    LR_TRY(check_keys(px, obj, layer_common_keys, op_table[op].keys));
    node->op = op;
    set_defaults(&node->prm);
    LR_TRY(parse_table[op](px, obj, &node->prm));
    LR_TRY(parse_inputs(px, obj, net, node, name));
    /* The name is set last so that the lookups above do not see the node itself. */
    snprintf(node->name, sizeof node->name, "%s", name);
    names_add(&px->names, net, index);
    bool multi = op == OP_ADD || op == OP_CONCAT;
    if (multi && node->n_inputs < 2)
        return bad(px, "inputs", "add and concat need at least 2 inputs");
    if (!multi && node->n_inputs != 1)
        return bad(px, "inputs", "this op takes exactly 1 input");
    return LR_OK;
}

static lr_status parse_input_shape(parse_ctx *px, json_object *root, net_t *net)
{
    json_object *in;
    snprintf(px->path, sizeof px->path, "input");
    if (!json_object_object_get_ex(root, "input", &in)) {
        snprintf(px->path, sizeof px->path, "(top level)");
        return bad(px, "input", "missing");
    }
    if (!json_object_is_type(in, json_type_object))
        return bad(px, NULL, "expected an object {channels, height, width}");
    LR_TRY(check_keys(px, in, input_keys, NULL));
    net_node *n0 = &net->nodes[0];
    snprintf(n0->name, sizeof n0->name, "input");
    n0->op = OP_INPUT;
    set_defaults(&n0->prm);
    LR_TRY(get_int(px, in, "channels", true, 0, 1, NET_DIM_MAX, &n0->c));
    LR_TRY(get_int(px, in, "height", true, 0, 1, NET_DIM_MAX, &n0->h));
    return get_int(px, in, "width", true, 0, 1, NET_DIM_MAX, &n0->w);
}

static lr_status parse_root(json_object *root, const char *origin, net_t *net)
{
    parse_ctx px = {.origin = origin};
    snprintf(px.path, sizeof px.path, "(top level)");
    if (!json_object_is_type(root, json_type_object))
        return bad(&px, NULL, "expected a JSON object");
    LR_TRY(check_keys(&px, root, top_keys, NULL));
    const char *name;
    LR_TRY(get_string(&px, root, "name", &name));
    if (name[0] == '\0' || strlen(name) >= NET_NAME_MAX)
        return bad(&px, "name", "expected 1 to 63 characters");
    snprintf(net->name, sizeof net->name, "%s", name);
    json_object *desc;
    if (json_object_object_get_ex(root, "description", &desc) &&
        !json_object_is_type(desc, json_type_string))
        return bad(&px, "description", "expected a string");
    json_object *layers;
    if (!json_object_object_get_ex(root, "layers", &layers))
        return bad(&px, "layers", "missing");
    if (!json_object_is_type(layers, json_type_array) || json_object_array_length(layers) == 0)
        return bad(&px, "layers", "expected a non-empty list of layers");
    size_t n = json_object_array_length(layers);
    if (n >= NET_MAX_NODES)
        return bad(&px, "layers", "too many layers (at most 99999)");
    net->nodes = calloc(n + 1, sizeof *net->nodes);
    if (!net->nodes)
        return lr_fail(LR_ERR_NOMEM, "%s: out of memory", origin);
    net->n_nodes = 1;
    LR_TRY(parse_input_shape(&px, root, net));
    if (!names_init(&px.names, n + 1))
        return lr_fail(LR_ERR_NOMEM, "%s: out of memory", origin);
    names_add(&px.names, net, 0);
    lr_status s = LR_OK;
    for (size_t i = 0; i < n && s == LR_OK; i++) {
        snprintf(px.path, sizeof px.path, "layers[%zu]", i);
        s = parse_layer(&px, json_object_array_get_idx(layers, i), net, (int)i + 1);
        if (s == LR_OK)
            net->n_nodes++;
    }
    free(px.names.slot);
    LR_TRY(s);
    return net_infer(net);
}

/* Translates a byte offset into "line L, column C" for parse errors. */
static void offset_to_line(const char *text, size_t off, int *line, int *col)
{
    *line = 1, *col = 1;
    for (size_t i = 0; i < off && text[i]; i++) {
        if (text[i] == '\n')
            (*line)++, *col = 1;
        else
            (*col)++;
    }
}

lr_status net_parse(const char *json_text, size_t len, const char *origin, net_t **out)
{
    *out = NULL;
    if (len > INT_MAX)
        return lr_fail(LR_ERR_PARSE, "%s: file too large", origin);
    if (memchr(json_text, '\0', len))
        return lr_fail(LR_ERR_PARSE, "%s: not a text file (contains a NUL byte)", origin);
    json_tokener *tok = json_tokener_new();
    if (!tok)
        return lr_fail(LR_ERR_NOMEM, "%s: out of memory", origin);
    json_object *root = json_tokener_parse_ex(tok, json_text, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!root || jerr != json_tokener_success) {
        int line, col;
        offset_to_line(json_text, end, &line, &col);
        json_object_put(root);
        if (jerr == json_tokener_continue)
            return lr_fail(LR_ERR_PARSE, "%s: line %d: unexpected end of file (truncated JSON)",
                           origin, line);
        return lr_fail(LR_ERR_PARSE, "%s: line %d, column %d: invalid JSON (%s)", origin, line,
                       col, json_tokener_error_desc(jerr));
    }
    for (size_t i = end; i < len; i++) {
        if (json_text[i] != ' ' && json_text[i] != '\n' && json_text[i] != '\t' &&
            json_text[i] != '\r') {
            int line, col;
            offset_to_line(json_text, i, &line, &col);
            json_object_put(root);
            return lr_fail(LR_ERR_PARSE, "%s: line %d, column %d: text after the JSON object",
                           origin, line, col);
        }
    }
    net_t *net = calloc(1, sizeof *net);
    if (!net) {
        json_object_put(root);
        return lr_fail(LR_ERR_NOMEM, "%s: out of memory", origin);
    }
    snprintf(net->path, sizeof net->path, "%s", origin);
    lr_status s = parse_root(root, origin, net);
    json_object_put(root);
    if (s != LR_OK) {
        net_free(net);
        return s;
    }
    *out = net;
    return LR_OK;
}

lr_status net_load(const char *path, net_t **out)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return lr_fail(LR_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    enum { MAX_BYTES = 64 << 20 };
    char *buf = malloc(MAX_BYTES + 1);
    if (!buf) {
        fclose(f);
        return lr_fail(LR_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t n = fread(buf, 1, MAX_BYTES + 1, f);
    int err = ferror(f);
    fclose(f);
    lr_status s;
    if (err)
        s = lr_fail(LR_ERR_IO, "%s: read error", path);
    else if (n > MAX_BYTES)
        s = lr_fail(LR_ERR_PARSE, "%s: larger than 64 MiB, not a network file", path);
    else {
        buf[n] = '\0';
        s = net_parse(buf, n, path, out);
    }
    free(buf);
    return s;
}

/* ------------------------------------------------------------------ lookup */

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, R_OK) == 0;
}

static bool try_dir(const char *dir, const char *name, char *out, size_t cap)
{
    if (!dir || !*dir)
        return false;
    int n = snprintf(out, cap, "%s/%s.json", dir, name);
    return n > 0 && (size_t)n < cap && file_exists(out);
}

lr_status net_open(const char *name_or_path, net_t **out)
{
    *out = NULL;
    if (strchr(name_or_path, '/') || strstr(name_or_path, ".json") || file_exists(name_or_path)) {
        if (!file_exists(name_or_path))
            return lr_fail(LR_ERR_INPUT, "--net %s: no such file", name_or_path);
        return net_load(name_or_path, out);
    }
    if (strlen(name_or_path) >= NET_NAME_MAX)
        return lr_fail(LR_ERR_INPUT, "--net: name too long");
    char exe[512] = "", bindir[512] = "", path[1200];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k > 0) {
        exe[k] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(bindir, sizeof bindir, "%s", exe);
        }
    }
    char cand[4][600];
    snprintf(cand[0], sizeof cand[0], "%s/../share/lrcnn/networks", bindir);
    snprintf(cand[1], sizeof cand[1], "%s/../networks", bindir);
    snprintf(cand[2], sizeof cand[2], "%s/../../networks", bindir);
    snprintf(cand[3], sizeof cand[3], "%s/networks", LRCNN_SRCDIR);
    const char *dirs[] = {getenv("LRCNN_NETWORKS"), bindir[0] ? cand[0] : NULL,
                          bindir[0] ? cand[1] : NULL, bindir[0] ? cand[2] : NULL, cand[3],
                          "networks"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++)
        if (try_dir(dirs[i], name_or_path, path, sizeof path))
            return net_load(path, out);
    return lr_fail(LR_ERR_INPUT,
                   "--net %s: no such network (zoo: vgg11 vgg13 vgg16 vgg19 resnet18 resnet34 "
                   "resnet50 resnet101 alexnet tiny-vgg tiny-resnet tiny-mix; or a path to a .json file)",
                   name_or_path);
}

int net_find(const net_t *net, const char *name)
{
    for (int i = 0; i < net->n_nodes; i++)
        if (strcmp(net->nodes[i].name, name) == 0)
            return i;
    return -1;
}

void net_free(net_t *net)
{
    if (!net)
        return;
    free(net->nodes);
    free(net->cons_off);
    free(net->cons_node);
    free(net->cons_slot);
    free(net);
}

/* ------------------------------------------------------------------ shape inference */

static lr_status shape_error(const net_t *net, int i, const char *fmt, ...) LR_PRINTF(3, 4);

static lr_status shape_error(const net_t *net, int i, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return lr_fail(LR_ERR_INPUT, "%s: layers[%d] (%s): %s", net->path[0] ? net->path : net->name,
                   i - 1, net->nodes[i].name, what);
}

/* Output extent of a sliding window; <= 0 means the kernel does not fit. */
static int64_t window_out(int64_t in, int k, int s, int p, int d)
{
    int64_t span = (int64_t)d * (k - 1) + 1;
    int64_t room = in + 2 * (int64_t)p - span;
    if (room < 0)
        return 0;
    return room / s + 1;
}

static lr_status infer_window(const net_t *net, int i, net_node *n, const net_node *x)
{
    const net_params *p = &n->prm;
    int64_t oh = window_out(x->h, p->kh, p->sh, p->ph, p->dh);
    int64_t ow = window_out(x->w, p->kw, p->sw, p->pw, p->dw);
    if (oh <= 0)
        return shape_error(net, i, "kernel height %d does not fit the padded input height %d",
                           (p->kh - 1) * p->dh + 1, x->h + 2 * p->ph);
    if (ow <= 0)
        return shape_error(net, i, "kernel width %d does not fit the padded input width %d",
                           (p->kw - 1) * p->dw + 1, x->w + 2 * p->pw);
    n->h = (int)oh, n->w = (int)ow;
    return LR_OK;
}

static lr_status infer_conv(const net_t *net, int i, net_node *n, const net_node *x)
{
    const net_params *p = &n->prm;
    if (x->c % p->groups != 0 || p->out_channels % p->groups != 0)
        return shape_error(net, i, "groups %d must divide input channels %d and out_channels",
                           p->groups, x->c);
    LR_TRY(infer_window(net, i, n, x));
    n->c = p->out_channels;
    if (!lr_mul6(p->out_channels, x->c / p->groups, p->kh, p->kw, 1, 1, &n->params) ||
        !lr_add(n->params, p->bias ? p->out_channels : 0, &n->params) || n->params > ((int64_t)1 << 48))
        return shape_error(net, i, "parameter count overflows (out_channels %d x %d inputs x %dx%d kernel)",
                           p->out_channels, x->c / p->groups, p->kh, p->kw);
    return LR_OK;
}

static lr_status infer_node(const net_t *net, int i)
{
    net_node *n = &net->nodes[i];
    const net_node *x = &net->nodes[n->inputs[0]];
    const net_params *p = &n->prm;
    n->c = x->c, n->h = x->h, n->w = x->w, n->params = 0;
    switch (n->op) {
    case OP_CONV:
        return infer_conv(net, i, n, x);
    case OP_MAXPOOL:
    case OP_AVGPOOL:
        return infer_window(net, i, n, x);
    case OP_ADAPTIVE_AVGPOOL:
        /* an output larger than the input repeats input elements, as torchvision allows (VGG at
         * 64x64 pools 2x2 to 7x7): every bin [floor(i*H/o), ceil((i+1)*H/o)) holds one at least */
        n->h = p->out_h, n->w = p->out_w;
        return LR_OK;
    case OP_GLOBAL_AVGPOOL:
        n->h = n->w = 1;
        return LR_OK;
    case OP_BATCHNORM:
        n->params = 2 * (int64_t)x->c;
        return LR_OK;
    case OP_ADD:
    case OP_CONCAT: {
        int64_t c = x->c;
        for (int k = 1; k < n->n_inputs; k++) {
            const net_node *y = &net->nodes[n->inputs[k]];
            if (y->h != x->h || y->w != x->w)
                return shape_error(net, i, "inputs differ in height or width (%d vs %d rows)",
                                   x->h, y->h);
            if (n->op == OP_ADD && y->c != x->c)
                return shape_error(net, i, "channel mismatch at add: %d vs %d", x->c, y->c);
            c += y->c;
        }
        if (n->op == OP_CONCAT) {
            if (c > NET_DIM_MAX)
                return shape_error(net, i, "concat gives more than %d channels", NET_DIM_MAX);
            n->c = (int)c;
        }
        return LR_OK;
    }
    case OP_UPSAMPLE:
        if ((int64_t)x->h * p->scale > NET_DIM_MAX || (int64_t)x->w * p->scale > NET_DIM_MAX)
            return shape_error(net, i, "upsampled size exceeds %d rows", NET_DIM_MAX);
        n->h = x->h * p->scale, n->w = x->w * p->scale;
        return LR_OK;
    case OP_FLATTEN:
    case OP_FC: {
        int64_t features = (int64_t)x->c * x->h * x->w;
        if (features > INT_MAX)
            return shape_error(net, i, "input has more than %d features", INT_MAX);
        n->c = n->op == OP_FC ? p->out_features : (int)features;
        n->h = n->w = 1;
        if (n->op == OP_FC &&
            (!lr_mul(features, p->out_features, &n->params) ||
             !lr_add(n->params, p->bias ? p->out_features : 0, &n->params) || n->params > ((int64_t)1 << 48)))
            return shape_error(net, i, "parameter count overflows (%lld inputs x %d outputs)",
                               (long long)features, p->out_features);
        return LR_OK;
    }
    case OP_SOFTMAX_XENT:
        if (x->h != 1 || x->w != 1)
            return shape_error(net, i, "softmax_xent needs logits of shape (classes, 1, 1), got %d rows x %d columns",
                               x->h, x->w);
        if (x->c < 2)
            return shape_error(net, i, "softmax_xent needs at least 2 classes, got %d", x->c);
        n->c = 1, n->h = n->w = 1;
        return LR_OK;
    default:
        return LR_OK;
    }
}

/* CSR lists of consumers, in increasing consumer order. */
static lr_status build_consumers(net_t *net)
{
    int n = net->n_nodes, edges = 0;
    free(net->cons_off);
    free(net->cons_node);
    free(net->cons_slot);
    for (int i = 1; i < n; i++)
        edges += net->nodes[i].n_inputs;
    net->cons_off = calloc((size_t)n + 1, sizeof(int));
    net->cons_node = malloc(sizeof(int) * (size_t)(edges ? edges : 1));
    net->cons_slot = malloc(sizeof(int) * (size_t)(edges ? edges : 1));
    if (!net->cons_off || !net->cons_node || !net->cons_slot)
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++)
        net->cons_off[i + 1] = net->cons_off[i] + net->nodes[i].n_consumers;
    int *fill = calloc((size_t)n, sizeof(int));
    if (!fill)
        return lr_fail(LR_ERR_NOMEM, "out of memory");
    for (int c = 1; c < n; c++)
        for (int k = 0; k < net->nodes[c].n_inputs; k++) {
            int u = net->nodes[c].inputs[k];
            int at = net->cons_off[u] + fill[u]++;
            net->cons_node[at] = c;
            net->cons_slot[at] = k;
        }
    free(fill);
    return LR_OK;
}

lr_status net_infer(net_t *net)
{
    static uint64_t shapes, graphs;
    net->shape_id = __atomic_add_fetch(&shapes, 1, __ATOMIC_RELAXED);
    if (net->graph_id == 0)
        net->graph_id = __atomic_add_fetch(&graphs, 1, __ATOMIC_RELAXED);
    net->params = 0;
    for (int i = 0; i < net->n_nodes; i++)
        net->nodes[i].n_consumers = 0;
    for (int i = 1; i < net->n_nodes; i++) {
        net_node *n = &net->nodes[i];
        if (n->op == OP_SOFTMAX_XENT && i != net->n_nodes - 1)
            return lr_fail(LR_ERR_INPUT, "%s: layers[%d] (%s): softmax_xent must be the last layer",
                           net->path[0] ? net->path : net->name, i - 1, n->name);
        LR_TRY(infer_node(net, i));
        for (int k = 0; k < n->n_inputs; k++)
            net->nodes[n->inputs[k]].n_consumers++;
        if (!lr_add(net->params, n->params, &net->params))
            return lr_fail(LR_ERR_INPUT, "%s: total parameter count overflows", net->path[0] ? net->path : net->name);
    }
    LR_TRY(build_consumers(net));
    const net_node *last = &net->nodes[net->n_nodes - 1];
    if (last->op != OP_SOFTMAX_XENT)
        return lr_fail(LR_ERR_INPUT, "%s: layers[%d] (%s): the last layer must be softmax_xent (the loss)",
                       net->path[0] ? net->path : net->name, net->n_nodes - 2, last->name);
    for (int i = 1; i < net->n_nodes - 1; i++)
        if (net->nodes[i].n_consumers == 0)
            return lr_fail(LR_ERR_INPUT, "%s: layers[%d] (%s): output is never used (every layer must lead to the loss)",
                           net->path[0] ? net->path : net->name, i - 1, net->nodes[i].name);
    return LR_OK;
}

lr_status net_reshape(net_t *net, int height, int width)
{
    if (height < 1 || width < 1 || height > NET_DIM_MAX || width > NET_DIM_MAX)
        return lr_fail(LR_ERR_USAGE, "--input: height and width must be in [1, %d]", NET_DIM_MAX);
    net->nodes[0].h = height;
    net->nodes[0].w = width;
    return net_infer(net);
}
