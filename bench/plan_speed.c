/* plan_speed.c - how fast lrcnn plans: medians (and min, max) over repeated runs of
 *   0. whole lrcnn-sim processes, as a user runs them (the one next to this binary, output to
 *      /dev/null): `--net resnet101 --batch 256` and `--net resnet50 --batch 256` (every
 *      strategy chosen, exact BN, emitted and replayed), and `--net resnet101 --batch 256 --fit
 *      h100-80gb`; the three are run in turn within each repetition, so load changes hit all
 *   1. every strategy chosen for resnet101 at batch 256 (strategy_choose: region end and N
 *      search, checkpoint segments, the hybrids' search), --bn exact and --bn stripe; and the
 *      same plus emitting and replaying every schedule (analysis_run)
 *   2. the rows-by-batch sweep `lrcnn-sim --net resnet50 --sweep rows=1..32 --sweep
 *      batch=8,16,...,1024` (32 x 8 points, the row strategies)
 *   3. --strategy auto for resnet50 at batch 256 (default: exact BN, compute <= 1.5x), and with
 *      --bn stripe, --budget 8GiB
 *   4. --fit h100-80gb for every strategy on resnet50 (from each strategy's plan at batch 256),
 *      exact and stripe BN
 * prints a table (ms) with the load average before and after, and writes it to the file named
 * by argv[1] (default bench/results/plan_speed.txt). OMP_NUM_THREADS applies (auto's probes,
 * the region searches and --fit's questions run in parallel); the thread count is printed.
 *
 * Usage: make bench   (or build/bin/plan_speed [OUT] [REPEATS])
 * Deliberately not here: correctness (tests/test_auto.c), GPU runs (bench/gpu.sh).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "clock.h"
#include "heap.h"
#include "fit.h"
#include "sim_cli.h"

#define MAX_RUNS 64

typedef struct {
    const char *what;
    double ms[MAX_RUNS];
    int n;
    char note[160];
} timing;

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(timing *t)
{
    qsort(t->ms, (size_t)t->n, sizeof t->ms[0], by_value);
    return t->n % 2 ? t->ms[t->n / 2] : (t->ms[t->n / 2 - 1] + t->ms[t->n / 2]) / 2;
}

static void die(const char *what)
{
    fprintf(stderr, "plan_speed: %s: %s\n", what, lr_last_error());
    exit(1);
}

static net_t *open_net(const char *name)
{
    net_t *net;
    if (net_open(name, &net) != LR_OK)
        die(name);
    return net;
}

static plan_config config(int batch, plan_bn bn)
{
    plan_config c = {.batch = batch, .dtype = DT_FP32, .optim = OPTIM_MOMENTUM, .bn = bn};
    return c;
}

/* ------------------------------------------------------------------ what is timed */

static void choose_all(const net_t *net, const plan_config *cfg, plan_choice *out)
{
    for (int st = 0; st < STRAT_COUNT; st++) {
        plan_request req = {.strategy = (plan_strategy)st};
        if (strategy_choose(net, cfg, &req, &out[st]) != LR_OK)
            die(plan_strategy_name((plan_strategy)st));
    }
}

static void analyse_all(const net_t *net, const plan_config *cfg, analysis_t *a)
{
    plan_request req = {.strategy = STRAT_COLUMN};
    if (analysis_run(net, cfg, &req, (1u << STRAT_COUNT) - 1, ALLOC_EXACT, a) != LR_OK)
        die("analysis_run");
}

/* The sweep exactly as lrcnn-sim runs it, output to /dev/null. */
static void sweep(void)
{
    char *argv[] = {"lrcnn-sim", "--net", "resnet50", "--sweep", "rows=1..32", "--sweep",
                    "batch=8,16,32,64,128,256,512,1024", "--format", "csv", "--output", "/dev/null"};
    sim_options o;
    sim_options_init(&o);
    if (args_parse(sim_flags, (int)(sizeof argv / sizeof argv[0]), argv, &o) != LR_OK ||
        sim_cli_run(&o) != LR_OK)
        die("sweep");
}

static auto_result run_auto(const net_t *net, const plan_config *cfg, double cap, int64_t budget)
{
    auto_request req = {.max_overhead = cap, .budget_bytes = budget};
    auto_result r;
    if (auto_search(net, cfg, &req, &r) != LR_OK)
        die("auto_search");
    return r;
}

static void fit_all(const net_t *net, const plan_config *cfg, const plan_choice *plans,
                    fit_result *out)
{
    fit_target t[STRAT_COUNT];
    memset(t, 0, sizeof t);
    for (int st = 0; st < STRAT_COUNT; st++) {
        t[st].strategy = (plan_strategy)st;
        t[st].hint = plans[st].spec, t[st].hint_bn = cfg->bn, t[st].has_hint = true;
    }
    int64_t budget = device_find("h100-80gb")->bytes - FIT_DEFAULT_RESERVE_BYTES;
    if (fit_run_all(net, cfg, t, STRAT_COUNT, budget, out, NULL, NULL) != LR_OK)
        die("fit_run_all");
}

/* ------------------------------------------------------------------ whole processes */

/* Runs `sim` with argv (output to /dev/null) and returns its wall time in ms. (fork and exec:
 * spawn.h needs the system's sched.h, which sim/'s shadows here.) */
static double run_process(const char *sim, char *const *argv)
{
    fflush(NULL);
    double t0 = lr_now_ms();
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd < 0 || dup2(fd, 1) < 0)
            _exit(127);
        execv(sim, argv);
        _exit(127);
    }
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        fprintf(stderr, "plan_speed: %s %s %s failed\n", sim, argv[1], argv[2]);
        exit(1);
    }
    return lr_now_ms() - t0;
}

/* lrcnn-sim next to this binary (argv0's directory). */
static void sim_path(const char *argv0, char *out, size_t cap)
{
    const char *slash = strrchr(argv0, '/');
    int dir = slash ? (int)(slash - argv0) : 1;
    snprintf(out, cap, "%.*s/lrcnn-sim", dir, slash ? argv0 : ".");
}

static void time_processes(const char *sim, timing *t, int reps)
{
    char *r101[] = {"lrcnn-sim", "--net", "resnet101", "--batch", "256", NULL};
    char *r50[] = {"lrcnn-sim", "--net", "resnet50", "--batch", "256", NULL};
    char *fit[] = {"lrcnn-sim", "--net", "resnet101", "--batch", "256", "--fit", "h100-80gb", NULL};
    for (int r = 0; r < reps; r++) {
        t[0].ms[t[0].n++] = run_process(sim, r101);
        t[1].ms[t[1].n++] = run_process(sim, r50);
        t[2].ms[t[2].n++] = run_process(sim, fit);
    }
    snprintf(t[0].note, sizeof t[0].note, "target 200 ms");
    snprintf(t[1].note, sizeof t[1].note, "target 100 ms");
    snprintf(t[2].note, sizeof t[2].note, "target 300 ms");
}

/* ------------------------------------------------------------------ the runs */

typedef struct {
    net_t *r101, *r50;
    plan_choice plans50[BN_COUNT][STRAT_COUNT]; /* --fit starts from these */
    analysis_t *a;
} bench;

static void time_choose(bench *b, timing *t, plan_bn bn, int reps)
{
    plan_config cfg = config(256, bn);
    plan_choice c[STRAT_COUNT];
    for (int r = 0; r < reps; r++) {
        double t0 = lr_now_ms();
        choose_all(b->r101, &cfg, c);
        t->ms[t->n++] = lr_now_ms() - t0;
    }
}

static void time_analysis(bench *b, timing *t, plan_bn bn, int reps)
{
    plan_config cfg = config(256, bn);
    for (int r = 0; r < reps; r++) {
        double t0 = lr_now_ms();
        analyse_all(b->r101, &cfg, b->a);
        t->ms[t->n++] = lr_now_ms() - t0;
    }
}

static void time_auto(bench *b, timing *t, plan_bn bn, double cap, int64_t budget, int reps)
{
    plan_config cfg = config(256, bn);
    auto_result r;
    for (int k = 0; k < reps; k++) {
        double t0 = lr_now_ms();
        r = run_auto(b->r50, &cfg, cap, budget);
        t->ms[t->n++] = lr_now_ms() - t0;
    }
    snprintf(t->note, sizeof t->note, "%s, %.2f GiB at %.2fx, %d evaluations", auto_kind_name(&r.best.spec),
             r.best.cost.peak_bytes / 1073741824.0, r.best.flops_ratio, r.n_evals);
}

static void time_fit(bench *b, timing *t, plan_bn bn, int reps)
{
    plan_config cfg = config(256, bn);
    fit_result res[STRAT_COUNT];
    for (int r = 0; r < reps; r++) {
        double t0 = lr_now_ms();
        fit_all(b->r50, &cfg, b->plans50[bn], res);
        t->ms[t->n++] = lr_now_ms() - t0;
    }
    int evals = 0, choices = 0;
    for (int st = 0; st < STRAT_COUNT; st++)
        evals += res[st].n_evals, choices += res[st].n_choices;
    snprintf(t->note, sizeof t->note, "%d evaluations, %d strategy choices; 2ps: batch %d, %dx%d",
             evals, choices, res[STRAT_2PS].max_batch, res[STRAT_2PS].max_square_input,
             res[STRAT_2PS].max_square_input);
}

static void time_sweep(timing *t, int reps)
{
    for (int r = 0; r < reps; r++) {
        double t0 = lr_now_ms();
        sweep();
        t->ms[t->n++] = lr_now_ms() - t0;
    }
    snprintf(t->note, sizeof t->note, "256 points x 5 row strategies, exact BN");
}

static void report(FILE *f, timing *t, int n, int threads, const double *load)
{
    char host[128] = "?";
    gethostname(host, sizeof host);
    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    fprintf(f, "plan_speed: %s, %s, %ld CPUs online, %d OpenMP threads, load average %.2f "
            "before, %.2f after\n", date, host, sysconf(_SC_NPROCESSORS_ONLN), threads, load[0],
            load[1]);
    fprintf(f, "%-52s %9s %9s %9s %5s  %s\n", "what", "median", "min", "max", "runs", "");
    for (int k = 0; k < n; k++) {
        double med = median(&t[k]);
        fprintf(f, "%-52s %9.1f %9.1f %9.1f %5d  %s\n", t[k].what, med, t[k].ms[0],
                t[k].ms[t[k].n - 1], t[k].n, t[k].note);
    }
    fprintf(f, "(ms; every strategy = column, checkpoint, row, 2ps, overl, 2ps-h, overl-h)\n");
}

int main(int argc, char **argv)
{
    /* as lrcnn-sim does: the in-process runs below would otherwise pay page faults lrcnn-sim does
     * not (the resnet50 --bn stripe fit: 1.96 s in the 16:37 UTC record, 1.07 s in a run at
     * 18:26, against the program's 0.29 s) */
    heap_keep_freed();
    static const char usage[] = "usage: plan_speed [OUT] [REPEATS]   (OUT default "
                                "bench/results/plan_speed.txt, REPEATS 1..%d, default 5)\n";
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf(usage, MAX_RUNS);
        return 0;
    }
    char *end = NULL;
    long asked = argc > 2 ? strtol(argv[2], &end, 10) : 5;
    const char *bad = argc > 3                                                  ? argv[3]
                      : argc > 1 && argv[1][0] == '-'                           ? argv[1]
                      : argc > 2 && (*end != '\0' || asked < 1 || asked > MAX_RUNS) ? argv[2]
                                                                                : NULL;
    if (bad) {
        fprintf(stderr, "plan_speed: %s: expected [OUT] [REPEATS 1..%d] (see --help)\n", bad,
                MAX_RUNS);
        return 2;
    }
    const char *out = argc > 1 ? argv[1] : "bench/results/plan_speed.txt";
    int reps = (int)asked;
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    bench b = {.r101 = open_net("resnet101"), .r50 = open_net("resnet50"), .a = malloc(sizeof(analysis_t))};
    if (!b.a)
        die("malloc");
    for (int bn = 0; bn < BN_COUNT; bn++) {
        plan_config cfg = config(256, (plan_bn)bn);
        choose_all(b.r50, &cfg, b.plans50[bn]);
    }
    double load[2] = {0, 0};
    getloadavg(&load[0], 1);
    timing t[] = {
        {.what = "lrcnn-sim --net resnet101 --batch 256 (process)"},
        {.what = "lrcnn-sim --net resnet50 --batch 256 (process)"},
        {.what = "lrcnn-sim --net resnet101 --fit h100-80gb (process)"},
        {.what = "resnet101 b256, every strategy chosen, bn exact"},
        {.what = "resnet101 b256, every strategy chosen, bn stripe"},
        {.what = "resnet101 b256, chosen + emitted + replayed, bn exact"},
        {.what = "resnet101 b256, chosen + emitted + replayed, bn stripe"},
        {.what = "resnet50 sweep rows=1..32 x batch=8..1024"},
        {.what = "resnet50 b256 auto (bn exact, <= 1.5x)"},
        {.what = "resnet50 b256 auto --bn stripe (<= 1.5x)"},
        {.what = "resnet50 b256 auto --budget 8GiB (bn exact)"},
        {.what = "resnet50 --fit h100-80gb, every strategy, bn exact"},
        {.what = "resnet50 --fit h100-80gb, every strategy, bn stripe"},
    };
    int n = (int)(sizeof t / sizeof t[0]);
    int heavy = reps < 3 ? reps : 3; /* the runs of a second or more */
    char sim[1024];
    sim_path(argv[0], sim, sizeof sim);
    time_processes(sim, &t[0], heavy);
    time_choose(&b, &t[3], BN_EXACT, heavy);
    time_choose(&b, &t[4], BN_STRIPE, reps);
    time_analysis(&b, &t[5], BN_EXACT, heavy);
    time_analysis(&b, &t[6], BN_STRIPE, reps);
    time_sweep(&t[7], heavy);
    time_auto(&b, &t[8], BN_EXACT, 0, 0, 3 * reps);
    time_auto(&b, &t[9], BN_STRIPE, 0, 0, reps);
    time_auto(&b, &t[10], BN_EXACT, 0, (int64_t)8 << 30, 3 * reps);
    time_fit(&b, &t[11], BN_EXACT, heavy);
    time_fit(&b, &t[12], BN_STRIPE, reps);
    getloadavg(&load[1], 1);
    report(stdout, t, n, threads, load);
    FILE *f = fopen(out, "w");
    if (!f) {
        fprintf(stderr, "plan_speed: cannot write %s\n", out);
        return 1;
    }
    report(f, t, n, threads, load);
    fclose(f);
    printf("written to %s\n", out);
    net_free(b.r101), net_free(b.r50), free(b.a);
    return 0;
}
