/* test_reports.c - `--report DIR` and `--graph FILE`: the files a report holds and what they
 * must look like, the directory replaced whole or left alone, the missing-gnuplot error, the
 * row-dependency graph against the plan and the schedule, the per-layer breakdown against the
 * replay.
 *
 * Runs on tiny-vgg (every report in well under a second). Tests that run the binary take it
 * from $LRCNN_BIN (set by `make test`) and are skipped, visibly, without it.
 */
#include <dirent.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <graphviz/cgraph.h>
#include <json-c/json.h>

#include "analysis.h"
#include "graph.h"
#include "plot.h"
#include "report.h"
#include "schedule.h"

#define ALL_STRATEGIES ((1u << STRAT_COUNT) - 1)

/* ------------------------------------------------------------------ helpers */

static char tmp_dir[64];
static net_t *tiny_vgg;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int setup(void **state)
{
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/test_reports.XXXXXX");
    if (!mkdtemp(tmp_dir))
        return -1;
    return net_load(LRCNN_SRCDIR "/networks/tiny-vgg.json", &tiny_vgg) == LR_OK ? 0 : -1;
}

static int teardown(void **state)
{
    net_free(tiny_vgg);
    return nftw(tmp_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *tmp_path(const char *fmt, ...)
{
    static char paths[16][512];
    static int next;
    char *p = paths[next++ % 16];
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    snprintf(p, 512, "%s/%s", tmp_dir, name);
    return p;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *text = malloc((size_t)n + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
    text[n] = '\0';
    fclose(f);
    if (len)
        *len = (size_t)n;
    return text;
}

static void assert_png(const char *path)
{
    size_t n;
    char *b = read_file(path, &n);
    assert_true(n > 8);
    assert_memory_equal(b, "\x89PNG\r\n\x1a\n", 8);
    free(b);
}

static void assert_svg(const char *path)
{
    char *t = read_file(path, NULL);
    const char *s = t + strspn(t, " \t\r\n");
    assert_true(strncmp(s, "<?xml", 5) == 0 || strncmp(s, "<svg", 4) == 0);
    assert_non_null(strstr(t, "<svg"));
    assert_non_null(strstr(t, "</svg>"));
    free(t);
}

static void assert_contains(const char *path, const char *needle)
{
    char *t = read_file(path, NULL);
    if (!strstr(t, needle))
        fail_msg("%s does not contain '%s'", path, needle);
    free(t);
}

/* Entries of tmp_dir whose names start with prefix. */
static int entries_named(const char *prefix)
{
    DIR *d = opendir(tmp_dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

static void analyse(unsigned which, int batch, analysis_t *a)
{
    plan_config cfg = {.batch = batch, .dtype = DT_FP32, .optim = OPTIM_MOMENTUM, .bn = BN_EXACT};
    plan_request req = {0};
    assert_int_equal(analysis_run(tiny_vgg, &cfg, &req, which, ALLOC_EXACT, a), LR_OK);
}

static lr_status write_report(unsigned which, int64_t gpu_mem, const char *dir)
{
    analysis_t *a = malloc(sizeof *a);
    assert_non_null(a);
    analyse(which, 4, a);
    report_options opt = {.gpu_mem_bytes = gpu_mem};
    lr_status s = report_write(a, &opt, dir);
    free(a);
    return s;
}

/* A directory holding only an executable `gnuplot` script with the given body (or empty). */
static const char *path_dir(const char *name, const char *gnuplot_body)
{
    const char *dir = tmp_path("%s", name);
    mkdir(dir, 0755);
    if (gnuplot_body) {
        char script[600];
        snprintf(script, sizeof script, "%s/gnuplot", dir);
        FILE *f = fopen(script, "w");
        assert_non_null(f);
        fprintf(f, "#!/bin/sh\n%s\n", gnuplot_body);
        fclose(f);
        chmod(script, 0755);
    }
    return dir;
}

/* ------------------------------------------------------------------ the report */

static const char *const plots[] = {"timeline", "rows", "batch", "layers", "input"};

/* Every plot as PNG and SVG with its .gp and data, and report.md pointing at each image. */
static void test_report_holds_every_plot_its_script_and_data(void **state)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tmp_path("full"));
    assert_int_equal(write_report(ALL_STRATEGIES, 0, dir), LR_OK);
    for (size_t i = 0; i < sizeof plots / sizeof plots[0]; i++) {
        char p[600];
        snprintf(p, sizeof p, "%s/%s.png", dir, plots[i]);
        assert_png(p);
        snprintf(p, sizeof p, "%s/%s.svg", dir, plots[i]);
        assert_svg(p);
        snprintf(p, sizeof p, "%s/%s.gp", dir, plots[i]);
        assert_true(exists(p));
        snprintf(p, sizeof p, "](%s.png)", plots[i]);
        assert_contains(tmp_path("full/report.md"), p);
        snprintf(p, sizeof p, "(%s.svg)", plots[i]);
        assert_contains(tmp_path("full/report.md"), p);
    }
    for (int st = 0; st < STRAT_COUNT; st++)
        assert_true(exists(tmp_path("full/timeline-%s.csv", plan_strategy_name((plan_strategy)st))));
    assert_true(exists(tmp_path("full/timeline-peaks.csv")));
    assert_true(exists(tmp_path("full/rows.csv")));
    assert_true(exists(tmp_path("full/batch.csv")));
    assert_true(exists(tmp_path("full/layers.csv")));
    assert_int_equal(entries_named("full.tmp."), 0);
    /* input.csv: per side, each strategy's peak without and with offload and the host memory;
     * offloading never raises a plan's device peak at the same size (each strategy chooses by
     * the lowest peak with near-ties to 1%: its choice with offload is within 1% of the other) */
    size_t len;
    char *csv = read_file(tmp_path("full/input.csv"), &len);
    int lines = 0;
    for (char *line = strchr(csv, '\n'); line && line[1]; line = strchr(line + 1, '\n')) {
        long long v[1 + 3 * STRAT_COUNT];
        int n = 0;
        for (char *p = line + 1; n < 1 + 3 * STRAT_COUNT && *p && *p != '\n'; n++) {
            v[n] = strtoll(p, &p, 10);
            if (*p == ',')
                p++;
        }
        assert_int_equal(n, 1 + 3 * STRAT_COUNT);
        for (int k = 0; k < STRAT_COUNT; k++)
            assert_true(v[2 + 3 * k] <= v[1 + 3 * k] + v[1 + 3 * k] / 100);
        lines++;
    }
    assert_true(lines >= 4);
    free(csv);
}

/* Cell k (0: the strategy) of the table line that starts at `line`, into buf. */
static const char *md_cell(const char *line, int k, char *buf, size_t cap)
{
    const char *p = line + 1; /* past the leading '|' */
    for (int i = 0; i < k && p; i++) {
        p = strchr(p, '|');
        p = p ? p + 1 : NULL;
    }
    assert_non_null(p);
    const char *end = strchr(p, '|');
    assert_non_null(end);
    while (*p == ' ')
        p++;
    int n = (int)(end - p);
    while (n > 0 && p[n - 1] == ' ')
        n--;
    snprintf(buf, cap, "%.*s", n, p);
    return buf;
}

/* report.md opens with the marker and carries the strategy table, one row per strategy, with
 * the console table's columns: where compute goes and the region's last layer, its "*" (chosen
 * by the planner) escaped for Markdown. */
static void test_report_md_has_the_strategy_table(void **state)
{
    const char *dir = tmp_path("table");
    assert_int_equal(write_report((1u << STRAT_COLUMN) | (1u << STRAT_2PS), 0, dir), LR_OK);
    char *md = read_file(tmp_path("table/report.md"), NULL);
    assert_true(strncmp(md, REPORT_MARK, strlen(REPORT_MARK)) == 0);
    assert_non_null(strstr(md, "| strategy | peak | static | act@peak | vs col | compute | recompute "
                               "| BN passes | rows | region | peak at |"));
    const char *col = strstr(md, "\n| column | "), *two = strstr(md, "\n| 2ps | ");
    assert_non_null(col);
    assert_non_null(two);
    assert_null(strstr(md, "\n| overl | "));
    char cell[200];
    assert_string_equal(md_cell(col + 1, 9, cell, sizeof cell), "-");
    assert_string_equal(md_cell(col + 1, 6, cell, sizeof cell), "-");
    md_cell(two + 1, 9, cell, sizeof cell);
    assert_true(strncmp(cell, "pool", 4) == 0 && strcmp(cell + strlen(cell) - 2, "\\*") == 0);
    md_cell(two + 1, 8, cell, sizeof cell); /* rows: N, chosen */
    assert_true(strlen(cell) > 2 && strcmp(cell + strlen(cell) - 2, "\\*") == 0);
    free(md);
}

/* The scripts read their data by relative path: run in the directory, they remake the images,
 * and they name neither the temporary directory nor the report's own path. */
static void test_gp_scripts_rerun_in_the_report_directory(void **state)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tmp_path("rerun"));
    assert_int_equal(write_report(ALL_STRATEGIES, 0, dir), LR_OK);
    for (size_t i = 0; i < sizeof plots / sizeof plots[0]; i++) {
        char *gp = read_file(tmp_path("rerun/%s.gp", plots[i]), NULL);
        assert_null(strstr(gp, ".tmp."));
        assert_null(strstr(gp, tmp_dir));
        free(gp);
        assert_int_equal(unlink(tmp_path("rerun/%s.png", plots[i])), 0);
    }
    char cmd[800];
    snprintf(cmd, sizeof cmd, "cd '%s' && for s in timeline rows batch layers input; do gnuplot $s.gp || exit 1; done", dir);
    assert_int_equal(system(cmd), 0);
    for (size_t i = 0; i < sizeof plots / sizeof plots[0]; i++)
        assert_png(tmp_path("rerun/%s.png", plots[i]));
}

/* A second report replaces the first as a whole: files of strategies no longer selected and
 * files someone added are gone. */
static void test_existing_report_is_replaced_as_a_whole(void **state)
{
    const char *dir = tmp_path("again");
    assert_int_equal(write_report(ALL_STRATEGIES, 0, dir), LR_OK);
    FILE *f = fopen(tmp_path("again/notes.txt"), "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(write_report((1u << STRAT_COLUMN) | (1u << STRAT_2PS), 0, dir), LR_OK);
    assert_false(exists(tmp_path("again/notes.txt")));
    assert_false(exists(tmp_path("again/timeline-overl.csv")));
    assert_true(exists(tmp_path("again/timeline-2ps.csv")));
    assert_int_equal(entries_named("again."), 0);
}

/* A directory that is not a report is never replaced. */
static void test_unrelated_directory_is_left_alone(void **state)
{
    const char *dir = tmp_path("mine");
    mkdir(dir, 0755);
    FILE *f = fopen(tmp_path("mine/thesis.tex"), "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(write_report(1u << STRAT_COLUMN, 0, dir), LR_ERR_IO);
    assert_non_null(strstr(lr_last_error(), "not an lrcnn-sim report"));
    assert_true(exists(tmp_path("mine/thesis.tex")));
    assert_int_equal(entries_named("mine."), 0);
}

/* Without gnuplot on PATH: the one-line error, and no directory at all. */
static void test_missing_gnuplot_gives_the_error_and_no_directory(void **state)
{
    char *saved = strdup(getenv("PATH") ? getenv("PATH") : "");
    setenv("PATH", path_dir("empty-bin", NULL), 1);
    lr_status s = write_report(1u << STRAT_COLUMN, 0, tmp_path("nognuplot"));
    setenv("PATH", saved, 1);
    free(saved);
    assert_int_equal(s, LR_ERR_RUNTIME);
    assert_string_equal(lr_last_error(), "gnuplot not found on PATH: install gnuplot-nox "
                                         "(apt-get install gnuplot-nox) or omit --report");
    assert_false(exists(tmp_path("nognuplot")));
    assert_int_equal(entries_named("nognuplot"), 0);
}

/* A gnuplot that fails: its message in the error, the old report untouched, nothing left over. */
static void test_failing_gnuplot_keeps_the_old_report(void **state)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tmp_path("keep"));
    assert_int_equal(write_report(1u << STRAT_COLUMN, 0, dir), LR_OK);
    char *before = read_file(tmp_path("keep/report.md"), NULL);
    char *saved = strdup(getenv("PATH"));
    setenv("PATH", path_dir("bad-bin", "echo 'line 3: bad thing' >&2; exit 1"), 1);
    lr_status s = write_report(ALL_STRATEGIES, 0, dir);
    setenv("PATH", saved, 1);
    free(saved);
    assert_int_equal(s, LR_ERR_RUNTIME);
    assert_non_null(strstr(lr_last_error(), "line 3: bad thing"));
    char *after = read_file(tmp_path("keep/report.md"), NULL);
    assert_string_equal(before, after);
    assert_false(exists(tmp_path("keep/timeline-2ps.csv")));
    assert_int_equal(entries_named("keep."), 0);
    free(before);
    free(after);
}

/* The binary: PATH without gnuplot gives exit 1, exactly one line on stderr, no directory. */
static void test_binary_without_gnuplot_exits_1_with_one_line(void **state)
{
    const char *bin = getenv("LRCNN_BIN");
    if (!bin)
        skip();
    char cmd[1200];
    const char *err = tmp_path("stderr.txt");
    snprintf(cmd, sizeof cmd, "PATH='%s' '%s/lrcnn-sim' --net '%s/networks/tiny-vgg.json' --report '%s' >/dev/null 2>'%s'",
             path_dir("empty-bin2", NULL), bin, LRCNN_SRCDIR, tmp_path("cli-report"), err);
    int status = system(cmd);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    char *text = read_file(err, NULL);
    assert_string_equal(text, "lrcnn-sim: gnuplot not found on PATH: install gnuplot-nox "
                              "(apt-get install gnuplot-nox) or omit --report\n");
    free(text);
    unlink(err);
    assert_false(exists(tmp_path("cli-report")));
}

/* --gpu-mem: drawn in the batch plot, and the largest batch that fits is the last one whose
 * closed-form peak is within it (checked one batch beyond). */
static void test_gpu_mem_reports_the_largest_batch_that_fits(void **state)
{
    const char *dir = tmp_path("gpu");
    int64_t gpu = 8 << 20; /* tiny-vgg at batch 4 peaks near 2 MiB */
    assert_int_equal(write_report(1u << STRAT_COLUMN, gpu, dir), LR_OK);
    assert_contains(tmp_path("gpu/batch.gp"), "GPU memory");
    char *md = read_file(tmp_path("gpu/report.md"), NULL);
    const char *at = strstr(md, "Largest batch within");
    assert_non_null(at);
    at = strstr(at, ": column ");
    assert_non_null(at);
    int fits = atoi(at + strlen(": column "));
    free(md);
    assert_true(fits > 1);
    plan_config cfg = {.batch = fits, .dtype = DT_FP32, .optim = OPTIM_MOMENTUM, .bn = BN_EXACT};
    plan_request req = {.strategy = STRAT_COLUMN};
    plan_choice c;
    assert_int_equal(strategy_choose(tiny_vgg, &cfg, &req, &c), LR_OK);
    assert_true(c.cost.peak_bytes <= gpu);
    cfg.batch = fits + 1;
    assert_int_equal(strategy_choose(tiny_vgg, &cfg, &req, &c), LR_OK);
    assert_true(c.cost.peak_bytes > gpu);
}

/* ------------------------------------------------------------------ resident at the peak */

/* The per-layer split at the column peak adds up to the replayed peak, and its weights part is
 * the plan's static bytes (weights, their gradients, optimizer state, BN running stats). */
static void test_resident_at_column_peak_adds_up_to_the_peak(void **state)
{
    analysis_t *a = malloc(sizeof *a);
    assert_non_null(a);
    analyse(1u << STRAT_COLUMN, 8, a);
    plan_t *plan;
    sched_t s;
    assert_int_equal(analysis_schedule(a, &a->e[0], &plan, &s), LR_OK);
    sim_result r;
    assert_int_equal(sim_replay(&s, ALLOC_EXACT, &r), LR_OK);
    int n = tiny_vgg->n_nodes;
    plot_resident *by = calloc((size_t)n + 1, sizeof *by);
    assert_int_equal(plot_resident_at(&s, r.peak_step, n, by), r.peak_bytes);
    int64_t weights = 0, grads = 0;
    for (int l = 0; l <= n; l++) {
        weights += by[l].weights;
        grads += by[l].gradients;
    }
    assert_int_equal(weights, a->e[0].choice.cost.static_bytes);
    assert_int_equal(grads, r.class_at_peak[TC_ACT_GRAD]);
    free(by);
    sched_free(&s);
    plan_free(plan);
    free(a);
}

/* ------------------------------------------------------------------ --emit-schedule */

/* A plan of `net` and its schedule, with the analysis entry the JSON takes its prediction from. */
typedef struct {
    net_t *net;
    analysis_t a;
    plan_t *plan;
    sched_t s;
} emitted;

static void emit_plan(const char *net, plan_strategy st, int rows, emitted *e)
{
    char path[512];
    snprintf(path, sizeof path, LRCNN_SRCDIR "/networks/%s.json", net);
    assert_int_equal(net_load(path, &e->net), LR_OK);
    plan_config cfg = {.batch = 3, .dtype = DT_FP32, .optim = OPTIM_ADAM, .bn = BN_EXACT};
    plan_request req = {.strategy = st, .rows = rows};
    assert_int_equal(analysis_run(e->net, &cfg, &req, 1u << st, ALLOC_EXACT, &e->a), LR_OK);
    assert_int_equal(analysis_schedule(&e->a, &e->a.e[0], &e->plan, &e->s), LR_OK);
}

static void emitted_free(emitted *e)
{
    sched_free(&e->s);
    plan_free(e->plan);
    net_free(e->net);
}

static json_object *key(json_object *o, const char *k)
{
    json_object *v;
    if (!json_object_object_get_ex(o, k, &v))
        fail_msg("no key '%s'", k);
    return v;
}

/* The value of field `name` in a row, found through the file's own field list. */
static json_object *field(json_object *fields, json_object *row, const char *name)
{
    for (size_t i = 0; i < json_object_array_length(fields); i++)
        if (strcmp(json_object_get_string(json_object_array_get_idx(fields, i)), name) == 0)
            return json_object_array_get_idx(row, i);
    fail_msg("no field '%s'", name);
    return NULL;
}

static int64_t ifield(json_object *fields, json_object *row, const char *name)
{
    return json_object_get_int64(field(fields, row, name));
}

static const char *sfield(json_object *fields, json_object *row, const char *name)
{
    return json_object_get_string(field(fields, row, name));
}

static void assert_run_row(json_object *fields, json_object *row, const sched_run *r)
{
    json_object *in = field(fields, row, "in"), *din = field(fields, row, "din");
    assert_int_equal(json_object_array_length(in), r->n_in);
    assert_int_equal(json_object_array_length(din), r->n_in);
    for (int k = 0; k < r->n_in; k++) {
        assert_int_equal(json_object_get_int(json_object_array_get_idx(in, k)), r->in[k]);
        assert_int_equal(json_object_get_int(json_object_array_get_idx(din, k)), r->din[k]);
    }
    const struct {
        const char *name;
        int32_t v;
    } f[] = {{"out", r->out},       {"dout", r->dout},     {"param", r->param},
             {"param_grad", r->param_grad}, {"opt_state", r->opt_state}, {"running", r->running},
             {"aux", r->aux},       {"gred", r->gred},     {"own_lo", r->own_lo},
             {"own_hi", r->own_hi}, {"labels", r->labels}, {"loss", r->loss},
             {"workspace", r->workspace}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        assert_int_equal(ifield(fields, row, f[i].name), f[i].v);
}

/* tiny-resnet 2ps with exact BatchNorm (STATS and GSTATS passes, the global pooling summed row by
 * row: every RUN flag in use but the stripe, partial and frozen ones): the
 * file names the format and version and holds every tensor, step and run field for field. */
static void test_schedule_json_holds_every_field_of_every_row(void **state)
{
    emitted e;
    emit_plan("tiny-resnet", STRAT_2PS, 3, &e);
    const char *path = tmp_path("sched.json");
    assert_int_equal(schedule_write_json(e.plan, &e.s, &e.a.e[0], path), LR_OK);
    json_object *doc = json_object_from_file(path);
    assert_non_null(doc);
    assert_string_equal(json_object_get_string(key(doc, "format")), "lrcnn-schedule");
    assert_int_equal(json_object_get_int(key(doc, "version")), SCHEDULE_FORMAT_VERSION);
    assert_int_equal(json_object_get_int(key(doc, "step_begin")), e.s.step_begin);
    assert_int_equal(json_object_get_int(key(doc, "step_end")), e.s.step_end);
    assert_int_equal(json_object_get_int64(key(key(doc, "prediction"), "peak_bytes")),
                     e.a.e[0].choice.cost.peak_bytes);
    json_object *tf = key(doc, "tensor_fields"), *tensors = key(doc, "tensors");
    assert_int_equal(json_object_array_length(tensors), e.s.n_tensors);
    for (int i = 0; i < e.s.n_tensors; i++) {
        json_object *row = json_object_array_get_idx(tensors, i);
        const sched_tensor *t = &e.s.tensors[i];
        assert_int_equal(ifield(tf, row, "node"), t->node);
        assert_int_equal(ifield(tf, row, "part"), t->part);
        assert_int_equal(ifield(tf, row, "row_lo"), t->row_lo);
        assert_int_equal(ifield(tf, row, "row_hi"), t->row_hi);
        assert_int_equal(ifield(tf, row, "bytes"), t->bytes);
        assert_string_equal(sfield(tf, row, "class"), sched_class_name((sched_class)t->cls));
        assert_string_equal(sfield(tf, row, "kind"), sched_kind_name((sched_kind)t->kind));
    }
    json_object *sf = key(doc, "step_fields"), *steps = key(doc, "steps");
    json_object *rf = key(doc, "run_fields"), *runs = key(doc, "runs");
    assert_int_equal(json_object_array_length(steps), e.s.n_steps);
    assert_int_equal(json_object_array_length(runs), e.s.n_runs);
    unsigned flags = 0;
    for (int i = 0; i < e.s.n_steps; i++) {
        json_object *row = json_object_array_get_idx(steps, i);
        const sched_step *p = &e.s.steps[i];
        assert_string_equal(sfield(sf, row, "op"), sched_op_name((sched_op)p->op));
        assert_string_equal(sfield(sf, row, "pass"), sched_pass_name((sched_pass)p->pass));
        assert_int_equal(ifield(sf, row, "flags"), p->flags);
        assert_int_equal(json_object_get_boolean(field(sf, row, "accumulate")), p->accumulate);
        assert_int_equal(ifield(sf, row, "node"), p->node);
        assert_int_equal(ifield(sf, row, "part"), p->part);
        assert_int_equal(ifield(sf, row, "stage"), p->stage);
        assert_int_equal(ifield(sf, row, "row_lo"), p->row_lo);
        assert_int_equal(ifield(sf, row, "row_hi"), p->row_hi);
        assert_int_equal(ifield(sf, row, "t"), p->t);
        assert_int_equal(ifield(sf, row, "src"), p->src);
        assert_int_equal(ifield(sf, row, "run"), p->run);
        assert_int_equal(ifield(sf, row, "flops"), p->flops);
        if (p->op == STEP_RUN)
            assert_run_row(rf, json_object_array_get_idx(runs, p->run), &e.s.runs[p->run]);
        flags |= p->flags;
    }
    assert_int_equal(flags, RUN_NO_WGRAD | RUN_BN_GLOBAL | RUN_FINALIZE | RUN_STATS_ACC | RUN_GSTATS_ACC |
                                RUN_ROW_SUM);
    json_object_put(doc);
    emitted_free(&e);
}

/* The nodes carry every op parameter an executor needs: tiny-mix's dilated grouped conv, its
 * 3x5 kernel with [1, 2] padding, the upsampling factor, BatchNorm's eps and momentum. */
static void test_schedule_json_nodes_have_op_parameters(void **state)
{
    emitted e;
    emit_plan("tiny-mix", STRAT_OVERL, 2, &e);
    const char *path = tmp_path("mix.json");
    assert_int_equal(schedule_write_json(e.plan, &e.s, &e.a.e[0], path), LR_OK);
    json_object *doc = json_object_from_file(path);
    assert_non_null(doc);
    json_object *nodes = key(key(doc, "net"), "nodes");
    assert_int_equal(json_object_array_length(nodes), e.net->n_nodes);
    const char *want[][2] = {
        {"conv2", "\"dilation\":[2,2],\"groups\":2"},
        {"conv3", "\"kernel\":[3,5],\"stride\":[2,2],\"pad\":[1,2]"},
        {"up", "\"scale\":2"},
        {"apool", "\"output\":[3,3]"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        json_object *n = json_object_array_get_idx(nodes, net_find(e.net, want[i][0]));
        const char *text = json_object_to_json_string_ext(n, JSON_C_TO_STRING_PLAIN);
        if (!strstr(text, want[i][1]))
            fail_msg("%s: %s lacks %s", want[i][0], text, want[i][1]);
    }
    json_object *bn = json_object_array_get_idx(nodes, net_find(e.net, "bn3"));
    assert_true(json_object_get_double(key(bn, "eps")) == 1e-5);
    assert_true(json_object_get_double(key(bn, "momentum")) == 0.1);
    json_object_put(doc);
    emitted_free(&e);
}

/* A value the format has no name for (here a pass past PASS_COUNT) is refused naming the step
 * and the field, and no file is left behind (written all or nothing). */
static void test_schedule_json_refuses_a_value_without_a_name(void **state)
{
    emitted e;
    emit_plan("tiny-vgg", STRAT_ROW, 2, &e);
    int i = e.s.step_begin;
    while (e.s.steps[i].op != STEP_RUN)
        i++;
    e.s.steps[i].pass = PASS_COUNT;
    const char *path = tmp_path("unnamed.json");
    assert_int_equal(schedule_write_json(e.plan, &e.s, &e.a.e[0], path), LR_ERR_RUNTIME);
    char want[64];
    snprintf(want, sizeof want, "step %d: pass value %d has no name", i, PASS_COUNT);
    assert_non_null(strstr(lr_last_error(), want));
    assert_false(exists(path));
    emitted_free(&e);
}

/* ------------------------------------------------------------------ the graph */

/* tiny-vgg's plan for `st` with `rows` partitions over its whole row region (conv1_1..pool2). */
static plan_t *tiny_plan(plan_strategy st, int rows)
{
    plan_config cfg = {.batch = 4, .dtype = DT_FP32, .optim = OPTIM_MOMENTUM, .bn = BN_EXACT};
    plan_request req = {.strategy = st, .rows = rows, .region_end = plan_default_region_end(tiny_vgg)};
    plan_choice c;
    assert_int_equal(strategy_choose(tiny_vgg, &cfg, &req, &c), LR_OK);
    plan_t *plan;
    assert_int_equal(plan_build(tiny_vgg, &cfg, &c.spec, &plan), LR_OK);
    return plan;
}

static int dot_nodes_named(const char *path, const char *prefix)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    Agraph_t *g = agread(f, NULL);
    fclose(f);
    assert_non_null(g);
    int n = 0;
    for (Agnode_t *v = agfstnode(g); v; v = agnxtnode(g, v))
        n += strncmp(agnameof(v), prefix, strlen(prefix)) == 0;
    agclose(g);
    return n;
}

/* Boundary hand-overs in the schedule: forward COPY steps into a stripe's activation buffer. */
static int schedule_boundary_copies(const plan_t *plan)
{
    sched_t s;
    sched_init(&s);
    plan_emit(plan, &s);
    int n = 0;
    for (int i = s.step_begin; i < s.step_end; i++) {
        const sched_step *st = &s.steps[i];
        n += st->op == STEP_COPY && st->pass == PASS_FWD && s.tensors[st->t].cls == TC_ACTIVATION;
    }
    sched_free(&s);
    return n;
}

/* tiny-vgg 2ps with 4 rows: the 10 layers of the row region x 4 partitions, one node each in
 * the DOT file, and one boundary edge per hand-over the schedule copies. */
static void test_graph_tiny_vgg_2ps_4_rows_has_a_node_per_stripe(void **state)
{
    plan_t *plan = tiny_plan(STRAT_2PS, 4);
    graph_summary sum;
    const char *dot = tmp_path("tiny.dot");
    assert_int_equal(graph_write(plan, dot, &sum), LR_OK);
    assert_false(sum.compact);
    assert_int_equal(sum.stripe_nodes, 40);
    assert_int_equal(dot_nodes_named(dot, "stripe_"), 40);
    assert_contains(dot, "digraph");
    assert_contains(dot, "relu1_1  p1\\nrows 6-12\\nholds 4-12");
    assert_int_equal(sum.halo_nodes, 0);
    assert_true(sum.boundary_edges > 0);
    assert_int_equal(sum.boundary_edges, schedule_boundary_copies(plan));
    plan_free(plan);
}

/* Overlapping partitions: halo stripes, no boundary edges. */
static void test_graph_overl_marks_halo_stripes(void **state)
{
    plan_t *plan = tiny_plan(STRAT_OVERL, 4);
    graph_summary sum;
    assert_int_equal(graph_write(plan, tmp_path("overl.dot"), &sum), LR_OK);
    assert_int_equal(sum.boundary_edges, 0);
    assert_true(sum.halo_nodes > 0 && sum.halo_nodes < sum.stripe_nodes);
    assert_contains(tmp_path("overl.dot"), "halo");
    plan_free(plan);
}

/* SVG and PNG come from Graphviz's own layout; an unknown extension is a usage error that
 * writes nothing. */
static void test_graph_renders_svg_and_png(void **state)
{
    plan_t *plan = tiny_plan(STRAT_2PS, 4);
    assert_int_equal(graph_write(plan, tmp_path("tiny.svg"), NULL), LR_OK);
    assert_svg(tmp_path("tiny.svg"));
    assert_int_equal(graph_write(plan, tmp_path("tiny.png"), NULL), LR_OK);
    assert_png(tmp_path("tiny.png"));
    assert_int_equal(graph_write(plan, tmp_path("tiny.jpg"), NULL), LR_ERR_USAGE);
    assert_false(exists(tmp_path("tiny.jpg")));
    assert_int_equal(entries_named("tiny.svg.tmp"), 0);
    plan_free(plan);
}

/* Past GRAPH_FULL_MAX stripes the graph draws a node per block of layers: tiny-vgg at 16 rows
 * has 160 stripes, and two blocks (conv1_1..pool1, conv2_1..pool2) x 8 shown partitions. */
static void test_graph_compacts_large_plans(void **state)
{
    plan_t *plan = tiny_plan(STRAT_2PS, 16);
    graph_summary sum;
    const char *dot = tmp_path("compact.dot");
    assert_int_equal(graph_write(plan, dot, &sum), LR_OK);
    assert_true(sum.compact);
    assert_int_equal(sum.stripe_nodes, 2 * 5); /* partitions 0, 1, 2, 14, 15 */
    assert_int_equal(dot_nodes_named(dot, "block_"), 10);
    assert_int_equal(dot_nodes_named(dot, "more_"), 2);
    plan_free(plan);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_report_holds_every_plot_its_script_and_data),
        cmocka_unit_test(test_report_md_has_the_strategy_table),
        cmocka_unit_test(test_gp_scripts_rerun_in_the_report_directory),
        cmocka_unit_test(test_existing_report_is_replaced_as_a_whole),
        cmocka_unit_test(test_unrelated_directory_is_left_alone),
        cmocka_unit_test(test_missing_gnuplot_gives_the_error_and_no_directory),
        cmocka_unit_test(test_failing_gnuplot_keeps_the_old_report),
        cmocka_unit_test(test_binary_without_gnuplot_exits_1_with_one_line),
        cmocka_unit_test(test_gpu_mem_reports_the_largest_batch_that_fits),
        cmocka_unit_test(test_resident_at_column_peak_adds_up_to_the_peak),
        cmocka_unit_test(test_graph_tiny_vgg_2ps_4_rows_has_a_node_per_stripe),
        cmocka_unit_test(test_graph_overl_marks_halo_stripes),
        cmocka_unit_test(test_graph_renders_svg_and_png),
        cmocka_unit_test(test_graph_compacts_large_plans),
        cmocka_unit_test(test_schedule_json_holds_every_field_of_every_row),
        cmocka_unit_test(test_schedule_json_nodes_have_op_parameters),
        cmocka_unit_test(test_schedule_json_refuses_a_value_without_a_name),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
