/* cuda_workspace.c - prints the workspace bytes the CUDA backend needs for the schedules
 * lrcnn-validate would plan (cuda_backend_workspace_bytes_ctx: edge staging plus the workspace of
 * the cuDNN algorithms it will choose), so bench/gpu.sh can pass them as --workspace.
 *
 *   cuda-workspace [--deterministic] NET BATCH HxW|- STRATEGY...    one "STRATEGY BYTES" line each
 *
 * Plans like lrcnn-validate's defaults: momentum, --bn exact, the planner's choice of N; "-" keeps
 * the net's input size. One process for all strategies: a CUDA context costs about a second.
 * Deliberately not here: running anything. A stopgap for the GPU run: once lrcnn-validate
 * plans twice itself (bench/README.md), gpu.sh no longer needs it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"
#include "strategy.h"

static lr_status workspace_for(void *ctx, const net_t *net, int batch, const char *strategy,
                               int64_t *bytes)
{
    plan_config cfg = {.batch = batch, .dtype = DT_FP32, .optim = OPTIM_MOMENTUM, .bn = BN_EXACT};
    plan_request req = {.strategy = plan_strategy_from_name(strategy)};
    if (req.strategy == STRAT_COUNT)
        return lr_fail(LR_ERR_USAGE, "unknown strategy '%s'", strategy);
    plan_choice c;
    LR_TRY(strategy_choose(net, &cfg, &req, &c));
    plan_t *plan;
    LR_TRY(plan_build(net, &cfg, &c.spec, &plan));
    sched_t s;
    sched_init(&s);
    plan_emit(plan, &s);
    *bytes = cuda_backend_workspace_bytes_ctx(ctx, net, &s, batch);
    sched_free(&s);
    plan_free(plan);
    return *bytes < 0 ? LR_ERR_RUNTIME : LR_OK;
}

/* A positive integer ending in `sep`; 0 when malformed. *rest: after the separator. */
static int positive(const char *v, char sep, const char **rest)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end != sep || x < 1 || x > 1 << 20)
        return 0;
    *rest = sep ? end + 1 : end;
    return (int)x;
}

static lr_status run(bool det, char **argv, int argc)
{
    const char *rest;
    int batch = positive(argv[1], '\0', &rest), h = 0, w = 0;
    if (strcmp(argv[2], "-") != 0 && (h = positive(argv[2], 'x', &rest)) > 0)
        w = positive(rest, '\0', &rest);
    if (!batch || (strcmp(argv[2], "-") != 0 && !w))
        return lr_fail(LR_ERR_USAGE, "BATCH must be a positive integer and the input HxW or -");
    net_t *net;
    LR_TRY(net_open(argv[0], &net));
    const exec_backend *be;
    void *ctx = NULL;
    lr_status st = h ? net_reshape(net, h, w) : LR_OK;
    if (st == LR_OK)
        st = cuda_backend_create(det, &be, &ctx);
    for (int i = 3; i < argc && st == LR_OK; i++) {
        int64_t bytes;
        st = workspace_for(ctx, net, batch, argv[i], &bytes);
        if (st == LR_OK)
            printf("%s %lld\n", argv[i], (long long)bytes);
    }
    cuda_backend_destroy(ctx);
    net_free(net);
    return st;
}

int main(int argc, char **argv)
{
    bool det = argc > 1 && strcmp(argv[1], "--deterministic") == 0;
    if (argc - det < 5) {
        fprintf(stderr, "usage: cuda-workspace [--deterministic] NET BATCH HxW|- STRATEGY...\n");
        return 2;
    }
    lr_status st = run(det, argv + 1 + det, argc - 1 - det);
    if (st != LR_OK) {
        fprintf(stderr, "cuda-workspace: %s\n", lr_last_error());
        return lr_exit_code(st);
    }
    return 0;
}
