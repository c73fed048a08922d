/* pytorch_rules.c - what each op allocates, saves for backward and hands back as gradients in
 * PyTorch 2.x on CUDA (tools/autograd/derivatives.yaml), as a table of rules the forward and
 * backward passes read (pytorch_emitter.h), and when ReLU and `out += identity` write in place.
 *
 * What each op allocates and saves (sizes in pt_rules below):
 *   conv     output; saves input (weight is a parameter). cudnn_convolution_backward allocates
 *            grad_input (unless the input is the batch), grad_weight, then grad_bias.
 *   relu     ReLU(inplace=True) writes into its input (no allocation) and saves the result: the
 *            same storage. threshold_backward allocates a new gradient.
 *   maxpool  max_pool2d_with_indices: output and int64 indices (8 B per output element); saves
 *            input and indices.
 *   avgpool  output; saves input. adaptive_avgpool: _adaptive_avg_pool2d saves input, except
 *            for a 1x1 output, which torch computes as mean() and saves only sizes (2.x);
 *            global_avgpool is AdaptiveAvgPool2d(1), a mean. A new tensor even when the output
 *            size equals the input's.
 *   batchnorm cudnn_batch_norm: output, save_mean, save_var (C floats each), an empty reserve
 *            (0 bytes for NCHW spatial BN, so no allocation); saves input, the two stats and
 *            the reserve; backward allocates grad_input, grad_weight, grad_bias. --bn frozen is
 *            model.eval() on the BN modules: cudnn_batch_norm(training=False) returns save_mean
 *            and save_var empty (no allocation), and native_batch_norm_backward allocates the same.
 *   add      `out += identity` (torchvision's blocks): in place into its first input, saves
 *            nothing; AddBackward0 hands the same gradient tensor to every input.
 *   concat   output; saves sizes; backward hands out slices (views) of grad_output.
 *   upsample output; saves sizes; backward allocates.
 *   flatten  a view: no allocation, ViewBackward passes the gradient's storage on.
 *   fc       addmm: output; saves input (weight.t() is a view of the parameter); backward
 *            allocates grad_input, grad_weight, then grad_bias (sum_to in validate_outputs).
 *   dropout  native_dropout (the CUDA path): output and a bool mask (1 B per element); saves
 *            the mask.
 *   loss     cross_entropy = log_softmax (saves its output, N x K) + nll_loss (saves target,
 *            total_weight: a 0-dim float); the loss is a 0-dim float held by `loss`
 *            (pytorch_forward.c, pytorch_backward.c write it out).
 * An in-place relu or add applies only when its first input has no other reader and its producer
 * does not save its own output (torchvision's case); otherwise the op allocates a new output.
 *
 * Deliberately not here: when the rules apply (the passes), tensors and their lifetimes.
 */
#include "pytorch_emitter.h"

static const pt_rule pt_rules[OP_COUNT] = {
    /* ConvolutionBackward0 saves input and weight (a parameter) */
    [OP_CONV] = {.saves_input = true, .cudnn = true},
    /* ReLU(inplace=True): ReluBackward0 keeps the result for threshold_backward(grad, result) */
    [OP_RELU] = {.saves_output = true, .in_place = true},
    /* max_pool2d_with_indices saves self and its int64 indices */
    [OP_MAXPOOL] = {.saves_input = true, .extra_bytes = 8},
    /* avg_pool2d_backward(grad, self) */
    [OP_AVGPOOL] = {.saves_input = true},
    /* _adaptive_avg_pool2d_backward(grad, self); a 1x1 output is a mean: see pt_rule_of */
    [OP_ADAPTIVE_AVGPOOL] = {.saves_input = true},
    /* AdaptiveAvgPool2d(1) = mean(): mean_backward needs only sizes (torch 2.x) */
    [OP_GLOBAL_AVGPOOL] = {0},
    /* cudnn_batch_norm: input, weight, running stats, save_mean, save_var, an empty reserve */
    [OP_BATCHNORM] = {.saves_input = true, .bn_stats = true},
    /* `out += identity`: AddBackward0 keeps only alpha and returns grad for every input */
    [OP_ADD] = {.in_place = true, .grad = GRAD_SHARED},
    /* CatBackward0 keeps sizes and slices grad */
    [OP_CONCAT] = {.grad = GRAD_VIEW},
    /* upsample_nearest2d keeps sizes */
    [OP_UPSAMPLE] = {0},
    /* torch.flatten: a view */
    [OP_FLATTEN] = {.no_kernel = true, .grad = GRAD_PASS},
    /* addmm(bias, input, weight.t()) saves input; weight.t() is a view of the parameter */
    [OP_FC] = {.saves_input = true, .cublas = true},
    /* native_dropout returns (output, bool mask) and saves the mask */
    [OP_DROPOUT] = {.extra_bytes = 1},
};

/* The rule of one node, with the two cases that depend on its parameters. */
pt_rule pt_rule_of(const net_node *n)
{
    pt_rule r = pt_rules[n->op];
    if (n->op == OP_ADAPTIVE_AVGPOOL && n->prm.out_h == 1 && n->prm.out_w == 1)
        r.saves_input = false; /* adaptive_avg_pool2d(x, 1) is x.mean((-1, -2), keepdim=True) */
    if (n->op == OP_DROPOUT && n->prm.p == 0) /* F.dropout(x, 0) returns x itself */
        r = pt_rules[OP_FLATTEN];
    return r;
}

/* Saves something of its own making, packed after its kernel ran (checkpoint's early stop). */
bool pt_saves_output_side(const net_node *n)
{
    pt_rule r = pt_rule_of(n);
    return r.saves_output || r.extra_bytes > 0 || r.bn_stats;
}

bool pt_saves_any(const net_node *n)
{
    return pt_rule_of(n).saves_input || pt_saves_output_side(n);
}

bool pt_distinct_input(const net_node *n, int k)
{
    for (int q = 0; q < k; q++)
        if (n->inputs[q] == n->inputs[k])
            return false;
    return true;
}

/* Distinct readers of node u among nodes <= limit (consumer lists are in increasing order). */
int pt_count_consumers(const net_t *net, int u, int limit)
{
    int count = 0, last = -1;
    for (int q = net->cons_off[u]; q < net->cons_off[u + 1]; q++) {
        int c = net->cons_node[q];
        if (c != last && c <= limit)
            count++;
        last = c;
    }
    return count;
}

/* ReLU(inplace=True) and `out += identity` write into inputs[0] only when nothing else reads it
 * and its producer does not keep it as its own saved output or view (a relu's result, a
 * flatten): torchvision's layers always meet this; autograd would reject the write otherwise.
 * relu_inplace false: every ReLU has inplace=False (the checkpoint idiom); `+=` stays. */
bool pt_writes_in_place(const net_t *net, int l, bool relu_inplace)
{
    const net_node *n = &net->nodes[l];
    int u = n->inputs[0];
    if (!pt_rule_of(n).in_place || u == 0 || pt_count_consumers(net, u, net->n_nodes - 1) != 1)
        return false;
    if (n->op == OP_RELU && !relu_inplace)
        return false;
    for (int k = 1; k < n->n_inputs; k++)
        if (n->inputs[k] == u)
            return false;
    net_op producer = net->nodes[u].op;
    return producer != OP_RELU && producer != OP_FLATTEN;
}
