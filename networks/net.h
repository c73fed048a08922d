/* net.h - the network model: a DAG of layers in topological order, loaded from JSON,
 * with inferred output shapes and parameter counts.
 *
 * Legend: N batch, C channels, H/W height/width.
 * Deliberately not here: row dependencies (rowdep.h), memory and FLOP costs (cost.h),
 * anything batch-dependent. A net_t is immutable after net_load()/net_reshape() returns.
 */
#ifndef LR_NET_H
#define LR_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NET_NAME_MAX 64
#define NET_MAX_INPUTS 8

typedef enum {
    OP_INPUT, /* node 0 of every net: the image batch, no JSON entry */
    OP_CONV,
    OP_RELU,
    OP_MAXPOOL,
    OP_AVGPOOL,
    OP_ADAPTIVE_AVGPOOL, /* torchvision's AdaptiveAvgPool2d(out_h, out_w) */
    OP_GLOBAL_AVGPOOL,
    OP_BATCHNORM,
    OP_ADD,
    OP_CONCAT,
    OP_UPSAMPLE, /* nearest neighbour, integer factor */
    OP_FLATTEN,
    OP_FC,
    OP_DROPOUT,
    OP_SOFTMAX_XENT, /* mean cross-entropy over the batch; the last node */
    OP_COUNT
} net_op;

typedef struct {
    int kh, kw; /* kernel (conv, pooling) */
    int sh, sw; /* stride */
    int ph, pw; /* zero padding, both sides */
    int dh, dw; /* dilation (conv only; 1 elsewhere) */
    int groups;
    bool bias;
    int out_channels; /* conv */
    int out_features; /* fc */
    int out_h, out_w; /* adaptive_avgpool */
    int scale;        /* upsample */
    double p;         /* dropout probability */
    double eps;       /* batchnorm epsilon (default 1e-5) */
    double momentum;  /* batchnorm running-stat momentum (default 0.1) */
} net_params;

typedef struct {
    char name[NET_NAME_MAX];
    net_op op;
    net_params prm;
    int n_inputs;
    int inputs[NET_MAX_INPUTS]; /* node indices, all smaller than this node's */
    /* inferred by net_infer(): */
    int c, h, w;        /* output shape per image */
    int64_t params;     /* learnable parameters (weights + bias, gamma + beta) */
    int n_consumers;    /* nodes that read this node's output */
} net_node;

typedef struct {
    char name[NET_NAME_MAX];
    char path[512];      /* file it was loaded from ("" when built in memory) */
    int n_nodes;         /* node 0 is OP_INPUT */
    net_node *nodes;
    int64_t params;      /* total */
    /* consumers of node i: cons_node/cons_slot[cons_off[i] .. cons_off[i+1]) are the consumer
     * and the input slot k it reads node i through (filled by net_infer) */
    int *cons_off, *cons_node, *cons_slot;
    uint64_t shape_id; /* net_infer's, a new one each time it runs (in this process): what a
                          cache keyed by the net's shapes compares (closed_kernel_ns) */
    uint64_t graph_id; /* its layers and edges: a new one when net_infer first sees the net, kept
                          by net_reshape and a whole copy (auto_subnet from 0); what a cache keyed
                          by the graph alone compares (plan_scripts_kept). 0 before net_infer */
} net_t;

/* Loads a network from a JSON file. On error returns a status whose message names
 * the file and the JSON path (`nets/x.json: layers[3].stride: expected ...`), and *out is NULL.
 * The caller owns *out and frees it with net_free(). */
lr_status net_load(const char *path, net_t **out);

/* Same, from a NUL-terminated JSON text; `origin` names it in error messages. */
lr_status net_parse(const char *json_text, size_t len, const char *origin, net_t **out);

/* Resolves --net: an existing file path is loaded as is; otherwise NAME is looked up as
 * NAME.json in $LRCNN_NETWORKS, the directory next to the running binary's ../networks,
 * the compiled-in install directory, and ./networks. */
lr_status net_open(const char *name_or_path, net_t **out);

/* Changes the input height/width and re-runs shape inference (for --input HxW).
 * Returns LR_ERR_INPUT naming the first layer whose shape becomes impossible. */
lr_status net_reshape(net_t *net, int height, int width);

/* Shape inference and parameter counting over the whole DAG; called by the loaders. */
lr_status net_infer(net_t *net);

void net_free(net_t *net);

/* Index of the node called `name`, or -1. */
int net_find(const net_t *net, const char *name);

const char *net_op_name(net_op op);
/* Returns the op named `name` or OP_COUNT if there is none. */
net_op net_op_from_name(const char *name);

/* True for ops that map rows of their input(s) to rows of their output (they can live in a
 * row region); false for ops that need every row (flatten, fc, global/adaptive pooling, loss). */
bool net_op_is_rowwise(net_op op);

/* True for the pooling to a fixed size (adaptive_avgpool, global_avgpool): it needs every row
 * of its input, but it is a sum over windows of rows, so a row region may run through it as its
 * last layer, each partition adding its own input rows into the small output (rowdep.h). */
bool net_op_is_row_reduction(net_op op);

/* True when the op has learnable parameters. */
bool net_op_has_params(net_op op);

#ifdef __cplusplus
}
#endif
#endif
