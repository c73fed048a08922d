/* pytorch_tensors.c - the emitter's tensors: each one allocation of the caching allocator, alive
 * while PyTorch holds a reference to its storage (the counting rules: pytorch_emitter.h); the
 * RUN steps that read them; the cuBLAS and cuDNN workspaces.
 *
 * Deliberately not here: which tensors an op makes (pytorch_rules.c) and when (the passes).
 */
#include "pytorch_emitter.h"

#include <string.h>

void *pt_calloc(size_t n, size_t size)
{
    void *q = calloc(n ? n : 1, size);
    LR_ASSERT(q != NULL);
    return q;
}

int *pt_ints(int n, int value)
{
    int *a = pt_calloc((size_t)n, sizeof(int));
    for (int i = 0; i < n; i++)
        a[i] = value;
    return a;
}

/* a grown from old to cap elements of elem bytes, the new ones zero. */
static void *pt_grown(void *a, size_t elem, int old, int cap)
{
    void *q = realloc(a, elem * (size_t)cap);
    LR_ASSERT(q != NULL);
    memset((char *)q + elem * (size_t)old, 0, elem * (size_t)(cap - old));
    return q;
}

/* A new tensor, allocated now; the caller holds its one reference. */
int pt_new(pt *e, sched_class cls, sched_kind kind, int node, int64_t bytes, int pass)
{
    bool rows = kind == TK_VALUE || kind == TK_GRAD;
    int hi = rows ? e->net->nodes[node].h - 1 : -1;
    int t = sched_add_tensor(e->s, cls, kind, node, -1, rows ? 0 : -1, hi, bytes);
    if (t >= e->cap) {
        int cap = e->cap ? 2 * e->cap : 1024;
        e->refs = pt_grown(e->refs, sizeof(int), e->cap, cap);
        e->saved = pt_grown(e->saved, sizeof(int), e->cap, cap);
        e->pending = pt_grown(e->pending, sizeof(int), e->cap, cap);
        e->born = pt_grown(e->born, sizeof(int), e->cap, cap);
        e->persistent = pt_grown(e->persistent, sizeof(bool), e->cap, cap);
        e->pyref = pt_grown(e->pyref, sizeof(bool), e->cap, cap);
        e->cap = cap;
    }
    e->refs[t] = 1;
    e->born[t] = e->generation;
    sched_alloc(e->s, t, pass, node, -1, e->stage);
    return t;
}

/* A tensor that lives until pt_free_persistent (parameters, buffers, x, y, optimizer state,
 * cuBLAS workspaces). */
int pt_new_persistent(pt *e, sched_class cls, sched_kind kind, int node, int64_t bytes,
                      int pass)
{
    int t = pt_new(e, cls, kind, node, bytes, pass);
    e->persistent[t] = true;
    e->keep[e->n_keep++] = t;
    return t;
}

void pt_ref(pt *e, int t)
{
    if (t >= 0 && !e->persistent[t])
        e->refs[t]++;
}

void pt_unref(pt *e, int t, int pass, int node)
{
    if (t < 0 || e->persistent[t])
        return;
    LR_ASSERT(e->refs[t] > 0);
    if (--e->refs[t] == 0)
        sched_release(e->s, t, pass, node, -1, e->stage);
}

int64_t pt_value_bytes(const pt *e, int node)
{
    return cost_node_bytes(e->net, node, (int)e->batch, e->eb);
}

int64_t pt_elems(const pt *e, int node)
{
    const net_node *n = &e->net->nodes[node];
    return e->batch * n->c * n->h * n->w;
}

sched_run *pt_run(pt *e, int pass, int node, int64_t flops)
{
    const net_node *n = &e->net->nodes[node];
    sched_run *r = sched_run_step(e->s, pass, node, -1, e->stage, 0, n->h - 1, 0, flops);
    r->n_in = n->n_inputs;
    if (e->param_of[node] >= 0)
        r->param = e->par[e->param_of[node]].t;
    return r;
}

/* ------------------------------------------------------------------ workspaces */

/* The first GEMM on a thread gives its cuBLAS handle a workspace for good (CublasHandlePool.cpp,
 * setWorkspaceForHandle): thread 0 runs forward, thread 1 (the autograd device thread) backward. */
void pt_cublas(pt *e, int thread, int node, int pass)
{
    if (e->cublas[thread] >= 0 || e->p->cublas_workspace_bytes <= 0)
        return;
    e->cublas[thread] = pt_new_persistent(e, TC_WORKSPACE, TK_WORKSPACE, node,
                                          e->p->cublas_workspace_bytes, pass);
}

/* Workspace cuDNN asks for around one convolution call (an estimate: pytorch.h). */
int pt_cudnn_workspace(pt *e, int node, int pass)
{
    if (e->p->cudnn_workspace_bytes <= 0)
        return -1;
    return pt_new(e, TC_WORKSPACE, TK_WORKSPACE, node, e->p->cudnn_workspace_bytes, pass);
}
