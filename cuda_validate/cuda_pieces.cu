/* cuda_pieces.cu - host geometry of convolution steps: how a step's output rows split into cuDNN
 * calls on views or staged edges (cuda_conv_pieces), and the staging bytes that takes. No device
 * code: the tests check it on the CPU.
 *
 * Stripes are views. A tensor holding rows [row0, row0 + rows) of a (N, C, H, W) map is stored
 * as (N, C, rows, W); rows [a, b] of it are the 4-d tensor (N, C, b - a + 1, W) with strides
 * (C*rows*W, rows*W, W, 1) at base + (a - row0)*W (cudnnSetTensor4dDescriptorEx), so interior
 * stripes reach cuDNN without a copy.
 *
 * Edge staging. cuDNN pads symmetrically, while a stripe touching the top or bottom of the image
 * needs padding on one side only. cuda_conv_pieces() splits a convolution's output rows into at
 * most three cuDNN calls:
 *   - one call on a view when its symmetric padding is exact: interior stripes (pad 0), whole maps
 *     (the layer's pad), and top stripes whose pad is below the stride (the bottom padding is
 *     then never read: the output count comes out right and the last window ends on real rows);
 *   - otherwise a staged top edge, an interior view with pad 0, and a staged bottom edge, where
 *     "staged" copies the few input rows the edge windows read into a zero-filled buffer
 *     (N, C, V, W) carved from the schedule's workspace tensor and runs cuDNN with pad 0 on it
 *     (cuda_conv.cu).
 * Only output rows whose windows read padding are staged, so staging costs a few rows per edge
 * (N*C*((e-1)*s + d*(k-1) + 1)*W floats for e edge rows), not the stripe.
 *
 * Deliberately not here: running the pieces (cuda_conv.cu).
 */
#include "cuda_private.h"

/* ------------------------------------------------------------------ pieces */

static int ceil_div_int(int a, int b)
{
    return -floor_div(-a, b);
}

/* Output rows of a window op of height `in` with pad p on both sides (floor mode); < 1 if none. */
static int window_rows(int in, int k, int s, int p, int d)
{
    int span = in + 2 * p - d * (k - 1) - 1;
    return span < 0 ? 0 : span / s + 1;
}

/* [lo, hi] as one call on a view with symmetric padding, when that padding is exact. */
static bool piece_as_view(int h, int kh, int sh, int ph, int dh, int lo, int hi,
                          cuda_conv_piece *p)
{
    int a = lo * sh - ph, b = hi * sh - ph + dh * (kh - 1);
    if (a >= 0 && b <= h - 1) {
        *p = {lo, hi, a, b, 0, false};
        return true;
    }
    if (a >= 0)
        return false; /* bottom padding only: symmetric padding would pad the top too */
    int pad = -a, last = b < h - 1 ? b : h - 1;
    if (last < 0 || b - (h - 1) > pad)
        return false;
    /* the view [0, last] padded by `pad` must give exactly hi - lo + 1 rows: then the windows end
     * at row b, and padding below `last` is read only when it lies below the image */
    if (window_rows(last + 1, kh, sh, pad, dh) != hi - lo + 1)
        return false;
    *p = {lo, hi, 0, last, pad, false};
    return true;
}

static cuda_conv_piece staged_piece(int kh, int sh, int ph, int dh, int lo, int hi)
{
    cuda_conv_piece p = {lo, hi, lo * sh - ph, hi * sh - ph + dh * (kh - 1), 0, true};
    return p;
}

int cuda_conv_pieces(int h, int kh, int sh, int ph, int dh, int lo, int hi, cuda_conv_piece out[3])
{
    if (lo > hi)
        return 0;
    if (piece_as_view(h, kh, sh, ph, dh, lo, hi, &out[0]))
        return 1;
    /* rows t..u read no padding */
    int t = ceil_div_int(ph, sh), u = floor_div(h - 1 + ph - dh * (kh - 1), sh);
    t = t > lo ? t : lo;
    u = u < hi ? u : hi;
    if (t > u) {
        out[0] = staged_piece(kh, sh, ph, dh, lo, hi);
        return 1;
    }
    int n = 0;
    if (lo <= t - 1) {
        if (!piece_as_view(h, kh, sh, ph, dh, lo, t - 1, &out[n]))
            out[n] = staged_piece(kh, sh, ph, dh, lo, t - 1);
        n++;
    }
    out[n++] = {t, u, t * sh - ph, u * sh - ph + dh * (kh - 1), 0, false};
    if (u + 1 <= hi)
        out[n++] = staged_piece(kh, sh, ph, dh, u + 1, hi);
    return n;
}

void cuda_view_strides(int c, int rows, int w, int64_t strides[4])
{
    strides[0] = (int64_t)c * rows * w;
    strides[1] = (int64_t)rows * w;
    strides[2] = w;
    strides[3] = 1;
}

/* ------------------------------------------------------------------ steps */

static void tensor_rows(const sched_t *s, int t, int *row0, int *rows)
{
    *row0 = t >= 0 ? s->tensors[t].row_lo : 0;
    *rows = t >= 0 ? s->tensors[t].row_hi - s->tensors[t].row_lo + 1 : 0;
}

void cuda_conv_info(const net_t *net, const sched_t *s, const sched_step *st, int batch,
                    conv_info *ci)
{
    const sched_run *r = &s->runs[st->run];
    const net_node *n = &net->nodes[st->node];
    const net_node *x = &net->nodes[plan_root(net, n->inputs[0])];
    memset(ci, 0, sizeof *ci);
    ci->n = batch, ci->cin = x->c, ci->h = x->h, ci->w = x->w;
    ci->cout = n->c, ci->hout = n->h, ci->wout = n->w, ci->groups = n->prm.groups;
    ci->kh = n->prm.kh, ci->kw = n->prm.kw, ci->sh = n->prm.sh, ci->sw = n->prm.sw;
    ci->ph = n->prm.ph, ci->pw = n->prm.pw, ci->dh = n->prm.dh, ci->dw = n->prm.dw;
    ci->bias = n->prm.bias;
    ci->backward = st->pass == PASS_BWD || st->pass == PASS_GSTATS;
    ci->want_dx = ci->backward && r->din[0] >= 0;
    ci->want_dw = ci->backward && r->param_grad >= 0;
    tensor_rows(s, r->in[0], &ci->x_row0, &ci->x_rows);
    tensor_rows(s, ci->backward ? r->dout : r->out, &ci->y_row0, &ci->y_rows);
    tensor_rows(s, ci->want_dx ? r->din[0] : -1, &ci->dx_row0, &ci->dx_rows);
}

static int64_t stage_bytes(const conv_info *ci, const cuda_conv_piece *p)
{
    return 4 * (int64_t)ci->n * ci->cin * (p->in_hi - p->in_lo + 1) * ci->w;
}

/* The staging region of a piece, 256-byte aligned: its input rows (forward, backward filter) and
 * later, in stream order, its input-gradient rows (backward data) share it. */
int64_t cuda_piece_staging(const conv_info *ci, const cuda_conv_piece *p)
{
    return p->staged ? align256(stage_bytes(ci, p)) : 0;
}

cuda_conv_piece cuda_piece_as_staged(const conv_info *ci, const cuda_conv_piece *p)
{
    return p->staged ? *p : staged_piece(ci->kh, ci->sh, ci->ph, ci->dh, p->out_lo, p->out_hi);
}

int64_t cuda_piece_packed_staging(const conv_info *ci, const cuda_conv_piece *p)
{
    cuda_conv_piece s = cuda_piece_as_staged(ci, p);
    int64_t out = 4 * (int64_t)ci->n * ci->cout * (p->out_hi - p->out_lo + 1) * ci->wout;
    return cuda_piece_staging(ci, &s) + align256(out);
}

/* Byte offset of rows from `lo` in a tensor that starts at row `row0`, modulo 16 (tensors start
 * 256-byte aligned in the arena). */
static bool misaligned(int lo, int row0, int w)
{
    return (int64_t)(lo - row0) * w * 4 % 16 != 0;
}

bool cuda_piece_unaligned(const conv_info *ci, const cuda_conv_piece *p)
{
    bool reads_x = !ci->backward || ci->want_dw;
    if (!p->staged && reads_x && misaligned(p->in_lo, ci->x_row0, ci->w))
        return true;
    if (!p->staged && ci->want_dx && misaligned(p->in_lo, ci->dx_row0, ci->w))
        return true;
    return misaligned(p->out_lo, ci->y_row0, ci->wout);
}

bool cuda_is_conv_run(const net_t *net, const sched_step *st)
{
    return st->op == STEP_RUN && st->pass != PASS_UPDATE && st->node > 0 &&
           net->nodes[st->node].op == OP_CONV;
}

int64_t cuda_conv_staging_bytes(const net_t *net, const sched_t *s, const sched_step *step,
                                int batch)
{
    if (!cuda_is_conv_run(net, step))
        return 0;
    conv_info ci;
    cuda_conv_info(net, s, step, batch, &ci);
    cuda_conv_piece pc[3];
    int np = cuda_conv_pieces(ci.h, ci.kh, ci.sh, ci.ph, ci.dh, step->row_lo, step->row_hi, pc);
    if (ci.backward && !ci.want_dx && !ci.want_dw)
        return 0;
    int64_t most = 0;
    for (int i = 0; i < np; i++)
        most = cuda_piece_staging(&ci, &pc[i]) > most ? cuda_piece_staging(&ci, &pc[i]) : most;
    return most;
}
