/* fuzz_net.c - libFuzzer target: bytes -> net_parse -> if the network loads, every strategy is
 * planned with a small batch, emitted, checked (sched_validate), replayed, and the closed-form
 * peak must equal the replay to the byte; row dependencies and the arena planner run too.
 *
 * Two readings of the bytes: text that starts like JSON ('{' or white space) is parsed as it
 * is (the loader's strictness); anything else drives a generator of valid networks (blocks of
 * chains, residual adds, concat branches, pool-upsample skips; every layer reaches the loss),
 * rendered as JSON and parsed, so mutations explore the planner on odd DAGs instead of dying
 * in the parser.
 *
 * A crash, a sanitizer report or an abort() here is a bug. The invariants checked are the ones
 * tests/test_plan.c holds the zoo to; this target holds every network that loads to them.
 * A few bytes of a hash of the input pick the variations (batch 1-3, BN mode, --rows, --region,
 * --input), so one corpus entry stays one deterministic run.
 * Deliberately not here: the CLI (fuzz_args.c), executing schedules (too slow for fuzzing).
 *
 * Build and run: make fuzz (see tests/fuzz/README.md).
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis.h"
#include "exec.h"
#include "rowdep.h"
#include "sim.h"

/* Networks this large plan slowly (every strategy's N search; exact BatchNorm is quadratic in
 * depth); the fuzzer gains nothing from them that tests/test_robust.c's large networks do not
 * cover. Generated networks stay below GEN_MAX_NODES for the same reason. */
#define FUZZ_MAX_NODES 256
#define GEN_MAX_NODES 96

static uint64_t hash(const uint8_t *data, size_t size)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 1099511628211ull;
    return h;
}

static void broken(const char *what, const net_t *net, const char *strategy)
{
    fprintf(stderr, "fuzz_net: %s (net %s, strategy %s): %s\n", what, net->name, strategy,
            lr_last_error());
    abort();
}

/* Emits the entry's schedule, validates it, and checks the arena planner against the peak. */
static void check_schedule(const analysis_t *a, const analysis_entry *e)
{
    const char *name = plan_strategy_name(e->strategy);
    plan_t *plan;
    sched_t s;
    if (analysis_schedule(a, e, &plan, &s) != LR_OK)
        broken("analysis_schedule failed after analysis_run succeeded", a->net, name);
    if (sched_validate(&s) != LR_OK)
        broken("emitted schedule is not well formed", a->net, name);
    if (s.n_tensors <= 400) { /* the offline packer is quadratic: keep the fuzzer fast */
        int64_t *off = malloc(sizeof(int64_t) * (size_t)(s.n_tensors + 1));
        if (!off)
            abort();
        int64_t arena = exec_plan_arena(&s, 256, off);
        if (arena < e->exact.peak_bytes)
            broken("arena smaller than the exact peak", a->net, name);
        free(off);
    }
    sched_free(&s);
    plan_free(plan);
}

static void plan_all(const net_t *net, uint64_t h)
{
    plan_config cfg = {.batch = 1 + (int)(h % 3), .dtype = (plan_dtype)((h >> 2) % DT_COUNT),
                       .optim = (plan_optim)((h >> 4) % OPTIM_COUNT),
                       .bn = (plan_bn)((h >> 6) % BN_COUNT)};
    plan_request req = {0};
    /* --rows: the search for small nets, a fixed N otherwise (both bounded in time) */
    req.rows = (h >> 8) % 4 == 0 && net->n_nodes <= 64 ? 0 : 1 + (int)((h >> 10) % 6);
    if ((h >> 13) % 4 == 0)
        req.region_end = 1 + (int)((h >> 16) % (uint64_t)(net->n_nodes - 1));
    if (cost_check_layers(net, cfg.batch, cost_dtype_bytes(cfg.dtype)) != LR_OK)
        return;
    analysis_t *a = malloc(sizeof *a);
    if (!a)
        abort();
    lr_status s = analysis_run(net, &cfg, &req, (1u << STRAT_COUNT) - 1, ALLOC_CACHING, a);
    if (s == LR_OK) {
        for (int i = 0; i < a->n; i++) {
            const analysis_entry *e = &a->e[i];
            if (e->exact.peak_bytes != e->choice.cost.peak_bytes) {
                fprintf(stderr, "closed form %lld, replay %lld\n", (long long)e->choice.cost.peak_bytes,
                        (long long)e->exact.peak_bytes);
                broken("closed-form peak differs from the replay", net, plan_strategy_name(e->strategy));
            }
            if (e->exact.end_bytes != 0)
                broken("bytes live after the last step", net, plan_strategy_name(e->strategy));
            check_schedule(a, e);
        }
    } else if (s != LR_ERR_INPUT && s != LR_ERR_USAGE) {
        broken("analysis_run failed with a runtime status", net, "?");
    }
    free(a);
}

/* ------------------------------------------------------------------ network generator */

typedef struct {
    const uint8_t *p, *end;
    char *out;
    size_t len, cap;
    int n;       /* layers written */
    int c, h, w; /* shape of the current tip */
    char tip[16];
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
}

static int out_extent(int in, int k, int s, int p, int d)
{
    int room = in + 2 * p - d * (k - 1) - 1;
    return room < 0 ? 0 : room / s + 1;
}

/* A conv (or pooling) with parameters from the bytes; a window that does not fit the map
 * becomes 1x1 so the network stays valid. */
static void window(gen_t *g, bool pool)
{
    int kh = 1 + take(g, 5), kw = 1 + take(g, 3), s = 1 + take(g, 3);
    int d = pool ? 1 : 1 + take(g, 2);
    int p = pool ? take(g, (kh < kw ? kh : kw) / 2 + 1) : take(g, 3);
    int oh = out_extent(g->h, kh, s, p, d), ow = out_extent(g->w, kw, s, p, d);
    if (oh < 1 || ow < 1) {
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

/* Renders the bytes as a network; the caller frees the text. */
static char *generate(const uint8_t *data, size_t size, size_t *len)
{
    gen_t g = {.p = data, .end = data + size, .cap = 300 * (FUZZ_MAX_NODES + 8)};
    g.out = malloc(g.cap);
    if (!g.out)
        abort();
    g.c = 1 + take(&g, 4), g.h = 1 + take(&g, 40), g.w = 1 + take(&g, 40);
    snprintf(g.tip, sizeof g.tip, "input");
    emit(&g, "{\"name\": \"gen\", \"input\": {\"channels\": %d, \"height\": %d, \"width\": %d},\n"
             "\"layers\": [\n", g.c, g.h, g.w);
    while (g.p < g.end && g.n < GEN_MAX_NODES - 16 && g.c <= 64) {
        switch (take(&g, 8)) {
        case 0: window(&g, false); break;
        case 1: window(&g, true); break;
        case 2: layer(&g, "relu", "", ""); break;
        case 3: layer(&g, "batchnorm", "", ""); break;
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
    if (take(&g, 2))
        layer(&g, "flatten", "", "");
    layer(&g, "fc", "", "\"out_features\": 3");
    layer(&g, "softmax_xent", "", "");
    emit(&g, "\n]}\n");
    *len = g.len;
    return g.out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text;
    size_t len = size;
    bool generated = !(size == 0 || data[0] == '{' || data[0] == ' ' || data[0] == '\n' ||
                       data[0] == '\t');
    if (!generated) {
        text = malloc(size + 1);
        if (!text)
            return 0;
        memcpy(text, data, size);
        text[size] = '\0';
    } else {
        text = generate(data + 1, size - 1, &len);
        if (getenv("FUZZ_NET_PRINT")) /* the JSON of a generated crash, for tests/regress/ */
            fputs(text, stderr);
    }
    net_t *net = NULL;
    lr_status st = net_parse(text, len, "fuzz.json", &net);
    if (st != LR_OK && generated) {
        fprintf(stderr, "fuzz_net: a generated network does not load: %s\n%s\n", lr_last_error(), text);
        abort();
    }
    if (st == LR_OK && net->n_nodes <= FUZZ_MAX_NODES) {
        uint64_t h = hash(data, size);
        rowdep_info *info = malloc(sizeof *info * (size_t)net->n_nodes);
        if (!info)
            abort();
        rowdep_analyze(net, info);
        free(info);
        plan_all(net, h);
        /* --input: a different size re-runs shape inference on the loaded net */
        int hh = 1 + (int)((h >> 24) % 300), ww = 1 + (int)((h >> 40) % 300);
        if (net_reshape(net, hh, ww) == LR_OK)
            plan_all(net, h >> 1);
    }
    net_free(net);
    free(text);
    return 0;
}
