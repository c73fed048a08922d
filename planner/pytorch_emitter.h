/* pytorch_emitter.h - what the PyTorch profile's files share: the op rules, the emitter's state
 * and the functions one step of the emitter calls in another file. Not a public interface:
 * pytorch.h is.
 *
 * The files, in the order a training step runs through them:
 *   pytorch_rules.c       what each op allocates, saves and hands back (derivatives.yaml), and
 *                         when ReLU and `+=` write in place
 *   pytorch_tensors.c     schedule tensors with PyTorch's reference counts, RUN steps, the
 *                         cuBLAS and cuDNN workspaces
 *   pytorch_forward.c     the forward pass and the loss: outputs, saved tensors, Python variables,
 *                         and the input each checkpointed segment keeps
 *   pytorch_checkpoint.c  torch.utils.checkpoint: the units, checkpoint_sequential's segments
 *                         and the recompute
 *   pytorch_backward.c    the autograd engine: node by node, gradient buffers, parameter grads
 *   pytorch_optim.c       optimizer.step() and zero_grad(set_to_none=True)
 *   pytorch.c             the driver: the model and the batch on the GPU, the warm-up and the
 *                         measured step, and what torch.cuda reports for it
 *
 * Lifetimes are decided by counting references (refs[t]), as PyTorch does with its storages:
 *   - a Python variable holds a layer's output until the next layer has consumed it (nn.Sequential
 *     rebinds `input`; torchvision's forwards rebind `x`/`out`): pending[t] counts the forward
 *     readers still to come, and the variable's reference goes with the last one;
 *   - each tensor saved for backward holds a reference until its node's backward ran
 *     (Engine::evaluate_function calls release_variables() right after the node);
 *   - a gradient holds one while it waits in the next node's input buffer; the node's own
 *     grad_output goes when call_function returns, before release_variables;
 *   - a parameter's .grad holds one from the backward that produced it (AccumulateGrad steals
 *     the fresh tensor when .grad is None) to zero_grad(set_to_none=True).
 *
 * Legend: l, u nodes (u an input of l), t a schedule tensor, k a checkpoint segment, -1 none.
 */
#ifndef LR_PYTORCH_EMITTER_H
#define LR_PYTORCH_EMITTER_H

#include "pytorch.h"

/* ------------------------------------------------------------------ op rules (pytorch_rules.c) */

typedef enum {
    GRAD_NEW,    /* backward allocates the input gradient */
    GRAD_SHARED, /* add: every input gets grad_output itself */
    GRAD_VIEW,   /* concat: every input gets a slice (a non-dense view) of grad_output */
    GRAD_PASS,   /* flatten: the gradient's storage passes through */
} pt_grad_mode;

typedef struct {
    bool saves_input;  /* inputs[0] is saved for backward */
    bool saves_output; /* the output is saved (relu's result) */
    int extra_bytes;   /* bytes per output element of a second output kept for backward:
                          maxpool's int64 indices (8), dropout's bool mask (1) */
    bool bn_stats;     /* save_mean and save_var, C floats each */
    bool in_place;     /* writes into inputs[0] when pt_writes_in_place allows it */
    bool cudnn;        /* a cuDNN convolution: workspace around each call */
    bool cublas;       /* a GEMM: first use on a thread creates its cuBLAS workspace */
    bool no_kernel;    /* a view: no RUN step */
    pt_grad_mode grad;
} pt_rule;

/* The rule of node n, with the cases that depend on its parameters (a 1x1 adaptive pool is a
 * mean; dropout with p = 0 returns its input). */
pt_rule pt_rule_of(const net_node *n);

/* Saves something of its own making, packed after its kernel ran (checkpoint's early stop). */
bool pt_saves_output_side(const net_node *n);

/* Saves anything for backward. */
bool pt_saves_any(const net_node *n);

/* inputs[k] of n is not an earlier input of n again. */
bool pt_distinct_input(const net_node *n, int k);

/* Distinct readers of node u among nodes <= limit. */
int pt_count_consumers(const net_t *net, int u, int limit);

/* Node l writes into inputs[0] (ReLU(inplace=True) unless relu_inplace is false,
 * `out += identity`). */
bool pt_writes_in_place(const net_t *net, int l, bool relu_inplace);

/* ------------------------------------------------------------------ emitter state */

enum { PT_MAX_SAVED = 3 };

typedef struct {
    int node;
    int64_t elems;
    int t;        /* the parameter */
    int grad;     /* its .grad; -1 while None */
    int state[2]; /* momentum buffer, or Adam's exp_avg and exp_avg_sq; -1 before step() */
    int tmp;      /* a foreach temporary of step(); -1 when none */
} pt_param;

typedef struct {
    const net_t *net;
    const plan_config *cfg;
    const pytorch_profile *p;
    sched_t *s;
    int64_t batch;
    int eb;
    /* per schedule tensor */
    int cap;
    int *refs, *saved, *pending, *born;
    bool *persistent, *pyref;
    /* per node */
    int *val;   /* storage of the output; in-place ops and flatten share their input's */
    int *sv, *n_sv; /* saved tensors, PT_MAX_SAVED per node */
    int *gbuf;  /* gradient waiting in the node's input buffer, -1 when none */
    bool *gview, *in_place, *needs_grad;
    int *param_of;  /* first index into par[] of the node's parameters, -1 when none */
    int *seg_of;    /* checkpointed segment of the node, -1 outside one */
    /* checkpoint segments: nodes (seg_in, seg_last]; the savers bound recomputation */
    int *seg_in, *seg_last, *first_saver, *last_saver, *ckpt_kept;
    /* parameters in module order, then persistent buffers */
    int n_par;
    pt_param *par;
    int n_keep, *keep; /* persistent tensors freed after the step, in allocation order */
    int labels, cublas[2], logits, loss, lsm, total_weight;
    bool saving, first_step, in_step;
    int stage, generation;
    int64_t saved_at_forward_end;
} pt;

/* ------------------------------------------------------------------ tensors (pytorch_tensors.c) */

/* calloc that aborts on failure (never returns NULL); pt_ints fills n ints with value. */
void *pt_calloc(size_t n, size_t size);
int *pt_ints(int n, int value);

/* A new tensor, allocated now; the caller holds its one reference. */
int pt_new(pt *e, sched_class cls, sched_kind kind, int node, int64_t bytes, int pass);

/* A tensor that lives until the driver frees the persistent ones after the step (parameters,
 * buffers, x, y, optimizer state, cuBLAS workspaces); references to it are not counted. */
int pt_new_persistent(pt *e, sched_class cls, sched_kind kind, int node, int64_t bytes,
                      int pass);

/* One more / one fewer reference to t (-1 and persistent tensors: no-op); the last one frees. */
void pt_ref(pt *e, int t);
void pt_unref(pt *e, int t, int pass, int node);

/* Bytes and elements of node's output for the whole batch. */
int64_t pt_value_bytes(const pt *e, int node);
int64_t pt_elems(const pt *e, int node);

/* A RUN step of node over all its rows, with its parameter filled in. */
sched_run *pt_run(pt *e, int pass, int node, int64_t flops);

/* The cuBLAS workspace of a thread (0 forward, 1 backward), made at its first GEMM. */
void pt_cublas(pt *e, int thread, int node, int pass);

/* A cuDNN workspace for one convolution call (the caller frees it), -1 when the profile has
 * none. */
int pt_cudnn_workspace(pt *e, int node, int pass);

/* ------------------------------------------------------------------ forward (pytorch_forward.c) */

/* Node l keeps t for backward (when saving, l needs a gradient and t is not persistent). */
void pt_save(pt *e, int l, int t);

/* Node l's backward ran: its saved tensors go. */
void pt_release_saved(pt *e, int l, int pass);

/* Forward (or recompute) of node l; readers counted up to node `limit`. */
void pt_forward_node(pt *e, int l, int pass, int limit);

/* Checkpointed segment k lets go of the input it kept. */
void pt_segment_release(pt *e, int k, int pass);

/* model(x) and the loss; records the saved bytes at the end. */
void pt_forward(pt *e);

/* ------------------------------------------------------------ checkpoint (pytorch_checkpoint.c) */

/* Fills the segment arrays for p->segments (checkpoint_sequential's split). Errors:
 * LR_ERR_INPUT when there are fewer checkpoint units than segments. */
lr_status pt_segments(pt *e);

/* Segment k's rerun, from the unpack hook of its last saving node. */
void pt_recompute(pt *e, int k);

/* ------------------------------------------------------------------ backward, optimizer */

/* loss.backward() (pytorch_backward.c). */
void pt_backward(pt *e);

/* opt.step(); opt.zero_grad(set_to_none=True); then `out` and `loss` go (pytorch_optim.c). */
void pt_optimizer(pt *e);

#endif
