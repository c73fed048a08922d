/* pytorch_checkpoint.c - torch.utils.checkpoint as the profile models it: the checkpoint units
 * (the modules handed to checkpoint_sequential), the split into segments, and the rerun of a
 * segment when backward first unpacks one of its saved tensors (use_reentrant=False).
 *
 * The idiom modelled (README, "PyTorch"): the body (everything before the head) is an
 * nn.Sequential of units, the head runs after checkpoint_sequential returns, and every ReLU has
 * inplace=False (pytorch.c). Units are found from the graph alone, at its cuts (only one tensor
 * crosses): `top` takes torchvision's top-level modules - each layer of VGG's `features`,
 * ResNet's conv1, bn1, relu, maxpool and layer1..layer4 - and `blocks` each residual block and
 * each layer with the relu after it.
 *
 * Deliberately not here: the segment input's lifetime during forward (pytorch_forward.c).
 */
#include "pytorch_emitter.h"

#include <string.h>

static const char *const units_names[PT_UNITS_COUNT] = {"top", "blocks"};

const char *pytorch_units_name(pytorch_units u)
{
    return (unsigned)u < PT_UNITS_COUNT ? units_names[u] : "?";
}

pytorch_units pytorch_units_from_name(const char *name)
{
    for (int u = 0; name && u < PT_UNITS_COUNT; u++)
        if (strcmp(name, units_names[u]) == 0)
            return (pytorch_units)u;
    return PT_UNITS_COUNT;
}

/* The furthest reader of node u. */
static int pt_last_reader(const net_t *net, int u)
{
    int q = net->cons_off[u + 1] - 1;
    return q >= net->cons_off[u] ? net->cons_node[q] : u;
}

/* The last node of the body: everything before the head, which starts at the first global or
 * adaptive pooling, flatten or fc (torchvision's avgpool and classifier/fc, which the idiom runs
 * after checkpoint_sequential returns). */
static int pt_body_last(const net_t *net)
{
    for (int l = 1; l < net->n_nodes; l++) {
        net_op op = net->nodes[l].op;
        if (op == OP_ADAPTIVE_AVGPOOL || op == OP_GLOBAL_AVGPOOL || op == OP_FLATTEN ||
            op == OP_FC || op == OP_SOFTMAX_XENT)
            return l - 1;
    }
    return net->n_nodes - 2;
}

/* The body's cuts, in order: nodes l after which only l's output crosses to later nodes. */
static int pt_cuts(const net_t *net, int *cut)
{
    int n = 0, last = pt_body_last(net);
    int reach = pt_last_reader(net, 0); /* the furthest reader of any node before l */
    for (int l = 1; l <= last; l++) {
        if (reach <= l)
            cut[n++] = l;
        int r = pt_last_reader(net, l);
        reach = r > reach ? r : reach;
    }
    return n;
}

/* A unit (a, b] of more than one node: a block with a shortcut. Its shortcut is the identity
 * when a node with several inputs (the add) reads the block's input a directly; otherwise the
 * shortcut has a layer of its own (torchvision's downsample). */
static bool pt_identity_block(const net_t *net, int a, int b)
{
    for (int l = a + 1; l <= b; l++)
        for (int k = 0; net->nodes[l].n_inputs > 1 && k < net->nodes[l].n_inputs; k++)
            if (net->nodes[l].inputs[k] == a)
                return true;
    return false;
}

/* The relu after cut i joins its unit: it is the next cut and the only reader of cut i. */
static bool relu_joins(const net_t *net, const int *cut, int n, int i)
{
    int l = cut[i];
    return i + 1 < n && cut[i + 1] == l + 1 && net->nodes[l + 1].op == OP_RELU &&
           net->nodes[l + 1].inputs[0] == l && pt_count_consumers(net, l, net->n_nodes - 1) == 1;
}

/* blocks: every cut ends a unit, the relu after it joining it. */
static int pt_units_blocks(const net_t *net, const int *cut, int n, int *end)
{
    int u = 0;
    for (int i = 0; i < n; i++)
        if (!relu_joins(net, cut, n, i))
            end[u++] = cut[i];
    return u;
}

/* top: every cut ends a unit, but a block (a unit of more than one node) takes the relu after
 * it, and runs of blocks become stages: a stage goes on while the next block has an identity
 * shortcut, and a block with a layer on its shortcut starts a new one (torchvision's
 * layer1..layer4 each open with such a block, but ResNet-18/34's layer1). */
static int pt_units_top(const net_t *net, const int *cut, int n, int *end)
{
    int u = 0, a = 0;
    bool in_stage = false;
    for (int i = 0; i < n; i++) {
        int b = cut[i];
        bool block = b - a > 1;
        if (block && relu_joins(net, cut, n, i))
            b = cut[++i];
        if (block && in_stage && pt_identity_block(net, a, b))
            end[u - 1] = b;
        else
            end[u++] = b;
        in_stage = block;
        a = b;
    }
    return u;
}

int pytorch_checkpoint_units(const net_t *net, pytorch_units form, int *unit_end, int cap)
{
    int *cut = pt_ints(net->n_nodes, -1), *end = pt_ints(net->n_nodes, -1);
    int n = pt_cuts(net, cut);
    int units = form == PT_UNITS_BLOCKS ? pt_units_blocks(net, cut, n, end)
                                        : pt_units_top(net, cut, n, end);
    for (int i = 0; i < units && i < cap; i++)
        unit_end[i] = end[i];
    free(cut);
    free(end);
    return units;
}

/* checkpoint_sequential: segment_size = U // segments; segments 0 .. segments-2 are
 * checkpointed, each segment_size units; the last one (the rest) runs normally. */
lr_status pt_segments(pt *e)
{
    const net_t *net = e->net;
    if (e->p->segments <= 1)
        return LR_OK;
    int *unit_end = pt_ints(net->n_nodes, -1);
    int units = pytorch_checkpoint_units(net, e->p->units, unit_end, net->n_nodes);
    if (e->p->segments > units) {
        free(unit_end);
        return lr_fail(LR_ERR_INPUT,
                       "--segments %d: %s has only %d checkpoint units (--checkpoint-units %s: "
                       "the modules handed to checkpoint_sequential)",
                       e->p->segments, net->name, units, pytorch_units_name(e->p->units));
    }
    int size = units / e->p->segments;
    for (int k = 0; k < e->p->segments - 1; k++) {
        e->seg_in[k] = k == 0 ? 0 : unit_end[k * size - 1];
        e->seg_last[k] = unit_end[(k + 1) * size - 1];
        for (int l = e->seg_in[k] + 1; l <= e->seg_last[k]; l++) {
            e->seg_of[l] = k;
            if (e->needs_grad[l] && pt_saves_any(&net->nodes[l])) {
                e->first_saver[k] = e->first_saver[k] < 0 ? l : e->first_saver[k];
                e->last_saver[k] = l;
            }
        }
    }
    free(unit_end);
    return LR_OK;
}

/* The unpack hook of the segment's last saving node reruns the segment under recording hooks.
 * Early stop (torch >= 2.1): it stops at the pack of the last saved tensor, so a last node that
 * saves only its inputs (packed before its kernel) does not run, while one that saves what it
 * made (relu, BN, maxpool, dropout) runs; whatever the rerun made and did not save is dropped. */
void pt_recompute(pt *e, int k)
{
    int last = e->last_saver[k];
    e->generation++;
    e->stage = k;
    for (int l = e->seg_in[k] + 1; l <= last; l++) {
        const net_node *n = &e->net->nodes[l];
        if (l == last && !pt_saves_output_side(n)) {
            pt_save(e, l, e->val[n->inputs[0]]); /* packed before the kernel: stop here */
            break;
        }
        pt_forward_node(e, l, PASS_RECOMPUTE, last);
    }
    for (int t = 0; t < e->s->n_tensors; t++)
        if (e->born[t] == e->generation && e->pyref[t]) {
            e->pyref[t] = false;
            e->pending[t] = 0;
            pt_unref(e, t, PASS_RECOMPUTE, e->s->tensors[t].node);
        }
}
