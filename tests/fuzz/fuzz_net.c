/* fuzz_net.c - libFuzzer target: bytes -> net_parse -> if the network loads, every strategy is
 * planned with a small batch, emitted, checked (sched_validate), replayed, and the closed-form
 * peak must equal the replay to the byte; row dependencies and the arena planner run too.
 *
 * Two readings of the bytes: text that starts like JSON ('{' or white space) is parsed as it
 * is (the loader's strictness); anything else drives a generator of valid networks (fuzz_gen.h:
 * blocks of chains, residual adds, concat branches, pool-upsample skips; every layer reaches the
 * loss), rendered as JSON and parsed, so mutations explore the planner on odd DAGs instead of
 * dying in the parser.
 *
 * A crash, a sanitizer report or an abort() here is a bug. The invariants checked are the ones
 * tests/test_plan.c holds the zoo to; this target holds every network that loads to them.
 * A few bytes of a hash of the input pick the variations (batch 1-3, BN mode, --rows, --region,
 * --input, --boundaries, --offload), so one corpus entry stays one deterministic run.
 * Deliberately not here: the CLI (fuzz_args.c), executing schedules (fuzz_exec.c, on networks
 * small enough to run).
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
#include "fuzz_gen.h"
#include "rowdep.h"
#include "sim.h"

/* Networks this large plan slowly (every strategy's N search; exact BatchNorm is quadratic in
 * depth); the fuzzer gains nothing from them that tests/test_robust.c's large networks do not
 * cover. Generated networks stay below GEN_MAX_NODES for the same reason. */
#define FUZZ_MAX_NODES 256
#define GEN_MAX_NODES 96

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
                       .bn = (plan_bn)((h >> 6) % BN_COUNT),
                       /* --boundaries and --offload: the twin stages and the host tier */
                       .recompute_boundaries = (h >> 20) % 4 == 0,
                       .boundaries_auto = (h >> 20) % 4 == 1,
                       .offload = (unsigned)((h >> 22) % 4 == 0 ? (h >> 24) % 4 : 0)};
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
        const gen_limits lim = {.max_hw = 40, .max_nodes = GEN_MAX_NODES, .max_c = 64};
        text = generate(data + 1, size - 1, &lim, &len);
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
