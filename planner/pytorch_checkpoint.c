/* pytorch_checkpoint.c - torch.utils.checkpoint as the profile models it: the checkpoint units
 * (the modules handed to checkpoint_sequential), the split into segments, and the rerun of a
 * segment when backward first unpacks one of its saved tensors (use_reentrant=False).
 *
 * Deliberately not here: the segment input's lifetime during forward (pytorch_forward.c).
 */
#include "pytorch_emitter.h"

/* The furthest reader of node u. */
static int pt_last_reader(const net_t *net, int u)
{
    int q = net->cons_off[u + 1] - 1;
    return q >= net->cons_off[u] ? net->cons_node[q] : u;
}

int pytorch_checkpoint_units(const net_t *net, int *unit_end, int cap)
{
    int units = 0, reach = pt_last_reader(net, 0); /* the furthest reader of any node before l */
    for (int l = 1; l < net->n_nodes - 1; l++) {
        bool cut = reach <= l;
        int r = pt_last_reader(net, l);
        reach = r > reach ? r : reach;
        bool relu_joins = net->nodes[l + 1].op == OP_RELU && net->nodes[l + 1].inputs[0] == l &&
                          pt_writes_in_place(net, l + 1);
        if (cut && !relu_joins) {
            if (units < cap)
                unit_end[units] = l;
            units++;
        }
    }
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
    int units = pytorch_checkpoint_units(net, unit_end, net->n_nodes);
    if (e->p->segments > units) {
        free(unit_end);
        return lr_fail(LR_ERR_INPUT,
                       "--segments %d: %s has only %d checkpoint units (modules of "
                       "checkpoint_sequential)", e->p->segments, net->name, units);
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
