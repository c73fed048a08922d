/* fuzz_gen.h - what the fuzz targets share: a generator of valid networks driven by bytes
 * (blocks of chains, residual adds, concat branches, pool-upsample skips, dropout, BatchNorm; a
 * head of pooling, maybe a flatten and what may read it, fc and the loss; every layer reaches
 * the loss), rendered as JSON, and a hash of the input for the variations a target picks.
 * Header-only: each target is one program (tests/fuzz/README.md).
 */
#ifndef LR_FUZZ_GEN_H
#define LR_FUZZ_GEN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash(const uint8_t *data, size_t size)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 1099511628211ull;
    return h;
}

/* ------------------------------------------------------------------ network generator */

/* How large a generated network may get: input height and width (1 to max_hw), layers, and
 * the channels past which no further block starts. */
typedef struct {
    int max_hw, max_nodes, max_c;
} gen_limits;

typedef struct {
    const uint8_t *p, *end;
    char *out;
    size_t len, cap;
    int n;       /* layers written */
    int c, h, w; /* shape of the current tip */
    char tip[16];
    bool conv_tip; /* the tip is a convolution */
} gen_t;

static int take(gen_t *g, int mod)
{
    return g->p < g->end ? *g->p++ % mod : 0;
}

static void emit(gen_t *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void emit(gen_t *g, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(g->out + g->len, g->cap - g->len, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < g->cap - g->len)
        g->len += (size_t)n;
}

/* A layer named L<n> reading `in` ("" for the previous layer); `rest` holds its keys. */
static void layer(gen_t *g, const char *op, const char *in, const char *rest)
{
    emit(g, "%s{\"name\": \"L%d\", \"op\": \"%s\"", g->n ? ",\n" : "", g->n, op);
    if (*in)
        emit(g, ", \"inputs\": [%s]", in);
    emit(g, "%s%s}", *rest ? ", " : "", rest);
    snprintf(g->tip, sizeof g->tip, "L%d", g->n++);
    g->conv_tip = strcmp(op, "conv") == 0;
}

static int out_extent(int in, int k, int s, int p, int d)
{
    int room = in + 2 * p - d * (k - 1) - 1;
    return room < 0 ? 0 : room / s + 1;
}

/* Whether some of `out` outputs reads an input inside [0, in) (else every output reads only
 * padding, and the map that comes out is one value per channel). */
static bool reads_map(int in, int k, int s, int p, int d, int out)
{
    for (int o = 0; o < out; o++)
        for (int t = 0; t < k; t++)
            if (o * s - p + t * d >= 0 && o * s - p + t * d < in)
                return true;
    return false;
}

/* A conv (or pooling) with parameters from the bytes; a window that does not fit the map
 * becomes 1x1 so the network stays valid, and so does one that reads only padding along a
 * dimension: its output is then constant over the batch's pixels, and a BatchNorm after it
 * divides rounding noise by sqrt(eps) (gradients of noise, not a test of the executors). Rows or
 * columns of padding only beside rows that read the map stay (tests/data/nets/tiny-pad.json). */
static void window(gen_t *g, bool pool)
{
    int kh = 1 + take(g, 5), kw = 1 + take(g, 3), s = 1 + take(g, 3);
    int d = pool ? 1 : 1 + take(g, 2);
    int p = pool ? take(g, (kh < kw ? kh : kw) / 2 + 1) : take(g, 3);
    int oh = out_extent(g->h, kh, s, p, d), ow = out_extent(g->w, kw, s, p, d);
    if (oh < 1 || ow < 1 || !reads_map(g->h, kh, s, p, d, oh) || !reads_map(g->w, kw, s, p, d, ow)) {
        kh = kw = s = d = 1, p = 0;
        oh = g->h, ow = g->w;
    }
    char rest[200];
    if (pool) {
        snprintf(rest, sizeof rest, "\"kernel\": [%d, %d], \"stride\": %d, \"pad\": %d", kh, kw,
                 s, p);
        layer(g, take(g, 2) ? "maxpool" : "avgpool", "", rest);
    } else {
        int groups = g->c % 2 == 0 && take(g, 3) == 0 ? 2 : 1;
        int oc = groups * (1 + take(g, 4));
        snprintf(rest, sizeof rest, "\"out_channels\": %d, \"kernel\": [%d, %d], \"stride\": %d, "
                                    "\"pad\": %d, \"dilation\": %d, \"groups\": %d, \"bias\": %s",
                 oc, kh, kw, s, p, d, groups, take(g, 2) ? "true" : "false");
        layer(g, "conv", "", rest);
        g->c = oc;
    }
    g->h = oh, g->w = ow;
}

/* x -> conv (same shape) -> [bn] -> relu -> conv (same shape) -> add(x, .) */
static void residual(gen_t *g)
{
    char x[16], in[40], rest[160];
    snprintf(x, sizeof x, "%s", g->tip);
    int k = 1 + 2 * take(g, 3), d = 1 + take(g, 2);
    snprintf(rest, sizeof rest, "\"out_channels\": %d, \"kernel\": %d, \"pad\": %d, \"dilation\": %d",
             g->c, k, d * (k - 1) / 2, d);
    layer(g, "conv", "", rest);
    if (take(g, 2))
        layer(g, "batchnorm", "", "");
    layer(g, "relu", "", "");
    layer(g, "conv", "", rest);
    snprintf(in, sizeof in, "\"%s\", \"%s\"", g->tip, x);
    layer(g, "add", in, "");
}

/* x -> a, x -> b (same geometry, maybe another kernel height) -> concat(a, b [, x]) */
static void branches(gen_t *g)
{
    char x[16], a[16], in[64], rest[160];
    snprintf(x, sizeof x, "%s", g->tip);
    int c = 1 + take(g, 4);
    snprintf(rest, sizeof rest, "\"out_channels\": %d, \"kernel\": 3, \"pad\": 1", c);
    layer(g, "conv", "", rest);
    snprintf(a, sizeof a, "%s", g->tip);
    char from[24];
    snprintf(from, sizeof from, "\"%s\"", x);
    snprintf(rest, sizeof rest, "\"out_channels\": %d, \"kernel\": [5, 1], \"pad\": [2, 0]", c);
    layer(g, "conv", from, rest);
    bool keep_x = take(g, 2);
    snprintf(in, sizeof in, "\"%s\", \"%s\"%s%s%s", a, g->tip, keep_x ? ", \"" : "",
             keep_x ? x : "", keep_x ? "\"" : "");
    layer(g, "concat", in, "");
    g->c = 2 * c + (keep_x ? g->c : 0);
}

/* x -> pool 2 -> conv -> upsample 2 -> concat(., x): a U-Net skip (even maps only). */
static void skip(gen_t *g)
{
    if (g->h % 2 || g->w % 2 || g->h < 2 || g->w < 2) {
        layer(g, "dropout", "", "\"p\": 0.25");
        return;
    }
    char x[16], in[40], rest[96];
    snprintf(x, sizeof x, "%s", g->tip);
    layer(g, "maxpool", "", "\"kernel\": 2");
    snprintf(rest, sizeof rest, "\"out_channels\": %d, \"kernel\": 3, \"pad\": 1", g->c);
    layer(g, "conv", "", rest);
    layer(g, "upsample", "", "\"scale\": 2");
    snprintf(in, sizeof in, "\"%s\", \"%s\"", g->tip, x);
    layer(g, "concat", in, "");
    g->c *= 2;
}

/* After a flatten, the ops that read it as a (C*H*W, 1, 1) map (AlexNet's dropout; a feature
 * BatchNorm and relu), each maybe. */
static void after_flatten(gen_t *g)
{
    if (take(g, 2))
        layer(g, "dropout", "", "\"p\": 0.5");
    if (take(g, 3) == 0)
        layer(g, "batchnorm", "", "");
    if (take(g, 2))
        layer(g, "relu", "", "");
}

/* Renders the bytes as a network within `lim`; the caller frees the text. */
static char *generate(const uint8_t *data, size_t size, const gen_limits *lim, size_t *len)
{
    gen_t g = {.p = data, .end = data + size, .cap = 300 * ((size_t)lim->max_nodes + 24)};
    g.out = malloc(g.cap);
    if (!g.out)
        abort();
    g.c = 1 + take(&g, 4), g.h = 1 + take(&g, lim->max_hw), g.w = 1 + take(&g, lim->max_hw);
    snprintf(g.tip, sizeof g.tip, "input");
    emit(&g, "{\"name\": \"gen\", \"input\": {\"channels\": %d, \"height\": %d, \"width\": %d},\n"
             "\"layers\": [\n", g.c, g.h, g.w);
    while (g.p < g.end && g.n < lim->max_nodes - 16 && g.c <= lim->max_c) {
        switch (take(&g, 8)) {
        case 0: window(&g, false); break;
        case 1: window(&g, true); break;
        case 2: layer(&g, "relu", "", ""); break;
        /* a BatchNorm only right after a convolution, as nets have them: a chain of BatchNorms
         * (with relus between or not) over a channel of (nearly) one value scales its rounding
         * by 1/sqrt(eps) at each, and trains on noise (fuzz_exec's inputs e59a3c9e, six in a
         * row, gradients 1e9 apart between any two summation orders, the PyTorch runner against
         * autograd included; 766b3bb2, five with relus between) */
        case 3: layer(&g, g.conv_tip ? "batchnorm" : "relu", "", ""); break;
        case 4: residual(&g); break;
        case 5: branches(&g); break;
        case 6: skip(&g); break;
        default: layer(&g, "dropout", "", "\"p\": 0.1"); break;
        }
    }
    switch (take(&g, 3)) {
    case 0: layer(&g, "global_avgpool", "", ""); break;
    case 1: {
        char rest[48];
        snprintf(rest, sizeof rest, "\"output\": [%d, %d]", g.h > 2 ? 2 : g.h, g.w > 2 ? 2 : g.w);
        layer(&g, "adaptive_avgpool", "", rest);
        break;
    }
    default: break;
    }
    if (take(&g, 2)) {
        layer(&g, "flatten", "", "");
        after_flatten(&g);
    }
    layer(&g, "fc", "", "\"out_features\": 3");
    layer(&g, "softmax_xent", "", "");
    emit(&g, "\n]}\n");
    *len = g.len;
    return g.out;
}

#endif
