/* report.c - the report directory and report.md (see report.h). */
#include "report.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "outfile.h"
#include "plot.h"
#include "summary.h"

#define REPORT_PLOTS 5

/* ------------------------------------------------------------------ the directory */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* Removes a directory tree this run made or an earlier report (checked by the caller). */
static void remove_tree(const char *path)
{
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static bool is_empty_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return false;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n == 0;
}

static bool is_report_dir(const char *path)
{
    char md[PATH_MAX + 16], head[64] = "";
    snprintf(md, sizeof md, "%s/report.md", path);
    FILE *f = fopen(md, "r");
    if (!f)
        return false;
    bool ok = fgets(head, sizeof head, f) && strncmp(head, REPORT_MARK, strlen(REPORT_MARK)) == 0;
    fclose(f);
    return ok;
}

/* LR_OK when dir is absent (in an existing directory), or a directory we may replace; *exists
 * says which. */
static lr_status check_target(const char *dir, bool *exists)
{
    struct stat st;
    *exists = stat(dir, &st) == 0;
    if (!*exists && errno != ENOENT && errno != ENOTDIR) /* ENOTDIR: lr_make_parents names it */
        return lr_fail(LR_ERR_IO, "--report %s: %s", dir, strerror(errno));
    if (!*exists)
        return lr_make_parents(dir, "--report");
    if (!S_ISDIR(st.st_mode))
        return lr_fail(LR_ERR_IO, "--report %s: exists and is not a directory", dir);
    if (!is_empty_dir(dir) && !is_report_dir(dir))
        return lr_fail(LR_ERR_IO, "--report %s: exists and is not an lrcnn-sim report "
                                  "(no report.md written by lrcnn-sim); choose another directory",
                       dir);
    return LR_OK;
}

/* Puts the finished tmp directory at dir: an atomic exchange when dir exists (the old report
 * ends up in tmp, which the caller removes), else a rename. */
static lr_status move_into_place(const char *tmp, const char *dir, bool exists)
{
    if (!exists && rename(tmp, dir) == 0)
        return LR_OK;
    if (exists && renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) == 0)
        return LR_OK;
    if (exists && (errno == EINVAL || errno == ENOSYS)) {
        /* a file system without RENAME_EXCHANGE: set the old one aside, then rename */
        char old[PATH_MAX + 32];
        snprintf(old, sizeof old, "%s.old.%ld", dir, (long)getpid());
        if (rename(dir, old) == 0) {
            if (rename(tmp, dir) == 0) {
                remove_tree(old);
                return LR_OK;
            }
            int err = errno;
            rename(old, dir);
            errno = err;
        }
    }
    return lr_fail(LR_ERR_IO, "--report %s: cannot move the new report into place: %s", dir,
                   strerror(errno));
}

/* ------------------------------------------------------------------ report.md */

/* The region cell: a trailing "*" (chosen by the planner) escaped for Markdown. */
static const char *md_region(const analysis_t *a, const plan_choice *ch, char *buf, size_t cap)
{
    char plain[160];
    const char *r = summary_region(a->net, ch, plain, sizeof plain);
    size_t n = strlen(r);
    bool star = n > 0 && r[n - 1] == '*';
    snprintf(buf, cap, "%.*s%s", (int)(n - star), r, star ? "\\*" : "");
    return buf;
}

static void md_table(FILE *f, const analysis_t *a)
{
    fprintf(f, "| strategy | peak | static | act@peak | vs col | compute | recompute | BN passes "
               "| rows | region | peak at |\n"
               "|---|--:|--:|--:|--:|--:|--:|--:|---|---|---|\n");
    for (int i = 0; i < a->n; i++) {
        const analysis_entry *e = &a->e[i];
        const plan_cost *c = &e->choice.cost;
        int64_t peak = e->modelled.peak_bytes;
        int64_t act = peak - c->static_bytes - c->input_bytes - c->workspace_bytes;
        char b1[32], b2[32], b3[32], rows[256], where[160], rec[32], bn[48], region[168];
        summary_rows(a->net, &a->cfg, &e->choice.spec, rows, sizeof rows);
        summary_extra_text(a, c, rec, sizeof rec, bn, sizeof bn);
        fprintf(f, "| %s | %s | %s | %s | %.1f%% | %.2fx | %s | %s | %s%s | %s | %s%s |\n",
                plan_strategy_name(e->strategy), summary_bytes(peak, b1, sizeof b1),
                summary_bytes(c->static_bytes, b2, sizeof b2), summary_bytes(act, b3, sizeof b3),
                a->column_peak > 0 ? 100.0 * (double)peak / (double)a->column_peak : 0.0,
                a->column_flops > 0 ? (double)c->flops / (double)a->column_flops : 0.0, rec, bn,
                rows, e->choice.rows_chosen && strcmp(rows, "-") != 0 ? "\\*" : "",
                md_region(a, &e->choice, region, sizeof region),
                summary_where(a->net, c->peak_pass, c->peak_node, c->peak_part, where, sizeof where),
                e->approximate ? " (approximate: stripe BN)" : "");
    }
}

static void md_header(FILE *f, const analysis_t *a)
{
    const net_t *net = a->net;
    char b[32];
    fprintf(f, "%s: made by lrcnn-sim --report; the whole directory is replaced when it is remade -->\n",
            REPORT_MARK);
    fprintf(f, "# %s, batch %d: training memory by strategy\n\n", net->name, a->cfg.batch);
    fprintf(f, "%s: %.1fM params, input %dx%dx%d, batch %d, %s, %s, bn %s, allocator %s. "
               "Column peak %s.\n\n",
            net->name, (double)net->params / 1e6, net->nodes[0].c, net->nodes[0].h, net->nodes[0].w,
            a->cfg.batch, cost_dtype_name(a->cfg.dtype), cost_optim_name(a->cfg.optim),
            plan_bn_name(a->cfg.bn), sim_allocator_name(a->allocator),
            summary_bytes(a->column_peak, b, sizeof b));
    md_table(f, a);
    fprintf(f, "\nRows marked \\* were chosen by the planner (lowest peak); *peak at* names the pass, "
               "layer and partition where the peak happens. Sizes are in binary units (MiB, GiB).");
    if (a->allocator != ALLOC_EXACT)
        fprintf(f, " The table's peaks follow the %s allocator model; the plots show live bytes "
                   "(the exact model).", sim_allocator_name(a->allocator));
    fputc('\n', f);
}

static void md_plot(FILE *f, const plot_made *m)
{
    fprintf(f, "\n## %s\n\n![%s](%s.png)\n\n%s\n\n", m->heading, m->heading, m->name, m->note);
    fprintf(f, "[SVG](%s.svg) · data: `%s%s.csv` · script: `%s.gp`\n", m->name, m->name,
            strcmp(m->name, "timeline") == 0 ? "-*" : "", m->name);
}

static lr_status write_markdown(const analysis_t *a, const char *tmp, const plot_made *made)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/report.md", tmp);
    lr_outfile o;
    LR_TRY(lr_outfile_open(&o, path));
    md_header(o.f, a);
    for (int i = 0; i < REPORT_PLOTS; i++)
        md_plot(o.f, &made[i]);
    fprintf(o.f, "\n## Remaking the images\n\nEach image is drawn by the gnuplot script beside it "
                 "from CSV data in this directory (sizes in bytes). Edit a script and run it here, "
                 "e.g. `gnuplot timeline.gp`, to restyle the PNG and SVG.\n");
    return lr_outfile_commit(&o);
}

/* ------------------------------------------------------------------ building */

static lr_status build(const analysis_t *a, const report_options *opt, const char *gnuplot,
                       const char *tmp)
{
    plot_made made[REPORT_PLOTS];
    LR_TRY(plot_timeline(a, tmp, &made[0]));
    LR_TRY(plot_rows(a, tmp, &made[1]));
    LR_TRY(plot_batch(a, opt->gpu_mem_bytes, tmp, &made[2]));
    LR_TRY(plot_layers(a, tmp, &made[3]));
    LR_TRY(plot_input(a, opt->gpu_mem_bytes, tmp, &made[4]));
    for (int i = 0; i < REPORT_PLOTS; i++)
        LR_TRY(plot_run_gnuplot(gnuplot, tmp, made[i].name));
    return write_markdown(a, tmp, made);
}

/* dir without trailing slashes; LR_ERR_USAGE when nothing is left or it is too long. */
static lr_status clean_dir(const char *dir, char *out, size_t cap)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    if (n == 0 || (n == 1 && dir[0] == '/'))
        return lr_fail(LR_ERR_USAGE, "--report: expected a directory to create, got '%s'", dir);
    if (n + 16 >= cap)
        return lr_fail(LR_ERR_USAGE, "--report: path too long");
    memcpy(out, dir, n);
    out[n] = '\0';
    return LR_OK;
}

lr_status report_check(const char *dir_arg)
{
    char gnuplot[PATH_MAX], dir[PATH_MAX];
    bool exists;
    LR_TRY(plot_find_gnuplot(gnuplot, sizeof gnuplot));
    LR_TRY(clean_dir(dir_arg, dir, sizeof dir));
    return check_target(dir, &exists);
}

lr_status report_write(const analysis_t *a, const report_options *opt, const char *dir_arg)
{
    char gnuplot[PATH_MAX], dir[PATH_MAX], tmp[PATH_MAX + 16];
    LR_TRY(plot_find_gnuplot(gnuplot, sizeof gnuplot));
    LR_TRY(clean_dir(dir_arg, dir, sizeof dir));
    bool exists;
    LR_TRY(check_target(dir, &exists));
    snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", dir);
    if (!mkdtemp(tmp))
        return lr_fail(LR_ERR_IO, "--report %s: cannot create a directory beside it: %s", dir,
                       strerror(errno));
    lr_status s = build(a, opt, gnuplot, tmp);
    if (s == LR_OK && chmod(tmp, 0755) != 0)
        s = lr_fail(LR_ERR_IO, "%s: %s", tmp, strerror(errno));
    if (s == LR_OK)
        s = move_into_place(tmp, dir, exists);
    remove_tree(tmp); /* after an exchange it holds the old report */
    return s;
}
