/* cuda_workspace.c - prints the workspace bytes the CUDA backend needs for the schedule
 * lrcnn-validate would plan (cuda_backend_workspace_bytes_ctx: edge staging plus the workspace of
 * the cuDNN algorithms it will choose), so bench/gpu.sh can pass it as --workspace.
 *
 *   cuda-workspace NET STRATEGY BATCH [HxW] [--deterministic]
 *
 * Plans like lrcnn-validate's defaults: momentum, --bn exact, the planner's choice of N.
 * Deliberately not here: running anything. It is a stopgap for the device run: once
 * lrcnn-validate plans twice itself (see bench/README.md), gpu.sh no longer needs it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"
#include "strategy.h"

static lr_status plan_schedule(net_t *net, const plan_config *cfg, const plan_request *req,
                               plan_t **plan, sched_t *s)
{
    plan_choice c;
    LR_TRY(strategy_choose(net, cfg, req, &c));
    LR_TRY(plan_build(net, cfg, &c.spec, plan));
    plan_emit(*plan, s);
    return LR_OK;
}

static lr_status workspace_for(const char *name, const char *strategy, int batch, int h, int w,
                               bool deterministic, int64_t *bytes)
{
    net_t *net;
    LR_TRY(net_open(name, &net));
    lr_status st = h ? net_reshape(net, h, w) : LR_OK;
    plan_config cfg = {.batch = batch, .dtype = DT_FP32, .optim = OPTIM_MOMENTUM, .bn = BN_EXACT};
    plan_request req = {.strategy = plan_strategy_from_name(strategy)};
    if (st == LR_OK && req.strategy == STRAT_COUNT)
        st = lr_fail(LR_ERR_USAGE, "unknown strategy '%s'", strategy);
    const exec_backend *be;
    void *ctx = NULL;
    if (st == LR_OK)
        st = cuda_backend_create(deterministic, &be, &ctx);
    plan_t *plan = NULL;
    sched_t s;
    sched_init(&s);
    if (st == LR_OK)
        st = plan_schedule(net, &cfg, &req, &plan, &s);
    if (st == LR_OK) {
        *bytes = cuda_backend_workspace_bytes_ctx(ctx, net, &s, batch);
        if (*bytes < 0)
            st = LR_ERR_RUNTIME;
    }
    sched_free(&s);
    plan_free(plan);
    cuda_backend_destroy(ctx);
    net_free(net);
    return st;
}

/* A positive integer ending at `end` ('\0' or the given separator); 0 when malformed. */
static int positive(const char *v, char sep, const char **rest)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end != sep || x < 1 || x > 1 << 20)
        return 0;
    *rest = sep ? end + 1 : end;
    return (int)x;
}

int main(int argc, char **argv)
{
    bool det = argc > 1 && strcmp(argv[argc - 1], "--deterministic") == 0;
    int n = argc - det, batch = 0, h = 0, w = 0;
    const char *rest;
    if (n == 4 || n == 5)
        batch = positive(argv[3], '\0', &rest);
    if (n == 5 && (h = positive(argv[4], 'x', &rest)) > 0)
        w = positive(rest, '\0', &rest);
    if (!batch || (n == 5 && !w)) {
        fprintf(stderr, "usage: cuda-workspace NET STRATEGY BATCH [HxW] [--deterministic]\n");
        return 2;
    }
    int64_t bytes = 0;
    lr_status st = workspace_for(argv[1], argv[2], batch, h, w, det, &bytes);
    if (st != LR_OK) {
        fprintf(stderr, "cuda-workspace: %s\n", lr_last_error());
        return lr_exit_code(st);
    }
    printf("%lld\n", (long long)bytes);
    return 0;
}
