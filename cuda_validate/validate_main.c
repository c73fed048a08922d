/* validate_main.c - main() of lrcnn-validate: flags -> validate_run() -> report.
 * Deliberately thin: the work is in validate.c, exec.c and the backends.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "heap.h"
#include "validate.h"
#include "waiting.h"

typedef struct {
    validate_options o;
    bool help, version;
    const char *region;
} cli;

static lr_status on_net(void *c, const char *f, const char *v)
{
    ((cli *)c)->o.net = v;
    return LR_OK;
}

static lr_status on_strategy(void *c, const char *f, const char *v)
{
    plan_strategy s = plan_strategy_from_name(v);
    if (s == STRAT_COUNT)
        return lr_fail(LR_ERR_USAGE, "%s: unknown strategy '%s' (column, checkpoint, row, 2ps, overl, 2ps-h, overl-h)", f, v);
    ((cli *)c)->o.req.strategy = s;
    return LR_OK;
}

static lr_status on_int(const char *f, const char *v, int64_t lo, int64_t hi, int *out)
{
    int64_t x;
    LR_TRY(args_int(f, v, lo, hi, &x));
    *out = (int)x;
    return LR_OK;
}

static lr_status on_rows(void *c, const char *f, const char *v)
{
    return on_int(f, v, 1, 4096, &((cli *)c)->o.req.rows);
}

static lr_status on_segments(void *c, const char *f, const char *v)
{
    return on_int(f, v, 1, PLAN_MAX_STAGES, &((cli *)c)->o.req.segments);
}

static lr_status on_region(void *c, const char *f, const char *v)
{
    ((cli *)c)->region = v;
    return LR_OK;
}

static lr_status on_bn(void *c, const char *f, const char *v)
{
    for (int k = 0; k < BN_COUNT; k++)
        if (strcmp(v, plan_bn_name((plan_bn)k)) == 0) {
            ((cli *)c)->o.cfg.bn = (plan_bn)k;
            return LR_OK;
        }
    return lr_fail(LR_ERR_USAGE, "%s: expected exact, stripe or frozen, got '%s'", f, v);
}

static lr_status on_boundaries(void *c, const char *f, const char *v)
{
    return plan_boundaries_parse(f, v, &((cli *)c)->o.cfg);
}

static lr_status on_offload(void *c, const char *f, const char *v)
{
    return plan_offload_config(f, v, &((cli *)c)->o.cfg);
}

static lr_status on_batch(void *c, const char *f, const char *v)
{
    return on_int(f, v, 1, 1 << 20, &((cli *)c)->o.cfg.batch);
}

static lr_status on_input(void *c, const char *f, const char *v)
{
    return args_hw(f, v, 1 << 16, &((cli *)c)->o.in_h, &((cli *)c)->o.in_w);
}

static lr_status on_backend(void *c, const char *f, const char *v)
{
    if (strcmp(v, "cpu") && strcmp(v, "cuda") && strcmp(v, "cuda-emulated"))
        return lr_fail(LR_ERR_USAGE, "%s: expected cpu, cuda or cuda-emulated, got '%s'", f, v);
    ((cli *)c)->o.backend = v;
    return LR_OK;
}

static lr_status on_steps(void *c, const char *f, const char *v)
{
    return on_int(f, v, 1, 1 << 20, &((cli *)c)->o.steps);
}

static lr_status on_check(void *c, const char *f, const char *v)
{
    ((cli *)c)->o.check_grads = true;
    return LR_OK;
}

static lr_status on_data(void *c, const char *f, const char *v)
{
    if (strcmp(v, "fashion-mnist") && strcmp(v, "synthetic"))
        return lr_fail(LR_ERR_USAGE, "%s: expected fashion-mnist or synthetic, got '%s'", f, v);
    ((cli *)c)->o.data = v;
    return LR_OK;
}

static lr_status on_data_dir(void *c, const char *f, const char *v)
{
    ((cli *)c)->o.data_dir = v;
    return LR_OK;
}

static lr_status on_epochs(void *c, const char *f, const char *v)
{
    return on_int(f, v, 1, 1000, &((cli *)c)->o.epochs);
}

static lr_status on_train_limit(void *c, const char *f, const char *v)
{
    return on_int(f, v, 1, 1 << 30, &((cli *)c)->o.train_limit);
}

static lr_status on_test_limit(void *c, const char *f, const char *v)
{
    return on_int(f, v, 1, 1 << 30, &((cli *)c)->o.test_limit);
}

static lr_status on_threads(void *c, const char *f, const char *v)
{
    return on_int(f, v, 1, 4096, &((cli *)c)->o.threads);
}

static lr_status on_lr(void *c, const char *f, const char *v)
{
    double x;
    LR_TRY(args_double(f, v, 1e-9, 10, &x));
    ((cli *)c)->o.hp.lr = (float)x;
    return LR_OK;
}

static lr_status on_optimizer(void *c, const char *f, const char *v)
{
    for (int k = 0; k < OPTIM_COUNT; k++)
        if (strcmp(v, cost_optim_name((plan_optim)k)) == 0) {
            ((cli *)c)->o.cfg.optim = (plan_optim)k;
            return LR_OK;
        }
    return lr_fail(LR_ERR_USAGE, "%s: expected sgd, momentum or adam, got '%s'", f, v);
}

static lr_status on_seed(void *c, const char *f, const char *v)
{
    int64_t x;
    LR_TRY(args_int(f, v, 0, INT64_MAX, &x));
    ((cli *)c)->o.hp.seed = (uint64_t)x;
    return LR_OK;
}

static lr_status on_workspace(void *c, const char *f, const char *v)
{
    return args_size(f, v, &((cli *)c)->o.cfg.workspace_bytes);
}

static lr_status on_no_column(void *c, const char *f, const char *v)
{
    ((cli *)c)->o.column = false;
    return LR_OK;
}

static lr_status on_deterministic(void *c, const char *f, const char *v)
{
    ((cli *)c)->o.deterministic = true;
    return LR_OK;
}

static lr_status on_dry_run(void *c, const char *f, const char *v)
{
    ((cli *)c)->o.dry_run = true;
    return LR_OK;
}

static lr_status on_profile(void *c, const char *f, const char *v)
{
    ((cli *)c)->o.profile = true;
    return LR_OK;
}

static lr_status on_json(void *c, const char *f, const char *v)
{
    ((cli *)c)->o.json = true;
    return LR_OK;
}

static lr_status on_quiet(void *c, const char *f, const char *v)
{
    ((cli *)c)->o.quiet = true;
    return LR_OK;
}

static lr_status on_help(void *c, const char *f, const char *v)
{
    ((cli *)c)->help = true;
    return LR_OK;
}

static lr_status on_version(void *c, const char *f, const char *v)
{
    ((cli *)c)->version = true;
    return LR_OK;
}

static const args_flag flags[] = {
    {"--net", "NAME|FILE", on_net, "network from the zoo or a .json file (required)"},
    {"--strategy", "S", on_strategy, "column checkpoint row 2ps overl 2ps-h overl-h (default 2ps)"},
    {"--rows", "N", on_rows, "row partitions (default: the planner's lowest-peak choice)"},
    {"--region", "LAYER", on_region, "last layer of the row region"},
    {"--bn", "MODE", on_bn, "exact (default) | stripe (approximate) | frozen (running stats)"},
    {"--segments", "N", on_segments, "checkpoint segments"},
    {"--boundaries", "B", on_boundaries, "row and 2ps: keep boundary rows for the backward (default), recompute them, or auto (chosen per stage)"},
    {"--offload", "WHAT", on_offload, "host memory for input (the batch), boundary (rows kept for backward), input,boundary, or auto: the set of the lowest device peak, sets within 1% of it going to the least copying (default none)"},
    {"--batch", "N", on_batch, "images per step (default 32)"},
    {"--input", "HxW", on_input, "input size (synthetic data)"},
    {"--backend", "B", on_backend, "cpu (default), cuda, or cuda-emulated (CUDA glue on the CPU)"},
    {"--steps", "N", on_steps, "training steps in step mode (default 1)"},
    {"--check-grads", NULL, on_check, "compare weight gradients with column training after step 1"},
    {"--data", "D", on_data, "synthetic (default) or fashion-mnist"},
    {"--data-dir", "DIR", on_data_dir, "Fashion-MNIST directory (default " DATA_FASHION_DIR ")"},
    {"--epochs", "E", on_epochs, "train E epochs on --data fashion-mnist, then test"},
    {"--train-limit", "K", on_train_limit, "use the first K training images"},
    {"--test-limit", "K", on_test_limit, "use the first K test images"},
    {"--lr", "X", on_lr, "learning rate (default 0.001)"},
    {"--optimizer", "O", on_optimizer, "sgd | momentum | adam (default)"},
    {"--seed", "N", on_seed, "weight init, dropout and shuffling seed (default 1)"},
    {"--threads", "N", on_threads, "threads of the CPU kernels, both runs (default: every core); they spin for 100 us between calls when each has a free CPU as the run starts, else sleep (the header says which, with the spin count; OMP_WAIT_POLICY or GOMP_SPINCOUNT set in the environment wins)"},
    {"--workspace", "SIZE", on_workspace, "planned kernel workspace (default: what the backend asks)"},
    {"--no-column", NULL, on_no_column, "skip the column-training comparison"},
    {"--deterministic", NULL, on_deterministic, "CUDA: deterministic algorithms only"},
    {"--dry-run", NULL, on_dry_run, "plan as the run would (workspace included), run nothing"},
    {"--profile", NULL, on_profile, "step mode, cpu or cuda-emulated backend: kernel calls and time per step by layer type and pass, then by layer with GFLOP/s, beside column's"},
    {"--json", NULL, on_json, "print one JSON object"},
    {"--quiet", NULL, on_quiet, "no progress on stderr"},
    {"--help", NULL, on_help, "this text"},
    {"--version", NULL, on_version, "print the version"},
    {NULL, NULL, NULL, NULL},
};

static const char *usage =
    "usage: lrcnn-validate --net NAME|FILE [options]\n"
    "\n"
    "Runs a strategy's schedule for real beside column training from the same weights and\n"
    "batches, and reports predicted vs measured memory, loss and gradient agreement, step\n"
    "times, and with --data fashion-mnist --epochs E the loss curve and test accuracy.\n"
    "\n"
    "examples:\n"
    "  lrcnn-validate --net tiny-vgg --strategy 2ps --rows 4 --backend cpu --steps 1 --check-grads\n"
    "  lrcnn-validate --net tiny-resnet --strategy overl-h --bn exact --check-grads --json\n"
    "  lrcnn-validate --net tiny-vgg --strategy 2ps --data fashion-mnist --epochs 1 --train-limit 4000\n"
    "\n"
    "options:\n";

/* How the OpenMP threads wait between kernel calls (waiting.h), chosen once, before the run.
 * libgomp's idle threads spin (GOMP_SPINCOUNT, 300000 by default: up to a millisecond here)
 * before they sleep, at every barrier and between parallel regions. On a machine whose cores are
 * shared with other programs a spinning thread takes the core that a descheduled one needs to
 * reach the barrier, and a row schedule, hundreds of kernel calls a step, stalls on that again
 * and again. 2 threads on 2 cores at load 2.9-4.0 (others' work), three runs each, ms per step
 * (row / column): tiny-vgg overl-h 682-970 / 39-129 with 100000 spins, 103-147 / 33-39 with
 * 10000, 43-54 / 21-32 with 1000, 43-44 / 21-28 passive; tiny-mix overl-h 45-1246 / 14-131,
 * 56-147 / 17-22, 35-59 / 10-12, 22-23 / 9. On an idle machine the other way round: a sleeping
 * thread's wake costs 55-100 us a region, and tiny-vgg 2ps took 1.41-1.45x column's step
 * sleeping (4 runs: 2ps 26.6-33.3 ms) against 1.24-1.41x spinning 3000 times with the kernels'
 * thresholds lowered to match (cpu_kernel.h; 7 runs, median 1.28x, 2ps 19.8-27.6 ms). So threads
 * spin (GOMP_SPINCOUNT: the spins of WAIT_SPIN_WINDOW_US, 3000 on that VM) when the machine has a
 * free CPU for each of them as the run starts, and sleep at once (OMP_WAIT_POLICY=passive) when it
 * has not. With two busy loops started beside a run spinning 3000 times, its 2ps or overl-h step
 * took 2.0-5.4x column's (tiny-vgg, tiny-mix; 1.2-2.4x sleeping; 10000 spins: up to 9.5x): a
 * machine that gets busy after the start is the case this choice does not see (set
 * OMP_WAIT_POLICY=passive for such runs).
 * libgomp reads the policy once, when it loads, so the program sets it and runs itself again;
 * a GOMP_SPINCOUNT or OMP_WAIT_POLICY already set is left alone, and if the exec fails the run
 * goes on with libgomp's default. So is a thread binding (OMP_PROC_BIND, OMP_PLACES,
 * GOMP_CPU_AFFINITY): libgomp has bound this first thread to one CPU as it loaded, the program
 * run again would inherit that mask, and all its threads would share that CPU (tiny-vgg column,
 * 2 threads, OMP_PROC_BIND=true: 20 ms a step against 14-15 ms). */
static void choose_wait(char **argv, const validate_options *o)
{
    if (wait_env_set())
        return;
    int cpus = omp_get_num_procs(), threads = o->threads > 0 ? o->threads : cpus;
    bool runs = !o->dry_run && threads > 1; /* else nothing waits: no need to look */
    wait_mode m = runs ? wait_mode_for(threads, cpus, wait_others_running()) : WAIT_SLEEP;
    char spins[16];
    snprintf(spins, sizeof spins, "%d", m == WAIT_SPIN ? wait_spin_count(wait_spin_ns()) : 0);
    if (m == WAIT_SPIN ? setenv("GOMP_SPINCOUNT", spins, 1) != 0
                       : setenv("OMP_WAIT_POLICY", "passive", 1) != 0)
        return;
    args_exec_self(argv);
}

int main(int argc, char **argv)
{
    heap_keep_freed();
    cli c;
    memset(&c, 0, sizeof c);
    validate_options_init(&c.o);
    lr_status s = args_parse(flags, argc, argv, &c);
    if (s == LR_OK && c.help) {
        fputs(usage, stdout);
        args_print_help(stdout, flags);
        puts("\nExit status: 0 ok, 1 runtime failure (including no GPU for --backend cuda), 2 bad usage or input.");
        return 0;
    }
    if (s == LR_OK && c.version) {
        printf("lrcnn-validate %s\n", LRCNN_VERSION);
        return 0;
    }
    if (s == LR_OK)
        choose_wait(argv, &c.o);
    if (s == LR_OK && c.region) {
        net_t *net;
        s = net_open(c.o.net ? c.o.net : "", &net);
        if (s == LR_OK) {
            c.o.req.region_end = net_find(net, c.region);
            if (c.o.req.region_end <= 0)
                s = lr_fail(LR_ERR_USAGE, "--region: no layer named '%s'", c.region);
            net_free(net);
        }
    }
    validate_result r;
    memset(&r, 0, sizeof r);
    if (s == LR_OK)
        s = validate_run(&c.o, &r);
    if (s == LR_OK) {
        if (c.o.json)
            validate_print_json(stdout, &c.o, &r);
        else
            validate_print(stdout, &c.o, &r);
    }
    validate_result_free(&r);
    if (s != LR_OK) {
        fprintf(stderr, "lrcnn-validate: %s\n", lr_last_error());
        return lr_exit_code(s);
    }
    return 0;
}
